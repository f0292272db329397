"""``serialhs ports``: the serial ports on this machine and what they are.

Two sources are merged into one row per port: the kernel's serial ports
(pyserial's list_ports, matched to adapter profiles) and the USB devices pyusb
sees (matched to adapter and modem profiles, with each modem interface's role).
A USB port that a kernel driver serves appears once, with both; one that no
kernel driver serves appears as the ``usb://`` URL that serialhs's user-space
drivers open. What could not be looked at (no libusb, no permission) is said on
stderr; the command still lists the rest.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from serialhs.driver.discovery import list_ports
from serialhs.errors import SerialHSError
from serialhs.usb.discovery import UsbDevice, UsbDeviceList, list_usb_devices

#: Interface roles that are serial ports (the rest, e.g. qmi/wwan, are network).
SERIAL_ROLES = frozenset({"at", "ppp", "diag", "nmea", "gnss", "audio"})


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser("ports", help="list serial ports")
    p.add_argument("--json", action="store_true", help="print a JSON list")
    p.add_argument(
        "--all", action="store_true", help="also list symlinks in /dev that point at serial ports"
    )
    p.add_argument("--no-usb", action="store_true", help="do not look at USB devices with pyusb")
    p.set_defaults(run=run)


def _usb_devices(skip: bool) -> UsbDeviceList:
    if skip:
        return UsbDeviceList()
    try:
        return list_usb_devices()
    except SerialHSError as e:  # a broken profile, say: list the kernel's ports anyway
        return UsbDeviceList(problems=[str(e)])


def _usb_rows(device: UsbDevice) -> list[dict[str, Any]]:
    """The serial ports of one USB device: (interface number, roles, tty)."""
    rows = []
    interfaces = device.interfaces
    if device.modem is not None:
        interfaces = tuple(i for i in interfaces if SERIAL_ROLES.intersection(i.roles))
    elif interfaces:
        # an adapter: its (first) vendor or CDC-communications interface
        interfaces = tuple(i for i in interfaces if i.interface_class in (0xFF, 0x02))[:1]
    for iface in interfaces:
        rows.append(
            {
                "device": iface.tty or device.url(iface.number),
                "usb": device.usb_id,
                "serial_number": device.serial_number,
                "profile": device.profile_name,
                "role": ",".join(iface.roles) or None,
                "interface": iface.number,
                "description": device.summary(),
                "user_space": iface.tty is None,
            }
        )
    return rows


def collect(
    *, include_links: bool = False, skip_usb: bool = False
) -> tuple[list[dict[str, Any]], list[str]]:
    """All ports as JSON-ready dicts, and the problems met on the way."""
    kernel = [p.to_dict() for p in list_ports(include_links=include_links)]
    devices = _usb_devices(skip_usb)
    by_tty = {row["device"]: row for row in kernel}
    merged = list(kernel)
    for device in devices:
        for row in _usb_rows(device):
            known = by_tty.get(row["device"])
            if known is not None:
                known["role"] = row["role"]
                known["interface"] = row["interface"]
                continue
            merged.append(row)
    return merged, list(devices.problems)


def run(args: argparse.Namespace) -> int:
    ports, problems = collect(include_links=args.all, skip_usb=args.no_usb)
    for problem in problems:
        print(f"serialhs ports: could not see everything: {problem}", file=sys.stderr)
    if args.json:
        print(json.dumps(ports, indent=2))
        return 0
    if not ports:
        print("no serial ports found")
        return 0
    rows = [("DEVICE", "USB ID", "SERIAL", "PROFILE", "ROLE", "DESCRIPTION")]
    for p in ports:
        usb = p.get("usb")
        if usb is None and p.get("vid") and p.get("pid"):
            usb = f"{p['vid']}:{p['pid']}"
        profile = p.get("profile")
        if isinstance(profile, dict):
            profile = profile.get("name")
        rows.append(
            (
                str(p["device"]),
                usb or "-",
                p.get("serial_number") or "-",
                profile or "-",
                p.get("role") or "-",
                p.get("description") or "-",
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        cells = [c.ljust(w) for c, w in zip(row, widths, strict=False)]
        print("  ".join([*cells, row[-1]]))
    return 0
