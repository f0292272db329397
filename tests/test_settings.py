import pytest

from serialhs.driver.settings import FlowControl, Parity, SerialSettings, StopBits
from serialhs.errors import SettingsError


def test_defaults_are_9600_8n1_no_flow():
    s = SerialSettings()
    assert (s.baudrate, s.framing, s.flow) == (9600, "8N1", FlowControl.NONE)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("115200", "115200 8N1 none"),
        ("9600 7E1", "9600 7E1 none"),
        ("9600,7e1,rtscts", "9600 7E1 rtscts"),
        ("xonxoff 57600 8O2", "57600 8O2 xonxoff"),
        ("300 5N1.5", "300 5N1.5 none"),
        ("250000 8M1 dsrdtr", "250000 8M1 dsrdtr"),
    ],
)
def test_parse_round_trips_through_str(text, expected):
    s = SerialSettings.parse(text)
    assert str(s) == expected
    assert SerialSettings.parse(str(s)) == s


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"baudrate": 0}, "out of range"),
        ({"baudrate": -9600}, "out of range"),
        ({"baudrate": 9600.0}, "must be an int"),
        ({"baudrate": True}, "must be an int"),
        ({"bytesize": 9}, "bytesize"),
        ({"parity": "X"}, "parity must be one of"),
        ({"stopbits": 3}, "stopbits must be one of"),
        ({"flow": "hardware"}, "flow must be one of"),
        ({"stopbits": StopBits.ONE_POINT_FIVE}, "only with 5 data bits"),
    ],
)
def test_invalid_settings_are_refused_at_construction(kwargs, message):
    with pytest.raises(SettingsError, match=message):
        SerialSettings(**kwargs)


@pytest.mark.parametrize("text", ["", "fast", "9600 9600", "8N1 7E1", "9600 8X1"])
def test_parse_rejects_nonsense_naming_the_word(text):
    with pytest.raises(SettingsError):
        SerialSettings.parse(text)


def test_values_coerce_from_pyserial_vocabulary():
    s = SerialSettings(19200, 7, "E", 2, "rtscts")
    assert s.parity is Parity.EVEN and s.stopbits is StopBits.TWO and s.rtscts
    assert s.pyserial_kwargs() == {
        "baudrate": 19200,
        "bytesize": 7,
        "parity": "E",
        "stopbits": 2,
        "xonxoff": False,
        "rtscts": True,
        "dsrdtr": False,
    }


def test_settings_are_immutable_and_replace_validates():
    s = SerialSettings(9600)
    with pytest.raises(AttributeError):
        s.baudrate = 1200  # type: ignore[misc]
    assert s.replace(baudrate=1200).baudrate == 1200
    with pytest.raises(SettingsError):
        s.replace(bytesize=4)


def test_character_time_counts_start_parity_and_stop_bits():
    assert SerialSettings(9600).bits_per_char == 10
    assert SerialSettings(9600, 7, Parity.EVEN, StopBits.TWO).bits_per_char == 11
    assert SerialSettings(115200).char_time == pytest.approx(10 / 115200)
    assert SerialSettings(250000).is_standard_rate is False
