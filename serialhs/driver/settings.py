"""Typed, immutable serial settings, validated when they are made.

The vocabulary is pyserial's (baudrate, bytesize, parity, stopbits, rtscts,
xonxoff, dsrdtr); flow control is one enum instead of three booleans, because a
port has one flow-control discipline at a time.
"""

from __future__ import annotations

import dataclasses
import enum
import re
from typing import Any

from serialhs.errors import SettingsError

__all__ = ["STANDARD_BAUDRATES", "FlowControl", "Parity", "SerialSettings", "StopBits"]

#: Rates every POSIX termios knows by a B-constant. Others are "custom" and need
#: the OS to accept arbitrary rates (Linux does, through BOTHER).
STANDARD_BAUDRATES: tuple[int, ...] = (
    50, 75, 110, 134, 150, 200, 300, 600, 1200, 1800, 2400, 4800, 9600, 19200,
    38400, 57600, 115200, 230400, 460800, 500000, 576000, 921600, 1000000,
    1152000, 1500000, 2000000, 2500000, 3000000, 3500000, 4000000,
)  # fmt: skip

MAX_BAUDRATE = 20_000_000


class Parity(enum.Enum):
    """Parity bit. Values are pyserial's one-letter codes."""

    NONE = "N"
    EVEN = "E"
    ODD = "O"
    MARK = "M"
    SPACE = "S"


class StopBits(enum.Enum):
    """Stop bits. Values are pyserial's numbers."""

    ONE = 1
    ONE_POINT_FIVE = 1.5
    TWO = 2


class FlowControl(enum.Enum):
    """Flow-control discipline of a port."""

    NONE = "none"
    RTSCTS = "rtscts"
    XONXOFF = "xonxoff"
    DSRDTR = "dsrdtr"


_FRAMING = re.compile(r"^([5-8])([NEOMS])(1|1\.5|2)$", re.IGNORECASE)


@dataclasses.dataclass(frozen=True, slots=True)
class SerialSettings:
    """One complete set of serial settings.

    >>> SerialSettings(115200)
    SerialSettings(baudrate=115200, bytesize=8, parity=<Parity.NONE: 'N'>, ...)
    >>> str(SerialSettings.parse("9600 7E1 rtscts"))
    '9600 7E1 rtscts'
    """

    baudrate: int = 9600
    bytesize: int = 8
    parity: Parity = Parity.NONE
    stopbits: StopBits = StopBits.ONE
    flow: FlowControl = FlowControl.NONE

    def __post_init__(self) -> None:
        if isinstance(self.baudrate, bool) or not isinstance(self.baudrate, int):
            raise SettingsError(f"baudrate must be an int, not {self.baudrate!r}")
        if not 0 < self.baudrate <= MAX_BAUDRATE:
            raise SettingsError(f"baudrate {self.baudrate} is out of range 1..{MAX_BAUDRATE}")
        if self.bytesize not in (5, 6, 7, 8) or isinstance(self.bytesize, bool):
            raise SettingsError(f"bytesize must be 5, 6, 7 or 8, not {self.bytesize!r}")
        for name, kind in (("parity", Parity), ("stopbits", StopBits), ("flow", FlowControl)):
            value = getattr(self, name)
            if not isinstance(value, kind):
                try:
                    object.__setattr__(self, name, _coerce(kind, value))
                except (ValueError, KeyError):
                    choices = ", ".join(str(m.value) for m in kind)
                    raise SettingsError(f"{name} must be one of {choices}, not {value!r}") from None
        if self.stopbits is StopBits.ONE_POINT_FIVE and self.bytesize != 5:
            raise SettingsError("1.5 stop bits exist only with 5 data bits")

    # -- derived values -----------------------------------------------------------

    @property
    def framing(self) -> str:
        """The classic short form, such as ``8N1``."""
        stop = {StopBits.ONE: "1", StopBits.ONE_POINT_FIVE: "1.5", StopBits.TWO: "2"}
        return f"{self.bytesize}{self.parity.value}{stop[self.stopbits]}"

    @property
    def bits_per_char(self) -> float:
        """Bits on the wire for one character: start + data + parity + stop."""
        parity = 0 if self.parity is Parity.NONE else 1
        return 1 + self.bytesize + parity + float(self.stopbits.value)

    @property
    def char_time(self) -> float:
        """Seconds one character occupies the line."""
        return self.bits_per_char / self.baudrate

    @property
    def is_standard_rate(self) -> bool:
        return self.baudrate in STANDARD_BAUDRATES

    @property
    def rtscts(self) -> bool:
        return self.flow is FlowControl.RTSCTS

    @property
    def xonxoff(self) -> bool:
        return self.flow is FlowControl.XONXOFF

    @property
    def dsrdtr(self) -> bool:
        return self.flow is FlowControl.DSRDTR

    def replace(self, **changes: Any) -> SerialSettings:
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)

    def pyserial_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``serial.Serial`` / ``apply_settings``."""
        return {
            "baudrate": self.baudrate,
            "bytesize": self.bytesize,
            "parity": self.parity.value,
            "stopbits": self.stopbits.value,
            "xonxoff": self.xonxoff,
            "rtscts": self.rtscts,
            "dsrdtr": self.dsrdtr,
        }

    def __str__(self) -> str:
        return f"{self.baudrate} {self.framing} {self.flow.value}"

    # -- parsing ------------------------------------------------------------------

    @classmethod
    def parse(cls, text: str) -> SerialSettings:
        """Parse ``"115200"``, ``"115200 8N1"``, ``"9600,7E1,rtscts"`` and the like.

        Words may come in any order, separated by spaces or commas: a number is
        the baud rate, ``8N1``-style words the framing, and none/rtscts/xonxoff/
        dsrdtr the flow control.
        """
        kwargs: dict[str, Any] = {}
        words = [w for w in re.split(r"[\s,]+", text.strip()) if w]
        if not words:
            raise SettingsError("empty settings string")
        flows = {f.value: f for f in FlowControl}
        for word in words:
            lowered = word.lower()
            if word.isdigit():
                _set_once(kwargs, "baudrate", int(word), text)
            elif match := _FRAMING.match(word):
                _set_once(kwargs, "bytesize", int(match.group(1)), text)
                kwargs["parity"] = Parity(match.group(2).upper())
                kwargs["stopbits"] = _coerce(StopBits, match.group(3))
            elif lowered in flows:
                _set_once(kwargs, "flow", flows[lowered], text)
            else:
                raise SettingsError(
                    f"cannot read {word!r} in settings {text!r}: expected a baud rate, "
                    "a framing such as 8N1, or one of none/rtscts/xonxoff/dsrdtr"
                )
        return cls(**kwargs)


def _set_once(kwargs: dict[str, Any], key: str, value: Any, text: str) -> None:
    if key in kwargs:
        raise SettingsError(f"{key} given twice in settings {text!r}")
    kwargs[key] = value


def _coerce(kind: type[enum.Enum], value: Any) -> Any:
    """Accept an enum's value (or for StopBits a string such as "1.5") as the member."""
    if kind is StopBits and isinstance(value, str):
        value = float(value)
        value = int(value) if value.is_integer() else value
    if isinstance(value, str) and kind is not StopBits:
        for member in kind:
            if (
                member.value == value
                or member.value == value.upper()
                or member.value == value.lower()
            ):
                return member
        return kind[value.upper()]
    return kind(value)
