import pytest

from serialhs.driver.lines import Line, Lines, parse_line_settings, parse_pulse
from serialhs.errors import ConfigError


def test_parse_line_settings():
    assert parse_line_settings("rts=0,dtr=1") == {Line.RTS: False, Line.DTR: True}
    assert parse_line_settings(" DTR=on ") == {Line.DTR: True}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("cts=1", "input"),
        ("rts", "LINE=STATE"),
        ("rts=maybe", "line state"),
        ("rts=1,rts=0", "twice"),
        ("xyz=1", "unknown control line"),
        ("", "no line settings"),
    ],
)
def test_parse_line_settings_errors(text, message):
    with pytest.raises(ConfigError, match=message):
        parse_line_settings(text)


def test_parse_pulse():
    assert parse_pulse("dtr:0.1") == (Line.DTR, 0.1)
    for bad in ("dtr", "dsr:0.1", "rts:0", "rts:x", "rts:100"):
        with pytest.raises(ConfigError):
            parse_pulse(bad)


def test_snapshot_access_and_changes():
    a = Lines(rts=True, cts=True)
    b = Lines(rts=True, cts=False, ri=True)
    assert a["cts"] and a[Line.RTS] and not a["cd"]
    assert b.changed(a) == {Line.CTS, Line.RI}
    assert a.matches({Line.RTS: True, Line.CTS: True})
    assert not b.matches({Line.CTS: True})
    assert str(a) == "RTS=1 DTR=0 CTS=1 DSR=0 DCD=0 RI=0"
    assert a.as_dict()["rts"] is True
