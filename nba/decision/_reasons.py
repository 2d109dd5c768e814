"""Reasons: the features that pushed a suggestion up → two or three phrases an agent can glance at."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Final

import numpy as np
import numpy.typing as npt

from nba._compiled import compiled
from nba.decision._talking_points import category_words
from nba.model._attribution import PathAttributor, top_contributions
from nba.vocab import CALL_REASONS, SPEND_CATEGORIES, TRAVEL_CATEGORIES

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]
MAX_REASONS: Final = 3
# More candidates than reasons are ranked: several features say the same thing, and spend outside the
# benefit's categories says nothing. With 8, 15% of the sample's suggestions had fewer than two reasons;
# with 16, 1%.
_RANKED: Final = 16

_CATEGORY_FEATURE: Final = re.compile(
    rf"^(spend|tx|share)_({'|'.join(SPEND_CATEGORIES)})_\d+d(_usd)?$|^(trend|days_since)_({'|'.join(SPEND_CATEGORIES)})$"
)
_FIXED: Final[dict[str, str]] = {
    "est_annual_value_usd": "worth a lot to them",
    "est_annual_spend_usd": "spends a lot in this category on any card",
    "benefit_spend_90d_usd": "already spends in this category",
    "benefit_spend_365d_usd": "already spends in this category",
    "benefit_tx_365d": "buys in this category often",
    "benefit_share_365d": "a big share of their spend is here",
    "benefit_days_since": "bought in this category recently",
    "earn_uplift": "earns well above the card's base rate",
    "annual_credit_usd": "a sizeable yearly credit",
    "nominal_value_usd": "a valuable perk for them",
    "requires_enrollment": "easy to start using",
    "accepted_ever": "said yes to this before",
    "benefit_id": "people like them often take this up",
    "benefit_kind": "people like them often take this up",
    "product_id": "what their card is built for",
    "months_with_spend_365d": "uses the card most months",
    "benefits_used_count": "already uses other benefits",
    "days_since_last_tx": "uses the card recently",
    "nps_mean": "happy with us lately",
    "nps_last": "happy with us lately",
}


PhraseRule = Callable[[float], "str | None"]


def _always(phrase: str | None) -> PhraseRule:
    return lambda value: phrase


# The rule of a feature that never says anything an agent can use.
_SAYS_NOTHING: Final = _always(None)


def feature_category(name: str) -> int:
    """The position in SPEND_CATEGORIES of the category a per-category spend feature is about; -1 for others.

    >>> feature_category("spend_gas_90d_usd"), feature_category("tenure_months")
    (7, -1)
    """
    match = _CATEGORY_FEATURE.match(name)
    if not match:
        return -1
    return SPEND_CATEGORIES.index(match.group(2) or match.group(5))


def phrase_rule(name: str) -> PhraseRule:
    """How a feature that raised the score is said, as a function of its value (None: says nothing useful)."""
    if name in _FIXED:
        return _always(_FIXED[name])
    category = feature_category(name)
    if category >= 0:
        return _always(f"spends on {category_words(SPEND_CATEGORIES[category])}")
    if name == "tenure_months":
        return lambda value: "new cardholder" if value < 12 else "long-standing cardholder"
    if name == "age_years":
        return _always("fits their stage of life")
    if name == "call_reason":
        return _call_reason_phrase
    if name.startswith(("presented_", "declined_", "days_since_last_presented")):
        return lambda value: "not offered this recently" if not value or value != value else None
    if name.startswith(("spend_total_", "tx_total_", "active_days_")):
        return _always("uses the card a lot")
    if name.startswith(("calls_so_far", "presentations_so_far", "accepted_so_far", "days_since_last_call")):
        return _always("talks to us regularly")
    return _SAYS_NOTHING


_ABOUT_TO_TRAVEL: Final = "about to travel"


def _call_reason_phrase(code: float) -> str | None:
    # Only two reasons for calling make a benefit timely; that a payment call scores a little higher
    # than a general one is no reason an agent can say. A trip is a reason only for a travel benefit
    # (`Reasoner.phrases` checks the benefit's categories).
    if code == CALL_REASONS.index("rewards_question"):
        return "asked about their rewards"
    if code == CALL_REASONS.index("travel_notice"):
        return _ABOUT_TO_TRAVEL
    return None


def phrase_for(name: str, value: float) -> str | None:
    """The phrase for one feature that raised the score, given its value; None when it says nothing useful."""
    return phrase_rule(name)(value)


class Reasoner:
    """Candidate rows + the chosen ones → up to three distinct phrases each, from path attributions."""

    def __init__(self, attributor: PathAttributor, feature_names: Sequence[str]) -> None:
        self.attributor = attributor
        self.feature_names = tuple(feature_names)
        # Per feature, worked out once: the request path only applies them.
        self._rules = tuple(phrase_rule(name) for name in self.feature_names)
        self._feature_category = np.array(
            [feature_category(name) for name in self.feature_names], dtype=np.int64
        )
        self._silent = np.array([rule is _SAYS_NOTHING for rule in self._rules], dtype=np.bool_)
        self._travel = np.array([c in TRAVEL_CATEGORIES for c in SPEND_CATEGORIES])

    def __call__(
        self, X: FloatArray, chosen: IntArray, categories: BoolArray | None = None
    ) -> list[tuple[str, ...]]:
        if len(chosen) == 0:
            return []
        rows = X[chosen]
        return self.phrases(rows, self.attributor.contributions(rows), categories)

    def phrases(
        self, rows: FloatArray, contributions: FloatArray, categories: BoolArray | None = None
    ) -> list[tuple[str, ...]]:
        """Reasons of rows whose contributions are already known (the engine routes rows only once).

        `categories` (rows × SPEND_CATEGORIES), when given, holds each row's benefit's spend categories:
        spend in another category is then no reason for it. The model may well have learnt that people
        who buy fuel take up a streaming earn rate more often, but "spends on fuel" under "Why this one"
        reads to an agent as a mistake; a benefit with no categories gets no category spend reasons.
        """
        features, _, counts = top_contributions(contributions, k=min(_RANKED, len(self.feature_names)))
        own_categories = (
            np.ones((len(rows), len(SPEND_CATEGORIES)), dtype=np.bool_)
            if categories is None
            else np.ascontiguousarray(categories, dtype=np.bool_)
        )
        # Compiled: of each row's ranked features, the ones that may speak for its benefit, in rank order.
        counts = _speaking(features, counts, self._feature_category, self._silent, own_categories)
        out: list[tuple[str, ...]] = []
        for position, (ranked, count) in enumerate(zip(features.tolist(), counts.tolist(), strict=True)):
            own = None if categories is None else categories[position]
            phrases: list[str] = []
            for index in ranked[:count]:
                phrase = self._rules[index](float(rows[position, index]))
                if phrase == _ABOUT_TO_TRAVEL and own is not None and not (own & self._travel).any():
                    continue
                if phrase and phrase not in phrases:
                    phrases.append(phrase)
                if len(phrases) == MAX_REASONS:
                    break
            out.append(tuple(phrases))
        return out


@compiled
def _speaking(
    features: IntArray,
    counts: IntArray,
    feature_category: IntArray,
    silent: BoolArray,
    own_categories: BoolArray,
) -> IntArray:
    """Moves each row's features that may speak to the front of `features` (in their order) and returns
    how many there are: not silent, and about no spend category or one of the row's own."""
    kept = np.zeros(features.shape[0], dtype=np.int64)
    for row in range(features.shape[0]):
        n = 0
        for i in range(counts[row]):
            feature = features[row, i]
            category = feature_category[feature]
            if silent[feature] or (category >= 0 and not own_categories[row, category]):
                continue
            features[row, n] = feature
            n += 1
        kept[row] = n
    return kept
