"""The reconnecting, browser-style event client."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from rawws import ConnectError, EventClient, InvalidState
from rawws.sync.server import Server, serve
from tests.conftest import echo, scaled, wait_until

StartServer = Callable[..., Server]


def test_events_and_send(start_server: StartServer) -> None:
    server = start_server(echo)
    log: list[Any] = []
    client = EventClient(
        f"ws://127.0.0.1:{server.port}/",
        on_open=lambda c: log.append("open"),
        on_message=lambda c, m: log.append(("message", m)),
        on_close=lambda c, code, reason: log.append(("close", code)),
    )
    with pytest.raises(InvalidState):
        client.send("too early")
    with client:
        assert client.wait_open(scaled(5))
        client.send("hi")
        assert wait_until(lambda: ("message", "hi") in log)
    assert log == ["open", ("message", "hi"), ("close", 1000)]
    assert client.delays == []  # a close we asked for is never followed by a reconnect


def test_reconnects_after_an_unexpected_close(start_server: StartServer) -> None:
    connections = []

    def handler(ws: Any) -> None:
        connections.append(ws)
        if len(connections) <= 2:
            ws.close(1011, "server hiccup")
        else:
            echo(ws)

    server = start_server(handler)
    opened = threading.Semaphore(0)
    closes: list[int] = []
    client = EventClient(
        f"ws://127.0.0.1:{server.port}/",
        on_open=lambda c: opened.release(),
        on_close=lambda c, code, reason: closes.append(code),
        initial_delay=0.05,
        jitter=0.0,
    )
    with client:
        for _ in range(3):
            assert opened.acquire(timeout=scaled(5))
        assert closes[:2] == [1011, 1011]
        # Each successful connection resets the backoff.
        assert client.delays == [0.05, 0.05]
        assert wait_until(lambda: client.ready_state == 1)
        client.send("back")


def test_exponential_backoff_while_the_server_is_down() -> None:
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()  # nothing listens here now
    errors: list[BaseException] = []
    opened = threading.Event()
    client = EventClient(
        f"ws://127.0.0.1:{port}/",
        on_error=lambda c, e: errors.append(e),
        on_open=lambda c: opened.set(),
        initial_delay=0.05,
        factor=2.0,
        max_delay=0.2,
        jitter=0.0,
    )
    client.start()
    assert wait_until(lambda: len(client.delays) >= 4, scaled(5))
    assert client.delays[:4] == [0.05, 0.1, 0.2, 0.2]  # doubling, capped
    assert all(isinstance(e, ConnectError) and isinstance(e.__cause__, ConnectionRefusedError) for e in errors)
    server = serve(echo, "127.0.0.1", port).start()  # the server comes back on the same port
    try:
        assert opened.wait(scaled(5))
        client.send("reconnected")
    finally:
        client.close()
        server.shutdown(scaled(5))


def test_jitter_stays_within_bounds() -> None:
    client = EventClient("ws://127.0.0.1:1/", initial_delay=1.0, factor=2.0, max_delay=30.0, jitter=0.2)
    for attempt in range(10):
        base = min(30.0, 2.0**attempt)
        for _ in range(20):
            assert base * 0.8 <= client.next_delay(attempt) <= base * 1.2


def test_bad_backoff_settings_are_refused() -> None:
    with pytest.raises(ValueError):
        EventClient("ws://h/", factor=0.5)


def test_close_right_after_start_ends_at_once_and_closes_the_connection(start_server: StartServer) -> None:
    """The README's EventClient example (start, then close): close() came while connecting, and used to
    leave the new connection open and wait 10 s for the client's thread."""
    opened = threading.Event()
    ended = threading.Event()

    def handler(ws: Any) -> None:
        opened.set()
        for _ in ws:
            pass
        ended.set()

    server = start_server(handler)
    for _ in range(5):  # the race is won by either side; both must end promptly
        opened.clear()
        ended.clear()
        client = EventClient(f"ws://127.0.0.1:{server.port}/").start()
        start = time.monotonic()
        client.close()
        assert time.monotonic() - start < scaled(3)
        if opened.wait(scaled(1)):
            assert ended.wait(scaled(5))  # the connection the close raced with was closed too


def test_max_attempts_is_failed_attempts_then_one_close() -> None:
    """max_attempts=3: three failed connects, on_error once for each, then on_close once with 1006."""
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()  # nothing listens here now
    events: list[Any] = []
    gave_up = threading.Event()

    def on_close(client: EventClient, code: int, reason: str) -> None:
        events.append(("close", code, reason))
        gave_up.set()

    client = EventClient(
        f"ws://127.0.0.1:{port}/",
        on_error=lambda c, e: events.append(("error", type(e).__name__)),
        on_close=on_close,
        initial_delay=0.01,
        jitter=0.0,
        max_attempts=3,
    )
    client.start()
    assert gave_up.wait(scaled(5))
    time.sleep(0.1)  # nothing more comes
    assert events == [("error", "ConnectError")] * 3 + [("close", 1006, "gave up after 3 failed attempts to connect")]
    assert client.delays == [0.01, 0.02]  # two waits between three attempts
    assert client.ready_state == 3
    client.close()


@pytest.mark.parametrize("value", [0, -1, 2.5, "3"])
def test_max_attempts_must_be_a_positive_int_or_none(value: Any) -> None:
    with pytest.raises(ValueError, match="max_attempts is None"):
        EventClient("ws://h/", max_attempts=value)
