"""The frame dissector: wire bytes in, every field of every frame out, each with its RFC 6455 section.

This is what ``python -m rawws decode`` prints, what the ``--trace`` log of
``serve`` and ``connect`` writes (:func:`one_line`), and what the demo's wire
view shows. Unlike :class:`~rawws.frames.FrameParser`, which only needs the
payload, it keeps everything that crossed the wire: the length field in the
form it was sent (7, 16 or 64 bits), the masking key, the payload before and
after unmasking. It checks the rules a receiver checks (§5.1-§5.5, §5.6,
§7.4, §8.1) and, when the bytes break one, says which and at which byte
offset. Pure functions and one incremental class; no I/O::

    >>> from rawws.dissect import dissect, one_line
    >>> frames, error = dissect(bytes.fromhex("818537fa213d7f9f4d5158"))  # §5.7 masked "Hello"
    >>> print(one_line(frames[0]))
    TEXT fin=1 rsv=000 mask=37fa213d len=5 'Hello'
"""

from __future__ import annotations

import codecs
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, replace

from .frames import Opcode, apply_mask, is_valid_close_code

__all__ = [
    "DissectedFrame",
    "DissectError",
    "InputEndsEarly",
    "FrameStream",
    "dissect",
    "parse_hex",
    "fields",
    "describe",
    "one_line",
    "payload_preview",
    "trace_line",
    "opcode_name",
]

_NAMES = {0x0: "CONT", 0x1: "TEXT", 0x2: "BINARY", 0x8: "CLOSE", 0x9: "PING", 0xA: "PONG"}
_DEFLATE_TAIL = b"\x00\x00\xff\xff"  # RFC 7692 §7.2.2: appended before inflating a message


def opcode_name(opcode: int) -> str:
    """``TEXT``, ``PING``, … or ``reserved-0x3`` for the opcodes §5.2 keeps for later."""
    return _NAMES.get(opcode, f"reserved-{opcode:#x}")


class DissectError(ValueError):
    """The bytes break a rule: ``section`` names it, ``offset`` is the first byte that shows it."""

    def __init__(self, section: str, rule: str, offset: int, close_code: int = 1002) -> None:
        super().__init__(f"byte {offset}: {section}: {rule}")
        self.section = section
        self.rule = rule
        self.offset = offset
        self.close_code = close_code


class InputEndsEarly(DissectError):
    """The bytes stop inside a frame: not a broken rule, the rest of the frame is just not there.

    ``header`` holds the fields that did arrive, as ``(name, value, section)``
    rows like :func:`fields`; ``missing`` is how many more bytes the frame
    needs (at least that many, when its header is cut short too).
    """

    def __init__(self, offset: int, arrived: bytes) -> None:
        self.header, self.missing, complete = _partial_header(arrived)
        more = f"{self.missing} more byte{'s' if self.missing != 1 else ''}"
        rule = (
            f"the input ends inside a frame: {len(arrived)} byte{'s' if len(arrived) != 1 else ''} of it arrived,"
            f" it needs {more if complete else 'at least ' + more}"
        )
        super().__init__("§5.2", rule, offset)


def _partial_header(data: bytes) -> tuple[list[tuple[str, str, str]], int, bool]:
    """The header fields in the start of a frame, the bytes still missing, and whether that count is exact."""
    rows: list[tuple[str, str, str]] = []
    first = data[0]
    rows.append(("FIN", str(first >> 7), "§5.2"))
    rows.append(("RSV1 RSV2 RSV3", f"{first >> 6 & 1} {first >> 5 & 1} {first >> 4 & 1}", "§5.2"))
    rows.append(("opcode", f"{first & 0x0F:#x} {opcode_name(first & 0x0F)}", "§5.2"))
    if len(data) < 2:
        return rows, 1, False
    second = data[1]
    masked, length = bool(second & 0x80), second & 0x7F
    rows.append(("MASK", str(int(masked)), "§5.2"))
    header = 2 + {126: 2, 127: 8}.get(length, 0) + (4 if masked else 0)
    if length >= 126:
        size = 2 if length == 126 else 8
        if len(data) < 2 + size:
            rows.append(("payload length", f"{length}: a {size * 8}-bit length follows (cut short)", "§5.2"))
            return rows, header - len(data), False
        length = int.from_bytes(data[2 : 2 + size], "big")
    rows.append(("payload length", str(length), "§5.2"))
    if masked:
        key = data[header - 4 : header]
        rows.append(("masking key", key.hex(" ") + (" (cut short)" if len(key) < 4 else ""), "§5.3"))
    arrived = max(len(data) - header, 0)
    rows.append(("payload", f"{arrived} of {length} bytes arrived", "§5.2"))
    return rows, header + length - len(data), True


@dataclass(frozen=True)
class DissectedFrame:
    """One frame exactly as it was on the wire, with its unmasked payload and what it means."""

    offset: int
    """Where the frame starts in the stream."""
    fin: bool
    rsv1: bool
    rsv2: bool
    rsv3: bool
    opcode: int
    masked: bool
    length: int
    length_bits: int
    """7, 16 or 64: the form the payload length was sent in (§5.2)."""
    mask_key: bytes | None
    wire_payload: bytes
    """The payload as sent: masked if ``masked``."""
    payload: bytes
    """The payload unmasked (still compressed if ``rsv1`` says so)."""
    inflated: bytes | None = None
    """For a compressed message's last frame (RFC 7692), the whole message inflated."""
    text: str | None = None
    """The payload as text, when it is a text frame (or a close reason) that is valid UTF-8."""
    close: tuple[int, str] | None = None
    """A close frame's code and reason; (1005, "") when it has no payload."""

    @property
    def header_size(self) -> int:
        return 2 + {7: 0, 16: 2, 64: 8}[self.length_bits] + (4 if self.masked else 0)

    @property
    def size(self) -> int:
        return self.header_size + self.length


def parse_hex(text: str) -> bytes:
    """Bytes from hex written with any spacing, ``0x`` prefixes, colons or commas; ``ValueError`` otherwise."""
    cleaned = text.replace("0x", " ").replace("0X", " ")
    for separator in ",:;-\n\r\t":
        cleaned = cleaned.replace(separator, " ")
    digits = "".join(cleaned.split())
    if len(digits) % 2:
        raise ValueError(f"hex needs an even number of digits, got {len(digits)}")
    try:
        return bytes.fromhex(digits)
    except ValueError:
        bad = next(c for c in digits if c not in "0123456789abcdefABCDEF")
        raise ValueError(f"not hex: {bad!r}") from None


class FrameStream:
    """Dissect a byte stream fed in chunks split anywhere; remember the message state across frames.

    ``role`` is who *sent* the bytes: ``"client"`` (every frame must be
    masked, §5.1), ``"server"`` (none may be), or None (either is shown, not
    judged). ``deflate`` says permessage-deflate is in use (RFC 7692): RSV1
    marks a compressed message, which is inflated. With ``check_text=False``
    a text frame that is not UTF-8 is shown (``text`` None), not an error. After the first broken rule
    :attr:`error` is set and the stream takes no more bytes.
    """

    def __init__(self, role: str | None = None, *, deflate: bool = False, check_text: bool = True) -> None:
        if role not in (None, "client", "server"):
            raise ValueError("role is 'client', 'server' or None")
        self.role = role
        self.deflate = deflate
        self.check_text = check_text
        self.error: DissectError | None = None
        self.closed = False  # a close frame was seen: §5.5.1 allows nothing after it
        self._buffer = bytearray()
        self._offset = 0  # stream offset of _buffer[0]
        self._message: int | None = None  # opcode of the unfinished fragmented message
        self._compressed = False
        self._carry = b""  # the start of a UTF-8 character split across frames
        self._pieces: list[bytes] = []  # a compressed message's payload so far
        self._inflater: zlib._Decompress | None = None

    @property
    def buffered(self) -> int:
        """Bytes of a frame still arriving."""
        return len(self._buffer)

    @property
    def offset(self) -> int:
        """Bytes taken so far (the offset of the next byte fed)."""
        return self._offset + len(self._buffer)

    def feed(self, data: bytes) -> list[DissectedFrame]:
        """Add ``data``; return the frames it completes. On a broken rule, set :attr:`error` and stop.

        A frame whose header is valid but whose payload breaks a rule (bad
        UTF-8, a bad close code) is returned too, as the last one.
        """
        if self.error is not None:
            return []
        self._buffer += data
        frames: list[DissectedFrame] = []
        try:
            while self.error is None:
                frame = self._next_frame()
                if frame is None:
                    break
                frames.append(frame)
        except DissectError as exc:
            self.error = exc
        return frames

    def _fail(self, section: str, rule: str, at: int, code: int = 1002) -> DissectError:
        return DissectError(section, rule, self._offset + at, code)

    def _next_frame(self) -> DissectedFrame | None:
        buffer = self._buffer
        if len(buffer) < 2:
            return None
        first, second = buffer[0], buffer[1]
        fin, opcode, masked = bool(first & 0x80), first & 0x0F, bool(second & 0x80)
        self._check_header(first, opcode, fin, masked)
        length, length_bits, header_size = second & 0x7F, 7, 2
        if length == 126:
            if len(buffer) < 4:
                return None
            length, length_bits, header_size = int.from_bytes(buffer[2:4], "big"), 16, 4
        elif length == 127:
            if len(buffer) < 10:
                return None
            length, length_bits, header_size = int.from_bytes(buffer[2:10], "big"), 64, 10
            if length >> 63:
                raise self._fail("§5.2", "the most significant bit of a 64-bit payload length must be 0", 2)
        if opcode >= 8 and length > 125:
            raise self._fail("§5.5", f"a control frame's payload is at most 125 bytes, this one announces {length}", 1)
        key_at = header_size
        if masked:
            header_size += 4
        if len(buffer) < header_size + length:
            return None
        mask_key = bytes(buffer[key_at:header_size]) if masked else None
        wire = bytes(buffer[header_size : header_size + length])
        payload = apply_mask(wire, mask_key) if mask_key is not None else wire
        frame = DissectedFrame(
            self._offset, fin, bool(first & 0x40), bool(first & 0x20), bool(first & 0x10),
            opcode, masked, length, length_bits, mask_key, wire, payload,
        )  # fmt: skip
        try:
            frame = self._interpret(frame, header_size)
        except DissectError as exc:
            self.error = exc  # the frame is whole: it is returned, and the stream stops after it
        del buffer[: header_size + length]
        self._offset += header_size + length
        return frame

    def _check_header(self, first: int, opcode: int, fin: bool, masked: bool) -> None:
        if self.closed:
            raise self._fail("§5.5.1", "a frame follows the close frame; nothing may be sent after it", 0)
        allowed = 0x40 if self.deflate else 0
        for bit, name in ((0x40, "RSV1"), (0x20, "RSV2"), (0x10, "RSV3")):
            if first & bit & ~allowed:
                rule = f"{name} is set but no negotiated extension defines it"
                raise self._fail("§5.2", rule, 0)
        if opcode not in _NAMES:
            raise self._fail("§5.2", f"opcode {opcode:#x} is reserved", 0)
        if opcode >= 8 and not fin:
            raise self._fail("§5.5", "control frames must not be fragmented (FIN must be 1)", 0)
        if opcode >= 8 and first & 0x40:
            raise self._fail("§5.2", "RSV1 (compression) is set on a control frame (RFC 7692 §6.1)", 0)
        if self.role == "client" and not masked:
            raise self._fail("§5.1", "a client must mask every frame it sends to the server", 1)
        if self.role == "server" and masked:
            raise self._fail("§5.1", "a server must not mask any frame it sends to the client", 1)
        if opcode == Opcode.CONT and self._message is None:
            raise self._fail("§5.4", "a continuation frame with no fragmented message to continue", 0)
        if opcode in (Opcode.TEXT, Opcode.BINARY) and self._message is not None:
            raise self._fail("§5.4", "a new message starts before the fragmented one ends", 0)
        if opcode == Opcode.CONT and first & 0x40:
            raise self._fail("§5.2", "RSV1 is set on a continuation frame (RFC 7692 §6.1: only the first)", 0)

    def _interpret(self, frame: DissectedFrame, payload_at: int) -> DissectedFrame:
        opcode = frame.opcode
        if opcode == Opcode.CLOSE:
            return replace(frame, close=self._close(frame.payload, payload_at))
        if opcode >= 8:
            return frame
        if opcode != Opcode.CONT:
            self._message = opcode
            self._compressed = frame.rsv1
            self._carry = b""
            self._pieces = []
        is_text = self._message == Opcode.TEXT
        if frame.fin:
            self._message = None
        if self._compressed:
            return self._inflate(frame, is_text)
        if not is_text:
            return frame
        data = self._carry + frame.payload
        try:
            text, used = codecs.utf_8_decode(data, "strict", frame.fin)
        except UnicodeDecodeError as exc:
            if not self.check_text:
                self._carry = b""
                return frame
            at = payload_at + max(exc.start - len(self._carry), 0)
            raise self._fail("§8.1", "the text is not valid UTF-8", at, 1007) from None
        self._carry = data[used:]  # a character that continues in the next frame
        return replace(frame, text=text)

    def _inflate(self, frame: DissectedFrame, is_text: bool) -> DissectedFrame:
        self._pieces.append(frame.payload)
        if not frame.fin:
            return frame
        if self._inflater is None:
            self._inflater = zlib.decompressobj(-15)
        try:
            data = self._inflater.decompress(b"".join(self._pieces) + _DEFLATE_TAIL)
        except zlib.error as exc:
            raise self._fail("RFC 7692 §7.2.2", f"the compressed message does not inflate ({exc})", 0) from None
        self._pieces = []
        text = None
        if is_text:
            try:
                text = data.decode("utf-8")
            except UnicodeDecodeError:
                if self.check_text:
                    raise self._fail("§8.1", "the inflated text is not valid UTF-8", 0, 1007) from None
        return replace(frame, inflated=data, text=text)

    def _close(self, payload: bytes, payload_at: int) -> tuple[int, str]:
        self.closed = True
        if not payload:
            return 1005, ""
        if len(payload) == 1:
            raise self._fail("§5.5.1", "a close payload is empty or starts with a 2-byte code, not 1 byte", payload_at)
        code = int.from_bytes(payload[:2], "big")
        if not is_valid_close_code(code):
            raise self._fail("§7.4.1", f"close code {code} may not be sent in a close frame", payload_at)
        try:
            reason = payload[2:].decode("utf-8")
        except UnicodeDecodeError as exc:
            raise self._fail(
                "§5.5.1", "the close reason is not valid UTF-8", payload_at + 2 + exc.start, 1007
            ) from None
        return code, reason


def dissect(
    data: bytes, role: str | None = None, *, deflate: bool = False
) -> tuple[list[DissectedFrame], DissectError | None]:
    """Every frame in ``data`` and the first rule broken (None if none); bytes left over are an error too."""
    stream = FrameStream(role, deflate=deflate)
    frames = stream.feed(data)
    if stream.error is None and stream.buffered:
        return frames, InputEndsEarly(len(data) - stream.buffered, data[len(data) - stream.buffered :])
    return frames, stream.error


# --- presentation ---------------------------------------------------------------


def payload_preview(data: bytes, text: str | None = None, limit: int = 40) -> str:
    """A short form of a payload: quoted text when it is text, hex otherwise, cut at ``limit``."""
    if text is not None:
        shown = repr(text[:limit])
        return shown + ("…" if len(text) > limit else "")
    shown = data[:limit].hex(" ")
    return (shown + (" …" if len(data) > limit else "")) if data else "(empty)"


def one_line(frame: DissectedFrame, *, wire: bool = True) -> str:
    """The frame in one line: name, FIN, RSV bits, mask key, length, payload.

    ``wire=False`` leaves out the RSV bits and the mask, for a frame known
    before it was masked (the ``--trace`` log, see :func:`trace_line`).
    """
    parts = [opcode_name(frame.opcode), f"fin={frame.fin:d}"]
    if wire:
        parts.append(f"rsv={frame.rsv1:d}{frame.rsv2:d}{frame.rsv3:d}")
        parts.append(f"mask={frame.mask_key.hex()}" if frame.mask_key is not None else "unmasked")
    parts.append(f"len={frame.length}")
    parts.append(_meaning(frame))
    return " ".join(parts)


def _meaning(frame: DissectedFrame) -> str:
    if frame.close is not None:
        code, reason = frame.close
        return f"code={code}" + (f" reason={reason!r}" if reason else "") if code != 1005 else "(no code)"
    if frame.inflated is not None:
        return f"inflated={len(frame.inflated)} " + payload_preview(frame.inflated, frame.text)
    if frame.rsv1:
        return "(compressed) " + payload_preview(frame.payload)
    return payload_preview(frame.payload, frame.text)


def trace_line(opcode: int, fin: bool, payload: bytes | bytearray | memoryview) -> str:
    """:func:`one_line` for a frame known by its parts (what ``Protocol(trace=...)`` is given).

    The trace sees a frame before it is masked (and after it is unmasked), so
    the line has no RSV bits or mask. Only the start of a large payload is
    read, so tracing costs the same for any size.
    """
    length = len(payload)
    head = bytes(payload[:_PREVIEW_BYTES])
    text = None
    if opcode == Opcode.TEXT:
        try:  # the valid start of the text; a fragment may end inside a character
            text = codecs.utf_8_decode(head, "strict", length <= _PREVIEW_BYTES)[0]
        except UnicodeDecodeError:
            text = None
    close = None
    if opcode == Opcode.CLOSE:
        close = (int.from_bytes(head[:2], "big"), head[2:].decode("utf-8", "replace")) if head else (1005, "")
    bits = 7 if length < 126 else 16 if length < 1 << 16 else 64
    frame = DissectedFrame(
        0, fin, False, False, False, opcode, False, length, bits, None, head, head, text=text, close=close
    )
    return one_line(frame, wire=False)


_PREVIEW_BYTES = 160
_SECTION = "§5.2"


def fields(frame: DissectedFrame, limit: int = 64) -> list[tuple[str, str, str]]:
    """``(field, value, RFC section)`` rows describing ``frame``, in wire order."""
    rows = [
        ("FIN", f"{frame.fin:d}  " + ("final frame of its message" if frame.fin else "more frames follow"), "§5.2"),
        ("RSV1", f"{frame.rsv1:d}" + ("  compressed (permessage-deflate)" if frame.rsv1 else ""), "§5.2, RFC 7692 §6"),
        ("RSV2", f"{frame.rsv2:d}", _SECTION),
        ("RSV3", f"{frame.rsv3:d}", _SECTION),
        ("opcode", f"{frame.opcode:#x} {opcode_name(frame.opcode)}", "§5.2, §11.8"),
        ("MASK", f"{frame.masked:d}", "§5.2, §5.3"),
        ("length", _length_form(frame), _SECTION),
    ]
    if frame.mask_key is not None:
        rows.append(("masking key", frame.mask_key.hex(" "), "§5.3"))
        rows.append(("payload (masked)", _hex(frame.wire_payload, limit), "§5.3"))
    rows.append(("payload" if frame.mask_key is None else "payload (unmasked)", _hex(frame.payload, limit), "§5.3"))
    if frame.inflated is not None:
        rows.append(("inflated message", _hex(frame.inflated, limit), "RFC 7692 §7.2.2"))
    if frame.close is not None:
        code, reason = frame.close
        rows.append(("close code", "none (1005)" if code == 1005 else str(code), "§5.5.1, §7.4"))
        if reason:
            rows.append(("close reason", repr(reason), "§5.5.1"))
    elif frame.text is not None:
        rows.append(("text", repr(frame.text), "§5.6"))
    return rows


def _length_form(frame: DissectedFrame) -> str:
    if frame.length_bits == 7:
        return f"{frame.length} (7-bit)"
    marker = 126 if frame.length_bits == 16 else 127
    note = ""
    if (frame.length_bits == 16 and frame.length < 126) or (frame.length_bits == 64 and frame.length < 1 << 16):
        note = "; not the minimal form §5.2 requires"
    return f"{frame.length} ({marker} then {frame.length_bits}-bit {frame.length:#x}{note})"


def _hex(data: bytes, limit: int) -> str:
    if not data:
        return "(empty)"
    shown = data[:limit].hex(" ")
    return shown + (f" … ({len(data)} bytes)" if len(data) > limit else "")


def describe(frames: Sequence[DissectedFrame], error: DissectError | None = None, *, limit: int = 64) -> str:
    """Every frame field by field, then the broken rule if any: what ``python -m rawws decode`` prints."""
    lines: list[str] = []
    for number, frame in enumerate(frames, 1):
        lines.append(f"frame {number} at byte {frame.offset} ({frame.size} bytes): {one_line(frame)}")
        width = max(len(name) for name, _, _ in fields(frame, limit))
        for name, value, section in fields(frame, limit):
            lines.append(f"  {name:<{width}}  {value}  [{section}]")
    if isinstance(error, InputEndsEarly):
        lines.append(f"incomplete frame at byte {error.offset}: what arrived of its header:")
        width = max(len(name) for name, _, _ in error.header)
        lines += [f"  {name:<{width}}  {value}  [{section}]" for name, value, section in error.header]
        lines.append(f"input ends early: {error.rule} (not a protocol violation: more input would complete it)")
    elif error is not None:
        lines.append(
            f"error at byte {error.offset}: {error.section}: {error.rule} (a receiver closes with {error.close_code})"
        )
    return "\n".join(lines)
