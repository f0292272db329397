"""An established SHS link with its transfer layer, sans I/O.

A :class:`Channel` joins the handshake core (ESTABLISHED after
:class:`~serialhs.negotiate.handshake.Agreed`: it decodes and encodes frames,
checks the session, sends KEEPALIVEs, notices a lost peer and closes with
FIN) and a :class:`~serialhs.negotiate.transfer.Transfer` (DATA, DACK, NAK).
An adapter drives it like any core::

    ch = Channel(link.handshake, now=clock(), backlog=link.backlog)
    ch.send(b"hello")
    port.write(ch.data_to_send(clock(), budget=ch.queue_budget - port.out_waiting))
    ch.receive_data(port.read_available(), clock())
    ch.handle_timer(clock())            # when get_timer() is due
    for event in ch.events():           # Data, Closed, Failed, Reset, SwitchSettings, ...
        ...

The adapter SHOULD keep about :attr:`Channel.queue_budget` bytes queued ahead of
the UART and no more (docs/protocol.md §17.6): acknowledgements and
retransmissions then do not wait behind a window of data.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from typing import TypeAlias

from serialhs.errors import ConfigError, LocalProtocolError
from serialhs.negotiate.capabilities import TransferProtocol
from serialhs.negotiate.frames import BadFrame
from serialhs.negotiate.handshake import (
    Agreed,
    Closed,
    Event,
    Failed,
    Handshake,
    Reset,
    State,
    TransferFrame,
)
from serialhs.negotiate.transfer import (
    DEFAULT_TRANSFER_TIMERS,
    Transfer,
    TransferEvent,
    TransferFailed,
    TransferStats,
    TransferTimers,
    frame_chars,
)

__all__ = ["Channel", "ChannelEvent"]

ChannelEvent: TypeAlias = Event | TransferEvent


class Channel:
    """The transfer layer on an established handshake core. See the module docstring.

    ``handshake``: a core that has reported :class:`Agreed` with protocol shs.
    ``backlog``: core events that came after Agreed in the same batch (a
    responder's first DATA frame may be what completed its agreement); they are
    processed first.
    """

    def __init__(
        self,
        handshake: Handshake,
        *,
        now: float,
        timers: TransferTimers = DEFAULT_TRANSFER_TIMERS,
        backlog: Iterable[Event] = (),
        send_buffer: int | None = None,
    ) -> None:
        agreed = handshake.agreed
        if agreed is None or handshake.session is None:
            raise ConfigError("a channel needs a handshake that has agreed")
        if agreed.protocol is not TransferProtocol.SHS:
            raise ConfigError(
                f"the link agreed the {agreed.protocol.label} protocol, not shs: "
                "run that protocol on the port instead"
            )
        self._hs = handshake
        self._agreed = agreed
        self._transfer = Transfer(
            handshake.session,
            handshake.role,
            frame_size=agreed.frame_size,
            window=agreed.window,
            settings=agreed.settings,
            now=now,
            timers=timers,
            send_buffer=send_buffer,
            fast=handshake.fast,
        )
        self._events: deque[ChannelEvent] = deque()
        self._bad_frames = 0
        self._wire_bytes = 0
        self._ended: Failed | Reset | Closed | None = None
        self._route(list(backlog), now)

    # -- what the adapter reads ---------------------------------------------------------------

    @property
    def agreed(self) -> Agreed:
        return self._agreed

    @property
    def handshake(self) -> Handshake:
        return self._hs

    @property
    def transfer(self) -> Transfer:
        return self._transfer

    @property
    def stats(self) -> TransferStats:
        return self._transfer.stats

    @property
    def bad_frames(self) -> int:
        """Byte runs that were no good frame (CRC errors, garbage)."""
        return self._bad_frames

    @property
    def bytes_on_wire(self) -> int:
        """Bytes handed to the UART since the channel started (frames, escapes, flags)."""
        return self._wire_bytes

    @property
    def queue_budget(self) -> int:
        """About how many bytes to keep queued ahead of the UART: two full frames."""
        return 2 * frame_chars(self._agreed.frame_size)

    @property
    def ended(self) -> Failed | Reset | Closed | None:
        """The terminal event, once the link has ended."""
        return self._ended

    @property
    def writable(self) -> int:
        return self._transfer.writable if self._ended is None else 0

    @property
    def ready(self) -> bool:
        """Has the transfer layer frames to hand out now (given room in the UART's queue)?"""
        return (
            self._ended is None
            and self._hs.state is State.ESTABLISHED  # closing: no more transfer frames
            and self._transfer.ready
        )

    @property
    def idle(self) -> bool:
        return self._transfer.idle

    @property
    def awaiting(self) -> int:
        """At least how many more bytes the frame arriving now needs (0: none is
        arriving, or its header is not here yet): an adapter need not look at the
        port again before they are there (:attr:`FrameDecoder.awaiting`)."""
        return self._hs.decoder.awaiting

    @property
    def fast(self) -> bool:
        """Does the line deliver faster than its rate (:attr:`Handshake.fast`)? Its
        bytes then come in bursts, not one character time apart."""
        return self._hs.fast

    @property
    def has_events(self) -> bool:
        """Are events waiting for :meth:`events` (an adapter then should not block)?"""
        return bool(self._events)

    def events(self) -> list[ChannelEvent]:
        out = list(self._events)
        self._events.clear()
        return out

    def get_timer(self) -> float | None:
        if self._ended is not None:  # the transfer layer has nothing more to do
            return self._hs.get_timer()
        times = [t for t in (self._hs.get_timer(), self._transfer.get_timer()) if t is not None]
        return min(times) if times else None

    def data_to_send(self, now: float, budget: int | None = None) -> bytes:
        """Bytes to write: the handshake's own frames, then the transfer's (within
        ``budget`` bytes, roughly; None: as the window allows)."""
        if self._ended is None and self._hs.state is State.ESTABLISHED:
            for frame in self._transfer.frames_to_send(now, budget):
                self._hs.send_transfer(frame, now)
        out = self._hs.data_to_send()
        self._wire_bytes += len(out)
        return out

    # -- what the adapter does ----------------------------------------------------------------

    def send(self, data: bytes | bytearray | memoryview, *, eom: bool = True) -> None:
        if self._ended is not None:
            raise LocalProtocolError(f"the link has ended: {self._ended.reason}")
        self._transfer.send(data, eom=eom)

    def set_receive_window(self, frames: int, now: float) -> None:
        self._transfer.set_receive_window(frames, now)

    def receive_data(self, data: bytes | bytearray | memoryview, now: float) -> None:
        self._hs.receive_data(data, now)
        self._route(self._hs.events(), now)

    def handle_timer(self, now: float) -> None:
        self._hs.handle_timer(now)
        self._route(self._hs.events(), now)
        if self._ended is None:
            self._transfer.handle_timer(now)
            self._take_transfer_events(now)

    def close(self, now: float) -> None:
        """FIN (docs/protocol.md §17.7): call it once :attr:`idle`. Closing a link
        that is already closing or ended does nothing."""
        if self._ended is not None or self._hs.state is not State.ESTABLISHED:
            return
        if not self._transfer.idle:
            raise LocalProtocolError(
                f"{self._transfer.unacknowledged} bytes are not acknowledged yet; "
                "close when the channel is idle (or abort)"
            )
        self._hs.close(now)
        self._route(self._hs.events(), now)

    def abort(self, now: float, reason: str = "aborted") -> None:
        if self._ended is None:
            self._hs.abort(now, reason)
            self._route(self._hs.events(), now)

    # -- internals -------------------------------------------------------------------------

    def _route(self, events: list[Event], now: float) -> None:
        for event in events:
            if isinstance(event, TransferFrame):
                self._transfer.receive_frame(event.frame, now)
                self._take_transfer_events(now)
                continue
            if isinstance(event, BadFrame):
                self._bad_frames += 1
            elif isinstance(event, Failed | Reset | Closed) and self._ended is None:
                self._ended = event
            self._events.append(event)

    def _take_transfer_events(self, now: float) -> None:
        for event in self._transfer.events():
            self._events.append(event)
            if isinstance(event, TransferFailed) and self._ended is None:
                self._hs.abort(now, event.reason)
                self._route(self._hs.events(), now)
