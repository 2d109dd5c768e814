"""Uplift units: a run's labelled calls and every benefit eligible on them → treated and control units
(pair features, shown, discussed, adopted within 30 days, the logged chance of being shown) for the uplift model.

A unit is one (call, benefit eligible on the call). Treated: shown and discussed (outcome accepted, declined
or already aware). Controls: shown and marked `not_discussed` (on the screen, not said), and eligible but not
shown on that call (the logging policy, its ε-exploration among them, chose others). Left out, and counted:
`unmarked` units (shown, nobody recorded whether it was said: neither treated nor control). Cardholders who
were never on a call are not controls: a conversation cannot happen without a call, so they are no
comparison for one (the treatment has no chance there at all; their features describe other people).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta

import numpy as np
import numpy.typing as npt
import pandas as pd

from nba.contract import Catalog
from nba.errors import DataError
from nba.features import BenefitTable
from nba.model import UpliftSample
from nba.vocab import NOT_DISCUSSED, UNMARKED
from training.evaluate import ScoringParts, eligible_pairs
from training.pairs import HolderSnapshots, PairMatrix, build_pair_matrix
from training.presentations import LABEL_WINDOW_DAYS

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

# What the report says when no logged chance of being shown lies strictly between 0 and 1: the logging policy
# never explored, so treated and controls differ by whatever the policy chose them on.
OBSERVATIONAL_ASSUMPTIONS = (
    "no ε-exploration in the data (every logged chance of being shown is 1 or missing): the uplift "
    "estimate rests on assumptions the data cannot check: (1) no unmeasured confounding: whether a "
    "benefit was shown and discussed depends only on features the model sees (not on what the agent "
    "heard on the call); (2) overlap: cardholders like the treated ones were also left untreated, so "
    "the estimated chance of treatment is neither 0 nor 1 (it is clipped to [0.02, 0.98]); (3) the "
    "models of the chance of treatment or of adoption are right (the DR-learner needs one of the two)"
)


@dataclass(frozen=True)
class UpliftUnits:
    """The units and their model rows: `frame` (call_id, cardholder_id, as_of, benefit_id, call_reason,
    shown, discussed, adopted, logging_prob), `matrix` (the pair matrix, rank 1 for every unit as a
    candidate has when scored), and what was counted on the way."""

    frame: pd.DataFrame
    matrix: PairMatrix
    counts: dict[str, int]
    explored: bool

    @property
    def shown(self) -> BoolArray:
        return self.frame["shown"].to_numpy(dtype=bool)

    @property
    def discussed(self) -> BoolArray:
        return self.frame["discussed"].to_numpy(dtype=bool)

    @property
    def treated(self) -> BoolArray:
        return self.shown & self.discussed

    @property
    def adopted(self) -> FloatArray:
        return self.frame["adopted"].to_numpy(dtype=np.float64)

    @property
    def shown_prob(self) -> FloatArray:
        """The logged chance of being shown where the unit was shown and it was logged, else NaN."""
        logged = self.frame["logging_prob"].to_numpy(dtype=np.float64)
        return np.where(self.shown, logged, np.nan)

    def sample(self, mask: BoolArray, names: Sequence[str], categorical: Sequence[str]) -> UpliftSample:
        """The units `mask` selects as the uplift learner reads them (grouped by cardholder)."""
        every = UpliftSample(
            self.matrix.X,
            self.shown,
            self.discussed,
            self.adopted,
            self.shown_prob,
            names,
            categorical,
            self.frame["cardholder_id"].to_numpy(dtype=object),
        )
        return every.rows(mask)


def build_uplift_units(
    rows: pd.DataFrame,
    usage: pd.DataFrame,
    snapshots: HolderSnapshots,
    parts: ScoringParts,
    catalog: Catalog,
    benefits: BenefitTable,
) -> UpliftUnits:
    """Units for the calls of `rows` (labelled presentations: call_id, cardholder_id, benefit_id, as_of,
    call_reason, outcome, logging_prob, adopted); `usage` is benefit_usage (cardholder_id, benefit_id,
    first_used_date) for the labels of benefits not shown; `snapshots` hold every call's cardholder.

    Raises DataError when there is nothing to compare: no treated unit, or no control at all.
    """
    calls = rows[["call_id", "cardholder_id", "as_of", "call_reason"]].drop_duplicates("call_id")
    eligible = eligible_pairs(calls, snapshots, catalog, benefits)
    shown = rows[["call_id", "benefit_id", "outcome", "logging_prob", "adopted"]]
    units = eligible.merge(shown, on=["call_id", "benefit_id"], how="outer", indicator=True)
    # A shown benefit the rules would not suggest now (a catalog change, a call reason it no longer suits)
    # is still a logged unit: its call's columns come from its row.
    only_shown = units["_merge"] == "right_only"
    if only_shown.any():
        lookup = rows.drop_duplicates(["call_id", "benefit_id"]).set_index(["call_id", "benefit_id"])
        keys = pd.MultiIndex.from_frame(units.loc[only_shown, ["call_id", "benefit_id"]])
        for column in ("cardholder_id", "as_of", "call_reason"):
            units.loc[only_shown, column] = lookup.loc[keys, column].to_numpy()
    units["rank"] = 1
    units["shown"] = units["_merge"] != "left_only"
    units = units.drop(columns="_merge")
    unmarked = units["outcome"] == UNMARKED
    counts = {
        "calls": int(calls["call_id"].nunique()),
        "unmarked_left_out": int(unmarked.sum()),
    }
    units = units[~unmarked].reset_index(drop=True)
    units["discussed"] = units["shown"] & (units["outcome"] != NOT_DISCUSSED)
    units["as_of"] = pd.to_datetime(units["as_of"])
    not_shown = ~units["shown"]
    if not_shown.any():
        first_use = usage.assign(first_used_date=pd.to_datetime(usage["first_used_date"]))
        labelled = units.loc[not_shown, ["cardholder_id", "benefit_id", "as_of"]].merge(
            first_use, on=["cardholder_id", "benefit_id"], how="left"
        )
        day = labelled["first_used_date"]
        took = (day >= labelled["as_of"]) & (day <= labelled["as_of"] + timedelta(days=LABEL_WINDOW_DAYS))
        units.loc[not_shown, "adopted"] = took.to_numpy(dtype=np.int8)
    units["adopted"] = units["adopted"].astype(np.int8)
    treated = units["shown"] & units["discussed"]
    counts.update(
        treated=int(treated.sum()),
        controls_not_discussed=int((units["shown"] & ~units["discussed"]).sum()),
        controls_not_shown=int(not_shown.sum()),
    )
    if counts["treated"] == 0:
        raise DataError(
            "--objective uplift: no presentation was discussed (accepted, declined or already aware) on the "
            "labelled calls: there is no treated unit to learn what a conversation adds"
        )
    if counts["controls_not_discussed"] + counts["controls_not_shown"] == 0:
        raise DataError(
            "--objective uplift: no controls at all: every eligible benefit on every labelled call was shown "
            f"and discussed ({counts['treated']:,} units), none marked not_discussed and none left unshown, so "
            "nothing says what happens without a conversation; train with --objective adoption"
        )
    logged = units.loc[units["shown"], "logging_prob"].to_numpy(dtype=np.float64)
    explored = bool(((logged > 0) & (logged < 1)).any())
    matrix = build_pair_matrix(
        units[["call_id", "cardholder_id", "as_of", "benefit_id", "call_reason", "rank"]],
        snapshots,
        parts.holder,
        parts.estimator,
        benefits,
        parts.benefit_codes,
    )
    return UpliftUnits(units, matrix, counts, explored)
