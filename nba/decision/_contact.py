"""Contact policy: a cardholder's contact history and the outcomes recorded since → the benefits not offered again."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from nba._compiled import compiled
from nba.vocab import MAX_SUGGESTIONS, UNHEARD_OUTCOMES

BoolArray = npt.NDArray[np.bool_]


@dataclass(frozen=True)
class ContactPolicy:
    """What is not offered again: declined in the last N days, or presented M times in 90 days.

    On complaint calls at most `complaint_max` suggestions are shown.
    """

    decline_cooldown_days: int = 90
    max_presentations_90d: int = 2
    complaint_max: int = 1

    def __post_init__(self) -> None:
        if self.decline_cooldown_days < 0:
            raise ValueError(f"`decline_cooldown_days` must be >= 0, got {self.decline_cooldown_days}")
        if self.max_presentations_90d < 1:
            raise ValueError(
                f"`max_presentations_90d` must be a positive integer, got {self.max_presentations_90d}"
            )
        if not 0 <= self.complaint_max <= MAX_SUGGESTIONS:
            raise ValueError(
                f"`complaint_max` must be an int in [0, {MAX_SUGGESTIONS}], got {self.complaint_max}"
            )

    def shown_at_most(self, call_reason: str, top_k: int) -> int:
        """How many suggestions a call may show: `top_k`, or fewer on a complaint call."""
        return min(top_k, self.complaint_max) if call_reason == "complaint" else top_k


@dataclass(frozen=True)
class RecentContact:
    """An outcome recorded after the profile snapshot was taken (from the feedback store).

    The contact policy applies it at once: a decline or an acceptance takes the benefit off the next
    calls, and every presentation counts towards `max_presentations_90d`.
    """

    benefit_id: str
    outcome: str


@dataclass(frozen=True)
class ContactHistory:
    """A cardholder's contact history in the profile snapshot: one entry per benefit ever presented or used.

    `benefit` holds positions in the catalog's benefits; `days_since_declined` is NaN for a benefit
    never declined.
    """

    benefit: npt.NDArray[np.int64]
    days_since_declined: npt.NDArray[np.floating]
    used: BoolArray
    presented_90d: npt.NDArray[np.floating]


def contact_exclusions(
    policy: ContactPolicy,
    benefit_position: Mapping[str, int],
    history: ContactHistory | None,
    recent: Sequence[RecentContact] = (),
) -> BoolArray:
    """One flag per catalog benefit (`benefit_position`'s positions): True where the policy keeps it off the call.

    Off: a benefit already used; declined within `decline_cooldown_days` (in the snapshot) or declined or
    accepted since the snapshot (`recent`); presented `max_presentations_90d` times or more in 90 days,
    counting the snapshot's presentations and every recent outcome except `not_discussed` and `unmarked` (a
    suggestion the agent did not bring up, or nobody marked, is not known to be a contact). Recent outcomes for benefits not in the catalog are
    ignored.
    """
    n_benefits = len(benefit_position)
    if history is None or not len(history.benefit):
        presented_90d = np.zeros(n_benefits, dtype=np.float32)
        excluded = presented_90d >= policy.max_presentations_90d
    else:
        excluded, presented_90d = _snapshot_contacts(
            n_benefits,
            history.benefit,
            history.days_since_declined,
            history.used,
            history.presented_90d,
            float(policy.decline_cooldown_days),
            float(policy.max_presentations_90d),
        )
    if not recent:
        return excluded
    for contact in recent:
        benefit = benefit_position.get(contact.benefit_id)
        if benefit is None or contact.outcome in UNHEARD_OUTCOMES:
            continue
        presented_90d[benefit] += 1
        if contact.outcome in ("declined", "accepted"):
            excluded[benefit] = True
    excluded |= presented_90d >= policy.max_presentations_90d
    return excluded


def kept_by_snapshot(
    policy: ContactPolicy,
    suitable: npt.NDArray[np.int64],
    n_benefits: int,
    history: tuple[npt.NDArray[np.integer], npt.NDArray[np.floating], BoolArray, npt.NDArray[np.floating]],
    start: int,
    end: int,
) -> npt.NDArray[np.int64]:
    """The benefits of `suitable` (catalog positions, in order) that `contact_exclusions` keeps when nothing
    was recorded since the snapshot, in one compiled pass: the request path's usual case.

    `history` holds the snapshot's contact columns for every cardholder (benefit, days since declined, used,
    presentations in 90 days: `Profiles.history_*`); rows `start:end` are this cardholder's.
    """
    benefit, days_since_declined, used, presented_90d = history
    return _kept_by_snapshot(
        suitable,
        n_benefits,
        benefit[start:end],
        days_since_declined[start:end],
        used[start:end],
        presented_90d[start:end],
        float(policy.decline_cooldown_days),
        float(policy.max_presentations_90d),
    )


@compiled
def _kept_by_snapshot(
    suitable: npt.NDArray[np.int64],
    n_benefits: int,
    benefit: npt.NDArray[np.integer],
    days_since_declined: npt.NDArray[np.floating],
    used: BoolArray,
    presented_90d: npt.NDArray[np.floating],
    cooldown_days: float,
    max_presentations: float,
) -> npt.NDArray[np.int64]:
    excluded, _ = _snapshot_contacts(
        n_benefits, benefit, days_since_declined, used, presented_90d, cooldown_days, max_presentations
    )
    kept = np.empty(suitable.shape[0], dtype=np.int64)
    n = 0
    for i in range(suitable.shape[0]):
        if not excluded[suitable[i]]:
            kept[n] = suitable[i]
            n += 1
    return kept[:n]


@compiled
def _snapshot_contacts(
    n_benefits: int,
    benefit: npt.NDArray[np.integer],
    days_since_declined: npt.NDArray[np.floating],
    used: BoolArray,
    presented_90d: npt.NDArray[np.floating],
    cooldown_days: float,
    max_presentations: float,
) -> tuple[BoolArray, npt.NDArray[np.float32]]:
    """The snapshot's part of `contact_exclusions` in one pass: per catalog benefit, whether it is used,
    declined within the cool-down (NaN days: never declined) or presented `max_presentations` times or more
    in 90 days, and its presentations in 90 days."""
    excluded = np.zeros(n_benefits, dtype=np.bool_)
    presented = np.zeros(n_benefits, dtype=np.float32)
    for i in range(benefit.shape[0]):
        b = benefit[i]
        presented[b] = presented_90d[i]
        if used[i] or days_since_declined[i] <= cooldown_days:
            excluded[b] = True
    for b in range(n_benefits):
        if presented[b] >= max_presentations:
            excluded[b] = True
    return excluded, presented
