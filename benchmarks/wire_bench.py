"""Benchmarks of the virtual wire (serialhs.sim.Wire).

    .venv/bin/python benchmarks/wire_bench.py            # full run, about 1 minute
    .venv/bin/python benchmarks/wire_bench.py --quick    # smaller, under 20 s
    .venv/bin/python benchmarks/wire_bench.py --json     # one JSON object on stdout
    .venv/bin/python benchmarks/wire_bench.py --profile  # cProfile of the wire's loop

1. Unpaced throughput. A wire made with ``paced=False`` (no character timing, so
   its baud rate does not matter) moves a payload of random bytes from end a to
   end b, a serialhs Port on each end: a writer thread, the main thread reading
   with ``read_some(65536)``. A bare socat pair moves the same payload the same
   way, and once more with plain os.write/os.read (the raw baseline). The three
   are interleaved round by round in one process, so a busy machine slows all of
   them alike; the figure that counts is the ratio wire/socat, taken per round
   and reported as a median. Each measurement repeats its transfer (same
   payload, same pair) until it has run for a minimum time, so that the fast
   socat baselines are not timed over a few milliseconds.

2. Pacing accuracy. A paced wire at 115200 and 921600 baud (8N1) carries one
   second's worth of characters (baud/10 bytes). The time from the arrival of the
   first byte to the arrival of the last is compared with the character clock:
   (n - k) * char_time, where k is the size of the first chunk read (normally 1,
   which makes it (n - 1) * char_time). The error is a ratio against that clock.

The machine may be shared and noisy: every figure is a median over rounds, with
the smallest and largest value beside it.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import itertools
import os
import pstats
import statistics
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from _common import command_line, fmt, log, machine_info, report, summary

from serialhs.driver.port import Port
from serialhs.driver.settings import SerialSettings
from serialhs.errors import ReadTimeout
from serialhs.sim.socat import SocatPair
from serialhs.sim.wire import Wire
from serialhs.sim.wirecore import Deliver, WireCore
from serialhs.sim.wiring import DEFAULT_WIRING, load_wiring

#: Settings of the unpaced wire and of the ports on it. The wire is unpaced, so the
#: rate is never used for timing; the check below makes sure of that.
UNPACED_SETTINGS = SerialSettings(115200)
#: Largest read asked of a port.
READ_SIZE = 65536
#: Longest wait for one read before a round counts as stuck.
READ_TIMEOUT = 30.0
#: Baud rates whose pacing is measured.
PACING_RATES = (115200, 921600)

MB = 1e6  # throughput in MB/s (10^6 bytes per second)


@dataclass
class Profile:
    name: str
    payload: int  #: bytes per transfer
    rounds: int
    pacing_runs: int
    #: A measurement repeats its transfer (same payload, same pair) until it has
    #: taken this long, so that fast baselines are not timed over a few milliseconds.
    min_measure: float


FULL = Profile("full", payload=1 << 20, rounds=7, pacing_runs=5, min_measure=0.5)
QUICK = Profile("quick", payload=256 << 10, rounds=5, pacing_runs=3, min_measure=0.2)


# -- helpers -------------------------------------------------------------------------


class _Writer(threading.Thread):
    """Runs one write call and keeps its exception for the main thread."""

    def __init__(self, fn: Callable[[], object]) -> None:
        super().__init__(name="bench writer", daemon=True)
        self.fn = fn
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.fn()
        except BaseException as e:
            self.error = e

    def finish(self) -> None:
        self.join(READ_TIMEOUT)
        if self.error is not None:
            raise RuntimeError(f"the writer failed: {self.error!r}") from self.error
        if self.is_alive():
            raise RuntimeError("the writer did not finish")


# -- 1. unpaced throughput -------------------------------------------------------------


def ports_transfer(a_path: str, b_path: str, payload: bytes) -> float:
    """Seconds to move ``payload`` from a to b through serialhs ports."""
    settings = UNPACED_SETTINGS
    write_timeout = max(60.0, len(payload) / 10_000)
    with Port(a_path, settings) as a, Port(b_path, settings) as b:
        got = bytearray()
        writer = _Writer(lambda: a.write(payload, timeout=write_timeout))
        start = time.perf_counter()
        writer.start()
        while len(got) < len(payload):
            got += b.read_some(READ_SIZE, timeout=READ_TIMEOUT)
        elapsed = time.perf_counter() - start
        writer.finish()
    if got != payload:
        raise RuntimeError("the payload arrived changed")
    return elapsed


def raw_transfer(a_path: str, b_path: str, payload: bytes) -> float:
    """Seconds to move ``payload`` from a to b with os.write/os.read (blocking fds)."""
    a_fd = os.open(a_path, os.O_RDWR | os.O_NOCTTY)
    b_fd = os.open(b_path, os.O_RDWR | os.O_NOCTTY)
    try:
        view = memoryview(payload)

        def write_all() -> None:
            sent = 0
            while sent < len(view):
                sent += os.write(a_fd, view[sent:])

        got = bytearray()
        writer = _Writer(write_all)
        start = time.perf_counter()
        writer.start()
        while len(got) < len(payload):
            chunk = os.read(b_fd, READ_SIZE)
            if not chunk:
                raise RuntimeError("end of file on the socat pair")
            got += chunk
        elapsed = time.perf_counter() - start
        writer.finish()
    finally:
        os.close(a_fd)
        os.close(b_fd)
    if got != payload:
        raise RuntimeError("the payload arrived changed")
    return elapsed


Transfer = Callable[[str, str, bytes], float]


@dataclass
class Measured:
    mb_per_s: float
    transfers: int


def measure(transfer: Transfer, a: str, b: str, payload: bytes, min_time: float) -> Measured:
    """Repeat ``transfer`` until it has taken ``min_time`` in all."""
    seconds = 0.0
    count = 0
    while count == 0 or seconds < min_time:
        seconds += transfer(a, b, payload)
        count += 1
    return Measured(count * len(payload) / seconds / MB, count)


def wire_round(payload: bytes, min_time: float) -> Measured:
    # overflow="block" (the default of an unpaced wire, spelled out): an unpaced
    # sender is infinitely fast, so "overrun" would drop (and count) what the
    # receiver's buffer cannot hold; "block" holds the sender back instead.
    with Wire(settings=UNPACED_SETTINGS, paced=False, overflow="block") as wire:
        result = measure(ports_transfer, wire.a.pty, wire.b.pty, payload, min_time)
        stats = wire.b.stats()
    if stats.overruns or stats.received != result.transfers * len(payload):
        raise RuntimeError(f"the wire lost bytes: {stats}")
    return result


def socat_round(payload: bytes, min_time: float, raw: bool) -> Measured:
    with SocatPair() as pair:
        transfer = raw_transfer if raw else ports_transfer
        return measure(transfer, pair.a, pair.b, payload, min_time)


def throughput(profile: Profile, log: Callable[[str], None]) -> dict[str, Any]:
    payload = os.urandom(profile.payload)
    n = len(payload)
    wire: list[float] = []
    socat: list[float] = []
    raw: list[float] = []
    transfers: dict[str, list[int]] = {"wire": [], "socat": [], "socat_raw": []}
    least = profile.min_measure
    for index in range(profile.rounds):
        # The order inside a round rotates, so no variant always runs first.
        order: list[tuple[str, list[float], Callable[[], Measured]]] = [
            ("wire", wire, lambda: wire_round(payload, least)),
            ("socat", socat, lambda: socat_round(payload, least, raw=False)),
            ("socat_raw", raw, lambda: socat_round(payload, least, raw=True)),
        ]
        shift = index % len(order)
        for name, results, run in order[shift:] + order[:shift]:
            measured = run()
            results.append(measured.mb_per_s)
            transfers[name].append(measured.transfers)
        log(
            f"  round {index + 1}/{profile.rounds}: wire {wire[-1]:.3f} MB/s, "
            f"socat {socat[-1]:.2f} MB/s, socat raw {raw[-1]:.2f} MB/s"
        )
    nominal = UNPACED_SETTINGS.baudrate / UNPACED_SETTINGS.bits_per_char / MB
    if statistics.median(wire) < 2 * nominal:
        raise RuntimeError(
            f"the unpaced wire moved {statistics.median(wire):.4f} MB/s, about its nominal "
            f"{nominal:.4f} MB/s: pacing seems to be on"
        )
    return {
        "payload_bytes": n,
        "rounds": profile.rounds,
        "min_measure_s": least,
        "transfers_per_measurement": transfers,
        "wire_settings": str(UNPACED_SETTINGS),
        "wire_options": {"paced": False, "overflow": "block"},
        "read_size": READ_SIZE,
        "mb_per_s": {"wire": summary(wire), "socat": summary(socat), "socat_raw": summary(raw)},
        "ratio": {
            "wire_over_socat": summary([w / s for w, s in zip(wire, socat, strict=True)]),
            "wire_over_socat_raw": summary([w / r for w, r in zip(wire, raw, strict=True)]),
            "socat_over_socat_raw": summary([s / r for s, r in zip(socat, raw, strict=True)]),
        },
        "nominal_mb_per_s_at_wire_settings": nominal,
    }


# -- 2. pacing accuracy ------------------------------------------------------------------


#: How long a pacing run waits for more bytes before it counts the rest as lost.
PACING_IDLE = 2.0


def pacing_run(baud: int) -> dict[str, Any]:
    settings = SerialSettings(baud)
    count = baud // 10  # one second of 8N1 characters
    payload = os.urandom(count)
    arrivals: list[tuple[float, int]] = []  # (time, bytes so far)
    with (
        Wire(settings=settings) as wire,
        Port(wire.a.pty, settings) as a,
        Port(wire.b.pty, settings) as b,
    ):
        got = bytearray()
        writer = _Writer(lambda: a.write(payload, timeout=10.0))
        t_write = time.perf_counter()
        writer.start()
        try:
            got += b.read_some(READ_SIZE, timeout=5.0)
            arrivals.append((time.perf_counter(), len(got)))
            while len(got) < count:
                got += b.read_some(READ_SIZE, timeout=PACING_IDLE)
                arrivals.append((time.perf_counter(), len(got)))
        except ReadTimeout:
            pass  # the rest was lost: recorded below
        writer.finish()
        stats = wire.b.stats()
    run: dict[str, Any] = {
        "bytes": count,
        "received": len(got),
        "overruns": stats.overruns,
        "intact": got == payload,
    }
    if not run["intact"] or not arrivals:
        return run
    char_time = settings.char_time
    t_first, first = arrivals[0]
    t_last = arrivals[-1][0]
    measured = t_last - t_first
    expected = (count - first) * char_time
    gaps = [later[0] - earlier[0] for earlier, later in itertools.pairwise(arrivals)]
    # How late each read got its newest byte: a line that starts with the write
    # ends that byte's last bit at t_write + so_far * char_time.
    late = [(t - t_write) - so_far * char_time for t, so_far in arrivals]
    sizes = [later[1] - earlier[1] for earlier, later in itertools.pairwise(arrivals)]
    run.update(
        {
            "char_time_s": char_time,
            "first_chunk": first,
            "expected_s": expected,
            "measured_s": measured,
            "error_pct": 100.0 * (measured - expected) / expected,
            "abs_error_pct": 100.0 * abs(measured - expected) / expected,
            "reads": len(arrivals),
            "median_chunk": statistics.median(sizes) if sizes else float(first),
            "max_chunk": max(sizes) if sizes else first,
            "max_gap_ms": 1e3 * max(gaps) if gaps else 0.0,
            "median_gap_ms": 1e3 * statistics.median(gaps) if gaps else 0.0,
            "median_late_ms": 1e3 * statistics.median(late),
            "max_late_ms": 1e3 * max(late),
            "min_late_ms": 1e3 * min(late),
        }
    )
    return run


TIMING_KEYS = (
    "expected_s",
    "measured_s",
    "error_pct",
    "abs_error_pct",
    "first_chunk",
    "reads",
    "median_chunk",
    "max_chunk",
    "median_gap_ms",
    "max_gap_ms",
    "median_late_ms",
    "max_late_ms",
    "min_late_ms",
)


def pacing(
    profile: Profile, rates: tuple[int, ...], log: Callable[[str], None]
) -> list[dict[str, Any]]:
    runs: dict[int, list[dict[str, Any]]] = {baud: [] for baud in rates}
    for index in range(profile.pacing_runs):
        for baud in rates:  # interleaved: 115200, 921600, 115200, ...
            run = pacing_run(baud)
            runs[baud].append(run)
            head = f"  run {index + 1}/{profile.pacing_runs} at {baud}: "
            if run["intact"]:
                log(
                    f"{head}error {run['error_pct']:+.2f} %, first read "
                    f"{run['first_chunk']} byte(s), {run['reads']} reads, "
                    f"max gap {run['max_gap_ms']:.2f} ms"
                )
            else:
                log(
                    f"{head}LOST {run['bytes'] - run['received']} of {run['bytes']} bytes "
                    f"({run['overruns']} overruns counted by the wire)"
                )
    out = []
    for baud, results in runs.items():
        intact = [r for r in results if r["intact"]]
        entry: dict[str, Any] = {
            "baud": baud,
            "framing": "8N1",
            "bytes": results[0]["bytes"],
            "runs": len(results),
            "intact_runs": len(intact),
            "lost_bytes": summary([float(r["bytes"] - r["received"]) for r in results]),
            "overruns": summary([float(r["overruns"]) for r in results]),
        }
        for key in TIMING_KEYS:
            entry[key] = summary([float(r[key]) for r in intact]) if intact else None
        out.append(entry)
    return out


# -- the profile of the wire's loop ------------------------------------------------------


class _ProfiledWire(Wire):
    """A Wire whose event-loop thread runs under cProfile."""

    profiler = cProfile.Profile()

    def _loop(self) -> None:
        self.profiler.enable()
        try:
            super()._loop()
        finally:
            self.profiler.disable()


def profile_wire(size: int, top: int) -> str:
    payload = os.urandom(size)
    out = io.StringIO()
    with _ProfiledWire(settings=UNPACED_SETTINGS, paced=False, overflow="block") as wire:
        elapsed = ports_transfer(wire.a.pty, wire.b.pty, payload)
    print(
        f"unpaced wire under cProfile: {size} bytes in {elapsed:.2f} s "
        f"({size / elapsed / MB:.3f} MB/s; the profiler itself slows it)",
        file=out,
    )
    stats = pstats.Stats(_ProfiledWire.profiler, stream=out)
    stats.sort_stats("tottime").print_stats(top)

    # The sans-I/O core alone: no ptys, no threads, no clock.
    core = WireCore(
        wiring=load_wiring(DEFAULT_WIRING),
        settings=UNPACED_SETTINGS,
        paced=False,
        overflow="block",
    )
    moved = 0
    start = time.perf_counter()
    for offset in range(0, size, core.tx_limit):
        core.transmit("a", payload[offset : offset + core.tx_limit], 0.0)
        core.handle_timer(0.0)
        moved += sum(len(e.data) for e in core.events() if isinstance(e, Deliver))
        core.set_backlog("b", 0, 0.0)  # a reader that takes everything at once
    elapsed = time.perf_counter() - start
    assert moved == size, (moved, size)
    print(
        f"WireCore alone (paced=False, 4096-byte transmits, no I/O): {size} bytes in "
        f"{elapsed:.3f} s = {size / elapsed / MB:.3f} MB/s, "
        f"{1e6 * elapsed / size:.2f} us per byte",
        file=out,
    )
    return out.getvalue()


# -- output ----------------------------------------------------------------------------


def table(result: dict[str, Any]) -> str:
    t = result["throughput"]
    m = result["machine"]
    rows = [
        f"serialhs wire benchmark ({result['profile']}) - {m['date']}, nproc {m['nproc']}, "
        f"Linux {m['kernel']}, Python {m['python']}, {m['socat']}",
        f"command: {result['command']}",
        "",
        f"1. Unpaced throughput: {t['payload_bytes']} random bytes a -> b, "
        f"{t['rounds']} interleaved rounds (each measurement repeats the transfer for "
        f">= {t['min_measure_s']} s), median [min .. max]",
        f"   {'wire  (paced=False, overflow=block), Port -> Port':<52}"
        f"{fmt(t['mb_per_s']['wire'], '.3f')} MB/s",
        f"   {'socat pair, Port -> Port':<52}{fmt(t['mb_per_s']['socat'], '.2f')} MB/s",
        f"   {'socat pair, os.write -> os.read (raw)':<52}"
        f"{fmt(t['mb_per_s']['socat_raw'], '.2f')} MB/s",
        f"   {'ratio wire / socat (Port), per round':<52}"
        f"{fmt(t['ratio']['wire_over_socat'], '.4f')}",
        f"   {'ratio wire / socat raw, per round':<52}"
        f"{fmt(t['ratio']['wire_over_socat_raw'], '.4f')}",
        f"   {'ratio socat Port / socat raw, per round':<52}"
        f"{fmt(t['ratio']['socat_over_socat_raw'], '.3f')}",
        "",
        "2. Pacing accuracy: one second of 8N1 characters a -> b, first to last arrival, "
        "median [min .. max]",
    ]
    for p in result["pacing"]:
        if p["intact_runs"] < p["runs"]:
            rows.append(
                f"   {p['baud']} baud: {p['runs'] - p['intact_runs']} of {p['runs']} runs LOST "
                f"bytes: {fmt(p['lost_bytes'], '.0f')} of {p['bytes']}, overruns "
                f"{fmt(p['overruns'], '.0f')}"
            )
        if not p["intact_runs"]:
            continue
        rows += [
            f"   {p['baud']} baud, {p['bytes']} bytes, {p['intact_runs']} runs: expected "
            f"{p['expected_s']['median']:.4f} s, measured {fmt(p['measured_s'], '.4f')} s",
            f"      error {fmt(p['error_pct'], '+.2f')} %   (|error| median "
            f"{p['abs_error_pct']['median']:.2f} %); bytes in the first read "
            f"{fmt(p['first_chunk'], '.0f')}",
            f"      reads {fmt(p['reads'], '.0f')}, bytes per read median "
            f"{p['median_chunk']['median']:.0f}, max {p['max_chunk']['max']:.0f}; gap between "
            f"reads median {p['median_gap_ms']['median']:.2f} ms, max "
            f"{fmt(p['max_gap_ms'], '.2f')} ms",
            f"      newest byte of a read behind the character clock: median "
            f"{fmt(p['median_late_ms'], '.2f')} ms, max {fmt(p['max_late_ms'], '.2f')} ms",
        ]
    rows.append(f"   load average at start {m['loadavg_start']}, at end {m['loadavg_end']}")
    rows.append(f"   wall time {result['wall_s']:.1f} s")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else "")
    parser.add_argument("--quick", action="store_true", help="smaller payload, fewer rounds")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--rounds", type=int, help="throughput rounds (default 7, quick 5)")
    parser.add_argument(
        "--payload-kib", type=int, help="throughput payload in KiB (default 1024, quick 256)"
    )
    parser.add_argument("--pacing-runs", type=int, help="runs per baud rate (default 5, quick 3)")
    parser.add_argument(
        "--rates",
        default=",".join(str(r) for r in PACING_RATES),
        help="baud rates whose pacing is measured, comma-separated (default %(default)s)",
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="only profile the unpaced wire's loop with cProfile and time its core alone",
    )
    args = parser.parse_args(argv)
    base = QUICK if args.quick else FULL
    profile = Profile(
        base.name,
        payload=(args.payload_kib << 10) if args.payload_kib else base.payload,
        rounds=args.rounds or base.rounds,
        pacing_runs=args.pacing_runs or base.pacing_runs,
        min_measure=base.min_measure,
    )
    command = command_line()

    if args.profile:
        print(profile_wire(profile.payload, top=20))
        return 0
    started = time.perf_counter()
    machine = machine_info()
    log(f"unpaced throughput ({profile.payload} bytes, {profile.rounds} rounds)")
    through = throughput(profile, log)
    log(f"pacing accuracy ({profile.pacing_runs} runs per rate)")
    rates = tuple(int(r) for r in args.rates.split(",") if r.strip())
    paced = pacing(profile, rates, log)
    machine["loadavg_end"] = list(os.getloadavg())
    result: dict[str, Any] = {
        "benchmark": "wire",
        "profile": profile.name,
        "command": command,
        "machine": machine,
        "throughput": through,
        "pacing": paced,
        "wall_s": time.perf_counter() - started,
    }
    report(result, as_json=args.json, table=table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
