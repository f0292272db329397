"""``usb://`` ports: USB-serial devices driven from user space through pyusb.

Importing this module registers the URL scheme with pyserial, so that any
pyserial user -- and a serialhs :class:`~serialhs.driver.port.Port` -- can open
one::

    import serial
    import serialhs.usb.urlhandler  # noqa: F401  (registers usb://)

    s = serial.serial_for_url("usb://0403:6001?serial=A50285BI", baudrate=115200)

The URL::

    usb://[VID:PID][?serial=SN][&interface=N][&chip=NAME]

- ``VID:PID`` -- the USB vendor and product id in hex (``0403:6001``). May be
  left out when ``serial`` is given (``usb://?serial=A50285BI``): any device
  with that serial number.
- ``serial`` -- the device's serial number string; picks one of several
  identical adapters and survives re-enumeration (see
  :mod:`serialhs.usb.reenumerate`).
- ``interface`` -- the USB interface number (bInterfaceNumber). Default: for
  a cellular modem with a profile in hw_configs/modems, the interface whose
  role is ``at``; for a CDC-ACM device, its first Abstract Control Model
  function; otherwise interface 0.
- ``chip`` -- the chip family or model (``ftdi``, ``ft232r``, ``ft232h``,
  ``cp210x``, ``cp2102``, ``cp2102n``, ``cdc_acm``). Default: inferred from the
  VID:PID through hw_configs/adapters and hw_configs/modems, else from the
  device's interface classes.

Every driver is a pyserial :class:`~serial.serialutil.SerialBase` subclass
built on :class:`UsbSerial`, which holds what the chips share: finding the
device, detaching the kernel driver (and re-attaching it on close), claiming
the interface, background reader threads for the bulk-in (and interrupt-in)
endpoints filling a bounded receive buffer, reads that honour pyserial's
timeouts, and error mapping:

- a permission error becomes :class:`~serialhs.errors.PortPermissionError`
  naming the device node (``/dev/bus/usb/BBB/DDD``) and the udev rule;
- a device that disappears (ENODEV, LIBUSB_ERROR_NO_DEVICE) raises a
  :class:`~serial.SerialException` with errno ENODEV, which serialhs's
  :func:`~serialhs.driver.port.map_error` turns into
  :class:`~serialhs.errors.PortDisconnectedError`; bytes received before the
  loss are still read first;
- no matching device raises a SerialException with errno ENOENT
  (PortNotFoundError through a Port).

The devices come from :func:`serialhs.usb.virtual.get_backend`: pyusb's libusb
backend, or the virtual backend when ``SERIALHS_USB=virtual:...`` is set.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import importlib
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar
from urllib.parse import parse_qs, urlencode, urlsplit

import serial
import usb.core
import usb.util
from serial.serialutil import (
    PortNotOpenError,
    SerialBase,
    SerialException,
    SerialTimeoutException,
    to_bytes,
)

from serialhs.errors import PortPermissionError, SettingsError

__all__ = [
    "CHIP_NAMES",
    "HANDLER_PACKAGE",
    "SCHEME",
    "LineErrors",
    "UsbSerial",
    "UsbUrl",
    "chip_family",
    "device_node",
    "find_device",
    "register",
    "serial_class_for_url",
]

log = logging.getLogger("serialhs.usb")

#: The URL scheme.
SCHEME = "usb"
#: The package pyserial searches for ``protocol_usb`` (see :func:`register`).
HANDLER_PACKAGE = "serialhs.usb"

#: Timeout of one control transfer, in milliseconds.
CONTROL_TIMEOUT_MS = 1000
#: How long one bulk/interrupt read waits before the reader thread checks
#: whether it should stop, in milliseconds.
READ_POLL_MS = 50
#: How long one bulk write waits before the writer checks its deadline.
WRITE_POLL_MS = 100
#: Largest piece handed to one bulk write.
WRITE_CHUNK = 16384
#: Default bound of the receive buffer. When it is full the reader stops taking
#: packets from the device (the chip's own buffer and flow control take over)
#: instead of dropping bytes.
DEFAULT_MAX_BUFFER = 1 << 20
#: Longest wait for a reader thread to stop on close, in seconds.
JOIN_TIMEOUT = 2.0

#: Chip names the ``chip=`` parameter accepts, and the driver family of each.
CHIP_NAMES: dict[str, str] = {
    "ftdi": "ftdi",
    "ft232r": "ftdi",
    "ft232bm": "ftdi",
    "ft232h": "ftdi",
    "ft230x": "ftdi",
    "ft231x": "ftdi",
    "cp210x": "cp210x",
    "cp2102": "cp210x",
    "cp2102n": "cp210x",
    "cp2104": "cp210x",
    "cdc_acm": "cdc_acm",
    "cdc": "cdc_acm",
    "acm": "cdc_acm",
}

# libusb's error codes, for backends that give no errno.
_LIBUSB_ACCESS = -3
_LIBUSB_NO_DEVICE = -4
_LIBUSB_BUSY = -6

T = TypeVar("T")


def register() -> None:
    """Make pyserial's ``serial_for_url`` know ``usb://`` (idempotent).

    pyserial imports ``<package>.protocol_<scheme>`` for each package in
    ``serial.protocol_handler_packages``; this adds ``serialhs.usb``, whose
    ``protocol_usb`` module answers for ``usb://``.
    """
    if HANDLER_PACKAGE not in serial.protocol_handler_packages:
        serial.protocol_handler_packages.append(HANDLER_PACKAGE)


# --- the URL -----------------------------------------------------------------------------


def _hex16(text: str, what: str) -> int:
    body = text.strip().lower().removeprefix("0x")
    if not body or len(body) > 4 or any(c not in "0123456789abcdef" for c in body):
        raise ValueError(f"{what} must be a 16-bit hex number such as 0403, not {text!r}")
    return int(body, 16)


@dataclass(frozen=True)
class UsbUrl:
    """A parsed ``usb://`` URL (see the module docstring)."""

    vid: int | None = None
    pid: int | None = None
    serial: str | None = None
    interface: int | None = None
    chip: str | None = None

    OPTIONS: ClassVar[tuple[str, ...]] = ("serial", "interface", "chip")

    @classmethod
    def parse(cls, url: str) -> UsbUrl:
        """Parse ``url``; a ValueError says what is wrong with it."""
        parts = urlsplit(url)
        if parts.scheme.lower() != SCHEME:
            raise ValueError(f"not a {SCHEME}:// URL: {url!r}")
        if parts.path not in ("", "/"):
            raise ValueError(
                f"unexpected path {parts.path!r} in {url!r}; "
                "expected usb://VID:PID?serial=...&interface=N&chip=NAME"
            )
        vid = pid = None
        if parts.netloc:
            left, sep, right = parts.netloc.partition(":")
            if not sep:
                raise ValueError(f"expected VID:PID such as 0403:6001, not {parts.netloc!r}")
            vid = _hex16(left, "the vendor id")
            pid = _hex16(right, "the product id")
        options: dict[str, str] = {}
        for key, values in parse_qs(parts.query, keep_blank_values=True).items():
            name = key.lower()
            if name not in cls.OPTIONS:
                raise ValueError(
                    f"unknown option {key!r} in {url!r}; known: {', '.join(cls.OPTIONS)}"
                )
            if len(values) != 1 or not values[0]:
                raise ValueError(f"option {key!r} needs exactly one non-empty value")
            options[name] = values[0]
        interface = None
        if "interface" in options:
            try:
                interface = int(options["interface"], 0)
            except ValueError:
                raise ValueError(
                    f"interface must be a number, not {options['interface']!r}"
                ) from None
            if not 0 <= interface <= 255:
                raise ValueError(f"interface {interface} is out of range 0-255")
        chip = options.get("chip")
        if chip is not None:
            chip = chip.lower().replace("-", "_")
            if chip not in CHIP_NAMES:
                raise ValueError(f"unknown chip {chip!r}; known: {', '.join(sorted(CHIP_NAMES))}")
        if vid is None and "serial" not in options:
            raise ValueError(
                f"{url!r} names no device: give VID:PID (usb://0403:6001) and/or "
                "a serial number (usb://?serial=A50285BI)"
            )
        return cls(vid, pid, options.get("serial"), interface, chip)

    @property
    def usb_id(self) -> str | None:
        if self.vid is None or self.pid is None:
            return None
        return f"{self.vid:04x}:{self.pid:04x}"

    def __str__(self) -> str:
        query = {
            k: v
            for k, v in (
                ("serial", self.serial),
                ("interface", None if self.interface is None else str(self.interface)),
                ("chip", self.chip),
            )
            if v is not None
        }
        tail = f"?{urlencode(query)}" if query else ""
        return f"{SCHEME}://{self.usb_id or ''}{tail}"


# --- finding devices ---------------------------------------------------------------------


def _backend() -> Any:
    """The pyusb backend serialhs uses (virtual when SERIALHS_USB says so).

    Raises SerialException saying why when there is none (no libusb library,
    SERIALHS_USB=none): pyusb would otherwise pick a backend of its own.
    """
    virtual = importlib.import_module("serialhs.usb.virtual")
    try:
        backend = virtual.get_backend()
    except usb.core.NoBackendError:
        backend = None
    if backend is None:
        raise SerialException(f"no USB access: {virtual.backend_unavailable_reason()}")
    return backend


def device_node(device: Any) -> str:
    """The device's usbfs node, ``/dev/bus/usb/BBB/DDD`` (what udev rules give access to)."""
    bus = getattr(device, "bus", None)
    address = getattr(device, "address", None)
    if bus is None or address is None:
        return "/dev/bus/usb/?/?"
    return f"/dev/bus/usb/{int(bus):03d}/{int(address):03d}"


def _label(device: Any) -> str:
    vid = getattr(device, "idVendor", 0)
    pid = getattr(device, "idProduct", 0)
    return f"{vid:04x}:{pid:04x} at {device_node(device)}"


def _no_access(device: Any) -> bool:
    """True when the device's node exists and this process may not open it."""
    node = device_node(device)
    return os.path.exists(node) and not os.access(node, os.R_OK | os.W_OK)


def permission_error(
    device: Any, url: str, operation: str, cause: BaseException | None = None
) -> PortPermissionError:
    """The error for a device this process may not open, naming its node and the fix."""
    node = device_node(device)
    detail = f" ({cause})" if cause is not None else ""
    return PortPermissionError(
        f"no permission to use the USB device {node}{detail}",
        port=url,
        operation=operation,
        hint="install the udev rule that 'serialhs udev-rules' prints "
        "(to /etc/udev/rules.d/70-serialhs.rules, then 'udevadm control --reload' and "
        "replug), and make sure your user is in the 'dialout' group",
    )


def _access_problem(device: Any, error: BaseException) -> BaseException | None:
    """The permission error behind a failure to read a device's strings, or None.

    pyusb turns a refused open into "The device has no langid" (a ValueError);
    asking for the language table directly brings the USBError with EACCES out.
    """
    if getattr(error, "errno", None) in (errno.EACCES, errno.EPERM):
        return error
    if _no_access(device):
        return error
    try:
        device.ctrl_transfer(0x80, 0x06, 0x0300, 0, 255, CONTROL_TIMEOUT_MS)
    except usb.core.USBError as e:
        if e.errno in (errno.EACCES, errno.EPERM):
            refused: BaseException = e
            return refused
    except (ValueError, NotImplementedError):
        pass
    return None


def _serial_number(device: Any) -> str | None:
    """The device's serial number string; raises (USBError, ValueError) when unreadable."""
    if not getattr(device, "iSerialNumber", 0):
        return None
    value = device.serial_number
    return None if value is None else str(value)


def list_devices(url: UsbUrl) -> list[Any]:
    """Every device with the URL's VID:PID (every device at all when it has none)."""
    ids: dict[str, int] = {}
    if url.vid is not None and url.pid is not None:
        ids = {"idVendor": url.vid, "idProduct": url.pid}
    backend = _backend()
    try:
        return list(usb.core.find(find_all=True, backend=backend, **ids))
    except usb.core.USBError as e:
        if e.errno in (errno.EACCES, errno.EPERM):
            raise PortPermissionError(
                f"no permission to list USB devices ({e})",
                port=str(url),
                operation="open",
                hint="check the permissions of /dev/bus/usb",
            ) from e
        raise SerialException(f"cannot list USB devices for {url}: {e}") from e


def find_device(url: UsbUrl, *, operation: str = "open") -> Any:
    """The pyusb device the URL names.

    Raises SerialException with errno ENOENT when none matches, and
    PortPermissionError when a candidate's serial number could not be read for
    lack of permission (so that no device matched only because of that).
    """
    devices = list_devices(url)
    if url.serial is None:
        if not devices:
            raise SerialException(
                errno.ENOENT, f"no USB device {url.usb_id} is plugged in ({_present(url)})"
            )
        if len(devices) > 1:
            serials = []
            for device in devices:
                try:
                    serials.append(_serial_number(device) or "?")
                except (usb.core.USBError, ValueError):
                    serials.append("?")
            _dispose(devices[1:])
            log.warning(
                "%s: %d devices match; using the first. Add ?serial=... to choose "
                "(serial numbers: %s)",
                url,
                len(devices),
                ", ".join(serials),
            )
        return devices[0]
    refused: list[tuple[Any, BaseException]] = []
    for device in devices:
        try:
            number = _serial_number(device)
        except (usb.core.USBError, ValueError) as e:
            cause = _access_problem(device, e)
            if cause is not None:
                refused.append((device, cause))
            else:
                log.debug("%s: cannot read the serial number of %s: %s", url, _label(device), e)
            continue
        if number == url.serial:
            _dispose(d for d in devices if d is not device)
            return device
    _dispose(devices)
    if refused:
        device, cause = refused[0]
        raise permission_error(device, str(url), operation, cause)
    raise SerialException(
        errno.ENOENT,
        f"no USB device with serial number {url.serial!r}"
        + (f" and id {url.usb_id}" if url.usb_id else "")
        + f" is plugged in ({_present(url)})",
    )


def _dispose(devices: Iterable[Any]) -> None:
    """Close the handles pyusb opened to read strings of devices not used."""
    for device in devices:
        try:
            usb.util.dispose_resources(device)
        except (usb.core.USBError, ValueError) as e:
            log.debug("releasing %s: %s", _label(device), e)


def _present(url: UsbUrl) -> str:
    """What is plugged in, for a not-found message."""
    try:
        devices = list(usb.core.find(find_all=True, backend=_backend()))
    except Exception:  # a hint must never hide the real error
        return "could not list USB devices"
    if not devices:
        return "no USB devices found"
    shown = []
    for device in devices[:12]:
        try:
            number = _serial_number(device)
        except (usb.core.USBError, ValueError):
            number = None
        text = f"{device.idVendor:04x}:{device.idProduct:04x}"
        shown.append(f"{text} serial={number}" if number else text)
    _dispose(devices)
    more = f", {len(devices) - 12} more" if len(devices) > 12 else ""
    return "present: " + ", ".join(shown) + more


# --- which driver -------------------------------------------------------------------------


@functools.lru_cache(maxsize=8)
def _profiles(dirs: tuple[str, ...]) -> tuple[tuple[Any, ...], tuple[Any, ...]]:
    from pathlib import Path  # noqa: PLC0415

    from serialhs.hwconfig import load_adapter_profiles  # noqa: PLC0415
    from serialhs.modem.profile import load_modem_profiles  # noqa: PLC0415

    paths = [Path(d) for d in dirs]
    return tuple(load_adapter_profiles(paths)), tuple(load_modem_profiles(paths))


def profiles() -> tuple[tuple[Any, ...], tuple[Any, ...]]:
    """(adapter profiles, modem profiles) from the hw_configs search path."""
    from serialhs.hwconfig import config_dirs  # noqa: PLC0415

    return _profiles(tuple(str(d) for d in config_dirs()))


def modem_profile_for(vid: int, pid: int) -> Any:
    """The modem profile whose USB id is vid:pid, or None."""
    for modem in profiles()[1]:
        if modem.usb is not None and (modem.usb.vid, modem.usb.pid) == (vid, pid):
            return modem
    return None


def chip_family(chip: str) -> str:
    """The driver family (``ftdi``, ``cp210x``, ``cdc_acm``) of a chip or profile name."""
    name = chip.lower().replace("-", "_")
    family = CHIP_NAMES.get(name)
    if family is None:
        raise ValueError(
            f"no user-space driver for {chip}: serialhs drives FTDI, CP210x and "
            "CDC-ACM devices over USB; open the kernel's tty for it (/dev/ttyUSBn) instead"
        )
    return family


def family_for_ids(vid: int, pid: int, product: str | None = None) -> tuple[str, str] | None:
    """(family, chip) for a USB id from hw_configs, or None when it takes the device to tell."""
    from serialhs.driver.discovery import match_profile  # noqa: PLC0415

    adapters, _ = profiles()
    by_id = [p for p in adapters if p.vid is not None and (p.vid, p.pid) == (vid, pid)]
    if by_id:
        profile = match_profile(vid, pid, product=product, profiles=by_id) or by_id[0]
        return chip_family(profile.chip), profile.chip.lower().replace("-", "_")
    if modem_profile_for(vid, pid) is not None:
        return "cdc_acm", "cdc_acm"
    return None


def family_for_device(device: Any) -> tuple[str, str] | None:
    """(family, chip) from the device: its id, its product string, its interface classes."""
    product = None
    try:
        product = device.product if getattr(device, "iProduct", 0) else None
    except (usb.core.USBError, ValueError):
        product = None
    known = family_for_ids(device.idVendor, device.idProduct, product)
    if known is not None:
        return known
    try:
        for cfg in device:
            for intf in cfg:
                if (intf.bInterfaceClass, intf.bInterfaceSubClass) == (0x02, 0x02):
                    return "cdc_acm", "cdc_acm"
    except usb.core.USBError:
        return None
    return None


def _driver_class(family: str) -> type[UsbSerial]:
    module = {
        "ftdi": "serialhs.usb.ftdi",
        "cp210x": "serialhs.usb.cp210x",
        "cdc_acm": "serialhs.usb.cdcacm",
    }[family]
    cls: type[UsbSerial] = importlib.import_module(module).DRIVER
    return cls


def serial_class_for_url(url: str) -> tuple[str, type[UsbSerial]]:
    """pyserial's hook: the driver class for ``url`` (chosen by the chip family).

    The family comes from ``chip=``, else from hw_configs by VID:PID, else from
    the device itself. When that needs a device that is not plugged in,
    :class:`UsbSerial` itself is returned; its ``open()`` looks again.
    """
    parsed = UsbUrl.parse(url)
    if parsed.chip is not None:
        return url, _driver_class(chip_family(parsed.chip))
    if parsed.vid is not None and parsed.pid is not None:
        known = family_for_ids(parsed.vid, parsed.pid)
        if known is not None:
            return url, _driver_class(known[0])
    return url, UsbSerial


# --- the shared driver --------------------------------------------------------------------


@dataclass
class LineErrors:
    """Receive errors a chip reported. Each is also logged as it happens."""

    overrun: int = 0
    parity: int = 0
    framing: int = 0
    breaks: int = 0

    def total(self) -> int:
        return self.overrun + self.parity + self.framing + self.breaks


@dataclass
class _Endpoints:
    bulk_in: Any = None
    bulk_out: Any = None
    interrupt_in: Any = None
    in_packet: int = 64
    interfaces: list[int] = field(default_factory=list)


class UsbSerial(SerialBase):  # type: ignore[misc]  # pyserial is untyped
    """The shared part of the user-space USB drivers (see the module docstring).

    Subclasses fill in :meth:`_setup` (interfaces, endpoints, chip reset),
    :meth:`_reconfigure_port`, the line and break updates, the modem-status
    properties, and :meth:`_received` when the bulk-in stream carries more than
    data (FTDI's status bytes). Extra attributes over pyserial's:

    ``usb_device`` (the pyusb device), ``device_node`` (/dev/bus/usb/BBB/DDD),
    ``serial_number``, ``chip`` (the model in use), ``actual_baudrate`` (the
    rate the chip really runs at), ``line_errors`` (:class:`LineErrors`) and
    ``max_buffer`` (bound of the receive buffer, bytes).
    """

    family: ClassVar[str] = "usb"
    is_open: bool
    BAUDRATES = (
        300, 600, 1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200, 230400,
        460800, 921600,
    )  # fmt: skip

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.max_buffer = DEFAULT_MAX_BUFFER
        self.usb_device: Any = None
        self.chip: str = self.family
        self.actual_baudrate: int | None = None
        self.line_errors = LineErrors()
        self._url: UsbUrl | None = None
        self._ep = _Endpoints()
        self._detached: list[int] = []
        self._claimed: list[int] = []
        self._rx = bytearray()
        self._rx_cond = threading.Condition()
        self._failure: tuple[int | None, str] | None = None
        self._stop = threading.Event()
        self._cancel = False
        self._threads: list[threading.Thread] = []
        self._ctrl_lock = threading.Lock()
        self._good: dict[str, Any] | None = None
        super().__init__(*args, **kwargs)

    # -- identity -------------------------------------------------------------------

    @property
    def device_node(self) -> str | None:
        return None if self.usb_device is None else device_node(self.usb_device)

    @property
    def serial_number(self) -> str | None:
        if self.usb_device is None:
            return None
        try:
            return _serial_number(self.usb_device)
        except (usb.core.USBError, ValueError):
            return None

    @property
    def url(self) -> UsbUrl | None:
        return self._url

    def _where(self) -> str:
        node = self.device_node
        return f"{self._port} ({node})" if node else str(self._port)

    # -- open and close -------------------------------------------------------------

    def open(self) -> None:
        if self._port is None:
            raise SerialException("Port must be configured before it can be used.")
        if self.is_open:
            raise SerialException("Port is already open.")
        try:
            url = UsbUrl.parse(self._port)
        except ValueError as e:
            raise SerialException(f"cannot open {self._port!r}: {e}") from e
        device = find_device(url)
        if type(self) is UsbSerial:
            self._become_driver(url, device)
        self._url = url
        self.usb_device = device
        self._failure = None
        self._cancel = False
        self._stop.clear()
        with self._rx_cond:
            self._rx.clear()
        self.line_errors = LineErrors()
        self._good = None
        try:
            self._setup(device, url)
            self._reconfigure_port()
            self.is_open = True
            if not self._dsrdtr:
                self._update_dtr_state()
            if not self._rtscts:
                self._update_rts_state()
            self.reset_input_buffer()
            self._start_readers()
        except BaseException:
            self.is_open = False
            self._teardown()
            raise
        log.debug("opened %s as %s", self._where(), self.chip)

    def _become_driver(self, url: UsbUrl, device: Any) -> None:
        """Take the class of the driver for ``device`` (when the URL could not tell)."""
        try:
            known = family_for_device(device)
        except ValueError as e:  # a chip without a user-space driver (CH340, ...)
            raise SerialException(f"cannot open {url}: {e}") from e
        if known is None:
            raise SerialException(
                f"cannot tell which chip {_label(device)} has; add chip=ftdi, chip=cp210x "
                f"or chip=cdc_acm to {url}"
            )
        self.__class__ = _driver_class(known[0])

    def close(self) -> None:
        was_open = self.is_open
        self.is_open = False
        if was_open or self.usb_device is not None:
            try:
                if was_open and self._failure is None:
                    self._chip_close()
            except (SerialException, usb.core.USBError, ValueError) as e:
                log.debug("closing %s: %s", self._where(), e)
            self._teardown()

    def _teardown(self) -> None:
        """Stop the readers, release the interfaces, give them back to the kernel."""
        self._stop.set()
        with self._rx_cond:
            self._rx_cond.notify_all()
        for thread in self._threads:
            if thread is not threading.current_thread():
                thread.join(JOIN_TIMEOUT)
        self._threads = []
        device = self.usb_device
        if device is None:
            return
        if self._failure is not None and self._failure[0] == errno.ENODEV:
            # The device is gone: nothing to release, nothing to give back.
            self._claimed = []
            self._detached = []
        for number in self._claimed:
            try:
                usb.util.release_interface(device, number)
            except (usb.core.USBError, ValueError) as e:
                log.debug("releasing interface %d of %s: %s", number, self._where(), e)
        for number in self._detached:
            try:
                device.attach_kernel_driver(number)
            except NotImplementedError:
                pass
            except (usb.core.USBError, ValueError) as e:
                log.warning(
                    "%s: could not give interface %d back to its kernel driver: %s",
                    self._where(),
                    number,
                    e,
                )
        self._claimed = []
        self._detached = []
        try:
            usb.util.dispose_resources(device)
        except (usb.core.USBError, ValueError) as e:
            log.debug("disposing %s: %s", self._where(), e)
        self.usb_device = None

    # -- for subclasses -------------------------------------------------------------

    def _setup(self, device: Any, url: UsbUrl) -> None:
        raise NotImplementedError

    def _chip_close(self) -> None:
        """Leave the chip tidy before the interfaces are released."""

    def _received(self, data: bytes) -> None:
        """A bulk-in transfer arrived (subclasses strip headers here)."""
        self._deliver(data)

    def _poll(self) -> None:
        """Called by the bulk reader between reads (CP210x polls errors here)."""

    def _configuration(self, device: Any) -> Any:
        """The active configuration, setting the first one if none is set."""
        try:
            return self._usb("read the configuration of", device.get_active_configuration)
        except SerialException as e:
            if getattr(e, "errno", None) == errno.ENODEV:
                raise
        self._usb("configure", device.set_configuration)
        return self._usb("read the configuration of", device.get_active_configuration)

    def _claim(self, device: Any, numbers: Iterable[int]) -> None:
        """Detach any kernel driver from the interfaces and claim them."""
        for number in numbers:
            if number in self._claimed:
                continue
            try:
                active = bool(
                    self._usb("check the kernel driver of", device.is_kernel_driver_active, number)
                )
            except NotImplementedError:
                active = False
            if active:
                try:
                    self._usb("detach the kernel driver from", device.detach_kernel_driver, number)
                    self._detached.append(number)
                    log.info(
                        "%s: detached the kernel driver from interface %d", self._where(), number
                    )
                except NotImplementedError:
                    pass
            self._usb("claim", usb.util.claim_interface, device, number)
            self._claimed.append(number)

    @staticmethod
    def _find_endpoint(intf: Any, direction: int, kind: int) -> Any:
        for ep in intf:
            if (
                usb.util.endpoint_direction(ep.bEndpointAddress) == direction
                and usb.util.endpoint_type(ep.bmAttributes) == kind
            ):
                return ep
        return None

    def _bulk_pair(self, intf: Any) -> tuple[Any, Any]:
        ep_in = self._find_endpoint(intf, usb.util.ENDPOINT_IN, usb.util.ENDPOINT_TYPE_BULK)
        ep_out = self._find_endpoint(intf, usb.util.ENDPOINT_OUT, usb.util.ENDPOINT_TYPE_BULK)
        if ep_in is None or ep_out is None:
            raise SerialException(
                f"{self._where()}: interface {intf.bInterfaceNumber} has no bulk IN/OUT "
                "endpoint pair; give the data interface with ?interface=N"
            )
        return ep_in, ep_out

    def _setup_single(self, device: Any, url: UsbUrl) -> int:
        """Take the one interface of a single-interface UART (the one the URL
        names, else the lowest): its bulk pair, claimed. Returns its number."""
        cfg = self._configuration(device)
        number = url.interface
        if number is None:
            number = min(intf.bInterfaceNumber for intf in cfg)
        intf = self._interface(cfg, number)
        ep_in, ep_out = self._bulk_pair(intf)
        self._ep = _Endpoints(
            bulk_in=ep_in,
            bulk_out=ep_out,
            in_packet=int(ep_in.wMaxPacketSize) & 0x7FF,
            interfaces=[number],
        )
        self._claim(device, [number])
        return number

    def _interface(self, cfg: Any, number: int) -> Any:
        for intf in cfg:
            if intf.bInterfaceNumber == number and intf.bAlternateSetting == 0:
                return intf
        present = sorted({i.bInterfaceNumber for i in cfg})
        raise SerialException(
            f"{self._where()}: the device has no interface {number} "
            f"(it has {', '.join(map(str, present))})"
        )

    # -- USB calls and their errors ---------------------------------------------------

    def _usb(self, operation: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run one pyusb call, turning its errors into pyserial/serialhs ones."""
        try:
            return fn(*args, **kwargs)
        except usb.core.USBTimeoutError:
            raise
        except usb.core.USBError as e:
            raise self._usb_error(e, operation) from e

    def _usb_error(self, e: usb.core.USBError, operation: str) -> Exception:
        code = getattr(e, "errno", None)
        backend = getattr(e, "backend_error_code", None)
        text = getattr(e, "strerror", None) or str(e)
        if code == errno.ENODEV or backend == _LIBUSB_NO_DEVICE:
            self._failure = (
                errno.ENODEV,
                f"{operation} {self._where()}: USB device gone ({text}); "
                "reopen it by serial number when it is back",
            )
            gone: Exception = SerialException(*self._failure)
            return gone
        if code in (errno.EACCES, errno.EPERM) or backend == _LIBUSB_ACCESS:
            return permission_error(self.usb_device, str(self._port), operation, e)
        if code == errno.EBUSY or backend == _LIBUSB_BUSY:
            busy: Exception = SerialException(
                errno.EBUSY,
                f"{operation} {self._where()}: the interface is busy; another program "
                f"holds it ({text})",
            )
            return busy
        # Other errors (a stalled request is EPIPE) go without their errno: they
        # are failures of one request, not a hang-up.
        other: Exception = SerialException(f"{operation} {self._where()}: USB error: {text}")
        return other

    def _control_out(
        self,
        request_type: int,
        request: int,
        value: int,
        index: int,
        data: bytes | None = None,
        *,
        what: str = "control request to",
    ) -> None:
        self._ctrl_transfer(request_type, request, value, index, data, what=what)

    def _control_in(
        self,
        request_type: int,
        request: int,
        value: int,
        index: int,
        length: int,
        *,
        what: str = "control request to",
    ) -> bytes:
        return bytes(self._ctrl_transfer(request_type, request, value, index, length, what=what))

    def _ctrl_transfer(
        self,
        request_type: int,
        request: int,
        value: int,
        index: int,
        data_or_length: bytes | int | None,
        *,
        what: str,
    ) -> Any:
        """One control transfer under the control lock; a device that does not
        answer raises SerialException."""
        device = self._require_device()
        with self._ctrl_lock:
            try:
                return self._usb(
                    what,
                    device.ctrl_transfer,
                    request_type,
                    request,
                    value,
                    index,
                    data_or_length,
                    CONTROL_TIMEOUT_MS,
                )
            except usb.core.USBTimeoutError as e:
                raise SerialException(f"{what} {self._where()}: the device did not answer") from e

    def _require_device(self) -> Any:
        if self._failure is not None:
            raise SerialException(*self._failure)
        if self.usb_device is None:
            raise PortNotOpenError()
        return self.usb_device

    # -- background readers ----------------------------------------------------------

    def _start_readers(self) -> None:
        if self._ep.bulk_in is not None:
            self._spawn("bulk-in", self._bulk_reader)
        if self._ep.interrupt_in is not None:
            self._spawn("interrupt-in", self._interrupt_reader)

    def _spawn(self, kind: str, target: Callable[[], None]) -> None:
        thread = threading.Thread(target=target, name=f"{kind} {self._port}", daemon=True)
        self._threads.append(thread)
        thread.start()

    def _fail(self, e: usb.core.USBError, operation: str) -> None:
        """A reader hit an error: keep it for the next read (after the buffered bytes)."""
        error = self._usb_error(e, operation)
        if self._failure is None:
            code = getattr(error, "errno", None)
            self._failure = (code, str(error.args[-1] if error.args else error))
        log.warning("%s", self._failure[1])
        with self._rx_cond:
            self._rx_cond.notify_all()

    def _bulk_reader(self) -> None:
        device = self.usb_device
        address = self._ep.bulk_in.bEndpointAddress
        size = self._ep.in_packet * 8
        while not self._stop.is_set():
            with self._rx_cond:
                while len(self._rx) >= self.max_buffer and not self._stop.is_set():
                    # Back-pressure: leave the bytes in the chip (its flow control
                    # holds the sender) rather than drop them here.
                    self._rx_cond.wait(0.05)
            if self._stop.is_set():
                return
            try:
                data = device.read(address, size, READ_POLL_MS)
            except usb.core.USBTimeoutError:
                data = None
            except usb.core.USBError as e:
                if not self._stop.is_set():
                    self._fail(e, "read from")
                return
            except (ValueError, AttributeError, TypeError) as e:
                if not self._stop.is_set():
                    self._fail(usb.core.USBError(str(e)), "read from")
                return
            if data is not None and len(data):
                self._received(bytes(data))
            try:
                self._poll()
            except SerialException as e:
                if getattr(e, "errno", None) == errno.ENODEV:
                    with self._rx_cond:
                        self._rx_cond.notify_all()
                    return
                log.debug("%s: %s", self._where(), e)

    def _interrupt_reader(self) -> None:
        device = self.usb_device
        address = self._ep.interrupt_in.bEndpointAddress
        size = max(16, int(self._ep.interrupt_in.wMaxPacketSize))
        while not self._stop.is_set():
            try:
                data = device.read(address, size, READ_POLL_MS)
            except usb.core.USBTimeoutError:
                continue
            except usb.core.USBError as e:
                if self._stop.is_set():
                    return
                gone = e.errno == errno.ENODEV or e.backend_error_code == _LIBUSB_NO_DEVICE
                if gone:
                    self._fail(e, "read notifications from")
                else:  # the data still flows; only the line states stop coming
                    log.warning("%s: no more line-state notifications: %s", self._where(), e)
                return
            if len(data):
                self._notification(bytes(data))

    def _notification(self, data: bytes) -> None:
        """An interrupt-in transfer arrived (CDC-ACM SERIAL_STATE)."""

    def _deliver(self, data: bytes) -> None:
        with self._rx_cond:
            self._rx += data
            self._rx_cond.notify_all()

    def _count_errors(self, *, overrun: bool = False, parity: bool = False,
                      framing: bool = False, brk: bool = False) -> None:  # fmt: skip
        """Count and log receive errors the chip reported."""
        if not (overrun or parity or framing or brk):
            return
        e = self.line_errors
        e.overrun += overrun
        e.parity += parity
        e.framing += framing
        e.breaks += brk
        what = [n for n, on in (("overrun", overrun), ("parity error", parity),
                                ("framing error", framing), ("break", brk)) if on]  # fmt: skip
        log.warning(
            "%s: the chip reported %s (totals: overrun %d, parity %d, framing %d, break %d)",
            self._where(),
            " and ".join(what),
            e.overrun,
            e.parity,
            e.framing,
            e.breaks,
        )

    # -- pyserial's I/O ---------------------------------------------------------------

    @property
    def in_waiting(self) -> int:
        if not self.is_open:
            raise PortNotOpenError()
        with self._rx_cond:
            if not self._rx and self._failure is not None:
                raise SerialException(*self._failure)
            return len(self._rx)

    def read(self, size: int = 1) -> bytes:
        """Up to ``size`` bytes. Blocks for ``timeout`` (None: until ``size``
        arrived, 0: not at all). Bytes that arrived before a disconnect are
        returned first; the next read raises."""
        if not self.is_open:
            raise PortNotOpenError()
        timeout = self._timeout
        deadline = None if timeout is None else time.monotonic() + timeout
        out = bytearray()
        with self._rx_cond:
            self._cancel = False
            while len(out) < size:
                if self._rx:
                    take = min(size - len(out), len(self._rx))
                    out += self._rx[:take]
                    del self._rx[:take]
                    self._rx_cond.notify_all()
                    continue
                if self._failure is not None:
                    if out:
                        break
                    raise SerialException(*self._failure)
                if self._cancel or not self.is_open:
                    break
                if deadline is None:
                    self._rx_cond.wait(0.1)
                    continue
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._rx_cond.wait(remaining)
        return bytes(out)

    def cancel_read(self) -> None:
        with self._rx_cond:
            self._cancel = True
            self._rx_cond.notify_all()

    def write(self, data: Any) -> int:
        """Send ``data`` to the bulk-out endpoint; honours ``write_timeout``."""
        if not self.is_open:
            raise PortNotOpenError()
        payload = to_bytes(data)
        device = self._require_device()
        address = self._ep.bulk_out.bEndpointAddress
        limit = self._write_timeout
        deadline = None if limit is None else time.monotonic() + limit
        sent = 0
        while sent < len(payload):
            self._require_device()
            wait_ms = WRITE_POLL_MS
            if deadline is not None:
                wait_ms = max(1, min(WRITE_POLL_MS, int((deadline - time.monotonic()) * 1000)))
            chunk = payload[sent : sent + WRITE_CHUNK]
            with contextlib.suppress(usb.core.USBTimeoutError):
                sent += int(self._usb("write to", device.write, address, chunk, wait_ms))
            if sent < len(payload) and deadline is not None and time.monotonic() >= deadline:
                if limit == 0:
                    return sent
                raise SerialTimeoutException(
                    f"Write timeout: {sent} of {len(payload)} byte(s) sent to {self._where()} "
                    f"in {limit} s (is flow control holding it back?)"
                )
        return sent

    @property
    def out_waiting(self) -> int:
        """Bytes handed to USB but not yet sent: 0, writes return when the chip has them."""
        if not self.is_open:
            raise PortNotOpenError()
        return 0

    def flush(self) -> None:
        if not self.is_open:
            raise PortNotOpenError()

    def reset_input_buffer(self) -> None:
        if not self.is_open:
            raise PortNotOpenError()
        self._purge(rx=True)
        with self._rx_cond:
            self._rx.clear()
            self._rx_cond.notify_all()

    def reset_output_buffer(self) -> None:
        if not self.is_open:
            raise PortNotOpenError()
        self._purge(tx=True)

    def _purge(self, *, rx: bool = False, tx: bool = False) -> None:
        """Empty the chip's own buffers (where it has a request for that)."""

    _SETTINGS: ClassVar[tuple[str, ...]] = (
        "_baudrate", "_bytesize", "_parity", "_stopbits", "_xonxoff", "_rtscts", "_dsrdtr",
    )  # fmt: skip

    def _reconfigure_port(self) -> None:
        """Apply the settings; a setting the chip cannot do raises ValueError and
        leaves the port at its last good settings (pyserial stores a new value
        before it calls this)."""
        try:
            self._configure()
        except ValueError:
            good = getattr(self, "_good", None)
            if good is not None:
                for name, value in good.items():
                    setattr(self, name, value)
            raise
        self._good = {name: getattr(self, name) for name in self._SETTINGS}

    def _configure(self) -> None:
        """Check the settings and send them to the chip (subclasses)."""
        raise NotImplementedError

    def _update_rts_state(self) -> None:
        raise NotImplementedError

    def _update_dtr_state(self) -> None:
        raise NotImplementedError

    def _update_break_state(self) -> None:
        raise NotImplementedError

    def _require_open(self) -> None:
        if not self.is_open:
            raise PortNotOpenError()

    # pyserial's line properties; subclasses override what their chips report.

    @property
    def cts(self) -> bool:
        self._require_open()
        return False

    @property
    def dsr(self) -> bool:
        self._require_open()
        return False

    @property
    def ri(self) -> bool:
        self._require_open()
        return False

    @property
    def cd(self) -> bool:
        self._require_open()
        return False


def check_framing(chip: str, *, bytesize: int, parity: str, stopbits: float,
                  bytesizes: Iterable[int] = (5, 6, 7, 8)) -> None:  # fmt: skip
    """Raise SettingsError (a ValueError) for framing the chip cannot do."""
    sizes = [str(b) for b in bytesizes]
    if bytesize not in tuple(bytesizes):
        listed = ", ".join(sizes[:-1]) + f" or {sizes[-1]}" if len(sizes) > 1 else sizes[0]
        raise SettingsError(f"{chip} supports {listed} data bits, not {bytesize}")
    if parity not in ("N", "O", "E", "M", "S"):
        raise SettingsError(f"{chip}: unknown parity {parity!r}")
    if stopbits not in (1, 1.5, 2):
        raise SettingsError(f"{chip}: unsupported stop bits {stopbits!r}")


#: Parity codes shared by CDC-ACM, FTDI and CP210x: none, odd, even, mark, space.
PARITY_CODES: dict[str, int] = {"N": 0, "O": 1, "E": 2, "M": 3, "S": 4}
#: Stop-bit codes shared by the three: 1, 1.5, 2.
STOPBIT_CODES: dict[float, int] = {1: 0, 1.5: 1, 2: 2}

register()
