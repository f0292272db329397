"""Modem control lines: names, snapshots, and the small text forms the CLI and
bring-up scripts use ("rts=0,dtr=1", "dtr:0.1").

Outputs (driven by this end): RTS, DTR.  Inputs (driven by the other end): CTS,
DSR, DCD (carrier detect, pyserial's ``cd``), RI.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Mapping

from serialhs.errors import ConfigError

__all__ = [
    "INPUT_LINES",
    "OUTPUT_LINES",
    "Line",
    "Lines",
    "parse_line_settings",
    "parse_pulse",
]


class Line(enum.Enum):
    RTS = "rts"
    DTR = "dtr"
    CTS = "cts"
    DSR = "dsr"
    DCD = "dcd"
    RI = "ri"

    @classmethod
    def parse(cls, name: str) -> Line:
        key = name.strip().lower()
        if key == "cd":  # pyserial's name for DCD
            key = "dcd"
        try:
            return cls(key)
        except ValueError:
            names = ", ".join(m.value for m in cls)
            raise ConfigError(f"unknown control line {name!r}; expected one of {names}") from None


OUTPUT_LINES = frozenset({Line.RTS, Line.DTR})
INPUT_LINES = frozenset({Line.CTS, Line.DSR, Line.DCD, Line.RI})


@dataclasses.dataclass(frozen=True, slots=True)
class Lines:
    """A snapshot of all six control lines at one moment. True means asserted (active)."""

    rts: bool = False
    dtr: bool = False
    cts: bool = False
    dsr: bool = False
    dcd: bool = False
    ri: bool = False

    def __getitem__(self, line: Line | str) -> bool:
        key = line if isinstance(line, Line) else Line.parse(line)
        return bool(getattr(self, key.value))

    def as_dict(self) -> dict[str, bool]:
        return {line.value: self[line] for line in Line}

    def changed(self, other: Lines) -> frozenset[Line]:
        """The lines whose state differs between ``self`` and ``other``."""
        return frozenset(line for line in Line if self[line] != other[line])

    def matches(self, wanted: Mapping[Line, bool]) -> bool:
        return all(self[line] == state for line, state in wanted.items())

    def __str__(self) -> str:
        return " ".join(f"{line.value.upper()}={int(self[line])}" for line in Line)


def _parse_state(text: str, where: str) -> bool:
    value = text.strip().lower()
    if value in ("1", "on", "true", "high", "yes"):
        return True
    if value in ("0", "off", "false", "low", "no"):
        return False
    raise ConfigError(f"cannot read line state {text!r} in {where!r}; use 1/0 or on/off")


def parse_line_settings(text: str, *, outputs_only: bool = True) -> dict[Line, bool]:
    """Parse ``"rts=0,dtr=1"`` into ``{Line.RTS: False, Line.DTR: True}``."""
    result: dict[Line, bool] = {}
    for item in filter(None, (p.strip() for p in text.split(","))):
        name, sep, state = item.partition("=")
        if not sep:
            raise ConfigError(f"expected LINE=STATE in {text!r}, got {item!r}")
        line = Line.parse(name)
        if outputs_only and line not in OUTPUT_LINES:
            raise ConfigError(f"{line.value.upper()} is an input; only RTS and DTR can be set")
        if line in result:
            raise ConfigError(f"{line.value.upper()} given twice in {text!r}")
        result[line] = _parse_state(state, text)
    if not result:
        raise ConfigError(f"no line settings in {text!r}")
    return result


def parse_pulse(text: str) -> tuple[Line, float]:
    """Parse ``"dtr:0.1"`` into ``(Line.DTR, 0.1)``: pulse DTR for 100 ms."""
    name, sep, seconds = text.partition(":")
    if not sep:
        raise ConfigError(f"expected LINE:SECONDS in {text!r}, e.g. dtr:0.1")
    line = Line.parse(name)
    if line not in OUTPUT_LINES:
        raise ConfigError(f"{line.value.upper()} is an input; only RTS and DTR can be pulsed")
    try:
        duration = float(seconds)
    except ValueError:
        raise ConfigError(f"cannot read pulse length {seconds!r} in {text!r}") from None
    if not 0 < duration <= 60:
        raise ConfigError(f"pulse length must be in (0, 60] seconds, not {duration}")
    return line, duration
