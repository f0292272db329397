"""The C receive-path helper (serialhs/negotiate/_hdlc.c)."""

def unescape(data: bytes | bytearray | memoryview, /) -> bytes:
    """Undo the byte stuffing between two flags; ValueError for an escape byte
    last or before another."""
