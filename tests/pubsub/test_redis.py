"""The Redis backend against a real redis-server: three nodes, Redis restarts, a node dies.

The fixtures start redis-server on a free loopback port. In CI (CI=true) a
missing redis-server or redis package fails these tests; elsewhere they skip.
"""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from rawws import connect, make_message, send_message
from tests.conftest import IN_CI, scaled, wait_until
from tests.multiclient import FirehoseTally, MultiClient

redis = pytest.importorskip("redis") if not IN_CI else __import__("redis")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class RedisServer:
    def __init__(self) -> None:
        executable = shutil.which("redis-server")
        if executable is None:
            if IN_CI:
                pytest.fail("redis-server is required in CI (apt-get install redis-server)")
            pytest.skip("redis-server is not installed")
        self.executable = executable
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="rawws-redis-")
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None
        self.start()

    def start(self) -> None:
        self.process = subprocess.Popen(
            [self.executable, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", self.dir],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        client = redis.Redis(port=self.port)
        assert wait_until(lambda: _ping(client), scaled(10)), "redis-server did not start"

    def stop(self) -> None:
        assert self.process is not None
        self.process.kill()
        self.process.wait(scaled(10))

    def subscribers(self, channel: str) -> int:
        client = redis.Redis(port=self.port)
        return int(dict(client.pubsub_numsub("rawws:" + channel)).get(("rawws:" + channel).encode(), 0))


def _ping(client: Any) -> bool:
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer()
    yield server
    server.stop()
    shutil.rmtree(server.dir, ignore_errors=True)


class Node:
    """One rawws pub/sub server process on the shared Redis."""

    def __init__(self, url: str) -> None:
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "rawws",
                "serve",
                "--broker",
                "--port",
                "0",
                "--redis",
                url,
                "--max-pending",
                "50000",
                "--ping-interval",  # no keepalive: see the broker_process fixture in test_pubsub.py
                "0",
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        match = re.search(r":(\d+)/", self.process.stdout.readline())
        assert match
        self.port = int(match.group(1))

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(scaled(10))


@pytest.fixture
def nodes(redis_server: RedisServer) -> Iterator[list[Node]]:
    started = [Node(redis_server.url) for _ in range(3)]
    yield started
    for node in started:
        if node.process.poll() is None:
            node.stop()


def test_three_nodes_hundred_clients_ten_publishers(redis_server: RedisServer, nodes: list[Node]) -> None:
    clients = MultiClient([n.port for n in nodes], 100)
    for index in range(100):
        clients.send_text(index, make_message("subscribe", {"channel": "firehose"}))
    tally = FirehoseTally(100)
    on_text, subscribed, seen, counts = tally.on_text, tally.subscribed, tally.seen, tally.counts

    assert clients.run(on_text, lambda: all(subscribed), timeout=scaled(30))
    # One Redis subscription per node.
    assert wait_until(lambda: redis_server.subscribers("firehose") == 3, scaled(10))
    per_publisher = 1000
    errors: list[BaseException] = []

    def publish(p: int) -> None:
        try:
            # Keepalive off: its pings would queue behind these thousand publishes.
            with connect(f"ws://127.0.0.1:{nodes[p % 3].port}/", max_queue=None, ping_interval=None) as ws:
                for seq in range(per_publisher):
                    send_message(ws, "publish", {"channel": "firehose", "message": [p, seq]})
                # Close only once the node has taken every publish: closing with them still
                # unread (a slow node, a close timeout) would lose them.
                acknowledged = 0
                while acknowledged < per_publisher:
                    if json.loads(ws.recv(timeout=scaled(60)))["type"] == "published":
                        acknowledged += 1
        except BaseException as exc:
            errors.append(exc)

    publishers = [threading.Thread(target=publish, args=(p,)) for p in range(10)]
    for t in publishers:
        t.start()
    total = 10 * per_publisher
    delivered = clients.run(on_text, lambda: min(counts) >= total, timeout=scaled(100))
    assert delivered, (sorted(counts)[:5], clients.close_codes(), errors)
    clients.run(on_text, lambda: False, timeout=scaled(0.5))  # anything extra would be a duplicate
    for t in publishers:
        t.join(scaled(30))
    assert not any(t.is_alive() for t in publishers)
    assert errors == []
    assert counts == [total] * 100  # every message exactly once ...
    for per_client in seen:
        assert all(per_client[p] == list(range(per_publisher)) for p in range(10))  # ... in publisher order
    clients.close()


def test_redis_restart_local_delivery_never_stops(redis_server: RedisServer, nodes: list[Node]) -> None:
    a, b = nodes[0], nodes[1]
    local = connect(f"ws://127.0.0.1:{a.port}/", max_queue=None, ping_interval=None)
    remote = connect(f"ws://127.0.0.1:{b.port}/", max_queue=None, ping_interval=None)
    for ws in (local, remote):
        send_message(ws, "subscribe", {"channel": "news"})
    assert wait_until(lambda: redis_server.subscribers("news") == 2, scaled(10))
    publisher = connect(f"ws://127.0.0.1:{a.port}/", max_queue=None, ping_interval=None)

    def publish(seq: int) -> int:
        send_message(publisher, "publish", {"channel": "news", "message": seq})
        while True:
            message = json.loads(publisher.recv(timeout=scaled(10)))
            if message["type"] == "published":
                notified: int = message["payload"]["notified"]
                return notified

    for seq in range(0, 50):
        assert publish(seq) == 1  # counted on this node only
    redis_server.stop()
    for seq in range(50, 100):
        assert publish(seq) == 1  # Redis is down: local delivery goes on
    redis_server.start()
    assert wait_until(lambda: redis_server.subscribers("news") == 2, scaled(20))  # both nodes re-subscribed
    for seq in range(100, 150):
        publish(seq)

    def drain(ws: Any, until: int) -> list[int]:
        got: list[int] = []
        end = time.monotonic() + scaled(20)
        while time.monotonic() < end:
            try:
                message = json.loads(ws.recv(timeout=1))
            except TimeoutError:
                if got and got[-1] == until:
                    break
                continue
            if message["type"] == "message":
                got.append(message["payload"]["message"])
        return got

    assert drain(local, 149) == list(range(150))  # every message, in order, Redis or not
    remote_got = drain(remote, 149)
    assert remote_got == sorted(set(remote_got))  # in order, no duplicates
    assert set(range(50)) <= set(remote_got)  # before the outage
    assert set(range(100, 150)) <= set(remote_got)  # after recovery
    assert not set(range(50, 100)) & set(remote_got)  # the documented policy: no replay of the outage
    for ws in (local, remote, publisher):
        ws.close()


def test_a_node_that_dies_leaves_the_others_working(redis_server: RedisServer, nodes: list[Node]) -> None:
    a, b, c = nodes
    subscribers = [connect(f"ws://127.0.0.1:{n.port}/", max_queue=None) for n in (a, b, c)]
    for ws in subscribers:
        send_message(ws, "subscribe", {"channel": "alerts"})
    assert wait_until(lambda: redis_server.subscribers("alerts") == 3, scaled(10))
    c.stop()
    assert wait_until(lambda: redis_server.subscribers("alerts") == 2, scaled(10))
    with connect(f"ws://127.0.0.1:{a.port}/") as publisher:
        send_message(publisher, "publish", {"channel": "alerts", "message": "still here"})
    for ws in subscribers[:2]:
        while True:
            message = json.loads(ws.recv(timeout=scaled(10)))
            if message["type"] == "message":
                assert message["payload"]["message"] == "still here"
                break
    for ws in subscribers[:2]:
        ws.close()
