"""The SHS transfer layer (DATA / DACK / NAK, selective repeat) on top of the
handshake core, driven over the simulated line with explicit time: messages both
ways, pipelining close to line rate, fast and timed retransmission, flow control,
close, sequence wrap-around and (with hypothesis) arbitrary loss, duplication,
reordering and corruption."""

from __future__ import annotations

import random
from dataclasses import replace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from shs_sim import Faults, Link, isns

from serialhs.driver.settings import SerialSettings
from serialhs.errors import ConfigError, LocalProtocolError
from serialhs.negotiate.capabilities import Capabilities
from serialhs.negotiate.channel import Channel
from serialhs.negotiate.frames import (
    Flags,
    Frame,
    FrameType,
    encode_dack,
    encode_nak,
    unescape,
)
from serialhs.negotiate.handshake import (
    Agreed,
    Closed,
    Failed,
    Handshake,
    Reset,
    Session,
    State,
)
from serialhs.negotiate.transfer import (
    Data,
    Transfer,
    TransferTimers,
    ack_every,
    frame_chars,
)

FAST = SerialSettings(115200)


def caps(rate: int = 115200, *, frame: int = 1024, window: int = 16) -> Capabilities:
    return Capabilities.up_to(rate, min_baudrate=9600, max_payload=frame, window=window)


class ChannelEnd:
    """A Channel as the simulated line's core; collects what arrives."""

    def __init__(self, link: Link, end: str, channel: Channel) -> None:
        self.link, self.end, self.channel = link, end, channel
        self.received = bytearray()
        self.messages: list[bytes] = []
        self._message = bytearray()
        self.ended: object = None

    @property
    def settings(self) -> SerialSettings:
        return self.channel.handshake.settings

    def data_to_send(self) -> bytes:
        # the channel models the UART's queue itself (as on a pty, which cannot tell)
        return self.channel.data_to_send(self.link.now)

    def events(self) -> list[object]:
        out = self.channel.events()
        for event in out:
            if isinstance(event, Data):
                self.received += event.data
                self._message += event.data
                if event.eom:
                    self.messages.append(bytes(self._message))
                    self._message.clear()
            elif isinstance(event, Failed | Reset | Closed) and self.ended is None:
                self.ended = event
        return out

    def get_timer(self) -> float | None:
        # the line takes a turn at once when the channel has something to hand out
        return self.link.now if self.channel.ready else self.channel.get_timer()

    def handle_timer(self, now: float) -> None:
        self.channel.handle_timer(now)

    def receive_data(self, data: bytes, now: float) -> None:
        self.channel.receive_data(data, now)

    def settings_applied(self, now: float) -> None:
        self.channel.handshake.settings_applied(now)


def establish(
    a_caps: Capabilities | None = None,
    b_caps: Capabilities | None = None,
    *,
    seed: int = 1,
    isn_a: int | None = None,
    isn_b: int | None = None,
    timers: TransferTimers | None = None,
) -> tuple[Link, ChannelEnd, ChannelEnd]:
    """Two ends agreed over the simulated line, each with a channel on top."""
    ra = isns(isn_a) if isn_a is not None else isns(seed * 7919 + 1)
    rb = isns(isn_b) if isn_b is not None else isns(seed * 104729 + 2)
    a = Handshake("initiator", a_caps or caps(), now=0.0, rng=ra)
    b = Handshake("responder", b_caps or caps(), now=0.0, rng=rb)
    link = Link(a, b, seed=seed)
    link.run(60, lambda lk: all(c.state is State.ESTABLISHED for c in lk.cores.values()))
    assert a.state is State.ESTABLISHED and b.state is State.ESTABLISHED
    kw = {"timers": timers} if timers is not None else {}
    backlog = {end: [e for _, e in link.events[end]] for end in ("a", "b")}
    ends = []
    for end, core in (("a", a), ("b", b)):
        after = backlog[end][[isinstance(e, Agreed) for e in backlog[end]].index(True) + 1 :]
        ends.append(ChannelEnd(link, end, Channel(core, now=link.now, backlog=after, **kw)))
    link.cores = {"a": ends[0], "b": ends[1]}
    return link, ends[0], ends[1]


def kind(piece: bytes) -> int | None:
    """The frame type of a piece of the line (between flags), if it has one."""
    body = unescape(piece)
    return body[1] if len(body) > 1 and body[0] == 1 else None


def payload(size: int, seed: int = 0) -> bytes:
    return random.Random(seed).randbytes(size)


def deliver(link: Link, sender: ChannelEnd, data: bytes, *, until: float, chunk: int = 65536):
    """Feed ``data`` to ``sender`` as the send buffer allows, until it is all acknowledged."""
    view = memoryview(data)
    sent = 0

    def progress(_: Link) -> bool:
        nonlocal sent
        while sent < len(data) and sender.channel.writable:
            n = min(chunk, sender.channel.writable, len(data) - sent)
            sender.channel.send(view[sent : sent + n], eom=sent + n == len(data))
            sent += n
        return (sent == len(data) and sender.channel.idle) or sender.ended is not None

    link.run(until, progress)
    return link


# -- messages ---------------------------------------------------------------------------------


def test_messages_both_ways_keep_their_boundaries():
    link, a, b = establish()
    a.channel.send(b"hello")
    a.channel.send(b"")
    a.channel.send(payload(5000, 1))
    b.channel.send(b"and back")
    link.run(
        link.now + 10,
        lambda lk: (
            len(b.messages) == 3 and len(a.messages) == 1 and a.channel.idle and b.channel.idle
        ),
    )
    assert b.messages == [b"hello", b"", payload(5000, 1)]
    assert a.messages == [b"and back"]
    for end in (a, b):
        stats = end.channel.stats
        assert stats.resent == 0 and stats.duplicates == 0
    assert a.channel.idle and b.channel.idle


def test_a_stream_moves_at_close_to_line_rate():
    """Simulated time: 256 KiB of random bytes at 115200 8N1 take no more than
    5 % over their airtime (frame overhead and escapes included)."""
    link, a, b = establish()
    data = payload(256 * 1024, 2)
    start = link.now
    deliver(link, a, data, until=start + 60)
    assert bytes(b.received) == data
    elapsed = link.now - start
    line_rate = FAST.baudrate / 10
    assert len(data) / elapsed >= 0.95 * line_rate, len(data) / elapsed / line_rate
    assert a.channel.stats.resent == 0


def test_a_lost_frame_is_resent_on_the_nak_not_the_timer():
    link, a, b = establish()
    lost = []

    def drop_once(end: str, piece: bytes, now: float) -> bool:
        # the fifth DATA frame from a, once
        if end == "a" and kind(piece) == FrameType.DATA and len(piece) > 500 and not lost:
            drop_once.count += 1  # type: ignore[attr-defined]
            if drop_once.count == 5:  # type: ignore[attr-defined]
                lost.append(now)
                return True
        return False

    drop_once.count = 0  # type: ignore[attr-defined]
    link.drop_if = drop_once
    data = payload(40 * 1024, 3)
    start = link.now
    deliver(link, a, data, until=start + 30)
    assert lost and bytes(b.received) == data
    stats = a.channel.stats
    assert stats.fast_retransmissions == 1 and stats.retransmissions == 0
    assert b.channel.stats.naks_sent >= 1 and b.channel.stats.out_of_order >= 1
    assert link.now - start < 40 * 1024 / (FAST.baudrate / 10) * 1.15


def test_a_lost_last_frame_is_resent_on_its_timer():
    link, a, b = establish()
    dropped = []

    def drop_eom(end: str, piece: bytes, now: float) -> bool:
        if end == "a" and kind(piece) == FrameType.DATA and unescape(piece)[2] & 2 and not dropped:
            dropped.append(now)
            return True
        return False

    link.drop_if = drop_eom
    a.channel.send(payload(3000, 4))
    link.run(link.now + 10, lambda lk: len(b.messages) == 1 and a.channel.idle)
    assert dropped and b.messages == [payload(3000, 4)]
    assert a.channel.stats.retransmissions == 1


def test_lost_acknowledgements_are_recovered_by_the_duplicate():
    link, a, b = establish()
    link.drop_if = lambda end, piece, now: end == "b" and kind(piece) == FrameType.DACK
    a.channel.send(payload(2048, 5))
    link.run(link.now + 1.5, lambda lk: len(b.messages) == 1)
    assert b.messages == [payload(2048, 5)]
    assert not a.channel.idle  # every DACK lost so far
    link.drop_if = None
    link.run(link.now + 10, lambda lk: a.channel.idle)
    assert a.channel.idle and b.channel.stats.duplicates >= 1
    assert b.messages == [payload(2048, 5)]  # delivered once


def test_a_closed_receive_window_pauses_the_sender():
    link, a, b = establish()
    b.channel.set_receive_window(0, link.now)
    b.channel.send(b"window shut")  # any frame from b tells a
    link.run(link.now + 1, lambda lk: len(a.messages) == 1)
    a.channel.send(payload(20000, 6))
    link.run(link.now + 5)
    assert len(b.received) == 0 or len(b.received) < 20000
    held = len(b.received)
    # a DACK with window 0 keeps the tries at one: a paused peer is not a lost one
    link.run(link.now + 30)
    assert a.ended is None and len(b.received) == held
    # reopen, and lose the first window update: it is repeated
    first = []

    def lose_first_update(end: str, piece: bytes, now: float) -> bool:
        if end == "b" and kind(piece) == FrameType.DACK and not first:
            first.append(now)
            return True
        return False

    link.drop_if = lose_first_update
    b.channel.set_receive_window(16, link.now)
    link.run(link.now + 20, lambda lk: len(b.received) == 20000 and a.channel.idle)
    assert bytes(b.received) == payload(20000, 6)


def test_close_after_everything_is_acknowledged():
    link, a, b = establish()
    a.channel.send(payload(4000, 7))
    with pytest.raises(LocalProtocolError, match="not acknowledged"):
        a.channel.close(link.now)
    link.run(link.now + 5, lambda lk: a.channel.idle)
    a.channel.close(link.now)
    link.run(link.now + 5, lambda lk: a.ended is not None and b.ended is not None)
    assert isinstance(a.ended, Closed) and isinstance(b.ended, Closed)
    assert bytes(b.received) == payload(4000, 7)
    with pytest.raises(LocalProtocolError, match="ended"):
        a.channel.send(b"more")


def test_a_peer_that_stops_acknowledging_fails_the_link():
    timers = TransferTimers(data_tries=3)
    link, a, _b = establish(timers=timers)
    a.channel.send(payload(8000, 8))
    link.drop_if = lambda end, piece, now: end == "b"  # nothing from b gets through
    link.run(link.now + 60, lambda lk: a.ended is not None)
    assert isinstance(a.ended, Failed)
    assert "stopped acknowledging" in a.ended.reason or "no frame" in a.ended.reason


@pytest.mark.parametrize(("isn_a", "isn_b"), [(0xFFFFFFF0, 0xFFFFFFFA), (0x7FFFFFF8, 0xFFFFFFFF)])
def test_sequence_numbers_wrap_around(isn_a, isn_b):
    link, a, b = establish(isn_a=isn_a, isn_b=isn_b, b_caps=caps(frame=512, window=4))
    data = payload(30 * 512 + 17, 9)
    deliver(link, a, data, until=link.now + 30)
    b.channel.send(data)
    link.run(link.now + 30, lambda lk: len(a.messages) == 1)
    assert bytes(b.received) == data and a.messages == [data]


def test_the_agreed_frame_size_and_window_are_used():
    link, a, _b = establish(b_caps=caps(frame=512, window=4))
    frames = []
    real = a.channel.transfer.frames_to_send

    def spy(now: float, budget: int | None = None) -> list[Frame]:
        out = real(now, budget)
        frames.extend(out)
        return out

    a.channel.transfer.frames_to_send = spy  # type: ignore[method-assign]
    deliver(link, a, payload(10000, 10), until=link.now + 30)
    sizes = [len(f.payload) for f in frames if f.type == FrameType.DATA]
    assert max(sizes) == 512 and sum(sizes) == 10000


# -- the core's edges ---------------------------------------------------------------------------


def _transfer(role: str = "initiator", **kw: object) -> Transfer:
    session = Session(0x11111111, 0x22222222)
    args = {"frame_size": 512, "window": 4, "settings": FAST, "now": 0.0} | kw
    return Transfer(session, role, **args)  # type: ignore[arg-type]


def test_bad_configuration_and_local_errors():
    with pytest.raises(ConfigError):
        _transfer(frame_size=0)
    with pytest.raises(ConfigError):
        _transfer(window=2000)
    with pytest.raises(ConfigError):
        TransferTimers(data_tries=0)
    t = _transfer(send_buffer=100)
    with pytest.raises(LocalProtocolError, match="send buffer"):
        t.send(bytes(101))
    with pytest.raises(LocalProtocolError, match="receive window"):
        t.set_receive_window(5, 0.0)


def test_what_the_peer_sends_never_raises():
    t = _transfer()
    sid = Session(0x11111111, 0x22222222).id
    for frame in (
        Frame(FrameType.DACK, sid, 0, 0x12345678, b"\x00"),  # short payload
        Frame(FrameType.NAK, sid, 0, 0, b""),  # empty NAK
        Frame(FrameType.DACK, sid, 0, 0x99999999, encode_dack(4, [(1, 0)])),  # bad block
        Frame(FrameType.DATA, sid, 0x22222223 + 100, 0, b"far beyond"),
        Frame(FrameType.SYN, sid, 0, 0),
    ):
        t.receive_frame(frame, 1.0)
    stats = t.stats
    assert stats.ignored == 3 and stats.beyond_window == 1
    assert not any(isinstance(e, Data) for e in t.events())


def test_an_acknowledgement_of_frames_never_sent_is_not_used():
    t = _transfer()
    t.send(b"x" * 1000)
    frames = t.frames_to_send(0.0)
    assert [len(f.payload) for f in frames] == [512, 488]
    sid = frames[0].session
    t.receive_frame(
        Frame(FrameType.DACK, sid, 0, (frames[1].seq + 5) & 0xFFFFFFFF, encode_dack(4)), 0.01
    )
    assert t.unacknowledged == 1000
    t.receive_frame(
        Frame(FrameType.DACK, sid, 0, (frames[1].seq + 1) & 0xFFFFFFFF, encode_dack(4)), 0.02
    )
    assert t.idle and t.acked_bytes == 1000


def test_the_documented_timer_values():
    t = _transfer(frame_size=1024, window=16)
    assert frame_chars(1024) == 1178
    assert [round(t.rto(a), 2) for a in range(5)] == [0.92, 1.84, 3.67, 3.67, 3.67]
    doc = pytest.importorskip("pathlib").Path(__file__).parent.parent / "docs" / "protocol.md"
    assert "0.92, 1.84, 3.67, 3.67" in doc.read_text()
    assert [ack_every(w) for w in (1, 4, 8, 16, 64, 1024)] == [1, 1, 2, 4, 4, 4]
    assert [ack_every(w, fast=True) for w in (1, 4, 8, 16, 64)] == [1, 1, 2, 4, 16]


@pytest.mark.parametrize(("fast", "every"), [(False, 4), (True, 8)])
def test_a_receiver_on_a_fast_line_acknowledges_a_quarter_window_at_a_time(fast, every):
    """Each DACK costs both ends a wakeup; where bytes come in bursts (a pty, a
    USB CDC device) a quarter of the window between DACKs is enough (§17.4)."""
    sender = _transfer(frame_size=64, window=32)
    receiver = _transfer("responder", frame_size=64, window=32, fast=fast)
    sender.send(bytes(64 * 24), eom=False)
    data: list[Frame] = []
    while len(data) < 24:  # the sender's frames, without the POLL its line model adds
        data += [replace(f, flags=0) for f in sender.frames_to_send(0.05 * len(data))]
    acks = []
    for frame in data:
        receiver.receive_frame(frame, 0.0)  # no timer runs: no delayed DACK
        acks += [(f.ack - data[0].seq) & 0xFFFFFFFF for f in receiver.frames_to_send(0.0)]
    assert acks == [every * k for k in range(1, 24 // every + 1)]


# -- any fault pattern --------------------------------------------------------------------------


@given(
    seed=st.integers(0, 2**16),
    drop=st.sampled_from([0.0, 0.01, 0.05, 0.2]),
    duplicate=st.sampled_from([0.0, 0.02, 0.1]),
    corrupt=st.sampled_from([0.0, 0.01, 0.05]),
    reorder=st.sampled_from([0.0, 0.02, 0.1]),
    truncate=st.sampled_from([0.0, 0.02]),
    garbage=st.sampled_from([0.0, 0.02]),
    size=st.integers(0, 40000),
    both=st.booleans(),
)
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_any_fault_pattern_delivers_intact_data_or_fails_cleanly(
    seed, drop, duplicate, corrupt, reorder, truncate, garbage, size, both
):
    link, a, b = establish(seed=seed, b_caps=caps(frame=512, window=8))
    link.faults = Faults(
        drop=drop,
        duplicate=duplicate,
        corrupt=corrupt,
        reorder=reorder,
        truncate=truncate,
        garbage=garbage,
        start=link.now,
    )
    data_a, data_b = payload(size, seed), payload(size // 3, seed + 1) if both else b""
    a.channel.send(data_a)
    if both:
        b.channel.send(data_b)

    def finished(_: Link) -> bool:
        if a.ended is not None or b.ended is not None:
            return a.ended is not None and b.ended is not None
        if a.channel.idle and b.channel.idle and a.channel.handshake.state is State.ESTABLISHED:
            a.channel.close(link.now)
        return False

    link.run(link.now + 600, finished)
    # never a hang: both ends reached an outcome
    assert a.ended is not None and b.ended is not None, (a.ended, b.ended)
    # never wrong data: what arrived is a prefix of what was sent, in order, once
    assert data_a.startswith(bytes(b.received))
    assert data_b.startswith(bytes(a.received))
    if isinstance(a.ended, Closed) and isinstance(b.ended, Closed):
        assert bytes(b.received) == data_a and bytes(a.received) == data_b
        assert b.messages == [data_a]
    else:
        # a failure is reported with a reason at both ends
        assert all(getattr(e.ended, "reason", "") for e in (a, b))


def test_a_channel_whose_link_failed_asks_for_no_more_time():
    link, a, b = establish()
    a.channel.send(payload(20000, 11))
    link.drop_if = lambda end, piece, now: True  # the cable is cut
    link.run(link.now + 60, lambda lk: a.ended is not None and b.ended is not None)
    assert isinstance(a.ended, Failed) and not a.channel.idle  # frames were in flight
    timer = a.channel.get_timer()
    assert timer is None or timer > link.now
    assert not a.channel.ready


def test_the_line_model_learns_a_line_faster_than_its_rate():
    """Acknowledged within a fraction of their airtime (an unpaced pty pair), frames
    are handed out more at a time; acknowledged after it, the pace stays 1."""

    def handed_per_call(delay_in_airtimes: float) -> list[int]:
        t = _transfer(frame_size=512, window=32)
        airtime = (512 + 24) * FAST.char_time
        t.send(bytes(120 * 512))
        now, counts = 0.0, []
        for _ in range(8):
            frames = t.frames_to_send(now)
            counts.append(len(frames))
            now += delay_in_airtimes * airtime * max(1, len(frames))
            ack = (frames[-1].seq + 1) & 0xFFFFFFFF
            t.receive_frame(Frame(FrameType.DACK, frames[0].session, 0, ack, encode_dack(32)), now)
        return counts

    fast, paced = handed_per_call(0.01), handed_per_call(1.5)
    assert paced[-1] <= 3  # two frames' time ahead of the UART (and a partial third)
    assert fast[-1] >= 4 * paced[-1]


def test_the_sender_polls_when_the_line_model_holds_it_back():
    """The last DATA frame before the model's queue is full asks for an
    acknowledgement at once (POLL); frames cut short by the caller's budget, or
    the last of what there is to send, do not."""
    t = _transfer(frame_size=512, window=32)
    t.send(bytes(40 * 512))
    frames = t.frames_to_send(0.0)
    assert [f.flags & Flags.POLL for f in frames] == [0] * (len(frames) - 1) + [Flags.POLL]
    t = _transfer(frame_size=512, window=32)
    t.send(bytes(40 * 512))
    assert not any(f.flags & Flags.POLL for f in t.frames_to_send(0.0, budget=600))
    t = _transfer(frame_size=512, window=32)
    t.send(bytes(512))
    assert not any(f.flags & Flags.POLL for f in t.frames_to_send(0.0))


def test_a_polled_frame_is_acknowledged_at_once():
    """A DATA frame with POLL gets its DACK now; without it the receiver waits for
    more frames or its delayed-acknowledgement timer (§17.4)."""
    session = Session(0x11111111, 0x22222222)

    def answer(flags: int) -> list[Frame]:
        t = _transfer("responder", frame_size=512, window=32)
        frame = Frame(FrameType.DATA, session.id, session.initiator_isn + 1, 0, bytes(512), flags)
        t.receive_frame(frame, 0.0)
        return t.frames_to_send(0.0)

    assert answer(0) == []
    (dack,) = answer(Flags.POLL)
    assert dack.type == FrameType.DACK


@pytest.mark.parametrize(("fast", "largest"), [(False, 8192), (True, 32768)])
def test_frames_are_longest_on_a_fast_line(fast, largest):
    """With 32768-byte frames agreed, a sender on a line that paces its bytes keeps
    its segment at most 8192 (a frame sent again keeps its size, and long ones seldom
    cross a noisy line whole); on a FAST line it sends the agreed size (§17.2).
    The receiver expects the same until a full frame shows otherwise."""
    t = _transfer(frame_size=32768, window=32, fast=fast)
    assert t.segment == largest
    t.send(bytes(32 * 32768))  # four windows of 8192-byte frames: what a paced sender holds
    now, seen = 0.0, set()
    for _ in range(80):  # clean rounds: a sample with no loss doubles up to the largest
        frames = [f for f in t.frames_to_send(now) if f.type == FrameType.DATA]
        seen |= {len(f.payload) for f in frames}
        now += 0.01
        if frames:
            ack = (frames[-1].seq + 1) & 0xFFFFFFFF
            t.receive_frame(Frame(FrameType.DACK, frames[0].session, 0, ack, encode_dack(32)), now)
    assert seen == {largest}
    receiver = _transfer("responder", frame_size=32768, window=32, fast=fast)
    assert receiver._peer_segment == largest


def test_the_segment_shrinks_on_a_noisy_line_and_grows_back_on_a_clean_one():
    """Frames hit by bit errors at random (a BER of 1e-5: one character in 10^4),
    a third of the 4096-byte ones, are cut to about 512 bytes; with no loss they
    double back to the agreed size."""
    t = _transfer(frame_size=4096, window=32, send_buffer=1 << 22)
    t.send(bytes(1 << 21))
    now, rng = 0.0, random.Random(5)
    airtime = 4200 * FAST.char_time

    def round_(per_char: float) -> None:
        nonlocal now
        frames = [f for f in t.frames_to_send(now, budget=1 << 20) if f.type == FrameType.DATA]
        now += airtime * len(frames)
        missing = [
            f.seq
            for f in frames
            if f.flags & 1 == 0 and rng.random() < 1 - (1 - per_char) ** (len(f.payload) + 24)
        ]
        if missing:
            t.receive_frame(
                Frame(FrameType.NAK, frames[0].session, 0, frames[0].seq, encode_nak(missing[:64])),
                now,
            )
        newest = max(frames, key=lambda f: (f.seq - frames[0].seq) & 0xFFFFFFFF)
        ack = (newest.seq + 1) & 0xFFFFFFFF
        t.receive_frame(Frame(FrameType.DACK, frames[0].session, 0, ack, encode_dack(32)), now)

    assert t.segment == 4096
    for _ in range(40):  # about three frames a round: the model keeps two frames' time queued
        round_(1e-4)
    assert 256 <= t.segment <= 1024
    for _ in range(40):
        round_(0.0)
    assert t.segment == 4096
