"""rawws: WebSocket (RFC 6455) in pure standard-library Python.

Layers, each using only the ones below it:

1. :mod:`rawws.frames`, :mod:`rawws.http11`, :mod:`rawws.handshake` — pure
   functions and incremental parsers over bytes.
2. :mod:`rawws.protocol` — the sans-I/O connection state machine.
3. :mod:`rawws.connection`, :mod:`rawws.server`, :mod:`rawws.client` — the
   threaded layer: sockets, locks, timers, TLS.
4. :mod:`rawws.broker`, :mod:`rawws.pubsub` — publish/subscribe on top.
"""

from .broker import Backend, LocalBackend, MessageBroker, SubscriberGone
from .client import ClientConnection, connect
from .connection import Connection, PongWaiter
from .eventclient import EventClient
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
from .messages import Dispatcher, make_message, parse_message, send_message
from .protocol import CLIENT, SERVER, Protocol, Role, State
from .pubsub import broker_handler, serve_broker
from .pubsub_client import PubSubClient
from .server import PendingConnection, Server, ServerConnection, broadcast, serve

__version__ = "0.1.0"

__all__ = [
    "serve",
    "connect",
    "broadcast",
    "Connection",
    "ServerConnection",
    "ClientConnection",
    "PendingConnection",
    "PongWaiter",
    "Server",
    "EventClient",
    "MessageBroker",
    "Backend",
    "LocalBackend",
    "SubscriberGone",
    "serve_broker",
    "broker_handler",
    "PubSubClient",
    "send_message",
    "make_message",
    "parse_message",
    "Dispatcher",
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
