"""Registry: model folders are written whole, nothing tampered with loads, CURRENT moves and rolls back."""

from __future__ import annotations

import hashlib
import json
import os
import re
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from nba.errors import ModelError, NotFoundError
from nba.model._registry import (
    CHAMPION_KEY,
    CURRENT_FILE,
    HISTORY_FILE,
    MANIFEST_FILE,
    ModelManifest,
    baseline_problem,
    dump_json_artifact,
    gate_promotion,
    is_version,
    list_models,
    load_json_artifact,
    load_model_dir,
    new_version,
    read_current,
    read_model_file,
    rollback,
    set_current,
    write_model_dir,
)
from tests.manifests import GOOD, T0, gate_manifest
from training.models_cli import models_app

MODEL_TEXT = b"tree\nversion=v4\nnum_class=1\n"


def _write(models_root: Path, when: datetime = T0, **overrides: Any) -> Path:
    """A small model folder: a model, a spend estimator, a JSON calibrator and a report."""
    fields: dict[str, Any] = {
        "created_at": when,
        "feature_names": ["spend_90d_usd", "product_id", "call_reason"],
        "categorical_features": ["product_id", "call_reason"],
        "catalog_fingerprint": "c" * 64,
        "data_summary": {
            "rows": 1200,
            "positives": 87,
            "as_of": "2026-11-01",
            "label_source": "benefit_usage",
        },
        "metrics": {
            "expected_adoptions_top_k": 41.5,
            "auc": 0.71,
            "baseline_auc_most_popular": 0.6,
            "baseline_ips_most_popular": 30.0,
        },
        "params": {"learning_rate": 0.05, "num_leaves": 31},
        "extra": {"crm_columns_taken": ["segment"], "crm_columns_left_out": []},
    }
    fields.update(overrides)
    files: dict[str, bytes | Path] = {
        "model.txt": MODEL_TEXT,
        "estimator_dining.txt": b"tree\nestimator\n",
        "calibrator.json": dump_json_artifact({"kind": "identity"}),
        "report.md": "# Report\n\nAUC 0.71 — fine.\n".encode(),
    }
    return write_model_dir(models_root, files, **fields)


def _manifest(version_metric: float | None, when: datetime = T0) -> ModelManifest:
    metrics = {} if version_metric is None else {"expected_adoptions_top_k": version_metric}
    return ModelManifest(
        version=new_version(when, repr(version_metric).encode()),
        created_at=when,
        feature_names=["x"],
        catalog_fingerprint="c",
        data_summary={},
        metrics=metrics,
        params={},
        files={"model.txt": "0" * 64},
    )


def _flip_byte(path: Path, at: int = 0) -> None:
    data = bytearray(path.read_bytes())
    data[at] ^= 0x01
    path.write_bytes(bytes(data))


# --- writing and loading ---------------------------------------------------------------------------


def test_written_model_dir_loads_back_with_every_field(tmp_path: Path) -> None:
    models = tmp_path / "models"
    path = _write(models, when=datetime(2026, 11, 23, 13, 5, 1, tzinfo=timezone(timedelta(hours=1))))
    assert path.parent == models
    assert is_version(path.name) and path.name.startswith("20261123T120501Z-")
    assert sorted(p.name for p in models.iterdir()) == [path.name], "no temporary folder is left behind"
    manifest = load_model_dir(path)
    assert manifest.version == path.name
    assert manifest.created_at == T0 and manifest.created_at.utcoffset() == timedelta(0)
    assert manifest.feature_names == ["spend_90d_usd", "product_id", "call_reason"]
    assert manifest.categorical_features == ["product_id", "call_reason"]
    assert manifest.data_summary["positives"] == 87
    assert manifest.metrics == {
        "expected_adoptions_top_k": 41.5,
        "auc": 0.71,
        "baseline_auc_most_popular": 0.6,
        "baseline_ips_most_popular": 30.0,
    }
    assert manifest.extra == {"crm_columns_taken": ["segment"], "crm_columns_left_out": []}
    on_disk = {p.name for p in path.iterdir()} - {MANIFEST_FILE}
    assert set(manifest.files) == on_disk
    for name, digest in manifest.files.items():
        assert hashlib.sha256((path / name).read_bytes()).hexdigest() == digest
    assert read_model_file(path, manifest, "model.txt") == MODEL_TEXT


def test_a_file_given_as_a_path_is_copied(tmp_path: Path) -> None:
    source = tmp_path / "booster.txt"
    source.write_bytes(MODEL_TEXT)
    path = write_model_dir(
        tmp_path / "models",
        {"model.txt": source},
        created_at=T0,
        feature_names=["x"],
        catalog_fingerprint="c",
        data_summary={},
        metrics={},
        params={},
    )
    assert (path / "model.txt").read_bytes() == MODEL_TEXT
    assert load_model_dir(path).categorical_features == []


def test_the_version_hash_depends_on_content(tmp_path: Path) -> None:
    first = _write(tmp_path / "a")
    second = _write(tmp_path / "b", metrics={"expected_adoptions_top_k": 41.6})
    assert first.name[:16] == second.name[:16]
    assert first.name != second.name


@pytest.mark.parametrize(
    ("name", "match"),
    [
        ("model.pkl", "pickles are not allowed"),
        ("encoders.PICKLE", "pickles are not allowed"),
        ("estimator.joblib", "pickles are not allowed"),
        ("sub/model2.txt", "plain file name"),
        ("..\\evil.txt", "plain file name"),
        ("..", "plain file name"),
        (".hidden", "must not start with '.'"),
        ("manifest.json", "written by the registry itself"),
    ],
)
def test_refused_file_names(tmp_path: Path, name: str, match: str) -> None:
    models = tmp_path / "models"
    with pytest.raises(ModelError, match=match):
        write_model_dir(
            models,
            {"model.txt": MODEL_TEXT, name: b"x"},
            created_at=T0,
            feature_names=["x"],
            catalog_fingerprint="c",
            data_summary={},
            metrics={},
            params={},
        )
    assert not models.exists() or list(models.iterdir()) == []


@pytest.mark.parametrize(
    ("overrides", "files", "match"),
    [
        ({}, {"calibrator.json": b"{}"}, "model.txt is missing"),
        ({"metrics": {"auc": float("nan")}}, None, "'auc' is nan"),
        ({"created_at": datetime(2026, 11, 23, 12, 5, 1)}, None, "created_at: must carry a time zone"),
        ({"feature_names": ["a", "a"]}, None, "feature 'a' is listed twice"),
        ({"categorical_features": ["nope"]}, None, r"not features: \['nope'\]"),
        ({"data_summary": {"as_of": float("inf")}}, None, "JSON artifact"),
    ],
)
def test_invalid_manifest_fields_are_refused(
    tmp_path: Path, overrides: dict[str, Any], files: dict[str, bytes] | None, match: str
) -> None:
    fields: dict[str, Any] = {
        "created_at": T0,
        "feature_names": ["x"],
        "catalog_fingerprint": "c",
        "data_summary": {},
        "metrics": {},
        "params": {},
    }
    fields.update(overrides)
    models = tmp_path / "models"
    with pytest.raises(ModelError, match=match):
        write_model_dir(models, files or {"model.txt": MODEL_TEXT}, **fields)
    assert not models.exists() or list(models.iterdir()) == []


def test_flipped_byte_is_a_checksum_mismatch_naming_the_file(tmp_path: Path) -> None:
    path = _write(tmp_path / "models")
    _flip_byte(path / "estimator_dining.txt", at=3)
    with pytest.raises(ModelError) as caught:
        load_model_dir(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: estimator_dining.txt: checksum mismatch (expected ")
    assert "the file was changed after training" in message
    assert "\n" not in message


def test_deleted_file_is_refused(tmp_path: Path) -> None:
    path = _write(tmp_path / "models")
    (path / "calibrator.json").unlink()
    with pytest.raises(ModelError, match=r": calibrator\.json: listed in the manifest but missing"):
        load_model_dir(path)


def test_stray_file_is_refused(tmp_path: Path) -> None:
    path = _write(tmp_path / "models")
    (path / "backdoor.pkl").write_bytes(b"\x80\x04")
    with pytest.raises(ModelError, match=r": backdoor\.pkl: not listed in the manifest"):
        load_model_dir(path)


def test_stray_folder_is_refused(tmp_path: Path) -> None:
    path = _write(tmp_path / "models")
    (path / "plots").mkdir()
    with pytest.raises(ModelError, match=r": plots: not listed in the manifest"):
        load_model_dir(path)


def _edit_manifest(path: Path, edit: Any) -> None:
    raw = json.loads((path / MANIFEST_FILE).read_text())
    edit(raw)
    (path / MANIFEST_FILE).write_text(json.dumps(raw))


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (lambda m: m["metrics"].update(auc=0.99), "the manifest was edited after training"),
        (lambda m: m["feature_names"].reverse(), "the manifest was edited after training"),
        (lambda m: m.update(created_at="2026-11-23T12:05:02Z"), "the manifest was edited after training"),
        (lambda m: m["files"].pop("report.md"), "the manifest was edited after training"),
        (lambda m: m["files"].update({"x.pkl": "0" * 64}), r"'x\.pkl' pickles are not allowed"),
        (lambda m: m["files"].update({"../../etc/passwd": "0" * 64}), "plain file name"),
        (lambda m: m.update(surprise=1), r"surprise: Extra inputs are not permitted"),
        (lambda m: m.update(format_version=2), "written by a newer nba"),
        (lambda m: m.pop("catalog_fingerprint"), "catalog_fingerprint: Field required"),
    ],
)
def test_edited_manifest_is_refused(tmp_path: Path, edit: Any, match: str) -> None:
    path = _write(tmp_path / "models")
    _edit_manifest(path, edit)
    with pytest.raises(ModelError, match=match) as caught:
        load_model_dir(path)
    assert str(caught.value).startswith(f"{path}: ")


def test_edited_manifest_with_a_recomputed_checksum_is_still_refused(tmp_path: Path) -> None:
    path = _write(tmp_path / "models")
    (path / "model.txt").write_bytes(b"tree\nsomething else\n")
    new_digest = hashlib.sha256(b"tree\nsomething else\n").hexdigest()
    _edit_manifest(path, lambda m: m["files"].update({"model.txt": new_digest}))
    with pytest.raises(ModelError, match="the manifest was edited after training"):
        load_model_dir(path)


def test_reformatted_manifest_still_loads(tmp_path: Path) -> None:
    path = _write(tmp_path / "models")
    _edit_manifest(path, lambda m: None)  # same content, other whitespace and key order
    assert load_model_dir(path).version == path.name


@pytest.mark.parametrize(
    ("content", "match"),
    [(b"{not json", "not valid JSON"), (b"[]", "expected a JSON object"), (b"\xff", "not UTF-8")],
)
def test_unreadable_manifest_is_refused(tmp_path: Path, content: bytes, match: str) -> None:
    path = _write(tmp_path / "models")
    (path / MANIFEST_FILE).write_bytes(content)
    with pytest.raises(ModelError, match=match):
        load_model_dir(path)


def test_missing_folder_is_not_found_and_a_folder_without_manifest_is_a_model_error(tmp_path: Path) -> None:
    with pytest.raises(NotFoundError, match="no such model folder"):
        load_model_dir(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelError, match=r"manifest\.json is missing"):
        load_model_dir(tmp_path / "empty")


def test_read_model_file_catches_a_file_swapped_after_the_check(tmp_path: Path) -> None:
    path = _write(tmp_path / "models")
    manifest = load_model_dir(path)
    _flip_byte(path / "model.txt")
    with pytest.raises(ModelError, match=r"model\.txt: checksum mismatch .* changed after it was checked"):
        read_model_file(path, manifest, "model.txt")
    with pytest.raises(ModelError, match=r"nope\.json: not in the manifest"):
        read_model_file(path, manifest, "nope.json")


# --- versions and JSON artifacts -------------------------------------------------------------------


def test_version_strings_sort_by_time() -> None:
    times = [T0 + timedelta(seconds=s) for s in (0, 1, 59, 3600, 86_400 * 40, 86_400 * 400)]
    # Hashes chosen so that, within the same order of times, they sort the other way.
    versions = [new_version(t, str(-i).encode()) for i, t in enumerate(times)]
    assert sorted(reversed(versions)) == versions
    assert all(is_version(v) for v in versions)
    assert new_version(T0, b"x") == new_version(T0.astimezone(timezone(timedelta(hours=-5))), b"x")
    assert new_version(T0, b"x").startswith("20261123T120501Z-")
    with pytest.raises(ValueError, match="`now` must be a timezone-aware datetime"):
        new_version(datetime(2026, 1, 1), b"x")


def test_json_artifacts_are_canonical_and_refuse_nan() -> None:
    data = dump_json_artifact({"b": 1, "a": ["é", 0.5]})
    assert data == dump_json_artifact({"a": ["é", 0.5], "b": 1})
    assert data.decode("utf-8").index('"a"') < data.decode("utf-8").index('"b"')
    assert "é" in data.decode("utf-8")
    assert load_json_artifact(data) == {"a": ["é", 0.5], "b": 1}
    with pytest.raises(ModelError, match="JSON artifact"):
        dump_json_artifact({"x": float("nan")})
    with pytest.raises(ModelError, match=r"calibrator\.json: not valid JSON"):
        load_json_artifact(b'{"x": NaN}', source="calibrator.json")


# --- CURRENT, HISTORY, rollback --------------------------------------------------------------------


def _history_versions(models: Path) -> list[tuple[str, str]]:
    lines = (models / HISTORY_FILE).read_text().splitlines()
    return [(line.split()[1], line.split()[2]) for line in lines]


def test_set_current_history_and_rollback_sequence(tmp_path: Path) -> None:
    models = tmp_path / "models"
    a, b, c = (_write(models, T0 + timedelta(minutes=i)).name for i in range(3))
    assert read_current(models) is None
    assert set_current(models, a, now=T0) is None
    assert read_current(models) == a
    assert (models / CURRENT_FILE).read_text() == a + "\n"
    assert set_current(models, b) == a
    assert set_current(models, c) == b
    assert set_current(models, c) == c, "promoting the version in service changes nothing"
    assert _history_versions(models) == [(a, "promote"), (b, "promote"), (c, "promote")]
    assert (models / HISTORY_FILE).read_text().startswith("2026-11-23T12:05:01Z ")

    assert rollback(models) == b
    assert read_current(models) == b
    assert rollback(models) == a, "a second rollback goes further back, it does not undo the first"
    with pytest.raises(ModelError, match=f"no version was in service before {a}"):
        rollback(models)
    assert read_current(models) == a
    assert set_current(models, c) == a
    assert rollback(models) == a
    assert [p.name for p in models.iterdir() if p.name.startswith(".")] == []


def test_rollback_with_nothing_in_service_or_no_previous_is_refused(tmp_path: Path) -> None:
    models = tmp_path / "models"
    a = _write(models).name
    with pytest.raises(ModelError, match="no model is in service"):
        rollback(models)
    set_current(models, a)
    with pytest.raises(
        ModelError, match=f"no version was in service before {a}; there is nothing to roll back"
    ):
        rollback(models)
    assert read_current(models) == a


def test_rollback_to_a_tampered_version_is_refused(tmp_path: Path) -> None:
    models = tmp_path / "models"
    a, b = (_write(models, T0 + timedelta(minutes=i)).name for i in range(2))
    set_current(models, a)
    set_current(models, b)
    _flip_byte(models / a / "model.txt")
    with pytest.raises(ModelError, match=rf"cannot roll back to {a}: .*model\.txt: checksum mismatch"):
        rollback(models)
    assert read_current(models) == b


def test_current_set_by_hand_is_recorded_so_rollback_returns_to_it(tmp_path: Path) -> None:
    models = tmp_path / "models"
    a, b = (_write(models, T0 + timedelta(minutes=i)).name for i in range(2))
    (models / CURRENT_FILE).write_text(a + "\n")
    set_current(models, b)
    assert _history_versions(models) == [(a, "found"), (b, "promote")]
    assert rollback(models) == a


def test_rollback_after_current_was_changed_by_hand_is_refused(tmp_path: Path) -> None:
    models = tmp_path / "models"
    a, b = (_write(models, T0 + timedelta(minutes=i)).name for i in range(2))
    set_current(models, a)
    set_current(models, b)
    (models / CURRENT_FILE).write_text(a)
    with pytest.raises(ModelError, match="changed outside nba"):
        rollback(models)


def test_promoting_a_tampered_version_is_refused_and_current_stays(tmp_path: Path) -> None:
    models = tmp_path / "models"
    a, b = (_write(models, T0 + timedelta(minutes=i)).name for i in range(2))
    set_current(models, a)
    history_before = (models / HISTORY_FILE).read_text()
    _flip_byte(models / b / "report.md", at=5)
    with pytest.raises(ModelError, match=r"report\.md: checksum mismatch"):
        set_current(models, b)
    assert read_current(models) == a
    assert (models / HISTORY_FILE).read_text() == history_before


@pytest.mark.parametrize("version", ["20261123T120501Z-0000000", "../../etc", "latest"])
def test_promoting_an_unknown_version_is_not_found(tmp_path: Path, version: str) -> None:
    models = tmp_path / "models"
    _write(models)
    with pytest.raises(NotFoundError):
        set_current(models, version)
    assert read_current(models) is None


def test_a_folder_renamed_to_another_version_is_refused(tmp_path: Path) -> None:
    models = tmp_path / "models"
    path = _write(models)
    other = models / "20300101T000000Z-1234567"
    os.rename(path, other)
    with pytest.raises(ModelError, match="the folder was renamed or copied"):
        set_current(models, other.name)


def test_malformed_current_and_history_are_model_errors(tmp_path: Path) -> None:
    models = tmp_path / "models"
    a = _write(models).name
    (models / CURRENT_FILE).write_text("../../etc/passwd\n")
    with pytest.raises(ModelError, match=r"CURRENT: '\.\./\.\./etc/passwd' is not a version name"):
        read_current(models)
    assert set_current(models, a) is None, "promoting a good version repairs a broken CURRENT"
    (models / HISTORY_FILE).write_text("garbage\n")
    with pytest.raises(ModelError, match="HISTORY: line 1: 'garbage'"):
        rollback(models)


# --- listing ---------------------------------------------------------------------------------------


def test_list_models_newest_first_with_a_tampered_one_and_its_problem(tmp_path: Path) -> None:
    models = tmp_path / "models"
    a, b, c = (_write(models, T0 + timedelta(days=i)).name for i in range(3))
    (models / ".tmp-model-leftover").mkdir()
    set_current(models, b)
    _flip_byte(models / a / "model.txt")
    infos = list_models(models)
    assert [i.version for i in infos] == [c, b, a]
    assert [i.is_current for i in infos] == [False, True, False]
    assert [i.ok for i in infos] == [True, True, False]
    assert infos[0].metrics["expected_adoptions_top_k"] == 41.5
    assert infos[2].problem is not None
    assert infos[2].problem.startswith("model.txt: checksum mismatch")
    assert infos[2].metrics == {}
    assert infos[2].created_at == T0


def test_list_models_of_a_missing_folder_is_not_found(tmp_path: Path) -> None:
    with pytest.raises(NotFoundError, match="no models folder"):
        list_models(tmp_path / "nope")


# --- champion and challenger -----------------------------------------------------------------------


CHAMPION = gate_manifest(T0 - timedelta(days=30), auc=0.66, expected_adoptions_top_k=0.38)
SAME_RUN = {CHAMPION_KEY: CHAMPION.version}
CHAMPION_NEWER = gate_manifest(
    T0 - timedelta(days=30), {"shipped_rows_until": "2026-09-01"}, auc=0.66, expected_adoptions_top_k=0.38
)


@pytest.mark.parametrize(
    ("challenger", "champion", "force", "promote", "reason"),
    [
        ({}, None, False, True, "goes in service because no model is in service to compare it with"),
        (
            {},
            CHAMPION,
            False,
            True,
            r"AUC 0\.7000 > 0\.6600, IPS adoptions/call 0\.4000 > 0\.3800 .* from the manifests",
        ),
        (
            {"auc": 0.61},
            CHAMPION,
            False,
            False,
            r"is refused, its held-out AUC 0\.6100 is not above the best baseline's \(most_popular 0\.6200\) "
            r"on the same rows \(--force promotes it anyway\)",
        ),
        (
            {"expected_adoptions_top_k": 0.35},
            CHAMPION,
            False,
            False,
            r"IPS adoptions/call 0\.3500 is not above the best baseline's \(most_popular 0\.3500\)",
        ),
        ({"auc": 0.65}, CHAMPION, False, False, r"AUC 0\.6500 is not above 0\.6600 of .* from the manifests"),
        # A model that learnt only from older presentations than the one in service (a stale one), however
        # good its own held-out numbers were on its own, older, period.
        (
            {"summary": {"shipped_rows_until": "2026-04-01"}, "auc": 0.9},
            CHAMPION_NEWER,
            False,
            False,
            r"is refused, it learnt only from presentations before 2026-04-01 and .* from those before "
            r"2026-09-01: held-out numbers from an older period cannot show it is better now",
        ),
        (
            {"summary": {"shipped_rows_until": "2026-09-01"}},
            CHAMPION_NEWER,
            False,
            True,
            r"from the manifests",
        ),
        # The same held-out calls in one run decide, not each manifest's own numbers.
        (
            {"summary": SAME_RUN, "vs_champion_auc": 0.69, "champion_auc": 0.70},
            CHAMPION,
            False,
            False,
            r"AUC 0\.6900 is not above 0\.7000 of .* on the same held-out calls",
        ),
        (
            {
                "summary": SAME_RUN,
                "vs_champion_auc": 0.69,
                "champion_auc": 0.68,
                "vs_champion_ips": 0.4,
                "champion_ips": 0.3,
            },
            CHAMPION,
            False,
            True,
            r"AUC 0\.6900 > 0\.6800, IPS adoptions/call 0\.4000 > 0\.3000 of .* on the same held-out calls; above every baseline",
        ),
        ({"auc": 0.61}, CHAMPION, True, True, r"forced past the gate: its held-out AUC 0\.6100 is not above"),
        (
            {"baseline_auc_most_popular": float("nan"), "baseline_auc_random": float("nan")},
            CHAMPION,
            False,
            False,
            "its manifest records no baseline numbers to compare with",
        ),
    ],
)
def test_promotion_gate(
    challenger: dict[str, Any], champion: ModelManifest | None, force: bool, promote: bool, reason: str
) -> None:
    summary = challenger.pop("summary", None)
    manifest = gate_manifest(T0, summary, **challenger)
    decision = gate_promotion(manifest, champion, force=force)
    assert decision.promote is promote
    assert decision.forced is (force and promote)
    assert re.search(reason, decision.reason), decision.reason
    assert "\n" not in decision.reason
    assert decision.warning is None


def test_promotion_gate_with_nothing_in_service_promotes_a_model_no_better_than_a_baseline_loudly() -> None:
    decision = gate_promotion(gate_manifest(T0, auc=0.55), None)
    assert decision.promote and not decision.forced
    assert decision.warning is not None and decision.warning.startswith("WARNING: ")
    assert (
        "goes in service only because nothing else is: its held-out AUC 0.5500 is not above"
        in decision.warning
    )
    assert baseline_problem(gate_manifest(T0)) is None


def test_a_model_folder_written_with_the_top3_names_loads_under_the_top_k_names_and_gates_alike(
    tmp_path: Path,
) -> None:
    models = tmp_path / "models"
    top_k = {**GOOD, "expected_adoptions_top_k_snips": 0.39}
    top3 = {name.replace("_top_k", "_top3"): number for name, number in top_k.items()}
    assert "expected_adoptions_top3" in top3 and "expected_adoptions_top3_snips" in top3
    old = load_model_dir(_write(models, T0, metrics=top3))  # its version covers the names as written
    new = load_model_dir(_write(models, T0 + timedelta(seconds=1), metrics=top_k))
    assert old.metrics == new.metrics == top_k
    challenger = gate_manifest(T0 + timedelta(days=1), auc=0.75, expected_adoptions_top_k=0.45)
    against_old, against_new = gate_promotion(challenger, old), gate_promotion(challenger, new)
    assert against_old.promote and against_new.promote
    assert against_old.reason.replace(old.version, "V") == against_new.reason.replace(new.version, "V")


# --- the `nba models` commands ---------------------------------------------------------------------


def test_cli_list_promote_rollback(tmp_path: Path) -> None:
    runner = CliRunner()
    models = tmp_path / "models"
    worse = {"expected_adoptions_top_k": 40.0, "auc": 0.7, "baseline_auc_most_popular": 0.6}
    a = _write(models, T0, metrics=worse).name
    b = _write(models, T0 + timedelta(days=1)).name
    c = _write(models, T0 + timedelta(days=2), metrics={"auc": 0.5}).name
    result = runner.invoke(models_app, ["promote", a, "--models", str(models)])
    assert result.exit_code == 0, result.output
    assert result.output == f"promoted {a} (was none)\n"
    result = runner.invoke(models_app, ["promote", b, "--models", str(models)])
    assert result.output == f"promoted {b} (was {a})\n"
    result = runner.invoke(models_app, ["promote", b, "--models", str(models)])
    assert result.output == f"{b} is already in service\n"

    _flip_byte(models / a / "calibrator.json")
    result = runner.invoke(models_app, ["list", "--models", str(models)])
    assert result.exit_code == 0, result.output
    header, *rows, problem = result.output.splitlines()
    assert header.split() == [
        "version",
        "created",
        "(UTC)",
        "check",
        "expected_adoptions_top_k",
        "auc",
        "baseline_auc_most_popular",
    ]
    assert [row.lstrip("* ").split()[0] for row in rows] == [c, b, a], "newest first"
    assert rows[0].split()[-2:] == ["ok", "0.5"], "a metric a model lacks is left blank"
    assert rows[1].startswith("*") and rows[1].split()[-4:] == ["ok", "41.5", "0.71", "0.6"]
    assert rows[2].split()[-1] == "FAILED" and not rows[2].startswith("*")
    assert problem.startswith(f"{a}: calibrator.json: checksum mismatch (expected ")

    result = runner.invoke(models_app, ["rollback", "--models", str(models)])
    assert result.exit_code == 1
    assert isinstance(result.exception, ModelError)
    assert "calibrator.json: checksum mismatch" in str(result.exception)
    assert read_current(models) == b


def test_cli_promote_refuses_a_worse_model_in_one_line_and_force_is_recorded(tmp_path: Path) -> None:
    runner = CliRunner()
    models = tmp_path / "models"
    good = _write(models, T0).name
    worse = _write(models, T0 + timedelta(days=1), metrics={**GOOD, "auc": 0.6}).name
    assert runner.invoke(models_app, ["promote", good, "--models", str(models)]).exit_code == 0
    result = runner.invoke(models_app, ["promote", worse, "--models", str(models)])
    assert result.exit_code == 1 and isinstance(result.exception, ModelError)
    assert str(result.exception) == (
        f"keep {good}: {worse} is refused, its held-out AUC 0.6000 is not above the best baseline's "
        "(most_popular 0.6200) on the same rows (--force promotes it anyway)"
    )
    assert read_current(models) == good
    result = runner.invoke(models_app, ["promote", worse, "--models", str(models), "--force"])
    assert result.exit_code == 0, result.output
    assert result.output == f"promoted {worse} (was {good}) — forced past the gate\n"
    assert (models / "HISTORY").read_text().splitlines()[-1].split()[1:] == [worse, "forced"]
    # A forced promotion rolls back like any other; the model folders are untouched by either.
    assert rollback(models) == good
    load_model_dir(models / worse)


def test_cli_rollback_prints_one_line(tmp_path: Path) -> None:
    runner = CliRunner()
    models = tmp_path / "models"
    a, b = (_write(models, T0 + timedelta(days=i)).name for i in range(2))
    set_current(models, a)
    set_current(models, b)
    result = runner.invoke(models_app, ["rollback", "--models", str(models)])
    assert result.exit_code == 0, result.output
    assert result.output == f"rolled back to {a} (was {b})\n"


def test_cli_errors_are_nba_errors_and_help_works(tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(models_app, ["list", "--models", str(tmp_path / "nope")])
    assert result.exit_code == 1 and isinstance(result.exception, NotFoundError)
    result = runner.invoke(models_app, ["promote", "latest", "--models", str(tmp_path)])
    assert result.exit_code == 1 and isinstance(result.exception, NotFoundError)
    (tmp_path / "m").mkdir()
    result = runner.invoke(models_app, ["list", "--models", str(tmp_path / "m")])
    assert result.exit_code == 0 and "no models yet" in result.output
    for command in ("list", "promote", "rollback"):
        result = runner.invoke(models_app, [command, "--help"])
        assert result.exit_code == 0 and "--models" in result.output, command


def _uplift(manifest: ModelManifest) -> ModelManifest:
    return manifest.model_copy(update={"params": {"objective": "uplift"}})


# An uplift model leaves sure things to the cardholders: fewer adoptions follow its suggestions (IPS below
# the baselines' here) though they cause more (DR caused adoptions above every baseline's and the champion's).
UPLIFT_RUN = {
    "auc": 0.70,
    "expected_adoptions_top_k": 0.20,
    "dr_caused_adoptions_top_k": 0.12,
    "baseline_dr_caused_most_popular": 0.08,
    "baseline_dr_caused_random": 0.06,
    "vs_champion_auc": 0.70,
    "champion_auc": 0.66,
    "vs_champion_ips": 0.20,
    "champion_ips": 0.38,
    "vs_champion_dr_caused": 0.12,
    "champion_dr_caused": 0.09,
}


@pytest.mark.parametrize(
    ("objective", "metrics", "promote", "reason"),
    [
        (
            "uplift",
            {},
            True,
            r"AUC 0\.7000 > 0\.6600, DR caused adoptions/call 0\.1200 > 0\.0900 of .* on the same held-out "
            r"calls; above every baseline",
        ),
        # The same numbers for an adoption model: its IPS adoptions decide, and they are below a baseline's.
        (
            "adoption",
            {},
            False,
            r"its held-out IPS adoptions/call 0\.2000 is not above the best baseline's \(most_popular 0\.3500\)",
        ),
        (
            "uplift",
            {"dr_caused_adoptions_top_k": 0.07},
            False,
            r"its held-out DR caused adoptions/call 0\.0700 is not above the best baseline's "
            r"\(most_popular 0\.0800\)",
        ),
        (
            "uplift",
            {"vs_champion_dr_caused": 0.085},
            False,
            r"its held-out DR caused adoptions/call 0\.0850 is not above 0\.0900 of .* on the same held-out calls",
        ),
        (
            "uplift",
            {"dr_caused_adoptions_top_k": float("nan")},
            False,
            r"it has no held-out DR caused adoptions/call to compare with the baselines'",
        ),
    ],
)
def test_an_uplift_model_is_gated_on_the_adoptions_it_causes(
    objective: str, metrics: dict[str, float], promote: bool, reason: str
) -> None:
    challenger = gate_manifest(T0, SAME_RUN, **{**UPLIFT_RUN, **metrics})
    if objective == "uplift":
        challenger = _uplift(challenger)
    decision = gate_promotion(challenger, CHAMPION)
    assert decision.promote is promote and not decision.forced
    assert re.search(reason, decision.reason), decision.reason
