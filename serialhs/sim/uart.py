"""A sans-I/O model of a UART line: what a sender puts on the wire, bit by bit,
and what a receiver with its own settings samples from it.

Levels: 1 is mark (idle, stop bits), 0 is space (start bit, break). A frame is
a start bit (space), the data bits least significant first, a parity bit when
the parity is not NONE, then 1, 1.5 or 2 bit-times of mark.

A receiver hunts for a mark->space edge, checks the start bit at its middle,
samples each later bit at its middle at its *own* bit rate, then the first stop
bit. After the stop-bit sample it hunts for the next mark->space edge; if the
stop bit read as space it first waits for the line to return to mark. So a
receiver set to another rate or framing mis-frames as hardware does.

Times are exact. Waveforms are built of ``Fraction`` seconds; a receiver counts
time in integer ticks made fine enough for every duration it is fed, and takes
sample k of a frame at ``edge + (k + 1/2) * bit``, never by adding up floats.
Floats are accepted everywhere and taken at their exact binary value, so feed
the ``Fraction`` durations of a waveform as they are where exact coincidences
matter (a 19200 sender seen by a 9600 receiver samples right on its edges).

Edge rule: the line holds each fed level on a half-open span ``[start, end)``.
A sample that falls exactly on a transition sees the *new* level. A sample at
exactly the end of what has been fed waits for the next feed.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import TypeAlias

from serialhs.driver.settings import Parity, SerialSettings, StopBits
from serialhs.errors import ConfigError

__all__ = [
    "HUNT_EDGE",
    "MARK",
    "SPACE",
    "RxChar",
    "Seconds",
    "UartReceiver",
    "UartTransmitter",
    "Waveform",
    "bit_time",
    "decode_frame",
    "frame_bit_count",
    "frame_bits",
    "frame_time",
    "frame_waveform",
    "parity_bit",
    "same_timing",
    "transcode",
]

MARK = 1
SPACE = 0

#: A time or duration in seconds: floats are taken exactly as they are.
Seconds: TypeAlias = float | Fraction

Waveform: TypeAlias = list[tuple[int, Fraction]]


@dataclass(frozen=True, slots=True)
class RxChar:
    """One character as a receiver sampled it."""

    value: int
    """The data bits as sampled, within the receiver's bytesize."""
    framing_error: bool = False
    """The stop bit was sampled as space."""
    parity_error: bool = False
    """The parity bit did not match (only when the receiver uses parity; never for a break)."""
    is_break: bool = False
    """Start, data, parity and stop bit were all space."""
    time: float = 0.0
    """When the receiver sampled the stop bit (seconds, absolute)."""

    @property
    def ok(self) -> bool:
        return not (self.framing_error or self.parity_error or self.is_break)


# --- frames --------------------------------------------------------------------------


def _data(value: int, settings: SerialSettings) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 0xFF:
        raise ConfigError(f"a character must be an int 0..255, not {value!r}")
    return value & ((1 << settings.bytesize) - 1)


def parity_bit(value: int, settings: SerialSettings) -> int | None:
    """The parity bit a sender puts after ``value`` (None without parity)."""
    ones = _data(value, settings).bit_count() & 1
    return {
        Parity.NONE: None,
        Parity.EVEN: ones,
        Parity.ODD: ones ^ 1,
        Parity.MARK: 1,
        Parity.SPACE: 0,
    }[settings.parity]


def frame_bits(value: int, settings: SerialSettings) -> tuple[int, ...]:
    """The levels of one frame without its stop bits: start, data LSB first, parity.

    ``value`` is 0..255; a sender with fewer data bits sends only the low ones.
    """
    data = _data(value, settings)
    bits = [SPACE, *((data >> i) & 1 for i in range(settings.bytesize))]
    parity = parity_bit(data, settings)
    if parity is not None:
        bits.append(parity)
    return tuple(bits)


def _stop_slots(settings: SerialSettings) -> int:
    return 1 if settings.stopbits is StopBits.ONE else 2


def frame_bit_count(settings: SerialSettings) -> int:
    """Bit slots of a whole frame (1.5 stop bits count as two slots, the last a half)."""
    parity = 0 if settings.parity is Parity.NONE else 1
    return 1 + settings.bytesize + parity + _stop_slots(settings)


def bit_time(settings: SerialSettings) -> Fraction:
    """Seconds of one bit, exactly."""
    return Fraction(1, settings.baudrate)


def frame_time(settings: SerialSettings) -> Fraction:
    """Seconds of one whole frame, exactly (``settings.char_time`` as a fraction)."""
    return Fraction(settings.bits_per_char) / settings.baudrate


def frame_waveform(value: int, settings: SerialSettings, *, flips: int = 0) -> Waveform:
    """One whole frame as runs of ``(level, seconds)``, stop bits included.

    ``flips`` inverts bit slots: bit i of it is slot i of the frame (0 is the
    start bit, then data, parity, stop bits; see ``frame_bit_count``).
    """
    _data(value, settings)
    slots = frame_bit_count(settings)
    if isinstance(flips, bool) or not isinstance(flips, int) or not 0 <= flips < 1 << slots:
        raise ConfigError(
            f"flips must be a mask of the {slots} bit slots of a {settings.framing} frame, "
            f"not {flips!r}"
        )
    return list(_waveform(value, settings, flips))


@functools.lru_cache(maxsize=2048)
def _waveform(value: int, settings: SerialSettings, flips: int) -> tuple[tuple[int, Fraction], ...]:
    levels = frame_bits(value, settings) + (MARK,) * _stop_slots(settings)
    last, bit = len(levels) - 1, bit_time(settings)
    runs: Waveform = []
    for i, sent in enumerate(levels):
        level = sent ^ ((flips >> i) & 1)
        length = bit / 2 if settings.stopbits is StopBits.ONE_POINT_FIVE and i == last else bit
        if runs and runs[-1][0] == level:
            runs[-1] = (level, runs[-1][1] + length)
        else:
            runs.append((level, length))
    return tuple(runs)


def _char(samples: Sequence[int], settings: SerialSettings, time: float) -> RxChar:
    """A character from the samples after the start bit: data, [parity], stop."""
    size = settings.bytesize
    value = sum(bit << i for i, bit in enumerate(samples[:size]))
    stop = samples[-1]
    if not any(samples):
        return RxChar(0, framing_error=True, is_break=True, time=time)
    parity_error = False
    if settings.parity is not Parity.NONE:
        parity_error = samples[size] != parity_bit(value, settings)
    return RxChar(value, framing_error=stop == SPACE, parity_error=parity_error, time=time)


def _samples_per_frame(settings: SerialSettings) -> int:
    """Samples a receiver takes per frame: start, data, parity, first stop bit."""
    return frame_bit_count(settings) - _stop_slots(settings) + 1


def decode_frame(
    levels: Sequence[int], settings: SerialSettings, *, time: float = 0.0
) -> RxChar | None:
    """Decode sampled levels when sender and receiver share rate and framing.

    ``levels`` are start, data, parity and the stop bit(s); only the first stop
    bit is looked at, as receivers do. None when the start bit reads as mark: a
    real receiver would not start a frame there (a ``UartReceiver`` fed the
    waveform shows what it makes of it instead).
    """
    low, high = _samples_per_frame(settings), frame_bit_count(settings)
    if not low <= len(levels) <= high:
        raise ConfigError(
            f"a {settings.framing} frame has {low} to {high} levels, not {len(levels)}"
        )
    if any(level not in (0, 1) for level in levels):
        raise ConfigError(f"levels must be 0 or 1, not {list(levels)!r}")
    if levels[0] == MARK:
        return None
    return _char(levels[1:low], settings, time)


def same_timing(tx: SerialSettings, rx: SerialSettings, tolerance: float = 0.01) -> bool:
    """Whether ``rx`` samples frames sent at ``tx`` correctly.

    True for equal bytesize and parity and baud rates within ``tolerance``
    (relative to the sender's). Stop bits may differ: a receiver samples only
    the first one. For 8N1 the stop sample, 9.5 bits after the edge, leaves
    the stop bit at about 0.5/9.5 = 5% rate difference: keep tolerances well
    below that.
    """
    if not 0 <= tolerance < 1:
        raise ConfigError(f"tolerance must be in [0, 1), not {tolerance!r}")
    return (
        tx.bytesize == rx.bytesize
        and tx.parity is rx.parity
        and abs(rx.baudrate - tx.baudrate) <= tolerance * tx.baudrate
    )


# --- the receiver --------------------------------------------------------------------

_HUNT_MARK = "waiting for mark"  # the stop bit (or a break) read as space
_HUNT_EDGE = "waiting for a start bit"  # the line is mark
HUNT_EDGE = _HUNT_EDGE  #: UartReceiver.state of a receiver idle between characters
_IN_FRAME = "sampling a frame"


def _ratio(seconds: Seconds, what: str) -> tuple[int, int]:
    """``seconds`` as an exact (numerator, denominator)."""
    if isinstance(seconds, Fraction):
        return seconds.numerator, seconds.denominator
    if isinstance(seconds, bool) or not isinstance(seconds, int | float):
        raise ConfigError(f"{what} must be a number of seconds, not {seconds!r}")
    if isinstance(seconds, int):
        return seconds, 1
    if not math.isfinite(seconds):
        raise ConfigError(f"{what} must be finite, not {seconds!r}")
    return seconds.as_integer_ratio()


def _exact(seconds: Seconds, what: str) -> Fraction:
    return Fraction(*_ratio(seconds, what))


class UartReceiver:
    """Samples a line waveform as a UART does, at its own settings.

    Feed the line as runs: ``feed(level, seconds)`` continues from where the
    last feed ended; the line starts idle (mark) at ``start_time``. Long runs
    cost the same as short ones.
    """

    # Time is counted in integer ticks of 1/_rate seconds; _rate grows (and the
    # counts with it) whenever a duration needs a finer tick, so nothing rounds.
    __slots__ = ("_edge", "_half", "_now", "_rate", "_samples", "_settings", "_size", "_state")

    def __init__(self, settings: SerialSettings, start_time: Seconds = 0.0) -> None:
        self._settings = settings
        self._size = _samples_per_frame(settings)
        num, den = _ratio(start_time, "start_time")
        self._rate = 2 * settings.baudrate * den  # ticks per second
        self._half = den  # ticks per half-bit
        self._now = num * 2 * settings.baudrate
        self._state = _HUNT_EDGE
        self._edge = self._now  # the falling edge of the frame being sampled
        self._samples: list[int] = []

    @property
    def settings(self) -> SerialSettings:
        return self._settings

    @property
    def now(self) -> float:
        """End of the waveform fed so far (seconds)."""
        return self._now / self._rate

    @property
    def now_exact(self) -> Fraction:
        return Fraction(self._now, self._rate)

    @property
    def state(self) -> str:
        """What the receiver is doing: waiting for mark, for a start bit, or in a frame."""
        return self._state

    @property
    def frame_end(self) -> Fraction | None:
        """When the frame being sampled takes its stop sample (None outside a frame)."""
        if self._state != _IN_FRAME:
            return None
        return Fraction(self._edge + (2 * self._size - 1) * self._half, self._rate)

    def _ticks(self, seconds: Seconds, what: str) -> int:
        num, den = _ratio(seconds, what)
        if self._rate % den:
            finer = den // math.gcd(self._rate, den)
            self._rate *= finer
            self._half *= finer
            self._now *= finer
            self._edge *= finer
        return num * (self._rate // den)

    def feed(self, level: int, duration: Seconds) -> list[RxChar]:
        """The line held ``level`` for ``duration`` seconds; the characters completed."""
        if level not in (MARK, SPACE):
            raise ConfigError(f"a line level is 0 (space) or 1 (mark), not {level!r}")
        length = self._ticks(duration, "duration")
        if length <= 0:
            if length < 0:
                raise ConfigError(f"duration must not be negative, not {duration!r}")
            return []
        start = self._now
        self._now = end = start + length
        if self._state == _HUNT_MARK:
            if level == MARK:
                self._state = _HUNT_EDGE
            return []
        if self._state == _HUNT_EDGE:
            if level == MARK:
                return []
            # The line was mark, so this run of space begins with a falling edge.
            self._state, self._edge, self._samples = _IN_FRAME, start, []
        # Sample k is taken 2k+1 half-bits after the edge; find the last one before `end`.
        before_end = (end - self._edge - 1) // self._half  # whole half-bits before end
        last = min((before_end - 1) // 2, self._size - 1)
        samples = self._samples
        if last < len(samples):
            return []
        if not samples and level == MARK:
            self._state = _HUNT_EDGE  # a glitch, not a start bit
            return []
        samples.extend([level] * (last + 1 - len(samples)))
        if len(samples) < self._size:
            return []
        self._state = _HUNT_EDGE if level == MARK else _HUNT_MARK
        stop_sample = self._edge + (2 * self._size - 1) * self._half
        return [_char(samples[1:], self._settings, stop_sample / self._rate)]

    def idle(self, until: Seconds) -> list[RxChar]:
        """The line is mark up to ``until`` (absolute); nothing happens if that is not later."""
        end = self._ticks(until, "until")
        if end <= self._now:
            return []
        return self.feed(MARK, Fraction(end - self._now, self._rate))

    def drain(self) -> list[RxChar]:
        """Hold the line at mark until the frame being sampled (if any) completes."""
        end = self.frame_end
        if end is None:
            return []
        return self.idle(end + Fraction(self._half, self._rate))


# --- the sender ----------------------------------------------------------------------


class UartTransmitter:
    """Builds a waveform at one end's settings: frames, idle gaps and breaks.

    ``take()`` hands out the runs built so far (adjacent runs of one level merged).
    """

    __slots__ = ("_runs", "_settings")

    def __init__(self, settings: SerialSettings) -> None:
        self._settings = settings
        self._runs: Waveform = []

    @property
    def duration(self) -> Fraction:
        """Seconds of waveform not taken yet."""
        return sum((length for _, length in self._runs), Fraction(0))

    def _append(self, level: int, length: Fraction) -> None:
        if length < 0:
            raise ConfigError(f"a duration must not be negative, not {float(length)}")
        if length == 0:
            return
        if self._runs and self._runs[-1][0] == level:
            self._runs[-1] = (level, self._runs[-1][1] + length)
        else:
            self._runs.append((level, length))

    def frame(self, value: int, *, flips: int = 0) -> None:
        for level, length in frame_waveform(value, self._settings, flips=flips):
            self._append(level, length)

    def write(self, data: bytes, *, gap: Seconds = 0.0) -> None:
        """Frames for ``data``, with ``gap`` seconds of idle between them."""
        pause = _exact(gap, "gap")
        for i, value in enumerate(data):
            if i:
                self._append(MARK, pause)
            self.frame(value)

    def idle(self, duration: Seconds) -> None:
        self._append(MARK, _exact(duration, "duration"))

    def send_break(self, duration: Seconds) -> None:
        """Hold the line at space (a break) for ``duration`` seconds."""
        self._append(SPACE, _exact(duration, "duration"))

    def take(self) -> Waveform:
        runs, self._runs = self._runs, []
        return runs


def transcode(
    data: bytes,
    tx: SerialSettings,
    rx: SerialSettings,
    *,
    start: Seconds = 0.0,
    gap: Seconds = 0.0,
) -> list[RxChar]:
    """What a receiver at ``rx`` gets from ``data`` sent at ``tx``.

    Frames go back to back with ``gap`` seconds of idle between them, and the
    line then stays idle until the receiver has finished.
    """
    sender = UartTransmitter(tx)
    sender.write(data, gap=gap)
    receiver = UartReceiver(rx, start)
    received: list[RxChar] = []
    for level, length in sender.take():
        received += receiver.feed(level, length)
    received += receiver.drain()
    return received
