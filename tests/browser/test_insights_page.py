"""The insights page in Chromium with JavaScript off: every table and plot there, nothing fetched from outside."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Request, expect

from tests.conftest import SAMPLE_DATA
from training.insights_job import run_insights
from training.progress import SILENT

pytestmark = pytest.mark.slow  # a real browser (Chromium)

DOCS_SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "insights.png"


def test_the_insights_page_reads_without_javascript_or_network(
    browser: Browser, artifacts: Path, tmp_path: Path
) -> None:
    result = run_insights(SAMPLE_DATA, None, tmp_path / "out", progress=SILENT)
    context = browser.new_context(java_script_enabled=False, viewport={"width": 1100, "height": 900})
    fetched: list[str] = []

    def remember(request: Request) -> None:
        if not request.url.startswith(("file:", "data:")):
            fetched.append(request.url)

    context.on("request", remember)
    try:
        page = context.new_page()
        page.goto(result.page.as_uri())
        expect(page.locator("h1")).to_have_text("What the conversations do to NPS")
        # The seven NPS tables, whether a pitch moves NPS, and adoption: by outcome, by benefit, caused.
        assert page.locator("table").count() == 7 + 1 + 3
        expect(page.locator("#pitch + p + table")).to_contain_text("call reason")
        expect(page.locator("#caused + table")).to_contain_text("all benefits")
        images = page.locator("img")
        assert images.count() == 3
        for i in range(images.count()):
            # A decoded image has its natural width: an embedded PNG that failed would be 0.
            assert images.nth(i).evaluate("img => img.naturalWidth") == 800
        outcome = page.locator("#outcome + img + table")
        expect(outcome).to_contain_text("nothing suggested")
        expect(page.locator("td.few").first).to_have_text("too few to say")
        centre = result.insights.centre
        expect(page.locator("p.lead")).to_contain_text(f"Centre NPS {centre.nps:+.1f}")
        shot = artifacts / "insights.png"
        page.screenshot(path=shot, full_page=False, animations="disabled")
        print(f"insights page screenshot: {shot}")
        if os.environ.get("NBA_UPDATE_SCREENSHOT") == "1":
            shutil.copyfile(shot, DOCS_SCREENSHOT)
    finally:
        context.close()
    assert fetched == []
