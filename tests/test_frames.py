"""SHS frames and capabilities: the codec, the resynchronising decoder, the TLV
list, the selection rule, and the test vectors docs/protocol.md publishes."""

from __future__ import annotations

import os
import random
import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from serialhs.driver.settings import FlowControl, Parity, SerialSettings, StopBits
from serialhs.errors import (
    CapabilityError,
    ConfigError,
    FrameError,
    IncompatiblePeerError,
    LocalProtocolError,
    RemoteProtocolError,
)
from serialhs.negotiate import capabilities as caps_mod
from serialhs.negotiate import frames as frames_module
from serialhs.negotiate.capabilities import (
    FRAMING_PREFERENCE,
    RATE_TABLE,
    Capabilities,
    CapType,
    Choice,
    Framing,
    Identity,
    TransferProtocol,
    common_rates,
    decode_capabilities,
    decode_settings,
    encode_capabilities,
    encode_settings,
    ladder,
    select,
)
from serialhs.negotiate.frames import (
    CRC_SIZE,
    FLAG,
    HEADER_SIZE,
    MAX_PAYLOAD,
    PROBE_PATTERN,
    BadFrame,
    BadReason,
    Flags,
    Frame,
    FrameDecoder,
    FrameType,
    RstCode,
    crc32c,
    decode,
    decode_dack,
    decode_nak,
    encode,
    encode_dack,
    encode_nak,
    escape,
    escaped_size,
    pack,
    session_id,
    unescape,
    unescape_py,
    unpack,
)
from serialhs.negotiate.handshake import (
    Session,
    parse_probe,
    parse_rst,
    parse_step,
    parse_switch,
    probe_payload,
    refusal_frame,
    rst_payload,
    step_payload,
    switch_payload,
    syn_ack_frame,
    syn_frame,
)

DOC = Path(__file__).resolve().parent.parent / "docs" / "protocol.md"
FAST = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# -- strategies --------------------------------------------------------------------------------


def frames_of(payload: st.SearchStrategy[bytes], **fields: st.SearchStrategy[int]):
    """Frames with any header fields and payloads from ``payload``."""
    return st.builds(
        Frame,
        type=st.integers(0, 255),
        session=st.integers(0, 0xFFFFFFFF),
        seq=st.integers(0, 0xFFFFFFFF),
        ack=st.integers(0, 0xFFFFFFFF),
        payload=payload,
        flags=st.integers(0, 255),
        **fields,
    )


frames = frames_of(st.binary(max_size=600))


# -- CRC ---------------------------------------------------------------------------------------


def crc32c_bitwise(data: bytes) -> int:
    """CRC-32C from its parameters, bit by bit (reflected poly 0x82F63B78)."""
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


#: the CRC-32C of the set-up's C extension: the processor's instruction where it
#: has one, tables anywhere; and the Python reference
CRCS = [
    pytest.param(frames_module.crc32c_py, id="python"),
    pytest.param(frames_module._crc32c_c, id="c"),
    pytest.param(lambda data: frames_module._c().crc32c_portable(data), id="c-tables"),
]


@pytest.mark.parametrize("crc", CRCS)
def test_crc_check_value(crc):
    assert crc(b"123456789") == 0xE3069283
    assert crc32c_bitwise(b"123456789") == 0xE3069283
    assert crc(b"") == 0


@pytest.mark.parametrize("crc", CRCS)
@given(data=st.binary(max_size=300), offset=st.integers(0, 7))
@FAST
def test_crc_matches_its_parameters(crc, data, offset):
    # any length and any alignment in memory: the C versions take 8 bytes at a time
    assert crc(memoryview(bytes(offset) + data)[offset:]) == crc32c_bitwise(data)


@pytest.mark.parametrize("crc", CRCS[1:])
def test_the_c_crc_of_the_largest_frame_is_the_references(crc):
    data = random.Random(3).randbytes(HEADER_SIZE + MAX_PAYLOAD)
    assert crc(data) == frames_module.crc32c_py(data)


def shortest_undetected_error(polynomial: int, bits: int) -> int | None:
    """The length in bits (data and CRC) of the shortest error pattern of 2 or 3
    flipped bits that a 32-bit CRC with ``polynomial`` (normal form) does not
    detect, or None if there is none within ``bits``. Such a pattern is a multiple
    of the polynomial: x^i + x^j, or (shifted to start at bit 0) 1 + x^i + x^j; so
    one pass over x^k mod polynomial finds the first k where x^k = 1 or x^k =
    1 + x^i for an earlier i."""
    seen: dict[int, int] = {}
    residue = 1
    for k in range(1, bits):
        residue <<= 1
        if residue >> 32:
            residue = (residue ^ polynomial) & 0xFFFFFFFF
        if residue == 1 or residue ^ 1 in seen:
            return k + 1
        seen[residue] = k
    return None


def test_the_crc_detects_any_three_bit_errors_in_the_largest_frame():
    """docs/protocol.md §3: Hamming distance 4 over the largest frame. The same
    search finds the Ethernet CRC's bound (91 607 data bits, Koopman's tables),
    which frames this long would exceed."""
    frame_bits = 8 * (HEADER_SIZE + MAX_PAYLOAD + CRC_SIZE)
    assert shortest_undetected_error(0x1EDC6F41, frame_bits) is None
    assert shortest_undetected_error(0x04C11DB7, frame_bits) == 91_607 + 1 + 32


def test_session_id_depends_on_both_isns_and_their_order():
    assert session_id(1, 2) != session_id(2, 1)
    assert session_id(1, 2) == crc32c(bytes.fromhex("00000001 00000002"))
    assert all(session_id(i, j) != 0 for i in range(50) for j in range(50))


# -- escaping and the codec --------------------------------------------------------------------


@given(st.binary(max_size=400))
@FAST
def test_escaping_round_trips_and_hides_flag_and_flow_bytes(data):
    escaped = escape(data)
    assert all(b not in escaped for b in (0x7E, 0x11, 0x13))
    assert unescape(escaped) == data
    assert escaped_size(data) == len(escaped)


def _unescape_byte_by_byte(data: bytes) -> bytes:
    """The HDLC rule read literally: 0x7D, then the next byte XOR 0x20."""
    out, it = bytearray(), iter(data)
    for byte in it:
        if byte == 0x7D:
            nxt = next(it, None)
            if nxt is None:
                raise FrameError("abort", reason="aborted", data=data)
            if nxt == 0x7D:
                raise FrameError("double", reason="escape", data=data)
            out.append(nxt ^ 0x20)
        else:
            out.append(byte)
    return bytes(out)


#: the Python reference and the C extension the set-up builds (serialhs/negotiate/_hdlc.c)
UNESCAPES = [
    pytest.param(frames_module.unescape_py, id="python"),
    pytest.param(frames_module._unescape_c, id="c"),
]


def test_the_c_framing_is_built_and_used():
    """./dev setup installs a C compiler and builds the extension; without it the
    framing falls back to Python, at about half the unpaced throughput."""
    assert frames_module._C is not None, "serialhs.negotiate._hdlc was not built"
    assert (not os.environ.get("SERIALHS_PURE_PYTHON")) == frames_module.SPEEDUPS
    assert (frames_module.encode is frames_module._encode_c) == frames_module.SPEEDUPS
    assert (frames_module.decode_chunk is frames_module._decode_chunk_c) == frames_module.SPEEDUPS


#: bytes rich in the four escaped values, for the C and Python codecs to disagree on
tricky_bytes = st.lists(
    st.sampled_from([b"\x7e", b"\x7d", b"\x11", b"\x13", b"\x5d", b"\x5e", b"A", b"\x00" * 15]),
    max_size=200,
).map(b"".join)
payloads = st.one_of(st.binary(max_size=700), tricky_bytes)
any_frames = frames_of(payloads, version=st.integers(0, 255))


@given(any_frames)
@FAST
def test_the_c_encoder_writes_the_python_references_bytes(frame):
    assert frames_module._encode_c(frame) == frames_module.encode_py(frame)


@given(payloads)
@FAST
def test_the_c_escaped_size_is_the_python_references(data):
    assert frames_module._escaped_size_c(data) == frames_module.escaped_size_py(data)
    assert frames_module._escaped_size_c(bytearray(data)) == len(escape(data))


def _decoded(decode_impl, chunk: bytes, max_payload: int) -> Frame | str:
    try:
        return decode_impl(chunk, max_payload=max_payload)
    except FrameError as e:
        return e.reason


@given(any_frames, st.data())
@FAST
def test_the_c_decoder_agrees_with_the_python_reference_on_any_chunk(frame, data):
    """A good frame, and the same bytes cut, extended, flipped or with an escape
    broken: both decoders give the same frame or the same reason."""
    chunk = frames_module.encode_py(frame)[1:-1]
    how = data.draw(st.sampled_from(["good", "cut", "extend", "flip", "escape", "small"]))
    if how == "cut":
        chunk = chunk[: data.draw(st.integers(0, len(chunk)))]
    elif how == "extend":
        chunk += data.draw(st.binary(min_size=1, max_size=8))
    elif how == "flip":
        at = data.draw(st.integers(0, len(chunk) - 1))
        chunk = chunk[:at] + bytes([chunk[at] ^ data.draw(st.integers(1, 255))]) + chunk[at + 1 :]
    elif how == "escape":
        at = data.draw(st.integers(0, len(chunk)))
        chunk = chunk[:at] + data.draw(st.sampled_from([b"\x7d\x7d", b"\x7d"])) + chunk[at:]
    max_payload = len(frame.payload) - 1 if how == "small" and frame.payload else MAX_PAYLOAD
    expected = _decoded(frames_module.decode_chunk_py, chunk, max_payload)
    assert _decoded(frames_module._decode_chunk_c, chunk, max_payload) == expected
    if how == "good":
        assert expected == frame if frame.version == 1 else expected == "version"


def test_the_c_encoder_refuses_what_no_header_can_carry():
    with pytest.raises(ValueError):
        frames_module._c().encode(1, 0x10, 0, 0, 0, 0, bytes(0x10000))
    with pytest.raises(OverflowError):
        frames_module._c().encode(256, 0x10, 0, 0, 0, 0, b"")


@pytest.mark.parametrize("unescape_impl", UNESCAPES)
@given(
    pieces=st.lists(st.sampled_from([b"\x7d", b"\x5d", b"\x5e", b"\x31", b"\x33", b"A", b"\x7e"]))
)
@FAST
def test_unescape_is_the_byte_by_byte_rule_for_any_input(unescape_impl, pieces):
    """unescape (join the parts, flip the byte after each escape; the error path
    for broken input) agrees with the literal rule on good escapes, odd ones
    (0x7D 0x41) and broken ones alike."""
    data = b"".join(pieces).replace(b"\x7e", b"")
    try:
        expected: bytes | str = _unescape_byte_by_byte(data)
    except FrameError as e:
        expected = e.reason
    try:
        got: bytes | str = unescape_impl(data)
    except FrameError as e:
        got = e.reason
    assert got == expected


@pytest.mark.parametrize("unescape_impl", UNESCAPES)
@given(data=st.binary(max_size=3000))
@FAST
def test_unescape_undoes_escape_for_any_bytes(unescape_impl, data):
    escaped = escape(data)
    got = unescape_impl(escaped)
    assert got == data
    assert type(got) is bytes
    assert unescape_impl(bytearray(escaped)) == data  # any buffer in


def test_escape_table():
    assert escape(b"\x7e\x7d\x11\x13A") == bytes.fromhex("7d5e 7d5d 7d31 7d33 41")


@pytest.mark.parametrize("unescape_impl", UNESCAPES)
def test_unescape_rejects_a_double_escape_and_an_abort(unescape_impl):
    with pytest.raises(FrameError) as e:
        unescape_impl(b"a\x7d\x7db")
    assert e.value.reason == "escape"
    with pytest.raises(FrameError) as e:
        unescape_impl(b"abc\x7d")
    assert e.value.reason == "aborted"
    with pytest.raises(FrameError) as e:
        unescape_impl(b"\x7d")
    assert e.value.reason == "aborted"


@given(frames)
@FAST
def test_any_frame_round_trips(frame):
    wire = encode(frame)
    assert wire[0] == FLAG and wire[-1] == FLAG and FLAG not in wire[1:-1]
    assert decode(wire) == frame
    decoder = FrameDecoder()
    decoder.receive_data(wire)
    assert decoder.events() == [frame]


@given(frames, st.data())
@FAST
def test_awaiting_never_asks_for_more_than_the_frame_in_progress_needs(frame, data):
    """However a frame is cut, the decoder's ``awaiting`` is at most the bytes
    still to come (an adapter waiting for them never waits past the frame); once
    the header is in, it is the rest of the body by the header's length field
    (escapes not counted), else 0."""
    wire = encode(frame)
    cut = data.draw(st.integers(1, len(wire) - 1))
    decoder = FrameDecoder()
    decoder.receive_data(wire[:cut])
    awaiting = decoder.awaiting
    assert 0 <= awaiting <= len(wire) - cut
    partial = wire[1:cut]
    head = partial[: 2 * HEADER_SIZE]
    header_in = len(unescape_py(head[:-1] if head.endswith(b"\x7d") else head)) >= HEADER_SIZE
    assert awaiting == (max(0, len(pack(frame)) + 1 - len(partial)) if header_in else 0)
    decoder.receive_data(wire[cut:])
    assert decoder.events() == [frame]
    assert decoder.awaiting == 0


def test_awaiting_is_zero_without_a_sensible_header():
    decoder = FrameDecoder(max_payload=64)
    decoder.receive_data(b"\x7e" + bytes(10))  # header not all here
    assert decoder.awaiting == 0
    decoder.receive_data(bytes(8) + b"\xff\xff")  # version 0, length 65535: no frame's
    assert decoder.awaiting == 0
    decoder = FrameDecoder()
    decoder.receive_data(b"\x7e" + pack(Frame(FrameType.DATA, 1, 2, 3, bytes(100)))[:30])
    assert decoder.awaiting == HEADER_SIZE + 100 + 4 + 1 - 30


def test_frame_layout():
    frame = Frame(FrameType.ACK, 0x01020304, 0x05060708, 0x090A0B0C, b"", 0x01)
    body = pack(frame)
    assert body[:HEADER_SIZE] == bytes.fromhex("01 03 01 00 01020304 05060708 090a0b0c 0000")
    assert body[HEADER_SIZE:] == crc32c(body[:HEADER_SIZE]).to_bytes(4, "big")
    assert frame.kind is FrameType.ACK and frame.name == "ACK"
    assert Frame(0x55).kind is None and Frame(0x55).name == "type 0x55"


def test_frames_validate_their_fields():
    with pytest.raises(LocalProtocolError):
        Frame(FrameType.DATA, seq=1 << 32)
    with pytest.raises(LocalProtocolError):
        Frame(256)
    with pytest.raises(LocalProtocolError):
        Frame(FrameType.DATA, payload=b"x" * (MAX_PAYLOAD + 1))
    assert Frame(FrameType.DATA, payload=bytearray(b"ab")).payload == b"ab"


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"\x01\x03", "truncated"),
        (pack(Frame(FrameType.ACK))[:-1] + b"\x00", "crc"),
        (pack(Frame(FrameType.ACK, version=2)), "version"),
    ],
)
def test_unpack_reasons(body, reason):
    with pytest.raises(FrameError) as e:
        unpack(body)
    assert e.value.reason == reason
    assert isinstance(e.value, RemoteProtocolError)


def test_unpack_length_mismatch_and_too_long():
    body = bytearray(pack(Frame(FrameType.DATA, payload=b"abcd"))[:-4])
    body[17] = 3  # the length field says 3, four bytes follow
    body += crc32c(bytes(body)).to_bytes(4, "big")
    with pytest.raises(FrameError) as e:
        unpack(bytes(body))
    assert e.value.reason == "length"
    with pytest.raises(FrameError) as e:
        unpack(pack(Frame(FrameType.DATA, payload=b"x" * 100)), max_payload=99)
    assert e.value.reason == "too-long"


# -- the decoder -------------------------------------------------------------------------------


def stream_of(items):
    """Wire bytes and the frames among them: items are Frames or raw garbage."""
    return b"".join(encode(i) if isinstance(i, Frame) else i for i in items)


@given(
    st.lists(st.one_of(frames, st.binary(min_size=1, max_size=60)), max_size=8),
    st.lists(st.integers(1, 4000), max_size=6),
)
@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_decoder_resyncs_after_garbage_and_loses_nothing(items, cuts):
    wire = stream_of(items)
    decoder = FrameDecoder()
    pos = 0
    for cut in sorted(cuts):
        decoder.receive_data(wire[pos:cut])
        pos = max(pos, cut)
    decoder.receive_data(wire[pos:])
    events = decoder.events()
    # Every frame sent arrives, in order: a flag always ends whatever came before
    # it (an escape byte right before a flag aborts only the garbage it ends).
    assert [e for e in events if isinstance(e, Frame)] == [i for i in items if isinstance(i, Frame)]
    # Nothing is lost: every byte that is not a flag or XON/XOFF is in exactly one
    # event (bad frames as received, good frames as their escaped body) or still buffered.
    accounted = (
        b"".join(e.data if isinstance(e, BadFrame) else escape(pack(e)) for e in events)
        + decoder.buffered
    )
    assert accounted == wire.replace(b"\x7e", b"").translate(None, b"\x11\x13")


def test_decoder_reports_each_kind_of_bad_frame_and_keeps_the_good_ones():
    good = Frame(FrameType.KEEPALIVE, 7, 8, 9, b"\x00")
    crc_bad = bytearray(encode(good))
    crc_bad[5] ^= 0x01
    wire = (
        b"noise"  # before the first flag
        + encode(good)
        + b"\x7e\x01\x02\x7e"  # truncated
        + bytes(crc_bad)
        + b"\x7eab\x7d\x7e"  # aborted
        + encode(Frame(FrameType.ACK, version=9))
        + encode(good)
    )
    decoder = FrameDecoder()
    decoder.receive_data(wire)
    events = decoder.events()
    reasons = [e.reason for e in events if isinstance(e, BadFrame)]
    assert reasons == [
        BadReason.GARBAGE,
        BadReason.TRUNCATED,
        BadReason.CRC,
        BadReason.ABORTED,
        BadReason.VERSION,
    ]
    assert [e for e in events if isinstance(e, Frame)] == [good, good]
    assert decoder.stats.frames == 2 and decoder.stats.bad == 5


def test_decoder_is_bounded_and_reports_an_overlong_run_in_pieces():
    decoder = FrameDecoder(max_payload=64)
    good = Frame(FrameType.DATA, 1, 2, 3, b"after")
    decoder.receive_data(encode(good))
    decoder.events()
    for _ in range(20):
        decoder.receive_data(b"A" * 100)
        assert len(decoder.buffered) <= decoder.limit
    decoder.receive_data(encode(good))
    events = decoder.events()
    bad = [e for e in events if isinstance(e, BadFrame)]
    assert {e.reason for e in bad} == {BadReason.TOO_LONG}
    assert sum(len(e.data) for e in bad) == 2000
    assert all(len(e.data) <= decoder.limit for e in bad)
    assert events[-1] == good


def test_decoder_discards_raw_flow_control_bytes():
    frame = Frame(FrameType.DATA, 1, 2, 3, b"\x11\x13 data")
    wire = encode(frame)
    noisy = wire[:5] + b"\x11" + wire[5:9] + b"\x13\x13" + wire[9:]
    decoder = FrameDecoder()
    decoder.receive_data(noisy)
    assert decoder.events() == [frame]
    assert decoder.stats.flow_bytes == 3


def test_decoder_reset_reports_the_partial_frame():
    decoder = FrameDecoder()
    decoder.receive_data(encode(Frame(FrameType.ACK))[:10])
    decoder.reset()
    (event,) = decoder.events()
    assert isinstance(event, BadFrame) and event.reason is BadReason.INTERRUPTED
    decoder.receive_data(b"junk" + encode(Frame(FrameType.ACK)))
    assert [type(e) for e in decoder.events()] == [BadFrame, Frame]


def test_decoder_settings_are_checked():
    with pytest.raises(ConfigError):
        FrameDecoder(max_payload=MAX_PAYLOAD + 1)


def test_decode_rejects_two_frames():
    with pytest.raises(FrameError):
        decode(encode(Frame(FrameType.ACK)) + encode(Frame(FrameType.ACK)))


# -- payloads ----------------------------------------------------------------------------------


def test_dack_and_nak_payloads():
    payload = encode_dack(5, [(10, 12), (20, 21)])
    assert payload == bytes.fromhex("0005 0000000a 0000000c 00000014 00000015")
    assert decode_dack(payload) == (5, ((10, 12), (20, 21)))
    assert decode_nak(encode_nak([1, 0xFFFFFFFF])) == (1, 0xFFFFFFFF)
    for bad in (b"\x00", b"\x00\x01\x02"):
        with pytest.raises(FrameError):
            decode_dack(bad)
    with pytest.raises(FrameError):
        decode_nak(b"\x00\x00\x01")
    with pytest.raises(LocalProtocolError):
        encode_nak([])


def test_control_payloads():
    s = SerialSettings(115200, flow="rtscts")
    assert parse_switch(switch_payload(3, 1, s)) == (3, 1, s)
    assert parse_probe(probe_payload(2, 5)) == (2, 5)
    assert len(PROBE_PATTERN) == 320 and set(PROBE_PATTERN) == set(range(256))
    with pytest.raises(RemoteProtocolError):
        parse_probe(probe_payload(2, 5)[:-1] + b"\x00")
    assert parse_step(step_payload(9)) == 9
    assert parse_rst(rst_payload(RstCode.PEER_LOST, "gone")) == (RstCode.PEER_LOST, "gone")
    assert parse_rst(b"") == (RstCode.UNSPECIFIED, "")
    assert parse_rst(b"\xc8x") == (200, "x")
    assert len(rst_payload(1, "é" * 100)) <= 65


# -- capabilities ------------------------------------------------------------------------------

framing_values = st.sampled_from(
    [
        Framing(b, p, s)
        for b in (5, 6, 7, 8)
        for p in Parity
        for s in StopBits
        if s is not StopBits.ONE_POINT_FIVE or b == 5
    ]
)
capabilities = st.builds(
    Capabilities,
    baudrates=st.lists(
        st.one_of(st.sampled_from(RATE_TABLE), st.integers(1, 20_000_000)), max_size=40
    )
    .map(lambda rates: tuple(sorted(set(rates)))[:40])
    .filter(lambda rates: len([r for r in rates if r not in RATE_TABLE]) <= 32),
    framings=st.lists(framing_values, min_size=1, max_size=8).map(tuple),
    flow=st.sets(st.sampled_from([FlowControl.RTSCTS, FlowControl.XONXOFF, FlowControl.DSRDTR])),
    protocols=st.lists(st.sampled_from(list(TransferProtocol)), min_size=1).map(tuple),
    max_payload=st.integers(512, MAX_PAYLOAD),
    window=st.integers(1, 1024),
    identity=st.builds(
        Identity,
        st.text(max_size=20),
        st.text(max_size=20),
        st.text(max_size=20),
    ),
)


@given(capabilities)
@FAST
def test_capabilities_round_trip(c):
    assert decode_capabilities(encode_capabilities(c)) == c


def test_framing_codes():
    for code in range(256):
        framing = Framing.from_code(code)
        if framing is not None:
            assert framing.code == code
    assert Framing.parse("8N1").code == 0x03
    assert Framing.parse("8E1").code == 0x07
    assert Framing.parse("8N2").code == 0x43
    assert str(Framing.parse("7E1")) == "7E1"
    assert Framing.from_code(0x80) is None  # bit 7
    assert Framing.from_code(0x23) is None  # 8 data bits with 1.5 stop bits
    assert all(f.bytesize == 8 for f in FRAMING_PREFERENCE)


def test_unknown_capabilities_are_skipped_unless_critical():
    plain = encode_capabilities(Capabilities())
    extended = plain + bytes([0x3F, 2, 0xAB, 0xCD])
    got = decode_capabilities(extended)
    assert got.extra == ((0x3F, b"\xab\xcd"),)
    with pytest.raises(CapabilityError) as e:
        decode_capabilities(plain + bytes([0xBF, 0]))
    assert e.value.cap_type == 0xBF
    # the reserved AUTH capability, sent critical: this version must refuse
    with pytest.raises(CapabilityError):
        decode_capabilities(plain + bytes([CapType.AUTH | 0x80, 1, 1]))
    # known types may carry the critical bit
    assert decode_capabilities(bytes([CapType.FLOW | 0x80, 1, 1])).flow == {FlowControl.RTSCTS}


def test_unknown_codes_inside_known_capabilities_are_ignored():
    data = bytes(
        [CapType.FRAMINGS, 2, 0x03, 0xFF, CapType.PROTOCOLS, 2, 1, 99, CapType.FLOW, 1, 0xF1]
    )
    got = decode_capabilities(data)
    assert got.framings == (Framing(),)
    assert got.protocols == (TransferProtocol.SHS,)
    assert got.flow == {FlowControl.RTSCTS}


@pytest.mark.parametrize(
    "data",
    [
        bytes([CapType.RATES]),  # cut header
        bytes([CapType.RATES, 4, 0]),  # runs past the end
        bytes([CapType.FRAME, 3, 0, 0, 0]),
        bytes([CapType.FRAME, 4, 0x01, 0x00, 0, 1]),  # 256-byte payloads: below the minimum
        bytes([CapType.FRAME, 4, 0x02, 0x00, 0, 1]) * 2,  # repeated
        bytes([CapType.CUSTOM_RATES, 3, 0, 0, 1]),
    ],
)
def test_malformed_capabilities(data):
    with pytest.raises(CapabilityError):
        decode_capabilities(data)


def test_absent_capabilities_mean_the_minimum():
    got = decode_capabilities(b"")
    assert got.baudrates == ()
    assert got.framings == (Framing(),)
    assert got.flow == frozenset()
    assert got.protocols == (TransferProtocol.SHS,)
    assert (got.max_payload, got.window) == (512, 1)
    big = decode_capabilities(bytes([CapType.FRAME, 4, 0xFF, 0xFF, 0xFF, 0xFF]))
    assert (big.max_payload, big.window) == (MAX_PAYLOAD, 1024) == (32768, 1024)


def test_capabilities_validate():
    with pytest.raises(ConfigError):
        Capabilities(max_payload=100)
    with pytest.raises(ConfigError):
        Capabilities(framings=())
    with pytest.raises(ConfigError):
        Capabilities(flow=("sideways",))
    with pytest.raises(ConfigError):
        Capabilities(baudrates=tuple(range(1001, 1100)))  # too many custom rates
    with pytest.raises(ConfigError):
        Capabilities(extra=((CapType.RATES, b""),))
    with pytest.raises(ConfigError):
        encode_capabilities(Capabilities(identity=Identity("v" * 200, "p" * 200, "f" * 200)))
    c = Capabilities.up_to(115200, flow=("rtscts", "none"), protocols=("shs", "xmodem-1k"))
    assert c.baudrates[0] == 1200 and c.baudrates[-1] == 115200
    assert c.flow == {FlowControl.RTSCTS}
    assert TransferProtocol.parse("XMODEM-CRC") is TransferProtocol.XMODEM_CRC
    assert str(TransferProtocol.XMODEM_1K) == "xmodem-1k"
    with pytest.raises(ConfigError):
        TransferProtocol.parse("kermit")


def test_settings_and_choice_encoding():
    s = SerialSettings(250000, 8, "E", 2, "xonxoff")
    assert encode_settings(s) == bytes.fromhex("0003d090 47 02")
    assert decode_settings(encode_settings(s)) == s
    choice = Choice(s, TransferProtocol.XMODEM_1K, 1024, 4)
    assert len(choice.encode()) == 12
    assert Choice.decode(choice.encode()) == choice
    with pytest.raises(CapabilityError):
        decode_settings(b"\x00\x00\x25\x80\x03\x09")  # flow code 9


# -- the selection rule ------------------------------------------------------------------------

SAFE = SerialSettings(9600)


def test_selection_rule():
    a = Capabilities(
        baudrates=(9600, 57600, 115200, 250000),
        framings=("8E1", "8N1"),
        flow=("rtscts", "xonxoff"),
        protocols=("xmodem", "zmodem", "shs"),
        max_payload=2048,
        window=16,
    )
    b = Capabilities(
        baudrates=(4800, 9600, 115200, 250000, 921600),
        framings=("8E1", "8N1", "7E1"),
        flow=("xonxoff",),
        protocols=("zmodem", "xmodem"),
        max_payload=1024,
        window=32,
    )
    choice = select(a, b, SAFE)
    assert choice.settings == SerialSettings(250000, 8, "N", 1, "xonxoff")
    assert choice.protocol is TransferProtocol.ZMODEM
    assert (choice.max_payload, choice.window) == (1024, 16)
    assert common_rates(a, b, SAFE) == (250000, 115200, 9600)
    assert [s.baudrate for s in ladder(a, b, SAFE)] == [250000, 115200, 9600, 9600]
    assert ladder(a, b, SAFE)[-1] == SAFE


def test_selection_falls_back_to_the_safe_settings():
    a = Capabilities(baudrates=(4800,), framings=("7E1",))
    b = Capabilities(baudrates=(2400,), framings=("7O1",))
    choice = select(a, b, SAFE)
    assert choice.settings == SAFE
    assert ladder(a, b, SAFE) == (SAFE,)
    with pytest.raises(IncompatiblePeerError):
        select(Capabilities(protocols=("xmodem",)), Capabilities(protocols=("zmodem",)), SAFE)


@given(capabilities, capabilities)
@FAST
def test_selection_is_symmetric_and_the_ladder_is_well_formed(a, b):
    try:
        choice = select(a, b, SAFE)
    except IncompatiblePeerError:
        assert not set(a.protocols) & set(b.protocols)
        return
    assert select(b, a, SAFE) == choice
    rungs = ladder(a, b, SAFE)
    assert rungs[0] == choice.settings and rungs[-1] == SAFE
    assert len(set(rungs)) == len(rungs)
    rates = [r.baudrate for r in rungs]
    assert rates == sorted(rates, reverse=True)
    for rung in rungs[:-1]:
        assert rung.baudrate == SAFE.baudrate or (
            rung.baudrate in a.baudrates and rung.baudrate in b.baudrates
        )


# -- the test vectors of docs/protocol.md ------------------------------------------------------

VECTOR_ISN_I = 0x1A2B3C4D
VECTOR_ISN_R = 0x5E6F7081
VECTOR_INITIATOR = Capabilities(
    baudrates=(9600, 19200, 57600, 115200, 250000),
    framings=("8N1", "8E1"),
    flow=("rtscts",),
    protocols=("shs", "xmodem-1k"),
    max_payload=1024,
    window=8,
    identity=Identity("serialhs", "host", "0.1.0"),
)
VECTOR_RESPONDER = Capabilities(
    baudrates=(9600, 115200, 230400, 250000),
    framings=("8N1",),
    flow=("rtscts", "xonxoff"),
    protocols=("shs", "xmodem", "xmodem-crc", "xmodem-1k"),
    max_payload=512,
    window=4,
    identity=Identity("acme", "board", "1.2"),
)


def vectors() -> list[tuple[str, Frame]]:
    """The frames docs/protocol.md shows, built the way the handshake builds them."""
    session = Session(VECTOR_ISN_I, VECTOR_ISN_R)
    choice = select(VECTOR_INITIATOR, VECTOR_RESPONDER, SAFE)
    rung = ladder(VECTOR_INITIATOR, VECTOR_RESPONDER, SAFE, choice)[0]
    i, r = "initiator", "responder"
    syn = syn_frame(VECTOR_ISN_I, VECTOR_INITIATOR)
    sid = session.id
    return [
        ("SYN", syn),
        ("SYN-ACK", syn_ack_frame(session, choice, VECTOR_RESPONDER)),
        ("ACK", session.frame(i, FrameType.ACK)),
        ("SWITCH", session.frame(i, FrameType.SWITCH, switch_payload(0, 0, rung))),
        ("SWITCH-ACK", session.frame(r, FrameType.SWITCH_ACK, switch_payload(0, 0, rung))),
        ("PROBE", session.frame(i, FrameType.PROBE, probe_payload(0, 0))),
        ("PROBE-ACK", session.frame(r, FrameType.PROBE_ACK, probe_payload(0, 0))),
        ("VERIFIED", session.frame(i, FrameType.VERIFIED, step_payload(0))),
        ("KEEPALIVE", session.frame(r, FrameType.KEEPALIVE, step_payload(0))),
        (
            "RST",
            session.frame(r, FrameType.RST, rst_payload(RstCode.PEER_LOST, "no frame from you")),
        ),
        (
            "RST (refusing a SYN)",
            refusal_frame(syn, RstCode.NO_COMMON, "no transfer protocol in common"),
        ),
        ("FIN", session.frame(i, FrameType.FIN)),
        ("FIN-ACK", session.frame(r, FrameType.FIN_ACK)),
        (
            "DATA",
            Frame(
                FrameType.DATA,
                sid,
                VECTOR_ISN_I + 1,
                VECTOR_ISN_R + 1,
                b"hello, world\n",
                int(Flags.EOM),
            ),
        ),
        (
            "DACK",
            Frame(
                FrameType.DACK,
                sid,
                VECTOR_ISN_R + 1,
                VECTOR_ISN_I + 2,
                encode_dack(3, [(VECTOR_ISN_I + 3, VECTOR_ISN_I + 5)]),
            ),
        ),
        (
            "NAK",
            Frame(
                FrameType.NAK,
                sid,
                VECTOR_ISN_R + 1,
                VECTOR_ISN_I + 2,
                encode_nak([VECTOR_ISN_I + 2]),
            ),
        ),
        ("escaping", Frame(FrameType.DATA, sid, 0x7E7D1113, 0x11111124, b"\x7e\x7d\x11\x13")),
    ]


def render_vector(name: str, frame: Frame) -> str:
    wire = encode(frame).hex()
    pairs = [wire[i : i + 2] for i in range(0, len(wire), 2)]
    lines = [" ".join(pairs[i : i + 16]) for i in range(0, len(pairs), 16)]
    body = "\n       ".join(lines)
    return f"vector {name}\nframe  {frame.describe()}\nwire   {body}"


def doc_vectors() -> dict[str, tuple[str, str]]:
    """name -> (frame line, wire hex) for every ```text block of the doc that is a vector."""
    found = {}
    for block in re.findall(r"```text\n(vector .*?)```", DOC.read_text(), flags=re.S):
        lines = block.rstrip("\n").split("\n")
        name = lines[0].removeprefix("vector ")
        frame_line = lines[1].removeprefix("frame  ")
        wire = " ".join(line.strip().removeprefix("wire").strip() for line in lines[2:])
        found[name] = (frame_line, wire)
    return found


def test_the_docs_test_vectors_are_what_the_code_produces():
    documented = doc_vectors()
    produced = vectors()
    assert list(documented) == [name for name, _ in produced]
    for name, frame in produced:
        frame_line, wire = documented[name]
        assert frame_line == frame.describe(), name
        assert bytes.fromhex(wire) == encode(frame), name
        assert decode(bytes.fromhex(wire)) == frame, name
        assert render_vector(name, frame) in DOC.read_text()


def test_every_frame_type_has_a_vector():
    named = {frame.kind for _, frame in vectors()}
    reserved = {FrameType.AUTH1, FrameType.AUTH2, FrameType.AUTH3, FrameType.AUTH4}
    assert set(FrameType) - reserved <= named


def test_the_doc_states_the_crc_and_tables():
    text = DOC.read_text()
    assert "0xE3069283" in text and "0x1EDC6F41" in text and "0x82F63B78" in text
    for index, rate in enumerate(RATE_TABLE):
        assert re.search(rf"\|\s*{index}\s*\|\s*{rate}\s*\|", text), rate
    for ftype in FrameType:
        assert re.search(rf"\|\s*0x{int(ftype):02X}\s*\|\s*{re.escape(ftype.label)}\s*\|", text)
    for code in RstCode:
        assert re.search(rf"\|\s*{int(code)}\s*\|\s*{code.name}\s*\|", text), code
    for cap in CapType:
        assert re.search(rf"\|\s*0x{int(cap):02X}\s*\|\s*{cap.name}\s*\|", text), cap
    assert caps_mod.MIN_FRAME_PAYLOAD == 512
