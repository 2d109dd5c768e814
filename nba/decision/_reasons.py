"""Reasons: the features that pushed a call's suggestions up → phrases an agent can glance at: about the
cardholder once for the call, about each benefit on its card."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
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
# More candidates than reasons are ranked: several features say the same thing, spend outside the
# benefit's categories says nothing, and the cardholder's own features go above the cards. With 16, 15% of
# the sample world's cards had no reason about their benefit; with 32, 3% (tests/e2e/test_engine.py).
_RANKED: Final = 32
# A row's phrases about its benefit stop at one more than a card shows: the spare stands in for a phrase a
# card above already says or every card shares (as many cards lead with their benefit as with 2 × 3 spares).
_ENOUGH: Final = MAX_REASONS + 1

_CATEGORY_FEATURE: Final = re.compile(
    rf"^(spend|tx|share)_({'|'.join(SPEND_CATEGORIES)})_\d+d(_usd)?$|^(trend|days_since)_({'|'.join(SPEND_CATEGORIES)})$"
)

# A phrase rule takes the feature's value and the benefit's spend categories in words ("dining out",
# "travel"); None: the feature says nothing an agent can use at that value.
PhraseRule = Callable[[float, str], "str | None"]

# Benefit-specific: computed from the benefit's categories, credit, enrolment or the cardholder's history
# with it. These are said on the benefit's card.
_ABOUT_BENEFIT: Final[dict[str, PhraseRule]] = {
    "est_annual_value_usd": lambda v, what: f"their {what} spend makes it worth a lot",
    "est_annual_spend_usd": lambda v, what: f"spends a lot on {what}, on any card",
    "benefit_spend_90d_usd": lambda v, what: f"already spends on {what} with this card",
    "benefit_spend_365d_usd": lambda v, what: f"already spends on {what} with this card",
    "benefit_tx_365d": lambda v, what: f"buys {what} often",
    "benefit_share_365d": lambda v, what: f"{what} is a big share of their spend",
    "benefit_days_since": lambda v, what: f"bought {what} recently" if v == v and v <= 45 else None,
    "earn_uplift": lambda v, what: f"earns well above the card's base rate on {what}",
    "annual_credit_usd": lambda v, what: f"a {what} credit left unused",
    "nominal_value_usd": lambda v, what: f"a valuable perk for their {what} spend",
    "requires_enrollment": lambda v, what: (
        "a one-time enrolment starts it" if v else "nothing to sign up for"
    ),
    "accepted_ever": lambda v, what: "said yes to this before",
}
# Cardholder-wide: the same whatever the benefit. Said once for the call, above the cards.
_ABOUT_CARDHOLDER: Final[dict[str, str]] = {
    "months_with_spend_365d": "uses the card most months",
    "benefits_used_count": "already uses other benefits",
    "days_since_last_tx": "used the card recently",
    "nps_mean": "happy with us lately",
    "nps_last": "happy with us lately",
}
# Features that say nothing an agent can use on a call ("people like them often take this up", "what their
# card is built for", "fits their stage of life"): never a reason.
_SAY_NOTHING: Final = frozenset({"benefit_id", "benefit_kind", "product_id", "age_years"})


def _never(value: float, what: str) -> str | None:
    return None


# The rule of a feature that never says anything an agent can use.
_SAYS_NOTHING: Final = _never


def _fixed(phrase: str) -> PhraseRule:
    return lambda value, what: phrase


def feature_category(name: str) -> int:
    """The position in SPEND_CATEGORIES of the category a per-category spend feature is about; -1 for others.

    >>> feature_category("spend_gas_90d_usd"), feature_category("tenure_months")
    (7, -1)
    """
    match = _CATEGORY_FEATURE.match(name)
    if not match:
        return -1
    return SPEND_CATEGORIES.index(match.group(2) or match.group(5))


def _category_rule(name: str, category: str) -> PhraseRule:
    words = category_words(category)
    if name.startswith("trend_"):
        return lambda value, what: f"{words} spend is rising" if value > 0 else None
    if name.startswith("days_since_"):
        return lambda value, what: f"bought {words} recently" if value == value and value <= 45 else None
    return _fixed(f"spends on {words}")


def phrase_rule(name: str) -> tuple[PhraseRule, bool]:
    """How a feature that raised the score is said (a function of its value and the benefit's categories in
    words), and whether the phrase is about the benefit (True) or about the cardholder whatever the benefit."""
    if name in _SAY_NOTHING:
        return _SAYS_NOTHING, False
    if name in _ABOUT_BENEFIT:
        return _ABOUT_BENEFIT[name], True
    if name in _ABOUT_CARDHOLDER:
        return _fixed(_ABOUT_CARDHOLDER[name]), False
    category = feature_category(name)
    if category >= 0:
        # Spend in one of the benefit's own categories (`_speaking` drops the others).
        return _category_rule(name, SPEND_CATEGORIES[category]), True
    if name == "tenure_months":
        return (lambda value, what: "new cardholder" if value < 12 else "long-standing cardholder"), False
    if name == "call_reason":
        return _call_reason_phrase, False
    if name.startswith(("presented_", "declined_", "days_since_last_presented")):
        return (
            lambda value, what: "not offered this recently" if not value or value != value else None
        ), True
    if name.startswith(("spend_total_", "tx_total_", "active_days_")):
        return _fixed("uses the card a lot"), False
    if name.startswith(("calls_so_far", "presentations_so_far", "accepted_so_far", "days_since_last_call")):
        return _fixed("talks to us regularly"), False
    return _SAYS_NOTHING, False


_ABOUT_TO_TRAVEL: Final = "about to travel"
_REWARDS_QUESTION: Final = "asked about their rewards"


def _call_reason_phrase(code: float, what: str) -> str | None:
    # Only two reasons for calling make a benefit timely; that a payment call scores a little higher
    # than a general one is no reason an agent can say. A trip is a reason only for a travel benefit
    # (`Reasoner.phrases` checks the benefit's categories, and says it on that benefit's card).
    if code == CALL_REASONS.index("rewards_question"):
        return _REWARDS_QUESTION
    if code == CALL_REASONS.index("travel_notice"):
        return _ABOUT_TO_TRAVEL
    return None


def phrase_for(name: str, value: float, what: str = "its categories") -> str | None:
    """The phrase for one feature that raised the score, given its value and the benefit's categories in
    words; None when it says nothing useful."""
    return phrase_rule(name)[0](value, what)


def benefit_words(categories: BoolArray | None) -> str:
    """A benefit's spend categories as an agent says them: 'dining out', 'flights and hotels', 'travel'.

    >>> benefit_words(np.array([c in ("air_travel", "lodging") for c in SPEND_CATEGORIES]))
    'flights and hotels'
    """
    if categories is None:
        return "its categories"
    names = [SPEND_CATEGORIES[c] for c in np.flatnonzero(categories).tolist()]
    if not names:
        return "it"
    if len(names) > 2 and set(names) <= TRAVEL_CATEGORIES:
        return "travel"
    words = [category_words(name) for name in names]
    # 'shopping' says 'online shopping' too.
    words = [w for w in words if not any(other != w and other in w for other in words)]
    if len(words) == 1:
        return words[0]
    if len(words) > 3:
        return f"{', '.join(words[:2])} and more"
    return f"{', '.join(words[:-1])} and {words[-1]}"


@dataclass(frozen=True, slots=True)
class CallReasons:
    """Why a call's suggestions were chosen: what is said once for the call (about the cardholder, or
    shared by every card), and each card's own reasons (about that benefit, none repeated across cards)."""

    call: tuple[str, ...]
    cards: tuple[tuple[str, ...], ...]


NO_REASONS: Final = CallReasons((), ())


class Reasoner:
    """Candidate rows + the chosen ones → the call's reasons and up to three distinct phrases per card,
    from path attributions."""

    def __init__(self, attributor: PathAttributor, feature_names: Sequence[str]) -> None:
        self.attributor = attributor
        self.feature_names = tuple(feature_names)
        # Per feature, worked out once: the request path only applies them.
        rules = tuple(phrase_rule(name) for name in self.feature_names)
        self._rules = tuple(rule for rule, _ in rules)
        self._about_benefit = tuple(about for _, about in rules)
        self._feature_category = np.array(
            [feature_category(name) for name in self.feature_names], dtype=np.int64
        )
        self._silent = np.array([rule is _SAYS_NOTHING for rule in self._rules], dtype=np.bool_)
        self._travel = np.array([c in TRAVEL_CATEGORIES for c in SPEND_CATEGORIES])
        self._words_of: dict[bytes, str] = {}
        # How many of a row's best features are looked at for its phrases.
        self.ranked = min(_RANKED, len(self.feature_names))

    def _words(self, categories: BoolArray | None) -> str:
        """`benefit_words`, worked out once per set of categories (a catalog has a few dozen)."""
        if categories is None:
            return benefit_words(None)
        key = categories.tobytes()
        words = self._words_of.get(key)
        if words is None:
            words = self._words_of[key] = benefit_words(categories)
        return words

    def __call__(self, X: FloatArray, chosen: IntArray, categories: BoolArray | None = None) -> CallReasons:
        if len(chosen) == 0:
            return NO_REASONS
        rows = X[chosen]
        return self.phrases(rows, self.attributor.contributions(rows), categories)

    def phrases(
        self, rows: FloatArray, contributions: FloatArray, categories: BoolArray | None = None
    ) -> CallReasons:
        """Reasons of a call's chosen rows (best first) whose contributions are already known (the engine
        routes rows only once).

        `categories` (rows × SPEND_CATEGORIES), when given, holds each row's benefit's spend categories:
        spend in another category is then no reason for it. The model may well have learnt that people
        who buy fuel take up a streaming earn rate more often, but "spends on fuel" under "Why this one"
        reads to an agent as a mistake; a benefit with no categories gets no category spend reasons.

        A phrase about the cardholder rather than the benefit ("new cardholder"), or one every card would
        say, is said once for the call; a card's phrase already on a card above it is left to that card.
        """
        features, _, counts = top_contributions(contributions, k=self.ranked)
        return self.phrases_of_ranked(rows, features, counts, categories)

    def phrases_of_ranked(
        self, rows: FloatArray, features: IntArray, counts: IntArray, categories: BoolArray | None = None
    ) -> CallReasons:
        """`phrases` from each row's `ranked` best features by contribution (best first; `counts` of each row
        are filled), as `top_contributions` gives them: the scorer ranks the routed rows in compiled code."""
        own_categories = (
            np.ones((len(rows), len(SPEND_CATEGORIES)), dtype=np.bool_)
            if categories is None
            else np.ascontiguousarray(categories, dtype=np.bool_)
        )
        # Compiled: of each row's ranked features, the ones that may speak for its benefit, in rank order.
        counts = _speaking(features, counts, self._feature_category, self._silent, own_categories)
        about_benefit: list[list[str]] = []
        about_holder: list[str] = []
        for position, (ranked, count) in enumerate(zip(features.tolist(), counts.tolist(), strict=True)):
            own = None if categories is None else categories[position]
            what = self._words(own)
            phrases: list[str] = []
            for index in ranked[:count]:
                # Enough: a spare for a phrase a card above takes or every card shares. (The cardholder's
                # phrases that matter rank above the benefit's: they are met on the way.)
                if len(phrases) >= _ENOUGH:
                    break
                phrase = self._rules[index](float(rows[position, index]), what)
                if not phrase:
                    continue
                if phrase == _ABOUT_TO_TRAVEL:
                    # A trip coming up is a reason for a travel benefit, on its card; for no other.
                    if own is not None and not (own & self._travel).any():
                        continue
                    if phrase not in phrases:
                        phrases.append(phrase)
                elif self._about_benefit[index]:
                    if phrase not in phrases:
                        phrases.append(phrase)
                elif phrase not in about_holder:
                    about_holder.append(phrase)
            about_benefit.append(phrases)
        return _said_once(about_benefit, about_holder)


def _said_once(about_benefit: list[list[str]], about_holder: list[str]) -> CallReasons:
    """Each phrase said once in the call: the cardholder's, and those every card of a call of two or more
    would say, above the cards; a phrase of several cards on the highest ranked of them."""
    shared: list[str] = []
    if len(about_benefit) > 1:
        common = set(about_benefit[0]).intersection(*about_benefit[1:])
        shared = [phrase for phrase in about_benefit[0] if phrase in common]
    said = set(shared)
    cards: list[tuple[str, ...]] = []
    for phrases in about_benefit:
        card = [phrase for phrase in phrases if phrase not in said][:MAX_REASONS]
        said.update(card)
        cards.append(tuple(card))
    call = tuple([*shared, *about_holder][:MAX_REASONS])
    return CallReasons(call, tuple(cards))


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
