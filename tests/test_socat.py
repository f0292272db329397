"""SocatPair: real socat, real ptys. Every wait is bounded."""

from __future__ import annotations

import errno
import gc
import os
import select
import stat
import subprocess
import sys
import termios
import textwrap
import threading
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
import serial

from serialhs.errors import ConfigError, SimError, ToolMissingError
from serialhs.sim import SocatPair

ALL_BYTES = bytes(range(256))


# --- helpers ---------------------------------------------------------------------------


def open_end(path: str) -> int:
    return os.open(path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)


def read_exactly(fd: int, count: int, timeout: float = 2.0) -> bytes:
    """Read *count* bytes or fail after *timeout* seconds with what did arrive."""
    data = b""
    deadline = time.monotonic() + timeout
    while len(data) < count:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            pytest.fail(f"timed out after {len(data)} of {count} bytes: {data[-32:]!r}")
        ready, _, _ = select.select([fd], [], [], remaining)
        if ready:
            chunk = os.read(fd, count - len(data))
            if not chunk:
                pytest.fail(f"EOF after {len(data)} of {count} bytes")
            data += chunk
    return data


def assert_quiet(fd: int, wait: float = 0.1) -> None:
    """Nothing (more) arrives on *fd* within *wait* seconds."""
    ready, _, _ = select.select([fd], [], [], wait)
    if ready:
        pytest.fail(f"unexpected bytes: {os.read(fd, 4096)!r}")


def socat_running(pid: int) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    zombie = "\nState:\tZ" in status
    return b"socat" in cmdline and not zombie


@pytest.fixture
def pair() -> Iterator[SocatPair]:
    with SocatPair() as started:
        yield started


@pytest.fixture
def ends(pair: SocatPair) -> Iterator[tuple[int, int]]:
    fd_a, fd_b = open_end(pair.a), open_end(pair.b)
    try:
        yield fd_a, fd_b
    finally:
        os.close(fd_a)
        os.close(fd_b)


# --- starting --------------------------------------------------------------------------


def test_links_lead_to_two_ptys(pair: SocatPair) -> None:
    assert pair.alive
    assert isinstance(pair.pid, int)
    assert socat_running(pair.pid)
    directory = Path(pair.a).parent
    assert Path(pair.b).parent == directory
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    for link, device in ((pair.a, pair.a_device), (pair.b, pair.b_device)):
        assert Path(link).is_symlink()
        assert os.path.realpath(link) == device
        assert device.startswith("/dev/pts/")
        assert stat.S_ISCHR(Path(device).stat().st_mode)
    assert pair.a_device != pair.b_device
    assert "rawer" in pair.command[3]
    assert "ixon=0" in pair.command[3]


def test_ends_are_raw_without_echo_or_software_flow_control(
    ends: tuple[int, int],
) -> None:
    for fd in ends:
        iflag, oflag, cflag, lflag, _ispeed, _ospeed, _cc = termios.tcgetattr(fd)
        assert not lflag & (termios.ICANON | termios.ECHO | termios.ISIG | termios.IEXTEN)
        assert not iflag & (
            termios.IXON | termios.IXOFF | termios.ICRNL | termios.INLCR | termios.ISTRIP
        )
        assert not oflag & termios.OPOST
        assert cflag & termios.CSIZE == termios.CS8
        assert not cflag & termios.PARENB


def test_bytes_flow_both_ways(ends: tuple[int, int]) -> None:
    fd_a, fd_b = ends
    os.write(fd_a, b"hello from a\r\n")
    assert read_exactly(fd_b, 14) == b"hello from a\r\n"
    os.write(fd_b, b"hello from b\n")
    assert read_exactly(fd_a, 13) == b"hello from b\n"
    assert_quiet(fd_a)
    assert_quiet(fd_b)


@pytest.mark.parametrize("direction", ["a->b", "b->a"])
def test_every_byte_value_passes_unchanged(ends: tuple[int, int], direction: str) -> None:
    # CR/LF translation, echo, XON/XOFF (0x11/0x13) or signal characters (0x03)
    # would all change, drop or add bytes.
    sender, receiver = ends if direction == "a->b" else ends[::-1]
    os.write(sender, ALL_BYTES)
    assert read_exactly(receiver, len(ALL_BYTES)) == ALL_BYTES
    assert_quiet(receiver)
    assert_quiet(sender)  # no echo


def test_large_transfer_arrives_complete_and_in_order(ends: tuple[int, int]) -> None:
    fd_a, fd_b = ends
    payload = ALL_BYTES * 512  # 128 KiB, far more than a pty buffers
    sent, received = 0, bytearray()
    deadline = time.monotonic() + 10
    while len(received) < len(payload):
        assert time.monotonic() < deadline, f"stalled after {len(received)} bytes"
        writers = [fd_a] if sent < len(payload) else []
        readable, writable, _ = select.select([fd_b], writers, [], 0.5)
        if writable:
            sent += os.write(fd_a, payload[sent : sent + 4096])
        if readable:
            received += os.read(fd_b, 65536)
    assert bytes(received) == payload


def test_pyserial_opens_both_ends(pair: SocatPair) -> None:
    with (
        serial.Serial(pair.a, baudrate=115200, timeout=2) as left,
        serial.Serial(pair.b, baudrate=115200, timeout=2) as right,
    ):
        left.write(ALL_BYTES)
        assert right.read(len(ALL_BYTES)) == ALL_BYTES
        right.write(b"AT\r")
        assert left.read(3) == b"AT\r"


def test_ends_can_be_reopened(pair: SocatPair) -> None:
    # Closing the last fd of one end must not end socat (a driver reconnects).
    for _ in range(3):
        fd_a, fd_b = open_end(pair.a), open_end(pair.b)
        try:
            os.write(fd_a, b"x")
            assert read_exactly(fd_b, 1) == b"x"
        finally:
            os.close(fd_a)
            os.close(fd_b)
    assert pair.alive


# --- stopping --------------------------------------------------------------------------


def test_stop_ends_socat_and_removes_the_directory() -> None:
    pair = SocatPair().start()
    pid, directory = pair.pid, Path(pair.a).parent
    assert pid is not None
    pair.stop()
    assert not pair.alive
    assert not socat_running(pid)
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # reaped, not a zombie
    assert not directory.exists()
    pair.stop()  # idempotent
    assert pair.pid == pid


def test_stop_on_a_pair_never_started_does_nothing() -> None:
    SocatPair().stop()


def test_context_manager_stops_on_exception() -> None:
    class Boom(Exception):
        pass

    seen: list[tuple[int | None, Path]] = []
    with pytest.raises(Boom), SocatPair() as pair:
        seen.append((pair.pid, Path(pair.a).parent))
        raise Boom
    pid, directory = seen[0]
    assert pid is not None
    assert not socat_running(pid)
    assert not directory.exists()


def test_abandoned_pair_is_stopped_when_collected() -> None:
    # Collect garbage left by earlier tests first, so that only this pair's own
    # clean-up is judged (a leak of ours would still raise ResourceWarning below).
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        gc.collect()
    pair = SocatPair().start()
    pid, directory = pair.pid, Path(pair.a).parent
    assert pid is not None
    del pair
    gc.collect()
    assert not socat_running(pid)
    assert not directory.exists()


def test_pair_still_running_at_interpreter_exit_is_stopped(tmp_path: Path) -> None:
    script = textwrap.dedent(
        """
        from serialhs.sim import SocatPair
        pair = SocatPair().start()
        print(pair.pid, pair.a, flush=True)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=20, check=True
    )
    pid_text, link = done.stdout.split()
    assert not socat_running(int(pid_text))
    assert not Path(link).parent.exists()


# --- disconnects -----------------------------------------------------------------------


def test_kill_looks_like_a_vanished_device(pair: SocatPair, ends: tuple[int, int]) -> None:
    fd_a, fd_b = ends
    os.write(fd_a, b"before")
    assert read_exactly(fd_b, 6) == b"before"

    woke: list[float] = []

    def wait_for_data() -> None:
        start = time.monotonic()
        select.select([fd_b], [], [], 5)
        woke.append(time.monotonic() - start)

    waiter = threading.Thread(target=wait_for_data)
    waiter.start()
    time.sleep(0.05)
    pid = pair.pid
    assert pid is not None
    pair.kill()
    waiter.join(timeout=5)
    assert woke, "a reader blocked in select() was not woken"
    assert woke[0] < 1.0
    assert not pair.alive
    assert not socat_running(pid)

    # Reading gives EOF (readable, no data); writing fails with EIO.
    assert select.select([fd_b], [], [], 0)[0] == [fd_b]
    assert os.read(fd_b, 100) == b""
    with pytest.raises(OSError) as excinfo:
        os.write(fd_b, b"after")
    assert excinfo.value.errno == errno.EIO
    with pytest.raises(OSError) as excinfo:
        os.write(fd_a, b"after")
    assert excinfo.value.errno == errno.EIO

    # The links dangle, as a vanished device node would; stop() still cleans up.
    directory = Path(pair.a).parent
    assert Path(pair.a).is_symlink()
    assert not Path(pair.a).exists()
    with pytest.raises(FileNotFoundError):
        open_end(pair.a)
    pair.stop()
    assert not directory.exists()


def test_kill_seen_through_pyserial(pair: SocatPair) -> None:
    with serial.Serial(pair.b, timeout=2) as port:
        pair.kill()
        started = time.monotonic()
        with pytest.raises(serial.SerialException, match="returned no data"):
            port.read(10)
        assert time.monotonic() - started < 1.0
        with pytest.raises(serial.SerialException) as excinfo:
            port.write(b"x")
        assert isinstance(excinfo.value.__context__, OSError)
        assert excinfo.value.__context__.errno == errno.EIO


# --- failures --------------------------------------------------------------------------


def test_missing_socat_at_a_given_path() -> None:
    with pytest.raises(ToolMissingError) as excinfo:
        SocatPair(socat="/nonexistent/socat").start()
    assert excinfo.value.tool == "socat"
    assert excinfo.value.package == "socat"
    assert "apt-get install socat" in str(excinfo.value)


def test_missing_socat_on_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ToolMissingError, match="apt-get install socat"):
        SocatPair().start()


def test_unknown_option_fails_with_socats_message() -> None:
    pair = SocatPair(extra_options=["nosuchoption=1"])
    with pytest.raises(SimError, match='unknown option "nosuchoption"') as excinfo:
        pair.start()
    assert "exited with code 1" in str(excinfo.value)
    assert pair.pid is not None
    assert not socat_running(pair.pid)
    assert not Path(pair.a).parent.exists()


def test_missing_directory_fails_with_socats_message(tmp_path: Path) -> None:
    with pytest.raises(SimError, match="No such file or directory"):
        SocatPair(directory=tmp_path / "missing").start()


def test_startup_timeout_stops_the_process(tmp_path: Path) -> None:
    fake = tmp_path / "socat"
    fake.write_text("#!/bin/sh\necho 'not ready yet' >&2\nexec sleep 30\n")
    fake.chmod(0o755)
    pair = SocatPair(socat=str(fake), startup_timeout=0.3)
    started = time.monotonic()
    with pytest.raises(SimError, match=r"not ready within 0.3s[\s\S]*not ready yet"):
        pair.start()
    assert time.monotonic() - started < 3
    assert pair.pid is not None
    with pytest.raises(ProcessLookupError):
        os.kill(pair.pid, 0)


def test_pair_in_a_given_directory(tmp_path: Path) -> None:
    with SocatPair(directory=tmp_path) as pair:
        assert pair.a == str(tmp_path / "a")
        assert pair.b == str(tmp_path / "b")
        pair.kill()  # socat cannot remove its links now
    assert tmp_path.is_dir()
    assert list(tmp_path.iterdir()) == []


def test_given_directory_keeps_existing_files(tmp_path: Path) -> None:
    (tmp_path / "a").write_text("precious")
    with pytest.raises(SimError, match="already exists"):
        SocatPair(directory=tmp_path).start()
    assert (tmp_path / "a").read_text() == "precious"
    assert not (tmp_path / "b").exists()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"startup_timeout": 0}, "startup_timeout"),
        ({"startup_timeout": float("nan")}, "startup_timeout"),
        ({"startup_timeout": True}, "startup_timeout"),
        ({"extra_options": "raw"}, "sequence"),
        ({"extra_options": ["raw,echo=1"]}, "one option per item"),
        ({"extra_options": [""]}, "one option per item"),
        ({"extra_options": ["link=/tmp/x"]}, "directory="),
    ],
)
def test_bad_arguments(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        SocatPair(**kwargs)  # type: ignore[arg-type]


def test_lifecycle_is_checked() -> None:
    pair = SocatPair()
    with pytest.raises(SimError, match="not started"):
        _ = pair.a
    with pytest.raises(SimError, match="not started"):
        pair.kill()
    with pair, pytest.raises(SimError, match="already started"):
        pair.start()
    with pytest.raises(SimError, match="already started"):
        pair.start()
    with pytest.raises(SimError, match="already started"), pair:
        pass
