"""Echo server: every message comes back with the same type.

Run:  python examples/echo_server.py [PORT]
Then: python examples/echo_client.py [PORT]   (or: python -m rawws connect ws://127.0.0.1:8765/)
"""

from __future__ import annotations

import sys

from rawws import ServerConnection, serve


def echo(ws: ServerConnection) -> None:
    for message in ws:
        ws.send(message)


def main() -> None:
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 8765
    with serve(echo, "127.0.0.1", port) as server:
        print(f"echo server on ws://127.0.0.1:{server.port}/", flush=True)
        server.serve_forever()


if __name__ == "__main__":
    main()
