"""The synchronous Port over socat pairs (data, settings, errors) and loop:// (lines)."""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
import termios
import textwrap
import threading
import time

import pytest

from serialhs.driver.lines import Lines
from serialhs.driver.port import Port, open_port
from serialhs.driver.settings import SerialSettings
from serialhs.driver.transcript import Transcript
from serialhs.errors import (
    ConfigError,
    InputOverflowError,
    LinesUnsupportedError,
    LineWaitTimeout,
    PortBusyError,
    PortDisconnectedError,
    PortNotFoundError,
    PortNotOpenError,
    PortPermissionError,
    ReadTimeout,
)


@pytest.fixture
def lock_dir(tmp_path):
    d = tmp_path / "lock"
    d.mkdir()
    return d


@pytest.fixture
def ends(serial_pair, lock_dir):
    """Both ends of a socat pair, open at 115200 8N1."""
    settings = SerialSettings(115200)
    with (
        Port(serial_pair.a, settings, lock_dir=lock_dir) as a,
        Port(serial_pair.b, settings, lock_dir=lock_dir) as b,
    ):
        yield a, b


# -- data ---------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["9600 8N1", "115200 7E1", "57600 8O2 xonxoff", "250000 8N1"])
def test_data_both_ways_at_several_settings(serial_pair, lock_dir, text):
    settings = SerialSettings.parse(text)
    # Every byte value except XON/XOFF, which software flow control consumes.
    blob = bytes(b for b in range(256) if not (settings.xonxoff and b in (0x11, 0x13))) * 16
    with (
        Port(serial_pair.a, settings, lock_dir=lock_dir) as a,
        Port(serial_pair.b, settings, lock_dir=lock_dir) as b,
    ):
        a.write(blob)
        assert b.read_exactly(len(blob), timeout=5) == blob
        b.write(blob[::-1])
        assert a.read_exactly(len(blob), timeout=5) == blob[::-1]
        assert a.settings == settings
        assert a.serial.baudrate == settings.baudrate


def test_reconfigure_changes_the_os_settings_of_an_open_port(ends):
    # Recent Linux kernels force ptys to CS8 without parity, so only the rate is
    # checked in the OS; the framing is checked on the port's own record.
    a, b = ends
    a.reconfigure(SerialSettings.parse("9600 7E2"))
    attrs = termios.tcgetattr(a.fileno())
    assert attrs[4] == termios.B9600 and attrs[5] == termios.B9600
    assert attrs[2] & termios.CSTOPB
    assert a.settings == SerialSettings.parse("9600 7E2")
    a.reconfigure(baudrate=19200)
    assert a.settings == SerialSettings.parse("19200 7E2")
    assert termios.tcgetattr(a.fileno())[4] == termios.B19200
    a.write(b"still talking\n")
    assert b.read_until(timeout=2) == b"still talking\n"


def test_reconfigure_rejects_bad_values_and_keeps_old_settings(ends):
    a, _ = ends
    with pytest.raises(ConfigError):
        a.reconfigure(bytesize=9)
    assert a.settings.bytesize == 8


def test_open_keeps_bytes_already_waiting(serial_pair, lock_dir):
    with Port(serial_pair.b, lock_dir=lock_dir) as b:
        b.write(b"boot banner v1.2\r\n")
        time.sleep(0.05)
        with Port(serial_pair.a, lock_dir=lock_dir) as a:
            assert a.read_until(b"\r\n", timeout=1) == b"boot banner v1.2\r\n"


def test_open_can_discard_bytes_already_waiting(serial_pair, lock_dir):
    with Port(serial_pair.b, lock_dir=lock_dir) as b:
        b.write(b"old junk")
        time.sleep(0.05)
        with Port(serial_pair.a, lock_dir=lock_dir, discard_input=True) as a:
            b.write(b"fresh")
            assert a.read_exactly(5, timeout=1) == b"fresh"


def test_read_timeout_raises_with_the_partial_data(ends):
    a, b = ends
    b.write(b"abc")
    t0 = time.monotonic()
    with pytest.raises(ReadTimeout) as info:
        a.read_exactly(10, timeout=0.2)
    assert 0.15 < time.monotonic() - t0 < 2
    assert info.value.partial == b"abc"
    assert "3 byte(s)" in str(info.value)
    with pytest.raises(ReadTimeout) as info:
        a.read_some(timeout=0.05)
    assert info.value.partial == b""


def test_read_some_waits_in_the_kernel_for_min_size_bytes(ends):
    """min_size: the reader is not woken for the first bytes of what it expects
    (the tty's VMIN counts them); it gets them all at once, gets what there is
    when the timeout passes first, and VMIN is back afterwards."""
    a, b = ends
    b.write(b"0123456789")
    sender = threading.Timer(0.3, b.write, args=(b"abcdefghij",))
    sender.start()
    t0 = time.monotonic()
    got = a.read_some(timeout=5, min_size=20)
    sender.join()
    assert got == b"0123456789abcdefghij"
    assert 0.25 < time.monotonic() - t0 < 4
    b.write(b"xyz")
    t0 = time.monotonic()
    assert a.read_some(timeout=0.3, min_size=100) == b"xyz"  # what there is, at the timeout
    assert 0.25 < time.monotonic() - t0 < 4
    with pytest.raises(ReadTimeout):
        a.read_some(timeout=0.1, min_size=100)
    b.write(b"!")
    t0 = time.monotonic()
    assert a.read_some(timeout=5) == b"!"  # VMIN is back: one byte wakes the reader
    assert time.monotonic() - t0 < 2


def test_a_reconfigure_during_a_min_size_read_is_kept(ends):
    """The read puts back only VMIN: a rate changed meanwhile by another thread
    stays changed."""
    a, _ = ends
    changer = threading.Timer(0.1, a.reconfigure, kwargs={"baudrate": 57600})
    changer.start()
    with pytest.raises(ReadTimeout):
        a.read_some(timeout=0.4, min_size=100)
    changer.join()
    attrs = termios.tcgetattr(a.fileno())
    assert attrs[5] == termios.B57600
    assert attrs[6][termios.VMIN] == 0


def test_read_until_is_bounded_and_loses_nothing(ends):
    a, b = ends
    b.write(b"x" * 100 + b"\n")
    with pytest.raises(InputOverflowError) as info:
        a.read_until(b"\n", max_size=50, timeout=1)
    # Every byte taken from the port is in the error, none silently dropped.
    got = info.value.partial
    rest = b""
    while len(got) + len(rest) < 101:
        rest += a.read_some(timeout=1)
    assert got + rest == b"x" * 100 + b"\n"


def test_read_until_keeps_what_follows_the_terminator(ends):
    a, b = ends
    b.write(b"OK\r\nRING\r\n")
    assert a.read_until(b"\r\n", timeout=1) == b"OK\r\n"
    assert a.read_until(b"\r\n", timeout=1) == b"RING\r\n"
    assert a.read_available() == b""


def test_timeouts_must_be_finite(serial_pair):
    with pytest.raises(ConfigError, match="finite"):
        Port(serial_pair.a, timeout=float("inf"))
    with pytest.raises(ConfigError, match="finite"):
        Port(serial_pair.a, timeout=None)  # type: ignore[arg-type]


def test_operations_on_a_closed_port_say_so(serial_pair):
    port = Port(serial_pair.a)
    with pytest.raises(PortNotOpenError, match="not open"):
        port.write(b"x")
    with pytest.raises(PortNotOpenError):
        port.lines()


# -- errors on open and while open ----------------------------------------------------


def test_missing_device_names_the_port_and_what_is_present(lock_dir):
    with pytest.raises(PortNotFoundError) as info:
        Port("/dev/ttyNOPE0", lock_dir=lock_dir).open()
    assert "/dev/ttyNOPE0" in str(info.value)
    assert info.value.hint  # says what is present, or that nothing is


def test_unknown_url_scheme_is_a_config_error():
    with pytest.raises(ConfigError, match="nosuch://"):
        Port("nosuch://x").open()


def test_permission_denied_is_typed_and_suggests_the_fix(serial_pair, unprivileged):
    device = os.path.realpath(serial_pair.a)
    os.chmod(device, 0o600)

    def attempt() -> str:
        try:
            Port(device, exclusive=False).open()
        except PortPermissionError as e:
            return f"PERMISSION {e}"
        return "OPENED"

    message = unprivileged(attempt)
    assert message.startswith("PERMISSION"), message
    assert device in message and "dialout" in message


def test_port_that_vanishes_mid_read_raises_with_what_arrived(serial_pair, lock_dir):
    with Port(serial_pair.a, lock_dir=lock_dir) as a, Port(serial_pair.b, lock_dir=lock_dir) as b:
        b.write(b"partial line")
        assert a.read_exactly(7, timeout=1) == b"partial"
        outcome: dict[str, BaseException] = {}

        def reader() -> None:
            try:
                a.read_until(b"\n", timeout=10)
            except BaseException as e:
                outcome["error"] = e

        thread = threading.Thread(target=reader)
        thread.start()
        time.sleep(0.2)  # the reader is now blocked waiting for the newline
        t0 = time.monotonic()
        serial_pair.kill()
        thread.join(5)
        assert not thread.is_alive()
        assert time.monotonic() - t0 < 2
        error = outcome["error"]
        assert isinstance(error, PortDisconnectedError)
        assert serial_pair.a in str(error)
        assert error.partial == b" line"


def test_busy_port_names_the_holding_process(serial_pair, lock_dir, monkeypatch):
    code = textwrap.dedent(
        f"""
        import sys, time
        from serialhs.driver.port import Port
        with Port({serial_pair.a!r}, lock_dir={str(lock_dir)!r}):
            print("held", flush=True)
            sys.stdin.readline()
        """
    )
    with subprocess.Popen(
        [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    ) as child:
        assert child.stdin is not None and child.stdout is not None
        try:
            assert child.stdout.readline().strip() == "held"
            with pytest.raises(PortBusyError) as info:
                Port(serial_pair.a, lock_dir=lock_dir).open()
            assert info.value.pid == child.pid
            assert str(child.pid) in str(info.value)
            # With lock files switched off, the kernel-level flock still refuses and
            # names the PID too.
            monkeypatch.setenv("SERIALHS_LOCK_DIR", "")
            with pytest.raises(PortBusyError) as info:
                Port(serial_pair.a).open()
            assert info.value.pid == child.pid
        finally:
            child.stdin.close()
            child.wait(10)
    with Port(serial_pair.a, lock_dir=lock_dir):
        pass


def test_same_process_cannot_open_a_port_twice(serial_pair, lock_dir):
    with Port(serial_pair.a, lock_dir=lock_dir), pytest.raises(PortBusyError):
        Port(serial_pair.a, lock_dir=lock_dir).open()


def test_close_releases_the_lock_files(serial_pair, lock_dir):
    with Port(serial_pair.a, lock_dir=lock_dir):
        held = sorted(p.name for p in lock_dir.iterdir())
        assert f"LCK..{os.path.realpath(serial_pair.a)[5:].replace('/', '_')}" in held
    assert list(lock_dir.iterdir()) == []


# -- control lines --------------------------------------------------------------------


def test_pty_control_lines_raise_a_typed_error_naming_the_port(ends):
    a, _ = ends
    assert a.lines_supported is False
    for call in (a.lines, lambda: a.set_lines(rts=True), lambda: a.set_break(True)):
        with pytest.raises(LinesUnsupportedError) as info:
            call()
        assert a.url in str(info.value) and "pseudo-terminal" in str(info.value)


def test_tolerant_mode_warns_once_and_carries_on(serial_pair, lock_dir, caplog):
    with (
        caplog.at_level(logging.WARNING, logger="serialhs.driver"),
        Port(serial_pair.a, lock_dir=lock_dir, lines="tolerant") as a,
    ):
        a.set_lines(rts=True, dtr=False)
        a.pulse("dtr", 0.01)
        assert a.lines() == Lines()
        a.send_break(0.01)
        with pytest.raises(LinesUnsupportedError):
            a.wait_lines(cts=True, timeout=0.1)
    warnings = [r for r in caplog.records if "without control lines" in r.getMessage()]
    assert len(warnings) == 1


def test_lines_chosen_before_open_are_there_at_open():
    with Port("loop://", rts=False, dtr=True) as port:
        assert port.lines() == Lines(rts=False, dtr=True, cts=False, dsr=True, dcd=True)
    with Port("loop://", rts=True, dtr=False) as port:
        assert port.lines() == Lines(rts=True, dtr=False, cts=True, dsr=False, dcd=True)


def test_set_lines_together_and_one_at_a_time():
    with Port("loop://", rts=False, dtr=False) as port:
        port.set_lines(rts=True, dtr=True)
        assert port.wait_lines(cts=True, dsr=True, timeout=0.5).rts
        port.set_dtr(False)
        assert port.lines().dsr is False and port.lines().cts is True
        port.set_rts(False)
        assert port.lines().cts is False


def test_pulse_drives_then_restores():
    seen: list[Lines] = []
    with Port("loop://", rts=True, dtr=True) as port:
        remove = port.on_lines_change(lambda old, new: seen.append(new), interval=0.002)
        port.pulse("dtr", 0.1)
        time.sleep(0.05)
        remove()
        assert port.lines().dtr is True
    assert any(not s.dsr for s in seen), seen
    assert seen[-1].dsr is True


def test_wait_lines_times_out_with_the_last_state():
    with Port("loop://", rts=False) as port:
        t0 = time.monotonic()
        with pytest.raises(LineWaitTimeout) as info:
            port.wait_lines(cts=True, timeout=0.1)
        assert 0.09 < time.monotonic() - t0 < 1
        assert info.value.lines.cts is False
        assert "CTS=1" in str(info.value)


def test_wait_lines_wakes_on_a_change_from_another_thread():
    with Port("loop://", rts=False) as port:
        threading.Timer(0.05, port.set_rts, args=(True,)).start()
        t0 = time.monotonic()
        assert port.wait_lines(predicate=lambda s: s.cts, timeout=2).cts
        assert time.monotonic() - t0 < 1


def test_break_on_a_port_with_break():
    with Port("loop://") as port:
        port.set_break(True)
        assert port.serial.break_condition is True
        port.set_break(False)
        port.send_break(0.01)
        assert port.serial.break_condition is False


def test_pulse_refuses_inputs_and_silly_lengths():
    with Port("loop://") as port:
        with pytest.raises(ConfigError):
            port.pulse("cts", 0.1)
        with pytest.raises(ConfigError):
            port.pulse("dtr", 0)


def test_socket_urls_have_no_lines():
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    try:
        with (
            Port(f"socket://127.0.0.1:{server.getsockname()[1]}") as port,
            pytest.raises(LinesUnsupportedError, match="rfc2217"),
        ):
            port.lines()
    finally:
        server.close()


# -- transcript -----------------------------------------------------------------------


def test_transcript_records_both_directions_and_redacts(serial_pair, lock_dir, tmp_path):
    transcript = Transcript(secrets=["1234"])
    with (
        Port(serial_pair.a, lock_dir=lock_dir, transcript=transcript) as a,
        Port(serial_pair.b, lock_dir=lock_dir, transcript=transcript) as b,
    ):
        a.write(b'AT+CPIN="1234"\r')
        assert b.read_until(b"\r", timeout=1) == b'AT+CPIN="1234"\r'
        a.reconfigure(baudrate=9600)
    assert transcript.data("tx") == b'AT+CPIN="***"\r'
    assert transcript.data("rx", serial_pair.b) == b'AT+CPIN="***"\r'
    kinds = [e.kind for e in transcript.events]
    assert kinds.count("open") == 2 and "settings" in kinds and kinds.count("close") == 2
    saved = tmp_path / "t.txt"
    transcript.save(saved)
    text = saved.read_text()
    assert "1234" not in text and "***" in text


def test_open_port_helper_parses_settings(serial_pair, lock_dir):
    with open_port(serial_pair.a, "19200 8E1", lock_dir=lock_dir) as port:
        assert port.settings == SerialSettings.parse("19200 8E1")


def test_transcript_text_cuts_long_data_but_jsonl_keeps_it():
    transcript = Transcript()
    transcript.record("tx", "p", bytes(200))
    line = transcript.to_text().strip()
    assert line.endswith("(+136 bytes)") and line.count(" 00") == 64
    assert bytes.fromhex(json.loads(transcript.to_jsonl())["hex"]) == bytes(200)
