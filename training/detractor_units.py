"""Detractor units: a run's labelled presentations and the NPS answers → one unit per suggestion discussed on an
answered call (its call's answer a detractor or not, a weight), with everything left out counted.

Attribution: the survey answers for the whole call, not for one suggestion. Every suggestion discussed on the call
(accepted, declined or already aware) is a unit carrying the call's answer, each weighted 1 / (suggestions
discussed on the call), so every answered call weighs one in all, however many pitches it had. The model then
estimates the chance of a detractor on a call where this suggestion was discussed, whatever else was: the other
pitches' share is averaged in, as the arbitration meets them.

Answered calls where nothing was discussed (every suggestion shown was marked not discussed) are units too, one
per call, its row made `pitchless` (nba.model: pair columns missing but the call reason): they teach the model the
call's detractor chance without a pitch, the baseline of the added detractors (`pitchless_calls`).

Left out, and counted (`DetractorUnits.counts`): suggestions on calls nobody answered (`no_answer`); suggestions
shown but not discussed or never marked (`not_discussed`, `unmarked`: the cardholder heard nothing of them, the
answer is not about them); answered calls of the presentations the run does not label (the last 30 days before
the as-of) are not among the rows at all. A call answered more than once keeps its lowest score
(`calls_answered_twice`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pandas as pd

from nba.model import MIN_DETRACTOR_CALLS, MIN_DETRACTOR_CLASS
from nba.vocab import NOT_DISCUSSED, NPS_DETRACTOR_MAX, UNMARKED

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]
IntArray = npt.NDArray[np.int64]


@dataclass(frozen=True)
class DetractorUnits:
    """`at`: the units' positions in the run's rows; `detractor` (0/1) and `weight` per unit; `call_id` per unit;
    `counts` of what was kept and left out; `too_few`: why no model is fitted (None: enough to fit one)."""

    at: IntArray
    detractor: FloatArray
    weight: FloatArray
    call_id: npt.NDArray[np.object_]
    counts: dict[str, int]
    too_few: str | None
    # Answered calls where nothing was discussed (every suggestion shown marked not discussed): one row each
    # (its first), to be made `pitchless`, and its call's answer; the baseline of the added detractors.
    pitchless_at: IntArray
    pitchless_detractor: FloatArray

    def describe(self) -> str:
        c = self.counts
        return (
            f"{c['units']:,} discussed suggestions on {c['answered_calls']:,} answered calls, "
            f"{c['detractor_calls']:,} of them detractors; left out: {c['no_answer']:,} suggestions on calls "
            f"with no answer, {c['not_discussed']:,} not discussed, {c['unmarked']:,} unmarked; and "
            f"{c['pitchless_calls']:,} answered calls where nothing was discussed, the no-pitch baseline"
        )


def build_detractor_units(rows: pd.DataFrame, answers: pd.DataFrame, train: BoolArray) -> DetractorUnits:
    """Units from `rows` (labelled presentations: call_id, outcome) and `answers` (nps: call_id, score); `train`
    marks the rows of the training slice, where the minimum (MIN_DETRACTOR_CALLS answered calls,
    MIN_DETRACTOR_CLASS detractors and as many other answers) is judged.

    Never raises for too few answers: `too_few` says why, and the model folder then has no detractor model.
    """
    scores = answers.groupby("call_id")["score"].agg(["min", "size"])
    outcome = rows["outcome"]
    heard = ~outcome.isin((NOT_DISCUSSED, UNMARKED)).to_numpy()
    score = rows["call_id"].map(scores["min"]).to_numpy(dtype=np.float64)
    answered = ~np.isnan(score)
    kept = heard & answered
    at = np.flatnonzero(kept).astype(np.int64)
    call_id = rows["call_id"].to_numpy(dtype=object)[at]
    _, per_call_index, per_call = np.unique(call_id.astype(str), return_inverse=True, return_counts=True)
    weight = 1.0 / per_call[per_call_index] if len(at) else np.zeros(0)
    detractor = (score[at] <= NPS_DETRACTOR_MAX).astype(np.float64)
    train_calls = pd.Series(detractor[train[at]], index=call_id[train[at]])
    train_calls = train_calls[~train_calls.index.duplicated()]
    unit_calls = pd.Series(detractor, index=call_id)
    unit_calls = unit_calls[~unit_calls.index.duplicated()]
    # Calls where nothing was discussed: no row of theirs heard, a row marked not discussed (an unmarked one may
    # have been said, so a call with one is not among them).
    every_call = rows["call_id"].to_numpy(dtype=object)
    heard_on_call = (
        pd.Series(heard | (outcome == UNMARKED).to_numpy(), index=every_call).groupby(level=0).any()
    )
    quiet = (outcome == NOT_DISCUSSED).to_numpy() & answered
    quiet &= ~pd.Series(every_call).map(heard_on_call).to_numpy(dtype=bool)
    candidates = np.flatnonzero(quiet)
    pitchless_at = candidates[~pd.Series(every_call[candidates]).duplicated().to_numpy()].astype(np.int64)
    pitchless_detractor = (score[pitchless_at] <= NPS_DETRACTOR_MAX).astype(np.float64)
    counts = {
        "answers": len(answers),
        "calls_answered_twice": int((scores["size"] > 1).sum()),
        "units": len(at),
        "answered_calls": len(unit_calls),
        "detractor_calls": int(unit_calls.sum()),
        "training_calls": len(train_calls),
        "training_detractor_calls": int(train_calls.sum()),
        "no_answer": int((heard & ~answered).sum()),
        "not_discussed": int((outcome == NOT_DISCUSSED).sum()),
        "unmarked": int((outcome == UNMARKED).sum()),
        "pitchless_calls": len(pitchless_at),
    }
    return DetractorUnits(
        at, detractor, weight, call_id, counts, _too_few(counts), pitchless_at, pitchless_detractor
    )


def _too_few(counts: dict[str, int]) -> str | None:
    """Why the training slice cannot carry a detractor model, or None when it can."""
    calls, detractors = counts["training_calls"], counts["training_detractor_calls"]
    if counts["answers"] == 0:
        return "no detractor model: the data has no NPS answers at all (the nps table is empty or missing)"
    if calls < MIN_DETRACTOR_CALLS:
        return (
            f"no detractor model: {calls:,} answered calls with a discussed suggestion in the training slice "
            f"(of {counts['answers']:,} NPS answers); it needs at least {MIN_DETRACTOR_CALLS:,}"
        )
    if min(detractors, calls - detractors) < MIN_DETRACTOR_CLASS:
        return (
            f"no detractor model: {detractors:,} detractors and {calls - detractors:,} other answers among the "
            f"training slice's {calls:,} answered calls; it needs at least {MIN_DETRACTOR_CLASS} of each"
        )
    return None
