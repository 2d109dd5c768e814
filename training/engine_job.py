"""Engine jobs: a model + a data directory → one cardholder's decision (`nba recommend`) or a batch (`nba score`)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import pyarrow as pa

from nba.bundle import load_bundle
from nba.catalog import catalog_for, load_catalog
from nba.engine import Decision, Engine, EngineConfig
from nba.errors import DataError, ModelError, NotFoundError
from nba.matrix import BenefitTable
from nba.mcc import load_mcc_map
from nba.profiles import build_profiles
from nba.registry import read_current
from nba.tables import open_data
from nba.validation import MCC_OVERRIDE_FILE
from training.features_job import write_table


def resolve_model_dir(model: Path) -> Path:
    """A model folder itself, or a models folder whose CURRENT names the version in service."""
    if (model / "manifest.json").exists():
        return model
    current = read_current(model) if model.is_dir() else None
    if current is None:
        raise NotFoundError(f"{model}: neither a model folder nor a models folder with a CURRENT version")
    return model / current


def load_engine(
    model: Path, data_dir: Path, as_of: date | None = None, config: EngineConfig | None = None
) -> Engine:
    """An engine over a data directory's profiles as of a date (default: the day after its latest date).

    Raises ModelError when the data's catalog no longer fits the model.
    """
    bundle = load_bundle(resolve_model_dir(model))
    catalog = load_catalog(catalog_for(data_dir))
    if catalog.model_fingerprint() != bundle.manifest.catalog_fingerprint:
        raise ModelError(
            f"{bundle.path}: the catalog's benefit ids, kinds, categories, rates or credits differ from the ones "
            "the model was trained with; retrain (wording changes alone need no retraining)"
        )
    override = data_dir / MCC_OVERRIDE_FILE
    mcc_map = load_mcc_map(override if override.exists() else None)
    with open_data(data_dir) as data:
        if as_of is None:
            latest = data.latest_date()
            if latest is None:
                raise DataError(f"{data_dir}: no dated rows to take the as-of date from; pass --as-of")
            as_of = latest + timedelta(days=1)
        profiles = build_profiles(data, as_of, bundle, mcc_map, BenefitTable.from_catalog(catalog))
    return Engine(bundle, profiles, catalog, config)


def format_decision(decision: Decision) -> str:
    """A decision as an agent or analyst would want to read it."""
    lines = [
        f"{decision.cardholder_id} — {decision.call_reason.replace('_', ' ')} call "
        f"(model {decision.model_version}, profile as of {decision.profile_as_of})"
    ]
    if not decision.suggestions:
        lines.append(f"  nothing to suggest: {decision.note or 'no candidates'}")
    for s in decision.suggestions:
        lines.append(
            f"  {s.rank}. {s.benefit_name}  (about ${s.value_usd:,.0f} a year; chance {s.p_adopt:.0%})"
        )
        lines.append(f"     {s.talking_point}")
        if s.reasons:
            lines.append(f"     why: {'; '.join(s.reasons)}")
    return "\n".join(lines)


@dataclass(frozen=True)
class ScoreResult:
    out: Path
    cardholders: int
    rows: int
    seconds: float


def score_all(engine: Engine, top_k: int, call_reason: str, out: Path) -> ScoreResult:
    """Every cardholder with at least one candidate: their top K as (cardholder_id, rank, benefit_id, score)."""
    started = time.perf_counter()
    ids: list[str] = []
    ranks: list[int] = []
    benefits: list[str] = []
    scores: list[float] = []
    served = 0
    for cardholder_id in engine.profiles.ids:
        decision = engine.decide(cardholder_id, call_reason, top_k)
        served += bool(decision.suggestions)
        for s in decision.suggestions:
            ids.append(cardholder_id)
            ranks.append(s.rank)
            benefits.append(s.benefit_id)
            scores.append(s.score)
    table = pa.table(
        {
            "cardholder_id": pa.array(ids, pa.string()),
            "rank": pa.array(ranks, pa.int32()),
            "benefit_id": pa.array(benefits, pa.string()),
            "score": pa.array(scores, pa.float64()),
        }
    )
    write_table(table, out)
    return ScoreResult(out, served, table.num_rows, time.perf_counter() - started)
