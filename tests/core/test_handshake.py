"""RFC 6455 §4: the opening handshake, and the HTTP/1.1 head parser under it."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rawws.exceptions import InvalidHandshake, InvalidHeader
from rawws.handshake import (
    accept,
    accept_key,
    build_request,
    check_request,
    check_response,
    generate_key,
    parse_extensions,
    parse_token_list,
    reject,
    select_subprotocol,
    serialize_extensions,
)
from rawws.http11 import Headers, HeadParser, Request, Response
from rawws.testing import chunkings, split

RFC_KEY = "dGhlIHNhbXBsZSBub25jZQ=="


def test_rfc_accept_key_example() -> None:
    assert accept_key(RFC_KEY) == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


def test_generated_keys_are_fresh_16_byte_nonces() -> None:
    import base64

    keys = {generate_key() for _ in range(20)}
    assert len(keys) == 20
    assert all(len(base64.b64decode(k)) == 16 for k in keys)


def rfc_request(**changes: str | None) -> Request:
    headers = {
        "Host": "server.example.com",
        "Upgrade": "websocket",
        "Connection": "Upgrade",
        "Sec-WebSocket-Key": RFC_KEY,
        "Origin": "http://example.com",
        "Sec-WebSocket-Protocol": "chat, superchat",
        "Sec-WebSocket-Version": "13",
    }
    for name, value in changes.items():
        name = name.replace("_", "-")
        if value is None:
            headers.pop(name, None)
        else:
            headers[name] = value
    return Request("GET", "/chat", Headers(list(headers.items())))


def status_of(request: Request, **kwargs: object) -> int:
    with pytest.raises(InvalidHandshake) as info:
        check_request(request, **kwargs)  # type: ignore[arg-type]
    return info.value.status


def test_valid_request_returns_key() -> None:
    assert check_request(rfc_request()) == RFC_KEY


def test_connection_token_list_and_case() -> None:
    assert check_request(rfc_request(Connection="keep-alive, Upgrade", Upgrade="WebSocket")) == RFC_KEY


def test_refusals_have_the_right_status() -> None:
    assert status_of(Request("POST", "/", rfc_request().headers)) == 405
    assert status_of(rfc_request(Upgrade=None)) == 426
    assert status_of(rfc_request(Upgrade="h2c")) == 426
    assert status_of(rfc_request(Connection="keep-alive")) == 400
    assert status_of(rfc_request(Host=None)) == 400
    assert status_of(rfc_request(Sec_WebSocket_Key=None)) == 400
    assert status_of(rfc_request(Sec_WebSocket_Key="c2hvcnQ=")) == 400  # 5 bytes
    assert status_of(rfc_request(Sec_WebSocket_Key="not base64!!")) == 400
    assert status_of(rfc_request(Sec_WebSocket_Version="8")) == 426
    assert status_of(rfc_request(Sec_WebSocket_Version=None)) == 426


def test_wrong_version_answer_names_version_13() -> None:
    with pytest.raises(InvalidHandshake) as info:
        check_request(rfc_request(Sec_WebSocket_Version="8"))
    # Issue 13 item 11: the headers are the case-insensitive Headers type used everywhere else.
    assert isinstance(info.value.headers, Headers)
    assert info.value.headers["sec-websocket-version"] == "13"


def test_origin_checks() -> None:
    assert check_request(rfc_request(), origins=["http://example.com"]) == RFC_KEY
    assert status_of(rfc_request(), origins=["https://good.example"]) == 403
    assert status_of(rfc_request(Origin=None), origins=["https://good.example"]) == 403
    assert check_request(rfc_request(Origin=None), origins=[None]) == RFC_KEY


def test_subprotocol_selection_follows_the_clients_order() -> None:
    assert select_subprotocol(["chat", "superchat"], ["superchat", "chat"]) == "chat"
    assert select_subprotocol(["x"], ["chat"]) is None


def test_accept_response_matches_rfc_example() -> None:
    response = accept(RFC_KEY, subprotocol="chat")
    assert response.status == 101
    assert response.headers["Sec-WebSocket-Accept"] == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
    assert response.headers["Sec-WebSocket-Protocol"] == "chat"


def test_reject_has_text_body() -> None:
    response = reject(403, "origin not allowed")
    wire = response.serialize()
    assert wire.startswith(b"HTTP/1.1 403 Forbidden\r\n")
    assert wire.endswith(b"\r\n\r\norigin not allowed\n")


def test_client_round_trip() -> None:
    key = generate_key()
    request = build_request("h:1", "/p?q=1", key=key, subprotocols=["a", "b"], origin="http://o")
    assert check_request(request, origins=["http://o"]) == key
    response = accept(key, subprotocol="b")
    assert check_response(response, key=key, subprotocols=["a", "b"]) == ("b", [])


def test_client_rejects_bad_answers() -> None:
    key = generate_key()
    with pytest.raises(InvalidHandshake, match="Accept"):
        check_response(accept(generate_key()), key=key)
    with pytest.raises(InvalidHandshake, match="not offered"):
        check_response(accept(key, subprotocol="x"), key=key, subprotocols=["y"])
    with pytest.raises(InvalidHandshake, match="not offered"):
        check_response(accept(key, extensions="permessage-deflate"), key=key)
    with pytest.raises(InvalidHandshake) as info:
        check_response(reject(403, "no"), key=key)
    assert info.value.status == 403
    assert info.value.body == b"no\n"


def test_a_missing_or_repeated_accept_header_is_an_invalid_header() -> None:
    """Issue 13 item 9: a missing Sec-WebSocket-Accept is InvalidHeader, and says it is missing."""
    key = generate_key()
    response = accept(key)
    response.headers.remove("Sec-WebSocket-Accept")
    with pytest.raises(InvalidHeader, match="lacks the Sec-WebSocket-Accept header"):
        check_response(response, key=key)
    response.headers["Sec-WebSocket-Accept"] = accept_key(key)
    response.headers["Sec-WebSocket-Accept"] = accept_key(key)
    with pytest.raises(InvalidHeader, match="more than one"):
        check_response(response, key=key)
    with pytest.raises(InvalidHeader, match="does not match"):
        check_response(accept(generate_key()), key=key)


def test_a_plain_http_answer_is_reported_with_its_status() -> None:
    """Issue 13 item 6: an HTTP/1.0 200 (``python -m http.server``) is read and reported, not called a 505."""
    parser = HeadParser("response")
    response = parser.feed(b"HTTP/1.0 200 OK\r\nServer: SimpleHTTP/0.6\r\nContent-Length: 0\r\n\r\n")
    assert isinstance(response, Response) and (response.status, response.version) == (200, "HTTP/1.0")
    with pytest.raises(InvalidHandshake, match="did not upgrade to WebSocket: it answered HTTP/1.0 200 OK") as info:
        check_response(response, key=generate_key())
    assert info.value.status == 200
    key = generate_key()
    upgraded = accept(key)
    upgraded.version = "HTTP/1.0"
    with pytest.raises(InvalidHandshake, match="101 over HTTP/1.0"):
        check_response(upgraded, key=key)


# --- Sec-WebSocket-Extensions grammar (§9.1) -----------------------------------------


def test_extension_grammar() -> None:
    values = ['permessage-deflate; client_max_window_bits; server_max_window_bits="10", x-foo', "bar;a=1"]
    assert parse_extensions(values) == [
        ("permessage-deflate", [("client_max_window_bits", None), ("server_max_window_bits", "10")]),
        ("x-foo", []),
        ("bar", [("a", "1")]),
    ]


@pytest.mark.parametrize("bad", ["a;", "a;=1", "a; b=", 'a; b="1 2"', "a b", "a;b=1;"])
def test_extension_grammar_errors(bad: str) -> None:
    with pytest.raises(InvalidHandshake):
        parse_extensions([bad])


def test_extension_serialize_round_trip() -> None:
    offers = [("permessage-deflate", [("client_max_window_bits", None), ("server_max_window_bits", "10")])]
    assert parse_extensions([serialize_extensions(offers)]) == offers


def test_token_list() -> None:
    assert parse_token_list(["keep-alive, Upgrade", " , x"]) == ["keep-alive", "Upgrade", "x"]
    with pytest.raises(InvalidHandshake):
        parse_token_list(["a b"])


# --- HTTP/1.1 heads --------------------------------------------------------------------

RAW_REQUEST = (
    b"GET /chat?x=1 HTTP/1.1\r\nHost: server.example.com\r\nUpgrade: websocket\r\n"
    b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    b"Sec-WebSocket-Version: 13\r\n\r\n"
)


@given(chunkings())
def test_request_parse_any_split(cuts: list[int]) -> None:
    parser = HeadParser("request")
    result = None
    for chunk in split(RAW_REQUEST + b"\x81\x00", cuts):
        if result is None:
            result = parser.feed(chunk)
        else:
            parser.remainder += chunk
    assert isinstance(result, Request)
    assert result.path == "/chat?x=1"
    assert result.headers["host"] == "server.example.com"
    assert parser.remainder == b"\x81\x00"


def test_response_parse() -> None:
    raw = accept(RFC_KEY).serialize()
    response = HeadParser("response").feed(raw)
    assert isinstance(response, Response) and response.status == 101


@pytest.mark.parametrize(
    ("raw", "status"),
    [
        (b"GET / HTTP/1.0\r\nHost: x\r\n\r\n", 505),
        (b"GET /\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nBad Header\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nName : v\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nA: \x01\r\n\r\n", 400),
        (b"GET / HTTX/1.1\r\n\r\n", 400),
    ],
)
def test_malformed_heads(raw: bytes, status: int) -> None:
    with pytest.raises(InvalidHandshake) as info:
        HeadParser().feed(raw)
    assert info.value.status == status


def test_limits_are_enforced_before_the_head_ends() -> None:
    with pytest.raises(InvalidHandshake) as info:
        HeadParser(max_line=100).feed(b"GET /" + b"a" * 200)
    assert info.value.status == 431
    parser = HeadParser(max_headers=5)
    with pytest.raises(InvalidHandshake) as info:
        parser.feed(b"GET / HTTP/1.1\r\n" + b"A: b\r\n" * 10)
    assert info.value.status == 431
    with pytest.raises(InvalidHandshake) as info:
        HeadParser(max_head=1000).feed(b"GET / HTTP/1.1\r\n" + b"A: bbbbbbbb\r\n" * 100)
    assert info.value.status == 431


@given(st.binary(max_size=2000), chunkings())
@settings(max_examples=300)
def test_garbage_heads_raise_only_invalid_handshake(data: bytes, cuts: list[int]) -> None:
    for kind in ("request", "response"):
        parser = HeadParser(kind, max_head=1500, max_line=300, max_headers=20)
        try:
            for chunk in split(data, cuts):
                if parser.feed(chunk) is not None:
                    break
        except InvalidHandshake:
            pass


@given(st.binary(max_size=300))
def test_garbage_extension_headers_raise_only_invalid_handshake(data: bytes) -> None:
    try:
        parse_extensions([data.decode("latin-1")])
    except InvalidHandshake:
        pass
