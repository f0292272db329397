"""``serialhs negotiate PORT``: agree settings with a serialhs peer (SHS handshake).

Prints the agreed settings and the training steps (``--json``: one JSON object).
Exit status 0 on agreement; 1 and the reason otherwise (the port is left at the
safe default).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, Literal

from serialhs.driver.port import Port
from serialhs.driver.settings import FlowControl, SerialSettings
from serialhs.errors import NegotiationFailed
from serialhs.negotiate.capabilities import Capabilities
from serialhs.negotiate.handshake import SAFE_DEFAULT, TrainingStep
from serialhs.negotiate.link import negotiate


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "negotiate", help="agree baud rate, framing and flow control with a serialhs peer"
    )
    p.add_argument("port", help="device path or pyserial URL")
    p.add_argument("--listen", action="store_true", help="be the responder (wait for a SYN)")
    p.add_argument("--max-baud", type=int, default=921600, help="the fastest rate to offer")
    p.add_argument(
        "--flow",
        default="none,rtscts",
        help="flow control this end has wired, comma-separated (none, rtscts, xonxoff)",
    )
    p.add_argument("--safe", default=str(SAFE_DEFAULT), help="the safe default (9600 8N1 none)")
    p.add_argument("--timeout", type=float, default=120.0, help="give up after this many seconds")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    flow = tuple(FlowControl(f.strip()) for f in args.flow.split(",") if f.strip())
    caps = Capabilities.up_to(args.max_baud, flow=flow)
    safe = SerialSettings.parse(args.safe)
    role: Literal["initiator", "responder"] = "responder" if args.listen else "initiator"

    def progress(event: object) -> None:
        if isinstance(event, TrainingStep) and not args.json:
            verdict = "ok" if event.ok else f"failed ({event.reason})"
            print(f"step {event.step}: {event.settings}: {verdict}", flush=True)

    with Port(args.port, safe) as port:
        try:
            result = negotiate(port, role, caps, timeout=args.timeout, safe=safe, on_event=progress)
        except NegotiationFailed as e:
            if args.json:
                print(json.dumps({"agreed": False, "reason": str(e), "settings": str(safe)}))
            print(f"serialhs negotiate: {e}", file=sys.stderr)
            return 1
    agreed = result.agreed
    if args.json:
        print(
            json.dumps(
                {
                    "agreed": True,
                    "settings": str(agreed.settings),
                    "baudrate": agreed.settings.baudrate,
                    "framing": agreed.settings.framing,
                    "flow": agreed.settings.flow.value,
                    "protocol": agreed.protocol.label,
                    "frame_size": agreed.frame_size,
                    "window": agreed.window,
                    "peer": str(agreed.peer_identity),
                    # the line delivers faster than its rate (a pty, a USB device
                    # that ignores the rate): the agreed rate is a label there
                    "fast": result.handshake.fast,
                    "steps": [
                        {"settings": str(s.settings), "ok": s.ok, "reason": s.reason}
                        for s in result.steps
                    ],
                    "seconds": round(result.elapsed, 3),
                }
            )
        )
    else:
        print(
            f"agreed: {agreed.settings}, protocol {agreed.protocol.label}, "
            f"frames {agreed.frame_size} bytes, window {agreed.window}"
        )
        if result.handshake.fast:
            print("the line delivers faster than its rate (a pty, a USB device or a network link)")
    return 0
