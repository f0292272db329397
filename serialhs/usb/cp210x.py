"""Silicon Labs CP2102 / CP2102N driven from user space over pyusb.

The chips speak the vendor requests of Silicon Labs AN571 ("CP210x Virtual COM
Interface Specification") on the control pipe, addressed to the interface
(request type 0x41 host-to-device, 0xC1 device-to-host; wIndex = interface):

=====  ================  ======================================================
 0x00  IFC_ENABLE        wValue 1 enable the UART, 0 disable
 0x03  SET_LINE_CTL      stop bits (bits 0-3: 0 = 1, 1 = 1.5, 2 = 2), parity
                         (4-7: none, odd, even, mark, space), data bits (8-15)
 0x05  SET_BREAK         wValue 1 on, 0 off
 0x07  SET_MHS           DTR bit 0, RTS bit 1; bits 8/9 say which to change
 0x08  GET_MDMSTS        one byte: DTR 0x01, RTS 0x02, CTS 0x10, DSR 0x20,
                         RI 0x40, DCD 0x80
 0x10  GET_COMM_STATUS   19 bytes: ulErrors (break 0x01, framing 0x02, hardware
                         overrun 0x04, queue overrun 0x08, parity 0x10), ...
 0x12  PURGE             wValue bits: 0x01/0x04 transmit, 0x02/0x08 receive
 0x13  SET_FLOW          16 bytes: ulControlHandshake, ulFlowReplace,
                         ulXonLimit, ulXoffLimit (little-endian u32 each)
 0x1D  GET_BAUDRATE      4 bytes, little-endian
 0x1E  SET_BAUDRATE      4 bytes, little-endian
=====  ================  ======================================================

Baud rates: the CP2102 maps every request onto one of the fixed rates of its
table (Silicon Labs AN205, table 1; 921600 at most); the CP2102N makes
48 MHz / (2 x prescale x divisor) for any rate from 300 to 3 Mbaud. The port's
``actual_baudrate`` is the rate the chip really runs at, worked out the same
way Linux's cp210x driver does.
"""

from __future__ import annotations

import struct
import time
from typing import Any

from serial.serialutil import SerialException

from serialhs.errors import SettingsError
from serialhs.usb.urlhandler import (
    PARITY_CODES,
    STOPBIT_CODES,
    UsbSerial,
    UsbUrl,
    check_framing,
    log,
)

__all__ = ["AN205_RATES", "DRIVER", "Cp210xSerial", "cp2102_rate", "cp2102n_rate"]

REQ_OUT = 0x41
REQ_IN = 0xC1

IFC_ENABLE = 0x00
SET_LINE_CTL = 0x03
GET_LINE_CTL = 0x04
SET_BREAK = 0x05
SET_MHS = 0x07
GET_MDMSTS = 0x08
GET_COMM_STATUS = 0x10
PURGE = 0x12
SET_FLOW = 0x13
GET_BAUDRATE = 0x1D
SET_BAUDRATE = 0x1E

MHS_DTR = 0x0001
MHS_RTS = 0x0002
MHS_DTR_MASK = 0x0100
MHS_RTS_MASK = 0x0200

STATUS_DTR = 0x01
STATUS_RTS = 0x02
STATUS_CTS = 0x10
STATUS_DSR = 0x20
STATUS_RI = 0x40
STATUS_DCD = 0x80

# GET_COMM_STATUS ulErrors.
ERROR_BREAK = 0x01
ERROR_FRAMING = 0x02
ERROR_HW_OVERRUN = 0x04
ERROR_QUEUE_OVERRUN = 0x08
ERROR_PARITY = 0x10

PURGE_TX = 0x0005
PURGE_RX = 0x000A

# SET_FLOW ulControlHandshake.
HS_DTR_INACTIVE = 0x00
HS_DTR_ACTIVE = 0x01
HS_DTR_FLOW = 0x02
HS_CTS_HANDSHAKE = 0x08
HS_DSR_HANDSHAKE = 0x10
# SET_FLOW ulFlowReplace.
FR_AUTO_TRANSMIT = 0x01
FR_AUTO_RECEIVE = 0x02
FR_RTS_INACTIVE = 0x00
FR_RTS_ACTIVE = 0x40
FR_RTS_FLOW = 0x80
XON_LIMIT = 128
XOFF_LIMIT = 128

#: How often the reader asks for error counts (GET_COMM_STATUS), in seconds.
ERROR_POLL = 0.25

#: AN205 table 1: (highest requested rate, rate the CP2102 makes), in order.
AN205_RATES: tuple[tuple[int, int], ...] = (
    (300, 300), (600, 600), (1200, 1200), (1800, 1800), (2400, 2400),
    (4000, 4000), (4803, 4800), (7207, 7200), (9612, 9600), (14428, 14400),
    (16062, 16000), (19250, 19200), (28912, 28800), (38601, 38400),
    (51558, 51200), (56280, 56000), (58053, 57600), (64111, 64000),
    (77608, 76800), (117028, 115200), (129347, 128000), (156868, 153600),
    (237832, 230400), (254234, 250000), (273066, 256000), (491520, 460800),
    (567138, 500000), (670254, 576000),
)  # fmt: skip
CP2102_MAX = 921_600


def cp2102_rate(baudrate: int) -> int:
    """The rate a CP2102 makes for a request (AN205 table 1, default configuration)."""
    for upper, rate in AN205_RATES:
        if baudrate <= upper:
            return rate
    return CP2102_MAX


def cp2102n_rate(baudrate: int) -> int:
    """The rate a CP2102N makes: 48 MHz / (2 x prescale x divisor), 300..3 Mbaud."""
    baudrate = min(max(baudrate, 300), 3_000_000)
    prescale = 4 if baudrate <= 365 else 1
    divisor = max(1, round(48_000_000 / (2 * prescale * baudrate)))
    return 48_000_000 // (2 * prescale * divisor)


class Cp210xSerial(UsbSerial):
    """A CP2102/CP2102N over pyusb. Extra over pyserial: :meth:`modem_status`
    (the GET_MDMSTS byte) and :meth:`comm_status` (error counts and queues)."""

    family = "cp210x"
    _interface_number = 0
    _next_poll = 0.0
    _comm_status_ok = True

    def _setup(self, device: Any, url: UsbUrl) -> None:
        number = self._setup_single(device, url)
        self._interface_number = number
        self.chip = self._detect_chip(device, url)
        self._comm_status_ok = True
        self._next_poll = 0.0
        self._control(IFC_ENABLE, 1, what="enable the UART of")

    @staticmethod
    def _detect_chip(device: Any, url: UsbUrl) -> str:
        if url.chip not in (None, "cp210x"):
            assert url.chip is not None
            return url.chip
        try:
            product = str(device.product or "") if device.iProduct else ""
        except (ValueError, OSError):
            product = ""
        return "cp2102n" if product.upper().startswith("CP2102N") else "cp2102"

    def _control(self, request: int, value: int, data: bytes | None = None, *, what: str) -> None:
        self._control_out(REQ_OUT, request, value, self._interface_number, data, what=what)

    def _chip_close(self) -> None:
        self._control(IFC_ENABLE, 0, what="disable the UART of")

    # -- settings -------------------------------------------------------------------

    def rate_for(self, baudrate: int) -> int:
        """The rate this chip makes when asked for ``baudrate``."""
        if self.chip == "cp2102n":
            return cp2102n_rate(baudrate)
        return cp2102_rate(baudrate)

    def _configure(self) -> None:
        chip = self.chip.upper()
        check_framing(chip, bytesize=self._bytesize, parity=self._parity, stopbits=self._stopbits)
        if self._stopbits == 1.5 and self._bytesize != 5:
            raise SettingsError(f"{chip} has 1.5 stop bits with 5 data bits only")
        baudrate = int(self._baudrate)
        low = 300
        high = 3_000_000 if self.chip == "cp2102n" else CP2102_MAX
        if not low * 0.97 <= baudrate <= high * 1.03:
            raise SettingsError(f"{chip} runs at {low}..{high} baud, not {baudrate}")
        actual = self.rate_for(baudrate)
        if abs(actual - baudrate) > 0.03 * baudrate:
            raise SettingsError(
                f"{chip} cannot run at {baudrate} baud: it would make {actual} "
                f"({(actual - baudrate) / baudrate:+.1%}; Silicon Labs AN205)"
            )
        self._control(SET_BAUDRATE, 0, struct.pack("<I", baudrate), what="set the baud rate of")
        self.actual_baudrate = actual
        if actual != baudrate:
            log.info("%s: %d baud asked, %d made", self._where(), baudrate, actual)
        line_ctl = (
            STOPBIT_CODES[self._stopbits]
            | (PARITY_CODES[self._parity] << 4)
            | (int(self._bytesize) << 8)
        )
        self._control(SET_LINE_CTL, line_ctl, what="set the line format of")
        self._set_flow()

    def _set_flow(self) -> None:
        if self._dsrdtr:
            handshake = HS_DTR_FLOW | HS_DSR_HANDSHAKE
        else:
            handshake = HS_DTR_ACTIVE if self._dtr_state else HS_DTR_INACTIVE
        if self._rtscts:
            handshake |= HS_CTS_HANDSHAKE
            replace = FR_RTS_FLOW
        else:
            replace = FR_RTS_ACTIVE if self._rts_state else FR_RTS_INACTIVE
        if self._xonxoff:
            replace |= FR_AUTO_TRANSMIT | FR_AUTO_RECEIVE
        flow = struct.pack("<4I", handshake, replace, XON_LIMIT, XOFF_LIMIT)
        self._control(SET_FLOW, 0, flow, what="set flow control of")

    def baudrate_on_chip(self) -> int:
        """What the chip says its baud rate is (GET_BAUDRATE)."""
        data = self._control_in(
            REQ_IN, GET_BAUDRATE, 0, self._interface_number, 4, what="read the baud rate of"
        )
        if len(data) != 4:
            raise SerialException(f"{self._where()}: baud rate answer {data!r} is not 4 bytes")
        return int(struct.unpack("<I", data)[0])

    def _update_rts_state(self) -> None:
        self._control(
            SET_MHS, MHS_RTS_MASK | (MHS_RTS if self._rts_state else 0), what="set RTS on"
        )

    def _update_dtr_state(self) -> None:
        self._control(
            SET_MHS, MHS_DTR_MASK | (MHS_DTR if self._dtr_state else 0), what="set DTR on"
        )

    def set_lines(self, *, rts: bool, dtr: bool) -> None:
        """Set RTS and DTR together, in one request."""
        self._require_open()
        self._rts_state, self._dtr_state = rts, dtr
        value = MHS_RTS_MASK | MHS_DTR_MASK | (MHS_RTS if rts else 0) | (MHS_DTR if dtr else 0)
        self._control(SET_MHS, value, what="set RTS and DTR on")

    def _update_break_state(self) -> None:
        self._control(SET_BREAK, 1 if self._break_state else 0, what="set break on")

    def _purge(self, *, rx: bool = False, tx: bool = False) -> None:
        value = (PURGE_RX if rx else 0) | (PURGE_TX if tx else 0)
        if value:
            self._control(PURGE, value, what="purge the buffers of")

    # -- status ---------------------------------------------------------------------

    def modem_status(self) -> int:
        """The GET_MDMSTS byte (DTR 0x01, RTS 0x02, CTS 0x10, DSR 0x20, RI 0x40, DCD 0x80)."""
        self._require_open()
        data = self._control_in(
            REQ_IN, GET_MDMSTS, 0, self._interface_number, 1, what="read the modem status of"
        )
        if len(data) != 1:
            raise SerialException(f"{self._where()}: modem status answer {data!r} is not 1 byte")
        return data[0]

    def comm_status(self) -> dict[str, int]:
        """GET_COMM_STATUS: the error bits (counted into ``line_errors``) and queue lengths."""
        data = self._control_in(
            REQ_IN, GET_COMM_STATUS, 0, self._interface_number, 19, what="read the status of"
        )
        if len(data) < 16:
            raise SerialException(f"{self._where()}: comm status answer of {len(data)} byte(s)")
        errors, hold, in_queue, out_queue = struct.unpack("<4I", data[:16])
        self._count_errors(
            overrun=bool(errors & (ERROR_HW_OVERRUN | ERROR_QUEUE_OVERRUN)),
            parity=bool(errors & ERROR_PARITY),
            framing=bool(errors & ERROR_FRAMING),
            brk=bool(errors & ERROR_BREAK),
        )
        return {
            "errors": errors,
            "hold_reasons": hold,
            "in_queue": in_queue,
            "out_queue": out_queue,
        }

    def _poll(self) -> None:
        if not self._comm_status_ok or time.monotonic() < self._next_poll:
            return
        self._next_poll = time.monotonic() + ERROR_POLL
        try:
            self.comm_status()
        except SerialException as e:
            if getattr(e, "errno", None) is not None:
                raise
            self._comm_status_ok = False
            log.info("%s: no error reports from this chip (%s)", self._where(), e)

    @property
    def cts(self) -> bool:
        return bool(self.modem_status() & STATUS_CTS)

    @property
    def dsr(self) -> bool:
        return bool(self.modem_status() & STATUS_DSR)

    @property
    def ri(self) -> bool:
        return bool(self.modem_status() & STATUS_RI)

    @property
    def cd(self) -> bool:
        return bool(self.modem_status() & STATUS_DCD)


DRIVER = Cp210xSerial
