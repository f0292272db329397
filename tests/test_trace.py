"""Wire traces: recording, bounds, VCD export (read back by a small parser here
and, where installed, by sigrok-cli and GTKWave's vcd2fst/fst2vcd) and text."""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import pytest

from serialhs.errors import ConfigError
from serialhs.sim.trace import STANDARD_SIGNALS, WireTrace, vcd_identifier

BAUD = 9600
BIT = 1 / BAUD


def frame_8n1(value: int) -> list[tuple[int, float]]:
    """One 8N1 character as per-bit runs: start, 8 data bits LSB first, stop."""
    bits = [0] + [(value >> i) & 1 for i in range(8)] + [1]
    return [(bit, BIT) for bit in bits]


def tick(seconds: float, timescale_ns: int = 1) -> int:
    return round(seconds * 1e9 / timescale_ns)


# --- a small VCD reader, independent of the writer -------------------------------------


@dataclass
class Var:
    kind: str
    width: int
    code: str
    name: str


@dataclass
class Vcd:
    timescale: str = ""
    header: dict[str, str] = field(default_factory=dict)
    vars: dict[str, Var] = field(default_factory=dict)  # full name -> var
    initial: dict[str, str] = field(default_factory=dict)
    changes: dict[str, list[tuple[int, str]]] = field(default_factory=dict)
    times: list[int] = field(default_factory=list)

    def transitions(self, name: str) -> list[tuple[int, str]]:
        return self.changes.get(name, [])

    def value_at(self, name: str, when: int) -> str:
        value = self.initial[name]
        for at, new in self.transitions(name):
            if at > when:
                break
            value = new
        return value


KEYWORD = re.compile(r"^\$[a-z]+$")


def parse_vcd(text: str, *, strict: bool = True) -> Vcd:
    """Tokenise a VCD file: header sections, $scope/$var, then #time and values.

    ``strict`` also checks what this project's writer promises: time stamps
    strictly increasing, no value repeated, every identifier code printable.
    """
    tokens = text.split()
    vcd = Vcd()
    scopes: list[str] = []
    by_code: dict[str, list[str]] = {}
    current: dict[str, str] = {}
    index = 0

    def section() -> list[str]:
        nonlocal index
        words = []
        while tokens[index] != "$end":
            assert not KEYWORD.match(tokens[index]), f"keyword {tokens[index]} inside a section"
            words.append(tokens[index])
            index += 1
        index += 1
        return words

    while True:
        word = tokens[index]
        index += 1
        if word == "$enddefinitions":
            assert section() == []
            break
        if word == "$scope":
            kind, name = section()
            assert kind == "module"
            scopes.append(name)
        elif word == "$upscope":
            section()
            scopes.pop()
        elif word == "$var":
            kind, width, code, *names = section()
            assert len(names) == 1, names
            assert kind in ("wire", "reg")
            assert all(33 <= ord(c) <= 126 for c in code)
            full = ".".join([*scopes, names[0]])
            if not strict:  # sigrok drops scopes, so names repeat: number them
                while full in vcd.vars:
                    full += "'"
            assert full not in vcd.vars, f"{full} declared twice"
            vcd.vars[full] = Var(kind, int(width), code, names[0])
            by_code.setdefault(code, []).append(full)
        elif word == "$timescale":
            vcd.timescale = "".join(section())
        elif word in ("$date", "$version", "$comment"):
            vcd.header[word] = " ".join(section())
        else:
            raise AssertionError(f"unexpected {word!r} in the header")
    assert not scopes, "unbalanced $scope"

    now: int | None = None
    in_dumpvars = False
    while index < len(tokens):
        word = tokens[index]
        index += 1
        if word.startswith("#"):
            new = int(word[1:])
            if strict and now is not None:
                assert new > now, f"time {new} after {now}"
            now = new
            vcd.times.append(now)
            continue
        if word == "$dumpvars":
            in_dumpvars = True
            continue
        if word == "$end":
            assert in_dumpvars
            in_dumpvars = False
            continue
        if word == "$comment":
            while tokens[index] != "$end":
                index += 1
            index += 1
            continue
        assert now is not None, f"value {word!r} before the first time stamp"
        if word[0] in "bB":
            value, code = word[1:], tokens[index]
            index += 1
        else:
            value, code = word[0], word[1:]
        assert code in by_code, f"undeclared identifier {code!r}"
        for name in by_code[code]:
            if in_dumpvars:
                vcd.initial[name] = value
            else:
                if strict:
                    assert current.get(name) != value, f"{name} repeats {value} at {now}"
                vcd.changes.setdefault(name, []).append((now, value))
            current[name] = value
    assert not in_dumpvars
    for name in vcd.vars:  # no $dumpvars (sigrok): values at the first time stamp
        changes = vcd.changes.get(name, [])
        if name not in vcd.initial and changes and changes[0][0] == vcd.times[0]:
            vcd.initial[name] = changes.pop(0)[1]
    return vcd


def bits_of(value: str) -> int:
    return int(value, 2)


# --- a small scenario ----------------------------------------------------------------------


def scenario() -> WireTrace:
    trace = WireTrace()
    trace.level(0.0005, "a.rts", True)
    trace.level(0.0005, "b.cts", True)
    trace.waveform(0.001, "a.txd", frame_8n1(0x41))
    trace.byte(0.001 + 9.5 * BIT, "b.rx", 0x41)
    trace.level(0.003, "a.rts", False)
    trace.level(0.003, "b.cts", False)
    trace.note(0.0031, "a paused")
    return trace


A_TICKS = [
    (tick(0.001), "0"),
    (tick(0.001 + 1 * BIT), "1"),
    (tick(0.001 + 2 * BIT), "0"),
    (tick(0.001 + 7 * BIT), "1"),
    (tick(0.001 + 8 * BIT), "0"),
    (tick(0.001 + 9 * BIT), "1"),
]


def test_an_a_at_9600_8n1_gives_the_expected_transitions() -> None:
    vcd = parse_vcd(scenario().to_vcd())
    assert vcd.timescale == "1ns"
    assert vcd.initial["a.txd"] == "1"
    assert A_TICKS == [
        (1_000_000, "0"),
        (1_104_167, "1"),
        (1_208_333, "0"),
        (1_729_167, "1"),
        (1_833_333, "0"),
        (1_937_500, "1"),
    ]
    assert vcd.transitions("a.txd") == A_TICKS
    assert vcd.transitions("b.txd") == []
    assert vcd.transitions("a.rts") == [(500_000, "1"), (3_000_000, "0")]
    assert vcd.transitions("b.cts") == [(500_000, "1"), (3_000_000, "0")]
    assert vcd.transitions("b.rx") == [(tick(0.001 + 9.5 * BIT), "1000001")]
    assert bits_of(vcd.value_at("b.rx", 3_000_000)) == 0x41


def test_merged_runs_give_the_same_transitions_as_per_bit_runs() -> None:
    trace = WireTrace()
    runs = [(0, BIT), (1, BIT), (0, 5 * BIT), (1, BIT), (0, BIT), (1, BIT)]
    trace.waveform(0.001, "a.txd", runs)
    assert parse_vcd(trace.to_vcd()).transitions("a.txd") == A_TICKS


def test_exact_fractions_are_accepted_as_durations() -> None:
    trace = WireTrace()
    bit = Fraction(1, BAUD)
    bits = [0] + [(0x41 >> i) & 1 for i in range(8)] + [1]
    trace.waveform(0.001, "a.txd", [(level, bit) for level in bits])
    assert parse_vcd(trace.to_vcd()).transitions("a.txd") == A_TICKS


def test_vcd_header_and_standard_signals() -> None:
    text = scenario().to_vcd(date="2026-01-02")
    vcd = parse_vcd(text)
    assert vcd.header["$date"] == "2026-01-02"
    assert vcd.header["$version"].startswith("serialhs ")
    assert "a paused" in vcd.header["$comment"]
    names = [f"{end}.{name}" for end in "ab" for name, _ in STANDARD_SIGNALS]
    assert list(vcd.vars) == names
    for full, var in vcd.vars.items():
        if full.endswith(".rx"):
            assert (var.kind, var.width) == ("reg", 8)
        else:
            assert (var.kind, var.width) == ("wire", 1)
    assert vcd.initial == {full: ("1" if full.endswith(".txd") else "0") for full in names}
    lines = text.splitlines()
    assert lines.index("$enddefinitions $end") < lines.index("#0") < lines.index("$dumpvars")


def test_vcd_ends_after_the_last_frame_and_after_the_last_change() -> None:
    trace = WireTrace()
    trace.waveform(0.001, "a.txd", frame_8n1(0x55))
    assert parse_vcd(trace.to_vcd()).times[-1] == tick(0.001 + 10 * BIT)
    trace = WireTrace()
    trace.level(0.002, "a.dtr", True)
    assert parse_vcd(trace.to_vcd()).times[-2:] == [2_000_000, 2_000_001]
    assert parse_vcd(WireTrace().to_vcd()).times == [0]


def test_events_out_of_order_are_sorted_stably() -> None:
    trace = WireTrace()
    trace.level(0.002, "a.rts", True)
    trace.level(0.001, "a.rts", True)
    trace.level(0.001, "a.rts", False)  # same time: the later record wins
    trace.level(0.0015, "a.dtr", True)
    vcd = parse_vcd(trace.to_vcd())
    assert vcd.transitions("a.rts") == [(2_000_000, "1")]
    assert vcd.transitions("a.dtr") == [(1_500_000, "1")]
    assert [e.t for e in trace.events()] == [0.001, 0.001, 0.0015, 0.002]
    assert [e.value for e in trace.events()][:2] == [1, 0]


def test_repeated_values_are_collapsed() -> None:
    trace = WireTrace()
    trace.level(0.001, "a.rts", True)
    trace.level(0.002, "a.rts", True)
    trace.level(0.003, "a.rts", False)
    trace.level(0.004, "a.cts", False)
    vcd = parse_vcd(trace.to_vcd())
    assert vcd.transitions("a.rts") == [(1_000_000, "1"), (3_000_000, "0")]
    assert vcd.transitions("a.cts") == []


def test_an_event_at_time_zero_sets_the_initial_value() -> None:
    trace = WireTrace()
    trace.level(0.0, "a.dtr", True)
    trace.level(0.0, "b.txd", False)
    trace.level(0.001, "a.dtr", False)
    vcd = parse_vcd(trace.to_vcd())
    assert vcd.initial["a.dtr"] == "1"
    assert vcd.initial["b.txd"] == "0"
    assert vcd.transitions("a.dtr") == [(1_000_000, "0")]


def test_a_repeated_character_shows_as_a_change() -> None:
    trace = WireTrace()
    trace.byte(0.001, "b.rx", 0x41)
    trace.byte(0.002, "b.rx", 0x41)
    trace.byte(0.003, "b.rx", 0x00)
    vcd = parse_vcd(trace.to_vcd())
    assert vcd.transitions("b.rx") == [
        (1_000_000, "1000001"),
        (1_999_999, "z"),
        (2_000_000, "1000001"),
        (3_000_000, "0"),
    ]


def test_timescale() -> None:
    trace = scenario()
    vcd = parse_vcd(trace.to_vcd(timescale_ns=1000))
    assert vcd.timescale == "1us"
    assert vcd.transitions("a.txd")[1] == (tick(0.001 + BIT, 1000), "1") == (1104, "1")
    assert parse_vcd(trace.to_vcd(timescale_ns=10)).timescale == "10ns"
    assert parse_vcd(trace.to_vcd(timescale_ns=1_000_000)).timescale == "1ms"
    for bad in (0, 3, 20, -10):
        with pytest.raises(ConfigError, match="timescale_ns must be a power of ten"):
            trace.to_vcd(timescale_ns=bad)


def test_origin_shifts_the_time_axis() -> None:
    trace = WireTrace(origin=1000.0)
    trace.level(1000.25, "a.rts", True)
    assert parse_vcd(trace.to_vcd()).transitions("a.rts") == [(250_000_000, "1")]
    assert "+0.250000000 a.rts 1" in trace.to_text()
    with pytest.raises(ConfigError, match="before the trace's origin"):
        trace.level(999.0, "a.rts", False)


def test_origin_none_counts_from_the_earliest_event() -> None:
    trace = WireTrace(origin=None)
    assert trace.origin is None
    trace.level(5000.002, "a.rts", True)
    trace.waveform(5000.001, "a.txd", frame_8n1(0x41))
    vcd = parse_vcd(trace.to_vcd())
    assert vcd.initial["a.txd"] == "0"  # the start bit begins at tick 0
    assert vcd.transitions("a.txd")[0] == (tick(BIT), "1")
    assert vcd.transitions("a.rts") == [(1_000_000, "1")]
    assert "times from origin 5000.001 s" in vcd.header["$comment"]
    assert trace.to_text().splitlines()[1].startswith("+0.000000000 a.txd frame")
    assert parse_vcd(WireTrace(origin=None).to_vcd()).times == [0]
    with pytest.raises(ConfigError, match="origin must be"):
        WireTrace(origin=float("inf"))


def test_extra_signals_get_their_own_scope_and_types() -> None:
    trace = WireTrace()
    trace.level(0.001, "a.parity_error", True)
    trace.level(0.001, "modem.ring", True)
    trace.byte(0.002, "modem.dial", 0x35)
    vcd = parse_vcd(trace.to_vcd())
    names = list(vcd.vars)
    assert names[names.index("a.rx") + 1] == "a.parity_error"
    assert names[names.index("b.rx") + 1 :] == ["modem.ring", "modem.dial"]
    assert vcd.vars["modem.dial"].width == 8
    assert vcd.transitions("modem.ring") == [(1_000_000, "1")]
    assert "modem.ring" in trace.signals()
    trace.clear()
    assert "modem.ring" not in trace.signals()


def test_many_signals_get_multi_character_identifier_codes() -> None:
    trace = WireTrace()
    for index in range(150):
        trace.level(0.001 * (index + 1), f"x.s{index}", True)
    vcd = parse_vcd(trace.to_vcd())
    codes = [var.code for var in vcd.vars.values()]
    assert len(set(codes)) == len(codes) == 18 + 150
    assert any(len(code) == 2 for code in codes)
    assert vcd.transitions("x.s149") == [(150_000_000, "1")]


def test_vcd_identifier_codes() -> None:
    assert vcd_identifier(0) == "!"
    assert vcd_identifier(93) == "~"
    assert vcd_identifier(94) == "!!"
    codes = [vcd_identifier(i) for i in range(20_000)]
    assert len(set(codes)) == len(codes)
    assert all(33 <= ord(c) <= 126 for code in codes for c in code)


def test_vectors_false_splits_characters_into_bits() -> None:
    trace = scenario()
    trace.byte(0.004, "b.rx", 0x41)
    vcd = parse_vcd(trace.to_vcd(vectors=False))
    assert "b.rx" not in vcd.vars
    assert [vcd.vars[f"b.rx[{bit}]"].width for bit in range(8)] == [1] * 8
    value = sum(int(vcd.value_at(f"b.rx[{bit}]", 3_000_000)) << bit for bit in range(8))
    assert value == 0x41
    # the repeated character: every bit goes to z for one tick
    assert vcd.value_at("b.rx[3]", 3_999_999) == "z"
    assert vcd.transitions("b.rx[0]")[-1] == (4_000_000, "1")


def test_notes_never_end_a_section_early() -> None:
    trace = WireTrace()
    trace.note(0.001, "odd $end text\nover two lines \u00e9")
    trace.byte(0.002, "b.rx", 0x41, note="framing error")
    vcd = parse_vcd(trace.to_vcd())
    comment = vcd.header["$comment"]
    assert "+0.001000000 odd end text over two lines \\xe9" in comment
    assert "+0.002000000 b.rx 0x41 'A': framing error" in comment
    assert trace.to_vcd().isascii()


# --- recording errors --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("call", "expected"),
    [
        (lambda t: t.level(0.1, "a.rts", 2), "must be True or False"),
        (lambda t: t.level(0.1, "rts", True), "bad signal name 'rts'"),
        (lambda t: t.level(0.1, "a.rx", True), "a.rx is an 8-bit signal"),
        (lambda t: t.byte(0.1, "a.rts", 0x41), "a.rts is a 1-bit signal"),
        (lambda t: t.byte(0.1, "b.rx", 256), "must be an int 0..255"),
        (lambda t: t.level(float("nan"), "a.rts", True), "finite seconds"),
        (lambda t: t.level(-1.0, "a.rts", True), "before the trace's origin"),
        (lambda t: t.waveform(0.1, "a.txd", []), "no (level, seconds) runs"),
        (lambda t: t.waveform(0.1, "a.txd", [(0, -1.0)]), "durations are seconds >= 0"),
        (lambda t: t.waveform(0.1, "a.txd", [(2, 1.0)]), "use 0 or 1"),
        (lambda t: t.waveform(0.1, "a.txd", [(0, 0.0)]), "every run has zero length"),
        (lambda t: t.waveform(0.1, "a.txd", [(0,)]), "not (level, seconds)"),
    ],
)
def test_bad_records_are_refused_clearly(call: Callable[[WireTrace], None], expected: str) -> None:
    trace = WireTrace()
    with pytest.raises(ConfigError) as info:
        call(trace)
    assert expected in str(info.value)
    assert len(trace) == 0


def test_bad_bounds() -> None:
    for bad in (0, -1, True, 1.5):
        with pytest.raises(ConfigError, match="max_events"):
            WireTrace(max_events=bad)  # type: ignore[arg-type]


# --- bounds --------------------------------------------------------------------------------


def test_the_trace_is_bounded_and_counts_what_it_dropped() -> None:
    trace = WireTrace(max_events=10)
    for index in range(25):
        trace.level(0.001 * (index + 1), "a.rts", index % 2 == 0)
    assert len(trace) == 10
    assert trace.dropped == 15
    assert [e.t for e in trace.events()] == pytest.approx([0.001 * i for i in range(16, 26)])
    assert "15 earlier events dropped (bound 10)" in trace.to_text().splitlines()[0]
    vcd = parse_vcd(trace.to_vcd())
    assert "15 earlier events dropped" in vcd.header["$comment"]
    # the last dropped event set a.rts to 0 (index 14 -> True? index 14 is even: 1)
    assert vcd.initial["a.rts"] == "1"
    assert vcd.transitions("a.rts")[0] == (16_000_000, "0")


def test_waveforms_count_one_per_run_toward_the_bound() -> None:
    trace = WireTrace(max_events=20)
    for index in range(5):
        trace.waveform(0.01 * (index + 1), "a.txd", frame_8n1(0x41))  # 6 runs each
    assert len(trace) == 3
    assert trace.dropped == 2
    assert sum(e.weight for e in trace.events()) == 18
    big = WireTrace(max_events=4)
    big.waveform(0.0, "a.txd", frame_8n1(0x41))
    assert (len(big), big.dropped) == (0, 1)


def test_a_million_events_stay_within_the_bound() -> None:
    trace = WireTrace(max_events=1000)
    for index in range(20_000):
        trace.level(index * 1e-6, "a.rts", index % 2 == 1)
    assert len(trace) == 1000
    assert trace.dropped == 19_000


def test_clear() -> None:
    trace = WireTrace(max_events=2)
    for index in range(5):
        trace.level(index, "a.rts", index % 2 == 1)
    trace.level(0.5, "zz.extra", True)
    trace.clear()
    assert (len(trace), trace.dropped) == (0, 0)
    vcd = parse_vcd(trace.to_vcd())
    assert vcd.initial["a.rts"] == "0"
    assert "zz.extra" not in vcd.vars


# --- text ------------------------------------------------------------------------------------


def test_text_export_has_one_line_per_event_and_summarises_waveforms() -> None:
    trace = scenario()
    trace.byte(0.0032, "b.rx", 0x0D, note="framing error")
    trace.byte(0.0033, "b.rx", 0x13)
    trace.byte(0.0034, "b.rx", 0xE9)
    trace.waveform(0.004, "a.txd", [(0, 0.25), (1, BIT)])
    lines = trace.to_text().splitlines()
    assert lines == [
        "# serialhs wire trace: 11 events, seconds from 0.0",
        "+0.000500000 a.rts 1",
        "+0.000500000 b.cts 1",
        "+0.001000000 a.txd frame 0100000101 (10 bits of 104.167 us)",
        "+0.001989583 b.rx 0x41 'A'",
        "+0.003000000 a.rts 0",
        "+0.003000000 b.cts 0",
        "+0.003100000 note: a paused",
        "+0.003200000 b.rx 0x0d '\\r' (framing error)",
        "+0.003300000 b.rx 0x13 XOFF",
        "+0.003400000 b.rx 0xe9",
        "+0.004000000 a.txd waveform 0 for 250 ms, 1 for 104.167 us (250.104 ms in all)",
    ]


def test_text_frames_with_two_stop_bits_and_long_runs() -> None:
    trace = WireTrace()
    # 0x00 in 8N1: nine 0 bits then the stop bit
    trace.waveform(0.0, "a.txd", [(0, 9 * BIT), (1, BIT)])
    # 0xF0 in 8N2: start + four 0 bits, then four 1 bits + two stop bits; no run
    # is one bit long, so the bit time is not guessed at
    trace.waveform(0.01, "a.txd", [(0, 5 * BIT), (1, 6 * BIT)])
    # a break: 0 for 100 ms, then idle
    trace.waveform(0.02, "a.txd", [(0, 0.1), (1, 0.001)])
    lines = trace.to_text().splitlines()[1:]
    assert lines == [
        "+0.000000000 a.txd frame 0000000001 (10 bits of 104.167 us)",
        "+0.010000000 a.txd waveform 0 for 520.833 us, 1 for 625 us (1.14583 ms in all)",
        "+0.020000000 a.txd waveform 0 for 100 ms, 1 for 1 ms (101 ms in all)",
    ]


def test_save_vcd_and_text(tmp_path: Path) -> None:
    trace = scenario()
    trace.save_vcd(tmp_path / "wire.vcd")
    trace.save_text(tmp_path / "wire.txt")
    saved = parse_vcd((tmp_path / "wire.vcd").read_text(encoding="ascii"))
    assert saved.header["$date"] != "not recorded"
    assert saved.transitions("a.txd") == A_TICKS
    assert (tmp_path / "wire.txt").read_text(encoding="utf-8") == trace.to_text()


# --- independent readers ---------------------------------------------------------------------


def need(program: str, package: str) -> str:
    path = shutil.which(program)
    if path is None:
        pytest.skip(f"{program} is not installed (Debian package {package})")
    return path


def run(args: Sequence[str]) -> str:
    result = subprocess.run(list(args), capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    return result.stdout


def sigrok_vcd(sigrok: str, path: Path) -> Vcd:
    """The file as libsigrok reads it, written back out by its VCD output."""
    out = run([sigrok, "-i", str(path), "-I", "vcd", "-O", "vcd"])
    return parse_vcd(out[out.index("$date") :], strict=False)  # skip the META line


def two_characters() -> WireTrace:
    trace = scenario()
    trace.waveform(0.002, "a.txd", frame_8n1(0x4B))
    trace.byte(0.002 + 9.5 * BIT, "b.rx", 0x4B)
    trace.level(0.0035, "b.dcd", True)
    return trace


def test_sigrok_reads_the_vcd_and_decodes_the_uart_frames(tmp_path: Path) -> None:
    """libsigrok (PulseView's backend) re-reads every 1-bit change, and its UART
    decoder finds the two characters on a.txd."""
    sigrok = need("sigrok-cli", "sigrok-cli")
    trace = two_characters()
    path = tmp_path / "wire.vcd"
    path.write_text(trace.to_vcd(vectors=False), encoding="ascii")
    ours = parse_vcd(path.read_text(encoding="ascii"))

    again = sigrok_vcd(sigrok, path)
    # sigrok drops scopes and keeps the channel order: pair the wires up by position
    names = list(ours.vars)
    theirs = list(again.vars)
    assert [again.vars[n].name for n in theirs] == [ours.vars[n].name for n in names]
    assert len(theirs) == len(names) == 2 * (8 + 8)
    for mine, other in zip(names, theirs, strict=True):
        assert again.initial[other] == ours.initial[mine], mine
        collapsed = _collapse(again.initial[other], again.transitions(other))
        assert collapsed == _collapse(ours.initial[mine], ours.transitions(mine), z_as="0"), mine

    decoded = run(
        [sigrok, "-i", str(path), "-I", "vcd", "-P", f"uart:rx=txd:baudrate={BAUD}",
         "-A", "uart=rx-data"]
    )  # fmt: skip
    assert decoded.split() == ["uart-1:", "41", "uart-1:", "4B"]


def test_sigrok_reads_the_default_vcd_up_to_the_first_character(tmp_path: Path) -> None:
    sigrok = need("sigrok-cli", "sigrok-cli")
    trace = WireTrace()
    trace.waveform(0.001, "a.txd", frame_8n1(0x41))
    trace.level(0.003, "a.rts", True)
    path = tmp_path / "wire.vcd"
    path.write_text(trace.to_vcd(), encoding="ascii")  # rx declared as 8-bit reg, unused
    again = sigrok_vcd(sigrok, path)
    assert [n for n in again.vars if again.vars[n].name == "rx"] == []
    txd = next(n for n in again.vars if again.vars[n].name == "txd")
    rts = next(n for n in again.vars if again.vars[n].name == "rts")
    assert _collapse("1", again.transitions(txd)) == A_TICKS
    assert _collapse("0", again.transitions(rts)) == [(3_000_000, "1")]


def test_gtkwave_vcd2fst_round_trip(tmp_path: Path) -> None:
    """GTKWave's own reader converts the file to FST and back without loss."""
    vcd2fst = need("vcd2fst", "gtkwave")
    fst2vcd = need("fst2vcd", "gtkwave")
    trace = two_characters()
    trace.byte(0.0039, "b.rx", 0x4B)  # a repeated character
    for vectors in (True, False):
        source = tmp_path / f"wire{int(vectors)}.vcd"
        source.write_text(trace.to_vcd(vectors=vectors), encoding="ascii")
        fst = tmp_path / f"wire{int(vectors)}.fst"
        run([vcd2fst, str(source), str(fst)])
        ours = parse_vcd(source.read_text(encoding="ascii"))
        again = parse_vcd(run([fst2vcd, str(fst)]), strict=False)
        assert again.timescale == "1ns"
        assert set(again.vars) == set(ours.vars)
        for name in ours.vars:
            assert _norm(again.initial[name]) == _norm(ours.initial[name]), name
            assert [(t, _norm(v)) for t, v in again.transitions(name)] == [
                (t, _norm(v)) for t, v in ours.transitions(name)
            ], name


def _norm(value: str) -> str:
    """A vector value without leading zeros ('z' and 'zzzzzzzz' alike)."""
    if set(value) == {"z"}:
        return "z"
    return value.lstrip("0") or "0"


def _collapse(
    initial: str, changes: list[tuple[int, str]], *, z_as: str | None = None
) -> list[tuple[int, str]]:
    """Transitions with repeats removed (a sampling reader may repeat values);
    ``z_as`` maps 'z' to the level such a reader reports for it."""
    shown: list[tuple[int, str]] = []
    value = initial
    for at, raw in changes:
        new = z_as if z_as is not None and raw == "z" else raw
        if new != value:
            shown.append((at, new))
            value = new
    return shown
