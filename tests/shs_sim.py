"""A simulated serial line for the SHS cores: explicit time, airtime, latency,
rate mismatch and seeded faults (used by the handshake and transfer tests)."""

from __future__ import annotations

import heapq
import itertools
import math
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from serialhs.driver.settings import SerialSettings
from serialhs.negotiate.handshake import SwitchSettings


def isns(*values: int) -> Callable[[], int]:
    """An ISN source for tests: the given values, then a seeded stream."""
    queue = list(values)
    rng = random.Random(sum(values) + len(values))
    return lambda: queue.pop(0) if queue else rng.getrandbits(32)


@dataclass
class Faults:
    """A seeded fault pattern, applied to each piece (a frame, a flag, or the
    bytes between) sent between ``start`` and ``until``."""

    drop: float = 0.0
    duplicate: float = 0.0
    corrupt: float = 0.0
    reorder: float = 0.0
    truncate: float = 0.0
    garbage: float = 0.0
    start: float = 0.0
    until: float = math.inf


def _line(s: SerialSettings) -> tuple[object, ...]:
    """What a receiver must share with the sender to read its characters."""
    return (s.baudrate, s.bytesize, s.parity, s.stopbits)


class Link:
    """Two cores on a simulated serial line, with explicit time.

    Bytes take their airtime at the sender's rate plus a latency. A receiver whose
    rate or framing differs from the sender's (or a sender above ``garble_above``
    baud, or a piece longer than ``garble_longer``) receives garbage of the same
    length. ``faults`` drops, duplicates, corrupts, truncates, pads and reorders
    pieces (seeded); ``drop_if(end, piece, now)`` drops chosen pieces. On
    SwitchSettings the end drains its transmitter, applies the settings after
    ``apply_delay`` (seconds; or seconds by end) and tells its core.
    ``paced=False`` is a line that ignores its rate (a pty, a USB device, a
    network link): bytes take no airtime, only the latency, and arrive intact
    whatever the two ends' settings.
    """

    def __init__(
        self,
        a: Any,
        b: Any | None,
        *,
        garble_above: int | None = None,
        garble_longer: int | None = None,
        faults: Faults | None = None,
        drop_if: Callable[[str, bytes, float], bool] | None = None,
        seed: int = 0,
        latency: float = 0.002,
        apply_delay: float | dict[str, float] = 0.005,
        paced: bool = True,
    ) -> None:
        self.cores = {"a": a} if b is None else {"a": a, "b": b}
        self.port = {end: core.settings for end, core in self.cores.items()}
        self.free = dict.fromkeys(self.cores, 0.0)
        self.queue: list[tuple[float, int, str, tuple[object, ...]]] = []
        self.order = itertools.count()
        self.events: dict[str, list[tuple[float, object]]] = {end: [] for end in self.cores}
        self.sent = {end: bytearray() for end in self.cores}
        self.garble_above = garble_above
        self.garble_longer = garble_longer
        self.faults = faults or Faults(until=-1.0)
        self.drop_if = drop_if
        self.rng = random.Random(seed)
        self.latency = latency
        self.apply_delay = apply_delay
        self.paced = paced
        self.now = 0.0

    def of(self, end: str, kind: type) -> list:
        return [e for _, e in self.events[end] if isinstance(e, kind)]

    def _push(self, at: float, kind: str, *args: object) -> None:
        heapq.heappush(self.queue, (at, next(self.order), kind, args))

    def inject(self, end: str, data: bytes, at: float) -> None:
        """Bytes arriving at ``end`` at ``at``, readable at whatever rate it has then."""
        self._push(at, "rx", end, data, None)

    def _transmit(self, end: str, data: bytes) -> None:
        self.sent[end] += data
        if len(self.cores) == 1:
            return  # a line to nowhere
        to = "b" if end == "a" else "a"
        sender = self.port[end]
        start = max(self.now, self.free[end])
        self.free[end] = start + (len(data) * sender.char_time if self.paced else 0.0)
        at = self.free[end] + self.latency
        pieces = []
        for i, piece in enumerate(data.split(b"\x7e")):
            if i:
                pieces.append(b"\x7e")
            if piece:
                pieces.append(piece)
        f, r = self.faults, self.rng
        for sent in pieces:
            piece = sent
            if self.drop_if is not None and self.drop_if(end, piece, self.now):
                continue
            if not f.start <= self.now < f.until:
                self._push(at, "rx", to, piece, sender)
                continue
            if r.random() < f.drop:
                continue
            if r.random() < f.corrupt:
                damaged = bytearray(piece)
                damaged[r.randrange(len(damaged))] ^= 1 << r.randrange(8)
                piece = bytes(damaged)
            if r.random() < f.truncate and len(piece) > 1:
                piece = piece[: r.randrange(1, len(piece))]
            if r.random() < f.garbage:
                piece += bytes(r.randrange(256) for _ in range(r.randrange(1, 24)))
            delay = r.uniform(0.0, 3.0) if r.random() < f.reorder else 0.0
            self._push(at + delay, "rx", to, piece, sender)
            if r.random() < f.duplicate:
                self._push(at + r.uniform(0.0, 3.0), "rx", to, piece, sender)

    def _pump(self) -> None:
        busy = True
        while busy:
            busy = False
            for end, core in self.cores.items():
                data = core.data_to_send()
                if data:
                    busy = True
                    self._transmit(end, data)
                for event in core.events():
                    busy = True
                    self.events[end].append((self.now, event))
                    if isinstance(event, SwitchSettings):
                        delay = self.apply_delay
                        if isinstance(delay, dict):
                            delay = delay[end]
                        at = max(self.now, self.free[end]) + delay
                        self._push(at, "apply", end, event.settings)

    def _deliver(self, end: str, data: bytes, sender: SerialSettings | None) -> None:
        if sender is not None and (
            (self.paced and _line(sender) != _line(self.port[end]))
            or (self.garble_above is not None and sender.baudrate > self.garble_above)
            or (self.garble_longer is not None and len(data) > self.garble_longer)
        ):
            data = bytes(self.rng.randrange(256) for _ in data)
        self.cores[end].receive_data(data, self.now)

    def run(self, until: float, stop: Callable[[Link], bool] | None = None) -> Link:
        """Run until ``stop`` says so or ``until``. A core that keeps asking for
        its timer at the same instant without moving on is a hang, and fails."""
        stuck, last = 0, self.now
        while True:
            stuck = stuck + 1 if self.now == last else 0
            last = self.now
            if stuck > 10_000:
                raise AssertionError(f"no progress at t={self.now}: a core's timer never clears")
            self._pump()
            applying = any(kind == "apply" for _, _, kind, _ in self.queue)
            if stop is not None and not applying and stop(self):
                return self
            times = [self.queue[0][0]] if self.queue else []
            times += [t for t in (c.get_timer() for c in self.cores.values()) if t is not None]
            if not times or min(times) > until:
                self.now = max(self.now, until)
                return self
            self.now = max(self.now, min(times))
            while self.queue and self.queue[0][0] <= self.now:
                _, _, kind, args = heapq.heappop(self.queue)
                if kind == "rx":
                    end, data, sender = args
                    self._deliver(end, data, sender)
                else:
                    end, applied = args
                    self.port[end] = applied
                    self.cores[end].settings_applied(self.now)
                self._pump()
            for core in self.cores.values():
                timer = core.get_timer()
                if timer is not None and timer <= self.now:
                    core.handle_timer(self.now)
