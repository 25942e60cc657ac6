"""The extension interface (RFC 6455 §9).

An extension is negotiated in the opening handshake by an
:class:`ExtensionFactory`; the result is an :class:`Extension` that the
sans-I/O :class:`~rawws.protocol.Protocol` applies to every data frame: in
list order when sending and in reverse order when receiving. An extension
claims RSV bits (§5.2); frames carrying bits no extension claimed are refused.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol as TypingProtocol

from ..frames import Frame

__all__ = ["Extension", "ExtensionFactory"]


class Extension(TypingProtocol):
    """A negotiated extension, with its state for one connection."""

    name: str
    rsv_bits: int

    def encode(self, frame: Frame, *, message_opcode: int) -> Frame:
        """Transform an outgoing data frame (``message_opcode`` is TEXT or BINARY)."""
        ...

    def decode(self, frame: Frame, *, max_size: int | None) -> Frame:
        """Transform an incoming frame; refuse output larger than ``max_size``.

        Control frames pass through unchanged.
        """
        ...


class ExtensionFactory(TypingProtocol):
    """Negotiates one extension, in the server role or the client role."""

    name: str

    def offer(self) -> list[tuple[str, str | None]]:
        """Client: the parameters to offer in ``Sec-WebSocket-Extensions``."""
        ...

    def accept_response(self, params: Sequence[tuple[str, str | None]]) -> Extension:
        """Client: build the extension from the server's answer, or raise InvalidHandshake."""
        ...

    def accept_offer(
        self, params: Sequence[tuple[str, str | None]]
    ) -> tuple[list[tuple[str, str | None]], Extension] | None:
        """Server: answer one offer with response parameters and the extension, or None to decline."""
        ...
