"""The modem client: AT commands, calls and DTE settings on a serialhs Port.

    from serialhs.driver import Port
    from serialhs.modem.client import Modem

    with Port("/dev/ttyUSB0", "115200 8N1") as port:
        modem = Modem(port)
        modem.init()                       # the profile's init string, or ATZ / ATE0V1
        print(modem.command("ATI").lines)
        call = modem.dial("5551001")       # CONNECT 33600/LAPM/V42BIS -> a Connection
        modem.write(b"hello")
        reply = modem.read_some(timeout=5)
        modem.hangup()                     # +++ with guard time, then ATH

The parsing is the sans-I/O :class:`~serialhs.modem.atcore.ATCore`; this module
is the thin synchronous adapter that moves its bytes over a Port, one command in
flight at a time, each with its own timeout. :class:`AsyncModem` runs the same
client from asyncio (in the default executor, so the logic exists once).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import functools
import logging
import re
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, Literal, TypeVar

from serialhs.driver.port import Port
from serialhs.driver.settings import FlowControl, Parity, SerialSettings, StopBits
from serialhs.errors import (
    ConfigError,
    LinesUnsupportedError,
    ModemBusy,
    ModemError,
    ModemNoAnswer,
    ModemNoCarrier,
    ModemResponseError,
    ModemResultError,
    ModemTimeout,
    ModemUnhealthy,
    ReadTimeout,
)
from serialhs.modem.atcore import (
    ATCore,
    Data,
    Final,
    Garbage,
    Intermediate,
    Prompt,
    Timeout,
    Unsolicited,
    error_for,
)
from serialhs.modem.profile import ModemProfile
from serialhs.modem.results import ResultCode

__all__ = ["AsyncModem", "Connection", "Modem", "Reply", "probe"]

log = logging.getLogger("serialhs.modem")

T = TypeVar("T")

#: Bytes read from the port in one go.
CHUNK = 4096
#: How long one read waits before the client looks at timers and lines again.
POLL = 0.02
#: Unsolicited result codes kept for :meth:`Modem.unsolicited` (older ones go).
MAX_URCS = 256
#: Data received online and not yet read, at most (a bounded buffer).
MAX_DATA = 1 << 20
_NO_CARRIER_TAIL = re.compile(rb"\r\n(?:NO CARRIER|3)\r\n?$|\r?3\r$")

_ICF_FORMATS = {  # V.250 +ICF <format>: (data bits, parity?, stop bits)
    (8, False, 2): 1,
    (8, True, 1): 2,
    (8, False, 1): 3,
    (7, False, 2): 4,
    (7, True, 1): 5,
    (7, False, 1): 6,
}
_ICF_PARITY = {Parity.ODD: 0, Parity.EVEN: 1, Parity.MARK: 2, Parity.SPACE: 3}
_IFC = {FlowControl.NONE: (0, 0), FlowControl.XONXOFF: (1, 1), FlowControl.RTSCTS: (2, 2)}


@dataclasses.dataclass(frozen=True, slots=True)
class Reply:
    """What a command got back: its information lines and its final result."""

    command: str
    lines: tuple[str, ...]
    final: Final

    @property
    def ok(self) -> bool:
        return self.final.success

    @property
    def text(self) -> str:
        return "\n".join(self.lines)


@dataclasses.dataclass(frozen=True, slots=True)
class Connection:
    """An established call: what CONNECT said."""

    number: str
    text: str  #: everything after CONNECT, e.g. "33600/LAPM/V42BIS"
    speed: int | None  #: the first number in it, if any
    protocol: str | None  #: the rest, e.g. "LAPM/V42BIS"

    @classmethod
    def parse(cls, number: str, text: str) -> Connection:
        match = re.match(r"\s*(\d+)\s*(?:/(.*))?", text)
        if match is None:
            return cls(number, text.strip(), None, text.strip() or None)
        return cls(number, text.strip(), int(match.group(1)), match.group(2) or None)


class Modem:
    """A modem on a Port. Not thread-safe: one thread drives it (AsyncModem
    serialises calls for asyncio)."""

    def __init__(
        self,
        port: Port,
        *,
        profile: ModemProfile | None = None,
        timeout: float = 3.0,
        urcs: Mapping[str, str] | None = None,
        max_timeouts: int = 3,
        guard_time: float = 1.0,
    ) -> None:
        if max_timeouts < 1:
            raise ConfigError("max_timeouts must be at least 1")
        self.port = port
        self.profile = profile
        self.timeout = timeout
        self.max_timeouts = max_timeouts
        self.guard_time = guard_time
        self.core = ATCore(urcs=urcs)
        self.consecutive_timeouts = 0
        self.connection: Connection | None = None
        self._urcs: collections.deque[Unsolicited] = collections.deque(maxlen=MAX_URCS)
        self._handlers: dict[str | None, list[Callable[[Unsolicited], None]]] = {}
        self._data = bytearray()
        self._carrier_lost = False
        #: leaving the call (escape, hang-up, carrier loss): data that comes meanwhile is
        #: kept whatever MAX_DATA says, as those steps are bounded in time
        self._leaving = False

    # -- state ----------------------------------------------------------------------

    @property
    def healthy(self) -> bool:
        """False after ``max_timeouts`` commands in a row went unanswered."""
        return self.consecutive_timeouts < self.max_timeouts

    @property
    def online(self) -> bool:
        """True while a call is up and the modem is in the online data state."""
        return self.connection is not None and self.core.state.name == "DATA"

    def on_urc(self, name: str | None, handler: Callable[[Unsolicited], None]) -> None:
        """Call ``handler`` for every unsolicited result code named ``name``
        (a name given to register_urc, "RING", "NO CARRIER", ...; None: unnamed ones)."""
        self._handlers.setdefault(name, []).append(handler)

    def register_urc(self, name: str, pattern: str) -> None:
        self.core.register_urc(name, pattern)

    def unsolicited(self) -> list[Unsolicited]:
        """Take the unsolicited result codes received so far (bounded, oldest go)."""
        out = list(self._urcs)
        self._urcs.clear()
        return out

    # -- commands -------------------------------------------------------------------

    def command(
        self,
        command: str,
        *,
        timeout: float | None = None,
        prefix: str | Sequence[str] | None = None,
        check: bool = True,
    ) -> Reply:
        """Send one command line and wait for its final result.

        Raises the typed error for a failed result (ModemBusy, CmeError, ...) unless
        ``check=False``, and ModemTimeout (ModemUnhealthy after ``max_timeouts`` in a
        row) when the modem does not answer in time."""
        if self.online and self._carrier_dropped():
            self._lose_carrier()  # the far end hung up: the modem is in command mode
        if self.online:
            raise ModemError(
                "the modem is online (in a call): escape() to command mode first",
                command=command,
                port=self.port.url,
            )
        limit = self.timeout if timeout is None else timeout
        self._take_pending()  # what arrived before the command is not its reply
        out = self.core.send_command(command, time.monotonic(), timeout=limit, prefix=prefix)
        self.port.write(out, timeout=limit)
        return self._await_final(command, check=check)

    def command_with_text(
        self,
        command: str,
        text: str | bytes,
        *,
        prompt: str = "> ",
        timeout: float | None = None,
    ) -> Reply:
        """A command that prompts for text (AT+CMGS="..." then "> "): send the text
        and Ctrl-Z after the prompt, and wait for the final result."""
        limit = self.timeout if timeout is None else timeout
        self._take_pending()
        self.port.write(
            self.core.send_command(command, time.monotonic(), timeout=limit, prompt=prompt),
            timeout=limit,
        )
        self._pump_until(lambda e: isinstance(e, Prompt), command)
        self.port.write(self.core.send_text(text, time.monotonic(), timeout=limit), timeout=limit)
        return self._await_final(command, check=True)

    def query(self, command: str, **options: Any) -> list[str]:
        """The information lines of a command (checked): ``query("AT+CSQ")``."""
        return list(self.command(command, **options).lines)

    def init(self, commands: Iterable[str] | None = None) -> None:
        """Run an init sequence: the given commands, the profile's, or ATZ and ATE0V1."""
        if commands is None:
            commands = self.profile.init if self.profile is not None else ("ATZ", "ATE0V1")
        for line in commands:
            self.command(line)

    # -- calls ----------------------------------------------------------------------

    def dial(
        self,
        numbers: str | Sequence[str],
        *,
        tone: bool = True,
        prefix: str = "",
        attempts: int = 1,
        timeout: float = 60.0,
        pause: float = 1.0,
    ) -> Connection:
        """Dial one number, or several in turn, ``attempts`` times each; return the
        connection, or raise the error of the last try (ModemBusy, ModemNoAnswer,
        ModemNoCarrier, ModemNoDialtone)."""
        candidates = [numbers] if isinstance(numbers, str) else list(numbers)
        if not candidates or attempts < 1:
            raise ConfigError("dial needs at least one number and one attempt")
        last: ModemResultError | None = None
        tries = [number for _ in range(attempts) for number in candidates]
        for index, number in enumerate(tries):
            if index:
                time.sleep(pause)
            line = f"ATD{'T' if tone else 'P'}{prefix}{number}"
            try:
                reply = self.command(line, timeout=timeout)
            except (ModemBusy, ModemNoCarrier, ModemNoAnswer) as e:
                log.info("%s: %s", line, e)  # worth another try, or the next number
                last = e
                continue
            return self._connected(number, reply)
        assert last is not None
        raise last

    def answer(self, *, timeout: float = 60.0) -> Connection:
        """Answer a ringing call (ATA)."""
        return self._connected("", self.command("ATA", timeout=timeout))

    def wait_for_ring(self, *, timeout: float) -> Unsolicited:
        """Wait for a RING (or +CRING) unsolicited result code."""
        deadline = time.monotonic() + timeout
        while True:
            for index, urc in enumerate(self._urcs):
                if urc.name in ("RING", "+CRING"):
                    del self._urcs[index]
                    return urc
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise ModemTimeout("RING", timeout=timeout, lines=(), port=self.port.url)
            self._read_into_core(min(remaining, POLL))
            self._dispatch_idle()

    def wait_for_connect(self, *, timeout: float) -> Connection:
        """Wait for a call the modem answers by itself (S0 > 0): CONNECT."""
        deadline = time.monotonic() + timeout
        while self.core.state.name != "DATA":
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise ModemTimeout("CONNECT", timeout=timeout, lines=(), port=self.port.url)
            self._read_into_core(min(remaining, POLL))
            for event in self.core.events():
                if isinstance(event, Unsolicited) and event.name == "CONNECT":
                    self.connection = Connection.parse("", event.text[7:])
                else:
                    self._handle_idle(event)
        assert self.connection is not None
        return self.connection

    def _connected(self, number: str, reply: Reply) -> Connection:
        if reply.final.code is not ResultCode.CONNECT:
            raise ModemResponseError(
                f"expected CONNECT, got {reply.final.text!r}",
                command=reply.command,
                port=self.port.url,
                lines=reply.lines,
            )
        value = reply.final.value
        self.connection = Connection.parse(number, value if isinstance(value, str) else "")
        self._carrier_lost = False
        # RINGs of this call are over; a later wait_for_ring waits for a new one.
        for urc in [u for u in self._urcs if u.name in ("RING", "+CRING")]:
            self._urcs.remove(urc)
        log.info("%s: connected: %s", self.port.url, self.connection.text or "CONNECT")
        return self.connection

    # -- the online data state ------------------------------------------------------

    def write(self, data: bytes, *, timeout: float | None = None) -> None:
        """Send data to the far end of the call."""
        self._require_online("write")
        self.port.write(self.core.send_data(data), timeout=timeout)

    def read_some(self, max_size: int = CHUNK, *, timeout: float | None = None) -> bytes:
        """Data from the far end: at least one byte, or ReadTimeout. When the carrier
        is lost, the data that came before is handed out first, then ModemNoCarrier."""
        limit = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + limit
        while True:
            if not self._carrier_lost and self._carrier_dropped():
                self._lose_carrier()  # also takes the modem's NO CARRIER off the data
            if self._data:
                out = bytes(self._data[:max_size])
                del self._data[:max_size]
                return out
            if self._carrier_lost:
                self._raise_carrier_lost()
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise ReadTimeout(f"no data within {limit} s", port=self.port.url, timeout=limit)
            self._read_into_core(min(remaining, POLL))
            self._dispatch_idle()

    def read_exactly(self, size: int, *, timeout: float | None = None) -> bytes:
        limit = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + limit
        out = bytearray()
        while len(out) < size:
            remaining = deadline - time.monotonic()
            try:
                out += self.read_some(size - len(out), timeout=max(remaining, 0.0))
            except ReadTimeout as e:
                raise ReadTimeout(
                    f"wanted {size} byte(s) within {limit} s",
                    port=self.port.url,
                    timeout=limit,
                    partial=bytes(out),
                ) from e
        return bytes(out)

    def _require_online(self, what: str) -> None:
        if self._carrier_lost and not self._data:
            self._raise_carrier_lost()
        if not self.online:
            raise ModemError(f"cannot {what}: no call is up", port=self.port.url)

    def _carrier_dropped(self) -> bool:
        """DCD is off (where the port has lines), or the data ends in the modem's
        NO CARRIER (where it has not)."""
        if self.connection is None:
            return False
        try:
            return not self.port.lines().dcd
        except LinesUnsupportedError:
            return _NO_CARRIER_TAIL.search(bytes(self._data[-16:])) is not None

    @contextlib.contextmanager
    def _leaving_call(self) -> Iterator[None]:
        self._leaving = True
        try:
            yield
        finally:
            self._leaving = False

    def _lose_carrier(self) -> None:
        # The modem says NO CARRIER after dropping DCD; that is not call data.
        time.sleep(0.05)
        self._read_into_core(0.0)
        with self._leaving_call():
            self._dispatch_idle()
        tail = _NO_CARRIER_TAIL.search(bytes(self._data[-16:]))
        if tail is not None:
            del self._data[len(self._data) - (len(tail.group(0))) :]
        self.core.enter_command_mode()
        self.connection = None
        self._carrier_lost = True

    def _raise_carrier_lost(self) -> None:
        self._carrier_lost = False
        raise ModemNoCarrier(
            "(online)",
            detail="carrier lost",
            port=self.port.url,
            hint="the far end hung up or the line dropped",
        )

    def escape(self, *, guard: float | None = None, timeout: float = 3.0) -> None:
        """Back to command mode with the call kept up: silence for the guard time,
        "+++", silence again, then OK (Hayes escape, S12)."""
        self._require_online("escape")
        guard = self.guard_time if guard is None else guard
        time.sleep(guard * 1.1)
        self.port.write(self.core.send_escape(time.monotonic(), timeout=guard + timeout))
        with self._leaving_call():
            self._await_final("+++", check=True)

    def go_online(self, *, timeout: float = 10.0) -> Connection:
        """Return to the call after escape() (ATO)."""
        if self.connection is None:
            raise ModemError("no call to return to", command="ATO", port=self.port.url)
        number = self.connection.number
        try:
            return self._connected(number, self.command("ATO", timeout=timeout))
        except ModemNoCarrier:
            self.connection = None  # the call was lost while we were in command mode
            raise

    def hangup(
        self, method: Literal["ath", "dtr", "escape"] = "ath", *, timeout: float = 5.0
    ) -> None:
        """End the call: ``ath`` (escape to command mode if online, then ATH),
        ``dtr`` (drop DTR for a moment, as &D2 prescribes), ``escape`` (the same as ath,
        spelled +++ATH in modem manuals)."""
        if method == "dtr":
            self.port.set_dtr(False)
            try:
                time.sleep(0.5)
                deadline = time.monotonic() + timeout
                while self.connection is not None:
                    if self._carrier_dropped():
                        self._lose_carrier()
                        break
                    if time.monotonic() > deadline:
                        raise ModemTimeout("DTR hang-up", timeout=timeout, port=self.port.url)
                    self._read_into_core(POLL)
                    with self._leaving_call():
                        self._dispatch_idle()
            finally:
                self.port.set_dtr(True)
            if self.core.state.name == "DATA":
                self.core.enter_command_mode()
            self.connection = None
            self._carrier_lost = False
            return
        if method not in ("ath", "escape"):
            raise ConfigError(f"hang-up method must be ath, dtr or escape, not {method!r}")
        if self.online and self._carrier_dropped():
            self._lose_carrier()
        if self.online:
            self.escape()
        self.command("ATH", timeout=timeout)
        self.connection = None
        self._carrier_lost = False

    # -- DTE-DCE settings (V.250 +IPR, +ICF, +IFC) ----------------------------------------

    def set_dte(
        self,
        *,
        rate: int | None = None,
        settings: SerialSettings | None = None,
        verify_timeout: float = 1.0,
    ) -> SerialSettings:
        """Change the DTE-DCE rate, character format and flow control together on
        the modem (+IPR, +ICF, +IFC) and on the port, then prove the new settings
        with AT. On failure the port goes back and the modem is asked back too;
        ModemResponseError says what failed."""
        old = self.port.settings
        new = settings or old.replace(baudrate=rate or old.baudrate)
        line = dte_command(old, new)
        if line is None:
            return old
        self.command(line)  # answered at the old settings
        self.port.drain(timeout=2.0)
        self.port.reconfigure(new)
        if self._verify(verify_timeout):
            return new
        # Back to where we were: the modem may or may not have switched.
        self.port.reconfigure(old)
        if not self._verify(verify_timeout):
            self.port.reconfigure(new)
            back = dte_command(new, old)
            if back is not None:
                self.command(back, check=False)
            self.port.drain(timeout=2.0)
            self.port.reconfigure(old)
        raise ModemResponseError(
            f"the modem did not answer AT at {new}; stayed at {old}",
            command=line,
            port=self.port.url,
            lines=(),
        )

    def _verify(self, timeout: float) -> bool:
        for _ in range(3):
            try:
                if self.command("AT", timeout=timeout, check=False).ok:
                    return True
            except (ModemTimeout, ModemUnhealthy):
                pass
            if self.core.state.name != "IDLE":
                self.core.abandon()
        return False

    # -- the engine -------------------------------------------------------------------

    def _take_pending(self) -> None:
        """Deal with what arrived between commands (URCs, a late reply)."""
        self._read_into_core(0.0)
        self._dispatch_idle()

    def _read_into_core(self, wait: float) -> None:
        try:
            data = self.port.read_some(CHUNK, timeout=wait) if wait > 0 else b""
        except ReadTimeout:
            data = b""
        data += self.port.read_available(CHUNK)
        if data:
            self.core.receive_data(data)
        self.core.handle_timer(time.monotonic())

    def _dispatch_idle(self) -> None:
        for event in self.core.events():
            self._handle_idle(event)

    def _handle_idle(self, event: Any) -> None:
        if isinstance(event, Unsolicited):
            self._urcs.append(event)
            for handler in self._handlers.get(event.name, []) + self._handlers.get("*", []):
                try:
                    handler(event)
                except Exception:
                    log.exception("URC handler for %s failed", event.name)
        elif isinstance(event, Garbage):
            log.warning(
                "%s: garbage from the modem (%s): %r", self.port.url, event.reason, event.data[:64]
            )
        elif isinstance(event, Data):
            # Kept before the bound is checked: what arrived is never dropped, and the
            # buffer exceeds the bound by at most one read (or what comes while leaving).
            self._data += event.data
            if len(self._data) > MAX_DATA and not self._leaving:
                raise ModemError(
                    f"more than {MAX_DATA} bytes of call data unread",
                    port=self.port.url,
                    hint="read the call's data as it arrives (read_some() still hands out "
                    "all of it)",
                )

    def _pump_until(self, done: Callable[[Any], bool], command: str) -> Any:
        while True:
            for event in self.core.events():
                if done(event):
                    return event
                if isinstance(event, Timeout):
                    self._timed_out(command, event.timeout)
                self._handle_idle(event)
            self._read_into_core(POLL)

    def _await_final(self, command: str, *, check: bool) -> Reply:
        lines: list[str] = []

        def final(event: Any) -> bool:
            if isinstance(event, Intermediate):
                lines.append(event.text)
            return isinstance(event, Final)

        event = self._pump_until(final, command)
        self.consecutive_timeouts = 0
        reply = Reply(command, tuple(lines), event)
        if check and not event.success:
            error = error_for(event, command, lines=tuple(lines), port=self.port.url)
            if error is not None:
                raise error
        return reply

    def _timed_out(self, command: str, timeout: float | None) -> None:
        self.consecutive_timeouts += 1
        partial = self.core.buffered
        if not self.healthy:
            raise ModemUnhealthy(
                f"{self.consecutive_timeouts} commands in a row went unanswered; "
                "the port is probably not (or no longer) an AT port",
                command=command,
                port=self.port.url,
                hint="check power, cable, baud rate, and that no other program holds the modem",
            )
        raise ModemTimeout(
            command,
            timeout=timeout,
            lines=(partial.decode("ascii", "replace"),) if partial else (),
            port=self.port.url,
        )


def dte_command(old: SerialSettings, new: SerialSettings) -> str | None:
    """The one V.250 command line that moves a modem's DTE interface from ``old`` to
    ``new`` (+IPR, +ICF, +IFC joined with ';', so the modem answers once, at the old
    settings, and switches everything together), or None when nothing changes."""
    parts = []
    if new.baudrate != old.baudrate:
        parts.append(f"+IPR={new.baudrate}")
    if (new.bytesize, new.parity, new.stopbits) != (old.bytesize, old.parity, old.stopbits):
        parity = new.parity is not Parity.NONE
        stop = 2 if new.stopbits is StopBits.TWO else 1
        fmt = _ICF_FORMATS.get((new.bytesize, parity, stop))
        if fmt is None:
            raise ConfigError(f"+ICF has no character format for {new.framing}")
        parts.append(f"+ICF={fmt},{_ICF_PARITY[new.parity]}" if parity else f"+ICF={fmt}")
    if new.flow != old.flow:
        if new.flow not in _IFC:
            raise ConfigError(f"+IFC cannot select {new.flow.value} flow control")
        dce, dte = _IFC[new.flow]
        parts.append(f"+IFC={dce},{dte}")
    return "AT" + ";".join(parts) if parts else None


def probe(port: Port, *, attempts: int = 3, timeout: float = 0.5) -> bool:
    """Is there an AT command interpreter on this port? "AT" must get OK within
    ``timeout``, in at most ``attempts`` tries. A port that answers garbage, NULs or
    nothing is not one."""
    for _ in range(attempts):
        modem = Modem(port, timeout=timeout, max_timeouts=attempts + 1)
        try:
            if modem.command("AT", check=False).ok:
                return True
        except (ModemTimeout, ModemError, ReadTimeout):
            continue
    return False


class AsyncModem:
    """The same client from asyncio. Each call runs the synchronous client in the
    default executor, one at a time (a modem takes one command at a time)."""

    def __init__(self, modem: Modem) -> None:
        self.modem = modem
        self._lock = asyncio.Lock()

    async def _run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        async with self._lock:
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(None, functools.partial(fn, *args, **kwargs))

    async def command(self, command: str, **options: Any) -> Reply:
        return await self._run(self.modem.command, command, **options)

    async def init(self, commands: Iterable[str] | None = None) -> None:
        await self._run(self.modem.init, commands)

    async def dial(self, numbers: str | Sequence[str], **options: Any) -> Connection:
        return await self._run(self.modem.dial, numbers, **options)

    async def answer(self, **options: Any) -> Connection:
        return await self._run(self.modem.answer, **options)

    async def wait_for_ring(self, *, timeout: float) -> Unsolicited:
        return await self._run(self.modem.wait_for_ring, timeout=timeout)

    async def write(self, data: bytes, **options: Any) -> None:
        await self._run(self.modem.write, data, **options)

    async def read_some(self, max_size: int = CHUNK, **options: Any) -> bytes:
        return await self._run(self.modem.read_some, max_size, **options)

    async def read_exactly(self, size: int, **options: Any) -> bytes:
        return await self._run(self.modem.read_exactly, size, **options)

    async def escape(self, **options: Any) -> None:
        await self._run(self.modem.escape, **options)

    async def hangup(self, method: Literal["ath", "dtr", "escape"] = "ath", **options: Any) -> None:
        await self._run(self.modem.hangup, method, **options)

    async def set_dte(self, **options: Any) -> SerialSettings:
        return await self._run(self.modem.set_dte, **options)
