"""The opening handshake: RFC 6455 §4, both roles, plus the §9.1 extension grammar.

Pure functions over :class:`~rawws.http11.Request` and
:class:`~rawws.http11.Response`. The server side checks a request
(:func:`check_request`), then builds the 101 answer (:func:`accept`) or a
refusal (:func:`reject`). The client side builds a request
(:func:`build_request`) and checks the answer (:func:`check_response`).
Every refusal carries the HTTP status the RFC asks for.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import re
from collections.abc import Iterable, Sequence
from urllib.parse import urlsplit

from .exceptions import InvalidHandshake, InvalidHeader
from .http11 import Headers, Request, Response, content_length

__all__ = [
    "GUID",
    "accept_key",
    "generate_key",
    "parse_token_list",
    "parse_extensions",
    "serialize_extensions",
    "ExtensionOffer",
    "check_request",
    "check_origin",
    "check_host",
    "screen_request",
    "is_upgrade_request",
    "normalize_origin",
    "normalize_origins",
    "normalize_allowed_hosts",
    "SAME_ORIGIN",
    "select_subprotocol",
    "accept",
    "reject",
    "build_request",
    "check_response",
]

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
"""The globally unique identifier that §1.3 appends to the key before hashing."""

_REASONS = {
    101: "Switching Protocols",
    200: "OK",
    204: "No Content",
    301: "Moved Permanently",
    302: "Found",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    426: "Upgrade Required",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    503: "Service Unavailable",
    505: "HTTP Version Not Supported",
}


def accept_key(key: str) -> str:
    """``Sec-WebSocket-Accept`` for a ``Sec-WebSocket-Key``: base64(SHA-1(key + GUID)), §4.2.2."""
    digest = hashlib.sha1((key + GUID).encode("ascii")).digest()
    return base64.b64encode(digest).decode("ascii")


def generate_key() -> str:
    """A fresh ``Sec-WebSocket-Key``: 16 random bytes, base64-encoded (§4.1)."""
    return base64.b64encode(os.urandom(16)).decode("ascii")


# --- header grammars (RFC 9110 §5.6, RFC 6455 §9.1) ---------------------------

_TOKEN_RE = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_QUOTED_RE = re.compile(r'"((?:[^"\\]|\\.)*)"')
_OWS_RE = re.compile(r"[ \t]*")

ExtensionOffer = tuple[str, list[tuple[str, "str | None"]]]
"""One extension in a ``Sec-WebSocket-Extensions`` header: a name and its parameters."""


class _Cursor:
    """A position in one header value, for the hand-written §9.1 grammar."""

    def __init__(self, value: str) -> None:
        self.value = value
        self.pos = 0

    def done(self) -> bool:
        return self.pos >= len(self.value)

    def at(self, char: str) -> bool:
        return self.pos < len(self.value) and self.value[self.pos] == char

    def skip_ows(self) -> None:
        match = _OWS_RE.match(self.value, self.pos)
        self.pos = match.end() if match else self.pos

    def error(self, what: str) -> InvalidHeader:
        return InvalidHeader(f"{what} at position {self.pos} in Sec-WebSocket-Extensions", status=400)

    def token(self, what: str) -> str:
        match = _TOKEN_RE.match(self.value, self.pos)
        if not match:
            raise self.error(f"expected {what}")
        self.pos = match.end()
        return match.group()

    def token_or_quoted(self, param: str) -> str:
        quoted = _QUOTED_RE.match(self.value, self.pos)
        if not quoted:
            return self.token(f"a value for {param}")
        self.pos = quoted.end()
        unquoted = re.sub(r"\\(.)", r"\1", quoted.group(1))
        if not _TOKEN_RE.fullmatch(unquoted):
            raise self.error(f"quoted value of {param} is not a token")
        return unquoted


def parse_token_list(values: Sequence[str], header: str = "header") -> list[str]:
    """Split ``1#token`` header values (such as ``Connection: keep-alive, Upgrade``)."""
    tokens: list[str] = []
    for value in values:
        for item in value.split(","):
            item = item.strip(" \t")
            if not item:
                continue  # RFC 9110 §5.6.1: empty list elements are ignored
            if not _TOKEN_RE.fullmatch(item):
                raise InvalidHeader(f"invalid token {item!r} in {header}", status=400)
            tokens.append(item)
    return tokens


def parse_extensions(values: Sequence[str]) -> list[ExtensionOffer]:
    """Parse ``Sec-WebSocket-Extensions`` values into ``[(name, [(param, value | None)])]``.

    The grammar (§9.1)::

        extension-list  = 1#extension
        extension       = extension-token *( ";" extension-param )
        extension-param = token [ "=" (token | quoted-string) ]

    A quoted value must itself be a token once unquoted. Several header
    fields are one list, in order.
    """
    result: list[ExtensionOffer] = []
    for value in values:
        cursor = _Cursor(value)
        while True:
            cursor.skip_ows()
            if cursor.at(","):  # empty list element
                cursor.pos += 1
                continue
            if cursor.done():
                break
            name = cursor.token("an extension name")
            params: list[tuple[str, str | None]] = []
            cursor.skip_ows()
            while cursor.at(";"):
                cursor.pos += 1
                cursor.skip_ows()
                param = cursor.token("a parameter name")
                cursor.skip_ows()
                param_value: str | None = None
                if cursor.at("="):
                    cursor.pos += 1
                    cursor.skip_ows()
                    param_value = cursor.token_or_quoted(param)
                    cursor.skip_ows()
                params.append((param, param_value))
            result.append((name, params))
            if not cursor.done():
                if not cursor.at(","):
                    raise cursor.error(f"unexpected {value[cursor.pos]!r}")
                cursor.pos += 1
    return result


def serialize_extensions(extensions: Sequence[ExtensionOffer]) -> str:
    """The inverse of :func:`parse_extensions` for one header field."""
    parts = []
    for name, params in extensions:
        items = [name] + [p if v is None else f"{p}={v}" for p, v in params]
        parts.append("; ".join(items))
    return ", ".join(parts)


# --- server side (§4.2) --------------------------------------------------------


def reject(status: int, text: str, headers: Sequence[tuple[str, str]] = ()) -> Response:
    """An HTTP response refusing the upgrade, with a short plain-text body."""
    body = (text.rstrip("\n") + "\n").encode("utf-8")
    response_headers = Headers(headers)
    response_headers["Content-Type"] = "text/plain; charset=utf-8"
    response_headers["Content-Length"] = str(len(body))
    response_headers["Connection"] = "close"
    return Response(status, _REASONS.get(status, ""), response_headers, body)


def _refuse(status: int, message: str, headers: Sequence[tuple[str, str]] = ()) -> InvalidHandshake:
    return InvalidHandshake(message, status=status, headers=headers)


SAME_ORIGIN = "same-origin"
"""In ``origins``: accept an ``Origin`` whose host and port are those of the request's ``Host`` (§10.2).

``origins="same-origin"`` on its own is short for ``["same-origin", None]``:
pages served from the server's own address, and clients that send no
``Origin`` (programs, not browsers: a browser always sends one, §4.1 item 8).
"""

_DEFAULT_PORTS = {"http": 80, "ws": 80, "https": 443, "wss": 443}
_SECURE_SCHEMES = ("https", "wss")
_ORIGIN_FORM = "an origin is scheme://host[:port] as browsers send it, e.g. 'https://app.example'"


def _host_and_port(authority: str) -> tuple[str, int | None]:
    """``("example.com", 8765)`` from ``example.com:8765`` (``[::1]:80`` → ``("::1", 80)``); port None if absent."""
    if not authority or any(c in authority for c in "@/?#\\ \t"):
        return ("", -1)  # userinfo, a path or spaces: not a plain host[:port], matches nothing
    parts = urlsplit("//" + authority)
    try:
        port = parts.port
    except ValueError:
        port = -1  # not a port: matches nothing
    return (parts.hostname or "", port)


def normalize_origin(origin: str) -> str:
    """``origin`` the way a browser writes it: ``scheme://host[:port]``, lower-case, without the default port.

    ``"HTTP://App.Example:80/"`` → ``"http://app.example"``; ``"null"`` stays
    ``"null"``. Raises ValueError for what is not an origin (a path, a query,
    user information, no host).
    """
    if not isinstance(origin, str):
        raise TypeError(f"an origin is a str, not {type(origin).__name__}")
    text = origin.strip()
    if text == "null":
        return text
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError:
        raise ValueError(f"{_shown(origin)} is not an origin: {_ORIGIN_FORM}") from None
    scheme = parts.scheme.lower()
    if (
        not scheme
        or not parts.hostname
        or "@" in parts.netloc
        or parts.path not in ("", "/")
        or parts.query
        or parts.fragment
        or any(c.isspace() for c in text)
    ):
        raise ValueError(f"{_shown(origin)} is not an origin: {_ORIGIN_FORM}")
    host = parts.hostname.lower()
    if ":" in host:
        host = f"[{host}]"
    if port is None or port == _DEFAULT_PORTS.get(scheme):
        return f"{scheme}://{host}"
    return f"{scheme}://{host}:{port}"


def normalize_origins(origins: object) -> tuple[str | None, ...] | None:
    """``origins`` (the server setting) checked and written as browsers send origins (:func:`normalize_origin`).

    None stays None (any origin). A str is one origin, except
    :data:`SAME_ORIGIN`, short for ``(SAME_ORIGIN, None)``. Otherwise an
    iterable of origins, :data:`SAME_ORIGIN` and None (None: no ``Origin``
    header). TypeError for anything else, ValueError for what is not an origin.
    """
    if origins is None:
        return None
    if isinstance(origins, str):
        return (SAME_ORIGIN, None) if origins == SAME_ORIGIN else (normalize_origin(origins),)
    if isinstance(origins, (bytes, bytearray)) or not isinstance(origins, Iterable):
        raise TypeError(
            f"origins must be None, 'same-origin', an origin such as 'https://app.example', or a list of them "
            f"(None in the list allows requests without Origin), not {type(origins).__name__}"
        )
    result: list[str | None] = []
    for item in origins:
        if item is not None and not isinstance(item, str):
            raise TypeError(f"origins lists origins (str), 'same-origin' and None, not {type(item).__name__}: {item!r}")
        value = item if item is None or item == SAME_ORIGIN else normalize_origin(item)
        if value not in result:
            result.append(value)
    return tuple(result)


def normalize_allowed_hosts(allowed_hosts: object) -> tuple[str, ...] | None:
    """``allowed_hosts`` (the server setting) checked: host names and addresses, lower-case, without brackets.

    None stays None (any ``Host``); a str is one name; otherwise an iterable of
    names. A name with a port (``"localhost:8765"``) is refused with
    ValueError: the check compares names only, the port is the server's own.
    """
    if allowed_hosts is None:
        return None
    if isinstance(allowed_hosts, str):
        allowed_hosts = [allowed_hosts]
    if isinstance(allowed_hosts, (bytes, bytearray)) or not isinstance(allowed_hosts, Iterable):
        raise TypeError(
            f"allowed_hosts must be None, a host name, or a list of host names, not {type(allowed_hosts).__name__}"
        )
    result: list[str] = []
    for item in allowed_hosts:
        if not isinstance(item, str):
            raise TypeError(f"allowed_hosts lists host names (str), not {type(item).__name__}: {item!r}")
        name = item.strip().lower()
        if name.startswith("[") and name.endswith("]"):
            name = name[1:-1]
        if name.startswith("[") or name.count(":") == 1:
            host = name.rpartition(":")[0] if not name.startswith("[") else name.partition("]")[0] + "]"
            raise ValueError(
                f"allowed_hosts lists host names without a port: write {host!r}, not {item!r} "
                "(the Host check compares names; the port is the server's own)"
            )
        if not name or any(c in name for c in "@/?#\\") or any(c.isspace() for c in name):
            raise ValueError(f"allowed_hosts: {item!r} is not a host name or address")
        if name not in result:
            result.append(name)
    return tuple(result)


def _same_origin(origin: str, host: str, secure: bool) -> bool:
    """Whether ``origin`` (``scheme://host[:port]``) is this server's: same scheme family, host and port as ``Host``."""
    parts = urlsplit(origin)
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS or not parts.hostname or "@" in parts.netloc or parts.path not in ("", "/"):
        return False  # "null" (a sandboxed or file: page), or not an origin at all
    if (scheme in _SECURE_SCHEMES) != secure:
        return False  # an https page is not this http server's own, nor an http page a TLS server's (§10.2)
    try:
        origin_port = parts.port or _DEFAULT_PORTS[scheme]
    except ValueError:
        return False
    host_name, host_port = _host_and_port(host)
    return parts.hostname == host_name and origin_port == (host_port or _DEFAULT_PORTS[scheme])


def _shown(value: str) -> str:
    return repr(value[:100])


def _served_over_tls(request: Request, secure: bool) -> bool:
    """Whether the page's scheme should be https: the server speaks TLS, or a TLS-terminating proxy says so.

    ``X-Forwarded-Proto: https`` is trusted for this comparison only: a browser
    cannot set it on a WebSocket request, and a program can send any Origin anyway.
    """
    if secure:
        return True
    forwarded = request.headers.get("X-Forwarded-Proto") or ""
    return forwarded.split(",")[0].strip().lower() == "https"


def check_origin(request: Request, origins: Sequence[str | None] | str, *, secure: bool = False) -> None:
    """Refuse with 403 an ``Origin`` that ``origins`` does not allow (§10.2; §4.2.1 item 7, §4.2.2).

    ``origins`` lists the acceptable origins (compared as browsers write them,
    :func:`normalize_origin`: ``"https://App.example/"`` is
    ``"https://app.example"``); None in the list allows a request without the
    header, and :data:`SAME_ORIGIN` allows the origin whose scheme, host and
    port are the server's own: host and port from the ``Host`` header, scheme
    http (or ws) for a plain server, https (or wss) when ``secure`` (the server
    speaks TLS) or behind a proxy that sends ``X-Forwarded-Proto: https``.
    The string ``"same-origin"`` on its own means ``["same-origin", None]``.
    This is the defence against cross-site WebSocket hijacking: a browser
    opens a WebSocket from any page to any address and tells the server which
    page asked in ``Origin``.
    """
    allowed = normalize_origins(origins) or ()
    received = request.headers.get_all("Origin")
    if len(received) > 1:
        raise _refuse(400, "more than one Origin header")
    origin = received[0] if received else None
    if origin is None:
        if None in allowed:
            return
    else:
        try:
            canonical = normalize_origin(origin)
        except ValueError:
            canonical = origin
        if canonical != SAME_ORIGIN and canonical in allowed:
            return
        if SAME_ORIGIN in allowed and _same_origin(
            origin, request.headers.get("Host") or "", _served_over_tls(request, secure)
        ):
            return
    why = f"origin {_shown(origin) if origin is not None else '(none)'} is not allowed"
    if SAME_ORIGIN in allowed:
        scheme = "https" if _served_over_tls(request, secure) else "http"
        why += (
            f": this server accepts pages from its own origin "
            f"({scheme}:// and host {_shown(request.headers.get('Host') or '')})"
        )
        listed = [o for o in allowed if o is not None and o != SAME_ORIGIN]
        why += f" and {', '.join(listed)}" if listed else " only"
    raise _refuse(403, why)


def check_host(request: Request, allowed_hosts: Sequence[str] | str) -> None:
    """Refuse with 403 a request whose ``Host`` does not name this server (the DNS rebinding defence).

    ``allowed_hosts`` lists host names and addresses (``"localhost"``,
    ``"127.0.0.1"``, ``"::1"``, ``"chat.example"``), compared without the
    port and without regard to case (:func:`normalize_allowed_hosts`; a str
    is one name). A page on a rebound name (a domain the attacker pointed at
    127.0.0.1) is same-origin with itself, so only the ``Host`` it sends gives
    it away.
    """
    names = normalize_allowed_hosts(allowed_hosts) or ()
    hosts = request.headers.get_all("Host")
    host = hosts[0] if len(hosts) == 1 else ""
    name, _ = _host_and_port(host)
    if name and name in names:
        return
    raise _refuse(
        403,
        f"Host {_shown(host)} does not name this server; it answers to {', '.join(names) or 'no name'}",
    )


def is_upgrade_request(request: Request) -> bool:
    """Whether ``request`` asks for the WebSocket upgrade (``Upgrade`` lists ``websocket``)."""
    return any(
        token.strip(" \t").lower() == "websocket"
        for value in request.headers.get_all("Upgrade")
        for token in value.split(",")
    )


def screen_request(
    request: Request,
    *,
    origins: Sequence[str | None] | str | None = None,
    allowed_hosts: Sequence[str] | str | None = None,
    secure: bool = False,
) -> None:
    """The checks that come before anything else, ``process_request`` included: 403 if they fail.

    ``Host`` (:func:`check_host`) for every request, so that a page on a
    rebound DNS name gets nothing, not even plain HTTP; ``Origin``
    (:func:`check_origin`) for upgrade requests, so that the application's
    code never runs for a WebSocket that will be refused for its origin.
    """
    if allowed_hosts is not None:
        check_host(request, allowed_hosts)
    if origins is not None and is_upgrade_request(request):
        check_origin(request, origins, secure=secure)


def check_request(
    request: Request,
    *,
    origins: Sequence[str | None] | str | None = None,
    allowed_hosts: Sequence[str] | str | None = None,
    secure: bool = False,
) -> str:
    """Check a client's opening handshake (§4.2.1); return its ``Sec-WebSocket-Key``.

    ``allowed_hosts``, if given, lists the names the ``Host`` header may carry
    (:func:`check_host`); ``origins``, if given, the acceptable ``Origin``
    values (:func:`check_origin`; ``secure``: the server speaks TLS). Either
    refusal is a 403 (§10.2).
    Raises :class:`InvalidHandshake` whose ``status`` and ``headers`` make the
    refusal: 405, 426, 400 or 403.

    The handshake is a GET without a body (§4.1; RFC 9110 §9.3.1 gives a GET
    body no meaning): a request with any ``Transfer-Encoding`` header or a
    ``Content-Length`` other than 0 is refused with 400, since the bytes after
    its head would otherwise be read as WebSocket frames.
    """
    if request.method != "GET":
        raise _refuse(405, f"method {request.method} not allowed; the handshake is a GET", [("Allow", "GET")])
    headers = request.headers
    transfer_encodings = headers.get_all("Transfer-Encoding")
    if transfer_encodings:
        raise _refuse(
            400,
            f"the opening handshake is a GET without a body (RFC 6455 §4.1), "
            f"but this request has Transfer-Encoding: {', '.join(transfer_encodings)[:64]}",
        )
    length = content_length(headers)  # malformed: 400
    if length:
        raise _refuse(
            400,
            f"the opening handshake is a GET without a body (RFC 6455 §4.1), "
            f"but this request has Content-Length: {length}",
        )
    upgrade_required = [("Upgrade", "websocket"), ("Connection", "Upgrade"), ("Sec-WebSocket-Version", "13")]
    upgrades = [u.lower() for u in parse_token_list(headers.get_all("Upgrade"), "Upgrade")]
    if "websocket" not in upgrades:
        raise _refuse(426, "this endpoint speaks WebSocket: send Upgrade: websocket", upgrade_required)
    connection = [c.lower() for c in parse_token_list(headers.get_all("Connection"), "Connection")]
    if "upgrade" not in connection:
        raise _refuse(400, "the Connection header must contain the Upgrade token")
    hosts = headers.get_all("Host")
    if len(hosts) != 1 or not hosts[0]:
        raise _refuse(400, "exactly one Host header is required")
    versions = headers.get_all("Sec-WebSocket-Version")
    if versions != ["13"]:
        raise _refuse(426, "unsupported Sec-WebSocket-Version; this server speaks version 13", upgrade_required)
    keys = headers.get_all("Sec-WebSocket-Key")
    if len(keys) != 1:
        raise _refuse(400, "exactly one Sec-WebSocket-Key header is required")
    key = keys[0]
    try:
        raw = base64.b64decode(key.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError):
        raw = b""
    if len(raw) != 16:
        raise _refuse(400, "Sec-WebSocket-Key must be 16 bytes, base64-encoded")
    if allowed_hosts is not None:
        check_host(request, allowed_hosts)
    if origins is not None:
        check_origin(request, origins, secure=secure)
    return key


def select_subprotocol(offered: Sequence[str], supported: Sequence[str]) -> str | None:
    """The first subprotocol in the client's list that the server supports.

    §4.1 says the client lists its subprotocols in order of preference, so
    rawws honours the client's order.
    """
    supported_set = set(supported)
    for candidate in offered:
        if candidate in supported_set:
            return candidate
    return None


def accept(
    key: str,
    *,
    subprotocol: str | None = None,
    extensions: str | None = None,
    extra_headers: Sequence[tuple[str, str]] = (),
) -> Response:
    """The 101 response completing the handshake (§4.2.2)."""
    headers = Headers([("Upgrade", "websocket"), ("Connection", "Upgrade"), ("Sec-WebSocket-Accept", accept_key(key))])
    if subprotocol is not None:
        headers["Sec-WebSocket-Protocol"] = subprotocol
    if extensions:
        headers["Sec-WebSocket-Extensions"] = extensions
    for name, value in extra_headers:
        headers[name] = value
    return Response(101, "Switching Protocols", headers)


# --- client side (§4.1) --------------------------------------------------------


def build_request(
    host: str,
    path: str,
    *,
    key: str,
    origin: str | None = None,
    subprotocols: Sequence[str] = (),
    extensions: str | None = None,
    additional_headers: Sequence[tuple[str, str]] = (),
) -> Request:
    """The client's opening handshake request (§4.1)."""
    headers = Headers(
        [
            ("Host", host),
            ("Upgrade", "websocket"),
            ("Connection", "Upgrade"),
            ("Sec-WebSocket-Key", key),
            ("Sec-WebSocket-Version", "13"),
        ]
    )
    if origin is not None:
        headers["Origin"] = origin
    if subprotocols:
        headers["Sec-WebSocket-Protocol"] = ", ".join(subprotocols)
    if extensions:
        headers["Sec-WebSocket-Extensions"] = extensions
    for name, value in additional_headers:
        headers[name] = value
    return Request("GET", path, headers)


def check_response(
    response: Response,
    *,
    key: str,
    subprotocols: Sequence[str] = (),
    extensions_offered: Sequence[str] = (),
) -> tuple[str | None, list[ExtensionOffer]]:
    """Validate the server's answer (§4.1, steps 1-6 of "the client MUST validate").

    Returns the subprotocol and the extensions the server accepted. Raises
    :class:`InvalidHandshake` (carrying the server's status, headers and body)
    if the server refused or answered wrongly, including choosing a
    subprotocol or an extension the client did not offer.
    """

    def fail(message: str, kind: type[InvalidHandshake] = InvalidHandshake) -> InvalidHandshake:
        return kind(message, status=response.status, headers=response.headers, body=response.body)

    if response.status != 101:
        raise fail(_not_upgraded(response))
    if response.version == "HTTP/1.0":
        raise fail("the server answered 101 over HTTP/1.0; the upgrade needs HTTP/1.1 (RFC 6455 §4.1)")
    headers = response.headers
    if "websocket" not in [u.lower() for u in parse_token_list(headers.get_all("Upgrade"), "Upgrade")]:
        raise fail("the response lacks Upgrade: websocket", InvalidHeader)
    if "upgrade" not in [c.lower() for c in parse_token_list(headers.get_all("Connection"), "Connection")]:
        raise fail("the response's Connection header lacks the Upgrade token", InvalidHeader)
    accepts = headers.get_all("Sec-WebSocket-Accept")
    if not accepts:
        raise fail("the response lacks the Sec-WebSocket-Accept header (§4.1)", InvalidHeader)
    if len(accepts) > 1:
        raise fail("the response has more than one Sec-WebSocket-Accept header", InvalidHeader)
    if accepts != [accept_key(key)]:
        raise fail("Sec-WebSocket-Accept does not match the key sent", InvalidHeader)
    chosen = parse_token_list(headers.get_all("Sec-WebSocket-Protocol"), "Sec-WebSocket-Protocol")
    if len(chosen) > 1:
        raise fail("the server chose more than one subprotocol")
    subprotocol = chosen[0] if chosen else None
    if subprotocol is not None and subprotocol not in subprotocols:
        raise fail(f"the server chose subprotocol {subprotocol!r}, which was not offered")
    accepted = parse_extensions(headers.get_all("Sec-WebSocket-Extensions"))
    for name, _ in accepted:
        if name not in extensions_offered:
            raise fail(f"the server accepted extension {name!r}, which was not offered")
    return subprotocol, accepted


def _not_upgraded(response: Response) -> str:
    """What to say when the server answered with something else than 101 Switching Protocols."""
    status = f"{response.version} {response.status} {response.reason}".rstrip()
    if 200 <= response.status < 300:
        return f"the server did not upgrade to WebSocket: it answered {status} (not a WebSocket endpoint?)"
    return f"the server did not upgrade to WebSocket: it answered {status}"
