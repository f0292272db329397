"""The virtual USB backend and its device models, through pyusb's public API only."""

from __future__ import annotations

import contextlib
import errno
import struct
import threading
import time
from fractions import Fraction

import pytest
import usb.core
import usb.util

from serialhs.driver.port import Port
from serialhs.driver.settings import Parity, SerialSettings, StopBits
from serialhs.errors import ConfigError, ProfileError
from serialhs.usb import virtual
from serialhs.usb.models import (
    available_models,
    cp2102_rate,
    create_model,
    ftdi_divisor,
    ftdi_rate,
    load_device_spec,
)

pytestmark = pytest.mark.timeout(60)

ENV = "virtual:ft232r,cp2102,cdc_modem"
FTDI = (0x0403, 0x6001)
CP2102 = (0x10C4, 0xEA60)
EC25 = (0x2C7C, 0x0125)


@pytest.fixture
def env_bus(monkeypatch):
    """SERIALHS_USB=virtual:ft232r,cp2102,cdc_modem, with a fresh process-wide bus."""
    monkeypatch.setenv("SERIALHS_USB", ENV)
    virtual.reset_env_bus()
    backend = virtual.get_backend()
    bus = virtual.env_bus()
    assert bus is not None and backend is bus.backend
    yield bus
    virtual.reset_env_bus()


@pytest.fixture
def local_bus():
    bus = virtual.VirtualBus()
    yield bus
    bus.close()


def find(bus, ids, **match):
    dev = usb.core.find(idVendor=ids[0], idProduct=ids[1], backend=bus.backend, **match)
    assert dev is not None, f"{ids} not found"
    return dev


def take(dev, interface=0):
    """Detach the kernel driver, as a user-space driver must first."""
    if dev.is_kernel_driver_active(interface):
        dev.detach_kernel_driver(interface)
    usb.util.claim_interface(dev, interface)


@pytest.fixture
def far_port():
    opened = []

    def open_far(end, settings):
        port = Port(end.pty, settings, timeout=1.0).open()
        opened.append(port)
        return port

    yield open_far
    for port in opened:
        port.close()


def read_until(dev, ep, want: bytes, *, size=512, strip_ftdi=False, timeout=2.0):
    """Read bulk IN until ``want`` arrives (every read has a timeout)."""
    got = bytearray()
    deadline = time.monotonic() + timeout
    while want not in got and time.monotonic() < deadline:
        try:
            data = bytes(dev.read(ep, size, 100))
        except usb.core.USBTimeoutError:
            continue
        if strip_ftdi:
            for start in range(0, len(data), 64):
                got += data[start + 2 : start + 64]
        else:
            got += data
    return bytes(got)


def wait_for(predicate, timeout=2.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.01)
    return predicate()


# -- enumeration and descriptors -----------------------------------------------------------


def test_find_lists_the_three_devices_with_their_descriptors_and_strings(env_bus):
    devices = list(usb.core.find(find_all=True, backend=virtual.get_backend()))
    assert [(d.idVendor, d.idProduct) for d in devices] == [FTDI, CP2102, EC25]
    ftdi, cp, ec25 = devices

    assert usb.util.get_string(ftdi, ftdi.iManufacturer) == "FTDI"
    assert usb.util.get_string(ftdi, ftdi.iProduct) == "FT232R USB UART"
    assert usb.util.get_string(ftdi, ftdi.iSerialNumber) == "A50285BI"
    assert ftdi.bcdDevice == 0x0600 and ftdi.bMaxPacketSize0 == 8
    assert ftdi.langids == (0x0409,)
    assert ftdi.bus == virtual.VIRTUAL_BUS_NUMBER and ftdi.port_numbers == (1,)

    assert (cp.manufacturer, cp.product, cp.serial_number) == (
        "Silicon Labs",
        "CP2102 USB to UART Bridge Controller",
        "0001",
    )
    assert (ec25.manufacturer, ec25.product) == ("Quectel", "EC25")

    (intf,) = ftdi[0].interfaces()
    assert (intf.bInterfaceClass, intf.bInterfaceSubClass, intf.bInterfaceProtocol) == (
        0xFF,
        0xFF,
        0xFF,
    )
    assert [(ep.bEndpointAddress, ep.bmAttributes, ep.wMaxPacketSize) for ep in intf] == [
        (0x81, 2, 64),
        (0x02, 2, 64),
    ]

    ec_interfaces = ec25[0].interfaces()
    assert [i.bInterfaceNumber for i in ec_interfaces] == [0, 1, 2, 3, 4]
    at = ec_interfaces[2]
    assert [ep.bEndpointAddress for ep in at] == [0x85, 0x84, 0x03]
    # CDC header, call management, ACM (line coding, serial state, break) and union
    functional = ["0524001001", "0524010002", "04240206", "0524060202"]
    assert bytes(at.extra_descriptors) == bytes.fromhex("".join(functional))


def test_raw_descriptors_over_the_control_pipe_match_the_parsed_ones(env_bus):
    dev = find(env_bus, FTDI)
    raw = bytes(dev.ctrl_transfer(0x80, 0x06, 0x0100, 0, 18))
    assert raw[0] == 18 and raw[1] == 1
    assert struct.unpack_from("<HH", raw, 8) == FTDI
    config = bytes(dev.ctrl_transfer(0x80, 0x06, 0x0200, 0, 255))
    assert len(config) == struct.unpack_from("<H", config, 2)[0] == 9 + 9 + 7 + 7
    strings = bytes(dev.ctrl_transfer(0x80, 0x06, 0x0300, 0, 255))
    assert strings == b"\x04\x03\x09\x04"
    assert bytes(dev.ctrl_transfer(0x80, 0x08, 0, 0, 1)) == b"\x01"  # GET_CONFIGURATION
    with pytest.raises(usb.core.USBError) as caught:  # no string 9: a stall
        dev.ctrl_transfer(0x80, 0x06, 0x0309, 0x0409, 255)
    assert caught.value.errno == errno.EPIPE
    assert caught.value.backend_error_code == virtual.LIBUSB_ERROR_PIPE


def test_shipped_descriptor_files_load_and_fit_their_profiles():
    names = available_models()
    assert {"ft232r", "ft232h", "cp2102", "cdc_modem", "cdc_acm"} <= set(names)
    for name in names:
        spec = load_device_spec(name)
        assert spec.name == name
    assert load_device_spec("cdc_modem").modem == "quectel_ec25"


def test_a_bad_descriptor_file_names_the_file(tmp_path):
    path = tmp_path / "usb" / "mine.toml"
    path.parent.mkdir()
    path.write_text(
        '[usb]\ndescription = "x"\nemulation = "ft232r"\nvid = 0x0403\npid = 0x6001\n'
        'colour = "blue"\n\n[[usb.interface]]\nnumber = 0\nclass = 0xff\nsubclass = 0xff\n'
        "protocol = 0xff\nendpoints = []\n"
    )
    with pytest.raises(ProfileError, match=r"mine\.toml:6: unknown key 'colour'"):
        load_device_spec(path)
    path.write_text(
        '[usb]\ndescription = "x"\nemulation = "ft232r"\nvid = 0x0403\npid = 0x6001\n\n'
        "[[usb.interface]]\nnumber = 0\nclass = 0xff\nsubclass = 0xff\nprotocol = 0xff\n"
        'uart = "wire"\nendpoints = [{ address = 0x81, type = "bulk", max_packet_size = 64 }]\n'
    )
    with pytest.raises(ProfileError, match="lacks a bulk IN and a bulk OUT"):
        load_device_spec(path)
    with pytest.raises(ConfigError, match="no virtual USB device model 'ft232x'"):
        load_device_spec("ft232x")


# -- FT232R ----------------------------------------------------------------------------------

# Worked examples from FTDI AN232B-05, "Configuring FT232R, FT2232 and FT232B Baud
# Rates": (wValue, wIndex) of SET_BAUD_RATE -> divisor -> rate. Bits 0-13 are the
# integer divisor, bits 14-16 (bit 16 = bit 0 of wIndex) the sub-integer code
# 000 0, 001 0.5, 010 0.25, 011 0.125, 100 0.375, 101 0.625, 110 0.75, 111 0.875.
AN232B_05 = [
    # the aliasing section's standard entries ("10,27,00,00 => divisor = 10000, rate = 300", ...)
    (0x2710, 0x0000, Fraction(10000), 300),
    (0x1388, 0x0000, Fraction(5000), 600),
    (0x09C4, 0x0000, Fraction(2500), 1200),
    (0x04E2, 0x0000, Fraction(1250), 2400),
    (0x0271, 0x0000, Fraction(625), 4800),
    (0x4138, 0x0000, Fraction(625, 2), 9600),  # 312.5
    (0x809C, 0x0000, Fraction(625, 4), 19200),  # "9c,80 -> 156.25 -> 19,200 baud"
    (0x0034, 0x0000, Fraction(52), 57692),
    (0x001A, 0x0000, Fraction(26), 115385),  # 115,384.6
    (0x000D, 0x0000, Fraction(13), 230769),
    (0x4006, 0x0000, Fraction(13, 2), 461538),  # 6.5
    (0x8003, 0x0000, Fraction(13, 4), 923077),  # 3.25 -> 923,076.9
    (0x80D0, 0x0000, Fraction(833, 4), 14406),  # "D0,80 => divisor = 208.25, rate = 14406"
    # "35,40,01,00 => 00014035 Hex ... 53.625 ... 3000000/53.625 = 55944 baud"
    (0x4035, 0x0001, Fraction(429, 8), 55944),
    # "A non-standard Baud rate of 490000 ... closest achievable divisor is 6.125,
    # which gives a baud rate of 489795.9" (6 + 0.125: code 011)
    (0xC006, 0x0000, Fraction(49, 8), 489796),
]


@pytest.mark.parametrize(("value", "index", "divisor", "rate"), AN232B_05)
def test_ftdi_divisor_decoding_follows_an232b_05(value, index, divisor, rate):
    assert ftdi_divisor(value, index) == divisor
    assert round(ftdi_rate(value, index)) == rate


def test_ftdi_special_divisors_and_forbidden_ones():
    # AN232B-05: "A divisor of 0 will give 3 MBaud, and a divisor of 1 will give
    # 2 MBaud. Sub-integer divisors between 0 and 2 are not allowed."
    assert ftdi_rate(0, 0) == 3_000_000
    assert ftdi_rate(1, 0) == 2_000_000
    with pytest.raises(ValueError, match="not allowed"):
        ftdi_divisor(0x4001, 0)  # 1.5


def test_ft232r_runs_its_uart_at_the_decoded_rate(env_bus):
    dev = find(env_bus, FTDI)
    model = env_bus["ft232r"]
    for value, index, _, rate in (AN232B_05[8], AN232B_05[13], (0, 0, 0, 3_000_000)):
        dev.ctrl_transfer(0x40, 0x03, value, index)
        assert model.baudrate == rate
        assert wait_for(lambda: model.wire().a.settings().baudrate == rate)  # noqa: B023
    with pytest.raises(usb.core.USBError) as caught:
        dev.ctrl_transfer(0x40, 0x03, 0x4001, 0)  # divisor 1.5 is refused
    assert caught.value.errno == errno.EPIPE
    # SET_DATA: 7 data bits, even parity, 2 stop bits
    dev.ctrl_transfer(0x40, 0x04, 7 | (2 << 8) | (2 << 11), 0)
    settings = model.settings
    assert (settings.bytesize, settings.parity, settings.stopbits) == (7, Parity.EVEN, StopBits.TWO)
    dev.ctrl_transfer(0x40, 0x09, 2, 0)
    assert bytes(dev.ctrl_transfer(0xC0, 0x0A, 0, 0, 1)) == b"\x02"


def test_ft232r_bulk_out_reaches_the_far_end_and_far_data_follows_two_status_bytes(
    env_bus, far_port
):
    dev = find(env_bus, FTDI)
    take(dev)
    model = env_bus["ft232r"]
    dev.ctrl_transfer(0x40, 0x03, 0x001A, 0)  # 115200 (26)
    far = far_port(model.far_end(), SerialSettings(115200))

    assert dev.write(0x02, b"hello over usb\r\n", 1000) == 16
    assert far.read_until(b"\n", timeout=2) == b"hello over usb\r\n"

    far.write(b"and back")
    got = read_until(dev, 0x81, b"and back", size=64, strip_ftdi=True)
    assert got.endswith(b"and back")

    # A status-only packet when idle, after the latency timer: [modem, line status]
    dev.ctrl_transfer(0x40, 0x09, 1, 0)  # 1 ms
    idle = bytes(dev.read(0x81, 64, 500))
    assert len(idle) == 2
    assert idle[1] & 0x60 == 0x60  # THRE, TEMT


def test_ft232r_packets_are_split_every_62_data_bytes(env_bus, far_port):
    dev = find(env_bus, FTDI)
    take(dev)
    model = env_bus["ft232r"]
    dev.ctrl_transfer(0x40, 0x03, 0x001A, 0)
    far = far_port(model.far_end(), SerialSettings(115200))
    payload = bytes(range(200))
    far.write(payload)
    far.drain(timeout=2)
    assert wait_for(lambda: len(model._rx) >= 62)
    data = bytes(dev.read(0x81, 512, 1000))
    assert len(data) >= 64
    assert data[64 * 0 + 2 : 64] == payload[:62]  # a full packet: 2 + 62
    with pytest.raises(usb.core.USBError) as caught:  # a 64-byte packet in a 16-byte buffer
        far.write(payload[:100])
        far.drain(timeout=2)
        wait_for(lambda: len(model._rx) >= 62)
        dev.read(0x81, 16, 1000)
    assert caught.value.backend_error_code == virtual.LIBUSB_ERROR_OVERFLOW


def test_ft232r_modem_lines_and_status_byte(env_bus, far_port):
    dev = find(env_bus, FTDI)
    model = env_bus["ft232r"]
    far = far_port(model.far_end(), SerialSettings(9600))
    # MODEM_CTRL: DTR and RTS on (value bits with the enable mask bits 0x0100/0x0200)
    dev.ctrl_transfer(0x40, 0x01, 0x0303, 0)
    assert far.wait_lines(cts=True, dsr=True, dcd=True, timeout=2)
    dev.ctrl_transfer(0x40, 0x01, 0x0200, 0)  # RTS off, DTR untouched
    assert far.wait_lines(cts=False, dsr=True, timeout=2)

    def status() -> int:
        return bytes(dev.ctrl_transfer(0xC0, 0x05, 0, 0, 2))[0]

    far.set_lines(rts=True, dtr=True)  # null modem: -> our CTS, DSR and DCD
    assert wait_for(lambda: status() & 0xF0 == 0x10 | 0x20 | 0x80)
    model.wire().a.drive("ri", True)  # an emulated device rings
    assert wait_for(lambda: status() & 0x40)
    far.set_dtr(False)
    model.wire().a.drive("dcd", False)
    assert wait_for(lambda: status() & 0xF0 == 0x10 | 0x40)
    # The change also shows in the status bytes of the next bulk IN packet
    take(dev)
    packet = bytes(dev.read(0x81, 64, 500))
    assert packet[0] & 0xF0 == 0x10 | 0x40


def test_ft232r_reports_a_break_from_the_far_end(env_bus, far_port):
    dev = find(env_bus, FTDI)
    take(dev)
    model = env_bus["ft232r"]
    dev.ctrl_transfer(0x40, 0x03, 0x001A, 0)
    far = far_port(model.far_end(), SerialSettings(115200))
    far.send_break(0.01)
    seen = 0
    deadline = time.monotonic() + 2
    while not seen & 0x10 and time.monotonic() < deadline:
        with contextlib.suppress(usb.core.USBTimeoutError):
            seen |= bytes(dev.read(0x81, 64, 100))[1]
    assert seen & 0x10, "BI never set"


# -- CP2102 ------------------------------------------------------------------------------------

# Silicon Labs AN205 "CP210x Baud Rate Support", table 1 (CP2101/2/3/9 default
# configuration): a requested rate runs at the rate of the range it falls in.
AN205 = [
    (300, 300),
    (600, 600),
    (4800, 4800),
    (4803, 4800),
    (4804, 7200),
    (9600, 9600),
    (9612, 9600),
    (9613, 14400),
    (57600, 57600),
    (58054, 64000),
    (115200, 115200),
    (117028, 115200),
    (117029, 128000),
    (200000, 230400),
    (460800, 460800),
    (491521, 500000),
    (921600, 921600),
    (1_000_000, 921600),
]


@pytest.mark.parametrize(("requested", "actual"), AN205)
def test_cp2102_aliases_rates_per_an205(requested, actual):
    assert cp2102_rate(requested) == actual


def test_cp2102_requests_baud_line_control_and_modem_status(env_bus, far_port):
    dev = find(env_bus, CP2102)
    take(dev)
    model = env_bus["cp2102"]
    dev.ctrl_transfer(0x41, 0x00, 0x0001, 0)  # IFC_ENABLE
    dev.ctrl_transfer(0x41, 0x1E, 0, 0, struct.pack("<I", 200000))  # SET_BAUDRATE
    assert model.baudrate == 230400
    assert wait_for(lambda: model.wire().a.settings().baudrate == 230400)
    assert struct.unpack("<I", bytes(dev.ctrl_transfer(0xC1, 0x1D, 0, 0, 4))) == (200000,)
    dev.ctrl_transfer(0x41, 0x03, 0x0800 | 0x0020 | 0x0002, 0)  # 8 data, even, 2 stop
    assert bytes(dev.ctrl_transfer(0xC1, 0x04, 0, 0, 2)) == struct.pack("<H", 0x0822)
    assert model.settings.parity is Parity.EVEN and model.settings.stopbits is StopBits.TWO
    dev.ctrl_transfer(0x41, 0x03, 0x0800, 0)

    far = far_port(model.far_end(), SerialSettings(230400))
    dev.ctrl_transfer(0x41, 0x07, 0x0303, 0)  # SET_MHS: DTR, RTS on
    assert far.wait_lines(cts=True, dsr=True, dcd=True, timeout=2)

    def mdmsts() -> int:
        return bytes(dev.ctrl_transfer(0xC1, 0x08, 0, 0, 1))[0]

    assert wait_for(lambda: mdmsts() == 0x01 | 0x02 | 0x10 | 0x20 | 0x80)
    far.set_dtr(False)
    model.wire().a.drive("ri", True)
    assert wait_for(lambda: mdmsts() == 0x01 | 0x02 | 0x10 | 0x40)
    assert bytes(dev.ctrl_transfer(0xC0, 0xFF, 0x370B, 0, 1)) == b"\x02"  # GET_PARTNUM

    assert dev.write(0x01, b"ping\n", 1000) == 5
    assert far.read_until(b"\n", timeout=2) == b"ping\n"
    far.write(b"pong")
    assert read_until(dev, 0x81, b"pong", size=64) == b"pong"


def test_cp2102_disabled_interface_passes_no_data_and_reads_time_out(env_bus, far_port):
    dev = find(env_bus, CP2102)
    take(dev)
    model = env_bus["cp2102"]
    far = far_port(model.far_end(), SerialSettings(9600))
    far.write(b"lost")
    far.drain(timeout=2)
    with pytest.raises(usb.core.USBTimeoutError) as caught:
        dev.read(0x81, 64, 150)
    assert caught.value.errno == errno.ETIMEDOUT
    assert caught.value.backend_error_code == virtual.LIBUSB_ERROR_TIMEOUT


def test_cp2102_embedded_events_carry_the_escape_byte_and_modem_changes(env_bus, far_port):
    dev = find(env_bus, CP2102)
    take(dev)
    model = env_bus["cp2102"]
    dev.ctrl_transfer(0x41, 0x00, 1, 0)
    dev.ctrl_transfer(0x41, 0x15, 0xEC, 0)  # EMBED_EVENTS with Linux's escape byte
    far = far_port(model.far_end(), SerialSettings(9600))
    far.write(b"a\xecb")
    assert read_until(dev, 0x81, b"b", size=64).endswith(b"a\xec\x00b")
    model.wire().a.drive("ri", True)
    events = read_until(dev, 0x81, b"\xec\x03", size=64)
    assert b"\xec\x03" in events


# -- CDC-ACM -----------------------------------------------------------------------------------


def test_cdc_line_coding_round_trip_and_serial_state(env_bus):
    dev = find(env_bus, EC25)
    for number in range(5):
        take(dev, number)
    coding = struct.pack("<IBBB", 57600, 2, 2, 7)  # 57600, 2 stop bits, even, 7 bits
    dev.ctrl_transfer(0x21, 0x20, 0, 2, coding)  # SET_LINE_CODING on the AT interface
    assert bytes(dev.ctrl_transfer(0xA1, 0x21, 0, 2, 7)) == coding
    # interface 3 keeps its own
    assert struct.unpack("<I", bytes(dev.ctrl_transfer(0xA1, 0x21, 0, 3, 7))[:4]) == (115200,)
    with pytest.raises(usb.core.USBError) as caught:  # DM has no CDC function: a stall
        dev.ctrl_transfer(0xA1, 0x21, 0, 0, 7)
    assert caught.value.errno == errno.EPIPE

    model = env_bus["cdc_modem"]

    def notifications() -> list[bytes]:
        found = []
        while True:
            try:
                found.append(bytes(dev.read(0x85, 16, 50)))
            except usb.core.USBTimeoutError:
                return found

    notifications()
    model.wire(2).a.drive("dcd", True)
    model.wire(2).a.drive("ri", True)
    seen = wait_for(lambda: [n for n in notifications() if n[8] & 0x09 == 0x09] or None)
    assert seen, "no SERIAL_STATE with DCD and RI"
    note = seen[-1]
    assert note[:8] == bytes([0xA1, 0x20, 0, 0, 2, 0, 2, 0])  # SERIAL_STATE, wIndex 2, wLength 2


def test_cdc_modem_answers_at_commands_on_its_at_interface(env_bus):
    dev = find(env_bus, EC25)
    take(dev, 2)
    dev.ctrl_transfer(0x21, 0x22, 0x0003, 2)  # DTR and RTS on
    dev.write(0x03, b"ATI\r", 1000)
    answer = read_until(dev, 0x84, b"OK\r\n", timeout=3)
    assert b"Quectel" in answer and b"EC25" in answer and answer.endswith(b"OK\r\n")


def test_plain_cdc_acm_applies_line_coding_to_its_wire(local_bus, far_port):
    model = local_bus.plug(create_model("cdc_acm"))
    dev = find(local_bus, (0x0525, 0xA4A7))
    take(dev, 0)
    take(dev, 1)
    dev.ctrl_transfer(0x21, 0x20, 0, 0, struct.pack("<IBBB", 38400, 0, 0, 8))
    assert wait_for(lambda: model.wire().a.settings().baudrate == 38400)
    far = far_port(model.far_end(), SerialSettings(38400))
    dev.ctrl_transfer(0x21, 0x22, 0x0001, 0)  # DTR
    assert far.wait_lines(dsr=True, timeout=2)
    dev.write(0x02, b"hi\n", 1000)
    assert far.read_until(b"\n", timeout=2) == b"hi\n"
    far.write(b"yo")
    assert read_until(dev, 0x81, b"yo", size=64) == b"yo"
    dev.ctrl_transfer(0x21, 0x23, 0xFFFF, 0)  # SEND_BREAK until cleared
    time.sleep(0.02)
    dev.ctrl_transfer(0x21, 0x23, 0, 0)
    assert wait_for(lambda: model.wire().b.stats().breaks >= 1)
    dev.ctrl_transfer(0x21, 0x23, 20, 0)  # a timed break of 20 ms
    assert wait_for(lambda: model.wire().b.stats().breaks >= 2)


# -- the USB side: kernel drivers, claims, unplug ------------------------------------------------


def test_kernel_driver_holds_the_interface_until_detached(env_bus):
    dev = find(env_bus, FTDI)
    assert dev.is_kernel_driver_active(0)
    with pytest.raises(usb.core.USBError) as caught:
        usb.util.claim_interface(dev, 0)
    assert caught.value.errno == errno.EBUSY
    with pytest.raises(usb.core.USBError) as caught:
        dev.set_configuration()
    assert caught.value.errno == errno.EBUSY
    dev.detach_kernel_driver(0)
    assert not dev.is_kernel_driver_active(0)
    dev.set_configuration()  # allowed now: nothing is bound or claimed
    usb.util.claim_interface(dev, 0)
    other = find(env_bus, FTDI)
    with pytest.raises(usb.core.USBError) as caught:  # one claim at a time
        usb.util.claim_interface(other, 0)
    assert caught.value.errno == errno.EBUSY
    usb.util.release_interface(dev, 0)
    dev.attach_kernel_driver(0)
    assert dev.is_kernel_driver_active(0)
    usb.util.dispose_resources(dev)
    usb.util.dispose_resources(other)


def test_unplug_fails_open_handles_and_replug_is_found_by_serial_number(env_bus):
    dev = find(env_bus, FTDI)
    take(dev)
    model = env_bus["ft232r"]
    address = dev.address
    env_bus.unplug(model)
    with pytest.raises(usb.core.USBError) as caught:
        dev.write(0x02, b"x", 100)
    assert caught.value.errno == errno.ENODEV
    assert caught.value.backend_error_code == virtual.LIBUSB_ERROR_NO_DEVICE
    with pytest.raises(usb.core.USBError) as caught:
        dev.ctrl_transfer(0xC0, 0x05, 0, 0, 2)
    assert caught.value.errno == errno.ENODEV
    assert usb.core.find(serial_number="A50285BI", backend=env_bus.backend) is None

    env_bus.replug(model)
    with pytest.raises(usb.core.USBError) as caught:  # the old handle stays dead
        dev.read(0x81, 64, 100)
    assert caught.value.errno == errno.ENODEV
    again = usb.core.find(serial_number="A50285BI", backend=env_bus.backend)
    assert again is not None and again.address != address
    assert again.is_kernel_driver_active(0)  # the kernel bound its driver again
    take(again)
    assert len(bytes(again.read(0x81, 64, 500))) >= 2


def test_unplug_wakes_a_blocked_read(env_bus):
    dev = find(env_bus, CP2102)
    take(dev)
    outcome: list[BaseException] = []

    def blocked() -> None:
        try:
            dev.read(0x81, 64, 0)  # 0: no time limit, as in libusb
        except BaseException as e:
            outcome.append(e)

    reader = threading.Thread(target=blocked)
    reader.start()
    time.sleep(0.1)
    env_bus.unplug(env_bus["cp2102"])
    reader.join(timeout=5)
    assert not reader.is_alive()
    assert isinstance(outcome[0], usb.core.USBError) and outcome[0].errno == errno.ENODEV


def test_access_denied_is_eacces(local_bus):
    model = local_bus.plug(create_model("cp2102"))
    model.access_denied = True
    dev = find(local_bus, CP2102)
    with pytest.raises(usb.core.USBError) as caught:
        dev.ctrl_transfer(0xC1, 0x08, 0, 0, 1)
    assert caught.value.errno == errno.EACCES


# -- through a modem: user-space FTDI traffic -> wire -> modem emulator ------------------------


def test_ft232r_in_front_of_an_emulated_modem(monkeypatch):
    monkeypatch.setenv("SERIALHS_USB", "virtual:ft232r@modem:generic_hayes")
    virtual.reset_env_bus()
    try:
        bus = virtual.env_bus()
        assert bus is not None
        model = bus["ft232r"]
        dev = find(bus, FTDI)
        take(dev)
        rate = model.modem_sim().modems[0].settings.baudrate
        divisor = round(Fraction(3_000_000, rate) * 8)
        codes = {0: 0, 4: 1, 2: 2, 1: 3, 3: 4, 5: 5, 6: 6, 7: 7}
        encoded = (divisor // 8) | (codes[divisor % 8] << 14)
        dev.ctrl_transfer(0x40, 0x03, encoded & 0xFFFF, encoded >> 16)
        dev.ctrl_transfer(0x40, 0x01, 0x0303, 0)
        dev.write(0x02, b"AT\r", 1000)
        assert read_until(dev, 0x81, b"OK\r\n", size=64, strip_ftdi=True).endswith(b"OK\r\n")
    finally:
        virtual.reset_env_bus()


# -- choosing the backend -------------------------------------------------------------------------


def test_env_values(monkeypatch):
    assert virtual.parse_env(None).kind == "libusb"
    assert virtual.parse_env("none").kind == "none"
    choice = virtual.parse_env("virtual:ft232r, cp2102@modem:v90_dialup,ft232r")
    assert [(d.model, d.far) for d in choice.devices] == [
        ("ft232r", None),
        ("cp2102", "modem:v90_dialup"),
        ("ft232r", None),
    ]
    with pytest.raises(ConfigError, match="not understood"):
        virtual.parse_env("usb3")
    with pytest.raises(ConfigError, match="after @"):
        virtual.parse_env("virtual:ft232r@moon")
    monkeypatch.setenv("SERIALHS_USB", "none")
    assert virtual.get_backend() is None
    assert "switched off" in virtual.backend_unavailable_reason()


def test_two_devices_of_one_kind_get_their_own_names_and_serials(monkeypatch):
    monkeypatch.setenv("SERIALHS_USB", "virtual:ft232r,ft232r")
    virtual.reset_env_bus()
    try:
        bus = virtual.env_bus()
        assert bus is not None
        serials = sorted(d.serial_number for d in usb.core.find(find_all=True, backend=bus.backend))
        assert serials == ["A50285BI", "A50285BI-2"]
        assert bus["ft232r-2"].wire() is not bus["ft232r"].wire()
    finally:
        virtual.reset_env_bus()
