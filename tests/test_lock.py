"""Exclusive port access: UUCP lock files, flock/TIOCEXCL, and who holds a port.

Everything runs without hardware: ptys from os.openpty() or socat stand in for serial
ports, and other processes (child Pythons, sleep, Taylor UUCP's cu) hold the locks.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import pathlib
import select
import shutil
import signal
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import serialhs
from serialhs.driver.lock import (
    UucpLock,
    default_lock_dir,
    exclusive_fd,
    find_holders,
    lock_name,
    pid_alive,
    process_name,
    read_lock_pid,
    release_fd,
)
from serialhs.errors import PortBusyError, PortError, PortIOError, PortPermissionError

# A device path that need not exist: lock files are about names.
DEVICE = "/dev/ttySHSLOCKTEST0"

# Linux: _IOR('T', 0x40, int) -- reads the TIOCEXCL flag of a tty (Linux >= 3.8).
TIOCGEXCL = 0x80045440

PACKAGE_ROOT = str(pathlib.Path(serialhs.__file__).resolve().parent.parent)

HOLD_UUCP_LOCK = """
import sys
from serialhs.driver.lock import UucpLock
lock = UucpLock(sys.argv[1], lock_dir=sys.argv[2])
lock.acquire()
print("ready", flush=True)
sys.stdin.readline()
lock.release()
print("released", flush=True)
sys.stdin.readline()
"""

HOLD_FLOCK = """
import os, sys
from serialhs.driver.lock import exclusive_fd, release_fd
fd = os.open(sys.argv[1], os.O_RDWR | os.O_NOCTTY)
exclusive_fd(fd, port=sys.argv[1])
print("ready", flush=True)
sys.stdin.readline()
release_fd(fd)
print("released", flush=True)
sys.stdin.readline()
"""

HOLD_OPEN = """
import os, sys
fd = os.open(sys.argv[1], os.O_RDWR | os.O_NOCTTY)
print("ready", flush=True)
sys.stdin.readline()
"""


# --- helpers and fixtures ------------------------------------------------------------


def _stop(proc: subprocess.Popen[bytes] | subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.kill()
    proc.wait(timeout=5)


def _read_line(proc: subprocess.Popen[str], timeout: float = 5.0) -> str:
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    if not ready:
        raise AssertionError(f"child {proc.pid} said nothing within {timeout} s")
    line = proc.stdout.readline()
    if not line:
        proc.wait(timeout=5)
        assert proc.stderr is not None
        raise AssertionError(f"child {proc.pid} exited early: {proc.stderr.read()}")
    return line.strip()


def _tell(proc: subprocess.Popen[str], expect: str) -> None:
    """Wake a child blocked on stdin and wait for its next status line."""
    assert proc.stdin is not None
    proc.stdin.write("go\n")
    proc.stdin.flush()
    assert _read_line(proc) == expect


ChildFactory = Callable[..., "subprocess.Popen[str]"]


@pytest.fixture
def child() -> Iterator[ChildFactory]:
    """Start a child Python running a snippet; returns once it printed "ready"."""
    procs: list[subprocess.Popen[str]] = []
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [PACKAGE_ROOT, env.get("PYTHONPATH")]))

    def start(code: str, *args: str) -> subprocess.Popen[str]:
        proc = subprocess.Popen(
            [sys.executable, "-c", code, *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        procs.append(proc)
        assert _read_line(proc) == "ready"
        return proc

    yield start
    for proc in procs:
        _stop(proc)
        for stream in (proc.stdin, proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


@pytest.fixture
def sleeper() -> Iterator[subprocess.Popen[bytes]]:
    """A live process that is not ours to name in a lock file."""
    proc = subprocess.Popen(["sleep", "30"])
    yield proc
    _stop(proc)


@pytest.fixture
def dead_pid() -> int:
    """The PID of a process that has exited and been reaped."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait(timeout=10)
    assert not pid_alive(proc.pid)
    return proc.pid


@pytest.fixture
def pty() -> Iterator[tuple[int, int, str]]:
    """(master fd, slave fd, slave path) of a fresh pseudo-terminal."""
    master, slave = os.openpty()
    yield master, slave, os.ttyname(slave)
    os.close(slave)
    os.close(master)


def _write_lock(path: pathlib.Path, data: bytes, age: float = 0.0) -> None:
    path.write_bytes(data)
    if age:
        then = time.time() - age
        os.utime(path, (then, then))


def _hdb(pid: int) -> bytes:
    return f"{pid:10d}\n".encode()


# --- lock_name -----------------------------------------------------------------------


def test_lock_name_of_plain_device() -> None:
    assert lock_name("/dev/ttyUSB0") == "LCK..ttyUSB0"


def test_lock_name_of_nested_device() -> None:
    assert lock_name("/dev/pts/3") == "LCK..pts_3"


def test_lock_name_follows_symlinks(tmp_path: pathlib.Path, pty: tuple[int, int, str]) -> None:
    _, _, slave_path = pty
    alias = tmp_path / "ttyALIAS"
    alias.symlink_to(slave_path)
    expected = "LCK.." + slave_path.removeprefix("/dev/").replace("/", "_")
    assert expected.startswith("LCK..pts_")
    assert lock_name(str(alias)) == expected
    assert lock_name(slave_path) == expected


def test_aliases_share_one_lock(tmp_path: pathlib.Path, pty: tuple[int, int, str]) -> None:
    _, _, slave_path = pty
    alias = tmp_path / "ttyALIAS"
    alias.symlink_to(slave_path)
    with UucpLock(slave_path, lock_dir=tmp_path), pytest.raises(PortBusyError):
        UucpLock(str(alias), lock_dir=tmp_path).acquire()


# --- default_lock_dir ----------------------------------------------------------------


def test_default_lock_dir_honours_env(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SERIALHS_LOCK_DIR", str(tmp_path))
    assert default_lock_dir() == tmp_path
    lock = UucpLock(DEVICE)
    assert lock.path == tmp_path / "LCK..ttySHSLOCKTEST0"


def test_empty_env_disables_lock_files(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("SERIALHS_LOCK_DIR", "")
    assert default_lock_dir() is None
    caplog.set_level(logging.DEBUG, logger="serialhs.driver")
    lock = UucpLock(DEVICE)
    assert lock.path is None
    assert "disabled" in caplog.text
    assert "SERIALHS_LOCK_DIR" in caplog.text
    lock.acquire()  # no-op
    assert not lock.held
    lock.release()


def test_default_lock_dir_without_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SERIALHS_LOCK_DIR", raising=False)
    var_lock = pathlib.Path("/var/lock")
    usable = var_lock.is_dir() and os.access(var_lock, os.W_OK | os.X_OK)
    assert default_lock_dir() == (var_lock if usable else None)


# --- read_lock_pid, process_name, pid_alive ------------------------------------------


@pytest.mark.parametrize(
    ("data", "pid"),
    [
        (b"      1234\n", 1234),  # HDB: "%10d\n" (minicom, cu, pppd)
        (b"1234\n", 1234),
        (b"  1234  \r\n", 1234),
        (b"123\n", 123),  # four bytes, but ASCII
        (struct.pack("=i", 1234), 1234),  # old binary format
        (struct.pack("=i", 12849), 12849),  # binary, but its bytes look like b"12\0\0"
        (struct.pack("=i", 49), 49),  # b"1\0\0\0"
        (b"      1234\n\x00\x00", 1234),  # NUL padding
        (b"", None),
        (b"\n", None),
        (b"garbage!\n", None),
        (b"12ab\n", None),
        (b"         0\n", None),
        (struct.pack("=i", -5), None),
        (b"1234\n" * 40, None),
    ],
)
def test_read_lock_pid(tmp_path: pathlib.Path, data: bytes, pid: int | None) -> None:
    path = tmp_path / "LCK..x"
    path.write_bytes(data)
    assert read_lock_pid(path) == pid


def test_read_lock_pid_of_missing_file(tmp_path: pathlib.Path) -> None:
    assert read_lock_pid(tmp_path / "LCK..none") is None
    assert read_lock_pid(str(tmp_path / "LCK..none")) is None


def test_process_name(sleeper: subprocess.Popen[bytes], dead_pid: int) -> None:
    assert process_name(sleeper.pid) == "sleep"
    assert process_name(os.getpid()) == pathlib.Path("/proc/self/comm").read_text().strip()
    assert process_name(dead_pid) is None


def test_pid_alive(sleeper: subprocess.Popen[bytes], dead_pid: int) -> None:
    assert pid_alive(os.getpid())
    assert pid_alive(sleeper.pid)
    assert not pid_alive(dead_pid)
    assert not pid_alive(0)
    assert not pid_alive(-1)


def test_zombie_is_not_alive() -> None:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    try:
        deadline = time.monotonic() + 5
        while (
            pathlib.Path(f"/proc/{proc.pid}/stat").read_text().rpartition(")")[2].split()[0] != "Z"
        ):
            assert time.monotonic() < deadline, "child never became a zombie"
            time.sleep(0.01)
        assert not pid_alive(proc.pid)
    finally:
        proc.wait(timeout=5)


# --- acquire / release ---------------------------------------------------------------


def test_acquire_writes_hdb_pid_and_release_removes(tmp_path: pathlib.Path) -> None:
    lock = UucpLock(DEVICE, lock_dir=tmp_path)
    assert lock.path == tmp_path / "LCK..ttySHSLOCKTEST0"
    lock.acquire()
    content = lock.path.read_bytes()
    assert content == b"%10d\n" % os.getpid()
    assert len(content) == 11
    assert lock.path.stat().st_mode & 0o777 == 0o644
    assert read_lock_pid(lock.path) == os.getpid()
    lock.release()
    assert not lock.path.exists()
    assert list(tmp_path.iterdir()) == []  # no temporary file left behind


def test_context_manager(tmp_path: pathlib.Path) -> None:
    with UucpLock(DEVICE, lock_dir=tmp_path) as lock:
        assert lock.path is not None
        assert lock.path.read_bytes() == _hdb(os.getpid())
        assert lock.held
    assert not lock.path.exists()
    assert not lock.held


def test_context_manager_releases_on_error(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "LCK..ttySHSLOCKTEST0"
    with pytest.raises(RuntimeError), UucpLock(DEVICE, lock_dir=tmp_path):
        assert path.exists()
        raise RuntimeError("boom")
    assert not path.exists()


def test_two_locks_in_one_process_contend(tmp_path: pathlib.Path) -> None:
    with UucpLock(DEVICE, lock_dir=tmp_path):
        with pytest.raises(PortBusyError) as info:
            UucpLock(DEVICE, lock_dir=tmp_path, port_label="modem").acquire()
        assert info.value.pid == os.getpid()
        assert info.value.port == "modem"
        assert f"PID {os.getpid()}" in str(info.value)
        assert "this process" in str(info.value)
        # the failed attempt left the holder's file alone
        assert (tmp_path / "LCK..ttySHSLOCKTEST0").read_bytes() == _hdb(os.getpid())


def test_threads_of_one_process_contend(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Same PID in every thread: only the registry of held locks tells contention from
    # a leftover, so exactly one thread may win. A slow link() widens the window
    # between creating the file and recording it as held.
    real_link = os.link

    def slow_link(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
        real_link(src, dst)
        time.sleep(0.005)

    monkeypatch.setattr(os, "link", slow_link)
    barrier = threading.Barrier(8)
    won: list[UucpLock] = []
    busy: list[PortBusyError] = []

    def attempt() -> None:
        lock = UucpLock(DEVICE, lock_dir=tmp_path)
        barrier.wait()
        try:
            lock.acquire()
        except PortBusyError as e:
            busy.append(e)
        else:
            won.append(lock)

    for _ in range(5):
        threads = [threading.Thread(target=attempt) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=10)
        assert len(won) == 1, f"{len(won)} threads hold the lock"
        assert len(busy) == 7
        assert all(e.pid == os.getpid() for e in busy)
        won.pop().release()
        busy.clear()
        barrier.reset()
    assert list(tmp_path.iterdir()) == []


def test_own_pid_left_over_is_stale(tmp_path: pathlib.Path) -> None:
    # An earlier process with our PID (PID reuse) left its lock behind.
    path = tmp_path / "LCK..ttySHSLOCKTEST0"
    _write_lock(path, _hdb(os.getpid()))
    with UucpLock(DEVICE, lock_dir=tmp_path):
        assert path.read_bytes() == _hdb(os.getpid())
    assert not path.exists()


def test_contention_between_processes(
    tmp_path: pathlib.Path, child: ChildFactory, caplog: pytest.LogCaptureFixture
) -> None:
    holder = child(HOLD_UUCP_LOCK, DEVICE, str(tmp_path))
    lock = UucpLock(DEVICE, lock_dir=tmp_path, port_label="ttySHS")
    with pytest.raises(PortBusyError) as info:
        lock.acquire()
    err = info.value
    assert err.pid == holder.pid
    assert err.lock_file == str(tmp_path / "LCK..ttySHSLOCKTEST0")
    assert err.operation == "lock"
    assert err.port == "ttySHS"
    assert f"in use by PID {holder.pid} ({process_name(holder.pid)})" in str(err)
    assert err.lock_file in str(err)
    assert isinstance(err, PortError)

    # The holder dies without releasing: its lock is stale and gets replaced.
    holder.kill()
    holder.wait(timeout=5)
    assert read_lock_pid(tmp_path / "LCK..ttySHSLOCKTEST0") == holder.pid
    with caplog.at_level(logging.WARNING, logger="serialhs.driver"):
        lock.acquire()
    assert lock.path is not None
    assert lock.path.read_bytes() == _hdb(os.getpid())
    assert f"dead PID {holder.pid}" in caplog.text
    assert "removed stale lock" in caplog.text
    lock.release()


def test_process_released_lock_can_be_taken(tmp_path: pathlib.Path, child: ChildFactory) -> None:
    holder = child(HOLD_UUCP_LOCK, DEVICE, str(tmp_path))
    with pytest.raises(PortBusyError):
        UucpLock(DEVICE, lock_dir=tmp_path).acquire()
    _tell(holder, "released")
    assert not (tmp_path / "LCK..ttySHSLOCKTEST0").exists()
    with UucpLock(DEVICE, lock_dir=tmp_path) as lock:
        assert lock.held


@pytest.mark.parametrize("fmt", ["hdb", "binary"])
def test_foreign_lock_of_live_process(
    tmp_path: pathlib.Path, sleeper: subprocess.Popen[bytes], fmt: str
) -> None:
    path = tmp_path / "LCK..ttySHSLOCKTEST0"
    data = _hdb(sleeper.pid) if fmt == "hdb" else struct.pack("=i", sleeper.pid)
    _write_lock(path, data, age=60)
    with pytest.raises(PortBusyError) as info:
        UucpLock(DEVICE, lock_dir=tmp_path).acquire()
    assert info.value.pid == sleeper.pid
    assert info.value.lock_file == str(path)
    assert f"in use by PID {sleeper.pid} (sleep); lock file {path}" in str(info.value)
    assert path.read_bytes() == data  # untouched


@pytest.mark.parametrize("fmt", ["hdb", "binary"])
def test_stale_lock_of_dead_process_is_replaced(
    tmp_path: pathlib.Path, dead_pid: int, fmt: str, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "LCK..ttySHSLOCKTEST0"
    _write_lock(path, _hdb(dead_pid) if fmt == "hdb" else struct.pack("=i", dead_pid))
    with caplog.at_level(logging.WARNING, logger="serialhs.driver"):
        lock = UucpLock(DEVICE, lock_dir=tmp_path)
        lock.acquire()
    assert path.read_bytes() == _hdb(os.getpid())
    assert f"removed stale lock {path} of dead PID {dead_pid}" in caplog.text
    lock.release()
    assert not path.exists()


@pytest.mark.parametrize("data", [b"garbage\n", b"", b"\x00\x00"])
def test_old_garbage_lock_is_stale(
    tmp_path: pathlib.Path, data: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "LCK..ttySHSLOCKTEST0"
    _write_lock(path, data, age=10)
    with caplog.at_level(logging.WARNING, logger="serialhs.driver"):
        lock = UucpLock(DEVICE, lock_dir=tmp_path)
        lock.acquire()
    assert path.read_bytes() == _hdb(os.getpid())
    assert "removed stale lock" in caplog.text
    lock.release()


@pytest.mark.parametrize("data", [b"garbage\n", b""])
def test_fresh_unreadable_lock_is_busy(tmp_path: pathlib.Path, data: bytes) -> None:
    # A zero-length or half-written file may belong to a process writing it right now.
    path = tmp_path / "LCK..ttySHSLOCKTEST0"
    _write_lock(path, data)
    with pytest.raises(PortBusyError) as info:
        UucpLock(DEVICE, lock_dir=tmp_path).acquire()
    assert info.value.pid is None
    assert info.value.lock_file == str(path)
    assert path.read_bytes() == data


def test_release_keeps_lock_another_pid_now_owns(
    tmp_path: pathlib.Path, sleeper: subprocess.Popen[bytes], caplog: pytest.LogCaptureFixture
) -> None:
    lock = UucpLock(DEVICE, lock_dir=tmp_path)
    lock.acquire()
    assert lock.path is not None
    # Someone decided our lock was stale and took it over.
    lock.path.unlink()
    _write_lock(lock.path, _hdb(sleeper.pid))
    with caplog.at_level(logging.WARNING, logger="serialhs.driver"):
        lock.release()
    assert lock.path.read_bytes() == _hdb(sleeper.pid)
    assert f"PID {sleeper.pid}" in caplog.text
    assert not lock.held


def test_release_is_idempotent(tmp_path: pathlib.Path) -> None:
    lock = UucpLock(DEVICE, lock_dir=tmp_path)
    lock.release()  # never acquired
    lock.acquire()
    lock.acquire()  # already held: no-op
    lock.release()
    lock.release()
    assert lock.path is not None
    assert not lock.path.exists()


def test_permission_denied_names_directory(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_open = os.open

    def refusing_open(path: object, flags: int, mode: int = 0o777, **kw: object) -> int:
        if str(path).startswith(str(tmp_path)):
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real_open(path, flags, mode, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "open", refusing_open)
    with pytest.raises(PortPermissionError) as info:
        UucpLock(DEVICE, lock_dir=tmp_path).acquire()
    message = str(info.value)
    assert str(tmp_path) in message
    assert "dialout" in message
    assert "SERIALHS_LOCK_DIR" in message
    assert isinstance(info.value.__cause__, PermissionError)


def test_read_only_lock_dir(tmp_path: pathlib.Path, unprivileged: Any) -> None:
    locked = tmp_path / "ro"
    locked.mkdir(mode=0o555)
    tmp_path.chmod(0o755)

    def attempt() -> str:
        try:
            UucpLock(DEVICE, lock_dir=locked).acquire()
        except PortPermissionError as e:
            return f"PERMISSION {e}"
        return "ACQUIRED"

    try:
        message = unprivileged(attempt)
    finally:
        locked.chmod(0o755)
    assert message.startswith("PERMISSION"), message
    assert str(locked) in message


def test_missing_lock_dir_is_an_io_error(tmp_path: pathlib.Path) -> None:
    with pytest.raises(PortIOError) as info:
        UucpLock(DEVICE, lock_dir=tmp_path / "nope").acquire()
    assert str(tmp_path / "nope") in str(info.value)
    assert isinstance(info.value.__cause__, FileNotFoundError)


# --- the last-component lock name used by cu and minicom -----------------------------


def test_pty_lock_also_takes_basename_lock(
    tmp_path: pathlib.Path, pty: tuple[int, int, str]
) -> None:
    _, _, slave_path = pty
    number = pathlib.Path(slave_path).name
    lock = UucpLock(slave_path, lock_dir=tmp_path)
    assert lock.paths == (tmp_path / f"LCK..pts_{number}", tmp_path / f"LCK..{number}")
    with lock:
        for path in lock.paths:
            assert path.read_bytes() == _hdb(os.getpid())
    assert list(tmp_path.iterdir()) == []


def test_basename_lock_of_other_program_is_honoured(
    tmp_path: pathlib.Path, pty: tuple[int, int, str], sleeper: subprocess.Popen[bytes]
) -> None:
    _, _, slave_path = pty
    cu_style = tmp_path / f"LCK..{pathlib.Path(slave_path).name}"
    _write_lock(cu_style, _hdb(sleeper.pid))
    with pytest.raises(PortBusyError) as info:
        UucpLock(slave_path, lock_dir=tmp_path).acquire()
    assert info.value.pid == sleeper.pid
    assert info.value.lock_file == str(cu_style)
    # the half-taken primary lock was given back
    assert sorted(p.name for p in tmp_path.iterdir()) == [cu_style.name]


# --- flock / TIOCEXCL ----------------------------------------------------------------


def _excl_flag(fd: int) -> int:
    buf = fcntl.ioctl(fd, TIOCGEXCL, b"\0\0\0\0")
    return int(struct.unpack("=i", buf)[0])


def test_exclusive_fd_sets_and_clears_tiocexcl(pty: tuple[int, int, str]) -> None:
    _, _, slave_path = pty
    fd = os.open(slave_path, os.O_RDWR | os.O_NOCTTY)
    try:
        assert _excl_flag(fd) == 0
        exclusive_fd(fd, port=slave_path)
        assert _excl_flag(fd) == 1
        release_fd(fd)
        assert _excl_flag(fd) == 0
    finally:
        os.close(fd)


def test_tiocexcl_refuses_another_open(pty: tuple[int, int, str], unprivileged: Any) -> None:
    _, _, slave_path = pty
    os.chmod(slave_path, 0o666)  # so that only TIOCEXCL can refuse the open

    def attempt() -> str:
        try:
            os.close(os.open(slave_path, os.O_RDWR | os.O_NOCTTY))
        except OSError as e:
            return errno.errorcode.get(e.errno or 0, "?")
        return "OPENED"

    fd = os.open(slave_path, os.O_RDWR | os.O_NOCTTY)
    try:
        exclusive_fd(fd, port=slave_path)
        assert unprivileged(attempt) == "EBUSY"
        release_fd(fd)
        assert unprivileged(attempt) == "OPENED"
    finally:
        release_fd(fd)
        os.close(fd)


def test_exclusive_fd_in_one_process(pty: tuple[int, int, str]) -> None:
    _, _, slave_path = pty
    first = os.open(slave_path, os.O_RDWR | os.O_NOCTTY)
    second = os.open(slave_path, os.O_RDWR | os.O_NOCTTY)
    try:
        exclusive_fd(first, port="first")
        with pytest.raises(PortBusyError) as info:
            exclusive_fd(second, port="second")
        assert info.value.pid == os.getpid()
        assert info.value.port == "second"
        assert isinstance(info.value.__cause__, BlockingIOError)
        release_fd(first)
        exclusive_fd(second, port="second")
        release_fd(second)
    finally:
        os.close(first)
        os.close(second)


def test_exclusive_fd_contention_between_processes(
    pty: tuple[int, int, str], child: ChildFactory
) -> None:
    _, _, slave_path = pty
    # Open before the child sets TIOCEXCL, which would refuse a non-root open().
    fd = os.open(slave_path, os.O_RDWR | os.O_NOCTTY)
    try:
        holder = child(HOLD_FLOCK, slave_path)
        with pytest.raises(PortBusyError) as info:
            exclusive_fd(fd, port=slave_path)
        err = info.value
        assert err.pid == holder.pid
        assert f"PID {holder.pid} ({process_name(holder.pid)})" in str(err)
        assert err.port == slave_path
        _tell(holder, "released")  # the child calls release_fd and keeps the port open
        assert holder.poll() is None
        exclusive_fd(fd, port=slave_path)
        release_fd(fd)
    finally:
        os.close(fd)


def test_exclusive_fd_on_regular_file(tmp_path: pathlib.Path) -> None:
    # Not a tty: TIOCEXCL is skipped, flock still works.
    path = tmp_path / "not-a-tty"
    path.write_bytes(b"")
    first = os.open(path, os.O_RDWR)
    second = os.open(path, os.O_RDWR)
    try:
        exclusive_fd(first, port=str(path))
        with pytest.raises(PortBusyError):
            exclusive_fd(second, port=str(path))
        release_fd(first)
        exclusive_fd(second, port=str(path))
        release_fd(second)
    finally:
        os.close(first)
        os.close(second)


def test_release_fd_ignores_bad_fd(tmp_path: pathlib.Path) -> None:
    fd = os.open(tmp_path / "x", os.O_RDWR | os.O_CREAT)
    os.close(fd)
    release_fd(fd)  # closed: must not raise


# --- find_holders --------------------------------------------------------------------


def test_find_holders(pty: tuple[int, int, str], child: ChildFactory) -> None:
    _, _, slave_path = pty
    assert find_holders(slave_path) == []  # we hold it ourselves, but exclude_self
    assert os.getpid() in find_holders(slave_path, exclude_self=False)
    holder = child(HOLD_OPEN, slave_path)
    assert find_holders(slave_path) == [holder.pid]
    holder.kill()
    holder.wait(timeout=5)
    assert find_holders(slave_path) == []


def test_find_holders_through_symlink(
    tmp_path: pathlib.Path, pty: tuple[int, int, str], child: ChildFactory
) -> None:
    _, _, slave_path = pty
    alias = tmp_path / "ttyALIAS"
    alias.symlink_to(slave_path)
    holder = child(HOLD_OPEN, str(alias))
    assert find_holders(str(alias)) == [holder.pid]


# --- the real cu (Taylor UUCP) -------------------------------------------------------

CU = shutil.which("cu")
SYSTEM_LOCK_DIR = pathlib.Path("/var/lock")


class CuLab:
    """A socat pty pair and a way to run Taylor UUCP's cu on one end of it."""

    def __init__(self, tmp_path: pathlib.Path) -> None:
        self.tmp_path = tmp_path
        self.procs: list[subprocess.Popen[bytes]] = []
        self.terminals: list[int] = []
        socat = shutil.which("socat")
        if socat is None:
            pytest.skip("socat is not installed")
        a, b = tmp_path / "a", tmp_path / "b"
        self.socat = subprocess.Popen(
            [socat, "-d", "-d", f"pty,raw,echo=0,link={a}", f"pty,raw,echo=0,link={b}"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + 5
        while not (a.exists() and b.exists()):
            if self.socat.poll() is not None or time.monotonic() > deadline:
                raise AssertionError("socat did not create its pty pair")
            time.sleep(0.02)
        self.line = os.path.realpath(a)
        # cu started by root switches to the uucp user; let it open the pty.
        if os.geteuid() == 0:
            os.chmod(self.line, 0o666)

    def start_cu(self) -> tuple[subprocess.Popen[bytes], bytes]:
        """Run cu on the line with a pty as its terminal; returns it and what it said."""
        assert CU is not None
        master, slave = os.openpty()
        self.terminals += [master, slave]
        proc = subprocess.Popen(
            [CU, "-l", self.line, "-s", "9600"],
            stdin=slave,
            stdout=slave,
            stderr=slave,
            process_group=0,
        )
        self.procs.append(proc)
        said = b""
        deadline = time.monotonic() + 5
        while b"Connected." not in said and time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.05)
            if ready:
                try:
                    said += os.read(master, 1024)
                except OSError:
                    break
            elif proc.poll() is not None:
                break
        return proc, said

    def run_cu(self) -> subprocess.CompletedProcess[bytes]:
        """Run cu expecting it to give up at once."""
        assert CU is not None
        master, slave = os.openpty()
        self.terminals += [master, slave]
        return subprocess.run(
            [CU, "-l", self.line, "-s", "9600"],
            stdin=slave,
            capture_output=True,
            timeout=10,
            check=False,
        )

    def stop_cu(self, proc: subprocess.Popen[bytes]) -> None:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)  # cu and its forked reader
        proc.wait(timeout=5)
        # cu killed this way leaves its lock behind; take away only a lock of its own.
        for path in SYSTEM_LOCK_DIR.glob("LCK..*"):
            if read_lock_pid(path) == proc.pid:
                path.unlink(missing_ok=True)

    def close(self) -> None:
        for proc in self.procs:
            self.stop_cu(proc)
        _stop(self.socat)
        if self.socat.stderr is not None:
            self.socat.stderr.close()
        for fd in self.terminals:
            with contextlib.suppress(OSError):
                os.close(fd)


@pytest.fixture
def cu_lab(tmp_path: pathlib.Path) -> Iterator[CuLab]:
    if CU is None:
        pytest.skip("cu is not installed (Debian package 'cu', Taylor UUCP)")
    lab = CuLab(tmp_path)
    try:
        yield lab
    finally:
        lab.close()


def test_real_cu_and_uucp_lock_exclude_each_other(
    cu_lab: CuLab, caplog: pytest.LogCaptureFixture
) -> None:
    lock = UucpLock(cu_lab.line, lock_dir=SYSTEM_LOCK_DIR, port_label="socat-a")
    try:
        # 1. cu holds the line: we see its lock and name it.
        cu, said = cu_lab.start_cu()
        assert b"Connected." in said, said
        with pytest.raises(PortBusyError) as info:
            lock.acquire()
        assert info.value.pid == cu.pid
        assert f"in use by PID {cu.pid} (cu)" in str(info.value)
        assert info.value.lock_file is not None
        assert read_lock_pid(info.value.lock_file) == cu.pid

        # 2. cu dies without cleaning up: its lock is stale and we take the line.
        os.killpg(cu.pid, signal.SIGKILL)
        cu.wait(timeout=5)
        with caplog.at_level(logging.WARNING, logger="serialhs.driver"):
            lock.acquire()
        assert f"dead PID {cu.pid}" in caplog.text

        # 3. We hold the line: cu refuses it.
        refused = cu_lab.run_cu()
        assert refused.returncode != 0
        assert b"Line in use" in refused.stderr, refused.stderr
        assert b"open (" not in refused.stderr, refused.stderr  # refused by the lock alone
    finally:
        lock.release()

    # 4. Released: cu gets the line again.
    cu2, said = cu_lab.start_cu()
    assert b"Connected." in said, said
    cu_lab.stop_cu(cu2)
