"""The RFC 2217 endpoint of the virtual wire, driven by a small selectors loop
and reached with pyserial's real RFC 2217 client and with hand-written Telnet."""

from __future__ import annotations

import concurrent.futures
import contextlib
import logging
import queue
import random
import selectors
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, ClassVar

import pytest
import serial

from serialhs.driver.lines import Lines
from serialhs.driver.settings import FlowControl, Parity, SerialSettings, StopBits
from serialhs.errors import SimError
from serialhs.sim.rfc2217 import MAX_SUBNEGOTIATION, Rfc2217Endpoint

# pyserial 3.5's RFC 2217 client names its reader thread the old way.
pytestmark = [
    pytest.mark.filterwarnings("ignore:setDaemon:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore:setName:DeprecationWarning"),
]

IAC, SB, SE = b"\xff", b"\xfa", b"\xf0"
WILL, WONT, DO, DONT = b"\xfb", b"\xfc", b"\xfd", b"\xfe"
COM = b"\x2c"
WAIT = 2.0  # upper bound of every wait in this file


def sb(command: int, value: bytes = b"") -> bytes:
    """IAC SB COM-PORT-OPTION <command> <value, IAC doubled> IAC SE."""
    return IAC + SB + COM + bytes([command]) + value.replace(IAC, IAC + IAC) + IAC + SE


def telnet_payload(stream: bytes) -> bytes:
    """The data in a complete Telnet stream: commands removed, IAC IAC undone."""
    out = bytearray()
    i = 0
    while i < len(stream):
        byte = stream[i]
        if byte != 0xFF:
            out.append(byte)
            i += 1
            continue
        command = stream[i + 1]
        if command == 0xFF:
            out.append(0xFF)
            i += 2
        elif command in (0xFB, 0xFC, 0xFD, 0xFE):
            i += 3
        elif command == 0xFA:
            j = i + 2
            while not (stream[j] == 0xFF and stream[j + 1] == 0xF0):
                j += 2 if stream[j] == 0xFF else 1
            i = j + 2
        else:
            i += 2
    return bytes(out)


# -- the test harness: callbacks, loop, clients -------------------------------------


class Recorder:
    """Collects the endpoint's callbacks (called on the loop thread)."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.events: list[tuple[str, Any]] = []

    def add(self, kind: str, value: Any) -> None:
        with self.cond:
            self.events.append((kind, value))
            self.cond.notify_all()

    def of(self, kind: str) -> list[Any]:
        with self.cond:
            return [value for k, value in self.events if k == kind]

    def data(self) -> bytes:
        return b"".join(self.of("data"))

    def wait_for(self, what: str, predicate: Callable[[Recorder], bool]) -> None:
        deadline = time.monotonic() + WAIT
        with self.cond:
            while not predicate(self):
                left = deadline - time.monotonic()
                if left <= 0:
                    pytest.fail(f"timed out waiting for {what}; got {self.events!r:.500}")
                self.cond.wait(left)

    def wait_data(self, expected: bytes) -> None:
        self.wait_for(f"{len(expected)} data bytes", lambda r: len(r.data()) >= len(expected))
        assert self.data() == expected

    def wait_connect(self, state: bool, count: int = 1) -> None:
        self.wait_for(
            f"on_connect({state}) x{count}", lambda r: r.of("connect").count(state) >= count
        )


class EndpointLoop:
    """A selectors loop in a thread, as the wire runs one. Other threads reach
    the endpoint only through call(), which runs a function on the loop."""

    def __init__(self, endpoint: Rfc2217Endpoint) -> None:
        self.endpoint = endpoint
        self.errors: list[BaseException] = []
        self._selector = selectors.DefaultSelector()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._selector.register(self._wake_r, selectors.EVENT_READ)
        self._calls: queue.SimpleQueue[tuple[Callable[..., Any], tuple[Any, ...], Any]] = (
            queue.SimpleQueue()
        )
        self._registered: dict[socket.socket, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="endpoint-loop", daemon=True)
        self._thread.start()

    def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        future: concurrent.futures.Future[Any] = concurrent.futures.Future()
        self._calls.put((fn, args, future))
        self._wake_w.send(b"!")
        return future.result(WAIT)

    def stop(self) -> None:
        self._stop.set()
        self._wake_w.send(b"!")
        self._thread.join(WAIT)
        assert not self._thread.is_alive(), "the loop thread did not stop"
        self._selector.close()
        self._wake_r.close()
        self._wake_w.close()

    def _sync(self) -> None:
        """Watch what the endpoint asks for: stale sockets out first, then new ones in."""
        endpoint = self.endpoint
        current = endpoint.fileobjs()
        for sock in list(self._registered):
            if sock not in current:
                self._selector.unregister(sock)
                del self._registered[sock]
        for sock in current:
            events = selectors.EVENT_READ
            if sock is current[-1] and endpoint.wants_write():
                events |= selectors.EVENT_WRITE
            if sock not in self._registered:
                self._selector.register(sock, events)
            elif self._registered[sock] != events:
                self._selector.modify(sock, events)
            self._registered[sock] = events

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._sync()
                for key, mask in self._selector.select(0.05):
                    if key.fileobj is self._wake_r:
                        self._wake_r.recv(4096)
                        continue
                    sock = key.fileobj
                    assert isinstance(sock, socket.socket)
                    if mask & selectors.EVENT_READ:
                        self.endpoint.handle_read(sock)
                    if mask & selectors.EVENT_WRITE:
                        self.endpoint.handle_write()
                while not self._calls.empty():
                    fn, args, future = self._calls.get()
                    try:
                        future.set_result(fn(*args))
                    except Exception as e:
                        future.set_exception(e)
            except Exception as e:  # recorded for the fixture to fail the test
                self.errors.append(e)
                time.sleep(0.01)


class Lab:
    def __init__(self, endpoint: Rfc2217Endpoint, recorder: Recorder, loop: EndpointLoop):
        self.endpoint = endpoint
        self.rec = recorder
        self.loop = loop

    def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        return self.loop.call(fn, *args)


@pytest.fixture
def make_lab() -> Iterator[Callable[..., Lab]]:
    labs: list[Lab] = []

    def make(**kwargs: Any) -> Lab:
        rec = Recorder()
        callbacks: dict[str, Any] = {
            "on_data": lambda data: rec.add("data", data),
            "on_settings": lambda settings: rec.add("settings", settings),
            "on_outputs": lambda rts, dtr: rec.add("outputs", (rts, dtr)),
            "on_break": lambda on: rec.add("break", on),
            "on_connect": lambda state: rec.add("connect", state),
        }
        callbacks.update(kwargs)
        endpoint = Rfc2217Endpoint(**callbacks)
        lab = Lab(endpoint, rec, EndpointLoop(endpoint))
        labs.append(lab)
        return lab

    yield make
    for lab in labs:
        lab.loop.stop()
        lab.endpoint.close()
        assert not lab.loop.errors, f"the loop saw errors: {lab.loop.errors!r}"


@pytest.fixture
def lab(make_lab: Callable[..., Lab]) -> Lab:
    return make_lab()


@pytest.fixture
def open_client() -> Iterator[Callable[..., Any]]:
    clients: list[Any] = []

    def open_(url: str, **kwargs: Any) -> Any:
        client = serial.serial_for_url(url, timeout=WAIT, **kwargs)
        clients.append(client)
        return client

    yield open_
    for client in clients:
        client.close()


class RawClient:
    """A plain TCP client that speaks Telnet by hand."""

    opened: ClassVar[list[RawClient]] = []  # closed after each test by the fixture below

    def __init__(self, address: tuple[str, int], *, rcvbuf: int | None = None) -> None:
        RawClient.opened.append(self)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf is not None:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(WAIT)
        self.sock.connect(address)
        self.buf = bytearray()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def expect(self, needle: bytes) -> bytes:
        """Read until ``needle`` arrives; return what came before it and consume both."""
        deadline = time.monotonic() + WAIT
        while needle not in self.buf:
            self.sock.settimeout(max(deadline - time.monotonic(), 0.001))
            try:
                got = self.sock.recv(65536)
            except TimeoutError:
                pytest.fail(f"timed out waiting for {needle!r}; have {bytes(self.buf)!r:.300}")
            if not got:
                pytest.fail(f"connection closed while waiting for {needle!r}")
            self.buf += got
        index = self.buf.index(needle)
        before = bytes(self.buf[:index])
        del self.buf[: index + len(needle)]
        return before

    def closed_by_server(self) -> bool:
        """Read (and drop) until the server closes; False if it did not within WAIT."""
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            self.sock.settimeout(max(deadline - time.monotonic(), 0.001))
            try:
                if not self.sock.recv(65536):
                    return True
            except TimeoutError:
                return False
            except ConnectionResetError:
                return True
        return False

    def close(self) -> None:
        self.sock.close()


@pytest.fixture(autouse=True)
def _close_raw_clients() -> Iterator[None]:
    yield
    while RawClient.opened:
        RawClient.opened.pop().close()


def lost(client: Any) -> bool:
    """pyserial's client reports a lost connection as EOF, or as an error once its
    reader thread has ended."""
    try:
        return bool(client.read(1) == b"")
    except serial.SerialException as e:
        return "connection failed" in str(e)


def negotiate(raw: RawClient) -> None:
    """Agree on COM-PORT-OPTION both ways, as an RFC 2217 client does."""
    raw.expect(IAC + WILL + COM)
    raw.send(IAC + DO + COM + IAC + WILL + COM)
    raw.expect(sb(107, b"\x00"))  # the first modem-state notification


# -- the listener ----------------------------------------------------------------------


def test_listener_binds_loopback_by_default(lab: Lab) -> None:
    endpoint = lab.endpoint
    host, port = endpoint.address
    assert host == "127.0.0.1"
    assert port > 0
    assert endpoint.url == f"rfc2217://127.0.0.1:{port}"
    (listener,) = lab.call(endpoint.fileobjs)
    assert listener.getsockname() == ("127.0.0.1", port)
    assert not lab.call(endpoint.wants_write)
    assert not endpoint.connected


def test_busy_port_is_a_clear_error(lab: Lab) -> None:
    port = lab.endpoint.address[1]
    with pytest.raises(SimError, match=f"127.0.0.1:{port}"):
        Rfc2217Endpoint(
            port=port,
            on_data=lambda d: None,
            on_settings=lambda s: None,
            on_outputs=lambda r, d: None,
            on_break=lambda b: None,
        )


def test_close_stops_listening(make_lab: Callable[..., Lab]) -> None:
    lab = make_lab()
    raw = RawClient(lab.endpoint.address)
    lab.rec.wait_connect(True)
    lab.call(lab.endpoint.close)
    assert lab.call(lab.endpoint.fileobjs) == []
    assert raw.closed_by_server()
    assert lab.rec.of("connect") == [True]  # close() calls nothing
    raw.close()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(lab.endpoint.address, timeout=WAIT)


# -- with pyserial's RFC 2217 client -----------------------------------------------------


def test_data_both_ways_every_byte_value(lab: Lab, open_client: Callable[..., Any]) -> None:
    client = open_client(lab.endpoint.url)
    lab.rec.wait_connect(True)
    pattern = bytes(range(256)) * 8 + b"\xff\xff\xff"  # IAC runs must survive escaping
    client.write(pattern)
    lab.rec.wait_data(pattern)

    assert lab.call(lab.endpoint.send, pattern) == len(pattern)
    assert client.read(len(pattern)) == pattern


def test_client_settings_reach_on_settings(lab: Lab, open_client: Callable[..., Any]) -> None:
    client = open_client(
        lab.endpoint.url, baudrate=19200, bytesize=7, parity="E", stopbits=2, rtscts=True
    )
    wanted = SerialSettings(19200, 7, Parity.EVEN, StopBits.TWO, FlowControl.RTSCTS)
    lab.rec.wait_for("7E2 rtscts", lambda r: r.of("settings")[-1:] == [wanted])
    assert lab.endpoint.settings == wanted

    # pyserial applies (and sends) one attribute after another, so on the way back
    # 8 data bits meet 1.5 stop bits for a moment: no harm done.
    client.apply_settings({"baudrate": 115200, "bytesize": 5, "stopbits": 1.5, "parity": "O"})
    wanted = SerialSettings(115200, 5, Parity.ODD, StopBits.ONE_POINT_FIVE, FlowControl.RTSCTS)
    lab.rec.wait_for("115200 5O1.5", lambda r: r.of("settings")[-1:] == [wanted])
    client.rtscts = False
    client.xonxoff = True
    client.apply_settings({"bytesize": 8, "stopbits": 1})
    wanted = SerialSettings(115200, 8, Parity.ODD, StopBits.ONE, FlowControl.XONXOFF)
    lab.rec.wait_for("115200 8O1 xonxoff", lambda r: r.of("settings")[-1:] == [wanted])
    assert lab.call(lambda: lab.endpoint.settings) == wanted

    # A rate SerialSettings does not allow is refused; the client hears the old one.
    with pytest.raises(ValueError, match="rejected"):
        client.baudrate = 30_000_000
    assert lab.call(lambda: lab.endpoint.settings) == wanted


def test_control_lines_both_ways(lab: Lab, open_client: Callable[..., Any]) -> None:
    # No URL options: pyserial's client keeps the modem state the server pushes
    # with NOTIFY-MODEMSTATE; "?poll_modem" would make each stale read ask and wait.
    client = open_client(lab.endpoint.url)

    # The client's outputs. pyserial drives RTS and DTR high when it opens a port
    # without hardware flow control.
    lab.rec.wait_for("open", lambda r: len(r.of("outputs")) >= 2)
    assert sorted(lab.rec.of("outputs"), key=str) == [(None, True), (True, None)]
    client.rts = False
    client.dtr = False
    client.rts = True
    lab.rec.wait_for("outputs", lambda r: len(r.of("outputs")) >= 5)
    assert lab.rec.of("outputs")[2:] == [(False, None), (None, False), (True, None)]
    client.break_condition = True
    client.break_condition = False
    lab.rec.wait_for("break", lambda r: len(r.of("break")) >= 2)
    assert lab.rec.of("break") == [True, False]

    # The client's inputs, as the wire sets them, within 100 ms.
    assert (client.cts, client.dsr, client.cd, client.ri) == (False, False, False, False)
    for lines in (
        Lines(cts=True, dsr=True, dcd=True, ri=True),
        Lines(cts=False, dsr=True, dcd=False, ri=False),
        Lines(),
    ):
        want = (lines.cts, lines.dsr, lines.dcd, lines.ri)
        start = time.monotonic()
        lab.call(lab.endpoint.set_inputs, lines)
        while (client.cts, client.dsr, client.cd, client.ri) != want:
            assert time.monotonic() - start < WAIT, f"client never saw {lines}"
            time.sleep(0.001)
        elapsed = time.monotonic() - start
        assert elapsed < 0.1, f"{lines} took {elapsed * 1000:.1f} ms to reach the client"


def test_client_disconnect_and_reconnect(lab: Lab, open_client: Callable[..., Any]) -> None:
    first = open_client(lab.endpoint.url)
    lab.rec.wait_connect(True)
    first.close()
    lab.rec.wait_connect(False)
    assert not lab.call(lambda: lab.endpoint.connected)
    assert len(lab.call(lab.endpoint.fileobjs)) == 1

    second = open_client(lab.endpoint.url)
    lab.rec.wait_connect(True, count=2)
    second.write(b"again")
    lab.rec.wait_data(b"again")

    lab.call(lab.endpoint.disconnect)  # the wire unplugs the cable
    lab.rec.wait_connect(False, count=2)
    assert lost(second)
    assert not lab.call(lambda: lab.endpoint.connected)
    assert lab.call(lab.endpoint.send, b"nobody there") == len(b"nobody there")


def test_second_client_is_refused(lab: Lab, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="serialhs.sim")
    first = RawClient(lab.endpoint.address)
    negotiate(first)
    second = RawClient(lab.endpoint.address)
    assert second.closed_by_server()
    second.close()
    assert "one client at a time" in caplog.text
    # The first client is untouched.
    first.send(sb(0))
    first.expect(IAC + SB + COM + b"\x64serialhs ")
    assert lab.rec.of("connect") == [True]
    first.close()


# -- bad input ---------------------------------------------------------------------------


def test_garbage_does_not_break_the_endpoint(
    lab: Lab, open_client: Callable[..., Any], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="serialhs.sim")

    # An unterminated subnegotiation that grows without end is cut off.
    raw = RawClient(lab.endpoint.address)
    raw.send(IAC + SB + COM + b"\x01" + b"\x00" * (MAX_SUBNEGOTIATION + 100))
    assert raw.closed_by_server()
    raw.close()
    lab.rec.wait_connect(False, count=1)
    assert "subnegotiation longer than" in caplog.text

    # Malformed requests get the current value back (or are ignored); the client stays.
    raw = RawClient(lab.endpoint.address)
    negotiate(raw)
    raw.send(sb(1, b"\x00\x01"))  # SET-BAUDRATE with 2 bytes instead of 4
    raw.expect(sb(101, (9600).to_bytes(4, "big")))
    raw.send(sb(3, b"\x09"))  # parity 9 does not exist
    raw.expect(sb(103, b"\x01"))
    raw.send(sb(4, b"\x07"))  # nor does stop size 7
    raw.expect(sb(104, b"\x01"))
    raw.send(sb(2, b"\x09"))  # 9 data bits: refused, 8 stays
    raw.expect(sb(102, b"\x08"))
    raw.send(sb(5, b"\x11"))  # DCD flow control: not modelled, current flow answered
    raw.expect(sb(105, b"\x01"))
    # Unknown command, missing value, another option's subnegotiation, AYT.
    raw.send(sb(50) + sb(3) + IAC + SB + b"\x18" + b"xterm" + IAC + SE + IAC + b"\xf6")
    raw.send(sb(0))
    assert b"serialhs" in raw.expect(IAC + SE)
    assert lab.rec.of("settings") == []
    # A stray IAC SE is a Telnet error that PortManager cannot digest: dropped.
    raw.send(b"ok" + IAC + SE)
    assert raw.closed_by_server()
    raw.close()
    lab.rec.wait_connect(False, count=2)
    assert lab.rec.data().endswith(b"ok")  # data before the bad part still arrived

    # Random bytes, then the client goes away (if it was not dropped first).
    raw = RawClient(lab.endpoint.address)
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # dropped while sending
        raw.send(random.Random(2217).randbytes(64 * 1024))
    raw.close()
    lab.rec.wait_connect(False, count=3)

    # After all that a real client works.
    client = open_client(lab.endpoint.url, baudrate=57600)
    client.write(b"\x00hello\xff")
    lab.rec.wait_for("hello", lambda r: r.data().endswith(b"\x00hello\xff"))
    assert lab.call(lab.endpoint.send, b"\xffworld") == 6
    assert client.read(6) == b"\xffworld"
    assert lab.call(lambda: lab.endpoint.settings) == SerialSettings(57600)


def test_a_failing_callback_drops_the_client_not_the_loop(
    make_lab: Callable[..., Lab], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="serialhs.sim")
    received: list[bytes] = []

    def on_data(data: bytes) -> None:
        received.append(data)
        if b"boom" in data:
            raise RuntimeError("the wire could not take it")

    lab = make_lab(on_data=on_data)
    raw = RawClient(lab.endpoint.address)
    raw.send(b"boom")
    assert raw.closed_by_server()
    raw.close()
    lab.rec.wait_connect(False)
    assert "callback failed" in caplog.text
    assert "the wire could not take it" in caplog.text

    raw = RawClient(lab.endpoint.address)
    raw.send(b"fine")
    lab.rec.wait_connect(True, count=2)
    deadline = time.monotonic() + WAIT
    while b"fine" not in received and time.monotonic() < deadline:
        time.sleep(0.005)
    assert received == [b"boom", b"fine"]
    raw.close()


# -- flow of data to the client ------------------------------------------------------------


def test_send_holds_back_beyond_the_buffer_and_loses_nothing(lab: Lab) -> None:
    raw = RawClient(lab.endpoint.address, rcvbuf=4096)  # a client that does not read
    lab.rec.wait_connect(True)
    chunk = bytes(range(256)) * 64  # 16 KiB, 64 IACs to escape
    accepted: list[bytes] = []
    for _ in range(4000):  # kernel buffers take some megabytes before the endpoint's fills
        taken = lab.call(lab.endpoint.send, chunk)
        assert 0 <= taken <= len(chunk)
        accepted.append(chunk[:taken])
        if taken < len(chunk):
            break
    else:
        pytest.fail("send() never held anything back")
    assert lab.call(lab.endpoint.wants_write)
    accepted.append(chunk[: lab.call(lab.endpoint.send, chunk)])  # full: little or nothing
    expected = b"".join(accepted)

    # Now read it all: exactly what send() took, in order.
    stream = bytearray()
    raw.sock.settimeout(0.2)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            got = raw.sock.recv(1 << 20)
        except TimeoutError:
            if not lab.call(lab.endpoint.wants_write):
                break
            continue
        assert got, "the endpoint closed the connection"
        stream += got
    assert telnet_payload(bytes(stream)) == expected
    assert not lab.call(lab.endpoint.wants_write)
    assert lab.call(lab.endpoint.send, chunk) == len(chunk)
    raw.close()


# -- Telnet by hand, byte for byte from RFC 2217 ----------------------------------------------


def test_hand_written_rfc2217_exchange(lab: Lab) -> None:
    endpoint = lab.endpoint
    raw = RawClient(endpoint.address)
    negotiate(raw)

    # SET-BAUDRATE 130816 = 00 01 FF 00: the FF is doubled both ways.
    raw.send(IAC + SB + COM + b"\x01\x00\x01\xff\xff\x00" + IAC + SE)
    raw.expect(IAC + SB + COM + b"\x65\x00\x01\xff\xff\x00" + IAC + SE)
    raw.send(sb(2, b"\x07") + sb(3, b"\x03") + sb(4, b"\x02") + sb(5, b"\x03"))
    raw.expect(sb(102, b"\x07") + sb(103, b"\x03") + sb(104, b"\x02") + sb(105, b"\x03"))
    wanted = SerialSettings(130816, 7, Parity.EVEN, StopBits.TWO, FlowControl.RTSCTS)
    lab.rec.wait_for("settings", lambda r: r.of("settings")[-1:] == [wanted])
    # Value 0 asks for the current setting.
    raw.send(sb(1, bytes(4)) + sb(5, b"\x00") + sb(5, b"\x0d"))
    raw.expect(sb(101, b"\x00\x01\xff\x00") + sb(105, b"\x03") + sb(105, b"\x10"))

    # Control lines and break, and the REQ-* queries.
    raw.send(sb(5, b"\x08") + sb(5, b"\x07") + sb(5, b"\x0c") + sb(5, b"\x0a"))
    raw.expect(sb(105, b"\x08") + sb(105, b"\x08") + sb(105, b"\x0c") + sb(105, b"\x0c"))
    raw.send(sb(5, b"\x05") + sb(5, b"\x04") + sb(5, b"\x06"))
    raw.expect(sb(105, b"\x05") + sb(105, b"\x05") + sb(105, b"\x06"))
    lab.rec.wait_for("break off", lambda r: len(r.of("break")) >= 2)
    assert lab.rec.of("outputs") == [(None, True), (False, None)]
    assert lab.rec.of("break") == [True, False]

    # SIGNATURE.
    raw.send(sb(0))
    raw.expect(IAC + SB + COM + b"\x64serialhs ")

    # Data both ways, IAC escaped.
    raw.send(b"a" + IAC + IAC + b"b")
    lab.rec.wait_data(b"a\xffb")
    assert lab.call(endpoint.send, b"c\xffd") == 3
    raw.expect(b"c" + IAC + IAC + b"d")

    # Modem state: the mask is acknowledged and honoured.
    raw.send(sb(11, b"\x11"))  # CTS state and CTS change only
    raw.expect(sb(111, b"\x11"))
    lab.call(endpoint.set_inputs, Lines(dsr=True))  # masked out: nothing sent
    lab.call(endpoint.set_inputs, Lines(dsr=True, cts=True))
    before = raw.expect(sb(107, b"\x11"))
    assert IAC + SB + COM + b"\x6b" not in before
    raw.send(sb(11, b"\xff") + sb(7))  # all lines again, and a poll
    raw.expect(sb(111, b"\xff") + sb(107, b"\x30"))

    # Break from the other end: NOTIFY-LINESTATE break-detect, unless masked off.
    lab.call(endpoint.notify_break)
    raw.expect(sb(106, b"\x10"))
    raw.send(sb(10, b"\x00"))
    raw.expect(sb(110, b"\x00"))
    lab.call(endpoint.notify_break)
    raw.send(sb(0))
    before = raw.expect(IAC + SB + COM + b"\x64")
    assert IAC + SB + COM + b"\x6a" not in before

    # FLOWCONTROL-SUSPEND stops send(); RESUME lets it go on. PURGE-DATA is acknowledged.
    raw.send(sb(8) + sb(12, b"\x01"))
    raw.expect(sb(112, b"\x01"))
    assert lab.call(endpoint.send, b"held") == 0
    raw.send(sb(9) + sb(12, b"\x03"))
    raw.expect(sb(112, b"\x03"))
    assert lab.call(endpoint.send, b"sent") == 4
    raw.expect(b"sent")

    raw.close()
    lab.rec.wait_connect(False)
