"""Autobaud: the rate search by itself, then against the emulated modem and a
serialhs peer on the virtual wire, and from the command line."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import pytest

from serialhs.driver.port import Port
from serialhs.driver.settings import SerialSettings
from serialhs.errors import ConfigError, PeerNotIdentifiedError, PeerResetError
from serialhs.modem.client import Modem
from serialhs.negotiate.autobaud import (
    COMMON_FIRST,
    WVDIALCONF_STEP_TRIES,
    Attempt,
    RateSearch,
    Trial,
    autobaud,
)
from serialhs.negotiate.capabilities import Capabilities
from serialhs.negotiate.frames import RstCode
from serialhs.negotiate.link import negotiate
from serialhs.sim.modemsim import ModemSim
from serialhs.sim.wire import Wire

# -- the search alone --------------------------------------------------------------------


def search(strategy, answers, **options) -> tuple[int | None, list[Trial]]:
    """Run a RateSearch against a far end that answers at the rates in ``answers``."""
    rates = RateSearch(strategy, **options)
    trials = []
    while (trial := rates.next_trial()) is not None:
        trials.append(trial)
        rates.record(trial.rate in answers)
    assert rates.finished
    return rates.found, trials


def test_common_first_stops_at_the_first_rate_that_answers():
    found, trials = search("common-first", {57600, 19200})
    assert found == 57600
    assert [t.rate for t in trials] == [115200, 9600, 57600]
    assert all(t.tries == 2 for t in trials)


def test_common_first_tries_every_candidate_then_gives_up():
    found, trials = search("common-first", set(), tries=1)
    assert found is None
    assert tuple(t.rate for t in trials) == COMMON_FIRST


def test_common_first_takes_its_own_candidates():
    found, trials = search("common-first", {2400}, rates=[2400, 9600])
    assert found == 2400 and [t.rate for t in trials] == [2400]


def test_wvdialconf_on_a_modem_fixed_at_one_rate():
    # One AT at 2400, 9600, 115200 until one answers, then the doubled rate
    # three times: it does not answer, so the rate that did wins.
    found, trials = search("wvdialconf", {9600})
    assert found == 9600
    assert trials == [Trial(2400, 1), Trial(9600, 1), Trial(19200, WVDIALCONF_STEP_TRIES)]


def test_wvdialconf_never_finds_a_fixed_rate_off_its_first_three():
    found, trials = search("wvdialconf", {57600})
    assert found is None
    assert [t.rate for t in trials] == [2400, 9600, 115200]


def test_wvdialconf_climbs_an_autobauding_modem_to_its_top_rate():
    # A modem that autobauds answers at every rate it can run at: wvdialconf
    # ends on the highest (76800 is rounded down to 57600, as its table does).
    up_to_230400 = {300, 1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200, 230400}
    found, trials = search("wvdialconf", up_to_230400)
    assert found == 230400
    assert [t.rate for t in trials] == [
        2400,
        4800,
        9600,
        19200,
        38400,
        57600,
        115200,
        230400,
        460800,
    ]
    # ... where common-first stops at the first rate it tries.
    assert search("common-first", up_to_230400)[0] == 115200


def test_wvdialconf_stops_at_the_top_of_its_speed_table():
    found, trials = search(
        "wvdialconf", {2400, 4800, 9600, 19200, 38400, 57600, 115200, 230400, 460800, 921600}
    )
    assert found == 460800 and trials[-1].rate == 460800


@pytest.mark.parametrize(
    ("strategy", "options", "message"),
    [
        ("fastest", {}, "strategy must be one of"),
        ("common-first", {"tries": 0}, "tries"),
        ("common-first", {"rates": []}, "at least one candidate"),
        ("common-first", {"rates": [9600, 9600]}, "repeat"),
        ("common-first", {"rates": [9600, -1]}, "positive int"),
        ("wvdialconf", {"rates": [9600]}, "own rates"),
    ],
)
def test_bad_search_arguments_are_refused(strategy, options, message):
    with pytest.raises(ConfigError, match=message):
        RateSearch(strategy, **options)


def test_record_needs_a_trial():
    with pytest.raises(ConfigError, match="next_trial"):
        RateSearch().record(True)


# -- an emulated modem ---------------------------------------------------------------------


@contextlib.contextmanager
def modem_at(rate: int) -> Iterator[str]:
    """An emulated modem whose serial port runs at ``rate`` (set with AT+IPR, as
    a modem configured earlier would be); yields the DTE's end of its wire."""
    with ModemSim(count=1) as sim:
        pty = sim.modems[0].wire.a.pty
        with Port(pty, "115200 8N1") as port:  # the emulator's power-on rate
            assert Modem(port).set_dte(rate=rate).baudrate == rate
        yield pty


@pytest.mark.parametrize("rate", [57600, 9600])
def test_finds_an_emulated_modem(rate):
    attempts: list[Attempt] = []
    with modem_at(rate) as pty, Port(pty, "19200 8N1") as port:
        result = autobaud(port, on_attempt=attempts.append)
        assert port.settings == SerialSettings(rate)  # left at the rate found
        assert Modem(port).command("AT").ok
    assert result.rate == rate and result.settings == SerialSettings(rate)
    assert result.target == "modem" and result.strategy == "common-first"
    assert result.tried == COMMON_FIRST[: COMMON_FIRST.index(rate) + 1]
    assert list(result.attempts) == attempts
    assert [a.answered for a in attempts] == [False] * (len(attempts) - 1) + [True]


def test_the_wvdialconf_strategy_on_an_emulated_modem():
    with modem_at(9600) as pty, Port(pty, "19200 8N1") as port:
        result = autobaud(port, strategy="wvdialconf")
        # 19200, the last rate tried, did not answer: the port goes back to 9600.
        assert port.settings == SerialSettings(9600)
    assert result.rate == 9600
    assert result.tried == (2400, 9600, 19200)


def test_nothing_there_is_a_clear_error_within_a_bounded_time():
    with Wire(settings="9600 8N1") as wire, Port(wire.a.pty, "19200 8N1") as port:
        start = time.monotonic()
        with pytest.raises(PeerNotIdentifiedError) as caught:
            autobaud(port, rates=[9600, 115200, 2400], tries=1, answer_timeout=0.2)
        assert time.monotonic() - start < 3
        assert port.settings == SerialSettings(19200)  # back where it was
    message = str(caught.value)
    assert wire.a.pty in message
    assert "no modem answered at any rate tried (9600, 115200, 2400)" in message


def test_the_overall_timeout_cuts_the_search_short():
    with Wire(settings="9600 8N1") as wire, Port(wire.a.pty, "9600 8N1") as port:
        start = time.monotonic()
        with pytest.raises(PeerNotIdentifiedError, match="limit cut the search short"):
            autobaud(port, tries=1, answer_timeout=0.2, timeout=0.3)
        assert time.monotonic() - start < 2


def test_bad_arguments_leave_the_port_alone():
    with Wire(settings="9600 8N1") as wire, Port(wire.a.pty, "19200 7E1") as port:
        with pytest.raises(ConfigError, match="8 data bits"):
            autobaud(port, target="peer")
        with pytest.raises(ConfigError, match="answer_timeout"):
            autobaud(port, answer_timeout=0)
        with pytest.raises(ConfigError, match="target"):
            autobaud(port, target="printer")
        assert port.settings == SerialSettings.parse("19200 7E1")


# -- a serialhs peer -----------------------------------------------------------------------


def test_finds_a_listening_serialhs_peer_and_lets_it_go():
    safe = SerialSettings(38400)
    outcome: dict[str, object] = {}

    def responder() -> None:
        with Port(wire.b.pty, safe) as port:
            try:
                negotiate(port, "responder", Capabilities.up_to(115200), safe=safe, timeout=30)
            except Exception as e:
                outcome["error"] = e
            outcome["ended"] = time.monotonic()

    with Wire(settings="9600 8N1") as wire:
        thread = threading.Thread(target=responder)
        thread.start()
        try:
            with Port(wire.a.pty, "9600 8N1") as port:
                result = autobaud(port, target="peer", tries=1)
                found_at = time.monotonic()
                assert port.settings == safe
        finally:
            thread.join(40)
    assert result.rate == 38400 and result.target == "peer"
    assert result.tried == (115200, 9600, 57600, 19200, 38400)
    # The responder is told at once (RST ABORTED), not left retransmitting SYN-ACKs.
    error = outcome["error"]
    assert isinstance(error, PeerResetError), error
    assert error.code == RstCode.ABORTED and "autobaud" in str(error)
    assert outcome["ended"] - found_at < 1.0


# -- the command line ----------------------------------------------------------------------


def serialhs(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "serialhs", "autobaud", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_the_autobaud_command_finds_a_modem():
    with modem_at(19200) as pty:
        result = serialhs(pty, "--json")
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["found"] and out["rate"] == 19200 and out["settings"] == "19200 8N1 none"
    assert out["tried"] == [115200, 9600, 57600, 19200]
    assert result.stderr == ""  # the garbage at the wrong rates is no warning here


def test_the_autobaud_command_says_why_when_nothing_answers():
    with Wire(settings="9600 8N1") as wire:
        text = serialhs(wire.a.pty, "--rates", "9600,115200", "--tries", "1")
        as_json = serialhs(wire.a.pty, "--peer", "--rates", "115200", "--tries", "1", "--json")
    assert text.returncode == 1
    assert "9600: no answer" in text.stdout
    assert "no modem answered at any rate tried (9600, 115200)" in text.stderr
    assert as_json.returncode == 1
    out = json.loads(as_json.stdout)
    assert out == {
        "found": False,
        "reason": out["reason"],
        "target": "peer",
        "strategy": "common-first",
        "tried": [115200],
    }
    assert "no serialhs peer answered" in out["reason"]
