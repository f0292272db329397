"""Benchmark of the AT command engine (serialhs.modem.Modem): AT round trips per second.

    .venv/bin/python benchmarks/at_bench.py            # full run, under 1 minute
    .venv/bin/python benchmarks/at_bench.py --quick    # smaller, about 15 s
    .venv/bin/python benchmarks/at_bench.py --json     # one JSON object on stdout
    .venv/bin/python benchmarks/at_bench.py --echo both  # E1 rounds, then E0 rounds
    .venv/bin/python benchmarks/at_bench.py --profile  # cProfile of the engine's loop

The Hayes emulator (serialhs.sim.hayes.HayesModem, the "v90_dialup" profile) sits
on end b of a socat pair: a responder thread opens b with os.open (non-blocking,
select-driven), feeds what it reads to the emulator's core and writes the core's
ToDte bytes back. End a is the DTE side, and two clients take turns on it:

- the engine: ``Modem(Port(pair.a, "115200 8N1")).command("AT")`` in a loop;
- the baseline: bare pyserial, ``serial.Serial(pair.a, 115200, timeout=1)``,
  ``write(b"AT\\r")`` then ``read_until(b"OK\\r\\n")`` in a loop, each reply
  compared with the exact bytes the emulator sends.

Both clients talk to the same emulator through the same pair, in the same
process, one after the other, round by round (the order inside a round
alternates). Each measurement runs its loop until it has taken a minimum time
(and done a minimum number of round trips). The figure that counts is the ratio
engine / bare per round, reported as a median with the smallest and largest
value beside it; the engine's overhead is 1 - ratio. The goal is an overhead
under 20 %.

Echo is on (E1, the emulator's factory default) unless ``--echo off`` is given:
with E1 each reply is ``AT\\r\\r\\nOK\\r\\n`` (10 bytes), with E0 ``\\r\\nOK\\r\\n``.
Both clients always run with the same echo setting.
"""

from __future__ import annotations

import argparse
import cProfile
import datetime
import io
import json
import os
import platform
import pstats
import select
import shlex
import shutil
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import serial

from serialhs.driver.port import Port
from serialhs.modem.client import POLL, Modem
from serialhs.modem.profile import load_modem_profile
from serialhs.sim.hayes import HayesModem, ToDte
from serialhs.sim.socat import SocatPair

#: The emulator's modem profile.
PROFILE = "v90_dialup"
#: Settings of the engine's Port (a pty: the rate only matters to the emulator's
#: profile, which answers at any rate here, as nothing paces the pair).
SETTINGS = "115200 8N1"
BAUD = 115200
#: Longest wait for one reply before the benchmark gives up.
REPLY_TIMEOUT = 2.0
#: Round trips before the clock starts in each measurement.
WARMUP = 20
#: The exact reply to "AT\r", by echo setting.
REPLIES = {True: b"AT\r\r\nOK\r\n", False: b"\r\nOK\r\n"}
TERMINATOR = b"OK\r\n"


@dataclass
class Profile:
    name: str
    rounds: int
    #: Each measurement runs its loop until it has taken this long ...
    min_measure: float
    #: ... and done at least this many round trips.
    min_trips: int


FULL = Profile("full", rounds=7, min_measure=1.5, min_trips=200)
QUICK = Profile("quick", rounds=5, min_measure=0.6, min_trips=100)


# -- helpers -------------------------------------------------------------------------


def summary(values: list[float]) -> dict[str, Any]:
    return {
        "median": statistics.median(values),
        "min": min(values),
        "max": max(values),
        "values": values,
    }


def machine_info() -> dict[str, Any]:
    socat = shutil.which("socat")
    socat_version = ""
    if socat:
        out = subprocess.run(
            [socat, "-V"], capture_output=True, text=True, timeout=10, check=False
        ).stdout
        for line in out.splitlines():
            if line.startswith("socat version"):
                socat_version = line.strip()
                break
    return {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "nproc": len(os.sched_getaffinity(0)),
        "cpu_count": os.cpu_count(),
        "kernel": platform.release(),
        "machine": platform.machine(),
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "pyserial": serial.__version__,
        "socat": socat_version,
        "loadavg_start": list(os.getloadavg()),
    }


# -- the emulator on end b ------------------------------------------------------------


class Responder(threading.Thread):
    """Serves a HayesModem core on one end of a socat pair: select on the fd, feed
    what arrives to the core, write its ToDte bytes back, run its timers."""

    def __init__(self, path: str, *, echo: bool) -> None:
        super().__init__(name="bench hayes responder", daemon=True)
        self.core = HayesModem(load_modem_profile(PROFILE), number="5551000", now=time.monotonic())
        self.core.events()  # the line drives at construction: no lines on a pty
        if not echo:
            self.core.from_dte(b"ATE0\r", time.monotonic())
            reply = b"".join(e.data for e in self.core.events() if isinstance(e, ToDte))
            if not reply.endswith(b"OK\r\n"):
                raise RuntimeError(f"the emulator did not take ATE0: {reply!r}")
        self.fd = os.open(path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
        self._wake_r, self._wake_w = os.pipe()
        self._stopping = False
        self.error: BaseException | None = None
        self.received = 0
        self.sent = 0

    def run(self) -> None:
        try:
            self._serve()
        except BaseException as e:
            self.error = e

    def _serve(self) -> None:
        fd, core = self.fd, self.core
        while not self._stopping:
            timer = core.get_timer()
            wait = None if timer is None else max(0.0, timer - time.monotonic())
            ready, _, _ = select.select([fd, self._wake_r], [], [], wait)
            if self._wake_r in ready:
                return
            now = time.monotonic()
            if fd in ready:
                try:
                    data = os.read(fd, 4096)
                except BlockingIOError:
                    continue
                except OSError:
                    # EIO: the pair's other end has no opener for a moment
                    # (between two clients); wait a little and look again.
                    time.sleep(0.001)
                    continue
                if not data:
                    time.sleep(0.001)
                    continue
                self.received += len(data)
                core.from_dte(data, now)
            else:
                core.handle_timer(now)
            for event in core.events():
                if isinstance(event, ToDte):
                    self._write_all(event.data)

    def _write_all(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            try:
                n = os.write(self.fd, view)
            except BlockingIOError:
                select.select([], [self.fd], [], REPLY_TIMEOUT)
                continue
            view = view[n:]
            self.sent += n

    def stop(self) -> None:
        self._stopping = True
        os.write(self._wake_w, b"x")
        self.join(5.0)
        os.close(self.fd)
        os.close(self._wake_r)
        os.close(self._wake_w)
        if self.error is not None:
            raise RuntimeError(f"the emulator's responder failed: {self.error!r}") from self.error


# -- the two clients -------------------------------------------------------------------


@dataclass
class Measured:
    trips_per_s: float
    trips: int
    seconds: float


def run_loop(step: Callable[[], None], least: float, min_trips: int) -> Measured:
    for _ in range(WARMUP):
        step()
    trips = 0
    start = time.perf_counter()
    deadline = start + least
    while True:
        step()
        trips += 1
        if trips >= min_trips and time.perf_counter() >= deadline:
            break
    seconds = time.perf_counter() - start
    return Measured(trips / seconds, trips, seconds)


def engine_measure(path: str, echo: bool, least: float, min_trips: int) -> Measured:
    with Port(path, SETTINGS, discard_input=True) as port:
        modem = Modem(port, timeout=REPLY_TIMEOUT)
        modem.core.echo = echo  # what the emulator does; the engine copes either way

        def step() -> None:
            reply = modem.command("AT")
            if not reply.ok or reply.lines:
                raise RuntimeError(f"unexpected reply to AT: {reply!r}")

        return run_loop(step, least, min_trips)


def bare_measure(path: str, echo: bool, least: float, min_trips: int) -> Measured:
    expected = REPLIES[echo]
    with serial.Serial(path, BAUD, timeout=REPLY_TIMEOUT) as port:

        def step() -> None:
            port.write(b"AT\r")
            reply = port.read_until(TERMINATOR)
            if reply != expected:
                raise RuntimeError(f"unexpected reply to AT: {reply!r}, wanted {expected!r}")

        return run_loop(step, least, min_trips)


Client = Callable[[str, bool, float, int], Measured]
CLIENTS: dict[str, Client] = {"engine": engine_measure, "bare": bare_measure}


def bench(profile: Profile, echo: bool, log: Callable[[str], None]) -> dict[str, Any]:
    rates: dict[str, list[float]] = {"engine": [], "bare": []}
    trips: dict[str, list[int]] = {"engine": [], "bare": []}
    names = list(CLIENTS)
    with SocatPair() as pair:
        responder = Responder(pair.b, echo=echo)
        responder.start()
        try:
            for index in range(profile.rounds):
                order = names if index % 2 == 0 else names[::-1]
                for name in order:
                    m = CLIENTS[name](pair.a, echo, profile.min_measure, profile.min_trips)
                    rates[name].append(m.trips_per_s)
                    trips[name].append(m.trips)
                log(
                    f"  E{int(echo)} round {index + 1}/{profile.rounds} "
                    f"({'/'.join(order)}): engine {rates['engine'][-1]:.0f}/s, "
                    f"bare {rates['bare'][-1]:.0f}/s, "
                    f"ratio {rates['engine'][-1] / rates['bare'][-1]:.3f}"
                )
        finally:
            responder.stop()
        served = responder.received
    ratios = [e / b for e, b in zip(rates["engine"], rates["bare"], strict=True)]
    return {
        "echo": echo,
        "reply_bytes": len(REPLIES[echo]),
        "rounds": profile.rounds,
        "min_measure_s": profile.min_measure,
        "min_trips": profile.min_trips,
        "warmup_trips": WARMUP,
        "trips_per_measurement": trips,
        "bytes_to_emulator": served,
        "trips_per_s": {name: summary(values) for name, values in rates.items()},
        "ratio_engine_over_bare": summary(ratios),
        "overhead_pct": summary([100.0 * (1.0 - r) for r in ratios]),
        "latency_us": {
            name: {"median": 1e6 / statistics.median(values)} for name, values in rates.items()
        },
        "goal_met": statistics.median(ratios) > 0.8,
    }


# -- the profile of the engine's loop --------------------------------------------------


def profile_engine(seconds: float, echo: bool, top: int) -> str:
    out = io.StringIO()
    with SocatPair() as pair:
        responder = Responder(pair.b, echo=echo)
        responder.start()
        try:
            results = {}
            for name, client in CLIENTS.items():
                results[name] = client(pair.a, echo, seconds, 100)  # unprofiled reference
            with Port(pair.a, SETTINGS, discard_input=True) as port:
                modem = Modem(port, timeout=REPLY_TIMEOUT)
                modem.core.echo = echo
                for _ in range(WARMUP):
                    modem.command("AT")
                profiler = cProfile.Profile()
                trips = 0
                start = time.perf_counter()
                profiler.enable()
                while time.perf_counter() - start < seconds:
                    modem.command("AT")
                    trips += 1
                profiler.disable()
                elapsed = time.perf_counter() - start
        finally:
            responder.stop()
    print(
        f"without the profiler: engine {results['engine'].trips_per_s:.0f} round trips/s, "
        f"bare pyserial {results['bare'].trips_per_s:.0f}/s "
        f"(ratio {results['engine'].trips_per_s / results['bare'].trips_per_s:.3f}); "
        f"E{int(echo)}, POLL = {POLL} s",
        file=out,
    )
    print(
        f"engine under cProfile (main thread only): {trips} round trips in {elapsed:.2f} s, "
        f"{trips / elapsed:.0f}/s, {1e6 * elapsed / trips:.0f} us each",
        file=out,
    )
    stats = pstats.Stats(profiler, stream=out)
    stats.sort_stats("tottime").print_stats(top)
    stats.sort_stats("cumulative").print_stats(top)
    return out.getvalue()


# -- output ----------------------------------------------------------------------------


def fmt(s: dict[str, Any], spec: str) -> str:
    return f"{s['median']:{spec}} [{s['min']:{spec}} .. {s['max']:{spec}}]"


ENGINE_LABEL = 'engine: Modem(Port).command("AT")'


def table(result: dict[str, Any]) -> str:
    m = result["machine"]
    p = result["settings"]
    rows = [
        f"serialhs AT engine benchmark ({result['profile']}) - {m['date']}, nproc {m['nproc']}, "
        f"Linux {m['kernel']}, Python {m['python']}, pyserial {m['pyserial']}, {m['socat']}",
        f"command: {result['command']}",
        "",
        f"AT round trips per second against the Hayes emulator ({PROFILE}) on a socat pair; "
        f"{p['rounds']} interleaved rounds, each measurement >= {p['min_measure_s']} s and "
        f">= {p['min_trips']} round trips; median [min .. max]",
    ]
    for r in result["runs"]:
        label = "echo ON (E1)" if r["echo"] else "echo OFF (E0)"
        rows += [
            f"  {label}, reply {r['reply_bytes']} bytes",
            f"   {ENGINE_LABEL:<46}"
            f"{fmt(r['trips_per_s']['engine'], '.0f')} /s  "
            f"({r['latency_us']['engine']['median']:.0f} us each)",
            f"   {'bare pyserial: write + read_until(OK)':<46}"
            f"{fmt(r['trips_per_s']['bare'], '.0f')} /s  "
            f"({r['latency_us']['bare']['median']:.0f} us each)",
            f"   {'ratio engine / bare, per round':<46}"
            f"{fmt(r['ratio_engine_over_bare'], '.3f')}",
            f"   {'engine overhead (1 - ratio), per round':<46}"
            f"{fmt(r['overhead_pct'], '+.1f')} %",
            f"   goal (overhead < 20 %): {'MET' if r['goal_met'] else 'NOT MET'}",
        ]
    rows.append(f"  load average at start {m['loadavg_start']}, at end {m['loadavg_end']}")
    rows.append(f"  wall time {result['wall_s']:.1f} s")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else "")
    parser.add_argument("--quick", action="store_true", help="fewer, shorter rounds")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--rounds", type=int, help="rounds (default 7, quick 5)")
    parser.add_argument(
        "--seconds", type=float, help="least time per measurement (default 1.5, quick 0.6)"
    )
    parser.add_argument(
        "--echo",
        choices=("on", "off", "both"),
        default="on",
        help="the emulator's echo for both clients: on (E1, default), off (E0), or both",
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="only profile the engine's command loop with cProfile",
    )
    args = parser.parse_args(argv)
    base = QUICK if args.quick else FULL
    profile = Profile(
        base.name,
        rounds=args.rounds or base.rounds,
        min_measure=args.seconds or base.min_measure,
        min_trips=base.min_trips,
    )
    echoes = {"on": [True], "off": [False], "both": [True, False]}[args.echo]
    command = shlex.join(
        [os.path.relpath(sys.executable), os.path.relpath(sys.argv[0]), *sys.argv[1:]]
    )

    def log(text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    if args.profile:
        print(profile_engine(args.seconds or 3.0, echoes[0], top=25))
        return 0
    started = time.perf_counter()
    machine = machine_info()
    runs = []
    for echo in echoes:
        log(f"AT round trips, E{int(echo)} ({profile.rounds} rounds)")
        runs.append(bench(profile, echo, log))
    machine["loadavg_end"] = list(os.getloadavg())
    result: dict[str, Any] = {
        "benchmark": "at",
        "profile": profile.name,
        "command": command,
        "machine": machine,
        "settings": {
            "rounds": profile.rounds,
            "min_measure_s": profile.min_measure,
            "min_trips": profile.min_trips,
            "emulator_profile": PROFILE,
            "port_settings": SETTINGS,
            "engine_poll_s": POLL,
        },
        "runs": runs,
        "goal": "engine overhead under 20 % (ratio engine/bare above 0.8)",
        "goal_met": all(r["goal_met"] for r in runs),
        "wall_s": time.perf_counter() - started,
    }
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(table(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
