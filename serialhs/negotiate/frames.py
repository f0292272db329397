"""SHS link frames: byte stuffing, CRC-32C and a resynchronising decoder, sans I/O.

docs/protocol.md is the specification; this module is its framing layer. On the
wire a frame is::

    7E | escaped( header | payload | CRC-32C ) | 7E

    header, 18 bytes, big-endian:
      version u8 (1) | type u8 | flags u8 | reserved u8 (0)
      session u32 | seq u32 | ack u32 | length u16 (of the payload)

The CRC is CRC-32C, Castagnoli's (:func:`crc32c`: polynomial 0x1EDC6F41
reflected, initial value 0xFFFFFFFF, final XOR 0xFFFFFFFF; check value
0xE3069283 for ``b"123456789"``) over the header and payload before escaping, appended
most significant byte first. Escaping replaces each of 0x7E (flag), 0x7D
(escape), 0x11 (XON) and 0x13 (XOFF) with 0x7D followed by the byte XOR 0x20,
so a flag never occurs inside a frame and a line with XON/XOFF flow control
carries frames unharmed. A receiver discards raw 0x11 and 0x13 wherever they
appear (they are flow control, never frame content).

:class:`FrameDecoder` takes bytes in any split and hands out :class:`Frame` and
:class:`BadFrame` events. Whatever arrives between two flags is one candidate
frame, so garbage (line noise, a frame cut short, bytes at the wrong baud rate)
costs at most the frame it touches: the next flag starts afresh and every good
frame after it is decoded. Every byte that is not part of a good frame is
reported in exactly one :class:`BadFrame` (with why), and the buffer is bounded
by twice the largest frame.
"""

from __future__ import annotations

import dataclasses
import enum
import itertools
import os
import struct
from collections import deque
from collections.abc import Iterable, Sequence
from types import ModuleType
from typing import cast

from serialhs.errors import ConfigError, FrameError, LocalProtocolError

__all__ = [
    "CRC_SIZE",
    "ESC",
    "FLAG",
    "HANDSHAKE_PAYLOAD",
    "HEADER_SIZE",
    "MAX_PAYLOAD",
    "MAX_WIRE_SIZE",
    "PROBE_PATTERN",
    "SPEEDUPS",
    "VERSION",
    "BadFrame",
    "BadReason",
    "Flags",
    "Frame",
    "FrameDecoder",
    "FrameType",
    "RstCode",
    "crc32c",
    "crc32c_py",
    "decode",
    "decode_chunk",
    "decode_chunk_py",
    "decode_dack",
    "decode_nak",
    "encode",
    "encode_dack",
    "encode_nak",
    "encode_py",
    "escape",
    "escaped_size",
    "escaped_size_py",
    "pack",
    "session_id",
    "unescape",
    "unescape_py",
    "unpack",
]

VERSION = 1  #: the protocol version this module speaks
FLAG = 0x7E  #: frame delimiter
_FLAG_BYTE = bytes([FLAG])
ESC = 0x7D  #: escape: the next byte is XOR 0x20
ESC_XOR = 0x20
#: bytes that never appear raw inside a frame
ESCAPED = frozenset({0x7E, 0x7D, 0x11, 0x13})
_FLOW_BYTES = b"\x11\x13"  #: XON, XOFF: discarded by receivers wherever they appear

HEADER = struct.Struct(">BBBBIIIH")
HEADER_SIZE = HEADER.size  #: 18
CRC_SIZE = 4
#: the largest payload the protocol allows (docs/protocol.md §3)
MAX_PAYLOAD = 32768
HANDSHAKE_PAYLOAD = 512  #: every implementation accepts payloads up to this size
#: the longest frame on the wire: every byte escaped, plus two flags
MAX_WIRE_SIZE = 2 * (HEADER_SIZE + MAX_PAYLOAD + CRC_SIZE) + 2
_U32 = 0xFFFFFFFF

#: What a PROBE and a PROBE-ACK carry after their step and round bytes: every
#: byte value once, then runs of 0x55 and 0xAA (a square wave at half the baud
#: rate), 0x00 (the longest space a character can hold) and 0xFF (the longest mark).
PROBE_PATTERN = bytes(range(256)) + b"\x55" * 16 + b"\xaa" * 16 + b"\x00" * 16 + b"\xff" * 16


class FrameType(enum.IntEnum):
    """Frame types (the header's type byte). docs/protocol.md describes each."""

    SYN = 0x01
    SYN_ACK = 0x02
    ACK = 0x03
    RST = 0x04
    SWITCH = 0x05
    SWITCH_ACK = 0x06
    PROBE = 0x07
    PROBE_ACK = 0x08
    VERIFIED = 0x09
    KEEPALIVE = 0x0A
    FIN = 0x0B
    FIN_ACK = 0x0C
    DATA = 0x10
    DACK = 0x11
    NAK = 0x12
    AUTH1 = 0x20  #: reserved for the pre-shared-key authentication step
    AUTH2 = 0x21
    AUTH3 = 0x22
    AUTH4 = 0x23

    @property
    def label(self) -> str:
        """The name as docs/protocol.md writes it ("SYN-ACK")."""
        return self.name.replace("_", "-")


class Flags(enum.IntFlag):
    """Bits of the header's flags byte. Unknown bits are sent as 0 and ignored."""

    RETRY = 0x01  #: this frame is a retransmission (informational)
    EOM = 0x02  #: DATA: the last frame of a message
    POLL = 0x04  #: DATA: acknowledge at once (the sender waits for it; HDLC's P bit)
    FAST = 0x08  #: SWITCH, SWITCH-ACK: the line delivers faster than its rate (§9.2)


class RstCode(enum.IntEnum):
    """Why a RST was sent (the first byte of its payload)."""

    UNSPECIFIED = 0
    NO_COMMON = 1  #: no transfer protocol in common
    BAD_CAPABILITIES = 2  #: malformed capabilities, or an unknown critical capability
    BAD_CHOICE = 3  #: the SYN-ACK's choice does not follow the selection rule
    NO_SESSION = 4  #: a frame for a session this end does not have
    PEER_LOST = 5  #: no frame from the peer for the keep-alive limit
    TRAINING_FAILED = 6  #: no rung of the ladder verified
    BAD_SWITCH = 7  #: a SWITCH to settings outside the ladder
    ABORTED = 8  #: the application gave up
    AUTH_FAILED = 9  #: reserved for the authentication step


class BadReason(enum.Enum):
    """Why bytes did not make a frame."""

    GARBAGE = "garbage"  #: bytes before the first flag (the decoder was not in sync)
    TRUNCATED = "truncated"  #: shorter than a header and CRC
    CRC = "crc"  #: the CRC does not match
    TOO_LONG = "too-long"  #: longer than the largest frame the decoder accepts
    LENGTH = "length"  #: the length field disagrees with the bytes between the flags
    VERSION = "version"  #: a protocol version this decoder does not speak
    ESCAPE = "escape"  #: an escape byte followed by another escape byte
    ABORTED = "aborted"  #: an escape byte right before the closing flag (HDLC abort)
    INTERRUPTED = "interrupted"  #: a partial frame dropped by reset() (a settings change)


# -- frames ---------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class Frame:
    """One frame. ``type`` is a :class:`FrameType` when known, else the raw number."""

    type: int
    session: int = 0
    seq: int = 0
    ack: int = 0
    payload: bytes = b""
    flags: int = 0
    version: int = VERSION

    def __post_init__(self) -> None:
        for name, limit in (("type", 0xFF), ("flags", 0xFF), ("version", 0xFF)):
            _check_int(name, getattr(self, name), limit)
        for name in ("session", "seq", "ack"):
            _check_int(name, getattr(self, name), _U32)
        if not isinstance(self.payload, bytes):
            if not isinstance(self.payload, bytearray | memoryview):
                raise LocalProtocolError(f"a frame payload is bytes, not {self.payload!r}")
            object.__setattr__(self, "payload", bytes(self.payload))
        if len(self.payload) > MAX_PAYLOAD:
            raise LocalProtocolError(
                f"a frame payload is at most {MAX_PAYLOAD} bytes, not {len(self.payload)}"
            )
        if not isinstance(self.type, FrameType):
            object.__setattr__(self, "type", _frame_type(self.type))

    @classmethod
    def unchecked(  # noqa: PLR0917 - the fields in their dataclass order, as Frame() takes them
        cls,
        type: int,
        session: int,
        seq: int,
        ack: int,
        payload: bytes,
        flags: int = 0,
        version: int = VERSION,
    ) -> Frame:
        """A frame from fields already known to be in range (decoded from the wire,
        or masked to 32 bits by a core): the per-frame checks are skipped."""
        frame = object.__new__(cls)
        put = object.__setattr__
        put(frame, "type", _frame_type(type))
        put(frame, "session", session)
        put(frame, "seq", seq)
        put(frame, "ack", ack)
        put(frame, "payload", payload)
        put(frame, "flags", flags)
        put(frame, "version", version)
        return frame

    @property
    def kind(self) -> FrameType | None:
        """The frame type, or None for a type this module does not know."""
        return self.type if isinstance(self.type, FrameType) else None

    @property
    def name(self) -> str:
        return self.type.label if isinstance(self.type, FrameType) else f"type 0x{self.type:02x}"

    def describe(self) -> str:
        """One line: type, flags, session, seq, ack and payload length (hex numbers)."""
        return (
            f"{self.name} flags=0x{self.flags:02x} session=0x{self.session:08x} "
            f"seq=0x{self.seq:08x} ack=0x{self.ack:08x} length={len(self.payload)}"
        )


def _check_int(name: str, value: object, limit: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= limit:
        raise LocalProtocolError(f"frame {name} must be an int 0..{limit:#x}, not {value!r}")


_FRAME_TYPES: dict[int, int] = {int(t): t for t in FrameType}


def _frame_type(value: int) -> int:
    return _FRAME_TYPES.get(value, value)


# -- CRC, escaping, packing -------------------------------------------------------------------


_CRC32C_POLY = 0x82F63B78  #: CRC-32C's polynomial 0x1EDC6F41, reflected


def _crc_table() -> tuple[int, ...]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ (_CRC32C_POLY if crc & 1 else 0)
        table.append(crc)
    return tuple(table)


_CRC_TABLE = _crc_table()


def crc32c_py(data: bytes | bytearray | memoryview) -> int:
    """CRC-32C in Python, a byte at a time: the reference for :func:`crc32c`."""
    crc = _U32
    table = _CRC_TABLE
    for byte in bytes(data):
        crc = (crc >> 8) ^ table[(crc ^ byte) & 0xFF]
    return crc ^ _U32


def escape(data: bytes) -> bytes:
    """Byte stuffing: 0x7E, 0x7D, 0x11 and 0x13 become 0x7D, byte XOR 0x20."""
    return (
        data.replace(b"\x7d", b"\x7d\x5d")
        .replace(b"\x7e", b"\x7d\x5e")
        .replace(b"\x11", b"\x7d\x31")
        .replace(b"\x13", b"\x7d\x33")
    )


def escaped_size_py(data: bytes) -> int:
    """``len(escape(data))``, in Python: the reference for :func:`escaped_size`.
    (Building it is faster than counting: replace() finds a byte with memchr,
    count() looks at every byte.)"""
    return len(escape(data))


def unescape_py(data: bytes) -> bytes:
    """Undo :func:`escape` on the bytes between two flags, in Python: the
    reference for :func:`unescape`. Raises :class:`FrameError` (reason "escape"
    or "aborted") for an escape byte before another one or at the end."""
    if b"\x7d" not in data:
        return data
    parts = data.split(b"\x7d")
    try:
        empty = parts.index(b"", 1)  # an escape byte without a byte after it
    except ValueError:
        out = bytearray().join(parts)
        for at in itertools.accumulate(map(len, parts[:-1])):
            out[at] ^= ESC_XOR  # the byte each escape byte stood before
        return bytes(out)
    if empty == len(parts) - 1:
        raise FrameError(
            "the frame ends in an escape byte (an HDLC abort)",
            reason=BadReason.ABORTED.value,
            data=data,
        )
    raise FrameError(
        "an escape byte follows an escape byte", reason=BadReason.ESCAPE.value, data=data
    )


def pack(frame: Frame) -> bytes:
    """Header, payload and CRC of ``frame``, before escaping (what the CRC covers, plus it)."""
    body = (
        HEADER.pack(
            frame.version,
            int(frame.type),
            frame.flags,
            0,
            frame.session,
            frame.seq,
            frame.ack,
            len(frame.payload),
        )
        + frame.payload
    )
    return body + crc32c(body).to_bytes(CRC_SIZE, "big")


def encode_py(frame: Frame) -> bytes:
    """``frame`` as it goes on the wire, in Python: the reference for :func:`encode`."""
    return b"\x7e" + escape(pack(frame)) + b"\x7e"


def decode_chunk_py(chunk: bytes, *, max_payload: int = MAX_PAYLOAD) -> Frame:
    """The frame in the bytes between two flags, in Python: the reference for
    :func:`decode_chunk`."""
    return unpack(unescape_py(chunk), max_payload=max_payload)


# -- the C versions (serialhs/negotiate/_hdlc.c) ------------------------------------------------


def _load_c() -> ModuleType | None:
    try:
        from serialhs.negotiate import _hdlc  # noqa: PLC0415
    except ImportError:  # installed without a C compiler: the Python references serve
        return None
    return _hdlc


_C = _load_c()  #: the extension when it was built (used unless SERIALHS_PURE_PYTHON is set)
#: is the C framing in use? (built, and SERIALHS_PURE_PYTHON not set)
SPEEDUPS = _C is not None and not os.environ.get("SERIALHS_PURE_PYTHON")


def _c() -> ModuleType:
    assert _C is not None, "serialhs.negotiate._hdlc was not built"
    return _C


def _unescape_c(data: bytes) -> bytes:
    try:
        return cast("bytes", _c().unescape(data))
    except ValueError:
        return unescape_py(data)  # raises the FrameError that names the fault


def _crc32c_c(data: bytes | bytearray | memoryview) -> int:
    return cast("int", _c().crc32c(data))


def _escaped_size_c(data: bytes) -> int:
    return cast("int", _c().escaped_size(data))


def _encode_c(frame: Frame) -> bytes:
    return cast(
        "bytes",
        _c().encode(
            frame.version,
            int(frame.type),
            frame.flags,
            frame.session,
            frame.seq,
            frame.ack,
            frame.payload,
        ),
    )


def _decode_chunk_c(chunk: bytes, *, max_payload: int = MAX_PAYLOAD) -> Frame:
    try:
        fields = _c().decode(chunk, max_payload)
    except ValueError:
        return decode_chunk_py(chunk, max_payload=max_payload)  # raises the FrameError
    return Frame.unchecked(*fields)


#: Undo :func:`escape` on the bytes between two flags. Raises :class:`FrameError`
#: (reason "escape" or "aborted") for an escape byte before another one or at the end.
unescape = _unescape_c if SPEEDUPS else unescape_py
#: CRC-32C (Castagnoli): poly 0x1EDC6F41 (reflected 0x82F63B78), init 0xFFFFFFFF,
#: refin and refout true, xorout 0xFFFFFFFF; ``crc32c(b"123456789") == 0xE3069283``.
crc32c = _crc32c_c if SPEEDUPS else crc32c_py
#: ``len(escape(data))``
escaped_size = _escaped_size_c if SPEEDUPS else escaped_size_py
#: ``frame`` as it goes on the wire: flag, escaped body, flag.
encode = _encode_c if SPEEDUPS else encode_py
#: The frame in the bytes between two flags (XON and XOFF removed), for a payload
#: of at most ``max_payload`` bytes. Raises :class:`FrameError` whose ``reason``
#: is a :class:`BadReason` value.
decode_chunk = _decode_chunk_c if SPEEDUPS else decode_chunk_py


def session_id(initiator_isn: int, responder_isn: int) -> int:
    """The session id: CRC-32C of both ISNs (initiator's first, big-endian), 1 if that is 0."""
    return crc32c(struct.pack(">II", initiator_isn, responder_isn)) or 1


def unpack(body: bytes, *, max_payload: int = MAX_PAYLOAD) -> Frame:
    """The frame in an unescaped body (header, payload, CRC). Raises
    :class:`FrameError` whose ``reason`` is a :class:`BadReason` value."""
    size = len(body)
    if size < HEADER_SIZE + CRC_SIZE:
        raise FrameError(
            f"{size} byte(s) between flags, a frame has at least {HEADER_SIZE + CRC_SIZE}",
            reason=BadReason.TRUNCATED.value,
            data=body,
        )
    if size > HEADER_SIZE + max_payload + CRC_SIZE:
        raise FrameError(
            f"{size} bytes, more than a frame with a {max_payload}-byte payload",
            reason=BadReason.TOO_LONG.value,
            data=body,
        )
    expected = crc32c(body[:-CRC_SIZE])
    got = int.from_bytes(body[-CRC_SIZE:], "big")
    if expected != got:
        raise FrameError(
            f"CRC 0x{got:08x}, computed 0x{expected:08x}", reason=BadReason.CRC.value, data=body
        )
    version, ftype, flags, _reserved, session, seq, ack, length = HEADER.unpack_from(body)
    if version != VERSION:
        raise FrameError(
            f"protocol version {version}; this end speaks {VERSION}",
            reason=BadReason.VERSION.value,
            data=body,
        )
    actual = size - HEADER_SIZE - CRC_SIZE
    if length != actual:
        raise FrameError(
            f"the length field says {length} payload byte(s), the frame has {actual}",
            reason=BadReason.LENGTH.value,
            data=body,
        )
    return Frame.unchecked(
        ftype, session, seq, ack, bytes(body[HEADER_SIZE : HEADER_SIZE + length]), flags, version
    )


def decode(wire: bytes, *, max_payload: int = MAX_PAYLOAD) -> Frame:
    """One frame from its wire form (flags optional). Raises :class:`FrameError`."""
    inner = bytes(wire).translate(None, _FLOW_BYTES)
    if inner[:1] == b"\x7e":
        inner = inner[1:]
    if inner[-1:] == b"\x7e":
        inner = inner[:-1]
    if b"\x7e" in inner:
        raise FrameError(
            "more than one frame (a flag inside)", reason=BadReason.LENGTH.value, data=wire
        )
    return decode_chunk(inner, max_payload=max_payload)


# -- payloads of the transfer layer's acknowledgements -----------------------------------------

MAX_SACK_BLOCKS = 8
MAX_NAKS = 64


def encode_dack(window: int, blocks: Sequence[tuple[int, int]] = ()) -> bytes:
    """A DACK payload: the receiver's free window (u16), then up to 8 selective-ack
    blocks, each the first and one-past-the-last sequence number received (u32, u32)."""
    if not 0 <= window <= 0xFFFF:
        raise LocalProtocolError(f"DACK window must be 0..65535, not {window}")
    if len(blocks) > MAX_SACK_BLOCKS:
        raise LocalProtocolError(f"a DACK carries at most {MAX_SACK_BLOCKS} blocks")
    out = bytearray(window.to_bytes(2, "big"))
    for start, end in blocks:
        out += struct.pack(">II", start & _U32, end & _U32)
    return bytes(out)


def decode_dack(payload: bytes) -> tuple[int, tuple[tuple[int, int], ...]]:
    """(window, blocks) from a DACK payload. Raises :class:`FrameError`."""
    if len(payload) < 2 or (len(payload) - 2) % 8 or len(payload) > 2 + 8 * MAX_SACK_BLOCKS:
        raise FrameError(
            f"a DACK payload is 2 + 8n bytes (n <= {MAX_SACK_BLOCKS}), not {len(payload)}",
            reason=BadReason.LENGTH.value,
            data=payload,
        )
    window = int.from_bytes(payload[:2], "big")
    blocks = tuple(struct.iter_unpack(">II", payload[2:]))
    return window, tuple((int(a), int(b)) for a, b in blocks)


def encode_nak(seqs: Iterable[int]) -> bytes:
    """A NAK payload: the sequence numbers to send again now (u32 each, at most 64)."""
    values = list(seqs)
    if not 1 <= len(values) <= MAX_NAKS:
        raise LocalProtocolError(f"a NAK names 1..{MAX_NAKS} sequence numbers")
    return b"".join((v & _U32).to_bytes(4, "big") for v in values)


def decode_nak(payload: bytes) -> tuple[int, ...]:
    """The sequence numbers of a NAK payload. Raises :class:`FrameError`."""
    if not payload or len(payload) % 4 or len(payload) > 4 * MAX_NAKS:
        raise FrameError(
            f"a NAK payload is 4n bytes (1 <= n <= {MAX_NAKS}), not {len(payload)}",
            reason=BadReason.LENGTH.value,
            data=payload,
        )
    return tuple(int.from_bytes(payload[i : i + 4], "big") for i in range(0, len(payload), 4))


# -- the decoder ----------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class BadFrame:
    """Bytes that did not make a good frame. ``data`` holds them as received (escaped,
    without flags, XON/XOFF removed); a run longer than the decoder's bound comes in
    several BadFrames, so ``data`` is never longer than twice the largest frame."""

    reason: BadReason
    data: bytes
    detail: str = ""


@dataclasses.dataclass(slots=True)
class DecoderStats:
    """What a decoder has seen."""

    frames: int = 0
    bad: int = 0
    bad_bytes: int = 0
    flow_bytes: int = 0  #: raw XON/XOFF bytes discarded


class FrameDecoder:
    """Turns received bytes into :class:`Frame` and :class:`BadFrame` events.

    ``max_payload``: the largest payload accepted (at most :data:`MAX_PAYLOAD`);
    anything longer between two flags is reported as too long. The events do not
    depend on how the bytes were split between :meth:`receive_data` calls.
    """

    def __init__(self, *, max_payload: int = MAX_PAYLOAD) -> None:
        if isinstance(max_payload, bool) or not isinstance(max_payload, int):
            raise ConfigError(f"max_payload must be an int, not {max_payload!r}")
        if not 0 <= max_payload <= MAX_PAYLOAD:
            raise ConfigError(f"max_payload must be 0..{MAX_PAYLOAD}, not {max_payload}")
        self.max_payload = max_payload
        self._max_body = HEADER_SIZE + max_payload + CRC_SIZE
        #: the most bytes between two flags a good frame can have (all escaped)
        self.limit = 2 * self._max_body
        self._partial = bytearray()  #: the bytes after the last flag: a frame not yet complete
        self._synced = False  #: a flag has been seen since the start or reset()
        self._overflow = False  #: inside a run longer than ``limit``, already reported in part
        self._events: deque[Frame | BadFrame] = deque()
        self.stats = DecoderStats()

    @property
    def buffered(self) -> bytes:
        """Bytes of a frame not yet complete."""
        return bytes(self._partial)

    @property
    def awaiting(self) -> int:
        """How many more bytes, at least, the frame in progress needs (its closing
        flag included), by the length in its header; 0 when no frame is in
        progress, its header has not all arrived or is no frame's. Escapes only
        lengthen a frame, so a good frame never needs fewer: an adapter may wait
        for this many bytes before it looks again."""
        partial = self._partial
        if not self._synced or self._overflow or len(partial) < HEADER_SIZE:
            return 0
        head = bytes(partial[: 2 * HEADER_SIZE])  # the header, however it was escaped
        if head.endswith(b"\x7d"):
            head = head[:-1]  # half an escape: its byte is still to come
        try:
            header = unescape_py(head)
        except FrameError:
            return 0
        if len(header) < HEADER_SIZE:
            return 0
        version, *_, length = HEADER.unpack_from(header)
        if version != VERSION or length > self.max_payload:
            return 0
        return max(0, HEADER_SIZE + int(length) + CRC_SIZE + 1 - len(partial))

    def receive_data(self, data: bytes | bytearray | memoryview) -> None:
        """Bytes from the line, in any split. Never raises for their content."""
        raw = data if type(data) is bytes else bytes(data)
        if not raw:
            return
        if b"\x11" in raw or b"\x13" in raw:  # rare: frames escape them
            clean = raw.translate(None, _FLOW_BYTES)
            self.stats.flow_bytes += len(raw) - len(clean)
            raw = clean
        partial = self._partial
        if _FLAG_BYTE in raw:
            # every piece but the last ends at a flag; the first continues the partial frame
            pieces = raw.split(_FLAG_BYTE)
            if partial:
                pieces[0] = bytes(partial) + pieces[0]
                partial.clear()
            partial += pieces.pop()
            for chunk in pieces:
                self._chunk(chunk)
        else:
            partial += raw
        while len(partial) > self.limit:
            piece = bytes(partial[: self.limit])
            del partial[: self.limit]
            self._overflow_piece(piece)

    def next_event(self) -> Frame | BadFrame | None:
        """The next frame or bad frame, or None when more bytes are needed."""
        return self._events.popleft() if self._events else None

    def events(self) -> list[Frame | BadFrame]:
        """Take every event decoded so far."""
        out = list(self._events)
        self._events.clear()
        return out

    def reset(self) -> None:
        """Forget the partial frame (reported as interrupted): the line's settings
        changed, so what follows is a new stream."""
        rest = bytes(self._partial)
        self._partial.clear()
        if rest:
            self._bad(BadReason.INTERRUPTED, rest, "a partial frame when the settings changed")
        self._synced = False
        self._overflow = False

    # -- internals --------------------------------------------------------------------------

    def _overflow_piece(self, piece: bytes) -> None:
        if self._synced:
            self._bad(BadReason.TOO_LONG, piece, f"more than {self.limit} bytes without a flag")
        else:
            self._bad(BadReason.GARBAGE, piece, "bytes before the first flag")
        self._overflow = True

    def _chunk(self, chunk: bytes) -> None:
        if self._overflow:  # the end of an over-long run
            self._overflow = False
            if chunk:
                reason = BadReason.TOO_LONG if self._synced else BadReason.GARBAGE
                self._bad(reason, chunk, "the end of an over-long run")
            self._synced = True
            return
        if not self._synced:
            self._synced = True
            if chunk:
                self._bad(BadReason.GARBAGE, chunk, "bytes before the first flag")
            return
        if not chunk:
            return  # back-to-back flags: idle fill, or the gap between frames
        try:
            frame = decode_chunk(chunk, max_payload=self.max_payload)
        except FrameError as e:
            self._bad(BadReason(e.reason), chunk, str(e))
            return
        self.stats.frames += 1
        self._events.append(frame)

    def _bad(self, reason: BadReason, data: bytes, detail: str) -> None:
        self.stats.bad += 1
        self.stats.bad_bytes += len(data)
        self._events.append(BadFrame(reason, data, detail))
