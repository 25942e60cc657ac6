"""A Redis pub/sub backend for :class:`~rawws.MessageBroker`: channels shared by many processes.

Needs the ``redis`` package (``pip install 'rawws[redis]'``); the rest of
rawws does not. Every node (server process) with a broker on the same Redis
shares channels::

    broker = MessageBroker(RedisBackend("redis://127.0.0.1:6379/0"))
    serve_broker("0.0.0.0", 8765, broker=broker)      # or: serve_broker(..., redis="redis://…")

How it behaves:

- **Delivery.** ``publish`` delivers to this node's subscribers at once, then
  publishes to Redis; every other node delivers what Redis brings it to its
  own subscribers. A node ignores its own messages coming back, so each
  subscriber gets each message once. Messages from one publisher reach each
  subscriber in publish order (Redis keeps per-connection order).
- **The count.** ``publish`` returns the number of subscribers notified *on
  this node* by the call — the same meaning as with the local backend. The
  other nodes' deliveries happen asynchronously and are not counted
  (``last_remote_nodes`` holds how many other nodes Redis handed the last
  message to).
- **Subscriptions.** The node subscribes on Redis only to channels (and
  patterns) that have local subscribers, and unsubscribes when the last one
  leaves.
- **Failures.** When Redis is unreachable, local delivery goes on; messages
  published meanwhile are *not* delivered to other nodes (at most once: no
  replay, hence no duplicates after recovery), and each such failure is
  logged. A listener thread reconnects with backoff (0.1 s doubling to 5 s)
  and subscribes again to everything this node needs.

Messages must be JSON-serialisable (they cross process boundaries).
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import threading
import uuid
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

__all__ = ["RedisBackend"]

logger = logging.getLogger("rawws.redis")


class RedisBackend:
    """Fan-out through Redis pub/sub. ``url``: ``redis://host:port/db`` or ``rediss://`` for TLS."""

    def __init__(self, url: str, *, prefix: str = "rawws:", max_delay: float = 5.0) -> None:
        try:
            import redis
        except ImportError:
            raise RuntimeError("the Redis backend needs the redis package: pip install 'rawws[redis]'") from None
        self._redis_module = redis
        self.url = url
        self.prefix = prefix
        self.max_delay = max_delay
        self.node = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.last_remote_nodes = 0
        self.connected = threading.Event()
        self._client = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)
        self._seq = itertools.count()
        self._deliver: Callable[[str, Any], int] | None = None
        self._channels: set[str] = set()
        self._patterns: set[str] = set()
        self._lock = threading.Lock()  # guards the sets and the pubsub object's writes
        self._pubsub: Any = None
        self._seen: OrderedDict[str, None] = OrderedDict()  # recent message ids (pattern + channel overlap)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # --- Backend interface ----------------------------------------------------------------

    def attach(self, deliver: Callable[[str, Any], int]) -> None:
        self._deliver = deliver
        self._thread = threading.Thread(target=self._listen, name="rawws-redis", daemon=True)
        self._thread.start()

    def publish(self, channel: str, message: Any) -> int:
        assert self._deliver is not None, "attach() first"
        ident = f"{self.node}:{next(self._seq)}"
        data = json.dumps({"id": ident, "node": self.node, "message": message}, separators=(",", ":"))
        notified = self._deliver(channel, message)  # local subscribers first: they never wait for Redis
        try:
            self.last_remote_nodes = max(0, int(self._client.publish(self.prefix + channel, data)) - 1)
        except self._redis_module.RedisError as exc:
            logger.warning("Redis unreachable, %r not delivered to other nodes: %s", channel, exc)
        return notified

    def channel_added(self, channel: str) -> None:
        with self._lock:
            self._channels.add(channel)
            self._send("subscribe", self.prefix + channel)

    def channel_removed(self, channel: str) -> None:
        with self._lock:
            self._channels.discard(channel)
            self._send("unsubscribe", self.prefix + channel)

    def pattern_added(self, pattern: str) -> None:
        with self._lock:
            self._patterns.add(pattern)
            self._send("psubscribe", self.prefix + pattern)

    def pattern_removed(self, pattern: str) -> None:
        with self._lock:
            self._patterns.discard(pattern)
            self._send("punsubscribe", self.prefix + pattern)

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        with self._lock:
            if self._pubsub is not None:
                try:
                    self._pubsub.close()
                except Exception:
                    pass
        self._client.close()

    # --- internals ---------------------------------------------------------------------------

    def _send(self, command: str, name: str) -> None:
        """With ``_lock`` held: (un)subscribe on the live connection; after a reconnect it is redone."""
        if self._pubsub is None:
            return
        try:
            getattr(self._pubsub, command)(name)
        except self._redis_module.RedisError as exc:
            logger.debug("%s %s deferred until Redis is back: %s", command, name, exc)

    def _connect(self) -> None:
        pubsub = self._client.pubsub(ignore_subscribe_messages=True)  # type: ignore[no-untyped-call]
        with self._lock:
            channels = [self.prefix + c for c in self._channels]
            patterns = [self.prefix + p for p in self._patterns]
            # Subscribing needs at least one name; a keepalive channel makes the connection live at once.
            pubsub.subscribe(self.prefix + "__node__:" + self.node, *channels)
            if patterns:
                pubsub.psubscribe(*patterns)
            self._pubsub = pubsub

    def _listen(self) -> None:
        delay = 0.1
        while not self._stop.is_set():
            try:
                self._connect()
                if delay > 0.1:
                    logger.info("reconnected to Redis at %s; subscriptions restored", self.url)
                self.connected.set()
                delay = 0.1
                while not self._stop.is_set():
                    item = self._pubsub.get_message(timeout=0.5)
                    if item is not None:
                        self._handle(item)
            except self._redis_module.RedisError as exc:
                self.connected.clear()
                with self._lock:
                    self._pubsub = None
                logger.warning("lost Redis at %s (%s); retrying in %.1f s", self.url, exc, delay)
                self._stop.wait(delay)
                delay = min(self.max_delay, delay * 2)
            except Exception:
                logger.exception("Redis listener failed; restarting it")
                self._stop.wait(delay)

    def _handle(self, item: dict[str, Any]) -> None:
        if item.get("type") not in ("message", "pmessage"):
            return
        try:
            envelope = json.loads(item["data"])
            ident, node, message = envelope["id"], envelope["node"], envelope["message"]
        except (ValueError, KeyError, TypeError):
            logger.warning("ignoring a malformed message on %r", item.get("channel"))
            return
        if node == self.node or ident in self._seen:
            return  # our own (delivered locally already), or a second copy via a pattern
        self._seen[ident] = None
        if len(self._seen) > 100_000:
            self._seen.popitem(last=False)
        channel = item["channel"].decode() if isinstance(item["channel"], bytes) else item["channel"]
        assert self._deliver is not None
        self._deliver(channel[len(self.prefix) :], message)

    def wait_connected(self, timeout: float | None = None) -> bool:
        """Block until the listener is connected to Redis (True) or ``timeout`` passes."""
        return self.connected.wait(timeout)
