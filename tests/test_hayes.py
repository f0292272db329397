"""The Hayes modem emulator core, driven with explicit times (no clock, no ports)."""

from __future__ import annotations

import dataclasses
import functools
import itertools
from pathlib import Path

import pytest

from serialhs.driver.lines import Line
from serialhs.driver.settings import FlowControl, Parity, SerialSettings
from serialhs.errors import SimError
from serialhs.modem.profile import ModemProfile, load_modem_profile
from serialhs.sim.hayes import (
    IGNORED,
    LINE_BUFFER_LIMIT,
    RING_ON,
    RING_PERIOD,
    TRANSITIONS,
    Answer,
    CallResult,
    Dial,
    Drive,
    Event,
    Hangup,
    HayesModem,
    Input,
    LinkOffer,
    LinkParams,
    SetUart,
    State,
    ToDte,
    ToLine,
    negotiate_link,
    transition_rows,
)

REPO_CONFIGS = Path(__file__).resolve().parent.parent / "hw_configs"
SHIPPED = ("generic_hayes", "v90_dialup", "quectel_ec25", "simcom_sim7600")
V34 = LinkParams("V.34", 33600, 33600, "LAPM", "V42BIS")


@functools.cache
def profile(name: str) -> ModemProfile:
    return load_modem_profile(name, [REPO_CONFIGS])


def text(events: list[Event]) -> bytes:
    return b"".join(e.data for e in events if isinstance(e, ToDte))


def to_line(events: list[Event]) -> bytes:
    return b"".join(e.data for e in events if isinstance(e, ToLine))


def only(events: list[Event], kind: type) -> list[Event]:
    return [e for e in events if isinstance(e, kind)]


class Rig:
    """A modem and a clock that only moves when the test says so."""

    def __init__(self, which: str | ModemProfile = "v90_dialup", *, now: float = 0.0) -> None:
        p = profile(which) if isinstance(which, str) else which
        self.modem = HayesModem(p, number="5550001", now=now)
        self.start = self.modem.events()
        self.now = now

    def send(self, data: bytes | str, at: float | None = None) -> list[Event]:
        if at is not None:
            self.now = at
        raw = data.encode() if isinstance(data, str) else data
        self.modem.from_dte(raw, self.now)
        return self.modem.events()

    def cmd(self, line: str, at: float | None = None) -> bytes:
        return text(self.send(line + "\r", at))

    def tick(self, at: float) -> list[Event]:
        self.now = at
        self.modem.handle_timer(at)
        return self.modem.events()

    def online(self, link: LinkParams = V34, at: float = 1.0) -> list[Event]:
        """Dial and get answered at ``at``; returns the events of the answer."""
        self.send("ATDT5551234\r", at - 0.5)
        self.now = at
        self.modem.call_answered(link, at)
        return self.modem.events()


def quiet_rig(which: str | ModemProfile = "v90_dialup") -> Rig:
    rig = Rig(which)
    rig.cmd("ATE0")
    return rig


# --- start-up, echo and result formats ------------------------------------------------


def test_start_drives_the_dte_inputs() -> None:
    rig = Rig("v90_dialup")
    assert rig.start == [
        Drive(Line.DSR, True),
        Drive(Line.CTS, True),
        Drive(Line.DCD, False),
        Drive(Line.RI, False),
    ]
    assert rig.modem.state is State.IDLE and not rig.modem.online and not rig.modem.busy
    assert rig.modem.get_timer() is None
    # generic_hayes leaves DCD on (&C0 factory setting)
    assert Drive(Line.DCD, True) in Rig("generic_hayes").start


@pytest.mark.parametrize("name", SHIPPED)
def test_every_profile_accepts_its_init_strings(name: str) -> None:
    rig = Rig(name)
    for line in profile(name).init:
        out = rig.cmd(line)
        assert out.endswith(b"\r\nOK\r\n"), (line, out)
    assert rig.cmd("AT").endswith(b"OK\r\n")


@pytest.mark.parametrize("name", ["v90_dialup", "quectel_ec25", "simcom_sim7600"])
def test_what_real_dialers_send(name: str) -> None:
    rig = Rig(name)
    assert text(rig.send(b"\r")) == b"\r"  # minicom starts with a bare CR
    lines = (
        "AT S7=45 S0=0 L1 V1 X4 &c1 E1 Q0",  # minicom's default init string
        "ATZ",  # chat scripts and wvdial
        "ATQ0 V1 E1 S0=0 &C1 &D2 +FCLASS=0",  # wvdial's Init2
        "ATE0",
        "AT+GCAP",  # ModemManager's first probes
        "ATI",
    )
    for line in lines:
        assert rig.cmd(line).endswith(b"\r\nOK\r\n"), line


def test_spaces_do_not_count_against_the_length() -> None:
    rig = quiet_rig("generic_hayes")  # 40 characters after AT
    assert rig.cmd("AT" + " Q0" * 20) == b"\r\nOK\r\n"
    assert rig.cmd("AT" + "Q0" * 20 + "V") == b"\r\nERROR\r\n"


def test_echo_and_e0() -> None:
    rig = Rig()
    assert rig.cmd("AT") == b"AT\r\r\nOK\r\n"
    assert rig.cmd("ATE0") == b"ATE0\r\r\nOK\r\n"  # echoed as it came in
    assert rig.cmd("AT") == b"\r\nOK\r\n"
    assert rig.modem.settings["E"] == 0


def test_prefix_case_and_repeat() -> None:
    rig = quiet_rig()
    assert rig.cmd("at") == b"\r\nOK\r\n"
    assert rig.cmd("aT") == b"\r\nOK\r\n"
    assert rig.cmd("ati3") == b"\r\nU.S. Robotics 56K FAX EXT V6.0.0\r\n\r\nOK\r\n"
    # A/ repeats the last line at once, without CR
    assert text(rig.send("A/")) == b"\r\nU.S. Robotics 56K FAX EXT V6.0.0\r\n\r\nOK\r\n"


def test_v0_numeric_results() -> None:
    rig = quiet_rig()
    assert rig.cmd("ATV0") == b"0\r"
    assert rig.cmd("ATJJ") == b"4\r"
    assert rig.cmd("ATI3") == b"U.S. Robotics 56K FAX EXT V6.0.0\r\n0\r"
    assert rig.cmd("ATV1") == b"\r\nOK\r\n"


def test_q1_suppresses_results_not_information() -> None:
    rig = quiet_rig()
    assert rig.cmd("ATQ1") == b""
    assert rig.cmd("ATI0") == b"\r\n5601\r\n"
    assert rig.cmd("ATFOO") == b""
    assert rig.cmd("ATQ0") == b"\r\nOK\r\n"


def test_concatenated_basic_commands() -> None:
    rig = Rig()
    out = rig.cmd("ATE0V1Q0X3W0&C0&D1&K4&S1S0=2")
    assert out.endswith(b"\r\nOK\r\n")
    assert dict(rig.modem.settings) == {
        "E": 0,
        "V": 1,
        "Q": 0,
        "X": 3,
        "W": 0,
        "&C": 0,
        "&D": 1,
        "&K": 4,
        "&S": 1,
    }
    assert rig.modem.s_registers[0] == 2


def test_spaces_and_backspace_editing() -> None:
    rig = quiet_rig()
    assert rig.cmd("AT E0 V 1") == b"\r\nOK\r\n"
    # "ATX" + BS -> "AT", then "I0": ATI0
    assert text(rig.send(b"ATX\x08I0\r")) == b"\r\n5601\r\n\r\nOK\r\n"
    # a backspace never deletes the AT
    assert text(rig.send(b"AT\x08\x08\x08\r")) == b"\r\nOK\r\n"


def test_backspace_is_echoed_as_received() -> None:
    rig = Rig()
    assert text(rig.send(b"ATX\x08\r")) == b"ATX\x08\r\r\nOK\r\n"


# --- S-registers ----------------------------------------------------------------------


def test_s_register_set_and_query() -> None:
    rig = quiet_rig()
    assert rig.cmd("ATS0=2") == b"\r\nOK\r\n"
    assert rig.cmd("ATS0?") == b"\r\n002\r\n\r\nOK\r\n"
    assert rig.cmd("ATS7?S12?") == b"\r\n060\r\n\r\n050\r\n\r\nOK\r\n"
    # select with Sn, then ? and = act on it
    assert rig.cmd("ATS8") == b"\r\nOK\r\n"
    assert rig.cmd("AT=5") == b"\r\nOK\r\n"
    assert rig.cmd("AT?") == b"\r\n005\r\n\r\nOK\r\n"
    assert rig.modem.s_registers[8] == 5


@pytest.mark.parametrize("line", ["ATS99=1", "ATS3=200", "ATS7=256", "ATS=1", "ATS0=2E7"])
def test_bad_s_register_access_is_an_error(line: str) -> None:
    rig = quiet_rig()
    assert rig.cmd(line).endswith(b"\r\nERROR\r\n")


def test_s3_and_s4_change_the_format() -> None:
    rig = quiet_rig()
    assert rig.cmd("ATS4=0") == b"\r\x00OK\r\x00"  # S4 now NUL
    rig.cmd("ATS4=10")
    # S3 = '!' terminates lines instead of CR
    assert text(rig.send("ATS3=33\r")) == b"!\nOK!\n"  # the result already uses it
    assert text(rig.send("AT!")) == b"!\nOK!\n"


# --- identity and capabilities --------------------------------------------------------


def test_ati_answers_from_the_profile() -> None:
    rig = quiet_rig()
    assert rig.cmd("ATI") == b"\r\n5601\r\n\r\nOK\r\n"
    assert rig.cmd("ATI2") == b"\r\nOK\r\n\r\nOK\r\n"
    assert rig.cmd("ATI9") == b"\r\nERROR\r\n"
    ec25 = quiet_rig("quectel_ec25")
    assert ec25.cmd("ATI") == b"\r\nQuectel\r\nEC25\r\nRevision: EC25EFAR06A03M4G\r\n\r\nOK\r\n"


def test_identity_commands() -> None:
    rig = quiet_rig()
    assert rig.cmd("AT+GMI") == b"\r\nU.S. Robotics\r\n\r\nOK\r\n"
    assert rig.cmd("AT+GMM;+GMR") == b"\r\n56K FAX EXT\r\n\r\n6.0.0\r\n\r\nOK\r\n"
    assert rig.cmd("AT+GMI=?") == b"\r\nOK\r\n"
    assert rig.cmd("AT+CGMI") == b"\r\nERROR\r\n"  # a dial-up modem has no 07.07 commands
    sim = quiet_rig("simcom_sim7600")
    assert sim.cmd("AT+CGMI") == b"\r\nSIMCOM INCORPORATED\r\n\r\nOK\r\n"
    assert sim.cmd("AT+CGMR") == b"\r\n+CGMR: SIM7600M22_V2.0\r\n\r\nOK\r\n"  # profile override
    assert sim.cmd("AT+GMR") == b"\r\nSIM7600M22_V2.0\r\n\r\nOK\r\n"


def test_gcap() -> None:
    assert quiet_rig("quectel_ec25").cmd("AT+GCAP") == b"\r\n+GCAP: +CGSM\r\n\r\nOK\r\n"
    assert quiet_rig("v90_dialup").cmd("AT+GCAP") == b"\r\n+GCAP: +FCLASS\r\n\r\nOK\r\n"
    # a pre-V.250 modem knows no extended commands at all
    assert quiet_rig("generic_hayes").cmd("AT+GCAP") == b"\r\nERROR\r\n"


def test_cellular_status_answers() -> None:
    rig = quiet_rig("quectel_ec25")
    assert rig.cmd("AT+CSQ") == b"\r\n+CSQ: 24,99\r\n\r\nOK\r\n"
    assert rig.cmd("AT+CREG?") == b"\r\n+CREG: 0,1\r\n\r\nOK\r\n"
    assert rig.cmd("AT+CPIN?") == b"\r\n+CPIN: READY\r\n\r\nOK\r\n"
    assert rig.cmd("AT+CMEE=2;+CMEE?") == b"\r\n+CMEE: 2\r\n\r\nOK\r\n"
    assert rig.cmd('AT+CGDCONT=1,"IP","internet"') == b"\r\nOK\r\n"
    assert rig.cmd("AT+CGDCONT?") == b'\r\n+CGDCONT: 1,"IP","internet"\r\n\r\nOK\r\n'


def test_cmee_chooses_how_a_cellular_module_reports_a_refused_command() -> None:
    rig = quiet_rig("quectel_ec25")
    assert rig.cmd("AT+CGDCONT=99") == b"\r\nERROR\r\n"  # +CMEE=0, the default
    assert rig.cmd("AT+CMEE=1") == b"\r\nOK\r\n"
    assert rig.cmd("AT+CGDCONT=99") == b"\r\n+CME ERROR: 50\r\n"  # wrong parameters
    assert rig.cmd("AT+CGDCONT") == b"\r\n+CME ERROR: 4\r\n"  # no such operation
    assert rig.cmd("AT+CMEE=7") == b"\r\n+CME ERROR: 50\r\n"
    assert rig.cmd("AT+CFOO") == b"\r\nERROR\r\n"  # unknown: a syntax error
    assert rig.cmd("ATE0+CGDCONT=0;+CSQ") == b"\r\n+CME ERROR: 50\r\n"  # the line stops
    assert rig.cmd("AT+CMEE=2") == b"\r\nOK\r\n"
    assert rig.cmd("AT+CGDCONT=99") == b"\r\n+CME ERROR: incorrect parameters\r\n"
    assert rig.cmd("ATV0+CGDCONT=99") == b"+CME ERROR: incorrect parameters\r\n"
    assert rig.cmd("ATV1+CMEE=0;+CGDCONT=99") == b"\r\nERROR\r\n"
    # a dial-up modem has no +CMEE: its refusals stay ERROR
    dialup = quiet_rig("v90_dialup")
    assert dialup.cmd("AT+CMEE=1") == b"\r\nERROR\r\n"
    assert dialup.cmd("AT+IPR=14400") == b"\r\nERROR\r\n"


def test_v_and_amp_v_report() -> None:
    out = quiet_rig().cmd("AT&V")
    assert b"E0 V1 Q0 X4 W0 &C1 &D2 &K3 &S0" in out
    assert b"+IPR=115200 +ICF=3,3 +IFC=2,2" in out
    assert b"S07=060" in out and out.endswith(b"\r\nOK\r\n")


# --- unknown commands and bad input ---------------------------------------------------


def test_unknown_commands() -> None:
    rig = quiet_rig()
    assert rig.cmd("ATJ") == b"\r\nERROR\r\n"
    assert rig.cmd("AT&Q5") == b"\r\nERROR\r\n"
    assert rig.cmd("ATE2") == b"\r\nERROR\r\n"  # known command, value out of range
    assert rig.cmd("AT+FOO=1") == b"\r\nERROR\r\n"
    assert rig.cmd("AT&H1&R2") == b"\r\nOK\r\n"  # the profile's vendor commands
    # the commands before the error have taken effect
    assert rig.cmd("ATV0J") == b"4\r"


def test_unknown_command_ok_clone() -> None:
    clone = dataclasses.replace(profile("v90_dialup"), unknown_command="OK")
    rig = quiet_rig(clone)
    assert rig.cmd("ATJ7") == b"\r\nOK\r\n"
    assert rig.cmd("ATJ7I0") == b"\r\n5601\r\n\r\nOK\r\n"  # skipped, the line goes on
    assert rig.cmd("AT+FOO") == b"\r\nERROR\r\n"  # unknown extended commands still fail
    assert rig.cmd("ATE5") == b"\r\nERROR\r\n"  # and so do bad values


def test_over_long_command_line() -> None:
    rig = quiet_rig()  # 58 characters after AT
    assert rig.cmd("AT" + "Q0" * 29) == b"\r\nOK\r\n"
    assert rig.cmd("AT" + "Q0" * 29 + "V") == b"\r\nERROR\r\n"
    assert rig.cmd("AT") == b"\r\nOK\r\n"
    hayes = quiet_rig("generic_hayes")  # 40 characters
    assert hayes.cmd("AT" + "E0" * 21) == b"\r\nERROR\r\n"


def test_binary_garbage_in_command_mode() -> None:
    rig = Rig()
    garbage = bytes(range(256)) * 3 + b"\xff\x00AT\x00\x1b\xfe" * 50
    rig.send(garbage, 1.0)
    rig.send(b"\r", 1.1)  # ends whatever line the garbage started
    assert rig.modem.state is State.IDLE
    assert rig.cmd("AT", 1.2) == b"AT\r\r\nOK\r\n"
    assert only(rig.send(bytes(range(256)), 1.3), Dial) == []


def test_line_data_while_idle_is_dropped() -> None:
    rig = Rig()
    rig.modem.from_line(b"late bytes", 1.0)
    assert rig.modem.events() == []


def test_commands_with_parity_bits_set() -> None:
    rig = quiet_rig()
    assert text(rig.send(bytes(b | 0x80 for b in b"ATI0\r"))) == b"\r\n5601\r\n\r\nOK\r\n"


# --- serial settings (+IPR, +ICF, +IFC, &K) -------------------------------------------


def test_ipr_test_and_read() -> None:
    rig = quiet_rig()
    assert rig.cmd("AT+IPR=?") == (
        b"\r\n+IPR: (0,300,1200,2400,4800,9600,19200,38400,57600,115200,230400)\r\n\r\nOK\r\n"
    )
    assert rig.cmd("AT+IPR?") == b"\r\n+IPR: 115200\r\n\r\nOK\r\n"
    ec25 = quiet_rig("quectel_ec25")
    assert ec25.cmd("AT+IPR=?").startswith(b"\r\n+IPR: (),(4800,9600,")


def test_ipr_set_answers_ok_then_changes_the_uart() -> None:
    rig = quiet_rig()
    events = rig.send("AT+IPR=9600\r")
    assert events == [ToDte(b"\r\nOK\r\n"), SetUart(SerialSettings(9600, flow=FlowControl.RTSCTS))]
    assert rig.modem.uart.baudrate == 9600
    assert rig.cmd("AT+IPR?") == b"\r\n+IPR: 9600\r\n\r\nOK\r\n"
    # the same rate again changes nothing
    assert only(rig.send("AT+IPR=9600\r"), SetUart) == []


@pytest.mark.parametrize("value", ["14400", "1", "fast", "", "9600,1"])
def test_ipr_bad_rates(value: str) -> None:
    rig = quiet_rig()
    events = rig.send(f"AT+IPR={value}\r")
    assert text(events) == b"\r\nERROR\r\n"
    assert only(events, SetUart) == []


def test_ipr_autobaud() -> None:
    rig = quiet_rig()
    events = rig.send("AT+IPR=0\r")
    assert text(events) == b"\r\nOK\r\n" and only(events, SetUart) == []
    assert rig.modem.autobaud and rig.modem.uart.baudrate == 115200
    assert quiet_rig("quectel_ec25").cmd("AT+IPR=0") == b"\r\nERROR\r\n"


def test_a_power_on_rate_is_the_stored_ipr() -> None:
    # rate= is what AT+IPR=<rate>&W would have left in the modem's profile: the
    # UART starts there, and ATZ and AT&F keep it (they keep rate and framing)
    modem = HayesModem(profile("v90_dialup"), number="5550001", rate=57600)
    assert modem.uart == SerialSettings(57600, flow=FlowControl.RTSCTS)
    modem.from_dte(b"AT+IPR?\r", 0.0)
    assert b"+IPR: 57600" in text(modem.events())
    for at, command in enumerate((b"ATZ\r", b"AT&F\r"), start=1):
        modem.from_dte(command, float(at))
        assert not only(modem.events(), SetUart)
        assert modem.uart.baudrate == 57600
    with pytest.raises(SimError, match="cannot run its UART at 14400"):
        HayesModem(profile("v90_dialup"), number="5550001", rate=14400)


def test_icf_and_ifc() -> None:
    rig = quiet_rig()
    events = rig.send("AT+ICF=5,1;+IFC=0,0\r")
    assert events[0] == ToDte(b"\r\nOK\r\n")
    assert events[1:] == [SetUart(SerialSettings(115200, 7, Parity.EVEN, flow=FlowControl.NONE))]
    assert rig.cmd("AT+ICF?;+IFC?") == b"\r\n+ICF: 5,1\r\n\r\n+IFC: 0,0\r\n\r\nOK\r\n"
    assert rig.cmd("AT+ICF=?") == b"\r\n+ICF: (0-6),(0-3)\r\n\r\nOK\r\n"
    assert rig.cmd("AT+IFC=3,0") == b"\r\nERROR\r\n"
    assert only(rig.send("AT&K4\r"), SetUart) == [
        SetUart(SerialSettings(115200, 7, Parity.EVEN, flow=FlowControl.XONXOFF))
    ]


def test_one_set_uart_per_command_line() -> None:
    rig = quiet_rig()
    events = rig.send("AT+IPR=57600;+IFC=0,0;&K3\r")
    assert events[0] == ToDte(b"\r\nOK\r\n")
    assert [type(e) for e in events] == [ToDte, SetUart]
    assert events[1] == SetUart(SerialSettings(57600, flow=FlowControl.RTSCTS))


def test_z_and_amp_f_restore_flow_but_keep_the_rate() -> None:
    rig = quiet_rig()
    assert rig.cmd("AT+IPR=38400&K0") == b"\r\nERROR\r\n"  # args run to ";"
    rig.send("AT+IPR=38400;&K0\r")
    events = rig.send("ATZ\r")
    assert text(events) == b"\r\nOK\r\n"  # echoed (or not) as it came in, under E0
    assert only(events, SetUart) == [SetUart(SerialSettings(38400, flow=FlowControl.RTSCTS))]


def test_amp_w_stores_what_z_restores() -> None:
    rig = quiet_rig()
    rig.cmd("ATS0=3X1&W")
    rig.cmd("ATS0=0X4")
    rig.cmd("ATZ")
    assert rig.modem.s_registers[0] == 3 and rig.modem.settings["X"] == 1
    rig.cmd("AT&F")
    assert rig.modem.s_registers[0] == 0 and rig.modem.settings["X"] == 4


# --- dialling -------------------------------------------------------------------------


def test_dial_then_answered_goes_online() -> None:
    rig = quiet_rig()
    events = rig.send("ATDT555-1234\r", 1.0)
    dial = only(events, Dial)
    assert dial == [
        Dial(
            number="5551234",
            offer=LinkOffer.from_profile(profile("v90_dialup")),
            dial_string="T555-1234",
        )
    ]
    assert text(events) == b""  # nothing until the exchange answers
    assert rig.modem.state is State.DIALING and rig.modem.off_hook
    assert rig.modem.get_timer() == 1.0 + 60  # S7
    rig.modem.call_answered(V34, 3.0)
    events = rig.modem.events()
    assert events == [Drive(Line.DCD, True), ToDte(b"\r\nCONNECT 33600/LAPM/V42BIS\r\n")]
    assert rig.modem.online and rig.modem.link == V34
    assert rig.modem.get_timer() is None


@pytest.mark.parametrize(
    ("setup", "expected"),
    [
        ("ATX0", b"\r\nCONNECT\r\n"),
        ("ATX1", b"\r\nCONNECT 33600/LAPM/V42BIS\r\n"),
        ("ATW2", b"\r\nCONNECT 115200\r\n"),
        (
            "ATW1",
            b"\r\nCARRIER 33600\r\n\r\nPROTOCOL: LAP-M\r\n\r\nCOMPRESSION: V.42BIS\r\n"
            b"\r\nCONNECT 115200\r\n",
        ),
        ("ATV0", b"84\r"),
        ("ATV0X0", b"1\r"),
        ("ATV0W1", b"19\r"),
        ("ATQ1", b""),
    ],
)
def test_connect_text_per_x_w_v(setup: str, expected: bytes) -> None:
    rig = quiet_rig()
    rig.cmd(setup)
    assert text(rig.online()) == expected


def test_connect_styles() -> None:
    plain = dataclasses.replace(profile("v90_dialup"), connect_style="plain")
    arq = dataclasses.replace(profile("v90_dialup"), connect_style="arq")
    assert text(quiet_rig(plain).online()) == b"\r\nCONNECT 33600\r\n"
    assert text(quiet_rig(arq).online()) == b"\r\nCONNECT 33600/ARQ\r\n"
    no_ec = LinkParams("V.22bis", 2400, 2400)
    assert text(quiet_rig().online(no_ec)) == b"\r\nCONNECT 2400\r\n"
    assert text(quiet_rig("generic_hayes").online(no_ec)) == b"\r\nCONNECT 2400\r\n"


def test_dial_modifiers() -> None:
    rig = quiet_rig()
    rig.cmd("ATS8=3")
    (dial,) = only(rig.send("ATDP9,,W555 1234@\r", 2.0), Dial)
    assert isinstance(dial, Dial)
    assert dial.number == "95551234" and dial.pulse and dial.dial_time == 6.0
    assert rig.modem.get_timer() == 2.0 + 6.0 + 60


def test_dial_a_name_and_redial() -> None:
    rig = quiet_rig()
    (dial,) = only(rig.send("ATDTbbs.example.com:23\r", 1.0), Dial)
    assert isinstance(dial, Dial) and dial.number == "BBS.EXAMPLE.COM:23"
    rig.modem.call_failed(CallResult.BUSY, 2.0)
    rig.modem.events()
    (again,) = only(rig.send("ATDL\r", 3.0), Dial)
    assert isinstance(again, Dial) and again.number == dial.number


def test_empty_dial_is_an_error() -> None:
    assert quiet_rig().cmd("ATDT") == b"\r\nERROR\r\n"


def test_dial_times_out_after_s7() -> None:
    rig = quiet_rig()
    rig.cmd("ATS7=10")
    rig.send("ATD5551234\r", 1.0)
    assert rig.tick(10.9) == []
    events = rig.tick(11.0)
    assert events == [Hangup(), ToDte(b"\r\nNO CARRIER\r\n")]
    assert rig.modem.state is State.IDLE and not rig.modem.off_hook


@pytest.mark.parametrize(
    ("x", "reason", "expected"),
    [
        (4, CallResult.BUSY, b"BUSY"),
        (3, CallResult.BUSY, b"BUSY"),
        (2, CallResult.BUSY, b"NO CARRIER"),
        (0, CallResult.BUSY, b"NO CARRIER"),
        (4, CallResult.NO_DIALTONE, b"NO DIALTONE"),
        (2, CallResult.NO_DIALTONE, b"NO DIALTONE"),
        (3, CallResult.NO_DIALTONE, b"NO CARRIER"),
        (4, CallResult.NO_ANSWER, b"NO ANSWER"),
        (0, CallResult.NO_ANSWER, b"NO CARRIER"),
        (4, CallResult.NO_CARRIER, b"NO CARRIER"),
    ],
)
def test_call_failed_results(x: int, reason: CallResult, expected: bytes) -> None:
    rig = quiet_rig()
    rig.cmd(f"ATX{x}")
    rig.send("ATD5551234\r", 1.0)
    rig.modem.call_failed(reason, 2.0)
    events = rig.modem.events()
    assert events == [ToDte(b"\r\n" + expected + b"\r\n")]  # no Hangup: the exchange knows
    assert rig.modem.state is State.IDLE


def test_busy_numeric() -> None:
    rig = quiet_rig()
    rig.cmd("ATV0")
    rig.send("ATD5551234\r", 1.0)
    rig.modem.call_failed(CallResult.BUSY, 2.0)
    assert text(rig.modem.events()) == b"7\r"


def test_a_keypress_aborts_the_dial() -> None:
    rig = quiet_rig()
    rig.send("ATD5551234\r", 1.0)
    assert rig.send(b"\n", 1.1) == []  # the LF after a CR does not abort
    events = rig.send(b"x", 2.0)
    assert events == [Hangup(), ToDte(b"\r\nNO CARRIER\r\n")]
    assert rig.modem.state is State.IDLE
    rig.modem.call_answered(V34, 3.0)  # too late: dropped
    assert rig.modem.events() == [] and rig.modem.state is State.IDLE


def test_dial_with_semicolon_stays_in_command_mode() -> None:
    rig = quiet_rig()
    events = rig.send("ATD5551234;\r", 1.0)
    (dial,) = only(events, Dial)
    assert isinstance(dial, Dial) and dial.return_to_command
    assert text(events) == b"\r\nOK\r\n"
    assert rig.modem.state is State.ONLINE_COMMAND
    assert rig.cmd("ATO") == b"\r\nNO CARRIER\r\n"  # not answered yet
    rig.modem.call_answered(V34, 2.0)
    assert rig.modem.events() == []
    assert text(rig.send("ATO\r", 3.0)) == b"\r\nCONNECT 33600/LAPM/V42BIS\r\n"
    assert rig.modem.online


def test_commands_after_d_are_ignored() -> None:
    rig = quiet_rig()
    rig.send("ATD5551234E1\r", 1.0)
    assert rig.modem.settings["E"] == 0  # "E1" was part of the dial string
    rig.modem.call_failed(CallResult.NO_CARRIER, 2.0)
    rig.modem.events()
    rig.send("ATD5551234;E1\r", 3.0)
    assert rig.modem.settings["E"] == 1  # after ';' the line goes on


# --- ringing and answering ------------------------------------------------------------


def test_ring_cadence() -> None:
    rig = quiet_rig()
    rig.modem.ring("5559999", 10.0)
    assert rig.modem.events() == [Drive(Line.RI, True), ToDte(b"\r\nRING\r\n")]
    assert rig.modem.busy and rig.modem.state is State.RINGING
    assert rig.modem.get_timer() == 10.0 + RING_ON
    assert rig.tick(10.0 + RING_ON - 0.01) == []
    assert rig.tick(10.0 + RING_ON) == [Drive(Line.RI, False)]
    assert rig.modem.get_timer() == 10.0 + RING_PERIOD
    assert rig.tick(10.0 + RING_PERIOD) == [Drive(Line.RI, True), ToDte(b"\r\nRING\r\n")]
    assert rig.modem.s_registers[1] == 2
    # the caller gives up: RI off, no result code
    rig.modem.remote_hangup(17.0)
    assert rig.modem.events() == [Drive(Line.RI, False)]
    assert rig.modem.state is State.IDLE and rig.modem.get_timer() is None


def test_late_handle_timer_plays_every_ring_in_order() -> None:
    rig = quiet_rig()
    rig.modem.ring("5559999", 0.0)
    rig.modem.events()
    events = rig.tick(3 * RING_PERIOD + 0.5)
    assert text(events) == b"\r\nRING\r\n" * 3
    assert [e.state for e in events if isinstance(e, Drive)] == [False, True] * 3
    assert rig.modem.s_registers[1] == 4


def test_ring_numeric_and_commands_while_ringing() -> None:
    rig = quiet_rig()
    rig.cmd("ATV0")
    rig.modem.ring("5559999", 1.0)
    assert text(rig.modem.events()) == b"2\r"
    assert rig.cmd("ATI0", 1.5) == b"5601\r\n0\r"
    assert rig.cmd("ATD5551234", 1.6) == b"6\r"  # off hook answers the line: no dial tone
    assert rig.modem.state is State.RINGING


def test_auto_answer_after_s0_rings() -> None:
    rig = quiet_rig()
    rig.cmd("ATS0=2")
    rig.modem.ring("5559999", 0.0)
    assert only(rig.modem.events(), Answer) == []
    events = rig.tick(RING_PERIOD)
    assert events == [
        Drive(Line.RI, False),
        Drive(Line.RI, True),
        ToDte(b"\r\nRING\r\n"),
        Drive(Line.RI, False),
        Answer("5559999"),
    ]
    assert rig.modem.state is State.ANSWERING
    # the answering modem reports the rate it receives at
    link = LinkParams("V.90", 56000, 33600, "LAPM", "V42BIS")
    rig.modem.call_answered(link, RING_PERIOD + 1)
    assert rig.modem.events() == [
        Drive(Line.DCD, True),
        ToDte(b"\r\nCONNECT 33600/LAPM/V42BIS\r\n"),
    ]


def test_no_auto_answer_with_dtr_off() -> None:
    rig = quiet_rig()
    rig.cmd("ATS0=1")
    rig.modem.dte_lines(dtr=False, rts=True, now=0.5)
    rig.modem.ring("5559999", 1.0)
    assert only(rig.modem.events(), Answer) == []


def test_ata_answers_and_times_out() -> None:
    rig = quiet_rig()
    rig.modem.ring("5559999", 1.0)
    rig.modem.events()
    events = rig.send("ATA\r", 2.0)
    assert events == [Drive(Line.RI, False), Answer("5559999")]
    assert rig.modem.get_timer() == 2.0 + 60
    assert rig.tick(62.0) == [Hangup(), ToDte(b"\r\nNO CARRIER\r\n")]
    assert rig.modem.state is State.IDLE


def test_ata_with_nothing_ringing() -> None:
    rig = quiet_rig()
    assert rig.cmd("ATA") == b"\r\nNO CARRIER\r\n"
    assert only(rig.send("ATA\r"), Answer) == []


def test_ring_while_busy_is_ignored() -> None:
    rig = quiet_rig()
    rig.online()
    rig.modem.ring("5559999", 2.0)
    assert rig.modem.events() == [] and rig.modem.online


# --- data mode and the +++ escape -----------------------------------------------------


def test_data_passes_both_ways() -> None:
    rig = quiet_rig()
    rig.online(at=1.0)
    assert rig.send(b"hello ATH\r", 1.5) == [ToLine(b"hello ATH\r")]
    rig.modem.from_line(b"welcome\r\n", 1.6)
    assert rig.modem.events() == [ToDte(b"welcome\r\n")]


def test_plus_plus_plus_inside_data_is_data() -> None:
    rig = quiet_rig()
    rig.online(at=1.0)
    assert rig.send(b"abc+++def", 5.0) == [ToLine(b"abc+++def")]
    assert to_line(rig.send(b"x+++", 10.0)) == b"x+++"  # no silence before the first '+'
    assert rig.tick(20.0) == []
    assert rig.modem.online


def test_escape_with_the_guard_time() -> None:
    rig = quiet_rig()  # S12 = 50: a one second guard time
    rig.online(at=1.0)
    rig.send(b"data", 2.0)
    events = rig.send(b"+++", 3.0)  # exactly one guard time of silence before
    assert events == [ToLine(b"+++")]  # the escape characters reach the line too
    assert rig.modem.get_timer() == 4.0
    assert rig.tick(3.99) == []
    assert rig.tick(4.0) == [ToDte(b"\r\nOK\r\n")]
    assert rig.modem.state is State.ONLINE_COMMAND
    assert rig.modem.lines[Line.DCD] is True and rig.modem.link == V34  # the call stays up
    assert rig.cmd("ATI0", 5.0) == b"\r\n5601\r\n\r\nOK\r\n"
    rig.modem.from_line(b"kept", 5.5)  # held for the DTE until ATO
    assert rig.modem.events() == []
    assert rig.cmd("ATO", 6.0) == b"\r\nCONNECT 33600/LAPM/V42BIS\r\nkept"
    assert rig.modem.online
    assert rig.send(b"more", 6.5) == [ToLine(b"more")]


def test_escape_too_early() -> None:
    rig = quiet_rig()
    rig.online(at=1.0)
    rig.send(b"data", 2.0)
    rig.send(b"+++", 2.9)  # 0.9 s after the last data: not enough silence
    assert rig.modem.get_timer() is None
    assert rig.tick(10.0) == [] and rig.modem.online


def test_escape_too_soon_after_connect() -> None:
    rig = quiet_rig()
    rig.online(at=1.0)
    rig.send(b"+++", 1.5)
    assert rig.tick(10.0) == [] and rig.modem.online


def test_escape_broken_by_data_inside_the_guard_after() -> None:
    rig = quiet_rig()
    rig.online(at=1.0)
    rig.send(b"+++", 3.0)
    assert rig.send(b"x", 3.5) == [ToLine(b"x")]
    assert rig.modem.get_timer() is None
    assert rig.tick(10.0) == [] and rig.modem.online


def test_escape_characters_too_far_apart() -> None:
    rig = quiet_rig()
    rig.online(at=1.0)
    rig.send(b"+", 3.0)
    rig.send(b"+", 4.5)  # 1.5 s after the first: starts over
    rig.send(b"+", 5.0)
    assert rig.modem.get_timer() is None
    assert rig.tick(10.0) == [] and rig.modem.online


def test_escape_one_character_at_a_time() -> None:
    rig = quiet_rig()
    rig.online(at=1.0)
    for t in (3.0, 3.4, 3.8):
        rig.send(b"+", t)
    assert rig.modem.get_timer() == 4.8
    assert rig.tick(4.8) == [ToDte(b"\r\nOK\r\n")]


def test_escape_registers() -> None:
    rig = quiet_rig()
    rig.cmd("ATS2=45S12=25")  # '-' and half a second
    rig.online(at=1.0)
    rig.send(b"+++", 2.0)
    assert rig.modem.get_timer() is None
    rig.send(b"---", 3.0)
    assert rig.tick(3.5) == [ToDte(b"\r\nOK\r\n")]
    disabled = quiet_rig()
    disabled.cmd("ATS2=200")
    disabled.online(at=1.0)
    disabled.send(b"+++", 5.0)
    assert disabled.tick(20.0) == [] and disabled.modem.online


def test_held_line_data_is_bounded() -> None:
    rig = quiet_rig()
    rig.online(at=1.0)
    rig.send(b"+++", 3.0)
    rig.tick(4.0)
    rig.modem.from_line(b"x" * (LINE_BUFFER_LIMIT + 10), 5.0)
    assert rig.modem.dropped == 10
    assert rig.cmd("ATO", 6.0).count(b"x") == LINE_BUFFER_LIMIT


# --- hanging up -----------------------------------------------------------------------


def test_ath_in_online_command_mode() -> None:
    rig = quiet_rig()
    rig.online(at=1.0)
    rig.send(b"+++", 3.0)
    rig.tick(4.0)
    events = rig.send("ATH\r", 5.0)
    assert events == [Hangup(), Drive(Line.DCD, False), ToDte(b"\r\nOK\r\n")]
    assert rig.modem.state is State.IDLE and rig.modem.link is None
    assert rig.cmd("ATO") == b"\r\nNO CARRIER\r\n"


def test_ath_while_idle() -> None:
    assert quiet_rig().cmd("ATH0") == b"\r\nOK\r\n"


def test_atz_hangs_up() -> None:
    rig = quiet_rig()
    rig.online(at=1.0)
    rig.send(b"+++", 3.0)
    rig.tick(4.0)
    events = rig.send("ATZ\r", 5.0)
    assert events == [Hangup(), Drive(Line.DCD, False), ToDte(b"\r\nOK\r\n")]
    assert rig.modem.settings["E"] == 1  # the reset turned echo back on


def test_remote_hangup_after_s10() -> None:
    rig = quiet_rig()  # S10 = 7: 0.7 s
    rig.online(at=1.0)
    rig.modem.remote_hangup(2.0)
    assert rig.modem.events() == []
    assert rig.send(b"into the void", 2.2) == []  # no carrier: dropped
    rig.modem.from_line(b"late", 2.3)
    assert rig.modem.events() == []
    assert rig.tick(2.7) == [Drive(Line.DCD, False), ToDte(b"\r\nNO CARRIER\r\n")]
    assert rig.modem.state is State.IDLE


def test_remote_hangup_while_dialing() -> None:
    rig = quiet_rig()
    rig.send("ATD5551234\r", 1.0)
    rig.modem.remote_hangup(2.0)
    assert rig.modem.events() == [ToDte(b"\r\nNO CARRIER\r\n")]


def test_amp_c0_keeps_dcd_on() -> None:
    rig = quiet_rig()
    assert only(rig.send("AT&C0\r"), Drive) == [Drive(Line.DCD, True)]
    rig.online(at=1.0)
    rig.modem.remote_hangup(2.0)
    assert rig.tick(3.0) == [ToDte(b"\r\nNO CARRIER\r\n")]
    assert rig.modem.lines[Line.DCD] is True


def test_amp_s1_dsr_follows_the_call() -> None:
    rig = quiet_rig()
    assert only(rig.send("AT&S1\r"), Drive) == [Drive(Line.DSR, False)]
    assert Drive(Line.DSR, True) in rig.online(at=1.0)


# --- DTR ------------------------------------------------------------------------------


def test_dtr_drop_with_d2_hangs_up() -> None:
    rig = quiet_rig()
    rig.online(at=1.0)
    rig.modem.dte_lines(dtr=False, rts=True, now=2.0)
    assert rig.modem.events() == []
    assert rig.modem.get_timer() == pytest.approx(2.05)  # S25 = 5 hundredths
    events = rig.tick(2.05)
    assert events == [Hangup(), Drive(Line.DCD, False), ToDte(b"\r\nNO CARRIER\r\n")]
    assert rig.modem.state is State.IDLE


def test_dtr_drop_with_s25_zero_acts_at_once() -> None:
    rig = quiet_rig()
    rig.cmd("ATS25=0")
    rig.online(at=1.0)
    rig.modem.dte_lines(dtr=False, rts=True, now=2.0)
    assert text(rig.modem.events()) == b"\r\nNO CARRIER\r\n"


def test_short_dtr_glitch_is_ignored() -> None:
    rig = quiet_rig()
    rig.online(at=1.0)
    rig.modem.dte_lines(dtr=False, rts=True, now=2.0)
    rig.modem.dte_lines(dtr=True, rts=True, now=2.03)
    assert rig.tick(5.0) == [] and rig.modem.online


def test_dtr_drop_with_d1_goes_to_command_mode() -> None:
    rig = quiet_rig()
    rig.cmd("AT&D1")
    rig.online(at=1.0)
    rig.modem.dte_lines(dtr=False, rts=True, now=2.0)
    assert rig.tick(2.1) == [ToDte(b"\r\nOK\r\n")]
    assert rig.modem.state is State.ONLINE_COMMAND and rig.modem.link is not None


def test_dtr_drop_with_d0_is_ignored() -> None:
    rig = quiet_rig()
    rig.cmd("AT&D0")
    rig.online(at=1.0)
    rig.modem.dte_lines(dtr=False, rts=False, now=2.0)
    assert rig.tick(5.0) == [] and rig.modem.online


def test_dtr_drop_with_d3_hangs_up_and_resets() -> None:
    rig = quiet_rig()
    rig.cmd("AT&D3&K0")
    rig.online(at=1.0)
    rig.modem.dte_lines(dtr=False, rts=True, now=2.0)
    events = rig.tick(2.1)
    assert events[:3] == [Hangup(), Drive(Line.DCD, False), ToDte(b"\r\nNO CARRIER\r\n")]
    assert events[3:] == [SetUart(SerialSettings(115200, flow=FlowControl.RTSCTS))]
    assert rig.modem.settings["E"] == 1 and rig.modem.settings["&D"] == 2


def test_dtr_drop_while_dialing_aborts() -> None:
    rig = quiet_rig()
    rig.send("ATD5551234\r", 1.0)
    rig.modem.dte_lines(dtr=False, rts=True, now=2.0)
    assert rig.tick(2.1) == [Hangup(), ToDte(b"\r\nNO CARRIER\r\n")]


# --- cellular -------------------------------------------------------------------------


def test_cellular_ppp_dial() -> None:
    rig = quiet_rig("quectel_ec25")
    rig.cmd('AT+CGDCONT=1,"IP","internet"')
    (dial,) = only(rig.send("ATD*99#\r", 1.0), Dial)
    assert isinstance(dial, Dial) and dial.number == "*99#"
    ec25 = profile("quectel_ec25")
    rig.modem.call_answered(negotiate_link(ec25, ec25), 1.2)
    assert text(rig.modem.events()) == b"\r\nCONNECT 150000000\r\n"
    sim = quiet_rig("simcom_sim7600")
    sim.send("ATD*99***1#\r", 1.0)
    sim7600 = profile("simcom_sim7600")
    sim.modem.call_answered(negotiate_link(sim7600, ec25), 1.2)
    assert text(sim.modem.events()) == b"\r\nCONNECT 115200\r\n"


# --- link negotiation -----------------------------------------------------------------


EXPECTED_LINKS = {
    ("generic_hayes", "generic_hayes"): ("V.22bis", 2400, 2400, None, None),
    ("generic_hayes", "v90_dialup"): ("V.22bis", 2400, 2400, None, None),
    ("v90_dialup", "generic_hayes"): ("V.22bis", 2400, 2400, None, None),
    ("v90_dialup", "v90_dialup"): ("V.34", 33600, 33600, "LAPM", "V44"),
}


@pytest.mark.parametrize(("a", "b"), list(itertools.product(SHIPPED, repeat=2)))
def test_negotiate_every_pair_of_shipped_profiles(a: str, b: str) -> None:
    link = negotiate_link(profile(a), profile(b))
    assert link == negotiate_link(LinkOffer.from_profile(profile(a)), profile(b))
    if (a, b) in EXPECTED_LINKS:
        got = (link.modulation, link.caller_rate, link.callee_rate)
        assert (*got, link.error_correction, link.compression) == EXPECTED_LINKS[(a, b)]
    else:
        assert link.modulation == "packet"
        assert link.error_correction is None and link.compression is None
        for name, rate in ((a, link.caller_rate), (b, link.callee_rate)):
            p = profile(name)
            assert rate == (p.connect_rate if p.is_cellular else 2400 if "hayes" in name else 33600)


def test_v90_needs_a_digital_end() -> None:
    usr = profile("v90_dialup")
    analogue = negotiate_link(usr, usr)
    assert (
        analogue.modulation == "V.34" and "V.92" in analogue.note and "fell back" in analogue.note
    )
    isp = dataclasses.replace(usr, name="isp", digital=True)
    link = negotiate_link(usr, isp)
    assert (link.modulation, link.caller_rate, link.callee_rate) == ("V.92", 56000, 48000)
    v90_only = dataclasses.replace(
        usr, modulations=tuple(m for m in usr.modulations if m != "V.92")
    )
    link = negotiate_link(isp, v90_only)
    assert (link.modulation, link.caller_rate, link.callee_rate) == ("V.90", 33600, 56000)
    both_digital = negotiate_link(isp, isp)
    assert both_digital.modulation == "V.34"


def test_negotiation_details() -> None:
    usr = profile("v90_dialup")
    mnp_only = dataclasses.replace(usr, error_correction=("MNP",), compression=("MNP5",))
    link = negotiate_link(usr, mnp_only)
    assert (link.error_correction, link.compression) == ("MNP", "MNP5")
    early_v34 = dataclasses.replace(usr, max_line_rate=28800)
    assert negotiate_link(early_v34, usr).caller_rate == 28800
    no_v42bis = dataclasses.replace(usr, compression=("MNP5",))
    assert negotiate_link(usr, no_v42bis).compression is None
    bell = dataclasses.replace(usr, modulations=("Bell103",))
    v21 = dataclasses.replace(usr, modulations=("V.21",))
    with pytest.raises(SimError, match="share no modulation"):
        negotiate_link(bell, v21)
    slow = negotiate_link(v21, usr)
    assert slow.caller_rate == 300 and slow.error_correction is None


# --- the state table ------------------------------------------------------------------


def test_the_table_covers_every_state() -> None:
    states = {s for s, _ in TRANSITIONS} | set(TRANSITIONS.values())
    assert states == set(State)
    assert not set(TRANSITIONS) & IGNORED
    rows = transition_rows()
    assert len(rows) == len(TRANSITIONS) + len(IGNORED)
    assert ("idle", "dial", "dialing") in rows
    assert ("online", "ring", "ignored") in rows


def test_an_illegal_exchange_event_names_state_and_event() -> None:
    rig = quiet_rig()
    rig.online(at=1.0)
    with pytest.raises(SimError, match=r"'answered' is not allowed in state 'online'"):
        rig.modem.call_answered(V34, 2.0)
    with pytest.raises(SimError, match=r"'failed' is not allowed in state 'online'"):
        rig.modem.call_failed(CallResult.BUSY, 2.0)


def test_every_input_has_a_name() -> None:
    assert len({i.value for i in Input}) == len(Input)


def test_bad_ring_cadence() -> None:
    with pytest.raises(SimError, match="ring cadence"):
        HayesModem(profile("v90_dialup"), number="1", ring_on=7.0, ring_period=6.0)
