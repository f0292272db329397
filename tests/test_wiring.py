"""Wiring maps: shipped profiles, what the inputs show, the command-line form,
and errors that name the file and the line."""

from __future__ import annotations

import ast
import itertools
import re
import textwrap
from pathlib import Path

import pytest

from serialhs import hwconfig
from serialhs.driver.lines import Line
from serialhs.errors import ConfigError, ProfileError
from serialhs.sim.wiring import (
    DEFAULT_WIRING,
    Wiring,
    available_wirings,
    format_pin,
    load_wiring,
    parse_pin,
    parse_wiring,
)

REPO_CONFIGS = Path(__file__).resolve().parent.parent / "hw_configs"
SHIPPED = ["dcd_held", "loopback", "loopback_handshake", "null_modem", "three_wire"]
CTS, DSR, DCD, RI = Line.CTS, Line.DSR, Line.DCD, Line.RI
BOOLS = (False, True)


@pytest.fixture(autouse=True)
def _no_user_dirs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(hwconfig.ENV_VAR, raising=False)


def shipped(name: str) -> Wiring:
    return load_wiring(name, [REPO_CONFIGS])


def wiring_file(tmp_path: Path, content: str, name: str = "test.toml") -> Path:
    path = tmp_path / "wiring" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(content), encoding="utf-8")
    return path


# --- shipped profiles ------------------------------------------------------------------


def test_every_shipped_wiring_loads() -> None:
    assert available_wirings([REPO_CONFIGS]) == SHIPPED
    for name in SHIPPED:
        wiring = shipped(name)
        assert wiring.name == name
        assert wiring.path == REPO_CONFIGS / "wiring" / f"{name}.toml"
        assert wiring.description
        assert wiring.data in ("crossed", "loopback")


def test_default_wiring_is_found_through_the_search_path() -> None:
    assert DEFAULT_WIRING in available_wirings()
    assert load_wiring(DEFAULT_WIRING) == shipped("null_modem")


@pytest.mark.parametrize(
    ("a_out", "b_out"), list(itertools.product(itertools.product(BOOLS, BOOLS), repeat=2))
)
def test_null_modem_crosses_rts_to_cts_and_dtr_to_dsr_and_dcd(
    a_out: tuple[bool, bool], b_out: tuple[bool, bool]
) -> None:
    wiring = shipped("null_modem")
    assert wiring.data == "crossed"
    (a_rts, a_dtr), (b_rts, b_dtr) = a_out, b_out
    assert wiring.inputs(a_out, b_out) == {
        "a": {CTS: b_rts, DSR: b_dtr, DCD: b_dtr, RI: False},
        "b": {CTS: a_rts, DSR: a_dtr, DCD: a_dtr, RI: False},
    }


def test_null_modem_all_four_combinations_of_one_end() -> None:
    wiring = shipped("null_modem")
    seen = {
        (rts, dtr): wiring.inputs((rts, dtr), (False, False))["b"]
        for rts, dtr in itertools.product(BOOLS, BOOLS)
    }
    assert seen == {
        (False, False): {CTS: False, DSR: False, DCD: False, RI: False},
        (True, False): {CTS: True, DSR: False, DCD: False, RI: False},
        (False, True): {CTS: False, DSR: True, DCD: True, RI: False},
        (True, True): {CTS: True, DSR: True, DCD: True, RI: False},
    }
    assert wiring.drivers(("b", CTS)) == (("a", Line.RTS),)
    assert wiring.drivers(("a", DCD)) == (("b", Line.DTR),)
    assert wiring.drivers(("a", RI)) == ()
    assert wiring.targets(("a", Line.DTR)) == (("b", DSR), ("b", DCD))


@pytest.mark.parametrize("name", ["loopback", "loopback_handshake"])
def test_loopback_wirings_return_each_ends_outputs_to_itself(name: str) -> None:
    wiring = shipped(name)
    assert wiring.data == ("loopback" if name == "loopback" else "crossed")
    for a_out, b_out in itertools.product(itertools.product(BOOLS, BOOLS), repeat=2):
        got = wiring.inputs(a_out, b_out)
        for end, (rts, dtr) in (("a", a_out), ("b", b_out)):
            assert got[end] == {CTS: rts, DSR: dtr, DCD: dtr, RI: False}


def test_three_wire_leaves_every_input_off() -> None:
    wiring = shipped("three_wire")
    assert wiring.connect == {} and wiring.held == {}
    off = {CTS: False, DSR: False, DCD: False, RI: False}
    assert wiring.inputs((True, True), (True, True)) == {"a": off, "b": off}


def test_held_inputs_ignore_the_outputs() -> None:
    wiring = shipped("dcd_held")
    assert wiring.held == {("a", DCD): True, ("b", DCD): True}
    assert wiring.is_held(("a", DCD)) and not wiring.is_held(("a", DSR))
    for a_out, b_out in itertools.product(itertools.product(BOOLS, BOOLS), repeat=2):
        got = wiring.inputs(a_out, b_out)
        assert got["a"] == {CTS: b_out[0], DSR: b_out[1], DCD: True, RI: False}
        assert got["b"] == {CTS: a_out[0], DSR: a_out[1], DCD: True, RI: False}


def test_held_off() -> None:
    wiring = parse_wiring("a.rts>b.cts,b.ri=0,a.ri=on")
    assert wiring.inputs((True, True), (True, True))["b"][RI] is False
    assert wiring.inputs((False, False), (False, False))["a"][RI] is True


def test_an_input_driven_by_two_outputs_is_their_or() -> None:
    wiring = parse_wiring("a.rts>b.cts,b.rts>b.cts,a.dtr>b.dsr")
    assert wiring.drivers(("b", CTS)) == (("a", Line.RTS), ("b", Line.RTS))
    for a_rts, b_rts in itertools.product(BOOLS, BOOLS):
        got = wiring.inputs((a_rts, False), (b_rts, False))
        assert got["b"][CTS] is (a_rts or b_rts)


# --- the command-line form ---------------------------------------------------------------


def test_parse_wiring_reads_the_compact_form() -> None:
    text = "a.rts>b.cts,a.dtr>b.dsr+b.dcd,b.rts>a.cts,b.dtr>a.dsr+a.dcd,a.ri=0,data=crossed"
    wiring = parse_wiring(text)
    null_modem = shipped("null_modem")
    assert wiring.connect == null_modem.connect
    assert wiring.held == {("a", RI): False}
    assert wiring.data == "crossed"
    assert wiring.path is None
    assert wiring.to_spec() == text


@pytest.mark.parametrize("name", SHIPPED)
def test_to_spec_round_trips_through_parse_wiring(name: str) -> None:
    wiring = shipped(name)
    again = parse_wiring(wiring.to_spec())
    assert (again.connect, again.held, again.data) == (wiring.connect, wiring.held, wiring.data)


@pytest.mark.parametrize("name", SHIPPED)
def test_to_toml_round_trips_through_load_wiring(name: str, tmp_path: Path) -> None:
    wiring = shipped(name)
    path = wiring_file(tmp_path, wiring.to_toml(), f"{name}.toml")
    again = load_wiring(path)
    assert again == Wiring(
        name=name,
        description=wiring.description,
        data=wiring.data,
        connect=wiring.connect,
        held=wiring.held,
        path=path,
    )


def test_parse_wiring_accepts_spacing_case_cd_and_default_data() -> None:
    wiring = parse_wiring(" A.RTS > b.CTS , a.dtr>b.cd + b.dsr ")
    assert wiring.data == "crossed"
    assert wiring.connect == {
        ("a", Line.RTS): (("b", CTS),),
        ("a", Line.DTR): (("b", DSR), ("b", DCD)),
    }
    assert parse_wiring("data=loopback").data == "loopback"
    assert parse_wiring("a.rts>b.cts,a.rts>b.dcd").targets(("a", Line.RTS)) == (
        ("b", CTS),
        ("b", DCD),
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a.cts>b.rts", "a.cts is an input and cannot drive other lines"),
        ("a.rts>b.rts", "b.rts is an output and cannot be driven"),
        ("a.rts>b.ctx", "unknown line 'ctx' in pin 'b.ctx' (did you mean 'cts'?)"),
        ("c.rts>b.cts", "unknown end 'c'"),
        ("a.rts>b.cts,b.cts=1", "b.cts is both held on and driven by a.rts"),
        ("b.dcd=0,a.dtr>b.dsr+b.dcd", "b.dcd is both held off and driven by a.dtr"),
        ("a.rts=1", "a.rts is an output and cannot be held"),
        ("a.ri=maybe", "cannot read state 'maybe'"),
        ("data=sideways", "data must be 'crossed' or 'loopback'"),
        ("data=crossed,data=loopback", "data is given twice"),
        ("a.rts>b.cts+b.cts", "b.cts is listed twice"),
        ("a.rts>", "a.rts drives nothing"),
        ("a.rts b.cts", "expected OUT>IN"),
        ("a.rts>b.cts,,b.rts>a.cts", "empty item"),
        ("", "empty wiring"),
        ("rts>b.cts", "write END.LINE"),
    ],
)
def test_parse_wiring_errors_are_clear(text: str, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_wiring(text)
    assert expected in str(info.value)
    if text:
        assert repr(text.strip()) in str(info.value)


def test_wiring_checks_direct_construction() -> None:
    with pytest.raises(ConfigError, match=r"a\.cts is an input"):
        Wiring("x", "", "crossed", {("a", CTS): (("b", CTS),)}, {})
    with pytest.raises(ConfigError, match="data must be"):
        Wiring("x", "", "sideways", {}, {})  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="not a pin"):
        Wiring("x", "", "crossed", {("c", Line.RTS): ()}, {})
    with pytest.raises(ConfigError, match="tuple of pins"):
        Wiring("x", "", "crossed", {("a", Line.RTS): ("b", CTS)}, {})  # type: ignore[dict-item]
    with pytest.raises(ConfigError, match="is an output"):
        shipped("null_modem").drivers(("a", Line.RTS))


def test_wiring_is_immutable_and_hashable() -> None:
    wiring = shipped("null_modem")
    with pytest.raises(TypeError):
        wiring.connect[("a", Line.RTS)] = ()  # type: ignore[index]
    assert hash(wiring) == hash(shipped("null_modem"))
    assert wiring != shipped("dcd_held")


def test_pin_helpers() -> None:
    assert parse_pin("B.CD") == ("b", DCD)
    assert format_pin(("a", Line.RTS)) == "a.rts"
    with pytest.raises(ConfigError, match="unknown end"):
        parse_pin("x.rts")


def test_describe_lists_connections_and_unconnected_inputs() -> None:
    lines = shipped("dcd_held").describe()
    assert "a.rts -> b.cts" in lines
    assert "b.dcd held on" in lines
    assert "a.ri not connected (off)" in lines


# --- profiles: lookup and errors ---------------------------------------------------------


def test_unknown_name_lists_the_known_ones() -> None:
    with pytest.raises(ConfigError) as info:
        load_wiring("null_modme", [REPO_CONFIGS])
    message = str(info.value)
    assert "no wiring named 'null_modme' (did you mean 'null_modem'?)" in message
    assert "three_wire" in message


def test_user_directory_overrides_a_shipped_wiring(tmp_path: Path) -> None:
    wiring_file(
        tmp_path,
        """\
        [wiring]
        description = "my own null modem"
        """,
        "null_modem.toml",
    )
    wiring = load_wiring("null_modem", [tmp_path, REPO_CONFIGS])
    assert wiring.description == "my own null modem"
    assert wiring.connect == {}
    assert available_wirings([tmp_path, REPO_CONFIGS]) == SHIPPED


def test_load_by_path_string_and_path(tmp_path: Path) -> None:
    path = wiring_file(tmp_path, '[wiring]\ndescription = "d"\ndata = "loopback"\n', "mine.toml")
    assert load_wiring(str(path)).data == "loopback"
    assert load_wiring(path).name == "mine"


def test_pin_keys_may_not_be_dotted_tables(tmp_path: Path) -> None:
    path = wiring_file(
        tmp_path,
        """\
        [wiring]
        description = "unquoted"

        [wiring.connect]
        a.rts = ["b.cts"]
        """,
    )
    with pytest.raises(ProfileError) as info:
        load_wiring(path)
    assert info.value.line == 5
    assert "quote pin names" in str(info.value)
    assert '"a.rts"' in str(info.value)


BAD_FILES = [
    (
        """\
        [wiring]
        description = "x"
        data = "sideways"
        """,
        3,
        "[wiring] data: 'sideways' is not one of crossed, loopback",
    ),
    (
        """\
        [wiring]
        description = "x"
        dta = "crossed"
        """,
        3,
        "unknown key 'dta' in [wiring] (did you mean 'data'?)",
    ),
    (
        """\
        [wiring]
        data = "crossed"
        """,
        1,
        "missing required key 'description' in [wiring]",
    ),
    (
        """\
        [wiring]
        description = "x"

        [wiring.connect]
        "a.rts" = ["b.cts"]
        "a.cts" = ["b.rts"]
        """,
        6,
        "[wiring.connect] a.cts is an input and cannot drive other lines",
    ),
    (
        """\
        [wiring]
        description = "x"

        [wiring.connect]
        "a.rts" = [
            "b.cts",
            "b.rts",
        ]
        """,
        7,
        "[wiring.connect] a.rts: b.rts is an output and cannot be driven",
    ),
    (
        """\
        [wiring]
        description = "x"

        [wiring.connect]
        "a.dtr" = ["b.dsr", "b.dcx"]
        """,
        5,
        "unknown line 'dcx' in pin 'b.dcx' (did you mean 'dcd'?)",
    ),
    (
        """\
        [wiring]
        description = "x"

        [wiring.connect]
        "a.rts" = ["b.cts"]
        "a.dtr" = ["b.dsr", "b.dcd"]

        [wiring.held]
        "b.ri" = false
        "b.dcd" = true
        """,
        10,
        "[wiring.held] b.dcd is held on but [wiring.connect] drives it from a.dtr",
    ),
    (
        """\
        [wiring]
        description = "x"

        [wiring.held]
        "b.ri" = "yes"
        """,
        5,
        "[wiring.held] b.ri: expected true (held on) or false (held off)",
    ),
    (
        """\
        [wiring]
        description = "x"

        [wiring.held]
        "b.rts" = true
        """,
        5,
        "b.rts is an output and cannot be held",
    ),
    (
        """\
        [wiring]
        description = "x"

        [wiring.connect]
        "c.rts" = ["b.cts"]
        """,
        5,
        "unknown end 'c'",
    ),
    (
        """\
        [wiring]
        description = "x"

        [wiring.connect]
        "A.RTS" = ["b.cts"]
        """,
        5,
        "write pin 'A.RTS' as 'a.rts'",
    ),
    (
        """\
        [wiring]
        description = "x"
        connect = 3
        """,
        3,
        "'wiring.connect' must be a table",
    ),
    (
        """\
        [wiring]
        description = "x"

        [wiring.connect]
        "a.rts" = ["b.cts", "b.cts"]
        """,
        5,
        "'b.cts' is listed twice",
    ),
    (
        """\
        [wiring]
        description = "x"

        [cable]
        colour = "grey"
        """,
        4,
        "unknown top-level key or table 'cable'",
    ),
    (
        """\
        [wiring]
        description = "x"
        data = crossed
        """,
        3,
        "invalid TOML",
    ),
]


@pytest.mark.parametrize(("content", "line", "expected"), BAD_FILES)
def test_profile_errors_name_file_and_line(
    tmp_path: Path, content: str, line: int, expected: str
) -> None:
    path = wiring_file(tmp_path, content)
    with pytest.raises(ProfileError) as info:
        load_wiring(path)
    assert info.value.path == str(path)
    assert info.value.line == line, str(info.value)
    assert str(info.value).startswith(f"{path}:{line}: ")
    assert expected in str(info.value)


def test_profile_errors_by_name_name_the_file(tmp_path: Path) -> None:
    path = wiring_file(tmp_path, '[wiring]\ndescription = "x"\ndata = "up"\n', "broken.toml")
    with pytest.raises(ProfileError, match=rf"^{re.escape(str(path))}:3: "):
        load_wiring("broken", [tmp_path])


IO_MODULES = {
    "asyncio", "fcntl", "pty", "select", "selectors", "serial", "socket", "subprocess",
    "termios", "threading", "time",
}  # fmt: skip


@pytest.mark.parametrize("module", ["wiring", "trace"])
def test_module_imports_no_io_module(module: str) -> None:
    """The wire's sans-I/O core uses these modules: they import nothing that does I/O."""
    source = Path(__file__).resolve().parent.parent / "serialhs" / "sim" / f"{module}.py"
    imported: set[str] = set()
    for node in ast.walk(ast.parse(source.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            imported.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module.split(".")[0])
    assert not imported & IO_MODULES
