"""The SHS link handshake and line training, sans I/O.

docs/protocol.md is the specification; this is its reference implementation.
Two ends of a serial line, both at a safe default (9600 8N1, no flow control,
unless configured otherwise), agree what to use and prove it works::

    initiator                                   responder
    SYN (ISN_i, capabilities)          ---->
                                       <----    SYN-ACK (ISN_r, ack ISN_i+1, choice, capabilities)
    ACK (ack ISN_r+1)                  ---->
    SWITCH (step k, settings S_k)      ---->                        } at the safe
                                       <----    SWITCH-ACK (step k)  } default
    ... both switch to S_k, wait the settle time ...
    PROBE (step k, pattern)            ---->                        } at S_k
                                       <----    PROBE-ACK (pattern)  }
    VERIFIED (step k)                  ---->
    (no PROBE-ACK: both go back to the safe default, the initiator sends
     SWITCH for the next rung of the ladder)

The adapter that runs a core moves bytes, changes the port's settings when told
and passes the time::

    hs = Handshake("initiator", capabilities, now=clock())
    while True:
        port.write(hs.data_to_send())
        for event in hs.events():
            match event:
                case SwitchSettings(settings=s):
                    port.write(hs.data_to_send()); port.drain()   # every byte out first
                    port.reconfigure(s); hs.settings_applied(clock())
                case Agreed() | PeerNotIdentified() | Failed() | Reset() | Closed():
                    ...                                            # the outcome
        data = port.read_available() or wait_for_input(until=hs.get_timer())
        hs.receive_data(data, clock())
        hs.handle_timer(clock())

The core never reads a clock, sleeps or touches a port. It never raises for
what the peer sends: bad frames come out as :class:`BadFrame`, frames that do
not fit the state (stale, duplicated, of another session) as :class:`Ignored`.
A call the state table does not allow (``settings_applied`` with no switch
pending, ``close`` before agreement) raises :class:`LocalProtocolError` naming
the state and the event.

Events (frozen dataclasses)
---------------------------
:class:`PeerIdentified` ``(identity, capabilities, choice, session_id)``
    the three-way handshake completed; the peer's capabilities and the choice.
:class:`SwitchSettings` ``(settings, at, step)``
    change the port to ``settings`` now (``at`` is when this became due): first
    write everything :meth:`~Handshake.data_to_send` returns and wait until it
    has left the UART (drain), then apply, then call
    :meth:`~Handshake.settings_applied`. ``step`` is None for a return to the
    safe default.
:class:`TrainingStep` ``(step, settings, ok, reason)``
    one rung of the ladder was tried.
:class:`Verified` ``(step, settings)``
    the probe exchange at ``settings`` passed.
:class:`Fallback` ``(settings, reason)``
    going back to the safe default after a rung failed.
:class:`Agreed` ``(settings, protocol, frame_size, window, peer_identity, session_id)``
    both ends use ``settings``; the link is ESTABLISHED.
:class:`PeerNotIdentified` ``(settings, attempts, reason)``
    nothing answered (or, for a responder with a listen timeout, nothing
    called): the port stays at the safe default. Terminal.
:class:`Reset` ``(reason, code)``
    the peer sent a RST. Terminal.
:class:`Failed` ``(reason, code)``
    the negotiation (or, after :class:`Agreed`, the link) failed; ``code`` is the
    RST reason sent to the peer, if any. Terminal; the port goes back to the
    safe default (a :class:`SwitchSettings` comes first when it is not there).
:class:`Closed` ``(reason)``
    the link was closed with FIN / FIN-ACK. Terminal.
:class:`Ignored` ``(frame, reason)``
    a good frame that does not fit: stale, duplicated, of another session.
:class:`BadFrame` ``(reason, data, detail)``
    bytes that are no good frame (from :mod:`serialhs.negotiate.frames`).
:class:`TransferFrame` ``(frame)``
    a DATA, DACK or NAK frame of the session, for the transfer layer.

A run ends in exactly one terminal event (PeerNotIdentified, Failed, Reset or
Closed), or stays ESTABLISHED after Agreed, sending KEEPALIVEs when idle, until
a Failed (peer lost), Reset or Closed.

State tables
------------
The core consults these tables (:data:`INITIATOR_TRANSITIONS`,
:data:`RESPONDER_TRANSITIONS`) for every step. A step the peer causes that is
not in the table is an :class:`Ignored` frame; a local one (a call, a timer)
raises :class:`LocalProtocolError`. An initiator that loses the simultaneous-open
tie-break (``rx SYN (lower ISN)``: its own ISN is the higher) becomes the
responder and goes on in the responder's table.

Initiator::

{initiator}

Responder::

{responder}
"""

from __future__ import annotations

import dataclasses
import enum
import math
import secrets
from collections import deque
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Literal, TypeAlias

from serialhs.driver.settings import SerialSettings
from serialhs.errors import (
    CapabilityError,
    ConfigError,
    IncompatiblePeerError,
    LocalProtocolError,
    RemoteProtocolError,
)
from serialhs.negotiate.capabilities import (
    Capabilities,
    Choice,
    Identity,
    TransferProtocol,
    decode_capabilities,
    decode_settings,
    encode_capabilities,
    encode_settings,
    ladder,
    select,
)
from serialhs.negotiate.frames import (
    HANDSHAKE_PAYLOAD,
    PROBE_PATTERN,
    BadFrame,
    Flags,
    Frame,
    FrameDecoder,
    FrameType,
    RstCode,
    encode,
    session_id,
)

__all__ = [
    "DEFAULT_TIMERS",
    "INITIATOR_TRANSITIONS",
    "RESPONDER_TRANSITIONS",
    "SAFE_DEFAULT",
    "TERMINAL_STATES",
    "Agreed",
    "BadFrame",
    "Closed",
    "Event",
    "Failed",
    "Fallback",
    "Handshake",
    "Ignored",
    "PeerIdentified",
    "PeerNotIdentified",
    "Reset",
    "Role",
    "Session",
    "State",
    "SwitchSettings",
    "Timers",
    "TrainingStep",
    "TransferFrame",
    "Trigger",
    "Verified",
    "describe_transitions",
    "parse_probe",
    "parse_rst",
    "parse_step",
    "parse_switch",
    "probe_payload",
    "refusal_frame",
    "rst_payload",
    "step_payload",
    "switch_payload",
    "syn_ack_frame",
    "syn_frame",
]

Role: TypeAlias = Literal["initiator", "responder"]
SAFE_DEFAULT = SerialSettings(9600)  #: 9600 8N1, no flow control
_U32 = 0xFFFFFFFF
_MAX_CANDIDATES = 4  #: half-open sessions a responder keeps (one per distinct SYN)
_RST_TEXT = 64  #: bytes of text a RST carries at most


# -- events ---------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class PeerIdentified:
    """The three-way handshake completed: who the peer is and what was chosen."""

    identity: Identity
    capabilities: Capabilities
    choice: Choice
    session_id: int


@dataclasses.dataclass(frozen=True, slots=True)
class SwitchSettings:
    """Change the port to ``settings`` (after draining the output), then call
    :meth:`Handshake.settings_applied`. ``step`` is None for the safe default."""

    settings: SerialSettings
    at: float
    step: int | None


@dataclasses.dataclass(frozen=True, slots=True)
class TrainingStep:
    """One rung of the ladder tried: ``ok`` says whether it verified."""

    step: int
    settings: SerialSettings
    ok: bool
    reason: str


@dataclasses.dataclass(frozen=True, slots=True)
class Verified:
    """The probe exchange passed at ``settings``."""

    step: int
    settings: SerialSettings


@dataclasses.dataclass(frozen=True, slots=True)
class Fallback:
    """Back to the safe default after a failed rung."""

    settings: SerialSettings
    reason: str


@dataclasses.dataclass(frozen=True, slots=True)
class Agreed:
    """Both ends use ``settings``: the best rung that verified on this line."""

    settings: SerialSettings
    protocol: TransferProtocol
    frame_size: int
    window: int
    peer_identity: Identity
    session_id: int


@dataclasses.dataclass(frozen=True, slots=True)
class PeerNotIdentified:
    """Nothing answered: the port stays at the safe default ``settings``."""

    settings: SerialSettings
    attempts: int
    reason: str


@dataclasses.dataclass(frozen=True, slots=True)
class Reset:
    """The peer reset the session."""

    reason: str
    code: int


@dataclasses.dataclass(frozen=True, slots=True)
class Failed:
    """The negotiation or the link failed; ``code``: the RST reason sent, if any."""

    reason: str
    code: int | None


@dataclasses.dataclass(frozen=True, slots=True)
class Closed:
    """The link was closed (FIN / FIN-ACK)."""

    reason: str


@dataclasses.dataclass(frozen=True, slots=True)
class Ignored:
    """A good frame that does not fit the state (stale, duplicate, other session)."""

    frame: Frame
    reason: str


@dataclasses.dataclass(frozen=True, slots=True)
class TransferFrame:
    """A DATA, DACK or NAK frame of the session, for the transfer layer."""

    frame: Frame


Event: TypeAlias = (
    PeerIdentified
    | SwitchSettings
    | TrainingStep
    | Verified
    | Fallback
    | Agreed
    | PeerNotIdentified
    | Reset
    | Failed
    | Closed
    | Ignored
    | BadFrame
    | TransferFrame
)


# -- the state machine, as data ------------------------------------------------------------


class State(enum.Enum):
    """Where a handshake core is."""

    START = "START"
    SYN_SENT = "SYN_SENT"  #: initiator: SYN sent, waiting for SYN-ACK
    LISTEN = "LISTEN"  #: responder: waiting for a SYN
    SYN_RCVD = "SYN_RCVD"  #: responder: SYN-ACK sent, waiting for ACK (or SWITCH)
    TRAIN_WAIT = "TRAIN_WAIT"  #: responder at the safe default, waiting for SWITCH
    SWITCH_SENT = "SWITCH_SENT"  #: initiator: SWITCH sent, waiting for SWITCH-ACK
    SWITCH_GUARD = "SWITCH_GUARD"  #: the guard time before changing settings
    SWITCH_APPLY = "SWITCH_APPLY"  #: SwitchSettings given, waiting for settings_applied
    SETTLE = "SETTLE"  #: initiator: the settle time at the new settings
    PROBING = "PROBING"  #: initiator: PROBE sent, waiting for PROBE-ACK
    PROBE_WAIT = "PROBE_WAIT"  #: responder at the new settings, waiting for PROBE
    VERIFY_WAIT = "VERIFY_WAIT"  #: responder: PROBE-ACK sent, waiting for VERIFIED
    REVERT_APPLY = "REVERT_APPLY"  #: back to the safe default, waiting for settings_applied
    REVERT_SETTLE = "REVERT_SETTLE"  #: initiator: the settle time at the safe default
    ESTABLISHED = "ESTABLISHED"  #: agreed; keep-alives while idle
    FIN_WAIT = "FIN_WAIT"  #: FIN sent, waiting for FIN-ACK
    CLOSED = "CLOSED"  #: closed in order (terminal)
    FAILED = "FAILED"  #: failed or reset (terminal)
    UNIDENTIFIED = "UNIDENTIFIED"  #: no peer answered (terminal)

    # Members are singletons compared by identity: hash them so too (Enum's own
    # __hash__ is Python code, and the state table is looked up on every frame).
    __hash__ = object.__hash__


TERMINAL_STATES = frozenset({State.CLOSED, State.FAILED, State.UNIDENTIFIED})


class Trigger(enum.Enum):
    """What can happen to a core: the events of the state tables."""

    OPEN = "open"
    APPLIED = "settings_applied"
    CLOSE = "close"
    ABORT = "abort"
    RETRY = "timer:retransmit"
    GIVE_UP = "timer:give-up"
    GUARD = "timer:guard"
    SETTLED = "timer:settled"
    EXHAUSTED = "timer:settled (no rung left)"
    KEEPALIVE_DUE = "timer:keepalive"
    PEER_LOST = "timer:peer-lost"
    RX_SYN = "rx SYN"
    RX_SYN_NEW = "rx SYN (new ISN)"
    RX_SYN_DUP = "rx SYN (duplicate)"
    RX_SYN_REFUSED = "rx SYN (refused)"
    RX_SYN_LOWER = "rx SYN (lower ISN)"
    RX_SYN_HIGHER = "rx SYN (higher ISN)"
    RX_SYN_EQUAL = "rx SYN (equal ISN)"
    RX_SYN_ACK = "rx SYN-ACK"
    RX_SYN_ACK_BAD = "rx SYN-ACK (refused)"
    RX_SYN_ACK_DUP = "rx SYN-ACK (duplicate)"
    RX_ACK = "rx ACK"
    RX_SWITCH = "rx SWITCH"
    RX_SWITCH_BAD = "rx SWITCH (refused)"
    RX_SWITCH_ACK = "rx SWITCH-ACK"
    RX_PROBE = "rx PROBE"
    RX_PROBE_ACK = "rx PROBE-ACK"
    RX_PROBE_ACK_LAST = "rx PROBE-ACK (verified)"
    RX_VERIFIED = "rx VERIFIED"
    RX_KEEPALIVE = "rx KEEPALIVE"
    RX_TRANSFER = "rx DATA/DACK/NAK"
    RX_FIN = "rx FIN"
    RX_FIN_ACK = "rx FIN-ACK"
    RX_RST = "rx RST"
    RX_FOREIGN = "rx frame of no session"

    __hash__ = object.__hash__  # as State's


def _common(table: dict[tuple[State, Trigger], State]) -> None:
    S, T = State, Trigger
    table.update(
        {
            (S.ESTABLISHED, T.RX_KEEPALIVE): S.ESTABLISHED,
            (S.ESTABLISHED, T.RX_TRANSFER): S.ESTABLISHED,
            (S.ESTABLISHED, T.KEEPALIVE_DUE): S.ESTABLISHED,
            (S.ESTABLISHED, T.PEER_LOST): S.FAILED,
            (S.ESTABLISHED, T.RX_FIN): S.CLOSED,
            (S.ESTABLISHED, T.CLOSE): S.FIN_WAIT,
            (S.FIN_WAIT, T.RX_FIN_ACK): S.CLOSED,
            (S.FIN_WAIT, T.RX_FIN): S.CLOSED,
            (S.FIN_WAIT, T.RETRY): S.FIN_WAIT,
            (S.FIN_WAIT, T.GIVE_UP): S.CLOSED,
            (S.CLOSED, T.RX_FIN): S.CLOSED,
            (S.FAILED, T.APPLIED): S.FAILED,
        }
    )
    # Every state the table leaves from (SYN_RCVD is only a target of the
    # initiator's table: an initiator that gets there goes on as a responder).
    states = {state for state, _ in table}
    for state in states - TERMINAL_STATES - {S.START}:
        table[state, T.ABORT] = S.FAILED
        if state not in (S.SYN_SENT, S.LISTEN):
            table[state, T.RX_RST] = S.FAILED


def _initiator_table() -> dict[tuple[State, Trigger], State]:
    S, T = State, Trigger
    table = {
        (S.START, T.OPEN): S.SYN_SENT,
        (S.SYN_SENT, T.RETRY): S.SYN_SENT,
        (S.SYN_SENT, T.GIVE_UP): S.UNIDENTIFIED,
        (S.SYN_SENT, T.RX_SYN_ACK): S.SWITCH_SENT,
        (S.SYN_SENT, T.RX_SYN_ACK_BAD): S.FAILED,
        (S.SYN_SENT, T.RX_SYN_HIGHER): S.SYN_SENT,
        (S.SYN_SENT, T.RX_SYN_EQUAL): S.SYN_SENT,
        (S.SYN_SENT, T.RX_SYN_LOWER): S.SYN_RCVD,
        (S.SYN_SENT, T.RX_SYN_REFUSED): S.FAILED,
        (S.SYN_SENT, T.RX_RST): S.FAILED,
        (S.SWITCH_SENT, T.RETRY): S.SWITCH_SENT,
        (S.SWITCH_SENT, T.GIVE_UP): S.FAILED,
        (S.SWITCH_SENT, T.RX_SYN_ACK_DUP): S.SWITCH_SENT,
        (S.SWITCH_SENT, T.RX_SWITCH_ACK): S.SWITCH_GUARD,
        (S.SWITCH_GUARD, T.GUARD): S.SWITCH_APPLY,
        (S.SWITCH_APPLY, T.APPLIED): S.SETTLE,
        (S.SWITCH_APPLY, T.GIVE_UP): S.FAILED,
        (S.SETTLE, T.SETTLED): S.PROBING,
        (S.PROBING, T.RETRY): S.PROBING,
        (S.PROBING, T.GIVE_UP): S.REVERT_APPLY,
        (S.PROBING, T.RX_PROBE_ACK): S.PROBING,
        (S.PROBING, T.RX_PROBE_ACK_LAST): S.ESTABLISHED,
        (S.REVERT_APPLY, T.APPLIED): S.REVERT_SETTLE,
        (S.REVERT_APPLY, T.GIVE_UP): S.FAILED,
        (S.REVERT_SETTLE, T.SETTLED): S.SWITCH_SENT,
        (S.REVERT_SETTLE, T.EXHAUSTED): S.FAILED,
        (S.ESTABLISHED, T.RX_PROBE_ACK): S.ESTABLISHED,
    }
    _common(table)
    return table


def _responder_table() -> dict[tuple[State, Trigger], State]:
    S, T = State, Trigger
    table = {
        (S.START, T.OPEN): S.LISTEN,
        (S.LISTEN, T.RX_SYN): S.SYN_RCVD,
        (S.LISTEN, T.RX_SYN_REFUSED): S.FAILED,
        (S.LISTEN, T.RX_FOREIGN): S.LISTEN,
        (S.LISTEN, T.GIVE_UP): S.UNIDENTIFIED,
        (S.SYN_RCVD, T.RX_SYN_DUP): S.SYN_RCVD,
        (S.SYN_RCVD, T.RX_SYN_NEW): S.SYN_RCVD,
        (S.SYN_RCVD, T.RETRY): S.SYN_RCVD,
        (S.SYN_RCVD, T.GIVE_UP): S.FAILED,
        (S.SYN_RCVD, T.RX_ACK): S.TRAIN_WAIT,
        (S.SYN_RCVD, T.RX_SWITCH): S.SWITCH_GUARD,
        (S.SYN_RCVD, T.RX_SWITCH_BAD): S.FAILED,
        (S.TRAIN_WAIT, T.RX_SWITCH): S.SWITCH_GUARD,
        (S.TRAIN_WAIT, T.RX_SWITCH_BAD): S.FAILED,
        (S.TRAIN_WAIT, T.GIVE_UP): S.FAILED,
        (S.SWITCH_GUARD, T.GUARD): S.SWITCH_APPLY,
        (S.SWITCH_APPLY, T.APPLIED): S.PROBE_WAIT,
        (S.SWITCH_APPLY, T.GIVE_UP): S.FAILED,
        (S.PROBE_WAIT, T.RX_PROBE): S.VERIFY_WAIT,
        (S.PROBE_WAIT, T.RX_SWITCH): S.SWITCH_GUARD,
        (S.PROBE_WAIT, T.RX_SWITCH_BAD): S.FAILED,
        (S.PROBE_WAIT, T.GIVE_UP): S.REVERT_APPLY,
        (S.VERIFY_WAIT, T.RX_PROBE): S.VERIFY_WAIT,
        (S.VERIFY_WAIT, T.RETRY): S.VERIFY_WAIT,
        (S.VERIFY_WAIT, T.GIVE_UP): S.REVERT_APPLY,
        (S.VERIFY_WAIT, T.RX_VERIFIED): S.ESTABLISHED,
        (S.VERIFY_WAIT, T.RX_KEEPALIVE): S.ESTABLISHED,
        (S.VERIFY_WAIT, T.RX_TRANSFER): S.ESTABLISHED,
        (S.VERIFY_WAIT, T.RX_FIN): S.CLOSED,
        (S.VERIFY_WAIT, T.RX_SWITCH): S.SWITCH_GUARD,
        (S.VERIFY_WAIT, T.RX_SWITCH_BAD): S.FAILED,
        (S.REVERT_APPLY, T.APPLIED): S.TRAIN_WAIT,
        (S.REVERT_APPLY, T.GIVE_UP): S.FAILED,
    }
    _common(table)
    return table


#: (state, trigger) -> next state for an initiator. Anything missing is illegal.
INITIATOR_TRANSITIONS: Mapping[tuple[State, Trigger], State] = MappingProxyType(_initiator_table())
#: (state, trigger) -> next state for a responder. Anything missing is illegal.
RESPONDER_TRANSITIONS: Mapping[tuple[State, Trigger], State] = MappingProxyType(_responder_table())
_TABLES: Mapping[str, Mapping[tuple[State, Trigger], State]] = {
    "initiator": INITIATOR_TRANSITIONS,
    "responder": RESPONDER_TRANSITIONS,
}


def describe_transitions(role: Role) -> str:
    """A role's state table as text, one transition a line, grouped by state."""
    table = _TABLES[role]
    rows = []
    for state in State:
        for (from_state, trigger), to_state in table.items():
            if from_state is state and trigger is not Trigger.ABORT:
                rows.append(f"    {state.name:<14} {trigger.value:<29} -> {to_state.name}")
    rows.append(f"    {'(any other)':<14} {Trigger.ABORT.value:<29} -> FAILED")
    return "\n".join(rows)


__doc__ = (
    (__doc__ or "")
    .replace("{initiator}", describe_transitions("initiator"))
    .replace("{responder}", describe_transitions("responder"))
)


# -- timers ---------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class Timers:
    """Every time and retry count of the protocol (docs/protocol.md, "Timers").

    ``c`` is one character time at the settings in force
    (:attr:`SerialSettings.char_time`: start + data + parity + stop bits / baud).

    - retransmission timeout of try ``a`` (0, 1, ...):
      ``rto = min(rto_max, (rto_base + rto_chars * c) * 2**a)``
    - a request sent ``n`` times is given up ``budget(n) = sum(rto(a), a < n)``
      after its first sending
    - guard before a settings change: ``max(guard_min, guard_chars * c_old)``
      (the responder adds the airtime of its SWITCH-ACK); none when the
      SWITCH-ACK has FAST (§9.2)
    - settle after a change: ``max(settle_min, settle_chars * c_new)``; the
      initiator's first PROBE also waits the SWITCH-ACK's airtime at ``c_old``
      unless the SWITCH-ACK has FAST (§9.2), and then the settle time is
      ``settle_chars * c_new``
    - a responder's wait for a PROBE:
      ``settle(S) + budget(probe_tries, S) + guard(safe) + rto_base``
    - a responder's wait for a SWITCH:
      ``2 * (budget(switch_tries, safe) + budget(probe_tries, safe))``
    - ESTABLISHED: a KEEPALIVE after ``keepalive`` seconds of sending nothing,
      the peer lost after ``keepalive * dead_intervals`` seconds of receiving
      nothing (``keepalive=None``: neither)

    Both ends must use the same values (the defaults are the protocol's).
    """

    rto_base: float = 0.1
    rto_chars: int = 800
    rto_max: float = 2.0
    syn_tries: int = 6
    synack_tries: int = 6
    switch_tries: int = 8
    probe_tries: int = 4
    probe_ack_tries: int = 4
    probes_required: int = 1
    fin_tries: int = 3
    guard_min: float = 0.01
    guard_chars: int = 2
    settle_min: float = 0.01
    settle_chars: int = 16
    apply_timeout: float = 5.0
    listen: float | None = None
    keepalive: float | None = 2.0
    dead_intervals: int = 4

    def __post_init__(self) -> None:
        for name in ("rto_base", "rto_max", "guard_min", "settle_min", "apply_timeout"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ConfigError(f"timer {name} must be a number of seconds, not {value!r}")
            if not math.isfinite(value) or value <= 0:
                raise ConfigError(f"timer {name} must be > 0 seconds, not {value!r}")
        for name in ("listen", "keepalive"):
            value = getattr(self, name)
            if value is not None and (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or not math.isfinite(value)
                or value <= 0
            ):
                raise ConfigError(f"timer {name} must be None or > 0 seconds, not {value!r}")
        for name, low, high in (
            ("rto_chars", 0, 1 << 20),
            ("syn_tries", 1, 255),
            ("synack_tries", 1, 255),
            ("switch_tries", 1, 255),
            ("probe_tries", 1, 255),
            ("probe_ack_tries", 1, 255),
            ("probes_required", 1, 255),
            ("fin_tries", 1, 255),
            ("guard_chars", 0, 1 << 20),
            ("settle_chars", 0, 1 << 20),
            ("dead_intervals", 1, 1000),
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                raise ConfigError(f"{name} must be an int {low}..{high}, not {value!r}")

    def rto(self, attempt: int, settings: SerialSettings) -> float:
        base = self.rto_base + self.rto_chars * settings.char_time
        return min(self.rto_max, base * 2.0 ** min(attempt, 32))

    def budget(self, tries: int, settings: SerialSettings) -> float:
        return sum(self.rto(a, settings) for a in range(tries))

    def guard(self, settings: SerialSettings, *, fast: bool = False) -> float:
        """The guard before a switch; none on a FAST line (§9.2), which has no
        UART whose driver lags in draining its queue (guard_min) or whose last
        characters are still on their way (guard_chars)."""
        return 0.0 if fast else max(self.guard_min, self.guard_chars * settings.char_time)

    def settle(self, settings: SerialSettings, *, fast: bool = False) -> float:
        """The wait after a switch before the first PROBE; on a FAST line (§9.2)
        without settle_min, which covers a UART's own change of rate."""
        chars = self.settle_chars * settings.char_time
        return chars if fast else max(self.settle_min, chars)

    def probe_wait(self, settings: SerialSettings, safe: SerialSettings) -> float:
        return (
            self.settle(settings)
            + self.budget(self.probe_tries, settings)
            + self.guard(safe)
            + self.rto_base
        )

    def train_wait(self, safe: SerialSettings) -> float:
        return 2 * (self.budget(self.switch_tries, safe) + self.budget(self.probe_tries, safe))

    @property
    def dead(self) -> float | None:
        return None if self.keepalive is None else self.keepalive * self.dead_intervals


DEFAULT_TIMERS = Timers()


# -- messages -------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class Session:
    """One incarnation of a link: both ISNs. Every frame after the SYN carries
    :attr:`id`; control frames carry seq = sender's ISN + 1, ack = receiver's ISN + 1."""

    initiator_isn: int
    responder_isn: int
    #: the session id (computed once: it is checked on every frame)
    id: int = dataclasses.field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "id", session_id(self.initiator_isn, self.responder_isn))

    def isns(self, sender: Role) -> tuple[int, int]:
        """(the sender's ISN, the receiver's ISN)."""
        if sender == "initiator":
            return self.initiator_isn, self.responder_isn
        return self.responder_isn, self.initiator_isn

    def frame(self, sender: Role, ftype: int, payload: bytes = b"", flags: int = 0) -> Frame:
        """A control frame of this session sent by ``sender``."""
        own, peer = self.isns(sender)
        return Frame(ftype, self.id, (own + 1) & _U32, (peer + 1) & _U32, payload, flags)

    def matches(self, frame: Frame, receiver: Role) -> bool:
        """Is ``frame`` a control frame of this session, sent to ``receiver``?"""
        own, peer = self.isns(receiver)
        return (
            frame.session == self.id
            and frame.seq == (peer + 1) & _U32
            and frame.ack == (own + 1) & _U32
        )


def syn_frame(isn: int, capabilities: Capabilities, flags: int = 0) -> Frame:
    """SYN: session 0, seq = the initiator's ISN, ack 0, payload its capabilities."""
    return Frame(FrameType.SYN, 0, isn, 0, encode_capabilities(capabilities), flags)


def syn_ack_frame(
    session: Session, choice: Choice, capabilities: Capabilities, flags: int = 0
) -> Frame:
    """SYN-ACK: seq = the responder's ISN, ack = the initiator's ISN + 1, payload
    the 12-byte choice and the responder's capabilities."""
    return Frame(
        FrameType.SYN_ACK,
        session.id,
        session.responder_isn,
        (session.initiator_isn + 1) & _U32,
        choice.encode() + encode_capabilities(capabilities),
        flags,
    )


def switch_payload(step: int, attempt: int, settings: SerialSettings) -> bytes:
    """SWITCH and SWITCH-ACK: step u8, attempt u8, baud u32, framing u8, flow u8."""
    return bytes([step, attempt]) + encode_settings(settings)


def parse_switch(payload: bytes) -> tuple[int, int, SerialSettings]:
    if len(payload) != 8:
        raise RemoteProtocolError(f"a SWITCH payload is 8 bytes, not {len(payload)}")
    return payload[0], payload[1], decode_settings(payload[2:])


def probe_payload(step: int, round_: int) -> bytes:
    """PROBE and PROBE-ACK: step u8, round u8, then :data:`PROBE_PATTERN`."""
    return bytes([step, round_]) + PROBE_PATTERN


def parse_probe(payload: bytes) -> tuple[int, int]:
    if len(payload) != 2 + len(PROBE_PATTERN):
        raise RemoteProtocolError(f"a PROBE payload is 322 bytes, not {len(payload)}")
    if payload[2:] != PROBE_PATTERN:
        raise RemoteProtocolError("the PROBE pattern arrived changed")
    return payload[0], payload[1]


def step_payload(step: int) -> bytes:
    """VERIFIED and KEEPALIVE: the verified step, u8."""
    return bytes([step])


def parse_step(payload: bytes) -> int:
    if len(payload) != 1:
        raise RemoteProtocolError(f"this payload is 1 byte, not {len(payload)}")
    return payload[0]


def rst_payload(code: int, text: str = "") -> bytes:
    """RST: reason code u8, then up to 64 bytes of UTF-8 text."""
    raw = text.encode("utf-8")[:_RST_TEXT]
    return bytes([code]) + raw.decode("utf-8", "ignore").encode("utf-8")


def parse_rst(payload: bytes) -> tuple[int, str]:
    """(code, text) of a RST; an empty payload is UNSPECIFIED."""
    if not payload:
        return int(RstCode.UNSPECIFIED), ""
    code = payload[0]
    text = payload[1:].decode("utf-8", "replace")
    if code in RstCode._value2member_map_:
        return RstCode(code), text
    return code, text


def refusal_frame(syn: Frame, code: int, text: str = "") -> Frame:
    """The RST that answers a SYN (or any frame) of no session: session = the
    frame's session, seq = its ack, ack = its seq + 1."""
    return Frame(FrameType.RST, syn.session, syn.ack, (syn.seq + 1) & _U32, rst_payload(code, text))


def _secure_isn() -> int:
    return secrets.randbits(32)


def _code_name(code: int) -> str:
    return code.name.lower().replace("_", " ") if isinstance(code, RstCode) else f"code {code}"


# -- the core -------------------------------------------------------------------------------


@dataclasses.dataclass(slots=True)
class _Candidate:
    """A half-open session of a responder: one per distinct SYN."""

    session: Session
    capabilities: Capabilities
    choice: Choice
    ladder: tuple[SerialSettings, ...]
    #: its only SYN-ACK so far: (when, its bytes on the wire); None once resent
    syn_ack_once: tuple[float, int] | None = None


_TRANSFER_TYPES = frozenset({FrameType.DATA, FrameType.DACK, FrameType.NAK})
_AUTH_TYPES = frozenset({FrameType.AUTH1, FrameType.AUTH2, FrameType.AUTH3, FrameType.AUTH4})


class Handshake:
    """One end of the SHS handshake and line training. See the module docstring.

    ``role``: "initiator" (sends the SYN) or "responder" (waits for one).
    ``capabilities``: what this end can do. ``now``: the current time (seconds,
    any epoch; the same clock for every call). ``safe``: the settings both ends
    start at and fall back to (8 data bits). ``rng``: a function returning a
    random 32-bit int for ISNs; the default uses :mod:`secrets` (a CSPRNG) and
    only tests should pass another. ``timers``: every time and retry count.
    """

    def __init__(
        self,
        role: Role,
        capabilities: Capabilities,
        *,
        now: float,
        safe: SerialSettings = SAFE_DEFAULT,
        rng: Callable[[], int] | None = None,
        timers: Timers = DEFAULT_TIMERS,
    ) -> None:
        if role not in ("initiator", "responder"):
            raise ConfigError(f"role must be 'initiator' or 'responder', not {role!r}")
        if not isinstance(capabilities, Capabilities):
            raise ConfigError(f"capabilities must be Capabilities, not {capabilities!r}")
        if not isinstance(safe, SerialSettings) or safe.bytesize != 8:
            raise ConfigError(f"the safe settings need 8 data bits (SHS frames are bytes): {safe}")
        if not isinstance(timers, Timers):
            raise ConfigError(f"timers must be Timers, not {timers!r}")
        encode_capabilities(capabilities)  # raises ConfigError if they do not fit a SYN
        self._role: Role = role
        self._table = _TABLES[role]
        self._caps = capabilities
        self._safe = safe
        self._timers = timers
        self._rng = rng if rng is not None else _secure_isn
        self._now = float(now)
        self._state = State.START
        self._settings = safe  #: what the port is at (as far as the core knows)
        self._target = safe  #: what the last SwitchSettings asked for
        self._decoder = FrameDecoder(max_payload=max(HANDSHAKE_PAYLOAD, capabilities.max_payload))
        self._out = bytearray()
        self._events: deque[Event] = deque()
        self._isn = 0
        self._session: Session | None = None
        self._candidates: list[_Candidate] = []
        self._peer_caps: Capabilities | None = None
        self._choice: Choice | None = None
        self._ladder: tuple[SerialSettings, ...] = ()
        self._agreed: Agreed | None = None
        self._timer: float | None = None
        self._tries = 0
        # initiator's training
        self._step = -1
        self._round = 0
        self._good = 0
        #: the only SYN sent for this ISN so far: (when, its bytes on the wire); None
        #: once it is retransmitted (an answer could then be to either: no measure)
        self._syn_once: tuple[float, int] | None = None
        #: a round trip beat its airtime, here or at the peer (§9.2): FAST switches
        self._fast = False
        self._ack_airtime = 0.0  #: of the last SWITCH-ACK taken, at the settings then
        # responder's training: the last SWITCH taken, and the PROBE round answered
        self._r_step = -1
        self._r_attempt = -1
        self._r_settings = safe
        self._r_round = 0
        #: a PROBE for the step being switched to that came before this end switched
        #: (FAST, §9.3): taken once the settings are applied
        self._early_probe: Frame | None = None
        # ESTABLISHED
        self._ka_due: float | None = None
        self._dead_at: float | None = None
        self._fire(Trigger.OPEN)
        if role == "initiator":
            self._isn = self._new_isn()
            self._send_first_syn()
            self._arm(1)
        elif timers.listen is not None:
            self._timer = self._now + timers.listen

    # -- what the adapter reads ------------------------------------------------------------

    @property
    def role(self) -> Role:
        """The role now (an initiator that lost the simultaneous-open tie-break is a responder)."""
        return self._role

    @property
    def state(self) -> State:
        return self._state

    @property
    def settings(self) -> SerialSettings:
        """The settings the port is at, as far as the core knows."""
        return self._settings

    @property
    def safe(self) -> SerialSettings:
        return self._safe

    @property
    def capabilities(self) -> Capabilities:
        return self._caps

    @property
    def timers(self) -> Timers:
        return self._timers

    @property
    def session(self) -> Session | None:
        """Both ISNs, once the handshake has completed (the transfer layer numbers
        its frames from them)."""
        return self._session

    @property
    def session_id(self) -> int | None:
        return self._session.id if self._session is not None else None

    @property
    def peer_capabilities(self) -> Capabilities | None:
        return self._peer_caps

    @property
    def choice(self) -> Choice | None:
        return self._choice

    @property
    def ladder(self) -> tuple[SerialSettings, ...]:
        """The rungs line training tries, best first (empty before the handshake)."""
        return self._ladder

    @property
    def agreed(self) -> Agreed | None:
        return self._agreed

    @property
    def fast(self) -> bool:
        """Does this line deliver faster than its rate (§9.2)? Either end's measure
        (the initiator's SYN, the responder's SYN-ACK), which the other learns
        from the FAST flag of SWITCH or SWITCH-ACK; once a SWITCH-ACK has come,
        the initiator goes by its flag alone (the responder's word)."""
        return self._fast

    @property
    def finished(self) -> bool:
        """In a terminal state (CLOSED, FAILED, UNIDENTIFIED)."""
        return self._state in TERMINAL_STATES

    @property
    def decoder(self) -> FrameDecoder:
        return self._decoder

    def data_to_send(self) -> bytes:
        """Bytes to write to the port (taken: a second call returns only newer ones)."""
        if not self._out:
            return b""
        out = bytes(self._out)
        self._out.clear()
        return out

    def next_event(self) -> Event | None:
        return self._events.popleft() if self._events else None

    def events(self) -> list[Event]:
        """Take every event produced so far."""
        out = list(self._events)
        self._events.clear()
        return out

    def get_timer(self) -> float | None:
        """When :meth:`handle_timer` must be called next, or None."""
        times = [t for t in (self._timer, self._ka_due, self._dead_at) if t is not None]
        return min(times) if times else None

    # -- what the adapter does --------------------------------------------------------------

    def receive_data(self, data: bytes | bytearray | memoryview, now: float) -> None:
        """Bytes read from the port. Never raises for their content."""
        self._advance(now)
        self._decoder.receive_data(data)
        while (item := self._decoder.next_event()) is not None:
            if isinstance(item, BadFrame):
                self._events.append(item)
            else:
                self._on_frame(item)

    def handle_timer(self, now: float) -> None:
        """Do what is due at ``now`` (retransmissions, give-ups, switches, keep-alives)."""
        self._advance(now)
        while True:
            if self._dead_at is not None and self._dead_at <= self._now:
                self._peer_lost()
            elif self._ka_due is not None and self._ka_due <= self._now:
                self._keepalive()
            elif self._timer is not None and self._timer <= self._now:
                self._timer = None
                self._on_timer()
            else:
                return

    def settings_applied(self, now: float) -> None:
        """The port now runs at the settings of the last :class:`SwitchSettings`."""
        self._advance(now)
        self._fire(Trigger.APPLIED)
        self._settings = self._target
        if not self._fast:  # a partial frame came at the old settings (FAST: none is garbled)
            self._decoder.reset()
        t, state = self._timers, self._state
        early, self._early_probe = self._early_probe, None
        if state is State.SETTLE:
            # without FAST the responder switches the SWITCH-ACK's airtime after
            # queueing it, which on a line faster than its rate is after it arrived
            late = 0.0 if self._fast else self._ack_airtime
            self._timer = self._now + t.settle(self._settings, fast=self._fast) + late
        elif state is State.PROBE_WAIT:
            self._timer = self._now + t.probe_wait(self._settings, self._safe)
            if early is not None:  # the initiator switched first (§9.3)
                self._rx_probe(early)
        elif state is State.REVERT_SETTLE:
            self._timer = self._now + t.settle(self._settings)
        elif state is State.TRAIN_WAIT:
            self._timer = self._now + t.train_wait(self._safe)

    def close(self, now: float) -> None:
        """Close an established link (FIN, answered by FIN-ACK)."""
        self._advance(now)
        self._fire(Trigger.CLOSE)
        self._ka_due = self._dead_at = None
        self._send_control(FrameType.FIN)
        self._arm(1)

    def send_transfer(self, frame: Frame, now: float) -> None:
        """Queue a DATA, DACK or NAK frame of the transfer layer (ESTABLISHED only).

        It goes out with the handshake's own frames, in order, and counts as
        traffic for the keep-alive (an end that keeps sending data sends no
        KEEPALIVE)."""
        self._advance(now)
        if self._state is not State.ESTABLISHED:
            raise LocalProtocolError(
                f"transfer frames need an established link, not state {self._state.name}",
                state=self._state.name,
                event="send_transfer",
            )
        if frame.kind not in _TRANSFER_TYPES:
            raise LocalProtocolError(
                f"send_transfer takes DATA, DACK or NAK, not {frame.name}",
                state=self._state.name,
                event="send_transfer",
            )
        assert self._session is not None
        if frame.session != self._session.id:
            raise LocalProtocolError(
                f"a {frame.name} of session 0x{frame.session:08x}, not this session's "
                f"0x{self._session.id:08x}",
                state=self._state.name,
                event="send_transfer",
            )
        self._send(frame)

    def abort(self, now: float, reason: str = "aborted") -> None:
        """Give up at once: a RST to the peer if there is a session, then Failed."""
        self._advance(now)
        self._fire(Trigger.ABORT)
        if self._session is not None:
            self._send_control(FrameType.RST, rst_payload(RstCode.ABORTED, reason))
        self._fail(reason, RstCode.ABORTED)

    # -- internals: the state table -----------------------------------------------------------

    def _fire(self, trigger: Trigger) -> None:
        new = self._table.get((self._state, trigger))
        if new is None:
            raise LocalProtocolError(
                f"{trigger.value} is not allowed in state {self._state.name} "
                f"(a {self._role} handshake)",
                state=self._state.name,
                event=trigger.name,
            )
        self._state = new
        if new in TERMINAL_STATES:
            self._timer = self._ka_due = self._dead_at = None

    def _allowed(self, trigger: Trigger, frame: Frame) -> bool:
        """May the peer cause ``trigger`` now? If not, the frame is ignored."""
        if (self._state, trigger) in self._table:
            return True
        self._ignore(frame, f"{trigger.value} does not fit state {self._state.name}")
        return False

    def _ignore(self, frame: Frame, reason: str) -> None:
        self._events.append(Ignored(frame, reason))

    def _advance(self, now: float) -> None:
        self._now = max(self._now, float(now))

    def _new_isn(self) -> int:
        value = self._rng()
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"the ISN source returned {value!r}, not an int")
        return value & _U32

    # -- internals: sending --------------------------------------------------------------------

    def _send(self, frame: Frame) -> int:
        """Queue ``frame``; returns its length on the wire."""
        wire = encode(frame)
        self._out += wire
        if self._state is State.ESTABLISHED and self._timers.keepalive is not None:
            self._ka_due = self._now + self._timers.keepalive
        return len(wire)

    def _send_control(
        self, ftype: FrameType, payload: bytes = b"", *, retry: bool = False, fast: bool = False
    ) -> int:
        """Queue a control frame of the session (``fast``: with the flag FAST, for
        SWITCH and SWITCH-ACK); returns its length on the wire."""
        assert self._session is not None
        flags = (Flags.RETRY if retry else 0) | (Flags.FAST if fast else 0)
        return self._send(self._session.frame(self._role, ftype, payload, int(flags)))

    def _arm(self, tries: int) -> None:
        """Count a (re)transmission and set its retransmission timeout."""
        self._tries = tries
        self._timer = self._now + self._timers.rto(tries - 1, self._settings)

    def _switch_frame_payload(self) -> bytes:
        return switch_payload(self._step, self._tries - 1, self._ladder[self._step])

    # -- internals: timers ---------------------------------------------------------------------

    def _retry_or_give_up(self, limit: int, resend: Callable[[], None]) -> bool:
        """Resend (True) while fewer than ``limit`` tries went out; else False."""
        if self._tries < limit:
            self._fire(Trigger.RETRY)
            self._arm(self._tries + 1)
            resend()
            return True
        return False

    def _on_timer(self) -> None:
        state, t = self._state, self._timers
        if state is State.SYN_SENT:
            if not self._retry_or_give_up(t.syn_tries, self._resend_syn):
                self._fire(Trigger.GIVE_UP)
                waited = t.budget(t.syn_tries, self._safe)
                self._events.append(
                    PeerNotIdentified(
                        self._safe,
                        t.syn_tries,
                        f"no answer to {t.syn_tries} SYNs in {waited:.1f} s at {self._safe}",
                    )
                )
        elif state is State.LISTEN:
            self._fire(Trigger.GIVE_UP)
            self._events.append(
                PeerNotIdentified(self._safe, 0, f"no SYN within {t.listen} s at {self._safe}")
            )
        elif state is State.SYN_RCVD:
            if not self._retry_or_give_up(t.synack_tries, self._resend_syn_ack):
                self._fire(Trigger.GIVE_UP)
                self._fail(
                    f"the initiator did not confirm the SYN-ACK ({t.synack_tries} sent)", None
                )
        elif state is State.TRAIN_WAIT:
            self._fire(Trigger.GIVE_UP)
            self._fail(
                f"no SWITCH from the initiator within {t.train_wait(self._safe):.1f} s", None
            )
        elif state is State.SWITCH_SENT:
            if not self._retry_or_give_up(t.switch_tries, self._resend_switch):
                self._fire(Trigger.GIVE_UP)
                self._fail(
                    f"no SWITCH-ACK for step {self._step} after {t.switch_tries} SWITCHes", None
                )
        elif state is State.SWITCH_GUARD:
            self._fire(Trigger.GUARD)
            if self._role == "initiator":
                self._target = self._ladder[self._step]
                step = self._step
            else:
                self._target = self._r_settings
                step = self._r_step
            self._events.append(SwitchSettings(self._target, self._now, step))
            self._timer = self._now + t.apply_timeout
        elif state in (State.SWITCH_APPLY, State.REVERT_APPLY):
            self._fire(Trigger.GIVE_UP)
            self._fail(f"the port's settings were not applied within {t.apply_timeout} s", None)
        elif state is State.SETTLE:
            self._fire(Trigger.SETTLED)
            self._round = 0
            self._good = 0
            self._send_control(FrameType.PROBE, probe_payload(self._step, 0))
            self._arm(1)
        elif state is State.PROBING:
            if not self._retry_or_give_up(t.probe_tries, self._resend_probe):
                self._fire(Trigger.GIVE_UP)
                self._step_failed(
                    self._step,
                    self._ladder[self._step],
                    f"no PROBE-ACK to {t.probe_tries} PROBEs (round {self._round})",
                )
        elif state is State.PROBE_WAIT:
            self._fire(Trigger.GIVE_UP)
            wait = t.probe_wait(self._settings, self._safe)
            self._step_failed(self._r_step, self._r_settings, f"no PROBE within {wait:.2f} s")
        elif state is State.VERIFY_WAIT:
            if not self._retry_or_give_up(t.probe_ack_tries, self._resend_probe_ack):
                self._fire(Trigger.GIVE_UP)
                self._step_failed(
                    self._r_step,
                    self._r_settings,
                    f"no VERIFIED after {t.probe_ack_tries} PROBE-ACKs",
                )
        elif state is State.REVERT_SETTLE:
            if self._step + 1 < len(self._ladder):
                self._fire(Trigger.SETTLED)
                self._start_step(self._step + 1)
            else:
                self._fire(Trigger.EXHAUSTED)
                tried = ", ".join(str(s) for s in self._ladder)
                self._send_control(
                    FrameType.RST, rst_payload(RstCode.TRAINING_FAILED, "no rung verified")
                )
                self._fail(
                    f"no rung of the ladder verified (tried {tried})", RstCode.TRAINING_FAILED
                )
        elif state is State.FIN_WAIT:
            if not self._retry_or_give_up(t.fin_tries, self._resend_fin):
                self._fire(Trigger.GIVE_UP)
                self._events.append(Closed(f"no FIN-ACK after {t.fin_tries} FINs"))
        else:  # pragma: no cover - every state that sets the timer is handled above
            raise LocalProtocolError(
                f"a timer fired in state {state.name}", state=state.name, event="timer"
            )

    def _send_first_syn(self) -> None:
        size = self._send(syn_frame(self._isn, self._caps))
        self._syn_once = (self._now, size)

    def _resend_syn(self) -> None:
        self._syn_once = None
        self._send(syn_frame(self._isn, self._caps, int(Flags.RETRY)))

    def _resend_syn_ack(self) -> None:
        self._send_syn_ack(self._candidates[-1], retry=True)

    def _resend_switch(self) -> None:
        self._send_switch(retry=True)

    def _send_switch(self, *, retry: bool = False) -> None:
        self._send_control(
            FrameType.SWITCH, self._switch_frame_payload(), retry=retry, fast=self._fast
        )

    def _resend_probe(self) -> None:
        self._send_control(FrameType.PROBE, probe_payload(self._step, self._round), retry=True)

    def _resend_probe_ack(self) -> None:
        payload = probe_payload(self._r_step, self._r_round)
        self._send_control(FrameType.PROBE_ACK, payload, retry=True)

    def _resend_fin(self) -> None:
        self._send_control(FrameType.FIN, retry=True)

    def _keepalive(self) -> None:
        self._fire(Trigger.KEEPALIVE_DUE)
        step = self._step if self._role == "initiator" else self._r_step
        self._send_control(FrameType.KEEPALIVE, step_payload(step))
        assert self._timers.keepalive is not None
        self._ka_due = self._now + self._timers.keepalive

    def _peer_lost(self) -> None:
        self._fire(Trigger.PEER_LOST)
        dead = self._timers.dead
        self._send_control(FrameType.RST, rst_payload(RstCode.PEER_LOST, "no frame from you"))
        self._fail(f"no frame from the peer for {dead} s", RstCode.PEER_LOST)

    # -- internals: outcomes ------------------------------------------------------------------

    def _revert(self) -> None:
        """Ask for the safe default (if the port is, or is going, elsewhere)."""
        if self._target != self._safe or self._settings != self._safe:
            self._target = self._safe
            self._events.append(SwitchSettings(self._safe, self._now, None))

    def _fail(self, reason: str, code: int | None) -> None:
        self._revert()
        self._events.append(Failed(reason, code))

    def _step_failed(self, step: int, settings: SerialSettings, reason: str) -> None:
        """A rung failed: report it and go back to the safe default (REVERT_APPLY)."""
        self._events.append(TrainingStep(step, settings, False, reason))
        self._events.append(Fallback(self._safe, reason))
        self._target = self._safe
        self._events.append(SwitchSettings(self._safe, self._now, None))
        self._timer = self._now + self._timers.apply_timeout

    def _agree(self) -> None:
        assert self._choice is not None and self._peer_caps is not None
        assert self._session is not None
        if self._role == "initiator":
            step, settings = self._step, self._ladder[self._step]
        else:
            step, settings = self._r_step, self._r_settings
        self._timer = None
        self._events.append(Verified(step, settings))
        self._events.append(TrainingStep(step, settings, True, "verified"))
        self._agreed = Agreed(
            settings,
            self._choice.protocol,
            self._choice.max_payload,
            self._choice.window,
            self._peer_caps.identity,
            self._session.id,
        )
        self._events.append(self._agreed)
        keepalive, dead = self._timers.keepalive, self._timers.dead
        if keepalive is not None and dead is not None:
            self._ka_due = self._now + keepalive
            self._dead_at = self._now + dead

    def _identified(self) -> None:
        assert self._peer_caps is not None and self._choice is not None
        assert self._session is not None
        self._events.append(
            PeerIdentified(
                self._peer_caps.identity, self._peer_caps, self._choice, self._session.id
            )
        )

    def _start_step(self, step: int) -> None:
        self._step = step
        self._tries = 1
        self._send_switch()
        self._arm(1)

    # -- internals: what arrives ---------------------------------------------------------------

    def _on_frame(self, frame: Frame) -> None:
        kind = frame.kind
        if kind in _TRANSFER_TYPES and self._session is not None:  # the common case first
            self._rx_transfer(frame)
        elif kind is None:
            self._ignore(frame, f"unknown frame type 0x{int(frame.type):02x}")
        elif kind is FrameType.SYN:
            self._rx_syn(frame)
        elif kind is FrameType.SYN_ACK:
            self._rx_syn_ack(frame)
        elif kind is FrameType.RST:
            self._rx_rst(frame)
        elif kind in _AUTH_TYPES:
            self._ignore(frame, "authentication is reserved; this version does not speak it")
        elif self._session is None:
            self._rx_before_session(frame)
        elif not self._session.matches(frame, self._role):
            self._ignore(frame, f"{frame.name} of another session or incarnation")
        else:
            self._alive()
            self._rx_control(frame, kind)

    def _rx_transfer(self, frame: Frame) -> None:
        assert self._session is not None
        if frame.session != self._session.id:
            self._ignore(frame, f"{frame.name} of another session")
            return
        self._alive()
        if self._allowed(Trigger.RX_TRANSFER, frame):
            was = self._state
            self._fire(Trigger.RX_TRANSFER)
            if was is State.VERIFY_WAIT:
                self._agree()
            self._events.append(TransferFrame(frame))

    def _alive(self) -> None:
        dead = self._timers.dead
        if self._state is State.ESTABLISHED and dead is not None:
            self._dead_at = self._now + dead

    def _rx_control(self, frame: Frame, kind: FrameType) -> None:
        if kind is FrameType.ACK:
            self._ignore(frame, "a duplicate ACK")
        elif kind is FrameType.SWITCH:
            self._rx_switch(frame)
        elif kind is FrameType.SWITCH_ACK:
            self._rx_switch_ack(frame)
        elif kind is FrameType.PROBE:
            self._rx_probe(frame)
        elif kind is FrameType.PROBE_ACK:
            self._rx_probe_ack(frame)
        elif kind is FrameType.VERIFIED:
            self._rx_verified(frame)
        elif kind is FrameType.KEEPALIVE:
            self._rx_keepalive(frame)
        elif kind is FrameType.FIN:
            self._rx_fin(frame)
        elif kind is FrameType.FIN_ACK:
            if self._allowed(Trigger.RX_FIN_ACK, frame):
                self._fire(Trigger.RX_FIN_ACK)
                self._events.append(Closed("closed"))
        else:
            self._ignore(frame, f"{frame.name} is not a control frame")

    def _rx_before_session(self, frame: Frame) -> None:
        """A session frame while there is no session: SYN_RCVD's candidates, or RST."""
        if self._state is State.SYN_RCVD and frame.kind in (FrameType.ACK, FrameType.SWITCH):
            candidate = self._candidate_for(frame)
            if candidate is None:
                self._ignore(frame, f"{frame.name} of no half-open session")
            elif frame.kind is FrameType.ACK:
                if self._allowed(Trigger.RX_ACK, frame):
                    self._fire(Trigger.RX_ACK)
                    self._fast = self._beats_airtime(candidate.syn_ack_once, frame)
                    self._adopt(candidate)
                    self._timer = self._now + self._timers.train_wait(self._safe)
            else:
                self._rx_switch(frame, candidate)
        elif self._state is State.LISTEN and frame.session != 0:
            self._fire(Trigger.RX_FOREIGN)
            self._send(refusal_frame(frame, RstCode.NO_SESSION, "no such session"))
            self._ignore(frame, f"{frame.name} of a session this end does not have (RST sent)")
        else:
            self._ignore(frame, f"{frame.name} before the handshake completed")

    # SYN and SYN-ACK ----------------------------------------------------------------------------

    def _evaluate_syn(self, frame: Frame) -> tuple[Capabilities, Choice] | tuple[int, str]:
        try:
            peer = decode_capabilities(frame.payload)
        except CapabilityError as e:
            return int(RstCode.BAD_CAPABILITIES), str(e)
        try:
            return peer, select(self._caps, peer, self._safe)
        except IncompatiblePeerError as e:
            return int(RstCode.NO_COMMON), str(e)

    def _rx_syn(self, frame: Frame) -> None:
        if frame.session != 0:
            self._ignore(frame, "a SYN carries session 0")
            return
        state = self._state
        if state is State.SYN_SENT:
            self._simultaneous_open(frame)
        elif state is State.LISTEN:
            result = self._evaluate_syn(frame)
            if isinstance(result[0], Capabilities):
                self._fire(Trigger.RX_SYN)
                self._add_candidate(frame, result)
            else:
                self._fire(Trigger.RX_SYN_REFUSED)
                self._refuse_syn(frame, result)
        elif state is State.SYN_RCVD:
            for candidate in self._candidates:
                if candidate.session.initiator_isn == frame.seq:
                    self._fire(Trigger.RX_SYN_DUP)
                    self._send_syn_ack(candidate, retry=True)
                    return
            result = self._evaluate_syn(frame)
            if not isinstance(result[0], Capabilities):
                self._ignore(frame, f"a SYN this end would refuse: {result[1]}")
                return
            self._fire(Trigger.RX_SYN_NEW)
            self._add_candidate(frame, result)
        else:
            self._ignore(frame, f"a SYN in state {state.name}")

    def _simultaneous_open(self, frame: Frame) -> None:
        """Both ends sent SYN: the higher ISN becomes the responder."""
        if frame.seq > self._isn:
            self._fire(Trigger.RX_SYN_HIGHER)
            self._ignore(frame, "simultaneous open: the peer's ISN is higher, it will answer")
            return
        if frame.seq == self._isn:
            self._fire(Trigger.RX_SYN_EQUAL)
            self._isn = self._new_isn()
            self._send_first_syn()
            self._arm(max(self._tries, 1))
            return
        result = self._evaluate_syn(frame)
        if not isinstance(result[0], Capabilities):
            self._fire(Trigger.RX_SYN_REFUSED)
            self._refuse_syn(frame, result)
            return
        self._fire(Trigger.RX_SYN_LOWER)
        self._role = "responder"
        self._table = RESPONDER_TRANSITIONS
        self._add_candidate(frame, result, isn=self._isn)

    def _refuse_syn(
        self, frame: Frame, result: tuple[Capabilities, Choice] | tuple[int, str]
    ) -> None:
        code, text = result
        assert isinstance(code, int) and isinstance(text, str)
        self._send(refusal_frame(frame, code, text))
        self._fail(f"refused the initiator's SYN: {text}", code)

    def _add_candidate(
        self,
        frame: Frame,
        result: tuple[Capabilities, Choice] | tuple[int, str],
        *,
        isn: int | None = None,
    ) -> None:
        peer, choice = result
        assert isinstance(peer, Capabilities) and isinstance(choice, Choice)
        self._isn = self._new_isn() if isn is None else isn
        session = Session(frame.seq, self._isn)
        candidate = _Candidate(session, peer, choice, ladder(self._caps, peer, self._safe, choice))
        self._candidates = [*self._candidates[-(_MAX_CANDIDATES - 1) :], candidate]
        self._send_syn_ack(candidate)
        self._arm(1)

    def _send_syn_ack(self, candidate: _Candidate, *, retry: bool = False) -> None:
        flags = int(Flags.RETRY) if retry else 0
        size = self._send(syn_ack_frame(candidate.session, candidate.choice, self._caps, flags))
        candidate.syn_ack_once = None if retry else (self._now, size)

    def _candidate_for(self, frame: Frame) -> _Candidate | None:
        for candidate in reversed(self._candidates):
            if candidate.session.matches(frame, "responder"):
                return candidate
        return None

    def _adopt(self, candidate: _Candidate) -> None:
        self._session = candidate.session
        self._isn = candidate.session.responder_isn
        self._peer_caps = candidate.capabilities
        self._choice = candidate.choice
        self._ladder = candidate.ladder
        self._candidates = []
        self._identified()

    def _rx_syn_ack(self, frame: Frame) -> None:
        if self._role != "initiator":
            self._ignore(frame, "a SYN-ACK to a responder")
            return
        if self._state is not State.SYN_SENT:
            session = self._session
            if (
                session is not None
                and frame.session == session.id
                and frame.seq == session.responder_isn
                and frame.ack == (session.initiator_isn + 1) & _U32
            ):
                if self._allowed(Trigger.RX_SYN_ACK_DUP, frame):
                    self._fire(Trigger.RX_SYN_ACK_DUP)
                    self._send_control(FrameType.ACK, retry=True)
            else:
                self._ignore(frame, "a SYN-ACK of another session")
            return
        session = Session(self._isn, frame.seq)
        if frame.ack != (self._isn + 1) & _U32 or frame.session != session.id:
            self._ignore(frame, "a SYN-ACK that does not answer this end's SYN")
            return
        self._session = session
        try:
            choice = Choice.decode(frame.payload[: Choice.SIZE])
            peer = decode_capabilities(frame.payload[Choice.SIZE :])
        except CapabilityError as e:
            self._refuse_syn_ack(RstCode.BAD_CAPABILITIES, str(e))
            return
        try:
            expected = select(self._caps, peer, self._safe)
        except IncompatiblePeerError as e:
            self._refuse_syn_ack(RstCode.NO_COMMON, str(e))
            return
        if choice != expected:
            self._refuse_syn_ack(
                RstCode.BAD_CHOICE,
                f"the responder chose {choice}; the selection rule gives {expected}",
            )
            return
        self._fire(Trigger.RX_SYN_ACK)
        self._fast = self._beats_airtime(self._syn_once, frame)
        self._peer_caps = peer
        self._choice = choice
        self._ladder = ladder(self._caps, peer, self._safe, choice)
        self._identified()
        self._send_control(FrameType.ACK)
        self._start_step(0)

    def _beats_airtime(self, sent_once: tuple[float, int] | None, answer: Frame) -> bool:
        """Did a frame sent once (when, its size) and this answer make their round
        trip in less time than their bytes take on a line at the safe settings
        (§9.2)? Then this line delivers faster than its rate (a pty, a USB device
        that ignores the rate, a network link): no airtime to wait for at a switch."""
        if sent_once is None:
            return False
        sent, size = sent_once
        airtime = (size + len(encode(answer))) * self._settings.char_time
        return self._now - sent < airtime

    def _refuse_syn_ack(self, code: RstCode, text: str) -> None:
        self._fire(Trigger.RX_SYN_ACK_BAD)
        self._send_control(FrameType.RST, rst_payload(code, text))
        self._fail(f"refused the responder's SYN-ACK: {text}", code)

    # training ------------------------------------------------------------------------------------

    def _rx_switch(self, frame: Frame, candidate: _Candidate | None = None) -> None:
        if self._role != "responder":
            self._ignore(frame, "a SWITCH to the initiator")
            return
        try:
            step, attempt, settings = parse_switch(frame.payload)
        except RemoteProtocolError as e:
            self._ignore(frame, f"a malformed SWITCH: {e}")
            return
        if step < self._r_step or (step == self._r_step and attempt <= self._r_attempt):
            self._ignore(frame, f"an old SWITCH (step {step}, attempt {attempt})")
            return
        rungs = candidate.ladder if candidate is not None else self._ladder
        if settings not in rungs:
            if self._allowed(Trigger.RX_SWITCH_BAD, frame):
                self._fire(Trigger.RX_SWITCH_BAD)
                if candidate is not None:
                    self._adopt(candidate)
                self._send_control(
                    FrameType.RST, rst_payload(RstCode.BAD_SWITCH, f"{settings} is no rung")
                )
                self._fail(f"the initiator asked for {settings}, which is no rung", None)
            return
        if not self._allowed(Trigger.RX_SWITCH, frame):
            return
        was = self._state
        self._fire(Trigger.RX_SWITCH)
        if candidate is not None:
            self._adopt(candidate)
        if was in (State.PROBE_WAIT, State.VERIFY_WAIT) and step != self._r_step:
            self._events.append(
                TrainingStep(
                    self._r_step,
                    self._r_settings,
                    False,
                    f"the initiator moved on to step {step}",
                )
            )
        self._r_step, self._r_attempt, self._r_settings = step, attempt, settings
        self._early_probe = None
        self._fast = self._fast or bool(frame.flags & Flags.FAST)
        size = self._send_control(FrameType.SWITCH_ACK, frame.payload, fast=self._fast)
        # switch once the SWITCH-ACK has left the line, and a guard time later; on a
        # FAST line (either end's measure) it has left when it is drained: no guard
        airtime = 0.0 if self._fast else size * self._settings.char_time
        self._timer = self._now + airtime + self._timers.guard(self._settings, fast=self._fast)

    def _rx_switch_ack(self, frame: Frame) -> None:
        if self._state is not State.SWITCH_SENT:
            self._ignore(frame, f"a SWITCH-ACK in state {self._state.name}")
            return
        try:
            step, _attempt, settings = parse_switch(frame.payload)
        except RemoteProtocolError as e:
            self._ignore(frame, f"a malformed SWITCH-ACK: {e}")
            return
        if step != self._step or settings != self._ladder[self._step]:
            self._ignore(frame, f"a SWITCH-ACK for step {step}, not {self._step}")
            return
        self._fire(Trigger.RX_SWITCH_ACK)
        # The responder's word: it follows the FAST rules of §9.2 exactly when its
        # SWITCH-ACK says so (one that does not know the flag never sets it).
        self._fast = bool(frame.flags & Flags.FAST)
        self._ack_airtime = len(encode(frame)) * self._settings.char_time
        self._timer = self._now + self._timers.guard(self._settings, fast=self._fast)

    def _rx_probe(self, frame: Frame) -> None:
        if self._role != "responder":
            self._ignore(frame, "a PROBE to the initiator")
            return
        try:
            step, round_ = parse_probe(frame.payload)
        except RemoteProtocolError as e:
            self._ignore(frame, str(e))
            return
        if step != self._r_step:
            self._ignore(frame, f"a PROBE for step {step}, not {self._r_step}")
            return
        if self._fast and self._state in (State.SWITCH_GUARD, State.SWITCH_APPLY):
            # On a FAST line the initiator, which has no guard, can probe before
            # this end has switched; nothing garbled it: take it once switched.
            self._early_probe = frame
            return
        if not self._allowed(Trigger.RX_PROBE, frame):
            return
        self._fire(Trigger.RX_PROBE)
        self._r_round = round_
        self._send_control(FrameType.PROBE_ACK, probe_payload(step, round_))
        self._arm(1)

    def _rx_probe_ack(self, frame: Frame) -> None:
        if self._role != "initiator":
            self._ignore(frame, "a PROBE-ACK to the responder")
            return
        try:
            step, round_ = parse_probe(frame.payload)
        except RemoteProtocolError as e:
            self._ignore(frame, str(e))
            return
        if step != self._step:
            self._ignore(frame, f"a PROBE-ACK for step {step}, not {self._step}")
            return
        if self._state is State.ESTABLISHED:
            self._fire(Trigger.RX_PROBE_ACK)
            self._send_control(FrameType.VERIFIED, step_payload(step), retry=True)
            return
        if self._state is not State.PROBING or round_ != self._round:
            self._ignore(frame, f"a PROBE-ACK for round {round_} in state {self._state.name}")
            return
        self._good += 1
        if self._good >= self._timers.probes_required:
            self._fire(Trigger.RX_PROBE_ACK_LAST)
            self._send_control(FrameType.VERIFIED, step_payload(step))
            self._agree()
            return
        self._fire(Trigger.RX_PROBE_ACK)
        self._round += 1
        self._send_control(FrameType.PROBE, probe_payload(step, self._round))
        self._arm(1)

    def _step_frame(self, frame: Frame) -> int | None:
        """The step a VERIFIED or KEEPALIVE names, if it is the current one."""
        try:
            step = parse_step(frame.payload)
        except RemoteProtocolError as e:
            self._ignore(frame, f"a malformed {frame.name}: {e}")
            return None
        current = self._step if self._role == "initiator" else self._r_step
        if step != current:
            self._ignore(frame, f"{frame.name} for step {step}, not {current}")
            return None
        return step

    def _rx_verified(self, frame: Frame) -> None:
        if self._step_frame(frame) is None or not self._allowed(Trigger.RX_VERIFIED, frame):
            return
        self._fire(Trigger.RX_VERIFIED)
        self._agree()

    def _rx_keepalive(self, frame: Frame) -> None:
        if self._step_frame(frame) is None or not self._allowed(Trigger.RX_KEEPALIVE, frame):
            return
        was = self._state
        self._fire(Trigger.RX_KEEPALIVE)
        if was is State.VERIFY_WAIT:
            self._agree()

    def _rx_fin(self, frame: Frame) -> None:
        if not self._allowed(Trigger.RX_FIN, frame):
            return
        was = self._state
        self._fire(Trigger.RX_FIN)
        if was is State.VERIFY_WAIT:
            self._agree()
            self._ka_due = self._dead_at = None
        self._send_control(FrameType.FIN_ACK, retry=was is State.CLOSED)
        if was is not State.CLOSED:
            self._events.append(Closed("the peer closed the link"))

    def _rx_rst(self, frame: Frame) -> None:
        state = self._state
        if self._session is not None:
            ours = frame.session == self._session.id
        elif state is State.SYN_SENT:
            ours = frame.session == 0 and frame.ack == (self._isn + 1) & _U32
        else:
            ours = any(c.session.id == frame.session for c in self._candidates)
        if not ours:
            self._ignore(frame, "a RST of another session")
            return
        if not self._allowed(Trigger.RX_RST, frame):
            return
        self._fire(Trigger.RX_RST)
        code, text = parse_rst(frame.payload)
        self._revert()
        detail = f": {text}" if text else ""
        self._events.append(Reset(f"the peer reset the link ({_code_name(code)}){detail}", code))
