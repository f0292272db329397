"""The virtual wire's core: two UARTs and a cable, sans I/O.

The runtime (wire.py) feeds it what the programs on the two ends do — bytes
written, RTS/DTR set, settings changed, break — each with the time it happened,
and asks it when it next needs attention (:meth:`WireCore.get_timer`). The core
answers with events: bytes to hand to an end, an end's control lines changed, a
break arrived. It never reads a clock, sleeps or touches a file.

Per direction (sender s -> receiver r):

1. ``transmit`` queues bytes (bounded: :meth:`tx_room` says how many more fit;
   the runtime stops reading the sender when it is 0, which backs the sender up
   exactly as a full UART transmit FIFO does).
2. Pacing: characters go on the line back to back at the sender's character
   time (start + data + parity + stop bits at its baud rate), none before it is
   written, none while the sender is held back by flow control (RTS/CTS: the
   sender's CTS input; XON/XOFF: an XOFF received; or, with overflow="block",
   a full receiver).
3. Faults (seeded, per direction) drop, duplicate or flip bits of characters.
4. The receiver's UART: when both ends have the same timing and framing, the
   character passes as it is (the fast path); otherwise the sender's waveform
   is sampled at the receiver's rate, giving the wrong bytes, framing and
   parity errors a real UART gives.
5. Delivery after the character's last bit (plus latency and jitter, order
   kept), mapped through the receiver's termios input flags (how a UART driver
   reports errors and breaks), into a bounded backlog: past ``rx_limit`` the
   receiver overruns (counted) unless flow control or overflow="block" holds the
   sender back first (a burst the runtime delivers late after a stall is
   excused for as long as it was late).
"""

from __future__ import annotations

import collections
import dataclasses
import enum
from collections.abc import Mapping
from typing import Literal

from serialhs.driver.lines import INPUT_LINES, Line, Lines
from serialhs.driver.settings import FlowControl, SerialSettings
from serialhs.errors import ConfigError
from serialhs.sim import uart
from serialhs.sim.faults import FaultInjector, FaultSpec
from serialhs.sim.trace import WireTrace
from serialhs.sim.wiring import Wiring

__all__ = [
    "END_NAMES",
    "BreakArrived",
    "Deliver",
    "End",
    "Event",
    "LinesChanged",
    "Overflow",
    "RxPolicy",
    "WireCore",
    "WireStats",
]

End = Literal["a", "b"]
END_NAMES: tuple[End, End] = ("a", "b")
_OTHER: dict[End, End] = {"a": "b", "b": "a"}

XON = 0x11
XOFF = 0x13
#: A delivery later than this many characters' time means the runtime stalled
#: (a loaded machine), not that the receiving program was slow (see _deliver_due).
STALL_CHARS = 8
#: byte translation tables that keep the low n bits (a receiver with n data bits)
_MASKS = {n: bytes(b & ((1 << n) - 1) for b in range(256)) for n in (5, 6, 7, 8)}


class Overflow(enum.Enum):
    """What a full receiver does to a sender that no flow control holds back."""

    OVERRUN = "overrun"  #: drop what does not fit, and count it (a UART FIFO overrun)
    BLOCK = "block"  #: hold the sender back (a lab convenience; real UARTs overrun)


# -- events ---------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class Deliver:
    """Bytes for the program on ``end`` to read."""

    end: End
    data: bytes


@dataclasses.dataclass(frozen=True, slots=True)
class LinesChanged:
    """The control lines seen at ``end`` changed (its inputs, or its own outputs)."""

    end: End
    lines: Lines


@dataclasses.dataclass(frozen=True, slots=True)
class BreakArrived:
    """The receiver on ``end`` detected a break."""

    end: End


Event = Deliver | LinesChanged | BreakArrived


# -- how a receiver reports what its UART sampled ------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class RxPolicy:
    """The termios input flags that decide how errors and breaks reach the reader."""

    inpck: bool = False  #: check parity at all
    ignpar: bool = False  #: drop characters with parity or framing errors
    parmrk: bool = False  #: mark errors as \\377 \\0 <char>, a break as \\377 \\0 \\0
    ignbrk: bool = False  #: drop breaks
    istrip: bool = False  #: strip the eighth bit

    def render(self, char: uart.RxChar) -> bytes:
        if char.is_break:
            if self.ignbrk:
                return b""
            return b"\xff\x00\x00" if self.parmrk else b"\x00"
        error = char.framing_error or (char.parity_error and self.inpck)
        value = char.value & 0x7F if self.istrip else char.value
        if error:
            if self.ignpar:
                return b""
            return b"\xff\x00" + bytes([value]) if self.parmrk else b"\x00"
        if value == 0xFF and self.parmrk:
            return b"\xff\xff"
        return bytes([value])


@dataclasses.dataclass(slots=True)
class WireStats:
    """What one end's receiver counted."""

    received: int = 0  #: characters sampled
    framing_errors: int = 0
    parity_errors: int = 0
    breaks: int = 0
    overruns: int = 0  #: characters lost because the receiver was full
    dropped: int = 0  #: characters lost to injected faults
    noise: int = 0  #: characters made of idle-line noise

    def as_dict(self) -> dict[str, int]:
        return dataclasses.asdict(self)


# -- state --------------------------------------------------------------------------


@dataclasses.dataclass(slots=True)
class _EndState:
    settings: SerialSettings
    rts: bool = False
    dtr: bool = False
    driven: dict[Line, bool] = dataclasses.field(default_factory=dict)
    inputs: dict[Line, bool] = dataclasses.field(default_factory=dict)
    policy: RxPolicy = dataclasses.field(default_factory=RxPolicy)
    backlog: int = 0  #: bytes delivered and not yet read (as last reported, plus since)
    #: bytes delivered since the runtime last stalled (a burst delivered late, and what
    #: followed it), not counted against rx_limit until ``excused_until``: the program
    #: gets as long to read them as the runtime was late
    excused: int = 0
    excused_until: float = 0.0
    throttled: bool = False  #: the receiver's buffer is high: its UART drops RTS / sends XOFF
    break_on: bool = False
    break_start: float = 0.0
    stats: WireStats = dataclasses.field(default_factory=WireStats)

    def lines(self) -> Lines:
        i = self.inputs
        return Lines(
            rts=self.rts,
            dtr=self.dtr,
            cts=i.get(Line.CTS, False),
            dsr=i.get(Line.DSR, False),
            dcd=i.get(Line.DCD, False),
            ri=i.get(Line.RI, False),
        )


@dataclasses.dataclass(slots=True)
class _Due:
    """Received characters waiting for their delivery time: either one sampled
    character (``char``), or a run of clean bytes (``data``) whose i-th byte is due
    at ``at + i * step`` (the fast path: one entry for many characters)."""

    at: float
    step: float = 0.0
    data: bytes = b""
    char: uart.RxChar | None = None

    @property
    def last(self) -> float:
        return self.at + max(len(self.data) - 1, 0) * self.step


class _Direction:
    """One direction of the wire: sender ``src`` to receiver ``dst``."""

    def __init__(self, src: End, dst: End, injector: FaultInjector | None, start: float) -> None:
        self.src = src
        self.dst = dst
        self.txq = bytearray()
        self.line_free_at = start  #: when the character on the line (if any) ends
        self.injector = injector
        self.receiver: uart.UartReceiver | None = None  #: for mismatched timing only
        self.xoff = False  #: the sender was told XOFF
        #: what the receiver gets, in time order (a cable never reorders)
        self.pending: collections.deque[_Due] = collections.deque()
        self.last_delivery = start
        self.noise_mark = start  #: idle time up to here has had its noise drawn
        self.noise_at: float | None = None  #: when the next idle slot ends


class WireCore:
    """Two ends of a serial cable. See the module docstring."""

    def __init__(
        self,
        *,
        wiring: Wiring,
        settings: SerialSettings | Mapping[End, SerialSettings] | None = None,
        faults: FaultSpec | Mapping[str, FaultSpec] | None = None,
        seed: int = 0,
        paced: bool = True,
        tx_limit: int = 4096,
        rx_limit: int = 4096,
        overflow: Overflow | str | None = None,
        trace: WireTrace | None = None,
        start: float = 0.0,
        max_baud: int | None = None,
    ) -> None:
        if tx_limit < 1 or rx_limit < 16:
            raise ConfigError("tx_limit must be at least 1 and rx_limit at least 16 bytes")
        self.wiring = wiring
        self.paced = paced
        self.tx_limit = tx_limit
        self.rx_limit = rx_limit
        # An unpaced wire is a pipe: by default it holds a sender back rather than
        # overrun (a real line is paced, so there the default is the UART's overrun).
        if overflow is None:
            overflow = Overflow.OVERRUN if paced else Overflow.BLOCK
        self.overflow = Overflow(overflow)
        self.trace = trace
        self.seed = seed
        #: the fastest rate the cable carries: characters sent faster arrive as
        #: framing errors (a long or poor cable; what line training must find)
        self.max_baud = max_baud
        self.now = start
        initial = settings if isinstance(settings, Mapping) else None
        default = settings if isinstance(settings, SerialSettings) else SerialSettings()
        self._ends: dict[End, _EndState] = {
            end: _EndState(settings=(initial or {}).get(end, default)) for end in END_NAMES
        }
        specs = _fault_specs(faults)
        self._dirs: dict[End, _Direction] = {}
        for src in END_NAMES:
            dst = src if wiring.data == "loopback" else _OTHER[src]
            spec = specs.get(f"{src}>{dst}") or specs.get("*")
            injector = FaultInjector(spec, seed=seed, stream=f"{src}>{dst}") if spec else None
            self._dirs[src] = _Direction(src, dst, injector, start)
        self._events: list[Event] = []
        self._recompute_lines(start, initial=True)

    # -- what the runtime asks --------------------------------------------------------

    def events(self) -> list[Event]:
        """Take the events produced so far."""
        out, self._events = self._events, []
        return out

    def lines(self, end: End) -> Lines:
        return self._ends[end].lines()

    def settings(self, end: End) -> SerialSettings:
        return self._ends[end].settings

    def stats(self, end: End) -> WireStats:
        return self._ends[end].stats

    def tx_idle(self, end: End, now: float) -> bool:
        """Has ``end``'s transmitter sent the last bit of everything written?"""
        self.handle_timer(now)
        d = self._dirs[end]
        return not d.txq and d.line_free_at <= now

    def tx_room(self, end: End) -> int:
        """How many more bytes ``end`` may transmit now."""
        return max(0, self.tx_limit - len(self._dirs[end].txq))

    def get_timer(self) -> float | None:
        """When the core next needs :meth:`handle_timer`, or None."""
        times: list[float] = []
        for d in self._dirs.values():
            if d.pending:
                times.append(d.pending[0].at)
            if d.txq and not self._held(d):
                times.append(d.line_free_at if self.paced else self.now)
            if d.receiver is not None and d.receiver.frame_end is not None:
                times.append(float(d.receiver.frame_end))
            if d.noise_at is not None:
                times.append(d.noise_at)
        return min(times) if times else None

    # -- what the programs do -----------------------------------------------------------

    def transmit(self, end: End, data: bytes, now: float) -> int:
        """Bytes written by the program on ``end``. Returns how many were taken
        (at most :meth:`tx_room`)."""
        self.handle_timer(now)
        d = self._dirs[end]
        take = data[: self.tx_room(end)]
        if take:
            d.line_free_at = max(d.line_free_at, now)  # an idle line starts the next character now
            d.txq.extend(take)
            self._pump(d, now)
        return len(take)

    def set_outputs(
        self, end: End, now: float, *, rts: bool | None = None, dtr: bool | None = None
    ) -> None:
        """The program on ``end`` set RTS and/or DTR."""
        self.handle_timer(now)
        before = self._snapshot()
        state = self._ends[end]
        if rts is not None:
            state.rts = rts
        if dtr is not None:
            state.dtr = dtr
        self._recompute_lines(now, before)

    def drive(self, end: End, line: Line, state: bool | None, now: float) -> None:
        """An emulated device holds an input of ``end`` (DCD, RI, ...) on or off;
        None hands the line back to the wiring."""
        if line not in INPUT_LINES:
            raise ConfigError(f"only inputs (CTS, DSR, DCD, RI) can be driven, not {line.name}")
        self.handle_timer(now)
        before = self._snapshot()
        driven = self._ends[end].driven
        if state is None:
            driven.pop(line, None)
        else:
            driven[line] = state
        self._recompute_lines(now, before)

    def set_settings(self, end: End, settings: SerialSettings, now: float) -> None:
        """The program on ``end`` changed its baud rate, framing or flow control."""
        self.handle_timer(now)
        state = self._ends[end]
        if settings == state.settings:
            return
        state.settings = settings
        for d in self._dirs.values():
            if end in (d.src, d.dst):
                d.receiver = None  # re-synchronise on the next character
        if self.trace is not None:
            self.trace.note(now, f"{end} settings {settings}")
        self._update_throttle(end, now)
        self._pump_all(now)

    def set_policy(self, end: End, policy: RxPolicy) -> None:
        self._ends[end].policy = policy

    def set_break(self, end: End, on: bool, now: float) -> None:
        """The program on ``end`` started or ended a break (a continuous space)."""
        self.handle_timer(now)
        state = self._ends[end]
        if on == state.break_on:
            return
        d = self._dirs[end]
        if self.trace is not None:
            self.trace.level(now, f"{end}.break", on)
        if on:
            state.break_on = True
            state.break_start = max(now, d.line_free_at) if self.paced else now
            return
        state.break_on = False
        start = state.break_start
        duration = max(now - start, 0.0)
        rx = self._ends[d.dst].settings
        if self._exact(d):
            receiver = self._receiver(d, start)
            for char in receiver.feed(uart.SPACE, duration):
                self._schedule(d, char.time, char)
        elif duration >= rx.char_time or not self.paced:
            # A receiver reports a break once the line has stayed space for a whole frame.
            at = start + rx.char_time
            self._schedule(d, at, uart.RxChar(0, True, False, True, at))
        d.line_free_at = max(d.line_free_at, now)
        self._pump(d, now)

    def set_backlog(self, end: End, size: int, now: float) -> None:
        """How many delivered bytes the program on ``end`` has not read yet."""
        self._ends[end].backlog = size
        self._update_throttle(end, now)
        self._pump_all(now)

    def handle_timer(self, now: float) -> None:
        """Do everything due up to ``now``."""
        now = max(now, self.now)  # time never runs backwards inside the core
        self.now = now
        self._pump_all(now)
        for d in self._dirs.values():
            if d.receiver is not None:
                for char in d.receiver.idle(now):
                    self._schedule(d, char.time, char)
            self._noise(d, now)
            self._deliver_due(d, now)

    # -- the transmit side ------------------------------------------------------------

    def _held(self, d: _Direction) -> bool:
        """Is the sender held back right now?"""
        src = self._ends[d.src]
        if src.break_on:
            return True
        flow = src.settings.flow
        if flow is FlowControl.RTSCTS and not src.inputs.get(Line.CTS, False):
            return True
        if flow is FlowControl.XONXOFF and d.xoff:
            return True
        dst = self._ends[d.dst]
        return self.overflow is Overflow.BLOCK and dst.backlog >= self.rx_limit

    def _pump_all(self, now: float) -> None:
        for d in self._dirs.values():
            self._pump(d, now)

    def _pump(self, d: _Direction, now: float) -> None:
        """Put queued characters on the line, back to back, up to ``now``.

        Whether the sender is held back cannot change inside one call (line changes,
        XOFF and backlog reports all come in through calls that pump first), so it
        is checked once."""
        if not d.txq or self._held(d):
            if d.txq and d.line_free_at < now:
                d.line_free_at = now  # held: the next character starts when released
            return
        char_time = self._ends[d.src].settings.char_time if self.paced else 0.0
        if not self.paced:
            d.line_free_at = max(d.line_free_at, self.now)
        elif d.line_free_at > now:
            return
        # How many characters start by ``now`` (all of them when unpaced).
        count = len(d.txq)
        if self.paced:
            count = min(count, int((now - d.line_free_at) / char_time) + 1)
        chunk = bytes(d.txq[:count])
        del d.txq[:count]
        start = d.line_free_at
        d.line_free_at = start + count * char_time
        if self._fast(d):
            self._schedule_run(d, start + char_time, char_time, chunk)
            return
        i = 0
        while i < count:
            clean = self._clean_run(d, count - i, start + i * char_time)
            if clean:  # characters no bit error touches pass as bytes
                self._schedule_run(d, start + (i + 1) * char_time, char_time, chunk[i : i + clean])
                i += clean
                continue
            begin = start + i * char_time
            self._on_line(d, chunk[i], begin, begin + char_time)
            i += 1

    def _fast(self, d: _Direction) -> bool:
        """Can characters pass as bytes (same timing and framing, no faults, no trace)?"""
        return (
            d.injector is None
            and self.trace is None
            and not self._exact(d)
            and not self._too_fast(d)
        )

    def _clean_run(self, d: _Direction, limit: int, begin: float) -> int:
        """With bit errors the only fault, and a receiver that is waiting for a start
        bit in step with the sender, the characters before the next bit error
        cannot be mis-framed: how many of them there are (0: sample the next one)."""
        injector = d.injector
        if injector is None or self.trace is not None or self._too_fast(d):
            return 0
        spec = injector.spec
        if spec.latency or spec.jitter:
            return 0
        tx, rx = self._ends[d.src].settings, self._ends[d.dst].settings
        receiver = d.receiver
        if not uart.same_timing(tx, rx) or (
            receiver is not None
            and (receiver.state != uart.HUNT_EDGE or receiver.now > begin + 1e-9)
        ):
            return 0
        return injector.clean_characters(limit, uart.frame_bit_count(tx))

    def _too_fast(self, d: _Direction) -> bool:
        rate = self._ends[d.src].settings.baudrate
        return self.paced and self.max_baud is not None and rate > self.max_baud

    def _schedule_run(self, d: _Direction, first: float, step: float, data: bytes) -> None:
        rx = self._ends[d.dst].settings
        if rx.bytesize < 8:
            data = data.translate(_MASKS[rx.bytesize])
        first = max(first, d.last_delivery)
        due = _Due(first, step, data)
        d.last_delivery = due.last
        d.pending.append(due)

    def _exact(self, d: _Direction) -> bool:
        """Must this direction's characters go through a sampling receiver? Yes when
        the two ends' timing or framing differ, or faults can flip bits (a flipped
        start or stop bit also mis-frames the next character)."""
        tx = self._ends[d.src].settings
        rx = self._ends[d.dst].settings
        garbles = d.injector is not None and d.injector.spec.garbles
        return self.paced and (garbles or not uart.same_timing(tx, rx))

    def _on_line(self, d: _Direction, value: int, start: float, end: float) -> None:
        """One character from the sender's UART, on the line from ``start`` to ``end``."""
        tx = self._ends[d.src].settings
        rx = self._ends[d.dst].settings
        if self.trace is not None and self.paced:
            self.trace.waveform(start, f"{d.src}.txd", uart.frame_waveform(value, tx))
        if self._too_fast(d):
            self._schedule(d, end, uart.RxChar(0, True, False, False, end))
            return
        if d.injector is None:
            chars: list[tuple[int, int]] = [(value, 0)]
        else:
            chars = d.injector.characters(bytes([value]), uart.frame_bit_count(tx))
            if not chars:
                self._ends[d.dst].stats.dropped += 1
                return
        if not self._exact(d):
            mask = (1 << rx.bytesize) - 1
            for sent, _ in chars:
                self._schedule(d, end, uart.RxChar(sent & mask, False, False, False, end))
            return
        receiver = self._receiver(d, start)
        received: list[uart.RxChar] = []
        for sent, flips in chars:
            for level, duration in uart.frame_waveform(sent, tx, flips=flips):
                received += receiver.feed(level, duration)
        for char in received:
            self._schedule(d, char.time, char)

    def _receiver(self, d: _Direction, start: float) -> uart.UartReceiver:
        """The direction's sampling receiver, brought up to ``start`` (idle line)."""
        if d.receiver is None:
            d.receiver = uart.UartReceiver(self._ends[d.dst].settings, start_time=start)
        elif start > d.receiver.now + 1e-9:  # a gap, not float noise in back-to-back frames
            for char in d.receiver.idle(start):
                self._schedule(d, char.time, char)
        return d.receiver

    def _schedule(self, d: _Direction, at: float, char: uart.RxChar) -> None:
        if d.injector is not None:
            at += d.injector.delay()
        at = max(at, d.last_delivery)  # a cable never reorders
        d.last_delivery = at
        d.pending.append(_Due(at, char=char))

    # -- the receive side -------------------------------------------------------------

    def _noise(self, d: _Direction, now: float) -> None:
        """Noise on an idle line: characters out of nothing, at the spec's rate."""
        injector = d.injector
        if injector is None or not injector.spec.noise or not self.paced:
            d.noise_at = None
            return
        rx = self._ends[d.dst].settings
        slot = rx.char_time
        begin = max(d.noise_mark, d.line_free_at)
        if d.txq or now - begin < slot:
            d.noise_at = begin + slot
            return
        slots = int((now - begin) / slot)
        mask = (1 << rx.bytesize) - 1
        for index, value in injector.idle_noise(slots, slot):
            at = begin + (index + 1) * slot
            self._ends[d.dst].stats.noise += 1
            self._schedule(d, at, uart.RxChar(value & mask, False, False, False, at))
        d.noise_mark = begin + slots * slot
        d.noise_at = d.noise_mark + slot

    def _deliver_due(self, d: _Direction, now: float) -> None:
        """Hand the receiver what has arrived by ``now``.

        Overrun: a receiver whose unread backlog has reached ``rx_limit`` loses
        what arrives (counted), unless flow control or overflow="block" guards it.
        The check is made once per delivery, against the backlog its program had
        left when the runtime last looked, so a runtime that wakes late never
        blames a program that was reading; and a burst that a stalled runtime
        delivers late (more than STALL_CHARS characters) does not count against
        the limit for as long again, the time the program would have had to
        read it as it arrived."""
        if not d.pending or d.pending[0].at > now:
            return
        dst = self._ends[d.dst]
        late = now - d.pending[0].at
        limit = self.rx_limit + (dst.excused if now < dst.excused_until else 0)
        full = dst.backlog >= limit and not self._flow_guards(self._ends[d.src], dst)
        out = bytearray()
        breaks = 0
        while d.pending and d.pending[0].at <= now:
            due = d.pending[0]
            if due.char is None:
                count = len(due.data)
                if due.step > 0:
                    count = min(count, int((now - due.at) / due.step) + 1)
                run, due.data = due.data[:count], due.data[count:]
                due.at += count * due.step
                if not due.data:
                    d.pending.popleft()
                out += self._render_run(d, dst, run)
                continue
            d.pending.popleft()
            char = due.char
            breaks += char.is_break
            out += self._render_char(d, dst, char, due.at)
        if out:
            if full:
                dst.stats.overruns += len(out)
            else:
                dst.backlog += len(out)
                if now < dst.excused_until:  # still catching up: excused as well
                    dst.excused += len(out)
                elif late > STALL_CHARS * dst.settings.char_time:
                    dst.excused, dst.excused_until = len(out), now + late
                self._events.append(Deliver(d.dst, bytes(out)))
                self._update_throttle(d.dst, now)
        self._events.extend(BreakArrived(d.dst) for _ in range(breaks))
        # A released XOFF may let the opposite direction go on.
        self._pump(self._dirs[d.dst], now)

    def _render_run(self, d: _Direction, dst: _EndState, run: bytes) -> bytes:
        """A run of clean characters, as the receiver's driver hands them on."""
        if dst.settings.flow is FlowControl.XONXOFF and (XON in run or XOFF in run):
            return b"".join(
                self._render_char(d, dst, uart.RxChar(value), self.now) for value in run
            )
        dst.stats.received += len(run)
        policy = dst.policy
        if policy.istrip:
            run = run.translate(_MASKS[7])
        if policy.parmrk:
            run = run.replace(b"\xff", b"\xff\xff")
        return run

    def _render_char(self, d: _Direction, dst: _EndState, char: uart.RxChar, at: float) -> bytes:
        """One sampled character: count it, trace it, consume XON/XOFF, apply termios."""
        stats = dst.stats
        stats.received += 1
        stats.framing_errors += char.framing_error and not char.is_break
        stats.parity_errors += char.parity_error
        stats.breaks += char.is_break
        if self.trace is not None:
            self.trace.byte(at, f"{d.dst}.rx", char.value, note=_char_note(char))
        # The receiver's own UART driver consumes XON/XOFF when it honours them.
        if (
            dst.settings.flow is FlowControl.XONXOFF
            and not char.framing_error
            and char.value in (XON, XOFF)
        ):
            self._dirs[d.dst].xoff = char.value == XOFF
            return b""
        return dst.policy.render(char)

    def _flow_guards(self, src: _EndState, dst: _EndState) -> bool:
        """Is the receiver's buffer protected from overrun (the data is kept)?"""
        if self.overflow is Overflow.BLOCK:
            return True
        both = src.settings.flow is dst.settings.flow
        return both and dst.settings.flow in (FlowControl.RTSCTS, FlowControl.XONXOFF)

    def _update_throttle(self, end: End, now: float) -> None:
        """A receiver whose backlog passes 3/4 of its buffer drops RTS (with RTS/CTS)
        or sends XOFF (with XON/XOFF); below 1/4 it raises RTS / sends XON again."""
        state = self._ends[end]
        high, low = self.rx_limit * 3 // 4, self.rx_limit // 4
        throttled = state.throttled
        if not throttled and state.backlog >= high:
            throttled = True
        elif throttled and state.backlog <= low:
            throttled = False
        if throttled == state.throttled:
            return
        state.throttled = throttled
        if state.settings.flow is FlowControl.XONXOFF:
            for d in self._dirs.values():
                if d.dst == end:
                    d.xoff = throttled
        self._recompute_lines(now)

    # -- control lines ----------------------------------------------------------------

    def _snapshot(self) -> dict[End, Lines]:
        return {end: state.lines() for end, state in self._ends.items()}

    def _recompute_lines(
        self, now: float, before: dict[End, Lines] | None = None, *, initial: bool = False
    ) -> None:
        """Inputs from the wiring and the devices; an event for every end that changed
        since ``before`` (by default: since now)."""
        if before is None:
            before = self._snapshot()
        effective = {}
        for end, state in self._ends.items():
            auto_rts_low = state.throttled and state.settings.flow is FlowControl.RTSCTS
            effective[end] = (state.rts and not auto_rts_low, state.dtr)
        inputs = self.wiring.inputs(effective["a"], effective["b"])
        for end, state in self._ends.items():
            computed = dict(inputs[end])
            computed.update(state.driven)
            state.inputs = computed
            after = state.lines()
            if after != before[end] or initial:
                if not initial:
                    self._events.append(LinesChanged(end, after))
                if self.trace is not None:
                    for line in Line:
                        if initial or before[end][line] != after[line]:
                            self.trace.level(now, f"{end}.{line.value}", after[line])
        self._pump_all(now)


def _char_note(char: uart.RxChar) -> str:
    notes = [
        text
        for flag, text in (
            (char.is_break, "break"),
            (char.framing_error and not char.is_break, "framing error"),
            (char.parity_error, "parity error"),
        )
        if flag
    ]
    return ", ".join(notes)


def _fault_specs(faults: FaultSpec | Mapping[str, FaultSpec] | None) -> dict[str, FaultSpec]:
    if faults is None:
        return {}
    if isinstance(faults, FaultSpec):
        return {"*": faults} if faults else {}
    for key in faults:
        if key not in ("*", "a>b", "b>a", "a>a", "b>b"):
            raise ConfigError(f"fault direction must be a>b, b>a or *, not {key!r}")
    return {k: v for k, v in faults.items() if v}
