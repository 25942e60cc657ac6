"""Bytes on the wire: HTTP polling versus one WebSocket, for one update a second over a minute.

Run:  python examples/polling_vs_websocket.py [--updates 60] [--real-time]

Both sides are real and measured on loopback: an `http.server` answering
polls from an `http.client` client, and a rawws server pushing the same
updates over one WebSocket. A counting TCP proxy sits in front of each server
and counts every byte in both directions (HTTP heads included; TCP/IP packet
headers are not, being the same story for both). Without --real-time the
updates are sent back to back: the bytes do not depend on the pace.
"""

from __future__ import annotations

import argparse
import http.client
import http.server
import json
import socket
import threading
import time

from rawws import ServerConnection, connect, serve

# What a browser adds to every poll (a fetch() from a page): the part a bare client never sends.
BROWSER_HEADERS = {
    "User-Agent": "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36",
    "Accept": "application/json, text/plain, */*",
    "Accept-Language": "en-US,en;q=0.9",
    "Accept-Encoding": "gzip, deflate, br",
    "Referer": "http://127.0.0.1/dashboard",
    "Cookie": "session=6f1c2a9e0b7d4c3f8a2e5d1b9c7a4e2f",
}


def update(i: int) -> bytes:
    return json.dumps(
        {"type": "tick", "payload": {"seq": i, "price": 100 + i % 7}, "timestamp": 1764200000000 + i}
    ).encode()


class CountingProxy:
    """Forward one port to another, counting bytes each way."""

    def __init__(self, target: int) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.target = target
        self.up = 0  # client → server
        self.down = 0  # server → client
        self._lock = threading.Lock()
        self._pumps: list[threading.Thread] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            server = socket.create_connection(("127.0.0.1", self.target))
            for args in ((client, server, "up"), (server, client, "down")):
                pump = threading.Thread(target=self._pump, args=args, daemon=True)
                self._pumps.append(pump)
                pump.start()

    def _pump(self, source: socket.socket, sink: socket.socket, direction: str) -> None:
        try:
            while data := source.recv(65536):
                with self._lock:
                    setattr(self, direction, getattr(self, direction) + len(data))
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for s in (sink, source):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self) -> None:
        """Stop accepting, and wait for the connections made through us to end: every byte counted."""
        self.listener.close()
        for pump in list(self._pumps):
            pump.join(10)


def measure_polling(updates: int, interval: float, keep_alive: bool, browser: bool) -> tuple[int, int]:
    counter = {"i": 0}

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:  # noqa: N802
            body = update(counter["i"])
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            if not keep_alive:
                self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    proxy = CountingProxy(httpd.server_address[1])
    headers = dict(BROWSER_HEADERS) if browser else {}
    connection = http.client.HTTPConnection("127.0.0.1", proxy.port)
    for i in range(updates):
        counter["i"] = i
        if not keep_alive:
            connection = http.client.HTTPConnection("127.0.0.1", proxy.port)
            headers["Connection"] = "close"
        connection.request("GET", "/updates", headers=headers)
        response = connection.getresponse()
        assert response.read() == update(i)
        if not keep_alive:
            connection.close()
        time.sleep(interval)
    connection.close()
    proxy.close()
    httpd.shutdown()
    return proxy.up, proxy.down


def measure_websocket(updates: int, interval: float) -> tuple[int, int]:
    def handler(ws: ServerConnection) -> None:
        for i in range(updates):
            ws.send(update(i).decode())
            time.sleep(interval)
        ws.close()

    server = serve(handler, "127.0.0.1", 0, compression=None, ping_interval=None).start()
    proxy = CountingProxy(server.port)
    with connect(f"ws://127.0.0.1:{proxy.port}/", compression=None, ping_interval=None) as ws:
        received = [m for m in ws]
    assert received == [update(i).decode() for i in range(updates)]
    proxy.close()
    server.shutdown(5)
    return proxy.up, proxy.down


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--updates", type=int, default=60)
    parser.add_argument("--real-time", action="store_true", help="one update per second, as in the real thing")
    args = parser.parse_args()
    interval = 1.0 if args.real_time else 0.0
    n = args.updates
    payload = sum(len(update(i)) for i in range(n))

    rows = [
        ("HTTP polling, browser-like headers, keep-alive", measure_polling(n, interval, True, True)),
        ("HTTP polling, bare client, keep-alive", measure_polling(n, interval, True, False)),
        ("HTTP polling, bare client, new connection each", measure_polling(n, interval, False, False)),
        ("WebSocket, one connection (handshake + frames)", measure_websocket(n, interval)),
    ]
    print(f"{n} updates of {payload / n:.0f} bytes of JSON each ({payload:,} bytes of data in all)\n")
    print(f"{'':50} {'client→server':>14} {'server→client':>14} {'total':>9} {'overhead/update':>16}")
    for label, (up, down) in rows:
        total = up + down
        print(f"{label:50} {up:>14,} {down:>14,} {total:>9,} {(total - payload) / n:>15.0f}B")
    ws_total = sum(rows[-1][1])
    print()
    for label, (up, down) in rows[:-1]:
        print(f"{label}: {(up + down) / ws_total:.1f}× the WebSocket's bytes")
    # The same figures computed from the parts, for the browser-like keep-alive case:
    up, down = rows[0][1]
    print(
        f"\nper poll: request {up / n:.0f} B + response {down / n:.0f} B; per WebSocket update: a 2-byte frame header"
    )


if __name__ == "__main__":
    main()
