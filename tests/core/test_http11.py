"""HTTP/1.1 heads (RFC 9112) as the opening handshake uses them: incremental parsing, limits, headers."""

from __future__ import annotations

import pytest

from rawws.exceptions import InvalidHandshake
from rawws.http11 import MAX_HEADERS, MAX_LINE, Headers, HeadParser, Request, Response

REQUEST = b"GET /chat?x=1 HTTP/1.1\r\nHost: example.com\r\nUpgrade: websocket\r\nX-A: 1\r\nx-a: 2\r\n\r\n"


def test_a_request_head_split_anywhere_gives_the_same_request() -> None:
    whole = HeadParser("request").feed(REQUEST + b"rest")
    assert isinstance(whole, Request)
    for cut in range(1, len(REQUEST)):
        parser = HeadParser("request")
        assert parser.feed(REQUEST[:cut]) is None
        assert parser.feed(REQUEST[cut:] + b"rest") == whole
        assert parser.remainder == b"rest"
    assert whole.method == "GET" and whole.path == "/chat?x=1" and whole.version == "HTTP/1.1"


def test_headers_are_case_insensitive_and_keep_repeats_in_order() -> None:
    request = HeadParser("request").feed(REQUEST)
    assert isinstance(request, Request)
    assert request.headers["host"] == "example.com"
    assert request.headers.get_all("X-A") == ["1", "2"]
    assert "UPGRADE" in request.headers and "Origin" not in request.headers
    with pytest.raises(KeyError):
        request.headers["Origin"]


def test_headers_serialise_as_given() -> None:
    headers = Headers([("A", "1")])
    headers["B"] = "2"
    headers["a"] = "4"  # fields may repeat
    assert headers.get_all("A") == ["1", "4"]
    headers.replace("a", "3")  # every "A" goes; one "a" comes
    assert headers.serialize() == b"B: 2\r\na: 3\r\n"
    headers.remove("A")
    assert headers.items() == [("B", "2")]


def test_a_response_head() -> None:
    response = HeadParser("response").feed(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 3\r\n\r\nno!")
    assert isinstance(response, Response)
    assert (response.status, response.reason, response.headers["Content-Length"]) == (403, "Forbidden", "3")


@pytest.mark.parametrize(
    ("head", "status"),
    [
        (b"GET / HTTP/1.1\r\n" + b"A: b\r\n" * (MAX_HEADERS + 1) + b"\r\n", 431),
        (b"GET /" + b"a" * MAX_LINE + b" HTTP/1.1\r\n\r\n", 431),
        (b"GET / HTTP/1.0\r\nHost: x\r\n\r\n", 505),
        (b"GET / HTTP/2.0\r\nHost: x\r\n\r\n", 505),
        (b"GET * HTTP/1.1\r\nHost: x\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nno colon here\r\n\r\n", 400),
    ],
)
def test_bad_heads_give_the_status_to_answer(head: bytes, status: int) -> None:
    with pytest.raises(InvalidHandshake) as info:
        HeadParser("request").feed(head)
    assert info.value.status == status


def test_limits_apply_before_the_head_ends() -> None:
    parser = HeadParser("request")
    with pytest.raises(InvalidHandshake) as info:
        for _ in range(MAX_LINE):  # one long line, never finished
            parser.feed(b"a" * 64)
    assert info.value.status == 431


def test_kind_is_request_or_response() -> None:
    with pytest.raises(ValueError):
        HeadParser("reply")  # type: ignore[arg-type]
