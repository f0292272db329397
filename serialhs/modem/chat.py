"""chat(8)-compatible scripts: a parser and a sans-I/O runner.

A script written for ppp's ``chat`` program runs unchanged::

    script = parse_script(text, source="/etc/chatscripts/provider")
    runner = ChatRunner(script, now=clock())
    # feed it bytes and time, act on what it asks for:
    runner.receive_data(data, now)          # bytes from the modem
    runner.handle_timer(now)                # when now >= runner.get_timer()
    for event in runner.events(): ...       # Send, Break, Say, Report, Echo, Log, Done

The runner never reads a clock, sleeps or touches a port: \\d and \\p delays and
expect timeouts are timers (``get_timer`` / ``handle_timer``, as in aioquic). The
thin adapter :mod:`serialhs.modem.chatport` drives it on a :class:`Port`.

Scripts are data: nothing in them is executed. Send strings marked with \\q are
secrets (``Script.secrets``, ``ChatRunner.secrets``): they are shown as ``??????``
in logs and redacted from every event but the :class:`Send` that carries them.

Exit codes are chat's: 0 completed, 1 bad script or parameters, 2 an error while
running (the port failed, a hangup), 3 an expect timed out with no sub-send left,
4 + n when the n-th (from 0) ABORT string in the current list was received.

The runner's states and the moves between them are the table ``TRANSITIONS``;
docs/chat.md draws it.
"""

from __future__ import annotations

import dataclasses
import enum
import math
import re
from collections.abc import Mapping
from typing import TypeAlias

from serialhs.errors import ConfigError, SerialHSError

__all__ = [
    "DEFAULT_TIMEOUT",
    "EXIT_ABORT",
    "EXIT_ERROR",
    "EXIT_INVALID",
    "EXIT_OK",
    "EXIT_TIMEOUT",
    "HIDDEN",
    "TRANSITIONS",
    "AbortStep",
    "Break",
    "ChatEvent",
    "ChatRunner",
    "ChatScriptError",
    "ChatStateError",
    "ClearAbortStep",
    "ClearReportStep",
    "Done",
    "Echo",
    "EchoStep",
    "ExpectStep",
    "HangupStep",
    "Log",
    "Pause",
    "Report",
    "ReportStep",
    "Say",
    "SayStep",
    "Script",
    "Send",
    "SendBreak",
    "SendStep",
    "SendString",
    "State",
    "Step",
    "TimeoutStep",
    "Token",
    "Where",
    "parse_script",
    "parse_tokens",
    "tokenize",
    "visible",
]

#: chat's initial expect timeout, and what ``TIMEOUT 0`` sets, in seconds.
DEFAULT_TIMEOUT = 45.0

EXIT_OK = 0
#: Bad parameters or a bad script (raised as ChatScriptError before anything runs).
EXIT_INVALID = 1
#: An error while running: the port failed or went away, a hangup, too many ABORTs.
EXIT_ERROR = 2
#: An expect string did not arrive in time and there was no sub-send to try.
EXIT_TIMEOUT = 3
#: The first ABORT string; the second is EXIT_ABORT + 1, and so on.
EXIT_ABORT = 4

#: What a \\q string is shown as in logs (chat writes the same).
HIDDEN = "??????"

#: chat's buffer sizes, kept as limits: expect strings, ABORT/REPORT strings, counts.
MAX_EXPECT = 1024
MAX_PATTERN = 49
MAX_ABORTS = 50
MAX_REPORTS = 50
#: Longest single token (chat reads a script file in lines of at most 1023 bytes).
MAX_TOKEN = 1023
#: Largest script accepted, in characters.
MAX_SCRIPT = 1 << 20
#: The longest report line kept (chat's report buffer).
MAX_REPORT_LINE = 4096
#: How long the runner waits for the rest of a REPORT line when the script ends
#: (chat: alarm(1) for each further character).
REPORT_LINGER = 1.0
#: Received bytes held while the runner is not reading (during \\d and \\p).
MAX_PENDING = 1 << 20
#: The length of a break (\\K, BREAK); tcsendbreak(fd, 0) lasts 0.25 to 0.5 s.
BREAK_SECONDS = 0.25

_DELAY = 1.0  # \d
_PAUSE = 0.1  # \p (chat's manual: one tenth of a second)

_Outcome: TypeAlias = "str | tuple[int, bytes] | None"

_KEYWORDS = frozenset(
    {"ABORT", "CLR_ABORT", "REPORT", "CLR_REPORT", "TIMEOUT", "ECHO", "SAY", "HANGUP"}
)
_NUMBER = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)")
_ENV_NAME = re.compile(rb"[A-Za-z0-9_]*")


# --- errors ------------------------------------------------------------------------------


class ChatScriptError(ConfigError):
    """A chat script is malformed. Names the source, line and column, and what to write."""

    def __init__(self, message: str, *, source: str, line: int, column: int) -> None:
        self.source = source
        self.line = line
        self.column = column
        self.reason = message
        super().__init__(f"{source}:{line}:{column}: {message}")


class ChatStateError(SerialHSError):
    """The runner was asked for a move its state table does not allow (a bug in a caller
    or in the runner). Names the state and the trigger."""


# --- the script as data -----------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class Where:
    """Where a token starts: source name, line and column (both from 1)."""

    source: str
    line: int
    column: int

    def __str__(self) -> str:
        return f"{self.source}:{self.line}:{self.column}"

    def error(self, message: str, offset: int = 0) -> ChatScriptError:
        return ChatScriptError(
            message, source=self.source, line=self.line, column=self.column + offset
        )


@dataclasses.dataclass(frozen=True, slots=True)
class Token:
    """One word of a script as written (escapes not yet processed)."""

    text: str
    where: Where
    quoted: bool = False

    def error(self, message: str, offset: int = 0) -> ChatScriptError:
        """An error at ``offset`` characters into the token's text."""
        return self.where.error(message, offset + (1 if self.quoted else 0))


@dataclasses.dataclass(frozen=True, slots=True)
class Pause:
    """A delay inside a send string: \\d (1 s) or \\p (0.1 s)."""

    seconds: float


@dataclasses.dataclass(frozen=True, slots=True)
class SendBreak:
    """A break inside a send string: \\K, or the send string BREAK."""

    seconds: float = BREAK_SECONDS


SendPart: TypeAlias = bytes | Pause | SendBreak


@dataclasses.dataclass(frozen=True, slots=True)
class SendString:
    """A processed send string: bytes, pauses and breaks, in order.

    ``quiet`` is set by \\q: the string is a secret and is logged as ``??????``."""

    parts: tuple[SendPart, ...]
    quiet: bool
    where: Where

    @property
    def data(self) -> bytes:
        """Every byte the string sends, joined (pauses and breaks left out)."""
        return b"".join(p for p in self.parts if isinstance(p, bytes))

    def secrets(self) -> list[bytes]:
        """What must never be shown: each run of bytes of a quiet string, without the
        carriage return that ends a send string."""
        if not self.quiet:
            return []
        runs = [p for p in self.parts if isinstance(p, bytes)]
        if runs and runs[-1].endswith(b"\r") and self.parts[-1] is runs[-1]:
            runs[-1] = runs[-1][:-1]
        return [r for r in runs if r]

    def shown(self) -> str:
        """The string as a log shows it (chat's style; ``??????`` when quiet)."""
        if self.quiet:
            return HIDDEN
        out = []
        for part in self.parts:
            if isinstance(part, bytes):
                out.append(visible(part))
            elif isinstance(part, Pause):
                out.append("\\d" if part.seconds >= _DELAY else "\\p")
            else:
                out.append("\\K")
        return "".join(out)


@dataclasses.dataclass(frozen=True, slots=True)
class ExpectStep:
    """An expect string with its sub-expects: ``chain[i] = (expect, sub_send)``.

    When ``chain[i][0]`` arrives the step is done. When it times out, ``chain[i][1]``
    is sent and ``chain[i + 1][0]`` expected; with no sub-send the script fails
    (exit 3), and with no further expect the step is done once the sub-send went
    out (chat's behaviour for ``expect-send``). An empty expect succeeds at once."""

    chain: tuple[tuple[bytes, SendString | None], ...]
    where: Where


@dataclasses.dataclass(frozen=True, slots=True)
class SendStep:
    string: SendString
    where: Where


@dataclasses.dataclass(frozen=True, slots=True)
class AbortStep:
    pattern: bytes
    where: Where


@dataclasses.dataclass(frozen=True, slots=True)
class ClearAbortStep:
    pattern: bytes
    where: Where


@dataclasses.dataclass(frozen=True, slots=True)
class ReportStep:
    pattern: bytes
    where: Where


@dataclasses.dataclass(frozen=True, slots=True)
class ClearReportStep:
    pattern: bytes
    where: Where


@dataclasses.dataclass(frozen=True, slots=True)
class TimeoutStep:
    seconds: float
    where: Where


@dataclasses.dataclass(frozen=True, slots=True)
class EchoStep:
    on: bool
    where: Where


@dataclasses.dataclass(frozen=True, slots=True)
class HangupStep:
    on: bool
    where: Where


@dataclasses.dataclass(frozen=True, slots=True)
class SayStep:
    text: str
    end: str
    where: Where


Step: TypeAlias = (
    ExpectStep
    | SendStep
    | AbortStep
    | ClearAbortStep
    | ReportStep
    | ClearReportStep
    | TimeoutStep
    | EchoStep
    | HangupStep
    | SayStep
)


@dataclasses.dataclass(frozen=True, slots=True)
class Script:
    """A parsed chat script: its steps in order."""

    steps: tuple[Step, ...]
    source: str = "<script>"

    @property
    def secrets(self) -> tuple[bytes, ...]:
        """Every \\q string of the script (sub-sends included), for redaction."""
        found: list[bytes] = []
        for step in self.steps:
            strings: list[SendString] = []
            if isinstance(step, SendStep):
                strings.append(step.string)
            elif isinstance(step, ExpectStep):
                strings.extend(s for _, s in step.chain if s is not None)
            for string in strings:
                for secret in string.secrets():
                    if secret not in found:
                        found.append(secret)
        return tuple(found)


# --- text helpers -------------------------------------------------------------------------


def visible(data: bytes) -> str:
    """Bytes as chat shows them: control characters as ^X, high bytes as M-x."""
    out = []
    for b in data:
        meta = "M-" if b & 0x80 else ""
        c = b & 0x7F
        if c < 32:
            out.append(f"{meta}^{chr(c + 64)}")
        elif c == 127:
            out.append(f"{meta}^?")
        else:
            out.append(meta + chr(c))
    return "".join(out)


def _quote(data: bytes) -> str:
    return "'" + visible(data) + "'"


def _encode(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")


def _redact(data: bytes, secrets: list[bytes]) -> bytes:
    for secret in secrets:
        if secret:
            data = data.replace(secret, HIDDEN.encode())
    return data


def _redact_text(text: str, secrets: list[bytes]) -> str:
    if not secrets:
        return text
    raw = _redact(_encode(text), secrets)
    for secret in secrets:
        shown = visible(secret)
        if shown:
            raw = raw.replace(_encode(shown), HIDDEN.encode())
    return raw.decode("utf-8", "surrogateescape")


def _is_control(c: int) -> bool:
    return c < 32 or c == 127


# --- tokenizing ---------------------------------------------------------------------------


def tokenize(text: str, *, source: str = "<script>") -> list[Token]:
    """Split a script into tokens as ``chat -f`` reads a file.

    Tokens are separated by spaces and tabs; a line whose first character is ``#``
    is a comment; a token that starts with ``'`` or ``"`` runs to the matching
    quote (a backslash inside skips the next character) and the next token starts
    right after it. Escapes are kept as written; :func:`parse_script` processes them.
    """
    if len(text) > MAX_SCRIPT:
        raise ChatScriptError(
            f"the script is {len(text)} characters long; the limit is {MAX_SCRIPT}",
            source=source,
            line=1,
            column=1,
        )
    tokens: list[Token] = []
    for number, line in enumerate(text.split("\n"), start=1):
        line = line.removesuffix("\r")  # noqa: PLW2901  (a CRLF file reads as LF)
        if line.startswith("#"):
            continue
        i, n = 0, len(line)
        while i < n:
            ch = line[i]
            if ch in " \t":
                i += 1
                continue
            where = Where(source, number, i + 1)
            if ch in "'\"":
                start = i + 1
                j = start
                while True:
                    if j >= n:
                        raise where.error(
                            f"unterminated quote: no closing {ch} on this line "
                            "(a quoted string cannot span lines)"
                        )
                    if line[j] == ch:
                        break
                    if line[j] == "\\" and j + 1 < n:
                        j += 1
                    j += 1
                token = Token(line[start:j], where, quoted=True)
                i = j + 1
            else:
                j = i
                while j < n and line[j] not in " \t":
                    j += 1
                token = Token(line[i:j], where)
                i = j
            if len(_encode(token.text)) > MAX_TOKEN:
                raise where.error(
                    f"this string is longer than {MAX_TOKEN} bytes (chat's line limit)"
                )
            tokens.append(token)
    return tokens


# --- escapes ------------------------------------------------------------------------------


class _Context:
    """What escape processing needs besides the token: -E variables and -T/-U numbers."""

    def __init__(
        self, env: Mapping[str, str] | None, phone: str | None, phone2: str | None
    ) -> None:
        self.env = env
        self.phone = phone
        self.phone2 = phone2


_NOT_IN_EXPECT = {
    "c": "\\c (no carriage return) belongs at the end of a send string",
    "d": "\\d (a one-second delay) is only valid in a send string",
    "K": "\\K (a break) is only valid in a send string",
    "N": "\\N (a NUL) is only valid in a send string",
    "p": "\\p (a pause) is only valid in a send string",
    "q": "\\q (quiet) is only valid in a send string",
    "T": "\\T (the -T phone number) is only valid in a send string",
    "U": "\\U (the -U phone number) is only valid in a send string",
}

_SIMPLE = {"b": b"\b", "r": b"\r", "n": b"\n", "s": b" ", "t": b"\t", "\\": b"\\"}


class _Cleaner:
    """chat's clean(): escape processing for one token in one of three modes.

    ``expect`` (expect strings, ABORT/REPORT strings, keyword values) gives bytes;
    ``send`` gives parts (bytes, pauses, breaks) and whether to add a carriage
    return; ``say`` gives the text chat writes to the user."""

    def __init__(self, token: Token, text: str, offset: int, ctx: _Context, mode: str) -> None:
        self.token = token
        self.raw = _encode(text)
        self.offset = offset
        self.ctx = ctx
        self.mode = mode
        self.parts: list[SendPart] = []
        self.buffer = bytearray()
        self.add_return = mode != "expect"
        self.quiet = False

    def error(self, message: str, at: int) -> ChatScriptError:
        chars = len(self.raw[:at].decode("utf-8", "surrogateescape"))
        return self.token.error(message, self.offset + chars)

    def _flush(self) -> None:
        if self.buffer:
            self.parts.append(bytes(self.buffer))
            self.buffer.clear()

    def _action(self, part: Pause | SendBreak, escape: str, at: int) -> None:
        if self.mode == "say":
            raise self.error(f"\\{escape} is not valid in a SAY string", at)
        self._flush()
        self.parts.append(part)

    def _phone(self, which: str, at: int) -> bytes:
        number = self.ctx.phone if which == "T" else self.ctx.phone2
        if number is None:
            option = "-T" if which == "T" else "-U"
            raise self.error(
                f"\\{which} needs a phone number; give one with {option} "
                f"(phone={'phone' if which == 'T' else 'phone2'} in the API)",
                at,
            )
        return _encode(number)

    def run(self) -> None:
        raw, i, n = self.raw, 0, len(self.raw)
        while i < n:
            at = i
            c = raw[i]
            i += 1
            if c == 0x5E:  # ^
                if i >= n:
                    self.buffer.append(c)
                    break
                value = raw[i] & 0x1F
                i += 1
                if value == 0:
                    raise self.error(
                        f"^{chr(raw[i - 1])} would be a NUL, which chat drops; "
                        "use \\N in a send string",
                        at,
                    )
                self.buffer.append(value)
                continue
            if c == 0x24 and self.ctx.env is not None:  # $NAME with -E
                found = _ENV_NAME.match(raw, i)
                assert found is not None
                name = found.group().decode("ascii")
                i = found.end()
                if not name:
                    raise self.error("a $ with no variable name after it; write \\$ for a $", at)
                value_text = self.ctx.env.get(name)
                if value_text is None:
                    raise self.error(f"environment variable ${name} is not set", at)
                self.buffer += _encode(value_text)
                continue
            if c != 0x5C:  # not a backslash
                self.buffer.append(c)
                continue
            if i >= n:
                raise self.error(
                    "a backslash at the end of a string escapes nothing; "
                    "write \\\\ for a backslash",
                    at,
                )
            e = chr(raw[i])
            i += 1
            if e in "01234567":
                i = self._octal(e, at, i)
            else:
                self._escape(e, at, last=i >= n)

    def _escape(self, e: str, at: int, *, last: bool) -> None:
        if self.mode == "expect" and e in _NOT_IN_EXPECT:
            raise self.error(_NOT_IN_EXPECT[e] + "; chat would look for a plain " + e, at)
        if e in _SIMPLE:
            self.buffer += _SIMPLE[e]
        elif e == "c":
            if not last:
                raise self.error("\\c must be the last thing in the string", at)
            self.add_return = False
        elif e == "d":
            self._action(Pause(_DELAY), e, at)
        elif e == "p":
            self._action(Pause(_PAUSE), e, at)
        elif e == "K":
            self._action(SendBreak(), e, at)
        elif e == "q":
            if self.mode == "say":
                raise self.error("\\q is not valid in a SAY string", at)
            self.quiet = True
        elif e == "N":
            if self.mode == "say":
                raise self.error("\\N is not valid in a SAY string", at)
            self.buffer.append(0)
        elif e in "TU":
            self.buffer += self._phone(e, at)
        else:  # \- \' \" \$ \x ...: the character itself
            self.buffer += _encode(e)

    def _octal(self, first: str, at: int, i: int) -> int:
        raw, n = self.raw, len(self.raw)
        value = int(first)
        for _ in range(2):
            if i < n and 0x30 <= raw[i] <= 0x37:
                value = (value << 3) | (raw[i] - 0x30)
                i += 1
            else:
                break
        value &= 0xFF
        if value == 0 and self.mode != "send":
            raise self.error("an octal NUL is only valid in a send string", at)
        self.buffer.append(value)
        return i

    def expect_bytes(self) -> bytes:
        self.run()
        data = bytes(self.buffer)
        high = next((b for b in data if b & 0x80), None)
        if high is not None:
            raise self.token.error(
                f"byte {high:#04x} can never match: chat compares received bytes "
                "with their 8th bit cleared, so expect strings are 7-bit ASCII",
                self.offset,
            )
        return data

    def send_string(self) -> SendString:
        self.run()
        if self.add_return:
            self.buffer += b"\r"
        self._flush()
        merged: list[SendPart] = []
        for part in self.parts:
            if isinstance(part, bytes) and merged and isinstance(merged[-1], bytes):
                merged[-1] = merged[-1] + part
            else:
                merged.append(part)
        return SendString(tuple(merged), self.quiet, self.token.where)

    def say_text(self) -> tuple[str, str]:
        self.run()
        return bytes(self.buffer).decode("utf-8", "surrogateescape"), (
            "\r" if self.add_return else ""
        )


# --- parsing ------------------------------------------------------------------------------


def _split_dash(text: str) -> list[tuple[int, str]]:
    """chat's expect_strtok on '-': pieces with their offsets. A backslash protects the
    next character. An ending dash makes no empty piece; a doubled dash does."""
    pieces: list[tuple[int, str]] = []
    i, n = 0, len(text)
    while i < n:
        start = i
        while i < n:
            if text[i] == "\\":
                i += 2
                continue
            if text[i] == "-":
                break
            i += 1
        i = min(i, n)
        pieces.append((start, text[start:i]))
        if i < n:  # skip the dash
            i += 1
    return pieces


class _Parser:
    def __init__(self, ctx: _Context) -> None:
        self.ctx = ctx

    def expect_bytes(self, token: Token, text: str | None = None, offset: int = 0) -> bytes:
        body = token.text if text is None else text
        return _Cleaner(token, body, offset, self.ctx, "expect").expect_bytes()

    def send(self, token: Token, text: str | None = None, offset: int = 0) -> SendString:
        body = token.text if text is None else text
        if body.startswith("@") and body[1:].strip(" \t"):
            raise token.error(
                "sending from a file (@name) is not supported: a script is data and "
                "reads nothing; put the string in the script with \\q, or use -E and $NAME",
                offset,
            )
        if body == "EOT":
            return SendString((b"\x04",), False, token.where)
        if body == "BREAK":
            return SendString((SendBreak(),), False, token.where)
        return _Cleaner(token, body, offset, self.ctx, "send").send_string()

    def pattern(self, keyword: str, token: Token, *, allow_empty: bool) -> bytes:
        data = self.expect_bytes(token)
        if not data and not allow_empty:
            raise token.error(
                f"an empty {keyword} string would match the first byte received; "
                "give the text to look for"
            )
        if len(data) > MAX_PATTERN:
            raise token.error(
                f"{keyword} strings are at most {MAX_PATTERN} bytes (chat's limit); "
                f"this one has {len(data)}"
            )
        return data

    def on_off(self, keyword: str, token: Token) -> bool:
        if token.text not in ("ON", "OFF"):
            raise token.error(f"{keyword} takes ON or OFF, not {token.text!r}")
        return token.text == "ON"

    def timeout(self, token: Token) -> float:
        text = self.expect_bytes(token).decode("ascii")
        if not _NUMBER.fullmatch(text.strip()):
            raise token.error(f"TIMEOUT takes a number of seconds, not {token.text!r}")
        seconds = float(text)
        # chat: "TIMEOUT 0" (or less) restores the built-in 45 s.
        return seconds if seconds > 0 else DEFAULT_TIMEOUT

    def expect(self, token: Token) -> ExpectStep:
        pieces = _split_dash(token.text)
        chain: list[tuple[bytes, SendString | None]] = []
        k = 0
        while k < len(pieces):
            offset, text = pieces[k]
            expect = self.expect_bytes(token, text, offset)
            if len(expect) > MAX_EXPECT:
                raise token.error(
                    f"expect strings are at most {MAX_EXPECT} bytes; this one has {len(expect)}",
                    offset,
                )
            reply: SendString | None = None
            if k + 1 < len(pieces):
                r_offset, r_text = pieces[k + 1]
                reply = self.send(token, r_text, r_offset)
            chain.append((expect, reply))
            k += 2
        return ExpectStep(tuple(chain), token.where)

    def step(self, keyword: str | None, token: Token, send: bool) -> Step:
        if keyword is None:
            if send:
                return SendStep(self.send(token), token.where)
            return self.expect(token)
        where = token.where
        if keyword == "ABORT":
            return AbortStep(self.pattern(keyword, token, allow_empty=False), where)
        if keyword == "CLR_ABORT":
            return ClearAbortStep(self.pattern(keyword, token, allow_empty=True), where)
        if keyword == "REPORT":
            return ReportStep(self.pattern(keyword, token, allow_empty=False), where)
        if keyword == "CLR_REPORT":
            return ClearReportStep(self.pattern(keyword, token, allow_empty=True), where)
        if keyword == "TIMEOUT":
            return TimeoutStep(self.timeout(token), where)
        if keyword == "ECHO":
            return EchoStep(self.on_off(keyword, token), where)
        if keyword == "HANGUP":
            return HangupStep(self.on_off(keyword, token), where)
        assert keyword == "SAY"
        text, end = _Cleaner(token, token.text, 0, self.ctx, "say").say_text()
        return SayStep(text, end, where)


def parse_tokens(
    tokens: list[Token],
    *,
    source: str = "<script>",
    env: Mapping[str, str] | None = None,
    phone: str | None = None,
    phone2: str | None = None,
) -> Script:
    """Build a Script from tokens: expect and send strings alternate; a keyword in an
    expect position takes the next token as its value."""
    parser = _Parser(_Context(env, phone, phone2))
    steps: list[Step] = []
    keyword: Token | None = None
    send = False
    for token in tokens:
        if not send and token.text in _KEYWORDS:
            keyword = token
        else:
            steps.append(parser.step(keyword.text if keyword else None, token, send))
            keyword = None
        send = not send
    if keyword is not None:
        raise keyword.error(f"{keyword.text} at the end of the script needs a value after it")
    return Script(tuple(steps), source)


def parse_script(
    text: str,
    *,
    source: str = "<script>",
    env: Mapping[str, str] | None = None,
    phone: str | None = None,
    phone2: str | None = None,
) -> Script:
    """Parse a chat script as ``chat -f`` reads it.

    ``env`` turns on $NAME substitution (chat -E); ``phone`` and ``phone2`` are what
    \\T and \\U send (chat -T, -U). Raises ChatScriptError naming line and column.
    """
    return parse_tokens(
        tokenize(text, source=source), source=source, env=env, phone=phone, phone2=phone2
    )


# --- events -------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class Send:
    """Write ``data`` to the modem. ``quiet``: it is a secret (its repr hides it)."""

    data: bytes
    quiet: bool = False

    def __repr__(self) -> str:
        shown = HIDDEN if self.quiet else repr(self.data)
        return f"Send(data={shown}, quiet={self.quiet})"


@dataclasses.dataclass(frozen=True, slots=True)
class Break:
    """Send a break of ``duration`` seconds."""

    duration: float = BREAK_SECONDS


@dataclasses.dataclass(frozen=True, slots=True)
class Say:
    """Show ``text`` to the user (chat writes it to stderr, followed by ``end``: a
    carriage return, or nothing when the SAY string ended in \\c)."""

    text: str
    end: str = "\r"


@dataclasses.dataclass(frozen=True, slots=True)
class Report:
    """A REPORT string arrived: ``text`` is it and the rest of its line, e.g.
    ``CONNECT 33600/LAPM`` (chat adds a time stamp when it prints it)."""

    text: str


@dataclasses.dataclass(frozen=True, slots=True)
class Echo:
    """Modem output read while ECHO is ON (secrets redacted)."""

    data: bytes


@dataclasses.dataclass(frozen=True, slots=True)
class Log:
    """A verbose log line, as chat -v writes (secrets shown as ??????)."""

    text: str


@dataclasses.dataclass(frozen=True, slots=True)
class Done:
    """The script ended with chat's ``exit_code``; ``reason`` says why."""

    exit_code: int
    reason: str


ChatEvent: TypeAlias = Send | Break | Say | Report | Echo | Log | Done


# --- the runner ---------------------------------------------------------------------------


class State(enum.Enum):
    RUNNING = "running"  # between steps (only inside a call)
    EXPECTING = "expecting"  # waiting for an expect string, ABORT strings armed
    PAUSED = "paused"  # in a \d or \p of a send string
    REPORTING = "reporting"  # ending; reading the rest of a REPORT line (at most 1 s idle)
    DONE = "done"


#: (state, trigger) -> next state. Anything else is a ChatStateError.
TRANSITIONS: dict[tuple[State, str], State] = {
    (State.RUNNING, "expect"): State.EXPECTING,
    (State.RUNNING, "pause"): State.PAUSED,
    (State.RUNNING, "finish"): State.REPORTING,
    (State.RUNNING, "done"): State.DONE,
    (State.EXPECTING, "match"): State.RUNNING,
    (State.EXPECTING, "timeout"): State.RUNNING,
    (State.EXPECTING, "finish"): State.REPORTING,
    (State.EXPECTING, "done"): State.DONE,
    (State.PAUSED, "resume"): State.RUNNING,
    (State.PAUSED, "finish"): State.REPORTING,
    (State.PAUSED, "done"): State.DONE,
    (State.REPORTING, "done"): State.DONE,
}


class _Holdback:
    """Passes bytes on with secrets redacted, holding back a tail that could be the
    start of a secret, so a secret split across reads is still caught."""

    def __init__(self, secrets: list[bytes]) -> None:
        self.secrets = [s for s in secrets if s]
        self.pending = bytearray()

    def feed(self, data: bytes) -> None:
        self.pending += data

    def take(self, final: bool = False) -> bytes:
        data = _redact(bytes(self.pending), self.secrets)
        keep = 0
        if not final:
            for secret in self.secrets:
                for k in range(min(len(secret) - 1, len(data)), keep, -1):
                    if data.endswith(secret[:k]):
                        keep = k
                        break
        self.pending = bytearray(data[len(data) - keep :]) if keep else bytearray()
        return data[: len(data) - keep]


class ChatRunner:
    """Runs a Script, sans I/O. Feed it bytes and time; act on its events.

    - ``receive_data(data, now)``: bytes from the modem.
    - ``get_timer()`` / ``handle_timer(now)``: when the runner next needs attention.
    - ``connection_lost(now)``: the port failed; the script ends with exit code 2.
    - ``hangup(now)``: the modem hung up (carrier lost); ends the script with 2
      unless the script said HANGUP OFF.
    - ``events()``: what to do, in order: Send, Break, Say, Report, Echo, Log, Done.

    ``secrets`` lists every \\q string so that an adapter can redact them before
    anything is sent. ``timeout`` is the current expect timeout (TIMEOUT changes
    it); adapters use it for writes too, as chat does.
    """

    def __init__(
        self,
        script: Script,
        *,
        now: float,
        default_timeout: float = DEFAULT_TIMEOUT,
        echo: bool = False,
        verbose: bool = False,
    ) -> None:
        if (
            isinstance(default_timeout, bool)
            or not isinstance(default_timeout, int | float)
            or not 0 < default_timeout < math.inf
        ):
            raise ConfigError(
                f"the chat timeout must be a positive number of seconds, not {default_timeout!r}"
            )
        self.script = script
        self.timeout = float(default_timeout)
        self.echo = echo
        self.verbose = verbose
        self.hangup_ends = True
        self.secrets: list[bytes] = list(script.secrets)
        self.state = State.RUNNING
        self.exit_code: int | None = None
        self.reason = ""
        self._events: list[ChatEvent] = []
        self._aborts: list[bytes] = []
        self._reports: list[bytes] = []
        self._report: bytearray | None = None  # a REPORT line being gathered
        self._pending = bytearray()  # received, not yet read by the script
        self._window = bytearray()  # what the current expect has read
        self._logged = bytearray()  # the received line not yet logged (verbose)
        self._echo = _Holdback(self.secrets)
        self._pc = 0
        self._link = 0
        self._pattern = b""
        self._sending = False
        self._sub_send = False
        self._quiet = False
        self._parts: list[SendPart] = []
        self._deadline: float | None = None
        self._waited = 0.0
        self._run(now)

    # -- public API -----------------------------------------------------------------------

    @property
    def done(self) -> bool:
        return self.state is State.DONE

    def events(self) -> list[ChatEvent]:
        """Take the events produced so far."""
        taken, self._events = self._events, []
        return taken

    def get_timer(self) -> float | None:
        """When ``handle_timer`` must be called next (None once done)."""
        return self._deadline

    def unread(self) -> bytes:
        """Bytes received that the script did not read (what follows the last match)."""
        return bytes(self._pending)

    def receive_data(self, data: bytes, now: float) -> None:
        """Bytes from the modem. Timers are not fired here: call ``handle_timer``."""
        if self.state is State.DONE or not data:
            return
        self._pending += data
        if len(self._pending) > MAX_PENDING and self.state is State.PAUSED:
            self._end(EXIT_ERROR, f"more than {MAX_PENDING} bytes arrived during a pause", now)
            return
        self._consume(now)
        self._run(now)

    def handle_timer(self, now: float) -> None:
        """Give the runner attention at ``now``; does nothing before ``get_timer()``."""
        if self._deadline is None or now < self._deadline:
            return
        if self.state is State.EXPECTING:
            self._timed_out(now)
        elif self.state is State.PAUSED:
            self._goto("resume")
            self._deadline = None
            self._run(now)
        elif self.state is State.REPORTING:
            self._emit_report()
            self._complete()

    def connection_lost(self, now: float, reason: str = "the connection was lost") -> None:
        """The port failed (read or write error, device gone): exit code 2."""
        if self.state is State.DONE:
            return
        if self.state is State.REPORTING:  # already ending: keep its exit code
            self._emit_report()
            self._complete()
            return
        self._end(EXIT_ERROR, reason, now, linger=False)

    def hangup(self, now: float) -> None:
        """The modem hung up (carrier lost). Ends with exit code 2 unless HANGUP OFF."""
        if self.state in (State.DONE, State.REPORTING):
            return
        if self.hangup_ends:
            self._end(EXIT_ERROR, "hangup: the modem dropped carrier", now)
        else:
            self._log("hangup ignored (HANGUP OFF)")

    # -- machinery --------------------------------------------------------------------------

    def _goto(self, trigger: str) -> None:
        target = TRANSITIONS.get((self.state, trigger))
        if target is None:
            raise ChatStateError(
                f"chat runner: no move from state {self.state.value!r} on {trigger!r}"
            )
        self.state = target

    def _emit(self, event: ChatEvent) -> None:
        self._events.append(event)

    def _log(self, text: str) -> None:
        if self.verbose:
            self._emit(Log(_redact_text(text, self.secrets)))

    def _flush_echo(self, final: bool = False) -> None:
        data = self._echo.take(final)
        if data:
            self._emit(Echo(data))

    def _run(self, now: float) -> None:
        steps = self.script.steps
        while self.state is State.RUNNING:
            if self._sending:
                if not self._pump(now):
                    return
                self._sending = False
                self._send_done(now)
                continue
            if self._pc >= len(steps):
                self._end(EXIT_OK, "script completed", now)
                return
            self._execute(steps[self._pc], now)

    def _execute(self, step: Step, now: float) -> None:
        if isinstance(step, ExpectStep):
            self._link = 0
            self._start_expect(step, now)
            return
        self._pc += 1
        if isinstance(step, SendStep):
            self._start_send(step.string, sub=False)
        elif isinstance(step, AbortStep):
            if len(self._aborts) >= MAX_ABORTS:
                self._end(EXIT_ERROR, f"too many ABORT strings (chat allows {MAX_ABORTS})", now)
                return
            self._aborts.append(step.pattern)
            self._log(f"abort on ({visible(step.pattern)})")
        elif isinstance(step, ClearAbortStep):
            self._aborts = [a for a in self._aborts if a != step.pattern]
            self._log(f"clear abort on ({visible(step.pattern)})")
        elif isinstance(step, ReportStep):
            if len(self._reports) >= MAX_REPORTS:
                self._end(EXIT_ERROR, f"too many REPORT strings (chat allows {MAX_REPORTS})", now)
                return
            self._reports.append(step.pattern)
            self._log(f"report ({visible(step.pattern)})")
        elif isinstance(step, ClearReportStep):
            self._reports = [r for r in self._reports if r != step.pattern]
            self._log(f"clear report ({visible(step.pattern)})")
        elif isinstance(step, TimeoutStep):
            self.timeout = step.seconds
            self._log(f"timeout set to {step.seconds:g} seconds")
        elif isinstance(step, EchoStep):
            if self.echo and not step.on:
                self._flush_echo(final=True)
            self.echo = step.on
        elif isinstance(step, HangupStep):
            self.hangup_ends = step.on
        else:
            self._emit(Say(_redact_text(step.text, self.secrets), step.end))

    # expecting

    def _start_expect(self, step: ExpectStep, now: float) -> None:
        if self._link >= len(step.chain):  # '' expects nothing
            self._pc += 1
            return
        pattern = step.chain[self._link][0]
        self._log(f"expect ({visible(pattern)})")
        if not pattern:
            self._log(" -- got it")
            self._pc += 1
            return
        self._pattern = pattern
        self._window.clear()
        self._logged.clear()
        self._goto("expect")
        self._waited = self.timeout
        self._deadline = now + self.timeout
        self._consume(now)

    def _consume(self, now: float) -> None:
        """Read pending bytes one at a time, as chat does, while something reads."""
        used = 0
        outcome: _Outcome = None
        pending = self._pending
        while used < len(pending):
            if self.state is State.EXPECTING:
                outcome = self._read_expecting(pending[used])
                used += 1
                if outcome is not None:
                    break
            elif self.state is State.REPORTING:
                self._deadline = now + REPORT_LINGER
                ended = self._read_reporting(pending[used])
                used += 1
                if ended:
                    break
            else:
                break
        del pending[:used]
        self._flush_echo()
        if outcome == "match":
            self._goto("match")
            self._deadline = None
            self._pc += 1
        elif isinstance(outcome, tuple):
            index, pattern = outcome
            self._end(
                EXIT_ABORT + index,
                f"received ABORT string {_quote(pattern)} (ABORT #{index + 1})",
                now,
            )

    def _read_expecting(self, b: int) -> _Outcome:
        """One byte read by an expect: "match", (index, pattern) of an ABORT, or None."""
        c = b & 0x7F  # chat strips the 8th bit (ISTRIP, and its get_char masks it)
        if self.echo:
            self._echo.feed(bytes((b,)))
        if self.verbose:
            if c == 0x0A:
                self._log(visible(bytes(self._logged)))
                self._logged.clear()
            else:
                self._logged.append(c)
                if len(self._logged) >= 80:
                    self._log(visible(bytes(self._logged)))
                    self._logged.clear()
        window = self._window
        window.append(c)
        if len(window) > MAX_EXPECT + MAX_PATTERN:
            del window[: len(window) - MAX_EXPECT]
        # chat's order: REPORT strings, then the expect string, then ABORT strings.
        if self._report is None:
            for n, pattern in enumerate(self._reports):
                if window.endswith(pattern):
                    self._report = bytearray(pattern)
                    del self._reports[n]  # a REPORT string reports once
                    break
        elif not _is_control(c):
            if len(self._report) < MAX_REPORT_LINE:
                self._report.append(c)
        else:
            self._emit_report()
        if window.endswith(self._pattern):
            self._flush_log(" -- got it")
            return "match"
        for n, pattern in enumerate(self._aborts):
            if window.endswith(pattern):
                self._flush_log(" -- failed")
                return (n, pattern)
        return None

    def _flush_log(self, tail: str) -> None:
        if self.verbose:
            if self._logged:
                self._log(visible(bytes(self._logged)))
                self._logged.clear()
            self._log(tail)

    def _timed_out(self, now: float) -> None:
        step = self.script.steps[self._pc]
        assert isinstance(step, ExpectStep)
        self._flush_log(" -- timed out")
        self._goto("timeout")
        self._deadline = None
        reply = step.chain[self._link][1]
        if reply is None:
            self._end(
                EXIT_TIMEOUT,
                f"timed out after {self._waited:g} s waiting for {_quote(self._pattern)}",
                now,
            )
            return
        self._start_send(reply, sub=True)
        self._run(now)

    def _read_reporting(self, b: int) -> bool:
        """A byte read while ending: True when the REPORT line is complete."""
        assert self._report is not None
        c = b & 0x7F
        if _is_control(c):
            self._emit_report()
            self._complete()
            return True
        if len(self._report) < MAX_REPORT_LINE:
            self._report.append(c)
        return False

    def _emit_report(self) -> None:
        if self._report is not None:
            text = bytes(self._report).decode("ascii", "replace")
            self._emit(Report(_redact_text(text, self.secrets)))
            self._report = None

    # sending

    def _start_send(self, string: SendString, *, sub: bool) -> None:
        self._log(f"send ({string.shown()})")
        self._parts = list(string.parts)
        self._quiet = string.quiet
        self._sub_send = sub
        self._sending = True

    def _pump(self, now: float) -> bool:
        """Emit the parts of the send string; False when a pause stopped it."""
        while self._parts:
            part = self._parts.pop(0)
            if isinstance(part, bytes):
                self._emit(Send(part, self._quiet))
            elif isinstance(part, SendBreak):
                self._emit(Break(part.seconds))
            else:
                self._goto("pause")
                self._deadline = now + part.seconds
                return False
        return True

    def _send_done(self, now: float) -> None:
        if not self._sub_send:
            return
        step = self.script.steps[self._pc]
        assert isinstance(step, ExpectStep)
        self._link += 1
        if self._link < len(step.chain):
            self._start_expect(step, now)
        else:  # "expect-send" with nothing after: done once the send went out
            self._pc += 1

    # ending

    def _end(self, code: int, reason: str, now: float, *, linger: bool = True) -> None:
        self.exit_code = code
        self.reason = reason
        self._sending = False
        self._parts = []
        if code != EXIT_OK:
            self._log(f"Failed ({reason})")
        if self._report is not None and linger:
            self._goto("finish")
            self._deadline = now + REPORT_LINGER
            self._consume(now)
            return
        self._emit_report()
        self._complete()

    def _complete(self) -> None:
        self._flush_echo(final=True)
        assert self.exit_code is not None
        self._goto("done")
        self._deadline = None
        self._emit(Done(self.exit_code, self.reason))
