"""The pub/sub WebSocket server: the JSON message protocol over one :class:`MessageBroker`.

Protocol (every message is ``{"type": ..., "payload": ..., "timestamp": <ms>}``):

client → server

- ``subscribe`` ``{"channel": "news"}`` → ``subscribed`` ``{"channel", "subscribers"}``
- ``unsubscribe`` ``{"channel": "news"}`` → ``unsubscribed`` ``{"channel", "subscribers"}``
- ``publish`` ``{"channel": "news", "message": <any JSON>}`` → every subscriber gets
  ``message`` ``{"channel", "message"}``; the publisher gets ``published`` ``{"channel", "notified"}``
- ``chat`` ``{"channel", "text", "user"?}`` → ``chat`` to every subscriber of the channel
- ``notification`` ``{"channel", "message"}`` → ``notification`` to every subscriber
- ``typing`` ``{"channel", "user", "typing"?: bool}`` → ``typing`` to the *other* subscribers
- ``ping`` (any payload) → ``pong`` with the same payload

server → client, besides the answers above

- ``presence`` ``{"channel", "count"}`` to a channel's subscribers when someone joins or leaves
- ``error`` ``{"error": "what was wrong", "type": <the offending type, if known>}``

Bad input never closes the connection: it gets an ``error``. A client that
does not read fast enough has its messages queued up to ``max_pending``; past
that it is closed with 1013 (Try Again Later), or, with
``overflow="drop_oldest"``, its oldest queued messages are dropped. Publishers
never wait for any subscriber.
"""

from __future__ import annotations

import itertools
import logging
import threading
from collections import deque
from collections.abc import Callable
from typing import Any

from .broker import MessageBroker, SubscriberGone
from .connection import Connection
from .exceptions import ConnectionClosed
from .frames import CloseCode
from .messages import MessageError, make_message, parse_message
from .server import Server, serve

__all__ = ["serve_broker", "broker_handler", "CLIENT_TYPES"]

logger = logging.getLogger("rawws.pubsub")

CLIENT_TYPES = ("subscribe", "unsubscribe", "publish", "chat", "notification", "typing", "ping")
HIGH_WATER = 256 * 1024
"""Bytes handed to a connection before the rest waits in its queue (see send_nowait)."""
MAX_CHANNEL_LENGTH = 200

_ids = itertools.count(1)


class _Subscriber:
    """One client: its channels and its bounded, ordered outgoing queue."""

    def __init__(self, ws: Connection, broker: MessageBroker, max_pending: int, overflow: str) -> None:
        self.ws = ws
        self.broker = broker
        self.id = f"c{next(_ids)}"
        self.channels: set[str] = set()
        self.max_pending = max_pending
        self.overflow = overflow
        self.dropped = 0
        self._pending: deque[str] = deque()
        self._lock = threading.Lock()
        self._closing = False
        ws.on_drain = self.pump

    # Broker callback: runs in the publisher's thread, must never block on this client.
    def deliver(self, item: tuple[str, str | None]) -> None:
        text, exclude = item
        if exclude == self.id:
            return
        self.enqueue(text)

    def enqueue(self, text: str) -> None:
        # Order is fixed under the lock; the system call that writes happens after it,
        # so publishers delivering to the same client never wait on each other's I/O.
        with self._lock:
            if self._closing:
                raise SubscriberGone  # not counted as notified
            self._pending.append(text)
            if len(self._pending) > self.max_pending:
                if self.overflow == "drop_oldest":
                    self._pending.popleft()
                    self.dropped += 1
                    if self.dropped == 1 or self.dropped % 1000 == 0:
                        logger.warning("%s is slow: %d messages dropped so far", self.ws.remote_address, self.dropped)
                else:
                    self._too_slow()
                    return
        self.pump()

    def pump(self) -> None:
        """Move queued messages to the connection while it keeps up.

        Stops when the connection holds HIGH_WATER unwritten bytes: its
        background flush then calls this again (``on_drain``) once they are out.
        """
        while True:
            with self._lock:
                queued = self._pump_locked()
            if not queued:
                return
            self.ws.flush_nowait()
            if self.ws.buffered_amount:
                return  # a background flush is writing; on_drain resumes

    def _pump_locked(self) -> bool:
        """Hand queued messages to the connection up to HIGH_WATER; True if any were handed over."""
        pending = self._pending
        ws = self.ws
        try:
            room = HIGH_WATER - ws.buffered_amount
            if pending and room > 0:
                batch = []
                while pending and room > 0:
                    text = pending.popleft()
                    batch.append(text)
                    room -= len(text) + 10
                ws.send_many_nowait(batch, write=False)
                return True
        except ConnectionClosed:
            pending.clear()
            self._closing = True
        return False

    def _too_slow(self) -> None:
        logger.warning(
            "closing %s with 1013: more than %d messages waiting for it", self.ws.remote_address, self.max_pending
        )
        self._closing = True
        self._pending.clear()
        threading.Thread(target=self._leave_all, daemon=True).start()
        self.ws.start_closing(CloseCode.TRY_AGAIN_LATER, "too slow: message queue full")

    def _leave_all(self) -> None:
        for channel in list(self.channels):
            self.leave(channel)

    def leave(self, channel: str) -> int:
        """Unsubscribe from ``channel``; tell the others; return the remaining count."""
        if self.broker.unsubscribe(channel, self.deliver):
            self.channels.discard(channel)
            count = self.broker.subscribers(channel)
            if count:
                self.broker.publish(channel, (make_message("presence", {"channel": channel, "count": count}), None))
            return count
        return self.broker.subscribers(channel)

    def reply(self, type: str, payload: Any) -> None:
        try:
            self.enqueue(make_message(type, payload))
        except SubscriberGone:
            pass

    def error(self, text: str, type: str | None = None) -> None:
        self.reply("error", {"error": text, "type": type})


class _Handler:
    """The connection handler: parse, validate and act on each message of one client."""

    def __init__(self, broker: MessageBroker, max_pending: int, overflow: str, max_message_size: int) -> None:
        if overflow not in ("close", "drop_oldest"):
            raise ValueError('overflow is "close" or "drop_oldest"')
        self.broker = broker
        self.max_pending = max_pending
        self.overflow = overflow
        self.max_message_size = max_message_size
        self.max_channels = 100

    def __call__(self, ws: Connection) -> None:
        client = _Subscriber(ws, self.broker, self.max_pending, self.overflow)
        try:
            for raw in ws:
                self.handle(client, raw)
        finally:
            client._closing = True
            client._leave_all()

    def handle(self, client: _Subscriber, raw: str | bytes) -> None:
        if len(raw) > self.max_message_size:
            client.error(f"message too large: {len(raw)} bytes (limit {self.max_message_size})")
            return
        try:
            message = parse_message(raw)
        except MessageError as exc:
            client.error(str(exc))
            return
        kind = message["type"]
        payload = message.get("payload")
        if kind == "ping":
            client.reply("pong", payload)
            return
        if kind not in CLIENT_TYPES:
            client.error(f"unknown message type {kind!r}; expected one of {', '.join(CLIENT_TYPES)}", kind)
            return
        if not isinstance(payload, dict):
            client.error(f"{kind} needs an object payload", kind)
            return
        channel = payload.get("channel")
        if not isinstance(channel, str) or not channel or len(channel) > MAX_CHANNEL_LENGTH:
            client.error(f"payload.channel must be a non-empty string of at most {MAX_CHANNEL_LENGTH} characters", kind)
            return
        getattr(self, "on_" + kind)(client, channel, payload)

    def on_subscribe(self, client: _Subscriber, channel: str, payload: dict[str, Any]) -> None:
        if channel not in client.channels and len(client.channels) >= self.max_channels:
            client.error(f"at most {self.max_channels} channels per connection", "subscribe")
            return
        self.broker.subscribe(channel, client.deliver)
        client.channels.add(channel)
        count = self.broker.subscribers(channel)
        client.reply("subscribed", {"channel": channel, "subscribers": count})
        self.broker.publish(channel, (make_message("presence", {"channel": channel, "count": count}), None))

    def on_unsubscribe(self, client: _Subscriber, channel: str, payload: dict[str, Any]) -> None:
        count = client.leave(channel)
        client.reply("unsubscribed", {"channel": channel, "subscribers": count})

    def on_publish(self, client: _Subscriber, channel: str, payload: dict[str, Any]) -> None:
        if "message" not in payload:
            client.error("publish needs payload.message", "publish")
            return
        text = make_message("message", {"channel": channel, "message": payload["message"]})
        notified = self.broker.publish(channel, (text, None))
        client.reply("published", {"channel": channel, "notified": notified})

    def on_chat(self, client: _Subscriber, channel: str, payload: dict[str, Any]) -> None:
        text = payload.get("text")
        if not isinstance(text, str):
            client.error("chat needs payload.text (a string)", "chat")
            return
        user = payload.get("user")
        out = {"channel": channel, "text": text, "user": user if isinstance(user, str) else client.id}
        self.broker.publish(channel, (make_message("chat", out), None))

    def on_notification(self, client: _Subscriber, channel: str, payload: dict[str, Any]) -> None:
        if "message" not in payload:
            client.error("notification needs payload.message", "notification")
            return
        out = {"channel": channel, "message": payload["message"]}
        self.broker.publish(channel, (make_message("notification", out), None))

    def on_typing(self, client: _Subscriber, channel: str, payload: dict[str, Any]) -> None:
        user = payload.get("user")
        out: dict[str, Any] = {"channel": channel, "user": user if isinstance(user, str) else client.id}
        out["typing"] = bool(payload.get("typing", True))
        self.broker.publish(channel, (make_message("typing", out), client.id))


def broker_handler(
    broker: MessageBroker | None = None,
    *,
    max_pending: int = 1000,
    overflow: str = "close",
    max_message_size: int = 65536,
) -> Callable[[Connection], None]:
    """A handler for :func:`rawws.serve` that speaks the pub/sub protocol over ``broker``."""
    return _Handler(broker or MessageBroker(), max_pending, overflow, max_message_size)


def serve_broker(
    host: str | None = "127.0.0.1",
    port: int = 8765,
    *,
    broker: MessageBroker | None = None,
    max_pending: int = 1000,
    overflow: str = "close",
    max_message_size: int = 65536,
    redis: str | None = None,
    **serve_options: Any,
) -> Server:
    """Run the pub/sub server; the returned :class:`Server` has a ``broker`` attribute.

    ``max_pending``: messages queued for one slow client before ``overflow``
    applies (``"close"``: close it with 1013; ``"drop_oldest"``). Other
    options go to :func:`rawws.serve`. ``redis="redis://host:port/db"`` (or
    ``rediss://``) shares channels with every other node on that Redis through
    :class:`~rawws.redis_backend.RedisBackend` (needs ``pip install 'rawws[redis]'``).
    """
    if broker is None:
        if redis is not None:
            from .redis_backend import RedisBackend

            backend = RedisBackend(redis)
            broker = MessageBroker(backend)
            if not backend.wait_connected(5):
                logger.warning("Redis at %s is not reachable yet: serving local subscribers meanwhile", redis)
        else:
            broker = MessageBroker()
    elif redis is not None:
        raise ValueError("pass either broker= or redis=, not both")
    handler = broker_handler(broker, max_pending=max_pending, overflow=overflow, max_message_size=max_message_size)
    server = serve(handler, host, port, **serve_options)
    server.broker = broker
    return server
