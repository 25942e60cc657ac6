"""The demo: a chat page and its WebSocket endpoint on one port (``python -m rawws``).

The page, its script and its style sheet are files in this package, served
through ``process_request``; ``/ws`` upgrades to the pub/sub protocol of
:mod:`rawws.pubsub`. Nothing is fetched from the internet and there is no
build step.

Who may use it (see the README's "Security" section):

- **Same origin only.** The WebSocket accepts pages served by this server
  (the ``Origin``'s host and port equal the ``Host`` the request was sent
  to), origins listed in ``extra_origins`` (``--origin``), and clients that
  send no ``Origin`` (programs: browsers always send one). Any other page
  open in the same browser gets 403: no cross-site WebSocket hijacking.
- **Only its own names.** Every request's ``Host`` must name the server: the
  bind address, ``localhost``, ``127.0.0.1``, ``::1``, or a name in
  ``extra_hosts`` (``--allowed-host``); others get 403, which ends DNS
  rebinding.
- **Names are bound to connections.** The page connects to ``/ws?name=NAME``;
  the server stamps that name and a connection id on everything the page
  sends, and refuses a second connection with the same name in a room
  (compared NFKC-normalised and case-folded); a name that is too long or
  holds invisible or control characters is refused with 400 (:func:`check_name`).

The page's wire panel shows its own connection's frames
(:mod:`rawws.demo.wire`); for it, compression is negotiated without context
takeover, so that every compressed message can be inflated on its own,
whenever the panel is opened.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence
from dataclasses import replace
from importlib import resources
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, urlsplit

if TYPE_CHECKING:
    from typing_extensions import Unpack

from ..extensions.permessage_deflate import DeflateConfig
from ..handshake import SAME_ORIGIN
from ..http11 import Request, Response
from ..pubsub.broker import MessageBroker
from ..pubsub.server import BrokerServer, broker_handler
from ..sync.options import ServerOptions, ServerSettings
from ..sync.pending import PendingConnection
from ..sync.server import listen
from .wire import with_wire_view

__all__ = ["serve_demo", "demo_hosts", "check_name", "STATIC", "MAX_NAME_LENGTH"]

MAX_NAME_LENGTH = 32

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


def demo_hosts(host: str | None, extra_hosts: Sequence[str] = ()) -> list[str]:
    """The ``Host`` names the demo answers to: the bind address, the loopback names, and ``extra_hosts``.

    Bound to every interface (``0.0.0.0``, ``::``), that name is accepted too,
    and other machines reach the server by an address or name of this one:
    list those in ``extra_hosts``.
    """
    names = ["localhost", "127.0.0.1", "::1"]
    bound = (host or "").strip("[]").lower()
    if bound and bound not in names:
        # The wildcard name too ("0.0.0.0"), where a browser can open it: a rebound domain
        # still sends its own name in Host, so this lets no other site in.
        names.insert(0, bound)
    return names + [name for name in extra_hosts if name not in names]


_REFUSED_CATEGORIES = {
    "Cc": "a control character",
    "Cf": "an invisible formatting character (zero-width, byte order mark or bidirectional override)",
    "Zl": "a line separator",
    "Zp": "a paragraph separator",
    "Cs": "a lone surrogate",
    "Co": "a private-use character",
    "Cn": "an unassigned code point",
}


def check_name(name: str) -> str | None:
    """``name`` (from ``/ws?name=``) stripped; None for no name (anonymous); ValueError saying what is wrong.

    Refused: more than :data:`MAX_NAME_LENGTH` characters, and characters that
    print nothing or reorder the text (Unicode categories Cc, Cf, Zl, Zp, and
    surrogates, private-use and unassigned code points), which would let
    ``"a\u200blice"`` or ``"\u202eecila"`` pass for ``alice``. Names are unique
    per room by :func:`rawws.pubsub.server.name_key` (NFKC, case-folded);
    look-alikes from other scripts (Cyrillic ``а``) are not caught.
    """
    name = name.strip()
    if not name:
        return None
    if len(name) > MAX_NAME_LENGTH:
        raise ValueError(f"the name is {len(name)} characters long; at most {MAX_NAME_LENGTH} are allowed")
    for char in name:
        what = _REFUSED_CATEGORIES.get(unicodedata.category(char))
        if what is not None:
            raise ValueError(f"the name holds {what} (U+{ord(char):04X}); choose another")
    return name


def _chosen_name(request: Request) -> str | None:
    """The name in ``/ws?name=...`` (:func:`check_name`); None if absent or empty."""
    values = parse_qs(urlsplit(request.path).query).get("name", [])
    return check_name(values[0]) if values else None


def serve_demo(
    host: str | None = "127.0.0.1",
    port: int = 8765,
    *,
    broker: MessageBroker | None = None,
    extra_origins: Sequence[str] = (),
    extra_hosts: Sequence[str] = (),
    options: ServerOptions | None = None,
    **settings: Unpack[ServerSettings],
) -> BrokerServer:
    """The chat demo server: pages on ``/``, WebSocket on ``/ws``. Settings are :func:`rawws.serve`'s.

    Same-origin only (plus ``extra_origins``, as browsers send them:
    ``"http://localhost:3000"``) and only for :func:`demo_hosts` (plus
    ``extra_hosts``), unless ``origins`` / ``allowed_hosts`` settings say
    otherwise. See the module documentation.
    """
    files = {path: (_load(name), kind) for path, (name, kind) in STATIC.items()}
    broker = broker or MessageBroker()
    options = replace(options or ServerOptions(compression=WIRE_VIEW_DEFLATE), **settings)
    hosts = options.allowed_hosts if options.allowed_hosts is not None else demo_hosts(host, extra_hosts)
    origins = options.origins if options.origins is not None else [SAME_ORIGIN, None, *extra_origins]

    def process_request(pending: PendingConnection, request: Request) -> Response | None:
        # Host (every request) and Origin (upgrades) were checked before this runs: a rebound name gets nothing.
        path = request.path.split("?", 1)[0]
        if path == "/ws":
            try:
                pending.context["user"] = _chosen_name(request)
            except ValueError as exc:
                return pending.respond(400, f"{exc}\n")
            return None
        if request.method != "GET":
            return pending.respond(405, "only GET here\n", headers=[("Allow", "GET")])
        if path == "/healthz":
            return pending.respond(200, "ok\n")
        if path in files:
            body, kind = files[path]
            return pending.respond(200, body, headers=[("Cache-Control", "no-cache")], content_type=kind)
        return pending.respond(404, f"no such page: {path}\n")

    options = replace(options, process_request=process_request, origins=origins, allowed_hosts=hosts)
    return BrokerServer(with_wire_view(broker_handler(broker, unique_users=True)), listen(host, port), options, broker)
