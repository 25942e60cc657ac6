"""A pub/sub server where each client may use only its own channels.

Run:  python examples/authorized_broker.py [PORT]

A token in the query string (``ws://127.0.0.1:8765/?token=t-alice``) names a
user and the channels that user may use. ``process_request`` checks the token
once, before the upgrade, and keeps what it learnt in ``pending.context``;
the server hands the same dict to ``authorize`` as ``client.context``, and
stamps ``client.user`` on everything the client sends (a ``user`` the client
claims is ignored).

- an unknown or missing token           → 401, no WebSocket
- subscribe/publish/chat/typing outside the user's channels → ``error`` "forbidden", nothing delivered
- ``notification``                      → only users with ``"notify": True``
- ``subscribed``/``presence`` counts     → only to members of the channel
"""

from __future__ import annotations

import sys
from typing import Any
from urllib.parse import parse_qs, urlsplit

from rawws import PendingConnection, serve_broker
from rawws.http11 import Request, Response
from rawws.pubsub import BrokerClient

# In a real application: a database, or a signed token (JWT) checked here.
TOKENS: dict[str, dict[str, Any]] = {
    "t-alice": {"user": "alice", "channels": ["news", "team"], "notify": True},
    "t-bob": {"user": "bob", "channels": ["news"], "notify": False},
}


def process_request(pending: PendingConnection, request: Request) -> Response | None:
    token = parse_qs(urlsplit(request.path).query).get("token", [""])[0]
    account = TOKENS.get(token)
    if account is None:
        return pending.respond(401, "a valid token is required: ?token=...\n")
    pending.context["user"] = account["user"]  # the identity the server stamps as sender.user
    pending.context["account"] = account
    return None


def authorize(client: BrokerClient, action: str, channel: str) -> bool:
    account = client.context["account"]
    if channel not in account["channels"]:
        return False
    return action != "notification" or account["notify"]


def main() -> None:
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 8765
    server = serve_broker("127.0.0.1", port, authorize=authorize, process_request=process_request)
    print(f"authorized pub/sub on ws://127.0.0.1:{server.port}/?token=t-alice", flush=True)
    with server:
        server.serve_forever()


if __name__ == "__main__":
    main()
