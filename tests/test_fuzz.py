"""``python -m rawws fuzz``: silent on rawws's own server, finds each planted bug, and its cases mean what they say.

The fuzzer runs as a command against servers in other threads or processes,
over loopback sockets: rawws's echo server (``tests/procserver.py``), the
``websockets`` package's, and three deliberately broken servers
(``tests/brokenservers.py``), each breaking one rule.
"""

from __future__ import annotations

import http.server
import json
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.sync.server import serve as ws_serve

from rawws.dissect import dissect
from rawws.fuzz.cases import Case, load
from rawws.fuzz.cli import INSTALL_HINT
from rawws.fuzz.generate import strategy_for
from rawws.fuzz.oracle import expect
from rawws.fuzz.rules import RULES, select
from rawws.handshake import accept_key
from tests.brokenservers import BrokenServer
from tests.conftest import scaled
from tests.procserver import ECHO, ServerProcess

ROOT = Path(__file__).resolve().parent.parent
TIMEOUT = ("--timeout", f"{scaled(2):g}")  # the fuzzer's wait for the server, stretched on a busy machine


def fuzz(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "rawws", "fuzz", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=scaled(timeout),
    )


def failed_rules(output: str) -> list[str]:
    return [line.split()[1] for line in output.splitlines() if line.startswith("FAIL ")]


def frames_in(case: Case) -> int:
    """How many frames the case holds, counting one cut short or refused from its header."""
    frames, error = dissect(case.data)
    end = frames[-1].offset + frames[-1].size if frames else 0
    return len(frames) + (1 if error is not None and error.offset >= end else 0)


@pytest.fixture(scope="module")
def rawws_echo() -> Iterator[int]:
    with ServerProcess(ECHO, ping_interval=None) as server:
        yield server.port


# --- the cases mean what they say (sans-I/O) -------------------------------------------


@pytest.mark.parametrize("rule", [r for r in RULES if not r.id.startswith("handshake")], ids=lambda r: r.id)
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(data=st.data())
def test_every_generated_case_is_what_its_rule_says_for_rawws_protocol(rule, data) -> None:  # type: ignore[no-untyped-def]
    case = data.draw(strategy_for(rule.id, "127.0.0.1", "/"))
    expected = expect(case)
    if rule.close_code is not None:
        assert (expected.outcome, expected.close_code) == ("fail", rule.close_code), expected
    elif rule.id == "valid-messages":
        assert expected.outcome == "open" and expected.messages
    else:
        assert expected.outcome == "close"


def test_rule_groups_select_their_rules() -> None:
    assert [r.id for r in select(["close"])] == [
        "bad-close-code",
        "close-one-byte",
        "bad-close-reason",
        "data-after-close",
    ]
    assert [r.id for r in select(["unmasked-frame", "utf8"])] == ["unmasked-frame", "invalid-utf8"]
    with pytest.raises(ValueError, match="unknown rule group 'nope'"):
        select(["nope"])


# --- against real servers --------------------------------------------------------------


def test_rawws_own_server_breaks_no_rule(rawws_echo: int, tmp_path: Path) -> None:
    result = fuzz(
        f"ws://127.0.0.1:{rawws_echo}/", "--echo", "--max-examples", "15", "--seed", "1", "--save-dir", str(tmp_path)
    )
    print(result.stdout)
    assert result.returncode == 0, result.stdout + result.stderr
    assert failed_rules(result.stdout) == []
    summary = result.stdout.splitlines()[-1]
    assert summary.startswith(f"{len(select(None))} rules, ") and summary.endswith(": no failures")
    assert int(summary.split()[2]) >= 200  # examples run
    assert list(tmp_path.iterdir()) == []  # nothing to replay


@pytest.mark.parametrize(
    ("bug", "group", "rule"),
    [
        ("accepts_unmasked", "framing", "unmasked-frame"),
        ("no_utf8_check", "utf8", "invalid-utf8"),
        ("ignores_close_codes", "close", "bad-close-code"),
    ],
)
def test_each_planted_bug_is_found_and_shrunk_to_a_frame_or_two(
    bug: str, group: str, rule: str, tmp_path: Path, rawws_echo: int
) -> None:
    with BrokenServer(bug) as server:
        url = f"ws://127.0.0.1:{server.port}/"
        args = (
            "--echo",
            "--timeout",
            f"{scaled(1):g}",
            "--max-examples",
            "20",
            "--seed",
            "3",
            "--save-dir",
            str(tmp_path),
        )
        result = fuzz(url, "--only", group, *args)
        print(result.stdout)
        assert result.returncode == 1
        assert failed_rules(result.stdout) == [rule]
        saved = tmp_path / f"{rule}.json"
        case = load(str(saved))
        assert case.rule == rule and 1 <= frames_in(case) <= 2, case
        assert json.loads(saved.read_text())["url"] == url
        assert f"replay: python -m rawws fuzz {url} --replay {saved}" in result.stdout
        # The saved case replays: it fails against the broken server and passes against rawws.
        again = fuzz(url, "--replay", str(saved), "--timeout", f"{scaled(1):g}")
        assert again.returncode == 1 and "FAIL: " in again.stdout, again.stdout
    fine = fuzz(f"ws://127.0.0.1:{rawws_echo}/", "--replay", str(saved), *TIMEOUT)
    assert fine.returncode == 0 and "ok: the server did what the rule requires" in fine.stdout, fine.stdout


def _echo(ws) -> None:  # type: ignore[no-untyped-def]
    for message in ws:
        ws.send(message)


def test_the_websockets_package_server(tmp_path: Path) -> None:
    """What the fuzzer reports against ``websockets``' own server (printed; run with -s to see it).

    websockets 17.4 refuses a bad Sec-WebSocket-Version with 400 and no
    Sec-WebSocket-Version header (§4.4 asks for the header), and closes a 64-bit
    length with its top bit set with 1009 rather than 1002; everything else conforms.
    The test holds the valid groups to no failure, and any failure to those two.
    """
    with ws_serve(_echo, "127.0.0.1", 0, compression=None) as server:
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        port = server.socket.getsockname()[1]
        args = ("--echo", "--max-examples", "10", "--seed", "1", *TIMEOUT, "--save-dir", str(tmp_path))
        result = fuzz(f"ws://127.0.0.1:{port}/", *args)
        server.shutdown()
    print(result.stdout)
    assert result.returncode in (0, 1) and "rules, " in result.stdout.splitlines()[-1], result.stderr
    table = {line.split()[0]: line for line in result.stdout.splitlines() if line.startswith(("valid-", "handshake-"))}
    assert table["valid-messages"].endswith(" ok") and table["valid-close"].endswith(" ok")
    assert set(failed_rules(result.stdout)) <= {"handshake-version", "length-msb"}


# --- the command line ------------------------------------------------------------------


def test_without_hypothesis_the_command_says_how_to_install_it() -> None:
    code = "import sys; sys.modules['hypothesis'] = None; from rawws.__main__ import main; sys.exit(main(sys.argv[1:]))"
    result = subprocess.run(
        [sys.executable, "-c", code, "fuzz", "ws://127.0.0.1:1/"], capture_output=True, text=True, cwd=ROOT, timeout=60
    )
    assert (result.returncode, result.stderr, result.stdout) == (2, INSTALL_HINT + "\n", "")


def test_other_machines_are_refused_unless_allowed() -> None:
    result = fuzz("ws://192.0.2.1/")
    assert result.returncode == 2
    assert result.stderr == "fuzz: 192.0.2.1 is not a loopback address: fuzzing other machines needs --allow-remote\n"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--only", "nope"], "unknown rule group 'nope'"),
        (["--max-examples", "0"], "--max-examples is between 1 and 10000"),
        (["--timeout", "0"], "--timeout is between 0 and 60 seconds"),
        (["--replay", "/nonexistent.json"], "cannot replay /nonexistent.json"),
    ],
)
def test_bad_options_are_clear_errors(args: list[str], message: str) -> None:
    result = fuzz("ws://127.0.0.1:1/", *args)
    assert result.returncode == 2 and message in result.stderr, result.stderr


def test_a_server_that_is_not_there_is_one_clear_line_and_nothing_saved(tmp_path: Path) -> None:
    """A closed port used to take 37 s and print (and save) 19 "could not connect" failures."""
    started = time.monotonic()
    result = fuzz("ws://127.0.0.1:1/", "--max-examples", "1", "--save-dir", str(tmp_path))
    assert (result.returncode, result.stdout) == (2, ""), result.stdout + result.stderr
    assert result.stderr.startswith("fuzz: could not connect to ws://127.0.0.1:1/: ")
    assert result.stderr.endswith("; nothing was fuzzed\n") and result.stderr.count("\n") == 1
    assert not list(tmp_path.iterdir())
    assert time.monotonic() - started < scaled(10)


def test_a_plain_http_server_is_not_fuzzed(tmp_path: Path) -> None:
    """An HTTP server that does not upgrade used to get "ok" for every handshake rule ("refused with 200")."""
    server = http.server.HTTPServer(("127.0.0.1", 0), http.server.SimpleHTTPRequestHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        result = fuzz(f"ws://127.0.0.1:{server.server_port}/", "--max-examples", "1", "--save-dir", str(tmp_path))
    finally:
        server.shutdown()
        server.server_close()
    assert (result.returncode, result.stdout) == (2, ""), result.stdout + result.stderr
    assert "does not speak WebSocket: a valid opening handshake got HTTP 200" in result.stderr
    assert result.stderr.count("\n") == 1 and not list(tmp_path.iterdir())


def _silent_websocket_server() -> tuple[socket.socket, threading.Event]:
    """Accepts, completes valid opening handshakes, then reads and never answers: every case waits it out."""
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve_one(conn: socket.socket) -> None:
        with conn:
            conn.settimeout(scaled(30))
            head = b""
            try:
                while b"\r\n\r\n" not in head:
                    data = conn.recv(4096)
                    if not data:
                        return
                    head += data
                key = next(
                    line.split(b":", 1)[1].strip().decode()
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"sec-websocket-key:")
                )
                conn.sendall(
                    b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                    + f"Sec-WebSocket-Accept: {accept_key(key)}\r\n\r\n".encode()
                )
                while not stop.is_set() and conn.recv(65536):
                    pass
            except (OSError, StopIteration):
                return

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=serve_one, args=(conn,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    return listener, stop


def test_max_time_is_the_whole_run(tmp_path: Path) -> None:
    """Against a server that never answers, ``--max-time 3`` with 2 s waits per case ends within 3 s."""
    listener, stop = _silent_websocket_server()
    try:
        url = f"ws://127.0.0.1:{listener.getsockname()[1]}/"
        result = fuzz(url, "--max-time", "3", "--timeout", "2", "--only", "framing", "--save-dir", str(tmp_path))
    finally:
        stop.set()
        listener.close()
    assert result.returncode == 1, result.stdout + result.stderr
    seconds = float(result.stdout.splitlines()[-1].split(" examples in ")[1].split(" s:")[0])
    assert seconds <= 3.3, result.stdout
    assert "not run (time budget reached)" in result.stdout or "(time budget reached)" in result.stdout


def test_the_host_is_resolved_once_and_every_case_connects_to_that_address(
    rawws_echo: int, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """DNS rebinding: a name that resolves to loopback for the check and elsewhere later stays on loopback."""
    from rawws.__main__ import main

    lookups: list[str] = []
    real_getaddrinfo = socket.getaddrinfo

    def rebinding(host: str, port: int, *args: Any, **kwargs: Any) -> Any:
        if host == "rebind.test":
            lookups.append(host)
            address = "127.0.0.1" if len(lookups) == 1 else "192.0.2.1"  # TEST-NET-1: never reached
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port))]
        return real_getaddrinfo(host, port, *args, **kwargs)

    connected: list[Any] = []
    real_connect = socket.socket.connect

    def recording_connect(self: socket.socket, address: Any) -> None:
        connected.append(address)
        if address[0] != "127.0.0.1":
            raise ConnectionRefusedError("the test stops a connection to a rebound address")
        real_connect(self, address)

    monkeypatch.setattr(socket, "getaddrinfo", rebinding)
    monkeypatch.setattr(socket.socket, "connect", recording_connect)
    url = f"ws://rebind.test:{rawws_echo}/"
    args = ["fuzz", url, "--only", "valid", "--max-examples", "3", "--max-time", "20", "--save-dir", str(tmp_path)]
    assert main([*args, *TIMEOUT]) == 0, capsys.readouterr()
    assert lookups == ["rebind.test"]
    assert len(connected) >= 4 and {address[0] for address in connected} == {"127.0.0.1"}
