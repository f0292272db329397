"""Logging helpers: the TRACE level, hexdumps of wire traffic, and redaction.

Loggers are named ``serialhs.<layer>`` (serialhs.driver, serialhs.sim, ...).
TRACE (level 5, below DEBUG) carries hexdumps of every byte that crosses a port;
it is off unless a handler asks for it, and costs one level check otherwise.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

__all__ = ["TRACE", "get_logger", "hexdump", "redact", "trace_bytes"]

TRACE = 5
logging.addLevelName(TRACE, "TRACE")


def get_logger(layer: str) -> logging.Logger:
    return logging.getLogger(f"serialhs.{layer}")


def hexdump(data: bytes, *, width: int = 16, limit: int = 4096) -> str:
    """Classic offset / hex / ASCII dump, one line per ``width`` bytes.

    At most ``limit`` bytes are shown; a final line says how many were left out.
    """
    lines = []
    shown = data[:limit]
    for offset in range(0, len(shown), width):
        chunk = shown[offset : offset + width]
        hexpart = " ".join(f"{b:02x}" for b in chunk)
        text = "".join(chr(b) if 32 <= b < 127 else "." for b in chunk)
        lines.append(f"{offset:08x}  {hexpart:<{width * 3 - 1}}  |{text}|")
    if len(data) > limit:
        lines.append(f"... {len(data) - limit} more byte(s)")
    return "\n".join(lines)


def redact(data: bytes, secrets: Iterable[bytes]) -> bytes:
    """Replace every occurrence of each secret with ``***``."""
    for secret in secrets:
        if secret:
            data = data.replace(secret, b"***")
    return data


def trace_bytes(logger: logging.Logger, port: str, direction: str, data: bytes) -> None:
    """Log ``data`` as a hexdump at TRACE level (cheap when TRACE is off)."""
    if logger.isEnabledFor(TRACE):
        logger.log(TRACE, "%s %s %d byte(s)\n%s", port, direction, len(data), hexdump(data))
