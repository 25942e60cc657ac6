"""Incremental UTF-8 validation for text messages (RFC 6455 §5.6, §8.1).

A text message may be split across frames at any byte, even inside a
character, and §8.1 lets an endpoint fail the connection as soon as the bytes
seen so far cannot start valid UTF-8. The standard library's incremental
decoder already rejects most impossible sequences early; it holds back an
encoded surrogate's first two bytes (``ED A0``-``ED BF``) until the third
arrives, so that one case is checked here.
"""

from __future__ import annotations

import codecs

__all__ = ["Utf8Decoder"]

_IncrementalDecoder = codecs.getincrementaldecoder("utf-8")


class Utf8Decoder:
    """Decode a text message chunk by chunk; raise ``UnicodeDecodeError`` at the first bad byte."""

    __slots__ = ("_decoder",)

    def __init__(self) -> None:
        self._decoder = _IncrementalDecoder("strict")

    def copy(self) -> Utf8Decoder:
        """An independent decoder in the same state (to check ahead without committing)."""
        clone = Utf8Decoder()
        clone._decoder.setstate(self._decoder.getstate())
        return clone

    def decode(self, data: bytes, final: bool = False) -> str:
        text: str = self._decoder.decode(data, final)
        if not final:
            pending = self._decoder.getstate()[0]
            if len(pending) >= 2 and pending[0] == 0xED and pending[1] >= 0xA0:
                raise UnicodeDecodeError("utf-8", pending, 0, 2, "encoded surrogate")
        return text
