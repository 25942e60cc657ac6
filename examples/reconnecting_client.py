"""The reconnecting event client: it rides out a server restart with exponential backoff.

Run:  python examples/reconnecting_client.py

Self-contained: it starts an echo server, connects, stops the server, starts
it again on the same port, and shows the client reconnecting by itself
(1 s, 2 s, 4 s, … capped at 30 s in real use; shortened here).
"""

from __future__ import annotations

import sys
import threading

from rawws import EventClient, ServerConnection, serve


def echo(ws: ServerConnection) -> None:
    for message in ws:
        ws.send(message)


def main() -> None:
    server = serve(echo, "127.0.0.1", 0).start()
    port = server.port
    opened = threading.Semaphore(0)
    replied = threading.Semaphore(0)

    client = EventClient(
        f"ws://127.0.0.1:{port}/",
        on_open=lambda c: (print("open"), opened.release()),
        on_message=lambda c, message: (print("message:", message), replied.release()),
        on_close=lambda c, code, reason: print(f"close: code={code}"),
        on_error=lambda c, exc: print(f"error: {type(exc).__name__}"),
        initial_delay=0.2,
        factor=2.0,
        max_delay=2.0,
    )
    with client:
        if not opened.acquire(timeout=30):
            sys.exit("did not connect")
        client.send("hello before the restart")
        # Wait for the echo: a server stopped right after the send may never have read it.
        if not replied.acquire(timeout=30):
            sys.exit("no echo")
        server.shutdown(5)
        print("server stopped; the client will retry with backoff")
        server = serve(echo, "127.0.0.1", port).start()
        if not opened.acquire(timeout=30):
            sys.exit("did not reconnect")
        client.send("hello after the restart")
        if not replied.acquire(timeout=30):
            sys.exit("no echo after the restart")
        print("reconnect delays waited:", [round(d, 2) for d in client.delays])
    server.shutdown(5)


if __name__ == "__main__":
    main()
