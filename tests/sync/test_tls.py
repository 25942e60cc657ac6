"""wss:// — TLS with a certificate made in the test."""

from __future__ import annotations

import ssl
from collections.abc import Callable
from pathlib import Path

import pytest

from rawws import ConnectError
from rawws.sync.client import connect
from rawws.sync.server import Server
from tests.certs import contexts
from tests.conftest import echo, scaled

StartServer = Callable[..., Server]


def test_wss_round_trip(start_server: StartServer, tmp_path: Path) -> None:
    server_context, client_context = contexts(tmp_path)
    server = start_server(echo, ssl=server_context)
    with connect(f"wss://localhost:{server.port}/secure", ssl=client_context) as ws:
        ws.send("over TLS")
        assert ws.recv(timeout=scaled(5)) == "over TLS"
        big = bytes(range(256)) * 4096  # 1 MiB: many TLS records
        ws.send(big)
        assert ws.recv(timeout=scaled(10)) == big
        assert ws.ping().wait(scaled(5))


def test_wss_checks_the_certificate_by_default(start_server: StartServer, tmp_path: Path) -> None:
    server_context, _ = contexts(tmp_path)
    server = start_server(echo, ssl=server_context)
    with pytest.raises(ConnectError, match=f"TLS handshake with localhost:{server.port} failed: .*certificate") as info:
        connect(f"wss://localhost:{server.port}/")  # self-signed: not trusted by the default context
    assert isinstance(info.value.__cause__, ssl.SSLCertVerificationError)  # the system's error, kept


def test_wss_with_busy_handler_answers_pings(start_server: StartServer, tmp_path: Path) -> None:
    import threading

    release = threading.Event()

    def handler(ws: object) -> None:
        release.wait(scaled(10))
        echo(ws)

    server_context, client_context = contexts(tmp_path)
    server = start_server(handler, ssl=server_context)
    with connect(f"wss://127.0.0.1:{server.port}/", ssl=client_context) as ws:
        assert ws.ping().wait(scaled(5))  # read by the reactor through the non-blocking TLS socket
        release.set()
        ws.send("x")
        assert ws.recv(timeout=scaled(5)) == "x"
