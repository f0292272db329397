"""Virtual serial pairs: two connected pseudo-terminals made by socat.

    with SocatPair() as pair:
        left = serial.Serial(pair.a, timeout=1)
        right = serial.Serial(pair.b, timeout=1)

Both ends are raw (no echo, no CR/LF translation, no XON/XOFF), so every byte
value passes through unchanged. Ptys have no modem control lines: reading or
setting CTS/DSR/DCD/RI/RTS/DTR on them fails with ENOTTY.

``kill()`` ends socat abruptly, the way a device vanishes: a reader on either
end then sees EOF at once (``read()`` returns ``b""`` although ``select`` says
readable) and writes fail with EIO. Bytes that had reached a pty but were not
yet read are discarded by the kernel at that moment.

socat is always stopped: by ``stop()``, by the context manager, and by a
finalizer that runs when an abandoned pair is garbage-collected or the
interpreter exits.
"""

from __future__ import annotations

import collections
import logging
import math
import os
import re
import shlex
import shutil
import subprocess
import tempfile
import threading
import time
import weakref
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

from serialhs.errors import ConfigError, SimError, ToolMissingError

__all__ = ["SocatPair"]

logger = logging.getLogger("serialhs.sim")

#: Address options applied to both pty ends: raw bytes, no echo, no software flow control.
PTY_OPTIONS: tuple[str, ...] = ("rawer", "echo=0", "ixon=0", "ixoff=0")

#: How many of socat's stderr lines are kept for error messages.
TAIL_LINES = 50
#: Longest stderr line kept (longer lines are cut into pieces by the reader).
_MAX_LINE = 4096

_PTY_LINE = re.compile(r"\bPTY is (\S+)")
_READY_TEXT = "starting data transfer loop"


class _Process:
    """Everything that must be cleaned up for one socat run.

    It holds no reference to the :class:`SocatPair`, so that a finalizer can call
    :meth:`close` after the pair itself is gone.
    """

    def __init__(
        self,
        proc: subprocess.Popen[bytes],
        argv: list[str],
        directory: str,
        owns_directory: bool,
    ) -> None:
        self.proc = proc
        self.argv = argv
        self.directory = directory
        self.owns_directory = owns_directory
        self.links: dict[str, str] = {}  # link path -> the pty it should point at
        self.tail: collections.deque[str] = collections.deque(maxlen=TAIL_LINES)
        self.ptys: list[str] = []
        self.ready = threading.Event()
        self.lock = threading.Lock()
        self.closed = False
        self.owner_pid = os.getpid()  # a forked child must not stop its parent's socat
        self.reader = threading.Thread(
            target=self._drain, name=f"socat-stderr-{proc.pid}", daemon=True
        )
        self.reader.start()

    # -- stderr ----------------------------------------------------------------------

    def _drain(self) -> None:
        stream = self.proc.stderr
        if stream is None:  # pragma: no cover - always a pipe here
            return
        try:
            for raw in iter(lambda: stream.readline(_MAX_LINE), b""):
                line = raw.decode("utf-8", "replace").rstrip()
                if not line:
                    continue
                with self.lock:
                    self.tail.append(line)
                    found = _PTY_LINE.search(line)
                    if found:
                        self.ptys.append(found.group(1))
                if _READY_TEXT in line:
                    self.ready.set()
                logger.debug("socat[%d]: %s", self.proc.pid, line)
        except (OSError, ValueError):  # the pipe was closed under us
            pass

    def stderr_tail(self, lines: int = 15) -> str:
        with self.lock:
            shown = list(self.tail)[-lines:]
        return "\n".join(shown) if shown else "(socat printed nothing)"

    def pty_names(self) -> list[str]:
        with self.lock:
            return list(self.ptys)

    # -- ending ----------------------------------------------------------------------

    def kill(self) -> None:
        """SIGKILL socat and reap it; links and directory stay until :meth:`close`."""
        if self.proc.poll() is None:
            self.proc.kill()
            try:
                self.proc.wait(timeout=5.0)
            except subprocess.TimeoutExpired as e:
                raise SimError(f"socat (pid {self.proc.pid}) survived SIGKILL for 5s") from e

    def close(self, timeout: float = 2.0) -> None:
        """Stop socat (SIGTERM, then SIGKILL after *timeout*) and remove what it left."""
        with self.lock:
            if self.closed or os.getpid() != self.owner_pid:
                return
            self.closed = True
        proc = self.proc
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                logger.warning(
                    "socat (pid %d) ignored SIGTERM for %.1fs; killing it", proc.pid, timeout
                )
                proc.kill()
                proc.wait()
        self.reader.join(timeout=1.0)
        if not self.reader.is_alive() and proc.stderr is not None:
            proc.stderr.close()
        self._remove_files()
        logger.debug("socat (pid %d) stopped with exit code %s", proc.pid, proc.returncode)

    def _remove_files(self) -> None:
        if self.owns_directory:
            shutil.rmtree(self.directory, ignore_errors=True)
            if os.path.lexists(self.directory):
                logger.warning("could not remove %s", self.directory)
            return
        # In a caller's directory, remove only links that are still ours (socat
        # removes them itself on SIGTERM, but not when it was killed).
        for link, device in self.links.items():
            path = Path(link)
            try:
                if path.is_symlink() and str(path.readlink()) == device:
                    path.unlink()
            except OSError:
                pass


class SocatPair:
    """Two connected pseudo-terminals made by socat.

    ``a`` and ``b`` are symlinks to the two ptys; they live in a private temporary
    directory (mode 0700) unless *directory* names an existing one. ``a_device`` and
    ``b_device`` are the real ``/dev/pts/N`` behind them. Anything written to one end
    can be read from the other.

    A pair is used once: ``start()`` it (or enter it as a context manager), then
    ``stop()`` it. *extra_options* are further socat address options for both ends,
    one per item (for example ``"mode=600"``).
    """

    def __init__(
        self,
        *,
        directory: str | os.PathLike[str] | None = None,
        startup_timeout: float = 5.0,
        socat: str | os.PathLike[str] | None = None,
        extra_options: Sequence[str] = (),
    ) -> None:
        if (
            isinstance(startup_timeout, bool)
            or not isinstance(startup_timeout, int | float)
            or not 0 < startup_timeout < math.inf
        ):
            raise ConfigError(
                f"startup_timeout must be a positive number of seconds, not {startup_timeout!r}"
            )
        if isinstance(extra_options, str):
            raise ConfigError("extra_options must be a sequence of socat options, not one string")
        for option in extra_options:
            if not option or option != option.strip() or "," in option:
                raise ConfigError(
                    f"bad socat option {option!r}: give one option per item, "
                    "without commas or surrounding spaces"
                )
            if option.split("=", 1)[0] == "link":
                raise ConfigError("the link option is managed by SocatPair; use directory=")
        self._directory = os.fspath(directory) if directory is not None else None
        self._startup_timeout = float(startup_timeout)
        self._socat = os.fspath(socat) if socat is not None else None
        self._extra_options = tuple(extra_options)
        self._process: _Process | None = None
        self._finalizer: weakref.finalize[..., SocatPair] | None = None
        self._a = self._b = self._a_device = self._b_device = ""
        self.pid: int | None = None
        self._state = "new"

    # -- paths ------------------------------------------------------------------------

    def _started(self, value: str) -> str:
        if self._state == "new":
            raise SimError("the socat pair is not started; call start() or use it in a with block")
        return value

    @property
    def a(self) -> str:
        """Path of end A (a symlink to ``a_device``)."""
        return self._started(self._a)

    @property
    def b(self) -> str:
        """Path of end B (a symlink to ``b_device``)."""
        return self._started(self._b)

    @property
    def a_device(self) -> str:
        """The pty behind end A, e.g. ``/dev/pts/3``."""
        return self._started(self._a_device)

    @property
    def b_device(self) -> str:
        """The pty behind end B."""
        return self._started(self._b_device)

    @property
    def alive(self) -> bool:
        """True while socat is running."""
        return self._process is not None and self._process.proc.poll() is None

    @property
    def command(self) -> list[str]:
        """The socat command line (known once started)."""
        return list(self._process.argv) if self._process is not None else []

    def __repr__(self) -> str:
        if self._state == "new":
            return "<SocatPair new>"
        return f"<SocatPair {self._state} pid={self.pid} a={self._a} b={self._b}>"

    # -- lifecycle --------------------------------------------------------------------

    def _find_socat(self) -> str:
        found: str | None
        if self._socat is not None and os.sep in self._socat:
            given = Path(self._socat)
            found = self._socat if given.is_file() and os.access(given, os.X_OK) else None
        else:
            found = shutil.which(self._socat or "socat")
        if found is None:
            logger.debug("socat not found (looked for %r)", self._socat or "socat on PATH")
            raise ToolMissingError("socat", package="socat")
        return found

    def start(self) -> SocatPair:
        """Run socat and wait until both ends are ready. Returns the pair itself.

        Raises ToolMissingError when socat is not installed and SimError when it
        fails to start or does not get ready within ``startup_timeout``.
        """
        if self._state != "new":
            raise SimError(f"the socat pair was already started ({self._state}); make a new one")
        executable = self._find_socat()
        if self._directory is None:
            directory = tempfile.mkdtemp(prefix="serialhs-socat-")  # mode 0700
            owns = True
        else:
            directory = self._directory
            owns = False
        a = str(Path(directory, "a"))
        b = str(Path(directory, "b"))
        try:
            if not owns:
                for path in (a, b):
                    # socat would silently replace whatever is there; only a stale
                    # (dangling) link from an earlier pair may be replaced.
                    if Path(path).exists():  # dangling links do not "exist"
                        raise SimError(
                            f"{path} already exists; socat would replace it. "
                            "Use another directory or leave directory=None"
                        )
            options = ",".join((*PTY_OPTIONS, *self._extra_options))
            argv = [
                executable,
                "-d",
                "-d",
                f"pty,{options},link={a}",
                f"pty,{options},link={b}",
            ]
            logger.debug("starting %s", argv)
            try:
                proc = subprocess.Popen(
                    argv,
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.PIPE,
                    process_group=0,  # a Ctrl-C at the terminal is for us, not for socat
                )
            except OSError as e:
                raise SimError(f"cannot run {executable}: {e}") from e
        except BaseException:
            if owns:
                shutil.rmtree(directory, ignore_errors=True)
            raise
        process = _Process(proc, argv, directory, owns)
        self._process = process
        self._finalizer = weakref.finalize(self, process.close)
        self.pid = proc.pid
        self._a, self._b = a, b
        self._state = "starting"
        try:
            self._wait_ready(process)
        except BaseException:
            self.stop()
            raise
        self._state = "running"
        logger.info(
            "socat pair up (pid %d): %s -> %s <=> %s -> %s",
            proc.pid,
            a,
            self._a_device,
            b,
            self._b_device,
        )
        return self

    def _wait_ready(self, process: _Process) -> None:
        proc = process.proc
        deadline = time.monotonic() + self._startup_timeout
        a, b = self._a, self._b
        while True:
            if process.ready.is_set() and os.path.lexists(a) and os.path.lexists(b):
                break
            code = proc.poll()
            if code is not None:
                process.reader.join(timeout=1.0)  # collect socat's last words
                raise SimError(
                    f"socat exited with code {code} before the pair was ready\n"
                    f"command: {shlex.join(process.argv)}\n"
                    f"socat said:\n{process.stderr_tail()}"
                )
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise SimError(
                    f"socat (pid {proc.pid}) was not ready within {self._startup_timeout:g}s\n"
                    f"command: {shlex.join(process.argv)}\n"
                    f"socat said:\n{process.stderr_tail()}"
                )
            if process.ready.is_set():
                time.sleep(min(remaining, 0.005))  # links come before the ready line
            else:
                process.ready.wait(min(remaining, 0.01))
        devices = []
        ptys = process.pty_names()
        for index, link in enumerate((a, b)):
            try:
                device = os.path.realpath(link, strict=True)
            except OSError as e:
                raise SimError(f"socat link {link} does not lead to a pty: {e}") from e
            if index < len(ptys) and os.path.realpath(ptys[index]) != device:
                raise SimError(
                    f"{link} points at {device}, but socat reported {ptys[index]}; "
                    "something else changed the link"
                )
            devices.append(device)
        self._a_device, self._b_device = devices
        if not process.owns_directory:
            process.links = {link: str(Path(link).readlink()) for link in (a, b)}

    def stop(self, timeout: float = 2.0) -> None:
        """Stop socat (SIGTERM; SIGKILL after *timeout* seconds) and remove the links.

        Removes the temporary directory if the pair made it. Safe to call more
        than once, and on a pair that was never started.
        """
        if self._process is None:
            return
        self._process.close(timeout)
        if self._finalizer is not None:
            self._finalizer.detach()
        self._state = "stopped"

    def kill(self) -> None:
        """SIGKILL socat at once, as if the device vanished.

        Readers on either end see EOF immediately and writers get EIO. Unread
        bytes in the ptys are lost. The links are left dangling until ``stop()``.
        """
        if self._process is None:
            raise SimError("the socat pair is not started; nothing to kill")
        logger.debug("killing socat (pid %d)", self._process.proc.pid)
        self._process.kill()

    def stderr_tail(self, lines: int = 15) -> str:
        """The last lines socat wrote to stderr (for diagnostics)."""
        return self._process.stderr_tail(lines) if self._process else ""

    def __enter__(self) -> SocatPair:
        if self._state != "running":
            self.start()  # raises for a pair that was already used
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
