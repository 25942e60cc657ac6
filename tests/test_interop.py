"""Interop with the `websockets` package, both directions (RFC 6455 between two implementations)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed as WsConnectionClosed
from websockets.sync.client import connect as ws_connect

from rawws import ConnectionClosedError, ConnectionClosedOK
from rawws.sync.client import connect
from rawws.sync.server import Server
from tests.conftest import echo, scaled

StartServer = Callable[..., Server]
MIB = 2**20


# --- rawws server, websockets client -------------------------------------------------


def test_websockets_client_text_binary_large(start_server: StartServer) -> None:
    server = start_server(echo, max_size=4 * MIB)
    with ws_connect(f"ws://127.0.0.1:{server.port}/", max_size=4 * MIB, compression=None) as ws:
        ws.send("héllo")
        assert ws.recv(timeout=scaled(5)) == "héllo"
        ws.send(b"\x00\x01")
        assert ws.recv(timeout=scaled(5)) == b"\x00\x01"
        big = bytes(range(256)) * (MIB // 256)
        ws.send(big)
        assert ws.recv(timeout=scaled(10)) == big
        ws.send(["frag", "mented"])
        assert ws.recv(timeout=scaled(5)) == "fragmented"
        assert ws.ping(b"hi").wait(scaled(5))


def test_websockets_client_offering_compression_is_served_uncompressed(start_server: StartServer) -> None:
    server = start_server(echo)
    with ws_connect(f"ws://127.0.0.1:{server.port}/") as ws:  # offers permessage-deflate
        ws.send("plain")
        assert ws.recv(timeout=scaled(5)) == "plain"


def test_websockets_client_sees_our_close_code(start_server: StartServer) -> None:
    server = start_server(lambda ws: ws.close(4001, "policy says bye"))
    with ws_connect(f"ws://127.0.0.1:{server.port}/") as ws:
        with pytest.raises(WsConnectionClosed) as info:
            ws.recv(timeout=scaled(5))
    assert info.value.rcvd is not None
    assert (info.value.rcvd.code, info.value.rcvd.reason) == (4001, "policy says bye")


def test_websockets_client_close_code_reaches_handler(start_server: StartServer) -> None:
    seen: list[tuple[int, str]] = []
    done = threading.Event()

    def handler(ws: Any) -> None:
        try:
            ws.recv()
        except (ConnectionClosedOK, ConnectionClosedError) as exc:
            seen.append((exc.code, exc.reason))
        done.set()

    server = start_server(handler)
    with ws_connect(f"ws://127.0.0.1:{server.port}/") as ws:
        ws.close(1001, "leaving")
    assert done.wait(scaled(5))
    assert seen == [(1001, "leaving")]


# --- websockets server, rawws client ----------------------------------------------------


def test_rawws_client_against_websockets_server(websockets_server: Callable[..., int]) -> None:
    port = websockets_server(echo, max_size=4 * MIB)
    with connect(f"ws://127.0.0.1:{port}/path?q=1", max_size=4 * MIB) as ws:
        ws.send("héllo")
        assert ws.recv(timeout=scaled(5)) == "héllo"
        ws.send(b"\xff" * 10)
        assert ws.recv(timeout=scaled(5)) == b"\xff" * 10
        big = bytes(range(256)) * (MIB // 256)
        ws.send(big)
        assert ws.recv(timeout=scaled(10)) == big
        ws.send([b"ab", b"cd", b"ef"])
        assert ws.recv(timeout=scaled(5)) == b"abcdef"
        waiter = ws.ping(b"x")
        assert waiter.wait(scaled(5))


def test_websockets_server_fragmented_messages_to_rawws(websockets_server: Callable[..., int]) -> None:
    def handler(ws: Any) -> None:
        ws.send(["one ", "two ", "three"])
        ws.send(iter([b"\x01", b"\x02"]))

    port = websockets_server(handler)
    with connect(f"ws://127.0.0.1:{port}/") as ws:
        pieces = list(ws.recv_streaming(timeout=scaled(5)))
        # websockets cannot know which item is last, so it ends with an empty continuation frame.
        assert pieces[:3] == ["one ", "two ", "three"] and "".join(pieces) == "one two three"
        assert ws.recv(timeout=scaled(5)) == b"\x01\x02"


def test_websockets_server_close_codes_to_rawws(websockets_server: Callable[..., int]) -> None:
    port = websockets_server(lambda ws: ws.close(4002, "server policy"))
    with connect(f"ws://127.0.0.1:{port}/") as ws:
        with pytest.raises(ConnectionClosedError) as info:
            ws.recv(timeout=scaled(5))
    assert (info.value.code, info.value.reason, info.value.closed_by) == (4002, "server policy", "remote")


def test_rawws_client_close_reaches_websockets_server(websockets_server: Callable[..., int]) -> None:
    seen: list[Any] = []
    done = threading.Event()

    def handler(ws: Any) -> None:
        try:
            ws.recv()
        except WsConnectionClosed as exc:
            seen.append((exc.rcvd.code, exc.rcvd.reason))
        done.set()

    port = websockets_server(handler)
    ws = connect(f"ws://127.0.0.1:{port}/")
    ws.close(1000, "bye")
    assert done.wait(scaled(5))
    assert seen == [(1000, "bye")]
    assert ws.close_code == 1000
