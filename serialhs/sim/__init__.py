"""The hardware-free lab: virtual serial ports and the devices behind them.

    from serialhs.sim import SocatPair, Wire

Names are loaded on first use, so that importing a sans-I/O core of the lab
(uart, faults, wiring, trace, wirecore) brings no processes, sockets or threads.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

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


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'serialhs.sim' has no attribute {name!r}")
    return getattr(importlib.import_module(f"serialhs.sim.{module}"), name)
