"""The opening handshake as two state machines, one per role: RFC 6455 §4.1 (client) and §4.2 (server).

Like :class:`~rawws.protocol.Protocol`, they do no I/O: give them the bytes
that arrived with ``receive_data`` and collect the bytes to send with
``data_to_send``. Once the upgrade succeeded, ``protocol()`` gives the
:class:`~rawws.protocol.Protocol` for the connection, with the negotiated
extensions, and ``remainder`` the bytes that came after the head (frames the
peer sent at once). Step through both ends in a REPL::

    >>> from rawws.opening import ClientHandshake, ServerHandshake
    >>> client = ClientHandshake("ws://example.com/chat", compression=None)
    >>> server = ServerHandshake(compression=None)
    >>> request = server.receive_data(client.data_to_send())
    >>> request.path, request.headers["Sec-WebSocket-Version"]
    ('/chat', '13')
    >>> server.accept(request).status
    101
    >>> client.receive_data(server.data_to_send()).status
    101
    >>> client.protocol(), server.protocol()
    (<Protocol client OPEN>, <Protocol server OPEN>)

The pure rules they apply are in :mod:`rawws.handshake`; the HTTP heads are
parsed by :mod:`rawws.http11` with its limits (431 past them).
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Sequence
from typing import Any

from .exceptions import InvalidHandshake
from .extensions import Extension
from .extensions.permessage_deflate import NAME as DEFLATE
from .extensions.permessage_deflate import DeflateConfig, accept_server_response, client_offer, negotiate_server
from .handshake import (
    accept,
    build_request,
    check_request,
    check_response,
    generate_key,
    parse_extensions,
    parse_token_list,
    reject,
    screen_request,
    select_subprotocol,
    serialize_extensions,
)
from .http11 import HeadParser, Request, Response
from .protocol import CLIENT, SERVER, Protocol
from .uri import WebSocketURI, parse_uri

__all__ = ["HandshakeState", "ServerHandshake", "ClientHandshake", "MAX_REFUSAL_BODY"]

MAX_REFUSAL_BODY = 65536
"""The most of a refusal's body the client keeps (to show in :class:`InvalidHandshake`)."""


class HandshakeState(enum.Enum):
    """Where an opening handshake stands (§4.1: the connection is CONNECTING until it ends)."""

    CONNECTING = "connecting"  # waiting for the peer's head (or, for a refused client, the body)
    OPEN = "open"  # upgraded: the WebSocket connection starts
    REFUSED = "refused"  # no upgrade: an HTTP response was (or is to be) sent, then the TCP connection closes


class ServerHandshake:
    """The server's side (§4.2): a request in, the 101 response (or a refusal) out.

    ``receive_data`` returns the :class:`~rawws.http11.Request` once its head
    is complete (None before) and raises :class:`InvalidHandshake` (with the
    status to answer) for a malformed head. The I/O layer may then inspect the
    request (``process_request``, after :meth:`screen`: ``Host`` and
    ``Origin`` come first) and either :meth:`respond` with any HTTP
    response, or :meth:`accept` it: the §4.2.1 checks run, the subprotocol
    and extensions are chosen, and the 101 response is queued.
    """

    def __init__(
        self,
        *,
        origins: Sequence[str | None] | str | None = None,
        allowed_hosts: Sequence[str] | str | None = None,
        subprotocols: Sequence[str] = (),
        select_subprotocol: Callable[[list[str]], str | None] | None = None,
        compression: DeflateConfig | None = None,
        extra_headers: Sequence[tuple[str, str]] = (),
        secure: bool = False,
    ) -> None:
        self.origins = origins
        self.allowed_hosts = allowed_hosts
        self.secure = secure
        self.subprotocols = list(subprotocols)
        self.select_subprotocol = select_subprotocol
        self.compression = compression
        self.extra_headers = list(extra_headers)
        self.state = HandshakeState.CONNECTING
        self.request: Request | None = None
        self.response: Response | None = None
        self.subprotocol: str | None = None
        self.extensions: list[Extension] = []
        self._parser = HeadParser("request")
        self._out = b""

    def __repr__(self) -> str:
        return f"<ServerHandshake {self.state.name}>"

    def receive_data(self, data: bytes) -> Request | None:
        """Feed request bytes; the request once its head is complete, else None."""
        if self.state is not HandshakeState.CONNECTING or self.request is not None:
            return None
        head = self._parser.feed(data)
        if head is None:
            return None
        assert isinstance(head, Request)
        self.request = head
        return head

    @property
    def remainder(self) -> bytes:
        """Bytes received after the request's head (the client's first frames, if it did not wait)."""
        return self._parser.remainder

    def screen(self, request: Request) -> None:
        """The ``Host`` check (every request) and the ``Origin`` check (upgrade requests), before anything else.

        Raises :class:`InvalidHandshake` (403) as :func:`rawws.handshake.screen_request`
        does; run it before showing the request to application code.
        """
        screen_request(request, origins=self.origins, allowed_hosts=self.allowed_hosts, secure=self.secure)

    def accept(self, request: Request) -> Response:
        """Check the request (§4.2.1), choose subprotocol and extensions, queue the 101 response (§4.2.2).

        Raises :class:`InvalidHandshake` carrying the status to refuse with;
        pass it to :meth:`refuse` to queue that answer.
        """
        key = check_request(request, origins=self.origins, allowed_hosts=self.allowed_hosts, secure=self.secure)
        self.subprotocol = self._choose_subprotocol(request)
        extension_header = self._negotiate_extensions(request)
        response = accept(
            key, subprotocol=self.subprotocol, extensions=extension_header, extra_headers=self.extra_headers
        )
        self._out += response.serialize()
        self.response = response
        self.state = HandshakeState.OPEN
        return response

    def refuse(self, error: InvalidHandshake) -> Response:
        """Queue the HTTP refusal ``error`` describes (its status, message and headers)."""
        return self.respond(reject(error.status or 400, str(error), error.headers.items()))

    def respond(self, response: Response) -> Response:
        """Queue a plain HTTP response instead of upgrading; the TCP connection then closes."""
        if response.body and "Content-Length" not in response.headers:
            response.headers["Content-Length"] = str(len(response.body))
        if "Connection" not in response.headers:
            response.headers["Connection"] = "close"
        self._out += response.serialize()
        self.response = response
        self.state = HandshakeState.REFUSED
        return response

    def data_to_send(self) -> bytes:
        """The response bytes queued so far; the queue is emptied."""
        out, self._out = self._out, b""
        return out

    def protocol(self, **settings: Any) -> Protocol:
        """The connection's :class:`Protocol`, with the negotiated extensions (after :meth:`accept`)."""
        if self.state is not HandshakeState.OPEN:
            raise InvalidHandshake("the handshake has not succeeded: no protocol to start", status=0)
        return Protocol(SERVER, extensions=self.extensions, **settings)

    def _choose_subprotocol(self, request: Request) -> str | None:
        offered = parse_token_list(request.headers.get_all("Sec-WebSocket-Protocol"), "Sec-WebSocket-Protocol")
        if self.select_subprotocol is not None:
            chosen = self.select_subprotocol(offered)
            if chosen is not None and chosen not in offered:
                raise InvalidHandshake(f"select_subprotocol returned {chosen!r}, which the client did not offer", 500)
            return chosen
        if not self.subprotocols:
            return None
        return select_subprotocol(offered, self.subprotocols)

    def _negotiate_extensions(self, request: Request) -> str | None:
        if self.compression is None:
            return None
        offers = parse_extensions(request.headers.get_all("Sec-WebSocket-Extensions"))  # malformed: 400
        result = negotiate_server(offers, self.compression)
        if result is None:
            return None
        params, extension = result
        self.extensions = [extension]
        return serialize_extensions([(DEFLATE, params)])


class ClientHandshake:
    """The client's side (§4.1): the request out, the server's response in.

    The request is queued at once (:meth:`data_to_send`). ``receive_data``
    returns the 101 :class:`~rawws.http11.Response` once it is complete and
    valid, and raises :class:`InvalidHandshake` when the server refused (with
    its status, headers and body, read up to :data:`MAX_REFUSAL_BODY`) or
    answered wrongly. Call :meth:`receive_eof` when the server closes TCP.
    """

    def __init__(
        self,
        uri: str | WebSocketURI,
        *,
        origin: str | None = None,
        subprotocols: Sequence[str] = (),
        compression: DeflateConfig | None = None,
        additional_headers: Sequence[tuple[str, str]] = (),
        key: str | None = None,
    ) -> None:
        self.uri = parse_uri(uri) if isinstance(uri, str) else uri
        self.subprotocols = list(subprotocols)
        self.compression = compression
        self.key = key or generate_key()
        self.state = HandshakeState.CONNECTING
        self.response: Response | None = None
        self.subprotocol: str | None = None
        self.extensions: list[Extension] = []
        self.request = build_request(
            self.uri.host_header,
            self.uri.resource_name,
            key=self.key,
            origin=origin,
            subprotocols=self.subprotocols,
            extensions=serialize_extensions([client_offer(compression)]) if compression is not None else None,
            additional_headers=additional_headers,
        )
        self._out = self.request.serialize()
        self._parser = HeadParser("response")
        self._refusal: Response | None = None  # a non-101 response whose body is still arriving
        self._body = b""

    def __repr__(self) -> str:
        return f"<ClientHandshake {self.state.name}>"

    def data_to_send(self) -> bytes:
        out, self._out = self._out, b""
        return out

    @property
    def remainder(self) -> bytes:
        """Bytes received after the 101 response's head (the server's first frames)."""
        return self._parser.remainder if self.state is HandshakeState.OPEN else b""

    def receive_data(self, data: bytes) -> Response | None:
        """Feed response bytes; the 101 response once complete and valid, else None (or an exception)."""
        if self._refusal is not None:
            self._body += data
            self._finish_refusal(complete=False)
            return None
        if self.state is not HandshakeState.CONNECTING:
            return None
        head = self._parser.feed(data)
        if head is None:
            return None
        assert isinstance(head, Response)
        if head.status != 101:
            self._refusal = head
            self._body = self._parser.remainder
            self._finish_refusal(complete=False)
            return None
        offered = [DEFLATE] if self.compression is not None else []
        try:
            self.subprotocol, accepted = check_response(
                head, key=self.key, subprotocols=self.subprotocols, extensions_offered=offered
            )
            if len(accepted) > 1:
                raise InvalidHandshake("the server accepted permessage-deflate more than once", status=head.status)
            if self.compression is not None:
                self.extensions = [accept_server_response(params, self.compression) for _, params in accepted]
        except InvalidHandshake:
            self.state = HandshakeState.REFUSED
            raise
        self.response = head
        self.state = HandshakeState.OPEN
        return head

    def receive_eof(self) -> None:
        """The server closed TCP: a refusal's body is complete; before any answer, the handshake failed."""
        if self._refusal is not None:
            self._finish_refusal(complete=True)
        if self.state is HandshakeState.CONNECTING:
            self.state = HandshakeState.REFUSED
            raise InvalidHandshake("the server closed the connection during the handshake", status=0)

    def protocol(self, **settings: Any) -> Protocol:
        """The connection's :class:`Protocol`, with the negotiated extensions (after the 101 response)."""
        if self.state is not HandshakeState.OPEN:
            raise InvalidHandshake("the handshake has not succeeded: no protocol to start", status=0)
        return Protocol(CLIENT, extensions=self.extensions, **settings)

    def _finish_refusal(self, *, complete: bool) -> None:
        """Raise the refusal once its body is in (Content-Length, :data:`MAX_REFUSAL_BODY`, or EOF)."""
        response = self._refusal
        assert response is not None
        length_header = response.headers.get("Content-Length")
        try:
            wanted = min(int(length_header), MAX_REFUSAL_BODY) if length_header else MAX_REFUSAL_BODY
        except ValueError:
            wanted = 0
        if not complete and len(self._body) < wanted:
            return
        response.body = self._body[:MAX_REFUSAL_BODY]
        self._refusal = None
        self.response = response
        self.state = HandshakeState.REFUSED
        check_response(response, key=self.key)  # raises InvalidHandshake with the status, headers and body
