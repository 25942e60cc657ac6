"""What rawws writes on the wire is well-formed, whoever asks: ``pending.respond``, client headers, refusals.

Over real loopback sockets: a header value with a line break is refused
before a byte is sent (no response splitting, no header injection), a dict of
headers works, a status that is not a final one is refused, a TLS client on a
plain port is answered at once, and a server that was shut down says so.
"""

from __future__ import annotations

import socket
import ssl
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from rawws.http11 import Headers, Request, Response
from rawws.sync.client import connect
from rawws.sync.server import PendingConnection, Server, serve
from tests.conftest import echo, http_get, scaled

StartServer = Callable[..., Server]


def get(port: int, path: str = "/") -> bytes:
    """A plain GET; everything the server answered until it closed."""
    return http_get(port, path=path)


def test_respond_refuses_a_line_break_in_a_header(start_server: StartServer) -> None:
    errors: list[BaseException] = []

    def process_request(pending: PendingConnection, request: Request) -> Response:
        try:
            return pending.respond(302, "", [("Location", "/x\r\nSet-Cookie: evil=1")])
        except ValueError as exc:
            errors.append(exc)
            raise

    server = start_server(echo, process_request=process_request)
    answer = get(server.port)
    assert answer.startswith(b"HTTP/1.1 500 ") and b"Set-Cookie" not in answer  # no split response
    assert len(errors) == 1 and "Location" in str(errors[0]) and "line break" in str(errors[0])


def test_the_serializer_refuses_control_characters() -> None:
    for value in ("a\r\nX-Evil: 1", "a\nb", "a\rb", "a\x00b", "a\x7fb", "caf\u00e9\u2028"):
        with pytest.raises(ValueError, match="X-Inj"):
            Headers([("X-Inj", value)]).serialize()
    with pytest.raises(ValueError, match="header name"):
        Headers([("X-Inj\r\nX-Evil", "1")]).serialize()
    with pytest.raises(ValueError, match="reason"):
        Response(200, "OK\r\nX-Evil: 1").serialize()
    with pytest.raises(ValueError, match="status"):
        Response(99, "").serialize()
    assert Headers([("X-Ok", "tab\tand caf\u00e9")]).serialize() == "X-Ok: tab\tand caf\u00e9\r\n".encode("latin-1")


@pytest.mark.parametrize(
    "settings",
    [{"additional_headers": {"X-Inj": "a\r\nX-Evil: 1"}}, {"origin": "http://a\r\nX-Evil: 3"}],
    ids=["additional_headers", "origin"],
)
def test_the_client_sends_nothing_with_a_line_break_in_a_header(settings: dict[str, Any]) -> None:
    received: list[bytes] = []
    with socket.create_server(("127.0.0.1", 0)) as listener:
        listener.settimeout(scaled(5))

        def accept() -> None:
            peer, _ = listener.accept()
            with peer:
                peer.settimeout(scaled(5))
                while True:
                    chunk = peer.recv(65536)
                    if not chunk:
                        break
                    received.append(chunk)

        thread = threading.Thread(target=accept, daemon=True)
        thread.start()
        with pytest.raises(ValueError, match="X-Inj|Origin"):
            connect(f"ws://127.0.0.1:{listener.getsockname()[1]}/", open_timeout=scaled(5), **settings)
        thread.join(scaled(5))
    assert received == []  # not one byte of the request went out


def test_respond_takes_a_mapping_and_refuses_wrong_types_and_statuses(start_server: StartServer) -> None:
    def process_request(pending: PendingConnection, request: Request) -> Response:
        return pending.respond(401, "go away\n", {"WWW-Authenticate": "Bearer"})

    server = start_server(echo, process_request=process_request)
    answer = get(server.port)
    assert answer.startswith(b"HTTP/1.1 401 ") and b"\r\nWWW-Authenticate: Bearer\r\n" in answer
    assert answer.endswith(b"\r\n\r\ngo away\n")
    with pytest.raises(TypeError, match="mapping .* or an iterable of \\(name, value\\) pairs"):
        PendingConnection.respond(401, "", 42)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="pairs"):
        PendingConnection.respond(401, "", ["WWW-Authenticate"])  # type: ignore[list-item]
    for status in (99, 101, 600, 1000):
        with pytest.raises(ValueError, match="final HTTP status"):
            PendingConnection.respond(status, "x")


def test_a_tls_client_on_a_plain_port_fails_at_once(start_server: StartServer) -> None:
    server = start_server(echo, open_timeout=scaled(10))
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    started = time.monotonic()
    with pytest.raises(OSError) as raised:
        connect(f"wss://127.0.0.1:{server.port}/", ssl=context, open_timeout=scaled(10))
    assert time.monotonic() - started < scaled(2), "the client waited for open_timeout"
    assert "TLS" in str(raised.value) or "SSL" in str(raised.value) or "ssl" in str(raised.value).lower()
    with socket.create_connection(("127.0.0.1", server.port), timeout=scaled(5)) as sock:
        sock.sendall(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")  # the start of a ClientHello
        answer = sock.recv(65536)
    assert answer.startswith(b"HTTP/1.1 400 ") and b"TLS" in answer


def test_start_after_shutdown_is_a_clear_error() -> None:
    server = serve(echo, "127.0.0.1", 0).start()
    with pytest.raises(RuntimeError, match="already accepting"):
        server.start()
    server.shutdown(timeout=scaled(5))
    with pytest.raises(RuntimeError, match="was shut down"):
        server.start()
    with pytest.raises(RuntimeError, match="was shut down"):
        server.serve_forever()
