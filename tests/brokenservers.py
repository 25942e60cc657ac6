"""Deliberately broken WebSocket echo servers, for the fuzzer to find their bugs.

Each is a small, hand-written server (not rawws's): it does the opening
handshake, answers pings, echoes messages and handles the closing handshake
correctly, except for the one rule it breaks:

- ``accepts_unmasked``: takes unmasked client frames (§5.1 says close);
- ``no_utf8_check``: passes invalid UTF-8 text through (§8.1 says fail with 1007);
- ``ignores_close_codes``: answers any close frame with 1000, whatever its code (§7.4.1 says fail with 1002).
"""

from __future__ import annotations

import base64
import socket
import threading
from types import TracebackType

from rawws.frames import apply_mask, encode_header, is_valid_close_code
from rawws.handshake import accept_key

__all__ = ["BrokenServer", "BUGS"]

BUGS = ("accepts_unmasked", "no_utf8_check", "ignores_close_codes")
MAX_SIZE = 2**20


def _key_ok(key: str) -> bool:
    try:
        return len(base64.b64decode(key, validate=True)) == 16
    except ValueError:
        return False


class _Fail(Exception):
    def __init__(self, code: int) -> None:
        self.code = code


class BrokenServer:
    """A threaded echo server on 127.0.0.1 with one bug; a context manager. ``port`` is where it listens."""

    def __init__(self, bug: str) -> None:
        assert bug in BUGS
        self.bug = bug
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.1)  # accept() wakes up to see that the server is stopping
        self.port = self.listener.getsockname()[1]
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def __enter__(self) -> BrokenServer:
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.stopping.set()
        self.thread.join(5)
        self.listener.close()

    def _accept(self) -> None:
        while not self.stopping.is_set():
            try:
                sock, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=self._serve, args=(sock,), daemon=True).start()

    def _serve(self, sock: socket.socket) -> None:
        sock.settimeout(10)
        with sock:
            try:
                buffer = self._handshake(sock)
                if buffer is not None:
                    self._frames(sock, buffer)
                    self._linger(sock)
            except _Fail as failure:
                self._send(sock, 0x8, failure.code.to_bytes(2, "big"))
                self._linger(sock)
            except OSError:
                pass

    @staticmethod
    def _linger(sock: socket.socket) -> None:
        """Close TCP without losing the close frame: stop writing, read what the client still sends, then close.

        (Closing a socket with unread input makes the kernel send a reset, which can
        destroy the close frame before the client reads it.)
        """
        try:
            sock.shutdown(socket.SHUT_WR)
            sock.settimeout(1)
            for _ in range(100):
                if not sock.recv(65536):
                    return
        except OSError:
            pass

    def _handshake(self, sock: socket.socket) -> bytearray | None:
        data = bytearray()
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(4096)
            if not chunk:
                return None
            data += chunk
        head, rest = bytes(data).split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
        key = headers.get("sec-websocket-key", "")
        if not lines[0].startswith("GET ") or headers.get("sec-websocket-version") != "13" or not _key_ok(key):
            sock.sendall(b"HTTP/1.1 426 Upgrade Required\r\nSec-WebSocket-Version: 13\r\nContent-Length: 0\r\n\r\n")
            return None
        sock.sendall(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Accept: " + accept_key(key).encode() + b"\r\n\r\n"
        )
        return bytearray(rest)

    @staticmethod
    def _send(sock: socket.socket, opcode: int, payload: bytes) -> None:
        sock.sendall(encode_header(0x80 | opcode, len(payload)) + payload)

    def _frames(self, sock: socket.socket, buffer: bytearray) -> None:
        message: bytearray | None = None
        message_opcode = 0
        while True:
            frame = self._next(sock, buffer)
            if frame is None:
                return
            fin, opcode, payload = frame
            if opcode == 0x9:
                self._send(sock, 0xA, payload)
            elif opcode == 0xA:
                pass
            elif opcode == 0x8:
                self._send(sock, 0x8, self._close_reply(payload))
                return  # the server closes TCP first (§7.1.1)
            elif opcode == 0x0:
                if message is None:
                    raise _Fail(1002)
                message += payload
                if fin:
                    self._deliver(sock, message_opcode, bytes(message))
                    message = None
            else:
                if message is not None:
                    raise _Fail(1002)
                if fin:
                    self._deliver(sock, opcode, payload)
                else:
                    message, message_opcode = bytearray(payload), opcode

    def _close_reply(self, payload: bytes) -> bytes:
        if not payload:
            return b""
        if len(payload) == 1:
            raise _Fail(1002)
        code = int.from_bytes(payload[:2], "big")
        if not is_valid_close_code(code) and self.bug != "ignores_close_codes":  # THE BUG when skipped
            raise _Fail(1002)
        try:
            payload[2:].decode("utf-8")
        except UnicodeDecodeError:
            raise _Fail(1007) from None
        return (1000).to_bytes(2, "big") if self.bug == "ignores_close_codes" else payload[:2]

    def _deliver(self, sock: socket.socket, opcode: int, data: bytes) -> None:
        if opcode == 0x1 and self.bug != "no_utf8_check":  # THE BUG when skipped
            try:
                data.decode("utf-8")
            except UnicodeDecodeError:
                raise _Fail(1007) from None
        self._send(sock, opcode, data)

    def _next(self, sock: socket.socket, buffer: bytearray) -> tuple[bool, int, bytes] | None:
        while True:
            frame = self._parse(buffer)
            if frame is not None:
                return frame
            chunk = sock.recv(65536)
            if not chunk:
                return None
            buffer += chunk

    def _parse(self, buffer: bytearray) -> tuple[bool, int, bytes] | None:
        if len(buffer) < 2:
            return None
        first, second = buffer[0], buffer[1]
        opcode, masked = first & 0x0F, bool(second & 0x80)
        if first & 0x70 or opcode in (3, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF):
            raise _Fail(1002)
        if not masked and self.bug != "accepts_unmasked":  # THE BUG when skipped
            raise _Fail(1002)
        if opcode >= 8 and not first & 0x80:
            raise _Fail(1002)
        length, at = second & 0x7F, 2
        if length == 126:
            if len(buffer) < 4:
                return None
            length, at = int.from_bytes(buffer[2:4], "big"), 4
        elif length == 127:
            if len(buffer) < 10:
                return None
            length, at = int.from_bytes(buffer[2:10], "big"), 10
            if length >> 63:
                raise _Fail(1002)
        if opcode >= 8 and length > 125:
            raise _Fail(1002)
        if length > MAX_SIZE:
            raise _Fail(1009)
        key = bytes(buffer[at : at + 4]) if masked else None
        at += 4 if masked else 0
        if len(buffer) < at + length:
            return None
        payload = bytes(buffer[at : at + length])
        del buffer[: at + length]
        return bool(first & 0x80), opcode, apply_mask(payload, key) if key else payload
