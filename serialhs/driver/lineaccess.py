"""How a port reads and drives its control lines and break.

Three kinds of access, chosen when a port opens:

- :class:`IoctlLineAccess` — a POSIX tty device: one TIOCMGET reads all lines,
  one TIOCMSET sets RTS and DTR together (atomic, as a tight reset sequence needs).
- :class:`PyserialLineAccess` — a pyserial URL port with lines of its own
  (loop://, rfc2217://): through pyserial's properties, one line after another.
- :class:`~serialhs.driver.wirelink.WireLineAccess` — a pty that is an end of a
  serialhs virtual wire: through the wire's side channel.
- :class:`NoLineAccess` — a port without lines (a pty, socket://): every call
  raises :class:`~serialhs.errors.LinesUnsupportedError` saying why.

Other layers may register a resolver that supplies access for ports they know
better (the virtual wire routes its ptys' lines this way) with
:func:`register_resolver`. Errors are raised raw (OSError, SerialException);
the port maps them to the exception tree, in one place.
"""

from __future__ import annotations

import errno
import fcntl
import os
import struct
import termios
from collections.abc import Callable
from typing import Any, Protocol

from serial import serialposix

from serialhs.driver import wirelink
from serialhs.driver.lines import Lines
from serialhs.driver.settings import SerialSettings
from serialhs.errors import LinesUnsupportedError

__all__ = [
    "IoctlLineAccess",
    "LineAccess",
    "NoLineAccess",
    "PyserialLineAccess",
    "choose_line_access",
    "is_pty_device",
    "register_resolver",
]

_UNSUPPORTED_ERRNOS = (errno.ENOTTY, errno.EINVAL)
# Linux values; Python's termios module does not export these two.
TIOCSBRK: int = getattr(termios, "TIOCSBRK", 0x5427)
TIOCCBRK: int = getattr(termios, "TIOCCBRK", 0x5428)

PTY_REASON = (
    "it is a pseudo-terminal (pty), and ptys have no modem control lines; "
    "open an end of the serialhs virtual wire, a loop:// or rfc2217:// URL, "
    "or pass lines='tolerant' to carry on without them"
)
SOCKET_REASON = (
    "socket:// carries bytes only and has no control lines; "
    "use rfc2217:// for a remote port with lines, or pass lines='tolerant'"
)


class LineAccess(Protocol):
    supported: bool
    atomic: bool  #: True when RTS and DTR change in one operation

    def get(self) -> Lines: ...

    def set(self, rts: bool | None, dtr: bool | None) -> None: ...

    def set_break(self, on: bool) -> None: ...

    def settings_changed(self, settings: SerialSettings) -> None:
        """The port's settings changed (for accesses that must pass them on)."""

    def tx_idle(self) -> bool:
        """Has the transmitter sent its last bit? (A real UART's is done when the
        OS queue is empty; a modelled one may still be shifting bits out.)"""

    def close(self) -> None:
        """The port is closing."""


class _NoHooks:
    """The hooks of LineAccess, for accesses with nothing to pass on."""

    def settings_changed(self, settings: SerialSettings) -> None:
        pass

    def tx_idle(self) -> bool:
        return True

    def close(self) -> None:
        pass


class IoctlLineAccess(_NoHooks):
    supported = True
    atomic = True

    def __init__(self, fd: int) -> None:
        self._fd = fd

    def _word(self) -> int:
        raw = fcntl.ioctl(self._fd, termios.TIOCMGET, struct.pack("I", 0))
        return int(struct.unpack("I", raw)[0])

    def get(self) -> Lines:
        w = self._word()
        return Lines(
            rts=bool(w & termios.TIOCM_RTS),
            dtr=bool(w & termios.TIOCM_DTR),
            cts=bool(w & termios.TIOCM_CTS),
            dsr=bool(w & termios.TIOCM_DSR),
            dcd=bool(w & termios.TIOCM_CAR),
            ri=bool(w & termios.TIOCM_RNG),
        )

    def set(self, rts: bool | None, dtr: bool | None) -> None:
        word = self._word()
        for state, bit in ((rts, termios.TIOCM_RTS), (dtr, termios.TIOCM_DTR)):
            if state is True:
                word |= bit
            elif state is False:
                word &= ~bit
        fcntl.ioctl(self._fd, termios.TIOCMSET, struct.pack("I", word))

    def set_break(self, on: bool) -> None:
        fcntl.ioctl(self._fd, TIOCSBRK if on else TIOCCBRK)


class PyserialLineAccess(_NoHooks):
    supported = True
    atomic = False

    def __init__(self, serial: Any) -> None:
        self._serial = serial

    def get(self) -> Lines:
        s = self._serial
        return Lines(rts=s.rts, dtr=s.dtr, cts=s.cts, dsr=s.dsr, dcd=s.cd, ri=s.ri)

    def set(self, rts: bool | None, dtr: bool | None) -> None:
        if dtr is not None:
            self._serial.dtr = dtr
        if rts is not None:
            self._serial.rts = rts

    def set_break(self, on: bool) -> None:
        self._serial.break_condition = on


class NoLineAccess(_NoHooks):
    supported = False
    atomic = False

    def __init__(self, port: str, reason: str) -> None:
        self.port = port
        self.reason = reason

    def error(self, operation: str) -> LinesUnsupportedError:
        return LinesUnsupportedError(
            f"no control lines: {self.reason}", port=self.port, operation=operation
        )

    def get(self) -> Lines:
        raise self.error("read lines of")

    def set(self, rts: bool | None, dtr: bool | None) -> None:
        raise self.error("set lines of")

    def set_break(self, on: bool) -> None:
        raise self.error("send break on")


Resolver = Callable[[str, Any], LineAccess | None]
_resolvers: list[Resolver] = []


def register_resolver(resolver: Resolver) -> Callable[[], None]:
    """Let another layer supply line access for ports it recognises.

    ``resolver(port_name, pyserial_instance)`` returns a LineAccess or None.
    Returns a function that unregisters it.
    """
    _resolvers.append(resolver)
    return lambda: _resolvers.remove(resolver) if resolver in _resolvers else None


def choose_line_access(port: str, instance: Any) -> LineAccess:
    """Pick the line access for an open pyserial instance."""
    for resolver in list(_resolvers):
        access = resolver(port, instance)
        if access is not None:
            return access
    if port.startswith("socket://"):
        return NoLineAccess(port, SOCKET_REASON)
    fd = _fileno(instance)
    if fd is None:
        return PyserialLineAccess(instance)
    if _is_pty(fd):
        wire = wirelink.find_wire(fd)
        if wire is not None:
            return wire
    access = IoctlLineAccess(fd)
    try:
        access.get()
    except OSError as e:
        if e.errno in _UNSUPPORTED_ERRNOS:
            return NoLineAccess(port, PTY_REASON if _is_pty(fd) else _ioctl_reason(e))
        raise
    return access


def _fileno(instance: Any) -> int | None:
    """The fd of a POSIX tty device port; None for URL ports served by pyserial itself."""
    if not isinstance(instance, serialposix.Serial):
        return None
    return int(instance.fileno())


#: Linux character-device majors of Unix98 pty slaves (/dev/pts/N).
_PTY_SLAVE_MAJORS = range(136, 144)


def _is_pty(fd: int) -> bool:
    try:
        return os.major(os.fstat(fd).st_rdev) in _PTY_SLAVE_MAJORS
    except OSError:
        return False


def is_pty_device(path: str) -> bool:
    """True when ``path`` (after symlinks) is a pseudo-terminal slave such as /dev/pts/3."""
    try:
        st = os.stat(path)
    except OSError:
        return False
    return os.major(st.st_rdev) in _PTY_SLAVE_MAJORS


def _ioctl_reason(e: OSError) -> str:
    return f"the device driver refuses modem-control ioctls ({e.strerror}); pass lines='tolerant'"
