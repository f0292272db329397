"""The wire's sans-I/O core, driven with explicit times."""

from __future__ import annotations

import pytest

from serialhs.driver.lines import Line, Lines
from serialhs.driver.settings import SerialSettings
from serialhs.sim import uart
from serialhs.sim.faults import FaultSpec
from serialhs.sim.trace import WireTrace
from serialhs.sim.wirecore import BreakArrived, Deliver, LinesChanged, RxPolicy, WireCore
from serialhs.sim.wiring import load_wiring

NULL_MODEM = load_wiring("null_modem")
S9600 = SerialSettings(9600)
CHAR = S9600.char_time  # 1.0416 ms


def run(core: WireCore, until: float, step: float = 1e-4, reader: str | None = None) -> list:
    """Advance the core to ``until`` in small steps; return all events. With
    ``reader``, the program on that end reads everything as it arrives."""
    events = []
    t = core.now
    while t < until:
        t = min(until, t + step)
        if reader is not None:
            core.set_backlog(reader, 0, t)
        core.handle_timer(t)
        events += core.events()
    return events


def delivered(events, end="b") -> bytes:
    return b"".join(e.data for e in events if isinstance(e, Deliver) and e.end == end)


def delivery_times(core: WireCore, data: bytes, settings: SerialSettings) -> list[float]:
    core.transmit("a", data, 0.0)
    times = []
    t = 0.0
    while len(times) < len(data):
        timer = core.get_timer()
        assert timer is not None
        t = max(t, timer)
        core.handle_timer(t)
        for e in core.events():
            if isinstance(e, Deliver):
                times += [t] * len(e.data)
    return times


def test_characters_arrive_one_character_time_apart():
    core = WireCore(wiring=NULL_MODEM, settings=S9600)
    times = delivery_times(core, b"hello", S9600)
    for k, t in enumerate(times, start=1):
        assert t == pytest.approx(k * CHAR, abs=1e-9)


def test_unpaced_delivers_at_once():
    core = WireCore(wiring=NULL_MODEM, settings=S9600, paced=False)
    core.transmit("a", b"fast", 0.0)
    core.handle_timer(0.0)
    assert delivered(core.events()) == b"fast"


def test_late_timers_catch_up_without_losing_pace():
    core = WireCore(wiring=NULL_MODEM, settings=S9600)
    core.transmit("a", b"x" * 100, 0.0)
    core.handle_timer(50 * CHAR + 1e-9)  # one late wake-up
    assert len(delivered(core.events())) == 50
    core.handle_timer(100 * CHAR + 1e-9)
    assert len(delivered(core.events())) == 50


def test_lines_follow_the_null_modem_wiring():
    core = WireCore(wiring=NULL_MODEM, settings=S9600)
    core.set_outputs("a", 0.0, rts=True)
    events = core.events()
    assert LinesChanged("b", Lines(cts=True)) in events
    assert LinesChanged("a", Lines(rts=True)) in events
    core.set_outputs("b", 0.1, dtr=True)
    assert core.lines("a") == Lines(rts=True, dsr=True, dcd=True)


def test_a_device_drives_inputs_over_the_wiring():
    core = WireCore(wiring=NULL_MODEM, settings=S9600)
    core.drive("a", Line.RI, True, 0.0)
    core.drive("a", Line.DCD, True, 0.0)
    assert core.lines("a") == Lines(dcd=True, ri=True)
    core.drive("a", Line.DCD, None, 0.0)
    assert core.lines("a") == Lines(ri=True)


def test_cts_drop_stops_the_sender_within_one_character():
    settings = SerialSettings.parse("9600 8N1 rtscts")
    core = WireCore(wiring=NULL_MODEM, settings=settings)
    core.set_outputs("b", 0.0, rts=True)
    core.transmit("a", b"x" * 20, 0.0)
    t_drop = 5.5 * CHAR  # the 6th character is on the line
    run(core, t_drop)
    core.set_outputs("b", t_drop, rts=False)
    events = run(core, 30 * CHAR)
    total = 5 + len(delivered(events))
    # The character in flight at the drop finishes; no new one starts.
    assert total == 6
    core.set_outputs("b", 30 * CHAR, rts=True)
    events = run(core, 60 * CHAR)
    assert len(delivered(events)) == 14
    assert core.stats("b").overruns == 0


def test_xoff_from_the_receiver_pauses_the_sender():
    settings = SerialSettings.parse("9600 8N1 xonxoff")
    core = WireCore(wiring=NULL_MODEM, settings=settings)
    core.transmit("a", b"y" * 10, 0.0)
    core.transmit("b", b"\x13", 0.0)  # B's program sends XOFF
    events = run(core, 30 * CHAR)
    # A's UART consumed the XOFF; it got through at most the characters that
    # started before the XOFF finished arriving.
    assert delivered(events, "a") == b""
    sent = len(delivered(events, "b"))
    assert sent <= 2
    core.transmit("b", b"\x11", 30 * CHAR)  # XON
    events = run(core, 60 * CHAR)
    assert sent + len(delivered(events, "b")) == 10


def test_mismatched_rates_are_sampled_like_a_uart():
    core = WireCore(wiring=NULL_MODEM, settings={"a": S9600, "b": SerialSettings(19200)})
    data = b"\x55\xff\x00"
    core.transmit("a", data, 0.0)
    run(core, 10 * CHAR)
    expected = uart.transcode(data, S9600, SerialSettings(19200))
    stats = core.stats("b")
    assert stats.received == len(expected)
    assert stats.framing_errors == sum(c.framing_error and not c.is_break for c in expected)
    assert stats.breaks == sum(c.is_break for c in expected)


def test_mismatched_parity_errors_counted_against_a_hand_computation():
    # Hand-computed (see tests/test_uart.py): 8N1 "CA" back to back into an 8E1
    # receiver gives 0x43 with a framing error, then 0xD0 clean.
    tx, rx = SerialSettings.parse("9600 8N1"), SerialSettings.parse("9600 8E1")
    core = WireCore(wiring=NULL_MODEM, settings={"a": tx, "b": rx})
    core.set_policy("b", RxPolicy(inpck=True, parmrk=True))
    core.transmit("a", b"CA", 0.0)
    events = run(core, 30 * CHAR)
    assert delivered(events) == b"\xff\x00\x43\xd0"
    assert core.stats("b").framing_errors == 1


@pytest.mark.parametrize(
    ("policy", "expected"),
    [
        (RxPolicy(), b"\x00"),
        (RxPolicy(parmrk=True), b"\xff\x00\x00"),
        (RxPolicy(ignbrk=True), b""),
    ],
)
def test_break_is_reported_as_the_receivers_termios_asks(policy, expected):
    core = WireCore(wiring=NULL_MODEM, settings=S9600)
    core.set_policy("b", policy)
    core.set_break("a", True, 0.0)
    core.set_break("a", False, 0.05)
    events = run(core, 0.1)
    assert delivered(events) == expected
    assert BreakArrived("b") in events


def test_a_short_break_is_not_a_break():
    core = WireCore(wiring=NULL_MODEM, settings=S9600)
    core.set_break("a", True, 0.0)
    core.set_break("a", False, CHAR / 4)
    events = run(core, 0.05)
    assert not any(isinstance(e, BreakArrived) for e in events)


def test_a_full_receiver_overruns_and_counts():
    core = WireCore(wiring=NULL_MODEM, settings=SerialSettings(115200), rx_limit=64)
    core.transmit("a", b"z" * 200, 0.0)
    events = run(core, 0.05)
    got = delivered(events)
    assert len(got) == 64
    assert core.stats("b").overruns == 200 - 64


def test_a_burst_a_stalled_runtime_delivers_late_is_no_overrun():
    # The runtime wakes 10 ms late at 115200: about 115 characters arrive at once,
    # past rx_limit. The program gets as long to read them as the runtime was late,
    # so the rest of the 200 is not lost meanwhile; a program that then still
    # reads nothing overruns as before.
    core = WireCore(wiring=NULL_MODEM, settings=SerialSettings(115200), rx_limit=64)
    core.transmit("a", b"z" * 200, 0.0)
    core.handle_timer(0.010)
    first = delivered(core.events())
    assert len(first) > 64
    events = run(core, 0.0175, step=0.002)
    assert len(first) + len(delivered(events)) == 200
    assert core.stats("b").overruns == 0
    run(core, 0.025)  # the 10 ms of grace are over: the program still reads nothing
    core.transmit("a", b"y" * 200, core.now)
    run(core, 0.06)
    assert core.stats("b").overruns == 200


def test_rts_cts_protects_a_full_receiver():
    settings = SerialSettings.parse("115200 8N1 rtscts")
    core = WireCore(wiring=NULL_MODEM, settings=settings, rx_limit=64)
    core.set_outputs("a", 0.0, rts=True)
    core.set_outputs("b", 0.0, rts=True)
    core.transmit("a", b"z" * 200, 0.0)
    events = run(core, 0.05)
    got = len(delivered(events))
    # B's UART dropped RTS at 3/4 of its buffer: A stopped, nothing was lost.
    assert 48 <= got <= 64
    assert core.lines("a").cts is False
    assert core.stats("b").overruns == 0
    events = run(core, 0.1, reader="b")  # B's program reads from now on
    assert got + len(delivered(events)) == 200


def test_faults_replay_by_seed_and_differ_between_seeds():
    spec = FaultSpec.parse("ber=5e-3,drop=0.02,duplicate=0.02")

    def once(seed: int) -> bytes:
        core = WireCore(wiring=NULL_MODEM, settings=S9600, faults=spec, seed=seed)
        core.transmit("a", bytes(range(256)), 0.0)
        return delivered(run(core, 300 * CHAR, step=1e-3))

    assert once(7) == once(7)
    assert once(7) != once(8)
    assert once(7) != bytes(range(256))


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_bit_errors_alone_take_the_byte_path_between_errors_with_the_same_result(seed):
    """Characters between bit errors pass as bytes; the result is what sampling
    every character gives (a trace forces the sampling path)."""
    spec = FaultSpec.parse("ber=2e-3")
    data = bytes(range(256)) * 4

    def once(trace: bool) -> tuple[bytes, int, int]:
        core = WireCore(
            wiring=NULL_MODEM,
            settings=S9600,
            faults=spec,
            seed=seed,
            trace=WireTrace() if trace else None,
        )
        core.transmit("a", data, 0.0)
        out = delivered(run(core, 1100 * CHAR, step=5e-3))
        stats = core.stats("b")
        return out, stats.framing_errors, stats.received

    fast, sampled = once(False), once(True)
    assert fast == sampled
    assert fast[0] != data  # errors did happen


def test_idle_noise_appears_on_a_quiet_line():
    spec = FaultSpec.parse("noise=200")
    core = WireCore(wiring=NULL_MODEM, settings=S9600, faults=spec, seed=1)
    run(core, 1.0, step=1e-3)
    assert 100 < core.stats("b").noise < 300


def test_loopback_wiring_hears_itself():
    core = WireCore(wiring=load_wiring("loopback"), settings=S9600)
    core.transmit("a", b"echo", 0.0)
    core.set_outputs("a", 0.0, rts=True)
    events = run(core, 10 * CHAR)
    assert delivered(events, "a") == b"echo"
    assert core.lines("a").cts is True


def test_latency_delays_without_reordering():
    spec = FaultSpec.parse("latency=10ms,jitter=5ms")
    core = WireCore(wiring=NULL_MODEM, settings=S9600, faults=spec, seed=3)
    core.transmit("a", b"ordered", 0.0)
    early = run(core, CHAR + 0.0099)  # the first character ends at CHAR, +10 ms
    assert delivered(early) == b""
    late = run(core, 0.1)
    assert delivered(late) == b"ordered"


def test_a_cable_with_a_rate_limit_garbles_faster_characters():
    fast = SerialSettings(115200)
    core = WireCore(wiring=NULL_MODEM, settings=fast, max_baud=57600)
    core.transmit("a", b"hi", 0.0)
    events = run(core, 0.01)
    assert delivered(events) == b"\x00\x00"
    assert core.stats("b").framing_errors == 2
    core.set_settings("a", S9600, 0.01)
    core.set_settings("b", S9600, 0.01)
    core.transmit("a", b"ok", 0.01)
    assert delivered(run(core, 0.05)) == b"ok"
