"""Synthetic world, truth: a benefit and a person at a call → the true chance of adoption; the regime shift."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from typing import Final

import numpy as np
import numpy.typing as npt

from nba.vocab import (
    BENEFIT_KINDS,
    CALL_REASONS,
)
from training.synth._parameters import (
    _EARN,
    _PERK,
    _PROTECTION,
    _SHARE_OFFSET,
    _VALUE_OFFSET_USD,
    F64,
    Bool,
    _day_number,
)


@dataclass(frozen=True)
class _BenefitView:
    """Benefit attributes indexed by benefit position (or gathered to any shape by `take`)."""

    kind: npt.NDArray[np.int8]
    enroll: Bool
    travel: Bool
    digital: Bool
    typical_log_value: F64  # mean _log_value(yearly value in USD) over the reference population's holders
    typical_log_share: F64  # mean _log_share(share of yearly spend in the benefit's categories), likewise

    def take(self, index: npt.NDArray[np.integer]) -> _BenefitView:
        return _BenefitView(
            self.kind[index],
            self.enroll[index],
            self.travel[index],
            self.digital[index],
            self.typical_log_value[index],
            self.typical_log_share[index],
        )


@dataclass(frozen=True)
class TrueAdoptionModel:
    """The known truth: log-odds that a benefit discussed on a call is adopted within 30 days.

    logit = intercept + kind + headline·(typical value − log 70)                      the benefit: modest
            + clip(value·s(value ratio) + focus·s(share ratio), relevance_range)      the person–benefit fit
            + affinity·related-spend term + age terms (digital benefits younger, protections older)
            + income terms (perks appeal to the affluent, earn rates to the less well-off)
            + tenure·exp(−tenure_days / 240) + engagement·z + enrolment·(1 − engaged_enrollment·z)
            + declines + call reason + rank + agent effect

    The value ratio is log($10 + value_usd) against the benefit's typical value, the share ratio
    log(0.01 + share of the cardholder's yearly spend in its categories) against the typical share; both
    typicals are means over the people who hold the benefit (see `_calibrate_truth`). s(x) = (e^{cx} − 1)/c
    with c = `convexity` rewards a strong fit more than it punishes a poor one, and the clip bounds both:
    a benefit that is no use to someone is simply no use, one that fits well is likely but not certain.
    So who the cardholder is decides which of their benefits they take up (a frequent flyer lounge
    access, a family that shops for groceries a supermarket earn rate), while benefits differ among
    themselves only modestly. Value, share and affinity come from the cardholder's true spend on any card,
    which the data shows only in part (this card's share of it, and not at all in an unused earn-rate
    benefit's categories); age, tenure and income show through the CRM columns.
    """

    intercept: float = -1.70
    kind: Mapping[str, float] = dataclasses.field(
        default_factory=lambda: {
            "earn_rate": 0.15,
            "statement_credit": 0.05,
            "perk": -0.05,
            "protection": -0.20,
        }
    )
    headline: float = 0.35
    value: float = 1.3
    focus: float = 1.2
    convexity: float = 0.6
    relevance_range: tuple[float, float] = (-1.8, 3.0)
    affinity: float = 0.90
    tenure: float = 0.70
    tenure_scale_days: float = 240.0
    digital_youth: float = 0.50
    protection_age: float = 0.45
    affluent_perk: float = 0.35
    thrifty_earn: float = 0.25
    engagement: float = 0.30
    enrollment: float = -0.45
    engaged_enrollment: float = 0.60
    declined_recently: float = -1.60
    declined_before: float = -0.35
    travel_notice_travel: float = 0.90
    rank_step: float = -0.30
    agent_sd: float = 0.30
    reason: Mapping[str, float] = dataclasses.field(
        default_factory=lambda: {
            "general": 0.0,
            "payment": -0.15,
            "balance_inquiry": -0.10,
            "lost_card": -0.35,
            "travel_notice": -0.10,  # and + travel_notice_travel for travel benefits
            "rewards_question": 0.60,
            "dispute": -0.80,
            "fraud": -1.00,
            "complaint": -0.90,
            "bereavement": -1.50,
            "hardship": -0.80,
        }
    )

    def logit(
        self,
        benefit: _BenefitView,
        value_usd: F64,
        spend_share: F64,
        affinity: F64,
        tenure_days: F64,
        age: F64,
        z_income: F64,
        engagement: F64,
        declined_recently: Bool,
        declined_before: Bool,
        reason: npt.NDArray[np.integer],
        rank: npt.NDArray[np.integer],
        agent_effect: F64,
        income_effect: F64 | None = None,
    ) -> F64:
        """Log-odds for arrays of equal shape; `benefit` gives each element's benefit attributes.

        `reason` indexes CALL_REASONS, `rank` starts at 1, ages are in years, values in USD a year,
        `z_income` and `engagement` are standard scores. `income_effect` multiplies the income terms
        (a regime shift flips them); None leaves them as they are.
        """
        value_ratio = _log_value(value_usd) - benefit.typical_log_value
        share_ratio = _log_share(spend_share) - benefit.typical_log_share
        relevance = np.clip(
            self.value * _stretch(value_ratio, self.convexity)
            + self.focus * _stretch(share_ratio, self.convexity),
            *self.relevance_range,
        )
        digital_youth = np.where(benefit.digital, np.clip((40.0 - age) / 15.0, -1.5, 1.5), 0.0)
        protection_age = np.where(benefit.kind == _PROTECTION, np.clip((age - 45.0) / 15.0, -1.5, 1.5), 0.0)
        income = np.clip(z_income, -2.0, 2.0)
        if income_effect is not None:
            income = income * income_effect
        travel_notice = (reason == CALL_REASONS.index("travel_notice")) & benefit.travel
        logit: F64 = (
            self.intercept
            + np.array([self.kind[k] for k in BENEFIT_KINDS])[benefit.kind]
            + self.headline * (benefit.typical_log_value - _log_value(np.asarray(60.0)))
            + relevance
            + self.affinity * affinity
            + self.tenure * np.exp(-tenure_days / self.tenure_scale_days)
            + self.digital_youth * digital_youth
            + self.protection_age * protection_age
            + self.affluent_perk * income * (benefit.kind == _PERK)
            - self.thrifty_earn * income * (benefit.kind == _EARN)
            + self.engagement * engagement
            + self.enrollment
            * benefit.enroll
            * (1.0 - self.engaged_enrollment * np.clip(engagement, -1.5, 1.5))
            + self.declined_recently * declined_recently
            + self.declined_before * (declined_before & ~declined_recently)
            + np.array([self.reason[r] for r in CALL_REASONS])[reason]
            + self.travel_notice_travel * travel_notice
            + self.rank_step * (rank - 1)
            + agent_effect
        )
        return logit

    def general_call_logit(
        self,
        benefit: _BenefitView,
        value_usd: F64,
        spend_share: F64,
        affinity: F64,
        persona_age: F64,
        persona_z_income: F64,
        persona_engagement: F64,
    ) -> F64:
        """`logit` for each (person, benefit) of the arrays' shape, pitched first on a general call by an
        average agent to a long-standing cardholder who never declined it: the reference chance that the
        counterfactual classes and `p_natural` are measured from. The persona columns are one per person
        (row)."""
        shape = value_usd.shape
        return self.logit(
            benefit,
            value_usd,
            spend_share,
            affinity,
            np.full(shape, np.inf),
            np.broadcast_to(persona_age[:, None], shape),
            np.broadcast_to(persona_z_income[:, None], shape),
            np.broadcast_to(persona_engagement[:, None], shape),
            np.zeros(shape, dtype=bool),
            np.zeros(shape, dtype=bool),
            np.full(shape, CALL_REASONS.index("general")),
            np.ones(shape, dtype=np.int64),
            np.zeros(shape),
        )


def _log_value(value_usd: F64) -> F64:
    """Log of a yearly value, softened: a few dollars a year mean next to nothing to anyone."""
    logged: F64 = np.log(value_usd + _VALUE_OFFSET_USD)
    return logged


def _log_share(share: F64) -> F64:
    """Log of a share of yearly spend, softened: below about 1 % a category is simply not someone's thing."""
    logged: F64 = np.log(share + _SHARE_OFFSET)
    return logged


def _stretch(log_ratio: F64, convexity: float) -> F64:
    """(ratio^c − 1) / c of a log ratio: the log ratio itself at c = 0, the ratio minus one at c = 1."""
    if convexity == 0.0:
        return log_ratio
    stretched: F64 = np.expm1(convexity * log_ratio) / convexity
    return stretched


TRUTH: Final = TrueAdoptionModel()

# The benefit a regime-shift world launches on its shift date, and the products that gain it.
LAUNCHED_BENEFIT: Final[Mapping[str, object]] = {
    "id": "wellness_credit",
    "name": "Wellness credit",
    "kind": "statement_credit",
    "spend_categories": ["health"],
    "annual_credit_usd": 100,
    "requires_enrollment": True,
    "unsuitable_call_reasons": ["dispute", "complaint"],
    "talking_point": (
        "Spends ~{est_annual_spend_usd} a year on health; new on the card: up to {annual_credit_usd} a "
        "year back on pharmacy, doctor and dental bills once enrolled: ~{est_annual_value_usd} a year for them."
    ),
}
LAUNCHED_ON_PRODUCTS: Final = ("everyday", "gold", "home")


@dataclass(frozen=True)
class RegimeShift:
    """How a world changes from `starts` on: what a card issuer lives through in a downturn.

    - travel: card spend in the travel categories falls to (1 − `travel_drop`) of its level on the
      shift day and recovers with time constant `travel_recovery_days`; a travel benefit is worth that
      much less meanwhile (the truth sees its value scaled by the same factor), and travel notices
      become as much rarer;
    - a CRM attribute's effect flips: the truth's income terms (perks appeal to the affluent, earn rates
      to the less well-off) are multiplied by `income_effect` (−1: the other way round);
    - a new benefit (`LAUNCHED_BENEFIT`) joins the products in `LAUNCHED_ON_PRODUCTS` (of those the
      catalog has): nobody uses it, nor is it presented, before the shift, and people chose their card
      without it;
    - the callers: the call rate after the shift is multiplied by exp(`caller_income_slope` × income
      score), normalised to keep the volume, and call reasons move by `reason_log_odds`.
    """

    starts: date
    travel_drop: float = 0.75
    travel_recovery_days: float = 150.0
    income_effect: float = -1.0
    caller_income_slope: float = -0.6
    reason_log_odds: Mapping[str, float] = dataclasses.field(
        default_factory=lambda: {"hardship": 1.0, "payment": 0.4, "balance_inquiry": 0.2}
    )

    def travel_factor(self, day: npt.NDArray[np.integer]) -> F64:
        """Travel spend (and a travel benefit's worth) on these day numbers, against before the shift."""
        since = (np.asarray(day, dtype=np.int64) - _day_number(self.starts)).astype(np.float64)
        factor: F64 = np.where(
            since < 0,
            1.0,
            1.0 - self.travel_drop * np.exp(-np.maximum(since, 0.0) / self.travel_recovery_days),
        )
        return factor
