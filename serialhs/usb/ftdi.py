"""FTDI FT232R / FT232BM / FT232H (and kin) driven from user space over pyusb.

The chips speak FTDI's vendor requests on the control pipe (request type 0x40
out, 0xC0 in; the port index, interface number + 1, in wIndex):

====  =====================  ==================================================
  0   RESET                  wValue 0 reset, 1 purge RX, 2 purge TX
  1   SET_MODEM_CTRL         wValue high byte: mask (0x01 DTR, 0x02 RTS), low byte: state
  2   SET_FLOW_CTRL          wIndex high byte 0x01 RTS/CTS, 0x02 DTR/DSR, 0x04 XON/XOFF
  3   SET_BAUD_RATE          the encoded divisor in wValue and wIndex (below)
  4   SET_DATA               data bits (bits 0-7), parity (8-10), stop bits (11-13), break (14)
  5   GET_MODEM_STATUS       two bytes: modem status, line status
  9   SET_LATENCY_TIMER      wValue 1-255 ms
 10   GET_LATENCY_TIMER      one byte
====  =====================  ==================================================

Every bulk-in packet (64 bytes at full speed, 512 on the hi-speed FT232H)
starts with two status bytes -- modem status (CTS 0x10, DSR 0x20, RI 0x40, DCD
0x80) and line status (overrun 0x02, parity 0x04, framing 0x08, break 0x10) --
that are stripped here: the modem bits feed ``cts``/``dsr``/``ri``/``cd``, the
line errors are counted in ``line_errors`` and logged.

Baud rates: FTDI AN232B-05. The FT232R/FT232BM divide a 3 MHz clock by
n + k/8 (n 2..16383, k 0..7); the eighth is encoded as a 3-bit code in bits
14-16 of the divisor (0 -> 0, 1/8 -> 3, 1/4 -> 2, 3/8 -> 4, 1/2 -> 1, 5/8 -> 5,
3/4 -> 6, 7/8 -> 7), and the divisor values 0 and 1 mean 3 Mbaud and 2 Mbaud.
The hi-speed chips (FT232H, FT2232H, FT4232H) also divide a 12 MHz clock the
same way when bit 17 is set. :func:`ftdi_divisor` picks the closest rate the
chip can make and refuses one more than 3 % off; the port's ``actual_baudrate``
is the rate it really runs at.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass
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

__all__ = [
    "DRIVER",
    "FRACTION_CODES",
    "HISPEED_FLAG",
    "FtdiBaud",
    "FtdiSerial",
    "encode_divisor",
    "ftdi_divisor",
]

REQ_OUT = 0x40
REQ_IN = 0xC0

SIO_RESET = 0
SIO_SET_MODEM_CTRL = 1
SIO_SET_FLOW_CTRL = 2
SIO_SET_BAUD_RATE = 3
SIO_SET_DATA = 4
SIO_GET_MODEM_STATUS = 5
SIO_SET_LATENCY_TIMER = 9
SIO_GET_LATENCY_TIMER = 10

RESET_SIO = 0
RESET_PURGE_RX = 1
RESET_PURGE_TX = 2

FLOW_RTS_CTS = 0x01
FLOW_DTR_DSR = 0x02
FLOW_XON_XOFF = 0x04
XON, XOFF = 0x11, 0x13

DATA_BREAK = 1 << 14

# Modem status byte (first byte of every bulk-in packet, first of GET_MODEM_STATUS).
MODEM_CTS = 0x10
MODEM_DSR = 0x20
MODEM_RI = 0x40
MODEM_DCD = 0x80
# Line status byte (second byte).
LINE_OVERRUN = 0x02
LINE_PARITY = 0x04
LINE_FRAMING = 0x08
LINE_BREAK = 0x10

#: Eighths of the divisor -> the 3-bit code in bits 14..16 (AN232B-05).
FRACTION_CODES: tuple[int, ...] = (0, 3, 2, 4, 1, 5, 6, 7)
#: Bit 17 of the divisor: divide the 12 MHz clock (hi-speed chips only).
HISPEED_FLAG = 1 << 17
#: Largest integer part of a divisor (14 bits).
MAX_DIVISOR = 0x3FFF
#: Relative error above which a rate is refused instead of approximated.
TOLERANCE = 0.03
#: How old the modem status from the bulk-in stream may be before a property
#: read asks the chip directly (GET_MODEM_STATUS), in seconds.
STATUS_MAX_AGE = 0.05

#: bcdDevice -> chip, for the chips whose version tells them apart.
CHIPS_BY_BCD: dict[int, str] = {
    0x0200: "ft232am",
    0x0400: "ft232bm",
    0x0500: "ft2232c",
    0x0600: "ft232r",
    0x0700: "ft2232h",
    0x0800: "ft4232h",
    0x0900: "ft232h",
    0x1000: "ft230x",
}
HISPEED_CHIPS = frozenset({"ft232h", "ft2232h", "ft4232h"})
MULTI_CHANNEL_CHIPS = frozenset({"ft2232c", "ft2232h", "ft4232h"})


def encode_divisor(eighths: int) -> int:
    """The AN232B-05 encoding of a divisor given in eighths (``8 * (n + k/8)``).

    A divisor of 1 encodes as 0 and 1.5 as 1 (the chip's 3 and 2 Mbaud, or 12
    and 8 Mbaud on the hi-speed clock); otherwise n must be 2..16383.
    """
    if eighths == 8:
        return 0
    if eighths == 12:
        return 1
    n, k = divmod(eighths, 8)
    if not 2 <= n <= MAX_DIVISOR:
        raise SettingsError(f"divisor {eighths / 8} is outside 2..{MAX_DIVISOR}.875")
    return n | (FRACTION_CODES[k] << 14)


@dataclass(frozen=True)
class FtdiBaud:
    """One baud-rate setting: what was asked, what the chip is told, what it makes."""

    requested: int
    base: int  #: the clock divided: 3 MHz, or 12 MHz on hi-speed chips
    eighths: int  #: the divisor in eighths
    encoded: int  #: the 32-bit divisor word, hi-speed flag included

    @property
    def divisor(self) -> float:
        return self.eighths / 8

    @property
    def hispeed(self) -> bool:
        return bool(self.encoded & HISPEED_FLAG)

    @property
    def actual(self) -> float:
        """The rate the chip makes, in bit/s."""
        return self.base / self.divisor

    @property
    def error(self) -> float:
        """(actual - requested) / requested."""
        return (self.actual - self.requested) / self.requested

    def request(self, port_index: int = 1, *, wide_index: bool = False) -> tuple[int, int]:
        """(wValue, wIndex) of SET_BAUD_RATE.

        wValue carries bits 0-15 of the divisor. On single-channel full-speed
        chips (FT232R, FT232BM) wIndex carries bits 16+. On hi-speed and
        multi-channel chips (``wide_index``) the high byte of wIndex carries
        bits 16-23 and the low byte the port index, as libftdi and pyftdi send it.
        """
        value = self.encoded & 0xFFFF
        if wide_index:
            index = ((self.encoded >> 8) & 0xFF00) | (port_index & 0xFF)
        else:
            index = (self.encoded >> 16) & 0xFFFF
        return value, index


def ftdi_divisor(
    baudrate: int, *, hispeed: bool = False, chip: str = "FT232R", tolerance: float = TOLERANCE
) -> FtdiBaud:
    """The divisor giving the rate closest to ``baudrate``.

    ``hispeed`` allows the 12 MHz clock of the H chips as well as the 3 MHz one
    (the 12 MHz one wins a tie). A rate more than ``tolerance`` away from every
    achievable rate raises SettingsError (a ValueError) naming the nearest one.
    """
    if isinstance(baudrate, bool) or not isinstance(baudrate, int) or baudrate <= 0:
        raise SettingsError(f"baud rate must be a positive whole number, not {baudrate!r}")
    clocks = [(12_000_000, HISPEED_FLAG)] if hispeed else []
    clocks.append((3_000_000, 0))
    best: tuple[float, int, FtdiBaud] | None = None
    for rank, (base, flag) in enumerate(clocks):
        exact = base * 8 / baudrate
        options = {8, 12}
        for eighths in (math.floor(exact), math.ceil(exact)):
            options.add(min(max(eighths, 16), MAX_DIVISOR * 8 + 7))
        for eighths in sorted(options):
            setting = FtdiBaud(baudrate, base, eighths, encode_divisor(eighths) | flag)
            key = (abs(setting.actual - baudrate), rank)
            if best is None or key < best[:2]:
                best = (key[0], rank, setting)
    assert best is not None
    setting = best[2]
    if abs(setting.error) > tolerance:
        raise SettingsError(
            f"{chip} cannot run at {baudrate} baud: the nearest rate it can make is "
            f"{setting.actual:.0f} ({setting.error:+.1%})"
        )
    return setting


class FtdiSerial(UsbSerial):
    """An FTDI UART over pyusb. Extra over pyserial: ``latency_timer`` (ms),
    :meth:`modem_status`, ``baud_setting`` (the :class:`FtdiBaud` in use)."""

    family = "ftdi"

    def _setup(self, device: Any, url: UsbUrl) -> None:
        number = self._setup_single(device, url)
        self.chip = self._detect_chip(device, url)
        self._index = number + 1
        self._status_lock = threading.Lock()
        self._modem = 0
        self._status_at = 0.0
        self.baud_setting: FtdiBaud | None = None
        self._control(SIO_RESET, RESET_SIO, what="reset")
        self.modem_status()

    @staticmethod
    def _detect_chip(device: Any, url: UsbUrl) -> str:
        if url.chip not in (None, "ftdi"):
            assert url.chip is not None
            return url.chip
        if device.idProduct == 0x6014:
            return "ft232h"
        chip = CHIPS_BY_BCD.get(int(device.bcdDevice) & 0xFF00, "ft232r")
        if chip == "ft232am":
            log.warning(
                "FT232AM found: it has only the original four sub-integer divisors; "
                "rates needing the others will be off"
            )
        return chip

    @property
    def _hispeed(self) -> bool:
        return self.chip in HISPEED_CHIPS

    def _control(self, request: int, value: int, index: int | None = None, *, what: str) -> None:
        self._control_out(
            REQ_OUT,
            request,
            value,
            self._index if index is None else index,
            None,
            what=f"{what} on",
        )

    # -- settings -------------------------------------------------------------------

    def _configure(self) -> None:
        check_framing(
            self.chip.upper(),
            bytesize=self._bytesize,
            parity=self._parity,
            stopbits=self._stopbits,
            bytesizes=(7, 8),
        )
        if self._stopbits not in (1, 2):
            raise SettingsError(f"{self.chip.upper()} has 1 or 2 stop bits, not {self._stopbits}")
        setting = ftdi_divisor(self._baudrate, hispeed=self._hispeed, chip=self.chip.upper())
        wide = self.chip in HISPEED_CHIPS or self.chip in MULTI_CHANNEL_CHIPS
        value, index = setting.request(self._index, wide_index=wide)
        self._control(SIO_SET_BAUD_RATE, value, index, what="set the baud rate")
        self.baud_setting = setting
        self.actual_baudrate = round(setting.actual)
        if self.actual_baudrate != self._baudrate:
            log.info(
                "%s: %d baud asked, %d made (%+.2f%%)",
                self._where(),
                self._baudrate,
                self.actual_baudrate,
                setting.error * 100,
            )
        self._control(SIO_SET_DATA, self._data_word(), what="set the data format")
        if self._rtscts:
            flow, value = FLOW_RTS_CTS, 0
        elif self._dsrdtr:
            flow, value = FLOW_DTR_DSR, 0
        elif self._xonxoff:
            flow, value = FLOW_XON_XOFF, XON | (XOFF << 8)
        else:
            flow, value = 0, 0
        self._control(SIO_SET_FLOW_CTRL, value, (flow << 8) | self._index, what="set flow control")

    def _data_word(self) -> int:
        word = (
            int(self._bytesize)
            | (PARITY_CODES[self._parity] << 8)
            | (STOPBIT_CODES[self._stopbits] << 11)
        )
        return word | DATA_BREAK if self._break_state else word

    def _update_rts_state(self) -> None:
        self._control(SIO_SET_MODEM_CTRL, 0x0200 | (0x02 if self._rts_state else 0), what="set RTS")

    def _update_dtr_state(self) -> None:
        self._control(SIO_SET_MODEM_CTRL, 0x0100 | (0x01 if self._dtr_state else 0), what="set DTR")

    def set_lines(self, *, rts: bool, dtr: bool) -> None:
        """Set RTS and DTR together, in one request."""
        self._require_open()
        self._rts_state, self._dtr_state = rts, dtr
        self._control(
            SIO_SET_MODEM_CTRL,
            0x0300 | (0x02 if rts else 0) | (0x01 if dtr else 0),
            what="set RTS and DTR",
        )

    def _update_break_state(self) -> None:
        self._control(SIO_SET_DATA, self._data_word(), what="set break")

    def _purge(self, *, rx: bool = False, tx: bool = False) -> None:
        if rx:
            self._control(SIO_RESET, RESET_PURGE_RX, what="purge the receive buffer of")
        if tx:
            self._control(SIO_RESET, RESET_PURGE_TX, what="purge the transmit buffer of")

    @property
    def latency_timer(self) -> int:
        """How long (ms) the chip holds a short packet before sending it."""
        self._require_open()
        data = self._control_in(
            REQ_IN, SIO_GET_LATENCY_TIMER, 0, self._index, 1, what="read the latency timer of"
        )
        if len(data) != 1:
            raise SerialException(f"{self._where()}: latency timer answer {data!r} is not 1 byte")
        return data[0]

    @latency_timer.setter
    def latency_timer(self, ms: int) -> None:
        if not 1 <= int(ms) <= 255:
            raise SettingsError(f"latency timer must be 1..255 ms, not {ms}")
        self._require_open()
        self._control(SIO_SET_LATENCY_TIMER, int(ms), what="set the latency timer of")

    # -- status ---------------------------------------------------------------------

    def modem_status(self) -> tuple[int, int]:
        """Ask the chip (GET_MODEM_STATUS): (modem status byte, line status byte)."""
        data = self._control_in(
            REQ_IN, SIO_GET_MODEM_STATUS, 0, self._index, 2, what="read the modem status of"
        )
        if len(data) < 1:
            raise SerialException(f"{self._where()}: empty modem status")
        self._status(data[0], data[1] if len(data) > 1 else 0, count_errors=False)
        return data[0], data[1] if len(data) > 1 else 0

    def _status(self, modem: int, line: int, *, count_errors: bool = True) -> None:
        with self._status_lock:
            self._modem = modem
            self._status_at = time.monotonic()
        if count_errors and line & (LINE_OVERRUN | LINE_PARITY | LINE_FRAMING | LINE_BREAK):
            self._count_errors(
                overrun=bool(line & LINE_OVERRUN),
                parity=bool(line & LINE_PARITY),
                framing=bool(line & LINE_FRAMING),
                brk=bool(line & LINE_BREAK),
            )

    def _received(self, data: bytes) -> None:
        packet = self._ep.in_packet or 64
        payload = bytearray()
        for offset in range(0, len(data), packet):
            chunk = data[offset : offset + packet]
            if len(chunk) < 2:
                log.warning(
                    "%s: bulk-in packet of %d byte(s) without status", self._where(), len(chunk)
                )
                continue
            self._status(chunk[0], chunk[1])
            payload += chunk[2:]
        if payload:
            self._deliver(bytes(payload))

    def _modem_bits(self) -> int:
        self._require_open()
        self._require_device()
        with self._status_lock:
            fresh = time.monotonic() - self._status_at <= STATUS_MAX_AGE
            modem = self._modem
        if fresh:
            return modem
        return self.modem_status()[0]

    @property
    def cts(self) -> bool:
        return bool(self._modem_bits() & MODEM_CTS)

    @property
    def dsr(self) -> bool:
        return bool(self._modem_bits() & MODEM_DSR)

    @property
    def ri(self) -> bool:
        return bool(self._modem_bits() & MODEM_RI)

    @property
    def cd(self) -> bool:
        return bool(self._modem_bits() & MODEM_DCD)


DRIVER = FtdiSerial
