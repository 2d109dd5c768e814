"""Browser fixtures: the real app (sample model) on 127.0.0.1 and Debian's Chromium driven by Playwright."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlencode

import httpx
import pandas as pd
import pytest
import sqlalchemy as sa
from playwright.sync_api import Browser, BrowserContext, ConsoleMessage, Page, sync_playwright

from api.keys import hash_token
from api.main import create_app
from nba.feedback._schema import nps_table, outcomes_table, suggestions_table
from tests.deployment import Deployment
from tests.serving import running_server

CHROMIUM: Final = Path("/usr/bin/chromium")
CHROMIUM_ARGS: Final = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
    "--disable-quic",
]
# A test-only token: the app is configured with its hash, as a desktop's key would be.
AGENT_TOKEN: Final = "nba_browser_tests_agent_3f7c1e9a5b2d4c6e8f0a1b3c5d7e9f11"
KEY_STORAGE: Final = "nba-api-key"
ARTIFACTS: Final = Path(__file__).resolve().parents[2] / "var" / "browser"


@dataclass
class PanelApp:
    """The served app, sample cardholders to call about, and a way to read what it stored."""

    base_url: str
    database_url: str
    cardholder_ids: list[str] = field(repr=False)
    _db: sa.Engine | None = field(default=None, repr=False)

    def fresh_cardholder(self) -> str:
        """A sample cardholder no earlier test called about, with three suggestions on a general call.

        Each test takes its own: outcomes recorded for a cardholder feed the contact policy, which
        then leaves those benefits out of the cardholder's later calls.
        """
        while self.cardholder_ids:
            cardholder_id = self.cardholder_ids.pop(0)
            if len(self.suggestions(cardholder_id)["suggestions"]) == 3:
                return cardholder_id
        raise AssertionError("the sample data ran out of cardholders with three suggestions")

    def agent_url(self, **params: str) -> str:
        return f"{self.base_url}/agent" + (f"?{urlencode(params)}" if params else "")

    def api(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        headers = {"X-API-Key": AGENT_TOKEN}
        return httpx.request(method, f"{self.base_url}{path}", headers=headers, timeout=10, **kwargs)

    def suggestions(
        self, cardholder_id: str, call_reason: str = "general", call_id: str | None = None
    ) -> Any:
        params = {"call_reason": call_reason, "limit": "3"} | ({"call_id": call_id} if call_id else {})
        response = self.api("GET", f"/v1/cardholders/{cardholder_id}/suggestions", params=params)
        assert response.status_code == 200, response.text
        return response.json()

    @property
    def db(self) -> sa.Engine:
        if self._db is None:
            self._db = sa.create_engine(self.database_url)
        return self._db

    def close(self) -> None:
        """Closes the connections `db` opened, if any."""
        if self._db is not None:
            self._db.dispose()

    def stored_outcomes(self, call_id: str) -> dict[str, str]:
        """suggestion_id → current outcome, read from the feedback database itself."""
        query = (
            sa.select(outcomes_table.c.suggestion_id, outcomes_table.c.outcome)
            .join(suggestions_table)
            .where(suggestions_table.c.call_id == call_id, outcomes_table.c.is_current)
        )
        with self.db.connect() as conn:
            return {row.suggestion_id: row.outcome for row in conn.execute(query)}

    def stored_agents(self, call_id: str) -> set[str | None]:
        """The agent ids on the call's outcomes (current and replaced)."""
        query = (
            sa.select(outcomes_table.c.agent_id)
            .join(suggestions_table)
            .where(suggestions_table.c.call_id == call_id)
        )
        with self.db.connect() as conn:
            return set(conn.scalars(query))

    def stored_nps(self, call_id: str) -> int | None:
        with self.db.connect() as conn:
            return conn.scalar(sa.select(nps_table.c.score).where(nps_table.c.call_id == call_id))


def _keys_json() -> str:
    return json.dumps([{"name": "browser-tests", "role": "agent", "sha256": hash_token(AGENT_TOKEN)}])


@pytest.fixture(scope="session")
def panel_app(sample_deployment: Deployment, tmp_path_factory: pytest.TempPathFactory) -> Iterator[PanelApp]:
    """The app serving the sample model, with one agent key; its feedback database in a temp folder."""
    var = tmp_path_factory.mktemp("browser-var")
    settings = sample_deployment.settings(var, api_keys=_keys_json())
    with running_server(create_app(settings)) as base_url:
        holders = pd.read_parquet(
            sample_deployment.data_dir / "cardholders.parquet", columns=["cardholder_id"]
        )
        app = PanelApp(base_url, settings.database_url, [str(c) for c in holders["cardholder_id"]])
        try:
            yield app
        finally:
            app.close()


@pytest.fixture
def cardholder(panel_app: PanelApp) -> str:
    """This test's own sample cardholder (three suggestions on a general call)."""
    return panel_app.fresh_cardholder()


@pytest.fixture(scope="session")
def unavailable_app(sample_deployment: Deployment, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The same app with no model in service: every suggestion request answers 503."""
    var = tmp_path_factory.mktemp("browser-var-empty")
    empty = var / "models"
    empty.mkdir()
    settings = sample_deployment.settings(var, models_dir=empty, api_keys=_keys_json())
    with running_server(create_app(settings)) as base_url:
        yield base_url


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        pytest.fail(
            f"{CHROMIUM} is missing: the browser tests drive Debian's Chromium; run `make system-deps`",
            pytrace=False,
        )
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@dataclass
class PageProblems:
    """JavaScript errors and console errors a page reported (failed HTTP responses aside)."""

    messages: list[str] = field(default_factory=list)

    def console(self, message: ConsoleMessage) -> None:
        # Chromium logs every 4xx/5xx response as "Failed to load resource"; the tests cause those on purpose.
        if message.type == "error" and not message.text.startswith("Failed to load resource"):
            self.messages.append(f"console: {message.text}")

    def page_error(self, error: Exception) -> None:
        self.messages.append(f"page error: {error}")


def open_context(browser: Browser, *, key: str | None, **options: Any) -> tuple[BrowserContext, PageProblems]:
    """A fresh browser context (its own sessionStorage); with `key`, the panel finds it already stored."""
    context = browser.new_context(**{"viewport": {"width": 480, "height": 900}, **options})
    context.set_default_timeout(5_000)
    if key is not None:
        # Init scripts also run in about:blank, where sessionStorage is off limits.
        context.add_init_script(
            f"if (location.protocol === 'http:') window.sessionStorage.setItem({KEY_STORAGE!r}, {key!r});"
        )
    problems = PageProblems()
    context.on("console", problems.console)
    context.on("weberror", lambda error: problems.page_error(error.error))
    return context, problems


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    """A context whose pages already hold the agent key (as after the one-time prompt)."""
    context, problems = open_context(browser, key=AGENT_TOKEN)
    yield context
    context.close()
    assert not problems.messages, problems.messages


@pytest.fixture
def page(context: BrowserContext) -> Page:
    return context.new_page()


@pytest.fixture
def artifacts() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS
