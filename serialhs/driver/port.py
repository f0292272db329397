"""The synchronous serial port: open, settings, data, control lines, break, locking.

:class:`Port` wraps one pyserial instance (any pyserial URL or device path) and
adds what pyserial leaves to its users:

- control lines chosen *before* the port opens, and RTS+DTR set together in one
  TIOCMSET; pulses; waits on line conditions with a timeout; change callbacks;
- opening keeps the bytes already waiting in the input (a device's boot banner)
  unless ``discard_input=True``;
- exclusive access: a UUCP lock file as minicom/cu/pppd write it, plus flock and
  TIOCEXCL; a busy port names the holder's PID;
- reads that raise on timeout and hand back what arrived (never a silent short
  read), bounded line reads, and a clear error when the device vanishes;
- a transcript and TRACE hexdumps of everything that crosses the port.

Every wait has a timeout. Errors from the OS and pyserial are mapped to
:mod:`serialhs.errors` in one place, :func:`map_error`.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import select
import termios
import threading
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any, Literal

import serial
from serial import serialposix

from serialhs.driver import lock as _lock
from serialhs.driver.lineaccess import (
    LineAccess,
    NoLineAccess,
    choose_line_access,
    is_pty_device,
)
from serialhs.driver.lines import Line, Lines
from serialhs.driver.settings import Parity, SerialSettings, StopBits
from serialhs.driver.transcript import Transcript
from serialhs.errors import (
    ConfigError,
    InputOverflowError,
    LineWaitTimeout,
    PortBusyError,
    PortDisconnectedError,
    PortError,
    PortIOError,
    PortNotFoundError,
    PortNotOpenError,
    PortPermissionError,
    ReadTimeout,
    SerialHSError,
    WriteTimeout,
)
from serialhs.log import trace_bytes

__all__ = [
    "DEFAULT_TIMEOUT",
    "LineCondition",
    "LinesPolicy",
    "Port",
    "check_duration",
    "map_error",
    "open_port",
]

log = logging.getLogger("serialhs.driver")

# usb://VID:PID?serial=... URLs are served by serialhs's user-space USB drivers.
# Only the package name is registered here (pyserial imports serialhs.usb.protocol_usb
# when such a URL is opened), so the driver layer loads no USB code until then.
if "serialhs.usb" not in serial.protocol_handler_packages:
    serial.protocol_handler_packages.append("serialhs.usb")

LinesPolicy = Literal["strict", "tolerant"]

#: Default for every wait when the caller gives none, in seconds.
DEFAULT_TIMEOUT = 1.0
#: Largest chunk taken from the OS in one read.
CHUNK = 65536
#: The most bytes a tty's VMIN can count (it is one byte of termios' c_cc).
MAX_VMIN = 255
#: How long one blocking pyserial call may take on URL ports (loop://, rfc2217://).
URL_POLL = 0.02
#: Shortest write timeout given to URL handlers (usb://, rfc2217://, ...).
URL_WRITE_TIMEOUT = 5.0
#: Line polling interval while waiting for a condition.
LINE_POLL = 0.002

_DISCONNECT_ERRNOS = {errno.EIO, errno.ENXIO, errno.ENODEV, errno.EPIPE, errno.ECONNRESET}


def map_error(
    e: BaseException, *, port: str, operation: str, partial: bytes = b""
) -> SerialHSError:
    """Turn an OS or pyserial error into the matching serialhs error (to raise ``from e``)."""
    if isinstance(e, SerialHSError):
        return e
    code = getattr(e, "errno", None)
    text = str(e)
    if code in _DISCONNECT_ERRNOS or "returned no data" in text or "disconnected" in text:
        return PortDisconnectedError(
            f"device disconnected ({text})",
            port=port,
            operation=operation,
            hint="it was unplugged or the other end went away; reopen it when it is back",
            partial=partial,
        )
    if code == errno.ENOENT:
        return PortNotFoundError(f"no such device ({text})", port=port, operation=operation)
    if code in (errno.EACCES, errno.EPERM):
        return PortPermissionError(
            f"permission denied ({text})",
            port=port,
            operation=operation,
            hint="add your user to the group that owns the device (often 'dialout') "
            "and log in again, or fix the device's udev rule",
        )
    if code == errno.EBUSY:
        return PortBusyError(f"device busy ({text})", port=port, operation=operation)
    return PortIOError(text, port=port, operation=operation)


class _Reader:
    """Moves bytes between the OS and the port's receive buffer. Two kinds:
    a tty device (select + os.read on its fd) and a URL port (pyserial's own I/O)."""

    def __init__(self, instance: Any) -> None:
        self.serial = instance
        self.fd: int | None = (
            instance.fileno() if isinstance(instance, serialposix.Serial) else None
        )
        #: a non-blocking fd is tried before select() waits on it: a busy line saves
        #: a system call per read or write
        self.try_first = self.fd is not None and not os.get_blocking(self.fd)

    def read(self, deadline: float, min_size: int = 1) -> bytes | None:
        """Some bytes, or None when the deadline passed first. b"" never returns:
        end-of-file raises a disconnect (as an OSError with EIO). ``min_size``: a
        non-blocking tty is not looked at again until that many bytes (at most
        255) have arrived or the deadline has passed (see :meth:`_wait_for`)."""
        if self.fd is not None:
            if min_size > 1 and self.try_first:
                return self._wait_for(min(min_size, MAX_VMIN), deadline)
            if self.try_first:
                # VMIN=0 VTIME=0: nothing to read is b"" (or EAGAIN), not end-of-file;
                # only a read that select() found ready can tell end-of-file.
                with contextlib.suppress(BlockingIOError):
                    data = os.read(self.fd, CHUNK)
                    if data:
                        return data
            while True:
                remaining = max(0.0, deadline - time.monotonic())
                ready, _, _ = select.select([self.fd], [], [], remaining)
                if not ready:
                    return None
                try:
                    data = os.read(self.fd, CHUNK)
                except BlockingIOError:
                    continue
                if not data:
                    raise OSError(errno.EIO, "end of file: the other side closed")
                return data
        while True:
            waiting = self.serial.in_waiting
            data = self.serial.read(min(max(1, waiting), CHUNK))
            if data:
                return bytes(data)
            if time.monotonic() >= deadline:
                return None

    def _wait_for(self, count: int, deadline: float) -> bytes | None:
        """Whatever has arrived once ``count`` bytes have, or the deadline has passed
        (None if nothing has). The tty's VMIN makes select() wait in the kernel
        until ``count`` bytes are there (Linux n_tty counts VMIN for readiness when
        VTIME is 0), so bytes that trickle in at the line's rate wake the reader
        once, not once per driver delivery; VMIN goes back to what it was after."""
        assert self.fd is not None
        fd = self.fd
        try:
            if self.in_waiting() >= count:
                return self.read(deadline)
            attrs = termios.tcgetattr(fd)
        except (OSError, termios.error):
            return self.read(deadline)  # not a tty that can count: the plain read says why
        before = attrs[6][termios.VMIN]
        attrs[6][termios.VMIN] = count
        try:
            termios.tcsetattr(fd, termios.TCSANOW, attrs)
            try:
                ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
            finally:
                # read again: settings changed meanwhile (reconfigure) stay as they are
                attrs = termios.tcgetattr(fd)
                attrs[6][termios.VMIN] = before
                termios.tcsetattr(fd, termios.TCSANOW, attrs)
        except termios.error as e:  # the device went away under us
            raise OSError(errno.EIO, f"cannot set the read threshold: {e}") from e
        try:
            data = os.read(fd, CHUNK)
        except BlockingIOError:
            return None
        if not data and ready:
            raise OSError(errno.EIO, "end of file: the other side closed")
        return data or None

    def write(self, data: memoryview, deadline: float) -> int:
        """Write as much as possible before the deadline; return the count written."""
        if self.fd is None:
            return int(self.serial.write(bytes(data)) or 0)
        written = 0
        ready = self.try_first
        while written < len(data):
            if ready:
                with contextlib.suppress(BlockingIOError):
                    written += os.write(self.fd, data[written:])
                if written == len(data):
                    break
                # short or refused: the driver's queue is full, and another write
                # now would be refused too; select() says when there is room
            remaining = max(0.0, deadline - time.monotonic())
            ready = bool(select.select([], [self.fd], [], remaining)[1])
            if not ready:
                break
        return written

    def out_waiting(self) -> int:
        return int(self.serial.out_waiting) if self.fd is not None else 0

    def in_waiting(self) -> int:
        return int(self.serial.in_waiting)


class Port:
    """One serial port. Create it, then ``open()`` it (or use ``with``).

    ``url`` is a device path (/dev/ttyUSB0) or any pyserial URL (loop://,
    rfc2217://host:port, socket://host:port, spy://...). ``rts`` and ``dtr``, when
    given, are the line states the port takes as it opens (no DTR glitch from
    pyserial; see docs/driver.md for the kernel's own part). ``lines`` chooses what
    happens on a port without control lines: ``"strict"`` raises
    LinesUnsupportedError, ``"tolerant"`` warns once and carries on.
    """

    def __init__(
        self,
        url: str,
        settings: SerialSettings | str | None = None,
        *,
        rts: bool | None = None,
        dtr: bool | None = None,
        exclusive: bool = True,
        lock_dir: str | os.PathLike[str] | None = None,
        discard_input: bool = False,
        lines: LinesPolicy = "strict",
        hangup_on_close: bool | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        transcript: Transcript | None = None,
        max_buffer: int = 1 << 20,
    ) -> None:
        if lines not in ("strict", "tolerant"):
            raise ConfigError(f"lines must be 'strict' or 'tolerant', not {lines!r}")
        _check_timeout(timeout)
        self.url = url
        self.name = url
        if isinstance(settings, str):
            settings = SerialSettings.parse(settings)
        self._settings = settings or SerialSettings()
        self._initial = (rts, dtr)
        self._exclusive = exclusive
        self._lock_dir = lock_dir
        self._discard_input = discard_input
        self._policy: LinesPolicy = lines
        self._hupcl = hangup_on_close
        self.timeout = timeout
        self.transcript = transcript
        self.max_buffer = max_buffer
        self._serial: Any = None
        self._pty = False
        self._io: _Reader | None = None
        self._lines: LineAccess | None = None
        self._uucp: _lock.UucpLock | None = None
        self._rx = bytearray()
        self._rx_lock = threading.RLock()
        self._tx_lock = threading.Lock()
        self._line_lock = threading.Lock()
        self._warned_lines = False
        self._watch_stop = threading.Event()
        self._watcher: threading.Thread | None = None
        self._callbacks: list[Callable[[Lines, Lines], None]] = []

    # -- lifecycle ----------------------------------------------------------------

    @property
    def is_open(self) -> bool:
        return self._serial is not None

    def open(self) -> Port:
        if self.is_open:
            return self
        is_device = "://" not in self.url
        device = os.path.realpath(self.url) if is_device else None
        if device is not None and not os.path.exists(device):
            raise PortNotFoundError(
                "no such device", port=self.url, operation="open", hint=_present_ports_hint()
            )
        if device is not None and self._exclusive:
            self._uucp = _lock.UucpLock(device, lock_dir=self._lock_dir, port_label=self.url)
            self._uucp.acquire()
        try:
            self._open_serial(device)
        except BaseException:
            self._release_locks()
            raise
        self._record("open", text=str(self._settings))
        log.debug("opened %s at %s (lines: %s)", self.url, self._settings, self._lines_kind())
        return self

    def _os_settings(self, settings: SerialSettings) -> dict[str, Any]:
        """What the OS is asked to hold. Recent Linux kernels refuse (EINVAL) or
        drop any character size but 8 and any parity on a pty, so a pty is given
        8N and keeps the asked framing only in ``settings`` (bytes pass as they are)."""
        if self._pty:
            stop = settings.stopbits
            if stop is StopBits.ONE_POINT_FIVE:  # 1.5 exists only with 5 data bits
                stop = StopBits.TWO
            settings = settings.replace(bytesize=8, parity=Parity.NONE, stopbits=stop)
        return settings.pyserial_kwargs()

    def _open_serial(self, device: str | None) -> None:
        self._pty = device is not None and is_pty_device(device)
        try:
            instance = serial.serial_for_url(
                self.url, do_not_open=True, **self._os_settings(self._settings)
            )
        except ValueError as e:  # unknown URL scheme, bad setting for the handler
            raise ConfigError(f"cannot use port {self.url!r}: {e}") from e
        is_tty = isinstance(instance, serialposix.Serial)
        instance.timeout = 0 if is_tty else URL_POLL
        # tty writes are bounded by the port's own select loop; URL handlers bound
        # theirs with pyserial's write timeout (a write held by flow control).
        instance.write_timeout = None if is_tty else max(self.timeout, URL_WRITE_TIMEOUT)
        rts, dtr = self._initial
        if rts is not None:
            instance.rts = rts
        if dtr is not None:
            instance.dtr = dtr
        # pyserial's open() flushes the input; keep the bytes already waiting
        # (a boot banner) unless asked to discard them.
        flushes = ("reset_input_buffer", "_reset_input_buffer")
        for name in flushes:
            setattr(instance, name, _no_flush)
        try:
            instance.open()
        except ValueError as e:  # a setting the port (or its URL handler) refuses
            raise ConfigError(f"cannot open {self.url} at {self._settings}: {e}") from e
        except (serial.SerialException, OSError) as e:
            raise self._open_error(e, device) from e
        finally:
            for name in flushes:
                delattr(instance, name)
        try:
            if is_tty and self._exclusive:
                _lock.exclusive_fd(instance.fileno(), port=self.url)
            if self._discard_input:
                instance.reset_input_buffer()
            self._serial = instance
            self._io = _Reader(instance)
            self._lines = choose_line_access(self.url, instance)
            self._lines.settings_changed(self._settings)
            if self._lines.supported:
                # The states asked for, or pyserial's (on, as the kernel raises them
                # when a tty opens), in one operation.
                self._lines.set(
                    bool(instance.rts) if rts is None else rts,
                    bool(instance.dtr) if dtr is None else dtr,
                )
            if is_tty and self._hupcl is not None:
                self._set_hupcl(instance.fileno(), self._hupcl)
        except BaseException as e:
            if self._lines is not None:
                self._lines.close()
            self._serial = self._io = self._lines = None
            instance.close()
            if isinstance(e, (serial.SerialException, OSError)) and not isinstance(
                e, SerialHSError
            ):
                raise map_error(e, port=self.url, operation="open") from e
            raise

    def _open_error(self, e: BaseException, device: str | None) -> SerialHSError:
        err = map_error(e, port=self.url, operation="open")
        if isinstance(err, PortBusyError) and device is not None:
            holders = _lock.find_holders(device)
            if holders:
                who = ", ".join(f"{pid} ({_lock.process_name(pid) or '?'})" for pid in holders)
                err = PortBusyError(
                    f"device busy: in use by PID {who}",
                    port=self.url,
                    operation="open",
                    pid=holders[0],
                )
        if isinstance(err, PortNotFoundError):
            err.hint = _present_ports_hint()
        return err

    @staticmethod
    def _set_hupcl(fd: int, on: bool) -> None:
        attrs = termios.tcgetattr(fd)
        attrs[2] = attrs[2] | termios.HUPCL if on else attrs[2] & ~termios.HUPCL
        termios.tcsetattr(fd, termios.TCSANOW, attrs)

    def close(self) -> None:
        if not self.is_open:
            return
        self._stop_watcher()
        instance = self._serial
        try:
            if self._lines is not None:
                self._lines.close()
            if self._io is not None and self._io.fd is not None:
                _lock.release_fd(self._io.fd)
            instance.close()
        except (serial.SerialException, OSError) as e:
            log.debug("closing %s: %s", self.url, e)
        finally:
            self._serial = self._io = self._lines = None
            self._release_locks()
            self._record("close")

    def _release_locks(self) -> None:
        if self._uucp is not None:
            self._uucp.release()
            self._uucp = None

    def __enter__(self) -> Port:
        return self.open()

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "open" if self.is_open else "closed"
        return f"<Port {self.url} {self._settings} {state}>"

    def _require_open(self, operation: str) -> Any:
        if self._serial is None:
            raise PortNotOpenError("port is not open", port=self.url, operation=operation)
        return self._serial

    def fileno(self) -> int:
        """The OS descriptor of a tty device port (for select/poll and asyncio)."""
        self._require_open("fileno of")
        if self._io is None or self._io.fd is None:
            raise PortError("this port has no file descriptor", port=self.url)
        return self._io.fd

    @property
    def serial(self) -> Any:
        """The underlying pyserial instance (for libraries that need one)."""
        return self._require_open("use")

    # -- settings -----------------------------------------------------------------

    @property
    def settings(self) -> SerialSettings:
        return self._settings

    def reconfigure(self, settings: SerialSettings | None = None, **changes: Any) -> None:
        """Apply new settings to the open port: a whole SerialSettings, or fields to change."""
        new = (settings or self._settings).replace(**changes) if changes else settings
        if new is None:
            raise ConfigError("reconfigure needs settings or fields to change")
        if self.is_open:
            try:
                self._serial.apply_settings(self._os_settings(new))
                assert self._lines is not None
                self._lines.settings_changed(new)
            except (serial.SerialException, OSError, ValueError) as e:
                if isinstance(e, ValueError):
                    raise ConfigError(f"{self.url}: cannot apply {new}: {e}") from e
                raise map_error(e, port=self.url, operation="reconfigure") from e
        self._settings = new
        self._record("settings", text=str(new))

    # -- writing ------------------------------------------------------------------

    def write(self, data: bytes, *, timeout: float | None = None) -> int:
        """Write all of ``data`` or raise WriteTimeout (carrying the count that went out)."""
        self._require_open("write to")
        assert self._io is not None
        limit = self._timeout(timeout)
        view = memoryview(data)
        with self._tx_lock:
            try:
                written = self._io.write(view, time.monotonic() + limit)
            except serial.SerialTimeoutException:
                written = 0  # a URL handler's write timeout: how much went out is unknown
            except (serial.SerialException, OSError) as e:
                raise map_error(e, port=self.url, operation="write to") from e
        sent = bytes(view[:written])
        if sent:
            trace_bytes(log, self.url, "tx", sent)
            self._record("tx", sent)
        if written < len(data):
            raise WriteTimeout(
                f"write of {len(data)} byte(s) did not finish in {limit} s "
                "(is flow control holding it back?)",
                port=self.url,
                timeout=limit,
                written=written,
            )
        return written

    def drain(self, *, timeout: float | None = None) -> None:
        """Wait until every written byte has left the port, its last stop bit
        included (a bounded tcdrain)."""
        self._require_open("drain")
        assert self._io is not None and self._lines is not None
        limit = self._timeout(timeout)
        deadline = time.monotonic() + limit
        while True:
            try:
                left = self._io.out_waiting()
                if left == 0 and self._lines.tx_idle():
                    return
            except (serial.SerialException, OSError) as e:
                raise map_error(e, port=self.url, operation="drain") from e
            if time.monotonic() >= deadline:
                queued = f"{left} byte(s) in the driver's queue" if left else "the transmitter busy"
                raise WriteTimeout(
                    f"output not sent after {limit} s ({queued}; is flow control holding it?)",
                    port=self.url,
                    timeout=limit,
                )
            time.sleep(0.001)

    def reset_output(self) -> None:
        """Discard bytes written but not yet sent."""
        self._require_open("reset output of").reset_output_buffer()

    # -- reading ------------------------------------------------------------------

    def _timeout(self, timeout: float | None) -> float:
        return _check_timeout(self.timeout if timeout is None else timeout)

    def _read_io(self, deadline: float, operation: str, min_size: int = 1) -> bytes | None:
        """Bytes from the OS (traced and recorded), or None if the deadline passed first."""
        self._require_open(operation)
        assert self._io is not None
        try:
            data = self._io.read(deadline, min_size)
        except (serial.SerialException, OSError) as e:
            partial = self._take(len(self._rx))
            raise map_error(e, port=self.url, operation=operation, partial=partial) from e
        if data is not None:
            trace_bytes(log, self.url, "rx", data)
            self._record("rx", data)
        return data

    def _fill(self, deadline: float, operation: str) -> bool:
        """Read more bytes into the buffer. False if the deadline passed first."""
        data = self._read_io(deadline, operation)
        if data is None:
            return False
        self._rx += data
        return True

    def _read_direct(self, deadline: float, max_size: int, min_size: int = 1) -> bytes | None:
        """With nothing buffered: bytes from the OS, handed over without passing
        through the buffer when they fit in ``max_size`` (a stream's common case);
        None if the deadline passed first."""
        data = self._read_io(deadline, "read from", min_size)
        if data is None or len(data) <= max_size:
            return data
        self._rx += data
        return self._take(max_size)

    def _take(self, n: int) -> bytes:
        out = bytes(self._rx[:n])
        del self._rx[:n]
        return out

    def read_exactly(self, size: int, *, timeout: float | None = None) -> bytes:
        """Exactly ``size`` bytes, or ReadTimeout carrying what arrived."""
        limit = self._timeout(timeout)
        deadline = time.monotonic() + limit
        with self._rx_lock:
            while len(self._rx) < size:
                if not self._fill(deadline, "read from"):
                    raise ReadTimeout(
                        f"wanted {size} byte(s) within {limit} s",
                        port=self.url,
                        timeout=limit,
                        partial=self._take(len(self._rx)),
                    )
            return self._take(size)

    def read_until(
        self,
        terminator: bytes = b"\n",
        *,
        timeout: float | None = None,
        max_size: int = 65536,
    ) -> bytes:
        """Bytes up to and including ``terminator``.

        Raises ReadTimeout (with the partial data) if it does not come in time, and
        InputOverflowError (with every byte taken) if ``max_size`` bytes arrive
        without it.
        """
        if not terminator:
            raise ConfigError("read_until needs a non-empty terminator")
        limit = self._timeout(timeout)
        deadline = time.monotonic() + limit
        with self._rx_lock:
            start = 0
            while True:
                found = self._rx.find(terminator, start)
                if found >= 0 and found + len(terminator) <= max_size:
                    return self._take(found + len(terminator))
                if found >= 0 or len(self._rx) >= max_size:
                    raise InputOverflowError(
                        f"no {terminator!r} within {max_size} bytes",
                        port=self.url,
                        operation="read line from",
                        partial=self._take(len(self._rx)),
                    )
                start = max(0, len(self._rx) - len(terminator) + 1)
                if not self._fill(deadline, "read from"):
                    raise ReadTimeout(
                        f"no {terminator!r} within {limit} s",
                        port=self.url,
                        timeout=limit,
                        partial=self._take(len(self._rx)),
                    )

    def read_some(
        self, max_size: int = CHUNK, *, timeout: float | None = None, min_size: int = 1
    ) -> bytes:
        """At least one byte (at most ``max_size``), or ReadTimeout.

        ``min_size``: the caller expects that many bytes before it can use them
        (the rest of a frame): a tty device port then waits until they have
        arrived (up to 255 counted) or the timeout has passed, and returns what
        there is. Other ports, and bytes already buffered, return at once."""
        limit = self._timeout(timeout)
        deadline = time.monotonic() + limit
        with self._rx_lock:
            if self._rx:
                return self._take(max_size)
            data = self._read_direct(deadline, max_size, min_size)
            if data is None:
                raise ReadTimeout(f"nothing within {limit} s", port=self.url, timeout=limit)
            return data

    def read_available(self, max_size: int = CHUNK) -> bytes:
        """Whatever has arrived, without waiting; b"" when nothing has."""
        with self._rx_lock:
            if not self._rx:
                return self._read_direct(time.monotonic(), max_size) or b""
            if len(self._rx) < max_size:
                self._fill(time.monotonic(), "read from")
            return self._take(max_size)

    @property
    def in_waiting(self) -> int:
        """Bytes received and not yet read."""
        self._require_open("count input of")
        assert self._io is not None
        try:
            return len(self._rx) + self._io.in_waiting()
        except (serial.SerialException, OSError) as e:
            raise map_error(e, port=self.url, operation="count input of") from e

    @property
    def out_waiting(self) -> int:
        """Bytes written and not yet sent: the driver's output queue (TIOCOUTQ) of a
        tty device; 0 for URL ports, which cannot tell."""
        self._require_open("count output of")
        assert self._io is not None
        try:
            return self._io.out_waiting()
        except (serial.SerialException, OSError) as e:
            raise map_error(e, port=self.url, operation="count output of") from e

    def reset_input(self) -> None:
        """Discard everything received and not yet read."""
        instance = self._require_open("reset input of")
        with self._rx_lock:
            self._rx.clear()
            instance.reset_input_buffer()

    # -- control lines --------------------------------------------------------------

    def _line_access(self, operation: str) -> LineAccess | None:
        """The access object, or None when the port has none and the policy tolerates it."""
        self._require_open(operation)
        access = self._lines
        assert access is not None
        if access.supported:
            return access
        assert isinstance(access, NoLineAccess)
        if self._policy == "strict":
            raise access.error(operation)
        if not self._warned_lines:
            self._warned_lines = True
            log.warning("%s: carrying on without control lines: %s", self.url, access.reason)
        return None

    @property
    def lines_supported(self) -> bool:
        self._require_open("check lines of")
        return bool(self._lines is not None and self._lines.supported)

    @property
    def lines_atomic(self) -> bool:
        """True when RTS and DTR change together in one operation on this port."""
        self._require_open("check lines of")
        return bool(self._lines is not None and self._lines.atomic)

    def _lines_kind(self) -> str:
        return type(self._lines).__name__.removesuffix("LineAccess").lower() or "none"

    def lines(self) -> Lines:
        """A snapshot of all six control lines. On a tolerated line-less port: all False."""
        access = self._line_access("read lines of")
        if access is None:
            return Lines()
        with self._line_lock:
            try:
                return access.get()
            except (serial.SerialException, OSError) as e:
                raise map_error(e, port=self.url, operation="read lines of") from e

    def set_lines(self, *, rts: bool | None = None, dtr: bool | None = None) -> None:
        """Set RTS and/or DTR; both in one operation where the port allows (``lines_atomic``)."""
        access = self._line_access("set lines of")
        if access is None or (rts is None and dtr is None):
            return
        with self._line_lock:
            try:
                access.set(rts, dtr)
            except (serial.SerialException, OSError) as e:
                raise map_error(e, port=self.url, operation="set lines of") from e
        changes = ", ".join(
            f"{n}={int(v)}" for n, v in (("dtr", dtr), ("rts", rts)) if v is not None
        )
        self._record("lines", text=f"set {changes}")

    def set_rts(self, state: bool) -> None:
        self.set_lines(rts=state)

    def set_dtr(self, state: bool) -> None:
        self.set_lines(dtr=state)

    def pulse(self, line: Line | str, duration: float, *, state: bool | None = None) -> None:
        """Drive an output line to ``state`` (default: the opposite of now) for
        ``duration`` seconds, then restore it."""
        which, active, before = self.pulse_plan(line, duration, state)
        self.set_lines(**{which.value: active})
        try:
            time.sleep(duration)
        finally:
            self.set_lines(**{which.value: before})

    def pulse_plan(
        self, line: Line | str, duration: float, state: bool | None
    ) -> tuple[Line, bool, bool]:
        """Check a pulse request; return (line, state during the pulse, state after)."""
        which = line if isinstance(line, Line) else Line.parse(line)
        if which not in (Line.RTS, Line.DTR):
            raise ConfigError(f"only RTS and DTR can be pulsed, not {which.value.upper()}")
        check_duration("pulse", duration)
        before = self.lines()[which]
        return which, (not before) if state is None else state, before

    def line_condition(
        self, predicate: Callable[[Lines], bool] | None, states: dict[str, bool]
    ) -> LineCondition:
        """A checked wait condition for this port (shared by the sync and async waits)."""
        if self.is_open and self._lines is not None and not self._lines.supported:
            # Even a tolerant port cannot wait for lines it does not have.
            assert isinstance(self._lines, NoLineAccess)
            raise self._lines.error("wait for lines of")
        return LineCondition(self.url, predicate, states)

    def wait_lines(
        self,
        *,
        timeout: float | None = None,
        predicate: Callable[[Lines], bool] | None = None,
        **states: bool,
    ) -> Lines:
        """Wait until the lines match, e.g. ``wait_lines(cts=True, dsr=True, timeout=2)``,
        or until ``predicate(lines)`` is true. Returns the matching snapshot, or raises
        LineWaitTimeout carrying the last snapshot seen.

        The wait polls TIOCMGET every few milliseconds; see docs/driver.md for why
        TIOCMIWAIT, which cannot be given a timeout, is not used.
        """
        condition = self.line_condition(predicate, states)
        limit = self._timeout(timeout)
        deadline = time.monotonic() + limit
        while True:
            snapshot = self.lines()
            if condition.ok(snapshot):
                return snapshot
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise condition.timeout(limit, snapshot)
            time.sleep(min(LINE_POLL, remaining))

    def on_lines_change(
        self, callback: Callable[[Lines, Lines], None], *, interval: float = 0.005
    ) -> Callable[[], None]:
        """Call ``callback(old, new)`` from a watcher thread whenever a line changes.
        Returns a function that removes the callback."""
        self._line_access("watch lines of")
        self._callbacks.append(callback)
        if self._watcher is None:
            self._watch_stop.clear()
            self._watcher = threading.Thread(
                target=self._watch, args=(interval,), name=f"lines {self.url}", daemon=True
            )
            self._watcher.start()

        def remove() -> None:
            if callback in self._callbacks:
                self._callbacks.remove(callback)

        return remove

    def _watch(self, interval: float) -> None:
        try:
            last = self.lines()
        except SerialHSError:
            return
        while not self._watch_stop.wait(interval):
            try:
                now = self.lines()
            except SerialHSError as e:
                log.debug("line watcher of %s stops: %s", self.url, e)
                return
            if now != last:
                self._record("lines", text=str(now))
                for callback in list(self._callbacks):
                    try:
                        callback(last, now)
                    except Exception:
                        log.exception("line-change callback of %s failed", self.url)
                last = now

    def _stop_watcher(self) -> None:
        watcher, self._watcher = self._watcher, None
        if watcher is not None:
            self._watch_stop.set()
            if watcher is not threading.current_thread():
                watcher.join(timeout=1.0)
        self._callbacks.clear()

    # -- break --------------------------------------------------------------------

    def set_break(self, on: bool) -> None:
        """Hold the line in break (a continuous space) or release it."""
        access = self._line_access("send break on")
        if access is None:
            return
        try:
            access.set_break(on)
        except (serial.SerialException, OSError) as e:
            raise map_error(e, port=self.url, operation="send break on") from e
        self._record("break", text="on" if on else "off")

    def send_break(self, duration: float = 0.25) -> None:
        """A timed break of ``duration`` seconds."""
        check_duration("break", duration)
        self.set_break(True)
        try:
            time.sleep(duration)
        finally:
            self.set_break(False)

    # -- transcript -----------------------------------------------------------------

    def _record(self, kind: Any, data: bytes = b"", text: str = "") -> None:
        if self.transcript is not None:
            self.transcript.record(kind, self.url, data, text)


class LineCondition:
    """What a line wait waits for: wanted states and/or a predicate."""

    def __init__(
        self, port: str, predicate: Callable[[Lines], bool] | None, states: dict[str, bool]
    ) -> None:
        self.port = port
        self.predicate = predicate
        self.wanted = {Line.parse(name): bool(v) for name, v in states.items()}
        if not self.wanted and predicate is None:
            raise ConfigError("a line wait needs line states or a predicate")

    def ok(self, snapshot: Lines) -> bool:
        return snapshot.matches(self.wanted) and (
            self.predicate is None or self.predicate(snapshot)
        )

    def timeout(self, limit: float, snapshot: Lines) -> LineWaitTimeout:
        want = ", ".join(f"{k.value.upper()}={int(v)}" for k, v in self.wanted.items())
        return LineWaitTimeout(
            f"lines did not reach {want or 'the condition'} within {limit} s "
            f"(last seen {snapshot})",
            port=self.port,
            timeout=limit,
            lines=snapshot,
        )


def check_duration(what: str, duration: float) -> None:
    if not 0 < duration <= 60:
        raise ConfigError(f"{what} length must be in (0, 60] seconds, not {duration}")


def _check_timeout(timeout: float) -> float:
    if not isinstance(timeout, int | float) or not 0 <= timeout < float("inf"):
        raise ConfigError(
            f"timeout must be a finite number of seconds, not {timeout!r} (nothing waits forever)"
        )
    return float(timeout)


def _no_flush() -> None:
    """Stands in for pyserial's input flush while a port opens."""


def _present_ports_hint() -> str:
    from serialhs.driver.discovery import list_ports  # noqa: PLC0415  (costly; only on error)

    try:
        present = [p.device for p in list_ports()]
    except Exception:  # a hint must never hide the real error
        return "check the name"
    if not present:
        return "no serial ports are present on this machine"
    return "present: " + ", ".join(present)


def open_port(url: str, settings: SerialSettings | str | None = None, **options: Any) -> Port:
    """Open a port in one call: ``open_port("/dev/ttyUSB0", "115200 8N1")``."""
    return Port(url, settings, **options).open()
