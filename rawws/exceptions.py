"""Every exception rawws raises, under one base class.

The hierarchy::

    RawwsError
    ├── ProtocolError            the peer broke RFC 6455 (carries the close code to send)
    │   └── PayloadTooBig        a message or frame exceeded max_size (close code 1009)
    ├── InvalidHandshake         the opening handshake failed (carries the HTTP status)
    │   └── InvalidHeader        one header of the handshake is missing or wrong
    ├── InvalidURI               not a ws:// or wss:// URI rawws can connect to
    ├── ConnectError             connect() could not reach the server (also an OSError)
    │   └── ConnectTimeout       ... within open_timeout (also a TimeoutError)
    ├── InvalidState             an operation that the connection's state forbids
    └── ConnectionClosed         the connection is closed (carries code, reason, who closed)
        ├── ConnectionClosedOK       closed by a normal closing handshake (1000 or 1001)
        └── ConnectionClosedError    anything else: an error, a timeout, a dropped socket
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .http11 import Headers

__all__ = [
    "RawwsError",
    "ProtocolError",
    "PayloadTooBig",
    "InvalidHandshake",
    "InvalidHeader",
    "InvalidURI",
    "ConnectError",
    "ConnectTimeout",
    "InvalidState",
    "ConnectionClosed",
    "ConnectionClosedOK",
    "ConnectionClosedError",
]


class RawwsError(Exception):
    """Base class of every exception raised by rawws."""


class ProtocolError(RawwsError):
    """The peer violated RFC 6455; ``close_code`` is the status to fail the connection with.

    1002 (protocol error) unless the rule broken says otherwise: 1007 for text
    that is not UTF-8 (§8.1), 1009 for a message that is too big (§7.4.1).
    """

    def __init__(self, message: str, close_code: int = 1002) -> None:  # CloseCode.PROTOCOL_ERROR
        super().__init__(message)
        self.close_code = close_code


class PayloadTooBig(ProtocolError):
    """A frame or message is larger than the configured ``max_size`` (close code 1009)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, close_code=1009)


class InvalidHandshake(RawwsError):
    """The opening handshake (RFC 6455 §4) failed.

    On the server, ``status``, ``headers`` and ``body`` describe the HTTP
    response that refuses the request. On the client, they are what the
    server answered (``status`` is 0 if there was no parsable answer).
    ``headers`` is a case-insensitive :class:`~rawws.http11.Headers`, like
    ``request.headers`` and ``response.headers``: ``exc.headers["Retry-After"]``.
    """

    def __init__(
        self,
        message: str,
        status: int = 400,
        headers: Headers | Iterable[tuple[str, str]] = (),
        body: bytes = b"",
    ) -> None:
        from .http11 import Headers  # http11 raises these exceptions: import it when first needed

        super().__init__(message)
        self.status = status
        self.headers: Headers = Headers(headers.items() if isinstance(headers, Headers) else headers)
        self.body = body


class InvalidHeader(InvalidHandshake):
    """A header of the opening handshake is missing, repeated or malformed."""


class InvalidURI(RawwsError):
    """The URI is not a ``ws://`` or ``wss://`` URI (RFC 6455 §3)."""


class ConnectError(RawwsError, OSError):
    """:func:`~rawws.sync.client.connect` could not reach the WebSocket server.

    The host name did not resolve, nothing listens on the port, the TCP
    connection or the TLS handshake failed, or the connection broke during
    the opening handshake. The message names ``HOST:PORT`` and what failed;
    the operating system's error is ``__cause__`` (its ``errno`` is copied).
    It is also an :class:`OSError`, so code written for the socket errors
    still catches it; ``except RawwsError`` catches every failure to connect.
    """


class ConnectTimeout(ConnectError, TimeoutError):
    """``connect()`` did not finish within ``open_timeout``: the message says which step timed out.

    Also a :class:`TimeoutError`.
    """


class InvalidState(RawwsError):
    """The operation is not allowed in the connection's current state."""


class ClosedBy(str, enum.Enum):
    """Who started the end of a connection (``ConnectionClosed.closed_by``); compares equal to its value."""

    LOCAL = "local"  # this side sent the first close frame (or failed the connection)
    REMOTE = "remote"  # the peer's close frame came first
    ABNORMAL = "abnormal"  # TCP ended without a complete closing handshake

    def __str__(self) -> str:
        return self.value


class ConnectionClosed(RawwsError):
    """Raised when using a connection that is closed, or that closes while waiting.

    ``code`` and ``reason`` are the close status the peer sent (1005 and "" if
    its close frame had no status, 1006 if no close frame arrived at all).
    ``sent_code`` / ``sent_reason`` are what rawws sent, or None if it sent no
    close frame. ``closed_by`` (a :class:`ClosedBy`, equal to its string) is
    ``"local"`` if this side started the closing handshake, ``"remote"`` if
    the peer did, and ``"abnormal"`` if the TCP connection ended without a
    complete closing handshake.
    """

    def __init__(
        self,
        code: int,
        reason: str = "",
        *,
        sent_code: int | None = None,
        sent_reason: str | None = None,
        closed_by: ClosedBy = ClosedBy.ABNORMAL,
    ) -> None:
        self.code = code
        self.reason = reason
        self.sent_code = sent_code
        self.sent_reason = sent_reason
        self.closed_by = closed_by
        text = f"connection closed by {closed_by}: received {code}"
        if reason:
            text += f" ({reason})"
        if sent_code is not None:
            text += f", sent {sent_code}" + (f" ({sent_reason})" if sent_reason else "")
        super().__init__(text)


class ConnectionClosedOK(ConnectionClosed):
    """The connection ended with a closing handshake whose codes were 1000 or 1001."""


class ConnectionClosedError(ConnectionClosed):
    """The connection ended with an error code, a timeout or without a closing handshake."""
