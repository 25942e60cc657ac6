"""rawws.dissect: every field of every frame, each rule broken named with its byte offset."""

from __future__ import annotations

import subprocess
import sys
import zlib
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rawws.dissect import FrameStream, InputEndsEarly, describe, dissect, fields, one_line, parse_hex, trace_line
from rawws.frames import Frame, Opcode, encode_frame
from rawws.testing import chunkings, frame_streams, split

ROOT = Path(__file__).resolve().parents[2]

# RFC 6455 §5.7's examples.
MASKED_HELLO = "81 85 37 fa 21 3d 7f 9f 4d 51 58"
UNMASKED_HELLO = "81 05 48 65 6c 6c 6f"


def test_a_masked_frame_field_by_field() -> None:
    frames, error = dissect(parse_hex(MASKED_HELLO))
    assert error is None
    (frame,) = frames
    assert (frame.fin, frame.rsv1, frame.rsv2, frame.rsv3, frame.opcode) == (True, False, False, False, 1)
    assert frame.masked and frame.mask_key == bytes.fromhex("37fa213d")
    assert (frame.length, frame.length_bits) == (5, 7)
    assert frame.wire_payload == bytes.fromhex("7f9f4d5158") and frame.payload == b"Hello"
    assert frame.text == "Hello"
    rows = {name: (value, section) for name, value, section in fields(frame)}
    assert rows["masking key"] == ("37 fa 21 3d", "§5.3")
    assert rows["payload (masked)"][0] == "7f 9f 4d 51 58"
    assert rows["payload (unmasked)"][0] == "48 65 6c 6c 6f"
    assert rows["opcode"] == ("0x1 TEXT", "§5.2, §11.8")
    assert rows["text"] == ("'Hello'", "§5.6")
    assert one_line(frame) == "TEXT fin=1 rsv=000 mask=37fa213d len=5 'Hello'"


def test_the_length_field_in_its_three_forms() -> None:
    short, _ = dissect(encode_frame(Frame(Opcode.BINARY, b"x" * 125)))
    medium, _ = dissect(encode_frame(Frame(Opcode.BINARY, b"x" * 256)))
    long, _ = dissect(encode_frame(Frame(Opcode.BINARY, b"x" * 65536)))
    assert [(f[0].length_bits, f[0].length) for f in (short, medium, long)] == [(7, 125), (16, 256), (64, 65536)]
    assert dict((n, v) for n, v, _ in fields(medium[0]))["length"] == "256 (126 then 16-bit 0x100)"
    assert dict((n, v) for n, v, _ in fields(long[0]))["length"] == "65536 (127 then 64-bit 0x10000)"
    # §5.2 wants the minimal form: a 16-bit field holding 5 is shown, with a note.
    padded, error = dissect(bytes.fromhex("817e0005") + b"Hello")
    assert error is None and "not the minimal form" in dict((n, v) for n, v, _ in fields(padded[0]))["length"]


def test_fragments_pings_and_close() -> None:
    data = parse_hex("01 03 48 65 6c  89 05 48 65 6c 6c 6f  80 02 6c 6f  88 06 03 e8 62 79 65 21")
    frames, error = dissect(data)
    assert error is None
    assert [one_line(f) for f in frames] == [
        "TEXT fin=0 rsv=000 unmasked len=3 'Hel'",
        "PING fin=1 rsv=000 unmasked len=5 48 65 6c 6c 6f",
        "CONT fin=1 rsv=000 unmasked len=2 'lo'",
        "CLOSE fin=1 rsv=000 unmasked len=6 code=1000 reason='bye!'",
    ]
    assert [f.offset for f in frames] == [0, 5, 12, 16]


def test_a_character_split_across_fragments_appears_in_the_later_one() -> None:
    euro = "€".encode()  # e2 82 ac
    frames, error = dissect(encode_frame(Frame(1, b"a" + euro[:2], False)) + encode_frame(Frame(0, euro[2:], True)))
    assert error is None and [f.text for f in frames] == ["a", "€"]


@pytest.mark.parametrize(
    ("hex_bytes", "role", "offset", "section", "words"),
    [
        ("83 00", None, 0, "§5.2", "opcode 0x3 is reserved"),
        ("c1 00", None, 0, "§5.2", "RSV1 is set"),
        ("a1 00", None, 0, "§5.2", "RSV2 is set"),
        ("81 00  09 00", None, 2, "§5.5", "must not be fragmented"),
        ("89 7e 00 7e" + " 00" * 126, None, 1, "§5.5", "at most 125 bytes"),
        ("82 7f 80 00 00 00 00 00 00 00", None, 2, "§5.2", "most significant bit"),
        ("81 00", "client", 1, "§5.1", "a client must mask"),
        ("81 80 00 00 00 00", "server", 1, "§5.1", "a server must not mask"),
        ("80 00", None, 0, "§5.4", "no fragmented message to continue"),
        ("01 00 81 00", None, 2, "§5.4", "before the fragmented one ends"),
        ("81 04 61 62 63 ff", None, 5, "§8.1", "not valid UTF-8"),
        ("01 02 61 62 80 02 63 c0", None, 7, "§8.1", "not valid UTF-8"),
        ("88 01 03", None, 2, "§5.5.1", "not 1 byte"),
        ("88 02 03 ed", None, 2, "§7.4.1", "close code 1005"),
        ("88 03 03 e8 ff", None, 4, "§5.5.1", "reason is not valid UTF-8"),
        ("88 00 81 00", None, 2, "§5.5.1", "follows the close frame"),
        ("81 05 48 65", None, 0, "§5.2", "ends inside a frame"),
    ],
)
def test_a_broken_rule_is_named_with_its_offset(
    hex_bytes: str, role: str | None, offset: int, section: str, words: str
) -> None:
    _, error = dissect(parse_hex(hex_bytes), role)
    assert error is not None
    assert (error.offset, error.section) == (offset, section)
    assert words in error.rule


def test_utf8_and_close_errors_name_their_close_code() -> None:
    assert dissect(parse_hex("81 01 ff"))[1].close_code == 1007  # type: ignore[union-attr]
    assert dissect(parse_hex("83 00"))[1].close_code == 1002  # type: ignore[union-attr]


def test_a_frame_with_a_bad_payload_is_still_shown() -> None:
    frames, error = dissect(parse_hex("81 01 ff"))
    assert error is not None and len(frames) == 1 and frames[0].text is None
    assert "error at byte 2: §8.1" in describe(frames, error)


def test_a_compressed_message_is_inflated_with_deflate() -> None:
    compressor = zlib.compressobj(wbits=-15)
    body = compressor.compress(b"hello hello hello") + compressor.flush(zlib.Z_SYNC_FLUSH)
    assert body.endswith(b"\x00\x00\xff\xff")
    wire = encode_frame(Frame(1, body[:-4], True, rsv1=True), mask=True)
    assert dissect(wire)[1] is not None  # RSV1 without the extension
    frames, error = dissect(wire, deflate=True)
    assert error is None
    assert frames[0].inflated == b"hello hello hello" and frames[0].text == "hello hello hello"
    assert "inflated=17 'hello hello hello'" in one_line(frames[0])


@given(frame_streams("client"), chunkings())
def test_the_result_does_not_depend_on_how_the_stream_was_split(stream: bytes, cuts: list[int]) -> None:
    whole = FrameStream("client")
    expected = whole.feed(stream)
    pieces = FrameStream("client")
    got = [frame for chunk in split(stream, cuts) for frame in pieces.feed(chunk)]
    assert got == expected and repr(pieces.error) == repr(whole.error)


@given(st.binary(max_size=300))
def test_any_bytes_give_frames_or_a_named_rule_never_a_crash(data: bytes) -> None:
    frames, error = dissect(data)
    assert error is None or (error.section.startswith(("§", "RFC 7692")) and 0 <= error.offset <= len(data))
    assert sum(f.size for f in frames) <= len(data)


def test_trace_lines_have_the_decode_form() -> None:
    frames, _ = dissect(parse_hex(UNMASKED_HELLO))
    wire = one_line(frames[0])
    traced = trace_line(1, True, b"Hello")
    assert traced == "TEXT fin=1 len=5 'Hello'"
    assert wire.replace(" rsv=000 unmasked", "") == traced
    assert trace_line(8, True, b"\x03\xe8") == "CLOSE fin=1 len=2 code=1000"
    assert trace_line(2, True, memoryview(b"\x00" * 100_000)).startswith("BINARY fin=1 len=100000 00 00")


@pytest.mark.parametrize("text", ["81 05 48 65 6c 6c 6f", "0x81,0x05,0x48,0x65,0x6c,0x6c,0x6f", "81:05:48656c\n6c6f"])
def test_hex_in_any_spacing(text: str) -> None:
    assert parse_hex(text) == bytes.fromhex("810548656c6c6f")


@pytest.mark.parametrize(("text", "words"), [("81 0", "even number"), ("8g", "not hex")])
def test_bad_hex_is_a_clear_error(text: str, words: str) -> None:
    with pytest.raises(ValueError, match=words):
        parse_hex(text)


def _decode(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "rawws", "decode", *args],
        input=stdin,
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )


def test_decode_command_from_arguments_stdin_and_file(tmp_path: Path) -> None:
    from_args = _decode(*MASKED_HELLO.split())
    assert from_args.returncode == 0, from_args.stderr
    assert "frame 1 at byte 0 (11 bytes): TEXT fin=1 rsv=000 mask=37fa213d len=5 'Hello'" in from_args.stdout
    assert "masking key         37 fa 21 3d  [§5.3]" in from_args.stdout
    assert _decode(stdin=MASKED_HELLO + "\n").stdout == from_args.stdout
    raw = tmp_path / "frames.bin"
    raw.write_bytes(parse_hex(MASKED_HELLO))
    assert _decode("--file", str(raw)).stdout == from_args.stdout


def test_decode_command_reports_the_broken_rule_and_exits_1() -> None:
    result = _decode("81 05 48 65 6c 6c 6f", "--role", "client")
    assert result.returncode == 1
    assert result.stdout.strip() == (
        "error at byte 1: §5.1: a client must mask every frame it sends to the server (a receiver closes with 1002)"
    )


def test_a_truncated_frame_shows_its_header_and_says_the_input_ends_early() -> None:
    result = _decode("8105", "4865")
    assert result.returncode == 1
    lines = result.stdout.strip().splitlines()
    assert lines[0] == "incomplete frame at byte 0: what arrived of its header:"
    assert [line.split("[")[0].split() for line in lines[1:-1]] == [
        ["FIN", "1"],
        ["RSV1", "RSV2", "RSV3", "0", "0", "0"],
        ["opcode", "0x1", "TEXT"],
        ["MASK", "0"],
        ["payload", "length", "5"],
        ["payload", "2", "of", "5", "bytes", "arrived"],
    ]
    assert lines[-1] == (
        "input ends early: the input ends inside a frame: 4 bytes of it arrived, it needs 3 more bytes"
        " (not a protocol violation: more input would complete it)"
    )
    assert "1002" not in result.stdout


@pytest.mark.parametrize(
    ("hex_bytes", "shown", "needs"),
    [
        ("81", ["opcode          0x1 TEXT"], "it needs at least 1 more byte"),
        ("82 7e 01", ["payload length  126: a 16-bit length follows (cut short)"], "it needs at least 1 more byte"),
        ("81 85 37 fa", ["masking key     37 fa (cut short)", "payload         0 of 5 bytes"], "it needs 7 more"),
        ("81 00 82 7f 00 00 00 00 00 01 00 00 00", ["payload length  65536"], "it needs 65535 more bytes"),
    ],
)
def test_every_cut_of_a_header_is_shown_as_far_as_it_arrived(hex_bytes: str, shown: list[str], needs: str) -> None:
    frames, error = dissect(parse_hex(hex_bytes))
    assert isinstance(error, InputEndsEarly)
    text = describe(frames, error)
    for row in shown:
        assert row in text, text
    assert needs in text and "input ends early" in text


def test_decode_command_refuses_what_is_not_hex() -> None:
    result = _decode("zz")
    assert result.returncode == 2 and result.stderr == "decode: not hex: 'z'\n"


def test_the_module_docstring_example_runs() -> None:
    import doctest

    import rawws.dissect

    assert doctest.testmod(rawws.dissect).failed == 0
