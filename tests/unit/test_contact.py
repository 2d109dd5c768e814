"""Contact policy: what a cardholder's history and the outcomes recorded since keep off the next call."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from nba.decision import ContactPolicy, RecentContact
from nba.decision._contact import ContactHistory, contact_exclusions, kept_by_snapshot
from nba.vocab import MAX_SUGGESTIONS, OUTCOMES

BENEFITS = ("dining_4x", "grocery_4x", "travel_credit", "lounge", "phone_protection")
POSITION = {benefit_id: i for i, benefit_id in enumerate(BENEFITS)}
NAN = float("nan")


def _history(*entries: tuple[str, float, bool, float]) -> ContactHistory:
    """(benefit id, days since declined (NaN: never), used, presentations in 90 days) per entry."""
    return ContactHistory(
        benefit=np.array([POSITION[b] for b, _, _, _ in entries], dtype=np.int64),
        days_since_declined=np.array([d for _, d, _, _ in entries], dtype=np.float32),
        used=np.array([u for _, _, u, _ in entries], dtype=bool),
        presented_90d=np.array([p for _, _, _, p in entries], dtype=np.float32),
    )


def _off(policy: ContactPolicy, history: ContactHistory | None, recent: list[RecentContact]) -> set[str]:
    excluded = contact_exclusions(policy, POSITION, history, recent)
    assert excluded.shape == (len(BENEFITS),)
    return {BENEFITS[i] for i in np.flatnonzero(excluded)}


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"decline_cooldown_days": -1}, r"`decline_cooldown_days` must be >= 0, got -1"),
        ({"max_presentations_90d": 0}, r"`max_presentations_90d` must be a positive integer, got 0"),
        ({"complaint_max": -1}, rf"`complaint_max` must be an int in \[0, {MAX_SUGGESTIONS}\], got -1"),
        (
            {"complaint_max": MAX_SUGGESTIONS + 1},
            rf"`complaint_max` must be an int in \[0, {MAX_SUGGESTIONS}\], got {MAX_SUGGESTIONS + 1}",
        ),
    ],
)
def test_policy_refuses_bad_parameters_naming_them(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ContactPolicy(**kwargs)


def test_complaint_calls_show_at_most_complaint_max() -> None:
    policy = ContactPolicy(complaint_max=1)
    assert policy.shown_at_most("complaint", 3) == 1
    assert ContactPolicy(complaint_max=0).shown_at_most("complaint", 3) == 0
    assert ContactPolicy(complaint_max=5).shown_at_most("complaint", 3) == 3
    assert policy.shown_at_most("general", 3) == 3
    assert policy.shown_at_most("payment", MAX_SUGGESTIONS) == MAX_SUGGESTIONS


def test_nothing_is_excluded_without_history_or_recent_outcomes() -> None:
    assert _off(ContactPolicy(), None, []) == set()
    assert _off(ContactPolicy(), _history(), []) == set()


def test_used_benefits_are_excluded_whatever_else_is_known() -> None:
    history = _history(("dining_4x", NAN, True, 0), ("lounge", NAN, False, 0))
    assert _off(ContactPolicy(), history, []) == {"dining_4x"}


def test_a_decline_is_excluded_until_the_cooldown_has_passed() -> None:
    policy = ContactPolicy(decline_cooldown_days=90, max_presentations_90d=5)
    history = _history(
        ("dining_4x", 10, False, 1),
        ("grocery_4x", 90, False, 1),  # on the last day of the cooldown: still off
        ("travel_credit", 91, False, 0),
        ("lounge", NAN, False, 1),  # presented, never declined
    )
    assert _off(policy, history, []) == {"dining_4x", "grocery_4x"}
    assert _off(ContactPolicy(decline_cooldown_days=0, max_presentations_90d=5), history, []) == set()


def test_presentations_in_90_days_reaching_the_maximum_exclude() -> None:
    history = _history(("dining_4x", NAN, False, 2), ("grocery_4x", NAN, False, 1))
    assert _off(ContactPolicy(max_presentations_90d=2), history, []) == {"dining_4x"}
    assert _off(ContactPolicy(max_presentations_90d=3), history, []) == set()
    assert _off(ContactPolicy(max_presentations_90d=1), history, []) == {"dining_4x", "grocery_4x"}


def test_recent_declines_and_acceptances_exclude_at_once() -> None:
    policy = ContactPolicy(max_presentations_90d=5)
    recent = [RecentContact("dining_4x", "declined"), RecentContact("lounge", "accepted")]
    assert _off(policy, None, recent) == {"dining_4x", "lounge"}


def test_recent_presentations_add_to_the_snapshot_s_count_except_not_discussed() -> None:
    policy = ContactPolicy(max_presentations_90d=2)
    history = _history(("dining_4x", NAN, False, 1), ("grocery_4x", NAN, False, 1))
    recent = [
        RecentContact("dining_4x", "already_aware"),  # 1 + 1 reaches 2
        RecentContact("grocery_4x", "not_discussed"),  # never brought up: not a contact
        RecentContact("travel_credit", "already_aware"),  # 0 + 1
    ]
    assert _off(policy, history, recent) == {"dining_4x"}
    recent.append(RecentContact("travel_credit", "already_aware"))
    assert _off(policy, history, recent) == {"dining_4x", "travel_credit"}


def test_recent_outcomes_for_benefits_outside_the_catalog_are_ignored() -> None:
    recent = [RecentContact("retired_benefit", "declined")] * 3
    assert _off(ContactPolicy(max_presentations_90d=1), None, recent) == set()


def _reference(
    policy: ContactPolicy, history: list[tuple[str, float, bool, float]], recent: list[RecentContact]
) -> set[str]:
    """The policy as docs/engine.md says it, one benefit at a time."""
    off = set()
    for benefit_id in BENEFITS:
        presented = 0.0
        for b, days_since_declined, used, presented_90d in history:
            if b != benefit_id:
                continue
            presented += presented_90d
            declined_lately = (
                not math.isnan(days_since_declined) and days_since_declined <= policy.decline_cooldown_days
            )
            if used or declined_lately:
                off.add(benefit_id)
        for contact in recent:
            if contact.benefit_id != benefit_id or contact.outcome == "not_discussed":
                continue
            presented += 1
            if contact.outcome in ("declined", "accepted"):
                off.add(benefit_id)
        if presented >= policy.max_presentations_90d:
            off.add(benefit_id)
    return off


def _random_case(
    rng: np.random.Generator, least_entries: int, used_share: float
) -> tuple[ContactPolicy, list[tuple[str, float, bool, float]]]:
    """A random policy and a random history of at least `least_entries` entries, at most one per benefit
    (as in a profile snapshot), a benefit used with chance `used_share`."""
    policy = ContactPolicy(
        decline_cooldown_days=int(rng.integers(0, 120)), max_presentations_90d=int(rng.integers(1, 4))
    )
    entries = [
        (
            str(b),
            float(rng.integers(0, 200)) if rng.random() < 0.5 else NAN,
            bool(rng.random() < used_share),
            float(rng.integers(0, 3)),
        )
        for b in rng.choice(BENEFITS, size=int(rng.integers(least_entries, len(BENEFITS) + 1)), replace=False)
    ]
    return policy, entries


def test_exclusions_match_a_one_benefit_at_a_time_reference() -> None:
    rng = np.random.default_rng(5)
    for _ in range(300):
        policy, entries = _random_case(rng, least_entries=0, used_share=0.2)
        recent = [
            RecentContact(str(rng.choice([*BENEFITS, "unknown"])), str(rng.choice(OUTCOMES)))
            for _ in range(int(rng.integers(0, 4)))
        ]
        assert _off(policy, _history(*entries), recent) == _reference(policy, entries, recent)


def _padded(column: np.ndarray, fill: Any, before: int, after: int) -> np.ndarray:
    return np.concatenate([np.full(before, fill, column.dtype), column, np.full(after, fill, column.dtype)])


def test_the_snapshots_kept_benefits_are_what_the_whole_policy_keeps_without_recent_outcomes() -> None:
    rng = np.random.default_rng(11)
    kept_some = excluded_some = 0
    for _ in range(300):
        policy, entries = _random_case(rng, least_entries=1, used_share=0.3)
        history = _history(*entries)
        suitable = np.sort(
            rng.choice(len(BENEFITS), size=int(rng.integers(0, len(BENEFITS) + 1)), replace=False)
        )
        expected = suitable[~contact_exclusions(policy, POSITION, history, [])[suitable]]
        # The cardholder's rows sit among other cardholders' rows, stored as a profile snapshot stores them.
        before, after = int(rng.integers(0, 3)), int(rng.integers(0, 3))
        columns = (
            _padded(history.benefit.astype(np.int16), 0, before, after),
            _padded(history.days_since_declined.astype(np.float32), 0.0, before, after),
            _padded(history.used, True, before, after),
            _padded(history.presented_90d.astype(np.float32), 9.0, before, after),
        )
        kept = kept_by_snapshot(policy, suitable, len(BENEFITS), columns, before, before + len(entries))
        np.testing.assert_array_equal(kept, expected)
        kept_some += len(kept) > 0
        excluded_some += len(kept) < len(suitable)
    assert kept_some > 50 and excluded_some > 50  # both sides of the policy were exercised
