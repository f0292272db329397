"""The SHS file messages (docs/protocol.md §18), sans I/O: their codec, and the
reassembly of messages from the transfer layer's :class:`~serialhs.negotiate.transfer.Data`.

A file goes as OFFER (size, SHA-256, name) → ACCEPT (offset) or REFUSE →
CHUNK (offset, data) ... → END → RESULT (status, text). The offset of ACCEPT is
where a resumed transfer starts: what the receiver already holds of this very
file (same size and SHA-256) from an earlier attempt.
"""

from __future__ import annotations

import dataclasses
import enum
import struct
from typing import TypeAlias

from serialhs.errors import LocalProtocolError, RemoteProtocolError

__all__ = [
    "CHUNK_MAX",
    "Accept",
    "Chunk",
    "End",
    "FileMessage",
    "MessageReader",
    "MessageType",
    "Offer",
    "Refuse",
    "Result",
    "Status",
    "chunk_size",
    "decode",
    "encode",
]

CHUNK_MAX = 65536  #: data bytes one CHUNK carries at most
_TEXT_MAX = 255
_U64 = (1 << 64) - 1


class MessageType(enum.IntEnum):
    OFFER = 0x01
    ACCEPT = 0x02
    REFUSE = 0x03
    CHUNK = 0x04
    END = 0x05
    RESULT = 0x06


class Status(enum.IntEnum):
    OK = 0
    CHECKSUM_MISMATCH = 1
    SIZE_MISMATCH = 2
    WRITE_ERROR = 3


@dataclasses.dataclass(frozen=True, slots=True)
class Offer:
    size: int
    sha256: bytes
    name: str


@dataclasses.dataclass(frozen=True, slots=True)
class Accept:
    offset: int


@dataclasses.dataclass(frozen=True, slots=True)
class Refuse:
    reason: str


@dataclasses.dataclass(frozen=True, slots=True)
class Chunk:
    offset: int
    data: bytes


@dataclasses.dataclass(frozen=True, slots=True)
class End:
    pass


@dataclasses.dataclass(frozen=True, slots=True)
class Result:
    status: int
    text: str

    @property
    def ok(self) -> bool:
        return self.status == Status.OK

    def describe(self) -> str:
        try:
            name = Status(self.status).name.lower().replace("_", " ")
        except ValueError:
            name = f"status {self.status}"
        return f"{name}: {self.text}" if self.text else name


FileMessage: TypeAlias = Offer | Accept | Refuse | Chunk | End | Result


def _text(value: str) -> bytes:
    raw = value.encode("utf-8")
    if len(raw) > _TEXT_MAX:
        raw = raw[:_TEXT_MAX].decode("utf-8", "ignore").encode("utf-8")
    return raw


def encode(message: FileMessage) -> bytes:
    """The message's bytes (type byte first)."""
    if isinstance(message, Offer):
        if len(message.sha256) != 32 or not 0 <= message.size <= _U64:
            raise LocalProtocolError("an OFFER needs a 32-byte SHA-256 and a size that fits u64")
        name = _text(message.name)
        return (
            struct.pack(">BQ", MessageType.OFFER, message.size)
            + message.sha256
            + struct.pack(">H", len(name))
            + name
        )
    if isinstance(message, Accept):
        return struct.pack(">BQ", MessageType.ACCEPT, message.offset)
    if isinstance(message, Refuse):
        return bytes([MessageType.REFUSE]) + _text(message.reason)
    if isinstance(message, Chunk):
        if not 1 <= len(message.data) <= CHUNK_MAX:
            raise LocalProtocolError(f"a CHUNK carries 1..{CHUNK_MAX} bytes")
        return struct.pack(">BQ", MessageType.CHUNK, message.offset) + message.data
    if isinstance(message, End):
        return bytes([MessageType.END])
    return struct.pack(">BB", MessageType.RESULT, message.status) + _text(message.text)


def decode(data: bytes) -> FileMessage:
    """A message from its bytes. Raises :class:`RemoteProtocolError` naming what is wrong."""
    if not data:
        raise RemoteProtocolError("an empty file message (it needs a type byte)")
    kind, body = data[0], data[1:]
    try:
        mtype = MessageType(kind)
    except ValueError:
        raise RemoteProtocolError(f"unknown file message type 0x{kind:02x}") from None
    try:
        if mtype is MessageType.OFFER:
            size = int.from_bytes(body[:8], "big")
            digest = body[8:40]
            (length,) = struct.unpack(">H", body[40:42])
            name = body[42:]
            if len(digest) != 32 or len(name) != length or length > _TEXT_MAX:
                raise ValueError("its name length does not match")
            return Offer(size, bytes(digest), name.decode("utf-8", "replace"))
        if mtype is MessageType.ACCEPT:
            (offset,) = struct.unpack(">Q", body)
            return Accept(offset)
        if mtype is MessageType.REFUSE:
            return Refuse(body.decode("utf-8", "replace"))
        if mtype is MessageType.CHUNK:
            (offset,) = struct.unpack(">Q", body[:8])
            chunk = body[8:]
            if not 1 <= len(chunk) <= CHUNK_MAX:
                raise ValueError(f"{len(chunk)} data bytes (1..{CHUNK_MAX})")
            return Chunk(offset, bytes(chunk))
        if mtype is MessageType.END:
            if body:
                raise ValueError("END has no body")
            return End()
        return Result(body[0], bytes(body[1:]).decode("utf-8", "replace"))
    except (struct.error, ValueError, IndexError) as e:
        raise RemoteProtocolError(
            f"a malformed {mtype.name} message ({len(data)} bytes): {e}"
        ) from None


def chunk_size(frame_size: int) -> int:
    """Data bytes per CHUNK so that each CHUNK message fills whole frames (9 bytes
    of CHUNK header, then data)."""
    frames = max(1, (CHUNK_MAX + 9) // frame_size)
    return min(CHUNK_MAX, frames * frame_size - 9) if frames * frame_size > 9 else 1


class MessageReader:
    """Joins :class:`~serialhs.negotiate.transfer.Data` pieces into messages,
    holding at most ``limit`` bytes of an unfinished one."""

    def __init__(self, limit: int = CHUNK_MAX + 64) -> None:
        self._limit = limit
        self._buffer = bytearray()

    def feed(self, data: bytes, eom: bool) -> bytes | None:
        """The whole message when ``eom``; None before. Raises RemoteProtocolError
        when a message grows past the limit (what was held is discarded)."""
        if len(self._buffer) + len(data) > self._limit:
            held = len(self._buffer) + len(data)
            self._buffer.clear()
            raise RemoteProtocolError(
                f"a file message of more than {self._limit} bytes ({held} so far, no end)"
            )
        self._buffer += data
        if not eom:
            return None
        message = bytes(self._buffer)
        self._buffer.clear()
        return message
