"""The opening handshake's state machines (rawws.opening), stepped through with bytes: RFC 6455 §4."""

from __future__ import annotations

import doctest

import pytest

import rawws.opening
from rawws.exceptions import InvalidHandshake
from rawws.extensions.permessage_deflate import DeflateConfig, PerMessageDeflate
from rawws.frames import Frame, Opcode, encode_frame
from rawws.opening import ClientHandshake, HandshakeState, ServerHandshake
from rawws.protocol import TextMessage


def test_the_module_walkthrough_runs() -> None:
    assert doctest.testmod(rawws.opening).failed == 0


def handshake_pair(**server: object) -> tuple[ClientHandshake, ServerHandshake]:
    client = ClientHandshake("ws://example.com/chat", compression=DeflateConfig(), subprotocols=["b", "a"])
    return client, ServerHandshake(compression=DeflateConfig(), **server)  # type: ignore[arg-type]


def test_both_ends_agree_on_subprotocol_and_compression() -> None:
    client, server = handshake_pair(subprotocols=["a", "b"])
    request = server.receive_data(client.data_to_send())
    assert request is not None
    server.accept(request)
    assert server.state is HandshakeState.OPEN and server.subprotocol == "b"  # the client's preference
    response = client.receive_data(server.data_to_send())
    assert response is not None and response.status == 101
    assert client.state is HandshakeState.OPEN and client.subprotocol == "b"
    assert isinstance(client.extensions[0], PerMessageDeflate) and isinstance(server.extensions[0], PerMessageDeflate)
    # The negotiated protocols talk to each other, compression included.
    client_protocol, server_protocol = client.protocol(), server.protocol()
    client_protocol.send_text("hello " * 20)
    assert server_protocol.receive_data(b"".join(client_protocol.data_to_send())) == [TextMessage("hello " * 20)]


def test_a_head_in_pieces_and_frames_right_behind_it() -> None:
    client, server = handshake_pair()
    data = client.data_to_send() + encode_frame(Frame(Opcode.TEXT, b"early"), mask=True)
    assert server.receive_data(data[:10]) is None
    request = server.receive_data(data[10:])
    assert request is not None
    server.accept(request)
    assert server.protocol().receive_data(server.remainder) == [TextMessage("early")]


@pytest.mark.parametrize(
    ("change", "status"),
    [
        ((b"Sec-WebSocket-Version: 13", b"Sec-WebSocket-Version: 8"), 426),
        ((b"Upgrade: websocket\r\n", b""), 426),
        ((b"GET ", b"POST "), 405),
        ((b"Sec-WebSocket-Key: ", b"Sec-WebSocket-Key: x"), 400),
    ],
)
def test_refusals_are_queued_as_http_answers(change: tuple[bytes, bytes], status: int) -> None:
    client, server = handshake_pair()
    request = server.receive_data(client.data_to_send().replace(*change))
    assert request is not None
    with pytest.raises(InvalidHandshake) as info:
        server.accept(request)
    assert info.value.status == status
    server.refuse(info.value)
    assert server.state is HandshakeState.REFUSED
    with pytest.raises(InvalidHandshake) as refused:
        client.receive_data(server.data_to_send())
    assert refused.value.status == status and refused.value.body  # the client sees the server's reason
    with pytest.raises(InvalidHandshake):
        server.protocol()


def test_a_refusal_body_may_arrive_later_or_end_with_the_connection() -> None:
    client = ClientHandshake("ws://example.com/")
    client.data_to_send()
    assert client.receive_data(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 10\r\n\r\nnot ") is None
    with pytest.raises(InvalidHandshake) as info:
        client.receive_data(b"you!!!")
    assert (info.value.status, info.value.body) == (403, b"not you!!!")
    client = ClientHandshake("ws://example.com/")
    assert client.receive_data(b"HTTP/1.1 500 Oops\r\n\r\npartial") is None
    with pytest.raises(InvalidHandshake) as info:
        client.receive_eof()
    assert (info.value.status, info.value.body) == (500, b"partial")


def test_eof_before_any_answer_fails_the_handshake() -> None:
    client = ClientHandshake("ws://example.com/")
    with pytest.raises(InvalidHandshake, match="closed the connection during the handshake"):
        client.receive_eof()
    assert client.state is HandshakeState.REFUSED


def test_a_wrong_accept_key_is_refused_by_the_client() -> None:
    client, server = handshake_pair()
    request = server.receive_data(client.data_to_send())
    assert request is not None
    server.accept(request)
    answer = server.data_to_send()
    good = answer.split(b"Sec-WebSocket-Accept: ")[1].split(b"\r\n")[0]
    with pytest.raises(InvalidHandshake, match="Sec-WebSocket-Accept"):
        client.receive_data(answer.replace(good, b"AAAAAAAAAAAAAAAAAAAAAAAAAAA="))


def test_process_request_style_answers() -> None:
    client, server = handshake_pair()
    request = server.receive_data(client.data_to_send())
    assert request is not None
    from rawws.handshake import reject

    server.respond(reject(401, "token needed"))
    out = server.data_to_send()
    assert out.startswith(b"HTTP/1.1 401") and b"Connection: close" in out and out.endswith(b"token needed\n")
