"""A virtual USB bus behind pyusb's backend interface, and the choice of backend.

pyusb talks to devices through a *backend* (``usb.backend.IBackend``): libusb
1.0 on a real machine. :class:`VirtualBackend` is another backend; the devices
it enumerates are models (:mod:`serialhs.usb.models`) plugged into a
:class:`VirtualBus`. Code written against pyusb's public API --
``usb.core.find(backend=...)``, ``dev.ctrl_transfer``, endpoint reads and
writes, ``set_configuration``, ``claim_interface``, kernel-driver detach --
runs unchanged against it, and sees what it would see through libusb:

- descriptors as pyusb objects (device, configuration, interfaces with their
  class-specific descriptors, endpoints), bus number, address and port path;
- the standard requests answered over the control pipe (GET_DESCRIPTOR for the
  device, the configuration and strings in language 0x0409, GET_STATUS,
  GET/SET_CONFIGURATION, GET/SET_INTERFACE, CLEAR_FEATURE), class and vendor
  requests answered by the device model, anything else a stall;
- errors as :class:`usb.core.USBError` with libusb's code in
  ``backend_error_code`` and its errno, exactly as pyusb's libusb1 backend
  raises them: ``LIBUSB_ERROR_NO_DEVICE`` (-4, ENODEV) once the device is
  unplugged, :class:`usb.core.USBTimeoutError` (-7, ETIMEDOUT) for a transfer
  that runs out of time, ``LIBUSB_ERROR_PIPE`` (-9, EPIPE) for a stall,
  ``LIBUSB_ERROR_BUSY`` (-6, EBUSY) for an interface a kernel driver or another
  handle holds, ``LIBUSB_ERROR_OVERFLOW`` (-8) when a packet does not fit the
  buffer, ``LIBUSB_ERROR_ACCESS`` (-3, EACCES) when access is denied;
- kernel drivers: an interface whose descriptor data names one
  (``kernel_driver``) starts with it bound, as Linux binds ftdi_sio or cp210x
  at plug time. Claiming such an interface, or setting the configuration while
  any driver is bound, fails with EBUSY until ``detach_kernel_driver``;
- unplugging: every open handle fails with ENODEV from then on, also after the
  device comes back; a replugged device enumerates at a new address (as a real
  re-enumeration does) and is found again by its serial number.

A transfer timeout of 0 ms waits without limit, as in libusb; every other
timeout is honoured.

:func:`get_backend` is what the rest of serialhs.usb uses: the process-wide
virtual bus when ``SERIALHS_USB=virtual:...`` is set, pyusb's libusb 1.0
backend otherwise, or None (see :func:`backend_unavailable_reason`).

    SERIALHS_USB=virtual:ft232r,cp2102,cdc_modem      three devices (hw_configs/usb/*.toml)
    SERIALHS_USB=virtual:ft232r@modem:v90_dialup      an FT232R wired to an emulated modem
    SERIALHS_USB=libusb                               the real bus (the default)
    SERIALHS_USB=none                                 no USB at all
"""

from __future__ import annotations

import array
import atexit
import contextlib
import dataclasses
import errno
import logging
import os
import struct
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from types import SimpleNamespace, TracebackType
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import usb.backend
import usb.core

from serialhs.errors import ConfigError

if TYPE_CHECKING:
    from serialhs.sim.wire import Wire, WireEnd

__all__ = [
    "ENV_VAR",
    "LIBUSB_ERROR_ACCESS",
    "LIBUSB_ERROR_BUSY",
    "LIBUSB_ERROR_INVALID_PARAM",
    "LIBUSB_ERROR_IO",
    "LIBUSB_ERROR_NOT_FOUND",
    "LIBUSB_ERROR_NO_DEVICE",
    "LIBUSB_ERROR_OVERFLOW",
    "LIBUSB_ERROR_PIPE",
    "LIBUSB_ERROR_TIMEOUT",
    "VIRTUAL_BUS_NUMBER",
    "DeviceSpec",
    "EndpointSpec",
    "EnvChoice",
    "EnvDevice",
    "InterfaceSpec",
    "Setup",
    "Stall",
    "VirtualBackend",
    "VirtualBus",
    "VirtualDevice",
    "backend_from_env",
    "backend_unavailable_reason",
    "env_bus",
    "get_backend",
    "is_virtual",
    "parse_env",
    "plugged_models",
    "reset_env_bus",
    "temporary_bus",
    "usb_error",
]

log = logging.getLogger("serialhs.usb")

T = TypeVar("T")

#: The environment variable that picks the backend (see the module docstring).
ENV_VAR = "SERIALHS_USB"

#: The bus number virtual devices enumerate on: far from the numbers Linux
#: gives real host controllers, so a virtual device is never mistaken for a real
#: one (nor looked up in sysfs).
VIRTUAL_BUS_NUMBER = 250

# -- libusb's error codes, strings and errno values (as pyusb's libusb1 backend) -------

LIBUSB_ERROR_IO = -1
LIBUSB_ERROR_INVALID_PARAM = -2
LIBUSB_ERROR_ACCESS = -3
LIBUSB_ERROR_NO_DEVICE = -4
LIBUSB_ERROR_NOT_FOUND = -5
LIBUSB_ERROR_BUSY = -6
LIBUSB_ERROR_TIMEOUT = -7
LIBUSB_ERROR_OVERFLOW = -8
LIBUSB_ERROR_PIPE = -9
LIBUSB_ERROR_NOT_SUPPORTED = -12

_STRERROR = {
    LIBUSB_ERROR_IO: "Input/output error",
    LIBUSB_ERROR_INVALID_PARAM: "Invalid parameter",
    LIBUSB_ERROR_ACCESS: "Access denied (insufficient permissions)",
    LIBUSB_ERROR_NO_DEVICE: "No such device (it may have been disconnected)",
    LIBUSB_ERROR_NOT_FOUND: "Entity not found",
    LIBUSB_ERROR_BUSY: "Resource busy",
    LIBUSB_ERROR_TIMEOUT: "Operation timed out",
    LIBUSB_ERROR_OVERFLOW: "Overflow",
    LIBUSB_ERROR_PIPE: "Pipe error",
    LIBUSB_ERROR_NOT_SUPPORTED: "Operation not supported or unimplemented on this platform",
}

_ERRNO = {
    LIBUSB_ERROR_IO: errno.EIO,
    LIBUSB_ERROR_INVALID_PARAM: errno.EINVAL,
    LIBUSB_ERROR_ACCESS: errno.EACCES,
    LIBUSB_ERROR_NO_DEVICE: errno.ENODEV,
    LIBUSB_ERROR_NOT_FOUND: errno.ENOENT,
    LIBUSB_ERROR_BUSY: errno.EBUSY,
    LIBUSB_ERROR_TIMEOUT: errno.ETIMEDOUT,
    LIBUSB_ERROR_OVERFLOW: errno.EOVERFLOW,
    LIBUSB_ERROR_PIPE: errno.EPIPE,
    LIBUSB_ERROR_NOT_SUPPORTED: errno.ENOSYS,
}


def usb_error(code: int, detail: str | None = None) -> Exception:
    """The exception pyusb's libusb1 backend raises for libusb error ``code``:
    :class:`usb.core.USBTimeoutError` for a timeout, :class:`NotImplementedError`
    for LIBUSB_ERROR_NOT_SUPPORTED, :class:`usb.core.USBError` otherwise, with the
    code in ``backend_error_code`` and libusb's errno and text. ``detail`` only goes
    to the debug log, so that messages read exactly as libusb's."""
    if detail:
        log.debug("virtual usb: %s: %s", _STRERROR.get(code, "Unknown error"), detail)
    text = _STRERROR.get(code, "Unknown error")
    if code == LIBUSB_ERROR_NOT_SUPPORTED:
        return NotImplementedError(text)
    if code == LIBUSB_ERROR_TIMEOUT:
        return usb.core.USBTimeoutError(text, code, _ERRNO[code])  # type: ignore[no-any-return]
    return usb.core.USBError(text, code, _ERRNO.get(code))  # type: ignore[no-any-return]


class Stall(Exception):
    """Raised by a device model to stall a request (the host sees LIBUSB_ERROR_PIPE)."""


# -- descriptor data ----------------------------------------------------------------------

EndpointKind = Literal["bulk", "interrupt"]
Speed = Literal["low", "full", "high"]

_SPEED_CODES = {"low": 1, "full": 2, "high": 3}  # libusb_speed
_TRANSFER_TYPES = {"bulk": 2, "interrupt": 3}  # bmAttributes

#: CDC descriptor types and subtypes (USB CDC 1.2, tables 12 and 13).
CS_INTERFACE = 0x24
CDC_HEADER = 0x00
CDC_CALL_MANAGEMENT = 0x01
CDC_ACM = 0x02
CDC_UNION = 0x06
#: bmCapabilities of the ACM functional descriptor: line coding + serial state
#: (0x02) and SEND_BREAK (0x04).
ACM_CAPABILITIES = 0x06


@dataclasses.dataclass(frozen=True, slots=True)
class EndpointSpec:
    """One endpoint of an interface."""

    address: int
    kind: EndpointKind
    max_packet_size: int
    interval: int = 0

    @property
    def is_in(self) -> bool:
        return bool(self.address & 0x80)

    @property
    def attributes(self) -> int:
        return _TRANSFER_TYPES[self.kind]


@dataclasses.dataclass(frozen=True, slots=True)
class InterfaceSpec:
    """One interface (alternate setting 0) and what sits behind it.

    ``uart`` says where the interface's serial data goes: ``"wire"`` (a virtual
    wire whose far end is free), ``"modem"`` (an emulated modem) or None (no
    serial function). ``cdc_acm`` interfaces answer the CDC-ACM class requests
    and send SERIAL_STATE notifications on their interrupt IN endpoint; their data
    travels on the bulk endpoints of ``data_interface`` (None: their own).
    """

    number: int
    interface_class: int
    interface_subclass: int
    interface_protocol: int
    endpoints: tuple[EndpointSpec, ...] = ()
    name: str | None = None
    kernel_driver: str | None = None
    uart: str | None = None
    cdc_acm: bool = False
    data_interface: int | None = None

    def endpoint(self, *, kind: EndpointKind, is_in: bool) -> EndpointSpec | None:
        """The first endpoint of ``kind`` in that direction, or None."""
        for ep in self.endpoints:
            if ep.kind == kind and ep.is_in == is_in:
                return ep
        return None

    def class_descriptors(self) -> bytes:
        """The class-specific descriptors that follow the interface descriptor:
        for a CDC-ACM interface its header, call management, ACM and union
        functional descriptors (USB CDC 1.2 and its PSTN subclass)."""
        if not self.cdc_acm:
            return b""
        data = self.number if self.data_interface is None else self.data_interface
        return bytes(
            [
                5, CS_INTERFACE, CDC_HEADER, 0x10, 0x01,  # bcdCDC 1.10
                5, CS_INTERFACE, CDC_CALL_MANAGEMENT, 0x00, data,
                4, CS_INTERFACE, CDC_ACM, ACM_CAPABILITIES,
                5, CS_INTERFACE, CDC_UNION, self.number, data,
            ]
        )  # fmt: skip


@dataclasses.dataclass(frozen=True, slots=True)
class DeviceSpec:
    """Everything a device shows on the bus, as data (from ``hw_configs/usb``).

    ``emulation`` names the model that answers its requests (``ft232r``,
    ``cp2102``, ``cdc_acm``); ``adapter`` and ``modem`` name the hw_configs
    profiles it is an instance of.
    """

    name: str
    description: str
    emulation: str
    vid: int
    pid: int
    interfaces: tuple[InterfaceSpec, ...]
    manufacturer: str | None = None
    product: str | None = None
    serial_number: str | None = None
    bcd_usb: int = 0x0200
    bcd_device: int = 0x0100
    device_class: int = 0
    device_subclass: int = 0
    device_protocol: int = 0
    max_packet_size0: int = 64
    speed: Speed = "full"
    configuration_value: int = 1
    configuration_name: str | None = None
    config_attributes: int = 0x80
    max_power_ma: int = 100
    adapter: str | None = None
    modem: str | None = None
    references: tuple[str, ...] = ()
    path: str | None = None

    @property
    def usb_id(self) -> str:
        return f"{self.vid:04x}:{self.pid:04x}"

    def interface(self, number: int) -> InterfaceSpec | None:
        for spec in self.interfaces:
            if spec.number == number:
                return spec
        return None

    def replace(self, **changes: Any) -> DeviceSpec:
        return dataclasses.replace(self, **changes)

    # -- descriptors ------------------------------------------------------------------

    def strings(self) -> list[str]:
        """The string table (index 1 first): manufacturer, product, serial
        number, configuration and interface names, each text once."""
        table: list[str] = []
        for text in (
            self.manufacturer,
            self.product,
            self.serial_number,
            self.configuration_name,
            *(i.name for i in self.interfaces),
        ):
            if text is not None and text not in table:
                table.append(text)
        return table

    def string_index(self, text: str | None) -> int:
        return 0 if text is None else self.strings().index(text) + 1

    def device_descriptor(self) -> bytes:
        return struct.pack(
            "<BBHBBBBHHHBBBB",
            18,
            1,
            self.bcd_usb,
            self.device_class,
            self.device_subclass,
            self.device_protocol,
            self.max_packet_size0,
            self.vid,
            self.pid,
            self.bcd_device,
            self.string_index(self.manufacturer),
            self.string_index(self.product),
            self.string_index(self.serial_number),
            1,
        )

    def configuration_descriptor(self) -> bytes:
        """The configuration descriptor with every interface, class-specific and
        endpoint descriptor after it, as GET_DESCRIPTOR(CONFIGURATION) returns it."""
        body = bytearray()
        for spec in self.interfaces:
            body += struct.pack(
                "<BBBBBBBBB",
                9,
                4,
                spec.number,
                0,
                len(spec.endpoints),
                spec.interface_class,
                spec.interface_subclass,
                spec.interface_protocol,
                self.string_index(spec.name),
            )
            body += spec.class_descriptors()
            for ep in spec.endpoints:
                body += struct.pack(
                    "<BBBBHB", 7, 5, ep.address, ep.attributes, ep.max_packet_size, ep.interval
                )
        header = struct.pack(
            "<BBHBBBBB",
            9,
            2,
            9 + len(body),
            len(self.interfaces),
            self.configuration_value,
            self.string_index(self.configuration_name),
            self.config_attributes,
            self.max_power_ma // 2,
        )
        return header + bytes(body)

    def string_descriptor(self, index: int) -> bytes:
        """String descriptor ``index``; 0 is the language table (US English)."""
        if index == 0:
            return bytes([4, 3, 0x09, 0x04])
        table = self.strings()
        if not 1 <= index <= len(table):
            raise Stall(f"no string {index}")
        encoded = table[index - 1].encode("utf-16-le")[:252]
        return bytes([2 + len(encoded), 3]) + encoded


# -- control requests ----------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class Setup:
    """The setup packet of a control transfer."""

    request_type: int
    request: int
    value: int
    index: int
    length: int

    @property
    def is_in(self) -> bool:
        return bool(self.request_type & 0x80)

    @property
    def kind(self) -> str:
        return ("standard", "class", "vendor", "reserved")[(self.request_type >> 5) & 3]

    @property
    def recipient(self) -> str:
        names = {0: "device", 1: "interface", 2: "endpoint", 3: "other"}
        return names.get(self.request_type & 0x1F, "reserved")

    def __str__(self) -> str:
        return (
            f"bmRequestType=0x{self.request_type:02x} bRequest=0x{self.request:02x} "
            f"wValue=0x{self.value:04x} wIndex=0x{self.index:04x} wLength={self.length}"
        )


# -- devices ------------------------------------------------------------------------------


class VirtualDevice:
    """A device model on a :class:`VirtualBus` (subclassed in :mod:`serialhs.usb.models`).

    The base class keeps the USB side: descriptors, plug state, configuration,
    kernel drivers and claims, and the condition every blocking transfer waits
    on. A model answers class and vendor requests (:meth:`class_request`,
    :meth:`vendor_request`) and moves data (:meth:`bulk_write`,
    :meth:`bulk_read`, :meth:`interrupt_read`); its UART side starts with
    :meth:`start` and stops with :meth:`close`.
    """

    def __init__(self, spec: DeviceSpec) -> None:
        self.spec = spec
        self.name = spec.name
        self.cond = threading.Condition(threading.RLock())
        self.bus: VirtualBus | None = None
        self.address = 0
        self.port_number = 0
        #: denied access: opening fails with LIBUSB_ERROR_ACCESS, as without a udev rule
        self.access_denied = False
        self._generation = 0
        self._plugged = False
        self._configuration = spec.configuration_value
        self._drivers: dict[int, str | None] = {}
        self._claims: dict[int, object] = {}
        self._halted: set[int] = set()

    def __repr__(self) -> str:
        state = f"address {self.address}" if self._plugged else "unplugged"
        return f"<{type(self).__name__} {self.name} {self.spec.usb_id} {state}>"

    # -- lifecycle (the bus calls these) ---------------------------------------------------

    @property
    def plugged(self) -> bool:
        return self._plugged

    @property
    def generation(self) -> int:
        """Changes at every plug and unplug: handles opened before are stale."""
        return self._generation

    def start(self) -> None:
        """Bring the UART side up (wires, emulated modems, threads). Idempotent."""

    def close(self) -> None:
        """Stop the UART side. The device is unplugged first if it is on a bus."""

    def power_on(self) -> None:
        """The device gets power (plug): chip state to its reset values."""

    def power_off(self) -> None:
        """The device loses power (unplug): outputs drop, buffers are lost."""

    def usb_reset(self) -> None:
        """A USB bus reset or a SET_CONFIGURATION: the chip's state to its reset values."""
        self.power_on()

    def _attach(self, bus: VirtualBus, port_number: int, address: int, kernel: bool) -> None:
        with self.cond:
            self.bus = bus
            self.port_number = port_number
            self.address = address
            self._generation += 1
            self._plugged = True
            self._configuration = self.spec.configuration_value
            self._drivers = {
                i.number: (i.kernel_driver if kernel else None) for i in self.spec.interfaces
            }
            self._claims.clear()
            self._halted.clear()
            self.power_on()
            self.cond.notify_all()

    def _detach(self) -> None:
        with self.cond:
            self._generation += 1
            self._plugged = False
            self._claims.clear()
            self.power_off()
            self.cond.notify_all()

    # -- what the backend asks -------------------------------------------------------------

    def kernel_driver(self, interface: int) -> str | None:
        """The kernel driver bound to ``interface`` now (None: detached or none)."""
        with self.cond:
            return self._drivers.get(interface) if self._plugged else None

    def check(self, generation: int) -> None:
        """Raise ENODEV unless the device is plugged in the given generation."""
        if not self._plugged or generation != self._generation:
            raise usb_error(LIBUSB_ERROR_NO_DEVICE, f"{self.name} is not plugged in")

    def wait_until(
        self,
        ready: Callable[[], T | None],
        generation: int,
        deadline: float | None,
        *,
        wake_at: Callable[[], float | None] | None = None,
    ) -> T:
        """Wait (holding :attr:`cond`) until ``ready()`` returns something.

        Raises ENODEV when the device goes away and a timeout error when
        ``deadline`` (a time.monotonic() value, None for no limit) passes.
        ``wake_at`` may name a moment at which ``ready`` should be asked again
        even if nothing notified the condition (a latency timer)."""
        with self.cond:
            while True:
                self.check(generation)
                result = ready()
                if result is not None:
                    return result
                now = time.monotonic()
                if deadline is not None and now >= deadline:
                    raise usb_error(LIBUSB_ERROR_TIMEOUT, f"{self.name}: transfer timed out")
                limit = None if deadline is None else deadline - now
                extra = wake_at() if wake_at is not None else None
                if extra is not None:
                    gap = max(0.0, extra - now)
                    limit = gap if limit is None else min(limit, gap)
                self.cond.wait(timeout=1.0 if limit is None else max(limit, 0.0005))

    def class_request(self, setup: Setup, data: bytes) -> bytes | None:
        """Answer a class request: bytes for an IN request, None for OUT. Stall to refuse."""
        raise Stall(f"class request not supported: {setup}")

    def vendor_request(self, setup: Setup, data: bytes) -> bytes | None:
        """Answer a vendor request: bytes for an IN request, None for OUT. Stall to refuse."""
        raise Stall(f"vendor request not supported: {setup}")

    def bulk_write(self, ep: int, data: bytes, deadline: float | None, generation: int) -> int:
        """Take ``data`` from the host on OUT endpoint ``ep``; return the count taken."""
        self.check(generation)
        return len(data)

    def bulk_read(self, ep: int, size: int, deadline: float | None, generation: int) -> bytes:
        """Up to ``size`` bytes for the host from IN endpoint ``ep``."""
        return self.wait_until(lambda: None, generation, deadline)

    def interrupt_read(self, ep: int, size: int, deadline: float | None, generation: int) -> bytes:
        """The next interrupt packet from IN endpoint ``ep``."""
        return self.wait_until(lambda: None, generation, deadline)

    # -- serial functions: for tests and demos ------------------------------------------------

    def serial_interfaces(self) -> list[int]:
        """The interface numbers that have a UART side."""
        return [i.number for i in self.spec.interfaces if i.uart is not None]

    def wire(self, interface: int | None = None) -> Wire:
        """The virtual wire of a serial interface (default: the first)."""
        raise ConfigError(f"{self.name} has no serial interface with a wire")

    def far_end(self, interface: int | None = None) -> WireEnd:
        """The far end of that wire: where a test opens a Port or drives lines."""
        return self.wire(interface).b


def _deadline(timeout_ms: int) -> float | None:
    """libusb's timeout: 0 means no limit."""
    if timeout_ms <= 0:
        return None
    return time.monotonic() + timeout_ms / 1000.0


# -- the bus --------------------------------------------------------------------------------


class VirtualBus:
    """A set of plugged device models, with a pyusb backend (:attr:`backend`).

    with VirtualBus() as bus:
        ftdi = bus.plug(create_model("ft232r"))
        dev = usb.core.find(idVendor=0x0403, backend=bus.backend)
        bus.unplug(ftdi)      # open handles now fail with ENODEV
        bus.replug(ftdi)      # back at a new address

    Thread-safe: models run their UART sides in threads of their own, and any
    thread may plug or unplug. ``kernel_drivers`` binds the drivers the
    descriptor data names at every plug (as Linux does); without it every
    interface is free.
    """

    def __init__(
        self, *, bus_number: int = VIRTUAL_BUS_NUMBER, kernel_drivers: bool = True
    ) -> None:
        if not 1 <= bus_number <= 255:
            raise ConfigError(f"bus number {bus_number} is out of range 1..255")
        self.bus_number = bus_number
        self.kernel_drivers = kernel_drivers
        self._lock = threading.RLock()
        self._slots: dict[int, VirtualDevice] = {}  # port number -> device
        self._next_address = 2  # 1 is the root hub
        self._closed = False
        self.backend = VirtualBackend(self)
        self.spec: str | None = None  #: the SERIALHS_USB value it was built from, if any

    def __enter__(self) -> VirtualBus:
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<VirtualBus {self.bus_number}: {', '.join(d.name for d in self.models())}>"

    # -- plugging ------------------------------------------------------------------------

    def plug(self, model: VirtualDevice, *, port: int | None = None) -> VirtualDevice:
        """Start ``model`` (if it is not running) and plug it into a free port (or
        ``port``, its old one by default). Returns the model."""
        with self._lock:
            if self._closed:
                raise ConfigError("this virtual bus is closed")
            owner = model.bus
            if owner is not None and owner is not self:
                raise ConfigError(f"{model.name} belongs to another virtual bus")
            if model.plugged:
                return model
            model.start()
            number = port or model.port_number or self._free_port()
            holder = self._slots.get(number)
            if holder is not None and holder is not model:
                raise ConfigError(f"port {number} of bus {self.bus_number} is taken")
            self._slots[number] = model
            address = self._next_address
            self._next_address = 2 if address >= 127 else address + 1
            model._attach(self, number, address, self.kernel_drivers)
        log.info("virtual usb: %s plugged at %s", model.name, self.location(model))
        return model

    def unplug(self, model: VirtualDevice) -> None:
        """Pull ``model`` out: its handles fail with ENODEV, its wire stays."""
        with self._lock:
            if model.bus is not self or not model.plugged:
                return
            model._detach()
        log.info("virtual usb: %s unplugged", model.name)

    def replug(self, model: VirtualDevice, *, delay: float = 0.0) -> None:
        """Unplug and plug back (into the same port, at a new address)."""
        self.unplug(model)
        if delay > 0:
            time.sleep(delay)
        self.plug(model)

    def _free_port(self) -> int:
        number = 1
        while number in self._slots:
            number += 1
        return number

    # -- looking -------------------------------------------------------------------------

    def models(self) -> list[VirtualDevice]:
        """Every model on the bus, plugged or not, by port."""
        with self._lock:
            return [self._slots[n] for n in sorted(self._slots)]

    def plugged(self) -> list[VirtualDevice]:
        return [m for m in self.models() if m.plugged]

    def __getitem__(self, name: str) -> VirtualDevice:
        """The model called ``name`` (``"ft232r"``; a second one ``"ft232r-2"``)."""
        for model in self.models():
            if model.name == name:
                return model
        known = ", ".join(m.name for m in self.models()) or "none"
        raise KeyError(f"no virtual device {name!r} on bus {self.bus_number}; present: {known}")

    def find(self, *, serial_number: str) -> VirtualDevice:
        for model in self.models():
            if model.spec.serial_number == serial_number:
                return model
        raise KeyError(f"no virtual device with serial number {serial_number!r}")

    def location(self, model: VirtualDevice) -> str:
        """``"250-1"``: bus and port, as Linux names devices in sysfs."""
        return f"{self.bus_number}-{model.port_number}"

    def close(self) -> None:
        """Unplug and stop every model."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            models = list(self._slots.values())
        for model in models:
            self.unplug(model)
        for model in models:
            try:
                model.close()
            except Exception:
                log.exception("virtual usb: closing %s failed", model.name)

    @property
    def closed(self) -> bool:
        return self._closed


# -- the pyusb backend ----------------------------------------------------------------------


class _DeviceRef:
    """What enumerate_devices yields: one device in one plug generation."""

    __slots__ = ("address", "device", "generation", "port")

    def __init__(self, device: VirtualDevice) -> None:
        self.device = device
        self.generation = device.generation
        self.address = device.address
        self.port = device.port_number


class _Handle:
    """An open device handle."""

    __slots__ = ("claimed", "closed", "device", "generation")

    def __init__(self, ref: _DeviceRef) -> None:
        self.device = ref.device
        self.generation = ref.generation
        self.claimed: set[int] = set()
        self.closed = False


def _descriptor(**fields: Any) -> SimpleNamespace:
    return SimpleNamespace(**fields)


class VirtualBackend(usb.backend.IBackend):  # type: ignore[misc]  # pyusb has no types
    """pyusb's backend interface over a :class:`VirtualBus` (see the module docstring)."""

    def __init__(self, bus: VirtualBus) -> None:
        super().__init__()
        self.bus = bus

    def __repr__(self) -> str:
        return f"<VirtualBackend bus {self.bus.bus_number}>"

    # -- enumeration and descriptors ---------------------------------------------------------

    def enumerate_devices(self) -> Iterator[_DeviceRef]:
        if self.bus.closed:
            return iter(())
        return iter([_DeviceRef(m) for m in self.bus.plugged()])

    def get_parent(self, dev: _DeviceRef) -> None:
        return None

    def get_device_descriptor(self, dev: _DeviceRef) -> SimpleNamespace:
        spec = dev.device.spec
        return _descriptor(
            bLength=18,
            bDescriptorType=1,
            bcdUSB=spec.bcd_usb,
            bDeviceClass=spec.device_class,
            bDeviceSubClass=spec.device_subclass,
            bDeviceProtocol=spec.device_protocol,
            bMaxPacketSize0=spec.max_packet_size0,
            idVendor=spec.vid,
            idProduct=spec.pid,
            bcdDevice=spec.bcd_device,
            iManufacturer=spec.string_index(spec.manufacturer),
            iProduct=spec.string_index(spec.product),
            iSerialNumber=spec.string_index(spec.serial_number),
            bNumConfigurations=1,
            bus=self.bus.bus_number,
            address=dev.address,
            port_number=dev.port,
            port_numbers=(dev.port,),
            speed=_SPEED_CODES[spec.speed],
        )

    def get_configuration_descriptor(self, dev: _DeviceRef, config: int) -> SimpleNamespace:
        if config != 0:
            raise usb_error(LIBUSB_ERROR_NOT_FOUND, f"no configuration index {config}")
        spec = dev.device.spec
        raw = spec.configuration_descriptor()
        return _descriptor(
            bLength=9,
            bDescriptorType=2,
            wTotalLength=len(raw),
            bNumInterfaces=len(spec.interfaces),
            bConfigurationValue=spec.configuration_value,
            iConfiguration=spec.string_index(spec.configuration_name),
            bmAttributes=spec.config_attributes,
            bMaxPower=spec.max_power_ma // 2,
            extra_descriptors=[],
        )

    def _interface_spec(self, dev: _DeviceRef, intf: int, alt: int, config: int) -> InterfaceSpec:
        if config != 0:
            raise usb_error(LIBUSB_ERROR_NOT_FOUND, f"no configuration index {config}")
        interfaces = dev.device.spec.interfaces
        if not 0 <= intf < len(interfaces):
            raise IndexError(f"Invalid interface index {intf}")
        if alt != 0:
            raise IndexError(f"Invalid alternate setting index {alt}")
        return interfaces[intf]

    def get_interface_descriptor(
        self, dev: _DeviceRef, intf: int, alt: int, config: int
    ) -> SimpleNamespace:
        spec = self._interface_spec(dev, intf, alt, config)
        return _descriptor(
            bLength=9,
            bDescriptorType=4,
            bInterfaceNumber=spec.number,
            bAlternateSetting=0,
            bNumEndpoints=len(spec.endpoints),
            bInterfaceClass=spec.interface_class,
            bInterfaceSubClass=spec.interface_subclass,
            bInterfaceProtocol=spec.interface_protocol,
            iInterface=dev.device.spec.string_index(spec.name),
            extra_descriptors=list(spec.class_descriptors()),
        )

    def get_endpoint_descriptor(
        self, dev: _DeviceRef, ep: int, intf: int, alt: int, config: int
    ) -> SimpleNamespace:
        spec = self._interface_spec(dev, intf, alt, config)
        if not 0 <= ep < len(spec.endpoints):
            raise IndexError(f"Invalid endpoint index {ep}")
        endpoint = spec.endpoints[ep]
        return _descriptor(
            bLength=7,
            bDescriptorType=5,
            bEndpointAddress=endpoint.address,
            bmAttributes=endpoint.attributes,
            wMaxPacketSize=endpoint.max_packet_size,
            bInterval=endpoint.interval,
            bRefresh=0,
            bSynchAddress=0,
            extra_descriptors=[],
        )

    # -- handles ---------------------------------------------------------------------------

    def open_device(self, dev: _DeviceRef) -> _Handle:
        device = dev.device
        with device.cond:
            device.check(dev.generation)
            if device.access_denied:
                raise usb_error(LIBUSB_ERROR_ACCESS, f"{device.name}: access denied")
            return _Handle(dev)

    def close_device(self, dev_handle: _Handle) -> None:
        device = dev_handle.device
        with device.cond:
            if not dev_handle.closed and dev_handle.generation == device.generation:
                for number in dev_handle.claimed:
                    if device._claims.get(number) is dev_handle:
                        del device._claims[number]
            dev_handle.claimed.clear()
            dev_handle.closed = True

    def _live(self, handle: _Handle) -> VirtualDevice:
        device = handle.device
        if handle.closed:
            raise usb_error(LIBUSB_ERROR_NO_DEVICE, "the handle is closed")
        device.check(handle.generation)
        return device

    def set_configuration(self, dev_handle: _Handle, config_value: int) -> None:
        device = self._live(dev_handle)
        with device.cond:
            self._set_configuration(device, dev_handle, config_value)

    def _set_configuration(self, device: VirtualDevice, handle: _Handle, value: int) -> None:
        if value not in (0, -1, device.spec.configuration_value):
            raise usb_error(LIBUSB_ERROR_NOT_FOUND, f"no configuration {value}")
        bound = [n for n, driver in device._drivers.items() if driver]
        if bound:
            raise usb_error(
                LIBUSB_ERROR_BUSY,
                f"{device.name}: interface {bound[0]} is bound to {device._drivers[bound[0]]}",
            )
        others = [n for n, owner in device._claims.items() if owner is not handle]
        if others or handle.claimed:
            raise usb_error(LIBUSB_ERROR_BUSY, f"{device.name}: interfaces are claimed")
        device._configuration = max(value, 0)
        device._halted.clear()
        device.usb_reset()

    def get_configuration(self, dev_handle: _Handle) -> int:
        return self._live(dev_handle)._configuration

    def set_interface_altsetting(self, dev_handle: _Handle, intf: int, altsetting: int) -> None:
        device = self._live(dev_handle)
        with device.cond:
            if intf not in dev_handle.claimed:
                raise usb_error(LIBUSB_ERROR_NOT_FOUND, f"interface {intf} is not claimed")
            if altsetting != 0:
                raise usb_error(LIBUSB_ERROR_NOT_FOUND, f"no alternate setting {altsetting}")

    def claim_interface(self, dev_handle: _Handle, intf: int) -> None:
        device = self._live(dev_handle)
        with device.cond:
            self._claim(device, dev_handle, intf)

    def _claim(self, device: VirtualDevice, handle: _Handle, intf: int) -> None:
        if device._configuration == 0 or device.spec.interface(intf) is None:
            raise usb_error(LIBUSB_ERROR_NOT_FOUND, f"{device.name} has no interface {intf}")
        owner = device._claims.get(intf)
        if owner is handle:
            return
        if owner is not None or device._drivers.get(intf):
            raise usb_error(
                LIBUSB_ERROR_BUSY,
                f"{device.name}: interface {intf} is held by "
                f"{device._drivers.get(intf) or 'another handle'}",
            )
        device._claims[intf] = handle
        handle.claimed.add(intf)

    def release_interface(self, dev_handle: _Handle, intf: int) -> None:
        device = self._live(dev_handle)
        with device.cond:
            if intf not in dev_handle.claimed:
                raise usb_error(LIBUSB_ERROR_NOT_FOUND, f"interface {intf} is not claimed")
            dev_handle.claimed.discard(intf)
            if device._claims.get(intf) is dev_handle:
                del device._claims[intf]

    def is_kernel_driver_active(self, dev_handle: _Handle, intf: int) -> bool:
        device = self._live(dev_handle)
        if device.spec.interface(intf) is None:
            raise usb_error(LIBUSB_ERROR_NOT_FOUND, f"{device.name} has no interface {intf}")
        return bool(device._drivers.get(intf))

    def detach_kernel_driver(self, dev_handle: _Handle, intf: int) -> None:
        device = self._live(dev_handle)
        with device.cond:
            if not device._drivers.get(intf):
                raise usb_error(LIBUSB_ERROR_NOT_FOUND, f"no driver on interface {intf}")
            log.debug("virtual usb: %s: %s detached from interface %d", device.name,
                      device._drivers[intf], intf)  # fmt: skip
            device._drivers[intf] = None

    def attach_kernel_driver(self, dev_handle: _Handle, intf: int) -> None:
        device = self._live(dev_handle)
        with device.cond:
            spec = device.spec.interface(intf)
            if spec is None or spec.kernel_driver is None:
                raise usb_error(LIBUSB_ERROR_NOT_FOUND, f"no kernel driver for interface {intf}")
            if device._drivers.get(intf):
                raise usb_error(LIBUSB_ERROR_BUSY, f"interface {intf} already has its driver")
            if intf in device._claims:
                raise usb_error(LIBUSB_ERROR_BUSY, f"interface {intf} is claimed")
            device._drivers[intf] = spec.kernel_driver

    def reset_device(self, dev_handle: _Handle) -> None:
        device = self._live(dev_handle)
        with device.cond:
            device._halted.clear()
            device.usb_reset()

    def clear_halt(self, dev_handle: _Handle, ep: int) -> None:
        device = self._live(dev_handle)
        with device.cond:
            self._endpoint(device, ep)
            device._halted.discard(ep)

    # -- transfers -----------------------------------------------------------------------

    def _endpoint(self, device: VirtualDevice, address: int) -> tuple[InterfaceSpec, EndpointSpec]:
        for spec in device.spec.interfaces:
            for ep in spec.endpoints:
                if ep.address == address:
                    return spec, ep
        raise usb_error(LIBUSB_ERROR_NOT_FOUND, f"{device.name} has no endpoint 0x{address:02x}")

    def _prepare(
        self, handle: _Handle, address: int, kind: EndpointKind, is_in: bool
    ) -> VirtualDevice:
        device = self._live(handle)
        with device.cond:
            spec, ep = self._endpoint(device, address)
            if ep.is_in != is_in or ep.kind != kind:
                raise usb_error(
                    LIBUSB_ERROR_INVALID_PARAM, f"endpoint 0x{address:02x} is {ep.kind}"
                )
            # usbfs claims an unclaimed interface on first use, as libusb relies on
            self._claim(device, handle, spec.number)
            if address in device._halted:
                raise usb_error(LIBUSB_ERROR_PIPE, f"endpoint 0x{address:02x} is halted")
        return device

    def bulk_write(self, dev_handle: _Handle, ep: int, intf: int, data: Any, timeout: int) -> int:
        device = self._prepare(dev_handle, ep, "bulk", is_in=False)
        payload = _as_bytes(data)
        return device.bulk_write(ep, payload, _deadline(timeout), dev_handle.generation)

    def bulk_read(self, dev_handle: _Handle, ep: int, intf: int, buff: Any, timeout: int) -> int:
        device = self._prepare(dev_handle, ep, "bulk", is_in=True)
        size = _buffer_size(buff)
        received = device.bulk_read(ep, size, _deadline(timeout), dev_handle.generation)
        return _fill(buff, received)

    def intr_write(self, dev_handle: _Handle, ep: int, intf: int, data: Any, timeout: int) -> int:
        self._prepare(dev_handle, ep, "interrupt", is_in=False)
        return len(_as_bytes(data))

    def intr_read(self, dev_handle: _Handle, ep: int, intf: int, buff: Any, timeout: int) -> int:
        device = self._prepare(dev_handle, ep, "interrupt", is_in=True)
        size = _buffer_size(buff)
        received = device.interrupt_read(ep, size, _deadline(timeout), dev_handle.generation)
        return _fill(buff, received)

    def iso_write(self, dev_handle: _Handle, ep: int, intf: int, data: Any, timeout: int) -> int:
        raise usb_error(LIBUSB_ERROR_NOT_SUPPORTED)

    def iso_read(self, dev_handle: _Handle, ep: int, intf: int, buff: Any, timeout: int) -> int:
        raise usb_error(LIBUSB_ERROR_NOT_SUPPORTED)

    def ctrl_transfer(  # noqa: PLR0917  (pyusb calls it with positional arguments)
        self,
        dev_handle: _Handle,
        bmRequestType: int,
        bRequest: int,
        wValue: int,
        wIndex: int,
        data: Any,
        timeout: int,
    ) -> int:
        device = self._live(dev_handle)
        size = _buffer_size(data)
        setup = Setup(bmRequestType & 0xFF, bRequest & 0xFF, wValue & 0xFFFF, wIndex & 0xFFFF, size)
        payload = b"" if setup.is_in else _as_bytes(data)
        try:
            with device.cond:
                device.check(dev_handle.generation)
                if setup.kind == "standard":
                    answer = self._standard(device, dev_handle, setup)
                elif setup.kind == "class":
                    answer = device.class_request(setup, payload)
                elif setup.kind == "vendor":
                    answer = device.vendor_request(setup, payload)
                else:
                    raise Stall("reserved request type")
        except Stall as e:
            raise usb_error(LIBUSB_ERROR_PIPE, f"{device.name} stalls {setup}: {e}") from None
        if setup.is_in:
            return _fill(data, (answer or b"")[:size])
        return len(payload)

    def _standard(self, device: VirtualDevice, handle: _Handle, setup: Setup) -> bytes | None:
        spec = device.spec
        request, value, index = setup.request, setup.value, setup.index
        if setup.is_in:
            if request == 0x06:  # GET_DESCRIPTOR
                kind, number = value >> 8, value & 0xFF
                if kind == 1:
                    return spec.device_descriptor()
                if kind == 2 and number == 0:
                    return spec.configuration_descriptor()
                if kind == 3:
                    return spec.string_descriptor(number)
                raise Stall(f"no descriptor type {kind} index {number}")
            if request == 0x00:  # GET_STATUS
                if setup.recipient == "endpoint":
                    return struct.pack("<H", 1 if index in device._halted else 0)
                self_powered = 1 if spec.config_attributes & 0x40 else 0
                return struct.pack("<H", self_powered if setup.recipient == "device" else 0)
            if request == 0x08:  # GET_CONFIGURATION
                return bytes([device._configuration])
            if request == 0x0A:  # GET_INTERFACE
                if spec.interface(index & 0xFF) is None:
                    raise Stall(f"no interface {index & 0xFF}")
                return b"\x00"
            raise Stall("unknown standard IN request")
        if request == 0x09:  # SET_CONFIGURATION
            self._set_configuration(device, handle, value & 0xFF)
            return None
        if request == 0x0B:  # SET_INTERFACE
            if spec.interface(index & 0xFF) is None or value != 0:
                raise Stall(f"no interface {index & 0xFF} alternate {value}")
            return None
        if request == 0x01 and setup.recipient == "endpoint":  # CLEAR_FEATURE(ENDPOINT_HALT)
            device._halted.discard(index & 0xFF)
            return None
        if request in (0x01, 0x03) and setup.recipient == "device":  # remote wake-up
            return None
        raise Stall("unknown standard OUT request")


def _as_bytes(data: Any) -> bytes:
    if data is None:
        return b""
    if isinstance(data, array.array):
        return data.tobytes()
    return bytes(data)


def _buffer_size(buff: Any) -> int:
    if buff is None:
        return 0
    if isinstance(buff, array.array):
        return len(buff) * buff.itemsize
    return len(buff)


def _fill(buff: Any, data: bytes) -> int:
    """Copy ``data`` to the start of the caller's buffer; return the count."""
    if not data:
        return 0
    view = memoryview(buff).cast("B")
    count = min(len(data), len(view))
    view[:count] = data[:count]
    return count


# -- choosing a backend ---------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class EnvDevice:
    """One device of a ``SERIALHS_USB=virtual:...`` value: ``name[@far]``."""

    model: str
    far: str | None = None  #: None, "wire" or "modem:<profile>"


@dataclasses.dataclass(frozen=True, slots=True)
class EnvChoice:
    """A parsed ``SERIALHS_USB`` value."""

    kind: Literal["virtual", "libusb", "none"]
    devices: tuple[EnvDevice, ...] = ()


def parse_env(value: str | None) -> EnvChoice:
    """Read a ``SERIALHS_USB`` value (unset or empty: libusb)."""
    text = (value or "").strip()
    if not text or text.lower() in ("libusb", "libusb1", "real"):
        return EnvChoice("libusb")
    if text.lower() in ("none", "off", "0"):
        return EnvChoice("none")
    kind, sep, rest = text.partition(":")
    if kind.strip().lower() != "virtual" or not sep:
        raise ConfigError(
            f"{ENV_VAR}={value!r} is not understood; use virtual:MODEL[,MODEL...] "
            "(models from hw_configs/usb, e.g. virtual:ft232r,cp2102,cdc_modem), libusb or none"
        )
    devices: list[EnvDevice] = []
    for item in rest.split(","):
        name, _, far = item.strip().partition("@")
        if not name:
            continue
        far = far.strip()
        if far and far not in {"wire", "modem"} and not far.startswith("modem:"):
            raise ConfigError(
                f"{ENV_VAR}: {item.strip()!r}: after @ give wire, modem or modem:<profile>"
            )
        devices.append(EnvDevice(name.strip(), far or None))
    if not devices:
        raise ConfigError(f"{ENV_VAR}={value!r} names no virtual devices")
    return EnvChoice("virtual", tuple(devices))


_env_lock = threading.Lock()
_env_bus: VirtualBus | None = None


def _build_env_bus(spec: str, choice: EnvChoice) -> VirtualBus:
    from serialhs.usb.models import create_model  # noqa: PLC0415  (models import this module)

    bus = VirtualBus()
    bus.spec = spec
    counts: dict[str, int] = {}
    try:
        for item in choice.devices:
            counts[item.model] = counts.get(item.model, 0) + 1
            bus.plug(create_model(item.model, far=item.far, instance=counts[item.model]))
    except BaseException:
        bus.close()
        raise
    return bus


def env_bus() -> VirtualBus | None:
    """The process-wide virtual bus ``SERIALHS_USB=virtual:...`` asks for (built on
    first use, rebuilt when the variable changes), or None when it asks for none."""
    global _env_bus  # noqa: PLW0603  (one bus per process, as there is one real USB)
    spec = os.environ.get(ENV_VAR, "")
    choice = parse_env(spec)
    with _env_lock:
        if _env_bus is not None and (_env_bus.spec != spec or _env_bus.closed):
            _env_bus.close()
            _env_bus = None
        if choice.kind != "virtual":
            return None
        if _env_bus is None:
            _env_bus = _build_env_bus(spec, choice)
        return _env_bus


def reset_env_bus() -> None:
    """Close the process-wide virtual bus; the next :func:`env_bus` builds a new one."""
    global _env_bus
    with _env_lock:
        bus, _env_bus = _env_bus, None
    if bus is not None:
        bus.close()


atexit.register(reset_env_bus)


def backend_from_env() -> VirtualBackend | None:
    """The backend of :func:`env_bus`, or None when ``SERIALHS_USB`` is not virtual."""
    bus = env_bus()
    return None if bus is None else bus.backend


def _libusb_backend() -> Any | None:
    import usb.backend.libusb1  # noqa: PLC0415  (loads the shared library on first use)

    return usb.backend.libusb1.get_backend()


def get_backend() -> Any | None:
    """The pyusb backend serialhs uses: the virtual bus when ``SERIALHS_USB`` says
    ``virtual:...``, libusb 1.0 otherwise, or None when there is none (no libusb
    library, or ``SERIALHS_USB=none``); :func:`backend_unavailable_reason` says why."""
    choice = parse_env(os.environ.get(ENV_VAR))
    if choice.kind == "virtual":
        return backend_from_env()
    if choice.kind == "none":
        return None
    return _libusb_backend()


def backend_unavailable_reason() -> str:
    """Why :func:`get_backend` gives None, in words a user can act on."""
    try:
        choice = parse_env(os.environ.get(ENV_VAR))
    except ConfigError as e:
        return str(e)
    if choice.kind == "none":
        return f"USB access is switched off ({ENV_VAR}=none)"
    if choice.kind == "virtual":
        return "the virtual USB bus could not be built"
    import usb.libloader  # noqa: PLC0415

    try:
        found = usb.libloader.locate_library(("usb-1.0", "libusb-1.0", "usb"))
    except Exception:
        found = None
    if not found:
        return (
            "libusb-1.0 not found: install it (Debian/Ubuntu: apt install libusb-1.0-0; "
            "Fedora: dnf install libusb1; macOS: brew install libusb)"
        )
    return (
        f"libusb-1.0 ({found}) is installed but could not be initialised "
        "(is /dev/bus/usb available, for instance inside a container?)"
    )


def is_virtual(backend: Any) -> bool:
    """True for a :class:`VirtualBackend`."""
    return isinstance(backend, VirtualBackend)


def plugged_models(backend: Any) -> Sequence[VirtualDevice]:
    """The models on a virtual backend's bus (empty for any other backend)."""
    if isinstance(backend, VirtualBackend):
        return backend.bus.plugged()
    return ()


@contextlib.contextmanager
def temporary_bus(*models: VirtualDevice, kernel_drivers: bool = True) -> Iterator[VirtualBus]:
    """A bus with ``models`` plugged, closed (models stopped) on exit."""
    bus = VirtualBus(kernel_drivers=kernel_drivers)
    try:
        for model in models:
            bus.plug(model)
        yield bus
    finally:
        bus.close()
