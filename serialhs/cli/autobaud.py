"""``serialhs autobaud PORT``: find the rate a modem (or, with ``--peer``, a
serialhs peer) is at, by probing candidate rates.

Prints the rate found and the rates tried (``--json``: one JSON object). Exit
status 0 with the rate; 1 and the reason when nothing answered (the port is
left at the settings it started at).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from typing import Any

from serialhs.driver.port import Port
from serialhs.driver.settings import SerialSettings
from serialhs.errors import ConfigError, PeerNotIdentifiedError
from serialhs.negotiate.autobaud import STRATEGIES, Attempt, Target, autobaud


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "autobaud", help="find the baud rate of a modem or of a serialhs peer"
    )
    p.add_argument("port", help="device path or pyserial URL")
    p.add_argument(
        "--peer",
        action="store_true",
        help="look for a serialhs peer listening for the handshake (SYN answered by "
        "SYN-ACK) instead of a modem (AT answered by OK)",
    )
    p.add_argument(
        "--strategy",
        choices=STRATEGIES,
        default="common-first",
        help="common-first: common rates first, the first that answers wins; wvdialconf: "
        "wvdialconf's scan, the highest rate that answers wins",
    )
    p.add_argument(
        "--rates",
        help="candidate rates in the order to try, comma-separated (common-first only)",
    )
    p.add_argument(
        "--settings",
        default="9600 8N1",
        help="the framing and flow control to probe with; its rate is where the port starts",
    )
    p.add_argument("--tries", type=int, default=2, help="tries at each rate (common-first)")
    p.add_argument(
        "--answer-timeout",
        type=float,
        default=0.5,
        help="seconds a modem has to answer AT, beyond the bytes' airtime",
    )
    p.add_argument(
        "--timeout", type=float, default=60.0, help="probe no further rate after this many seconds"
    )
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    target: Target = "peer" if args.peer else "modem"
    settings = SerialSettings.parse(args.settings)
    rates = _rates(args.rates)
    if not args.verbose:
        # At the wrong rates a modem's echo arrives as garbage, and the AT engine
        # warns about each piece; while probing that is expected, not news.
        logging.getLogger("serialhs.modem").setLevel(logging.ERROR)
    attempts: list[Attempt] = []

    def progress(attempt: Attempt) -> None:
        attempts.append(attempt)
        if not args.json:
            verdict = "answered" if attempt.answered else attempt.note or "no answer"
            print(f"{attempt.rate}: {verdict} ({attempt.seconds:.2f} s)", flush=True)

    with Port(args.port, settings) as port:
        try:
            result = autobaud(
                port,
                target=target,
                strategy=args.strategy,
                rates=rates,
                tries=args.tries,
                answer_timeout=args.answer_timeout,
                timeout=args.timeout,
                on_attempt=progress,
            )
        except PeerNotIdentifiedError as e:
            if args.json:
                print(
                    json.dumps(
                        {
                            "found": False,
                            "reason": str(e),
                            "target": target,
                            "strategy": args.strategy,
                            "tried": [a.rate for a in attempts],
                        }
                    )
                )
            print(f"serialhs autobaud: {e}", file=sys.stderr)
            return 1
    if args.json:
        print(
            json.dumps(
                {
                    "found": True,
                    "rate": result.rate,
                    "settings": str(result.settings),
                    "target": result.target,
                    "strategy": result.strategy,
                    "tried": list(result.tried),
                    "attempts": [
                        {"rate": a.rate, "answered": a.answered, "seconds": round(a.seconds, 3)}
                        for a in result.attempts
                    ],
                    "seconds": round(result.elapsed, 3),
                }
            )
        )
    else:
        what = "modem" if target == "modem" else "serialhs peer"
        print(f"{what} at {result.rate} ({result.settings}), found in {result.elapsed:.1f} s")
    return 0


def _rates(text: str | None) -> list[int] | None:
    if text is None:
        return None
    try:
        return [int(word) for word in text.replace(" ", "").split(",") if word]
    except ValueError:
        raise ConfigError(
            f"--rates takes whole numbers separated by commas, not {text!r}"
        ) from None
