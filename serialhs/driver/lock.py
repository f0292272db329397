"""Exclusive access to a serial port: UUCP lock files, flock(2) and TIOCEXCL.

Two independent mechanisms keep two programs off the same line:

* **UUCP lock files** (:class:`UucpLock`), the convention minicom, cu, pppd, ser2net
  and lockdev share: a file ``LCK..<name>`` in ``/var/lock`` holding the owner's PID
  in the HDB/ASCII format (``"%10d\\n"``). A lock whose process has died is stale and
  is removed. Taking the lock is atomic, as lockdev does it: the PID is written to a
  temporary file which is then hard-linked to the lock name.
* **flock(2) plus TIOCEXCL** on the open file descriptor (:func:`exclusive_fd`): the
  kernel-enforced half. ``flock`` conflicts with any other open file description of the
  device; ``TIOCEXCL`` makes further ``open()`` calls of the tty fail with ``EBUSY``
  (except for root).

Lock names follow ser2net/gensio: the device path is resolved (symlinks such as
``/dev/serial/by-id/...`` share one lock), a leading ``/dev/`` is stripped and any
remaining ``/`` becomes ``_`` (``/dev/pts/3`` -> ``LCK..pts_3``). Taylor UUCP's cu and
minicom name the lock after the last path component instead (``LCK..3``); where the two
names differ, :class:`UucpLock` takes and checks both, so either tool sees the port as
taken and serialhs sees theirs.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import pathlib
import secrets
import struct
import termios
import threading
import time
from types import TracebackType

from serialhs.errors import PortBusyError, PortError, PortIOError, PortPermissionError

__all__ = [
    "LOCK_DIR_ENV",
    "UucpLock",
    "default_lock_dir",
    "exclusive_fd",
    "find_holders",
    "lock_name",
    "pid_alive",
    "process_name",
    "read_lock_pid",
    "release_fd",
]

log = logging.getLogger("serialhs.driver")

#: Environment variable naming the lock directory; an empty value disables lock files.
LOCK_DIR_ENV = "SERIALHS_LOCK_DIR"

_SYSTEM_LOCK_DIR = pathlib.Path("/var/lock")
_PROC = pathlib.Path("/proc")

#: A lock file whose PID cannot be read is taken to be in the middle of being written
#: by its owner for this long after its last modification; after that it is stale.
_STALE_GRACE_S = 1.0
#: How many times acquire() removes a stale lock and tries again before giving up.
_MAX_ATTEMPTS = 5
#: Lock files are tiny; anything longer than this is not a lock file.
_MAX_LOCK_BYTES = 128
_BINARY_PID = struct.Struct("=i")

_PERMISSION_ERRNOS = frozenset({errno.EACCES, errno.EPERM, errno.EROFS})
_NOT_A_TTY_ERRNOS = frozenset({errno.ENOTTY, errno.EINVAL})
_NO_HARDLINK_ERRNOS = frozenset({errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP})

_BUSY_HINT = (
    "close the other program or wait for it to finish; "
    "a lock left by a process that has exited is removed automatically"
)

# Lock files held by UucpLock objects of this process. A lock file holding our own PID
# is contention when one of these holds it, and a leftover of an earlier process that
# happened to have the same PID otherwise. Acquire and release run one at a time within
# the process, so that this set and the files agree whatever the threads do.
_held_here: set[str] = set()
_held_here_guard = threading.RLock()


# --- names and lock directory --------------------------------------------------------


def lock_name(device: str) -> str:
    """Return the UUCP lock file name for ``device``, e.g. ``"LCK..ttyUSB0"``.

    Symlinks are resolved first, so every alias of a device shares one lock. A leading
    ``/dev/`` is stripped and remaining ``/`` become ``_`` (``/dev/pts/3`` ->
    ``"LCK..pts_3"``), as lockdev and ser2net name them.
    """
    real = os.path.realpath(device)
    if real.startswith("/dev/"):
        real = real[len("/dev/") :]
    return "LCK.." + real.replace("/", "_")


def _basename_lock_name(device: str) -> str:
    """The name cu (Taylor UUCP) and minicom use: the last component of the path."""
    return "LCK.." + pathlib.PurePath(os.path.realpath(device)).name


def default_lock_dir() -> pathlib.Path | None:
    """Return the directory for UUCP lock files, or None when lock files are off.

    ``$SERIALHS_LOCK_DIR`` wins when set (the empty string turns lock files off);
    otherwise ``/var/lock`` when it exists and this process may create files in it.
    """
    configured = os.environ.get(LOCK_DIR_ENV)
    if configured is not None:
        return pathlib.Path(configured) if configured else None
    if _SYSTEM_LOCK_DIR.is_dir() and os.access(_SYSTEM_LOCK_DIR, os.W_OK | os.X_OK):
        return _SYSTEM_LOCK_DIR
    return None


# --- lock file contents and processes ------------------------------------------------


def _parse_lock_pid(data: bytes) -> int | None:
    text = data.strip(b" \t\r\n")
    if len(data) != _BINARY_PID.size:
        # NUL padding is tolerated, except in four bytes: binary 12849 is b"12\0\0".
        text = text.strip(b" \t\r\n\x00")
    if text.isdigit():
        pid = int(text)
        return pid if pid > 0 else None
    # The old binary format: exactly one native int. An ASCII lock of four bytes
    # ("123\n") was handled above; no real PID packs into four digit characters.
    if len(data) == _BINARY_PID.size:
        pid = int(_BINARY_PID.unpack(data)[0])
        return pid if pid > 0 else None
    return None


def read_lock_pid(path: str | os.PathLike[str]) -> int | None:
    """Return the PID recorded in a UUCP lock file, or None if there is none to read.

    Understands the HDB/ASCII format (``"%10d\\n"``, written by minicom, cu, pppd;
    surrounding whitespace is tolerated) and the old binary format (exactly four bytes,
    a native-endian int). Missing, unreadable, empty or garbled files give None.
    """
    try:
        with pathlib.Path(path).open("rb") as f:
            data = f.read(_MAX_LOCK_BYTES + 1)
    except OSError:
        return None
    if len(data) > _MAX_LOCK_BYTES:
        return None
    return _parse_lock_pid(data)


def process_name(pid: int) -> str | None:
    """Return the command name of process ``pid`` (``/proc/PID/comm``), or None."""
    if pid <= 0:
        return None
    try:
        return (_PROC / str(pid) / "comm").read_text(errors="replace").rstrip("\n")
    except OSError:
        return None


def _is_zombie(pid: int) -> bool:
    try:
        stat = (_PROC / str(pid) / "stat").read_text(errors="replace")
    except OSError:
        return False
    # "PID (comm) STATE ..." -- comm may itself contain spaces and parentheses.
    _, _, rest = stat.rpartition(")")
    fields = rest.split()
    return bool(fields) and fields[0] == "Z"


def pid_alive(pid: int) -> bool:
    """Return True if process ``pid`` exists (a zombie does not count).

    ``os.kill(pid, 0)`` decides; EPERM means the process exists but belongs to
    someone else, so it counts as alive.
    """
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except (OverflowError, OSError):
        return False
    return not _is_zombie(pid)


def _describe_pid(pid: int) -> str:
    name = process_name(pid)
    if pid == os.getpid():
        return f"PID {pid} ({name}, this process)" if name else f"PID {pid} (this process)"
    return f"PID {pid} ({name})" if name else f"PID {pid}"


# --- UUCP lock files -----------------------------------------------------------------


class UucpLock:
    """A UUCP lock file for one device, as minicom, cu and pppd use.

    ``lock_dir`` None means :func:`default_lock_dir`; when that is None too the lock is
    disabled: :meth:`acquire` and :meth:`release` do nothing and :attr:`path` is None.
    ``port_label`` is how errors name the port (default: ``device``).

    >>> with UucpLock("/dev/ttyUSB0"):      # doctest: +SKIP
    ...     ...                             # nobody else who honours lock files uses it
    """

    def __init__(
        self,
        device: str,
        *,
        lock_dir: str | os.PathLike[str] | None = None,
        port_label: str | None = None,
    ) -> None:
        self.device = device
        self.port_label = port_label or device
        directory = pathlib.Path(lock_dir) if lock_dir is not None else default_lock_dir()
        self.lock_dir: pathlib.Path | None = directory
        self.path: pathlib.Path | None
        self.paths: tuple[pathlib.Path, ...]
        if directory is None:
            self.path = None
            self.paths = ()
            if os.environ.get(LOCK_DIR_ENV) == "":
                why = f"${LOCK_DIR_ENV} is empty"
            else:
                why = f"{_SYSTEM_LOCK_DIR} is missing or not writable and ${LOCK_DIR_ENV} is unset"
            log.debug("UUCP lock file for %s disabled: %s", self.port_label, why)
        else:
            self.path = directory / lock_name(device)
            compat = directory / _basename_lock_name(device)
            self.paths = (self.path,) if compat == self.path else (self.path, compat)
        self._held: list[pathlib.Path] = []

    @property
    def held(self) -> bool:
        """True while this object holds its lock file(s)."""
        return bool(self._held)

    def __repr__(self) -> str:
        state = "held" if self._held else "free"
        return f"<UucpLock {self.device!r} path={self.path} {state}>"

    def __enter__(self) -> UucpLock:
        self.acquire()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()

    # -- acquire ----------------------------------------------------------------------

    def acquire(self) -> None:
        """Take the lock file(s) or raise.

        Raises :class:`PortBusyError` (with ``pid`` and ``lock_file``) when a live
        process holds the lock, :class:`PortPermissionError` when the lock directory
        refuses us, :class:`PortIOError` on other OS failures. Stale locks of dead
        processes are removed (logged at WARNING) and the attempt repeated.
        """
        if self.lock_dir is None or self._held:
            return
        content = f"{os.getpid():10d}\n".encode("ascii")
        with _held_here_guard:
            try:
                for path in self.paths:
                    self._acquire_one(path, content)
                    self._held.append(path)
                    _held_here.add(str(path))
            except BaseException:
                self.release()
                raise
        log.debug("locked %s with %s", self.port_label, ", ".join(map(str, self.paths)))

    def _acquire_one(self, path: pathlib.Path, content: bytes) -> None:
        for _ in range(_MAX_ATTEMPTS):
            if self._try_create(path, content):
                return
            self._check_existing(path)  # raises when busy; returns once a stale lock is gone
        raise PortBusyError(
            f"lock file {path} keeps reappearing; gave up after {_MAX_ATTEMPTS} attempts",
            port=self.port_label,
            operation="lock",
            lock_file=str(path),
            hint="another program is fighting over this port",
        )

    def _try_create(self, path: pathlib.Path, content: bytes) -> bool:
        """Create ``path`` holding ``content`` atomically. False if it already exists."""
        tmp = path.with_name(f"LTMP.{os.getpid()}.{secrets.token_hex(4)}")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except OSError as e:
            raise self._dir_error(e) from e
        try:
            try:
                os.fchmod(fd, 0o644)  # whatever the umask
                os.write(fd, content)
            finally:
                os.close(fd)
            try:
                os.link(tmp, path)
            except FileExistsError:
                return False
            except OSError as e:
                if e.errno not in _NO_HARDLINK_ERRNOS:
                    raise self._dir_error(e) from e
                # A file system without hard links: fall back to O_EXCL. A reader may
                # briefly see the file empty, which the grace period covers.
                return self._create_exclusive(path, content)
            return True
        finally:
            with contextlib.suppress(OSError):
                tmp.unlink()

    def _create_exclusive(self, path: pathlib.Path, content: bytes) -> bool:
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            return False
        except OSError as e:
            raise self._dir_error(e) from e
        try:
            os.fchmod(fd, 0o644)
            os.write(fd, content)
        finally:
            os.close(fd)
        return True

    def _check_existing(self, path: pathlib.Path) -> None:
        """Raise if the existing lock at ``path`` is live; remove it if stale."""
        try:
            with path.open("rb") as f:
                st = os.fstat(f.fileno())
                data = f.read(_MAX_LOCK_BYTES + 1)
        except FileNotFoundError:
            return  # released meanwhile: just try again
        except OSError as e:
            raise self._dir_error(e, path) from e
        pid = _parse_lock_pid(data) if len(data) <= _MAX_LOCK_BYTES else None

        if pid is None:
            age = time.time() - st.st_mtime
            if age < _STALE_GRACE_S:
                raise PortBusyError(
                    f"lock file {path} is being written by another process "
                    f"(no PID in it yet, {age:.1f} s old)",
                    port=self.port_label,
                    operation="lock",
                    lock_file=str(path),
                    hint="try again in a moment",
                )
            why = f"unreadable content {data[:16]!r}"
        elif pid == os.getpid():
            if str(path) in _held_here:
                raise PortBusyError(
                    f"in use by {_describe_pid(pid)}: another port object of this "
                    f"process holds it; lock file {path}",
                    port=self.port_label,
                    operation="lock",
                    pid=pid,
                    lock_file=str(path),
                    hint="close the other port object first",
                )
            why = f"left over with this process's PID {pid}"
        elif pid_alive(pid):
            raise PortBusyError(
                f"in use by {_describe_pid(pid)}; lock file {path}",
                port=self.port_label,
                operation="lock",
                pid=pid,
                lock_file=str(path),
                hint=_BUSY_HINT,
            )
        else:
            why = f"of dead PID {pid}"

        # Remove the stale lock, but only the very file judged stale: another process
        # may have replaced it in the meantime.
        try:
            now = os.lstat(path)
            if (now.st_dev, now.st_ino) != (st.st_dev, st.st_ino):
                return
            path.unlink()
        except FileNotFoundError:
            return
        except OSError as e:
            raise self._dir_error(e, path) from e
        log.warning("removed stale lock %s %s (port %s)", path, why, self.port_label)

    def _dir_error(self, e: OSError, path: pathlib.Path | None = None) -> PortError:
        """Turn an OS error on the lock directory (or on ``path`` in it) into ours."""
        what = f"lock file {path}" if path is not None else f"lock directory {self.lock_dir}"
        reason = e.strerror or str(e)
        if e.errno in _PERMISSION_ERRNOS:
            message = (
                f"cannot access lock file {path}: {reason}"
                if path is not None
                else f"cannot create a lock file in {self.lock_dir}: {reason}"
            )
            return PortPermissionError(
                message,
                port=self.port_label,
                operation="lock",
                hint=(
                    f"add the user to the group owning {self.lock_dir}, usually 'dialout' "
                    f"or 'uucp'; or set {LOCK_DIR_ENV} to a writable directory, or to an "
                    "empty value to turn lock files off"
                ),
            )
        return PortIOError(
            f"cannot use {what}: {reason}",
            port=self.port_label,
            operation="lock",
            hint=f"check that the directory exists, or set {LOCK_DIR_ENV}",
        )

    # -- release ----------------------------------------------------------------------

    def release(self) -> None:
        """Remove the lock file(s) this object holds, if they still hold our PID.

        A lock file that now names another process is left alone (and logged). Never
        raises for OS errors: a failed removal is logged at WARNING.
        """
        with _held_here_guard:
            self._release_held()

    def _release_held(self) -> None:
        me = os.getpid()
        while self._held:
            path = self._held.pop()
            _held_here.discard(str(path))
            pid = read_lock_pid(path)
            if pid != me:
                if pid is None and not path.exists():
                    log.debug("lock file %s already gone", path)
                else:
                    log.warning(
                        "not removing lock %s: it now belongs to %s, not to this process",
                        path,
                        _describe_pid(pid) if pid is not None else "nobody (unreadable)",
                    )
                continue
            try:
                path.unlink()
            except FileNotFoundError:
                pass
            except OSError as e:
                log.warning("could not remove lock %s: %s", path, e)
            else:
                log.debug("unlocked %s (%s)", self.port_label, path)


# --- flock(2) and TIOCEXCL -----------------------------------------------------------


def _flock_holders(fd: int) -> list[int]:
    """PIDs holding a flock on the file behind ``fd``, from /proc/locks."""
    try:
        st = os.fstat(fd)
        text = (_PROC / "locks").read_text(errors="replace")
    except OSError:
        return []
    wanted = (os.major(st.st_dev), os.minor(st.st_dev), st.st_ino)
    pids: list[int] = []
    for line in text.splitlines():
        # "1: FLOCK  ADVISORY  WRITE 1234 00:19:3 0 EOF"; "->" marks a blocked waiter.
        fields = line.split()
        if "->" in fields or "FLOCK" not in fields:
            continue
        idx = fields.index("FLOCK")
        try:
            pid = int(fields[idx + 3])
            major, minor, inode = fields[idx + 4].split(":")
            where = (int(major, 16), int(minor, 16), int(inode))
        except (IndexError, ValueError):
            continue
        if where == wanted and pid > 0 and pid not in pids:
            pids.append(pid)
    return pids


def exclusive_fd(fd: int, *, port: str) -> None:
    """Claim the open port ``fd`` for this process: flock(LOCK_EX) plus TIOCEXCL.

    Raises :class:`PortBusyError` naming the holder's PID (and process name) when
    another open file description holds the flock, :class:`PortIOError` on other
    failures. TIOCEXCL is skipped silently for descriptors that are not ttys.
    """
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError as e:
        pids = [p for p in _flock_holders(fd) if p != os.getpid()] or _flock_holders(fd)
        if not pids:
            with contextlib.suppress(OSError):
                pids = find_holders(str((_PROC / "self" / "fd" / str(fd)).readlink()))
        pid = pids[0] if pids else None
        who = ", ".join(_describe_pid(p) for p in pids) if pids else "another process"
        raise PortBusyError(
            f"in use by {who} (it holds an exclusive flock on the device)",
            port=port,
            operation="lock",
            pid=pid,
            hint=_BUSY_HINT,
        ) from e
    except OSError as e:
        raise PortIOError(f"flock failed: {e.strerror or e}", port=port, operation="lock") from e
    try:
        fcntl.ioctl(fd, termios.TIOCEXCL)
    except OSError as e:
        if e.errno in _NOT_A_TTY_ERRNOS:
            return
        with contextlib.suppress(OSError):
            fcntl.flock(fd, fcntl.LOCK_UN)
        raise PortIOError(f"TIOCEXCL failed: {e.strerror or e}", port=port, operation="lock") from e


def release_fd(fd: int) -> None:
    """Undo :func:`exclusive_fd`: TIOCNXCL, then flock(LOCK_UN). Errors are ignored."""
    with contextlib.suppress(OSError):
        fcntl.ioctl(fd, termios.TIOCNXCL)
    with contextlib.suppress(OSError):
        fcntl.flock(fd, fcntl.LOCK_UN)


# --- who has it open -----------------------------------------------------------------


def find_holders(device: str, *, exclude_self: bool = True) -> list[int]:
    """Return the PIDs (sorted) of processes with ``device`` open.

    Scans the ``/proc/*/fd`` symlinks and compares them with the resolved device path.
    Processes whose descriptors cannot be read (other users', when not root) are
    skipped silently, so the answer may be incomplete but is never wrong.
    """
    target = os.path.realpath(device)
    me = os.getpid()
    holders: list[int] = []
    try:
        entries = list(os.scandir(_PROC))
    except OSError:
        return []
    for entry in entries:
        if not entry.name.isdigit():
            continue
        pid = int(entry.name)
        if exclude_self and pid == me:
            continue
        try:
            fds = list(pathlib.Path(entry.path, "fd").iterdir())
        except OSError:
            continue
        for fd_link in fds:
            try:
                link = str(fd_link.readlink())
            except OSError:
                continue
            if link == target:
                holders.append(pid)
                break
    return sorted(holders)
