"""Finding USB-serial adapters and modems on the USB bus, with pyusb.

:func:`list_usb_devices` enumerates the devices a pyusb backend sees (by
default :func:`serialhs.usb.virtual.get_backend`: libusb, or the virtual bus
when ``SERIALHS_USB=virtual:...``), reads their descriptors and strings
(manufacturer, product, serial number), lists their interfaces with class,
subclass, protocol and endpoints, and matches each device to the hw_configs
profiles:

1. a modem profile (``hw_configs/modems``) whose ``[modem.usb]`` vid/pid is the
   device's; each interface then gets its *roles* from the profile (``at``,
   ``ppp``, ``diag``, ``nmea``, ``qmi``, ...), and :func:`find_at_interface`
   picks the one that speaks AT commands;
2. an adapter profile (``hw_configs/adapters``) by USB id (and product
   string), as :func:`serialhs.driver.discovery.match_profile` matches it, or
   else by an interface's class (CDC-ACM: 02/02) or kernel driver.

On Linux each interface is mapped to its kernel driver and tty through sysfs
(``/sys/bus/usb/devices/<bus>-<port path>:<config>.<interface>/``: ``driver``,
``tty/ttyACM*`` or ``ttyUSB*``) when a driver is bound.

Discovery never raises because USB cannot be seen: with no libusb, no
permission on ``/dev/bus/usb`` or a device that will not answer, the result
still comes back, and its ``problems`` list (on the result and on each device)
says what could not be seen and what to do about it.
"""

from __future__ import annotations

import dataclasses
import errno
import logging
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from serialhs.errors import ConfigError, PortNotFoundError, SerialHSError
from serialhs.hwconfig import AdapterProfile, load_adapter_profiles
from serialhs.modem.profile import ModemProfile, load_modem_profiles
from serialhs.usb import virtual

__all__ = [
    "DEV_BUS_USB",
    "SYS_BUS_USB_DEVICES",
    "UsbDevice",
    "UsbDeviceList",
    "UsbEndpointInfo",
    "UsbInterfaceInfo",
    "find_at_interface",
    "find_usb_device",
    "interface_sysfs",
    "list_usb_devices",
    "match_tty",
]

log = logging.getLogger("serialhs.usb")

#: Where Linux lists USB devices and interfaces.
SYS_BUS_USB_DEVICES = Path("/sys/bus/usb/devices")
#: Where libusb opens USB devices on Linux (one node per device).
DEV_BUS_USB = Path("/dev/bus/usb")

_SPEED_NAMES = {1: "low", 2: "full", 3: "high", 4: "super", 5: "super+"}
_TRANSFER_NAMES = {0: "control", 1: "isochronous", 2: "bulk", 3: "interrupt"}
_HUB_CLASS = 0x09


@dataclasses.dataclass(frozen=True)
class UsbEndpointInfo:
    """One endpoint: its address, transfer type and packet size."""

    address: int
    kind: str  #: bulk, interrupt, isochronous, control
    max_packet_size: int
    interval: int = 0

    @property
    def is_in(self) -> bool:
        return bool(self.address & 0x80)

    def to_dict(self) -> dict[str, Any]:
        return {
            "address": f"0x{self.address:02x}",
            "direction": "in" if self.is_in else "out",
            "kind": self.kind,
            "max_packet_size": self.max_packet_size,
            "interval": self.interval,
        }


@dataclasses.dataclass(frozen=True)
class UsbInterfaceInfo:
    """One interface of a USB device (alternate setting 0).

    ``roles`` come from the device's modem profile (empty otherwise); ``driver``
    and ``tty`` from sysfs (the kernel driver bound to it and its tty, such as
    ``/dev/ttyUSB2``), None when no driver is bound or sysfs cannot tell.
    """

    number: int
    interface_class: int
    interface_subclass: int
    interface_protocol: int
    name: str | None = None
    endpoints: tuple[UsbEndpointInfo, ...] = ()
    roles: tuple[str, ...] = ()
    driver: str | None = None
    tty: str | None = None
    alternate: int = 0

    @property
    def class_triple(self) -> str:
        """``"ff/00/00"``: class, subclass and protocol."""
        return (
            f"{self.interface_class:02x}/{self.interface_subclass:02x}/"
            f"{self.interface_protocol:02x}"
        )

    def endpoint(self, *, kind: str, is_in: bool) -> UsbEndpointInfo | None:
        for ep in self.endpoints:
            if ep.kind == kind and ep.is_in == is_in:
                return ep
        return None

    def to_dict(self) -> dict[str, Any]:
        return {
            "number": self.number,
            "class": f"{self.interface_class:02x}",
            "subclass": f"{self.interface_subclass:02x}",
            "protocol": f"{self.interface_protocol:02x}",
            "name": self.name,
            "roles": list(self.roles),
            "driver": self.driver,
            "tty": self.tty,
            "endpoints": [ep.to_dict() for ep in self.endpoints],
        }


@dataclasses.dataclass(frozen=True)
class UsbDevice:
    """One USB device as discovered, matched to its profiles.

    ``port_path`` is the bus and port chain as Linux names the device in sysfs
    (``"1-1.2"``; None for a root hub). ``adapter``/``modem`` are the matched
    profiles (either may be None). ``virtual`` is True for a device on the
    virtual bus. ``problems`` lists what could not be read and why.
    """

    vid: int
    pid: int
    bus: int | None
    address: int | None
    port_path: str | None
    manufacturer: str | None
    product: str | None
    serial_number: str | None
    interfaces: tuple[UsbInterfaceInfo, ...] = ()
    adapter: AdapterProfile | None = None
    modem: ModemProfile | None = None
    speed: str | None = None
    bcd_device: int | None = None
    device_class: int = 0
    virtual: bool = False
    problems: tuple[str, ...] = ()

    @property
    def usb_id(self) -> str:
        return f"{self.vid:04x}:{self.pid:04x}"

    @property
    def device_node(self) -> str | None:
        """``/dev/bus/usb/BBB/DDD``, the node libusb opens (None for virtual devices)."""
        if self.virtual or self.bus is None or self.address is None:
            return None
        return str(DEV_BUS_USB / f"{self.bus:03d}" / f"{self.address:03d}")

    @property
    def location(self) -> str:
        """The port path, or ``bus B address A``."""
        return self.port_path or f"bus {self.bus} address {self.address}"

    @property
    def profile_name(self) -> str | None:
        """The modem profile's name, else the adapter profile's."""
        if self.modem is not None:
            return self.modem.name
        return None if self.adapter is None else self.adapter.name

    @property
    def kind(self) -> str | None:
        """``"modem"``, ``"adapter"`` or None (no profile fits)."""
        if self.modem is not None:
            return "modem"
        return None if self.adapter is None else "adapter"

    def interface(self, number: int) -> UsbInterfaceInfo | None:
        for iface in self.interfaces:
            if iface.number == number:
                return iface
        return None

    def url(self, interface: int | None = None) -> str:
        """The ``usb://`` URL that opens this device (an interface of it) with
        serialhs's user-space drivers: ``usb://0403:6001?serial=A50285BI&interface=0``."""
        query = []
        if self.serial_number:
            query.append(f"serial={self.serial_number}")
        if interface is not None:
            query.append(f"interface={interface}")
        return f"usb://{self.usb_id}" + (f"?{'&'.join(query)}" if query else "")

    def summary(self) -> str:
        """One line: id, location, serial number and what it is."""
        parts = [self.usb_id, self.location]
        if self.serial_number:
            parts.append(f"SER={self.serial_number}")
        if self.modem is not None:
            parts.append(f"{self.modem.manufacturer} {self.modem.model}")
        elif self.adapter is not None:
            parts.append(self.adapter.chip)
        elif self.product:
            parts.append(self.product)
        return " ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        return {
            "usb_id": self.usb_id,
            "vid": f"{self.vid:04x}",
            "pid": f"{self.pid:04x}",
            "bus": self.bus,
            "address": self.address,
            "port_path": self.port_path,
            "speed": self.speed,
            "manufacturer": self.manufacturer,
            "product": self.product,
            "serial_number": self.serial_number,
            "virtual": self.virtual,
            "kind": self.kind,
            "adapter": None if self.adapter is None else self.adapter.name,
            "modem": None if self.modem is None else self.modem.name,
            "interfaces": [i.to_dict() for i in self.interfaces],
            "problems": list(self.problems),
        }


class UsbDeviceList(list[UsbDevice]):
    """The devices found, plus ``problems``: what could not be seen, in words."""

    def __init__(self, devices: Iterable[UsbDevice] = (), problems: Iterable[str] = ()) -> None:
        super().__init__(devices)
        self.problems: list[str] = list(problems)


# -- sysfs ------------------------------------------------------------------------------


def interface_sysfs(
    bus: int, port_path: str, config: int, interface: int, *, root: Path = SYS_BUS_USB_DEVICES
) -> tuple[str | None, str | None]:
    """The kernel driver bound to an interface and its tty (``/dev/ttyUSB0``), from
    ``<root>/<bus>-<ports>:<config>.<interface>/``; (None, None) where sysfs has
    nothing. ``port_path`` is the chain after the bus (``"1.2"``)."""
    directory = root / f"{bus}-{port_path}:{config}.{interface}"
    driver: str | None = None
    try:
        driver = (directory / "driver").readlink().name or None
    except (OSError, ValueError):
        driver = None
    tty: str | None = None
    try:
        tty_dir = directory / "tty"  # cdc_acm: <intf>/tty/ttyACM0
        if tty_dir.is_dir():
            names = sorted(p.name for p in tty_dir.iterdir())
            tty = f"/dev/{names[0]}" if names else None
        if tty is None:  # usb-serial drivers: <intf>/ttyUSB0/
            names = sorted(
                p.name for p in directory.iterdir() if p.name.startswith(("ttyUSB", "ttyACM"))
            )
            tty = f"/dev/{names[0]}" if names else None
    except OSError:
        pass
    return driver, tty


def _active_config(bus: int, port_path: str, root: Path) -> int:
    try:
        text = (root / f"{bus}-{port_path}" / "bConfigurationValue").read_text().strip()
        return int(text) if text else 1
    except (OSError, ValueError):
        return 1


def _sysfs_string(bus: int, port_path: str, name: str, root: Path) -> str | None:
    try:
        return (root / f"{bus}-{port_path}" / name).read_text(encoding="utf-8").strip() or None
    except (OSError, UnicodeDecodeError):
        return None


# -- reading one device ------------------------------------------------------------------


def _permission_hint(node: str | None, usb_id: str) -> str:
    where = f"permission denied on {node}" if node else f"permission denied on {usb_id}"
    return (
        f"{where}: add a udev rule giving your user access (serialhs udev-rules writes "
        f'one; by hand: SUBSYSTEM=="usb", ATTR{{idVendor}}=="{usb_id[:4]}", '
        f'ATTR{{idProduct}}=="{usb_id[5:]}", MODE="0660", GROUP="plugdev"), '
        "then replug the device"
    )


def _strings(dev: Any, node: str | None, usb_id: str, problems: list[str]) -> dict[str, Any]:
    """Manufacturer, product and serial number; interface names by index."""
    import usb.core  # noqa: PLC0415
    import usb.util  # noqa: PLC0415

    found: dict[str, Any] = {"manufacturer": None, "product": None, "serial_number": None}
    indexes = {
        "manufacturer": int(dev.iManufacturer),
        "product": int(dev.iProduct),
        "serial_number": int(dev.iSerialNumber),
    }
    if not any(indexes.values()):
        return found
    try:
        langids = usb.util.get_langids(dev)
    except usb.core.USBError as e:
        if e.errno in (errno.EACCES, errno.EPERM):
            problems.append(_permission_hint(node, usb_id))
        else:
            problems.append(f"{usb_id}: could not read its strings: {e}")
        return found
    if not langids:
        return found
    langid = 0x0409 if 0x0409 in langids else langids[0]
    for key, index in indexes.items():
        if not index:
            continue
        try:
            found[key] = usb.util.get_string(dev, index, langid)
        except (usb.core.USBError, ValueError, UnicodeDecodeError) as e:
            problems.append(f"{usb_id}: could not read string {index} ({key}): {e}")
    return found


def _interface_name(dev: Any, index: int) -> str | None:
    import usb.core  # noqa: PLC0415
    import usb.util  # noqa: PLC0415

    if not index:
        return None
    try:
        text: str | None = usb.util.get_string(dev, index)
        return text
    except (usb.core.USBError, ValueError, UnicodeDecodeError):
        return None


def _interfaces(
    dev: Any,
    *,
    names: bool,
    sysfs: Path | None,
    port_path: str | None,
    roles: dict[int, tuple[str, ...]],
    drivers: dict[int, str | None],
) -> tuple[UsbInterfaceInfo, ...]:
    found: list[UsbInterfaceInfo] = []
    config = dev[0]
    active = 1
    if sysfs is not None and port_path is not None and dev.bus is not None:
        bus_number, _, chain = port_path.partition("-")
        active = _active_config(int(bus_number), chain, sysfs)
    for iface in config:
        if iface.bAlternateSetting != 0:
            continue
        endpoints = tuple(
            UsbEndpointInfo(
                address=int(ep.bEndpointAddress),
                kind=_TRANSFER_NAMES.get(int(ep.bmAttributes) & 0x03, "unknown"),
                max_packet_size=int(ep.wMaxPacketSize),
                interval=int(ep.bInterval),
            )
            for ep in iface
        )
        number = int(iface.bInterfaceNumber)
        driver, tty = drivers.get(number), None
        if sysfs is not None and port_path is not None:
            bus_number, _, chain = port_path.partition("-")
            driver, tty = interface_sysfs(int(bus_number), chain, active, number, root=sysfs)
        found.append(
            UsbInterfaceInfo(
                number=number,
                interface_class=int(iface.bInterfaceClass),
                interface_subclass=int(iface.bInterfaceSubClass),
                interface_protocol=int(iface.bInterfaceProtocol),
                name=_interface_name(dev, int(iface.iInterface)) if names else None,
                endpoints=endpoints,
                roles=roles.get(number, ()),
                driver=driver,
                tty=tty,
            )
        )
    return tuple(found)


def _match_adapter(
    vid: int,
    pid: int,
    product: str | None,
    interfaces: Sequence[UsbInterfaceInfo],
    profiles: Sequence[AdapterProfile],
) -> AdapterProfile | None:
    from serialhs.driver.discovery import match_profile  # noqa: PLC0415

    profile = match_profile(vid, pid, product=product, profiles=profiles)
    if profile is not None:
        return profile
    for iface in interfaces:
        profile = match_profile(
            None,
            None,
            driver=iface.driver,
            interface_class=iface.interface_class,
            interface_subclass=iface.interface_subclass,
            profiles=profiles,
        )
        if profile is not None:
            return profile
    return None


def _match_modem(vid: int, pid: int, profiles: Sequence[ModemProfile]) -> ModemProfile | None:
    for profile in profiles:
        if profile.usb is not None and (profile.usb.vid, profile.usb.pid) == (vid, pid):
            return profile
    return None


def _virtual_drivers(backend: Any, bus: int | None, address: int | None) -> dict[int, str | None]:
    for model in virtual.plugged_models(backend):
        if model.address == address and bus == backend.bus.bus_number:
            return {i.number: model.kernel_driver(i.number) for i in model.spec.interfaces}
    return {}


def _describe(
    dev: Any,
    backend: Any,
    adapters: Sequence[AdapterProfile],
    modems: Sequence[ModemProfile],
    sysfs: Path,
) -> UsbDevice:
    problems: list[str] = []
    vid, pid = int(dev.idVendor), int(dev.idProduct)
    usb_id = f"{vid:04x}:{pid:04x}"
    is_virtual = virtual.is_virtual(backend)
    bus = None if dev.bus is None else int(dev.bus)
    address = None if dev.address is None else int(dev.address)
    ports = getattr(dev, "port_numbers", None)
    port_path = f"{bus}-{'.'.join(str(p) for p in ports)}" if ports and bus is not None else None
    node = (
        None
        if is_virtual or bus is None or address is None
        else str(DEV_BUS_USB / f"{bus:03d}" / f"{address:03d}")
    )
    strings = _strings(dev, node, usb_id, problems)
    use_sysfs = not is_virtual and sysfs.is_dir() and port_path is not None
    if use_sysfs and port_path is not None and bus is not None:
        chain = port_path.partition("-")[2]
        for key, name in (
            ("manufacturer", "manufacturer"),
            ("product", "product"),
            ("serial_number", "serial"),
        ):
            if strings[key] is None:
                strings[key] = _sysfs_string(bus, chain, name, sysfs)
    modem = _match_modem(vid, pid, modems)
    roles: dict[int, tuple[str, ...]] = {}
    if modem is not None and modem.usb is not None:
        roles = {i.number: i.roles for i in modem.usb.interfaces}
    try:
        interfaces = _interfaces(
            dev,
            names=not problems,
            sysfs=sysfs if use_sysfs else None,
            port_path=port_path,
            roles=roles,
            drivers=_virtual_drivers(backend, bus, address) if is_virtual else {},
        )
    except Exception as e:  # a device that will not describe its configuration
        problems.append(f"{usb_id} at {port_path or node}: could not read its interfaces: {e}")
        interfaces = ()
    adapter = _match_adapter(vid, pid, strings["product"], interfaces, adapters)
    speed_code = getattr(dev, "speed", None)
    return UsbDevice(
        vid=vid,
        pid=pid,
        bus=bus,
        address=address,
        port_path=port_path,
        manufacturer=strings["manufacturer"],
        product=strings["product"],
        serial_number=strings["serial_number"],
        interfaces=interfaces,
        adapter=adapter,
        modem=modem,
        speed=_SPEED_NAMES.get(int(speed_code)) if speed_code else None,
        bcd_device=int(dev.bcdDevice),
        device_class=int(dev.bDeviceClass),
        virtual=is_virtual,
        problems=tuple(problems),
    )


# -- listing ---------------------------------------------------------------------------------


def _load_profiles(
    problems: list[str],
    adapters: Sequence[AdapterProfile] | None,
    modems: Sequence[ModemProfile] | None,
) -> tuple[Sequence[AdapterProfile], Sequence[ModemProfile]]:
    if adapters is None:
        try:
            adapters = load_adapter_profiles()
        except SerialHSError as e:
            problems.append(f"adapter profiles could not be loaded: {e}")
            adapters = ()
    if modems is None:
        try:
            modems = load_modem_profiles()
        except SerialHSError as e:
            problems.append(f"modem profiles could not be loaded: {e}")
            modems = ()
    return adapters, modems


def list_usb_devices(
    backend: Any = None,
    *,
    adapters: Sequence[AdapterProfile] | None = None,
    modems: Sequence[ModemProfile] | None = None,
    sysfs: Path = SYS_BUS_USB_DEVICES,
    include_hubs: bool = False,
) -> UsbDeviceList:
    """Every USB device ``backend`` sees (default: :func:`~serialhs.usb.virtual.get_backend`),
    described and matched to profiles, in bus/address order; hubs are left out
    unless ``include_hubs``.

    Never raises for want of USB: the result's ``problems`` says what could not
    be seen (no libusb, no permission, a device that does not answer). A
    ``SERIALHS_USB`` value that cannot be read is a problem too.
    """
    problems: list[str] = []
    if backend is None:
        try:
            backend = virtual.get_backend()
        except ConfigError as e:
            return UsbDeviceList((), [str(e)])
        except Exception as e:
            return UsbDeviceList((), [f"no USB backend: {e}"])
        if backend is None:
            return UsbDeviceList((), [virtual.backend_unavailable_reason()])
    adapters, modems = _load_profiles(problems, adapters, modems)
    try:
        import usb.core  # noqa: PLC0415

        found = list(usb.core.find(find_all=True, backend=backend))
    except Exception as e:
        problems.append(f"could not enumerate USB devices: {e}")
        return UsbDeviceList((), problems)
    devices: list[UsbDevice] = []
    for dev in found:
        try:
            if not include_hubs and int(dev.bDeviceClass) == _HUB_CLASS:
                continue
            devices.append(_describe(dev, backend, adapters, modems, sysfs))
        except Exception as e:
            where = f"{int(dev.idVendor):04x}:{int(dev.idProduct):04x}"
            problems.append(f"{where}: could not be described: {e}")
        finally:
            _dispose(dev)
    devices.sort(key=lambda d: (d.bus or 0, d.address or 0))
    for device in devices:
        problems.extend(p for p in device.problems if p not in problems)
    log.debug("found %d USB device(s), %d problem(s)", len(devices), len(problems))
    return UsbDeviceList(devices, problems)


def _dispose(dev: Any) -> None:
    try:
        import usb.util  # noqa: PLC0415

        usb.util.dispose_resources(dev)
    except Exception as e:
        log.debug("releasing %r: %s", dev, e)


# -- picking ----------------------------------------------------------------------------------


def find_at_interface(device: UsbDevice) -> UsbInterfaceInfo | None:
    """The interface of a modem that takes AT commands, by the roles its modem
    profile gives: the lowest-numbered interface with role ``at`` (a plain AT
    port before the modem/PPP port that also takes AT). None for devices without
    a modem profile or without such an interface."""
    if device.modem is None or device.modem.usb is None:
        return None
    wanted = device.modem.usb.interface_for("at")
    if wanted is None:
        return None
    return device.interface(wanted.number)


def find_usb_device(
    *,
    vid: int | None = None,
    pid: int | None = None,
    serial_number: str | None = None,
    profile: str | None = None,
    backend: Any = None,
    devices: Sequence[UsbDevice] | None = None,
) -> UsbDevice:
    """The one device that fits all the given criteria (None means any).

    Raises :class:`~serialhs.errors.PortNotFoundError` saying what is present
    (and what could not be seen) when none fits, and
    :class:`~serialhs.errors.ConfigError` when several do."""
    listed = devices if devices is not None else list_usb_devices(backend)
    matches = [
        d
        for d in listed
        if (vid is None or d.vid == vid)
        and (pid is None or d.pid == pid)
        and (serial_number is None or d.serial_number == serial_number)
        and (profile is None or profile in (d.profile_name, getattr(d.adapter, "name", None)))
    ]
    criteria = " ".join(
        part
        for part in (
            None if vid is None else f"vid={vid:04x}",
            None if pid is None else f"pid={pid:04x}",
            None if serial_number is None else f"serial_number={serial_number!r}",
            None if profile is None else f"profile={profile!r}",
        )
        if part
    )
    if len(matches) == 1:
        return matches[0]
    if not matches:
        present = "; ".join(d.summary() for d in listed) or "none"
        problems = getattr(listed, "problems", [])
        unseen = f"; could not see: {'; '.join(problems)}" if problems else ""
        raise PortNotFoundError(
            f"no USB device matches {criteria or '(any)'}; present: {present}{unseen}",
            hint="check the cable; 'serialhs ports' lists what is there",
        )
    raise ConfigError(
        f"{len(matches)} USB devices match {criteria or '(any)'}: "
        f"{'; '.join(d.summary() for d in matches)}; give serial_number to choose one"
    )


def match_tty(
    device_path: str, devices: Sequence[UsbDevice]
) -> tuple[UsbDevice, UsbInterfaceInfo] | None:
    """The USB device and interface behind a tty (``/dev/ttyUSB2``), or None: how a
    port list can say which interface (and modem role) a serial port is."""
    resolved = str(Path(device_path).resolve()) if device_path.startswith("/") else device_path
    for device in devices:
        for iface in device.interfaces:
            if iface.tty is not None and iface.tty in (device_path, resolved):
                return device, iface
    return None
