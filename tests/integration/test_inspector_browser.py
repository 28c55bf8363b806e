"""The web inspector at /__objectd/ in a real headless Chromium (issue 14 §2).

The Debian ``chromium`` package (``.ci/run`` installs it), driven by playwright; no
browser is ever downloaded.  The test clicks from the class list to one object, reads
its KV pairs and table, runs a read-only query and a refused one, and saves a screenshot
under its tmp folder.
"""

from __future__ import annotations

import os
import shutil
import struct
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import Server

APP = Path(__file__).parent / "apps" / "inspect"
CHROMIUM = "/usr/bin/chromium"
TOKEN = "an-admin-token-for-the-browser-01"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

if not os.path.exists(CHROMIUM) and not os.environ.get("CI"):
    pytest.skip(
        f"no {CHROMIUM} (apt-get install chromium; CI installs it)", allow_module_level=True
    )

from playwright.sync_api import Browser, expect, sync_playwright  # noqa: E402


@pytest.fixture
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    project = tmp_path / "inspect"
    shutil.copytree(APP, project, ignore=shutil.ignore_patterns(".objectd", "__pycache__"))
    srv = Server(project, tmp_path / "data", "--admin-token", TOKEN).start()
    try:
        with srv.client() as http:
            for name in ("alice", "bob"):
                put = {"name": name, "key": "greeting", "value": f"hi {name}"}
                assert http.get("/put", params=put).text == "ok"
            assert http.get("/alarm", params={"name": "alice", "ms": "4102444800000"}).text == "ok"
        yield srv
    finally:
        srv.kill()


def test_click_from_the_list_to_one_objects_kv_and_sql(
    browser: Browser, server: Server, tmp_path: Path
) -> None:
    page = browser.new_page()
    page.set_default_timeout(20_000)
    page.goto(server.url + "/__objectd/")
    # serve with --admin-token: the browser is sent to the form, which sets the cookie.
    expect(page.locator("#token")).to_be_visible()
    page.fill("#token", "not-the-token")
    page.click("button[type=submit]")
    expect(page.locator(".error")).to_contain_text("not the admin token")
    page.fill("#token", TOKEN)
    page.click("button[type=submit]")

    page.click("#classes a.class:text('Notes')")
    expect(page.locator("#objects tbody tr")).to_have_count(2)
    page.fill("#search", "ali")
    page.click("button[type=submit]")
    expect(page.locator("#objects tbody tr")).to_have_count(1)
    page.click("#objects a.object")

    expect(page.locator("h1")).to_contain_text("alice")
    expect(page.locator("#kv")).to_contain_text("greeting")
    expect(page.locator("#kv")).to_contain_text("'text': 'hi alice'")
    expect(page.locator("#tables")).to_contain_text("hi alice")
    page.fill("#kv_prefix", "nothing-starts-so")
    page.click("#kv-filter button")
    expect(page.locator("#kv tbody tr")).to_have_count(0)
    page.fill("#kv_prefix", "gree")
    page.click("#kv-filter button")
    expect(page.locator("#kv tbody tr")).to_have_count(1)
    expect(page.locator("body")).to_contain_text("2100-01-01T00:00:00.000Z")

    page.fill("#sql", "SELECT upper(body) AS loud FROM notes")
    page.click("#run")
    expect(page.locator("#result")).to_contain_text("HI ALICE")
    shot = page.screenshot(path=str(tmp_path / "inspector.png"), full_page=True)
    # A real image of the whole page: PNG's signature, and its IHDR's width and height
    # (full_page: as wide as the window, at least as tall).
    assert shot[:8] == b"\x89PNG\r\n\x1a\n" and shot[12:16] == b"IHDR"
    width, height = struct.unpack(">II", shot[16:24])
    window = page.viewport_size
    assert window is not None
    assert width == window["width"] and height >= window["height"]

    page.fill("#sql", "DELETE FROM notes")
    page.click("#run")
    expect(page.locator("#result.error")).to_contain_text("not authorized")
    with server.client() as http:
        assert http.get("/count", params={"name": "alice"}).text == "1"

    page.click("nav a:text('alarms')")
    expect(page.locator("#alarms tbody tr")).to_have_count(1)
    expect(page.locator("#alarms")).to_contain_text("alice")
    assert (tmp_path / "inspector.png").read_bytes() == shot
