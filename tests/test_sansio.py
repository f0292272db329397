"""Protocol cores are sans-I/O: importing one brings no sockets, threads or ports."""

from __future__ import annotations

import subprocess
import sys

import pytest

IO_MODULES = ("socket", "select", "selectors", "threading", "subprocess", "serial", "asyncio")

CORES = [
    "serialhs.sim.uart",
    "serialhs.sim.faults",
    "serialhs.sim.wiring",
    "serialhs.sim.trace",
    "serialhs.sim.wirecore",
    "serialhs.sim.hayes",
    "serialhs.modem.atcore",
    "serialhs.modem.chat",
    "serialhs.negotiate.frames",
    "serialhs.negotiate.capabilities",
    "serialhs.negotiate.handshake",
    "serialhs.negotiate.xmodem",
    "serialhs.negotiate.transfer",
    "serialhs.negotiate.channel",
    "serialhs.negotiate.fileproto",
]


@pytest.mark.parametrize("module", CORES)
def test_a_core_imports_no_io(module):
    code = f"import sys, {module}\nprint(','.join(m for m in {IO_MODULES!r} if m in sys.modules))"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert result.stdout.strip() == "", f"{module} pulled in: {result.stdout.strip()}"
