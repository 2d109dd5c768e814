"""Model bundle: a checked model folder → what scoring needs (model, spend estimator, encoders, features)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from nba.contract._catalog import Catalog
from nba.errors import ModelError
from nba.features._matrix import PAIR_CATEGORICAL, PAIR_FEATURES, BenefitTable
from nba.features._sql import ExtraColumns
from nba.model._detractor import DETRACTOR_FILE, DetractorModel
from nba.model._propensity import (
    CALIBRATOR_FILE,
    ENCODERS_FILE,
    MODEL_FILE,
    CategoryEncoder,
    PropensityModel,
    encoders_from_json,
    encoders_to_json,
)
from nba.model._registry import ModelManifest, load_model_dir, read_model_file
from nba.model._spend import ESTIMATOR_FILE, SpendEstimator, estimator_file
from nba.model._uplift import UPLIFT_FILE, UpliftModel
from nba.vocab import DEFAULT_OBJECTIVE, OBJECTIVES, SPEND_CATEGORIES

FloatArray = npt.NDArray[np.float64]
BENEFIT_ENCODER: Final = "benefit_id"


@dataclass(frozen=True, eq=False)
class HolderEncoding:
    """Cardholder feature table (Arrow, from `build_cardholder_features`) → the model's float columns.

    Numbers pass through (NULL becomes NaN); categorical columns become the codes of encoders fitted
    on the training data, so a value not seen in training reads as missing.
    """

    feature_names: tuple[str, ...]
    categorical: tuple[str, ...]
    encoders: Mapping[str, CategoryEncoder]

    @classmethod
    def fit(cls, table: pa.Table, feature_names: Sequence[str], categorical: Sequence[str]) -> HolderEncoding:
        encoders = {name: CategoryEncoder.fit(name, table.column(name).to_pylist()) for name in categorical}
        return cls(tuple(feature_names), tuple(categorical), encoders)

    def encode(self, table: pa.Table) -> FloatArray:
        present = set(table.column_names)
        missing = [name for name in self.feature_names if name not in present]
        if missing:
            raise ModelError(f"the feature table lacks columns the model needs: {missing[:5]}")
        columns = []
        for name in self.feature_names:
            column = table.column(name)
            if name in self.encoders:
                columns.append(_encode_categorical(self.encoders[name], column))
            else:
                columns.append(column.cast(pa.float64()).to_numpy(zero_copy_only=False))
        if not columns:
            return np.zeros((table.num_rows, 0))
        return np.column_stack(columns).astype(np.float64, copy=False)


def _encode_categorical(encoder: CategoryEncoder, column: pa.ChunkedArray) -> FloatArray:
    """Codes of a categorical column; string columns in one Arrow lookup instead of a Python loop."""
    if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
        codes = pc.index_in(column, value_set=pa.array(list(encoder.levels), pa.string()))
        return np.asarray(codes.cast(pa.float64()).to_numpy(zero_copy_only=False), dtype=np.float64)
    return encoder.transform(column.to_pylist())


def model_feature_names(holder_features: Sequence[str]) -> tuple[str, ...]:
    """The model's full input: the cardholder's features, then the pair features."""
    return (*holder_features, *PAIR_FEATURES)


def model_categorical(holder_categorical: Sequence[str]) -> tuple[str, ...]:
    return (*holder_categorical, *PAIR_CATEGORICAL)


@dataclass(frozen=True, eq=False)
class ModelBundle:
    """Everything a decision needs from one model version, loaded from a checked folder."""

    path: Path
    manifest: ModelManifest
    model: PropensityModel
    estimator: SpendEstimator
    holder: HolderEncoding
    benefit_encoder: CategoryEncoder
    extra: ExtraColumns
    # The uplift model of a model trained with `--objective uplift` (None for an adoption model).
    uplift: UpliftModel | None = None
    # P(detractor | call, suggestion), when the training data had enough NPS answers (None otherwise): what the
    # arbitration's NPS term (ArbitrationConfig.detractor_weight) subtracts.
    detractor: DetractorModel | None = None

    @property
    def version(self) -> str:
        return self.manifest.version

    @property
    def objective(self) -> str:
        """What arbitration ranks this model's candidates by: `adoption` or `uplift` (nba.vocab.OBJECTIVES)."""
        return "uplift" if self.uplift is not None else "adoption"

    def ranking_scores(self, X: FloatArray, p_adopt: FloatArray) -> FloatArray:
        """What arbitration ranks the rows `X` by: their chance of adoption `p_adopt` for an adoption
        model, the adoptions a conversation adds for an uplift model (`p_adopt` stays what is shown and logged)."""
        return p_adopt if self.uplift is None else self.uplift.predict(X)

    def benefit_codes(self, benefits: BenefitTable) -> FloatArray:
        """Each catalog benefit's code in the model (NaN for benefits added since training)."""
        return np.array([self.benefit_encoder.code_of(b) for b in benefits.ids], dtype=np.float64)

    def reference_spend(self) -> FloatArray:
        return np.array([self.estimator.reference_usd_[c] for c in SPEND_CATEGORIES])

    def check_catalog(self, catalog: Catalog) -> None:
        """Raises ModelError when the catalog's model-relevant fields differ from the ones trained with."""
        if catalog.model_fingerprint() != self.manifest.catalog_fingerprint:
            raise ModelError(
                f"{self.path}: the catalog's benefit ids, kinds, categories, rates or credits differ from the "
                "ones the model was trained with; retrain (wording changes alone need no retraining)"
            )


def bundle_files(
    model: PropensityModel,
    estimator: SpendEstimator,
    holder: HolderEncoding,
    benefit_encoder: CategoryEncoder,
    uplift: UpliftModel | None = None,
    detractor: DetractorModel | None = None,
) -> dict[str, bytes]:
    """The artifact files of a bundle: LightGBM text models and JSON, never pickles."""
    files = {**model.to_artifacts(), **estimator.to_artifacts()}
    if uplift is not None:
        files.update(uplift.to_artifacts())
    if detractor is not None:
        files.update(detractor.to_artifacts())
    files[ENCODERS_FILE] = encoders_to_json([*holder.encoders.values(), benefit_encoder])
    return files


def load_bundle(path: Path) -> ModelBundle:
    """Loads a model folder after checking every file's checksum and the feature lists.

    Raises NotFoundError for a missing folder and ModelError when anything does not match.
    """
    manifest = load_model_dir(path)
    extra_raw = manifest.extra.get("extra_columns", {})
    holder_raw = manifest.extra.get("holder_features")
    if not isinstance(holder_raw, list) or not isinstance(extra_raw, dict):
        raise ModelError(f"{path}: manifest.json lacks extra.holder_features / extra.extra_columns")
    holder_features = tuple(str(name) for name in holder_raw)
    if model_feature_names(holder_features) != tuple(manifest.feature_names):
        raise ModelError(f"{path}: manifest feature_names do not equal holder features + pair features")
    encoders = {e.name: e for e in encoders_from_json(read_model_file(path, manifest, ENCODERS_FILE))}
    benefit_encoder = encoders.pop(BENEFIT_ENCODER, None)
    if benefit_encoder is None:
        raise ModelError(f"{path}: {ENCODERS_FILE} has no benefit_id encoder")
    categorical = tuple(c for c in manifest.categorical_features if c in holder_features)
    if set(categorical) != set(encoders):
        raise ModelError(f"{path}: {ENCODERS_FILE} does not match the manifest's categorical features")
    files = {name: read_model_file(path, manifest, name) for name in (MODEL_FILE, CALIBRATOR_FILE)}
    model = PropensityModel.from_artifacts(files, manifest.feature_names)
    estimator_files = {ESTIMATOR_FILE: read_model_file(path, manifest, ESTIMATOR_FILE)}
    for category in SPEND_CATEGORIES:
        name = estimator_file(category)
        if name in manifest.files:
            estimator_files[name] = read_model_file(path, manifest, name)
    estimator = SpendEstimator.from_artifacts(estimator_files)
    objective = manifest.params.get("objective", DEFAULT_OBJECTIVE)
    if objective not in OBJECTIVES:
        raise ModelError(
            f"{path}: manifest params.objective must be one of {', '.join(OBJECTIVES)}, got {objective!r}"
        )
    uplift = None
    if objective == "uplift":
        if UPLIFT_FILE not in manifest.files:
            raise ModelError(f"{path}: an uplift model (params.objective 'uplift') lacks {UPLIFT_FILE}")
        uplift = UpliftModel.from_artifacts(
            {UPLIFT_FILE: read_model_file(path, manifest, UPLIFT_FILE)}, manifest.feature_names
        )
    detractor = None
    if DETRACTOR_FILE in manifest.files:
        detractor = DetractorModel.from_artifacts(
            {DETRACTOR_FILE: read_model_file(path, manifest, DETRACTOR_FILE)}, manifest.feature_names
        )
    return ModelBundle(
        path=path,
        manifest=manifest,
        model=model,
        estimator=estimator,
        holder=HolderEncoding(holder_features, categorical, encoders),
        benefit_encoder=benefit_encoder,
        extra=ExtraColumns.model_validate(extra_raw),
        uplift=uplift,
        detractor=detractor,
    )
