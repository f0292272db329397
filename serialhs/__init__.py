"""serialhs: serial and modem hardware-handshake controller."""

__version__ = "0.1.0"
