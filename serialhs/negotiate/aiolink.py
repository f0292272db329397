"""Running the SHS handshake on an AsyncPort (the asyncio adapter).

    from serialhs.driver.aio import AsyncPort
    from serialhs.negotiate.aiolink import negotiate_async

    async with AsyncPort("/dev/ttyUSB0", "9600 8N1") as port:
        result = await negotiate_async(port, "initiator", capabilities, timeout=60)
        print(result.settings, result.steps)

The same :class:`~serialhs.negotiate.link.Negotiation` as the synchronous
:func:`~serialhs.negotiate.link.negotiate` decides what to do about every event
of the core; this loop only carries its actions out without blocking the event
loop: writes, drains and settings changes run in the default executor (through
AsyncPort), reads wait on the port's stream.

Reads take bytes from :attr:`AsyncPort.reader` with ``asyncio.wait_for`` on the
stream's own ``read``: a read cut short by its timeout is cancelled before it
takes anything from the stream, so no byte is lost between two polls.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Literal

from serialhs.driver.aio import AsyncPort
from serialhs.driver.port import CHUNK
from serialhs.driver.settings import SerialSettings
from serialhs.errors import PortDisconnectedError
from serialhs.negotiate.capabilities import Capabilities
from serialhs.negotiate.handshake import DEFAULT_TIMERS, SAFE_DEFAULT, Timers
from serialhs.negotiate.link import (
    DRAIN_TIMEOUT,
    WRITE_TIMEOUT,
    Finish,
    LinkResult,
    Negotiation,
    Read,
    Switch,
    drain_for_switch,
)

__all__ = ["negotiate_async"]

#: Shortest wait of a read: a timer that is already due still lets bytes that
#: have arrived be taken (a zero wait would cancel the read before it runs).
MIN_WAIT = 0.001


async def negotiate_async(
    port: AsyncPort,
    role: Literal["initiator", "responder"],
    capabilities: Capabilities,
    *,
    timeout: float = 120.0,
    safe: SerialSettings = SAFE_DEFAULT,
    on_event: Callable[[object], None] | None = None,
    timers: Timers = DEFAULT_TIMERS,
) -> LinkResult:
    """Agree settings with the peer on ``port`` (open) and switch to them.

    The same semantics and exceptions as :func:`serialhs.negotiate.link.negotiate`:
    the port is put at ``safe`` first; returns the agreement, or raises
    PeerNotIdentifiedError (nothing answered: the port stays at ``safe``),
    PeerResetError or NegotiationFailed, the port back at ``safe``.
    ``on_event`` sees every core event; ``timers`` must match the peer's."""
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
    await port.reconfigure(safe)
    while True:
        action = run.next_action(time.monotonic())
        if action.data:
            await port.write(action.data, timeout=WRITE_TIMEOUT)
        if isinstance(action, Read):
            data = await _read(port, max(action.timeout, MIN_WAIT))
            run.received(data, time.monotonic())
        elif isinstance(action, Switch):
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(None, drain_for_switch, port.port)
            await port.reconfigure(action.settings)
            run.applied(time.monotonic())
        elif isinstance(action, Finish):
            await port.drain(timeout=DRAIN_TIMEOUT)
            return action.result
        else:
            raise action.error


async def _read(port: AsyncPort, wait: float) -> bytes:
    """What arrives within ``wait`` seconds, b"" if nothing."""
    reader = port.reader
    try:
        data = await asyncio.wait_for(reader.read(CHUNK), wait)
    except TimeoutError:
        return b""
    if not data:
        raise PortDisconnectedError("port closed", port=port.url, operation="read from")
    return data
