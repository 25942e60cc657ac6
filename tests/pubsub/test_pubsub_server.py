"""The pub/sub server over real sockets: the JSON protocol, bad input, fan-out, slow consumers."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from rawws import Dispatcher, PubSubClient, connect, make_message, send_message, serve_broker
from rawws.sync.client import ClientConnection
from rawws.sync.server import Server
from tests.conftest import scaled, wait_until
from tests.hostile import HostilePeer
from tests.multiclient import FirehoseTally, MultiClient


@pytest.fixture
def broker_server() -> Iterator[Any]:
    servers: list[Server] = []

    def start(**options: Any) -> Server:
        options.setdefault("close_timeout", scaled(3.0))
        options.setdefault("ping_interval", None)  # keepalive off: these tests are not about it
        server = serve_broker("127.0.0.1", options.pop("port", 0), **options).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.shutdown(scaled(10))


class _AnyId:
    """Equal to any server-assigned connection id ("c17")."""

    def __eq__(self, other: object) -> bool:
        return isinstance(other, str) and re.fullmatch(r"c\d+", other) is not None

    __hash__ = None  # type: ignore[assignment]


ANY_ID = _AnyId()


def client(server: Server, **options: Any) -> ClientConnection:
    return connect(f"ws://127.0.0.1:{server.port}/", **options)


def next_of(ws: ClientConnection, kind: str, timeout: float | None = None) -> dict[str, Any]:
    """The next message of type ``kind`` (skipping presence updates and others), within ``timeout`` (``scaled(5)``)."""
    end = time.monotonic() + (scaled(5.0) if timeout is None else timeout)
    while True:
        message = json.loads(ws.recv(timeout=max(0.01, end - time.monotonic())))
        assert set(message) == {"type", "payload", "timestamp"}
        assert isinstance(message["timestamp"], int) and message["timestamp"] > 1_600_000_000_000
        if message["type"] == kind:
            return message


def test_subscribe_publish_and_count(broker_server: Any) -> None:
    server = broker_server()
    a, b, publisher = client(server), client(server), client(server)
    for ws in (a, b):
        send_message(ws, "subscribe", {"channel": "news"})
        assert next_of(ws, "subscribed")["payload"]["channel"] == "news"
    send_message(publisher, "publish", {"channel": "news", "message": {"headline": "hi"}})
    assert next_of(publisher, "published")["payload"] == {"channel": "news", "notified": 2}
    for ws in (a, b):
        payload = next_of(ws, "message")["payload"]
        assert payload == {"channel": "news", "message": {"headline": "hi"}, "sender": {"id": ANY_ID, "user": None}}
    send_message(b, "unsubscribe", {"channel": "news"})
    assert next_of(b, "unsubscribed")["payload"]["subscribers"] == 1
    send_message(publisher, "publish", {"channel": "news", "message": 2})
    assert next_of(publisher, "published")["payload"]["notified"] == 1
    a.close()
    assert wait_until(lambda: server.broker.subscribers("news") == 0)  # subscriptions end with the connection
    for ws in (b, publisher):
        ws.close()


def test_chat_typing_notification_presence_and_ping(broker_server: Any) -> None:
    server = broker_server()
    alice, bob = client(server), client(server)
    send_message(alice, "subscribe", {"channel": "room"})
    next_of(alice, "subscribed")
    # Her own arrival. Read before Bob joins: two joins at once are announced from two
    # handler threads, in no fixed order between them.
    assert next_of(alice, "presence")["payload"] == {"channel": "room", "count": 1}
    send_message(bob, "subscribe", {"channel": "room"})
    assert next_of(bob, "subscribed")["payload"]["subscribers"] == 2
    assert next_of(alice, "presence")["payload"] == {"channel": "room", "count": 2}  # Bob's
    send_message(alice, "chat", {"channel": "room", "text": "Hi!", "user": "Bob"})  # a claimed name is ignored
    alice_id = next_of(alice, "chat")["payload"]["sender"]["id"]
    assert next_of(bob, "chat")["payload"] == {
        "channel": "room",
        "text": "Hi!",
        "sender": {"id": alice_id, "user": None},
    }
    send_message(alice, "typing", {"channel": "room", "user": "Bob"})
    assert next_of(bob, "typing")["payload"] == {
        "channel": "room",
        "typing": True,
        "sender": {"id": alice_id, "user": None},
    }
    send_message(alice, "ping", {"n": 1})
    assert next_of(alice, "pong")["payload"] == {"n": 1}  # and the typing event did not come back to Alice
    send_message(bob, "notification", {"channel": "room", "message": "maintenance at 5"})  # server code only
    assert next_of(bob, "error")["payload"] == {"error": "forbidden", "type": "notification", "channel": "room"}
    assert server.notify("room", "maintenance at 5") == 2
    assert next_of(alice, "notification")["payload"] == {
        "channel": "room",
        "message": "maintenance at 5",
        "sender": None,
    }
    bob.close()
    assert next_of(alice, "presence")["payload"] == {"channel": "room", "count": 1}
    alice.close()


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "JSON object"),
        ('{"payload": {}}', '"type"'),
        ('{"type": "dance", "payload": {}}', "unknown message type 'dance'"),
        ('{"type": "subscribe", "payload": {}}', "payload.channel"),
        ('{"type": "subscribe", "payload": {"channel": 7}}', "payload.channel"),
        ('{"type": "publish", "payload": "news"}', "object payload"),
        ('{"type": "publish", "payload": {"channel": "c"}}', "payload.message"),
        ('{"type": "chat", "payload": {"channel": "c", "text": 5}}', "payload.text"),
        ('{"type": "publish", "payload": {"channel": "c", "message": "' + "x" * 70000 + '"}}', "too large"),
    ],
)
def test_bad_input_gets_an_error_and_the_connection_stays_open(broker_server: Any, raw: str, fragment: str) -> None:
    server = broker_server()
    with client(server) as ws, client(server) as other:
        send_message(other, "subscribe", {"channel": "c"})
        next_of(other, "subscribed")
        ws.send(raw)
        error = next_of(ws, "error")
        assert fragment in error["payload"]["error"]
        send_message(ws, "ping", "still there?")
        assert next_of(ws, "pong")["payload"] == "still there?"
        send_message(other, "ping", None)
        assert next_of(other, "pong")["payload"] is None  # the other client was never disturbed


def test_binary_frames_get_an_error(broker_server: Any) -> None:
    server = broker_server()
    with client(server) as ws:
        ws.send(b"\x00\x01")
        assert "binary" in next_of(ws, "error")["payload"]["error"]


@pytest.fixture
def broker_process() -> Iterator[int]:
    """``python -m rawws serve --broker`` in its own process (its own GIL, like a real deployment)."""
    command = [sys.executable, "-m", "rawws", "serve", "--broker", "--port", "0", "--max-pending", "20000"]
    # --ping-interval 0: no keepalive. A publisher's pong waits behind its own backlog of
    # publishes, which a busy machine can take longer than any ping timeout to work through.
    process = subprocess.Popen(
        [*command, "--ping-interval", "0"],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    match = re.search(r":(\d+)/", process.stdout.readline())
    assert match
    yield int(match.group(1))
    process.terminate()
    process.wait(scaled(10))


def test_hundred_subscribers_ten_publishers(broker_process: int) -> None:
    port = broker_process
    subscribers = MultiClient(port, 100)
    for index in range(100):
        subscribers.send_text(index, make_message("subscribe", {"channel": "firehose"}))
    per_publisher = 1000
    tally = FirehoseTally(100)
    on_text, subscribed, seen, counts = tally.on_text, tally.subscribed, tally.seen, tally.counts

    assert subscribers.run(on_text, lambda: all(subscribed), timeout=scaled(30))
    errors: list[BaseException] = []

    def publish(p: int) -> None:
        try:
            # Keepalive off, as on the server: its pings would queue behind these thousand publishes.
            with connect(f"ws://127.0.0.1:{port}/", max_queue=None, ping_interval=None) as ws:
                for seq in range(per_publisher):
                    send_message(ws, "publish", {"channel": "firehose", "message": [p, seq]})
                for _ in range(per_publisher):
                    assert next_of(ws, "published", timeout=scaled(60))["payload"]["notified"] == 100
        except BaseException as exc:
            errors.append(exc)

    publishers = [threading.Thread(target=publish, args=(p,)) for p in range(10)]
    for t in publishers:
        t.start()
    delivered = subscribers.run(on_text, lambda: min(counts) >= 10 * per_publisher, timeout=scaled(90))
    assert delivered, (sorted(counts)[:5], subscribers.close_codes(), errors)
    for t in publishers:
        t.join(scaled(60))
    assert not any(t.is_alive() for t in publishers)
    assert errors == []
    for per_subscriber in seen:
        assert sorted(per_subscriber) == list(range(10))
        # Every message once, each publisher's in order.
        assert all(per_subscriber[p] == list(range(per_publisher)) for p in range(10))
    subscribers.close()


def test_stalled_subscriber_is_closed_with_1013_and_others_get_everything(broker_server: Any) -> None:
    # The stalled client reads nothing until the end: the server must wait for it that long.
    server = broker_server(max_pending=200, close_timeout=scaled(20), write_timeout=None)
    stalled = HostilePeer(server.port)
    stalled.handshake()
    stalled.send_frame(1, make_message("subscribe", {"channel": "c"}).encode())
    assert wait_until(lambda: server.broker.subscribers("c") == 1)  # subscribed before anything is published
    healthy = client(server, max_queue=None)
    send_message(healthy, "subscribe", {"channel": "c"})
    next_of(healthy, "subscribed")
    big = "x" * 10_000
    with client(server, max_queue=None) as publisher:
        for i in range(3000):  # 30 MB: far beyond what kernel buffers hold for the stalled client
            send_message(publisher, "publish", {"channel": "c", "message": [i, big]})
    # The healthy subscriber still gets every message, in order.
    got = [next_of(healthy, "message", timeout=scaled(30))["payload"]["message"][0] for _ in range(3000)]
    assert got == list(range(3000))
    assert wait_until(lambda: server.broker.subscribers("c") == 1, scaled(10))  # the stalled one was dropped
    # Now read what the stalled client was sent: it ends with a close frame carrying 1013.
    code, reason = stalled.expect_close(timeout=scaled(20))
    assert code == 1013 and b"too slow" in reason
    stalled.close()
    healthy.close()


def test_drop_oldest_policy_keeps_the_connection(broker_server: Any) -> None:
    # The slow client reads nothing while 20 MB are published: no write timeout may drop it meanwhile.
    server = broker_server(max_pending=50, overflow="drop_oldest", write_timeout=None)
    slow = HostilePeer(server.port)
    slow.handshake()
    slow.send_frame(1, make_message("subscribe", {"channel": "c"}).encode())
    assert wait_until(lambda: server.broker.subscribers("c") == 1)  # subscribed before anything is published
    with client(server, max_queue=None) as publisher:
        for i in range(2000):
            send_message(publisher, "publish", {"channel": "c", "message": [i, "y" * 10_000]})
        for _ in range(2000):
            next_of(publisher, "published", timeout=scaled(30))
    assert server.broker.subscribers("c") == 1  # still subscribed: messages were dropped instead
    seen = []
    while True:
        frame = slow.read_frame(timeout=scaled(5))
        message = json.loads(frame.payload)
        if message["type"] == "message":
            seen.append(message["payload"]["message"][0])
            if seen[-1] == 1999:
                break
    assert len(seen) < 2000 and seen == sorted(seen)  # some dropped, the rest in order, the newest kept
    slow.close()


def test_pubsub_client_resubscribes_after_reconnect(broker_server: Any) -> None:
    server = broker_server()
    port = server.port
    received: list[Any] = []
    opened = threading.Semaphore(0)
    pubsub = PubSubClient(
        f"ws://127.0.0.1:{port}/", on_open=lambda c: opened.release(), initial_delay=0.1, jitter=0.0, ping_interval=None
    )
    pubsub.subscribe("news", lambda message, envelope: received.append(message))
    with pubsub:
        assert opened.acquire(timeout=scaled(5))
        assert wait_until(lambda: server.broker.subscribers("news") == 1)
        pubsub.publish("news", "before")
        assert wait_until(lambda: received == ["before"])
        server.shutdown(scaled(5))  # the server goes away ...
        server = broker_server(port=port)  # ... and comes back on the same port
        assert opened.acquire(timeout=scaled(10))
        assert wait_until(lambda: server.broker.subscribers("news") == 1)  # re-subscribed by itself
        pubsub.publish("news", "after")
        assert wait_until(lambda: received == ["before", "after"])


def test_dispatcher_routes_by_type() -> None:
    seen: list[str] = []
    dispatcher = Dispatcher(default=lambda m: seen.append("default:" + m["type"]))

    @dispatcher.on("chat")
    def chat(message: dict[str, Any]) -> None:
        seen.append("chat:" + message["payload"]["text"])

    dispatcher.dispatch(make_message("chat", {"text": "Hi"}))
    dispatcher.dispatch(make_message("notification", {"message": "New update"}))
    dispatcher.dispatch(make_message("typing", {"user": "Alice"}))
    assert seen == ["chat:Hi", "default:notification", "default:typing"]


def test_pubsub_client_methods_say_what_they_do() -> None:
    """Issue 13 item 11: ``help(PubSubClient)`` documents every public method."""
    for name in ("start", "wait_open", "close", "subscribe", "unsubscribe", "publish", "send"):
        doc = getattr(PubSubClient, name).__doc__
        assert doc and len(doc.split()) >= 5, name


def test_the_readme_broker_example_runs(capsys: pytest.CaptureFixture[str]) -> None:
    """The README's MessageBroker block defines everything it uses, and does what its comments say."""
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = readme[readme.index("### `MessageBroker`") :]
    block = section[section.index("```python\n") + len("```python\n") : section.index("```\n", 10)]
    assert 'broker.unsubscribe("news", callback)' in block
    namespace: dict[str, Any] = {}
    exec(compile(block, "README.md", "exec"), namespace)
    assert namespace["broker"].subscribers("news") == 0
    assert capsys.readouterr().out == "got {'headline': 'rawws ships'}\n"
