"""Running the SHS handshake on a serialhs Port (the synchronous adapter).

    from serialhs.negotiate.link import negotiate

    with Port("/dev/ttyUSB0", "9600 8N1") as port:
        result = negotiate(port, "initiator", capabilities, timeout=60)
        print(result.settings, result.steps)

The core (:mod:`serialhs.negotiate.handshake`) decides everything; this adapter
moves its bytes, drains and switches the port when told, and passes the time.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable
from typing import Literal

from serialhs.driver.port import Port
from serialhs.driver.settings import SerialSettings
from serialhs.errors import (
    ConfigError,
    NegotiationFailed,
    PeerNotIdentifiedError,
    PeerResetError,
    ReadTimeout,
)
from serialhs.negotiate.capabilities import Capabilities
from serialhs.negotiate.handshake import (
    SAFE_DEFAULT,
    Agreed,
    Closed,
    Failed,
    Handshake,
    PeerNotIdentified,
    Reset,
    SwitchSettings,
    TrainingStep,
)

__all__ = ["LinkResult", "negotiate"]

log = logging.getLogger("serialhs.negotiate")

#: Longest a read waits before the adapter looks at the core's timers again.
POLL = 0.02


@dataclasses.dataclass(frozen=True, slots=True)
class LinkResult:
    """An agreement and how the line got there."""

    agreed: Agreed
    steps: tuple[TrainingStep, ...]
    elapsed: float

    @property
    def settings(self) -> SerialSettings:
        return self.agreed.settings


def negotiate(
    port: Port,
    role: Literal["initiator", "responder"],
    capabilities: Capabilities,
    *,
    timeout: float = 120.0,
    safe: SerialSettings = SAFE_DEFAULT,
    on_event: Callable[[object], None] | None = None,
) -> LinkResult:
    """Agree settings with the peer on ``port`` and switch to them.

    The port is put at ``safe`` first. Returns the agreement, or raises
    PeerNotIdentifiedError (nothing answered: the port stays at ``safe``),
    PeerResetError, or NegotiationFailed; the port is back at ``safe`` after
    a failure. ``on_event`` sees every core event (for progress output)."""
    if timeout <= 0:
        raise ConfigError("negotiate needs a positive timeout")
    port.reconfigure(safe)
    start = time.monotonic()
    hs = Handshake(role, capabilities, now=start, safe=safe)
    steps: list[TrainingStep] = []
    deadline = start + timeout
    while True:
        _send(port, hs)
        for event in hs.events():
            if on_event is not None:
                on_event(event)
            if isinstance(event, SwitchSettings):
                _send(port, hs)
                port.drain(timeout=5.0)
                port.reconfigure(event.settings)
                hs.settings_applied(time.monotonic())
                log.info("%s: switched to %s", port.url, event.settings)
            elif isinstance(event, TrainingStep):
                steps.append(event)
            elif isinstance(event, Agreed):
                _send(port, hs)
                port.drain(timeout=5.0)
                return LinkResult(event, tuple(steps), time.monotonic() - start)
            elif isinstance(event, PeerNotIdentified):
                raise PeerNotIdentifiedError(
                    f"peer not identified: {event.reason} ({event.attempts} attempts); "
                    f"the port stays at {event.settings}"
                )
            elif isinstance(event, Reset):
                raise PeerResetError(f"the peer reset the negotiation: {event.reason}")
            elif isinstance(event, Failed | Closed):
                raise NegotiationFailed(f"negotiation failed: {event.reason}")
        now = time.monotonic()
        if now > deadline:
            hs.abort(now, "timed out")
            _send(port, hs)
            port.reconfigure(safe)
            raise NegotiationFailed(f"no agreement within {timeout} s; the port is at {safe}")
        timer = hs.get_timer()
        wait = POLL if timer is None else max(0.0, min(POLL, timer - now))
        try:
            data = port.read_some(timeout=wait) if wait > 0 else port.read_available()
        except ReadTimeout:
            data = b""
        if data:
            hs.receive_data(data, time.monotonic())
        hs.handle_timer(time.monotonic())


def _send(port: Port, hs: Handshake) -> None:
    data = hs.data_to_send()
    if data:
        port.write(data, timeout=10.0)
