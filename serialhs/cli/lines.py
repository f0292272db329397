"""``serialhs lines PORT``: show, set, pulse and watch control lines."""

from __future__ import annotations

import argparse
import json
import threading
from typing import Any

from serialhs.driver.lines import Line, Lines, parse_line_settings, parse_pulse
from serialhs.driver.port import Port


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "lines", help="show, set, pulse or watch the control lines of a port"
    )
    p.add_argument("port", help="device path or pyserial URL")
    p.add_argument("--set", metavar="LINES", help="set outputs, e.g. rts=0,dtr=1 (one operation)")
    p.add_argument("--pulse", metavar="LINE:SECONDS", help="pulse an output, e.g. dtr:0.1")
    p.add_argument("--watch", action="store_true", help="print changes until Ctrl-C")
    p.add_argument(
        "--duration", type=float, default=None, help="with --watch: stop after this many seconds"
    )
    p.add_argument("--json", action="store_true", help="print the final state as JSON")
    p.set_defaults(run=run)


def _show(lines: Lines, as_json: bool) -> None:
    print(json.dumps(lines.as_dict()) if as_json else str(lines))


def run(args: argparse.Namespace) -> int:
    outputs = parse_line_settings(args.set) if args.set else {}
    pulse = parse_pulse(args.pulse) if args.pulse else None
    rts, dtr = outputs.get(Line.RTS), outputs.get(Line.DTR)
    with Port(args.port, rts=rts, dtr=dtr) as port:
        if outputs:
            port.set_lines(rts=rts, dtr=dtr)
        if pulse is not None:
            port.pulse(pulse[0], pulse[1])
        _show(port.lines(), args.json)
        if args.watch:
            stop = threading.Event()

            def changed(old: Lines, new: Lines) -> None:
                names = ", ".join(sorted(line.value.upper() for line in new.changed(old)))
                print(f"{names} changed: {new}", flush=True)

            remove = port.on_lines_change(changed)
            try:
                stop.wait(args.duration)
            finally:
                remove()
    return 0
