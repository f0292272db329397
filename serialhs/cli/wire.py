"""``serialhs wire``: run a virtual null-modem wire until Ctrl-C, SIGTERM or --duration.

The first line on stdout is one JSON object naming both ends, for scripts:
{"a": {"pty": PATH, "device": "/dev/pts/N", "rfc2217": "rfc2217://127.0.0.1:PORT"},
 "b": {...}, "seed": N}
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from serialhs.cli.stopping import until_stopped
from serialhs.sim.wire import Wire
from serialhs.sim.wirecore import Overflow


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "wire", help="run a virtual null-modem wire between two ptys / RFC 2217 ports"
    )
    p.add_argument("--settings", default=None, help="initial settings of both ends, e.g. 9600 8N1")
    p.add_argument(
        "--wiring",
        default="null_modem",
        help="a profile in hw_configs/wiring (null_modem, loopback, ...) or a map such as "
        "'a.rts>b.cts,a.dtr>b.dsr+b.dcd,b.rts>a.cts,b.dtr>a.dsr+a.dcd'",
    )
    p.add_argument("--faults", default=None, help="e.g. ber=1e-5,drop=0.001,latency=5ms")
    p.add_argument("--seed", type=int, default=None, help="replay the faults of an earlier run")
    p.add_argument("--unpaced", action="store_true", help="no character timing: as fast as it goes")
    p.add_argument(
        "--overflow",
        choices=[o.value for o in Overflow],
        default=None,
        help="what a full receiver without flow control does "
        "(default: overrun, counted; block when --unpaced)",
    )
    p.add_argument(
        "--max-baud",
        type=int,
        default=None,
        help="the fastest rate the cable carries; faster characters arrive as framing errors",
    )
    p.add_argument("--host", default="127.0.0.1", help="where the RFC 2217 servers listen")
    p.add_argument("--trace", metavar="PATH", help="save a trace at exit (.vcd, or text)")
    p.add_argument("--duration", type=float, default=None, help="stop after this many seconds")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    with until_stopped() as wait:
        wire = Wire(
            settings=args.settings,
            wiring=args.wiring,
            faults=args.faults,
            seed=args.seed,
            paced=not args.unpaced,
            host=args.host,
            overflow=args.overflow,
            trace=bool(args.trace),
            max_baud=args.max_baud,
        )
        with wire:
            print(json.dumps(wire.describe()), flush=True)
            wait(args.duration)
            if args.trace:
                wire.save_trace(args.trace)
    return 0
