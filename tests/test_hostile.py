"""A hostile peer against the rawws server: every misbehaviour gets the exact answer (RFC 6455 §4, §5, §7)."""

from __future__ import annotations

import socket
import struct
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from rawws.exceptions import ConnectionClosedError
from rawws.sync.server import Server
from tests.conftest import echo, scaled, wait_until
from tests.hostile import DEFAULT_REQUEST, HostilePeer

StartServer = Callable[..., Server]


def refusal(port: int, raw: str) -> tuple[int, dict[str, str], bytes]:
    with HostilePeer(port) as peer:
        peer.send_raw(raw.encode())
        response = peer.read_http()
        return response.status, dict(response.headers.items()), peer.leftover


@pytest.mark.parametrize(
    ("request_text", "status"),
    [
        (DEFAULT_REQUEST.replace("Version: 13", "Version: 8"), 426),
        (DEFAULT_REQUEST.replace("{key}", "c2hvcnQ="), 400),
        (DEFAULT_REQUEST.replace("GET", "POST"), 405),
        (DEFAULT_REQUEST.replace("Upgrade: websocket\r\n", ""), 426),
        (DEFAULT_REQUEST.replace("HTTP/1.1", "HTTP/1.0"), 505),
        (DEFAULT_REQUEST.replace("Connection: Upgrade", "Connection: keep-alive"), 400),
        ("GET / HTTP/1.1\r\n" + "X: " + "a" * 10000 + "\r\n\r\n{key}{extra}", 431),
    ],
)
def test_bad_handshakes_get_specific_statuses(start_server: StartServer, request_text: str, status: int) -> None:
    server = start_server(echo)
    got, headers, body = refusal(server.port, request_text.format(key="dGhlIHNhbXBsZSBub25jZQ==", extra=""))
    assert got == status
    if status == 426:
        assert headers.get("Sec-WebSocket-Version") == "13"


def test_wrong_origin_is_403(start_server: StartServer) -> None:
    server = start_server(echo, origins=["https://good.example"])
    status, _, body = refusal(
        server.port, DEFAULT_REQUEST.format(key="dGhlIHNhbXBsZSBub25jZQ==", extra="Origin: https://evil.example\r\n")
    )
    assert status == 403
    assert b"evil.example" in body


def test_unmasked_client_frame_is_1002(start_server: StartServer) -> None:
    server = start_server(echo)
    with HostilePeer(server.port) as peer:
        peer.handshake()
        peer.send_frame(1, b"hello", mask=False)
        assert peer.expect_close()[0] == 1002
        peer.expect_eof()


def test_invalid_utf8_split_across_fragments_fails_at_once(start_server: StartServer) -> None:
    server = start_server(echo)
    with HostilePeer(server.port) as peer:
        peer.handshake()
        peer.send_frame(1, b"caf\xc3", fin=False)  # valid so far: an incomplete 2-byte sequence
        peer.send_frame(0, b"\x28", fin=False)  # now certainly invalid; the message is still unfinished
        code, _ = peer.expect_close(timeout=scaled(2))
        assert code == 1007


@pytest.mark.parametrize("code", [0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000])
def test_invalid_close_codes_are_1002(start_server: StartServer, code: int) -> None:
    server = start_server(echo)
    with HostilePeer(server.port) as peer:
        peer.handshake()
        peer.send_frame(8, struct.pack("!H", code))
        assert peer.expect_close()[0] == 1002


def test_126_byte_ping_is_1002(start_server: StartServer) -> None:
    server = start_server(echo)
    with HostilePeer(server.port) as peer:
        peer.handshake()
        peer.send_frame(9, bytes(126))
        assert peer.expect_close()[0] == 1002


def test_fragmented_control_frame_is_1002(start_server: StartServer) -> None:
    server = start_server(echo)
    with HostilePeer(server.port) as peer:
        peer.handshake()
        peer.send_frame(9, b"x", fin=False)
        assert peer.expect_close()[0] == 1002


def test_oversized_frame_is_1009_before_its_payload(start_server: StartServer) -> None:
    server = start_server(echo, max_size=1000)
    with HostilePeer(server.port) as peer:
        peer.handshake()
        # Only the header of a 1 GB frame: the answer must not wait for the payload.
        peer.send_raw(bytes([0x82, 0xFF]) + (10**9).to_bytes(8, "big") + b"mask")
        assert peer.expect_close(timeout=scaled(2))[0] == 1009


def test_messages_before_a_violation_are_answered_before_the_close(start_server: StartServer) -> None:
    server = start_server(echo)
    with HostilePeer(server.port) as peer:
        peer.handshake()
        burst = peer.frame_bytes(1, b"one") + peer.frame_bytes(1, b"two") + peer.frame_bytes(3, b"")
        peer.send_raw(burst)
        first, second, close = peer.read_frame(), peer.read_frame(), peer.read_frame()
        assert (first.payload, second.payload) == (b"one", b"two")
        assert close.opcode == 8 and close.payload[:2] == struct.pack("!H", 1002)


def test_reset_in_the_middle_of_a_frame(start_server: StartServer) -> None:
    outcome: list[BaseException] = []
    done = threading.Event()

    def handler(ws: Any) -> None:
        if ws.request.path == "/echo":
            return echo(ws)
        try:
            ws.recv()
        except BaseException as exc:
            outcome.append(exc)
        finally:
            done.set()

    server = start_server(handler)
    peer = HostilePeer(server.port)
    peer.handshake()
    peer.send_raw(peer.frame_bytes(2, bytes(1000))[:500])
    peer.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    peer.close()  # RST
    assert done.wait(scaled(5))
    assert isinstance(outcome[0], ConnectionClosedError)
    assert outcome[0].code == 1006
    # And the server still serves others.
    with HostilePeer(server.port) as other:
        other.send_raw(
            DEFAULT_REQUEST.replace("GET /", "GET /echo").format(key="dGhlIHNhbXBsZSBub25jZQ==", extra="").encode()
        )
        assert other.read_http().status == 101
        other.send_frame(1, b"still here")
        assert other.read_frame().payload == b"still here"


def test_peer_that_never_finishes_the_handshake_is_dropped(start_server: StartServer) -> None:
    server = start_server(echo, open_timeout=0.5)
    with HostilePeer(server.port) as peer:
        peer.send_raw(b"GET / HTTP/1.1\r\nHost: x\r\n")  # ... and nothing more (slowloris)
        assert peer.expect_eof(timeout=scaled(5)) < 3


def test_garbage_instead_of_http(start_server: StartServer) -> None:
    server = start_server(echo)
    status, _, _ = refusal(server.port, "\x16\x03\x01 this is not HTTP\r\n\r\n")
    assert status == 400


def test_server_closes_tcp_after_the_closing_handshake(start_server: StartServer) -> None:
    server = start_server(echo)
    with HostilePeer(server.port) as peer:
        peer.handshake()
        peer.send_frame(8, struct.pack("!H", 1000) + b"bye")
        assert peer.expect_close()[0] == 1000
        # §7.1.1: the server closes first, at once, not after its close_timeout (the fixture's: 3 s or more).
        assert peer.expect_eof(timeout=scaled(3)) < 2


def test_close_timeout_when_the_peer_never_answers(start_server: StartServer) -> None:
    closed_after: list[float] = []

    def handler(ws: Any) -> None:
        start = time.monotonic()
        ws.close()
        closed_after.append(time.monotonic() - start)

    server = start_server(handler, close_timeout=0.5)
    with HostilePeer(server.port) as peer:
        peer.handshake()
        assert peer.expect_close()[0] == 1000  # ... and we never answer
        assert wait_until(lambda: bool(closed_after), scaled(5))
    assert closed_after[0] < 3
