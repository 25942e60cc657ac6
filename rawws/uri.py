"""WebSocket URIs (RFC 6455 §3): ``ws://host[:port]/path?query`` and ``wss://``."""

from __future__ import annotations

import ipaddress
import urllib.parse
from dataclasses import dataclass

from .exceptions import InvalidURI

__all__ = ["WebSocketURI", "parse_uri"]


@dataclass(frozen=True)
class WebSocketURI:
    """A parsed WebSocket URI."""

    secure: bool
    host: str  # without brackets, even for IPv6
    port: int
    resource_name: str  # path and query, at least "/"

    @property
    def host_header(self) -> str:
        """The ``Host`` header value (§4.1): the port is omitted when it is the default."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        default = 443 if self.secure else 80
        return host if self.port == default else f"{host}:{self.port}"


def parse_uri(uri: str) -> WebSocketURI:
    """Parse ``uri``; raise :class:`InvalidURI` saying what is wrong with it.

    §3: the scheme is ``ws`` or ``wss``, a host is required, the default ports
    are 80 and 443, and a fragment identifier is not allowed.
    """
    if not isinstance(uri, str):
        raise InvalidURI(f"a URI is a str, not {type(uri).__name__}")
    try:
        parts = urllib.parse.urlsplit(uri)
        port = parts.port
    except ValueError as exc:
        raise InvalidURI(f"{uri!r} is not a valid URI: {exc}") from None
    if parts.scheme not in ("ws", "wss"):
        raise InvalidURI(f"{uri!r} is not a WebSocket URI: the scheme must be ws:// or wss://")
    if "#" in uri:
        raise InvalidURI(f"{uri!r}: a WebSocket URI must not have a fragment (§3)")
    host = parts.hostname
    if not host:
        raise InvalidURI(f"{uri!r} has no host")
    if parts.username is not None or parts.password is not None:
        raise InvalidURI(f"{uri!r}: user information in the URI is not supported")
    if "[" in parts.netloc:
        try:
            ipaddress.IPv6Address(host.split("%")[0])
        except ValueError:
            raise InvalidURI(f"{uri!r}: {host!r} is not an IPv6 address") from None
    secure = parts.scheme == "wss"
    resource = parts.path or "/"
    if parts.query:
        resource += "?" + parts.query
    if any(ord(c) < 0x21 or ord(c) > 0x7E for c in resource):
        resource = urllib.parse.quote(resource, safe="/?&=%:@!$'()*+,;~")
    return WebSocketURI(secure, host, port or (443 if secure else 80), resource)
