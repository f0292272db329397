"""``serialhs udev-rules``: udev rules for the adapters and modems in hw_configs."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from serialhs.errors import ConfigError

__all__ = ["register", "run"]


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "udev-rules",
        help="print udev rules: stable names, group access, ModemManager exclusions",
        description="Print udev rules for the USB adapters and modems in hw_configs: "
        "stable names by serial number under /dev/serial/serialhs, group access to "
        "their ttys and USB device nodes (for usb:// ports), and ID_MM_DEVICE_IGNORE "
        "so that ModemManager leaves adapters that are not modems alone.",
    )
    p.add_argument("--group", default="dialout", help="group given access (default: dialout)")
    p.add_argument("--mode", default="0660", help="device mode (default: 0660)")
    p.add_argument(
        "--profile",
        action="append",
        default=None,
        metavar="NAME",
        help="only this adapter or modem profile (repeatable; default: all)",
    )
    p.add_argument(
        "--no-usb-access",
        action="store_true",
        help="no rules for the USB device nodes (usb:// ports then need root)",
    )
    p.add_argument(
        "--keep-modemmanager",
        action="store_true",
        help="do not set ID_MM_DEVICE_IGNORE on adapters",
    )
    p.add_argument(
        "-o",
        "--output",
        metavar="FILE",
        help="write to FILE (e.g. /etc/udev/rules.d/70-serialhs.rules)",
    )
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from serialhs.hwconfig import load_adapter_profiles  # noqa: PLC0415
    from serialhs.modem.profile import load_modem_profiles  # noqa: PLC0415
    from serialhs.usb.udev import RULES_FILE, UdevOptions, udev_rules  # noqa: PLC0415

    options = UdevOptions(
        group=args.group,
        mode=args.mode,
        usb_access=not args.no_usb_access,
        ignore_modemmanager=not args.keep_modemmanager,
    )
    adapters = load_adapter_profiles()
    modems = [m for m in load_modem_profiles() if m.usb is not None]
    if args.profile:
        wanted = set(args.profile)
        known = {p.name for p in adapters} | {m.name for m in modems}
        unknown = sorted(wanted - known)
        if unknown:
            raise ConfigError(
                f"no adapter or USB modem profile named {', '.join(unknown)}; "
                f"known: {', '.join(sorted(known))}"
            )
        adapters = [p for p in adapters if p.name in wanted]
        modems = [m for m in modems if m.name in wanted]
    text = udev_rules(adapters, modems, options)
    if args.output:
        try:
            Path(args.output).write_text(text, encoding="utf-8")
        except OSError as e:
            raise ConfigError(f"cannot write {args.output}: {e.strerror}") from e
        print(
            f"wrote {args.output}; now run: udevadm control --reload && udevadm trigger",
            file=sys.stderr,
        )
        return 0
    sys.stdout.write(text)
    if sys.stdout.isatty():
        print(f"# install: serialhs udev-rules -o {RULES_FILE}", file=sys.stderr)
    return 0
