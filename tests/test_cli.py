"""``python -m rawws serve --echo`` and ``python -m rawws connect``, as a user runs them."""

from __future__ import annotations

import re
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import rawws
from rawws.sync.client import connect
from rawws.sync.server import Server
from tests.conftest import scaled


@pytest.fixture
def echo_server() -> Iterator[tuple[subprocess.Popen[str], int]]:
    command = [sys.executable, "-m", "rawws", "serve", "--echo", "--port", "0", "--max-size", "32MiB"]
    # --ping-interval 0: no keepalive ping to queue behind tens of MiB of echo on a busy machine.
    process = subprocess.Popen(
        [*command, "--ping-interval", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    match = re.search(r"ws://127\.0\.0\.1:(\d+)/", line)
    assert match, line
    yield process, int(match.group(1))
    process.terminate()
    process.wait(scaled(10))


def test_echo_server_echoes_with_the_same_type(echo_server: tuple[subprocess.Popen[str], int]) -> None:
    _, port = echo_server
    with connect(f"ws://127.0.0.1:{port}/", max_size=32 * 2**20, ping_interval=None) as ws:
        ws.send("text")
        assert ws.recv(timeout=scaled(5)) == "text"
        ws.send(b"bin")
        assert ws.recv(timeout=scaled(5)) == b"bin"
        big = b"\x5a" * (20 * 2**20)  # tens of MiB when --max-size allows
        ws.send(big)
        assert ws.recv(timeout=scaled(60)) == big


def test_interactive_client(echo_server: tuple[subprocess.Popen[str], int]) -> None:
    _, port = echo_server
    client = subprocess.Popen(
        [sys.executable, "-m", "rawws", "connect", f"ws://127.0.0.1:{port}/", "--trace"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert client.stdin is not None and client.stdout is not None
    try:
        assert client.stdout.readline().startswith("connected to")
        for line in ("first line", "second line"):
            client.stdin.write(line + "\n")
            client.stdin.flush()
            assert client.stdout.readline() == f"< {line}\n"
        client.stdin.close()  # Ctrl-D
        assert client.stdout.readline() == "connection closed: 1000\n"
        assert client.wait(scaled(10)) == 0
    finally:
        client.kill()
    assert client.stderr is not None
    trace = client.stderr.read()
    # --trace shows every frame in and out, in the one-line form of `python -m rawws decode`.
    assert re.search(r"> TEXT fin=1 len=10 'first line'", trace)
    assert re.search(r"< TEXT fin=1 len=11 'second line'", trace)
    assert re.search(r"> CLOSE fin=1 len=2 code=1000", trace)


def test_connect_to_nothing_fails_cleanly() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "rawws", "connect", "ws://127.0.0.1:1/"],
        input="",
        capture_output=True,
        text=True,
        timeout=scaled(30),
    )
    assert result.returncode == 1
    assert "could not connect" in result.stderr
    assert "Traceback" not in result.stderr


def test_invalid_uri_is_a_clear_error() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "rawws", "connect", "http://nope"],
        input="",
        capture_output=True,
        text=True,
        timeout=scaled(30),
    )
    assert result.returncode == 1 and "ws:// or wss://" in result.stderr


# --- issue 13, items 13 and 14: the CLI as a tool --------------------------------------------------


def run_cli(*arguments: str, stdin: str = "", timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "rawws", *arguments],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=scaled(timeout),
    )


def test_piped_stdin_prints_the_reply_before_closing(start_server: Callable[..., Server]) -> None:
    def slow_echo(ws: Any) -> None:  # a server that takes a moment to answer, as real ones do
        for message in ws:
            time.sleep(0.3)
            ws.send(message)

    server = start_server(slow_echo)
    start = time.monotonic()
    result = run_cli("connect", f"ws://127.0.0.1:{server.port}/", stdin="hi\nthere\n")
    assert result.stdout.splitlines()[1:] == ["< hi", "< there", "connection closed: 1000"], result.stdout
    assert result.returncode == 0 and not result.stderr
    assert time.monotonic() - start < scaled(10)  # --wait (1 s) of quiet after stdin ended, then the close


def test_the_server_going_away_is_noticed_at_once_and_is_an_error(
    echo_server: tuple[subprocess.Popen[str], int],
) -> None:
    server, port = echo_server
    client = subprocess.Popen(
        [sys.executable, "-m", "rawws", "connect", f"ws://127.0.0.1:{port}/"],
        stdin=subprocess.PIPE,  # left open: the user has typed nothing
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert client.stdout is not None
    try:
        assert client.stdout.readline().startswith("connected to")
        server.kill()  # no close frame: 1006
        server.wait(scaled(10))
        assert client.wait(scaled(10)) == 1  # without waiting for another line of input
        assert client.stdout.read().startswith("connection closed: 1006 abnormal closure")
    finally:
        client.kill()
        client.wait(scaled(10))


def test_a_close_with_an_error_code_is_printed_and_exits_non_zero(start_server: Callable[..., Server]) -> None:
    def handler(ws: Any) -> None:
        ws.recv()
        ws.close(4000, "go away")

    server = start_server(handler)
    result = run_cli("connect", f"ws://127.0.0.1:{server.port}/", stdin="hello\n")
    assert result.stdout.splitlines()[-1] == "connection closed: 4000 go away"
    assert result.returncode == 1


def test_headers_are_sent_with_the_request(start_server: Callable[..., Server]) -> None:
    seen: list[Any] = []

    def record(pending: Any, request: Any) -> None:
        seen.append(request.headers)

    server = start_server(lambda ws: None, process_request=record)
    result = run_cli(
        "connect",
        f"ws://127.0.0.1:{server.port}/",
        "--header",
        "Authorization: Bearer abc",
        "--header",
        "X-Trace:1",
    )
    assert result.returncode == 0, result.stderr
    assert seen[0]["authorization"] == "Bearer abc" and seen[0]["x-trace"] == "1"
    bad = run_cli("connect", f"ws://127.0.0.1:{server.port}/", "--header", "no colon here")
    assert bad.returncode == 2 and "expected NAME:VALUE" in bad.stderr and "Traceback" not in bad.stderr


def test_version() -> None:
    result = run_cli("--version")
    assert result.returncode == 0 and result.stdout.strip() == f"rawws {rawws.__version__}"


@pytest.mark.parametrize("command", [[], ["serve"], ["demo"], ["connect"]])
def test_every_help_shows_every_default(command: list[str]) -> None:
    result = run_cli(*command, "--help")
    assert result.returncode == 0
    options = result.stdout.split("options:", 1)[1]
    entries = re.split(r"\n  (?=-)", options)
    for entry in entries:
        entry = " ".join(entry.split())
        if not entry or entry.startswith(("-h, --help", "--version")):
            continue
        assert "(default: " in entry, entry


def test_serve_compression_none_turns_permessage_deflate_off() -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "rawws", "serve", "--echo", "--port", "0", "--compression", "none"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    try:
        match = re.search(r"ws://127\.0\.0\.1:(\d+)/", process.stdout.readline())
        assert match
        with connect(f"ws://127.0.0.1:{match.group(1)}/", ping_interval=None) as ws:  # offers deflate
            assert "Sec-WebSocket-Extensions" not in ws.response.headers
            ws.send("x" * 1000)
            assert ws.recv(timeout=scaled(5)) == "x" * 1000
    finally:
        process.terminate()
        process.wait(scaled(10))
    assert "--compression {deflate,none}" in run_cli("serve", "--help").stdout


@pytest.mark.parametrize(
    ("arguments", "words"),
    [
        (["serve", "--echo", "--max-size", "0"], "at least 1 byte, not '0'; use 'none' for no limit"),
        (["serve", "--echo", "--max-size", "lots"], "not a size: 'lots'"),
        (["serve", "--echo", "--compression", "gzip"], "invalid choice: 'gzip'"),
        (
            ["serve", "--echo", "--port", "0", "--certfile", "/no/such/cert.pem"],
            "--certfile /no/such/cert.pem: no such",
        ),
        (["demo", "--port", "0", "--certfile", "/no/such/cert.pem"], "--certfile /no/such/cert.pem: no such file"),
        (["serve", "--echo", "--port", "99999"], "argument --port: a port is 0 to 65535 (0: any free port), not 99999"),
        (["serve", "--echo", "--port", "-5"], "argument --port: a port is 0 to 65535 (0: any free port), not -5"),
        (["demo", "--port", "99999"], "argument --port: a port is 0 to 65535"),
        (["demo", "--port", "eighty"], "argument --port: not a port number: 'eighty'"),
        (["connect", "ws://127.0.0.1:1/", "--wait", "-1"], "argument --wait: a number of seconds, 0 or more, not '-1'"),
        (["connect", "ws://127.0.0.1:1/", "--insecure"], "--insecure only applies to wss:// URLs"),
    ],
)
def test_cli_errors_are_one_clear_line(arguments: list[str], words: str) -> None:
    result = run_cli(*arguments, timeout=30)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr and "could not connect" not in result.stderr
    assert "ssl=" not in result.stderr
    assert words in result.stderr.strip().splitlines()[-1]


def test_a_port_in_use_is_one_clear_line() -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        result = run_cli("serve", "--echo", "--port", str(taken.getsockname()[1]))
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [result.stderr.strip()]  # one line
    assert "Address already in use" in result.stderr


def test_a_refused_handshake_shows_the_servers_reason(start_server: Callable[..., Server]) -> None:
    server = start_server(lambda ws: None, origins=["https://app.example"])
    result = run_cli("connect", f"ws://127.0.0.1:{server.port}/", "--origin", "https://evil.example", stdin="")
    assert result.returncode == 1
    line = result.stderr.strip()
    assert "403 Forbidden" in line and "(the server says: origin 'https://evil.example' is not allowed" in line, line
    assert len(result.stderr.strip().splitlines()) == 1
