"""RFC 6455 §8.1: incremental UTF-8 validation agrees with bytes.decode for every split."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rawws.testing import split
from rawws.utf8 import Utf8Decoder

# Bytes that lean towards the tricky parts of UTF-8: lead bytes, continuations, surrogates.
utf8ish = st.one_of(
    st.text().map(lambda s: s.encode("utf-8")),
    st.lists(st.sampled_from([0x41, 0x80, 0xBF, 0xC2, 0xDF, 0xE0, 0xED, 0xA0, 0xEF, 0xF0, 0xF4, 0x90, 0xF5, 0xFF])).map(
        bytes
    ),
    st.binary(),
)


def decode_in_chunks(chunks: list[bytes]) -> str:
    decoder = Utf8Decoder()
    text = "".join(decoder.decode(chunk) for chunk in chunks)
    return text + decoder.decode(b"", final=True)


@given(utf8ish, st.lists(st.integers(0, 64), max_size=10))
def test_agrees_with_bytes_decode_for_every_split(data: bytes, cuts: list[int]) -> None:
    try:
        expected: str | None = data.decode("utf-8")
    except UnicodeDecodeError:
        expected = None
    try:
        got: str | None = decode_in_chunks(split(data, cuts))
    except UnicodeDecodeError:
        got = None
    assert got == expected


@pytest.mark.parametrize("prefix", [b"\xed\xa0", b"\xed\xbf", b"\xf4\x90", b"\xc0", b"\xe0\x80", b"\xf5", b"\xc2A"])
def test_fails_as_soon_as_a_prefix_is_certainly_invalid(prefix: bytes) -> None:
    with pytest.raises(UnicodeDecodeError):
        Utf8Decoder().decode(b"ok" + prefix, final=False)


@pytest.mark.parametrize("prefix", [b"\xce", b"\xe2\x82", b"\xf0\x9f\x98", b"\xed\x9f"])
def test_waits_on_a_valid_incomplete_sequence(prefix: bytes) -> None:
    assert Utf8Decoder().decode(b"ok" + prefix, final=False) == "ok"
