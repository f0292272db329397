"""A bounded trace of what happens on a virtual wire, exported as VCD and as text.

The wire records into a :class:`WireTrace` as things happen:

- :meth:`WireTrace.waveform`: the bit-level waveform of a character frame on a
  1-bit signal (``"a.txd"``), as runs of ``(level, seconds)``;
- :meth:`WireTrace.level`: a 1-bit signal changes (``"a.rts"``, ``"b.cts"``,
  ``"a.break"``);
- :meth:`WireTrace.byte`: a character decoded at a receiver, on an 8-bit signal
  (``"b.rx"``), with an optional note (``"framing error"``);
- :meth:`WireTrace.note`: free text at a moment.

Times are absolute seconds on the wire's clock; exports show them relative to
``origin``: 0.0 unless given, so a wire whose clock starts at zero gets VCD
tick ``round(t * 1e9)`` at the default 1 ns timescale. A wire on
``time.monotonic()`` passes its start time as ``origin``, or ``origin=None``
to count from the earliest event kept. Events may be recorded
slightly out of time order; exports sort them stably by time.

The trace is bounded: it holds at most ``max_events`` units (an event counts
one, a waveform one per run of equal level). Past the bound the oldest events
go, :attr:`WireTrace.dropped` counts them, and the last values they set become
the starting values of the export, so the signals still start in the right
state.

:meth:`WireTrace.to_vcd` writes a Value Change Dump (IEEE 1364) that GTKWave
and PulseView (sigrok) open: a ``$scope`` per end (``a``, ``b``) holding
``txd`` (idle 1), ``rts``, ``dtr``, ``cts``, ``dsr``, ``dcd``, ``ri`` and
``break`` as 1-bit wires and ``rx`` as an 8-bit reg, plus any other signal the
trace used (``vectors=False`` writes ``rx`` as eight 1-bit wires for
PulseView on libsigrok 0.5). Repeated identical values are collapsed; a
received character equal to the one before it is shown by a one-tick ``z`` on
``rx`` just before it, so every character is a visible change. Notes are listed
with their times in the header's ``$comment``. :meth:`WireTrace.to_text`
writes one line per event, with each waveform summarised on one line.

Only :meth:`WireTrace.save_vcd` and :meth:`WireTrace.save_text` do I/O; the
rest is pure, for use inside the wire's sans-I/O core.
"""

from __future__ import annotations

import math
import numbers
import os
import re
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Literal, SupportsFloat

from serialhs import __version__
from serialhs.errors import ConfigError

__all__ = [
    "STANDARD_SIGNALS",
    "EventKind",
    "TraceEvent",
    "WireTrace",
    "vcd_identifier",
]

EventKind = Literal["waveform", "level", "byte", "note"]

#: The signals every VCD export declares, per end: (name, width in bits).
STANDARD_SIGNALS: tuple[tuple[str, int], ...] = (
    ("txd", 1),
    ("rts", 1),
    ("dtr", 1),
    ("cts", 1),
    ("dsr", 1),
    ("dcd", 1),
    ("ri", 1),
    ("break", 1),
    ("rx", 8),
)
_ENDS = ("a", "b")
#: Signals that idle at 1 (a UART line at rest is "mark").
_IDLE_HIGH = frozenset({"txd", "rxd"})
_SIGNAL_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*\.[A-Za-z_][A-Za-z0-9_]*$")
#: Runs one waveform may hold (a character frame has at most 13 bit times).
MAX_WAVEFORM_RUNS = 4096
_CONTROL_NAMES = {
    0x00: "NUL",
    0x03: "ETX",
    0x04: "EOT",
    0x07: "BEL",
    0x08: "BS",
    0x11: "XON",
    0x13: "XOFF",
    0x1B: "ESC",
    0x7F: "DEL",
}


@dataclass(frozen=True, slots=True)
class TraceEvent:
    """One recorded event.

    ``value`` is the level (0/1) for ``level``, the character for ``byte``, the
    final level for ``waveform`` and 0 for ``note``. ``runs`` holds a
    waveform's ``(level, seconds)`` runs, merged and without empty runs.
    ``signal`` is empty for notes; ``note`` holds a note's text or a byte's note.
    """

    t: float
    kind: EventKind
    signal: str
    value: int
    runs: tuple[tuple[int, float], ...] = ()
    note: str = ""

    @property
    def end(self) -> float:
        """When the event is over: ``t`` plus a waveform's duration."""
        return self.t + sum(duration for _, duration in self.runs)

    @property
    def weight(self) -> int:
        """How much of the bound the event takes: a waveform one per run."""
        return max(1, len(self.runs))


def vcd_identifier(index: int) -> str:
    """The ``index``-th VCD identifier code: ``!``, ``"``, ... ``~``, ``!!``, ``"!``, ...

    Codes use the printable ASCII characters 33..126, as the VCD format asks.
    """
    if index < 0:
        raise ValueError(f"identifier index must be >= 0, not {index}")
    chars: list[str] = []
    index += 1
    while index > 0:
        index -= 1
        chars.append(chr(33 + index % 94))
        index //= 94
    return "".join(chars)


_TIMESCALE_UNITS = ((1_000_000_000, "s"), (1_000_000, "ms"), (1_000, "us"), (1, "ns"))


def _timescale_text(timescale_ns: int) -> str:
    if (
        isinstance(timescale_ns, bool)
        or not isinstance(timescale_ns, int)
        or timescale_ns < 1
        or 10 ** round(math.log10(timescale_ns)) != timescale_ns
        or timescale_ns > 100_000_000_000
    ):
        raise ConfigError(
            f"timescale_ns must be a power of ten from 1 to 100000000000 (1 ns to 100 s), "
            f"not {timescale_ns!r}"
        )
    for size, unit in _TIMESCALE_UNITS:
        if timescale_ns >= size:
            return f"{timescale_ns // size}{unit}"
    raise AssertionError("unreachable")  # pragma: no cover


def _format_duration(seconds: float) -> str:
    if seconds >= 1:
        return f"{seconds:.6g} s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.6g} ms"
    if seconds >= 1e-6:
        return f"{seconds * 1e6:.6g} us"
    return f"{seconds * 1e9:.6g} ns"


def _describe_byte(value: int) -> str:
    if 0x20 <= value < 0x7F or value in (0x09, 0x0A, 0x0D):
        return f"0x{value:02x} {chr(value)!r}"
    name = _CONTROL_NAMES.get(value)
    return f"0x{value:02x} {name}" if name else f"0x{value:02x}"


def _frame_bits(runs: Sequence[tuple[int, float]]) -> tuple[str, float] | None:
    """A waveform as a bit string and bit time, when it looks like one character
    frame: the shortest run is taken as one bit, every run must be a whole
    number of bits (within 2 %) and the frame 7..13 bits long. Otherwise None
    (the runs are shown as they are rather than guessed at)."""
    unit = min(duration for _, duration in runs)
    counts = [duration / unit for _, duration in runs]
    if any(abs(count - round(count)) > 0.02 for count in counts):
        return None
    if not 7 <= sum(round(count) for count in counts) <= 13:
        return None
    pattern = zip(runs, counts, strict=True)
    return "".join(str(level) * round(count) for (level, _), count in pattern), unit


def _one_line(text: str) -> str:
    """Text safe inside a VCD section: one line of ASCII without ``$`` (readers
    end a section at the first ``$end``, some even inside a word)."""
    ascii_text = text.encode("ascii", "backslashreplace").decode("ascii")
    return " ".join(ascii_text.replace("$", "").split())


#: One value change for the VCD writer: (tick, rank, sub, signal, value or None for z).
_Change = tuple[int, int, int, str, int | None]


def _change_order(change: _Change) -> tuple[int, int, int]:
    return change[0], change[1], change[2]


class WireTrace:
    """A bounded, time-stamped record of a wire's signals (see the module docstring)."""

    def __init__(self, *, max_events: int = 1_000_000, origin: float | None = 0.0) -> None:
        if isinstance(max_events, bool) or not isinstance(max_events, int) or max_events < 1:
            raise ConfigError(f"max_events must be a positive integer, not {max_events!r}")
        if origin is not None and (
            isinstance(origin, bool)
            or not isinstance(origin, int | float)
            or not math.isfinite(origin)
        ):
            raise ConfigError(f"origin must be a finite time in seconds or None, not {origin!r}")
        self._max = max_events
        self._origin = None if origin is None else float(origin)
        self._events: deque[TraceEvent] = deque()
        self._weight = 0
        self._dropped = 0
        self._widths: dict[str, int] = {}
        self._base: dict[str, int] = {}
        self._reset_signals()

    # -- state ------------------------------------------------------------------------

    @property
    def max_events(self) -> int:
        """The bound: at most this many units (events, waveform runs) are kept."""
        return self._max

    @property
    def origin(self) -> float | None:
        """The time exports count from (VCD tick 0, text ``+0``); None: from the
        earliest event kept."""
        return self._origin

    def _export_origin(self, events: Sequence[TraceEvent]) -> float:
        if self._origin is not None:
            return self._origin
        return events[0].t if events else 0.0

    @property
    def dropped(self) -> int:
        """How many of the oldest events were discarded to keep within the bound."""
        return self._dropped

    def __len__(self) -> int:
        return len(self._events)

    def events(self) -> list[TraceEvent]:
        """The kept events, sorted stably by time."""
        return sorted(self._events, key=lambda event: event.t)

    def signals(self) -> dict[str, int]:
        """Every signal the VCD export declares, with its width in bits."""
        return dict(self._widths)

    def clear(self) -> None:
        """Forget every event, the dropped count and any extra signals."""
        self._events.clear()
        self._weight = 0
        self._dropped = 0
        self._base.clear()
        self._reset_signals()

    def _reset_signals(self) -> None:
        self._widths = {f"{end}.{name}": width for end in _ENDS for name, width in STANDARD_SIGNALS}

    # -- recording --------------------------------------------------------------------

    def waveform(
        self, t: float, signal: str, segments: Sequence[tuple[int, SupportsFloat]]
    ) -> None:
        """Record a bit-level waveform on the 1-bit ``signal`` starting at ``t``:
        ``(level, seconds)`` runs, e.g. a character frame on ``"a.txd"``. Seconds
        may be any real number (``float``, ``int``, ``fractions.Fraction``).

        Runs of zero length are left out and neighbouring runs of the same level
        merged. After the waveform the signal keeps its last level.
        """
        self._check_time(t)
        self._check_signal(signal, 1)
        runs: list[tuple[int, float]] = []
        if isinstance(segments, str | bytes) or len(segments) == 0:
            raise ConfigError(f"waveform on {signal}: no (level, seconds) runs given")
        for index, segment in enumerate(segments):
            try:
                level, duration = segment
            except (TypeError, ValueError):
                raise ConfigError(
                    f"waveform on {signal}: run {index + 1} is {segment!r}, not (level, seconds)"
                ) from None
            if level not in (0, 1) or isinstance(level, float):
                raise ConfigError(
                    f"waveform on {signal}: run {index + 1} has level {level!r}; use 0 or 1"
                )
            if (
                isinstance(duration, bool)
                or not isinstance(duration, numbers.Real)
                or not math.isfinite(duration)
                or duration < 0
            ):
                raise ConfigError(
                    f"waveform on {signal}: run {index + 1} lasts {duration!r}; "
                    "durations are seconds >= 0"
                )
            if duration == 0:
                continue
            bit = int(level)
            if runs and runs[-1][0] == bit:
                runs[-1] = (bit, runs[-1][1] + float(duration))
            else:
                runs.append((bit, float(duration)))
        if not runs:
            raise ConfigError(f"waveform on {signal}: every run has zero length")
        if len(runs) > MAX_WAVEFORM_RUNS:
            raise ConfigError(
                f"waveform on {signal}: {len(runs)} runs; record at most "
                f"{MAX_WAVEFORM_RUNS} per call (one character frame each)"
            )
        self._add(TraceEvent(float(t), "waveform", signal, runs[-1][0], tuple(runs)))

    def level(self, t: float, signal: str, value: bool) -> None:
        """Record that the 1-bit ``signal`` (``"a.rts"``, ``"a.break"``) became ``value``."""
        self._check_time(t)
        self._check_signal(signal, 1)
        if value not in (0, 1) or isinstance(value, float):
            raise ConfigError(f"level of {signal} must be True or False, not {value!r}")
        self._add(TraceEvent(float(t), "level", signal, int(value)))

    def byte(self, t: float, signal: str, value: int, *, note: str = "") -> None:
        """Record a character decoded on the 8-bit ``signal`` (``"b.rx"``), with an
        optional ``note`` such as ``"framing error"``."""
        self._check_time(t)
        self._check_signal(signal, 8)
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 0xFF:
            raise ConfigError(f"character on {signal} must be an int 0..255, not {value!r}")
        self._add(TraceEvent(float(t), "byte", signal, value, note=str(note)))

    def note(self, t: float, text: str) -> None:
        """Record free text at time ``t``."""
        self._check_time(t)
        self._add(TraceEvent(float(t), "note", "", 0, note=str(text)))

    def _check_time(self, t: float) -> None:
        if isinstance(t, bool) or not isinstance(t, numbers.Real) or not math.isfinite(t):
            raise ConfigError(f"trace time must be finite seconds, not {t!r}")
        if self._origin is not None and t < self._origin:
            raise ConfigError(
                f"trace time {t!r} is before the trace's origin {self._origin!r}; "
                "give WireTrace(origin=...) the wire's start time"
            )

    def _check_signal(self, signal: str, width: int) -> None:
        known = self._widths.get(signal)
        if known is None:
            if not isinstance(signal, str) or not _SIGNAL_RE.match(signal):
                raise ConfigError(
                    f"bad signal name {signal!r}; write SCOPE.NAME with letters, digits "
                    "and '_', e.g. 'a.rts'"
                )
            self._widths[signal] = width
        elif known != width:
            kinds = {1: "a 1-bit signal", 8: "an 8-bit signal"}
            raise ConfigError(
                f"{signal} is {kinds[known]}; it cannot also be recorded as {kinds[width]}"
            )

    def _add(self, event: TraceEvent) -> None:
        weight = event.weight
        if weight > self._max:
            self._dropped += 1
            self._remember(event)
            return
        self._events.append(event)
        self._weight += weight
        while self._weight > self._max:
            old = self._events.popleft()
            self._weight -= old.weight
            self._dropped += 1
            self._remember(old)

    def _remember(self, event: TraceEvent) -> None:
        """Keep the last value a discarded event set, as the exports' start value."""
        if event.kind != "note":
            self._base[event.signal] = event.value

    # -- VCD ----------------------------------------------------------------------------

    def _initial(self, signal: str) -> int:
        if signal in self._base:
            return self._base[signal]
        return 1 if signal.partition(".")[2] in _IDLE_HIGH else 0

    def _changes(
        self, events: Sequence[TraceEvent], origin: float, per_second: float
    ) -> tuple[list[_Change], list[tuple[float, str]], int]:
        """Every value change as ``(tick, rank, sub, signal, value)``, sorted (a
        ``value`` of None stands for 'z'); the notes as ``(t, text)``; and the
        last tick anything lasts to."""
        changes: list[_Change] = []
        notes: list[tuple[float, str]] = []
        last_tick = 0
        for rank, event in enumerate(events):
            tick = round((event.t - origin) * per_second)
            if event.kind == "waveform":
                moment = event.t
                for sub, (level, duration) in enumerate(event.runs):
                    changes.append(
                        (round((moment - origin) * per_second), rank, sub, event.signal, level)
                    )
                    moment += duration
                last_tick = max(last_tick, round((moment - origin) * per_second))
            elif event.kind == "note":
                notes.append((event.t, event.note))
            else:
                changes.append((tick, rank, 0, event.signal, event.value))
                if event.note:
                    notes.append(
                        (event.t, f"{event.signal} {_describe_byte(event.value)}: {event.note}")
                    )
            last_tick = max(last_tick, tick)
        changes.sort(key=_change_order)

        # A character equal to the one before it on the same 8-bit signal gets a
        # one-tick 'z' just before it, so that it shows as a change.
        extra: list[_Change] = []
        previous: dict[str, tuple[int, int]] = {}
        for tick, rank, _sub, signal, value in changes:
            if value is None or self._widths.get(signal) != 8:
                continue
            before = previous.get(signal, (-1, self._initial(signal)))
            if before[1] == value and tick - 1 > before[0]:
                extra.append((tick - 1, rank, -1, signal, None))
            previous[signal] = (tick, value)
        if extra:
            changes.extend(extra)
            changes.sort(key=_change_order)
        return changes, notes, last_tick

    def to_vcd(
        self, *, timescale_ns: int = 1, date: str | None = None, vectors: bool = True
    ) -> str:
        """The trace as a Value Change Dump (see the module docstring).

        ``timescale_ns`` is the length of one tick (a power of ten: 1, 10, 100,
        1000 ...); times are rounded to it. ``date`` fills ``$date`` (None keeps
        the text deterministic; :meth:`save_vcd` puts in the current date).

        With ``vectors=False`` every 8-bit signal is written as eight 1-bit
        wires ``rx[0]`` .. ``rx[7]`` instead of one 8-bit reg: PulseView built
        on libsigrok 0.5 (the one in Debian 12) reads only 1-bit signals and
        stops reading at the first multi-bit value. GTKWave reads both forms.

        Notes (and the notes of received characters) are listed with their
        times in a ``$comment`` in the header, not among the value changes,
        where libsigrok 0.5 would stop reading too.
        """
        unit = _timescale_text(timescale_ns)
        per_second = 1e9 / timescale_ns
        events = self.events()
        origin = self._export_origin(events)
        changes, notes, last_tick = self._changes(events, origin, per_second)

        # Declarations: a scope per end (a, b first), standard signals first.
        ordered = sorted(
            self._widths.items(),
            key=lambda item: (
                item[0].partition(".")[0] not in _ENDS,
                item[0].partition(".")[0],
            ),
        )
        codes: dict[str, list[str]] = {}
        declarations: dict[str, list[str]] = {}
        counter = 0
        for signal, width in ordered:
            scope, _, name = signal.partition(".")
            lines = declarations.setdefault(scope, [])
            if width == 1 or vectors:
                code = vcd_identifier(counter)
                counter += 1
                codes[signal] = [code]
                kind = "wire" if width == 1 else "reg"
                lines.append(f"$var {kind} {width} {code} {name} $end")
            else:
                bits = [vcd_identifier(counter + bit) for bit in range(width)]
                counter += width
                codes[signal] = bits
                lines.extend(
                    f"$var wire 1 {code} {name}[{bit}] $end" for bit, code in enumerate(bits)
                )

        out: list[str] = [
            "$date",
            f"\t{_one_line(date) if date else 'not recorded'}",
            "$end",
            "$version",
            f"\tserialhs {__version__} wire trace",
            "$end",
            "$comment",
            f"\ttimes from origin {origin!r} s; {len(events)} events kept, "
            f"{self._dropped} earlier events dropped (bound {self._max})",
        ]
        if notes:
            out.append("\tnotes:")
            out.extend(f"\t+{t - origin:.9f} {_one_line(text)}" for t, text in notes)
        out += ["$end", f"$timescale {unit} $end"]
        for scope, lines in declarations.items():
            out.append(f"$scope module {scope} $end")
            out.extend(lines)
            out.append("$upscope $end")
        out.append("$enddefinitions $end")

        def value_lines(
            signal: str, old: int | None, new: int | None, *, full: bool = False
        ) -> list[str]:
            ids = codes[signal]
            if len(ids) == 1:
                if self._widths[signal] == 1:
                    return [f"{'z' if new is None else new}{ids[0]}"]
                return [f"b{'z' if new is None else format(new, 'b')} {ids[0]}"]
            shown = []
            for bit, code in enumerate(ids):
                now = "z" if new is None else str((new >> bit) & 1)
                then = "z" if old is None else str((old >> bit) & 1)
                if full or now != then:
                    shown.append(f"{now}{code}")
            return shown

        current: dict[str, int | None] = {signal: self._initial(signal) for signal in codes}
        position = 0
        while position < len(changes) and changes[position][0] <= 0:
            _, _, _, signal, value = changes[position]
            current[signal] = value
            position += 1
        out.append("#0")
        out.append("$dumpvars")
        for signal, value in current.items():
            out.extend(value_lines(signal, value, value, full=True))
        out.append("$end")

        emitted_tick = 0
        index = position
        while index < len(changes):
            tick = changes[index][0]
            final: dict[str, int | None] = {}
            while index < len(changes) and changes[index][0] == tick:
                final[changes[index][3]] = changes[index][4]
                index += 1
            lines_now: list[str] = []
            for signal, value in final.items():
                if current[signal] != value:
                    lines_now.extend(value_lines(signal, current[signal], value))
                    current[signal] = value
            if lines_now:
                out.append(f"#{tick}")
                out.extend(lines_now)
                emitted_tick = tick
        # A closing time stamp after the last change: readers that sample (sigrok)
        # only show a change that lasts until a later time stamp.
        if changes or last_tick:
            out.append(f"#{max(last_tick, emitted_tick + 1)}")
        return "\n".join(out) + "\n"

    def save_vcd(
        self, path: str | os.PathLike[str], *, timescale_ns: int = 1, vectors: bool = True
    ) -> None:
        """Write :meth:`to_vcd` to ``path``, with the current date in ``$date``."""
        date = datetime.now().astimezone().strftime("%Y-%m-%d %H:%M:%S %z")
        text = self.to_vcd(timescale_ns=timescale_ns, date=date, vectors=vectors)
        Path(path).write_text(text, encoding="ascii", errors="replace")

    # -- text ---------------------------------------------------------------------------

    def to_text(self) -> str:
        """One line per event, sorted by time (``+SECONDS SIGNAL VALUE``)::

        +0.001000000 a.txd frame 0100000101 (10 bits of 104.167 us)
        +0.002000000 a.rts 1
        +0.002100000 b.rx 0x41 'A'
        +0.002200000 b.rx 0x41 'A' (framing error)
        +0.003000000 note: modem answers
        """
        events = self.events()
        origin = self._export_origin(events)
        header = f"# serialhs wire trace: {len(events)} events, seconds from {origin!r}"
        if self._dropped:
            header += f"; {self._dropped} earlier events dropped (bound {self._max})"
        lines = [header]
        for event in events:
            stamp = f"+{event.t - origin:.9f}"
            if event.kind == "level":
                lines.append(f"{stamp} {event.signal} {event.value}")
            elif event.kind == "byte":
                extra = f" ({event.note})" if event.note else ""
                lines.append(f"{stamp} {event.signal} {_describe_byte(event.value)}{extra}")
            elif event.kind == "note":
                lines.append(f"{stamp} note: {' '.join(event.note.split())}")
            else:
                lines.append(f"{stamp} {event.signal} {_summarise_waveform(event.runs)}")
        return "\n".join(lines) + "\n"

    def save_text(self, path: str | os.PathLike[str]) -> None:
        """Write :meth:`to_text` to ``path`` (UTF-8)."""
        Path(path).write_text(self.to_text(), encoding="utf-8")


def _summarise_waveform(runs: Sequence[tuple[int, float]]) -> str:
    frame = _frame_bits(runs)
    if frame is not None:
        bits, unit = frame
        return f"frame {bits} ({len(bits)} bits of {_format_duration(unit)})"
    total = sum(duration for _, duration in runs)
    shown = ", ".join(f"{level} for {_format_duration(d)}" for level, d in runs[:8])
    more = f", ... {len(runs) - 8} more runs" if len(runs) > 8 else ""
    return f"waveform {shown}{more} ({_format_duration(total)} in all)"
