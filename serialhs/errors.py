"""The one exception tree of serialhs.

Every error says what failed, on which port, in which state, and what to try.
Errors from pyserial, pyusb and the OS are re-raised with ``from e`` so that the
original cause stays attached.

    SerialHSError
    ├── ConfigError                 bad settings, bad arguments, bad profiles
    │   ├── SettingsError           a serial setting out of range (ValueError too)
    │   └── ProfileError            a malformed hw_configs TOML file (file and line)
    ├── PortError                   something went wrong with one port
    │   ├── PortNotFoundError       the device path or URL does not exist
    │   ├── PortPermissionError     the OS refused access (EACCES/EPERM)
    │   ├── PortBusyError           another process holds the port (PID if known)
    │   ├── PortNotOpenError        an operation on a closed port
    │   ├── PortDisconnectedError   the device vanished (unplugged, peer gone)
    │   ├── LinesUnsupportedError   the port has no modem control lines
    │   ├── InputOverflowError      more input than a bounded read allows (.partial)
    │   └── PortIOError             any other OS or pyserial failure
    ├── SerialTimeoutError          a wait ran out (TimeoutError too)
    │   ├── ReadTimeout             carries .partial: the bytes received so far
    │   ├── WriteTimeout            carries .written: how many bytes went out
    │   └── LineWaitTimeout         a control-line condition did not come true
    └── SimError                    the hardware-free lab failed
        └── ToolMissingError        a needed program (socat, ...) is not installed

Exceptions that carry received bytes (``ReadTimeout.partial``,
``PortDisconnectedError.partial``) are how "nothing already received is lost"
holds: a caller always gets back what arrived before the failure.
"""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "InputOverflowError",
    "LineWaitTimeout",
    "LinesUnsupportedError",
    "PortBusyError",
    "PortDisconnectedError",
    "PortError",
    "PortIOError",
    "PortNotFoundError",
    "PortNotOpenError",
    "PortPermissionError",
    "ProfileError",
    "ReadTimeout",
    "SerialHSError",
    "SerialTimeoutError",
    "SettingsError",
    "SimError",
    "ToolMissingError",
    "WriteTimeout",
]


def _preview(data: bytes, limit: int = 32) -> str:
    shown = data[:limit]
    more = "..." if len(data) > limit else ""
    return f"{shown!r}{more}"


class SerialHSError(Exception):
    """Base of every error serialhs raises."""


# --- configuration -----------------------------------------------------------------


class ConfigError(SerialHSError):
    """Bad settings, arguments or configuration files."""


class SettingsError(ConfigError, ValueError):
    """A serial setting is out of range or of the wrong kind."""


class ProfileError(ConfigError):
    """A hw_configs profile is malformed. Names the file and, where known, the line."""

    def __init__(self, message: str, *, path: str, line: int | None = None) -> None:
        self.path = path
        self.line = line
        where = f"{path}:{line}" if line is not None else path
        super().__init__(f"{where}: {message}")


# --- ports ---------------------------------------------------------------------------


class PortError(SerialHSError):
    """Something failed on one port. ``port`` names it, ``operation`` says what was tried."""

    def __init__(
        self,
        message: str,
        *,
        port: str | None = None,
        operation: str | None = None,
        hint: str | None = None,
    ) -> None:
        self.port = port
        self.operation = operation
        self.hint = hint
        parts = []
        if operation and port:
            parts.append(f"{operation} {port}: ")
        elif port:
            parts.append(f"{port}: ")
        parts.append(message)
        if hint:
            parts.append(f" ({hint})")
        super().__init__("".join(parts))


class PortNotFoundError(PortError, FileNotFoundError):
    """The device path or URL does not name an existing port."""


class PortPermissionError(PortError, PermissionError):
    """The operating system refused access to the port."""


class PortBusyError(PortError):
    """Another process holds the port. ``pid`` is its process id where known."""

    def __init__(
        self,
        message: str,
        *,
        port: str | None = None,
        operation: str | None = None,
        hint: str | None = None,
        pid: int | None = None,
        lock_file: str | None = None,
    ) -> None:
        self.pid = pid
        self.lock_file = lock_file
        super().__init__(message, port=port, operation=operation, hint=hint)


class PortNotOpenError(PortError):
    """An operation was attempted on a port that is not open."""


class _PartialDataError(PortError):
    """A port error that hands back ``partial``: the bytes taken from the port
    before the failure, so that nothing received is lost."""

    def __init__(
        self,
        message: str,
        *,
        port: str | None = None,
        operation: str | None = None,
        hint: str | None = None,
        partial: bytes = b"",
    ) -> None:
        self.partial = partial
        if partial:
            message = f"{message}; {len(partial)} byte(s) received: {_preview(partial)}"
        super().__init__(message, port=port, operation=operation, hint=hint)


class PortDisconnectedError(_PartialDataError):
    """The device went away (unplugged, peer process gone). ``partial`` holds bytes
    received before the loss was noticed."""


class LinesUnsupportedError(PortError):
    """The port cannot read or drive modem control lines (ptys, socket://, some adapters)."""


class InputOverflowError(_PartialDataError):
    """A bounded read (a line, a frame) got more bytes than its limit without the
    terminator. ``partial`` holds every byte taken from the port, so nothing is lost."""


class PortIOError(PortError, OSError):
    """Any other operating-system or pyserial failure on a port."""


# --- timeouts ------------------------------------------------------------------------


class SerialTimeoutError(SerialHSError, TimeoutError):
    """A wait ran out of time. Timeouts raise; they never return short data silently."""

    def __init__(self, message: str, *, port: str | None = None, timeout: float | None = None):
        self.port = port
        self.timeout = timeout
        prefix = f"{port}: " if port else ""
        super().__init__(f"{prefix}{message}")


class ReadTimeout(SerialTimeoutError):
    """A read did not complete in time. ``partial`` holds what did arrive."""

    def __init__(
        self,
        message: str,
        *,
        port: str | None = None,
        timeout: float | None = None,
        partial: bytes = b"",
    ) -> None:
        self.partial = partial
        if partial:
            message = f"{message}; got {len(partial)} byte(s): {_preview(partial)}"
        else:
            message = f"{message}; nothing received"
        super().__init__(message, port=port, timeout=timeout)


class WriteTimeout(SerialTimeoutError):
    """A write did not complete in time. ``written`` counts the bytes that went out."""

    def __init__(
        self,
        message: str,
        *,
        port: str | None = None,
        timeout: float | None = None,
        written: int = 0,
    ) -> None:
        self.written = written
        super().__init__(f"{message}; {written} byte(s) written", port=port, timeout=timeout)


class LineWaitTimeout(SerialTimeoutError):
    """A control-line condition did not come true in time. ``lines`` is the last state seen."""

    def __init__(
        self,
        message: str,
        *,
        port: str | None = None,
        timeout: float | None = None,
        lines: object = None,
    ) -> None:
        self.lines = lines
        super().__init__(message, port=port, timeout=timeout)


# --- the lab ---------------------------------------------------------------------------


class SimError(SerialHSError):
    """The hardware-free lab (socat pairs, the virtual wire, emulators) failed."""


class ToolMissingError(SimError):
    """A program the lab needs is not installed."""

    def __init__(self, tool: str, *, package: str | None = None) -> None:
        self.tool = tool
        self.package = package or tool
        super().__init__(
            f"{tool} is not installed or not on PATH; install it with "
            f"'apt-get install {self.package}' (or run './dev setup')"
        )
