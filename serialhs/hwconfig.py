"""Loading hw_configs profiles: TOML files that describe hardware as data.

Profiles live in directories searched in order (see :func:`config_dirs`); each
kind of profile has its own sub-directory (``adapters/``, later ``modems/``,
``boards/``, ``wiring/``) and one top-level table named after its kind
(``[adapter]``, ``[modem]``, ...). A profile's name is its file name without
``.toml``; a profile in an earlier directory hides one of the same name in a
later directory.

Profiles are data, never code. Every mistake in a file -- bad TOML, a key that
is not part of the schema, a value of the wrong type or out of range -- raises
:class:`~serialhs.errors.ProfileError` naming the file and, where it can be
found, the line.

The schema checking is generic so that every loader shares it: a loader lists
its keys as :class:`Field` values (a name, a converter, required or a default)
and calls :func:`validate_table`. Converters are small functions that turn a
raw TOML value into the typed value or raise :class:`FieldValueError`;
:func:`text`, :func:`integer`, :func:`boolean`, :func:`hex_id`, :func:`choice`
and :func:`text_list` make the common ones.
"""

from __future__ import annotations

import difflib
import fnmatch
import os
import re
import tomllib
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from serialhs.errors import ProfileError

__all__ = [
    "ADAPTER_FIELDS",
    "ADAPTER_TABLE",
    "ENV_VAR",
    "LINE_NAMES",
    "LINE_ORDER",
    "AdapterProfile",
    "Field",
    "FieldValueError",
    "TomlDocument",
    "boolean",
    "choice",
    "config_dirs",
    "hex_id",
    "integer",
    "key_line",
    "load_adapter_profile",
    "load_adapter_profiles",
    "load_toml",
    "profile_files",
    "read_document",
    "reject_unknown_tables",
    "text",
    "text_list",
    "validate_table",
]

#: Environment variable holding extra profile directories (os.pathsep-separated),
#: searched before the built-in ones.
ENV_VAR = "SERIALHS_HW_CONFIGS"

#: The control lines of an RS-232 port, in the order tables and JSON show them.
LINE_ORDER: tuple[str, ...] = ("rts", "cts", "dtr", "dsr", "dcd", "ri")
LINE_NAMES: frozenset[str] = frozenset(LINE_ORDER)

_PACKAGE_DIR = Path(__file__).resolve().parent


# --- search path -----------------------------------------------------------------------


def config_dirs() -> list[Path]:
    """The directories searched for profiles, earliest (highest priority) first.

    1. each directory in ``$SERIALHS_HW_CONFIGS`` (``os.pathsep``-separated);
    2. the copy installed inside the package (``serialhs/hw_configs``, in wheels);
    3. the source checkout's top-level ``hw_configs/``.

    Only directories that exist are returned, each once.
    """
    candidates: list[Path] = []
    for part in os.environ.get(ENV_VAR, "").split(os.pathsep):
        if part.strip():
            candidates.append(Path(part).expanduser())
    candidates.append(_PACKAGE_DIR / "hw_configs")
    candidates.append(_PACKAGE_DIR.parent / "hw_configs")

    found: list[Path] = []
    seen: set[Path] = set()
    for candidate in candidates:
        if not candidate.is_dir():
            continue
        key = candidate.resolve()
        if key in seen:
            continue
        seen.add(key)
        found.append(candidate)
    return found


def profile_files(kind: str, dirs: Sequence[Path] | None = None) -> list[Path]:
    """The ``<dir>/<kind>/*.toml`` files in search order, one per profile name.

    A name found in an earlier directory hides the same name in later ones.
    Within a directory, files come in name order. Hidden files are skipped.
    """
    if dirs is None:
        dirs = config_dirs()
    chosen: list[Path] = []
    names: set[str] = set()
    for directory in dirs:
        sub = Path(directory) / kind
        if not sub.is_dir():
            continue
        for path in sorted(sub.glob("*.toml")):
            if path.name.startswith(".") or not path.is_file():
                continue
            if path.stem in names:
                continue
            names.add(path.stem)
            chosen.append(path)
    return chosen


# --- reading TOML ----------------------------------------------------------------------

_TOML_LOCATION = re.compile(r"\s*\(at line (\d+), column (\d+)\)\s*$")
_TOML_AT_END = re.compile(r"\s*\(at end of document\)\s*$")


@dataclass(frozen=True)
class TomlDocument:
    """A parsed TOML file together with its text, so errors can name lines."""

    path: Path
    text: str
    data: dict[str, Any]

    def line_of(self, table: str | None, key: str) -> int | None:
        """Best-effort line of ``key`` inside ``[table]`` (see :func:`key_line`)."""
        return key_line(self.text, table, key)

    def error(self, message: str, *, line: int | None = None) -> ProfileError:
        """A :class:`ProfileError` for this file."""
        return ProfileError(message, path=str(self.path), line=line)


def read_document(path: str | os.PathLike[str]) -> TomlDocument:
    """Read and parse one TOML file; every failure is a :class:`ProfileError`."""
    p = Path(path)
    try:
        raw = p.read_bytes()
    except OSError as e:
        reason = e.strerror or str(e)
        raise ProfileError(f"cannot read profile: {reason}", path=str(p)) from e
    try:
        content = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise ProfileError(
            f"not valid UTF-8 (byte 0x{raw[e.start]:02x}); profiles must be saved as UTF-8",
            path=str(p),
            line=raw[: e.start].count(b"\n") + 1,
        ) from e
    try:
        data = tomllib.loads(content)
    except tomllib.TOMLDecodeError as e:
        message, where = _describe_toml_error(e, content)
        raise ProfileError(f"invalid TOML: {message}", path=str(p), line=where) from e
    return TomlDocument(path=p, text=content, data=data)


def load_toml(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Parse one UTF-8 TOML file into a dict.

    A syntax error becomes a :class:`ProfileError` carrying the file and the line
    that ``tomllib`` reported; a file that is not UTF-8 or cannot be read does too.
    """
    return read_document(path).data


def _describe_toml_error(error: tomllib.TOMLDecodeError, content: str) -> tuple[str, int | None]:
    message = str(error.args[0]) if error.args else str(error)
    attribute = getattr(error, "lineno", None)  # Python 3.14+ has it as an attribute
    lineno: int | None = attribute if isinstance(attribute, int) else None
    match = _TOML_LOCATION.search(message)
    if match:
        message = f"{message[: match.start()]} (column {match.group(2)})"
        if lineno is None:
            lineno = int(match.group(1))
    elif _TOML_AT_END.search(message):
        message = _TOML_AT_END.sub(" (at end of file)", message)
        if lineno is None:
            lineno = max(1, len(content.splitlines()))
    return message, lineno


# --- finding lines ---------------------------------------------------------------------

_HEADER_RE = re.compile(r"^\s*\[\[?(?P<name>[^\[\]]*)\]\]?\s*(?:#.*)?$")
_KEY_SEGMENT = r"""(?:[A-Za-z0-9_-]+|"(?:[^"\\]|\\.)*"|'[^']*')"""
_KEY_RE = re.compile(rf"^\s*(?P<key>{_KEY_SEGMENT}(?:\s*\.\s*{_KEY_SEGMENT})*)\s*=")
_SEGMENT_RE = re.compile(r"""\"(?:[^"\\]|\\.)*\"|'[^']*'|[^.\s"']+""")


def _split_dotted(name: str) -> tuple[str, ...]:
    parts: list[str] = []
    for segment in _SEGMENT_RE.findall(name):
        quoted = len(segment) >= 2 and segment[0] == segment[-1] and segment[0] in "\"'"
        parts.append(segment[1:-1] if quoted else segment)
    return tuple(parts)


def _scan(text: str) -> Iterable[tuple[int, str, tuple[str, ...], tuple[str, ...] | None]]:
    """Yield (line number, kind, table path, key path) for headers and keys.

    ``kind`` is ``"header"`` (key path None) or ``"key"``. Lines inside
    multi-line strings are skipped. Best effort: this is for error messages only;
    the data always comes from tomllib.
    """
    table: tuple[str, ...] = ()
    in_string: str | None = None
    for number, line in enumerate(text.splitlines(), start=1):
        if in_string is not None:
            if line.count(in_string) % 2 == 1:
                in_string = None
            continue
        header = _HEADER_RE.match(line)
        if header:
            table = _split_dotted(header.group("name"))
            yield number, "header", table, None
        else:
            key = _KEY_RE.match(line)
            if key:
                yield number, "key", table, _split_dotted(key.group("key"))
        for delimiter in ('"""', "'''"):
            if line.count(delimiter) % 2 == 1:
                in_string = delimiter
                break


def key_line(text: str, table: str | None, key: str) -> int | None:
    """Best-effort line number (1-based) of ``key = ...`` in ``[table]``.

    ``table`` is a dotted table name (``"adapter"``, ``"modem.timeouts"``) or
    None for the top level. A key may also be the name of a sub-table, so
    ``key_line(text, None, "adapter")`` finds the ``[adapter]`` header. Returns
    None when the key cannot be found (for instance inside an inline table).
    """
    want_table = _split_dotted(table) if table else ()
    want = (*want_table, key)
    for number, kind, current, key_path in _scan(text):
        if kind == "header":
            if current[: len(want)] == want:
                return number
        elif key_path is not None and (*current, *key_path)[: len(want)] == want:
            return number
    return None


def _item_line(text: str, start: int | None, item: str) -> int | None:
    """Line of ``item`` (a string element of an array) at or after line ``start``."""
    if start is None:
        return None
    lines = text.splitlines()
    quoted = (f'"{item}"', f"'{item}'")
    for index in range(start - 1, len(lines)):
        line = lines[index]
        if index >= start and (_HEADER_RE.match(line) or _KEY_RE.match(line)):
            break
        if any(q in line for q in quoted):
            return index + 1
    return start


# --- schema ----------------------------------------------------------------------------


class FieldValueError(ValueError):
    """Raised by a converter for a value that does not fit. ``item`` names the
    offending element of a list, so the error can point at its line."""

    def __init__(self, message: str, *, item: str | None = None) -> None:
        super().__init__(message)
        self.item = item


Converter = Callable[[Any], Any]


@dataclass(frozen=True)
class Field:
    """One key of a profile table.

    ``convert`` turns the raw TOML value into the typed value or raises
    :class:`FieldValueError`. A key that is absent gets ``default`` unless it is
    ``required``.
    """

    name: str
    convert: Converter
    required: bool = False
    default: Any = None
    doc: str = ""


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a float"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "a table"
    return type(value).__name__


def text(*, allow_empty: bool = False) -> Converter:
    """A string."""

    def convert(value: Any) -> str:
        if not isinstance(value, str):
            raise FieldValueError(f"expected a string, got {_kind(value)}")
        if not allow_empty and not value.strip():
            raise FieldValueError("must not be empty")
        return value

    return convert


def integer(*, minimum: int | None = None, maximum: int | None = None) -> Converter:
    """An integer (booleans are refused), optionally within bounds."""

    def convert(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise FieldValueError(f"expected an integer, got {_kind(value)}")
        if minimum is not None and value < minimum:
            raise FieldValueError(f"must be at least {minimum}, got {value}")
        if maximum is not None and value > maximum:
            raise FieldValueError(f"must be at most {maximum}, got {value}")
        return value

    return convert


def boolean() -> Converter:
    """``true`` or ``false``."""

    def convert(value: Any) -> bool:
        if not isinstance(value, bool):
            raise FieldValueError(f"expected true or false, got {_kind(value)}")
        return value

    return convert


_HEX_RE = re.compile(r"^(?:0[xX])?([0-9A-Fa-f]+)$")


def hex_id(*, maximum: int = 0xFFFF) -> Converter:
    """A USB id: a TOML integer (``0x0403``) or a hex string (``"0403"``, ``"0x0403"``)."""
    digits = max(2, (maximum.bit_length() + 3) // 4)
    example = "0403" if maximum > 0xFF else "02"

    def convert(value: Any) -> int:
        if isinstance(value, bool):
            raise FieldValueError("expected an integer or a hex string, got a boolean")
        if isinstance(value, str):
            match = _HEX_RE.match(value.strip())
            if not match:
                raise FieldValueError(
                    f"{value!r} is not a hex number; write a hex string such as "
                    f'"{example}" or an integer such as 0x{example}'
                )
            number = int(match.group(1), 16)
        elif isinstance(value, int):
            number = value
        else:
            raise FieldValueError(f"expected an integer or a hex string, got {_kind(value)}")
        if not 0 <= number <= maximum:
            shown = f"0x{number:X}" if number >= 0 else str(number)
            raise FieldValueError(f"{shown} is out of range 0x{0:0{digits}X}..0x{maximum:X}")
        return number

    return convert


def choice(options: Collection[str]) -> Converter:
    """One string out of ``options``."""
    allowed = sorted(options)

    def convert(value: Any) -> str:
        if not isinstance(value, str):
            raise FieldValueError(f"expected a string, got {_kind(value)}")
        if value not in options:
            raise FieldValueError(f"{value!r} is not one of {', '.join(allowed)}", item=value)
        return value

    return convert


def text_list(
    *,
    choices: Collection[str] | None = None,
    allow_empty: bool = True,
    unique: bool = True,
) -> Converter:
    """An array of strings, returned as a tuple; optionally each from ``choices``."""
    allowed = sorted(choices) if choices is not None else None

    def convert(value: Any) -> tuple[str, ...]:
        if not isinstance(value, list):
            raise FieldValueError(f"expected an array of strings, got {_kind(value)}")
        if not value and not allow_empty:
            raise FieldValueError("must not be empty")
        seen: set[str] = set()
        for index, element in enumerate(value):
            if not isinstance(element, str):
                raise FieldValueError(f"element {index + 1} must be a string, got {_kind(element)}")
            if not element.strip():
                raise FieldValueError(f"element {index + 1} is empty", item=element)
            if choices is not None and element not in choices:
                hint = _did_you_mean(element, allowed or ())
                raise FieldValueError(
                    f"unknown name {element!r}{hint}; allowed: {', '.join(allowed or ())}",
                    item=element,
                )
            if unique and element in seen:
                raise FieldValueError(f"{element!r} is listed twice", item=element)
            seen.add(element)
        return tuple(value)

    return convert


def _did_you_mean(word: str, options: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(options), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _get_table(data: dict[str, Any], table: str) -> Any:
    current: Any = data
    for part in _split_dotted(table):
        if not isinstance(current, dict) or part not in current:
            return None
        current = current[part]
    return current


def reject_unknown_tables(doc: TomlDocument, allowed: Collection[str]) -> None:
    """Refuse top-level keys or tables other than ``allowed`` (typo protection)."""
    for key in doc.data:
        if key not in allowed:
            hint = _did_you_mean(key, allowed)
            expected = ", ".join(f"[{name}]" for name in sorted(allowed))
            raise doc.error(
                f"unknown top-level key or table {key!r}{hint}; this file may only hold {expected}",
                line=doc.line_of(None, key),
            )


def validate_table(
    doc: TomlDocument,
    table: str,
    fields: Sequence[Field],
    *,
    subtables: Collection[str] = (),
) -> dict[str, Any]:
    """Check ``[table]`` of ``doc`` against ``fields`` and return the typed values.

    Every field name appears in the result (absent optional keys get their
    default). Keys not in ``fields`` are an error, except names in
    ``subtables``, which the caller validates itself (with another call). All
    errors are :class:`ProfileError` with the file and the line.
    """
    raw = _get_table(doc.data, table)
    if raw is None:
        raise doc.error(f"missing [{table}] table")
    if not isinstance(raw, dict):
        parts = _split_dotted(table)
        parent = ".".join(parts[:-1]) or None
        raise doc.error(
            f"{table!r} must be a table ([{table}]), got {_kind(raw)}",
            line=key_line(doc.text, parent, parts[-1]),
        )

    known = {f.name: f for f in fields}
    for key in raw:
        if key in known or key in subtables:
            continue
        hint = _did_you_mean(key, [*known, *subtables])
        raise doc.error(
            f"unknown key {key!r} in [{table}]{hint}; known keys: {', '.join(known)}",
            line=doc.line_of(table, key),
        )

    values: dict[str, Any] = {}
    for spec in fields:
        if spec.name not in raw:
            if spec.required:
                parts = _split_dotted(table)
                header = key_line(doc.text, ".".join(parts[:-1]) or None, parts[-1])
                raise doc.error(f"missing required key {spec.name!r} in [{table}]", line=header)
            values[spec.name] = spec.default
            continue
        try:
            values[spec.name] = spec.convert(raw[spec.name])
        except FieldValueError as e:
            line = doc.line_of(table, spec.name)
            if e.item is not None:
                line = _item_line(doc.text, line, e.item)
            raise doc.error(f"[{table}] {spec.name}: {e}", line=line) from None
    return values


# --- adapter profiles ------------------------------------------------------------------

ADAPTER_TABLE = "adapter"

_CLASS_MATCH_KEYS = ("match_driver", "match_interface_class", "match_interface_subclass")

#: The keys of ``[adapter]`` (documented in hw_configs/README.md).
ADAPTER_FIELDS: tuple[Field, ...] = (
    Field("chip", text(), required=True, doc="chip or family, e.g. FT232R"),
    Field("description", text(), required=True, doc="one-line human description"),
    Field("vid", hex_id(), doc="USB vendor id; with pid, the profile matches by id"),
    Field("pid", hex_id(), doc="USB product id"),
    Field("match_product", text(), doc="shell-style pattern on the USB product string"),
    Field("match_driver", text_list(allow_empty=False), doc="kernel driver names"),
    Field("match_interface_class", hex_id(maximum=0xFF), doc="USB interface class"),
    Field("match_interface_subclass", hex_id(maximum=0xFF), doc="USB interface subclass"),
    Field("max_baud", integer(minimum=1), doc="highest UART rate in bit/s"),
    Field("custom_baud", boolean(), default=False, doc="arbitrary (non-table) rates"),
    Field("lines", text_list(choices=LINE_NAMES), required=True, doc="control lines wired out"),
    Field("quirks", text_list(), default=(), doc="known behaviour worth knowing"),
    Field("references", text_list(), default=(), doc="where the data comes from"),
)


@dataclass(frozen=True)
class AdapterProfile:
    """A USB-serial adapter (or a class of them) described by hw_configs/adapters.

    A profile matches either by USB id (``vid``/``pid``, optionally narrowed by
    ``match_product``) or, with no fixed id, by class: the kernel driver
    (``match_driver``) or the USB interface class (``match_interface_class``,
    ``match_interface_subclass``). ``max_baud`` is None only for class-matched
    profiles whose rate is not a property of the link (CDC-ACM).
    """

    name: str
    vid: int | None
    pid: int | None
    chip: str
    description: str
    max_baud: int | None
    lines: frozenset[str]
    custom_baud: bool
    quirks: tuple[str, ...]
    path: Path
    match_product: str | None = None
    match_driver: frozenset[str] = frozenset()
    match_interface_class: int | None = None
    match_interface_subclass: int | None = None
    references: tuple[str, ...] = ()

    @property
    def usb_id(self) -> str | None:
        """``"0403:6001"`` for id-matched profiles, None for class-matched ones."""
        if self.vid is None or self.pid is None:
            return None
        return f"{self.vid:04x}:{self.pid:04x}"

    @property
    def class_matched(self) -> bool:
        """True when the profile has no fixed USB id and matches by driver/class."""
        return self.vid is None

    @property
    def ordered_lines(self) -> tuple[str, ...]:
        """``lines`` in the usual order rts, cts, dtr, dsr, dcd, ri."""
        return tuple(name for name in LINE_ORDER if name in self.lines)

    def matches_id(self, vid: int | None, pid: int | None, product: str | None = None) -> bool:
        """Does a device with this USB id (and product string) fit the profile?"""
        if self.vid is None or vid is None or pid is None:
            return False
        if (self.vid, self.pid) != (vid, pid):
            return False
        if self.match_product is None:
            return True
        return product is not None and _glob_match(product, self.match_product)

    def matches_class(
        self,
        *,
        driver: str | None = None,
        interface_class: int | None = None,
        interface_subclass: int | None = None,
    ) -> bool:
        """Does a port with this kernel driver or USB interface class fit?"""
        if not self.class_matched:
            return False
        if driver is not None and driver in self.match_driver:
            return True
        if self.match_interface_class is None or interface_class is None:
            return False
        if interface_class != self.match_interface_class:
            return False
        return (
            self.match_interface_subclass is None
            or interface_subclass == self.match_interface_subclass
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready values (ids as 4-digit lower-case hex strings)."""
        return {
            "name": self.name,
            "chip": self.chip,
            "description": self.description,
            "usb_id": self.usb_id,
            "vid": None if self.vid is None else f"{self.vid:04x}",
            "pid": None if self.pid is None else f"{self.pid:04x}",
            "match_product": self.match_product,
            "match_driver": sorted(self.match_driver),
            "match_interface_class": _hex2(self.match_interface_class),
            "match_interface_subclass": _hex2(self.match_interface_subclass),
            "max_baud": self.max_baud,
            "custom_baud": self.custom_baud,
            "lines": list(self.ordered_lines),
            "quirks": list(self.quirks),
            "references": list(self.references),
            "path": str(self.path),
        }


def _hex2(value: int | None) -> str | None:
    return None if value is None else f"{value:02x}"


def _glob_match(value: str, pattern: str) -> bool:
    return fnmatch.fnmatchcase(value, pattern)


def _adapter_from_document(doc: TomlDocument) -> AdapterProfile:
    reject_unknown_tables(doc, {ADAPTER_TABLE})
    v = validate_table(doc, ADAPTER_TABLE, ADAPTER_FIELDS)

    def line(key: str) -> int | None:
        return doc.line_of(ADAPTER_TABLE, key)

    header = doc.line_of(None, ADAPTER_TABLE)
    has_id = v["vid"] is not None or v["pid"] is not None
    class_keys = [k for k in _CLASS_MATCH_KEYS if v[k] is not None]

    if v["match_interface_subclass"] is not None and v["match_interface_class"] is None:
        raise doc.error(
            "[adapter] match_interface_subclass needs match_interface_class",
            line=line("match_interface_subclass"),
        )
    if has_id:
        if v["vid"] is None or v["pid"] is None:
            present, absent = ("vid", "pid") if v["vid"] is not None else ("pid", "vid")
            raise doc.error(
                f"[adapter] has {present} but no {absent}; give both", line=line(present)
            )
        if class_keys:
            raise doc.error(
                f"[adapter] {class_keys[0]} cannot be combined with vid/pid: a profile "
                "matches either by USB id or by driver/interface class",
                line=line(class_keys[0]),
            )
        if v["max_baud"] is None:
            raise doc.error(
                "missing required key 'max_baud' in [adapter] (needed for profiles with vid/pid)",
                line=header,
            )
    else:
        if v["match_driver"] is None and v["match_interface_class"] is None:
            raise doc.error(
                "[adapter] needs vid and pid, or (for a class of devices without a fixed "
                "id) match_driver and/or match_interface_class",
                line=header,
            )
        if v["match_product"] is not None:
            raise doc.error(
                "[adapter] match_product only narrows a vid/pid match; add vid and pid",
                line=line("match_product"),
            )

    return AdapterProfile(
        name=doc.path.stem,
        vid=v["vid"],
        pid=v["pid"],
        chip=v["chip"],
        description=v["description"],
        max_baud=v["max_baud"],
        lines=frozenset(v["lines"]),
        custom_baud=v["custom_baud"],
        quirks=tuple(v["quirks"]),
        path=doc.path,
        match_product=v["match_product"],
        match_driver=frozenset(v["match_driver"] or ()),
        match_interface_class=v["match_interface_class"],
        match_interface_subclass=v["match_interface_subclass"],
        references=tuple(v["references"]),
    )


def load_adapter_profile(path: str | os.PathLike[str]) -> AdapterProfile:
    """Load and validate one ``adapters/*.toml`` file."""
    return _adapter_from_document(read_document(path))


def load_adapter_profiles(dirs: Sequence[Path] | None = None) -> list[AdapterProfile]:
    """Every adapter profile in ``dirs`` (default :func:`config_dirs`), in search order.

    Search order matters for matching: when two profiles fit a device equally
    well, the one listed first wins, so a profile in ``$SERIALHS_HW_CONFIGS``
    takes precedence over a built-in one for the same USB id.
    """
    return [load_adapter_profile(path) for path in profile_files("adapters", dirs)]
