"""``serialhs demo``: the main job, end to end, on the built-in virtual hardware.

It needs no hardware: a socat pair stands in for a cable between two ports.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from typing import Any

from serialhs.driver.port import Port
from serialhs.driver.settings import SerialSettings
from serialhs.driver.transcript import Transcript
from serialhs.errors import LinesUnsupportedError
from serialhs.sim.socat import SocatPair

CR = b"\r"
CRLF = b"\r\n"


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "demo", help="run the main job on the built-in virtual hardware"
    )
    p.add_argument(
        "--transcript",
        metavar="PATH",
        help="where to save the transcript (default: a file in a new temporary directory)",
    )
    p.set_defaults(run=run)


def step(text: str) -> None:
    print(f"\n== {text}")


def run(args: argparse.Namespace) -> int:
    transcript = Transcript()
    settings = SerialSettings.parse("115200 8N1")

    step("virtual cable: a socat pair of pseudo-terminals")
    with SocatPair() as pair:
        print(f"end A: {pair.a} -> {pair.a_device}")
        print(f"end B: {pair.b} -> {pair.b_device}")

        with (
            Port(pair.a, settings, transcript=transcript) as a,
            Port(pair.b, settings, transcript=transcript) as b,
        ):
            step("ports open")
            print(f"A: {a!r}")
            print(f"B: {b!r}")

            step("data both ways")
            a.write(b"hello from A\r\n")
            print(f"B got {b.read_until(CRLF, timeout=2)!r}")
            b.write(b"hello from B\r\n")
            print(f"A got {a.read_until(CRLF, timeout=2)!r}")
            blob = bytes(range(256)) * 64
            a.write(blob, timeout=5)
            got = b.read_exactly(len(blob), timeout=5)
            print(f"{len(blob)} bytes of every value A->B, intact: {got == blob}")

            step("reconfigure both ends: 9600 7E1")
            for port in (a, b):
                port.reconfigure(SerialSettings.parse("9600 7E1"))
            print(f"A: {a.settings}   B: {b.settings}")
            a.write(b"AT\r")
            print(f"B got {b.read_until(CR, timeout=2)!r}")

            step("control lines on a pty")
            try:
                a.set_lines(rts=True, dtr=False)
            except LinesUnsupportedError as e:
                print(f"typed error, as expected: {e}")

    step("control lines on a port that has them (pyserial loop://: RTS->CTS, DTR->DSR)")
    with Port("loop://", settings, rts=False, dtr=False, transcript=transcript) as loop:
        print(f"at open:         {loop.lines()}")
        loop.set_lines(rts=True, dtr=True)
        print(f"RTS+DTR on:      {loop.wait_lines(cts=True, dsr=True, timeout=1)}")
        loop.set_lines(rts=False, dtr=True)
        print(f"RTS off:         {loop.lines()}")

    step("transcript")
    print(transcript.to_text(), end="")
    path = args.transcript or os.path.join(tempfile.mkdtemp(prefix="serialhs-demo-"), "demo.txt")
    transcript.save(path)
    print(f"\ntranscript saved to {path}")
    return 0
