"""``serialhs chat PORT SCRIPT``: run a chat(8) script on a port; exit with chat's code.

    serialhs chat /dev/ttyUSB0 /etc/chatscripts/provider
    serialhs chat /dev/ttyACM0 -s "ABORT BUSY '' ATZ OK ATDT5551212 CONNECT" -t 30 -v

Exit status: 0 the script completed, 1 bad arguments or script, 2 an error while
running (the port failed, a hangup, Ctrl-C), 3 an expect timed out, 4 + n the
(n+1)-th ABORT string arrived. REPORT lines and SAY strings go to stderr as
chat writes them; -v logs the conversation to stderr with \\q strings as ??????.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Any, TextIO

from serialhs.driver.port import Port
from serialhs.driver.settings import SerialSettings
from serialhs.errors import ConfigError, PortError
from serialhs.modem.chat import DEFAULT_TIMEOUT, EXIT_ERROR, EXIT_INVALID, parse_script, visible
from serialhs.modem.chatport import run_chat

PROG = "serialhs chat"


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "chat",
        help="run a chat(8) script (ppp's chat) on a port",
        description="Run a chat(8)-compatible script on a port. The exit status is chat's: "
        "0 done, 1 bad script or arguments, 2 error (port failed, hangup), 3 timeout, "
        "4 first ABORT string, 5 second, ...",
    )
    p.add_argument("port", help="device path or pyserial URL")
    p.add_argument("script_file", nargs="?", metavar="SCRIPT_FILE", help="the chat script file")
    p.add_argument("-f", dest="file_option", metavar="FILE", help="the script file (as chat -f)")
    p.add_argument("-s", "--script", dest="script_text", metavar="SCRIPT", help="the script text")
    p.add_argument(
        "-t",
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT,
        help=f"initial expect timeout in seconds (default {DEFAULT_TIMEOUT:g})",
    )
    p.add_argument("-e", dest="echo_on", action="store_true", help="start with ECHO ON")
    p.add_argument(
        "-E", dest="use_env", action="store_true", help="substitute $NAME environment variables"
    )
    p.add_argument(
        "-v",
        "-V",
        dest="chat_verbose",
        action="store_true",
        help="log the conversation to stderr (\\q strings as ??????)",
    )
    p.add_argument("-T", dest="phone", metavar="NUMBER", help="what \\T sends")
    p.add_argument("-U", dest="phone2", metavar="NUMBER", help="what \\U sends")
    p.add_argument(
        "-r", dest="report_file", metavar="FILE", help="append REPORT lines here, not to stderr"
    )
    p.add_argument("--settings", default=None, help="port settings, e.g. '115200 8N1 rtscts'")
    p.add_argument(
        "--lines",
        choices=("strict", "tolerant"),
        default="strict",
        help="on a port without control lines (a pty): fail (strict) or carry on (tolerant)",
    )
    p.add_argument(
        "--watch-dcd",
        action="store_true",
        help="treat a carrier (DCD) drop as a hangup (exit 2 unless HANGUP OFF)",
    )
    p.set_defaults(run=run)


def _fail(message: str, code: int) -> int:
    print(f"{PROG}: {message}", file=sys.stderr)
    return code


class _EchoWriter:
    """Writes modem output as chat's echo does: no CRs, control characters as ^X."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.need_lf = False

    def write(self, data: bytes) -> None:
        out = []
        for b in data:
            c = b & 0x7F
            if c == 0x0D:
                continue
            if c == 0x0A:
                out.append("\n")
                self.need_lf = False
            else:
                out.append(visible(bytes((c,))))
                self.need_lf = True
        self.stream.write("".join(out))
        self.stream.flush()

    def end(self) -> None:
        if self.need_lf:
            self.stream.write("\n")
            self.need_lf = False


def _read_script(args: argparse.Namespace) -> tuple[str, str] | str:
    """(text, source name), or an error message."""
    given = [x for x in (args.script_file, args.file_option, args.script_text) if x is not None]
    if len(given) != 1:
        return "give exactly one script: SCRIPT_FILE, -f FILE or -s SCRIPT"
    if args.script_text is not None:
        return args.script_text, "<-s>"
    path = args.script_file if args.script_file is not None else args.file_option
    try:
        with open(path, encoding="utf-8", errors="surrogateescape", newline="") as f:
            return f.read(), path
    except OSError as e:
        return f"cannot read the script {path}: {e.strerror or e}"


def run(args: argparse.Namespace) -> int:
    found = _read_script(args)
    if isinstance(found, str):
        return _fail(found, EXIT_INVALID)
    text, source = found
    try:
        script = parse_script(
            text,
            source=source,
            env=dict(os.environ) if args.use_env else None,
            phone=args.phone,
            phone2=args.phone2,
        )
        settings = SerialSettings.parse(args.settings) if args.settings else None
        if not 0 < args.timeout < float("inf"):
            raise ConfigError(f"-t takes a positive number of seconds, not {args.timeout:g}")
    except ConfigError as e:
        return _fail(str(e), EXIT_INVALID)

    report_stream: TextIO = sys.stderr
    report_file: TextIO | None = None
    if args.report_file:
        try:
            report_file = open(args.report_file, "a", encoding="utf-8")  # noqa: SIM115
        except OSError as e:
            return _fail(f"cannot open the report file {args.report_file}: {e.strerror}", 1)
        report_stream = report_file
    echo = _EchoWriter(sys.stderr)

    def say(message: str) -> None:
        sys.stderr.write(message)
        sys.stderr.flush()

    def report(line: str) -> None:
        stamp = time.strftime("%b %d %H:%M:%S", time.localtime())
        report_stream.write(f"chat:  {stamp} {line}\n")
        report_stream.flush()

    def log_line(message: str) -> None:
        sys.stderr.write(message + "\n")
        sys.stderr.flush()

    try:
        with Port(args.port, settings, lines=args.lines) as port:
            result = run_chat(
                port,
                script,
                timeout=args.timeout,
                echo_on=args.echo_on,
                say=say,
                report=report,
                echo=echo.write,
                log_line=log_line if args.chat_verbose else None,
                watch_dcd=args.watch_dcd,
            )
    except PortError as e:
        return _fail(str(e), EXIT_ERROR)
    except KeyboardInterrupt:
        return _fail("interrupted", EXIT_ERROR)
    finally:
        echo.end()
        if report_file is not None:
            report_file.close()
    if result.exit_code != 0 and not args.chat_verbose:
        print(f"{PROG}: {result.reason} (exit {result.exit_code})", file=sys.stderr)
    return result.exit_code
