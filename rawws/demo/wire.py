"""The demo's wire view: each frame of a browser's own connection, as it crossed the wire, decoded.

When the page's wire panel opens, it sends ``{"type": "wire", "payload": {"on": true}}``.
From then on the connection's :class:`~rawws.protocol.Protocol` hands its raw
bytes, both ways, to a :class:`WireView` (``Protocol.wire_tap``), which
dissects them with :mod:`rawws.dissect` and reports each frame to *that same
connection* only: the masked bytes the browser sent with their masking key
and unmasked payload, the server's frames, pings, pongs and the RSV1 flag of
compressed messages (inflated, as ``python -m rawws decode --deflate`` does).
Closing the panel sends ``{"on": false}``. While the panel is closed nothing
is tapped: ``wire_tap`` is None and the protocol pays one attribute check.

Reports go out as *binary* messages of JSON, so that the view can leave its
own reports out of what it shows (the chat protocol uses only text messages).
The tap is called with the connection's locks held, so it only queues the
bytes (at most :data:`MAX_QUEUED`; past it they are dropped and the view says
so). One thread per connection, made when its panel first opens and reused
each time it opens again, dissects them and queues the reports without ever
waiting for the client: while more than :data:`MAX_UNSENT_REPORTS` bytes of
reports wait to be written, new ones are dropped, and the next report that
goes out says how many were.
"""

from __future__ import annotations

import json
import logging
import threading
from collections import deque
from collections.abc import Callable, Iterator
from typing import Any

from ..dissect import DissectedFrame, FrameStream, fields, one_line
from ..exceptions import ConnectionClosed
from ..frames import Opcode
from ..sync.connection import Connection

__all__ = ["WireView", "with_wire_view", "MAX_QUEUED", "MAX_FRAMES_PER_REPORT", "MAX_UNSENT_REPORTS"]

logger = logging.getLogger("rawws.demo")

MAX_QUEUED = 256 * 1024
"""Tapped bytes waiting to be dissected; past it the view drops them and says so."""
MAX_FRAMES_PER_REPORT = 50
MAX_UNSENT_REPORTS = 256 * 1024
"""Report bytes waiting for the client to read them; past it new reports are dropped and counted."""
_TEXT_LIMIT = 300  # characters of a payload's text shown
_HEX_LIMIT = 48  # bytes of a payload shown in hex

SENT, RECEIVED = "browser → server", "server → browser"


class WireView:
    """Reports the frames of ``ws`` to ``ws`` while :meth:`start`-ed. Thread-safe.

    One worker thread per connection, made at the first :meth:`start` and
    reused by every later one, dissects the tapped bytes and queues the
    reports with :meth:`Connection.send_nowait`: it never waits for the
    client. When the client does not read, reports past
    :data:`MAX_UNSENT_REPORTS` bytes waiting to be written are dropped and the
    next report that goes out says how many. :meth:`close` ends the worker.
    """

    def __init__(self, ws: Connection) -> None:
        self.ws = ws
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._queue: deque[tuple[str, bytes]] = deque()
        self._queued = 0
        self._dropped = 0  # tapped bytes dropped since the worker last looked
        self._running = False
        self._closed = False
        self._generation = 0  # one per start: the worker starts its dissection afresh on a new one
        self._worker: threading.Thread | None = None

    @property
    def running(self) -> bool:
        return self._running

    def start(self) -> None:
        with self._lock:
            if self._running or self._closed:
                return
            self._running = True
            self._generation += 1
            self._wake.notify_all()
            if self._worker is None:
                self._worker = threading.Thread(target=self._run, name="rawws-wire-view", daemon=True)
                self._worker.start()
        self.ws.protocol.wire_tap = self._tap

    def stop(self) -> None:
        """Stop tapping; the worker stays, idle, for the next :meth:`start`."""
        with self._lock:
            self.ws.protocol.wire_tap = None
            self._running = False
            self._queue.clear()
            self._queued = 0
            self._dropped = 0
            self._wake.notify_all()

    def close(self) -> None:
        """Stop tapping for good and let the worker end (the connection is over)."""
        with self._lock:
            self._closed = True
        self.stop()

    def _tap(self, direction: str, data: bytes) -> None:
        """Protocol.wire_tap: called with the connection's locks held, so it only queues."""
        with self._lock:
            if self._queued + len(data) > MAX_QUEUED:
                self._dropped += len(data)
                return
            self._queue.append((direction, data))
            self._queued += len(data)
            self._wake.notify()

    def _take(self) -> tuple[int, list[tuple[str, bytes]], int] | None:
        """The generation, the chunks tapped and the bytes dropped since the last take; None once closed."""
        with self._lock:
            while not self._closed and not (self._running and (self._queue or self._dropped)):
                self._wake.wait()
            if self._closed:
                return None
            chunks = list(self._queue)
            self._queue.clear()
            self._queued = 0
            dropped, self._dropped = self._dropped, 0
            return self._generation, chunks, dropped

    def _run(self) -> None:
        deflate = bool(self.ws.protocol.extensions)
        generation = 0
        streams: dict[str, FrameStream] = {}
        dropped_reports = 0
        try:
            while True:
                taken = self._take()
                if taken is None:
                    return
                now, chunks, dropped = taken
                entries: list[dict[str, Any]] = []
                if now != generation or dropped:
                    # A new start, or bytes are missing: frame boundaries are lost, start both streams afresh.
                    generation = now
                    streams = {"<": FrameStream("client", deflate=deflate), ">": FrameStream("server", deflate=deflate)}
                if dropped:
                    entries.append({"error": f"the view fell behind and skipped {dropped} bytes"})
                for direction, data in chunks:
                    entries += self._entries(streams, direction, data, deflate)
                for start in range(0, len(entries), MAX_FRAMES_PER_REPORT):
                    if self.ws.buffered_amount > MAX_UNSENT_REPORTS:
                        dropped_reports += 1  # the client is not reading: never wait for it
                        continue
                    frames = entries[start : start + MAX_FRAMES_PER_REPORT]
                    if dropped_reports:
                        note = f"the client did not keep up: {dropped_reports} reports were dropped"
                        frames = [{"error": note}, *frames]
                        dropped_reports = 0
                    report = {"type": "wire", "payload": {"frames": frames}}
                    self.ws.send_nowait(json.dumps(report).encode("utf-8"))
        except ConnectionClosed:
            pass
        finally:
            with self._lock:
                self._closed = True
            self.stop()

    def _entries(
        self, streams: dict[str, FrameStream], direction: str, data: bytes, deflate: bool
    ) -> list[dict[str, Any]]:
        stream = streams[direction]
        entries = [
            _entry(direction, frame)
            for frame in stream.feed(data)
            if not (direction == ">" and frame.opcode == Opcode.BINARY)  # this view's own reports
        ]
        if stream.error is not None:
            entries.append({"dir": SENT if direction == "<" else RECEIVED, "error": str(stream.error)})
            streams[direction] = FrameStream("client" if direction == "<" else "server", deflate=deflate)
        return entries


def _entry(direction: str, frame: DissectedFrame) -> dict[str, Any]:
    rows = [[name, _cut(value), section] for name, value, section in fields(frame, _HEX_LIMIT)]
    return {
        "dir": SENT if direction == "<" else RECEIVED,
        "line": _cut(one_line(frame)),
        "opcode": frame.opcode,
        "masked": frame.masked,
        "rsv1": frame.rsv1,
        "text": None if frame.text is None else frame.text[:_TEXT_LIMIT],
        "fields": rows,
    }


def _cut(text: str) -> str:
    return text if len(text) <= _TEXT_LIMIT else text[:_TEXT_LIMIT] + "…"


def _wire_request(message: str | bytes) -> bool | None:
    """``True``/``False`` for the panel's on/off request, None for any other message."""
    if not isinstance(message, str) or not message.startswith('{"type":"wire"'):
        return None
    try:
        parsed = json.loads(message)
    except ValueError:
        return None
    payload = parsed.get("payload") if isinstance(parsed, dict) else None
    if parsed.get("type") != "wire" or not isinstance(payload, dict) or not isinstance(payload.get("on"), bool):
        return None
    on: bool = payload["on"]
    return on


class _WithoutWireRequests:
    """The connection as the chat handler sees it: the same object, minus the wire panel's requests."""

    _ws: Connection
    _view: WireView

    def __init__(self, ws: Connection, view: WireView) -> None:
        object.__setattr__(self, "_ws", ws)
        object.__setattr__(self, "_view", view)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._ws, name)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self._ws, name, value)

    def __iter__(self) -> Iterator[str | bytes]:
        for message in self._ws:
            request = _wire_request(message)
            if request is None:
                yield message
            elif request:
                self._view.start()
            else:
                self._view.stop()


def with_wire_view(handler: Callable[[Connection], None]) -> Callable[[Connection], None]:
    """Wrap a connection handler so that the page's wire panel can switch its connection's wire view on and off."""

    def handle(ws: Connection) -> None:
        view = WireView(ws)
        try:
            handler(_WithoutWireRequests(ws, view))  # type: ignore[arg-type]
        finally:
            view.close()

    return handle
