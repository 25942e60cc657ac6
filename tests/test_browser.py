"""End to end in headless Chromium: two pages chat through `python -m rawws`, survive a restart.

Chromium is driven over the DevTools protocol with rawws's own client. In CI
(CI=true) a missing browser fails the test; elsewhere it skips.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cdp import Browser, Page, find_chromium
from tests.conftest import IN_CI, scaled

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


def start_demo(port: int = 0) -> tuple[subprocess.Popen[str], int]:
    """``python -m rawws`` on ``port`` (0: one the system picks); the process and its port."""
    process = subprocess.Popen(
        [sys.executable, "-m", "rawws", "--port", str(port)], stdout=subprocess.PIPE, text=True, cwd=ROOT
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
