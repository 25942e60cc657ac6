"""The servers under test, one per process: ``python benchmarks/servers.py KIND PORT``.

KIND is one of:

- ``rawws``               rawws, compression off
- ``websockets``          the websockets package's sync (threading) server, compression off
- ``websockets-deflate``  the same with permessage-deflate on
- ``tcp``                 a bare thread-per-connection TCP echo server, 4-byte length prefix:
                          the ceiling for a threaded Python server on this machine
- ``rawws-broker``        ``rawws.serve_broker()``: the pub/sub server and its JSON protocol
- ``websockets-relay``    the peer for ``rawws-broker``: websockets' sync (threading) server with a
                          minimal room relay that speaks the part of the same JSON protocol the
                          benchmarks use (``subscribe``, ``presence``, ``chat``, ``publish``), since
                          websockets has no broker of its own. Each message to a room is encoded
                          once and sent to each member in turn from the sender's thread with
                          websockets' blocking, thread-safe ``send()`` (no queue per client: a
                          member that does not read holds the sender up, where rawws's broker
                          would queue and, past its limit, close it).
- ``KIND-quiet``          (``rawws-broker``, ``websockets-relay``) the same without the ``presence``
                          messages: each join announces itself to every member of the channel,
                          so N subscribers of one channel cost N²/2 messages to set up (50
                          million for 10,000), more than the burst measured after them. rawws's is
                          dropped by a ``MessageBroker`` subclass given to ``serve_broker()``.

WebSocket servers answer three paths: ``/`` echoes, ``/sub`` registers a
subscriber (answered with ``ready``), ``/pub`` broadcasts each message it
receives to every subscriber and answers with the count and the seconds the
server spent sending.
Prints ``ready PORT [DIR]`` on stdout once listening, DIR being the checkout rawws was imported
from (for the servers that use rawws).
"""

from __future__ import annotations

import os
import resource
import socket
import struct
import sys
import threading
import time
from typing import Any

# RAWWS_SOURCE: measure rawws from another checkout (run.py --rawws-before DIR).
sys.path.insert(0, os.environ.get("RAWWS_SOURCE") or os.path.join(os.path.dirname(__file__), ".."))


def ready(port: int) -> None:
    """Tell run.py the port, and where rawws came from if this server uses it (``--rawws-before``)."""
    rawws = sys.modules.get("rawws")
    print(
        "ready",
        port,
        os.path.dirname(os.path.dirname(os.path.abspath(rawws.__file__ or ""))) if rawws else "",
        flush=True,
    )


def raise_fd_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def run_rawws(port: int, compression: str | None) -> None:
    import rawws

    subscribers: set[Any] = set()
    lock = threading.Lock()

    def handler(ws: Any) -> None:
        path = ws.request.path
        if path == "/sub":
            with lock:
                subscribers.add(ws)
            try:
                ws.send("ready")
                for _ in ws:
                    pass
            finally:
                with lock:
                    subscribers.discard(ws)
        elif path == "/pub":
            for message in ws:
                with lock:
                    targets = list(subscribers)
                start = time.perf_counter()
                count = rawws.broadcast(targets, message)
                ws.send(f"{count} {time.perf_counter() - start}")
        else:
            for message in ws:
                ws.send(message)

    options: dict[str, Any] = {"max_size": 16 * 2**20, "compression": compression}
    server = rawws.serve(handler, "127.0.0.1", port, **options)
    ready(server.port)
    server.serve_forever()


def run_websockets(port: int, compression: str | None) -> None:
    from websockets.exceptions import ConnectionClosed
    from websockets.sync.server import serve

    subscribers: set[Any] = set()
    lock = threading.Lock()

    def handler(ws: Any) -> None:
        path = ws.request.path
        if path == "/sub":
            with lock:
                subscribers.add(ws)
            try:
                ws.send("ready")
                for _ in ws:
                    pass
            finally:
                with lock:
                    subscribers.discard(ws)
        elif path == "/pub":
            for message in ws:
                with lock:
                    targets = list(subscribers)
                sent = 0
                start = time.perf_counter()
                for target in targets:  # the sync API has no broadcast(): one send per connection
                    try:
                        target.send(message)
                        sent += 1
                    except ConnectionClosed:
                        pass
                ws.send(f"{sent} {time.perf_counter() - start}")
        else:
            for message in ws:
                ws.send(message)

    with serve(handler, "127.0.0.1", port, compression=compression, max_size=16 * 2**20) as server:
        ready(server.socket.getsockname()[1])
        server.serve_forever()


def run_rawws_broker(port: int, presence: bool) -> None:
    import rawws

    class QuietBroker(rawws.MessageBroker):
        """Drops the server's ``presence`` announcements (the server publishes ``(text, exclude)``)."""

        def publish(self, channel: str, message: Any) -> int:
            text = message[0] if isinstance(message, tuple) else message
            if isinstance(text, str) and text.startswith('{"type":"presence"'):
                return 0
            return super().publish(channel, message)

    server = rawws.serve_broker("127.0.0.1", port, broker=None if presence else QuietBroker())
    ready(server.port)
    server.serve_forever()


def run_websockets_relay(port: int, presence: bool) -> None:
    import json

    from websockets.exceptions import ConnectionClosed
    from websockets.sync.server import serve

    rooms: dict[str, set[Any]] = {}
    lock = threading.Lock()

    def envelope(kind: str, payload: Any) -> str:
        return json.dumps(
            {"type": kind, "payload": payload, "timestamp": int(time.time() * 1000)}, separators=(",", ":")
        )

    def send_all(targets: list[Any], text: str) -> int:
        sent = 0
        for target in targets:
            try:
                target.send(text)
                sent += 1
            except ConnectionClosed:
                pass
        return sent

    def members(channel: str) -> list[Any]:
        with lock:
            return list(rooms.get(channel, ()))

    def handler(ws: Any) -> None:
        joined: set[str] = set()
        try:
            for raw in ws:
                try:
                    message = json.loads(raw)
                    kind, payload = message["type"], message["payload"]
                    channel = payload["channel"]
                    if not isinstance(channel, str):
                        raise TypeError
                except (ValueError, KeyError, TypeError):
                    ws.send(envelope("error", {"error": "expected {type, payload: {channel, ...}}"}))
                    continue
                if kind == "subscribe":
                    with lock:
                        room = rooms.setdefault(channel, set())
                        room.add(ws)
                        count = len(room)
                    joined.add(channel)
                    ws.send(envelope("subscribed", {"channel": channel, "subscribers": count}))
                    if presence:
                        send_all(members(channel), envelope("presence", {"channel": channel, "count": count}))
                elif kind == "chat":
                    out = {"channel": channel, "text": payload.get("text"), "user": payload.get("user")}
                    send_all(members(channel), envelope("chat", out))
                elif kind == "publish":
                    out = {"channel": channel, "message": payload.get("message")}
                    notified = send_all(members(channel), envelope("message", out))
                    ws.send(envelope("published", {"channel": channel, "notified": notified}))
                else:
                    ws.send(envelope("error", {"error": f"unknown message type {kind!r}", "type": kind}))
        except ConnectionClosed:
            pass
        finally:
            with lock:
                for channel in joined:
                    left = rooms.get(channel)
                    if left is not None:
                        left.discard(ws)
                        if not left:
                            del rooms[channel]

    with serve(handler, "127.0.0.1", port, compression=None, max_size=65536) as server:
        ready(server.socket.getsockname()[1])
        server.serve_forever()


def run_tcp(port: int) -> None:
    def recv_exactly(sock: socket.socket, n: int) -> bytes | None:
        buffer = bytearray(n)
        view = memoryview(buffer)
        got = 0
        while got < n:
            count = sock.recv_into(view[got:])
            if not count:
                return None
            got += count
        return bytes(buffer)

    def handle(sock: socket.socket) -> None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with sock:
            while True:
                header = recv_exactly(sock, 4)
                if header is None:
                    return
                (length,) = struct.unpack("!I", header)
                body = recv_exactly(sock, length) if length else b""
                if body is None:
                    return
                sock.sendall(header + body)

    listener = socket.create_server(("127.0.0.1", port), backlog=4096)
    ready(listener.getsockname()[1])
    threading.stack_size(512 * 1024)
    while True:
        client, _ = listener.accept()
        threading.Thread(target=handle, args=(client,), daemon=True).start()


def main() -> None:
    kind, port = sys.argv[1], int(sys.argv[2])
    presence = not kind.endswith("-quiet")
    kind = kind.removesuffix("-quiet")
    raise_fd_limit()
    if kind == "rawws":
        run_rawws(port, None)
    elif kind == "rawws-deflate":
        run_rawws(port, "deflate")
    elif kind == "websockets":
        run_websockets(port, None)
    elif kind == "websockets-deflate":
        run_websockets(port, "deflate")
    elif kind == "websockets-relay":
        run_websockets_relay(port, presence)
    elif kind == "tcp":
        run_tcp(port)
    elif kind == "rawws-broker":
        run_rawws_broker(port, presence)
    else:
        raise SystemExit(f"unknown server kind {kind!r}")


if __name__ == "__main__":
    main()
