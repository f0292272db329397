"""A Hayes (ITU-T V.250) modem emulator core, sans I/O.

:class:`HayesModem` behaves like a dial-up modem or the AT port of a cellular
module, as a :class:`~serialhs.modem.profile.ModemProfile` describes it, so that
dialers (ppp's chat, minicom, wvdial, serialhs' own AT client) cannot tell it
from hardware. tcpser is the model for what an emulator owes its DTE.

It has two sides and never touches either itself:

- the **DTE** (the computer on the serial line): :meth:`HayesModem.from_dte`
  (bytes it sent) and :meth:`HayesModem.dte_lines` (its DTR and RTS);
- the **telephone line** (a virtual exchange, written elsewhere):
  :meth:`~HayesModem.ring`, :meth:`~HayesModem.call_answered`,
  :meth:`~HayesModem.call_failed`, :meth:`~HayesModem.remote_hangup` and
  :meth:`~HayesModem.from_line`.

Every call takes ``now`` (seconds, any monotonic origin) and the core answers
with events (:meth:`HayesModem.events`): :class:`ToDte`, :class:`Drive`,
:class:`Dial`, :class:`Answer`, :class:`Hangup`, :class:`ToLine`,
:class:`SetUart`. Timers follow aioquic: :meth:`HayesModem.get_timer` says when
the core next needs :meth:`HayesModem.handle_timer`. Every entry point first
runs the timers that are due at its ``now``, so a late ``handle_timer`` call
loses nothing.

States and the transition table
-------------------------------
The state machine is :data:`TRANSITIONS`, a table of (state, input) -> state
that the code consults for every change; pairs in :data:`IGNORED` are inputs
that can arrive late (a call answered after the DTE hung up, data in flight at
hangup) and are dropped. Any other pair raises :class:`~serialhs.errors.SimError`
naming the state and the input; only the exchange can cause that, the DTE
cannot (a command that does not fit the state answers ERROR or NO CARRIER).

=================  ==================================================================
state              meaning
=================  ==================================================================
``IDLE``           command mode, on hook
``RINGING``        command mode, on hook, an incoming call is ringing (RING, RI)
``DIALING``        off hook, :class:`Dial` sent, waiting for the exchange (S7)
``ANSWERING``      off hook, :class:`Answer` sent, waiting for the exchange (S7)
``ONLINE``         data mode: DTE bytes go to the line, line bytes to the DTE
``ONLINE_COMMAND`` command mode with the call up (after +++ or &D1), or a ``;``
                   dial in progress; ATO goes back online
=================  ==================================================================

=================  ===============================================  =====================
input              what causes it                                   main transition
=================  ===============================================  =====================
``DIAL``           ATD<number>                                      IDLE -> DIALING
``DIAL_COMMAND``   ATD<number>; (stay in command mode)              IDLE -> ONLINE_COMMAND
``ANSWER``         ATA, or the S0-th ring                           RINGING -> ANSWERING
``ANSWERED``       ``call_answered``                                DIALING/ANSWERING ->
                                                                    ONLINE
``FAILED``         ``call_failed``                                  DIALING -> IDLE
``TIMEOUT``        S7 ran out                                       DIALING/ANSWERING ->
                                                                    IDLE
``ABORT``          a DTE character (not LF/NUL) while dialling      DIALING/ANSWERING ->
                   or answering                                     IDLE
``ESCAPE``         +++ with guard times, or a DTR drop with &D1     ONLINE -> ONLINE_COMMAND
``GO_ONLINE``      ATO                                              ONLINE_COMMAND -> ONLINE
``HANGUP``         ATH                                              ONLINE_COMMAND -> IDLE
``DTR_HANGUP``     a DTR drop with &D2 or &D3                       off hook -> IDLE
``RESET``          ATZ, or a DTR drop with &D3                      ONLINE_COMMAND -> IDLE
``RING``           ``ring``                                         IDLE -> RINGING
``REMOTE_HANGUP``  ``remote_hangup``                                RINGING, DIALING,
                                                                    ANSWERING -> IDLE; with
                                                                    a call up: S10 starts
``CARRIER_LOST``   S10 after a remote hangup                        ONLINE(_COMMAND) -> IDLE
``LINE_DATA``      ``from_line``                                    ONLINE, ONLINE_COMMAND
=================  ===============================================  =====================

The full table, with the self-transitions, is :data:`TRANSITIONS`;
:func:`transition_rows` lists it for documentation.

Behaviour the runtime and the exchange rely on
----------------------------------------------
- **Dialling**: ATD emits :class:`Dial` at once (``dial_time`` = commas x S8
  is a hint for the exchange) and waits ``dial_time`` + S7 seconds for
  :meth:`~HayesModem.call_answered` or :meth:`~HayesModem.call_failed`; then it
  gives up with NO CARRIER and emits :class:`Hangup`. A DTE character other
  than LF or NUL aborts the dial the same way (as on real modems).
- **Ringing**: :meth:`~HayesModem.ring` is called once per incoming call; the
  core runs the cadence itself: RI on and "RING" at once, RI off after
  :data:`RING_ON` seconds, the next ring :data:`RING_PERIOD` seconds after the
  last (2 s on, 4 s off: the North American cadence). S1 counts rings; with
  S0 > 0 the S0-th RING is followed at once by :class:`Answer` (auto-answer
  needs DTR on unless &D0). The exchange stops the ringing with
  :meth:`~HayesModem.remote_hangup` when the caller gives up.
- **Answering**: ATA (or auto-answer) emits :class:`Answer` and waits S7 for
  :meth:`~HayesModem.call_answered`. The exchange computes the link with
  :func:`negotiate_link` (caller's :attr:`~HayesModem.offer` first) and gives
  the same :class:`LinkParams` to both modems; each reports its own receive
  rate. No training time is added by the core.
- **Busy**: :meth:`~HayesModem.ring` on a modem that is off hook or already
  ringing is ignored; the exchange should check :attr:`HayesModem.busy` and
  answer the caller BUSY itself.
- **Lines**: the core drives the DTE's DSR, CTS, DCD and RI with
  :class:`Drive` events (four of them at construction). CTS is always on: the
  core never throttles, so RTS/CTS flow control is the wire's business (give
  the modem's end of the wire the settings from :class:`SetUart`). DCD follows
  the carrier with &C1 and is always on with &C0; DSR is always on with &S0 and
  on while a call is up with &S1. A line change comes before the text that goes
  with it (DCD on, then CONNECT; DCD off, then NO CARRIER).
- **DTR**: until :meth:`~HayesModem.dte_lines` says otherwise the DTE's DTR is
  taken as on. A drop must last S25 hundredths of a second to count. With a
  call up: &D0 ignores it; &D1 goes to online command mode with OK; &D2 hangs
  up with NO CARRIER (as tcpser and most modems report it) and emits
  :class:`Hangup`; &D3 does the same and then resets like ATZ (no further
  result). While dialing or answering, &D1-&D3 abort the call with NO CARRIER.
- **Carrier loss**: :meth:`~HayesModem.remote_hangup` with a call up drops the
  call S10 tenths of a second later: DCD off (&C1), NO CARRIER, IDLE. The core
  emits no :class:`Hangup` for what the exchange told it.
- **Data to the DTE outside data mode**: line data in ONLINE_COMMAND is kept
  (up to :data:`LINE_BUFFER_LIMIT` bytes, the rest dropped and counted in
  :attr:`HayesModem.dropped`) and delivered after the CONNECT that ATO sends;
  line data in any other state but ONLINE is dropped (it can only be in flight
  from before a hangup). DTE data after a remote hangup is dropped too.
- **+++**: S2 (default '+') three times, each less than the guard time S12/50 s
  after the previous, with at least the guard time of silence before the first
  and after the third, gives OK and ONLINE_COMMAND; the call stays up. The three
  characters are passed to the line like any data (as Hayes modems do), so
  "+++" inside a stream is data. S2 > 127 disables the escape.
- **Serial settings**: +IPR, +ICF, +IFC and &K answer OK at the old settings
  and then emit :class:`SetUart`; the runtime must let the preceding
  :class:`ToDte` bytes drain at the old rate before it applies the new settings.
  +IPR=0 (autobaud, if the profile allows it) keeps the current rate; the
  runtime may then follow the DTE's rate. ATZ and AT&F restore the flow control
  but keep the rate and framing.

Result codes, W and X
---------------------
V1 results are ``<S3><S4>TEXT<S3><S4>``, V0 results ``<number><S3>``; Q1
suppresses results (RING, CONNECT and NO CARRIER too) but not information text.
Numbers: 0 OK, 1 CONNECT, 2 RING, 3 NO CARRIER, 4 ERROR, 6 NO DIALTONE,
7 BUSY, 8 NO ANSWER, and the Rockwell CONNECT <rate> numbers of
:data:`CONNECT_CODES` (1 for a rate without one).

X selects the results: X0 gives only OK, CONNECT (without a rate), RING,
NO CARRIER and ERROR, so BUSY, NO DIALTONE and NO ANSWER become NO CARRIER;
X1 adds the rate to CONNECT and NO ANSWER; X2 adds NO DIALTONE; X3 adds BUSY
(not NO DIALTONE); X4 (the default) has them all.

W (this emulator's choice, after the Rockwell register of the same name)
selects what CONNECT reports, for X1-X4:

- W0 (default): the line rate this modem receives at, with the profile's
  ``connect_style`` suffix: ``CONNECT 33600`` (plain),
  ``CONNECT 33600/LAPM/V42BIS`` (protocol; no suffix without error
  correction), ``CONNECT 33600/ARQ`` (arq, with error correction).
  A cellular module reports its profile's ``connect_rate``.
- W1: ``CARRIER 33600``, ``PROTOCOL: LAP-M`` (``ALT`` for MNP, ``NONE``),
  ``COMPRESSION: V.42BIS`` (``V.44``, ``CLASS 5``, ``NONE``) and then
  ``CONNECT <DTE rate>`` (with V0 only the final number).
- W2: ``CONNECT <DTE rate>``.

Commands
--------
Command lines start with AT (any case) and end with S3; "A/" repeats the last
line at once. Characters are echoed as received with E1 (the parity bit is
ignored); S5 deletes the last character (never the AT); other control
characters and spaces are ignored; a line with more than the profile's
``max_command_length`` characters after AT (spaces not counted) answers ERROR.

Basic commands: A, B, D, E, H, I0-I9, L, M, N, O, P, Q, S<n>=<v>, S<n>?
(a 3-digit answer), S<n> then ? or =, T, V, W, X, Y, Z, &C, &D, &F, &K (0, 3,
4), &S, &V, &W, &Y, plus the profile's ``accepted_commands`` (no effect). An
unknown basic command answers ERROR, or is skipped when the profile's
``unknown_command`` is OK. A command after Z, A, O or a D without ';' is
ignored; after an error nothing more runs (what ran before stays done).

Extended commands (profiles with ``extended_commands``) run to the next ';':
+IPR, +ICF, +IFC, +GMI, +GMM, +GMR, +GCAP, +FCLASS (class 0 only), and for
cellular modules +CGMI, +CGMM, +CGMR, +CMEE and +CGDCONT. The profile's
``[modem.responses]`` answer fixed lines (+CSQ, +CREG?, +CPIN?, ...) and take
precedence. An unknown extended command answers ERROR whatever
``unknown_command`` says. A cellular module with +CMEE=1 answers a command it
knows but refuses with +CME ERROR: 50 (wrong parameters) or 4 (an operation the
command does not have), with +CMEE=2 the same as text (3GPP TS 27.007 §9.2).
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Mapping
from types import MappingProxyType

from serialhs.driver.lines import Line
from serialhs.driver.settings import FlowControl, Parity, SerialSettings, StopBits
from serialhs.errors import SimError
from serialhs.modem.profile import COMPRESSION, ERROR_CORRECTION, MODULATIONS, ModemProfile
from serialhs.modem.results import CME_ERRORS

__all__ = [
    "CONNECT_CODES",
    "IGNORED",
    "LINE_BUFFER_LIMIT",
    "RESULT_CODES",
    "RING_ON",
    "RING_PERIOD",
    "TRANSITIONS",
    "Answer",
    "CallResult",
    "Dial",
    "Drive",
    "Event",
    "Hangup",
    "HayesModem",
    "Input",
    "LinkOffer",
    "LinkParams",
    "SetUart",
    "State",
    "ToDte",
    "ToLine",
    "negotiate_link",
    "transition_rows",
]

#: Seconds RI stays on for each ring.
RING_ON = 2.0
#: Seconds from one ring to the next (RI off for RING_PERIOD - RING_ON).
RING_PERIOD = 6.0
#: Bytes of line data kept for the DTE while in online command mode.
LINE_BUFFER_LIMIT = 4096

#: Numeric (V0) codes of the verbose result codes (V.250 table 1).
RESULT_CODES: Mapping[str, int] = MappingProxyType(
    {
        "OK": 0,
        "CONNECT": 1,
        "RING": 2,
        "NO CARRIER": 3,
        "ERROR": 4,
        "NO DIALTONE": 6,
        "BUSY": 7,
        "NO ANSWER": 8,
    }
)

#: Numeric (V0) codes of CONNECT <rate> (the Rockwell/Conexant set); 1 otherwise.
CONNECT_CODES: Mapping[int, int] = MappingProxyType(
    {
        600: 9,
        1200: 5,
        2400: 10,
        4800: 11,
        7200: 13,
        9600: 12,
        12000: 14,
        14400: 15,
        16800: 59,
        19200: 16,
        21600: 61,
        24000: 62,
        26400: 63,
        28800: 64,
        31200: 91,
        33600: 84,
        38400: 17,
        57600: 18,
        115200: 19,
        230400: 20,
    }
)


# --- links ----------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class LinkOffer:
    """What one modem can do on the line, as it offers it to the exchange."""

    profile: str
    kind: str
    modulations: tuple[str, ...]
    error_correction: tuple[str, ...] = ()
    compression: tuple[str, ...] = ()
    digital: bool = False
    max_line_rate: int | None = None
    connect_rate: int | None = None

    @classmethod
    def from_profile(cls, profile: ModemProfile) -> LinkOffer:
        return cls(
            profile=profile.name,
            kind=profile.kind,
            modulations=profile.modulations,
            error_correction=profile.error_correction,
            compression=profile.compression,
            digital=profile.digital,
            max_line_rate=profile.max_line_rate,
            connect_rate=profile.connect_rate,
        )


@dataclasses.dataclass(frozen=True, slots=True)
class LinkParams:
    """A connected link. Each end reports the rate it receives at."""

    modulation: str  #: "V.34", "V.90", ... or "packet" for a cellular data call
    caller_rate: int  #: bit/s the calling modem receives at
    callee_rate: int  #: bit/s the answering modem receives at
    error_correction: str | None = None  #: "LAPM", "MNP" or None
    compression: str | None = None  #: "V44", "V42BIS", "MNP5" or None
    note: str = ""  #: why the link is what it is, when that is not obvious

    def rate(self, *, caller: bool) -> int:
        return self.caller_rate if caller else self.callee_rate


def _as_offer(side: ModemProfile | LinkOffer) -> LinkOffer:
    return side if isinstance(side, LinkOffer) else LinkOffer.from_profile(side)


def _top_rate(offer: LinkOffer) -> int:
    analog = [MODULATIONS[m].down for m in offer.modulations if not MODULATIONS[m].pcm]
    rate = max(analog, default=offer.connect_rate or 0)
    return min(rate, offer.max_line_rate) if offer.max_line_rate else rate


def negotiate_link(
    caller: ModemProfile | LinkOffer, callee: ModemProfile | LinkOffer
) -> LinkParams:
    """The link two modems would train to.

    - The fastest modulation both list. V.90 and V.92 need exactly one digitally
      connected end (a profile with ``digital = true``, an ISP's server modem);
      between two analogue modems (every dial-up profile shipped) they fall back
      to the fastest analogue modulation, V.34 at 33600 bit/s, and ``note`` says
      so. With PCM the analogue end receives at 56000, the digital end at the
      upstream rate (33600 for V.90, 48000 for V.92). ``max_line_rate`` caps both.
    - Error correction: LAPM if both have it, else MNP if both have it (none
      below 1200 bit/s). Compression: V.44, then V.42bis over LAPM, MNP5 over MNP.
    - A cellular end makes the call a packet session ("packet"): each cellular
      end reports its ``connect_rate``, a dial-up end its fastest analogue rate;
      no error correction or compression is reported (PPP has its own).

    Raises :class:`~serialhs.errors.SimError` when the two have no modulation
    in common (the exchange should then report NO CARRIER to the caller).
    """
    a, b = _as_offer(caller), _as_offer(callee)
    if "cellular" in (a.kind, b.kind):
        return LinkParams(
            modulation="packet",
            caller_rate=_top_rate(a),
            callee_rate=_top_rate(b),
            note="a cellular data call is a packet session, not a modulation",
        )
    common = [m for m in MODULATIONS if m in a.modulations and m in b.modulations]
    analog = [m for m in common if not MODULATIONS[m].pcm]
    pcm = [m for m in common if MODULATIONS[m].pcm]
    if not analog:
        raise SimError(
            f"modems {a.profile!r} and {b.profile!r} share no modulation "
            f"({', '.join(a.modulations) or 'none'} vs {', '.join(b.modulations) or 'none'}); "
            "the call cannot connect"
        )
    note = ""
    if pcm and a.digital != b.digital:
        chosen = pcm[-1]
    else:
        chosen = analog[-1]
        if pcm:
            ends = "digital" if a.digital else "analogue"
            note = (
                f"{pcm[-1]} needs one digitally connected (server) end and both ends are "
                f"{ends}; fell back to {chosen}"
            )
    mod = MODULATIONS[chosen]
    if mod.pcm:
        rate_a = mod.up if a.digital else mod.down
        rate_b = mod.up if b.digital else mod.down
    else:
        rate_a = rate_b = mod.down
    caps = [c for c in (a.max_line_rate, b.max_line_rate) if c]
    if caps:
        rate_a, rate_b = min(rate_a, *caps), min(rate_b, *caps)
    ec = None
    if min(rate_a, rate_b) >= 1200:
        ec = next(
            (e for e in ERROR_CORRECTION if e in a.error_correction and e in b.error_correction),
            None,
        )
    comp = next(
        (
            c
            for c, needs in COMPRESSION.items()
            if needs == ec and c in a.compression and c in b.compression
        ),
        None,
    )
    return LinkParams(chosen, rate_a, rate_b, ec, comp, note)


# --- events ---------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class ToDte:
    """Bytes for the DTE (echo, results, information text, line data)."""

    data: bytes


@dataclasses.dataclass(frozen=True, slots=True)
class Drive:
    """Set one of the DTE's input lines (DSR, CTS, DCD, RI)."""

    line: Line
    state: bool


@dataclasses.dataclass(frozen=True, slots=True)
class Dial:
    """Place a call. ``number`` holds the dial digits (0-9 * # + A-D) or, for a
    dial string with other characters (a host name, a phone-book name), the dial
    string without its leading T/P. ``dial_time`` is how long dialling takes
    (commas x S8); the core waits that plus S7 for the exchange."""

    number: str
    offer: LinkOffer
    dial_string: str = ""
    pulse: bool = False
    return_to_command: bool = False
    dial_time: float = 0.0


@dataclasses.dataclass(frozen=True, slots=True)
class Answer:
    """The modem answered the ringing call from ``caller``; connect it."""

    caller: str


@dataclasses.dataclass(frozen=True, slots=True)
class Hangup:
    """The modem went on hook: end its call or call attempt."""


@dataclasses.dataclass(frozen=True, slots=True)
class ToLine:
    """Data for the far modem."""

    data: bytes


@dataclasses.dataclass(frozen=True, slots=True)
class SetUart:
    """The modem's serial port changes to ``settings`` (after the bytes already sent)."""

    settings: SerialSettings


Event = ToDte | Drive | Dial | Answer | Hangup | ToLine | SetUart


class CallResult(enum.Enum):
    """Why a call the modem placed did not connect."""

    BUSY = "BUSY"
    NO_ANSWER = "NO ANSWER"
    NO_DIALTONE = "NO DIALTONE"
    NO_CARRIER = "NO CARRIER"


# --- the state machine ----------------------------------------------------------------


class State(enum.Enum):
    IDLE = "idle"
    RINGING = "ringing"
    DIALING = "dialing"
    ANSWERING = "answering"
    ONLINE = "online"
    ONLINE_COMMAND = "online-command"


class Input(enum.Enum):
    DIAL = "dial"
    DIAL_COMMAND = "dial;"
    ANSWER = "answer"
    ANSWERED = "answered"
    FAILED = "failed"
    TIMEOUT = "timeout"
    ABORT = "abort"
    ESCAPE = "escape"
    GO_ONLINE = "online"
    HANGUP = "hangup"
    DTR_HANGUP = "dtr-hangup"
    RESET = "reset"
    RING = "ring"
    REMOTE_HANGUP = "remote-hangup"
    CARRIER_LOST = "carrier-lost"
    LINE_DATA = "line-data"


_S = State
_I = Input

#: (state, input) -> next state. What the handler says (OK, ERROR, NO CARRIER,
#: ...) for a self-transition is in the module docstring.
TRANSITIONS: Mapping[tuple[State, Input], State] = MappingProxyType(
    {
        # on hook, command mode
        (_S.IDLE, _I.DIAL): _S.DIALING,
        (_S.IDLE, _I.DIAL_COMMAND): _S.ONLINE_COMMAND,
        (_S.IDLE, _I.ANSWER): _S.IDLE,  # ATA with nothing ringing: NO CARRIER
        (_S.IDLE, _I.GO_ONLINE): _S.IDLE,  # ATO with no call: NO CARRIER
        (_S.IDLE, _I.HANGUP): _S.IDLE,
        (_S.IDLE, _I.RESET): _S.IDLE,
        (_S.IDLE, _I.ESCAPE): _S.IDLE,
        (_S.IDLE, _I.DTR_HANGUP): _S.IDLE,
        (_S.IDLE, _I.RING): _S.RINGING,
        # ringing
        (_S.RINGING, _I.DIAL): _S.RINGING,  # off hook answers the line: NO DIALTONE
        (_S.RINGING, _I.DIAL_COMMAND): _S.RINGING,
        (_S.RINGING, _I.ANSWER): _S.ANSWERING,
        (_S.RINGING, _I.GO_ONLINE): _S.RINGING,
        (_S.RINGING, _I.HANGUP): _S.RINGING,
        (_S.RINGING, _I.RESET): _S.RINGING,
        (_S.RINGING, _I.ESCAPE): _S.RINGING,
        (_S.RINGING, _I.DTR_HANGUP): _S.RINGING,
        (_S.RINGING, _I.RING): _S.RINGING,
        (_S.RINGING, _I.REMOTE_HANGUP): _S.IDLE,  # the caller gave up
        # placing a call
        (_S.DIALING, _I.ANSWERED): _S.ONLINE,
        (_S.DIALING, _I.FAILED): _S.IDLE,
        (_S.DIALING, _I.TIMEOUT): _S.IDLE,
        (_S.DIALING, _I.ABORT): _S.IDLE,
        (_S.DIALING, _I.ESCAPE): _S.IDLE,
        (_S.DIALING, _I.DTR_HANGUP): _S.IDLE,
        (_S.DIALING, _I.RESET): _S.IDLE,
        (_S.DIALING, _I.REMOTE_HANGUP): _S.IDLE,
        # answering a call
        (_S.ANSWERING, _I.ANSWERED): _S.ONLINE,
        (_S.ANSWERING, _I.FAILED): _S.IDLE,
        (_S.ANSWERING, _I.TIMEOUT): _S.IDLE,
        (_S.ANSWERING, _I.ABORT): _S.IDLE,
        (_S.ANSWERING, _I.ESCAPE): _S.IDLE,
        (_S.ANSWERING, _I.DTR_HANGUP): _S.IDLE,
        (_S.ANSWERING, _I.RESET): _S.IDLE,
        (_S.ANSWERING, _I.REMOTE_HANGUP): _S.IDLE,
        # data mode
        (_S.ONLINE, _I.ESCAPE): _S.ONLINE_COMMAND,
        (_S.ONLINE, _I.DTR_HANGUP): _S.IDLE,
        (_S.ONLINE, _I.RESET): _S.IDLE,
        (_S.ONLINE, _I.REMOTE_HANGUP): _S.ONLINE,  # S10 starts
        (_S.ONLINE, _I.CARRIER_LOST): _S.IDLE,
        (_S.ONLINE, _I.LINE_DATA): _S.ONLINE,
        # command mode with the call up
        (_S.ONLINE_COMMAND, _I.GO_ONLINE): _S.ONLINE,
        (_S.ONLINE_COMMAND, _I.HANGUP): _S.IDLE,
        (_S.ONLINE_COMMAND, _I.RESET): _S.IDLE,
        (_S.ONLINE_COMMAND, _I.DTR_HANGUP): _S.IDLE,
        (_S.ONLINE_COMMAND, _I.ESCAPE): _S.ONLINE_COMMAND,
        (_S.ONLINE_COMMAND, _I.DIAL): _S.ONLINE_COMMAND,  # ERROR
        (_S.ONLINE_COMMAND, _I.DIAL_COMMAND): _S.ONLINE_COMMAND,  # ERROR
        (_S.ONLINE_COMMAND, _I.ANSWER): _S.ONLINE_COMMAND,  # ERROR
        (_S.ONLINE_COMMAND, _I.ANSWERED): _S.ONLINE_COMMAND,  # a ';' call got through
        (_S.ONLINE_COMMAND, _I.FAILED): _S.IDLE,  # a ';' call failed
        (_S.ONLINE_COMMAND, _I.REMOTE_HANGUP): _S.ONLINE_COMMAND,  # S10 starts
        (_S.ONLINE_COMMAND, _I.CARRIER_LOST): _S.IDLE,
        (_S.ONLINE_COMMAND, _I.LINE_DATA): _S.ONLINE_COMMAND,  # kept for after ATO
    }
)

#: Inputs that may arrive late and are dropped without a trace.
IGNORED: frozenset[tuple[State, Input]] = frozenset(
    {
        (_S.IDLE, _I.ANSWERED),
        (_S.IDLE, _I.FAILED),
        (_S.IDLE, _I.REMOTE_HANGUP),
        (_S.IDLE, _I.LINE_DATA),
        (_S.RINGING, _I.ANSWERED),
        (_S.RINGING, _I.FAILED),
        (_S.RINGING, _I.LINE_DATA),
        (_S.DIALING, _I.RING),  # busy: the exchange should not ring an off-hook modem
        (_S.DIALING, _I.LINE_DATA),
        (_S.ANSWERING, _I.RING),
        (_S.ANSWERING, _I.LINE_DATA),
        (_S.ONLINE, _I.RING),
        (_S.ONLINE_COMMAND, _I.RING),
    }
)


def transition_rows() -> list[tuple[str, str, str]]:
    """The table as (state, input, next state or "ignored") rows, for documentation."""
    rows = [(s.value, i.value, n.value) for (s, i), n in TRANSITIONS.items()]
    rows += [(s.value, i.value, "ignored") for (s, i) in IGNORED]
    order = {s.value: k for k, s in enumerate(State)}
    inputs = {i.value: k for k, i in enumerate(Input)}
    return sorted(rows, key=lambda r: (order[r[0]], inputs[r[1]]))


_OFF_HOOK = frozenset({State.DIALING, State.ANSWERING, State.ONLINE, State.ONLINE_COMMAND})
_CALL_UP = frozenset({State.ONLINE, State.ONLINE_COMMAND})

# --- settings -------------------------------------------------------------------------

#: +ICF formats: (data bits, parity bit, stop bits)
_ICF_FORMATS: Mapping[int, tuple[int, bool, StopBits]] = MappingProxyType(
    {
        1: (8, False, StopBits.TWO),
        2: (8, True, StopBits.ONE),
        3: (8, False, StopBits.ONE),
        4: (7, False, StopBits.TWO),
        5: (7, True, StopBits.ONE),
        6: (7, False, StopBits.ONE),
    }
)
_ICF_PARITY: Mapping[int, Parity] = MappingProxyType(
    {0: Parity.ODD, 1: Parity.EVEN, 2: Parity.MARK, 3: Parity.SPACE}
)
_K_TO_IFC: Mapping[int, tuple[int, int]] = MappingProxyType({0: (0, 0), 3: (2, 2), 4: (1, 1)})


@dataclasses.dataclass(slots=True)
class _Config:
    """The settings ATZ, AT&F and AT&W deal in."""

    echo: bool
    verbose: bool
    quiet: bool
    x: int
    w: int
    dcd: int
    dtr: int
    dsr: int
    s: dict[int, int]
    ipr: int
    icf: tuple[int, int]
    ifc: tuple[int, int]

    @classmethod
    def factory(cls, profile: ModemProfile) -> _Config:
        d = profile.defaults
        return cls(
            echo=d.echo,
            verbose=d.verbose,
            quiet=d.quiet,
            x=d.x,
            w=d.w,
            dcd=d.dcd,
            dtr=d.dtr,
            dsr=d.dsr,
            s=profile.s_register_defaults,
            ipr=profile.default_rate,
            icf=(3, 3),
            ifc=_K_TO_IFC[d.flow],
        )

    def copy(self) -> _Config:
        return dataclasses.replace(self, s=dict(self.s))

    @property
    def flow_k(self) -> int:
        if 2 in self.ifc:
            return 3
        return 4 if 1 in self.ifc else 0


# --- parsing helpers ------------------------------------------------------------------

_CONTINUE = "continue"  #: go on with the next command of the line
_SILENT = "silent"  #: stop the line, no result code (the command sent its own, or waits)

_EXT_NAME_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789!%-./:_")
_DIAL_DIGITS = frozenset("0123456789*#+ABCD")
_DIAL_MODIFIERS = frozenset("TPW@!$,R;-()./ ")


def _normalise(body: str) -> str:
    """Upper case and no spaces, except inside double quotes."""
    out: list[str] = []
    quoted = False
    for ch in body:
        if ch == '"':
            quoted = not quoted
            out.append(ch)
        elif quoted:
            out.append(ch)
        elif ch != " ":
            out.append(ch.upper())
    return "".join(out)


def _find_semicolon(text: str, start: int) -> int:
    quoted = False
    for index in range(start, len(text)):
        ch = text[index]
        if ch == '"':
            quoted = not quoted
        elif ch == ";" and not quoted:
            return index
    return len(text)


def _digits(text: str, start: int) -> tuple[int | None, int]:
    end = start
    while end < len(text) and text[end].isdigit():
        end += 1
    if end == start:
        return None, start
    return int(text[start:end]), end


def _int_args(args: str, count: int) -> list[int | None] | None:
    """``"2,2"`` -> [2, 2]; empty fields are None; None when malformed."""
    parts = args.split(",")
    if len(parts) > count:
        return None
    values: list[int | None] = []
    for part in parts:
        if part == "":
            values.append(None)
        elif part.isdigit():
            values.append(int(part))
        else:
            return None
    values += [None] * (count - len(values))
    return values


def _ranges(values: list[int]) -> str:
    return ",".join(str(v) for v in values)


# --- the modem ------------------------------------------------------------------------


class HayesModem:
    """A Hayes modem behind a serial line. See the module docstring."""

    def __init__(
        self,
        profile: ModemProfile,
        *,
        number: str,
        now: float = 0.0,
        ring_on: float = RING_ON,
        ring_period: float = RING_PERIOD,
        rate: int | None = None,
    ) -> None:
        if not 0 < ring_on < ring_period:
            raise SimError(
                f"ring cadence must have 0 < ring_on < ring_period, not {ring_on}/{ring_period}"
            )
        self.profile = profile
        self.number = number
        self.ring_on = ring_on
        self.ring_period = ring_period
        self._now = now
        self._state = State.IDLE
        self._factory = _Config.factory(profile)
        self._stored = self._factory.copy()
        if rate is not None:  # as AT+IPR=<rate>&W would have left the stored profile
            if rate not in profile.dte_rates:
                raise SimError(
                    f"{profile.name} cannot run its UART at {rate} "
                    f"(it can: {', '.join(map(str, profile.dte_rates))})"
                )
            if self._stored.ipr:  # a fixed rate (an autobauding modem keeps 0)
                self._stored.ipr = rate
        self._cfg = self._stored.copy()
        self._uart_rate = rate or profile.default_rate  #: the UART's rate at power-on
        self._uart = self._compute_uart()
        self._events: list[Event] = []
        self._out = bytearray()
        self._timers: dict[str, float] = {}
        self._lines: dict[Line, bool] = {}
        self._dtr = True
        self._rts = True
        # command line assembly
        self._prefix = 0  # 0: waiting for A, 1: after A, 2: inside a line
        self._line = bytearray()
        self._visible = 0  # characters in the line that count (not spaces)
        self._overflow = False
        self._last_line = ""
        self._selected_s = 0
        self._pulse = False
        self._last_dial = ""
        # calls
        self._caller_role = False
        self._caller_id = ""
        self._link: LinkParams | None = None
        self._carrier_pending = False
        self._ri = False
        self._held = bytearray()
        self.dropped = 0  #: line bytes dropped in online command mode (buffer full)
        # +++ detection
        self._last_dte = now
        self._esc_count = 0
        # cellular state
        self._cmee = 0
        #: why the last extended command that this modem knows was refused (a
        #: 27.007 error number), for +CME ERROR; None: not known, plain ERROR
        self._refused: int | None = None
        self._pdp: dict[int, tuple[str, str]] = {}
        self._update_lines()

    # -- read-only views ---------------------------------------------------------------

    @property
    def state(self) -> State:
        return self._state

    @property
    def online(self) -> bool:
        """In data mode (bytes pass between the DTE and the line)."""
        return self._state is State.ONLINE

    @property
    def off_hook(self) -> bool:
        return self._state in _OFF_HOOK

    @property
    def busy(self) -> bool:
        """Off hook or ringing: a new call to this modem should get BUSY."""
        return self._state is not State.IDLE

    @property
    def s_registers(self) -> Mapping[int, int]:
        return MappingProxyType(dict(self._cfg.s))

    @property
    def settings(self) -> Mapping[str, int]:
        """The basic command settings: E, V, Q, X, W, &C, &D, &K, &S."""
        c = self._cfg
        return MappingProxyType(
            {
                "E": int(c.echo),
                "V": int(c.verbose),
                "Q": int(c.quiet),
                "X": c.x,
                "W": c.w,
                "&C": c.dcd,
                "&D": c.dtr,
                "&K": c.flow_k,
                "&S": c.dsr,
            }
        )

    @property
    def uart(self) -> SerialSettings:
        """The modem's serial settings (the last :class:`SetUart`)."""
        return self._uart

    @property
    def autobaud(self) -> bool:
        """+IPR=0: the modem follows the DTE's rate."""
        return self._cfg.ipr == 0

    @property
    def link(self) -> LinkParams | None:
        return self._link

    @property
    def lines(self) -> Mapping[Line, bool]:
        """The DTE input lines as last driven."""
        return MappingProxyType(dict(self._lines))

    @property
    def offer(self) -> LinkOffer:
        return LinkOffer.from_profile(self.profile)

    def events(self) -> list[Event]:
        """Take the events produced so far."""
        self._flush()
        out, self._events = self._events, []
        return out

    def get_timer(self) -> float | None:
        """When the core next needs :meth:`handle_timer`, or None."""
        return min(self._timers.values()) if self._timers else None

    def handle_timer(self, now: float) -> None:
        """Do everything due up to ``now``."""
        self._advance(now)
        self._flush()

    # -- the DTE side ------------------------------------------------------------------

    def from_dte(self, data: bytes, now: float) -> None:
        """Bytes the DTE sent."""
        self._advance(now)
        index = 0
        while index < len(data):
            state = self._state
            if state is State.ONLINE:
                self._online_bytes(data[index:])
                break
            if state in (State.DIALING, State.ANSWERING):
                byte = data[index] & 0x7F
                index += 1
                if byte in (0, self._cfg.s[4]):
                    continue
                self._abort_call(Input.ABORT)
                continue
            self._command_byte(data[index])
            index += 1
        self._flush()

    def dte_lines(self, *, dtr: bool, rts: bool, now: float) -> None:
        """The DTE's DTR and RTS outputs (RTS is recorded; the wire does flow control)."""
        self._advance(now)
        self._rts = rts
        if dtr != self._dtr:
            self._dtr = dtr
            if dtr:
                self._timers.pop("dtr", None)  # shorter than S25: not a drop
            else:
                self._timers["dtr"] = now + self._cfg.s[25] / 100
                self._advance(now)  # S25=0: at once
        self._flush()

    # -- the telephone side ------------------------------------------------------------

    def ring(self, caller: str, now: float) -> None:
        """An incoming call from ``caller`` starts ringing this modem."""
        self._advance(now)
        before = self._state
        if self._go(Input.RING) and before is State.IDLE:
            self._caller_id = caller
            self._cfg.s[1] = 0
            self._ring_once()
        self._flush()

    def call_answered(self, link: LinkParams, now: float) -> None:
        """The call this modem placed or answered is connected."""
        self._advance(now)
        before = self._state
        if before is State.ONLINE_COMMAND and self._link is not None:
            self._illegal(Input.ANSWERED)
        if self._go(Input.ANSWERED):
            self._link = link
            self._timers.pop("carrier_wait", None)
            if before is not State.ONLINE_COMMAND:
                self._update_lines()
                self._connect()
                self._last_dte = now
                self._esc_count = 0
        self._flush()

    def call_failed(self, reason: CallResult, now: float) -> None:
        """The call this modem placed did not connect."""
        self._advance(now)
        before = self._state
        if before is State.ONLINE_COMMAND and self._link is not None:
            self._illegal(Input.FAILED)
        if self._go(Input.FAILED):
            self._enter_idle()
            if before is State.ANSWERING:
                self._result("NO CARRIER")
            else:
                self._result(self._filter_result(reason.value))
        self._flush()

    def remote_hangup(self, now: float) -> None:
        """The far end hung up, the caller gave up ringing, or the carrier is gone."""
        self._advance(now)
        before = self._state
        if before in _CALL_UP:
            if not self._carrier_pending:
                self._go(Input.REMOTE_HANGUP)
                self._carrier_pending = True
                self._timers.pop("escape", None)
                self._timers["carrier_lost"] = now + self._cfg.s[10] / 10
        elif self._go(Input.REMOTE_HANGUP):
            self._enter_idle()
            if before is not State.RINGING:
                self._result("NO CARRIER")
        self._flush()

    def from_line(self, data: bytes, now: float) -> None:
        """Data from the far modem."""
        self._advance(now)
        if data and self._go(Input.LINE_DATA) and not self._carrier_pending:
            if self._state is State.ONLINE:
                self._out += data
            else:
                room = LINE_BUFFER_LIMIT - len(self._held)
                self._held += data[:room]
                self.dropped += max(0, len(data) - room)
        self._flush()

    # -- machinery ---------------------------------------------------------------------

    def _illegal(self, event: Input) -> None:
        raise SimError(
            f"Hayes modem {self.number!r} ({self.profile.name}): {event.value!r} is not "
            f"allowed in state {self._state.value!r}"
        )

    def _go(self, event: Input) -> bool:
        """Consult the table: move to the next state (True) or drop the input (False)."""
        key = (self._state, event)
        if key in IGNORED:
            return False
        target = TRANSITIONS.get(key)
        if target is None:
            self._illegal(event)
            return False  # pragma: no cover - _illegal raises
        self._state = target
        return True

    def _advance(self, now: float) -> None:
        """Fire every timer due up to ``now``, in time order."""
        now = max(now, self._now)
        while self._timers:
            name, due = min(self._timers.items(), key=lambda item: item[1])
            if due > now:
                break
            del self._timers[name]
            self._now = max(self._now, due)
            self._fire(name)
        self._now = now

    def _fire(self, name: str) -> None:
        if name == "escape":
            self._esc_count = 0
            self._go(Input.ESCAPE)
            self._result("OK")
        elif name == "carrier_wait":
            self._abort_call(Input.TIMEOUT)
        elif name == "carrier_lost":
            self._go(Input.CARRIER_LOST)
            self._enter_idle()
            self._result("NO CARRIER")
        elif name == "ring_off":
            self._ri = False
            self._update_lines()
        elif name == "ring_next":
            self._ring_once()
        elif name == "dtr":
            self._dtr_dropped()

    def _emit(self, event: Event) -> None:
        self._flush()
        self._events.append(event)

    def _flush(self) -> None:
        if not self._out:
            return
        data = bytes(self._out)
        self._out.clear()
        if self._events and isinstance(self._events[-1], ToDte):
            previous = self._events.pop()
            assert isinstance(previous, ToDte)
            data = previous.data + data
        self._events.append(ToDte(data))

    def _update_lines(self) -> None:
        """Drive DSR, CTS, DCD and RI where they differ from what the DTE sees."""
        carrier = self._link is not None and self._state in _CALL_UP
        want = {
            Line.DSR: self._cfg.dsr == 0 or carrier,
            Line.CTS: True,
            Line.DCD: self._cfg.dcd == 0 or carrier,
            Line.RI: self._ri,
        }
        for line, state in want.items():
            if self._lines.get(line) != state:
                self._lines[line] = state
                self._emit(Drive(line, state))

    def _enter_idle(self) -> None:
        """Tidy up after a move to IDLE (or on a call ending)."""
        for name in ("escape", "carrier_wait", "carrier_lost", "ring_off", "ring_next"):
            self._timers.pop(name, None)
        self._link = None
        self._carrier_pending = False
        self._caller_id = ""
        self._ri = False
        self._held.clear()
        self._esc_count = 0
        self._update_lines()

    def _abort_call(self, event: Input) -> None:
        """Give up a call being placed or answered: on hook, NO CARRIER."""
        self._go(event)
        self._emit(Hangup())
        self._enter_idle()
        self._result("NO CARRIER")

    # -- results -------------------------------------------------------------------------

    def _crlf(self) -> tuple[str, str]:
        return chr(self._cfg.s[3]), chr(self._cfg.s[4])

    def _text(self, text: str) -> None:
        self._out += text.encode("ascii", "replace")

    def _result(self, word: str, numeric: int | None = None) -> None:
        if self._cfg.quiet:
            return
        cr, lf = self._crlf()
        if word.startswith("+CME ERROR"):  # 27.007's, the same text whatever V says
            self._text(f"{cr}{lf}{word}{cr}{lf}" if self._cfg.verbose else f"{word}{cr}{lf}")
            return
        if self._cfg.verbose:
            self._text(f"{cr}{lf}{word}{cr}{lf}")
        else:
            code = RESULT_CODES.get(word, 1) if numeric is None else numeric
            self._text(f"{code}{cr}")

    def _info(self, lines: tuple[str, ...] | list[str]) -> None:
        if not lines:
            return
        cr, lf = self._crlf()
        if self._cfg.verbose:
            self._text(cr + lf + (cr + lf).join(lines) + cr + lf)
        else:
            self._text("".join(line + cr + lf for line in lines))

    def _filter_result(self, word: str) -> str:
        """What X lets through of BUSY, NO DIALTONE and NO ANSWER."""
        x = self._cfg.x
        allowed = {
            "BUSY": x in (3, 4),
            "NO DIALTONE": x in (2, 4),
            "NO ANSWER": x >= 1,
        }
        return word if allowed.get(word, True) else "NO CARRIER"

    def _connect(self) -> None:
        """CONNECT as X and W (and the profile's connect_style) say."""
        link = self._link
        assert link is not None
        if self.profile.is_cellular:
            rate = self.profile.connect_rate or link.rate(caller=self._caller_role)
        else:
            rate = link.rate(caller=self._caller_role)
        cfg = self._cfg
        if cfg.x == 0:
            self._result("CONNECT")
            return
        dte_rate = self._uart.baudrate
        if cfg.w == 1:
            if cfg.verbose:
                protocol = {"LAPM": "LAP-M", "MNP": "ALT"}.get(link.error_correction or "", "NONE")
                compression = {"V44": "V.44", "V42BIS": "V.42BIS", "MNP5": "CLASS 5"}.get(
                    link.compression or "", "NONE"
                )
                for line in (
                    f"CARRIER {rate}",
                    f"PROTOCOL: {protocol}",
                    f"COMPRESSION: {compression}",
                ):
                    self._result(line)
            self._result(f"CONNECT {dte_rate}", CONNECT_CODES.get(dte_rate, 1))
            return
        if cfg.w == 2:
            self._result(f"CONNECT {dte_rate}", CONNECT_CODES.get(dte_rate, 1))
            return
        suffix = ""
        style = "plain" if self.profile.is_cellular else self.profile.connect_style
        if link.error_correction and style == "protocol":
            suffix = f"/{link.error_correction}"
            if link.compression:
                suffix += f"/{link.compression}"
        elif link.error_correction and style == "arq":
            suffix = "/ARQ"
        self._result(f"CONNECT {rate}{suffix}", CONNECT_CODES.get(rate, 1))

    # -- ringing -----------------------------------------------------------------------

    def _ring_once(self) -> None:
        s = self._cfg.s
        s[1] = min(s[1] + 1, 255)
        self._ri = True
        self._update_lines()
        self._result("RING")
        self._timers["ring_off"] = self._now + self.ring_on
        self._timers["ring_next"] = self._now + self.ring_period
        if s[0] > 0 and s[1] >= s[0] and (self._dtr or self._cfg.dtr == 0):
            self._answer()

    def _answer(self) -> None:
        self._go(Input.ANSWER)
        self._timers.pop("ring_off", None)
        self._timers.pop("ring_next", None)
        self._ri = False
        self._update_lines()
        self._caller_role = False
        self._emit(Answer(self._caller_id))
        self._timers["carrier_wait"] = self._now + self._cfg.s[7]

    # -- DTR ---------------------------------------------------------------------------

    def _dtr_dropped(self) -> None:
        mode = self._cfg.dtr
        if mode == 0:
            return
        before = self._state
        uart = self._uart
        if mode == 1:
            if before is State.ONLINE:
                self._esc_count = 0
                self._timers.pop("escape", None)
                self._go(Input.ESCAPE)
                self._result("OK")
            elif before in (State.DIALING, State.ANSWERING):
                self._abort_call(Input.ESCAPE)
            else:
                self._go(Input.ESCAPE)
            return
        if before in _OFF_HOOK:
            self._go(Input.DTR_HANGUP)
            self._emit(Hangup())
            self._enter_idle()
            self._result("NO CARRIER")
        else:
            self._go(Input.DTR_HANGUP)
        if mode == 3:
            self._go(Input.RESET)
            self._reset(self._stored)
            self._apply_uart(uart)

    # -- data mode ---------------------------------------------------------------------

    def _online_bytes(self, chunk: bytes) -> None:
        if self._carrier_pending:
            return  # no carrier: nothing reaches the far end
        s = self._cfg.s
        escape, guard = s[2], s[12] / 50
        now = self._now
        if escape > 127 or (escape not in chunk and self._esc_count == 0):
            self._last_dte = now
            self._emit(ToLine(bytes(chunk)))
            return
        if self._timers.pop("escape", None) is not None:
            self._esc_count = 0  # silence after the third character was broken
        count = self._esc_count
        last = self._last_dte
        for byte in chunk:
            gap = now - last
            last = now
            if byte == escape:
                if 0 < count < 3 and (gap < guard or guard == 0):
                    count += 1
                elif gap >= guard:
                    count = 1
                else:
                    count = 0
            else:
                count = 0
        self._esc_count = count
        self._last_dte = now
        self._emit(ToLine(bytes(chunk)))
        if count == 3:
            self._timers["escape"] = now + guard

    # -- command mode ------------------------------------------------------------------

    def _command_byte(self, raw: int) -> None:
        s = self._cfg.s
        if self._cfg.echo:
            self._out.append(raw)
        byte = raw & 0x7F
        if self._prefix == 0:
            if byte in b"Aa":
                self._prefix = 1
        elif self._prefix == 1:
            if byte in b"Tt":
                self._prefix = 2
                self._line.clear()
                self._visible = 0
                self._overflow = False
            elif byte == ord("/"):
                self._prefix = 0
                self._execute(self._last_line, repeat=True)
            elif byte not in b"Aa":
                self._prefix = 0
        elif byte == s[3]:
            self._prefix = 0
            if self._overflow:
                self._result("ERROR")
            else:
                self._execute(self._line.decode("ascii"))
        elif byte == s[5]:
            if self._line:
                self._visible -= self._line.pop() != 0x20
        elif byte < 0x20 or byte == 0x7F:
            pass  # V.250: other control characters are ignored
        elif byte == 0x20:
            self._line.append(byte)  # spaces do not count against the length
        elif self._visible >= self.profile.max_command_length:
            self._overflow = True
        else:
            self._line.append(byte)
            self._visible += 1

    def _execute(self, body: str, *, repeat: bool = False) -> None:
        if not repeat:
            self._last_line = body
        uart = self._uart
        outcome = self._run(_normalise(body))
        self._update_lines()
        if outcome != _SILENT:
            self._result(outcome)
        self._apply_uart(uart)

    def _compute_uart(self) -> SerialSettings:
        cfg = self._cfg
        bits, parity_bit, stop = _ICF_FORMATS.get(cfg.icf[0], _ICF_FORMATS[3])
        parity = _ICF_PARITY.get(cfg.icf[1], Parity.SPACE) if parity_bit else Parity.NONE
        dce_by_dte, dte_by_dce = cfg.ifc
        if 2 in (dce_by_dte, dte_by_dce):
            flow = FlowControl.RTSCTS
        elif 1 in (dce_by_dte, dte_by_dce):
            flow = FlowControl.XONXOFF
        else:
            flow = FlowControl.NONE
        rate = cfg.ipr or self._uart_rate
        return SerialSettings(rate, bits, parity, stop, flow)

    def _apply_uart(self, before: SerialSettings) -> None:
        new = self._compute_uart()
        self._uart_rate = new.baudrate
        if new != before:
            self._uart = new
            self._emit(SetUart(new))

    def _reset(self, source: _Config) -> None:
        """ATZ / AT&F: settings from ``source``; the DTE rate and framing stay."""
        keep_ipr, keep_icf = self._cfg.ipr, self._cfg.icf
        self._cfg = source.copy()
        self._cfg.ipr, self._cfg.icf = keep_ipr, keep_icf

    def _run(self, s: str) -> str:
        """Execute one command line body (normalised). Returns the final result
        word, or _SILENT."""
        i, n = 0, len(s)
        while i < n:
            c = s[i]
            if c == ";":
                i += 1
                continue
            if c == "+":
                end = _find_semicolon(s, i + 1)
                self._refused = None
                if not self._extended(s[i:end]):
                    return self._error()
                i = end
                continue
            if c == "D":
                end = _find_semicolon(s, i + 1)
                stay = end < n
                outcome = self._dial(s[i + 1 : end], stay=stay)
                if outcome != _CONTINUE:
                    return outcome
                i = end + 1
                continue
            if c == "S":
                register, j = _digits(s, i + 1)
                if register is None or register not in self._cfg.s:
                    return "ERROR"
                self._selected_s = register
                i = j
                continue
            if c in "?=":
                outcome, i = self._s_access(s, i)
                if outcome != _CONTINUE:
                    return outcome
                continue
            if c in "&\\%*#$":
                if i + 1 >= n or not s[i + 1].isalpha():
                    return "ERROR"
                name, j = s[i : i + 2], i + 2
            elif c.isalpha():
                name, j = c, i + 1
            else:
                return "ERROR"
            number, i = _digits(s, j)
            outcome = self._basic(name, number)
            if outcome != _CONTINUE:
                return outcome
        return "OK"

    def _s_access(self, s: str, i: int) -> tuple[str, int]:
        register = self._selected_s
        if s[i] == "?":
            self._info([f"{self._cfg.s[register]:03d}"])
            return _CONTINUE, i + 1
        value, j = _digits(s, i + 1)
        value = value or 0
        limit = 127 if register in (3, 4, 5) else 255
        if value > limit:
            return "ERROR", j
        self._cfg.s[register] = value
        return _CONTINUE, j

    def _basic(self, name: str, number: int | None) -> str:
        cfg = self._cfg
        n = 0 if number is None else number

        def flag(limit: int = 1) -> bool:
            return n <= limit

        if name == "A":
            return self._answer_command() if number is None else "ERROR"
        if name == "O":
            return self._online_command() if flag() else "ERROR"
        if name == "H":
            if not flag():
                return "ERROR"
            if n == 0:
                off_hook = self._state in _OFF_HOOK
                self._go(Input.HANGUP)
                if off_hook:
                    self._emit(Hangup())
                    self._enter_idle()
            return _CONTINUE
        if name == "Z":
            if not flag():
                return "ERROR"
            if self._state in _OFF_HOOK:
                self._go(Input.RESET)
                self._emit(Hangup())
                self._enter_idle()
            else:
                self._go(Input.RESET)
            self._reset(self._stored)
            return "OK"
        if name == "I":
            lines = self.profile.identity_lines(n)
            if lines is None:
                return "ERROR"
            self._info(lines)
            return _CONTINUE
        settings: dict[str, tuple[int, ...]] = {
            "E": (0, 1),
            "V": (0, 1),
            "Q": (0, 1),
            "X": (0, 1, 2, 3, 4),
            "W": (0, 1, 2),
            "&C": (0, 1),
            "&D": (0, 1, 2, 3),
            "&K": (0, 3, 4),
            "&S": (0, 1),
        }
        if name in settings:
            if n not in settings[name]:
                return "ERROR"
            if name == "E":
                cfg.echo = bool(n)
            elif name == "V":
                cfg.verbose = bool(n)
            elif name == "Q":
                cfg.quiet = bool(n)
            elif name == "X":
                cfg.x = n
            elif name == "W":
                cfg.w = n
            elif name == "&C":
                cfg.dcd = n
            elif name == "&D":
                cfg.dtr = n
            elif name == "&K":
                cfg.ifc = _K_TO_IFC[n]
            else:
                cfg.dsr = n
            return _CONTINUE
        if name in ("P", "T"):
            self._pulse = name == "P"
            return _CONTINUE if number is None else "ERROR"
        if name == "&F":
            if n > 2:
                return "ERROR"
            self._reset(self._factory)
            return _CONTINUE
        if name == "&W":
            if not flag():
                return "ERROR"
            self._stored = self._cfg.copy()
            return _CONTINUE
        if name == "&V":
            self._info(self._describe())
            return _CONTINUE
        no_effect = {"B": 1, "L": 3, "M": 3, "N": 1, "Y": 1, "&Y": 1}
        if name in no_effect:
            return _CONTINUE if n <= no_effect[name] else "ERROR"
        if name in self.profile.accepted_commands:
            return _CONTINUE
        return _CONTINUE if self.profile.unknown_command == "OK" else "ERROR"

    def _describe(self) -> list[str]:
        cfg = self._cfg
        basic = " ".join(f"{key}{value}" for key, value in self.settings.items())
        lines = [basic]
        if self.profile.extended_commands:
            lines.append(
                f"+IPR={cfg.ipr} +ICF={cfg.icf[0]},{cfg.icf[1]} +IFC={cfg.ifc[0]},{cfg.ifc[1]}"
            )
        registers = [f"S{r:02d}={v:03d}" for r, v in sorted(cfg.s.items())]
        lines += [" ".join(registers[k : k + 7]) for k in range(0, len(registers), 7)]
        return lines

    def _answer_command(self) -> str:
        state = self._state
        if state is State.RINGING:
            self._answer()
            return _SILENT
        self._go(Input.ANSWER)
        return "NO CARRIER" if state is State.IDLE else "ERROR"

    def _online_command(self) -> str:
        state = self._state
        if state is State.ONLINE_COMMAND and self._link is not None and not self._carrier_pending:
            self._go(Input.GO_ONLINE)
            self._update_lines()
            self._connect()
            self._out += self._held
            self._held.clear()
            self._last_dte = self._now
            self._esc_count = 0
            return _SILENT
        if state is not State.ONLINE_COMMAND:
            self._go(Input.GO_ONLINE)
        return "NO CARRIER"

    def _dial(self, dial: str, *, stay: bool) -> str:
        state = self._state
        event = Input.DIAL_COMMAND if stay else Input.DIAL
        if state is State.ONLINE_COMMAND:
            self._go(event)
            return "ERROR"
        if dial == "L":
            if not self._last_dial:
                return "ERROR"
            dial = self._last_dial
        pulse = self._pulse
        digits: list[str] = []
        named = any(ch not in _DIAL_DIGITS and ch not in _DIAL_MODIFIERS for ch in dial)
        for ch in dial:
            if ch == "T":
                pulse = False
            elif ch == "P":
                pulse = True
            elif ch in _DIAL_DIGITS:
                digits.append(ch)
        number = (dial[1:] if dial[:1] in ("T", "P") else dial) if named else "".join(digits)
        if not number:
            return "ERROR"
        if state is State.RINGING:
            self._go(event)
            return self._filter_result("NO DIALTONE")
        self._go(event)
        self._last_dial = dial
        self._caller_role = True
        dial_time = float(dial.count(",") * self._cfg.s[8])
        self._emit(
            Dial(
                number=number,
                offer=self.offer,
                dial_string=dial,
                pulse=pulse,
                return_to_command=stay,
                dial_time=dial_time,
            )
        )
        if stay:
            return _CONTINUE
        self._timers["carrier_wait"] = self._now + dial_time + self._cfg.s[7]
        return _SILENT

    # -- extended commands -------------------------------------------------------------

    def _extended(self, command: str) -> bool:
        """One extended command (``+NAME``, ``+NAME?``, ``+NAME=?``, ``+NAME=args``).
        Returns False for ERROR."""
        if not self.profile.extended_commands:
            return False
        j = 1
        while j < len(command) and command[j] in _EXT_NAME_CHARS:
            j += 1
        name, tail = command[:j], command[j:]
        if len(name) < 2:
            return False
        if tail == "":
            op, args = "action", ""
        elif tail == "?":
            op, args = "read", ""
        elif tail == "=?":
            op, args = "test", ""
        elif tail.startswith("="):
            op, args = "set", tail[1:]
        else:
            return False
        fixed = self.profile.response(command)
        if fixed is not None:
            self._info(fixed)
            return True
        cellular = self.profile.is_cellular
        identity = {
            "+GMI": self.profile.manufacturer,
            "+GMM": self.profile.model,
            "+GMR": self.profile.revision,
        }
        if cellular:
            identity |= {
                "+CGMI": self.profile.manufacturer,
                "+CGMM": self.profile.model,
                "+CGMR": self.profile.revision,
            }
        if name in identity:
            if op == "action":
                self._info([identity[name]])
                return True
            return op == "test"
        if name == "+GCAP":
            if op == "test":
                return True
            if op != "action" or not self.profile.gcap:
                return False
            self._info([f"+GCAP: {','.join(self.profile.gcap)}"])
            return True
        handler = {
            "+IPR": self._ipr,
            "+ICF": self._icf,
            "+IFC": self._ifc,
        }.get(name)
        if handler is None and name == "+FCLASS":
            handler = self._fclass
        if handler is None and cellular:
            handler = {"+CMEE": self._cmee_command, "+CGDCONT": self._cgdcont}.get(name)
        if handler is None:
            return False
        if handler(op, args):
            return True
        # known and refused: wrong parameters, or an operation it does not have
        self._refused = 50 if op == "set" else 4
        return False

    def _error(self) -> str:
        """ERROR; on a cellular module with +CMEE=1 or 2, +CME ERROR with the
        number or text of 27.007 §9.2 for a command it knows and refused (an
        unknown command stays ERROR, as on the modules)."""
        if self._refused is None or not self._cmee or not self.profile.is_cellular:
            return "ERROR"
        detail = str(self._refused) if self._cmee == 1 else CME_ERRORS[self._refused]
        return f"+CME ERROR: {detail}"

    def _ipr(self, op: str, args: str) -> bool:
        rates = list(self.profile.dte_rates)
        if op == "test":
            if self.profile.autobaud:
                self._info([f"+IPR: (0,{_ranges(rates)})"])
            else:
                self._info([f"+IPR: (),({_ranges(rates)})"])
            return True
        if op == "read":
            self._info([f"+IPR: {self._cfg.ipr}"])
            return True
        if op != "set" or not args.isdigit():
            return False
        rate = int(args)
        if rate not in rates and not (rate == 0 and self.profile.autobaud):
            return False
        self._cfg.ipr = rate
        return True

    def _icf(self, op: str, args: str) -> bool:
        low = 0 if self.profile.autobaud else 1
        if op == "test":
            self._info([f"+ICF: ({low}-6),(0-3)"])
            return True
        if op == "read":
            self._info([f"+ICF: {self._cfg.icf[0]},{self._cfg.icf[1]}"])
            return True
        values = _int_args(args, 2) if op == "set" else None
        if values is None:
            return False
        fmt = self._cfg.icf[0] if values[0] is None else values[0]
        parity = self._cfg.icf[1] if values[1] is None else values[1]
        if not (low <= fmt <= 6 and 0 <= parity <= 3):
            return False
        if fmt != 0:
            self._cfg.icf = (fmt, parity)
        return True

    def _ifc(self, op: str, args: str) -> bool:
        if op == "test":
            self._info(["+IFC: (0-2),(0-2)"])
            return True
        if op == "read":
            self._info([f"+IFC: {self._cfg.ifc[0]},{self._cfg.ifc[1]}"])
            return True
        values = _int_args(args, 2) if op == "set" else None
        if values is None:
            return False
        by_dte = self._cfg.ifc[0] if values[0] is None else values[0]
        by_dce = self._cfg.ifc[1] if values[1] is None else values[1]
        if not (0 <= by_dte <= 2 and 0 <= by_dce <= 2):
            return False
        self._cfg.ifc = (by_dte, by_dce)
        return True

    def _fclass(self, op: str, args: str) -> bool:
        if op in ("read", "test"):
            self._info(["0"])
            return True
        return op == "set" and args == "0"

    def _cmee_command(self, op: str, args: str) -> bool:
        if op == "test":
            self._info(["+CMEE: (0-2)"])
            return True
        if op == "read":
            self._info([f"+CMEE: {self._cmee}"])
            return True
        if op != "set" or args not in ("0", "1", "2"):
            return False
        self._cmee = int(args)
        return True

    def _cgdcont(self, op: str, args: str) -> bool:
        if op == "test":
            self._info(['+CGDCONT: (1-24),"IP",,,(0-2),(0-4)'])
            return True
        if op == "read":
            self._info(
                [
                    f'+CGDCONT: {cid},"{kind}","{apn}"'
                    for cid, (kind, apn) in sorted(self._pdp.items())
                ]
            )
            return True
        if op != "set":
            return False
        fields = args.split(",")
        if not fields[0].isdigit() or not 1 <= int(fields[0]) <= 24:
            return False
        cid = int(fields[0])
        if len(fields) == 1:
            self._pdp.pop(cid, None)
            return True
        quoted = [f.strip('"') for f in fields[1:3]]
        if any(f.count('"') % 2 for f in fields) or not quoted[0]:
            return False
        self._pdp[cid] = (quoted[0], quoted[1] if len(quoted) > 1 else "")
        return True
