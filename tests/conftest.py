"""Shared test helpers."""

from __future__ import annotations

import os
from collections.abc import Callable

import pytest

#: The conventional uid/gid of "nobody".
NOBODY = 65534


def _run_unprivileged(fn: Callable[[], str]) -> str:
    """Run ``fn`` as an ordinary user and return what it returns.

    Root is exempt from file permissions and TIOCEXCL, so as root ``fn`` runs in
    a forked child that has dropped to nobody; otherwise it runs here.
    """
    if os.geteuid() != 0:
        return fn()
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child never returns into pytest
        try:
            os.close(read_end)
            os.setgroups([])
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            try:
                message = fn()
            except BaseException as e:
                message = f"UNEXPECTED {type(e).__name__}: {e}"
            os.write(write_end, message.encode())
        finally:
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        message = pipe.read().decode()
    os.waitpid(pid, 0)
    return message


@pytest.fixture
def unprivileged() -> Callable[[Callable[[], str]], str]:
    """Runs a function as an ordinary user (see _run_unprivileged)."""
    return _run_unprivileged
