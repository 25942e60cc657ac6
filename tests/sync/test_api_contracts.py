"""Issue 13: contracts a ``websockets`` user relies on, over real loopback sockets.

send() refuses what it cannot send before sending anything (item 1); an
abandoned recv_streaming() never surfaces a message's tail and never makes
recv(timeout=) hang (item 2); close() refuses codes that may not be sent
(item 10); help() shows the handshake attributes (item 11); bytes go out as
text and text comes back as bytes on request (item 15).
"""

from __future__ import annotations

import pydoc
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from rawws import ConnectionClosedError, InvalidState
from rawws.sync.client import connect
from rawws.sync.connection import Connection
from rawws.sync.server import Server, serve
from tests.conftest import echo, scaled

StartServer = Callable[..., Server]


def url(server: Server) -> str:
    return f"ws://127.0.0.1:{server.port}/"


def in_thread(function: Callable[[], Any], timeout: float) -> Any:
    """Run ``function`` in a thread and return its result; fail (not hang) if it takes longer than ``timeout``."""
    outcome: list[Any] = []

    def run() -> None:
        try:
            outcome.append(("ok", function()))
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            outcome.append(("error", exc))

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(timeout)
    assert outcome, f"still blocked after {timeout:.1f} s"
    kind, value = outcome[0]
    if kind == "error":
        raise value
    return value


# --- item 1: send() refuses what it cannot send --------------------------------------------------


@pytest.mark.parametrize(
    "message",
    [{"type": "chat", "payload": "hi"}, {"a", "b"}, frozenset({b"x"}), {"k": 1}.keys(), 42, None, [1, 2], ["a", b"b"]],
    ids=["dict", "set", "frozenset", "dict-keys", "int", "None", "list-of-int", "mixed-list"],
)
def test_send_refuses_what_it_cannot_send_and_nothing_goes_out(start_server: StartServer, message: Any) -> None:
    server = start_server(echo)
    with connect(url(server)) as ws:
        with pytest.raises(TypeError, match=r"send\(\) takes str .* bytes-like .* iterable of all-str or all-bytes"):
            ws.send(message)
        ws.send("still open")  # nothing of the refused message reached the server: its echo comes first
        assert ws.recv(timeout=scaled(5)) == "still open"


def test_a_mixed_generator_is_refused_before_its_first_frame_when_the_second_piece_is_wrong(
    start_server: StartServer,
) -> None:
    server = start_server(echo)
    with connect(url(server)) as ws:
        with pytest.raises(TypeError, match="a bytes-like fragment after str ones"):
            ws.send(piece for piece in ["text", b"bytes"])
        ws.send("still open")
        assert ws.recv(timeout=scaled(5)) == "still open"


def test_a_mixed_generator_found_out_late_fails_the_connection_as_documented(start_server: StartServer) -> None:
    server = start_server(echo)
    with connect(url(server)) as ws:
        with pytest.raises(TypeError, match="a str fragment after bytes-like ones"):
            ws.send(piece for piece in [b"a", b"b", "c"])
        with pytest.raises(ConnectionClosedError):
            ws.recv(timeout=scaled(5))
        assert ws.protocol.close_sent is not None and ws.protocol.close_sent[0] == 1011


# --- item 2: an abandoned recv_streaming() ----------------------------------------------------------


def three_fragments_then_next(delay: float) -> Callable[[Any], None]:
    """A server handler: one message in 3 fragments (``delay`` apart), then "next", then wait for the close."""

    def fragments() -> Iterator[str]:
        for piece in ("part1", "part2", "part3"):
            yield piece
            time.sleep(delay)

    def handler(ws: Any) -> None:
        ws.send(fragments())
        ws.send("next")
        for _ in ws:
            pass

    return handler


@pytest.mark.parametrize("delay", [0.0, 0.2])
def test_recv_after_abandoning_a_stream_in_the_same_thread_returns_the_next_message(
    start_server: StartServer, delay: float
) -> None:
    server = start_server(three_fragments_then_next(delay))
    with connect(url(server)) as ws:

        def abandon_then_recv() -> tuple[str, Any]:
            stream = ws.recv_streaming(timeout=scaled(5))
            first = next(stream)
            after = ws.recv(timeout=scaled(3))  # the generator is still alive and unfinished
            with pytest.raises(InvalidState, match="abandoned"):
                next(stream)
            return first, after

        assert in_thread(abandon_then_recv, scaled(6)) == ("part1", "next")


@pytest.mark.parametrize("delay", [0.0, 0.2])
def test_breaking_out_of_a_stream_discards_the_rest_of_its_message(start_server: StartServer, delay: float) -> None:
    server = start_server(three_fragments_then_next(delay))
    with connect(url(server)) as ws:
        for piece in ws.recv_streaming(timeout=scaled(5)):
            assert piece == "part1"
            break
        assert ws.recv(timeout=scaled(3)) == "next"
        with pytest.raises(TimeoutError):  # no tail of the abandoned message comes later either
            ws.recv(timeout=0.6)


def test_another_threads_recv_honours_its_timeout_while_a_stream_is_unfinished(start_server: StartServer) -> None:
    server = start_server(three_fragments_then_next(0.3))
    with connect(url(server)) as ws:
        stream = ws.recv_streaming(timeout=scaled(5))
        assert next(stream) == "part1"

        def recv_with_timeout() -> float:
            start = time.monotonic()
            with pytest.raises(TimeoutError):
                ws.recv(timeout=0.3)
            return time.monotonic() - start

        assert in_thread(recv_with_timeout, scaled(3)) < scaled(2)
        assert list(stream) == ["part2", "part3", ""]  # a generator ends with FIN in an empty frame
        assert in_thread(lambda: ws.recv(timeout=scaled(3)), scaled(5)) == "next"


# --- item 10: close codes ------------------------------------------------------------------------------


@pytest.mark.parametrize("code", [999, 1004, 1005, 1006, 1015, 1016, 2999, 5000])
def test_close_refuses_codes_that_may_not_be_sent_open_or_closed(start_server: StartServer, code: int) -> None:
    server = start_server(echo)
    ws = connect(url(server))
    with pytest.raises(ValueError, match=f"close code {code} may not be sent: .*1000-1003, 1007-1014 or 3000-4999"):
        ws.close(code)
    ws.send("still open")
    assert ws.recv(timeout=scaled(5)) == "still open"
    ws.close()
    with pytest.raises(ValueError, match=f"close code {code} may not be sent"):
        ws.close(code)


# --- item 11: what help() shows --------------------------------------------------------------------------


def test_help_shows_the_handshake_and_socket_attributes() -> None:
    text = pydoc.render_doc(Connection, renderer=pydoc.plaintext)
    for name in ("request", "response", "subprotocol", "remote_address", "local_address", "close_code"):
        assert f"\n |  {name}\n |      " in text, name  # listed with its own documentation
    assert "connections" in pydoc.render_doc(Server, renderer=pydoc.plaintext)
    assert serve.__doc__ is not None and "process_request(pending, request)" in serve.__doc__
    stream_doc = Connection.recv_streaming.__doc__ or ""
    assert "max_size" in stream_doc and "abandons the message" in stream_doc


def test_the_handshake_attributes_still_read_as_before(start_server: StartServer) -> None:
    server = start_server(echo, subprotocols=["chat"])
    with connect(url(server) + "room?x=1", subprotocols=["chat"]) as ws:
        assert ws.request.path == "/room?x=1" and ws.subprotocol == "chat" and ws.response.status == 101
        assert ws.remote_address[1] == server.port and ws.local_address[0] == "127.0.0.1"
        assert wait_for_server_side(server).request.path == "/room?x=1"


def wait_for_server_side(server: Server) -> Any:
    end = time.monotonic() + scaled(5)
    while not server.connections and time.monotonic() < end:
        time.sleep(0.01)
    return next(iter(list(server.connections)))


# --- item 15: text as bytes, bytes as text -----------------------------------------------------------------


def test_bytes_go_out_as_text_and_text_comes_back_as_bytes(start_server: StartServer) -> None:
    server = start_server(echo)  # echoes each message with the type it came with
    with connect(url(server)) as ws:
        ws.send("café".encode(), text=True)
        assert ws.recv(timeout=scaled(5)) == "café"
        ws.send("binary", text=False)
        assert ws.recv(timeout=scaled(5)) == b"binary"
        ws.send("text")
        assert ws.recv(timeout=scaled(5), decode=False) == b"text"
        ws.send(b"caf\xc3\xa9")
        assert ws.recv(timeout=scaled(5), decode=True) == "café"
        ws.send([b"caf\xc3", b"\xa9!"], text=True)  # a character split across fragments
        assert ws.recv(timeout=scaled(5)) == "café!"
        ws.send(["a", "b"], text=False)
        assert ws.recv(timeout=scaled(5)) == b"ab"
        ws.send(["x", "y"])
        assert b"".join(ws.recv_streaming(timeout=scaled(5), decode=False)) == b"xy"  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="text=True needs UTF-8"):
            ws.send(b"\xff", text=True)
        ws.send("still open")
        assert ws.recv(timeout=scaled(5)) == "still open"


def test_the_bytes_a_websockets_server_receives_as_text(websockets_server: Callable[..., int]) -> None:
    """A real peer sees a text frame: the `websockets` server echoes what it received, typed."""

    def typed_echo(ws: Any) -> None:
        for message in ws:
            ws.send(type(message).__name__)

    port = websockets_server(typed_echo)
    with connect(f"ws://127.0.0.1:{port}/", ping_interval=None) as ws:
        ws.send(b"abc", text=True)
        assert ws.recv(timeout=scaled(5)) == "str"
        ws.send("abc", text=False)
        assert ws.recv(timeout=scaled(5)) == "bytes"


# --- recv(decode=True) on binary data that is not UTF-8 ------------------------------------------------------


def test_a_binary_message_that_is_not_utf8_is_not_lost_by_decode_true(start_server: StartServer) -> None:
    from rawws import BinaryNotUTF8

    server = start_server(echo)
    with connect(url(server)) as ws:
        ws.send(b"\xff\xfe not text")
        ws.send("next")
        with pytest.raises(BinaryNotUTF8) as caught:
            ws.recv(timeout=scaled(5), decode=True)
        assert caught.value.message == b"\xff\xfe not text"  # the message is in the error, whole
        assert isinstance(caught.value, UnicodeDecodeError) and isinstance(caught.value, ValueError)
        assert "binary message (11 bytes) is not UTF-8" in str(caught.value)
        assert ".message" in str(caught.value)
        assert ws.recv(timeout=scaled(5), decode=True) == "next"  # the connection goes on with the next one


# --- wrong-type arguments are TypeErrors naming the argument ---------------------------------------------------


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda ws: ws.close("1000"), r"close\(code=...\) takes an int close code such as 1000, not str '1000'"),
        (lambda ws: ws.close(3000.0), r"close\(code=...\) takes an int close code such as 1000, not float 3000.0"),
        (lambda ws: ws.close(1000, b"bye"), r"close\(reason=...\) takes a str, not bytes"),
        (lambda ws: ws.start_closing(True), r"close\(code=...\) takes an int close code"),
        (lambda ws: ws.send("s", text="yes"), r"send\(text=...\) takes True, False or None, not str 'yes'"),
    ],
)
def test_wrong_types_are_type_errors_naming_the_argument(
    start_server: StartServer, call: Callable[[Connection], Any], message: str
) -> None:
    server = start_server(echo)
    with connect(url(server)) as ws:
        with pytest.raises(TypeError, match=message):
            call(ws)
        ws.send("still open")
        assert ws.recv(timeout=scaled(5)) == "still open"


@pytest.mark.parametrize(
    ("headers", "message"),
    [
        ("X-A: 1", "additional_headers takes a mapping or a sequence of \\(name, value\\) pairs of str, not str"),
        ([("X-A", 1)], r"got \('X-A', 1\) among them"),
        (5, "not int 5"),
    ],
)
def test_additional_headers_of_the_wrong_type_is_a_type_error(
    start_server: StartServer, headers: Any, message: str
) -> None:
    server = start_server(echo)
    with pytest.raises(TypeError, match=message):
        connect(url(server), additional_headers=headers)
    with connect(url(server), additional_headers=[["X-A", "1"]]) as ws:  # lists as pairs still work
        assert ("X-A", "1") in list(ws.request.headers.items())


# --- send(generator) streams ------------------------------------------------------------------------------


def test_send_streams_a_generator_piece_by_piece(start_server: StartServer) -> None:
    """Each piece after the first reaches the peer while the generator is still working on the next one."""
    arrived: list[str] = []
    got_piece = threading.Condition()

    def handler(ws: Any) -> None:
        for piece in ws.recv_streaming(timeout=scaled(10)):
            with got_piece:
                arrived.append(piece)
                got_piece.notify_all()
        ws.send("".join(arrived))

    def seen(count: int) -> bool:
        with got_piece:
            return got_piece.wait_for(lambda: len(arrived) >= count, scaled(5))

    reached_peer_while_producing: list[bool] = []

    def slow_pieces() -> Iterator[str]:
        yield "one "
        yield "two "
        reached_peer_while_producing.append(seen(2))  # "two " must be out before "three " exists
        yield "three "
        reached_peer_while_producing.append(seen(3))
        yield "four"

    server = start_server(handler)
    with connect(url(server)) as ws:
        ws.send(slow_pieces())
        assert ws.recv(timeout=scaled(5)) == "one two three four"
    assert reached_peer_while_producing == [True, True]
    assert arrived[-1] == ""  # a generator's message ends with an empty frame carrying FIN


def test_a_list_is_sent_with_fin_on_its_last_piece(start_server: StartServer) -> None:
    pieces: list[Any] = []

    def handler(ws: Any) -> None:
        pieces.extend(ws.recv_streaming(timeout=scaled(5)))
        ws.send("done")

    server = start_server(handler)
    with connect(url(server)) as ws:
        ws.send(["a", "b", "c"])
        assert ws.recv(timeout=scaled(5)) == "done"
    assert pieces == ["a", "b", "c"]


def test_text_true_bytes_generator_that_ends_inside_a_character_fails_with_1011(start_server: StartServer) -> None:
    server = start_server(echo)
    with connect(url(server)) as ws:
        with pytest.raises(ValueError, match="text=True needs UTF-8"):
            ws.send((piece for piece in [b"caf", b"\xc3"]), text=True)
        with pytest.raises(ConnectionClosedError):
            ws.recv(timeout=scaled(5))
        assert ws.protocol.close_sent is not None and ws.protocol.close_sent[0] == 1011
