"""permessage-deflate (RFC 7692): the RFC's examples, negotiation, round trips, interop, bombs."""

from __future__ import annotations

import os
import socket
import threading
import tracemalloc
import zlib
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from websockets.extensions.permessage_deflate import ClientPerMessageDeflateFactory, ServerPerMessageDeflateFactory
from websockets.sync.client import connect as ws_connect

from rawws import ConnectionClosedError, InvalidHandshake, connect
from rawws.extensions.permessage_deflate import (
    DeflateConfig,
    PerMessageDeflate,
    accept_server_response,
    client_offer,
    negotiate_server,
)
from rawws.frames import Frame, FrameParser, Opcode, encode_frame
from rawws.handshake import accept_key, parse_extensions
from rawws.http11 import HeadParser, Request
from rawws.protocol import CLIENT, SERVER, BinaryMessage, Failure, Protocol, TextMessage
from rawws.sync.server import Server
from tests.conftest import echo, scaled
from tests.hostile import HostilePeer
from tests.proxy import RecordingProxy

StartServer = Callable[..., Server]


def pair(
    server_bits: int = 15, client_bits: int = 15, server_reset: bool = False, client_reset: bool = False, **kw: Any
) -> tuple[PerMessageDeflate, PerMessageDeflate]:
    """(server side, client side) extensions that agree with each other."""
    server = PerMessageDeflate(
        compress_bits=server_bits,
        compress_reset=server_reset,
        decompress_bits=client_bits,
        decompress_reset=client_reset,
        **kw,
    )
    client = PerMessageDeflate(
        compress_bits=client_bits,
        compress_reset=client_reset,
        decompress_bits=server_bits,
        decompress_reset=server_reset,
        **kw,
    )
    return server, client


def receiver() -> PerMessageDeflate:
    return PerMessageDeflate(compress_bits=15, compress_reset=False, decompress_bits=15, decompress_reset=False)


def inflate(extension: PerMessageDeflate, *frames: Frame) -> bytes:
    return b"".join(extension.decode(f, max_size=None).payload for f in frames)


# --- RFC 7692 §7.2.3 examples ----------------------------------------------------------


def test_rfc_hello_compressed() -> None:
    sender = PerMessageDeflate(
        compress_bits=15, compress_reset=True, decompress_bits=15, decompress_reset=True, threshold=0
    )
    frame = sender.encode(Frame(Opcode.TEXT, b"Hello"), message_opcode=Opcode.TEXT)
    assert frame.payload == bytes.fromhex("f248cdc9c90700")
    assert frame.rsv1
    assert encode_frame(frame) == bytes.fromhex("c107f248cdc9c90700")  # §7.2.3.1, unmasked
    assert inflate(receiver(), Frame(Opcode.TEXT, bytes.fromhex("f248cdc9c90700"), True, True)) == b"Hello"


def test_rfc_two_fragments() -> None:
    first = Frame(Opcode.TEXT, bytes.fromhex("f248cd"), False, True)
    second = Frame(Opcode.CONT, bytes.fromhex("c9c90700"), True, False)
    assert inflate(receiver(), first, second) == b"Hello"


def test_rfc_shared_window_second_message() -> None:
    ext = receiver()
    assert inflate(ext, Frame(Opcode.TEXT, bytes.fromhex("f248cdc9c90700"), True, True)) == b"Hello"
    assert inflate(ext, Frame(Opcode.TEXT, bytes.fromhex("f200110000"), True, True)) == b"Hello"  # §7.2.3.2
    sender = PerMessageDeflate(
        compress_bits=15, compress_reset=False, decompress_bits=15, decompress_reset=False, threshold=0
    )
    one = sender.encode(Frame(Opcode.TEXT, b"Hello"), message_opcode=1).payload
    two = sender.encode(Frame(Opcode.TEXT, b"Hello"), message_opcode=1).payload
    assert len(two) < len(one)  # context takeover: the second refers back to the first


def test_rfc_no_compression_block() -> None:
    assert inflate(receiver(), Frame(Opcode.TEXT, bytes.fromhex("0005 00faff 48656c6c6f 00"), True, True)) == b"Hello"


def test_rfc_bfinal_block_and_two_blocks() -> None:
    assert inflate(receiver(), Frame(Opcode.TEXT, bytes.fromhex("f348cdc9c907 0000"), True, True)) == b"Hello"
    two = bytes.fromhex("f24805000000ffff ca c9c90700")
    assert inflate(receiver(), Frame(Opcode.TEXT, two, True, True)) == b"Hello"


def test_control_frames_are_never_compressed() -> None:
    ext = receiver()
    ping = Frame(Opcode.PING, b"x" * 100)
    assert ext.encode(ping, message_opcode=Opcode.PING) == ping
    from rawws.exceptions import ProtocolError

    with pytest.raises(ProtocolError):
        ext.decode(Frame(Opcode.PING, b"", True, True), max_size=None)
    with pytest.raises(ProtocolError):
        ext.decode(Frame(Opcode.CONT, b"", True, True), max_size=None)


def test_small_messages_stay_uncompressed() -> None:
    sender = PerMessageDeflate(
        compress_bits=15, compress_reset=False, decompress_bits=15, decompress_reset=False, threshold=64
    )
    assert not sender.encode(Frame(Opcode.TEXT, b"short"), message_opcode=1).rsv1
    assert sender.encode(Frame(Opcode.TEXT, b"x" * 64), message_opcode=1).rsv1


# --- negotiation (§7.1) ----------------------------------------------------------------


def server_answer(header: str, config: DeflateConfig | None = None) -> Any:
    result = negotiate_server(parse_extensions([header]), config or DeflateConfig())
    return None if result is None else result[0]


def test_browser_offer_gets_the_defaults() -> None:
    assert server_answer("permessage-deflate; client_max_window_bits") == [
        ("server_max_window_bits", "12"),
        ("client_max_window_bits", "12"),
    ]


def test_parameters_are_honoured() -> None:
    answer = server_answer(
        "permessage-deflate; server_no_context_takeover; client_no_context_takeover; "
        'server_max_window_bits=10; client_max_window_bits="11"'
    )
    assert answer == [
        ("server_no_context_takeover", None),
        ("client_no_context_takeover", None),
        ("server_max_window_bits", "10"),
        ("client_max_window_bits", "11"),
    ]


def test_client_without_client_max_window_bits_gets_none() -> None:
    answer = server_answer(
        "permessage-deflate", DeflateConfig(server_max_window_bits=None, client_max_window_bits=None)
    )
    assert answer == []


@pytest.mark.parametrize(
    "bad",
    [
        "permessage-deflate; server_max_window_bits",  # needs a value
        "permessage-deflate; server_max_window_bits=16",
        "permessage-deflate; client_max_window_bits=7",
        "permessage-deflate; server_no_context_takeover=1",
        "permessage-deflate; server_no_context_takeover; server_no_context_takeover",  # duplicated
        "permessage-deflate; unknown_param",
        "permessage-deflate; server_max_window_bits=8",  # valid, but zlib cannot honour it
    ],
)
def test_invalid_offers_are_declined(bad: str) -> None:
    assert server_answer(bad) is None


def test_first_acceptable_offer_wins_across_headers() -> None:
    offers = parse_extensions(
        ["x-other, permessage-deflate; server_max_window_bits=99", "permessage-deflate; server_max_window_bits=9"]
    )
    result = negotiate_server(offers, DeflateConfig())
    assert result is not None and ("server_max_window_bits", "9") in result[0]


def test_client_checks_the_answer() -> None:
    config = DeflateConfig()
    assert client_offer(config) == (
        "permessage-deflate",
        [("server_max_window_bits", "12"), ("client_max_window_bits", "12")],
    )
    extension = accept_server_response([("server_max_window_bits", "12"), ("client_max_window_bits", "10")], config)
    assert (extension.compress_bits, extension.decompress_bits) == (10, 12)
    for bad in (
        [("server_max_window_bits", "12"), ("server_max_window_bits", "12")],
        [("server_max_window_bits", "13")],  # larger than we asked
        [("bogus", None)],
    ):
        with pytest.raises(InvalidHandshake):
            accept_server_response(bad, config)


@pytest.mark.parametrize("answer_bits", ["13", "15"])
def test_client_keeps_its_smaller_window_when_the_server_allows_a_larger_one(answer_bits: str) -> None:
    """Issue 13 item 16: an answer above the client's offer is accepted; the client compresses with its own window."""
    config = DeflateConfig()  # offers client_max_window_bits=12
    answer = [("server_max_window_bits", "12"), ("client_max_window_bits", answer_bits)]
    extension = accept_server_response(answer, config)
    assert (extension.compress_bits, extension.decompress_bits) == (12, 12)
    unlimited_config = DeflateConfig(server_max_window_bits=None, client_max_window_bits=None)
    unlimited = accept_server_response([("client_max_window_bits", answer_bits)], unlimited_config)
    assert unlimited.compress_bits == int(answer_bits)


# --- round trips ----------------------------------------------------------------------------

settings_strategy = st.builds(
    dict,
    server_bits=st.integers(9, 15),
    client_bits=st.integers(9, 15),
    server_reset=st.booleans(),
    client_reset=st.booleans(),
    threshold=st.sampled_from([0, 64]),
)
message_lists = st.lists(
    st.tuples(st.one_of(st.text(max_size=3000), st.binary(max_size=3000)), st.integers(1, 4)), min_size=1, max_size=6
)


@given(settings_strategy, message_lists)
@settings(max_examples=150, deadline=None)
def test_sans_io_round_trip_any_parameters(params: dict[str, Any], messages: list[tuple[str | bytes, int]]) -> None:
    server_ext, client_ext = pair(**params)
    client = Protocol(CLIENT, max_size=None, extensions=[client_ext])
    server = Protocol(SERVER, max_size=None, extensions=[server_ext])
    for message, pieces in messages:
        raw = message.encode() if isinstance(message, str) else message
        step = max(1, len(raw) // pieces)
        chunks = [raw[i : i + step] for i in range(0, len(raw), step)] or [b""]
        if isinstance(message, str):
            client.send_text(chunks[0], fin=len(chunks) == 1)
        else:
            client.send_binary(chunks[0], fin=len(chunks) == 1)
        for i, chunk in enumerate(chunks[1:], 2):
            client.send_continuation(chunk, fin=i == len(chunks))
        events = server.receive_data(b"".join(bytes(b) for b in client.data_to_send()))
        assert [e for e in events if isinstance(e, Failure)] == []
        got = [e.data for e in events if isinstance(e, (TextMessage, BinaryMessage))]
        assert got == [message]
        # And back the other way.
        if isinstance(message, str):
            server.send_text(message)
        else:
            server.send_binary(message)
        back = client.receive_data(b"".join(bytes(b) for b in server.data_to_send()))
        assert [e.data for e in back if isinstance(e, (TextMessage, BinaryMessage))] == [message]


@pytest.fixture(scope="module")
def deflate_echo_server() -> Iterator[Server]:
    from rawws.sync.server import serve

    server = serve(echo, "127.0.0.1", 0, max_size=2**22, ping_interval=None).start()
    yield server
    server.shutdown(scaled(5))


@given(
    st.lists(st.one_of(st.text(max_size=5000), st.binary(max_size=20000)), min_size=1, max_size=5), st.integers(1, 3)
)
@settings(max_examples=40, deadline=None)
def test_socket_round_trip_with_compression(
    deflate_echo_server: Server, messages: list[str | bytes], pieces: int
) -> None:
    with connect(f"ws://127.0.0.1:{deflate_echo_server.port}/", max_size=2**22) as ws:
        assert ws.protocol.extensions, "compression was negotiated"
        for message in messages:
            if pieces > 1 and len(message) >= pieces:
                step = len(message) // pieces
                ws.send([message[i : i + step] for i in range(0, len(message), step)])
            else:
                ws.send(message)
            assert ws.recv(timeout=scaled(10)) == message


# --- interop with websockets, checked on the wire --------------------------------------------


def frames_on_wire(stream: bytes | bytearray, masked: bool) -> list[Frame]:
    parser = FrameParser(mask_expected=masked, allowed_rsv=0x40)
    return parser.feed(RecordingProxy.websocket_part(stream))


TEXT = '{"type": "chat", "payload": {"channel": "lobby", "text": "hello there, how is everyone"}}' * 3


@pytest.mark.parametrize(
    "config",
    [
        {},
        {"server_no_context_takeover": True, "client_no_context_takeover": True},
        {"server_max_window_bits": 10, "client_max_window_bits": 9},
    ],
)
def test_rawws_server_websockets_client(start_server: StartServer, config: dict[str, Any]) -> None:
    server = start_server(echo, compression=DeflateConfig(**config))
    proxy = RecordingProxy(server.port)
    factory = ClientPerMessageDeflateFactory(
        server_no_context_takeover=config.get("server_no_context_takeover", False),
        client_no_context_takeover=config.get("client_no_context_takeover", False),
        server_max_window_bits=config.get("server_max_window_bits"),
        client_max_window_bits=config.get("client_max_window_bits", True),
    )
    with ws_connect(f"ws://127.0.0.1:{proxy.port}/", extensions=[factory], compression=None) as ws:
        for _ in range(3):
            ws.send(TEXT)
            assert ws.recv(timeout=scaled(5)) == TEXT
        big = os.urandom(100_000)
        ws.send(big)
        assert ws.recv(timeout=scaled(5)) == big
    proxy.close()
    sent = frames_on_wire(proxy.to_client, masked=False)
    texts = [f for f in sent if f.opcode == Opcode.TEXT]
    assert texts and all(f.rsv1 for f in texts)  # compressed by rawws ...
    assert all(len(f.payload) < len(TEXT) // 2 for f in texts)  # ... and really smaller
    if not config:
        assert len(texts[1].payload) < len(texts[0].payload)  # context takeover at work


@pytest.mark.parametrize(
    ("server_config", "client_config"),
    [
        ({}, DeflateConfig()),
        ({"server_no_context_takeover": True, "client_no_context_takeover": True}, DeflateConfig()),
        ({"server_max_window_bits": 11, "client_max_window_bits": 10}, DeflateConfig()),
        ({}, DeflateConfig(server_max_window_bits=9, client_max_window_bits=9, client_no_context_takeover=True)),
    ],
)
def test_rawws_client_websockets_server(
    websockets_server: Callable[..., int], server_config: dict[str, Any], client_config: DeflateConfig
) -> None:
    factory = ServerPerMessageDeflateFactory(**server_config)
    port = websockets_server(echo, extensions=[factory], compression=None)
    proxy = RecordingProxy(port)
    with connect(f"ws://127.0.0.1:{proxy.port}/", compression=client_config) as ws:
        assert ws.protocol.extensions
        for _ in range(3):
            ws.send(TEXT)
            assert ws.recv(timeout=scaled(5)) == TEXT
        data = bytes(range(256)) * 400
        ws.send(data)
        assert ws.recv(timeout=scaled(5)) == data
    proxy.close()
    sent = frames_on_wire(proxy.to_server, masked=True)
    texts = [f for f in sent if f.opcode == Opcode.TEXT]
    assert texts and all(f.rsv1 and len(f.payload) < len(TEXT) // 2 for f in texts)
    received = frames_on_wire(proxy.to_client, masked=False)
    assert any(f.rsv1 for f in received)  # websockets compressed too, and rawws inflated it


# --- bombs --------------------------------------------------------------------------------------


def bomb(size: int) -> bytes:
    """``size`` zero bytes, deflated (about 1,000:1), without the sync-flush tail."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    chunk = bytes(1 << 20)
    parts = [compressor.compress(chunk) for _ in range(size >> 20)]
    parts.append(compressor.flush(zlib.Z_SYNC_FLUSH))
    return b"".join(parts)[:-4]


def test_bomb_is_stopped_while_inflating_with_bounded_memory() -> None:
    payload = bomb(512 << 20)  # 512 MiB once inflated, about half a megabyte on the wire
    assert len(payload) < 1 << 20
    wire = encode_frame(Frame(Opcode.BINARY, payload, True, True), mask=True)
    max_size = 1 << 20
    server = Protocol(SERVER, max_size=max_size, extensions=[receiver()])
    tracemalloc.start()
    try:
        events = server.receive_data(wire)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert isinstance(events[-1], Failure) and events[-1].error.close_code == 1009
    # Far below 512 MiB: the input (held once or twice) plus at most max_size of output.
    assert peak < 4 * len(wire) + 2 * max_size, peak


def test_bomb_over_the_wire_gets_1009(start_server: StartServer) -> None:
    server = start_server(echo, max_size=1 << 20)
    with HostilePeer(server.port) as peer:
        response = peer.handshake("Sec-WebSocket-Extensions: permessage-deflate\r\n")
        assert "permessage-deflate" in (response.headers.get("Sec-WebSocket-Extensions") or "")
        peer.send_raw(peer.frame_bytes(2, bomb(64 << 20), rsv=0x40))
        assert peer.expect_close()[0] == 1009


def test_too_big_after_inflating_reaches_client_as_1009(start_server: StartServer) -> None:
    server = start_server(echo, max_size=10_000)
    with connect(f"ws://127.0.0.1:{server.port}/") as ws:
        with pytest.raises(ConnectionClosedError) as info:
            # The server's 1009 may arrive before send() returns (then send raises it), or after.
            ws.send(bytes(20_000))  # 20 kB of zeros: tiny on the wire, too big once inflated
            ws.recv(timeout=scaled(5))
        assert info.value.code == 1009


def test_compression_none_refuses_offers(start_server: StartServer) -> None:
    server = start_server(echo, compression=None)
    with connect(f"ws://127.0.0.1:{server.port}/") as ws:
        assert ws.protocol.extensions == []
        assert "Sec-WebSocket-Extensions" not in ws.response.headers


# --- a server that allows the client a larger window than it offered (issue 13, item 16) -----------------


def deflate_server_answering(answer: str, server_reset: bool, client_reset: bool) -> tuple[int, threading.Thread]:
    """A one-connection raw-socket server that answers the offer with ``answer`` and echoes text messages.

    Like the Autobahn suite's server, it answers ``client_max_window_bits=15`` to a client that offered 12,
    and inflates with a 15-bit window (which inflates any smaller window's output).
    """
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def run() -> None:
        with listener:
            listener.settimeout(scaled(10))
            client, _ = listener.accept()
        with client:
            client.settimeout(scaled(10))
            parser = HeadParser("request")
            request = None
            while request is None:
                request = parser.feed(client.recv(65536))
            assert isinstance(request, Request)
            client.sendall(
                b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                + f"Sec-WebSocket-Accept: {accept_key(request.headers['Sec-WebSocket-Key'])}\r\n".encode()
                + f"Sec-WebSocket-Extensions: {answer}\r\n\r\n".encode()
            )
            extension = PerMessageDeflate(
                compress_bits=12, compress_reset=server_reset, decompress_bits=15, decompress_reset=client_reset
            )
            protocol = Protocol(SERVER, extensions=[extension])
            data = parser.remainder or client.recv(65536)
            while data:
                for event in protocol.receive_data(data):
                    if isinstance(event, TextMessage):
                        protocol.send_text(event.data)
                client.sendall(b"".join(protocol.data_to_send()))
                if protocol.should_close_tcp:  # the closing handshake is done: the server closes TCP (§7.1.1)
                    break
                data = client.recv(65536)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return port, thread


@pytest.mark.parametrize(
    ("answer", "server_reset", "client_reset"),
    [
        ("permessage-deflate; server_max_window_bits=12; client_max_window_bits=15", False, False),
        (
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover; "
            "server_max_window_bits=12; client_max_window_bits=15",
            True,
            True,
        ),
    ],
    ids=["context-takeover", "no-context-takeover"],
)
def test_client_talks_to_a_server_that_allows_it_a_larger_window(
    answer: str, server_reset: bool, client_reset: bool
) -> None:
    port, thread = deflate_server_answering(answer, server_reset, client_reset)
    proxy = RecordingProxy(port)
    with connect(f"ws://127.0.0.1:{proxy.port}/", ping_interval=None) as ws:  # offers client_max_window_bits=12
        (extension,) = ws.protocol.extensions
        assert isinstance(extension, PerMessageDeflate)
        assert (extension.compress_bits, extension.compress_reset) == (12, client_reset)
        for _ in range(3):
            ws.send(TEXT)
            assert ws.recv(timeout=scaled(5)) == TEXT
        big = "".join(f"{i:06d} and some more text; " for i in range(2000))  # longer than a 4 KiB window
        ws.send(big)
        assert ws.recv(timeout=scaled(5)) == big
    thread.join(scaled(10))
    proxy.close()
    texts = [f for f in frames_on_wire(proxy.to_server, masked=True) if f.opcode == Opcode.TEXT]
    assert len(texts) == 4 and all(f.rsv1 and len(f.payload) < len(TEXT) // 2 for f in texts[:3])
