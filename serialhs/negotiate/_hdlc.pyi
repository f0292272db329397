"""The C framing helper (serialhs/negotiate/_hdlc.c); frames.py holds the references."""

def encode(
    version: int,
    type: int,
    flags: int,
    session: int,
    seq: int,
    ack: int,
    payload: bytes | bytearray | memoryview,
    /,
) -> bytes:
    """A frame as it goes on the wire: flag, escaped header, payload and CRC-32, flag."""

def decode(
    chunk: bytes | bytearray | memoryview, max_payload: int, /
) -> tuple[int, int, int, int, bytes, int, int]:
    """(type, session, seq, ack, payload, flags, version) of the frame in the bytes
    between two flags; ValueError if they are not a good frame's."""

def escaped_size(data: bytes | bytearray | memoryview, /) -> int:
    """The length of ``data`` once escaped."""

def unescape(data: bytes | bytearray | memoryview, /) -> bytes:
    """Undo the byte stuffing between two flags; ValueError for an escape byte
    last or before another."""

def crc32c(data: bytes | bytearray | memoryview, /) -> int:
    """The CRC-32C of ``data`` (the processor's crc32 instruction where it has one)."""

def crc32c_portable(data: bytes | bytearray | memoryview, /) -> int:
    """The CRC-32C of ``data`` by tables, as on any processor."""
