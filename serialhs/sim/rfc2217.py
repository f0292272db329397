"""An RFC 2217 (Telnet COM-PORT-OPTION) server for one end of the virtual wire.

Each end of the wire can be reached as ``rfc2217://127.0.0.1:PORT``, so that
pyserial's RFC 2217 client (and any other RFC 2217 client) gets the data, the
control lines and the settings of that end::

    endpoint = Rfc2217Endpoint(on_data=..., on_settings=..., on_outputs=..., on_break=...)
    serial.serial_for_url(endpoint.url, timeout=1)

The endpoint owns no thread and never blocks. The wire's event loop drives it:

* watch every socket of :meth:`Rfc2217Endpoint.fileobjs` for reading, and the
  last one (the client) also for writing while :meth:`~Rfc2217Endpoint.wants_write`
  is true;
* call :meth:`~Rfc2217Endpoint.handle_read` with the socket that became readable
  and :meth:`~Rfc2217Endpoint.handle_write` when the client became writable;
* after ``handle_read`` (and after :meth:`~Rfc2217Endpoint.disconnect`) look at
  ``fileobjs()`` again: a client may have come or gone. Clients are only ever
  dropped inside those two calls (and :meth:`~Rfc2217Endpoint.close`).

The Telnet and RFC 2217 state machine is pyserial's server-side helper
:class:`serial.rfc2217.PortManager`. It is fed through a thin layer that keeps
it non-blocking and safe: its ``connection`` appends to a bounded output buffer,
its ``serial`` is an adapter that turns attribute writes into the callbacks, and
a subclass answers what PortManager leaves out or would crash on (malformed and
unknown values, SIGNATURE, the REQ-* control queries, DSR/DTR flow control, the
mask acknowledgements). Bad input from a client is logged and the client
dropped; the listener stays up.

Choices a reader of the wire should know:

* One client at a time. A second connection is accepted and closed at once
  (logged at INFO); its RFC 2217 client then fails to open.
* ``send()`` with no client connected discards the data and reports it all as
  taken, as an unopened serial port loses what arrives. While the client has
  sent FLOWCONTROL-SUSPEND, ``send()`` takes nothing.
* PURGE-DATA is acknowledged but purges nothing here: every byte queued for the
  client is ahead of the acknowledgement, so a client that discards its input
  after the acknowledgement (pyserial does) sees a clean start.
* NOTIFY-LINESTATE: the RFC starts the line-state mask at 0; this endpoint starts
  it at break-detect, so a client that never sets a mask still learns of a
  break. A mask the client sets is honoured, as is its SET-MODEMSTATE-MASK.
* 1.5 stop bits with 6, 7 or 8 data bits is taken as 2 stop bits, the way a
  16550-style UART reads its stop-bit setting.
* The endpoint does not change any line when a client goes away; the wire
  decides what a closed port means (``on_connect(False)``).
"""

from __future__ import annotations

import logging
import socket
import struct
from collections.abc import Callable
from typing import Any, Final

from serial.rfc2217 import M_NORMAL, PortManager

from serialhs.driver.lines import Lines
from serialhs.driver.settings import FlowControl, Parity, SerialSettings, StopBits
from serialhs.errors import ConfigError, SettingsError, SimError
from serialhs.log import trace_bytes

__all__ = [
    "DEFAULT_BUFFER_LIMIT",
    "MAX_SUBNEGOTIATION",
    "Rfc2217Endpoint",
]

logger = logging.getLogger("serialhs.sim")

#: Most bytes (after IAC escaping) queued for the client before send() holds back.
DEFAULT_BUFFER_LIMIT: Final = 64 * 1024
#: Replies to the client's requests may exceed the buffer limit by this much; a
#: client that keeps asking without reading the answers is dropped beyond it.
REPLY_HEADROOM: Final = 16 * 1024
#: Longest subnegotiation accepted from a client (RFC 2217 needs a few bytes).
MAX_SUBNEGOTIATION: Final = 1024
#: Bytes taken from the client socket per handle_read().
RECV_SIZE: Final = 16 * 1024

IAC: Final = 0xFF
SB: Final = 0xFA
SE: Final = 0xF0
COM_PORT_OPTION: Final = 44
SERVER_OFFSET: Final = 100

# Client-to-server COM-PORT-OPTION commands (replies are these + 100).
SIGNATURE: Final = 0
SET_BAUDRATE: Final = 1
SET_DATASIZE: Final = 2
SET_PARITY: Final = 3
SET_STOPSIZE: Final = 4
SET_CONTROL: Final = 5
NOTIFY_LINESTATE: Final = 6
NOTIFY_MODEMSTATE: Final = 7
FLOWCONTROL_SUSPEND: Final = 8
FLOWCONTROL_RESUME: Final = 9
SET_LINESTATE_MASK: Final = 10
SET_MODEMSTATE_MASK: Final = 11
PURGE_DATA: Final = 12

# SET-CONTROL values.
CONTROL_REQ_FLOW: Final = 0
CONTROL_FLOW_NONE: Final = 1
CONTROL_FLOW_XONXOFF: Final = 2
CONTROL_FLOW_HARDWARE: Final = 3
CONTROL_REQ_BREAK: Final = 4
CONTROL_BREAK_ON: Final = 5
CONTROL_BREAK_OFF: Final = 6
CONTROL_REQ_DTR: Final = 7
CONTROL_DTR_ON: Final = 8
CONTROL_DTR_OFF: Final = 9
CONTROL_REQ_RTS: Final = 10
CONTROL_RTS_ON: Final = 11
CONTROL_RTS_OFF: Final = 12
CONTROL_REQ_FLOW_IN: Final = 13
CONTROL_FLOW_IN_NONE: Final = 14
CONTROL_FLOW_IN_XONXOFF: Final = 15
CONTROL_FLOW_IN_HARDWARE: Final = 16
CONTROL_FLOW_DCD: Final = 17
CONTROL_FLOW_IN_DTR: Final = 18
CONTROL_FLOW_DSR: Final = 19

#: NOTIFY-LINESTATE bit for a received break.
LINESTATE_BREAK_DETECT: Final = 0x10

_FLOW_OUT_CODE: Final = {
    FlowControl.NONE: CONTROL_FLOW_NONE,
    FlowControl.XONXOFF: CONTROL_FLOW_XONXOFF,
    FlowControl.RTSCTS: CONTROL_FLOW_HARDWARE,
    FlowControl.DSRDTR: CONTROL_FLOW_DSR,
}
_FLOW_IN_CODE: Final = {
    FlowControl.NONE: CONTROL_FLOW_IN_NONE,
    FlowControl.XONXOFF: CONTROL_FLOW_IN_XONXOFF,
    FlowControl.RTSCTS: CONTROL_FLOW_IN_HARDWARE,
    FlowControl.DSRDTR: CONTROL_FLOW_IN_DTR,
}
_FLOW_SETTING: Final = {
    CONTROL_FLOW_NONE: FlowControl.NONE,
    CONTROL_FLOW_XONXOFF: FlowControl.XONXOFF,
    CONTROL_FLOW_HARDWARE: FlowControl.RTSCTS,
    CONTROL_FLOW_DSR: FlowControl.DSRDTR,
    CONTROL_FLOW_IN_DTR: FlowControl.DSRDTR,
}
#: Accepted RFC 2217 parity and stop-size codes (0 asks for the current value).
_PARITY_CODES: Final = frozenset(range(6))
_STOPSIZE_CODES: Final = frozenset(range(4))
#: Commands whose value is exactly one byte.
_ONE_BYTE: Final = frozenset(
    {
        SET_DATASIZE,
        SET_PARITY,
        SET_STOPSIZE,
        SET_CONTROL,
        SET_LINESTATE_MASK,
        SET_MODEMSTATE_MASK,
        PURGE_DATA,
    }
)


class _BadInput(Exception):
    """The client sent something this endpoint will not process."""


class _CallbackFailed(Exception):
    """One of the wire's callbacks raised; the cause is attached."""


class _ManagerLog:
    """The logger PortManager is given: pyserial's per-request INFO chatter goes
    to DEBUG, its warnings and errors stay what they are, all under serialhs.sim."""

    def __init__(self, label: str) -> None:
        self._label = label

    def debug(self, message: str) -> None:
        logger.debug("%s: %s", self._label, message)

    def info(self, message: str) -> None:
        logger.debug("%s: %s", self._label, message)

    def warning(self, message: str) -> None:
        logger.warning("%s: %s", self._label, message)

    def error(self, message: str) -> None:
        logger.error("%s: %s", self._label, message)


class _Client:
    """One connected client: its socket, Telnet state and buffers."""

    def __init__(self, sock: socket.socket, peer: str) -> None:
        self.sock = sock
        self.peer = peer
        self.alive = True
        self.broken = False  # a send failed; handle_read will drop it
        self.overflow = False  # replies exceeded the headroom
        self.suspended = False  # FLOWCONTROL-SUSPEND in effect
        self.modem_dirty = False  # a modem-state notification waits for room
        self.break_pending = False  # a break notification waits for room
        self.out = bytearray()
        self.rx = bytearray()  # client data not yet handed to on_data
        self.manager: _Manager | None = None


class _Connection:
    """PortManager's ``connection``: a non-blocking, bounded write."""

    def __init__(self, endpoint: Rfc2217Endpoint, client: _Client) -> None:
        self._endpoint = endpoint
        self._client = client

    def write(self, data: bytes) -> None:
        self._endpoint._queue_control(self._client, data)


class _PortAdapter:
    """Stands for the serial port behind the server, as PortManager sees it.

    Writes to the settings, the outputs and the break turn into the endpoint's
    callbacks; reads of CTS/DSR/RI/CD return what the wire last gave
    ``set_inputs``. Settings are kept field by field, the way the client sends
    them, so that a combination that is only briefly invalid does no harm.
    """

    def __init__(self, endpoint: Rfc2217Endpoint, client: _Client) -> None:
        self._endpoint = endpoint
        self._client = client
        settings = endpoint.settings
        self._baudrate = settings.baudrate
        self._bytesize = settings.bytesize
        self._parity = settings.parity
        self._stopbits = settings.stopbits
        self.flow = settings.flow
        self.rts_state = False
        self.dtr_state = False
        self.break_state = False

    def wanted_settings(self) -> SerialSettings:
        stopbits = self._stopbits
        if stopbits is StopBits.ONE_POINT_FIVE and self._bytesize != 5:
            stopbits = StopBits.TWO
        return SerialSettings(
            baudrate=self._baudrate,
            bytesize=self._bytesize,
            parity=self._parity,
            stopbits=stopbits,
            flow=self.flow,
        )

    def _changed(self) -> None:
        self._endpoint._settings_changed(self._client)

    # -- settings (PortManager reads and writes these) ---------------------------

    @property
    def baudrate(self) -> int:
        return self._baudrate

    @baudrate.setter
    def baudrate(self, value: int) -> None:
        if value != self._baudrate:
            SerialSettings(baudrate=value)  # SettingsError (a ValueError) rejects it
            self._endpoint._before_change(self._client)
            self._baudrate = value
            self._changed()

    @property
    def bytesize(self) -> int:
        return self._bytesize

    @bytesize.setter
    def bytesize(self, value: int) -> None:
        if value != self._bytesize:
            SerialSettings(bytesize=value)
            self._endpoint._before_change(self._client)
            self._bytesize = value
            self._changed()

    @property
    def parity(self) -> str:
        return self._parity.value

    @parity.setter
    def parity(self, value: str) -> None:
        parity = Parity(value)
        if parity is not self._parity:
            self._endpoint._before_change(self._client)
            self._parity = parity
            self._changed()

    @property
    def stopbits(self) -> float:
        value: float = self._stopbits.value
        return value

    @stopbits.setter
    def stopbits(self, value: float) -> None:
        stopbits = StopBits(value)
        if stopbits is not self._stopbits:
            self._endpoint._before_change(self._client)
            self._stopbits = stopbits
            self._changed()

    def set_flow(self, flow: FlowControl) -> None:
        if flow is not self.flow:
            self._endpoint._before_change(self._client)
            self.flow = flow
            self._changed()

    @property
    def xonxoff(self) -> bool:
        return self.flow is FlowControl.XONXOFF

    @xonxoff.setter
    def xonxoff(self, value: bool) -> None:
        if value:
            self.set_flow(FlowControl.XONXOFF)
        elif self.flow is FlowControl.XONXOFF:
            self.set_flow(FlowControl.NONE)

    @property
    def rtscts(self) -> bool:
        return self.flow is FlowControl.RTSCTS

    @rtscts.setter
    def rtscts(self, value: bool) -> None:
        if value:
            self.set_flow(FlowControl.RTSCTS)
        elif self.flow is FlowControl.RTSCTS:
            self.set_flow(FlowControl.NONE)

    @property
    def dsrdtr(self) -> bool:
        return self.flow is FlowControl.DSRDTR

    @dsrdtr.setter
    def dsrdtr(self, value: bool) -> None:
        if value:
            self.set_flow(FlowControl.DSRDTR)
        elif self.flow is FlowControl.DSRDTR:
            self.set_flow(FlowControl.NONE)

    # -- outputs and break -------------------------------------------------------

    @property
    def rts(self) -> bool:
        return self.rts_state

    @rts.setter
    def rts(self, value: bool) -> None:
        self.rts_state = bool(value)
        self._endpoint._client_outputs(self._client, self.rts_state, None)

    @property
    def dtr(self) -> bool:
        return self.dtr_state

    @dtr.setter
    def dtr(self, value: bool) -> None:
        self.dtr_state = bool(value)
        self._endpoint._client_outputs(self._client, None, self.dtr_state)

    @property
    def break_condition(self) -> bool:
        return self.break_state

    @break_condition.setter
    def break_condition(self, value: bool) -> None:
        self.break_state = bool(value)
        self._endpoint._client_break(self._client, self.break_state)

    # -- inputs ------------------------------------------------------------------

    @property
    def cts(self) -> bool:
        return self._endpoint._inputs.cts

    @property
    def dsr(self) -> bool:
        return self._endpoint._inputs.dsr

    @property
    def ri(self) -> bool:
        return self._endpoint._inputs.ri

    @property
    def cd(self) -> bool:
        return self._endpoint._inputs.dcd

    # -- purges (see the module docstring) ---------------------------------------

    def reset_input_buffer(self) -> None:
        """PURGE-DATA receive buffer: everything queued is ahead of the reply."""

    def reset_output_buffer(self) -> None:
        """PURGE-DATA transmit buffer: client data already went to the wire."""


class _Manager(PortManager):  # type: ignore[misc]  # pyserial has no type hints
    """PortManager with the answers it leaves out, and checks on what it would
    trip over (short values, unknown codes)."""

    def __init__(
        self,
        adapter: _PortAdapter,
        connection: _Connection,
        log: _ManagerLog,
        signature: bytes,
    ) -> None:
        self.adapter = adapter
        self.signature = signature
        self.log = log
        super().__init__(adapter, connection, log)
        self.linstate_mask = LINESTATE_BREAK_DETECT  # PortManager's attribute name
        self.suspended = False

    def _telnet_process_command(self, command: bytes) -> None:
        # NOP, AYT, BRK and the like: RFC 2217 uses none of them.
        self.log.debug(f"ignoring Telnet command {command!r}")

    def reply(self, command: int, value: bytes = b"") -> None:
        self.rfc2217_send_subnegotiation(bytes([command + SERVER_OFFSET]), value)

    def _telnet_process_subnegotiation(self, suboption: bytes) -> None:
        if suboption[:1] != bytes([COM_PORT_OPTION]):
            self.log.warning(f"ignoring subnegotiation for Telnet option {suboption[:1]!r}")
            return
        if len(suboption) < 2:
            self.log.warning("ignoring an empty COM-PORT-OPTION subnegotiation")
            return
        command, value = suboption[1], bytes(suboption[2:])
        adapter = self.adapter
        if command == SIGNATURE:
            if value:
                self.log.info(f"client signature: {value[:80]!r}")
            else:
                self.reply(SIGNATURE, self.signature)
            return
        if command == SET_BAUDRATE and len(value) != 4:
            self.log.warning(f"SET-BAUDRATE with {len(value)} byte(s) instead of 4; ignored")
            self.reply(SET_BAUDRATE, struct.pack("!I", adapter.baudrate))
            return
        if command in _ONE_BYTE and len(value) != 1:
            self.log.warning(f"COM-PORT-OPTION {command} with {len(value)} value bytes; ignored")
            return
        code = value[0] if value else 0
        if command == SET_PARITY and code not in _PARITY_CODES:
            self.log.warning(f"unknown parity code {code}; keeping {adapter.parity}")
            super()._telnet_process_subnegotiation(bytes([COM_PORT_OPTION, SET_PARITY, 0]))
            return
        if command == SET_STOPSIZE and code not in _STOPSIZE_CODES:
            self.log.warning(f"unknown stop-size code {code}; keeping {adapter.stopbits}")
            super()._telnet_process_subnegotiation(bytes([COM_PORT_OPTION, SET_STOPSIZE, 0]))
            return
        if command == SET_CONTROL:
            self._control(code)
            return
        if command in (FLOWCONTROL_SUSPEND, FLOWCONTROL_RESUME):
            self.suspended = command == FLOWCONTROL_SUSPEND
            self.log.info("client suspends our output" if self.suspended else "client resumes")
            return
        if command == SET_LINESTATE_MASK:
            self.linstate_mask = code
            self.reply(SET_LINESTATE_MASK, bytes([code]))
            return
        if command == SET_MODEMSTATE_MASK:
            self.modemstate_mask = code
            self.reply(SET_MODEMSTATE_MASK, bytes([code]))
            return
        if command == PURGE_DATA and code not in (1, 2, 3):
            self.log.warning(f"unknown PURGE-DATA code {code}; ignored")
            return
        if command > PURGE_DATA:
            self.log.warning(f"unknown COM-PORT-OPTION command {command}; ignored")
            return
        super()._telnet_process_subnegotiation(suboption)

    def _control(self, code: int) -> None:
        adapter = self.adapter
        if code == CONTROL_REQ_FLOW:
            self.reply(SET_CONTROL, bytes([_FLOW_OUT_CODE[adapter.flow]]))
        elif code == CONTROL_REQ_FLOW_IN:
            self.reply(SET_CONTROL, bytes([_FLOW_IN_CODE[adapter.flow]]))
        elif code in _FLOW_SETTING:
            adapter.set_flow(_FLOW_SETTING[code])
            self.reply(SET_CONTROL, bytes([code]))
        elif code == CONTROL_REQ_BREAK:
            on = adapter.break_state
            self.reply(SET_CONTROL, bytes([CONTROL_BREAK_ON if on else CONTROL_BREAK_OFF]))
        elif code == CONTROL_REQ_DTR:
            on = adapter.dtr_state
            self.reply(SET_CONTROL, bytes([CONTROL_DTR_ON if on else CONTROL_DTR_OFF]))
        elif code == CONTROL_REQ_RTS:
            on = adapter.rts_state
            self.reply(SET_CONTROL, bytes([CONTROL_RTS_ON if on else CONTROL_RTS_OFF]))
        elif code in (CONTROL_BREAK_ON, CONTROL_BREAK_OFF):
            adapter.break_condition = code == CONTROL_BREAK_ON
            self.reply(SET_CONTROL, bytes([code]))
        elif code in (CONTROL_DTR_ON, CONTROL_DTR_OFF):
            adapter.dtr = code == CONTROL_DTR_ON
            self.reply(SET_CONTROL, bytes([code]))
        elif code in (CONTROL_RTS_ON, CONTROL_RTS_OFF):
            adapter.rts = code == CONTROL_RTS_ON
            self.reply(SET_CONTROL, bytes([code]))
        else:
            # Separate inbound flow control and DCD flow control: not modelled.
            # Answer with what is in effect, as the RFC asks of a server.
            self.log.warning(f"SET-CONTROL {code} is not supported; flow stays {adapter.flow}")
            self.reply(SET_CONTROL, bytes([_FLOW_OUT_CODE[adapter.flow]]))


class Rfc2217Endpoint:
    """An RFC 2217 server for one end of the wire, driven by the wire's loop.

    Callbacks (all called from inside ``handle_read``, in the order the client's
    requests arrived, so data sent before a settings change is handed over
    before ``on_settings``):

    * ``on_data(bytes)``: what the client wrote, Telnet escaping removed;
    * ``on_settings(SerialSettings)``: the client changed baud rate, framing or
      flow control (changes that arrive together are reported once);
    * ``on_outputs(rts, dtr)``: the client set RTS or DTR (the other is None);
    * ``on_break(on)``: the client turned the break condition on or off;
    * ``on_connect(connected)``: a client came (True) or went (False), also when
      :meth:`disconnect` drops it. :meth:`close` calls nothing.

    A callback that raises is logged with its traceback and the client dropped;
    the exception does not reach the loop.

    All methods must be called from the loop's thread.
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        name: str = "",
        on_data: Callable[[bytes], None],
        on_settings: Callable[[SerialSettings], None],
        on_outputs: Callable[[bool | None, bool | None], None],
        on_break: Callable[[bool], None],
        on_connect: Callable[[bool], None] | None = None,
        settings: SerialSettings | None = None,
        buffer_limit: int = DEFAULT_BUFFER_LIMIT,
    ) -> None:
        if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
            raise ConfigError(f"RFC 2217 port must be 0..65535 (0 picks a free one), not {port!r}")
        if buffer_limit < 1:
            raise ConfigError(f"buffer_limit must be at least 1, not {buffer_limit!r}")
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        try:
            listener = socket.create_server((host, port), family=family, backlog=4)
        except OSError as e:
            raise SimError(
                f"cannot listen for RFC 2217 clients on {host}:{port}: {e.strerror or e}; "
                "pick another port, or port=0 for a free one"
            ) from e
        listener.setblocking(False)
        self._listener: socket.socket | None = listener
        bound = listener.getsockname()
        self.address: tuple[str, int] = (str(bound[0]), int(bound[1]))
        shown = f"[{self.address[0]}]" if family == socket.AF_INET6 else self.address[0]
        self.url = f"rfc2217://{shown}:{self.address[1]}"
        self.name = name or f"{shown}:{self.address[1]}"
        self.settings: SerialSettings = settings if settings is not None else SerialSettings()
        self._on_data = on_data
        self._on_settings = on_settings
        self._on_outputs = on_outputs
        self._on_break = on_break
        self._on_connect = on_connect
        self._limit = buffer_limit
        self._inputs = Lines()
        self._client: _Client | None = None
        self._settings_dirty = False
        logger.debug("rfc2217 %s: listening on %s", self.name, self.url)

    # -- what the loop asks -------------------------------------------------------

    @property
    def connected(self) -> bool:
        """True while a client is connected."""
        return self._client is not None

    def fileobjs(self) -> list[socket.socket]:
        """Sockets to watch for reading: the listener first, then the client if any."""
        if self._listener is None:
            return []
        if self._client is None:
            return [self._listener]
        return [self._listener, self._client.sock]

    def wants_write(self) -> bool:
        """True while output waits for the client socket (``fileobjs()[-1]``)."""
        client = self._client
        return client is not None and not client.broken and bool(client.out)

    def handle_read(self, sock: socket.socket) -> None:
        """``sock`` is readable: accept a client, or read and process its bytes.

        A socket this endpoint no longer owns is ignored.
        """
        if self._listener is None:
            return
        if sock is self._listener:
            self._accept()
            return
        client = self._client
        if client is None or sock is not client.sock:
            return
        try:
            data = sock.recv(RECV_SIZE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as e:
            self._drop(client, f"connection failed: {e}")
            return
        if not data:
            self._drop(client, "the client closed the connection")
            return
        if client.broken:
            self._drop(client, "the connection failed while sending")
            return
        trace_bytes(logger, f"rfc2217 {self.name}", "from client", data)
        self._process(client, data)

    def handle_write(self) -> None:
        """The client socket is writable: send what is buffered."""
        client = self._client
        if client is not None:
            self._flush(client)

    # -- what the wire does -------------------------------------------------------

    def send(self, data: bytes) -> int:
        """Queue ``data`` for the client; return how many bytes were taken.

        At most the buffer limit is queued (counting the doubled IAC bytes); the
        rest is for the wire to hold back and offer again later (after
        ``handle_write``, say). Everything taken reaches the client in order.
        With no client connected the data is discarded and all of it counts as
        taken; while the client has suspended output nothing is taken.
        """
        if not data:
            return 0
        client = self._client
        if client is None or client.broken:
            logger.debug("rfc2217 %s: no client, %d byte(s) discarded", self.name, len(data))
            return len(data)
        manager = client.manager
        if manager is not None and manager.suspended:
            return 0
        room = self._limit - len(client.out)
        if room <= 0:
            return 0
        taken = min(len(data), room)
        doubled = data.count(IAC, 0, taken)
        if taken + doubled > room:
            taken = room - doubled  # that prefix holds at most `doubled` IACs
            doubled = data.count(IAC, 0, taken)
        if taken <= 0:
            return 0
        chunk = bytes(data[:taken])
        trace_bytes(logger, f"rfc2217 {self.name}", "to client", chunk)
        client.out += chunk.replace(b"\xff", b"\xff\xff") if doubled else chunk
        self._flush(client)
        return taken

    def set_inputs(self, lines: Lines) -> None:
        """CTS/DSR/DCD/RI as the wire sees them at this end (RTS/DTR are ignored).

        A change goes to the client at once as NOTIFY-MODEMSTATE (within the
        client's SET-MODEMSTATE-MASK).
        """
        self._inputs = lines
        client = self._client
        if client is None or client.broken or client.manager is None:
            return
        if len(client.out) >= self._limit:
            client.modem_dirty = True  # sent when the buffer has room again
            return
        client.manager.check_modem_lines()
        self._flush(client)

    def notify_break(self) -> None:
        """A break arrived from the other end: NOTIFY-LINESTATE with break-detect."""
        client = self._client
        if client is None or client.broken or client.manager is None:
            return
        if len(client.out) >= self._limit:
            client.break_pending = True
            return
        self._send_break_notification(client)
        self._flush(client)

    def disconnect(self) -> None:
        """Drop the client (an unplugged cable); keep listening."""
        client = self._client
        if client is not None:
            self._drop(client, "disconnected by the wire", level=logging.INFO)

    def close(self) -> None:
        """Close the client and the listener. Calls no callback; safe to repeat."""
        client = self._client
        if client is not None:
            self._drop(client, "endpoint closed", notify=False, level=logging.DEBUG)
        if self._listener is not None:
            self._listener.close()
            self._listener = None
            logger.debug("rfc2217 %s: closed", self.name)

    def __repr__(self) -> str:
        state = "closed" if self._listener is None else "listening"
        if self._client is not None:
            state = f"connected to {self._client.peer}"
        return f"<Rfc2217Endpoint {self.name} {self.url} {state}>"

    # -- internals ----------------------------------------------------------------

    def _accept(self) -> None:
        assert self._listener is not None
        while True:
            try:
                conn, addr = self._listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:
                logger.warning("rfc2217 %s: accepting a client failed: %s", self.name, e)
                return
            peer = f"{addr[0]}:{addr[1]}"
            if self._client is not None:
                logger.info(
                    "rfc2217 %s: refused a second client from %s; one client at a time "
                    "(%s is connected)",
                    self.name,
                    peer,
                    self._client.peer,
                )
                conn.close()
                continue
            conn.setblocking(False)
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            client = _Client(conn, peer)
            self._client = client
            self._settings_dirty = False
            adapter = _PortAdapter(self, client)
            label = f"rfc2217 {self.name}"
            client.manager = _Manager(
                adapter,
                _Connection(self, client),
                _ManagerLog(label),
                f"serialhs {self.name}".encode(),
            )
            logger.info("rfc2217 %s: client %s connected", self.name, peer)
            if self._on_connect is not None:
                try:
                    self._on_connect(True)
                except Exception:
                    logger.exception("rfc2217 %s: on_connect callback failed", self.name)
                    self._drop(client, "on_connect failed", notify=False)
                    continue
            if client.alive:
                self._flush(client)

    def _process(self, client: _Client, data: bytes) -> None:
        try:
            self._feed(client, data)
            if client.alive:
                self._hand_over(client)
        except _CallbackFailed as e:
            logger.error(
                "rfc2217 %s: a callback failed; dropping client %s",
                self.name,
                client.peer,
                exc_info=e.__cause__,
            )
            self._drop(client, "a callback failed", level=logging.DEBUG)
            return
        except Exception as e:
            logger.warning(
                "rfc2217 %s: bad input from client %s (%s: %s); dropping it",
                self.name,
                client.peer,
                type(e).__name__,
                e,
            )
            logger.debug("rfc2217 %s: details of the bad input", self.name, exc_info=True)
            try:  # what arrived before the bad part is still the client's data
                self._hand_over(client)
            except _CallbackFailed as failed:
                logger.error("rfc2217 %s: a callback failed", self.name, exc_info=failed.__cause__)
            self._drop(client, "bad input", level=logging.DEBUG)
            return
        if not client.alive:
            return
        if client.overflow:
            self._drop(client, "it sends requests but does not read the replies")
            return
        self._flush(client)

    def _feed(self, client: _Client, data: bytes) -> None:
        """Run ``data`` through PortManager's Telnet filter. Plain data between
        Telnet commands takes a fast path; PortManager sees the rest byte by byte,
        so that a subnegotiation can be bounded as it grows."""
        manager = client.manager
        assert manager is not None
        i, end = 0, len(data)
        while i < end and client.alive:
            if manager.mode == M_NORMAL and manager.suboption is None:
                j = data.find(IAC, i)
                if j < 0:
                    client.rx += data[i:]
                    return
                client.rx += data[i:j]
                i = j
            for byte in manager.filter(data[i : i + 1]):
                client.rx += byte
            i += 1
            if manager.suboption is not None and len(manager.suboption) > MAX_SUBNEGOTIATION:
                raise _BadInput(f"subnegotiation longer than {MAX_SUBNEGOTIATION} bytes")

    def _call(self, callback: Callable[..., None], *args: Any) -> None:
        try:
            callback(*args)
        except Exception as e:
            raise _CallbackFailed(getattr(callback, "__name__", repr(callback))) from e

    def _hand_over(self, client: _Client) -> None:
        """Pass on the client's data and a settings change, in that order."""
        if client.rx and client.alive:
            self._emit_settings(client)
            data = bytes(client.rx)
            client.rx.clear()
            self._call(self._on_data, data)
        self._emit_settings(client)

    def _emit_settings(self, client: _Client) -> None:
        if not self._settings_dirty or not client.alive or client.manager is None:
            return
        self._settings_dirty = False
        try:
            wanted = client.manager.adapter.wanted_settings()
        except SettingsError as e:  # each field was checked; kept for safety
            logger.warning("rfc2217 %s: settings not applied: %s", self.name, e)
            return
        if wanted != self.settings:
            self.settings = wanted
            logger.info("rfc2217 %s: client set %s", self.name, wanted)
            self._call(self._on_settings, wanted)

    def _before_change(self, client: _Client) -> None:
        """A setting is about to change: data that came before it goes first."""
        if client.alive and client.rx:
            self._hand_over(client)

    def _settings_changed(self, client: _Client) -> None:
        if client.alive:
            self._settings_dirty = True

    def _client_outputs(self, client: _Client, rts: bool | None, dtr: bool | None) -> None:
        if client.alive:
            self._hand_over(client)
            self._call(self._on_outputs, rts, dtr)

    def _client_break(self, client: _Client, on: bool) -> None:
        if client.alive:
            self._hand_over(client)
            self._call(self._on_break, on)

    def _queue_control(self, client: _Client, data: bytes) -> None:
        """PortManager writes Telnet commands and replies here."""
        if not client.alive or client.broken:
            return
        if len(client.out) + len(data) > self._limit + REPLY_HEADROOM:
            client.overflow = True
            return
        client.out += data

    def _send_break_notification(self, client: _Client) -> None:
        manager = client.manager
        assert manager is not None
        mask = int(manager.linstate_mask)
        if mask & LINESTATE_BREAK_DETECT:
            manager.reply(NOTIFY_LINESTATE, bytes([LINESTATE_BREAK_DETECT & mask]))
            logger.debug("rfc2217 %s: break reported to the client", self.name)

    def _flush(self, client: _Client) -> None:
        while client.alive and not client.broken:
            while client.out:
                try:
                    sent = client.sock.send(client.out)
                except (BlockingIOError, InterruptedError):
                    return
                except OSError as e:
                    # Left for handle_read to notice: the socket reads as closed.
                    logger.debug("rfc2217 %s: sending to %s failed: %s", self.name, client.peer, e)
                    client.broken = True
                    client.out.clear()
                    return
                del client.out[:sent]
            if not (client.modem_dirty or client.break_pending) or client.manager is None:
                return
            if client.modem_dirty:
                client.modem_dirty = False
                client.manager.check_modem_lines()
            if client.break_pending:
                client.break_pending = False
                self._send_break_notification(client)

    def _drop(
        self,
        client: _Client,
        reason: str,
        *,
        notify: bool = True,
        level: int = logging.INFO,
    ) -> None:
        if not client.alive:
            return
        client.alive = False
        if self._client is client:
            self._client = None
        self._settings_dirty = False
        client.out.clear()
        try:
            client.sock.close()
        except OSError as e:
            logger.debug("rfc2217 %s: closing %s: %s", self.name, client.peer, e)
        logger.log(level, "rfc2217 %s: client %s gone: %s", self.name, client.peer, reason)
        if notify and self._on_connect is not None:
            try:
                self._on_connect(False)
            except Exception:
                logger.exception("rfc2217 %s: on_connect callback failed", self.name)
