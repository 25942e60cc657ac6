"""Hypothesis strategies for WebSocket frames, for fuzzing rawws or your own code.

Hypothesis is imported when this module is, so only import it from tests::

    from hypothesis import given
    from rawws.testing import frames, frame_streams

    @given(frame_streams(role="client"))
    def test_my_parser(stream): ...

Strategies:

- :func:`frames` — any valid :class:`~rawws.frames.Frame` (control frames
  obey the §5.5 limits; RSV bits only if ``rsv=True``).
- :func:`close_payloads` — valid close frame payloads (§5.5.1, §7.4).
- :func:`messages` — ``str`` or ``bytes`` message data.
- :func:`fragmented_message` — the frames of one message, split anywhere,
  with control frames interleaved as §5.4 allows.
- :func:`encoded_frames` — wire bytes of a frame, masked as ``role`` sends.
- :func:`frame_streams` — wire bytes of several frames, concatenated.
- :func:`chunkings` — a way to split a byte string into chunks.
- :func:`payload_lengths` — payload sizes at and around every boundary of
  the length field's three forms (7, 16 and 64 bits, §5.2).
- :func:`invalid_utf8` — bytes that are not valid UTF-8 (§8.1), the bad
  sequence anywhere among valid text.
- :func:`invalid_close_codes` — status codes no close frame may carry (§7.4).
"""

from __future__ import annotations

from typing import Any, Literal

from hypothesis import strategies as st

from .frames import Frame, Opcode, encode_frame, is_valid_close_code

__all__ = [
    "frames",
    "close_payloads",
    "messages",
    "fragmented_message",
    "encoded_frames",
    "frame_streams",
    "chunkings",
    "split",
    "payload_lengths",
    "invalid_utf8",
    "invalid_close_codes",
]

_close_codes = st.one_of(
    st.sampled_from([1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014]),
    st.integers(3000, 4999),
)


@st.composite
def close_payloads(draw: Any) -> bytes:
    """A valid close payload: empty, or a wire-legal code and a UTF-8 reason of ≤ 123 bytes."""
    if draw(st.booleans()):
        return b""
    code: int = draw(_close_codes)
    assert is_valid_close_code(code)
    reason: bytes = draw(st.text(max_size=30)).encode("utf-8")[:123]
    reason = reason.decode("utf-8", "ignore").encode("utf-8")
    return int(code).to_bytes(2, "big") + reason


def messages(max_size: int = 2000) -> st.SearchStrategy[str | bytes]:
    """Message data: text (``str``) or binary (``bytes``)."""
    return st.one_of(st.text(max_size=max_size // 4), st.binary(max_size=max_size))


@st.composite
def frames(draw: Any, *, max_payload: int = 2000, rsv: bool = False) -> Frame:
    """Any frame that is valid on its own (§5.2, §5.5)."""
    opcode = draw(st.sampled_from(list(Opcode)))
    if opcode >= 8:
        payload = draw(close_payloads()) if opcode == Opcode.CLOSE else draw(st.binary(max_size=125))
        fin = True
    else:
        payload = draw(st.binary(max_size=max_payload))
        fin = draw(st.booleans())
    bits = draw(st.tuples(st.booleans(), st.booleans(), st.booleans())) if rsv else (False, False, False)
    return Frame(opcode, payload, fin, *bits)


@st.composite
def fragmented_message(draw: Any, data: str | bytes | None = None) -> tuple[str | bytes, list[Frame]]:
    """``(message, frames)``: one message cut into frames at arbitrary byte offsets
    (a UTF-8 character may straddle two frames), with pings and pongs interleaved."""
    if data is None:
        data = draw(messages())
    raw = data.encode("utf-8") if isinstance(data, str) else data
    cuts = sorted(draw(st.lists(st.integers(0, len(raw)), max_size=6)))
    pieces = [raw[a:b] for a, b in zip([0] + cuts, cuts + [len(raw)], strict=True)]
    result: list[Frame] = []
    for i, piece in enumerate(pieces):
        opcode = (Opcode.TEXT if isinstance(data, str) else Opcode.BINARY) if i == 0 else Opcode.CONT
        result.append(Frame(opcode, piece, i == len(pieces) - 1))
        if i < len(pieces) - 1 and draw(st.booleans()):
            result.append(Frame(draw(st.sampled_from([Opcode.PING, Opcode.PONG])), draw(st.binary(max_size=20))))
    return data, result


Sender = Literal["client", "server"]
"""Who sends the frames: a client masks them (§5.3), a server does not."""


def encoded_frames(role: Sender = "client", **kwargs: Any) -> st.SearchStrategy[bytes]:
    """The wire bytes of one frame as ``role`` (``"client"`` masks, ``"server"`` does not) sends it."""
    mask = role == "client"
    return st.builds(lambda f: encode_frame(f, mask=mask), frames(**kwargs))


def frame_streams(role: Sender = "client", max_frames: int = 8) -> st.SearchStrategy[bytes]:
    """Several frames' wire bytes, concatenated."""
    return st.lists(encoded_frames(role), max_size=max_frames).map(b"".join)


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    """Split ``data`` at the given offsets (clipped and sorted)."""
    points = sorted({min(max(c, 0), len(data)) for c in cuts})
    bounds = [0] + points + [len(data)]
    return [data[a:b] for a, b in zip(bounds, bounds[1:], strict=False)]


def chunkings(max_cuts: int = 20) -> st.SearchStrategy[list[int]]:
    """Cut points to pass to :func:`split` (offsets beyond the data are clipped)."""
    return st.lists(st.integers(0, 1 << 16), max_size=max_cuts)


def payload_lengths(max_long: int = 70_000) -> st.SearchStrategy[int]:
    """Payload sizes that exercise every length form of §5.2: 0-125 in 7 bits, 126-65535 in 16, more in 64.

    Half of the draws sit on a boundary (0, 125, 126, 65535, 65536); a long
    payload is at most ``max_long`` bytes.
    """
    edges = [0, 1, 125, 126, 127, 65535, 65536]
    return st.one_of(
        st.sampled_from([e for e in edges if e <= max_long]),
        st.integers(0, 125),
        st.integers(126, 2000),
        st.integers(65536, max(65536, max_long)),
    )


# Byte sequences that can never occur in UTF-8, or only as part of a longer character (§8.1, RFC 3629).
_BAD_UTF8 = [
    b"\x80",  # a continuation byte with nothing to continue
    b"\xbf",
    b"\xc0\xaf",  # an overlong encoding of "/"
    b"\xc1\xbf",
    b"\xe0\x80\xaf",  # overlong, three bytes
    b"\xed\xa0\x80",  # an encoded UTF-16 surrogate
    b"\xed\xbf\xbf",
    b"\xf4\x90\x80\x80",  # beyond U+10FFFF
    b"\xf5",
    b"\xff",
    b"\xfe",
    b"\xc3",  # a character cut short at the end of the message
    b"\xe2\x82",
]


@st.composite
def invalid_utf8(draw: Any, max_text: int = 40) -> bytes:
    """Bytes that are not valid UTF-8: valid text with one bad sequence at any position."""
    before: bytes = draw(st.text(max_size=max_text)).encode("utf-8")
    after: bytes = draw(st.text(max_size=max_text)).encode("utf-8")
    bad: bytes = draw(st.sampled_from(_BAD_UTF8))
    if bad in (b"\xc3", b"\xe2\x82"):
        after = b""  # only invalid as the very end; a following byte could complete it
    return before + bad + after


def invalid_close_codes() -> st.SearchStrategy[int]:
    """Codes a close frame may not carry: 0-999, 1004-1006, 1015, 1016-2999 and 5000-65535 (§7.4.1, §7.4.2)."""
    return st.one_of(
        st.sampled_from([0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000, 65535]),
        st.integers(0, 999),
        st.integers(1016, 2999),
        st.integers(5000, 65535),
    ).filter(lambda code: not is_valid_close_code(code))
