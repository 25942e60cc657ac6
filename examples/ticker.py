"""A live ticker: the server broadcasts a price update to every subscriber once a second.

Run:  python examples/ticker.py serve [PORT]
      python examples/ticker.py watch [PORT] [COUNT]     (prints COUNT updates, default 5, and exits)

Uses rawws.broadcast(): the frame is encoded once and the same bytes go to
every connection, without waiting on any slow one.
"""

from __future__ import annotations

import json
import math
import sys
import threading
import time

import rawws


def serve(port: int) -> None:
    watchers: set[rawws.ServerConnection] = set()
    lock = threading.Lock()

    def handler(ws: rawws.ServerConnection) -> None:
        with lock:
            watchers.add(ws)
        try:
            for _ in ws:  # ignore input; the loop ends when the client leaves
                pass
        finally:
            with lock:
                watchers.discard(ws)

    server = rawws.serve(handler, "127.0.0.1", port).start()
    print(f"ticker on ws://127.0.0.1:{server.port}/", flush=True)
    tick = 0
    try:
        while True:
            price = 100 + 5 * math.sin(tick / 5)
            update = json.dumps(
                {
                    "type": "tick",
                    "payload": {"symbol": "RAWW", "price": round(price, 2)},
                    "timestamp": int(time.time() * 1000),
                }
            )
            with lock:
                targets = list(watchers)
            rawws.broadcast(targets, update)
            tick += 1
            time.sleep(1)
    except KeyboardInterrupt:
        server.shutdown()


def watch(port: int, count: int) -> None:
    with rawws.connect(f"ws://127.0.0.1:{port}/") as ws:
        for _ in range(count):
            update = json.loads(ws.recv(timeout=5))
            print(f"{update['payload']['symbol']} {update['payload']['price']:.2f}", flush=True)


def main() -> None:
    mode = sys.argv[1] if len(sys.argv) > 1 else "serve"
    port = int(sys.argv[2]) if len(sys.argv) > 2 else 8765
    if mode == "serve":
        serve(port)
    else:
        watch(port, int(sys.argv[3]) if len(sys.argv) > 3 else 5)


if __name__ == "__main__":
    main()
