"""Model manifests for tests: a fixed time and manifests with chosen metrics, for the promotion gate."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from nba.model._registry import ModelManifest, new_version

T0 = datetime(2026, 11, 23, 12, 5, 1, tzinfo=UTC)


GOOD = {
    "auc": 0.70,
    "expected_adoptions_top_k": 0.40,
    "baseline_auc_most_popular": 0.62,
    "baseline_auc_random": 0.50,
    "baseline_ips_most_popular": 0.35,
    "baseline_ips_random": 0.30,
}


def gate_manifest(when: datetime, summary: dict[str, Any] | None = None, **metrics: float) -> ModelManifest:
    values = {**GOOD, **metrics}
    return ModelManifest(
        version=new_version(when, repr(sorted(values.items())).encode()),
        created_at=when,
        feature_names=["x"],
        catalog_fingerprint="c",
        data_summary=summary or {},
        metrics={k: v for k, v in values.items() if v == v},  # NaN: leave the metric out
        params={},
        files={"model.txt": "0" * 64},
    )
