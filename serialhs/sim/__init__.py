"""The hardware-free lab: virtual serial ports and the devices behind them."""

from serialhs.sim.socat import SocatPair

__all__ = ["SocatPair"]
