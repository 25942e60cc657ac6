"""The pub/sub WebSocket server: the JSON message protocol over one :class:`MessageBroker`.

Protocol (every message is ``{"type": ..., "payload": ..., "timestamp": <ms>}``):

client → server

- ``subscribe`` ``{"channel": "news"}`` → ``subscribed`` ``{"channel", "subscribers", "you": {"id", "user"}}``
- ``unsubscribe`` ``{"channel": "news"}`` → ``unsubscribed`` ``{"channel", "subscribers"}``
  (``subscribers`` only if it was a member)
- ``publish`` ``{"channel": "news", "message": <any JSON>}`` → every subscriber gets
  ``message`` ``{"channel", "message", "sender"}``; the publisher gets ``published``
  ``{"channel", "notified"}`` (``notified`` only if it is a member or may become one)
- ``chat`` ``{"channel", "text"}`` → ``chat`` ``{"channel", "text", "sender"}`` to every subscriber
- ``typing`` ``{"channel", "typing"?: bool}`` → ``typing`` ``{"channel", "typing", "sender"}``
  to the *other* subscribers
- ``notification`` ``{"channel", "message"}`` → ``notification`` to every subscriber, only if
  ``authorize`` allows it (without ``authorize``, only server code sends them: :meth:`BrokerServer.notify`)
- ``ping`` (any payload) → ``pong`` with the same payload

server → client, besides the answers above

- ``presence`` ``{"channel", "count"}`` to a channel's subscribers when someone joins or leaves
  (at most one per channel every :data:`PRESENCE_INTERVAL`, 0.25 s, longer past 1,000 members,
  carrying the latest count)
- ``message`` ``{"channel", "message", "sender": null}`` for what server code publishes
  (``server.broker.publish(channel, message)``)
- ``error`` ``{"error": "what was wrong", "type": <the offending type, if known>}``;
  a refusal by ``authorize`` is ``{"error": "forbidden", "type", "channel"}``

Who said it: ``sender`` is ``{"id": "c17", "user": ...}``, stamped by the
server: ``id`` is the connection's, assigned by the server, and ``user`` the
identity the application set in ``process_request`` (``pending.context["user"]``),
or null. A ``user`` (or ``sender``) in what a client sends is ignored. Counts
(``subscribers``, ``notified``, ``presence``) count the WebSocket clients of
this process subscribed to the channel, not local subscribers, and go only to
clients that are members of the channel or allowed to become members.

Bad input never closes the connection: it gets an ``error``. That includes
JSON nested deeper than ``max_depth`` (:data:`~rawws.pubsub.messages.MAX_DEPTH`, 32
levels, refused before parsing), ``NaN``/``Infinity``/``-Infinity`` and
numbers beyond a float's range (refused: browsers' ``JSON.parse`` rejects
them, and the server only ever sends strict JSON). A client that does not read
fast enough has its messages queued up to ``max_pending`` messages and
``max_pending_bytes`` bytes; past either it is closed with 1013 (Try Again
Later), or, with ``overflow="drop_oldest"``, its oldest queued messages are
dropped. Publishers never wait for any subscriber.
"""

from __future__ import annotations

import enum
import itertools
import logging
import socket
import threading
import time
import unicodedata
import weakref
from collections import deque
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from typing_extensions import Unpack

from ..exceptions import ConnectionClosed
from ..frames import CloseCode
from ..protocol import PreparedMessage, prepare_message
from ..sync.connection import Connection
from ..sync.options import ServerOptions, ServerSettings
from ..sync.server import Handler, Server, listen
from ..sync.timers import call_later
from .broker import RESERVED, MessageBroker, SubscriberGone
from .flusher import Flusher
from .messages import MAX_DEPTH, MessageError, make_message, parse_message

__all__ = [
    "check_json_message",
    "name_key",
    "Authorize",
    "BrokerClient",
    "Overflow",
    "serve_broker",
    "broker_handler",
    "BrokerServer",
    "CLIENT_TYPES",
    "MAX_DEPTH",
    "MAX_PENDING",
    "MAX_PENDING_BYTES",
]

logger = logging.getLogger("rawws.pubsub")

CLIENT_TYPES = ("subscribe", "unsubscribe", "publish", "chat", "notification", "typing", "ping")
HIGH_WATER = 256 * 1024
"""Bytes handed to a connection before the rest waits in its queue (see send_nowait)."""
MAX_CHANNEL_LENGTH = 200
MAX_PENDING = 1000
"""Default ``max_pending``: messages queued for one client that does not keep up."""
MAX_PENDING_BYTES = 4 * 1024 * 1024
"""Default ``max_pending_bytes``: bytes of text queued for one client that does not keep up.

Why 4 MiB: the message count alone does not bound memory, since 1,000
messages of 64 KiB (the largest a client may publish) are 64 MiB held for one
stalled reader. 4 MiB is still 1,000 messages of 4 KiB, so for ordinary chat
traffic ``max_pending`` stays the limit that applies and a healthy client
rides out a pause of its network; a stalled one costs at most about 4 MiB
plus the :data:`HIGH_WATER` bytes already handed to its connection.
"""

_ids = itertools.count(1)
_STRIPES = 64

PRESENCE_INTERVAL = 0.25
"""Seconds between two ``presence`` announcements of a channel of up to :data:`PRESENCE_FANOUT` members.

A join or leave is announced at once if the channel announced nothing in the
last interval; otherwise one announcement at the end of the interval carries
the count as it is then. Announcing every change would cost N²/2 messages for
N clients joining a channel: 50 million for 10,000.
"""

PRESENCE_FANOUT = 1000
"""Past this many members, a channel's interval grows with its size (10,000 members: 2.5 s),
so that its presence costs at most ``PRESENCE_FANOUT / PRESENCE_INTERVAL`` (4,000) messages a second."""


def presence_interval(members: int) -> float:
    """Seconds between two ``presence`` announcements of a channel of ``members``."""
    return PRESENCE_INTERVAL * max(1.0, members / PRESENCE_FANOUT)


def _weak_pump(subscriber: BrokerClient) -> Callable[[], None]:
    """An ``on_drain`` callback that calls ``subscriber.pump()`` while the subscriber exists."""
    ref = weakref.ref(subscriber)

    def on_drain() -> None:
        target = ref()
        if target is not None:
            target.pump()

    return on_drain


def _size(text: str | PreparedMessage) -> int:
    """Bytes of a queued message: ``text`` in UTF-8 (its length for ASCII, all that :func:`make_message`
    makes: O(1)), or a framed message's payload."""
    if type(text) is not str:
        return len(text.payload)  # type: ignore[union-attr]
    return len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))


class _Relayed(list):  # type: ignore[type-arg]
    """What the server relays on a channel: ``[text, id of the client not to send it to, or None]``,
    carrying ``text`` framed once for every member (``prepared``).

    It is a list, so a backend that carries it to other nodes sends it as JSON;
    what arrives there is a plain list, framed for each member.
    """

    __slots__ = ("prepared",)

    def __init__(self, text: str, exclude: str | None) -> None:
        super().__init__((text, exclude))
        self.prepared = prepare_message(text)


class Overflow(str, enum.Enum):
    """What happens to a client whose queue passes ``max_pending`` or ``max_pending_bytes``."""

    CLOSE = "close"  # close it with 1013 Try Again Later
    DROP_OLDEST = "drop_oldest"  # drop its oldest queued messages until it is under both limits


Authorize = Callable[["BrokerClient", str, str], bool]
"""``authorize(client, action, channel) -> bool``: may ``client`` do ``action`` on ``channel``?

``action`` is the message type: ``subscribe``, ``publish``, ``chat``,
``typing`` or ``notification`` (every type the server acts on for a
channel; ``unsubscribe`` and ``ping`` are always allowed). False, or an
exception (logged), refuses: the client gets an ``error`` ``{"error":
"forbidden", "type": action, "channel": channel}`` and nothing is delivered.
"""


def _relay_channel(channel: str) -> str:
    """The broker channel carrying the server's own traffic for ``channel`` (chat, presence, envelopes…).

    Its name starts with :data:`~rawws.pubsub.broker.RESERVED`: clients may not
    name such channels and ordinary patterns do not match them, so local
    subscribers of ``channel`` only ever see what server code publishes there.
    """
    return f"{RESERVED}ws:{channel}"


class BrokerClient:
    """One WebSocket client of the pub/sub server: what ``authorize`` is given, and its outgoing queue.

    - ``id``: assigned by the server (``"c17"``), unique in this process;
    - ``user``: the identity the application set at the handshake, as
      ``pending.context["user"]`` in ``process_request`` (a str; None: anonymous);
    - ``context``: the connection's whole ``context`` dict (see
      :class:`~rawws.sync.pending.PendingConnection`), e.g. the channels a token grants;
    - ``connection``: the :class:`~rawws.sync.server.ServerConnection`;
    - ``channels``: the channels it is subscribed to (it is a *member* of them).

    ``sender`` (``{"id", "user"}``) is stamped on everything the server relays for it.
    """

    def __init__(
        self,
        ws: Connection,
        broker: MessageBroker,
        max_pending: int,
        overflow: Overflow | str,
        max_pending_bytes: int | None = MAX_PENDING_BYTES,
        membership: _Membership | None = None,
        flusher: Flusher | None = None,
    ) -> None:
        self.ws = ws
        self.broker = broker
        self.id = f"c{next(_ids)}"
        context = getattr(ws, "context", None)
        self.context: dict[str, Any] = context if isinstance(context, dict) else {}
        user = self.context.get("user")
        self.user: str | None = user if isinstance(user, str) else None
        self.channels: set[str] = set()
        self.max_pending = max_pending
        self.max_pending_bytes = max_pending_bytes
        self.overflow = Overflow(overflow)
        self.dropped = 0
        self.membership = membership if membership is not None else _Membership(broker)
        self._published: dict[str, Callable[[Any], None]] = {}  # channel -> its broker callback
        self._pending: deque[str | PreparedMessage] = deque()
        self._pending_bytes = 0  # UTF-8 bytes of the texts in _pending
        self._lock = threading.Lock()
        self._closing = False
        protocol = getattr(ws, "protocol", None)
        self._prepared_fits = bool(getattr(protocol, "can_send_prepared", False))  # no compression
        # None: the publisher writes, one write per delivery. A member with compression
        # is written by the publisher too: its frames are compressed as they are written,
        # and one writer thread compressing for every such member would hold up everyone.
        self._flusher = flusher if self._prepared_fits else None
        self._scheduled = False  # a write is scheduled with the flusher and has not started
        # Not ``self.pump``: a bound method would make a cycle (ws → on_drain → self → ws)
        # that keeps this subscriber, queue included, until the cyclic GC runs, and would
        # keep it alive from anything that still holds the connection's callback.
        ws.on_drain = _weak_pump(self)

    @property
    def connection(self) -> Connection:
        return self.ws

    @property
    def sender(self) -> dict[str, Any]:
        return {"id": self.id, "user": self.user}

    # Broker callbacks: they run in the publisher's thread and must never block on this client.
    def relay(self, item: Any) -> None:
        """Deliver the server's own traffic: ``[text, id of the client not to send it to, or None]``."""
        text, exclude = item
        if exclude == self.id:
            return
        prepared = getattr(item, "prepared", None)
        self.enqueue(prepared if prepared is not None and self._prepared_fits else text)

    def _published_callback(self, channel: str) -> Callable[[Any], None]:
        """The subscriber of ``channel`` itself: what server code publishes, as a ``message`` envelope."""

        def deliver_published(message: Any) -> None:
            try:
                text = make_message("message", {"channel": channel, "message": message, "sender": None})
            except (TypeError, ValueError) as exc:
                logger.warning("cannot send what was published on %r to a client: %s", channel, exc)
                raise SubscriberGone from None  # not notified; the reason is logged once per client
            self.enqueue(text)

        return deliver_published

    def subscribe_to(self, channel: str) -> None:
        """Subscribe to ``channel`` (what server code publishes) and to its relayed traffic."""
        if channel not in self._published:
            self._published[channel] = self._published_callback(channel)
        self.broker.subscribe(channel, self._published[channel])
        self.broker.subscribe(_relay_channel(channel), self.relay)
        self.channels.add(channel)

    def unsubscribe_from(self, channel: str) -> bool:
        """Undo :meth:`subscribe_to`; False if it was not subscribed."""
        callback = self._published.pop(channel, None)
        if callback is not None:
            self.broker.unsubscribe(channel, callback)
        member = self.broker.unsubscribe(_relay_channel(channel), self.relay)
        self.channels.discard(channel)
        return member

    def enqueue(self, text: str | PreparedMessage) -> None:
        # Order is fixed under the lock; the system call that writes happens after it,
        # so publishers delivering to the same client never wait on each other's I/O.
        size = _size(text)
        with self._lock:
            if self._closing:
                raise SubscriberGone  # not counted as notified
            self._pending.append(text)
            self._pending_bytes += size
            over = self._over_limits_locked()
            if not over:
                if self._scheduled:
                    return  # the scheduled write takes this message too
                self._scheduled = self._flusher is not None
        if over:
            self._relieve()
        elif self._flusher is not None:
            self._flusher.schedule(self._write_scheduled)
        else:
            self.pump()

    def _relieve(self) -> None:
        """Over a limit: write what the socket takes now, then apply ``overflow`` to what is still queued.

        The queue may be long because the flusher is behind, not the client:
        only what the client's socket does not take counts against it.
        """
        self.pump()
        with self._lock:
            if self._closing or not self._over_limits_locked():
                return
            if self.overflow is Overflow.DROP_OLDEST:
                self._drop_oldest_locked()
            else:
                self._too_slow()

    def _write_scheduled(self) -> None:
        """On the flusher's thread: write everything queued so far (what is queued later is scheduled again)."""
        with self._lock:
            self._scheduled = False
        self.pump()

    def _over_limits_locked(self) -> bool:
        """Whether the queue holds too much. One message is always allowed, however large."""
        count = len(self._pending)
        if count > self.max_pending:
            return True
        cap = self.max_pending_bytes
        return cap is not None and self._pending_bytes > cap and count > 1

    def _drop_oldest_locked(self) -> None:
        before = self.dropped
        while self._over_limits_locked():
            self._pending_bytes -= _size(self._pending.popleft())
            self.dropped += 1
        if before == 0 or before // 1000 != self.dropped // 1000:
            logger.warning("%s is slow: %d messages dropped so far", self.ws.remote_address, self.dropped)

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
                    size = _size(text)
                    self._pending_bytes -= size
                    batch.append(text)
                    room -= size + 10
                ws.send_many_nowait(batch, write=False)
                return True
        except ConnectionClosed:
            pending.clear()
            self._pending_bytes = 0
            self._closing = True
        return False

    def _too_slow(self) -> None:
        logger.warning(
            "closing %s with 1013: %d messages (%d bytes) waiting for it; the limits are %d messages, %s bytes",
            self.ws.remote_address,
            len(self._pending),
            self._pending_bytes,
            self.max_pending,
            self.max_pending_bytes,
        )
        self._closing = True
        self._pending.clear()
        self._pending_bytes = 0
        threading.Thread(target=self._leave_all, daemon=True).start()
        self.ws.start_closing(CloseCode.TRY_AGAIN_LATER, "too slow: message queue full")

    def release(self) -> None:
        """The client is gone: refuse further deliveries and free the queue now.

        Reference counting then frees this object as soon as the handler lets
        go of it: nothing here waits for the cyclic garbage collector.
        """
        with self._lock:
            self._closing = True
            self._pending.clear()
            self._pending_bytes = 0
        self.ws.on_drain = None

    def _leave_all(self) -> None:
        for channel in list(self.channels):
            self.leave(channel)

    def leave(self, channel: str) -> int | None:
        """Unsubscribe from ``channel`` and tell the members; the remaining count, None if not a member."""
        return self.membership.leave(self, channel)

    def reply(self, type: str, payload: Any) -> None:
        try:
            self.enqueue(make_message(type, payload))
        except SubscriberGone:
            pass

    def error(self, text: str, type: str | None = None, channel: str | None = None) -> None:
        payload: dict[str, Any] = {"error": text, "type": type}
        if channel is not None:
            payload["channel"] = channel
        self.reply("error", payload)


def check_json_message(channel: str, message: Any) -> None:
    """Raise what :func:`make_message` raises for ``message``: TypeError (not JSON: a set, bytes, an object)
    or ValueError (NaN or infinity, a circular reference), saying which channel.

    The pub/sub server sets it as its broker's :attr:`~rawws.pubsub.broker.MessageBroker.check_message`,
    so that ``server.broker.publish`` refuses, as :meth:`BrokerServer.notify` does, what WebSocket
    subscribers could not receive, instead of counting it delivered.
    """
    try:
        make_message("message", {"channel": channel, "message": message, "sender": None})
    except TypeError as exc:
        raise TypeError(f"cannot publish on {channel!r}: WebSocket subscribers get JSON, and {exc}") from None
    except ValueError as exc:
        raise ValueError(f"cannot publish on {channel!r}: WebSocket subscribers get JSON; {exc}") from None


def name_key(user: str) -> str:
    """What makes two user names the same for ``unique_users``: NFKC-normalised and case-folded.

    ``"ALICE"``, ``"alice"`` and ``"ａｌｉｃｅ"`` (full-width) are one name. Look-alikes
    from different scripts (Latin ``a`` and Cyrillic ``а``) stay different
    names: telling them apart needs the Unicode confusables table (UTS #39),
    which the standard library does not have.
    """
    return unicodedata.normalize("NFKC", user).casefold()


class _Membership:
    """Joining and leaving channels, and the ``presence`` counts they announce.

    A lock per channel (one of :data:`_STRIPES`, chosen by the channel's hash)
    orders every change of its membership with the count it announces, so
    that the last ``presence`` a member receives is the current count (two
    joins at once cannot announce 2 and then 1), while joins to different
    channels rarely wait on each other. Counted are the WebSocket
    clients of this server process subscribed to the channel; local
    subscribers (server code) are not. With ``unique_users``, two members of
    one channel may not have the same ``user``, compared by :func:`name_key`
    (``"Alice"`` and ``"ａｌｉｃｅ"`` are one name).
    """

    def __init__(self, broker: MessageBroker, unique_users: bool = False) -> None:
        self.broker = broker
        self.unique_users = unique_users
        self._locks = [threading.RLock() for _ in range(_STRIPES)]
        self._names: dict[tuple[str, str], str] = {}  # (channel, user) -> client id, with unique_users
        self._announced: dict[str, float] = {}  # channel -> when its last presence went out
        self._due: set[str] = set()  # channels with an announcement scheduled

    def members(self, channel: str) -> int:
        return self.broker.subscribers(_relay_channel(channel))

    def join(self, client: BrokerClient, channel: str) -> str | None:
        """Subscribe ``client``, answer ``subscribed`` and announce the count; a reason if refused."""
        with self._lock_for(channel):
            if self.unique_users and client.user is not None:
                holder = self._names.setdefault((channel, name_key(client.user)), client.id)
                if holder != client.id:
                    return f"the name {client.user!r} is taken in {channel}: choose another"
            client.subscribe_to(channel)
            count = self.members(channel)
            client.reply("subscribed", {"channel": channel, "subscribers": count, "you": client.sender})
            self._announce(channel, count)
        return None

    def _lock_for(self, channel: str) -> threading.RLock:
        return self._locks[hash(channel) % _STRIPES]

    def leave(self, client: BrokerClient, channel: str) -> int | None:
        with self._lock_for(channel):
            if client.user is not None and self._names.get((channel, name_key(client.user))) == client.id:
                del self._names[(channel, name_key(client.user))]
            if not client.unsubscribe_from(channel):
                return None
            count = self.members(channel)
            if count:
                self._announce(channel, count)
            elif channel not in self._due:
                self._announced.pop(channel, None)
            return count

    def _announce(self, channel: str, count: int) -> None:
        """With the channel's lock held: announce ``count`` now, or the count at the end of the interval."""
        now = time.monotonic()
        last = self._announced.get(channel)
        interval = presence_interval(count)
        if last is None or now - last >= interval:
            self._announced[channel] = now
            self._publish_presence(channel, count)
        elif channel not in self._due:
            self._due.add(channel)
            call_later(last + interval - now, lambda: self._announce_due(channel))

    def _announce_due(self, channel: str) -> None:
        with self._lock_for(channel):
            self._due.discard(channel)
            count = self.members(channel)
            if count:
                self._announced[channel] = time.monotonic()
                self._publish_presence(channel, count)
            else:
                self._announced.pop(channel, None)  # nobody left to tell: forget the channel

    def _publish_presence(self, channel: str, count: int) -> None:
        text = make_message("presence", {"channel": channel, "count": count})
        self.broker.publish(_relay_channel(channel), _Relayed(text, None))


class _Handler:
    """The connection handler: parse, validate, authorize and act on each message of one client."""

    def __init__(
        self,
        broker: MessageBroker,
        max_pending: int,
        overflow: Overflow | str,
        max_message_size: int,
        max_pending_bytes: int | None = MAX_PENDING_BYTES,
        max_depth: int = MAX_DEPTH,
        authorize: Authorize | None = None,
        unique_users: bool = False,
    ) -> None:
        try:
            overflow = Overflow(overflow)
        except ValueError:
            raise ValueError(f'overflow is "close" or "drop_oldest", not {overflow!r}') from None
        if max_pending < 1:
            raise ValueError("max_pending must be at least 1")
        if max_pending_bytes is not None and max_pending_bytes < 1:
            raise ValueError("max_pending_bytes must be at least 1, or None for no byte limit")
        if max_depth < 2:
            raise ValueError("max_depth must be at least 2: the envelope and an object payload")
        if authorize is not None and not callable(authorize):
            raise TypeError("authorize must be callable as authorize(client, action, channel)")
        self.broker = broker
        self.max_pending = max_pending
        self.max_pending_bytes = max_pending_bytes
        self.overflow = overflow
        self.max_message_size = max_message_size
        self.max_depth = max_depth
        self.max_channels = 100
        self.authorize = authorize
        self.membership = _Membership(broker, unique_users)
        self.flusher = Flusher()
        if broker.check_message is None:
            broker.check_message = check_json_message  # WebSocket subscribers get JSON: refuse the rest at publish()

    def __call__(self, ws: Connection) -> None:
        client = BrokerClient(
            ws, self.broker, self.max_pending, self.overflow, self.max_pending_bytes, self.membership, self.flusher
        )
        try:
            for raw in ws:
                self.handle(client, raw)
        finally:
            client.release()  # no more deliveries; its queue is freed now, not at the next GC
            client._leave_all()

    def handle(self, client: BrokerClient, raw: str | bytes) -> None:
        try:
            self._handle(client, raw)
        except RecursionError:
            # The depth check makes this unlikely (a huge max_depth, a handler change):
            # whatever recursed too deep, the client gets an error and the connection lives.
            client.error(f"message nested too deeply to handle (limit {self.max_depth} levels)")

    def _handle(self, client: BrokerClient, raw: str | bytes) -> None:
        if len(raw) > self.max_message_size:
            client.error(f"message too large: {len(raw)} bytes (limit {self.max_message_size})")
            return
        try:
            message = parse_message(raw, max_depth=self.max_depth)
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
        if channel.startswith(RESERVED):
            client.error("channel names starting with NUL are reserved for the server", kind)
            return
        if kind != "unsubscribe" and not self.allowed(client, kind, channel):
            client.error("forbidden", kind, channel)
            return
        getattr(self, "on_" + kind)(client, channel, payload)

    def allowed(self, client: BrokerClient, action: str, channel: str) -> bool:
        """``authorize``'s answer; without one, everything but ``notification`` (server code sends those)."""
        if self.authorize is None:
            return action != "notification"
        try:
            return bool(self.authorize(client, action, channel))
        except Exception:
            logger.exception("authorize(%s, %r, %r) failed: refused", client.id, action, channel)
            return False

    def on_subscribe(self, client: BrokerClient, channel: str, payload: dict[str, Any]) -> None:
        if channel not in client.channels and len(client.channels) >= self.max_channels:
            client.error(f"at most {self.max_channels} channels per connection", "subscribe")
            return
        refusal = self.membership.join(client, channel)
        if refusal is not None:
            client.error(refusal, "subscribe", channel)

    def on_unsubscribe(self, client: BrokerClient, channel: str, payload: dict[str, Any]) -> None:
        count = client.leave(channel)
        answer: dict[str, Any] = {"channel": channel}
        if count is not None:  # counts are for members (it was one until now)
            answer["subscribers"] = count
        client.reply("unsubscribed", answer)

    def relay(self, client: BrokerClient, channel: str, type: str, out: dict[str, Any], exclude: bool = False) -> int:
        """Send ``type`` with ``out`` and the stamped sender to the members of ``channel``; how many got it."""
        out["sender"] = client.sender  # whatever the client claimed, this is who sent it
        text = make_message(type, {"channel": channel, **out})
        return self.broker.publish(_relay_channel(channel), _Relayed(text, client.id if exclude else None))

    def on_publish(self, client: BrokerClient, channel: str, payload: dict[str, Any]) -> None:
        if "message" not in payload:
            client.error("publish needs payload.message", "publish")
            return
        notified = self.relay(client, channel, "message", {"message": payload["message"]})
        answer: dict[str, Any] = {"channel": channel}
        if channel in client.channels or self.allowed(client, "subscribe", channel):
            answer["notified"] = notified  # a count it could learn by subscribing anyway
        client.reply("published", answer)

    def on_chat(self, client: BrokerClient, channel: str, payload: dict[str, Any]) -> None:
        text = payload.get("text")
        if not isinstance(text, str):
            client.error("chat needs payload.text (a string)", "chat")
            return
        self.relay(client, channel, "chat", {"text": text})

    def on_notification(self, client: BrokerClient, channel: str, payload: dict[str, Any]) -> None:
        if "message" not in payload:
            client.error("notification needs payload.message", "notification")
            return
        self.relay(client, channel, "notification", {"message": payload["message"]})

    def on_typing(self, client: BrokerClient, channel: str, payload: dict[str, Any]) -> None:
        self.relay(client, channel, "typing", {"typing": bool(payload.get("typing", True))}, exclude=True)


def broker_handler(
    broker: MessageBroker | None = None,
    *,
    max_pending: int = MAX_PENDING,
    overflow: Overflow | str = Overflow.CLOSE,
    max_message_size: int = 65536,
    max_pending_bytes: int | None = MAX_PENDING_BYTES,
    max_depth: int = MAX_DEPTH,
    authorize: Authorize | None = None,
    unique_users: bool = False,
) -> Callable[[Connection], None]:
    """A handler for :func:`rawws.serve` that speaks the pub/sub protocol over ``broker``.

    The options are those of :func:`serve_broker`.
    """
    return _Handler(
        broker or MessageBroker(),
        max_pending,
        overflow,
        max_message_size,
        max_pending_bytes,
        max_depth,
        authorize=authorize,
        unique_users=unique_users,
    )


def serve_broker(
    host: str | None = "127.0.0.1",
    port: int = 8765,
    *,
    broker: MessageBroker | None = None,
    max_pending: int = MAX_PENDING,
    overflow: Overflow | str = Overflow.CLOSE,
    max_message_size: int = 65536,
    max_pending_bytes: int | None = MAX_PENDING_BYTES,
    max_depth: int = MAX_DEPTH,
    authorize: Authorize | None = None,
    unique_users: bool = False,
    redis: str | None = None,
    sock: socket.socket | None = None,
    options: ServerOptions | None = None,
    **settings: Unpack[ServerSettings],
) -> BrokerServer:
    """Run the pub/sub server; the returned :class:`BrokerServer` has a ``broker`` attribute.

    ``max_pending`` (1,000) messages or ``max_pending_bytes`` (4 MiB, see
    :data:`MAX_PENDING_BYTES`; None: no byte limit) of text queued for one slow
    client, whichever comes first, before ``overflow`` applies (``"close"``:
    close it with 1013; ``"drop_oldest"``: drop its oldest queued messages
    until it is under both limits; a single message is always let through).
    ``max_message_size``: longest message a client may send (64 KiB).
    ``max_depth``: deepest nesting of arrays and objects accepted in a message,
    the envelope counting as 1 (32, :data:`~rawws.pubsub.messages.MAX_DEPTH`).
    The server's settings (``options`` and keyword arguments) are
    :func:`rawws.serve`'s. ``redis="redis://host:port/db"`` (or ``rediss://``)
    shares channels with every other node on that Redis through
    :class:`~rawws.pubsub.redis_backend.RedisBackend` (needs ``pip install 'rawws[redis]'``).

    Who may do what: ``authorize(client, action, channel) -> bool`` (see
    :data:`Authorize` and :class:`BrokerClient`) decides every ``subscribe``,
    ``publish``, ``chat``, ``typing`` and ``notification``; without it,
    everything is allowed but ``notification``, which only server code sends
    (:meth:`BrokerServer.notify`). The server stamps ``sender`` ``{"id",
    "user"}`` on everything it relays, ``user`` being what ``process_request``
    set as ``pending.context["user"]``. ``unique_users=True`` refuses a
    ``subscribe`` when another member of the channel has the same ``user``.
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
    handler = broker_handler(
        broker,
        max_pending=max_pending,
        overflow=overflow,
        max_message_size=max_message_size,
        max_pending_bytes=max_pending_bytes,
        max_depth=max_depth,
        authorize=authorize,
        unique_users=unique_users,
    )
    options = replace(options or ServerOptions(), **settings)
    return BrokerServer(handler, sock if sock is not None else listen(host, port), options, broker)


class BrokerServer(Server):
    """A :class:`~rawws.sync.server.Server` whose connections speak the pub/sub protocol over ``broker``.

    Server code publishes to the same channels through ``server.broker``:
    ``server.broker.publish("news", {"headline": "hi"})`` reaches local
    subscribers of ``news`` with the message as published, and every
    WebSocket subscriber as a ``message`` envelope whose ``sender`` is null
    (the server). :meth:`notify` sends a ``notification``.
    """

    def __init__(self, handler: Handler, sock: socket.socket, options: ServerOptions, broker: MessageBroker) -> None:
        super().__init__(handler, sock, options)
        self.broker = broker

    def notify(self, channel: str, message: Any) -> int:
        """Send a ``notification`` ``{"channel", "message", "sender": null}`` to the members of ``channel``.

        Returns how many WebSocket clients it was queued for.
        """
        text = make_message("notification", {"channel": channel, "message": message, "sender": None})
        return self.broker.publish(_relay_channel(channel), _Relayed(text, None))
