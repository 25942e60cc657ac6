"""The threaded connection: a :class:`~rawws.protocol.Protocol` driven over a socket.

Shared by the server and the client. The socket is non-blocking; rawws does
its own waiting so that reading, writing and closing can happen on different
threads without any of them holding another up.

Reading. Whoever needs data reads: a thread blocked in :meth:`Connection.recv`
(or :meth:`Connection.close`) reads the socket itself, so the hot path has no
thread hop. When nobody is waiting, the socket is armed in the shared
:mod:`~rawws.reactor`, which reads it without blocking, so pings are answered
and the peer's close is noticed while a handler is busy. Received messages
wait in a queue of at most ``max_queue``; when it is full, reading stops and
TCP flow control pushes back on the peer.

Writing. ``send`` encodes under a short protocol lock and writes under a
write lock. Control frames produced while reading (pongs, the close reply)
are written by the reader if the write lock is free and otherwise by the
thread that holds it, right after its own bytes, so a reader never waits for
a writer. Bytes always reach the wire in the order the protocol produced them.

Bounds (what one peer can make a connection hold). Parsing stops once
``max_queue`` messages wait for the handler: the rest stays as received bytes
(one read, 64 KiB) and then in the kernel, so compressed messages are not
inflated ahead of the handler. A message being assembled costs about its own
size, however it is fragmented (fragments are merged into one buffer), and is
capped by ``max_size``. When the peer does not read what rawws writes to it
(a background flush is stuck) and either a pong is owed to it or more than
``write_limit`` bytes wait behind the flush, reading from that peer stops
until the flush drains, so a ping flood is pushed back by TCP; if the flush
takes nothing for ``write_timeout`` seconds the connection is dropped (that
holds for a blocked ``send()`` too).
Several pings answered while a pong is still unsent get one pong (§5.5.3).
So a connection holds at most about ``(max_queue + 1) × max_size`` of
received data, plus one read, plus ``write_limit`` (and what the application
itself queues with ``send_nowait``).
"""

from __future__ import annotations

import logging
import select
import socket
import ssl
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, Union

from .exceptions import ConnectionClosed, ConnectionClosedError, ConnectionClosedOK, InvalidState
from .frames import CloseCode
from .http11 import Request, Response
from .protocol import (
    BinaryMessage,
    CloseReceived,
    Data,
    Event,
    Failure,
    Fragment,
    Pong,
    Protocol,
    State,
    TextMessage,
)
from .reactor import get_reactor
from .timers import Timer, call_later

__all__ = ["Connection", "PongWaiter"]

_MSG_MORE: int = getattr(socket, "MSG_MORE", 0)
_OK_CODES = frozenset({CloseCode.NORMAL_CLOSURE, CloseCode.GOING_AWAY, CloseCode.NO_STATUS_RCVD})
_READ_SIZE = 65536
_SEPARATE_PIECES = 64
_WOULD_BLOCK = (BlockingIOError, InterruptedError, ssl.SSLWantReadError, ssl.SSLWantWriteError)

Message = Union[str, bytes]


class _Pieces:
    """Queue item: the part of a fragmented message that arrived before recv() took it.

    The first :data:`_SEPARATE_PIECES` fragments stay separate (``recv_streaming``
    yields them as they were framed); fragments after those, while this is
    still the newest item, are appended to one buffer. So a message in a
    million 1-byte fragments costs about a megabyte, not a million objects.
    Merged text is kept as UTF-8 (the protocol validated it) and decoded when taken.
    """

    __slots__ = ("text", "chunks", "merged", "last")

    def __init__(self, data: str | bytes, last: bool) -> None:
        self.text = isinstance(data, str)
        self.chunks = [data]
        self.merged: bytearray | None = None
        self.last = last

    def add(self, data: str | bytes, last: bool) -> None:
        self.last = last
        if self.merged is None:
            if len(self.chunks) < _SEPARATE_PIECES:
                self.chunks.append(data)
                return
            self.merged = bytearray()
        self.merged += data.encode("utf-8") if isinstance(data, str) else data

    def values(self) -> list[str | bytes]:
        if self.merged is None:
            return self.chunks
        merged = self.merged.decode("utf-8") if self.text else bytes(self.merged)
        return [*self.chunks, merged]


class _Failed:
    """Queue marker: the peer broke the protocol after the messages before it."""

    __slots__ = ("code", "reason")

    def __init__(self, code: int, reason: str) -> None:
        self.code = code
        self.reason = reason


class PongWaiter:
    """Returned by :meth:`Connection.ping`: wait for the matching pong.

    ``wait(timeout)`` returns True once the pong arrived; ``latency`` is the
    round-trip time in seconds. If the connection closes first, ``wait``
    raises :class:`~rawws.exceptions.ConnectionClosed`.
    """

    def __init__(self, payload: bytes, connection: Connection) -> None:
        self.payload = payload
        self.sent_at = time.monotonic()
        self.latency: float | None = None
        self._event = threading.Event()
        self._connection = connection
        self._closed = False

    def _resolve(self, now: float) -> None:
        self.latency = now - self.sent_at
        self._event.set()

    def _abandon(self) -> None:
        self._closed = True
        self._event.set()

    def wait(self, timeout: float | None = None) -> bool:
        if not self._event.wait(timeout):
            return False
        if self.latency is None and self._closed:
            raise self._connection._closed_exception()
        return True


class Connection:
    """An open WebSocket connection (server or client side). Thread-safe.

    Use :meth:`recv` or iterate to receive, :meth:`send` to send, :meth:`ping`
    for a round trip and :meth:`close` to end it.
    """

    def __init__(
        self,
        sock: socket.socket,
        protocol: Protocol,
        *,
        request: Request,
        response: Response,
        subprotocol: str | None = None,
        max_queue: int | None = 16,
        ping_interval: float | None = 20.0,
        ping_timeout: float | None = 20.0,
        close_timeout: float | None = 10.0,
        write_limit: int | None = 2**20,
        write_timeout: float | None = 20.0,
        logger: logging.Logger | None = None,
        leftover: bytes = b"",
        remote_address: Any = None,
    ) -> None:
        self.socket = sock
        self.protocol = protocol
        self.request = request
        self.response = response
        self.subprotocol = subprotocol
        self.max_queue = max_queue
        self.ping_interval = ping_interval
        self.ping_timeout = ping_timeout
        self.close_timeout = close_timeout
        self.write_limit = write_limit
        self.write_timeout = write_timeout
        self.logger = logger or logging.getLogger("rawws")
        self.local_address: Any = sock.getsockname()
        self.remote_address: Any = remote_address if remote_address is not None else _peername(sock)
        self._fd = sock.fileno()
        self._reactor = get_reactor()
        self._tls = isinstance(sock, ssl.SSLSocket)
        # Replies to a backlog of received messages are sent with MSG_MORE (see _send_message).
        self._can_cork = not self._tls and sock.family in (socket.AF_INET, socket.AF_INET6) and _MSG_MORE != 0
        self._corked = False
        self._recv_thread = 0  # the thread that last called recv(): usually the handler
        protocol.fragment_events = True
        protocol.defer_failure = True
        if self.logger.isEnabledFor(logging.DEBUG):
            protocol.trace = self._trace

        # Receiving.
        self._lock = threading.Lock()  # guards the queue and the read-side flags below
        self._cond: threading.Condition | None = None  # made on first wait: most connections never need one
        self._waiters = 0  # threads in _cond.wait(): notify only when someone listens
        self._queue: deque[Message | _Pieces | _Failed] = deque()
        self._partial: list[Any] = []  # fragments of a message recv() has begun to return
        self._recv_mutex = threading.Lock()
        self._reading = False  # a thread (or the reactor) owns the read side
        self._armed = False
        self._paused = False  # the queue is full: nobody reads until it drains
        self._write_paused = False  # the peer is not reading what we write: nobody reads until it does
        self._eof = False
        self._aborted = False
        self._terminated = False
        self._read_poller = select.poll()
        self._read_poller.register(self._fd, select.POLLIN)

        # Sending.
        self._proto_lock = threading.Lock()
        self._send_mutex = threading.Lock()  # held for a whole fragmented message
        self._write_lock = threading.Lock()
        self._unsent: list[Data] = []
        self._writing = 0  # bytes being written by a blocking write right now
        self.on_drain: Callable[[], Any] | None = None
        """Called (on a background thread) when a backlog left by send_nowait has been written."""
        self._write_poller: Any = None
        self._write_error: BaseException | None = None
        self._flushers = 0  # background flushes running: the socket did not take everything

        # Closing and keepalive.
        self._closed_by: str | None = None
        self._close_timer: Timer | None = None
        self._keepalive_timer: Timer | None = None
        self._pings: dict[bytes, PongWaiter] = {}
        self._keepalive_waiter: PongWaiter | None = None

        sock.setblocking(False)
        if leftover:
            self._process(leftover)
        with self._lock:
            self._rearm_locked()
        if ping_interval is not None:
            self._keepalive_timer = call_later(ping_interval, self._keepalive)

    # --- public API --------------------------------------------------------------------

    @property
    def state(self) -> State:
        return self.protocol.state

    @property
    def close_code(self) -> int | None:
        """The code of the peer's close frame (1006 if none came); None while open."""
        if not self._terminated and self.protocol.close_received is None:
            return None
        return self.protocol.close_code

    @property
    def close_reason(self) -> str | None:
        if self.protocol.close_received is not None:
            return self.protocol.close_received[1]
        return "" if self._terminated else None

    def recv(self, timeout: float | None = None) -> Message:
        """The next message: ``str`` for text, ``bytes`` for binary.

        Raises :class:`TimeoutError` if none arrives within ``timeout`` seconds
        (the connection stays usable), and :class:`ConnectionClosed` once the
        connection is closed and every message received before has been returned.
        """
        self._recv_thread = threading.get_ident()
        with self._recv_mutex:
            if not self._partial:
                # Fast path: a whole message is waiting.
                try:
                    item = self._queue.popleft()
                except IndexError:
                    pass
                else:
                    if type(item) is bytes or type(item) is str:
                        if self._paused:
                            self._resume_reading()
                        return item
                    self._queue.appendleft(item)
            deadline = None if timeout is None else time.monotonic() + timeout
            while True:
                item = self._next_item(deadline)
                if type(item) is _Pieces:
                    self._partial.extend(item.values())
                    if item.last:
                        parts, self._partial = self._partial, []
                        return "".join(parts) if isinstance(parts[0], str) else b"".join(parts)
                    continue
                return item  # type: ignore[return-value]

    def recv_streaming(self, timeout: float | None = None) -> Iterator[Message]:
        """Yield the next message piece by piece, as its frames arrive (§5.4).

        Each piece is ``str`` for a text message or ``bytes`` for a binary
        one; a message that was not fragmented comes as a single piece. When
        more than 64 fragments pile up before you take them, the later ones
        come merged into one piece (§5.4 lets intermediaries re-fragment
        anyway). Use this for messages too large to hold at once.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._recv_mutex:
            if self._partial:
                raise InvalidState("recv() timed out inside a fragmented message; call recv() to finish it")
            while True:
                item = self._next_item(deadline)
                if type(item) is _Pieces:
                    yield from item.values()
                    if item.last:
                        return
                else:
                    yield item  # type: ignore[misc]
                    return

    def __iter__(self) -> Iterator[Message]:
        """Iterate over messages; ends quietly on a normal close (1000/1001)."""
        while True:
            try:
                yield self.recv()
            except ConnectionClosedOK:
                return

    def send(self, message: Message | bytearray | memoryview | Iterable[Message]) -> None:
        """Send one message: ``str`` as text, bytes-like as binary.

        An iterable of ``str`` (or of bytes-like) sends one fragmented message,
        a frame per item (§5.4). Any number of threads may send at once;
        messages never interleave. Returns once the bytes are written, or
        raises :class:`ConnectionClosed`.
        """
        if isinstance(message, (str, bytes, bytearray, memoryview)):
            self._send_message(message)
        elif isinstance(message, Iterable):
            self._send_fragments(message)
        else:
            raise TypeError(f"cannot send {type(message).__name__}: use str, bytes or an iterable of them")

    def send_nowait(self, message: Message) -> None:
        """Queue one message and write whatever the socket takes now, without waiting for the peer.

        What does not fit is written by a background flush, in order; watch
        :attr:`buffered_amount` to bound it and set :attr:`on_drain` to hear
        when it is all written (a slow-consumer policy needs both). Raises
        :class:`ConnectionClosed` if the connection is closed. If another
        thread is in the middle of a fragmented message, this waits for it.
        """
        self._enqueue((message,), None, write=True)

    def send_many_nowait(self, messages: Sequence[Message], *, write: bool = True) -> None:
        """:meth:`send_nowait` for several messages at once: one write for all of them.

        With ``write=False`` the messages are only queued, in order; a later
        :meth:`flush_nowait` (or any send) writes them. That lets a caller
        order messages under its own lock and do the system call outside it.
        """
        self._enqueue(messages, None, write=write)

    def flush_nowait(self) -> None:
        """Write what is queued as far as the socket takes it now; a background flush does the rest."""
        self._flush(blocking=False)

    @property
    def buffered_amount(self) -> int:
        """Bytes accepted by send but not yet written to the socket (like the browser's ``bufferedAmount``)."""
        return self._writing + self._backlog()

    def _backlog(self) -> int:
        """Bytes queued to write that no writer is writing right now."""
        return sum(len(b) for b in self._unsent) + self.protocol.output_size

    def _enqueue(self, messages: Sequence[Message], frame: bytes | None, *, write: bool) -> None:
        """Encode ``messages`` into the protocol's output (or queue ``frame``, the one message already
        encoded by :func:`rawws.broadcast`), then write without blocking."""
        protocol = self.protocol
        with self._proto_lock:
            if protocol.state is not State.OPEN or self._write_error is not None:
                raise self._closed_exception()
            fragmenting = protocol._out_opcode is not None
            if not fragmenting:
                if frame is not None:
                    if protocol.trace is not None:
                        opcode = 1 if isinstance(messages[0], str) else 2
                        protocol.trace(">", opcode, True, _encoded(messages[0]))
                    protocol._out.append(frame)
                else:
                    for message in messages:
                        if isinstance(message, str):
                            protocol.send_text(message)
                        else:
                            protocol.send_binary(message)
        if fragmenting:
            for message in messages:
                self._send_message(message)  # waits for the fragmented message to end
        elif write:
            self._flush(blocking=False)

    def ping(self, data: bytes | str | None = None) -> PongWaiter:
        """Send a ping and return a :class:`PongWaiter` for its pong (§5.5.2).

        Without ``data``, a unique 4-byte payload is chosen.
        """
        if isinstance(data, str):
            data = data.encode("utf-8")
        with self._proto_lock:
            self._check_sendable()
            if data is None:
                data = int(time.monotonic_ns() & 0xFFFFFFFF).to_bytes(4, "big")
                while data in self._pings:
                    data = (int.from_bytes(data, "big") + 1 & 0xFFFFFFFF).to_bytes(4, "big")
            elif data in self._pings:
                raise InvalidState("a ping with this payload is already waiting for its pong")
            self.protocol.send_ping(data)
            waiter = PongWaiter(data, self)
            self._pings[data] = waiter
        self._flush(blocking=True)
        self._raise_if_write_failed()
        return waiter

    def pong(self, data: bytes = b"") -> None:
        """Send an unsolicited pong (a one-way heartbeat, §5.5.3)."""
        with self._proto_lock:
            self._check_sendable()
            self.protocol.send_pong(data)
        self._flush(blocking=True)
        self._raise_if_write_failed()

    def close(self, code: int = CloseCode.NORMAL_CLOSURE, reason: str = "") -> None:
        """Run the closing handshake (§7.1.2) and wait, up to ``close_timeout``, for it to end.

        Idempotent; safe from any thread. Messages that arrived before the
        close stay available to :meth:`recv`.
        """
        self.start_closing(code, reason, wait_for_write=True)
        deadline = None if self.close_timeout is None else time.monotonic() + self.close_timeout
        self._wait_for(lambda: self._terminated, deadline)
        if not self._terminated:
            self._abort()
            self._wait_for(lambda: self._terminated, time.monotonic() + 1.0)

    def start_closing(
        self, code: int = CloseCode.NORMAL_CLOSURE, reason: str = "", wait_for_write: bool = False
    ) -> None:
        """Send the close frame and return without waiting for the peer's answer.

        The closing handshake then completes in the background (the reader sees
        the peer's close frame), bounded by ``close_timeout``.
        """
        with self._proto_lock:
            if self.protocol.state is not State.OPEN or self._terminated:
                return
            self.protocol.send_close(code, reason)
            if self._closed_by is None:
                self._closed_by = "local"
        self._start_close_timer()
        self._flush(blocking=wait_for_write)
        with self._lock:
            self._rearm_locked()  # a paused reader must resume to see the answer

    def wait_closed(self, timeout: float | None = None) -> bool:
        """Block until the TCP connection is closed (True) or ``timeout`` passes (False)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        return self._wait_for(lambda: self._terminated, deadline)

    @property
    def closed(self) -> bool:
        """Whether the connection is completely closed (TCP included)."""
        return self._terminated

    def __enter__(self) -> Connection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.remote_address!r} {self.protocol.state.name}>"

    # --- receiving internals -------------------------------------------------------------

    def _resume_reading(self) -> None:
        with self._lock:
            if self._paused and not self._reading and self._below_queue_limit():
                self._rearm_locked()

    def _next_item(self, deadline: float | None) -> Message | _Pieces:
        queue = self._queue
        while True:
            with self._lock:
                if queue:
                    item = queue.popleft()
                    if self._paused and not self._reading and self._below_queue_limit():
                        self._rearm_locked()
                    if isinstance(item, _Failed):
                        failure: _Failed | None = item
                    else:
                        return item
                else:
                    failure = None
                    if self._terminated:
                        raise self._closed_exception()
            if failure is not None:
                self._fail_now(failure.code, failure.reason)
                continue
            if not self._wait_for(lambda: bool(queue) or self._terminated, deadline):
                raise TimeoutError("no message within the timeout")

    def _below_queue_limit(self) -> bool:
        return self.max_queue is None or len(self._queue) < self.max_queue

    def _wait_for(self, predicate: Callable[[], bool], deadline: float | None) -> bool:
        """Wait until ``predicate()`` holds, reading the socket ourselves when nobody else is."""
        while True:
            with self._lock:
                while True:
                    if predicate():
                        return True
                    remaining = None if deadline is None else deadline - time.monotonic()
                    if remaining is not None and remaining <= 0:
                        return False
                    if not self._reading and not self._eof and not self._write_paused:
                        self._reading = True
                        if self._armed:
                            self._reactor.disarm(self._fd)
                            self._armed = False
                        break
                    if self._cond is None:
                        self._cond = threading.Condition(self._lock)
                    self._waiters += 1
                    try:
                        self._cond.wait(remaining)
                    finally:
                        self._waiters -= 1
            try:
                self._read_until(predicate, deadline)
            finally:
                self._stop_reading()

    def _read_until(self, predicate: Callable[[], bool], deadline: float | None) -> None:
        sock = self.socket
        while not predicate() and not self._eof:
            if self.protocol.input_waiting:
                self._process(b"")  # bytes left unparsed while the queue was full
                continue
            if self._writes_stuck():
                return  # the caller waits for the flush to drain (see _rearm_locked)
            try:
                data = sock.recv(_READ_SIZE)
            except _WOULD_BLOCK:
                if self._corked:
                    self._push()
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return
                self._read_poller.poll(None if remaining is None else max(1, int(remaining * 1000 + 0.999)))
                continue
            except OSError as exc:
                self._connection_lost(exc)
                return
            if self._tls and data:
                while sock.pending():  # type: ignore[attr-defined]
                    data += sock.recv(_READ_SIZE)
            if data:
                self._process(data)
            else:
                self._connection_lost(None)

    def _on_readable(self) -> None:
        """Reactor callback: read what is there, without blocking."""
        with self._lock:
            self._armed = False
            if self._reading or self._eof:
                return
            self._reading = True
        try:
            if self.protocol.input_waiting:
                self._process(b"")  # bytes left unparsed while the queue was full
            while self._below_queue_limit() or self._closing():
                try:
                    data = self.socket.recv(_READ_SIZE)
                except _WOULD_BLOCK:
                    break
                except OSError as exc:
                    self._connection_lost(exc)
                    break
                if not data:
                    self._connection_lost(None)
                    break
                self._process(data)
                if not (self._tls and self.socket.pending()):  # type: ignore[attr-defined]
                    break
        finally:
            self._stop_reading()

    def _stop_reading(self) -> None:
        """Give up the read side: hand the socket back to the reactor and wake any waiter."""
        with self._lock:
            self._reading = False
            self._rearm_locked()
            if self._waiters and self._cond is not None:
                self._cond.notify_all()

    def _rearm_locked(self) -> None:
        """With ``_lock`` held and nobody reading: watch the socket in the reactor unless paused."""
        if self._reading or self._armed or self._eof:
            return
        if not self._below_queue_limit() and not self._closing():
            self._paused = True
            return
        self._paused = False
        if self._writes_stuck():
            self._write_paused = True
            return
        self._write_paused = False
        self._armed = True
        if self.protocol.input_waiting:
            call_later(0, self._on_readable)  # whole frames may wait in the parser: no readiness event will come
        else:
            self._reactor.arm(self._fd, self._on_readable)

    def _writes_stuck(self) -> bool:
        """Whether the peer is not reading what we write and more waits for it (stop reading from it)."""
        if not self._flushers or self._aborted or self._write_error is not None:
            return False
        return self.protocol.pong_pending or (self.write_limit is not None and self._backlog() > self.write_limit)

    def _writes_drained(self) -> None:
        """A background flush ended: resume reading if it was paused for it."""
        with self._lock:
            self._flushers -= 1
            if self._write_paused and not self._reading:
                self._write_paused = False
                self._rearm_locked()
            if self._waiters and self._cond is not None:
                self._cond.notify_all()

    def _closing(self) -> bool:
        return self._aborted or self.protocol.close_sent is not None or self.protocol.state is not State.OPEN

    def _process(self, data: bytes) -> None:
        """Feed received bytes to the protocol and act on the events (reading owner only).

        The protocol parses at most as many messages as the queue has room for;
        the rest waits in its buffer (``protocol.input_waiting``).
        """
        budget = None if self.max_queue is None or self._closing() else max(1, self.max_queue - len(self._queue))
        with self._proto_lock:
            events = self.protocol.receive_data(data, max_messages=budget)
            pending_output = self.protocol.output_size > 0
        if events:
            self._handle_events(events)
        if pending_output:
            self._flush(blocking=False)
        if self.protocol.should_close_tcp:
            self._shutdown_write()

    def _handle_events(self, events: list[Event]) -> None:
        fail_at_once: tuple[int, str] | None = None
        with self._lock:
            for event in events:
                kind = type(event)
                if kind is BinaryMessage or kind is TextMessage:
                    self._queue.append(event.data)  # type: ignore[union-attr]
                elif kind is Fragment:
                    self._queue_fragment(event)  # type: ignore[arg-type]
                elif isinstance(event, Pong):
                    self._pong_received(event.data, time.monotonic())
                elif isinstance(event, CloseReceived):
                    if self._closed_by is None:
                        self._closed_by = "remote"
                    self._start_close_timer()
                elif isinstance(event, Failure):
                    error = event.error
                    self.logger.info("failing connection %s: %s", self.remote_address, error)
                    if self._queue:
                        # Deliver what came before the violation first: recv() fails the
                        # connection when it reaches this marker (or a timer does, if nobody reads).
                        self._queue.append(_Failed(error.close_code, str(error)))
                        call_later(self.close_timeout or 10.0, self._failure_deadline(error.close_code, str(error)))
                    else:
                        fail_at_once = (error.close_code, str(error))
                # Ping: the protocol has queued the pong already.
            if self._waiters and self._cond is not None:
                self._cond.notify_all()
        if fail_at_once is not None:
            self._fail_now(*fail_at_once)

    def _queue_fragment(self, fragment: Fragment) -> None:
        """With ``_lock`` held: append a fragment to the newest unfinished piece, or start one."""
        queue = self._queue
        if not fragment.first and queue:
            tail = queue[-1]
            if type(tail) is _Pieces and not tail.last:
                tail.add(fragment.data, fragment.last)
                return
        queue.append(_Pieces(fragment.data, fragment.last))

    def _failure_deadline(self, code: int, reason: str) -> Callable[[], None]:
        return lambda: self._fail_now(code, reason)

    def _pong_received(self, payload: bytes, now: float) -> None:
        waiter = self._pings.get(payload)
        if waiter is None:
            return
        # A pong acknowledges its ping and every ping sent before it.
        for key in list(self._pings):
            earlier = self._pings.pop(key)
            earlier._resolve(now)
            if earlier is waiter:
                break

    def _fail_now(self, code: int, reason: str) -> None:
        """_Fail the WebSocket Connection_ (§7.1.7): close frame, then close TCP."""
        with self._proto_lock:
            if self._terminated or self.protocol.should_close_tcp and self.protocol.close_sent is not None:
                return
            if self._closed_by is None:
                self._closed_by = "local"
            self.protocol.fail(code, reason[:100])
        self._flush(blocking=False)
        self._shutdown_write()
        self._start_close_timer()

    # --- closing internals ----------------------------------------------------------------

    def _start_close_timer(self) -> None:
        if self._close_timer is None and self.close_timeout is not None and not self._terminated:
            self._close_timer = call_later(self.close_timeout, self._abort)

    def _shutdown_write(self) -> None:
        """Send FIN after everything queued (§7.1.1: the server closes TCP first).

        FIN is sent by whoever holds the write lock once nothing is left to
        write (see :meth:`_fin_if_written`): here if the lock is free, else by
        the writer holding it, after its bytes. Checking "nothing pending" from
        outside the lock would race with a writer that has taken the bytes but
        not yet written them, and FIN would overtake the close frame.
        """
        self._start_close_timer()
        self._flush(blocking=False)

    def _fin_if_written(self) -> None:
        """With the write lock held: send FIN if the protocol says TCP should close and nothing is left."""
        if self.protocol.should_close_tcp and not self._unsent and not self.protocol.output_size:
            try:
                self.socket.shutdown(socket.SHUT_WR)
            except OSError:
                pass

    def _abort(self) -> None:
        """Drop the TCP connection now: wakes every thread blocked on the socket."""
        if self._terminated:
            return
        self._aborted = True
        try:
            self.socket.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        with self._lock:
            self._rearm_locked()  # someone must read the EOF and finish up

    def _connection_lost(self, exc: BaseException | None) -> None:
        """The reading side saw EOF or an error: finish the connection (reading owner only)."""
        if exc is not None:
            self.logger.debug("connection %s lost: %s", self.remote_address, exc)
        with self._proto_lock:
            self.protocol.receive_eof()
        with self._lock:
            self._eof = True
        for timer in (self._close_timer, self._keepalive_timer):
            if timer is not None:
                timer.cancel()
        self._close_timer = self._keepalive_timer = None  # they hold bound methods: no cycle left behind
        self._reactor.forget(self._fd)
        try:
            self.socket.shutdown(socket.SHUT_RDWR)  # wakes a writer waiting for buffer space
        except OSError:
            pass
        with self._write_lock:
            try:
                self.socket.close()
            except OSError:
                pass
        with self._lock:
            self._terminated = True
            if self._cond is not None:
                self._cond.notify_all()
        for waiter in list(self._pings.values()):
            waiter._abandon()
        self._pings.clear()

    def _closed_exception(self) -> ConnectionClosed:
        received = self.protocol.close_received
        sent = self.protocol.close_sent
        code, reason = received if received is not None else (CloseCode.ABNORMAL_CLOSURE, "")
        ok = received is not None and code in _OK_CODES and (sent is None or sent[0] in _OK_CODES)
        cls = ConnectionClosedOK if ok else ConnectionClosedError
        closed_by = self._closed_by if received is not None or sent is not None else "abnormal"
        return cls(
            code,
            reason,
            sent_code=sent[0] if sent else None,
            sent_reason=sent[1] if sent else None,
            closed_by=closed_by or "abnormal",
        )

    # --- sending internals ---------------------------------------------------------------------

    def _check_sendable(self) -> None:
        """With ``_proto_lock`` held: raise ConnectionClosed unless the protocol is OPEN."""
        if self.protocol.state is not State.OPEN or self._write_error is not None:
            raise self._closed_exception()

    def _send_message(self, message: Message | bytearray | memoryview) -> None:
        """One unfragmented message: encode and write under the write lock, so bytes keep protocol order.

        When the thread sending is the one receiving and more received messages
        are already waiting for it, it is working through a backlog and will
        most likely reply again at once: the write carries MSG_MORE, so the
        kernel coalesces the replies into fewer TCP segments instead of one per
        message. The bytes still reach the kernel before this returns; they are
        pushed by the next write without the flag, or at the latest when
        ``recv()`` is about to wait for more input.
        """
        protocol = self.protocol
        more = bool(self._can_cork and self._queue and threading.get_ident() == self._recv_thread)
        while True:
            with self._write_lock:
                with self._proto_lock:
                    if protocol.state is not State.OPEN or self._write_error is not None:
                        raise self._closed_exception()
                    if protocol._out_opcode is None:
                        if type(message) is str:
                            protocol.send_text(message)
                        else:
                            protocol.send_binary(message)  # type: ignore[arg-type]
                        data = protocol.data_to_send()
                        fragmenting = False
                    else:
                        fragmenting = True
                if not fragmenting:
                    if self._unsent:
                        data = self._unsent + data
                        self._unsent = []
                    self._write_all(data, more)
                    self._fin_if_written()
            if not fragmenting:
                break
            with self._send_mutex:  # another thread is sending a fragmented message: wait for its end
                pass
        if protocol.output_size:
            self._flush(blocking=False)
        if self._write_error is not None:
            raise self._closed_exception() from self._write_error

    def _send_fragments(self, pieces: Iterable[Message]) -> None:
        with self._send_mutex:
            iterator = iter(pieces)
            try:
                current = next(iterator)
            except StopIteration:
                raise ValueError("cannot send an empty iterable: a message needs at least one frame") from None
            text = isinstance(current, str)
            first = True
            while True:
                try:
                    following = next(iterator)
                    last = False
                except StopIteration:
                    following, last = None, True
                if isinstance(current, str) != text:
                    raise TypeError("all fragments of one message must be str, or all bytes-like")
                with self._proto_lock:
                    self._check_sendable()
                    if not first:
                        self.protocol.send_continuation(current, fin=last)
                    elif isinstance(current, str):
                        self.protocol.send_text(current, fin=last)
                    else:
                        self.protocol.send_binary(current, fin=last)
                self._flush(blocking=True)
                self._raise_if_write_failed()
                if last:
                    return
                current, first = following, False  # type: ignore[assignment]

    def _raise_if_write_failed(self) -> None:
        if self._write_error is not None:
            raise self._closed_exception() from self._write_error

    def _flush(self, *, blocking: bool, persist: bool = False) -> None:
        """Write what the protocol queued. Non-blocking callers never wait for the lock or the socket.

        With ``persist`` (the background flusher), keep writing, blocking, until nothing is left.
        """
        while True:
            if not self._write_lock.acquire(blocking=blocking):
                return  # the holder writes our bytes after its own
            try:
                if self._write_error is None and not self._terminated:
                    with self._proto_lock:
                        data = self.protocol.data_to_send()
                    if self._unsent:
                        data = self._unsent + data
                        self._unsent = []
                    if data:
                        if blocking:
                            self._write_all(data)
                        else:
                            self._unsent = self._write_some(data)
                            if self._unsent:
                                with self._lock:
                                    self._flushers += 1
                                threading.Thread(target=self._background_flush, daemon=True).start()
                                return
                    self._fin_if_written()
            finally:
                self._write_lock.release()
            if not self.protocol.output_size or self._write_error is not None or self._terminated:
                return  # (terminated: what is left will never be written; looping would spin)
            blocking = persist

    def _background_flush(self) -> None:
        try:
            self._flush(blocking=True, persist=True)
        finally:
            self._writes_drained()
        callback = self.on_drain
        if callback is not None and not self.buffered_amount and not self._terminated:
            try:
                callback()
            except Exception:
                self.logger.exception("on_drain callback failed")

    def _write_all(self, buffers: list[Data], more: bool = False) -> None:
        sock = self.socket
        flags = _MSG_MORE if more else 0
        self._corked = more
        if len(buffers) > 1 or len(buffers[0]) > 65536:
            self._writing = sum(len(b) for b in buffers)
        try:
            if len(buffers) == 1 or self._tls:
                for buffer in buffers:
                    view = memoryview(buffer)
                    while view:
                        try:
                            sent = sock.send(view, flags) if flags else sock.send(view)
                        except _WOULD_BLOCK:
                            self._wait_writable()
                            continue
                        view = view[sent:]
            else:
                pending = [memoryview(b) for b in buffers]
                while pending:
                    try:
                        sent = sock.sendmsg(pending, [], flags)
                    except _WOULD_BLOCK:
                        self._wait_writable()
                        continue
                    while sent:
                        if sent >= len(pending[0]):
                            sent -= len(pending.pop(0))
                        else:
                            pending[0] = pending[0][sent:]
                            sent = 0
        except OSError as exc:
            self._write_failed(exc)
        finally:
            self._writing = 0

    def _push(self) -> None:
        """Send what MSG_MORE held back: setting TCP_NODELAY again pushes pending data (Linux tcp(7))."""
        self._corked = False
        try:
            self.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass

    def _write_some(self, buffers: list[Data]) -> list[Data]:
        """Write without blocking; return what did not fit."""
        for index, buffer in enumerate(buffers):
            view = memoryview(buffer)
            while view:
                try:
                    sent = self.socket.send(view)
                except _WOULD_BLOCK:
                    return [view.tobytes()] + buffers[index + 1 :]
                except OSError as exc:
                    self._write_failed(exc)
                    return []
                view = view[sent:]
        return []

    def _wait_writable(self) -> None:
        """Wait until the socket takes more bytes; raise TimeoutError after ``write_timeout`` without any."""
        if self._write_poller is None:
            self._write_poller = select.poll()
            self._write_poller.register(self._fd, select.POLLOUT)
        timeout = None if self.write_timeout is None else int(self.write_timeout * 1000)
        if not self._write_poller.poll(timeout):
            self.logger.info(
                "%s read nothing of ours for %ss: dropping the connection", self.remote_address, self.write_timeout
            )
            raise TimeoutError(f"the peer read nothing for write_timeout={self.write_timeout}s")

    def _write_failed(self, exc: BaseException) -> None:
        self._write_error = exc.with_traceback(None)  # its frames would hold this connection in a cycle
        self.logger.debug("write to %s failed: %s", self.remote_address, exc)
        try:
            self.socket.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        with self._lock:
            self._rearm_locked()

    # --- keepalive (our own timers) ---------------------------------------------------------------

    def _keepalive(self) -> None:
        """Timer thread: send a ping; if its pong does not come within ping_timeout, fail with 1011."""
        if self._terminated or self.protocol.state is not State.OPEN:
            return
        waiter = self._keepalive_waiter
        if waiter is not None and waiter.latency is None:
            return  # still waiting: the timeout timer handles it
        payload = int(time.monotonic_ns() & 0xFFFFFFFF).to_bytes(4, "big")
        with self._proto_lock:
            if self.protocol.state is not State.OPEN:
                return
            self.protocol.send_ping(payload)
            waiter = PongWaiter(payload, self)
            self._pings[payload] = waiter
            self._keepalive_waiter = waiter
        self._flush(blocking=False)
        if self.ping_timeout is not None:
            call_later(self.ping_timeout, lambda: self._keepalive_check(waiter))
        assert self.ping_interval is not None
        self._keepalive_timer = call_later(self.ping_interval, self._keepalive)

    def _keepalive_check(self, waiter: PongWaiter) -> None:
        if waiter.latency is None and not self._terminated:
            self.logger.info("no pong from %s within %ss: closing with 1011", self.remote_address, self.ping_timeout)
            self._fail_now(CloseCode.INTERNAL_ERROR, "keepalive ping timeout")
            self._abort()

    # --- tracing ---------------------------------------------------------------------------------------

    def _trace(self, direction: str, opcode: int, fin: bool, payload: bytes | bytearray | memoryview) -> None:
        preview = bytes(payload[:24])
        self.logger.debug(
            "%s %s %s fin=%d len=%d %r%s",
            self.remote_address,
            direction,
            _OPCODE_NAMES.get(opcode, hex(opcode)),
            fin,
            len(payload),
            preview,
            "…" if len(payload) > 24 else "",
        )


def _encoded(message: Message) -> bytes:
    return message.encode("utf-8") if isinstance(message, str) else message


def _peername(sock: socket.socket) -> Any:
    try:
        return sock.getpeername()
    except OSError:  # already reset by the peer
        return None


_OPCODE_NAMES = {0: "CONT", 1: "TEXT", 2: "BINARY", 8: "CLOSE", 9: "PING", 10: "PONG"}
