"""What one hostile client costs a rawws server, measured from outside the server's process.

Run by hand (``python benchmarks/attacks.py``); ``--root DIR`` measures another
checkout (for example ``git worktree add /tmp/before <commit>``) so that the
figures before and after a change come from the same machine and run. Each
attack targets an echo server in its own process; resident memory, threads
and CPU time are read from ``/proc``. The tests in ``tests/test_bounds.py``
assert the bounds; this prints the figures.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import sys
import threading
import time
import zlib

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from rawws import connect  # noqa: E402
from rawws.frames import Opcode  # noqa: E402
from tests.hostile import HostilePeer  # noqa: E402
from tests.procserver import ECHO, SLOW_ECHO, ServerProcess  # noqa: E402

MiB = 2**20


def _flood(sock: socket.socket, chunk: bytes, limit: int, seconds: float) -> int:
    sock.settimeout(1.0)
    sent = 0
    end = time.monotonic() + seconds
    while sent < limit and time.monotonic() < end:
        try:
            sock.sendall(chunk)
        except OSError:
            break
        sent += len(chunk)
    return sent


def ping_flood(root: str | None) -> str:
    with ServerProcess(ECHO, root=root, ping_interval=None) as server:
        other = connect(f"ws://127.0.0.1:{server.port}/", ping_interval=None)
        time.sleep(0.5)
        baseline = server.rss
        samples: list[float] = []
        with HostilePeer(server.port) as peer:
            peer.handshake()
            pings = b"".join(peer.frame_bytes(Opcode.PING, bytes(125)) for _ in range(512))
            result: list[int] = []
            flood = threading.Thread(target=lambda: result.append(_flood(peer.sock, pings, 120 * MiB, 14)))
            flood.start()
            peak = baseline
            while flood.is_alive():
                start = time.monotonic()
                other.send("x")
                other.recv(timeout=30)
                samples.append(time.monotonic() - start)
                peak = max(peak, server.rss)
                time.sleep(0.05)
        other.close()
    return (
        f"{result[0] / MiB:.0f} MiB of pings, never reading: +{(peak - baseline) / MiB:.1f} MiB; "
        f"other client's round trip p50 {statistics.median(samples) * 1000:.1f} ms, max {max(samples) * 1000:.1f} ms"
    )


def compressed_burst(root: str | None) -> str:
    compressor = zlib.compressobj(9, zlib.DEFLATED, -9)
    bomb = (compressor.compress(bytes(MiB)) + compressor.flush(zlib.Z_SYNC_FLUSH))[:-4]
    with ServerProcess(SLOW_ECHO, root=root, ping_interval=None) as server:
        time.sleep(0.3)
        baseline = server.rss
        peers = []
        for _ in range(4):
            peer = HostilePeer(server.port)
            peer.handshake("Sec-WebSocket-Extensions: permessage-deflate; client_no_context_takeover\r\n")
            peer.send_raw(b"".join(peer.frame_bytes(Opcode.BINARY, bomb, rsv=0x40) for _ in range(58)))
            peers.append(peer)
        peak = server.peak_rss_during(4.0)
        for peer in peers:
            peer.close()
    burst = 58 * len(bomb) / 1024
    return f"4 connections x 58 compressed 1 MiB messages ({burst:.0f} KiB each): +{(peak - baseline) / MiB:.1f} MiB"


def tiny_fragments(root: str | None, size: int) -> str:
    with ServerProcess(ECHO, root=root, ping_interval=None) as server:
        time.sleep(0.3)
        baseline, cpu = server.rss, server.cpu_seconds
        peak = [baseline]
        stop = threading.Event()

        def sample() -> None:
            while not stop.wait(0.05):
                peak[0] = max(peak[0], server.rss)

        sampler = threading.Thread(target=sample)
        sampler.start()
        start = time.monotonic()
        with HostilePeer(server.port, timeout=60) as peer:
            peer.handshake()
            one = peer.frame_bytes(Opcode.CONT, bytes(size), fin=False)
            last = peer.frame_bytes(Opcode.CONT, bytes(size), fin=True)
            stream = peer.frame_bytes(Opcode.BINARY, bytes(size), fin=False) + one * (MiB - 2) + last
            writer = threading.Thread(target=lambda: _flood(peer.sock, stream, 1, 60))
            writer.start()
            code: object = None
            try:
                while code is None:
                    frame = peer.read_frame(60)
                    if frame.opcode == Opcode.CLOSE:
                        code = int.from_bytes(frame.payload[:2], "big")
                    elif frame.opcode == Opcode.BINARY:
                        code = "the echo"
            except (OSError, ConnectionError):
                code = "nothing (dropped)"
            elapsed = time.monotonic() - start
            writer.join(60)
        stop.set()
        sampler.join()
        used = server.cpu_seconds - cpu
    what = "1 MiB in 1-byte fragments" if size else "a million empty continuation frames"
    return f"{what}: answered {code} after {elapsed:.2f} s, {used:.2f} s CPU, +{(peak[0] - baseline) / MiB:.1f} MiB"


def idle_connections(root: str | None, count: int = 500) -> str:
    with ServerProcess(ECHO, root=root, ping_interval=None) as server:
        with connect(f"ws://127.0.0.1:{server.port}/", ping_interval=None) as ws:
            ws.send("warm")
            ws.recv(timeout=10)
        time.sleep(0.5)
        rss, threads = server.rss, server.threads
        clients = [
            connect(f"ws://127.0.0.1:{server.port}/", ping_interval=None, compression=None) for _ in range(count)
        ]
        for ws in clients:
            ws.send("hi")
        for ws in clients:
            ws.recv(timeout=30)
        time.sleep(1.0)
        per = (server.rss - rss) / count
        extra = (server.threads - threads) / count
        for ws in clients:
            ws.close()
    return f"{count} idle connections: {per / 1024:.1f} KiB resident and {extra:.2f} threads per connection"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--root", help="the checkout to import rawws from (default: this one)")
    args = parser.parse_args()
    print(f"rawws from {args.root or 'this checkout'}, Python {sys.version.split()[0]}")
    for attack in (
        ping_flood,
        compressed_burst,
        lambda root: tiny_fragments(root, 1),
        lambda root: tiny_fragments(root, 0),
        idle_connections,
    ):
        print("-", attack(args.root), flush=True)


if __name__ == "__main__":
    main()
