"""Just enough HTTP/1.1 (RFC 9112) for the opening handshake: heads, headers, limits.

:class:`HeadParser` reads a request or response head from bytes that may
arrive split anywhere, with hard limits on line length, header count and total
size, so that a hostile peer cannot make it buffer without bound. Anything
after the blank line that ends the head is kept in ``remainder``: it is the
start of the WebSocket stream.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Literal

from .exceptions import InvalidHandshake, InvalidHeader

__all__ = [
    "Headers",
    "Request",
    "Response",
    "HeadParser",
    "content_length",
    "MAX_LINE",
    "MAX_HEADERS",
    "MAX_HEAD",
]

MAX_LINE = 8192
"""Longest request line, status line or header line, in bytes."""
MAX_HEADERS = 128
"""Most header fields in one head."""
MAX_HEAD = 65536
"""Largest head, start line and headers included."""

# RFC 9110 §5.6.2: field names are tokens.
_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
# Field values: visible characters, spaces and tabs, obs-text (RFC 9110 §5.5).
_VALUE = re.compile(rb"[\t\x20-\x7e\x80-\xff]*")
# The same two rules for what rawws itself writes (str, before encoding to Latin-1).
_TOKEN_STR = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_VALUE_STR = re.compile(r"[\t\x20-\x7e\x80-\xff]*")
# RFC 9112 §2.3: HTTP-version = "HTTP/" DIGIT "." DIGIT.
_VERSION = re.compile(rb"HTTP/([0-9])\.([0-9])")
# Content-Length = 1*DIGIT (RFC 9110 §8.6), ASCII digits only.
_DIGITS = re.compile(r"[0-9]+")
# The absolute-form of a request target (RFC 9112 §3.2.2) for the two schemes RFC 6455 §4.1 allows.
_ABSOLUTE = re.compile(rb"(https?)://([^/?#]*)(.*)", re.IGNORECASE)


class Headers:
    """An ordered, case-insensitive multimap of header fields."""

    __slots__ = ("_items",)

    def __init__(self, items: Iterable[tuple[str, str]] | None = None) -> None:
        self._items: list[tuple[str, str]] = list(items or ())

    def __getitem__(self, name: str) -> str:
        """The single value of ``name``; KeyError if absent, InvalidHeader if repeated."""
        values = self.get_all(name)
        if not values:
            raise KeyError(name)
        if len(values) > 1:
            raise InvalidHeader(f"header {name} appears more than once", status=400)
        return values[0]

    def get(self, name: str, default: str | None = None) -> str | None:
        """The first value of ``name``, or ``default``."""
        lower = name.lower()
        for key, value in self._items:
            if key.lower() == lower:
                return value
        return default

    def get_all(self, name: str) -> list[str]:
        """Every value of ``name``, in order."""
        lower = name.lower()
        return [value for key, value in self._items if key.lower() == lower]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.get(name) is not None

    def __setitem__(self, name: str, value: str) -> None:
        """Add a field (headers may repeat; use :meth:`replace` to overwrite)."""
        self._items.append((name, value))

    def replace(self, name: str, value: str) -> None:
        """Remove every field called ``name`` and add one with ``value``."""
        self.remove(name)
        self._items.append((name, value))

    def remove(self, name: str) -> None:
        lower = name.lower()
        self._items = [(k, v) for k, v in self._items if k.lower() != lower]

    def items(self) -> list[tuple[str, str]]:
        return list(self._items)

    def __iter__(self) -> Iterator[str]:
        return (key for key, _ in self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Headers) and self._items == other._items

    def __repr__(self) -> str:
        return f"Headers({self._items!r})"

    def serialize(self) -> bytes:
        """The fields as they go on the wire; ValueError names a field that cannot be sent as it is.

        A name must be a token and a value visible characters, spaces, tabs
        and obs-text (RFC 9110 §5.1, §5.5): a CR or LF in a value would end the
        field and start another one the caller never meant (header injection,
        response splitting), so nothing is written rather than that.
        """
        out = []
        for name, value in self._items:
            if not isinstance(name, str) or not _TOKEN_STR.fullmatch(name):
                raise ValueError(f"invalid header name {name!r}: a header name is a token (RFC 9110 §5.1)")
            if not isinstance(value, str):
                raise TypeError(f"header {name}: the value must be a str, not {type(value).__name__}")
            if not _VALUE_STR.fullmatch(value):
                raise ValueError(
                    f"header {name}: the value {value[:64]!r} holds a line break, a control character or a "
                    "character outside Latin-1; it cannot be sent (RFC 9110 §5.5)"
                )
            out.append(f"{name}: {value}\r\n".encode("latin-1"))
        return b"".join(out)


@dataclass
class Request:
    """An HTTP request head.

    ``path`` is the resource name: path and query, always starting with "/".
    ``target`` is the request target as the client sent it; it differs from
    ``path`` only for the absolute-form (``GET http://host/chat HTTP/1.1``,
    which RFC 6455 §4.1 allows), and defaults to ``path``.
    """

    method: str
    path: str
    headers: Headers = field(default_factory=Headers)
    version: str = "HTTP/1.1"
    target: str = ""

    def __post_init__(self) -> None:
        if not self.target:
            self.target = self.path

    def serialize(self) -> bytes:
        """The request head; ValueError if the method, the path or a header cannot be sent as it is."""
        if not _TOKEN_STR.fullmatch(self.method):
            raise ValueError(f"invalid method {self.method!r}: a method is a token (RFC 9110 §9.1)")
        if not re.fullmatch(r"[\x21-\x7e]+", self.path):
            raise ValueError(f"invalid request target {self.path[:64]!r}: visible ASCII characters only")
        return f"{self.method} {self.path} {self.version}\r\n".encode("latin-1") + self.headers.serialize() + b"\r\n"


@dataclass
class Response:
    """An HTTP response: status, reason phrase, headers and an optional body."""

    status: int
    reason: str = ""
    headers: Headers = field(default_factory=Headers)
    body: bytes = b""
    version: str = "HTTP/1.1"

    def serialize(self) -> bytes:
        """The response; ValueError if the status, the reason or a header cannot be sent as it is."""
        if isinstance(self.status, bool) or not isinstance(self.status, int) or not 100 <= self.status <= 999:
            raise ValueError(f"invalid status {self.status!r}: a status code is three digits (RFC 9110 §15)")
        if not _VALUE_STR.fullmatch(self.reason):
            raise ValueError(f"invalid reason phrase {self.reason[:64]!r}: no line breaks or control characters")
        head = f"{self.version} {self.status} {self.reason}\r\n".encode("latin-1")
        return head + self.headers.serialize() + b"\r\n" + self.body


def content_length(headers: Headers) -> int | None:
    """The body length that ``Content-Length`` announces, or None without the header.

    RFC 9110 §8.6: the value is ``1*DIGIT``; a list of identical values
    (``5, 5``, or the field repeated) counts as one. Anything else (empty,
    signs, spaces inside, letters, conflicting values, more than 18 digits) is
    a framing error that a server answers with 400 (RFC 9112 §6.3): raises
    :class:`InvalidHandshake` with status 400.
    """
    values = headers.get_all("Content-Length")
    if not values:
        return None
    lengths: set[str] = set()
    for value in values:
        for item in value.split(","):
            item = item.strip(" \t")
            if not _DIGITS.fullmatch(item):
                raise InvalidHeader(
                    f"malformed Content-Length {value[:32]!r}: expected a number of bytes (RFC 9110 §8.6)", status=400
                )
            lengths.add(item.lstrip("0") or "0")
    if len(lengths) > 1:
        raise InvalidHeader("conflicting Content-Length values", status=400)
    (length,) = lengths
    if len(length) > 18:
        raise InvalidHeader(f"Content-Length {length[:20]}... ({len(length)} digits) is too large", status=400)
    return int(length)


HeadKind = Literal["request", "response"]
"""Which head a :class:`HeadParser` reads."""


class HeadParser:
    """Parse one HTTP head, request (``kind="request"``) or response, incrementally.

    :meth:`feed` returns None until the head is complete, then the parsed
    :class:`Request` or :class:`Response` (without body); bytes that followed
    the head are in :attr:`remainder`. Raises :class:`InvalidHandshake` with
    the status a server should answer: 400 for malformed input, 431 when a
    limit is passed, 505 for an HTTP version the handshake cannot use.

    Versions: HTTP/1.1 and later 1.x minor versions are accepted (RFC 9110
    §2.5: a higher minor version is read as the highest one implemented).
    HTTP/1.0 and 0.x requests get 505, because RFC 6455 §4.1 requires HTTP/1.1
    or higher (an HTTP/1.0 *response* is parsed, so the client can report it);
    so do HTTP/2 and any other major version, a different wire
    protocol that this parser does not speak. A request's target must be
    origin-form (``/path?query``) or absolute-form with the ``http`` or
    ``https`` scheme (RFC 6455 §4.1, RFC 9112 §3.2.2), without a fragment;
    ``*`` (asterisk-form), ``host:port`` (authority-form) and anything else
    get 400. A request's ``Content-Length``, if any, must be well-formed
    (400 otherwise, RFC 9112 §6.3).
    """

    def __init__(
        self,
        kind: HeadKind = "request",
        *,
        max_line: int = MAX_LINE,
        max_headers: int = MAX_HEADERS,
        max_head: int = MAX_HEAD,
    ) -> None:
        if kind not in ("request", "response"):
            raise ValueError("kind is 'request' or 'response'")
        self.kind = kind
        self.max_line = max_line
        self.max_headers = max_headers
        self.max_head = max_head
        self.remainder = b""
        self._buffer = bytearray()
        self._done = False

    def feed(self, data: bytes) -> Request | Response | None:
        if self._done:
            raise RuntimeError("the head is already complete")
        start = max(0, len(self._buffer) - 3)
        self._buffer += data
        end = self._buffer.find(b"\r\n\r\n", start)
        if end < 0:
            self._check_partial()
            return None
        if end + 4 > self.max_head:
            raise InvalidHandshake(f"HTTP head longer than {self.max_head} bytes", status=431)
        head = bytes(self._buffer[:end])
        self.remainder = bytes(self._buffer[end + 4 :])
        self._buffer = bytearray()
        self._done = True
        return self._parse(head)

    def _check_partial(self) -> None:
        buffer = self._buffer
        if self.kind == "request":
            self._check_method_prefix()
        if len(buffer) > self.max_head:
            raise InvalidHandshake(f"HTTP head longer than {self.max_head} bytes", status=431)
        last_line_start = buffer.rfind(b"\n") + 1
        if len(buffer) - last_line_start > self.max_line:
            raise InvalidHandshake(f"HTTP line longer than {self.max_line} bytes", status=431)
        if buffer.count(b"\n") > self.max_headers + 1:
            raise InvalidHandshake(f"more than {self.max_headers} header fields", status=431)

    def _check_method_prefix(self) -> None:
        """400 at once when the first bytes cannot begin a request line (a method is a token, RFC 9112 §3).

        Without this, bytes that are not HTTP (a TLS ClientHello sent to a plain
        ``ws://`` port, whose first byte is 0x16) would be buffered as a head
        that never ends, and the client would wait for ``open_timeout``.
        """
        first_line = bytes(self._buffer[:64]).split(b" ", 1)[0]
        if _TOKEN.fullmatch(first_line) or not first_line:
            return
        if first_line[:1] == b"\x16":
            raise InvalidHandshake(
                "this is a TLS handshake, but this server speaks plain HTTP: use ws:// (or http://), not wss://",
                status=400,
            )
        raise InvalidHandshake(f"not an HTTP request: it starts with {first_line[:16]!r}", status=400)

    def _parse(self, head: bytes) -> Request | Response:
        lines = head.split(b"\r\n")
        if len(lines) - 1 > self.max_headers:
            raise InvalidHandshake(f"more than {self.max_headers} header fields", status=431)
        for line in lines:
            if len(line) > self.max_line:
                raise InvalidHandshake(f"HTTP line longer than {self.max_line} bytes", status=431)
        headers = Headers()
        for line in lines[1:]:
            name, colon, value = line.partition(b":")
            if not colon or not _TOKEN.fullmatch(name):
                raise InvalidHandshake(f"malformed header line {line[:64]!r}", status=400)
            value = value.strip(b" \t")
            if not _VALUE.fullmatch(value):
                raise InvalidHandshake(f"invalid characters in header {name.decode()}", status=400)
            headers[name.decode("ascii")] = value.decode("latin-1")
        if self.kind == "request":
            request = self._parse_request_line(lines[0], headers)
            content_length(headers)  # a malformed one is a framing error, whatever the request (RFC 9112 §6.3)
            return request
        return self._parse_status_line(lines[0], headers)

    @staticmethod
    def _check_version(version: bytes) -> str:
        match = _VERSION.fullmatch(version)
        if not match:
            raise InvalidHandshake(f"malformed HTTP version {version[:16]!r}", status=400)
        major, minor = int(match.group(1)), int(match.group(2))
        if major != 1:
            raise InvalidHandshake(
                f"{version.decode()} is not supported: rawws speaks HTTP/1.1, "
                "and the WebSocket opening handshake is an HTTP/1.1 upgrade (RFC 6455 §4.1)",
                status=505,
            )
        if minor < 1:
            raise InvalidHandshake(
                f"{version.decode()} is not supported: the WebSocket opening handshake needs HTTP/1.1 (RFC 6455 §4.1)",
                status=505,
            )
        return version.decode("ascii")

    def _parse_request_line(self, line: bytes, headers: Headers) -> Request:
        parts = line.split(b" ")
        if len(parts) != 3 or not _TOKEN.fullmatch(parts[0]) or not parts[1]:
            raise InvalidHandshake(f"malformed request line {line[:64]!r}", status=400)
        method, target, version = parts
        if not re.fullmatch(rb"[\x21-\x7e]+", target):
            raise InvalidHandshake("malformed request target", status=400)
        checked_version = self._check_version(version)  # 505 before looking at the target: it may be HTTP/2's "*"
        path = _resource_name(target.decode("ascii"), headers)
        return Request(method.decode("ascii"), path, headers, checked_version, target.decode("ascii"))

    def _parse_status_line(self, line: bytes, headers: Headers) -> Response:
        parts = line.split(b" ", 2)
        if len(parts) < 2 or not re.fullmatch(rb"[1-5]\d\d", parts[1]):
            raise InvalidHandshake(f"malformed status line {line[:64]!r}", status=0)
        # An HTTP/1.0 answer is read, not refused, so that the client can say what the server
        # answered (a plain HTTP server's 200); check_response refuses a 101 over HTTP/1.0.
        version = "HTTP/1.0" if parts[0] == b"HTTP/1.0" else self._check_version(parts[0])
        reason = parts[2].decode("latin-1") if len(parts) == 3 else ""
        return Response(int(parts[1]), reason, headers, b"", version)


def _resource_name(target: str, headers: Headers) -> str:
    """The resource name (path and query) of a request target; InvalidHandshake(400) if it has none."""
    if "#" in target:
        raise InvalidHandshake(
            "the request target has a fragment (#); WebSocket URIs have none (RFC 6455 §3)", status=400
        )
    if target.startswith("/"):  # origin-form
        return target
    match = _ABSOLUTE.fullmatch(target.encode("ascii"))
    if match is None:
        shown = target if len(target) <= 64 else target[:64] + "..."
        raise InvalidHandshake(
            f"request target {shown!r} is not a path: a WebSocket handshake asks for a resource name "
            "such as /chat, or an absolute http(s) URI (RFC 6455 §4.1)",
            status=400,
        )
    scheme, authority, rest = (part.decode("ascii") for part in match.groups())
    if not authority:
        raise InvalidHandshake("the absolute-form request target has no host (RFC 9110 §4.2.1)", status=400)
    if "@" in authority:
        raise InvalidHandshake(
            "the absolute-form request target carries user information, which http URIs must not (RFC 9110 §4.2.4)",
            status=400,
        )
    hosts = headers.get_all("Host")
    default_port = "443" if scheme.lower() == "https" else "80"
    if len(hosts) == 1 and _host_and_port(hosts[0], default_port) != _host_and_port(authority, default_port):
        raise InvalidHandshake(
            f"the Host header {hosts[0][:64]!r} does not match the request target's host {authority[:64]!r}",
            status=400,
        )
    if not rest.startswith("/"):
        rest = "/" + rest  # "http://host" and "http://host?q" name the root
    return rest


def _host_and_port(authority: str, default_port: str) -> tuple[str, str]:
    """``("example.com", "80")`` from ``example.com``, ``EXAMPLE.com:80``, ``[::1]:80`` and the like."""
    authority = authority.lower()
    if authority.startswith("["):
        host, bracket, port = authority.partition("]")
        host += bracket
        port = port[1:] if port.startswith(":") else port
    else:
        host, _, port = authority.partition(":")
    return host, port or default_port
