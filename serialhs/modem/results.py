"""Result-code tables for the AT engine: data, not code.

Everything the AT core (:mod:`serialhs.modem.atcore`) knows about result codes is
here, as tables it consults:

- :class:`ResultCode`, the final result codes;
- :data:`VERBOSE_RESULTS`, the verbose (ATV1) words for each code;
- the numeric (ATV0) tables, one per vendor family (:data:`NUMERIC_TABLES`);
- :data:`CME_ERRORS` and :data:`CMS_ERRORS`, what +CME/+CMS error numbers mean;
- :data:`ERROR_HINTS` and :data:`CODE_HINTS`, what to try after some failing results
  (the error classes in :mod:`serialhs.errors` carry the rest).

Numeric result codes (ATV0)
---------------------------
Codes 0-4 and 6-8 are ITU-T V.250 (07/2003) section 5.7.1, table 1; every
modem agrees on them. Above that, vendors disagree: the same number is a
different CONNECT speed on a Rockwell/Conexant, a ZyXEL, a Lucent or a USRobotics
modem (ZyXEL's 13 is CONNECT 14400 where Rockwell's is CONNECT 7200). What the
core gets wrong with the wrong table is the speed text, never the code: every
entry below that is a CONNECT says CONNECT. A modem profile can pass its own
table (any ``Mapping[int, NumericResult]``) to the core.

``v250``
    0 OK, 1 CONNECT, 2 RING, 3 NO CARRIER, 4 ERROR, 6 NO DIALTONE, 7 BUSY,
    8 NO ANSWER.
``hayes`` (v250 plus the Hayes Smartmodem 1200/2400 speed codes)
    5 CONNECT 1200, 9 CONNECT 600, 10 CONNECT 2400.
``rockwell`` (hayes plus the Rockwell/Conexant extended set, as listed in the
Conexant-chipset modem manuals, e.g. Multi-Tech MT2456SMI-22 developer's guide,
chapter 4; the default)
    11 CONNECT 4800, 12 CONNECT 9600, 13 CONNECT 7200, 14 CONNECT 12000,
    15 CONNECT 14400, 16 CONNECT 19200, 17 CONNECT 38400, 18 CONNECT 57600,
    19 CONNECT 115200, 20 CONNECT 230400, 22 CONNECT 75TX/1200RX,
    23 CONNECT 1200TX/75RX, 24 DELAYED, 32 BLACKLISTED, 59 CONNECT 16800,
    61 CONNECT 21600, 62 CONNECT 24000, 63 CONNECT 26400, 64 CONNECT 28800,
    84 CONNECT 33600, 91 CONNECT 31200.

Numbers that are intermediate reports on those modems (CARRIER ..., PROTOCOL:
..., COMPRESSION: ...) are deliberately absent: an unknown number is an
information line, never a final result.
"""

from __future__ import annotations

import dataclasses
import enum
import re
from collections.abc import Mapping
from types import MappingProxyType

from serialhs.errors import ConfigError

__all__ = [
    "CME_ERRORS",
    "CMS_ERRORS",
    "CODE_HINTS",
    "DEFAULT_NUMERIC",
    "ERROR_HINTS",
    "HAYES_NUMERIC",
    "NUMERIC_TABLES",
    "ROCKWELL_NUMERIC",
    "V250_NUMERIC",
    "VERBOSE_RESULTS",
    "NumericResult",
    "ParsedResult",
    "ResultCode",
    "numeric_table",
    "parse_result",
]


class ResultCode(enum.Enum):
    """A final result code (and RING, which the core always reports as unsolicited)."""

    OK = "OK"
    CONNECT = "CONNECT"
    RING = "RING"
    NO_CARRIER = "NO CARRIER"
    ERROR = "ERROR"
    NO_DIALTONE = "NO DIALTONE"
    BUSY = "BUSY"
    NO_ANSWER = "NO ANSWER"
    CME_ERROR = "+CME ERROR"
    CMS_ERROR = "+CMS ERROR"
    DELAYED = "DELAYED"
    BLACKLISTED = "BLACKLISTED"

    @property
    def success(self) -> bool:
        """True for the results that end a command well: OK and CONNECT."""
        return self in (ResultCode.OK, ResultCode.CONNECT)


#: The verbose (ATV1) form of each final result that is a fixed word. CONNECT
#: (with optional text) and +CME/+CMS ERROR (with a number or text) are matched
#: by :func:`parse_result` itself. "NO DIAL TONE" is how ZyXEL and Multi-Tech
#: spell NO DIALTONE.
VERBOSE_RESULTS: Mapping[str, ResultCode] = MappingProxyType(
    {
        "OK": ResultCode.OK,
        "CONNECT": ResultCode.CONNECT,
        "RING": ResultCode.RING,
        "NO CARRIER": ResultCode.NO_CARRIER,
        "ERROR": ResultCode.ERROR,
        "NO DIALTONE": ResultCode.NO_DIALTONE,
        "NO DIAL TONE": ResultCode.NO_DIALTONE,
        "BUSY": ResultCode.BUSY,
        "NO ANSWER": ResultCode.NO_ANSWER,
        "DELAYED": ResultCode.DELAYED,
        "BLACKLISTED": ResultCode.BLACKLISTED,
    }
)


@dataclasses.dataclass(frozen=True, slots=True)
class NumericResult:
    """One row of a numeric result table: the code and its verbose text."""

    code: ResultCode
    text: str


def _rows(rows: Mapping[int, str]) -> dict[int, NumericResult]:
    out: dict[int, NumericResult] = {}
    for number, text in rows.items():
        word = "CONNECT" if text.startswith("CONNECT") else text
        out[number] = NumericResult(VERBOSE_RESULTS[word], text)
    return out


_V250 = {
    0: "OK",
    1: "CONNECT",
    2: "RING",
    3: "NO CARRIER",
    4: "ERROR",
    6: "NO DIALTONE",
    7: "BUSY",
    8: "NO ANSWER",
}
_HAYES = {**_V250, 5: "CONNECT 1200", 9: "CONNECT 600", 10: "CONNECT 2400"}
_ROCKWELL = {
    **_HAYES,
    11: "CONNECT 4800",
    12: "CONNECT 9600",
    13: "CONNECT 7200",
    14: "CONNECT 12000",
    15: "CONNECT 14400",
    16: "CONNECT 19200",
    17: "CONNECT 38400",
    18: "CONNECT 57600",
    19: "CONNECT 115200",
    20: "CONNECT 230400",
    22: "CONNECT 75TX/1200RX",
    23: "CONNECT 1200TX/75RX",
    24: "DELAYED",
    32: "BLACKLISTED",
    59: "CONNECT 16800",
    61: "CONNECT 21600",
    62: "CONNECT 24000",
    63: "CONNECT 26400",
    64: "CONNECT 28800",
    84: "CONNECT 33600",
    91: "CONNECT 31200",
}

V250_NUMERIC: Mapping[int, NumericResult] = MappingProxyType(_rows(_V250))
HAYES_NUMERIC: Mapping[int, NumericResult] = MappingProxyType(_rows(_HAYES))
ROCKWELL_NUMERIC: Mapping[int, NumericResult] = MappingProxyType(_rows(_ROCKWELL))

#: The numeric tables by name (see the module docstring for their sources).
NUMERIC_TABLES: Mapping[str, Mapping[int, NumericResult]] = MappingProxyType(
    {"v250": V250_NUMERIC, "hayes": HAYES_NUMERIC, "rockwell": ROCKWELL_NUMERIC}
)
DEFAULT_NUMERIC = "rockwell"


def numeric_table(table: str | Mapping[int, NumericResult]) -> Mapping[int, NumericResult]:
    """A numeric table given by name (``"v250"``, ``"hayes"``, ``"rockwell"``) or as
    a mapping. Raises :class:`~serialhs.errors.ConfigError` for an unknown name."""
    if isinstance(table, str):
        try:
            return NUMERIC_TABLES[table]
        except KeyError:
            known = ", ".join(sorted(NUMERIC_TABLES))
            raise ConfigError(
                f"unknown numeric result table {table!r}; known tables: {known}"
            ) from None
    return table


# -- +CME ERROR (3GPP TS 27.007 section 9.2) and +CMS ERROR (3GPP TS 27.005 section 3.2.5) --

#: The commonest +CME ERROR numbers (3GPP TS 27.007, section 9.2.1).
CME_ERRORS: Mapping[int, str] = MappingProxyType(
    {
        0: "phone failure",
        1: "no connection to phone",
        2: "phone-adaptor link reserved",
        3: "operation not allowed",
        4: "operation not supported",
        5: "PH-SIM PIN required",
        10: "SIM not inserted",
        11: "SIM PIN required",
        12: "SIM PUK required",
        13: "SIM failure",
        14: "SIM busy",
        15: "SIM wrong",
        16: "incorrect password",
        17: "SIM PIN2 required",
        18: "SIM PUK2 required",
        20: "memory full",
        21: "invalid index",
        22: "not found",
        23: "memory failure",
        24: "text string too long",
        25: "invalid characters in text string",
        26: "dial string too long",
        27: "invalid characters in dial string",
        30: "no network service",
        31: "network timeout",
        32: "network not allowed - emergency calls only",
        50: "incorrect parameters",
        100: "unknown",
    }
)

#: The commonest +CMS ERROR numbers (3GPP TS 27.005, section 3.2.5).
CMS_ERRORS: Mapping[int, str] = MappingProxyType(
    {
        300: "ME failure",
        301: "SMS service of ME reserved",
        302: "operation not allowed",
        303: "operation not supported",
        304: "invalid PDU mode parameter",
        305: "invalid text mode parameter",
        310: "SIM not inserted",
        311: "SIM PIN required",
        312: "PH-SIM PIN required",
        313: "SIM failure",
        314: "SIM busy",
        315: "SIM wrong",
        316: "SIM PUK required",
        317: "SIM PIN2 required",
        318: "SIM PUK2 required",
        320: "memory failure",
        321: "invalid memory index",
        322: "memory full",
        330: "SMSC address unknown",
        331: "no network service",
        332: "network timeout",
        340: "no +CNMA acknowledgement expected",
        500: "unknown error",
    }
)

#: What to try after the failing results that have no error class of their own
#: (they come out as a plain ModemResultError).
ERROR_HINTS: Mapping[ResultCode, str] = MappingProxyType(
    {
        ResultCode.DELAYED: (
            "the modem delays redialling this number (country blacklisting rules); "
            "wait before dialling it again"
        ),
        ResultCode.BLACKLISTED: (
            "the modem has blacklisted this number after failed calls; reset the modem "
            "(ATZ) or wait for the blacklist to clear"
        ),
    }
)

#: What to try for +CME/+CMS error numbers that have a clear remedy.
CODE_HINTS: Mapping[tuple[ResultCode, int], str] = MappingProxyType(
    {
        **{(ResultCode.CME_ERROR, n): "insert or reseat the SIM card" for n in (10, 13, 15)},
        (ResultCode.CME_ERROR, 11): 'enter the PIN with AT+CPIN="<pin>"',
        (ResultCode.CME_ERROR, 12): 'unblock the SIM with AT+CPIN="<puk>","<new pin>"',
        (ResultCode.CME_ERROR, 14): "the SIM is busy; retry in a few seconds",
        (ResultCode.CME_ERROR, 30): "no network service; check the antenna and coverage",
        (ResultCode.CMS_ERROR, 310): "insert or reseat the SIM card",
        (ResultCode.CMS_ERROR, 311): 'enter the PIN with AT+CPIN="<pin>"',
        (ResultCode.CMS_ERROR, 314): "the SIM is busy; retry in a few seconds",
        (ResultCode.CMS_ERROR, 330): 'set the SMS centre address with AT+CSCA="<number>"',
        (ResultCode.CMS_ERROR, 331): "no network service; check the antenna and coverage",
    }
)


# -- parsing one line ------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class ParsedResult:
    """What :func:`parse_result` found: the code, and the number or text that goes
    with it (CONNECT text; +CME/+CMS number or text), or None."""

    code: ResultCode
    value: int | str | None


_NUMERIC = re.compile(r"0|[1-9][0-9]{0,2}")
_EXTENDED_ERROR = re.compile(r"\+(CME|CMS) ERROR:\s*(.*)", re.IGNORECASE)
_ERROR_NUMBER = re.compile(r"[0-9]{1,9}")


def parse_result(text: str, *, numeric: Mapping[int, NumericResult] | None) -> ParsedResult | None:
    """The result code in one received line, or None if it is not one.

    ``text`` is the line with surrounding white space removed. Verbose forms:
    the words of :data:`VERBOSE_RESULTS`, ``CONNECT <text>``, and
    ``+CME ERROR:``/``+CMS ERROR:`` followed by a number or text, with or without
    a space after the colon. With ``numeric`` (a table), a line of digits written
    without leading zeros ("0", "10"; never "000", which is an S-register value)
    is looked up in it.
    """
    code = VERBOSE_RESULTS.get(text)
    if code is not None:
        return ParsedResult(code, None)
    if text.startswith("CONNECT "):
        return ParsedResult(ResultCode.CONNECT, text[len("CONNECT ") :].strip() or None)
    match = _EXTENDED_ERROR.fullmatch(text)
    if match is not None:
        kind = ResultCode.CME_ERROR if match.group(1).upper() == "CME" else ResultCode.CMS_ERROR
        detail = match.group(2).strip()
        value: int | str | None = (
            int(detail) if _ERROR_NUMBER.fullmatch(detail) else (detail or None)
        )
        return ParsedResult(kind, value)
    if numeric is not None and _NUMERIC.fullmatch(text):
        row = numeric.get(int(text))
        if row is not None:
            connect = row.text[len("CONNECT ") :] if row.text.startswith("CONNECT ") else None
            return ParsedResult(row.code, connect)
    return None
