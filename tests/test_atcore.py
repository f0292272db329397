"""The AT engine's sans-I/O core: result codes, echo, URCs, prompts, data mode,
garbage, timers and the state table, driven with bytes and explicit times."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import serialhs.modem as modem
from serialhs.errors import (
    CmeError,
    CmsError,
    ConfigError,
    ModemBusy,
    ModemCommandError,
    ModemError,
    ModemNoAnswer,
    ModemNoCarrier,
    ModemNoDialtone,
    ModemProtocolError,
    ModemResultError,
    ModemTimeout,
    SerialTimeoutError,
)
from serialhs.modem import atcore
from serialhs.modem.atcore import (
    ATCore,
    Data,
    DataMode,
    Echo,
    Final,
    Garbage,
    Intermediate,
    Prompt,
    ResultCode,
    State,
    Timeout,
    Trigger,
    Unsolicited,
    describe_transitions,
    error_for,
    format_command,
    quote,
    response_prefixes,
)
from serialhs.modem.results import HAYES_NUMERIC, ROCKWELL_NUMERIC, V250_NUMERIC, parse_result

FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def run(core: ATCore, command: str, reply: bytes, now: float = 0.0, **kwargs) -> list:
    """Send ``command``, feed ``reply`` in one piece, return the events."""
    core.send_command(command, now, **kwargs)
    core.receive_data(reply)
    return core.events()


def merged(events: list) -> list:
    """Events with adjacent Data chunks joined (Data chunking follows the reads)."""
    out: list = []
    for event in events:
        if isinstance(event, Data) and out and isinstance(out[-1], Data):
            out[-1] = Data(out[-1].data + event.data)
        else:
            out.append(event)
    return out


def feed_split(core: ATCore, data: bytes, cuts: list[int]) -> None:
    points = sorted({c for c in cuts if 0 < c < len(data)})
    start = 0
    for point in [*points, len(data)]:
        core.receive_data(data[start:point])
        start = point


# -- result codes ---------------------------------------------------------------------------------

VERBOSE_FINALS = [
    (b"OK", ResultCode.OK, None),
    (b"CONNECT", ResultCode.CONNECT, None),
    (b"CONNECT 33600/V42BIS", ResultCode.CONNECT, "33600/V42BIS"),
    (b"CONNECT 115200", ResultCode.CONNECT, "115200"),
    (b"NO CARRIER", ResultCode.NO_CARRIER, None),
    (b"ERROR", ResultCode.ERROR, None),
    (b"NO DIALTONE", ResultCode.NO_DIALTONE, None),
    (b"NO DIAL TONE", ResultCode.NO_DIALTONE, None),
    (b"BUSY", ResultCode.BUSY, None),
    (b"NO ANSWER", ResultCode.NO_ANSWER, None),
    (b"DELAYED", ResultCode.DELAYED, None),
    (b"BLACKLISTED", ResultCode.BLACKLISTED, None),
    (b"+CME ERROR: 10", ResultCode.CME_ERROR, 10),
    (b"+CME ERROR:58", ResultCode.CME_ERROR, 58),
    (b"+CME ERROR: SIM not inserted", ResultCode.CME_ERROR, "SIM not inserted"),
    (b"+CME ERROR:incorrect password", ResultCode.CME_ERROR, "incorrect password"),
    (b"+CMS ERROR: 500", ResultCode.CMS_ERROR, 500),
    (b"+CMS ERROR:330", ResultCode.CMS_ERROR, 330),
    (b"+CMS ERROR: SMSC address unknown", ResultCode.CMS_ERROR, "SMSC address unknown"),
]


@pytest.mark.parametrize(("line", "code", "value"), VERBOSE_FINALS)
@pytest.mark.parametrize("echo", [True, False])
def test_verbose_final_results(line, code, value, echo):
    core = ATCore(echo=echo)
    echo_bytes = b"ATD123\r" if echo else b""
    events = run(core, "ATD123", echo_bytes + b"\r\n" + line + b"\r\n")
    expected = [Final(code, line.decode(), value)]
    if code is ResultCode.CONNECT:
        expected.append(DataMode(line.decode()))
    assert events == ([Echo("ATD123")] if echo else []) + expected
    assert core.state is (State.DATA if code is ResultCode.CONNECT else State.IDLE)


NUMERIC_FINALS = [
    (b"0", ResultCode.OK, None),
    (b"1", ResultCode.CONNECT, None),
    (b"3", ResultCode.NO_CARRIER, None),
    (b"4", ResultCode.ERROR, None),
    (b"5", ResultCode.CONNECT, "1200"),
    (b"6", ResultCode.NO_DIALTONE, None),
    (b"7", ResultCode.BUSY, None),
    (b"8", ResultCode.NO_ANSWER, None),
    (b"10", ResultCode.CONNECT, "2400"),
    (b"12", ResultCode.CONNECT, "9600"),
    (b"84", ResultCode.CONNECT, "33600"),
]


@pytest.mark.parametrize(("line", "code", "value"), NUMERIC_FINALS)
def test_numeric_final_results_after_atv0(line, code, value):
    core = ATCore()
    assert run(core, "ATV0", b"ATV0\r0\r") == [Echo("ATV0"), Final(ResultCode.OK, "0")]
    assert core.verbose is False
    events = run(core, "ATD5551234", b"ATD5551234\r" + line + b"\r")
    assert events[:2] == [Echo("ATD5551234"), Final(code, line.decode(), value)]


def test_numeric_results_with_echo_off_and_information_text():
    core = ATCore(verbose=False, echo=False)
    # V0: information text is "text CR LF", a result code "digits CR", no header
    events = run(core, "AT+CSQ", b"+CSQ: 20,99\r\n0\r")
    assert events == [Intermediate("+CSQ: 20,99"), Final(ResultCode.OK, "0")]


def test_auto_mode_accepts_numeric_finals_in_flight_but_not_padded_digits():
    core = ATCore()  # verbose unknown
    assert core.verbose is None
    assert run(core, "AT", b"4\r") == [Final(ResultCode.ERROR, "4")]
    assert run(core, "ATS0?", b"\r\n000\r\n\r\nOK\r\n") == [
        Intermediate("000"),
        Final(ResultCode.OK, "OK"),
    ]


def test_verbose_mode_reads_digit_lines_as_information():
    core = ATCore()
    run(core, "ATE0V1", b"ATE0V1\r\r\nOK\r\n")
    assert core.verbose is True and core.echo is False
    assert run(core, "ATS0?", b"\r\n0\r\n\r\nOK\r\n") == [
        Intermediate("0"),
        Final(ResultCode.OK, "OK"),
    ]


def test_atz_restores_the_constructor_modes():
    core = ATCore(verbose=True)
    run(core, "ATV0E0", b"ATV0E0\r0\r")
    assert (core.verbose, core.echo) == (False, False)
    run(core, "ATZ", b"\r\nOK\r\n")
    assert (core.verbose, core.echo) == (True, True)


def test_numeric_tables_are_data():
    for table in (V250_NUMERIC, HAYES_NUMERIC, ROCKWELL_NUMERIC):
        assert table[0].code is ResultCode.OK
        assert table[3].code is ResultCode.NO_CARRIER
    assert 5 not in V250_NUMERIC and HAYES_NUMERIC[5].text == "CONNECT 1200"
    assert ROCKWELL_NUMERIC[13].text == "CONNECT 7200"
    assert all(
        row.code is ResultCode.CONNECT
        for row in ROCKWELL_NUMERIC.values()
        if row.text.startswith("CONNECT")
    )
    assert parse_result("10", numeric=None) is None
    assert parse_result("99", numeric=ROCKWELL_NUMERIC) is None  # unknown: information
    core = ATCore(numeric="v250", verbose=False)
    assert run(core, "ATD1", b"10\r") == [Intermediate("10")]
    with pytest.raises(ConfigError, match="known tables"):
        ATCore(numeric="zoom")


# -- the typed errors -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "code", "value", "cls"),
    [
        ("BUSY", ResultCode.BUSY, None, ModemBusy),
        ("NO CARRIER", ResultCode.NO_CARRIER, None, ModemNoCarrier),
        ("NO DIALTONE", ResultCode.NO_DIALTONE, None, ModemNoDialtone),
        ("NO ANSWER", ResultCode.NO_ANSWER, None, ModemNoAnswer),
        ("ERROR", ResultCode.ERROR, None, ModemCommandError),
        ("+CME ERROR: 10", ResultCode.CME_ERROR, 10, CmeError),
        ("+CMS ERROR:330", ResultCode.CMS_ERROR, 330, CmsError),
        ("DELAYED", ResultCode.DELAYED, None, ModemResultError),
    ],
)
def test_error_for_maps_each_failure_to_its_class(text, code, value, cls):
    error = error_for(Final(code, text, value), "ATD5551234", lines=["x"], port="/dev/ttyS0")
    assert type(error) is cls
    assert isinstance(error, ModemResultError) and isinstance(error, ModemError)
    assert error.command == "ATD5551234" and error.result is code and error.text == text
    assert error.lines == ("x",)
    message = str(error)
    assert message.startswith("/dev/ttyS0: ATD5551234: the modem answered")
    assert text in message and "(" in message  # what to try


def test_error_for_cme_and_cms_details():
    cme = error_for(Final(ResultCode.CME_ERROR, "+CME ERROR: 11", 11), "AT+CPIN?")
    assert isinstance(cme, CmeError) and cme.code == 11
    assert cme.meaning == "SIM PIN required" and "AT+CPIN" in str(cme)
    text = error_for(Final(ResultCode.CME_ERROR, "+CME ERROR: SIM busy", "SIM busy"), "AT")
    assert isinstance(text, CmeError) and text.code is None and text.meaning == "SIM busy"
    cms = error_for(Final(ResultCode.CMS_ERROR, "+CMS ERROR: 500", 500), "AT+CMGS")
    assert isinstance(cms, CmsError) and cms.meaning == "unknown error"
    assert error_for(Final(ResultCode.OK, "OK"), "AT") is None
    assert error_for(Final(ResultCode.CONNECT, "CONNECT"), "ATD1") is None


def test_modem_timeout_is_a_timeout_error():
    error = ModemTimeout("AT+CSQ", timeout=2.0, lines=["+CSQ: 1,2"], port="/dev/ttyUSB2")
    assert isinstance(error, TimeoutError) and isinstance(error, SerialTimeoutError)
    assert isinstance(error, ModemError)
    assert error.timeout == 2.0 and error.port == "/dev/ttyUSB2" and error.command == "AT+CSQ"
    assert "within 2 s" in str(error) and "+CSQ: 1,2" in str(error)


# -- echo -----------------------------------------------------------------------------------------

EXCHANGES = [
    ("ATE1", b"ATE1\r\r\nOK\r\n"),
    ("AT+CSQ", b"AT+CSQ\r\r\n+CSQ: 20,99\r\n\r\nOK\r\n"),
    ("ATI", b"ATI\r\r\nQuectel\r\nEC25\r\nRevision: EC25EFAR06A03M4G\r\n\r\nOK\r\n"),
    ("AT+CPIN?", b"AT+CPIN?\r\r\n+CME ERROR: 10\r\n"),
]


def test_echo_on():
    core = ATCore()
    assert run(core, *EXCHANGES[1]) == [
        Echo("AT+CSQ"),
        Intermediate("+CSQ: 20,99"),
        Final(ResultCode.OK, "OK"),
    ]


def test_echo_off():
    core = ATCore(echo=False)
    assert run(core, "AT+CSQ", b"\r\n+CSQ: 20,99\r\n\r\nOK\r\n") == [
        Intermediate("+CSQ: 20,99"),
        Final(ResultCode.OK, "OK"),
    ]


def test_echo_expected_but_absent_is_not_waited_for():
    core = ATCore(echo=True)
    assert run(core, "ATI", b"\r\nQuectel\r\n\r\nOK\r\n") == [
        Intermediate("Quectel"),
        Final(ResultCode.OK, "OK"),
    ]


def test_echo_one_byte_at_a_time():
    whole, bytewise = ATCore(), ATCore()
    for command, reply in EXCHANGES:
        whole.send_command(command, 0.0)
        whole.receive_data(reply)
        bytewise.send_command(command, 0.0)
        for b in reply:
            bytewise.receive_data(bytes([b]))
    assert bytewise.events() == whole.events()


@pytest.mark.parametrize(
    ("echo", "why"),
    [
        (b"T+CSQ", "first byte lost"),
        (b"AT+C", "cut short"),
        (b"AT+CSX", "last byte garbled"),
        (b"a\x7ft+c#q", "noise throughout, before any LF"),
    ],
)
def test_partial_or_noisy_echo_is_still_echo(echo, why):
    core = ATCore()
    events = run(core, "AT+CSQ", echo + b"\r\r\n+CSQ: 20,99\r\n\r\nOK\r\n")
    assert events == [
        Echo(echo.decode()),
        Intermediate("+CSQ: 20,99"),
        Final(ResultCode.OK, "OK"),
    ], why


def test_undecodable_echo_is_reported_and_still_echo():
    core = ATCore()
    events = run(core, "AT+CSQ", b"\x83T+CSQ\r\r\nOK\r\n")
    assert isinstance(events[0], Garbage) and events[0].data == b"\x83T+CSQ"
    assert events[1:] == [Echo("\ufffdT+CSQ"), Final(ResultCode.OK, "OK")]


def test_a_line_begun_before_the_command_is_no_part_of_its_reply():
    core = ATCore()
    core.receive_data(b"\r\n+CREG: 5")  # a URC in progress when the command goes out
    events = run(core, "AT+CSQ", b"\r\nAT+CSQ\r\r\nOK\r\n")
    assert events == [Unsolicited("+CREG: 5", None), Echo("AT+CSQ"), Final(ResultCode.OK, "OK")]
    core.receive_data(b"\r\n4")  # a stray digit: not a result of the next command
    assert run(core, "AT", b"\r\r\nOK\r\n") == [
        Unsolicited("4", None),
        Final(ResultCode.OK, "OK"),
    ]


# -- unsolicited result codes ---------------------------------------------------------------------


def urc_core() -> ATCore:
    core = ATCore()
    core.register_urc("CREG", r"\+CREG:")
    core.register_urc("CMTI", r"\+CMTI:")
    return core


def test_urcs_before_inside_and_after_a_reply():
    core = urc_core()
    core.receive_data(b'\r\n+CMTI: "SM",1\r\n')
    core.send_command("AT+COPS?", 0.0)
    core.receive_data(
        b"AT+COPS?\r"
        b"\r\n+CREG: 1\r\n"
        b'\r\n+COPS: 0,0,"Operator A"\r\n'
        b'\r\n+CMTI: "SM",2\r\n'
        b'\r\n+COPS: 1,0,"Operator B"\r\n'
        b"\r\nRING\r\n"
        b"\r\nOK\r\n"
        b'\r\n+CMTI: "SM",3\r\n'
    )
    assert core.events() == [
        Unsolicited('+CMTI: "SM",1', "CMTI"),
        Echo("AT+COPS?"),
        Unsolicited("+CREG: 1", "CREG"),
        Intermediate('+COPS: 0,0,"Operator A"'),
        Unsolicited('+CMTI: "SM",2', "CMTI"),
        Intermediate('+COPS: 1,0,"Operator B"'),
        Unsolicited("RING", "RING"),
        Final(ResultCode.OK, "OK"),
        Unsolicited('+CMTI: "SM",3', "CMTI"),
    ]


def test_a_urc_with_the_commands_prefix_belongs_to_the_reply():
    core = urc_core()
    events = run(core, "AT+CREG?", b"AT+CREG?\r\r\n+CREG: 0,1\r\n\r\nOK\r\n\r\n+CREG: 5\r\n")
    assert events == [
        Echo("AT+CREG?"),
        Intermediate("+CREG: 0,1"),
        Final(ResultCode.OK, "OK"),
        Unsolicited("+CREG: 5", "CREG"),
    ]
    # the prefix can be given, and every extended command on the line counts
    assert response_prefixes("AT+CSQ;+CREG?") == ("+CSQ:", "+CREG:")
    events = run(core, "AT^SYSINFO", b"\r\n+CREG: 1\r\n\r\nOK\r\n", prefix="+CREG:")
    assert events[0] == Intermediate("+CREG: 1")


def test_lines_outside_a_command():
    core = ATCore()
    core.receive_data(
        b"\r\nRING\r\n\r\nRING 2\r\n\r\n+CRING: VOICE\r\n\r\nNO CARRIER\r\n\r\nOK\r\n\r\nhello\r\n"
    )
    assert core.events() == [
        Unsolicited("RING", "RING"),
        Unsolicited("RING 2", "RING"),
        Unsolicited("+CRING: VOICE", "+CRING"),
        Unsolicited("NO CARRIER", "NO CARRIER"),
        Unsolicited("OK", None),
        Unsolicited("hello", None),
    ]
    core.unregister_urc("+CRING")
    core.receive_data(b"\r\n+CRING: FAX\r\n")
    assert core.events() == [Unsolicited("+CRING: FAX", None)]
    with pytest.raises(ConfigError, match="no URC named"):
        core.unregister_urc("+CRING")
    with pytest.raises(ConfigError, match="bad pattern"):
        core.register_urc("X", "(")


def test_ring_inside_a_command_is_unsolicited_and_numeric_ring_too():
    core = ATCore(verbose=False)
    events = run(core, "ATI3", b"ATI3\r2\rv1.0\r\n0\r")
    assert events == [
        Echo("ATI3"),
        Unsolicited("2", "RING"),
        Intermediate("v1.0"),
        Final(ResultCode.OK, "0"),
    ]
    core.receive_data(b"2\r3\r")
    assert core.events() == [Unsolicited("2", "RING"), Unsolicited("3", "NO CARRIER")]


def test_an_auto_answered_call_enters_data_mode():
    core = ATCore()
    core.receive_data(b"\r\nRING\r\n\r\nCONNECT 33600/ARQ\r\n\x7eppp\r\nOK\r\n")
    assert merged(core.events()) == [
        Unsolicited("RING", "RING"),
        Unsolicited("CONNECT 33600/ARQ", "CONNECT"),
        DataMode("CONNECT 33600/ARQ"),
        Data(b"\x7eppp\r\nOK\r\n"),
    ]
    assert core.state is State.DATA


# -- prompts --------------------------------------------------------------------------------------


def test_sms_prompt_flow():
    core = ATCore()
    out = core.send_command('AT+CMGS="+15551234"', 0.0, prompt="> ", timeout=5.0)
    assert out == b'AT+CMGS="+15551234"\r'
    core.receive_data(b'AT+CMGS="+15551234"\r\r\n> ')
    assert core.events() == [Echo('AT+CMGS="+15551234"'), Prompt("> ")]
    assert core.state is State.SENDING_TEXT
    assert core.send_text("hello there", 1.0, timeout=60.0) == b"hello there\x1a"
    assert core.get_timer() == 61.0
    core.receive_data(b"hello there\x1a\r\n+CMGS: 12\r\n\r\nOK\r\n")
    assert core.events() == [
        Echo("hello there\x1a"),
        Intermediate("+CMGS: 12"),
        Final(ResultCode.OK, "OK"),
    ]
    assert core.state is State.IDLE


def test_prompt_split_and_followed_by_a_urc():
    core = urc_core()
    core.send_command('AT+CMGS="1"', 0.0, prompt="> ")
    for b in b'AT+CMGS="1"\r\r\n>':
        core.receive_data(bytes([b]))
    assert core.state is State.AWAIT_PROMPT
    core.receive_data(b" ")
    core.receive_data(b'\r\n+CMTI: "SM",4\r\n')
    assert core.events() == [
        Echo('AT+CMGS="1"'),
        Prompt("> "),
        Unsolicited('+CMTI: "SM",4', "CMTI"),
    ]
    core.send_text(b"a\rb", 0.0)  # a CR in the text: the modem prompts again
    core.receive_data(b"a\r\n> b\x1a\r\n+CMGS: 13\r\n\r\nOK\r\n")
    assert core.events() == [
        Echo("a"),
        Echo("> b\x1a"),
        Intermediate("+CMGS: 13"),
        Final(ResultCode.OK, "OK"),
    ]


def test_prompt_refused_and_cancelled():
    core = ATCore(echo=False)
    events = run(core, 'AT+CMGS="1"', b"\r\n+CMS ERROR: 304\r\n", prompt="> ")
    assert events == [Final(ResultCode.CMS_ERROR, "+CMS ERROR: 304", 304)]
    core.send_command('AT+CMGS="1"', 0.0, prompt="> ")
    core.receive_data(b"\r\n> ")
    assert core.send_text("", 0.0, terminator=atcore.ESC) == b"\x1b"
    core.receive_data(b"\r\nOK\r\n")
    assert core.events() == [Prompt("> "), Final(ResultCode.OK, "OK")]
    core.send_command('AT+CMGS="1"', 0.0, prompt="> ")
    core.receive_data(b"\r\n> ")
    with pytest.raises(ModemProtocolError, match="terminator"):
        core.send_text("a\x1ab", 0.0)


def test_a_prompt_is_only_recognised_when_declared():
    core = ATCore(echo=False)
    core.send_command("AT+CSQ", 0.0)
    core.receive_data(b"\r\n> ")
    assert core.events() == []
    core.receive_data(b"\r\nOK\r\n")
    assert core.events() == [Intermediate("> "), Final(ResultCode.OK, "OK")]


# -- garbage --------------------------------------------------------------------------------------


def test_nul_runs_are_reported_and_dropped():
    core = ATCore(echo=False)
    core.send_command("AT", 0.0)
    core.receive_data(b"\x00\x00\x00\r\nO\x00K\r\n")
    assert core.events() == [
        Garbage(b"\x00\x00\x00", "NUL bytes"),
        Garbage(b"\x00", "NUL bytes"),
        Final(ResultCode.OK, "OK"),
    ]


def test_invalid_utf8_is_reported_and_the_line_kept():
    core = ATCore()
    core.receive_data(b"\r\n+COPS: \xff\xfeabc\r\n")
    events = core.events()
    assert isinstance(events[0], Garbage) and events[0].data == b"+COPS: \xff\xfeabc"
    assert "offset 7" in events[0].reason
    assert events[1] == Unsolicited("+COPS: \ufffd\ufffdabc", None)


def test_an_overlong_line_is_reported_and_the_next_line_parsed():
    core = ATCore(max_line=64, echo=False)
    core.send_command("AT+CSQ", 0.0)
    long = b"x" * 150
    core.receive_data(b"\r\n" + long + b"\r\n+CSQ: 1,2\r\n\r\nOK\r\n")
    events = core.events()
    garbage = [e for e in events if isinstance(e, Garbage)]
    assert b"".join(g.data for g in garbage) == long
    assert [len(g.data) for g in garbage] == [64, 64, 22]
    assert "longer than 64 bytes" in garbage[0].reason
    assert events[len(garbage) :] == [Intermediate("+CSQ: 1,2"), Final(ResultCode.OK, "OK")]
    assert len(core.buffered) == 0


def test_the_line_buffer_stays_bounded():
    core = ATCore(max_line=32)
    for _ in range(100):
        core.receive_data(b"y" * 50)
        assert len(core.buffered) <= 32


@FAST
@given(noise=st.binary(max_size=300))
def test_after_random_bytes_the_next_command_still_works(noise):
    assume(b"CONNECT" not in noise)
    core = ATCore(max_line=64)
    core.receive_data(noise)
    assert core.state is State.IDLE
    core.send_command("AT", 0.0)
    core.receive_data(b"\r\nOK\r\n")
    assert core.events()[-1] == Final(ResultCode.OK, "OK")
    assert core.state is State.IDLE and core.buffered == b""


def test_a_line_of_control_characters_is_garbage():
    core = ATCore()
    core.receive_data(b"\r\n \t \r\n\x1c\x0b\r\n")
    assert core.events() == [Garbage(b"\x1c\x0b", "a line of white space and control characters")]


@FAST
@given(
    text=st.lists(
        st.text(alphabet="abcXYZ019 +:,\"'", min_size=0, max_size=20), min_size=1, max_size=8
    )
)
def test_nothing_received_outside_a_command_is_lost(text):
    core = ATCore()
    core.register_urc("ANY", r".")
    core.receive_data(b"".join(line.encode() + b"\r\n" for line in text))
    got = [e.text for e in core.events()]
    assert got == [line for line in text if line.strip()]


# -- splitting never changes the events -----------------------------------------------------------

SCENARIO: list[tuple[str, dict, bytes]] = [
    ("ATE1", {}, b"ATE1\r\r\nOK\r\n"),
    ("AT+CREG?", {}, b'AT+CREG?\r\r\n+CREG: 0,1\r\n\r\n+CMTI: "SM",1\r\n\r\nOK\r\n'),
    ("AT+CSQ", {}, b"T+CSQ\r\r\n+CSQ: 20,99\r\n\r\nRING\r\n\r\n+CME ERROR:58\r\n"),
    ("ATI", {}, b"\x00\x00ATI\r\r\nQuectel \xff\r\n" + b"z" * 80 + b"\r\n\r\nOK\r\n"),
    ('AT+CMGS="1"', {"prompt": "> "}, b'AT+CMGS="1"\r\r\n> '),
    ("", {"text": "hi"}, b"hi\x1a\r\n+CMGS: 7\r\n\r\nOK\r\n\r\nNO CARRIER\r\n"),
    ("ATV0", {}, b"ATV0\r0\r"),
    ("ATI0", {}, b"ATI0\r56000\r\n2\r0\r"),
    ("ATV1", {}, b"ATV1\r\r\nOK\r\n"),
    ("ATD5551234", {}, b"ATD5551234\r\r\nCONNECT 33600/V42BIS\r\n\r\nOK\r\n\x00data\r\n"),
    ("+++", {}, b"more\r\n\r\nOK\r\n\r\nRING\r\n"),
]


def play(cuts: list[list[int]]) -> list:
    core = ATCore(max_line=64)
    core.register_urc("CMTI", r"\+CMTI:")
    core.register_urc("CREG", r"\+CREG:")
    for (command, options, reply), reply_cuts in zip(SCENARIO, cuts, strict=True):
        if command == "+++":
            core.send_escape(0.0)
        elif "text" in options:
            core.send_text(options["text"], 0.0)
        else:
            core.send_command(command, 0.0, **options)
        feed_split(core, reply, reply_cuts)
    return merged(core.events())


WHOLE = play([[] for _ in SCENARIO])


def test_the_scenario_reads_as_intended():
    assert Unsolicited('+CMTI: "SM",1', "CMTI") in WHOLE
    assert Intermediate("+CREG: 0,1") in WHOLE
    assert Echo("T+CSQ") in WHOLE
    assert Final(ResultCode.CME_ERROR, "+CME ERROR:58", 58) in WHOLE
    assert Prompt("> ") in WHOLE
    assert Intermediate("+CMGS: 7") in WHOLE
    assert Unsolicited("NO CARRIER", "NO CARRIER") in WHOLE
    assert Intermediate("56000") in WHOLE
    assert Unsolicited("2", "RING") in WHOLE
    assert DataMode("CONNECT 33600/V42BIS") in WHOLE
    assert Data(b"\r\nOK\r\n\x00data\r\nmore\r\n") in WHOLE
    assert Final(ResultCode.OK, "OK") == WHOLE[-2]
    assert WHOLE[-1] == Unsolicited("RING", "RING")


def test_one_byte_at_a_time_gives_the_same_events():
    assert play([list(range(len(reply))) for _, _, reply in SCENARIO]) == WHOLE


@FAST
@given(data=st.data())
def test_random_splits_give_the_same_events(data):
    cuts = [
        data.draw(st.lists(st.integers(0, len(reply)), max_size=6), label=command)
        for command, _, reply in SCENARIO
    ]
    assert play(cuts) == WHOLE


@FAST
@given(stream=st.binary(max_size=200), cuts=st.lists(st.integers(0, 200), max_size=8))
def test_random_bytes_split_anywhere_give_the_same_events(stream, cuts):
    def events(split: list[int]) -> list:
        core = ATCore(max_line=16)
        core.send_command("AT+CSQ", 0.0)
        feed_split(core, stream, split)
        return merged(core.events())

    assert events(cuts) == events([])


# -- data mode ------------------------------------------------------------------------------------


def test_data_mode_does_not_parse_lines():
    core = ATCore()
    core.send_command("ATD5551234", 0.0, timeout=60.0)
    core.receive_data(b"ATD5551234\r\r\nCONNECT 33600/V42BIS\r")  # its LF comes next
    assert core.events() == [
        Echo("ATD5551234"),
        Final(ResultCode.CONNECT, "CONNECT 33600/V42BIS", "33600/V42BIS"),
        DataMode("CONNECT 33600/V42BIS"),
    ]
    assert core.get_timer() is None
    core.receive_data(b"\n\x7e\xff\x7d\r\nOK\r\n\r\nNO CARRIER\r\n\x00")
    assert core.events() == [Data(b"\x7e\xff\x7d\r\nOK\r\n\r\nNO CARRIER\r\n\x00")]
    assert core.send_data(b"\r\nAT\r") == b"\r\nAT\r"
    core.enter_command_mode()  # the client saw DCD drop
    assert core.state is State.IDLE
    core.receive_data(b"\r\nNO CARRIER\r\n")
    assert core.events() == [Unsolicited("NO CARRIER", "NO CARRIER")]


def test_numeric_connect_keeps_a_following_lf_as_data():
    core = ATCore(verbose=False)
    assert run(core, "ATD1", b"1\r\nabc") == [
        Final(ResultCode.CONNECT, "1"),
        DataMode("1"),
        Data(b"\nabc"),
    ]


def test_escape_answered_ok():
    core = ATCore()
    run(core, "ATD1", b"\r\nCONNECT\r\n")
    with pytest.raises(ModemProtocolError, match="send_command is not allowed in state DATA"):
        core.send_command("ATH", 0.0)
    assert core.send_escape(10.0) == b"+++"
    assert core.command == "+++" and core.get_timer() == 13.0
    for b in b"tail\r\nO":
        core.receive_data(bytes([b]))
    assert merged(core.events()) == [Data(b"tail")]
    assert core.buffered == b"\r\nO"
    core.receive_data(b"K\r\n\r\nRING\r\n")
    assert core.events() == [Final(ResultCode.OK, "OK"), Unsolicited("RING", "RING")]
    assert core.state is State.IDLE
    assert run(core, "ATO", b"\r\nCONNECT 9600\r\n")[-1] == DataMode("CONNECT 9600")


def test_escape_unanswered_returns_to_data():
    core = ATCore()
    run(core, "ATD1", b"\r\nCONNECT\r\n")
    core.send_escape(0.0, timeout=1.5)
    core.receive_data(b"xy\r\n")
    core.handle_timer(1.0)
    assert merged(core.events()) == [Data(b"xy")]
    core.handle_timer(1.5)
    assert merged(core.events()) == [Data(b"\r\n"), Timeout("+++", 1.5)]
    assert core.state is State.DATA


def test_escape_answered_in_v0():
    core = ATCore(verbose=False)
    run(core, "ATD1", b"1\r")
    core.send_escape(0.0)
    core.receive_data(b"zz0\r")
    assert core.events() == [Data(b"zz"), Final(ResultCode.OK, "0")]


# -- timers ---------------------------------------------------------------------------------------


def test_timeout_via_handle_timer():
    core = ATCore()
    core.send_command("AT+COPS=?", 100.0, timeout=180.0)
    assert core.get_timer() == 280.0
    core.receive_data(b"AT+COPS=?\r")
    core.handle_timer(279.9)
    assert core.events() == [Echo("AT+COPS=?")]
    core.handle_timer(280.0)
    assert core.events() == [Timeout("AT+COPS=?", 180.0)]
    assert core.state is State.IDLE and core.get_timer() is None and core.command is None
    core.receive_data(b'\r\n+COPS: (1,"A")\r\n\r\nOK\r\n')  # too late: not a reply
    assert core.events() == [Unsolicited('+COPS: (1,"A")', None), Unsolicited("OK", None)]


def test_no_timeout_and_abandon():
    core = ATCore()
    core.send_command("ATA", 0.0, timeout=None)
    assert core.get_timer() is None
    core.handle_timer(1e9)
    assert core.events() == []
    core.abandon()
    assert core.state is State.IDLE
    with pytest.raises(ModemProtocolError, match="abandon is not allowed in state IDLE"):
        core.abandon()
    with pytest.raises(ModemProtocolError, match="positive"):
        core.send_command("AT", 0.0, timeout=0)


# -- the state table ------------------------------------------------------------------------------


def test_the_state_table_rejects_illegal_transitions_naming_state_and_event():
    core = ATCore()
    core.send_command("AT", 0.0)
    with pytest.raises(ModemProtocolError) as info:
        core.send_command("AT+CSQ", 0.0)
    error = info.value
    assert error.state == "AWAIT_RESPONSE" and error.event == "SEND_COMMAND"
    assert "AWAIT_RESPONSE" in str(error) and "send_command" in str(error)
    assert "'AT' is in flight" in str(error)
    with pytest.raises(ModemProtocolError, match="send_text is not allowed in state AWAIT_RESP"):
        core.send_text("x", 0.0)
    with pytest.raises(ModemProtocolError, match="send_data is not allowed in state AWAIT_RESP"):
        core.send_data(b"x")
    with pytest.raises(ModemProtocolError, match="send_escape is not allowed"):
        core.send_escape(0.0)
    with pytest.raises(ModemProtocolError, match="enter_command_mode is not allowed"):
        core.enter_command_mode()
    assert core.state is State.AWAIT_RESPONSE  # refused calls change nothing


def test_the_docstring_draws_the_table():
    assert describe_transitions() in (atcore.__doc__ or "")
    for (state, trigger), new in atcore.TRANSITIONS.items():
        assert isinstance(state, State) and isinstance(trigger, Trigger)
        assert isinstance(new, State)


def test_every_step_the_modem_causes_is_in_the_table():
    remote = {Trigger.INTERMEDIATE, Trigger.UNSOLICITED, Trigger.FINAL, Trigger.CONNECT}
    for state in (State.AWAIT_RESPONSE, State.AWAIT_PROMPT, State.SENDING_TEXT):
        for trigger in [*remote, Trigger.TIMEOUT]:
            assert (state, trigger) in atcore.TRANSITIONS
    assert (State.IDLE, Trigger.UNSOLICITED) in atcore.TRANSITIONS
    assert (State.IDLE, Trigger.CONNECT) in atcore.TRANSITIONS


OPS = st.one_of(
    st.tuples(st.just("rx"), st.binary(max_size=40)),
    st.tuples(
        st.just("rx"),
        st.sampled_from(
            [b"\r\nOK\r\n", b"\r\nCONNECT\r\n", b"\r\n> ", b"0\r", b"1\r", b"AT\r", b"\r\nRING\r\n"]
        ),
    ),
    st.tuples(st.just("cmd"), st.sampled_from(["AT", "ATV0", "ATV1", "ATE0", "ATZ"])),
    st.tuples(st.just("prompt"), st.just('AT+CMGS="1"')),
    st.tuples(st.just("text"), st.just("body")),
    st.tuples(st.just("data"), st.just(b"x")),
    st.tuples(st.just("escape"), st.just(b"")),
    st.tuples(st.just("online_done"), st.just(b"")),
    st.tuples(st.just("abandon"), st.just(b"")),
    st.tuples(st.just("time"), st.floats(0, 10)),
)


@FAST
@given(ops=st.lists(OPS, max_size=30))
def test_any_sequence_only_raises_for_refused_calls(ops):
    core = ATCore(max_line=32)
    now = 0.0
    for op, arg in ops:
        try:
            if op == "rx":
                core.receive_data(arg)
            elif op == "time":
                now += arg
                core.handle_timer(now)
            elif op == "cmd":
                core.send_command(arg, now, timeout=1.0)
            elif op == "prompt":
                core.send_command(arg, now, prompt="> ", timeout=1.0)
            elif op == "text":
                core.send_text(arg, now)
            elif op == "data":
                core.send_data(arg)
            elif op == "escape":
                core.send_escape(now)
            elif op == "online_done":
                core.enter_command_mode()
            else:
                core.abandon()
        except ModemProtocolError as e:
            assert op != "rx" and op != "time"
            assert e.state in {s.name for s in State} and e.event in {t.name for t in Trigger}
        assert len(core.buffered) <= 32
        assert (core.command is None) == (core.state in (State.IDLE, State.DATA))


# -- settings and helpers -------------------------------------------------------------------------


def test_s3_and_s4_are_parameters_and_follow_ats3():
    core = ATCore(s3=ord("\r"), s4=ord("\n"))
    assert run(core, "ATS3=64", b"ATS3=64\r@\nOK@\n") == [
        Echo("ATS3=64\r"),
        Final(ResultCode.OK, "OK"),
    ]
    assert core.s3 == 64
    assert core.send_command("AT", 0.0) == b"AT@"
    core.abandon()
    other = ATCore(s3=ord("#"), echo=False)
    assert other.send_command("AT", 0.0) == b"AT#"
    other.receive_data(b"#\nOK#\n")
    assert other.events() == [Final(ResultCode.OK, "OK")]
    with pytest.raises(ConfigError):
        ATCore(s3=10, s4=10)
    with pytest.raises(ConfigError):
        ATCore(max_line=4)


def test_command_line_checks():
    core = ATCore()
    with pytest.raises(ModemProtocolError, match="start with AT"):
        core.send_command("+CSQ", 0.0)
    with pytest.raises(ModemProtocolError, match="line end"):
        core.send_command("AT\rAT", 0.0)
    assert core.state is State.IDLE


def test_format_command_and_quote():
    assert format_command("+CMGF", set="1") == "AT+CMGF=1"
    assert format_command("+CMGF", set=1) == "AT+CMGF=1"
    assert format_command("+CREG", query=True) == "AT+CREG?"
    assert format_command("+CREG", test=True) == "AT+CREG=?"
    assert format_command("+CGDCONT", set=[1, quote("IP"), quote("internet")]) == (
        'AT+CGDCONT=1,"IP","internet"'
    )
    assert format_command("AT+CFUN") == "AT+CFUN"
    assert quote('say "hi" \\o/') == '"say \\22hi\\22 \\5Co/"'
    with pytest.raises(ConfigError):
        format_command("+CMGF", set=1, query=True)
    with pytest.raises(ConfigError):
        format_command("+CMGF;+CSQ")


def test_response_prefixes():
    assert response_prefixes("AT+CREG?") == ("+CREG:",)
    assert response_prefixes('at+cgdcont=1,"IP","a;b";+CGACT=1') == ("+CGDCONT:", "+CGACT:")
    assert response_prefixes("ATE0V1+CMEE=2") == ("+CMEE:",)
    assert response_prefixes("ATD*99#") == ()
    assert response_prefixes("AT^SYSINFO") == ("^SYSINFO:",)
    assert response_prefixes("ATI") == ()


def test_the_package_namespace_is_lazy():
    assert modem.ATCore is ATCore and modem.ResultCode is ResultCode
    with pytest.raises(AttributeError):
        _ = modem.NoSuchThing
