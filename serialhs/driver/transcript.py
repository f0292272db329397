"""A transcript recorder: what crossed a port, in which direction, and when.

A :class:`Transcript` attached to a port records data both ways, control-line
changes, breaks, settings changes and notes, with timestamps. It is bounded
(oldest events go first, and the number dropped is reported) and redacts
registered secrets before anything is stored, so a saved transcript never holds
a PIN or password.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import os
import threading
import time
from collections.abc import Iterable
from typing import Literal

from serialhs.log import redact

__all__ = ["Event", "EventKind", "Transcript"]

EventKind = Literal["open", "close", "tx", "rx", "lines", "break", "settings", "note", "error"]


@dataclasses.dataclass(frozen=True, slots=True)
class Event:
    t: float  #: seconds since the transcript started (monotonic clock)
    wall: float  #: wall-clock time (time.time())
    kind: EventKind
    port: str
    data: bytes = b""
    text: str = ""

    def as_dict(self) -> dict[str, object]:
        return {
            "t": round(self.t, 6),
            "wall": round(self.wall, 6),
            "kind": self.kind,
            "port": self.port,
            "hex": self.data.hex(),
            "text": self.text,
        }

    def format(self, limit: int = 64) -> str:
        """One human-readable line, e.g. ``+0.001234 /dev/ttyUSB0 tx 41 54 0d |AT.|``.

        At most ``limit`` bytes of data are shown; the rest is counted."""
        body = self.text
        if self.data:
            shown = self.data[:limit]
            printable = "".join(chr(b) if 32 <= b < 127 else "." for b in shown)
            more = f" (+{len(self.data) - limit} bytes)" if len(self.data) > limit else ""
            body = f"{shown.hex(' ')} |{printable}|{more}" + (f" {self.text}" if self.text else "")
        return f"+{self.t:.6f} {self.port} {self.kind:<8} {body}".rstrip()


class Transcript:
    """Records events from one or more ports. Thread-safe; bounded to ``max_events``."""

    def __init__(self, *, max_events: int = 100_000, secrets: Iterable[bytes | str] = ()) -> None:
        if max_events < 1:
            raise ValueError("max_events must be at least 1")
        self._events: collections.deque[Event] = collections.deque(maxlen=max_events)
        self._lock = threading.Lock()
        self._secrets: list[bytes] = []
        self._start = time.monotonic()
        self.dropped = 0
        for secret in secrets:
            self.add_secret(secret)

    def add_secret(self, secret: bytes | str) -> None:
        """Never store ``secret``: it is replaced with ``***`` in data and text."""
        raw = secret.encode() if isinstance(secret, str) else secret
        if raw:
            with self._lock:
                self._secrets.append(raw)

    def record(self, kind: EventKind, port: str, data: bytes = b"", text: str = "") -> None:
        with self._lock:
            if self._secrets:
                data = redact(data, self._secrets)
                text = redact(text.encode("utf-8", "surrogateescape"), self._secrets).decode(
                    "utf-8", "surrogateescape"
                )
            if len(self._events) == self._events.maxlen:
                self.dropped += 1
            self._events.append(
                Event(time.monotonic() - self._start, time.time(), kind, port, data, text)
            )

    @property
    def events(self) -> list[Event]:
        with self._lock:
            return list(self._events)

    def data(self, kind: Literal["tx", "rx"], port: str | None = None) -> bytes:
        """All bytes of one direction (optionally of one port), joined."""
        return b"".join(
            e.data for e in self.events if e.kind == kind and (port is None or e.port == port)
        )

    def to_text(self, limit: int = 64) -> str:
        """One line per event, data cut at ``limit`` bytes (JSON lines keep everything)."""
        lines = [e.format(limit) for e in self.events]
        if self.dropped:
            lines.insert(0, f"# {self.dropped} earlier event(s) dropped (max_events reached)")
        return "\n".join(lines) + "\n"

    def to_jsonl(self) -> str:
        return "".join(json.dumps(e.as_dict()) + "\n" for e in self.events)

    def save(self, path: str | os.PathLike[str]) -> None:
        """Save as JSON lines if the name ends in .jsonl or .json, as text otherwise."""
        target = os.fspath(path)
        body = self.to_jsonl() if target.endswith((".jsonl", ".json")) else self.to_text()
        with open(target, "w", encoding="utf-8") as f:
            f.write(body)
