"""Hostile peers against a server in its own process: every bound measured from outside.

Each test attacks a rawws server running in a subprocess (``tests/procserver.py``)
and reads its resident memory, threads and CPU time from ``/proc``, as an
operator would. The bounds asserted here are the ones the README's "Limits and
defences" section documents.
"""

from __future__ import annotations

import json
import socket
import statistics
import threading
import time
import zlib
from typing import Any

import pytest

from rawws import connect
from rawws.exceptions import ConnectionClosed, ConnectionClosedError
from rawws.frames import FrameParser, Opcode
from tests.conftest import scaled, wait_until
from tests.hostile import HostilePeer
from tests.multiclient import MultiClient
from tests.procserver import ECHO, SLOW_ECHO, ServerProcess

MiB = 2**20


def _url(port: int) -> str:
    return f"ws://127.0.0.1:{port}/"


def _send_until_pushed_back(sock: socket.socket, chunk: bytes, *, limit: int, seconds: float) -> int:
    """Write ``chunk`` over and over until ``limit`` bytes, ``seconds`` pass, or a write stalls for 1 s."""
    sock.settimeout(1.0)
    sent = 0
    end = time.monotonic() + seconds
    while sent < limit and time.monotonic() < end:
        try:
            sock.sendall(chunk)
        except TimeoutError:
            break  # TCP pushes back: the server stopped reading
        except OSError:
            break  # the server dropped us
        sent += len(chunk)
    return sent


def _warm_up(server: ServerProcess) -> None:
    """One connection and back, so that the server's shared threads (reactor, timers) exist."""
    with connect(_url(server.port), ping_interval=None) as ws:
        ws.send("warm")
        ws.recv(timeout=10)
    time.sleep(0.3)


def _send_quietly(sock: socket.socket, data: bytes) -> None:
    try:
        sock.sendall(data)
    except OSError:
        pass  # the server closed on us: expected


def _read_close_code(sock: socket.socket) -> tuple[int | None, str]:
    """Read (unmasked server frames) until a close frame or the end; return its code and how reading ended."""
    parser = FrameParser(mask_expected=False, max_size=None)
    start = time.monotonic()
    received = 0
    while time.monotonic() - start < scaled(30):
        try:
            data = sock.recv(65536)
        except OSError as exc:
            return None, f"{exc!r} after {received} bytes and {time.monotonic() - start:.1f} s"
        if not data:
            return None, f"EOF after {received} bytes and {time.monotonic() - start:.1f} s"
        received += len(data)
        for frame in parser.feed(data):
            if frame.opcode == Opcode.CLOSE:
                return int.from_bytes(frame.payload[:2], "big"), "close frame"
    return None, f"nothing for {scaled(30)} s"


class RoundTrips:
    """Another client's echo round trips, measured in a thread while an attack runs."""

    def __init__(self, port: int) -> None:
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._ws = connect(_url(port), ping_interval=None)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        for _ in range(2000):
            if self._stop.wait(0.05):
                return
            start = time.monotonic()
            self._ws.send("x")
            self._ws.recv(timeout=10)
            self.samples.append(time.monotonic() - start)

    def stop(self) -> list[float]:
        self._stop.set()
        self._thread.join(15)
        self._ws.close()
        return self.samples


def test_ping_flood_from_a_peer_that_never_reads_costs_no_memory() -> None:
    with ServerProcess(ECHO, ping_interval=None) as server:
        probe = RoundTrips(server.port)
        time.sleep(0.5)
        baseline = server.rss
        with HostilePeer(server.port) as peer:
            peer.handshake()
            pings = b"".join(peer.frame_bytes(Opcode.PING, bytes(125)) for _ in range(512))
            result: dict[str, int] = {}
            flood = threading.Thread(
                target=lambda: result.setdefault(
                    "sent", _send_until_pushed_back(peer.sock, pings, limit=120 * MiB, seconds=8)
                )
            )
            flood.start()
            peak = server.peak_rss_during(4.0)
            flood.join(15)
            samples = probe.stop()
            assert server.alive()
        growth = peak - baseline
        # Before: 120 MiB of pings in 14 s grew the server by 150 MiB. Pongs not yet written are
        # replaced by the newest (§5.5.3), so what waits for this peer stays one pong.
        assert growth < 8 * MiB, f"the server grew by {growth / MiB:.1f} MiB after {result['sent'] / MiB:.0f} MiB"
        assert samples, "the other client got no round trip through"
        assert statistics.median(samples) < 0.1, samples
        assert max(samples) < 0.5, max(samples)


def test_a_peer_that_reads_nothing_is_dropped_after_write_timeout() -> None:
    with ServerProcess(ECHO, ping_interval=None, write_timeout=1.0) as server:
        _warm_up(server)
        threads = server.threads
        with HostilePeer(server.port) as peer:
            peer.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            peer.handshake()
            # Echoed messages fill the kernel's buffers both ways; the handler's send() then waits.
            big = peer.frame_bytes(Opcode.BINARY, bytes(MiB - 16))
            _send_until_pushed_back(peer.sock, big, limit=64 * MiB, seconds=10)
            start = time.monotonic()
            while server.threads > threads and time.monotonic() - start < 10:
                time.sleep(0.1)
            waited = time.monotonic() - start
            assert server.threads <= threads, "the connection's thread is still there"
    assert waited < 5, f"dropped only after {waited:.1f} s"


def _deflate_peer(port: int) -> tuple[HostilePeer, Any]:
    peer = HostilePeer(port)
    response = peer.handshake("Sec-WebSocket-Extensions: permessage-deflate; client_no_context_takeover\r\n")
    assert "permessage-deflate" in response.headers.get("Sec-WebSocket-Extensions", "")
    return peer, None


def _compressed(data: bytes) -> bytes:
    compressor = zlib.compressobj(9, zlib.DEFLATED, -9)
    out = compressor.compress(data) + compressor.flush(zlib.Z_SYNC_FLUSH)
    assert out.endswith(b"\x00\x00\xff\xff")
    return out[:-4]


def test_compressed_burst_is_not_inflated_ahead_of_the_handler() -> None:
    max_queue = 4
    with ServerProcess(SLOW_ECHO, ping_interval=None, max_queue=max_queue) as server:
        time.sleep(0.3)
        baseline = server.rss
        bomb = _compressed(bytes(MiB))  # 1 MiB of zeros in about a kilobyte
        peers = []
        for _ in range(4):
            peer, _unused = _deflate_peer(server.port)
            peer.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            burst = b"".join(peer.frame_bytes(Opcode.BINARY, bomb, rsv=0x40) for _ in range(58))
            peer.send_raw(burst)
            peers.append(peer)
        peak = server.peak_rss_during(3.0)
        for peer in peers:
            peer.close()
        assert server.alive()
    growth = peak - baseline
    # Per connection: max_queue messages queued + one in the handler's hands + one being inflated.
    bound = 4 * (max_queue + 2) * MiB + 8 * MiB
    assert growth < bound, f"the server grew by {growth / MiB:.1f} MiB (bound {bound / MiB:.0f} MiB)"


@pytest.mark.parametrize("payload_size", [1, 0], ids=["1-byte fragments", "empty continuations"])
def test_tiny_fragments_are_refused_with_1009_at_bounded_cost(payload_size: int) -> None:
    with ServerProcess(ECHO, ping_interval=None) as server:
        time.sleep(0.3)
        baseline, cpu = server.rss, server.cpu_seconds
        with HostilePeer(server.port, timeout=30) as peer:
            peer.handshake()
            assert not peer.frames
            one = peer.frame_bytes(Opcode.CONT, bytes(payload_size), fin=False)
            stream = peer.frame_bytes(Opcode.BINARY, bytes(payload_size), fin=False) + one * (MiB - 1)
            writer = threading.Thread(target=_send_quietly, args=(peer.sock, stream))
            writer.start()
            code, how = _read_close_code(peer.sock)
            writer.join(30)
        used = server.cpu_seconds - cpu
        peak = server.rss
        assert server.alive()
    assert code == 1009, how
    # Before the bound: 7.7 s of CPU and +139 MiB for the 1-byte case, 6.7 s and +86 MiB for the empty one.
    assert used < 3.0, f"{used:.2f} s of server CPU"
    assert peak - baseline < 16 * MiB, f"the server grew by {(peak - baseline) / MiB:.1f} MiB"


def test_a_4_mib_message_in_64_byte_fragments_goes_through() -> None:
    with ServerProcess(ECHO, ping_interval=None, max_size=4 * MiB) as server:
        message = bytes(range(64)) * (4 * MiB // 64)
        with connect(_url(server.port), ping_interval=None, max_size=4 * MiB, compression=None) as ws:
            ws.send(message[i : i + 64] for i in range(0, len(message), 64))
            assert ws.recv(timeout=60) == message


def test_a_16_mib_message_goes_through_when_max_size_allows_it() -> None:
    with ServerProcess(ECHO, ping_interval=None, max_size=16 * MiB) as server:
        message = bytes(range(256)) * (16 * MiB // 256)
        with connect(_url(server.port), ping_interval=None, max_size=16 * MiB) as ws:
            ws.send(message)
            assert ws.recv(timeout=60) == message


def test_invalid_utf8_inside_one_frame_fails_the_server_side_before_the_frame_ends() -> None:
    with ServerProcess(ECHO, ping_interval=None) as server:
        with HostilePeer(server.port) as peer:
            peer.handshake()
            frame = peer.frame_bytes(Opcode.TEXT, b"valid so far \xff and more" + bytes(100_000))
            peer.send_raw(frame[:2000])  # the header, the bad byte, and then we stop
            code, _reason = peer.expect_close(timeout=5)
    assert code == 1007


def test_invalid_utf8_inside_one_frame_fails_the_client_side_before_the_frame_ends() -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def hostile_server() -> None:
        from rawws.handshake import accept_key

        conn, _ = listener.accept()
        with conn:
            head = b""
            while b"\r\n\r\n" not in head:
                head += conn.recv(4096)
            key = next(
                line.split(b":", 1)[1].strip().decode()
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"sec-websocket-key:")
            )
            conn.sendall(
                b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                b"Sec-WebSocket-Accept: " + accept_key(key).encode() + b"\r\n\r\n"
            )
            # A 100 kB text frame, unmasked as a server's must be, of which only the start is sent.
            conn.sendall(b"\x81\x7f" + (100_000).to_bytes(8, "big") + b"ok \xc0\xaf" + bytes(1000))
            conn.settimeout(10)
            try:
                while conn.recv(4096):
                    pass
            except OSError:
                pass

    thread = threading.Thread(target=hostile_server, daemon=True)
    thread.start()
    with connect(_url(port), ping_interval=None, compression=None, close_timeout=1) as ws:
        with pytest.raises(ConnectionClosedError) as info:
            ws.recv(timeout=5)
    assert info.value.sent_code == 1007
    thread.join(15)
    listener.close()


_DEPTH_HANDLER = """
import json, sys

def deepest_json():
    lo, hi = 1, 200_000
    while hi - lo > 1:
        mid = (lo + hi) // 2
        try:
            json.loads("[" * mid + "]" * mid)
        except RecursionError:
            hi = mid
        else:
            lo = mid
    return lo

def recurse(n):
    return recurse(n + 1)

def handler(ws):
    for message in ws:
        try:
            if message == "recurse":
                recurse(0)
                ws.send("no error")
            elif message == "json":
                depth = deepest_json()
                ws.send(json.dumps({"deepest": depth, "limit": sys.getrecursionlimit()}))
            elif message == "too deep":
                json.loads("[" * 200_000)
                ws.send("no error")
        except RecursionError:
            ws.send("RecursionError")
"""


@pytest.mark.parametrize("recursion_limit", [None, 5000])
def test_handlers_recurse_to_the_limit_and_get_recursion_error_never_a_crash(recursion_limit: int | None) -> None:
    source = _DEPTH_HANDLER
    if recursion_limit is not None:
        source = f"import sys\nsys.setrecursionlimit({recursion_limit})\n" + source
    with ServerProcess(source, ping_interval=None) as server:
        with connect(_url(server.port), ping_interval=None) as ws:
            ws.send("recurse")
            assert ws.recv(timeout=30) == "RecursionError"
            ws.send("json")
            found = json.loads(ws.recv(timeout=60))
            assert found["deepest"] > 500, found  # the deepest document this interpreter parses, parsed in a handler
            ws.send("too deep")
            assert ws.recv(timeout=30) == "RecursionError"
        assert server.alive()


def test_idle_connections_cost_one_thread_and_little_memory() -> None:
    count = 300
    with ServerProcess(ECHO, ping_interval=None) as server:
        _warm_up(server)
        rss, threads = server.rss, server.threads
        clients = []
        try:
            for _ in range(count):
                clients.append(connect(_url(server.port), ping_interval=None, compression=None))
            for ws in clients:
                ws.send("hi")
            for ws in clients:
                assert ws.recv(timeout=30) == "hi"
            time.sleep(0.5)
            per_connection = (server.rss - rss) / count
            extra_threads = server.threads - threads
        finally:
            for ws in clients:
                try:
                    ws.close()
                except ConnectionClosed:
                    pass
    assert extra_threads <= count + 2
    # ~29 KiB measured (benchmarks/RESULTS.md); the bound leaves room for a noisy machine.
    assert per_connection < 48 * 1024, f"{per_connection / 1024:.1f} KiB per idle connection"


def test_a_burst_on_many_idle_connections_is_answered_with_one_thread_each() -> None:
    """More handlers wait than may read their own sockets: the reactor reads for the rest (rawws/sync/reactor.py)."""
    count = 400
    with ServerProcess(ECHO, ping_interval=None) as server:
        _warm_up(server)
        threads = server.threads
        clients = MultiClient(server.port, count)
        try:
            time.sleep(0.5)  # every handler is now waiting in recv()
            for index in range(count):
                clients.send_text(index, f"burst {index}")
            answers: dict[int, str] = {}
            answered = clients.run(
                lambda i, text: answers.__setitem__(i, text), lambda: len(answers) == count, scaled(30)
            )
            extra_threads = server.threads - threads
        finally:
            clients.close()
    assert answered, f"{count - len(answers)} of {count} connections got no answer"
    assert answers == {index: f"burst {index}" for index in range(count)}
    assert extra_threads <= count + 2


@pytest.mark.parametrize("ending", ["close", "invalid utf-8", "eof"])
def test_frames_after_the_end_in_one_write_cost_no_cpu_and_free_the_connection(ending: str) -> None:
    """A close frame (or a violation) with frames behind it in the same write: the server must not spin on them."""
    with ServerProcess(ECHO, ping_interval=None, max_queue=4) as server:
        _warm_up(server)
        threads = server.threads
        peers = []
        for _ in range(5):
            peer = HostilePeer(server.port)
            peer.handshake()
            last = peer.frame_bytes(0x8) if ending != "invalid utf-8" else peer.frame_bytes(0x1, b"\xff")
            burst = b"".join(peer.frame_bytes(0x1, b"m") for _ in range(5)) + last
            peer.send_raw(burst + b"".join(peer.frame_bytes(0x1, b"after") for _ in range(100)))
            if ending == "eof":
                peer.sock.shutdown(socket.SHUT_WR)
            peers.append(peer)
        for peer in peers:
            peer.expect_eof(scaled(10))
            peer.close()
        assert wait_until(lambda: server.threads <= threads, scaled(10)), f"{server.threads - threads} threads left"
        cpu = server.cpu_seconds
        time.sleep(1.0)
        spent = server.cpu_seconds - cpu
    assert spent < 0.3, f"the idle server spent {spent:.2f} s of CPU in 1 s: something spins"
