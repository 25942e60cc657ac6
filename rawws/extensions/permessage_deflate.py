"""permessage-deflate (RFC 7692): compression with the standard library's zlib.

:class:`DeflateConfig` holds what a user may choose; :func:`negotiate_server`
and :func:`client_offer` / :func:`accept_server_response` do the handshake
(§7.1); :class:`PerMessageDeflate` is the :class:`~rawws.extensions.Extension`
that compresses and inflates messages (§7.2).

Defaults, and why: both windows are 4 KiB (``max_window_bits=12``) and the
compressor uses ``memLevel=5``, so a connection's compressor costs about
32 KiB and its decompressor about 10 KiB, against about 300 KiB with zlib's
defaults; on the small, repetitive JSON messages WebSocket applications
exchange, the ratio lost is a few percent. Messages under ``threshold`` bytes
(64) are sent uncompressed: deflate's overhead outweighs the gain there.
Context takeover is kept (the default of the RFC): later messages refer back
to earlier ones, which is where most of the gain on chat-like streams comes
from. zlib objects are created on first use, so idle connections pay nothing.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass

from ..exceptions import InvalidHandshake, PayloadTooBig, ProtocolError
from ..frames import RSV1, Frame, Opcode

__all__ = [
    "DeflateConfig",
    "PerMessageDeflate",
    "negotiate_server",
    "client_offer",
    "accept_server_response",
    "NAME",
]

NAME = "permessage-deflate"
_TAIL = b"\x00\x00\xff\xff"  # §7.2.1: the empty stored block a sync flush ends with
_PARAMS = (
    "server_no_context_takeover",
    "client_no_context_takeover",
    "server_max_window_bits",
    "client_max_window_bits",
)

Params = Sequence[tuple[str, "str | None"]]


@dataclass(frozen=True)
class DeflateConfig:
    """What this endpoint asks for; see the module documentation for the defaults.

    Window bits are 9–15. (RFC 7692 allows 8, but zlib cannot compress with
    an 8-bit window, so an offer that would require it is declined.)
    """

    server_no_context_takeover: bool = False
    client_no_context_takeover: bool = False
    server_max_window_bits: int | None = 12
    client_max_window_bits: int | None = 12
    threshold: int = 64
    level: int = 6
    mem_level: int = 5

    def __post_init__(self) -> None:
        for name in ("server_max_window_bits", "client_max_window_bits"):
            value = getattr(self, name)
            if value is not None and not 9 <= value <= 15:
                raise ValueError(f"{name} must be between 9 and 15")
        if not 0 <= self.level <= 9 or not 1 <= self.mem_level <= 9:
            raise ValueError("level is 0-9 and mem_level 1-9")
        if self.threshold < 0:
            raise ValueError("threshold must be >= 0")


class PerMessageDeflate:
    """The negotiated extension for one connection (§7.2).

    ``compress_bits``/``compress_reset`` describe our side's compression,
    ``decompress_bits``/``decompress_reset`` the peer's.
    """

    name = NAME
    rsv_bits = RSV1

    def __init__(
        self,
        *,
        compress_bits: int,
        compress_reset: bool,
        decompress_bits: int,
        decompress_reset: bool,
        threshold: int = 64,
        level: int = 6,
        mem_level: int = 5,
    ) -> None:
        self.compress_bits = compress_bits
        self.compress_reset = compress_reset
        self.decompress_bits = max(9, decompress_bits)  # a larger window inflates any smaller one's output
        self.decompress_reset = decompress_reset
        self.threshold = threshold
        self.level = level
        self.mem_level = mem_level
        self._compressor: zlib._Compress | None = None
        self._decompressor: zlib._Decompress | None = None
        self._compressing = False  # the message being sent is compressed
        self._inflating = False  # the message being received is compressed
        self._inflated = 0  # bytes inflated so far in that message

    def __repr__(self) -> str:
        return (
            f"PerMessageDeflate(compress_bits={self.compress_bits}, compress_reset={self.compress_reset}, "
            f"decompress_bits={self.decompress_bits}, decompress_reset={self.decompress_reset})"
        )

    # --- sending (§7.2.1) --------------------------------------------------------------

    def encode(self, frame: Frame, *, message_opcode: int) -> Frame:
        if frame.opcode >= 8:
            return frame  # §6: control frames are never compressed
        if frame.opcode != Opcode.CONT:
            # First frame: decide for the whole message.
            self._compressing = len(frame.payload) >= self.threshold
        if not self._compressing:
            return frame
        if self._compressor is None:
            self._compressor = zlib.compressobj(self.level, zlib.DEFLATED, -self.compress_bits, self.mem_level)
        data = self._compressor.compress(frame.payload) + self._compressor.flush(zlib.Z_SYNC_FLUSH)
        if frame.fin:
            if data.endswith(_TAIL):
                data = data[:-4]
            if self.compress_reset:
                self._compressor = None  # no context takeover: the next message starts afresh
        first = frame.opcode != Opcode.CONT
        return Frame(frame.opcode, data, frame.fin, first, frame.rsv2, frame.rsv3)

    # --- receiving (§7.2.2) ---------------------------------------------------------------

    def decode(self, frame: Frame, *, max_size: int | None) -> Frame:
        if frame.opcode >= 8:
            if frame.rsv1:
                raise ProtocolError("RFC 7692 §6: RSV1 must not be set on a control frame")
            return frame
        if frame.opcode != Opcode.CONT:
            self._inflating = frame.rsv1
            self._inflated = 0
        elif frame.rsv1:
            raise ProtocolError("RFC 7692 §6.1: RSV1 may be set only on the first frame of a message")
        if not self._inflating:
            return frame
        if self._decompressor is None:
            self._decompressor = zlib.decompressobj(-self.decompress_bits)
        data = frame.payload + _TAIL if frame.fin else frame.payload
        # Inflate at most what max_size still allows, plus one byte to notice overflow:
        # a small frame that would inflate to gigabytes never costs more than that.
        budget = 0 if max_size is None else max_size - self._inflated + 1
        try:
            payload = self._decompressor.decompress(data, budget)
        except zlib.error as exc:
            raise ProtocolError(f"RFC 7692 §7.2.2: cannot inflate the message: {exc}", close_code=1007) from None
        self._inflated += len(payload)
        if max_size is not None and (self._inflated > max_size or self._decompressor.unconsumed_tail):
            self._decompressor = None
            raise PayloadTooBig(f"message inflates past max_size={max_size}")
        if frame.fin:
            if self.decompress_reset:
                self._decompressor = None
            self._inflating = False
        return Frame(frame.opcode, payload, frame.fin, False, frame.rsv2, frame.rsv3)


# --- negotiation (§7.1) -------------------------------------------------------------------


class _BadParams(ValueError):
    pass


def _read_params(params: Params) -> dict[str, str | None]:
    """Check names, duplicates and values (§7.1); raise _BadParams saying what is wrong."""
    seen: dict[str, str | None] = {}
    for name, value in params:
        if name not in _PARAMS:
            raise _BadParams(f"unknown parameter {name}")
        if name in seen:
            raise _BadParams(f"parameter {name} appears twice")
        if name.endswith("no_context_takeover"):
            if value is not None:
                raise _BadParams(f"{name} takes no value")
        elif value is not None or name == "server_max_window_bits":
            if value is None or not value.isdigit() or value != str(int(value)) or not 8 <= int(value) <= 15:
                raise _BadParams(f"{name} must be an integer from 8 to 15")
        seen[name] = value
    return seen


def negotiate_server(
    offers: Sequence[tuple[str, Params]], config: DeflateConfig
) -> tuple[list[tuple[str, str | None]], PerMessageDeflate] | None:
    """Server side: accept the first acceptable permessage-deflate offer (§7.1, §5.1 of RFC 6455 §9.1).

    Returns the response parameters and the extension, or None if no offer
    is acceptable (the connection then proceeds without compression).
    """
    for name, params in offers:
        if name != NAME:
            continue
        try:
            offer = _read_params(params)
        except _BadParams:
            continue  # an invalid offer is declined; the next one may do
        response: list[tuple[str, str | None]] = []
        server_reset = "server_no_context_takeover" in offer or config.server_no_context_takeover
        client_reset = "client_no_context_takeover" in offer or config.client_no_context_takeover
        if server_reset:
            response.append(("server_no_context_takeover", None))
        if client_reset:
            response.append(("client_no_context_takeover", None))
        offered_server_bits = offer.get("server_max_window_bits")
        server_bits = min(int(offered_server_bits or 15), config.server_max_window_bits or 15)
        if server_bits < 9:
            continue  # zlib cannot compress with an 8-bit window
        if server_bits < 15 or offered_server_bits is not None:
            response.append(("server_max_window_bits", str(server_bits)))
        if "client_max_window_bits" in offer:
            client_bits = min(int(offer["client_max_window_bits"] or 15), config.client_max_window_bits or 15)
            if client_bits < 15 or offer["client_max_window_bits"] is not None:
                response.append(("client_max_window_bits", str(client_bits)))
        else:
            client_bits = 15  # the client did not say it can limit its window (§7.1.2.2)
        extension = PerMessageDeflate(
            compress_bits=server_bits,
            compress_reset=server_reset,
            decompress_bits=client_bits,
            decompress_reset=client_reset,
            threshold=config.threshold,
            level=config.level,
            mem_level=config.mem_level,
        )
        return response, extension
    return None


def client_offer(config: DeflateConfig) -> tuple[str, list[tuple[str, str | None]]]:
    """Client side: the offer for ``Sec-WebSocket-Extensions``."""
    params: list[tuple[str, str | None]] = []
    if config.server_no_context_takeover:
        params.append(("server_no_context_takeover", None))
    if config.client_no_context_takeover:
        params.append(("client_no_context_takeover", None))
    if config.server_max_window_bits is not None and config.server_max_window_bits < 15:
        params.append(("server_max_window_bits", str(config.server_max_window_bits)))
    # Always say we can limit our window; with a value, we ask for that limit.
    bits = config.client_max_window_bits
    params.append(("client_max_window_bits", str(bits) if bits is not None and bits < 15 else None))
    return NAME, params


def accept_server_response(params: Params, config: DeflateConfig) -> PerMessageDeflate:
    """Client side: check the server's answer (§7.1) and build the extension, or raise InvalidHandshake."""
    try:
        response = _read_params(params)
    except _BadParams as exc:
        raise InvalidHandshake(f"invalid permessage-deflate response: {exc}", status=0) from None
    if config.server_no_context_takeover and "server_no_context_takeover" not in response:
        raise InvalidHandshake("the server ignored server_no_context_takeover, which it must honour", status=0)
    server_bits_text = response.get("server_max_window_bits")
    offered_server_bits = config.server_max_window_bits if (config.server_max_window_bits or 15) < 15 else None
    if offered_server_bits is not None and (server_bits_text is None or int(server_bits_text) > offered_server_bits):
        raise InvalidHandshake("the server did not limit its window as the client asked", status=0)
    client_bits = int(response.get("client_max_window_bits") or 15)
    if config.client_max_window_bits is not None:
        # §7.1.2.2 lets the server only lower the limit the client offered; some servers answer
        # a larger one (the Autobahn suite's answers 15 to an offer of 12). Compressing with a
        # window no larger than the server allows is always valid, so keep the smaller one.
        client_bits = min(client_bits, config.client_max_window_bits)
    if client_bits < 9:
        raise InvalidHandshake("the server asked for an 8-bit window, which zlib cannot compress with", status=0)
    return PerMessageDeflate(
        compress_bits=client_bits,
        compress_reset="client_no_context_takeover" in response or config.client_no_context_takeover,
        decompress_bits=int(server_bits_text or 15),
        decompress_reset="server_no_context_takeover" in response,
        threshold=config.threshold,
        level=config.level,
        mem_level=config.mem_level,
    )


def compression_config(compression: str | DeflateConfig | None) -> DeflateConfig | None:
    """What ``serve(compression=...)`` and ``connect(compression=...)`` accept, as a config (or None: off)."""
    if compression is None or isinstance(compression, DeflateConfig):
        return compression
    if compression == "deflate":
        return DeflateConfig()
    raise ValueError(f'compression must be "deflate", a DeflateConfig or None, not {compression!r}')
