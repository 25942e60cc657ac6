"""A raw-socket peer that writes hand-crafted bytes and reads the exact answer.

It speaks just enough WebSocket to misbehave on purpose: it builds frames with
:func:`rawws.frames.encode_header` and masks (or not) as each test wants.
"""

from __future__ import annotations

import os
import socket
import time

from rawws.frames import Frame, FrameParser, apply_mask, encode_header
from rawws.handshake import generate_key
from rawws.http11 import HeadParser, Response
from tests.conftest import scaled

__all__ = ["HostilePeer"]

DEFAULT_REQUEST = (
    "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    "Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
)


class HostilePeer:
    def __init__(self, port: int, timeout: float | None = None) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=scaled(5.0) if timeout is None else timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.parser = FrameParser(mask_expected=False, max_size=None)
        self.frames: list[Frame] = []
        self.leftover = b""

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> HostilePeer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- handshake -------------------------------------------------------------------

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def read_http(self) -> Response:
        parser = HeadParser("response")
        while True:
            data = self.sock.recv(65536)
            if not data:
                raise ConnectionError("closed before a response")
            response = parser.feed(data)
            if response is not None:
                assert isinstance(response, Response)
                self.leftover = parser.remainder
                return response

    def handshake(self, extra_headers: str = "") -> Response:
        self.send_raw(DEFAULT_REQUEST.format(key=generate_key(), extra=extra_headers).encode())
        response = self.read_http()
        assert response.status == 101, response
        if self.leftover:
            self.frames.extend(self.parser.feed(self.leftover))
        return response

    # --- frames --------------------------------------------------------------------------

    def frame_bytes(
        self, opcode: int, payload: bytes = b"", *, fin: bool = True, mask: bool = True, rsv: int = 0
    ) -> bytes:
        first = (0x80 if fin else 0) | rsv | opcode
        if not mask:
            return encode_header(first, len(payload)) + payload
        key = os.urandom(4)
        return encode_header(first, len(payload), key) + apply_mask(payload, key)

    def send_frame(self, opcode: int, payload: bytes = b"", **kwargs: bool | int) -> None:
        self.send_raw(self.frame_bytes(opcode, payload, **kwargs))  # type: ignore[arg-type]

    def read_frame(self, timeout: float | None = None) -> Frame:
        """The next frame, waiting at most ``timeout`` (default ``scaled(5)``)."""
        end = time.monotonic() + (scaled(5.0) if timeout is None else timeout)
        while not self.frames:
            self.sock.settimeout(max(0.01, end - time.monotonic()))
            data = self.sock.recv(65536)
            if not data:
                raise ConnectionError("EOF while waiting for a frame")
            self.frames.extend(self.parser.feed(data))
        return self.frames.pop(0)

    def expect_close(self, timeout: float | None = None) -> tuple[int, bytes]:
        """Read frames until a close frame; return its code and reason bytes. ``timeout`` is per frame."""
        while True:
            frame = self.read_frame(timeout)
            if frame.opcode == 8:
                code = int.from_bytes(frame.payload[:2], "big") if frame.payload else 1005
                return code, frame.payload[2:]

    def expect_eof(self, timeout: float | None = None) -> float:
        """Wait (at most ``timeout``, default ``scaled(5)``) for the server to close TCP; return how long it took."""
        start = time.monotonic()
        self.sock.settimeout(scaled(5.0) if timeout is None else timeout)
        while True:
            try:
                data = self.sock.recv(65536)
            except ConnectionResetError:
                return time.monotonic() - start
            if not data:
                return time.monotonic() - start
