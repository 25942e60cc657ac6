"""Many WebSocket clients on one thread: raw sockets, one selector, rawws's frame parser.

For fan-out tests with hundreds of subscribers: a thread per client would
spend the test's time fighting over the GIL instead of reading.
"""

from __future__ import annotations

import json
import os
import selectors
import socket
import time
from collections.abc import Callable

from rawws.frames import FrameParser, apply_mask, encode_header
from rawws.handshake import generate_key
from rawws.http11 import HeadParser, Response

__all__ = ["MultiClient", "FirehoseTally"]


class MultiClient:
    def __init__(self, port: int | list[int], count: int, path: str = "/") -> None:
        ports = port if isinstance(port, list) else [port]
        self.selector = selectors.DefaultSelector()
        self.sockets: list[socket.socket] = []
        self.parsers: list[FrameParser] = []
        self.closed: list[int | None] = [None] * count  # close code received, per client
        for index in range(count):
            sock = socket.create_connection(("127.0.0.1", ports[index % len(ports)]), timeout=10)
            request = (
                f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Key: {generate_key()}\r\nSec-WebSocket-Version: 13\r\n\r\n"
            )
            sock.sendall(request.encode())
            head = HeadParser("response")
            response = None
            while response is None:
                response = head.feed(sock.recv(65536))
            assert isinstance(response, Response) and response.status == 101
            parser = FrameParser(mask_expected=False, max_size=None)
            self.sockets.append(sock)
            self.parsers.append(parser)
            self.pending_leftover = head.remainder
            sock.setblocking(False)
            self.selector.register(sock, selectors.EVENT_READ, index)
            if head.remainder:
                self._frames(index, head.remainder, lambda i, t: None)

    def send_text(self, index: int, text: str) -> None:
        key = os.urandom(4)
        data = text.encode()
        frame = encode_header(0x81, len(data), key) + apply_mask(data, key)
        sock = self.sockets[index]
        sock.setblocking(True)
        sock.sendall(frame)
        sock.setblocking(False)

    def _frames(self, index: int, data: bytes, on_text: Callable[[int, str], None]) -> None:
        for frame in self.parsers[index].feed(data):
            if frame.opcode == 1:
                on_text(index, frame.payload.decode())
            elif frame.opcode == 8:
                self.closed[index] = int.from_bytes(frame.payload[:2], "big") if frame.payload else 1005
            elif frame.opcode == 9:  # answer keepalive pings
                key = os.urandom(4)
                pong = encode_header(0x8A, len(frame.payload), key) + apply_mask(frame.payload, key)
                self.sockets[index].send(pong)

    def run(self, on_text: Callable[[int, str], None], until: Callable[[], bool], timeout: float) -> bool:
        """Read from every client, calling ``on_text(index, text)``, until ``until()`` or ``timeout``."""
        end = time.monotonic() + timeout
        while not until():
            remaining = end - time.monotonic()
            if remaining <= 0:
                return False
            for key, _ in self.selector.select(min(remaining, 0.5)):
                index = key.data
                try:
                    data = key.fileobj.recv(1 << 20)  # type: ignore[union-attr]
                except BlockingIOError:
                    continue
                if not data:
                    self.selector.unregister(key.fileobj)
                    continue
                self._frames(index, data, on_text)
        return True

    def close(self) -> None:
        for sock in self.sockets:
            sock.close()
        self.selector.close()


class FirehoseTally:
    """What each of ``count`` subscribers got of the pub/sub protocol's ``[publisher, seq]`` messages."""

    def __init__(self, count: int) -> None:
        self.subscribed = [False] * count
        self.seen: list[dict[int, list[int]]] = [{} for _ in range(count)]
        self.counts = [0] * count

    def on_text(self, index: int, text: str) -> None:
        message = json.loads(text)
        if message["type"] == "subscribed":
            self.subscribed[index] = True
        elif message["type"] == "message":
            publisher, seq = message["payload"]["message"]
            self.seen[index].setdefault(publisher, []).append(seq)
            self.counts[index] += 1
