"""A small virtual telephone exchange of emulated Hayes modems.

Each emulated modem sits on the far end (``b``) of its own virtual wire, as a
real external modem sits at the end of its serial cable; the computer under
test (the DTE) opens end ``a`` — its pty or its RFC 2217 URL. The modem talks
to its wire through an ordinary serialhs :class:`~serialhs.driver.port.Port`
(so it sees the DTE's RTS and DTR, and drives CTS and DSR), drives DCD and RI
at the DTE directly, and changes its own UART settings when told +IPR/+ICF/+IFC.

The :class:`Exchange` connects modems by number: a dial rings the called
modem (RING text and RI), an answer connects both at the speed and protocols
:func:`~serialhs.sim.hayes.negotiate_link` agrees, and data then flows from one
DTE to the other. Per-number behaviours make a number BUSY, NO ANSWER,
NO DIALTONE or NO CARRIER.

Each modem runs in a thread of its own; the exchange hands calls between them
through each modem's queue, so every modem core is touched by one thread only.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import logging
import queue
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from serialhs import hwconfig
from serialhs.driver.lines import Line
from serialhs.driver.port import Port
from serialhs.errors import ConfigError, SerialHSError, SimError
from serialhs.modem.profile import ModemProfile, load_modem_profile
from serialhs.sim import hayes
from serialhs.sim.wire import Wire

__all__ = ["Exchange", "ModemSim", "NumberBehaviour"]

log = logging.getLogger("serialhs.sim")

#: How often a modem's thread looks at its lines and timers when nothing arrives.
TICK = 0.005

BEHAVIOURS = ("answer", "busy", "no-answer", "no-dialtone", "no-carrier")


@dataclasses.dataclass(frozen=True, slots=True)
class NumberBehaviour:
    """What the exchange does when ``number`` is dialled."""

    number: str
    behaviour: str = "answer"

    def __post_init__(self) -> None:
        if self.behaviour not in BEHAVIOURS:
            raise ConfigError(
                f"number {self.number}: behaviour must be one of {', '.join(BEHAVIOURS)}, "
                f"not {self.behaviour!r}"
            )


class _EmulatedModem:
    """One emulated modem: its core, its wire, its thread."""

    def __init__(
        self,
        exchange: Exchange,
        profile: ModemProfile,
        number: str,
        rate: int | None,
        wire_options: Mapping[str, Any],
    ) -> None:
        self.exchange = exchange
        self.profile = profile
        self.number = number
        self.core = hayes.HayesModem(profile, number=number, now=time.monotonic(), rate=rate)
        #: the modem's UART as the emulator sets it (rate, format, &K flow control)
        self.settings = self.core.uart
        self.wire = Wire(settings=self.settings, **wire_options)
        self.inbox: queue.SimpleQueue[Callable[[float], None]] = queue.SimpleQueue()
        self.peer: _EmulatedModem | None = None
        self.port: Port | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"modem {number}", daemon=True)

    def start(self) -> None:
        self.wire.start()
        self.port = Port(self.wire.b.pty, self.settings, rts=True, dtr=True, timeout=1.0).open()
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=2.0)
        if self.port is not None:
            self.port.close()
        self.wire.stop()

    def post(self, action: Callable[[float], None]) -> None:
        """Run ``action(now)`` on this modem's thread."""
        self.inbox.put(action)

    # -- the modem's thread ---------------------------------------------------------

    def _run(self) -> None:
        port, core = self.port, self.core
        assert port is not None
        last_lines: tuple[bool, bool] | None = None
        try:
            while not self._stop.is_set():
                now = time.monotonic()
                while True:
                    try:
                        action = self.inbox.get_nowait()
                    except queue.Empty:
                        break
                    action(now)
                seen = port.lines()  # the DTE's DTR and RTS arrive as our DSR and CTS
                lines = (seen.dsr, seen.cts)
                if lines != last_lines:
                    core.dte_lines(dtr=seen.dsr, rts=seen.cts, now=now)
                    last_lines = lines
                timer = core.get_timer()
                if timer is not None and timer <= now:
                    core.handle_timer(now)
                self._act(core.events())
                wait = TICK if timer is None else max(0.0, min(TICK, timer - now))
                data = port.read_available()
                if not data and wait > 0:
                    with contextlib.suppress(SerialHSError):
                        data = port.read_some(timeout=wait)
                if data:
                    core.from_dte(data, time.monotonic())
                    self._act(core.events())
        except SerialHSError as e:
            if not self._stop.is_set():
                log.warning("emulated modem %s stopped: %s", self.number, e)

    def _act(self, events: Sequence[Any]) -> None:
        port = self.port
        assert port is not None
        for event in events:
            if isinstance(event, hayes.ToDte):
                port.write(event.data, timeout=5.0)
            elif isinstance(event, hayes.Drive):
                self._drive(event.line, event.state)
            elif isinstance(event, hayes.SetUart):
                port.drain(timeout=2.0)  # the result code goes out at the old settings
                port.reconfigure(event.settings)
                self.settings = event.settings
            elif isinstance(event, hayes.Dial):
                self.exchange.dial(self, event.number)
            elif isinstance(event, hayes.Answer):
                self.exchange.answer(self)
            elif isinstance(event, hayes.Hangup):
                self.exchange.hangup(self)
            elif isinstance(event, hayes.ToLine):
                self.exchange.carry(self, event.data)

    def _drive(self, line: Line, state: bool) -> None:
        port = self.port
        assert port is not None
        # CTS and DSR come from our RTS and DTR through the cable; DCD and RI the
        # modem drives at the DTE directly.
        if line is Line.CTS:
            port.set_rts(state)
        elif line is Line.DSR:
            port.set_dtr(state)
        else:
            self.wire.a.drive(line, state)


class Exchange:
    """Connects emulated modems by number. Thread-safe."""

    def __init__(self, behaviours: Sequence[NumberBehaviour] = ()) -> None:
        self._lock = threading.Lock()
        self._behaviours = {b.number: b.behaviour for b in behaviours}
        self._modems: dict[str, _EmulatedModem] = {}
        self._ringing: dict[_EmulatedModem, _EmulatedModem] = {}  # callee -> caller

    def add(self, modem: _EmulatedModem) -> None:
        with self._lock:
            if modem.number in self._modems:
                raise ConfigError(f"number {modem.number} is given to two modems")
            self._modems[modem.number] = modem

    def dial(self, caller: _EmulatedModem, number: str) -> None:
        digits = "".join(ch for ch in number if ch.isdigit() or ch in "*#")
        with self._lock:
            behaviour = self._behaviours.get(digits, "answer")
            callee = self._modems.get(digits)
            if behaviour == "answer" and (callee is None or callee is caller):
                behaviour = "no-carrier"  # nobody on that number
            elif (
                behaviour == "answer"
                and callee is not None
                and (
                    # off hook, ringing or dialling itself (read across threads: a
                    # snapshot is all an exchange has of a line's state anyway)
                    callee.peer is not None or callee in self._ringing or callee.core.busy
                )
            ):
                behaviour = "busy"
            if behaviour != "answer":
                result = {
                    "busy": hayes.CallResult.BUSY,
                    "no-answer": hayes.CallResult.NO_ANSWER,
                    "no-dialtone": hayes.CallResult.NO_DIALTONE,
                    "no-carrier": hayes.CallResult.NO_CARRIER,
                }[behaviour]
                log.info("exchange: %s dials %s: %s", caller.number, digits, behaviour)
                caller.post(lambda now: caller.core.call_failed(result, now))
                return
            assert callee is not None
            self._ringing[callee] = caller
        log.info("exchange: %s rings %s", caller.number, callee.number)
        callee.post(lambda now: callee.core.ring(caller.number, now))

    def answer(self, callee: _EmulatedModem) -> None:
        with self._lock:
            caller = self._ringing.pop(callee, None)
            if caller is None:
                callee.post(lambda now: callee.core.call_failed(hayes.CallResult.NO_CARRIER, now))
                return
            try:
                link = hayes.negotiate_link(caller.profile, callee.profile)
            except SimError as e:  # the two modems share no modulation
                log.info("exchange: %s and %s cannot connect: %s", caller.number, callee.number, e)
                for side in (caller, callee):
                    side.post(functools.partial(side.core.call_failed, hayes.CallResult.NO_CARRIER))
                return
            caller.peer, callee.peer = callee, caller
        log.info("exchange: %s answers %s: %s", callee.number, caller.number, link)
        caller.post(lambda now: caller.core.call_answered(link, now))
        callee.post(lambda now: callee.core.call_answered(link, now))

    def hangup(self, modem: _EmulatedModem) -> None:
        with self._lock:
            peer, modem.peer = modem.peer, None
            if peer is not None:
                peer.peer = None
            # A caller that hangs up while the other rings stops the ringing.
            for callee, caller in list(self._ringing.items()):
                if modem in (callee, caller):
                    del self._ringing[callee]
                    if caller is modem:
                        callee.post(callee.core.remote_hangup)
        if peer is not None:
            log.info("exchange: %s hangs up on %s", modem.number, peer.number)
            peer.post(peer.core.remote_hangup)

    def carry(self, modem: _EmulatedModem, data: bytes) -> None:
        peer = modem.peer
        if peer is not None:
            peer.post(lambda now: peer.core.from_line(data, now))


class ModemSim:
    """A running exchange of emulated modems, each on its own virtual wire.

    with ModemSim(count=2) as sim:
        first, second = sim.ends()      # what a dialer opens
    """

    def __init__(
        self,
        *,
        count: int = 2,
        profiles: Sequence[str | ModemProfile] = ("v90_dialup",),
        numbers: Sequence[str] | None = None,
        behaviours: Sequence[NumberBehaviour] = (),
        rate: int | None = None,
        wire_options: Mapping[str, Any] | None = None,
    ) -> None:
        """``rate``: the modems' UART rate at power-on (default: each profile's)."""
        if count < 1:
            raise ConfigError("a modem-sim needs at least one modem")
        numbers = list(numbers or [f"555{1000 + i:04d}" for i in range(count)])
        if len(numbers) != count:
            raise ConfigError(f"{count} modems but {len(numbers)} numbers")
        loaded = [p if isinstance(p, ModemProfile) else load_modem_profile(p) for p in profiles]
        self.exchange = Exchange(behaviours)
        self.modems = [
            _EmulatedModem(
                self.exchange, loaded[i % len(loaded)], numbers[i], rate, wire_options or {}
            )
            for i in range(count)
        ]
        for modem in self.modems:
            self.exchange.add(modem)

    def start(self) -> ModemSim:
        started: list[_EmulatedModem] = []
        try:
            for modem in self.modems:
                modem.start()
                started.append(modem)
        except BaseException:
            for modem in started:
                modem.stop()
            raise
        return self

    def stop(self) -> None:
        for modem in self.modems:
            modem.stop()

    def __enter__(self) -> ModemSim:
        return self.start()

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def describe(self) -> list[dict[str, Any]]:
        """The JSON ``serialhs modem-sim`` prints: a number and the DTE's port for each modem."""
        return [
            {
                "number": m.number,
                "profile": m.profile.name,
                "port": {"pty": m.wire.a.pty, "rfc2217": m.wire.a.rfc2217},
            }
            for m in self.modems
        ]

    def wire(self, number: str) -> Wire:
        """The wire of the modem with ``number`` (to drive or unplug it in tests)."""
        for modem in self.modems:
            if modem.number == number:
                return modem.wire
        raise ConfigError(f"no emulated modem has number {number}")


def load_sim_config(path: str | Path) -> dict[str, Any]:
    """Read a modem-sim TOML file into ModemSim's keyword arguments::

        rate = 115200                    # optional: the modems' UART rate at power-on

        [[modem]]
        number = "5551000"
        profile = "v90_dialup"          # optional (default v90_dialup)

        [numbers]                        # optional: what dialling a number gives
        "5550100" = "busy"               # answer, busy, no-answer, no-dialtone, no-carrier

    Errors are ProfileErrors naming the file and the line.
    """
    doc = hwconfig.read_document(path)
    hwconfig.reject_unknown_tables(doc, ("rate", "modem", "numbers"))
    rate = doc.data.get("rate")
    if rate is not None and (not isinstance(rate, int) or isinstance(rate, bool) or rate <= 0):
        raise doc.error("rate must be a positive whole number", line=doc.line_of(None, "rate"))
    entries = doc.data.get("modem", [])
    if not isinstance(entries, list) or not all(isinstance(m, dict) for m in entries):
        raise doc.error("modems are [[modem]] tables", line=doc.line_of(None, "modem"))
    fields = (
        hwconfig.Field("number", hwconfig.text(), required=True),
        hwconfig.Field("profile", hwconfig.text(), default="v90_dialup"),
    )
    modems = []
    for index, entry in enumerate(entries, start=1):
        for key in entry:
            if key not in ("number", "profile"):
                raise doc.error(
                    f"[[modem]] number {index}: unknown key {key!r}", line=doc.line_of("modem", key)
                )
        try:
            modems.append(
                {f.name: f.convert(entry[f.name]) if f.name in entry else f.default for f in fields}
            )
        except hwconfig.FieldValueError as e:
            raise doc.error(
                f"[[modem]] number {index}: {e}", line=doc.line_of("modem", "number")
            ) from None
        if not modems[-1]["number"]:
            raise doc.error(
                f"[[modem]] number {index} has no number", line=doc.line_of("modem", "number")
            )
    behaviours = []
    numbers = doc.data.get("numbers", {})
    if not isinstance(numbers, dict):
        raise doc.error("[numbers] must be a table", line=doc.line_of(None, "numbers"))
    for number, behaviour in numbers.items():
        if behaviour not in BEHAVIOURS:
            raise doc.error(
                f"[numbers] {number}: behaviour must be one of {', '.join(BEHAVIOURS)}, "
                f"not {behaviour!r}",
                line=doc.line_of("numbers", number),
            )
        behaviours.append(NumberBehaviour(str(number), behaviour))
    return {
        "count": len(modems) or 2,
        "numbers": [m["number"] for m in modems] or None,
        "profiles": [m["profile"] for m in modems] or ("v90_dialup",),
        "behaviours": behaviours,
        "rate": rate,
    }
