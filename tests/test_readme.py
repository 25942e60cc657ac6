"""Every code block of the README runs, so the README cannot drift from the code (issue 13, item 12).

- ``>>>`` sessions: run as doctests by ``tests/core/test_readme_repl.py``.
- Every other ```` ```python ```` block: run here as a program, on loopback.
  The README's port, 8765, is replaced by a free one; a block that connects
  gets the peer it needs started first (an echo server, or the pub/sub
  server for ``PubSubClient``); a block that serves forever runs in a thread,
  is connected to, and is shut down; every server and client a block leaves
  behind is closed; a ``test_*`` function it defines (the Hypothesis example)
  is called. ``handler`` is predefined as an echo handler for the blocks that
  use one without defining it.
- ```` ```sh ```` blocks: each ``python -m rawws ...`` command must parse with
  the real argument parser (the options it names exist).

No block is skipped: a new block that cannot run this way fails here.
"""

from __future__ import annotations

import pathlib
import re
import shlex
import socket
import threading
import time
from typing import Any

import pytest

from rawws.__main__ import build_parser
from rawws.sync.client import connect
from rawws.sync.server import Server, serve
from tests.conftest import echo, scaled

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"
TEXT = README.read_text()
PYTHON_BLOCKS = re.findall(r"```python\n(.*?)```", TEXT, re.S)
PROGRAMS = [block for block in PYTHON_BLOCKS if not block.startswith(">>>")]
SHELL_BLOCKS = re.findall(r"```sh\n(.*?)```", TEXT, re.S)
README_PORT = "8765"


def free_port() -> int:
    with socket.create_server(("127.0.0.1", 0)) as probe:
        port: int = probe.getsockname()[1]
    return port


def wait_for_port(port: int) -> None:
    end = time.monotonic() + scaled(5)
    while time.monotonic() < end:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.02)
    pytest.fail(f"nothing listens on {port}")


def start_peer(block: str, port: int) -> Server | None:
    """The server a client block talks to, on ``port``; None if the block serves for itself."""
    if re.search(r"\bserve(_broker)?\(", block) or README_PORT not in block:
        return None
    if "PubSubClient" in block:
        from rawws.pubsub.server import serve_broker

        return serve_broker("127.0.0.1", port, ping_interval=None).start()
    return serve(echo, "127.0.0.1", port, ping_interval=None).start()


def close_what_is_left(namespace: dict[str, Any]) -> None:
    for value in list(namespace.values()):
        if isinstance(value, Server):
            value.shutdown(timeout=scaled(5))
        elif hasattr(value, "close") and type(value).__module__.startswith("rawws."):
            value.close()


def test_the_readme_has_code_blocks_of_each_kind() -> None:
    sessions = [block for block in PYTHON_BLOCKS if block.startswith(">>>")]
    assert len(sessions) >= 2 and len(PROGRAMS) >= 8 and len(SHELL_BLOCKS) >= 3
    assert len(sessions) + len(PROGRAMS) == len(PYTHON_BLOCKS)  # every Python block is run by one of the two


@pytest.mark.parametrize("block", PROGRAMS, ids=[block.splitlines()[0][:40] for block in PROGRAMS])
def test_a_readme_program_runs(block: str) -> None:
    port = free_port()
    source = block.replace(README_PORT, str(port))
    filename = f"README.md, the block {block.splitlines()[0]!r}"
    namespace: dict[str, Any] = {"__name__": "readme", "handler": echo}
    peer = start_peer(block, port)
    try:
        if "serve_forever()" in block:
            errors: list[BaseException] = []

            def run() -> None:
                try:
                    exec(compile(source, filename, "exec"), namespace)
                except BaseException as exc:  # noqa: BLE001 - reported below
                    errors.append(exc)

            thread = threading.Thread(target=run, daemon=True)
            thread.start()
            wait_for_port(port)
            with connect(f"ws://127.0.0.1:{port}/", ping_interval=None) as ws:
                assert ws.response.status == 101
            assert isinstance(namespace.get("server"), Server)
            namespace["server"].shutdown(timeout=scaled(5))
            thread.join(scaled(10))
            assert not thread.is_alive() and not errors, errors
        else:
            start = time.monotonic()
            exec(compile(source, filename, "exec"), namespace)
            for name, value in list(namespace.items()):
                if name.startswith("test_") and callable(value):
                    value()
            close_what_is_left(namespace)
            assert time.monotonic() - start < scaled(5), "a README example should not keep its reader waiting"
    finally:
        close_what_is_left(namespace)
        if peer is not None:
            peer.shutdown(timeout=scaled(5))


COMMANDS = [
    shlex.split(command.split("#", 1)[0])[3:]
    for block in SHELL_BLOCKS
    for line in block.splitlines()
    for command in line.split("&&")
    if command.strip().startswith("python -m rawws")
]


def test_the_readme_shell_blocks_have_rawws_commands() -> None:
    assert len(COMMANDS) >= 4


@pytest.mark.parametrize("arguments", COMMANDS, ids=[" ".join(c) or "demo" for c in COMMANDS])
def test_a_readme_command_parses(arguments: list[str]) -> None:
    if not arguments or arguments[0].startswith("-"):
        arguments = ["demo", *arguments]  # what main() does for a bare `python -m rawws`
    args = build_parser().parse_args(arguments)
    assert callable(args.func)
