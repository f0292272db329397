"""The driver layer: ports over any pyserial URL or device path.

from serialhs.driver import Port, SerialSettings

with Port("/dev/ttyUSB0", SerialSettings.parse("115200 8N1"), dtr=False) as port:
    port.pulse("rts", 0.1)
    banner = port.read_until(b"ready\\r\\n", timeout=2)
"""

from serialhs.driver.aio import AsyncPort, open_async_port
from serialhs.driver.discovery import PortInfo, list_ports
from serialhs.driver.lines import Line, Lines
from serialhs.driver.port import Port, open_port
from serialhs.driver.settings import FlowControl, Parity, SerialSettings, StopBits
from serialhs.driver.transcript import Transcript

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
