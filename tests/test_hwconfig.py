"""hw_configs loading: search path, TOML errors with file and line, adapter schema."""

from __future__ import annotations

import json
import os
import textwrap
from pathlib import Path

import pytest

from serialhs import hwconfig
from serialhs.errors import ConfigError, ProfileError
from serialhs.hwconfig import (
    AdapterProfile,
    Field,
    config_dirs,
    hex_id,
    integer,
    key_line,
    load_adapter_profile,
    load_adapter_profiles,
    load_toml,
    read_document,
    text,
    text_list,
    validate_table,
)

REPO_CONFIGS = Path(__file__).resolve().parent.parent / "hw_configs"

GOOD = """\
# a test adapter
[adapter]
chip = "TEST1"
description = "Test adapter"
vid = 0x0403
pid = 0x6001
max_baud = 3000000
custom_baud = true
lines = ["rts", "cts", "dtr", "dsr", "dcd", "ri"]
quirks = ["none worth mentioning"]
"""


@pytest.fixture(autouse=True)
def _no_user_dirs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(hwconfig.ENV_VAR, raising=False)


def write(path: Path, content: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(content, encoding="utf-8")
    return path


def adapter_file(tmp_path: Path, content: str, name: str = "test.toml") -> Path:
    return write(tmp_path / "adapters" / name, content)


def load_error(path: Path) -> ProfileError:
    with pytest.raises(ProfileError) as info:
        load_adapter_profile(path)
    return info.value


def line_of(content: str, needle: str) -> int:
    for number, line in enumerate(content.splitlines(), start=1):
        if needle in line:
            return number
    raise AssertionError(f"{needle!r} not in content")


# --- shipped profiles ----------------------------------------------------------------


def test_every_shipped_profile_loads() -> None:
    profiles = load_adapter_profiles([REPO_CONFIGS])
    names = {p.name for p in profiles}
    assert names == {"ft232r", "ft232h", "cp2102", "cp2102n", "ch340", "pl2303", "cdc_acm"}
    for profile in profiles:
        assert isinstance(profile, AdapterProfile)
        assert profile.chip
        assert profile.description
        assert profile.lines <= hwconfig.LINE_NAMES
        assert profile.quirks, f"{profile.name} should document its quirks"
        assert profile.path.parent == REPO_CONFIGS / "adapters"


def test_shipped_profile_values() -> None:
    by_name = {p.name: p for p in load_adapter_profiles([REPO_CONFIGS])}
    expected = {
        "ft232r": ("0403:6001", 3_000_000),
        "ft232h": ("0403:6014", 12_000_000),
        "cp2102": ("10c4:ea60", 921_600),
        "cp2102n": ("10c4:ea60", 3_000_000),
        "ch340": ("1a86:7523", 2_000_000),
        "pl2303": ("067b:2303", 6_000_000),
    }
    for name, (usb_id, max_baud) in expected.items():
        assert by_name[name].usb_id == usb_id
        assert by_name[name].max_baud == max_baud
    assert by_name["cp2102"].custom_baud is False  # fixed alias table
    assert by_name["cp2102n"].match_product == "CP2102N*"
    acm = by_name["cdc_acm"]
    assert acm.usb_id is None and acm.vid is None and acm.pid is None
    assert acm.class_matched
    assert acm.max_baud is None
    assert acm.match_driver == frozenset({"cdc_acm"})
    assert (acm.match_interface_class, acm.match_interface_subclass) == (0x02, 0x02)
    assert "cts" not in acm.lines


def test_default_search_finds_the_checkout() -> None:
    assert REPO_CONFIGS in [d.resolve() for d in config_dirs()]
    assert {p.name for p in load_adapter_profiles()} >= {"ft232r", "cdc_acm"}


def test_to_dict_is_json_ready() -> None:
    profile = load_adapter_profile(REPO_CONFIGS / "adapters" / "ft232r.toml")
    data = profile.to_dict()
    assert data["vid"] == "0403" and data["pid"] == "6001" and data["usb_id"] == "0403:6001"
    assert data["lines"] == ["rts", "cts", "dtr", "dsr", "dcd", "ri"]
    json.dumps(data)


# --- TOML errors ----------------------------------------------------------------------


def test_syntax_error_names_file_and_line(tmp_path: Path) -> None:
    content = GOOD.replace('chip = "TEST1"', 'chip = "TEST1" extra')
    path = adapter_file(tmp_path, content)
    error = load_error(path)
    assert error.path == str(path)
    assert error.line == line_of(content, "extra")
    assert str(error).startswith(f"{path}:{error.line}: invalid TOML")
    assert isinstance(error, ConfigError)


def test_syntax_error_unterminated_string(tmp_path: Path) -> None:
    content = '[adapter]\n\n\nchip = "oops\n'
    path = write(tmp_path / "x.toml", content)
    with pytest.raises(ProfileError) as info:
        load_toml(path)
    assert info.value.path == str(path)
    assert info.value.line == 4


def test_not_utf8_is_a_profile_error(tmp_path: Path) -> None:
    path = tmp_path / "adapters" / "latin1.toml"
    path.parent.mkdir()
    path.write_bytes(b'[adapter]\nchip = "caf\xe9"\n')
    error = load_error(path)
    assert error.path == str(path)
    assert error.line == 2
    assert "UTF-8" in str(error)


def test_missing_file_is_a_profile_error(tmp_path: Path) -> None:
    with pytest.raises(ProfileError) as info:
        load_toml(tmp_path / "nope.toml")
    assert info.value.path == str(tmp_path / "nope.toml")


# --- schema errors --------------------------------------------------------------------


def test_unknown_key_names_its_line(tmp_path: Path) -> None:
    content = GOOD.replace("max_baud = 3000000", "max_buad = 3000000")
    error = load_error(adapter_file(tmp_path, content))
    assert error.line == line_of(content, "max_buad")
    assert "max_buad" in str(error)
    assert "did you mean 'max_baud'" in str(error)


def test_unknown_top_level_table(tmp_path: Path) -> None:
    content = GOOD + "\n[adaptor]\nchip = 'x'\n"
    error = load_error(adapter_file(tmp_path, content))
    assert error.line == line_of(content, "[adaptor]")
    assert "adaptor" in str(error)


@pytest.mark.parametrize(
    ("replacement", "message"),
    [
        ("vid = 0x10000", "out of range"),
        ('vid = "04G3"', "not a hex number"),
        ("vid = -1", "out of range"),
        ("vid = true", "boolean"),
        ("vid = 1.5", "float"),
    ],
)
def test_bad_vid(tmp_path: Path, replacement: str, message: str) -> None:
    content = GOOD.replace("vid = 0x0403", replacement)
    error = load_error(adapter_file(tmp_path, content))
    assert error.line == line_of(content, "vid =")
    assert message in str(error)


def test_bad_line_name_in_multiline_array(tmp_path: Path) -> None:
    content = GOOD.replace(
        'lines = ["rts", "cts", "dtr", "dsr", "dcd", "ri"]',
        'lines = [\n    "rts",\n    "cts",\n    "rst",\n]',
    )
    error = load_error(adapter_file(tmp_path, content))
    assert error.line == line_of(content, '"rst"')
    assert "'rst'" in str(error)


def test_bad_line_name_on_one_line(tmp_path: Path) -> None:
    content = GOOD.replace('"ri"]', '"ring"]')
    error = load_error(adapter_file(tmp_path, content))
    assert error.line == line_of(content, "lines =")


def test_duplicate_line_name(tmp_path: Path) -> None:
    content = GOOD.replace('"ri"]', '"rts"]')
    error = load_error(adapter_file(tmp_path, content))
    assert "twice" in str(error)


@pytest.mark.parametrize(
    ("replacement", "message"),
    [
        ("max_baud = 0", "at least 1"),
        ("max_baud = -9600", "at least 1"),
        ('max_baud = "fast"', "expected an integer"),
        ("max_baud = true", "expected an integer"),
    ],
)
def test_bad_max_baud(tmp_path: Path, replacement: str, message: str) -> None:
    content = GOOD.replace("max_baud = 3000000", replacement)
    error = load_error(adapter_file(tmp_path, content))
    assert error.line == line_of(content, "max_baud")
    assert message in str(error)


def test_wrong_types(tmp_path: Path) -> None:
    content = GOOD.replace("custom_baud = true", 'custom_baud = "yes"')
    error = load_error(adapter_file(tmp_path, content))
    assert error.line == line_of(content, "custom_baud")
    content = GOOD.replace('quirks = ["none worth mentioning"]', 'quirks = "one"')
    error = load_error(adapter_file(tmp_path, content))
    assert error.line == line_of(content, "quirks")
    content = GOOD.replace('chip = "TEST1"', "chip = 7")
    error = load_error(adapter_file(tmp_path, content))
    assert error.line == line_of(content, "chip")


def test_missing_required_key_points_at_table(tmp_path: Path) -> None:
    content = GOOD.replace('chip = "TEST1"\n', "")
    error = load_error(adapter_file(tmp_path, content))
    assert error.line == line_of(content, "[adapter]")
    assert "'chip'" in str(error)


def test_missing_table(tmp_path: Path) -> None:
    error = load_error(adapter_file(tmp_path, "# nothing here\n"))
    assert "missing [adapter]" in str(error)


def test_vid_without_pid(tmp_path: Path) -> None:
    content = GOOD.replace("pid = 0x6001\n", "")
    error = load_error(adapter_file(tmp_path, content))
    assert error.line == line_of(content, "vid =")
    assert "pid" in str(error)


def test_id_profile_needs_max_baud(tmp_path: Path) -> None:
    content = GOOD.replace("max_baud = 3000000\n", "")
    error = load_error(adapter_file(tmp_path, content))
    assert "max_baud" in str(error)
    assert error.line == line_of(content, "[adapter]")


def test_class_matched_profile(tmp_path: Path) -> None:
    content = textwrap.dedent(
        """\
        [adapter]
        chip = "ACM"
        description = "class matched"
        match_driver = ["cdc_acm"]
        match_interface_class = "02"
        match_interface_subclass = 2
        lines = ["dtr", "rts"]
        """
    )
    profile = load_adapter_profile(adapter_file(tmp_path, content))
    assert profile.vid is None and profile.max_baud is None
    assert profile.match_interface_class == 2 and profile.match_interface_subclass == 2
    assert profile.custom_baud is False and profile.quirks == ()


def test_class_match_cannot_mix_with_vid(tmp_path: Path) -> None:
    content = GOOD + 'match_driver = ["cdc_acm"]\n'
    error = load_error(adapter_file(tmp_path, content))
    assert error.line == line_of(content, "match_driver")


def test_profile_needs_some_way_to_match(tmp_path: Path) -> None:
    content = GOOD.replace("vid = 0x0403\n", "").replace("pid = 0x6001\n", "")
    error = load_error(adapter_file(tmp_path, content))
    assert "match_driver" in str(error)


def test_subclass_needs_class(tmp_path: Path) -> None:
    content = '[adapter]\nchip = "x"\ndescription = "x"\nlines = []\nmatch_interface_subclass = 2\n'
    error = load_error(adapter_file(tmp_path, content))
    assert error.line == 5


def test_interface_class_range(tmp_path: Path) -> None:
    content = (
        '[adapter]\nchip = "x"\ndescription = "x"\nlines = []\nmatch_interface_class = 0x100\n'
    )
    error = load_error(adapter_file(tmp_path, content))
    assert error.line == 5
    assert "out of range" in str(error)


# --- vid as string or integer ---------------------------------------------------------


@pytest.mark.parametrize("written", ['"0403"', '"0x0403"', "0x0403", "1027", '"403"'])
def test_vid_string_or_int(tmp_path: Path, written: str) -> None:
    content = GOOD.replace("vid = 0x0403", f"vid = {written}").replace(
        "pid = 0x6001", 'pid = "6001"'
    )
    profile = load_adapter_profile(adapter_file(tmp_path, content))
    assert profile.vid == 0x0403
    assert profile.pid == 0x6001
    assert profile.usb_id == "0403:6001"


# --- search path and overrides --------------------------------------------------------


def test_override_order_through_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    adapter_file(first, GOOD.replace("TEST1", "FROM-FIRST"), "shared.toml")
    adapter_file(second, GOOD.replace("TEST1", "FROM-SECOND"), "shared.toml")
    adapter_file(second, GOOD.replace("TEST1", "ONLY-SECOND"), "other.toml")
    # an override of a shipped profile, by name
    adapter_file(second, GOOD.replace("TEST1", "MY-FT232R"), "ft232r.toml")
    missing = tmp_path / "does-not-exist"
    monkeypatch.setenv(hwconfig.ENV_VAR, os.pathsep.join(map(str, [first, missing, second])))

    dirs = config_dirs()
    assert dirs[:2] == [first, second]
    assert missing not in dirs

    profiles = load_adapter_profiles()
    by_name = {p.name: p for p in profiles}
    assert by_name["shared"].chip == "FROM-FIRST"
    assert by_name["shared"].path == first / "adapters" / "shared.toml"
    assert by_name["other"].chip == "ONLY-SECOND"
    assert by_name["ft232r"].chip == "MY-FT232R"
    assert by_name["cp2102"].path.parent == REPO_CONFIGS / "adapters"
    assert [p.name for p in profiles].count("ft232r") == 1
    # user directories come first in search order
    names = [p.name for p in profiles]
    assert names.index("shared") < names.index("cp2102")


def test_broken_user_profile_is_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = adapter_file(tmp_path, GOOD.replace("lines =", "linez ="), "bad.toml")
    monkeypatch.setenv(hwconfig.ENV_VAR, str(tmp_path))
    with pytest.raises(ProfileError) as info:
        load_adapter_profiles()
    assert info.value.path == str(path)


# --- key_line and the generic helper --------------------------------------------------


def test_key_line() -> None:
    content = textwrap.dedent(
        """\
        title = "x"          # line 1
        [adapter]            # line 2
        chip = "a"
        "quoted key" = 1
        notes = '''
        fake = 1
        '''
        fake = 2
        [modem.timeouts]     # line 9
        ok = 3
        [[modem.commands]]
        send = "AT"
        """
    )
    assert key_line(content, None, "title") == 1
    assert key_line(content, None, "adapter") == 2
    assert key_line(content, "adapter", "chip") == 3
    assert key_line(content, "adapter", "quoted key") == 4
    assert key_line(content, "adapter", "fake") == 8  # not the one inside the string
    assert key_line(content, None, "modem") == 9
    assert key_line(content, "modem", "timeouts") == 9
    assert key_line(content, "modem.timeouts", "ok") == 10
    assert key_line(content, "modem.commands", "send") == 12
    assert key_line(content, "adapter", "absent") is None


def test_validate_table_for_other_profile_kinds(tmp_path: Path) -> None:
    """The generic helper the modem and board loaders reuse."""
    content = textwrap.dedent(
        """\
        [modem]
        model = "Test modem"
        vid = "1e0e"
        init = ["ATZ", "ATE0"]

        [modem.timeouts]
        command = 2
        dial = -5
        """
    )
    doc = read_document(write(tmp_path / "modems" / "m.toml", content))
    fields = [
        Field("model", text(), required=True),
        Field("vid", hex_id()),
        Field("init", text_list(), default=()),
        Field("baud", integer(minimum=1), default=115200),
    ]
    values = validate_table(doc, "modem", fields, subtables={"timeouts"})
    assert values == {"model": "Test modem", "vid": 0x1E0E, "init": ("ATZ", "ATE0"), "baud": 115200}
    timeouts = [Field("command", integer(minimum=0)), Field("dial", integer(minimum=0))]
    with pytest.raises(ProfileError) as info:
        validate_table(doc, "modem.timeouts", timeouts)
    assert info.value.line == 8
    assert "[modem.timeouts] dial" in str(info.value)
    with pytest.raises(ProfileError) as info:
        validate_table(doc, "modem", fields)  # timeouts not declared as a subtable
    assert info.value.line == 6
