"""Who may open a WebSocket: ``origins="same-origin"``, ``allowed_hosts``, and ``context`` (RFC 6455 §10.2).

Over real sockets, with the requests a browser sends: a page on another origin
(cross-site WebSocket hijacking) and a page on a rebound DNS name (its own
origin, but a ``Host`` that is not the server's).
"""

from __future__ import annotations

import base64
import os
import socket
from collections.abc import Callable
from typing import Any

import pytest

from rawws import InvalidHandshake
from rawws.handshake import check_origin
from rawws.http11 import Headers, Request
from rawws.sync.client import connect
from rawws.sync.server import PendingConnection, Server
from tests.conftest import echo, http_get, http_status_and_body, scaled

StartServer = Callable[..., Server]


def handshake(port: int, host: str, origin: str | None) -> tuple[int, str]:
    """Send a browser's opening handshake with these ``Host`` and ``Origin``; the status and body answered."""
    key = base64.b64encode(os.urandom(16)).decode()
    lines = [
        "GET /ws HTTP/1.1",
        f"Host: {host}",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Key: {key}",
        "Sec-WebSocket-Version: 13",
    ]
    if origin is not None:
        lines.append(f"Origin: {origin}")
    with socket.create_connection(("127.0.0.1", port), timeout=scaled(5)) as sock:
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        data = b""
        for _ in range(100):  # the head, then the body its Content-Length announces
            head, found, body = data.partition(b"\r\n\r\n")
            if found:
                length = [
                    int(line.split(b":")[1])
                    for line in head.lower().split(b"\r\n")
                    if line.startswith(b"content-length:")
                ]
                if len(body) >= (length[0] if length else 0):
                    return int(head.split()[1]), body.decode()
            chunk = sock.recv(65536)
            assert chunk, data
            data += chunk
    raise AssertionError(data)


def test_same_origin_accepts_the_servers_own_pages_and_refuses_others(start_server: StartServer) -> None:
    server = start_server(echo, origins="same-origin")
    port = server.port
    assert handshake(port, f"127.0.0.1:{port}", f"http://127.0.0.1:{port}")[0] == 101
    assert handshake(port, f"localhost:{port}", f"http://LOCALHOST:{port}")[0] == 101
    assert handshake(port, f"127.0.0.1:{port}", None)[0] == 101  # a program, not a browser
    for origin in (
        "http://evil.example",  # the cross-site page
        f"http://evil.example:{port}",
        f"http://127.0.0.1:{port + 1}",  # another port is another origin
        f"http://localhost:{port}",  # another name too: the Host says 127.0.0.1
        "null",  # a sandboxed frame or a file: page
    ):
        status, body = handshake(port, f"127.0.0.1:{port}", origin)
        assert status == 403, origin
        assert "not allowed" in body and "its own origin" in body, body
    with connect(f"ws://127.0.0.1:{port}/", origin=f"http://127.0.0.1:{port}") as ws:
        ws.send("ok")
        assert ws.recv(timeout=scaled(5)) == "ok"


def test_same_origin_with_listed_origins(start_server: StartServer) -> None:
    server = start_server(echo, origins=["same-origin", "http://localhost:3000"])
    port = server.port
    assert handshake(port, f"127.0.0.1:{port}", "http://localhost:3000")[0] == 101
    assert handshake(port, f"127.0.0.1:{port}", f"http://127.0.0.1:{port}")[0] == 101
    status, body = handshake(port, f"127.0.0.1:{port}", None)  # None is not listed
    assert status == 403 and "(none)" in body and "http://localhost:3000" in body


def test_allowed_hosts_refuses_a_rebound_name(start_server: StartServer) -> None:
    server = start_server(echo, origins="same-origin", allowed_hosts=["127.0.0.1", "localhost", "::1"])
    port = server.port
    # DNS rebinding: evil.example now resolves to 127.0.0.1; its page is same-origin with itself.
    status, body = handshake(port, f"evil.example:{port}", f"http://evil.example:{port}")
    assert status == 403 and "does not name this server" in body and "localhost" in body
    assert handshake(port, f"[::1]:{port}", f"http://[::1]:{port}")[0] == 101
    assert handshake(port, f"LocalHost:{port}", None)[0] == 101


def test_check_origin_default_ports() -> None:
    def request(host: str, origin: str) -> Request:
        return Request("GET", "/", Headers([("Host", host), ("Origin", origin)]))

    check_origin(request("chat.example", "https://chat.example"), "same-origin", secure=True)
    check_origin(request("chat.example:443", "https://chat.example"), "same-origin", secure=True)
    check_origin(request("chat.example", "http://chat.example:80"), "same-origin")
    with pytest.raises(InvalidHandshake):
        check_origin(request("chat.example:8443", "https://chat.example"), "same-origin", secure=True)
    with pytest.raises(InvalidHandshake):
        check_origin(request("chat.example", "https://chat.example.evil.example"), "same-origin", secure=True)
    with pytest.raises(InvalidHandshake):
        check_origin(request("chat.example", "https://evil@chat.example"), "same-origin", secure=True)  # not one
    check_origin(request("x", "https://app.example"), "https://app.example")  # a single origin, as a string


def test_process_request_context_reaches_the_handler(start_server: StartServer) -> None:
    def process_request(pending: PendingConnection, request: Any) -> None:
        pending.context["user"] = request.path.rsplit("/", 1)[-1]

    def handler(ws: Any) -> None:
        ws.send(f"hello {ws.context['user']}")

    server = start_server(handler, process_request=process_request)
    with connect(f"ws://127.0.0.1:{server.port}/as/alice") as ws:
        assert ws.recv(timeout=scaled(5)) == "hello alice"
    plain = start_server(lambda ws: ws.send(repr(ws.context)))
    with connect(f"ws://127.0.0.1:{plain.port}/") as ws:
        assert ws.recv(timeout=scaled(5)) == "{}"


def test_a_host_with_userinfo_or_a_path_names_nothing(start_server: StartServer) -> None:
    server = start_server(echo, allowed_hosts=["127.0.0.1"])
    port = server.port
    for host in (f"evil.example:{port}@127.0.0.1", f"127.0.0.1:{port}/x", f"evil.example#@127.0.0.1:{port}"):
        assert handshake(port, host, None)[0] in (400, 403), host
    assert handshake(port, f"127.0.0.1:{port}", None)[0] == 101


def plain_get(port: int, host: str, path: str = "/") -> tuple[int, str]:
    """A plain GET (no upgrade) with this ``Host``; the status and body answered."""
    return http_status_and_body(http_get(port, host, path))


def test_host_and_origin_are_checked_before_process_request(start_server: StartServer) -> None:
    """A rebound name gets no page, and a refused Origin runs none of process_request's side effects."""
    calls: list[str] = []

    def process_request(pending: PendingConnection, request: Request) -> Any:
        calls.append(request.path)
        if request.path == "/page":
            return pending.respond(200, "secret page\n")
        return None

    server = start_server(echo, process_request=process_request, allowed_hosts=["localhost"], origins="same-origin")
    port = server.port
    status, body = plain_get(port, f"evil.example:{port}", "/page")  # DNS rebinding, plain HTTP
    assert status == 403 and "does not name this server" in body and "secret" not in body
    status, body = handshake(port, f"localhost:{port}", "http://evil.example")  # cross-site upgrade
    assert status == 403 and "not allowed" in body
    assert calls == []  # process_request never ran for either
    assert plain_get(port, f"localhost:{port}", "/page") == (200, "secret page\n")
    assert handshake(port, f"localhost:{port}", f"http://localhost:{port}")[0] == 101
    assert calls == ["/page", "/ws"]


def test_same_origin_compares_the_scheme(start_server: StartServer) -> None:
    server = start_server(echo, origins="same-origin")
    port = server.port
    status, body = handshake(port, f"127.0.0.1:{port}", f"https://127.0.0.1:{port}")
    assert status == 403 and "http://" in body  # an https page is not this plain server's own
    assert handshake(port, f"127.0.0.1:{port}", f"http://127.0.0.1:{port}")[0] == 101

    def request(origin: str, *extra: tuple[str, str]) -> Request:
        return Request("GET", "/", Headers([("Host", "chat.example"), ("Origin", origin), *extra]))

    check_origin(request("https://chat.example"), "same-origin", secure=True)
    check_origin(request("wss://chat.example"), "same-origin", secure=True)
    check_origin(request("ws://chat.example"), "same-origin")
    with pytest.raises(InvalidHandshake):
        check_origin(request("http://chat.example"), "same-origin", secure=True)
    # Behind a TLS-terminating proxy: the page is https although rawws speaks plain HTTP.
    check_origin(request("https://chat.example", ("X-Forwarded-Proto", "https")), "same-origin")


def test_origins_and_allowed_hosts_are_checked_and_normalised_at_serve_time(start_server: StartServer) -> None:
    with pytest.raises(TypeError, match="origins must be"):
        start_server(echo, origins=42)
    with pytest.raises(TypeError, match="allowed_hosts"):
        start_server(echo, allowed_hosts=42)
    with pytest.raises(ValueError, match="without a port: write 'localhost'"):
        start_server(echo, allowed_hosts=["localhost:8765"])
    with pytest.raises(ValueError, match="not an origin"):
        start_server(echo, origins=["https://app.example/chat"])
    # A str is one name, not its letters; origins are compared as browsers send them.
    server = start_server(echo, allowed_hosts="LocalHost", origins=["HTTP://App.Example:80/", "https://x.example/"])
    port = server.port
    assert handshake(port, f"localhost:{port}", "http://app.example")[0] == 101
    assert handshake(port, f"localhost:{port}", "https://x.example")[0] == 101
    assert handshake(port, "l", "http://app.example")[0] == 403
    assert handshake(port, f"localhost:{port}", "http://other.example")[0] == 403


def test_assigning_pending_context_reaches_the_handler(start_server: StartServer) -> None:
    def process_request(pending: PendingConnection, request: Any) -> None:
        pending.context = {"user": "bob"}

    server = start_server(lambda ws: ws.send(repr(ws.context)), process_request=process_request)
    with connect(f"ws://127.0.0.1:{server.port}/") as ws:
        assert ws.recv(timeout=scaled(5)) == "{'user': 'bob'}"
    with socket.socket() as unconnected:
        pending = PendingConnection(unconnected, None, None)
    with pytest.raises(TypeError, match="must be a dict"):
        pending.context = ["bob"]  # type: ignore[assignment]
