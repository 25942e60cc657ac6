"""The servers under test, one per process: ``python benchmarks/servers.py KIND PORT``.

KIND is one of:

- ``rawws``               rawws, compression off
- ``websockets``          the websockets package's sync (threading) server, compression off
- ``websockets-deflate``  the same with permessage-deflate on
- ``tcp``                 a bare thread-per-connection TCP echo server, 4-byte length prefix:
                          the ceiling for a threaded Python server on this machine
- ``rawws-broker``        ``rawws.serve_broker()``: the pub/sub server and its JSON protocol

WebSocket servers answer three paths: ``/`` echoes, ``/sub`` registers a
subscriber (answered with ``ready``), ``/pub`` broadcasts each message it
receives to every subscriber and answers with the count and the seconds the
server spent sending.
Prints ``ready PORT`` on stdout once listening.
"""

from __future__ import annotations

import os
import resource
import socket
import struct
import sys
import threading
import time
from typing import Any

# RAWWS_SOURCE: measure rawws from another checkout (run.py --rawws-before DIR).
sys.path.insert(0, os.environ.get("RAWWS_SOURCE") or os.path.join(os.path.dirname(__file__), ".."))


def raise_fd_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def run_rawws(port: int, compression: str | None) -> None:
    import rawws

    subscribers: set[Any] = set()
    lock = threading.Lock()

    def handler(ws: Any) -> None:
        path = ws.request.path
        if path == "/sub":
            with lock:
                subscribers.add(ws)
            try:
                ws.send("ready")
                for _ in ws:
                    pass
            finally:
                with lock:
                    subscribers.discard(ws)
        elif path == "/pub":
            for message in ws:
                with lock:
                    targets = list(subscribers)
                start = time.perf_counter()
                count = rawws.broadcast(targets, message)
                ws.send(f"{count} {time.perf_counter() - start}")
        else:
            for message in ws:
                ws.send(message)

    options: dict[str, Any] = {"max_size": 16 * 2**20, "compression": compression}
    server = rawws.serve(handler, "127.0.0.1", port, **options)
    print("ready", server.port, flush=True)
    server.serve_forever()


def run_websockets(port: int, compression: str | None) -> None:
    from websockets.exceptions import ConnectionClosed
    from websockets.sync.server import serve

    subscribers: set[Any] = set()
    lock = threading.Lock()

    def handler(ws: Any) -> None:
        path = ws.request.path
        if path == "/sub":
            with lock:
                subscribers.add(ws)
            try:
                ws.send("ready")
                for _ in ws:
                    pass
            finally:
                with lock:
                    subscribers.discard(ws)
        elif path == "/pub":
            for message in ws:
                with lock:
                    targets = list(subscribers)
                sent = 0
                start = time.perf_counter()
                for target in targets:  # the sync API has no broadcast(): one send per connection
                    try:
                        target.send(message)
                        sent += 1
                    except ConnectionClosed:
                        pass
                ws.send(f"{sent} {time.perf_counter() - start}")
        else:
            for message in ws:
                ws.send(message)

    with serve(handler, "127.0.0.1", port, compression=compression, max_size=16 * 2**20) as server:
        print("ready", server.socket.getsockname()[1], flush=True)
        server.serve_forever()


def run_tcp(port: int) -> None:
    def recv_exactly(sock: socket.socket, n: int) -> bytes | None:
        buffer = bytearray(n)
        view = memoryview(buffer)
        got = 0
        while got < n:
            count = sock.recv_into(view[got:])
            if not count:
                return None
            got += count
        return bytes(buffer)

    def handle(sock: socket.socket) -> None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with sock:
            while True:
                header = recv_exactly(sock, 4)
                if header is None:
                    return
                (length,) = struct.unpack("!I", header)
                body = recv_exactly(sock, length) if length else b""
                if body is None:
                    return
                sock.sendall(header + body)

    listener = socket.create_server(("127.0.0.1", port), backlog=4096)
    print("ready", listener.getsockname()[1], flush=True)
    threading.stack_size(512 * 1024)
    while True:
        client, _ = listener.accept()
        threading.Thread(target=handle, args=(client,), daemon=True).start()


def main() -> None:
    kind, port = sys.argv[1], int(sys.argv[2])
    raise_fd_limit()
    if kind == "rawws":
        run_rawws(port, None)
    elif kind == "rawws-deflate":
        run_rawws(port, "deflate")
    elif kind == "websockets":
        run_websockets(port, None)
    elif kind == "websockets-deflate":
        run_websockets(port, "deflate")
    elif kind == "tcp":
        run_tcp(port)
    elif kind == "rawws-broker":
        import rawws

        server = rawws.serve_broker("127.0.0.1", port)
        print("ready", server.port, flush=True)
        server.serve_forever()
    else:
        raise SystemExit(f"unknown server kind {kind!r}")


if __name__ == "__main__":
    main()
