"""Modems: the AT command engine, chat scripts and modem profiles.

    from serialhs.modem import ATCore, Final, ResultCode, error_for

Names are loaded on first use, so that importing the sans-I/O AT core
(:mod:`serialhs.modem.atcore`) or its tables (:mod:`serialhs.modem.results`)
brings no ports, processes or threads. Submodules are imported as usual
(``from serialhs.modem.chat import ...``); a name is listed here only when it
means one thing across the package.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from serialhs._lazy import lazy_getattr

if TYPE_CHECKING:
    from serialhs.modem.atcore import (
        ATCore,
        Data,
        DataMode,
        Echo,
        Final,
        Garbage,
        Intermediate,
        Prompt,
        Timeout,
        Unsolicited,
        error_for,
        format_command,
        quote,
        response_prefixes,
    )
    from serialhs.modem.results import ResultCode

_WHERE = {
    "ATCore": "atcore",
    "Data": "atcore",
    "DataMode": "atcore",
    "Echo": "atcore",
    "Final": "atcore",
    "Garbage": "atcore",
    "Intermediate": "atcore",
    "Prompt": "atcore",
    "ResultCode": "results",
    "Timeout": "atcore",
    "Unsolicited": "atcore",
    "error_for": "atcore",
    "format_command": "atcore",
    "quote": "atcore",
    "response_prefixes": "atcore",
}

__all__ = [
    "ATCore",
    "Data",
    "DataMode",
    "Echo",
    "Final",
    "Garbage",
    "Intermediate",
    "Prompt",
    "ResultCode",
    "Timeout",
    "Unsolicited",
    "error_for",
    "format_command",
    "quote",
    "response_prefixes",
]


__getattr__ = lazy_getattr("serialhs.modem", _WHERE)
