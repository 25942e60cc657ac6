"""A browser-style event client that reconnects: ``on_open``, ``on_message``, ``on_close``, ``on_error``.

Modelled on the browser's ``WebSocket`` object plus the reconnect-with-backoff
that every real application adds to it. It runs its connection loop in a
background thread. After an unexpected close (anything but :meth:`close`),
it waits ``initial_delay`` seconds and reconnects, doubling the delay after
each failed attempt up to ``max_delay``, with ``jitter`` (a fraction of the
delay, drawn at random) so that many clients do not reconnect in lockstep.
A successful connection resets the delay. With ``max_attempts=N`` it gives up
after N failed connection attempts in a row (the first one included):
``on_error`` is called once per failed attempt, then ``on_close`` once, with
1006 and a reason saying it gave up; ``max_attempts=None`` (the default)
never gives up.
"""

from __future__ import annotations

import enum
import logging
import random
import threading
from collections.abc import Callable, Iterable
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from ..exceptions import ConnectionClosed, InvalidState, RawwsError
from ..frames import CloseCode
from .client import ClientConnection, connect
from .connection import Message
from .options import ClientOptions, ClientSettings

if TYPE_CHECKING:
    from typing_extensions import Unpack

__all__ = ["EventClient"]

logger = logging.getLogger("rawws.client")


class ReadyState(enum.IntEnum):
    """The browser's ``WebSocket.readyState`` values."""

    CONNECTING = 0
    OPEN = 1
    CLOSING = 2
    CLOSED = 3


CONNECTING, OPEN, CLOSING, CLOSED = ReadyState


class EventClient:
    """Connect to ``uri`` and keep connected; deliver events to callbacks on the client's thread.

    Callbacks: ``on_open(client)``, ``on_message(client, message)``,
    ``on_close(client, code, reason)``, ``on_error(client, exception)``.
    ``on_error`` is called once for each failed connection attempt.
    ``max_attempts``: give up after this many failed connection attempts in a
    row, the first one included (None: never give up); giving up, or a failed
    attempt with ``reconnect=False``, calls ``on_close(client, 1006, reason)``
    once. Extra keyword arguments go to :func:`rawws.connect`.
    """

    def __init__(
        self,
        uri: str,
        *,
        on_open: Callable[[EventClient], Any] | None = None,
        on_message: Callable[[EventClient, Message], Any] | None = None,
        on_close: Callable[[EventClient, int, str], Any] | None = None,
        on_error: Callable[[EventClient, BaseException], Any] | None = None,
        reconnect: bool = True,
        initial_delay: float = 1.0,
        factor: float = 2.0,
        max_delay: float = 30.0,
        jitter: float = 0.1,
        max_attempts: int | None = None,
        **connect_options: Unpack[ClientSettings],
    ) -> None:
        if initial_delay < 0 or factor < 1 or max_delay < initial_delay or not 0 <= jitter <= 1:
            raise ValueError("need 0 <= initial_delay <= max_delay, factor >= 1 and 0 <= jitter <= 1")
        if max_attempts is not None and (type(max_attempts) is not int or max_attempts < 1):
            raise ValueError(f"max_attempts is None (never give up) or an int of at least 1, not {max_attempts!r}")
        self.uri = uri
        self.on_open = on_open
        self.on_message = on_message
        self.on_close = on_close
        self.on_error = on_error
        self.reconnect = reconnect
        self.initial_delay = initial_delay
        self.factor = factor
        self.max_delay = max_delay
        self.jitter = jitter
        self.max_attempts = max_attempts
        self.connect_options = replace(ClientOptions(), **connect_options)
        self.connection: ClientConnection | None = None
        self.ready_state = CLOSED
        self.delays: list[float] = []
        """Every reconnect delay waited so far, in order (useful to show or to test)."""
        self._stop = threading.Event()
        self._opened = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def start(self) -> EventClient:
        """Start connecting in the background; return self."""
        if self._thread is not None:
            raise InvalidState("already started")
        self.ready_state = CONNECTING
        self._thread = threading.Thread(target=self._run, name="rawws-eventclient", daemon=True)
        self._thread.start()
        return self

    def wait_open(self, timeout: float | None = None) -> bool:
        """Block until a connection is open (True) or ``timeout`` passes (False)."""
        return self._opened.wait(timeout)

    def send(self, message: Message | Iterable[Message]) -> None:
        """Send on the current connection; :class:`InvalidState` when not connected (like the browser)."""
        connection = self.connection
        if connection is None or self.ready_state != OPEN:
            raise InvalidState("not connected")
        connection.send(message)

    def close(self, code: int = CloseCode.NORMAL_CLOSURE, reason: str = "", timeout: float | None = 10.0) -> None:
        """Close for good: no reconnection afterwards. Waits for the loop to end."""
        self._stop.set()
        connection = self.connection
        if connection is not None:
            self.ready_state = CLOSING
            connection.close(code, reason)
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)
        self.ready_state = CLOSED

    def __enter__(self) -> EventClient:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def next_delay(self, attempt: int) -> float:
        """The wait before reconnect attempt ``attempt`` (0-based), jitter included."""
        base = min(self.max_delay, self.initial_delay * self.factor**attempt)
        return max(0.0, base * (1 + random.uniform(-self.jitter, self.jitter)))

    def _run(self) -> None:
        failures = 0  # failed connection attempts in a row
        while not self._stop.is_set():
            self.ready_state = CONNECTING
            try:
                connection = connect(self.uri, options=self.connect_options)
            except (OSError, RawwsError) as exc:
                failures += 1
                self._emit(self.on_error, exc)
                if self._stop.is_set():
                    break
                if not self.reconnect or (self.max_attempts is not None and failures >= self.max_attempts):
                    self._give_up(failures)
                    break
            else:
                failures = 0
                self._session(connection)
                if self._stop.is_set() or not self.reconnect:
                    break
            delay = self.next_delay(max(failures - 1, 0))  # the first wait is initial_delay
            self.delays.append(delay)
            logger.info("reconnecting to %s in %.1f s", self.uri, delay)
            self._stop.wait(delay)
        self.ready_state = CLOSED

    def _give_up(self, failures: int) -> None:
        attempts = f"{failures} failed attempt{'s' if failures != 1 else ''}"
        logger.info("giving up on %s after %s to connect", self.uri, attempts)
        self.ready_state = CLOSED
        self._emit(self.on_close, CloseCode.ABNORMAL_CLOSURE, f"gave up after {attempts} to connect")

    def _session(self, connection: ClientConnection) -> None:
        self.connection = connection
        if self._stop.is_set():  # close() came while connecting: it may not have seen this connection
            connection.close()
            return
        self.ready_state = OPEN
        self._opened.set()
        self._emit(self.on_open)
        try:
            while True:
                message = connection.recv()
                self._emit(self.on_message, message)
        except ConnectionClosed:
            pass
        except Exception as exc:  # a callback raised: report it, end this connection
            self._emit(self.on_error, exc)
            connection.close(CloseCode.INTERNAL_ERROR, "client error")
        finally:
            self._opened.clear()
            self.ready_state = CLOSED
            code = connection.close_code if connection.close_code is not None else CloseCode.ABNORMAL_CLOSURE
            self._emit(self.on_close, code, connection.close_reason or "")

    def _emit(self, callback: Callable[..., Any] | None, *args: Any) -> None:
        if callback is None:
            return
        try:
            callback(self, *args)
        except Exception:
            logger.exception("event callback %r failed", callback)
