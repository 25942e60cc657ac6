"""The threaded server: ``serve(handler, host, port)`` (RFC 6455 §4.2 over real sockets).

One thread per connection runs the opening handshake and then the handler.
The accept loop runs in :meth:`Server.serve_forever` or in a background
thread (:meth:`Server.start`). :meth:`Server.shutdown` stops accepting, closes
every connection with 1001 Going Away and waits for the handlers.
"""

from __future__ import annotations

import logging
import selectors
import socket
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import replace
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from typing_extensions import Unpack

from ..exceptions import ConnectionClosed, InvalidHandshake
from ..frames import CloseCode
from ..handshake import reject
from ..http11 import Request, Response
from ..opening import ServerHandshake
from ..protocol import Protocol, prepare_message
from .connection import Connection, Message, frame_tracer
from .options import ConnectionOptions, ServerOptions, ServerSettings
from .pending import PendingConnection
from .threads import ThreadCounter, start_thread
from .timers import Deadline

__all__ = ["serve", "listen", "Server", "ServerConnection", "PendingConnection", "broadcast"]

SERVER_HEADER = "rawws/0.1"

DEFAULT_MAX_HANDSHAKES = 256
"""Default cap on opening handshakes in progress (``serve(max_handshakes=...)``).

Each handshake in progress holds a thread (a few MiB of stack address space,
some tens of KiB resident) until it completes or ``open_timeout`` passes, so
without a cap a flood of half-open connections grows threads without bound.
256 is twice the widest burst the benchmarks open at once (200 connections,
``benchmarks/loadgen``), and a loopback or LAN handshake takes milliseconds,
so legitimate bursts stay far below it; at most about 10 MiB resident for the
handshake threads. Past the cap new connections wait in the listening
socket's backlog for a slot; only when no handshake has ended for
:data:`BUSY_RETRY_AFTER` seconds (every slot held by half-open handshakes) is
a connection taken and answered 503 from the accept loop, without a thread."""

BUSY_RETRY_AFTER = 1
"""``Retry-After`` seconds on the 503 sent past ``max_handshakes``: a slot frees
as soon as any handshake in progress completes, which takes milliseconds for
a legitimate client."""

_BUSY_RESPONSE = reject(
    503,
    "too many WebSocket handshakes in progress (max_handshakes); try again shortly",
    [("Retry-After", str(BUSY_RETRY_AFTER))],
).serialize()


class ServerConnection(Connection):
    """The server side of a WebSocket connection; handlers receive one. ``server`` is its :class:`Server`.

    ``context`` is the dict that ``process_request`` filled in on the
    :class:`~rawws.sync.pending.PendingConnection` (empty without one).
    """

    def __init__(
        self,
        sock: socket.socket,
        protocol: Protocol,
        *,
        server: Server,
        request: Request,
        response: Response,
        subprotocol: str | None,
        options: ConnectionOptions,
        logger: logging.Logger,
        leftover: bytes,
        remote_address: Any,
        context: dict[str, Any] | None = None,
    ) -> None:
        self.server = server
        self.context: dict[str, Any] = {} if context is None else context
        super().__init__(
            sock,
            protocol,
            request=request,
            response=response,
            subprotocol=subprotocol,
            options=options,
            logger=logger,
            leftover=leftover,
            remote_address=remote_address,
        )


Handler = Callable[[ServerConnection], Any]


class Server:
    """A listening WebSocket server. Build it with :func:`serve`.

    :meth:`serve_forever` or :meth:`start` accepts connections, :meth:`shutdown`
    ends them; :attr:`connections` is the set of open connections (for
    :func:`broadcast`), :attr:`port` and :attr:`address` where it listens.
    """

    def __init__(self, handler: Handler, sock: socket.socket, options: ServerOptions) -> None:
        self.handler = handler
        self.socket = sock
        self.options = options
        self.logger: logging.Logger = options.logger or logging.getLogger("rawws.server")
        self.deflate = options.deflate
        self._connections: set[ServerConnection] = set()
        self._running = ThreadCounter()  # connection threads (handshake and handler)
        self._handler_threads: set[int] = set()
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self._stopped = threading.Event()
        self._accepting = threading.Event()  # the accept loop is running (in some thread)
        self._accept_ident = 0
        self._accept_thread: threading.Thread | None = None
        self._loop_claimed = False
        self._wake_r, self._wake_w = socket.socketpair()
        # Admission (max_handshakes): opening handshakes in progress, incremented by the accept loop
        # before it starts a connection's thread, decremented by that thread when its handshake ends.
        self._handshakes = 0
        self._handshakes_lock = threading.Lock()
        self._busy_refused = 0  # refused since the last warning (accept loop only)
        self._busy_warned_at = -1e9
        self._progress_at = time.monotonic()  # when a handshake last ended (or the cap was last not reached)
        self._holding_off = False  # the accept loop waits for a slot: wake it when one frees
        self._wake_r.setblocking(False)
        sock.setblocking(False)

    @property
    def connections(self) -> set[ServerConnection]:
        """The open connections whose handler is running: what to :func:`broadcast` to.

        A live set, changed by the server's threads as clients come and go:
        iterate over a copy (``broadcast`` takes one), and do not change it.
        ``rawws.broadcast(server.connections, message)`` sends to every client.
        """
        return self._connections

    @property
    def address(self) -> Any:
        """The listening address, e.g. ``("127.0.0.1", 8765)``."""
        return self.socket.getsockname()

    @property
    def port(self) -> int:
        port: int = self.socket.getsockname()[1]
        return port

    @property
    def handshakes_in_progress(self) -> int:
        """Opening handshakes under way (each holds a thread); at most ``max_handshakes``."""
        return self._handshakes

    def serve_forever(self) -> None:
        """Accept connections until :meth:`shutdown` (or Ctrl-C, which shuts down).

        RuntimeError if the server was shut down or is already accepting.
        """
        self._claim_accept_loop()
        try:
            self._accept_loop()
        except KeyboardInterrupt:
            self.shutdown()

    def start(self) -> Server:
        """Run the accept loop in a background thread; return self.

        RuntimeError if the server was shut down (its socket is closed: make a new
        one with :func:`serve`) or is already accepting.
        """
        self._claim_accept_loop()
        self._accept_thread = threading.Thread(target=self._accept_loop, name="rawws-accept", daemon=True)
        self._accept_thread.start()
        return self

    def _claim_accept_loop(self) -> None:
        """Only one accept loop per server, and none after :meth:`shutdown` (its socket is closed)."""
        with self._lock:
            if self._closing.is_set():
                raise RuntimeError("this server was shut down and cannot accept again; make a new one with serve()")
            if self._loop_claimed:
                raise RuntimeError("this server is already accepting connections (start() or serve_forever() ran)")
            self._loop_claimed = True

    def _accept_loop(self) -> None:
        self._accept_ident = threading.get_ident()
        self._accepting.set()
        selector = selectors.DefaultSelector()
        selector.register(self.socket, selectors.EVENT_READ)
        selector.register(self._wake_r, selectors.EVENT_READ)
        self.logger.info("server listening on %s", self.address)
        listening = True
        try:
            while not self._closing.is_set():
                hold_off = self._hold_off()
                if (hold_off is None) != listening:  # stop or resume taking connections from the backlog
                    if listening:
                        selector.unregister(self.socket)
                    else:
                        selector.register(self.socket, selectors.EVENT_READ)
                    listening = not listening
                for key, _ in selector.select(hold_off):
                    if key.fileobj is self._wake_r:
                        try:
                            self._wake_r.recv(4096)
                        except OSError:
                            pass
                        break
                    for _ in range(64):  # accept a burst, then look at the wakeup again
                        if self._hold_off() is not None:
                            break
                        try:
                            client, address = self.socket.accept()
                        except (BlockingIOError, InterruptedError):
                            break
                        except OSError as exc:
                            self.logger.warning("accept failed: %s", exc)  # e.g. EMFILE: out of descriptors
                            time.sleep(0.05)
                            break
                        self._spawn(client, address)
        finally:
            selector.close()
            self._stopped.set()

    def _hold_off(self) -> float | None:
        """Seconds to leave new connections in the kernel's backlog, or None to take them now.

        With ``max_handshakes`` in progress, a new connection waits in the
        backlog for a slot: a legitimate burst frees slots every few
        milliseconds. Only when no handshake has ended for
        :data:`BUSY_RETRY_AFTER` seconds (half-open handshakes hold every slot)
        are new connections taken and answered 503, so that they learn why.
        """
        limit = self.options.max_handshakes
        with self._handshakes_lock:
            if limit is None or self._handshakes < limit:
                self._holding_off = False
                return None
            stalled_for = time.monotonic() - self._progress_at
            if stalled_for >= BUSY_RETRY_AFTER:
                self._holding_off = False
                return None  # answered 503 by _spawn
            self._holding_off = True
            return BUSY_RETRY_AFTER - stalled_for

    def _spawn(self, client: socket.socket, address: Any) -> None:
        limit = self.options.max_handshakes
        with self._handshakes_lock:
            admitted = limit is None or self._handshakes < limit
            if admitted:
                if limit is not None and self._handshakes == 0:
                    self._progress_at = time.monotonic()
                self._handshakes += 1  # given back by _run_connection, whatever the handshake's outcome
        if not admitted:
            self._refuse_busy(client, address)
            return
        try:
            start_thread(self._run_connection, client, address)
        except RuntimeError as exc:  # "can't start new thread": out of memory or a thread limit
            self._handshake_finished()
            self.logger.error("cannot start a thread for %s: %s", address, exc)
            client.close()

    def _handshake_finished(self) -> None:
        with self._handshakes_lock:
            self._handshakes -= 1
            self._progress_at = time.monotonic()
            wake = self._holding_off
            self._holding_off = False
        if wake:
            try:
                self._wake_w.send(b"\0")
            except OSError:
                pass

    def _refuse_busy(self, client: socket.socket, address: Any) -> None:
        """Past ``max_handshakes``: answer 503 from the accept loop itself and close; no thread, no waiting.

        The answer (under 200 bytes) fits in a new socket's empty send buffer, so one
        non-blocking send writes it. A TLS server cannot answer before its own TLS
        handshake, so there the connection is only closed.
        """
        self._busy_refused += 1
        now = time.monotonic()
        if now - self._busy_warned_at >= 10.0:
            self.logger.warning(
                "max_handshakes (%s) reached: refused %d connection(s) with 503 since the last warning, latest %s",
                self.options.max_handshakes,
                self._busy_refused,
                address,
            )
            self._busy_warned_at = now
            self._busy_refused = 0
        else:
            self.logger.debug("max_handshakes reached: refused %s with 503", address)
        try:
            client.setblocking(False)
            if self.options.ssl is None:
                client.send(_BUSY_RESPONSE)
                client.shutdown(socket.SHUT_WR)
                for _ in range(4):  # read what has arrived, so that closing sends FIN rather than RST
                    if not client.recv(65536):
                        break
        except OSError:
            pass  # BlockingIOError once drained; or the peer is gone already
        finally:
            client.close()

    def _run_connection(self, client: socket.socket, address: Any) -> None:
        with self._running:
            self._handler_threads.add(threading.get_ident())
            try:
                try:
                    connection = self._handshake(client, address)
                finally:
                    self._handshake_finished()  # on every path: success, refusal, timeout, error
                if connection is not None:
                    self._run_handler(connection)
            except BaseException:
                self.logger.exception("connection thread for %s failed", address)
            finally:
                self._handler_threads.discard(threading.get_ident())

    def _handshake(self, client: socket.socket, address: Any) -> ServerConnection | None:
        """Run the opening handshake (:class:`~rawws.opening.ServerHandshake`) over ``client``."""
        options = self.options
        deadline = Deadline(options.open_timeout)
        handshake = ServerHandshake(
            origins=options.origins,
            allowed_hosts=options.allowed_hosts,
            subprotocols=options.subprotocols,
            select_subprotocol=options.select_subprotocol,
            compression=self.deflate,
            extra_headers=[("Server", SERVER_HEADER)],
            secure=options.ssl is not None,
        )
        sock = client
        context: dict[str, Any] = {}
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.settimeout(options.open_timeout)
            if options.ssl is not None:
                sock = options.ssl.wrap_socket(sock, server_side=True)
            request = None
            while request is None:
                remaining = deadline.remaining()
                if remaining is not None and remaining <= 0:
                    raise TimeoutError
                sock.settimeout(remaining)
                data = sock.recv(65536)
                if not data:
                    sock.close()
                    return None
                request = handshake.receive_data(data)
            handshake.screen(request)  # Host and Origin before any application code sees the request
            if options.process_request is not None:
                pending = PendingConnection(sock, address, self)
                answer = options.process_request(pending, request)
                context = pending.context  # after the call: process_request may have assigned a new dict
                if answer is not None and not isinstance(answer, Response):
                    raise TypeError(
                        f"process_request returned {type(answer).__name__}; it must return a "
                        "rawws.http11.Response (build one with pending.respond(status, body)) or None"
                    )
                if answer is not None:
                    handshake.respond(answer)
                    self._send_and_close(sock, handshake.data_to_send())
                    return None
            if self._closing.is_set():
                raise InvalidHandshake("server is shutting down", status=503)
            handshake.accept(request)
            sock.sendall(handshake.data_to_send())
        except InvalidHandshake as exc:
            self.logger.info("refused handshake from %s: %s %s", address, exc.status, exc)
            handshake.refuse(exc)
            self._send_and_close(sock, handshake.data_to_send())
            return None
        except (OSError, TimeoutError) as exc:
            self.logger.debug("handshake with %s failed: %s", address, exc)
            sock.close()
            return None
        except Exception:
            self.logger.exception("error in the opening handshake with %s: answering 500", address)
            handshake.respond(reject(500, "internal server error"))
            self._send_and_close(sock, handshake.data_to_send())
            return None
        protocol = handshake.protocol(
            max_size=options.max_size,
            fragment_events=True,
            defer_failure=True,
            trace=frame_tracer(self.logger, address) if self.logger.isEnabledFor(logging.DEBUG) else None,
        )
        assert handshake.response is not None
        return ServerConnection(
            sock,
            protocol,
            server=self,
            request=request,
            response=handshake.response,
            subprotocol=handshake.subprotocol,
            options=options,
            logger=self.logger,
            leftover=handshake.remainder,
            remote_address=address,
            context=context,
        )

    def _send_and_close(self, sock: socket.socket, data: bytes) -> None:
        try:
            sock.settimeout(self.options.close_timeout or 5.0)
            sock.sendall(data)
            sock.shutdown(socket.SHUT_WR)
            # Read what the client still sends (for at most a second) so that closing does not
            # reset the connection before it has read our answer.
            sock.settimeout(0.25)
            end = time.monotonic() + 1.0
            while time.monotonic() < end and sock.recv(65536):
                pass
        except OSError:
            pass
        finally:
            sock.close()

    def _run_handler(self, connection: ServerConnection) -> None:
        with self._lock:
            self._connections.add(connection)
        if self._closing.is_set():
            connection.close(CloseCode.GOING_AWAY, "server shutting down")
        try:
            self.handler(connection)
        except ConnectionClosed:
            pass  # the peer went away while the handler was talking to it: routine
        except Exception:
            self.logger.exception("handler failed for %s", connection.remote_address)
            connection.close(CloseCode.INTERNAL_ERROR, "internal error")
        finally:
            connection.close()
            with self._lock:
                self._connections.discard(connection)

    def shutdown(self, timeout: float | None = None) -> None:
        """Stop accepting, close every connection with 1001, wait for handlers (up to ``timeout``)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        if not self._closing.is_set():
            self._closing.set()
            try:
                self._wake_w.send(b"\0")
            except OSError:
                pass
        if self._accepting.is_set() and threading.get_ident() != self._accept_ident:
            # Wait for the accept loop (in start()'s thread or in serve_forever()) to let go of the socket.
            self._stopped.wait(None if deadline is None else max(0.0, deadline - time.monotonic()))
        self.socket.close()
        with self._lock:
            connections = list(self._connections)
        for connection in connections:
            connection.start_closing(CloseCode.GOING_AWAY, "server shutting down")
        # Handlers end once their connection is closed. Called from a handler, wait for the others.
        own = 1 if threading.get_ident() in self._handler_threads else 0
        self._running.wait_idle(None if deadline is None else max(0.0, deadline - time.monotonic()), leave=own)
        self._wake_r.close()
        self._wake_w.close()

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc: object) -> None:
        if not self._closing.is_set():
            self.shutdown()


def broadcast(connections: Iterable[Connection], message: Message, *, backlog_limit: int = 4 * 2**20) -> int:
    """Send ``message`` to every open connection without waiting on any one of them.

    The frame is encoded once and the same bytes are written to every server
    connection that has no extension state of its own (a compressing
    connection encodes for itself). A connection that cannot take the bytes
    right away gets them from a background flush; one that already has more
    than ``backlog_limit`` bytes waiting is skipped (and logged) rather than
    allowed to grow without bound. Closed connections are skipped. Returns the
    number of connections the message was written or queued to.
    """
    prepared = prepare_message(message)
    sent = 0
    for connection in list(connections):
        if connection.buffered_amount > backlog_limit:
            connection.logger.warning("broadcast skipped %s: it is not reading", connection.remote_address)
            continue
        try:
            if connection.protocol.can_send_prepared:
                connection.send_nowait(message, prepared=prepared)
            else:
                connection.send_nowait(message)
        except ConnectionClosed:
            continue
        sent += 1
    return sent


def serve(
    handler: Handler,
    host: str | None = "127.0.0.1",
    port: int = 8765,
    *,
    sock: socket.socket | None = None,
    backlog: int = 1024,
    options: ServerOptions | None = None,
    **settings: Unpack[ServerSettings],
) -> Server:
    """Listen on ``host``:``port`` and run ``handler(connection)`` for every WebSocket client.

    Settings are :class:`~rawws.sync.options.ServerOptions`' fields, given as
    keyword arguments (``serve(handler, max_size=2**24, ping_interval=None)``)
    or as one ``options`` object (keyword arguments then override its fields).
    Defaults, close to the ``websockets`` package's: ``max_size`` 1 MiB per
    message; ``max_queue`` 16 received messages waiting for the handler (then
    reading stops: TCP back-pressure); keepalive ping every 20 s with 20 s to
    answer (else close 1011); 10 s to finish the opening handshake (slowloris
    defence) and 10 s for the closing handshake; at most ``max_handshakes``
    (256) handshakes in progress, past which new connections wait for a slot (503 after a second with none ending);
    ``write_limit`` 1 MiB and ``write_timeout`` 20 s for peers that do not
    read; permessage-deflate accepted (``compression=None`` refuses it).
    ``origins`` lists allowed ``Origin`` values (None allows a missing
    header); others get 403; ``origins="same-origin"`` allows only pages
    served from this server's own address (and non-browser clients, which
    send no ``Origin``). ``allowed_hosts`` lists the names the ``Host`` header
    may carry (the DNS rebinding defence); others get 403. ``process_request(pending, request)`` may return
    a :class:`~rawws.http11.Response` to answer plain HTTP instead of
    upgrading. Pass ``port=0`` for a free port (see :attr:`Server.port`).
    """
    options = replace(options or ServerOptions(), **settings)
    return Server(handler, sock if sock is not None else listen(host, port, backlog), options)


def listen(host: str | None = "127.0.0.1", port: int = 8765, backlog: int = 1024) -> socket.socket:
    """The listening socket :func:`serve` uses (``host`` None or "" listens on every interface)."""
    return socket.create_server((host or "", port), backlog=backlog, reuse_port=False, dualstack_ipv6=False)
