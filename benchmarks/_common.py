"""What the benchmarks share: the machine's description, median summaries, their
formatting, the command line that ran, progress on stderr and the final output."""

from __future__ import annotations

import datetime
import json
import os
import platform
import shlex
import shutil
import statistics
import subprocess
import sys
from collections.abc import Callable
from typing import Any


def summary(values: list[float]) -> dict[str, Any]:
    return {
        "median": statistics.median(values),
        "min": min(values),
        "max": max(values),
        "values": values,
    }


def fmt(s: dict[str, Any], spec: str) -> str:
    return f"{s['median']:{spec}} [{s['min']:{spec}} .. {s['max']:{spec}}]"


def machine_info(*, pyserial: str | None = None) -> dict[str, Any]:
    """The date, the machine and the software versions; ``pyserial`` (its version)
    is listed when given."""
    socat = shutil.which("socat")
    socat_version = ""
    if socat:
        out = subprocess.run(
            [socat, "-V"], capture_output=True, text=True, timeout=10, check=False
        ).stdout
        for line in out.splitlines():
            if line.startswith("socat version"):
                socat_version = line.strip()
                break
    info: dict[str, Any] = {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "nproc": len(os.sched_getaffinity(0)),
        "cpu_count": os.cpu_count(),
        "kernel": platform.release(),
        "machine": platform.machine(),
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
    }
    if pyserial is not None:
        info["pyserial"] = pyserial
    info["socat"] = socat_version
    info["loadavg_start"] = list(os.getloadavg())
    return info


def command_line() -> str:
    """The command that runs this benchmark, as it would be typed."""
    return shlex.join(
        [os.path.relpath(sys.executable), os.path.relpath(sys.argv[0]), *sys.argv[1:]]
    )


def log(text: str) -> None:
    """Progress, on stderr."""
    print(text, file=sys.stderr, flush=True)


def report(
    result: dict[str, Any], *, as_json: bool, table: Callable[[dict[str, Any]], str]
) -> None:
    """Print ``result`` as one JSON object or as the benchmark's table."""
    if as_json:
        print(json.dumps(result, indent=2))
    else:
        print(table(result))
