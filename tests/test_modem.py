"""The modem client against emulated modems on virtual wires, and ppp's chat."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import threading
import time
from collections.abc import Iterator

import pytest

from serialhs.driver.port import Port
from serialhs.driver.settings import SerialSettings
from serialhs.errors import (
    CmeError,
    ModemBusy,
    ModemCommandError,
    ModemNoCarrier,
    ModemNoDialtone,
    ModemTimeout,
    ModemUnhealthy,
    ProfileError,
)
from serialhs.modem import client as client_mod
from serialhs.modem.client import AsyncModem, Modem, dte_command, probe
from serialhs.sim.modemsim import ModemSim, NumberBehaviour, load_sim_config

BUSY, NODIAL, NOCARRIER = "5550100", "5550101", "5550102"


@pytest.fixture
def sim() -> Iterator[ModemSim]:
    behaviours = [
        NumberBehaviour(BUSY, "busy"),
        NumberBehaviour(NODIAL, "no-dialtone"),
        NumberBehaviour(NOCARRIER, "no-carrier"),
    ]
    with ModemSim(count=2, behaviours=behaviours) as running:
        yield running


@pytest.fixture
def modems(sim: ModemSim) -> Iterator[tuple[Modem, Modem]]:
    first, second = sim.describe()
    with (
        Port(first["port"]["pty"], "115200 8N1") as pa,
        Port(second["port"]["pty"], "115200 8N1") as pb,
    ):
        a, b = Modem(pa), Modem(pb)
        a.init()
        b.init()
        yield a, b


def call(caller: Modem, callee: Modem, number: str) -> None:
    """Caller dials, callee answers on RING; both end up online."""
    result: dict[str, object] = {}
    dialer = threading.Thread(target=lambda: result.setdefault("c", caller.dial(number)))
    dialer.start()
    callee.wait_for_ring(timeout=10)
    callee.answer(timeout=30)
    dialer.join(30)
    assert caller.online and callee.online, result


def until_carrier_lost(modem: Modem, timeout: float = 10) -> bytes:
    got = b""
    deadline = time.monotonic() + timeout
    with pytest.raises(ModemNoCarrier):
        while time.monotonic() < deadline:
            got += modem.read_some(timeout=deadline - time.monotonic())
    return got


def numbers(sim: ModemSim) -> tuple[str, str]:
    first, second = sim.describe()
    return first["number"], second["number"]


# -- calls and data ---------------------------------------------------------------------


@pytest.mark.parametrize("direction", ["a calls b", "b calls a"])
def test_dial_exchange_data_both_ways_and_hang_up(sim, modems, direction):
    a, b = modems
    na, nb = numbers(sim)
    caller, callee, number = (a, b, nb) if direction == "a calls b" else (b, a, na)
    call(caller, callee, number)
    assert caller.connection is not None
    assert caller.connection.speed == 33600 and caller.connection.protocol
    payload = bytes(range(256)) * 4
    caller.write(payload)
    assert callee.read_exactly(len(payload), timeout=10) == payload
    callee.write(b"and back")
    assert caller.read_exactly(8, timeout=5) == b"and back"
    caller.hangup()  # +++ with guard time, then ATH
    until_carrier_lost(callee)
    assert caller.command("AT").ok and callee.command("AT").ok


def test_plus_plus_plus_inside_data_is_data(sim, modems):
    a, b = modems
    call(a, b, numbers(sim)[1])
    a.write(b"before+++after")  # no guard time around it
    assert b.read_exactly(14, timeout=5) == b"before+++after"
    assert a.online
    a.write(b"still online")
    assert b.read_exactly(12, timeout=5) == b"still online"
    a.hangup()


def test_escape_keeps_the_call_and_ato_returns(sim, modems):
    a, b = modems
    call(a, b, numbers(sim)[1])
    a.escape()
    assert a.command("ATI3").ok  # commands work while the call is held
    a.go_online()
    a.write(b"resumed")
    # A modem sends the escape characters on to the far end, as data.
    assert b.read_exactly(10, timeout=5) == b"+++resumed"
    a.hangup()


def test_escape_keeps_call_data_unread_past_the_bound(sim, modems, monkeypatch):
    # More call data unread than the client holds (MAX_DATA) comes in while it
    # escapes: the escape completes, as it is bounded in time, and every byte that
    # arrived is still there to read.
    monkeypatch.setattr(client_mod, "MAX_DATA", 1000)
    a, b = modems
    call(a, b, numbers(sim)[1])
    payload = bytes(range(256)) * 12  # 3072 bytes
    b.write(payload)
    time.sleep(0.5)  # all of it in a's driver before the escape pumps it in
    a.escape()
    assert not a.online and a.connection is not None  # command mode, the call held
    assert a.read_exactly(len(payload), timeout=5) == payload
    a.hangup()
    until_carrier_lost(b)


def test_hang_up_by_dtr_drop(sim, modems):
    a, b = modems
    call(a, b, numbers(sim)[1])
    b.hangup("dtr")  # &D2: dropping DTR hangs up
    until_carrier_lost(a)
    assert a.command("AT").ok and b.command("AT").ok


def test_carrier_loss_mid_call_is_reported_with_the_data_before(sim, modems):
    a, b = modems
    call(a, b, numbers(sim)[1])
    b.write(b"last words")
    b.hangup("dtr")
    assert until_carrier_lost(a) == b"last words"
    assert a.connection is None


def test_auto_answer_after_s0_rings(sim, modems):
    a, b = modems
    b.command("ATS0=1")
    result: dict[str, object] = {}
    dialer = threading.Thread(target=lambda: result.setdefault("c", a.dial(numbers(sim)[1])))
    dialer.start()
    connection = b.wait_for_connect(timeout=20)
    dialer.join(20)
    assert connection.speed == 33600 and a.online
    a.hangup()


@pytest.mark.parametrize(
    ("number", "error"),
    [(BUSY, ModemBusy), (NODIAL, ModemNoDialtone), (NOCARRIER, ModemNoCarrier)],
)
def test_failed_calls_raise_typed_errors(modems, number, error):
    a, _ = modems
    with pytest.raises(error) as info:
        a.dial(number)
    assert number in str(info.value) and info.value.command.startswith("ATD")


def test_dialling_several_numbers_tries_the_next(sim, modems):
    a, b = modems
    result: dict[str, object] = {}
    dialer = threading.Thread(
        target=lambda: result.setdefault("c", a.dial([BUSY, numbers(sim)[1]], pause=0.1))
    )
    dialer.start()
    b.wait_for_ring(timeout=20)
    b.answer()
    dialer.join(20)
    assert a.online
    a.hangup()


def test_urcs_never_mix_into_replies(sim, modems):
    a, b = modems
    dialer = threading.Thread(target=a.dial, args=(numbers(sim)[1],))
    dialer.start()
    b.wait_for_ring(timeout=10)
    reply = b.command("ATI3")  # while RINGs keep arriving
    assert all("RING" not in line for line in reply.lines)
    b.answer()
    dialer.join(20)
    a.hangup()


# -- DTE settings, probing, health ---------------------------------------------------------


def test_ipr_switches_both_ends_and_verifies(sim, modems):
    a, _ = modems
    new = a.set_dte(rate=57600)
    assert new.baudrate == 57600
    assert a.port.settings.baudrate == 57600
    assert a.command("AT").ok
    assert sim.modems[0].settings.baudrate == 57600


def test_one_dte_command_line_for_rate_format_and_flow():
    old = SerialSettings.parse("115200 8N1")
    new = SerialSettings.parse("9600 7E1 rtscts")
    assert dte_command(old, new) == "AT+IPR=9600;+ICF=5,1;+IFC=2,2"
    assert dte_command(old, old) is None


def test_rate_and_flow_switch_together(sim, modems):
    a, _ = modems
    target = SerialSettings.parse("57600 8N1 rtscts")
    assert a.set_dte(settings=target) == target
    assert a.command("AT").ok
    assert sim.modems[0].settings.baudrate == 57600
    assert sim.modems[0].settings.flow.value == "rtscts"


def test_probe_tells_an_at_port_from_a_silent_one(sim, wire):
    with Port(sim.describe()[0]["port"]["pty"], "115200 8N1") as port:
        assert probe(port)
    with Port(wire.a.pty) as silent:
        assert not probe(silent, attempts=2, timeout=0.2)


def test_a_port_answering_garbage_is_not_an_at_port(wire):
    with Port(wire.a.pty) as dte, Port(wire.b.pty) as device:
        stop = threading.Event()

        def babble() -> None:
            while not stop.is_set():
                with contextlib.suppress(Exception):
                    device.read_available()
                    device.write(b"\x00\xff\x00garbage\x00", timeout=1)
                time.sleep(0.02)

        thread = threading.Thread(target=babble)
        thread.start()
        try:
            assert not probe(dte, attempts=2, timeout=0.2)
        finally:
            stop.set()
            thread.join(5)


def test_consecutive_timeouts_mark_the_modem_unhealthy(wire):
    with Port(wire.a.pty) as port:
        modem = Modem(port, timeout=0.1, max_timeouts=2)
        with pytest.raises(ModemTimeout):
            modem.command("AT")
        assert modem.healthy is False or modem.consecutive_timeouts == 1
        with pytest.raises(ModemUnhealthy):
            modem.command("AT")
        assert not modem.healthy


# -- ppp's chat against the emulator ----------------------------------------------------------


def run_chat(pty: str, script: list[str], timeout: float = 30) -> int:
    fd = os.open(pty, os.O_RDWR | os.O_NOCTTY)
    try:
        proc = subprocess.run(
            ["/usr/sbin/chat", "-t", "10", *script],
            stdin=fd,
            stdout=fd,
            stderr=subprocess.PIPE,
            timeout=timeout,
            check=False,
        )
    finally:
        os.close(fd)
    return proc.returncode


def test_ppp_chat_dials_through_the_emulator(sim):
    first, second = sim.describe()
    with Port(second["port"]["pty"], "115200 8N1") as pb:
        b = Modem(pb)
        b.command("ATS0=1")  # the far modem answers by itself
        code = run_chat(
            first["port"]["pty"],
            [
                "ABORT",
                "BUSY",
                "ABORT",
                "NO CARRIER",
                "",
                "ATZ",
                "OK",
                f"ATDT{second['number']}",
                "CONNECT",
            ],
        )
        assert code == 0
        b.wait_for_connect(timeout=10)
        b.hangup("dtr")


def test_ppp_chat_exits_4_when_busy_is_its_first_abort(sim):
    code = run_chat(
        sim.describe()[0]["port"]["pty"],
        ["ABORT", "BUSY", "ABORT", "NO CARRIER", "", "AT", "OK", f"ATDT{BUSY}", "CONNECT"],
    )
    assert code == 4


def test_a_rejected_rate_leaves_the_port_as_it_was(modems):
    a, _ = modems
    before = a.port.settings
    with pytest.raises(ModemCommandError):
        a.set_dte(rate=1234)  # not in the modem's +IPR list: ERROR
    assert a.port.settings == before
    assert a.command("AT").ok


def test_a_cellular_modules_cme_errors_reach_the_client_typed():
    with ModemSim(count=1, profiles=("quectel_ec25",)) as sim:
        (entry,) = sim.describe()
        with Port(entry["port"]["pty"], "115200 8N1") as port:
            modem = Modem(port)
            modem.init()
            modem.command("AT+CMEE=1")
            with pytest.raises(CmeError) as numeric:
                modem.command("AT+CGDCONT=99")
            assert numeric.value.code == 50 and numeric.value.meaning == "incorrect parameters"
            modem.command("AT+CMEE=2")
            with pytest.raises(CmeError) as text:
                modem.command("AT+CGDCONT=99")
            assert text.value.code is None and text.value.meaning == "incorrect parameters"


def test_async_modem_runs_the_same_client(sim, modems):
    a, b = modems
    nb = numbers(sim)[1]

    async def main() -> bytes:
        async_a, async_b = AsyncModem(a), AsyncModem(b)
        assert (await async_a.command("AT")).ok
        dial = asyncio.ensure_future(async_a.dial(nb))
        await async_b.wait_for_ring(timeout=10)
        await async_b.answer()
        await dial
        await async_a.write(b"async")
        got = await async_b.read_exactly(5, timeout=5)  # data may come in pieces
        await async_a.hangup()
        return got

    assert asyncio.run(asyncio.wait_for(main(), 60)) == b"async"


def test_sim_config_file(tmp_path):
    config = tmp_path / "exchange.toml"
    config.write_text(
        "rate = 57600\n"
        "[[modem]]\n"
        'number = "100"\n'
        "[[modem]]\n"
        'number = "200"\n'
        'profile = "generic_hayes"\n'
        "[numbers]\n"
        '"300" = "no-answer"\n'
    )
    options = load_sim_config(config)
    assert options["numbers"] == ["100", "200"]
    assert options["profiles"] == ["v90_dialup", "generic_hayes"]
    assert options["behaviours"] == [NumberBehaviour("300", "no-answer")]
    bad = tmp_path / "bad.toml"
    bad.write_text('[numbers]\n"300" = "engaged"\n')
    with pytest.raises(ProfileError) as info:
        load_sim_config(bad)
    assert info.value.line == 2 and "engaged" in str(info.value)
