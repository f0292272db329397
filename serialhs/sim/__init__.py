"""The hardware-free lab: virtual serial ports and the devices behind them.

    from serialhs.sim import SocatPair, Wire

Names are loaded on first use, so that importing a sans-I/O core of the lab
(uart, faults, wiring, trace, wirecore) brings no processes, sockets or threads.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from serialhs._lazy import lazy_getattr

if TYPE_CHECKING:
    from serialhs.sim.faults import FaultSpec
    from serialhs.sim.socat import SocatPair
    from serialhs.sim.wire import Wire

_WHERE = {"SocatPair": "socat", "Wire": "wire", "FaultSpec": "faults"}

__all__ = [
    "FaultSpec",
    "SocatPair",
    "Wire",
]


__getattr__ = lazy_getattr("serialhs.sim", _WHERE)
