"""The pytest plugin, exercised through inner pytest runs (pytester)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

# Inner runs leave out the hypothesis plugin: it imports (and assertion-rewrites)
# all of hypothesis at the end of every in-process run, which costs about a second.
QUIET = ("-p", "no:hypothesispytest")

EXCHANGE = """
    import os, select, time

    def read_exactly(fd, count, timeout=2.0):
        data, deadline = b"", time.monotonic() + timeout
        while len(data) < count and time.monotonic() < deadline:
            if select.select([fd], [], [], 0.1)[0]:
                data += os.read(fd, count - len(data))
        return data

    def test_exchange(serial_pair):
        a = os.open(serial_pair.a, os.O_RDWR | os.O_NOCTTY)
        b = os.open(serial_pair.b, os.O_RDWR | os.O_NOCTTY)
        try:
            os.write(a, b"ping\\x11\\x13\\r\\n")
            assert read_exactly(b, 8) == b"ping\\x11\\x13\\r\\n"
            os.write(b, b"pong")
            assert read_exactly(a, 4) == b"pong"
        finally:
            os.close(a)
            os.close(b)
"""

RECORD_AND_FAIL = """
    import json, pathlib

    def test_fails_on_purpose(serial_pair):
        record = {"pid": serial_pair.pid, "directory": str(pathlib.Path(serial_pair.a).parent)}
        (pathlib.Path(__file__).parent / "pair.json").write_text(json.dumps(record))
        assert serial_pair.alive
        raise AssertionError("failing on purpose")
"""

HARDWARE = """
    import pytest, serial

    @pytest.mark.hardware
    def test_loopback(hardware_port, hardware_baud):
        with serial.serial_for_url(hardware_port, baudrate=hardware_baud, timeout=1) as port:
            assert port.baudrate == 9600
            port.write(b"hello")
            assert port.read(5) == b"hello"

    def test_port_fixture_alone(hardware_port):
        assert hardware_port == "loop://"

    def test_without_hardware():
        pass
"""


def socat_running(pid: int) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    return b"socat" in cmdline and "\nState:\tZ" not in status


def test_serial_pair_exchanges_data(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(EXCHANGE)
    result = pytester.runpytest(*QUIET, "--strict-markers")
    result.assert_outcomes(passed=1)


def test_serial_pair_works_in_a_fresh_interpreter(pytester: pytest.Pytester) -> None:
    # The plugin is found through its entry point, not through this process.
    pytester.makepyfile(EXCHANGE)
    result = pytester.runpytest_subprocess(*QUIET, "--strict-markers", timeout=30)
    result.assert_outcomes(passed=1)


def test_serial_pair_is_stopped_after_a_failing_test(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(RECORD_AND_FAIL)
    result = pytester.runpytest(*QUIET)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*failing on purpose*"])
    record = json.loads((pytester.path / "pair.json").read_text())
    assert isinstance(record["pid"], int)
    assert not socat_running(record["pid"])
    with pytest.raises(ProcessLookupError):
        os.kill(record["pid"], 0)
    assert not Path(record["directory"]).exists()


def test_hardware_tests_are_skipped_without_port(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(HARDWARE)
    result = pytester.runpytest(*QUIET, "--strict-markers", "-rs")
    result.assert_outcomes(passed=1, skipped=2)
    result.stdout.fnmatch_lines(["SKIPPED *needs real hardware: run with --port PORT*"])
    assert "needs real hardware: run with --port PORT" in result.stdout.str()


def test_hardware_tests_run_with_port(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(HARDWARE)
    result = pytester.runpytest(*QUIET, "--strict-markers", "--port", "loop://", "--baud", "9600")
    result.assert_outcomes(passed=3)


def test_hardware_marker_is_registered(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest(*QUIET, "--markers")
    assert result.ret == 0
    result.stdout.fnmatch_lines(["@pytest.mark.hardware: needs a real serial port*"])


def test_options_are_documented(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest(*QUIET, "--help")
    result.stdout.fnmatch_lines(["*--port=PORT*", "*--baud=N*"])


@pytest.mark.parametrize("baud", ["fast", "0", "-9600"])
def test_bad_baud_is_a_usage_error(pytester: pytest.Pytester, baud: str) -> None:
    result = pytester.runpytest(*QUIET, f"--baud={baud}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--baud*"])


def test_serial_pair_fails_without_socat(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    empty = tmp_path / "empty-path"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    pytester.makepyfile(
        """
        def test_needs_a_pair(serial_pair):
            pass
        """
    )
    result = pytester.runpytest(*QUIET, "-rA")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        ["*serial_pair: socat is not installed or not on PATH*apt-get install socat*"]
    )
    assert "skipped" not in result.stdout.str().lower()
