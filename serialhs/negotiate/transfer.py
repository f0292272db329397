"""The SHS transfer layer, sans I/O: messages over DATA / DACK / NAK with
selective repeat (docs/protocol.md §17).

One :class:`Transfer` is both directions of one established session: the sender
of this end's DATA and the receiver of the peer's. It works on whole frames; the
:class:`~serialhs.negotiate.channel.Channel` puts it on a handshake core, which
encodes, decodes, keeps the link alive and closes it::

    t = Transfer(session, "initiator", frame_size=1024, window=16, settings=s, now=clock())
    t.send(b"hello", eom=True)
    for frame in t.frames_to_send(clock(), budget=4096):
        ...                                  # encode and write
    t.receive_frame(frame, clock())          # a DATA, DACK or NAK of the session
    for event in t.events():                 # Data(data, eom) | TransferFailed(reason)
        ...
    t.handle_timer(clock())                  # when get_timer() is due

The sender keeps at most ``window`` frames in flight, each with its own
retransmission timer; the receiver holds frames that arrive out of order, NAKs
the gap at once (fast retransmission), acknowledges with DACKs that carry its
window and selective-acknowledgement blocks, and delivers data strictly in
order, each byte once. It never raises for what the peer sends: frames that do
not fit come out as :class:`~serialhs.negotiate.handshake.Ignored`.
"""

from __future__ import annotations

import dataclasses
import math
from collections import deque
from typing import TypeAlias

from serialhs.driver.settings import SerialSettings
from serialhs.errors import ConfigError, FrameError, LocalProtocolError
from serialhs.negotiate.frames import (
    MAX_NAKS,
    MAX_PAYLOAD,
    MAX_SACK_BLOCKS,
    Flags,
    Frame,
    FrameType,
    decode_dack,
    decode_nak,
    encode_dack,
    encode_nak,
    escaped_size,
)
from serialhs.negotiate.handshake import Ignored, Role, Session

__all__ = [
    "DEFAULT_TRANSFER_TIMERS",
    "Data",
    "Transfer",
    "TransferEvent",
    "TransferFailed",
    "TransferStats",
    "TransferTimers",
    "ack_every",
    "frame_chars",
]

_U32 = 0xFFFFFFFF
_HALF = 1 << 31
_FRAME_OVERHEAD = 26  #: header, CRC, a flag and two escapes' allowance (§17.6)


def frame_chars(frame_size: int) -> int:
    """F of §17.6: the characters a full frame of ``frame_size`` payload bytes
    takes on the wire, with an allowance of one escape in eight bytes."""
    return frame_size + math.ceil(frame_size / 8) + _FRAME_OVERHEAD


#: New frames between two fittings of the segment size to the loss (§17.2).
SEGMENT_SAMPLE = 32
#: The smallest segment a sender shrinks its frames to.
MIN_SEGMENT = 128
#: The largest segment on a line that is not FAST (§17.2): at a bit error rate of
#: 1e-5 about half such frames get through, and a frame sent again keeps its size.
PACED_SEGMENT = 8192

#: The fastest the line model learns a line to be, as a share of its character time.
MIN_PACE = 1e-3

_FRAMING = 24  #: header, CRC and two flags


#: Flag bits as plain ints (IntFlag arithmetic is Python code; these are per frame).
_EOM = int(Flags.EOM)
_RETRY = int(Flags.RETRY)
_POLL = int(Flags.POLL)


def ack_every(window: int, *, fast: bool = False) -> int:
    """A receiver sends a DACK after this many frames (§17.4): a quarter of the
    window, at least 1 and at most 4; on a line the handshake found FAST (§9.2)
    without the limit of 4."""
    return max(1, window // 4 if fast else min(window // 4, 4))


def _wire_size(payload: bytes) -> int:
    """The bytes a frame with ``payload`` takes on the wire: its header, CRC and
    flags, and the payload with its escapes (those of the header and CRC, one in
    three frames on average, are left out)."""
    return escaped_size(payload) + _FRAMING


def _distance(a: int, b: int) -> int:
    """How far ``a`` is ahead of ``b``, modulo 2^32."""
    return (a - b) & _U32


# -- events ---------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class Data:
    """Bytes of the peer's stream, in order; ``eom``: they end a message."""

    data: bytes
    eom: bool


@dataclasses.dataclass(frozen=True, slots=True)
class TransferFailed:
    """A frame went unacknowledged ``data_tries`` times: the peer stopped acknowledging."""

    reason: str


TransferEvent: TypeAlias = Data | TransferFailed | Ignored


# -- timers and statistics ----------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class TransferTimers:
    """The transfer layer's times and tries (docs/protocol.md §17.4, §17.6).

    - ``rto(a) = min(2**a, backoff_limit) * (rto_base + (A + queue_frames) * F * c)``
      with ``A = ack_every(W, fast=...)``
      from the moment the frame leaves the UART, by the model of the line
    - a receiver NAKs a missing frame again after ``rto(0)``
    - a frame sent ``data_tries`` times unacknowledged fails the link
    - delayed acknowledgement: ``max(ack_delay_min, ack_delay_frames * F * c)``
    """

    rto_base: float = 0.1
    queue_frames: int = 4
    backoff_limit: int = 4
    data_tries: int = 12
    ack_delay_min: float = 0.01
    ack_delay_frames: int = 2

    def __post_init__(self) -> None:
        for name in ("rto_base", "ack_delay_min"):
            value = getattr(self, name)
            if not isinstance(value, int | float) or not 0 < value < math.inf:
                raise ConfigError(f"transfer timer {name} must be a positive number, not {value!r}")
        for name in ("queue_frames", "backoff_limit", "data_tries", "ack_delay_frames"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"transfer timer {name} must be an int >= 1, not {value!r}")


DEFAULT_TRANSFER_TIMERS = TransferTimers()


@dataclasses.dataclass(slots=True)
class TransferStats:
    """What one end did and saw (a snapshot: :attr:`Transfer.stats` returns a copy)."""

    frames_sent: int = 0  #: new DATA frames handed out
    bytes_sent: int = 0  #: payload bytes in them
    retransmissions: int = 0  #: DATA frames sent again on their timer
    fast_retransmissions: int = 0  #: DATA frames sent again on a NAK
    dacks_sent: int = 0
    naks_sent: int = 0
    frames_received: int = 0  #: DATA frames accepted (delivered or held)
    bytes_received: int = 0  #: payload bytes delivered
    duplicates: int = 0  #: DATA frames received twice
    out_of_order: int = 0  #: DATA frames held until a gap closed
    beyond_window: int = 0  #: DATA frames dropped beyond the window
    dacks_received: int = 0
    naks_received: int = 0
    ignored: int = 0  #: DACK/NAK that did not parse or acknowledged nothing sent

    @property
    def resent(self) -> int:
        return self.retransmissions + self.fast_retransmissions


@dataclasses.dataclass(slots=True)
class _Flight:
    payload: bytes
    eom: bool
    size: int  #: on the wire (_wire_size)
    tries: int = 0
    leaves: float | None = None  #: when the last copy is off the line, by the UART model
    handed: float = 0.0  #: when the last copy was handed to the UART
    due: float | None = None
    sacked: bool = False
    queued: bool = False  #: waiting in the resend queue


# -- the core ---------------------------------------------------------------------------------


class Transfer:
    """Both directions of the SHS transfer layer on one session. See the module docstring.

    ``session``: the handshake's :class:`~serialhs.negotiate.handshake.Session`;
    ``role``: this end's role in it; ``frame_size`` and ``window``: the agreed
    ones; ``settings``: the agreed serial settings (their character time scales
    the timers); ``send_buffer``: bytes :meth:`send` may hold before they are
    framed (default: four windows of the largest segment, at least 64 KiB);
    ``fast``: the handshake found the line FAST (:attr:`Handshake.fast
    <serialhs.negotiate.handshake.Handshake.fast>`), which spaces the DACKs out.
    """

    def __init__(
        self,
        session: Session,
        role: Role,
        *,
        frame_size: int,
        window: int,
        settings: SerialSettings,
        now: float,
        timers: TransferTimers = DEFAULT_TRANSFER_TIMERS,
        send_buffer: int | None = None,
        fast: bool = False,
    ) -> None:
        if not 1 <= frame_size <= MAX_PAYLOAD:
            raise ConfigError(f"frame_size must be 1..{MAX_PAYLOAD}, not {frame_size}")
        if not 1 <= window <= 1024:
            raise ConfigError(f"window must be 1..1024, not {window}")
        self._session = session
        self._sid = session.id
        self._size = frame_size
        self._window = window
        self._timers = timers
        self._now = float(now)
        c = settings.char_time
        self._c = c
        self._ack_every = ack_every(window, fast=fast)
        self._rto0 = self._queue = 0.0
        self._ack_delay = self._nak_holdoff = 0.0
        #: the largest segment: the agreed frame size, at most PACED_SEGMENT unless FAST
        self._top = frame_size if fast else min(frame_size, PACED_SEGMENT)
        self._set_segment(self._top)
        self._set_peer_segment(self._top)
        self._sent_count = 0  #: frames sent since the segment size was last weighed
        self._lost_count = 0  #: of them, frames that had to be sent again
        self._line_free = self._now  #: when the UART has sent all handed out (the model)
        self._pace = 1.0  #: the line's character time over c, as acknowledgements show it
        own, peer = session.isns(role)
        self._control_seq = (own + 1) & _U32
        self._limit = send_buffer if send_buffer is not None else max(65536, 4 * window * self._top)
        # sender
        self._snd_una = self._snd_next = (own + 1) & _U32
        self._peer_window = window  #: frames from snd_una on the peer takes (its last DACK)
        self._flight: dict[int, _Flight] = {}
        self._resend: deque[int] = deque()
        self._pending = bytearray()
        self._framed = 0  #: stream bytes framed so far
        self._ends: deque[int] = deque()  #: stream positions where messages end
        self._acked_bytes = 0
        # receiver
        self._rcv_next = (peer + 1) & _U32
        self._held: dict[int, tuple[bytes, bool]] = {}
        self._rcv_window = window
        self._since_dack = 0
        self._ack_due: float | None = None
        self._dack_now = False
        self._naked: dict[int, float] = {}
        self._nak_queue: list[int] = []
        self._update_due: float | None = None
        self._update_tries = 0
        self._events: deque[TransferEvent] = deque()
        self._stats = TransferStats()
        self._failed: str | None = None

    # -- what the application reads ---------------------------------------------------------

    @property
    def frame_size(self) -> int:
        return self._size

    @property
    def window(self) -> int:
        return self._window

    def _timeout_base(self, size: int) -> float:
        """rto(0) for frames of ``size`` payload bytes (§17.6)."""
        chars = (self._ack_every + self._timers.queue_frames) * frame_chars(size)
        return self._timers.rto_base + chars * self._c

    def _set_segment(self, size: int) -> None:
        """This end's full frames carry ``size`` bytes: its timers and queue follow."""
        self._segment = size
        self._rto0 = self._timeout_base(size)
        self._queue = 2.0 * frame_chars(size)  #: bytes kept queued ahead of the UART

    def _set_peer_segment(self, size: int) -> None:
        """The peer's full frames carry ``size`` bytes: the receiver's waits follow."""
        self._peer_segment = size
        frame_time = frame_chars(size) * self._c
        self._ack_delay = max(
            self._timers.ack_delay_min, self._timers.ack_delay_frames * frame_time
        )
        self._nak_holdoff = self._timeout_base(size)

    @property
    def segment(self) -> int:
        """The payload of this end's full DATA frames now (at most :attr:`frame_size`)."""
        return self._segment

    def rto(self, attempt: int) -> float:
        """The retransmission timeout of a frame's try ``attempt`` (0, 1, ...)."""
        factor: int = min(1 << attempt, self._timers.backoff_limit)
        return factor * self._rto0

    @property
    def stats(self) -> TransferStats:
        return dataclasses.replace(self._stats)

    @property
    def failed(self) -> str | None:
        """Why the transfer failed, or None."""
        return self._failed

    @property
    def writable(self) -> int:
        """Bytes :meth:`send` takes now."""
        return max(0, self._limit - len(self._pending))

    @property
    def acked_bytes(self) -> int:
        """Payload bytes of this end's stream the peer has acknowledged (cumulatively)."""
        return self._acked_bytes

    @property
    def unacknowledged(self) -> int:
        """Bytes given to :meth:`send` and not acknowledged yet."""
        return self.queued_bytes - self._acked_bytes

    @property
    def queued_bytes(self) -> int:
        """Bytes given to :meth:`send` so far (the position in this end's stream)."""
        return self._framed + len(self._pending)

    @property
    def idle(self) -> bool:
        """Everything sent has been acknowledged (nothing pending, nothing in flight)."""
        return not self._pending and not self._ends and not self._flight

    @property
    def ready(self) -> bool:
        """Would :meth:`frames_to_send` hand out a frame now (with room in the
        UART's queue beyond what the model of the line counts)?"""
        if self._failed is not None:
            return False
        return bool(self._nak_queue or self._dack_now) or (self._room() > 0 and self._has_data())

    def _queued(self) -> bool:
        """Anything queued to send as DATA (cheap; :meth:`_has_data` says whether
        the window and §17.2 let it go now)?"""
        return bool(self._pending or self._ends or self._resend)

    def _has_data(self) -> bool:
        """Resends or new frames waiting (for room in the queue)."""
        if not self._queued():
            return False
        if self._next_size() is not None:
            return True
        while self._resend and not self._resendable(self._resend[0]):
            self._resend.popleft()
        return bool(self._resend)

    def _held_back(self) -> bool:
        """Is DATA waiting that only the model's full queue keeps back?"""
        return self._has_data() and self._room() <= 0

    def _room(self) -> float:
        """Bytes the model's UART queue takes now."""
        # two full frames' time at c ahead of the UART, in bytes at the line's pace
        return (self._queue - max(0.0, self._line_free - self._now) / self._c) / self._pace

    def _resendable(self, seq: int) -> bool:
        f = self._flight.get(seq)
        return f is not None and f.queued and not f.sacked

    def events(self) -> list[TransferEvent]:
        out = list(self._events)
        self._events.clear()
        return out

    def get_timer(self) -> float | None:
        """When :meth:`handle_timer` must be called next, or None."""
        if self._failed is not None:
            return None
        times = [t for t in (self._ack_due, self._update_due) if t is not None]
        if self._flight:
            times += [f.due for f in self._flight.values() if f.due is not None]
        if self._held_back():  # when the queue has room again
            times.append(self._line_free - (self._queue - 1) * self._c)
        return min(times) if times else None

    # -- what the application does ------------------------------------------------------------

    def send(self, data: bytes | bytearray | memoryview, *, eom: bool = True) -> None:
        """Queue ``data``; ``eom``: it ends a message (an empty ``data`` with eom
        sends an empty message). Raises :class:`LocalProtocolError` beyond
        :attr:`writable` (check it first: that is the flow control)."""
        if self._failed is not None:
            raise LocalProtocolError(f"the transfer has failed: {self._failed}")
        if len(data) > self.writable:
            raise LocalProtocolError(
                f"{len(data)} bytes do not fit the send buffer ({self.writable} free)"
            )
        self._pending += data
        if eom:
            self._ends.append(self._framed + len(self._pending))

    def set_receive_window(self, frames: int, now: float) -> None:
        """How many frames this end takes now (0 pauses the peer; at most the window)."""
        self._advance(now)
        if not 0 <= frames <= self._window:
            raise LocalProtocolError(f"the receive window is 0..{self._window}, not {frames}")
        reopened = self._rcv_window == 0 and frames > 0
        self._rcv_window = frames
        if reopened:
            self._dack_now = True
            self._update_tries = 1
            self._update_due = self._now + self.rto(0)

    def receive_frame(self, frame: Frame, now: float) -> None:
        """A DATA, DACK or NAK of the session (the handshake core checked the session)."""
        self._advance(now)
        if self._failed is not None:
            return
        self._on_ack(frame.ack)
        kind = frame.kind
        if kind is FrameType.DATA:
            self._rx_data(frame)
        elif kind is FrameType.DACK:
            self._rx_dack(frame)
        elif kind is FrameType.NAK:
            self._rx_nak(frame)
        else:
            self._ignore(frame, f"{frame.name} is not a transfer frame")

    def handle_timer(self, now: float) -> None:
        self._advance(now)
        if self._failed is not None:
            return
        t = self._now
        if self._ack_due is not None and self._ack_due <= t:
            self._ack_due = None
            self._dack_now = True
        if self._update_due is not None and self._update_due <= t:
            if self._update_tries < self._timers.data_tries:
                self._dack_now = True
                self._update_tries += 1
                self._update_due = t + self.rto(0)
            else:
                self._update_due = None
        for seq, f in self._flight.items():
            if f.due is not None and f.due <= t and not f.sacked and not f.queued:
                if f.tries >= self._timers.data_tries:
                    self._fail(
                        f"the peer stopped acknowledging: frame {seq:#010x} was sent "
                        f"{f.tries} times"
                    )
                    return
                f.due = None
                f.queued = True
                self._resend.append(seq)
                self._stats.retransmissions += 1
                self._lost_count += 1

    def frames_to_send(self, now: float, budget: int | None = None) -> list[Frame]:
        """Frames to hand to the UART now, in the order of §17.6: NAK, DACK,
        retransmissions, new DATA. ``budget``: stop once about that many bytes
        (payload plus overhead) are handed out (None: no limit but the window)."""
        self._advance(now)
        out: list[Frame] = []
        if self._failed is not None or not (self._nak_queue or self._dack_now or self._queued()):
            return out
        room = self._room() if budget is None else min(budget, self._room())
        if self._nak_queue:
            seqs, self._nak_queue = self._nak_queue[:MAX_NAKS], self._nak_queue[MAX_NAKS:]
            out.append(self._control(FrameType.NAK, encode_nak(seqs)))
            self._stats.naks_sent += 1
            room -= self._hand_out(_wire_size(out[-1].payload))
        if self._dack_now:
            frame = self._dack()
            out.append(frame)
            room -= self._hand_out(_wire_size(frame.payload))
        while room > 0 and self._resend:
            seq = self._resend.popleft()
            if not self._resendable(seq):
                continue
            f = self._flight[seq]
            f.queued = False
            frame, size = self._data(seq, f, retry=True)
            out.append(frame)
            room -= size
        while room > 0 and (payload := self._next_payload()) is not None:
            data, eom = payload
            seq = self._snd_next
            self._snd_next = (seq + 1) & _U32
            f = _Flight(data, eom, _wire_size(data))
            self._flight[seq] = f
            self._stats.frames_sent += 1
            self._stats.bytes_sent += len(data)
            self._weigh_segment()
            frame, size = self._data(seq, f, retry=False)
            out.append(frame)
            room -= size
        if out and out[-1].kind is FrameType.DATA and self._held_back():
            # The line model holds back what is queued: ask for the acknowledgement
            # that moves it on now, not after the peer's delay (§17.4).
            last = out[-1]
            out[-1] = Frame.unchecked(
                FrameType.DATA, last.session, last.seq, last.ack, last.payload, last.flags | _POLL
            )
        return out

    # -- internals: sending -----------------------------------------------------------------

    def _advance(self, now: float) -> None:
        self._now = max(self._now, float(now))

    def _control(self, ftype: FrameType, payload: bytes) -> Frame:
        return Frame.unchecked(ftype, self._sid, self._control_seq, self._rcv_next, payload)

    def _dack(self) -> Frame:
        self._dack_now = False
        self._ack_due = None
        self._since_dack = 0
        self._stats.dacks_sent += 1
        return self._control(FrameType.DACK, encode_dack(self._rcv_window, self._sack_blocks()))

    def _sack_blocks(self) -> list[tuple[int, int]]:
        if not self._held:
            return []
        offsets = sorted(_distance(seq, self._rcv_next) for seq in self._held)
        blocks: list[tuple[int, int]] = []
        start = prev = offsets[0]
        for off in offsets[1:]:
            if off != prev + 1:
                blocks.append((start, prev + 1))
                start = off
            prev = off
        blocks.append((start, prev + 1))
        base = self._rcv_next
        return [((base + a) & _U32, (base + b) & _U32) for a, b in blocks[:MAX_SACK_BLOCKS]]

    def _hand_out(self, size: int) -> int:
        """A frame of ``size`` bytes on the wire goes to the UART: the model's line
        is busy for it (returns ``size``)."""
        self._line_free = max(self._now, self._line_free) + size * self._c * self._pace
        return size

    def _data(self, seq: int, f: _Flight, *, retry: bool) -> tuple[Frame, int]:
        """A DATA frame handed to the UART, and its size on the wire."""
        f.tries += 1
        f.handed = self._now
        size = self._hand_out(f.size)
        f.leaves = self._line_free
        f.due = f.leaves + self.rto(f.tries - 1)
        flags = (_EOM if f.eom else 0) | (_RETRY if retry else 0)
        frame = Frame.unchecked(FrameType.DATA, self._sid, seq, self._rcv_next, f.payload, flags)
        return frame, size

    def _next_size(self) -> tuple[int, bool] | None:
        """(payload size, eom) of the next new frame, if the window and §17.2 allow one now."""
        if _distance(self._snd_next, self._snd_una) >= self._window:
            return None
        if _distance(self._snd_next, self._snd_una) >= self._peer_window:
            return None
        if self._ends and self._ends[0] - self._framed <= self._segment:
            return self._ends[0] - self._framed, True
        if len(self._pending) >= self._segment:
            return self._segment, False
        if self._pending and not self._flight:
            return len(self._pending), False
        return None

    def _next_payload(self) -> tuple[bytes, bool] | None:
        size = self._next_size()
        if size is None:
            return None
        if size[1]:
            self._ends.popleft()
        return self._take(size[0]), size[1]

    def _weigh_segment(self) -> None:
        """Every SEGMENT_SAMPLE new frames (sooner once 4 of at least 8 had to be
        sent again), fit the segment size to the loss seen
        (§17.2). Errors that strike bits at random cost long frames more often: the
        best payload is about sqrt(overhead / byte error rate). A sample with no
        loss doubles the segment again, up to its largest (`_top`)."""
        self._sent_count += 1
        sent, lost = self._sent_count, self._lost_count
        if sent < SEGMENT_SAMPLE and not (sent >= 8 and lost >= 4):  # heavy loss: sooner
            return
        share = min(lost / sent, 0.5)
        self._sent_count = self._lost_count = 0
        if share == 0:
            size = min(self._top, 2 * self._segment)
        else:
            per_byte = -math.log1p(-share) / (self._segment + _FRAMING)
            best = math.sqrt(_FRAMING / per_byte)
            size = self._top
            while size > MIN_SEGMENT and size > best * 1.4:
                size //= 2
            size = max(size, min(self._top, MIN_SEGMENT))
        if size != self._segment:
            self._set_segment(size)

    def _take(self, size: int) -> bytes:
        data = bytes(self._pending[:size])
        del self._pending[:size]
        self._framed += size
        return data

    # -- internals: receiving ---------------------------------------------------------------

    def _ignore(self, frame: Frame, reason: str) -> None:
        self._stats.ignored += 1
        self._events.append(Ignored(frame, reason))

    def _on_ack(self, ack: int) -> None:
        """A cumulative acknowledgement: every frame before ``ack`` arrived."""
        advance = _distance(ack, self._snd_una)
        if advance == 0 or advance > _distance(self._snd_next, self._snd_una):
            return
        for _ in range(advance):
            f = self._flight.pop(self._snd_una)
            self._acked_bytes += len(f.payload)
            self._snd_una = (self._snd_una + 1) & _U32
        self._calibrate(f)  # the newest: its acknowledgement waited for no later frame

    def _rx_dack(self, frame: Frame) -> None:
        try:
            window, blocks = decode_dack(frame.payload)
        except FrameError as e:
            self._ignore(frame, f"a DACK that does not parse: {e}")
            return
        self._stats.dacks_received += 1
        if self._acks_sent(frame.ack):
            self._peer_window = window
        outstanding = _distance(self._snd_next, self._snd_una)
        for start, end in blocks:
            first, last = _distance(start, self._snd_una), _distance(end, self._snd_una)
            if first >= last or last > outstanding:
                continue
            for k in range(first, last):
                f = self._flight.get((self._snd_una + k) & _U32)
                if f is not None and not f.sacked:
                    f.sacked = True
                    f.due = None
        if window == 0:  # a paused receiver is not a lost one (§17.5)
            for f in self._flight.values():
                f.tries = min(f.tries, 1)

    def _calibrate(self, f: _Flight) -> None:
        """An acknowledged frame the model has not sent yet: the line is faster than
        the model (an unpaced pty pair, a UART with its own clock). Catch the model
        up, and learn how much faster (§17.6): a frame acknowledged sooner than its
        own airtime at c has crossed a faster line; the pace (the model's share of
        c) follows that share, never above 1 (a paced line)."""
        if f.leaves is None or f.tries != 1:
            return  # which copy was acknowledged is unknown (Karn)
        airtime = f.size * self._c  # the frame alone, at c
        share = min(1.0, max((self._now - f.handed) / airtime, MIN_PACE))
        self._pace = (self._pace + share) / 2
        if f.leaves > self._now:
            self._line_free = max(self._now, self._line_free - (f.leaves - self._now))

    def _acks_sent(self, ack: int) -> bool:
        """Is ``ack`` within what this end has sent (snd_una .. snd_next)?"""
        return _distance(ack, self._snd_una) <= _distance(self._snd_next, self._snd_una)

    def _rx_nak(self, frame: Frame) -> None:
        try:
            seqs = decode_nak(frame.payload)
        except FrameError as e:
            self._ignore(frame, f"a NAK that does not parse: {e}")
            return
        self._stats.naks_received += 1
        for seq in seqs:
            f = self._flight.get(seq)
            if f is None or f.sacked or f.queued or f.leaves is None:
                continue
            if self._now < f.leaves:
                continue  # its last copy is still on its way
            if f.tries >= self._timers.data_tries:
                continue  # its own timer fails the link
            f.due = None
            f.queued = True
            self._resend.append(seq)
            self._stats.fast_retransmissions += 1
            self._lost_count += 1

    def _rx_data(self, frame: Frame) -> None:
        seq = frame.seq
        d = _distance(seq, self._rcv_next)
        self._update_due = None
        if d >= _HALF or seq in self._held:
            self._stats.duplicates += 1
            self._dack_now = True
            return
        if d >= self._rcv_window:
            self._stats.beyond_window += 1
            self._dack_now = True
            return
        self._stats.frames_received += 1
        self._since_dack += 1
        eom = bool(frame.flags & _EOM)
        if not eom and len(frame.payload) != self._peer_segment and frame.payload:
            self._set_peer_segment(len(frame.payload))  # the peer's full frames
        if d == 0:
            self._deliver(frame.payload, eom)
            while (held := self._held.pop(self._rcv_next, None)) is not None:
                self._deliver(*held)
            for old in [s for s in self._naked if _distance(s, self._rcv_next) >= _HALF]:
                del self._naked[old]
        else:
            self._held[seq] = (frame.payload, eom)
            self._stats.out_of_order += 1
            self._nak_gap(seq)
        if self._since_dack >= self._ack_every or frame.flags & _POLL:
            self._dack_now = True
        elif not self._dack_now and self._ack_due is None:
            self._ack_due = self._now + self._ack_delay

    def _deliver(self, payload: bytes, eom: bool) -> None:
        self._rcv_next = (self._rcv_next + 1) & _U32
        self._stats.bytes_received += len(payload)
        self._events.append(Data(payload, eom))
        if eom:
            self._dack_now = True

    def _nak_gap(self, seq: int) -> None:
        """NAK the missing frames before ``seq`` not NAKed within rto(0)."""
        holdoff = self._nak_holdoff
        queued = set(self._nak_queue)
        for k in range(_distance(seq, self._rcv_next)):
            missing = (self._rcv_next + k) & _U32
            if missing in self._held or missing in queued:
                continue
            last = self._naked.get(missing)
            if last is not None and self._now - last < holdoff:
                continue
            self._naked[missing] = self._now
            self._nak_queue.append(missing)

    def _fail(self, reason: str) -> None:
        self._failed = reason
        self._ack_due = self._update_due = None
        self._events.append(TransferFailed(reason))
