"""Port discovery: profile matching, list_ports on this machine, and an end-to-end
run under umockdev with fake USB-serial adapters in sysfs.

The umockdev fixtures in tests/data/umockdev describe sysfs the way the kernel
lays it out (and the way pyserial's list_ports_linux reads it):

- ft232r.umockdev: FTDI FT232R, 0403:6001, serial A50285BI, ftdi_sio, /dev/ttyUSB0
- cp2102.umockdev: Silicon Labs CP2102, 10c4:ea60, serial 0001, cp210x, /dev/ttyUSB1
- cp2102n.umockdev: the same id with the CP2102N product string, /dev/ttyUSB2
- pico_cdc_acm.umockdev: Raspberry Pi Pico (2e8a:000a), cdc_acm, interface
  class 02/02, /dev/ttyACM0 -- no profile has its id, so the class match applies

Each tty has a ``device`` link to its usb-serial port (ttyUSB) or USB interface
(ttyACM); the port's parent is the USB interface and the interface's parent the
USB device with idVendor/idProduct/serial/manufacturer/product.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import serial.tools.list_ports

from serialhs.driver import discovery
from serialhs.driver.discovery import PortInfo, find_port, find_ports, list_ports, match_profile
from serialhs.errors import ConfigError, PortIOError, PortNotFoundError
from serialhs.hwconfig import AdapterProfile, load_adapter_profiles

REPO = Path(__file__).resolve().parent.parent
DATA = Path(__file__).resolve().parent / "data" / "umockdev"


@pytest.fixture(scope="module")
def profiles() -> list[AdapterProfile]:
    return load_adapter_profiles([REPO / "hw_configs"])


def by_name(profiles: list[AdapterProfile], name: str) -> AdapterProfile:
    return next(p for p in profiles if p.name == name)


# --- match_profile ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("vid", "pid", "expected"),
    [
        (0x0403, 0x6001, "ft232r"),
        (0x0403, 0x6014, "ft232h"),
        (0x1A86, 0x7523, "ch340"),
        (0x067B, 0x2303, "pl2303"),
        (0x10C4, 0xEA60, "cp2102"),
    ],
)
def test_match_by_id(profiles: list[AdapterProfile], vid: int, pid: int, expected: str) -> None:
    profile = match_profile(vid, pid, profiles=profiles)
    assert profile is not None and profile.name == expected


def test_unknown_device_matches_nothing(profiles: list[AdapterProfile]) -> None:
    assert match_profile(0x1234, 0x5678, profiles=profiles) is None
    assert match_profile(None, None, profiles=profiles) is None
    assert match_profile(None, None, driver="serial", profiles=profiles) is None


def test_product_string_tells_cp2102n_apart(profiles: list[AdapterProfile]) -> None:
    n = match_profile(
        0x10C4, 0xEA60, product="CP2102N USB to UART Bridge Controller", profiles=profiles
    )
    assert n is not None and n.name == "cp2102n" and n.max_baud == 3_000_000
    plain = match_profile(
        0x10C4, 0xEA60, product="CP2102 USB to UART Bridge Controller", profiles=profiles
    )
    assert plain is not None and plain.name == "cp2102"
    renamed = match_profile(0x10C4, 0xEA60, product="ESP32 dev board", profiles=profiles)
    assert renamed is not None and renamed.name == "cp2102"
    # the order of the profile list does not matter: a product pattern wins
    reordered = sorted(profiles, key=lambda p: p.name != "cp2102")
    n2 = match_profile(0x10C4, 0xEA60, product="CP2102N USB", profiles=reordered)
    assert n2 is not None and n2.name == "cp2102n"


def test_class_match_by_driver(profiles: list[AdapterProfile]) -> None:
    profile = match_profile(0x2E8A, 0x000A, driver="cdc_acm", profiles=profiles)
    assert profile is not None and profile.name == "cdc_acm"
    assert match_profile(None, None, driver="cdc_acm", profiles=profiles) is not None


def test_class_match_by_interface_class(profiles: list[AdapterProfile]) -> None:
    profile = match_profile(
        0x1234, 0x0001, interface_class=0x02, interface_subclass=0x02, profiles=profiles
    )
    assert profile is not None and profile.name == "cdc_acm"
    # class 02 with another subclass (e.g. 06, Ethernet networking) is not ACM
    assert (
        match_profile(0x1234, 1, interface_class=0x02, interface_subclass=0x06, profiles=profiles)
        is None
    )
    assert match_profile(0x1234, 1, interface_class=0xFF, profiles=profiles) is None


def test_specific_id_wins_over_class_match(profiles: list[AdapterProfile]) -> None:
    class_first = sorted(profiles, key=lambda p: not p.class_matched)
    assert class_first[0].name == "cdc_acm"
    profile = match_profile(
        0x0403,
        0x6001,
        driver="cdc_acm",
        interface_class=2,
        interface_subclass=2,
        profiles=class_first,
    )
    assert profile is not None and profile.name == "ft232r"


def test_match_profile_loads_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SERIALHS_HW_CONFIGS", raising=False)
    profile = match_profile(0x0403, 0x6001)
    assert profile is not None and profile.chip == "FT232R"


# --- list_ports on this machine -----------------------------------------------------------


def test_list_ports_on_this_machine() -> None:
    ports = list_ports()
    assert isinstance(ports, list)
    assert all(isinstance(p, PortInfo) for p in ports)
    assert [p.device for p in ports] == sorted(
        (p.device for p in ports), key=discovery._natural_key
    )
    json.dumps([p.to_dict() for p in ports])
    assert isinstance(list_ports(include_links=True), list)


# --- list_ports with a stand-in for pyserial ----------------------------------------------


def fake_port(device: str, **usb: Any) -> SimpleNamespace:
    fields: dict[str, Any] = {
        "device": device,
        "name": os.path.basename(device),
        "description": "n/a",
        "hwid": "n/a",
        "vid": None,
        "pid": None,
        "serial_number": None,
        "manufacturer": None,
        "product": None,
        "location": None,
        "interface": None,
    }
    fields.update(usb)
    return SimpleNamespace(**fields)


FAKE_PORTS = [
    fake_port("/dev/ttyUSB10", vid=0x1A86, pid=0x7523, description="USB Serial"),
    fake_port(
        "/dev/ttyUSB2",
        vid=0x0403,
        pid=0x6001,
        serial_number="A50285BI",
        product="FT232R USB UART",
        hwid="USB VID:PID=0403:6001 SER=A50285BI LOCATION=1-1",
    ),
    fake_port("/dev/ttyS0"),
    fake_port("/dev/ttyUSB3", vid=0x0403, pid=0x6001, serial_number="FT0XYZ12"),
]


@pytest.fixture
def fake_comports(monkeypatch: pytest.MonkeyPatch) -> list[SimpleNamespace]:
    ports = list(FAKE_PORTS)
    monkeypatch.setattr(
        serial.tools.list_ports, "comports", lambda include_links=False: list(ports)
    )
    return ports


def test_list_ports_maps_and_sorts(
    fake_comports: list[SimpleNamespace], profiles: list[AdapterProfile]
) -> None:
    ports = list_ports(profiles=profiles)
    assert [p.device for p in ports] == [
        "/dev/ttyS0",
        "/dev/ttyUSB2",
        "/dev/ttyUSB3",
        "/dev/ttyUSB10",
    ]
    ft = ports[1]
    assert ft.profile is not None and ft.profile.name == "ft232r"
    assert ft.usb_id == "0403:6001"
    data = ft.to_dict()
    assert data["vid"] == "0403" and data["pid"] == "6001"
    assert data["profile"] == {
        "name": "ft232r",
        "chip": "FT232R",
        "max_baud": 3_000_000,
        "lines": ["rts", "cts", "dtr", "dsr", "dcd", "ri"],
    }
    assert ports[0].profile is None and ports[0].to_dict()["vid"] is None
    assert ports[3].profile is not None and ports[3].profile.name == "ch340"
    json.dumps([p.to_dict() for p in ports])


def test_list_ports_reraises_pyserial_failures(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(include_links: bool = False) -> list[Any]:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(serial.tools.list_ports, "comports", broken)
    with pytest.raises(PortIOError) as info:
        list_ports(profiles=[])
    assert isinstance(info.value.__cause__, OSError)


# --- find_port ------------------------------------------------------------------------


def test_find_port_by_serial_number(
    fake_comports: list[SimpleNamespace], profiles: list[AdapterProfile]
) -> None:
    port = find_port(serial_number="A50285BI", profiles=profiles)
    assert port.device == "/dev/ttyUSB2"
    assert find_port(vid="1a86", pid=0x7523, profiles=profiles).device == "/dev/ttyUSB10"
    assert find_port(profile="ch340", profiles=profiles).device == "/dev/ttyUSB10"
    ft232r = by_name(profiles, "ft232r")
    assert len(find_ports(profile=ft232r, profiles=profiles)) == 2


def test_find_port_not_found_lists_present(
    fake_comports: list[SimpleNamespace], profiles: list[AdapterProfile]
) -> None:
    with pytest.raises(PortNotFoundError) as info:
        find_port(serial_number="NOPE", profiles=profiles)
    message = str(info.value)
    assert "serial_number='NOPE'" in message
    assert "/dev/ttyUSB2 0403:6001 SER=A50285BI FT232R" in message
    assert "/dev/ttyS0" in message
    assert isinstance(info.value, FileNotFoundError)


def test_find_port_with_no_ports_at_all() -> None:
    with pytest.raises(PortNotFoundError) as info:
        find_port(vid=0x0403, ports=[])
    assert "present: none" in str(info.value)


def test_find_port_ambiguous(
    fake_comports: list[SimpleNamespace], profiles: list[AdapterProfile]
) -> None:
    with pytest.raises(ConfigError) as info:
        find_port(vid=0x0403, pid=0x6001, profiles=profiles)
    assert "2 serial ports match" in str(info.value)
    assert "serial_number" in str(info.value)


def test_find_port_bad_id() -> None:
    with pytest.raises(ConfigError):
        find_port(vid="zz", ports=[])


# --- end to end under umockdev ----------------------------------------------------------

UMOCKDEV_RUN = shutil.which("umockdev-run")

PROBE = """
import json, sys
from serialhs.driver.discovery import find_port, list_ports
from serialhs.errors import PortNotFoundError
ports = [p.to_dict() for p in list_ports()]
found = find_port(serial_number="A50285BI").device
try:
    find_port(serial_number="MISSING")
    missing = None
except PortNotFoundError as e:
    missing = str(e)
json.dump({"ports": ports, "found": found, "missing": missing}, sys.stdout)
"""


LINK_PROBE = """
import json, os, sys
from serialhs.driver.discovery import list_ports
# a udev-style alias, as SYMLINK+="ttyFTDI" would make; umockdev's /dev is $UMOCKDEV_DIR/dev
os.symlink("ttyUSB0", os.path.join(os.environ["UMOCKDEV_DIR"], "dev", "ttyFTDI"))
json.dump({"ports": [p.to_dict() for p in list_ports(include_links=True)]}, sys.stdout)
"""


def run_under_umockdev(*fixtures: str, probe: str = PROBE) -> dict[str, Any]:
    if UMOCKDEV_RUN is None:
        pytest.skip("umockdev-run is not installed (apt-get install umockdev)")
    args = [UMOCKDEV_RUN]
    for fixture in fixtures:
        args += ["--device", str(DATA / fixture)]
    args += ["--", sys.executable, "-c", probe]
    env = {k: v for k, v in os.environ.items() if k != "SERIALHS_HW_CONFIGS"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    result = subprocess.run(
        args, capture_output=True, text=True, timeout=60, cwd=REPO, env=env, check=False
    )
    assert result.returncode == 0, f"umockdev run failed:\n{result.stdout}\n{result.stderr}"
    data: dict[str, Any] = json.loads(result.stdout)
    return data


def test_umockdev_ft232r_end_to_end() -> None:
    data = run_under_umockdev("ft232r.umockdev")
    ports = {p["device"]: p for p in data["ports"]}
    assert "/dev/ttyUSB0" in ports, data
    ft = ports["/dev/ttyUSB0"]
    assert ft["vid"] == "0403" and int(ft["vid"], 16) == 0x0403
    assert ft["pid"] == "6001" and int(ft["pid"], 16) == 0x6001
    assert ft["serial_number"] == "A50285BI"
    assert ft["manufacturer"] == "FTDI"
    assert ft["product"] == "FT232R USB UART"
    assert ft["interface"] == "FT232R USB UART"
    assert ft["location"] == "1-1"
    assert ft["driver"] == "ftdi_sio"
    assert ft["hwid"] == "USB VID:PID=0403:6001 SER=A50285BI LOCATION=1-1"
    assert ft["profile"]["name"] == "ft232r"
    assert ft["profile"]["chip"] == "FT232R"
    assert ft["profile"]["max_baud"] == 3_000_000
    assert data["found"] == "/dev/ttyUSB0"
    assert "/dev/ttyUSB0 0403:6001 SER=A50285BI FT232R" in data["missing"]


def test_umockdev_several_adapters() -> None:
    data = run_under_umockdev(
        "ft232r.umockdev", "cp2102.umockdev", "cp2102n.umockdev", "pico_cdc_acm.umockdev"
    )
    devices = [p["device"] for p in data["ports"]]
    assert devices == ["/dev/ttyACM0", "/dev/ttyUSB0", "/dev/ttyUSB1", "/dev/ttyUSB2"]
    ports = {p["device"]: p for p in data["ports"]}

    cp = ports["/dev/ttyUSB1"]
    assert (cp["vid"], cp["pid"], cp["serial_number"]) == ("10c4", "ea60", "0001")
    assert cp["driver"] == "cp210x"
    assert cp["profile"]["name"] == "cp2102"
    assert cp["profile"]["max_baud"] == 921_600

    cpn = ports["/dev/ttyUSB2"]
    assert cpn["product"] == "CP2102N USB to UART Bridge Controller"
    assert cpn["profile"]["name"] == "cp2102n"

    acm = ports["/dev/ttyACM0"]
    assert (acm["vid"], acm["pid"]) == ("2e8a", "000a")
    assert acm["driver"] == "cdc_acm"
    assert (acm["interface_class"], acm["interface_subclass"]) == ("02", "02")
    assert acm["location"] == "1-3:1.0"  # several interfaces: pyserial names the interface
    assert acm["profile"]["name"] == "cdc_acm"
    assert acm["profile"]["max_baud"] is None

    assert ports["/dev/ttyUSB0"]["profile"]["name"] == "ft232r"
    assert data["found"] == "/dev/ttyUSB0"


def test_umockdev_link_carries_the_port_facts() -> None:
    data = run_under_umockdev("ft232r.umockdev", probe=LINK_PROBE)
    ports = {p["device"]: p for p in data["ports"]}
    assert sorted(ports) == ["/dev/ttyFTDI", "/dev/ttyUSB0"]
    link = ports["/dev/ttyFTDI"]
    assert link["serial_number"] == "A50285BI"
    assert link["driver"] == "ftdi_sio"
    assert link["profile"]["name"] == "ft232r"
    assert link["hwid"].endswith("LINK=/dev/ttyUSB0")
