"""The SHS handshake and line training core, driven against itself over a
simulated line with explicit time: agreement, training and fallback, simultaneous
open, duplicates, resets, replays of an earlier session, silent peers, and (with
hypothesis) arbitrary loss, duplication, reordering and corruption."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from shs_sim import Faults, Link, isns

from serialhs.driver.settings import SerialSettings
from serialhs.errors import ConfigError, LocalProtocolError
from serialhs.negotiate import handshake as hs_mod
from serialhs.negotiate.capabilities import (
    Capabilities,
    Choice,
    Identity,
    TransferProtocol,
    ladder,
    select,
)
from serialhs.negotiate.frames import (
    Flags,
    Frame,
    FrameDecoder,
    FrameType,
    RstCode,
    decode,
    encode,
)
from serialhs.negotiate.handshake import (
    Agreed,
    Closed,
    Failed,
    Fallback,
    Handshake,
    Ignored,
    PeerIdentified,
    PeerNotIdentified,
    Reset,
    Session,
    State,
    SwitchSettings,
    Timers,
    TrainingStep,
    TransferFrame,
    Verified,
    describe_transitions,
    syn_ack_frame,
)
from serialhs.sim.faults import FaultSpec
from serialhs.sim.wirecore import Deliver, WireCore
from serialhs.sim.wiring import load_wiring

DOC = Path(__file__).resolve().parent.parent / "docs" / "protocol.md"
SAFE = SerialSettings(9600)
HOST = Capabilities(
    baudrates=(9600, 19200, 38400, 57600, 115200, 230400),
    flow=("rtscts",),
    protocols=("shs", "xmodem-1k"),
    identity=Identity("serialhs", "host", "0.1.0"),
)
DEVICE = Capabilities(
    baudrates=(9600, 57600, 115200, 230400, 921600),
    flow=("rtscts", "xonxoff"),
    protocols=("xmodem", "shs"),
    max_payload=512,
    window=4,
    identity=Identity("acme", "board", "1.2"),
)


def pair(
    a_caps: Capabilities = HOST,
    b_caps: Capabilities = DEVICE,
    *,
    roles: tuple[str, str] = ("initiator", "responder"),
    seed: int = 1,
    timers: Timers | None = None,
) -> tuple[Handshake, Handshake]:
    kwargs = {"timers": timers} if timers is not None else {}
    a = Handshake(roles[0], a_caps, now=0.0, rng=isns(seed * 7919 + 1), **kwargs)
    b = Handshake(roles[1], b_caps, now=0.0, rng=isns(seed * 104729 + 2), **kwargs)
    return a, b


def settled(link: Link) -> bool:
    """Both ends finished, or both established."""
    cores = link.cores.values()
    return all(c.finished for c in cores) or all(c.state is State.ESTABLISHED for c in cores)


def agreed_alike(link: Link) -> bool:
    """Both ends agreed once, on the same settings, protocol, sizes and session."""
    one, two = link.of("a", Agreed), link.of("b", Agreed)
    if len(one) != 1 or len(two) != 1:
        return False
    fields = ("settings", "protocol", "frame_size", "window", "session_id")
    return all(getattr(one[0], f) == getattr(two[0], f) for f in fields)


def frames_sent(link: Link, end: str) -> list[Frame]:
    decoder = FrameDecoder()
    decoder.receive_data(bytes(link.sent[end]))
    return [e for e in decoder.events() if isinstance(e, Frame)]


# -- the tables are the documentation ----------------------------------------------------------


def test_the_state_tables_are_documented():
    doc = DOC.read_text()
    for role in ("initiator", "responder"):
        assert describe_transitions(role) in (hs_mod.__doc__ or "")
        assert describe_transitions(role) in doc


def test_the_documented_timer_values():
    t = Timers()
    assert [round(t.rto(a, SAFE), 3) for a in range(4)] == [0.933, 1.867, 2.0, 2.0]
    fast = SerialSettings(115200)
    assert [round(t.rto(a, fast), 3) for a in range(5)] == [0.169, 0.339, 0.678, 1.356, 2.0]
    assert round(t.budget(t.syn_tries, SAFE), 2) == 10.80
    assert round(t.budget(t.switch_tries, SAFE), 2) == 14.80
    assert round(t.probe_wait(fast, SAFE), 2) == 2.66
    assert (round(t.settle(SAFE), 3), t.settle(fast)) == (0.017, 0.01)  # 16 chars, then the floor
    assert round(t.train_wait(SAFE), 1) == 43.2
    assert t.dead == 8.0
    doc = DOC.read_text()
    for text in ("10.80", "14.80", "2.66", "43.2", "0.933, 1.867", "| 0.017 | 0.010 |"):
        assert text in doc


def test_timers_validate():
    for bad in ({"rto_base": 0}, {"syn_tries": 0}, {"keepalive": -1.0}, {"listen": math.nan}):
        with pytest.raises(ConfigError):
            Timers(**bad)


# -- agreement ---------------------------------------------------------------------------------


def test_two_ends_agree_on_the_best_common_settings():
    a, b = pair()
    link = Link(a, b).run(60, settled)
    expected = select(HOST, DEVICE, SAFE)
    assert expected.settings == SerialSettings(230400, flow="rtscts")
    for end, core in link.cores.items():
        (agreed,) = link.of(end, Agreed)
        assert agreed.settings == expected.settings
        assert agreed.protocol is TransferProtocol.SHS
        assert (agreed.frame_size, agreed.window) == (512, 4)
        assert agreed.session_id == a.session_id == b.session_id
        assert core.state is State.ESTABLISHED
        assert link.port[end] == expected.settings
        kinds = [type(e) for _, e in link.events[end]]
        assert kinds == [PeerIdentified, SwitchSettings, Verified, TrainingStep, Agreed]
    assert link.of("a", Agreed)[0].peer_identity == DEVICE.identity
    assert link.of("b", Agreed)[0].peer_identity == HOST.identity
    assert [f.type for f in frames_sent(link, "a")] == [
        FrameType.SYN,
        FrameType.ACK,
        FrameType.SWITCH,
        FrameType.PROBE,
        FrameType.VERIFIED,
    ]
    assert [f.type for f in frames_sent(link, "b")] == [
        FrameType.SYN_ACK,
        FrameType.SWITCH_ACK,
        FrameType.PROBE_ACK,
    ]
    assert link.now < 1.0  # a clean line needs no retransmission


def _switch_timing(link: Link) -> tuple[list[Frame], float, float]:
    """The initiator's frames, when its first PROBE went after the SWITCH-ACK
    arrived, and when the responder switched after queueing that SWITCH-ACK."""
    sent = frames_sent(link, "a")
    (ack_at,) = [t for t, e in link.events["a"] if isinstance(e, SwitchSettings)]
    (b_at,) = [t for t, e in link.events["b"] if isinstance(e, SwitchSettings)]
    return sent, ack_at, b_at


def test_a_line_faster_than_its_rate_switches_without_airtime_waits():
    # A pty or a USB device: the SYN's round trip beats the airtime of its two
    # frames at 9600, so the initiator marks its SWITCH FAST and both ends switch on
    # the SWITCH-ACK, not its airtime at 9600 later (§9.2).
    a, b = pair()
    link = Link(a, b, paced=False).run(60, settled)
    assert agreed_alike(link)
    sent, a_switch, b_switch = _switch_timing(link)
    (switch,) = [f for f in sent if f.type is FrameType.SWITCH]
    assert switch.flags & Flags.FAST
    assert a.fast and b.fast  # the responder learns it from the SWITCH
    assert [f.type for f in sent].count(FrameType.PROBE) == 1  # not sent too early
    t = Timers()
    assert b_switch == pytest.approx(a_switch, abs=0.005)  # within the link's latency
    ack_airtime = 32 * SAFE.char_time  # a SWITCH-ACK is 32 bytes on the wire
    assert link.now < a_switch + t.settle(SerialSettings(230400)) + ack_airtime


def _sent_at(sender: str, kind: FrameType, log: list[float]) -> Callable[[str, bytes, float], bool]:
    """A Link observer (drops nothing) that notes when ``sender`` sends a ``kind`` frame."""

    def observe(end: str, piece: bytes, now: float) -> bool:
        if end == sender and piece != b"\x7e" and decode(piece).type is kind:
            log.append(now)
        return False

    return observe


@pytest.mark.parametrize("paced", [True, False])
def test_there_is_no_guard_before_a_switch_on_a_fast_line(paced):
    # guard_min covers a UART driver's lag in draining its queue, guard_chars the
    # last characters on their way; a line that delivers faster than its rate has
    # neither, so there both ends switch at once (§9.2).
    sent_at: list[float] = []
    a, b = pair()
    link = Link(a, b, paced=paced, drop_if=_sent_at("b", FrameType.SWITCH_ACK, sent_at)).run(
        60, settled
    )
    assert agreed_alike(link)
    (ack_at,) = sent_at
    _, a_switch, b_switch = _switch_timing(link)
    t = Timers()
    if paced:
        airtime = 32 * SAFE.char_time  # 32 or 33 bytes, as its CRC needs an escape or not
        assert b_switch == pytest.approx(ack_at + airtime + t.guard_min, abs=1.5 * SAFE.char_time)
    else:
        assert t.guard(SAFE, fast=True) == 0.0
        assert b_switch == pytest.approx(ack_at, abs=0.001)
        assert a_switch == pytest.approx(ack_at + link.latency, abs=0.001)
    assert [f.type for f in frames_sent(link, "a")].count(FrameType.PROBE) == 1


@pytest.mark.parametrize("paced", [True, False])
def test_the_settle_time_leaves_out_its_floor_on_a_fast_line(paced):
    # settle_min covers a UART's own change of rate; on a line that delivers
    # faster than its rate the first PROBE goes settle_chars characters after the
    # initiator's switch (§9.2).
    probes: list[float] = []
    a, b = pair()
    link = Link(a, b, paced=paced, drop_if=_sent_at("a", FrameType.PROBE, probes)).run(60, settled)
    assert agreed_alike(link) and a.fast is not paced
    (probe_at,) = probes  # one PROBE: it found the responder switched
    ((switch_at, switch),) = [(t, e) for t, e in link.events["a"] if isinstance(e, SwitchSettings)]
    applied = switch_at + link.apply_delay  # when the simulated port took the settings
    t = Timers()
    settle = t.settle(switch.settings, fast=not paced)
    if paced:
        assert settle == t.settle_min
        assert probe_at >= applied + settle
    else:
        assert settle == t.settle_chars * switch.settings.char_time < t.settle_min
        assert probe_at == pytest.approx(applied + settle, abs=1e-6)


def test_a_probe_that_comes_before_the_responder_switched_waits_for_its_switch():
    # On a FAST line the responder's switch can come after the initiator's PROBE
    # (its process ran late, or its port takes long to change): the PROBE arrived
    # intact, so the responder answers it once switched, not a retransmission
    # timeout later (§9.3).
    probes: list[float] = []
    a, b = pair()
    link = Link(
        a,
        b,
        paced=False,
        apply_delay={"a": 0.001, "b": 0.05},
        drop_if=_sent_at("a", FrameType.PROBE, probes),
    ).run(60, settled)
    assert agreed_alike(link) and a.fast and b.fast
    (probe_at,) = probes
    (b_switch,) = [t for t, e in link.events["b"] if isinstance(e, SwitchSettings)]
    assert probe_at + link.latency < b_switch + 0.05  # it came before the switch
    ignored = [e for e in link.of("b", Ignored) if e.frame.type is FrameType.PROBE]
    assert ignored == []
    (verified,) = [t for t, e in link.events["a"] if isinstance(e, Verified)]
    assert verified == pytest.approx(b_switch + 0.05 + link.latency, abs=1e-6)


def test_a_probe_split_by_the_responders_switch_on_a_fast_line_is_whole():
    # Nothing a FAST line carries is garbled by a switch, so the responder keeps
    # the start of a frame it had when it switched (§9.2).
    probes: list[float] = []
    split: list[bytes] = []

    def split_probe(end: str, piece: bytes, now: float) -> bool:
        if end != "a":
            return False
        if piece == b"\x7e":
            if len(split) == 1:  # the closing flag comes with the second half
                split.append(piece)
                return True
            return False
        if decode(piece).type is FrameType.PROBE and not split:
            probes.append(now)
            split.append(piece)
            link.inject("b", piece[:5], now + link.latency)
            link.inject("b", piece[5:] + b"\x7e", now + 0.1)  # after its switch, before an RTO
            return True
        return False

    a, b = pair()
    link = Link(a, b, paced=False, apply_delay={"a": 0.001, "b": 0.05}, drop_if=split_probe)
    link.run(60, settled)
    assert agreed_alike(link) and len(split) == 2
    (b_switch,) = [t for t, e in link.events["b"] if isinstance(e, SwitchSettings)]
    assert probes[0] + link.latency < b_switch + 0.05 < probes[0] + 0.1  # split by the switch
    assert [f.type for f in frames_sent(link, "a")].count(FrameType.PROBE) == 1  # not resent


def test_the_initiator_follows_the_switch_acks_flag_not_its_own_measure(monkeypatch):
    # A responder that does not know FAST ignores it on the SWITCH and never sets
    # it: it switches its SWITCH-ACK's airtime and a full guard after queueing
    # it. The initiator measured a fast line, but waits as the SWITCH-ACK says,
    # so its first PROBE still finds the responder switched.
    a, b = pair()
    real_rx_switch, real_beats = Handshake._rx_switch, Handshake._beats_airtime

    def rx_switch(self: Handshake, frame: Frame) -> None:
        if self is b:
            frame = dataclasses.replace(frame, flags=frame.flags & ~Flags.FAST)
        real_rx_switch(self, frame)

    monkeypatch.setattr(Handshake, "_rx_switch", rx_switch)
    monkeypatch.setattr(
        Handshake, "_beats_airtime", lambda self, *args: self is not b and real_beats(self, *args)
    )
    link = Link(a, b, paced=False).run(60, settled)
    assert agreed_alike(link)
    sent = frames_sent(link, "a")
    (switch,) = [f for f in sent if f.type is FrameType.SWITCH]
    (switch_ack,) = [f for f in frames_sent(link, "b") if f.type is FrameType.SWITCH_ACK]
    assert switch.flags & Flags.FAST and not switch_ack.flags & Flags.FAST
    assert not a.fast and not b.fast
    assert [f.type for f in sent].count(FrameType.PROBE) == 1


def test_a_paced_line_switches_after_the_switch_acks_airtime():
    a, b = pair()
    link = Link(a, b).run(60, settled)
    sent, a_switch, b_switch = _switch_timing(link)
    (switch,) = [f for f in sent if f.type is FrameType.SWITCH]
    assert not switch.flags & Flags.FAST
    assert not a.fast and not b.fast
    assert [f.type for f in sent].count(FrameType.PROBE) == 1
    # the responder waits the airtime of its SWITCH-ACK, so it switches about when
    # the initiator has received it
    assert b_switch == pytest.approx(a_switch, abs=0.005)


def test_when_the_initiators_syn_went_twice_the_responders_measure_makes_it_fast():
    # The responder came late, so the initiator's SYN went more than once: its
    # answer may be to either, and the initiator has no measure. The responder's
    # one SYN-ACK came back (as the ACK) faster than the two frames' airtime, so
    # its SWITCH-ACK says FAST and both switch without waiting for airtime.
    a = Handshake("initiator", HOST, now=0.0, rng=isns(1))
    link = Link(a, None, paced=False)
    link.run(1.5)  # the first SYN goes nowhere, the second at its timeout
    b = Handshake("responder", DEVICE, now=link.now, rng=isns(2))
    link.cores["b"] = b
    link.port["b"] = b.settings
    link.free["b"] = link.now
    link.events["b"] = []
    link.sent["b"] = bytearray()
    link.run(60, settled)
    assert agreed_alike(link)
    sent = frames_sent(link, "a")
    assert [f.type for f in sent].count(FrameType.SYN) >= 2
    (switch,) = [f for f in sent if f.type is FrameType.SWITCH]
    (switch_ack,) = [f for f in frames_sent(link, "b") if f.type is FrameType.SWITCH_ACK]
    assert not switch.flags & Flags.FAST and switch_ack.flags & Flags.FAST
    assert a.fast and b.fast
    assert [f.type for f in sent].count(FrameType.PROBE) == 1
    _, a_switch, b_switch = _switch_timing(link)
    assert b_switch == pytest.approx(a_switch, abs=0.005)


def test_a_fast_line_without_a_clean_measure_still_probes_after_the_responder_switched():
    # The first SYN-ACK is lost: the initiator's SYN and the responder's SYN-ACK
    # each go twice, neither end has a measure, and there is no FAST. The
    # responder then waits its SWITCH-ACK's airtime, and the initiator waits that
    # airtime too before probing: one PROBE, no retransmission.
    lost: list[bytes] = []

    def first_syn_ack(end: str, piece: bytes, now: float) -> bool:
        if end == "b" and not lost and len(piece) > 1:
            lost.append(piece)
            return True
        return False

    a, b = pair()
    link = Link(a, b, paced=False, drop_if=first_syn_ack).run(60, settled)
    assert agreed_alike(link) and lost
    sent = frames_sent(link, "a")
    assert [f.type for f in sent].count(FrameType.SYN) == 2
    (switch,) = [f for f in sent if f.type is FrameType.SWITCH]
    (switch_ack,) = [f for f in frames_sent(link, "b") if f.type is FrameType.SWITCH_ACK]
    assert not switch.flags & Flags.FAST and not switch_ack.flags & Flags.FAST
    assert not a.fast and not b.fast
    assert [f.type for f in sent].count(FrameType.PROBE) == 1


def test_a_fast_switch_makes_the_responder_switch_once_its_ack_is_queued(monkeypatch):
    # FAST is the initiator's word for the responder: forced here on a paced line,
    # the responder switches as soon as it has queued its SWITCH-ACK, before the
    # initiator has even received it (which is why the initiator must measure).
    monkeypatch.setattr(Handshake, "_beats_airtime", lambda self, sent_once, answer: True)
    a, b = pair()
    link = Link(a, b).run(60, lambda lk: bool(lk.of("a", SwitchSettings)))
    _, a_switch, b_switch = _switch_timing(link)
    ack_airtime = 32 * SAFE.char_time
    assert b_switch == pytest.approx(a_switch - ack_airtime, abs=0.005)


def test_the_isn_comes_from_the_secure_source_by_default(monkeypatch):
    drawn = []

    def fake_randbits(bits: int) -> int:
        drawn.append(bits)
        return 0x12345678

    monkeypatch.setattr(hs_mod.secrets, "randbits", fake_randbits)
    core = Handshake("initiator", HOST, now=0.0)
    assert drawn == [32]
    decoder = FrameDecoder()
    decoder.receive_data(core.data_to_send())
    (syn,) = decoder.events()
    assert isinstance(syn, Frame) and syn.type is FrameType.SYN and syn.seq == 0x12345678


def test_training_falls_back_from_rates_the_line_garbles():
    a, b = pair()
    link = Link(a, b, garble_above=57600).run(120, settled)
    for end in "ab":
        steps = [(s.settings.baudrate, s.ok) for s in link.of(end, TrainingStep)]
        assert steps == [(230400, False), (115200, False), (57600, True)]
        assert len(link.of(end, Fallback)) == 2
        (agreed,) = link.of(end, Agreed)
        assert agreed.settings == SerialSettings(57600, flow="rtscts")
        assert link.port[end] == agreed.settings


def test_training_can_end_at_the_safe_default():
    a, b = pair(Capabilities.up_to(115200), Capabilities.up_to(115200))
    link = Link(a, b, garble_above=9600).run(300, settled)
    assert a.ladder[-1] == SAFE
    for end in "ab":
        (agreed,) = link.of(end, Agreed)
        assert agreed.settings == SAFE
        assert [s.ok for s in link.of(end, TrainingStep)][-1] is True


def test_when_no_rung_verifies_both_ends_fail_at_the_safe_default():
    a, b = pair(Capabilities.up_to(19200), Capabilities.up_to(19200))
    # short frames pass, PROBEs (about 340 bytes) never do, at any rate
    link = Link(a, b, garble_longer=200).run(300, settled)
    assert a.state is State.FAILED and b.state is State.FAILED
    (failed,) = link.of("a", Failed)
    assert failed.code == RstCode.TRAINING_FAILED
    (reset,) = link.of("b", Reset)
    assert reset.code == RstCode.TRAINING_FAILED
    assert [s.ok for s in link.of("a", TrainingStep)] == [False] * len(a.ladder)
    assert link.port == {"a": SAFE, "b": SAFE}


def test_a_silent_peer_leaves_the_initiator_at_the_safe_default():
    core = Handshake("initiator", HOST, now=0.0, rng=isns(1))
    link = Link(core, None).run(120)
    (event,) = link.of("a", PeerNotIdentified)
    assert event.settings == SAFE and event.attempts == 6
    assert core.state is State.UNIDENTIFIED and core.settings == SAFE
    assert not link.of("a", SwitchSettings)
    syns = frames_sent(link, "a")
    assert [f.type for f in syns] == [FrameType.SYN] * 6
    assert {f.seq for f in syns} == {1}  # the same ISN every time
    assert [f.flags for f in syns] == [0] + [1] * 5
    assert link.events["a"][-1][0] == pytest.approx(Timers().budget(6, SAFE))
    assert core.get_timer() is None


def test_a_listening_responder_can_give_up():
    core = Handshake("responder", DEVICE, now=10.0, timers=Timers(listen=5.0))
    assert core.get_timer() == 15.0
    core.handle_timer(15.0)
    (event,) = core.events()
    assert isinstance(event, PeerNotIdentified) and event.attempts == 0
    assert core.state is State.UNIDENTIFIED


# -- simultaneous open, duplicates, half-open sessions -----------------------------------------


@pytest.mark.parametrize(("isn_a", "isn_b"), [(100, 200), (200, 100)])
def test_simultaneous_open_makes_the_higher_isn_the_responder(isn_a, isn_b):
    a = Handshake("initiator", HOST, now=0.0, rng=isns(isn_a))
    b = Handshake("initiator", DEVICE, now=0.0, rng=isns(isn_b))
    link = Link(a, b).run(60, settled)
    higher, lower = (a, b) if isn_a > isn_b else (b, a)
    assert higher.role == "responder" and lower.role == "initiator"
    assert higher.session == Session(min(isn_a, isn_b), max(isn_a, isn_b))
    assert agreed_alike(link)
    assert a.agreed is not None and a.agreed.settings == SerialSettings(230400, flow="rtscts")


def test_simultaneous_open_with_equal_isns_draws_again():
    a = Handshake("initiator", HOST, now=0.0, rng=isns(5, 10))
    b = Handshake("initiator", DEVICE, now=0.0, rng=isns(5, 20))
    link = Link(a, b).run(60, settled)
    assert a.role == "initiator" and b.role == "responder"
    assert a.session == Session(10, 20)
    assert agreed_alike(link)


def test_a_duplicate_syn_gets_the_same_syn_ack():
    a, b = pair()
    syn = a.data_to_send()
    b.receive_data(syn, 0.01)
    first = b.data_to_send()
    b.receive_data(syn, 0.02)
    again = b.data_to_send()
    decoder = FrameDecoder()
    decoder.receive_data(first + again)
    one, two = decoder.events()
    assert isinstance(one, Frame) and isinstance(two, Frame)
    assert (one.type, one.seq, one.session, one.payload) == (
        two.type,
        two.seq,
        two.session,
        two.payload,
    )
    assert (one.flags, two.flags) == (0, 1)
    # the initiator takes the first, and answers the duplicate with its ACK again
    a.receive_data(first, 0.03)
    a.receive_data(again, 0.04)
    assert [f.type for f in _decode(a.data_to_send())] == [
        FrameType.ACK,
        FrameType.SWITCH,
        FrameType.ACK,
    ]
    link = Link(a, b).run(60, settled)
    assert agreed_alike(link)


def _decode(data: bytes) -> list[Frame]:
    decoder = FrameDecoder()
    decoder.receive_data(data)
    return [e for e in decoder.events() if isinstance(e, Frame)]


def test_a_responder_follows_whichever_half_open_session_is_confirmed():
    old = Handshake("initiator", HOST, now=0.0, rng=isns(111))
    a, b = pair()
    b.receive_data(old.data_to_send(), 0.0)  # a SYN from an initiator that went away
    link = Link(a, b).run(60, settled)
    assert b.session == a.session and b.session is not None
    assert b.session.initiator_isn != 111
    assert agreed_alike(link)


# -- stale frames and resets -------------------------------------------------------------------


def test_frames_replayed_from_an_earlier_session_are_rejected():
    a1, b1 = pair(seed=1)
    first = Link(a1, b1).run(60, settled)
    old_a, old_b = bytes(first.sent["a"]), bytes(first.sent["b"])
    a2, b2 = pair(seed=2)
    second = Link(a2, b2)
    for at in (0.0, 0.05, 0.3, 1.0):  # before, during and after the new handshake
        second.inject("b", old_a, at)
        second.inject("a", old_b, at)
    second.run(60, settled)
    assert a2.session_id != a1.session_id
    assert agreed_alike(second)
    agreed = second.of("a", Agreed)
    assert agreed[0].session_id == a2.session_id
    for end in "ab":
        ignored = second.of(end, Ignored)
        assert ignored, end
        # frames of session 1, and the SYN-ACKs the responder sent to its replayed SYN
        assert a1.session is not None
        for i in ignored:
            assert i.frame.session in (a1.session_id, 0) or (
                i.frame.type is FrameType.SYN_ACK and i.frame.ack == a1.session.initiator_isn + 1
            ), i
        assert all(p.session_id == a2.session_id for p in second.of(end, PeerIdentified))


def test_a_replayed_session_cannot_complete_at_a_fresh_responder():
    a1, b1 = pair(seed=3)
    first = Link(a1, b1).run(60, settled)
    fresh = Handshake("responder", DEVICE, now=0.0, rng=isns(999))
    fresh.receive_data(bytes(first.sent["a"]), 0.0)
    for t in range(1, 60):
        fresh.handle_timer(float(t))
        fresh.receive_data(bytes(first.sent["a"]), float(t))
    events = fresh.events()
    assert not [e for e in events if isinstance(e, PeerIdentified | Agreed)]
    assert fresh.state is State.FAILED
    assert [e for e in events if isinstance(e, Ignored)]


def test_the_responder_refuses_a_peer_with_nothing_in_common():
    a, b = pair(Capabilities(protocols=("xmodem",)), Capabilities(protocols=("zmodem",)))
    link = Link(a, b).run(60, settled)
    (reset,) = link.of("a", Reset)
    (failed,) = link.of("b", Failed)
    assert reset.code == failed.code == RstCode.NO_COMMON
    assert "no transfer protocol in common" in reset.reason
    assert a.state is State.FAILED and b.state is State.FAILED


def test_an_unknown_critical_capability_is_refused():
    needs_auth = Capabilities(extra=((0xBF, b"\x01"),))
    a, b = pair(needs_auth, DEVICE)
    link = Link(a, b).run(60, settled)
    (reset,) = link.of("a", Reset)
    assert reset.code == RstCode.BAD_CAPABILITIES
    # an unknown capability without the critical bit is skipped
    a, b = pair(Capabilities(extra=((0x3F, b"\x01"),)), DEVICE)
    link = Link(a, b).run(60, settled)
    assert agreed_alike(link)
    assert b.peer_capabilities is not None and b.peer_capabilities.extra == ((0x3F, b"\x01"),)


def test_a_choice_that_breaks_the_selection_rule_is_refused():
    a = Handshake("initiator", HOST, now=0.0, rng=isns(1000))
    a.data_to_send()
    session = Session(1000, 2000)
    wrong = Choice(SerialSettings(57600), TransferProtocol.SHS, 512, 4)
    a.receive_data(encode(syn_ack_frame(session, wrong, DEVICE)), 0.1)
    (rst,) = _decode(a.data_to_send())
    assert rst.type is FrameType.RST and rst.session == session.id
    assert rst.payload[0] == RstCode.BAD_CHOICE
    events = a.events()
    assert isinstance(events[-1], Failed) and events[-1].code == RstCode.BAD_CHOICE
    assert a.state is State.FAILED


def test_a_syn_ack_for_another_syn_is_ignored():
    a = Handshake("initiator", HOST, now=0.0, rng=isns(1000))
    a.data_to_send()
    choice = select(HOST, DEVICE, SAFE)
    a.receive_data(encode(syn_ack_frame(Session(999, 2000), choice, DEVICE)), 0.1)
    (event,) = a.events()
    assert isinstance(event, Ignored) and a.state is State.SYN_SENT
    assert a.data_to_send() == b""


def test_a_frame_of_no_session_gets_a_reset_from_a_listener():
    b = Handshake("responder", DEVICE, now=0.0)
    stray = Frame(FrameType.KEEPALIVE, 0xCAFE, 5, 6, b"\x00")
    b.receive_data(encode(stray), 1.0)
    (rst,) = _decode(b.data_to_send())
    assert (rst.type, rst.session, rst.seq, rst.ack) == (FrameType.RST, 0xCAFE, 6, 6)
    assert rst.payload[0] == RstCode.NO_SESSION
    assert b.state is State.LISTEN
    b.receive_data(encode(rst), 1.1)  # a RST is never answered
    assert b.data_to_send() == b"" and b.state is State.LISTEN


def test_a_reset_of_the_session_ends_it_and_others_are_ignored():
    a, b = pair()
    link = Link(a, b).run(60, settled)
    session = a.session
    assert session is not None
    other = Session(session.initiator_isn + 1, session.responder_isn)
    a.receive_data(encode(other.frame("responder", FrameType.RST, b"\x00")), link.now)
    assert isinstance(a.events()[-1], Ignored) and a.state is State.ESTABLISHED
    rst = session.frame("responder", FrameType.RST, bytes([RstCode.ABORTED]) + b"bye")
    a.receive_data(encode(rst), link.now)
    events = a.events()
    assert [type(e) for e in events] == [SwitchSettings, Reset]
    assert events[0].settings == SAFE
    assert events[1].code == RstCode.ABORTED and "bye" in events[1].reason
    assert a.state is State.FAILED and a.get_timer() is None
    a.settings_applied(link.now + 0.01)
    assert a.settings == SAFE


# -- the established link ----------------------------------------------------------------------


def test_a_lost_verified_is_recovered():
    def drop_first_verified(end: str, piece: bytes, now: float) -> bool:
        if end == "a" and piece != b"\x7e" and FrameType.VERIFIED in piece[:3]:
            drop_first_verified.count += 1
            return drop_first_verified.count <= 2
        return False

    drop_first_verified.count = 0
    a, b = pair()
    link = Link(a, b, drop_if=drop_first_verified).run(60, settled)
    assert drop_first_verified.count >= 3
    assert agreed_alike(link)


def test_a_blackout_after_agreement_fails_both_ends():
    """The two generals: the line dies the moment the initiator agrees, so its
    VERIFIED and everything after are lost. The responder falls back, the
    initiator notices the silence; both end failed, back at the safe default."""
    a, b = pair()

    def blackout(end: str, piece: bytes, now: float) -> bool:
        return a.state is State.ESTABLISHED or a.finished

    link = Link(a, b, drop_if=blackout).run(300, lambda link: a.finished and b.finished)
    assert len(link.of("a", Agreed)) == 1 and not link.of("b", Agreed)
    assert a.state is State.FAILED and b.state is State.FAILED
    assert [f.code for f in link.of("a", Failed)] == [RstCode.PEER_LOST]
    assert [s.ok for s in link.of("b", TrainingStep)] == [False]
    assert link.port == {"a": SAFE, "b": SAFE}


def test_keepalives_hold_the_link_and_silence_ends_it():
    a, b = pair()
    link = Link(a, b).run(60, settled)
    start = link.now
    link.run(start + 30)
    assert a.state is State.ESTABLISHED and b.state is State.ESTABLISHED
    keepalives = [f for f in frames_sent(link, "a") if f.type is FrameType.KEEPALIVE]
    assert 12 <= len(keepalives) <= 16
    # the peer vanishes: 8 s later the link has failed, back at the safe default
    quiet = Link(a, None)
    quiet.now = link.now
    quiet.run(link.now + 9)
    assert a.state is State.FAILED
    assert [type(e) for _, e in quiet.events["a"]] == [SwitchSettings, Failed]


def test_close():
    a, b = pair()
    link = Link(a, b).run(60, settled)
    a.close(link.now)
    link.run(link.now + 10, settled)
    assert a.state is State.CLOSED and b.state is State.CLOSED
    assert link.of("a", Closed) == [Closed("closed")]
    assert link.of("b", Closed) == [Closed("the peer closed the link")]


def test_abort_resets_the_peer():
    a, b = pair()
    link = Link(a, b)
    link.run(60, lambda link: a.state is State.PROBING)
    a.abort(link.now, "operator pressed Ctrl-C")
    link.run(link.now + 30, settled)
    (failed,) = link.of("a", Failed)
    assert failed.code == RstCode.ABORTED
    assert b.state is State.FAILED and link.of("b", Reset)[0].code == RstCode.ABORTED


def test_transfer_frames_are_handed_on():
    a, b = pair()
    link = Link(a, b).run(60, settled)
    assert a.session is not None
    data = Frame(FrameType.DATA, a.session.id, 1, 2, b"payload")
    b.receive_data(encode(data), link.now)
    b.receive_data(encode(Frame(FrameType.DATA, a.session.id ^ 1, 1, 2, b"stale")), link.now)
    events = b.events()
    assert events[0] == TransferFrame(data)
    assert isinstance(events[1], Ignored)


# -- misuse ------------------------------------------------------------------------------------


def test_calls_the_state_table_does_not_allow_raise():
    b = Handshake("responder", DEVICE, now=0.0)
    with pytest.raises(LocalProtocolError) as e:
        b.settings_applied(1.0)
    assert (e.value.state, e.value.event) == ("LISTEN", "APPLIED")
    assert "LISTEN" in str(e.value) and "settings_applied" in str(e.value)
    a = Handshake("initiator", HOST, now=0.0)
    with pytest.raises(LocalProtocolError) as e:
        a.close(1.0)
    assert (e.value.state, e.value.event) == ("SYN_SENT", "CLOSE")


def test_bad_construction():
    with pytest.raises(ConfigError):
        Handshake("boss", HOST, now=0.0)
    with pytest.raises(ConfigError):
        Handshake("initiator", HOST, now=0.0, safe=SerialSettings(9600, 7, "E"))
    with pytest.raises(ConfigError):
        Handshake("initiator", HOST, now=0.0, rng=lambda: "seven")


def test_the_tables_name_only_known_states():
    for table in (hs_mod.INITIATOR_TRANSITIONS, hs_mod.RESPONDER_TRANSITIONS):
        for (state, trigger), target in table.items():
            assert state not in hs_mod.TERMINAL_STATES or trigger in (
                hs_mod.Trigger.APPLIED,
                hs_mod.Trigger.RX_FIN,
            )
            assert isinstance(target, State)


# -- over the project's UART model -------------------------------------------------------------


def run_on_wire(a: Handshake, b: Handshake, *, faults: FaultSpec | None = None, seed: int = 0):
    """Two cores on the virtual wire's core (paced UARTs, real garbling when the ends'
    settings differ), polled every half millisecond."""
    wire = WireCore(wiring=load_wiring("null_modem"), settings=SAFE, faults=faults, seed=seed)
    for end in "ab":
        wire.set_outputs(end, 0.0, rts=True, dtr=True)
    cores = {"a": a, "b": b}
    pending = {"a": bytearray(), "b": bytearray()}
    switching: dict[str, SerialSettings] = {}
    events: dict[str, list[object]] = {"a": [], "b": []}
    now = 0.0
    while now < 60.0 and not settled_cores(cores):
        for end, core in cores.items():
            pending[end] += core.data_to_send()
            for event in core.events():
                events[end].append(event)
                if isinstance(event, SwitchSettings):
                    switching[end] = event.settings
            if pending[end] and end not in switching:
                del pending[end][: wire.transmit(end, bytes(pending[end]), now)]
            if end in switching and not pending[end] and wire.tx_idle(end, now):
                wire.set_settings(end, switching.pop(end), now)
                core.settings_applied(now)
        wire.handle_timer(now)
        for event in wire.events():
            if isinstance(event, Deliver):
                cores[event.end].receive_data(event.data, now)
        for core in cores.values():
            timer = core.get_timer()
            if timer is not None and timer <= now:
                core.handle_timer(now)
        now += 0.0005
    return wire, events


def settled_cores(cores: dict[str, Handshake]) -> bool:
    return all(c.finished for c in cores.values()) or all(
        c.state is State.ESTABLISHED for c in cores.values()
    )


@pytest.mark.parametrize("ber", [0.0, 1e-4])
def test_agreement_over_the_uart_model(ber):
    a, b = pair(
        Capabilities.up_to(921600, flow=("rtscts",)), Capabilities.up_to(921600, flow=("rtscts",))
    )
    wire, _ = run_on_wire(a, b, faults=FaultSpec(ber=ber) if ber else None, seed=3)
    assert a.agreed is not None and b.agreed is not None
    assert a.agreed.settings == b.agreed.settings
    assert a.agreed.session_id == b.agreed.session_id
    assert a.agreed.settings == SerialSettings(921600, flow="rtscts")
    assert wire.settings("a") == wire.settings("b") == a.agreed.settings


# -- any fault pattern: agreement or a clean failure, at both ends -----------------------------

probabilities = st.sampled_from([0.0, 0.0, 0.02, 0.1, 0.3, 0.6, 1.0])


@given(
    seed=st.integers(0, 2**32 - 1),
    drop=probabilities,
    duplicate=probabilities,
    corrupt=probabilities,
    reorder=probabilities,
    truncate=probabilities,
    garbage=probabilities,
    start=st.sampled_from([0.0, 0.0, 0.2, 1.0, 3.0]),
    duration=st.sampled_from([0.5, 2.0, 5.0, 15.0, 60.0, math.inf]),
    simultaneous=st.booleans(),
    garble_above=st.sampled_from([None, None, 19200, 57600]),
    rates_a=st.sets(st.sampled_from([9600, 19200, 38400, 57600, 115200, 230400]), max_size=4),
    rates_b=st.sets(st.sampled_from([9600, 19200, 38400, 57600, 115200, 230400]), max_size=4),
    paced=st.booleans(),
)
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_any_fault_pattern_ends_in_agreement_or_a_clean_failure_at_both_ends(
    seed,
    drop,
    duplicate,
    corrupt,
    reorder,
    truncate,
    garbage,
    start,
    duration,
    simultaneous,
    garble_above,
    rates_a,
    rates_b,
    paced,
):
    roles = ("initiator", "initiator") if simultaneous else ("initiator", "responder")
    timers = Timers(listen=120.0)
    a = Handshake(
        roles[0], Capabilities(baudrates=tuple(rates_a)), now=0.0, rng=isns(seed), timers=timers
    )
    b = Handshake(
        roles[1],
        Capabilities(baudrates=tuple(rates_b)),
        now=0.0,
        rng=isns(seed ^ 0x5A5A5A5A),
        timers=timers,
    )
    faults = Faults(drop, duplicate, corrupt, reorder, truncate, garbage, start, start + duration)
    link = Link(a, b, faults=faults, seed=seed, garble_above=garble_above, paced=paced)
    quiet = min(faults.until, 200.0)
    # Run until both ends are finished, or both established and past the time in
    # which an end that agreed alone would have noticed (faults over + peer lost).
    limit = quiet + 400.0

    def done(link: Link) -> bool:
        if all(c.finished for c in link.cores.values()):
            return True
        established = all(c.state is State.ESTABLISHED for c in link.cores.values())
        return established and link.now > quiet + 20.0

    link.run(limit, done)
    assert done(link), (
        f"no outcome by t={link.now}: {a.state.name} / {b.state.name}"
    )  # never a hang
    agreed_a, agreed_b = link.of("a", Agreed), link.of("b", Agreed)
    assert len(agreed_a) <= 1 and len(agreed_b) <= 1
    if agreed_a and agreed_b:  # never a wrong agreement
        assert agreed_a[0].settings == agreed_b[0].settings
        assert agreed_a[0].session_id == agreed_b[0].session_id
    if a.state is State.ESTABLISHED:
        assert a.agreed is not None and b.agreed is not None
        assert a.agreed.settings == b.agreed.settings == link.port["a"] == link.port["b"]
    else:  # a clean failure, reported at both ends, both back at the safe default
        for end in "ab":
            terminal = [
                e for _, e in link.events[end] if isinstance(e, PeerNotIdentified | Failed | Reset)
            ]
            assert len(terminal) == 1, (end, terminal)
            assert link.port[end] == SAFE
    if not (drop or duplicate or corrupt or reorder or truncate or garbage) or faults.until <= 0.2:
        # a clean line agrees on the best rate the line carries
        common = (rates_a & rates_b) | {9600}
        if garble_above is not None:
            common = {r for r in common if r <= garble_above} | {9600}
        assert a.agreed is not None and a.agreed.settings.baudrate == max(common)


def test_the_ladder_is_what_both_ends_train_on():
    a, b = pair()
    Link(a, b).run(60, settled)
    assert a.ladder == b.ladder == ladder(HOST, DEVICE, SAFE)
