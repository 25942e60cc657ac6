"""Cross-node fan-out latency through Redis: publish on node A, receive on a client of node B.

Run:  python benchmarks/redis_latency.py [--messages 1000] [--subscribers 10]

Starts redis-server (Debian package redis-server) on a free loopback port and
two `python -m rawws serve --broker --redis URL` nodes; subscribers connect
to node B, a publisher to node A. The latency of each message is from the
publisher's send to the last subscriber's receipt (one clock: all clients are
in this process). Prints p50 / p99 / max, and the same-node figure for
comparison.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

import redis

from rawws import connect, send_message


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def node(url: str) -> tuple[subprocess.Popen[str], int]:
    process = subprocess.Popen(
        [sys.executable, "-m", "rawws", "serve", "--broker", "--port", "0", "--redis", url],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    match = re.search(r":(\d+)/", process.stdout.readline())
    assert match
    return process, int(match.group(1))


def measure(
    pub_port: int, sub_port: int, messages: int, subscribers: int, channel: str, redis_port: int
) -> list[float]:
    subs = [connect(f"ws://127.0.0.1:{sub_port}/", max_queue=None, compression=None) for _ in range(subscribers)]
    for ws in subs:
        send_message(ws, "subscribe", {"channel": channel})
    client = redis.Redis(port=redis_port)
    end = time.monotonic() + 10
    while time.monotonic() < end and not dict(client.pubsub_numsub("rawws:" + channel)).get(
        ("rawws:" + channel).encode()
    ):
        time.sleep(0.05)
    sent: dict[int, float] = {}
    last_seen: dict[int, float] = {}
    counts: dict[int, int] = {}
    lock = threading.Lock()

    def reader(ws: object) -> None:
        got = 0
        while got < messages:
            message = json.loads(ws.recv(timeout=30))  # type: ignore[attr-defined]
            if message["type"] != "message":
                continue
            seq = message["payload"]["message"]
            now = time.perf_counter()
            with lock:
                counts[seq] = counts.get(seq, 0) + 1
                last_seen[seq] = now
            got += 1

    threads = [threading.Thread(target=reader, args=(ws,)) for ws in subs]
    for t in threads:
        t.start()
    with connect(f"ws://127.0.0.1:{pub_port}/", max_queue=None, compression=None) as publisher:
        for seq in range(messages):
            sent[seq] = time.perf_counter()
            send_message(publisher, "publish", {"channel": channel, "message": seq})
            time.sleep(0.002)  # a steady stream, not a burst: latency, not queueing
    for t in threads:
        t.join(60)
    for ws in subs:
        ws.close()
    assert all(counts.get(seq) == subscribers for seq in range(messages)), "lost or duplicated messages"
    return [(last_seen[seq] - sent[seq]) * 1000 for seq in range(messages)]


def report(label: str, latencies: list[float]) -> None:
    latencies = sorted(latencies)
    p = lambda q: latencies[min(len(latencies) - 1, int(q * len(latencies)))]  # noqa: E731
    mean = statistics.mean(latencies)
    print(f"{label:32} p50 {p(0.5):6.2f} ms   p99 {p(0.99):6.2f} ms   max {latencies[-1]:6.2f} ms   mean {mean:.2f} ms")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=1000)
    parser.add_argument("--subscribers", type=int, default=10)
    args = parser.parse_args()
    executable = shutil.which("redis-server")
    if executable is None:
        raise SystemExit("needs redis-server (apt-get install redis-server)")
    port = free_port()
    workdir = tempfile.mkdtemp()
    redis_process = subprocess.Popen(
        [executable, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--dir", workdir],
        stdout=subprocess.DEVNULL,
    )
    time.sleep(0.5)
    url = f"redis://127.0.0.1:{port}/0"
    (a, a_port), (b, b_port) = node(url), node(url)
    try:
        print(f"{args.messages} messages, {args.subscribers} subscribers, one publisher (one message every 2 ms)")
        report("same node (A → A)", measure(a_port, a_port, args.messages, args.subscribers, "same", port))
        report("cross node (A → Redis → B)", measure(a_port, b_port, args.messages, args.subscribers, "cross", port))
    finally:
        for process in (a, b):
            process.terminate()
        redis_process.terminate()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
