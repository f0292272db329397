"""Benchmark of the AT command engine (serialhs.modem.Modem): AT round trips per second.

    .venv/bin/python benchmarks/at_bench.py              # full run, about 30 s
    .venv/bin/python benchmarks/at_bench.py --quick      # smaller, about 12 s
    .venv/bin/python benchmarks/at_bench.py --json       # one JSON object on stdout
    .venv/bin/python benchmarks/at_bench.py --echo both  # E1 rounds, then E0 rounds
    .venv/bin/python benchmarks/at_bench.py --profile    # cProfile of the engine's loop

The Hayes emulator (serialhs.sim.hayes.HayesModem with the "v90_dialup" profile)
sits on end b of a socat pair: a responder thread opens b with os.open
(non-blocking, select-driven), feeds what it reads to the emulator's core and
writes the core's ToDte bytes back. End a is the DTE side, and three clients
take turns on it:

- the engine: ``Modem(Port(pair.a, "115200 8N1")).command("AT")`` in a loop,
  each reply checked (OK, no information lines);
- the baseline: bare pyserial, ``serial.Serial(pair.a, 115200, timeout=1)``,
  ``write(b"AT\\r")`` then ``read_until(b"OK\\r\\n")`` in a loop, each reply
  compared with the exact bytes the emulator sends;
- the floor: the raw fd, os.write then select and os.read until the reply is
  whole (what the pair, socat and the emulator cost by themselves).

All three talk to the same emulator through the same pair, in the same process,
one after the other, round by round; the order inside a round rotates. Each
measurement opens its client, does a few unclocked round trips, then runs its
loop until it has taken a minimum time and done a minimum number of round
trips. The figure that counts is the ratio engine / bare per round, reported
as a median with the smallest and largest value beside it; the engine's
overhead is 1 - ratio. The goal is an overhead under 20 %. Beside the rates:
the CPU time of the client's thread per round trip, and round-trip times (the
median, the 99th percentile and the longest of each measurement).

Echo is on (E1, the emulator's factory default) unless ``--echo off`` is given:
with E1 each reply is ``AT\\r\\r\\nOK\\r\\n`` (9 bytes), with E0 ``\\r\\nOK\\r\\n``
(6 bytes). All clients in a run see the same echo setting.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import math
import os
import pstats
import select
import sys
import termios
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

import serial
from _common import command_line, fmt, log, machine_info, report, summary

from serialhs.driver.port import Port
from serialhs.modem.atcore import ATCore, Final
from serialhs.modem.client import POLL, Modem
from serialhs.modem.profile import load_modem_profile
from serialhs.sim.hayes import HayesModem, ToDte
from serialhs.sim.socat import SocatPair

#: The emulator's modem profile.
PROFILE = "v90_dialup"
#: Settings of the clients' ports. A socat pair has no character timing, so the
#: rate is nominal: nothing paces the bytes.
SETTINGS = "115200 8N1"
BAUD = 115200
#: Longest wait for one reply before the benchmark gives up.
REPLY_TIMEOUT = 2.0
#: Round trips before the clock starts in each measurement.
WARMUP = 20
#: The exact reply to "AT\r", by echo setting.
REPLIES = {True: b"AT\r\r\nOK\r\n", False: b"\r\nOK\r\n"}
TERMINATOR = b"OK\r\n"
#: The goal: the engine costs less than this fraction of the bare loop's rate.
GOAL_OVERHEAD = 0.20


@dataclass
class Profile:
    name: str
    rounds: int
    #: Each measurement runs its loop until it has taken this long ...
    min_measure: float
    #: ... and done at least this many round trips.
    min_trips: int


FULL = Profile("full", rounds=9, min_measure=1.0, min_trips=500)
QUICK = Profile("quick", rounds=5, min_measure=0.8, min_trips=200)


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
                if not data:  # socat has gone; stop() reports it
                    raise RuntimeError("end of file on the emulator's end of the pair")
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


# -- the clients ----------------------------------------------------------------------


@dataclass
class Measured:
    trips_per_s: float
    trips: int
    seconds: float
    #: CPU time of the client's thread per round trip (time.thread_time), in µs:
    #: what the client itself costs, apart from waiting for the reply.
    cpu_us: float
    #: Round-trip times in µs: the median, the 99th percentile and the longest.
    p50_us: float
    p99_us: float
    max_us: float


def run_loop(step: Callable[[], None], least: float, min_trips: int) -> Measured:
    for _ in range(WARMUP):
        step()
    times: list[float] = []
    clock = time.perf_counter
    cpu = time.thread_time()
    start = last = clock()
    deadline = start + least
    while True:
        step()
        now = clock()
        times.append(now - last)
        last = now
        if len(times) >= min_trips and now >= deadline:
            break
    seconds = last - start
    cpu = time.thread_time() - cpu
    trips = len(times)
    times.sort()
    return Measured(
        trips_per_s=trips / seconds,
        trips=trips,
        seconds=seconds,
        cpu_us=1e6 * cpu / trips,
        p50_us=1e6 * times[trips // 2],
        p99_us=1e6 * times[min(trips - 1, (99 * trips) // 100)],
        max_us=1e6 * times[-1],
    )


def engine_measure(path: str, echo: bool, least: float, min_trips: int) -> Measured:
    with Port(path, SETTINGS, discard_input=True) as port:
        modem = Modem(port, timeout=REPLY_TIMEOUT)
        modem.core.echo = echo  # as the emulator is set; the engine copes either way

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


def port_measure(path: str, echo: bool, least: float, min_trips: int) -> Measured:
    """The driver without the AT engine: Port.write, then Port.read_until (used by
    --profile to split the engine's cost between the Port and the AT core)."""
    expected = REPLIES[echo]
    with Port(path, SETTINGS, discard_input=True) as port:

        def step() -> None:
            port.write(b"AT\r", timeout=REPLY_TIMEOUT)
            reply = port.read_until(TERMINATOR, timeout=REPLY_TIMEOUT)
            if reply != expected:
                raise RuntimeError(f"unexpected reply to AT: {reply!r}, wanted {expected!r}")

        return run_loop(step, least, min_trips)


def raw_measure(path: str, echo: bool, least: float, min_trips: int) -> Measured:
    """The floor: os.write, then select and os.read on the fd until the reply is
    whole; no library at all."""
    expected = REPLIES[echo]
    fd = os.open(path, os.O_RDWR | os.O_NOCTTY)
    try:
        termios.tcflush(fd, termios.TCIFLUSH)

        def step() -> None:
            os.write(fd, b"AT\r")
            reply = b""
            while not reply.endswith(TERMINATOR):
                if not select.select([fd], [], [], REPLY_TIMEOUT)[0]:
                    raise RuntimeError(f"no reply to AT within {REPLY_TIMEOUT} s: {reply!r}")
                chunk = os.read(fd, 256)
                if not chunk:
                    raise RuntimeError("end of file on the socat pair")
                reply += chunk
            if reply != expected:
                raise RuntimeError(f"unexpected reply to AT: {reply!r}, wanted {expected!r}")

        return run_loop(step, least, min_trips)
    finally:
        os.close(fd)


Client = Callable[[str, bool, float, int], Measured]
#: The engine, the baseline the goal is set against (bare pyserial), and the
#: floor (the raw fd: what the pair, socat and the emulator cost by themselves).
CLIENTS: dict[str, Client] = {"engine": engine_measure, "bare": bare_measure, "raw": raw_measure}


def bench(profile: Profile, echo: bool, log: Callable[[str], None]) -> dict[str, Any]:
    names = list(CLIENTS)
    rates: dict[str, list[float]] = {name: [] for name in names}
    cpu: dict[str, list[float]] = {name: [] for name in names}
    latency: dict[str, dict[str, list[float]]] = {
        name: {"p50": [], "p99": [], "max": []} for name in names
    }
    trips: dict[str, list[int]] = {name: [] for name in names}
    with SocatPair() as pair:
        responder = Responder(pair.b, echo=echo)
        responder.start()
        try:
            for index in range(profile.rounds):
                # The order inside a round rotates, so no client always runs first.
                shift = index % len(names)
                order = names[shift:] + names[:shift]
                for name in order:
                    m = CLIENTS[name](pair.a, echo, profile.min_measure, profile.min_trips)
                    rates[name].append(m.trips_per_s)
                    cpu[name].append(m.cpu_us)
                    latency[name]["p50"].append(m.p50_us)
                    latency[name]["p99"].append(m.p99_us)
                    latency[name]["max"].append(m.max_us)
                    trips[name].append(m.trips)
                log(
                    f"  E{int(echo)} round {index + 1}/{profile.rounds} ({', '.join(order)}): "
                    f"engine {rates['engine'][-1]:.0f}/s, bare {rates['bare'][-1]:.0f}/s, "
                    f"raw {rates['raw'][-1]:.0f}/s; "
                    f"engine/bare {rates['engine'][-1] / rates['bare'][-1]:.3f}"
                )
        finally:
            responder.stop()
        if not pair.alive:
            raise RuntimeError("socat died during the benchmark")
    expected_bytes = 3 * (
        sum(sum(t) for t in trips.values()) + WARMUP * len(names) * profile.rounds
    )
    if responder.received != expected_bytes:
        raise RuntimeError(
            f"the emulator received {responder.received} bytes, expected {expected_bytes}"
        )

    def per_round(a: str, b: str) -> dict[str, Any]:
        return summary([x / y for x, y in zip(rates[a], rates[b], strict=True)])

    ratio = per_round("engine", "bare")
    return {
        "echo": echo,
        "reply_bytes": len(REPLIES[echo]),
        "rounds": profile.rounds,
        "trips_per_measurement": trips,
        "bytes_to_emulator": responder.received,
        "trips_per_s": {name: summary(values) for name, values in rates.items()},
        "cpu_us_per_trip": {name: summary(values) for name, values in cpu.items()},
        "latency_us": {
            name: {key: summary(values) for key, values in by_key.items()}
            for name, by_key in latency.items()
        },
        "ratio": {
            "engine_over_bare": ratio,
            "engine_over_raw": per_round("engine", "raw"),
            "bare_over_raw": per_round("bare", "raw"),
        },
        "overhead_pct": summary([100.0 * (1.0 - r) for r in ratio["values"]]),
        "goal_met": ratio["median"] > 1.0 - GOAL_OVERHEAD,
    }


# -- the profile of the engine's loop --------------------------------------------------


def core_alone(echo: bool, count: int = 20000) -> float:
    """µs per command of the sans-I/O AT core by itself: the engine's parsing cost."""
    core = ATCore(echo=echo)
    reply = REPLIES[echo]
    best = math.inf
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(count):
            core.send_command("AT", time.monotonic(), timeout=REPLY_TIMEOUT)
            core.receive_data(reply)
            core.handle_timer(time.monotonic())
            events = core.events()
        best = min(best, time.perf_counter() - start)
        if not isinstance(events[-1], Final) or not events[-1].success:
            raise RuntimeError(f"the core did not end with OK: {events!r}")
    return 1e6 * best / count


class _MemoryPort:
    """A stand-in for Port that answers every write with the emulator's reply at
    once, from memory: Modem.command with no I/O at all."""

    url = "memory"

    def __init__(self, reply: bytes) -> None:
        self.reply = reply
        self.pending = b""

    def write(self, data: bytes, *, timeout: float | None = None) -> int:
        self.pending = self.reply
        return len(data)

    def read_some(self, max_size: int, *, timeout: float | None = None) -> bytes:
        if not self.pending:
            raise RuntimeError("the engine read with no reply pending")
        return self.read_available(max_size)

    def read_available(self, max_size: int) -> bytes:
        out, self.pending = self.pending, b""
        return out


def client_alone(echo: bool, count: int = 20000) -> float:
    """µs per Modem.command("AT") over an in-memory port: the AT core plus the
    client's own code, without the driver and without system calls."""
    modem = Modem(cast(Any, _MemoryPort(REPLIES[echo])), timeout=REPLY_TIMEOUT)
    modem.core.echo = echo
    best = math.inf
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(count):
            reply = modem.command("AT")
        best = min(best, time.perf_counter() - start)
        if not reply.ok:
            raise RuntimeError(f"unexpected reply to AT: {reply!r}")
    return 1e6 * best / count


def profile_engine(seconds: float, echo: bool, top: int) -> str:
    out = io.StringIO()
    with SocatPair() as pair:
        responder = Responder(pair.b, echo=echo)
        responder.start()
        try:
            # One unprofiled measurement of each client first, for reference, and
            # of the Port alone (the engine minus the AT core).
            clients = {**CLIENTS, "port": port_measure}
            plain = {name: client(pair.a, echo, seconds, 100) for name, client in clients.items()}
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
        f"E{int(echo)}, POLL = {POLL} s. Without the profiler, one {seconds:g} s measurement "
        "each (round trips/s, client CPU per round trip):",
        file=out,
    )
    for name, m in plain.items():
        text = LABELS.get(name, "Port only: Port.write + Port.read_until(OK)")
        print(f"  {text:<44}{m.trips_per_s:7.0f}/s  {m.cpu_us:6.0f} us CPU", file=out)
    print(
        f"  ATCore alone (send_command, receive_data, handle_timer, events; no I/O): "
        f"{core_alone(echo):.1f} us per command",
        file=out,
    )
    print(
        f"  Modem.command over an in-memory port (ATCore + client code; no driver, no I/O): "
        f"{client_alone(echo):.1f} us per command",
        file=out,
    )
    print(
        f"engine under cProfile (its thread only; the profiler slows it): {trips} round trips "
        f"in {elapsed:.2f} s, {trips / elapsed:.0f}/s, {1e6 * elapsed / trips:.0f} us each",
        file=out,
    )
    stats = pstats.Stats(profiler, stream=out)
    stats.sort_stats("tottime").print_stats(top)
    stats.sort_stats("cumulative").print_stats(top)
    return out.getvalue()


# -- output ----------------------------------------------------------------------------


LABELS = {
    "engine": 'engine: Modem(Port).command("AT")',
    "bare": "bare pyserial: write + read_until(OK)",
    "raw": "raw fd: os.write + select/os.read",
}


def table(result: dict[str, Any]) -> str:
    m = result["machine"]
    p = result["settings"]
    rows = [
        f"serialhs AT engine benchmark ({result['profile']}) - {m['date']}, nproc {m['nproc']}, "
        f"Linux {m['kernel']}, Python {m['python']}, pyserial {m['pyserial']}, {m['socat']}",
        f"command: {result['command']}",
        "",
        f"AT round trips per second against the Hayes emulator ({p['emulator_profile']}) on "
        f"a socat pair, {p['rounds']} interleaved rounds (each measurement "
        f">= {p['min_measure_s']} s and >= {p['min_trips']} round trips), median [min .. max]",
    ]
    for r in result["runs"]:
        label = "echo ON (E1)" if r["echo"] else "echo OFF (E0)"
        rows.append(
            f"  {label}: reply {r['reply_bytes']} bytes"
            f"{'; the emulator echoes AT<CR> before OK' if r['echo'] else ''}"
        )
        rows.append(f"   {'':<40}{'round trips/s':<24}client CPU per trip (us)")
        for name, text in LABELS.items():
            rows.append(
                f"   {text:<40}{fmt(r['trips_per_s'][name], '.0f'):<24}"
                f"{fmt(r['cpu_us_per_trip'][name], '.0f')}"
            )
        rows.append(f"   {'':<40}round trip (us), median of the rounds' p50 / p99 / longest")
        for name, text in LABELS.items():
            lat = r["latency_us"][name]
            rows.append(
                f"   {text:<40}{lat['p50']['median']:.0f} / {lat['p99']['median']:.0f} / "
                f"{lat['max']['median']:.0f} (longest in any round {lat['max']['max']:.0f})"
            )
        ratio = r["ratio"]
        rows += [
            f"   {'ratio engine / bare, per round':<40}{fmt(ratio['engine_over_bare'], '.3f')}",
            f"   {'engine overhead = 1 - ratio':<40}{fmt(r['overhead_pct'], '+.1f')} %",
            f"   {'ratio engine / raw, per round':<40}{fmt(ratio['engine_over_raw'], '.3f')}",
            f"   {'ratio bare / raw, per round':<40}{fmt(ratio['bare_over_raw'], '.3f')}",
            f"   goal, engine overhead under {100 * GOAL_OVERHEAD:.0f} % of the bare loop: "
            + (
                f"MET (median overhead {r['overhead_pct']['median']:+.1f} %)"
                if r["goal_met"]
                else f"NOT MET (median overhead {r['overhead_pct']['median']:+.1f} %; "
                "see --profile)"
            ),
        ]
    rows.append(f"  load average at start {m['loadavg_start']}, at end {m['loadavg_end']}")
    rows.append(f"  wall time {result['wall_s']:.1f} s")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else "")
    parser.add_argument("--quick", action="store_true", help="fewer, shorter rounds")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--rounds", type=int, help="rounds (default 9, quick 5)")
    parser.add_argument(
        "--seconds", type=float, help="least seconds per measurement (default 1.0, quick 0.8)"
    )
    parser.add_argument(
        "--echo",
        choices=("on", "off", "both"),
        default="on",
        help="the emulator's echo, the same for every client: on (E1, default), off (E0), or both",
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
    command = command_line()

    if args.profile:
        print(profile_engine(args.seconds or 3.0, echoes[0], top=25))
        return 0
    started = time.perf_counter()
    machine = machine_info(pyserial=serial.__version__)
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
        "goal": f"engine overhead under {100 * GOAL_OVERHEAD:.0f} % of the bare loop "
        f"(median ratio engine/bare above {1 - GOAL_OVERHEAD:.2f})",
        "goal_met": all(r["goal_met"] for r in runs),
        "wall_s": time.perf_counter() - started,
    }
    report(result, as_json=args.json, table=table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
