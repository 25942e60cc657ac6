"""The sans-I/O WebSocket connection: RFC 6455 §5 (data framing) and §7 (closing).

:class:`Protocol` is a state machine with no sockets, threads or clocks. Give
it the bytes that arrived with :meth:`Protocol.receive_data` and it returns
events; call its ``send_*`` methods and collect the bytes to write with
:meth:`Protocol.data_to_send`. Step through it in a REPL::

    >>> from rawws.protocol import Protocol, SERVER
    >>> p = Protocol(SERVER)
    >>> p.receive_data(bytes.fromhex("818537fa213d7f9f4d5158"))  # §5.7 masked "Hello"
    [TextMessage(data='Hello')]
    >>> p.send_text("Hi"); p.data_to_send()
    [b'\\x81\\x02Hi']

Peer errors never raise out of :meth:`receive_data`: it returns the events
decoded before the error, then a :class:`Failure` event, and _Fails the
WebSocket Connection_ (§7.1.7): a close frame with the right code is queued
once, data after it is ignored, and :attr:`Protocol.should_close_tcp` turns
True. An I/O layer that wants to deliver the earlier messages before the
close frame goes out passes ``defer_failure=True`` and calls :meth:`fail`
itself.
"""

from __future__ import annotations

import enum
import os
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, NamedTuple, Union

from .exceptions import InvalidState, PayloadTooBig, ProtocolError
from .frames import (
    CloseCode,
    Data,
    Frame,
    FrameParser,
    Opcode,
    frame_buffers,
    parse_close,
    serialize_close,
)
from .utf8 import Utf8Decoder

if TYPE_CHECKING:
    from .extensions import Extension

__all__ = [
    "Role",
    "SERVER",
    "CLIENT",
    "State",
    "Protocol",
    "Event",
    "TextMessage",
    "BinaryMessage",
    "Fragment",
    "Ping",
    "Pong",
    "CloseReceived",
    "Failure",
    "PreparedMessage",
    "prepare_message",
]


_NOT_TEXT = 1 << 62  # Protocol._early_checked for a frame in progress that holds no text to check


class Role(enum.Enum):
    """Which end of the connection this is; it decides the masking rules of §5.1."""

    SERVER = "server"
    CLIENT = "client"


SERVER = Role.SERVER
CLIENT = Role.CLIENT


class State(enum.IntEnum):
    """The connection states of §4.1 and §7: CONNECTING, OPEN, CLOSING, CLOSED."""

    CONNECTING = 0
    OPEN = 1
    CLOSING = 2  # a close frame was sent and the peer's has not arrived yet
    CLOSED = 3  # both close frames exchanged (or the connection failed / TCP ended)


# --- events ----------------------------------------------------------------------


class TextMessage(NamedTuple):
    """A complete text message (opcode 0x1 and its continuations), decoded from UTF-8."""

    data: str


class BinaryMessage(NamedTuple):
    """A complete binary message (opcode 0x2 and its continuations)."""

    data: bytes


class Fragment(NamedTuple):
    """One frame's worth of a fragmented message, when fragment events are on.

    ``data`` is ``str`` for a text message (decoded incrementally, so a
    character split across frames appears whole in the later fragment) and
    ``bytes`` for a binary one. ``first`` and ``last`` mark the message edges.
    """

    data: str | bytes
    first: bool
    last: bool


class Ping(NamedTuple):
    """A ping arrived; with ``auto_pong`` on, the pong answering it is already queued (§5.5.2)."""

    data: bytes


class Pong(NamedTuple):
    """A pong arrived (§5.5.3)."""

    data: bytes


class CloseReceived(NamedTuple):
    """The peer's close frame arrived (§5.5.1); 1005 means it carried no code."""

    code: int
    reason: str


class PreparedMessage(NamedTuple):
    """A message framed once, to be queued on many server connections (§5.2, unmasked)."""

    opcode: int
    payload: bytes
    buffers: list[Data]


def prepare_message(message: str | bytes | bytearray | memoryview) -> PreparedMessage:
    """Frame ``message`` once (text for ``str``, binary otherwise) for :meth:`Protocol.send_prepared`."""
    if isinstance(message, str):
        opcode, payload = Opcode.TEXT, message.encode("utf-8")
    else:
        opcode, payload = Opcode.BINARY, bytes(message)
    return PreparedMessage(opcode, payload, frame_buffers(0x80 | opcode, payload))


class Failure(NamedTuple):
    """The peer broke the protocol; ``error.close_code`` is the code to fail with (§7.1.7)."""

    error: ProtocolError


Event = Union[TextMessage, BinaryMessage, Fragment, Ping, Pong, CloseReceived, Failure]


class Protocol:
    """One WebSocket connection after the opening handshake, either role.

    ``max_size`` caps one message's payload (None: no cap); ``fragment_events``
    makes a fragmented message arrive as :class:`Fragment` events instead of
    one reassembled message; ``auto_pong`` answers pings; ``extensions`` are
    negotiated extensions (RFC 7692 permessage-deflate is one), applied in
    order to incoming frames and in reverse to outgoing ones.
    """

    def __init__(
        self,
        role: Role,
        *,
        max_size: int | None = 2**20,
        fragment_events: bool = False,
        auto_pong: bool = True,
        defer_failure: bool = False,
        extensions: Sequence[Extension] = (),
        state: State = State.OPEN,
        trace: Callable[[str, int, bool, Data], None] | None = None,
    ) -> None:
        self.role = role
        self.state = state
        self.max_size = max_size
        self.fragment_events = fragment_events
        self.auto_pong = auto_pong
        self.defer_failure = defer_failure
        self.extensions = list(extensions)
        rsv = 0
        for extension in self.extensions:
            rsv |= extension.rsv_bits
        self._mask = role is CLIENT
        self._key_block = b""
        self._key_position = 0
        self._parser = FrameParser(mask_expected=role is SERVER, max_size=max_size, allowed_rsv=rsv)
        self._out: list[Data] = []
        self._pong_index: int | None = None  # where in _out an unsent automatic pong sits
        # Receiving side: the message being reassembled.
        self._in_opcode: int | None = None  # TEXT or BINARY while a fragmented message is open
        self._in_rsv1 = False  # the open message's first frame had RSV1 (compressed)
        self._in_buffer = bytearray()  # its payload so far, when fragment events are off
        self._in_size = 0
        self._utf8: Utf8Decoder | None = None
        # A large text frame still arriving: how much of it is checked, and the checker (§8.1).
        self._early_checked = 0
        self._early_utf8: Utf8Decoder | None = None
        # Sending side: the opcode of a fragmented message being sent.
        self._out_opcode: int | None = None
        # Closing handshake bookkeeping (§7.1).
        self.close_sent: tuple[int, str] | None = None
        self.close_received: tuple[int, str] | None = None
        self.failure: ProtocolError | None = None
        self.should_close_tcp = False
        self.eof_received = False
        self.trace = trace
        """If set, called with ("<" or ">", opcode, fin, payload) for every frame in and out."""
        self.wire_tap: Callable[[str, bytes], None] | None = None
        """If set, called with ("<", bytes) for every chunk :meth:`receive_data` is given and with (">", bytes)
        for everything :meth:`data_to_send` hands out: the connection's bytes exactly as they cross the wire
        (what the demo's wire view dissects). Called with the I/O layer's locks held: it must only queue."""

    def __repr__(self) -> str:
        return f"<Protocol {self.role.value} {self.state.name}>"

    # --- receiving ---------------------------------------------------------------

    def receive_data(self, data: bytes | bytearray | memoryview, *, max_messages: int | None = None) -> list[Event]:
        """Feed bytes from the peer; return the events they complete, in order.

        With ``max_messages``, stop once that many messages are complete (a
        fragmented message counts when its last frame arrives): the remaining
        bytes stay buffered, unparsed and not inflated, and
        :attr:`input_waiting` is True until a later call (``receive_data(b"")``
        will do) parses them. An I/O layer passes the room left in its queue of
        received messages, so one read never costs more than that many messages.
        """
        if self.wire_tap is not None and data:
            self.wire_tap("<", bytes(data))
        if self.failure is not None or self.close_received is not None or self.eof_received:
            return []  # §5.5.1: nothing after the peer's close frame counts; after a failure, nothing at all
        events: list[Event] = []
        error: ProtocolError | None
        try:
            frames = self._parser.feed(data, max_messages)
        except ProtocolError as exc:
            frames = None
            error = exc
        else:
            error = None
        try:
            if frames:
                self._early_checked = 0  # whatever is in progress now is a new frame
                self._early_utf8 = None
            for frame in frames or ():
                self._receive_frame(frame, events)
                if self.close_received is not None:
                    break
            else:
                if error is None:
                    error = self._parser.error
                if error is None and not self._parser.stopped_early and self._parser.buffered > self._early_checked:
                    self._check_partial_text()
        except ProtocolError as exc:
            error = exc
        if error is not None:
            self._in_buffer = bytearray()
            self.failure = error
            events.append(Failure(error))
            if not self.defer_failure:
                self.fail(error.close_code, str(error)[:123])
        return events

    @property
    def input_waiting(self) -> bool:
        """Whether bytes from the peer wait, unparsed, because ``max_messages`` was reached.

        Never once the peer's close frame, a failure or EOF has ended receiving:
        what follows then is never parsed (§5.5.1), so nothing waits for a later call.
        """
        return (
            self._parser.stopped_early
            and self.failure is None
            and self.close_received is None
            and not self.eof_received
        )

    def _check_partial_text(self) -> None:
        """§8.1: fail on invalid UTF-8 in a text frame that is still arriving, not only when it ends.

        Compressed frames are checked once inflated: their bytes on the wire are not text.
        """
        first = self._parser.pending_first_byte
        if first is None:
            return
        opcode = first & 0x0F
        if opcode == Opcode.TEXT and not first & 0x40 and self._in_opcode is None:
            if self._early_utf8 is None:
                self._early_utf8 = Utf8Decoder()
        elif opcode == Opcode.CONT and self._in_opcode == Opcode.TEXT and not self._in_rsv1:
            if self._early_utf8 is None:
                assert self._utf8 is not None
                self._early_utf8 = self._utf8.copy()
        else:
            self._early_checked = _NOT_TEXT  # nothing to check in this frame: look again at the next one
            return
        peek = self._parser.peek_payload(self._early_checked)
        if peek is None:
            return
        data = peek[1]
        self._early_checked += len(data)
        try:
            self._early_utf8.decode(data)
        except UnicodeDecodeError:
            raise ProtocolError("§8.1: text message is not valid UTF-8", close_code=1007) from None

    def _receive_frame(self, frame: Frame, events: list[Event]) -> None:
        if self.trace is not None:
            self.trace("<", frame.opcode, frame.fin, frame.payload)
        compressed = frame.rsv1
        for extension in reversed(self.extensions):
            frame = extension.decode(frame, max_size=self.max_size)
        opcode = frame.opcode
        if opcode == Opcode.TEXT or opcode == Opcode.BINARY:
            if self._in_opcode is not None:
                raise ProtocolError("§5.4: a new data frame arrived inside an unfinished fragmented message")
            if frame.fin:
                if self.max_size is not None and len(frame.payload) > self.max_size:
                    # The parser allows deflate's expansion on the wire; the message itself may not pass max_size.
                    raise PayloadTooBig(f"message of {len(frame.payload)} bytes exceeds max_size={self.max_size}")
                if opcode == Opcode.TEXT:
                    try:
                        events.append(TextMessage(frame.payload.decode("utf-8")))
                    except UnicodeDecodeError:
                        raise ProtocolError("§8.1: text message is not valid UTF-8", close_code=1007) from None
                else:
                    events.append(BinaryMessage(frame.payload))
                return
            self._in_opcode = opcode
            self._in_rsv1 = compressed
            self._in_size = 0
            self._utf8 = Utf8Decoder() if opcode == Opcode.TEXT else None
            self._receive_fragment(frame, events, first=True)
        elif opcode == Opcode.CONT:
            if self._in_opcode is None:
                raise ProtocolError("§5.4: a continuation frame arrived with no message to continue")
            self._receive_fragment(frame, events, first=False)
        elif opcode == Opcode.PING:
            events.append(Ping(frame.payload))
            if self.auto_pong and self.state is State.OPEN:
                self._answer_ping(frame.payload)
        elif opcode == Opcode.PONG:
            events.append(Pong(frame.payload))
        else:  # CLOSE
            self._receive_close(frame.payload, events)

    def _receive_fragment(self, frame: Frame, events: list[Event], *, first: bool) -> None:
        payload = frame.payload
        self._in_size += len(payload)
        if self.max_size is not None and self._in_size > self.max_size:
            # Reached only when an extension grew the payload; the parser checks raw sizes.
            raise PayloadTooBig(f"message of at least {self._in_size} bytes exceeds max_size={self.max_size}")
        last = frame.fin
        data: str | bytes
        if self._utf8 is not None:
            try:
                data = self._utf8.decode(payload, last)
            except UnicodeDecodeError:
                raise ProtocolError("§8.1: text message is not valid UTF-8", close_code=1007) from None
        else:
            data = payload
        if self.fragment_events:
            events.append(Fragment(data, first, last))
        else:
            # One buffer, not a list of pieces: a message in many tiny fragments costs its size, not
            # an object per fragment. Text is validated above and decoded once, at the end.
            self._in_buffer += payload
            if last:
                if self._utf8 is not None:
                    events.append(TextMessage(self._in_buffer.decode("utf-8")))
                else:
                    events.append(BinaryMessage(bytes(self._in_buffer)))
                self._in_buffer = bytearray()
        if last:
            self._in_opcode = None
            self._utf8 = None

    def _receive_close(self, payload: bytes, events: list[Event]) -> None:
        code, reason = parse_close(payload)
        self.close_received = (code, reason)
        events.append(CloseReceived(code, reason))
        if self.close_sent is None:
            # §5.5.1: answer with a close frame, typically echoing the code.
            if code == CloseCode.NO_STATUS_RCVD:
                self._send_frame(Opcode.CLOSE, b"")
                self.close_sent = (CloseCode.NO_STATUS_RCVD, "")
            else:
                self._send_frame(Opcode.CLOSE, serialize_close(code))
                self.close_sent = (code, "")
        self.state = State.CLOSED
        # §7.1.1: the server closes the TCP connection first; the client waits for it.
        if self.role is SERVER:
            self.should_close_tcp = True

    def receive_eof(self) -> None:
        """The peer closed its side of TCP. Without a closing handshake this is 1006 (§7.1.5)."""
        self.eof_received = True
        self.state = State.CLOSED
        self.should_close_tcp = True

    # --- sending -----------------------------------------------------------------

    def _check_open(self) -> None:
        if self.state is not State.OPEN:
            raise InvalidState(f"cannot send: the connection is {self.state.name}")

    def send_text(self, data: str | bytes, *, fin: bool = True) -> None:
        """Send a text message, or its first fragment when ``fin`` is False (§5.4, §5.6)."""
        self._send_data(Opcode.TEXT, data.encode("utf-8") if isinstance(data, str) else data, fin)

    def send_binary(self, data: bytes | bytearray | memoryview, *, fin: bool = True) -> None:
        """Send a binary message, or its first fragment when ``fin`` is False."""
        self._send_data(Opcode.BINARY, data, fin)

    def send_continuation(self, data: str | bytes | bytearray | memoryview, *, fin: bool) -> None:
        """Send the next fragment of the message begun with ``fin=False``."""
        if self._out_opcode is None:
            raise InvalidState("no fragmented message is being sent")
        payload = data.encode("utf-8") if isinstance(data, str) else data
        self._check_open()
        frame = Frame(Opcode.CONT, bytes(payload), fin)
        for extension in self.extensions:
            frame = extension.encode(frame, message_opcode=self._out_opcode)
        self._write_frame(frame)
        if fin:
            self._out_opcode = None

    def _send_data(self, opcode: Opcode, payload: bytes | bytearray | memoryview, fin: bool) -> None:
        if self.state is not State.OPEN:
            raise InvalidState(f"cannot send: the connection is {self.state.name}")
        if self._out_opcode is not None:
            raise InvalidState("a fragmented message is being sent; finish it with send_continuation")
        if self.extensions:
            frame = Frame(opcode, bytes(payload), fin)
            for extension in self.extensions:
                frame = extension.encode(frame, message_opcode=opcode)
            self._write_frame(frame)
        else:
            self._send_frame(opcode, payload, fin)
        if not fin:
            self._out_opcode = opcode

    def send_ping(self, data: bytes = b"") -> None:
        """Send a ping (§5.5.2); at most 125 bytes of payload."""
        self._check_open()
        self._send_control(Opcode.PING, data)

    def send_pong(self, data: bytes = b"") -> None:
        """Send a pong (§5.5.3), answering a ping or as an unsolicited heartbeat."""
        self._check_open()
        self._send_control(Opcode.PONG, data)

    @property
    def pong_pending(self) -> bool:
        """Whether an automatic pong waits in the output, not yet taken by :meth:`data_to_send`."""
        return self._pong_index is not None

    def _answer_ping(self, payload: bytes) -> None:
        """Queue the pong for a ping (§5.5.2), replacing one still unsent.

        §5.5.3 lets an endpoint that has not yet answered earlier pings answer
        only the most recent: a peer that floods pings and never reads gets one
        pong waiting for it, not one per ping.
        """
        index = self._pong_index
        self._send_control(Opcode.PONG, payload)
        if index is not None:
            self._out[index] = self._out.pop()
        else:
            self._pong_index = len(self._out) - 1

    def _send_control(self, opcode: Opcode, data: bytes) -> None:
        if len(data) > 125:
            raise ValueError("a control frame payload is at most 125 bytes (§5.5)")
        self._send_frame(opcode, bytes(data))

    def send_close(self, code: int = CloseCode.NORMAL_CLOSURE, reason: str = "") -> None:
        """Start the closing handshake (§5.5.1, §7.1.2); the state becomes CLOSING.

        Raises :class:`ValueError` for a code that may not be sent (§7.4:
        1005, 1006, 1015, 1004, below 1000, 1016-2999, above 4999).
        """
        payload = serialize_close(code, reason)
        if self.state is not State.OPEN:
            raise InvalidState(f"cannot close: the connection is {self.state.name}")
        self._send_frame(Opcode.CLOSE, payload)
        self.close_sent = (code, reason)
        self.state = State.CLOSING

    def fail(self, code: int = CloseCode.PROTOCOL_ERROR, reason: str = "") -> None:
        """_Fail the WebSocket Connection_ (§7.1.7): send a close frame once, then close TCP.

        Unlike :meth:`send_close` this does not wait for the peer's close
        frame: :attr:`should_close_tcp` is True afterwards.
        """
        if self.state is State.OPEN and self.close_sent is None:
            reason_bytes = reason.encode("utf-8")[:123]
            payload = serialize_close(code, reason_bytes.decode("utf-8", "ignore"))
            self._send_frame(Opcode.CLOSE, payload)
            self.close_sent = (code, reason)
        self.state = State.CLOSED
        self.should_close_tcp = True

    def _send_frame(self, opcode: int, payload: Data, fin: bool = True, rsv: int = 0) -> None:
        if self.trace is not None:
            self.trace(">", opcode, fin, payload)
        first = (0x80 | rsv | opcode) if fin else (rsv | opcode)
        frame_buffers(first, payload, self._mask_key() if self._mask else None, self._out)

    def _mask_key(self) -> bytes:
        """A fresh masking key (§5.3), cut from a block of ``os.urandom`` output.

        One ``os.urandom`` call per 256 frames instead of one per frame; every
        key is still unpredictable kernel CSPRNG output, used once.
        """
        position = self._key_position
        if position >= len(self._key_block):
            self._key_block = os.urandom(1024)
            position = 0
        self._key_position = position + 4
        return self._key_block[position : position + 4]

    def _write_frame(self, frame: Frame) -> None:
        self._send_frame(frame.opcode, frame.payload, frame.fin, frame.rsv)

    @property
    def sending_fragmented(self) -> bool:
        """Whether a fragmented message is being sent (begun with ``fin=False``, not yet finished)."""
        return self._out_opcode is not None

    @property
    def can_send_prepared(self) -> bool:
        """Whether :meth:`send_prepared` may be used: a server whose frames no extension transforms."""
        return self.role is SERVER and not self.extensions

    def send_prepared(self, prepared: PreparedMessage) -> None:
        """Queue a message framed once for many connections (see :func:`prepare_message`).

        Only where :attr:`can_send_prepared` holds: server frames are not
        masked, so the same bytes are valid on every such connection.
        """
        self._check_open()
        if not self.can_send_prepared:
            raise InvalidState("a prepared frame needs a server connection without extensions")
        if self._out_opcode is not None:
            raise InvalidState("a fragmented message is being sent; finish it with send_continuation")
        if self.trace is not None:
            self.trace(">", prepared.opcode, True, prepared.payload)
        self._out += prepared.buffers

    def data_to_send(self) -> list[Data]:
        """The bytes queued for the peer, in order, as a list of buffers; the queue is emptied."""
        out = self._out
        if out:
            self._out = []
            self._pong_index = None
            if self.wire_tap is not None:
                self.wire_tap(">", b"".join(out))
        return out

    @property
    def output_size(self) -> int:
        """Bytes queued by ``send_*`` (and automatic answers) that :meth:`data_to_send` has not taken yet."""
        out = self._out
        return sum(len(b) for b in out) if out else 0

    @property
    def parser_buffered(self) -> int:
        """Bytes held by the frame parser (for memory-bound tests)."""
        return self._parser.buffered

    @property
    def close_code(self) -> int | None:
        """The code of the peer's close frame; 1006 if TCP ended without one, None while open."""
        if self.close_received is not None:
            return self.close_received[0]
        if self.state is State.CLOSED:
            return CloseCode.ABNORMAL_CLOSURE
        return None
