"""Echo client: send a few messages to the echo server and print the answers.

Run the server first (python examples/echo_server.py), then:
    python examples/echo_client.py [PORT]
"""

from __future__ import annotations

import sys

from rawws import connect


def main() -> None:
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 8765
    with connect(f"ws://127.0.0.1:{port}/") as ws:
        for message in ["Hello, server!", b"\x00\x01 binary", "¡unicode ✓!"]:
            ws.send(message)
            print("sent", repr(message), "got", repr(ws.recv(timeout=5)))
        waiter = ws.ping()
        if waiter.wait(5):
            print(f"ping round trip: {waiter.latency * 1000:.2f} ms")  # type: ignore[operator]


if __name__ == "__main__":
    main()
