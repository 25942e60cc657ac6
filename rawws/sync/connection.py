"""The threaded connection: a :class:`~rawws.protocol.Protocol` driven over a socket.

Shared by the server and the client. The socket is non-blocking; rawws does
its own waiting so that reading, writing and closing can happen on different
threads without any of them holding another up. A :class:`Connection` is
three parts with one job each, and the closing handshake that ties them:

- :class:`~rawws.sync.receiving.Receiver`: who reads the socket (the thread
  waiting in ``recv()``, or the shared reactor), the queue of received
  messages, and its bounds;
- :class:`~rawws.sync.sending.Sender`: encoding and writing, in protocol
  order, blocking (``send``) or not (``send_nowait``, control frames);
- :class:`~rawws.sync.keepalive.Keepalive`: pings waiting for their pong,
  and the keepalive timer.

Bounds (what one peer can make a connection hold): at most ``max_queue``
received messages plus the one being assembled (each at most ``max_size``,
however it is fragmented), one read of unparsed bytes, one pong owed, and
``write_limit`` bytes queued behind a stuck write before reading from that
peer stops; a peer that takes nothing for ``write_timeout`` seconds is
dropped. The README's "Limits and defences" lists them all.

Lock order: a thread that holds several takes them in this order, never the
other way round: ``Receiver._recv_mutex`` → ``Sender._send_mutex`` →
``Sender._write_lock`` → the protocol lock → ``Receiver._lock`` → the timer
thread's lock. (``Sender._flushers_lock`` guards one counter and is never
held while taking another.)
"""

from __future__ import annotations

import codecs
import logging
import socket
import threading
from collections.abc import Callable, Generator, Iterable, Iterator, Mapping, Sequence
from collections.abc import Set as AbstractSet
from typing import Any

from ..dissect import trace_line
from ..exceptions import ClosedBy, ConnectionClosed, ConnectionClosedError, ConnectionClosedOK
from ..frames import CloseCode, Data, serialize_close
from ..http11 import Request, Response
from ..protocol import PreparedMessage, Protocol, State
from .keepalive import Keepalive, PongWaiter
from .options import ConnectionOptions
from .receiving import Hooks, Receiver
from .sending import ACCEPTED, Message, Sender, fragment_kind
from .timers import Deadline, Timer, call_later

__all__ = ["Connection", "PongWaiter", "Message", "ClosedBy", "frame_tracer", "BinaryNotUTF8"]


class BinaryNotUTF8(UnicodeDecodeError):
    """``recv(decode=True)`` got a binary message that is not UTF-8 text.

    The message is not lost: :attr:`message` holds its bytes, exactly as
    ``recv()`` (or ``recv(decode=False)``) would have returned them. It is a
    :class:`UnicodeDecodeError`, hence a :class:`ValueError`.
    """

    def __init__(self, message: bytes, error: UnicodeDecodeError) -> None:
        super().__init__(error.encoding, error.object, error.start, error.end, error.reason)
        self.message = message

    def __str__(self) -> str:
        return (
            f"the binary message ({len(self.message)} bytes) is not UTF-8 ({self.reason} at byte {self.start}),"
            " so decode=True cannot make it str; its bytes are this error's .message"
            " (recv() without decode returns binary messages as bytes)"
        )


_OK_CODES = frozenset({CloseCode.NORMAL_CLOSURE, CloseCode.GOING_AWAY, CloseCode.NO_STATUS_RCVD})


class Connection:
    """An open WebSocket connection (server or client side). Thread-safe.

    Use :meth:`recv` or iterate to receive, :meth:`send` to send, :meth:`ping`
    for a round trip and :meth:`close` to end it. :attr:`request`,
    :attr:`response` and :attr:`subprotocol` are the opening handshake's;
    :attr:`local_address` and :attr:`remote_address` the socket's;
    :attr:`close_code` and :attr:`close_reason` the peer's close frame.

    ``protocol`` must have been made with ``fragment_events=True`` and
    ``defer_failure=True`` (the server and the client do so).
    """

    def __init__(
        self,
        sock: socket.socket,
        protocol: Protocol,
        *,
        request: Request,
        response: Response,
        subprotocol: str | None = None,
        options: ConnectionOptions | None = None,
        logger: logging.Logger | None = None,
        leftover: bytes = b"",
        remote_address: Any = None,
    ) -> None:
        if not (protocol.fragment_events and protocol.defer_failure):
            raise ValueError("Connection needs a Protocol made with fragment_events=True, defer_failure=True")
        self.socket = sock
        self.protocol = protocol
        self._request = request
        self._response = response
        self._subprotocol = subprotocol
        self.options = options = options or ConnectionOptions()
        self.close_timeout = options.close_timeout
        self.logger = logger or logging.getLogger("rawws")
        self._local_address: Any = sock.getsockname()
        self._remote_address: Any = remote_address if remote_address is not None else _peername(sock)
        self._protocol_lock = threading.Lock()
        self._closed_by: ClosedBy | None = None
        self._close_timer: Timer | None = None
        self._aborted = False
        self._terminated = False
        peer = self.remote_address
        self._sender = Sender(
            sock,
            protocol,
            self._protocol_lock,
            write_limit=options.write_limit,
            write_timeout=options.write_timeout,
            closed_exception=self._closed_exception,
            on_write_error=self._write_failed,
            on_flushed=self._flushed,
            on_broken_message=self._broken_message,
            logger=self.logger,
            peer=peer,
        )
        self._keepalive = Keepalive(
            protocol,
            self._protocol_lock,
            interval=options.ping_interval,
            timeout=options.ping_timeout,
            send_ping=lambda: self._sender.flush(blocking=False),
            fail=self._fail_silent_peer,
            closed_exception=self._closed_exception,
            logger=self.logger,
            peer=peer,
        )
        hooks = Hooks(
            fail=self._fail_now,
            close_received=self._close_received,
            pong=self._keepalive.pong_received,
            lost=self._connection_lost,
            closing=self._closing,
            shutdown_write=self._shutdown_write,
            closed_exception=self._closed_exception,
        )
        self._receiver = Receiver(
            sock,
            protocol,
            self._protocol_lock,
            self._sender,
            hooks,
            max_queue=options.max_queue,
            close_timeout=options.close_timeout,
            logger=self.logger,
            peer=peer,
        )
        # Hot-path shortcuts (send() runs once per message).
        self._send_message = self._sender.send_message
        self._received = self._receiver.queue
        self._can_cork = self._sender.can_cork
        sock.setblocking(False)
        if leftover:
            self._receiver.process(leftover)
        self._receiver.rearm()
        self._keepalive.start()

    # --- the handshake and the socket ----------------------------------------------------------

    @property
    def request(self) -> Request:
        """The opening handshake's request: ``request.path`` (with the query), ``request.headers["Origin"]``, …"""
        return self._request

    @property
    def response(self) -> Response:
        """The opening handshake's response (the 101 Switching Protocols and its headers)."""
        return self._response

    @property
    def subprotocol(self) -> str | None:
        """The subprotocol the handshake chose (``Sec-WebSocket-Protocol``), or None."""
        return self._subprotocol

    @property
    def remote_address(self) -> Any:
        """The peer's socket address, e.g. ``("127.0.0.1", 52314)`` (None if it was gone at once)."""
        return self._remote_address

    @property
    def local_address(self) -> Any:
        """This end's socket address, e.g. ``("127.0.0.1", 8765)``."""
        return self._local_address

    # --- settings, state ------------------------------------------------------------------------

    @property
    def max_queue(self) -> int | None:
        """Received messages that may wait for :meth:`recv` before reading stops."""
        return self._receiver.max_queue

    @property
    def ping_interval(self) -> float | None:
        return self._keepalive.interval

    @property
    def ping_timeout(self) -> float | None:
        return self._keepalive.timeout

    @property
    def write_limit(self) -> int | None:
        return self._sender.write_limit

    @property
    def write_timeout(self) -> float | None:
        return self._sender.write_timeout

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

    @property
    def closed(self) -> bool:
        """Whether the connection is completely closed (TCP included)."""
        return self._terminated

    # --- receiving ------------------------------------------------------------------------------

    def recv(self, timeout: float | None = None, decode: bool | None = None) -> Message:
        """The next message: ``str`` for text, ``bytes`` for binary.

        ``decode=False`` returns a text message as its UTF-8 ``bytes``;
        ``decode=True`` returns a binary message as ``str``; one that is not
        UTF-8 raises :class:`BinaryNotUTF8` (a :class:`UnicodeDecodeError`)
        whose ``.message`` holds the bytes: the message is taken, not lost,
        and the next ``recv`` returns the next one. Raises :class:`TimeoutError` if
        none arrives within ``timeout`` seconds (the connection stays usable),
        and :class:`ConnectionClosed` once the connection is closed and every
        message received before has been returned.
        """
        message = self._receiver.recv(timeout)
        return message if decode is None else _decoded(message, decode)

    def recv_streaming(self, timeout: float | None = None, decode: bool | None = None) -> Iterator[Message]:
        """Yield the next message piece by piece, as its frames arrive (§5.4).

        Each piece is ``str`` for a text message or ``bytes`` for a binary
        one (``decode`` converts as in :meth:`recv`); a message that was not
        fragmented comes as a single piece. When more than 64 fragments pile
        up before you take them, the later ones come merged into one piece
        (§5.4 lets intermediaries re-fragment anyway). Use this for messages
        too large to hold at once.

        ``max_size`` still applies to the whole message, summed over its
        pieces: past it the connection is closed with 1009. To stream larger
        messages, connect or serve with a larger ``max_size`` (or None for no
        limit) — for one upload endpoint, a second ``serve()`` on its own port
        with its own ``max_size`` keeps the small limit everywhere else.

        Stopping part-way (``break``, an exception, closing the generator, or
        calling :meth:`recv` or ``recv_streaming`` again from the same thread)
        abandons the message: the rest of it is discarded as it arrives, and
        the next call returns the next message — never a message's tail. While
        a thread holds an unfinished stream, another thread's :meth:`recv`
        waits for it to end, up to its own ``timeout``.
        """
        pieces = self._receiver.recv_streaming(timeout)
        if decode is None:
            return pieces
        return _decoded_pieces(pieces, decode)

    def __iter__(self) -> Iterator[Message]:
        """Iterate over messages; ends quietly on a normal close (1000/1001)."""
        while True:
            try:
                yield self.recv()
            except ConnectionClosedOK:
                return

    # --- sending --------------------------------------------------------------------------------

    def send(self, message: Message | bytearray | memoryview | Iterable[Message], text: bool | None = None) -> None:
        """Send one message: ``str`` as text, bytes-like as binary.

        An iterable of ``str`` (or of bytes-like) sends one fragmented message,
        a frame per item (§5.4); a generator is streamed, each piece sent as it
        is produced (see :meth:`Sender.send_fragments
        <rawws.sync.sending.Sender.send_fragments>`). Anything else — a ``dict``, a ``set``, a
        number, an iterable mixing ``str`` and bytes — raises
        :class:`TypeError` (to send JSON, ``send(json.dumps(obj))``).

        ``text=True`` sends bytes-like data as a text frame (it must be UTF-8:
        :class:`ValueError` otherwise), ``text=False`` sends ``str`` as a
        binary frame (UTF-8 encoded); the default chooses by type.

        Any number of threads may send at once; messages never interleave.
        Returns once the bytes are written, or raises :class:`ConnectionClosed`.
        """
        if text is not None and type(text) is not bool:
            raise TypeError(f"send(text=...) takes True, False or None, not {type(text).__name__} {text!r}")
        if isinstance(message, (str, bytes, bytearray, memoryview)):
            if text is not None and isinstance(message, str) != text:
                message = _convert_for_sending(message, text)
            # Replying to a backlog of received messages: more replies will most likely follow at once.
            queue = self._received
            more = bool(queue and self._can_cork and threading.get_ident() == self._receiver.reader_thread)
            self._send_message(message, more)
        elif isinstance(message, Iterable) and not isinstance(message, (Mapping, AbstractSet)):
            if isinstance(message, Sequence):
                kind = None
                for piece in message:  # a list or tuple is checked whole, before anything is sent
                    kind = fragment_kind(piece, kind)
            self._sender.send_fragments(message, text)
        else:
            what = " (a mapping)" if isinstance(message, Mapping) else ""
            what = " (a set)" if isinstance(message, AbstractSet) else what
            raise TypeError(f"cannot send {type(message).__name__}{what}: {ACCEPTED}; for JSON, send(json.dumps(...))")

    def send_nowait(self, message: Message, *, prepared: PreparedMessage | None = None) -> None:
        """Queue one message and write whatever the socket takes now, without waiting for the peer.

        What does not fit is written by a background flush, in order; watch
        :attr:`buffered_amount` to bound it and set :attr:`on_drain` to hear
        when it is all written (a slow-consumer policy needs both). Raises
        :class:`ConnectionClosed` if the connection is closed. If another
        thread is in the middle of a fragmented message, this waits for it.
        ``prepared`` is ``message`` already framed by
        :func:`rawws.protocol.prepare_message`, for a connection whose
        ``protocol.can_send_prepared`` holds (what :func:`rawws.broadcast` uses).
        """
        self._sender.enqueue((message,), prepared, write=True)

    def send_many_nowait(self, messages: Sequence[Message | PreparedMessage], *, write: bool = True) -> None:
        """:meth:`send_nowait` for several messages at once: one write for all of them.

        With ``write=False`` the messages are only queued, in order; a later
        :meth:`flush_nowait` (or any send) writes them. That lets a caller
        order messages under its own lock and do the system call outside it.
        A message may be a :class:`~rawws.protocol.PreparedMessage` (framed
        once for many connections) where ``protocol.can_send_prepared`` holds.
        """
        self._sender.enqueue(messages, None, write=write)

    def flush_nowait(self) -> None:
        """Write what is queued as far as the socket takes it now; a background flush does the rest."""
        self._sender.flush(blocking=False)

    @property
    def buffered_amount(self) -> int:
        """Bytes accepted by send but not yet written to the socket (like the browser's ``bufferedAmount``)."""
        return self._sender.buffered_amount

    @property
    def on_drain(self) -> Callable[[], Any] | None:
        """Called (on a background thread) when a backlog left by send_nowait has been written."""
        return self._sender.on_drain

    @on_drain.setter
    def on_drain(self, callback: Callable[[], Any] | None) -> None:
        self._sender.on_drain = callback

    def ping(self, data: bytes | str | None = None) -> PongWaiter:
        """Send a ping and return a :class:`PongWaiter` for its pong (§5.5.2).

        Without ``data``, a unique 4-byte payload is chosen.
        """
        if isinstance(data, str):
            data = data.encode("utf-8")
        with self._protocol_lock:
            self._sender.check_sendable()
            waiter = self._keepalive.register(data)
        self._sender.flush(blocking=True)
        self._sender.raise_if_failed()
        return waiter

    def pong(self, data: bytes = b"") -> None:
        """Send an unsolicited pong (a one-way heartbeat, §5.5.3)."""
        with self._protocol_lock:
            self._sender.check_sendable()
            self.protocol.send_pong(data)
        self._sender.flush(blocking=True)
        self._sender.raise_if_failed()

    # --- closing --------------------------------------------------------------------------------

    def close(self, code: int = CloseCode.NORMAL_CLOSURE, reason: str = "") -> None:
        """Run the closing handshake (§7.1.2) and wait, up to ``close_timeout``, for it to end.

        ``code`` must be one a close frame may carry (RFC 6455 §7.4): 1000-1003,
        1007-1014 or 3000-4999; any other (1005, 1006, 1015, 1004, …) raises
        :class:`ValueError`, as does a reason over 123 bytes of UTF-8.
        Idempotent; safe from any thread. Messages that arrived before the
        close stay available to :meth:`recv`.
        """
        _check_close_arguments(code, reason)
        serialize_close(code, reason)  # ValueError for a code that may not be sent, open or not
        self.start_closing(code, reason, wait_for_write=True)
        self._receiver.wait_for(lambda: self._terminated, Deadline(self.close_timeout))
        if not self._terminated:
            self._abort()
            self._receiver.wait_for(lambda: self._terminated, Deadline(1.0))

    def start_closing(
        self, code: int = CloseCode.NORMAL_CLOSURE, reason: str = "", wait_for_write: bool = False
    ) -> None:
        """Send the close frame and return without waiting for the peer's answer.

        The closing handshake then completes in the background (the reader sees
        the peer's close frame), bounded by ``close_timeout``.
        """
        _check_close_arguments(code, reason)
        serialize_close(code, reason)  # ValueError for a code that may not be sent, open or not
        with self._protocol_lock:
            if self.protocol.state is not State.OPEN or self._terminated:
                return
            self.protocol.send_close(code, reason)
            if self._closed_by is None:
                self._closed_by = ClosedBy.LOCAL
        self._start_close_timer()
        self._sender.flush(blocking=wait_for_write)
        self._receiver.rearm()  # a paused reader must resume to see the answer

    def wait_closed(self, timeout: float | None = None) -> bool:
        """Block until the TCP connection is closed (True) or ``timeout`` passes (False)."""
        return self._receiver.wait_for(lambda: self._terminated, Deadline(timeout))

    def __enter__(self) -> Connection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.remote_address!r} {self.protocol.state.name}>"

    def _closing(self) -> bool:
        return self._aborted or self.protocol.close_sent is not None or self.protocol.state is not State.OPEN

    def _close_received(self) -> None:
        if self._closed_by is None:
            self._closed_by = ClosedBy.REMOTE
        self._start_close_timer()

    def _fail_now(self, code: int, reason: str) -> None:
        """_Fail the WebSocket Connection_ (§7.1.7): close frame, then close TCP."""
        with self._protocol_lock:
            if self._terminated or self.protocol.should_close_tcp and self.protocol.close_sent is not None:
                return
            if self._closed_by is None:
                self._closed_by = ClosedBy.LOCAL
            self.protocol.fail(code, reason[:100])
        self._sender.flush(blocking=False)
        self._shutdown_write()
        self._start_close_timer()

    def _fail_silent_peer(self, code: int, reason: str) -> None:
        """Keepalive: the peer did not answer; its socket may be full, so do not wait to say so."""
        self._fail_now(code, reason)
        self._abort()

    def _start_close_timer(self) -> None:
        if self._close_timer is None and self.close_timeout is not None and not self._terminated:
            self._close_timer = call_later(self.close_timeout, self._abort)

    def _shutdown_write(self) -> None:
        """Send FIN after everything queued (§7.1.1: the server closes TCP first).

        The write lock's holder sends it once its bytes are out (see the Sender).
        """
        self._start_close_timer()
        self._sender.flush(blocking=False)

    def _abort(self) -> None:
        """Drop the TCP connection now: wakes every thread blocked on the socket."""
        if self._terminated:
            return
        self._aborted = True
        try:
            self.socket.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._receiver.rearm()  # someone must read the EOF and finish up

    def _write_failed(self) -> None:
        self._receiver.rearm()  # the socket is shut down: someone must read the EOF

    def _broken_message(self) -> None:
        """A fragmented send stopped half-way: no message may follow it (§5.4), so the connection ends."""
        self.logger.info("%s: a fragmented message could not be finished: failing with 1011", self.remote_address)
        self._fail_now(CloseCode.INTERNAL_ERROR, "a fragmented message could not be finished")

    def _flushed(self) -> None:
        self._receiver.rearm()  # reading may have waited for this flush (see Sender.stuck)

    def _connection_lost(self, exc: BaseException | None) -> None:
        """The reading side saw EOF or an error: finish the connection (reading owner only)."""
        if exc is not None:
            self.logger.debug("connection %s lost: %s", self.remote_address, exc)
        with self._protocol_lock:
            self.protocol.receive_eof()
        if self._close_timer is not None:
            self._close_timer.cancel()
            self._close_timer = None  # it holds a bound method: no cycle left behind
        self._keepalive.stop()
        self._receiver.forget()
        try:
            self.socket.shutdown(socket.SHUT_RDWR)  # wakes a writer waiting for buffer space
        except OSError:
            pass
        self._sender.close_socket()
        self._terminated = True
        # From now on the connection's state is final: its parts get a cycle-free way to say so, and
        # let go of the connection, so that unread messages are freed with it, not by the cyclic GC.
        closed = _final(self._closed_exception())
        self._receiver.detach(closed)
        self._sender.detach(closed)
        self._keepalive.detach(closed)
        self._receiver.finish()

    def _closed_exception(self) -> ConnectionClosed:
        received = self.protocol.close_received
        sent = self.protocol.close_sent
        code, reason = received if received is not None else (CloseCode.ABNORMAL_CLOSURE, "")
        ok = received is not None and code in _OK_CODES and (sent is None or sent[0] in _OK_CODES)
        cls = ConnectionClosedOK if ok else ConnectionClosedError
        if received is None and sent is None:
            closed_by = ClosedBy.ABNORMAL
        else:
            closed_by = self._closed_by or ClosedBy.ABNORMAL
        return cls(
            code,
            reason,
            sent_code=sent[0] if sent else None,
            sent_reason=sent[1] if sent else None,
            closed_by=closed_by,
        )


def _check_close_arguments(code: object, reason: object) -> None:
    """TypeError for a close code that is not an int, or a reason that is not a str."""
    if type(code) is not int and not isinstance(code, CloseCode):
        raise TypeError(f"close(code=...) takes an int close code such as 1000, not {type(code).__name__} {code!r}")
    if not isinstance(reason, str):
        raise TypeError(f"close(reason=...) takes a str, not {type(reason).__name__}")


def _convert_for_sending(message: str | bytes | bytearray | memoryview, text: bool) -> str | bytes:
    """``send(text=...)``: bytes-like data as text (checked to be UTF-8), or ``str`` as binary."""
    if not text:
        return message.encode("utf-8")  # type: ignore[union-attr]
    try:
        return str(message, "utf-8")  # type: ignore[arg-type]
    except UnicodeDecodeError as exc:
        raise ValueError(f"text=True needs UTF-8 data: {exc.reason} at byte {exc.start}") from None


def _decoded(message: Message, decode: bool | None) -> Message:
    """``recv(decode=...)``: text as bytes (False), binary as text (True, must be UTF-8), or as it came."""
    if decode is None or isinstance(message, str) == decode:
        return message
    if isinstance(message, str):
        return message.encode("utf-8")
    try:
        return message.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BinaryNotUTF8(message, exc) from None


def _decoded_pieces(pieces: Generator[Message, None, None], decode: bool) -> Iterator[Message]:
    """``recv_streaming(decode=...)``: like :func:`_decoded`, piece by piece (UTF-8 may span pieces)."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    try:
        for piece in pieces:
            if isinstance(piece, str) == decode:
                yield piece
            elif isinstance(piece, str):
                yield piece.encode("utf-8")
            else:
                yield decoder.decode(piece)
        if not decode:
            return
        decoder.decode(b"", True)  # a message that ends inside a character raises here
    finally:
        pieces.close()


def _final(exception: ConnectionClosed) -> Callable[[], ConnectionClosed]:
    """A factory of fresh copies of ``exception`` (raising one object twice would chain tracebacks)."""
    cls, code, reason = type(exception), exception.code, exception.reason
    sent_code, sent_reason, closed_by = exception.sent_code, exception.sent_reason, exception.closed_by
    return lambda: cls(code, reason, sent_code=sent_code, sent_reason=sent_reason, closed_by=closed_by)


def frame_tracer(logger: logging.Logger, peer: Any) -> Callable[[str, int, bool, Data], None]:
    """A ``Protocol(trace=...)`` callback that logs every frame at DEBUG level, one line each.

    The line is :func:`rawws.dissect.trace_line`'s, the form ``python -m rawws decode`` uses.
    """

    def trace(direction: str, opcode: int, fin: bool, payload: Data) -> None:
        logger.debug("%s %s %s", peer, direction, trace_line(opcode, fin, payload))

    return trace


def _peername(sock: socket.socket) -> Any:
    try:
        return sock.getpeername()
    except OSError:  # already reset by the peer
        return None
