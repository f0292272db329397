"""Files over SHS on serialhs ports across the virtual wire: negotiate, move,
check; resume after the cable is pulled mid-transfer and after a receiver
restart; refusals; a peer that only speaks XMODEM; the send and recv commands."""

from __future__ import annotations

import errno
import hashlib
import itertools
import json
import os
import random
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from commands import run_pair as run_commands
from commands import serialhs_argv

from serialhs.driver.port import Port
from serialhs.driver.settings import SerialSettings
from serialhs.errors import RemoteProtocolError
from serialhs.negotiate import filetransfer
from serialhs.negotiate.capabilities import Capabilities
from serialhs.negotiate.fileproto import (
    Accept,
    Chunk,
    End,
    MessageReader,
    Offer,
    Refuse,
    Result,
    chunk_size,
    decode,
    encode,
)
from serialhs.negotiate.filetransfer import (
    FileProgress,
    FileResult,
    file_capabilities,
    receive_file,
    send_file,
)
from serialhs.sim.socat import SocatPair
from serialhs.sim.wire import Wire

SAFE = SerialSettings(9600)
FAST = file_capabilities(921600)


def make_file(path: Path, size: int, seed: int = 1) -> Path:
    path.write_bytes(random.Random(seed).randbytes(size))
    return path


def run_pair(
    wire: Wire,
    source: Path,
    target: Path,
    *,
    caps_send: Capabilities = FAST,
    caps_recv: Capabilities = FAST,
    on_progress: Callable[[FileProgress], None] | None = None,
    **kw: Any,
) -> tuple[FileResult, FileResult]:
    results: dict[str, Any] = {}

    def receiver() -> None:
        with Port(wire.b.pty, SAFE) as port:
            try:
                results["recv"] = receive_file(
                    port, target, capabilities=caps_recv, progress=on_progress, timeout=120, **kw
                )
            except Exception as e:  # reported below
                results["recv"] = e

    thread = threading.Thread(target=receiver)
    thread.start()
    try:
        with Port(wire.a.pty, SAFE) as port:
            results["send"] = send_file(port, source, capabilities=caps_send, timeout=120)
    finally:
        thread.join(150)
    sent, got = results["send"], results["recv"]
    assert isinstance(sent, FileResult) and isinstance(got, FileResult), (sent, got)
    return sent, got


def test_a_file_moves_whole_and_checked(tmp_path):
    source = make_file(tmp_path / "data.bin", 200_000)
    target = tmp_path / "out.bin"
    seen: list[FileProgress] = []
    with Wire(settings=SAFE) as wire:
        sent, got = run_pair(wire, source, target, on_progress=seen.append)
    assert sent.ok and got.ok, (sent.reason, got.reason)
    assert target.read_bytes() == source.read_bytes()
    digest = hashlib.sha256(source.read_bytes()).hexdigest()
    assert sent.sha256 == got.sha256 == digest
    assert sent.link is not None and sent.link.settings.baudrate == 921600
    assert sent.transferred == got.transferred == 200_000 and sent.attempts == 1
    assert not (tmp_path / "out.bin.part").exists()
    assert not (tmp_path / "out.bin.part.json").exists()
    # progress climbed to the whole file
    assert seen and seen[-1].done == 200_000 and seen[-1].total == 200_000
    assert all(a.done <= b.done for a, b in itertools.pairwise(seen))
    # on a clean wire nothing was sent twice (speed: benchmarks/transfer_bench.py)
    assert sent.stats.resent == 0 and got.stats.duplicates == 0


@pytest.mark.parametrize("line", ["paced wire", "socat pair"])
def test_the_receiving_pump_waits_for_whole_frames_only_where_bytes_trickle(
    tmp_path, monkeypatch, line
):
    # On the paced wire bytes come one character time apart, and the pump lets the
    # tty count the rest of a frame (VMIN); a socat pair delivers in bursts faster
    # than its rate (the handshake finds it FAST), and a threshold would only cost.
    source = make_file(tmp_path / "data.bin", 100_000)
    asked: list[int] = []
    read_some = Port.read_some

    def recording(self: Port, *args: Any, min_size: int = 1, **kw: Any) -> bytes:
        asked.append(min_size)
        return read_some(self, *args, min_size=min_size, **kw)

    monkeypatch.setattr(Port, "read_some", recording)
    pair = Wire(settings=SAFE) if line == "paced wire" else SocatPair()
    with pair:
        ends = (pair.a.pty, pair.b.pty) if line == "paced wire" else (pair.a, pair.b)
        results: dict[str, FileResult] = {}

        def receive() -> None:
            with Port(ends[1], SAFE) as port:
                results["recv"] = receive_file(port, tmp_path / "out.bin", timeout=60)

        receiver = threading.Thread(target=receive)
        receiver.start()
        with Port(ends[0], SAFE) as port:
            sent = send_file(port, source, timeout=60)
        receiver.join(90)
    assert sent.ok and results["recv"].ok
    assert sent.link is not None and sent.link.handshake.fast is (line == "socat pair")
    if line == "paced wire":
        assert max(asked) > 1
    else:
        assert set(asked) == {1}


def test_an_empty_file(tmp_path):
    source = make_file(tmp_path / "empty.bin", 0)
    with Wire(settings=SAFE) as wire:
        sent, got = run_pair(wire, source, tmp_path / "out.bin")
    assert sent.ok and got.ok
    assert (tmp_path / "out.bin").read_bytes() == b""


def test_pulling_the_cable_mid_transfer_resumes_and_the_file_is_identical(tmp_path):
    source = make_file(tmp_path / "data.bin", 400_000, seed=2)
    target = tmp_path / "out.bin"
    pulled = threading.Event()
    with Wire(settings=SAFE) as wire:

        def pull_midway(p: FileProgress) -> None:
            if not pulled.is_set() and p.done > 150_000:
                pulled.set()

                def cycle() -> None:
                    wire.unplug()
                    time.sleep(1.0)
                    wire.replug()

                threading.Thread(target=cycle).start()

        sent, got = run_pair(wire, source, target, on_progress=pull_midway)
    assert pulled.is_set()
    assert sent.ok and got.ok, (sent.reason, got.reason)
    assert target.read_bytes() == source.read_bytes()
    assert sent.attempts >= 2 and got.attempts >= 2
    # it went on from what the receiver had, not from the start
    assert 150_000 <= got.resumed_from < 400_000
    assert got.resumed_from == sent.resumed_from
    assert got.transferred == 400_000  # every byte written once


def test_a_receiver_restarted_resumes_its_part_file(tmp_path):
    data = random.Random(3).randbytes(120_000)
    source = tmp_path / "data.bin"
    source.write_bytes(data)
    target = tmp_path / "out.bin"
    # what an interrupted earlier run left behind
    (tmp_path / "out.bin.part").write_bytes(data[:50_000])
    offer = {"size": len(data), "sha256": hashlib.sha256(data).hexdigest(), "name": "data.bin"}
    (tmp_path / "out.bin.part.json").write_text(json.dumps(offer))
    with Wire(settings=SAFE) as wire:
        sent, got = run_pair(wire, source, target)
    assert sent.ok and got.ok
    assert got.resumed_from == 50_000 and got.transferred == 70_000
    assert target.read_bytes() == data


def test_a_part_file_of_another_file_is_not_resumed(tmp_path):
    source = make_file(tmp_path / "data.bin", 60_000, seed=4)
    target = tmp_path / "out.bin"
    (tmp_path / "out.bin.part").write_bytes(b"x" * 30_000)
    other = {"size": 60_000, "sha256": "00" * 32, "name": "data.bin"}
    (tmp_path / "out.bin.part.json").write_text(json.dumps(other))
    with Wire(settings=SAFE) as wire:
        sent, got = run_pair(wire, source, target)
    assert sent.ok and got.ok and got.resumed_from == 0
    assert target.read_bytes() == source.read_bytes()


def test_a_chunk_at_the_wrong_offset_ends_the_transfer_with_the_reason(tmp_path, monkeypatch):
    real = filetransfer.encode

    def shifted(message):  # a sender that gets its offsets wrong
        if isinstance(message, Chunk):
            message = Chunk(message.offset + 1, message.data)
        return real(message)

    monkeypatch.setattr(filetransfer, "encode", shifted)
    source = make_file(tmp_path / "data.bin", 10_000)
    with Wire(settings=SAFE) as wire:
        sent, got = run_pair(wire, source, tmp_path / "out.bin")
    assert not sent.ok and "size mismatch" in sent.reason and "expected one at 0" in sent.reason
    assert not got.ok and "size mismatch" in got.reason
    assert sent.attempts == got.attempts == 1
    assert not (tmp_path / "out.bin").exists()


def test_an_existing_file_is_refused_unless_overwrite(tmp_path):
    source = make_file(tmp_path / "data.bin", 10_000)
    target = tmp_path / "out.bin"
    target.write_bytes(b"keep me")
    with Wire(settings=SAFE) as wire:
        sent, got = run_pair(wire, source, target)
    assert not sent.ok and "refused" in sent.reason and "exists" in sent.reason
    assert not got.ok and target.read_bytes() == b"keep me"
    with Wire(settings=SAFE) as wire:
        sent, got = run_pair(wire, source, target, overwrite=True)
    assert sent.ok and target.read_bytes() == source.read_bytes()


def test_a_directory_takes_the_offered_name_and_never_its_path(tmp_path):
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    source = make_file(tmp_path / "report.bin", 5_000)
    with Wire(settings=SAFE) as wire:
        sent, got = run_pair(wire, source, inbox)
    assert sent.ok and got.ok and got.path == str(inbox / "report.bin")
    assert (inbox / "report.bin").read_bytes() == source.read_bytes()


def test_a_peer_that_only_speaks_xmodem_gets_the_file_with_xmodem(tmp_path):
    source = make_file(tmp_path / "data.bin", 20_000)
    target = tmp_path / "out.bin"
    only_xmodem = Capabilities.up_to(115200, protocols=("xmodem-1k",))
    with Wire(settings=SAFE) as wire:
        sent, got = run_pair(wire, source, target, caps_recv=only_xmodem)
    assert sent.protocol == got.protocol == "xmodem-1k"
    assert sent.ok and got.ok
    assert target.read_bytes()[:20_000] == source.read_bytes()  # XMODEM pads the last block


def test_a_peer_with_nothing_in_common_is_not_asked_twice(tmp_path):
    source = make_file(tmp_path / "data.bin", 1_000)
    only_zmodem = Capabilities.up_to(115200, protocols=("zmodem",))
    with Wire(settings=SAFE) as wire:
        sent, got = run_pair(wire, source, tmp_path / "out.bin", caps_recv=only_zmodem)
    assert not sent.ok and not got.ok
    assert "in common" in sent.reason and sent.attempts == 1 and got.attempts == 1


# -- the file messages --------------------------------------------------------------------------


def test_file_messages_round_trip_and_bad_ones_are_named():
    digest = bytes(range(32))
    for message in (
        Offer(123456789, digest, "näme.bin"),
        Accept(42),
        Refuse("no room"),
        Chunk(7, b"abc"),
        End(),
        Result(1, "checksum"),
    ):
        assert decode(encode(message)) == message
    for bad, text in (
        (b"", "empty"),
        (b"\x09", "unknown file message type 0x09"),
        (b"\x02\x00", "malformed ACCEPT"),
        (b"\x04" + bytes(8), "malformed CHUNK"),
        (b"\x01" + bytes(8) + digest + b"\x00\x05ab", "malformed OFFER"),
    ):
        with pytest.raises(RemoteProtocolError, match=text):
            decode(bad)


def test_the_senders_digest_is_the_files_first_size_bytes_even_after_it_is_closed(tmp_path):
    data = random.Random(5).randbytes(3 * (1 << 20) + 17)  # more than one hashing block
    path = tmp_path / "f.bin"
    path.write_bytes(data)
    with path.open("rb") as f:
        digest = filetransfer._FileDigest(f, len(data) - 17)
    # its own descriptor: closing the file (an attempt that ended early) is fine
    assert digest.result() == hashlib.sha256(data[:-17]).digest()


def test_a_file_that_shrank_before_its_digest_is_a_clear_error(tmp_path):
    path = tmp_path / "f.bin"
    path.write_bytes(b"x" * 1000)
    with path.open("rb") as f:
        digest = filetransfer._FileDigest(f, 4000)
        with pytest.raises(OSError, match="ended at 1000 of its 4000 bytes"):
            digest.result()


def test_a_chunk_fills_whole_frames_and_messages_are_bounded():
    for frame in (512, 1024, 4096, 8192):
        size = chunk_size(frame)
        assert (size + 9) % frame == 0 and size <= 65536
    reader = MessageReader(limit=100)
    assert reader.feed(b"a" * 60, False) is None
    assert reader.feed(b"b" * 10, True) == b"a" * 60 + b"b" * 10
    reader.feed(b"c" * 90, False)
    with pytest.raises(RemoteProtocolError, match="more than 100 bytes"):
        reader.feed(b"d" * 20, False)


# -- the commands -----------------------------------------------------------------------------


def both_commands(
    wire: Wire, recv_args: list[str], send_args: list[str]
) -> tuple[subprocess.CompletedProcess[str], subprocess.CompletedProcess[str]]:
    """``serialhs recv`` on end b (started first), ``serialhs send`` on end a."""
    return run_commands(["recv", wire.b.pty, *recv_args], ["send", wire.a.pty, *send_args])


def test_send_and_recv_commands_on_both_ends_of_a_wire(tmp_path):
    source = make_file(tmp_path / "data.bin", 50_000)
    target = tmp_path / "out.bin"
    with Wire(settings=SAFE, max_baud=230400) as wire:
        send, recv = both_commands(wire, [str(target), "--json"], [str(source), "--progress"])
    assert send.returncode == 0, send.stderr
    assert recv.returncode == 0, recv.stderr
    assert target.read_bytes() == source.read_bytes()
    report = json.loads(recv.stdout)
    assert report["ok"] and report["settings"].startswith("230400")
    # the sender's progress bar reached the end and its report names the line rate
    assert "100%" in send.stderr and "[" + "#" * 30 + "]" in send.stderr
    assert "agreed 230400 8N1" in send.stdout and "of the line rate" in send.stdout
    assert "460800 failed" in send.stdout  # training fell back from a rate the wire garbles


def test_xmodem_commands_talk_to_each_other(tmp_path):
    source = make_file(tmp_path / "data.bin", 5_000)
    target = tmp_path / "out.bin"
    xmodem = ["--protocol", "xmodem-1k", "--settings", "115200 8N1"]
    with Wire(settings="115200 8N1") as wire:
        send, recv = both_commands(wire, [str(target), *xmodem, "--json"], [str(source), *xmodem])
    assert send.returncode == 0, send.stderr
    assert recv.returncode == 0, recv.stderr
    assert json.loads(recv.stdout)["ok"]
    assert target.read_bytes()[:5_000] == source.read_bytes()


def test_a_missing_file_is_a_clear_error(tmp_path):
    result = subprocess.run(
        serialhs_argv("send", os.devnull, str(tmp_path / "nope.bin")),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode != 0 and "nope.bin" in result.stderr


def _receive_over_socat(tmp_path: Path, size: int) -> tuple[Path, FileResult, FileResult]:
    source = make_file(tmp_path / "data.bin", size)
    results: dict[str, FileResult] = {}
    with SocatPair() as pair:

        def receive() -> None:
            with Port(pair.b, SAFE) as port:
                results["recv"] = receive_file(port, tmp_path / "out.bin", timeout=60)

        receiver = threading.Thread(target=receive)
        receiver.start()
        with Port(pair.a, SAFE) as port:
            sent = send_file(port, source, timeout=60)
        receiver.join(90)
    return source, sent, results["recv"]


def test_a_receiver_has_the_disk_write_the_file_while_it_arrives(tmp_path, monkeypatch):
    # Without it the fsync that confirms the file would wait for all of it at the end.
    monkeypatch.setattr(filetransfer, "WRITEBACK_EVERY", 64 << 10)
    synced: list[str] = []
    real = os.fdatasync

    def fdatasync(fd: int) -> None:
        synced.append(threading.current_thread().name)
        real(fd)

    monkeypatch.setattr(os, "fdatasync", fdatasync)
    source, sent, got = _receive_over_socat(tmp_path, 600_000)
    assert sent.ok and got.ok, (sent.reason, got.reason)
    assert (tmp_path / "out.bin").read_bytes() == source.read_bytes()
    assert len(synced) >= 2 and set(synced) == {"serialhs-writeback"}
    assert not [t for t in threading.enumerate() if t.name == "serialhs-writeback"]


def test_a_disk_that_fails_a_writeback_fails_the_file_with_the_reason(tmp_path, monkeypatch):
    monkeypatch.setattr(filetransfer, "WRITEBACK_EVERY", 64 << 10)

    def fdatasync(fd: int) -> None:
        raise OSError(errno.EIO, os.strerror(errno.EIO))

    monkeypatch.setattr(os, "fdatasync", fdatasync)
    _, sent, got = _receive_over_socat(tmp_path, 300_000)
    for result in (sent, got):
        assert not result.ok and "write error" in result.reason.lower(), result.reason
        assert "out.bin.part" in result.reason and os.strerror(errno.EIO) in result.reason
    assert not (tmp_path / "out.bin").exists()
    assert not [t for t in threading.enumerate() if t.name == "serialhs-writeback"]
