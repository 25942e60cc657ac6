"""The threaded client: ``connect(uri)`` (RFC 6455 §4.1 over real sockets)."""

from __future__ import annotations

import logging
import socket
import ssl as ssl_module
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

from ..exceptions import ConnectError, ConnectTimeout
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
    unless ``ssl`` is given.

    Every failure to connect is a :class:`~rawws.exceptions.RawwsError`, so
    ``except RawwsError`` catches them all: :class:`~rawws.exceptions.InvalidURI`
    for a bad URI; :class:`~rawws.exceptions.ConnectError` (also an
    :class:`OSError`) when the name does not resolve, the port refuses, TLS
    fails or the connection breaks, saying what failed at ``HOST:PORT``;
    :class:`~rawws.exceptions.ConnectTimeout` (also a :class:`TimeoutError`)
    when ``open_timeout`` passes, saying which step timed out;
    :class:`~rawws.exceptions.InvalidHandshake` (with the server's status,
    headers and body) when the server answers without upgrading.
    """
    options = replace(options or ClientOptions(), **settings)
    parsed = parse_uri(uri)
    headers = _header_pairs(options.additional_headers)  # TypeError before anything is opened
    log = options.logger or logging.getLogger("rawws.client")
    deadline = Deadline(options.open_timeout)
    where = f"[{parsed.host}]:{parsed.port}" if ":" in parsed.host else f"{parsed.host}:{parsed.port}"
    if sock is None:
        sock = _open_tcp(parsed.host, parsed.port, options.open_timeout, where)
    else:
        sock.settimeout(options.open_timeout)
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except OSError:
        pass  # not TCP (a socketpair in tests, a Unix socket)
    step = "doing the TLS handshake with"
    try:
        if parsed.secure:
            context = options.ssl if options.ssl is not None else ssl_module.create_default_context()
            sock = context.wrap_socket(sock, server_hostname=options.server_hostname or parsed.host)
        elif options.ssl is not None:
            raise ValueError("ssl= was given for a ws:// URI; use wss://")
        if options.user_agent:
            headers.append(("User-Agent", options.user_agent))
        handshake = ClientHandshake(
            parsed,
            origin=options.origin,
            subprotocols=options.subprotocols,
            compression=options.deflate,
            additional_headers=headers,
        )
        step = "sending the handshake request to"
        sock.sendall(handshake.data_to_send())
        step = "waiting for the handshake response from"
        response = None
        while response is None:
            _set_remaining(sock, deadline)
            data = sock.recv(65536)
            if data:
                response = handshake.receive_data(data)
            else:
                handshake.receive_eof()  # raises InvalidHandshake
    except BaseException as exc:
        sock.close()
        if isinstance(exc, OSError) and not isinstance(exc, ConnectError):
            raise _connect_error(exc, step, where, options.open_timeout) from exc
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
        raise TimeoutError("timed out")
    sock.settimeout(remaining)


def _open_tcp(host: str, port: int, timeout: float | None, where: str) -> socket.socket:
    """``socket.create_connection``, its failures as :class:`ConnectError` saying what failed and where."""
    try:
        return socket.create_connection((host, port), timeout=timeout)
    except socket.gaierror as exc:
        error = ConnectError(f"cannot resolve the host name {host!r}: {exc.strerror or exc}")
        error.errno = exc.errno
        raise error from exc
    except OSError as exc:
        raise _connect_error(exc, "opening a TCP connection to", where, timeout) from exc


def _connect_error(exc: OSError, step: str, where: str, timeout: float | None) -> ConnectError:
    """The :class:`ConnectError` (or :class:`ConnectTimeout`) for ``exc``, raised during ``step``."""
    if isinstance(exc, TimeoutError):  # socket.timeout too (an alias since 3.10)
        after = f"after {timeout:g} s (open_timeout)" if timeout is not None else "(the system's own timeout)"
        timed_out = ConnectTimeout(f"timed out {after} {step} {where}")
        timed_out.errno = exc.errno
        return timed_out
    if isinstance(exc, ConnectionRefusedError):
        error: ConnectError = ConnectError(f"connection refused by {where}: nothing listens on that port?")
    elif isinstance(exc, ssl_module.SSLError) or isinstance(exc, ssl_module.CertificateError):
        error = ConnectError(f"TLS handshake with {where} failed: {exc}")
    else:
        error = ConnectError(f"{step} {where} failed: {exc.strerror or exc}")
    error.errno = exc.errno
    return error


def _header_pairs(extra: object) -> list[tuple[str, str]]:
    """``additional_headers`` as a list of (name, value) pairs; TypeError for anything else."""
    accepted = "additional_headers takes a mapping or a sequence of (name, value) pairs of str"
    if isinstance(extra, Mapping):
        pairs = list(extra.items())
    elif isinstance(extra, (str, bytes)) or not isinstance(extra, Sequence):
        raise TypeError(f"{accepted}, not {type(extra).__name__} {extra!r}")
    else:
        pairs = list(extra)
    for pair in pairs:
        if not (isinstance(pair, (tuple, list)) and len(pair) == 2 and all(isinstance(part, str) for part in pair)):
            raise TypeError(f"{accepted}; got {pair!r} among them")
    return [(name, value) for name, value in pairs]
