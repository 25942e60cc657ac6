"""Issue 11, "smaller holes": the HTTP side of the opening handshake refuses what it cannot use.

Every refusal is checked over a real loopback socket, status line, headers and
body: a request with a body (RFC 6455 §4.1), an HTTP version other than 1.1
(505), a request target that is not a resource name (400). Then the admission
cap, ``max_handshakes``: past it new connections wait in the backlog for a
slot, and get 503 (no thread) only once no handshake has ended for a second,
so a flood of half-open handshakes cannot exhaust threads while established
connections keep being served — measured on a server in its own process.
"""

from __future__ import annotations

import os
import selectors
import socket
import ssl
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import rawws
from rawws.exceptions import InvalidHandshake
from rawws.http11 import Headers, HeadParser, Request, Response, content_length
from rawws.sync.server import PendingConnection, Server, ServerConnection, serve
from tests.conftest import echo, scaled, wait_until
from tests.hostile import DEFAULT_REQUEST, HostilePeer

StartServer = Callable[..., Server]
KEY = "dGhlIHNhbXBsZSBub25jZQ=="
ROOT = Path(__file__).resolve().parent.parent


def upgrade(extra: str = "", *, line: str = "GET / HTTP/1.1") -> bytes:
    """A valid upgrade request with ``extra`` header lines and another request line if asked."""
    text = DEFAULT_REQUEST.format(key=KEY, extra=extra)
    return (line + text[text.index("\r\n") :]).encode()


def exchange(port: int, raw: bytes, timeout: float = 5.0) -> tuple[bytes, Response, bytes]:
    """Send ``raw``, read until the server closes (or ``timeout``); return (status line, response, body)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(raw)
        data = b""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            sock.settimeout(max(0.01, end - time.monotonic()))
            try:
                chunk = sock.recv(65536)
            except (ConnectionResetError, TimeoutError):
                break
            if not chunk:
                break
            data += chunk
    parser = HeadParser("response")
    response = parser.feed(data)
    assert isinstance(response, Response), data
    return data.split(b"\r\n", 1)[0], response, parser.remainder


# --- 1. a handshake has no body -----------------------------------------------------------


def test_content_length_parsing() -> None:
    def length(*values: str) -> int | None:
        return content_length(Headers([("Content-Length", v) for v in values]))

    assert length() is None
    assert length("0") == 0
    assert length("000") == 0
    assert length("42") == 42
    assert length("42, 42") == 42  # RFC 9110 §8.6: identical values are one
    assert length("7", "7") == 7
    for bad in (["abc"], [""], ["-1"], ["+5"], ["1 2"], ["0x10"], ["٣"], ["1", "2"], ["3, 4"], ["9" * 19]):
        with pytest.raises(InvalidHandshake) as info:
            length(*bad)
        assert info.value.status == 400, bad


BODY_REFUSALS = [
    pytest.param("Content-Length: 5\r\n", b"hello", b"but this request has Content-Length: 5", id="content-length"),
    pytest.param(
        "Transfer-Encoding: chunked\r\n",
        b"5\r\nhello\r\n0\r\n\r\n",
        b"but this request has Transfer-Encoding: chunked",
        id="chunked",
    ),
    pytest.param(
        "Transfer-Encoding: gzip, chunked\r\nContent-Length: 0\r\n",
        b"",
        b"Transfer-Encoding: gzip, chunked",
        id="transfer-encoding-with-content-length-0",
    ),
    pytest.param("Content-Length: abc\r\n", b"", b"malformed Content-Length 'abc'", id="malformed"),
    pytest.param("Content-Length: -1\r\n", b"", b"malformed Content-Length '-1'", id="negative"),
    pytest.param("Content-Length: 1\r\nContent-Length: 2\r\n", b"x", b"conflicting Content-Length", id="conflicting"),
]


@pytest.mark.parametrize(("extra", "body", "why"), BODY_REFUSALS)
def test_upgrade_with_a_body_is_400(start_server: StartServer, extra: str, body: bytes, why: bytes) -> None:
    server = start_server(echo)
    status_line, response, text = exchange(server.port, upgrade(extra) + body)
    assert status_line == b"HTTP/1.1 400 Bad Request"
    assert response.headers["Connection"] == "close"
    assert response.headers["Content-Type"] == "text/plain; charset=utf-8"
    assert int(response.headers["Content-Length"]) == len(text)
    assert why in text, text


def test_a_body_is_not_read_as_frames(start_server: StartServer) -> None:
    """The body is a valid masked text frame: before the fix it was echoed back after a 101."""
    server = start_server(echo)
    with HostilePeer(server.port) as peer:
        frame = peer.frame_bytes(1, b"smuggled")
        peer.send_raw(upgrade(f"Content-Length: {len(frame)}\r\n") + frame)
        response = peer.read_http()
        assert response.status == 400
        assert b"without a body" in peer.leftover
        assert b"smuggled" not in peer.leftover
        assert peer.expect_eof() < 3


def test_content_length_zero_is_fine(start_server: StartServer) -> None:
    server = start_server(echo)
    with HostilePeer(server.port) as peer:
        peer.handshake("Content-Length: 0\r\n")
        peer.send_frame(1, b"still a websocket")
        assert peer.read_frame().payload == b"still a websocket"


def test_process_request_still_sees_requests_with_bodies(start_server: StartServer) -> None:
    """The no-body rule is the upgrade's: plain HTTP served by process_request may have a body."""

    def process_request(pending: PendingConnection, request: Request) -> Response | None:
        if request.method == "POST":
            return pending.respond(202, f"got {request.headers.get('Content-Length')} bytes\n")
        return None

    server = start_server(echo, process_request=process_request)
    raw = b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc"
    status_line, _, text = exchange(server.port, raw)
    assert status_line.startswith(b"HTTP/1.1 202 ")
    assert text == b"got 3 bytes\n"


# --- 2. the version and the request target ----------------------------------------------------


@pytest.mark.parametrize(
    ("line", "status", "why"),
    [
        ("GET / HTTP/2.0", b"505 HTTP Version Not Supported", b"HTTP/2.0 is not supported"),
        ("GET / HTTP/9.9", b"505 HTTP Version Not Supported", b"HTTP/9.9 is not supported"),
        ("GET / HTTP/0.9", b"505 HTTP Version Not Supported", b"HTTP/0.9 is not supported"),
        ("GET / HTTP/1.0", b"505 HTTP Version Not Supported", b"needs HTTP/1.1 (RFC 6455 \xc2\xa74.1)"),
        ("PRI * HTTP/2.0", b"505 HTTP Version Not Supported", b"HTTP/2.0 is not supported"),  # the h2 preface
        ("GET HTTP/1.1", b"400 Bad Request", b"malformed request line"),
        ("GET / HTTP/1.10", b"400 Bad Request", b"malformed HTTP version"),
        ("GET * HTTP/1.1", b"400 Bad Request", b"request target '*' is not a path"),
        ("OPTIONS * HTTP/1.1", b"400 Bad Request", b"request target '*' is not a path"),
        ("CONNECT 127.0.0.1:80 HTTP/1.1", b"400 Bad Request", b"request target '127.0.0.1:80' is not a path"),
        ("GET chat HTTP/1.1", b"400 Bad Request", b"request target 'chat' is not a path"),
        ("GET ws://127.0.0.1/ HTTP/1.1", b"400 Bad Request", b"is not a path"),
        ("GET /chat#top HTTP/1.1", b"400 Bad Request", b"has a fragment"),
        ("GET http:///chat HTTP/1.1", b"400 Bad Request", b"has no host"),
        ("GET http://user@127.0.0.1/ HTTP/1.1", b"400 Bad Request", b"user information"),
        ("GET http://evil.example/ HTTP/1.1", b"400 Bad Request", b"does not match the request target's host"),
    ],
)
def test_request_line_refusals(start_server: StartServer, line: str, status: bytes, why: bytes) -> None:
    server = start_server(echo)
    status_line, response, text = exchange(server.port, upgrade(line=line))
    assert status_line == b"HTTP/1.1 " + status
    assert response.headers["Connection"] == "close"
    assert why in text, text


@pytest.mark.parametrize(
    ("line", "path"),
    [
        ("GET /chat?room=1 HTTP/1.1", "/chat?room=1"),
        ("GET / HTTP/1.1", "/"),
        ("GET / HTTP/1.2", "/"),  # a later 1.x minor version is read as 1.1 (RFC 9110 §2.5)
        ("GET http://127.0.0.1/chat?room=1 HTTP/1.1", "/chat?room=1"),  # absolute-form (RFC 6455 §4.1)
        ("GET HTTP://127.0.0.1:80 HTTP/1.1", "/"),
        ("GET https://127.0.0.1:443/x HTTP/1.1", "/x"),
    ],
)
def test_accepted_request_lines(start_server: StartServer, line: str, path: str) -> None:
    def handler(ws: ServerConnection) -> None:
        ws.send(f"{ws.request.path} {ws.request.target}")

    server = start_server(handler)
    with HostilePeer(server.port) as peer:
        peer.send_raw(upgrade(line=line))
        assert peer.read_http().status == 101
        if peer.leftover:
            peer.frames.extend(peer.parser.feed(peer.leftover))
        assert peer.read_frame().payload.decode() == f"{path} {line.split(' ')[1]}"


def test_request_target_is_kept_and_path_defaults_to_it() -> None:
    assert Request("GET", "/a").target == "/a"
    parsed = HeadParser().feed(b"GET http://h:8080?q HTTP/1.1\r\nHost: H:8080\r\n\r\n")
    assert isinstance(parsed, Request)
    assert (parsed.path, parsed.target) == ("/?q", "http://h:8080?q")


# --- 3. max_handshakes ---------------------------------------------------------------------------


def stall(port: int, data: bytes = b"GET / HT") -> socket.socket:
    """A half-open handshake: half a request line, then nothing."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    sock.sendall(data)
    return sock


@pytest.fixture
def sockets() -> Iterator[list[socket.socket]]:
    opened: list[socket.socket] = []
    yield opened
    for sock in opened:
        sock.close()


def test_past_max_handshakes_stalled_for_a_second_new_connections_get_503(
    start_server: StartServer, sockets: list[socket.socket]
) -> None:
    server = start_server(echo, max_handshakes=2, open_timeout=20)
    established = rawws.connect(f"ws://127.0.0.1:{server.port}/", ping_interval=None)
    try:
        assert wait_until(lambda: server.handshakes_in_progress == 0, 5)  # its slot is given back after the 101
        sockets.extend(stall(server.port) for _ in range(2))
        assert wait_until(lambda: server.handshakes_in_progress == 2, 5)
        start = time.monotonic()
        status_line, response, text = exchange(server.port, upgrade())
        assert time.monotonic() - start < 2
        assert status_line == b"HTTP/1.1 503 Service Unavailable"
        assert response.headers["Retry-After"] == "1"
        assert response.headers["Connection"] == "close"
        assert text == b"too many WebSocket handshakes in progress (max_handshakes); try again shortly\n"
        # The client sees a specific error, not a hang.
        with pytest.raises(InvalidHandshake) as info:
            rawws.connect(f"ws://127.0.0.1:{server.port}/", open_timeout=5)
        assert info.value.status == 503
        assert b"max_handshakes" in info.value.body
        # The established connection is served all along.
        established.send("still here")
        assert established.recv(timeout=1) == "still here"
        # A slot frees as soon as a stalled handshake ends.
        sockets.pop().close()
        assert wait_until(lambda: server.handshakes_in_progress == 1, 5)
        with rawws.connect(f"ws://127.0.0.1:{server.port}/", ping_interval=None) as ws:
            ws.send("admitted")
            assert ws.recv(timeout=5) == "admitted"
    finally:
        established.close()


def test_a_burst_bigger_than_max_handshakes_waits_for_slots_instead_of_503(start_server: StartServer) -> None:
    """Legitimate clients finish their handshakes in milliseconds: past the cap, the rest wait in the backlog."""
    server = start_server(echo, max_handshakes=4)
    results: list[object] = []
    lock = threading.Lock()

    def client(index: int) -> None:
        try:
            with rawws.connect(f"ws://127.0.0.1:{server.port}/", ping_interval=None, open_timeout=scaled(20)) as ws:
                ws.send(str(index))
                answer: object = ws.recv(timeout=scaled(10))
        except Exception as exc:  # noqa: BLE001 - the test reports whatever went wrong
            answer = exc
        with lock:
            results.append(answer)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(60)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(scaled(30))
    failures = [r for r in results if not isinstance(r, str)]
    assert not failures, failures[:3]
    assert sorted(results, key=lambda r: int(str(r))) == [str(i) for i in range(60)]


def test_every_handshake_ending_gives_its_slot_back(start_server: StartServer) -> None:
    """success, refusal, process_request's answer or exception, EOF, reset, timeout: each ends at 0 in progress."""

    def process_request(pending: PendingConnection, request: Request) -> Response | None:
        if request.path == "/page":
            return pending.respond(200, "page\n")
        if request.path == "/crash":
            raise RuntimeError("bug in process_request (expected by the test)")
        return None

    server = start_server(echo, max_handshakes=1, open_timeout=1.0, process_request=process_request)
    port = server.port

    def idle() -> None:
        assert wait_until(lambda: server.handshakes_in_progress == 0, 5)

    def admitted() -> None:  # the one slot is free: a full handshake succeeds
        with rawws.connect(f"ws://127.0.0.1:{port}/", ping_interval=None, open_timeout=5) as ws:
            ws.send("x")
            assert ws.recv(timeout=5) == "x"
        idle()

    admitted()  # success
    assert exchange(port, upgrade(line="GET / HTTP/2.0"))[0].startswith(b"HTTP/1.1 505")  # parser refusal
    idle()
    assert exchange(port, upgrade("Content-Length: 1\r\n") + b"x")[0].startswith(b"HTTP/1.1 400")  # check_request
    idle()
    assert exchange(port, upgrade(line="GET /page HTTP/1.1"))[0].startswith(b"HTTP/1.1 200")  # process_request
    idle()
    assert exchange(port, upgrade(line="GET /crash HTTP/1.1"))[0].startswith(b"HTTP/1.1 500")  # it raised
    idle()

    def stalled() -> socket.socket:  # a half-open handshake, once the server is reading it
        sock = stall(port)
        assert wait_until(lambda: server.handshakes_in_progress == 1, 5)
        return sock

    stalled().close()  # EOF mid-head
    idle()
    reset = stalled()
    reset.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    reset.close()  # RST mid-head
    idle()
    with stalled() as slow:  # open_timeout (1 s) passes
        idle()
        slow.settimeout(5)
        assert slow.recv(100) == b""  # closed by the server
    admitted()


def test_max_handshakes_must_be_positive() -> None:
    for bad in (0, -1):
        with pytest.raises(ValueError, match="max_handshakes"):
            serve(echo, "127.0.0.1", 0, max_handshakes=bad)


def test_no_cap_with_none(start_server: StartServer, sockets: list[socket.socket]) -> None:
    server = start_server(echo, max_handshakes=None, open_timeout=10)
    sockets.extend(stall(server.port) for _ in range(5))
    assert wait_until(lambda: server.handshakes_in_progress == 5, 5)


def test_tls_server_past_the_cap_closes(
    start_server: StartServer, sockets: list[socket.socket], tmp_path: Path
) -> None:
    """A TLS server cannot say 503 before TLS: it closes the connection, at once and without a thread."""
    from tests.certs import contexts

    server_context, client_context = contexts(tmp_path)
    server = start_server(echo, ssl=server_context, max_handshakes=1, open_timeout=20)
    sockets.append(stall(server.port, b""))
    assert wait_until(lambda: server.handshakes_in_progress == 1, 5)
    start = time.monotonic()
    with pytest.raises((ssl.SSLError, OSError)):
        rawws.connect(f"wss://localhost:{server.port}/", ssl=client_context, open_timeout=5)
    assert time.monotonic() - start < 2


# --- the half-open flood, against a server in its own process --------------------------------------

SERVER_SCRIPT = """
import sys
import rawws

def echo(ws):
    for message in ws:
        ws.send(message)

cap = None if sys.argv[1] == "none" else int(sys.argv[1])
server = rawws.serve(echo, "127.0.0.1", 0, max_handshakes=cap, open_timeout=30, ping_interval=None)
print(server.port, flush=True)
server.serve_forever()
"""

MAX_HANDSHAKES = 20
FLOOD = 300
SLACK = 8  # threads besides the handshakes: main (accept loop), the established connection, reactor, timer, ...


def thread_count(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("Threads:"):
                return int(line.split()[1])
    raise AssertionError("no Threads: line")


@pytest.fixture
def server_process() -> Iterator[Callable[[str], tuple[subprocess.Popen[str], int]]]:
    """``start(cap)`` → (a server process running SERVER_SCRIPT, its port)."""
    processes: list[subprocess.Popen[str]] = []

    def start(cap: str) -> tuple[subprocess.Popen[str], int]:
        env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
        process = subprocess.Popen(
            [sys.executable, "-c", SERVER_SCRIPT, cap], stdout=subprocess.PIPE, text=True, env=env, cwd=ROOT
        )
        processes.append(process)
        assert process.stdout is not None
        with selectors.DefaultSelector() as selector:
            selector.register(process.stdout, selectors.EVENT_READ)
            assert selector.select(30), "the server process did not print its port"
        return process, int(process.stdout.readline())

    yield start
    for process in processes:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
        if process.stdout is not None:
            process.stdout.close()


def read_refusals(
    flood: list[socket.socket], sent_at: list[float], still_open: int, timeout: float, grace: float = 1.0
) -> dict[int, tuple[bytes, float]]:
    """Read the flood sockets until all but ``still_open`` have closed, then ``grace`` seconds more.

    Returns {index: (bytes received, seconds from its request to EOF)} for the closed ones; never
    more than ``timeout`` seconds.
    """
    answers: dict[int, tuple[bytes, float]] = {}
    received: dict[int, bytes] = {}
    with selectors.DefaultSelector() as selector:
        for index, sock in enumerate(flood):
            sock.setblocking(False)
            selector.register(sock, selectors.EVENT_READ, index)
        end = time.monotonic() + timeout
        in_grace = False
        while len(answers) < len(flood) and time.monotonic() < end:
            if not in_grace and len(flood) - len(answers) <= still_open:
                end, in_grace = min(end, time.monotonic() + grace), True
            for key, _ in selector.select(max(0.0, min(0.5, end - time.monotonic()))):
                index = key.data
                try:
                    chunk = flood[index].recv(65536)
                except BlockingIOError:
                    continue
                except ConnectionResetError:
                    chunk = b""
                received[index] = received.get(index, b"") + chunk
                if not chunk:
                    answers[index] = (received[index], time.monotonic() - sent_at[index])
                    selector.unregister(flood[index])
    return answers


def round_trip(ws: Any, text: str) -> float:
    start = time.monotonic()
    ws.send(text)
    assert ws.recv(timeout=1) == text
    return time.monotonic() - start


def test_half_open_flood_cannot_exhaust_threads(
    server_process: Callable[[str], tuple[subprocess.Popen[str], int]], sockets: list[socket.socket]
) -> None:
    process, port = server_process(str(MAX_HANDSHAKES))
    url = f"ws://127.0.0.1:{port}/"
    established = rawws.connect(url, ping_interval=None)
    try:
        assert round_trip(established, "before") < 1  # so its handshake's slot is free again
        baseline = thread_count(process.pid)

        sent_at: list[float] = []
        for _ in range(FLOOD):  # each sends half a request line and stalls
            sockets.append(stall(port))
            sent_at.append(time.monotonic())
        answers = read_refusals(sockets, sent_at, still_open=MAX_HANDSHAKES, timeout=15)

        refused = {i: seconds for i, (data, seconds) in answers.items() if data.startswith(b"HTTP/1.1 503 ")}
        stalled = [i for i in range(FLOOD) if i not in answers]
        assert len(refused) == FLOOD - MAX_HANDSHAKES, f"{len(refused)} refused, {len(answers)} closed"
        assert len(stalled) == MAX_HANDSHAKES  # held by the server until open_timeout (30 s)
        assert max(refused.values()) < 3, f"slowest 503 took {max(refused.values()):.2f} s"
        sample = answers[next(iter(refused))][0]
        assert b"Retry-After: 1\r\n" in sample and sample.endswith(b"try again shortly\n")

        counts: list[int] = []
        trips: list[float] = []
        end = time.monotonic() + 3
        while time.monotonic() < end:  # the established connection is served during the flood
            counts.append(thread_count(process.pid))
            trips.append(round_trip(established, f"during {len(trips)}"))
            threading.Event().wait(0.1)
        print(
            f"\nthreads: {baseline} before the flood, at most {max(counts)} during it "
            f"({FLOOD} half-open, max_handshakes={MAX_HANDSHAKES}); "
            f"503 within {max(refused.values()) * 1000:.0f} ms; round trips ≤ {max(trips) * 1000:.1f} ms"
        )
        assert max(counts) <= MAX_HANDSHAKES + SLACK, counts
        assert max(counts) <= baseline + MAX_HANDSHAKES, counts
        assert max(trips) < 1

        # A new handshake meanwhile is refused with 503, promptly and with a clear error.
        start = time.monotonic()
        with pytest.raises(InvalidHandshake) as info:
            rawws.connect(url, open_timeout=5)
        assert info.value.status == 503 and time.monotonic() - start < 2

        # Once the stalled peers go away, their threads end and new handshakes are admitted again.
        for sock in sockets:
            sock.close()
        sockets.clear()
        assert wait_until(lambda: thread_count(process.pid) <= baseline, 10)
        with rawws.connect(url, ping_interval=None) as ws:
            assert round_trip(ws, "after") < 1
    finally:
        established.close()
