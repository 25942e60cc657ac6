"""Every example starts, does its job and exits (or is stopped) within bounded time."""

from __future__ import annotations

import json
import re
import socket
import ssl
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from rawws import InvalidHandshake, connect, make_message, send_message

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def run(script: str, *args: str, timeout: float = 60) -> str:
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / script), *args], capture_output=True, text=True, timeout=timeout
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


@contextmanager
def running(script: str, *args: str, ready: str) -> Iterator[str]:
    """Start a server example and wait for its first line (which must match ``ready``); stop it after."""
    process = subprocess.Popen([sys.executable, str(EXAMPLES / script), *args], stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None
    try:
        line = process.stdout.readline()
        assert re.search(ready, line), line
        yield line
    finally:
        process.terminate()
        process.wait(10)


def test_echo_server_and_client() -> None:
    port = str(free_port())
    with running("echo_server.py", port, ready=r"ws://127\.0\.0\.1:\d+/"):
        out = run("echo_client.py", port)
    assert "got 'Hello, server!'" in out and "ping round trip" in out


def test_chat_server_serves_page_and_websocket() -> None:
    port = free_port()
    with running("chat_server.py", str(port), ready=r"http://127\.0\.0\.1:\d+/"):
        page = urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5).read().decode()
        assert "<title>rawws chat</title>" in page
        with connect(f"ws://127.0.0.1:{port}/ws") as ws:
            send_message(ws, "subscribe", {"channel": "room:lobby"})
            assert json.loads(ws.recv(timeout=5))["type"] == "subscribed"


def test_ticker_broadcasts_every_second() -> None:
    port = str(free_port())
    with running("ticker.py", "serve", port, ready=r"ticker on ws://"):
        start = time.monotonic()
        out = run("ticker.py", "watch", port, "2", timeout=30)
        assert len(re.findall(r"^RAWW \d+\.\d\d$", out, re.M)) == 2
        assert time.monotonic() - start < 10


def test_broker_standalone() -> None:
    out = run("broker_standalone.py")
    assert "notified: 2" in out and "notified: 1" in out
    assert "subscribe twice: False" in out and "weather.oslo: snow" in out


def test_reconnecting_client() -> None:
    out = run("reconnecting_client.py")
    assert out.count("open") >= 2 and "message: hello after the restart" in out


def test_wss_server_with_self_signed_certificate(tmp_path: Path) -> None:
    port = free_port()
    with running("wss_server.py", str(port), str(tmp_path), ready=r"wss://localhost:\d+/"):
        context = ssl.create_default_context(cafile=str(tmp_path / "cert.pem"))
        with connect(f"wss://localhost:{port}/", ssl=context) as ws:
            ws.send("secret")
            assert ws.recv(timeout=5) == "secret"


def test_http_and_websocket_on_one_port() -> None:
    port = free_port()
    with running("http_and_ws.py", str(port), ready=r"http://127\.0\.0\.1:\d+/"):
        assert urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5).read() == b"ok\n"
        with pytest.raises(InvalidHandshake) as info:
            connect(f"ws://127.0.0.1:{port}/ws")
        assert info.value.status == 401
        with connect(f"ws://127.0.0.1:{port}/ws?token=s3cret") as ws:
            assert ws.recv(timeout=5) == "welcome, authenticated client"
        with connect(f"ws://127.0.0.1:{port}/ws", additional_headers={"Authorization": "Bearer s3cret"}) as ws:
            ws.send(make_message("hi"))
            assert ws.recv(timeout=5) == "welcome, authenticated client"


def test_polling_vs_websocket_measures_both() -> None:
    out = run("polling_vs_websocket.py", "--updates", "20")
    rows = {line.split("  ")[0]: line for line in out.splitlines() if line.startswith(("HTTP polling", "WebSocket"))}
    assert any(key.startswith("WebSocket, one connection") for key in rows)
    ratios = [float(m) for m in re.findall(r"([\d.]+)× the WebSocket's bytes", out)]
    assert len(ratios) == 3 and all(r > 1.5 for r in ratios)
