"""The AT command engine's core (ITU-T V.250 and Hayes practice), sans I/O.

Bytes from the modem go in (:meth:`ATCore.receive_data`), events come out
(:meth:`ATCore.next_event`); commands go out as bytes (:meth:`ATCore.send_command`
returns what to write). The core never reads a clock, sleeps or touches a port:
the time is passed in, and :meth:`ATCore.get_timer` / :meth:`ATCore.handle_timer`
give the in-flight command its timeout (the aioquic way). A client drives it::

    core = ATCore()
    port.write(core.send_command("AT+CSQ", now=clock(), timeout=2.0))
    lines = []
    while True:
        event = core.next_event()
        if event is None:
            deadline = core.get_timer()
            data = port.read_until(deadline)        # whatever arrived, maybe nothing
            core.receive_data(data)
            core.handle_timer(clock())
            continue
        match event:
            case Intermediate(text=text): lines.append(text)
            case Unsolicited(): dispatch_urc(event)        # never part of the reply
            case Timeout(): raise ModemTimeout(event.command, timeout=event.timeout, lines=lines)
            case Final():
                if (error := error_for(event, "AT+CSQ", lines=lines)) is not None:
                    raise error
                return lines

One command is in flight at a time; the client queues, the core enforces it (a
second :meth:`~ATCore.send_command` raises :class:`ModemProtocolError`).

Events (frozen dataclasses)
---------------------------
:class:`Echo` ``(text)``
    the modem echoing a command line (E1) or the text sent after a prompt.
:class:`Intermediate` ``(text)``
    an information line of the command in flight ("+CSQ: 20,99", ATI text).
:class:`Final` ``(code, text, value)``
    the command's final result: ``code`` a :class:`ResultCode`; ``value`` the
    CONNECT text ("33600/V42BIS", None for a bare CONNECT), the +CME/+CMS
    ERROR number (int) or text (str), else None.
:class:`Unsolicited` ``(text, name)``
    an unsolicited result code; ``name`` is the name of the pattern it matched
    (:meth:`~ATCore.register_urc`), or None.
:class:`Prompt` ``(text)``
    the prompt a command declared ("> " after AT+CMGS); answer with
    :meth:`~ATCore.send_text`.
:class:`DataMode` ``(text)``
    the modem went to the online data state (``text`` is its CONNECT line).
:class:`Data` ``(data)``
    bytes received in the online data state (chunked as they were received).
:class:`Garbage` ``(data, reason)``
    bytes the core could not make sense of; nothing is dropped unreported.
:class:`Timeout` ``(command, timeout)``
    the in-flight command got no final result in time; the core is idle again.

Lines
-----
A line ends at S3 (CR) or S4 (LF) — ``s3``/``s4`` are parameters, and ATS3=n /
ATS4=n sent through the core update them for the reply to that command line
on. Empty lines (the CR LF pairs of V.250 framing) and lines of spaces and
tabs are skipped; a line of other white space or control characters only is
:class:`Garbage`. A line longer than ``max_line`` bytes comes out as
:class:`Garbage` in ``max_line`` pieces and the core resynchronises at the next
line end; the line after it is parsed as usual. Bytes that do not decode
(``encoding``, UTF-8 by default) give a :class:`Garbage` event with the raw line,
then the line is read with U+FFFD in their place. NUL bytes are dropped outside
the online data state and reported as :class:`Garbage` once the run ends (or
every ``max_line`` of them). :meth:`~ATCore.receive_data` never raises for what
the modem sends, and the events do not depend on how the input was split
between calls (only :class:`Data` chunking follows the reads).

Which line is what (while a command is in flight), first rule that applies:

1. **Exact echo**: a line that equals the command line (case-insensitively) is
   its :class:`Echo`, until one echo has come.
2. **Final**: a result code (:func:`~serialhs.modem.results.parse_result`) ends
   the command with :class:`Final`; CONNECT also enters the online data state.
   RING is the exception: always :class:`Unsolicited` ``(name="RING")``.
3. **Reply prefix beats URC patterns**: a line starting with the response prefix
   of the command in flight (``+CREG:`` while ``AT+CREG?`` is in flight; every
   extended command on the line counts, or pass ``prefix=`` to
   :meth:`~ATCore.send_command`) is :class:`Intermediate`, even if it also
   matches a URC pattern. This is ModemManager's rule: a +CREG URC that arrives
   while AT+CREG? is in flight is taken as the reply.
4. **URC**: a line matching a registered pattern is :class:`Unsolicited` — before
   the echo, between information lines, just before the final result, wherever.
5. **Loose echo**: while the echo is still awaited (no other reply line seen), a
   line is taken as the echo if it begins with "AT", or is a piece (at least two
   characters) of the command line — a modem that lost or garbled part of the
   echo — or, with echo on and verbose results, arrives before any LF since the
   command was sent (V.250 frames every verbose response in CR LF; an echo is
   the command line ended by S3 alone, so anything before the first LF is echo,
   however noisy). After :meth:`~ATCore.send_text`, the text's echo may span
   several lines (the modem repeats the prompt after each CR).
6. Anything else is :class:`Intermediate`.

A line that was already partly received when the command was sent began before
the command, so it is no part of its reply: it is read as if no command were in
flight (below). If that line is a CONNECT, the modem went online on its own:
the command is dropped (no Final, no Timeout) and :class:`DataMode` follows.

Outside a command (state IDLE) a line is :class:`Unsolicited`: a registered
pattern names it; RING (and "RING <n>" distinctive ring) has name ``"RING"``,
``+CRING:`` has name ``"+CRING"`` (both are patterns registered by default and
can be unregistered); ``NO CARRIER`` has name ``"NO CARRIER"`` — the carrier was
lost, the modem is in command state; ``CONNECT ...`` (an auto-answered call) has
name ``"CONNECT"`` and is followed by :class:`DataMode`; any other final result
(a late OK or ERROR after a :class:`Timeout`) and any other line have name None
unless a pattern matches.

Verbose (V1) and numeric (V0) results
-------------------------------------
``verbose`` is True (V1), False (V0) or None (not known; the default).
ATV0/ATV1 sent through the core set it (the reply to that line already uses the
new form), ATZ and AT&F put it back to the value given to the constructor. A
line of digits (without leading zeros: "000" is an S-register value, never a
result) is a numeric result code when verbose is False or None and the command
is in flight, or when verbose is False outside a command; the number is looked
up in the numeric table (``numeric``: "rockwell" by default, see
:mod:`serialhs.modem.results`). With verbose=True a line of digits is
information ("ATS0?" answers "0" on some modems). Verbose words are understood
in every mode. Quiet mode (ATQ1) is not supported: without result codes every
command times out.

Prompts, text and data
----------------------
``send_command(cmd, now, prompt="> ")`` expects a prompt instead of (or before)
the final result: the prompt has no line end and is recognised only then, as
soon as the start of a line equals it. :meth:`~ATCore.send_text` sends the text
with its terminator (Ctrl-Z to send, ESC to cancel) and the command goes on to
its information lines ("+CMGS: 12") and final result.

After CONNECT, every byte is :class:`Data` — no line is parsed, so "\\r\\nOK\\r\\n"
inside the data is data. The modem leaves the online data state in one of two
ways, both told to the core by the client: it noticed the carrier drop (DCD, or
a hang-up by DTR): :meth:`~ATCore.enter_command_mode`; or it escapes with "+++":
after the guard time, write :meth:`~ATCore.send_escape`, wait the guard time
again; meanwhile the core passes data through and watches it for the modem's
answer (CR LF OK CR LF, or CR LF NO CARRIER CR LF; in V0 "0" CR or "3" CR), which
comes out as the :class:`Final` of a pseudo-command "+++" and returns the core to
IDLE (online command state: ATO resumes the call, ATH ends it). No answer within
the escape's timeout: :class:`Timeout` and back to DATA. Bytes that might be the
start of that answer are held back until it is clear whether they are.

State table
-----------
The core consults this table (:data:`TRANSITIONS`) for every step; a step that
is not in it raises :class:`ModemProtocolError` naming the state and the event.
Every step the modem can cause is in it, so received bytes never raise::

    IDLE            send_command          -> AWAIT_RESPONSE
    IDLE            send_command(prompt)  -> AWAIT_PROMPT
    IDLE            unsolicited           -> IDLE
    IDLE            connect               -> DATA
    IDLE            enter_command_mode    -> IDLE
    AWAIT_RESPONSE  echo                  -> AWAIT_RESPONSE
    AWAIT_RESPONSE  intermediate          -> AWAIT_RESPONSE
    AWAIT_RESPONSE  unsolicited           -> AWAIT_RESPONSE
    AWAIT_RESPONSE  final                 -> IDLE
    AWAIT_RESPONSE  connect               -> DATA
    AWAIT_RESPONSE  timeout               -> IDLE
    AWAIT_RESPONSE  abandon               -> IDLE
    AWAIT_PROMPT    echo                  -> AWAIT_PROMPT
    AWAIT_PROMPT    intermediate          -> AWAIT_PROMPT
    AWAIT_PROMPT    unsolicited           -> AWAIT_PROMPT
    AWAIT_PROMPT    final                 -> IDLE
    AWAIT_PROMPT    connect               -> DATA
    AWAIT_PROMPT    timeout               -> IDLE
    AWAIT_PROMPT    abandon               -> IDLE
    AWAIT_PROMPT    prompt                -> SENDING_TEXT
    SENDING_TEXT    intermediate          -> SENDING_TEXT
    SENDING_TEXT    unsolicited           -> SENDING_TEXT
    SENDING_TEXT    final                 -> IDLE
    SENDING_TEXT    connect               -> DATA
    SENDING_TEXT    timeout               -> IDLE
    SENDING_TEXT    abandon               -> IDLE
    SENDING_TEXT    send_text             -> AWAIT_RESPONSE
    DATA            data                  -> DATA
    DATA            send_data             -> DATA
    DATA            send_escape           -> ESCAPING
    DATA            enter_command_mode    -> IDLE
    ESCAPING        data                  -> ESCAPING
    ESCAPING        final                 -> IDLE
    ESCAPING        timeout               -> DATA
    ESCAPING        enter_command_mode    -> IDLE
"""

from __future__ import annotations

import codecs
import dataclasses
import enum
import math
import re
from collections import deque
from collections.abc import Mapping, Sequence
from types import MappingProxyType

from serialhs.errors import (
    CmeError,
    CmsError,
    ConfigError,
    ModemBusy,
    ModemCommandError,
    ModemNoAnswer,
    ModemNoCarrier,
    ModemNoDialtone,
    ModemProtocolError,
    ModemResultError,
)
from serialhs.modem.results import (
    CME_ERRORS,
    CMS_ERRORS,
    CODE_HINTS,
    DEFAULT_NUMERIC,
    ERROR_HINTS,
    NumericResult,
    ParsedResult,
    ResultCode,
    numeric_table,
    parse_result,
)

__all__ = [
    "CTRL_Z",
    "DEFAULT_ESCAPE_TIMEOUT",
    "DEFAULT_MAX_LINE",
    "DEFAULT_TIMEOUT",
    "ESC",
    "ESCAPE_COMMAND",
    "TRANSITIONS",
    "URC_CONNECT",
    "URC_CRING",
    "URC_NO_CARRIER",
    "URC_RING",
    "ATCore",
    "Data",
    "DataMode",
    "Echo",
    "Event",
    "Final",
    "Garbage",
    "Intermediate",
    "Prompt",
    "ResultCode",
    "State",
    "Timeout",
    "Trigger",
    "Unsolicited",
    "describe_transitions",
    "error_for",
    "format_command",
    "quote",
    "response_prefixes",
]

DEFAULT_TIMEOUT = 3.0  #: seconds a command may take unless send_command says otherwise
DEFAULT_ESCAPE_TIMEOUT = 3.0  #: seconds for the modem to answer "+++" (S12 guard is 1 s)
DEFAULT_MAX_LINE = 4096  #: longest line, in bytes, before it is reported as garbage
CTRL_Z = b"\x1a"  #: ends the text after a prompt: send it
ESC = b"\x1b"  #: ends the text after a prompt: cancel
ESCAPE_COMMAND = "+++"  #: the command name that Final/Timeout carry for an escape

URC_RING = "RING"
URC_CRING = "+CRING"
URC_NO_CARRIER = "NO CARRIER"
URC_CONNECT = "CONNECT"

_BUILTIN_URCS: tuple[tuple[str, str], ...] = (
    (URC_RING, r"RING(?:\s+\S.*)?$"),
    (URC_CRING, r"\+CRING:"),
)


# -- events ------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class Echo:
    """The modem echoing what was sent (a command line, or text after a prompt)."""

    text: str


@dataclasses.dataclass(frozen=True, slots=True)
class Intermediate:
    """An information line that belongs to the command in flight."""

    text: str


@dataclasses.dataclass(frozen=True, slots=True)
class Final:
    """The final result of the command in flight.

    ``text`` is the result as received (white space stripped); ``value`` is the
    CONNECT text (None for a bare CONNECT), the +CME/+CMS ERROR number (int) or
    text (str), or None.
    """

    code: ResultCode
    text: str
    value: int | str | None = None

    @property
    def success(self) -> bool:
        """True for OK and CONNECT."""
        return self.code.success


@dataclasses.dataclass(frozen=True, slots=True)
class Unsolicited:
    """An unsolicited result code; ``name`` is the pattern it matched, or None."""

    text: str
    name: str | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class Prompt:
    """The prompt the command in flight declared; answer with ATCore.send_text."""

    text: str


@dataclasses.dataclass(frozen=True, slots=True)
class DataMode:
    """The modem entered the online data state; ``text`` is its CONNECT line."""

    text: str


@dataclasses.dataclass(frozen=True, slots=True)
class Data:
    """Bytes received in the online data state."""

    data: bytes


@dataclasses.dataclass(frozen=True, slots=True)
class Garbage:
    """Bytes the core could not make sense of, and why."""

    data: bytes
    reason: str


@dataclasses.dataclass(frozen=True, slots=True)
class Timeout:
    """The command in flight got no final result within ``timeout`` seconds."""

    command: str
    timeout: float | None


Event = Echo | Intermediate | Final | Unsolicited | Prompt | DataMode | Data | Garbage | Timeout


# -- the state machine, as data ---------------------------------------------------------------


class State(enum.Enum):
    """Where the conversation with the modem is."""

    IDLE = "IDLE"  #: command state, nothing in flight
    AWAIT_RESPONSE = "AWAIT_RESPONSE"  #: a command is in flight (echo, information, final)
    AWAIT_PROMPT = "AWAIT_PROMPT"  #: a command that declared a prompt waits for it
    SENDING_TEXT = "SENDING_TEXT"  #: the prompt came; the client sends the text
    DATA = "DATA"  #: online data state: bytes are data
    ESCAPING = "ESCAPING"  #: "+++" sent; data flows while the modem's answer is awaited


class Trigger(enum.Enum):
    """What can happen to the core: the events of the state table."""

    SEND_COMMAND = "send_command"
    SEND_PROMPT_COMMAND = "send_command(prompt)"
    SEND_TEXT = "send_text"
    SEND_DATA = "send_data"
    SEND_ESCAPE = "send_escape"
    ENTER_COMMAND_MODE = "enter_command_mode"
    ABANDON = "abandon"
    ECHO = "echo"
    INTERMEDIATE = "intermediate"
    UNSOLICITED = "unsolicited"
    PROMPT = "prompt"
    FINAL = "final"
    CONNECT = "connect"
    DATA = "data"
    TIMEOUT = "timeout"


def _table() -> dict[tuple[State, Trigger], State]:
    S, T = State, Trigger
    table: dict[tuple[State, Trigger], State] = {
        (S.IDLE, T.SEND_COMMAND): S.AWAIT_RESPONSE,
        (S.IDLE, T.SEND_PROMPT_COMMAND): S.AWAIT_PROMPT,
        (S.IDLE, T.UNSOLICITED): S.IDLE,
        (S.IDLE, T.CONNECT): S.DATA,
        (S.IDLE, T.ENTER_COMMAND_MODE): S.IDLE,
    }
    for state in (S.AWAIT_RESPONSE, S.AWAIT_PROMPT, S.SENDING_TEXT):
        # the echo is over once the prompt came (until the text is sent)
        lines = (
            (T.INTERMEDIATE, T.UNSOLICITED)
            if state is S.SENDING_TEXT
            else (
                T.ECHO,
                T.INTERMEDIATE,
                T.UNSOLICITED,
            )
        )
        for trigger in lines:
            table[state, trigger] = state
        table[state, T.FINAL] = S.IDLE
        table[state, T.CONNECT] = S.DATA
        table[state, T.TIMEOUT] = S.IDLE
        table[state, T.ABANDON] = S.IDLE
    table[S.AWAIT_PROMPT, T.PROMPT] = S.SENDING_TEXT
    table[S.SENDING_TEXT, T.SEND_TEXT] = S.AWAIT_RESPONSE
    table.update(
        {
            (S.DATA, T.DATA): S.DATA,
            (S.DATA, T.SEND_DATA): S.DATA,
            (S.DATA, T.SEND_ESCAPE): S.ESCAPING,
            (S.DATA, T.ENTER_COMMAND_MODE): S.IDLE,
            (S.ESCAPING, T.DATA): S.ESCAPING,
            (S.ESCAPING, T.FINAL): S.IDLE,
            (S.ESCAPING, T.TIMEOUT): S.DATA,
            (S.ESCAPING, T.ENTER_COMMAND_MODE): S.IDLE,
        }
    )
    return table


#: (state, trigger) -> next state. Anything missing is illegal.
TRANSITIONS: Mapping[tuple[State, Trigger], State] = MappingProxyType(_table())

_COMMAND_STATES = frozenset({State.AWAIT_RESPONSE, State.AWAIT_PROMPT, State.SENDING_TEXT})
_ONLINE_STATES = frozenset({State.DATA, State.ESCAPING})


def describe_transitions() -> str:
    """The state table as text, one transition a line (the module docstring shows it)."""
    rows = []
    for state in State:
        for (from_state, trigger), to_state in TRANSITIONS.items():
            if from_state is state:
                rows.append(f"    {state.name:<15} {trigger.value:<21} -> {to_state.name}")
    return "\n".join(rows)


# -- command-line helpers ---------------------------------------------------------------------

_EXTENDED_SIGILS = "+^$#!*"
_NAME_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-/%!")


@dataclasses.dataclass(frozen=True, slots=True)
class _Scan:
    basic: tuple[tuple[str, str], ...]  #: (name, argument) of basic commands, in order
    extended: tuple[str, ...]  #: names of extended commands ("+CREG"), upper case


def _scan(command: str) -> _Scan:
    """Split a command line (after "AT") into basic and extended commands."""
    body = command[2:]
    size = len(body)
    basic: list[tuple[str, str]] = []
    extended: list[str] = []
    i = 0
    while i < size:
        char = body[i]
        if char in " ;":
            i += 1
            continue
        if char in _EXTENDED_SIGILS:
            j = i + 1
            while j < size and body[j].upper() in _NAME_CHARS:
                j += 1
            if j > i + 1:
                extended.append(body[i:j].upper())
            quoted = False
            while j < size and (quoted or body[j] != ";"):
                if body[j] == '"':
                    quoted = not quoted
                j += 1
            i = j + 1
            continue
        upper = char.upper()
        if upper == "D":  # a dial string runs to the end of the line
            basic.append(("D", body[i + 1 :]))
            break
        if char in "&\\%" and i + 1 < size:
            name, j = body[i : i + 2].upper(), i + 2
        else:
            name, j = upper, i + 1
        if name == "S":
            k = j
            while k < size and body[k].isdigit():
                k += 1
            name, j = f"S{body[j:k]}", k
            if j < size and body[j] == "?":
                basic.append((name, "?"))
                i = j + 1
                continue
            if j < size and body[j] == "=":
                j += 1
        k = j
        while k < size and body[k].isdigit():
            k += 1
        basic.append((name, body[j:k]))
        i = k
    return _Scan(tuple(basic), tuple(extended))


def response_prefixes(command: str) -> tuple[str, ...]:
    """The prefixes that information lines of ``command`` start with: "+CREG:" for
    "AT+CREG?", one per extended command on the line ("AT+CSQ;+CREG?" gives both)."""
    if command[:2].upper() != "AT":
        return ()
    return tuple(dict.fromkeys(f"{name}:" for name in _scan(command).extended))


def quote(text: str) -> str:
    """A V.250 string constant: ``text`` in double quotes, with a quote or a
    backslash inside written as \\22 or \\5C."""
    return '"' + text.replace("\\", "\\5C").replace('"', "\\22") + '"'


def format_command(
    name: str,
    *,
    set: str | int | Sequence[str | int] | None = None,
    query: bool = False,
    test: bool = False,
) -> str:
    """An extended-syntax command line: ``format_command("+CMGF", set=1)`` is
    "AT+CMGF=1", ``query=True`` gives "AT+CMGF?", ``test=True`` gives "AT+CMGF=?",
    none of them the action form "AT+CMGF". Several values are joined by commas;
    strings are put in as they are (use :func:`quote` for string constants)."""
    forms = (set is not None) + query + test
    if forms > 1:
        raise ConfigError("format_command takes at most one of set=, query=, test=")
    body = name[2:] if name[:2].upper() == "AT" else name
    if not body or any(c in body for c in "\r\n\x00;?="):
        raise ConfigError(f"{name!r} is not a command name (like '+CMGF' or '&C')")
    line = f"AT{body}"
    if query:
        return f"{line}?"
    if test:
        return f"{line}=?"
    if set is None:
        return line
    values: Sequence[str | int] = [set] if isinstance(set, (str, int)) else set
    return f"{line}={','.join(str(v) for v in values)}"


# -- the core -------------------------------------------------------------------------------


@dataclasses.dataclass(slots=True)
class _InFlight:
    """The command in flight (or the escape awaiting the modem's answer)."""

    command: str
    prefixes: tuple[str, ...]
    prompt: bytes | None
    timeout: float | None
    deadline: float | None
    echo_text: str  #: what an echo would look like: the command line, or the text
    echo_pending: bool = True  #: no reply line yet, so an echo may still come
    echo_seen: bool = False  #: the echo of the command line came
    structural: bool = False  #: lines before the first LF are echo (E1 and verbose)
    text_phase: bool = False  #: the text after the prompt was sent
    lf_seen: bool = False  #: an LF arrived since the command (or text) was sent
    stale_line: bool = False  #: the partial line at send time began before the command


_ERROR_CLASSES: Mapping[ResultCode, type[ModemResultError]] = MappingProxyType(
    {
        ResultCode.BUSY: ModemBusy,
        ResultCode.NO_CARRIER: ModemNoCarrier,
        ResultCode.NO_DIALTONE: ModemNoDialtone,
        ResultCode.NO_ANSWER: ModemNoAnswer,
        ResultCode.ERROR: ModemCommandError,
    }
)


def error_for(
    final: Final, command: str, *, lines: Sequence[str] = (), port: str | None = None
) -> ModemResultError | None:
    """The typed error for a final result, or None when it is a success (OK,
    CONNECT). ``lines`` (the information lines received) and ``port`` go into the
    error."""
    code = final.code
    if code.success or code is ResultCode.RING:
        return None
    if code in (ResultCode.CME_ERROR, ResultCode.CMS_ERROR):
        cls: type[CmeError | CmsError] = CmeError if code is ResultCode.CME_ERROR else CmsError
        meanings = CME_ERRORS if code is ResultCode.CME_ERROR else CMS_ERRORS
        number = final.value if isinstance(final.value, int) else None
        meaning = meanings.get(number) if number is not None else None
        if isinstance(final.value, str):
            meaning = final.value
        hint = CODE_HINTS.get((code, number)) if number is not None else None
        return cls(
            command, final.text, code=number, meaning=meaning, lines=lines, port=port, hint=hint
        )
    error_class = _ERROR_CLASSES.get(code)
    if error_class is not None:
        return error_class(command, None, final.text, lines=lines, port=port)
    return ModemResultError(
        command, code, final.text, lines=lines, port=port, hint=ERROR_HINTS.get(code)
    )


def _register_byte(value: int, what: str) -> int:
    if not isinstance(value, int) or not 1 <= value <= 127:
        raise ConfigError(f"{what} must be a character code from 1 to 127, not {value!r}")
    return value


class ATCore:
    """The AT engine's sans-I/O core. See the module docstring for the rules.

    ``echo``: the modem echoes command lines (E1, the factory default); only
    widens echo detection, an absent echo is never waited for. ``verbose``: True
    (V1), False (V0) or None (unknown). ``s2``/``s3``/``s4``: the escape
    character, the command line terminator and the response formatting
    character. ``max_line``: the longest line in bytes. ``numeric``: the numeric
    result table, by name or as a mapping. ``encoding``: how lines are decoded and
    command lines encoded. ``urcs``: patterns to register besides the built-in
    RING and +CRING.
    """

    def __init__(
        self,
        *,
        echo: bool = True,
        verbose: bool | None = None,
        s2: int = 0x2B,
        s3: int = 0x0D,
        s4: int = 0x0A,
        max_line: int = DEFAULT_MAX_LINE,
        numeric: str | Mapping[int, NumericResult] = DEFAULT_NUMERIC,
        encoding: str = "utf-8",
        urcs: Mapping[str, str | re.Pattern[str]] | None = None,
    ) -> None:
        if not isinstance(max_line, int) or max_line < 16:
            raise ConfigError(f"max_line must be at least 16 bytes, not {max_line!r}")
        try:
            codecs.lookup(encoding)
        except LookupError:
            raise ConfigError(f"unknown encoding {encoding!r}") from None
        self._s2 = _register_byte(s2, "s2")
        self._s3 = _register_byte(s3, "s3")
        self._s4 = _register_byte(s4, "s4")
        if self._s3 == self._s4:
            raise ConfigError("s3 and s4 must differ")
        self._initial = (echo, verbose, self._s3, self._s4)
        self._echo = echo
        self._verbose = verbose
        self._max_line = max_line
        self._numeric = numeric_table(numeric)
        self._encoding = encoding
        self._urcs: dict[str, re.Pattern[str]] = {}
        for name, pattern in _BUILTIN_URCS:
            self.register_urc(name, pattern)
        for urc_name, urc_pattern in (urcs or {}).items():
            self.register_urc(urc_name, urc_pattern)

        self._state = State.IDLE
        self._cmd: _InFlight | None = None
        self._events: deque[Event] = deque()
        self._buf = bytearray()  #: the line being received
        self._discarding = False  #: inside an over-long line, until its end
        self._nuls = 0  #: NUL bytes in the current run, not yet reported
        self._skip_lf = False  #: an LF right after a verbose CONNECT belongs to it
        self._held = bytearray()  #: ESCAPING: bytes that may begin the modem's answer
        self._stop = self._stop_pattern()

    # -- what the client reads ---------------------------------------------------------------

    @property
    def state(self) -> State:
        return self._state

    @property
    def command(self) -> str | None:
        """The command line in flight ("+++" while an escape is answered), or None."""
        return self._cmd.command if self._cmd is not None else None

    @property
    def echo(self) -> bool:
        return self._echo

    @echo.setter
    def echo(self, value: bool) -> None:
        self._echo = bool(value)

    @property
    def verbose(self) -> bool | None:
        return self._verbose

    @verbose.setter
    def verbose(self, value: bool | None) -> None:
        self._verbose = None if value is None else bool(value)

    @property
    def s3(self) -> int:
        return self._s3

    @property
    def s4(self) -> int:
        return self._s4

    @property
    def max_line(self) -> int:
        return self._max_line

    @property
    def numeric(self) -> Mapping[int, NumericResult]:
        return self._numeric

    @property
    def buffered(self) -> bytes:
        """Received bytes not yet part of any event (a partial line, held-back data)."""
        return bytes(self._buf) + bytes(self._held) + b"\x00" * self._nuls

    @property
    def urcs(self) -> Mapping[str, re.Pattern[str]]:
        """The registered URC patterns by name, in the order they are tried."""
        return MappingProxyType(self._urcs)

    def register_urc(self, name: str, pattern: str | re.Pattern[str]) -> None:
        """Report lines matching ``pattern`` (``re.match`` on the line with white
        space stripped: anchored at its start) as ``Unsolicited(text, name)``.
        Registering a name again replaces its pattern."""
        if not isinstance(name, str) or not name:
            raise ConfigError(f"a URC needs a non-empty name, not {name!r}")
        try:
            compiled = re.compile(pattern) if isinstance(pattern, str) else pattern
        except re.error as e:
            raise ConfigError(f"URC {name!r}: bad pattern {pattern!r}: {e}") from e
        self._urcs[name] = compiled

    def unregister_urc(self, name: str) -> None:
        """Stop recognising the URC ``name`` (built-ins: "RING", "+CRING")."""
        if self._urcs.pop(name, None) is None:
            known = ", ".join(self._urcs) or "none"
            raise ConfigError(f"no URC named {name!r} is registered (registered: {known})")

    def next_event(self) -> Event | None:
        """The next event, or None when the core needs more data (or time)."""
        return self._events.popleft() if self._events else None

    def events(self) -> list[Event]:
        """Take every event produced so far."""
        out = list(self._events)
        self._events.clear()
        return out

    def get_timer(self) -> float | None:
        """When :meth:`handle_timer` must be called next, or None."""
        return self._cmd.deadline if self._cmd is not None else None

    # -- what the client does ----------------------------------------------------------------

    def send_command(
        self,
        command: str,
        now: float,
        *,
        timeout: float | None = DEFAULT_TIMEOUT,
        prompt: str | None = None,
        prefix: str | Sequence[str] | None = None,
    ) -> bytes:
        """Start ``command`` (a command line beginning with "AT", without its
        terminator); returns the bytes to write (the line and S3).

        ``timeout``: seconds from ``now`` until :class:`Timeout` (None: none).
        ``prompt``: the command answers with this prompt before its final result
        (answer it with :meth:`send_text`). ``prefix``: the response prefix(es) of
        its information lines, if not the ones :func:`response_prefixes` derives.
        """
        trigger = Trigger.SEND_PROMPT_COMMAND if prompt else Trigger.SEND_COMMAND
        self._target(trigger)
        if not isinstance(command, str) or command[:2].upper() != "AT":
            raise self._misuse(
                trigger, f"{command!r} is not a command line", "command lines start with AT"
            )
        if any(c in command for c in (chr(self._s3), chr(self._s4), "\x00")):
            raise self._misuse(
                trigger,
                f"{command!r} contains a line end or NUL",
                "send one command line without its terminator",
            )
        line = self._encode(command, trigger)
        deadline = self._deadline(now, timeout, trigger)
        prompt_bytes = self._encode(prompt, trigger) if prompt else None
        if prefix is None:
            prefixes = response_prefixes(command)
        else:
            prefixes = tuple(p.upper() for p in ([prefix] if isinstance(prefix, str) else prefix))
        terminator = bytes([self._s3])
        self._cmd = _InFlight(
            command=command,
            prefixes=prefixes,
            prompt=prompt_bytes,
            timeout=timeout,
            deadline=deadline,
            echo_text=command,
            structural=self._echo and self._verbose is not False,
            stale_line=bool(self._buf) or self._discarding,
        )
        self._apply_settings(_scan(command))
        self._transition(trigger)
        return line + terminator

    def send_text(
        self,
        text: str | bytes,
        now: float,
        *,
        terminator: bytes = CTRL_Z,
        timeout: float | None = None,
    ) -> bytes:
        """Answer the prompt: returns ``text`` and ``terminator`` (Ctrl-Z sends, ESC
        cancels) as bytes to write. ``timeout`` restarts the command's timer from
        ``now`` (the network may take a minute to accept a message); None keeps it."""
        self._target(Trigger.SEND_TEXT)
        body = self._encode(text, Trigger.SEND_TEXT) if isinstance(text, str) else bytes(text)
        if terminator and terminator in body:
            raise self._misuse(
                Trigger.SEND_TEXT,
                f"the text contains its terminator {terminator!r}",
                "remove it, or choose another terminator",
            )
        cmd = self._cmd
        assert cmd is not None
        if timeout is not None:
            cmd.deadline = self._deadline(now, timeout, Trigger.SEND_TEXT)
            cmd.timeout = timeout
        cmd.text_phase = True
        cmd.echo_pending = True
        cmd.echo_text = body.decode(self._encoding, "replace")
        cmd.structural = self._echo and self._verbose is not False
        cmd.lf_seen = False
        cmd.stale_line = bool(self._buf) or self._discarding
        self._transition(Trigger.SEND_TEXT)
        return body + terminator

    def send_data(self, data: bytes) -> bytes:
        """Data for the far end, in the online data state; returns the bytes to write."""
        self._transition(Trigger.SEND_DATA)
        return bytes(data)

    def send_escape(self, now: float, *, timeout: float = DEFAULT_ESCAPE_TIMEOUT) -> bytes:
        """Escape from the online data state: returns the escape sequence (S2 three
        times, "+++") to write after the guard time. The modem's answer comes as a
        :class:`Final` for the command "+++" (then the core is IDLE); no answer
        within ``timeout``: :class:`Timeout` and back to DATA."""
        self._target(Trigger.SEND_ESCAPE)
        deadline = self._deadline(now, timeout, Trigger.SEND_ESCAPE)
        self._cmd = _InFlight(
            command=ESCAPE_COMMAND,
            prefixes=(),
            prompt=None,
            timeout=timeout,
            deadline=deadline,
            echo_text="",
            echo_pending=False,
        )
        self._held.clear()
        self._transition(Trigger.SEND_ESCAPE)
        return bytes([self._s2]) * 3

    def enter_command_mode(self) -> None:
        """The modem is in command state again (the client saw DCD drop, hung up
        with DTR, or handled the escape itself): lines are parsed from now on."""
        self._transition(Trigger.ENTER_COMMAND_MODE)
        self._flush_held()
        self._cmd = None
        self._skip_lf = False

    def abandon(self) -> None:
        """Give up the command in flight without waiting (a cancelled caller). Its
        late reply, if any, comes out as Unsolicited lines."""
        self._transition(Trigger.ABANDON)
        self._cmd = None

    def handle_timer(self, now: float) -> None:
        """Give the core the time: the in-flight command times out at its deadline."""
        cmd = self._cmd
        if cmd is None or cmd.deadline is None or now < cmd.deadline:
            return
        self._flush_held()
        self._transition(Trigger.TIMEOUT)
        self._cmd = None
        self._events.append(Timeout(cmd.command, cmd.timeout))

    # -- what the modem sends ------------------------------------------------------------------

    def receive_data(self, data: bytes) -> None:
        """Bytes received from the modem. Never raises for their content."""
        chunk = bytes(data)
        pos = 0
        while pos < len(chunk):
            if self._state in _ONLINE_STATES:
                pos = self._receive_online(chunk, pos)
            else:
                pos = self._receive_lines(chunk, pos)

    # -- internals: the state table ---------------------------------------------------------------

    def _target(self, trigger: Trigger) -> State:
        new = TRANSITIONS.get((self._state, trigger))
        if new is None:
            raise self._misuse(
                trigger, f"{trigger.value} is not allowed in state {self._state.name}"
            )
        return new

    def _transition(self, trigger: Trigger) -> None:
        self._state = self._target(trigger)

    def _misuse(
        self, trigger: Trigger, message: str, hint: str | None = None
    ) -> ModemProtocolError:
        if hint is None:
            if self._state in _COMMAND_STATES and self._cmd is not None:
                hint = (
                    f"{self._cmd.command!r} is in flight; wait for its Final or Timeout, "
                    "or abandon() it"
                )
            elif self._state in _ONLINE_STATES:
                hint = (
                    "the modem is in the online data state; send_data(), or leave it "
                    "with send_escape() or enter_command_mode()"
                )
            elif trigger is Trigger.SEND_TEXT:
                hint = "text goes after a prompt: send_command(..., prompt='> ') first"
            else:
                hint = "no command is in flight and the modem is in command state"
        return ModemProtocolError(
            message,
            state=self._state.name,
            event=trigger.name,
            command=self._cmd.command if self._cmd is not None else None,
            hint=hint,
        )

    def _encode(self, text: str, trigger: Trigger) -> bytes:
        try:
            return text.encode(self._encoding)
        except UnicodeEncodeError as e:
            raise self._misuse(
                trigger, f"{text!r} cannot be encoded as {self._encoding}: {e.reason}"
            ) from e

    def _deadline(self, now: float, timeout: float | None, trigger: Trigger) -> float | None:
        if timeout is None:
            return None
        if not math.isfinite(timeout) or timeout <= 0:
            raise self._misuse(trigger, f"timeout must be a positive number, not {timeout!r}")
        return now + timeout

    def _apply_settings(self, scan: _Scan) -> None:
        """Track E, V, S3, S4, Z and &F from the command line being sent."""
        for name, arg in scan.basic:
            if name in ("Z", "&F"):
                self._echo, self._verbose, self._s3, self._s4 = self._initial
            elif name in ("E", "V") and arg in ("", "0", "1"):
                on = arg == "1"
                if name == "E":
                    self._echo = on
                else:
                    self._verbose = on
            elif name in ("S3", "S4") and arg.isdigit():
                value = int(arg)
                other = self._s4 if name == "S3" else self._s3
                if 1 <= value <= 127 and value != other:
                    if name == "S3":
                        self._s3 = value
                    else:
                        self._s4 = value
        self._stop = self._stop_pattern()

    def _stop_pattern(self) -> re.Pattern[bytes]:
        return re.compile(b"[" + re.escape(bytes([self._s3, self._s4])) + b"\x00]")

    # -- internals: command state (lines) ------------------------------------------------------

    def _receive_lines(self, chunk: bytes, pos: int) -> int:
        size = len(chunk)
        while pos < size:
            if self._nuls and chunk[pos] != 0:
                self._flush_nuls()
            found = self._stop.search(chunk, pos)
            end = found.start() if found is not None else size
            if end > pos:
                self._append(chunk[pos:end])
            if found is None:
                return size
            if chunk[end] == 0:
                run = end
                while run < size and chunk[run] == 0:
                    run += 1
                self._nuls += run - end
                while self._nuls >= self._max_line:
                    self._nuls -= self._max_line
                    self._events.append(Garbage(b"\x00" * self._max_line, "NUL bytes"))
                pos = run
                continue
            pos = end + 1
            self._end_line(chunk[end])
            if self._state in _ONLINE_STATES:
                return pos
        return pos

    def _flush_nuls(self) -> None:
        self._events.append(Garbage(b"\x00" * self._nuls, "NUL bytes"))
        self._nuls = 0

    def _append(self, piece: bytes) -> None:
        self._buf += piece
        cmd = self._cmd
        if (
            self._state is State.AWAIT_PROMPT
            and cmd is not None
            and cmd.prompt is not None
            and not self._discarding
            and self._buf.startswith(cmd.prompt)
        ):
            del self._buf[: len(cmd.prompt)]
            self._transition(Trigger.PROMPT)
            cmd.echo_pending = False
            cmd.echo_seen = True  # the echo is over (until the text is sent)
            self._events.append(Prompt(cmd.prompt.decode(self._encoding, "replace")))
        while len(self._buf) > self._max_line:
            piece = bytes(self._buf[: self._max_line])
            del self._buf[: self._max_line]
            reason = (
                f"more of an over-long line (over {self._max_line} bytes)"
                if self._discarding
                else f"line longer than {self._max_line} bytes; skipped to the next line end"
            )
            self._discarding = True
            self._events.append(Garbage(piece, reason))

    def _end_line(self, terminator: int) -> None:
        cmd = self._cmd
        stale = False
        if cmd is not None and cmd.stale_line:
            stale, cmd.stale_line = True, False
        if self._discarding:
            if self._buf:
                self._events.append(
                    Garbage(
                        bytes(self._buf), f"end of an over-long line (over {self._max_line} bytes)"
                    )
                )
                self._buf.clear()
            self._discarding = False
        elif self._buf:
            line = bytes(self._buf)
            self._buf.clear()
            self._line(line, stale=stale, terminator=terminator)
        if terminator == self._s4 and self._cmd is not None:
            self._cmd.lf_seen = True

    def _decode(self, line: bytes) -> str:
        try:
            return line.decode(self._encoding)
        except UnicodeDecodeError as e:
            self._events.append(
                Garbage(
                    line,
                    f"undecodable byte(s) at offset {e.start} ({self._encoding}); "
                    "the line is read with U+FFFD in their place",
                )
            )
            return line.decode(self._encoding, "replace")

    def _match_urc(self, stripped: str) -> str | None:
        for name, pattern in self._urcs.items():
            if pattern.match(stripped):
                return name
        return None

    def _line(self, line: bytes, *, stale: bool, terminator: int) -> None:
        text = self._decode(line)
        stripped = text.strip()
        if not stripped:
            if line.strip(b" \t"):
                self._events.append(Garbage(line, "a line of white space and control characters"))
            return
        if self._state is State.IDLE or stale:
            self._unsolicited_line(text, stripped, terminator)
        else:
            self._reply_line(text, stripped, terminator)

    def _unsolicited_line(self, text: str, stripped: str, terminator: int) -> None:
        """A line outside any command, or one that began before the command in
        flight was sent (so it cannot be part of its reply)."""
        result = parse_result(stripped, numeric=self._numeric if self._verbose is False else None)
        if result is not None and result.code is ResultCode.CONNECT:
            self._transition(Trigger.CONNECT)
            self._cmd = None
            self._events.append(Unsolicited(text, URC_CONNECT))
            self._enter_data(stripped, terminator)
            return
        name: str | None = None
        if result is not None and result.code is ResultCode.RING:
            name = URC_RING
        elif result is not None and result.code is ResultCode.NO_CARRIER:
            name = URC_NO_CARRIER
        else:
            name = self._match_urc(stripped)
        self._transition(Trigger.UNSOLICITED)
        self._events.append(Unsolicited(text, name))

    def _reply_line(self, text: str, stripped: str, terminator: int) -> None:
        cmd = self._cmd
        assert cmd is not None
        if not (cmd.echo_seen or cmd.text_phase) and stripped.upper() == cmd.echo_text.upper():
            self._echo_line(cmd, text)
            return
        echo_possible = cmd.echo_pending
        result = parse_result(
            stripped, numeric=self._numeric if self._verbose is not True else None
        )
        if result is not None and result.code is not ResultCode.RING:
            self._final(result, stripped, terminator)
            return
        upper = stripped.upper()
        if any(upper.startswith(p) for p in cmd.prefixes):
            cmd.echo_pending = False
            self._transition(Trigger.INTERMEDIATE)
            self._events.append(Intermediate(text))
            return
        name = URC_RING if result is not None else self._match_urc(stripped)
        if name is not None:
            self._transition(Trigger.UNSOLICITED)
            self._events.append(Unsolicited(text, name))
            return
        if echo_possible and self._looks_like_echo(cmd, upper):
            self._echo_line(cmd, text)
            return
        cmd.echo_pending = False
        self._transition(Trigger.INTERMEDIATE)
        self._events.append(Intermediate(text))

    def _echo_line(self, cmd: _InFlight, text: str) -> None:
        self._transition(Trigger.ECHO)
        if not cmd.text_phase:
            cmd.echo_pending = False
            cmd.echo_seen = True
        self._events.append(Echo(text))

    def _looks_like_echo(self, cmd: _InFlight, upper: str) -> bool:
        sent = cmd.echo_text.upper()
        if cmd.text_phase:
            rest = upper
            marker = (cmd.prompt or b"").decode(self._encoding, "replace").strip().upper()
            if marker and rest.startswith(marker):
                rest = rest[len(marker) :]
            rest = "".join(c for c in rest if c >= " ").strip()
            if not rest or rest in sent:
                return True
        elif upper.startswith(("AT", "A/")) or (len(upper) >= 2 and upper in sent):
            return True
        return cmd.structural and not cmd.lf_seen

    def _final(self, result: ParsedResult, stripped: str, terminator: int) -> None:
        final = Final(result.code, stripped, result.value)
        if result.code is ResultCode.CONNECT:
            self._transition(Trigger.CONNECT)
            self._cmd = None
            self._events.append(final)
            self._enter_data(stripped, terminator)
            return
        self._transition(Trigger.FINAL)
        self._cmd = None
        self._events.append(final)

    def _enter_data(self, stripped: str, terminator: int) -> None:
        # A verbose result is CONNECT CR LF: the LF after the CR is not data.
        self._skip_lf = terminator == self._s3 and not stripped.isdigit()
        self._events.append(DataMode(stripped))

    # -- internals: the online data state ---------------------------------------------------------

    def _answers(self) -> list[tuple[bytes, ResultCode]]:
        crlf = bytes([self._s3, self._s4])
        out = [
            (crlf + b"OK" + crlf, ResultCode.OK),
            (crlf + b"NO CARRIER" + crlf, ResultCode.NO_CARRIER),
        ]
        if self._verbose is False:
            cr = bytes([self._s3])
            out += [(b"0" + cr, ResultCode.OK), (b"3" + cr, ResultCode.NO_CARRIER)]
        return out

    def _receive_online(self, chunk: bytes, pos: int) -> int:
        if self._skip_lf:
            self._skip_lf = False
            if chunk[pos] == self._s4:
                pos += 1
                if pos == len(chunk):
                    return pos
        if self._state is State.DATA:
            self._transition(Trigger.DATA)
            self._events.append(Data(chunk[pos:]))
            return len(chunk)
        # ESCAPING: data flows; the modem's answer to "+++" ends it.
        self._transition(Trigger.DATA)
        window = bytes(self._held) + chunk[pos:]
        self._held.clear()
        answers = self._answers()
        best: tuple[int, bytes, ResultCode] | None = None
        for answer, code in answers:
            at = window.find(answer)
            if at >= 0 and (best is None or at < best[0]):
                best = (at, answer, code)
        if best is not None:
            at, answer, code = best
            if at:
                self._events.append(Data(window[:at]))
            self._transition(Trigger.FINAL)
            self._cmd = None
            text = answer.decode("ascii").strip()
            self._events.append(Final(code, text, None))
            rest = window[at + len(answer) :]
            if rest:
                self.receive_data(rest)
            return len(chunk)
        keep = 0
        for size in range(min(len(window), max(len(a) for a, _ in answers) - 1), 0, -1):
            tail = window[-size:]
            if any(a.startswith(tail) for a, _ in answers):
                keep = size
                break
        if len(window) > keep:
            self._events.append(Data(window[: len(window) - keep]))
        self._held[:] = window[len(window) - keep :]
        return len(chunk)

    def _flush_held(self) -> None:
        if self._held:
            self._events.append(Data(bytes(self._held)))
            self._held.clear()
