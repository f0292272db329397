"""The SHS handshake on serialhs ports over the virtual wire."""

from __future__ import annotations

import json
import threading
import time

import pytest
from commands import run_pair

from serialhs.driver.port import Port
from serialhs.driver.settings import FlowControl, SerialSettings
from serialhs.driver.transcript import Transcript
from serialhs.errors import PeerNotIdentifiedError
from serialhs.negotiate.capabilities import Capabilities
from serialhs.negotiate.frames import FrameType
from serialhs.negotiate.handshake import Ignored
from serialhs.negotiate.link import LinkResult, negotiate
from serialhs.sim.socat import SocatPair
from serialhs.sim.wire import Wire

SAFE = SerialSettings(9600)


def both_ends(
    wire: Wire, caps_a: Capabilities, caps_b: Capabilities
) -> tuple[LinkResult, LinkResult]:
    results: dict[str, object] = {}

    def responder() -> None:
        with Port(wire.b.pty, SAFE) as port:
            try:
                results["b"] = negotiate(port, "responder", caps_b, timeout=60)
            except Exception as e:
                results["b"] = e

    thread = threading.Thread(target=responder)
    thread.start()
    try:
        with Port(wire.a.pty, SAFE) as port:
            results["a"] = negotiate(port, "initiator", caps_a, timeout=60)
    finally:
        thread.join(70)
    a, b = results["a"], results["b"]
    assert isinstance(a, LinkResult) and isinstance(b, LinkResult), (a, b)
    return a, b


def test_two_ends_agree_the_best_common_settings():
    with Wire(settings=SAFE) as wire:
        a, b = both_ends(
            wire,
            Capabilities.up_to(115200, flow=(FlowControl.NONE, FlowControl.RTSCTS)),
            Capabilities.up_to(57600, flow=(FlowControl.NONE, FlowControl.RTSCTS)),
        )
    assert a.settings == b.settings
    assert a.settings.baudrate == 57600 and a.settings.flow is FlowControl.RTSCTS
    assert a.agreed.session_id == b.agreed.session_id


def test_training_settles_on_the_highest_rate_the_line_carries():
    with Wire(settings=SAFE, max_baud=38400) as wire:
        a, b = both_ends(wire, Capabilities.up_to(115200), Capabilities.up_to(115200))
    assert a.settings == b.settings
    assert a.settings.baudrate == 38400
    failed = [step.settings.baudrate for step in a.steps if not step.ok]
    assert failed and min(failed) > 38400  # the faster rungs were tried and failed


def test_a_silent_peer_leaves_the_initiator_at_the_safe_default():
    with Wire(settings=SAFE) as wire, Port(wire.a.pty, SAFE) as port:
        with pytest.raises(PeerNotIdentifiedError, match="peer not identified"):
            negotiate(port, "initiator", Capabilities.up_to(115200), timeout=60)
        assert port.settings == SAFE


def test_the_negotiate_command_on_both_ends_of_a_wire():
    with Wire(settings=SAFE, max_baud=57600) as wire:
        initiator, responder = run_pair(
            ["negotiate", wire.b.pty, "--listen", "--json"],
            ["negotiate", wire.a.pty, "--json"],
            timeout=90,
        )
    assert initiator.returncode == 0, initiator.stderr
    mine, theirs = json.loads(initiator.stdout), json.loads(responder.stdout)
    assert mine["agreed"] and theirs["agreed"]
    assert mine["settings"] == theirs["settings"] and mine["baudrate"] == 57600
    assert any(not step["ok"] for step in mine["steps"])
    assert mine["fast"] is theirs["fast"] is False  # the wire paces its bytes


def test_the_negotiate_command_says_when_the_line_ignores_its_rate():
    with SocatPair() as pair:
        initiator, responder = run_pair(
            ["negotiate", pair.b, "--listen"], ["negotiate", pair.a, "--json"], timeout=90
        )
    assert initiator.returncode == 0, initiator.stderr
    assert json.loads(initiator.stdout)["fast"] is True
    assert "faster than its rate" in responder.stdout


def test_rts_cts_offered_on_a_cable_without_it_falls_back_to_no_flow_control():
    """Both ends offer RTS/CTS but the cable has no handshake wires: the rungs with
    RTS/CTS cannot send (CTS never rises), the held bytes are discarded at each
    fallback, and training ends on a rung without flow control."""
    caps = Capabilities.up_to(19200, flow=(FlowControl.NONE, FlowControl.RTSCTS))
    with Wire(settings=SAFE, wiring="three_wire") as wire:
        a, b = both_ends(wire, caps, caps)
    assert a.settings == b.settings
    assert a.settings.flow is FlowControl.NONE
    assert any(not s.ok and s.settings.flow is FlowControl.RTSCTS for s in a.steps)


def test_frames_replayed_from_an_earlier_session_are_rejected_over_the_wire():
    """Everything the initiator sent in one session is played into the responder
    ahead of the next one: the replayed SYN gets no further than a half-open
    session, every later replayed frame is ignored, and the two live ends agree
    on a new session."""
    caps = Capabilities.up_to(57600)
    recorded = Transcript()
    with Wire(settings=SAFE) as wire:
        first: dict[str, object] = {}

        def respond(into: dict[str, object], seen: list[object]) -> None:
            with Port(wire.b.pty, SAFE) as port:
                try:
                    into["b"] = negotiate(port, "responder", caps, timeout=60, on_event=seen.append)
                except Exception as e:
                    into["b"] = e

        thread = threading.Thread(target=respond, args=(first, []))
        thread.start()
        with Port(wire.a.pty, SAFE, transcript=recorded) as port:
            old = negotiate(port, "initiator", caps, timeout=60)
        thread.join(70)
        replay = recorded.data("tx")
        assert len(replay) > 200

        second: dict[str, object] = {}
        seen: list[object] = []
        thread = threading.Thread(target=respond, args=(second, seen))
        thread.start()
        with Port(wire.a.pty, SAFE) as port:
            port.write(replay, timeout=10)  # the recording, at the safe default
            port.drain(timeout=10)
            time.sleep(0.5)
            port.reset_input()  # the SYN-ACK the replayed SYN drew
            new = negotiate(port, "initiator", caps, timeout=60)
        thread.join(70)
    theirs = second["b"]
    assert isinstance(theirs, LinkResult), theirs
    assert new.agreed.session_id == theirs.agreed.session_id != old.agreed.session_id
    assert new.settings == theirs.settings and new.settings.baudrate == 57600
    # the old session's frames reached the responder and were each turned away
    stale = {
        e.frame.kind
        for e in seen
        if isinstance(e, Ignored) and e.frame.session == old.agreed.session_id
    }
    assert {FrameType.ACK, FrameType.VERIFIED} <= stale, stale
