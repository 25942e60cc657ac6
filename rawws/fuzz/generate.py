"""Hypothesis strategies: for each rule, cases that a conforming server must accept or refuse.

Built from :mod:`rawws.testing`. Every case begins with zero or more valid
messages, so the broken frame is found however late it comes, and is written
in arbitrary chunks; Hypothesis shrinks both away when they do not matter.
This module imports Hypothesis: the runner imports it only when the command runs.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any

from hypothesis import strategies as st

from ..frames import Frame, Opcode, apply_mask, encode_header
from ..testing import (
    chunkings,
    close_payloads,
    fragmented_message,
    invalid_close_codes,
    invalid_utf8,
    payload_lengths,
    split,
)
from .cases import Case

__all__ = ["strategy_for", "handshake_request"]

_keys = st.binary(min_size=4, max_size=4)
_small = st.binary(max_size=20)


def _raw(first: int, payload: bytes, key: bytes | None) -> bytes:
    """A frame with any first byte, masked with ``key`` if given (nothing is checked: that is the point)."""
    return encode_header(first, len(payload), key) + (apply_mask(payload, key) if key is not None else payload)


def _frame(frame: Frame, key: bytes) -> bytes:
    first = (0x80 if frame.fin else 0) | frame.rsv | frame.opcode
    return _raw(first, frame.payload, key)


@st.composite
def _valid_message(draw: Any) -> bytes:
    """One valid message as a client writes it: any size class, maybe fragmented, pings and pongs between."""
    if draw(st.integers(0, 5)) == 0:  # a long one: the 16- and 64-bit length forms
        length = draw(payload_lengths())
        seed = draw(st.binary(min_size=1, max_size=8))
        raw = (seed * (length // len(seed) + 1))[:length]
        data: str | bytes = raw.hex()[:length] if draw(st.booleans()) else raw  # text or binary
        _, frames = draw(fragmented_message(data))
    else:
        _, frames = draw(fragmented_message())
    return b"".join(_frame(frame, draw(_keys)) for frame in frames)


_prefix = st.lists(_valid_message(), max_size=2).map(b"".join)


def _written(draw: Any, rule: str, data: bytes) -> Case:
    return Case(rule, tuple(split(data, draw(chunkings()))))


@st.composite
def _valid_messages(draw: Any) -> Case:
    return _written(draw, "valid-messages", b"".join(draw(st.lists(_valid_message(), min_size=1, max_size=4))))


@st.composite
def _valid_close(draw: Any) -> Case:
    close = _raw(0x80 | Opcode.CLOSE, draw(close_payloads()), draw(_keys))
    return _written(draw, "valid-close", draw(_prefix) + close)


@st.composite
def _reserved_opcode(draw: Any) -> Case:
    opcode = draw(st.sampled_from([3, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF]))
    bad = _raw(0x80 | opcode, draw(_small), draw(_keys))
    return _written(draw, "reserved-opcode", draw(_prefix) + bad)


@st.composite
def _reserved_bits(draw: Any) -> Case:
    rsv = draw(st.sampled_from([0x40, 0x20, 0x10, 0x60, 0x70]))
    opcode = draw(st.sampled_from([Opcode.TEXT, Opcode.BINARY, Opcode.PING]))
    bad = _raw(0x80 | rsv | opcode, draw(_small).hex().encode(), draw(_keys))
    return _written(draw, "reserved-bits", draw(_prefix) + bad)


@st.composite
def _unmasked(draw: Any) -> Case:
    opcode = draw(st.sampled_from([Opcode.TEXT, Opcode.BINARY, Opcode.PING]))
    bad = _raw(0x80 | opcode, draw(_small).hex().encode(), None)
    return _written(draw, "unmasked-frame", draw(_prefix) + bad)


@st.composite
def _length_msb(draw: Any) -> Case:
    low = draw(st.integers(0, 2**63 - 1))
    bad = bytes([0x82, 0x80 | 127]) + (low | 1 << 63).to_bytes(8, "big") + draw(_keys)
    return _written(draw, "length-msb", draw(_prefix) + bad)


@st.composite
def _control_too_long(draw: Any) -> Case:
    opcode = draw(st.sampled_from([Opcode.PING, Opcode.PONG, Opcode.CLOSE]))
    length = draw(st.one_of(st.just(126), st.integers(126, 300)))
    payload = (b"\x03\xe8" if opcode == Opcode.CLOSE else b"") + b"x" * length
    bad = _raw(0x80 | opcode, payload[:length], draw(_keys))
    return _written(draw, "control-too-long", draw(_prefix) + bad)


@st.composite
def _control_fragmented(draw: Any) -> Case:
    opcode = draw(st.sampled_from([Opcode.PING, Opcode.PONG, Opcode.CLOSE]))
    payload = b"\x03\xe8" if opcode == Opcode.CLOSE else draw(_small)
    bad = _raw(opcode, payload, draw(_keys)) + _raw(0x80 | Opcode.CONT, b"", draw(_keys))
    return _written(draw, "control-fragmented", draw(_prefix) + bad)


@st.composite
def _continuation_without_start(draw: Any) -> Case:
    fin = draw(st.booleans())
    bad = _raw((0x80 if fin else 0) | Opcode.CONT, draw(_small).hex().encode(), draw(_keys))
    return _written(draw, "continuation-without-start", draw(_prefix) + bad)


@st.composite
def _interleaved(draw: Any) -> Case:
    first, second = (
        draw(st.sampled_from([Opcode.TEXT, Opcode.BINARY])),
        draw(st.sampled_from([Opcode.TEXT, Opcode.BINARY])),
    )
    bad = _raw(first, b"part", draw(_keys)) + _raw(0x80 | second, b"other", draw(_keys))
    return _written(draw, "interleaved-messages", draw(_prefix) + bad)


@st.composite
def _invalid_utf8(draw: Any) -> Case:
    data = draw(invalid_utf8())
    cuts = sorted(set(draw(st.lists(st.integers(0, len(data)), max_size=3))))
    pieces = [data[a:b] for a, b in zip([0] + cuts, cuts + [len(data)], strict=True)]
    frames = [Frame(Opcode.TEXT if i == 0 else Opcode.CONT, p, i == len(pieces) - 1) for i, p in enumerate(pieces)]
    bad = b"".join(_frame(frame, draw(_keys)) for frame in frames)
    return _written(draw, "invalid-utf8", draw(_prefix) + bad)


@st.composite
def _bad_close_code(draw: Any) -> Case:
    code = draw(invalid_close_codes())
    reason = draw(st.text(max_size=10)).encode("utf-8")
    bad = _raw(0x80 | Opcode.CLOSE, code.to_bytes(2, "big") + reason, draw(_keys))
    return _written(draw, "bad-close-code", draw(_prefix) + bad)


@st.composite
def _close_one_byte(draw: Any) -> Case:
    bad = _raw(0x80 | Opcode.CLOSE, draw(st.binary(min_size=1, max_size=1)), draw(_keys))
    return _written(draw, "close-one-byte", draw(_prefix) + bad)


@st.composite
def _bad_close_reason(draw: Any) -> Case:
    code = draw(st.sampled_from([1000, 1001, 1003, 3000, 4999]))
    reason = draw(invalid_utf8(max_text=20))[:123]
    bad = _raw(0x80 | Opcode.CLOSE, code.to_bytes(2, "big") + reason, draw(_keys))
    return _written(draw, "bad-close-reason", draw(_prefix) + bad)


@st.composite
def _data_after_close(draw: Any) -> Case:
    close = _raw(0x80 | Opcode.CLOSE, draw(close_payloads()), draw(_keys))
    after = draw(st.lists(_valid_message(), min_size=1, max_size=2).map(b"".join))
    return _written(draw, "data-after-close", draw(_prefix) + close + after)


@st.composite
def _too_big(draw: Any) -> Case:
    length = draw(st.integers(2**40, 2**62))
    bad = bytes([0x82, 0x80 | 127]) + length.to_bytes(8, "big") + draw(_keys) + draw(_small)
    return _written(draw, "message-too-big", draw(_prefix) + bad)


def handshake_request(host: str, path: str, *, method: str = "GET", version: str = "13", key: str) -> bytes:
    """An opening handshake request (§4.1) with the given method, version and key."""
    lines = [
        f"{method} {path} HTTP/1.1",
        f"Host: {host}",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Key: {key}",
        f"Sec-WebSocket-Version: {version}",
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


_GOOD_KEY = "dGhlIHNhbXBsZSBub25jZQ=="  # §4.1's example key (16 bytes)


def _handshakes(host: str, path: str) -> dict[str, st.SearchStrategy[Case]]:
    versions = st.one_of(st.integers(0, 255).filter(lambda v: v != 13).map(str), st.sampled_from(["", "twelve"]))
    keys = st.one_of(
        st.binary(max_size=32).filter(lambda b: len(b) != 16).map(lambda b: base64.b64encode(b).decode()),
        st.text("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=!*", min_size=1, max_size=30).filter(
            lambda k: _key_length(k) != 16
        ),
    )
    methods = st.sampled_from(["POST", "PUT", "DELETE", "PATCH", "OPTIONS", "CONNECT", "TRACE", "get"])
    return {
        "handshake-version": versions.map(
            lambda v: Case("handshake-version", request=handshake_request(host, path, version=v, key=_GOOD_KEY))
        ),
        "handshake-key": keys.map(lambda k: Case("handshake-key", request=handshake_request(host, path, key=k))),
        "handshake-method": methods.map(
            lambda m: Case("handshake-method", request=handshake_request(host, path, method=m, key=_GOOD_KEY))
        ),
    }


def _key_length(key: str) -> int:
    try:
        return len(base64.b64decode(key.encode(), validate=True))
    except ValueError:
        return -1


_FRAME_STRATEGIES: dict[str, Callable[[], st.SearchStrategy[Case]]] = {
    "valid-messages": _valid_messages,
    "valid-close": _valid_close,
    "reserved-opcode": _reserved_opcode,
    "reserved-bits": _reserved_bits,
    "unmasked-frame": _unmasked,
    "length-msb": _length_msb,
    "control-too-long": _control_too_long,
    "control-fragmented": _control_fragmented,
    "continuation-without-start": _continuation_without_start,
    "interleaved-messages": _interleaved,
    "invalid-utf8": _invalid_utf8,
    "bad-close-code": _bad_close_code,
    "close-one-byte": _close_one_byte,
    "bad-close-reason": _bad_close_reason,
    "data-after-close": _data_after_close,
    "message-too-big": _too_big,
}


def strategy_for(rule_id: str, host: str, path: str) -> st.SearchStrategy[Case]:
    """The cases for one rule; ``host`` and ``path`` go into the handshake requests."""
    if rule_id in _FRAME_STRATEGIES:
        return _FRAME_STRATEGIES[rule_id]()
    return _handshakes(host, path)[rule_id]
