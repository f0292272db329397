"""Negotiation: agreeing link settings and transfer protocols between two ends of a serial line.

    from serialhs.negotiate import Capabilities, Handshake, Agreed, SwitchSettings

The SHS link protocol (docs/protocol.md) in three sans-I/O modules:
:mod:`~serialhs.negotiate.frames` (framing, CRC, the resynchronising decoder),
:mod:`~serialhs.negotiate.capabilities` (the capability TLVs, the selection rule,
the training ladder) and :mod:`~serialhs.negotiate.handshake` (the three-way
handshake, switch, probe and fallback). Names are loaded on first use, so that
importing a core brings no ports, processes or threads. Submodules are imported
as usual (``from serialhs.negotiate.frames import FrameDecoder``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from serialhs._lazy import lazy_getattr

if TYPE_CHECKING:
    from serialhs.negotiate.capabilities import (
        Capabilities,
        Choice,
        Framing,
        Identity,
        TransferProtocol,
        decode_capabilities,
        encode_capabilities,
        ladder,
        select,
    )
    from serialhs.negotiate.frames import (
        BadFrame,
        BadReason,
        Frame,
        FrameDecoder,
        FrameType,
        RstCode,
        crc32c,
        session_id,
    )
    from serialhs.negotiate.handshake import (
        SAFE_DEFAULT,
        Agreed,
        Closed,
        Failed,
        Fallback,
        Handshake,
        Ignored,
        PeerIdentified,
        PeerNotIdentified,
        Reset,
        Session,
        State,
        SwitchSettings,
        Timers,
        TrainingStep,
        TransferFrame,
        Verified,
    )

_WHERE = {
    "SAFE_DEFAULT": "handshake",
    "Agreed": "handshake",
    "BadFrame": "frames",
    "BadReason": "frames",
    "Capabilities": "capabilities",
    "Choice": "capabilities",
    "Closed": "handshake",
    "Failed": "handshake",
    "Fallback": "handshake",
    "Frame": "frames",
    "FrameDecoder": "frames",
    "FrameType": "frames",
    "Framing": "capabilities",
    "Handshake": "handshake",
    "Identity": "capabilities",
    "Ignored": "handshake",
    "PeerIdentified": "handshake",
    "PeerNotIdentified": "handshake",
    "Reset": "handshake",
    "RstCode": "frames",
    "Session": "handshake",
    "State": "handshake",
    "SwitchSettings": "handshake",
    "Timers": "handshake",
    "TrainingStep": "handshake",
    "TransferFrame": "handshake",
    "TransferProtocol": "capabilities",
    "Verified": "handshake",
    "crc32c": "frames",
    "decode_capabilities": "capabilities",
    "encode_capabilities": "capabilities",
    "ladder": "capabilities",
    "select": "capabilities",
    "session_id": "frames",
}

__all__ = [
    "SAFE_DEFAULT",
    "Agreed",
    "BadFrame",
    "BadReason",
    "Capabilities",
    "Choice",
    "Closed",
    "Failed",
    "Fallback",
    "Frame",
    "FrameDecoder",
    "FrameType",
    "Framing",
    "Handshake",
    "Identity",
    "Ignored",
    "PeerIdentified",
    "PeerNotIdentified",
    "Reset",
    "RstCode",
    "Session",
    "State",
    "SwitchSettings",
    "Timers",
    "TrainingStep",
    "TransferFrame",
    "TransferProtocol",
    "Verified",
    "crc32c",
    "decode_capabilities",
    "encode_capabilities",
    "ladder",
    "select",
    "session_id",
]


__getattr__ = lazy_getattr("serialhs.negotiate", _WHERE)
