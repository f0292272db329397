"""Run a chat script on a Port: the thin synchronous adapter of :mod:`serialhs.modem.chat`.

    from serialhs.driver.port import Port
    from serialhs.modem.chat import parse_script
    from serialhs.modem.chatport import run_chat

    with Port("/dev/ttyUSB0") as port:
        result = run_chat(port, parse_script(text), report=print)
    if result.exit_code != 0: ...

The adapter only moves bytes and time: it reads with a short bounded wait
(never longer than the runner's next timer), hands what arrived to the runner,
fires its timers, and carries out its events (Send -> ``port.write``, Break ->
``port.send_break``). Every wait is bounded by the script's timeouts.

Secrets (\\q strings) are registered with the port's transcript before anything
is sent, and the driver's TRACE hexdumps are redacted while the script runs, so
a secret reaches neither a transcript nor a log.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Iterable

from serialhs.driver.port import Port
from serialhs.errors import PortError, ReadTimeout, SerialTimeoutError
from serialhs.log import TRACE, hexdump, redact
from serialhs.modem.chat import (
    DEFAULT_TIMEOUT,
    EXIT_ERROR,
    Break,
    ChatEvent,
    ChatRunner,
    ChatStateError,
    Done,
    Echo,
    Log,
    Report,
    Say,
    Script,
    Send,
)

__all__ = ["POLL", "ChatResult", "run_chat"]

log = logging.getLogger("serialhs.modem")

#: Longest single read wait, in seconds: how often timers and the carrier are checked.
POLL = 0.05

_TRACE_FORMAT = "%s %s %d byte(s)\n%s"


@dataclasses.dataclass(frozen=True, slots=True)
class ChatResult:
    """How a script ended: chat's exit code, why, the REPORT lines, and the bytes
    that arrived after the last match and were not read by the script."""

    exit_code: int
    reason: str
    reports: tuple[str, ...] = ()
    unread: bytes = b""

    @property
    def ok(self) -> bool:
        return self.exit_code == 0


class _TraceRedactor(logging.Filter):
    """Redacts secrets in the driver's TRACE hexdumps (serialhs.log.trace_bytes)."""

    def __init__(self, secrets: Iterable[bytes]) -> None:
        super().__init__()
        self.secrets = [s for s in secrets if s]

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if (
            record.levelno == TRACE
            and record.msg == _TRACE_FORMAT
            and isinstance(args, tuple)
            and len(args) == 4
            and isinstance(args[3], str)
        ):
            data = _unhexdump(args[3])
            clean = redact(data, self.secrets)
            if clean != data:
                record.args = (args[0], args[1], args[2], hexdump(clean) + "\n(secret redacted)")
        return True


def _unhexdump(dump: str) -> bytes:
    """The bytes of a serialhs.log.hexdump (its "... more" line is left out)."""
    out = bytearray()
    for line in dump.splitlines():
        if line.startswith("..."):
            continue
        hex_part = line[10:].split("  |", 1)[0]
        try:
            out += bytes.fromhex(hex_part)
        except ValueError:
            continue
    return bytes(out)


def run_chat(
    port: Port,
    script: Script,
    *,
    timeout: float = DEFAULT_TIMEOUT,
    echo_on: bool = False,
    say: Callable[[str], None] | None = None,
    report: Callable[[str], None] | None = None,
    echo: Callable[[bytes], None] | None = None,
    log_line: Callable[[str], None] | None = None,
    watch_dcd: bool = False,
    clock: Callable[[], float] = time.monotonic,
) -> ChatResult:
    """Run ``script`` on the open ``port`` and return how it ended.

    ``timeout`` is the initial expect timeout (chat -t); ``echo_on`` starts with
    ECHO ON (chat -e). Callbacks: ``say(text)`` gets SAY strings exactly as chat
    writes them (a carriage return ends them unless the string ended in \\c),
    ``report(line)`` each REPORT line, ``echo(data)`` modem output while ECHO is
    ON, ``log_line(text)`` the verbose log (chat -v; \\q strings as ``??????``).
    With ``watch_dcd`` a carrier (DCD) drop is a hangup: exit code 2 unless the
    script said HANGUP OFF. Port failures end the script with exit code 2.
    """
    verbose = log_line is not None or log.isEnabledFor(logging.DEBUG)
    runner = ChatRunner(script, now=clock(), default_timeout=timeout, echo=echo_on, verbose=verbose)
    if port.transcript is not None:
        for secret in runner.secrets:
            port.transcript.add_secret(secret)
    driver_log = logging.getLogger("serialhs.driver")
    redactor = _TraceRedactor(runner.secrets)
    driver_log.addFilter(redactor)
    reports: list[str] = []
    carrier: bool | None = None

    failure: list[str] = []  # why a write or break failed, once one has

    def perform(events: list[ChatEvent]) -> Done | None:
        """Carry out the events in order. The runner runs ahead of the port (it may
        have finished the script already), so a failed write or break ends the run
        with exit code 2 whatever events came after it."""
        for event in events:
            if isinstance(event, Send | Break):
                if failure:
                    continue
                try:
                    if isinstance(event, Send):
                        port.write(event.data, timeout=runner.timeout)
                    else:
                        port.send_break(event.duration)
                except (PortError, SerialTimeoutError) as e:
                    what = "write" if isinstance(event, Send) else "break"
                    failure.append(f"{what} failed: {e}")
                    runner.connection_lost(clock(), failure[0])
            elif isinstance(event, Say):
                if say is not None:
                    say(event.text + event.end)
            elif isinstance(event, Report):
                reports.append(event.text)
                log.info("%s: report: %s", port.url, event.text)
                if report is not None:
                    report(event.text)
            elif isinstance(event, Echo):
                if echo is not None:
                    echo(event.data)
            elif isinstance(event, Log):
                log.debug("%s: chat: %s", port.url, event.text)
                if log_line is not None:
                    log_line(event.text)
            elif failure:
                return Done(EXIT_ERROR, failure[0])
            else:
                return event
        return perform(runner.events()) if failure else None

    try:
        while True:
            done = perform(runner.events())
            if done is not None:
                return ChatResult(done.exit_code, done.reason, tuple(reports), runner.unread())
            deadline = runner.get_timer()
            if deadline is None:  # pragma: no cover - the runner always has a timer
                raise ChatStateError(f"chat runner in state {runner.state.value!r} has no timer")
            wait = min(deadline - clock(), POLL)
            data = b""
            if wait > 0:
                try:
                    data = port.read_some(timeout=wait)
                except ReadTimeout:
                    pass
                except PortError as e:
                    runner.connection_lost(clock(), f"read failed: {e}")
                    continue
            now = clock()
            if data:
                runner.receive_data(data, now)
            runner.handle_timer(now)
            if watch_dcd and not runner.done:
                try:
                    dcd = port.lines().dcd
                except PortError as e:
                    runner.connection_lost(now, f"reading DCD failed: {e}")
                    continue
                if carrier and not dcd:
                    runner.hangup(now)
                carrier = dcd
    finally:
        driver_log.removeFilter(redactor)
