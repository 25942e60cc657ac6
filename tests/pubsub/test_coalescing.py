"""Deliveries under load: framed once per publish, written by the flusher, a backlog in one system call."""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

import rawws.pubsub.server as pubsub_server
from rawws import connect, serve_broker
from rawws.frames import FrameParser
from rawws.http11 import Request, Response
from rawws.protocol import SERVER, Protocol
from rawws.pubsub.flusher import Flusher
from rawws.sync.connection import Connection
from rawws.sync.options import ConnectionOptions
from rawws.sync.sending import coalesce
from tests.conftest import scaled, wait_until


def flusher_threads(name: str) -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == name]


def test_the_flusher_runs_writes_in_order_on_its_own_thread_and_ends_when_idle() -> None:
    flusher = Flusher(name="test-writer-order", idle_exit=0.2)
    calls: list[tuple[int, int]] = []
    done = threading.Event()
    for n in range(3):
        flusher.schedule(lambda n=n: calls.append((n, threading.get_ident())))  # type: ignore[misc]
    flusher.schedule(done.set)
    assert done.wait(scaled(5))
    assert [n for n, _ in calls] == [0, 1, 2]
    assert {ident for _, ident in calls} != {threading.get_ident()}
    assert wait_until(lambda: not flusher_threads("test-writer-order"), scaled(5))  # idle: no thread kept
    again = threading.Event()
    flusher.schedule(again.set)  # and a new one starts for the next write
    assert again.wait(scaled(5))


def test_a_failing_write_is_logged_and_the_next_one_still_runs(caplog: pytest.LogCaptureFixture) -> None:
    flusher = Flusher(name="test-writer-fail", idle_exit=0.2)
    done = threading.Event()

    def broken() -> None:
        raise RuntimeError("boom")

    with caplog.at_level(logging.ERROR, logger="rawws.pubsub"):
        flusher.schedule(broken)
        flusher.schedule(done.set)
        assert done.wait(scaled(5))
    assert "writing queued messages failed" in caplog.text


def test_without_a_thread_to_be_had_the_write_runs_in_the_callers_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    flusher = Flusher(name="test-writer-nothread", idle_exit=0.2)

    def refuse(self: threading.Thread) -> None:
        raise RuntimeError("can't start new thread")

    monkeypatch.setattr(threading.Thread, "start", refuse)
    calls: list[int] = []
    flusher.schedule(lambda: calls.append(threading.get_ident()))
    assert calls == [threading.get_ident()]
    monkeypatch.undo()
    done = threading.Event()
    flusher.schedule(done.set)  # and the next one gets the thread again
    assert done.wait(scaled(5))


def test_coalesce_joins_small_buffers_and_keeps_large_ones() -> None:
    small = [b"ab", b"cd", b"ef"]
    assert coalesce(small) == [b"abcdef"]
    big = bytes(300_000)
    assert coalesce([b"h1", b"p1", b"h2", big, b"h3"], limit=1000) == [b"h1p1h2", big, b"h3"]
    assert coalesce([b"x" * 600, b"y" * 600, b"z"], limit=1000) == [b"x" * 600 + b"y" * 600, b"z"]


class CountingSocket:
    """A socket that counts ``send`` calls and passes everything else through."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self.sends = 0

    def send(self, data: Any, *flags: int) -> int:
        self.sends += 1
        return self._sock.send(data, *flags)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


def test_a_backlog_of_small_messages_leaves_in_one_system_call() -> None:
    ours, theirs = socket.socketpair()
    connection = Connection(
        ours,
        Protocol(SERVER, fragment_events=True, defer_failure=True),
        request=Request("GET", "/"),
        response=Response(101, "Switching Protocols"),
        options=ConnectionOptions(ping_interval=None, close_timeout=1.0),
    )
    counting = CountingSocket(ours)
    connection._sender.socket = counting  # type: ignore[assignment]
    try:
        messages = [f"message {n}" for n in range(200)]
        connection.send_many_nowait(messages, write=False)
        connection.flush_nowait()
        assert counting.sends == 1  # was 400: a send for each frame header and each payload
        parser = FrameParser(mask_expected=False)
        received: list[str] = []
        theirs.settimeout(scaled(5))
        while len(received) < len(messages):
            received += [frame.payload.decode() for frame in parser.feed(theirs.recv(65536))]
        assert received == messages
    finally:
        connection._sender.socket = ours
        theirs.close()
        connection.wait_closed(scaled(5))


@pytest.fixture
def room() -> Iterator[Any]:
    server = serve_broker("127.0.0.1", 0, ping_interval=None, close_timeout=scaled(3)).start()
    yield server
    server.shutdown(scaled(10))


def join(port: int, channel: str, **options: Any) -> Any:
    ws = connect(f"ws://127.0.0.1:{port}/", **options)
    ws.send(json.dumps({"type": "subscribe", "payload": {"channel": channel}}))
    until(ws, "subscribed")
    return ws


def until(ws: Any, kind: str) -> dict[str, Any]:
    end = time.monotonic() + scaled(5)
    while True:
        message = json.loads(ws.recv(timeout=max(0.01, end - time.monotonic())))
        if message["type"] == kind:
            return message  # type: ignore[no-any-return]


def test_a_relayed_message_is_framed_once_for_all_members(room: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    framed: list[str] = []
    real = pubsub_server.prepare_message

    def counting(text: Any) -> Any:
        if '"type":"chat"' in text:
            framed.append(text)
        return real(text)

    monkeypatch.setattr(pubsub_server, "prepare_message", counting)
    members = [join(room.port, "lobby") for _ in range(5)]
    try:
        members[0].send(json.dumps({"type": "chat", "payload": {"channel": "lobby", "text": "hi all"}}))
        got = [until(ws, "chat")["payload"]["text"] for ws in members]
        assert got == ["hi all"] * 5
        assert len(framed) == 1
    finally:
        for ws in members:
            ws.close()


def test_members_with_and_without_compression_get_the_same_message(room: Any) -> None:
    plain = join(room.port, "mixed", compression=None)
    deflated = join(room.port, "mixed", compression="deflate")
    try:
        assert deflated.protocol.extensions and not plain.protocol.extensions
        plain.send(json.dumps({"type": "chat", "payload": {"channel": "mixed", "text": "é" * 500}}))
        assert until(plain, "chat")["payload"]["text"] == "é" * 500
        assert until(deflated, "chat")["payload"]["text"] == "é" * 500
    finally:
        plain.close()
        deflated.close()


def test_replies_and_relays_keep_their_order_through_the_flusher(room: Any) -> None:
    ws = join(room.port, "order", compression=None)  # a member with compression is written by the publisher
    try:
        for n in range(50):
            ws.send(json.dumps({"type": "publish", "payload": {"channel": "order", "message": n}}))
            ws.send(json.dumps({"type": "ping", "payload": n}))
        seen: list[tuple[str, Any]] = []
        while len(seen) < 150:
            message = json.loads(ws.recv(timeout=scaled(5)))
            if message["type"] == "message":
                seen.append(("message", message["payload"]["message"]))
            elif message["type"] in ("published", "pong"):
                seen.append((message["type"], message["payload"] if message["type"] == "pong" else None))
        expected: list[tuple[str, Any]] = []
        for n in range(50):
            expected += [("message", n), ("published", None), ("pong", n)]
        assert seen == expected
    finally:
        ws.close()


def test_one_writer_thread_serves_all_clients(room: Any) -> None:
    members = [join(room.port, f"room-{n % 3}", compression=None) for n in range(12)]
    try:
        for ws in members:
            ws.send(json.dumps({"type": "chat", "payload": {"channel": "room-0", "text": "x"}}))
        assert wait_until(lambda: len(flusher_threads("rawws-pubsub-writer")) == 1, scaled(5))
    finally:
        for ws in members:
            ws.close()


def test_a_client_that_reads_is_not_closed_for_the_writer_falling_behind() -> None:
    # max_pending counts what the client's socket does not take, not what the writer has not reached yet.
    server = serve_broker("127.0.0.1", 0, max_pending=5, ping_interval=None, close_timeout=scaled(3)).start()
    release = threading.Event()
    try:
        reader = join(server.port, "busy", compression=None)
        server.handler.flusher.schedule(lambda: release.wait(scaled(10)))  # the writer is busy elsewhere
        with connect(f"ws://127.0.0.1:{server.port}/") as publisher:
            for n in range(50):
                publisher.send(json.dumps({"type": "publish", "payload": {"channel": "busy", "message": n}}))
            # All but the last few (under the limit, waiting for the writer) were written at once.
            got = [until(reader, "message")["payload"]["message"] for _ in range(45)]
        release.set()
        got += [until(reader, "message")["payload"]["message"] for _ in range(5)]
        assert got == list(range(50))
        reader.close()
        assert reader.close_code == 1000
    finally:
        release.set()
        server.shutdown(scaled(10))


def test_a_member_with_compression_is_not_held_up_by_a_busy_writer() -> None:
    # Its frames are compressed as they are written: one writer thread doing that for every such
    # member made a flood on their channels delay every channel's deliveries by seconds.
    server = serve_broker("127.0.0.1", 0, ping_interval=None, close_timeout=scaled(3)).start()
    release = threading.Event()
    try:
        deflated = join(server.port, "zipped", compression="deflate")
        assert deflated.protocol.extensions
        server.handler.flusher.schedule(lambda: release.wait(scaled(10)))  # the writer is busy elsewhere
        with connect(f"ws://127.0.0.1:{server.port}/", compression=None) as publisher:
            for n in range(3):
                publisher.send(json.dumps({"type": "publish", "payload": {"channel": "zipped", "message": n}}))
            got = [until(deflated, "message")["payload"]["message"] for _ in range(3)]
        assert got == [0, 1, 2]
        assert not release.is_set()
        deflated.close()
    finally:
        release.set()
        server.shutdown(scaled(10))
