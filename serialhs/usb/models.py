"""Device models for the virtual USB bus: an FT232R, a CP2102 and CDC-ACM devices.

Each model answers its chip's requests as the vendor documents them and keeps
its UART on a virtual wire (:class:`~serialhs.sim.wire.Wire`): the model holds
an ordinary serialhs :class:`~serialhs.driver.port.Port` on end ``a`` of the
wire, and whatever sits on end ``b`` -- a test's Port, another program, an
emulated modem (:mod:`serialhs.sim.modemsim`) -- is the equipment plugged into
the adapter's serial connector. Bytes written to the bulk OUT endpoint go out
on the wire; bytes from the wire come back on bulk IN; baud rate and framing
requests change the Port's settings (so a mismatch with the far end garbles,
as on a real line); DTR and RTS requests set its lines; CTS, DSR, DCD and RI
from the far end show in the chip's status (FTDI status bytes, CP210x
GET_MDMSTS and embedded events, CDC SERIAL_STATE notifications), and so do
breaks, framing, parity and overrun errors the wire counts at the model's end.

- :class:`Ft232r` -- FTDI's SIO vendor requests; the baud divisor decoded per
  FTDI AN232B-05 (3 MHz / (n + k/8), with 0 -> 3 Mbaud and 1 -> 2 Mbaud); bulk IN
  packets of at most 64 bytes, each led by the two status bytes and sent when 62
  data bytes are waiting, when the modem status changes, on the event
  character, or when the latency timer runs out (a status-only packet when idle).
- :class:`Ft232h` -- the hi-speed FT232H in UART mode: the same requests, with
  the divisor's bits 16-23 in wIndex's high byte (its low byte is the port
  index), bit 17 selecting the 12 MHz clock (12 MHz / divisor, 0 -> 12 Mbaud,
  1 -> 8 Mbaud), packets of 512 bytes and a 1 KiB receive buffer.
- :class:`Cp2102` -- the CP210x interface requests of Silicon Labs AN571; every
  baud rate is aliased onto the CP2102's fixed table (AN205, table 1).
- :class:`CdcAcm` -- one or more CDC-ACM functions (a cellular module's AT
  ports, an MCU's serial port): SET/GET_LINE_CODING, SET_CONTROL_LINE_STATE,
  SEND_BREAK and SERIAL_STATE notifications on the interrupt IN endpoint.

Descriptors come from ``hw_configs/usb/<name>.toml`` (:func:`load_device_spec`;
the schema is in hw_configs/README.md). :func:`create_model` builds a model by
that name.
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import struct
import threading
import time
from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path
from typing import Any, ClassVar

import usb.core

from serialhs.driver.lines import Lines
from serialhs.driver.port import Port
from serialhs.driver.settings import FlowControl, Parity, SerialSettings, StopBits
from serialhs.errors import ConfigError, ProfileError, ReadTimeout, SerialHSError, WriteTimeout
from serialhs.hwconfig import (
    Field,
    FieldValueError,
    TomlDocument,
    boolean,
    choice,
    hex_id,
    integer,
    profile_files,
    read_document,
    reject_unknown_tables,
    text,
    text_list,
    validate_table,
)
from serialhs.sim.wire import Wire, WireEnd
from serialhs.sim.wirecore import WireStats
from serialhs.usb.virtual import (
    LIBUSB_ERROR_IO,
    LIBUSB_ERROR_OVERFLOW,
    LIBUSB_ERROR_TIMEOUT,
    DeviceSpec,
    EndpointSpec,
    InterfaceSpec,
    Setup,
    Stall,
    VirtualDevice,
    usb_error,
)

__all__ = [
    "CP2102_ALIASES",
    "EMULATIONS",
    "FTDI_FRACTION_CODES",
    "USB_KIND",
    "CdcAcm",
    "Cp2102",
    "Ft232h",
    "Ft232r",
    "SerialModel",
    "UartLink",
    "available_models",
    "check_spec",
    "cp2102_rate",
    "create_model",
    "device_spec_from_document",
    "ftdi_divisor",
    "ftdi_rate",
    "load_device_spec",
    "model_names",
]

log = logging.getLogger("serialhs.usb")

#: Sub-directory of a hw_configs directory holding device descriptor data.
USB_KIND = "usb"
USB_TABLE = "usb"
#: The device models a descriptor file can ask for.
EMULATIONS: tuple[str, ...] = ("ft232r", "ft232h", "cp2102", "cdc_acm")
#: The modem profile an adapter gets when told to sit in front of a modem.
DEFAULT_MODEM = "v90_dialup"

#: How often a link looks at the wire's lines and counters (seconds).
POLL = 0.005


# -- FTDI baud divisors (FTDI AN232B-05) --------------------------------------------------

#: Sub-integer divisor codes (bits 16, 15, 14 of the encoded divisor) -> eighths,
#: from AN232B-05's table: 000 0, 001 0.5, 010 0.25, 011 0.125, 100 0.375,
#: 101 0.625, 110 0.75, 111 0.875.
FTDI_FRACTION_CODES: tuple[int, ...] = (0, 4, 2, 1, 3, 5, 6, 7)
FTDI_BASE_CLOCK = 3_000_000  #: 48 MHz / 16
FTDI_HISPEED_CLOCK = 12_000_000  #: 120 MHz / 10, the H chips' second clock
FTDI_HISPEED_FLAG = 1 << 17  #: of the encoded divisor: divide the 12 MHz clock


def _ftdi_encoded(value: int, index: int, wide: bool) -> int:
    """The encoded divisor in SET_BAUD_RATE's wValue and wIndex: bits 16+ are
    wIndex itself on a single-channel full-speed chip, its high byte on a
    hi-speed or multi-channel chip (``wide``; the low byte is the port index)."""
    high = (index >> 8) & 0xFF if wide else index & 0xFFFF
    return (value & 0xFFFF) | (high << 16)


def ftdi_divisor(value: int, index: int, *, wide: bool = False) -> Fraction:
    """The divisor an FTDI chip decodes from SET_BAUD_RATE's wValue and wIndex:
    bits 0-13 of the encoded divisor are the integer part n, bits 14-16 the
    sub-integer code (AN232B-05; ``wide``: see :func:`_ftdi_encoded`).

    Raises :class:`ValueError` for the sub-integer divisors between 0 and 2 that
    AN232B-05 does not allow."""
    encoded = _ftdi_encoded(value, index, wide)
    integer_part = encoded & 0x3FFF
    eighths = FTDI_FRACTION_CODES[(encoded >> 14) & 0x07]
    if integer_part < 2 and eighths:
        raise ValueError(
            f"divisor {integer_part} + {eighths}/8 is not allowed (AN232B-05: sub-integer "
            "divisors between 0 and 2)"
        )
    return integer_part + Fraction(eighths, 8)


def ftdi_rate(value: int, index: int, *, hispeed: bool = False) -> Fraction:
    """The baud rate an FTDI chip runs at for SET_BAUD_RATE(wValue, wIndex): the
    clock / divisor, with the special cases divisor 0 -> the clock, 1 -> 2/3 of
    it. The clock is 3 MHz; on a hi-speed chip (``hispeed``, whose wIndex is
    wide) 12 MHz when the divisor's bit 17 is set."""
    clock = FTDI_BASE_CLOCK
    if hispeed and _ftdi_encoded(value, index, True) & FTDI_HISPEED_FLAG:
        clock = FTDI_HISPEED_CLOCK
    divisor = ftdi_divisor(value, index, wide=hispeed)
    if divisor == 0:
        return Fraction(clock)
    if divisor == 1:
        return Fraction(clock * 2, 3)
    return clock / divisor


# -- CP2102 baud aliasing (Silicon Labs AN205, table 1) ---------------------------------------

#: (rate the UART runs at, highest requested rate that maps to it), in order. The
#: CP2101/2/3/9 default alias table; a request maps to the first row whose upper
#: bound it does not exceed (Linux's cp210x keeps the same table).
CP2102_ALIASES: tuple[tuple[int, int], ...] = (
    (300, 300), (600, 600), (1200, 1200), (1800, 1800), (2400, 2400), (4000, 4000),
    (4800, 4803), (7200, 7207), (9600, 9612), (14400, 14428), (16000, 16062),
    (19200, 19250), (28800, 28912), (38400, 38601), (51200, 51558), (56000, 56280),
    (57600, 58053), (64000, 64111), (76800, 77608), (115200, 117028), (128000, 129347),
    (153600, 156868), (230400, 237832), (250000, 254234), (256000, 273066),
    (460800, 491520), (500000, 567138), (576000, 670254), (921600, 0xFFFFFFFF),
)  # fmt: skip


def cp2102_rate(requested: int) -> int:
    """The rate a CP2102 runs at when asked for ``requested`` (AN205 aliasing)."""
    for rate, high in CP2102_ALIASES:
        if requested <= high:
            return rate
    return CP2102_ALIASES[-1][0]


# -- descriptor data (hw_configs/usb) -------------------------------------------------------

_SPEEDS = ("low", "full", "high")
_UART_KINDS = ("wire", "modem")

_DEVICE_FIELDS: tuple[Field, ...] = (
    Field("description", text(), required=True, doc="one-line human description"),
    Field("emulation", choice(EMULATIONS), required=True, doc="the model answering requests"),
    Field("vid", hex_id(), required=True),
    Field("pid", hex_id(), required=True),
    Field("adapter", text(), doc="adapters/<name>.toml this device is an instance of"),
    Field("modem", text(), doc="modems/<name>.toml: the modem behind its AT interfaces"),
    Field("manufacturer", text(), doc="iManufacturer string"),
    Field("product", text(), doc="iProduct string"),
    Field("serial_number", text(), doc="iSerialNumber string"),
    Field("bcd_usb", hex_id(), default=0x0200),
    Field("bcd_device", hex_id(), default=0x0100),
    Field("device_class", hex_id(maximum=0xFF), default=0),
    Field("device_subclass", hex_id(maximum=0xFF), default=0),
    Field("device_protocol", hex_id(maximum=0xFF), default=0),
    Field("max_packet_size0", integer(minimum=8, maximum=64), default=64),
    Field("speed", choice(_SPEEDS), default="full"),
    Field("configuration_name", text(), doc="iConfiguration string"),
    Field("config_attributes", hex_id(maximum=0xFF), default=0x80),
    Field("max_power", integer(minimum=0, maximum=500), default=100, doc="mA"),
    Field("references", text_list(), default=()),
)

_INTERFACE_FIELDS: tuple[Field, ...] = (
    Field("number", integer(minimum=0, maximum=255), required=True),
    Field("class", hex_id(maximum=0xFF), required=True),
    Field("subclass", hex_id(maximum=0xFF), required=True),
    Field("protocol", hex_id(maximum=0xFF), required=True),
    Field("name", text(), doc="iInterface string"),
    Field("kernel_driver", text(), doc="driver Linux binds at plug time"),
    Field("uart", choice(_UART_KINDS), doc="wire or modem"),
    Field("cdc_acm", boolean(), default=False),
    Field("data_interface", integer(minimum=0, maximum=255)),
    Field("endpoints", lambda v: v, required=True),
)

_ENDPOINT_FIELDS: tuple[Field, ...] = (
    Field("address", hex_id(maximum=0xFF), required=True),
    Field("type", choice(("bulk", "interrupt")), required=True),
    Field("max_packet_size", integer(minimum=1, maximum=1024), required=True),
    Field("interval", integer(minimum=0, maximum=255), default=0),
)


def _entry(
    doc: TomlDocument, where: str, raw: Any, fields: Sequence[Field], line: int | None
) -> dict[str, Any]:
    """Check one table of an array of tables (or an inline table) against ``fields``."""
    if not isinstance(raw, dict):
        raise doc.error(f"{where} must be a table", line=line)
    known = {f.name for f in fields}
    for key in raw:
        if key not in known:
            raise doc.error(
                f"{where}: unknown key {key!r}; known keys: {', '.join(sorted(known))}", line=line
            )
    values: dict[str, Any] = {}
    for spec in fields:
        if spec.name not in raw:
            if spec.required:
                raise doc.error(f"{where}: missing required key {spec.name!r}", line=line)
            values[spec.name] = spec.default
            continue
        try:
            values[spec.name] = spec.convert(raw[spec.name])
        except FieldValueError as e:
            raise doc.error(f"{where} {spec.name}: {e}", line=line) from None
    return values


def _interface_lines(doc: TomlDocument) -> list[int | None]:
    """The line of each ``[[usb.interface]]`` header, in order (for error messages)."""
    found: list[int | None] = []
    for number, line in enumerate(doc.text.splitlines(), start=1):
        if line.strip().replace(" ", "").startswith("[[usb.interface]]"):
            found.append(number)
    return found


def device_spec_from_document(doc: TomlDocument) -> DeviceSpec:
    """Validate a parsed ``usb/*.toml`` document and build its :class:`DeviceSpec`."""
    reject_unknown_tables(doc, {USB_TABLE})
    v = validate_table(doc, USB_TABLE, _DEVICE_FIELDS, subtables=("interface",))
    raw_interfaces = doc.data[USB_TABLE].get("interface", [])
    header = doc.line_of(None, USB_TABLE)
    if not isinstance(raw_interfaces, list) or not raw_interfaces:
        raise doc.error("[usb] needs at least one [[usb.interface]] table", line=header)
    lines = _interface_lines(doc)
    interfaces: list[InterfaceSpec] = []
    addresses: set[int] = set()
    for position, raw in enumerate(raw_interfaces):
        line = lines[position] if position < len(lines) else header
        where = f"[[usb.interface]] number {position + 1}"
        i = _entry(doc, where, raw, _INTERFACE_FIELDS, line)
        if not isinstance(i["endpoints"], list):
            raise doc.error(f"{where} endpoints must be an array of tables", line=line)
        endpoints: list[EndpointSpec] = []
        for ep_raw in i["endpoints"]:
            e = _entry(doc, f"{where} endpoint", ep_raw, _ENDPOINT_FIELDS, line)
            address = e["address"]
            if address & 0x0F == 0 or address & 0x70:
                raise doc.error(
                    f"{where}: endpoint address 0x{address:02x} is not 0x01-0x0f or 0x81-0x8f",
                    line=line,
                )
            if address in addresses:
                raise doc.error(f"{where}: endpoint 0x{address:02x} is used twice", line=line)
            addresses.add(address)
            endpoints.append(EndpointSpec(address, e["type"], e["max_packet_size"], e["interval"]))
        interfaces.append(
            InterfaceSpec(
                number=i["number"],
                interface_class=i["class"],
                interface_subclass=i["subclass"],
                interface_protocol=i["protocol"],
                endpoints=tuple(endpoints),
                name=i["name"],
                kernel_driver=i["kernel_driver"],
                uart=i["uart"],
                cdc_acm=i["cdc_acm"],
                data_interface=i["data_interface"],
            )
        )
    interfaces.sort(key=lambda s: s.number)
    numbers = [s.number for s in interfaces]
    if len(set(numbers)) != len(numbers):
        raise doc.error("[[usb.interface]] numbers must be unique", line=header)
    spec = DeviceSpec(
        name=doc.path.stem,
        description=v["description"],
        emulation=v["emulation"],
        vid=v["vid"],
        pid=v["pid"],
        interfaces=tuple(interfaces),
        manufacturer=v["manufacturer"],
        product=v["product"],
        serial_number=v["serial_number"],
        bcd_usb=v["bcd_usb"],
        bcd_device=v["bcd_device"],
        device_class=v["device_class"],
        device_subclass=v["device_subclass"],
        device_protocol=v["device_protocol"],
        max_packet_size0=v["max_packet_size0"],
        speed=v["speed"],
        configuration_name=v["configuration_name"],
        config_attributes=v["config_attributes"],
        max_power_ma=v["max_power"],
        adapter=v["adapter"],
        modem=v["modem"],
        references=tuple(v["references"]),
        path=str(doc.path),
    )
    try:
        check_spec(spec)
    except ConfigError as e:
        raise doc.error(str(e), line=header) from None
    return spec


def check_spec(spec: DeviceSpec) -> None:
    """Check that the interfaces fit the emulation; raise :class:`ConfigError`."""
    for iface in spec.interfaces:
        if iface.data_interface is not None:
            if not iface.cdc_acm:
                raise ConfigError(f"interface {iface.number}: data_interface needs cdc_acm")
            if spec.interface(iface.data_interface) is None:
                raise ConfigError(
                    f"interface {iface.number}: data_interface {iface.data_interface} "
                    "does not exist"
                )
        if iface.uart is not None:
            data = spec.interface(iface.data_interface or iface.number)
            assert data is not None
            if (
                data.endpoint(kind="bulk", is_in=True) is None
                or data.endpoint(kind="bulk", is_in=False) is None
            ):
                raise ConfigError(
                    f"interface {iface.number} has a uart but interface {data.number} lacks "
                    "a bulk IN and a bulk OUT endpoint"
                )
        if iface.uart == "modem" and spec.modem is None:
            raise ConfigError(f"interface {iface.number}: uart = 'modem' needs [usb] modem")
        if iface.cdc_acm and iface.endpoint(kind="interrupt", is_in=True) is None:
            raise ConfigError(f"interface {iface.number}: cdc_acm needs an interrupt IN endpoint")
    uarts = [i for i in spec.interfaces if i.uart is not None]
    if spec.emulation in ("ft232r", "ft232h", "cp2102"):
        if len(uarts) != 1:
            raise ConfigError(f"emulation {spec.emulation} needs exactly one interface with uart")
        if any(i.cdc_acm for i in spec.interfaces):
            raise ConfigError(f"emulation {spec.emulation} has no CDC-ACM interfaces")
    elif any(i.uart is not None and not i.cdc_acm for i in spec.interfaces):
        raise ConfigError("emulation cdc_acm: every interface with a uart needs cdc_acm = true")


def _check_profiles(spec: DeviceSpec) -> None:
    """The adapter or modem profile a spec names must exist and have its USB id."""
    if spec.adapter is not None:
        from serialhs.hwconfig import load_adapter_profiles  # noqa: PLC0415

        found = [p for p in load_adapter_profiles() if p.name == spec.adapter]
        if not found:
            raise ProfileError(f"no adapter profile {spec.adapter!r}", path=spec.path or spec.name)
        profile = found[0]
        if profile.vid is not None and (profile.vid, profile.pid) != (spec.vid, spec.pid):
            raise ProfileError(
                f"adapter profile {spec.adapter!r} is {profile.usb_id}, the device {spec.usb_id}",
                path=spec.path or spec.name,
            )
    if spec.modem is not None:
        from serialhs.modem.profile import load_modem_profile  # noqa: PLC0415

        modem = load_modem_profile(spec.modem)
        if modem.usb is not None and (modem.usb.vid, modem.usb.pid) != (spec.vid, spec.pid):
            raise ProfileError(
                f"modem profile {spec.modem!r} is {modem.usb.usb_id}, the device {spec.usb_id}",
                path=spec.path or spec.name,
            )


def _looks_like_path(value: str) -> bool:
    return value.endswith(".toml") or "/" in value


def load_device_spec(name_or_path: str | Path, dirs: Sequence[Path] | None = None) -> DeviceSpec:
    """Load ``hw_configs/usb/<name>.toml`` (by name, through the hw_configs search
    path) or a file by path. Errors are :class:`ProfileError` (file and line) or,
    for an unknown name, :class:`ConfigError` listing the names there are."""
    if isinstance(name_or_path, Path) or _looks_like_path(name_or_path):
        spec = device_spec_from_document(read_document(name_or_path))
    else:
        files = profile_files(USB_KIND, dirs)
        for path in files:
            if path.stem == name_or_path:
                spec = device_spec_from_document(read_document(path))
                break
        else:
            known = ", ".join(sorted(p.stem for p in files)) or "none found"
            raise ConfigError(
                f"no virtual USB device model {name_or_path!r}; known: {known} "
                f"(looked for {USB_KIND}/{name_or_path}.toml in the hw_configs search path)"
            )
    _check_profiles(spec)
    return spec


def available_models(dirs: Sequence[Path] | None = None) -> list[str]:
    """The names of the device descriptor files in the search path, sorted."""
    return sorted(path.stem for path in profile_files(USB_KIND, dirs))


# -- the UART side ------------------------------------------------------------------------


class UartLink:
    """The UART of one serial function: a serialhs Port on end ``a`` of a wire.

    A thread (the pump) moves what arrives on the wire into the model
    (``model.uart_data``) as long as the model has room, and tells it about
    line changes and about the errors the wire counted (``model.uart_lines``,
    ``model.uart_errors``). With an emulated modem behind it (``modem`` names
    its profile) the wire is the one :class:`~serialhs.sim.modemsim.ModemSim`
    makes, and the link follows the modem's UART settings instead of taking
    the host's: over USB a module's line coding means nothing.
    """

    def __init__(
        self,
        model: SerialModel,
        interface: int,
        settings: SerialSettings,
        *,
        modem: str | None = None,
        wire_options: dict[str, Any] | None = None,
    ) -> None:
        self.model = model
        self.interface = interface
        self.modem_profile = modem
        self._wire_options = dict(wire_options or {})
        self._power_on = settings
        self.settings = settings
        self.wire: Wire | None = None
        self.modem_sim: Any = None  # serialhs.sim.modemsim.ModemSim
        self.port: Port | None = None
        self.inputs = Lines()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._tx_lock = threading.Lock()
        # One request at a time on the wire's side channel: a Port sends lines,
        # break and settings over one socket and does not serialise them all.
        self._side_lock = threading.Lock()
        self._tx_busy_until = 0.0
        self._stats: dict[str, int] | None = None

    @property
    def label(self) -> str:
        return f"{self.model.name} interface {self.interface}"

    @property
    def far(self) -> WireEnd:
        """The far end of the wire (for a modem link: the modem's end)."""
        if self.wire is None:
            raise ConfigError(f"{self.label}: the link is not running")
        return self.wire.b

    # -- lifecycle ----------------------------------------------------------------------

    def start(self) -> None:
        if self.wire is not None:
            return
        if self.modem_profile is not None:
            from serialhs.sim.modemsim import ModemSim  # noqa: PLC0415

            sim = ModemSim(
                count=1, profiles=(self.modem_profile,), wire_options=self._wire_options
            ).start()
            self.modem_sim = sim
            self.wire = sim.wire(sim.modems[0].number)
            self.settings = self._power_on = sim.modems[0].settings
        else:
            self.wire = Wire(settings=self.settings, **self._wire_options).start()
        try:
            self.port = Port(
                self.wire.a.pty, self.settings, rts=False, dtr=False, timeout=1.0
            ).open()
            self._stats = _error_counts(self.wire.a.stats())
        except BaseException:
            self._stop_far()
            raise
        self._thread = threading.Thread(target=self._pump, name=f"usb {self.label}", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2.0)
            self._thread = None
        if self.port is not None:
            self.port.close()
            self.port = None
        self._stop_far()

    def _stop_far(self) -> None:
        if self.modem_sim is not None:
            self.modem_sim.stop()
            self.modem_sim = None
        elif self.wire is not None:
            self.wire.stop()
        self.wire = None

    # -- what the model does to its UART -------------------------------------------------

    @property
    def follows_far_end(self) -> bool:
        return self.modem_sim is not None

    def configure(self, settings: SerialSettings) -> None:
        """Run the UART at ``settings`` (a modem link keeps the modem's)."""
        if self.follows_far_end or self.port is None:
            return
        if settings != self.settings:
            with self._side_lock:
                self.port.reconfigure(settings)
            self.settings = settings

    def reset(self) -> None:
        """The chip's power-on UART: its settings, RTS and DTR off, no break."""
        if self.port is None:
            return
        try:
            self.configure(self._power_on)
            with self._side_lock:
                self.port.set_break(False)
                self.port.set_lines(rts=False, dtr=False)
        except SerialHSError as e:
            log.debug("%s: reset: %s", self.label, e)
        self._tx_busy_until = 0.0

    def set_lines(self, *, rts: bool | None = None, dtr: bool | None = None) -> None:
        if self.port is not None:
            with self._side_lock:
                self.port.set_lines(rts=rts, dtr=dtr)

    def set_break(self, on: bool) -> None:
        if self.port is not None:
            with self._side_lock:
                self.port.set_break(on)

    def write(self, data: bytes, deadline: float | None) -> int:
        """Send ``data``; return how much went before ``deadline``."""
        port = self.port
        if port is None or not data:
            return len(data)
        limit = 3600.0 if deadline is None else max(0.0, deadline - time.monotonic())
        with self._tx_lock:
            try:
                written = port.write(data, timeout=max(limit, 0.001))
            except WriteTimeout as e:
                written = e.written
            except SerialHSError as e:
                raise usb_error(LIBUSB_ERROR_IO, f"{self.label}: {e}") from e
            now = time.monotonic()
            start = max(now, self._tx_busy_until)
            self._tx_busy_until = start + written * self.settings.char_time
        return written

    def tx_pending(self) -> int:
        """Bytes the chip's transmitter still has to send (estimated from the rate)."""
        left = self._tx_busy_until - time.monotonic()
        return 0 if left <= 0 else int(left / self.settings.char_time) + 1

    def purge_tx(self) -> None:
        self._tx_busy_until = 0.0
        if self.port is not None:
            self.port.reset_output()

    # -- the pump -----------------------------------------------------------------------

    def _pump(self) -> None:
        port = self.port
        assert port is not None
        last_poll = 0.0
        while not self._stop.is_set():
            try:
                room = self.model.uart_room(self)
                data = b""
                if room > 0:
                    try:
                        data = port.read_some(room, timeout=POLL)
                    except ReadTimeout:
                        data = b""
                else:
                    self._stop.wait(POLL)
                if data:
                    self.model.uart_data(self, data)
                now = time.monotonic()
                if data or now - last_poll >= POLL:
                    last_poll = now
                    self._poll()
            except Exception as e:  # the pump must outlive a bad moment of the wire
                if self._stop.is_set():
                    break
                log.debug("%s: %s", self.label, e)
                self._stop.wait(0.05)

    def _poll(self) -> None:
        port, wire = self.port, self.wire
        if port is None or wire is None:
            return
        with self._side_lock:
            lines = port.lines()
        if lines != self.inputs:
            self.inputs = lines
            self.model.uart_lines(self, lines)
        counts = _error_counts(wire.a.stats())
        before, self._stats = self._stats, counts
        if before is not None and counts != before:
            errors = {
                name: counts[name] - before[name]
                for name in _ERROR_COUNTERS
                if counts[name] > before[name]
            }
            if errors:
                self.model.uart_errors(self, errors)
        if self.modem_sim is not None:
            settings = self.modem_sim.modems[0].settings
            if settings != self.settings:
                with self._side_lock:
                    port.reconfigure(settings)
                self.settings = settings


_ERROR_COUNTERS = ("framing_errors", "parity_errors", "breaks", "overruns")


def _error_counts(stats: WireStats) -> dict[str, int]:
    """The error counters of a wire end, copied (the wire hands out its live record)."""
    return {name: int(getattr(stats, name)) for name in _ERROR_COUNTERS}


# -- the models ---------------------------------------------------------------------------


def _mask_lines(lines: Lines) -> Lines:
    """Only the inputs of a snapshot (the model's own outputs are its own state)."""
    return Lines(cts=lines.cts, dsr=lines.dsr, dcd=lines.dcd, ri=lines.ri)


class SerialModel(VirtualDevice):
    """A device with one or more UARTs (one :class:`UartLink` per serial interface)."""

    #: Power-on UART settings.
    POWER_ON: ClassVar[SerialSettings] = SerialSettings(9600)

    def __init__(self, spec: DeviceSpec, *, wire_options: dict[str, Any] | None = None) -> None:
        super().__init__(spec)
        self._modem = spec.modem or DEFAULT_MODEM
        self._wire_options = wire_options
        self.links: dict[int, UartLink] = {}
        self._started = False

    def start(self) -> None:
        if self._started:
            return
        try:
            for iface in self.spec.interfaces:
                if iface.uart is None:
                    continue
                link = UartLink(
                    self,
                    iface.number,
                    self.POWER_ON,
                    modem=self._modem if iface.uart == "modem" else None,
                    wire_options=self._wire_options,
                )
                self.links[iface.number] = link
                link.start()
        except BaseException:
            for link in self.links.values():
                link.close()
            self.links.clear()
            raise
        self._started = True

    def close(self) -> None:
        if self.bus is not None:
            self.bus.unplug(self)
        for link in self.links.values():
            link.close()
        self.links.clear()
        self._started = False

    def link(self, interface: int | None = None) -> UartLink:
        """The link of a serial interface (default: the first one)."""
        if not self.links:
            raise ConfigError(f"{self.name} is not started (plug it into a VirtualBus)")
        if interface is None:
            return self.links[min(self.links)]
        try:
            return self.links[interface]
        except KeyError:
            raise ConfigError(
                f"{self.name} has no serial interface {interface}; it has "
                f"{', '.join(str(n) for n in sorted(self.links))}"
            ) from None

    def wire(self, interface: int | None = None) -> Wire:
        wire = self.link(interface).wire
        assert wire is not None
        return wire

    def modem_sim(self, interface: int | None = None) -> Any:
        """The :class:`~serialhs.sim.modemsim.ModemSim` behind a modem interface, or None."""
        return self.link(interface).modem_sim

    # -- what the links report (pump threads) -----------------------------------------------

    def uart_room(self, link: UartLink) -> int:
        """How many more received bytes the model takes now."""
        return 0

    def uart_data(self, link: UartLink, data: bytes) -> None:
        """Bytes arrived on the wire."""

    def uart_lines(self, link: UartLink, lines: Lines) -> None:
        """The lines at the model's end changed."""

    def uart_errors(self, link: UartLink, errors: dict[str, int]) -> None:
        """The wire counted framing/parity errors, breaks or overruns at our end."""

    # -- helpers -----------------------------------------------------------------------

    def _write(
        self, link: UartLink | None, data: bytes, deadline: float | None, generation: int
    ) -> int:
        if link is None:
            self.check(generation)
            return len(data)
        written = link.write(data, deadline)
        self.check(generation)
        if data and written == 0:
            raise usb_error(LIBUSB_ERROR_TIMEOUT, f"{link.label}: nothing sent in time")
        return written


class _OneUartModel(SerialModel):
    """A model with one UART (the FT232R, the CP2102): its interface, its link,
    and what powering on and off does to the link."""

    _rx: bytearray
    _inputs: Lines

    def __init__(self, spec: DeviceSpec, *, wire_options: dict[str, Any] | None = None) -> None:
        super().__init__(spec, wire_options=wire_options)
        self.power_on()

    def _reset_link(self) -> None:
        """Reset the link (at power-on) and take the far end's lines as they are."""
        self._inputs = Lines()
        link = self._link()
        if link is not None:
            link.reset()
            self._inputs = _mask_lines(link.inputs)

    def power_off(self) -> None:
        link = self._link()
        if link is not None:
            link.reset()
        self._rx = bytearray()

    @property
    def _interface(self) -> int:
        return next(i.number for i in self.spec.interfaces if i.uart is not None)

    def _link(self) -> UartLink | None:
        return self.links.get(self._interface)

    def _apply(self, settings: SerialSettings) -> None:
        self.settings = settings
        link = self._link()
        if link is not None:
            link.configure(settings)


def _take_packets(fifo: bytearray, size: int, max_packet: int) -> bytes:
    """What one bulk IN transfer of ``size`` bytes gets from ``fifo``: whole packets
    of ``max_packet`` bytes while they fit; a packet larger than a buffer smaller
    than one packet is an overflow (babble), as libusb reports it."""
    if not fifo:
        return b""
    if size < max_packet and len(fifo) > size:
        raise usb_error(LIBUSB_ERROR_OVERFLOW, f"{len(fifo)} bytes waiting, buffer {size}")
    limit = size if size < max_packet else (size // max_packet) * max_packet
    out = bytes(fifo[:limit])
    del fifo[:limit]
    return out


# -- FTDI FT232R ----------------------------------------------------------------------------

# SIO requests (Linux ftdi_sio.h, libftdi)
FTDI_RESET = 0x00
FTDI_MODEM_CTRL = 0x01
FTDI_SET_FLOW_CTRL = 0x02
FTDI_SET_BAUD_RATE = 0x03
FTDI_SET_DATA = 0x04
FTDI_GET_MODEM_STATUS = 0x05
FTDI_SET_EVENT_CHAR = 0x06
FTDI_SET_ERROR_CHAR = 0x07
FTDI_SET_LATENCY_TIMER = 0x09
FTDI_GET_LATENCY_TIMER = 0x0A
FTDI_SET_BITMODE = 0x0B
FTDI_READ_PINS = 0x0C
FTDI_READ_EEPROM = 0x90
FTDI_WRITE_EEPROM = 0x91
FTDI_ERASE_EEPROM = 0x92

# Modem status (byte 0 of every bulk IN packet)
FTDI_CTS = 0x10
FTDI_DSR = 0x20
FTDI_RI = 0x40
FTDI_DCD = 0x80
# Line status (byte 1)
FTDI_DR, FTDI_OE, FTDI_PE, FTDI_FE, FTDI_BI, FTDI_THRE, FTDI_TEMT, FTDI_FIFO_ERR = (
    0x01, 0x02, 0x04, 0x08, 0x10, 0x20, 0x40, 0x80
)  # fmt: skip

_FTDI_PARITY = (Parity.NONE, Parity.ODD, Parity.EVEN, Parity.MARK, Parity.SPACE)


class Ft232r(_OneUartModel):
    """An FTDI FT232R (see the module docstring for what it does)."""

    RX_BUFFER = 256  #: the FT232R's receive buffer (DS_FT232R)
    PACKET = 64  #: full-speed bulk packet: 2 status bytes + 62 data bytes
    HISPEED = False  #: a hi-speed chip: wide wIndex, the 12 MHz clock
    #: The low nibble of the modem status byte as the FT232R sends it; drivers mask
    #: byte 0 with 0xF0.
    STATUS_LOW = 0x01

    def power_on(self) -> None:
        self.latency_ms = 16
        self.divisor = (0x4138, 0)  # 9600
        self.baudrate = 9600
        self.settings = self.POWER_ON
        self.dtr = self.rts = False
        self.break_on = False
        self.event_char: int | None = None
        self.error_char: int | None = None
        self.bitmode = 0
        self._rx = bytearray()
        self._lsr = 0
        self._last_packet = time.monotonic()
        self._last_modem: int | None = None
        self._reset_link()

    # -- status ------------------------------------------------------------------------

    def modem_status(self) -> int:
        """Byte 0 of a status packet: CTS 0x10, DSR 0x20, RI 0x40, DCD 0x80."""
        i = self._inputs
        return (
            self.STATUS_LOW
            | (FTDI_CTS if i.cts else 0)
            | (FTDI_DSR if i.dsr else 0)
            | (FTDI_RI if i.ri else 0)
            | (FTDI_DCD if i.dcd else 0)
        )

    def line_status(self) -> int:
        """Byte 1: the error bits since the last packet, THRE and TEMT when the
        transmitter is empty."""
        link = self._link()
        idle = link is None or link.tx_pending() == 0
        return self._lsr | ((FTDI_THRE | FTDI_TEMT) if idle else 0)

    # -- control requests --------------------------------------------------------------

    def vendor_request(self, setup: Setup, data: bytes) -> bytes | None:
        request, value, index = setup.request, setup.value, setup.index
        link = self._link()
        if setup.is_in:
            if request == FTDI_GET_MODEM_STATUS:
                return bytes([self.modem_status(), self.line_status()])
            if request == FTDI_GET_LATENCY_TIMER:
                return bytes([self.latency_ms])
            if request == FTDI_READ_PINS:
                return b"\xff"
            if request == FTDI_READ_EEPROM:
                return b"\xff\xff"  # a blank EEPROM word
            raise Stall(f"unknown FTDI IN request 0x{request:02x}")
        if request == FTDI_RESET:
            if value in (0, 1):
                self._rx.clear()
                self._lsr = 0
            if value in (0, 2) and link is not None:
                link.purge_tx()
            return None
        if request == FTDI_MODEM_CTRL:
            dtr = bool(value & 0x01) if value & 0x0100 else None
            rts = bool(value & 0x02) if value & 0x0200 else None
            if dtr is not None:
                self.dtr = dtr
            if rts is not None:
                self.rts = rts
            if link is not None:
                link.set_lines(rts=rts, dtr=dtr)
            return None
        if request == FTDI_SET_FLOW_CTRL:
            mode = index >> 8
            if mode & 0x01:
                flow = FlowControl.RTSCTS
            elif mode & 0x02:
                flow = FlowControl.DSRDTR
            elif mode & 0x04:
                flow = FlowControl.XONXOFF
            else:
                flow = FlowControl.NONE
            self._apply(self.settings.replace(flow=flow))
            return None
        if request == FTDI_SET_BAUD_RATE:
            try:
                rate = ftdi_rate(value, index, hispeed=self.HISPEED)
            except ValueError as e:
                raise Stall(str(e)) from None
            self.divisor = (value, index)
            self.baudrate = round(rate)
            self._apply(self.settings.replace(baudrate=self.baudrate))
            return None
        if request == FTDI_SET_DATA:
            self._set_data(value)
            return None
        if request == FTDI_SET_EVENT_CHAR:
            self.event_char = (value & 0xFF) if value & 0x100 else None
            return None
        if request == FTDI_SET_ERROR_CHAR:
            self.error_char = (value & 0xFF) if value & 0x100 else None
            return None
        if request == FTDI_SET_LATENCY_TIMER:
            latency = value & 0xFF
            if latency < 1:
                raise Stall("latency timer 0")
            self.latency_ms = latency
            return None
        if request == FTDI_SET_BITMODE:
            self.bitmode = value
            return None
        if request in (FTDI_WRITE_EEPROM, FTDI_ERASE_EEPROM):
            return None
        raise Stall(f"unknown FTDI OUT request 0x{request:02x}")

    def _set_data(self, value: int) -> None:
        bits = value & 0xFF
        parity_code = (value >> 8) & 0x07
        stop_code = (value >> 11) & 0x07
        if parity_code >= len(_FTDI_PARITY) or stop_code > 2:
            raise Stall(f"SET_DATA 0x{value:04x}: bad parity or stop bits")
        # The FT232R has 7 or 8 data bits and 1 or 2 stop bits (DS_FT232R).
        bytesize = 7 if bits == 7 else 8
        stopbits = StopBits.TWO if stop_code == 2 else StopBits.ONE
        self._apply(
            self.settings.replace(
                bytesize=bytesize, parity=_FTDI_PARITY[parity_code], stopbits=stopbits
            )
        )
        on = bool(value & 0x4000)
        link = self._link()
        if on != self.break_on and link is not None:
            link.set_break(on)
        self.break_on = on

    # -- data --------------------------------------------------------------------------

    def bulk_write(self, ep: int, data: bytes, deadline: float | None, generation: int) -> int:
        with self.cond:
            self.check(generation)
            link = self._link()
        return self._write(link, data, deadline, generation)

    def _packet_ready(self, now: float) -> bytes | None:
        room = self.PACKET - 2
        modem = self.modem_status()
        urgent = (
            len(self._rx) >= room
            or modem != self._last_modem
            or self._lsr
            or (self.event_char is not None and self.event_char in self._rx[:room])
        )
        if not urgent and now < self._last_packet + self.latency_ms / 1000.0:
            return None
        payload = bytes(self._rx[:room])
        del self._rx[:room]
        packet = bytes([modem, self.line_status()]) + payload
        self._lsr = 0
        self._last_modem = modem
        self._last_packet = now
        self.cond.notify_all()
        return packet

    def bulk_read(self, ep: int, size: int, deadline: float | None, generation: int) -> bytes:
        """Whole packets of up to 64 bytes, each ``[modem status, line status, data...]``;
        the transfer ends with the first short packet or when ``size`` is full."""

        def ready() -> bytes | None:
            return self._packet_ready(time.monotonic())

        def wake() -> float:
            return self._last_packet + self.latency_ms / 1000.0

        out = bytearray()
        while not out or len(out) + 2 <= size:
            with self.cond:
                try:
                    packet = self.wait_until(ready, generation, deadline, wake_at=wake)
                except usb.core.USBTimeoutError:
                    if out:
                        return bytes(out)  # libusb: a timeout after some data returns it
                    raise
                if len(packet) > size - len(out):
                    # The packet does not fit the buffer: babble. The data stays queued.
                    self._rx[:0] = packet[2:]
                    if out:
                        return bytes(out)
                    raise usb_error(
                        LIBUSB_ERROR_OVERFLOW, f"{len(packet)}-byte packet, buffer {size}"
                    )
            out += packet
            if len(packet) < self.PACKET:
                break
        return bytes(out)

    # -- from the wire -----------------------------------------------------------------

    def uart_room(self, link: UartLink) -> int:
        with self.cond:
            return self.RX_BUFFER - len(self._rx)

    def uart_data(self, link: UartLink, data: bytes) -> None:
        with self.cond:
            if self.plugged:
                self._rx += data
                self.cond.notify_all()

    def uart_lines(self, link: UartLink, lines: Lines) -> None:
        with self.cond:
            self._inputs = _mask_lines(lines)
            self.cond.notify_all()

    def uart_errors(self, link: UartLink, errors: dict[str, int]) -> None:
        with self.cond:
            if "framing_errors" in errors:
                self._lsr |= FTDI_FE
            if "parity_errors" in errors:
                self._lsr |= FTDI_PE
            if "breaks" in errors:
                self._lsr |= FTDI_BI
            if "overruns" in errors:
                self._lsr |= FTDI_OE
            self.cond.notify_all()


# -- Silicon Labs CP2102 ----------------------------------------------------------------------

# AN571 interface requests
CP210X_IFC_ENABLE = 0x00
CP210X_SET_BAUDDIV = 0x01
CP210X_GET_BAUDDIV = 0x02
CP210X_SET_LINE_CTL = 0x03
CP210X_GET_LINE_CTL = 0x04
CP210X_SET_BREAK = 0x05
CP210X_IMM_CHAR = 0x06
CP210X_SET_MHS = 0x07
CP210X_GET_MDMSTS = 0x08
CP210X_SET_XON = 0x09
CP210X_SET_XOFF = 0x0A
CP210X_SET_EVENTMASK = 0x0B
CP210X_GET_EVENTMASK = 0x0C
CP210X_SET_CHAR = 0x0D
CP210X_GET_CHARS = 0x0E
CP210X_GET_PROPS = 0x0F
CP210X_GET_COMM_STATUS = 0x10
CP210X_RESET = 0x11
CP210X_PURGE = 0x12
CP210X_SET_FLOW = 0x13
CP210X_GET_FLOW = 0x14
CP210X_EMBED_EVENTS = 0x15
CP210X_GET_EVENTSTATE = 0x16
CP210X_SET_CHARS = 0x19
CP210X_GET_BAUDRATE = 0x1D
CP210X_SET_BAUDRATE = 0x1E
CP210X_VENDOR_SPECIFIC = 0xFF
CP210X_GET_PARTNUM = 0x370B
CP210X_PARTNUM_CP2102 = 0x02
CP210X_BAUD_CLOCK = 3_686_400  #: SET_BAUDDIV: rate = 3.6864 MHz / divisor

# GET_MDMSTS / SET_MHS bits
CP_DTR, CP_RTS, CP_CTS, CP_DSR, CP_RI, CP_DCD = 0x01, 0x02, 0x10, 0x20, 0x40, 0x80
CP_WRITE_DTR, CP_WRITE_RTS = 0x0100, 0x0200
# GET_COMM_STATUS ulErrors
CP_ERR_BREAK, CP_ERR_FRAMING, CP_ERR_HW_OVERRUN, CP_ERR_QUEUE_OVERRUN, CP_ERR_PARITY = (
    0x01, 0x02, 0x04, 0x08, 0x10
)  # fmt: skip
# Embedded events (EMBED_EVENTS): ESC 0x00 = the escape byte itself, ESC 0x01 LSR DATA,
# ESC 0x02 LSR, ESC 0x03 MSR; LSR bits as a 16550's.
CP_LSR_OVERRUN, CP_LSR_PARITY, CP_LSR_FRAME, CP_LSR_BREAK = 0x02, 0x04, 0x08, 0x10
# GET/SET_EVENTMASK and GET_EVENTSTATE
CP_EV_RI_TRAILING, CP_EV_RX_CHAR, CP_EV_CTS, CP_EV_DSR, CP_EV_DCD, CP_EV_BREAK, CP_EV_ERROR = (
    0x0001, 0x0100, 0x0800, 0x1000, 0x2000, 0x4000, 0x8000
)  # fmt: skip

_CP_PARITY = (Parity.NONE, Parity.ODD, Parity.EVEN, Parity.MARK, Parity.SPACE)


class Ft232h(Ft232r):
    """An FTDI FT232H in its UART mode (DS_FT232H): the FT232R's requests, bulk
    packets of 512 bytes at high speed, a 1 KiB receive buffer, and baud divisors
    of the 3 MHz or (bit 17) the 12 MHz clock, up to 12 Mbaud."""

    RX_BUFFER = 1024  #: DS_FT232H: 1 KiB receive and transmit buffers
    PACKET = 512  #: hi-speed bulk packet: 2 status bytes + 510 data bytes
    HISPEED = True


class Cp2102(_OneUartModel):
    """A Silicon Labs CP2102 (see the module docstring for what it does)."""

    RX_BUFFER = 576  #: receive buffer (CP2102 datasheet)
    TX_BUFFER = 640

    def power_on(self) -> None:
        self.enabled = False
        self.requested_baud = 9600
        self.baudrate = cp2102_rate(9600)
        self.line_ctl = 0x0800  # 8 data bits, no parity, 1 stop bit
        self.settings = self.POWER_ON
        self.dtr = self.rts = False
        self.break_on = False
        self.flow = [0, 0, 128, 128]  # ulControlHandshake, ulFlowReplace, XonLimit, XoffLimit
        self.chars = bytearray(6)  # EOF, error, break, event, XON, XOFF
        self.event_mask = 0
        self.event_state = 0
        self.escape: int | None = None
        self.errors = 0
        self.xoff = False
        self._rx = bytearray()
        self._reset_link()

    def _set_rate(self, requested: int) -> None:
        if requested <= 0:
            raise Stall(f"baud rate {requested}")
        self.requested_baud = requested
        self.baudrate = cp2102_rate(requested)
        self._apply(self.settings.replace(baudrate=self.baudrate))

    def modem_status(self) -> int:
        i = self._inputs
        return (
            (CP_DTR if self.dtr else 0)
            | (CP_RTS if self.rts else 0)
            | (CP_CTS if i.cts else 0)
            | (CP_DSR if i.dsr else 0)
            | (CP_RI if i.ri else 0)
            | (CP_DCD if i.dcd else 0)
        )

    def _msr(self, before: Lines) -> int:
        """A 16550 modem status register: deltas in bits 0-3, states in 4-7."""
        i = self._inputs
        return (
            (0x01 if i.cts != before.cts else 0)
            | (0x02 if i.dsr != before.dsr else 0)
            | (0x04 if before.ri and not i.ri else 0)
            | (0x08 if i.dcd != before.dcd else 0)
            | (0x10 if i.cts else 0)
            | (0x20 if i.dsr else 0)
            | (0x40 if i.ri else 0)
            | (0x80 if i.dcd else 0)
        )

    def _set_outputs(self, *, dtr: bool | None = None, rts: bool | None = None) -> None:
        if dtr is not None:
            self.dtr = dtr
        if rts is not None:
            self.rts = rts
        link = self._link()
        if link is not None:
            link.set_lines(rts=rts, dtr=dtr)

    def _flow_struct(self) -> bytes:
        return struct.pack("<IIII", *self.flow)

    def _set_flow(self, data: bytes) -> None:
        if len(data) < 16:
            raise Stall("SET_FLOW needs 16 bytes")
        handshake, replace, xon_limit, xoff_limit = struct.unpack("<IIII", data[:16])
        self.flow = [handshake, replace, xon_limit, xoff_limit]
        dtr_mode = handshake & 0x03
        rts_mode = (replace >> 6) & 0x03
        if handshake & 0x08:
            flow = FlowControl.RTSCTS
        elif replace & 0x03:
            flow = FlowControl.XONXOFF
        elif handshake & 0x10:
            flow = FlowControl.DSRDTR
        else:
            flow = FlowControl.NONE
        self._apply(self.settings.replace(flow=flow))
        self._set_outputs(dtr=dtr_mode != 0, rts=rts_mode != 0)

    def _props(self) -> bytes:
        """GET_PROPS: the COMMPROP-style structure of AN571 (66 bytes)."""
        return struct.pack(
            "<HHIIIIIIIIIHHIIIIH",
            66,  # wLength
            0x0100,  # bcdVersion
            0x00000001,  # ulServiceMask
            0,  # ulReserved1
            self.TX_BUFFER,  # ulMaxTxQueue
            self.RX_BUFFER,  # ulMaxRxQueue
            921600,  # ulMaxBaud
            0x00000001,  # ulProvSubType: RS-232
            0x0000013F,  # ulProvCapabilities: DTR/DSR, RTS/CTS, DCD, parity, XON/XOFF
            0x0000007F,  # ulSettableParams
            0x1006FFFF,  # ulSettableBaud
            0x000F,  # wSettableData: 5, 6, 7, 8 bits
            0x1F07,  # wSettableStopParity
            self.TX_BUFFER,  # ulCurrentTxQueue
            self.RX_BUFFER,  # ulCurrentRxQueue
            0,  # ulProvSpec1
            0,  # ulProvSpec2
            0,  # uniProvName
        )

    def _comm_status(self) -> bytes:
        link = self._link()
        hold = 0
        flow = self.settings.flow
        if flow is FlowControl.RTSCTS and not self._inputs.cts:
            hold |= 0x01
        if flow is FlowControl.DSRDTR and not self._inputs.dsr:
            hold |= 0x02
        if self.xoff:
            hold |= 0x08
        data = struct.pack(
            "<IIIIBBB",
            self.errors,
            hold,
            len(self._rx),
            0 if link is None else link.tx_pending(),
            0,
            0,
            0,
        )
        self.errors = 0
        return data

    def vendor_request(self, setup: Setup, data: bytes) -> bytes | None:
        request, value = setup.request, setup.value
        if request == CP210X_VENDOR_SPECIFIC:
            if setup.is_in and value == CP210X_GET_PARTNUM:
                return bytes([CP210X_PARTNUM_CP2102, 0])
            raise Stall(f"unknown CP210x vendor-specific request 0x{value:04x}")
        if (setup.index & 0xFF) != self._interface:
            raise Stall(f"CP210x request for interface {setup.index & 0xFF}")
        if setup.is_in:
            return self._get(request)
        self._set(request, value, data)
        return None

    def _get(self, request: int) -> bytes:
        if request == CP210X_GET_BAUDDIV:
            return struct.pack("<H", max(1, CP210X_BAUD_CLOCK // max(1, self.requested_baud)))
        if request == CP210X_GET_LINE_CTL:
            return struct.pack("<H", self.line_ctl)
        if request == CP210X_GET_MDMSTS:
            return bytes([self.modem_status()])
        if request == CP210X_GET_EVENTMASK:
            return struct.pack("<H", self.event_mask)
        if request == CP210X_GET_EVENTSTATE:
            state, self.event_state = self.event_state, 0
            return struct.pack("<H", state)
        if request == CP210X_GET_CHARS:
            return bytes(self.chars)
        if request == CP210X_GET_PROPS:
            return self._props()
        if request == CP210X_GET_COMM_STATUS:
            return self._comm_status()
        if request == CP210X_GET_FLOW:
            return self._flow_struct()
        if request == CP210X_GET_BAUDRATE:
            return struct.pack("<I", self.requested_baud)
        raise Stall(f"unknown CP210x IN request 0x{request:02x}")

    def _set(self, request: int, value: int, data: bytes) -> None:
        link = self._link()
        if request == CP210X_IFC_ENABLE:
            self.enabled = bool(value & 0x01)
            if not self.enabled:
                self.escape = None  # disabling the interface ends event insertion
            return
        if request == CP210X_SET_BAUDRATE:
            if len(data) < 4:
                raise Stall("SET_BAUDRATE needs 4 bytes")
            self._set_rate(struct.unpack("<I", data[:4])[0])
            return
        if request == CP210X_SET_BAUDDIV:
            if value == 0:
                raise Stall("baud divisor 0")
            self._set_rate(round(CP210X_BAUD_CLOCK / value))
            return
        if request == CP210X_SET_LINE_CTL:
            self._set_line_ctl(value)
            return
        if request == CP210X_SET_BREAK:
            self.break_on = bool(value & 0x01)
            if link is not None:
                link.set_break(self.break_on)
            return
        if request == CP210X_IMM_CHAR:
            if link is not None and self.enabled:
                link.write(bytes([value & 0xFF]), time.monotonic() + 1.0)
            return
        if request == CP210X_SET_MHS:
            dtr = bool(value & CP_DTR) if value & CP_WRITE_DTR else None
            rts = bool(value & CP_RTS) if value & CP_WRITE_RTS else None
            if dtr is not None and self.flow[0] & 0x03 in (0, 1):
                self.flow[0] = (self.flow[0] & ~0x03) | int(dtr)
            if rts is not None and (self.flow[1] >> 6) & 0x03 in (0, 1):
                self.flow[1] = (self.flow[1] & ~0xC0) | (int(rts) << 6)
            self._set_outputs(dtr=dtr, rts=rts)
            return
        if request == CP210X_SET_XON:
            self.xoff = False
            self.cond.notify_all()
            return
        if request == CP210X_SET_XOFF:
            self.xoff = True
            return
        if request == CP210X_SET_EVENTMASK:
            self.event_mask = value
            return
        if request == CP210X_SET_CHAR:
            which = (value >> 8) & 0xFF
            if which > 5:
                raise Stall(f"SET_CHAR index {which}")
            self.chars[which] = value & 0xFF
            return
        if request == CP210X_SET_CHARS:
            if len(data) < 6:
                raise Stall("SET_CHARS needs 6 bytes")
            self.chars = bytearray(data[:6])
            return
        if request == CP210X_RESET:
            self.power_on()
            return
        if request == CP210X_PURGE:
            if value & 0x05 and link is not None:
                link.purge_tx()
            if value & 0x0A:
                self._rx.clear()
            return
        if request == CP210X_SET_FLOW:
            self._set_flow(data)
            return
        if request == CP210X_EMBED_EVENTS:
            self.escape = (value & 0xFF) or None
            return
        raise Stall(f"unknown CP210x OUT request 0x{request:02x}")

    def _set_line_ctl(self, value: int) -> None:
        stop_code = value & 0x0F
        parity_code = (value >> 4) & 0x0F
        bits = (value >> 8) & 0xFF
        if bits not in (5, 6, 7, 8) or parity_code >= len(_CP_PARITY) or stop_code > 2:
            raise Stall(f"SET_LINE_CTL 0x{value:04x}")
        if stop_code == 1:  # 1.5 stop bits exist with 5 data bits only
            stopbits = StopBits.ONE_POINT_FIVE if bits == 5 else StopBits.TWO
        else:
            stopbits = StopBits.TWO if stop_code == 2 else StopBits.ONE
        self.line_ctl = value
        self._apply(
            self.settings.replace(bytesize=bits, parity=_CP_PARITY[parity_code], stopbits=stopbits)
        )

    # -- data ---------------------------------------------------------------------------

    def bulk_write(self, ep: int, data: bytes, deadline: float | None, generation: int) -> int:
        with self.cond:
            self.wait_until(lambda: True if not self.xoff else None, generation, deadline)
            link = self._link() if self.enabled else None
        return self._write(link, data, deadline, generation)

    def bulk_read(self, ep: int, size: int, deadline: float | None, generation: int) -> bytes:
        iface = self.spec.interface(self._interface)
        assert iface is not None
        ep_spec = iface.endpoint(kind="bulk", is_in=True)
        max_packet = ep_spec.max_packet_size if ep_spec is not None else 64

        def ready() -> bytes | None:
            if not self._rx:
                return None
            out = _take_packets(self._rx, size, max_packet)
            self.cond.notify_all()
            return out

        return self.wait_until(ready, generation, deadline)

    # -- from the wire ------------------------------------------------------------------

    def uart_room(self, link: UartLink) -> int:
        with self.cond:
            return self.RX_BUFFER - len(self._rx)

    def uart_data(self, link: UartLink, data: bytes) -> None:
        with self.cond:
            if not self.plugged or not self.enabled:
                return  # a disabled UART receives nothing
            if self.escape is not None:
                esc = self.escape
                data = data.replace(bytes([esc]), bytes([esc, 0x00]))
            self._rx += data
            self.event_state |= CP_EV_RX_CHAR & self.event_mask
            self.cond.notify_all()

    def uart_lines(self, link: UartLink, lines: Lines) -> None:
        with self.cond:
            before = self._inputs
            self._inputs = _mask_lines(lines)
            changed = (
                (CP_EV_CTS if before.cts != lines.cts else 0)
                | (CP_EV_DSR if before.dsr != lines.dsr else 0)
                | (CP_EV_DCD if before.dcd != lines.dcd else 0)
                | (CP_EV_RI_TRAILING if before.ri and not lines.ri else 0)
            )
            self.event_state |= changed & self.event_mask
            moved = _mask_lines(lines) != before
            if moved and self.escape is not None and self.enabled and self.plugged:
                self._rx += bytes([self.escape, 0x03, self._msr(before)])
            self.cond.notify_all()

    def uart_errors(self, link: UartLink, errors: dict[str, int]) -> None:
        with self.cond:
            lsr = 0
            if "framing_errors" in errors:
                self.errors |= CP_ERR_FRAMING
                lsr |= CP_LSR_FRAME
            if "parity_errors" in errors:
                self.errors |= CP_ERR_PARITY
                lsr |= CP_LSR_PARITY
            if "breaks" in errors:
                self.errors |= CP_ERR_BREAK
                lsr |= CP_LSR_BREAK
                self.event_state |= CP_EV_BREAK & self.event_mask
            if "overruns" in errors:
                self.errors |= CP_ERR_HW_OVERRUN
                lsr |= CP_LSR_OVERRUN
            if lsr & ~CP_LSR_BREAK:
                self.event_state |= CP_EV_ERROR & self.event_mask
            if lsr and self.escape is not None and self.enabled and self.plugged:
                # The wire hands a broken character on as a NUL: carry it in an
                # "LSR + data" event instead of as plain data.
                last_nul = self._rx.rfind(b"\x00")
                if last_nul >= 0 and (last_nul == 0 or self._rx[last_nul - 1] != self.escape):
                    del self._rx[last_nul]
                self._rx += bytes([self.escape, 0x01, lsr, 0x00])
            self.cond.notify_all()


# -- CDC-ACM ---------------------------------------------------------------------------------

CDC_SEND_ENCAPSULATED_COMMAND = 0x00
CDC_GET_ENCAPSULATED_RESPONSE = 0x01
CDC_SET_LINE_CODING = 0x20
CDC_GET_LINE_CODING = 0x21
CDC_SET_CONTROL_LINE_STATE = 0x22
CDC_SEND_BREAK = 0x23
CDC_SERIAL_STATE = 0x20  #: notification code

# SERIAL_STATE bmUartState bits (USB PSTN 1.2, table 31)
ACM_DCD, ACM_DSR, ACM_BREAK, ACM_RI, ACM_FRAMING, ACM_PARITY, ACM_OVERRUN = (
    0x01, 0x02, 0x04, 0x08, 0x10, 0x20, 0x40
)  # fmt: skip
_ACM_ONE_SHOT = ACM_BREAK | ACM_FRAMING | ACM_PARITY | ACM_OVERRUN

_CDC_STOP = {0: StopBits.ONE, 1: StopBits.ONE_POINT_FIVE, 2: StopBits.TWO}
_CDC_STOP_CODE = {StopBits.ONE: 0, StopBits.ONE_POINT_FIVE: 1, StopBits.TWO: 2}
_CDC_PARITY = (Parity.NONE, Parity.ODD, Parity.EVEN, Parity.MARK, Parity.SPACE)


@dataclasses.dataclass
class _AcmFunction:
    """One CDC-ACM function: its control interface, endpoints and state."""

    control: int
    data: int
    notify_ep: int
    bulk_in: int
    bulk_out: int
    bulk_in_size: int
    notify_size: int
    link: UartLink | None = None
    rate: int = 9600
    char_format: int = 0
    parity: int = 0
    data_bits: int = 8
    dtr: bool = False
    rts: bool = False
    state: int = 0  #: the last bmUartState reported (persistent bits)
    rx: bytearray = dataclasses.field(default_factory=bytearray)
    notifications: collections.deque[bytes] = dataclasses.field(
        default_factory=lambda: collections.deque(maxlen=32)
    )
    break_timer: threading.Timer | None = None

    def line_coding(self) -> bytes:
        return struct.pack("<IBBB", self.rate, self.char_format, self.parity, self.data_bits)


class CdcAcm(SerialModel):
    """CDC-ACM functions (see the module docstring for what they do)."""

    RX_BUFFER = 4096

    def __init__(self, spec: DeviceSpec, *, wire_options: dict[str, Any] | None = None) -> None:
        super().__init__(spec, wire_options=wire_options)
        self.functions: dict[int, _AcmFunction] = {}
        self._by_endpoint: dict[int, _AcmFunction] = {}
        for iface in spec.interfaces:
            if not iface.cdc_acm:
                continue
            data_iface = spec.interface(iface.data_interface or iface.number)
            assert data_iface is not None
            notify = iface.endpoint(kind="interrupt", is_in=True)
            bulk_in = data_iface.endpoint(kind="bulk", is_in=True)
            bulk_out = data_iface.endpoint(kind="bulk", is_in=False)
            assert notify is not None
            function = _AcmFunction(
                control=iface.number,
                data=data_iface.number,
                notify_ep=notify.address,
                bulk_in=0 if bulk_in is None else bulk_in.address,
                bulk_out=0 if bulk_out is None else bulk_out.address,
                bulk_in_size=64 if bulk_in is None else bulk_in.max_packet_size,
                notify_size=notify.max_packet_size,
            )
            self.functions[iface.number] = function
            for ep in (function.notify_ep, function.bulk_in, function.bulk_out):
                if ep:
                    self._by_endpoint[ep] = function
        self.power_on()

    def start(self) -> None:
        super().start()
        for number, function in self.functions.items():
            function.link = self.links.get(number)

    def close(self) -> None:
        for function in self.functions.values():
            if function.break_timer is not None:
                function.break_timer.cancel()
            function.link = None
        super().close()

    def _default_rate(self, function: _AcmFunction) -> int:
        link = function.link
        return self.POWER_ON.baudrate if link is None else link.settings.baudrate

    def power_on(self) -> None:
        for function in self.functions.values():
            if function.break_timer is not None:
                function.break_timer.cancel()
                function.break_timer = None
            link = function.link
            if link is not None:
                link.reset()
            function.rate = self._default_rate(function)
            function.char_format, function.parity, function.data_bits = 0, 0, 8
            function.dtr = function.rts = False
            function.rx.clear()
            function.notifications.clear()
            function.state = 0
            if link is not None:
                self._notify(function, self._line_state(link.inputs))

    def power_off(self) -> None:
        for function in self.functions.values():
            if function.break_timer is not None:
                function.break_timer.cancel()
                function.break_timer = None
            if function.link is not None:
                function.link.reset()
            function.rx.clear()
            function.notifications.clear()

    # -- serial state ------------------------------------------------------------------

    @staticmethod
    def _line_state(lines: Lines) -> int:
        return (
            (ACM_DCD if lines.dcd else 0)
            | (ACM_DSR if lines.dsr else 0)
            | (ACM_RI if lines.ri else 0)
        )

    def _notify(self, function: _AcmFunction, state: int) -> None:
        """Queue a SERIAL_STATE notification if ``state`` differs from the last one
        reported or carries one-shot events (break, framing, parity, overrun)."""
        if state == function.state and not state & _ACM_ONE_SHOT:
            return
        function.state = state & ~_ACM_ONE_SHOT
        function.notifications.append(
            struct.pack("<BBHHHH", 0xA1, CDC_SERIAL_STATE, 0, function.control, 2, state & 0xFFFF)
        )
        self.cond.notify_all()

    # -- control requests ---------------------------------------------------------------

    def class_request(self, setup: Setup, data: bytes) -> bytes | None:
        function = self.functions.get(setup.index & 0xFF)
        if function is None:
            raise Stall(f"interface {setup.index & 0xFF} has no CDC-ACM function")
        request = setup.request
        if setup.is_in:
            if request == CDC_GET_LINE_CODING:
                return function.line_coding()
            raise Stall(f"unknown CDC IN request 0x{request:02x}")
        if request == CDC_SET_LINE_CODING:
            self._set_line_coding(function, data)
            return None
        if request == CDC_SET_CONTROL_LINE_STATE:
            function.dtr = bool(setup.value & 0x01)
            function.rts = bool(setup.value & 0x02)
            if function.link is not None:
                function.link.set_lines(rts=function.rts, dtr=function.dtr)
            return None
        if request == CDC_SEND_BREAK:
            self._send_break(function, setup.value)
            return None
        raise Stall(f"unknown CDC OUT request 0x{request:02x}")

    def _set_line_coding(self, function: _AcmFunction, data: bytes) -> None:
        if len(data) < 7:
            raise Stall("SET_LINE_CODING needs 7 bytes")
        rate, char_format, parity, bits = struct.unpack("<IBBB", data[:7])
        if rate == 0 or char_format > 2 or parity > 4 or bits not in (5, 6, 7, 8, 16):
            raise Stall(f"line coding {rate} {char_format} {parity} {bits}")
        function.rate, function.char_format, function.parity, function.data_bits = (
            rate, char_format, parity, bits
        )  # fmt: skip
        link = function.link
        if link is None:
            return
        bytesize = 8 if bits == 16 else bits
        stopbits = _CDC_STOP[char_format]
        if stopbits is StopBits.ONE_POINT_FIVE and bytesize != 5:
            stopbits = StopBits.TWO
        try:
            settings = link.settings.replace(
                baudrate=min(rate, 20_000_000),
                bytesize=bytesize,
                parity=_CDC_PARITY[parity],
                stopbits=stopbits,
            )
        except ConfigError as e:
            raise Stall(str(e)) from None
        link.configure(settings)

    def _send_break(self, function: _AcmFunction, duration: int) -> None:
        link = function.link
        if function.break_timer is not None:
            function.break_timer.cancel()
            function.break_timer = None
        if link is None:
            return
        if duration == 0:
            link.set_break(False)
            return
        link.set_break(True)
        if duration != 0xFFFF:  # 0xFFFF: until SEND_BREAK(0)
            timer = threading.Timer(duration / 1000.0, link.set_break, args=(False,))
            timer.daemon = True
            function.break_timer = timer
            timer.start()

    # -- data ---------------------------------------------------------------------------

    def _function(self, ep: int) -> _AcmFunction:
        function = self._by_endpoint.get(ep)
        if function is None:
            raise Stall(f"endpoint 0x{ep:02x} belongs to no CDC-ACM function")
        return function

    def bulk_write(self, ep: int, data: bytes, deadline: float | None, generation: int) -> int:
        with self.cond:
            self.check(generation)
            function = self._by_endpoint.get(ep)
            link = None if function is None else function.link
        return self._write(link, data, deadline, generation)

    def bulk_read(self, ep: int, size: int, deadline: float | None, generation: int) -> bytes:
        function = self._by_endpoint.get(ep)
        if function is None:  # an interface without a serial function: nothing comes
            return self.wait_until(lambda: None, generation, deadline)

        def ready() -> bytes | None:
            if not function.rx:
                return None
            out = _take_packets(function.rx, size, function.bulk_in_size)
            self.cond.notify_all()
            return out

        return self.wait_until(ready, generation, deadline)

    def interrupt_read(self, ep: int, size: int, deadline: float | None, generation: int) -> bytes:
        function = self._by_endpoint.get(ep)
        if function is None:
            return self.wait_until(lambda: None, generation, deadline)

        def ready() -> bytes | None:
            if not function.notifications:
                return None
            packet = function.notifications[0]
            if len(packet) > size:
                raise usb_error(LIBUSB_ERROR_OVERFLOW, f"{len(packet)}-byte notification")
            return function.notifications.popleft()

        return self.wait_until(ready, generation, deadline)

    # -- from the wire ------------------------------------------------------------------

    def _for_link(self, link: UartLink) -> _AcmFunction | None:
        return self.functions.get(link.interface)

    def uart_room(self, link: UartLink) -> int:
        function = self._for_link(link)
        with self.cond:
            return 0 if function is None else self.RX_BUFFER - len(function.rx)

    def uart_data(self, link: UartLink, data: bytes) -> None:
        function = self._for_link(link)
        with self.cond:
            if function is not None and self.plugged:
                function.rx += data
                self.cond.notify_all()

    def uart_lines(self, link: UartLink, lines: Lines) -> None:
        function = self._for_link(link)
        with self.cond:
            if function is not None and self.plugged:
                self._notify(function, self._line_state(lines))

    def uart_errors(self, link: UartLink, errors: dict[str, int]) -> None:
        function = self._for_link(link)
        with self.cond:
            if function is None or not self.plugged:
                return
            events = (
                (ACM_FRAMING if "framing_errors" in errors else 0)
                | (ACM_PARITY if "parity_errors" in errors else 0)
                | (ACM_BREAK if "breaks" in errors else 0)
                | (ACM_OVERRUN if "overruns" in errors else 0)
            )
            self._notify(function, function.state | events)


# -- building models ------------------------------------------------------------------------

_MODEL_CLASSES: dict[str, type[SerialModel]] = {
    "ft232r": Ft232r,
    "ft232h": Ft232h,
    "cp2102": Cp2102,
    "cdc_acm": CdcAcm,
}


def create_model(
    name: str | DeviceSpec,
    *,
    far: str | None = None,
    instance: int = 1,
    serial_number: str | None = None,
    wire_options: dict[str, Any] | None = None,
) -> SerialModel:
    """A device model from its descriptor data (a name in hw_configs/usb, a path,
    or a :class:`DeviceSpec`).

    ``far`` changes what sits behind the serial interfaces: ``"wire"`` (a free
    far end), ``"modem"`` (the emulated modem of the spec's ``modem`` profile, or
    v90_dialup) or ``"modem:<profile>"``. ``instance`` > 1 makes a second device
    of the same kind, named ``<name>-<instance>`` with its serial number suffixed
    likewise; ``serial_number`` sets the serial number outright.
    """
    spec = name if isinstance(name, DeviceSpec) else load_device_spec(name)
    modem: str | None = None
    if far is not None:
        kind, _, profile = far.partition(":")
        if kind not in ("wire", "modem"):
            raise ConfigError(f"far end {far!r}: use wire, modem or modem:<profile>")
        if kind == "modem":
            modem = profile or spec.modem or DEFAULT_MODEM
        spec = spec.replace(
            interfaces=tuple(
                dataclasses.replace(i, uart=kind) if i.uart is not None else i
                for i in spec.interfaces
            )
        )
    if instance > 1:
        spec = spec.replace(
            name=f"{spec.name}-{instance}",
            serial_number=None
            if spec.serial_number is None
            else f"{spec.serial_number}-{instance}",
        )
    if serial_number is not None:
        spec = spec.replace(serial_number=serial_number)
    if modem is not None:
        spec = spec.replace(modem=modem)
    check_spec(spec)
    cls = _MODEL_CLASSES[spec.emulation]
    return cls(spec, wire_options=wire_options)


def model_names() -> Sequence[str]:
    """The emulations a descriptor file may name."""
    return tuple(_MODEL_CLASSES)
