"""The same port from asyncio: streams, async line waits, opened off the event loop.

:class:`AsyncPort` drives a synchronous :class:`~serialhs.driver.port.Port`, so
locking, settings, line access, transcripts and error mapping live in one place.
Opening, closing and writing run in the default executor (a port open can block:
lock files, a slow USB adapter, an RFC 2217 handshake). Reading is event-driven
where the port has a file descriptor (``loop.add_reader``) and uses a reader
thread otherwise (loop://, rfc2217://). Received bytes go into an
``asyncio.StreamReader``; :attr:`AsyncPort.reader` is that stream.

Why not pyserial-asyncio's SerialTransport: its close path calls a blocking
``flush()`` (tcdrain, which never returns on a port held back by flow control)
and closes the pyserial instance behind the owner's back (so a lock file would
outlive the port), and it needs a file descriptor, so URL ports are out.
"""

from __future__ import annotations

import asyncio
import functools
import threading
from collections.abc import Callable
from types import TracebackType
from typing import Any

from serialhs.driver.lines import Line, Lines
from serialhs.driver.port import CHUNK, LINE_POLL, Port, check_duration
from serialhs.driver.settings import SerialSettings
from serialhs.errors import (
    ConfigError,
    InputOverflowError,
    PortDisconnectedError,
    PortNotOpenError,
    ReadTimeout,
    SerialHSError,
)

__all__ = ["AsyncPort", "open_async_port"]

#: How long one blocking read of the reader thread lasts before it checks for close.
_THREAD_POLL = 0.05


class AsyncPort:
    """An asyncio view of a :class:`Port`. Takes the same arguments as Port."""

    def __init__(
        self, url: str, settings: SerialSettings | str | None = None, **options: Any
    ) -> None:
        self.port = Port(url, settings, **options)
        self.url = url
        self._reader: asyncio.StreamReader | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._closing = threading.Event()
        self._fd: int | None = None

    # -- lifecycle ----------------------------------------------------------------

    async def open(self) -> AsyncPort:
        if self._reader is not None:
            return self
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, self.port.open)
        self._loop = loop
        self._reader = asyncio.StreamReader(limit=self.port.max_buffer, loop=loop)
        self._closing.clear()
        try:
            self._fd = self.port.fileno()
        except SerialHSError:
            self._fd = None
        if self._fd is not None:
            loop.add_reader(self._fd, self._on_readable)
        else:
            self._thread = threading.Thread(
                target=self._pump, name=f"aio reader {self.url}", daemon=True
            )
            self._thread.start()
        return self

    async def close(self) -> None:
        self._closing.set()
        if self._loop is not None and self._fd is not None:
            self._loop.remove_reader(self._fd)
        thread, self._thread = self._thread, None
        loop = asyncio.get_running_loop()
        if thread is not None:
            await loop.run_in_executor(None, functools.partial(thread.join, 1.0))
        self._fd = None
        await loop.run_in_executor(None, self.port.close)
        if self._reader is not None and not self._reader.at_eof():
            self._reader.feed_eof()

    async def __aenter__(self) -> AsyncPort:
        return await self.open()

    async def __aexit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    @property
    def reader(self) -> asyncio.StreamReader:
        """The stream of received bytes."""
        if self._reader is None:
            raise PortNotOpenError("port is not open", port=self.url, operation="read from")
        return self._reader

    # -- receiving ------------------------------------------------------------------

    def _on_readable(self) -> None:
        """Event-loop callback: the fd is readable. The port reads without waiting."""
        reader = self.reader
        try:
            data = self.port.read_available(CHUNK)
        except SerialHSError as e:
            assert self._loop is not None and self._fd is not None
            self._loop.remove_reader(self._fd)
            self._fd = None
            reader.set_exception(e)
            return
        if data:
            reader.feed_data(data)

    def _pump(self) -> None:
        """Reader thread for ports without a file descriptor."""
        assert self._loop is not None
        reader, loop = self.reader, self._loop
        while not self._closing.is_set():
            try:
                data = self.port.read_some(CHUNK, timeout=_THREAD_POLL)
            except ReadTimeout:
                continue
            except SerialHSError as e:
                if not self._closing.is_set():
                    loop.call_soon_threadsafe(reader.set_exception, e)
                return
            loop.call_soon_threadsafe(reader.feed_data, data)

    def _timeout(self, timeout: float | None) -> float:
        return self.port._timeout(timeout)

    async def read_exactly(self, size: int, *, timeout: float | None = None) -> bytes:
        """Exactly ``size`` bytes, or ReadTimeout carrying what arrived."""
        limit = self._timeout(timeout)
        return await self._bounded(self.reader.readexactly(size), limit, f"wanted {size} byte(s)")

    async def read_until(self, terminator: bytes = b"\n", *, timeout: float | None = None) -> bytes:
        """Bytes up to and including ``terminator`` (bounded by the port's max_buffer)."""
        if not terminator:
            raise ConfigError("read_until needs a non-empty terminator")
        limit = self._timeout(timeout)
        try:
            return await self._bounded(
                self.reader.readuntil(terminator), limit, f"no {terminator!r}"
            )
        except asyncio.LimitOverrunError as e:
            partial = await self.reader.readexactly(e.consumed)
            raise InputOverflowError(
                f"no {terminator!r} within {self.port.max_buffer} bytes",
                port=self.url,
                operation="read line from",
                partial=partial,
            ) from e

    async def read_some(self, max_size: int = CHUNK, *, timeout: float | None = None) -> bytes:
        """At least one byte (at most ``max_size``), or ReadTimeout."""
        limit = self._timeout(timeout)
        buffer: bytearray = self.reader._buffer  # type: ignore[attr-defined]
        if buffer:  # already here: no wait, and no race with a zero timeout
            data = bytes(buffer[:max_size])
            del buffer[:max_size]
            return data
        data = await self._bounded(self.reader.read(max_size), limit, "nothing")
        if not data:
            raise PortDisconnectedError("port closed", port=self.url, operation="read from")
        return data

    async def _bounded(self, op: Any, limit: float, what: str) -> bytes:
        """Run a StreamReader read with a deadline. On timeout the bytes that arrived
        are taken from the stream and handed back in ReadTimeout.partial."""
        task = asyncio.ensure_future(op)
        try:
            return bytes(await asyncio.wait_for(asyncio.shield(task), limit))
        except TimeoutError:
            if task.done() and not task.cancelled() and task.exception() is None:
                return bytes(task.result())  # it finished as the deadline passed
            task.cancel()
            partial = self._drain_buffer()
            raise ReadTimeout(
                f"{what} within {limit} s", port=self.url, timeout=limit, partial=partial
            ) from None
        except asyncio.IncompleteReadError as e:
            raise PortDisconnectedError(
                "port closed", port=self.url, operation="read from", partial=e.partial
            ) from e

    def _drain_buffer(self) -> bytes:
        # StreamReader keeps unconsumed bytes in its buffer after a cancelled read.
        buffer: bytearray = self.reader._buffer  # type: ignore[attr-defined]
        data = bytes(buffer)
        buffer.clear()
        return data

    # -- sending ------------------------------------------------------------------

    async def write(self, data: bytes, *, timeout: float | None = None) -> int:
        """Write all of ``data`` (off the event loop) or raise WriteTimeout."""
        loop = asyncio.get_running_loop()
        call = functools.partial(self.port.write, data, timeout=timeout)
        return int(await loop.run_in_executor(None, call))

    async def drain(self, *, timeout: float | None = None) -> None:
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, functools.partial(self.port.drain, timeout=timeout))

    # -- lines and settings ---------------------------------------------------------

    def lines(self) -> Lines:
        return self.port.lines()

    def set_lines(self, *, rts: bool | None = None, dtr: bool | None = None) -> None:
        self.port.set_lines(rts=rts, dtr=dtr)

    async def pulse(self, line: Line | str, duration: float, *, state: bool | None = None) -> None:
        which, active, before = self.port.pulse_plan(line, duration, state)
        self.port.set_lines(**{which.value: active})
        try:
            await asyncio.sleep(duration)
        finally:
            self.port.set_lines(**{which.value: before})

    async def wait_lines(
        self,
        *,
        timeout: float | None = None,
        predicate: Callable[[Lines], bool] | None = None,
        **states: bool,
    ) -> Lines:
        """Like Port.wait_lines, without blocking the event loop."""
        condition = self.port.line_condition(predicate, states)
        loop = asyncio.get_running_loop()
        limit = self._timeout(timeout)
        deadline = loop.time() + limit
        while True:
            snapshot = self.port.lines()
            if condition.ok(snapshot):
                return snapshot
            if loop.time() >= deadline:
                raise condition.timeout(limit, snapshot)
            await asyncio.sleep(LINE_POLL)

    async def reconfigure(self, settings: SerialSettings | None = None, **changes: Any) -> None:
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(
            None, functools.partial(self.port.reconfigure, settings, **changes)
        )

    async def send_break(self, duration: float = 0.25) -> None:
        check_duration("break", duration)
        self.port.set_break(True)
        try:
            await asyncio.sleep(duration)
        finally:
            self.port.set_break(False)


async def open_async_port(
    url: str, settings: SerialSettings | str | None = None, **options: Any
) -> AsyncPort:
    """Open a port for asyncio in one call."""
    return await AsyncPort(url, settings, **options).open()
