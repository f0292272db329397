"""AsyncPort: streams and line waits from asyncio, on socat pairs and loop://."""

from __future__ import annotations

import asyncio
import time

import pytest

from serialhs.driver.aio import AsyncPort, open_async_port
from serialhs.driver.port import Port
from serialhs.errors import LineWaitTimeout, PortDisconnectedError, ReadTimeout


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 20))


def test_data_both_ways_through_streams(serial_pair, tmp_path):
    async def main():
        async with (
            AsyncPort(serial_pair.a, lock_dir=tmp_path) as a,
            AsyncPort(serial_pair.b, lock_dir=tmp_path) as b,
        ):
            await a.write(b"ping\n")
            assert await b.read_until(b"\n", timeout=2) == b"ping\n"
            blob = bytes(range(256)) * 200
            await b.write(blob, timeout=5)
            assert await a.read_exactly(len(blob), timeout=5) == blob
            # The stream itself is an ordinary asyncio.StreamReader.
            await b.write(b"raw")
            assert await asyncio.wait_for(a.reader.readexactly(3), 2) == b"raw"

    run(main())


def test_read_timeout_hands_back_partial_data(serial_pair, tmp_path):
    async def main():
        async with (
            AsyncPort(serial_pair.a, lock_dir=tmp_path) as a,
            AsyncPort(serial_pair.b, lock_dir=tmp_path) as b,
        ):
            await b.write(b"half")
            with pytest.raises(ReadTimeout) as info:
                await a.read_exactly(8, timeout=0.2)
            assert info.value.partial == b"half"
            await b.write(b"next")
            assert await a.read_exactly(4, timeout=1) == b"next"

    run(main())


def test_read_some_with_no_wait_returns_what_has_arrived(serial_pair, tmp_path):
    async def main():
        async with (
            AsyncPort(serial_pair.a, lock_dir=tmp_path) as a,
            AsyncPort(serial_pair.b, lock_dir=tmp_path) as b,
        ):
            for round_ in range(20):
                message = b"round %d " % round_ * 10
                await a.write(message)
                await b.read_exactly(1, timeout=2)  # the first byte: the rest is on its way
                await asyncio.sleep(0.02)
                got = await b.read_some(5, timeout=0)  # never lost to the zero timeout
                got += await b.read_some(timeout=0)
                while len(got) < len(message) - 1:
                    got += await b.read_some(timeout=2)
                assert got == message[1:]

    run(main())


def test_the_event_loop_keeps_running_while_a_read_waits(serial_pair, tmp_path):
    async def main():
        ticks = 0

        async def ticker():
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0.01)

        task = asyncio.create_task(ticker())
        async with AsyncPort(serial_pair.a, lock_dir=tmp_path) as a:
            with pytest.raises(ReadTimeout):
                await a.read_some(timeout=0.3)
        task.cancel()
        assert ticks > 10

    run(main())


def test_disconnect_reaches_the_reader(serial_pair, tmp_path):
    async def main():
        async with AsyncPort(serial_pair.a, lock_dir=tmp_path) as a:
            reader = asyncio.create_task(a.read_until(b"\n", timeout=10))
            await asyncio.sleep(0.1)
            t0 = time.monotonic()
            serial_pair.kill()
            with pytest.raises(PortDisconnectedError):
                await reader
            assert time.monotonic() - t0 < 2

    run(main())


def test_open_runs_off_the_event_loop_and_closes_the_port(serial_pair, tmp_path):
    async def main():
        port = await open_async_port(serial_pair.a, "9600 8N1", lock_dir=tmp_path)
        assert port.port.is_open and port.port.settings.baudrate == 9600
        await port.close()
        assert not port.port.is_open
        # The lock is released: a plain Port can take the device now.
        with Port(serial_pair.a, lock_dir=tmp_path):
            pass

    run(main())


def test_async_line_waits_and_pulse_on_loop():
    async def main():
        async with AsyncPort("loop://", rts=False, dtr=False) as port:
            asyncio.get_running_loop().call_later(0.05, lambda: port.set_lines(rts=True))
            snapshot = await port.wait_lines(cts=True, timeout=2)
            assert snapshot.cts and snapshot.rts
            with pytest.raises(LineWaitTimeout):
                await port.wait_lines(dsr=True, timeout=0.05)
            await port.pulse("dtr", 0.02)
            assert port.lines().dtr is False
            # URL ports without a descriptor read through a thread.
            await port.write(b"echo")
            assert await port.read_exactly(4, timeout=2) == b"echo"

    run(main())
