"""USB CDC-ACM devices (modems, microcontrollers) driven from user space over pyusb.

The class requests of the USB CDC PSTN subclass (Abstract Control Model),
sent to the communications interface (request type 0x21 out, 0xA1 in;
wIndex = that interface):

=====  ========================  ==============================================
 0x20  SET_LINE_CODING           7 bytes: dwDTERate (LE u32), bCharFormat (0 = 1,
                                 1 = 1.5, 2 = 2 stop bits), bParityType (0 none,
                                 1 odd, 2 even, 3 mark, 4 space), bDataBits
 0x21  GET_LINE_CODING           the same 7 bytes back
 0x22  SET_CONTROL_LINE_STATE    wValue: DTR bit 0, RTS bit 1
 0x23  SEND_BREAK                wValue: milliseconds; 0xFFFF until cleared, 0 off
=====  ========================  ==============================================

The device reports DCD, DSR and RI in SERIAL_STATE notifications on the
communications interface's interrupt-in endpoint: a 10-byte message
(bmRequestType 0xA1, bNotification 0x20, wValue 0, wIndex, wLength 2) whose two
data bytes are bmUartState: DCD bit 0, DSR bit 1, break bit 2, RI bit 3,
framing error bit 4, parity error bit 5, overrun bit 6. The error bits are
counted in ``line_errors`` and logged.

CDC-ACM has no CTS: ``cts`` always reads True (as Linux's cdc_acm reports it),
so RTS/CTS flow control is up to the device firmware.

Cellular modules (Quectel, SIMCom) expose vendor-specific interfaces instead,
each with its own bulk pair and an interrupt endpoint; they take
SET_CONTROL_LINE_STATE and send SERIAL_STATE the same way (Linux's option
driver), so this driver runs them too, on the interface whose role is ``at``
in the module's hw_configs/modems profile unless the URL names another.
"""

from __future__ import annotations

import struct
import threading
from typing import Any

import usb.util
from serial.serialutil import SerialException

from serialhs.usb.urlhandler import (
    PARITY_CODES,
    STOPBIT_CODES,
    UsbSerial,
    UsbUrl,
    _Endpoints,
    check_framing,
    log,
    modem_profile_for,
)

__all__ = ["DRIVER", "CdcAcmSerial", "line_coding", "parse_line_coding"]

REQ_OUT = 0x21
REQ_IN = 0xA1

SET_LINE_CODING = 0x20
GET_LINE_CODING = 0x21
SET_CONTROL_LINE_STATE = 0x22
SEND_BREAK = 0x23

CONTROL_DTR = 0x01
CONTROL_RTS = 0x02
BREAK_ON = 0xFFFF

NOTIFY_SERIAL_STATE = 0x20
NOTIFY_HEADER = 8

UART_DCD = 0x01
UART_DSR = 0x02
UART_BREAK = 0x04
UART_RI = 0x08
UART_FRAMING = 0x10
UART_PARITY = 0x20
UART_OVERRUN = 0x40

CLASS_COMM = 0x02
SUBCLASS_ACM = 0x02
CLASS_DATA = 0x0A
CS_INTERFACE = 0x24
UNION_SUBTYPE = 0x06
#: Longest notification kept while its pieces arrive.
MAX_NOTIFICATION = 64

#: The last bmUartState seen from each device interface, by (bus, address,
#: interface). Devices notify only when the state changes, so a port opened
#: again starts from what the previous one saw; an address changes when the
#: device re-enumerates, so a device that came back starts afresh.
_LAST_STATE: dict[tuple[int, int, int], int] = {}
_LAST_STATE_LOCK = threading.Lock()

_STOP_NAMES = {0: 1, 1: 1.5, 2: 2}
_PARITY_NAMES = {v: k for k, v in PARITY_CODES.items()}


def line_coding(baudrate: int, bytesize: int, parity: str, stopbits: float) -> bytes:
    """The 7-byte SET_LINE_CODING structure."""
    return struct.pack("<IBBB", baudrate, STOPBIT_CODES[stopbits], PARITY_CODES[parity], bytesize)


def parse_line_coding(data: bytes) -> tuple[int, int, str, float]:
    """(baudrate, bytesize, parity, stopbits) from a GET_LINE_CODING answer."""
    if len(data) != 7:
        raise ValueError(f"line coding must be 7 bytes, not {len(data)}")
    rate, stop, parity, bits = struct.unpack("<IBBB", data)
    if stop not in _STOP_NAMES or parity not in _PARITY_NAMES:
        raise ValueError(f"bad line coding {data.hex()}")
    return rate, bits, _PARITY_NAMES[parity], _STOP_NAMES[stop]


def _union(intf: Any) -> tuple[int, list[int]] | None:
    """(master, slaves) from the interface's CDC Union functional descriptor."""
    extra = bytes(getattr(intf, "extra_descriptors", None) or b"")
    offset = 0
    while offset + 2 <= len(extra):
        length = extra[offset]
        if length < 2:
            break
        desc = extra[offset : offset + length]
        if len(desc) >= 5 and desc[1] == CS_INTERFACE and desc[2] == UNION_SUBTYPE:
            return desc[3], list(desc[4:])
        offset += length
    return None


class CdcAcmSerial(UsbSerial):
    """A CDC-ACM function (or a modem's vendor serial interface) over pyusb.

    Extra over pyserial: ``comm_interface`` and ``data_interface`` (the numbers
    in use), ``uart_state`` (the last bmUartState) and :meth:`line_coding_on_device`.
    """

    family = "cdc_acm"
    comm_interface = 0
    data_interface = 0
    uart_state = 0
    _vendor = False
    _notify_buf = b""

    def _setup(self, device: Any, url: UsbUrl) -> None:
        cfg = self._configuration(device)
        interfaces = {i.bInterfaceNumber: i for i in cfg if i.bAlternateSetting == 0}
        number = url.interface
        if number is None:
            number = self._default_interface(device, interfaces)
        intf = self._interface(cfg, number)
        comm: Any
        data: Any
        if intf.bInterfaceClass == CLASS_COMM:
            comm, data = intf, self._data_of(intf, interfaces)
        elif intf.bInterfaceClass == CLASS_DATA:
            comm, data = self._comm_of(number, interfaces), intf
        else:  # a vendor-specific serial interface (cellular modules)
            comm = data = intf
        self._vendor = comm is data
        ep_in, ep_out = self._bulk_pair(data)
        notify = None
        if comm is not None:
            notify = self._find_endpoint(comm, usb.util.ENDPOINT_IN, usb.util.ENDPOINT_TYPE_INTR)
        numbers = [i.bInterfaceNumber for i in (comm, data) if i is not None]
        numbers = list(dict.fromkeys(numbers))
        self._ep = _Endpoints(
            bulk_in=ep_in,
            bulk_out=ep_out,
            interrupt_in=notify,
            in_packet=int(ep_in.wMaxPacketSize) & 0x7FF,
            interfaces=numbers,
        )
        self._claim(device, numbers)
        self.comm_interface = (comm or data).bInterfaceNumber
        self.data_interface = data.bInterfaceNumber
        with _LAST_STATE_LOCK:
            self.uart_state = _LAST_STATE.get(self._state_key(), 0)
        self._notify_buf = b""
        self.chip = "cdc_acm"

    def _default_interface(self, device: Any, interfaces: dict[int, Any]) -> int:
        """The AT interface of a profiled modem, else the first ACM function."""
        modem = modem_profile_for(device.idVendor, device.idProduct)
        if modem is not None and modem.usb is not None:
            at = modem.usb.interface_for("at")
            if at is not None and at.number in interfaces:
                log.debug(
                    "%s: using interface %d, role 'at' in %s", self._where(), at.number, modem.name
                )
                return int(at.number)
        for number in sorted(interfaces):
            i = interfaces[number]
            if (i.bInterfaceClass, i.bInterfaceSubClass) == (CLASS_COMM, SUBCLASS_ACM):
                return number
        for number in sorted(interfaces):
            if interfaces[number].bInterfaceClass == CLASS_DATA:
                return number
        for number in sorted(interfaces):
            i = interfaces[number]
            if (
                self._find_endpoint(i, usb.util.ENDPOINT_IN, usb.util.ENDPOINT_TYPE_BULK)
                is not None
            ):
                return number
        raise SerialException(f"{self._where()}: no CDC-ACM or serial interface found")

    def _data_of(self, comm: Any, interfaces: dict[int, Any]) -> Any:
        union = _union(comm)
        candidates = union[1] if union else []
        candidates.append(comm.bInterfaceNumber + 1)
        for number in candidates:
            intf = interfaces.get(number)
            if intf is not None and intf.bInterfaceClass == CLASS_DATA:
                return intf
        raise SerialException(
            f"{self._where()}: communications interface {comm.bInterfaceNumber} has no "
            "data interface"
        )

    def _comm_of(self, number: int, interfaces: dict[int, Any]) -> Any:
        for intf in interfaces.values():
            if intf.bInterfaceClass != CLASS_COMM:
                continue
            union = _union(intf)
            if union is not None and number in union[1]:
                return intf
        before = interfaces.get(number - 1)
        if before is not None and before.bInterfaceClass == CLASS_COMM:
            return before
        raise SerialException(
            f"{self._where()}: data interface {number} has no communications interface"
        )

    def _control(self, request: int, value: int, data: bytes | None = None, *, what: str) -> None:
        self._control_out(REQ_OUT, request, value, self.comm_interface, data, what=what)

    # -- settings -------------------------------------------------------------------

    def _configure(self) -> None:
        check_framing(
            "CDC-ACM", bytesize=self._bytesize, parity=self._parity, stopbits=self._stopbits
        )
        coding = line_coding(int(self._baudrate), int(self._bytesize), self._parity, self._stopbits)
        try:
            self._control(SET_LINE_CODING, 0, coding, what="set the line coding of")
        except SerialException as e:
            if not self._vendor or getattr(e, "errno", None) is not None:
                raise
            # Vendor serial interfaces of cellular modules often refuse line
            # coding: over USB the rate means nothing to them.
            log.info("%s: the device does not take line coding (%s)", self._where(), e)
            self.actual_baudrate = int(self._baudrate)
            return
        self.actual_baudrate = int(self._baudrate)
        try:
            rate, bits, parity, stop = self.line_coding_on_device()
        except (SerialException, ValueError) as e:
            if getattr(e, "errno", None) is not None:
                raise
            log.debug("%s: GET_LINE_CODING: %s", self._where(), e)
            return
        self.actual_baudrate = rate
        wanted = (int(self._baudrate), int(self._bytesize), self._parity, self._stopbits)
        if (rate, bits, parity, stop) != wanted:
            log.warning(
                "%s: asked for %d %d%s%g, the device holds %d %d%s%g",
                self._where(),
                *wanted,
                rate,
                bits,
                parity,
                stop,
            )
        if self._rtscts:
            log.warning(
                "%s: CDC-ACM has no CTS; RTS/CTS flow control is up to the device", self._where()
            )

    def line_coding_on_device(self) -> tuple[int, int, str, float]:
        """GET_LINE_CODING: (baudrate, bytesize, parity, stopbits) the device holds."""
        data = self._control_in(
            REQ_IN, GET_LINE_CODING, 0, self.comm_interface, 7, what="read the line coding of"
        )
        return parse_line_coding(data)

    def _send_control_lines(self) -> None:
        value = (CONTROL_DTR if self._dtr_state else 0) | (CONTROL_RTS if self._rts_state else 0)
        self._control(SET_CONTROL_LINE_STATE, value, what="set DTR/RTS on")

    def _update_rts_state(self) -> None:
        self._send_control_lines()

    def _update_dtr_state(self) -> None:
        self._send_control_lines()

    def set_lines(self, *, rts: bool, dtr: bool) -> None:
        """Set RTS and DTR together, in one request."""
        self._require_open()
        self._rts_state, self._dtr_state = rts, dtr
        self._send_control_lines()

    def _update_break_state(self) -> None:
        self._control(SEND_BREAK, BREAK_ON if self._break_state else 0, what="set break on")

    # -- notifications --------------------------------------------------------------

    def _notification(self, data: bytes) -> None:
        buf = self._notify_buf + data
        while len(buf) >= NOTIFY_HEADER:
            request_type, code, _value, _index, length = struct.unpack("<BBHHH", buf[:8])
            if len(buf) < NOTIFY_HEADER + length:
                break
            body = buf[NOTIFY_HEADER : NOTIFY_HEADER + length]
            buf = buf[NOTIFY_HEADER + length :]
            if request_type == REQ_IN and code == NOTIFY_SERIAL_STATE and length >= 1:
                self._serial_state(int.from_bytes(body[:2], "little"))
            else:
                log.debug("%s: notification %#04x %s", self._where(), code, body.hex())
        if len(buf) > MAX_NOTIFICATION:
            log.warning("%s: dropping a malformed notification: %s", self._where(), buf.hex())
            buf = b""
        self._notify_buf = buf

    def _state_key(self) -> tuple[int, int, int]:
        device = self.usb_device
        bus = int(getattr(device, "bus", None) or 0)
        address = int(getattr(device, "address", None) or 0)
        return bus, address, self.comm_interface

    def _serial_state(self, state: int) -> None:
        self.uart_state = state & (UART_DCD | UART_DSR | UART_RI)
        with _LAST_STATE_LOCK:
            if len(_LAST_STATE) > 256:
                _LAST_STATE.clear()
            _LAST_STATE[self._state_key()] = self.uart_state
        self._count_errors(
            overrun=bool(state & UART_OVERRUN),
            parity=bool(state & UART_PARITY),
            framing=bool(state & UART_FRAMING),
            brk=bool(state & UART_BREAK),
        )

    def _state_bit(self, bit: int) -> bool:
        self._require_open()
        self._require_device()
        return bool(self.uart_state & bit)

    @property
    def cts(self) -> bool:
        """Always True: CDC-ACM reports no CTS."""
        self._require_open()
        self._require_device()
        return True

    @property
    def dsr(self) -> bool:
        return self._state_bit(UART_DSR)

    @property
    def ri(self) -> bool:
        return self._state_bit(UART_RI)

    @property
    def cd(self) -> bool:
        return self._state_bit(UART_DCD)


DRIVER = CdcAcmSerial
