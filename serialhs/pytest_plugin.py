"""pytest plugin for testing serial code, with or without hardware.

Loaded through the ``pytest11`` entry point wherever serialhs is installed.

Options
    ``--port PORT``  a real serial port or pyserial URL for tests marked ``hardware``
    ``--baud N``     the baud rate for that port (default 115200)

Markers
    ``@pytest.mark.hardware``  the test needs real hardware; it is skipped unless
    ``--port`` is given.
    ``@pytest.mark.wire(**options)``  options for the ``wire`` fixture (the
    keyword arguments of :class:`serialhs.sim.wire.Wire`: settings, wiring,
    faults, seed, paced, overflow, ...). Indirect parametrisation works too:
    ``@pytest.mark.parametrize("wire", [{"settings": "9600 8N1"}], indirect=True)``.

Fixtures
    ``serial_pair``    a started :class:`serialhs.sim.SocatPair` (two connected ptys),
                       stopped after the test whatever its outcome. Fails (never
                       skips) when socat is not installed.
    ``wire``           a started :class:`serialhs.sim.wire.Wire` (a virtual null
                       modem with control lines, UART timing and faults), stopped
                       after the test.
    ``hardware_port``  the ``--port`` value (skips the test when absent)
    ``hardware_baud``  the ``--baud`` value

Importing this module has no side effects: the lab is imported only when a
fixture needs it.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from serialhs.sim import SocatPair
    from serialhs.sim.wire import Wire

__all__ = [
    "DEFAULT_BAUD",
    "HARDWARE_SKIP_REASON",
    "hardware_baud",
    "hardware_port",
    "serial_pair",
    "wire",
]

DEFAULT_BAUD = 115200
HARDWARE_MARKER = "hardware"
HARDWARE_SKIP_REASON = "needs real hardware: run with --port PORT"


# --- command line and markers ------------------------------------------------------------


def _baud(value: str) -> int:
    try:
        baud = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {value!r}") from None
    if baud <= 0:
        raise argparse.ArgumentTypeError(f"must be positive, not {baud}")
    return baud


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("serialhs", "serialhs: serial ports, modems and the virtual lab")
    group.addoption(
        "--port",
        action="store",
        default=None,
        metavar="PORT",
        help="serial port or pyserial URL (e.g. /dev/ttyUSB0, rfc2217://host:port, loop://) "
        f"for tests marked '{HARDWARE_MARKER}'; without it they are skipped",
    )
    group.addoption(
        "--baud",
        action="store",
        type=_baud,
        default=DEFAULT_BAUD,
        metavar="N",
        help=f"baud rate for --port (default {DEFAULT_BAUD})",
    )


WIRE_MARKER = "wire"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{HARDWARE_MARKER}: needs a real serial port given with --port (skipped otherwise)",
    )
    config.addinivalue_line(
        "markers", f"{WIRE_MARKER}(**options): options for the wire fixture (see serialhs.sim.Wire)"
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if _port(config) is not None:
        return
    skip = pytest.mark.skip(reason=HARDWARE_SKIP_REASON)
    for item in items:
        if item.get_closest_marker(HARDWARE_MARKER) is not None:
            item.add_marker(skip)


def _port(config: pytest.Config) -> str | None:
    port: str | None = config.getoption("port")
    return port or None


# --- hardware fixtures ---------------------------------------------------------------------


@pytest.fixture
def hardware_port(request: pytest.FixtureRequest) -> str:
    """The serial port or URL given with ``--port``; skips the test without it."""
    port = _port(request.config)
    if port is None:
        pytest.skip(HARDWARE_SKIP_REASON)
    return port


@pytest.fixture
def hardware_baud(request: pytest.FixtureRequest) -> int:
    """The baud rate given with ``--baud`` (default 115200)."""
    baud: int = request.config.getoption("baud")
    return baud


# --- the virtual lab -----------------------------------------------------------------------


@pytest.fixture
def serial_pair() -> Iterator[SocatPair]:
    """A started pair of connected ptys (``.a`` and ``.b``), stopped after the test.

    A missing socat fails the test: a broken set-up must never pass as a skip.
    """
    # Imported here so that loading the plugin (in every pytest run of every project
    # that has serialhs installed) costs nothing until the lab is actually used.
    from serialhs.errors import ToolMissingError  # noqa: PLC0415
    from serialhs.sim import SocatPair  # noqa: PLC0415

    try:
        pair = SocatPair().start()
    except ToolMissingError as e:
        pytest.fail(f"serial_pair: {e}", pytrace=False)
    try:
        yield pair
    finally:
        pair.stop()


@pytest.fixture
def wire(request: pytest.FixtureRequest) -> Iterator[Wire]:
    """A started virtual null-modem wire (``.a`` and ``.b`` ends), stopped after the test.

    Options come from ``@pytest.mark.wire(...)`` and/or indirect parametrisation
    (a dict); the parameter wins where both give the same option.
    """
    from serialhs.sim.wire import Wire  # noqa: PLC0415

    options: dict[str, object] = {}
    marker = request.node.get_closest_marker(WIRE_MARKER)
    if marker is not None:
        options.update(marker.kwargs)
    param = getattr(request, "param", None)
    if isinstance(param, dict):
        options.update(param)
    elif param is not None:
        pytest.fail(f"wire: indirect parameter must be a dict of options, not {param!r}")
    with Wire(**options) as started:  # type: ignore[arg-type]
        yield started
