"""Run one case against the server over a real socket, and judge what it did.

The client writes the case's chunks one ``send`` each (``TCP_NODELAY``), then
a probe: a ping with a payload of its own. A server that answers the probe
has read past everything before it, so a broken case it answers was
accepted, and the verdict comes at once instead of after ``--timeout``.
"""

from __future__ import annotations

import os
import socket
import ssl
import time
from dataclasses import dataclass, field
from typing import Any

from ..dissect import DissectedFrame, FrameStream
from ..exceptions import InvalidHandshake
from ..frames import Opcode, apply_mask, encode_header
from ..handshake import accept_key, generate_key
from ..http11 import HeadParser, Response
from ..uri import WebSocketURI
from .cases import Case
from .oracle import Expected, expect
from .rules import Rule, rule

__all__ = ["Target", "Verdict", "run_case", "Observed", "check_websocket", "resolve"]


@dataclass(frozen=True)
class Target:
    """The server under test.

    ``address`` is the socket address the host name was resolved to, once,
    when the run started (and checked to be loopback unless remote targets are
    allowed): every case connects to it, so a name that resolves elsewhere
    later (DNS rebinding) cannot move the run to another machine. The Host
    header and the TLS server name stay the URL's. ``stop_at`` is the run's
    time budget (a :func:`time.monotonic` value): no wait goes past it.
    """

    uri: WebSocketURI
    url: str
    timeout: float = 2.0
    echo: bool = False
    address: tuple[socket.AddressFamily, tuple[Any, ...]] | None = None
    stop_at: float | None = None

    def wait_until(self, seconds: float) -> float:
        """The monotonic time ``seconds`` from now, cut to the run's budget."""
        until = time.monotonic() + seconds
        return until if self.stop_at is None else min(until, self.stop_at)

    def connect(self) -> socket.socket:
        timeout = max(self.wait_until(self.timeout) - time.monotonic(), 0.001)
        if self.address is None:
            sock = socket.create_connection((self.uri.host, self.uri.port), timeout=timeout)
        else:
            family, sockaddr = self.address
            sock = socket.socket(family, socket.SOCK_STREAM)
            try:
                sock.settimeout(timeout)
                sock.connect(sockaddr)
            except BaseException:
                sock.close()
                raise
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self.uri.secure:
            context = ssl.create_default_context()
            sock = context.wrap_socket(sock, server_hostname=self.uri.host)
        return sock


def resolve(host: str, port: int) -> list[tuple[socket.AddressFamily, tuple[Any, ...]]]:
    """Every address ``host`` resolves to (raises :class:`OSError` if none)."""
    return [(info[0], info[4]) for info in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)]


def check_websocket(target: Target) -> str | None:
    """None if one valid opening handshake gets 101 with the right accept key; otherwise what went wrong."""
    try:
        conn = _Connection(target)
    except OSError as exc:
        return f"could not connect to {target.url}: {exc}"
    try:
        key = generate_key()
        response, _ = _handshake(conn, _valid_request(target, key))
        if response is None:
            return f"{target.url} closed the connection without answering a valid opening handshake"
        if response.status != 101:
            return (
                f"{target.url} does not speak WebSocket: a valid opening handshake got"
                f" HTTP {response.status} {response.reason}, not 101 Switching Protocols"
            )
        if response.headers.get("Sec-WebSocket-Accept") != accept_key(key):
            return f"{target.url} answered 101 with a wrong Sec-WebSocket-Accept (§4.2.2)"
        conn.send(_masked(Opcode.CLOSE, (1000).to_bytes(2, "big")))
        return None
    except TimeoutError:
        return f"{target.url} did not answer a valid opening handshake within {target.timeout:g} s"
    except (InvalidHandshake, ssl.SSLError, OSError) as exc:
        return f"the opening handshake with {target.url} failed: {exc}"
    finally:
        conn.close()


@dataclass
class Observed:
    """What the server did: its handshake answer, its frames, whether it closed TCP."""

    status: int | None = None
    frames: list[DissectedFrame] = field(default_factory=list)
    messages: list[str | bytes] = field(default_factory=list)
    close: tuple[int, str] | None = None
    probe_answered: bool = False
    tcp_closed: bool = False
    server_error: str | None = None
    """A rule the server's own frames broke."""

    def summary(self) -> str:
        parts = []
        if self.close is not None:
            parts.append(f"close frame {self.close[0]}" + (f" {self.close[1]!r}" if self.close[1] else ""))
        else:
            parts.append("no close frame")
        if self.messages:
            parts.append(f"{len(self.messages)} message(s) back")
        if self.probe_answered:
            parts.append("answered the probe ping")
        parts.append("TCP closed" if self.tcp_closed else "TCP still open")
        return ", ".join(parts)


@dataclass(frozen=True)
class Verdict:
    """``failure`` is None when the server did what the rule requires; otherwise it says what went wrong."""

    rule: Rule
    expected: Expected | None
    observed: Observed
    failure: str | None
    setup: bool = False
    """The failure came before the case ran: connecting or the (valid) opening handshake."""


_PROBE = b"rawws-fuzz-probe"


def _masked(opcode: int, payload: bytes) -> bytes:
    key = os.urandom(4)
    return encode_header(0x80 | opcode, len(payload), key) + apply_mask(payload, key)


class _Connection:
    """A socket with a deadline: every read waits at most until it."""

    def __init__(self, target: Target) -> None:
        self.target = target
        self.deadline = target.wait_until(target.timeout)
        self.sock = target.connect()
        self.eof = False

    def recv(self) -> bytes:
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError
        self.sock.settimeout(remaining)
        try:
            data = self.sock.recv(65536)
        except ConnectionResetError:
            data = b""
        if not data:
            self.eof = True
        return data

    def send(self, data: bytes) -> bool:
        """False if the server has already closed (a broken pipe or reset is the server's answer)."""
        try:
            self.sock.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            return False
        except ssl.SSLError:
            return False
        return True

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


def _handshake(conn: _Connection, request: bytes) -> tuple[Response | None, bytes]:
    parser = HeadParser("response")
    conn.send(request)
    while True:
        data = conn.recv()
        if not data:
            return None, b""
        head = parser.feed(data)
        if head is not None:
            assert isinstance(head, Response)
            return head, parser.remainder


def _valid_request(target: Target, key: str) -> bytes:
    uri = target.uri
    lines = [
        f"GET {uri.resource_name} HTTP/1.1",
        f"Host: {uri.host_header}",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Key: {key}",
        "Sec-WebSocket-Version: 13",
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


SETUP_ATTEMPTS = 3


def run_case(target: Target, case: Case) -> Verdict:
    """Connect, run ``case``, and judge the server's behaviour against the oracle.

    A failure to connect or to finish a valid handshake may be the machine's
    (a busy loopback, a full accept queue) rather than the rule's: it is tried
    again, up to :data:`SETUP_ATTEMPTS` times, before it is reported.
    """
    for attempt in range(SETUP_ATTEMPTS):
        verdict = _run_once(target, case)
        if not verdict.setup or target.wait_until(1) <= time.monotonic() + 0.1 * (attempt + 1):
            break  # done, or no time left in the budget to try again
        time.sleep(0.1 * (attempt + 1))
    return verdict


def _run_once(target: Target, case: Case) -> Verdict:
    the_rule = rule(case.rule)
    observed = Observed()
    try:
        conn = _Connection(target)
    except OSError as exc:
        return Verdict(the_rule, None, observed, f"could not connect: {exc}", setup=True)
    try:
        if case.request is not None:
            return _run_handshake_case(conn, the_rule, case, observed)
        return _run_frames_case(conn, the_rule, case, observed)
    except TimeoutError:
        return Verdict(the_rule, None, observed, f"the handshake did not finish within {target.timeout} s", setup=True)
    except (InvalidHandshake, ssl.SSLError, OSError) as exc:
        return Verdict(the_rule, None, observed, f"the handshake failed: {exc}", setup=True)
    finally:
        conn.close()


def _run_handshake_case(conn: _Connection, the_rule: Rule, case: Case, observed: Observed) -> Verdict:
    assert case.request is not None
    response, _ = _handshake(conn, case.request)
    if response is None:
        observed.tcp_closed = True
        return Verdict(the_rule, None, observed, None)  # closing the connection refuses the request too
    observed.status = response.status
    if response.status == 101:
        return Verdict(the_rule, None, observed, "the server accepted the request (101 Switching Protocols)")
    if the_rule.id == "handshake-version" and "Sec-WebSocket-Version" not in response.headers:
        failure = f"refused with {response.status} but without a Sec-WebSocket-Version header naming its versions"
        return Verdict(the_rule, None, observed, failure)
    return Verdict(the_rule, None, observed, None)


def _run_frames_case(conn: _Connection, the_rule: Rule, case: Case, observed: Observed) -> Verdict:
    expected = expect(case)
    key = generate_key()
    response, leftover = _handshake(conn, _valid_request(conn.target, key))
    if response is None or response.status != 101:
        status = "no response" if response is None else f"HTTP {response.status}"
        return Verdict(the_rule, expected, observed, f"a valid handshake was refused ({status})", setup=True)
    observed.status = 101
    if response.headers.get("Sec-WebSocket-Accept") != accept_key(key):
        accept = rule("handshake-accept")
        got = response.headers.get("Sec-WebSocket-Accept")
        return Verdict(accept, expected, observed, f"Sec-WebSocket-Accept is {got!r}, expected {accept_key(key)!r}")
    conn.deadline = conn.target.wait_until(conn.target.timeout)
    sent_all = True
    for chunk in case.chunks:
        if not conn.send(chunk):
            sent_all = False
            break
    if sent_all:
        conn.send(_masked(Opcode.PING, _PROBE))
    _observe(conn, leftover, expected, observed)
    return Verdict(the_rule, expected, observed, _judge(the_rule, expected, observed, conn.target))


def _observe(conn: _Connection, data: bytes, expected: Expected, observed: Observed) -> None:
    """Read the server's frames until what ``expected`` needs is settled, TCP ends, or the deadline passes."""
    stream = FrameStream("server", check_text=False)  # invalid text from the server is judged below
    assembler = _Assembler()
    grace_started = False
    want_echo = conn.target.echo and expected.outcome == "open"
    try:
        while True:
            for frame in stream.feed(data):
                observed.frames.append(frame)
                _take(frame, assembler, observed, conn)
            if assembler.invalid_text and observed.server_error is None:
                observed.server_error = "§8.1: it sent a text message that is not valid UTF-8"
            if stream.error is not None:
                observed.server_error = str(stream.error)
                return
            if conn.eof:
                observed.tcp_closed = True
                return
            if observed.probe_answered and expected.outcome != "open" and not grace_started:
                # The server read past the broken input. It may still refuse it a moment later (a server that
                # answers pings in its I/O layer and checks UTF-8 when the application reads): a short grace.
                grace_started = True
                conn.deadline = min(conn.deadline, time.monotonic() + conn.target.timeout / 8)
            if expected.outcome == "open" and observed.probe_answered:
                if not want_echo or len(observed.messages) >= len(expected.messages):
                    return
            data = conn.recv()
    except TimeoutError:
        return
    finally:
        if not observed.tcp_closed and observed.close is None:
            conn.send(_masked(Opcode.CLOSE, (1000).to_bytes(2, "big")))  # leave politely


class _Assembler:
    """Joins the server's data frames into messages."""

    def __init__(self) -> None:
        self.opcode = 0
        self.pieces: list[bytes] = []
        self.invalid_text = 0  # text messages from the server that are not UTF-8

    def add(self, frame: DissectedFrame) -> str | bytes | None:
        if frame.opcode != Opcode.CONT:
            self.opcode = frame.opcode
        self.pieces.append(frame.payload)
        if not frame.fin:
            return None
        data = b"".join(self.pieces)
        self.pieces = []
        if self.opcode != Opcode.TEXT:
            return data
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            self.invalid_text += 1
            return data.decode("utf-8", "replace")


def _take(frame: DissectedFrame, assembler: _Assembler, observed: Observed, conn: _Connection) -> None:
    if frame.opcode == Opcode.PONG and frame.payload == _PROBE:
        observed.probe_answered = True
    elif frame.opcode == Opcode.PING:
        conn.send(_masked(Opcode.PONG, frame.payload))
    elif frame.opcode == Opcode.CLOSE and frame.close is not None:
        observed.close = frame.close
        conn.deadline = conn.target.wait_until(conn.target.timeout)  # from here, the time to close TCP
        code = frame.close[0]
        conn.send(_masked(Opcode.CLOSE, b"" if code == 1005 else code.to_bytes(2, "big")))  # §5.5.1: answer it
    elif frame.opcode < 8:
        message = assembler.add(frame)
        if message is not None:
            observed.messages.append(message)


def _judge(the_rule: Rule, expected: Expected, observed: Observed, target: Target) -> str | None:
    failure = _judge_outcome(the_rule, expected, observed, target)
    if observed.server_error is None:
        return failure
    own = f"the server's own frames broke a rule: {observed.server_error}"
    return own if failure is None else f"{failure}; and {own}"


def _judge_outcome(the_rule: Rule, expected: Expected, observed: Observed, target: Target) -> str | None:
    timeout = f"{target.timeout:g} s"
    if expected.outcome == "open":
        if observed.close is not None or observed.tcp_closed:
            return f"the server closed a valid connection ({observed.summary()})"
        if not observed.probe_answered:
            return f"the server did not answer a ping within {timeout} (§5.5.2)"
        if target.echo:
            return _compare_echo(expected.messages, observed.messages, timeout)
        return None
    if expected.outcome == "close":
        if observed.close is None:
            return f"no close frame answered the client's close within {timeout} ({observed.summary()})"
        if target.echo and the_rule.id == "data-after-close" and len(observed.messages) > len(expected.messages):
            return f"data sent after the close frame was delivered and echoed ({observed.summary()})"
        if not observed.tcp_closed:
            return f"the server did not close TCP within {timeout} of the closing handshake (§7.1.1)"
        return None
    # "fail": the right close code, then TCP closed.
    if observed.probe_answered and observed.close is None:
        grace = f"{target.timeout / 8:g} s"
        return (
            f"the server accepted it and stayed open: it answered the probe ping and had not closed {grace} later"
            f" ({observed.summary()}); expected close {expected.close_code}"
        )
    if observed.close is None:
        how = "closed TCP without a close frame" if observed.tcp_closed else f"did nothing within {timeout}"
        return f"the server {how}; expected a close frame with {expected.close_code} (§7.1.7)"
    if observed.close[0] != expected.close_code:
        return f"the server closed with {observed.close[0]}, expected {expected.close_code} ({observed.summary()})"
    if not observed.tcp_closed:
        return f"the server sent close {expected.close_code} but did not close TCP within {timeout}"
    return None


def _compare_echo(sent: tuple[str | bytes, ...], got: list[str | bytes], timeout: str) -> str | None:
    for index, (message, echoed) in enumerate(zip(sent, got, strict=False), 1):
        if message != echoed:
            return f"--echo: message {index} came back changed: sent {_short(message)}, got {_short(echoed)}"
    if len(got) < len(sent):
        return f"--echo: {len(sent) - len(got)} of {len(sent)} message(s) did not come back within {timeout}"
    if len(got) > len(sent):
        return f"--echo: {len(got) - len(sent)} message(s) more came back than were sent"
    return None


def _short(message: str | bytes) -> str:
    kind = "text" if isinstance(message, str) else "binary"
    shown = repr(message[:30]) + ("…" if len(message) > 30 else "")
    return f"{kind} {shown} ({len(message)})"
