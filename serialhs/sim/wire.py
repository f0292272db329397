"""The virtual null-modem wire: a cable between two virtual serial ports.

    with Wire(settings=SerialSettings(115200)) as wire:
        with Port(wire.a.pty) as a, Port(wire.b.pty) as b:   # or rfc2217://... URLs
            a.set_rts(True)
            b.wait_lines(cts=True, timeout=1)

Each end is a pty path any program can open, an RFC 2217 server on
127.0.0.1, and (for serialhs ports on the pty) a side channel for lines, break
and framing. One event-loop thread moves bytes between them and the sans-I/O
:class:`~serialhs.sim.wirecore.WireCore`, which decides what arrives and when.
Calls from other threads go to that thread through a command queue.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import errno
import fcntl
import json
import logging
import math
import os
import queue
import selectors
import shutil
import socket
import struct
import tempfile
import termios
import threading
import time
import tty
from collections.abc import Callable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

from serialhs.driver import wirelink
from serialhs.driver.lines import Line, Lines
from serialhs.driver.settings import (
    STANDARD_BAUDRATES,
    FlowControl,
    Parity,
    SerialSettings,
    StopBits,
)
from serialhs.errors import ConfigError, SimError
from serialhs.sim.faults import FaultSpec
from serialhs.sim.rfc2217 import Rfc2217Endpoint
from serialhs.sim.trace import WireTrace
from serialhs.sim.wirecore import (
    END_NAMES,
    BreakArrived,
    Deliver,
    End,
    LinesChanged,
    Overflow,
    RxPolicy,
    WireCore,
    WireStats,
)
from serialhs.sim.wiring import DEFAULT_WIRING, Wiring, load_wiring, parse_wiring

__all__ = ["Wire", "WireEnd"]

log = logging.getLogger("serialhs.sim")

T = TypeVar("T")

#: How often the ptys' termios are read (seconds).
TERMIOS_POLL = 0.005
#: Longest the loop sleeps when nothing is due.
IDLE_WAIT = 0.01
#: Longest wait for the loop to run a command from another thread.
COMMAND_TIMEOUT = 5.0
#: Bound of one side-channel request line.
MAX_REQUEST = 4096
#: What a pty's input queue holds for its reader (Linux n_tty: 4096 less one).
PTY_QUEUE = 4095

_SPEEDS = {
    getattr(termios, f"B{rate}"): rate
    for rate in STANDARD_BAUDRATES
    if hasattr(termios, f"B{rate}")
}
_CSIZE = {termios.CS5: 5, termios.CS6: 6, termios.CS7: 7, termios.CS8: 8}
_CMSPAR = getattr(termios, "CMSPAR", 0o10000000000)


class WireEnd:
    """One end of a wire, as seen from outside."""

    def __init__(self, wire: Wire, name: End) -> None:
        self._wire = wire
        self.name = name
        self.pty = ""  #: the stable path programs open (a symlink)
        self.device = ""  #: the /dev/pts/N behind it (changes at replug)
        self.rfc2217 = ""  #: rfc2217://127.0.0.1:PORT

    def lines(self) -> Lines:
        """The control lines at this end, as its program sees them."""
        return self._wire._call(lambda: self._wire._core.lines(self.name))

    def drive(self, line: Line | str, state: bool | None) -> None:
        """Hold an input of this end (DCD, RI, CTS, DSR) on or off, as an emulated
        device does; None gives it back to the wiring."""
        which = line if isinstance(line, Line) else Line.parse(line)
        self._wire._call(lambda: self._wire._core.drive(self.name, which, state, time.monotonic()))

    def settings(self) -> SerialSettings:
        return self._wire._call(lambda: self._wire._core.settings(self.name))

    def stats(self) -> WireStats:
        """A snapshot of what this end's receiver counted."""
        return self._wire._call(lambda: dataclasses.replace(self._wire._core.stats(self.name)))

    def describe(self) -> dict[str, str]:
        return {"pty": self.pty, "device": self.device, "rfc2217": self.rfc2217}


class _Plug:
    """The OS side of one end while plugged in: pty, RFC 2217 server, side channel."""

    def __init__(self, end: End, master: int, slave: int, endpoint: Rfc2217Endpoint | None):
        self.end = end
        self.master = master
        self.slave = slave  # held open: keeps termios, lets the wire measure the input queue
        self.endpoint = endpoint
        self.pending = bytearray()  # delivered, not yet taken by the pty
        self.listener: socket.socket | None = None
        self.channels: dict[socket.socket, bytearray] = {}
        self.termios: SerialSettings | None = None
        self.policy: RxPolicy | None = None
        self.reading = False
        self.writing = False


class Wire:
    """A virtual null-modem cable. See the module docstring and docs/wire.md."""

    def __init__(
        self,
        *,
        settings: SerialSettings | str | None = None,
        wiring: Wiring | str = DEFAULT_WIRING,
        faults: FaultSpec | str | Mapping[str, FaultSpec] | None = None,
        seed: int | None = None,
        paced: bool = True,
        rfc2217: bool = True,
        host: str = "127.0.0.1",
        rfc2217_ports: tuple[int, int] = (0, 0),
        trace: bool = False,
        directory: str | os.PathLike[str] | None = None,
        tx_limit: int = 4096,
        rx_limit: int = 4096,
        overflow: Overflow | str | None = None,
        max_baud: int | None = None,
    ) -> None:
        if isinstance(settings, str):
            settings = SerialSettings.parse(settings)
        if isinstance(wiring, str):
            wiring = (
                parse_wiring(wiring) if (">" in wiring or "=" in wiring) else load_wiring(wiring)
            )
        if isinstance(faults, str):
            faults = FaultSpec.parse(faults)
        self.seed = seed if seed is not None else int.from_bytes(os.urandom(4), "big")
        self.wiring = wiring
        start = time.monotonic()
        self.trace = WireTrace(origin=start) if trace else None
        self._core = WireCore(
            wiring=wiring,
            settings=settings,
            faults=faults,
            seed=self.seed,
            paced=paced,
            tx_limit=tx_limit,
            rx_limit=rx_limit,
            overflow=overflow,
            trace=self.trace,
            start=start,
            max_baud=max_baud,
        )
        self._default = settings or SerialSettings()
        self._rfc2217 = rfc2217
        self._host = host
        self._ports = list(rfc2217_ports)
        self._own_dir = directory is None
        self._dir = Path(directory) if directory else None
        self.a = WireEnd(self, "a")
        self.b = WireEnd(self, "b")
        self._plugs: dict[End, _Plug] = {}
        self._selector = selectors.DefaultSelector()
        self._commands: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._thread: threading.Thread | None = None
        self._running = False
        self._plugged = False
        self._last_poll = 0.0
        self._registry = wirelink.registry_dir()

    # -- lifecycle ----------------------------------------------------------------

    def start(self) -> Wire:
        if self._thread is not None:
            raise SimError("a wire can be started once")
        if self._dir is None:
            self._dir = Path(tempfile.mkdtemp(prefix="serialhs-wire-"))
        self._registry.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._selector.register(self._wake_r, selectors.EVENT_READ, ("wake", None))
        self._plug_in()
        self._running = True
        self._thread = threading.Thread(target=self._loop, name="serialhs wire", daemon=True)
        self._thread.start()
        log.info("wire up: a=%s b=%s seed=%d", self.a.pty, self.b.pty, self.seed)
        return self

    def stop(self) -> None:
        if not self._running:
            return
        self._running = False
        self._wake()
        if self._thread is not None:
            self._thread.join(timeout=COMMAND_TIMEOUT)
        self._unplug()
        self._selector.close()
        for fd in (self._wake_r, self._wake_w):
            with contextlib.suppress(OSError):
                os.close(fd)
        if self._own_dir and self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)

    def __enter__(self) -> Wire:
        return self.start()

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def describe(self) -> dict[str, Any]:
        """What a program needs to connect: the JSON ``serialhs wire`` prints."""
        return {"a": self.a.describe(), "b": self.b.describe(), "seed": self.seed}

    def unplug(self) -> None:
        """Pull the cable: both ends vanish (readers get an error), data in flight is lost."""
        self._call(self._unplug)

    def replug(self) -> None:
        """Plug it back: the ends come back at the same paths and ports."""
        self._call(self._plug_in)

    def save_trace(self, path: str | os.PathLike[str]) -> None:
        """Write the trace: VCD when the name ends in .vcd, text otherwise.

        The VCD has one-bit signals only (received bytes as rx[0]..rx[7]), which
        every version of PulseView and GTKWave reads, and a timescale of about a
        tenth of the fastest end's bit time (a power of ten, 1 ns to 1 us), so a
        viewer that loads samples (PulseView) is not handed billions of them."""
        if self.trace is None:
            raise ConfigError("this wire was made without trace=True")
        trace = self.trace
        if str(path).endswith(".vcd"):
            fastest = max(self._core.settings(end).baudrate for end in END_NAMES)
            tick = 10 ** max(0, min(3, math.floor(math.log10(1e9 / fastest / 10))))
            self._call(lambda: trace.save_vcd(path, timescale_ns=tick, vectors=False))
        else:
            self._call(lambda: trace.save_text(path))

    # -- commands from other threads ------------------------------------------------

    def _call(self, fn: Callable[[], T]) -> T:
        if not self._running or threading.current_thread() is self._thread:
            return fn()
        future: concurrent.futures.Future[T] = concurrent.futures.Future()

        def run() -> None:
            try:
                future.set_result(fn())
            except BaseException as e:
                future.set_exception(e)

        self._commands.put(run)
        self._wake()
        try:
            return future.result(timeout=COMMAND_TIMEOUT)
        except concurrent.futures.TimeoutError as e:
            raise SimError("the wire's loop did not answer in time") from e

    def _wake(self) -> None:
        with contextlib.suppress(BlockingIOError, OSError):
            os.write(self._wake_w, b"\0")

    # -- plugging -------------------------------------------------------------------

    def _plug_in(self) -> None:
        if self._plugged:
            return
        assert self._dir is not None
        for index, end in enumerate(END_NAMES):
            master, slave = os.openpty()
            tty.setraw(slave)
            attrs = termios.tcgetattr(slave)
            attrs[0] &= ~(termios.IXON | termios.IXOFF | termios.IXANY)
            attrs[3] &= ~termios.ECHO
            termios.tcsetattr(slave, termios.TCSANOW, attrs)
            os.set_blocking(master, False)
            endpoint = self._make_endpoint(end, index) if self._rfc2217 else None
            plug = _Plug(end, master, slave, endpoint)
            self._plugs[end] = plug
            handle = self.a if end == "a" else self.b
            handle.device = os.ttyname(slave)
            link = self._dir / end
            with contextlib.suppress(FileNotFoundError):
                link.unlink()
            link.symlink_to(handle.device)
            handle.pty = str(link)
            if endpoint is not None:
                handle.rfc2217 = endpoint.url
                for sock in endpoint.fileobjs():
                    self._selector.register(sock, selectors.EVENT_READ, ("rfc2217", end))
            self._open_channel(plug, handle.device)
            self._poll_termios(plug, time.monotonic())
            self._default_outputs(end)
        self._plugged = True
        self._update_interest()

    def _make_endpoint(self, end: End, index: int) -> Rfc2217Endpoint:
        core = self._core

        def on_data(data: bytes) -> None:
            core.transmit(end, data, time.monotonic())

        def on_settings(settings: SerialSettings) -> None:
            core.set_settings(end, settings, time.monotonic())

        def on_outputs(rts: bool | None, dtr: bool | None) -> None:
            core.set_outputs(end, time.monotonic(), rts=rts, dtr=dtr)

        def on_break(on: bool) -> None:
            core.set_break(end, on, time.monotonic())

        endpoint = Rfc2217Endpoint(
            host=self._host,
            port=self._ports[index],
            name=end,
            on_data=on_data,
            on_settings=on_settings,
            on_outputs=on_outputs,
            on_break=on_break,
            settings=core.settings(end),
        )
        self._ports[index] = endpoint.address[1]  # replug comes back on the same port
        endpoint.set_inputs(core.lines(end))
        return endpoint

    def _open_channel(self, plug: _Plug, device: str) -> None:
        path = self._registry / wirelink.socket_name(device)
        with contextlib.suppress(FileNotFoundError):
            path.unlink()  # a stale socket of an earlier owner of this pty number
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(str(path))
        listener.listen(8)
        listener.setblocking(False)
        plug.listener = listener
        self._selector.register(listener, selectors.EVENT_READ, ("listen", plug.end))

    def _unplug(self) -> None:
        if not self._plugged:
            return
        self._plugged = False
        for plug in self._plugs.values():
            for fileobj in [plug.listener, *plug.channels]:
                if fileobj is not None:
                    self._forget(fileobj)
                    fileobj.close()
            if plug.listener is not None:
                handle = self.a if plug.end == "a" else self.b
                with contextlib.suppress(OSError):
                    (self._registry / wirelink.socket_name(handle.device)).unlink()
            if plug.endpoint is not None:
                for sock in plug.endpoint.fileobjs():
                    self._forget(sock)
                plug.endpoint.close()
            self._forget(plug.master)
            for fd in (plug.master, plug.slave):
                with contextlib.suppress(OSError):
                    os.close(fd)
            handle = self.a if plug.end == "a" else self.b
            with contextlib.suppress(FileNotFoundError):
                Path(handle.pty).unlink()
        self._plugs.clear()

    def _default_outputs(self, end: End) -> None:
        """RTS and DTR on: how a tty looks to the far end once a program has opened
        it (the kernel raises both). A program without the side channel cannot say
        otherwise; a serialhs Port sets them as it asks."""
        self._core.set_outputs(end, time.monotonic(), rts=True, dtr=True)
        self._dispatch(self._core.events())

    def _forget(self, fileobj: Any) -> None:
        with contextlib.suppress(KeyError, ValueError):
            self._selector.unregister(fileobj)

    # -- the loop -----------------------------------------------------------------

    def _loop(self) -> None:
        core = self._core
        try:
            while self._running:
                now = time.monotonic()
                self._run_commands()
                if self._plugged:
                    if now - self._last_poll >= TERMIOS_POLL:
                        self._last_poll = now
                        for plug in self._plugs.values():
                            self._poll_termios(plug, now)
                    for plug in self._plugs.values():
                        core.set_backlog(plug.end, self._backlog(plug), now)
                core.handle_timer(now)
                self._dispatch(core.events())
                self._update_interest()
                timer = core.get_timer()
                wait = IDLE_WAIT if timer is None else min(IDLE_WAIT, timer - time.monotonic())
                if self._plugged:
                    wait = min(wait, TERMIOS_POLL)
                for key, mask in self._selector.select(max(wait, 0.0)):
                    self._ready(key, mask)
        except Exception:
            log.exception("the wire's loop failed")
            self._running = False

    def _run_commands(self) -> None:
        with contextlib.suppress(BlockingIOError):
            while os.read(self._wake_r, 512):
                pass
        while True:
            try:
                command = self._commands.get_nowait()
            except queue.Empty:
                return
            command()

    def _ready(self, key: selectors.SelectorKey, mask: int) -> None:
        kind, end = key.data
        if kind == "wake":
            return
        plug = self._plugs.get(end)
        if plug is None:
            return
        now = time.monotonic()
        if kind == "pty":
            if mask & selectors.EVENT_READ:
                self._read_pty(plug, now)
            if mask & selectors.EVENT_WRITE:
                self._flush(plug)
        elif kind == "rfc2217" and plug.endpoint is not None:
            sock = key.fileobj
            assert isinstance(sock, socket.socket)
            if mask & selectors.EVENT_READ:
                plug.endpoint.handle_read(sock)
                self._sync_endpoint_sockets(plug)
            if mask & selectors.EVENT_WRITE:
                plug.endpoint.handle_write()
                self._flush(plug)
        elif kind == "listen" and plug.listener is not None:
            with contextlib.suppress(BlockingIOError):
                conn, _ = plug.listener.accept()
                conn.setblocking(False)
                plug.channels[conn] = bytearray()
                self._selector.register(conn, selectors.EVENT_READ, ("channel", end))
        elif kind == "channel":
            sock = key.fileobj
            assert isinstance(sock, socket.socket)
            self._serve_channel(plug, sock)

    def _sync_endpoint_sockets(self, plug: _Plug) -> None:
        """Watch the endpoint's sockets (a client came or went)."""
        assert plug.endpoint is not None
        current = set(plug.endpoint.fileobjs())
        for key in list(self._selector.get_map().values()):
            if key.data == ("rfc2217", plug.end) and key.fileobj not in current:
                self._selector.unregister(key.fileobj)
        for sock in current:
            try:
                self._selector.get_key(sock)
            except KeyError:
                self._selector.register(sock, selectors.EVENT_READ, ("rfc2217", plug.end))

    def _update_interest(self) -> None:
        if not self._plugged:
            return
        for plug in self._plugs.values():
            reading = self._core.tx_room(plug.end) > 0
            to_client = plug.endpoint is not None and plug.endpoint.connected
            writing = bool(plug.pending) and not to_client
            if plug.pending and to_client:
                self._flush(plug)
            if (reading, writing) != (plug.reading, plug.writing):
                events = (selectors.EVENT_READ if reading else 0) | (
                    selectors.EVENT_WRITE if writing else 0
                )
                if plug.reading or plug.writing:
                    if events:
                        self._selector.modify(plug.master, events, ("pty", plug.end))
                    else:
                        self._selector.unregister(plug.master)
                elif events:
                    self._selector.register(plug.master, events, ("pty", plug.end))
                plug.reading, plug.writing = reading, writing
            endpoint = plug.endpoint
            if endpoint is not None and endpoint.connected:
                # fileobjs() is [listener, client]: the client is watched for writing
                # while the endpoint has output buffered.
                client = endpoint.fileobjs()[-1]
                want = selectors.EVENT_READ
                if endpoint.wants_write():
                    want |= selectors.EVENT_WRITE
                with contextlib.suppress(KeyError, ValueError):
                    if self._selector.get_key(client).events != want:
                        self._selector.modify(client, want, ("rfc2217", plug.end))

    # -- pty I/O ----------------------------------------------------------------------

    def _read_pty(self, plug: _Plug, now: float) -> None:
        room = self._core.tx_room(plug.end)
        if room <= 0:
            return
        try:
            data = os.read(plug.master, room)
        except BlockingIOError:
            return
        except OSError as e:
            if e.errno == errno.EIO:
                return
            raise
        if data:
            self._core.transmit(plug.end, data, now)

    def _flush(self, plug: _Plug) -> None:
        """Hand delivered bytes to the end's program: its RFC 2217 client while one
        is connected, its pty otherwise. A pty gets no more than its input queue has
        room for, so that the backlog the core is told (queue + pending) is exact
        and nothing hides in the kernel's buffers."""
        if not plug.pending:
            return
        if plug.endpoint is not None and plug.endpoint.connected:
            written = plug.endpoint.send(bytes(plug.pending))
        else:
            room = PTY_QUEUE - _input_queue(plug.slave)
            if room <= 0:
                return
            try:
                written = os.write(plug.master, plug.pending[:room])
            except BlockingIOError:
                return
        del plug.pending[:written]

    def _backlog(self, plug: _Plug) -> int:
        waiting = _input_queue(plug.slave)
        if plug.endpoint is not None and plug.endpoint.connected:
            waiting = 0
        return waiting + len(plug.pending)

    def _poll_termios(self, plug: _Plug, now: float) -> None:
        """Pick up settings a program set on its pty with tcsetattr."""
        try:
            iflag, _, cflag, _, _, ospeed, _ = termios.tcgetattr(plug.master)
        except termios.error:
            return
        seen = _termios_settings(cflag, iflag, ospeed, self._core.settings(plug.end))
        if plug.termios is not None and seen != plug.termios:
            current = self._core.settings(plug.end)
            changed = {
                field: getattr(seen, field)
                for field in ("baudrate", "bytesize", "parity", "stopbits", "flow")
                if getattr(seen, field) != getattr(plug.termios, field)
            }
            self._core.set_settings(plug.end, current.replace(**changed), now)
        plug.termios = seen
        # PARMRK is left to the kernel: the pty's own line discipline doubles every
        # \377 it is handed, and a mark the wire wrote would be doubled too; so
        # errors reach a PARMRK reader as NUL, unmarked (bytes written to a pty
        # master cannot carry the error flag a UART driver gives).
        policy = RxPolicy(
            inpck=bool(iflag & termios.INPCK),
            ignpar=bool(iflag & termios.IGNPAR),
            ignbrk=bool(iflag & termios.IGNBRK),
            istrip=bool(iflag & termios.ISTRIP),
        )
        if policy != plug.policy:
            plug.policy = policy
            self._core.set_policy(plug.end, policy)

    # -- events from the core ---------------------------------------------------------

    def _dispatch(self, events: list[Any]) -> None:
        for event in events:
            plug = self._plugs.get(event.end)
            if plug is None:
                continue  # unplugged: what was in flight is lost
            if isinstance(event, Deliver):
                plug.pending += event.data
                self._flush(plug)
            elif isinstance(event, LinesChanged):
                if plug.endpoint is not None:
                    plug.endpoint.set_inputs(event.lines)
            elif isinstance(event, BreakArrived) and plug.endpoint is not None:
                plug.endpoint.notify_break()

    # -- the side channel ---------------------------------------------------------------

    def _serve_channel(self, plug: _Plug, sock: socket.socket) -> None:
        buffer = plug.channels[sock]
        try:
            chunk = sock.recv(4096)
        except BlockingIOError:
            return
        except OSError:
            chunk = b""
        if not chunk or len(buffer) + len(chunk) > MAX_REQUEST:
            self._forget(sock)
            plug.channels.pop(sock, None)
            sock.close()
            if not plug.channels:
                self._default_outputs(plug.end)  # the serialhs port closed
            return
        buffer += chunk
        while b"\n" in buffer:
            line, _, rest = bytes(buffer).partition(b"\n")
            buffer[:] = rest
            reply = self._answer(plug, line)
            try:
                sock.setblocking(True)
                sock.settimeout(1.0)
                sock.sendall(json.dumps(reply).encode() + b"\n")
                sock.setblocking(False)
            except OSError:
                self._forget(sock)
                plug.channels.pop(sock, None)
                sock.close()
                return

    def _answer(self, plug: _Plug, line: bytes) -> dict[str, Any]:
        core, end, now = self._core, plug.end, time.monotonic()
        try:
            request = json.loads(line)
            op = request["op"]
            if op == "hello":
                return {"ok": True, "end": end, "rdev": os.fstat(plug.slave).st_rdev}
            if op == "lines":
                return {"ok": True, "lines": core.lines(end).as_dict()}
            if op == "set":
                core.set_outputs(end, now, rts=request.get("rts"), dtr=request.get("dtr"))
                self._dispatch(core.events())
                return {"ok": True, "lines": core.lines(end).as_dict()}
            if op == "break":
                core.set_break(end, bool(request["on"]), now)
                return {"ok": True}
            if op == "settings":
                core.set_settings(end, SerialSettings.parse(request["settings"]), now)
                return {"ok": True}
            if op == "stats":
                return {"ok": True, "stats": core.stats(end).as_dict()}
            if op == "tx_idle":
                self._read_pty(plug, now)  # what the program wrote is on its way
                return {"ok": True, "idle": core.tx_idle(end, now)}
            return {"ok": False, "error": f"unknown op {op!r}"}
        except (ValueError, KeyError, TypeError, ConfigError) as e:
            return {"ok": False, "error": f"bad request {line[:80]!r}: {e}"}


def _input_queue(fd: int) -> int:
    """Bytes waiting in a tty's input queue (TIOCINQ)."""
    raw = fcntl.ioctl(fd, termios.TIOCINQ, struct.pack("I", 0))
    return int(struct.unpack("I", raw)[0])


def _termios_settings(
    cflag: int, iflag: int, speed: int, current: SerialSettings
) -> SerialSettings:
    """The settings a pty's termios shows (fields it cannot show are kept)."""
    if cflag & termios.PARENB:
        if cflag & _CMSPAR:
            parity = Parity.MARK if cflag & termios.PARODD else Parity.SPACE
        else:
            parity = Parity.ODD if cflag & termios.PARODD else Parity.EVEN
    else:
        parity = Parity.NONE
    bytesize = _CSIZE.get(cflag & termios.CSIZE, 8)
    stopbits = StopBits.TWO if cflag & termios.CSTOPB else StopBits.ONE
    if stopbits is StopBits.TWO and bytesize == 5:
        stopbits = StopBits.ONE_POINT_FIVE
    if cflag & termios.CRTSCTS:
        flow = FlowControl.RTSCTS
    elif iflag & (termios.IXON | termios.IXOFF):
        flow = FlowControl.XONXOFF
    else:
        flow = FlowControl.NONE
    return SerialSettings(
        baudrate=_SPEEDS.get(speed, current.baudrate),
        bytesize=bytesize,
        parity=parity,
        stopbits=stopbits,
        flow=flow,
    )
