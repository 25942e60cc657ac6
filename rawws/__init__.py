"""rawws: WebSocket (RFC 6455, RFC 7692) in pure standard-library Python.

The folders show the layers; each uses only the ones above it in this list:

1. The sans-I/O core, no sockets, threads or clocks: :mod:`rawws.frames`,
   :mod:`rawws.utf8`, :mod:`rawws.http11`, :mod:`rawws.uri`,
   :mod:`rawws.handshake` (pure functions and incremental parsers over
   bytes, and the opening handshake's state machines), :mod:`rawws.extensions`
   and :mod:`rawws.protocol` (the connection's state machine).
2. :mod:`rawws.sync` — the threaded layer: sockets, locks, timers, TLS
   (``serve``, ``connect``, ``Connection``, ``EventClient``).
3. :mod:`rawws.pubsub` — publish/subscribe on the public API of layer 2
   (``MessageBroker``, the pub/sub server and client, the Redis backend).
4. :mod:`rawws.demo` and the command line (``python -m rawws``).

``from rawws import serve, connect, MessageBroker, …`` works for every public
name; the names are imported on first use, so ``import rawws.frames`` loads no
socket, ssl or threading module.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .exceptions import (
        ConnectError,
        ConnectionClosed,
        ConnectionClosedError,
        ConnectionClosedOK,
        ConnectTimeout,
        InvalidHandshake,
        InvalidHeader,
        InvalidState,
        InvalidURI,
        PayloadTooBig,
        ProtocolError,
        RawwsError,
    )
    from .extensions.permessage_deflate import DeflateConfig
    from .frames import CloseCode, Frame, Opcode
    from .protocol import CLIENT, SERVER, Protocol, Role, State
    from .pubsub.broker import Backend, LocalBackend, MessageBroker, SubscriberGone
    from .pubsub.client import PubSubClient
    from .pubsub.messages import Dispatcher, make_message, parse_message, send_message
    from .pubsub.server import broker_handler, serve_broker
    from .sync.client import ClientConnection, connect
    from .sync.connection import Connection, PongWaiter
    from .sync.eventclient import EventClient
    from .sync.options import ClientOptions, ConnectionOptions, ServerOptions
    from .sync.pending import PendingConnection
    from .sync.server import Server, ServerConnection, broadcast, serve

__version__ = "0.1.0"

_WHERE = {
    # the sans-I/O core
    "CloseCode": "frames",
    "Frame": "frames",
    "Opcode": "frames",
    "CLIENT": "protocol",
    "SERVER": "protocol",
    "Protocol": "protocol",
    "Role": "protocol",
    "State": "protocol",
    "ConnectionClosed": "exceptions",
    "ConnectionClosedError": "exceptions",
    "ConnectionClosedOK": "exceptions",
    "InvalidHandshake": "exceptions",
    "InvalidHeader": "exceptions",
    "InvalidState": "exceptions",
    "InvalidURI": "exceptions",
    "ConnectError": "exceptions",
    "ConnectTimeout": "exceptions",
    "PayloadTooBig": "exceptions",
    "ProtocolError": "exceptions",
    "RawwsError": "exceptions",
    # the threaded layer
    "serve": "sync.server",
    "broadcast": "sync.server",
    "Server": "sync.server",
    "ServerConnection": "sync.server",
    "PendingConnection": "sync.pending",
    "connect": "sync.client",
    "ClientConnection": "sync.client",
    "Connection": "sync.connection",
    "PongWaiter": "sync.connection",
    "BinaryNotUTF8": "sync.connection",
    "EventClient": "sync.eventclient",
    "ServerOptions": "sync.options",
    "ClientOptions": "sync.options",
    "ConnectionOptions": "sync.options",
    "DeflateConfig": "extensions.permessage_deflate",
    # publish/subscribe
    "MessageBroker": "pubsub.broker",
    "Backend": "pubsub.broker",
    "LocalBackend": "pubsub.broker",
    "SubscriberGone": "pubsub.broker",
    "serve_broker": "pubsub.server",
    "broker_handler": "pubsub.server",
    "PubSubClient": "pubsub.client",
    "send_message": "pubsub.messages",
    "make_message": "pubsub.messages",
    "parse_message": "pubsub.messages",
    "Dispatcher": "pubsub.messages",
}

__all__ = [
    "Backend",
    "BinaryNotUTF8",
    "CLIENT",
    "ClientConnection",
    "ClientOptions",
    "CloseCode",
    "Connection",
    "ConnectionClosed",
    "ConnectionClosedError",
    "ConnectionClosedOK",
    "ConnectionOptions",
    "DeflateConfig",
    "Dispatcher",
    "EventClient",
    "Frame",
    "InvalidHandshake",
    "InvalidHeader",
    "InvalidState",
    "InvalidURI",
    "ConnectError",
    "ConnectTimeout",
    "LocalBackend",
    "MessageBroker",
    "Opcode",
    "PayloadTooBig",
    "PendingConnection",
    "PongWaiter",
    "Protocol",
    "ProtocolError",
    "PubSubClient",
    "RawwsError",
    "Role",
    "SERVER",
    "Server",
    "ServerConnection",
    "ServerOptions",
    "State",
    "SubscriberGone",
    "broadcast",
    "broker_handler",
    "connect",
    "make_message",
    "parse_message",
    "send_message",
    "serve",
    "serve_broker",
]


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'rawws' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value  # the next lookup is an ordinary attribute
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_WHERE])
