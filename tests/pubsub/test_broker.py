"""MessageBroker: the classic behaviour, every documented edge case, and a concurrency property."""

from __future__ import annotations

import gc
import logging
import threading
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rawws import MessageBroker, SubscriberGone, connect, serve
from rawws.pubsub.broker import RESERVED


def test_classic_publish_returns_the_count() -> None:
    broker = MessageBroker()
    got: list[str] = []
    broker.subscribe("news", got.append)
    broker.subscribe("news", lambda m: got.append(m.upper()))
    assert broker.publish("news", "hello") == 2
    assert got == ["hello", "HELLO"]
    assert broker.publish("sport", "nobody listens") == 0


def test_classic_unsubscribe() -> None:
    broker = MessageBroker()
    got: list[str] = []
    broker.subscribe("news", got.append)
    assert broker.unsubscribe("news", got.append)
    assert broker.publish("news", "x") == 0
    assert got == []


def test_duplicate_subscribe_and_unknown_unsubscribe() -> None:
    broker = MessageBroker()
    got: list[int] = []
    assert broker.subscribe("c", got.append) is True
    assert broker.subscribe("c", got.append) is False  # documented: no double delivery
    assert broker.publish("c", 1) == 1
    assert got == [1]
    assert broker.unsubscribe("c", print) is False  # documented: no exception
    assert broker.unsubscribe("nope", got.append) is False


def test_raising_callback_is_logged_not_counted_and_does_not_stop_others(caplog: pytest.LogCaptureFixture) -> None:
    broker = MessageBroker()
    got: list[str] = []

    def bad(message: str) -> None:
        raise RuntimeError("subscriber bug")

    broker.subscribe("c", bad)
    broker.subscribe("c", got.append)
    with caplog.at_level(logging.ERROR, logger="rawws.broker"):
        assert broker.publish("c", "m") == 1
    assert got == ["m"]
    assert "subscriber bug" in caplog.text


def test_subscriber_gone_is_quiet(caplog: pytest.LogCaptureFixture) -> None:
    broker = MessageBroker()

    def gone(message: str) -> None:
        raise SubscriberGone

    broker.subscribe("c", gone)
    with caplog.at_level(logging.DEBUG, logger="rawws.broker"):
        assert broker.publish("c", "m") == 0
    assert caplog.text == ""


def test_reentrant_callbacks_neither_deadlock_nor_skip() -> None:
    broker = MessageBroker()
    log: list[str] = []

    def late(message: str) -> None:
        log.append(f"late:{message}")

    def first(message: str) -> None:
        log.append(f"first:{message}")
        if message == "one":
            broker.subscribe("c", late)  # joins during a publish: hears the next one
            broker.unsubscribe("c", second)  # leaves during a publish: still hears this one
            broker.publish("other", "nested")  # publishing from a callback

    def second(message: str) -> None:
        log.append(f"second:{message}")

    broker.subscribe("c", first)
    broker.subscribe("c", second)
    broker.subscribe("other", lambda m: log.append(f"other:{m}"))
    assert broker.publish("c", "one") == 2
    assert broker.publish("c", "two") == 2
    assert log == ["first:one", "other:nested", "second:one", "first:two", "late:two"]


def test_per_publisher_order_across_threads() -> None:
    broker = MessageBroker()
    received: dict[int, list[int]] = {}
    lock = threading.Lock()

    def sink(message: tuple[int, int]) -> None:
        with lock:
            received.setdefault(message[0], []).append(message[1])

    broker.subscribe("c", sink)
    threads = [threading.Thread(target=lambda p=p: [broker.publish("c", (p, i)) for i in range(500)]) for p in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(received[p] == list(range(500)) for p in range(8))


def test_empty_channels_are_forgotten() -> None:
    broker = MessageBroker()
    for i in range(10_000):
        callback = lambda m: None  # noqa: E731
        broker.subscribe(f"room-{i}", callback)
        broker.unsubscribe(f"room-{i}", callback)
    assert broker.channels() == []
    assert broker._channels == {}
    gc.collect()


def test_pattern_subscriptions() -> None:
    broker = MessageBroker()
    seen: list[tuple[str, str]] = []
    exact: list[str] = []

    def on_pattern(channel: str, message: str) -> None:
        seen.append((channel, message))

    broker.subscribe_pattern("news.*", on_pattern)
    broker.subscribe("news.tech", exact.append)
    assert broker.publish("news.tech", "a") == 2
    assert broker.publish("news.sport", "b") == 1
    assert broker.publish("weather", "c") == 0
    assert seen == [("news.tech", "a"), ("news.sport", "b")]
    assert exact == ["a"]
    # A callback matching twice (two patterns) is called once per publish.
    broker.subscribe_pattern("news.t*", on_pattern)
    assert broker.publish("news.tech", "d") == 2
    assert broker.unsubscribe_pattern("news.*", on_pattern)
    assert broker.subscribers("news.sport") == 0


def test_unsubscribe_all() -> None:
    broker = MessageBroker()

    def cb(*args: Any) -> None:
        pass

    broker.subscribe("a", cb)
    broker.subscribe("b", cb)
    broker.subscribe_pattern("x.*", cb)
    assert broker.unsubscribe_all(cb) == 3
    assert broker.channels() == []


def test_bad_arguments() -> None:
    broker = MessageBroker()
    with pytest.raises(TypeError):
        broker.subscribe("", print)
    with pytest.raises(TypeError):
        broker.subscribe(42, print)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        broker.subscribe("c", "not callable")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        broker.publish(None, "m")  # type: ignore[arg-type]


# --- concurrency property: threads vs a sequential model ---------------------------------

op = st.one_of(
    st.tuples(st.just("sub"), st.integers(0, 2), st.integers(0, 2)),
    st.tuples(st.just("unsub"), st.integers(0, 2), st.integers(0, 2)),
    st.tuples(st.just("pub"), st.integers(0, 2), st.just(0)),
)


@given(st.lists(st.lists(op, max_size=25), min_size=2, max_size=4))
@settings(max_examples=60, deadline=None)
def test_random_interleavings_match_a_sequential_model(programs: list[list[tuple[str, int, int]]]) -> None:
    """Each thread owns its callbacks, so what its own callbacks receive from its own
    publishes is fixed by its own program, whatever the interleaving; and every
    publish's count equals the deliveries it made."""
    broker = MessageBroker()
    deliveries: dict[tuple[int, int], list[tuple[int, int]]] = {}  # (publisher, seq) -> [(owner, cb)]
    lock = threading.Lock()

    def make_callback(owner: int, index: int) -> Any:
        def callback(message: tuple[int, int]) -> None:
            with lock:
                deliveries.setdefault(message, []).append((owner, index))

        return callback

    callbacks = {(t, i): make_callback(t, i) for t in range(len(programs)) for i in range(3)}
    counts: dict[tuple[int, int], int] = {}
    barrier = threading.Barrier(len(programs))

    def run(t: int) -> None:
        barrier.wait()
        for seq, (kind, channel, index) in enumerate(programs[t]):
            if kind == "sub":
                broker.subscribe(f"ch{channel}", callbacks[(t, index)])
            elif kind == "unsub":
                broker.unsubscribe(f"ch{channel}", callbacks[(t, index)])
            else:
                counts[(t, seq)] = broker.publish(f"ch{channel}", (t, seq))

    threads = [threading.Thread(target=run, args=(t,)) for t in range(len(programs))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    for key, count in counts.items():
        assert count == len(deliveries.get(key, []))
    for t, program in enumerate(programs):
        model: set[tuple[int, int]] = set()  # (channel, index) this thread's callbacks are subscribed to
        for seq, (kind, channel, index) in enumerate(program):
            if kind == "sub":
                model.add((channel, index))
            elif kind == "unsub":
                model.discard((channel, index))
            else:
                own = sorted(i for owner, i in deliveries.get((t, seq), []) if owner == t)
                assert own == sorted(i for c, i in model if c == channel)
        final = {(c, i) for c in range(3) for i in range(3) if callbacks[(t, i)] in broker._channels.get(f"ch{c}", ())}
        assert final == model


def test_a_closed_connection_subscriber_is_unsubscribed_and_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    """A subscriber whose connection closed (its ``send`` raises ConnectionClosed) is gone: one INFO line each."""
    caplog.set_level(logging.INFO, logger="rawws.broker")
    with serve(lambda ws: ws.recv(), "127.0.0.1", 0, ping_interval=None).start() as server:
        ws = connect(f"ws://127.0.0.1:{server.port}/")
        ws.close()
        broker = MessageBroker()
        assert broker.subscribe("news", ws.send) and broker.subscribe_pattern("n*", lambda c, m: ws.send(m))
        broker.subscribe("weather", ws.send)
        got: list[str] = []
        broker.subscribe("news", got.append)
        for text in ("one", "two", "three"):
            assert broker.publish("news", text) == 1  # only the list: the closed connection is not notified

    assert got == ["one", "two", "three"]
    assert broker.subscribers("news") == 1 and broker.channels() == ["news"]  # gone from "weather" too
    records = [r for r in caplog.records if r.name == "rawws.broker"]
    assert [r.levelno for r in records] == [logging.INFO, logging.INFO]  # the channel callback and the pattern one
    assert all(r.exc_info is None and "unsubscribed" in r.getMessage() for r in records)


def test_patterns_do_not_match_reserved_channels() -> None:
    broker = MessageBroker()
    seen: list[str] = []
    broker.subscribe_pattern("*", lambda channel, message: seen.append(channel))
    broker.subscribe_pattern(RESERVED + "*", lambda channel, message: seen.append("reserved:" + channel[1:]))
    broker.publish("news", 1)
    broker.publish(RESERVED + "ws:news", 2)
    assert seen == ["news", "reserved:ws:news"]
