"""Evaluation: a model bundle + held-out logged calls (+ an oracle) → metrics beside baselines, off-policy."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from nba.contract import Catalog, DataSource, MccMap
from nba.decision import (
    ArbitrationConfig,
    compute_priority,
    select_by_group,
    suitability_matrix,
    with_detractor_cost,
    worth_saying,
)
from nba.errors import DataError
from nba.features import PAIR_FEATURES, BenefitTable, ExtraColumns, snapshot_all_sql
from nba.model import HolderEncoding, SpendEstimator
from nba.progress import NO_PROGRESS, ProgressHook
from nba.vocab import CALL_REASONS, UNHEARD_OUTCOMES
from training.metrics import (
    CalibrationTable,
    CausedEstimate,
    ClassificationMetrics,
    DoublyRobustEstimate,
    LiftTable,
    OffPolicyEstimate,
    calibration_table,
    classification_metrics,
    estimate_caused_adoptions,
    estimate_doubly_robust,
    estimate_off_policy,
    lift_by_decile,
    map_at_k,
    ndcg_at_k,
    ranking_auc,
)
from training.pairs import HolderSnapshots, PairMatrix, build_pair_matrix, compute_snapshots
from training.synth import (
    CALL_TRUTH_COLUMNS,
    ORACLE_NATURAL_COLUMN,
    detractor_chance,
)

FloatArray = npt.NDArray[np.float64]
Scorer = Callable[[PairMatrix], FloatArray]
BASELINES = ("random", "most_popular", "spend_rule", "estimated_value")


@dataclass(frozen=True)
class ScoringParts:
    """What turns pairs into scores for one model: its feature encoding, spend estimator and scorer."""

    extra: ExtraColumns
    holder: HolderEncoding
    estimator: SpendEstimator
    benefit_codes: FloatArray
    score: Scorer
    # What the model's policy ranks by, when not `score` (p_adopt): an uplift model's estimated uplift.
    rank: Scorer | None = None
    # The arbitration's NPS term: the detractors each row's pitch adds, and its weight λ (None / 0: off).
    detractor: Scorer | None = None
    detractor_weight: float = 0.0

    def ranking(self, matrix: PairMatrix) -> FloatArray:
        """What arbitration ranks the rows of `matrix` by for this model (`rank`, else `score`), less
        λ × the detractors its pitch adds when the NPS term is on, −inf for a pitch not worth it (nba.decision's
        `with_detractor_cost`, as the engine does)."""
        base = self.rank(matrix) if self.rank is not None else self.score(matrix)
        if self.detractor is None or self.detractor_weight == 0.0:
            return base
        return with_detractor_cost(base, self.detractor(matrix), self.detractor_weight)


@dataclass(frozen=True)
class ChampionComparison:
    """The held-out fit beside the model in service, on the same held-out calls it had not learnt from."""

    version: str
    calls: int
    since: date | None  # the calls from this date on (None: every held-out call)
    model_auc: float
    champion_auc: float
    model_ips: float
    champion_ips: float


@dataclass(frozen=True)
class HeldOutMonth:
    """The held-out slice's presentations of one calendar month: the model's AUC beside the best
    baseline's on the same rows, and its mean prediction beside the observed adoption rate."""

    month: str  # YYYY-MM
    rows: int
    positives: int
    auc: float
    best_baseline_auc: float
    best_baseline: str
    mean_predicted: float
    observed_rate: float


@dataclass
class Evaluation:
    """Everything measured on held-out data, for the manifest and the report."""

    metrics: dict[str, float] = field(default_factory=dict)
    classification: ClassificationMetrics | None = None
    calibration: CalibrationTable | None = None
    lift: LiftTable | None = None
    off_policy: dict[str, OffPolicyEstimate] = field(default_factory=dict)
    doubly_robust: dict[str, DoublyRobustEstimate] = field(default_factory=dict)  # and "logging"
    # The true adoptions per call of each policy's top K on the logged calls, when the generator's call
    # truth was given (`true_adoptions_per_call`).
    true_per_call: dict[str, float] = field(default_factory=dict)
    # ... and the true share of detractor answers on those calls under each policy's top K (and `nothing`: no
    # suggestion at all), when the call truth has the NPS columns (`true_detractor_share`).
    true_detractor_share: dict[str, float] = field(default_factory=dict)
    # Uplift models: name → the DR estimate of the adoptions its top K causes per held-out call.
    caused: dict[str, CausedEstimate] = field(default_factory=dict)
    oracle: dict[str, tuple[float, float]] = field(default_factory=dict)  # name → (expected, ratio)
    oracle_best: float | None = None
    # Counterfactual oracles only: name → (true caused adoptions of its top K per cardholder, uplift ratio).
    oracle_uplift: dict[str, tuple[float, float]] = field(default_factory=dict)
    oracle_best_uplift: float | None = None
    oracle_cardholders: int = 0  # the cardholders the oracle's policies were ranked for
    invalid_suggestions: int = 0
    notes: list[str] = field(default_factory=list)
    champion: ChampionComparison | None = None
    months: list[HeldOutMonth] = field(default_factory=list)


def eligible_pairs(
    calls: pd.DataFrame, snapshots: HolderSnapshots, catalog: Catalog, benefits: BenefitTable
) -> pd.DataFrame:
    """For each call (call_id, cardholder_id, as_of, call_reason): every benefit that may be suggested.

    On the card, not used before the call's date, suitable for its reason. The same rules as serving.
    """
    suitable = suitability_matrix(catalog)
    product_ids = np.asarray(snapshots.table.column("product_id").to_pylist(), dtype=object)
    frame = calls.copy()
    frame["as_of"] = pd.to_datetime(frame["as_of"])
    frame = frame.merge(snapshots.keys, on=["cardholder_id", "as_of"], how="inner")
    product_position = {p: i for i, p in enumerate(benefits.product_ids)}
    used = snapshots.history.loc[snapshots.history["used"], ["cardholder_id", "as_of", "benefit_id"]]
    used_keys = set(zip(used["cardholder_id"], used["as_of"], used["benefit_id"], strict=True))
    rows: list[tuple[object, ...]] = []
    for call in frame.itertuples(index=False):
        product = product_ids[int(call.holder_row)]  # type: ignore[arg-type]
        reason = call.call_reason if call.call_reason in CALL_REASONS else "general"
        reason_index = CALL_REASONS.index(reason)
        for b in benefits.product_benefits[product_position[product]]:
            benefit_id = benefits.ids[b]
            if not suitable[b, reason_index] or (call.cardholder_id, call.as_of, benefit_id) in used_keys:
                continue
            rows.append((call.call_id, call.cardholder_id, call.as_of, benefit_id, call.call_reason, 1))
    return pd.DataFrame(
        rows, columns=["call_id", "cardholder_id", "as_of", "benefit_id", "call_reason", "rank"]
    )


def _choose(
    group: npt.NDArray[np.int64],
    score: FloatArray,
    matrix: PairMatrix,
    benefits: BenefitTable,
    config: ArbitrationConfig,
) -> npt.NDArray[np.int64]:
    rows, _ = _choose_ranked(group, score, matrix, benefits, config)
    return rows


def _choose_ranked(
    group: npt.NDArray[np.int64],
    score: FloatArray,
    matrix: PairMatrix,
    benefits: BenefitTable,
    config: ArbitrationConfig,
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Each group's top K through the arbitration: (rows chosen, their rank from 1)."""
    priority = compute_priority(score, matrix.value_usd, benefits.lever[matrix.benefit_index], config.gamma)
    keep = worth_saying(
        matrix.value_usd, benefits.nominal_value_usd[matrix.benefit_index], config.value_floor_usd
    )
    return select_by_group(group, priority, matrix.categories, config.top_k, config.diversity, keep)


def baseline_scores(matrix: PairMatrix, popularity: Mapping[str, float], seed: int) -> dict[str, FloatArray]:
    """Scores of the simple policies a model has to beat, for the same pairs."""
    column = {name: i for i, name in enumerate(PAIR_FEATURES)}
    offset = matrix.X.shape[1] - len(PAIR_FEATURES)
    fallback = float(np.mean(list(popularity.values()))) if popularity else 0.0
    return {
        "random": np.random.default_rng(seed).random(len(matrix.value_usd), dtype=np.float64),
        "most_popular": np.asarray(
            matrix.frame["benefit_id"].map(popularity).fillna(fallback), dtype=np.float64
        ),
        "spend_rule": np.asarray(
            np.nan_to_num(matrix.X[:, offset + column["benefit_spend_90d_usd"]]), dtype=np.float64
        ),
        "estimated_value": matrix.value_usd.copy(),
    }


def _groups(keys: pd.Series) -> npt.NDArray[np.int64]:
    codes, _ = pd.factorize(keys, sort=False)
    return codes.astype(np.int64)


def evaluate_logged(
    evaluation: Evaluation,
    test_rows: pd.DataFrame,
    test_matrix: PairMatrix,
    p_test: FloatArray,
) -> None:
    """Classification and per-call ranking metrics on held-out presentations the cardholder heard."""
    heard = ~test_rows["outcome"].isin(UNHEARD_OUTCOMES).to_numpy()
    y = test_rows["adopted"].to_numpy(dtype=np.float64)[heard]
    p = p_test[heard]
    evaluation.classification = classification_metrics(y, p)
    evaluation.calibration = calibration_table(y, p)
    evaluation.lift = lift_by_decile(y, p)
    c = evaluation.classification
    evaluation.metrics.update(
        auc=c.auc, log_loss=c.log_loss, brier=c.brier, base_rate=c.base_rate, test_rows=float(c.n)
    )
    evaluation.metrics["ece"] = evaluation.calibration.ece
    groups = _groups(test_rows.loc[heard, "call_id"])
    evaluation.metrics["ndcg_at_3"] = ndcg_at_k(groups, p, y, 3)
    evaluation.metrics["map_at_3"] = map_at_k(groups, p, y, 3)


def evaluate_months(
    evaluation: Evaluation,
    test_rows: pd.DataFrame,
    test_matrix: PairMatrix,
    p_test: FloatArray,
    popularity: Mapping[str, float],
    seed: int,
) -> None:
    """`evaluation.months`: the held-out slice month by month (heard presentations; a month with one
    class only gets NaN AUCs), so a lead over the baselines that shrinks within it shows without a refit."""
    heard = ~test_rows["outcome"].isin(UNHEARD_OUTCOMES).to_numpy()
    months = pd.to_datetime(test_rows["as_of"]).dt.strftime("%Y-%m").to_numpy()
    baselines = baseline_scores(test_matrix, popularity, seed)
    y_all = test_rows["adopted"].to_numpy(dtype=np.float64)
    for month in sorted(set(months[heard])):
        rows = heard & (months == month)
        y = y_all[rows]
        both = 0 < y.sum() < len(y)
        aucs = {name: ranking_auc(y, score[rows]) if both else math.nan for name, score in baselines.items()}
        best = max(aucs, key=lambda name: -math.inf if math.isnan(aucs[name]) else aucs[name])
        evaluation.months.append(
            HeldOutMonth(
                month,
                int(rows.sum()),
                int(y.sum()),
                ranking_auc(y, p_test[rows]) if both else math.nan,
                aucs[best],
                best,
                float(p_test[rows].mean()),
                float(y.mean()),
            )
        )


def evaluate_baselines_logged(
    evaluation: Evaluation,
    test_rows: pd.DataFrame,
    test_matrix: PairMatrix,
    popularity: Mapping[str, float],
    seed: int,
) -> None:
    """Each baseline's AUC on the same held-out presentations as the model's (`baseline_auc_<name>`)."""
    heard = ~test_rows["outcome"].isin(UNHEARD_OUTCOMES).to_numpy()
    y = test_rows["adopted"].to_numpy(dtype=np.float64)[heard]
    if not heard.any():
        return
    for name, score in baseline_scores(test_matrix, popularity, seed).items():
        evaluation.metrics[f"baseline_auc_{name}"] = ranking_auc(y, score[heard])


def evaluate_off_policy(
    evaluation: Evaluation,
    test_rows: pd.DataFrame,
    candidates: PairMatrix,
    policies: Mapping[str, FloatArray],
    benefits: BenefitTable,
    config: ArbitrationConfig,
    progress: ProgressHook = NO_PROGRESS,
    outcome_model: FloatArray | None = None,
    call_truth: pd.DataFrame | None = None,
) -> None:
    """IPS, self-normalised IPS, DR and self-normalised DR of each policy's top K on the held-out logged
    calls (a bar over the policies), and DR of the logging policy itself (on its own logs: what it observed).

    DR's outcome model q̂ is `outcome_model` per candidate row, by default the model policy's own scores
    (the adoption model's probability), scaled so that its sum over the logged rows is their observed
    adoptions, clipped to [0, 1]. `call_truth` (the generator's
    `<oracle>.calls.parquet`: call_id, benefit_id, expected_adoption_rank_1..K) gives each policy's true
    adoptions per call on these calls (`true_adoptions_per_call_<name>`).
    """
    group = _groups(candidates.frame["call_id"])
    logged = test_rows.dropna(subset=["logging_prob"])
    if logged.empty:
        evaluation.notes.append("no logging_prob in the logs: off-policy estimates are not possible")
        return
    n_calls = int(logged["call_id"].nunique())
    q_source = outcome_model if outcome_model is not None else policies.get("model")
    q_hat = None if q_source is None else np.clip(np.asarray(q_source, dtype=np.float64), 0.0, 1.0)
    logged_keys = list(zip(logged["call_id"], logged["benefit_id"], strict=True))
    reward = logged["adopted"].to_numpy(dtype=np.float64)
    q_logged = np.zeros(len(logged))
    if q_hat is not None:
        position = {
            k: i
            for i, k in enumerate(
                zip(candidates.frame["call_id"], candidates.frame["benefit_id"], strict=True)
            )
        }
        at = np.array([position.get(k, -1) for k in logged_keys], dtype=np.int64)
        q_logged = np.where(at >= 0, q_hat[np.maximum(at, 0)], 0.0)
        # The model predicts a discussed benefit's adoption; the logs' reward counts every benefit shown
        # (an agent leaves some undiscussed, lower ranks more often). One factor, the logged adoptions over
        # the model's sum on the same rows, puts q̂ on the reward's scale: DR stays unbiased whatever q̂ is,
        # but its variance grows with q̂'s error.
        predicted = float(q_logged.sum())
        scale = float(reward.sum()) / predicted if predicted > 0 else 1.0
        q_hat = np.clip(q_hat * scale, 0.0, 1.0)
        q_logged = np.clip(q_logged * scale, 0.0, 1.0)
    truth = _truth_lookup(call_truth)
    with progress.track(f"off-policy: policies on {n_calls:,} logged calls", len(policies)) as done:
        for name, score in policies.items():
            chosen, rank = _choose_ranked(group, score, candidates, benefits, config)
            picked = candidates.frame.iloc[chosen]
            keys = set(zip(picked["call_id"], picked["benefit_id"], strict=True))
            shown = np.array([k in keys for k in logged_keys])
            slate = len(chosen) / max(candidates.frame["call_id"].nunique(), 1)
            evaluation.off_policy[name] = estimate_off_policy(
                logged["call_id"].to_numpy(),
                logged["logging_prob"].to_numpy(dtype=np.float64),
                reward,
                shown,
                new_slate_size=slate,
                n_calls=n_calls,
            )
            if q_hat is not None:
                evaluation.doubly_robust[name] = estimate_doubly_robust(
                    logged["call_id"].to_numpy(),
                    logged["logging_prob"].to_numpy(dtype=np.float64),
                    reward,
                    shown,
                    q_logged,
                    picked["call_id"].to_numpy(),
                    q_hat[chosen],
                )
                evaluation.metrics[f"dr_{name}"] = evaluation.doubly_robust[name].dr
                evaluation.metrics[f"sndr_{name}"] = evaluation.doubly_robust[name].sndr
            if truth is not None:
                value = _true_value(truth, picked, rank, n_calls)
                evaluation.true_per_call[name] = value
                evaluation.metrics[f"true_adoptions_per_call_{name}"] = value
            if call_truth is not None and CALL_TRUTH_COLUMNS.nps_mean in call_truth.columns:
                share = true_detractor_share(call_truth, logged["call_id"].unique(), picked, rank)
                evaluation.true_detractor_share[name] = share
                evaluation.metrics[f"true_detractor_share_{name}"] = share
            done.advance()
    if call_truth is not None and CALL_TRUTH_COLUMNS.nps_mean in call_truth.columns:
        nothing = pd.DataFrame(
            {"call_id": pd.Series([], dtype=object), "benefit_id": pd.Series([], dtype=object)}
        )
        share = true_detractor_share(
            call_truth, logged["call_id"].unique(), nothing, np.zeros(0, dtype=np.int64)
        )
        evaluation.true_detractor_share["nothing"] = share
        evaluation.metrics["true_detractor_share_nothing"] = share
    if q_hat is not None:
        # The logging policy on its own logs is on-policy: every weight is 1 and DR is what it observed.
        ids = logged["call_id"].to_numpy()
        evaluation.doubly_robust["logging"] = estimate_doubly_robust(
            ids, np.ones(len(logged)), reward, np.ones(len(logged), dtype=bool), q_logged, ids, q_logged
        )
    for name in BASELINES:
        if name in evaluation.off_policy:
            evaluation.metrics[f"baseline_ips_{name}"] = evaluation.off_policy[name].ips
    model = evaluation.off_policy.get("model")
    if model is not None:
        evaluation.metrics["expected_adoptions_top_k"] = model.ips
        evaluation.metrics["expected_adoptions_top_k_snips"] = model.snips_per_call
        evaluation.metrics["logged_adoptions_per_call"] = model.logged_per_call
        evaluation.metrics["ope_effective_sample_size"] = model.ess


def true_detractor_share(
    call_truth: pd.DataFrame, call_ids: npt.ArrayLike, picked: pd.DataFrame, rank: npt.NDArray[np.int64]
) -> float:
    """The true share of detractor answers on the calls `call_ids` were each shown the policy's suggestions
    `picked` (call_id, benefit_id) at `rank`: the mean over the calls of `training.synth.detractor_chance`,
    from the call truth's NPS columns. A suggestion the truth does not hold (not eligible on the call) is taken
    as never discussed; a call the truth does not hold at all is left out of the mean.
    """
    per_call = call_truth.drop_duplicates("call_id").set_index("call_id")
    calls = pd.Index(pd.unique(np.asarray(call_ids, dtype=object))).intersection(per_call.index, sort=False)
    position = pd.Series(np.arange(len(calls)), index=calls)
    named = CALL_TRUTH_COLUMNS
    top = named.ranks_in(call_truth.columns)
    shown = picked[["call_id", "benefit_id"]].assign(rank=np.minimum(np.asarray(rank, dtype=np.int64), top))
    shown = shown[shown["call_id"].isin(calls)].merge(call_truth, on=["call_id", "benefit_id"], how="inner")
    at = shown["rank"].to_numpy(dtype=np.int64) - 1
    rows = np.arange(len(shown))
    discussed = shown[[named.discussed(k) for k in range(1, top + 1)]].to_numpy(dtype=np.float64)
    relevant = shown[[named.relevant(k) for k in range(1, top + 1)]].to_numpy(dtype=np.float64)
    chance = detractor_chance(
        per_call.loc[calls, named.nps_mean].to_numpy(dtype=np.float64),
        per_call.loc[calls, named.nps_tense].to_numpy(dtype=bool),
        position[shown["call_id"]].to_numpy(dtype=np.int64),
        discussed[rows, at],
        relevant[rows, at],
        shown[named.nps_points].to_numpy(dtype=np.float64),
    )
    return float(chance.mean()) if len(chance) else float("nan")


def evaluate_caused(
    evaluation: Evaluation,
    units: PairMatrix,
    pseudo_outcomes: FloatArray,
    policies: Mapping[str, FloatArray],
    benefits: BenefitTable,
    config: ArbitrationConfig,
    seed: int,
) -> None:
    """The adoptions each policy's top K would cause per call on held-out calls, doubly robust: `units` are
    every (call, eligible benefit) of those calls, `pseudo_outcomes` their φ (`held_out_pseudo_outcomes`),
    `policies` each policy's score per unit. Each policy chooses its top K per call through the arbitration,
    as served; its estimate is Σ φ over what it chose, per call (`training.metrics.estimate_caused_adoptions`,
    with a bootstrap interval over calls). Metrics: `dr_caused_adoptions_top_k` (the model),
    `dr_caused_adoptions_top_k_ci_low/_high`, `baseline_dr_caused_<baseline>`, `dr_caused_<other policy>`.
    """
    group = _groups(units.frame["call_id"])
    call_ids = units.frame["call_id"].to_numpy()
    for name, score in policies.items():
        chosen = np.zeros(len(score), dtype=bool)
        chosen[_choose(group, score, units, benefits, config)] = True
        estimate = estimate_caused_adoptions(call_ids, pseudo_outcomes, chosen, seed=seed)
        evaluation.caused[name] = estimate
        if name == "model":
            evaluation.metrics.update(
                dr_caused_adoptions_top_k=estimate.value,
                dr_caused_adoptions_top_k_ci_low=estimate.ci[0],
                dr_caused_adoptions_top_k_ci_high=estimate.ci[1],
            )
        elif name in BASELINES:
            evaluation.metrics[f"baseline_dr_caused_{name}"] = estimate.value
        else:
            evaluation.metrics[f"dr_caused_{name}"] = estimate.value


def _truth_lookup(call_truth: pd.DataFrame | None) -> dict[tuple[str, str], npt.NDArray[np.float64]] | None:
    """(call_id, benefit_id) → its true expected adoptions when shown at rank 1, 2, ..."""
    if call_truth is None:
        return None
    named = CALL_TRUTH_COLUMNS
    columns = [named.adoption(rank) for rank in range(1, named.ranks_in(call_truth.columns) + 1)]
    values = call_truth[columns].to_numpy(dtype=np.float64)
    keys = zip(call_truth["call_id"], call_truth["benefit_id"], strict=True)
    return {key: values[i] for i, key in enumerate(keys)}


def _true_value(
    truth: Mapping[tuple[str, str], npt.NDArray[np.float64]],
    picked: pd.DataFrame,
    rank: npt.NDArray[np.int64],
    n_calls: int,
) -> float:
    """A policy's true adoptions per call: Σ over its slates of the truth at each benefit's rank.

    A benefit the truth does not hold (not eligible on the logged call) adds nothing.
    """
    total = 0.0
    for call_id, benefit_id, at in zip(picked["call_id"], picked["benefit_id"], rank, strict=True):
        row = truth.get((call_id, benefit_id))
        if row is not None:
            total += float(row[min(int(at), len(row)) - 1])
    return total / max(n_calls, 1)


def read_oracle(path: Path, as_of: date | None = None) -> pd.DataFrame:
    """The generator's oracle: cardholder_id, benefit_id, p_true, value_usd (and p_natural, the chance of
    starting without a conversation, when a counterfactual world wrote it).

    A regime-shift world's oracle holds the truth as of several dates (its `as_of` column): the rows as of
    `as_of` are returned, by default those of the latest date (the world's as-of). Raises DataError for a
    file that is not an oracle, or an `as_of` it holds no truth for.
    """
    columns = ["cardholder_id", "benefit_id", "p_true", "value_usd"]
    try:
        names = pq.read_schema(path).names
        dated = "as_of" in names
        if ORACLE_NATURAL_COLUMN in names:
            columns.append(ORACLE_NATURAL_COLUMN)
        table = pq.read_table(path, columns=[*columns, "as_of"] if dated else columns)
    except (OSError, pa.ArrowInvalid, KeyError) as exc:
        raise DataError(f"{path}: not an oracle file ({exc})") from None
    frame: pd.DataFrame = table.to_pandas()
    if not dated:
        return frame
    days = sorted(set(frame["as_of"]))
    wanted = as_of if as_of is not None else (days[-1] if days else None)
    if as_of is not None and as_of not in days:
        shown = ", ".join(str(d) for d in days)
        raise DataError(f"{path}: the oracle holds no truth as of {as_of}; it has {shown}")
    picked: pd.DataFrame = frame[frame["as_of"] == wanted].drop(columns="as_of").reset_index(drop=True)
    return picked


def evaluate_oracle(
    evaluation: Evaluation,
    data: DataSource,
    as_of: pd.Timestamp,
    oracle: pd.DataFrame,
    parts: ScoringParts,
    mcc_map: MccMap,
    catalog: Catalog,
    benefits: BenefitTable,
    popularity: Mapping[str, float],
    config: ArbitrationConfig,
    seed: int,
    progress: ProgressHook = NO_PROGRESS,
) -> None:
    """Expected adoptions of each policy's top K on a general call at the data's as-of, from the true model.

    When the oracle has `p_natural` (a counterfactual world), also the adoptions each policy's top K truly
    causes, Σ (p_true − p_natural), against the best top K by that uplift: the oracle uplift ratio
    (`oracle_uplift_ratio`, `oracle_uplift_ratio_<baseline>`); otherwise a note says there is none.
    `progress` watches the feature SQL of every cardholder and gets a bar over the policies.
    """
    snapshot = data.con.sql(snapshot_all_sql(as_of.date())).to_arrow_table()
    snapshots = compute_snapshots(data, snapshot, mcc_map, parts.extra, progress)
    calls = pd.DataFrame(
        {
            "call_id": snapshots.keys["cardholder_id"],
            "cardholder_id": snapshots.keys["cardholder_id"],
            "as_of": snapshots.keys["as_of"],
            "call_reason": "general",
        }
    )
    pairs = eligible_pairs(calls, snapshots, catalog, benefits)
    matrix = build_pair_matrix(pairs, snapshots, parts.holder, parts.estimator, benefits, parts.benefit_codes)
    truth = matrix.frame[["cardholder_id", "benefit_id"]].merge(
        oracle, on=["cardholder_id", "benefit_id"], how="left", validate="one_to_one"
    )
    missing = int(truth["p_true"].isna().sum())
    if missing:
        evaluation.notes.append(
            f"{missing} candidate pairs are not in the oracle (counted as invalid suggestions)"
        )
    p_true = truth["p_true"].fillna(0.0).to_numpy(dtype=np.float64)
    # Adoptions weighted by what each is truly worth to the cardholder a year: what a value floor trades
    # adoptions for.
    worth_true = p_true * truth["value_usd"].fillna(0.0).to_numpy(dtype=np.float64)
    group = _groups(matrix.frame["cardholder_id"])
    n_groups = int(group.max()) + 1 if len(group) else 0
    evaluation.oracle_cardholders = n_groups
    policies = {"model": parts.ranking(matrix), **baseline_scores(matrix, popularity, seed)}
    uplift: FloatArray | None = None
    best_uplift = math.nan
    if ORACLE_NATURAL_COLUMN in truth.columns:
        # A pair missing from the oracle causes nothing (it is counted as an invalid suggestion above).
        natural = truth[ORACLE_NATURAL_COLUMN].fillna(0.0).to_numpy(dtype=np.float64)
        uplift = np.maximum(p_true - natural, 0.0)
        best_uplift = _oracle_best(group, uplift, config.top_k)
        evaluation.oracle_best_uplift = best_uplift
        evaluation.metrics["oracle_best_caused_adoptions_top_k"] = best_uplift
    else:
        evaluation.notes.append(
            "the oracle has no p_natural (not a counterfactual world, see `nba generate --uplift-mix`): "
            "no oracle uplift ratio"
        )
    best = _oracle_best(group, p_true, config.top_k)
    best_worth = _oracle_best(group, worth_true, config.top_k)
    evaluation.oracle_best = best
    evaluation.metrics["oracle_best_value_weighted_usd"] = best_worth
    with progress.track(f"oracle: policies on {n_groups:,} cardholders", len(policies)) as done:
        for name, score in policies.items():
            chosen = _choose(group, score, matrix, benefits, config)
            expected = float(p_true[chosen].sum() / max(n_groups, 1))
            evaluation.oracle[name] = (expected, expected / best if best > 0 else float("nan"))
            if uplift is not None:
                caused = float(uplift[chosen].sum() / max(n_groups, 1))
                ratio = caused / best_uplift if best_uplift > 0 else float("nan")
                evaluation.oracle_uplift[name] = (caused, ratio)
                suffix = "" if name == "model" else f"_{name}"
                evaluation.metrics[f"oracle_caused_adoptions_top_k{suffix}"] = caused
                evaluation.metrics[f"oracle_uplift_ratio{suffix}"] = ratio
            if name != "model":
                evaluation.metrics[f"oracle_ratio_{name}"] = evaluation.oracle[name][1]
            if name == "model":
                evaluation.invalid_suggestions = _count_invalid(matrix, chosen, truth)
                evaluation.metrics["oracle_expected_adoptions_top_k"] = expected
                evaluation.metrics["oracle_ratio"] = expected / best if best > 0 else float("nan")
                value = matrix.value_usd[chosen]
                evaluation.metrics["oracle_value_usd_top_k"] = float(
                    (p_true[chosen] * value).sum() / max(n_groups, 1)
                )
                shown_worth = float(worth_true[chosen].sum() / max(n_groups, 1))
                evaluation.metrics["oracle_value_weighted_usd"] = shown_worth
                evaluation.metrics["oracle_value_weighted_ratio"] = (
                    shown_worth / best_worth if best_worth > 0 else float("nan")
                )
                evaluation.metrics["oracle_shown_per_cardholder"] = len(chosen) / max(n_groups, 1)
            done.advance()
    evaluation.metrics["oracle_best_expected_adoptions_top_k"] = best
    # The oracle's best top K ignores the arbitration's rules (diversity); its own probabilities sent
    # through the same arbitration show how much of the gap is the rule and how much the model.
    capped = _choose(group, p_true, matrix, benefits, config)
    evaluation.metrics["oracle_ratio_arbitration_cap"] = (
        float(p_true[capped].sum() / max(n_groups, 1)) / best if best > 0 else float("nan")
    )
    best_baseline = max(evaluation.oracle[b][0] for b in BASELINES)
    evaluation.metrics["oracle_lift_over_best_baseline"] = (
        evaluation.oracle["model"][0] / best_baseline - 1 if best_baseline > 0 else float("nan")
    )


def _oracle_best(group: npt.NDArray[np.int64], p_true: FloatArray, k: int) -> float:
    order = np.lexsort((-p_true, group))
    sorted_group = group[order]
    starts = np.r_[0, np.flatnonzero(np.diff(sorted_group)) + 1]
    position = np.arange(len(order)) - np.repeat(starts, np.diff(np.r_[starts, len(order)]))
    n_groups = len(starts)
    return float(p_true[order][position < k].sum() / max(n_groups, 1))


def _count_invalid(matrix: PairMatrix, chosen: npt.NDArray[np.int64], truth: pd.DataFrame) -> int:
    """Suggestions that are not on the card, already used, or repeated for one cardholder."""
    picked = matrix.frame.iloc[chosen]
    duplicated = int(picked.duplicated(["cardholder_id", "benefit_id"]).sum())
    used = int(picked["used"].sum())
    not_in_truth = int(truth["p_true"].iloc[chosen].isna().sum())
    return duplicated + used + not_in_truth
