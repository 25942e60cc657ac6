"""A Connection's parts over a socketpair: the Sender, the Receiver and the Keepalive, and how they meet."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest

from rawws.exceptions import ConnectionClosed, ConnectionClosedOK
from rawws.frames import Frame, FrameParser, Opcode, encode_frame
from rawws.http11 import Request, Response
from rawws.protocol import CLIENT, SERVER, Protocol, prepare_message
from rawws.sync.connection import Connection
from rawws.sync.options import ConnectionOptions
from rawws.sync.receiving import ReadState
from tests.conftest import scaled


def pair(**options: object) -> tuple[Connection, socket.socket]:
    """A server-side Connection on one end of a socketpair; the raw other end plays the client."""
    ours, theirs = socket.socketpair()
    protocol = Protocol(SERVER, fragment_events=True, defer_failure=True)
    connection = Connection(
        ours,
        protocol,
        request=Request("GET", "/"),
        response=Response(101, "Switching Protocols"),
        options=ConnectionOptions(**options),  # type: ignore[arg-type]
    )
    theirs.settimeout(scaled(5))
    return connection, theirs


@pytest.fixture
def conn() -> Iterator[tuple[Connection, socket.socket]]:
    connection, peer = pair(ping_interval=None, close_timeout=1.0)
    yield connection, peer
    peer.close()
    connection.wait_closed(scaled(5))


def client_frame(opcode: int, payload: bytes = b"", fin: bool = True) -> bytes:
    return encode_frame(Frame(opcode, payload, fin), mask=True)


def read_frames(peer: socket.socket, count: int) -> list[Frame]:
    parser = FrameParser(mask_expected=False)
    frames: list[Frame] = []
    while len(frames) < count:
        frames += parser.feed(peer.recv(65536))
    return frames


def test_a_connection_needs_the_protocol_settings_it_relies_on() -> None:
    ours, theirs = socket.socketpair()
    with ours, theirs, pytest.raises(ValueError, match="fragment_events"):
        Connection(ours, Protocol(SERVER), request=Request("GET", "/"), response=Response(101, "OK"))


def test_receive_and_send_over_a_socketpair(conn: tuple[Connection, socket.socket]) -> None:
    connection, peer = conn
    peer.sendall(client_frame(Opcode.TEXT, b"hello"))
    assert connection.recv(timeout=scaled(5)) == "hello"
    connection.send(b"back")
    assert read_frames(peer, 1) == [Frame(Opcode.BINARY, b"back")]


def test_the_reactor_answers_pings_while_nobody_calls_recv(conn: tuple[Connection, socket.socket]) -> None:
    connection, peer = conn
    peer.sendall(client_frame(Opcode.PING, b"are you there"))
    assert read_frames(peer, 1) == [Frame(Opcode.PONG, b"are you there")]


def test_a_full_queue_pauses_reading_and_recv_resumes_it() -> None:
    connection, peer = pair(ping_interval=None, max_queue=2)
    try:
        peer.sendall(b"".join(client_frame(Opcode.TEXT, b"%d" % i) for i in range(5)))
        deadline = time.monotonic() + scaled(5)
        while connection._receiver.state is not ReadState.PAUSED and time.monotonic() < deadline:  # noqa: SLF001
            time.sleep(0.01)
        assert connection._receiver.state is ReadState.PAUSED  # noqa: SLF001
        assert len(connection._receiver.queue) == 2  # parsed no further than the queue has room for
        assert [connection.recv(timeout=scaled(5)) for _ in range(5)] == ["0", "1", "2", "3", "4"]
    finally:
        peer.close()
        connection.wait_closed(scaled(5))


def test_fragments_are_merged_into_one_queue_item(conn: tuple[Connection, socket.socket]) -> None:
    connection, peer = conn
    pieces = [client_frame(Opcode.BINARY, b"a", fin=False)]
    pieces += [client_frame(Opcode.CONT, b"b", fin=False) for _ in range(1000)]
    pieces.append(client_frame(Opcode.CONT, b"c"))
    peer.sendall(b"".join(pieces))
    deadline = time.monotonic() + scaled(5)
    while time.monotonic() < deadline:
        queue = connection._receiver.queue  # noqa: SLF001
        if queue and getattr(queue[-1], "last", False):
            break
        time.sleep(0.01)
    assert len(connection._receiver.queue) == 1  # noqa: SLF001
    assert connection.recv(timeout=scaled(5)) == b"a" + b"b" * 1000 + b"c"


def test_send_nowait_leaves_what_does_not_fit_to_a_background_flush(conn: tuple[Connection, socket.socket]) -> None:
    connection, peer = conn
    drained = threading.Event()
    connection.on_drain = drained.set
    big = bytes(4 * 2**20)
    connection.send_nowait(big)
    assert connection.buffered_amount > 0  # the socketpair took only part of it
    received = bytearray()
    parser = FrameParser(mask_expected=False, max_size=None)
    frames: list[Frame] = []
    while not frames:
        data = peer.recv(2**20)
        received += data
        frames = parser.feed(data)
    assert frames[0].payload == big
    assert drained.wait(scaled(5)) and connection.buffered_amount == 0


def test_prepared_messages_are_the_same_bytes_on_every_connection(conn: tuple[Connection, socket.socket]) -> None:
    connection, peer = conn
    prepared = prepare_message("to everyone")
    assert connection.protocol.can_send_prepared
    connection.send_nowait("to everyone", prepared=prepared)
    assert read_frames(peer, 1) == [Frame(Opcode.TEXT, b"to everyone")]
    client_side = Protocol(CLIENT)
    assert not client_side.can_send_prepared


def test_ping_waiters_resolve_in_order_and_fail_when_the_connection_ends() -> None:
    connection, peer = pair(ping_interval=None, close_timeout=1.0)
    first = connection.ping(b"1")
    second = connection.ping(b"2")
    pings = read_frames(peer, 2)
    assert [f.payload for f in pings] == [b"1", b"2"]
    peer.sendall(client_frame(Opcode.PONG, b"2"))  # acknowledges both
    assert first.wait(scaled(5)) and second.wait(scaled(5))
    assert first.latency is not None and first.latency >= 0
    third = connection.ping(b"3")
    peer.close()
    with pytest.raises(ConnectionClosed):
        third.wait(scaled(5))
    connection.wait_closed(scaled(5))


def test_keepalive_fails_a_silent_peer_with_1011() -> None:
    connection, peer = pair(ping_interval=0.05, ping_timeout=0.05, close_timeout=1.0)
    try:
        assert connection.wait_closed(scaled(5))
        with pytest.raises(ConnectionClosed) as info:
            connection.recv(timeout=scaled(5))
        assert info.value.sent_code == 1011
    finally:
        peer.close()


def test_closing_handshake_from_our_side(conn: tuple[Connection, socket.socket]) -> None:
    connection, peer = conn
    closer = threading.Thread(target=connection.close)
    closer.start()
    [frame] = read_frames(peer, 1)
    assert frame.opcode == Opcode.CLOSE and frame.payload[:2] == b"\x03\xe8"
    peer.sendall(client_frame(Opcode.CLOSE, frame.payload[:2]))
    closer.join(scaled(5))
    assert connection.closed and connection.close_code == 1000
    with pytest.raises(ConnectionClosedOK) as info:
        connection.recv(timeout=0)
    assert info.value.closed_by == "local"


def test_a_flush_after_the_end_does_not_spin(conn: tuple[Connection, socket.socket]) -> None:
    connection, peer = conn
    connection.protocol.send_pong(b"late")  # queued behind the connection's back: never to be written
    peer.close()
    assert connection.wait_closed(scaled(5))
    assert connection.protocol.output_size > 0
    finished = threading.Event()
    threading.Thread(target=lambda: (connection.flush_nowait(), finished.set()), daemon=True).start()
    assert finished.wait(scaled(5))  # it used to loop for ever here (seen as a hang in Server.shutdown)


def test_fin_never_overtakes_bytes_a_writer_holds() -> None:
    connection, peer = pair(ping_interval=None, close_timeout=5.0)
    sender = connection._sender  # noqa: SLF001 - a writer holding the lock, as send() would
    try:
        with sender._write_lock:  # noqa: SLF001
            peer.sendall(client_frame(Opcode.CLOSE, b"\x03\xe8"))
            # The reactor answers the close and wants FIN, but a writer holds the lock: nothing may go out yet.
            deadline = time.monotonic() + scaled(2)
            while connection.protocol.close_received is None and time.monotonic() < deadline:
                time.sleep(0.01)
            peer.settimeout(0.3)
            with pytest.raises(TimeoutError):
                peer.recv(100)  # not even a FIN
        connection.flush_nowait()  # what the writer does once it is done with its own bytes
        peer.settimeout(scaled(5))
        data = b""
        while True:
            chunk = peer.recv(100)
            if not chunk:
                break
            data += chunk
        assert FrameParser(mask_expected=False).feed(data) == [Frame(Opcode.CLOSE, b"\x03\xe8")]  # then EOF
    finally:
        peer.close()
        connection.wait_closed(scaled(5))


def test_a_fragmented_send_that_breaks_half_way_fails_the_connection_instead_of_hanging(
    conn: tuple[Connection, socket.socket],
) -> None:
    connection, peer = conn

    def pieces() -> Iterator[str]:
        yield "first part"
        yield "second part"  # the first goes out once the second exists; the second as soon as it does
        raise RuntimeError("the producer broke")

    with pytest.raises(RuntimeError, match="producer broke"):
        connection.send(pieces())
    frames = read_frames(peer, 3)
    assert frames[0] == Frame(Opcode.TEXT, b"first part", fin=False)
    assert frames[1] == Frame(Opcode.CONT, b"second part", fin=False)
    assert frames[2].opcode == Opcode.CLOSE and frames[2].payload[:2] == (1011).to_bytes(2, "big")
    finished = threading.Event()
    errors: list[BaseException] = []

    def later_send() -> None:
        try:
            connection.send("next")
        except BaseException as exc:  # noqa: BLE001 - what the caller sees
            errors.append(exc)
        finished.set()

    threading.Thread(target=later_send, daemon=True).start()
    assert finished.wait(scaled(5)), "send() after a broken fragmented message hung"
    assert isinstance(errors[0], ConnectionClosed)


def test_a_finished_connection_is_freed_without_the_cyclic_garbage_collector() -> None:
    import gc
    import weakref

    gc.disable()
    try:
        connection, peer = pair(ping_interval=0.5, max_queue=4, close_timeout=1.0)
        peer.sendall(b"".join(client_frame(Opcode.BINARY, bytes(20_000)) for _ in range(6)))  # fits the socketpair
        deadline = time.monotonic() + scaled(5)
        while len(connection._receiver.queue) < 4 and time.monotonic() < deadline:  # noqa: SLF001
            time.sleep(0.01)
        peer.close()
        assert connection.wait_closed(scaled(5))
        with pytest.raises(ConnectionClosed):
            for _ in range(10):
                connection.recv(timeout=0)  # the queued messages, then the end: still readable after closing
        alive = weakref.ref(connection)
        del connection
        assert alive() is None, "a reference cycle keeps the finished connection (and its unread messages) alive"
    finally:
        gc.enable()


def test_data_after_our_close_frame_is_not_queued_past_max_queue() -> None:
    connection, peer = pair(ping_interval=None, max_queue=2, close_timeout=scaled(5))
    try:
        connection.start_closing()
        peer.sendall(b"".join(client_frame(Opcode.BINARY, b"%d" % i) for i in range(200)))
        time.sleep(0.3)
        assert len(connection._receiver.queue) <= 2  # noqa: SLF001
        peer.sendall(client_frame(Opcode.CLOSE, b"\x03\xe8"))
        assert connection.wait_closed(scaled(5))
    finally:
        peer.close()
