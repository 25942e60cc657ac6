"""The demo: a chat page and its WebSocket endpoint on one port (``python -m rawws``).

The page, its script and its style sheet are files in this package, served
through ``process_request``; ``/ws`` upgrades to the pub/sub protocol of
:mod:`rawws.pubsub`. Nothing is fetched from the internet and there is no
build step. The page's wire panel shows its own connection's frames
(:mod:`rawws.demo.wire`); for it, compression is negotiated without context
takeover, so that every compressed message can be inflated on its own,
whenever the panel is opened.
"""

from __future__ import annotations

from dataclasses import replace
from importlib import resources
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from typing_extensions import Unpack

from ..extensions.permessage_deflate import DeflateConfig
from ..http11 import Request, Response
from ..pubsub.broker import MessageBroker
from ..pubsub.server import BrokerServer, broker_handler
from ..sync.options import ServerOptions, ServerSettings
from ..sync.pending import PendingConnection
from ..sync.server import listen
from .wire import with_wire_view

__all__ = ["serve_demo", "STATIC"]

STATIC = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/index.html": ("index.html", "text/html; charset=utf-8"),
    "/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/style.css": ("style.css", "text/css; charset=utf-8"),
}


WIRE_VIEW_DEFLATE = DeflateConfig(server_no_context_takeover=True, client_no_context_takeover=True)
"""The demo's compression: each message compressed on its own, so the wire view can inflate any of them."""


def _load(name: str) -> bytes:
    return resources.files(__name__).joinpath(name).read_bytes()


def serve_demo(
    host: str | None = "127.0.0.1",
    port: int = 8765,
    *,
    broker: MessageBroker | None = None,
    options: ServerOptions | None = None,
    **settings: Unpack[ServerSettings],
) -> BrokerServer:
    """The chat demo server: pages on ``/``, WebSocket on ``/ws``. Settings are :func:`rawws.serve`'s."""
    files = {path: (_load(name), kind) for path, (name, kind) in STATIC.items()}
    broker = broker or MessageBroker()

    def process_request(pending: PendingConnection, request: Request) -> Response | None:
        path = request.path.split("?", 1)[0]
        if path == "/ws":
            return None  # the WebSocket endpoint
        if request.method != "GET":
            return pending.respond(405, "only GET here\n", headers=[("Allow", "GET")])
        if path == "/healthz":
            return pending.respond(200, "ok\n")
        if path in files:
            body, kind = files[path]
            return pending.respond(200, body, headers=[("Cache-Control", "no-cache")], content_type=kind)
        return pending.respond(404, f"no such page: {path}\n")

    defaults = ServerOptions(compression=WIRE_VIEW_DEFLATE)
    options = replace(replace(options or defaults, **settings), process_request=process_request)
    return BrokerServer(with_wire_view(broker_handler(broker)), listen(host, port), options, broker)
