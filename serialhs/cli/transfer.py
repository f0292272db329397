"""``serialhs send PORT FILE`` and ``serialhs recv PORT PATH``: move a file.

``--protocol shs`` (the default) negotiates with a serialhs peer first (the best
settings the line carries, then the protocol both ends agree: the SHS transfer
layer, or an XMODEM when the peer only speaks that) and resumes after a lost
link. ``--protocol xmodem|xmodem-crc|xmodem-1k`` skips the negotiation and talks
XMODEM at ``--settings`` to any XMODEM program (lrzsz's sx and rx, a boot
loader).

A progress bar goes to stderr (redrawn on a terminal); the report to stdout
(``--json``: one JSON object). Exit status 0 when the file arrived whole and
checked, 1 and the reason otherwise.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any, Literal

from serialhs.cli.progress import ProgressBar, human_bytes
from serialhs.driver.port import Port
from serialhs.driver.settings import FlowControl, SerialSettings
from serialhs.negotiate.capabilities import Capabilities
from serialhs.negotiate.filetransfer import (
    FileProgress,
    FileResult,
    file_capabilities,
    receive_file,
    send_file,
)
from serialhs.negotiate.handshake import SAFE_DEFAULT
from serialhs.negotiate.xmodem import Failure
from serialhs.negotiate.xmodem import Progress as XmodemProgress
from serialhs.negotiate.xmodemport import TransferResult
from serialhs.negotiate.xmodemport import receive_file as xmodem_receive
from serialhs.negotiate.xmodemport import send_file as xmodem_send

PROTOCOLS = ("shs", "xmodem", "xmodem-crc", "xmodem-1k")


def register(sub: Any) -> None:
    send = sub.add_parser("send", help="send a file to a serialhs peer (or with XMODEM)")
    send.add_argument("port", help="device path or pyserial URL")
    send.add_argument("file", help="the file to send")
    send.add_argument(
        "--listen", action="store_true", help="wait for the receiver's SYN (shs; default: send it)"
    )
    _common(send)
    send.set_defaults(run=run_send)
    recv = sub.add_parser("recv", help="receive a file from a serialhs peer (or with XMODEM)")
    recv.add_argument("port", help="device path or pyserial URL")
    recv.add_argument("path", help="where to write it (a directory: the sender's file name)")
    recv.add_argument(
        "--initiate", action="store_true", help="send the SYN (shs; default: wait for one)"
    )
    recv.add_argument("--overwrite", action="store_true", help="replace an existing file")
    _common(recv)
    recv.set_defaults(run=run_recv)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--protocol", choices=PROTOCOLS, default="shs", help="default: shs")
    p.add_argument(
        "--settings",
        default=str(SAFE_DEFAULT),
        help="shs: the safe default both ends start at; xmodem: the port's settings "
        "(default: 9600 8N1 none)",
    )
    p.add_argument("--max-baud", type=int, default=921600, help="shs: the fastest rate to offer")
    p.add_argument(
        "--flow",
        default="none,rtscts",
        help="shs: flow control this end has wired, comma-separated (none, rtscts, xonxoff)",
    )
    p.add_argument("--timeout", type=float, default=3600.0, help="give up after this many seconds")
    p.add_argument("--attempts", type=int, default=5, help="shs: negotiations (resumes) at most")
    p.add_argument("--json", action="store_true", help="print the report as one JSON object")
    bar = p.add_mutually_exclusive_group()
    bar.add_argument("--progress", action="store_true", help="a progress bar even off a terminal")
    bar.add_argument("--no-progress", action="store_true", help="no progress bar")


def _capabilities(args: argparse.Namespace) -> Capabilities:
    flow = tuple(FlowControl(f.strip()) for f in args.flow.split(",") if f.strip())
    return file_capabilities(args.max_baud, flow=flow)


def _bar(args: argparse.Namespace, label: str) -> ProgressBar | None:
    if args.no_progress:
        return None
    bar = ProgressBar(label)
    return bar if (args.progress or bar.tty) else None


def run_send(args: argparse.Namespace) -> int:
    settings = SerialSettings.parse(args.settings)
    if not Path(args.file).is_file():
        print(f"serialhs send: no such file: {args.file}", file=sys.stderr)
        return 1
    bar = _bar(args, "send")
    with Port(args.port, settings) as port:
        if args.protocol != "shs":
            return _xmodem(args, port, sending=True, bar=bar)
        role: Literal["initiator", "responder"] = "responder" if args.listen else "initiator"
        result = send_file(port, args.file, role=role, **_shs_options(args, settings, bar))
    return _report(args, result, "sent", bar)


def run_recv(args: argparse.Namespace) -> int:
    settings = SerialSettings.parse(args.settings)
    bar = _bar(args, "recv")
    with Port(args.port, settings) as port:
        if args.protocol != "shs":
            return _xmodem(args, port, sending=False, bar=bar)
        role: Literal["initiator", "responder"] = "initiator" if args.initiate else "responder"
        options = _shs_options(args, settings, bar)
        result = receive_file(port, args.path, role=role, overwrite=args.overwrite, **options)
    return _report(args, result, "received", bar)


def _shs_options(
    args: argparse.Namespace, settings: SerialSettings, bar: ProgressBar | None
) -> dict[str, Any]:
    """What send_file and receive_file both take from the command line."""
    return {
        "capabilities": _capabilities(args),
        "safe": settings,
        "timeout": args.timeout,
        "attempts": args.attempts,
        "progress": _shs_progress(bar),
    }


def _shs_progress(bar: ProgressBar | None) -> Any:
    if bar is None:
        return None

    def show(p: FileProgress) -> None:
        bar.update(p.done, p.total, p.rate, p.resent)

    return show


def report_lines(result: FileResult, verb: str) -> list[str]:
    """The human report of a finished SHS transfer (also used by the demo)."""
    if not result.ok:
        return [f"failed: {result.reason}"]
    lines = [f"{verb} {result.path}: {result.size} bytes, sha256 {result.sha256[:16]}..."]
    link = result.link
    if link is not None:
        s = link.settings
        tried = ", ".join(
            f"{step.settings.baudrate} {'ok' if step.ok else 'failed'}" for step in link.steps
        )
        lines.append(
            f"agreed {s} ({result.protocol}, frames {link.agreed.frame_size}, window "
            f"{link.agreed.window}) in {result.handshake_seconds:.2f} s; training: {tried}"
        )
        line_rate = s.baudrate / s.bits_per_char
        moved = result.transferred
        lines.append(
            f"goodput {human_bytes(result.goodput)}/s = {result.goodput / line_rate:.1%} of the "
            f"line rate ({human_bytes(line_rate)}/s); {human_bytes(moved)} in "
            f"{result.elapsed:.2f} s"
        )
    stats = result.stats
    lines.append(
        f"frames resent {stats.resent} ({stats.fast_retransmissions} on NAK, "
        f"{stats.retransmissions} on timeout), bad frames {result.bad_frames}, "
        f"attempts {result.attempts}"
        + (f", resumed at byte {result.resumed_from}" if result.resumed_from else "")
    )
    return lines


def _report(
    args: argparse.Namespace, result: FileResult, verb: str, bar: ProgressBar | None
) -> int:
    if bar is not None:
        bar.close()
    if args.json:
        link = result.link
        print(
            json.dumps(
                {
                    "ok": result.ok,
                    "reason": result.reason,
                    "path": result.path,
                    "size": result.size,
                    "sha256": result.sha256,
                    "protocol": result.protocol,
                    "settings": str(link.settings) if link else None,
                    "attempts": result.attempts,
                    "resumed_from": result.resumed_from,
                    "transferred": result.transferred,
                    "seconds": round(result.elapsed, 3),
                    "handshake_seconds": round(result.handshake_seconds, 3),
                    "goodput": round(result.goodput, 1),
                    "resent": result.stats.resent,
                    "bad_frames": result.bad_frames,
                }
            )
        )
    elif result.ok:
        print("\n".join(report_lines(result, verb)))
    if not result.ok:
        print(f"serialhs {args.command}: {result.reason}", file=sys.stderr)
        return 1
    return 0


def _xmodem(args: argparse.Namespace, port: Port, *, sending: bool, bar: ProgressBar | None) -> int:
    def show(p: XmodemProgress) -> None:
        if bar is not None:
            bar.update(p.done, p.total or p.done, 0.0, 0)

    if sending:
        result = xmodem_send(
            port, args.file, protocol=args.protocol, progress=show, deadline=_deadline(args)
        )
    else:
        target = Path(args.path)
        if target.exists() and not args.overwrite and not target.is_dir():
            print(f"serialhs recv: {target} exists (use --overwrite)", file=sys.stderr)
            return 1
        result = xmodem_receive(
            port, target, protocol=args.protocol, progress=show, deadline=_deadline(args)
        )
    if bar is not None:
        bar.close()
    return _xmodem_report(args, result, sending=sending)


def _deadline(args: argparse.Namespace) -> float:
    return time.monotonic() + float(args.timeout)


def _xmodem_report(args: argparse.Namespace, result: TransferResult, *, sending: bool) -> int:
    unconfirmed = result.failure is Failure.UNCONFIRMED
    ok = result.ok or unconfirmed
    if args.json:
        print(
            json.dumps(
                {
                    "ok": ok,
                    "confirmed": result.ok,
                    "reason": result.reason,
                    "protocol": args.protocol,
                    "bytes": result.bytes,
                    "blocks": result.blocks,
                    "retries": result.retries,
                    "seconds": round(result.elapsed, 3),
                }
            )
        )
    elif ok:
        verb = "sent" if sending else "received"
        print(
            f"{verb} {result.bytes} bytes with {args.protocol} in {result.elapsed:.2f} s "
            f"({result.blocks} blocks, {result.retries} retries)"
        )
    if unconfirmed:
        print(
            "serialhs send: warning: every block was acknowledged, but the receiver never "
            "answered the end of transmission (EOT); the data arrived, the ending is "
            "unconfirmed (lrzsz's rx often exits before its last ACK leaves a pty)",
            file=sys.stderr,
        )
    if not ok:
        print(f"serialhs {args.command}: {result.reason}", file=sys.stderr)
        return 1
    return 0
