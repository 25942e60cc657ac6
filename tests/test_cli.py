"""``python -m rawws serve --echo`` and ``python -m rawws connect``, as a user runs them."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator

import pytest

from rawws.sync.client import connect
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
