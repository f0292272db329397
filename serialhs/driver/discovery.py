"""Finding serial ports and telling which adapter each one is.

:func:`list_ports` asks pyserial (``serial.tools.list_ports.comports``) for the
ports, adds what sysfs says about the kernel driver and the USB interface class
(Linux only; None elsewhere) and matches every port to an adapter profile from
hw_configs/adapters (:mod:`serialhs.hwconfig`):

1. a profile with the port's USB vendor and product id (and, if the profile
   gives ``match_product``, a matching product string) -- a profile with a
   product pattern wins over one without;
2. otherwise a class-matched profile (no fixed id) whose ``match_driver`` names
   the port's kernel driver or whose ``match_interface_class`` (and subclass)
   is the port's USB interface class -- this is how CDC-ACM devices are known.

Among equally good profiles the first in search order wins (see
:func:`serialhs.hwconfig.load_adapter_profiles`).

:func:`find_port` picks one port by USB id, serial number or profile -- "open
the adapter with serial number A50285BI" -- and says what is present when
nothing fits.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from serial.tools import list_ports as _pyserial_list_ports

from serialhs.errors import ConfigError, PortIOError, PortNotFoundError
from serialhs.hwconfig import AdapterProfile, load_adapter_profiles

__all__ = ["PortInfo", "find_port", "find_ports", "list_ports", "match_profile"]

log = logging.getLogger("serialhs.driver")

#: Where Linux shows tty devices; each entry's ``device`` link leads to the hardware.
SYS_CLASS_TTY = Path("/sys/class/tty")


@dataclass(frozen=True)
class PortInfo:
    """One serial port as discovered: pyserial's facts plus driver and profile.

    ``vid``/``pid`` and the USB strings are None for ports that are not USB.
    ``driver`` is the kernel driver bound to the port's device (``ftdi_sio``,
    ``cp210x``, ``ch341-uart``, ``pl2303``, ``cdc_acm``, ...) when sysfs tells.
    ``interface_class``/``interface_subclass`` are those of the USB interface
    the port belongs to. ``profile`` is the matching adapter profile, if any.
    """

    device: str
    name: str
    description: str
    hwid: str
    vid: int | None
    pid: int | None
    serial_number: str | None
    manufacturer: str | None
    product: str | None
    location: str | None
    interface: str | None
    driver: str | None
    profile: AdapterProfile | None
    interface_class: int | None = None
    interface_subclass: int | None = None

    @property
    def usb_id(self) -> str | None:
        """``"0403:6001"``, or None for a port that is not USB."""
        if self.vid is None or self.pid is None:
            return None
        return f"{self.vid:04x}:{self.pid:04x}"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready values: ids as 4-digit lower-case hex strings (``"0403"``),
        the interface class as 2 digits, the profile as name/chip/max_baud/lines."""
        profile: dict[str, Any] | None = None
        if self.profile is not None:
            profile = {
                "name": self.profile.name,
                "chip": self.profile.chip,
                "max_baud": self.profile.max_baud,
                "lines": list(self.profile.ordered_lines),
            }
        return {
            "device": self.device,
            "name": self.name,
            "description": self.description,
            "hwid": self.hwid,
            "vid": _hex(self.vid, 4),
            "pid": _hex(self.pid, 4),
            "serial_number": self.serial_number,
            "manufacturer": self.manufacturer,
            "product": self.product,
            "location": self.location,
            "interface": self.interface,
            "driver": self.driver,
            "interface_class": _hex(self.interface_class, 2),
            "interface_subclass": _hex(self.interface_subclass, 2),
            "profile": profile,
        }

    def summary(self) -> str:
        """A short one-line description, as used in error messages."""
        parts = [self.device]
        if self.usb_id:
            parts.append(self.usb_id)
        if self.serial_number:
            parts.append(f"SER={self.serial_number}")
        if self.profile is not None:
            parts.append(self.profile.chip)
        elif self.description and self.description != "n/a":
            parts.append(self.description)
        return " ".join(parts)


def _hex(value: int | None, digits: int) -> str | None:
    return None if value is None else f"{value:0{digits}x}"


# --- matching --------------------------------------------------------------------------


def match_profile(
    vid: int | None,
    pid: int | None,
    *,
    driver: str | None = None,
    interface_class: int | None = None,
    interface_subclass: int | None = None,
    product: str | None = None,
    profiles: Sequence[AdapterProfile] | None = None,
) -> AdapterProfile | None:
    """The adapter profile for a device, or None.

    A specific VID/PID match always wins over a class match (driver or
    interface class). Among VID/PID matches, a profile whose ``match_product``
    pattern fits ``product`` wins over one without a pattern. ``profiles``
    defaults to :func:`~serialhs.hwconfig.load_adapter_profiles`.
    """
    if profiles is None:
        profiles = load_adapter_profiles()
    if vid is not None and pid is not None:
        by_id = [p for p in profiles if p.matches_id(vid, pid, product)]
        narrowed = [p for p in by_id if p.match_product is not None]
        if narrowed:
            return narrowed[0]
        if by_id:
            return by_id[0]
    for candidate in profiles:
        if candidate.matches_class(
            driver=driver,
            interface_class=interface_class,
            interface_subclass=interface_subclass,
        ):
            return candidate
    return None


# --- sysfs -----------------------------------------------------------------------------


@dataclass(frozen=True)
class _SysfsFacts:
    driver: str | None = None
    interface_class: int | None = None
    interface_subclass: int | None = None


def _link_name(path: Path) -> str | None:
    try:
        return path.readlink().name or None
    except (OSError, ValueError):
        return None


def _read_hex(path: Path) -> int | None:
    try:
        return int(path.read_text(encoding="ascii").strip(), 16)
    except (OSError, ValueError, UnicodeDecodeError):
        return None


def _sysfs_facts(tty_name: str) -> _SysfsFacts:
    """Kernel driver and USB interface class of /sys/class/tty/<tty_name>.

    Returns empty facts when sysfs does not have them (other systems, ptys).
    """
    if not tty_name or "/" in tty_name:
        return _SysfsFacts()
    try:
        device = (SYS_CLASS_TTY / tty_name / "device").resolve(strict=True)
    except (OSError, RuntimeError):
        return _SysfsFacts()
    driver = _link_name(device / "driver")
    subsystem = _link_name(device / "subsystem")
    if subsystem == "usb-serial":  # ttyUSB: device is the port, its parent the interface
        interface: Path | None = device.parent
    elif subsystem == "usb":  # ttyACM: device is the interface itself
        interface = device
    else:
        interface = None
    if interface is None:
        return _SysfsFacts(driver=driver)
    return _SysfsFacts(
        driver=driver,
        interface_class=_read_hex(interface / "bInterfaceClass"),
        interface_subclass=_read_hex(interface / "bInterfaceSubClass"),
    )


# --- listing ---------------------------------------------------------------------------


def _natural_key(device: str) -> tuple[tuple[int, int | str], ...]:
    """Sort key that puts /dev/ttyUSB2 before /dev/ttyUSB10."""
    parts = re.split(r"(\d+)", device)
    return tuple((0, int(part)) if part.isdigit() else (1, part) for part in parts if part)


def _opt_str(value: Any) -> str | None:
    return None if value is None else str(value)


def _opt_int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _comports(include_links: bool) -> list[Any]:
    try:
        return list(_pyserial_list_ports.comports(include_links=include_links))
    except (OSError, ValueError, TypeError) as e:
        raise PortIOError(
            f"pyserial could not list the serial ports: {e}",
            operation="list ports",
            hint="check that /sys and /dev are readable",
        ) from e


def list_ports(
    *,
    profiles: Sequence[AdapterProfile] | None = None,
    include_links: bool = False,
) -> list[PortInfo]:
    """Every serial port pyserial finds, matched to adapter profiles, sorted by device.

    ``include_links`` also lists symlinks to ports (``/dev/serial/by-id/...``);
    a link carries the same USB facts and profile as the port it points to.
    A machine without serial hardware gives ``[]``. ``profiles`` defaults to
    :func:`~serialhs.hwconfig.load_adapter_profiles` (a broken profile file
    raises :class:`~serialhs.errors.ProfileError`).
    """
    if profiles is None:
        profiles = load_adapter_profiles()

    found: dict[str, PortInfo] = {}
    links: list[tuple[Any, str]] = []
    for raw in _comports(include_links):
        device = str(raw.device)
        real = str(Path(device).resolve()) if Path(device).is_symlink() else device
        if real != device:
            links.append((raw, real))
            continue
        found[device] = _port_info(raw, profiles)

    ports = list(found.values())
    for raw, real in links:
        target = found.get(real)
        info = _port_info(raw, profiles, tty_name=Path(real).name)
        if target is not None and info.vid is None:
            info = PortInfo(
                device=info.device,
                name=info.name,
                description=target.description,
                hwid=f"{target.hwid} LINK={real}",
                vid=target.vid,
                pid=target.pid,
                serial_number=target.serial_number,
                manufacturer=target.manufacturer,
                product=target.product,
                location=target.location,
                interface=target.interface,
                driver=target.driver,
                profile=target.profile,
                interface_class=target.interface_class,
                interface_subclass=target.interface_subclass,
            )
        ports.append(info)

    ports.sort(key=lambda p: _natural_key(p.device))
    log.debug("found %d serial port(s)", len(ports))
    return ports


def _port_info(
    raw: Any,
    profiles: Sequence[AdapterProfile],
    *,
    tty_name: str | None = None,
) -> PortInfo:
    device = str(raw.device)
    name = str(raw.name) if raw.name is not None else Path(device).name
    facts = _sysfs_facts(tty_name or name)
    vid = _opt_int(raw.vid)
    pid = _opt_int(raw.pid)
    product = _opt_str(raw.product)
    profile = match_profile(
        vid,
        pid,
        driver=facts.driver,
        interface_class=facts.interface_class,
        interface_subclass=facts.interface_subclass,
        product=product,
        profiles=profiles,
    )
    return PortInfo(
        device=device,
        name=name,
        description=str(raw.description),
        hwid=str(raw.hwid),
        vid=vid,
        pid=pid,
        serial_number=_opt_str(raw.serial_number),
        manufacturer=_opt_str(raw.manufacturer),
        product=product,
        location=_opt_str(raw.location),
        interface=_opt_str(raw.interface),
        driver=facts.driver,
        profile=profile,
        interface_class=facts.interface_class,
        interface_subclass=facts.interface_subclass,
    )


# --- picking one -----------------------------------------------------------------------


def _as_id(value: int | str | None, what: str) -> int | None:
    if value is None or isinstance(value, int):
        return value
    text = value.strip().lower().removeprefix("0x")
    try:
        number = int(text, 16)
    except ValueError:
        raise ConfigError(f"{what} {value!r} is not a hex USB id (e.g. '0403')") from None
    if not 0 <= number <= 0xFFFF:
        raise ConfigError(f"{what} {value!r} is out of range 0000..ffff")
    return number


def _criteria_text(
    vid: int | None, pid: int | None, serial_number: str | None, profile_name: str | None
) -> str:
    parts = []
    if vid is not None:
        parts.append(f"vid={vid:04x}")
    if pid is not None:
        parts.append(f"pid={pid:04x}")
    if serial_number is not None:
        parts.append(f"serial_number={serial_number!r}")
    if profile_name is not None:
        parts.append(f"profile={profile_name!r}")
    return " ".join(parts) or "(any port)"


def find_ports(
    *,
    vid: int | str | None = None,
    pid: int | str | None = None,
    serial_number: str | None = None,
    profile: str | AdapterProfile | None = None,
    profiles: Sequence[AdapterProfile] | None = None,
    ports: Sequence[PortInfo] | None = None,
) -> list[PortInfo]:
    """Every port that fits all the given criteria (None means "any").

    ``vid``/``pid`` are ints or hex strings (``"0403"``); ``profile`` is a
    profile name (``"ft232r"``) or an :class:`AdapterProfile`. ``ports``
    defaults to :func:`list_ports` (with ``profiles``).
    """
    want_vid = _as_id(vid, "vid")
    want_pid = _as_id(pid, "pid")
    want_profile = profile.name if isinstance(profile, AdapterProfile) else profile
    if ports is None:
        ports = list_ports(profiles=profiles)
    return [
        port
        for port in ports
        if (want_vid is None or port.vid == want_vid)
        and (want_pid is None or port.pid == want_pid)
        and (serial_number is None or port.serial_number == serial_number)
        and (
            want_profile is None or (port.profile is not None and port.profile.name == want_profile)
        )
    ]


def find_port(
    *,
    vid: int | str | None = None,
    pid: int | str | None = None,
    serial_number: str | None = None,
    profile: str | AdapterProfile | None = None,
    profiles: Sequence[AdapterProfile] | None = None,
    ports: Sequence[PortInfo] | None = None,
) -> PortInfo:
    """The one port that fits the criteria (see :func:`find_ports`).

    Raises :class:`~serialhs.errors.PortNotFoundError` listing the ports that
    are present when none fits, and :class:`~serialhs.errors.ConfigError` when
    several fit (add ``serial_number`` to choose).
    """
    if ports is None:
        ports = list_ports(profiles=profiles)
    matches = find_ports(
        vid=vid, pid=pid, serial_number=serial_number, profile=profile, ports=ports
    )
    want_profile = profile.name if isinstance(profile, AdapterProfile) else profile
    criteria = _criteria_text(_as_id(vid, "vid"), _as_id(pid, "pid"), serial_number, want_profile)
    if len(matches) == 1:
        return matches[0]
    if not matches:
        present = "; ".join(p.summary() for p in ports) or "none"
        raise PortNotFoundError(
            f"no serial port matches {criteria}; present: {present}",
            hint="check the cable and the criteria; 'serialhs ports' lists what is there",
        )
    listed = "; ".join(p.summary() for p in matches)
    raise ConfigError(
        f"{len(matches)} serial ports match {criteria}: {listed}; "
        "give serial_number (or another criterion) to choose one"
    )
