"""The chat demo, embedded in your own program: the page on /, the WebSocket on /ws.

Run:  python examples/chat_server.py [PORT]     then open http://127.0.0.1:8765/ in two tabs.

The same server as `python -m rawws`, started from code so that you can add
to it: here a notification is published to the lobby every minute, straight
through the server's MessageBroker (no WebSocket client needed).
"""

from __future__ import annotations

import sys
import threading

from rawws import make_message
from rawws.demo import serve_demo


def main() -> None:
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 8765
    server = serve_demo("127.0.0.1", port)
    stop = threading.Event()

    def announcements() -> None:
        while not stop.wait(60):
            notice = make_message("notification", {"channel": "room:lobby", "message": "Still here: rawws is up."})
            server.broker.publish("room:lobby", (notice, None))

    threading.Thread(target=announcements, daemon=True).start()
    print(f"chat on http://127.0.0.1:{server.port}/", flush=True)
    with server:
        server.serve_forever()
    stop.set()


if __name__ == "__main__":
    main()
