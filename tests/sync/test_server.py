"""serve() and Server over real loopback sockets: handshake options, handlers, shutdown, threads."""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from rawws import ConnectionClosedError, ConnectionClosedOK, InvalidHandshake
from rawws.sync.client import connect
from rawws.sync.server import PendingConnection, Server
from tests.conftest import echo, scaled, wait_until

StartServer = Callable[..., Server]


def url(server: Server, path: str = "/") -> str:
    return f"ws://127.0.0.1:{server.port}{path}"


def os_threads() -> int:
    """Threads of this process as the kernel counts them (rawws starts connection threads below `threading`)."""
    return len(os.listdir("/proc/self/task"))


def test_subprotocol_negotiation(start_server: StartServer) -> None:
    server = start_server(lambda ws: ws.send(ws.subprotocol or "none"), subprotocols=["v2", "v1"])
    with connect(url(server), subprotocols=["v1", "v2"]) as ws:
        assert ws.subprotocol == "v1"  # the client's preference
        assert ws.recv(timeout=scaled(5)) == "v1"
    with connect(url(server), subprotocols=["v9"]) as ws:
        assert ws.subprotocol is None


def test_process_request_answers_plain_http(start_server: StartServer) -> None:
    def process_request(connection: PendingConnection, request: Any) -> Any:
        if request.path == "/health":
            return connection.respond(200, "ok\n")
        if request.headers.get("Authorization") != "Bearer s3cret":
            return connection.respond(401, "token required\n")
        return None

    server = start_server(echo, process_request=process_request)
    with socket.create_connection(("127.0.0.1", server.port), timeout=scaled(5)) as raw:
        raw.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        answer = b""
        while chunk := raw.recv(4096):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 200 OK") and answer.endswith(b"\r\n\r\nok\n")
    with pytest.raises(InvalidHandshake) as info:
        connect(url(server))
    assert info.value.status == 401 and info.value.body == b"token required\n"
    with connect(url(server), additional_headers={"Authorization": "Bearer s3cret"}) as ws:
        ws.send("in")
        assert ws.recv(timeout=scaled(5)) == "in"


def test_origin_allowed(start_server: StartServer) -> None:
    server = start_server(echo, origins=["https://app.example"])
    with connect(url(server), origin="https://app.example") as ws:
        ws.send("ok")
        assert ws.recv(timeout=scaled(5)) == "ok"
    with pytest.raises(InvalidHandshake) as info:
        connect(url(server), origin="https://evil.example")
    assert info.value.status == 403


def test_raising_handler_gets_1011_and_server_keeps_serving(start_server: StartServer) -> None:
    def handler(ws: Any) -> None:
        if ws.request.path == "/boom":
            raise RuntimeError("boom")
        echo(ws)

    server = start_server(handler)
    with connect(url(server, "/boom")) as ws:
        with pytest.raises(ConnectionClosedError) as info:
            ws.recv(timeout=scaled(5))
        assert info.value.code == 1011
    with connect(url(server)) as ws:
        ws.send("alive")
        assert ws.recv(timeout=scaled(5)) == "alive"


def test_shutdown_sends_1001_to_everyone(start_server: StartServer) -> None:
    server = start_server(echo)
    clients = [connect(url(server)) for _ in range(20)]
    assert wait_until(lambda: len(server.connections) == 20)
    server.shutdown(timeout=scaled(10))
    for ws in clients:
        with pytest.raises(ConnectionClosedOK) as info:
            ws.recv(timeout=scaled(5))
        assert info.value.code == 1001
    with pytest.raises(OSError):
        connect(url(server), open_timeout=2)


def _settled_thread_count() -> int:
    """The thread count once it has not changed for 0.3 s (at most a few seconds, scaled)."""
    end = time.monotonic() + scaled(5)
    count = os_threads()
    while time.monotonic() < end:
        time.sleep(0.3)
        now = os_threads()
        if now == count:
            break
        count = now
    return count


@pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="needs Linux /proc")
def test_thread_count_returns_to_baseline(start_server: StartServer) -> None:
    server = start_server(echo)
    with connect(url(server)) as ws:  # starts the shared reactor and timer threads
        ws.send("warm")
        ws.recv(timeout=scaled(5))
    assert wait_until(lambda: len(server.connections) == 0)
    baseline = _settled_thread_count()  # threads that earlier tests left ending must be gone first
    clients = [connect(url(server)) for _ in range(30)]
    assert wait_until(lambda: len(server.connections) == 30)
    assert wait_until(lambda: os_threads() == baseline + 30), os_threads() - baseline  # one per connection
    for ws in clients:
        ws.close()
    assert wait_until(lambda: os_threads() <= baseline, scaled(10))


def test_hundred_clients_at_once(start_server: StartServer) -> None:
    server = start_server(echo)
    errors: list[BaseException] = []

    def client(i: int) -> None:
        try:
            with connect(url(server)) as ws:
                for j in range(10):
                    ws.send(f"{i}:{j}")
                    assert ws.recv(timeout=scaled(10)) == f"{i}:{j}"
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(100)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(scaled(30))
    assert not any(t.is_alive() for t in threads)
    assert errors == []


def test_shutdown_from_a_handler_ends_serve_forever() -> None:
    from rawws.sync.server import serve

    def handler(ws: Any) -> None:
        if ws.recv(timeout=scaled(5)) == "stop":
            ws.server.shutdown(timeout=scaled(5))  # from inside a handler: must not wait for itself

    server = serve(handler, "127.0.0.1", 0)
    runner = threading.Thread(target=server.serve_forever)
    runner.start()
    with connect(url(server)) as ws:
        ws.send("stop")
        with pytest.raises(ConnectionClosedOK) as info:
            ws.recv(timeout=scaled(10))
        assert info.value.code == 1001
    runner.join(scaled(10))
    assert not runner.is_alive()
