"""The TCP connection before the upgrade, as ``process_request`` sees it (RFC 6455 §4.2.1)."""

from __future__ import annotations

import socket
import ssl
from collections.abc import Iterable, Mapping
from typing import Any

from ..handshake import reject
from ..http11 import Response

__all__ = ["PendingConnection"]


class PendingConnection:
    """What ``process_request`` sees: the TCP connection before the upgrade.

    :meth:`respond` builds a plain HTTP response to return from
    ``process_request`` (to refuse, authenticate, redirect or serve a page).
    ``server`` is the :class:`~rawws.sync.server.Server` it came to.

    ``context`` is a dict for what ``process_request`` learns (who the client
    is, what it may do): if the connection is upgraded, the handler's
    connection has the same dict as ``connection.context``, so nothing has
    to be parsed twice (assigning a new dict works too: the dict assigned is
    the one the handler gets)::

        def process_request(pending, request):
            user = USERS.get(token_from(request.path))
            if user is None:
                return pending.respond(401, "unknown token\\n")
            pending.context["user"] = user
            return None

        def handler(connection):
            user = connection.context["user"]
    """

    def __init__(self, sock: socket.socket, remote_address: Any, server: Any) -> None:
        self.remote_address: Any = remote_address
        self.local_address: Any = sock.getsockname()
        self.secure = isinstance(sock, ssl.SSLSocket)
        self.server = server
        self._context: dict[str, Any] = {}

    @property
    def context(self) -> dict[str, Any]:
        """What ``process_request`` learns, for the handler (``connection.context``); a dict."""
        return self._context

    @context.setter
    def context(self, value: dict[str, Any]) -> None:
        if not isinstance(value, dict):
            raise TypeError(f"pending.context must be a dict, not {type(value).__name__}")
        self._context = value  # the object assigned is the one the handler's connection gets

    @staticmethod
    def respond(
        status: int,
        body: str | bytes = "",
        headers: Mapping[str, str] | Iterable[tuple[str, str]] = (),
        content_type: str = "text/plain; charset=utf-8",
    ) -> Response:
        """A complete HTTP response with ``Content-Length`` and ``Connection: close``.

        ``status`` is a final status, 200 to 599; ``headers`` a mapping
        (``{"WWW-Authenticate": "Bearer"}``) or (name, value) pairs. A header
        that cannot be sent as it is (a line break in a value, say) is a
        ValueError naming it, raised here rather than a response split on the wire.
        """
        if isinstance(status, bool) or not isinstance(status, int) or not 200 <= status <= 599:
            raise ValueError(
                f"status must be a final HTTP status, an int from 200 to 599, not {status!r} "
                "(1xx are interim answers; the upgrade's 101 is rawws's own)"
            )
        if isinstance(body, str):
            data = body.encode("utf-8")
        elif isinstance(body, (bytes, bytearray, memoryview)):
            data = bytes(body)
        else:
            raise TypeError(f"body must be str or bytes, not {type(body).__name__}")
        response = reject(status, "", _header_pairs(headers))
        response.headers.replace("Content-Type", content_type)
        response.headers.replace("Content-Length", str(len(data)))
        response.headers.serialize()  # ValueError now, naming the header, if one cannot be sent
        response.body = data
        return response


def _header_pairs(headers: object) -> list[tuple[str, str]]:
    """``headers`` as (name, value) pairs, from a mapping or an iterable of pairs; TypeError otherwise."""
    accepted = "headers must be a mapping {name: value} or an iterable of (name, value) pairs of str"
    if isinstance(headers, Mapping):
        items = list(headers.items())
    elif isinstance(headers, (str, bytes, bytearray)) or not isinstance(headers, Iterable):
        raise TypeError(f"{accepted}, not {type(headers).__name__}")
    else:
        items = []
        for item in headers:
            if not isinstance(item, (tuple, list)) or len(item) != 2:
                raise TypeError(f"{accepted}; got the item {item!r}")
            items.append((item[0], item[1]))
    for name, value in items:
        if not isinstance(name, str) or not isinstance(value, str):
            raise TypeError(f"{accepted}; got {name!r}: {value!r}")
    return items
