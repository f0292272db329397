"""The module pyserial imports for ``usb://`` URLs.

pyserial's ``serial_for_url`` looks for ``protocol_<scheme>`` in every package
of ``serial.protocol_handler_packages``; :func:`serialhs.usb.urlhandler.register`
adds ``serialhs.usb`` to that list. ``serial_class_for_url`` picks the driver
class by chip family; ``Serial`` is the generic class that picks it at open.
"""

from __future__ import annotations

from serialhs.usb.urlhandler import UsbSerial as Serial
from serialhs.usb.urlhandler import serial_class_for_url

__all__ = ["Serial", "serial_class_for_url"]
