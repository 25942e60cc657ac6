"""A Python client for the pub/sub server, on the reconnecting :class:`~rawws.EventClient`.

It remembers its subscriptions and sends them again after every reconnect,
so a dropped connection costs the messages published while it was down but
never silently ends a subscription::

    client = PubSubClient("ws://127.0.0.1:8765/")
    client.subscribe("news", lambda message, envelope: print(message))
    client.start()
    client.publish("news", {"headline": "rawws ships"})
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from typing_extensions import Unpack

from ..exceptions import InvalidState
from ..sync.connection import Message
from ..sync.eventclient import EventClient
from ..sync.options import EventClientSettings
from .messages import Dispatcher, MessageError, make_message, parse_message

__all__ = ["PubSubClient"]

ChannelCallback = Callable[[Any, dict[str, Any]], Any]


class PubSubClient:
    """Subscribe, publish and receive typed messages; re-subscribes after reconnecting.

    ``dispatcher.on(type)`` registers handlers for other message types
    (``chat``, ``typing``, ``presence``, ``error``, …). Extra keyword arguments
    go to :class:`~rawws.EventClient` (backoff settings, ``on_close``…).
    """

    def __init__(
        self, uri: str, *, on_open: Callable[[EventClient], Any] | None = None, **options: Unpack[EventClientSettings]
    ) -> None:
        self._channels: dict[str, list[ChannelCallback]] = {}
        self._lock = threading.Lock()
        self.dispatcher = Dispatcher()
        self.dispatcher.on("message")(self._on_channel_message)
        user_open = on_open

        def resubscribe(client: EventClient) -> None:
            with self._lock:
                channels = list(self._channels)
            for channel in channels:  # restore subscriptions on every (re)connect
                client.send(make_message("subscribe", {"channel": channel}))
            if user_open is not None:
                user_open(client)

        self.events = EventClient(uri, on_open=resubscribe, on_message=self._on_message, **options)

    def start(self) -> PubSubClient:
        """Connect in the background (and reconnect whenever the connection drops); return self."""
        self.events.start()
        return self

    def wait_open(self, timeout: float | None = None) -> bool:
        """Wait until connected, at most ``timeout`` seconds (None: no limit); whether it is connected.

        Subscriptions made before are sent as soon as the connection opens;
        :meth:`publish` and :meth:`send` need an open connection.
        """
        return self.events.wait_open(timeout)

    def close(self) -> None:
        """Close the connection and stop reconnecting."""
        self.events.close()

    def __enter__(self) -> PubSubClient:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def subscribe(self, channel: str, callback: ChannelCallback) -> None:
        """Call ``callback(message, envelope)`` for each message published on ``channel``."""
        with self._lock:
            first = channel not in self._channels
            self._channels.setdefault(channel, []).append(callback)
        if first:
            self._send_if_open("subscribe", {"channel": channel})

    def unsubscribe(self, channel: str) -> None:
        """Stop receiving ``channel``: every callback subscribed to it is dropped.

        The server is told at once if connected (it answers ``unsubscribed``);
        either way the channel is not subscribed again after a reconnect.
        Unsubscribing a channel that is not subscribed does nothing.
        """
        with self._lock:
            known = self._channels.pop(channel, None) is not None
        if known:
            self._send_if_open("unsubscribe", {"channel": channel})

    def publish(self, channel: str, message: Any) -> None:
        """Publish now; raises :class:`~rawws.InvalidState` while disconnected."""
        self.send("publish", {"channel": channel, "message": message})

    def send(self, type: str, payload: Any) -> None:
        """Send one protocol message ``{"type": type, "payload": payload, "timestamp": now}``.

        For the types without a method here (``chat``, ``typing``, ``ping``…):
        ``client.send("chat", {"channel": "lobby", "text": "hi"})``. Raises
        :class:`~rawws.InvalidState` while disconnected (nothing is queued),
        and :class:`ValueError` for a payload JSON cannot hold (NaN, infinity).
        """
        self.events.send(make_message(type, payload))

    def _send_if_open(self, type: str, payload: Any) -> None:
        try:
            self.send(type, payload)
        except InvalidState:
            pass  # sent by on_open once connected

    def _on_message(self, client: EventClient, raw: Message) -> None:
        try:
            self.dispatcher.dispatch(parse_message(raw))
        except MessageError:
            pass

    def _on_channel_message(self, envelope: dict[str, Any]) -> None:
        payload = envelope.get("payload") or {}
        channel = payload.get("channel")
        with self._lock:
            callbacks = list(self._channels.get(channel, ())) if isinstance(channel, str) else []
        for callback in callbacks:
            callback(payload.get("message"), envelope)
