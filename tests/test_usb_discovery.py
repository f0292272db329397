"""USB discovery: virtual devices matched to profiles, AT interfaces by role, and a
result (never an exception) when USB cannot be seen."""

from __future__ import annotations

import json

import pytest
import usb.backend.libusb1
import usb.core
import usb.libloader

from serialhs.errors import ConfigError, PortNotFoundError
from serialhs.usb import discovery, virtual
from serialhs.usb.discovery import (
    find_at_interface,
    find_usb_device,
    interface_sysfs,
    list_usb_devices,
    match_tty,
)
from serialhs.usb.models import create_model

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def env_devices(monkeypatch):
    monkeypatch.setenv("SERIALHS_USB", "virtual:ft232r,cp2102,cdc_modem")
    virtual.reset_env_bus()
    yield virtual.env_bus()
    virtual.reset_env_bus()


@pytest.fixture
def local_bus():
    bus = virtual.VirtualBus()
    yield bus
    bus.close()


def by_id(devices, usb_id):
    (device,) = [d for d in devices if d.usb_id == usb_id]
    return device


def test_each_virtual_device_is_found_and_matched_to_its_profile(env_devices):
    devices = list_usb_devices()
    assert devices.problems == []
    assert [d.usb_id for d in devices] == ["0403:6001", "10c4:ea60", "2c7c:0125"]

    ftdi = by_id(devices, "0403:6001")
    assert (ftdi.manufacturer, ftdi.product, ftdi.serial_number) == (
        "FTDI",
        "FT232R USB UART",
        "A50285BI",
    )
    assert ftdi.kind == "adapter" and ftdi.adapter is not None and ftdi.adapter.name == "ft232r"
    assert ftdi.virtual and ftdi.bus == virtual.VIRTUAL_BUS_NUMBER and ftdi.port_path == "250-1"
    assert ftdi.speed == "full"
    (intf,) = ftdi.interfaces
    assert intf.class_triple == "ff/ff/ff" and intf.name == "FT232R USB UART"
    assert intf.driver == "ftdi_sio" and intf.tty is None  # no kernel tty on the virtual bus
    assert [(ep.address, ep.kind, ep.is_in) for ep in intf.endpoints] == [
        (0x81, "bulk", True),
        (0x02, "bulk", False),
    ]
    assert ftdi.url(0) == "usb://0403:6001?serial=A50285BI&interface=0"

    cp = by_id(devices, "10c4:ea60")
    # the product string is not "CP2102N*", so the plain CP2102 profile fits
    assert cp.adapter is not None and cp.adapter.name == "cp2102"

    ec25 = by_id(devices, "2c7c:0125")
    assert ec25.kind == "modem" and ec25.modem is not None and ec25.modem.name == "quectel_ec25"
    assert ec25.adapter is None
    assert [(i.number, i.roles) for i in ec25.interfaces] == [
        (0, ("diag",)),
        (1, ("nmea",)),
        (2, ("at",)),
        (3, ("at", "ppp")),
        (4, ("qmi", "wwan")),
    ]
    assert ec25.interface(4).driver == "qmi_wwan"
    json.dumps([d.to_dict() for d in devices])  # JSON-ready


def test_the_modems_at_interface_is_picked_by_role(env_devices):
    devices = list_usb_devices()
    at = find_at_interface(by_id(devices, "2c7c:0125"))
    assert at is not None and at.number == 2 and at.roles == ("at",)
    assert at.endpoint(kind="interrupt", is_in=True).address == 0x85
    assert find_at_interface(by_id(devices, "0403:6001")) is None  # an adapter is no modem


def test_a_simcom_module_gets_its_roles_too(local_bus):
    spec = create_model("cdc_modem").spec.replace(vid=0x1E0E, pid=0x9001, modem="simcom_sim7600")
    local_bus.plug(create_model(spec))
    (device,) = list_usb_devices(local_bus.backend)
    assert device.modem is not None and device.modem.name == "simcom_sim7600"
    assert find_at_interface(device).number == 2
    assert device.interface(4).roles == ("audio",)


def test_a_plain_cdc_acm_device_matches_the_class_profile(local_bus):
    local_bus.plug(create_model("cdc_acm"))
    (device,) = list_usb_devices(local_bus.backend)
    assert device.adapter is not None and device.adapter.name == "cdc_acm"
    assert device.interface(0).class_triple == "02/02/01"
    assert device.interface(1).class_triple == "0a/00/00"
    assert find_at_interface(device) is None


def test_kernel_driver_state_shows_after_a_detach(local_bus):
    local_bus.plug(create_model("ft232r"))
    dev = usb.core.find(idVendor=0x0403, backend=local_bus.backend)
    dev.detach_kernel_driver(0)
    (device,) = list_usb_devices(local_bus.backend)
    assert device.interfaces[0].driver is None


def test_find_by_serial_number_and_what_is_said_when_nothing_fits(env_devices):
    device = find_usb_device(serial_number="0001")
    assert device.usb_id == "10c4:ea60"
    with pytest.raises(PortNotFoundError, match="no USB device matches serial_number='nope'"):
        find_usb_device(serial_number="nope")
    with pytest.raises(ConfigError, match="2 USB devices match"):
        find_usb_device(devices=[device, device])
    assert find_usb_device(profile="quectel_ec25").usb_id == "2c7c:0125"


def test_replugged_device_is_found_again_by_serial(env_devices):
    model = env_devices["ft232r"]
    env_devices.unplug(model)
    assert [d.usb_id for d in list_usb_devices()] == ["10c4:ea60", "2c7c:0125"]
    env_devices.replug(model)
    again = find_usb_device(serial_number="A50285BI")
    assert again.address is not None and again.address > 2


# -- when USB cannot be seen -------------------------------------------------------------------


def test_no_backend_gives_an_empty_list_with_a_reason(monkeypatch):
    monkeypatch.setattr(virtual, "get_backend", lambda: None)
    monkeypatch.setattr(virtual, "backend_unavailable_reason", lambda: "no USB here")
    devices = list_usb_devices()
    assert devices == [] and devices.problems == ["no USB here"]


def test_missing_libusb_is_reported_not_raised(monkeypatch):
    monkeypatch.delenv("SERIALHS_USB", raising=False)
    monkeypatch.setattr(usb.backend.libusb1, "get_backend", lambda *a, **k: None)

    def nothing(*args, **kwargs):
        raise usb.libloader.LibraryNotFoundException("not here")

    monkeypatch.setattr(usb.libloader, "locate_library", nothing)
    assert virtual.get_backend() is None
    devices = list_usb_devices()
    assert devices == []
    (problem,) = devices.problems
    assert problem.startswith("libusb-1.0 not found") and "libusb-1.0-0" in problem


def test_switched_off_and_unreadable_settings_are_problems(monkeypatch):
    monkeypatch.setenv("SERIALHS_USB", "none")
    assert list_usb_devices().problems == [f"USB access is switched off ({virtual.ENV_VAR}=none)"]
    monkeypatch.setenv("SERIALHS_USB", "virtual:nosuchmodel")
    virtual.reset_env_bus()
    devices = list_usb_devices()
    assert devices == [] and "nosuchmodel" in devices.problems[0]
    monkeypatch.setenv("SERIALHS_USB", "gibberish")
    assert "not understood" in list_usb_devices().problems[0]


def test_permission_denied_names_the_device_and_the_fix(local_bus):
    model = local_bus.plug(create_model("cp2102"))
    model.access_denied = True
    (device,) = devices = list_usb_devices(local_bus.backend)
    assert device.serial_number is None  # the strings need an open device
    assert device.adapter is not None and device.adapter.name == "cp2102"  # the id is enough
    assert device.problems and "permission denied" in device.problems[0]
    assert "udev" in device.problems[0] and devices.problems == list(device.problems)


def test_a_backend_that_fails_to_enumerate_is_a_problem():
    class Broken(usb.backend.IBackend):
        def enumerate_devices(self):
            raise OSError(5, "Input/output error")

    devices = list_usb_devices(Broken())
    assert devices == [] and "could not enumerate" in devices.problems[0]


# -- sysfs ----------------------------------------------------------------------------------------


def test_sysfs_gives_the_driver_and_tty_of_each_interface(tmp_path):
    drivers = tmp_path / "drivers"
    for name in ("ftdi_sio", "cdc_acm", "option"):
        (drivers / name).mkdir(parents=True)
    ftdi = tmp_path / "1-1.2:1.0"
    (ftdi / "ttyUSB0").mkdir(parents=True)
    (ftdi / "driver").symlink_to(drivers / "ftdi_sio")
    acm = tmp_path / "1-3:1.0"
    (acm / "tty" / "ttyACM0").mkdir(parents=True)
    (acm / "driver").symlink_to(drivers / "cdc_acm")
    unbound = tmp_path / "1-4:1.1"
    unbound.mkdir()

    assert interface_sysfs(1, "1.2", 1, 0, root=tmp_path) == ("ftdi_sio", "/dev/ttyUSB0")
    assert interface_sysfs(1, "3", 1, 0, root=tmp_path) == ("cdc_acm", "/dev/ttyACM0")
    assert interface_sysfs(1, "4", 1, 1, root=tmp_path) == (None, None)
    assert interface_sysfs(1, "9", 1, 0, root=tmp_path) == (None, None)


def test_match_tty_finds_the_interface_behind_a_port():
    iface = discovery.UsbInterfaceInfo(2, 0xFF, 0, 0, roles=("at",), tty="/dev/ttyUSB2")
    device = discovery.UsbDevice(
        vid=0x2C7C,
        pid=0x0125,
        bus=1,
        address=4,
        port_path="1-1",
        manufacturer=None,
        product=None,
        serial_number=None,
        interfaces=(iface,),
    )
    assert match_tty("/dev/ttyUSB2", [device]) == (device, iface)
    assert match_tty("/dev/ttyUSB3", [device]) is None
    assert device.device_node == "/dev/bus/usb/001/004"
