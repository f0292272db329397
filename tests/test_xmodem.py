"""XMODEM: the sans-I/O cores, their adapters, and lrzsz's sx and rx on the other end."""

from __future__ import annotations

import contextlib
import dataclasses
import heapq
import io
import itertools
import os
import random
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from serialhs.driver.port import Port
from serialhs.errors import ConfigError, SerialHSError
from serialhs.negotiate.xmodem import (
    ACK,
    CAN,
    CANCEL,
    CRC_REQUEST,
    EOT,
    NAK,
    RECEIVER_TRANSITIONS,
    SENDER_TRANSITIONS,
    SOH,
    STX,
    SUB,
    BlockError,
    Check,
    Data,
    Done,
    Failure,
    Progress,
    Protocol,
    ReceiverState,
    Retry,
    Send,
    SenderState,
    XmodemError,
    XmodemReceiver,
    XmodemSender,
    XmodemStateError,
    block_sizes,
    checksum8,
    crc16_xmodem,
    decode_block,
    encode_block,
    padded_length,
)
from serialhs.negotiate.xmodemport import TransferResult, receive_file, send_file
from serialhs.sim.socat import SocatPair
from serialhs.sim.wire import Wire

SETTINGS = "115200 8N1"


def crc16_reference(data: bytes) -> int:
    """CRC-16/XMODEM bit by bit, straight from its definition."""
    crc = 0
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else (crc << 1)
            crc &= 0xFFFF
    return crc


def padded(data: bytes, protocol: str) -> bytes:
    return data + bytes([SUB]) * (padded_length(len(data), protocol) - len(data))


def sends(events) -> list[bytes]:
    return [e.data for e in events if isinstance(e, Send)]


def only(events, kind):
    found = [e for e in events if isinstance(e, kind)]
    assert len(found) == 1, events
    return found[0]


# --- checks and blocks --------------------------------------------------------------


def test_crc16_xmodem_check_value():
    # CRC-16/XMODEM: poly 0x1021, init 0, no reflection, no final XOR.
    assert crc16_xmodem(b"123456789") == 0x31C3
    assert crc16_reference(b"123456789") == 0x31C3
    assert crc16_xmodem(b"") == 0


@given(st.binary(max_size=2048), st.integers(0, 2048))
@settings(max_examples=100, deadline=None, derandomize=True, database=None)
def test_crc16_matches_the_definition_and_continues(data, cut):
    assert crc16_xmodem(data) == crc16_reference(data)
    assert crc16_xmodem(data[cut:], crc16_xmodem(data[:cut])) == crc16_xmodem(data)


def test_checksum_is_the_byte_sum_modulo_256():
    assert checksum8(bytes(range(128))) == 0xC0  # 8128 = 0x1FC0
    assert checksum8(b"\xff\x01") == 0


BLOCK_VECTORS = [
    # number, payload, check, header bytes, trailer bytes
    (1, bytes(range(128)), Check.CHECKSUM, "0101fe", "c0"),
    (1, bytes(range(128)), Check.CRC16, "0101fe", "e80a"),
    (255, b"A" * 128, Check.CRC16, "01ff00", "1cce"),
    (256, bytes([SUB]) * 1024, Check.CRC16, "0200ff", "fc96"),  # 256 wraps to 0
]


@pytest.mark.parametrize(("number", "payload", "check", "head", "tail"), BLOCK_VECTORS)
def test_block_vectors(number, payload, check, head, tail):
    block = encode_block(number, payload, check)
    assert block[:3].hex() == head
    assert block[3 : 3 + len(payload)] == payload
    assert block[3 + len(payload) :].hex() == tail
    assert len(block) == 3 + len(payload) + check.size
    assert decode_block(block, check).payload == payload
    assert decode_block(block, check).number == number & 0xFF


def test_a_short_block_padded_with_sub():
    payload = b"hello" + bytes([SUB]) * 123
    assert encode_block(3, payload, Check.CRC16).hex() == "0103fc68656c6c6f" + "1a" * 123 + "7490"


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        (b"", "empty"),
        (b"\x04" + bytes(131), "neither SOH nor STX"),
        (bytes([SOH, 1, 0xFE]) + bytes(128), "is 132 bytes, not 131"),
        (bytes([SOH, 1, 0xFD]) + bytes(129), "garbled"),
        (bytes([SOH, 1, 0xFE]) + bytes(128) + b"\x01", "checksum mismatch"),
    ],
)
def test_decode_block_says_what_is_wrong(frame, message):
    with pytest.raises(BlockError, match=message):
        decode_block(frame, Check.CHECKSUM)


def test_encode_block_refuses_odd_payloads():
    with pytest.raises(ConfigError, match="128 or 1024"):
        encode_block(1, b"x" * 100, Check.CRC16)


@pytest.mark.parametrize(
    ("total", "protocol", "sizes"),
    [
        (0, "xmodem-1k", []),
        (1, "xmodem-1k", [128]),
        (896, "xmodem-1k", [128] * 7),  # sx -k: a tail of <= 896 bytes goes in 128s
        (897, "xmodem-1k", [1024]),
        (1024, "xmodem-1k", [1024]),
        (1025, "xmodem-1k", [1024, 128]),
        (1024 + 896, "xmodem-1k", [1024] + [128] * 7),
        (65536 + 7, "xmodem-1k", [1024] * 64 + [128]),
        (65536 + 7, "xmodem-crc", [128] * 513),
        (300, "xmodem", [128] * 3),
    ],
)
def test_block_sizes_follow_sx(total, protocol, sizes):
    assert block_sizes(total, protocol) == sizes
    assert padded_length(total, protocol) == sum(sizes)


def test_protocol_names():
    assert Protocol.parse("XMODEM-1K") is Protocol.XMODEM_1K
    with pytest.raises(ConfigError, match="xmodem, xmodem-crc, xmodem-1k"):
        Protocol.parse("zmodem")


# --- the state tables ---------------------------------------------------------------


def test_every_state_is_in_the_tables():
    for table, states in ((SENDER_TRANSITIONS, SenderState), (RECEIVER_TRANSITIONS, ReceiverState)):
        seen = {s for s, _ in table} | set(table.values())
        assert seen == set(states)


def test_an_illegal_move_names_the_state_and_the_trigger():
    sender = XmodemSender(total=1, now=0)
    with pytest.raises(XmodemStateError, match=r"'starting'.*'acked'"):
        sender._goto("acked")
    receiver = XmodemReceiver(now=0)
    with pytest.raises(XmodemStateError, match=r"'start'.*'quiet'"):
        receiver._goto("quiet")


# --- the sender core ---------------------------------------------------------------


def make_sender(data: bytes, **options) -> XmodemSender:
    options.setdefault("settle", 0)
    sender = XmodemSender(total=len(data), now=0, **options)
    sender.feed(data)
    return sender


def test_the_sender_waits_for_the_receiver_and_follows_its_check():
    sender = make_sender(b"x" * 200)
    assert sender.events() == [] and sender.get_timer() == 60
    sender.receive_data(b"junk", 1)  # noise before the start
    assert sender.events() == []
    sender.receive_data(b"C", 2)
    block = only(sender.events(), Send).data
    assert block == encode_block(1, b"x" * 128, Check.CRC16)
    assert sender.stats.check is Check.CRC16

    sender = make_sender(b"x" * 200)
    sender.receive_data(bytes([NAK]), 2)
    assert only(sender.events(), Send).data == encode_block(1, b"x" * 128, Check.CHECKSUM)


def test_a_full_transfer_and_its_progress():
    data = bytes(range(256)) * 5  # 1280 bytes: one 1K block and two 128s
    sender = make_sender(data, protocol="xmodem-1k")
    sender.receive_data(b"C", 0)
    blocks = sends(sender.events())
    for now in range(1, 10):
        sender.receive_data(bytes([ACK]), now)
        events = sender.events()
        blocks += sends(events)
        if sender.done:
            break
    assert [b[0] for b in blocks] == [STX, SOH, SOH, EOT]
    assert [b[1] for b in blocks[:3]] == [1, 2, 3]
    assert b"".join(b[3:-2] for b in blocks[:3]) == padded(data, "xmodem-1k")
    assert sender.result == Done(
        True, "sent 1280 byte(s) in 3 block(s) with crc16, 0 retransmission(s)"
    )
    assert sender.stats.bytes == 1280 and sender.stats.blocks == 3


def test_bytes_that_came_with_the_answered_byte_are_stale():
    sender = make_sender(b"x" * 300)
    sender.receive_data(b"CCC", 0)  # three requests queued up: one block
    assert len(sends(sender.events())) == 1
    sender.receive_data(bytes([ACK, NAK]), 1)  # the NAK predates block 2
    assert [b[1] for b in sends(sender.events())] == [2]


def test_the_sender_pauses_before_each_answer():
    sender = make_sender(b"x" * 300, settle=0.002)
    sender.receive_data(b"C", 5)
    assert sender.events() == [] and sender.state is SenderState.PAUSE
    assert sender.get_timer() == pytest.approx(5.002)
    sender.receive_data(b"C", 5.001)  # repeated requests while pausing are stale
    sender.handle_timer(5.002)
    assert len(sends(sender.events())) == 1 and sender.state is SenderState.BLOCK


def test_nak_resends_and_retries_run_out():
    sender = make_sender(b"x" * 10, retries=3)
    sender.receive_data(b"C", 0)
    first = sends(sender.events())
    for now in range(1, 4):
        sender.receive_data(bytes([NAK]), now)
        events = sender.events()
        assert sends(events) == first
        assert only(events, Retry) == Retry(1, "NAK", now)
    sender.receive_data(bytes([NAK]), 5)
    events = sender.events()
    assert sends(events) == [CANCEL]
    done = only(events, Done)
    assert done.failure is Failure.RETRIES
    assert "block 1 was not acknowledged after 4 transmission(s) (last: NAK)" in done.reason


def test_a_timeout_resends_at_once_and_counts():
    sender = make_sender(b"x" * 10, ack_timeout=10, char_time=0.001)
    sender.receive_data(b"C", 0)
    sender.events()
    assert sender.get_timer() == pytest.approx(10 + 133 * 0.001)  # plus the airtime
    sender.handle_timer(5)
    assert sender.events() == []
    sender.handle_timer(10.2)
    assert len(sends(sender.events())) == 1
    assert sender.stats.timeouts == 1 and sender.stats.retries == 1


def test_a_c_during_the_first_block_resends_it_with_a_crc():
    sender = make_sender(b"x" * 10)
    sender.receive_data(bytes([NAK]), 0)  # checksum...
    assert len(only(sender.events(), Send).data) == 132
    sender.receive_data(b"C", 1)  # ...but the receiver asks again with C (as sx does)
    assert only(sender.events(), Send).data == encode_block(
        1, padded(b"x" * 10, "xmodem"), Check.CRC16
    )
    sender.receive_data(bytes([ACK]), 2)
    sender.events()
    sender.receive_data(b"C", 3)  # after the first block: noise
    assert sender.events() == []


def test_can_can_cancels_a_lone_can_does_not():
    sender = make_sender(b"x" * 10)
    sender.receive_data(bytes([CAN]) + b"x" + bytes([CAN]), 0)
    assert not sender.done
    sender.receive_data(bytes([CAN]), 1)
    sender.receive_data(bytes([CAN]), 2)  # across reads
    done = only(sender.events(), Done)
    assert done.failure is Failure.CANCELLED and "CAN CAN" in done.reason


def test_an_ack_after_noise_does_not_count():
    sender = make_sender(b"x" * 300)
    sender.receive_data(b"C", 0)
    sender.events()
    sender.receive_data(b"\x7f\x06", 1)  # noise, then an ACK in the same read
    assert sender.events() == [] and sender.stats.blocks == 0
    sender.receive_data(bytes([ACK]), 2)
    assert sender.stats.blocks == 1


def test_eot_is_resent_on_nak_and_on_timeout():
    sender = make_sender(b"", eot_timeout=2)
    sender.receive_data(b"C", 0)
    assert sends(sender.events()) == [bytes([EOT])]  # nothing to send: the end at once
    sender.receive_data(bytes([NAK]), 1)
    assert sends(sender.events()) == [bytes([EOT])]
    sender.handle_timer(3)
    assert sends(sender.events()) == [bytes([EOT])]
    sender.receive_data(bytes([ACK]), 4)
    assert only(sender.events(), Done).ok


def test_an_unanswered_eot_is_an_unconfirmed_end():
    sender = make_sender(b"x", eot_timeout=1, eot_retries=2)
    sender.receive_data(b"C", 0)
    sender.receive_data(bytes([ACK]), 1)
    sender.events()
    for now in (2.5, 3.5, 4.5):
        sender.handle_timer(now)
    events = sender.events()
    assert sends(events) == [bytes([EOT])] * 2  # no CAN: the data is all acknowledged
    done = only(events, Done)
    assert done.failure is Failure.UNCONFIRMED
    assert "all 1 byte(s) were acknowledged" in done.reason and "3 EOT(s)" in done.reason


def test_an_eot_answered_with_naks_only_runs_out_of_retries():
    sender = make_sender(b"", eot_retries=1)
    sender.receive_data(b"C", 0)
    sender.receive_data(bytes([NAK]), 1)
    sender.receive_data(bytes([NAK]), 2)
    done = only(sender.events(), Done)
    assert done.failure is Failure.RETRIES and "EOT was not acknowledged" in done.reason


def test_the_start_times_out():
    sender = make_sender(b"x", start_timeout=5)
    sender.handle_timer(5)
    done = only(sender.events(), Done)
    assert done.failure is Failure.TIMEOUT and "NAK or 'C'" in done.reason
    assert sender.get_timer() is None


def test_feeding_is_checked():
    sender = XmodemSender(total=3000, now=0, settle=0)
    assert sender.wanted == 2048
    sender.feed(b"x" * 2048)
    assert sender.wanted == 0
    with pytest.raises(ConfigError, match="only 952 of the 3000"):
        sender.feed(b"x" * 1000)
    starving = XmodemSender(total=300, now=0, settle=0)
    starving.feed(b"x" * 10)
    with pytest.raises(ConfigError, match="feed `wanted` bytes"):
        starving.receive_data(b"C", 0)


@pytest.mark.parametrize(
    "bad", [{"total": -1}, {"ack_timeout": 0}, {"settle": -1}, {"retries": 1.5}]
)
def test_sender_options_are_checked(bad):
    options = {"total": 1, "now": 0, **bad}
    with pytest.raises(ConfigError):
        XmodemSender(**options)


def test_abort_and_a_lost_link():
    sender = make_sender(b"x")
    sender.abort(1, "enough")
    events = sender.events()
    assert sends(events) == [CANCEL] and only(events, Done).failure is Failure.ABORTED
    sender = make_sender(b"x")
    sender.connection_lost(1, "gone")
    assert sender.events() == [Done(False, "gone", Failure.LINK)]


# --- the receiver core ---------------------------------------------------------------


def block(number: int, payload: bytes, check: Check = Check.CRC16, size: int = 128) -> bytes:
    return encode_block(number, payload + bytes([SUB]) * (size - len(payload)), check)


def received(receiver: XmodemReceiver) -> bytes:
    return b"".join(e.data for e in receiver.events() if isinstance(e, Data))


def test_the_receiver_asks_with_c_then_falls_back_to_nak():
    receiver = XmodemReceiver(now=0)
    assert sends(receiver.events()) == [b"C"]
    for now, want in ((3, b"C"), (6, b"C"), (9, bytes([NAK])), (12, bytes([NAK]))):
        receiver.handle_timer(now - 0.5)
        assert receiver.events() == []
        receiver.handle_timer(now)
        assert sends(receiver.events()) == [want]
    assert receiver.stats.check is Check.CHECKSUM


def test_a_plain_xmodem_receiver_asks_with_nak_and_the_start_times_out():
    receiver = XmodemReceiver(now=0, protocol="xmodem", start_timeout=7)
    assert sends(receiver.events()) == [bytes([NAK])]
    receiver.receive_data(b"garbage before a sender", 1)  # ignored before the start
    for now in (3, 6, 9):
        receiver.handle_timer(now)
    events = receiver.events()
    assert sends(events) == [bytes([NAK])] * 2
    done = only(events, Done)
    assert done.failure is Failure.TIMEOUT and "within 7 s (3 start request(s))" in done.reason


def test_blocks_are_acknowledged_and_delivered():
    receiver = XmodemReceiver(now=0)
    receiver.events()
    receiver.receive_data(block(1, b"a" * 128), 1)
    events = receiver.events()
    assert sends(events) == [bytes([ACK])]
    assert only(events, Data) == Data(0, b"a" * 128)
    assert only(events, Progress) == Progress(128, None)
    receiver.receive_data(block(2, b"end")[:50], 2)  # in pieces
    receiver.receive_data(block(2, b"end")[50:], 2.1)
    assert received(receiver) == padded(b"end", "xmodem")
    receiver.receive_data(bytes([EOT]), 3)
    assert receiver.events() == []  # an EOT must be followed by silence
    receiver.handle_timer(3.2)
    events = receiver.events()
    assert sends(events) == [bytes([ACK])]
    assert only(events, Done) == Done(True, "received 256 byte(s) in 2 block(s) (crc16), 0 NAK(s)")
    receiver.receive_data(bytes([EOT]), 5)  # our ACK was lost: answered again
    assert sends(receiver.events()) == [bytes([ACK])]


def test_an_eot_followed_by_bytes_was_noise():
    receiver = XmodemReceiver(now=0)
    receiver.receive_data(block(1, b"a"), 1)
    receiver.events()
    receiver.receive_data(bytes([EOT]) + b"xyz", 2)  # in one read
    assert receiver.state is ReceiverState.PURGE
    receiver.receive_data(bytes([EOT]), 3)
    receiver.receive_data(b"more", 3.1)  # in the next read
    assert receiver.state is ReceiverState.PURGE
    receiver.handle_timer(3.6)
    assert sends(receiver.events()) == [bytes([NAK])]
    assert not receiver.done


def test_a_damaged_block_is_purged_then_naked():
    receiver = XmodemReceiver(now=0, purge_quiet=0.5)
    receiver.events()
    bad = bytearray(block(1, b"a" * 128))
    bad[40] ^= 0x10
    receiver.receive_data(bytes(bad), 1)
    events = receiver.events()
    assert only(events, Retry) == Retry(1, "crc16 mismatch in block 1", 1)
    assert sends(events) == []
    receiver.receive_data(b"tail of the line noise", 1.3)  # the purge goes on
    receiver.handle_timer(1.6)
    assert receiver.events() == []
    receiver.handle_timer(1.8)
    assert sends(receiver.events()) == [b"C"]  # before block 1: the start request
    receiver.receive_data(block(1, b"a" * 128), 2)
    assert received(receiver) == b"a" * 128
    bad = bytearray(block(2, b"b"))
    bad[1] ^= 0x01  # the block number no longer matches its complement
    receiver.receive_data(bytes(bad), 3)
    assert "block number garbled" in only(receiver.events(), Retry).reason
    receiver.handle_timer(3.5)
    assert sends(receiver.events()) == [bytes([NAK])]


def test_an_incomplete_block_is_naked_after_a_silence():
    receiver = XmodemReceiver(now=0, char_timeout=1)
    receiver.receive_data(block(1, b"a")[:100], 1)
    receiver.events()
    receiver.handle_timer(2)
    events = receiver.events()
    assert "incomplete: 100 of 133 byte(s)" in only(events, Retry).reason
    assert sends(events) == [b"C"]


def test_duplicates():
    receiver = XmodemReceiver(now=0, dup_window=1)
    receiver.receive_data(block(1, b"a"), 1)
    receiver.events()
    # A copy right after our ACK answers a stale request: no second ACK.
    receiver.receive_data(block(1, b"a"), 1.2)
    assert receiver.events() == []
    # A copy long after: our ACK was lost and the sender timed out.
    receiver.receive_data(block(1, b"a"), 11)
    assert sends(receiver.events()) == [bytes([ACK])]
    # A copy after our NAK: always answered.
    receiver.handle_timer(21)  # no block 2 within 10 s: NAK
    assert sends(receiver.events()) == [bytes([NAK])]
    receiver.receive_data(block(1, b"a"), 21.1)
    assert sends(receiver.events()) == [bytes([ACK])]
    assert receiver.stats.blocks == 1 and receiver.stats.bytes == 128


def test_a_block_out_of_sequence_cancels():
    receiver = XmodemReceiver(now=0)
    receiver.receive_data(block(1, b"a"), 1)
    receiver.events()
    receiver.receive_data(block(3, b"c"), 2)
    events = receiver.events()
    assert sends(events) == [CANCEL]
    done = only(events, Done)
    assert done.failure is Failure.SEQUENCE and "expected block 2" in done.reason


def test_block_numbers_wrap():
    receiver = XmodemReceiver(now=0)
    receiver.events()
    for number in range(1, 260):
        receiver.receive_data(block(number, bytes([number & 0xFF])), number)
        assert sends(receiver.events()) == [bytes([ACK])]
    assert receiver.stats.blocks == 259


def test_an_eot_after_a_damaged_copy_of_the_expected_block_is_refused():
    receiver = XmodemReceiver(now=0)
    receiver.receive_data(block(1, b"a"), 1)
    bad = bytearray(block(2, b"b"))
    bad[60] ^= 1
    receiver.receive_data(bytes(bad), 2)
    receiver.handle_timer(2.5)
    receiver.events()
    receiver.receive_data(b"noise", 3)  # later errors do not clear it
    receiver.handle_timer(3.5)
    receiver.receive_data(bytes([EOT]), 4)
    receiver.handle_timer(4.2)
    events = receiver.events()
    assert sends(events)[-1] == CANCEL
    done = only(events, Done)
    assert done.failure is Failure.PROTOCOL and "block 2 arrived damaged" in done.reason


def test_retries_run_out():
    receiver = XmodemReceiver(now=0, retries=2)
    receiver.receive_data(block(1, b"a"), 0)
    for now in (10, 20):
        receiver.handle_timer(now)
    receiver.events()
    receiver.handle_timer(30)
    events = receiver.events()
    assert sends(events) == [CANCEL]
    done = only(events, Done)
    assert done.failure is Failure.RETRIES and "block 2 failed 3 times" in done.reason


def test_the_first_block_may_come_with_the_other_check():
    # A sender answered our C late, after the fall-back to NAK: a CRC block.
    receiver = XmodemReceiver(now=0)
    for now in (3, 6, 9):
        receiver.handle_timer(now)
    receiver.events()
    receiver.receive_data(block(1, b"late"), 9.5)
    assert received(receiver) == padded(b"late", "xmodem")
    assert receiver.stats.check is Check.CRC16
    # A sender that never heard our C: a checksum block, known by the silence after it.
    receiver = XmodemReceiver(now=0, char_timeout=1)
    receiver.receive_data(block(1, b"deaf", Check.CHECKSUM), 1)
    assert receiver.events()[-1] == Send(b"C")  # only the start request so far
    receiver.handle_timer(2)
    assert received(receiver) == padded(b"deaf", "xmodem")
    assert receiver.stats.check is Check.CHECKSUM
    receiver.receive_data(block(2, b"two", Check.CHECKSUM), 3)  # settled: no wait now
    assert received(receiver) == padded(b"two", "xmodem")


def test_1k_blocks_are_always_accepted():
    receiver = XmodemReceiver(now=0, protocol="xmodem")
    receiver.receive_data(block(1, b"k" * 1000, Check.CHECKSUM, size=1024), 1)
    assert received(receiver) == b"k" * 1000 + bytes([SUB]) * 24


def finish(receiver: XmodemReceiver, now: float) -> Done:
    receiver.receive_data(bytes([EOT]), now)
    receiver.handle_timer(now + 1)
    return receiver.result


def test_strip_padding_holds_trailing_subs_until_more_data_comes():
    receiver = XmodemReceiver(now=0, strip_padding=True)
    receiver.receive_data(block(1, b"a" * 120 + bytes([SUB]) * 8), 1)
    assert received(receiver) == b"a" * 120  # the SUBs may be padding...
    receiver.receive_data(block(2, b"b"), 2)
    assert received(receiver) == bytes([SUB]) * 8 + b"b"  # ...they were not
    assert finish(receiver, 3).ok
    assert received(receiver) == b""


def test_a_known_length_cuts_the_padding_and_is_enforced():
    receiver = XmodemReceiver(now=0, length=130)
    receiver.receive_data(block(1, b"a" * 128), 1)
    receiver.receive_data(block(2, b"bb" + bytes([SUB]) * 3), 2)
    assert received(receiver) == b"a" * 128 + b"bb"
    assert finish(receiver, 3).ok

    short = XmodemReceiver(now=0, length=300)
    short.receive_data(block(1, b"a" * 128), 1)
    done = finish(short, 2)
    assert (
        done.failure is Failure.PROTOCOL and "after 128 byte(s); 300 were expected" in done.reason
    )

    long = XmodemReceiver(now=0, length=128)
    long.receive_data(block(1, b"a" * 128), 1)
    long.receive_data(block(2, b"b"), 2)
    done = long.result
    assert done.failure is Failure.PROTOCOL and "past the expected length of 128" in done.reason


def test_an_empty_transfer():
    receiver = XmodemReceiver(now=0)
    done = finish(receiver, 1)
    assert done.ok and receiver.stats.bytes == 0


def test_a_cancelled_receiver_keeps_what_it_held():
    receiver = XmodemReceiver(now=0, strip_padding=True)
    receiver.receive_data(block(1, b"a" + bytes([SUB]) * 127), 1)
    assert received(receiver) == b"a"
    receiver.receive_data(bytes([CAN, CAN]), 2)
    events = receiver.events()
    assert b"".join(e.data for e in events if isinstance(e, Data)) == bytes([SUB]) * 127
    assert only(events, Done).failure is Failure.CANCELLED


@pytest.mark.parametrize("bad", [{"length": -1}, {"block_timeout": -2}, {"crc_tries": 0}])
def test_receiver_options_are_checked(bad):
    with pytest.raises(ConfigError):
        XmodemReceiver(now=0, **bad)


# --- the two cores on a simulated line ------------------------------------------------

CONTROL = {SOH, STX, EOT, ACK, NAK, CAN, CRC_REQUEST}


@dataclasses.dataclass
class Fault:
    kind: str  # drop, truncate, flip, noise
    keep: float = 1.0  # truncate: the fraction kept
    flips: tuple[tuple[int, int], ...] = ()  # (position, bit); all for CRC blocks, one otherwise
    noise: bytes = b""  # sent before the transmission


@dataclasses.dataclass
class Outcome:
    sender: Done
    receiver: Done
    output: bytes
    end: float


def run_line(
    data: bytes,
    *,
    sender_protocol: str,
    receiver_protocol: str,
    faults: dict[tuple[str, int], Fault] | None = None,
    char_time: float = 1 / 11520,
    latency: float = 0.002,
    chunk: int | None = None,
    sender_start: float = 0.0,
    max_time: float = 20000.0,
) -> Outcome:
    """Run a sender and a receiver core against each other on a simulated line.
    Each transmission (one Send) takes ``char_time`` per byte plus ``latency``,
    arrives whole or in pieces of ``chunk`` bytes, and may meet one fault."""
    faults = faults or {}
    receiver = XmodemReceiver(now=0.0, protocol=receiver_protocol)
    sender: XmodemSender | None = None
    output = bytearray()
    queue: list[tuple[float, int, str, bytes]] = []
    order = itertools.count()
    line_free = {"s": 0.0, "r": 0.0}
    count = {"s": 0, "r": 0}
    early = bytearray()  # what reached the sender's port before it started
    results: dict[str, list[Done]] = {"s": [], "r": []}

    def transmit(side: str, payload: bytes, now: float) -> None:
        fault = faults.get((side, count[side]))
        count[side] += 1
        if fault is not None:
            if fault.kind == "drop":
                payload = b""
            elif fault.kind == "truncate":
                payload = payload[: int(len(payload) * fault.keep)]
            elif fault.kind == "flip":
                damaged = bytearray(payload)
                flips = fault.flips if len(payload) in (133, 1029) else fault.flips[:1]
                for position, bit in flips:
                    damaged[position % len(damaged)] ^= 1 << bit
                payload = bytes(damaged)
            elif fault.kind == "noise":
                payload = fault.noise + payload
        start = max(now, line_free[side])
        line_free[side] = start + len(payload) * char_time
        target = "r" if side == "s" else "s"
        step = chunk or max(1, len(payload))
        for i in range(0, len(payload), step):
            piece = payload[i : i + step]
            arrival = start + (i + len(piece)) * char_time + latency
            heapq.heappush(queue, (arrival, next(order), target, piece))

    def drain(core, side: str, now: float) -> None:
        for event in core.events():
            if isinstance(event, Send):
                transmit(side, event.data, now)
            elif isinstance(event, Data):
                assert event.offset == len(output), "Data offsets follow each other"
                output.extend(event.data)
            elif isinstance(event, Done):
                results[side].append(event)

    now = 0.0
    drain(receiver, "r", now)
    for _ in range(200_000):
        if receiver.done and sender is not None and sender.done:
            break
        times = [queue[0][0]] if queue else []
        if sender is None:
            times.append(sender_start)
        for core in (sender, receiver):
            if core is not None and core.get_timer() is not None:
                times.append(core.get_timer())
        assert times, "nothing left to happen, but the transfer has not ended: a hang"
        now = max(now, min(times))
        assert now < max_time, "the transfer did not end in bounded simulated time"
        if sender is None and now >= sender_start:
            sender = XmodemSender(
                total=len(data), now=now, protocol=sender_protocol, char_time=char_time
            )
            sender.feed(data)
            if early:
                sender.receive_data(bytes(early), now)
            drain(sender, "s", now)
        while queue and queue[0][0] <= now:
            _, _, target, piece = heapq.heappop(queue)
            if target == "r":
                receiver.receive_data(piece, now)
                drain(receiver, "r", now)
            elif sender is None:
                early.extend(piece)
            else:
                sender.receive_data(piece, now)
                drain(sender, "s", now)
        for core, side in ((sender, "s"), (receiver, "r")):
            if core is not None:
                core.handle_timer(now)
                drain(core, side, now)
    else:
        pytest.fail("the simulation took too many steps")
    assert sender is not None
    assert len(results["s"]) == 1 and len(results["r"]) == 1, "each core ends exactly once"
    return Outcome(results["s"][0], results["r"][0], bytes(output), now)


PROTOCOLS = ["xmodem", "xmodem-crc", "xmodem-1k"]
SIZES = [0, 1, 127, 128, 129, 896, 897, 1023, 1024, 1025, 2300]


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("size", SIZES)
def test_a_clean_line(protocol, size):
    data = random.Random(size).randbytes(size)
    outcome = run_line(data, sender_protocol=protocol, receiver_protocol=protocol)
    assert outcome.sender.ok and outcome.receiver.ok
    assert outcome.output == padded(data, protocol)


def check_outcome(outcome: Outcome, data: bytes, protocol: str) -> None:
    expected = padded(data, protocol)
    assert expected.startswith(outcome.output), "a byte was delivered that was never sent"
    if outcome.receiver.ok:
        assert outcome.output == expected, "the receiver ended well with data missing"
    if outcome.sender.ok:
        assert outcome.receiver.ok, "the sender ended well, the receiver did not"
    for done in (outcome.sender, outcome.receiver):
        assert done.ok == (done.failure is None) and done.reason


NOT_CONTROL = bytes(b for b in range(256) if b not in CONTROL)

faults_strategy = st.dictionaries(
    st.tuples(st.sampled_from("sr"), st.integers(0, 40)),
    st.one_of(
        st.just(Fault("drop")),
        st.floats(0, 0.99).map(lambda keep: Fault("truncate", keep=keep)),
        st.lists(st.tuples(st.integers(0, 1100), st.integers(0, 7)), min_size=1, max_size=3).map(
            lambda flips: Fault("flip", flips=tuple(flips))
        ),
        st.lists(st.sampled_from(NOT_CONTROL), min_size=1, max_size=16).map(
            lambda noise: Fault("noise", noise=bytes(noise))
        ),
    ),
    max_size=14,
)


@settings(max_examples=150, deadline=None, derandomize=True, database=None)
@given(
    size=st.sampled_from(SIZES),
    seed=st.integers(0, 2**32),
    sender_protocol=st.sampled_from(PROTOCOLS),
    receiver_protocol=st.sampled_from(PROTOCOLS),
    faults=faults_strategy,
    chunk=st.sampled_from([None, 1, 7, 64]),
    sender_start=st.sampled_from([0.0, 1.0, 2.999, 3.0, 6.0, 9.0, 9.001, 20.0]),
)
def test_loss_and_corruption_end_intact_or_cleanly(
    size, seed, sender_protocol, receiver_protocol, faults, chunk, sender_start
):
    """Drops, truncations, bit errors (up to 3 in a CRC block, one elsewhere: what
    the check is sure to find) and noise bursts: the data arrives intact, or the
    transfer ends with a reported failure. Never wrong data, never a hang."""
    data = random.Random(seed).randbytes(size)
    outcome = run_line(
        data,
        sender_protocol=sender_protocol,
        receiver_protocol=receiver_protocol,
        faults=faults,
        chunk=chunk,
        sender_start=sender_start,
    )
    check_outcome(outcome, data, sender_protocol)


@settings(max_examples=60, deadline=None, derandomize=True, database=None)
@given(
    size=st.sampled_from(SIZES),
    seed=st.integers(0, 2**32),
    protocol=st.sampled_from(["xmodem-crc", "xmodem-1k"]),
    noise=st.dictionaries(
        st.tuples(st.sampled_from("sr"), st.integers(0, 40)),
        st.binary(min_size=1, max_size=16).map(lambda b: Fault("noise", noise=b)),
        max_size=10,
    ),
)
def test_any_noise_never_hangs(size, seed, protocol, noise):
    """Noise with control bytes in it can fake an ACK or an EOT, which XMODEM cannot
    tell from real ones; the transfer may then fail, but it always ends."""
    data = random.Random(seed).randbytes(size)
    outcome = run_line(data, sender_protocol=protocol, receiver_protocol=protocol, faults=noise)
    assert outcome.sender.reason and outcome.receiver.reason


def test_a_lost_final_ack_is_answered_again():
    # The receiver ends after its ACK for EOT; the ACK is lost; the sender's next
    # EOT still gets one.
    outcome = run_line(
        b"x" * 100,
        sender_protocol="xmodem-crc",
        receiver_protocol="xmodem-crc",
        faults={("r", 2): Fault("drop")},  # the receiver sends C, ACK (block 1), ACK (EOT)
    )
    assert outcome.receiver.ok and outcome.sender.ok


def test_a_lost_block_and_a_lost_nak():
    # Block 2 is lost, and so is the receiver's first NAK for it: the receiver's
    # second NAK and the sender's timeout bring it back, in step.
    data = random.Random(7).randbytes(128 * 4)
    outcome = run_line(
        data,
        sender_protocol="xmodem-crc",
        receiver_protocol="xmodem-crc",
        faults={("s", 1): Fault("drop"), ("r", 2): Fault("drop")},
    )
    assert outcome.sender.ok and outcome.receiver.ok
    assert outcome.output == data


# --- the adapters ---------------------------------------------------------------------


@pytest.fixture
def lock_dir(tmp_path):
    d = tmp_path / "lock"
    d.mkdir()
    return d


def in_thread(fn, *args, **kwargs) -> tuple[threading.Thread, list]:
    box: list = []

    def run() -> None:
        try:
            box.append(fn(*args, **kwargs))
        except BaseException as e:
            box.append(e)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, box


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_serialhs_to_serialhs_over_a_socat_pair(serial_pair, lock_dir, tmp_path, protocol):
    data = random.Random(3).randbytes(5000)
    source = tmp_path / "source.bin"
    source.write_bytes(data)
    progress: list[Progress] = []
    with (
        Port(serial_pair.a, SETTINGS, lock_dir=lock_dir) as a,
        Port(serial_pair.b, SETTINGS, lock_dir=lock_dir) as b,
    ):
        thread, box = in_thread(
            receive_file, b, tmp_path / "out.bin", protocol=protocol, length=5000
        )
        sent = send_file(a, source, protocol=protocol, progress=progress.append)
        thread.join(timeout=30)
    got = box[0]
    assert isinstance(got, TransferResult) and got.ok, got
    assert sent.ok and sent.raise_for_failure() is sent
    assert (tmp_path / "out.bin").read_bytes() == data
    assert sent.bytes == got.bytes == 5000
    assert progress[-1] == Progress(5000, 5000)
    assert [p.done for p in progress] == sorted(p.done for p in progress)
    assert sent.check is got.check is (Check.CHECKSUM if protocol == "xmodem" else Check.CRC16)
    assert sent.goodput > 0


def test_bytes_in_and_a_file_object_out(serial_pair, lock_dir):
    data = b"not a multiple of 128" * 10
    out = io.BytesIO()
    with (
        Port(serial_pair.a, SETTINGS, lock_dir=lock_dir) as a,
        Port(serial_pair.b, SETTINGS, lock_dir=lock_dir) as b,
    ):
        thread, box = in_thread(receive_file, b, out, strip_padding=True)
        sent = send_file(a, data)
        thread.join(timeout=30)
    assert sent.ok and box[0].ok
    assert out.getvalue() == data


def test_a_receiver_without_sender_ends_at_the_deadline(serial_pair, lock_dir, tmp_path):
    with Port(serial_pair.a, SETTINGS, lock_dir=lock_dir) as a:
        started = time.monotonic()
        result = receive_file(a, tmp_path / "out.bin", deadline=0.5)
        took = time.monotonic() - started
    assert not result.ok and result.failure is Failure.ABORTED
    assert "0.5 s deadline" in result.reason and 0.4 < took < 3
    with pytest.raises(XmodemError, match="deadline") as info:
        result.raise_for_failure()
    assert info.value.failure is Failure.ABORTED and isinstance(info.value, SerialHSError)


def test_a_vanished_port_ends_the_transfer_as_a_link_failure(lock_dir, tmp_path):
    pair = SocatPair().start()
    try:
        with Port(pair.a, SETTINGS, lock_dir=lock_dir) as a:
            timer = threading.Timer(0.3, pair.kill)
            timer.start()
            result = send_file(a, b"x" * 1000, start_timeout=10)
            timer.join()
    finally:
        pair.stop()
    assert result.failure is Failure.LINK and result.error is not None
    with pytest.raises(XmodemError) as info:
        result.raise_for_failure()
    assert info.value.__cause__ is result.error


def test_a_failing_progress_callback_cancels_and_propagates(serial_pair, lock_dir):
    def progress(p: Progress) -> None:
        raise RuntimeError("stop here")

    with (
        Port(serial_pair.a, SETTINGS, lock_dir=lock_dir) as a,
        Port(serial_pair.b, SETTINGS, lock_dir=lock_dir) as b,
    ):
        thread, box = in_thread(receive_file, b, io.BytesIO())
        with pytest.raises(RuntimeError, match="stop here"):
            send_file(a, b"x" * 3000, progress=progress)
        thread.join(timeout=30)
    assert box[0].failure is Failure.CANCELLED


def test_the_adapters_check_their_options(serial_pair, lock_dir):
    with Port(serial_pair.a, SETTINGS, lock_dir=lock_dir) as a:
        with pytest.raises(ConfigError, match="deadline"):
            send_file(a, b"x", deadline=0)
        with pytest.raises(ConfigError, match="unknown XMODEM protocol"):
            receive_file(a, io.BytesIO(), protocol="ymodem")


# --- lrzsz: sx and rx on the other end --------------------------------------------------

needs_lrzsz = pytest.mark.skipif(
    not (shutil.which("sx") and shutil.which("rx")), reason="needs lrzsz (sx, rx)"
)

#: EOT again after 1.5 s (rx wants 1 s of silence after it), once: rx often loses its
#: last ACK as it exits (see serialhs.negotiate.xmodem), and that should not cost 22 s.
EOT_OPTIONS = {"eot_timeout": 1.5, "eot_retries": 1}


@contextlib.contextmanager
def lrzsz(argv: list[str], pty: str, cwd: Path) -> Iterator[subprocess.Popen[bytes]]:
    """Run an lrzsz program with its stdin and stdout on ``pty``; stderr goes to a
    file next to it. The line stays open until the program has ended, as a real
    cable would."""
    line = os.open(pty, os.O_RDWR | os.O_NOCTTY)
    try:
        with open(cwd / f"{argv[0]}.stderr", "wb") as err:
            proc = subprocess.Popen(argv, stdin=line, stdout=line, stderr=err, cwd=cwd)
        try:
            yield proc
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait(timeout=5)
    finally:
        os.close(line)


def finished(proc: subprocess.Popen[bytes], cwd: Path) -> str:
    """Wait (bounded) for an lrzsz program; its stderr."""
    proc.wait(timeout=20)
    text = (cwd / f"{Path(str(proc.args[0])).name}.stderr").read_text(errors="replace")
    assert proc.returncode == 0, text
    assert "Transfer complete" in text, text
    return text


def sent_to_rx(port: Port, pty: str, tmp_path: Path, data: bytes, rx_options: list[str]):
    (tmp_path / "source.bin").write_bytes(data)
    marks: list[float] = []
    with lrzsz(["rx", *rx_options, "out.bin"], pty, tmp_path) as proc:
        started = time.monotonic()
        result = send_file(
            port,
            tmp_path / "source.bin",
            protocol="xmodem-1k",
            progress=lambda p: marks.append(time.monotonic()),
            **EOT_OPTIONS,
        )
        finished(proc, tmp_path)
    # rx's last ACK may be lost as it exits; every block was acknowledged either way.
    assert result.ok or result.failure is Failure.UNCONFIRMED, result
    assert result.bytes == len(data)
    out = (tmp_path / "out.bin").read_bytes()
    assert out == padded(data, "xmodem-1k")  # rx keeps the SUB padding (binary mode)
    return result, (marks[-1] - started) if marks else 0.0


def received_from_sx(
    port: Port, pty: str, tmp_path: Path, data: bytes, sx_options: list[str], **options
):
    (tmp_path / "source.bin").write_bytes(data)
    with lrzsz(["sx", *sx_options, str(tmp_path / "source.bin")], pty, tmp_path) as proc:
        result = receive_file(port, tmp_path / "out.bin", **options)
        finished(proc, tmp_path)
    assert result.ok, result
    return result, (tmp_path / "out.bin").read_bytes()


SIZES_LRZSZ = [1024, 10 * 1024, 64 * 1024 + 7]


@needs_lrzsz
@pytest.mark.parametrize("size", SIZES_LRZSZ)
def test_xmodem_1k_to_rx_over_a_socat_pair(serial_pair, lock_dir, tmp_path, size):
    data = random.Random(size).randbytes(size)
    with Port(serial_pair.a, SETTINGS, lock_dir=lock_dir) as port:
        result, _ = sent_to_rx(port, serial_pair.b, tmp_path, data, ["-X", "-c", "-b"])
    assert result.check is Check.CRC16
    assert result.blocks == len(block_sizes(size, "xmodem-1k"))


@needs_lrzsz
def test_plain_xmodem_to_rx_without_crc(serial_pair, lock_dir, tmp_path):
    # rx asks with NAK unless given -c: checksums, 1 K blocks all the same.
    data = random.Random(1).randbytes(3000)
    with Port(serial_pair.a, SETTINGS, lock_dir=lock_dir) as port:
        result, _ = sent_to_rx(port, serial_pair.b, tmp_path, data, ["-X"])
    assert result.check is Check.CHECKSUM


@needs_lrzsz
def test_rx_in_text_mode_drops_crs_and_the_padding(serial_pair, lock_dir, tmp_path):
    # rx -a: CR LF becomes LF, and everything from the first SUB on is dropped.
    with (
        Port(serial_pair.a, SETTINGS, lock_dir=lock_dir) as port,
        lrzsz(["rx", "-X", "-a", "-c", "out.txt"], serial_pair.b, tmp_path) as proc,
    ):
        result = send_file(port, b"line one\r\nline two\r\n", **EOT_OPTIONS)
        finished(proc, tmp_path)
    assert result.ok or result.failure is Failure.UNCONFIRMED
    assert (tmp_path / "out.txt").read_bytes() == b"line one\nline two\n"


@needs_lrzsz
@pytest.mark.parametrize("size", SIZES_LRZSZ)
def test_sx_1k_to_serialhs_over_a_socat_pair(serial_pair, lock_dir, tmp_path, size):
    data = random.Random(size).randbytes(size)
    with Port(serial_pair.a, SETTINGS, lock_dir=lock_dir) as port:
        result, out = received_from_sx(port, serial_pair.b, tmp_path, data, ["-X", "-k", "-b"])
    # sx -k pads with SUB: 1 K blocks, then 128-byte ones for a tail of <= 896 bytes.
    assert out == padded(data, "xmodem-1k")
    assert result.blocks == len(block_sizes(size, "xmodem-1k"))
    assert result.check is Check.CRC16


@needs_lrzsz
@pytest.mark.parametrize(
    ("protocol", "check"), [("xmodem", Check.CHECKSUM), ("xmodem-crc", Check.CRC16)]
)
def test_sx_128_to_serialhs(serial_pair, lock_dir, tmp_path, protocol, check):
    data = random.Random(2).randbytes(1000)
    with Port(serial_pair.a, SETTINGS, lock_dir=lock_dir) as port:
        result, out = received_from_sx(
            port, serial_pair.b, tmp_path, data, ["-X"], protocol=protocol, length=len(data)
        )
    assert out == data  # the known length cuts the padding off
    assert result.check is check and result.blocks == 8


@needs_lrzsz
def test_sx_padding_stripped(serial_pair, lock_dir, tmp_path):
    data = random.Random(4).randbytes(2000).rstrip(bytes([SUB])) + b"end"
    with Port(serial_pair.a, SETTINGS, lock_dir=lock_dir) as port:
        _, out = received_from_sx(
            port, serial_pair.b, tmp_path, data, ["-X", "-k"], strip_padding=True
        )
    assert out == data


def line_time(nbytes: int) -> float:
    return nbytes * 10 / 115200  # 8N1: ten bits a byte


@needs_lrzsz
def test_xmodem_1k_to_rx_over_the_paced_wire(lock_dir, tmp_path):
    size = 64 * 1024 + 7
    data = random.Random(9).randbytes(size)
    with Wire(settings=SETTINGS) as wire, Port(wire.a.pty, SETTINGS, lock_dir=lock_dir) as port:
        result, took = sent_to_rx(port, wire.b.pty, tmp_path, data, ["-X", "-c", "-b"])
    assert result.blocks == 65 and result.retries in (0, 1)  # at most EOT once more
    # The wire paces the bytes: the blocks (1029 bytes each) cannot beat the line.
    frames = sum(n + 5 for n in block_sizes(size, "xmodem-1k"))
    assert took >= 0.95 * line_time(frames)
    assert took < 3 * line_time(frames) + 5


@needs_lrzsz
def test_sx_1k_to_serialhs_over_the_paced_wire(lock_dir, tmp_path):
    size = 64 * 1024 + 7
    data = random.Random(10).randbytes(size)
    with Wire(settings=SETTINGS) as wire, Port(wire.a.pty, SETTINGS, lock_dir=lock_dir) as port:
        started = time.monotonic()
        result, out = received_from_sx(port, wire.b.pty, tmp_path, data, ["-X", "-k", "-b"])
        took = time.monotonic() - started
    assert result.blocks == 65 and result.retries == 0
    assert out == padded(data, "xmodem-1k")
    frames = sum(n + 5 for n in block_sizes(size, "xmodem-1k"))
    assert took >= 0.95 * line_time(frames)
    assert took < 3 * line_time(frames) + 5
