"""Running the SHS handshake on a serialhs Port (the synchronous adapter).

    from serialhs.negotiate.link import negotiate

    with Port("/dev/ttyUSB0", "9600 8N1") as port:
        result = negotiate(port, "initiator", capabilities, timeout=60)
        print(result.settings, result.steps)

The core (:mod:`serialhs.negotiate.handshake`) decides everything the protocol
needs. What an adapter does about each of the core's events (write, drain and
switch the port, collect the training steps, turn the outcome into a
:class:`LinkResult` or an exception, give up at the overall timeout) is decided
once, by :class:`Negotiation`: it answers every :meth:`~Negotiation.next_action`
call with one :class:`Action`, and the adapters only carry it out. This module's
:func:`negotiate` does that on a :class:`~serialhs.driver.port.Port`;
:func:`serialhs.negotiate.aiolink.negotiate_async` does the same on an
:class:`~serialhs.driver.aio.AsyncPort`::

    run = Negotiation(port.url, role, capabilities, now=clock(), timeout=60)
    port.reconfigure(run.safe)
    while True:
        action = run.next_action(clock())
        port.write(action.data)                        # every action: write first
        match action:
            case Read(timeout=t):    run.received(read_at_most(t), clock())
            case Switch(settings=s): port.drain(); port.reconfigure(s); run.applied(clock())
            case Finish(result=r):   port.drain(); return r
            case Fail(error=e):      raise e
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import math
import time
from collections.abc import Callable
from typing import Literal, TypeAlias

from serialhs.driver.port import Port
from serialhs.driver.settings import SerialSettings
from serialhs.errors import (
    ConfigError,
    NegotiationFailed,
    PeerNotIdentifiedError,
    PeerResetError,
    ReadTimeout,
    WriteTimeout,
)
from serialhs.negotiate.capabilities import Capabilities
from serialhs.negotiate.handshake import (
    DEFAULT_TIMERS,
    SAFE_DEFAULT,
    Agreed,
    Closed,
    Event,
    Failed,
    Handshake,
    PeerNotIdentified,
    Reset,
    SwitchSettings,
    Timers,
    TrainingStep,
)

__all__ = [
    "Action",
    "Fail",
    "Finish",
    "LinkResult",
    "Negotiation",
    "Read",
    "Switch",
    "drain_for_switch",
    "negotiate",
]

log = logging.getLogger("serialhs.negotiate")

#: Longest a read waits before the adapter looks at the core's timers again.
POLL = 0.02
#: Longest one write of the core's bytes may take.
WRITE_TIMEOUT = 10.0
#: Longest the bytes written before a settings change may take to leave the port.
DRAIN_TIMEOUT = 3.0


@dataclasses.dataclass(frozen=True, slots=True)
class LinkResult:
    """An agreement and how the line got there."""

    agreed: Agreed
    steps: tuple[TrainingStep, ...]
    elapsed: float
    handshake: Handshake = dataclasses.field(repr=False, compare=False)
    """The core, ESTABLISHED: the transfer layer runs on it (keep-alive, FIN)."""
    backlog: tuple[Event, ...] = dataclasses.field(default=(), repr=False, compare=False)
    """Core events that came after Agreed in the same batch (a responder's first
    DATA frame can be what completed its agreement), for the transfer layer to
    take first; ``on_event`` has not seen them."""

    @property
    def settings(self) -> SerialSettings:
        return self.agreed.settings


# -- what an adapter is asked to do ------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class Read:
    """Write ``data``, then read what arrives within ``timeout`` seconds (0: only
    what has arrived already) and pass it, even if empty, to
    :meth:`Negotiation.received`."""

    data: bytes
    timeout: float


@dataclasses.dataclass(frozen=True, slots=True)
class Switch:
    """Write ``data``, wait until it has left the port (drain), apply
    ``settings`` to the port, then call :meth:`Negotiation.applied`."""

    data: bytes
    settings: SerialSettings


@dataclasses.dataclass(frozen=True, slots=True)
class Finish:
    """Write ``data``, drain, and return ``result``: the link is agreed."""

    data: bytes
    result: LinkResult


@dataclasses.dataclass(frozen=True, slots=True)
class Fail:
    """Write ``data`` (a RST to the peer, when there is one), then raise ``error``."""

    data: bytes
    error: NegotiationFailed


Action: TypeAlias = Read | Switch | Finish | Fail


class Negotiation:
    """One negotiation in progress: the handshake core and what to do about each
    of its events. Both adapters run it; it does no I/O and reads no clock.

    ``port`` names the port in error messages. ``now``: the current time
    (monotonic seconds). ``timeout``: the longest the whole negotiation may take;
    then the core is aborted (a RST to the peer if there is a session), the port
    is sent back to ``safe`` and :class:`~serialhs.errors.NegotiationFailed` is
    raised. ``on_event`` sees every core event (for progress output). ``timers``
    are the protocol's times and tries (both ends must use the same values).
    """

    def __init__(
        self,
        port: str,
        role: Literal["initiator", "responder"],
        capabilities: Capabilities,
        *,
        now: float,
        timeout: float = 120.0,
        safe: SerialSettings = SAFE_DEFAULT,
        on_event: Callable[[object], None] | None = None,
        timers: Timers = DEFAULT_TIMERS,
    ) -> None:
        if (
            isinstance(timeout, bool)
            or not isinstance(timeout, int | float)
            or not math.isfinite(timeout)
            or timeout <= 0
        ):
            raise ConfigError(
                f"negotiate needs a positive, finite timeout in seconds, not {timeout!r}"
            )
        self.port = port
        self.timeout = float(timeout)
        self.handshake = Handshake(role, capabilities, now=now, safe=safe, timers=timers)
        self._on_event = on_event
        self._start = now
        self._deadline = now + timeout
        self._steps: list[TrainingStep] = []
        self._pending: collections.deque[Event] = collections.deque()
        self._timed_out = False

    @property
    def safe(self) -> SerialSettings:
        """The settings the port starts at and falls back to."""
        return self.handshake.safe

    @property
    def steps(self) -> tuple[TrainingStep, ...]:
        """The rungs of the ladder tried so far."""
        return tuple(self._steps)

    def next_action(self, now: float) -> Action:
        """What the adapter must do now. Call again after doing it."""
        hs = self.handshake
        while True:
            self._pending.extend(hs.events())
            while self._pending:
                event = self._pending.popleft()
                if self._on_event is not None:
                    self._on_event(event)
                action = self._decide(event, now)
                if action is not None:
                    return action
            if now > self._deadline and not self._timed_out:
                self._timed_out = True
                hs.abort(now, "timed out")  # Failed, after a SwitchSettings if not at safe
                continue
            timer = hs.get_timer()
            wait = POLL if timer is None else max(0.0, min(POLL, timer - now))
            return Read(hs.data_to_send(), wait)

    def received(self, data: bytes, now: float) -> None:
        """What the adapter read (possibly nothing) at ``now``; runs the core's timers."""
        if data:
            self.handshake.receive_data(data, now)
        self.handshake.handle_timer(now)

    def applied(self, now: float) -> None:
        """The port has taken the settings of the last :class:`Switch`."""
        self.handshake.settings_applied(now)
        log.info("%s: switched to %s", self.port, self.handshake.settings)

    def _decide(self, event: Event, now: float) -> Action | None:
        hs = self.handshake
        if isinstance(event, SwitchSettings):
            return Switch(hs.data_to_send(), event.settings)
        if isinstance(event, TrainingStep):
            self._steps.append(event)
            return None
        if isinstance(event, Agreed):
            backlog = (*self._pending, *hs.events())
            self._pending.clear()
            result = LinkResult(event, tuple(self._steps), now - self._start, hs, backlog)
            return Finish(hs.data_to_send(), result)
        if isinstance(event, PeerNotIdentified):
            error: NegotiationFailed = PeerNotIdentifiedError(
                f"peer not identified: {event.reason} ({event.attempts} attempts); "
                f"the port stays at {event.settings}",
                port=self.port,
                hint="is the peer running, and at the same safe settings? "
                "'serialhs autobaud --peer' finds the rate it listens at",
            )
        elif isinstance(event, Reset):
            error = PeerResetError(
                f"the peer reset the negotiation: {event.reason}", code=event.code, port=self.port
            )
        elif isinstance(event, Failed | Closed) and self._timed_out:
            error = NegotiationFailed(
                f"no agreement within {self.timeout:g} s; the port is at {self.safe}",
                port=self.port,
            )
        elif isinstance(event, Failed):
            error = NegotiationFailed(
                f"negotiation failed: {event.reason}", code=event.code, port=self.port
            )
        elif isinstance(event, Closed):
            error = NegotiationFailed(f"negotiation failed: {event.reason}", port=self.port)
        else:
            return None  # PeerIdentified, Verified, Fallback, Ignored, BadFrame, TransferFrame
        return Fail(hs.data_to_send(), error)


# -- the synchronous adapter -------------------------------------------------------------


def negotiate(
    port: Port,
    role: Literal["initiator", "responder"],
    capabilities: Capabilities,
    *,
    timeout: float = 120.0,
    safe: SerialSettings = SAFE_DEFAULT,
    on_event: Callable[[object], None] | None = None,
    timers: Timers = DEFAULT_TIMERS,
) -> LinkResult:
    """Agree settings with the peer on ``port`` and switch to them.

    The port is put at ``safe`` first. Returns the agreement, or raises
    PeerNotIdentifiedError (nothing answered: the port stays at ``safe``),
    PeerResetError, or NegotiationFailed; the port is back at ``safe`` after
    a failure. The port's own errors go through as they are: a port that goes
    away mid-handshake (unplugged, the other end of a pty closed) raises
    PortDisconnectedError, and one that stops taking bytes WriteTimeout; the
    port is then in no known state. ``on_event`` sees every core event (for
    progress output). ``timers``: the protocol's times and tries; both ends
    must use the same."""
    run = Negotiation(
        port.url,
        role,
        capabilities,
        now=time.monotonic(),
        timeout=timeout,
        safe=safe,
        on_event=on_event,
        timers=timers,
    )
    port.reconfigure(safe)
    while True:
        action = run.next_action(time.monotonic())
        if action.data:
            port.write(action.data, timeout=WRITE_TIMEOUT)
        if isinstance(action, Read):
            run.received(_read(port, action.timeout), time.monotonic())
        elif isinstance(action, Switch):
            drain_for_switch(port)
            port.reconfigure(action.settings)
            run.applied(time.monotonic())
        elif isinstance(action, Finish):
            port.drain(timeout=DRAIN_TIMEOUT)
            return action.result
        else:
            raise action.error


def drain_for_switch(port: Port) -> None:
    """Let what was written leave the port before its settings change. Bytes that
    cannot leave (flow control agreed but CTS not wired, a peer holding XOFF) are
    discarded: the settings must change within the core's apply time, and bytes
    held back would go out garbled at the next settings anyway."""
    try:
        port.drain(timeout=DRAIN_TIMEOUT)
    except WriteTimeout as e:
        log.warning("%s: output held back (%s); discarded before the settings change", port.url, e)
        port.reset_output()


def _read(port: Port, wait: float) -> bytes:
    """What arrives within ``wait`` seconds (0: what has arrived), b"" if nothing."""
    try:
        return port.read_some(timeout=wait) if wait > 0 else port.read_available()
    except ReadTimeout as e:
        return e.partial
