"""``serialhs udev-rules``: the rules are well-formed udev syntax and say what they should."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from serialhs.errors import ConfigError
from serialhs.hwconfig import load_adapter_profiles
from serialhs.modem.profile import load_modem_profiles
from serialhs.usb.udev import UdevOptions, modemmanager_port_types, udev_rules

# --- a small checker of udev rules syntax (udev(7), "Rules Files") -------------------------
#
# A rule is a comma-separated list of key-value pairs on one line; each is a key
# (with an {attribute} for the keys that take one), an operator and a value in
# double quotes. Match keys take == or !=; assignment keys =, += (and -=, :=).

MATCH_KEYS = {
    "ACTION", "DEVPATH", "KERNEL", "KERNELS", "NAME", "SYMLINK", "SUBSYSTEM", "SUBSYSTEMS",
    "DRIVER", "DRIVERS", "TAG", "TAGS", "TEST", "PROGRAM", "RESULT", "CONST", "ATTR",
    "ATTRS", "SYSCTL", "ENV",
}  # fmt: skip
ASSIGN_KEYS = {
    "NAME", "SYMLINK", "OWNER", "GROUP", "MODE", "SECLABEL", "ATTR", "SYSCTL", "ENV", "TAG",
    "RUN", "LABEL", "GOTO", "IMPORT", "OPTIONS",
}  # fmt: skip
KEYS_WITH_ATTRIBUTE = {
    "ATTR",
    "ATTRS",
    "ENV",
    "SYSCTL",
    "TEST",
    "IMPORT",
    "RUN",
    "SECLABEL",
    "CONST",
}
PAIR = re.compile(
    r'(?P<key>[A-Z]+)(?:\{(?P<attr>[^{}"\s]+)\})?\s*(?P<op>==|!=|\+=|-=|:=|=)\s*"(?P<value>[^"]*)"'
)
SUBSTITUTION = re.compile(r"\$(?:env|attr)\{[^}]+\}|\$[a-z]+|%[a-zA-Z%]")


def parse_rule(line: str) -> list[tuple[str, str | None, str, str]]:
    """(key, attribute, operator, value) for each pair; AssertionError on bad syntax."""
    pairs = []
    rest = line.strip()
    while rest:
        m = PAIR.match(rest)
        assert m, f"not a key-operator-value pair at {rest!r} in {line!r}"
        key, attr, op, value = m["key"], m["attr"], m["op"], m["value"]
        if op in ("==", "!="):
            assert key in MATCH_KEYS, f"{key} cannot be matched ({line!r})"
        else:
            assert key in ASSIGN_KEYS, f"{key} cannot be assigned ({line!r})"
        if key in KEYS_WITH_ATTRIBUTE and key != "IMPORT":
            assert attr, f"{key} needs {{attribute}} ({line!r})"
        elif key not in KEYS_WITH_ATTRIBUTE:
            assert attr is None, f"{key} takes no {{attribute}} ({line!r})"
        if key == "MODE":
            assert re.fullmatch(r"0[0-7]{3}", value), value
        pairs.append((key, attr, op, value))
        rest = rest[m.end() :].lstrip()
        if rest:
            assert rest.startswith(","), f"pairs must be separated by commas: {rest!r}"
            rest = rest[1:].lstrip()
            assert rest, f"trailing comma in {line!r}"
    assert any(op in ("==", "!=") for _, _, op, _ in pairs) or pairs[0][0] == "LABEL", (
        f"a rule without a match applies to every device: {line!r}"
    )
    return pairs


def rules_of(text: str) -> list[list[tuple[str, str | None, str, str]]]:
    rules = []
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        rules.append(parse_rule(line))
    return rules


def check_labels(text: str) -> None:
    rules = rules_of(text)
    gotos = {v for rule in rules for k, _, _, v in rule if k == "GOTO"}
    labels = {v for rule in rules for k, _, _, v in rule if k == "LABEL"}
    assert gotos <= labels, f"GOTO without LABEL: {gotos - labels}"


# --- the tests -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def text() -> str:
    return udev_rules()


def test_every_line_is_a_comment_blank_or_a_well_formed_rule(text):
    rules = rules_of(text)
    assert len(rules) > 10
    check_labels(text)


def test_the_checker_rejects_broken_rules():
    for bad in (
        'SUBSYSTEM=="tty" GROUP="dialout"',  # no comma
        'SUBSYSTEM=="tty", GROUP=dialout',  # unquoted value
        'SUBSYSTEM="tty", GROUP="dialout"',  # assigns a match-only key
        'ATTRS=="0403", GROUP="dialout"',  # ATTRS without {attribute}
        'SUBSYSTEM=="tty", MODE="660x"',
        'GROUP="dialout"',  # matches everything
    ):
        with pytest.raises(AssertionError):
            parse_rule(bad)


def test_each_adapter_with_an_id_gets_access_a_stable_name_and_no_modemmanager(text):
    for profile in load_adapter_profiles():
        if profile.vid is None:
            continue
        ids = {("idVendor", f"{profile.vid:04x}"), ("idProduct", f"{profile.pid:04x}")}
        mine = [
            rule
            for rule in rules_of(text)
            if ids <= {(a, v) for k, a, op, v in rule if k in ("ATTRS", "ATTR") and op == "=="}
            and (
                profile.match_product is None
                or ("product", profile.match_product)
                in {(a, v) for _, a, op, v in rule if op == "=="}
            )
            and (
                profile.match_product is not None
                or not any(a == "product" and op == "==" for _, a, op, v in rule)
            )
        ]
        assert mine, profile.name
        tty = [r for r in mine if ("SUBSYSTEM", None, "==", "tty") in r]
        usb = [r for r in mine if ("SUBSYSTEM", None, "==", "usb") in r]
        assert any(
            ("GROUP", None, "=", "dialout") in r and ("MODE", None, "=", "0660") in r for r in tty
        )
        assert any(("ENV", "ID_MM_DEVICE_IGNORE", "=", "1") in r for r in tty), profile.name
        links = [v for r in tty for k, _, op, v in r if k == "SYMLINK" and op == "+="]
        assert links == [f"serial/serialhs/{profile.name}-$env{{ID_SERIAL_SHORT}}"]
        assert any(("ENV", "DEVTYPE", "==", "usb_device") in r for r in usb)
        assert any(
            ("GROUP", None, "=", "dialout") in r and ("ENV", "ID_MM_DEVICE_IGNORE", "=", "1") in r
            for r in usb
        )


def test_the_cp2102_fallback_leaves_cp2102n_devices_to_their_own_profile(text):
    cp2102 = [line for line in text.splitlines() if "serial/serialhs/cp2102-" in line]
    assert cp2102 and all('ATTRS{product}!="CP2102N*"' in line for line in cp2102)


def test_modems_keep_modemmanager_and_name_their_ports_by_role(text):
    ec25 = [line for line in text.splitlines() if '"2c7c"' in line]
    assert ec25
    assert not any("ID_MM_DEVICE_IGNORE" in line for line in ec25)
    joined = "\n".join(ec25)
    assert "quectel_ec25-$env{ID_SERIAL_SHORT}-if02-at" in joined
    assert "quectel_ec25-$env{ID_SERIAL_SHORT}-if03-at-ppp" in joined
    assert 'ENV{ID_USB_INTERFACE_NUM}=="02", ENV{ID_MM_PORT_TYPE_AT_PRIMARY}="1"' in joined
    assert "if04" not in joined  # QMI: no tty


def test_class_matched_cdc_acm_is_matched_by_driver_without_ignoring_modemmanager(text):
    rules = [r for r in rules_of(text) if ("DRIVERS", None, "==", "cdc_acm") in r]
    assert rules
    assert not any(k == "ENV" and a == "ID_MM_DEVICE_IGNORE" for r in rules for k, a, _, _ in r)


def test_modemmanager_hints():
    assert modemmanager_port_types(["at"], first_at=True) == ["ID_MM_PORT_TYPE_AT_PRIMARY"]
    assert modemmanager_port_types(["at"], first_at=False) == ["ID_MM_PORT_TYPE_AT_SECONDARY"]
    assert modemmanager_port_types(["at", "ppp"], first_at=True) == ["ID_MM_PORT_TYPE_AT_PPP"]
    assert modemmanager_port_types(["diag"], first_at=True) == ["ID_MM_PORT_TYPE_QCDM"]


def test_options_change_group_mode_and_what_is_covered():
    text = udev_rules(
        options=UdevOptions(
            group="plugdev", mode="660", usb_access=False, ignore_modemmanager=False
        )
    )
    rules_of(text)
    assert 'GROUP="plugdev"' in text and 'MODE="0660"' in text
    assert 'SUBSYSTEM=="usb"' not in text
    assert not any(
        k == "ENV" and a == "ID_MM_DEVICE_IGNORE" for rule in rules_of(text) for k, a, _, _ in rule
    )
    for bad in ({"group": "dial out"}, {"mode": "rw-rw----"}, {"symlink_dir": "/abs"}):
        with pytest.raises(ConfigError):
            UdevOptions(**bad)  # type: ignore[arg-type]


def test_no_modem_profile_without_usb_shows_up(text):
    for modem in load_modem_profiles():
        if modem.usb is None:
            assert f"# {modem.name}:" not in text


@pytest.mark.skipif(shutil.which("udevadm") is None, reason="udevadm is not installed")
def test_udevadm_verify_accepts_the_rules(tmp_path, text):
    help_text = subprocess.run(
        ["udevadm", "verify", "--help"], capture_output=True, text=True, check=False
    )
    if help_text.returncode != 0:
        pytest.skip("this udevadm has no 'verify' (systemd < 254)")
    path = tmp_path / "70-serialhs.rules"
    path.write_text(text)
    result = subprocess.run(
        ["udevadm", "verify", str(path)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def serialhs(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", "import sys; from serialhs.cli import udevrules; "
         "import argparse; p = argparse.ArgumentParser(); s = p.add_subparsers(); "
         "udevrules.register(s); a = p.parse_args(sys.argv[1:]); sys.exit(a.run(a))", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )  # fmt: skip


def test_the_command_prints_and_writes_the_rules(tmp_path, text):
    printed = serialhs("udev-rules")
    assert printed.returncode == 0, printed.stderr
    assert printed.stdout == text
    out = tmp_path / "70-serialhs.rules"
    written = serialhs("udev-rules", "--profile", "ft232r", "--group", "uucp", "-o", str(out))
    assert written.returncode == 0, written.stderr
    body = Path(out).read_text()
    rules_of(body)
    assert "ft232r" in body and "cp2102" not in body and 'GROUP="uucp"' in body
    assert "udevadm control --reload" in written.stderr


def test_the_command_names_unknown_profiles():
    result = serialhs("udev-rules", "--profile", "ft232x")
    assert result.returncode != 0
    assert "ft232x" in result.stderr and "ft232r" in result.stderr
