"""Issue 13: errors that say what happened when connect() fails, against real loopback peers.

Item 6: a plain HTTP server's answer is reported with its status. Item 7: one
``except RawwsError`` catches every failure to connect, and the message says
what failed or timed out, after how long, at which HOST:PORT. Item 8: a
``process_request`` that returns a wrong type answers 500 and logs a
TypeError naming the hook. Item 9: a missing ``Sec-WebSocket-Accept`` is an
:class:`InvalidHeader`.
"""

from __future__ import annotations

import functools
import http.server
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from rawws import ConnectError, ConnectTimeout, InvalidHandshake, InvalidHeader, RawwsError
from rawws.sync.client import connect
from rawws.sync.server import Server
from tests.certs import contexts
from tests.conftest import echo, scaled

StartServer = Callable[..., Server]


@pytest.fixture
def http_server(tmp_path: Path) -> Iterator[int]:
    """The standard library's ``http.server`` (what ``python -m http.server`` runs) on a loopback port."""
    (tmp_path / "index.html").write_text("<p>not a WebSocket server</p>")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    handler.log_message = lambda *args: None  # type: ignore[method-assign]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


@pytest.fixture
def silent_listener() -> Iterator[int]:
    """A port whose connections the kernel accepts and nobody ever answers."""
    listener = socket.create_server(("127.0.0.1", 0))
    yield listener.getsockname()[1]
    listener.close()


def test_a_plain_http_server_is_reported_with_the_status_it_sent(http_server: int) -> None:
    with pytest.raises(InvalidHandshake) as info:
        connect(f"ws://127.0.0.1:{http_server}/", open_timeout=scaled(5))
    message = str(info.value)
    assert "did not upgrade to WebSocket" in message and "HTTP/1.0 200 OK" in message
    assert "not supported" not in message
    assert info.value.status == 200
    assert info.value.headers["content-type"].startswith("text/html")
    assert b"not a WebSocket server" in info.value.body


def test_every_failure_to_connect_is_caught_by_one_except_clause(
    http_server: int, silent_listener: int, tmp_path: Path
) -> None:
    refused = socket.create_server(("127.0.0.1", 0))
    refused_port = refused.getsockname()[1]
    refused.close()
    _, client_tls = contexts(tmp_path)
    attempts: list[tuple[str, dict[str, Any], type[Exception], str]] = [
        (f"ws://127.0.0.1:{refused_port}/", {}, ConnectError, f"connection refused by 127.0.0.1:{refused_port}"),
        ("ws://no-such-host.invalid/", {}, ConnectError, "cannot resolve the host name 'no-such-host.invalid'"),
        (
            f"ws://127.0.0.1:{silent_listener}/",
            {"open_timeout": 0.5},
            ConnectTimeout,
            f"timed out after 0.5 s (open_timeout) waiting for the handshake response from 127.0.0.1:{silent_listener}",
        ),
        (
            f"wss://127.0.0.1:{silent_listener}/",
            {"open_timeout": 0.5, "ssl": client_tls},
            ConnectTimeout,
            f"timed out after 0.5 s (open_timeout) doing the TLS handshake with 127.0.0.1:{silent_listener}",
        ),
        (
            f"wss://127.0.0.1:{http_server}/",  # answers the TLS hello with a plain HTTP 400
            {"ssl": client_tls},
            ConnectError,
            f"TLS handshake with 127.0.0.1:{http_server} failed",
        ),
        (f"ws://127.0.0.1:{http_server}/", {}, InvalidHandshake, "did not upgrade"),
        ("http://127.0.0.1/", {}, RawwsError, "ws://"),
    ]
    for uri, options, expected, words in attempts:
        start = time.monotonic()
        try:
            connect(uri, **options).close()
        except RawwsError as exc:  # the one clause the README promises
            assert isinstance(exc, expected), (uri, exc)
            assert words in str(exc), (uri, str(exc))
        else:
            pytest.fail(f"{uri} connected")
        assert time.monotonic() - start < scaled(5)
    assert issubclass(ConnectError, OSError) and issubclass(ConnectTimeout, TimeoutError)


def test_process_request_returning_a_wrong_type_answers_500_and_says_why(
    start_server: StartServer, caplog: pytest.LogCaptureFixture
) -> None:
    server = start_server(echo, process_request=lambda pending, request: "forbidden")
    with caplog.at_level(logging.ERROR, logger="rawws.server"):
        with pytest.raises(InvalidHandshake) as info:
            connect(f"ws://127.0.0.1:{server.port}/")
        assert info.value.status == 500
        assert any(
            record.exc_info is not None
            and record.exc_info[0] is TypeError
            and "process_request returned str" in str(record.exc_info[1])
            for record in caplog.records
        ), caplog.text
    # The server keeps serving.
    server_ok = start_server(echo, process_request=lambda pending, request: None)
    with connect(f"ws://127.0.0.1:{server_ok.port}/") as ws:
        ws.send("fine")
        assert ws.recv(timeout=scaled(5)) == "fine"


def answer_once(response: bytes) -> tuple[int, threading.Thread]:
    """A one-shot raw server: read the request head, send ``response``, wait for the client to leave."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def run() -> None:
        with listener:
            listener.settimeout(scaled(5))
            client, _ = listener.accept()
            with client:
                client.settimeout(scaled(5))
                data = b""
                while b"\r\n\r\n" not in data:
                    data += client.recv(4096)
                client.sendall(response)
                try:
                    client.recv(4096)
                except OSError:
                    pass

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return port, thread


def test_a_missing_accept_header_is_an_invalid_header() -> None:
    port, thread = answer_once(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
    with pytest.raises(InvalidHeader, match="lacks the Sec-WebSocket-Accept header") as info:
        connect(f"ws://127.0.0.1:{port}/", open_timeout=scaled(5))
    assert info.value.status == 101
    thread.join(scaled(5))
