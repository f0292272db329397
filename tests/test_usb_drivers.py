"""The user-space USB drivers (usb:// URLs), against the virtual USB bus.

SERIALHS_USB=virtual:ft232r,cp2102,cdc_modem plugs a virtual FT232R and CP2102
(each with its UART on a virtual wire whose far end a test opens as a Port) and
a Quectel EC25 model (its AT interfaces lead to the Hayes modem emulator). The
models decode what the drivers send by the chips' documents; the tests check
the drivers against them, and the FTDI divisor encoder against FTDI's own
worked examples.
"""

from __future__ import annotations

import errno
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import serial
import usb.core

import serialhs.usb.urlhandler  # noqa: F401  (registers usb:// with pyserial)
from serialhs.driver.port import Port
from serialhs.driver.settings import Parity, SerialSettings, StopBits
from serialhs.errors import (
    ConfigError,
    PortDisconnectedError,
    PortNotFoundError,
    PortPermissionError,
    ReadTimeout,
)
from serialhs.usb.cdcacm import CdcAcmSerial, line_coding, parse_line_coding
from serialhs.usb.cp210x import Cp210xSerial, cp2102_rate, cp2102n_rate
from serialhs.usb.ftdi import FtdiSerial, encode_divisor, ftdi_divisor
from serialhs.usb.reenumerate import reopen, reopen_port, usb_url
from serialhs.usb.urlhandler import UsbSerial, UsbUrl, serial_class_for_url
from serialhs.usb.virtual import ENV_VAR, VirtualBus, env_bus, reset_env_bus

FT232R = "usb://0403:6001?serial=A50285BI"
FT232H = "usb://0403:6014?serial=FT6ZQ1XH"
CP2102 = "usb://10c4:ea60?serial=0001"
MODEM = "usb://2c7c:0125?serial=EC25VIRT0001"


# --- the FTDI divisor encoder against FTDI AN232B-05 -----------------------------------------
#
# FTDI application note AN232B-05, "Configuring FT232R, FT2232 and FT232B Baud
# Rates" (2006), part II "Aliasing Baud Rates": the ConfigData table gives each
# standard rate's divisor as the bytes the driver sends (Byte0, Byte1[, Byte2,
# Byte3]: wValue low/high, wIndex low/high), and the worked example decodes
# 35,40,01,00 -> 0x00014035 -> 53 + 0.625 -> 3000000 / 53.625 = 55944 baud.
# The rates below are the ones those divisors make (3 MHz / divisor), so the
# encoder must land on exactly these words.
AN232B_05 = [
    # (baud, wValue, wIndex, divisor)
    (300, 0x2710, 0x0000, 10000),  # 10,27
    (600, 0x1388, 0x0000, 5000),  # 88,13
    (1200, 0x09C4, 0x0000, 2500),  # C4,09
    (2400, 0x04E2, 0x0000, 1250),  # E2,04
    (4800, 0x0271, 0x0000, 625),  # 71,02
    (9600, 0x4138, 0x0000, 312.5),  # 38,41
    (19200, 0x809C, 0x0000, 156.25),  # 9C,80 (the note's step-by-step example)
    (38400, 0xC04E, 0x0000, 78.125),  # 4E,C0
    (57692, 0x0034, 0x0000, 52),  # 34,00
    (115384, 0x001A, 0x0000, 26),  # 1A,00
    (230769, 0x000D, 0x0000, 13),  # 0D,00
    (461538, 0x4006, 0x0000, 6.5),  # 06,40
    (923076, 0x8003, 0x0000, 3.25),  # 03,80
    (14406, 0x80D0, 0x0000, 208.25),  # D0,80
    (55944, 0x4035, 0x0001, 53.625),  # 35,40,01,00
]


@pytest.mark.parametrize(("baud", "value", "index", "divisor"), AN232B_05)
def test_ftdi_divisor_matches_an232b05(baud, value, index, divisor):
    setting = ftdi_divisor(baud)
    assert setting.divisor == divisor
    assert setting.request() == (value, index)
    assert abs(setting.actual - baud) < 1  # the note gives whole bauds


def test_ftdi_divisor_special_cases_and_sub_integer_codes():
    # AN232B-05: divisor 0 is 3 Mbaud, 1 is 2 Mbaud; the eighths are encoded
    # 0->000, 1/8->011, 1/4->010, 3/8->100, 1/2->001, 5/8->101, 3/4->110, 7/8->111.
    assert ftdi_divisor(3_000_000).request() == (0, 0)
    assert ftdi_divisor(2_000_000).request() == (1, 0)
    codes = [encode_divisor(16 + k) >> 14 for k in range(8)]
    assert codes == [0b000, 0b011, 0b010, 0b100, 0b001, 0b101, 0b110, 0b111]
    with pytest.raises(ValueError, match="nearest rate it can make is 3000000"):
        ftdi_divisor(2_500_000)  # nothing between 2 and 3 Mbaud
    with pytest.raises(ValueError, match="183"):
        ftdi_divisor(100)  # below 3 MHz / 16383.875


def test_ft232h_uses_the_12_mhz_clock_with_the_hispeed_flag():
    setting = ftdi_divisor(12_000_000, hispeed=True)
    assert setting.hispeed and setting.encoded == 1 << 17
    setting = ftdi_divisor(115200, hispeed=True)
    assert setting.hispeed and setting.base == 12_000_000
    assert setting.divisor == 104.125  # 12 MHz / 104.125 = 115246, closer than 3 MHz / 26
    # libftdi/pyftdi: bits 16-23 in wIndex's high byte, the port index in its low byte
    assert setting.request(1, wide_index=True) == (0xC068, 0x0201)
    low = ftdi_divisor(300, hispeed=True)  # below what 12 MHz can divide to
    assert not low.hispeed and low.divisor == 10000
    with pytest.raises(ValueError):
        ftdi_divisor(4_000_000)  # an FT232R cannot


@pytest.mark.parametrize("baud", [110, 1234, 31250, 76800, 100000, 123456, 250000, 500000])
def test_ftdi_divisor_picks_the_closest_rate(baud):
    if baud < 184:
        with pytest.raises(ValueError):
            ftdi_divisor(baud)
        return
    setting = ftdi_divisor(baud)
    for other in (setting.eighths - 1, setting.eighths + 1):
        if other >= 16:
            assert abs(3_000_000 * 8 / other - baud) >= abs(setting.actual - baud)


def test_cp210x_rates():
    assert cp2102_rate(115200) == 115200
    assert cp2102_rate(200000) == 230400  # AN205 table 1
    assert cp2102_rate(1_000_000) == 921600
    assert cp2102n_rate(1_000_000) == 1_000_000
    assert cp2102n_rate(300) == 300


def test_cdc_line_coding_structure():
    data = line_coding(115200, 7, "E", 2)
    assert data == bytes([0x00, 0xC2, 0x01, 0x00, 2, 2, 7])
    assert parse_line_coding(data) == (115200, 7, "E", 2)


# --- URLs and the choice of driver -------------------------------------------------------------


def test_url_parsing():
    url = UsbUrl.parse("usb://0403:6001?serial=A50285BI&interface=0&chip=FT232R")
    assert (url.vid, url.pid, url.serial, url.interface, url.chip) == (
        0x0403, 0x6001, "A50285BI", 0, "ft232r"
    )  # fmt: skip
    assert str(url) == "usb://0403:6001?serial=A50285BI&interface=0&chip=ft232r"
    assert UsbUrl.parse("usb://?serial=X1").vid is None
    for bad, why in (
        ("usb://", "names no device"),
        ("usb://0403", "VID:PID"),
        ("usb://0403:60019", "16-bit"),
        ("usb://0403:6001?baud=9600", "unknown option"),
        ("usb://0403:6001?interface=x", "must be a number"),
        ("usb://0403:6001?chip=ch999", "unknown chip"),
        ("usb://0403:6001/x", "path"),
    ):
        with pytest.raises(ValueError, match=why):
            UsbUrl.parse(bad)


def test_the_driver_class_follows_the_chip():
    assert serial_class_for_url("usb://0403:6001")[1] is FtdiSerial
    assert serial_class_for_url("usb://0403:6014")[1] is FtdiSerial
    assert serial_class_for_url("usb://10c4:ea60")[1] is Cp210xSerial
    assert serial_class_for_url("usb://2c7c:0125")[1] is CdcAcmSerial  # modem profile
    assert serial_class_for_url("usb://1234:5678?chip=cdc_acm")[1] is CdcAcmSerial
    assert serial_class_for_url("usb://1234:5678")[1] is UsbSerial  # decided at open
    with pytest.raises(ValueError, match="kernel's tty"):
        serial_class_for_url("usb://1a86:7523")  # CH340: no user-space driver


def test_reopen_needs_a_serial_number():
    assert usb_url("A50285BI") == "usb://?serial=A50285BI"
    assert usb_url(FT232R) == FT232R
    with pytest.raises(ConfigError, match="serial"):
        usb_url("usb://0403:6001")


# --- the virtual bus ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def bus() -> Iterator[VirtualBus]:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(ENV_VAR, "virtual:ft232r,cp2102,cdc_modem,ft232h")
        reset_env_bus()
        built = env_bus()
        assert built is not None
        try:
            yield built
        finally:
            reset_env_bus()


@pytest.fixture(autouse=True)
def _plugged(request: pytest.FixtureRequest) -> Iterator[None]:
    """Every model plugged in and accessible at the start of each bus test."""
    if "bus" not in request.fixturenames:
        yield
        return
    the_bus: VirtualBus = request.getfixturevalue("bus")
    for model in the_bus.models():
        model.access_denied = False
        if not model.plugged:
            the_bus.plug(model)
    yield
    for model in the_bus.models():
        model.access_denied = False


def far_port(bus: VirtualBus, name: str, settings: str = "115200") -> Port:
    return Port(bus[name].wire().b.pty, settings, timeout=2, discard_input=True)


def read_all(s: Any, size: int) -> bytes:
    """``size`` bytes from a pyserial port, read as they come (a stall fails)."""
    got = bytearray()
    while len(got) < size:
        chunk = s.read(size - len(got))
        assert chunk, f"stalled after {len(got)} bytes"
        got += chunk
    return bytes(got)


def wait_for(predicate: Any, timeout: float = 2.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


# --- open, data, settings, lines -----------------------------------------------------------------


@pytest.mark.parametrize(("url", "name", "cls"), [(FT232R, "ft232r", FtdiSerial),
                                                   (FT232H, "ft232h", FtdiSerial),
                                                   (CP2102, "cp2102", Cp210xSerial)])  # fmt: skip
def test_pyserial_opens_the_adapter_and_data_crosses_the_wire(bus, url, name, cls):
    with (
        serial.serial_for_url(url, baudrate=115200, timeout=2) as s,
        far_port(bus, name) as far,
    ):
        assert type(s) is cls
        assert s.serial_number == url.rsplit("=", 1)[1]
        assert s.device_node.startswith("/dev/bus/usb/250/")
        s.write(b"hello far end\n")
        assert far.read_until(b"\n") == b"hello far end\n"
        payload = bytes(range(256)) * 8  # more than one bulk packet, and the chip's buffer
        far.write(payload)
        got = read_all(s, len(payload))
        assert got == payload


def test_a_url_without_an_id_finds_its_driver_at_open(bus):
    with serial.serial_for_url("usb://?serial=0001", baudrate=9600) as s:
        assert type(s) is Cp210xSerial and s.chip == "cp2102"
    with serial.serial_for_url("usb://?serial=EC25VIRT0001") as s:
        assert type(s) is CdcAcmSerial and s.comm_interface == 2


def test_the_kernel_driver_is_detached_while_open_and_given_back_on_close(bus):
    def bound() -> bool:
        dev = usb.core.find(idVendor=0x0403, idProduct=0x6001, backend=bus.backend)
        try:
            return bool(dev.is_kernel_driver_active(0))
        finally:
            usb.util.dispose_resources(dev)

    assert bound()
    with serial.serial_for_url(FT232R) as s:
        assert s.is_open
        assert not bound()
    assert bound()


def test_ftdi_baud_rates_reach_the_chip_as_the_model_decodes_them(bus):
    model = bus["ft232r"]
    with serial.serial_for_url(FT232R, baudrate=9600) as s:
        assert model.divisor == (0x4138, 0) and model.baudrate == 9600
        for rate in (115200, 250000, 31250, 123456, 1_000_000, 3_000_000, 2_000_000):
            s.baudrate = rate
            setting = s.baud_setting
            assert model.divisor == setting.request()
            # the model's rate (3 MHz / the divisor it decoded) is the rate the
            # driver reports, and within half a divisor step of the request
            assert model.baudrate == s.actual_baudrate
            step = 1 / (8 * setting.divisor) if setting.eighths > 12 else 0
            assert abs(model.baudrate - rate) / rate <= step / 2 + 1e-4
            assert model.settings.baudrate == model.baudrate  # the UART on the wire
        with pytest.raises(ValueError, match="2500000"):
            s.baudrate = 2_500_000


def test_ft232h_rates_up_to_12_mbaud_reach_the_chip_through_its_wide_index(bus):
    # The hi-speed chip takes bits 16+ of the divisor in wIndex's high byte, and
    # bit 17 picks its 12 MHz clock: the model decodes what the driver sends.
    model = bus["ft232h"]
    with serial.serial_for_url(FT232H, baudrate=9600) as s:
        assert s.chip == "ft232h" and model.baudrate == 9600
        for rate in (115200, 921600, 3_000_000, 4_000_000, 6_000_000, 8_000_000, 12_000_000, 300):
            s.baudrate = rate
            setting = s.baud_setting
            assert model.divisor == setting.request(1, wide_index=True)
            assert model.baudrate == s.actual_baudrate
            assert abs(model.baudrate - rate) / rate < 0.01, rate
            assert model.settings.baudrate == model.baudrate
        assert s.baud_setting.base == 3_000_000  # 300 baud is below what 12 MHz divides to
    # the same 12 Mbaud request on the FT232R is refused (its clock is 3 MHz)
    with serial.serial_for_url(FT232R) as s, pytest.raises(ValueError):
        s.baudrate = 12_000_000


@pytest.mark.parametrize(
    ("url", "name", "packet"), [(FT232R, "ft232r", 64), (FT232H, "ft232h", 512)]
)
def test_ftdi_bulk_packets_are_the_chips_size(bus, monkeypatch, url, name, packet):
    model = bus[name]
    sizes: list[int] = []
    ready = type(model)._packet_ready

    def recording(self: Any, now: float) -> bytes | None:
        out = ready(self, now)
        if out is not None:
            sizes.append(len(out))
        return out

    monkeypatch.setattr(type(model), "_packet_ready", recording)
    payload = bytes(range(256)) * 4  # the FT232H's whole 1 KiB receive buffer
    with (
        serial.serial_for_url(url, baudrate=3_000_000, timeout=2) as s,
        far_port(bus, name, "3000000") as far,
    ):
        far.write(payload)
        got = read_all(s, len(payload))
    assert got == payload
    assert max(sizes) == packet  # full packets: 2 status bytes and packet - 2 of data


def test_ftdi_framing_flow_latency_and_break(bus):
    model = bus["ft232r"]
    with serial.serial_for_url(FT232R, baudrate=19200, bytesize=7, parity="E", stopbits=2) as s:
        assert (model.settings.bytesize, model.settings.parity, model.settings.stopbits) == (
            7, Parity.EVEN, StopBits.TWO
        )  # fmt: skip
        s.rtscts = True
        assert model.settings.flow.value == "rtscts"
        s.rtscts = False
        s.xonxoff = True
        assert model.settings.flow.value == "xonxoff"
        s.latency_timer = 2
        assert s.latency_timer == 2 and model.latency_ms == 2
        with pytest.raises(ValueError, match="7 or 8"):
            s.bytesize = 5
        assert s.bytesize == 7 and model.settings.bytesize == 7
        with pytest.raises(ValueError, match="1 or 2 stop bits"):
            s.stopbits = 1.5
        s.break_condition = True
        assert model.break_on
        s.break_condition = False
        assert not model.break_on


def test_cp2102_baud_rates_and_framing(bus):
    model = bus["cp2102"]
    with serial.serial_for_url(CP2102, baudrate=115200, bytesize=6, stopbits=2) as s:
        assert model.enabled
        assert s.baudrate_on_chip() == 115200 and model.baudrate == 115200
        assert model.settings.bytesize == 6 and model.settings.stopbits is StopBits.TWO
        s.bytesize, s.stopbits, s.parity = 8, 1, "O"
        assert (model.settings.bytesize, model.settings.parity) == (8, Parity.ODD)
        for rate in (9600, 57600, 230400, 921600, 14400):
            s.baudrate = rate
            assert model.requested_baud == rate
            assert model.baudrate == s.actual_baudrate == cp2102_rate(rate)
        for rate in (200_000, 1_000_000):  # AN205 would run these 15 % and 8 % off
            with pytest.raises(ValueError, match=r"cannot run at|runs at"):
                s.baudrate = rate
        with pytest.raises(ValueError, match="5 data bits"):
            s.stopbits = 1.5
        assert s.stopbits == 1  # a refused setting leaves the last good one
        s.rtscts = True
        assert model.settings.flow.value == "rtscts"
    assert not model.enabled  # IFC_ENABLE 0 on close


@pytest.mark.parametrize(("url", "name"), [(FT232R, "ft232r"), (CP2102, "cp2102")])
def test_lines_both_ways(bus, url, name):
    wire = bus[name].wire()
    with serial.serial_for_url(url, baudrate=115200) as s, far_port(bus, name) as far:
        s.rts, s.dtr = True, False
        far.wait_lines(cts=True, dsr=False, dcd=False)
        s.dtr = True
        far.wait_lines(cts=True, dsr=True, dcd=True)
        s.rts = False
        far.wait_lines(cts=False)
        for rts, dtr in ((True, False), (False, True), (True, True), (False, False)):
            far.set_lines(rts=rts, dtr=dtr)
            wait_for(lambda: (s.cts, s.dsr, s.cd) == (rts, dtr, dtr))  # noqa: B023
        wire.a.drive("ri", True)
        wait_for(lambda: s.ri)
        wire.a.drive("ri", None)
        wait_for(lambda: not s.ri)


def test_breaks_from_the_far_end_are_counted_not_lost(bus):
    with serial.serial_for_url(FT232R, baudrate=115200) as s, far_port(bus, "ft232r") as far:
        far.send_break(0.05)
        wait_for(lambda: s.line_errors.breaks >= 1)
    with serial.serial_for_url(CP2102, baudrate=115200) as s, far_port(bus, "cp2102") as far:
        far.send_break(0.05)
        wait_for(lambda: s.line_errors.breaks >= 1)


def test_reads_honour_timeouts_and_the_buffer_bound(bus):
    with serial.serial_for_url(FT232R, baudrate=115200, timeout=0.2) as s:
        start = time.monotonic()
        assert s.read(10) == b""
        assert 0.15 <= time.monotonic() - start < 1.0
        s.timeout = 0
        assert s.read(10) == b""
        s.max_buffer = 128
        with far_port(bus, "ft232r") as far:
            payload = bytes(i & 0xFF for i in range(3000))
            writer = threading.Thread(target=far.write, args=(payload,), kwargs={"timeout": 10})
            writer.start()
            time.sleep(0.3)
            assert s.in_waiting <= 128 + 512  # the bound plus one transfer
            s.timeout = 2
            got = bytearray()
            while len(got) < len(payload):
                chunk = s.read(256)
                assert chunk
                got += chunk
            writer.join()
        assert bytes(got) == payload  # back-pressure, nothing dropped


# --- the modem: CDC-ACM requests on the AT interface --------------------------------------------


def test_the_modem_opens_on_its_at_interface_and_answers(bus):
    with serial.serial_for_url(MODEM, baudrate=115200, timeout=2) as s:
        assert type(s) is CdcAcmSerial
        assert s.comm_interface == s.data_interface == 2  # role "at" in quectel_ec25.toml
        s.write(b"AT\r")
        answer = s.read_until(b"OK\r\n")
        assert answer.endswith(b"OK\r\n"), answer
        s.write(b"ATI\r")
        assert b"EC25" in s.read_until(b"OK\r\n")
        assert s.line_coding_on_device() == (115200, 8, "N", 1)
        s.baudrate = 57600
        assert s.line_coding_on_device()[0] == 57600 == s.actual_baudrate
        assert s.cts  # CDC-ACM has no CTS: always True
        wait_for(lambda: s.dsr)  # the modem holds DSR (&S0), carrier off in command mode
        assert not s.cd
        s.break_condition = True
        s.break_condition = False


def test_the_modem_ppp_port_is_another_interface(bus):
    with serial.serial_for_url(f"{MODEM}&interface=3", timeout=2) as s:
        assert s.comm_interface == 3
        s.write(b"AT\r")
        assert s.read_until(b"OK\r\n").endswith(b"OK\r\n")


def test_a_serialhs_port_drives_each_device(bus):
    with Port(FT232R, "57600 8N1", timeout=2) as port, far_port(bus, "ft232r", "57600") as far:
        assert port.lines_supported
        port.write(b"via Port\n")
        assert far.read_until(b"\n") == b"via Port\n"
        far.write(b"back\n")
        assert port.read_until(b"\n") == b"back\n"
        port.set_lines(rts=True, dtr=True)
        far.wait_lines(cts=True, dsr=True)
        far.set_rts(True)
        port.wait_lines(cts=True)
        port.reconfigure(baudrate=38400)
        assert bus["ft232r"].baudrate == 38400
        with pytest.raises(ConfigError):
            port.reconfigure(baudrate=2_500_000)
        assert port.settings.baudrate == 38400
    with pytest.raises(ConfigError, match="nearest rate"):
        Port(FT232R, "2500000").open()
    with Port(CP2102, "9600", timeout=2) as port, far_port(bus, "cp2102", "9600") as far:
        far.set_lines(dtr=True)
        port.wait_lines(dsr=True, dcd=True)
    with Port(MODEM, timeout=2) as port:
        port.write(b"AT\r")
        assert port.read_until(b"OK\r\n").endswith(b"OK\r\n")
        with pytest.raises(ReadTimeout):
            port.read_exactly(1, timeout=0.1)


# --- errors: unplug, permission, absence ----------------------------------------------------------


def test_unplug_mid_transfer_is_a_clear_error_and_keeps_what_arrived(bus):
    model = bus["ft232r"]
    with Port(FT232R, "115200", timeout=2) as port, far_port(bus, "ft232r") as far:
        outcome: dict[str, BaseException] = {}

        def reader() -> None:
            try:
                port.read_exactly(100, timeout=5)
            except BaseException as e:
                outcome["error"] = e

        thread = threading.Thread(target=reader)
        thread.start()
        far.write(b"before the cut")  # 14 of the 100 bytes the reader waits for
        time.sleep(0.3)
        bus.unplug(model)  # while the read is in progress
        thread.join(5)
        error = outcome.get("error")
        assert isinstance(error, PortDisconnectedError), error
        assert error.partial == b"before the cut"
        assert "disconnected" in str(error)
        assert error.hint and "reopen" in error.hint
        with pytest.raises(PortDisconnectedError):
            port.write(b"more")
        with pytest.raises(PortDisconnectedError):
            port.lines()
    # pyserial users get a SerialException with errno ENODEV
    with serial.serial_for_url(CP2102, timeout=1) as s:
        writer_error: dict[str, BaseException] = {}

        def writer() -> None:
            try:
                while True:
                    s.write(bytes(4096))
            except BaseException as e:
                writer_error["error"] = e

        thread = threading.Thread(target=writer)
        thread.start()
        time.sleep(0.2)
        bus.unplug(bus["cp2102"])
        thread.join(5)
        assert isinstance(writer_error.get("error"), serial.SerialException)
        assert writer_error["error"].errno == errno.ENODEV
        with pytest.raises(serial.SerialException) as raw:
            s.read(1)
        assert raw.value.errno == errno.ENODEV


def test_reopen_by_serial_number_after_replug(bus):
    model = bus["ft232r"]
    first = serial.serial_for_url(FT232R)
    old_node = first.device_node
    bus.unplug(model)
    first.close()  # closing a vanished device is quiet
    timer = threading.Timer(0.3, bus.plug, args=(model,))
    timer.start()
    try:
        s = reopen("A50285BI", attempts=40, delay=0.05, baudrate=115200, timeout=2)
    finally:
        timer.join()
    with s, far_port(bus, "ft232r") as far:
        assert s.device_node != old_node  # a new address, as after a real re-enumeration
        s.write(b"back again\n")
        assert far.read_until(b"\n") == b"back again\n"
    with reopen_port(FT232R, "115200", attempts=2, delay=0.01) as port:
        assert port.is_open


def test_reopen_gives_up_with_a_clear_error(bus):
    model = bus["cp2102"]
    bus.unplug(model)
    start = time.monotonic()
    with pytest.raises(PortNotFoundError, match="did not come back: 3 attempts") as caught:
        reopen(CP2102, attempts=3, delay=0.05)
    assert time.monotonic() - start < 2
    assert caught.value.port == CP2102
    with pytest.raises(PortNotFoundError):
        reopen_port("0001", attempts=2, delay=0.01)


def test_no_such_device(bus):
    with pytest.raises(serial.SerialException) as caught:
        serial.serial_for_url("usb://0403:6001?serial=NOPE")
    assert caught.value.errno == errno.ENOENT
    assert "A50285BI" in str(caught.value)  # says what is present
    with pytest.raises(PortNotFoundError):
        Port("usb://0403:6015").open()


def test_permission_denied_names_the_node_and_the_udev_rule(bus):
    model = bus["ft232r"]
    model.access_denied = True
    for url in (FT232R, "usb://0403:6001"):
        with pytest.raises(PortPermissionError) as caught:
            serial.serial_for_url(url)
        text = str(caught.value)
        assert f"/dev/bus/usb/250/{model.address:03d}" in text
        assert "serialhs udev-rules" in text
    with pytest.raises(PortPermissionError):
        Port(FT232R).open()


def test_a_device_without_a_user_space_driver_is_refused(bus):
    with pytest.raises(ConfigError, match="kernel's tty"):
        Port("usb://1a86:7523").open()


# --- real hardware ----------------------------------------------------------------------------


@pytest.mark.hardware
def test_real_usb_adapter(hardware_port, hardware_baud):
    """With --port usb://VID:PID?serial=...: open the adapter in user space, set
    the rate, read the lines, toggle RTS/DTR, and (with TX wired to RX) loop
    bytes back."""
    if not hardware_port.startswith("usb://"):
        pytest.skip("give a usb:// URL with --port to test the user-space drivers")
    with Port(hardware_port, SerialSettings(hardware_baud), timeout=2) as port:
        instance = port.serial
        assert isinstance(instance, UsbSerial)
        assert instance.actual_baudrate is not None
        assert abs(instance.actual_baudrate - hardware_baud) <= 0.03 * hardware_baud
        port.lines()
        port.set_lines(rts=True, dtr=True)
        port.set_lines(rts=False, dtr=False)
        port.write(b"serialhs loopback\n")
        try:
            echoed = port.read_until(b"\n", timeout=1)
        except ReadTimeout:
            pytest.skip("no loopback on the adapter (wire TX to RX to test data)")
        assert echoed == b"serialhs loopback\n"
