"""The JSON message protocol of the pub/sub server: ``{"type", "payload", "timestamp"}``.

The Python twin of the browser helpers from the classic example::

    send_message(ws, "chat", {"channel": "lobby", "text": "Hi!"})

    dispatcher = Dispatcher(default=lambda msg: print("unknown type", msg["type"]))

    @dispatcher.on("chat")
    def show(msg):
        print(msg["payload"]["text"])

    for raw in ws:
        dispatcher.dispatch(raw)
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any, Protocol

__all__ = ["make_message", "send_message", "parse_message", "Dispatcher", "MessageError"]


class _Sender(Protocol):
    def send(self, message: str) -> Any: ...


class MessageError(ValueError):
    """A received message does not follow the protocol; the text says what is wrong."""


def make_message(type: str, payload: Any = None, timestamp: int | None = None) -> str:
    """The JSON text of one message; ``timestamp`` defaults to now, in ms since the epoch."""
    if timestamp is None:
        timestamp = int(time.time() * 1000)
    return json.dumps({"type": type, "payload": payload, "timestamp": timestamp}, separators=(",", ":"))


def send_message(ws: _Sender, type: str, payload: Any = None) -> None:
    """Send one protocol message on ``ws`` (anything with ``send(str)``)."""
    ws.send(make_message(type, payload))


def parse_message(raw: str | bytes) -> dict[str, Any]:
    """Decode and check the envelope; raise :class:`MessageError` naming the problem."""
    if isinstance(raw, bytes):
        raise MessageError("binary messages are not part of the protocol: send JSON text")
    try:
        message = json.loads(raw)
    except ValueError:
        raise MessageError("message is not valid JSON") from None
    if not isinstance(message, dict):
        raise MessageError(f"message must be a JSON object, not {type(message).__name__}")
    kind = message.get("type")
    if not isinstance(kind, str) or not kind:
        raise MessageError('message needs a "type" string')
    return message


Handler = Callable[[dict[str, Any]], Any]


class Dispatcher:
    """Route received messages to handlers by ``type``; unknown types go to ``default``."""

    def __init__(self, default: Handler | None = None) -> None:
        self.handlers: dict[str, Handler] = {}
        self.default = default

    def on(self, type: str) -> Callable[[Handler], Handler]:
        """Decorator: register the handler for messages of ``type``."""

        def register(handler: Handler) -> Handler:
            self.handlers[type] = handler
            return handler

        return register

    def dispatch(self, raw: str | bytes | dict[str, Any]) -> Any:
        """Parse (unless already a dict) and call the handler for the message's type."""
        message = raw if isinstance(raw, dict) else parse_message(raw)
        handler = self.handlers.get(message["type"], self.default)
        if handler is None:
            return None
        return handler(message)
