"""A one-line progress bar for file transfers, redrawn in place on a terminal."""

from __future__ import annotations

import sys
from typing import TextIO

__all__ = ["ProgressBar", "human_bytes"]


def human_bytes(count: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(count) < 1024 or unit == "GiB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    return f"{count:.1f} GiB"  # pragma: no cover - the loop always returns


class ProgressBar:
    """``update(done, total, rate, resent)`` redraws ``[#####.....]  42%  ...``.

    On a terminal the line is redrawn in place (at most ``every`` seconds apart,
    which the caller's callback rate already bounds); elsewhere a line is written
    each time the percentage passes another ``step`` percent, so logs stay short.
    """

    def __init__(
        self, label: str, *, stream: TextIO | None = None, width: int = 30, step: int = 10
    ) -> None:
        self.label = label
        self.stream = stream or sys.stderr
        self.width = width
        self.step = step
        self.tty = self.stream.isatty()
        self._last_step = -1
        self._drawn = False

    def line(self, done: int, total: int, rate: float, resent: int) -> str:
        fraction = done / total if total else 1.0
        filled = round(fraction * self.width)
        bar = "#" * filled + "." * (self.width - filled)
        return (
            f"{self.label} [{bar}] {fraction:4.0%}  {human_bytes(done)} of {human_bytes(total)}"
            f"  {human_bytes(rate)}/s  resent {resent}"
        )

    def update(self, done: int, total: int, rate: float, resent: int) -> None:
        text = self.line(done, total, rate, resent)
        if self.tty:
            self.stream.write("\r" + text + "\x1b[K")
            self._drawn = True
        else:
            percent = int(100 * done / total) if total else 100
            if percent // self.step == self._last_step:
                return
            self._last_step = percent // self.step
            self.stream.write(text + "\n")
        self.stream.flush()

    def close(self) -> None:
        """End the redrawn line (so the report starts on a line of its own)."""
        if self._drawn:
            self.stream.write("\n")
            self.stream.flush()
            self._drawn = False
