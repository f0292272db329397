"""Running a command until Ctrl-C, SIGTERM or a given duration."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable, Iterator
from types import FrameType


@contextlib.contextmanager
def until_stopped() -> Iterator[Callable[[float | None], None]]:
    """While inside, SIGTERM ends a wait instead of the process (so cleanup runs);
    yields ``wait(duration)``, which returns on Ctrl-C, SIGTERM or after
    ``duration`` seconds (None: no limit)."""
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    def wait(duration: float | None) -> None:
        with contextlib.suppress(KeyboardInterrupt):
            stop.wait(duration)

    previous = signal.signal(signal.SIGTERM, on_signal)
    try:
        yield wait
    finally:
        signal.signal(signal.SIGTERM, previous)
