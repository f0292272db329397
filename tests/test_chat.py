"""chat(8) scripts: the parser, the sans-I/O runner, the Port adapter, the CLI, and
compatibility with ppp's real chat program over socat pairs."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import re
import select
import shutil
import subprocess
import textwrap
import threading
import time
from collections.abc import Iterator, Sequence

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from serialhs.cli import chat as cli_chat
from serialhs.driver.port import Port
from serialhs.driver.transcript import Transcript
from serialhs.errors import ConfigError
from serialhs.log import TRACE
from serialhs.modem.chat import (
    DEFAULT_TIMEOUT,
    HIDDEN,
    TRANSITIONS,
    AbortStep,
    Break,
    ChatRunner,
    ChatScriptError,
    ChatStateError,
    ClearAbortStep,
    ClearReportStep,
    Done,
    Echo,
    EchoStep,
    ExpectStep,
    HangupStep,
    Log,
    Pause,
    Report,
    ReportStep,
    Say,
    SayStep,
    Send,
    SendBreak,
    SendStep,
    State,
    TimeoutStep,
    parse_script,
    tokenize,
)
from serialhs.modem.chatport import ChatResult, run_chat
from serialhs.sim.socat import SocatPair

CHAT = "/usr/sbin/chat"

# --- parser --------------------------------------------------------------------------------


def texts(script: str) -> list[str]:
    return [t.text for t in tokenize(script)]


def test_tokens_split_on_spaces_and_tabs_and_quotes_group():
    assert texts("'' ATZ\tOK  \"NO CARRIER\" 'a b'") == ["", "ATZ", "OK", "NO CARRIER", "a b"]


def test_a_quoted_token_ends_at_its_quote_and_the_next_starts_right_after():
    # chat's do_file: 'ab'cd is two tokens; a quote inside a plain word is literal.
    assert texts("'ab'cd x'a b'") == ["ab", "cd", "x'a", "b'"]


def test_a_backslash_protects_a_quote_inside_quotes():
    assert texts(r"'it\'s' end") == [r"it\'s", "end"]


def test_comments_are_lines_starting_with_hash_only():
    script = "# a comment\n'' ATZ # not a comment\n '# quoted'"
    assert texts(script) == ["", "ATZ", "#", "not", "a", "comment", "# quoted"]


def test_crlf_lines_read_like_lf_lines():
    assert texts("'' ATZ\r\nOK ''\r\n") == ["", "ATZ", "OK", ""]


def test_token_positions_are_line_and_column():
    tokens = tokenize("# c\n  ABORT  'BUSY'\n\tOK", source="s.chat")
    assert [(t.where.line, t.where.column) for t in tokens] == [(2, 3), (2, 10), (3, 2)]
    assert str(tokens[1].where) == "s.chat:2:10"


def test_unterminated_quote_names_line_and_column():
    with pytest.raises(ChatScriptError) as info:
        parse_script("'' ATZ\nOK 'ATDT123\n", source="dial.chat")
    err = info.value
    assert (err.source, err.line, err.column) == ("dial.chat", 2, 4)
    assert "dial.chat:2:4" in str(err) and "unterminated quote" in str(err)
    assert isinstance(err, ConfigError)


def test_expect_and_send_strings_alternate_across_lines():
    script = parse_script("''\nATZ\nOK ATDT5551212\nCONNECT")
    kinds = [type(s).__name__ for s in script.steps]
    assert kinds == ["ExpectStep", "SendStep", "ExpectStep", "SendStep", "ExpectStep"]
    assert script.steps[1].string.data == b"ATZ\r"


def test_every_keyword_takes_the_next_token():
    script = parse_script(
        """
        ABORT BUSY
        CLR_ABORT BUSY
        REPORT CONNECT
        CLR_REPORT CONNECT
        TIMEOUT 10
        ECHO ON
        ECHO OFF
        HANGUP OFF
        HANGUP ON
        SAY 'hello\\n'
        """
    )
    assert [type(s) for s in script.steps] == [
        AbortStep,
        ClearAbortStep,
        ReportStep,
        ClearReportStep,
        TimeoutStep,
        EchoStep,
        EchoStep,
        HangupStep,
        HangupStep,
        SayStep,
    ]
    abort, _, report, _, timeout, echo_on, echo_off, hup_off, hup_on, say = script.steps
    assert abort.pattern == b"BUSY" and report.pattern == b"CONNECT"
    assert timeout.seconds == 10.0
    assert (echo_on.on, echo_off.on, hup_off.on, hup_on.on) == (True, False, False, True)
    assert (say.text, say.end) == ("hello\n", "\r")


def test_keywords_are_keywords_only_in_an_expect_position():
    script = parse_script("'' ABORT")
    assert isinstance(script.steps[1], SendStep)
    assert script.steps[1].string.data == b"ABORT\r"


def test_quoting_a_keyword_does_not_hide_it_as_in_chat():
    # chat compares the unquoted text; \A is the way to expect a literal ABORT.
    assert isinstance(parse_script("'ABORT' BUSY").steps[0], AbortStep)
    step = parse_script(r"\ABORT ''").steps[0]
    assert isinstance(step, ExpectStep) and step.chain[0][0] == b"ABORT"


def test_timeout_values():
    def seconds(value: str) -> float:
        step = parse_script(f"TIMEOUT {value}").steps[0]
        assert isinstance(step, TimeoutStep)
        return step.seconds

    assert seconds("5") == 5.0
    assert seconds("0.25") == 0.25
    assert seconds("0") == DEFAULT_TIMEOUT  # chat: TIMEOUT 0 restores 45 s
    with pytest.raises(ChatScriptError, match="1:9: TIMEOUT takes a number"):
        parse_script("TIMEOUT soon")


@pytest.mark.parametrize("keyword", ["ECHO", "HANGUP"])
def test_echo_and_hangup_take_on_or_off(keyword):
    with pytest.raises(ChatScriptError, match=f"{keyword} takes ON or OFF"):
        parse_script(f"{keyword} YES")


def send_parts(token: str, **options):
    step = parse_script(f"'' {token}", **options).steps[1]
    assert isinstance(step, SendStep)
    return step.string.parts


@pytest.mark.parametrize(
    ("token", "parts"),
    [
        ("ATZ", (b"ATZ\r",)),
        ("''", (b"\r",)),
        (r"hello\c", (b"hello",)),
        (r"a\bb", (b"a\bb\r",)),
        (r"a\nb\rc\sd\te", (b"a\nb\rc d\te\r",)),
        (r"a\\b", (b"a\\b\r",)),
        (r"a\Nb", (b"a\x00b\r",)),
        (r"a\0b\101\1010", (b"a\x00bAA0\r",)),
        ("^C^q^^", (b"\x03\x11\x1e\r",)),
        ("x^", (b"x^\r",)),
        (r"\-\'\x", (b"-'x\r",)),
        (r"AT\dZ", (b"AT", Pause(1.0), b"Z\r")),
        (r"AT\pZ", (b"AT", Pause(0.1), b"Z\r")),
        (r"\K\c", (SendBreak(),)),
        (r"a\Kb", (b"a", SendBreak(), b"b\r")),
        ("EOT", (b"\x04",)),
        ("BREAK", (SendBreak(),)),
        ("'EOT'", (b"\x04",)),
    ],
)
def test_send_escapes(token, parts):
    assert send_parts(token) == parts


@pytest.mark.parametrize(
    ("token", "expected"),
    [
        (r"OK\r\n", b"OK\r\n"),
        (r"a\sb\tc\bd\\e", b"a b\tc\bd\\e"),
        ("^M", b"\r"),
        (r"\101\-", b"A-"),
        ("'NO CARRIER'", b"NO CARRIER"),
    ],
)
def test_expect_escapes(token, expected):
    step = parse_script(token).steps[0]
    assert isinstance(step, ExpectStep)
    assert step.chain == ((expected, None),)


@pytest.mark.parametrize("escape", ["c", "d", "K", "N", "p", "q", "T", "U"])
def test_send_only_escapes_are_errors_in_an_expect_with_their_column(escape):
    with pytest.raises(ChatScriptError) as info:
        parse_script(f"'' ATZ\nOK\\{escape} x")
    assert (info.value.line, info.value.column) == (2, 3)
    assert "send string" in str(info.value)


def test_a_quoted_token_error_column_counts_the_quote():
    with pytest.raises(ChatScriptError) as info:
        parse_script(r"'O K\d'")
    assert info.value.column == 5


@pytest.mark.parametrize(
    ("token", "chain"),
    [
        ("ogin:", ((b"ogin:", None),)),
        ("ogin:--ogin:", ((b"ogin:", b"\r"), (b"ogin:", None))),
        ("ogin:-BREAK-ogin:", ((b"ogin:", "break"), (b"ogin:", None))),
        ("OK-AT-OK-AT-OK", ((b"OK", b"AT\r"), (b"OK", b"AT\r"), (b"OK", None))),
        ("OK-AT", ((b"OK", b"AT\r"),)),  # chat: after the sub-send, done
        ("OK-", ((b"OK", None),)),
        ("OK--", ((b"OK", b"\r"),)),
        ("-", ((b"", None),)),
        ("''", ()),
        (r"a\-b-c", ((b"a-b", b"c\r"),)),
    ],
)
def test_sub_expects(token, chain):
    step = parse_script(token).steps[0]
    assert isinstance(step, ExpectStep)
    shown = tuple(
        (e, None if s is None else ("break" if s.parts == (SendBreak(),) else s.data))
        for e, s in step.chain
    )
    assert shown == chain


@pytest.mark.parametrize(
    ("script", "where", "needle"),
    [
        ("'' ATZ ABORT", (1, 8), "ABORT at the end of the script needs a value"),
        ("'' @/etc/ppp/secret", (1, 4), "sending from a file"),
        ("ABORT ''", (1, 8), "empty ABORT string"),
        ("REPORT ''", (1, 9), "empty REPORT string"),
        ("ABORT " + "x" * 50, (1, 7), "at most 49 bytes"),
        ("'' AT OK\xe9", (1, 7), "7-bit ASCII"),
        ("'' AT\\", (1, 6), "backslash at the end"),
        ("'' ATDT\\T", (1, 8), "\\T needs a phone number; give one with -T"),
        ("'' a\\cb", (1, 5), "\\c must be the last thing"),
        ("'' a^@", (1, 5), "NUL"),
        ("SAY 'wait\\d'", (1, 10), "not valid in a SAY string"),
        ("x" * 1024, (1, 1), "longer than 1023 bytes"),
    ],
)
def test_bad_scripts_get_clear_errors_with_line_and_column(script, where, needle):
    with pytest.raises(ChatScriptError) as info:
        parse_script(script)
    assert (info.value.line, info.value.column) == where
    assert needle in str(info.value)


def test_environment_substitution_only_with_env():
    assert send_parts("$HOME") == (b"$HOME\r",)
    assert send_parts("$USER\\$x", env={"USER": "ppp"}) == (b"ppp$x\r",)
    with pytest.raises(ChatScriptError, match=r"\$NOPE is not set"):
        parse_script("'' $NOPE", env={})


def test_phone_numbers():
    assert send_parts(r"ATDT\T", phone="5551212") == (b"ATDT5551212\r",)
    assert send_parts(r"ATDT\U\c", phone2="99") == (b"ATDT99",)


def test_say_strings_keep_chats_trailing_carriage_return_unless_backslash_c():
    steps = parse_script(r"SAY 'one\n' SAY 'two\c' SAY '^Gx'").steps
    assert [(s.text, s.end) for s in steps] == [("one\n", "\r"), ("two", ""), ("\x07x", "\r")]


def test_secrets_are_every_quiet_send_string_without_its_return():
    script = parse_script(r"ogin: ppp ssword: \qhello2u2 x-\qsub-y '' '' pa\dss\q")
    assert script.secrets == (b"hello2u2", b"sub", b"pa", b"ss")


# --- the runner, in simulated time --------------------------------------------------------


@dataclasses.dataclass
class Run:
    code: int
    reason: str
    end: float
    sent: bytes
    events: list[tuple[float, object]]

    def of(self, kind: type) -> list:
        return [e for _, e in self.events if isinstance(e, kind)]


def simulate(
    script: str,
    answers: Sequence[tuple[bytes, bytes | tuple[float, bytes]]] = (),
    *,
    timeout: float = 45.0,
    start: float = 1000.0,
    chunks: Sequence[int] | None = None,
    lose_at: float | None = None,
    first: bytes = b"",
    **options: object,
) -> Run:
    """Run a script against a canned modem in simulated time.

    ``answers``: (trigger, answer) in order: once the runner has sent ``trigger``,
    ``answer`` arrives (after ``delay`` seconds if given as (delay, bytes)).
    ``chunks`` cuts every answer at these positions into separate arrivals.
    ``first`` arrives at the start, before anything is sent.
    """
    runner = ChatRunner(
        parse_script(textwrap.dedent(script)),
        now=start,
        default_timeout=timeout,
        **options,  # type: ignore[arg-type]
    )
    rules = list(answers)
    heard = bytearray()
    sent = bytearray()
    queue: list[tuple[float, bytes]] = [(start, first)] if first else []
    events: list[tuple[float, object]] = []
    now = start
    for _ in range(100_000):
        for event in runner.events():
            events.append((now, event))
            if isinstance(event, Send):
                sent += event.data
                heard += event.data
                while rules and rules[0][0] in heard:
                    trigger, answer = rules.pop(0)
                    del heard[: heard.index(trigger) + len(trigger)]
                    delay, data = answer if isinstance(answer, tuple) else (0.0, answer)
                    cuts = sorted({c for c in chunks or () if 0 < c < len(data)})
                    pieces = [
                        data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)
                    ]
                    for k, piece in enumerate(pieces):
                        # the modem's output stays in order: never before what it sent last
                        at = max(now + delay + k * 1e-4, queue[-1][0] if queue else now)
                        queue.append((at, piece))
            if isinstance(event, Done):
                return Run(event.exit_code, event.reason, now, bytes(sent), events)
        timer = runner.get_timer()
        candidates = [t for t, _ in queue] + ([timer] if timer is not None else [])
        if lose_at is not None:
            candidates.append(lose_at)
        assert candidates, "the runner waits for nothing"
        now = max(now, min(candidates))
        if lose_at is not None and now >= lose_at:
            runner.connection_lost(now, "port gone")
            lose_at = None
            continue
        due = [item for item in queue if item[0] <= now]
        queue = [item for item in queue if item[0] > now]
        for _, data in due:
            runner.receive_data(data, now)
        runner.handle_timer(now)
    raise AssertionError("the script did not end")


DIAL = """
    ABORT BUSY
    ABORT 'NO CARRIER'
    REPORT CONNECT
    '' ATZ
    OK ATDT5551212
    CONNECT \\c
"""
MODEM_OK = [
    (b"ATZ\r", b"ATZ\r\r\nOK\r\n"),
    (b"ATDT5551212\r", (2.0, b"\r\nCONNECT 33600/LAPM\r\n")),
]


def test_a_script_completes():
    run = simulate(DIAL, MODEM_OK)
    assert (run.code, run.reason) == (0, "script completed")
    assert run.sent == b"ATZ\rATDT5551212\r"
    assert run.of(Report) == [Report("CONNECT 33600/LAPM")]
    assert run.end == pytest.approx(1002.0, abs=0.01)


def test_an_expect_that_never_comes_times_out_with_3():
    run = simulate("'' ATZ OK", timeout=45.0)
    assert run.code == 3
    assert run.end == pytest.approx(1045.0)
    assert "timed out after 45 s waiting for 'OK'" in run.reason


@pytest.mark.parametrize(("answer", "code"), [(b"BUSY\r\n", 4), (b"NO CARRIER\r\n", 5)])
def test_abort_strings_give_4_for_the_first_and_5_for_the_second(answer, code):
    run = simulate(DIAL, [MODEM_OK[0], (b"ATDT5551212\r", answer)])
    assert run.code == code
    assert "received ABORT string" in run.reason


def test_clear_abort_removes_a_string_and_renumbers_the_rest_as_chat_does():
    script = "ABORT A1 ABORT B2 ABORT C3 CLR_ABORT A1 '' AT OK"
    assert simulate(script, [(b"AT\r", b"C3\r\n")]).code == 5  # real chat gives 5 too
    assert simulate(script, [(b"AT\r", b"A1\r\nOK")]).code == 0


def test_the_expect_string_wins_over_an_abort_string_on_the_same_byte():
    assert simulate("ABORT BUSY '' AT BUSY", [(b"AT\r", b"BUSY")]).code == 0


def test_report_once_and_clear_report():
    script = "REPORT CONNECT '' AT OK '' AT2 OK"
    run = simulate(script, [(b"AT\r", b"CONNECT 1\r\nOK"), (b"AT2\r", b"CONNECT 2\r\nOK")])
    assert run.of(Report) == [Report("CONNECT 1")]  # a REPORT string reports once
    run = simulate("REPORT CONNECT CLR_REPORT CONNECT '' AT OK", [(b"AT\r", b"CONNECT 1\r\nOK")])
    assert run.of(Report) == []


def test_a_report_line_ends_at_any_control_character():
    run = simulate("REPORT CONNECT '' AT OK", [(b"AT\r", b"CONNECT 1\tx\r\nOK")])
    assert run.of(Report) == [Report("CONNECT 1")]


def test_the_runner_waits_a_second_for_the_rest_of_a_report_line_at_the_end():
    run = simulate("REPORT CONNECT '' AT CONNECT", [(b"AT\r", b"CONNECT")])
    assert run.code == 0 and run.of(Report) == [Report("CONNECT")]
    assert run.end == pytest.approx(1001.0)  # chat: alarm(1) for the rest of the line


def test_timeout_changes_the_expect_timeout():
    run = simulate("TIMEOUT 5 '' AT OK")
    assert (run.code, run.end) == (3, pytest.approx(1005.0))
    run = simulate("TIMEOUT 5 TIMEOUT 0 '' AT OK", timeout=2.0)
    assert run.end == pytest.approx(1045.0)  # TIMEOUT 0 means chat's 45 s, not -t


def test_sub_expects_retry_with_the_sub_send():
    answers = [(b"AT\r", b"nothing\r\n"), (b"AT\r", b"OK\r\n")]
    run = simulate("TIMEOUT 2 '' AT OK-AT-OK", answers)
    assert (run.code, run.sent, run.end) == (0, b"AT\rAT\r", pytest.approx(1002.0))
    run = simulate("TIMEOUT 2 '' AT OK-AT-OK")
    assert (run.code, run.sent, run.end) == (3, b"AT\rAT\r", pytest.approx(1004.0))


def test_expect_then_send_with_nothing_after_succeeds_once_sent():
    run = simulate("TIMEOUT 1 '' AT OK-AT")
    assert (run.code, run.sent) == (0, b"AT\rAT\r")


def test_sub_send_break():
    run = simulate("TIMEOUT 1 ogin:-BREAK-ogin: ppp", [])
    assert run.code == 3 and len(run.of(Break)) == 1


def test_delays_are_timers():
    run = simulate(r"'' AT\dZ\pY\c")
    times = [(t, e.data) for t, e in run.events if isinstance(e, Send)]
    assert times == [
        (1000.0, b"AT"),
        (pytest.approx(1001.0), b"Z"),
        (pytest.approx(1001.1), b"Y"),
    ]


def test_bytes_arriving_during_a_delay_are_kept_for_the_next_expect():
    runner = ChatRunner(parse_script(r"'' A\dB OK"), now=0.0)
    assert runner.events() == [Send(b"A")]
    assert runner.get_timer() == 1.0
    runner.receive_data(b"OK\r\n", 0.5)  # nobody is reading yet
    assert runner.events() == []
    runner.handle_timer(1.0)
    assert runner.events() == [Send(b"B\r"), Done(0, "script completed")]
    assert runner.unread() == b"\r\n"


def test_backslash_c_sends_no_return_and_k_sends_a_break():
    run = simulate(r"'' ATZ\c '' \K\c '' BREAK '' EOT")
    assert run.sent == b"ATZ\x04"
    assert run.of(Break) == [Break(0.25), Break(0.25)]


def test_the_eighth_bit_of_received_bytes_is_ignored_as_in_chat():
    assert simulate("'' AT OK", [(b"AT\r", b"\xcf\xcb")], timeout=1).code == 0


def test_say_and_echo():
    answers = [(b"AT\r", b"AT\r\r\nOK\r\n"), (b"AT2\r", b"OK2\r\n")]
    run = simulate(r"SAY 'dialling\n' '' AT OK '' ECHO ON '' AT2 OK2 '' ECHO OFF", answers)
    assert run.of(Say) == [Say("dialling\n", "\r")]
    # Only while ECHO is ON; the CR LF after the first OK was read by the next expect.
    assert b"".join(e.data for e in run.of(Echo)) == b"\r\nOK2"


def test_echo_on_from_the_start():
    run = simulate("'' AT OK", [(b"AT\r", b"xOKy")], echo=True)
    assert b"".join(e.data for e in run.of(Echo)) == b"xOK"  # what the expect read


def test_verbose_logs_like_chat():
    run = simulate("ABORT BUSY '' AT OK", [(b"AT\r", b"AT\r\r\nOK\r\n")], verbose=True)
    logs = [e.text for e in run.of(Log)]
    assert logs[:3] == ["abort on (BUSY)", "send (AT^M)", "expect (OK)"]
    assert "AT^M^M" in logs and " -- got it" in logs


def test_connection_lost_gives_2():
    run = simulate("'' AT OK", lose_at=1000.5)
    assert (run.code, run.reason) == (2, "port gone")


def test_connection_lost_keeps_a_partial_report():
    run = simulate("REPORT CONNECT '' AT OK", [(b"AT\r", b"CONNECT 96")], lose_at=1000.5)
    assert run.code == 2 and run.of(Report) == [Report("CONNECT 96")]


def test_hangup_gives_2_unless_hangup_off():
    runner = ChatRunner(parse_script("'' AT OK"), now=0.0)
    runner.hangup(1.0)
    assert runner.events()[-1] == Done(2, "hangup: the modem dropped carrier")
    runner = ChatRunner(parse_script("HANGUP OFF '' AT OK '' HANGUP ON OK"), now=0.0)
    runner.hangup(1.0)
    assert not runner.done
    runner.receive_data(b"OK", 2.0)
    runner.hangup(3.0)
    assert runner.events()[-1] == Done(2, "hangup: the modem dropped carrier")


@pytest.mark.parametrize("keyword", ["ABORT", "REPORT"])
def test_more_than_50_abort_or_report_strings_is_error_2_as_in_chat(keyword):
    script = " ".join(f"{keyword} S{n}" for n in range(51)) + " '' AT"
    run = simulate(script)
    assert (run.code, run.sent) == (2, b"")
    assert f"too many {keyword} strings" in run.reason


def test_a_finished_runner_ignores_input():
    runner = ChatRunner(parse_script("'' AT"), now=0.0)
    assert runner.done and runner.get_timer() is None
    runner.receive_data(b"late", 1.0)
    runner.handle_timer(99.0)
    runner.connection_lost(99.0)
    assert runner.events()[-1] == Done(0, "script completed")
    assert runner.unread() == b""


def test_the_state_table_refuses_unknown_moves():
    runner = ChatRunner(parse_script("'' AT OK"), now=0.0)
    assert runner.state is State.EXPECTING
    with pytest.raises(ChatStateError, match="'expecting' on 'resume'"):
        runner._goto("resume")
    assert all(
        any(src is state for src, _ in TRANSITIONS) for state in State if state is not State.DONE
    )


@pytest.mark.parametrize("bad", [0, -1, float("inf"), float("nan")])
def test_the_default_timeout_must_be_positive_and_finite(bad):
    with pytest.raises(ConfigError, match="positive number of seconds"):
        ChatRunner(parse_script("OK"), now=0.0, default_timeout=bad)


SECRET = b"hello2u2"
LOGIN = r"""
    REPORT ssword
    ogin: ppp
    ssword: \qhello2u2
    '$ ' ''
"""


def _no_secret_outside_sends(run: Run) -> None:
    for _, event in run.events:
        if isinstance(event, Send):
            assert SECRET.decode() not in repr(event)
            continue
        assert SECRET.decode() not in repr(event), event


@given(cuts=st.lists(st.integers(min_value=1, max_value=40), max_size=8))
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_a_quiet_string_appears_in_no_event_but_its_send(cuts):
    # The modem echoes the password back; wherever the reads split it, neither the
    # echo, the log nor a report shows it.
    answers = [(b"ppp\r", b"ppp\r\nPassword:"), (SECRET + b"\r", SECRET + b"\r\nwelcome $ ")]
    run = simulate(LOGIN, answers, first=b"login: ", chunks=cuts, echo=True, verbose=True)
    assert run.code == 0
    assert SECRET in run.sent
    assert any(isinstance(e, Send) and e.quiet for _, e in run.events)
    _no_secret_outside_sends(run)
    assert HIDDEN in "".join(e.text for e in run.of(Log))
    echoed = b"".join(e.data for e in run.of(Echo))
    assert echoed.startswith(b"login: ppp\r\nPassword:") and HIDDEN.encode() in echoed


@given(cuts=st.lists(st.integers(min_value=1, max_value=30), max_size=10))
@settings(max_examples=80, deadline=None)
def test_output_split_at_any_points_gives_the_same_result(cuts):
    whole = simulate(DIAL, MODEM_OK)
    split = simulate(DIAL, MODEM_OK, chunks=cuts)
    assert (split.code, split.sent, split.of(Report)) == (whole.code, whole.sent, whole.of(Report))
    busy = [MODEM_OK[0], (b"ATDT5551212\r", b"\r\nNO CARRIER\r\n")]
    assert simulate(DIAL, busy, chunks=cuts).code == 5


# --- the adapter on a socat pair ------------------------------------------------------------


class Responder:
    """A scripted modem on one end of a pty pair: waits for each trigger in turn and
    answers it. Records everything it heard. Every wait is bounded."""

    def __init__(self, path: str, answers: Sequence[tuple[bytes, bytes]] = ()) -> None:
        self.fd = os.open(path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
        self.answers = list(answers)
        self.heard = bytearray()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._serve, name="chat-responder", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        pending = bytearray()
        while not self._stop.is_set():
            ready, _, _ = select.select([self.fd], [], [], 0.02)
            if not ready:
                continue
            try:
                data = os.read(self.fd, 4096)
            except BlockingIOError:
                continue
            except OSError:
                return
            if not data:
                return
            with self._lock:
                self.heard += data
            pending += data
            while self.answers:
                trigger, answer = self.answers[0]
                at = pending.find(trigger)
                if at < 0:
                    break
                del pending[: at + len(trigger)]
                self.answers.pop(0)
                if answer:
                    os.write(self.fd, answer)

    def settled(self, quiet: float = 0.1, limit: float = 2.0) -> bytes:
        """What was heard, once nothing new came for ``quiet`` seconds."""
        deadline = time.monotonic() + limit
        last = -1
        while time.monotonic() < deadline:
            with self._lock:
                now = len(self.heard)
            if now == last:
                break
            last = now
            time.sleep(quiet)
        with self._lock:
            return bytes(self.heard)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2.0)
        os.close(self.fd)


@pytest.fixture
def lock_dir(tmp_path, monkeypatch):
    d = tmp_path / "lock"
    d.mkdir()
    monkeypatch.setenv("SERIALHS_LOCK_DIR", str(d))
    return d


@pytest.fixture
def pairs(request) -> Iterator[list[SocatPair]]:
    """Two socat pairs, both stopped at the end whatever happens."""
    made: list[SocatPair] = []
    request.addfinalizer(lambda: [p.stop() for p in made])
    for _ in range(2):
        made.append(SocatPair().start())
    yield made


@pytest.fixture
def responders(request):
    """Makes Responders that are stopped at the end whatever happens."""
    made: list[Responder] = []
    request.addfinalizer(lambda: [r.stop() for r in made])

    def make(path: str, answers: Sequence[tuple[bytes, bytes]] = ()) -> Responder:
        made.append(Responder(path, answers))
        return made[-1]

    return make


def ours(path: str, script: str, lock_dir, **options) -> ChatResult:
    with Port(path, lines="tolerant", lock_dir=lock_dir) as port:
        return run_chat(port, parse_script(script), **options)


def test_run_chat_on_a_pty(serial_pair, responders, lock_dir):
    modem = responders(serial_pair.b, [(b"ATZ\r", b"OK\r\n"), (b"ATDT1\r", b"CONNECT 9600\r\n")])
    says: list[str] = []
    result = ours(
        serial_pair.a,
        "REPORT CONNECT SAY 'dialling' '' ATZ OK ATDT1 CONNECT",
        lock_dir,
        say=says.append,
    )
    # The REPORT line was read up to its CR; the LF after it is left unread.
    assert result == ChatResult(0, "script completed", ("CONNECT 9600",), b"\n")
    assert says == ["dialling\r"]
    assert modem.settled() == b"ATZ\rATDT1\r"


def test_run_chat_keeps_the_bytes_after_the_last_match(serial_pair, responders, lock_dir):
    responders(serial_pair.b, [(b"AT\r", b"OK\r\n~~ppp")])
    with Port(serial_pair.a, lines="tolerant", lock_dir=lock_dir) as port:
        result = run_chat(port, parse_script("'' AT OK"))
        rest = result.unread
        while len(rest) < len(b"\r\n~~ppp"):
            rest += port.read_some(timeout=1.0)
    assert rest == b"\r\n~~ppp"


def test_a_secret_reaches_neither_the_transcript_nor_the_log(
    serial_pair, responders, lock_dir, caplog
):
    modem = responders(
        serial_pair.b,
        [(b"ppp\r", b"Password:"), (SECRET + b"\r", b"<" + SECRET + b">\r\n$ ")],
    )
    transcript = Transcript()
    caplog.set_level(TRACE, logger="serialhs")
    lines: list[str] = []
    with Port(serial_pair.a, lines="tolerant", lock_dir=lock_dir, transcript=transcript) as port:
        os.write(modem.fd, b"login: ")
        result = run_chat(
            port, parse_script(LOGIN), echo_on=True, echo=lambda d: None, log_line=lines.append
        )
    assert result.exit_code == 0
    assert SECRET + b"\r" in modem.settled()  # it did go out
    for event in transcript.events:
        assert SECRET not in event.data and SECRET.decode() not in event.text
    assert b"***\r" in transcript.data("tx")
    assert SECRET.decode() not in caplog.text
    assert "secret redacted" in caplog.text
    assert f"send ({HIDDEN})" in lines
    assert all(SECRET.decode() not in line for line in lines)
    assert all(SECRET.decode() not in r for r in result.reports)


def test_a_vanished_port_ends_the_script_with_2(serial_pair, lock_dir):
    with Port(serial_pair.a, lines="tolerant", lock_dir=lock_dir) as port:
        timer = threading.Timer(0.2, serial_pair.kill)
        timer.start()
        try:
            started = time.monotonic()
            result = run_chat(port, parse_script("'' AT OK"), timeout=5.0)
        finally:
            timer.cancel()
    assert result.exit_code == 2
    assert "read failed" in result.reason or "write failed" in result.reason
    assert time.monotonic() - started < 3.0


def test_a_failed_break_ends_with_2_even_when_the_script_had_finished(serial_pair, lock_dir):
    # A pty has no lines: strict ports refuse a break. The runner had already run
    # to its end when the adapter tried the break; the failure still wins.
    with Port(serial_pair.a, lock_dir=lock_dir) as port:
        result = run_chat(port, parse_script(r"'' \K\c"))
    assert result.exit_code == 2
    assert "break failed" in result.reason and "tolerant" in result.reason


def test_a_break_on_a_tolerant_pty_is_skipped(serial_pair, lock_dir):
    with Port(serial_pair.a, lock_dir=lock_dir, lines="tolerant") as port:
        assert run_chat(port, parse_script(r"'' \K\c '' BREAK")).exit_code == 0


# --- compatibility with ppp's chat ---------------------------------------------------------

needs_chat = pytest.mark.skipif(
    not (os.access(CHAT, os.X_OK) and shutil.which("socat")), reason="needs ppp's chat and socat"
)

_REPORT_LINE = re.compile(r"chat:  \w{3} [ \d]\d \d\d:\d\d:\d\d (.*)")


@dataclasses.dataclass
class Both:
    theirs: int
    ours: int
    theirs_sent: bytes
    ours_sent: bytes
    theirs_reports: list[str]
    ours_reports: list[str]


def against_real_chat(
    script: str,
    answers: Sequence[tuple[bytes, bytes]],
    pairs: list[SocatPair],
    responders,
    lock_dir,
    tmp_path,
    *,
    argv: Sequence[str] | None = None,
) -> Both:
    """Run ppp's chat and our runner at the same time, each on its own pair against
    the same scripted responder."""
    path = tmp_path / "script.chat"
    path.write_text(script)
    theirs_modem = responders(pairs[0].b, answers)
    ours_modem = responders(pairs[1].b, answers)
    line = os.open(pairs[0].a, os.O_RDWR | os.O_NOCTTY)
    try:
        args = [CHAT, *argv] if argv is not None else [CHAT, "-f", str(path)]
        proc = subprocess.Popen(args, stdin=line, stdout=line, stderr=subprocess.PIPE)
        try:
            mine = ours(pairs[1].a, script, lock_dir)
            _, err = proc.communicate(timeout=15)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=5)
    finally:
        os.close(line)
    theirs_reports = [
        m.group(1) for m in map(_REPORT_LINE.fullmatch, err.decode().splitlines()) if m
    ]
    return Both(
        proc.returncode,
        mine.exit_code,
        theirs_modem.settled(),
        ours_modem.settled(),
        theirs_reports,
        list(mine.reports),
    )


COMPAT = {
    "success": (
        "ABORT BUSY ABORT 'NO CARRIER' REPORT CONNECT\n'' ATZ OK ATDT5551212 CONNECT\n",
        [(b"ATZ\r", b"ATZ\r\r\nOK\r\n"), (b"ATDT5551212\r", b"\r\nCONNECT 33600/LAPM\r\n")],
        0,
    ),
    "busy": (
        "ABORT BUSY ABORT 'NO CARRIER'\n'' ATZ OK ATDT5551212 CONNECT\n",
        [(b"ATZ\r", b"OK\r\n"), (b"ATDT5551212\r", b"BUSY\r\n")],
        4,
    ),
    "no-carrier": (
        "ABORT BUSY ABORT 'NO CARRIER'\n'' ATZ OK ATDT5551212 CONNECT\n",
        [(b"ATZ\r", b"OK\r\n"), (b"ATDT5551212\r", b"NO CARRIER\r\n")],
        5,
    ),
    "clr-abort": (
        "ABORT A1 ABORT B2 ABORT C3 CLR_ABORT A1 '' AT OK\n",
        [(b"AT\r", b"C3\r\n")],
        5,
    ),
    "timeout": ("TIMEOUT 1\n'' ATZ OK\n", [], 3),
    "sub-expect": ("TIMEOUT 1\n'' AT OK-AT-OK\n", [(b"AT\r", b"?\r\n"), (b"AT\r", b"OK\r\n")], 0),
    "escapes": (
        "# every send escape that puts bytes on the line\n"
        "'' 'a\\Nb\\0c\\101\\\\d^Ge\\-f\\sg\\th\\bi'\n"
        "'' \"x\\ry\\nz\\c\" '' EOT '' 'p\\pq\\dr'\n",
        [],
        0,
    ),
}


@needs_chat
@pytest.mark.parametrize("case", list(COMPAT))
def test_same_exit_code_and_bytes_as_ppps_chat(case, pairs, responders, lock_dir, tmp_path):
    script, answers, code = COMPAT[case]
    both = against_real_chat(script, answers, pairs, responders, lock_dir, tmp_path)
    assert (both.theirs, both.ours) == (code, code)
    assert both.ours_sent == both.theirs_sent
    assert both.ours_reports == both.theirs_reports
    if case == "success":
        assert both.ours_sent == b"ATZ\rATDT5551212\r"
        assert both.ours_reports == ["CONNECT 33600/LAPM"]


@needs_chat
def test_same_as_chat_given_the_script_as_arguments(pairs, responders, lock_dir, tmp_path):
    answers = [(b"AT\r", b"OK\r\n"), (b"ATI\r", b"BUSY\r\n")]
    argv = ["-t", "2", "ABORT", "BUSY", "", "AT", "OK", "ATI", "OK"]
    both = against_real_chat(
        "ABORT BUSY '' AT OK ATI OK", answers, pairs, responders, lock_dir, tmp_path, argv=argv
    )
    assert (both.theirs, both.ours) == (4, 4)
    assert both.ours_sent == both.theirs_sent == b"AT\rATI\r"


# --- the CLI --------------------------------------------------------------------------------


def cli(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="serialhs")
    sub = parser.add_subparsers(dest="command", required=True)
    cli_chat.register(sub)
    args = parser.parse_args(["chat", *argv])
    return int(args.run(args))


def test_cli_completes_a_script_file(serial_pair, responders, lock_dir, tmp_path, capsys):
    script = tmp_path / "dial"
    script.write_text("ABORT BUSY\nREPORT CONNECT\n'' ATZ\nOK ATDT5551212\nCONNECT ''\n")
    modem = responders(
        serial_pair.b, [(b"ATZ\r", b"OK\r\n"), (b"ATDT5551212\r", b"CONNECT 33600/LAPM\r\n")]
    )
    assert cli(serial_pair.a, str(script), "--lines", "tolerant", "--settings", "115200 8N1") == 0
    assert modem.settled() == b"ATZ\rATDT5551212\r\r"
    assert re.search(r"chat:  .* CONNECT 33600/LAPM", capsys.readouterr().err)


def test_cli_busy_exits_4(serial_pair, responders, lock_dir, capsys):
    responders(serial_pair.b, [(b"ATZ\r", b"OK\r\n"), (b"ATD1\r", b"BUSY\r\n")])
    script = "ABORT BUSY ABORT 'NO CARRIER' '' ATZ OK ATD1 CONNECT"
    assert cli(serial_pair.a, "-s", script, "--lines", "tolerant", "-t", "5") == 4
    assert "received ABORT string 'BUSY'" in capsys.readouterr().err


def test_cli_verbose_hides_quiet_strings(serial_pair, responders, lock_dir, capsys):
    responders(serial_pair.b, [(b"ppp\r", b"Password:")])
    script = r"'' ppp ssword: \qhello2u2"
    assert cli(serial_pair.a, "-s", script, "--lines", "tolerant", "-v") == 0
    err = capsys.readouterr().err
    assert f"send ({HIDDEN})" in err and "hello2u2" not in err


def test_cli_echo_say_and_report_file(serial_pair, responders, lock_dir, tmp_path, capsys):
    responders(serial_pair.b, [(b"AT\r", b"\x01hi\r\nCONNECT 9600\r\n")])
    reports = tmp_path / "reports"
    script = r"REPORT CONNECT SAY 'dialling\n' '' AT CONNECT"
    assert cli(serial_pair.a, "-s", script, "--lines", "tolerant", "-e", "-r", str(reports)) == 0
    err = capsys.readouterr().err
    assert err.startswith("dialling\n\r")  # SAY, written as chat writes it
    assert "^Ahi\nCONNECT\n" in err  # the echo: no CRs, control characters as ^X
    assert re.fullmatch(r"chat:  .* CONNECT 9600\n", reports.read_text())


def test_cli_bad_script_exits_1_naming_line_and_column(tmp_path, capsys):
    script = tmp_path / "bad"
    script.write_text("'' ATZ\nOK 'ATDT\n")
    assert cli("/dev/null", str(script)) == 1
    assert f"{script}:2:4: unterminated quote" in capsys.readouterr().err


def test_cli_wants_exactly_one_script(capsys):
    assert cli("/dev/null") == 1
    assert cli("/dev/null", "x", "-s", "y") == 1
    assert "exactly one script" in capsys.readouterr().err


def test_cli_missing_port_exits_2(tmp_path, capsys, lock_dir):
    assert cli(str(tmp_path / "ttyNOPE"), "-s", "'' AT") == 2
    assert "no such device" in capsys.readouterr().err


@pytest.mark.parametrize("bad", ["0", "-3", "inf"])
def test_cli_bad_timeout_exits_1(bad, capsys):
    assert cli("/dev/null", "-s", "'' AT", "-t", bad) == 1
    assert "-t takes a positive number" in capsys.readouterr().err


def test_logging_of_the_adapter_goes_to_serialhs_modem(serial_pair, responders, lock_dir, caplog):
    responders(serial_pair.b, [(b"AT\r", b"OK\r\n")])
    caplog.set_level(logging.DEBUG, logger="serialhs.modem")
    assert ours(serial_pair.a, "'' AT OK", lock_dir).exit_code == 0
    assert "chat: expect (OK)" in caplog.text
