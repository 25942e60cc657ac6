"""Shared fixtures: servers on free loopback ports, shut down after each test.

Timeouts. A wait for something to happen (a recv, a join, a poll, a
subprocess) is written ``scaled(seconds)``: the nominal figure times
``TIMEOUT_SCALE``, from the environment variable ``RAWWS_TEST_TIMEOUT_SCALE``
(default 1.0, and 3.0 in CI, whose machine is busy). A bare number of seconds
in an assertion is a bound the code must keep, and is not scaled. pytest-timeout's
per-test limit from pyproject.toml is scaled the same way, unless ``--timeout``
or ``PYTEST_TIMEOUT`` sets it.

Keepalive. The servers started here have keepalive off (``ping_interval=None``),
and so do the clients of long or heavy tests: on a busy machine a ping can wait
behind a backlog of messages longer than its timeout, and the connection is then
closed with 1011 although nothing is wrong. Tests about keepalive set it explicitly.
"""

from __future__ import annotations

import inspect
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from hypothesis import settings
from websockets.sync.server import serve as ws_serve

from rawws.sync.server import Server, serve

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def _timeout_scale() -> float:
    raw = os.environ.get("RAWWS_TEST_TIMEOUT_SCALE", "").strip()
    if not raw:
        return 3.0 if IN_CI else 1.0
    try:
        scale = float(raw)
    except ValueError:
        raise ValueError(f"RAWWS_TEST_TIMEOUT_SCALE must be a number, not {raw!r}") from None
    if not scale > 0:
        raise ValueError(f"RAWWS_TEST_TIMEOUT_SCALE must be positive, not {raw!r}")
    return scale


TIMEOUT_SCALE = _timeout_scale()
"""How much longer than nominal the waits in the tests may take (1.0 here, 3.0 in CI by default)."""


def scaled(seconds: float) -> float:
    """A wait of nominally ``seconds``, stretched by :data:`TIMEOUT_SCALE` for slow or busy machines."""
    return seconds * TIMEOUT_SCALE


# Hypothesis fails an example that takes longer than its deadline (200 ms by default; none in
# its own "ci" profile, which it loads when CI is set): stretch it like the other waits.
_profile = settings.default
if _profile is not None and _profile.deadline is not None and TIMEOUT_SCALE != 1.0:
    settings.register_profile("rawws", parent=_profile, deadline=_profile.deadline * TIMEOUT_SCALE)
    settings.load_profile("rawws")


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    """Scale pytest-timeout's per-test limit from the config file (not one given by option or environment)."""
    if TIMEOUT_SCALE == 1.0 or not config.pluginmanager.hasplugin("timeout"):
        return
    if config.getoption("timeout", None) is not None or os.environ.get("PYTEST_TIMEOUT"):
        return
    ini = config.getini("timeout")
    if ini:
        config.option.timeout = float(ini) * TIMEOUT_SCALE


@pytest.fixture
def start_server() -> Iterator[Callable[..., Server]]:
    """``start_server(handler, **options)`` → a running rawws server on 127.0.0.1, random port."""
    servers: list[Server] = []

    def start(handler: Callable[[Any], Any], **options: Any) -> Server:
        options.setdefault("close_timeout", scaled(3.0))
        options.setdefault("ping_interval", None)
        server = serve(handler, "127.0.0.1", 0, **options).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.shutdown(timeout=scaled(10))


def echo(ws: Any) -> None:
    for message in ws:
        ws.send(message)


def wait_until(predicate: Callable[[], bool], timeout: float | None = None, interval: float = 0.01) -> bool:
    """Poll ``predicate`` until it holds or ``timeout`` (default ``scaled(5)``) passes; return whether it held."""
    end = time.monotonic() + (scaled(5.0) if timeout is None else timeout)
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


@pytest.fixture
def websockets_server() -> Iterator[Callable[..., int]]:
    """``start(handler, **options)`` → the port of a `websockets` sync server (a real peer)."""
    servers: list[Any] = []

    def start(handler: Callable[[Any], None], **options: Any) -> int:
        if "ping_interval" in inspect.signature(ws_serve).parameters:  # websockets >= 15 has sync keepalive
            options.setdefault("ping_interval", None)
        server = ws_serve(handler, "127.0.0.1", 0, **options)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        port: int = server.socket.getsockname()[1]
        return port

    yield start
    for server in servers:
        server.shutdown()


def http_get(port: int, host: str | None = None, path: str = "/") -> bytes:
    """A plain GET (no upgrade) to 127.0.0.1:``port`` with this ``Host``; all it answered until it closed."""
    host = host or f"127.0.0.1:{port}"
    with socket.create_connection(("127.0.0.1", port), timeout=scaled(5)) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        data = b""
        for _ in range(1000):
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    return data


def http_status_and_body(answer: bytes) -> tuple[int, str]:
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split()[1]), body.decode(errors="replace")
