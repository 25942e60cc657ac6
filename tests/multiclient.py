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
from tests.conftest import scaled

__all__ = ["MultiClient", "FirehoseTally"]


class MultiClient:
    def __init__(self, port: int | list[int], count: int, path: str = "/") -> None:
        ports = port if isinstance(port, list) else [port]
        self.selector = selectors.DefaultSelector()
        self.sockets: list[socket.socket] = []
        self.parsers: list[FrameParser] = []
        self.closed: list[int | None] = [None] * count  # close code received, per client
        self.eof = [False] * count  # whether the server closed TCP, per client
        for index in range(count):
            sock = socket.create_connection(("127.0.0.1", ports[index % len(ports)]), timeout=scaled(10))
            request = (
                f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Key: {generate_key()}\r\nSec-WebSocket-Version: 13\r\n\r\n"
            )
            sock.sendall(request.encode())
            head = HeadParser("response")
            response = None
            while response is None:
                data = sock.recv(65536)
                if not data:
                    raise ConnectionError(f"client {index}: the server closed the connection during the handshake")
                response = head.feed(data)
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
        self._send(index, 0x81, text.encode())

    def _send(self, index: int, first_byte: int, payload: bytes) -> None:
        key = os.urandom(4)
        frame = encode_header(first_byte, len(payload), key) + apply_mask(payload, key)
        sock = self.sockets[index]
        sock.settimeout(scaled(10))
        sock.sendall(frame)
        sock.setblocking(False)

    def _frames(self, index: int, data: bytes, on_text: Callable[[int, str], None]) -> None:
        for frame in self.parsers[index].feed(data):
            if frame.opcode == 1:
                on_text(index, frame.payload.decode())
            elif frame.opcode == 8:
                self.closed[index] = int.from_bytes(frame.payload[:2], "big") if frame.payload else 1005
            elif frame.opcode == 9:  # answer keepalive pings (only while run() reads)
                self._send(index, 0x8A, frame.payload)

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
                except ConnectionResetError:
                    data = b""
                if not data:
                    self.eof[index] = True
                    self.selector.unregister(key.fileobj)
                    continue
                self._frames(index, data, on_text)
        return True

    def close_codes(self) -> dict[str, int]:
        """How many clients got each close code, or lost the connection without one (for failure messages)."""
        summary: dict[str, int] = {}
        for code, eof in zip(self.closed, self.eof, strict=True):
            if code is not None or eof:
                label = f"closed {code}" if code is not None else "EOF without a close frame"
                summary[label] = summary.get(label, 0) + 1
        return summary

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
