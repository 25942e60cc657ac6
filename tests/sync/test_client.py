"""connect() over real loopback sockets: URIs, IPv6, refusals and timeouts."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable

import pytest

from rawws import InvalidURI
from rawws.sync.client import connect
from rawws.sync.server import Server
from tests.conftest import echo, scaled

StartServer = Callable[..., Server]


def url(server: Server, path: str = "/") -> str:
    return f"ws://127.0.0.1:{server.port}{path}"


def test_ipv6_literal(start_server: StartServer) -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6 on this machine")
    from rawws.sync.server import serve

    try:
        server = serve(echo, "::1", 0).start()
    except OSError:
        pytest.skip("::1 is not configured")
    try:
        with connect(f"ws://[::1]:{server.port}/v6?x=1") as ws:
            ws.send("six")
            assert ws.recv(timeout=scaled(5)) == "six"
            assert ws.request.headers["Host"] == f"[::1]:{server.port}"
    finally:
        server.shutdown(scaled(5))


@pytest.mark.parametrize(
    "bad",
    ["http://example.com", "ws://", "ws://host:99999", "ws://host/#frag", "wss://[::1", "example.com", "ws://u:p@h"],
)
def test_invalid_uris(bad: str) -> None:
    with pytest.raises(InvalidURI):
        connect(bad)


def test_connect_refused_and_open_timeout() -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    start = time.monotonic()
    with pytest.raises(TimeoutError):  # a ConnectTimeout, still a TimeoutError
        connect(f"ws://127.0.0.1:{port}", open_timeout=0.5)  # accepted by the kernel, never answered
    assert time.monotonic() - start < 3
    listener.close()
    with pytest.raises(OSError, match="connection refused"):  # a ConnectError, still an OSError
        connect(f"ws://127.0.0.1:{port}", open_timeout=2)
