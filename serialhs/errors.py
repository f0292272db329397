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
    ├── ModemError                  the AT engine or the modem failed (.command, .port)
    │   ├── ModemProtocolError      we misused the AT core (a second command in flight, ...)
    │   ├── ModemResponseError      the modem's answer was malformed or unexpected (.lines)
    │   ├── ModemResultError        a final result other than OK/CONNECT (.result, .text)
    │   │   ├── ModemBusy           BUSY
    │   │   ├── ModemNoCarrier      NO CARRIER
    │   │   ├── ModemNoDialtone     NO DIALTONE
    │   │   ├── ModemNoAnswer       NO ANSWER
    │   │   ├── ModemCommandError   ERROR
    │   │   ├── CmeError            +CME ERROR: <n|text> (.code int or None, .meaning)
    │   │   └── CmsError            +CMS ERROR: <n|text> (.code int or None, .meaning)
    │   ├── ModemTimeout            no final result in time (a SerialTimeoutError too)
    │   └── ModemUnhealthy          the modem stopped answering or failed a health check
    ├── NegotiationError            link negotiation failed or was misused (.state, .event)
    │   ├── LocalProtocolError      this end misused a negotiation core (an illegal transition)
    │   ├── RemoteProtocolError     the peer broke the link protocol
    │   │   ├── FrameError          bytes that are no good frame (.reason such as crc, .data)
    │   │   └── CapabilityError     a malformed capability list, or an unknown critical capability
    │   ├── IncompatiblePeerError   the two ends have no transfer protocol in common
    │   └── NegotiationFailed       a negotiation ended without agreement (.reason, .code)
    │       ├── PeerNotIdentifiedError  the peer never answered; the port stays at the safe default
    │       ├── PeerResetError      the peer reset the session (RST)
    │       └── FileTransferError   a file did not arrive whole and checked
    └── SimError                    the hardware-free lab failed
        └── ToolMissingError        a needed program (socat, ...) is not installed

``ModemTimeout`` is both a ``ModemError`` and a ``SerialTimeoutError``, so
``except TimeoutError`` catches it too. ``serialhs.modem.atcore.error_for`` turns
a final result into its ``ModemResultError``.

The negotiation cores never raise for what the peer sends: a bad frame or a
frame that does not fit the state comes out as an event. ``LocalProtocolError``
is for this end's mistakes (a call the state table does not allow; it names the
state and the event). ``FrameError`` and ``CapabilityError`` come from the
codecs' functions; ``NegotiationFailed`` and its subclasses are what adapters
raise when a negotiation core reports that it ended without agreement.

Exceptions that carry received bytes (``ReadTimeout.partial``,
``PortDisconnectedError.partial``) are how "nothing already received is lost"
holds: a caller always gets back what arrived before the failure.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, ClassVar

if TYPE_CHECKING:
    from serialhs.modem.results import ResultCode

__all__ = [
    "CapabilityError",
    "CmeError",
    "CmsError",
    "ConfigError",
    "FileTransferError",
    "FrameError",
    "IncompatiblePeerError",
    "InputOverflowError",
    "LineWaitTimeout",
    "LinesUnsupportedError",
    "LocalProtocolError",
    "ModemBusy",
    "ModemCommandError",
    "ModemError",
    "ModemNoAnswer",
    "ModemNoCarrier",
    "ModemNoDialtone",
    "ModemProtocolError",
    "ModemResponseError",
    "ModemResultError",
    "ModemTimeout",
    "ModemUnhealthy",
    "NegotiationError",
    "NegotiationFailed",
    "PeerNotIdentifiedError",
    "PeerResetError",
    "PortBusyError",
    "PortDisconnectedError",
    "PortError",
    "PortIOError",
    "PortNotFoundError",
    "PortNotOpenError",
    "PortPermissionError",
    "ProfileError",
    "ReadTimeout",
    "RemoteProtocolError",
    "SerialHSError",
    "SerialTimeoutError",
    "SettingsError",
    "SimError",
    "ToolMissingError",
    "WriteTimeout",
]


def _compose(message: str, *, prefix: str = "", suffix: str = "", hint: str | None = None) -> str:
    """An error's text: ``prefix`` (port, operation, command), the message,
    ``suffix`` (state, event) and the hint in parentheses."""
    text = f"{prefix}{message}{suffix}"
    return f"{text} ({hint})" if hint else text


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
        where = f"{operation} {port}" if operation and port else port
        super().__init__(_compose(message, prefix=f"{where}: " if where else "", hint=hint))


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


# --- modems ------------------------------------------------------------------------------


def _modem_message(message: str, *, command: str | None, port: str | None, hint: str | None) -> str:
    prefix = (f"{port}: " if port else "") + (f"{command}: " if command else "")
    return _compose(message, prefix=prefix, hint=hint)


def _lines_preview(lines: Sequence[str], limit: int = 4) -> str:
    shown = ", ".join(repr(line) for line in lines[-limit:])
    more = f"{len(lines) - limit} more, " if len(lines) > limit else ""
    return f"[{more}{shown}]"


class ModemError(SerialHSError):
    """The AT engine or the modem failed. ``command`` is the AT command line
    involved (None when there is none), ``port`` the port where known and ``hint``
    what to try."""

    def __init__(
        self,
        message: str,
        *,
        command: str | None = None,
        port: str | None = None,
        hint: str | None = None,
    ) -> None:
        super().__init__(_modem_message(message, command=command, port=port, hint=hint))
        self.command = command
        self.port = port
        self.hint = hint


class ModemProtocolError(ModemError):
    """The AT core was used in a way its state does not allow (a second command
    while one is in flight, text without a prompt, data outside the online data
    state). ``state`` and ``event`` name the state and the refused event."""

    def __init__(
        self,
        message: str,
        *,
        state: str | None = None,
        event: str | None = None,
        command: str | None = None,
        port: str | None = None,
        hint: str | None = None,
    ) -> None:
        self.state = state
        self.event = event
        super().__init__(message, command=command, port=port, hint=hint)


class ModemResponseError(ModemError):
    """The modem answered, but not in a way the caller can use (a missing or
    malformed information line). ``lines`` holds every line of the answer."""

    def __init__(
        self,
        message: str,
        *,
        command: str | None = None,
        lines: Sequence[str] = (),
        port: str | None = None,
        hint: str | None = None,
    ) -> None:
        self.lines = tuple(lines)
        if self.lines:
            message = f"{message}; lines: {_lines_preview(self.lines)}"
        super().__init__(message, command=command, port=port, hint=hint)


class ModemResultError(ModemError):
    """A command ended with a final result that is not OK or CONNECT. ``result`` is
    the :class:`~serialhs.modem.results.ResultCode`, ``text`` the result as the
    modem sent it, ``lines`` the information lines that came before it."""

    #: The ResultCode value this class stands for (None: the caller passes it).
    result_name: ClassVar[str | None] = None
    #: What to try, when the caller gives no hint.
    default_hint: ClassVar[str] = "look the result up in the modem's manual"

    def __init__(
        self,
        command: str,
        result: ResultCode | None = None,
        text: str | None = None,
        *,
        lines: Sequence[str] = (),
        port: str | None = None,
        hint: str | None = None,
        detail: str | None = None,
    ) -> None:
        if result is None:
            from serialhs.modem.results import ResultCode  # noqa: PLC0415  (the modem layer imports errors)

            if self.result_name is None:
                raise TypeError(f"{type(self).__name__} needs the result code")
            result = ResultCode(self.result_name)
        self.result = result
        self.text = text if text is not None else result.value
        self.lines = tuple(lines)
        message = f"the modem answered {self.text!r}"
        if detail:
            message = f"{message}, {detail}"
        super().__init__(message, command=command, port=port, hint=hint or self.default_hint)


class ModemBusy(ModemResultError):
    """BUSY: the called number is engaged."""

    result_name = "BUSY"
    default_hint = "the called number is busy; try again later"


class ModemNoCarrier(ModemResultError):
    """NO CARRIER: no modem answered, or the connection dropped."""

    result_name = "NO CARRIER"
    default_hint = (
        "no modem answered or the call dropped; check the number and the line, "
        "or give the modem longer to connect (ATS7=90)"
    )


class ModemNoDialtone(ModemResultError):
    """NO DIALTONE: the modem heard no dial tone."""

    result_name = "NO DIALTONE"
    default_hint = "check that the phone line is plugged in, or dial blind with ATX3"


class ModemNoAnswer(ModemResultError):
    """NO ANSWER: the far end never went quiet (the @ dial modifier) or never answered."""

    result_name = "NO ANSWER"
    default_hint = "the called number did not answer; try again later"


class ModemCommandError(ModemResultError):
    """ERROR: the modem rejected the command line."""

    result_name = "ERROR"
    default_hint = (
        "check the command's syntax and that this modem supports it; on a cellular "
        "modem AT+CMEE=2 turns ERROR into +CME ERROR with a reason"
    )


class _ExtendedError(ModemResultError):
    """+CME ERROR / +CMS ERROR: ``code`` is the error number (None when the modem
    reported text), ``meaning`` what the number means or the text the modem sent."""

    prefix: ClassVar[str] = ""

    def __init__(
        self,
        command: str,
        text: str | None = None,
        *,
        code: int | None = None,
        meaning: str | None = None,
        lines: Sequence[str] = (),
        port: str | None = None,
        hint: str | None = None,
    ) -> None:
        self.code = code
        self.meaning = meaning
        if text is None:
            text = f"{self.prefix}: {code if code is not None else meaning or ''}".rstrip()
        detail = meaning if meaning and meaning not in text else None
        super().__init__(command, None, text, lines=lines, port=port, hint=hint, detail=detail)


class CmeError(_ExtendedError):
    """+CME ERROR: a mobile-equipment error (3GPP TS 27.007, 9.2)."""

    result_name = "+CME ERROR"
    prefix = "+CME ERROR"
    default_hint = "AT+CMEE=2 makes the modem report errors as text"


class CmsError(_ExtendedError):
    """+CMS ERROR: a message-service error (3GPP TS 27.005, 3.2.5)."""

    result_name = "+CMS ERROR"
    prefix = "+CMS ERROR"
    default_hint = (
        "check the SIM, the SMS centre address (AT+CSCA?) and the message format (AT+CMGF)"
    )


class ModemTimeout(ModemError, SerialTimeoutError):
    """No final result came in time. ``timeout`` is the time allowed and ``lines``
    what did arrive for the command. Also a SerialTimeoutError (and TimeoutError)."""

    def __init__(
        self,
        command: str,
        *,
        timeout: float | None = None,
        lines: Sequence[str] = (),
        port: str | None = None,
        hint: str | None = None,
    ) -> None:
        self.lines = tuple(lines)
        within = f" within {timeout:g} s" if timeout is not None else ""
        got = "; nothing received"
        if self.lines:
            got = f"; lines so far: {_lines_preview(self.lines)}"
        hint = hint or (
            "check that the modem is powered, the cable and the baud rate, "
            "or allow the command more time"
        )
        super().__init__(f"no final result{within}{got}", command=command, port=port, hint=hint)
        self.timeout = timeout


class ModemUnhealthy(ModemError):
    """The modem stopped answering or failed a health check (AT without OK)."""

    def __init__(
        self,
        message: str,
        *,
        command: str | None = None,
        port: str | None = None,
        hint: str | None = None,
    ) -> None:
        super().__init__(
            message,
            command=command,
            port=port,
            hint=hint or "reset the modem (DTR drop, ATZ) or power-cycle it; check the cable",
        )


# --- link negotiation --------------------------------------------------------------------


class NegotiationError(SerialHSError):
    """Link negotiation failed or was misused. ``state`` and ``event`` name the
    core's state and the event involved where known, ``port`` the port, ``hint``
    what to try."""

    def __init__(
        self,
        message: str,
        *,
        state: str | None = None,
        event: str | None = None,
        port: str | None = None,
        hint: str | None = None,
    ) -> None:
        self.state = state
        self.event = event
        self.port = port
        self.hint = hint
        suffix = ""
        if state is not None or event is not None:
            where = ", ".join(
                f"{name} {value}"
                for name, value in (("state", state), ("event", event))
                if value is not None
            )
            suffix = f" [{where}]"
        super().__init__(
            _compose(message, prefix=f"{port}: " if port else "", suffix=suffix, hint=hint)
        )


class LocalProtocolError(NegotiationError):
    """This end used a negotiation core in a way its state does not allow (the
    state table has no such transition), or built a frame that cannot exist."""


class RemoteProtocolError(NegotiationError):
    """The peer sent something the link protocol does not allow."""


class FrameError(RemoteProtocolError):
    """Bytes that are no good frame. ``reason`` says why (crc, too-long, truncated,
    length, version, escape, aborted, ...) and ``data`` holds the bytes."""

    def __init__(
        self,
        message: str,
        *,
        reason: str,
        data: bytes = b"",
        port: str | None = None,
        hint: str | None = None,
    ) -> None:
        self.reason = reason
        self.data = bytes(data)
        super().__init__(f"bad frame ({reason}): {message}", port=port, hint=hint)


class CapabilityError(RemoteProtocolError):
    """A capability list that cannot be read: a TLV running past the end, a value
    of the wrong size, or a critical capability this end does not know.
    ``cap_type`` is the TLV type involved, where known."""

    def __init__(
        self,
        message: str,
        *,
        cap_type: int | None = None,
        port: str | None = None,
        hint: str | None = None,
    ) -> None:
        self.cap_type = cap_type
        super().__init__(message, port=port, hint=hint)


class IncompatiblePeerError(NegotiationError):
    """The two ends have nothing in common to agree on (no common transfer protocol)."""


class NegotiationFailed(NegotiationError):
    """A negotiation ended without agreement. ``reason`` says why; ``code`` is the
    RST reason code sent or received, where there was one."""

    def __init__(
        self,
        reason: str,
        *,
        code: int | None = None,
        state: str | None = None,
        port: str | None = None,
        hint: str | None = None,
    ) -> None:
        self.reason = reason
        self.code = code
        super().__init__(reason, state=state, port=port, hint=hint)


class PeerNotIdentifiedError(NegotiationFailed):
    """Nothing answered the handshake: the port stays at the safe default."""


class PeerResetError(NegotiationFailed):
    """The peer reset the session with a RST."""


class FileTransferError(NegotiationFailed):
    """A file transfer ended without the file confirmed, whole and checked, at the
    receiving end (the link failed too often, the peer refused, the checksum differed)."""


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
