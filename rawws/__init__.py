"""rawws: WebSocket (RFC 6455) in pure standard-library Python.

Layers, each using only the ones below it:

1. :mod:`rawws.frames`, :mod:`rawws.http11`, :mod:`rawws.handshake` — pure
   functions and incremental parsers over bytes.
2. :mod:`rawws.protocol` — the sans-I/O connection state machine.
"""

from .exceptions import (
    ConnectionClosed,
    ConnectionClosedError,
    ConnectionClosedOK,
    InvalidHandshake,
    InvalidHeader,
    InvalidState,
    InvalidURI,
    PayloadTooBig,
    ProtocolError,
    RawwsError,
)
from .frames import CloseCode, Frame, Opcode
from .protocol import CLIENT, SERVER, Protocol, Role, State

__version__ = "0.1.0"

__all__ = [
    "CLIENT",
    "SERVER",
    "CloseCode",
    "ConnectionClosed",
    "ConnectionClosedError",
    "ConnectionClosedOK",
    "Frame",
    "InvalidHandshake",
    "InvalidHeader",
    "InvalidState",
    "InvalidURI",
    "Opcode",
    "PayloadTooBig",
    "Protocol",
    "ProtocolError",
    "RawwsError",
    "Role",
    "State",
]
