"""Seeded fault injection: parsing, replay, chunking, and the statistics of the faults."""

from __future__ import annotations

import itertools
import time
import tomllib
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from serialhs.errors import ConfigError
from serialhs.sim.faults import FaultInjector, FaultSpec

ROOT = Path(__file__).resolve().parent.parent

ALL = FaultSpec(ber=0.01, drop=0.05, duplicate=0.05, burst_rate=0.02, burst_bits=12)


# --- the spec -------------------------------------------------------------------------------


def test_parse_full_text():
    spec = FaultSpec.parse("ber=1e-5,drop=0.001,latency=5ms,jitter=1ms,burst=0.001/16")
    assert spec == FaultSpec(
        ber=1e-5, drop=0.001, latency=0.005, jitter=0.001, burst_rate=0.001, burst_bits=16
    )
    assert spec


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", FaultSpec()),
        ("none", FaultSpec()),
        ("drop=1%", FaultSpec(drop=0.01)),
        ("dup=0.5", FaultSpec(duplicate=0.5)),
        ("duplicate=0.5 ber=0", FaultSpec(duplicate=0.5)),
        ("burst=0.25", FaultSpec(burst_rate=0.25)),
        ("burst_rate=0.25, burst_bits=3", FaultSpec(burst_rate=0.25, burst_bits=3)),
        ("noise=2/s", FaultSpec(noise=2.0)),
        ("noise=0.5", FaultSpec(noise=0.5)),
        ("latency=2", FaultSpec(latency=2.0)),
        ("latency=250us,jitter=40ns", FaultSpec(latency=250e-6, jitter=40e-9)),
        ("LATENCY=1s", FaultSpec(latency=1.0)),
    ],
)
def test_parse_forms(text, expected):
    assert FaultSpec.parse(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("ber=2", "ber is a probability in"),
        ("drop=-0.1", "drop must be a finite number >= 0"),
        ("drop=150%", "drop is a probability"),
        ("ber=nan", "finite"),
        ("latency=inf", "finite"),
        ("latency=5kg", "cannot read unit 'kg'"),
        ("drop=5ms", "cannot read unit 'ms'"),
        ("noise=3%", r"use /s"),
        ("ber", "expected key=value"),
        ("ber=", "expected key=value"),
        ("ber=1e-3,ber=1e-4", "ber given twice"),
        ("dup=0.1,duplicate=0.1", "duplicate given twice"),
        ("burst=0.1/0", "burst_bits must be an int 1..65536"),
        ("burst=0.1/x", "whole number of bits"),
        ("burst_bits=1.5", "whole number of bits"),
        ("bogus=1,worse=2", "unknown fault setting.s. 'bogus', 'worse'"),
        ("ber=lots", "must be a number"),
    ],
)
def test_parse_errors(text, message):
    with pytest.raises(ConfigError, match=message):
        FaultSpec.parse(text)


def test_validation_at_construction():
    with pytest.raises(ConfigError, match="ber is a probability"):
        FaultSpec(ber=1.5)
    with pytest.raises(ConfigError, match="jitter must be a finite number >= 0"):
        FaultSpec(jitter=-1.0)
    with pytest.raises(ConfigError, match="must be a number"):
        FaultSpec(drop="0.1")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="must be a number"):
        FaultSpec(drop=True)
    with pytest.raises(ConfigError, match="burst_bits"):
        FaultSpec(burst_bits=0)
    with pytest.raises(ConfigError, match="burst_bits"):
        FaultSpec(burst_bits=2.0)  # type: ignore[arg-type]
    assert FaultSpec(drop=1).drop == 1.0 and isinstance(FaultSpec(drop=1).drop, float)


def test_text_form_round_trips():
    for spec in (
        FaultSpec(),
        FaultSpec(ber=1e-7),
        FaultSpec(burst_bits=3),
        ALL,
        FaultSpec(noise=0.25, latency=0.005, jitter=1e-4, drop=1 / 3),
    ):
        assert FaultSpec.parse(str(spec)) == spec
    assert str(FaultSpec()) == "none"
    assert str(FaultSpec(drop=0.5, latency=0.01)) == "drop=0.5,latency=0.01"


def test_from_toml_mapping():
    table = tomllib.loads(
        """
        [faults]
        ber = 1e-5
        drop = "0.1%"
        latency = "5ms"
        jitter = 0.001
        burst = "0.001/16"
        noise = 1
        """
    )["faults"]
    assert FaultSpec.from_mapping(table, where="wire.toml [faults]") == FaultSpec(
        ber=1e-5,
        drop=0.001,
        latency=0.005,
        jitter=0.001,
        burst_rate=0.001,
        burst_bits=16,
        noise=1.0,
    )


def test_from_mapping_errors_name_keys_and_place():
    with pytest.raises(ConfigError, match=r"^wire.toml: unknown fault setting.s. 'Drop', 'lag'"):
        FaultSpec.from_mapping({"lag": 1, "Drop": 0.1, "ber": 0.0}, where="wire.toml")
    with pytest.raises(ConfigError, match=r"^wire.toml: fault drop must be a number"):
        FaultSpec.from_mapping({"drop": [0.1]}, where="wire.toml")
    with pytest.raises(ConfigError, match=r"^fault latency must be a finite number >= 0"):
        FaultSpec.from_mapping({"latency": -1})
    with pytest.raises(ConfigError, match="whole number of bits"):
        FaultSpec.from_mapping({"burst_bits": True})


def test_truth():
    assert not FaultSpec()
    assert not FaultSpec(burst_bits=3)  # a length without a rate is no fault
    for name in ("ber", "drop", "duplicate", "burst_rate", "noise", "latency", "jitter"):
        assert FaultSpec(**{name: 0.5})
    assert FaultSpec(drop=0.1).garbles
    assert not FaultSpec(latency=0.1).garbles


# --- replay ------------------------------------------------------------------------------


def run(spec: FaultSpec, seed: int, stream: str, data: bytes, frame_bits: int = 10):
    return FaultInjector(spec, seed=seed, stream=stream).characters(data, frame_bits)


DATA = bytes(range(256)) * 20


def test_same_seed_and_stream_replay():
    assert run(ALL, 1, "a->b", DATA) == run(ALL, 1, "a->b", DATA)
    one, two = (FaultInjector(ALL, seed=9, stream="x") for _ in range(2))
    assert [one.delay() for _ in range(5)] == [two.delay() for _ in range(5)]
    assert one.idle_noise(10_000, 0.001) == two.idle_noise(10_000, 0.001)


def test_different_seed_or_stream_differs():
    base = run(ALL, 1, "a->b", DATA)
    assert run(ALL, 2, "a->b", DATA) != base
    assert run(ALL, 1, "b->a", DATA) != base
    assert FaultInjector(ALL, seed="1", stream="a->b").characters(DATA, 10) == base


def test_other_decisions_do_not_disturb_the_characters():
    spec = FaultSpec(ber=0.01, drop=0.1, duplicate=0.1, jitter=0.01, noise=5.0)
    quiet = FaultInjector(spec, seed=3, stream="a")
    busy = FaultInjector(spec, seed=3, stream="a")
    expected = quiet.characters(DATA, 11)
    got = []
    for start in range(0, len(DATA), 100):
        busy.delay()
        busy.idle_noise(1000, 1e-3)
        got += busy.characters(DATA[start : start + 100], 11)
    assert got == expected


@settings(max_examples=150, deadline=None, derandomize=True, database=None)
@given(
    data=st.binary(max_size=300),
    cuts=st.lists(st.integers(min_value=0, max_value=300), max_size=8),
    frame_bits=st.integers(min_value=1, max_value=13),
    burst_bits=st.integers(min_value=1, max_value=40),
)
def test_any_chunking_gives_the_same_faults(data, cuts, frame_bits, burst_bits):
    spec = FaultSpec(ber=0.02, drop=0.05, duplicate=0.05, burst_rate=0.05, burst_bits=burst_bits)
    whole = run(spec, 11, "a->b", data, frame_bits)
    injector = FaultInjector(spec, seed=11, stream="a->b")
    bounds = [0, *sorted(c for c in cuts if c <= len(data)), len(data)]
    pieces = []
    for start, end in itertools.pairwise(bounds):
        pieces += injector.characters(data[start:end], frame_bits)
    assert pieces == whole
    assert all(0 <= mask < 1 << frame_bits for _, mask in pieces)


@settings(max_examples=100, deadline=None, derandomize=True, database=None)
@given(cuts=st.lists(st.integers(min_value=0, max_value=5000), max_size=6))
def test_idle_noise_chunking(cuts):
    spec = FaultSpec(noise=50.0)
    whole = FaultInjector(spec, seed=5, stream="n").idle_noise(5000, 1e-3)
    injector = FaultInjector(spec, seed=5, stream="n")
    bounds = [0, *sorted(cuts), 5000]
    pieces = []
    for start, end in itertools.pairwise(bounds):
        pieces += [(start + i, v) for i, v in injector.idle_noise(end - start, 1e-3)]
    assert pieces == whole


# --- statistics (seeded, so these are exact replays, not flaky draws) ---------------------


def test_drop_rate():
    out = run(FaultSpec(drop=0.1), 1, "a", bytes(100_000))
    # 10% of 100k dropped: sd = sqrt(100k * 0.1 * 0.9) = 95, so +-1000 is over 10 sd
    assert 89_000 <= len(out) <= 91_000
    assert all(mask == 0 for _, mask in out)


def test_duplicate_rate_and_order():
    data = bytes(range(256)) * 400
    injector = FaultInjector(FaultSpec(duplicate=0.1), seed=1, stream="a")
    out = injector.characters(data, 10)
    assert 111_640 <= len(out) <= 113_640  # 102400 + 10% = 112640 (sd 96)
    assert injector.stats.duplicated == len(out) - len(data)
    # duplicates come right after the original; removing adjacent repeats of the cycle
    # 0..255 gives the data back
    values = [v for v, _ in out]
    deduped = [v for i, v in enumerate(values) if i == 0 or v != values[i - 1]]
    assert deduped == list(data)


def test_bit_error_rate():
    injector = FaultInjector(FaultSpec(ber=1e-3), seed=1, stream="a")
    out = injector.characters(bytes(100_000), 10)
    flips = sum(mask.bit_count() for _, mask in out)
    # 1e6 bits at 1e-3: mean 1000, sd 31.6; allow 5 sd
    assert 842 <= flips <= 1158
    assert injector.stats.bit_errors == flips
    # every bit position is hit: the gaps run across frame boundaries
    by_slot = [sum((mask >> i) & 1 for _, mask in out) for i in range(10)]
    assert all(60 <= n <= 140 for n in by_slot)


def test_bit_error_rate_one_flips_everything():
    assert run(FaultSpec(ber=1.0), 1, "a", b"abc", 9) == [(97, 511), (98, 511), (99, 511)]


def group_flips(out, frame_bits: int, within: int) -> list[tuple[int, int]]:
    """(first, last) bit of each cluster of flipped bits no more than `within` apart."""
    positions = [
        n * frame_bits + i
        for n, (_, mask) in enumerate(out)
        for i in range(frame_bits)
        if mask >> i & 1
    ]
    groups: list[list[int]] = []
    for p in positions:
        if groups and p - groups[-1][1] <= within:
            groups[-1][1] = p
        else:
            groups.append([p, p])
    return [(a, b) for a, b in groups]


def test_burst_lengths():
    spec = FaultSpec(burst_rate=5e-4, burst_bits=16)
    injector = FaultInjector(spec, seed=2, stream="a")
    out = injector.characters(bytes(200_000), 10)
    # a burst flips its first and last bit, so its flips span exactly 16 bits; flips inside
    # one burst are at most 14 bits apart
    groups = group_flips(out, 10, within=14)
    assert len(groups) == injector.stats.bursts
    assert 70 <= len(groups) <= 130  # 200k * 5e-4 = 100, sd 10
    assert all(last - first + 1 == 16 for first, last in groups)
    # bursts run across character boundaries
    assert any(first // 10 != last // 10 for first, last in groups)


@pytest.mark.parametrize(("bits", "pattern"), [(1, 0b1), (2, 0b11)])
def test_short_bursts(bits, pattern):
    injector = FaultInjector(FaultSpec(burst_rate=0.01, burst_bits=bits), seed=4, stream="a")
    groups = group_flips(injector.characters(bytes(20_000), 64), 64, within=1)
    assert len(groups) == injector.stats.bursts > 100
    assert all(last - first + 1 == pattern.bit_length() for first, last in groups)


def test_delay():
    assert FaultInjector(FaultSpec(latency=0.005), seed=1, stream="a").delay() == 0.005
    injector = FaultInjector(FaultSpec(latency=0.005, jitter=0.002), seed=1, stream="a")
    delays = [injector.delay() for _ in range(20_000)]
    assert all(0.005 <= d <= 0.007 for d in delays)
    assert sum(delays) / len(delays) == pytest.approx(0.006, abs=2e-5)  # sd of mean 4e-6


def test_idle_noise_rate():
    # 100 noise chars per second in 1 ms slots: P(slot) = 1 - exp(-0.1) = 0.0952
    injector = FaultInjector(FaultSpec(noise=100.0), seed=1, stream="a")
    noise = injector.idle_noise(100_000, 0.001)
    assert 9_050 <= len(noise) <= 9_980  # mean 9516, sd 93
    slots = [slot for slot, _ in noise]
    assert slots == sorted(set(slots)) and slots[0] >= 0 and slots[-1] < 100_000
    assert all(0 <= value <= 255 for _, value in noise)
    assert injector.stats.noise == len(noise)


def test_no_faults_is_identity_and_free():
    injector = FaultInjector(FaultSpec(), seed=1, stream="a")
    states = [r.getstate() for r in (injector._chars, injector._delays, injector._noise)]
    data = bytes(range(256)) * 1000
    started = time.perf_counter()
    out = injector.characters(data, 10)
    assert time.perf_counter() - started < 0.2
    assert out == [(b, 0) for b in data]
    assert injector.delay() == 0.0
    assert injector.idle_noise(10**9, 1e-3) == []
    assert states == [r.getstate() for r in (injector._chars, injector._delays, injector._noise)]


def test_bad_arguments():
    injector = FaultInjector(ALL, seed=1, stream="a")
    with pytest.raises(ConfigError, match="frame_bits"):
        injector.characters(b"x", 0)
    with pytest.raises(ConfigError, match="slots"):
        injector.idle_noise(-1, 0.001)
    with pytest.raises(ConfigError, match="char_time"):
        injector.idle_noise(5, 0.0)
