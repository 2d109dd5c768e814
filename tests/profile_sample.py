"""The sample data's profile tables as of one day, for the snapshot and profile-cache tests: the tables,
the model, `build_profiles`' answer, its spend estimates, and a snapshot folder written from them."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from functools import cache, cached_property
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from nba.contract._catalog import catalog_for, load_catalog
from nba.contract._mcc import load_mcc_map
from nba.contract._tables import open_data
from nba.features._matrix import BenefitTable
from nba.model._bundle import ModelBundle, load_bundle
from nba.profiles._profiles import ProfileTables, build_profiles, compute_profile_tables, estimate_spend
from nba.profiles._snapshots import write_snapshot

SAMPLE = Path(__file__).resolve().parents[1] / "data_samples"


AS_OF = date(2026, 10, 1)


T0 = datetime(2026, 10, 1, 3, 0, tzinfo=UTC)


class Sample:
    """The sample data's profile tables as of AS_OF, the model, and `build_profiles`' answer."""

    def __init__(self, model_dir: Path) -> None:
        self.bundle: ModelBundle = load_bundle(model_dir)
        self.benefits = BenefitTable.from_catalog(load_catalog(catalog_for(SAMPLE)))
        with open_data(SAMPLE) as data:
            assert data.latest_date() == AS_OF - timedelta(days=1)
            self.tables = compute_profile_tables(data, AS_OF, load_mcc_map(), self.bundle.extra)
            self.expected = build_profiles(data, AS_OF, self.bundle, load_mcc_map(), self.benefits)

    @cached_property
    def estimates(self) -> dict[str, npt.NDArray[np.float32]]:
        """`estimate_spend` of the features for the model, by model version, as `write_snapshot` stores them:
        computed once per module (16 regressions over 3,000 cardholders, ~0.3 s of CPU each time) for the
        tests that write a snapshot holding them; read-only, so no test can change another's."""
        estimates = estimate_spend(self.tables.features, self.bundle)
        estimates.setflags(write=False)
        return {self.bundle.version: estimates}


@cache
def sample_of(model_dir: Path) -> Sample:
    """`Sample(model_dir)`, built once per process for the modules that read it (test_snapshots and
    test_profile_cache: ~1 s of CPU each time, the feature SQL and the spend estimator over 3,000
    cardholders). Read-only: a test that needs another one changes a copy."""
    return Sample(model_dir)


def write_sample_snapshot(root: Path, sample: Sample, as_of: date = AS_OF, **kwargs: Any) -> Path:
    tables = sample.tables
    if as_of != AS_OF:
        day = pa.array([as_of] * tables.features.num_rows, pa.date32())
        features = tables.features.set_column(1, "as_of", day)
        tables = ProfileTables(features, tables.history, tables.contact, tables.extra)
    write_snapshot(root, tables, as_of, now=T0, **kwargs)
    return root / as_of.isoformat()
