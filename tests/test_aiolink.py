"""The SHS handshake from asyncio (negotiate_async) over the virtual wire,
against itself and against the synchronous adapter; and the decisions both
adapters share (link.Negotiation), without a port."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from serialhs.driver.aio import AsyncPort
from serialhs.driver.port import Port
from serialhs.driver.settings import FlowControl, SerialSettings
from serialhs.errors import ConfigError, NegotiationFailed, PeerNotIdentifiedError
from serialhs.negotiate.aiolink import negotiate_async
from serialhs.negotiate.capabilities import Capabilities
from serialhs.negotiate.frames import Flags, Frame, FrameType
from serialhs.negotiate.handshake import (
    DEFAULT_TIMERS,
    Handshake,
    State,
    SwitchSettings,
    Timers,
    TransferFrame,
)
from serialhs.negotiate.link import (
    Finish,
    LinkResult,
    Negotiation,
    Read,
    Switch,
    negotiate,
)
from serialhs.sim.wire import Wire

SAFE = SerialSettings(9600)
#: Fewer probe tries than the protocol's 4, so a rung the wire cannot carry
#: fails in about half a second (both ends must use the same timers).
QUICK_TRAINING = Timers(probe_tries=2, probe_ack_tries=2)


def run(coro, limit=60):
    return asyncio.run(asyncio.wait_for(coro, limit))


def against_sync_responder(
    wire: Wire, caps: Capabilities, initiator, timers: Timers = DEFAULT_TIMERS
) -> tuple[LinkResult, LinkResult]:
    """Run the coroutine ``initiator()`` (end a) against the sync negotiate() in a
    thread on end b; both results, b's checked to be an agreement."""
    results: dict[str, object] = {}

    def responder() -> None:
        with Port(wire.b.pty, SAFE) as port:
            try:
                results["b"] = negotiate(port, "responder", caps, timeout=60, timers=timers)
            except Exception as e:
                results["b"] = e

    thread = threading.Thread(target=responder)
    thread.start()
    try:
        a = run(initiator())
    finally:
        thread.join(70)
    b = results.get("b")
    assert isinstance(b, LinkResult), b
    return a, b


def test_async_initiator_and_sync_responder_agree():
    caps_a = Capabilities.up_to(115200, flow=(FlowControl.NONE, FlowControl.RTSCTS))
    caps_b = Capabilities.up_to(57600, flow=(FlowControl.NONE, FlowControl.RTSCTS))
    events: list[object] = []

    async def initiator() -> LinkResult:
        async with AsyncPort(wire.a.pty, SAFE) as port:
            result = await negotiate_async(
                port, "initiator", caps_a, timeout=60, on_event=events.append
            )
            assert port.port.settings == result.settings  # the port was switched
            return result

    with Wire(settings=SAFE) as wire:
        a, b = against_sync_responder(wire, caps_b, initiator)
    assert a.settings == b.settings
    assert a.settings.baudrate == 57600 and a.settings.flow is FlowControl.RTSCTS
    assert a.agreed.session_id == b.agreed.session_id
    assert a.handshake.state is State.ESTABLISHED  # the core, for the transfer layer
    assert any(type(e).__name__ == "Agreed" for e in events)


def test_async_at_both_ends():
    caps = Capabilities.up_to(115200)

    async def both() -> tuple[LinkResult, LinkResult]:
        async with AsyncPort(wire.a.pty, SAFE) as a, AsyncPort(wire.b.pty, SAFE) as b:
            return await asyncio.gather(
                negotiate_async(a, "initiator", caps, timeout=60),
                negotiate_async(b, "responder", caps, timeout=60),
            )

    with Wire(settings=SAFE) as wire:
        a, b = run(both())
    assert a.settings == b.settings == SerialSettings(115200)
    assert a.agreed.session_id == b.agreed.session_id
    assert a.handshake.state is b.handshake.state is State.ESTABLISHED


def test_async_training_settles_on_the_highest_rate_the_line_carries():
    caps = Capabilities.up_to(115200)

    async def initiator() -> LinkResult:
        async with AsyncPort(wire.a.pty, SAFE) as port:
            return await negotiate_async(port, "initiator", caps, timers=QUICK_TRAINING)

    with Wire(settings=SAFE, max_baud=38400) as wire:
        a, b = against_sync_responder(wire, caps, initiator, QUICK_TRAINING)
    assert a.settings == b.settings
    assert a.settings.baudrate == 38400
    failed = [step.settings.baudrate for step in a.steps if not step.ok]
    assert failed and min(failed) > 38400  # the faster rungs were tried and failed


def test_a_silent_peer_raises_peer_not_identified_at_the_safe_default():
    # Two SYNs instead of six: the same outcome, sooner.
    timers = Timers(syn_tries=2)

    async def lonely() -> None:
        async with AsyncPort(wire.a.pty, SAFE) as port:
            start = time.monotonic()
            with pytest.raises(PeerNotIdentifiedError, match="peer not identified") as caught:
                await negotiate_async(port, "initiator", Capabilities.up_to(115200), timers=timers)
            assert time.monotonic() - start < 10
            assert port.port.settings == SAFE
            assert wire.a.pty in str(caught.value)  # the error names the port

    with Wire(settings=SAFE) as wire:
        run(lonely())


def test_the_overall_timeout_aborts_with_negotiation_failed():
    async def waiting() -> None:
        async with AsyncPort(wire.b.pty, SAFE) as port:
            with pytest.raises(NegotiationFailed, match=r"no agreement within 0\.3 s"):
                await negotiate_async(port, "responder", Capabilities(), timeout=0.3)
            assert port.port.settings == SAFE

    with Wire(settings=SAFE) as wire:
        run(waiting())


def test_a_bad_timeout_is_refused_before_the_port_is_touched():
    async def refused() -> None:
        async with AsyncPort(wire.a.pty, "19200 8N1") as port:
            with pytest.raises(ConfigError, match="timeout"):
                await negotiate_async(port, "initiator", Capabilities(), timeout=0)
            assert port.port.settings == SerialSettings(19200)

    with Wire(settings=SAFE) as wire:
        run(refused())


# -- the shared decisions, without any port ------------------------------------------------


def test_events_after_agreed_reach_the_result_as_backlog():
    """The initiator's VERIFIED is lost and its first DATA frame completes the
    responder's agreement: the TransferFrame that came in the same batch as
    Agreed is handed over in LinkResult.backlog, not dropped."""
    now = 0.0
    initiator = Handshake("initiator", Capabilities(), now=now)
    run = Negotiation("memory", "responder", Capabilities(), now=now, timeout=60)
    result = None
    verified_dropped = False
    for _ in range(2000):
        now += 0.005
        # the initiator's side, with a lossless, instant line and an instant UART
        initiator.handle_timer(now)
        for event in initiator.events():
            if isinstance(event, SwitchSettings):
                initiator.settings_applied(now)
        out = initiator.data_to_send()
        if initiator.state is State.ESTABLISHED and not verified_dropped:
            verified_dropped = True  # the frame that carried VERIFIED is lost
            session = initiator.session
            assert session is not None
            data = Frame(
                FrameType.DATA,
                session.id,
                (session.initiator_isn + 1) & 0xFFFFFFFF,
                (session.responder_isn + 1) & 0xFFFFFFFF,
                b"first",
                int(Flags.EOM),
            )
            initiator.send_transfer(data, now)
            out = initiator.data_to_send()
        # the responder's side: what an adapter does, in memory
        run.received(out, now)
        while True:
            action = run.next_action(now)
            initiator.receive_data(action.data, now)
            if isinstance(action, Switch):
                run.applied(now)
                continue
            break
        if isinstance(action, Finish):
            result = action.result
            break
        assert isinstance(action, Read), action
    assert result is not None and verified_dropped
    assert [type(e) for e in result.backlog] == [TransferFrame]
    assert result.backlog[0].frame.payload == b"first"
    assert result.handshake.state is State.ESTABLISHED
