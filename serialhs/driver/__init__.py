"""The driver layer: ports over any pyserial URL or device path.

    from serialhs.driver import Port, SerialSettings

    with Port("/dev/ttyUSB0", SerialSettings.parse("115200 8N1"), dtr=False) as port:
        port.pulse("rts", 0.1)
        banner = port.read_until(b"ready\\r\\n", timeout=2)

The names below are loaded on first use, so that a sans-I/O core that needs
only ``serialhs.driver.settings`` or ``serialhs.driver.lines`` does not pull in
pyserial, sockets and threads with them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from serialhs._lazy import lazy_getattr

if TYPE_CHECKING:
    from serialhs.driver.aio import AsyncPort, open_async_port
    from serialhs.driver.discovery import PortInfo, list_ports
    from serialhs.driver.lines import Line, Lines
    from serialhs.driver.port import Port, open_port
    from serialhs.driver.settings import FlowControl, Parity, SerialSettings, StopBits
    from serialhs.driver.transcript import Transcript

_WHERE = {
    "AsyncPort": "aio",
    "open_async_port": "aio",
    "PortInfo": "discovery",
    "list_ports": "discovery",
    "Line": "lines",
    "Lines": "lines",
    "Port": "port",
    "open_port": "port",
    "FlowControl": "settings",
    "Parity": "settings",
    "SerialSettings": "settings",
    "StopBits": "settings",
    "Transcript": "transcript",
}

__all__ = [
    "AsyncPort",
    "FlowControl",
    "Line",
    "Lines",
    "Parity",
    "Port",
    "PortInfo",
    "SerialSettings",
    "StopBits",
    "Transcript",
    "list_ports",
    "open_async_port",
    "open_port",
]


__getattr__ = lazy_getattr("serialhs.driver", _WHERE)
