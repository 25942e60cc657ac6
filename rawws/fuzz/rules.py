"""The rules the fuzzer checks: an id, a group, the RFC 6455 section and the rule in one sentence."""

from __future__ import annotations

from typing import NamedTuple

__all__ = ["Rule", "RULES", "GROUPS", "rule", "select"]


class Rule(NamedTuple):
    id: str
    group: str
    section: str
    sentence: str
    close_code: int | None = None
    """The close code a conforming server answers a broken case with; None for the valid groups."""


RULES: tuple[Rule, ...] = (
    Rule(
        "valid-messages",
        "valid",
        "§5.4, §5.6",
        "Text, binary and fragmented messages with control frames between their fragments, in every length form "
        "(7, 16 and 64 bits) and written in any chunks, are valid: the connection stays open "
        "(with --echo, every message comes back unchanged).",
    ),
    Rule(
        "valid-close",
        "valid",
        "§5.5.1, §7.1.1",
        "A server answers a close frame with a close frame and then closes the TCP connection first.",
    ),
    Rule(
        "handshake-accept",
        "handshake",
        "§4.2.2",
        "A server accepting the handshake answers 101 with Sec-WebSocket-Accept = base64(SHA-1(key + GUID)).",
    ),
    Rule(
        "handshake-version",
        "handshake",
        "§4.2.2, §4.4",
        "A request whose Sec-WebSocket-Version is not 13 is refused with an HTTP error "
        "(such as 426) carrying a Sec-WebSocket-Version header with the versions the server speaks.",
    ),
    Rule(
        "handshake-key",
        "handshake",
        "§4.2.1",
        "A Sec-WebSocket-Key that is not 16 bytes in base64 makes the request invalid: the server refuses it.",
    ),
    Rule(
        "handshake-method", "handshake", "§4.1, §4.2.1", "The opening handshake is a GET request; others are refused."
    ),
    Rule(
        "reserved-opcode",
        "framing",
        "§5.2",
        "A frame with a reserved opcode (0x3-0x7, 0xB-0xF) fails the connection.",
        1002,
    ),
    Rule(
        "reserved-bits",
        "framing",
        "§5.2",
        "RSV1-3 must be 0 unless a negotiated extension defines them; a receiver fails the connection otherwise.",
        1002,
    ),
    Rule(
        "unmasked-frame",
        "framing",
        "§5.1",
        "A client masks every frame; a server closes the connection when a frame arrives unmasked.",
        1002,
    ),
    Rule(
        "length-msb",
        "framing",
        "§5.2",
        "The most significant bit of a 64-bit payload length must be 0.",
        1002,
    ),
    Rule(
        "control-too-long",
        "control",
        "§5.5",
        "A control frame's payload is at most 125 bytes.",
        1002,
    ),
    Rule(
        "control-fragmented",
        "control",
        "§5.5",
        "Control frames must not be fragmented: their FIN bit is 1.",
        1002,
    ),
    Rule(
        "continuation-without-start",
        "fragmentation",
        "§5.4",
        "A continuation frame (opcode 0) only continues a message begun by a data frame with FIN clear.",
        1002,
    ),
    Rule(
        "interleaved-messages",
        "fragmentation",
        "§5.4",
        "The fragments of one message are not interleaved with another data message.",
        1002,
    ),
    Rule(
        "invalid-utf8",
        "utf8",
        "§8.1",
        "A text message must be valid UTF-8 (however its bytes are split across frames); "
        "otherwise the receiver fails the connection with 1007.",
        1007,
    ),
    Rule(
        "bad-close-code",
        "close",
        "§7.4.1, §7.4.2",
        "A close frame carries 1000-1003, 1007-1014 or 3000-4999; any other code is a protocol error.",
        1002,
    ),
    Rule(
        "close-one-byte",
        "close",
        "§5.5.1",
        "A close payload is empty or starts with a 2-byte status code; one byte is a protocol error.",
        1002,
    ),
    Rule(
        "bad-close-reason",
        "close",
        "§5.5.1, §8.1",
        "A close reason must be valid UTF-8; otherwise the receiver fails the connection with 1007.",
        1007,
    ),
    Rule(
        "data-after-close",
        "close",
        "§5.5.1",
        "After a close frame the peer may send nothing more: data that follows it is ignored, not delivered.",
    ),
    Rule(
        "message-too-big",
        "limits",
        "§7.4.1, §10.4",
        "A frame announcing more than the server can take (here 2**40 bytes) is refused with 1009.",
        1009,
    ),
)

GROUPS = tuple(dict.fromkeys(r.group for r in RULES))
_BY_ID = {r.id: r for r in RULES}


def rule(rule_id: str) -> Rule:
    """The rule with this id (``KeyError`` if none)."""
    return _BY_ID[rule_id]


def select(only: list[str] | None) -> list[Rule]:
    """The rules of the given groups or ids (all if ``only`` is empty); ``ValueError`` for an unknown name."""
    if not only:
        return [r for r in RULES if r.id != "handshake-accept"]
    chosen = []
    for name in only:
        if name not in GROUPS and name not in _BY_ID:
            raise ValueError(f"unknown rule group {name!r}; groups: {', '.join(GROUPS)} (or a rule id)")
    for r in RULES:
        if r.id != "handshake-accept" and (r.group in only or r.id in only):
            chosen.append(r)
    return chosen
