"""Who may read and write in the pub/sub server, and who said what: over real sockets.

``authorize(client, action, channel)`` decides each action; the server stamps
the sender on everything it relays; ``notification`` is for server code;
counts go to members; what ``process_request`` learns reaches ``authorize``
through ``connection.context``; server code publishes with
``server.broker.publish``; ``presence`` counts WebSocket clients, in order.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from rawws import connect, send_message, serve_broker
from rawws.http11 import Request, Response
from rawws.pubsub import BrokerClient, BrokerServer
from rawws.pubsub.broker import MessageBroker
from rawws.sync.client import ClientConnection
from rawws.sync.pending import PendingConnection
from tests.conftest import scaled, wait_until

USERS = {"t-alice": ("alice", {"team", "news"}), "t-bob": ("bob", {"news"})}


def process_request(pending: PendingConnection, request: Request) -> Response | None:
    token = parse_qs(urlsplit(request.path).query).get("token", [""])[0]
    if token not in USERS:
        return pending.respond(401, "unknown token\n")
    pending.context["user"], pending.context["channels"] = USERS[token]
    return None


def authorize(client: BrokerClient, action: str, channel: str) -> bool:
    return channel in client.context["channels"] and (action != "notification" or client.user == "alice")


@pytest.fixture
def start() -> Iterator[Any]:
    servers: list[BrokerServer] = []

    def run(**options: Any) -> BrokerServer:
        options.setdefault("ping_interval", None)
        options.setdefault("close_timeout", scaled(3.0))
        server = serve_broker("127.0.0.1", 0, **options).start()
        servers.append(server)
        return server

    yield run
    for server in servers:
        server.shutdown(scaled(10))


def client(server: BrokerServer, query: str = "") -> ClientConnection:
    return connect(f"ws://127.0.0.1:{server.port}/{query}")


def receive_all(ws: ClientConnection, wait: float = 0.3) -> list[dict[str, Any]]:
    """Every message that arrives until none has for ``wait`` seconds (bounded: at most 100)."""
    out = []
    for _ in range(100):
        try:
            out.append(json.loads(ws.recv(timeout=scaled(wait))))
        except TimeoutError:
            break
    return out


def next_of(ws: ClientConnection, kind: str) -> dict[str, Any]:
    end = time.monotonic() + scaled(5.0)
    while True:
        message: dict[str, Any] = json.loads(ws.recv(timeout=max(0.01, end - time.monotonic())))
        if message["type"] == kind:
            return message


def test_authorize_refuses_each_action_and_nothing_is_delivered(start: Any) -> None:
    server = start(process_request=process_request, authorize=authorize)
    with client(server, "?token=t-alice") as alice, client(server, "?token=t-bob") as bob:
        send_message(alice, "subscribe", {"channel": "team"})
        assert next_of(alice, "subscribed")["payload"]["you"]["user"] == "alice"
        for action, payload in [
            ("subscribe", {}),
            ("publish", {"message": "leak"}),
            ("chat", {"text": "hi"}),
            ("typing", {"typing": True}),
            ("notification", {"message": "fake alert"}),
        ]:
            send_message(bob, action, {"channel": "team", **payload})
            error = next_of(bob, "error")["payload"]
            assert error == {"error": "forbidden", "type": action, "channel": "team"}
        assert all(m["type"] not in ("message", "chat", "typing", "notification") for m in receive_all(alice))
        assert server.broker.subscribers("team") == 1  # Bob never joined
        # Bob may not subscribe to "team", so he learns no count for it either.
        send_message(bob, "unsubscribe", {"channel": "team"})
        assert next_of(bob, "unsubscribed")["payload"] == {"channel": "team"}
        send_message(bob, "subscribe", {"channel": "news"})  # allowed
        next_of(bob, "subscribed")
        send_message(alice, "notification", {"channel": "news", "message": "deploy at 5"})  # authorize allows her
        notice = next_of(bob, "notification")["payload"]
        assert notice["message"] == "deploy at 5" and notice["sender"]["user"] == "alice"


def test_counts_are_only_revealed_to_members(start: Any) -> None:
    server = start(process_request=process_request, authorize=lambda c, a, ch: ch == "team" or a == "publish")
    with client(server, "?token=t-alice") as alice, client(server, "?token=t-bob") as outsider:
        send_message(alice, "subscribe", {"channel": "team"})
        next_of(alice, "subscribed")
        send_message(outsider, "publish", {"channel": "secret", "message": 1})  # may publish, not subscribe
        assert next_of(outsider, "published")["payload"] == {"channel": "secret"}  # no "notified"
        send_message(outsider, "unsubscribe", {"channel": "team"})  # not a member
        assert next_of(outsider, "unsubscribed")["payload"] == {"channel": "team"}
        send_message(outsider, "subscribe", {"channel": "team"})  # a member now: counts are his to see
        assert next_of(outsider, "subscribed")["payload"]["subscribers"] == 2
        send_message(outsider, "publish", {"channel": "team", "message": 1})
        assert next_of(outsider, "published")["payload"] == {"channel": "team", "notified": 2}
        presence = [m for m in receive_all(alice) if m["type"] == "presence"]
        assert presence[-1]["payload"] == {"channel": "team", "count": 2}


def test_the_server_stamps_the_sender_and_ignores_claimed_names(start: Any) -> None:
    server = start(process_request=process_request)
    with client(server, "?token=t-alice") as alice, client(server, "?token=t-bob") as bob:
        for ws in (alice, bob):
            send_message(ws, "subscribe", {"channel": "news"})
        alice_id = next_of(alice, "subscribed")["payload"]["you"]["id"]
        bob_me = next_of(bob, "subscribed")["payload"]["you"]
        assert bob_me["user"] == "bob" and bob_me["id"] != alice_id
        send_message(bob, "chat", {"channel": "news", "text": "I am Alice", "user": "alice"})
        assert next_of(alice, "chat")["payload"]["sender"] == bob_me
        send_message(bob, "typing", {"channel": "news", "user": "alice", "sender": {"id": alice_id}})
        assert next_of(alice, "typing")["payload"]["sender"] == bob_me
        send_message(bob, "publish", {"channel": "news", "message": "hi", "sender": {"id": alice_id}})
        assert next_of(alice, "message")["payload"]["sender"] == bob_me
        send_message(bob, "notification", {"channel": "news", "message": "system: reset your password"})
        assert next_of(bob, "error")["payload"]["error"] == "forbidden"  # without authorize: server code only
        assert server.notify("news", "real notice") == 2
        assert next_of(alice, "notification")["payload"]["sender"] is None


def test_unique_users_refuses_a_second_holder_of_a_name(start: Any) -> None:
    server = start(process_request=process_request, unique_users=True)
    with client(server, "?token=t-bob") as first, client(server, "?token=t-bob") as second:
        send_message(first, "subscribe", {"channel": "news"})
        next_of(first, "subscribed")
        send_message(second, "subscribe", {"channel": "news"})
        assert "taken" in next_of(second, "error")["payload"]["error"]
        send_message(second, "subscribe", {"channel": "other"})  # unique per channel
        next_of(second, "subscribed")
        send_message(first, "unsubscribe", {"channel": "news"})
        next_of(first, "unsubscribed")
        send_message(second, "subscribe", {"channel": "news"})  # free again
        assert next_of(second, "subscribed")["payload"]["subscribers"] == 1


def test_reserved_channel_names_are_refused(start: Any) -> None:
    server = start()
    with client(server) as ws:
        send_message(ws, "subscribe", {"channel": "\x00ws:news"})
        assert "reserved" in next_of(ws, "error")["payload"]["error"]


def test_server_code_publishes_with_broker_publish(start: Any, caplog: pytest.LogCaptureFixture) -> None:
    """Issue 13 item 3: ``server.broker.publish(channel, message)`` as in the MessageBroker example."""
    caplog.set_level(logging.INFO)
    server = start()
    local: list[Any] = []
    server.broker.subscribe("room2", local.append)
    with client(server) as ws:
        send_message(ws, "subscribe", {"channel": "room2"})
        next_of(ws, "subscribed")
        send_message(ws, "chat", {"channel": "room2", "text": "from a client"})
        next_of(ws, "chat")
        assert server.broker.publish("room2", {"from": "code"}) == 2  # the local subscriber and the client
        envelope = next_of(ws, "message")["payload"]
        assert envelope == {"channel": "room2", "message": {"from": "code"}, "sender": None}
    assert local == [{"from": "code"}]  # as published; never the server's own traffic (presence, chat)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_presence_counts_connected_clients_only(start: Any) -> None:
    """Issue 13 item 5: a server-side subscriber is not a person in the room."""
    server = start()
    server.broker.subscribe("room", lambda message: None)
    with client(server) as ws:
        send_message(ws, "subscribe", {"channel": "room"})
        assert next_of(ws, "subscribed")["payload"]["subscribers"] == 1
        assert next_of(ws, "presence")["payload"] == {"channel": "room", "count": 1}


class SlowFirstCount(MessageBroker):
    """A broker whose first member count of "room" is slow: the race between two joins, made certain."""

    def __init__(self) -> None:
        super().__init__()
        self.second_announced = threading.Event()
        self.slow = True

    def subscribers(self, channel: str) -> int:
        count = super().subscribers(channel)
        if channel.endswith("room") and self.slow:
            self.slow = False
            # Without ordering, the second join announces 2 meanwhile, then this one announces 1.
            self.second_announced.wait(scaled(1.0))
        return count

    def publish(self, channel: str, message: Any) -> int:
        if channel.endswith("room") and isinstance(message, (list, tuple)) and '"count":2' in message[0]:
            self.second_announced.set()
        return super().publish(channel, message)


def test_the_last_presence_is_the_current_count(start: Any) -> None:
    broker = SlowFirstCount()
    server = start(broker=broker)
    with client(server) as a, client(server) as b:
        joins = [threading.Thread(target=send_message, args=(ws, "subscribe", {"channel": "room"})) for ws in (a, b)]
        joins[0].start()
        assert wait_until(lambda: not broker.slow)  # the first join is counting
        joins[1].start()
        for thread in joins:
            thread.join(scaled(5))
        next_of(b, "subscribed")  # both joins are done
        counts = [m["payload"]["count"] for m in receive_all(a) if m["type"] == "presence"]
        assert counts[-1] == 2, counts
