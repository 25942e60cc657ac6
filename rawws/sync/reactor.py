"""The shared reader: one thread that reads for connections nobody is reading.

A handler busy elsewhere must still have its pings answered, its pongs seen
and its peer's close frame noticed, and rawws will not spend a second thread
per connection on that. So while a connection's owner is not reading, its
socket is *armed* here: one thread waits on all armed sockets and, when one is
readable, calls the connection's ``on_readable()``, which reads what is there
without blocking.

A handler blocked in ``recv()`` reads its own socket (no thread hop on the hot
path) if it gets one of :data:`SELF_READERS` slots; otherwise it leaves its
socket armed here and sleeps until the reactor has queued a whole message.
This is what keeps thousands of connections waking at once from becoming
thousands of threads fighting over the interpreter lock: the reactor reads and
parses for them one after another, and a handler wakes only to handle a message.

Arming is one-shot (``EPOLLONESHOT`` where available): a socket that fired is
disarmed until its connection re-arms it, so the reactor and a handler never
read the same socket at once.
"""

from __future__ import annotations

import logging
import select
import selectors
import socket
import threading
import time
from collections.abc import Callable

from .wakegate import WakeGate

__all__ = ["Reactor", "get_reactor"]

logger = logging.getLogger("rawws.reactor")

# How many threads may wait for data by reading their own sockets at once. The
# rest let the reactor read for them and sleep on their connection's condition.
# Few enough that a burst wakes few threads from the kernel (each of which would
# then queue for the interpreter lock after every system call: the convoy), and
# enough that a handful of busy connections keep the hop-free path.
SELF_READERS = 16

# Handlers the reactor wakes run one at a time, a turn each, unless turns run
# past WAKE_LEASE seconds (handlers blocked elsewhere): then more may (wakegate.py).
# One, because a woken handler and the reactor are already two threads wanting
# the interpreter lock; measured in benchmarks/README.md ("The burst").
AWAKE_HANDLERS = 1
WAKE_LEASE = 0.002


class Reactor:
    """Wait for readability on armed sockets and dispatch one callback per event."""

    def __init__(self) -> None:
        self._callbacks: dict[int, Callable[[], None]] = {}
        self._lock = threading.Lock()
        self._epoll = select.epoll() if hasattr(select, "epoll") else None
        self._selector: selectors.BaseSelector | None = None
        self._registered: set[int] = set()
        self._slots_lock = threading.Lock()
        self.gate = WakeGate(AWAKE_HANDLERS, WAKE_LEASE, poke=self.poke)
        self._self_readers = 0
        # Written to wake the loop: the gate holds back a wake that a thread other than the
        # reactor's asked for, so the loop must look again at when to expire turns.
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        if self._epoll is None:
            self._selector = selectors.DefaultSelector()
            self._selector.register(self._wake_r, selectors.EVENT_READ)
        else:
            self._epoll.register(self._wake_r.fileno(), select.EPOLLIN)
        self._thread = threading.Thread(target=self._run, name="rawws-reactor", daemon=True)
        self._thread.start()

    def poke(self) -> None:
        """Make the loop look again at the gate (from any thread but the reactor's, which looks anyway)."""
        if threading.get_ident() == self._thread.ident:
            return
        try:
            self._wake_w.send(b"\0")
        except OSError:
            pass  # BlockingIOError: the buffer is full of pokes, one is enough

    def take_read_slot(self) -> bool:
        """May one more thread wait for data by reading its own socket? (See :data:`SELF_READERS`.)"""
        with self._slots_lock:
            if self._self_readers >= SELF_READERS:
                return False
            self._self_readers += 1
            return True

    def give_read_slot(self) -> None:
        with self._slots_lock:
            self._self_readers -= 1

    def arm(self, fd: int, callback: Callable[[], None]) -> None:
        """Call ``callback`` once, on the reactor thread, when ``fd`` is readable."""
        self._callbacks[fd] = callback
        if self._epoll is not None:
            flags = select.EPOLLIN | select.EPOLLONESHOT
            if fd in self._registered:
                self._epoll.modify(fd, flags)
            else:
                self._epoll.register(fd, flags)
                self._registered.add(fd)
        else:
            assert self._selector is not None
            with self._lock:
                try:
                    self._selector.register(fd, selectors.EVENT_READ)
                except KeyError:
                    pass
            self._wake_w.send(b"\0")

    def disarm(self, fd: int) -> None:
        """Stop watching ``fd`` for now (it stays known until :meth:`forget`)."""
        if self._epoll is not None:
            if fd in self._registered:
                self._epoll.modify(fd, select.EPOLLONESHOT)
        else:
            assert self._selector is not None
            with self._lock:
                try:
                    self._selector.unregister(fd)
                except KeyError:
                    pass

    def forget(self, fd: int) -> None:
        """Drop ``fd`` entirely; call before closing the socket."""
        self._callbacks.pop(fd, None)
        if self._epoll is not None:
            if fd in self._registered:
                self._registered.discard(fd)
                try:
                    self._epoll.unregister(fd)
                except OSError:
                    pass
        else:
            self.disarm(fd)

    def _run(self) -> None:
        gate = self.gate
        while True:
            deadline = gate.next_deadline()
            timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
            try:
                fds = self._wait(timeout)
            except OSError:
                logger.exception("reactor wait failed")
                continue
            gate.expire()
            for fd in fds:
                callback = self._callbacks.get(fd)
                if callback is None:
                    continue
                try:
                    callback()
                except Exception:
                    logger.exception("reactor callback failed")

    def _wait(self, timeout: float | None) -> list[int]:
        if self._epoll is not None:
            wake = self._wake_r.fileno()
            ready = [fd for fd, _ in self._epoll.poll(-1 if timeout is None else timeout)]
            if wake in ready:
                ready.remove(wake)
                try:
                    self._wake_r.recv(4096)
                except BlockingIOError:
                    pass
            return ready
        assert self._selector is not None
        ready = []
        for key, _ in self._selector.select(timeout):
            if key.fileobj is self._wake_r:
                try:
                    self._wake_r.recv(4096)
                except BlockingIOError:
                    pass
                continue
            fd = key.fd
            with self._lock:
                self._selector.unregister(fd)  # one-shot, like EPOLLONESHOT
            ready.append(fd)
        return ready


_reactor: Reactor | None = None
_reactor_lock = threading.Lock()


def get_reactor() -> Reactor:
    """The process-wide reactor, started on first use."""
    global _reactor
    if _reactor is None:
        with _reactor_lock:
            if _reactor is None:
                _reactor = Reactor()
    return _reactor
