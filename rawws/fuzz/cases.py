"""One fuzz case: the bytes a client writes after the opening handshake (or a raw handshake request).

A case is plain data, saved as JSON for ``--replay`` and shown in reports.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

__all__ = ["Case", "save", "load"]


@dataclass(frozen=True)
class Case:
    """``chunks`` are written one ``send`` each, in order, after a valid handshake.

    For the handshake rules, ``request`` is the whole HTTP request written
    instead of a valid one, and ``chunks`` is empty.
    """

    rule: str
    chunks: tuple[bytes, ...] = ()
    request: bytes | None = None

    @property
    def data(self) -> bytes:
        """The frames as one byte stream."""
        return b"".join(self.chunks)

    @property
    def size(self) -> tuple[int, int]:
        """How big the case is, to prefer the smaller of two: bytes, then writes."""
        return (len(self.data) + len(self.request or b""), len(self.chunks))

    def to_json(self) -> dict[str, object]:
        return {
            "rule": self.rule,
            "chunks": [chunk.hex(" ") for chunk in self.chunks],
            "request": None if self.request is None else self.request.decode("latin-1"),
        }

    @classmethod
    def from_json(cls, data: object) -> Case:
        if not isinstance(data, dict) or not isinstance(data.get("rule"), str):
            raise ValueError("a replay file is a JSON object with a rule and its chunks (as written by fuzz)")
        chunks = data.get("chunks") or []
        request = data.get("request")
        if not isinstance(chunks, list) or not all(isinstance(c, str) for c in chunks):
            raise ValueError("chunks is a list of hex strings")
        if request is not None and not isinstance(request, str):
            raise ValueError("request is a string or null")
        return cls(
            data["rule"],
            tuple(bytes.fromhex(c) for c in chunks),
            None if request is None else request.encode("latin-1"),
        )


def save(case: Case, path: str, url: str) -> None:
    """Write ``case`` to ``path`` as JSON, with the URL it was found against."""
    with open(path, "w", encoding="utf-8") as out:
        json.dump({"url": url, **case.to_json()}, out, indent=2)
        out.write("\n")


def load(path: str) -> Case:
    """Read a case written by :func:`save`; ``ValueError`` or ``OSError`` if it cannot be read."""
    with open(path, encoding="utf-8") as source:
        try:
            data = json.load(source)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path} is not JSON: {exc}") from None
    return Case.from_json(data)
