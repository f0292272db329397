"""Modem profiles: the shipped files, the schema and its errors (file and line)."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from serialhs import hwconfig
from serialhs.errors import ConfigError, ProfileError
from serialhs.modem.profile import (
    DEFAULT_S_REGISTERS,
    MODULATIONS,
    ModemDefaults,
    ModemProfile,
    available_modem_profiles,
    load_modem_profile,
    load_modem_profiles,
)

REPO_CONFIGS = Path(__file__).resolve().parent.parent / "hw_configs"
SHIPPED = {"generic_hayes", "v90_dialup", "quectel_ec25", "simcom_sim7600"}

GOOD = """\
# a test modem
[modem]
description = "Test modem"
manufacturer = "Acme"
model = "M1"
revision = "1.2"
kind = "dialup"
modulations = ["V.22bis", "V.21", "V.22"]
error_correction = ["MNP"]
compression = ["MNP5"]
dte_rates = [2400, 300, 1200]
default_rate = 2400
init = ["ATZ", "ATE0"]
"""


@pytest.fixture(autouse=True)
def _no_user_dirs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(hwconfig.ENV_VAR, raising=False)


def modem_file(tmp_path: Path, content: str, name: str = "test.toml") -> Path:
    path = tmp_path / "modems" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(content), encoding="utf-8")
    return path


def load_error(path: Path) -> ProfileError:
    with pytest.raises(ProfileError) as info:
        load_modem_profile(path)
    return info.value


def line_of(content: str, needle: str) -> int:
    for number, line in enumerate(content.splitlines(), start=1):
        if needle in line:
            return number
    raise AssertionError(f"{needle!r} not in content")


# --- shipped profiles -----------------------------------------------------------------


def test_every_shipped_profile_loads() -> None:
    profiles = load_modem_profiles([REPO_CONFIGS])
    assert {p.name for p in profiles} == SHIPPED
    for profile in profiles:
        assert isinstance(profile, ModemProfile)
        assert profile.quirks, f"{profile.name} should document its quirks"
        assert profile.references, f"{profile.name} should say where its data comes from"
        assert profile.default_rate in profile.dte_rates
        assert all(line.upper().startswith("AT") for line in profile.init)
        assert profile.path is not None and profile.path.parent == REPO_CONFIGS / "modems"
        json.dumps(profile.to_dict())


def test_available_names_and_default_search() -> None:
    assert set(available_modem_profiles([REPO_CONFIGS])) == SHIPPED
    assert set(available_modem_profiles()) >= SHIPPED
    assert load_modem_profile("generic_hayes").name == "generic_hayes"


def test_generic_hayes() -> None:
    p = load_modem_profile("generic_hayes", [REPO_CONFIGS])
    assert p.kind == "dialup" and not p.is_cellular
    assert p.top_modulation == "V.22bis"
    assert p.error_correction == () and p.compression == ()
    assert p.dte_rates == (300, 1200, 2400) and p.autobaud
    assert p.extended_commands is False
    assert p.defaults.dcd == 0 and p.defaults.dtr == 0 and p.defaults.flow == 0
    assert p.s_register_defaults[7] == 30


def test_v90_dialup() -> None:
    p = load_modem_profile("v90_dialup", [REPO_CONFIGS])
    assert p.top_modulation == "V.92"
    assert "V.90" in p.modulations and "V.34" in p.modulations
    assert p.error_correction == ("LAPM", "MNP")
    assert p.compression == ("V44", "V42BIS", "MNP5")
    assert p.digital is False
    assert p.max_command_length == 58
    assert p.identity_lines(3) == ("U.S. Robotics 56K FAX EXT V6.0.0",)
    assert p.identity_lines(9) is None
    assert "&H" in p.accepted_commands
    assert p.usb is None


def test_quectel_ec25_usb_layout() -> None:
    p = load_modem_profile("quectel_ec25", [REPO_CONFIGS])
    assert p.is_cellular and p.modulations == () and p.connect_rate == 150_000_000
    assert p.usb is not None and p.usb.usb_id == "2c7c:0125"
    roles = {i.number: i.roles for i in p.usb.interfaces}
    assert roles == {0: ("diag",), 1: ("nmea",), 2: ("at",), 3: ("at", "ppp"), 4: ("qmi", "wwan")}
    at = p.usb.interface_for("at")
    ppp = p.usb.interface_for("ppp")
    assert at is not None and at.number == 2
    assert ppp is not None and ppp.number == 3
    assert p.usb.interface_for("audio") is None
    assert p.identity_lines(0) == ("Quectel", "EC25", "Revision: EC25EFAR06A03M4G")
    assert p.response("+csq") == ("+CSQ: 24,99",)
    with pytest.raises(ConfigError, match="unknown USB interface role"):
        p.usb.interface_for("modem")


def test_simcom_sim7600_usb_layout() -> None:
    p = load_modem_profile("simcom_sim7600", [REPO_CONFIGS])
    assert p.usb is not None and p.usb.usb_id == "1e0e:9001"
    roles = {i.number: i.roles for i in p.usb.interfaces}
    assert roles[4] == ("audio",) and roles[5] == ("qmi", "wwan") and roles[3] == ("at", "ppp")
    assert p.response("+CGMR") == ("+CGMR: SIM7600M22_V2.0",)
    lines = p.identity_lines(0)
    assert lines is not None and lines[-1] == "+GCAP: +CGSM"


def test_unknown_name_lists_the_known(tmp_path: Path) -> None:
    modem_file(tmp_path, GOOD, "mine.toml")
    with pytest.raises(ConfigError, match=r"'mien'.*did you mean 'mine'.*mine"):
        load_modem_profile("mien", [tmp_path])


def test_user_directory_overrides_a_shipped_profile(tmp_path: Path) -> None:
    modem_file(tmp_path, GOOD, "generic_hayes.toml")
    profile = load_modem_profile("generic_hayes", [tmp_path, REPO_CONFIGS])
    assert profile.model == "M1"


# --- the schema -----------------------------------------------------------------------


def test_a_minimal_profile_gets_defaults(tmp_path: Path) -> None:
    p = load_modem_profile(modem_file(tmp_path, GOOD))
    assert p.name == "test"
    assert p.modulations == ("V.21", "V.22", "V.22bis")  # slowest first, whatever the file says
    assert p.dte_rates == (300, 1200, 2400)
    assert p.defaults == ModemDefaults()
    assert p.s_register_defaults == dict(DEFAULT_S_REGISTERS)
    assert p.unknown_command == "ERROR"
    assert p.identity_lines(0) == ("M1",)
    assert p.identity_lines(3) == ("Acme M1 1.2",)
    assert p.connect_style == "protocol"


def test_defaults_registers_and_responses(tmp_path: Path) -> None:
    content = GOOD + textwrap.dedent(
        """
        [modem.defaults]
        E = 0
        X = 3
        "&K" = 4

        [modem.s_registers]
        S7 = 90
        S0 = 1

        [modem.responses]
        "+CSQ" = ["+CSQ: {model}"]
        "+CMEE=2" = []
        """
    )
    p = load_modem_profile(modem_file(tmp_path, content))
    assert p.defaults.echo is False and p.defaults.x == 3 and p.defaults.flow == 4
    assert p.s_register_defaults[7] == 90 and p.s_register_defaults[0] == 1
    assert p.response("+CSQ") == ("+CSQ: M1",)
    assert p.response("+CMEE=2") == ()
    assert p.response("+COPS?") is None


def test_every_modulation_name_is_accepted(tmp_path: Path) -> None:
    names = ", ".join(f'"{m}"' for m in MODULATIONS)
    content = GOOD.replace('["V.22bis", "V.21", "V.22"]', f"[{names}]")
    assert load_modem_profile(modem_file(tmp_path, content)).top_modulation == "V.92"


@pytest.mark.parametrize(
    ("change", "needle", "message"),
    [
        (
            ("model = ", "modle = "),
            "modle",
            "unknown key 'modle' in [modem] (did you mean 'model'?)",
        ),
        (('kind = "dialup"', 'kind = "isdn"'), "kind", "'isdn' is not one of cellular, dialup"),
        (('"V.21"', '"V.21bis"'), "modulations", "unknown name 'V.21bis'"),
        (("default_rate = 2400", "default_rate = 9600"), "default_rate", "not one of dte_rates"),
        (('init = ["ATZ", "ATE0"]', 'init = ["ATZ", "E0"]'), "init", "'E0' does not start with AT"),
        (('compression = ["MNP5"]', 'compression = ["V42BIS"]'), "compression", "only over LAPM"),
        (("dte_rates = [2400, 300, 1200]", "dte_rates = [2400, 2400]"), "dte_rates", "twice"),
        (("dte_rates = [2400, 300, 1200]", 'dte_rates = ["fast"]'), "dte_rates", "integer"),
    ],
)
def test_bad_values_name_file_and_line(
    tmp_path: Path, change: tuple[str, str], needle: str, message: str
) -> None:
    content = GOOD.replace(*change)
    assert content != GOOD
    path = modem_file(tmp_path, content)
    error = load_error(path)
    assert error.path == str(path)
    assert error.line == line_of(content, needle)
    assert message in str(error)


def test_missing_required_key(tmp_path: Path) -> None:
    content = GOOD.replace('revision = "1.2"\n', "")
    error = load_error(modem_file(tmp_path, content))
    assert "missing required key 'revision' in [modem]" in str(error)
    assert error.line == line_of(content, "[modem]")


def test_dialup_needs_modulations(tmp_path: Path) -> None:
    content = GOOD.replace('modulations = ["V.22bis", "V.21", "V.22"]\n', "")
    assert "needs modulations" in str(load_error(modem_file(tmp_path, content)))


def test_cellular_rules(tmp_path: Path) -> None:
    cellular = GOOD.replace('kind = "dialup"', 'kind = "cellular"')
    error = load_error(modem_file(tmp_path, cellular))
    assert "no line modulations" in str(error) and error.line == line_of(cellular, "modulations")
    no_mod = cellular.replace('modulations = ["V.22bis", "V.21", "V.22"]\n', "")
    assert "connect_rate" in str(load_error(modem_file(tmp_path, no_mod)))
    ok = no_mod.replace("default_rate", "connect_rate = 1000000\ndefault_rate")
    assert load_modem_profile(modem_file(tmp_path, ok)).connect_rate == 1_000_000
    dialup_rate = GOOD.replace("default_rate", "connect_rate = 1000000\ndefault_rate")
    assert "for cellular modules" in str(load_error(modem_file(tmp_path, dialup_rate)))


@pytest.mark.parametrize(
    ("table", "needle", "message"),
    [
        ('[modem.defaults]\n"&K" = 1\n', '"&K"', "1 is not one of 0, 3, 4"),
        ("[modem.defaults]\nZ = 1\n", "Z = 1", "unknown key 'Z'"),
        ("[modem.s_registers]\nS99 = 1\n", "S99", "S99 is not a register"),
        ("[modem.s_registers]\nS3 = 200\n", "S3", "ASCII"),
        ("[modem.s_registers]\nS7 = 300\n", "S7", "at most 255"),
        ("[modem.s_registers]\nseven = 3\n", "seven", "not an S-register name"),
        ('[modem.identity]\nI1 = ["{modell}"]\n', "I1", "unknown placeholder {modell}"),
        ('[modem.identity]\nI10 = ["x"]\n', "I10", "unknown key 'I10'"),
        ('[modem.responses]\n"+csq" = ["x"]\n', "+csq", "upper case"),
        ("[modem.usb]\nvid = 0x1234\n", "[modem.usb]", "missing required key 'pid'"),
        (
            '[modem.usb]\nvid = 1\npid = 2\n[modem.usb.interfaces]\n2 = ["at", "modem"]\n',
            "2 = ",
            "unknown name 'modem'",
        ),
        (
            '[modem.usb]\nvid = 1\npid = 2\n[modem.usb.interfaces]\nat = ["at"]\n',
            "at = ",
            "not an interface number",
        ),
        ("[modem.extra]\nx = 1\n", "[modem.extra]", "unknown key 'extra' in [modem]"),
    ],
)
def test_bad_sub_tables(tmp_path: Path, table: str, needle: str, message: str) -> None:
    content = GOOD + "\n" + table
    path = modem_file(tmp_path, content)
    error = load_error(path)
    assert message in str(error)
    assert error.line == line_of(content, needle)


def test_other_top_level_tables_are_refused(tmp_path: Path) -> None:
    content = GOOD + "\n[adapter]\nchip = 'x'\n"
    error = load_error(modem_file(tmp_path, content))
    assert "may only hold [modem]" in str(error)
    assert error.line == line_of(content, "[adapter]")


def test_toml_syntax_error(tmp_path: Path) -> None:
    content = GOOD.replace('model = "M1"', 'model = "M1')
    error = load_error(modem_file(tmp_path, content))
    assert "invalid TOML" in str(error)
    assert error.line == line_of(content, 'model = "M1')
