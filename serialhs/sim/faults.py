"""Seeded, replayable fault injection for one direction of a wire (sans-I/O).

A ``FaultSpec`` says which faults a direction suffers; a ``FaultInjector``
draws them from pseudo-random streams seeded with ``(seed, stream name, kind)``,
so one direction replays the same faults for the same bytes whatever the other
direction does, however the bytes were split into chunks, and whenever delays
and idle noise were asked for (each kind of decision has its own stream).

    spec = FaultSpec.parse("ber=1e-5,drop=0.1%,latency=5ms,jitter=1ms,burst=0.001/16")
    injector = FaultInjector(spec, seed=7, stream="a->b")
    injector.characters(b"hello", frame_bits=10)  # [(value, flip mask), ...]
    injector.delay()  # seconds to hold the next character back
"""

from __future__ import annotations

import math
import random
import re
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from serialhs.errors import ConfigError

__all__ = ["FaultInjector", "FaultSpec", "FaultStats"]

_PROBABILITIES = ("ber", "drop", "duplicate", "burst_rate")
_TIMES = ("latency", "jitter")
_MAX_BURST_BITS = 1 << 16
_UNITS = {"s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9}
_NUMBER = re.compile(r"^\s*([-+0-9.eE]+|inf|nan)\s*([a-zµ%/]*)\s*$", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class FaultSpec:
    """The faults of one direction. All zero (the default) means a clean line.

    Text form: ``"ber=1e-5,drop=0.001,dup=0.5%,burst=0.001/16,noise=2,latency=5ms,jitter=1ms"``.
    """

    ber: float = 0.0
    """Probability that any one bit on the line (start, data, parity, stop) flips."""
    drop: float = 0.0
    """Probability that a character is lost."""
    duplicate: float = 0.0
    """Probability that a character arrives twice."""
    burst_rate: float = 0.0
    """Probability that an error burst starts at a character."""
    burst_bits: int = 8
    """Length of a burst in bits: its first and last bit flip, those between are random."""
    noise: float = 0.0
    """Noise characters per second while the line is idle."""
    latency: float = 0.0
    """Seconds added to every character's delivery."""
    jitter: float = 0.0
    """Extra delivery delay, uniform in [0, jitter] seconds."""

    def __post_init__(self) -> None:
        for name in (*_PROBABILITIES, "noise", *_TIMES):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ConfigError(f"fault {name} must be a number, not {value!r}")
            if not math.isfinite(value) or value < 0:
                raise ConfigError(f"fault {name} must be a finite number >= 0, not {value!r}")
            if name in _PROBABILITIES and value > 1:
                raise ConfigError(f"fault {name} is a probability in [0, 1], not {value!r}")
            object.__setattr__(self, name, float(value))
        bits = self.burst_bits
        if isinstance(bits, bool) or not isinstance(bits, int) or not 1 <= bits <= _MAX_BURST_BITS:
            raise ConfigError(f"burst_bits must be an int 1..{_MAX_BURST_BITS}, not {bits!r}")

    def __bool__(self) -> bool:
        """True when any fault is active."""
        return any(getattr(self, name) for name in (*_PROBABILITIES, "noise", *_TIMES))

    @property
    def garbles(self) -> bool:
        """True when characters can be dropped, duplicated or have bits flipped."""
        return any(getattr(self, name) for name in _PROBABILITIES)

    def __str__(self) -> str:
        """The text form, which ``parse`` reads back ("none" for a clean line)."""
        parts = [f"{name}={getattr(self, name)!r}" for name in ("ber", "drop", "duplicate")]
        if self.burst_rate:
            parts.append(f"burst={self.burst_rate!r}/{self.burst_bits}")
        elif self.burst_bits != 8:
            parts.append(f"burst_bits={self.burst_bits}")
        parts += [f"{name}={getattr(self, name)!r}" for name in ("noise", *_TIMES)]
        return ",".join(p for p in parts if not p.endswith("=0.0")) or "none"

    # -- reading ------------------------------------------------------------------

    @classmethod
    def parse(cls, text: str) -> FaultSpec:
        """Read ``key=value`` pairs separated by commas or spaces ("" or "none": no faults).

        Keys: ber, drop, duplicate (dup), burst (``rate/bits`` or a rate),
        burst_rate, burst_bits, noise (per second), latency, jitter. Probabilities
        may end in %, times in s, ms, us or ns (plain numbers are seconds).
        """
        if not isinstance(text, str):
            raise ConfigError(f"a fault spec is text, not {text!r}")
        words = [w for w in re.split(r"[\s,]+", text.strip()) if w]
        if words in ([], ["none"]):
            return cls()
        pairs: dict[str, Any] = {}
        for word in words:
            key, sep, value = word.partition("=")
            if not sep or not key or not value:
                raise ConfigError(
                    f"cannot read {word!r} in fault spec {text!r}: expected key=value, "
                    "such as ber=1e-5 or latency=5ms"
                )
            key = key.lower()
            if key in pairs:
                raise ConfigError(f"fault spec {text!r}: fault {key} given twice")
            pairs[key] = value
        return cls.from_mapping(pairs, where=f"fault spec {text!r}")

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], *, where: str = "") -> FaultSpec:
        """Read a table (from TOML, say): the keys of ``parse``, numbers or strings."""
        prefix = f"{where}: " if where else ""
        known = {f.name for f in fields(cls)} | {"burst", "dup"}
        unknown = sorted(str(key) for key in data if key not in known)
        if unknown:
            raise ConfigError(
                f"{prefix}unknown fault setting(s) {', '.join(map(repr, unknown))}; "
                f"known: {', '.join(sorted(known))}"
            )
        values: dict[str, Any] = {}

        def put(name: str, value: Any) -> None:
            if name in values:
                raise ConfigError(f"{prefix}fault {name} given twice")
            values[name] = value

        try:
            for key, raw in data.items():
                name = "duplicate" if key == "dup" else key
                if name == "burst":
                    rate, _, bits = str(raw).partition("/")
                    put("burst_rate", _number(rate, "burst", "burst_rate"))
                    if bits:
                        put("burst_bits", _count(bits, "burst"))
                elif name == "burst_bits":
                    put(name, _count(raw, name))
                else:
                    put(name, _number(raw, name, name))
            return cls(**values)
        except ConfigError as e:
            if not prefix:
                raise
            raise ConfigError(f"{prefix}{e}") from None


def _number(raw: Any, key: str, kind: str) -> float:
    """A probability (may end in %), a time (may end in s/ms/us/ns) or a rate (may end in /s)."""
    if isinstance(raw, int | float) and not isinstance(raw, bool):
        return float(raw)
    match = _NUMBER.match(raw) if isinstance(raw, str) else None
    if match is None:
        raise ConfigError(f"fault {key} must be a number, not {raw!r}")
    number, unit = match.group(1), match.group(2).lower()
    try:
        value = float(number)
    except ValueError:
        raise ConfigError(f"fault {key} must be a number, not {raw!r}") from None
    if not unit:
        return value
    if kind in _PROBABILITIES and unit == "%":
        return value / 100
    if kind in _TIMES and unit in _UNITS:
        return value * _UNITS[unit]
    if kind == "noise" and unit == "/s":
        return value
    allowed = {"noise": "/s", **dict.fromkeys(_TIMES, "s, ms, us or ns")}.get(kind, "%")
    raise ConfigError(f"fault {key}: cannot read unit {unit!r} in {raw!r} (use {allowed})")


def _count(raw: Any, key: str) -> int:
    if isinstance(raw, str) and raw.strip().isdigit():
        return int(raw)
    if isinstance(raw, int) and not isinstance(raw, bool):
        return raw
    raise ConfigError(f"fault {key} needs a whole number of bits, not {raw!r}")


# --- the injector --------------------------------------------------------------------


@dataclass(slots=True)
class FaultStats:
    """What an injector has done so far."""

    characters: int = 0
    dropped: int = 0
    duplicated: int = 0
    bit_errors: int = 0
    bursts: int = 0
    noise: int = 0


def _random(seed: int | str, stream: str, kind: str) -> random.Random:
    """A generator for one kind of decision; string seeds are hashed the same on every run."""
    return random.Random(f"{seed}:{stream}:{kind}")  # noqa: S311 - replayable faults, not secrets


def _geometric(rng: random.Random, p: float) -> int:
    """Trials that fail before the first success, each succeeding with probability p."""
    if p >= 1.0:
        return 0
    gap = math.log1p(-rng.random()) / math.log1p(-p)
    return int(min(gap, 2.0**62))


class FaultInjector:
    """The fault decisions of one direction of a wire, replayable from its seed.

    Draws come from ``random.Random(f"{seed}:{stream}:{kind}")`` for kind in
    chars, delay and noise. A clean spec costs nothing and draws nothing.
    """

    __slots__ = (
        "_ber_gap",
        "_burst_left",
        "_burst_pattern",
        "_burst_wait",
        "_chars",
        "_delays",
        "_noise",
        "_noise_gap",
        "spec",
        "stats",
    )

    def __init__(self, spec: FaultSpec, *, seed: int | str, stream: str) -> None:
        self.spec = spec
        self.stats = FaultStats()
        self._chars = _random(seed, stream, "chars")
        self._delays = _random(seed, stream, "delay")
        self._noise = _random(seed, stream, "noise")
        self._ber_gap = -1  # good bits before the next bit error; -1: not drawn yet
        self._burst_wait = 0  # bits before the pending burst begins
        self._burst_left = 0  # bits of the burst still to come
        self._burst_pattern = 0  # their flips, next bit first
        self._noise_gap = -1  # idle slots before the next noise character

    def characters(self, data: bytes, frame_bits: int) -> list[tuple[int, int]]:
        """``(value, flip mask)`` for each character that reaches the line, in order.

        Dropped characters are left out and duplicated ones appear twice, each
        copy with its own mask over the ``frame_bits`` bit slots of a frame
        (``uart.frame_bit_count``). Bit errors and bursts run on across
        characters and across calls.
        """
        if isinstance(frame_bits, bool) or not isinstance(frame_bits, int) or frame_bits < 1:
            raise ConfigError(f"frame_bits must be a positive int, not {frame_bits!r}")
        spec, stats = self.spec, self.stats
        stats.characters += len(data)
        if not spec.garbles:
            return [(value, 0) for value in data]
        rng = self._chars
        out: list[tuple[int, int]] = []
        for value in data:
            if spec.drop and rng.random() < spec.drop:
                stats.dropped += 1
                continue
            copies = 1
            if spec.duplicate and rng.random() < spec.duplicate:
                copies = 2
                stats.duplicated += 1
            if spec.burst_rate and rng.random() < spec.burst_rate and not self._burst_left:
                self._start_burst(rng.randrange(frame_bits))
            for _ in range(copies):
                mask = self._mask(frame_bits)
                stats.bit_errors += mask.bit_count()
                out.append((value, mask))
        return out

    def clean_characters(self, limit: int, frame_bits: int) -> int:
        """How many of the next ``limit`` characters reach the line untouched,
        counted as sent: the bit-error gap covers them. Only for specs whose one
        garbling fault is ``ber`` (0 otherwise); the same draws as
        :meth:`characters` would make, so a run replays the same either way."""
        spec = self.spec
        if not spec.ber or spec.drop or spec.duplicate or spec.burst_rate or self._burst_left:
            return 0
        if self._ber_gap < 0:
            self._ber_gap = _geometric(self._chars, spec.ber)
        count = min(limit, self._ber_gap // frame_bits)
        self._ber_gap -= count * frame_bits
        self.stats.characters += count
        return count

    def _start_burst(self, offset: int) -> None:
        bits = self.spec.burst_bits
        pattern = 1 | (1 << (bits - 1))
        if bits > 2:
            pattern |= self._chars.getrandbits(bits - 2) << 1
        self._burst_wait, self._burst_left, self._burst_pattern = offset, bits, pattern
        self.stats.bursts += 1

    def _mask(self, slots: int) -> int:
        mask = 0
        ber = self.spec.ber
        if ber:
            if self._ber_gap < 0:
                self._ber_gap = _geometric(self._chars, ber)
            at = self._ber_gap
            while at < slots:
                mask |= 1 << at
                at += 1 + _geometric(self._chars, ber)
            self._ber_gap = at - slots
        if self._burst_left:
            wait = self._burst_wait
            if wait >= slots:
                self._burst_wait = wait - slots
            else:
                take = min(slots - wait, self._burst_left)
                mask |= (self._burst_pattern & ((1 << take) - 1)) << wait
                self._burst_pattern >>= take
                self._burst_left -= take
                self._burst_wait = 0
        return mask

    def delay(self) -> float:
        """Seconds to add to the next character's delivery: latency plus jitter."""
        spec = self.spec
        if not spec.jitter:
            return spec.latency
        return spec.latency + spec.jitter * self._delays.random()

    def idle_noise(self, slots: int, char_time: float) -> list[tuple[int, int]]:
        """``(slot index, value)`` of noise characters over ``slots`` idle character slots.

        ``char_time`` is the seconds of one slot: noise arrives at ``spec.noise``
        per second, at most one character per slot. The value is 0..255 (mask it
        to the receiver's bytesize). Calls continue one another: two calls of n
        slots give what one of 2n would, at the same ``char_time``.
        """
        if isinstance(slots, bool) or not isinstance(slots, int) or slots < 0:
            raise ConfigError(f"slots must be an int >= 0, not {slots!r}")
        if not (math.isfinite(char_time) and char_time > 0):
            raise ConfigError(f"char_time must be a positive number of seconds, not {char_time!r}")
        if not self.spec.noise or not slots:
            return []
        p = -math.expm1(-self.spec.noise * char_time)  # P(a slot sees >= 1 noise event)
        rng = self._noise
        if self._noise_gap < 0:
            self._noise_gap = _geometric(rng, p)
        out: list[tuple[int, int]] = []
        at = self._noise_gap
        while at < slots:
            out.append((at, rng.getrandbits(8)))
            at += 1 + _geometric(rng, p)
        self._noise_gap = at - slots
        self.stats.noise += len(out)
        return out
