"""ws:// and wss:// URIs (RFC 6455 §3): parsing, defaults, host headers, refusals."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from rawws.exceptions import InvalidURI
from rawws.sync.server import Server
from rawws.uri import parse_uri

StartServer = Callable[..., Server]


def url(server: Server, path: str = "/") -> str:
    return f"ws://127.0.0.1:{server.port}{path}"


def test_uri_parsing() -> None:
    parsed = parse_uri("wss://example.com/a/b?c=d")
    assert (parsed.secure, parsed.host, parsed.port, parsed.resource_name) == (True, "example.com", 443, "/a/b?c=d")
    assert parse_uri("ws://[::1]:8080").host_header == "[::1]:8080"
    assert parse_uri("ws://h").host_header == "h"


@pytest.mark.parametrize(
    ("uri", "host_header", "resource"),
    [
        ("ws://example.com", "example.com", "/"),
        ("ws://example.com:80/chat", "example.com", "/chat"),
        ("wss://example.com:443/", "example.com", "/"),
        ("wss://example.com:8443/a?b=c", "example.com:8443", "/a?b=c"),
        ("ws://[::1]:9000/x", "[::1]:9000", "/x"),
        ("ws://EXAMPLE.com/Path", "example.com", "/Path"),
        ("ws://example.com/a b", "example.com", "/a%20b"),
    ],
)
def test_host_header_and_resource_name(uri: str, host_header: str, resource: str) -> None:
    parsed = parse_uri(uri)
    assert parsed.host_header == host_header
    assert parsed.resource_name == resource


@pytest.mark.parametrize(
    ("uri", "says"),
    [
        ("http://example.com/", "scheme"),
        ("ws://example.com/#frag", "fragment"),
        ("ws:///path", "no host"),
        ("ws://user:pw@example.com/", "user information"),
        ("ws://[nothost]/", "IPv6"),
        ("ws://example.com:99999/", "not a valid URI"),
    ],
)
def test_refusals_say_what_is_wrong(uri: str, says: str) -> None:
    with pytest.raises(InvalidURI, match=says):
        parse_uri(uri)
