"""NPS truth: the call truth's NPS columns and a policy's slates on the logged calls → the true chance each call's
answer is a detractor, the expectation over what the agent discusses and what the cardholder takes up.

The survey's latent score (`_simulation._survey_answers`) is the call's mean (base, satisfaction, reason)
+ a lift when a relevant benefit was taken up and accepted − a drop when anything was pitched on a tense call
− the points each discussed pitch costs (wrong call, little value) + normal noise (sd NPS_NOISE_SD); the answer
is a detractor when it rounds to NPS_DETRACTOR_MAX or less, i.e. when the latent is below NPS_DETRACTOR_MAX + 0.5.
Each shown suggestion is, independently, not discussed, discussed and not a relevant take-up, or discussed and
a relevant take-up; the share is exact over those 3^k states of a k-suggestion slate (k ≤ MAX_EXACT_SLATE).
"""

from __future__ import annotations

import itertools
import math
from typing import Final

import numpy as np

from nba.vocab import NPS_DETRACTOR_MAX
from training.synth._parameters import (
    F64,
    I64,
    NPS_NOISE_SD,
    NPS_RELEVANT_ACCEPT_LIFT,
    NPS_TENSE_PITCH_DROP,
    Bool,
)

MAX_EXACT_SLATE: Final = 5  # 3^5 = 243 states per call


def _normal_cdf(z: F64) -> F64:
    cdf: F64 = 0.5 * np.vectorize(math.erfc)(-z / math.sqrt(2.0))
    return cdf


def detractor_chance(
    latent_mean: F64, tense: Bool, slot_call: I64, p_discussed: F64, p_relevant: F64, points: F64
) -> F64:
    """Per call, the true chance its answer is a detractor under a slate: `latent_mean` and `tense` per call;
    per shown suggestion its call's position (`slot_call`), the chance it is discussed at its rank, the chance,
    discussed, it is a relevant take-up, and the latent points a discussion costs (≤ 0).

    Raises ValueError when a call has more than MAX_EXACT_SLATE suggestions.

    >>> detractor_chance(np.array([6.5]), np.array([False]), np.zeros(0, dtype=np.int64),
    ...                  np.zeros(0), np.zeros(0), np.zeros(0)).tolist()
    [0.5]
    """
    n = len(latent_mean)
    per_call = np.bincount(slot_call, minlength=n) if len(slot_call) else np.zeros(n, dtype=np.int64)
    width = int(per_call.max()) if n else 0
    if width > MAX_EXACT_SLATE:
        raise ValueError(
            f"a slate of {width} suggestions: the exact NPS truth covers up to {MAX_EXACT_SLATE}"
        )
    # Slot j of each call (padded with suggestions never discussed).
    d = np.zeros((n, width))
    r = np.zeros((n, width))
    pts = np.zeros((n, width))
    if len(slot_call):
        order = np.argsort(slot_call, kind="stable")
        starts = np.r_[0, np.cumsum(per_call)[:-1]]
        position = np.arange(len(slot_call)) - starts[slot_call[order]]
        d[slot_call[order], position] = p_discussed[order]
        r[slot_call[order], position] = p_relevant[order]
        pts[slot_call[order], position] = points[order]
    threshold = NPS_DETRACTOR_MAX + 0.5
    chance = np.zeros(n)
    for states in itertools.product(range(3), repeat=width):
        probability = np.ones(n)
        mean = latent_mean.astype(np.float64).copy()
        any_discussed = np.zeros(n, dtype=bool)
        any_relevant = np.zeros(n, dtype=bool)
        for j, state in enumerate(states):
            if state == 0:
                probability = probability * (1.0 - d[:, j])
                continue
            probability = probability * d[:, j] * (r[:, j] if state == 2 else 1.0 - r[:, j])
            mean = mean + pts[:, j]
            any_discussed |= True
            any_relevant |= state == 2
        mean = mean + NPS_RELEVANT_ACCEPT_LIFT * any_relevant - NPS_TENSE_PITCH_DROP * (tense & any_discussed)
        chance += probability * _normal_cdf((threshold - mean) / NPS_NOISE_SD)
    return chance
