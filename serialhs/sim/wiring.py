"""Wiring maps: which control-line outputs of a virtual wire drive which inputs.

A virtual wire joins two ends, ``"a"`` and ``"b"``. Each end is seen the way a
DTE port sees a cable: it drives the outputs RTS and DTR, and reads the inputs
CTS, DSR, DCD and RI. A :class:`Wiring` says, as data, what each input shows:

- ``connect`` maps an output pin to the input pins it drives. An input driven
  by several outputs is their OR (diode-OR / wired-OR, as adapters that tie DSR
  and DCD together behave).
- ``held`` pins an input on or off whatever the outputs do (a DCD tied to a
  supply line in a cheap null-modem adapter).
- ``data`` says where transmitted data goes: ``"crossed"`` (a's TX reaches b's
  RX and back) or ``"loopback"`` (each end hears its own TX).

Wirings come from ``hw_configs/wiring/*.toml`` (:func:`load_wiring`, looked up
through :func:`serialhs.hwconfig.config_dirs`) or from a compact text for the
command line (:func:`parse_wiring`)::

    a.rts>b.cts,a.dtr>b.dsr+b.dcd,b.rts>a.cts,b.dtr>a.dsr+a.dcd,a.ri=0,data=crossed

This module is pure: apart from :func:`load_wiring` and
:func:`available_wirings`, which read profile files, it does no I/O, so the
wire's sans-I/O core can consult a :class:`Wiring` freely.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal, TypeAlias, cast

from serialhs.driver.lines import INPUT_LINES, OUTPUT_LINES, Line
from serialhs.errors import ConfigError
from serialhs.hwconfig import (
    Field,
    FieldValueError,
    TomlDocument,
    choice,
    key_line,
    profile_files,
    read_document,
    reject_unknown_tables,
    text,
    validate_table,
)

__all__ = [
    "DATA_MODES",
    "DEFAULT_WIRING",
    "ENDS",
    "INPUT_ORDER",
    "OUTPUT_ORDER",
    "WIRING_KIND",
    "DataMode",
    "Pin",
    "Wiring",
    "available_wirings",
    "format_pin",
    "load_wiring",
    "parse_pin",
    "parse_wiring",
]

#: An end and one of its lines: ``("a", Line.RTS)``.
Pin: TypeAlias = tuple[str, Line]
#: Where transmitted data goes.
DataMode: TypeAlias = Literal["crossed", "loopback"]

#: The two ends of a wire.
ENDS: tuple[str, str] = ("a", "b")
#: Outputs (driven by the program on an end), in the order maps are shown.
OUTPUT_ORDER: tuple[Line, Line] = (Line.RTS, Line.DTR)
#: Inputs (computed from the wiring), in the order maps are shown.
INPUT_ORDER: tuple[Line, Line, Line, Line] = (Line.CTS, Line.DSR, Line.DCD, Line.RI)
DATA_MODES: tuple[str, str] = ("crossed", "loopback")

#: The name of the wiring used when none is chosen.
DEFAULT_WIRING = "null_modem"
#: The hw_configs sub-directory (and the file's top-level table is ``[wiring]``).
WIRING_KIND = "wiring"
_TABLE = "wiring"
_CONNECT = "wiring.connect"
_HELD = "wiring.held"

_OUTPUT_PINS: tuple[Pin, ...] = tuple((end, line) for end in ENDS for line in OUTPUT_ORDER)
_INPUT_PINS: tuple[Pin, ...] = tuple((end, line) for end in ENDS for line in INPUT_ORDER)
_PIN_RANK: dict[Pin, int] = {pin: rank for rank, pin in enumerate((*_OUTPUT_PINS, *_INPUT_PINS))}
_OUTPUT_NAMES = ", ".join(line.value for line in OUTPUT_ORDER)
_INPUT_NAMES = ", ".join(line.value for line in INPUT_ORDER)

_ON_WORDS = frozenset({"1", "on", "true", "high", "yes"})
_OFF_WORDS = frozenset({"0", "off", "false", "low", "no"})


# --- pins --------------------------------------------------------------------------------


def format_pin(pin: Pin) -> str:
    """``("a", Line.RTS)`` -> ``"a.rts"``."""
    return f"{pin[0]}.{pin[1].value}"


def parse_pin(name: str) -> Pin:
    """``"a.rts"`` -> ``("a", Line.RTS)``. Case does not matter; ``cd`` means DCD.

    Raises :class:`ConfigError` for a malformed name, an end other than ``a``
    or ``b``, or an unknown line.
    """
    end, sep, line_name = name.strip().partition(".")
    if not sep or not end or not line_name:
        raise ConfigError(f"cannot read pin {name!r}: write END.LINE, for example 'a.rts'")
    end = end.strip().lower()
    if end not in ENDS:
        raise ConfigError(f"unknown end {end!r} in pin {name!r}; a wire has ends 'a' and 'b'")
    try:
        line = Line.parse(line_name)
    except ConfigError:
        hint = _did_you_mean(line_name.strip().lower(), [m.value for m in Line])
        raise ConfigError(
            f"unknown line {line_name.strip()!r} in pin {name!r}{hint}; "
            f"outputs are {_OUTPUT_NAMES}, inputs are {_INPUT_NAMES}"
        ) from None
    return end, line


def _did_you_mean(word: str, options: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(options), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _check_output(pin: Pin, name: str) -> None:
    if pin[1] not in OUTPUT_LINES:
        raise ConfigError(
            f"{name} is an input and cannot drive other lines; only outputs "
            f"({_OUTPUT_NAMES}) drive, for example '{pin[0]}.rts'"
        )


def _check_input(pin: Pin, name: str, what: str) -> None:
    if pin[1] not in INPUT_LINES:
        raise ConfigError(
            f"{name} is an output and cannot be {what}; only inputs ({_INPUT_NAMES}) can be {what}"
        )


def _check_pin(pin: object) -> Pin:
    if (
        not isinstance(pin, tuple)
        or len(pin) != 2
        or pin[0] not in ENDS
        or not isinstance(pin[1], Line)
    ):
        raise ConfigError(f"not a pin: {pin!r}; a pin is (end, Line), e.g. ('a', Line.RTS)")
    return cast(Pin, pin)


def _sorted_pins(pins: Iterable[Pin]) -> tuple[Pin, ...]:
    return tuple(sorted(pins, key=_PIN_RANK.__getitem__))


# --- the wiring --------------------------------------------------------------------------


@dataclass(frozen=True)
class Wiring:
    """How a wire's control lines and data are connected (see the module docstring).

    Construction validates the map and raises :class:`ConfigError` for a pin
    that cannot drive or be driven, an input both held and driven, or an
    unknown data mode. ``connect`` and ``held`` are stored as read-only
    mappings in a fixed order (a's pins before b's, RTS before DTR, CTS, DSR,
    DCD, RI).
    """

    name: str
    description: str
    data: DataMode
    connect: Mapping[Pin, tuple[Pin, ...]] = field(hash=False)
    held: Mapping[Pin, bool] = field(hash=False)
    path: Path | None = None
    _drivers: Mapping[Pin, tuple[Pin, ...]] = field(
        init=False, repr=False, compare=False, hash=False
    )

    def __post_init__(self) -> None:
        if self.data not in DATA_MODES:
            raise ConfigError(
                f"wiring {self.name!r}: data must be 'crossed' or 'loopback', not {self.data!r}"
            )
        connect: dict[Pin, tuple[Pin, ...]] = {}
        drivers: dict[Pin, list[Pin]] = {}
        for source, targets in self.connect.items():
            _check_pin(source)
            _check_output(source, format_pin(source))
            if isinstance(targets, str) or (
                isinstance(targets, tuple) and targets and isinstance(targets[0], str)
            ):
                raise ConfigError(
                    f"wiring {self.name!r}: {format_pin(source)} must map to a tuple of pins"
                )
            seen: set[Pin] = set()
            for target in targets:
                _check_pin(target)
                _check_input(target, format_pin(target), "driven")
                if target in seen:
                    raise ConfigError(
                        f"wiring {self.name!r}: {format_pin(source)} drives "
                        f"{format_pin(target)} twice"
                    )
                seen.add(target)
                drivers.setdefault(target, []).append(source)
            connect[source] = _sorted_pins(seen)
        held: dict[Pin, bool] = {}
        for pin, state in self.held.items():
            _check_pin(pin)
            _check_input(pin, format_pin(pin), "held")
            if not isinstance(state, bool):
                raise ConfigError(
                    f"wiring {self.name!r}: held {format_pin(pin)} must be True or False, "
                    f"not {state!r}"
                )
            if pin in drivers:
                by = ", ".join(format_pin(d) for d in _sorted_pins(drivers[pin]))
                raise ConfigError(
                    f"wiring {self.name!r}: {format_pin(pin)} is both held "
                    f"{'on' if state else 'off'} and driven by {by}; an input is either "
                    "held or driven, not both"
                )
            held[pin] = state
        object.__setattr__(
            self, "connect", MappingProxyType({p: connect[p] for p in _sorted_pins(connect)})
        )
        object.__setattr__(self, "held", MappingProxyType({p: held[p] for p in _sorted_pins(held)}))
        object.__setattr__(
            self,
            "_drivers",
            MappingProxyType({p: _sorted_pins(drivers[p]) for p in _sorted_pins(drivers)}),
        )

    # -- queries ----------------------------------------------------------------------

    def inputs(
        self, a_out: tuple[bool, bool], b_out: tuple[bool, bool]
    ) -> dict[str, dict[Line, bool]]:
        """The inputs of both ends given each end's outputs ``(rts, dtr)``.

        Returns ``{"a": {Line.CTS: ..., Line.DSR: ..., Line.DCD: ..., Line.RI: ...},
        "b": {...}}``. A held input has its held state; a driven input is the OR
        of its drivers; an input nothing drives is False.
        """
        outputs = {
            ("a", Line.RTS): bool(a_out[0]),
            ("a", Line.DTR): bool(a_out[1]),
            ("b", Line.RTS): bool(b_out[0]),
            ("b", Line.DTR): bool(b_out[1]),
        }
        result: dict[str, dict[Line, bool]] = {}
        for end in ENDS:
            states: dict[Line, bool] = {}
            for line in INPUT_ORDER:
                pin = (end, line)
                held = self.held.get(pin)
                if held is not None:
                    states[line] = held
                else:
                    states[line] = any(outputs[d] for d in self._drivers.get(pin, ()))
            result[end] = states
        return result

    def drivers(self, pin: Pin) -> tuple[Pin, ...]:
        """The output pins that drive the input ``pin`` (empty if none does)."""
        pin = _check_pin(pin)
        _check_input(pin, format_pin(pin), "driven")
        return self._drivers.get(pin, ())

    def targets(self, pin: Pin) -> tuple[Pin, ...]:
        """The input pins the output ``pin`` drives (empty if it drives nothing)."""
        pin = _check_pin(pin)
        _check_output(pin, format_pin(pin))
        return self.connect.get(pin, ())

    def is_held(self, pin: Pin) -> bool:
        """True when the input ``pin`` is held on or off by the wiring."""
        return _check_pin(pin) in self.held

    # -- text forms -------------------------------------------------------------------

    def to_spec(self) -> str:
        """The compact form :func:`parse_wiring` reads, e.g.
        ``"a.rts>b.cts,a.dtr>b.dsr+b.dcd,a.ri=0,data=crossed"``."""
        items = [
            f"{format_pin(source)}>{'+'.join(format_pin(t) for t in targets)}"
            for source, targets in self.connect.items()
            if targets
        ]
        items += [f"{format_pin(pin)}={int(state)}" for pin, state in self.held.items()]
        items.append(f"data={self.data}")
        return ",".join(items)

    def to_toml(self) -> str:
        """The wiring as a ``hw_configs/wiring/*.toml`` file (text only; no I/O)."""
        lines = [
            "[wiring]",
            f"description = {_toml_string(self.description)}",
            f'data = "{self.data}"',
            "",
            "[wiring.connect]",
        ]
        for source, targets in self.connect.items():
            shown = ", ".join(f'"{format_pin(t)}"' for t in targets)
            lines.append(f'"{format_pin(source)}" = [{shown}]')
        lines += ["", "[wiring.held]"]
        for pin, state in self.held.items():
            lines.append(f'"{format_pin(pin)}" = {"true" if state else "false"}')
        return "\n".join(lines) + "\n"

    def describe(self) -> list[str]:
        """Human-readable lines, one per connection or held input."""
        shown = [f"data: {self.data}"]
        for source, targets in self.connect.items():
            if targets:
                to = ", ".join(format_pin(t) for t in targets)
                shown.append(f"{format_pin(source)} -> {to}")
        for pin, state in self.held.items():
            shown.append(f"{format_pin(pin)} held {'on' if state else 'off'}")
        for pin in _INPUT_PINS:
            if pin not in self._drivers and pin not in self.held:
                shown.append(f"{format_pin(pin)} not connected (off)")
        return shown


def _toml_string(value: str) -> str:
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    escaped = re.sub(r"[\x00-\x1f\x7f]", lambda m: f"\\u{ord(m.group()):04x}", escaped)
    return f'"{escaped}"'


# --- the command-line form ---------------------------------------------------------------


def _parse_state(value: str, item: str, spec: str) -> bool:
    word = value.strip().lower()
    if word in _ON_WORDS:
        return True
    if word in _OFF_WORDS:
        return False
    raise ConfigError(
        f"wiring {spec!r}: cannot read state {value.strip()!r} in {item!r}; use 1/0 or on/off"
    )


def parse_wiring(text: str, *, name: str = "custom") -> Wiring:
    """Read the compact command-line form of a wiring.

    Comma-separated items, in any order:

    - ``OUT>IN[+IN...]``: output pin ``OUT`` drives the input pins (``a.dtr>b.dsr+b.dcd``);
      an output may appear in several items, which add up;
    - ``IN=STATE``: input ``IN`` held on (``1``/``on``) or off (``0``/``off``);
    - ``data=crossed`` or ``data=loopback`` (default ``crossed``).

    Every mistake raises :class:`ConfigError` naming the item.
    """
    spec = text.strip()
    items = [item.strip() for item in spec.split(",")]
    if not spec or not any(items):
        raise ConfigError(
            "empty wiring; give items such as 'a.rts>b.cts,b.rts>a.cts,data=crossed' "
            "(or just 'data=crossed' for a cable with no control lines)"
        )
    connect: dict[Pin, list[Pin]] = {}
    held: dict[Pin, bool] = {}
    data: str | None = None
    for item in items:
        if not item:
            raise ConfigError(f"wiring {spec!r}: empty item (two commas in a row?)")
        try:
            if ">" in item:
                source_text, _, targets_text = item.partition(">")
                source = parse_pin(source_text)
                _check_output(source, source_text.strip())
                targets_list = connect.setdefault(source, [])
                parts = [p.strip() for p in targets_text.split("+")]
                if not any(parts):
                    raise ConfigError(f"{source_text.strip()} drives nothing")
                for part in parts:
                    if not part:
                        raise ConfigError("empty pin name (a stray '+'?)")
                    target = parse_pin(part)
                    _check_input(target, part, "driven")
                    if target in targets_list:
                        raise ConfigError(f"{part} is listed twice")
                    targets_list.append(target)
            elif "=" in item:
                key, _, value = item.partition("=")
                if key.strip().lower() == "data":
                    mode = value.strip().lower()
                    if mode not in DATA_MODES:
                        raise ConfigError(
                            f"data must be 'crossed' or 'loopback', not {value.strip()!r}"
                        )
                    if data is not None:
                        raise ConfigError("data is given twice")
                    data = mode
                    continue
                pin = parse_pin(key)
                _check_input(pin, key.strip(), "held")
                if pin in held:
                    raise ConfigError(f"{key.strip()} is held twice")
                held[pin] = _parse_state(value, item, spec)
            else:
                raise ConfigError(
                    "expected OUT>IN[+IN...] (a.rts>b.cts), IN=0/1 (a.ri=0) "
                    "or data=crossed/loopback"
                )
        except ConfigError as e:
            message = str(e)
            if not message.startswith("wiring "):
                message = f"wiring {spec!r}: in item {item!r}: {message}"
            raise ConfigError(message) from None
    for pin, state in held.items():
        by = [format_pin(source) for source, targets in connect.items() if pin in targets]
        if by:
            raise ConfigError(
                f"wiring {spec!r}: {format_pin(pin)} is both held {'on' if state else 'off'} "
                f"and driven by {', '.join(by)}; an input is either held or driven, not both"
            )
    mode = cast(DataMode, data or "crossed")
    return Wiring(
        name=name,
        description=f"wiring given as {spec!r}",
        data=mode,
        connect={source: tuple(targets) for source, targets in connect.items()},
        held=held,
        path=None,
    )


# --- profiles ----------------------------------------------------------------------------

_WIRING_FIELDS: tuple[Field, ...] = (
    Field("description", text(), required=True, doc="one-line human description"),
    Field("data", choice(DATA_MODES), default="crossed", doc="crossed or loopback"),
)


def _pin_list(value: Any) -> tuple[Pin, ...]:
    """Converter for a ``[wiring.connect]`` value: the input pins an output drives."""
    elements = [value] if isinstance(value, str) else value
    if not isinstance(elements, list):
        raise FieldValueError(
            f'expected an array of input pins such as ["b.cts"], got {type(value).__name__}'
        )
    pins: list[Pin] = []
    for index, element in enumerate(elements):
        if not isinstance(element, str):
            raise FieldValueError(
                f'element {index + 1} must be a pin name string such as "b.cts", '
                f"got {type(element).__name__}"
            )
        try:
            pin = parse_pin(element)
            _check_input(pin, element, "driven")
        except ConfigError as e:
            raise FieldValueError(str(e), item=element) from None
        if pin in pins:
            raise FieldValueError(f"{element!r} is listed twice", item=element)
        pins.append(pin)
    return tuple(pins)


def _held_state(value: Any) -> bool:
    if not isinstance(value, bool):
        raise FieldValueError(f"expected true (held on) or false (held off), got {value!r}")
    return value


def _pin_table(doc: TomlDocument, table: str, raw: Any, *, outputs: bool) -> dict[str, Pin]:
    """Check the keys of ``[table]`` name pins of the right kind; map key -> pin."""
    if not isinstance(raw, dict):
        raise doc.error(
            f"{table!r} must be a table ([{table}]) of pin names, got {type(raw).__name__}",
            line=key_line(doc.text, _TABLE, table.rpartition(".")[2]),
        )
    pins: dict[str, Pin] = {}
    for key, value in raw.items():
        line = doc.line_of(table, key)
        if isinstance(value, dict):
            raise doc.error(
                f"[{table}] key {key!r} is a table: quote pin names, for example "
                f'"{key}.{next(iter(value), "rts")}" = ...',
                line=line,
            )
        try:
            pin = parse_pin(key)
            if outputs:
                _check_output(pin, key)
            else:
                _check_input(pin, key, "held")
        except ConfigError as e:
            raise doc.error(f"[{table}] {e}", line=line) from None
        canonical = format_pin(pin)
        if key != canonical:
            raise doc.error(f"[{table}] write pin {key!r} as {canonical!r}", line=line)
        pins[key] = pin
    return pins


def _wiring_from_document(doc: TomlDocument) -> Wiring:
    reject_unknown_tables(doc, {_TABLE})
    values = validate_table(doc, _TABLE, _WIRING_FIELDS, subtables={"connect", "held"})
    section = cast(dict[str, Any], doc.data[_TABLE])

    connect: dict[Pin, tuple[Pin, ...]] = {}
    if "connect" in section:
        keys = _pin_table(doc, _CONNECT, section["connect"], outputs=True)
        fields = [Field(key, _pin_list) for key in keys]
        converted = validate_table(doc, _CONNECT, fields)
        connect = {keys[key]: converted[key] for key in keys}

    held: dict[Pin, bool] = {}
    if "held" in section:
        keys = _pin_table(doc, _HELD, section["held"], outputs=False)
        fields = [Field(key, _held_state) for key in keys]
        converted = validate_table(doc, _HELD, fields)
        held = {keys[key]: converted[key] for key in keys}

    drivers: dict[Pin, list[Pin]] = {}
    for source, targets in connect.items():
        for target in targets:
            drivers.setdefault(target, []).append(source)
    for pin, state in held.items():
        if pin in drivers:
            by = ", ".join(format_pin(d) for d in _sorted_pins(drivers[pin]))
            raise doc.error(
                f"[{_HELD}] {format_pin(pin)} is held {'on' if state else 'off'} but "
                f"[{_CONNECT}] drives it from {by}; an input is either held or driven, "
                "not both",
                line=doc.line_of(_HELD, format_pin(pin)),
            )

    try:
        return Wiring(
            name=doc.path.stem,
            description=values["description"],
            data=values["data"],
            connect=connect,
            held=held,
            path=doc.path,
        )
    except ConfigError as e:  # pragma: no cover - the checks above come first
        raise doc.error(str(e)) from None


def _looks_like_path(value: str | os.PathLike[str]) -> bool:
    if not isinstance(value, str):
        return True
    return value.endswith(".toml") or os.sep in value or (os.altsep or os.sep) in value


def load_wiring(name_or_path: str | os.PathLike[str], dirs: Sequence[Path] | None = None) -> Wiring:
    """Load a wiring profile by name (``wiring/NAME.toml`` in the search path,
    :func:`serialhs.hwconfig.config_dirs` unless ``dirs`` is given) or by path
    (a :class:`~pathlib.Path`, or a string ending in ``.toml`` or holding a ``/``).

    A malformed file raises :class:`~serialhs.errors.ProfileError` with the file
    and the line; an unknown name raises :class:`ConfigError` listing the names
    there are.
    """
    if _looks_like_path(name_or_path):
        return _wiring_from_document(read_document(name_or_path))
    name = str(name_or_path).strip()
    files = profile_files(WIRING_KIND, dirs)
    for path in files:
        if path.stem == name:
            return _wiring_from_document(read_document(path))
    names = sorted(p.stem for p in files)
    hint = _did_you_mean(name, names)
    known = ", ".join(names) if names else "none found"
    raise ConfigError(
        f"no wiring named {name!r}{hint}; known wirings: {known} "
        f"(looked for {WIRING_KIND}/{name}.toml in the hw_configs search path)"
    )


def available_wirings(dirs: Sequence[Path] | None = None) -> list[str]:
    """The names of the wiring profiles in the search path, sorted."""
    return sorted(path.stem for path in profile_files(WIRING_KIND, dirs))
