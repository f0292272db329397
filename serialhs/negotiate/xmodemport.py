"""Send and receive files with XMODEM on a Port: the thin synchronous adapters of
:mod:`serialhs.negotiate.xmodem`.

    from serialhs.driver.port import Port
    from serialhs.negotiate.xmodemport import receive_file, send_file

    with Port("/dev/ttyUSB0", "115200 8N1") as port:
        result = send_file(port, "firmware.bin", protocol="xmodem-1k", progress=print)
    result.raise_for_failure()

The adapters only move bytes and time: they read with a wait no longer than the
core's next timer, hand what arrived to the core, fire its timers, write what it
sends and pass its progress on. Every wait is bounded by the core's timeouts
(and by ``deadline``, an overall limit, when given).

A failed transfer returns a :class:`TransferResult` with ``ok`` false and the
reason (``raise_for_failure()`` turns it into an :class:`~serialhs.negotiate.xmodem.XmodemError`);
a port failure ends the transfer the same way, with the port's error attached.
Whatever was received stays in the output file, so nothing that arrived is lost.
A send that ends with ``Failure.UNCONFIRMED`` had every block acknowledged; only
the receiver's answer to EOT never came (lrzsz's ``rx`` on a pty often loses it
as it exits; see :mod:`serialhs.negotiate.xmodem`).
An exception from a progress callback, or KeyboardInterrupt, cancels the transfer
(CAN CAN to the peer) and propagates.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import logging
import os
import time
from collections.abc import Callable, Iterator
from typing import BinaryIO

from serialhs.driver.port import Port
from serialhs.errors import ConfigError, PortError, ReadTimeout, SerialTimeoutError
from serialhs.negotiate.xmodem import (
    Check,
    Data,
    Done,
    Failure,
    Progress,
    Protocol,
    Retry,
    Send,
    XmodemError,
    XmodemReceiver,
    XmodemSender,
)

__all__ = ["ProgressCallback", "TransferResult", "receive_file", "send_file"]

log = logging.getLogger("serialhs.negotiate")

ProgressCallback = Callable[[Progress], None]

_Core = XmodemSender | XmodemReceiver


@dataclasses.dataclass(frozen=True, slots=True)
class TransferResult:
    """How a transfer ended.

    ``bytes``: data bytes acknowledged by the receiver (sending) or written to the
    output (receiving, padding included unless stripped or cut to ``length``);
    ``blocks``, ``retries`` (retransmissions, or NAKs sent), ``timeouts``;
    ``check``: checksum or CRC-16 as the receiver asked; ``elapsed`` in seconds;
    ``error``: the port error that ended the transfer, if one did.
    """

    ok: bool
    reason: str
    failure: Failure | None
    bytes: int
    blocks: int
    retries: int
    timeouts: int
    check: Check | None
    elapsed: float
    port: str
    error: BaseException | None = dataclasses.field(default=None, compare=False)

    @property
    def goodput(self) -> float:
        """Data bytes per second."""
        return self.bytes / self.elapsed if self.elapsed > 0 else 0.0

    def raise_for_failure(self) -> TransferResult:
        """Raise XmodemError when the transfer failed; return the result otherwise."""
        if not self.ok:
            raise XmodemError(self.reason, failure=self.failure, port=self.port) from self.error
        return self


def _check_deadline(deadline: float | None) -> float | None:
    if deadline is None:
        return None
    if isinstance(deadline, bool) or not isinstance(deadline, int | float) or not deadline > 0:
        raise ConfigError(
            f"deadline must be a positive number of seconds or None, not {deadline!r}"
        )
    return float(deadline)


def _run(
    port: Port,
    core: _Core,
    *,
    progress: ProgressCallback | None,
    sink: Callable[[Data], None] | None,
    refill: Callable[[], None] | None,
    deadline: float | None,
    write_timeout: float,
    clock: Callable[[], float],
    started: float,
) -> TransferResult:
    """Drive ``core`` on ``port`` until it is done."""
    limit = None if deadline is None else started + deadline
    broken: BaseException | None = None
    done: Done | None = None
    try:
        while done is None:
            if refill is not None and broken is None:
                refill()
            for event in core.events():
                if isinstance(event, Send):
                    if broken is None:
                        try:
                            port.write(event.data, timeout=write_timeout)
                        except (PortError, SerialTimeoutError) as e:
                            broken = e
                            core.connection_lost(clock(), f"writing to {port.url} failed: {e}")
                elif isinstance(event, Data):
                    if sink is not None:
                        sink(event)
                elif isinstance(event, Progress):
                    if progress is not None:
                        progress(event)
                elif isinstance(event, Retry):
                    log.debug(
                        "%s: XMODEM block %d: %s (%d)",
                        port.url,
                        event.block,
                        event.reason,
                        event.count,
                    )
                elif isinstance(event, Done):
                    done = event
            if done is not None:
                break
            now = clock()
            if limit is not None and now >= limit:
                core.abort(now, f"the transfer did not finish within the {deadline:g} s deadline")
                continue
            timer = core.get_timer()
            wait = 0.0 if timer is None else max(0.0, timer - now)
            if limit is not None:
                wait = min(wait, max(0.0, limit - now))
            try:
                data = port.read_some(timeout=wait)
            except ReadTimeout:
                data = b""
            except (PortError, SerialTimeoutError) as e:
                broken = e
                core.connection_lost(clock(), f"reading from {port.url} failed: {e}")
                continue
            now = clock()
            if data:
                core.receive_data(data, now)
            core.handle_timer(now)
    except BaseException:
        # A callback failed or the caller interrupted: tell the peer, then let it go.
        if not core.done:
            core.abort(clock(), "interrupted")
            for event in core.events():
                if isinstance(event, Send) and broken is None:
                    with contextlib.suppress(PortError, SerialTimeoutError):
                        port.write(event.data, timeout=1.0)
        raise
    stats = core.stats
    return TransferResult(
        ok=done.ok,
        reason=done.reason,
        failure=done.failure,
        bytes=stats.bytes,
        blocks=stats.blocks,
        retries=stats.retries,
        timeouts=stats.timeouts,
        check=stats.check,
        elapsed=clock() - started,
        port=port.url,
        error=broken,
    )


@contextlib.contextmanager
def _source(source: str | os.PathLike[str] | bytes) -> Iterator[tuple[BinaryIO, int]]:
    if isinstance(source, bytes | bytearray | memoryview):
        data = bytes(source)
        yield io.BytesIO(data), len(data)
        return
    with open(source, "rb") as f:
        yield f, os.fstat(f.fileno()).st_size


def send_file(
    port: Port,
    source: str | os.PathLike[str] | bytes,
    *,
    protocol: Protocol | str = Protocol.XMODEM_CRC,
    progress: ProgressCallback | None = None,
    timeout: float = 10.0,
    start_timeout: float = 60.0,
    eot_timeout: float = 2.0,
    retries: int = 10,
    eot_retries: int = 10,
    settle: float = 0.001,
    deadline: float | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> TransferResult:
    """Send a file (a path) or bytes with XMODEM on the open ``port``.

    ``protocol`` picks the block size: ``xmodem`` and ``xmodem-crc`` send 128-byte
    blocks, ``xmodem-1k`` 1024-byte ones; the check is what the receiver asks for.
    ``timeout``: the wait for each block's ACK (plus the block's airtime at the
    port's settings); ``start_timeout``: the wait for the receiver's first NAK or
    ``C``; ``eot_timeout``: the wait before EOT is sent again; ``retries`` and
    ``eot_retries``: how often a block or EOT is sent again; ``settle``: the pause
    before each answer to the receiver; ``deadline``: an overall limit (None: the
    protocol's own timeouts bound the transfer). ``progress`` is called with a
    :class:`~serialhs.negotiate.xmodem.Progress` after each acknowledged block.

    The file's size is read when it is opened; that many bytes are sent (a file
    that shrinks meanwhile cancels the transfer).
    """
    deadline = _check_deadline(deadline)
    proto = Protocol.parse(protocol)
    with _source(source) as (stream, total):
        started = clock()
        core = XmodemSender(
            total=total,
            now=started,
            protocol=proto,
            start_timeout=start_timeout,
            ack_timeout=timeout,
            eot_timeout=eot_timeout,
            retries=retries,
            eot_retries=eot_retries,
            char_time=port.settings.char_time,
            settle=settle,
        )
        read = [0]

        def refill() -> None:
            while (wanted := core.wanted) > 0:
                chunk = stream.read(wanted)
                if not chunk:
                    core.abort(
                        clock(),
                        f"the source ended after {read[0]} of its {total} byte(s) "
                        "(did the file shrink while it was sent?)",
                    )
                    return
                read[0] += len(chunk)
                core.feed(chunk)

        log.info("%s: XMODEM send of %d byte(s) (%s)", port.url, total, proto.value)
        result = _run(
            port,
            core,
            progress=progress,
            sink=None,
            refill=refill,
            deadline=deadline,
            write_timeout=timeout,
            clock=clock,
            started=started,
        )
    log.info("%s: %s", port.url, result.reason)
    return result


def receive_file(
    port: Port,
    destination: str | os.PathLike[str] | BinaryIO,
    *,
    protocol: Protocol | str = Protocol.XMODEM_CRC,
    progress: ProgressCallback | None = None,
    length: int | None = None,
    strip_padding: bool = False,
    timeout: float = 10.0,
    start_timeout: float = 60.0,
    retries: int = 10,
    deadline: float | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> TransferResult:
    """Receive a file with XMODEM on the open ``port`` into ``destination`` (a path,
    created or truncated, or a binary file object).

    ``protocol``: ``xmodem`` asks with NAK (checksums); ``xmodem-crc`` and
    ``xmodem-1k`` ask with ``C`` (CRC-16) and fall back to NAK when no sender
    answers three times; blocks of either size are accepted. XMODEM pads the last
    block with SUB: ``length`` cuts the output to the exact length when the caller
    knows it (and makes a shorter transfer an error); ``strip_padding`` drops the
    trailing SUBs instead (and with them any that truly ended the data). By default
    the padding is kept, as lrzsz's ``rx`` keeps it.

    ``timeout``: the wait for each block; ``start_timeout``: how long to keep
    asking a sender to start; ``retries``: failures of one block before the
    transfer is cancelled; ``deadline``: an overall limit. ``progress`` is called
    with a :class:`~serialhs.negotiate.xmodem.Progress` after each block.
    """
    deadline = _check_deadline(deadline)
    proto = Protocol.parse(protocol)
    with contextlib.ExitStack() as stack:
        if isinstance(destination, str | os.PathLike):
            out: BinaryIO = stack.enter_context(open(destination, "wb"))
        else:
            out = destination
        started = clock()
        core = XmodemReceiver(
            now=started,
            protocol=proto,
            length=length,
            strip_padding=strip_padding,
            start_timeout=start_timeout,
            block_timeout=timeout,
            retries=retries,
        )

        def sink(event: Data) -> None:
            out.write(event.data)

        log.info("%s: XMODEM receive (%s)", port.url, proto.value)
        result = _run(
            port,
            core,
            progress=progress,
            sink=sink,
            refill=None,
            deadline=deadline,
            write_timeout=timeout,
            clock=clock,
            started=started,
        )
        out.flush()
    log.info("%s: %s", port.url, result.reason)
    return result
