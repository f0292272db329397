"""The UART line model, checked against bit patterns worked out by hand.

Notation in the comments: T is one bit-time of the sender. Slots of a sent
frame are numbered from its falling edge: slot 0 is the start bit, slots 1..8
the data bits d0..d7 (least significant first), then parity and stop bits.
``sN`` is the level of slot N. A receiver samples bit k of its own frame at
``edge + (k + 1/2) * its bit time``; k = 0 is the start bit, k = 1..8 give the
received bits r0..r7, and the last sample is the stop bit.
"""

from __future__ import annotations

import time
from fractions import Fraction
from pathlib import Path

import pytest

from serialhs.driver.settings import SerialSettings
from serialhs.errors import ConfigError
from serialhs.sim.uart import (
    MARK,
    SPACE,
    RxChar,
    UartReceiver,
    UartTransmitter,
    decode_frame,
    frame_bit_count,
    frame_bits,
    frame_time,
    frame_waveform,
    parity_bit,
    same_timing,
    transcode,
)

ROOT = Path(__file__).resolve().parent.parent


def s(text: str) -> SerialSettings:
    return SerialSettings.parse(text)


def at(bits: Fraction | int, baud: int) -> float:
    """The float time of ``bits`` bit-times at ``baud``, computed exactly."""
    return float(Fraction(bits) / baud)


FE = {"framing_error": True}
PE = {"parity_error": True}
BREAK = {"framing_error": True, "is_break": True}


# --- frames ---------------------------------------------------------------------------


# 'A' = 0x41 = 0b0100_0001: d0..d7 = 1,0,0,0,0,0,1,0 (two ones).
# 7 bits keep d0..d6 = 1,0,0,0,0,0,1 (still two ones); 5 bits keep 0x01: 1,0,0,0,0.
# Even parity makes the ones of data + parity even: two ones -> parity 0.
# Odd parity makes them odd: two ones -> parity 1. Mark is always 1, space always 0.
@pytest.mark.parametrize(
    ("framing", "bits"),
    [
        ("8N1", (0, 1, 0, 0, 0, 0, 0, 1, 0)),
        ("7E1", (0, 1, 0, 0, 0, 0, 0, 1, 0)),
        ("8O1", (0, 1, 0, 0, 0, 0, 0, 1, 0, 1)),
        ("7M2", (0, 1, 0, 0, 0, 0, 0, 1, 1)),
        ("7S1", (0, 1, 0, 0, 0, 0, 0, 1, 0)),
        ("5N1.5", (0, 1, 0, 0, 0, 0)),
    ],
)
def test_frame_bits_of_A(framing, bits):
    assert frame_bits(0x41, s(framing)) == bits


# 'C' = 0x43 = 0b0100_0011: d0..d7 = 1,1,0,0,0,0,1,0 (three ones, an odd count).
# Even parity needs one more one -> 1; odd parity already has an odd count -> 0.
@pytest.mark.parametrize(
    ("framing", "bits"),
    [
        ("8E1", (0, 1, 1, 0, 0, 0, 0, 1, 0, 1)),
        ("8O1", (0, 1, 1, 0, 0, 0, 0, 1, 0, 0)),
        ("7E1", (0, 1, 1, 0, 0, 0, 0, 1, 1)),
        ("7O1", (0, 1, 1, 0, 0, 0, 0, 1, 0)),
    ],
)
def test_frame_bits_of_C_odd_ones(framing, bits):
    assert frame_bits(0x43, s(framing)) == bits


def test_parity_sees_only_the_data_bits_sent():
    # 0xC1 at 7 bits sends 0x41 (bit 7 is not sent): two ones -> even parity 0.
    assert parity_bit(0xC1, s("7E1")) == 0
    assert parity_bit(0xC1, s("8E1")) == 1  # 0xC1 has three ones at 8 bits
    assert parity_bit(0x00, s("8E1")) == 0
    assert parity_bit(0x00, s("8O1")) == 1
    assert parity_bit(0xFF, s("8E1")) == 0
    assert parity_bit(0x41, s("8M1")) == 1
    assert parity_bit(0x43, s("8S1")) == 0
    assert parity_bit(0x41, s("8N1")) is None


@pytest.mark.parametrize(
    ("framing", "count"),
    [("8N1", 10), ("8E1", 11), ("7O2", 11), ("8N2", 11), ("5N1.5", 8), ("5N1", 7)],
)
def test_frame_bit_count(framing, count):
    assert frame_bit_count(s(framing)) == count


@pytest.mark.parametrize("value", [-1, 256, 1.0, True, None])
def test_frame_bits_rejects_non_characters(value):
    with pytest.raises(ConfigError, match=r"0\.\.255"):
        frame_bits(value, s("8N1"))


def test_frame_waveform_of_A_8N1():
    # levels 0 | 1 0 0 0 0 0 1 0 | 1: runs start(1), d0(1), d1..d5(5), d6(1), d7(1), stop(1)
    t = Fraction(1, 9600)
    assert frame_waveform(0x41, s("9600 8N1")) == [
        (0, t),
        (1, t),
        (0, 5 * t),
        (1, t),
        (0, t),
        (1, t),
    ]


def test_frame_waveform_one_and_a_half_stop_bits():
    # 5N1.5 'A' sends 0x01: 0 | 1 0 0 0 0 | stop 1.5 bits
    t = Fraction(1, 1200)
    assert frame_waveform(0x41, s("1200 5N1.5")) == [(0, t), (1, t), (0, 4 * t), (1, t * 3 / 2)]
    assert sum(d for _, d in frame_waveform(0x41, s("1200 5N1.5"))) == frame_time(s("1200 5N1.5"))


def test_frame_waveform_flips():
    t = Fraction(1, 9600)
    # flipping slot 1 (d0) of 'A' leaves 0 0 0 0 0 0 0 1 0 1: start and d0..d5 are one run
    assert frame_waveform(0x41, s("9600 8N1"), flips=1 << 1) == [
        (0, 7 * t),
        (1, t),
        (0, t),
        (1, t),
    ]
    # flipping the stop bit (slot 9) makes the frame end in space
    assert frame_waveform(0x41, s("9600 8N1"), flips=1 << 9)[-1] == (0, 2 * t)
    with pytest.raises(ConfigError, match="10 bit slots"):
        frame_waveform(0x41, s("9600 8N1"), flips=1 << 10)
    with pytest.raises(ConfigError):
        frame_waveform(0x41, s("9600 8N1"), flips=-1)


def test_frame_time_matches_char_time():
    for text in ("9600 8N1", "115200 7E2", "1200 5N1.5", "300 8M1"):
        assert float(frame_time(s(text))) == pytest.approx(s(text).char_time)


# --- matched settings -------------------------------------------------------------------


@pytest.mark.parametrize("text", ["9600 8N1", "115200 8E1", "2400 7O2", "1200 5N1.5"])
def test_every_byte_round_trips_at_matched_settings(text):
    settings = s(text)
    mask = (1 << settings.bytesize) - 1
    data = bytes(range(256))
    received = transcode(data, settings, settings)
    assert [c.value for c in received] == [b & mask for b in data]
    assert all(c.ok for c in received)
    # back to back, character n completes n frames after the first edge, at its stop
    # sample: half a bit after start, data and parity (that is, len(frame_bits) + 1/2 bits)
    stop_sample = (len(frame_bits(0, settings)) + Fraction(1, 2)) / settings.baudrate
    assert [c.time for c in received[:5]] == [
        float(n * frame_time(settings) + stop_sample) for n in range(5)
    ]


@pytest.mark.parametrize("text", ["8N1", "8E1", "7O2", "6M1", "5S1.5"])
def test_decode_frame_matched(text):
    settings = s(text)
    mask = (1 << settings.bytesize) - 1
    for value in range(256):
        bits = frame_bits(value, settings)
        sent = bits + (MARK,) * (frame_bit_count(settings) - len(bits))
        char = decode_frame(sent, settings, time=1.5)
        assert char == RxChar(value & mask, time=1.5)
        # the sampled bits alone (only the first stop bit) decode the same
        assert decode_frame((*bits, MARK), settings, time=1.5) == char


def test_decode_frame_errors_and_break():
    n81 = s("8N1")
    e81 = s("8E1")
    assert decode_frame((0, 1, 0, 0, 0, 0, 0, 1, 0, 0), n81) == RxChar(0x41, **FE)
    # 'A' with parity 1 instead of 0
    assert decode_frame((0, 1, 0, 0, 0, 0, 0, 1, 0, 1, 1), e81) == RxChar(0x41, **PE)
    # all space: a break, value 0, no parity error reported
    assert decode_frame((0,) * 11, s("8O1")) == RxChar(0, **BREAK)
    # a start bit that reads as mark starts no frame here
    assert decode_frame((1,) * 10, n81) is None
    with pytest.raises(ConfigError, match="10 to 10 levels"):
        decode_frame((0, 1, 1), n81)
    with pytest.raises(ConfigError, match="0 or 1"):
        decode_frame((0, 2, 0, 0, 0, 0, 0, 0, 0, 1), n81)


# --- a receiver twice as fast as the sender ----------------------------------------------
#
# 9600 8N1 sent, 19200 8N1 received: one sent bit T lasts two received bits.
# Frame 1 starts on the sender's start edge; receiver sample k falls at
# (2k+1)T/4, in sent slot floor((2k+1)/4):
#   k:     0    1    2    3    4    5    6    7    8    9(stop)
#   at:   .25  .75 1.25 1.75 2.25 2.75 3.25 3.75 4.25 4.75  (T)
#   slot:  0    0    1    1    2    2    3    3    4    4
# so start = s0, r0..r7 = s0 s1 s1 s2 s2 s3 s3 s4 (= 0 d0 d0 d1 d1 d2 d2 d3), stop = d3,
# and the frame completes at 4.75T.


def test_9600_to_19200_0x55():
    # 0x55: d0..d7 = 1 0 1 0 1 0 1 0; s9 = stop = 1, then idle (1).
    # Frame 1: r = 0 1 1 0 0 1 1 0 -> 2+4+32+64 = 0x66; stop = d3 = 0 -> framing error, at 4.75T.
    # The line is space at 4.75T (d3), so the receiver waits for mark: d4 = 1 at 5T; the next
    # falling edge is d5 at 6T. Frame 2 from 6T: slot = 6 + floor((2k+1)/4):
    #   start s6 = d5 = 0; r = s6 s7 s7 s8 s8 s9 s9 s10 = 0 1 1 0 0 1 1 1 -> 2+4+32+64+128 = 0xE6;
    #   stop s10 = idle = 1 -> no error, at 6T + 4.75T = 10.75T.
    assert transcode(b"\x55", s("9600 8N1"), s("19200 8N1")) == [
        RxChar(0x66, **FE, time=at(Fraction(19, 4), 9600)),
        RxChar(0xE6, time=at(Fraction(43, 4), 9600)),
    ]


def test_9600_to_19200_0x00_is_a_break():
    # 0x00: r = 0 0 0 0 0 0 0 0 and stop = d3 = 0: every sample space -> a break at 4.75T.
    # The line stays space until the stop bit at 9T; after that there is no falling edge.
    assert transcode(b"\x00", s("9600 8N1"), s("19200 8N1")) == [
        RxChar(0, **BREAK, time=at(Fraction(19, 4), 9600))
    ]


def test_9600_to_19200_0xff_and_0xf0():
    # 0xFF: r = 0 1 1 1 1 1 1 1 -> 0xFE, stop = d3 = 1 -> fine, at 4.75T; the rest is mark.
    assert transcode(b"\xff", s("9600 8N1"), s("19200 8N1")) == [
        RxChar(0xFE, time=at(Fraction(19, 4), 9600))
    ]
    # 0xF0: d0..d3 = 0 -> r all 0, stop d3 = 0 -> break at 4.75T; d4..d7 and stop are mark.
    assert transcode(b"\xf0", s("9600 8N1"), s("19200 8N1")) == [
        RxChar(0, **BREAK, time=at(Fraction(19, 4), 9600))
    ]


# --- a receiver half as fast as the sender ---------------------------------------------
#
# 19200 8N1 sent, 9600 8N1 received: one received bit lasts two sent bits U.
# Sample k falls at (k + 1/2) * 2U = (2k+1)U after the edge: exactly on a sent slot
# boundary, where the rule "a sample on a transition sees the new level" gives s(2k+1).
# So start = s1 = d0, r0..r7 = s3 s5 s7 s9 s11 s13 s15 s17, stop = s19; done at 19U.


def test_19200_to_9600_0x00():
    # 0x00: s0..s8 = 0, s9 = stop = 1, then idle.
    # start = s1 = 0 (accepted); r = s3 s5 s7 = 0 0 0, s9.. = 1 1 1 1 1 -> 8+16+32+64+128 = 0xF8;
    # stop s19 = 1 -> no error, at 19U.
    assert transcode(b"\x00", s("19200 8N1"), s("9600 8N1")) == [RxChar(0xF8, time=at(19, 19200))]


def test_19200_to_9600_0x55_and_0xff_give_nothing():
    # 0x55: d0 = 1, so the start sample s1 reads mark: not a start bit. Every later falling
    # edge is at an even slot (d1, d3, d5, d7 at 2U, 4U, 6U, 8U) and its start sample one
    # slot on reads d2, d4, d6 and the stop bit: all 1. Nothing is received.
    assert transcode(b"\x55", s("19200 8N1"), s("9600 8N1")) == []
    # 0xFF: the start sample reads d0 = 1; after it the line never falls again.
    assert transcode(b"\xff", s("19200 8N1"), s("9600 8N1")) == []


def test_19200_to_9600_0x0f_and_0xf0():
    # 0x0F: d0..d3 = 1, d4..d7 = 0. The start sample s1 = d0 = 1 -> no frame. The next
    # falling edge is d4 at 5U; from there start = s6 = d5 = 0, r0 = s8 = d7 = 0,
    # r1..r7 = s10.. = idle 1 -> 0xFE, stop s24 = 1, at 5U + 19U = 24U.
    assert transcode(b"\x0f", s("19200 8N1"), s("9600 8N1")) == [RxChar(0xFE, time=at(24, 19200))]
    # 0xF0: d0..d3 = 0, d4..d7 = 1. start s1 = 0; r0 = s3 = d2 = 0, r1 = s5 = d4 = 1,
    # r2 = s7 = 1, r3 = s9 = stop = 1, r4..r7 idle 1 -> 0xFE, stop 1, at 19U.
    assert transcode(b"\xf0", s("19200 8N1"), s("9600 8N1")) == [RxChar(0xFE, time=at(19, 19200))]


def test_19200_to_9600_two_zeros_back_to_back():
    # s0..s8 = 0, s9 = 1, s10..s18 = 0 (second start and data), s19 = 1, idle.
    # start s1 = 0; r = s3 s5 s7 s9 s11 s13 s15 s17 = 0 0 0 1 0 0 0 0 -> 0x08;
    # stop s19 = 1 -> fine at 19U. After it the line stays mark: nothing more.
    assert transcode(b"\x00\x00", s("19200 8N1"), s("9600 8N1")) == [
        RxChar(0x08, time=at(19, 19200))
    ]


# --- same rate, the receiver expects parity the sender does not send --------------------
#
# 8N1 sent, 8E1 received at 9600: the receiver samples slots 0..8 as start and data,
# slot 9 (the sender's stop bit, always 1) as parity and slot 10 as stop: idle (1) after a
# lone character, the next start bit (0) when characters go back to back.
# Even parity expects the parity bit to equal the count of ones mod 2; it reads 1.


@pytest.mark.parametrize(
    ("value", "flags"),
    [
        (0x41, PE),  # two ones: expects 0, reads 1 -> parity error
        (0x43, {}),  # three ones: expects 1, reads 1 -> fine
        (0x00, PE),  # no ones: expects 0 -> parity error (not a break: slot 9 is mark)
        (0x01, {}),
    ],
)
def test_8n1_to_8e1_lone_characters(value, flags):
    # stop sample at 10.5T
    assert transcode(bytes([value]), s("9600 8N1"), s("9600 8E1")) == [
        RxChar(value, **flags, time=at(Fraction(21, 2), 9600))
    ]


def test_8n1_to_8e1_back_to_back_AC():
    # 'A' then 'C' with no gap: slots 10..19 are 'C' = 0 | 1 1 0 0 0 0 1 0 | 1, then idle.
    # Frame 1: 0x41, parity reads s9 = 1 (expects 0) -> parity error; stop reads s10 = 0
    # ('C' start bit) -> framing error; at 10.5T. The line is space there, so the receiver
    # waits for mark (s11 = 1 at 11T) and the next falling edge (s13 = d2 of 'C', 13T).
    # Frame 2 from 13T: start s13 = 0; r = s14..s21 = 0 0 0 1 0 1 1 1 (d3 d4 d5 d6 d7 stop
    # idle idle) -> 8+32+64+128 = 0xE8 (four ones, expects 0); parity s22 = 1 -> parity
    # error; stop s23 = 1; at 13T + 10.5T = 23.5T.
    assert transcode(b"AC", s("9600 8N1"), s("9600 8E1")) == [
        RxChar(0x41, **FE, **PE, time=at(Fraction(21, 2), 9600)),
        RxChar(0xE8, **PE, time=at(Fraction(47, 2), 9600)),
    ]


def test_8n1_to_8e1_back_to_back_CA():
    # 'C' then 'A': frame 1 is 0x43, parity reads 1 (expects 1) -> fine; stop reads the
    # start bit of 'A' -> framing error, at 10.5T. Mark again at s11 = d0 of 'A' = 1; falling
    # edge at s12 = d1 = 0 (12T). Frame 2: start s12; r = s13..s20 = 0 0 0 0 1 0 1 1
    # (d2..d7, stop, idle) -> 16+64+128 = 0xD0 (three ones, expects 1); parity s21 = 1
    # -> fine; stop s22 = 1; at 12T + 10.5T = 22.5T.
    assert transcode(b"CA", s("9600 8N1"), s("9600 8E1")) == [
        RxChar(0x43, **FE, time=at(Fraction(21, 2), 9600)),
        RxChar(0xD0, time=at(Fraction(45, 2), 9600)),
    ]


# --- same rate, the sender sends parity the receiver does not expect --------------------
#
# 8E1 sent, 8N1 received: the receiver's stop sample (slot 9, at 9.5T) reads the sender's
# PARITY bit, not its stop bit. The data always comes through; there is a framing error
# exactly when the parity bit is 0, i.e. for values with an even number of ones.


def test_8e1_to_8n1():
    # 'C' (three ones): parity 1 -> reads as a good stop bit -> 0x43, no error.
    assert transcode(b"C", s("9600 8E1"), s("9600 8N1")) == [RxChar(0x43, time=at(9.5, 9600))]
    # 'A' (two ones): parity 0 -> framing error; the line is space there, mark again at the
    # stop bit (10T), and nothing follows.
    assert transcode(b"A", s("9600 8E1"), s("9600 8N1")) == [RxChar(0x41, **FE, time=at(9.5, 9600))]
    # 'A' 'A' back to back (11 slots each): after the first framing error the line returns
    # to mark at 10T and falls at the second start bit (11T): 0x41 again, with the same
    # framing error at 11T + 9.5T = 20.5T.
    assert transcode(b"AA", s("9600 8E1"), s("9600 8N1")) == [
        RxChar(0x41, **FE, time=at(9.5, 9600)),
        RxChar(0x41, **FE, time=at(20.5, 9600)),
    ]
    # every value comes through; the errors are exactly the even-parity ones
    received = transcode(bytes(range(256)), s("9600 8E1"), s("9600 8N1"))
    assert [c.value for c in received] == list(range(256))
    assert [c.framing_error for c in received] == [v.bit_count() % 2 == 0 for v in range(256)]


# --- breaks ---------------------------------------------------------------------------------


def test_break_then_a_character():
    # A break of three frames (30T) at 9600 8N1: the receiver starts a frame at 0, samples
    # space everywhere, and reports a break at its stop sample (9.5T). It then waits for
    # mark (30T); 5T of idle later 'A' starts at 35T and completes at 35T + 9.5T = 44.5T.
    settings = s("9600 8N1")
    t = Fraction(1, 9600)
    sender = UartTransmitter(settings)
    sender.send_break(30 * t)
    sender.idle(5 * t)
    sender.frame(0x41)
    receiver = UartReceiver(settings)
    received = []
    for level, length in sender.take():
        received += receiver.feed(level, length)
    received += receiver.drain()
    assert received == [
        RxChar(0, **BREAK, time=at(9.5, 9600)),
        RxChar(0x41, time=at(44.5, 9600)),
    ]


def test_an_hour_of_break_is_one_break_char_and_cheap():
    receiver = UartReceiver(s("115200 8N1"))
    started = time.perf_counter()
    received = receiver.feed(SPACE, 3600.0)
    received += receiver.feed(SPACE, 3600.0)
    received += receiver.idle(10_000.0)
    assert time.perf_counter() - started < 0.05
    assert received == [RxChar(0, **BREAK, time=at(9.5, 115200))]


def test_an_hour_of_idle_is_cheap():
    receiver = UartReceiver(s("921600 8N1"), start_time=5.0)
    started = time.perf_counter()
    assert receiver.idle(3605.0) == []
    assert receiver.feed(MARK, 3600.0) == []
    assert time.perf_counter() - started < 0.05
    assert receiver.now == 7205.0
    # and it still receives afterwards
    received = []
    for level, length in frame_waveform(0x5A, s("921600 8N1")):
        received += receiver.feed(level, length)
    assert [c.value for c in received] == [0x5A]


# --- tolerance ---------------------------------------------------------------------------
#
# With r = receiver bit / sender bit, sample k lands in sent slot floor((k + 1/2) r).
# It lands in slot k while k <= (k + 1/2) r < k + 1.
# r = 1.02 (receiver 2% slow): 0.02k < 0.49 -> k < 24.5; r = 1/1.02 (2% fast):
# k <= 25. Both cover all ten samples of 8N1, and the stop sample (9.5r < 10) comes
# before the next start edge, so the receiver resynchronises on every character.


@pytest.mark.parametrize(("tx", "rx"), [(9792, 9600), (9600, 9792)])
def test_two_percent_off_still_decodes(tx, rx):
    assert abs(tx - rx) / min(tx, rx) == pytest.approx(0.02)
    data = bytes(range(256)) * 4
    received = transcode(data, s(f"{tx} 8N1"), s(f"{rx} 8N1"))
    assert [c.value for c in received] == list(data)
    assert all(c.ok for c in received)
    assert same_timing(s(f"{tx} 8N1"), s(f"{rx} 8N1"), tolerance=0.025)


# r = 1.06 (sent at 10176, received at 9600): sample slots floor((k + 1/2) * 1.06) are
#   k:    0     1     2     3     4     5     6     7     8     9
#   at: 0.53  1.59  2.65  3.71  4.77  5.83  6.89  7.95  9.01  10.07
#   slot: 0     1     2     3     4     5     6     7     9     10
# r7 reads the sender's stop bit (always 1), the stop sample reads slot 10: idle or the
# next start bit.


def test_six_percent_slow_receiver_fails():
    tx, rx = s("10176 8N1"), s("9600 8N1")
    # a lone 'A': r0..r6 = d0..d6, r7 = stop = 1 -> 0xC1, stop reads idle -> no error
    assert transcode(b"A", tx, rx) == [RxChar(0xC1, time=at(9.5, 9600))]
    # 'A' 'A' back to back: frame 1 is 0xC1 and its stop sample reads the second start bit
    # -> framing error, at 9.5 receiver bits. Mark again at slot 11 (d0 = 1), falling edge
    # at slot 12 (d1). From there slots 12 + (0 1 2 3 4 5 6 7 9 10):
    #   start s12 = 0; r = s13..s19, s21 = d2 d3 d4 d5 d6 d7 stop idle = 0 0 0 0 1 0 1 1
    #   -> 16+64+128 = 0xD0; stop s22 = idle -> fine, at 12 sent bits + 9.5 received bits.
    assert transcode(b"AA", tx, rx) == [
        RxChar(0xC1, **FE, time=at(9.5, 9600)),
        RxChar(0xD0, time=float(Fraction(12, 10176) + Fraction(19, 2) / 9600)),
    ]
    assert not same_timing(tx, rx, tolerance=0.05)


def test_six_percent_fast_receiver_fails():
    # r = 1/1.06 (sent at 9600, received at 10176): floor((k + 1/2) / 1.06) for k = 0..9 is
    # 0 1 2 3 4 5 6 7 8 8: the stop sample (8.96T) reads d7.
    tx, rx = s("9600 8N1"), s("10176 8N1")
    # 'A' has d7 = 0 -> framing error (data intact), at 9.5 receiver bits
    assert transcode(b"A", tx, rx) == [RxChar(0x41, **FE, time=at(9.5, 10176))]
    # 0xC1 has d7 = 1 -> fine
    assert transcode(b"\xc1", tx, rx) == [RxChar(0xC1, time=at(9.5, 10176))]
    received = transcode(bytes(range(256)), tx, rx)
    assert not all(c.ok for c in received)


def test_same_timing():
    assert same_timing(s("9600 8N1"), s("9600 8N1"))
    assert same_timing(s("9600 8N1"), s("9600 8N2"))  # only the first stop bit is sampled
    assert same_timing(s("9600 8N1"), s("9650 8N1"))  # 0.52%
    assert not same_timing(s("9600 8N1"), s("9792 8N1"))  # 2% > 1%
    assert not same_timing(s("9600 8N1"), s("9600 8E1"))
    assert not same_timing(s("9600 8N1"), s("9600 7N1"))
    assert not same_timing(s("9600 8N1"), s("19200 8N1"))
    with pytest.raises(ConfigError):
        same_timing(s("9600 8N1"), s("9600 8N1"), tolerance=1.5)


# --- flipped bits --------------------------------------------------------------------------


def receive(settings: SerialSettings, value: int, flips: int) -> list[RxChar]:
    receiver = UartReceiver(settings)
    received = []
    for level, length in frame_waveform(value, settings, flips=flips):
        received += receiver.feed(level, length)
    return received + receiver.drain() + receiver.idle(receiver.now_exact + 1)


def test_flipped_data_bit():
    # 8N1 'A' with slot 1 (d0) flipped: 0x40, no error
    assert [c.value for c in receive(s("8N1"), 0x41, 1 << 1)] == [0x40]
    assert receive(s("8N1"), 0x41, 1 << 1)[0].ok
    # 8E1: the same flip also breaks the parity (0x40 has one 1, parity 0 was sent)
    assert receive(s("8E1"), 0x41, 1 << 1) == [RxChar(0x40, **PE, time=at(10.5, 9600))]


def test_flipped_parity_and_stop_bits():
    # 8E1 slots: 0 start, 1..8 data, 9 parity, 10 stop
    assert receive(s("8E1"), 0x41, 1 << 9) == [RxChar(0x41, **PE, time=at(10.5, 9600))]
    assert receive(s("8E1"), 0x41, 1 << 10) == [RxChar(0x41, **FE, time=at(10.5, 9600))]


def test_flipped_start_bit():
    # 8N1 'A' with the start bit flipped: 1 | 1 0 0 0 0 0 1 0 | 1. The first falling edge is
    # d1 at 2T: start s2 = 0; r = s3..s10 = d2..d7 stop idle = 0 0 0 0 1 0 1 1 -> 0xD0;
    # stop s11 = 1; at 2T + 9.5T = 11.5T.
    assert receive(s("8N1"), 0x41, 1) == [RxChar(0xD0, time=at(11.5, 9600))]


def test_flipped_half_stop_bit_is_a_glitch():
    # 5N1.5 'A' (sends 0x01): slots 0 start, 1..5 data, 6 stop, 7 the half stop bit.
    # The receiver samples the first stop bit (6.5T): 0x01, fine. Flipping slot 7 puts space
    # on [7T, 7.5T): a falling edge at 7T whose start sample at 7.5T falls exactly on the
    # return to mark, and so sees mark (the new level): no second frame.
    assert receive(s("1200 5N1.5"), 0x41, 1 << 7) == [RxChar(0x01, time=at(6.5, 1200))]


# --- the receiver itself ----------------------------------------------------------------


def test_edge_rule_sample_on_a_transition_sees_the_new_level():
    settings = s("9600 8N1")
    half = Fraction(1, 19200)
    receiver = UartReceiver(settings)
    # space for exactly half a bit: the start sample is at the return to mark -> no frame
    assert receiver.feed(SPACE, half) == []
    assert receiver.state == "sampling a frame"  # the sample at the end waits for more
    assert receiver.feed(MARK, 20 * half) == []
    assert receiver.state == "waiting for a start bit"
    # space a hair longer than half a bit: the start sample sees space -> a frame (0xFF)
    receiver = UartReceiver(settings)
    receiver.feed(SPACE, half + Fraction(1, 10**12))
    assert [c.value for c in receiver.feed(MARK, 20 * half)] == [0xFF]


def test_feeding_in_pieces_changes_nothing():
    settings, data = s("9600 8N1"), b"\x00\x55Hello\xff\x0f"
    tx = UartTransmitter(s("19200 8E1"))
    tx.write(data, gap=0.0001)
    tx.send_break(0.003)
    tx.write(data)
    runs = tx.take()
    whole, pieces = UartReceiver(settings), UartReceiver(settings)
    one = [c for level, length in runs for c in whole.feed(level, length)]
    split = []
    for level, length in runs:
        for part in (length / 3, length / 3, length / 6, length / 6):
            split += pieces.feed(level, part)
        split += pieces.feed(level, 0)
    assert one and split == one
    assert whole.now_exact == pieces.now_exact


def test_transmitter_merges_runs_and_gaps():
    t = Fraction(1, 9600)
    tx = UartTransmitter(s("9600 8N1"))
    tx.write(b"\xff\xff", gap=2 * t)
    # 0 | 11111111 | 1, gap 2T, 0 | 11111111 | 1
    assert tx.duration == 22 * t
    assert tx.take() == [(0, t), (1, 11 * t), (0, t), (1, 9 * t)]
    assert tx.take() == []
    with pytest.raises(ConfigError):
        tx.idle(-1.0)


def test_transcode_start_and_gap_shift_times():
    received = transcode(b"AB", s("9600 8N1"), s("9600 8N1"), start=100.0, gap=Fraction(1, 9600))
    assert [c.value for c in received] == [0x41, 0x42]
    assert received[0].time == float(100 + Fraction(19, 2) / 9600)
    assert received[1].time == float(100 + Fraction(10 + 1, 9600) + Fraction(19, 2) / 9600)


def test_idle_in_the_past_does_nothing_and_drain():
    receiver = UartReceiver(s("9600 8N1"), start_time=1.0)
    assert receiver.idle(0.5) == []
    assert receiver.now == 1.0
    assert receiver.frame_end is None
    receiver.feed(SPACE, Fraction(1, 9600))  # a start bit, then nothing fed
    assert receiver.frame_end == 1 + Fraction(19, 2) / 9600
    # the line stays at mark: 0 | 1111 1111 | 1 -> 0xFF
    assert receiver.drain() == [RxChar(0xFF, time=at(9.5, 9600) + 1.0)]
    assert receiver.drain() == []


@pytest.mark.parametrize(
    ("level", "duration", "match"),
    [
        (2, 1.0, "0 .space. or 1 .mark."),
        (1, -1.0, "negative"),
        (1, float("nan"), "finite"),
        (1, float("inf"), "finite"),
        (1, "1", "number of seconds"),
    ],
)
def test_feed_rejects_bad_input(level, duration, match):
    with pytest.raises(ConfigError, match=match):
        UartReceiver(s("9600 8N1")).feed(level, duration)
