"""The threaded Connection over real loopback sockets: messages, fragments, limits, pings, keepalive, threads."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from rawws import ConnectionClosedError
from rawws.sync.client import connect
from rawws.sync.server import Server
from tests.conftest import echo, scaled, wait_until
from tests.hostile import HostilePeer

StartServer = Callable[..., Server]


def url(server: Server, path: str = "/") -> str:
    return f"ws://127.0.0.1:{server.port}{path}"


def test_echo_text_binary_and_attributes(start_server: StartServer) -> None:
    server = start_server(echo)
    with connect(url(server, "/chat?room=1")) as ws:
        ws.send("Hello, server!")
        assert ws.recv(timeout=scaled(5)) == "Hello, server!"
        ws.send(b"\x00\xff")
        assert ws.recv(timeout=scaled(5)) == b"\x00\xff"
        assert ws.request.path == "/chat?room=1"
        assert ws.response.status == 101
        assert ws.remote_address[1] == server.port
        assert ws.local_address[0] == "127.0.0.1"
        assert ws.close_code is None
    assert ws.close_code == 1000


def test_iteration_ends_on_normal_close(start_server: StartServer) -> None:
    def handler(ws: Any) -> None:
        for i in range(3):
            ws.send(str(i))
        ws.close(1000, "done")

    server = start_server(handler)
    with connect(url(server)) as ws:
        assert list(ws) == ["0", "1", "2"]
        assert (ws.close_code, ws.close_reason) == (1000, "done")


def test_close_codes_and_reasons_reach_the_other_side(start_server: StartServer) -> None:
    seen: list[tuple[int | None, str | None]] = []

    def handler(ws: Any) -> None:
        try:
            ws.recv()
        except ConnectionClosedError as exc:
            seen.append((exc.code, exc.reason))

    server = start_server(handler)
    ws = connect(url(server))
    ws.close(4000, "custom reason")
    assert wait_until(lambda: bool(seen))
    assert seen == [(4000, "custom reason")]
    with pytest.raises(ConnectionClosedError) as info:
        ws.send("after close")
    assert info.value.closed_by == "local"


def test_fragmented_send_and_streaming_receive(start_server: StartServer) -> None:
    def handler(ws: Any) -> None:
        pieces = list(ws.recv_streaming())
        ws.send(repr(pieces))
        ws.send(iter([b"ab", b"cd"]))

    server = start_server(handler)
    with connect(url(server)) as ws:
        ws.send(["Hel", "lo"])
        assert ws.recv(timeout=scaled(5)) == "['Hel', 'lo']"
        assert ws.recv(timeout=scaled(5)) == b"abcd"


def test_large_messages(start_server: StartServer) -> None:
    server = start_server(echo, max_size=32 * 2**20)
    payload = bytes(range(256)) * (4 * 2**20 // 256)
    with connect(url(server), max_size=32 * 2**20) as ws:
        ws.send(payload)
        assert ws.recv(timeout=scaled(20)) == payload


def test_too_big_message_closes_with_1009(start_server: StartServer) -> None:
    server = start_server(echo, max_size=1000)
    with connect(url(server)) as ws:
        with pytest.raises(ConnectionClosedError) as info:
            # The server's 1009 may arrive, and be read by the reactor, before send() returns.
            ws.send(bytes(1001))
            ws.recv(timeout=scaled(5))
        assert info.value.code == 1009


def test_recv_timeout_leaves_the_connection_usable(start_server: StartServer) -> None:
    server = start_server(echo)
    with connect(url(server)) as ws:
        with pytest.raises(TimeoutError):
            ws.recv(timeout=0.1)
        ws.send("still fine")
        assert ws.recv(timeout=scaled(5)) == "still fine"


def test_ping_returns_a_waiter_with_latency(start_server: StartServer) -> None:
    server = start_server(echo)
    with connect(url(server)) as ws:
        waiter = ws.ping(b"probe")
        assert waiter.wait(scaled(5))
        assert waiter.latency is not None and 0 <= waiter.latency < 5


def test_pings_answered_while_the_handler_is_busy(start_server: StartServer) -> None:
    release = threading.Event()

    def handler(ws: Any) -> None:
        release.wait(scaled(10))  # busy: not calling recv
        echo(ws)

    server = start_server(handler)
    with connect(url(server)) as ws:
        ws.send("queued while busy")
        assert ws.ping().wait(scaled(5))  # the reactor answered for the busy handler
        release.set()
        assert ws.recv(timeout=scaled(5)) == "queued while busy"


def test_max_queue_stops_reading(start_server: StartServer) -> None:
    release = threading.Event()
    received: list[Any] = []

    def handler(ws: Any) -> None:
        release.wait(scaled(10))
        for message in ws:
            received.append(message)

    server = start_server(handler, max_queue=4, max_size=2**20)
    with connect(url(server)) as ws:
        sender_done = threading.Event()
        chunk = os.urandom(256 * 1024)  # incompressible: compression must not shrink the flood

        def flood() -> None:
            try:
                for _ in range(64):  # 16 MiB: far more than socket buffers hold
                    ws.send(chunk)
            finally:
                sender_done.set()

        threading.Thread(target=flood, daemon=True).start()
        # The server stops reading after 4 queued messages, so the sender must block.
        assert not sender_done.wait(1.5)
        release.set()
        assert sender_done.wait(scaled(20))
        assert wait_until(lambda: len(received) == 64, scaled(20))


def test_keepalive_closes_a_silent_peer(start_server: StartServer) -> None:
    closed: list[float] = []

    def handler(ws: Any) -> None:
        start = time.monotonic()
        try:
            ws.recv()
        except ConnectionClosedError as exc:
            assert exc.sent_code == 1011
            closed.append(time.monotonic() - start)

    server = start_server(handler, ping_interval=0.3, ping_timeout=0.3)
    with HostilePeer(server.port) as peer:
        peer.handshake()  # ... and never answers the pings
        assert wait_until(lambda: bool(closed), scaled(5))
    assert closed[0] < 0.3 + 0.3 + 0.5  # interval + timeout, and not much later


def test_keepalive_keeps_a_live_peer(start_server: StartServer) -> None:
    interval, timeout = 0.1, scaled(0.5)  # the timeout: time for a busy machine to answer
    server = start_server(echo, ping_interval=interval, ping_timeout=timeout)
    with connect(url(server), ping_interval=None) as ws:
        # Several ping rounds, answered by the client's reader; a peer that did not answer
        # would have been closed by now (after interval + timeout).
        time.sleep(2 * (interval + timeout))
        ws.send("still open")
        assert ws.recv(timeout=scaled(5)) == "still open"


def test_ten_threads_sending_on_one_connection(start_server: StartServer) -> None:
    server = start_server(echo, max_queue=None)
    per_thread = 200
    with connect(url(server), max_queue=None) as ws:

        def sender(t: int) -> None:
            for i in range(per_thread):
                ws.send(f"{t}-{i}-" + "x" * (i % 50) * 100)

        threads = [threading.Thread(target=sender, args=(t,)) for t in range(10)]
        for t in threads:
            t.start()
        received = [ws.recv(timeout=scaled(10)) for _ in range(10 * per_thread)]
        for t in threads:
            t.join()
    by_thread: dict[str, list[int]] = {}
    for message in received:
        assert isinstance(message, str)
        t, i, padding = message.split("-")
        assert padding == "x" * (int(i) % 50) * 100  # intact: frames never interleaved
        by_thread.setdefault(t, []).append(int(i))
    assert all(sequence == list(range(per_thread)) for sequence in by_thread.values())
