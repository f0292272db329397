"""``serialhs demo``: the main job, end to end, on the built-in virtual hardware.

It needs no hardware: the virtual null-modem wire stands in for a cable between
two serial ports, with control lines, UART timing and what a receiver samples
when the two ends disagree.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
from typing import Any

from serialhs.cli.progress import ProgressBar
from serialhs.cli.transfer import report_lines
from serialhs.driver.port import Port
from serialhs.driver.settings import SerialSettings
from serialhs.driver.transcript import Transcript
from serialhs.errors import ModemNoCarrier
from serialhs.modem.client import Modem
from serialhs.negotiate.filetransfer import (
    FileProgress,
    FileResult,
    file_capabilities,
    receive_file,
    send_file,
)
from serialhs.negotiate.handshake import TrainingStep
from serialhs.sim.modemsim import ModemSim
from serialhs.sim.wire import Wire
from serialhs.usb.discovery import find_at_interface, list_usb_devices

CRLF = b"\r\n"


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "demo", help="run the main job on the built-in virtual hardware"
    )
    p.add_argument(
        "--out",
        metavar="DIR",
        help="where to save the transcript and traces (default: a new temporary directory)",
    )
    p.set_defaults(run=run)


def step(text: str) -> None:
    print(f"\n== {text}")


def run(args: argparse.Namespace) -> int:
    out = args.out or tempfile.mkdtemp(prefix="serialhs-demo-")
    os.makedirs(out, exist_ok=True)
    transcript = Transcript()
    fast = SerialSettings.parse("115200 8N1")

    step("a virtual null-modem cable (RTS->CTS, DTR->DSR+DCD), paced like a real UART")
    with Wire(settings=fast, trace=True) as wire:
        for end in (wire.a, wire.b):
            print(f"end {end.name}: {end.pty} -> {end.device}, also {end.rfc2217}")

        with (
            Port(wire.a.pty, fast, rts=False, dtr=False, transcript=transcript) as a,
            Port(wire.b.pty, fast, rts=False, dtr=False, transcript=transcript) as b,
        ):
            step("ports open, all control lines off")
            print(f"A: {a.lines()}")
            print(f"B: {b.lines()}")

            step("control lines move across the cable")
            a.set_rts(True)
            print(f"A raises RTS   -> B sees {b.wait_lines(cts=True, timeout=1)}")
            a.set_dtr(True)
            print(f"A raises DTR   -> B sees {b.wait_lines(dsr=True, dcd=True, timeout=1)}")
            b.set_lines(rts=True, dtr=True)
            print(f"B raises both  -> A sees {a.wait_lines(cts=True, dsr=True, timeout=1)}")

            step("data both ways at 115200 8N1")
            a.write(b"hello from A" + CRLF)
            print(f"B got {b.read_until(CRLF, timeout=2)!r}")
            b.write(b"hello from B" + CRLF)
            print(f"A got {a.read_until(CRLF, timeout=2)!r}")
            blob = bytes(range(256)) * 8
            a.write(blob, timeout=5)
            intact = b.read_exactly(len(blob), timeout=5) == blob
            print(f"{len(blob)} bytes of every value A->B, intact: {intact}")

            step("a break from A")
            a.send_break(0.05)
            got = b.read_exactly(1, timeout=1)
            print(f"B reads {got!r} (a break, as a UART in raw mode reports it)")

            step("the ends disagree: A sends at 9600, B listens at 19200")
            a.reconfigure(baudrate=9600)
            b.reconfigure(baudrate=19200)
            a.write(b"Hello")
            a.drain(timeout=2)
            garbled = b.read_some(timeout=1)
            while True:
                more = b.read_available()
                if not more:
                    break
                garbled += more
            stats = wire.b.stats()
            print(f"A sent b'Hello', B got {garbled!r}")
            print(
                f"B's UART counted {stats.framing_errors} framing error(s), {stats.breaks} break(s)"
            )

        vcd = os.path.join(out, "wire.vcd")
        text = os.path.join(out, "wire-trace.txt")
        wire.save_trace(vcd)
        wire.save_trace(text)

    negotiate_and_send(out)
    dial_two_modems(transcript)
    usb_devices(transcript)

    step("transcript (first lines)")
    lines = transcript.to_text(limit=24).splitlines()
    print("\n".join(lines[:12]))
    if len(lines) > 12:
        print(f"... {len(lines) - 12} more event(s)")
    saved = os.path.join(out, "transcript.txt")
    transcript.save(saved)
    print(f"\ntranscript saved to {saved}")
    print(f"line trace saved to {vcd} (open it in GTKWave or PulseView) and {text}")
    return 0


#: The wire of the negotiation demo carries at most this rate; faster ones garble.
DEMO_MAX_BAUD = 460800
DEMO_FILE = 256 * 1024


def negotiate_and_send(out: str) -> None:
    """Two serialhs ends agree the best settings the wire carries and move a file."""
    step(
        f"negotiation: both ends can do 921600, the cable carries {DEMO_MAX_BAUD} at most "
        "(and flips about one bit in a million)"
    )
    safe = SerialSettings.parse("9600 8N1")
    caps = file_capabilities(921600)
    source = os.path.join(out, "firmware.bin")
    with open(source, "wb") as f:
        f.write(os.urandom(DEMO_FILE))
    target = os.path.join(out, "received.bin")
    received: dict[str, FileResult] = {}
    with Wire(settings=safe, max_baud=DEMO_MAX_BAUD, faults="ber=1e-6", seed=5) as wire:

        def receiver() -> None:
            with Port(wire.b.pty, safe) as port:
                received["r"] = receive_file(
                    port, target, capabilities=caps, timeout=120, overwrite=True
                )

        thread = threading.Thread(target=receiver)
        thread.start()
        bar = ProgressBar("send", stream=sys.stdout, step=20)

        def show(p: FileProgress) -> None:
            bar.update(p.done, p.total, p.rate, p.resent)

        def training(event: object) -> None:
            if isinstance(event, TrainingStep):
                verdict = "ok" if event.ok else f"failed ({event.reason})"
                print(f"  rung {event.step}: {event.settings}: {verdict}")

        with Port(wire.a.pty, safe) as port:
            print(f"A: SYN at the safe default {safe}; training from the top rate down")
            sent = send_file(
                port, source, capabilities=caps, timeout=120, progress=show, on_event=training
            )
        thread.join(150)
        bar.close()
    print("\n".join(report_lines(sent, "sent")))
    got = received.get("r")
    same = got is not None and got.ok and _same_file(source, target)
    print(f"B wrote {target}: identical to what A sent: {same}")


def _same_file(a: str, b: str) -> bool:
    with open(a, "rb") as fa, open(b, "rb") as fb:
        return fa.read() == fb.read()


def dial_two_modems(transcript: Transcript) -> None:
    """Two emulated modems on a virtual exchange: one dials the other."""
    step("two emulated V.90 modems, each at the end of its own virtual wire")
    with ModemSim(count=2) as sim:
        first, second = sim.describe()
        for entry in (first, second):
            print(f"modem {entry['number']} ({entry['profile']}): {entry['port']['pty']}")
        settings = SerialSettings.parse("115200 8N1")
        with (
            Port(first["port"]["pty"], settings, transcript=transcript) as port_a,
            Port(second["port"]["pty"], settings, transcript=transcript) as port_b,
        ):
            a, b = Modem(port_a), Modem(port_b)
            a.init()
            b.init()
            print(f"ATI3 -> {a.command('ATI3').text}")
            step(f"A dials {second['number']}; B waits for RING and answers")
            dialled: dict[str, object] = {}
            dialer = threading.Thread(
                target=lambda: dialled.setdefault("call", a.dial(second["number"]))
            )
            dialer.start()
            ring = b.wait_for_ring(timeout=10)
            print(f"B got {ring.text}, DCD={port_b.lines().dcd}, answers with ATA")
            answered = b.answer()
            dialer.join(30)
            print(f"A: CONNECT {dialled['call'].text}")  # type: ignore[attr-defined]
            print(f"B: CONNECT {answered.text}, DCD={port_b.lines().dcd}")
            step("data through the call, both ways")
            a.write(b"hello over the phone line")
            print(f"B got {b.read_exactly(25, timeout=5)!r}")
            b.write(b"loud and clear")
            print(f"A got {a.read_exactly(14, timeout=5)!r}")
            step("A hangs up: +++ with the guard time, then ATH")
            a.hangup()
            print(f"A: back in command mode, AT -> {a.command('AT').final.text}")
            t0 = time.monotonic()
            port_b.wait_lines(dcd=False, timeout=5)
            print(f"B: DCD dropped {time.monotonic() - t0:.1f} s later (S10 carrier-loss delay)")
            tail = b""
            try:
                while True:  # a modem passes the escape characters on as data
                    tail += b.read_some(timeout=5)
            except ModemNoCarrier as e:
                print(f"B: {e}; the last data was {tail!r}")


#: The virtual USB devices of the demo: an FT232R adapter with a modem on its
#: serial side, and a Quectel EC25 LTE module (several interfaces, one for AT).
DEMO_USB = "virtual:ft232r@modem,cdc_modem"


def usb_devices(transcript: Transcript) -> None:
    """Discover virtual USB devices and talk through them with user-space drivers."""
    step(f"virtual USB devices (SERIALHS_USB={os.environ.get('SERIALHS_USB', DEMO_USB)})")
    os.environ.setdefault("SERIALHS_USB", DEMO_USB)
    devices = list_usb_devices()
    for device in devices:
        print(device.summary())
        for iface in device.interfaces:
            if iface.roles:
                print(f"   interface {iface.number}: {', '.join(iface.roles)}")
    settings = SerialSettings.parse("115200 8N1")
    for device in devices:
        if device.adapter is not None and device.adapter.name == "ft232r":
            url = device.url(0)
            what = "through the FT232R (user-space FTDI driver) to the modem behind it"
        elif device.modem is not None and (at := find_at_interface(device)) is not None:
            url = device.url(at.number)
            what = f"to the {device.modem.model}'s AT interface (picked by its role)"
        else:
            continue
        step(f"AT {what}")
        with Port(url, settings, transcript=transcript) as port:
            modem = Modem(port)
            print(f"{url}: ATI -> {' / '.join(modem.query('ATI'))}")
