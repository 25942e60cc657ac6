"""The demo's names and hosts, and ``serve``'s ``--allowed-host`` / ``--origin``, over real loopback sockets.

Names: a name that prints the same as another (zero-width or bidirectional
characters, a byte order mark, a line separator) or is too long is refused
with 400; names are unique per room NFKC-normalised and case-folded. Hosts:
the demo bound to every interface prints a URL it answers and accepts the
wildcard name; ``serve --allowed-host`` adds to the server's own names as the
demo's flag does, and ``serve --origin same-origin`` admits clients without Origin.
"""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import pytest

from rawws import InvalidHandshake, connect, send_message
from rawws.__main__ import url_host
from rawws.demo import MAX_NAME_LENGTH, check_name, demo_hosts, serve_demo
from rawws.pubsub.server import BrokerServer, name_key
from rawws.sync.client import ClientConnection
from tests.conftest import scaled


@pytest.fixture
def demo() -> Iterator[BrokerServer]:
    server = serve_demo("127.0.0.1", 0, ping_interval=None, close_timeout=scaled(3)).start()
    yield server
    server.shutdown(scaled(10))


def next_of(ws: ClientConnection, kind: str) -> dict[str, Any]:
    end = time.monotonic() + scaled(5.0)
    while True:
        message: dict[str, Any] = json.loads(ws.recv(timeout=max(0.01, end - time.monotonic())))
        if message["type"] in (kind, "error"):
            return message


def join(server: BrokerServer, name: str) -> ClientConnection:
    return connect(f"ws://127.0.0.1:{server.port}/ws?name={quote(name)}")


@pytest.mark.parametrize(
    "name",
    ["a\u200blice", "\ufeffalice", "\u202eecila", "x\u0085y", "ali\u2028ce", "a\u2066lice"]
    + ["a" * (MAX_NAME_LENGTH + 1)],
    ids=["zero-width", "bom", "rlo", "nel", "line-separator", "isolate", "too-long"],
)
def test_names_that_hide_characters_or_are_too_long_are_refused(demo: BrokerServer, name: str) -> None:
    with pytest.raises(InvalidHandshake) as refused:
        join(demo, name)
    assert refused.value.status == 400
    assert b"at most" in refused.value.body or b"U+" in refused.value.body, refused.value.body


def test_names_are_unique_nfkc_and_case_folded(demo: BrokerServer) -> None:
    with join(demo, "alice") as alice:
        send_message(alice, "subscribe", {"channel": "lobby"})
        assert next_of(alice, "subscribed")["type"] == "subscribed"
        for same in ("ALICE", "\uff41\uff4c\uff49\uff43\uff45", " Alice "):  # upper case, full-width, spaces
            with join(demo, same) as other:
                send_message(other, "subscribe", {"channel": "lobby"})
                answer = next_of(other, "subscribed")
                assert answer["type"] == "error" and "taken" in answer["payload"]["error"], same
        with join(demo, "bob") as bob:
            send_message(bob, "subscribe", {"channel": "lobby"})
            assert next_of(bob, "subscribed")["type"] == "subscribed"
    # The documented limit: look-alikes from another script (Cyrillic a) are another name.
    assert check_name("\u0430lice") == "\u0430lice" and name_key("\u0430lice") != name_key("alice")


def http_get(port: int, host: str) -> int:
    with socket.create_connection(("127.0.0.1", port), timeout=scaled(5)) as sock:
        sock.sendall(f"GET / HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
        return int(sock.recv(65536).split()[1])


def test_the_wildcard_bind_name_is_answered_and_a_reachable_url_printed() -> None:
    assert url_host("0.0.0.0") == "127.0.0.1" and url_host("::") == "[::1]" and url_host("") == "127.0.0.1"
    assert url_host("127.0.0.1") == "127.0.0.1" and url_host("::1") == "[::1]"
    hosts = demo_hosts("0.0.0.0")
    assert "0.0.0.0" in hosts and "127.0.0.1" in hosts
    # The demo's rules for a 0.0.0.0 bind, served on loopback (tests never listen on every interface).
    server = serve_demo("127.0.0.1", 0, allowed_hosts=hosts, ping_interval=None).start()
    try:
        assert http_get(server.port, f"0.0.0.0:{server.port}") == 200
        assert http_get(server.port, f"127.0.0.1:{server.port}") == 200
        assert http_get(server.port, f"evil.example:{server.port}") == 403
    finally:
        server.shutdown(scaled(10))


def upgrade_status(port: int, host: str) -> int:
    """The status answered to an opening handshake with this ``Host`` (and no Origin)."""
    request = (
        f"GET / HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", port), timeout=scaled(5)) as sock:
        sock.sendall(request.encode())
        return int(sock.recv(65536).split()[1])


def start_cli(*arguments: str) -> tuple[subprocess.Popen[str], str]:
    process = subprocess.Popen(
        [sys.executable, "-m", "rawws", "serve", "--port", "0", "--ping-interval", "0", *arguments],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    match = re.search(r"ws://\S+/", line)
    assert match, line + (process.stderr.read() if process.stderr and process.poll() is not None else "")
    return process, match.group(0)


@pytest.mark.parametrize("kind", ["--echo", "--broker"])
def test_serve_prints_a_url_it_accepts_with_allowed_host_and_same_origin(kind: str) -> None:
    process, url = start_cli(kind, "--allowed-host", "chat.example", "--origin", "same-origin")
    try:
        port = int(url.rsplit(":", 1)[1].strip("/"))
        with connect(url, open_timeout=scaled(5)) as ws:  # no Origin, as `python -m rawws connect` sends
            ws.ping()
        assert upgrade_status(port, f"chat.example:{port}") == 101  # the added name
        assert upgrade_status(port, f"evil.example:{port}") == 403
        with connect(f"ws://localhost:{port}/", open_timeout=scaled(5)) as ws:
            ws.ping()  # the server's own names stay
        with pytest.raises(InvalidHandshake) as refused:
            connect(url, origin="http://evil.example", open_timeout=scaled(5))
        assert refused.value.status == 403
    finally:
        process.terminate()
        process.wait(scaled(10))
        for stream in (process.stdout, process.stderr):
            if stream is not None:
                stream.close()
