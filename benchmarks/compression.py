"""Bytes on the wire and CPU per message for a JSON chat stream, compression off and on.

Run: python benchmarks/compression.py

The stream is 2,000 chat messages in the pub/sub protocol's envelope, sent
client → server through rawws's sans-I/O Protocol (so the figures are exact
frame bytes, handshake excluded), with permessage-deflate at its defaults,
with no context takeover, and off. For throughput against `websockets`
with compression on, see ``run.py --only compression``.
"""

from __future__ import annotations

import json
import os
import random
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from rawws.extensions.permessage_deflate import (  # noqa: E402
    DeflateConfig,
    accept_server_response,
    client_offer,
    negotiate_server,
)
from rawws.protocol import CLIENT, SERVER, Protocol, TextMessage  # noqa: E402

WORDS = "hello there the deploy is done see you at lunch ok thanks ship it who broke the build again".split()


def chat_stream(count: int) -> list[str]:
    rng = random.Random(7)
    users = ["alice", "bob", "carol", "dave", "erin"]
    return [
        json.dumps(
            {
                "type": "chat",
                "payload": {
                    "channel": "lobby",
                    "user": rng.choice(users),
                    "text": " ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 14))),
                },
                "timestamp": 1764200000000 + i * 1370,
            }
        )
        for i in range(count)
    ]


def run(messages: list[str], config: DeflateConfig | None) -> tuple[int, float]:
    extensions_client = []
    extensions_server = []
    if config is not None:
        name, params = client_offer(config)
        result = negotiate_server([(name, params)], config)
        assert result is not None
        response, server_ext = result
        extensions_server = [server_ext]
        extensions_client = [accept_server_response(response, config)]
    client = Protocol(CLIENT, extensions=extensions_client)
    server = Protocol(SERVER, extensions=extensions_server)
    wire = 0
    start = time.perf_counter()
    for message in messages:
        client.send_text(message)
        data = b"".join(bytes(b) for b in client.data_to_send())
        wire += len(data)
        events = server.receive_data(data)
        assert events == [TextMessage(message)]
    return wire, (time.perf_counter() - start) / len(messages)


def main() -> None:
    messages = chat_stream(2000)
    raw = sum(len(m.encode()) for m in messages)
    print(f"{len(messages)} JSON chat messages, {raw:,} bytes of payload (mean {raw / len(messages):.0f} B)\n")
    print(f"{'':28} {'bytes on wire':>14} {'saved':>7} {'µs/message (send+receive)':>27}")
    base_bytes, base_time = run(messages, None)
    rows = [
        ("compression off", None),
        ("deflate, defaults", DeflateConfig()),
        (
            "deflate, no context takeover",
            DeflateConfig(server_no_context_takeover=True, client_no_context_takeover=True),
        ),  # noqa: E501
        ("deflate, 15-bit windows", DeflateConfig(server_max_window_bits=15, client_max_window_bits=15)),
    ]
    for label, config in rows:
        best_bytes, best_time = run(messages, config)
        for _ in range(2):
            best_time = min(best_time, run(messages, config)[1])
        saved = 1 - best_bytes / base_bytes
        print(f"{label:28} {best_bytes:>14,} {saved:>6.0%} {best_time * 1e6:>27.1f}")


if __name__ == "__main__":
    main()
