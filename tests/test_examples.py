"""Every example starts, does its job and exits (or is stopped) within bounded time."""

from __future__ import annotations

import json
import re
import ssl
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from rawws import InvalidHandshake, connect, make_message, send_message
from tests.conftest import scaled

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def run(script: str, *args: str, timeout: float | None = None) -> str:
    """Run an example to its end, within ``timeout`` (default ``scaled(60)``); return what it printed."""
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / script), *args],
        capture_output=True,
        text=True,
        timeout=scaled(60) if timeout is None else timeout,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


@contextmanager
def running(script: str, *args: str, ready: str) -> Iterator[int]:
    """Start a server example and wait for its first line (which must match ``ready``); stop it after.

    Yields the port from that line: the examples are started on port 0, so that the
    system picks a free one (a port probed free beforehand may be taken by then).
    """
    process = subprocess.Popen([sys.executable, str(EXAMPLES / script), *args], stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None
    try:
        line = process.stdout.readline()
        assert re.search(ready, line), line
        port = re.search(r":(\d+)/", line)
        assert port, line
        yield int(port.group(1))
    finally:
        process.terminate()
        process.wait(scaled(10))


def test_echo_server_and_client() -> None:
    with running("echo_server.py", "0", ready=r"ws://127\.0\.0\.1:\d+/") as port:
        out = run("echo_client.py", str(port))
    assert "got 'Hello, server!'" in out and "ping round trip" in out


def test_chat_server_serves_page_and_websocket() -> None:
    with running("chat_server.py", "0", ready=r"http://127\.0\.0\.1:\d+/") as port:
        page = urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=scaled(5)).read().decode()
        assert "<title>rawws chat</title>" in page
        with connect(f"ws://127.0.0.1:{port}/ws") as ws:
            send_message(ws, "subscribe", {"channel": "room:lobby"})
            assert json.loads(ws.recv(timeout=scaled(5)))["type"] == "subscribed"


def test_ticker_broadcasts_every_second() -> None:
    with running("ticker.py", "serve", "0", ready=r"ticker on ws://") as port:
        start = time.monotonic()
        out = run("ticker.py", "watch", str(port), "2", timeout=scaled(30))
        assert len(re.findall(r"^RAWW \d+\.\d\d$", out, re.M)) == 2
        assert time.monotonic() - start < 10  # two ticks, a second apart (and a Python start-up)


def test_broker_standalone() -> None:
    out = run("broker_standalone.py")
    assert "notified: 2" in out and "notified: 1" in out
    assert "subscribe twice: False" in out and "weather.oslo: snow" in out


def test_reconnecting_client() -> None:
    out = run("reconnecting_client.py")
    assert out.count("open") >= 2 and "message: hello after the restart" in out


def test_wss_server_with_self_signed_certificate(tmp_path: Path) -> None:
    with running("wss_server.py", "0", str(tmp_path), ready=r"wss://localhost:\d+/") as port:
        context = ssl.create_default_context(cafile=str(tmp_path / "cert.pem"))
        with connect(f"wss://localhost:{port}/", ssl=context) as ws:
            ws.send("secret")
            assert ws.recv(timeout=scaled(5)) == "secret"


def test_http_and_websocket_on_one_port() -> None:
    with running("http_and_ws.py", "0", ready=r"http://127\.0\.0\.1:\d+/") as port:
        assert urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=scaled(5)).read() == b"ok\n"
        with pytest.raises(InvalidHandshake) as info:
            connect(f"ws://127.0.0.1:{port}/ws")
        assert info.value.status == 401
        with connect(f"ws://127.0.0.1:{port}/ws?token=s3cret") as ws:
            assert ws.recv(timeout=scaled(5)) == "welcome, authenticated client"
        with connect(f"ws://127.0.0.1:{port}/ws", additional_headers={"Authorization": "Bearer s3cret"}) as ws:
            ws.send(make_message("hi"))
            assert ws.recv(timeout=scaled(5)) == "welcome, authenticated client"


def test_polling_vs_websocket_measures_both() -> None:
    out = run("polling_vs_websocket.py", "--updates", "20")
    rows = {line.split("  ")[0]: line for line in out.splitlines() if line.startswith(("HTTP polling", "WebSocket"))}
    assert any(key.startswith("WebSocket, one connection") for key in rows)
    ratios = [float(m) for m in re.findall(r"([\d.]+)× the WebSocket's bytes", out)]
    assert len(ratios) == 3 and all(r > 1.5 for r in ratios)


def test_authorized_broker() -> None:
    def next_of(ws: Any, kind: str) -> dict[str, Any]:
        for _ in range(20):
            message: dict[str, Any] = json.loads(ws.recv(timeout=scaled(5)))
            if message["type"] == kind:
                return message
        raise AssertionError(f"no {kind} message")

    with running("authorized_broker.py", "0", ready=r"ws://127\.0\.0\.1:\d+/") as port:
        with pytest.raises(InvalidHandshake) as info:
            connect(f"ws://127.0.0.1:{port}/?token=guess")
        assert info.value.status == 401
        with (
            connect(f"ws://127.0.0.1:{port}/?token=t-alice") as alice,
            connect(f"ws://127.0.0.1:{port}/?token=t-bob") as bob,
        ):
            send_message(alice, "subscribe", {"channel": "team"})
            assert next_of(alice, "subscribed")["payload"]["you"]["user"] == "alice"
            send_message(bob, "subscribe", {"channel": "team"})  # not one of Bob's channels
            assert next_of(bob, "error")["payload"] == {"error": "forbidden", "type": "subscribe", "channel": "team"}
            send_message(bob, "chat", {"channel": "team", "text": "let me in", "user": "alice"})
            assert next_of(bob, "error")["payload"]["type"] == "chat"
            send_message(bob, "subscribe", {"channel": "news"})
            next_of(bob, "subscribed")
            send_message(bob, "notification", {"channel": "news", "message": "fake"})  # Bob may not notify
            assert next_of(bob, "error")["payload"]["type"] == "notification"
            send_message(bob, "chat", {"channel": "news", "text": "hi", "user": "alice"})
            assert next_of(bob, "chat")["payload"]["sender"]["user"] == "bob"  # stamped, not claimed
            send_message(alice, "notification", {"channel": "news", "message": "release at 5"})
            assert next_of(bob, "notification")["payload"]["message"] == "release at 5"
            # Nothing Bob tried reached "team": Alice got her own presence, then the answer to her ping.
            send_message(alice, "ping", {})
            seen = []
            for _ in range(20):
                seen.append(json.loads(alice.recv(timeout=scaled(5)))["type"])
                if seen[-1] == "pong":
                    break
            assert seen == ["presence", "pong"]
