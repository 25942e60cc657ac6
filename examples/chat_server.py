"""The chat demo, embedded in your own program: the page on /, the WebSocket on /ws.

Run:  python examples/chat_server.py [PORT]     then open http://127.0.0.1:8765/ in two tabs.

The same server as `python -m rawws`, started from code so that you can add
to it: here a notification goes to the lobby every minute, sent by server
code (``server.notify``; browsers may not send notifications themselves).
"""

from __future__ import annotations

import sys
import threading

from rawws.demo import serve_demo


def main() -> None:
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 8765
    server = serve_demo("127.0.0.1", port)
    stop = threading.Event()

    def announcements() -> None:
        while not stop.wait(60):
            server.notify("room:lobby", "Still here: rawws is up.")

    threading.Thread(target=announcements, daemon=True).start()
    print(f"chat on http://127.0.0.1:{server.port}/", flush=True)
    with server:
        server.serve_forever()
    stop.set()


if __name__ == "__main__":
    main()
