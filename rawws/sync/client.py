"""The threaded client: ``connect(uri)`` (RFC 6455 §4.1 over real sockets)."""

from __future__ import annotations

import logging
import socket
import ssl as ssl_module
from collections.abc import Mapping
from dataclasses import replace
from typing import TYPE_CHECKING

from ..opening import ClientHandshake
from ..uri import parse_uri
from .connection import Connection, frame_tracer
from .options import ClientOptions, ClientSettings
from .timers import Deadline

if TYPE_CHECKING:
    from typing_extensions import Unpack

__all__ = ["connect", "ClientConnection"]


class ClientConnection(Connection):
    """The client side of a WebSocket connection, returned by :func:`connect`."""


def connect(
    uri: str,
    *,
    sock: socket.socket | None = None,
    options: ClientOptions | None = None,
    **settings: Unpack[ClientSettings],
) -> ClientConnection:
    """Open a WebSocket connection to ``uri`` (``ws://`` or ``wss://``) and return it.

    Settings are :class:`~rawws.sync.options.ClientOptions`' fields, as
    keyword arguments or one ``options`` object (keyword arguments override
    its fields): the server's connection settings (``max_size``,
    ``max_queue``, keepalive, timeouts, ``compression``, …) plus
    ``subprotocols``, ``origin``, ``additional_headers``, ``user_agent``,
    ``ssl`` and ``server_hostname``. ``wss://`` uses
    ``ssl.create_default_context()`` (certificate and host name checks, SNI)
    unless ``ssl`` is given. Raises :class:`~rawws.exceptions.InvalidURI` for
    a bad URI, :class:`~rawws.exceptions.InvalidHandshake` (with the server's
    status, headers and body) if the server refuses, :class:`TimeoutError` if
    the handshake takes longer than ``open_timeout``, and :class:`OSError` if
    the TCP connection fails.
    """
    options = replace(options or ClientOptions(), **settings)
    parsed = parse_uri(uri)
    log = options.logger or logging.getLogger("rawws.client")
    deadline = Deadline(options.open_timeout)
    if sock is None:
        sock = socket.create_connection((parsed.host, parsed.port), timeout=options.open_timeout)
    else:
        sock.settimeout(options.open_timeout)
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except OSError:
        pass  # not TCP (a socketpair in tests, a Unix socket)
    try:
        if parsed.secure:
            context = options.ssl if options.ssl is not None else ssl_module.create_default_context()
            sock = context.wrap_socket(sock, server_hostname=options.server_hostname or parsed.host)
        elif options.ssl is not None:
            raise ValueError("ssl= was given for a ws:// URI; use wss://")
        extra = options.additional_headers
        headers = list(extra.items() if isinstance(extra, Mapping) else extra)
        if options.user_agent:
            headers.append(("User-Agent", options.user_agent))
        handshake = ClientHandshake(
            parsed,
            origin=options.origin,
            subprotocols=options.subprotocols,
            compression=options.deflate,
            additional_headers=headers,
        )
        sock.sendall(handshake.data_to_send())
        response = None
        while response is None:
            _set_remaining(sock, deadline)
            data = sock.recv(65536)
            if data:
                response = handshake.receive_data(data)
            else:
                handshake.receive_eof()  # raises InvalidHandshake
    except BaseException:
        sock.close()
        raise
    log.debug("connected to %s (subprotocol %s)", uri, handshake.subprotocol)
    protocol = handshake.protocol(
        max_size=options.max_size,
        fragment_events=True,
        defer_failure=True,
        trace=frame_tracer(log, parsed.host_header) if log.isEnabledFor(logging.DEBUG) else None,
    )
    return ClientConnection(
        sock,
        protocol,
        request=handshake.request,
        response=response,
        subprotocol=handshake.subprotocol,
        options=options,
        logger=log,
        leftover=handshake.remainder,
    )


def _set_remaining(sock: socket.socket, deadline: Deadline) -> None:
    remaining = deadline.remaining()
    if remaining is not None and remaining <= 0:
        raise TimeoutError("the opening handshake timed out")
    sock.settimeout(remaining)
