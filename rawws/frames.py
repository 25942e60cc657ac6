"""The frame layer: RFC 6455 §5 (framing) and §5.5.1 / §7.4 (close payloads).

Everything here is a pure function of bytes. :class:`FrameParser` is the
incremental receiver: feed it chunks split anywhere and it returns complete
frames, or raises :class:`~rawws.exceptions.ProtocolError` naming the rule the
bytes broke. :func:`encode_frame` is the sender. :func:`apply_mask` is the
§5.3 masking transform, which is its own inverse.

A frame on the wire (§5.2)::

     0                   1                   2                   3
     0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
    +-+-+-+-+-------+-+-------------+-------------------------------+
    |F|R|R|R| opcode|M| Payload len |    Extended payload length    |
    |I|S|S|S|  (4)  |A|     (7)     |             (16/64)           |
    |N|V|V|V|       |S|             |   (if payload len==126/127)   |
    | |1|2|3|       |K|             |                               |
    +-+-+-+-+-------+-+-------------+ - - - - - - - - - - - - - - - +
    |     Extended payload length continued, if payload len == 127  |
    + - - - - - - - - - - - - - - - +-------------------------------+
    |                               |Masking-key, if MASK set to 1  |
    +-------------------------------+-------------------------------+
    | Masking-key (continued)       |          Payload Data         |
    +-------------------------------- - - - - - - - - - - - - - - - +
"""

from __future__ import annotations

import enum
import os
import struct
from typing import NamedTuple, Union

from .exceptions import PayloadTooBig, ProtocolError

__all__ = [
    "Opcode",
    "CloseCode",
    "Frame",
    "FrameParser",
    "apply_mask",
    "encode_frame",
    "encode_header",
    "frame_buffers",
    "Data",
    "parse_close",
    "serialize_close",
    "is_valid_close_code",
    "RSV1",
    "RSV2",
    "RSV3",
]

RSV1, RSV2, RSV3 = 0x40, 0x20, 0x10
"""Bit masks of the three reserved bits in the first header byte (§5.2)."""


class Opcode(enum.IntEnum):
    """Frame opcodes (§5.2, §11.8). 0x3–0x7 and 0xB–0xF are reserved."""

    CONT = 0x0
    TEXT = 0x1
    BINARY = 0x2
    CLOSE = 0x8
    PING = 0x9
    PONG = 0xA

    @property
    def is_control(self) -> bool:
        """Control frames have the high bit of the opcode set (§5.5)."""
        return self >= 0x8


class CloseCode(enum.IntEnum):
    """The registered close status codes, 1000–1015 (§7.4.1, §11.7 and the IANA registry)."""

    NORMAL_CLOSURE = 1000
    GOING_AWAY = 1001
    PROTOCOL_ERROR = 1002
    UNSUPPORTED_DATA = 1003
    RESERVED = 1004
    NO_STATUS_RCVD = 1005  # never on the wire: "the close frame had no status"
    ABNORMAL_CLOSURE = 1006  # never on the wire: "no close frame at all"
    INVALID_PAYLOAD_DATA = 1007
    POLICY_VIOLATION = 1008
    MESSAGE_TOO_BIG = 1009
    MANDATORY_EXTENSION = 1010
    INTERNAL_ERROR = 1011
    SERVICE_RESTART = 1012
    TRY_AGAIN_LATER = 1013
    BAD_GATEWAY = 1014
    TLS_HANDSHAKE = 1015  # never on the wire: "the TLS handshake failed"


_VALID_OPCODES = frozenset(int(op) for op in Opcode)
# Codes a close frame may carry (§7.4.1, §7.4.2): the registered codes except
# the three that only describe a closure locally and the reserved 1004, plus
# 3000-4999 for libraries, frameworks and applications.
_WIRE_CLOSE_CODES = frozenset({1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014})


SENDABLE_CLOSE_CODES = (
    "a close frame may carry 1000-1003, 1007-1014 or 3000-4999 (RFC 6455 §7.4: 1004 is reserved, "
    "1005, 1006 and 1015 only describe a closure locally, 1016-2999 are unassigned)"
)


def is_valid_close_code(code: int) -> bool:
    """Whether ``code`` may appear in a close frame on the wire (§7.4)."""
    return code in _WIRE_CLOSE_CODES or 3000 <= code <= 4999


class Frame(NamedTuple):
    """One frame (§5.2). Immutable; ``payload`` is the unmasked application data."""

    opcode: int
    payload: bytes
    fin: bool = True
    rsv1: bool = False
    rsv2: bool = False
    rsv3: bool = False

    @property
    def rsv(self) -> int:
        """The reserved bits as they sit in the first header byte."""
        return (RSV1 if self.rsv1 else 0) | (RSV2 if self.rsv2 else 0) | (RSV3 if self.rsv3 else 0)


# --- masking (§5.3) ------------------------------------------------------------

_XOR_TABLES = [bytes(b ^ k for b in range(256)) for k in range(256)]
# Below this size one big-integer XOR wins: it is three C calls whatever the
# length. Above it, four strided byte.translate passes win (benchmarks/masking.py).
_SMALL_MASK = 768


def apply_mask(data: bytes | bytearray | memoryview, key: bytes) -> bytes:
    """XOR ``data`` with the 4-byte ``key`` repeated (§5.3); applying it twice restores ``data``.

    Octet i of the result is octet i of ``data`` XOR octet ``i % 4`` of ``key``.
    """
    if len(key) != 4:
        raise ValueError("a masking key is exactly 4 bytes")
    n = len(data)
    if n <= _SMALL_MASK:
        if n == 0:
            return b""
        q, r = divmod(n, 4)
        mask = int.from_bytes(key * q + key[:r], "little")
        return (int.from_bytes(data, "little") ^ mask).to_bytes(n, "little")
    # Gather each of the four byte positions into one contiguous run with a
    # strided slice, XOR the run with a 256-entry table, scatter it back.
    source = data if isinstance(data, (bytes, bytearray)) else bytes(data)
    out = bytearray(n)
    out[0::4] = source[0::4].translate(_XOR_TABLES[key[0]])
    out[1::4] = source[1::4].translate(_XOR_TABLES[key[1]])
    out[2::4] = source[2::4].translate(_XOR_TABLES[key[2]])
    out[3::4] = source[3::4].translate(_XOR_TABLES[key[3]])
    return bytes(out)


# --- encoding (§5.2) -----------------------------------------------------------

_pack_short = struct.Struct("!BBH").pack
_pack_long = struct.Struct("!BBQ").pack


def encode_header(first_byte: int, length: int, mask_key: bytes | None = None) -> bytes:
    """The header for a payload of ``length`` bytes, in the minimal length form (§5.2).

    ``first_byte`` is FIN, RSV1-3 and the opcode, already combined.
    """
    mask_bit = 0x80 if mask_key is not None else 0
    if length < 126:
        header = bytes((first_byte, mask_bit | length))
    elif length < 0x10000:
        header = _pack_short(first_byte, mask_bit | 126, length)
    elif length < 1 << 63:
        header = _pack_long(first_byte, mask_bit | 127, length)
    else:
        raise PayloadTooBig("a frame payload is limited to 2**63 - 1 bytes")
    return header + mask_key if mask_key is not None else header


Data = Union[bytes, bytearray, memoryview]
"""A buffer of bytes to write."""

_COPY_BELOW = 1024
# Below this, header and payload are joined into one buffer; above it the payload
# goes out as its own buffer, uncopied (a scatter-gather write sends both at once).


def frame_buffers(
    first_byte: int, payload: Data, mask_key: bytes | None = None, out: list[Data] | None = None
) -> list[Data]:
    """One frame as buffers to write: the only place rawws serialises a frame (§5.2).

    ``first_byte`` is FIN, RSV1-3 and the opcode, already combined. With a
    ``mask_key`` (clients, §5.3) the payload is masked. A large unmasked
    payload stays a separate buffer so that it is never copied. The buffers
    are appended to ``out`` (a new list if None), which is returned.
    """
    if out is None:
        out = []
    length = len(payload)
    if mask_key is not None:
        out.append(encode_header(first_byte, length, mask_key) + apply_mask(payload, mask_key))
    elif length < 126:
        out.append(bytes((first_byte, length)) + payload)
    elif length < _COPY_BELOW:
        out.append(encode_header(first_byte, length) + payload)
    else:
        out.append(encode_header(first_byte, length))
        out.append(payload)
    return out


def encode_frame(frame: Frame, *, mask: bool = False, mask_key: bytes | None = None) -> bytes:
    """Serialise ``frame``; with ``mask`` (clients, §5.3) its payload is masked.

    The masking key is fresh from ``os.urandom`` unless ``mask_key`` is given
    (for tests and the RFC's examples).
    """
    first = (0x80 if frame.fin else 0) | frame.rsv | frame.opcode
    key = (os.urandom(4) if mask_key is None else mask_key) if mask else None
    return b"".join(frame_buffers(first, frame.payload, key))


# --- parsing (§5.2) ------------------------------------------------------------

MIN_FRAGMENT_CHARGE = 64
"""Bytes a non-final data frame counts toward ``max_size`` at the least (see :class:`FrameParser`)."""

_unpack_short = struct.Struct("!H").unpack_from
_unpack_long = struct.Struct("!Q").unpack_from


class FrameParser:
    """Incremental frame receiver: :meth:`feed` bytes, get complete frames.

    ``mask_expected`` is True on a server (every client frame must be masked)
    and False on a client (no server frame may be masked), §5.1.
    ``allowed_rsv`` holds the RSV bits that negotiated extensions claim (§5.2).
    ``max_size`` caps the payload of one message, summed over its data frames;
    a frame that would pass it is refused from its header, before any of its
    payload is buffered. Every frame of a message but the last counts as at
    least :data:`MIN_FRAGMENT_CHARGE` (64) bytes toward that cap (for a
    ``max_size`` under 64 KiB, ``max_size / 1024`` and at least 1), so a
    message cannot be cut into so many tiny or empty fragments that their
    headers and bookkeeping cost far more than ``max_size``: a message holds at
    most ``max(1024, max_size / 64)`` such fragments. A 4 MiB message in
    64-byte fragments still fits ``max_size=4 MiB``; a 1 MiB message in
    1-byte fragments does not fit ``max_size=1 MiB``.

    The result never depends on how the stream was split. When a chunk holds
    valid frames followed by a bad one, :meth:`feed` returns the valid frames
    and raises the error on the next call (it is also in :attr:`error`). After
    an error the parser is unusable: the connection must be failed (§7.1.7).
    """

    def __init__(self, *, mask_expected: bool, max_size: int | None = None, allowed_rsv: int = 0) -> None:
        self.mask_expected = mask_expected
        self.max_size = max_size
        self.allowed_rsv = allowed_rsv
        # On the wire a compressed message (RSV1 claimed by permessage-deflate) may be larger than it
        # inflates to: incompressible data goes out in stored blocks of 5 header bytes each, one per
        # 127 to 16,383 bytes depending on the sender's memLevel, so up to about 4 %. The frames of
        # such a connection may pass max_size by 1/16; the inflated message is held to max_size exactly.
        self.wire_limit = (
            None if max_size is None else max_size + (max_size >> 4) + 64 if allowed_rsv & RSV1 else max_size
        )
        self._buffer = bytearray()
        self._message_size = 0  # payload bytes of data frames in the unfinished message
        self._failed: ProtocolError | None = None
        self._stopped_early = False
        # What a non-final data frame counts toward max_size at the least (see the class docstring).
        self._min_charge = (
            MIN_FRAGMENT_CHARGE if max_size is None else max(1, min(MIN_FRAGMENT_CHARGE, max_size // 1024))
        )

    @property
    def error(self) -> ProtocolError | None:
        """The error that stopped the parser, if any; :meth:`feed` raises it from then on."""
        return self._failed

    @property
    def buffered(self) -> int:
        """Bytes received but not yet returned as frames."""
        return len(self._buffer)

    @property
    def pending_first_byte(self) -> int | None:
        """The first header byte of the frame still arriving (FIN, RSV, opcode), or None if nothing is buffered."""
        return self._buffer[0] if self._buffer else None

    @property
    def stopped_early(self) -> bool:
        """Whether the last :meth:`feed` stopped at ``max_messages`` with bytes left to parse."""
        return self._stopped_early

    def feed(self, data: bytes | bytearray | memoryview, max_messages: int | None = None) -> list[Frame]:
        """Add ``data`` to the stream and return every frame it completes, in order.

        With ``max_messages``, stop after that many frames that end a message
        (data frames with FIN set); the rest stays buffered, unparsed, until
        the next call (``feed(b"")`` resumes). That bounds the work one read
        can cause: an I/O layer passes the room left in its message queue.
        """
        if self._failed is not None:
            raise self._failed
        self._stopped_early = False
        buffer = self._buffer
        min_charge = self._min_charge
        if buffer:
            buffer += data
            view: bytes | bytearray = buffer
        else:
            view = data if isinstance(data, bytes) else bytes(data)
        frames: list[Frame] = []
        pos = 0
        end = len(view)
        try:
            while end - pos >= 2:
                first, second = view[pos], view[pos + 1]
                length = second & 0x7F
                header_size = 2
                if length == 126:
                    if end - pos < 4:
                        break
                    (length,) = _unpack_short(view, pos + 2)
                    header_size = 4
                elif length == 127:
                    if end - pos < 10:
                        break
                    (length,) = _unpack_long(view, pos + 2)
                    header_size = 10
                    if length >> 63:
                        raise ProtocolError("§5.2: the most significant bit of a 64-bit payload length must be 0")
                masked = second & 0x80
                if masked:
                    header_size += 4
                # The header is known: check it before waiting for the payload.
                # (One test for the usual case; _check_header names the broken rule.)
                if (
                    first & 0x70 & ~self.allowed_rsv
                    or (first & 0x0F) not in _VALID_OPCODES
                    or first & 0x08
                    or bool(masked) is not self.mask_expected
                    or (
                        self.wire_limit is not None
                        and self._message_size + (length if first & 0x80 or length >= min_charge else min_charge)
                        > self.wire_limit
                    )
                ):
                    self._check_header(first, masked, length)
                total = header_size + length
                if end - pos < total:
                    break
                start = pos + header_size
                if masked:
                    payload = apply_mask(view[start : pos + total], bytes(view[start - 4 : start]))
                else:
                    payload = bytes(view[start : pos + total])
                opcode = first & 0x0F
                fin = first & 0x80
                frames.append(
                    Frame(opcode, payload, bool(fin), bool(first & RSV1), bool(first & RSV2), bool(first & RSV3))
                )
                pos += total
                if opcode < 8:
                    if fin:
                        self._message_size = 0
                        if max_messages is not None:
                            max_messages -= 1
                            if max_messages <= 0:
                                self._stopped_early = pos < end
                                break
                    else:
                        self._message_size += length if length >= min_charge else min_charge
        except ProtocolError as exc:
            self._failed = exc
            self._buffer = bytearray()
            if not frames:
                raise
            return frames  # the frames before the bad one are valid; the error is raised next time
        if buffer:
            del buffer[:pos]
        elif pos < end:
            self._buffer = bytearray(view[pos:])
        return frames

    def _check_header(self, first: int, masked: int, length: int) -> None:
        opcode = first & 0x0F
        if opcode not in _VALID_OPCODES:
            raise ProtocolError(f"§5.2: opcode {opcode:#x} is reserved")
        rsv = first & 0x70
        if rsv & ~self.allowed_rsv:
            raise ProtocolError(f"§5.2: RSV bits {rsv >> 4:03b} set without a negotiated extension")
        if opcode >= 8:
            if length > 125:
                raise ProtocolError(f"§5.5: control frame payload of {length} bytes exceeds 125")
            if not first & 0x80:
                raise ProtocolError("§5.5: control frames must not be fragmented")
        elif self.wire_limit is not None and self._message_size + self._charge(first, length) > self.wire_limit:
            if first & 0x80 or length >= self._min_charge:
                raise PayloadTooBig(
                    f"message of at least {self._message_size + length} bytes exceeds max_size={self.max_size}"
                )
            raise PayloadTooBig(
                f"message fragments too small: each fragment but the last counts as at least "
                f"{self._min_charge} bytes, and this message passed max_size={self.max_size}"
            )
        if bool(masked) != self.mask_expected:
            if self.mask_expected:
                raise ProtocolError("§5.1: a client must mask every frame it sends")
            raise ProtocolError("§5.1: a server must not mask any frame it sends")

    def _charge(self, first: int, length: int) -> int:
        """What a data frame counts toward ``max_size``: its length, and at least the minimum unless it is the last."""
        return length if first & 0x80 else max(length, self._min_charge)

    def peek_payload(self, start: int) -> tuple[int, bytes] | None:
        """The frame at the head of the buffer, if its header is complete but not all its payload.

        Returns its first header byte and its payload bytes from offset
        ``start`` to what has arrived, unmasked; None when no frame is in
        progress. Lets the protocol check a large text frame's UTF-8 as it
        arrives (§8.1) instead of when it ends.
        """
        view = self._buffer
        end = len(view)
        if end < 2 or self._failed is not None:
            return None
        first, second = view[0], view[1]
        length = second & 0x7F
        header_size = 2
        if length == 126:
            header_size = 4
            length = _unpack_short(view, 2)[0] if end >= 4 else 0
        elif length == 127:
            header_size = 10
            length = _unpack_long(view, 2)[0] if end >= 10 else 0
        masked = second & 0x80
        if masked:
            header_size += 4
        if end <= header_size + start or end >= header_size + length:
            return None  # nothing new yet, or the frame is complete (feed returns it whole)
        data = bytes(view[header_size + start :])
        if masked:
            key = bytes(view[header_size - 4 : header_size])
            shift = start % 4
            data = apply_mask(data, key[shift:] + key[:shift])
        return first, data


# --- close frame payloads (§5.5.1, §7.4) ----------------------------------------


def parse_close(payload: bytes) -> tuple[int, str]:
    """Return ``(code, reason)`` from a close frame's payload.

    An empty payload means "no status" and gives ``(1005, "")`` (§7.1.5).
    Raises :class:`ProtocolError` with 1002 for a 1-byte payload or a code not
    allowed on the wire, and with 1007 for a reason that is not UTF-8.
    """
    if not payload:
        return CloseCode.NO_STATUS_RCVD, ""
    if len(payload) == 1:
        raise ProtocolError("§5.5.1: a close payload must be empty or start with a 2-byte code")
    code = int.from_bytes(payload[:2], "big")
    if not is_valid_close_code(code):
        raise ProtocolError(f"§7.4: close code {code} is not allowed in a close frame")
    try:
        reason = payload[2:].decode("utf-8")
    except UnicodeDecodeError:
        raise ProtocolError("§5.5.1: the close reason is not valid UTF-8", close_code=1007) from None
    return code, reason


def serialize_close(code: int, reason: str = "") -> bytes:
    """The close payload for ``code`` and ``reason`` (at most 123 bytes of UTF-8)."""
    if not is_valid_close_code(code):
        raise ValueError(f"close code {code} may not be sent: {SENDABLE_CLOSE_CODES}")
    data = reason.encode("utf-8")
    if len(data) > 123:
        raise ValueError("a close reason is at most 123 bytes of UTF-8 (§5.5)")
    return code.to_bytes(2, "big") + data
