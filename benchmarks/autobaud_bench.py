"""Benchmark of autobaud (serialhs.negotiate.autobaud): common-first against wvdialconf.

    .venv/bin/python benchmarks/autobaud_bench.py              # full run, about 1 minute
    .venv/bin/python benchmarks/autobaud_bench.py --quick      # one round, about 20 s
    .venv/bin/python benchmarks/autobaud_bench.py --json       # one JSON object on stdout
    .venv/bin/python benchmarks/autobaud_bench.py --rates 2400,57600 --rounds 5

For each true rate (default 2400, 9600, 57600, 115200) one emulated modem
(serialhs.sim.modemsim, profile "v90_dialup") sits at the far end of a virtual
wire, its serial port set to that rate with AT+IPR, as a modem configured
earlier would be. The wire garbles what a mismatched end sends, as a real UART
pair does, so a probe at a wrong rate gets no OK and waits out its timeout.

In each round both strategies run against the same modem, one after the other
(the order alternates from round to round), each on a freshly opened serialhs
Port that starts at 9600 8N1:

- common-first: ``autobaud(port)``, the candidates in serialhs' order, two
  tries per rate, the first rate that answers wins;
- wvdialconf: ``autobaud(port, strategy="wvdialconf")``, wvdialconf's scan:
  one AT at 2400, 9600 and 115200 until one answers, then the doubled rate
  (three tries) while it answers; the highest rate that answered wins.

Both use the same per-try wait (``--answer-timeout``, default 0.5 s, the wait
wvdialconf uses, plus the airtime of 16 characters), so the time is what the
search order costs. The time is that of the autobaud() call (for a failed
search: until it gave up). Reported per true rate: the rate each strategy found,
the rates it tried, its time (median [min .. max] over the rounds) and the
ratio wvdialconf / common-first per round.

The emulator does not autobaud (its port runs at the +IPR rate), so a second,
unclocked table runs the two searches (serialhs.negotiate.autobaud.RateSearch,
no I/O) against a model of a modem that autobauds: one that answers at every
rate up to its fastest. There wvdialconf ends on the fastest rate the modem
can take, which is not the rate it was at.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
import time
from typing import Any

import serial
from _common import command_line, fmt, log, machine_info, report, summary

from serialhs.driver.port import Port
from serialhs.errors import PeerNotIdentifiedError
from serialhs.modem.client import Modem
from serialhs.negotiate.autobaud import (
    ANSWER_CHARS,
    COMMON_FIRST,
    WVDIALCONF_SPEEDS,
    RateSearch,
    Strategy,
    autobaud,
)
from serialhs.sim.modemsim import ModemSim

#: The emulator's modem profile; its power-on rate is 115200.
PROFILE = "v90_dialup"
POWER_ON = "115200 8N1"
#: Where each measured Port starts (autobaud switches it anyway).
START = "9600 8N1"
RATES = (2400, 9600, 57600, 115200)
STRATEGIES: tuple[Strategy, ...] = ("common-first", "wvdialconf")
#: The fastest rates of the autobauding modems the model table assumes.
MODEL_TOPS = (38400, 115200, 230400, 460800)


def measure(pty: str, strategy: Strategy, answer_timeout: float) -> dict[str, Any]:
    """One search: what it found, what it tried, how long the autobaud() call took."""
    with Port(pty, START) as port:
        tried: list[int] = []
        found: int | None = None
        start = time.perf_counter()
        with contextlib.suppress(PeerNotIdentifiedError):  # nothing answered: found is None
            found = autobaud(
                port,
                strategy=strategy,
                answer_timeout=answer_timeout,
                on_attempt=lambda a: tried.append(a.rate),
            ).rate
        seconds = time.perf_counter() - start
    return {"found": found, "tried": tried, "seconds": seconds}


def bench_rate(rate: int, rounds: int, answer_timeout: float) -> dict[str, Any]:
    times: dict[str, list[float]] = {s: [] for s in STRATEGIES}
    found: dict[str, list[int | None]] = {s: [] for s in STRATEGIES}
    tried: dict[str, list[list[int]]] = {s: [] for s in STRATEGIES}
    with ModemSim(count=1, profiles=(PROFILE,)) as sim:
        pty = sim.modems[0].wire.a.pty
        with Port(pty, POWER_ON) as port:
            set_to = Modem(port).set_dte(rate=rate)
        if set_to.baudrate != rate:
            raise RuntimeError(f"the emulator did not take AT+IPR={rate}: {set_to}")
        for index in range(rounds):
            order = STRATEGIES if index % 2 == 0 else STRATEGIES[::-1]
            for strategy in order:
                m = measure(pty, strategy, answer_timeout)
                times[strategy].append(m["seconds"])
                found[strategy].append(m["found"])
                tried[strategy].append(m["tried"])
            log(
                f"  {rate}: round {index + 1}/{rounds} ({', '.join(order)}): "
                + ", ".join(f"{s} found {found[s][-1]} in {times[s][-1]:.3f} s" for s in STRATEGIES)
            )
    ratios = [w / c for w, c in zip(times["wvdialconf"], times["common-first"], strict=True)]
    return {
        "rate": rate,
        "strategies": {
            s: {
                "found": found[s],
                "tried": tried[s][0],
                "same_tries_every_round": all(t == tried[s][0] for t in tried[s]),
                "seconds": summary(times[s]),
            }
            for s in STRATEGIES
        },
        "ratio_wvdialconf_over_common_first": summary(ratios),
    }


def model(top: int) -> dict[str, Any]:
    """The two searches against a modem that autobauds up to ``top`` (no I/O)."""
    answers = {r for r in (*COMMON_FIRST, *WVDIALCONF_SPEEDS) if r <= top}
    out: dict[str, Any] = {"top": top}
    for strategy in STRATEGIES:
        search = RateSearch(strategy)
        trials = []
        while (trial := search.next_trial()) is not None:
            trials.append(trial.rate)
            search.record(trial.rate in answers)
        out[strategy] = {"found": search.found, "tried": trials}
    return out


def table(result: dict[str, Any]) -> str:
    m = result["machine"]
    s = result["settings"]
    rows = [
        f"serialhs autobaud benchmark ({result['profile']}) - {m['date']}, nproc {m['nproc']}, "
        f"Linux {m['kernel']}, Python {m['python']}, pyserial {m['pyserial']}",
        f"command: {result['command']}",
        "",
        f"Emulated modem ({s['emulator_profile']}) on a virtual wire, its port fixed at the true "
        f"rate; {s['rounds']} rounds, per-try wait {s['answer_timeout_s']} s + "
        f"{s['answer_chars']} characters' airtime; seconds: median [min .. max]",
    ]
    for r in result["runs"]:
        rows.append(f"  true rate {r['rate']}:")
        for name in STRATEGIES:
            st = r["strategies"][name]
            found = sorted({str(f) for f in st["found"]})
            rows.append(
                f"    {name:<13} found {'/'.join(found):<7} {fmt(st['seconds'], '.3f'):<26} "
                f"tried {','.join(str(t) for t in st['tried'])}"
            )
        rows.append(
            f"    {'ratio wvdialconf / common-first, per round':<47}"
            f"{fmt(r['ratio_wvdialconf_over_common_first'], '.2f')}"
        )
    rows += ["", "Model, no I/O: a modem that autobauds (answers at every rate up to its fastest)"]
    for mod in result["autobauding_model"]:
        cells = [
            f"{name} -> {mod[name]['found']} after {len(mod[name]['tried'])} rate(s)"
            for name in STRATEGIES
        ]
        rows.append(f"  fastest {mod['top']:>6}: " + "; ".join(cells))
    rows.append(f"  load average at start {m['loadavg_start']}, at end {m['loadavg_end']}")
    rows.append(f"  wall time {result['wall_s']:.1f} s")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else "")
    parser.add_argument("--quick", action="store_true", help="one round")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--rounds", type=int, help="rounds (default 3, quick 1)")
    parser.add_argument(
        "--rates",
        default=",".join(str(r) for r in RATES),
        help="the modem's true rates, comma-separated (default 2400,9600,57600,115200)",
    )
    parser.add_argument(
        "--answer-timeout", type=float, default=0.5, help="per-try wait for OK (default 0.5 s)"
    )
    args = parser.parse_args(argv)
    rounds = args.rounds or (1 if args.quick else 3)
    rates = [int(r) for r in args.rates.split(",") if r.strip()]
    # At the wrong rates the modem's echo arrives as garbage and the AT engine
    # warns about each piece: expected here.
    logging.getLogger("serialhs.modem").setLevel(logging.ERROR)
    command = command_line()
    started = time.perf_counter()
    machine = machine_info(pyserial=serial.__version__)
    runs = []
    for rate in rates:
        log(f"true rate {rate} ({rounds} rounds)")
        runs.append(bench_rate(rate, rounds, args.answer_timeout))
    machine["loadavg_end"] = list(os.getloadavg())
    result: dict[str, Any] = {
        "benchmark": "autobaud",
        "profile": "quick" if args.quick else "full",
        "command": command,
        "machine": machine,
        "settings": {
            "rounds": rounds,
            "emulator_profile": PROFILE,
            "port_starts_at": START,
            "answer_timeout_s": args.answer_timeout,
            "answer_chars": ANSWER_CHARS,
            "common_first_order": list(COMMON_FIRST),
        },
        "runs": runs,
        "autobauding_model": [model(top) for top in MODEL_TOPS],
        "wall_s": time.perf_counter() - started,
    }
    report(result, as_json=args.json, table=table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
