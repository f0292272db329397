"""The ``serialhs`` command line: one subcommand per module in this package."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from serialhs import __version__
from serialhs.cli import (
    autobaud,
    chat,
    demo,
    lines,
    modemsim,
    negotiate,
    ports,
    transfer,
    udevrules,
    wire,
)
from serialhs.errors import SerialHSError
from serialhs.log import TRACE

#: Exit status for a serialhs error (a port, a timeout, a bad setting).
EXIT_ERROR = 1
#: Exit status for Ctrl-C.
EXIT_INTERRUPTED = 130


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="serialhs",
        description="Serial and modem hardware-handshake controller.",
    )
    parser.add_argument("--version", action="version", version=f"serialhs {__version__}")
    parser.add_argument(
        "-v", "--verbose", action="count", default=0, help="more log output (-vv: hexdumps)"
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands = (ports, lines, wire, modemsim, chat, negotiate, transfer, autobaud, udevrules, demo)
    for module in commands:
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    level = {0: logging.WARNING, 1: logging.DEBUG}.get(args.verbose, TRACE)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    try:
        return int(args.run(args))
    except SerialHSError as e:
        print(f"serialhs {args.command}: {e}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
