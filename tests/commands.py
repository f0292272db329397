"""Running two ``serialhs`` commands against each other, as two people would on
the two ends of a cable: the listening one first, then the other."""

from __future__ import annotations

import subprocess
import sys


def serialhs_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "serialhs", *args]


def run_pair(
    first: list[str], second: list[str], *, timeout: float = 120.0
) -> tuple[subprocess.CompletedProcess[str], subprocess.CompletedProcess[str]]:
    """``serialhs <first>`` started and left running, then ``serialhs <second>`` run
    to its end; both results (second's first). Neither outlives ``timeout``."""
    listener = subprocess.Popen(
        serialhs_argv(*first), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        other = subprocess.run(
            serialhs_argv(*second), capture_output=True, text=True, timeout=timeout, check=False
        )
        out, err = listener.communicate(timeout=timeout)
    finally:
        if listener.poll() is None:
            listener.kill()
            listener.wait()
    return other, subprocess.CompletedProcess(listener.args, listener.returncode, out, err)
