"""The pub/sub server against one hostile client (issue 11): deep nesting, NaN, a stalled reader's memory.

Run as a script, this module prints the memory figures of the stalled-subscriber
attack (990 publishes of 65 KB) instead of asserting on them::

    python -m tests.pubsub.test_pubsub_limits [--root DIR] [--overflow close|drop_oldest] [--options JSON]

``--root`` is the directory whose ``rawws`` package the server imports (this
checkout by default), so an older version can be measured the same way.
"""

from __future__ import annotations

import argparse
import base64
import gc
import json
import math
import os
import socket
import struct
import subprocess
import sys
import time
import weakref
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from unittest.mock import ANY

import pytest

from rawws import connect, make_message, send_message, serve_broker
from rawws.__main__ import build_parser, main
from rawws.pubsub import MAX_PENDING_BYTES
from rawws.pubsub import server as pubsub
from rawws.pubsub.broker import MessageBroker
from rawws.pubsub.messages import MAX_DEPTH, MessageError, json_depth, parse_message
from rawws.sync.client import ClientConnection
from rawws.sync.connection import Connection
from rawws.sync.server import Server
from tests.conftest import scaled
from tests.multiclient import MultiClient

ROOT = Path(__file__).resolve().parent.parent
MiB = 1024 * 1024


# --- helpers ------------------------------------------------------------------------------


@pytest.fixture
def broker_server() -> Iterator[Any]:
    servers: list[Server] = []

    def start(**options: Any) -> Server:
        options.setdefault("close_timeout", 3.0)
        options.setdefault("ping_interval", None)
        server = serve_broker("127.0.0.1", 0, **options).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.shutdown(10)


def client(server: Server | int, **options: Any) -> ClientConnection:
    port = server if isinstance(server, int) else server.port
    options.setdefault("ping_interval", None)
    return connect(f"ws://127.0.0.1:{port}/", **options)


def next_text(ws: Connection, kind: str, timeout: float = 10.0) -> str:
    """The text of the next message of type ``kind``, skipping the others (presence updates...)."""
    end = time.monotonic() + timeout
    for _ in range(10_000):
        text = ws.recv(timeout=max(0.01, end - time.monotonic()))
        assert isinstance(text, str)
        if json.loads(text)["type"] == kind:
            return text
        assert time.monotonic() < end, f"no {kind} message in {timeout} s"
    raise AssertionError(f"no {kind} message in 10,000")


def next_of(ws: Connection, kind: str, timeout: float = 10.0) -> dict[str, Any]:
    message: dict[str, Any] = json.loads(next_text(ws, kind, timeout))
    return message


def wait_for(predicate: Any, timeout: float = 10.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.02)
    return bool(predicate())


def nested(depth: int) -> str:
    """A publish whose text nests ``depth`` levels deep, the envelope included (message = depth-2 arrays)."""
    inner = "[" * (depth - 2) + "1" + "]" * (depth - 2)
    return '{"type":"publish","payload":{"channel":"c","message":' + inner + "}}"


class RawClient:
    """A WebSocket client on a bare socket, with a receive buffer as small as asked, that reads only when told."""

    def __init__(self, port: int, rcvbuf: int | None = 4096, timeout: float = 10.0) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)  # before connect: sets the window
        sock.settimeout(timeout)
        sock.connect(("127.0.0.1", port))
        self.sock = sock
        key = base64.b64encode(os.urandom(16)).decode()
        request = (
            f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        sock.sendall(request.encode())
        self.buffer = b""
        while b"\r\n\r\n" not in self.buffer:
            self._fill()
        head, _, self.buffer = self.buffer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101"), head

    def _fill(self) -> None:
        data = self.sock.recv(65536)
        if not data:
            raise ConnectionError("the server closed the connection")
        self.buffer += data

    def send_text(self, text: str) -> None:
        payload = text.encode()
        mask = os.urandom(4)
        length = len(payload)
        if length < 126:
            header = struct.pack("!BB", 0x81, 0x80 | length)
        elif length < 65536:
            header = struct.pack("!BBH", 0x81, 0x80 | 126, length)
        else:
            header = struct.pack("!BBQ", 0x81, 0x80 | 127, length)
        key = int.from_bytes((mask * (length // 4 + 1))[:length], "big")
        masked = (int.from_bytes(payload, "big") ^ key).to_bytes(length, "big")
        self.sock.sendall(header + mask + masked)

    def read_frame(self, timeout: float = 30.0) -> tuple[int, bytes]:
        """(opcode, payload) of the next frame (the server sends unmasked, unfragmented frames)."""
        self.sock.settimeout(timeout)
        while len(self.buffer) < 2:
            self._fill()
        opcode, length = self.buffer[0] & 0x0F, self.buffer[1] & 0x7F
        start = 2
        if length == 126:
            start = 4
        elif length == 127:
            start = 10
        while len(self.buffer) < start:
            self._fill()
        if length == 126:
            length = struct.unpack("!H", self.buffer[2:4])[0]
        elif length == 127:
            length = struct.unpack("!Q", self.buffer[2:10])[0]
        while len(self.buffer) < start + length:
            self._fill()
        payload = self.buffer[start : start + length]
        self.buffer = self.buffer[start + length :]
        return opcode, payload

    def close(self) -> None:
        self.sock.close()


def test_raw_client_masks_correctly(broker_server: Any) -> None:
    server = broker_server()
    raw = RawClient(server.port, rcvbuf=None)
    for size in (0, 1, 5, 125, 126, 127, 1000, 65_000):
        raw.send_text(make_message("ping", "x" * size))
        opcode, payload = raw.read_frame()
        assert opcode == 1 and json.loads(payload) == {"type": "pong", "payload": "x" * size, "timestamp": ANY}
    raw.send_text(make_message("ping", "x" * 70_000))  # a 64-bit length
    assert "too large" in json.loads(raw.read_frame()[1])["payload"]["error"]
    raw.close()


# --- 1. nesting ---------------------------------------------------------------------------


def test_six_thousand_brackets_get_an_error_and_the_connection_keeps_working(broker_server: Any) -> None:
    server = broker_server()
    with client(server) as ws:
        ws.send("[" * 6000)  # 6 KB; it used to end the connection with 1011 (and crash Python 3.13)
        error = next_of(ws, "error")["payload"]["error"]
        assert "nested too deeply" in error and "limit 32" in error
        ws.send('{"type":"ping","payload":' + "[" * 6000 + "]" * 6000 + "}")
        assert "nested too deeply" in next_of(ws, "error")["payload"]["error"]
        send_message(ws, "ping", "still there?")
        assert next_of(ws, "pong")["payload"] == "still there?"


def test_depth_32_is_accepted_and_33_refused(broker_server: Any) -> None:
    server = broker_server()
    with client(server) as subscriber, client(server) as publisher:
        send_message(subscriber, "subscribe", {"channel": "c"})
        next_of(subscriber, "subscribed")
        publisher.send(nested(MAX_DEPTH + 1))
        assert "33 levels" in next_of(publisher, "error")["payload"]["error"]
        publisher.send(nested(MAX_DEPTH))
        assert next_of(publisher, "published")["payload"]["notified"] == 1
        text = next_text(subscriber, "message")
        assert json_depth(text) == MAX_DEPTH  # relayed as deep as it came
        message = json.loads(text)["payload"]["message"]
        for _ in range(MAX_DEPTH - 2):
            assert isinstance(message, list) and len(message) == 1
            message = message[0]
        assert message == 1


def test_max_depth_option(broker_server: Any) -> None:
    server = broker_server(max_depth=4)
    with client(server) as ws:
        ws.send(nested(5))
        assert "limit 4" in next_of(ws, "error")["payload"]["error"]
        ws.send(nested(4))
        assert next_of(ws, "published")["payload"]["notified"] == 0
    with pytest.raises(ValueError):
        pubsub.broker_handler(max_depth=1)


def test_brackets_inside_strings_do_not_count(broker_server: Any) -> None:
    server = broker_server()
    tricky = ['[{"' * 100, '\\"[[[[' * 50, "\\" * 41 + "[" * 40, "é" * 10 + "{" * 40]
    with client(server) as ws:
        for text in tricky:
            send_message(ws, "publish", {"channel": "c", "message": text})
            assert next_of(ws, "published")["payload"]["notified"] == 0


@pytest.mark.parametrize(
    ("text", "depth"),
    [
        ("", 0),
        ("1", 0),
        ("[]", 1),
        ("[[1], {}]", 2),
        ('{"a": [{"b": "[[[[{{{{"}]}', 3),
        (r'["\"[[", "\\", [1]]', 2),
        (r'["\\\"[[[", [[2]]]', 3),
        ('"unterminated [[[', 0),  # an unterminated string runs to the end
        ('"ends in a backslash \\', 0),
        ("[" * 6000, 6000),
        ("[" * 5 + "]" * 10 + "[", 5),
    ],
)
def test_json_depth(text: str, depth: int) -> None:
    assert json_depth(text) == depth


def test_json_depth_agrees_with_the_parser_on_random_documents() -> None:
    import random

    rng = random.Random(11)
    keys = ["a", "[", '"{', "\\", 'b"]', "é[", "\U0001f600{"]

    def document(levels: int) -> Any:
        choice = rng.random()
        if levels and choice < 0.4:
            return [document(levels - 1) for _ in range(rng.randint(0, 3))]
        if levels and choice < 0.7:
            return {rng.choice(keys): document(levels - 1) for _ in range(rng.randint(0, 3))}
        return rng.choice([1, 2.5, None, True, "x[", '\\"]', '{"', "\\\\"])

    def depth(value: Any) -> int:
        if isinstance(value, list):
            return 1 + max((depth(v) for v in value), default=0)
        if isinstance(value, dict):
            return 1 + max((depth(v) for v in value.values()), default=0)
        return 0

    for _ in range(2000):
        value = document(rng.randint(0, 12))
        for ascii_only in (True, False):
            assert json_depth(json.dumps(value, ensure_ascii=ascii_only)) == depth(value)


def test_the_depth_scan_is_linear() -> None:
    # Quotes that never close, or escapes to the end, must not make the scan quadratic.
    worst = ['"' + '\\"' * 32_000, '"' * 64_000, '"\\' * 32_000, "[]" * 32_000, "[" * 64_000]
    start = time.perf_counter()
    for text in worst:
        json_depth(text)
    assert time.perf_counter() - start < 2.0  # about 10 ms in all; quadratic would take minutes


@pytest.mark.skipif(sys.version_info >= (3, 13), reason="json.loads may crash instead of raising on 3.13")
def test_recursion_error_while_parsing_becomes_a_message_error() -> None:
    # With the limit lifted, json.loads itself recurses too deep: still a MessageError, not a RecursionError.
    with pytest.raises(MessageError, match="too deeply"):
        parse_message('{"type":"x","payload":' + "[" * 100_000 + "]" * 100_000 + "}", max_depth=10**6)


def test_recursion_error_while_handling_becomes_an_error_reply(
    broker_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = make_message

    def deep_make_message(type: str, payload: Any = None, timestamp: int | None = None) -> str:
        if type == "message":
            raise RecursionError("maximum recursion depth exceeded")
        return real(type, payload, timestamp)

    monkeypatch.setattr(pubsub, "make_message", deep_make_message)
    server = broker_server()
    with client(server) as ws:
        send_message(ws, "publish", {"channel": "c", "message": "boom"})
        assert "too deeply" in next_of(ws, "error")["payload"]["error"]
        send_message(ws, "ping", 1)
        assert next_of(ws, "pong")["payload"] == 1


# --- 2. NaN and Infinity ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("literal", "fragment"),
    [("NaN", "NaN is not JSON"), ("Infinity", "Infinity is not JSON"), ("-Infinity", "-Infinity is not JSON")]
    + [('[1, {"x": NaN}]', "NaN is not JSON"), ("1e400", "out of range"), ("-1" + "0" * 400 + ".5", "out of range")],
)
def test_nan_and_infinity_are_refused(broker_server: Any, literal: str, fragment: str) -> None:
    server = broker_server()
    with client(server) as subscriber, client(server) as publisher:
        send_message(subscriber, "subscribe", {"channel": "c"})
        next_of(subscriber, "subscribed")
        publisher.send('{"type":"publish","payload":{"channel":"c","message":' + literal + "}}")
        assert fragment in next_of(publisher, "error")["payload"]["error"]
        send_message(publisher, "publish", {"channel": "c", "message": 1.5})
        assert next_of(publisher, "published")["payload"]["notified"] == 1
        # The subscriber's next message is the valid one: nothing invalid was relayed.
        assert next_of(subscriber, "message")["payload"]["message"] == 1.5


def test_the_server_never_writes_nan(broker_server: Any) -> None:
    for value in (math.nan, math.inf, -math.inf):
        with pytest.raises(ValueError, match="cannot encode the 'message' message as JSON"):
            make_message("message", {"channel": "c", "message": [value]})
    server = broker_server()
    with pytest.raises(ValueError):  # a server-side notification is refused before it reaches anyone
        server.notify("c", math.nan)
    with connect(f"ws://127.0.0.1:{server.port}/") as subscriber:
        send_message(subscriber, "subscribe", {"channel": "c"})
        next_of(subscriber, "subscribed")
        # Refused as notify refuses it, rather than "delivered" to nobody (2 for a local subscriber).
        local: list[Any] = []
        server.broker.subscribe("c", local.append)
        with pytest.raises(ValueError, match="cannot publish on 'c'"):
            server.broker.publish("c", [math.nan])
        with pytest.raises(TypeError, match="cannot publish on 'c'.*set"):
            server.broker.publish("c", {1, 2})
        assert local == []
        server.broker.publish("c", "fine")
        assert next_of(subscriber, "message")["payload"]["message"] == "fine"  # the next thing it got
    assert json.loads(make_message("message", {"x": 1e308}))["payload"] == {"x": 1e308}


def test_a_plain_broker_still_delivers_anything_to_local_subscribers() -> None:
    broker = MessageBroker()
    got: list[Any] = []
    broker.subscribe("c", got.append)
    assert broker.publish("c", {1, 2}) == 1 and broker.publish("c", math.nan) == 1
    assert got[0] == {1, 2} and math.isnan(got[1])


def test_parse_message_refuses_constants() -> None:
    for literal in ("NaN", "Infinity", "-Infinity", "1e999"):
        with pytest.raises(MessageError):
            parse_message('{"type":"x","payload":' + literal + "}")
    assert parse_message('{"type":"x","payload":[1e308, -2.5, 3]}')["payload"] == [1e308, -2.5, 3]


# --- 3. the byte cap on a subscriber's queue ----------------------------------------------


class FakeConnection:
    """Just enough of a Connection for a BrokerClient whose client never reads."""

    remote_address = ("127.0.0.1", 1)
    buffered_amount = pubsub.HIGH_WATER  # full: pump() hands nothing over

    def __init__(self) -> None:
        self.on_drain: Any = None
        self.closed_with: tuple[int, str] | None = None

    def send_many_nowait(self, messages: Any, *, write: bool = True) -> None:
        raise AssertionError("the connection is full")

    def flush_nowait(self) -> None:
        pass

    def start_closing(self, code: int, reason: str = "") -> None:
        self.closed_with = (code, reason)


def test_byte_cap_in_the_queue_itself() -> None:
    ws = FakeConnection()
    subscriber = pubsub.BrokerClient(ws, MessageBroker(), 1000, "drop_oldest", 10_000)  # type: ignore[arg-type]
    for i in range(100):
        subscriber.enqueue(f"{i:04d}" + "x" * 996)
    assert list(subscriber._pending) == [f"{i:04d}" + "x" * 996 for i in range(90, 100)]  # the newest, in order
    assert subscriber._pending_bytes == 10_000 and subscriber.dropped == 90
    subscriber.enqueue("é" * 6000)  # 12,000 bytes in UTF-8: alone over the cap, and still let through
    assert list(subscriber._pending) == ["é" * 6000] and subscriber._pending_bytes == 12_000
    subscriber.release()
    assert ws.on_drain is None and not subscriber._pending and subscriber._pending_bytes == 0

    ws = FakeConnection()
    subscriber = pubsub.BrokerClient(ws, MessageBroker(), 1000, "close", 10_000)  # type: ignore[arg-type]
    for _ in range(10):
        subscriber.enqueue("x" * 1000)
    assert ws.closed_with is None
    subscriber.enqueue("x")
    assert ws.closed_with == (1013, "too slow: message queue full")
    assert not subscriber._pending and subscriber._pending_bytes == 0


def publish_many(port: int, count: int, size: int, channel: str = "c") -> list[int]:
    """Publish ``count`` messages of about ``size`` bytes; return the ``notified`` of each."""
    with client(port, max_queue=None) as publisher:
        for i in range(count):
            send_message(publisher, "publish", {"channel": channel, "message": [i, "y" * size]})
        return [next_of(publisher, "published", timeout=60)["payload"]["notified"] for _ in range(count)]


def stalled_subscriber(port: int, channel: str = "c") -> RawClient:
    raw = RawClient(port)
    raw.send_text(make_message("subscribe", {"channel": channel}))
    opcode, payload = raw.read_frame()
    assert json.loads(payload)["type"] == "subscribed"
    return raw


def test_max_pending_bytes_closes_a_stalled_client_with_1013(broker_server: Any) -> None:
    server = broker_server(max_pending_bytes=256 * 1024)
    stalled = stalled_subscriber(server.port)
    # 8 MB, far fewer messages than max_pending (1,000), more bytes than the kernel buffers hold.
    notified = publish_many(server.port, 400, 20_000)
    assert notified[0] == 1 and notified[-1] == 0  # it was dropped on the way
    assert wait_for(lambda: server.broker.subscribers("c") == 0)
    end = time.monotonic() + 60
    while time.monotonic() < end:
        opcode, payload = stalled.read_frame()
        if opcode == 8:
            assert struct.unpack("!H", payload[:2])[0] == 1013 and b"too slow" in payload
            break
    else:
        pytest.fail("no close frame")
    stalled.close()


def test_max_pending_bytes_with_drop_oldest_keeps_the_newest_in_order(broker_server: Any) -> None:
    server = broker_server(max_pending_bytes=256 * 1024, overflow="drop_oldest")
    stalled = stalled_subscriber(server.port)
    assert publish_many(server.port, 400, 20_000) == [1] * 400  # still subscribed, every time
    seen: list[int] = []
    end = time.monotonic() + 60
    while time.monotonic() < end and (not seen or seen[-1] != 399):
        opcode, payload = stalled.read_frame()
        message = json.loads(payload)
        if message["type"] == "message":
            seen.append(message["payload"]["message"][0])
    assert seen[-1] == 399 and seen == sorted(set(seen))  # the newest arrives; the rest in order, no repeats
    assert len(seen) < 400  # some were dropped
    assert server.broker.subscribers("c") == 1
    stalled.close()


def test_cli_max_pending_bytes(monkeypatch: pytest.MonkeyPatch) -> None:
    args = build_parser().parse_args(["serve", "--broker"])
    assert args.max_pending_bytes == MAX_PENDING_BYTES == 4 * MiB and args.max_depth == MAX_DEPTH
    args = build_parser().parse_args(["serve", "--broker", "--max-pending-bytes", "512KiB", "--max-depth", "8"])
    assert args.max_pending_bytes == 512 * 1024 and args.max_depth == 8
    assert build_parser().parse_args(["serve", "--broker", "--max-pending-bytes", "none"]).max_pending_bytes is None

    seen: dict[str, Any] = {}

    class Started(Exception):
        pass

    def fake_serve_broker(*args: Any, **options: Any) -> Server:
        seen.update(options)
        raise Started

    monkeypatch.setattr(pubsub, "serve_broker", fake_serve_broker)
    with pytest.raises(Started):
        main(["serve", "--broker", "--port", "0", "--max-pending-bytes", "1MiB", "--overflow", "drop_oldest"])
    assert seen["max_pending_bytes"] == MiB and seen["overflow"] == "drop_oldest" and seen["max_depth"] == 32


# --- 4. freed at once -----------------------------------------------------------------------


def test_a_departed_subscriber_is_freed_without_the_cyclic_gc(
    broker_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    refs: list[weakref.ref[pubsub.BrokerClient]] = []

    class Recorded(pubsub.BrokerClient):
        def __init__(self, *args: Any) -> None:
            super().__init__(*args)
            refs.append(weakref.ref(self))

    monkeypatch.setattr(pubsub, "BrokerClient", Recorded)
    server = broker_server(overflow="drop_oldest", max_pending_bytes=MiB)
    gc.collect()
    gc.disable()
    try:
        stalled = stalled_subscriber(server.port)
        assert publish_many(server.port, 100, 60_000) == [1] * 100  # its queue is full
        assert len(refs) == 2 and refs[0]() is not None
        assert wait_for(lambda: refs[1]() is None)  # the publisher's, once it left
        stalled.close()
        assert wait_for(lambda: server.broker.subscribers("c") == 0 and not server.connections, 20)
        assert wait_for(lambda: refs[0]() is None, 20), gc.get_referrers(refs[0]())
    finally:
        gc.enable()


SERVER_SCRIPT = r"""
import ctypes, gc, json, sys
gc.disable()  # only reference counting frees memory here: anything kept by a cycle stays
sys.path.insert(0, sys.argv[1])
from rawws import serve_broker
from rawws.pubsub import server as pubsub
from rawws.sync.connection import Connection

options = json.loads(sys.argv[2])
server = serve_broker("127.0.0.1", 0, ping_interval=None, close_timeout=2.0, **options).start()
print(server.port, flush=True)
try:
    malloc_trim = ctypes.CDLL(None).malloc_trim  # glibc
except (OSError, AttributeError):
    malloc_trim = None

def state():  # a function: no global may keep what it looks at alive
    subscribers = [o for o in gc.get_objects() if isinstance(o, pubsub.BrokerClient)]
    queued = sum(len(text) for subscriber in subscribers for text in subscriber._pending)
    connections = sum(isinstance(o, Connection) for o in gc.get_objects())
    return [server.broker.subscribers("c"), len(server.connections), len(subscribers), queued, connections]

for line in sys.stdin:
    command = line.strip()
    if command == "state":
        print(json.dumps(state()), flush=True)
    elif command == "trim":
        # A measuring aid only, never done by the library: glibc keeps freed heap memory
        # (65 KB strings are below its 128 KiB mmap threshold) for reuse instead of
        # returning it to the system; malloc_trim returns it, so RSS shows what is freed.
        print(json.dumps(malloc_trim(0) if malloc_trim else None), flush=True)
server.shutdown(5)
"""


class BrokerProcess:
    """``serve_broker`` in a subprocess with the garbage collector disabled, and its memory."""

    def __init__(self, options: dict[str, Any], root: Path = ROOT) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-c", SERVER_SCRIPT, str(root), json.dumps(options)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.port = int(self._line())

    def _line(self) -> str:
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        assert line, "the server process ended"
        return line

    def ask(self, command: str) -> Any:
        assert self.process.stdin is not None
        self.process.stdin.write(command + "\n")
        self.process.stdin.flush()
        return json.loads(self._line())

    def status(self, field: str) -> int:
        """A memory figure in bytes from /proc/PID/status (VmRSS, VmHWM)."""
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
        raise KeyError(field)

    def reset_peak(self) -> bool:
        """VmHWM := VmRSS; False where that is not allowed."""
        try:
            Path(f"/proc/{self.process.pid}/clear_refs").write_text("5")
        except OSError:
            return False
        return True

    def close(self) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)
        if self.process.stdout is not None:
            self.process.stdout.close()


def measure_stalled_subscriber(
    options: dict[str, Any], count: int = 990, size: int = 65_000, root: Path = ROOT
) -> dict[str, float]:
    """The server's memory (MiB) while one stalled subscriber is sent ``count`` messages of ``size`` bytes."""
    server = BrokerProcess(options, root)
    try:
        stalled = stalled_subscriber(server.port)
        assert wait_for(lambda: server.ask("state")[0] == 1)
        publish_many(server.port, 20, size, channel="warm-up")  # allocator and threads warmed up
        baseline = server.status("VmRSS")
        peak_known = server.reset_peak()
        notified = publish_many(server.port, count, size)
        held = server.status("VmRSS")
        peak = server.status("VmHWM") if peak_known else held
        stalled.close()
        assert wait_for(lambda: server.ask("state")[:2] == [0, 0], 30), server.ask("state")
        wait_for(lambda: server.ask("state")[2] == 0, 5)
        _, _, subscriber_objects, queued_bytes, connection_objects = server.ask("state")
        left = server.status("VmRSS")
        server.ask("trim")
        trimmed = server.status("VmRSS")
    finally:
        server.close()
    return {
        "baseline": baseline / MiB,
        "growth_peak": (peak - baseline) / MiB,
        "growth_held": (held - baseline) / MiB,
        "after_leave": (left - baseline) / MiB,
        "after_leave_trimmed": (trimmed - baseline) / MiB,
        "notified_last": float(notified[-1]),
        "subscriber_objects_left": float(subscriber_objects),
        "queued_mib_left": queued_bytes / MiB,
        "connection_objects_left": float(connection_objects),
    }


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="needs Linux /proc")
@pytest.mark.parametrize("overflow", ["drop_oldest", "close"])
def test_a_stalled_subscriber_costs_at_most_max_pending_bytes_and_gives_it_back(overflow: str) -> None:
    figures = measure_stalled_subscriber({"overflow": overflow})
    print(json.dumps(figures))
    # 990 × 65 KB is 61 MiB; what one stalled reader may hold is max_pending_bytes (4 MiB) plus
    # HIGH_WATER in its connection; the rest is allocator slack.
    assert figures["growth_peak"] < MAX_PENDING_BYTES / MiB + 8
    assert figures["subscriber_objects_left"] == 0  # freed by reference counting alone (gc disabled)
    assert figures["after_leave_trimmed"] < 4
    if overflow == "drop_oldest":
        assert figures["notified_last"] == 1  # it stayed subscribed throughout
    else:
        assert figures["notified_last"] == 0  # closed with 1013 on the way


def _script() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, default=ROOT, help="directory holding the rawws package to measure")
    parser.add_argument("--overflow", default="drop_oldest", choices=["close", "drop_oldest"])
    parser.add_argument("--options", default="{}", help="more serve_broker options, as JSON")
    parser.add_argument("--count", type=int, default=990)
    parser.add_argument("--size", type=int, default=65_000)
    args = parser.parse_args()
    options = {"overflow": args.overflow, **json.loads(args.options)}
    figures = measure_stalled_subscriber(options, args.count, args.size, args.root.resolve())
    for name, value in figures.items():
        print(f"{name:>26}: {value:8.1f}")


if __name__ == "__main__":
    _script()


def test_a_crowd_joining_one_channel_costs_few_presence_messages(broker_server: Any) -> None:
    """N joins announced one by one would be N²/2 messages; coalesced, each member gets a few, the last one current."""
    count = 300
    server = broker_server()
    clients = MultiClient(server.port, count)
    presence: list[list[int]] = [[] for _ in range(count)]

    def on_text(index: int, text: str) -> None:
        message = json.loads(text)
        if message["type"] == "presence":
            presence[index].append(message["payload"]["count"])

    try:
        start = time.monotonic()
        for index in range(count):
            clients.send_text(index, make_message("subscribe", {"channel": "crowd"}))
        everyone_current = clients.run(on_text, lambda: all(p and p[-1] == count for p in presence), scaled(20))
        elapsed = time.monotonic() - start
    finally:
        clients.close()
    behind = sum(1 for p in presence if p[-1:] != [count])
    assert everyone_current, f"{behind} members whose last presence is not {count}"
    intervals = elapsed / pubsub.PRESENCE_INTERVAL
    assert len(presence[0]) <= intervals + 2, f"{len(presence[0])} presence messages in {elapsed:.2f} s"


def test_presence_of_big_channels_costs_at_most_4000_messages_a_second() -> None:
    for members in (1, 10, 1000, 2000, 10_000, 100_000):
        interval = pubsub.presence_interval(members)
        assert interval >= pubsub.PRESENCE_INTERVAL
        assert members / interval <= pubsub.PRESENCE_FANOUT / pubsub.PRESENCE_INTERVAL
