"""Shared fixtures: servers on free loopback ports, shut down after each test."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from websockets.sync.server import serve as ws_serve

from rawws.server import Server, serve

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


@pytest.fixture
def start_server() -> Iterator[Callable[..., Server]]:
    """``start_server(handler, **options)`` → a running rawws server on 127.0.0.1, random port."""
    servers: list[Server] = []

    def start(handler: Callable[[Any], Any], **options: Any) -> Server:
        options.setdefault("close_timeout", 3.0)
        server = serve(handler, "127.0.0.1", 0, **options).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.shutdown(timeout=10)


def echo(ws: Any) -> None:
    for message in ws:
        ws.send(message)


def wait_until(predicate: Callable[[], bool], timeout: float = 5.0, interval: float = 0.01) -> bool:
    """Poll ``predicate`` until it holds or ``timeout`` passes; return whether it held."""
    event = threading.Event()
    import time

    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        event.wait(interval)
    return predicate()


@pytest.fixture
def websockets_server() -> Iterator[Callable[..., int]]:
    """``start(handler, **options)`` → the port of a `websockets` sync server (a real peer)."""
    servers: list[Any] = []

    def start(handler: Callable[[Any], None], **options: Any) -> int:
        server = ws_serve(handler, "127.0.0.1", 0, **options)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        port: int = server.socket.getsockname()[1]
        return port

    yield start
    for server in servers:
        server.shutdown()
