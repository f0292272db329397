"""``serialhs ports``: the serial ports on this machine and what they are."""

from __future__ import annotations

import argparse
import json
from typing import Any

from serialhs.driver.discovery import list_ports


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser("ports", help="list serial ports")
    p.add_argument("--json", action="store_true", help="print a JSON list")
    p.add_argument(
        "--all", action="store_true", help="also list symlinks in /dev that point at serial ports"
    )
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    found = list_ports(include_links=args.all)
    if args.json:
        print(json.dumps([p.to_dict() for p in found], indent=2))
        return 0
    if not found:
        print("no serial ports found")
        return 0
    rows = [("DEVICE", "USB ID", "SERIAL", "PROFILE", "DESCRIPTION")]
    for p in found:
        usb = f"{p.vid:04x}:{p.pid:04x}" if p.vid is not None and p.pid is not None else "-"
        rows.append(
            (
                p.device,
                usb,
                p.serial_number or "-",
                p.profile.name if p.profile else "-",
                p.description or "-",
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        cells = [c.ljust(w) for c, w in zip(row, widths, strict=False)]
        print("  ".join([*cells, row[-1]]))
    return 0
