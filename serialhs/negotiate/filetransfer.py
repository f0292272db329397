"""Send and receive files over an SHS link on a Port (the synchronous adapter).

    from serialhs.driver.port import Port
    from serialhs.negotiate.filetransfer import receive_file, send_file

    with Port("/dev/ttyUSB0", "9600 8N1") as port:
        result = send_file(port, "firmware.bin", progress=print)
    result.raise_for_failure()

Each attempt negotiates (docs/protocol.md §8-§9: the best settings the line
carries), then moves the file with the transfer layer (§17) as the messages of
§18: OFFER, ACCEPT, CHUNK ..., END, RESULT. The receiver writes into
``PATH.part`` and keeps the offer beside it (``PATH.part.json``); it renames the
file into place only once its size and SHA-256 match. When the link fails (the
peer lost, a reset, the port unplugged) both ends negotiate again and the
transfer resumes from the last offset the receiver had written, up to
``attempts`` times and within ``timeout``.

When the two ends agree an XMODEM protocol instead of shs (a peer that only
speaks that), the file goes with :mod:`serialhs.negotiate.xmodemport` at the
agreed settings.

Every wait is bounded: by the cores' timers, the overall ``timeout`` and the
attempts. Nothing the peer sends raises out of here: a failure comes back as a
:class:`FileResult` with ``ok`` false and the reason (``raise_for_failure()``
turns it into :class:`~serialhs.errors.FileTransferError`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO, Literal

from serialhs.driver.port import Port
from serialhs.driver.settings import SerialSettings
from serialhs.errors import (
    ConfigError,
    FileTransferError,
    NegotiationFailed,
    PortDisconnectedError,
    PortError,
    ReadTimeout,
    RemoteProtocolError,
)
from serialhs.negotiate import xmodemport
from serialhs.negotiate.capabilities import Capabilities, TransferProtocol
from serialhs.negotiate.channel import Channel, ChannelEvent
from serialhs.negotiate.fileproto import (
    Accept,
    Chunk,
    End,
    FileMessage,
    MessageReader,
    Offer,
    Refuse,
    Result,
    Status,
    chunk_size,
    decode,
    encode,
)
from serialhs.negotiate.frames import MAX_PAYLOAD, RstCode
from serialhs.negotiate.handshake import (
    DEFAULT_TIMERS,
    SAFE_DEFAULT,
    Closed,
    Failed,
    Reset,
    SwitchSettings,
    Timers,
)
from serialhs.negotiate.link import LinkResult, drain_for_switch, negotiate
from serialhs.negotiate.transfer import (
    DEFAULT_TRANSFER_TIMERS,
    Data,
    TransferStats,
    TransferTimers,
)

__all__ = [
    "FILE_FRAME",
    "FILE_PROTOCOLS",
    "FILE_WINDOW",
    "FileProgress",
    "FileResult",
    "file_capabilities",
    "receive_file",
    "send_file",
]

log = logging.getLogger("serialhs.negotiate")

Role = Literal["initiator", "responder"]
#: The longest a read waits before the adapter looks at the cores again.
POLL = 0.05
#: The read wait while frames wait for room in the UART's queue.
QUEUE_POLL = 0.002
#: A read at least this long is taken for part of a stream: up to MORE_READS more
#: reads follow in the same step when their bytes are already there.
STREAM_READ = 1024
MORE_READS = 8
#: How often progress is reported at most.
PROGRESS_EVERY = 0.1
_HASH_BLOCK = 1 << 20
#: A receiver has the disk start on what it has written every this many bytes, so
#: that the fsync confirming the file finds little left to write.
WRITEBACK_EVERY = 4 << 20
#: How long closing a received file waits for a writeback still running.
WRITEBACK_WAIT = 60.0


@dataclasses.dataclass(frozen=True, slots=True)
class FileProgress:
    """Where a transfer stands: ``done`` of ``total`` bytes confirmed (sender: the
    receiver acknowledged them; receiver: written), ``rate`` in bytes per second
    over this attempt's data phase, ``resent`` frames so far."""

    done: int
    total: int
    resumed_from: int
    rate: float
    resent: int
    attempt: int
    elapsed: float

    @property
    def fraction(self) -> float:
        return self.done / self.total if self.total else 1.0


ProgressCallback = Callable[[FileProgress], None]


@dataclasses.dataclass(frozen=True, slots=True)
class FileResult:
    """How a file transfer ended.

    ``size`` and ``sha256`` (hex) are the file's; ``resumed_from``: the offset the
    last attempt started at; ``transferred``: file bytes moved over the link in
    all attempts; ``elapsed``: seconds of data phase (after the handshakes), summed;
    ``handshake_seconds``: the negotiations, summed; ``link``: the last
    agreement; ``stats``: the transfer layer's counters, summed over attempts;
    ``bytes_on_wire``: what this end sent in the data phase, frames and escapes
    included.
    """

    ok: bool
    reason: str
    path: str
    size: int
    sha256: str
    protocol: str
    resumed_from: int
    transferred: int
    elapsed: float
    handshake_seconds: float
    attempts: int
    link: LinkResult | None
    stats: TransferStats
    bytes_on_wire: int
    bad_frames: int
    port: str

    @property
    def goodput(self) -> float:
        """File bytes per second over the data phase."""
        return self.transferred / self.elapsed if self.elapsed > 0 else 0.0

    def raise_for_failure(self) -> FileResult:
        if not self.ok:
            raise FileTransferError(self.reason, port=self.port)
        return self


class _AttemptFailed(Exception):
    """This attempt's link ended; another may resume (``final``: no point trying)."""

    def __init__(self, reason: str, *, final: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.final = final


class _Done(Exception):
    """The file is confirmed (or refused) and the attempt loop ends."""


# -- the I/O loop of one established link -------------------------------------------------------


class _Pump:
    """Moves one channel's bytes and time on a port; keeps about two frames queued
    ahead of the UART (docs/protocol.md §17.6)."""

    def __init__(self, port: Port, channel: Channel, deadline: float) -> None:
        self.port = port
        self.channel = channel
        self.deadline = deadline

    def step(self) -> list[ChannelEvent]:
        ch, port = self.channel, self.port
        now = time.monotonic()
        if now > self.deadline:
            ch.abort(now, "timed out")  # a RST tells the peer
            self.flush()
            raise _AttemptFailed("timed out", final=True)
        # The core's model of the line limits the queue, and so does a driver queue
        # that can be read (a real tty). A pty always says 0: its writes block when
        # it is full. Either way about two frames go per step, so that incoming
        # acknowledgements are read between them.
        waiting = port.out_waiting if ch.ready else 0
        data = ch.data_to_send(now, max(0, ch.queue_budget - waiting))
        if data:
            port.write(data, timeout=30.0)
        timer = ch.get_timer()
        wait = POLL
        if ch.ready:  # more to hand out: at once, or when the driver's queue has gone down
            wait = QUEUE_POLL if waiting else 0.0
        if ch.has_events:  # the application has something to answer first
            wait = 0.0
        if timer is not None:
            wait = max(0.0, min(wait, timer - time.monotonic()))
        try:
            if wait > 0:  # nothing to do but receive: not before the frame arriving can be whole
                # (a line faster than its rate delivers in bursts: no threshold to set)
                received = port.read_some(timeout=wait, min_size=1 if ch.fast else ch.awaiting)
            else:
                received = port.read_available()
        except ReadTimeout:
            received = b""
        if received and len(received) >= STREAM_READ:
            # A long read means a stream: take what else has come before answering
            # (a tty hands out a few KiB per read), so that the work of a step is
            # shared by several reads. The count bounds the delay of an answer.
            reads = [received]
            for _ in range(MORE_READS):
                more = port.read_available()
                if not more:
                    break
                reads.append(more)
            if len(reads) > 1:
                received = b"".join(reads)
        now = time.monotonic()
        if received:
            ch.receive_data(received, now)
        if timer is not None and now >= timer:  # a timer set by what arrived is due later
            ch.handle_timer(now)
        events = ch.events()
        for event in events:
            if isinstance(event, SwitchSettings):  # a failed link goes back to the safe default
                self.flush()
                drain_for_switch(port)
                port.reconfigure(event.settings)
                ch.handshake.settings_applied(time.monotonic())
        return events

    def flush(self) -> None:
        data = self.channel.data_to_send(time.monotonic(), 0)
        if data:
            self.port.write(data, timeout=10.0)


# -- the two ends --------------------------------------------------------------------------------


@dataclasses.dataclass
class _Totals:
    attempts: int = 0
    transferred: int = 0
    elapsed: float = 0.0
    handshake: float = 0.0
    bytes_on_wire: int = 0
    bad_frames: int = 0
    resumed_from: int = 0
    link: LinkResult | None = None
    stats: TransferStats = dataclasses.field(default_factory=TransferStats)
    protocol: str = "shs"

    def add_channel(self, channel: Channel, started: float) -> None:
        self.elapsed += time.monotonic() - started
        self.bytes_on_wire += channel.bytes_on_wire
        self.bad_frames += channel.bad_frames
        ours, more = self.stats, channel.stats
        for field in dataclasses.fields(TransferStats):
            setattr(ours, field.name, getattr(ours, field.name) + getattr(more, field.name))


@dataclasses.dataclass
class _Job:
    """One send or receive: the port, the limits and what the attempts add up to."""

    port: Port
    role: Role
    capabilities: Capabilities
    safe: SerialSettings
    timers: Timers
    transfer_timers: TransferTimers
    attempts: int
    deadline: float
    callback: ProgressCallback | None
    on_event: Callable[[object], None] | None = None
    totals: _Totals = dataclasses.field(default_factory=_Totals)
    _last_report: float = 0.0

    def run(self, attempt: Callable[[LinkResult], None]) -> str:
        """Negotiate and run ``attempt`` until the file is done, the attempts are
        spent or the deadline passes. Returns "" on success, else the last reason."""
        port, totals = self.port, self.totals
        reason = "no attempt made"
        while totals.attempts < self.attempts:
            totals.attempts += 1
            try:
                if not port.is_open:
                    _reopen(port, self.deadline)
                remaining = self.deadline - time.monotonic()
                if remaining <= 0:
                    return f"timed out; last: {reason}"
                started = time.monotonic()
                link = negotiate(
                    port,
                    self.role,
                    self.capabilities,
                    timeout=remaining,
                    safe=self.safe,
                    timers=self.timers,
                    on_event=self.on_event,
                )
                totals.handshake += time.monotonic() - started
                totals.link = link
                log.info("%s: agreed %s (%s)", port.url, link.settings, link.agreed.protocol.label)
                attempt(link)
                return ""
            except _Done:
                return ""
            except _AttemptFailed as e:
                reason = e.reason
                if e.final:
                    return reason
            except NegotiationFailed as e:
                reason = str(e)
                if e.code in _REFUSALS:
                    return reason  # the peer will refuse the same offer again
            except PortError as e:
                reason = (
                    f"the port went away: {e}"
                    if isinstance(e, PortDisconnectedError)
                    else f"port error: {e}"
                )
                port.close()
            where = "" if port.url in reason else f"{port.url}: "
            log.warning("%sattempt %d failed: %s", where, totals.attempts, reason)
        return f"gave up after {totals.attempts} attempts; last: {reason}"

    def open_channel(self, link: LinkResult) -> tuple[Channel, _Pump, float]:
        started = time.monotonic()
        channel = Channel(
            link.handshake, now=started, timers=self.transfer_timers, backlog=link.backlog
        )
        return channel, _Pump(self.port, channel, self.deadline), started

    def report(
        self, done: int, total: int, channel: Channel, started: float, *, force: bool = False
    ) -> None:
        if self.callback is None:
            return
        now = time.monotonic()
        if not force and now - self._last_report < PROGRESS_EVERY:
            return
        self._last_report = now
        elapsed = now - started
        moved = done - self.totals.resumed_from
        self.callback(
            FileProgress(
                done,
                total,
                self.totals.resumed_from,
                moved / elapsed if elapsed > 0 else 0.0,
                self.totals.stats.resent + channel.stats.resent,
                self.totals.attempts,
                elapsed,
            )
        )

    def xmodem(self, link: LinkResult, path: Path, *, sending: bool) -> None:
        """The agreed protocol is an XMODEM: run it at the agreed settings."""
        label = link.agreed.protocol.label
        self.totals.protocol = label
        started = time.monotonic()
        if sending:
            result = xmodemport.send_file(self.port, path, protocol=label, deadline=self.deadline)
        else:
            result = xmodemport.receive_file(
                self.port, path, protocol=label, deadline=self.deadline
            )
        self.totals.elapsed += time.monotonic() - started
        self.totals.transferred += result.bytes
        if not result.ok:
            raise _AttemptFailed(f"{label}: {result.reason}", final=True)
        raise _Done

    def result(self, reason: str, *, path: str, size: int, sha256: str) -> FileResult:
        totals = self.totals
        return FileResult(
            ok=not reason,
            reason=reason or "ok",
            path=path,
            size=size,
            sha256=sha256,
            protocol=totals.protocol,
            resumed_from=totals.resumed_from,
            transferred=totals.transferred,
            elapsed=totals.elapsed,
            handshake_seconds=totals.handshake,
            attempts=totals.attempts,
            link=totals.link,
            stats=totals.stats,
            bytes_on_wire=totals.bytes_on_wire,
            bad_frames=totals.bad_frames,
            port=self.port.url,
        )


#: What a file transfer can run: SHS, and XMODEM for peers that only speak that.
FILE_PROTOCOLS = ("shs", "xmodem-1k", "xmodem-crc", "xmodem")
#: The window a file transfer offers: 32 frames keep the line busy while a lost
#: frame is resent (docs/benchmarks.md), for 32 KiB held at the receiver.
FILE_WINDOW = 32
#: The largest frame a file transfer offers; on a noisy line the sender uses
#: smaller ones (docs/protocol.md §17.2).
FILE_FRAME = MAX_PAYLOAD
#: RST codes that refuse what this end offers (another attempt cannot help).
_REFUSALS = frozenset({RstCode.NO_COMMON, RstCode.BAD_CAPABILITIES, RstCode.BAD_CHOICE})


def file_capabilities(max_baud: int, **kwargs: Any) -> Capabilities:
    """What a file transfer offers: every standard rate up to ``max_baud``, frames
    of up to 32768 bytes (the sender fits its frames to the line and its errors), a
    window of :data:`FILE_WINDOW`, SHS and the XMODEMs."""
    kwargs.setdefault("max_payload", FILE_FRAME)
    kwargs.setdefault("window", FILE_WINDOW)
    kwargs.setdefault("protocols", FILE_PROTOCOLS)
    return Capabilities.up_to(max_baud, **kwargs)


def _default_capabilities() -> Capabilities:
    return file_capabilities(921600)


def _job(
    port: Port,
    role: Role,
    capabilities: Capabilities | None,
    *,
    safe: SerialSettings,
    timers: Timers,
    transfer_timers: TransferTimers,
    attempts: int,
    timeout: float,
    progress: ProgressCallback | None,
    on_event: Callable[[object], None] | None,
) -> _Job:
    if attempts < 1:
        raise ConfigError(f"attempts must be at least 1, not {attempts}")
    if not timeout > 0:
        raise ConfigError(f"timeout must be positive, not {timeout}")
    return _Job(
        port,
        role,
        capabilities or _default_capabilities(),
        safe,
        timers,
        transfer_timers,
        attempts,
        time.monotonic() + timeout,
        progress,
        on_event,
    )


def _reopen(port: Port, deadline: float) -> None:
    """Open the port again after it went away (unplugged), waiting until it is back."""
    port.close()
    delay = 0.1
    while True:
        try:
            port.open()
            return
        except PortError as e:
            if time.monotonic() + delay > deadline:
                raise _AttemptFailed(f"the port did not come back: {e}", final=True) from e
        time.sleep(delay)
        delay = min(1.0, delay * 2)


def _sha256_of(f: BinaryIO, upto: int | None = None) -> hashlib._Hash:
    digest = hashlib.sha256()
    f.seek(0)
    left = upto
    while left is None or left > 0:
        block = f.read(_HASH_BLOCK if left is None else min(_HASH_BLOCK, left))
        if not block:
            break
        digest.update(block)
        if left is not None:
            left -= len(block)
    return digest


class _FileDigest:
    """The SHA-256 of a file's first ``size`` bytes, worked out in a thread on a
    descriptor of its own while the link is negotiated (hashlib lets go of the GIL
    for large blocks, and a handshake mostly waits)."""

    def __init__(self, f: BinaryIO, size: int) -> None:
        self._fd = os.dup(f.fileno())  # the file may be closed before the thread ends
        self._size = size
        self._value: bytes | None = None
        self._error: OSError | None = None
        self._thread = threading.Thread(target=self._run, name="serialhs-sha256", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            digest = hashlib.sha256()
            offset = 0
            while offset < self._size:
                block = os.pread(self._fd, min(_HASH_BLOCK, self._size - offset), offset)
                if not block:
                    raise OSError(f"the file ended at {offset} of its {self._size} bytes")
                digest.update(block)
                offset += len(block)
            self._value = digest.digest()
        except OSError as e:
            self._error = e
        finally:
            os.close(self._fd)

    def result(self) -> bytes:
        """The digest (waits for it); the OSError that stopped it, if one did."""
        self._thread.join()
        if self._error is not None:
            raise self._error
        assert self._value is not None
        return self._value


class _Writeback:
    """Has the disk write a file being received while more of it arrives: an
    fdatasync in a thread (it lets go of the GIL), started at each :meth:`kick`.
    Without it the fsync that confirms the file waits for all of it at the end:
    9 ms for 16 MiB here, a few seconds for a large file on a slow card."""

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._wanted = threading.Event()
        self._stopping = False
        self._error: OSError | None = None
        self._thread = threading.Thread(target=self._run, name="serialhs-writeback", daemon=True)
        self._thread.start()

    def kick(self) -> None:
        """Write out what the file holds now (the caller flushed its buffer)."""
        self._wanted.set()

    def _run(self) -> None:
        while True:
            self._wanted.wait()
            self._wanted.clear()
            if self._stopping:
                return
            try:
                os.fdatasync(self._fd)
            except OSError as e:  # reported by stop(): a later fsync would not see it
                self._error = e
                return

    def stop(self) -> None:
        """Wait for a writeback still running (bounded); raise the OSError one met."""
        self._stopping = True
        self._wanted.set()
        self._thread.join(WRITEBACK_WAIT)
        if self._error is not None:
            raise self._error


def _messages(
    events: list[ChannelEvent], reader: MessageReader
) -> tuple[list[FileMessage], Failed | Reset | Closed | None]:
    """The file messages these events complete, and how the link ended, if it did."""
    out: list[FileMessage] = []
    ended: Failed | Reset | Closed | None = None
    for event in events:
        if isinstance(event, Data):
            try:
                whole = reader.feed(event.data, event.eom)
                if whole is not None:
                    out.append(decode(whole))
            except RemoteProtocolError as e:
                raise _AttemptFailed(f"the peer broke the file protocol: {e}", final=True) from e
        elif isinstance(event, Failed | Reset | Closed):
            ended = event
    return out, ended


def _ended(end: Failed | Reset | Closed, who: str) -> _AttemptFailed:
    if isinstance(end, Closed):
        return _AttemptFailed(f"the {who} closed the link before the end")
    return _AttemptFailed(end.reason)


# -- sending -------------------------------------------------------------------------------------


def send_file(
    port: Port,
    path: str | os.PathLike[str],
    *,
    capabilities: Capabilities | None = None,
    role: Role = "initiator",
    safe: SerialSettings = SAFE_DEFAULT,
    timeout: float = 3600.0,
    attempts: int = 5,
    progress: ProgressCallback | None = None,
    timers: Timers = DEFAULT_TIMERS,
    transfer_timers: TransferTimers = DEFAULT_TRANSFER_TIMERS,
    on_event: Callable[[object], None] | None = None,
) -> FileResult:
    """Send the file at ``path`` to the serialhs peer on ``port``. See the module docstring.

    ``capabilities``: what this end offers (default: :func:`file_capabilities`
    up to 921600); ``role``: who sends the SYN
    (the sender by default; the receiver listens); ``on_event`` sees every
    event of each negotiation (training steps, for progress output).
    """
    job = _job(
        port,
        role,
        capabilities,
        safe=safe,
        timers=timers,
        transfer_timers=transfer_timers,
        attempts=attempts,
        timeout=timeout,
        progress=progress,
        on_event=on_event,
    )
    source = Path(path)
    with source.open("rb") as f:
        sending = _Sending(job, f, source.name)

        def attempt(link: LinkResult) -> None:
            if link.agreed.protocol is not TransferProtocol.SHS:
                job.xmodem(link, source, sending=True)
            sending.over(link)

        reason = job.run(attempt)
        digest = sending.digest
    if not reason and sending.outcome is not None:
        last = sending.outcome
        if isinstance(last, Refuse):
            reason = f"the receiver refused the file: {last.reason}"
        elif not last.ok:
            reason = f"the receiver reports {last.describe()}"
    return job.result(reason, path=str(source), size=sending.size, sha256=digest.hex())


class _Sending:
    """The sending end's file across attempts."""

    def __init__(self, job: _Job, f: BinaryIO, name: str) -> None:
        self.job = job
        self.file = f
        self.name = name
        self.size = os.fstat(f.fileno()).st_size
        self._digest = _FileDigest(f, self.size)  # while the link is negotiated
        self.outcome: Result | Refuse | None = None

    @property
    def digest(self) -> bytes:
        return self._digest.result()

    def over(self, link: LinkResult) -> None:
        """One attempt on an established link."""
        job, f, size = self.job, self.file, self.size
        channel, pump, started = job.open_channel(link)
        reader = MessageReader()
        piece = chunk_size(channel.transfer.segment)  # the largest segment, at the start
        channel.send(encode(Offer(size, self.digest, self.name)))
        start: int | None = None  # the offset the receiver accepted
        position = confirmed = 0  # the next offset to send; the last acknowledged
        marks: deque[tuple[int, int]] = deque()  # (stream bytes, file offset) at each CHUNK's end
        ended = False
        try:
            while True:
                messages, end = _messages(pump.step(), reader)
                for message in messages:
                    if isinstance(message, Accept) and start is None:
                        if message.offset > size:
                            channel.abort(time.monotonic(), "bad offset")
                            pump.flush()
                            raise _AttemptFailed(
                                f"the receiver asked to start at {message.offset}, past the "
                                f"end of the {size}-byte file",
                                final=True,
                            )
                        start = position = confirmed = job.totals.resumed_from = message.offset
                        f.seek(position)
                        if position:
                            log.info("%s: resuming at byte %d of %d", job.port.url, position, size)
                    elif isinstance(message, Refuse | Result):
                        self.outcome = message
                        if isinstance(message, Result) and message.ok:
                            confirmed = size
                if end is not None:
                    pump.flush()  # a FIN-ACK or RST the end produced
                    if self.outcome is not None:
                        raise _Done
                    raise _ended(end, "receiver")
                if self.outcome is not None and channel.idle:
                    channel.close(time.monotonic())
                if start is not None and not ended:
                    while position < size and channel.writable >= piece + 9:
                        data = f.read(min(piece, size - position))
                        if not data:
                            raise _AttemptFailed(
                                f"the file shrank while it was sent (at {position} of {size})",
                                final=True,
                            )
                        channel.send(encode(Chunk(position, data)))
                        position += len(data)
                        marks.append((channel.transfer.queued_bytes, position))
                    if position >= size:
                        channel.send(encode(End()))
                        ended = True
                acked = channel.transfer.acked_bytes
                while marks and marks[0][0] <= acked:
                    confirmed = max(confirmed, marks.popleft()[1])
                if start is not None:  # the offset is known once the receiver accepts
                    job.report(confirmed, size, channel, started)
        finally:
            if start is not None:
                job.report(confirmed, size, channel, started, force=True)
            job.totals.add_channel(channel, started)
            if start is not None:
                job.totals.transferred += max(0, confirmed - start)


# -- receiving -----------------------------------------------------------------------------------


def receive_file(
    port: Port,
    path: str | os.PathLike[str],
    *,
    capabilities: Capabilities | None = None,
    role: Role = "responder",
    safe: SerialSettings = SAFE_DEFAULT,
    timeout: float = 3600.0,
    attempts: int = 5,
    progress: ProgressCallback | None = None,
    overwrite: bool = False,
    timers: Timers = DEFAULT_TIMERS,
    transfer_timers: TransferTimers = DEFAULT_TRANSFER_TIMERS,
    on_event: Callable[[object], None] | None = None,
) -> FileResult:
    """Receive one file from the serialhs peer on ``port`` into ``path``.

    ``path`` may be a directory: the file then takes the last component of the
    name the sender offers (never a path of the sender's choosing). An existing
    file is refused unless ``overwrite``; a ``PATH.part`` of the same offer from
    an earlier attempt is resumed.
    """
    job = _job(
        port,
        role,
        capabilities,
        safe=safe,
        timers=timers,
        transfer_timers=transfer_timers,
        attempts=attempts,
        timeout=timeout,
        progress=progress,
        on_event=on_event,
    )
    state = _Receiving(job, Path(path), overwrite)

    def attempt(link: LinkResult) -> None:
        if link.agreed.protocol is not TransferProtocol.SHS:
            state.target = state.target or state.place("received.bin")
            job.xmodem(link, state.target, sending=False)
        state.over(link)

    try:
        reason = job.run(attempt)
    finally:
        state.close()
    if not reason and state.result is not None and not state.result.ok:
        reason = f"the file did not check out: {state.result.describe()}"
    if not reason and state.refused:
        reason = f"refused the file: {state.refused}"
    offer = state.offer
    return job.result(
        reason,
        path=str(state.target if state.target is not None else path),
        size=offer.size if offer else 0,
        sha256=offer.sha256.hex() if offer else "",
    )


class _Receiving:
    """The receiving end's file across attempts: the target, its ``.part`` and the
    offer kept beside it."""

    def __init__(self, job: _Job, path: Path, overwrite: bool) -> None:
        self.job = job
        self.path = path
        self.overwrite = overwrite
        self.target: Path | None = None
        self.offer: Offer | None = None
        self.file: BinaryIO | None = None
        self.digest: hashlib._Hash | None = None
        self.written = 0
        self.writeback: _Writeback | None = None
        self.unsynced = 0  #: bytes written since the last writeback started
        self.result: Result | None = None
        self.refused = ""
        self.done = False

    def place(self, offered_name: str) -> Path:
        if self.path.is_dir():
            name = Path(offered_name.replace("\\", "/")).name
            if name in ("", ".", ".."):
                name = "received.bin"
            return self.path / name
        return self.path

    @staticmethod
    def part(target: Path) -> Path:
        return target.with_name(target.name + ".part")

    @staticmethod
    def meta(target: Path) -> Path:
        return target.with_name(target.name + ".part.json")

    def accept(self, offer: Offer) -> Accept | Refuse:
        """Where to start: what this end holds of this very file."""
        target = self.place(offer.name)
        if target.exists() and not self.overwrite:
            self.refused = f"{target} exists (overwrite not allowed)"
            return Refuse(f"the file exists at the receiver: {target.name}")
        self.target, self.offer = target, offer
        part, meta = self.part(target), self.meta(target)
        offset = 0
        try:
            kept = json.loads(meta.read_text()) if meta.exists() and part.exists() else None
        except (OSError, ValueError):
            kept = None
        self.close()  # an earlier attempt's file, and its writeback
        same = isinstance(kept, dict) and (kept.get("size"), kept.get("sha256")) == (
            offer.size,
            offer.sha256.hex(),
        )
        if same:  # the same file (size and SHA-256; the name is only informational)
            self.file = part.open("r+b")
            offset = min(os.fstat(self.file.fileno()).st_size, offer.size)
            self.file.truncate(offset)
            self.digest = _sha256_of(self.file, offset)
            self.file.seek(offset)
        else:
            self.file = part.open("w+b")
            meta.write_text(
                json.dumps({"size": offer.size, "sha256": offer.sha256.hex(), "name": offer.name})
            )
            self.digest = hashlib.sha256()
        self.written = offset
        return Accept(offset)

    def chunk(self, chunk: Chunk) -> Result | None:
        """Write a CHUNK; a RESULT when it does not fit."""
        assert self.offer is not None and self.file is not None and self.digest is not None
        if chunk.offset != self.written or chunk.offset + len(chunk.data) > self.offer.size:
            return Result(
                Status.SIZE_MISMATCH,
                f"a chunk at {chunk.offset} (+{len(chunk.data)}), expected one at "
                f"{self.written} of {self.offer.size}",
            )
        try:
            self.file.write(chunk.data)
        except OSError as e:
            return Result(Status.WRITE_ERROR, f"cannot write: {e.strerror}")
        self.digest.update(chunk.data)
        self.written += len(chunk.data)
        self.unsynced += len(chunk.data)
        if self.unsynced >= WRITEBACK_EVERY:
            self.unsynced = 0
            try:
                self.file.flush()
            except OSError as e:
                return Result(Status.WRITE_ERROR, f"cannot write: {e.strerror}")
            if self.writeback is None:
                self.writeback = _Writeback(self.file.fileno())
            self.writeback.kick()
        return None

    def end(self) -> Result:
        assert self.offer is not None and self.target is not None and self.file is not None
        assert self.digest is not None
        part, meta = self.part(self.target), self.meta(self.target)
        try:
            self.close()
        except OSError as e:  # the disk refused what was written: no file to confirm
            return Result(Status.WRITE_ERROR, f"cannot write {part.name} to disk: {e.strerror}")
        if self.written != self.offer.size:
            meta.unlink(missing_ok=True)
            return Result(
                Status.SIZE_MISMATCH, f"{self.written} bytes, the offer said {self.offer.size}"
            )
        if self.digest.digest() != self.offer.sha256:
            meta.unlink(missing_ok=True)  # not resumed again; the bytes stay in .part
            return Result(Status.CHECKSUM_MISMATCH, "the SHA-256 of the file differs")
        os.replace(part, self.target)
        meta.unlink(missing_ok=True)
        return Result(Status.OK, "")

    def close(self) -> None:
        """Keep what arrived: flushed to disk, resumable."""
        if self.file is not None:
            try:
                writeback, self.writeback = self.writeback, None
                if writeback is not None:
                    writeback.stop()
                self.file.flush()
                os.fsync(self.file.fileno())
            finally:
                self.file.close()
                self.file = None
                self.unsynced = 0

    def over(self, link: LinkResult) -> None:
        """One attempt on an established link."""
        job = self.job
        channel, pump, started = job.open_channel(link)
        reader = MessageReader()
        first = self.written if self.offer is not None else 0
        answered = False
        try:
            while True:
                messages, end = _messages(pump.step(), reader)
                for message in messages:
                    if isinstance(message, Offer) and not answered:
                        reply = self.accept(message)
                        channel.send(encode(reply))
                        answered = True
                        if isinstance(reply, Refuse):
                            self.done = True
                        else:
                            first = job.totals.resumed_from = reply.offset
                    elif isinstance(message, Chunk) and answered and self.result is None:
                        bad = self.chunk(message)
                        if bad is not None:  # answered, and this file is done with (§18)
                            self.result = bad
                            channel.send(encode(bad))
                            self.done = True
                    elif isinstance(message, End) and answered and self.result is None:
                        self.result = self.end()
                        channel.send(encode(self.result))
                        self.done = True
                if end is not None:
                    pump.flush()  # a FIN-ACK or RST the end produced
                    if self.done:
                        raise _Done
                    raise _ended(end, "sender")
                if self.offer is not None:  # nothing to show before the offer
                    job.report(self.written, self.offer.size, channel, started)
        finally:
            if self.offer is not None:
                job.report(self.written, self.offer.size, channel, started, force=True)
            job.totals.add_channel(channel, started)
            job.totals.transferred += max(0, self.written - first)
            if self.file is not None:
                self.file.flush()
