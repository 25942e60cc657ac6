"""HTTP and WebSocket on one port, with token authentication in process_request.

Run:  python examples/http_and_ws.py [PORT]

- GET /health                       → 200 "ok" (plain HTTP, for load balancers)
- GET /                             → a small HTML page
- WebSocket /ws?token=s3cret        → accepted (or an "Authorization: Bearer s3cret" header)
- WebSocket /ws without the token   → 401, before any upgrade
"""

from __future__ import annotations

import sys
from urllib.parse import parse_qs, urlsplit

from rawws import PendingConnection, ServerConnection, serve
from rawws.http11 import Request, Response

TOKEN = "s3cret"
PAGE = "<!doctype html><title>rawws</title><p>WebSocket endpoint: <code>/ws?token=…</code></p>"


def process_request(pending: PendingConnection, request: Request) -> Response | None:
    url = urlsplit(request.path)
    if url.path == "/health":
        return pending.respond(200, "ok\n")
    if url.path == "/" and "upgrade" not in (request.headers.get("Connection") or "").lower():
        return pending.respond(200, PAGE, content_type="text/html; charset=utf-8")
    if url.path != "/ws":
        return pending.respond(404, "not found\n")
    token = parse_qs(url.query).get("token", [""])[0]
    bearer = request.headers.get("Authorization") or ""
    if token != TOKEN and bearer != f"Bearer {TOKEN}":
        return pending.respond(401, "a valid token is required\n", headers=[("WWW-Authenticate", "Bearer")])
    return None  # go on with the WebSocket handshake


def handler(ws: ServerConnection) -> None:
    ws.send("welcome, authenticated client")
    for message in ws:
        ws.send(message)


def main() -> None:
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 8765
    with serve(handler, "127.0.0.1", port, process_request=process_request) as server:
        print(f"HTTP and WebSocket on http://127.0.0.1:{server.port}/", flush=True)
        server.serve_forever()


if __name__ == "__main__":
    main()
