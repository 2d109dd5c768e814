"""Scoring: a call's candidate rows → each one's chance of adoption, and the chosen rows' reasons."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal, Protocol, get_args

import numpy as np
import numpy.typing as npt

from nba.decision._reasons import CallReasons, Reasoner
from nba.errors import ModelError
from nba.model._attribution import PathAttributor, Routes
from nba.model._bundle import ModelBundle

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]

ScorerName = Literal["tree_walk", "booster"]
SCORERS: Final[tuple[str, ...]] = get_args(ScorerName)


@dataclass(frozen=True, slots=True)
class Scores:
    """One call's candidates scored: `p_adopt` per row, and the rows' leaves when the scorer walked the
    trees itself (the reasons reuse them)."""

    p_adopt: FloatArray
    routes: Routes | None = None


class Scorer(Protocol):
    """How `Engine.decide` scores a call's candidate rows and explains the chosen ones."""

    @property
    def name(self) -> str: ...

    @property
    def reasoner(self) -> Reasoner: ...

    def score(self, X: FloatArray) -> Scores: ...

    def reasons(
        self, X: FloatArray, scores: Scores, chosen: IntArray, categories: BoolArray
    ) -> CallReasons: ...


class TreeWalkScorer:
    """'tree_walk': one walk through the model's flattened trees gives both the scores (the leaves' log-odds
    summed, then the model's calibration) and the contributions the reasons are phrased from.

    Reproduces the model's own scores only for a binary model whose raw score is log-odds (objective
    `binary sigmoid:1`), read from the booster the reasoner's attributor was built from.
    """

    name = "tree_walk"

    def __init__(self, bundle: ModelBundle, reasoner: Reasoner) -> None:
        booster = bundle.model.booster_
        objective = str(booster.dump_model(num_iteration=1).get("objective", ""))
        if objective.split() != ["binary", "sigmoid:1"]:
            raise ModelError(
                f"the 'tree_walk' scorer needs a binary model scored as log-odds (objective 'binary "
                f"sigmoid:1'); model {bundle.version} has {objective!r}: use the 'booster' scorer"
            )
        if getattr(reasoner.attributor, "booster_", None) is not booster:
            raise ValueError(
                "`reasoner` must be built from the bundle's own booster (its trees score the rows)"
            )
        self.bundle = bundle
        self.reasoner = reasoner

    def score(self, X: FloatArray) -> Scores:
        routes, raw = self.reasoner.attributor.route_and_score(X)
        return Scores(self.bundle.model.calibrator_.of_log_odds(raw), routes)

    def reasons(self, X: FloatArray, scores: Scores, chosen: IntArray, categories: BoolArray) -> CallReasons:
        assert scores.routes is not None  # score() routes every row
        reasoner = self.reasoner
        features, counts = reasoner.attributor.top_features_of(scores.routes, chosen, reasoner.ranked)
        return reasoner.phrases_of_ranked(X[chosen], features, counts, categories)


class BoosterScorer:
    """'booster': LightGBM's own predict gives the scores; the reasons walk the chosen rows through the
    flattened trees again (two passes: for models the tree walk cannot score, and as its reference)."""

    name = "booster"

    def __init__(self, bundle: ModelBundle, reasoner: Reasoner) -> None:
        self.bundle = bundle
        self.reasoner = reasoner

    def score(self, X: FloatArray) -> Scores:
        return Scores(self.bundle.model.predict_proba(X)[:, 1])

    def reasons(self, X: FloatArray, scores: Scores, chosen: IntArray, categories: BoolArray) -> CallReasons:
        return self.reasoner(X, chosen, categories)


def default_reasoner(bundle: ModelBundle) -> Reasoner:
    """Reasons from path attributions over the model's trees (precomputed per leaf at load)."""
    model = bundle.model
    attributor = PathAttributor.from_booster(model.booster_, num_iteration=model.best_iteration_)
    return Reasoner(attributor, bundle.manifest.feature_names)


def make_scorer(name: str, bundle: ModelBundle, reasoner: Reasoner | None = None) -> Scorer:
    """The scorer called `name` (one of SCORERS) for `bundle`; `reasoner` reuses one built for the same
    model (building it parses every tree), else a new one is built.

    Raises ValueError for an unknown name and ModelError when the model cannot be scored so.
    """
    if name not in SCORERS:
        raise ValueError(f"`scorer` must be one of {', '.join(SCORERS)}, got {name!r}")
    reasoner = reasoner or default_reasoner(bundle)
    return TreeWalkScorer(bundle, reasoner) if name == "tree_walk" else BoosterScorer(bundle, reasoner)
