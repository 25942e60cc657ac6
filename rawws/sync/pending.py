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
    """

    def __init__(self, sock: socket.socket, remote_address: Any, server: Any) -> None:
        self.remote_address: Any = remote_address
        self.local_address: Any = sock.getsockname()
        self.secure = isinstance(sock, ssl.SSLSocket)
        self.server = server

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
