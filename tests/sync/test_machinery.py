"""The threaded layer's shared machinery on its own: the reactor, the timer thread, connection threads, options."""

from __future__ import annotations

import socket
import sys
import threading
import time

import pytest

from rawws.sync.options import ClientOptions, ConnectionOptions, ServerOptions
from rawws.sync.reactor import Reactor
from rawws.sync.threads import MIN_STACK_SIZE, ThreadCounter, connection_stack_size, start_thread
from rawws.sync.timers import Deadline, call_later
from tests.conftest import scaled


def test_reactor_calls_back_once_per_arming() -> None:
    reactor = Reactor()
    a, b = socket.socketpair()
    calls: list[bytes] = []
    fired = threading.Event()

    def readable() -> None:
        calls.append(a.recv(100))
        fired.set()

    with a, b:
        a.setblocking(False)
        reactor.arm(a.fileno(), readable)
        b.send(b"one")
        assert fired.wait(scaled(5))
        fired.clear()
        b.send(b"two")  # one-shot: not armed again, so no call
        assert not fired.wait(0.2)
        reactor.arm(a.fileno(), readable)
        assert fired.wait(scaled(5))
        assert calls == [b"one", b"two"]
        reactor.disarm(a.fileno())
        b.send(b"three")
        assert not fired.wait(0.2) or len(calls) == 2
        reactor.forget(a.fileno())


def test_timers_run_in_deadline_order_and_cancelled_ones_never() -> None:
    ran: list[str] = []
    done = threading.Event()
    call_later(0.2, lambda: (ran.append("late"), done.set()))
    cancelled = call_later(0.1, lambda: ran.append("cancelled"))
    call_later(0.05, lambda: ran.append("early"))
    cancelled.cancel()
    assert done.wait(scaled(5))
    assert ran == ["early", "late"]


def test_a_cancelled_timer_lets_go_of_its_callback_at_once() -> None:
    class Holder:
        def callback(self) -> None:
            pass

    import weakref

    holder = Holder()
    ref = weakref.ref(holder)
    timer = call_later(3600, holder.callback)
    timer.cancel()
    del holder
    assert ref() is None


def test_a_failing_timer_callback_does_not_stop_the_others() -> None:
    done = threading.Event()
    call_later(0.01, lambda: 1 / 0)
    call_later(0.05, done.set)
    assert done.wait(scaled(5))


def test_deadline() -> None:
    assert Deadline(None).remaining() is None and not Deadline(None).expired() and Deadline(None).poll_ms() is None
    soon = Deadline(0.05)
    remaining = soon.remaining()
    assert remaining is not None and 0 < remaining <= 0.05
    assert soon.poll_ms() in range(1, 51)
    time.sleep(0.06)
    assert soon.expired() and soon.poll_ms() == 1


def test_connection_threads_can_recurse_to_the_limit() -> None:
    result: list[str] = []
    done = threading.Event()

    def recurse(n: int) -> int:
        return recurse(n + 1) + 1

    def body() -> None:
        try:
            recurse(0)
        except RecursionError:
            result.append("RecursionError")
        done.set()

    start_thread(body)
    assert done.wait(scaled(30)) and result == ["RecursionError"]


def test_stack_size_follows_the_recursion_limit() -> None:
    assert connection_stack_size() >= MIN_STACK_SIZE
    limit = sys.getrecursionlimit()
    try:
        sys.setrecursionlimit(20_000)
        assert connection_stack_size() >= 20_000 * 1024
        assert connection_stack_size() % 65536 == 0
    finally:
        sys.setrecursionlimit(limit)


def test_thread_counter_waits_until_idle() -> None:
    counter = ThreadCounter()
    release = threading.Event()

    def work() -> None:
        with counter:
            release.wait(scaled(5))

    threads = [threading.Thread(target=work) for _ in range(3)]
    for thread in threads:
        thread.start()
    assert not counter.wait_idle(0.1)
    assert counter.wait_idle(0.1, leave=3)
    release.set()
    assert counter.wait_idle(scaled(5))
    for thread in threads:
        thread.join()


def test_options_have_one_set_of_defaults_and_refuse_nonsense() -> None:
    server, client = ServerOptions(), ClientOptions()
    shared = ConnectionOptions()
    for name in ("max_size", "max_queue", "ping_interval", "ping_timeout", "close_timeout", "write_limit"):
        assert getattr(server, name) == getattr(client, name) == getattr(shared, name)
    with pytest.raises(ValueError, match="max_size"):
        ServerOptions(max_size=0)
    with pytest.raises(ValueError, match="ping_interval"):
        ClientOptions(ping_interval=-1)
    with pytest.raises(ValueError, match="compression"):
        ServerOptions(compression="gzip")
    with pytest.raises(ValueError, match="max_handshakes"):
        ServerOptions(max_handshakes=0)
