"""Agent panel: the page served at /agent, driven in Chromium against the real app and its database."""

from __future__ import annotations

import math
import os
import re
import shutil
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest
from playwright.sync_api import Browser, Locator, Page, Route, expect
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.routing import Route as StarletteRoute

from tests.browser.conftest import AGENT_TOKEN, KEY_STORAGE, PanelApp, open_context
from tests.serving import running_server

pytestmark = pytest.mark.slow  # a real browser (Chromium) against a served app

DOCS_SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "agent-panel.png"
OUTCOME_BUTTONS = ("Accepted", "Declined", "Not discussed", "Already aware")


def call_id_of(page: Page) -> str:
    """The call id the panel keeps in its address (the server made it when the desktop gave none)."""
    return parse_qs(urlparse(page.url).query)["call_id"][0]


def open_panel(
    page: Page, panel_app: PanelApp, cardholder: str, call_reason: str = "general", **params: str
) -> Locator:
    page.goto(panel_app.agent_url(cardholder_id=cardholder, call_reason=call_reason, **params))
    cards = page.locator("#cards > li")
    expect(cards).to_have_count(3)
    return cards


def value_words(value_usd: float) -> str:
    """The panel's money format, written out here the obvious way: whole dollars, rounded half up."""
    if value_usd <= 0:
        return ""
    if value_usd < 0.5:
        return "under $1 a year for them"
    return f"about ${math.floor(value_usd + 0.5):,} a year for them"


def outcome_button(card: Locator, name: str) -> Locator:
    return card.get_by_role("button", name=name, exact=True)


def test_shows_the_calls_talking_points_as_the_api_gives_them(
    page: Page, panel_app: PanelApp, artifacts: Path, cardholder: str
) -> None:
    cards = open_panel(page, panel_app, cardholder)
    expect(page.locator("#call-context")).to_contain_text(f"Cardholder {cardholder} · General call")
    call_id = call_id_of(page)
    answer = panel_app.suggestions(cardholder, call_id=call_id)
    assert answer["call_id"] == call_id
    for card, suggestion in zip(cards.all(), answer["suggestions"], strict=True):
        expect(card.get_by_role("heading")).to_have_text(suggestion["benefit_name"])
        expect(card.locator(".talking-point")).to_have_text(suggestion["talking_point"])
        expect(card.locator(".value")).to_have_text(value_words(suggestion["value_usd"]))
        expect(card.locator(".reasons li")).to_have_text(suggestion["reasons"])
        expect(card.get_by_role("button")).to_have_text(list(OUTCOME_BUTTONS))
        expect(card.get_by_role("group")).to_have_accessible_name(f"Outcome for {suggestion['benefit_name']}")
        for name in OUTCOME_BUTTONS:
            expect(outcome_button(card, name)).to_have_attribute("aria-pressed", "false")
    assert all("{" not in s["talking_point"] and "$" in s["talking_point"] for s in answer["suggestions"])
    expect(page.locator("#nps")).to_be_visible()

    # The panel as an agent sees it once a talking point went well: a test artifact, and the picture in docs/panel.md.
    outcome_button(cards.first, "Accepted").click()
    expect(cards.first.locator(".save-status")).to_have_text("Saved: Accepted.")
    shot = artifacts / "agent-panel.png"
    page.screenshot(path=shot, full_page=True, animations="disabled")
    print(f"agent panel screenshot: {shot}")
    if os.environ.get("NBA_UPDATE_SCREENSHOT") == "1":
        DOCS_SCREENSHOT.parent.mkdir(exist_ok=True)
        shutil.copyfile(shot, DOCS_SCREENSHOT)


def test_the_calls_shared_reasons_show_once_above_the_cards_and_a_card_shows_one_value(
    page: Page, panel_app: PanelApp, cardholder: str
) -> None:
    cards = open_panel(page, panel_app, cardholder)
    answer = panel_app.suggestions(cardholder, call_id=call_id_of(page))
    shared = answer["shared_reasons"]
    assert shared, "a sample call with three suggestions has reasons about the cardholder"
    block = page.locator("#shared-reasons")
    expect(block).to_be_visible()
    expect(block.get_by_role("listitem")).to_have_text(shared)
    # Above the cards, and said there only: no card repeats a shared reason, nor another card's.
    block_box, cards_box = block.bounding_box(), page.locator("#cards").bounding_box()
    assert block_box is not None and cards_box is not None and block_box["y"] < cards_box["y"]
    on_cards = [reason for card in cards.all() for reason in card.locator(".reasons li").all_inner_texts()]
    assert not set(on_cards) & set(shared)
    assert len(on_cards) == len(set(on_cards))
    for card, suggestion in zip(cards.all(), answer["suggestions"], strict=True):
        # One number for the benefit's value: the header's is the one the talking point says.
        shown = f"${math.floor(suggestion['value_usd'] + 0.5):,}"
        expect(card.locator(".value")).to_have_text(f"about {shown} a year for them")
        text = card.locator(".talking-point").inner_text()
        # The default notes end with the value after a colon ("...: ~$93 a year in points for them").
        assert re.findall(r"\$[\d,]+", text.rsplit(": ", 1)[-1]) == [shown], (text, shown)


def test_an_outcome_is_stored_can_be_changed_and_comes_back_on_reload(
    page: Page, panel_app: PanelApp, cardholder: str
) -> None:
    cards = open_panel(page, panel_app, cardholder)
    call_id = call_id_of(page)
    first, second = cards.nth(0), cards.nth(1)
    first_id, second_id = (
        first.get_attribute("data-suggestion-id"),
        second.get_attribute("data-suggestion-id"),
    )
    assert first_id and second_id

    outcome_button(first, "Accepted").click()
    expect(first.locator(".save-status")).to_have_text("Saved: Accepted.")
    expect(outcome_button(first, "Accepted")).to_have_attribute("aria-pressed", "true")
    assert panel_app.stored_outcomes(call_id) == {first_id: "accepted"}

    outcome_button(first, "Declined").click()
    outcome_button(second, "Already aware").click()
    expect(first.locator(".save-status")).to_have_text("Saved: Declined.")
    expect(second.locator(".save-status")).to_have_text("Saved: Already aware.")
    expect(outcome_button(first, "Accepted")).to_have_attribute("aria-pressed", "false")
    expect(outcome_button(first, "Declined")).to_have_attribute("aria-pressed", "true")
    assert panel_app.stored_outcomes(call_id) == {first_id: "declined", second_id: "already_aware"}

    # A reload (same call id in the address) shows the same suggestions with what was recorded.
    page.reload()
    expect(cards).to_have_count(3)
    assert call_id_of(page) == call_id
    expect(cards.nth(0)).to_have_attribute("data-suggestion-id", first_id)
    expect(outcome_button(cards.nth(0), "Declined")).to_have_attribute("aria-pressed", "true")
    expect(outcome_button(cards.nth(1), "Already aware")).to_have_attribute("aria-pressed", "true")
    expect(outcome_button(cards.nth(2), "Accepted")).to_have_attribute("aria-pressed", "false")


def test_a_fraud_call_shows_no_pitch_and_says_why(page: Page, panel_app: PanelApp, cardholder: str) -> None:
    page.goto(panel_app.agent_url(cardholder_id=cardholder, call_reason="fraud"))
    state = page.locator("#state")
    expect(state).to_contain_text("Nothing to bring up on this call.")
    expect(state).to_contain_text("Nothing is pitched on fraud calls.")
    expect(page.locator("#call-context")).to_contain_text("Fraud call")
    expect(page.locator("#cards > li")).to_have_count(0)


def test_an_unknown_cardholder_is_named_and_nothing_else_is_shown(page: Page, panel_app: PanelApp) -> None:
    page.goto(panel_app.agent_url(cardholder_id="C9999999", call_reason="general"))
    expect(page.locator("#state")).to_contain_text("No cardholder with the id C9999999 is known to nba.")
    expect(page.locator("#cards > li")).to_have_count(0)
    expect(page.locator("#nps")).to_be_hidden()


def test_a_404_is_told_apart_by_its_code_not_its_words(
    page: Page, panel_app: PanelApp, cardholder: str
) -> None:
    # An unknown call whose detail happens to say "cardholder": the words would mislead, the code does not.
    body = '{"code": "unknown_call", "detail": "no call for this cardholder", "request_id": "r1"}'
    page.route(
        "**/v1/cardholders/**",
        lambda route: route.fulfill(status=404, content_type="application/json", body=body),
    )
    page.goto(panel_app.agent_url(cardholder_id=cardholder, call_reason="general"))
    expect(page.locator("#state")).to_contain_text("This call is not known to nba.")
    page.unroute("**/v1/cardholders/**")


def test_service_unavailable_says_so_and_try_again_recovers(
    page: Page, panel_app: PanelApp, unavailable_app: str, cardholder: str
) -> None:
    # A real 503: the same app with no model in service.
    page.goto(f"{unavailable_app}/agent?cardholder_id={cardholder}&call_reason=general")
    state = page.locator("#state")
    expect(state).to_contain_text("Talking points are unavailable right now.")
    expect(state).to_contain_text("Try again in a moment.")
    expect(page.locator("#cards > li")).to_have_count(0)

    # The network failing outright, then coming back: "Try again" fetches the talking points.
    page.route("**/v1/cardholders/**", lambda route: route.abort("connectionrefused"))
    page.goto(panel_app.agent_url(cardholder_id=cardholder, call_reason="general"))
    expect(state).to_contain_text("The talking-points service can't be reached right now.")
    page.unroute("**/v1/cardholders/**")
    state.get_by_role("button", name="Try again").click()
    expect(page.locator("#cards > li")).to_have_count(3)
    expect(state).to_be_empty()


def test_a_slow_service_times_out_after_two_seconds(
    browser: Browser, panel_app: PanelApp, cardholder: str
) -> None:
    context, problems = open_context(browser, key=AGENT_TOKEN, reduced_motion="reduce")
    held: list[Route] = []
    try:
        page = context.new_page()
        page.route("**/v1/cardholders/**", lambda route: held.append(route))  # never answered
        page.goto(panel_app.agent_url(cardholder_id=cardholder, call_reason="general"))
        state = page.locator("#state")
        expect(state).to_have_text("Loading talking points…")
        expect(state).to_have_attribute("aria-busy", "true")
        # Reduced motion: the loading state does not pulse.
        assert state.evaluate("el => getComputedStyle(el).animationName") == "none"
        expect(state).to_contain_text(
            "No answer from the talking-points service within 2 seconds", timeout=4_000
        )
        expect(state.get_by_role("button", name="Try again")).to_be_visible()
        assert len(held) == 1
    finally:
        context.close()
    assert not problems.messages, problems.messages


def test_keyboard_alone_looks_up_a_cardholder_and_records_an_outcome(
    page: Page, panel_app: PanelApp, cardholder: str
) -> None:
    page.goto(panel_app.agent_url())
    expect(page.locator("#lookup")).to_have_attribute("open", "")
    focused: list[str] = []

    def tab_to(name: str) -> None:
        for _ in range(40):
            page.keyboard.press("Tab")
            label = page.evaluate(
                "() => { const el = document.activeElement;"
                " return `${el.tagName.toLowerCase()}:${(el.id || el.textContent || '').trim()}`; }"
            )
            focused.append(label)
            if label == name:
                return
        raise AssertionError(f"Tab never reached {name!r}; focus went through {focused}")

    tab_to("input:cardholder-input")
    page.keyboard.type(cardholder)
    page.keyboard.press("Enter")  # submits the form
    cards = page.locator("#cards > li")
    expect(cards).to_have_count(3)
    call_id = call_id_of(page)
    first_id = cards.first.get_attribute("data-suggestion-id")

    focused.clear()
    tab_to("button:Accepted")
    # Focus moves in reading order: the form, then the first card's buttons, and it is visible.
    assert focused[-1] == "button:Accepted" and "select:reason-select" in focused
    accepted = outcome_button(cards.first, "Accepted")
    expect(accepted).to_be_focused()
    outline = accepted.evaluate(
        "el => [getComputedStyle(el).outlineStyle, getComputedStyle(el).outlineWidth]"
    )
    assert outline == ["solid", "3px"]
    page.keyboard.press("Enter")
    expect(accepted).to_have_attribute("aria-pressed", "true")
    expect(cards.first.locator(".save-status")).to_have_text("Saved: Accepted.")
    assert panel_app.stored_outcomes(call_id) == {first_id: "accepted"}

    focused.clear()
    tab_to("button:Not discussed")
    assert focused == ["button:Declined", "button:Not discussed"]
    page.keyboard.press("Space")
    expect(cards.first.locator(".save-status")).to_have_text("Saved: Not discussed.")
    assert panel_app.stored_outcomes(call_id) == {first_id: "not_discussed"}


def test_readable_at_360_px_without_sideways_scrolling(
    browser: Browser, panel_app: PanelApp, artifacts: Path, cardholder: str
) -> None:
    context, problems = open_context(browser, key=AGENT_TOKEN, viewport={"width": 360, "height": 740})
    try:
        page = context.new_page()
        cards = open_panel(page, panel_app, cardholder)
        assert page.evaluate("document.documentElement.scrollWidth") <= 360
        for button in cards.get_by_role("button").all():
            box = button.bounding_box()
            assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= 360
        font_px = cards.first.locator(".talking-point").evaluate(
            "el => parseFloat(getComputedStyle(el).fontSize)"
        )
        assert font_px >= 16
        page.screenshot(path=artifacts / "agent-panel-360.png", full_page=True, animations="disabled")
    finally:
        context.close()
    assert not problems.messages, problems.messages


def test_the_survey_score_is_stored_and_closes_the_call(
    page: Page, panel_app: PanelApp, cardholder: str
) -> None:
    cards = open_panel(page, panel_app, cardholder)
    call_id = call_id_of(page)
    page.get_by_label("How likely is the cardholder to recommend us to a friend?").fill("9")
    page.get_by_role("button", name="Save score").click()
    expect(page.locator("#nps-status")).to_have_text("Saved: 9 out of 10. The call is now closed.")
    assert panel_app.stored_nps(call_id) == 9
    expect(outcome_button(cards.first, "Accepted")).to_be_disabled()

    # Reopened after the call: the outcomes are shown but can no longer be changed.
    page.reload()
    expect(page.locator("#state")).to_contain_text("This call has ended")
    expect(cards.first.get_by_role("button")).to_have_count(4)
    for button in cards.first.get_by_role("button").all():
        expect(button).to_be_disabled()


def test_an_outcome_after_the_call_closed_elsewhere_says_the_call_has_ended(
    page: Page, panel_app: PanelApp, cardholder: str
) -> None:
    cards = open_panel(page, panel_app, cardholder)
    call_id = call_id_of(page)
    # The desktop's own survey records the score while the panel is still open.
    assert panel_app.api("POST", f"/v1/calls/{call_id}/nps", json={"score": 3}).status_code == 200
    outcome_button(cards.first, "Accepted").click()
    expect(cards.first.locator(".save-status")).to_have_text(
        "Not saved: this call has ended, so outcomes can no longer be changed."
    )
    expect(outcome_button(cards.first, "Accepted")).to_have_attribute("aria-pressed", "false")
    expect(outcome_button(cards.nth(2), "Declined")).to_be_disabled()
    assert panel_app.stored_outcomes(call_id) == {}


def test_without_a_key_the_panel_asks_for_one_and_keeps_it_for_the_tab(
    browser: Browser, panel_app: PanelApp, cardholder: str
) -> None:
    context, problems = open_context(browser, key=None)
    try:
        page = context.new_page()
        page.goto(panel_app.agent_url(cardholder_id=cardholder, call_reason="general"))
        prompt = page.locator("#key-prompt")
        expect(prompt).to_be_visible()
        expect(prompt).to_contain_text("Enter the API key for this panel.")
        expect(page.locator("#state")).to_have_text("Waiting for an API key to fetch talking points.")

        page.get_by_label("Key", exact=True).fill("nba_not_a_real_key")
        page.get_by_role("button", name="Use this key").click()
        expect(prompt).to_contain_text("The service did not accept the key (unknown API key).")

        page.get_by_label("Key", exact=True).fill(AGENT_TOKEN)
        page.get_by_role("button", name="Use this key").click()
        expect(page.locator("#cards > li")).to_have_count(3)
        expect(prompt).to_be_hidden()
        assert page.evaluate(f"sessionStorage.getItem({KEY_STORAGE!r})") == AGENT_TOKEN
        page.reload()
        expect(page.locator("#cards > li")).to_have_count(3)
        expect(prompt).to_be_hidden()
    finally:
        context.close()
    assert not problems.messages, problems.messages


def test_an_embedding_desktop_hands_over_the_key_by_post_message(
    browser: Browser, panel_app: PanelApp, cardholder: str
) -> None:
    panel_url = panel_app.agent_url(cardholder_id=cardholder, call_reason="travel_notice")
    desktop = f"""<!doctype html><title>desktop</title>
<iframe id="nba" title="Talking points" src="{panel_url}" width="420" height="700"></iframe>
<script>
  window.addEventListener("message", (event) => {{
    if (event.origin === "{panel_app.base_url}" && event.data.type === "nba-api-key-needed") {{
      event.source.postMessage({{type: "nba-api-key", key: "{AGENT_TOKEN}"}}, event.origin);
    }}
  }});
</script>"""

    async def desktop_page(request: Request) -> HTMLResponse:
        return HTMLResponse(desktop)

    # The desktop is another origin; a real server, since Chromium keeps pages that Playwright made up
    # (treated as public) from framing a loopback address.
    context, problems = open_context(browser, key=None)
    try:
        with running_server(Starlette(routes=[StarletteRoute("/", desktop_page)])) as desktop_url:
            page = context.new_page()
            page.goto(desktop_url)
            panel = page.frame_locator("#nba")
            expect(panel.locator("#call-context")).to_contain_text("Travel notice call")
            expect(panel.locator("#cards > li").first).to_be_visible()
            expect(panel.locator("#key-prompt")).to_be_hidden()
    finally:
        context.close()
    assert not problems.messages, problems.messages


def test_the_panel_can_be_used_beside_a_given_call_id_and_agent(
    page: Page, panel_app: PanelApp, cardholder: str
) -> None:
    cards = open_panel(page, panel_app, cardholder, call_id="desk-call-0001", agent_id="agent_17")
    assert call_id_of(page) == "desk-call-0001"
    outcome_button(cards.nth(1), "Accepted").click()
    expect(cards.nth(1).locator(".save-status")).to_have_text("Saved: Accepted.")
    assert list(panel_app.stored_outcomes("desk-call-0001").values()) == ["accepted"]
    assert panel_app.stored_agents("desk-call-0001") == {"agent_17"}
    # The same call asked again, e.g. by the desktop, returns what the panel recorded.
    again = panel_app.suggestions(cardholder, call_id="desk-call-0001")
    assert [s["outcome"] for s in again["suggestions"]] == [None, "accepted", None]
    assert re.fullmatch(r"s_[0-9a-f]{28}", again["suggestions"][1]["suggestion_id"])
