"""NPS arithmetic: counts of promoters, passives and detractors per group → NPS with a bootstrap 95% interval."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from nba.vocab import INSIGHTS_BOOTSTRAP_RESAMPLES, INSIGHTS_MIN_GROUP_ANSWERS


@dataclass(frozen=True)
class NpsRow:
    """One group's NPS: the answers behind it, % promoters − % detractors, and its bootstrap 95% interval.

    `too_few` marks a group with fewer answers than the report's threshold: its interval is the honest
    part, its point estimate is not a finding.
    """

    dimension: str
    group: str
    answers: int
    promoters: int
    passives: int
    detractors: int
    nps: float
    low: float
    high: float
    too_few: bool


@dataclass(frozen=True)
class GroupCounts:
    """Answers per group, as a group-by returns them: one entry per group, in the order to show."""

    groups: tuple[str, ...]
    promoters: np.ndarray
    passives: np.ndarray
    detractors: np.ndarray


def nps_of(promoters: np.ndarray, passives: np.ndarray, detractors: np.ndarray) -> np.ndarray:
    """NPS in points (−100 to 100) from counts: % promoters − % detractors of all answers."""
    answers = promoters + passives + detractors
    points: np.ndarray = 100.0 * (promoters - detractors) / np.maximum(answers, 1)
    return points


def bootstrap_nps(
    counts: GroupCounts,
    dimension: str,
    *,
    seed: int,
    resamples: int = INSIGHTS_BOOTSTRAP_RESAMPLES,
    min_answers: int = INSIGHTS_MIN_GROUP_ANSWERS,
) -> tuple[NpsRow, ...]:
    """Each group's NPS with a percentile bootstrap 95% interval over its answered calls.

    Resampling a group's n calls with replacement and counting each kind of answer is drawing the three
    counts from a multinomial with the group's observed shares, so one vectorised draw of shape
    (resamples, groups, 3) does every group at once, whatever n is (1 M calls cost what 100 do).
    The same `seed` gives the same intervals.

    Example:
        >>> counts = GroupCounts(("a",), np.array([6]), np.array([2]), np.array([2]))
        >>> bootstrap_nps(counts, "x", seed=0)[0].nps
        40.0
    """
    promoters = np.asarray(counts.promoters, dtype=np.int64)
    passives = np.asarray(counts.passives, dtype=np.int64)
    detractors = np.asarray(counts.detractors, dtype=np.int64)
    answers = promoters + passives + detractors
    if len(counts.groups) == 0:
        return ()
    if np.any(answers <= 0):
        empty = [g for g, n in zip(counts.groups, answers, strict=True) if n <= 0]
        raise ValueError(f"every group needs at least one answer; {empty} have none")
    shares = np.stack([promoters, passives, detractors], axis=1) / answers[:, None]
    rng = np.random.default_rng(seed)
    draws = rng.multinomial(answers, shares, size=(resamples, len(answers)))
    resampled = nps_of(draws[..., 0], draws[..., 1], draws[..., 2])
    low, high = np.percentile(resampled, [2.5, 97.5], axis=0)
    point = nps_of(promoters, passives, detractors)
    return tuple(
        NpsRow(
            dimension=dimension,
            group=group,
            answers=int(answers[i]),
            promoters=int(promoters[i]),
            passives=int(passives[i]),
            detractors=int(detractors[i]),
            nps=float(point[i]),
            low=float(low[i]),
            high=float(high[i]),
            too_few=bool(answers[i] < min_answers),
        )
        for i, group in enumerate(counts.groups)
    )


@dataclass(frozen=True)
class PitchRow:
    """One call reason: NPS on calls where a talking point was discussed beside calls where none was, and
    the difference (with a pitch − without) with its bootstrap 95% interval. `too_few`: either side has
    fewer answers than the report's threshold."""

    call_reason: str
    with_pitch: NpsRow
    without_pitch: NpsRow
    difference: float
    low: float
    high: float
    too_few: bool

    @property
    def verdict(self) -> str:
        if self.too_few:
            return "too few to say"
        if self.high < 0:
            return "lower with a pitch"
        if self.low > 0:
            return "higher with a pitch"
        return "no clear difference"


def bootstrap_pitch_difference(
    with_pitch: GroupCounts,
    without_pitch: GroupCounts,
    *,
    seed: int,
    resamples: int = INSIGHTS_BOOTSTRAP_RESAMPLES,
    min_answers: int = INSIGHTS_MIN_GROUP_ANSWERS,
) -> tuple[PitchRow, ...]:
    """Per group (the two GroupCounts hold the same groups in the same order): each side's NPS and the
    difference with a percentile bootstrap interval, the two sides resampled independently."""
    if with_pitch.groups != without_pitch.groups:
        raise ValueError("the two sides must hold the same groups in the same order")
    if not with_pitch.groups:
        return ()
    sides = []
    for i, counts in enumerate((with_pitch, without_pitch)):
        rows = bootstrap_nps(counts, "pitch", seed=seed + i, resamples=resamples, min_answers=min_answers)
        answers = np.array([r.answers for r in rows])
        shares = np.array([[r.promoters, r.passives, r.detractors] for r in rows]) / answers[:, None]
        draws = np.random.default_rng(seed + 100 + i).multinomial(
            answers, shares, size=(resamples, len(rows))
        )
        sides.append((rows, nps_of(draws[..., 0], draws[..., 1], draws[..., 2])))
    (with_rows, with_draws), (without_rows, without_draws) = sides
    low, high = np.percentile(with_draws - without_draws, [2.5, 97.5], axis=0)
    return tuple(
        PitchRow(
            call_reason=group,
            with_pitch=with_rows[i],
            without_pitch=without_rows[i],
            difference=with_rows[i].nps - without_rows[i].nps,
            low=float(low[i]),
            high=float(high[i]),
            too_few=with_rows[i].too_few or without_rows[i].too_few,
        )
        for i, group in enumerate(with_pitch.groups)
    )


def counts_from_rows(rows: Sequence[tuple[str, int, int, int]]) -> GroupCounts:
    """GroupCounts from (group, promoters, passives, detractors) rows, as a SQL group-by yields them."""
    return GroupCounts(
        groups=tuple(str(r[0]) for r in rows),
        promoters=np.array([r[1] for r in rows], dtype=np.int64),
        passives=np.array([r[2] for r in rows], dtype=np.int64),
        detractors=np.array([r[3] for r in rows], dtype=np.int64),
    )
