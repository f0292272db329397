"""``serialhs modem-sim``: a small virtual exchange of emulated Hayes modems.

The first line on stdout is a JSON list, one entry per modem:
[{"number": "5551000", "profile": "v90_dialup", "port": {"pty": PATH, "rfc2217": URL}}, ...]
A dialer opens a modem's port and dials another modem's number.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from serialhs.cli.stopping import until_stopped
from serialhs.sim.modemsim import BEHAVIOURS, ModemSim, NumberBehaviour, load_sim_config


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "modem-sim", help="run emulated Hayes modems that can call each other"
    )
    p.add_argument("--count", type=int, default=2, help="how many modems (default 2)")
    p.add_argument(
        "--profile",
        action="append",
        default=None,
        help="modem profile from hw_configs/modems (repeat: one per modem, in turn)",
    )
    p.add_argument("--numbers", help="comma-separated phone numbers, one per modem")
    for behaviour in BEHAVIOURS[1:]:
        p.add_argument(
            f"--{behaviour}",
            action="append",
            default=[],
            metavar="NUMBER",
            help=f"dialling NUMBER gives {behaviour.upper().replace('-', ' ')}",
        )
    p.add_argument(
        "--rate",
        type=int,
        default=None,
        help="the modems' UART rate at power-on (default: profile's)",
    )
    p.add_argument("--config", help='a TOML file with [[modem]] and [numbers."N"] tables')
    p.add_argument("--duration", type=float, default=None, help="stop after this many seconds")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    options: dict[str, Any] = load_sim_config(args.config) if args.config else {}
    if not args.config:
        options["count"] = args.count
    if args.profile:
        options["profiles"] = args.profile
    if args.numbers:
        options["numbers"] = [n.strip() for n in args.numbers.split(",") if n.strip()]
        options["count"] = len(options["numbers"])
    if args.rate:
        options["rate"] = args.rate
    behaviours = list(options.get("behaviours", []))
    for behaviour in BEHAVIOURS[1:]:
        for number in getattr(args, behaviour.replace("-", "_")):
            behaviours.append(NumberBehaviour(number, behaviour))
    options["behaviours"] = behaviours
    with until_stopped() as wait, ModemSim(**options) as sim:
        print(json.dumps(sim.describe()), flush=True)
        wait(args.duration)
    return 0
