"""The driver's side of the virtual wire's line channel.

A pty has no modem control lines, no break and (on recent Linux kernels) no
framing. When a serialhs :class:`~serialhs.driver.port.Port` opens a pty that is
an end of a serialhs virtual wire, it finds the wire's side channel here and
routes those through it, so code written for a real adapter drives the wire
unchanged.

Finding it: the wire puts a unix socket named after the pty (``pts_7.sock`` for
/dev/pts/7) in :func:`registry_dir`, a directory only its user can enter. The
port connects and says ``hello``; the wire answers with the device number of its
pty, which must match the descriptor the port opened (pty numbers are reused).

The protocol is JSON, one object per line each way, request then reply:

    {"op": "hello"}                        -> {"ok": true, "end": "a", "rdev": 34823}
    {"op": "lines"}                        -> {"ok": true, "lines": {"rts": true, ...}}
    {"op": "set", "rts": true, "dtr": null} -> {"ok": true, "lines": {...}}
    {"op": "break", "on": true}            -> {"ok": true}
    {"op": "settings", "settings": "9600 7E1 rtscts"} -> {"ok": true}
    {"op": "stats"}                        -> {"ok": true, "stats": {"framing_errors": 0, ...}}
    {"op": "tx_idle"}                      -> {"ok": true, "idle": false}

A failed request answers ``{"ok": false, "error": "..."}``.
"""

from __future__ import annotations

import errno
import json
import os
import socket
import threading
from pathlib import Path
from typing import Any

from serialhs.driver.lines import Lines
from serialhs.driver.settings import SerialSettings

__all__ = ["REGISTRY_ENV", "WireLineAccess", "find_wire", "registry_dir", "socket_name"]

REGISTRY_ENV = "SERIALHS_WIRE_REGISTRY"
#: Longest reply accepted from the wire.
MAX_REPLY = 65536
#: How long one request may take before the wire counts as gone.
REQUEST_TIMEOUT = 2.0


def registry_dir() -> Path:
    """Where wires publish their side channels (created by the wire, mode 0700)."""
    override = os.environ.get(REGISTRY_ENV)
    if override:
        return Path(override)
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime and os.path.isdir(runtime):
        return Path(runtime) / "serialhs" / "wires"
    return Path(f"/tmp/serialhs-{os.getuid()}") / "wires"  # noqa: S108 (private: mode 0700)


def socket_name(device: str) -> str:
    """``/dev/pts/7`` -> ``pts_7.sock``."""
    name = os.path.realpath(device).removeprefix("/dev/").replace("/", "_")
    return f"{name}.sock"


class WireLineAccess:
    """Line access for a serialhs Port opened on a wire's pty."""

    supported = True
    atomic = True  # the wire applies RTS and DTR together

    def __init__(self, path: Path, rdev: int) -> None:
        self.path = path
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(REQUEST_TIMEOUT)
        try:
            sock.connect(str(path))
        except OSError:
            sock.close()
            raise
        self._sock = sock
        self._buffer = bytearray()
        self._lock = threading.Lock()  # one request and its reply at a time
        reply = self._call({"op": "hello"})
        if reply.get("rdev") != rdev:
            self.close()
            raise ConnectionRefusedError(errno.ECONNREFUSED, "a different pty owns this name")
        self.end = str(reply.get("end", "?"))

    def _call(self, request: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            return self._exchange(request)

    def _exchange(self, request: dict[str, Any]) -> dict[str, Any]:
        try:
            self._sock.sendall(json.dumps(request).encode() + b"\n")
            while b"\n" not in self._buffer:
                chunk = self._sock.recv(4096)
                if not chunk:
                    raise ConnectionResetError(errno.ECONNRESET, "the wire went away")
                self._buffer += chunk
                if len(self._buffer) > MAX_REPLY:
                    raise OSError(errno.EPROTO, "over-long reply from the wire")
        except TimeoutError as e:
            raise OSError(errno.ETIMEDOUT, "the wire did not answer") from e
        line, _, rest = bytes(self._buffer).partition(b"\n")
        self._buffer = bytearray(rest)
        try:
            reply = json.loads(line)
        except ValueError as e:
            raise OSError(errno.EPROTO, f"bad reply from the wire: {line[:80]!r}") from e
        if not isinstance(reply, dict) or not reply.get("ok"):
            error = reply.get("error") if isinstance(reply, dict) else reply
            raise OSError(errno.EPROTO, f"the wire refused {request['op']}: {error}")
        return reply

    def get(self) -> Lines:
        return Lines(**self._call({"op": "lines"})["lines"])

    def set(self, rts: bool | None, dtr: bool | None) -> None:
        self._call({"op": "set", "rts": rts, "dtr": dtr})

    def set_break(self, on: bool) -> None:
        self._call({"op": "break", "on": on})

    def settings_changed(self, settings: SerialSettings) -> None:
        self._call({"op": "settings", "settings": str(settings)})

    def tx_idle(self) -> bool:
        return bool(self._call({"op": "tx_idle"})["idle"])

    def stats(self) -> dict[str, int]:
        return dict(self._call({"op": "stats"})["stats"])

    def close(self) -> None:
        self._sock.close()


def find_wire(fd: int) -> WireLineAccess | None:
    """The side channel of the wire whose pty ``fd`` is, or None."""
    try:
        st = os.fstat(fd)
        path = registry_dir() / socket_name(os.ttyname(fd))
    except OSError:
        return None
    if not path.exists():
        return None
    try:
        return WireLineAccess(path, st.st_rdev)
    except OSError:
        return None  # a stale socket of a wire that is gone, or another pty's
