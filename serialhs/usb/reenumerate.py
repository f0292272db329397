"""Reopening a USB device after it re-enumerated, by its serial number.

A device that resets -- a board rebooted into its bootloader, a modem after
AT+CFUN=1,1, an adapter pulled and plugged back -- leaves the bus and comes back
at a new address, often a second or two later, and sometimes with its udev
permissions a moment behind. Its serial number stays the same. Here that is
one call, with bounded retries (as esptool waits for a port after a reset)::

    from serialhs.usb.reenumerate import reopen, reopen_port

    s = reopen("A50285BI", baudrate=115200)                 # a pyserial instance
    port = reopen_port("usb://0403:6001?serial=A50285BI",   # a serialhs Port
                       "115200 8N1", attempts=40, delay=0.25)

``url_or_serial`` is a ``usb://`` URL (kept as it is: its VID:PID, interface
and chip still apply) or a bare serial number (any device with that serial
number: a device that comes back with another product id, as some do in their
bootloader, is still found). Each attempt that finds no device, finds it busy
(udev and the kernel are still setting it up) or is refused access (the udev
rule not applied yet) waits ``delay`` seconds and tries again; after
``attempts`` tries :class:`~serialhs.errors.PortNotFoundError` says how long it
waited and what was seen last. Other errors (a bad URL, a chip setting the
device refuses) are raised at once.
"""

from __future__ import annotations

import errno
import logging
import time
from collections.abc import Callable
from typing import Any, TypeVar

import serial

from serialhs.errors import (
    ConfigError,
    PortBusyError,
    PortDisconnectedError,
    PortError,
    PortNotFoundError,
    PortPermissionError,
    SerialHSError,
)
from serialhs.usb.urlhandler import SCHEME, UsbSerial, UsbUrl, register

__all__ = ["DEFAULT_ATTEMPTS", "DEFAULT_DELAY", "reopen", "reopen_port", "usb_url"]

log = logging.getLogger("serialhs.usb")

#: Attempts and the pause between them: 20 x 0.25 s, five seconds in all
#: (enough for a USB reset and udev; raise it for modems that reboot).
DEFAULT_ATTEMPTS = 20
DEFAULT_DELAY = 0.25

_RETRY_ERRNOS = {errno.ENOENT, errno.ENODEV, errno.EBUSY, errno.EACCES, errno.EPERM, errno.EIO}

T = TypeVar("T")


def usb_url(url_or_serial: str) -> str:
    """``usb://...`` as given, or ``usb://?serial=SN`` for a bare serial number."""
    text = url_or_serial.strip()
    if not text:
        raise ConfigError("reopen needs a usb:// URL or a serial number")
    if "://" in text:
        try:
            parsed = UsbUrl.parse(text)
        except ValueError as e:
            raise ConfigError(f"cannot reopen {text!r}: {e}") from e
        if parsed.serial is None:
            raise ConfigError(
                f"cannot reopen {text!r}: it has no serial number, and after re-enumeration "
                "only the serial number tells one device from another; add ?serial=..."
            )
        return text
    return str(UsbUrl(serial=text))


def _retryable(e: BaseException) -> bool:
    if isinstance(e, PortPermissionError | PortNotFoundError | PortDisconnectedError):
        return True
    if isinstance(e, PortBusyError):
        return True
    if isinstance(e, SerialHSError):
        return False
    return getattr(e, "errno", None) in _RETRY_ERRNOS


def _with_retries(url: str, attempts: int, delay: float, open_once: Callable[[], T]) -> T:
    if attempts < 1:
        raise ConfigError(f"attempts must be at least 1, not {attempts}")
    if not 0 <= delay <= 60:
        raise ConfigError(f"delay must be 0..60 seconds, not {delay}")
    start = time.monotonic()
    last: BaseException | None = None
    for attempt in range(1, attempts + 1):
        try:
            result = open_once()
        except (serial.SerialException, OSError, PortError) as e:
            if not _retryable(e):
                raise
            last = e
            log.debug("reopen %s, attempt %d of %d: %s", url, attempt, attempts, e)
        else:
            if attempt > 1:
                log.info("reopened %s at attempt %d after %.2f s", url, attempt,
                         time.monotonic() - start)  # fmt: skip
            return result
        if attempt < attempts:
            time.sleep(delay)
    waited = time.monotonic() - start
    if isinstance(last, PortPermissionError):
        raise PortPermissionError(
            f"the device came back, but access was refused for {waited:.1f} s "
            f"({attempts} attempts): {last}",
            port=url,
            operation="reopen",
            hint=last.hint,
        ) from last
    raise PortNotFoundError(
        f"the device did not come back: {attempts} attempts over {waited:.1f} s; last: {last}",
        port=url,
        operation="reopen",
        hint="check that it is plugged in and powered, or allow more attempts",
    ) from last


def reopen(
    url_or_serial: str,
    *,
    attempts: int = DEFAULT_ATTEMPTS,
    delay: float = DEFAULT_DELAY,
    **serial_options: Any,
) -> UsbSerial:
    """Wait for the device to come back and open it: an open pyserial instance
    (a :class:`~serialhs.usb.urlhandler.UsbSerial`). ``serial_options`` go to
    ``serial.serial_for_url`` (baudrate, bytesize, timeout, ...)."""
    register()
    url = usb_url(url_or_serial)

    def open_once() -> UsbSerial:
        instance: UsbSerial = serial.serial_for_url(url, **serial_options)
        return instance

    return _with_retries(url, attempts, delay, open_once)


def reopen_port(
    url_or_serial: str,
    settings: Any = None,
    *,
    attempts: int = DEFAULT_ATTEMPTS,
    delay: float = DEFAULT_DELAY,
    **port_options: Any,
) -> Any:
    """Wait for the device to come back and open it as a serialhs
    :class:`~serialhs.driver.port.Port` (``settings`` and ``port_options`` as for
    Port). Returns the open Port."""
    from serialhs.driver.port import Port  # noqa: PLC0415

    register()
    url = usb_url(url_or_serial)
    if not url.startswith(f"{SCHEME}://"):
        raise ConfigError(f"not a {SCHEME}:// URL: {url!r}")

    def open_once() -> Port:
        return Port(url, settings, **port_options).open()

    return _with_retries(url, attempts, delay, open_once)
