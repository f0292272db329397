"""XMODEM, XMODEM-CRC and XMODEM-1K: sans-I/O sender and receiver cores.

Ward Christensen's protocol (1977) and its two common extensions, as lrzsz's
``sx`` and ``rx`` speak them::

    sender = XmodemSender(total=len(data), now=clock(), protocol="xmodem-1k")
    sender.feed(data)                       # or feed ``sender.wanted`` bytes at a time
    sender.receive_data(data, now)          # bytes from the receiver
    sender.handle_timer(now)                # when now >= sender.get_timer()
    for event in sender.events(): ...       # Send, Progress, Retry, Done

    receiver = XmodemReceiver(now=clock(), protocol="xmodem-crc")
    ...                                     # Send, Data, Progress, Retry, Done

The cores never read a clock, sleep or touch a port; :mod:`serialhs.negotiate.xmodemport`
runs them on a :class:`~serialhs.driver.port.Port`.

The wire format
---------------
A block is ``header, n, 255 - n, payload, check``: header SOH (0x01) for 128
payload bytes or STX (0x02) for 1024 (XMODEM-1K); ``n`` counts from 1 and wraps
from 255 to 0; the payload of the last block is padded with SUB (0x1A). The check
is one byte, the arithmetic sum of the payload modulo 256 (classic XMODEM), or
two, the CRC-16/XMODEM of the payload, high byte first (:func:`crc16_xmodem`:
polynomial 0x1021, initial value 0, no reflection, no final XOR; check value
0x31C3 for ``b"123456789"``).

The receiver starts the transfer: NAK asks for checksums, ``C`` for CRCs. It
answers each block with ACK (take the next) or NAK (send it again). The sender
ends with EOT, which the receiver acknowledges. CAN CAN (two in a row) from
either side cancels.

Block sizes (the sender's ``protocol``)::

    xmodem, xmodem-crc   128-byte blocks
    xmodem-1k            1024-byte blocks; a tail of at most 896 bytes (7 x 128)
                         goes in 128-byte blocks, as lrzsz's ``sx -k`` does, so
                         that padding is under 128 bytes; a tail of 897..1023
                         bytes goes in one padded 1024-byte block

The sender follows the check the receiver asks for (NAK: checksum, ``C``: CRC),
as every XMODEM sender does, and switches to CRC if a ``C`` comes while its
first block is unacknowledged (as ``sx`` does). The receiver's ``protocol`` says
what it asks for: ``xmodem`` sends NAK; ``xmodem-crc`` and ``xmodem-1k`` send
``C`` (every ``start_interval`` seconds) and fall back to NAK after ``crc_tries``
unanswered requests, the classic behaviour. Until its first block is accepted
the receiver also accepts a block in the other check, so a sender that answered
a late ``C`` after the fall-back still gets through.

Padding and the true length
---------------------------
XMODEM carries no file length: the receiver gets whole blocks, the last one
padded with SUB. :func:`padded_length` says how long the received data is. The
receiver keeps the padding by default (lrzsz's ``rx`` does in binary mode, its
default; ``rx -a``, text mode, drops CRs and everything from the first SUB).
``strip_padding=True`` drops the trailing SUBs of the last block (and so any SUBs
that truly ended the data); ``length=`` gives the exact length when the caller
knows it from elsewhere (the sender's side, a manifest): the output is cut to
it, and an EOT before that many bytes, or a block past them, is an error.

Robustness
----------
Every wait has a timer; every error counts against ``retries`` (10, as XMODEM
prescribes); so a transfer always ends: complete, or with a :class:`Done` that
names the :class:`Failure` and the reason. On top of the classic rules the cores
keep a one-response-per-transmission lockstep, which XMODEM needs because ACK and
NAK carry no block number:

- bytes that arrived together with the byte a core has just answered predate the
  answer and are discarded (lrzsz purges its input after each ACK for the same
  reason);
- the receiver purges a damaged block until the line is quiet before it NAKs;
- the receiver answers a duplicate of the block it has just acknowledged only if
  it could be a legitimate retransmission (it sent a NAK since, or the copy came
  at least ``dup_window`` seconds later); a copy sent in answer to a stale request
  gets no answer, so the sender does not get two ACKs for one block;
- an EOT counts only when the line stays quiet after it (as ``rx`` checks), and an
  EOT after a damaged copy of the block the receiver is waiting for is a protocol
  error, not the end of the file;
- an ACK that follows line noise in the same read does not count for the sender
  (noise makes ACKs of its own; a genuine one so lost costs one timeout).

What XMODEM cannot do, these cores cannot either: a checksum misses some
multi-bit errors (CRC-16 finds every error of up to 3 bits and every burst of
up to 16), and noise that forms a lone, well-timed ACK or EOT can end a
transfer early. Use CRC, and give the receiver the ``length`` when it is known.

lrzsz on a pty
--------------
lrzsz's ``rx`` flushes its input (TCIFLUSH) right after it writes each C, NAK
and ACK; on a pty, where an answer arrives within microseconds, a block or EOT
sent at once can be flushed with it, and ``rx`` then waits 5 s (13 s for the
first block) before it asks again. The sender therefore pauses ``settle``
seconds (1 ms) before each answer; on a real or paced line the answer comes later
anyway, and the pause costs about 1 % of the time with 1 K blocks at 115200 baud
(9 % with 128-byte ones). It also resends EOT when no ACK comes within
``eot_timeout``, as XMODEM prescribes. As it exits, ``rx`` drains and flushes its
output (TCIOFLUSH); a pty does not wait for the far side to read, so its last
ACK, the one for EOT, is often lost. The sender then ends with
``Failure.UNCONFIRMED``: every block was acknowledged, only the end was not.

The states and the moves between them are the tables :data:`SENDER_TRANSITIONS`
and :data:`RECEIVER_TRANSITIONS`.
"""

from __future__ import annotations

import binascii
import dataclasses
import enum
import math
from collections.abc import Mapping
from typing import Any, TypeAlias

from serialhs.errors import ConfigError, SerialHSError

__all__ = [
    "ACK",
    "BLOCK_1K",
    "BLOCK_128",
    "CAN",
    "CANCEL",
    "CRC_REQUEST",
    "EOT",
    "NAK",
    "RECEIVER_TRANSITIONS",
    "SENDER_TRANSITIONS",
    "SHORT_TAIL",
    "SOH",
    "STX",
    "SUB",
    "Block",
    "BlockError",
    "Check",
    "Data",
    "Done",
    "Failure",
    "Progress",
    "Protocol",
    "ReceiverState",
    "Retry",
    "Send",
    "SenderState",
    "Stats",
    "XmodemError",
    "XmodemEvent",
    "XmodemReceiver",
    "XmodemSender",
    "XmodemStateError",
    "block_sizes",
    "checksum8",
    "crc16_xmodem",
    "decode_block",
    "encode_block",
    "padded_length",
]

SOH = 0x01  #: header of a 128-byte block
STX = 0x02  #: header of a 1024-byte block (XMODEM-1K)
EOT = 0x04  #: end of transmission
ACK = 0x06  #: block received, send the next
NAK = 0x15  #: block damaged, send it again; also "start, with checksums"
CAN = 0x18  #: two in a row cancel the transfer
SUB = 0x1A  #: the padding byte (CP/M's end-of-file, ^Z)
CRC_REQUEST = 0x43  #: ``C``: "start, with CRCs"

BLOCK_128 = 128
BLOCK_1K = 1024
#: XMODEM-1K: a tail of at most this many bytes goes in 128-byte blocks (sx -k).
SHORT_TAIL = 896
#: What a core sends to cancel: eight CANs, as lrzsz sends (any two cancel).
CANCEL = bytes([CAN]) * 8

_NAMES = {
    SOH: "SOH",
    STX: "STX",
    EOT: "EOT",
    ACK: "ACK",
    NAK: "NAK",
    CAN: "CAN",
    CRC_REQUEST: "'C'",
}


def _name(byte: int) -> str:
    return _NAMES.get(byte, f"0x{byte:02x}")


# --- errors -------------------------------------------------------------------------


class XmodemError(SerialHSError):
    """An XMODEM transfer failed. ``failure`` says how, ``reason`` in words."""

    def __init__(self, reason: str, *, failure: Failure | None = None, port: str | None = None):
        self.reason = reason
        self.failure = failure
        self.port = port
        super().__init__(f"{port}: {reason}" if port else reason)


class XmodemStateError(SerialHSError):
    """A core was asked for a move its state table does not allow (a bug in a
    caller or in the core). Names the state and the trigger."""


class BlockError(ValueError):
    """A block failed to decode; the message says which part was wrong."""


# --- vocabulary ---------------------------------------------------------------------


class Protocol(enum.Enum):
    """Which XMODEM: the sender's block size, the receiver's start request."""

    XMODEM = "xmodem"
    XMODEM_CRC = "xmodem-crc"
    XMODEM_1K = "xmodem-1k"

    @classmethod
    def parse(cls, value: Protocol | str) -> Protocol:
        if isinstance(value, Protocol):
            return value
        try:
            return cls(str(value).lower())
        except ValueError:
            names = ", ".join(p.value for p in cls)
            raise ConfigError(f"unknown XMODEM protocol {value!r}; use one of {names}") from None


class Check(enum.Enum):
    """How a block's payload is checked."""

    CHECKSUM = "checksum"  # one byte: sum of the payload modulo 256
    CRC16 = "crc16"  # two bytes: CRC-16/XMODEM, high byte first

    @property
    def size(self) -> int:
        return 1 if self is Check.CHECKSUM else 2

    @property
    def request(self) -> int:
        """The byte a receiver sends to ask for blocks with this check."""
        return NAK if self is Check.CHECKSUM else CRC_REQUEST


class Failure(enum.Enum):
    """Why a transfer failed."""

    TIMEOUT = "timeout"  # the peer did not start, or went silent
    RETRIES = "too many retries"  # one block (or EOT) failed ``retries`` + 1 times
    UNCONFIRMED = "end not confirmed"  # every block acknowledged, EOT never answered
    CANCELLED = "cancelled by the peer"  # CAN CAN
    SEQUENCE = "sequence error"  # a block number out of order: the two ends lost step
    PROTOCOL = "protocol error"  # an EOT too early, data past the known length
    ABORTED = "aborted"  # this side gave up (the caller asked, an overall deadline)
    LINK = "link failure"  # the port failed


# --- checks and blocks --------------------------------------------------------------


def crc16_xmodem(data: bytes | bytearray | memoryview, crc: int = 0) -> int:
    """CRC-16/XMODEM of ``data``: polynomial 0x1021, initial value 0x0000, input and
    output not reflected, no final XOR. ``crc16_xmodem(b"123456789") == 0x31C3``.

    Pass a previous result as ``crc`` to continue over more data.
    """
    return binascii.crc_hqx(data, crc)


def checksum8(data: bytes | bytearray | memoryview) -> int:
    """Classic XMODEM's check: the sum of the bytes modulo 256."""
    return sum(data) & 0xFF


def _trailer(payload: bytes | bytearray | memoryview, check: Check) -> bytes:
    if check is Check.CRC16:
        return crc16_xmodem(payload).to_bytes(2, "big")
    return bytes([checksum8(payload)])


def encode_block(number: int, payload: bytes, check: Check) -> bytes:
    """One block on the wire. ``payload`` is 128 or 1024 bytes (pad it with SUB);
    ``number`` is the block's count from 1 (only its low byte is sent)."""
    if len(payload) not in (BLOCK_128, BLOCK_1K):
        raise ConfigError(
            f"an XMODEM payload is 128 or 1024 bytes, not {len(payload)}; pad it with SUB"
        )
    if number < 0:
        raise ConfigError(f"a block number counts from 0, not {number}")
    n = number & 0xFF
    header = SOH if len(payload) == BLOCK_128 else STX
    return bytes([header, n, 0xFF - n]) + payload + _trailer(payload, check)


@dataclasses.dataclass(frozen=True, slots=True)
class Block:
    """A decoded block: its number on the wire (0..255) and its payload."""

    number: int
    payload: bytes


def decode_block(frame: bytes | bytearray, check: Check) -> Block:
    """Decode one whole block; BlockError says what is wrong with a bad one."""
    if not frame:
        raise BlockError("empty frame")
    header = frame[0]
    if header not in (SOH, STX):
        raise BlockError(f"header {_name(header)} is neither SOH nor STX")
    size = BLOCK_128 if header == SOH else BLOCK_1K
    want = 3 + size + check.size
    if len(frame) != want:
        raise BlockError(
            f"a {_name(header)} block with a {check.value} is {want} bytes, not {len(frame)}"
        )
    number, complement = frame[1], frame[2]
    if number + complement != 0xFF:
        raise BlockError(f"block number garbled: {number} and complement {complement}")
    payload = bytes(frame[3 : 3 + size])
    if bytes(frame[3 + size :]) != _trailer(payload, check):
        raise BlockError(f"{check.value} mismatch in block {number}")
    return Block(number, payload)


def block_sizes(total: int, protocol: Protocol | str) -> list[int]:
    """The payload size of each block the sender sends for ``total`` bytes."""
    proto = Protocol.parse(protocol)
    sizes = []
    offset = 0
    while offset < total:
        size = _block_size(total - offset, proto)
        sizes.append(size)
        offset += size
    return sizes


def padded_length(total: int, protocol: Protocol | str) -> int:
    """How many bytes a receiver gets for ``total`` bytes sent: whole blocks."""
    return sum(block_sizes(total, protocol))


def _block_size(remaining: int, protocol: Protocol) -> int:
    if protocol is Protocol.XMODEM_1K and remaining > SHORT_TAIL:
        return BLOCK_1K
    return BLOCK_128


# --- events -------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class Send:
    """Bytes to write to the line."""

    data: bytes


@dataclasses.dataclass(frozen=True, slots=True)
class Data:
    """Received data for the output, at ``offset`` (offsets follow each other)."""

    offset: int
    data: bytes


@dataclasses.dataclass(frozen=True, slots=True)
class Progress:
    """``done`` bytes confirmed so far (sender: acknowledged, receiver: received) of
    ``total`` (None when unknown, as for a receiver not told the length)."""

    done: int
    total: int | None


@dataclasses.dataclass(frozen=True, slots=True)
class Retry:
    """Block ``block`` (0 for EOT) failed; ``count`` failures so far for it."""

    block: int
    reason: str
    count: int


@dataclasses.dataclass(frozen=True, slots=True)
class Done:
    """The transfer ended: ``ok``, or ``failure`` and ``reason`` say why not."""

    ok: bool
    reason: str
    failure: Failure | None = None


XmodemEvent: TypeAlias = Send | Data | Progress | Retry | Done


@dataclasses.dataclass(frozen=True, slots=True)
class Stats:
    """Counters of one transfer."""

    blocks: int  #: blocks acknowledged (sender) or accepted (receiver)
    bytes: int  #: data bytes acknowledged (sender) or delivered (receiver)
    retries: int  #: retransmissions (sender) or NAKs for damaged/missing blocks (receiver)
    timeouts: int  #: waits that ran out
    check: Check | None  #: the check in use (None before the start)


# --- state tables -------------------------------------------------------------------


class SenderState(enum.Enum):
    STARTING = "starting"  # waiting for the receiver's NAK or C
    PAUSE = "pause"  # waiting ``settle`` seconds before block 1, EOT or an answer to NAK
    BLOCK = "block"  # a block is out, waiting for ACK/NAK
    EOT = "eot"  # EOT is out, waiting for ACK
    DONE = "done"


class ReceiverState(enum.Enum):
    START = "start"  # sending C or NAK, waiting for the first header
    HEADER = "header"  # waiting for the next header or EOT
    BLOCK = "block"  # inside a block
    EOT = "eot"  # an EOT came; waiting for the line to stay quiet
    PURGE = "purge"  # discarding a damaged block until the line is quiet
    DONE = "done"


#: (state, trigger) -> next state. Anything else raises XmodemStateError.
SENDER_TRANSITIONS: dict[tuple[SenderState, str], SenderState] = {
    (SenderState.STARTING, "pause"): SenderState.PAUSE,  # the receiver asked
    (SenderState.STARTING, "send_block"): SenderState.BLOCK,  # (settle 0)
    (SenderState.STARTING, "send_eot"): SenderState.EOT,  # nothing to send (settle 0)
    (SenderState.STARTING, "fail"): SenderState.DONE,
    (SenderState.PAUSE, "send_block"): SenderState.BLOCK,
    (SenderState.PAUSE, "send_eot"): SenderState.EOT,
    (SenderState.PAUSE, "fail"): SenderState.DONE,
    (SenderState.BLOCK, "send_block"): SenderState.BLOCK,  # again after a timeout (settle 0)
    (SenderState.BLOCK, "pause"): SenderState.PAUSE,  # ACK or NAK: pause, then send
    (SenderState.BLOCK, "send_eot"): SenderState.EOT,  # (settle 0)
    (SenderState.BLOCK, "fail"): SenderState.DONE,
    (SenderState.EOT, "send_eot"): SenderState.EOT,  # again, after a timeout
    (SenderState.EOT, "pause"): SenderState.PAUSE,  # NAK: again, after a pause
    (SenderState.EOT, "acked"): SenderState.DONE,
    (SenderState.EOT, "fail"): SenderState.DONE,
}

RECEIVER_TRANSITIONS: dict[tuple[ReceiverState, str], ReceiverState] = {
    (ReceiverState.START, "request"): ReceiverState.START,  # C or NAK again
    (ReceiverState.START, "noise"): ReceiverState.START,  # ignored before a sender shows
    (ReceiverState.START, "header"): ReceiverState.BLOCK,
    (ReceiverState.START, "eot"): ReceiverState.EOT,  # an empty transfer
    (ReceiverState.START, "fail"): ReceiverState.DONE,
    (ReceiverState.HEADER, "header"): ReceiverState.BLOCK,
    (ReceiverState.HEADER, "eot"): ReceiverState.EOT,
    (ReceiverState.HEADER, "noise"): ReceiverState.PURGE,
    (ReceiverState.HEADER, "timeout"): ReceiverState.HEADER,  # NAK sent
    (ReceiverState.HEADER, "fail"): ReceiverState.DONE,
    (ReceiverState.BLOCK, "accept"): ReceiverState.HEADER,  # ACK sent
    (ReceiverState.BLOCK, "duplicate"): ReceiverState.HEADER,
    (ReceiverState.BLOCK, "damaged"): ReceiverState.PURGE,
    (ReceiverState.BLOCK, "timeout"): ReceiverState.HEADER,  # incomplete; NAK sent
    (ReceiverState.BLOCK, "fail"): ReceiverState.DONE,
    (ReceiverState.EOT, "noise"): ReceiverState.PURGE,  # it was not an EOT
    (ReceiverState.EOT, "end"): ReceiverState.DONE,  # ACK sent
    (ReceiverState.EOT, "fail"): ReceiverState.DONE,
    (ReceiverState.PURGE, "noise"): ReceiverState.PURGE,
    (ReceiverState.PURGE, "quiet"): ReceiverState.HEADER,  # NAK sent
    (ReceiverState.PURGE, "fail"): ReceiverState.DONE,
}


def _positive(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < math.inf:
        raise ConfigError(f"{name} must be a positive number of seconds, not {value!r}")
    return float(value)


def _count(name: str, value: int, low: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ConfigError(f"{name} must be an integer >= {low}, not {value!r}")
    return value


class _Core:
    """What both cores share: events, the timer, the state table."""

    _table: Mapping[tuple[Any, str], Any]
    _who: str
    state: Any

    def __init__(self) -> None:
        self._events: list[XmodemEvent] = []
        self._deadline: float | None = None
        self._check: Check | None = None
        self._blocks = 0
        self._bytes = 0
        self._retries = 0
        self._timeouts = 0
        self.result: Done | None = None

    @property
    def done(self) -> bool:
        return self.result is not None

    @property
    def stats(self) -> Stats:
        return Stats(self._blocks, self._bytes, self._retries, self._timeouts, self._check)

    def events(self) -> list[XmodemEvent]:
        """Take the events produced so far, in order."""
        taken, self._events = self._events, []
        return taken

    def get_timer(self) -> float | None:
        """When ``handle_timer`` must be called next (None once done)."""
        return self._deadline

    def abort(self, now: float, reason: str = "the transfer was aborted") -> None:
        """Give up: send CAN CAN and end with Failure.ABORTED."""
        if self.result is None:
            self._events.append(Send(CANCEL))
            self._fail(Failure.ABORTED, reason)

    def connection_lost(self, now: float, reason: str = "the connection was lost") -> None:
        """The port failed: end with Failure.LINK (nothing more can be sent)."""
        if self.result is None:
            self._fail(Failure.LINK, reason)

    def _fail(self, failure: Failure, reason: str) -> None:
        raise NotImplementedError

    def _goto(self, trigger: str) -> None:
        self.state = self._move(self.state, trigger)

    def _move(self, state: Any, trigger: str) -> Any:
        target = self._table.get((state, trigger))
        if target is None:
            raise XmodemStateError(
                f"XMODEM {self._who}: no move from state {state.value!r} on {trigger!r}"
            )
        return target

    def _finish(self, ok: bool, reason: str, failure: Failure | None) -> None:
        self._deadline = None
        self.result = Done(ok, reason, failure)
        self._events.append(self.result)


# --- the sender ---------------------------------------------------------------------


class XmodemSender(_Core):
    """Sends ``total`` bytes, sans I/O.

    - ``feed(data)``: the data to send, all at once or ``wanted`` bytes at a time
      (the core then holds at most two 1 K blocks).
    - ``receive_data(data, now)``: bytes from the receiver.
    - ``get_timer()`` / ``handle_timer(now)``: when the sender next needs attention.
    - ``abort(now)`` / ``connection_lost(now)``: give up.
    - ``events()``: Send, Progress, Retry, Done.

    Timeouts: ``start_timeout`` for the receiver's first NAK or ``C`` (lrzsz's sx
    waits 60 s); ``ack_timeout`` for the answer to a block, plus the block's airtime
    (``char_time`` seconds per byte; 0 when unknown); ``eot_timeout`` for the answer
    to EOT. A block goes out at most ``retries`` + 1 times, EOT ``eot_retries`` + 1
    times. ``settle``: the pause before each answer to the receiver (see the module
    notes).
    """

    _table = SENDER_TRANSITIONS
    _who = "sender"

    def __init__(
        self,
        *,
        total: int,
        now: float,
        protocol: Protocol | str = Protocol.XMODEM_CRC,
        start_timeout: float = 60.0,
        ack_timeout: float = 10.0,
        eot_timeout: float = 2.0,
        retries: int = 10,
        eot_retries: int = 10,
        char_time: float = 0.0,
        settle: float = 0.001,
    ) -> None:
        super().__init__()
        self.total = _count("total", total)
        self.protocol = Protocol.parse(protocol)
        self.start_timeout = _positive("start_timeout", start_timeout)
        self.ack_timeout = _positive("ack_timeout", ack_timeout)
        self.eot_timeout = _positive("eot_timeout", eot_timeout)
        self.retries = _count("retries", retries)
        self.eot_retries = _count("eot_retries", eot_retries)
        if (
            isinstance(char_time, bool)
            or not isinstance(char_time, int | float)
            or not (0 <= char_time < 1)
        ):
            raise ConfigError(f"char_time must be seconds per byte in [0, 1), not {char_time!r}")
        self.char_time = float(char_time)
        if isinstance(settle, bool) or not isinstance(settle, int | float) or not 0 <= settle <= 10:
            raise ConfigError(f"settle must be seconds in [0, 10], not {settle!r}")
        self.settle = float(settle)
        self.state = SenderState.STARTING
        self._buffer = bytearray()  # fed, not yet acknowledged, from self._offset on
        self._fed = 0
        self._offset = 0  # data offset of the block that is out
        self._number = 1  # its number
        self._frame = b""  # the block (or EOT) that is out
        self._size = 0  # its payload size
        self._tries = 0  # transmissions of it so far
        self._cans = 0
        self._resend_after_pause = False
        self._eot_heard = False  # anything came back since the first EOT
        self._deadline = now + self.start_timeout

    # -- data -------------------------------------------------------------------------

    @property
    def wanted(self) -> int:
        """How many more bytes to ``feed`` now to keep the next two blocks ready."""
        return min(self.total - self._fed, max(0, 2 * BLOCK_1K - len(self._buffer)))

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        """Data to send, in order. Altogether exactly ``total`` bytes."""
        if len(data) > self.total - self._fed:
            raise ConfigError(
                f"XMODEM sender: {len(data)} more byte(s) fed, but only "
                f"{self.total - self._fed} of the {self.total} announced are missing"
            )
        self._buffer += data
        self._fed += len(data)

    # -- input ------------------------------------------------------------------------

    def receive_data(self, data: bytes, now: float) -> None:
        """Bytes from the receiver. Timers are not fired here: call ``handle_timer``.

        An ACK that follows line noise in the same read does not count: noise makes
        ACKs of its own, and taking one would skip a block. A genuine ACK so lost
        costs a timeout; the block goes again and the receiver acknowledges the copy.
        """
        noisy = False
        for byte in data:
            if self.result is not None:
                return
            if self.state is SenderState.EOT:
                self._eot_heard = True
            if byte == CAN:
                self._cans += 1
                if self._cans >= 2:
                    self._fail(Failure.CANCELLED, "the receiver cancelled the transfer (CAN CAN)")
                continue
            self._cans = 0
            if byte == ACK and noisy:
                continue
            if self._answer(byte, now):
                return  # the rest came before what was just sent: stale
            noisy = True

    def handle_timer(self, now: float) -> None:
        """Give the sender attention at ``now``; does nothing before ``get_timer()``."""
        if self._deadline is None or now < self._deadline:
            return
        if self.state is SenderState.STARTING:
            self._timeouts += 1
            self._fail(
                Failure.TIMEOUT,
                f"the receiver did not ask to start (NAK or 'C') within {self.start_timeout:g} s",
            )
            return
        if self.state is SenderState.PAUSE:
            if self._resend_after_pause:
                self._resend_after_pause = False
                self._resend(now)
            else:
                self._next(now, settled=True)
            return
        self._timeouts += 1
        self._again("timeout", now)

    # -- machinery --------------------------------------------------------------------

    def _fail(self, failure: Failure, reason: str) -> None:
        self._goto("fail")
        self._finish(False, reason, failure)

    def _answer(self, byte: int, now: float) -> bool:
        """Act on one byte; True when something was sent in answer."""
        if self.state is SenderState.STARTING:
            if byte not in (NAK, CRC_REQUEST):
                return False  # line noise before the start
            self._check = Check.CRC16 if byte == CRC_REQUEST else Check.CHECKSUM
            self._next(now)
            return True
        if self.state is SenderState.PAUSE:
            return False  # requests repeated while pausing are stale
        if self.state is SenderState.BLOCK:
            if byte == ACK:
                self._blocks += 1
                self._offset += self._size
                del self._buffer[: self._size]
                self._bytes = min(self._offset, self.total)
                self._number += 1
                self._events.append(Progress(self._bytes, self.total))
                self._next(now)
                return True
            if byte == NAK:
                self._again("NAK", now)
                return True
            if byte == CRC_REQUEST and self._blocks == 0:
                # The receiver repeats its start request: the first block did not
                # arrive intact. sx treats it so, and switches to CRC if it can.
                if self._check is Check.CHECKSUM:
                    self._check = Check.CRC16
                    self._frame = self._frame[:-1] + _trailer(self._frame[3:-1], Check.CRC16)
                self._again("'C'", now)
                return True
            return False
        if self.state is SenderState.EOT:
            if byte == ACK:
                self._goto("acked")
                self._finish(
                    True,
                    f"sent {self.total} byte(s) in {self._blocks} block(s)"
                    f" with {self._check.value if self._check else 'no check'},"
                    f" {self._retries} retransmission(s)",
                    None,
                )
                return True
            if byte == NAK:
                self._again("NAK", now)
                return True
        return False

    def _next(self, now: float, *, settled: bool = False) -> None:
        """Send the next block, or EOT when everything is acknowledged, after a pause
        of ``settle`` seconds (see the module notes)."""
        remaining = self.total - self._offset
        if not settled and self.settle > 0:
            self._goto("pause")
            self._deadline = now + self.settle
            return
        if remaining <= 0:
            self._goto("send_eot")
            self._frame, self._size, self._tries = bytes([EOT]), 0, 0
            self._transmit(now, self.eot_timeout)
            return
        size = _block_size(remaining, self.protocol)
        take = min(size, remaining)
        if len(self._buffer) < take:
            raise ConfigError(
                f"XMODEM sender: block {self._number} needs bytes {self._offset}.."
                f"{self._offset + take} but only {self._offset + len(self._buffer)} were fed; "
                "feed `wanted` bytes before handing the sender data or time"
            )
        payload = bytes(self._buffer[:take]) + bytes([SUB]) * (size - take)
        assert self._check is not None
        self._goto("send_block")
        self._frame, self._size, self._tries = (
            encode_block(self._number, payload, self._check),
            take,
            0,
        )
        self._transmit(now, self.ack_timeout)

    def _again(self, why: str, now: float) -> None:
        """Send the block (or EOT) that is out once more, if retries allow. An answer
        to NAK or C waits ``settle`` seconds first, as every answer does."""
        eot = self.state is SenderState.EOT
        if self._tries > (self.eot_retries if eot else self.retries):
            if eot and not self._eot_heard:
                # No CAN: the data is all acknowledged, and a receiver that is about
                # to finish would take CAN for the end of its transfer.
                self._fail(
                    Failure.UNCONFIRMED,
                    f"all {self.total} byte(s) were acknowledged, but nothing answered "
                    f"{self._tries} EOT(s): the receiver may have finished without its last "
                    "ACK getting through (lrzsz's rx loses it on a pty, flushing its output "
                    "as it exits)",
                )
                return
            what = "EOT" if eot else f"block {self._number}"
            self._events.append(Send(CANCEL))
            self._fail(
                Failure.RETRIES,
                f"{what} was not acknowledged after {self._tries} transmission(s) (last: {why})",
            )
            return
        self._retries += 1
        self._events.append(Retry(0 if eot else self._number, why, self._tries))
        if why != "timeout" and self.settle > 0:
            self._resend_after_pause = True
            self._goto("pause")
            self._deadline = now + self.settle
            return
        self._resend(now)

    def _resend(self, now: float) -> None:
        if self._frame == bytes([EOT]):
            self._goto("send_eot")
            self._transmit(now, self.eot_timeout)
        else:
            self._goto("send_block")
            self._transmit(now, self.ack_timeout)

    def _transmit(self, now: float, timeout: float) -> None:
        self._tries += 1
        self._events.append(Send(self._frame))
        self._deadline = now + timeout + len(self._frame) * self.char_time


# --- the receiver -------------------------------------------------------------------


class XmodemReceiver(_Core):
    """Receives a transfer, sans I/O.

    - ``receive_data(data, now)``: bytes from the sender.
    - ``get_timer()`` / ``handle_timer(now)``: when the receiver next needs attention.
    - ``abort(now)`` / ``connection_lost(now)``: give up.
    - ``events()``: Send, Data, Progress, Retry, Done. The first Send (the start
      request) is ready as soon as the receiver is made.

    ``length``: the exact length, when known from outside the protocol; ``strip_padding``:
    drop the trailing SUBs of the last block. Timeouts: a start request every
    ``start_interval`` seconds for ``start_timeout`` seconds (``C`` first, NAK
    after ``crc_tries`` unanswered ones); ``block_timeout`` for the next header;
    ``char_timeout`` between the bytes of a block; ``purge_quiet`` of silence ends a
    purge, ``eot_quiet`` of silence confirms an EOT; ``dup_window``: see the module
    notes. A block may fail ``retries`` times; one more failure cancels.
    """

    _table = RECEIVER_TRANSITIONS
    _who = "receiver"

    def __init__(
        self,
        *,
        now: float,
        protocol: Protocol | str = Protocol.XMODEM_CRC,
        length: int | None = None,
        strip_padding: bool = False,
        start_interval: float = 3.0,
        start_timeout: float = 60.0,
        crc_tries: int = 3,
        block_timeout: float = 10.0,
        char_timeout: float = 1.0,
        purge_quiet: float = 0.5,
        eot_quiet: float = 0.2,
        dup_window: float = 1.0,
        retries: int = 10,
    ) -> None:
        super().__init__()
        self.protocol = Protocol.parse(protocol)
        self.length = None if length is None else _count("length", length)
        self.strip_padding = bool(strip_padding)
        self.start_interval = _positive("start_interval", start_interval)
        self.start_timeout = _positive("start_timeout", start_timeout)
        self.crc_tries = _count("crc_tries", crc_tries, 1)
        self.block_timeout = _positive("block_timeout", block_timeout)
        self.char_timeout = _positive("char_timeout", char_timeout)
        self.purge_quiet = _positive("purge_quiet", purge_quiet)
        self.eot_quiet = _positive("eot_quiet", eot_quiet)
        self.dup_window = _positive("dup_window", dup_window)
        self.retries = _count("retries", retries)
        self.state = ReceiverState.START
        self._check = Check.CHECKSUM if self.protocol is Protocol.XMODEM else Check.CRC16
        # A plain XMODEM receiver never asked for CRCs: its check is settled.
        self._locked = self.protocol is Protocol.XMODEM
        self._expected = 1  # the next block's count (its wire number is the low byte)
        self._frame = bytearray()
        self._size = 0  # payload size of the frame being read
        self._frame_at = now  # when its header arrived
        self._received = 0  # payload bytes accepted (padding included)
        self._delivered = 0  # bytes handed out as Data
        self._held = bytearray()  # trailing SUBs held back (strip_padding)
        self._errors = 0  # failures of the block now expected
        self._cans = 0
        self._requests = 0
        self._start_deadline = now + self.start_timeout
        self._acked_at = -math.inf
        self._nak_since_ack = False
        self._damaged_expected = False  # a damaged copy of the expected block came
        self._purge_until = 0.0
        self._request(now)

    # -- input ------------------------------------------------------------------------

    def receive_data(self, data: bytes, now: float) -> None:
        """Bytes from the sender. Timers are not fired here: call ``handle_timer``.

        After a successful end the receiver still answers a repeated EOT with ACK
        (its first ACK may have been lost), for as long as it is fed."""
        if self.result is not None:
            if self.result.ok and EOT in data:
                self._events.append(Send(bytes([ACK])))
            return
        pos = 0
        end = len(data)
        while pos < end and self.result is None:
            state = self.state
            if state is ReceiverState.PURGE:
                self._purge_more(now)
                return
            if state is ReceiverState.EOT:
                self._noise(now, "bytes right after EOT: it was line noise")
                continue
            if state is ReceiverState.BLOCK:
                need = self._need() - len(self._frame)
                take = min(need, end - pos)
                self._frame += data[pos : pos + take]
                pos += take
                if self._block_progress(now, final=False):
                    return  # answered: the rest of this read is stale
                continue
            byte = data[pos]
            pos += 1
            if byte == CAN:
                self._cans += 1
                if self._cans >= 2:
                    self._fail(Failure.CANCELLED, "the sender cancelled the transfer (CAN CAN)")
                continue
            self._cans = 0
            if byte in (SOH, STX):
                self._goto("header")
                self._frame = bytearray([byte])
                self._size = BLOCK_128 if byte == SOH else BLOCK_1K
                self._frame_at = now
                self._deadline = now + self.char_timeout
            elif byte == EOT and pos == end:
                self._goto("eot")
                self._deadline = now + self.eot_quiet
            elif state is ReceiverState.START:
                self._goto("noise")  # garbage before any sender: ignore it
            else:
                self._noise(now, f"{_name(byte)} where block {self._expected} should start")

    def handle_timer(self, now: float) -> None:
        """Give the receiver attention at ``now``; does nothing before ``get_timer()``."""
        if self._deadline is None or now < self._deadline:
            return
        state = self.state
        if state is ReceiverState.START:
            if now >= self._start_deadline:
                self._timeouts += 1
                self._fail(
                    Failure.TIMEOUT,
                    f"no sender answered within {self.start_timeout:g} s "
                    f"({self._requests} start request(s))",
                )
                return
            self._goto("request")
            self._request(now)
        elif state is ReceiverState.HEADER:
            self._timeouts += 1
            what = "EOT or block" if self._blocks else "block"
            self._error(
                now,
                f"timeout: no {what} {self._expected} within {self.block_timeout:g} s",
                quiet=True,
                trigger="timeout",
            )
        elif state is ReceiverState.BLOCK:
            if not self._block_progress(now, final=True):
                self._timeouts += 1
                self._error(
                    now,
                    f"block {self._expected} incomplete: {len(self._frame)} of "
                    f"{self._need()} byte(s), then {self.char_timeout:g} s of silence",
                    quiet=True,
                    trigger="timeout",
                    damaged=self._header_is_expected(),
                )
        elif state is ReceiverState.EOT:
            self._end(now)
        elif state is ReceiverState.PURGE:
            self._goto("quiet")
            self._nak(now)

    # -- machinery --------------------------------------------------------------------

    def _fail(self, failure: Failure, reason: str, *, cancel: bool = False) -> None:
        if cancel:
            self._events.append(Send(CANCEL))
        self._release_held()  # whatever arrived is handed out, padding or not
        self._goto("fail")
        self._finish(False, reason, failure)

    def _request(self, now: float) -> None:
        """Send a start request: C, or NAK once C went unanswered ``crc_tries`` times."""
        if not self._locked and self._check is Check.CRC16 and self._requests >= self.crc_tries:
            self._check = Check.CHECKSUM  # the classic fall-back
        self._requests += 1
        assert self._check is not None
        self._events.append(Send(bytes([self._check.request])))
        self._deadline = min(now + self.start_interval, self._start_deadline)

    def _nak(self, now: float) -> None:
        """Ask for the expected block again (before the first one: the start request)."""
        assert self._check is not None
        byte = NAK if self._blocks else self._check.request
        self._events.append(Send(bytes([byte])))
        self._nak_since_ack = True
        self._deadline = now + self.block_timeout

    def _need(self) -> int:
        """How many bytes the frame being read should have."""
        assert self._check is not None
        base = 3 + self._size
        if self._locked or self._check is Check.CRC16:
            return base + self._check.size
        return base + 2  # unsettled checksum: a CRC sender's frame is one byte longer

    def _header_is_expected(self) -> bool:
        f = self._frame
        return len(f) >= 3 and f[1] + f[2] == 0xFF and f[1] == self._expected & 0xFF

    def _block_progress(self, now: float, *, final: bool) -> bool:
        """Decide about the frame being read. ``final``: the line went quiet. True
        when the frame was answered or the transfer ended; False to keep reading
        (or, with ``final``, when the frame is incomplete)."""
        assert self._check is not None
        frame = self._frame
        base = 3 + self._size
        if len(frame) >= 3 and frame[1] + frame[2] != 0xFF:
            self._error(
                now,
                f"block number garbled ({frame[1]} and complement {frame[2]})",
                trigger="damaged",
            )
            return True
        checks: list[Check] = []
        if self._locked:
            checks = [self._check] if len(frame) >= base + self._check.size else []
        elif self._check is Check.CRC16:
            if len(frame) >= base + 2:
                checks = [Check.CRC16]
            elif final and len(frame) == base + 1:
                checks = [Check.CHECKSUM]  # a sender that never heard our C
        elif len(frame) >= base + 2:
            checks = [Check.CRC16]  # a sender that answered a C late
        elif len(frame) == base + 1:
            if not final:
                self._deadline = now + self.eot_quiet  # a CRC's second byte may follow
                return False
            checks = [Check.CHECKSUM]
        if not checks:
            if final:
                return False
            self._deadline = now + self.char_timeout
            return False
        check = checks[0]
        payload = bytes(frame[3:base])
        if bytes(frame[base : base + check.size]) != _trailer(payload, check):
            self._error(
                now,
                f"{check.value} mismatch in block {frame[1]}",
                trigger="damaged",
                damaged=self._header_is_expected(),
            )
            return True
        if not self._locked:
            self._check = check
            self._locked = True
        self._accept(now, frame[1], payload)
        return True

    def _accept(self, now: float, number: int, payload: bytes) -> None:
        expected = self._expected & 0xFF
        previous = (self._expected - 1) & 0xFF
        if number == expected:
            if self.length is not None and self._received >= self.length:
                self._fail(
                    Failure.PROTOCOL,
                    f"the sender sent block {self._expected} past the expected length of "
                    f"{self.length} byte(s)",
                    cancel=True,
                )
                return
            self._goto("accept")
            self._deliver(payload)
            self._blocks += 1
            self._expected += 1
            self._errors = 0
            self._damaged_expected = False
            self._ack(now)
            return
        if number == previous:
            # A copy of the block acknowledged last (block 0 before the first one:
            # a YMODEM header, which rx acknowledges and drops too).
            self._goto("duplicate")
            if self._nak_since_ack or self._frame_at - self._acked_at >= self.dup_window:
                self._ack(now)
            else:  # a copy sent in answer to a stale request: no answer
                self._deadline = max(self._acked_at + self.block_timeout, now + self.char_timeout)
            return
        self._fail(
            Failure.SEQUENCE,
            f"sequence error: expected block {self._expected} (number {expected} on the wire), "
            f"got block number {number}",
            cancel=True,
        )

    def _ack(self, now: float) -> None:
        self._events.append(Send(bytes([ACK])))
        self._acked_at = now
        self._nak_since_ack = False
        self._deadline = now + self.block_timeout

    def _deliver(self, payload: bytes) -> None:
        if self.length is not None:
            payload = payload[: max(0, self.length - self._received)]
        self._received += len(payload)
        out = bytes(self._held)
        self._held.clear()
        if self.strip_padding and self.length is None:
            kept = payload.rstrip(bytes([SUB]))
            self._held += payload[len(kept) :]
            out += kept
        else:
            out += payload
        if out:
            self._events.append(Data(self._delivered, out))
            self._delivered += len(out)
            self._bytes = self._delivered
        self._events.append(Progress(self._received, self.length))

    def _release_held(self) -> None:
        if self._held:
            self._events.append(Data(self._delivered, bytes(self._held)))
            self._delivered += len(self._held)
            self._bytes = self._delivered
            self._held.clear()

    def _noise(self, now: float, reason: str) -> None:
        self._error(now, reason, trigger="noise")

    def _error(
        self,
        now: float,
        reason: str,
        *,
        trigger: str,
        quiet: bool = False,
        damaged: bool = False,
    ) -> None:
        """Count a failure of the expected block; purge (unless the line is already
        quiet) and NAK, or cancel when retries are used up."""
        self._errors += 1
        if damaged:  # sticky until the block arrives intact
            self._damaged_expected = True
        if self._errors > self.retries:
            self._fail(
                Failure.RETRIES,
                f"block {self._expected} failed {self._errors} times (last: {reason})",
                cancel=True,
            )
            return
        self._retries += 1
        self._events.append(Retry(self._expected, reason, self._errors))
        self._goto(trigger)
        if quiet:
            self._nak(now)
        else:
            self._purge_until = now + self.block_timeout  # a purge has a bound too
            self._purge_more(now)

    def _purge_more(self, now: float) -> None:
        self._goto("noise")
        self._deadline = min(now + self.purge_quiet, self._purge_until)

    def _end(self, now: float) -> None:
        """A quiet EOT: the end, if it makes sense here."""
        if self._damaged_expected:
            self._fail(
                Failure.PROTOCOL,
                f"the sender ended (EOT) although block {self._expected} arrived damaged and "
                "was not sent again; the data would be incomplete",
                cancel=True,
            )
            return
        if self.length is not None and self._received < self.length:
            self._fail(
                Failure.PROTOCOL,
                f"the sender ended (EOT) after {self._received} byte(s); "
                f"{self.length} were expected",
                cancel=True,
            )
            return
        if not self.strip_padding:
            self._release_held()
        self._held.clear()
        self._events.append(Send(bytes([ACK])))
        self._goto("end")
        check = self._check.value if self._blocks and self._check else "no blocks"
        self._finish(
            True,
            f"received {self._delivered} byte(s) in {self._blocks} block(s) ({check}),"
            f" {self._retries} NAK(s)",
            None,
        )
