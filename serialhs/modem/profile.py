"""Modem profiles: what a modem is, as data (``hw_configs/modems/*.toml``).

A profile says who the modem claims to be (the answers to ATI, +GMI/+CGMI,
+GMM/+CGMM, +GMR/+CGMR, +GCAP), what it can do on the telephone line
(modulations, error correction, compression) and on the serial line (the DTE
rates +IPR accepts, autobaud), how a client initialises it, how it reacts to
commands it does not know, its power-on defaults (E, V, Q, X, W, &C, &D, &K,
&S and S-registers) and, for cellular modules, its USB layout (which
interface carries AT commands, PPP, diagnostics, NMEA, audio, QMI).

The AT engine uses profiles to know what to send; the Hayes emulator
(:mod:`serialhs.sim.hayes`) uses them to behave like the modem; the USB layer
uses ``usb`` to find the right interface of a cellular module.

Profiles are read with the shared loader in :mod:`serialhs.hwconfig`: every
mistake raises :class:`~serialhs.errors.ProfileError` naming the file and the
line. The schema is documented in ``hw_configs/README.md`` ("Modem profiles").

    from serialhs.modem.profile import load_modem_profile
    usr = load_modem_profile("v90_dialup")
    usr.top_modulation            # 'V.92'
    ec25 = load_modem_profile("quectel_ec25")
    ec25.usb.interface_for("at")  # UsbInterface(number=2, roles=('at',))
"""

from __future__ import annotations

import difflib
import os
import re
import string
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal

from serialhs.errors import ConfigError
from serialhs.hwconfig import (
    Converter,
    Field,
    FieldValueError,
    TomlDocument,
    boolean,
    choice,
    hex_id,
    integer,
    profile_files,
    read_document,
    reject_unknown_tables,
    text,
    text_list,
    validate_table,
)

__all__ = [
    "COMPRESSION",
    "CONNECT_STYLES",
    "DEFAULT_S_REGISTERS",
    "ERROR_CORRECTION",
    "IDENTITY_FIELDS",
    "KINDS",
    "MODEM_FIELDS",
    "MODEM_KIND",
    "MODEM_TABLE",
    "MODULATIONS",
    "PLACEHOLDERS",
    "USB_ROLES",
    "ModemDefaults",
    "ModemProfile",
    "Modulation",
    "UsbInterface",
    "UsbLayout",
    "available_modem_profiles",
    "load_modem_profile",
    "load_modem_profiles",
    "modem_profile_from_document",
]

#: Sub-directory of a hw_configs directory holding modem profiles.
MODEM_KIND = "modems"
#: The one top-level table of a modem profile.
MODEM_TABLE = "modem"

Kind = Literal["dialup", "cellular"]
KINDS: tuple[str, ...] = ("dialup", "cellular")


@dataclass(frozen=True, slots=True)
class Modulation:
    """One line modulation: its name and the bit rates it reaches.

    ``down`` is the rate an analogue modem receives at, ``up`` the rate it sends
    at; they differ only for the PCM modulations (V.90, V.92), which also need a
    digitally connected modem (``pcm``) at the other end.
    """

    name: str
    down: int
    up: int
    pcm: bool = False


#: The modulations a dial-up profile may list, slowest first. The order is the
#: order of preference: negotiation picks the last one both ends have.
#: V.34 is the 1996 revision (33600 bit/s; the 1994 original stopped at 28800:
#: give such a modem ``max_line_rate = 28800``). V.90 and V.92 downstream is the
#: nominal 56000; real connections report less (53333 and below).
MODULATIONS: Mapping[str, Modulation] = MappingProxyType(
    {
        m.name: m
        for m in (
            Modulation("Bell103", 300, 300),
            Modulation("V.21", 300, 300),
            Modulation("Bell212A", 1200, 1200),
            Modulation("V.22", 1200, 1200),
            Modulation("V.22bis", 2400, 2400),
            Modulation("V.32", 9600, 9600),
            Modulation("V.32bis", 14400, 14400),
            Modulation("V.34", 33600, 33600),
            Modulation("V.90", 56000, 33600, pcm=True),
            Modulation("V.92", 56000, 48000, pcm=True),
        )
    }
)

#: Error-correction protocols, preferred first.
ERROR_CORRECTION: tuple[str, ...] = ("LAPM", "MNP")
#: Compression protocols, preferred first, and the error correction each needs.
COMPRESSION: Mapping[str, str] = MappingProxyType({"V44": "LAPM", "V42BIS": "LAPM", "MNP5": "MNP"})

#: How CONNECT reports the link (see the emulator for W/X):
#: ``plain`` "CONNECT 33600"; ``protocol`` "CONNECT 33600/LAPM/V42BIS";
#: ``arq`` "CONNECT 33600/ARQ" (USRobotics' mark for an error-corrected link).
CONNECT_STYLES: tuple[str, ...] = ("plain", "protocol", "arq")

#: What a USB interface of a cellular module is for.
#: at: AT commands; ppp: the "modem" port for PPP data calls (ATD*99#);
#: diag: the vendor's diagnostic (DM/QCDM) port; nmea: NMEA sentences;
#: gnss: GNSS control; audio: PCM voice; qmi, mbim: the control channel of a
#: network interface; wwan, ecm, rndis: a network interface; adb: Android debug.
USB_ROLES: frozenset[str] = frozenset(
    {"at", "ppp", "diag", "nmea", "gnss", "audio", "qmi", "mbim", "wwan", "ecm", "rndis", "adb"}
)

#: Placeholders allowed in ``[modem.identity]`` and ``[modem.responses]`` lines.
PLACEHOLDERS: tuple[str, ...] = ("name", "manufacturer", "model", "revision", "gcap")

#: S-registers every profile starts from (V.250 and Hayes practice); a profile's
#: ``[modem.s_registers]`` changes values but adds no registers.
DEFAULT_S_REGISTERS: Mapping[int, int] = MappingProxyType(
    {
        0: 0,  # rings before auto-answer (0: off)
        1: 0,  # ring count
        2: 43,  # escape character '+' (>127 disables the escape)
        3: 13,  # command line terminator (CR)
        4: 10,  # response formatting character (LF)
        5: 8,  # command line editing character (BS)
        6: 2,  # seconds to wait for dial tone / before blind dialling
        7: 50,  # seconds to wait for carrier after dialling or answering
        8: 2,  # seconds of pause for ',' in a dial string
        9: 6,  # carrier detect response time, 0.1 s (kept, not used)
        10: 14,  # carrier loss delay before hanging up, 0.1 s
        11: 95,  # DTMF tone duration, ms (kept, not used)
        12: 50,  # escape guard time, 1/50 s
        25: 5,  # DTR change detect time, 0.01 s
    }
)

_MAX_S_VALUE = 255


# --- the profile --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ModemDefaults:
    """Power-on (factory) settings of the command interpreter."""

    echo: bool = True  #: E
    verbose: bool = True  #: V
    quiet: bool = False  #: Q
    x: int = 4  #: X: which result codes (0-4)
    w: int = 0  #: W: how CONNECT reports the link (0-2)
    dcd: int = 1  #: &C: 0 DCD always on, 1 DCD follows the carrier
    dtr: int = 2  #: &D: 0 ignore DTR, 1 command mode, 2 hang up, 3 reset
    flow: int = 3  #: &K: 0 none, 3 RTS/CTS, 4 XON/XOFF
    dsr: int = 0  #: &S: 0 DSR always on, 1 DSR on while a call is up


@dataclass(frozen=True, slots=True)
class UsbInterface:
    """One USB interface of a modem and what it carries (:data:`USB_ROLES`)."""

    number: int
    roles: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class UsbLayout:
    """A modem's USB id and interfaces, for the USB layer."""

    vid: int
    pid: int
    interfaces: tuple[UsbInterface, ...] = ()

    @property
    def usb_id(self) -> str:
        """``"2c7c:0125"``."""
        return f"{self.vid:04x}:{self.pid:04x}"

    def interface_for(self, role: str) -> UsbInterface | None:
        """The first interface (lowest number) with ``role``, or None."""
        if role not in USB_ROLES:
            known = ", ".join(sorted(USB_ROLES))
            raise ConfigError(f"unknown USB interface role {role!r}; known roles: {known}")
        for interface in self.interfaces:
            if role in interface.roles:
                return interface
        return None


@dataclass(frozen=True)
class ModemProfile:
    """A modem described by ``hw_configs/modems/<name>.toml``. See the module docstring.

    ``identity`` maps ``"I0"``..``"I9"`` to the lines ATI<n> answers and
    ``responses`` maps a command (as typed after AT, upper case, e.g. ``"+CSQ"``
    or ``"+CREG?"``) to the lines it answers before OK; both may use the
    :data:`PLACEHOLDERS` (``{model}``), filled by :meth:`render`.
    """

    name: str
    description: str
    manufacturer: str
    model: str
    revision: str
    kind: Kind
    modulations: tuple[str, ...]
    error_correction: tuple[str, ...]
    compression: tuple[str, ...]
    dte_rates: tuple[int, ...]
    autobaud: bool
    default_rate: int
    init: tuple[str, ...]
    unknown_command: Literal["ERROR", "OK"] = "ERROR"
    digital: bool = False
    max_line_rate: int | None = None
    connect_rate: int | None = None
    connect_style: str = "protocol"
    extended_commands: bool = True
    max_command_length: int = 255
    gcap: tuple[str, ...] = ()
    accepted_commands: tuple[str, ...] = ()
    defaults: ModemDefaults = field(default_factory=ModemDefaults)
    s_registers: tuple[tuple[int, int], ...] = tuple(sorted(DEFAULT_S_REGISTERS.items()))
    identity: tuple[tuple[str, tuple[str, ...]], ...] = ()
    responses: tuple[tuple[str, tuple[str, ...]], ...] = ()
    usb: UsbLayout | None = None
    quirks: tuple[str, ...] = ()
    references: tuple[str, ...] = ()
    path: Path | None = None

    # -- derived views ------------------------------------------------------------

    @property
    def is_cellular(self) -> bool:
        return self.kind == "cellular"

    @property
    def top_modulation(self) -> str | None:
        """The fastest modulation the profile lists (None for cellular modules)."""
        ranked = [m for m in MODULATIONS if m in self.modulations]
        return ranked[-1] if ranked else None

    @property
    def s_register_defaults(self) -> dict[int, int]:
        """The power-on S-register values, by register number."""
        return dict(self.s_registers)

    def identity_lines(self, number: int) -> tuple[str, ...] | None:
        """What ATI<number> answers (placeholders filled), or None if unsupported."""
        for key, lines in self.identity:
            if key == f"I{number}":
                return tuple(self.render(line) for line in lines)
        return None

    def response(self, command: str) -> tuple[str, ...] | None:
        """The fixed answer lines for ``command`` (e.g. ``"+CSQ"``), or None."""
        wanted = command.upper()
        for key, lines in self.responses:
            if key == wanted:
                return tuple(self.render(line) for line in lines)
        return None

    def render(self, template: str) -> str:
        """Fill the :data:`PLACEHOLDERS` of an identity or response line."""
        return template.format_map(self._placeholders())

    def _placeholders(self) -> dict[str, str]:
        return {
            "name": self.name,
            "manufacturer": self.manufacturer,
            "model": self.model,
            "revision": self.revision,
            "gcap": ",".join(self.gcap),
        }

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready values."""
        return {
            "name": self.name,
            "description": self.description,
            "manufacturer": self.manufacturer,
            "model": self.model,
            "revision": self.revision,
            "kind": self.kind,
            "modulations": list(self.modulations),
            "digital": self.digital,
            "max_line_rate": self.max_line_rate,
            "connect_rate": self.connect_rate,
            "error_correction": list(self.error_correction),
            "compression": list(self.compression),
            "dte_rates": list(self.dte_rates),
            "autobaud": self.autobaud,
            "default_rate": self.default_rate,
            "init": list(self.init),
            "unknown_command": self.unknown_command,
            "usb": None
            if self.usb is None
            else {
                "usb_id": self.usb.usb_id,
                "interfaces": {str(i.number): list(i.roles) for i in self.usb.interfaces},
            },
            "quirks": list(self.quirks),
            "references": list(self.references),
            "path": None if self.path is None else str(self.path),
        }


# --- schema -------------------------------------------------------------------------


def _integer_list(*, minimum: int, maximum: int) -> Converter:
    """A non-empty array of distinct integers within bounds, returned sorted."""

    def convert(value: Any) -> tuple[int, ...]:
        if not isinstance(value, list) or not value:
            raise FieldValueError("expected a non-empty array of integers")
        seen: set[int] = set()
        for index, element in enumerate(value):
            if isinstance(element, bool) or not isinstance(element, int):
                raise FieldValueError(f"element {index + 1} must be an integer")
            if not minimum <= element <= maximum:
                raise FieldValueError(
                    f"element {index + 1} ({element}) is out of range {minimum}..{maximum}"
                )
            if element in seen:
                raise FieldValueError(f"{element} is listed twice")
            seen.add(element)
        return tuple(sorted(seen))

    return convert


def _int_choice(options: Collection[int]) -> Converter:
    """One integer out of ``options``."""
    allowed = ", ".join(str(o) for o in sorted(options))

    def convert(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise FieldValueError(f"expected one of {allowed}")
        if value not in options:
            raise FieldValueError(f"{value} is not one of {allowed}")
        return value

    return convert


def _flag() -> Converter:
    """0 or 1 (as the E/V/Q commands take it)."""
    return _int_choice((0, 1))


def _command_list() -> Converter:
    """An array of AT command lines, each starting with AT."""
    lines = text_list(allow_empty=False, unique=False)

    def convert(value: Any) -> tuple[str, ...]:
        result: tuple[str, ...] = lines(value)
        for line in result:
            if not line.upper().startswith("AT"):
                raise FieldValueError(f"{line!r} does not start with AT", item=line)
        return result

    return convert


def _basic_command_names() -> Converter:
    """Basic commands such as ``"&H"``, ``"\\N"``, ``"%C"`` or ``"M"``."""
    names = text_list()

    def convert(value: Any) -> tuple[str, ...]:
        result: tuple[str, ...] = names(value)
        for name in result:
            if not re.fullmatch(r"[&\\%*#$]?[A-Za-z]", name):
                raise FieldValueError(
                    f"{name!r} is not a basic command name (a letter, optionally after "
                    "one of & \\ % * # $)",
                    item=name,
                )
        return tuple(n.upper() for n in result)

    return convert


#: The keys of ``[modem]`` (documented in hw_configs/README.md).
MODEM_FIELDS: tuple[Field, ...] = (
    Field("description", text(), required=True, doc="one-line human description"),
    Field("manufacturer", text(), required=True, doc="+GMI/+CGMI answer"),
    Field("model", text(), required=True, doc="+GMM/+CGMM answer"),
    Field("revision", text(), required=True, doc="+GMR/+CGMR answer"),
    Field("kind", choice(KINDS), required=True, doc="dialup or cellular"),
    Field("modulations", text_list(choices=MODULATIONS), default=(), doc="line modulations"),
    Field("digital", boolean(), default=False, doc="digitally connected (a V.90 server)"),
    Field("max_line_rate", integer(minimum=300), doc="cap on the line rate in bit/s"),
    Field("connect_rate", integer(minimum=1), doc="cellular: the rate CONNECT reports"),
    Field("connect_style", choice(CONNECT_STYLES), default="protocol", doc="CONNECT suffix"),
    Field("error_correction", text_list(choices=ERROR_CORRECTION), default=(), doc="LAPM, MNP"),
    Field("compression", text_list(choices=COMPRESSION), default=(), doc="V44, V42BIS, MNP5"),
    Field("dte_rates", _integer_list(minimum=50, maximum=20_000_000), required=True),
    Field("autobaud", boolean(), default=False, doc="+IPR=0 (autobaud) is accepted"),
    Field("default_rate", integer(minimum=50), required=True, doc="DTE rate at power-on"),
    Field("init", _command_list(), required=True, doc="what a client sends to initialise it"),
    Field("unknown_command", choice(("ERROR", "OK")), default="ERROR"),
    Field("extended_commands", boolean(), default=True, doc="V.250 +commands understood"),
    Field("max_command_length", integer(minimum=40, maximum=4096), default=255),
    Field("gcap", text_list(), default=(), doc="+GCAP answer, e.g. ['+CGSM']"),
    Field("accepted_commands", _basic_command_names(), default=(), doc="vendor no-ops"),
    Field("quirks", text_list(), default=(), doc="behaviour worth knowing"),
    Field("references", text_list(), default=(), doc="where the data comes from"),
)

_SUBTABLES = ("defaults", "s_registers", "identity", "responses", "usb")

_DEFAULT_FIELDS: tuple[Field, ...] = (
    Field("E", _flag(), default=1),
    Field("V", _flag(), default=1),
    Field("Q", _flag(), default=0),
    Field("X", _int_choice(range(5)), default=4),
    Field("W", _int_choice(range(3)), default=0),
    Field("&C", _flag(), default=1),
    Field("&D", _int_choice(range(4)), default=2),
    Field("&K", _int_choice((0, 3, 4)), default=3),
    Field("&S", _flag(), default=0),
)

#: The keys of ``[modem.identity]``: what ATI0..ATI9 answer.
IDENTITY_FIELDS: tuple[Field, ...] = tuple(
    Field(f"I{n}", text_list(allow_empty=False, unique=False)) for n in range(10)
)

_USB_FIELDS: tuple[Field, ...] = (
    Field("vid", hex_id(), required=True, doc="USB vendor id"),
    Field("pid", hex_id(), required=True, doc="USB product id"),
)

_RESPONSE_KEY = re.compile(r"^(?:[+&\\%*#$^!][A-Z0-9!%\-./:_]*|[A-Z])(?:=\?|\?|=.*)?$")


def _template_lines() -> Converter:
    """An array of lines (possibly empty) whose placeholders are known."""
    lines = text_list(unique=False)
    formatter = string.Formatter()

    def convert(value: Any) -> tuple[str, ...]:
        if isinstance(value, list) and not value:
            return ()
        result: tuple[str, ...] = lines(value)
        for line in result:
            try:
                names = [name for _, name, _, _ in formatter.parse(line) if name is not None]
            except ValueError as e:
                raise FieldValueError(
                    f"{line!r}: {e} (write {{{{ and }}}} for literal braces)", item=line
                ) from None
            for placeholder in names:
                if placeholder not in PLACEHOLDERS:
                    raise FieldValueError(
                        f"unknown placeholder {{{placeholder}}} in {line!r}; known: "
                        + ", ".join(f"{{{p}}}" for p in PLACEHOLDERS),
                        item=line,
                    )
        return result

    return convert


def _roles() -> Converter:
    return text_list(choices=USB_ROLES, allow_empty=False)


def _did_you_mean(word: str, options: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(options), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _raw_table(doc: TomlDocument, table: str) -> dict[str, Any] | None:
    current: Any = doc.data
    for part in table.split("."):
        if not isinstance(current, dict) or part not in current:
            return None
        current = current[part]
    if not isinstance(current, dict):
        parent, _, last = table.rpartition(".")
        raise doc.error(
            f"{table!r} must be a table ([{table}])", line=doc.line_of(parent or None, last)
        )
    return current


def _dynamic_keys(doc: TomlDocument, table: str, pattern: re.Pattern[str], what: str) -> list[str]:
    """The keys of ``[table]``, each checked against ``pattern``."""
    raw = _raw_table(doc, table)
    if raw is None:
        return []
    for key in raw:
        if not pattern.fullmatch(key):
            raise doc.error(f"[{table}] key {key!r} is not {what}", line=doc.line_of(table, key))
    return list(raw)


# --- building a profile ---------------------------------------------------------------


def modem_profile_from_document(doc: TomlDocument) -> ModemProfile:
    """Validate a parsed ``modems/*.toml`` document and build its profile."""
    reject_unknown_tables(doc, {MODEM_TABLE})
    v = validate_table(doc, MODEM_TABLE, MODEM_FIELDS, subtables=_SUBTABLES)

    def line(key: str) -> int | None:
        return doc.line_of(MODEM_TABLE, key)

    header = doc.line_of(None, MODEM_TABLE)
    kind: Kind = v["kind"]
    modulations: tuple[str, ...] = tuple(m for m in MODULATIONS if m in v["modulations"])
    error_correction: tuple[str, ...] = v["error_correction"]
    compression: tuple[str, ...] = v["compression"]

    if kind == "dialup":
        if not modulations:
            raise doc.error("[modem] a dialup modem needs modulations", line=line("kind"))
        if v["connect_rate"] is not None:
            raise doc.error(
                "[modem] connect_rate is for cellular modules; a dialup modem reports "
                "the negotiated line rate",
                line=line("connect_rate"),
            )
    else:
        if modulations:
            raise doc.error(
                "[modem] a cellular module has no line modulations (its data calls are "
                "packet sessions); leave modulations out",
                line=line("modulations"),
            )
        if v["connect_rate"] is None:
            raise doc.error(
                "missing required key 'connect_rate' in [modem] (needed for cellular modules: "
                "the rate CONNECT reports)",
                line=header,
            )
        if v["digital"]:
            raise doc.error("[modem] digital is for dial-up modems", line=line("digital"))
    for name in compression:
        needs = COMPRESSION[name]
        if needs not in error_correction:
            raise doc.error(
                f"[modem] compression {name} works only over {needs} error correction; "
                f"add {needs!r} to error_correction",
                line=line("compression"),
            )
    if v["default_rate"] not in v["dte_rates"]:
        raise doc.error(
            f"[modem] default_rate {v['default_rate']} is not one of dte_rates",
            line=line("default_rate"),
        )

    defaults = _defaults(doc)
    s_registers = _s_registers(doc)
    identity = _identity(doc)
    responses = _responses(doc)
    usb = _usb(doc)

    return ModemProfile(
        name=doc.path.stem,
        description=v["description"],
        manufacturer=v["manufacturer"],
        model=v["model"],
        revision=v["revision"],
        kind=kind,
        modulations=modulations,
        error_correction=tuple(e for e in ERROR_CORRECTION if e in error_correction),
        compression=tuple(c for c in COMPRESSION if c in compression),
        dte_rates=v["dte_rates"],
        autobaud=v["autobaud"],
        default_rate=v["default_rate"],
        init=v["init"],
        unknown_command=v["unknown_command"],
        digital=v["digital"],
        max_line_rate=v["max_line_rate"],
        connect_rate=v["connect_rate"],
        connect_style=v["connect_style"],
        extended_commands=v["extended_commands"],
        max_command_length=v["max_command_length"],
        gcap=v["gcap"],
        accepted_commands=v["accepted_commands"],
        defaults=defaults,
        s_registers=s_registers,
        identity=identity,
        responses=responses,
        usb=usb,
        quirks=v["quirks"],
        references=v["references"],
        path=doc.path,
    )


def _defaults(doc: TomlDocument) -> ModemDefaults:
    table = f"{MODEM_TABLE}.defaults"
    if _raw_table(doc, table) is None:
        return ModemDefaults()
    d = validate_table(doc, table, _DEFAULT_FIELDS)
    return ModemDefaults(
        echo=bool(d["E"]),
        verbose=bool(d["V"]),
        quiet=bool(d["Q"]),
        x=d["X"],
        w=d["W"],
        dcd=d["&C"],
        dtr=d["&D"],
        flow=d["&K"],
        dsr=d["&S"],
    )


def _s_registers(doc: TomlDocument) -> tuple[tuple[int, int], ...]:
    table = f"{MODEM_TABLE}.s_registers"
    values = dict(DEFAULT_S_REGISTERS)
    keys = _dynamic_keys(doc, table, re.compile(r"S\d{1,3}"), "an S-register name such as S7")
    if not keys:
        return tuple(sorted(values.items()))
    known = [f"S{n}" for n in DEFAULT_S_REGISTERS]
    for key in keys:
        if key not in known:
            raise doc.error(
                f"[{table}] {key} is not a register the emulator keeps{_did_you_mean(key, known)}; "
                f"known: {', '.join(known)}",
                line=doc.line_of(table, key),
            )
    fields = [Field(key, integer(minimum=0, maximum=_MAX_S_VALUE)) for key in keys]
    given = validate_table(doc, table, fields)
    for key, value in given.items():
        values[int(key[1:])] = value
    for register in (3, 4, 5):
        if values[register] > 127:
            raise doc.error(
                f"[{table}] S{register} must be an ASCII character code (0-127)",
                line=doc.line_of(table, f"S{register}"),
            )
    return tuple(sorted(values.items()))


def _identity(doc: TomlDocument) -> tuple[tuple[str, tuple[str, ...]], ...]:
    table = f"{MODEM_TABLE}.identity"
    if _raw_table(doc, table) is None:
        return (("I0", ("{model}",)), ("I3", ("{manufacturer} {model} {revision}",)))
    fields = [Field(f.name, _template_lines()) for f in IDENTITY_FIELDS]
    given = validate_table(doc, table, fields)
    return tuple((key, lines) for key, lines in given.items() if lines is not None)


def _responses(doc: TomlDocument) -> tuple[tuple[str, tuple[str, ...]], ...]:
    table = f"{MODEM_TABLE}.responses"
    keys = _dynamic_keys(
        doc,
        table,
        _RESPONSE_KEY,
        'a command as typed after AT in upper case, such as "+CSQ" or "+CREG?"',
    )
    if not keys:
        return ()
    given = validate_table(doc, table, [Field(key, _template_lines()) for key in keys])
    return tuple((key, lines) for key, lines in given.items())


def _usb(doc: TomlDocument) -> UsbLayout | None:
    table = f"{MODEM_TABLE}.usb"
    if _raw_table(doc, table) is None:
        return None
    ids = validate_table(doc, table, _USB_FIELDS, subtables=("interfaces",))
    itable = f"{table}.interfaces"
    keys = _dynamic_keys(doc, itable, re.compile(r"\d{1,3}"), "an interface number (0-255)")
    interfaces: list[UsbInterface] = []
    if keys:
        for key in keys:
            if int(key) > 255:
                raise doc.error(
                    f"[{itable}] interface number {key} is out of range 0-255",
                    line=doc.line_of(itable, key),
                )
        given = validate_table(doc, itable, [Field(key, _roles()) for key in keys])
        interfaces = [UsbInterface(int(key), roles) for key, roles in given.items()]
        numbers = [i.number for i in interfaces]
        duplicate = next((n for n in numbers if numbers.count(n) > 1), None)
        if duplicate is not None:
            raise doc.error(f"[{itable}] interface {duplicate} is listed twice")
    return UsbLayout(ids["vid"], ids["pid"], tuple(sorted(interfaces, key=lambda i: i.number)))


# --- loading --------------------------------------------------------------------------


def _looks_like_path(value: str | os.PathLike[str]) -> bool:
    if not isinstance(value, str):
        return True
    return value.endswith(".toml") or os.sep in value or (os.altsep or os.sep) in value


def load_modem_profile(
    name_or_path: str | os.PathLike[str], dirs: Sequence[Path] | None = None
) -> ModemProfile:
    """Load a modem profile by name (``modems/NAME.toml`` in the search path,
    :func:`serialhs.hwconfig.config_dirs` unless ``dirs`` is given) or by path (a
    :class:`~pathlib.Path`, or a string ending in ``.toml`` or holding a ``/``).

    A malformed file raises :class:`~serialhs.errors.ProfileError` with the file
    and the line; an unknown name raises :class:`~serialhs.errors.ConfigError`
    listing the names there are.
    """
    if _looks_like_path(name_or_path):
        return modem_profile_from_document(read_document(name_or_path))
    name = str(name_or_path).strip()
    files = profile_files(MODEM_KIND, dirs)
    for path in files:
        if path.stem == name:
            return modem_profile_from_document(read_document(path))
    names = sorted(p.stem for p in files)
    known = ", ".join(names) if names else "none found"
    raise ConfigError(
        f"no modem profile named {name!r}{_did_you_mean(name, names)}; known modem "
        f"profiles: {known} (looked for {MODEM_KIND}/{name}.toml in the hw_configs search path)"
    )


def load_modem_profiles(dirs: Sequence[Path] | None = None) -> list[ModemProfile]:
    """Every modem profile in ``dirs`` (default: the search path), in search order."""
    return [
        modem_profile_from_document(read_document(path)) for path in profile_files(MODEM_KIND, dirs)
    ]


def available_modem_profiles(dirs: Sequence[Path] | None = None) -> list[str]:
    """The names of the modem profiles in the search path, sorted."""
    return sorted(path.stem for path in profile_files(MODEM_KIND, dirs))
