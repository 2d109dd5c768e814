"""Uplift against the truth: a counterfactual world's oracle (p_true, p_natural) and stored models → the
adoptions each model's top K truly causes on a general call at the data's as-of, beside the best possible.

A policy's caused adoptions are Σ (p_true − p_natural) over the suggestions it shows (per cardholder): what
the conversations add beyond what the cardholders would have done alone. The best is the top K by that
difference, ignoring the arbitration's rules; a policy's oracle uplift ratio is its caused adoptions over the
best's. Only worlds made with an uplift mix (`nba generate --uplift-mix`) have `p_natural`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from nba.contract import catalog_for, load_catalog, open_data
from nba.decision import ArbitrationConfig
from nba.errors import DataError
from nba.features import BenefitTable
from nba.model import ModelBundle, load_bundle
from training.engine_job import mcc_map_for
from training.evaluate import Evaluation, evaluate_oracle, read_oracle
from training.synth import ORACLE_NATURAL_COLUMN
from training.training_run import bundle_parts

ORACLE_UPLIFT_COLUMNS = ("cardholder_id", "benefit_id", "p_true", "p_natural")


@dataclass(frozen=True)
class CausedAdoptions:
    """Per policy (a model's name, or `random`): the mean true adoptions caused and adopted per cardholder by
    its top K; `best`: the best top K's caused adoptions; `cardholders`: how many were ranked."""

    caused: dict[str, float] = field(default_factory=dict)
    adopted: dict[str, float] = field(default_factory=dict)
    best: float = float("nan")
    cardholders: int = 0

    def ratio(self, name: str) -> float:
        """The oracle uplift ratio of policy `name`: its caused adoptions over the best top K's."""
        return self.caused[name] / self.best if self.best > 0 else float("nan")


def read_uplift_oracle(path: Path) -> pd.DataFrame:
    """A counterfactual world's oracle, as `read_oracle` reads it (with p_natural); DataError otherwise."""
    oracle = read_oracle(path)
    if ORACLE_NATURAL_COLUMN not in oracle.columns:
        raise DataError(
            f"{path}: the oracle has no {ORACLE_NATURAL_COLUMN} column: only a counterfactual world "
            "(nba generate --uplift-mix) says what happens without a conversation"
        )
    return oracle


def caused_adoptions(
    data_dir: Path,
    oracle_path: Path,
    models: Mapping[str, Path | ModelBundle],
    top_k: int = 3,
    seed: int = 0,
) -> CausedAdoptions:
    """The true adoptions each model's top K (no value floor, as training evaluates) causes on a general
    call at the data's as-of, for every cardholder with a candidate, beside a random top K and the best;
    each model (a stored model folder, or a loaded bundle) scores its candidates through its own features
    and spend estimator, and ranks them by its objective.

    Raises DataError for an oracle without p_natural, ModelError for a model that does not load.
    """
    oracle = read_uplift_oracle(oracle_path)
    config = ArbitrationConfig(value_floor_usd=0.0, top_k=top_k)
    catalog = load_catalog(catalog_for(data_dir))
    benefits = BenefitTable.from_catalog(catalog)
    mcc_map = mcc_map_for(data_dir)
    caused: dict[str, float] = {}
    adopted: dict[str, float] = {}
    best, cardholders = float("nan"), 0
    with open_data(data_dir) as data:
        as_of = pd.Timestamp(data.resolve_as_of(None))
        for name, model in models.items():
            bundle = model if isinstance(model, ModelBundle) else load_bundle(model)
            bundle.check_catalog(catalog)
            # The same oracle evaluation `nba train --oracle` runs (no popularity: only `random` is kept).
            evaluation = Evaluation()
            evaluate_oracle(
                evaluation,
                data,
                as_of,
                oracle,
                bundle_parts(bundle, benefits),
                mcc_map,
                catalog,
                benefits,
                {},
                config,
                seed,
            )
            caused[name], _ = evaluation.oracle_uplift["model"]
            adopted[name], _ = evaluation.oracle["model"]
            if "random" not in caused:
                caused["random"], _ = evaluation.oracle_uplift["random"]
                adopted["random"], _ = evaluation.oracle["random"]
                best = evaluation.metrics["oracle_best_caused_adoptions_top_k"]
                cardholders = evaluation.oracle_cardholders
    return CausedAdoptions(caused, adopted, best, cardholders)
