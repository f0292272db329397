"""Finding the rate a modem or a serialhs peer is at, by probing candidate rates.

    from serialhs.driver.port import Port
    from serialhs.negotiate.autobaud import autobaud

    with Port("/dev/ttyUSB0") as port:
        found = autobaud(port)                  # a modem: "AT" answered by OK
        found = autobaud(port, target="peer")   # a serialhs peer: SYN answered by SYN-ACK
        print(found.rate, found.tried, found.elapsed)

At each candidate rate the port is switched (its framing and flow control
stay), what arrived at the previous rate is discarded, and the far end is asked
to answer:

- a **modem**: "AT" must get OK, through :func:`serialhs.modem.client.probe`
  (the AT engine; nothing is parsed here). A try waits ``answer_timeout`` plus
  the airtime of 16 characters at that rate.
- a **serialhs peer** (a responder in LISTEN, e.g. ``serialhs negotiate
  --listen``): a :class:`~serialhs.negotiate.handshake.Handshake` initiator
  with that rate as its safe setting sends SYN, retransmitted on the protocol's
  timeout (docs/protocol.md §11). Any good frame back proves the rate: the
  SYN-ACK, a RST refusing the SYN, or a frame the core ignores. The handshake is
  then not completed: the ACK and SWITCH the core queues are not sent, the core
  is aborted and only its RST ABORTED goes out, which the responder accepts for
  its half-open session (§4, §8.5) and ends with "reset by the peer" at once,
  instead of retransmitting its SYN-ACK for 10.8 s. A responder that should be
  negotiated with afterwards listens again, at the rate found.

Which rates are tried, in which order, and when the search ends is the
:class:`RateSearch`'s business (no I/O): ``"common-first"`` tries
:data:`COMMON_FIRST` (or the ``rates`` given) until one answers;
``"wvdialconf"`` does what wvdialconf's modem scan does: AT once at 2400, 9600
and 115200 until one answers, then double the rate (rounded down to its speed
table) while the doubled rate answers within 3 tries; the highest rate that
answered wins. docs/autobaud.md explains the order and compares the two.

Every wait is bounded: each try by its timeout, each rate by its tries, the
search by its finite list, and all of it by ``timeout``. When nothing answers,
the port goes back to the settings it had and
:class:`~serialhs.errors.PeerNotIdentifiedError` says which rates were tried.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from collections.abc import Callable, Sequence
from typing import Literal, TypeAlias

from serialhs.driver.port import Port
from serialhs.driver.settings import SerialSettings
from serialhs.errors import ConfigError, PeerNotIdentifiedError, ReadTimeout
from serialhs.modem.client import probe
from serialhs.negotiate.capabilities import Capabilities
from serialhs.negotiate.handshake import (
    DEFAULT_TIMERS,
    Failed,
    Handshake,
    Ignored,
    PeerIdentified,
    PeerNotIdentified,
    Reset,
)
from serialhs.negotiate.link import DRAIN_TIMEOUT, POLL, WRITE_TIMEOUT

__all__ = [
    "COMMON_FIRST",
    "STRATEGIES",
    "WVDIALCONF_SPEEDS",
    "WVDIALCONF_START",
    "Attempt",
    "AutobaudResult",
    "RateSearch",
    "Strategy",
    "Target",
    "Trial",
    "autobaud",
]

log = logging.getLogger("serialhs.negotiate")

Target: TypeAlias = Literal["modem", "peer"]
Strategy: TypeAlias = Literal["common-first", "wvdialconf"]
STRATEGIES: tuple[Strategy, ...] = ("common-first", "wvdialconf")

#: The order "common-first" tries rates in (docs/autobaud.md says why).
COMMON_FIRST: tuple[int, ...] = (
    115200,
    9600,
    57600,
    19200,
    38400,
    230400,
    460800,
    921600,
    4800,
    2400,
    1200,
    300,
)
#: wvdialconf's first probe: one AT at each until one answers.
WVDIALCONF_START: tuple[int, ...] = (2400, 9600, 115200)
#: wvdialconf's speed table: a doubled rate is rounded down to one of these.
WVDIALCONF_SPEEDS: tuple[int, ...] = (
    300,
    1200,
    2400,
    4800,
    9600,
    19200,
    38400,
    57600,
    115200,
    230400,
    460800,
)
#: wvdialconf's tries at a doubled rate before it settles for the last that answered.
WVDIALCONF_STEP_TRIES = 3
#: A modem try waits for the airtime of this many characters beyond answer_timeout
#: ("AT\r", its echo and "\r\nOK\r\n" are 12).
ANSWER_CHARS = 16
#: The text of the RST that ends a peer probe (at most 64 bytes).
ABORT_REASON = "autobaud probe: the rate is known, no negotiation follows"


# -- the search, without I/O --------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class Trial:
    """Probe ``rate`` with up to ``tries`` tries; then :meth:`RateSearch.record`."""

    rate: int
    tries: int


class RateSearch:
    """Which rate to probe next, given which answered. No I/O, no clock.

        search = RateSearch("common-first")
        while (trial := search.next_trial()) is not None:
            search.record(probe_somehow(trial.rate, trial.tries))
        search.found   # the rate, or None

    ``strategy``: "common-first" (``rates`` in order, default
    :data:`COMMON_FIRST`, each with ``tries`` tries, until one answers) or
    "wvdialconf" (wvdialconf's scan: one try at each of
    :data:`WVDIALCONF_START` until one answers, then the doubled rate rounded
    down to :data:`WVDIALCONF_SPEEDS` with :data:`WVDIALCONF_STEP_TRIES` tries
    while it answers; ``rates`` and ``tries`` do not apply).
    """

    def __init__(
        self,
        strategy: Strategy = "common-first",
        *,
        rates: Sequence[int] | None = None,
        tries: int = 2,
    ) -> None:
        if strategy not in STRATEGIES:
            raise ConfigError(f"strategy must be one of {', '.join(STRATEGIES)}, not {strategy!r}")
        if isinstance(tries, bool) or not isinstance(tries, int) or not 1 <= tries <= 100:
            raise ConfigError(f"tries must be an int 1..100, not {tries!r}")
        if strategy == "wvdialconf" and rates is not None:
            raise ConfigError("wvdialconf has its own rates: give rates with common-first only")
        candidates = tuple(COMMON_FIRST if rates is None else rates)
        if not candidates:
            raise ConfigError("autobaud needs at least one candidate rate")
        for rate in candidates:
            if isinstance(rate, bool) or not isinstance(rate, int) or rate <= 0:
                raise ConfigError(f"a candidate rate is a positive int, not {rate!r}")
        if len(set(candidates)) != len(candidates):
            raise ConfigError(f"candidate rates repeat: {candidates}")
        self.strategy: Strategy = strategy
        self.rates = candidates
        self.tries = tries
        self._index = 0  # the next of rates (common-first) or WVDIALCONF_START
        self._base: int | None = None  # wvdialconf: the highest rate that answered
        self._trial: Trial | None = None
        self._finished = False
        self._found: int | None = None

    @property
    def found(self) -> int | None:
        """The rate found, once :attr:`finished` (None if nothing answered)."""
        return self._found

    @property
    def finished(self) -> bool:
        return self._finished

    def next_trial(self) -> Trial | None:
        """The next rate to probe, or None when the search is over."""
        if self._finished:
            return None
        if self._trial is None:
            self._trial = self._choose()
        return self._trial

    def record(self, answered: bool) -> None:
        """The outcome of the trial :meth:`next_trial` gave."""
        trial = self._trial
        if trial is None:
            raise ConfigError("record() needs a trial from next_trial() first")
        self._trial = None
        if self.strategy == "common-first":
            self._index += 1
            if answered:
                self._finish(trial.rate)
        elif self._base is None:  # wvdialconf, the first probe
            self._index += 1
            if answered:
                self._base = trial.rate
        elif answered:  # wvdialconf, a doubled rate answered: try the next
            self._base = trial.rate
        else:  # a doubled rate did not answer: the last that did wins
            self._finish(self._base)

    def stop(self) -> None:
        """End the search early (a time limit): the best rate known so far, if any,
        is :attr:`found`."""
        if not self._finished:
            self._trial = None
            self._finish(self._base)

    def _finish(self, rate: int | None) -> None:
        self._finished = True
        self._found = rate

    def _choose(self) -> Trial | None:
        if self.strategy == "common-first":
            if self._index < len(self.rates):
                return Trial(self.rates[self._index], self.tries)
            self._finish(None)
            return None
        if self._base is None:
            if self._index < len(WVDIALCONF_START):
                return Trial(WVDIALCONF_START[self._index], 1)
            self._finish(None)
            return None
        doubled = max(s for s in WVDIALCONF_SPEEDS if s <= 2 * self._base)
        if doubled <= self._base:  # the top of the table
            self._finish(self._base)
            return None
        return Trial(doubled, WVDIALCONF_STEP_TRIES)


# -- results ----------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class Attempt:
    """One rate probed: ``tries`` allowed, ``answered`` or not, in ``seconds``;
    ``note`` says why a rate could not be probed at all."""

    rate: int
    answered: bool
    tries: int
    seconds: float
    note: str = ""


@dataclasses.dataclass(frozen=True, slots=True)
class AutobaudResult:
    """The rate found, with the port's settings at it, and how the search went."""

    rate: int
    settings: SerialSettings
    target: Target
    strategy: Strategy
    attempts: tuple[Attempt, ...]
    elapsed: float

    @property
    def tried(self) -> tuple[int, ...]:
        """The rates probed, in order."""
        return tuple(a.rate for a in self.attempts)


# -- the Port adapter -----------------------------------------------------------------------


def autobaud(
    port: Port,
    *,
    target: Target = "modem",
    strategy: Strategy = "common-first",
    rates: Sequence[int] | None = None,
    tries: int = 2,
    answer_timeout: float = 0.5,
    timeout: float = 60.0,
    capabilities: Capabilities | None = None,
    on_attempt: Callable[[Attempt], None] | None = None,
) -> AutobaudResult:
    """Find the rate of the modem (``target="modem"``) or serialhs peer
    (``target="peer"``) on ``port`` (open) and leave the port at it.

    ``strategy``, ``rates`` and ``tries``: see :class:`RateSearch`.
    ``answer_timeout``: how long a modem try waits for OK beyond the airtime
    of the exchange (a peer try waits the protocol's retransmission timeout).
    ``timeout``: no further rate is probed after this many seconds.
    ``capabilities``: what the peer probe's SYN offers (the minimum by
    default; the handshake is aborted anyway). ``on_attempt`` sees each rate's
    outcome as it comes.

    Raises PeerNotIdentifiedError, the port back at its settings, when nothing
    answers; ConfigError for bad arguments (before the port is touched)."""
    if target not in ("modem", "peer"):
        raise ConfigError(f"target must be 'modem' or 'peer', not {target!r}")
    for name, value in (("answer_timeout", answer_timeout), ("timeout", timeout)):
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
            or value <= 0
        ):
            raise ConfigError(f"autobaud: {name} must be a positive number of seconds")
    search = RateSearch(strategy, rates=rates, tries=tries)
    original = port.settings
    if target == "peer" and original.bytesize != 8:
        raise ConfigError(f"a serialhs peer talks with 8 data bits, not {original.framing}")
    caps = capabilities if capabilities is not None else Capabilities()
    start = time.monotonic()
    attempts: list[Attempt] = []
    cut_short = False
    while (trial := search.next_trial()) is not None:
        if time.monotonic() - start > timeout:
            cut_short = True
            search.stop()
            break
        settings = original.replace(baudrate=trial.rate)
        began = time.monotonic()
        try:
            port.reconfigure(settings)
        except ConfigError as e:  # this port cannot run at this rate
            attempt = Attempt(trial.rate, False, 0, time.monotonic() - began, str(e))
        else:
            port.reset_input()  # what arrived at the previous rate is garbage here
            if target == "modem":
                wait = answer_timeout + ANSWER_CHARS * settings.char_time
                answered = probe(port, attempts=trial.tries, timeout=wait)
            else:
                answered = _syn_answered(port, settings, caps, trial.tries)
            attempt = Attempt(trial.rate, answered, trial.tries, time.monotonic() - began)
        log.info(
            "%s: autobaud %s at %d: %s (%.2f s)",
            port.url,
            target,
            attempt.rate,
            "answered" if attempt.answered else attempt.note or "no answer",
            attempt.seconds,
        )
        attempts.append(attempt)
        if on_attempt is not None:
            on_attempt(attempt)
        search.record(attempt.answered)
    elapsed = time.monotonic() - start
    found = search.found
    if found is None:
        port.reconfigure(original)
        what = "modem" if target == "modem" else "serialhs peer"
        tried = ", ".join(str(a.rate) for a in attempts) or "none"
        cut = f" (the {timeout:g} s limit cut the search short)" if cut_short else ""
        raise PeerNotIdentifiedError(
            f"no {what} answered at any rate tried ({tried}) in {elapsed:.1f} s{cut}; "
            f"the port is back at {original}",
            port=port.url,
            hint=_HINTS[target],
        )
    settings = original.replace(baudrate=found)
    if port.settings != settings:  # wvdialconf: the last rate tried did not answer
        port.reconfigure(settings)
        port.reset_input()
    return AutobaudResult(found, settings, target, strategy, tuple(attempts), elapsed)


_HINTS: dict[Target, str] = {
    "modem": "is it powered and cabled, DTR on, and not in a call (a modem online takes "
    "no commands)? is another program holding it? try other rates or framing",
    "peer": "is the peer listening ('serialhs negotiate --listen') with the same framing? "
    "try other rates",
}


def _syn_answered(port: Port, settings: SerialSettings, caps: Capabilities, tries: int) -> bool:
    """Send SYN (``tries`` times at most) at ``settings``; True when any good frame
    comes back. A half-open session is then ended with RST ABORTED."""
    timers = dataclasses.replace(DEFAULT_TIMERS, syn_tries=tries)
    hs = Handshake("initiator", caps, now=time.monotonic(), safe=settings, timers=timers)
    while True:
        data = hs.data_to_send()
        if data:
            port.write(data, timeout=WRITE_TIMEOUT)
        timer = hs.get_timer()
        now = time.monotonic()
        wait = POLL if timer is None else max(0.0, min(POLL, timer - now))
        try:
            received = port.read_some(timeout=wait) if wait > 0 else port.read_available()
        except ReadTimeout as e:
            received = e.partial
        if received:
            hs.receive_data(received, time.monotonic())
        hs.handle_timer(time.monotonic())
        for event in hs.events():
            if isinstance(event, PeerNotIdentified):
                return False
            if isinstance(event, PeerIdentified | Ignored | Reset | Failed):
                _end_probe(port, hs)
                return True


def _end_probe(port: Port, hs: Handshake) -> None:
    """Leave the peer as it was asked: the core's ACK and SWITCH are dropped, a
    core still running is aborted (RST ABORTED when a session exists), and what
    the core has to say in the end (that RST, or its refusal of a SYN-ACK) goes out."""
    if not hs.finished:
        hs.data_to_send()  # ACK and SWITCH(0): the handshake is not to go on
        hs.abort(time.monotonic(), ABORT_REASON)
    data = hs.data_to_send()
    if data:
        port.write(data, timeout=WRITE_TIMEOUT)
        port.drain(timeout=DRAIN_TIMEOUT)
