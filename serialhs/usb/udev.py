"""udev rules for the adapters and modems in hw_configs (``serialhs udev-rules``).

For every adapter profile with a USB id the rules give

- its tty (``/dev/ttyUSBn``) to a group (``dialout``) with mode 0660, and a
  stable name by serial number: ``/dev/serial/serialhs/<profile>-<serial>``;
- its USB device node (``/dev/bus/usb/BBB/DDD``) the same group and mode, so
  that the user-space drivers (``usb://`` URLs) work without root;
- ``ID_MM_DEVICE_IGNORE=1``, so that ModemManager does not probe an adapter
  that is not a modem with AT commands (which confuses bootloaders and boards
  that reset on DTR).

Class-matched profiles (CDC-ACM: any ``cdc_acm`` port) get group, mode and a
``<profile>-<serial>-if<NN>`` name, but no ModemManager exclusion: modems are
CDC-ACM devices too. Modem profiles with a ``[modem.usb]`` table get group and
mode, a name per serial interface that says its roles
(``quectel_ec25-<serial>-if02-at``) and ModemManager's port-type hints
(``ID_MM_PORT_TYPE_AT_PRIMARY`` and friends) so that ModemManager picks the
right ports.

The names use ``ID_SERIAL_SHORT`` and ``ID_USB_INTERFACE_NUM``, which the
systemd rule 60-serial.rules sets for USB ttys; hence the file name
``70-serialhs.rules``, which sorts after it. Install::

    serialhs udev-rules | sudo tee /etc/udev/rules.d/70-serialhs.rules
    sudo udevadm control --reload && sudo udevadm trigger
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from serialhs.errors import ConfigError

__all__ = [
    "RULES_FILE",
    "SYMLINK_DIR",
    "UdevOptions",
    "modemmanager_port_types",
    "udev_rules",
]

#: Where the rules are meant to go.
RULES_FILE = "/etc/udev/rules.d/70-serialhs.rules"
#: Directory (under /dev) of the stable names.
SYMLINK_DIR = "serial/serialhs"

#: Modem interface roles that are serial ports (ttys), in the order names list them.
TTY_ROLES: tuple[str, ...] = ("at", "ppp", "diag", "nmea", "gnss", "audio", "adb")
#: ModemManager's port-type hint for each role (ModemManager's 77-mm-*.rules use these).
MM_PORT_TYPES: dict[str, str] = {
    "diag": "ID_MM_PORT_TYPE_QCDM",
    "nmea": "ID_MM_PORT_TYPE_GPS",
    "gnss": "ID_MM_PORT_TYPE_GPS",
    "audio": "ID_MM_PORT_IGNORE",
}

_GROUP = re.compile(r"[a-z_][a-z0-9_-]{0,31}")
_MODE = re.compile(r"0?[0-7]{3}")
_SAFE = re.compile(r"[A-Za-z0-9_.+-]+")
_DIR = re.compile(r"[A-Za-z0-9_.+-]+(/[A-Za-z0-9_.+-]+)*")


@dataclass(frozen=True)
class UdevOptions:
    """What the rules grant. ``usb_access``: rules for the USB device nodes too
    (needed by the ``usb://`` drivers); ``ignore_modemmanager``: tell
    ModemManager to leave the adapters (not the modems) alone."""

    group: str = "dialout"
    mode: str = "0660"
    symlink_dir: str = SYMLINK_DIR
    usb_access: bool = True
    ignore_modemmanager: bool = True

    def __post_init__(self) -> None:
        if not _GROUP.fullmatch(self.group):
            raise ConfigError(f"{self.group!r} is not a valid group name")
        if not _MODE.fullmatch(self.mode):
            raise ConfigError(f"{self.mode!r} is not an octal file mode such as 0660")
        if not _DIR.fullmatch(self.symlink_dir):
            raise ConfigError(f"{self.symlink_dir!r} is not a relative path under /dev")

    @property
    def file_mode(self) -> str:
        return self.mode if len(self.mode) == 4 else f"0{self.mode}"


def _q(value: str) -> str:
    if '"' in value or "\n" in value:
        raise ConfigError(f"cannot put {value!r} into a udev rule")
    return f'"{value}"'


def _rule(*parts: tuple[str, str, str]) -> str:
    """One rule line from (key, operator, value) parts."""
    return ", ".join(f"{key}{op}{_q(value)}" for key, op, value in parts)


def _comment(text: str) -> str:
    return "# " + " ".join(text.split())


def _name(profile_name: str) -> str:
    if not _SAFE.fullmatch(profile_name):
        raise ConfigError(f"profile name {profile_name!r} cannot be part of a device name")
    return profile_name


def _ids(vid: int, pid: int, *, attr: str = "ATTRS") -> list[tuple[str, str, str]]:
    return [
        (f"{attr}{{idVendor}}", "==", f"{vid:04x}"),
        (f"{attr}{{idProduct}}", "==", f"{pid:04x}"),
    ]


def _access(options: UdevOptions) -> list[tuple[str, str, str]]:
    return [("GROUP", "=", options.group), ("MODE", "=", options.file_mode)]


def _adapter_rules(profile: Any, others: Sequence[Any], options: UdevOptions) -> list[str]:
    name = _name(profile.name)
    tty = [("SUBSYSTEM", "==", "tty")]
    lines = [_comment(f"{name}: {profile.description}")]
    ignore = [("ENV{ID_MM_DEVICE_IGNORE}", "=", "1")] if options.ignore_modemmanager else []
    link = f"{options.symlink_dir}/{name}-$env{{ID_SERIAL_SHORT}}"
    if profile.vid is None:
        # Class-matched (CDC-ACM): by kernel driver, else by interface class.
        matches: list[list[tuple[str, str, str]]] = [
            [("DRIVERS", "==", driver)] for driver in sorted(profile.match_driver)
        ]
        if not matches and profile.match_interface_class is not None:
            match = [("ATTRS{bInterfaceClass}", "==", f"{profile.match_interface_class:02x}")]
            if profile.match_interface_subclass is not None:
                sub = f"{profile.match_interface_subclass:02x}"
                match.append(("ATTRS{bInterfaceSubClass}", "==", sub))
            matches = [match]
        for match in matches:
            lines.append(_rule(*tty, *match, *_access(options)))
            lines.append(
                _rule(
                    *tty,
                    *match,
                    ("ENV{ID_SERIAL_SHORT}", "==", "?*"),
                    ("ENV{ID_USB_INTERFACE_NUM}", "==", "?*"),
                    ("SYMLINK", "+=", f"{link}-if$env{{ID_USB_INTERFACE_NUM}}"),
                )
            )
        lines.append(
            _comment(
                "Modems are CDC-ACM devices too, so ModemManager is not told to ignore these; "
                "for a device that is no modem add its ids:"
            )
        )
        lines.append(
            "# "
            + _rule(
                *tty,
                ("ATTRS{idVendor}", "==", "XXXX"),
                ("ATTRS{idProduct}", "==", "YYYY"),
                ("ENV{ID_MM_DEVICE_IGNORE}", "=", "1"),
            )
        )
        return lines
    ids = _ids(profile.vid, profile.pid)
    product: list[tuple[str, str, str]] = []
    if profile.match_product is not None:
        product = [("ATTRS{product}", "==", profile.match_product)]
    else:
        # Leave devices of the same id to the profiles that name their product.
        for other in others:
            if (
                other is not profile
                and (other.vid, other.pid) == (profile.vid, profile.pid)
                and other.match_product is not None
            ):
                product.append(("ATTRS{product}", "!=", other.match_product))
    lines.append(_rule(*tty, *ids, *product, *_access(options), *ignore))
    lines.append(
        _rule(*tty, *ids, *product, ("ENV{ID_SERIAL_SHORT}", "==", "?*"), ("SYMLINK", "+=", link))
    )
    if options.usb_access:
        usb_product = [(k.replace("ATTRS", "ATTR"), op, v) for k, op, v in product]
        lines.append(
            _rule(
                ("SUBSYSTEM", "==", "usb"),
                ("ENV{DEVTYPE}", "==", "usb_device"),
                *_ids(profile.vid, profile.pid, attr="ATTR"),
                *usb_product,
                *_access(options),
                *ignore,
            )
        )
    return lines


def modemmanager_port_types(roles: Sequence[str], *, first_at: bool) -> list[str]:
    """ModemManager's port-type hints for an interface with ``roles``."""
    hints: list[str] = []
    if "ppp" in roles:
        hints.append("ID_MM_PORT_TYPE_AT_PPP")
    elif "at" in roles:
        hints.append("ID_MM_PORT_TYPE_AT_PRIMARY" if first_at else "ID_MM_PORT_TYPE_AT_SECONDARY")
    for role in roles:
        hint = MM_PORT_TYPES.get(role)
        if hint is not None and hint not in hints:
            hints.append(hint)
    return hints


def _modem_rules(modem: Any, options: UdevOptions) -> list[str]:
    layout = modem.usb
    name = _name(modem.name)
    tty = [("SUBSYSTEM", "==", "tty")]
    ids = _ids(layout.vid, layout.pid)
    lines = [_comment(f"{name}: {modem.description}"), _rule(*tty, *ids, *_access(options))]
    first_at = True
    for interface in layout.interfaces:
        roles = [r for r in TTY_ROLES if r in interface.roles]
        if not roles:
            continue
        number = ("ENV{ID_USB_INTERFACE_NUM}", "==", f"{interface.number:02x}")
        suffix = f"if{interface.number:02x}-" + "-".join(roles)
        lines.append(
            _rule(
                *tty,
                *ids,
                number,
                ("ENV{ID_SERIAL_SHORT}", "==", "?*"),
                ("SYMLINK", "+=", f"{options.symlink_dir}/{name}-$env{{ID_SERIAL_SHORT}}-{suffix}"),
            )
        )
        hints = modemmanager_port_types(roles, first_at=first_at)
        if "at" in roles and "ppp" not in roles:
            first_at = False
        if hints:
            lines.append(_rule(*tty, *ids, number, *((f"ENV{{{h}}}", "=", "1") for h in hints)))
    if options.usb_access:
        lines.append(
            _rule(
                ("SUBSYSTEM", "==", "usb"),
                ("ENV{DEVTYPE}", "==", "usb_device"),
                *_ids(layout.vid, layout.pid, attr="ATTR"),
                *_access(options),
            )
        )
    return lines


def udev_rules(
    adapters: Iterable[Any] | None = None,
    modems: Iterable[Any] | None = None,
    options: UdevOptions | None = None,
) -> str:
    """The rules file for ``adapters`` and ``modems`` (default: every profile in
    the hw_configs search path), as text."""
    from serialhs.hwconfig import load_adapter_profiles  # noqa: PLC0415
    from serialhs.modem.profile import load_modem_profiles  # noqa: PLC0415

    options = options or UdevOptions()
    adapter_list = list(load_adapter_profiles() if adapters is None else adapters)
    modem_list = [
        m for m in (load_modem_profiles() if modems is None else modems) if m.usb is not None
    ]
    out = [
        "# udev rules for USB serial adapters and modems, made by 'serialhs udev-rules'",
        "# from the hw_configs profiles. Install:",
        f"#   serialhs udev-rules | sudo tee {RULES_FILE}",
        "#   sudo udevadm control --reload && sudo udevadm trigger",
        f"# Stable names: /dev/{options.symlink_dir}/<profile>-<serial number>.",
        f"# Access: group {options.group}, mode {options.file_mode} (ttys"
        + (" and USB device nodes, for usb:// ports)." if options.usb_access else ")."),
        "# Sorts after 60-serial.rules, which sets ID_SERIAL_SHORT and ID_USB_INTERFACE_NUM.",
        "",
        'ACTION=="remove", GOTO="serialhs_end"',
        "",
    ]
    id_matched = [p for p in adapter_list if p.vid is not None]
    class_matched = [p for p in adapter_list if p.vid is None]
    if id_matched or class_matched:
        out.append("# --- adapters ---")
    for profile in [*id_matched, *class_matched]:
        out.extend(_adapter_rules(profile, adapter_list, options))
        out.append("")
    if modem_list:
        out.append(
            "# --- modems (ModemManager may use them; the hints say which port is which) ---"
        )
    for modem in modem_list:
        out.extend(_modem_rules(modem, options))
        out.append("")
    out.append('LABEL="serialhs_end"')
    return "\n".join(out) + "\n"
