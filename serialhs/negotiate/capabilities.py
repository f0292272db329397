"""What each end of an SHS link can do, how it is encoded, and what two ends agree.

docs/protocol.md is the specification. A SYN carries the initiator's
:class:`Capabilities`, a SYN-ACK the responder's :class:`Choice` and its own
capabilities, each as a list of TLVs::

    type u8 | length u8 | value (length bytes)

Type bit 7 marks a capability *critical*: a receiver that does not know the
type (``type & 0x7F``) must refuse the handshake; unknown types without it are
skipped (kept in :attr:`Capabilities.extra`). A TLV missing from a list means
the minimum: the safe rate only, 8N1, no flow control, the SHS transfer
protocol, 512-byte frames and a window of one.

Pure functions, no I/O: :func:`encode_capabilities`, :func:`decode_capabilities`,
:func:`select` (the selection rule) and :func:`ladder` (the rungs line training
tries, best first, ending at the safe default).
"""

from __future__ import annotations

import dataclasses
import enum
import struct
from collections.abc import Iterable
from typing import Any

from serialhs.driver.settings import (
    MAX_BAUDRATE,
    FlowControl,
    Parity,
    SerialSettings,
    StopBits,
)
from serialhs.errors import CapabilityError, ConfigError, IncompatiblePeerError
from serialhs.negotiate.frames import MAX_PAYLOAD

__all__ = [
    "CRITICAL",
    "FLOW_PREFERENCE",
    "FRAMING_PREFERENCE",
    "MAX_CAPABILITY_BYTES",
    "MAX_FRAME_PAYLOAD",
    "MAX_WINDOW",
    "MIN_FRAME_PAYLOAD",
    "PROTOCOL_PREFERENCE",
    "RATE_TABLE",
    "CapType",
    "Capabilities",
    "Choice",
    "Framing",
    "Identity",
    "TransferProtocol",
    "common_rates",
    "decode_capabilities",
    "decode_settings",
    "encode_capabilities",
    "encode_settings",
    "flow_code",
    "ladder",
    "select",
]

#: The standard rate table: bit i of the RATES bitmap stands for RATE_TABLE[i].
#: Fixed forever; later versions may only append.
RATE_TABLE: tuple[int, ...] = (
    50, 75, 110, 134, 150, 200, 300, 600, 1200, 1800, 2400, 4800, 9600, 19200,
    38400, 57600, 115200, 230400, 460800, 500000, 576000, 921600, 1000000,
    1152000, 1500000, 2000000, 2500000, 3000000, 3500000, 4000000,
)  # fmt: skip
_RATE_INDEX = {rate: i for i, rate in enumerate(RATE_TABLE)}

CRITICAL = 0x80  #: type bit: a receiver that does not know this type must refuse
MIN_FRAME_PAYLOAD = 512  #: every implementation takes payloads this large
MAX_FRAME_PAYLOAD = MAX_PAYLOAD
MAX_WINDOW = 1024
MAX_CUSTOM_RATES = 32
#: a capability list must fit a SYN-ACK (512-byte payload) after its 12-byte choice
MAX_CAPABILITY_BYTES = 500


class CapType(enum.IntEnum):
    """Capability TLV types (without the critical bit)."""

    RATES = 0x01  #: bitmap over RATE_TABLE, byte i//8 bit i%8 (LSB first)
    CUSTOM_RATES = 0x02  #: u32 rates not in the table
    FRAMINGS = 0x03  #: framing codes, u8 each
    FLOW = 0x04  #: bitmap: bit 0 RTS/CTS, bit 1 XON/XOFF, bit 2 DSR/DTR
    PROTOCOLS = 0x05  #: transfer protocol codes, u8 each
    FRAME = 0x06  #: u16 largest payload, u16 window (frames in flight)
    VENDOR = 0x07  #: UTF-8
    PRODUCT = 0x08  #: UTF-8
    FIRMWARE = 0x09  #: UTF-8
    VERSIONS = 0x0A  #: reserved: protocol versions spoken (bitmap, bit 0 = version 1)
    AUTH = 0x0B  #: reserved: authentication methods (bit 0 = pre-shared-key challenge)


#: types this version interprets (VERSIONS and AUTH are only reserved)
_KNOWN = frozenset(t for t in CapType if t not in (CapType.VERSIONS, CapType.AUTH))
_REPEATABLE = frozenset(
    {CapType.RATES, CapType.CUSTOM_RATES, CapType.FRAMINGS, CapType.FLOW, CapType.PROTOCOLS}
)


class TransferProtocol(enum.IntEnum):
    """Transfer protocols an end can run after the handshake, with their codes."""

    SHS = 1
    XMODEM = 2
    XMODEM_CRC = 3
    XMODEM_1K = 4
    YMODEM = 5
    ZMODEM = 6

    @property
    def label(self) -> str:
        """The name on the command line: "shs", "xmodem-crc", ..."""
        return self.name.lower().replace("_", "-")

    def __str__(self) -> str:
        return self.label

    @classmethod
    def parse(cls, value: TransferProtocol | str | int) -> TransferProtocol:
        if isinstance(value, TransferProtocol):
            return value
        if isinstance(value, int) and not isinstance(value, bool):
            try:
                return cls(value)
            except ValueError:
                pass
        if isinstance(value, str):
            key = value.strip().upper().replace("-", "_")
            if key in cls.__members__:
                return cls[key]
        names = ", ".join(p.label for p in cls)
        raise ConfigError(f"unknown transfer protocol {value!r}; known: {names}")


#: Best first. SHS is ours (windowed, selective repeat); ZMODEM streams; the rest stop and wait.
PROTOCOL_PREFERENCE: tuple[TransferProtocol, ...] = (
    TransferProtocol.SHS,
    TransferProtocol.ZMODEM,
    TransferProtocol.YMODEM,
    TransferProtocol.XMODEM_1K,
    TransferProtocol.XMODEM_CRC,
    TransferProtocol.XMODEM,
)

#: Flow control worth having, best first; NONE is always possible and comes last.
FLOW_PREFERENCE: tuple[FlowControl, ...] = (FlowControl.RTSCTS, FlowControl.XONXOFF)
_FLOW_BITS = {FlowControl.RTSCTS: 0x01, FlowControl.XONXOFF: 0x02, FlowControl.DSRDTR: 0x04}
_FLOW_CODES = {
    FlowControl.NONE: 0,
    FlowControl.RTSCTS: 1,
    FlowControl.XONXOFF: 2,
    FlowControl.DSRDTR: 3,
}
_FLOWS_BY_CODE = {code: flow for flow, code in _FLOW_CODES.items()}

_PARITY_CODES = {Parity.NONE: 0, Parity.EVEN: 1, Parity.ODD: 2, Parity.MARK: 3, Parity.SPACE: 4}
_PARITIES = {code: parity for parity, code in _PARITY_CODES.items()}
_STOP_CODES = {StopBits.ONE: 0, StopBits.ONE_POINT_FIVE: 1, StopBits.TWO: 2}
_STOPS = {code: stop for stop, code in _STOP_CODES.items()}


def flow_code(flow: FlowControl) -> int:
    """The one-byte code of a flow control (SWITCH frames, the choice)."""
    return _FLOW_CODES[flow]


# -- framings ---------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class Framing:
    """Data bits, parity and stop bits. Code byte: bits 0-1 data bits - 5, bits 2-4
    parity (N E O M S = 0..4), bits 5-6 stop bits (1, 1.5, 2 = 0..2), bit 7 zero."""

    bytesize: int = 8
    parity: Parity = Parity.NONE
    stopbits: StopBits = StopBits.ONE

    def __post_init__(self) -> None:
        # SerialSettings validates (and coerces "E", 2, ...) the same fields.
        probe = SerialSettings(9600, self.bytesize, self.parity, self.stopbits)
        object.__setattr__(self, "parity", probe.parity)
        object.__setattr__(self, "stopbits", probe.stopbits)

    @property
    def code(self) -> int:
        return (
            (self.bytesize - 5) | _PARITY_CODES[self.parity] << 2 | _STOP_CODES[self.stopbits] << 5
        )

    @classmethod
    def from_code(cls, code: int) -> Framing | None:
        """The framing of a code byte, or None for a code this version does not know."""
        parity = _PARITIES.get(code >> 2 & 0x07)
        stop = _STOPS.get(code >> 5 & 0x03)
        if code & 0x80 or parity is None or stop is None:
            return None
        bytesize = (code & 0x03) + 5
        if stop is StopBits.ONE_POINT_FIVE and bytesize != 5:
            return None
        return cls(bytesize, parity, stop)

    @classmethod
    def of(cls, settings: SerialSettings) -> Framing:
        return cls(settings.bytesize, settings.parity, settings.stopbits)

    @classmethod
    def parse(cls, text: str) -> Framing:
        """``"8N1"``, ``"7E2"``, ``"5N1.5"``."""
        return cls.of(SerialSettings.parse(f"9600 {text}"))

    def settings(self, baudrate: int, flow: FlowControl = FlowControl.NONE) -> SerialSettings:
        return SerialSettings(baudrate, self.bytesize, self.parity, self.stopbits, flow)

    def __str__(self) -> str:
        return SerialSettings(9600, self.bytesize, self.parity, self.stopbits).framing


#: The framings the selection rule may choose, best first. SHS frames carry
#: 8-bit bytes, so framings with fewer data bits are advertised but never chosen.
FRAMING_PREFERENCE: tuple[Framing, ...] = tuple(
    Framing.parse(text)
    for text in ("8N1", "8E1", "8O1", "8N2", "8E2", "8O2", "8M1", "8S1", "8M2", "8S2")
)


# -- one end's capabilities --------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class Identity:
    """Who an end says it is (each string at most 255 bytes of UTF-8)."""

    vendor: str = ""
    product: str = ""
    firmware: str = ""

    def __post_init__(self) -> None:
        for name in ("vendor", "product", "firmware"):
            value = getattr(self, name)
            if not isinstance(value, str):
                raise ConfigError(f"identity {name} must be a string, not {value!r}")
            if len(value.encode("utf-8")) > 255:
                raise ConfigError(f"identity {name} is longer than 255 bytes of UTF-8")

    def __str__(self) -> str:
        parts = [p for p in (self.vendor, self.product) if p]
        text = " ".join(parts) or "unnamed"
        return f"{text} (firmware {self.firmware})" if self.firmware else text


def _protocols(values: Iterable[TransferProtocol | str | int]) -> tuple[TransferProtocol, ...]:
    return tuple(dict.fromkeys(TransferProtocol.parse(v) for v in values))


def _framings(values: Iterable[Framing | str]) -> tuple[Framing, ...]:
    out: list[Framing] = []
    for value in values:
        framing = Framing.parse(value) if isinstance(value, str) else value
        if not isinstance(framing, Framing):
            raise ConfigError(f"a framing is a Framing or text such as '8N1', not {value!r}")
        out.append(framing)
    return tuple(dict.fromkeys(out))


def _flows(values: Iterable[FlowControl | str]) -> frozenset[FlowControl]:
    out = set()
    for value in values:
        try:
            flow = value if isinstance(value, FlowControl) else FlowControl(str(value).lower())
        except ValueError:
            raise ConfigError(
                f"flow control must be one of rtscts, xonxoff, dsrdtr, not {value!r}"
            ) from None
        if flow is not FlowControl.NONE:
            out.add(flow)
    return frozenset(out)


@dataclasses.dataclass(frozen=True, slots=True)
class Capabilities:
    """What one end can do.

    ``baudrates``: every rate the end can use (sorted, without duplicates); the
    safe rate the handshake runs at is always usable, listed or not.
    ``framings``: data bits, parity and stop bits it can use. ``flow``: flow
    control it has wired (RTS/CTS needs the RTS and CTS wires, XON/XOFF nothing
    more; no flow control is always possible). ``protocols``: transfer protocols
    it speaks. ``max_payload``: the largest frame payload it takes (512..32768);
    ``window``: frames it can have in flight (1..1024). ``identity``: vendor,
    product, firmware. ``extra``: TLVs this version does not interpret, as
    (type, value): received ones are kept here, local ones are sent as given.

    Text is accepted where an enum is expected: ``framings=("8N1", "8E1")``,
    ``flow=("rtscts",)``, ``protocols=("shs", "xmodem-1k")``.
    """

    baudrates: tuple[int, ...] = (9600,)
    framings: tuple[Framing, ...] = (Framing(),)
    flow: frozenset[FlowControl] = frozenset()
    protocols: tuple[TransferProtocol, ...] = (TransferProtocol.SHS,)
    max_payload: int = 1024
    window: int = 8
    identity: Identity = Identity()
    extra: tuple[tuple[int, bytes], ...] = ()

    def __post_init__(self) -> None:
        rates = set()
        for rate in self.baudrates:
            if isinstance(rate, bool) or not isinstance(rate, int) or not 0 < rate <= MAX_BAUDRATE:
                raise ConfigError(f"a baud rate is an int 1..{MAX_BAUDRATE}, not {rate!r}")
            rates.add(rate)
        custom = [r for r in rates if r not in _RATE_INDEX]
        if len(custom) > MAX_CUSTOM_RATES:
            raise ConfigError(
                f"at most {MAX_CUSTOM_RATES} rates outside the standard table, not {len(custom)}"
            )
        object.__setattr__(self, "baudrates", tuple(sorted(rates)))
        framings = _framings(self.framings)
        if not framings:
            raise ConfigError("capabilities need at least one framing (8N1 is the usual one)")
        object.__setattr__(self, "framings", framings)
        object.__setattr__(self, "flow", _flows(self.flow))
        protocols = _protocols(self.protocols)
        if not protocols:
            raise ConfigError("capabilities need at least one transfer protocol")
        object.__setattr__(self, "protocols", protocols)
        for name, low, high in (
            ("max_payload", MIN_FRAME_PAYLOAD, MAX_FRAME_PAYLOAD),
            ("window", 1, MAX_WINDOW),
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                raise ConfigError(f"{name} must be an int {low}..{high}, not {value!r}")
        if not isinstance(self.identity, Identity):
            raise ConfigError(f"identity must be an Identity, not {self.identity!r}")
        extra = tuple((int(t), bytes(v)) for t, v in self.extra)
        for cap_type, value in extra:
            if not 0 <= cap_type <= 0xFF or (cap_type & 0x7F) in _KNOWN or cap_type & 0x7F == 0:
                raise ConfigError(f"extra capability type {cap_type:#x} is reserved or known")
            if len(value) > 255:
                raise ConfigError(f"extra capability {cap_type:#x} is longer than 255 bytes")
        object.__setattr__(self, "extra", extra)

    @classmethod
    def up_to(cls, max_baudrate: int, *, min_baudrate: int = 1200, **kwargs: Any) -> Capabilities:
        """Every standard rate from ``min_baudrate`` to ``max_baudrate``, and ``kwargs``."""
        rates = tuple(r for r in RATE_TABLE if min_baudrate <= r <= max_baudrate)
        return cls(baudrates=rates, **kwargs)


# -- TLV codec ---------------------------------------------------------------------------------


def _tlv(cap_type: int, value: bytes) -> bytes:
    out = bytearray()
    # A list longer than one TLV holds goes in several TLVs of the same type.
    step = 252 if cap_type == CapType.CUSTOM_RATES else 255
    for start in range(0, max(len(value), 1), step):
        piece = value[start : start + step]
        out += bytes([cap_type, len(piece)]) + piece
    return bytes(out)


def encode_capabilities(caps: Capabilities) -> bytes:
    """The TLV list of ``caps`` (what a SYN carries, and a SYN-ACK after its choice)."""
    bitmap = bytearray((len(RATE_TABLE) + 7) // 8)
    custom = bytearray()
    for rate in caps.baudrates:
        index = _RATE_INDEX.get(rate)
        if index is None:
            custom += rate.to_bytes(4, "big")
        else:
            bitmap[index // 8] |= 1 << (index % 8)
    flow = 0
    for f in caps.flow:
        flow |= _FLOW_BITS[f]
    out = bytearray(_tlv(CapType.RATES, bytes(bitmap)))
    if custom:
        out += _tlv(CapType.CUSTOM_RATES, bytes(custom))
    out += _tlv(CapType.FRAMINGS, bytes(f.code for f in caps.framings))
    out += _tlv(CapType.FLOW, bytes([flow]))
    out += _tlv(CapType.PROTOCOLS, bytes(int(p) for p in caps.protocols))
    out += _tlv(CapType.FRAME, struct.pack(">HH", caps.max_payload, caps.window))
    for cap_type, text in (
        (CapType.VENDOR, caps.identity.vendor),
        (CapType.PRODUCT, caps.identity.product),
        (CapType.FIRMWARE, caps.identity.firmware),
    ):
        if text:
            out += _tlv(cap_type, text.encode("utf-8"))
    for extra_type, value in caps.extra:
        out += bytes([extra_type, len(value)]) + value
    if len(out) > MAX_CAPABILITY_BYTES:
        raise ConfigError(
            f"the capabilities encode to {len(out)} bytes; at most {MAX_CAPABILITY_BYTES} fit "
            "a handshake frame (list fewer custom rates, or shorter identity strings)"
        )
    return bytes(out)


def decode_capabilities(data: bytes) -> Capabilities:
    """The capabilities in a TLV list. Unknown types are skipped (kept in ``extra``),
    unknown framing and protocol codes and flow bits are ignored; raises
    :class:`CapabilityError` for a TLV that runs past the end, a known TLV of the
    wrong size or repeated where it may not be, a payload size below 512, and an
    unknown critical type."""
    rates: set[int] = set()
    framings: list[Framing] = []
    flows: set[FlowControl] = set()
    protocols: list[TransferProtocol] = []
    frame: tuple[int, int] | None = None
    strings: dict[CapType, str] = {}
    extra: list[tuple[int, bytes]] = []
    seen: set[int] = set()
    pos = 0
    while pos < len(data):
        if pos + 2 > len(data):
            raise CapabilityError(f"a TLV header is cut short at byte {pos}")
        raw_type, length = data[pos], data[pos + 1]
        value = bytes(data[pos + 2 : pos + 2 + length])
        if len(value) != length:
            raise CapabilityError(
                f"TLV {raw_type:#04x} at byte {pos} says {length} byte(s), {len(value)} remain",
                cap_type=raw_type,
            )
        pos += 2 + length
        cap_type = raw_type & 0x7F
        if cap_type not in _KNOWN:
            if raw_type & CRITICAL:
                raise CapabilityError(
                    f"the peer marks capability {raw_type:#04x} critical and this end does not "
                    "know it",
                    cap_type=raw_type,
                    hint="upgrade this end, or configure the peer not to require it",
                )
            extra.append((raw_type, value))
            continue
        kind = CapType(cap_type)
        if kind in seen and kind not in _REPEATABLE:
            raise CapabilityError(f"capability {kind.name} appears twice", cap_type=raw_type)
        seen.add(kind)
        if kind is CapType.RATES:
            for index in range(min(len(value) * 8, len(RATE_TABLE))):
                if value[index // 8] >> (index % 8) & 1:
                    rates.add(RATE_TABLE[index])
        elif kind is CapType.CUSTOM_RATES:
            if length % 4:
                raise CapabilityError(
                    f"CUSTOM_RATES is a list of u32, not {length} bytes", cap_type=raw_type
                )
            for (rate,) in struct.iter_unpack(">I", value):
                if 0 < rate <= MAX_BAUDRATE:
                    rates.add(int(rate))
        elif kind is CapType.FRAMINGS:
            framings += [f for f in map(Framing.from_code, value) if f is not None]
        elif kind is CapType.FLOW:
            if length < 1:
                raise CapabilityError("FLOW needs one byte", cap_type=raw_type)
            flows |= {flow for flow, bit in _FLOW_BITS.items() if value[0] & bit}
        elif kind is CapType.PROTOCOLS:
            for code in value:
                if code in TransferProtocol._value2member_map_:
                    protocols.append(TransferProtocol(code))
        elif kind is CapType.FRAME:
            if length != 4:
                raise CapabilityError(f"FRAME is 4 bytes, not {length}", cap_type=raw_type)
            max_payload, window = struct.unpack(">HH", value)
            if max_payload < MIN_FRAME_PAYLOAD or window < 1:
                raise CapabilityError(
                    f"FRAME says {max_payload}-byte payloads and a window of {window}; the "
                    f"protocol needs at least {MIN_FRAME_PAYLOAD} and 1",
                    cap_type=raw_type,
                )
            frame = (min(max_payload, MAX_FRAME_PAYLOAD), min(window, MAX_WINDOW))
        else:
            strings[kind] = value.decode("utf-8", "replace")
    if not framings:  # none listed, or none this version knows: the minimum
        framings = [Framing()]
    if CapType.PROTOCOLS not in seen:
        protocols = [TransferProtocol.SHS]
    max_payload, window = frame if frame is not None else (MIN_FRAME_PAYLOAD, 1)
    custom = [r for r in rates if r not in _RATE_INDEX]
    if len(custom) > MAX_CUSTOM_RATES:
        raise CapabilityError(f"{len(custom)} custom rates; at most {MAX_CUSTOM_RATES}")
    try:
        return Capabilities(
            baudrates=tuple(rates),
            framings=tuple(framings),
            flow=frozenset(flows),
            protocols=tuple(protocols),
            max_payload=max_payload,
            window=window,
            identity=Identity(
                strings.get(CapType.VENDOR, ""),
                strings.get(CapType.PRODUCT, ""),
                strings.get(CapType.FIRMWARE, ""),
            ),
            extra=tuple(extra),
        )
    except ConfigError as e:
        raise CapabilityError(f"unusable capabilities: {e}") from e


# -- settings on the wire ----------------------------------------------------------------------


def encode_settings(settings: SerialSettings) -> bytes:
    """Six bytes: baud rate u32, framing code u8, flow-control code u8."""
    return settings.baudrate.to_bytes(4, "big") + bytes(
        [Framing.of(settings).code, _FLOW_CODES[settings.flow]]
    )


def decode_settings(data: bytes) -> SerialSettings:
    """The settings in six bytes from :func:`encode_settings`. Raises CapabilityError."""
    if len(data) != 6:
        raise CapabilityError(f"settings are 6 bytes, not {len(data)}")
    baudrate = int.from_bytes(data[:4], "big")
    framing = Framing.from_code(data[4])
    flow = _FLOWS_BY_CODE.get(data[5])
    if framing is None or flow is None or not 0 < baudrate <= MAX_BAUDRATE:
        raise CapabilityError(f"unknown settings {data.hex(' ')}")
    return framing.settings(baudrate, flow)


# -- the selection rule ------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class Choice:
    """The best common settings (what a SYN-ACK carries). 12 bytes on the wire:
    baud u32, framing u8, flow u8, protocol u8, reserved u8 (0), max payload u16,
    window u16."""

    settings: SerialSettings
    protocol: TransferProtocol
    max_payload: int
    window: int

    SIZE = 12

    def encode(self) -> bytes:
        return (
            encode_settings(self.settings)
            + bytes([int(self.protocol), 0])
            + struct.pack(">HH", self.max_payload, self.window)
        )

    @classmethod
    def decode(cls, data: bytes) -> Choice:
        if len(data) != cls.SIZE:
            raise CapabilityError(f"a choice is {cls.SIZE} bytes, not {len(data)}")
        settings = decode_settings(data[:6])
        try:
            protocol = TransferProtocol(data[6])
        except ValueError:
            raise CapabilityError(f"unknown transfer protocol code {data[6]}") from None
        max_payload, window = struct.unpack(">HH", data[8:12])
        return cls(settings, protocol, max_payload, window)

    def __str__(self) -> str:
        return (
            f"{self.settings} {self.protocol.label} frames {self.max_payload} window {self.window}"
        )


def common_rates(a: Capabilities, b: Capabilities, safe: SerialSettings) -> tuple[int, ...]:
    """Rates both ends have that are at least the safe rate, fastest first; the safe
    rate is always among them (both ends are talking at it)."""
    common = set(a.baudrates) & set(b.baudrates)
    return tuple(sorted({r for r in common if r > safe.baudrate} | {safe.baudrate}, reverse=True))


def select(a: Capabilities, b: Capabilities, safe: SerialSettings) -> Choice:
    """The selection rule: the best settings both ends have.

    - rate: the highest rate both list (at least the safe rate);
    - framing: the first of :data:`FRAMING_PREFERENCE` both list, else the safe
      settings' framing;
    - flow control: RTS/CTS if both have it wired, else XON/XOFF if both do, else none;
    - protocol: the first of :data:`PROTOCOL_PREFERENCE` both speak (none in
      common: :class:`IncompatiblePeerError`);
    - payload size and window: the smaller of the two.

    It is symmetric in ``a`` and ``b``, so either end computes the same choice.
    """
    rate = common_rates(a, b, safe)[0]
    framing = next(
        (f for f in FRAMING_PREFERENCE if f in a.framings and f in b.framings),
        Framing.of(safe),
    )
    flow = next((f for f in FLOW_PREFERENCE if f in a.flow and f in b.flow), FlowControl.NONE)
    protocol = next((p for p in PROTOCOL_PREFERENCE if p in a.protocols and p in b.protocols), None)
    if protocol is None:
        mine = ", ".join(p.label for p in a.protocols)
        theirs = ", ".join(p.label for p in b.protocols)
        raise IncompatiblePeerError(
            f"no transfer protocol in common (one end speaks {mine}, the other {theirs})"
        )
    return Choice(
        framing.settings(rate, flow),
        protocol,
        min(a.max_payload, b.max_payload),
        min(a.window, b.window),
    )


def ladder(
    a: Capabilities, b: Capabilities, safe: SerialSettings, choice: Choice | None = None
) -> tuple[SerialSettings, ...]:
    """The rungs line training tries, best first: the chosen framing and flow
    control at each common rate from the chosen one down to the safe rate, then
    the safe settings themselves (once, if not already the last rung)."""
    if choice is None:
        choice = select(a, b, safe)
    top = choice.settings
    rungs = [top.replace(baudrate=r) for r in common_rates(a, b, safe) if r <= top.baudrate]
    if safe not in rungs:
        rungs.append(safe)
    return tuple(dict.fromkeys(rungs))
