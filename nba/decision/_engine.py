"""Engine: a cardholder id + the call's context → the talking points the agent sees, with what to log."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from time import perf_counter_ns
from typing import Final

import numpy as np
import numpy.typing as npt

from nba._compiled import compiled
from nba.contract._catalog import Catalog
from nba.decision._arbitration import (
    ArbitrationConfig,
    compute_priority,
    select_diverse,
    with_detractor_cost,
    worth_saying,
)
from nba.decision._candidates import suitability_matrix
from nba.decision._contact import (
    ContactHistory,
    ContactPolicy,
    RecentContact,
    contact_exclusions,
    kept_by_snapshot,
)
from nba.decision._reasons import Reasoner
from nba.decision._scoring import SCORERS, Scorer, ScorerName, make_scorer
from nba.decision._talking_points import (
    TalkingPointNumbers,
    render_talking_point,
    round_estimate_usd,
    talking_point_numbers,
)
from nba.errors import CardholderNotFoundError, DataError, ModelError
from nba.features._matrix import (
    HISTORY_COLUMNS,
    BenefitTable,
    HolderColumns,
    PairTables,
    assemble_candidate_matrix,
    call_reason_code,
    fill_candidate_matrix,
)
from nba.model._attribution import PathAttributor
from nba.model._bundle import ModelBundle
from nba.model._detractor import pitchless
from nba.profiles._profiles import Profiles
from nba.vocab import CALL_REASONS, MAX_SUGGESTIONS, SENSITIVE_CALL_REASONS

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


@dataclass(frozen=True)
class EngineConfig:
    """The engine's knobs: arbitration, contact policy, optional ε-exploration for off-policy learning, and
    the scorer by name (`nba.decision._scoring`: 'tree_walk', the default, or 'booster')."""

    arbitration: ArbitrationConfig = field(default_factory=ArbitrationConfig)
    contact: ContactPolicy = field(default_factory=ContactPolicy)
    epsilon: float = 0.0
    scorer: ScorerName = "tree_walk"

    def __post_init__(self) -> None:
        if not 0.0 <= self.epsilon <= 1.0:
            raise ValueError(f"`epsilon` must be a float in [0, 1], got {self.epsilon}")
        if self.scorer not in SCORERS:
            raise ValueError(f"`scorer` must be one of {', '.join(SCORERS)}, got {self.scorer!r}")


@dataclass(frozen=True, slots=True, kw_only=True)
class SuggestionBase:
    """What a suggestion is wherever it goes: the benefit, its words and why, its numbers.

    Defined once, here. The engine's `Suggestion` adds the model's input row; the feedback store's
    `ShownSuggestion` adds the id it was shown under (its table's columns, its reads and the buffer's
    JSON lines come from these fields); the API's `SuggestionOut` shows them but `logging_prob`.
    """

    rank: int  # 1 = shown first
    benefit_id: str
    benefit_name: str
    talking_point: str
    reasons: tuple[str, ...]
    value_usd: float  # the estimate of the benefit's yearly value to the cardholder, rounded as it is shown
    priority: float  # the arbitration priority (p_adopt × value^gamma × lever): `score` in the public outputs
    p_adopt: float  # the model's chance that the cardholder starts using it
    logging_prob: float  # the chance the policy had of showing it (what off-policy evaluation needs)


# The data contract's names for the record's fields where the engine's differ: the API's answer, the score
# files and the feedback store's columns call the priority `score`.
PUBLIC_FIELD_NAMES: Final = {"priority": "score"}


@dataclass(frozen=True, slots=True, kw_only=True)
class Suggestion(SuggestionBase):
    """One talking point and everything offline evaluation will need about it later."""

    features: bytes  # the model's input row, little-endian float64 (nba.feedback's feature_values reads it)


@dataclass(frozen=True, slots=True)
class Decision:
    """The engine's answer for one call."""

    cardholder_id: str
    call_reason: str
    model_version: str
    profile_as_of: str
    suggestions: tuple[Suggestion, ...]
    candidates: int  # how many could have been shown: suitable, not suppressed, worth the value floor
    note: str | None = None
    # Why these, said once for the call (above the cards): the reasons about the cardholder, and any every
    # card would give. Each suggestion's own `reasons` are about its benefit.
    shared_reasons: tuple[str, ...] = ()


class StageTimes:
    """Where `Engine.decide`'s time goes, stage by stage: give one to `decide(..., stages=)` and read `ns`
    (nanoseconds per stage, added up over the calls it was given to) and `matrix` (the last call's
    candidate matrix, as the scorer saw it; None when that call stopped before scoring). For benchmarks:
    `decide` without it does not read the clock."""

    STAGES: Final = ("candidates", "matrix", "score", "choose", "reasons", "suggestions")

    def __init__(self) -> None:
        self.ns: dict[str, int] = dict.fromkeys(self.STAGES, 0)
        self.calls = 0
        self.matrix: FloatArray | None = None
        self._last = 0

    def start(self) -> None:
        self.calls += 1
        self.matrix = None
        self._last = perf_counter_ns()

    def mark(self, stage: str) -> None:
        """The time since the last mark (or the start) goes to `stage`."""
        now = perf_counter_ns()
        self.ns[stage] += now - self._last
        self._last = now


class Engine:
    """Decides the talking points for one call, in process, in well under a millisecond per call.

    Everything per-model and per-catalog is prepared once here, the scorer too (chosen by name in
    `EngineConfig.scorer`, reported as `scorer.name`): `decide` does numpy work on one cardholder's
    candidates and scores them with it — by default ('tree_walk') one walk through the model's flattened
    trees gives both the scores and the reasons' contributions, no LightGBM call; 'booster' calls
    LightGBM's predict and walks the chosen rows again for the reasons. `rank_batch` scores many
    cardholders with one batched LightGBM predict. `reasoner` reuses the reasons built for the same model
    by an earlier engine (building them parses every tree).
    """

    def __init__(
        self,
        bundle: ModelBundle,
        profiles: Profiles,
        catalog: Catalog,
        config: EngineConfig | None = None,
        reasoner: Reasoner | None = None,
        rng: np.random.Generator | None = None,
    ) -> None:
        if profiles.model_version != bundle.version:
            raise ModelError(
                f"the profile snapshot was built for model {profiles.model_version}, not {bundle.version}; rebuild it"
            )
        if profiles.holder.shape[1] != len(bundle.holder.feature_names):
            raise ModelError(
                f"the profile snapshot has {profiles.holder.shape[1]} feature columns, the model expects "
                f"{len(bundle.holder.feature_names)}"
            )
        self.bundle = bundle
        self.profiles = profiles
        self.catalog = catalog
        self.config = config or EngineConfig()
        # `select_diverse`'s rules: diversity, and whether any priority can be −inf (only the NPS term, when on,
        # leaves a pitch out; off, the scan for −inf is skipped).
        arbitration = self.config.arbitration
        self._choice_rules = (arbitration.diversity, arbitration.detractor_weight > 0.0)
        self.benefits = BenefitTable.from_catalog(catalog)
        self.benefit_position = {benefit_id: i for i, benefit_id in enumerate(self.benefits.ids)}
        self.suitable = suitability_matrix(catalog)
        # Each benefit's spend categories as booleans (benefits × SPEND_CATEGORIES), read-only.
        self.covers = self.benefits.category_mask > 0
        self.covers.flags.writeable = False
        self.benefit_codes = bundle.benefit_codes(self.benefits)
        self.reference = bundle.reference_spend()
        self.holder_columns = HolderColumns.from_names(bundle.holder.feature_names)
        # Every Suggestion.features starts with the cardholder's columns, the same on all of a call's
        # suggestions: the feedback store keeps these bytes once per call.
        self.holder_bytes = 8 * len(bundle.holder.feature_names)
        self._talking_point_columns = np.stack(
            [self.holder_columns.spend_90d, self.holder_columns.spend_365d]
        )
        self.pair_tables = PairTables.from_model(
            self.benefits, self.benefit_codes, self.holder_columns, self.reference
        )
        # Per (product, call reason): the card's benefits that suit the call. Read-only: `_candidates`
        # returns them as they are when the contact policy excludes nothing.
        self.suitable_on_card = tuple(
            tuple(on_card[self.suitable[on_card, j]] for j in range(len(CALL_REASONS)))
            for on_card in self.benefits.product_benefits
        )
        for by_reason in self.suitable_on_card:
            for suitable in by_reason:
                suitable.flags.writeable = False
        # A candidate's HISTORY_COLUMNS when it was never presented to the cardholder.
        self.never_presented = np.zeros(len(HISTORY_COLUMNS))
        self.never_presented[HISTORY_COLUMNS.index("days_since_last_presented")] = np.nan
        # The pair columns that are the same for every candidate of a call (one cardholder, one call
        # reason, scored at rank 1), one row per value, sliced to the number of candidates (a card
        # has at most every benefit).
        n_benefits = len(self.benefits.ids)
        # float64 and C-contiguous, as `fill_candidate_matrix` takes them unchecked.
        self.call_reason_codes = np.repeat(
            np.array([[call_reason_code(reason)] for reason in CALL_REASONS], dtype=np.float64),
            n_benefits,
            axis=1,
        )
        self.base_earn_rates = np.repeat(
            self.benefits.product_base_rate[:, None].astype(np.float64), n_benefits, axis=1
        )
        self.first_rank = np.ones(n_benefits)
        self.first_holder = np.zeros(n_benefits, dtype=np.int64)
        for constant in (self.call_reason_codes, self.base_earn_rates, self.first_rank, self.first_holder):
            constant.flags.writeable = False
        # The NPS term: only with a weight above 0 is the detractor model scored at all (by its own tree walk,
        # the same compiled walk that scores the adoption model; no LightGBM call on the request path).
        self._detractor_walk: PathAttributor | None = None
        weight = self.config.arbitration.detractor_weight
        if weight > 0.0:
            if bundle.detractor is None:
                raise ModelError(
                    f"a detractor weight of {weight:g} needs a detractor model, and model {bundle.version} has "
                    "none (its training data had too few NPS answers; its report says why): use weight 0"
                )
            self._detractor_walk = PathAttributor.from_booster(bundle.detractor.booster_)
        # The columns a call's no-pitch row leaves missing (the baseline of the added detractors).
        width = len(bundle.manifest.feature_names)
        self._pitchless_mask = np.isnan(pitchless(np.zeros((1, width)), bundle.manifest.feature_names))[0]
        self.scorer: Scorer = make_scorer(self.config.scorer, bundle, reasoner)
        self.reasoner = self.scorer.reasoner
        self.rng = rng or np.random.default_rng()
        # The contact policy's kernel runs only for cardholders with a history: loaded now, for the arrays'
        # own types (read-only candidates, the profile's columns), so the first such call does not pay for it.
        if self.suitable_on_card:
            suitable = self.suitable_on_card[0][0]
            kept_by_snapshot(self.config.contact, suitable, n_benefits, self._contact_columns(), 0, 0)

    def decide(
        self,
        cardholder_id: str,
        call_reason: str = "general",
        top_k: int | None = None,
        recent: Sequence[RecentContact] = (),
        stages: StageTimes | None = None,
    ) -> Decision:
        """The talking points for one call: at most `top_k` (default: `config.arbitration.top_k`);
        `recent` are outcomes recorded since the profile snapshot; `stages`, when given, gets the time of
        each stage (a call that stops early, with nothing to say, records the stages it ran).

        Raises CardholderNotFoundError for an unknown cardholder and DataError for an unknown call reason or a
        `top_k` outside 1–MAX_SUGGESTIONS.
        """
        if stages is not None:
            stages.start()
        top_k = self._checked_top_k(call_reason, top_k)
        row = self.profiles.index.get(cardholder_id)
        if row is None:
            raise CardholderNotFoundError(f"cardholder {cardholder_id!r} is not in the profile snapshot")
        candidates, note = self._candidates(row, call_reason, recent)
        limit = self.config.contact.shown_at_most(call_reason, top_k)
        if stages is not None:
            stages.mark("candidates")
        if len(candidates) == 0 or limit == 0:
            if limit == 0 and note is None:
                note = "nothing is pitched on this call"
            return self._decision(cardholder_id, call_reason, (), len(candidates), note)
        holder = self.profiles.holder_rows(row)
        X, value = self._matrix(row, holder, candidates, call_reason)
        worth = self._worth_saying(candidates, value)
        if not worth.all():
            if not worth.any():
                return self._decision(cardholder_id, call_reason, (), 0, self._below_floor_note)
            kept = np.flatnonzero(worth)
            candidates, X, value = candidates.take(kept), X.take(kept, axis=0), value.take(kept)
        if stages is not None:
            stages.mark("matrix")
            stages.matrix = X
        scores = self.scorer.score(X)
        p_adopt = scores.p_adopt
        ranking = self.bundle.ranking_scores(X, p_adopt)
        if self._detractor_walk is not None:
            # One walk of the candidates and the call's no-pitch row: the detractors each pitch adds.
            baseline = X[:1].copy()
            baseline[:, self._pitchless_mask] = np.nan
            raw = self._detractor_walk.raw_scores(np.vstack([X, baseline]))
            p_detractor = 1.0 / (1.0 + np.exp(-raw))
            added = p_detractor[:-1] - p_detractor[-1]
            ranking = with_detractor_cost(ranking, added, self.config.arbitration.detractor_weight)
        if stages is not None:
            stages.mark("score")
        priority = compute_priority(
            ranking,
            value,
            self.benefits.lever[candidates],
            self.config.arbitration.gamma,
        )
        categories = self.covers[candidates]
        chosen, logging_prob = self._choose(priority, categories, limit)
        if stages is not None:
            stages.mark("choose")
        reasons = self.scorer.reasons(X, scores, chosen, categories[chosen])
        if stages is not None:
            stages.mark("reasons")
        shown = candidates[chosen]
        # One number per fact: each shown value is rounded once, and the talking point, the answer's
        # `value_usd` (the panel's and `nba recommend`'s header) all use that number.
        shown_value = np.array([round_estimate_usd(v) for v in value[chosen].tolist()])
        numbers = self._talking_point_numbers(row, holder[0], shown, shown_value)
        suggestions = tuple(
            self._suggestion(
                rank + 1,
                row,
                int(shown[rank]),
                X[i],
                float(shown_value[rank]),
                float(priority[i]),
                float(p_adopt[i]),
                float(logging_prob[rank]),
                reasons.cards[rank],
                numbers[rank],
            )
            for rank, i in enumerate(chosen.tolist())
        )
        if stages is not None:
            stages.mark("suggestions")
        # With the NPS term on, every pitch may cost more than it brings: the agent sees why there is nothing.
        left_out = not suggestions and self._detractor_walk is not None
        note = "no pitch on this call is worth the detractors it would add" if left_out else None
        return self._decision(cardholder_id, call_reason, suggestions, len(candidates), note, reasons.call)

    def _worth_saying(self, candidates: IntArray, value: FloatArray) -> npt.NDArray[np.bool_]:
        """The arbitration's value floor, applied before the top K and the diversity rule."""
        floor = self.config.arbitration.value_floor_usd
        # Most calls: every candidate has an estimate at or above the floor (one comparison, no lookup of
        # nominal values; a NaN compares False and takes the full rule).
        kept = value >= floor
        if kept.all() or not np.isnan(value).any():
            return kept
        return worth_saying(value, self.benefits.nominal_value_usd[candidates], floor)

    @property
    def _below_floor_note(self) -> str:
        floor = self.config.arbitration.value_floor_usd
        return f"nothing on this card is worth ${floor:,.0f} a year or more to this cardholder"

    def _checked_top_k(self, call_reason: str, top_k: int | None) -> int:
        """The request's `top_k`, the configured one when None; DataError for a bad call reason or K."""
        if call_reason not in CALL_REASONS:
            raise DataError(f"`call_reason` must be one of {', '.join(CALL_REASONS)}; got {call_reason!r}")
        if top_k is None:
            return self.config.arbitration.top_k
        if not isinstance(top_k, int) or not 1 <= top_k <= MAX_SUGGESTIONS:
            raise DataError(f"`top_k` must be an int in [1, {MAX_SUGGESTIONS}], got {top_k!r}")
        return top_k

    def _decision(
        self,
        cardholder_id: str,
        call_reason: str,
        suggestions: tuple[Suggestion, ...],
        n: int,
        note: str | None,
        shared_reasons: tuple[str, ...] = (),
    ) -> Decision:
        return Decision(
            cardholder_id,
            call_reason,
            self.bundle.version,
            self.profiles.as_of.isoformat(),
            suggestions,
            n,
            note,
            shared_reasons,
        )

    def _candidates(
        self, row: int, call_reason: str, recent: Sequence[RecentContact]
    ) -> tuple[IntArray, str | None]:
        product = int(self.profiles.product_index[row])
        suitable = self.suitable_on_card[product][CALL_REASONS.index(call_reason)]
        start, end = int(self.profiles.offsets[row]), int(self.profiles.offsets[row + 1])
        keep = suitable
        # The snapshot's contacts alone (most calls): one compiled pass; with outcomes recorded since the
        # snapshot, the whole policy; with neither, nothing is excluded.
        if end > start and not recent:
            keep = kept_by_snapshot(
                self.config.contact, suitable, len(self.benefits.ids), self._contact_columns(), start, end
            )
        elif recent:
            history = None
            if end > start:
                history = ContactHistory(
                    benefit=self.profiles.history_benefit[start:end].astype(np.int64),
                    days_since_declined=self.profiles.history_days_since_declined[start:end],
                    used=self.profiles.history_used[start:end],
                    presented_90d=self.profiles.history_presented_90d[start:end],
                )
            excluded = contact_exclusions(self.config.contact, self.benefit_position, history, recent)
            keep = suitable[~excluded[suitable]]
        note = None
        if len(suitable) == 0:
            note = (
                f"nothing is pitched on {call_reason} calls"
                if call_reason in SENSITIVE_CALL_REASONS
                else f"no benefit of this card suits a {call_reason.replace('_', ' ')} call"
            )
        elif len(keep) == 0:
            note = "every benefit of this card is already used or was offered recently"
        return keep, note

    def _contact_columns(
        self,
    ) -> tuple[
        npt.NDArray[np.int16], npt.NDArray[np.float32], npt.NDArray[np.bool_], npt.NDArray[np.float32]
    ]:
        """The snapshot's contact history columns, every cardholder's rows (`kept_by_snapshot`'s `history`)."""
        profiles = self.profiles
        return (
            profiles.history_benefit,
            profiles.history_days_since_declined,
            profiles.history_used,
            profiles.history_presented_90d,
        )

    def _history(self, row: int, candidates: IntArray) -> FloatArray:
        """The HISTORY_COLUMNS of each candidate for this cardholder (never presented: zeros, NaN days)."""
        start, end = int(self.profiles.offsets[row]), int(self.profiles.offsets[row + 1])
        return _candidate_history(
            self.profiles.history_benefit,
            self.profiles.history_values,
            start,
            end,
            candidates,
            self.never_presented,
        )

    def _matrix(
        self, row: int, holder: FloatArray, candidates: IntArray, call_reason: str
    ) -> tuple[FloatArray, FloatArray]:
        """One cardholder's candidate rows and their values (`_matrix_of` for one, without its bookkeeping).

        `holder` is the cardholder's `Profiles.holder_rows(row)` (read once per call by `decide`). Every array
        is built here, contiguous float64 (int64 indices) of one entry per candidate, so the assembly's
        conversions and shape checks are left out.
        """
        n = len(candidates)
        return fill_candidate_matrix(
            self.pair_tables,
            holder_X=holder,
            est_spend_by_category=self.profiles.est_spend[row : row + 1].astype(np.float64),
            pair_holder=self.first_holder[:n],
            pair_benefit=np.ascontiguousarray(candidates, dtype=np.int64),
            pair_base_earn_rate=self.base_earn_rates[self.profiles.product_index[row], :n],
            pair_history=self._history(row, candidates),
            pair_call_reason=self.call_reason_codes[CALL_REASONS.index(call_reason), :n],
            pair_rank=self.first_rank[:n],
        )

    def _matrix_of(
        self, rows: Sequence[int], candidates: Sequence[IntArray], call_reason: str
    ) -> tuple[FloatArray, FloatArray]:
        """Candidate rows of several cardholders in one matrix (in the order given) and their values."""
        rows_array = np.asarray(rows, dtype=np.int64)
        pair_holder = np.repeat(np.arange(len(rows_array)), [len(c) for c in candidates])
        n = len(pair_holder)
        products = self.profiles.product_index[rows_array].astype(np.int64)
        return assemble_candidate_matrix(
            self.pair_tables,
            holder_X=self.profiles.holder_rows(rows_array),
            est_spend_by_category=self.profiles.est_spend[rows_array].astype(np.float64),
            pair_holder=pair_holder,
            pair_benefit=np.concatenate(candidates).astype(np.int64) if n else np.zeros(0, dtype=np.int64),
            pair_base_earn_rate=self.benefits.product_base_rate[products][pair_holder],
            pair_history=np.vstack([self._history(r, c) for r, c in zip(rows, candidates, strict=True)]),
            pair_call_reason=np.full(n, call_reason_code(call_reason)),
            pair_rank=np.ones(n),
        )

    def rank_batch(
        self, cardholder_ids: Sequence[str], call_reason: str = "general", top_k: int | None = None
    ) -> list[tuple[tuple[str, ...], FloatArray]]:
        """For batch scoring: each cardholder's chosen benefit ids and priorities, as `decide` chooses
        them without ε-exploration, from one candidate matrix and one batched booster predict for all of them
        (no talking points or reasons: nothing in a score file needs them).

        Raises as `decide` does.
        """
        top_k = self._checked_top_k(call_reason, top_k)
        rows = []
        for cardholder_id in cardholder_ids:
            row = self.profiles.index.get(cardholder_id)
            if row is None:
                raise CardholderNotFoundError(f"cardholder {cardholder_id!r} is not in the profile snapshot")
            rows.append(row)
        limit = self.config.contact.shown_at_most(call_reason, top_k)
        candidates = [self._candidates(row, call_reason, ())[0] for row in rows]
        out: list[tuple[tuple[str, ...], FloatArray]] = [((), np.zeros(0))] * len(rows)
        if limit == 0 or not any(len(c) for c in candidates):
            return out
        X, value = self._matrix_of(rows, candidates, call_reason)
        p_adopt = self.bundle.model.predict_proba(X)[:, 1]
        benefit = np.concatenate(candidates).astype(np.int64)
        ranking = self.bundle.ranking_scores(X, p_adopt)
        if self.bundle.detractor is not None and self._detractor_walk is not None:
            ranking = with_detractor_cost(
                ranking, self.bundle.detractor.added_detractors(X), self.config.arbitration.detractor_weight
            )
        priority = compute_priority(
            ranking,
            value,
            self.benefits.lever[benefit],
            self.config.arbitration.gamma,
        )
        categories = self.covers[benefit]
        worth = self._worth_saying(benefit, value)
        ends = np.cumsum([len(c) for c in candidates])
        for i, (start, end) in enumerate(zip(ends - [len(c) for c in candidates], ends, strict=True)):
            kept = start + np.flatnonzero(worth[start:end])
            if len(kept) == 0:
                continue
            chosen = kept[select_diverse(priority[kept], categories[kept], limit, *self._choice_rules)]
            out[i] = (tuple(self.benefits.ids[int(b)] for b in benefit[chosen]), priority[chosen])
        return out

    def _choose(
        self, priority: FloatArray, categories: npt.NDArray[np.bool_], k: int
    ) -> tuple[IntArray, FloatArray]:
        """The chosen candidates and each one's probability of being shown under this policy (a candidate the
        NPS term leaves out, priority −inf, is neither chosen nor explored). With the term off no priority is
        −inf, and nothing is scanned for one."""
        if self.config.arbitration.detractor_weight > 0.0:
            never = np.isneginf(priority)
            if never.any():
                showable = np.flatnonzero(~never)
                chosen, logging_prob = self._choose(priority[showable], categories[showable], k)
                return showable[chosen], logging_prob
        greedy = select_diverse(priority, categories, k, *self._choice_rules)
        epsilon = self.config.epsilon
        n = len(priority)
        shown_k = len(greedy)
        if epsilon == 0.0 or n <= shown_k:
            return greedy, np.ones(shown_k)
        in_greedy = np.zeros(n, dtype=bool)
        in_greedy[greedy] = True
        marginal = (1 - epsilon) * in_greedy + epsilon * shown_k / n
        if self.rng.random() < epsilon:
            explored = np.sort(self.rng.choice(n, size=shown_k, replace=False))
            order = np.argsort(-priority[explored], kind="stable")
            chosen = explored[order].astype(np.int64)
        else:
            chosen = greedy
        return chosen, marginal[chosen]

    def _talking_point_numbers(
        self, row: int, holder: FloatArray, benefits: IntArray, values: FloatArray
    ) -> list[TalkingPointNumbers]:
        """The numbers each shown benefit's talking point may use (see `talking_point_numbers`).

        `holder` is the cardholder's row of `Profiles.holder_rows` (float64, NaN where missing).
        """
        return talking_point_numbers(
            holder, self._talking_point_columns, self.profiles.est_spend[row], self.covers[benefits], values
        )

    def _suggestion(
        self,
        rank: int,
        row: int,
        benefit: int,
        x: FloatArray,
        value: float,
        priority: float,
        p_adopt: float,
        logging_prob: float,
        reasons: tuple[str, ...],
        numbers: TalkingPointNumbers,
    ) -> Suggestion:
        catalog_benefit = self.catalog.benefits[benefit]
        product = self.catalog.products[int(self.profiles.product_index[row])]
        text, _ = render_talking_point(catalog_benefit, product, numbers)
        return Suggestion(
            rank=rank,
            benefit_id=catalog_benefit.id,
            benefit_name=catalog_benefit.name,
            talking_point=text,
            reasons=reasons,
            value_usd=value,
            priority=priority,
            p_adopt=p_adopt,
            logging_prob=logging_prob,
            features=x.astype("<f8", copy=False).tobytes(),
        )


@compiled
def _candidate_history(
    history_benefit: npt.NDArray[np.int16],
    history_values: npt.NDArray[np.float32],
    start: int,
    end: int,
    candidates: IntArray,
    never_presented: FloatArray,
) -> FloatArray:
    """Each candidate's HISTORY_COLUMNS from the cardholder's history rows `start:end` (a cardholder has at
    most one per benefit), else `never_presented`; float64, as the model's rows are."""
    out = np.empty((candidates.shape[0], never_presented.shape[0]))
    for i in range(candidates.shape[0]):
        out[i] = never_presented
        for r in range(start, end):
            if history_benefit[r] == candidates[i]:
                for c in range(never_presented.shape[0]):
                    out[i, c] = history_values[r, c]
                break
    return out
