"""The threaded client: ``connect(uri)`` (RFC 6455 §4.1 over real sockets)."""

from __future__ import annotations

import logging
import socket
import ssl as ssl_module
import time
from collections.abc import Sequence

from ..exceptions import InvalidHandshake
from ..extensions.permessage_deflate import NAME as DEFLATE
from ..extensions.permessage_deflate import DeflateConfig, accept_server_response, client_offer, compression_config
from ..handshake import build_request, check_response, generate_key, serialize_extensions
from ..http11 import HeadParser, Response
from ..protocol import CLIENT, Protocol
from ..uri import parse_uri
from .connection import Connection, frame_tracer

__all__ = ["connect", "ClientConnection"]

USER_AGENT = "rawws/0.1"
_MAX_ERROR_BODY = 65536


class ClientConnection(Connection):
    """The client side of a WebSocket connection, returned by :func:`connect`."""


def connect(
    uri: str,
    *,
    subprotocols: Sequence[str] | None = None,
    origin: str | None = None,
    additional_headers: Sequence[tuple[str, str]] | dict[str, str] | None = None,
    user_agent: str | None = USER_AGENT,
    open_timeout: float | None = 10.0,
    close_timeout: float | None = 10.0,
    ssl: ssl_module.SSLContext | None = None,
    server_hostname: str | None = None,
    compression: str | DeflateConfig | None = "deflate",
    max_size: int | None = 2**20,
    max_queue: int | None = 16,
    ping_interval: float | None = 20.0,
    ping_timeout: float | None = 20.0,
    write_limit: int | None = 2**20,
    write_timeout: float | None = 20.0,
    sock: socket.socket | None = None,
    logger: logging.Logger | None = None,
) -> ClientConnection:
    """Open a WebSocket connection to ``uri`` (``ws://`` or ``wss://``) and return it.

    ``wss://`` uses ``ssl.create_default_context()`` (certificate and host
    name checks, SNI) unless ``ssl`` is given. Raises
    :class:`~rawws.exceptions.InvalidURI` for a bad URI,
    :class:`~rawws.exceptions.InvalidHandshake` (with the server's status,
    headers and body) if the server refuses, :class:`TimeoutError` if the
    handshake takes longer than ``open_timeout``, and :class:`OSError` if the
    TCP connection fails. ``compression`` is as for :func:`rawws.serve`: the
    client offers permessage-deflate unless it is None.
    """
    deflate = compression_config(compression)
    parsed = parse_uri(uri)
    log = logger or logging.getLogger("rawws.sync.client")
    deadline = None if open_timeout is None else time.monotonic() + open_timeout
    if sock is None:
        sock = socket.create_connection((parsed.host, parsed.port), timeout=open_timeout)
    else:
        sock.settimeout(open_timeout)
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except OSError:
        pass  # not TCP (a socketpair in tests, a Unix socket)
    try:
        if parsed.secure:
            context = ssl if ssl is not None else ssl_module.create_default_context()
            sock = context.wrap_socket(sock, server_hostname=server_hostname or parsed.host)
        elif ssl is not None:
            raise ValueError("ssl= was given for a ws:// URI; use wss://")
        key = generate_key()
        headers = list(additional_headers.items() if isinstance(additional_headers, dict) else additional_headers or ())
        if user_agent:
            headers.append(("User-Agent", user_agent))
        request = build_request(
            parsed.host_header,
            parsed.resource_name,
            key=key,
            origin=origin,
            subprotocols=list(subprotocols or ()),
            extensions=serialize_extensions([client_offer(deflate)]) if deflate is not None else None,
            additional_headers=headers,
        )
        sock.sendall(request.serialize())
        parser = HeadParser("response")
        response = None
        while response is None:
            _set_remaining(sock, deadline)
            data = sock.recv(65536)
            if not data:
                raise InvalidHandshake("the server closed the connection during the handshake", status=0)
            response = parser.feed(data)
        assert isinstance(response, Response)
        if response.status != 101:
            response.body = _read_body(sock, response, parser.remainder, deadline)
        subprotocol, accepted = check_response(
            response,
            key=key,
            subprotocols=list(subprotocols or ()),
            extensions_offered=[DEFLATE] if deflate is not None else [],
        )
        if len(accepted) > 1:
            raise InvalidHandshake("the server accepted permessage-deflate more than once", status=response.status)
        extensions = [accept_server_response(params, deflate) for _, params in accepted if deflate is not None]
    except BaseException:
        sock.close()
        raise
    log.debug("connected to %s (subprotocol %s)", uri, subprotocol)
    protocol = Protocol(
        CLIENT,
        max_size=max_size,
        extensions=extensions,
        fragment_events=True,
        defer_failure=True,
        trace=frame_tracer(log, parsed.host_header) if log.isEnabledFor(logging.DEBUG) else None,
    )
    return ClientConnection(
        sock,
        protocol,
        request=request,
        response=response,
        subprotocol=subprotocol,
        max_queue=max_queue,
        ping_interval=ping_interval,
        ping_timeout=ping_timeout,
        close_timeout=close_timeout,
        write_limit=write_limit,
        write_timeout=write_timeout,
        logger=log,
        leftover=parser.remainder,
    )


def _set_remaining(sock: socket.socket, deadline: float | None) -> None:
    if deadline is None:
        sock.settimeout(None)
        return
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise TimeoutError("the opening handshake timed out")
    sock.settimeout(remaining)


def _read_body(sock: socket.socket, response: Response, start: bytes, deadline: float | None) -> bytes:
    """Read a refusal's body (bounded), so InvalidHandshake can show it."""
    body = start
    length_header = response.headers.get("Content-Length")
    try:
        length = min(int(length_header), _MAX_ERROR_BODY) if length_header else _MAX_ERROR_BODY
        while len(body) < length:
            _set_remaining(sock, deadline)
            data = sock.recv(65536)
            if not data:
                break
            body += data
    except (OSError, ValueError):
        pass
    return body[:_MAX_ERROR_BODY]
