"""The demo's wire view (rawws.demo.wire): frames reported to their own connection only, only when asked.

Real loopback connections to ``serve_demo``; rawws's client offers
permessage-deflate as browsers do, so compressed frames are covered.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from rawws import connect
from rawws.demo import serve_demo
from rawws.demo.wire import RECEIVED, SENT
from rawws.sync.connection import Connection
from tests.conftest import scaled, wait_until


@pytest.fixture
def demo_port() -> Iterator[int]:
    server = serve_demo("127.0.0.1", 0, ping_interval=None)
    server.start()
    try:
        yield server.port
    finally:
        server.shutdown(timeout=scaled(5))


def send(ws: Connection, type: str, payload: Any) -> None:
    ws.send(json.dumps({"type": type, "payload": payload, "timestamp": 0}, separators=(",", ":")))


def reports_until(ws: Connection, found: Any, seconds: float = 5) -> list[dict[str, Any]]:
    """Wire entries received until ``found(entries)`` holds; chat messages in between are skipped."""
    entries: list[dict[str, Any]] = []
    for _ in range(200):
        message = ws.recv(timeout=scaled(seconds))
        if isinstance(message, bytes):
            report = json.loads(message)
            assert report["type"] == "wire"
            entries += report["payload"]["frames"]
            if found(entries):
                return entries
    raise AssertionError(f"not found in {entries}")


def wire_on(ws: Connection) -> None:
    """Open the view and wait until it reports (the bytes already read when it opens are not shown)."""
    send(ws, "wire", {"on": True})
    send(ws, "ping", {"sent": 1})
    reports_until(ws, lambda entries: bool(entries))


def fields_of(entry: dict[str, Any]) -> dict[str, str]:
    return {name: value for name, value, _ in entry["fields"]}


def test_a_sent_message_is_shown_masked_and_decoded(demo_port: int) -> None:
    with connect(f"ws://127.0.0.1:{demo_port}/ws", ping_interval=None) as ws:
        assert ws.protocol.extensions  # permessage-deflate is in use
        assert ws.protocol.wire_tap is None
        send(ws, "subscribe", {"channel": "room:lobby"})
        wire_on(ws)
        text = "hello wire " * 10  # long enough to be compressed
        send(ws, "chat", {"channel": "room:lobby", "text": text, "user": "ann"})

        def has_chat(entries: list[dict[str, Any]]) -> bool:
            return any(e.get("dir") == SENT and text in (e.get("text") or "") for e in entries) and any(
                e.get("dir") == RECEIVED and text in (e.get("text") or "") for e in entries
            )

        entries = reports_until(ws, has_chat)
        sent = next(e for e in entries if e.get("dir") == SENT and text in (e.get("text") or ""))
        row = fields_of(sent)
        assert sent["masked"] and row["MASK"] == "1" and len(row["masking key"].split()) == 4
        assert sent["rsv1"] and row["RSV1"].startswith("1  compressed")
        assert row["payload (masked)"] != row["payload (unmasked)"]
        assert "mask=" in sent["line"] and sent["line"].startswith("TEXT fin=1 rsv=100")
        echoed = next(e for e in entries if e.get("dir") == RECEIVED and text in (e.get("text") or ""))
        assert not echoed["masked"] and "MASK" in fields_of(echoed) and fields_of(echoed)["MASK"] == "0"
        # The view's own reports (binary messages) are left out of it.
        assert all(e.get("opcode") != 2 for e in entries)


def test_only_the_connection_that_asks_gets_reports_and_off_means_off(demo_port: int) -> None:
    url = f"ws://127.0.0.1:{demo_port}/ws"
    with connect(url, ping_interval=None) as watcher, connect(url, ping_interval=None) as other:
        for ws in (watcher, other):
            send(ws, "subscribe", {"channel": "room:x"})
        wire_on(watcher)
        send(other, "chat", {"channel": "room:x", "text": "from other", "user": "bob"})
        entries = reports_until(watcher, lambda es: any("from other" in (e.get("text") or "") for e in es))
        assert all(e["dir"] == RECEIVED for e in entries if "from other" in (e.get("text") or ""))
        # The other connection got chat messages only, never a report.
        got = [other.recv(timeout=scaled(5)) for _ in range(3)]  # subscribed, presence x2 / chat
        assert all(isinstance(m, str) for m in got)
        send(watcher, "wire", {"on": False})
        send(watcher, "ping", {"sent": 1})
        pong = None
        for _ in range(20):
            message = watcher.recv(timeout=scaled(5))
            if isinstance(message, str) and json.loads(message)["type"] == "pong":
                pong = message
                break
        assert pong is not None
        send(other, "chat", {"channel": "room:x", "text": "after off", "user": "bob"})
        late_reports = []
        for _ in range(20):
            message = watcher.recv(timeout=scaled(5))
            if isinstance(message, bytes):  # one already on its way when the panel closed may still land
                late_reports.append(message)
            elif "after off" in message:
                break
        assert not any(b"after off" in report for report in late_reports)


def test_the_tap_is_off_unless_asked_and_costs_one_check() -> None:
    from rawws.protocol import SERVER, Protocol

    protocol = Protocol(SERVER)
    assert protocol.wire_tap is None
    seen: list[tuple[str, bytes]] = []
    protocol.wire_tap = lambda direction, data: seen.append((direction, data))
    hello = bytes.fromhex("818537fa213d7f9f4d5158")
    protocol.receive_data(hello)
    protocol.send_text("Hi")
    out = b"".join(protocol.data_to_send())
    assert seen == [("<", hello), (">", out)]


DEMO_PROCESS = """
import sys
from rawws.demo import serve_demo
server = serve_demo("127.0.0.1", 0, ping_interval=None)
print(server.port, flush=True)
server.start()
sys.stdin.read()  # the test closes stdin (or kills us) to stop the server
"""


def test_toggling_the_view_while_not_reading_keeps_one_thread_per_connection() -> None:
    """A client that reads nothing fills the way back with reports, then toggles the panel off and on 800 times.

    Measured from outside, in the demo server's own process (/proc/PID/status).
    Each switch-on used to start a new view thread while the old ones stayed
    blocked writing reports the client never read (about 150 threads here, 137 in a
    longer run); now one worker per connection is reused and never waits.
    """
    import socket
    import subprocess
    import sys
    import time

    from tests.hostile import HostilePeer

    def threads(pid: int) -> int:
        with open(f"/proc/{pid}/status") as status:
            return next(int(line.split()[1]) for line in status if line.startswith("Threads:"))

    process = subprocess.Popen([sys.executable, "-c", DEMO_PROCESS], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        assert process.stdout is not None
        port = int(process.stdout.readline())
        with HostilePeer(port) as peer:
            peer.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            peer.send_raw(
                f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
            )
            assert peer.read_http().status == 101
            time.sleep(scaled(0.3))
            before = threads(process.pid)
            on = peer.frame_bytes(1, b'{"type":"wire","payload":{"on":true}}')
            off = peer.frame_bytes(1, b'{"type":"wire","payload":{"on":false}}')
            subscribe = peer.frame_bytes(1, b'{"type":"subscribe","payload":{"channel":"t"}}')
            chat = peer.frame_bytes(1, b'{"type":"chat","payload":{"channel":"t","text":"' + b"z" * 1000 + b'"}}')
            peer.sock.settimeout(scaled(5))
            peer.send_raw(on + subscribe)
            peer.sock.setblocking(False)
            peak = before
            for step in range(250):
                try:  # first fill the way back with reports, then toggle
                    peer.sock.send(chat * 20 if step < 50 else (off + on + chat) * 4)
                except BlockingIOError:
                    pass  # the server stopped reading us: it may, it must not make threads for it
                time.sleep(0.01)
                peak = max(peak, threads(process.pid))
            # one view worker, one background flush, the broker's timers: never one thread per toggle
            assert peak <= before + 6, f"{before} threads before the toggles, {peak} during them"
    finally:
        process.kill()
        process.wait(10)


def test_reports_the_client_does_not_read_are_dropped_and_counted() -> None:
    """The view never waits for a slow client: past MAX_UNSENT_REPORTS it drops reports, then says how many."""
    import re
    import socket
    import time

    from rawws import serve
    from rawws.demo.wire import with_wire_view
    from tests.hostile import HostilePeer

    def quiet(ws: Any) -> None:
        for _ in ws:
            pass

    server = serve(with_wire_view(quiet), "127.0.0.1", 0, ping_interval=None, write_timeout=None)
    server.start()
    try:
        with HostilePeer(server.port) as peer:
            peer.handshake()
            assert wait_until(lambda: bool(server.connections), scaled(5))
            connection = next(iter(server.connections))
            connection.socket.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)  # a small pipe to fill
            peer.send_raw(peer.frame_bytes(1, b'{"type":"wire","payload":{"on":true}}'))
            tiny = peer.frame_bytes(1, b"x")
            for _ in range(6):
                peer.send_raw(tiny * 500)  # 3000 frames, a report entry each: megabytes of reports
                time.sleep(0.05)
            time.sleep(scaled(0.5))
            assert connection.buffered_amount < 2 * 1024 * 1024  # reports past the limit were not queued
            peer.sock.settimeout(scaled(1))
            received = b""
            poked = False
            deadline = time.monotonic() + scaled(10)
            while time.monotonic() < deadline and b"reports were dropped" not in received:
                try:
                    data = peer.sock.recv(65536)
                except TimeoutError:
                    data = b""
                    if not poked:  # everything queued is read: one more frame brings the next report
                        peer.send_raw(tiny)
                        poked = True
                received += data
            found = re.search(rb"the client did not keep up: (\d+) reports were dropped", received)
            assert found and int(found.group(1)) > 0, received[-300:]
    finally:
        server.shutdown(timeout=scaled(5))
