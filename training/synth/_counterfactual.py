"""Synthetic world, counterfactual: an uplift mix → which benefits people take up on their own, how fast,
and what a pitch on the wrong call costs the call's NPS.

Opt-in (`generate_world(..., uplift_mix=UpliftMix(...))`, `nba generate --uplift-mix 1:1:1`); a world
without it is row for row what it was. In a counterfactual world every (cardholder, benefit) pair has a
natural hazard: the chance per day of starting to use the benefit with no conversation. It is the one truth
behind both the day a cardholder starts on their own (drawn once, from the card's activation on) and the
oracle's `p_natural` (the chance of starting in the 30 days from a date, given not started before it):

    λ(τ) = λ₀ · (1 + TENURE_BOOST · e^(−τ / TENURE_SCALE_DAYS))       τ = days since the card's activation
    Λ(τ) = λ₀ · (τ + TENURE_BOOST · TENURE_SCALE_DAYS · (1 − e^(−τ / TENURE_SCALE_DAYS)))
    p_natural(D) = 1 − exp(−(Λ(τ_D + 30) − Λ(τ_D)))

λ₀ is set so that a settled cardholder's p_natural is r × p_ref, where p_ref is the truth's chance of
adoption when the benefit is discussed on a general call at rank 1 (no recent decline, an average agent)
and r the pair's natural ratio: its benefit's class ratio (`CLASS_RATIO`) moved on the logit scale by the
cardholder's engagement and a little noise. Classes: sure things (r about 0.75: people find them anyway),
persuadables (r about 0.03: almost nobody starts without being told) and in between (r about 0.3); the mix
says how many of the catalog's benefits fall in each, drawn from the world's seed before anything else.

A conversation then adds what the cardholder would not have done alone: discussed on a call, a benefit
is taken up within 30 days with chance p_true = max(truth, p_natural), so the uplift p_true − p_natural
is never negative; someone due to start anyway in the window starts anyway.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

import numpy as np

from nba.errors import DataError
from nba.vocab import BENEFIT_KINDS, CALL_REASONS
from training.synth._parameters import F64, I64, _logit

UPLIFT_CLASSES: Final = ("sure_thing", "persuadable", "in_between")
# A benefit's natural ratio p_natural / p_true for a settled, average cardholder, by class.
CLASS_RATIO: Final[Mapping[str, float]] = {"sure_thing": 0.75, "persuadable": 0.03, "in_between": 0.3}
# How a pair's ratio moves around its class's: engaged cardholders find more on their own (logit scale).
RATIO_ENGAGEMENT: Final = 0.3
RATIO_NOISE_SD: Final = 0.2
# New cardholders explore their card: the natural hazard is (1 + boost) times higher at activation.
TENURE_BOOST: Final = 1.0
TENURE_SCALE_DAYS: Final = 240.0
NATURAL_WINDOW_DAYS: Final = 30
# NPS points a discussed pitch of a benefit kind costs on a call of this reason (summed over the call's
# pitches; on top of the stationary world's own effects): selling to someone who called to complain, to
# dispute a charge or in hardship, or asking someone who just lost their card or is paying a bill to spend
# more, is the wrong call.
WRONG_CALL_NPS_DROP: Final[Mapping[str, Mapping[str, float]]] = {
    "complaint": dict.fromkeys(BENEFIT_KINDS, 1.5),
    "dispute": dict.fromkeys(BENEFIT_KINDS, 1.2),
    "hardship": dict.fromkeys(BENEFIT_KINDS, 2.0),
    "lost_card": {"earn_rate": 1.0, "statement_credit": 1.0},
    "payment": {"earn_rate": 0.8},
}
_MIX_PATTERN: Final = re.compile(r"^\s*(\d+)\s*:\s*(\d+)\s*:\s*(\d+)\s*$")


@dataclass(frozen=True)
class UpliftMix:
    """How many of the catalog's benefits are sure things, persuadables and in between, as weights.

    `UpliftMix(1, 1, 1)` splits the catalog in thirds (largest remainders decide the odd benefit out).
    """

    sure_things: int
    persuadables: int
    in_between: int

    @classmethod
    def parse(cls, text: str) -> UpliftMix:
        """'SURE:PERSUADABLE:BETWEEN' weights (non-negative ints, not all zero), e.g. '1:1:1'.

        Raises DataError naming the option and the value otherwise.
        """
        match = _MIX_PATTERN.match(text)
        weights = tuple(int(g) for g in match.groups()) if match else ()
        if not weights or sum(weights) == 0:
            raise DataError(
                "`uplift_mix` must be SURE:PERSUADABLE:BETWEEN, three non-negative integer weights "
                f"not all zero (e.g. 1:1:1), got {text!r}"
            )
        return cls(*weights)

    def __str__(self) -> str:
        return f"{self.sure_things}:{self.persuadables}:{self.in_between}"

    def counts(self, n_benefits: int) -> tuple[int, int, int]:
        """Benefits per class (sure things, persuadables, in between) for a catalog of n benefits."""
        weights = np.array([self.sure_things, self.persuadables, self.in_between], dtype=np.float64)
        exact = n_benefits * weights / weights.sum()
        counts = np.floor(exact).astype(np.int64)
        # Largest remainders, ties to the earlier class.
        for index in np.argsort(-(exact - counts), kind="stable")[: n_benefits - int(counts.sum())]:
            counts[index] += 1
        return int(counts[0]), int(counts[1]), int(counts[2])


@dataclass(frozen=True)
class _Counterfactual:
    """A counterfactual world's fixed part: each benefit's class (index into UPLIFT_CLASSES)."""

    mix: UpliftMix
    benefit_class: I64
    class_logit: F64  # per benefit: logit of its class's natural ratio
    wrong_call_drop: F64  # (call reasons, benefit kinds) NPS points a discussed pitch costs


def assign_classes(mix: UpliftMix, base_adoption: F64, rng: np.random.Generator) -> _Counterfactual:
    """Each benefit's class from how popular it is: the benefits people take up on their own are the
    popular ones. `base_adoption` is each benefit's mean true chance of adoption on a general call in the
    reference population (`_reference_adoption`, the same for every seed); the sure things are the mix's
    count of the most popular, the persuadables as many of the least popular, the rest in between. Ties
    (equal base adoption) are broken by a random order from the world's seed.
    """
    n_benefits = len(base_adoption)
    sure, persuadable, _ = mix.counts(n_benefits)
    tie_break = rng.permutation(n_benefits)
    most_popular_first = np.lexsort((tie_break, -np.asarray(base_adoption, dtype=np.float64)))
    benefit_class = np.full(n_benefits, UPLIFT_CLASSES.index("in_between"), dtype=np.int64)
    benefit_class[most_popular_first[:sure]] = UPLIFT_CLASSES.index("sure_thing")
    benefit_class[most_popular_first[n_benefits - persuadable :]] = UPLIFT_CLASSES.index("persuadable")
    ratio = np.array([CLASS_RATIO[c] for c in UPLIFT_CLASSES])[benefit_class]
    drop = np.zeros((len(CALL_REASONS), len(BENEFIT_KINDS)))
    for reason, by_kind in WRONG_CALL_NPS_DROP.items():
        for kind, points in by_kind.items():
            drop[CALL_REASONS.index(reason), BENEFIT_KINDS.index(kind)] = points
    return _Counterfactual(mix, benefit_class, _logit(ratio), drop)


def natural_base_rate(p_reference: F64, ratio: F64) -> F64:
    """λ₀ per day: a settled cardholder starts within 30 days with chance ratio × p_reference."""
    rate: F64 = -np.log1p(-np.clip(ratio * p_reference, 0.0, 0.999)) / NATURAL_WINDOW_DAYS
    return rate


def cumulative_hazard(base_rate: F64, tau_days: F64) -> F64:
    """Λ(τ): the expected number of natural starts from activation to τ days after it (τ < 0 counts as 0)."""
    tau = np.maximum(tau_days, 0.0)
    hazard: F64 = base_rate * (tau + TENURE_BOOST * TENURE_SCALE_DAYS * -np.expm1(-tau / TENURE_SCALE_DAYS))
    return hazard


def p_natural(base_rate: F64, tau_days: F64) -> F64:
    """Chance of a natural start in the 30 days from τ, for a cardholder who has not started before τ."""
    window = cumulative_hazard(base_rate, tau_days + NATURAL_WINDOW_DAYS) - cumulative_hazard(
        base_rate, tau_days
    )
    chance: F64 = -np.expm1(-window)
    return chance


def draw_natural_tau(rng: np.random.Generator, base_rate: F64) -> F64:
    """Days from activation to the natural start: Λ(τ) = E for E ~ Exp(1), solved by bisection.

    Λ(τ) lies between λ₀τ and λ₀(τ + boost × scale), so τ lies in [E/λ₀ − boost × scale, E/λ₀].
    """
    target = rng.exponential(1.0, base_rate.shape)
    rate = np.maximum(base_rate, 1e-12)
    high = target / rate
    low = np.maximum(high - TENURE_BOOST * TENURE_SCALE_DAYS, 0.0)
    for _ in range(40):
        middle = 0.5 * (low + high)
        below = cumulative_hazard(rate, middle) < target
        low = np.where(below, middle, low)
        high = np.where(below, high, middle)
    tau: F64 = np.minimum(high, 1e9)
    return tau


def natural_ratio(
    counterfactual: _Counterfactual, benefit: I64, engagement: F64, rng: np.random.Generator
) -> F64:
    """Each (cardholder, benefit) pair's natural ratio r: its class's, moved by engagement and noise."""
    moved = (
        counterfactual.class_logit[benefit]
        + RATIO_ENGAGEMENT * np.clip(engagement, -2.0, 2.0)
        + rng.normal(0.0, RATIO_NOISE_SD, benefit.shape)
    )
    ratio: F64 = 1.0 / (1.0 + np.exp(-moved))
    return ratio
