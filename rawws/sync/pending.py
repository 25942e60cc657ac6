"""The TCP connection before the upgrade, as ``process_request`` sees it (RFC 6455 §4.2.1)."""

from __future__ import annotations

import socket
import ssl
from collections.abc import Iterable
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
    to be parsed twice::

        def process_request(pending, request):
            user = USERS.get(token_from(request.path))
            if user is None:
                return pending.respond(401, "unknown token\n")
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
        self.context: dict[str, Any] = {}

    @staticmethod
    def respond(
        status: int,
        body: str | bytes = "",
        headers: Iterable[tuple[str, str]] = (),
        content_type: str = "text/plain; charset=utf-8",
    ) -> Response:
        """A complete HTTP response with ``Content-Length`` and ``Connection: close``."""
        if isinstance(body, str):
            data = body.encode("utf-8")
        else:
            data = body
        response = reject(status, "", list(headers))
        response.headers.replace("Content-Type", content_type)
        response.headers.replace("Content-Length", str(len(data)))
        response.body = data
        return response
