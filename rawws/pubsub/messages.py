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
import math
import re
import time
from collections.abc import Callable
from itertools import accumulate
from typing import Any, NoReturn, Protocol

__all__ = ["make_message", "send_message", "parse_message", "json_depth", "Dispatcher", "MessageError", "MAX_DEPTH"]

MAX_DEPTH = 32
"""Deepest nesting of arrays and objects :func:`parse_message` accepts, the envelope object counting as 1.

Real messages are a few levels deep. The limit is checked by a linear scan
*before* the text is parsed: a few thousand ``[`` exhaust :func:`json.loads`'s
recursion (a RecursionError on Python 3.10–3.12, a crash on 3.13).
"""

# A JSON string, escapes included, in UTF-8 (whose multi-byte sequences never
# contain an ASCII byte). It always matches from an opening quote: an
# unterminated string (or one ending in a lone backslash) runs to the end of
# the text, so no quote is scanned twice and the scan stays linear.
_STRING = re.compile(rb'"[^"\\]*(?:\\[\s\S][^"\\]*)*(?:"|\\?\Z)')
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
_STEP = [0] * 256
_STEP[ord("[")] = _STEP[ord("{")] = 1
_STEP[ord("]")] = _STEP[ord("}")] = -1


class _Sender(Protocol):
    def send(self, message: str) -> Any: ...


class MessageError(ValueError):
    """A received message does not follow the protocol; the text says what is wrong."""


def make_message(type: str, payload: Any = None, timestamp: int | None = None) -> str:
    """The JSON text of one message; ``timestamp`` defaults to now, in ms since the epoch.

    The text is strict JSON, pure ASCII (non-ASCII characters are escaped, so
    ``len()`` of the result is its size in bytes). A payload holding a float
    NaN or infinity raises :class:`ValueError`: JSON has no such values and
    browsers' ``JSON.parse`` rejects the ``NaN``/``Infinity`` that
    :func:`json.dumps` would write by default.
    """
    if timestamp is None:
        timestamp = int(time.time() * 1000)
    envelope = {"type": type, "payload": payload, "timestamp": timestamp}
    try:
        return json.dumps(envelope, separators=(",", ":"), allow_nan=False)
    except ValueError as exc:
        if "Out of range float" not in str(exc):
            raise  # a circular reference
        raise ValueError(f"cannot encode the {type!r} message as JSON: it holds a NaN or infinite float") from None


def send_message(ws: _Sender, type: str, payload: Any = None) -> None:
    """Send one protocol message on ``ws`` (anything with ``send(str)``)."""
    ws.send(make_message(type, payload))


def json_depth(text: str) -> int:
    """How deeply arrays and objects nest in the JSON ``text`` (``[[1]]`` → 2), without parsing it.

    A linear scan: strings are skipped (escaped quotes included), then the
    running count of ``[``/``{`` minus ``]``/``}`` peaks at the depth. For
    invalid JSON the figure is an upper bound of what a parser would reach.
    """
    data = text.encode("utf-8", "surrogatepass")
    if b'"' in data:
        data = _STRING.sub(b"", data)
    brackets = data.translate(None, _NOT_BRACKETS)
    return max(0, max(accumulate(map(_STEP.__getitem__, brackets)), default=0))


def _refuse_constant(name: str) -> NoReturn:
    raise MessageError(f"{name} is not JSON: numbers must be finite")


def _finite_float(text: str) -> float:
    value = float(text)
    if math.isinf(value):  # 1e400: valid JSON, but no float holds it and re-encoding it would write Infinity
        raise MessageError(f"number out of range: {text[:40]}")
    return value


# One decoder for every call (json.loads with options would build one per call). Like
# json.loads's own default decoder, it is shared by all threads.
_DECODER = json.JSONDecoder(parse_constant=_refuse_constant, parse_float=_finite_float)


def parse_message(raw: str | bytes, *, max_depth: int = MAX_DEPTH) -> dict[str, Any]:
    """Decode and check the envelope; raise :class:`MessageError` naming the problem.

    Refused besides malformed envelopes: nesting deeper than ``max_depth``
    levels (checked before parsing, see :data:`MAX_DEPTH`), ``NaN``,
    ``Infinity`` and ``-Infinity`` (which :func:`json.loads` accepts but JSON
    does not), and numbers too large for a float.
    """
    if isinstance(raw, bytes):
        raise MessageError("binary messages are not part of the protocol: send JSON text")
    # Nesting deeper than max_depth needs more than max_depth openers: counting is
    # much cheaper than scanning, and almost every message stops here.
    if raw.count("[") + raw.count("{") > max_depth:
        depth = json_depth(raw)
        if depth > max_depth:
            raise MessageError(f"message nested too deeply: {depth} levels of arrays and objects (limit {max_depth})")
    try:
        message = _DECODER.decode(raw)
    except MessageError:
        raise
    except RecursionError:
        raise MessageError(f"message nested too deeply to parse (limit {max_depth} levels)") from None
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
