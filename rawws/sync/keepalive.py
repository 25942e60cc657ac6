"""Pings and pongs of one connection (RFC 6455 §5.5.2, §5.5.3): the application's and the keepalive's.

:class:`Keepalive` keeps the pings waiting for their pong and, when an
interval is set, sends one every ``ping_interval`` seconds from the shared
timer thread; a pong that does not come within ``ping_timeout`` fails the
connection with 1011. A pong answers its ping and every ping sent before it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from ..exceptions import ConnectionClosed, InvalidState
from ..frames import CloseCode
from ..protocol import Protocol, State
from .timers import Timer, call_later

__all__ = ["PongWaiter", "Keepalive"]


class PongWaiter:
    """Returned by :meth:`~rawws.sync.connection.Connection.ping`: wait for the matching pong.

    ``wait(timeout)`` returns True once the pong arrived; ``latency`` is the
    round-trip time in seconds. If the connection closes first, ``wait``
    raises :class:`~rawws.exceptions.ConnectionClosed`.
    """

    def __init__(self, payload: bytes, closed_exception: Callable[[], ConnectionClosed]) -> None:
        self.payload = payload
        self.sent_at = time.monotonic()
        self.latency: float | None = None
        self._event = threading.Event()
        self._closed_exception = closed_exception
        self._abandoned = False

    def _resolve(self, now: float) -> None:
        self.latency = now - self.sent_at
        self._event.set()

    def _abandon(self) -> None:
        self._abandoned = True
        self._event.set()

    def wait(self, timeout: float | None = None) -> bool:
        if not self._event.wait(timeout):
            return False
        if self.latency is None and self._abandoned:
            raise self._closed_exception()
        return True


class Keepalive:
    """The pings of one connection that wait for a pong, and the keepalive timer.

    ``send_ping(payload)`` queues a ping in the protocol and writes it without
    blocking; ``fail(code, reason)`` fails the connection; both are the
    connection's. All methods but :meth:`register` take the protocol lock
    themselves; :meth:`register` is called with it held.
    """

    def __init__(
        self,
        protocol: Protocol,
        protocol_lock: threading.Lock,
        *,
        interval: float | None,
        timeout: float | None,
        send_ping: Callable[[], None],
        fail: Callable[[int, str], None],
        closed_exception: Callable[[], ConnectionClosed],
        logger: logging.Logger,
        peer: Any,
    ) -> None:
        self.interval = interval
        self.timeout = timeout
        self._protocol = protocol
        self._protocol_lock = protocol_lock
        self._send_ping = send_ping
        self._fail = fail
        self._closed_exception = closed_exception
        self._logger = logger
        self._peer = peer
        self._waiting: dict[bytes, PongWaiter] = {}
        self._timer: Timer | None = None
        self._own: PongWaiter | None = None  # the keepalive's ping in flight
        self._stopped = False

    def start(self) -> None:
        if self.interval is not None:
            self._timer = call_later(self.interval, self._tick)

    def stop(self) -> None:
        """The connection is over: no more pings, and every waiter is released (``wait`` raises)."""
        self._stopped = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None  # it holds a bound method: no cycle left behind
        for waiter in list(self._waiting.values()):
            waiter._abandon()
        self._waiting.clear()
        self._send_ping = _ignore  # these hold the connection: no cycle left behind
        self._fail = _ignore
        self._own = None

    def detach(self, closed_exception: Callable[[], ConnectionClosed]) -> None:
        """After :meth:`stop`: keep a cycle-free way to say the connection is closed."""
        self._closed_exception = closed_exception

    def register(self, data: bytes | None) -> PongWaiter:
        """With the protocol lock held: choose a payload if none is given and queue the ping."""
        if data is None:
            data = int(time.monotonic_ns() & 0xFFFFFFFF).to_bytes(4, "big")
            while data in self._waiting:
                data = (int.from_bytes(data, "big") + 1 & 0xFFFFFFFF).to_bytes(4, "big")
        elif data in self._waiting:
            raise InvalidState("a ping with this payload is already waiting for its pong")
        self._protocol.send_ping(data)
        waiter = PongWaiter(data, self._closed_exception)
        self._waiting[data] = waiter
        return waiter

    def pong_received(self, payload: bytes, now: float) -> None:
        waiter = self._waiting.get(payload)
        if waiter is None:
            return  # unsolicited, or for a ping already acknowledged by a later pong
        for key in list(self._waiting):
            earlier = self._waiting.pop(key)
            earlier._resolve(now)
            if earlier is waiter:
                break

    def _tick(self) -> None:
        """Timer thread: send a ping; if its pong does not come within ``timeout``, fail with 1011."""
        if self._stopped or self._protocol.state is not State.OPEN:
            return
        if self._own is not None and self._own.latency is None:
            return  # still waiting: the timeout's check handles it
        with self._protocol_lock:
            if self._protocol.state is not State.OPEN:
                return
            waiter = self._own = self.register(None)
        self._send_ping()
        if self.timeout is not None:
            call_later(self.timeout, lambda: self._check(waiter))
        assert self.interval is not None
        self._timer = call_later(self.interval, self._tick)

    def _check(self, waiter: PongWaiter) -> None:
        if waiter.latency is None and not self._stopped:
            self._logger.info("no pong from %s within %ss: closing with 1011", self._peer, self.timeout)
            self._fail(CloseCode.INTERNAL_ERROR, "keepalive ping timeout")


def _ignore(*args: object) -> None:
    pass
