"""RFC 6455 §5: the frame codec, masking and close payloads."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rawws.exceptions import PayloadTooBig, ProtocolError
from rawws.frames import (
    CloseCode,
    Frame,
    FrameParser,
    Opcode,
    apply_mask,
    encode_frame,
    is_valid_close_code,
    parse_close,
    serialize_close,
)
from rawws.testing import chunkings, frames, split

KEY = bytes.fromhex("37fa213d")


def client_parser(**kwargs: object) -> FrameParser:
    """The parser a server uses: it reads what clients send."""
    return FrameParser(mask_expected=True, **kwargs)  # type: ignore[arg-type]


def server_parser(**kwargs: object) -> FrameParser:
    return FrameParser(mask_expected=False, **kwargs)  # type: ignore[arg-type]


# --- the RFC's own examples (§5.7) -------------------------------------------


def test_rfc_single_frame_unmasked_text() -> None:
    wire = bytes.fromhex("810548656c6c6f")
    assert encode_frame(Frame(Opcode.TEXT, b"Hello")) == wire
    assert server_parser().feed(wire) == [Frame(Opcode.TEXT, b"Hello")]


def test_rfc_single_frame_masked_text() -> None:
    wire = bytes.fromhex("818537fa213d7f9f4d5158")
    assert encode_frame(Frame(Opcode.TEXT, b"Hello"), mask=True, mask_key=KEY) == wire
    assert client_parser().feed(wire) == [Frame(Opcode.TEXT, b"Hello")]


def test_rfc_fragmented_unmasked_text() -> None:
    wire = bytes.fromhex("010348656c") + bytes.fromhex("80026c6f")
    assert server_parser().feed(wire) == [Frame(Opcode.TEXT, b"Hel", fin=False), Frame(Opcode.CONT, b"lo")]
    assert encode_frame(Frame(Opcode.TEXT, b"Hel", fin=False)) + encode_frame(Frame(Opcode.CONT, b"lo")) == wire


def test_rfc_ping_and_masked_pong() -> None:
    ping = bytes.fromhex("890548656c6c6f")
    pong = bytes.fromhex("8a8537fa213d7f9f4d5158")
    assert encode_frame(Frame(Opcode.PING, b"Hello")) == ping
    assert encode_frame(Frame(Opcode.PONG, b"Hello"), mask=True, mask_key=KEY) == pong
    assert server_parser().feed(ping) == [Frame(Opcode.PING, b"Hello")]
    assert client_parser().feed(pong) == [Frame(Opcode.PONG, b"Hello")]


def test_rfc_256_bytes_binary_header() -> None:
    wire = encode_frame(Frame(Opcode.BINARY, bytes(256)))
    assert wire[:4] == bytes.fromhex("827e0100")
    assert len(wire) == 4 + 256


def test_rfc_64k_binary_header() -> None:
    wire = encode_frame(Frame(Opcode.BINARY, bytes(65536)))
    assert wire[:10] == bytes.fromhex("827f0000000000010000")
    assert server_parser().feed(wire) == [Frame(Opcode.BINARY, bytes(65536))]


@pytest.mark.parametrize(("size", "header_size"), [(0, 2), (125, 2), (126, 4), (65535, 4), (65536, 10)])
def test_length_uses_minimal_form(size: int, header_size: int) -> None:
    assert len(encode_frame(Frame(Opcode.BINARY, bytes(size)))) == size + header_size


def test_non_minimal_length_is_accepted() -> None:
    # §5.2's "minimal number of bytes MUST be used" binds the sender; see SPEC_NOTES.md.
    wire = bytes.fromhex("827e0005") + b"hello"
    assert server_parser().feed(wire) == [Frame(Opcode.BINARY, b"hello")]


def test_rsv_bits_round_trip_when_allowed() -> None:
    frame = Frame(Opcode.TEXT, b"x", True, True, False, True)
    wire = encode_frame(frame)
    assert wire[0] == 0x80 | 0x40 | 0x10 | 1
    assert server_parser(allowed_rsv=0x70).feed(wire) == [frame]


# --- rejections, each naming its rule -------------------------------------------


@pytest.mark.parametrize("opcode", [3, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF])
def test_reserved_opcodes_are_refused(opcode: int) -> None:
    with pytest.raises(ProtocolError, match="reserved") as info:
        server_parser().feed(bytes([0x80 | opcode, 0]))
    assert info.value.close_code == 1002


def test_long_control_frame_is_refused() -> None:
    with pytest.raises(ProtocolError, match="125"):
        server_parser().feed(bytes([0x89, 126, 0, 126]))


def test_fragmented_control_frame_is_refused() -> None:
    with pytest.raises(ProtocolError, match="fragmented"):
        server_parser().feed(bytes([0x09, 0]))


def test_unclaimed_rsv_bits_are_refused() -> None:
    with pytest.raises(ProtocolError, match="RSV"):
        server_parser().feed(bytes([0xC1, 0]))
    with pytest.raises(ProtocolError, match="RSV"):
        server_parser(allowed_rsv=0x40).feed(bytes([0xA1, 0]))


def test_64_bit_length_with_top_bit_set_is_refused() -> None:
    with pytest.raises(ProtocolError, match="most significant bit"):
        server_parser().feed(bytes([0x82, 127]) + (1 << 63).to_bytes(8, "big"))


def test_server_refuses_unmasked_client_frame() -> None:
    with pytest.raises(ProtocolError, match="must mask"):
        client_parser().feed(bytes.fromhex("810548656c6c6f"))


def test_client_refuses_masked_server_frame() -> None:
    with pytest.raises(ProtocolError, match="must not mask"):
        server_parser().feed(bytes.fromhex("818537fa213d7f9f4d5158"))


def test_oversized_frame_is_refused_from_its_header() -> None:
    parser = server_parser(max_size=1000)
    header = bytes([0x82, 127]) + (10**12).to_bytes(8, "big")
    with pytest.raises(PayloadTooBig) as info:
        parser.feed(header)  # no payload at all has arrived
    assert info.value.close_code == 1009
    assert parser.buffered == 0


def test_max_size_counts_the_whole_fragmented_message() -> None:
    parser = server_parser(max_size=10)
    parser.feed(encode_frame(Frame(Opcode.BINARY, b"123456", fin=False)))
    with pytest.raises(PayloadTooBig):
        parser.feed(encode_frame(Frame(Opcode.CONT, b"123456")))


def test_frames_before_an_error_are_returned_then_the_error_raised() -> None:
    parser = server_parser()
    good = encode_frame(Frame(Opcode.TEXT, b"ok"))
    assert parser.feed(good + bytes([0x83, 0])) == [Frame(Opcode.TEXT, b"ok")]
    assert isinstance(parser.error, ProtocolError)
    with pytest.raises(ProtocolError):
        parser.feed(b"")


# --- masking (§5.3) -----------------------------------------------------------------


def reference_mask(data: bytes, key: bytes) -> bytes:
    return bytes(b ^ key[i % 4] for i, b in enumerate(data))


@given(st.binary(max_size=10000), st.binary(min_size=4, max_size=4))
def test_apply_mask_matches_per_byte_xor_and_is_an_involution(data: bytes, key: bytes) -> None:
    masked = apply_mask(data, key)
    assert masked == reference_mask(data, key)
    assert apply_mask(masked, key) == data


@pytest.mark.parametrize("size", [0, 1, 3, 4, 5, 2047, 2048, 2049, 4099, 70001])
def test_apply_mask_sizes_around_the_method_switch(size: int) -> None:
    data = bytes(range(256)) * (size // 256 + 1)
    data = data[:size]
    assert apply_mask(data, KEY) == reference_mask(data, KEY)
    assert apply_mask(bytearray(data), KEY) == reference_mask(data, KEY)
    assert apply_mask(memoryview(data), KEY) == reference_mask(data, KEY)


def test_apply_mask_requires_a_4_byte_key() -> None:
    with pytest.raises(ValueError):
        apply_mask(b"abc", b"abc")


# --- properties ------------------------------------------------------------------------


@given(st.lists(frames(rsv=True), max_size=6), st.booleans(), chunkings())
@settings(max_examples=300)
def test_encode_parse_round_trip_any_chunking(batch: list[Frame], client: bool, cuts: list[int]) -> None:
    wire = b"".join(encode_frame(f, mask=client) for f in batch)
    parser = FrameParser(mask_expected=client, allowed_rsv=0x70)
    got: list[Frame] = []
    for chunk in split(wire, cuts):
        got.extend(parser.feed(chunk))
    assert got == batch
    assert parser.buffered == 0


@given(st.lists(frames(), max_size=5), st.booleans())
def test_one_byte_at_a_time(batch: list[Frame], client: bool) -> None:
    wire = b"".join(encode_frame(f, mask=client) for f in batch)
    parser = FrameParser(mask_expected=client)
    got: list[Frame] = []
    for i in range(len(wire)):
        got.extend(parser.feed(wire[i : i + 1]))
    assert got == batch


@given(st.binary(max_size=3000), st.booleans(), chunkings(), st.integers(0, 5000))
@settings(max_examples=500)
def test_garbage_raises_only_protocol_errors_within_the_memory_bound(
    data: bytes, client: bool, cuts: list[int], max_size: int
) -> None:
    parser = FrameParser(mask_expected=client, max_size=max_size)
    try:
        for chunk in split(data, cuts):
            parser.feed(chunk)
            # Never more than one frame (header + at most max_size payload) is held.
            assert parser.buffered <= max_size + 14 + len(chunk)
    except ProtocolError:
        pass


# --- close payloads (§5.5.1, §7.4) --------------------------------------------------------


def test_close_payload_round_trip() -> None:
    assert parse_close(serialize_close(1000, "bye")) == (1000, "bye")
    assert parse_close(b"") == (CloseCode.NO_STATUS_RCVD, "")


@pytest.mark.parametrize("code", [1000, 1001, 1002, 1003, 1007, 1010, 1011, 1012, 1013, 1014, 3000, 4999])
def test_valid_wire_close_codes(code: int) -> None:
    assert is_valid_close_code(code)
    assert parse_close(code.to_bytes(2, "big")) == (code, "")


@pytest.mark.parametrize("code", [0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000, 65535])
def test_invalid_wire_close_codes(code: int) -> None:
    assert not is_valid_close_code(code)
    with pytest.raises(ProtocolError) as info:
        parse_close(code.to_bytes(2, "big"))
    assert info.value.close_code == 1002
    with pytest.raises(ValueError):
        serialize_close(code)


def test_one_byte_close_payload_is_invalid() -> None:
    with pytest.raises(ProtocolError) as info:
        parse_close(b"\x03")
    assert info.value.close_code == 1002


def test_close_reason_must_be_utf8() -> None:
    with pytest.raises(ProtocolError) as info:
        parse_close(b"\x03\xe8\xff")
    assert info.value.close_code == 1007


def test_close_reason_length_limit() -> None:
    serialize_close(1000, "x" * 123)
    with pytest.raises(ValueError):
        serialize_close(1000, "x" * 124)
