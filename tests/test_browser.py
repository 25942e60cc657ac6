"""End to end in headless Chromium: two pages chat through `python -m rawws`, survive a restart;
a page from another origin is refused (cross-site WebSocket hijacking), a rebound name too.

Chromium is driven over the DevTools protocol with rawws's own client. In CI
(CI=true) a missing browser fails the test; elsewhere it skips.
"""

from __future__ import annotations

import http.server
import json
import os
import re
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from rawws import connect, send_message
from tests.cdp import Browser, Page, find_chromium
from tests.conftest import IN_CI, http_get, http_status_and_body, scaled
from tests.sync.test_origin_host import handshake

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def chromium() -> Iterator[Browser]:
    executable = find_chromium()
    if executable is None:
        if IN_CI:
            pytest.fail("Chromium is required in CI (apt-get install chromium)")
        pytest.skip("Chromium is not installed")
    browser = Browser(executable)
    yield browser
    browser.close()


def start_demo(port: int = 0, *flags: str) -> tuple[subprocess.Popen[str], int]:
    """``python -m rawws`` on ``port`` (0: one the system picks); the process and its port."""
    process = subprocess.Popen(
        [sys.executable, "-m", "rawws", "--port", str(port), *flags], stdout=subprocess.PIPE, text=True, cwd=ROOT
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    match = re.search(r"http://127\.0\.0\.1:(\d+)/", line)
    assert match and port in (0, int(match.group(1))), line
    return process, int(match.group(1))


def stop(process: subprocess.Popen[str]) -> None:
    process.terminate()
    process.wait(scaled(10))


def js_set(page: Page, element: str, value: str, event: str) -> None:
    page.evaluate(
        f"(() => {{ const e = document.getElementById({element!r}); e.value = {value!r};"
        f" e.dispatchEvent(new Event({event!r}, {{bubbles: true}})); }})()"
    )


def submit(page: Page, form: str) -> None:
    page.evaluate(f"document.getElementById({form!r}).requestSubmit()")


def text_of(element: str) -> str:
    return f"document.getElementById({element!r}).textContent"


def test_two_pages_chat_type_count_and_reconnect(chromium: Browser, tmp_path: Path) -> None:
    server, port = start_demo()
    try:
        url = f"http://127.0.0.1:{port}/"
        alice = chromium.new_page(url)
        bob = chromium.new_page(url, width=420, height=760)  # phone-sized
        for page, name in ((alice, "Alice"), (bob, "Bob")):
            page.wait_for("document.getElementById('status').dataset.state === 'online'")
            js_set(page, "name", name, "change")
            js_set(page, "room", "e2e", "input")
            submit(page, "room-form")
        for page in (alice, bob):
            page.wait_for(f"{text_of('count')} === '2'")  # the live room count

        # Typing indicator appears in the other tab, then clears itself. It shows for about two
        # seconds: an observer in Bob's page records it, however late a busy machine polls.
        bob.evaluate(
            "(() => { const e = document.getElementById('typing'); window.sawAliceTyping = false;"
            " new MutationObserver(() => {"
            " if (e.textContent.includes('Alice is typing')) window.sawAliceTyping = true;"
            " }).observe(e, {childList: true, characterData: true, subtree: true}); })()"
        )
        js_set(alice, "text", "Hel", "input")
        bob.wait_for("window.sawAliceTyping")
        bob.wait_for(f"{text_of('typing')} === ''", timeout=scaled(8))

        js_set(alice, "text", "Hello from Alice", "input")
        submit(alice, "composer")
        bob.wait_for(f"{text_of('messages')}.includes('Hello from Alice')")
        js_set(bob, "text", "Hi Alice! Bob here, on a phone-sized screen.", "input")
        submit(bob, "composer")
        alice.wait_for(f"{text_of('messages')}.includes('Bob here')")
        # "Mine" is decided by the sender the server stamped: Bob claiming to be Alice changes nothing.
        bob.evaluate(
            "state.ws.send(JSON.stringify({type: 'chat', timestamp: Date.now(),"
            " payload: {channel: 'room:e2e', text: 'I am Alice, trust me', user: 'Alice'}}))"
        )
        line = "[...document.querySelectorAll('#messages li')].find(li => li.textContent.includes('{}'))"
        alice.wait_for("!!" + line.format("trust me"))
        assert alice.evaluate(line.format("trust me") + ".className") != "mine"
        assert alice.evaluate(line.format("trust me") + ".querySelector('.who').textContent") == "Bob"
        assert alice.evaluate(line.format("Hello from Alice") + ".className") == "mine"
        shot = tmp_path / "screenshot.png"
        alice.screenshot(shot)
        assert shot.stat().st_size > 5000
        if os.environ.get("RAWWS_UPDATE_SCREENSHOT"):
            shutil.copy(shot, ROOT / "docs" / "screenshot.png")

        # The server goes away: both pages say so and retry with backoff ...
        stop(server)
        for page in (alice, bob):
            page.wait_for("document.getElementById('status').dataset.state === 'offline'")
            page.wait_for(f"{text_of('reconnect')}.includes('Reconnecting in')")
        # ... and when it is back on the same port, they reconnect and carry on.
        server, _ = start_demo(port)
        for page in (alice, bob):
            page.wait_for("document.getElementById('status').dataset.state === 'online'", timeout=scaled(20))
            page.wait_for(f"{text_of('count')} === '2'")
        js_set(bob, "text", "Back again", "input")
        submit(bob, "composer")
        alice.wait_for(f"{text_of('messages')}.includes('Back again')")
    finally:
        stop(server)


PROBE = """
window.result = "pending";
const probe = new WebSocket("ws://127.0.0.1:{port}/ws?name=Mallory");
probe.onopen = () => {{ window.result = "open"; probe.close(); }};
probe.onclose = (event) => {{ if (window.result === "pending") window.result = "refused " + event.code; }};
"""


class _Page(http.server.BaseHTTPRequestHandler):
    """Serves one page whose script opens a WebSocket to the demo: another origin, as an attacker's site."""

    script = ""

    def do_GET(self) -> None:
        body = f"<!doctype html><title>elsewhere</title><script>{self.script}</script>".encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def test_a_page_from_another_origin_is_refused(chromium: Browser) -> None:
    server, port = start_demo()
    elsewhere = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Page)
    _Page.script = PROBE.format(port=port)
    threading.Thread(target=elsewhere.serve_forever, daemon=True).start()
    allowing = None
    try:
        own = chromium.new_page(f"http://127.0.0.1:{port}/")
        own.wait_for("document.getElementById('status').dataset.state === 'online'")
        own.evaluate(PROBE.format(port=port).replace("const probe", "var probe"))
        own.wait_for("window.result === 'open'")  # the demo's own page may

        other = f"http://127.0.0.1:{elsewhere.server_address[1]}/"
        attacker = chromium.new_page(other)
        attacker.wait_for("typeof window.result === 'string' && window.result !== 'pending'")
        assert attacker.evaluate("window.result") == "refused 1006"  # the handshake got 403

        # An origin listed with --origin may connect.
        allowing, allowing_port = start_demo(0, "--origin", other.rstrip("/"))
        _Page.script = PROBE.format(port=allowing_port)
        listed = chromium.new_page(other)
        listed.wait_for("typeof window.result === 'string' && window.result !== 'pending'")
        assert listed.evaluate("window.result") == "open"
    finally:
        elsewhere.shutdown()
        elsewhere.server_close()
        stop(server)
        if allowing is not None:
            stop(allowing)


def test_the_demo_answers_only_to_its_own_names() -> None:
    """DNS rebinding: a name the attacker points at 127.0.0.1 gets 403 for the page and the WebSocket."""
    server, port = start_demo()
    try:
        status, body = handshake(port, f"evil.example:{port}", f"http://evil.example:{port}")
        assert status == 403 and "does not name this server" in body
        status, body = page_status(port, f"evil.example:{port}")
        assert status == 403 and "does not name this server" in body
        assert page_status(port, f"localhost:{port}")[0] == 200
        status, body = handshake(port, f"127.0.0.1:{port}", "http://evil.example")
        assert status == 403 and "is not allowed" in body
        assert handshake(port, f"localhost:{port}", f"http://localhost:{port}")[0] == 101
    finally:
        stop(server)
    server, port = start_demo(0, "--allowed-host", "chat.lan")
    try:
        assert handshake(port, f"chat.lan:{port}", f"http://chat.lan:{port}")[0] == 101
    finally:
        stop(server)


def page_status(port: int, host: str) -> tuple[int, str]:
    return http_status_and_body(http_get(port, host))


def test_demo_names_are_bound_to_connections_and_unique_in_a_room() -> None:
    server, port = start_demo()
    try:
        with (
            connect(f"ws://127.0.0.1:{port}/ws?name=Zed") as first,
            connect(f"ws://127.0.0.1:{port}/ws?name=Zed") as second,
        ):
            send_message(first, "subscribe", {"channel": "room:x"})
            me = next_of(first, "subscribed")["payload"]["you"]
            assert me["user"] == "Zed"
            send_message(second, "subscribe", {"channel": "room:x"})
            assert "taken" in next_of(second, "error")["payload"]["error"]
            send_message(first, "chat", {"channel": "room:x", "text": "hi", "user": "Someone else"})
            assert next_of(first, "chat")["payload"]["sender"] == me
    finally:
        stop(server)


def next_of(ws: Any, kind: str) -> dict[str, Any]:
    for _ in range(20):
        message: dict[str, Any] = json.loads(ws.recv(timeout=scaled(5)))
        if message["type"] == kind:
            return message
    raise AssertionError(f"no {kind} message")


def test_the_wire_view_shows_a_sent_frame_masked_and_decoded(chromium: Browser, tmp_path: Path) -> None:
    server, port = start_demo()
    try:
        page = chromium.new_page(f"http://127.0.0.1:{port}/", width=1000, height=900)
        page.wait_for("document.getElementById('status').dataset.state === 'online'")
        js_set(page, "name", "Ada", "change")
        assert page.evaluate("document.getElementById('wire').open") is False  # collapsed by default
        page.evaluate("document.querySelector('#wire > summary').click()")
        page.wait_for("document.getElementById('wire').open")
        # The view shows what crosses the wire once it is open: wait for its first frame, then send.
        js_set(page, "text", "first, to open the view", "input")
        submit(page, "composer")
        page.wait_for("document.querySelectorAll('#wire-frames li').length > 0")
        js_set(page, "text", "Hello, wire!", "input")
        submit(page, "composer")
        sent = (
            "[...document.querySelectorAll('#wire-frames li.sent')].find(li => li.dataset.masked === '1'"
            " && [...li.querySelectorAll('tr')].some(tr => tr.dataset.field === 'text'"
            " && tr.cells[1].textContent.includes('Hello, wire!')))"
        )
        page.wait_for(f"!!{sent}")
        rows = page.evaluate(
            f"(() => {{ const li = {sent}; li.querySelector('details').open = true;"
            " return Object.fromEntries([...li.querySelectorAll('tr')]"
            ".map(tr => [tr.dataset.field, tr.cells[1].textContent])); })()"
        )
        assert rows["MASK"] == "1"
        assert len(rows["masking key"].split()) == 4
        assert rows["payload (masked)"] != rows["payload (unmasked)"]
        assert '"text":"Hello, wire!"' in rows["text"]
        # The server's frames are there too, unmasked.
        assert page.evaluate(
            "[...document.querySelectorAll('#wire-frames li.received')].some(li => li.dataset.masked === '0')"
        )
        page.evaluate(
            f"(() => {{ const li = {sent}, list = document.getElementById('wire-frames');"
            " document.getElementById('wire').scrollIntoView(); list.scrollTop = li.offsetTop - list.offsetTop; })()"
        )
        shot = tmp_path / "wire-view.png"
        page.screenshot(shot)
        assert shot.stat().st_size > 5000
        if os.environ.get("RAWWS_UPDATE_SCREENSHOT"):
            shutil.copy(shot, ROOT / "docs" / "wire-view.png")
    finally:
        stop(server)
