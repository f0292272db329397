"""The serialhs command line, run as a separate process as a user would."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from serialhs.driver.port import Port
from serialhs.errors import ModemBusy
from serialhs.modem.client import Modem


def serialhs(
    *args: str, timeout: float = 60, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "serialhs", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env=None if env is None else {**os.environ, **env},
    )


def test_ports_json_is_valid_json_without_hardware():
    result = serialhs("ports", "--json")
    assert result.returncode == 0, result.stderr
    ports = json.loads(result.stdout)
    assert isinstance(ports, list)
    for port in ports:
        assert {"device", "vid", "pid", "serial_number", "profile"} <= port.keys()


def test_ports_merges_usb_devices_with_their_roles():
    result = serialhs("ports", "--json", env={"SERIALHS_USB": "virtual:ft232r,cdc_modem"})
    assert result.returncode == 0, result.stderr
    ports = json.loads(result.stdout)
    by_device = {p["device"]: p for p in ports}
    ftdi = by_device["usb://0403:6001?serial=A50285BI&interface=0"]
    assert ftdi["profile"] == "ft232r" and ftdi["user_space"] is True
    roles = {p["role"] for p in ports if p.get("usb") == "2c7c:0125"}
    assert {"at", "diag", "nmea"} <= roles


@pytest.mark.parametrize("setting", ["none", "libusb"])
def test_ports_works_without_usb_and_says_what_it_could_not_see(setting):
    result = serialhs("ports", "--json", env={"SERIALHS_USB": setting})
    assert result.returncode == 0, result.stderr
    assert isinstance(json.loads(result.stdout), list)
    if setting == "none":
        assert "USB access is switched off" in result.stderr


def test_ports_table():
    result = serialhs("ports")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip()


@pytest.mark.skipif(shutil.which("umockdev-run") is None, reason="needs umockdev-run")
def test_ports_names_a_usb_adapter_by_its_profile():
    # umockdev presents the sysfs of a USB FT232R (and /dev/ttyUSB0) to the child.
    root = Path(__file__).resolve().parent.parent
    result = subprocess.run(
        [
            "umockdev-run",
            "--device",
            str(root / "tests/data/umockdev/ft232r.umockdev"),
            "--",
            sys.executable,
            "-m",
            "serialhs",
            "ports",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    row = next(line for line in result.stdout.splitlines() if "/dev/ttyUSB0" in line)
    assert "0403:6001" in row and "ft232r" in row and "A50285BI" in row


def test_lines_show_and_set_on_loop():
    result = serialhs("lines", "loop://", "--set", "rts=1,dtr=0", "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {
        "rts": True,
        "dtr": False,
        "cts": True,
        "dsr": False,
        "dcd": True,
        "ri": False,
    }


def test_lines_pulse_restores_the_line():
    result = serialhs("lines", "loop://", "--set", "dtr=1", "--pulse", "dtr:0.05", "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["dsr"] is True


def test_lines_watch_stops_after_duration():
    result = serialhs("lines", "loop://", "--watch", "--duration", "0.2")
    assert result.returncode == 0, result.stderr
    assert "CTS=" in result.stdout


def test_lines_on_a_pty_fails_with_the_reason(serial_pair):
    result = serialhs("lines", serial_pair.a)
    assert result.returncode == 1
    assert "pseudo-terminal" in result.stderr and serial_pair.a in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["lines", "loop://", "--set", "cts=1"], "input"),
        (["lines", "loop://", "--pulse", "dtr"], "LINE:SECONDS"),
        (["lines", "/dev/ttyNOPE9"], "no such device"),
    ],
)
def test_bad_input_gives_a_clear_error(args, needle):
    result = serialhs(*args)
    assert result.returncode == 1
    assert needle in result.stderr
    assert "Traceback" not in result.stderr


def test_demo_runs_end_to_end(tmp_path):
    result = serialhs("demo", "--out", str(tmp_path), timeout=120)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "A raises RTS   -> B sees RTS=0 DTR=0 CTS=1" in out
    assert "B sees RTS=0 DTR=0 CTS=1 DSR=1 DCD=1" in out
    assert "2048 bytes of every value A->B, intact: True" in out
    assert "B reads b'\\x00'" in out
    assert "framing error" in out
    # negotiation: training falls back from the rates the wire garbles, then a file
    assert "rung 0: 921600 8N1 none: failed" in out and "460800 8N1 none: ok" in out
    assert "agreed 460800 8N1 none (shs" in out and "of the line rate" in out
    assert "send [" + "#" * 30 + "] 100%" in out
    assert "identical to what A sent: True" in out
    assert "A: CONNECT 33600/LAPM/V44" in out
    assert "B got b'hello over the phone line'" in out
    assert "A: back in command mode, AT -> OK" in out
    assert "carrier lost" in out
    assert "ATI -> 5601" in out  # through the virtual FT232R to the modem behind it
    assert "interface=2: ATI -> Quectel / EC25" in out  # the EC25's AT interface by role
    text = (tmp_path / "transcript.txt").read_text()
    assert " tx " in text and " rx " in text and "settings" in text
    vcd = (tmp_path / "wire.vcd").read_text()
    assert "$enddefinitions" in vcd and "txd" in vcd


def test_modem_sim_prints_the_modems_and_answers_at():
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "serialhs",
            "modem-sim",
            "--count",
            "2",
            "--busy",
            "5550100",
            "--duration",
            "20",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        modems = json.loads(proc.stdout.readline())
        assert [m["number"] for m in modems] == ["5551000", "5551001"]
        with Port(modems[0]["port"]["pty"], "115200 8N1") as port:
            modem = Modem(port)
            assert modem.command("AT").ok
            with pytest.raises(ModemBusy):
                modem.dial("5550100")
        proc.terminate()
        assert proc.wait(10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()
