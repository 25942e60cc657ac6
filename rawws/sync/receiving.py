"""The read side of one connection: who reads the socket, and the queue of received messages.

Whoever needs data reads: a thread blocked in ``recv()`` (or ``close()``)
reads the socket itself, so the hot path has no thread hop, as long as it
gets one of the reactor's few self-reading slots (:data:`~rawws.sync.reactor.SELF_READERS`).
Otherwise, and whenever nobody is waiting, the socket is *armed* in the shared
:mod:`~rawws.sync.reactor`, which reads it without blocking, so pings are answered
and the peer's close is noticed while a handler is busy, and a waiting handler
sleeps until a whole message is queued. One :class:`ReadState` says which it is.

Bounds. Received messages wait in a queue of at most ``max_queue``; the
protocol parses no further ahead than the queue has room for, so the rest
stays as received bytes (one read) and then in the kernel, and TCP pushes
back on the peer. A message arriving in fragments is one queue item whose
fragments are merged into one buffer. While the peer does not read what is
written to it (:meth:`~rawws.sync.sending.Sender.stuck`), nobody reads from
it either.
"""

from __future__ import annotations

import enum
import logging
import select
import socket
import ssl
import threading
import time
from collections import deque
from collections.abc import Callable, Generator
from typing import Any, NamedTuple

from ..exceptions import ConnectionClosed, InvalidState
from ..protocol import BinaryMessage, CloseReceived, Event, Failure, Fragment, Pong, Protocol, TextMessage
from .reactor import get_reactor
from .sending import WOULD_BLOCK, Message, Sender
from .timers import Deadline, call_later
from .wakegate import Turn

__all__ = ["Receiver", "ReadState", "Hooks"]

READ_SIZE = 65536
SEPARATE_PIECES = 64


class ReadState(enum.Enum):
    """Who is responsible for reading the socket now."""

    IDLE = "idle"  # nobody, for a moment: the next step decides
    ARMED = "armed"  # the reactor watches the socket and reads when it is readable
    READING = "reading"  # one thread (a recv() or close() caller, or the reactor) reads
    PAUSED = "paused"  # max_queue messages wait for the handler: nobody reads until it takes one
    BLOCKED = "blocked"  # the peer does not read what we write: nobody reads until it does
    DONE = "done"  # EOF or an error was seen: there is nothing more to read


class Hooks(NamedTuple):
    """What the read side asks of its connection."""

    fail: Callable[[int, str], None]  # _Fail the WebSocket Connection_ (§7.1.7)
    close_received: Callable[[], None]  # the peer's close frame arrived
    pong: Callable[[bytes, float], None]  # a pong arrived, at that time
    lost: Callable[[BaseException | None], None]  # EOF or a read error: finish the connection
    closing: Callable[[], bool]  # the closing handshake has begun (read even when the queue is full)
    shutdown_write: Callable[[], None]  # the protocol says TCP should close (§7.1.1): FIN after what is queued
    closed_exception: Callable[[], ConnectionClosed]


class Pieces:
    """Queue item: the part of a fragmented message that arrived before recv() took it.

    The first :data:`SEPARATE_PIECES` fragments stay separate (``recv_streaming``
    yields them as they were framed); fragments after those, while this is
    still the newest item, are appended to one buffer. So a message in a
    million 1-byte fragments costs about a megabyte, not a million objects.
    Merged text is kept as UTF-8 (the protocol validated it) and decoded when taken.
    """

    __slots__ = ("text", "chunks", "merged", "last", "first")

    def __init__(self, data: str | bytes, last: bool, first: bool = True) -> None:
        self.text = isinstance(data, str)
        self.chunks = [data]
        self.merged: bytearray | None = None
        self.last = last
        self.first = first  # False: the rest of a message whose start was taken (or dropped) already

    def add(self, data: str | bytes, last: bool) -> None:
        self.last = last
        if self.merged is None:
            if len(self.chunks) < SEPARATE_PIECES:
                self.chunks.append(data)
                return
            self.merged = bytearray()
        self.merged += data.encode("utf-8") if isinstance(data, str) else data

    def values(self) -> list[str | bytes]:
        if self.merged is None:
            return self.chunks
        merged = self.merged.decode("utf-8") if self.text else bytes(self.merged)
        return [*self.chunks, merged]


class Failed:
    """Queue item: the peer broke the protocol after the messages before it."""

    __slots__ = ("code", "reason")

    def __init__(self, code: int, reason: str) -> None:
        self.code = code
        self.reason = reason


class Receiver:
    """Reads one connection's socket and queues what arrives until ``recv()`` takes it."""

    def __init__(
        self,
        sock: socket.socket,
        protocol: Protocol,
        protocol_lock: threading.Lock,
        sender: Sender,
        hooks: Hooks,
        *,
        max_queue: int | None,
        close_timeout: float | None,
        logger: logging.Logger,
        peer: Any,
    ) -> None:
        self.socket = sock
        self.protocol = protocol
        self.max_queue = max_queue
        self.close_timeout = close_timeout
        self.state = ReadState.IDLE
        self.queue: deque[Message | Pieces | Failed] = deque()
        self.reader_thread = 0  # the thread that last called recv(): usually the handler
        self._protocol_lock = protocol_lock
        self._sender = sender
        self._hooks = hooks
        self._logger = logger
        self._peer = peer
        self._fd = sock.fileno()
        self._tls = isinstance(sock, ssl.SSLSocket)
        self._reactor = get_reactor()
        self._lock = threading.Lock()  # guards state and queue
        self._cond: threading.Condition | None = None  # made on first wait: most connections never need one
        self._waiters = 0  # threads in _cond.wait(): notify only when someone listens
        self._recv_mutex = threading.Lock()  # one recv() at a time
        self._stream_owner = 0  # the thread whose recv_streaming() holds _recv_mutex between pieces
        self._stream_generation = 0  # bumped when that stream is abandoned by its own thread
        self._partial: list[Any] = []  # fragments of a message recv() has begun to return
        self._finished = False  # set by finish(): the connection is over and every waiter may leave
        self._reactor_reading = False  # on_readable() is running: its waiters are woken through the gate
        self._turn: Turn | None = None  # the gate's turn this connection's handler was woken with
        self._poller = select.poll()
        self._poller.register(self._fd, select.POLLIN)

    # --- taking messages ------------------------------------------------------------------------

    def recv(self, timeout: float | None) -> Message:
        self.reader_thread = threading.get_ident()
        deadline: Deadline | None = None
        if not self._recv_mutex.acquire(blocking=False):
            deadline = Deadline(timeout)
            self._enter(deadline)
        try:
            if not self._partial:
                # Fast path: a whole message is waiting.
                try:
                    item = self.queue.popleft()
                except IndexError:
                    pass
                else:
                    if type(item) is bytes or type(item) is str:
                        if self.state is ReadState.PAUSED:
                            self.resume()
                        return item
                    self.queue.appendleft(item)
            if deadline is None:
                deadline = Deadline(timeout)
            while True:
                item = self._next_item(deadline)
                if type(item) is Pieces:
                    if not item.first and not self._partial:
                        continue  # the rest of a message recv_streaming() abandoned: discarded
                    self._partial.extend(item.values())
                    if item.last:
                        parts, self._partial = self._partial, []
                        return "".join(parts) if isinstance(parts[0], str) else b"".join(parts)
                    continue
                return item  # type: ignore[return-value]
        finally:
            self._recv_mutex.release()

    def recv_streaming(self, timeout: float | None) -> Generator[Message, None, None]:
        """The next message piece by piece; see :meth:`rawws.sync.connection.Connection.recv_streaming`.

        While the message is unfinished the generator holds ``_recv_mutex``
        between pieces, so another thread's ``recv()`` waits (up to its
        timeout) for the message to end. If the generator is closed (``break``,
        an exception, garbage collection), or the thread that owns it calls
        ``recv()`` or ``recv_streaming()`` again, the message is abandoned:
        what is left of it is discarded as it arrives (queue items marked as
        continuations), and the next message is returned. The abandoned
        generator, if resumed, raises :class:`InvalidState`.
        """
        deadline = Deadline(timeout)
        self._enter(deadline)
        generation = self._stream_generation
        owner = threading.get_ident()
        held = True
        try:
            if self._partial:
                raise InvalidState("recv() timed out inside a fragmented message; call recv() to finish it")
            started = False
            while True:
                item = self._next_item(deadline)
                if type(item) is Pieces:
                    if not item.first and not started:
                        continue  # the rest of an earlier abandoned message: discarded
                    started = True
                    values = item.values()
                    for index, value in enumerate(values):
                        if item.last and index == len(values) - 1:
                            self._recv_mutex.release()  # the message is complete: give recv() back first
                            held = False
                            yield value
                            return
                        self._stream_owner = owner
                        yield value
                        if self._stream_generation != generation:
                            held = False  # our thread took over in recv(): the mutex is no longer ours
                            raise InvalidState("this recv_streaming() message was abandoned: its rest was discarded")
                        self._stream_owner = 0
                else:
                    self._recv_mutex.release()
                    held = False
                    yield item  # type: ignore[misc]
                    return
        finally:
            if held and self._stream_generation == generation:
                self._stream_owner = 0
                self._recv_mutex.release()

    def _enter(self, deadline: Deadline) -> None:
        """Take ``_recv_mutex``, within the deadline; from this thread's own unfinished stream, take it over."""
        if self._stream_owner and self._stream_owner == threading.get_ident():
            # This thread left a recv_streaming() message unfinished and calls again: the message is
            # abandoned (its rest is discarded) and the mutex, held for that stream, passes to this call.
            self._stream_owner = 0
            self._stream_generation += 1
            return
        remaining = deadline.remaining()
        if not self._recv_mutex.acquire(timeout=-1 if remaining is None else max(0.0, remaining)):
            raise TimeoutError("no message within the timeout (another thread is receiving a streamed message)")

    def _next_item(self, deadline: Deadline) -> Message | Pieces:
        queue = self.queue
        while True:
            failure: Failed | None = None
            with self._lock:
                if queue:
                    item = queue.popleft()
                    if self.state is ReadState.PAUSED:
                        self._rearm_locked()
                    if type(item) is not Failed:
                        return item  # type: ignore[return-value]
                    failure = item
                elif self._finished:
                    raise self._hooks.closed_exception()
            if failure is not None:
                self._hooks.fail(failure.code, failure.reason)
                continue
            if not self.wait_for(lambda: bool(queue) or self._finished, deadline):
                raise TimeoutError("no message within the timeout")

    # --- waiting, and reading while we wait -------------------------------------------------------

    def wait_for(self, predicate: Callable[[], bool], deadline: Deadline) -> bool:
        """Wait until ``predicate()`` holds, reading the socket ourselves when nobody else is."""
        if self._turn is not None:  # back from a turn the reactor's gate gave us: pass it on
            with self._lock:
                turn, self._turn = self._turn, None
            if turn is not None:
                self._reactor.gate.end(turn)
        while True:
            with self._lock:
                while True:
                    if predicate():
                        return True
                    remaining = deadline.remaining()
                    if remaining is not None and remaining <= 0:
                        return False
                    state = self.state
                    if state is ReadState.PAUSED or (
                        state in (ReadState.IDLE, ReadState.ARMED) and self._reactor.take_read_slot()
                    ):
                        if state is ReadState.ARMED:
                            self._reactor.disarm(self._fd)
                        self.state = ReadState.READING
                        holds_slot = state is not ReadState.PAUSED
                        break
                    if state is ReadState.IDLE:
                        self._rearm_locked()  # let the reactor read for us
                    if self._sender.corked:
                        self._sender.push()
                    if self._cond is None:
                        self._cond = threading.Condition(self._lock)
                    if self._turn is not None:  # woken, but not for this: back to waiting, the turn is over
                        self._reactor.gate.end_soon(self._turn)
                        self._turn = None
                    self._waiters += 1
                    try:
                        self._cond.wait(remaining)
                    finally:
                        self._waiters -= 1
                    if self._turn is not None:
                        self._reactor.gate.start(self._turn)  # woken by the reactor, and running
            try:
                self._read(predicate, deadline)
            finally:
                if holds_slot:
                    self._reactor.give_read_slot()
                self._stop_reading()

    def _read(self, predicate: Callable[[], bool] | None, deadline: Deadline | None) -> None:
        """Read and process until ``predicate()`` holds, the deadline passes or the socket is done.

        With no predicate (the reactor's call), read only what is there now, never waiting.
        """
        sock = self.socket
        protocol = self.protocol
        while predicate is None or not predicate():
            if protocol.input_waiting:
                self.process(b"")  # whole frames left unparsed while the queue was full
                if predicate is None:
                    break
                continue
            if self._sender.stuck() or (predicate is None and not self._room()):
                return  # see _rearm_locked
            try:
                data = sock.recv(READ_SIZE)
            except WOULD_BLOCK:
                if predicate is None:
                    return
                if self._sender.corked:
                    self._sender.push()
                assert deadline is not None
                if deadline.expired():
                    return
                self._poller.poll(deadline.poll_ms())
                continue
            except OSError as exc:
                self._lost(exc)
                return
            if self._tls and data:
                while sock.pending():  # type: ignore[attr-defined]
                    data += sock.recv(READ_SIZE)
            if not data:
                self._lost(None)
                return
            self.process(data)
            if predicate is None and not (self._tls and sock.pending()):  # type: ignore[attr-defined]
                return

    def on_readable(self) -> None:
        """Reactor (or timer) callback: read what is there, without blocking."""
        with self._lock:
            if self.state is not ReadState.ARMED:
                return  # someone took over, or we are done
            self.state = ReadState.READING
        self._reactor_reading = True
        try:
            self._read(None, None)
        finally:
            self._reactor_reading = False
            with self._lock:
                if self.state is ReadState.READING:
                    self.state = ReadState.IDLE
                    self._rearm_locked()
                # Only a queued message (or failure marker) is worth a turn: a pong or a ping answered
                # changes nothing a waiter waits for (the end of the connection wakes it through finish()).
                wake = bool(self._waiters) and self._cond is not None and bool(self.queue)
        if wake:
            self._reactor.gate.wake(self._wake_waiter)

    def _wake_waiter(self, turn: Turn) -> bool:
        """The gate's go-ahead: wake the thread waiting for what the reactor read, for one turn."""
        with self._lock:
            if not self._waiters or self._cond is None:
                return False
            self._cond.notify_all()
            if self._turn is not None:
                return False  # woken already and not yet running: one turn at a time per connection
            self._turn = turn
            return True

    def _stop_reading(self) -> None:
        """Give up the read side: hand the socket back to the reactor and wake any waiter."""
        with self._lock:
            if self.state is ReadState.READING:
                self.state = ReadState.IDLE
                self._rearm_locked()
            if self._waiters and self._cond is not None:
                self._cond.notify_all()

    def _lost(self, exc: BaseException | None) -> None:
        with self._lock:
            self.state = ReadState.DONE
        self._hooks.lost(exc)

    def _room(self) -> bool:
        return self.max_queue is None or len(self.queue) < self.max_queue or self._hooks.closing()

    def rearm(self) -> None:
        """Re-decide who reads (after the queue drained, a flush ended or closing began)."""
        with self._lock:
            self._rearm_locked()
            if self._waiters and self._cond is not None:
                self._cond.notify_all()

    resume = rearm

    def _rearm_locked(self) -> None:
        """With ``_lock`` held and nobody reading: watch the socket in the reactor unless paused."""
        if self.state in (ReadState.READING, ReadState.ARMED, ReadState.DONE):
            return
        if not self._room():
            self.state = ReadState.PAUSED
            return
        if self._sender.stuck():
            self.state = ReadState.BLOCKED
            return
        self.state = ReadState.ARMED
        if self.protocol.input_waiting:
            call_later(0, self.on_readable)  # whole frames may wait in the parser: no readiness event will come
        else:
            self._reactor.arm(self._fd, self.on_readable)

    # --- processing ---------------------------------------------------------------------------

    def process(self, data: bytes) -> None:
        """Feed received bytes to the protocol and act on the events (reading owner only).

        The protocol parses at most as many messages as the queue has room for;
        the rest waits in its buffer (``protocol.input_waiting``).
        """
        budget = None if self.max_queue is None else max(1, self.max_queue - len(self.queue))
        with self._protocol_lock:
            events = self.protocol.receive_data(data, max_messages=budget)
            pending_output = self.protocol.output_size > 0
        if events:
            self._handle_events(events)
        if pending_output:
            self._sender.flush(blocking=False)
        if self.protocol.should_close_tcp:
            self._hooks.shutdown_write()

    def _handle_events(self, events: list[Event]) -> None:
        fail_at_once: tuple[int, str] | None = None
        queue = self.queue
        # Closing, rawws keeps reading to see the peer's close frame even with a full queue; data
        # the peer sends after our close frame goes past max_queue, so it is dropped (§5.5.1 lets
        # an endpoint stop processing data once it sent its close frame), not queued without bound.
        full = self.max_queue is not None and len(queue) >= self.max_queue and self._hooks.closing()
        with self._lock:
            for event in events:
                kind = type(event)
                if kind is BinaryMessage or kind is TextMessage:
                    if not full:
                        queue.append(event.data)  # type: ignore[union-attr]
                elif kind is Fragment:
                    if not full:
                        self._queue_fragment(event)  # type: ignore[arg-type]
                elif kind is Pong:
                    self._hooks.pong(event.data, time.monotonic())  # type: ignore[union-attr,arg-type]
                elif kind is CloseReceived:
                    self._hooks.close_received()
                elif kind is Failure:
                    error = event.error  # type: ignore[union-attr]
                    self._logger.info("failing connection %s: %s", self._peer, error)
                    if queue:
                        # Deliver what came before the violation first: recv() fails the
                        # connection when it reaches this marker (or a timer does, if nobody reads).
                        queue.append(Failed(error.close_code, str(error)))
                        call_later(
                            self.close_timeout or 10.0, _failing_later(self._hooks.fail, error.close_code, str(error))
                        )
                    else:
                        fail_at_once = (error.close_code, str(error))
                # Ping: the protocol has queued the pong already.
            if self._waiters and self._cond is not None and not self._reactor_reading:
                self._cond.notify_all()
        if fail_at_once is not None:
            self._hooks.fail(*fail_at_once)

    def _queue_fragment(self, fragment: Fragment) -> None:
        """With ``_lock`` held: append a fragment to the newest unfinished piece, or start one."""
        queue = self.queue
        if not fragment.first and queue:
            tail = queue[-1]
            if type(tail) is Pieces and not tail.last:
                tail.add(fragment.data, fragment.last)
                return
        queue.append(Pieces(fragment.data, fragment.last, fragment.first))

    def detach(self, closed_exception: Callable[[], ConnectionClosed]) -> None:
        """The connection is over: keep only what ``recv()`` still needs, so no reference cycle is left."""
        self._hooks = Hooks(_ignore, _ignore, _ignore, _ignore, _closing_now, _ignore, closed_exception)

    def finish(self) -> None:
        """The connection is over: wake every waiter; recv() raises once the queue is drained."""
        with self._lock:
            self.state = ReadState.DONE
            self._finished = True
            if self._cond is not None:
                self._cond.notify_all()

    def forget(self) -> None:
        """Stop watching the socket (before it is closed)."""
        self._reactor.forget(self._fd)


def _ignore(*args: object) -> None:
    pass


def _closing_now() -> bool:
    return True


def _failing_later(fail: Callable[[int, str], None], code: int, reason: str) -> Callable[[], None]:
    return lambda: fail(code, reason)
