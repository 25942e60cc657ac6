"""What a conforming server does with a case: rawws's own sans-I/O :class:`~rawws.protocol.Protocol` decides."""

from __future__ import annotations

from typing import NamedTuple

from ..protocol import SERVER, BinaryMessage, CloseReceived, Failure, Protocol, TextMessage
from .cases import Case

__all__ = ["Expected", "expect", "ORACLE_MAX_SIZE"]

ORACLE_MAX_SIZE = 2**24
"""The largest message the oracle accepts (16 MiB): valid cases stay far below it, ``message-too-big`` far above."""


class Expected(NamedTuple):
    """``outcome`` is ``"open"`` (the connection must stay open), ``"close"`` (the client closed: a close
    frame back, then TCP closed) or ``"fail"`` (a close frame with ``close_code``, then TCP closed)."""

    outcome: str
    close_code: int | None = None
    messages: tuple[str | bytes, ...] = ()
    """The messages the server receives before the outcome (what an echo server returns)."""
    reason: str = ""
    """For ``"fail"``, the rule rawws's protocol names."""


def expect(case: Case) -> Expected:
    """Feed the case to a server-side ``Protocol`` and read off what must happen."""
    protocol = Protocol(SERVER, max_size=ORACLE_MAX_SIZE)
    messages: list[str | bytes] = []
    for event in protocol.receive_data(case.data):
        if isinstance(event, (TextMessage, BinaryMessage)):
            messages.append(event.data)
        elif isinstance(event, Failure):
            return Expected("fail", event.error.close_code, tuple(messages), str(event.error))
        elif isinstance(event, CloseReceived):
            return Expected("close", event.code, tuple(messages))
    return Expected("open", None, tuple(messages))
