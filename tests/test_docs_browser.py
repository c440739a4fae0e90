"""The /docs page in a real headless Chromium: it renders offline and "Try it out" works.

Uses Debian's chromium (scripts/test.sh installs it when it can); Playwright only drives it.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.servers.fake_ollama import FakeOllama
from tests.servers.service import ServiceServer

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
# Without these, Chromium keeps trying to reach Google's hosts on a machine with no network.
CHROMIUM_ARGS = [
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip


@pytest.fixture(scope="module")
def browser():
    if CHROMIUM is None:
        if os.environ.get("RETRANSLATE_TEST_REQUIRE_BROWSER") == "1":
            pytest.fail("chromium is required but not installed")
        pytest.skip("no chromium on PATH (Debian: apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


def test_docs_page_renders_offline_and_try_it_out_returns_results(
    browser, service: ServiceServer, fake_clean: FakeOllama
) -> None:
    page = browser.new_page(viewport={"width": 1280, "height": 2200})
    hosts: set[str] = set()
    page.on("request", lambda request: hosts.add(urlsplit(request.url).hostname or ""))
    try:
        page.goto(f"{service.url}/docs", wait_until="networkidle")
        page.wait_for_selector(".swagger-ui .info .title", timeout=20_000)
        assert "retranslate" in page.inner_text(".swagger-ui .info .title")

        block = page.locator("#operations-default-retranslate_retranslate_post")
        block.locator(".opblock-summary").click()
        block.locator("button.try-out__btn").click()
        block.locator("button.execute").click()
        status = block.locator(".live-responses-table .response .response-col_status").first
        status.wait_for(timeout=20_000)
        assert status.inner_text().strip() == "200"
        body = block.locator(".live-responses-table .response-col_description pre").first.inner_text()
        assert '"results"' in body
        assert '"success": true' in body

        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "docs-try-it-out.png"), full_page=False)
    finally:
        page.close()
    # Everything came from the service itself: no CDN.
    assert hosts == {"127.0.0.1"}
    assert any(r["path"] == "/api/chat" for r in fake_clean.stats()["requests"])
