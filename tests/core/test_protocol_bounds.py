"""The sans-I/O core's own bounds, stepped through with byte strings (no sockets)."""

from __future__ import annotations

import pytest

from rawws.exceptions import PayloadTooBig
from rawws.frames import Frame, FrameParser, Opcode, encode_frame
from rawws.protocol import CLIENT, SERVER, BinaryMessage, Failure, Ping, Protocol, TextMessage


def masked(opcode: int, payload: bytes = b"", fin: bool = True) -> bytes:
    return encode_frame(Frame(opcode, payload, fin), mask=True)


def test_pongs_not_yet_taken_are_replaced_by_the_newest() -> None:
    p = Protocol(SERVER)
    events = p.receive_data(b"".join(masked(Opcode.PING, b"%d" % i) for i in range(500)))
    assert len(events) == 500 and all(isinstance(event, Ping) for event in events)
    assert p.pong_pending
    assert p.data_to_send() == [b"\x8a\x03499"]  # §5.5.3: only the most recent ping is answered
    assert not p.pong_pending
    p.receive_data(masked(Opcode.PING, b"again"))
    assert p.data_to_send() == [b"\x8a\x05again"]


def test_a_replaced_pong_keeps_its_place_behind_earlier_output() -> None:
    p = Protocol(SERVER)
    p.send_text("first")
    p.receive_data(masked(Opcode.PING, b"1"))
    p.send_text("second")
    p.receive_data(masked(Opcode.PING, b"2"))
    assert p.data_to_send() == [b"\x81\x05first", b"\x8a\x012", b"\x81\x06second"]


def test_max_messages_leaves_the_rest_unparsed() -> None:
    p = Protocol(SERVER)
    data = b"".join(masked(Opcode.TEXT, b"m%d" % i) for i in range(10))
    assert p.receive_data(data, max_messages=3) == [TextMessage("m0"), TextMessage("m1"), TextMessage("m2")]
    assert p.input_waiting and p.parser_buffered == len(data) - 3 * len(masked(Opcode.TEXT, b"m0"))
    assert p.receive_data(b"", max_messages=5) == [TextMessage(f"m{i}") for i in range(3, 8)]
    assert p.receive_data(b"") == [TextMessage("m8"), TextMessage("m9")]
    assert not p.input_waiting and p.parser_buffered == 0


def test_max_messages_counts_a_fragmented_message_once_and_control_frames_not_at_all() -> None:
    p = Protocol(SERVER)
    data = (
        masked(Opcode.BINARY, b"a", fin=False)
        + masked(Opcode.PING, b"p")
        + masked(Opcode.CONT, b"b")
        + masked(Opcode.BINARY, b"next")
    )
    events = p.receive_data(data, max_messages=1)
    assert events == [Ping(b"p"), BinaryMessage(b"ab")]
    assert p.input_waiting
    assert p.receive_data(b"") == [BinaryMessage(b"next")]


@pytest.mark.parametrize("size", [0, 1, 63])
def test_tiny_fragments_count_at_least_64_bytes_each(size: int) -> None:
    parser = FrameParser(mask_expected=True, max_size=2**20)
    accepted = 2**20 // 64  # the first fragment and then continuations: this many fit exactly
    stream = masked(Opcode.BINARY, bytes(size), fin=False) + masked(Opcode.CONT, bytes(size), fin=False) * (
        accepted - 1
    )
    assert len(parser.feed(stream)) == accepted
    with pytest.raises(PayloadTooBig, match="fragments too small"):
        parser.feed(masked(Opcode.CONT, bytes(size), fin=False))


def test_64_byte_fragments_of_a_message_as_large_as_max_size_still_fit() -> None:
    parser = FrameParser(mask_expected=True, max_size=4 * 2**20)
    pieces = 4 * 2**20 // 64
    stream = (
        masked(Opcode.BINARY, bytes(64), fin=False)
        + masked(Opcode.CONT, bytes(64), fin=False) * (pieces - 2)
        + masked(Opcode.CONT, bytes(64), fin=True)
    )
    assert len(parser.feed(stream)) == pieces


def test_small_max_size_scales_the_fragment_charge_down() -> None:
    parser = FrameParser(mask_expected=True, max_size=10)
    parser.feed(masked(Opcode.BINARY, b"123", fin=False) + masked(Opcode.CONT, b"", fin=False) * 7)
    with pytest.raises(PayloadTooBig):
        parser.feed(masked(Opcode.CONT, b"", fin=False))


def test_reassembly_without_fragment_events_costs_one_buffer() -> None:
    p = Protocol(SERVER, max_size=None)
    stream = masked(Opcode.TEXT, "é".encode()[:1], fin=False)
    stream += masked(Opcode.CONT, "é".encode()[1:], fin=False)
    stream += b"".join(masked(Opcode.CONT, b"x", fin=False) for _ in range(1000)) + masked(Opcode.CONT, b"!")
    assert p.receive_data(stream) == [TextMessage("é" + "x" * 1000 + "!")]


@pytest.mark.parametrize("role", [SERVER, CLIENT])
def test_invalid_utf8_inside_a_frame_still_arriving_fails_at_once(role: object) -> None:
    p = Protocol(role)  # type: ignore[arg-type]
    frame = encode_frame(Frame(Opcode.TEXT, b"fine \xff" + bytes(10_000)), mask=role is SERVER)
    events = p.receive_data(frame[:100])  # the frame is far from complete
    assert len(events) == 1 and isinstance(events[0], Failure) and events[0].error.close_code == 1007


def test_a_character_split_inside_a_frame_still_arriving_is_not_a_failure() -> None:
    p = Protocol(SERVER)
    payload = "ab€".encode() * 1000
    frame = masked(Opcode.TEXT, payload)
    events = []
    for cut in range(0, len(frame), 7):  # cuts fall inside the three-byte euro sign
        events += p.receive_data(frame[cut : cut + 7])
    assert events == [TextMessage("ab€" * 1000)]


def test_a_continuation_still_arriving_is_checked_from_the_messages_state() -> None:
    p = Protocol(SERVER)
    assert p.receive_data(masked(Opcode.TEXT, b"\xe2\x82", fin=False)) == []  # half a euro sign
    continuation = masked(Opcode.CONT, b"\xac ok then \xc3\x28" + bytes(5000))
    events = p.receive_data(continuation[:40])
    assert len(events) == 1 and isinstance(events[0], Failure) and events[0].error.close_code == 1007


def test_frames_still_arriving_are_peeked_at_only_when_they_hold_text() -> None:
    p = Protocol(SERVER, max_size=None)
    starts: list[int] = []
    peek = p._parser.peek_payload  # noqa: SLF001 - counting the work, not changing it

    def counting(start: int) -> tuple[int, bytes] | None:
        starts.append(start)
        return peek(start)

    p._parser.peek_payload = counting  # type: ignore[method-assign]  # noqa: SLF001
    binary = masked(Opcode.BINARY, bytes(2**20))
    for i in range(0, len(binary), 65536):
        p.receive_data(binary[i : i + 65536])
    assert starts == []  # a binary frame is never copied while it arrives
    text = masked(Opcode.TEXT, b"x" * 2**20)
    for i in range(0, len(text), 65536):
        p.receive_data(text[i : i + 65536])
    assert len(starts) == 16 and starts == sorted(starts) and len(set(starts)) == 16  # each byte checked once


def _deflate_pair(max_size: int) -> tuple[Protocol, Protocol]:
    from rawws.extensions.permessage_deflate import DeflateConfig
    from rawws.opening import ClientHandshake, ServerHandshake

    client, server = (
        ClientHandshake("ws://x/", compression=DeflateConfig()),
        ServerHandshake(compression=DeflateConfig()),
    )
    request = server.receive_data(client.data_to_send())
    assert request is not None
    server.accept(request)
    client.receive_data(server.data_to_send())
    return client.protocol(), server.protocol(max_size=max_size)


def test_incompressible_messages_up_to_max_size_pass_compression() -> None:
    import os

    data = os.urandom(2**20)  # deflate makes it slightly larger on the wire
    client, server = _deflate_pair(max_size=2**20)
    client.send_binary(data)
    wire = b"".join(client.data_to_send())
    assert len(wire) > 2**20 + 14
    assert server.receive_data(wire) == [BinaryMessage(data)]
    client, server = _deflate_pair(max_size=2**20)
    client.send_binary(data + b"!")
    [failure] = server.receive_data(b"".join(client.data_to_send()))
    assert isinstance(failure, Failure) and failure.error.close_code == 1009
