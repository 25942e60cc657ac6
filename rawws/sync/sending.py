"""The write side of one connection: encode under the protocol lock, write under the write lock.

Bytes reach the wire in the order the protocol produced them. A blocking
writer (``send``) writes its own bytes and whatever was queued before them.
A non-blocking flush (``send_nowait``, control frames produced while reading)
writes what the socket takes now and leaves the rest to a short-lived
background thread, so that a reader never waits for a writer. While such a
background flush runs, the socket is full: the peer is not reading.

Bounds: the background flush, and any blocked ``send()``, gives up when the
socket takes no byte for ``write_timeout`` seconds (the connection is then
dropped). :meth:`Sender.stuck` tells the reader when to stop reading from a
peer that does not read (see :mod:`rawws.sync.receiving`).
"""

from __future__ import annotations

import codecs
import logging
import select
import socket
import ssl
import threading
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Union

from ..exceptions import ConnectionClosed
from ..frames import Data, Opcode
from ..protocol import PreparedMessage, Protocol, State

__all__ = ["Sender", "Message", "WOULD_BLOCK", "ACCEPTED", "fragment_kind"]

Message = Union[str, bytes]

MSG_MORE: int = getattr(socket, "MSG_MORE", 0)
ACCEPTED = (
    "send() takes str (a text message), a bytes-like object (a binary message), "
    "or an iterable of all-str or all-bytes-like fragments (one fragmented message)"
)

WOULD_BLOCK = (BlockingIOError, InterruptedError, ssl.SSLWantReadError, ssl.SSLWantWriteError)


class Sender:
    """Writes one connection's frames.

    ``closed_exception()`` builds the exception to raise once the connection
    cannot send; ``on_write_error()`` is called after a write failed (the
    socket is shut down by then); ``on_flushed()`` after a background flush
    ends; ``on_broken_message()`` when a fragmented message cannot be finished.
    """

    def __init__(
        self,
        sock: socket.socket,
        protocol: Protocol,
        protocol_lock: threading.Lock,
        *,
        write_limit: int | None,
        write_timeout: float | None,
        closed_exception: Callable[[], ConnectionClosed],
        on_write_error: Callable[[], None],
        on_flushed: Callable[[], None],
        on_broken_message: Callable[[], None],
        logger: logging.Logger,
        peer: Any,
    ) -> None:
        self.socket = sock
        self.protocol = protocol
        self.write_limit = write_limit
        self.write_timeout = write_timeout
        self.on_drain: Callable[[], Any] | None = None
        self.error: BaseException | None = None  # the write that failed; nothing more is written
        self.finished = False  # the connection is over: nothing more is written
        self._protocol_lock = protocol_lock
        self._closed_exception = closed_exception
        self._on_write_error = on_write_error
        self._on_flushed = on_flushed
        self._on_broken_message = on_broken_message
        self._logger = logger
        self._peer = peer
        self._tls = isinstance(sock, ssl.SSLSocket)
        self._fd = sock.fileno()
        self._send_mutex = threading.Lock()  # held for a whole fragmented message
        self._write_lock = threading.Lock()  # held while writing: bytes keep protocol order
        self._unsent: list[Data] = []  # what a non-blocking write could not write
        self._writing = 0  # bytes a blocking write is writing right now
        self._flushers = 0  # background flushes running: the socket did not take everything
        self._flushers_lock = threading.Lock()
        self._poller: Any = None
        # Replies to a backlog of received messages are sent with MSG_MORE (see send_message).
        self.can_cork = not self._tls and sock.family in (socket.AF_INET, socket.AF_INET6) and MSG_MORE != 0
        self.corked = False

    # --- what is queued -----------------------------------------------------------------

    @property
    def buffered_amount(self) -> int:
        """Bytes accepted by send but not yet written to the socket (like the browser's ``bufferedAmount``)."""
        return self._writing + self.backlog()

    def backlog(self) -> int:
        """Bytes queued to write that no writer is writing right now."""
        return sum(len(b) for b in self._unsent) + self.protocol.output_size

    def pending(self) -> bool:
        return bool(self._unsent) or self.protocol.output_size > 0

    def stuck(self) -> bool:
        """Whether the peer is not reading what we write and more waits for it: stop reading from it.

        A background flush runs only while the socket refuses bytes; then a
        pong owed to the peer, or more than ``write_limit`` queued behind the
        flush, means its reading side must wait.
        """
        if not self._flushers or self.error is not None:
            return False
        return self.protocol.pong_pending or (self.write_limit is not None and self.backlog() > self.write_limit)

    def check_sendable(self) -> None:
        """With the protocol lock held: raise ConnectionClosed unless the connection can send."""
        if self.protocol.state is not State.OPEN or self.error is not None:
            raise self._closed_exception()

    def raise_if_failed(self) -> None:
        if self.error is not None:
            raise self._closed_exception() from self.error

    # --- sending messages ---------------------------------------------------------------

    def send_message(self, message: Message | bytearray | memoryview, more: bool = False) -> None:
        """One unfragmented message: encode and write under the write lock, so bytes keep protocol order.

        With ``more`` the write carries MSG_MORE: the caller is replying to a
        backlog of received messages and will most likely send again at once,
        so the kernel may coalesce the replies into fewer TCP segments. The
        bytes still reach the kernel before this returns; they are pushed by
        the next write without the flag, or at the latest by :meth:`push`.
        """
        protocol = self.protocol
        while True:
            with self._write_lock:
                with self._protocol_lock:
                    if protocol.state is not State.OPEN or self.error is not None:  # check_sendable(), inlined
                        raise self._closed_exception()
                    fragmenting = protocol.sending_fragmented
                    if not fragmenting:
                        if type(message) is str:
                            protocol.send_text(message)
                        else:
                            protocol.send_binary(message)  # type: ignore[arg-type]
                        data = protocol.data_to_send()
                if not fragmenting:
                    if self._unsent:
                        data = self._unsent + data
                        self._unsent = []
                    self._write_all(data, more)
                    self._fin_if_written()
                    break
            with self._send_mutex:  # another thread is sending a fragmented message: wait for its end
                pass
        if protocol.output_size:
            self.flush(blocking=False)
        if self.error is not None:  # raise_if_failed(), inlined: this is the hot path
            raise self._closed_exception() from self.error

    def send_fragments(self, pieces: Iterable[Message], text: bool | None = None) -> None:
        """One message, a frame per piece (§5.4); the pieces must all be ``str`` or all bytes-like.

        ``text`` True sends bytes-like pieces as a text message (checked to be
        UTF-8 across the pieces), False sends ``str`` pieces as binary (UTF-8
        encoded); None sends ``str`` as text and bytes-like as binary.

        The first piece goes out once the second is taken, so a wrong first or
        second piece raises :class:`TypeError` with nothing sent. A list or
        tuple is at hand whole: its last piece carries FIN. Any other iterable
        (a generator) is streamed: from the second piece on, each is sent as
        soon as the iterable produces it, and an empty final frame carries FIN
        once it is exhausted. If the iterable raises, or a piece has the wrong
        type, after the first frame went out, the message can never be
        finished and no other message may follow it (§5.4): the connection is
        failed with 1011, like the ``websockets`` package does, and the error
        is raised.
        """
        with self._send_mutex:
            iterator = iter(pieces)
            try:
                current = next(iterator)
            except StopIteration:
                raise ValueError("cannot send an empty iterable: a message needs at least one frame") from None
            kind = fragment_kind(current, None)
            as_text = kind if text is None else text
            check_utf8 = codecs.getincrementaldecoder("utf-8")().decode if as_text and not kind else None
            whole = isinstance(pieces, Sequence)  # every piece is at hand: no need to stream
            first = True

            def take() -> Message | None:
                """The next piece, type-checked; None at the end."""
                try:
                    following = next(iterator)
                except StopIteration:
                    return None
                fragment_kind(following, kind)
                return following

            def emit(piece: Message, last: bool) -> None:
                nonlocal first
                payload: Any = piece
                if kind and not as_text:
                    payload = piece.encode("utf-8")  # type: ignore[union-attr]
                elif check_utf8 is not None:
                    _check_utf8(check_utf8, piece, last)  # type: ignore[arg-type]
                with self._protocol_lock:
                    self.check_sendable()
                    if not first:
                        self.protocol.send_continuation(payload, fin=last)
                    elif as_text:
                        self.protocol.send_text(payload, fin=last)
                    else:
                        self.protocol.send_binary(payload, fin=last)
                first = False
                self.flush(blocking=True)
                self.raise_if_failed()

            try:
                following = take()  # before the first frame: a mixed start is refused with nothing sent
                emit(current, last=following is None)
                if following is None:
                    return
                current = following
                while whole:
                    following = take()
                    emit(current, last=following is None)
                    if following is None:
                        return
                    current = following
                while True:  # streaming: each piece goes out as soon as it is produced
                    emit(current, last=False)
                    following = take()
                    if following is None:
                        emit("" if kind and as_text else b"", last=True)
                        return
                    current = following
            except BaseException:
                if not first and self.protocol.sending_fragmented:
                    self._on_broken_message()
                raise

    def enqueue(
        self, messages: Sequence[Message | PreparedMessage], prepared: PreparedMessage | None, *, write: bool
    ) -> None:
        """Encode ``messages`` into the protocol's output (or queue ``prepared``, the one message framed
        once by :func:`rawws.sync.server.broadcast`), then write without blocking.

        A :class:`~rawws.protocol.PreparedMessage` among ``messages`` is queued as framed.
        """
        protocol = self.protocol
        with self._protocol_lock:
            self.check_sendable()
            fragmenting = protocol.sending_fragmented
            if not fragmenting:
                if prepared is not None:
                    protocol.send_prepared(prepared)
                else:
                    for message in messages:
                        if isinstance(message, str):
                            protocol.send_text(message)
                        elif isinstance(message, PreparedMessage):
                            protocol.send_prepared(message)
                        else:
                            protocol.send_binary(message)
        if fragmenting:
            for message in messages:
                self.send_message(unprepared(message))  # waits for the fragmented message to end
        elif write:
            self.flush(blocking=False)

    # --- writing ------------------------------------------------------------------------

    def flush(self, *, blocking: bool, persist: bool = False) -> None:
        """Write what the protocol queued. Non-blocking callers never wait for the lock or the socket.

        With ``persist`` (the background flush), keep writing, blocking, until nothing is left.
        """
        while True:
            if not self._write_lock.acquire(blocking=blocking):
                return  # the holder writes our bytes after its own
            try:
                if self.error is None and not self.finished:
                    with self._protocol_lock:
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
                                with self._flushers_lock:
                                    self._flushers += 1
                                threading.Thread(target=self._background_flush, daemon=True).start()
                                return
                    self._fin_if_written()
            finally:
                self._write_lock.release()
            if not self.protocol.output_size or self.error is not None or self.finished:
                return  # (finished: what is left will never be written; looping would spin)
            blocking = persist

    def detach(self, closed_exception: Callable[[], ConnectionClosed]) -> None:
        """The connection is over: drop the callbacks into it, so no reference cycle is left."""
        self._closed_exception = closed_exception
        self._on_write_error = self._on_flushed = self._on_broken_message = _ignore
        self.on_drain = None

    def _fin_if_written(self) -> None:
        """With the write lock held: send FIN if the protocol says TCP should close and nothing is left.

        Only the write lock's holder may decide that nothing is left: a writer
        may have taken bytes from the protocol and not yet written them, and a
        FIN sent from outside the lock would overtake them (the close frame).
        A connection that wants FIN asks with ``flush(blocking=False)``: the
        lock's holder, whoever it is, sends it once its bytes are out.
        """
        if self.protocol.should_close_tcp and not self.pending():
            try:
                self.socket.shutdown(socket.SHUT_WR)
            except OSError:
                pass

    def close_socket(self) -> None:
        """Close the socket once no writer is using it."""
        with self._write_lock:
            self.finished = True
            try:
                self.socket.close()
            except OSError:
                pass

    def _background_flush(self) -> None:
        try:
            self.flush(blocking=True, persist=True)
        finally:
            with self._flushers_lock:
                self._flushers -= 1
            self._on_flushed()
        callback = self.on_drain
        if callback is not None and not self.buffered_amount and not self.finished:
            try:
                callback()
            except Exception:
                self._logger.exception("on_drain callback failed")

    def _write_all(self, buffers: list[Data], more: bool = False) -> None:
        sock = self.socket
        flags = MSG_MORE if more else 0
        self.corked = more
        if len(buffers) > 1 or len(buffers[0]) > 65536:
            self._writing = sum(len(b) for b in buffers)
        try:
            if len(buffers) == 1 or self._tls:
                for buffer in buffers:
                    view = memoryview(buffer)
                    while view:
                        try:
                            sent = sock.send(view, flags) if flags else sock.send(view)
                        except WOULD_BLOCK:
                            self._wait_writable()
                            continue
                        view = view[sent:]
            else:
                pending = [memoryview(b) for b in buffers]
                while pending:
                    try:
                        sent = sock.sendmsg(pending, [], flags)
                    except WOULD_BLOCK:
                        self._wait_writable()
                        continue
                    while sent:
                        if sent >= len(pending[0]):
                            sent -= len(pending.pop(0))
                        else:
                            pending[0] = pending[0][sent:]
                            sent = 0
        except OSError as exc:
            self._failed(exc)
        finally:
            self._writing = 0

    def push(self) -> None:
        """Send what MSG_MORE held back: setting TCP_NODELAY again pushes pending data (Linux tcp(7))."""
        self.corked = False
        try:
            self.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass

    def _write_some(self, buffers: list[Data]) -> list[Data]:
        """Write without blocking; return what did not fit."""
        if len(buffers) > 1:
            buffers = coalesce(buffers)
        for index, buffer in enumerate(buffers):
            view = memoryview(buffer)
            while view:
                try:
                    sent = self.socket.send(view)
                except WOULD_BLOCK:
                    return [view.tobytes()] + buffers[index + 1 :]
                except OSError as exc:
                    self._failed(exc)
                    return []
                view = view[sent:]
        return []

    def _wait_writable(self) -> None:
        """Wait until the socket takes more bytes; raise TimeoutError after ``write_timeout`` without any."""
        if self._poller is None:
            self._poller = select.poll()
            self._poller.register(self._fd, select.POLLOUT)
        timeout = None if self.write_timeout is None else int(self.write_timeout * 1000)
        if not self._poller.poll(timeout):
            self._logger.info(
                "%s read nothing of ours for %ss: dropping the connection", self._peer, self.write_timeout
            )
            raise TimeoutError(f"the peer read nothing for write_timeout={self.write_timeout}s")

    def _failed(self, exc: BaseException) -> None:
        self.error = exc.with_traceback(None)  # its frames would hold the connection in a cycle
        self._logger.debug("write to %s failed: %s", self._peer, exc)
        try:
            self.socket.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._on_write_error()


COALESCE_LIMIT = 256 * 1024
"""Consecutive buffers smaller than this are joined into writes of up to about this size."""


def coalesce(buffers: list[Data], limit: int = COALESCE_LIMIT) -> list[Data]:
    """``buffers`` with each run of small ones joined: a system call per write, not per frame header or payload.

    A queue of many small messages (a subscriber's backlog) is two buffers a
    message; writing them one ``send`` each costs far more than copying them.
    Buffers of ``limit`` bytes or more are kept as they are, so a large
    message is not copied.
    """
    joined: list[Data] = []
    run: list[Data] = []
    size = 0
    for buffer in buffers:
        length = len(buffer)
        if length >= limit:
            if run:
                joined.append(b"".join(run) if len(run) > 1 else run[0])
                run, size = [], 0
            joined.append(buffer)
            continue
        run.append(buffer)
        size += length
        if size >= limit:
            joined.append(b"".join(run))
            run, size = [], 0
    if run:
        joined.append(b"".join(run) if len(run) > 1 else run[0])
    return joined


def unprepared(message: Message | PreparedMessage) -> Message:
    """The message a :class:`~rawws.protocol.PreparedMessage` frames, to be framed again."""
    if not isinstance(message, PreparedMessage):
        return message
    return message.payload.decode("utf-8") if message.opcode == Opcode.TEXT else message.payload


def fragment_kind(piece: object, expected: bool | None) -> bool:
    """True for a ``str`` fragment, False for a bytes-like one; TypeError for anything else or a mix."""
    if isinstance(piece, str):
        kind = True
    elif isinstance(piece, (bytes, bytearray, memoryview)):
        kind = False
    else:
        raise TypeError(f"cannot send a fragment of type {type(piece).__name__}: {ACCEPTED}")
    if expected is not None and kind != expected:
        first, this = ("str", "bytes-like") if expected else ("bytes-like", "str")
        raise TypeError(f"a {this} fragment after {first} ones: {ACCEPTED}")
    return kind


def _check_utf8(decode: Callable[[bytes, bool], str], data: bytes, last: bool) -> None:
    try:
        decode(data, last)
    except UnicodeDecodeError as exc:
        raise ValueError(f"text=True needs UTF-8 data: {exc.reason} in a fragment") from None


def _ignore() -> None:
    pass
