"""RFC 6455 §5 and §7 in the sans-I/O state machine."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rawws.exceptions import InvalidState, ProtocolError
from rawws.frames import Frame, FrameParser, Opcode, encode_frame, serialize_close
from rawws.protocol import (
    CLIENT,
    SERVER,
    BinaryMessage,
    CloseReceived,
    Failure,
    Fragment,
    Ping,
    Pong,
    Protocol,
    State,
    TextMessage,
)
from rawws.testing import chunkings, fragmented_message, frame_streams, split


def from_client(*frames: Frame) -> bytes:
    """Wire bytes as a client sends them (masked), for a server-side Protocol."""
    return b"".join(encode_frame(f, mask=True) for f in frames)


def sent_frames(protocol: Protocol) -> list[Frame]:
    """Decode what ``protocol`` queued for its peer."""
    parser = FrameParser(mask_expected=protocol.role is CLIENT, allowed_rsv=0x70)
    return parser.feed(b"".join(bytes(b) for b in protocol.data_to_send()))


def failure_code(events: list[object]) -> int:
    assert isinstance(events[-1], Failure), events
    return events[-1].error.close_code


def test_text_and_binary_messages() -> None:
    server = Protocol(SERVER)
    events = server.receive_data(from_client(Frame(Opcode.TEXT, "héllo".encode()), Frame(Opcode.BINARY, b"\x00")))
    assert events == [TextMessage("héllo"), BinaryMessage(b"\x00")]


def test_reassembly_with_interleaved_control_frames() -> None:
    server = Protocol(SERVER)
    wire = from_client(
        Frame(Opcode.TEXT, b"Hel", fin=False),
        Frame(Opcode.PING, b"p"),
        Frame(Opcode.CONT, b"l", fin=False),
        Frame(Opcode.PONG, b"q"),
        Frame(Opcode.CONT, b"o"),
    )
    assert server.receive_data(wire) == [Ping(b"p"), Pong(b"q"), TextMessage("Hello")]
    assert sent_frames(server) == [Frame(Opcode.PONG, b"p")]


def test_fragment_events() -> None:
    server = Protocol(SERVER, fragment_events=True)
    wire = from_client(Frame(Opcode.TEXT, b"\xc3", fin=False), Frame(Opcode.CONT, b"\xa9!"))
    assert server.receive_data(wire) == [Fragment("", True, False), Fragment("é!", False, True)]


def test_continuation_without_a_message_fails_1002() -> None:
    events = Protocol(SERVER).receive_data(from_client(Frame(Opcode.CONT, b"x")))
    assert failure_code(events) == 1002


def test_new_data_frame_inside_a_message_fails_1002() -> None:
    wire = from_client(Frame(Opcode.TEXT, b"a", fin=False), Frame(Opcode.BINARY, b"b"))
    assert failure_code(Protocol(SERVER).receive_data(wire)) == 1002


def test_invalid_utf8_fails_1007_without_waiting_for_the_last_fragment() -> None:
    server = Protocol(SERVER)
    events = server.receive_data(from_client(Frame(Opcode.TEXT, b"ok\xed\xa0", fin=False)))
    assert failure_code(events) == 1007
    assert sent_frames(server) == [Frame(Opcode.CLOSE, serialize_close(1007, str(events[-1].error)[:123]))]  # type: ignore[union-attr]
    assert server.should_close_tcp
    assert server.receive_data(from_client(Frame(Opcode.TEXT, b"late"))) == []


def test_invalid_utf8_in_a_single_frame_fails_1007() -> None:
    assert failure_code(Protocol(SERVER).receive_data(from_client(Frame(Opcode.TEXT, b"\xff")))) == 1007


def test_messages_before_a_violation_are_still_delivered() -> None:
    wire = from_client(Frame(Opcode.TEXT, b"one"), Frame(Opcode.TEXT, b"two")) + bytes([0x83, 0x80, 1, 2, 3, 4])
    events = Protocol(SERVER).receive_data(wire)
    assert events[:2] == [TextMessage("one"), TextMessage("two")]
    assert failure_code(events) == 1002


def test_deferred_failure_lets_replies_go_first() -> None:
    server = Protocol(SERVER, defer_failure=True)
    events = server.receive_data(from_client(Frame(Opcode.TEXT, b"hi")) + bytes([0x83, 0x80, 1, 2, 3, 4]))
    assert server.data_to_send() == []
    server.send_text("reply to hi")
    server.fail(failure_code(events))
    assert [f.opcode for f in sent_frames(server)] == [Opcode.TEXT, Opcode.CLOSE]
    assert server.should_close_tcp


def test_max_size_fails_1009() -> None:
    server = Protocol(SERVER, max_size=4)
    assert failure_code(server.receive_data(from_client(Frame(Opcode.BINARY, b"12345")))) == 1009


@pytest.mark.parametrize(
    ("payload", "code"),
    [(b"\x03", 1002), ((1005).to_bytes(2, "big"), 1002), ((2000).to_bytes(2, "big"), 1002), (b"\x03\xe8\xff", 1007)],
)
def test_invalid_close_frames(payload: bytes, code: int) -> None:
    server = Protocol(SERVER)
    assert failure_code(server.receive_data(from_client(Frame(Opcode.CLOSE, payload)))) == code
    assert sent_frames(server)[0].payload[:2] == code.to_bytes(2, "big")


def test_pings_are_answered_with_the_same_payload() -> None:
    client = Protocol(CLIENT)
    assert client.receive_data(encode_frame(Frame(Opcode.PING, b"Hello"))) == [Ping(b"Hello")]
    assert sent_frames(client) == [Frame(Opcode.PONG, b"Hello")]
    quiet = Protocol(CLIENT, auto_pong=False)
    quiet.receive_data(encode_frame(Frame(Opcode.PING, b"x")))
    assert quiet.data_to_send() == []


def test_peer_initiated_close_is_echoed_and_server_closes_tcp() -> None:
    server = Protocol(SERVER)
    events = server.receive_data(from_client(Frame(Opcode.CLOSE, serialize_close(1001, "bye"))))
    assert events == [CloseReceived(1001, "bye")]
    assert sent_frames(server) == [Frame(Opcode.CLOSE, serialize_close(1001))]
    assert server.state is State.CLOSED and server.should_close_tcp
    with pytest.raises(InvalidState):
        server.send_text("too late")


def test_client_waits_for_the_server_to_close_tcp() -> None:
    client = Protocol(CLIENT)
    client.receive_data(encode_frame(Frame(Opcode.CLOSE, b"")))
    assert sent_frames(client) == [Frame(Opcode.CLOSE, b"")]  # no status in, no status out
    assert client.state is State.CLOSED and not client.should_close_tcp
    client.receive_eof()
    assert client.should_close_tcp


def test_local_close_then_peer_reply() -> None:
    client = Protocol(CLIENT)
    client.send_close(1000, "done")
    assert client.state is State.CLOSING
    with pytest.raises(InvalidState):
        client.send_binary(b"x")
    assert sent_frames(client) == [Frame(Opcode.CLOSE, serialize_close(1000, "done"))]
    # Data the server sent before it saw our close is still delivered.
    reply = encode_frame(Frame(Opcode.TEXT, b"last")) + encode_frame(Frame(Opcode.CLOSE, serialize_close(1000)))
    events = client.receive_data(reply)
    assert events == [TextMessage("last"), CloseReceived(1000, "")]
    assert client.data_to_send() == []  # no second close frame
    assert client.state is State.CLOSED


def test_data_after_close_frame_is_ignored() -> None:
    server = Protocol(SERVER)
    events = server.receive_data(from_client(Frame(Opcode.CLOSE, b""), Frame(Opcode.TEXT, b"ignored")))
    assert events == [CloseReceived(1005, "")]


@pytest.mark.parametrize("ending", ["close", "invalid utf-8"])
def test_nothing_waits_unparsed_once_receiving_has_ended(ending: str) -> None:
    """Frames after the close frame (or a failure) in the same read are never parsed, so none is "waiting".

    An I/O layer that parses waiting input until none is left would otherwise spin for ever.
    """
    server = Protocol(SERVER)
    last = Frame(Opcode.CLOSE, b"") if ending == "close" else Frame(Opcode.TEXT, b"\xff")
    data = from_client(Frame(Opcode.TEXT, b"a"), last, *[Frame(Opcode.TEXT, b"after")] * 20)
    events = server.receive_data(data, max_messages=1)
    for _ in range(25):
        if not server.input_waiting:
            break
        events += server.receive_data(b"", max_messages=1)
    assert not server.input_waiting
    assert events[0] == TextMessage("a")
    assert len(events) == 2


def test_eof_without_close_is_abnormal() -> None:
    server = Protocol(SERVER)
    server.receive_eof()
    assert server.close_code == 1006


def test_fragmented_send() -> None:
    client = Protocol(CLIENT)
    client.send_text("ab", fin=False)
    with pytest.raises(InvalidState):
        client.send_text("interleaved")
    client.send_ping(b"!")  # control frames may go between fragments (§5.4)
    client.send_continuation("c", fin=True)
    frames = sent_frames(client)
    assert [f.opcode for f in frames] == [Opcode.TEXT, Opcode.PING, Opcode.CONT]
    server = Protocol(SERVER)
    server.receive_data(b"")
    with pytest.raises(InvalidState):
        server.send_continuation(b"x", fin=True)


def test_control_payload_limit_on_send() -> None:
    with pytest.raises(ValueError):
        Protocol(SERVER).send_ping(bytes(126))


# --- properties ---------------------------------------------------------------------------------


@given(st.lists(fragmented_message(), min_size=1, max_size=4), chunkings(), st.booleans())
@settings(max_examples=200)
def test_messages_survive_any_fragmentation_and_chunking(
    batch: list[tuple[str | bytes, list[Frame]]], cuts: list[int], server_side: bool
) -> None:
    wire = b"".join(encode_frame(f, mask=server_side) for _, frames in batch for f in frames)
    protocol = Protocol(SERVER if server_side else CLIENT)
    got: list[str | bytes] = []
    for chunk in split(wire, cuts):
        for event in protocol.receive_data(chunk):
            assert not isinstance(event, Failure), event
            if isinstance(event, (TextMessage, BinaryMessage)):
                got.append(event.data)
    assert got == [message for message, _ in batch]


@given(st.one_of(st.binary(max_size=2000), frame_streams("client")), chunkings(), st.integers(0, 3000))
@settings(max_examples=400)
def test_random_bytes_never_raise_and_stay_bounded(data: bytes, cuts: list[int], max_size: int) -> None:
    protocol = Protocol(SERVER, max_size=max_size)
    for chunk in split(data, cuts):
        events = protocol.receive_data(chunk)  # peer errors become Failure events, never exceptions
        for event in events:
            if isinstance(event, Failure):
                assert isinstance(event.error, ProtocolError)
                assert event.error.close_code in (1002, 1007, 1009)
        assert protocol.parser_buffered <= max_size + 14 + len(chunk)


def test_the_module_docstring_walkthrough_runs() -> None:
    """The REPL session at the top of protocol.py (and in the README) is real."""
    import doctest

    import rawws.protocol

    assert doctest.testmod(rawws.protocol).failed == 0


@pytest.mark.parametrize("code", [0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000])
def test_codes_that_may_not_be_sent_are_refused_with_the_list_of_those_that_may(code: int) -> None:
    """Issue 13 item 10: 1005 too (it used to send an empty close frame), with one message for all."""
    protocol = Protocol(CLIENT)
    with pytest.raises(ValueError, match=f"close code {code} may not be sent: .*1000-1003, 1007-1014 or 3000-4999"):
        protocol.send_close(code)
    assert protocol.state is State.OPEN and protocol.data_to_send() == []
