"""Command line: one clear line and a non-zero exit on bad input, a readable summary on good input."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import VALID_TABLES, SampleModel, write_tables
from tests.deployment import Deployment
from training.cli import main


def test_validate_prints_a_summary_and_exits_0(valid_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", str(valid_dir)]) == 0
    out = capsys.readouterr().out
    assert f"{valid_dir}: valid" in out
    assert "transactions.csv" in out and "6 rows" in out
    assert "as-of                   2025-03-04" in out
    assert "cardholders             3" in out
    assert "spend mapped to other   5.5%" in out


def test_validate_lists_problems_and_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = VALID_TABLES["nps"].replace("K1,9,", "K1,11,")
    data_dir = write_tables(tmp_path / "data", dict(VALID_TABLES, nps=bad))
    assert main(["validate", str(data_dir)]) == 1
    err = capsys.readouterr().err.splitlines()
    assert err == ["nps.csv, row 1, column score: '11': is outside 0–10", f"{data_dir}: 1 problem found"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["validate", "/nonexistent-dir"], "error: /nonexistent-dir: not a directory"),
        (["validate"], "error: Missing argument 'data_dir'."),
        (
            ["validate", ".", "--as-of", "2025-13-01"],
            "error: Invalid value: must be a date in YYYY-MM-DD form, got '2025-13-01'",
        ),
        (["validate", ".", "--max-problems", "0"], "error: Invalid value for '--max-problems'"),
        (["train", "--data", ".", "--threads", "0"], "error: Invalid value for '--threads'"),
        (["frobnicate"], "error: No such command 'frobnicate'."),
    ],
)
def test_bad_arguments_are_one_line(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith(message), err


@pytest.mark.slow  # a fresh interpreter per command
def test_console_script_has_help_for_every_command() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "training.cli", "--help"], capture_output=True, text=True, check=True
    )
    for command in ("validate", "generate"):
        assert command in result.stdout
    one = subprocess.run(
        [sys.executable, "-m", "training.cli", "validate", "--help"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "--as-of" in one.stdout


def _closed_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.parametrize(
    ("db", "extra", "message"),
    [
        ("not a url", [], "error: the feedback database URL must look like sqlite:///var/feedback.db"),
        (
            "sqlite:////nonexistent-dir/feedback.db",
            [],
            "error: /nonexistent-dir/feedback.db: no such feedback database file",
        ),
        (
            "postgresql://nba:s3cret-pw@127.0.0.1:{port}/nba",
            [],
            "error: feedback database postgresql+psycopg://nba:***@127.0.0.1:{port}/nba is unavailable: ",
        ),
        (
            "sqlite:///x.db",
            ["--format", "xlsx"],
            "error: Invalid value for --format: must be csv or parquet, got 'xlsx'",
        ),
    ],
)
def test_export_feedback_bad_input_is_one_line(
    db: str, extra: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    port = _closed_port()
    argv = ["export-feedback", "--db", db.format(port=port), "--out", str(tmp_path / "out"), *extra]
    assert main(argv) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith(message.format(port=port)), err
    assert "s3cret-pw" not in err[0]
    assert not (tmp_path / "out").exists()


def test_export_feedback_writes_the_tables_and_prints_counts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from datetime import UTC, datetime

    from nba.feedback import CallDecision, FeedbackStore

    url = f"sqlite:///{tmp_path}/feedback.db"
    store = FeedbackStore(url)
    store.migrate()
    served_at = datetime(2026, 8, 15, 10, 30, tzinfo=UTC)
    store.log_decision(CallDecision("K1", "C1", "general", "v1", "2026-08-14", served_at, None, b"", ()))
    store.dispose()
    assert main(["export-feedback", "--db", url, "--out", str(tmp_path / "out"), "--format", "parquet"]) == 0
    out = capsys.readouterr().out
    assert "1 calls, 0 conversations, 0 NPS answers (calls.parquet, conversations.parquet, nps.parquet)" in (
        out
    )
    assert (tmp_path / "out" / "calls.parquet").is_file()


# --- nba profiles, and --profiles on recommend and score ----------------------------------------------------

SAMPLE_DIR = str(Path(__file__).resolve().parents[2] / "data_samples")


@pytest.fixture
def sample_model_dir(sample_model: SampleModel) -> Path:
    return sample_model.model_dir


def test_profiles_build_list_promote(
    sample_model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "profiles"
    argv = ["profiles", "build", "--data", SAMPLE_DIR, "--model", str(sample_model_dir), "--out", str(root)]
    assert main([*argv, "--as-of", "2026-09-01"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"{root / '2026-09-01'}: 2,930 cardholders × 210 features as of 2026-09-01 in ")
    assert out.endswith(f" s (spend estimates of model {sample_model_dir.name})\n")
    assert main([*argv, "--promote"]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "promoted 2026-10-01 (was none)"
    assert main(["profiles", "list", "--dir", str(root)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line[:22] for line in lines] == ["* 2026-10-01  ok      ", "  2026-09-01  ok      "]
    assert lines[0].endswith("3,000 cardholders")
    assert main(["profiles", "promote", "2026-09-01", "--dir", str(root)]) == 0
    assert capsys.readouterr().out == "promoted 2026-09-01 (was 2026-10-01)\n"
    assert main(["profiles", "promote", "2026-09-01", "--dir", str(root)]) == 0
    assert capsys.readouterr().out == "2026-09-01 is already in service\n"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ("profiles promote ../2026-10-01 --dir {root}", "{root}: no snapshot '../2026-10-01'"),
        ("profiles promote 2026-01-01 --dir {root}", "{root}/2026-01-01: no such snapshot folder"),
        ("profiles list --dir {root}/nowhere", "{root}/nowhere: no profiles folder"),
        ("profiles build --data {root} --model {model} --as-of 2026-02-30", "Invalid value: must be a date"),
        ("profiles build --data {root}", "Missing option '--model'"),
        (
            "recommend C0000001 --data {sample} --model {model} --profiles {root}",
            "{root}: neither a snapshot folder nor a profiles folder",
        ),
    ],
)
def test_profiles_errors_are_one_line(
    argv: str, message: str, sample_model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    names = {"root": str(tmp_path), "model": str(sample_model_dir), "sample": SAMPLE_DIR}
    assert main(argv.format(**names).split()) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith("error: " + message.format(**names)), err


@pytest.fixture(scope="module")
def sample_scores(sample_model: SampleModel, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`nba score` of the sample data with the sample model, computed from the data (CSV)."""
    out = tmp_path_factory.mktemp("scores") / "scores.csv"
    model = str(sample_model.model_dir)
    assert main(["score", "--data", SAMPLE_DIR, "--model", model, "--out", str(out)]) == 0
    return out


def test_recommend_and_score_from_a_snapshot_equal_computing_from_the_data(
    sample_model_dir: Path,
    sample_scores: Path,
    sample_deployment: Deployment,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # The session's snapshot of the sample (built by `build_snapshot`, as `nba profiles build` is above),
    # only read here.
    root = sample_deployment.profiles_dir
    assert sample_deployment.version == sample_model_dir.name
    model = ["--model", str(sample_model_dir)]
    decisions = []
    for profiles in ([], ["--profiles", str(root)], ["--profiles", str(root / "2026-10-01")]):
        assert main(["recommend", "C0000008", "--data", SAMPLE_DIR, *model, "--json", *profiles]) == 0
        decisions.append(capsys.readouterr().out)
    assert decisions[0] == decisions[1] == decisions[2] and '"profile_as_of": "2026-10-01"' in decisions[0]
    assert json.loads(decisions[0])["scorer"] == "tree_walk"
    out_file = tmp_path / "snapshot.csv"
    assert main(["score", "--data", SAMPLE_DIR, *model, "--out", str(out_file), "--profiles", str(root)]) == 0
    from_data = sample_scores.read_text()
    assert out_file.read_text() == from_data and from_data.count("\n") > 3000
    as_of = ["--profiles", str(root), "--as-of", "2026-09-01"]
    assert main(["recommend", "C0000008", "--data", SAMPLE_DIR, *model, *as_of]) != 0
    err = capsys.readouterr().err.strip()
    assert err.endswith("the snapshot is as of 2026-10-01, not 2026-09-01; leave out --as-of")


def test_recommend_says_the_calls_reasons_once_and_the_value_floor_can_leave_nothing(
    sample_model_dir: Path, sample_deployment: Deployment, capsys: pytest.CaptureFixture[str]
) -> None:
    # From the session's snapshot of the sample (the test above: the same decisions as from the data),
    # so that each call does not compute every cardholder's profile again (~0.6 s of CPU each).
    model = ["--model", str(sample_model_dir), "--profiles", str(sample_deployment.profiles_dir)]
    assert main(["recommend", "C0000008", "--data", SAMPLE_DIR, *model, "--json", "--value-floor", "0"]) == 0
    unfloored = json.loads(capsys.readouterr().out)
    assert unfloored["suggestions"] and unfloored["shared_reasons"]
    assert main(["recommend", "C0000008", "--data", SAMPLE_DIR, *model, "--value-floor", "0"]) == 0
    text = capsys.readouterr().out
    assert text.count("why these: ") == 1 and "; ".join(unfloored["shared_reasons"]) in text
    for suggestion in unfloored["suggestions"]:
        assert f"about ${suggestion['value_usd']:,.0f} a year for them;" in text
    assert main(["recommend", "C0000008", "--data", SAMPLE_DIR, *model, "--value-floor", "10000"]) == 0
    assert "nothing to suggest: nothing on this card is worth $10,000 a year or more to this cardholder" in (
        capsys.readouterr().out
    )
    assert main(["recommend", "C0000008", "--data", SAMPLE_DIR, *model, "--value-floor", "-1"]) != 0


# --- progress on stderr ---------------------------------------------------------------------------------

TRAIN_STEPS = [
    "validate",
    "features",
    "spend estimator",
    "training set",
    "model fit",
    "detractor model",
    "evaluation",
    "backtest",
    "refit",
    "drift",
    "model folder",
]
STEP_LINE = re.compile(r"  (?P<step>[a-z ]+): \d+\.\d s(?: \((?P<detail>[^()]+)\))?")


@pytest.fixture
def not_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    """stderr as a pipe or a log file sees it: no variable that makes rich draw on it anyway."""
    for name in ("FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE"):
        monkeypatch.delenv(name, raising=False)


@pytest.mark.slow  # a training of its own: the command is what it tests
@pytest.mark.usefixtures("not_a_terminal")
def test_train_off_a_terminal_writes_one_plain_line_per_step(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["train", "--data", SAMPLE_DIR, "--out", str(tmp_path / "models")]) == 0
    captured = capsys.readouterr()
    assert "\x1b" not in captured.err and "\r" not in captured.err
    matches = [STEP_LINE.fullmatch(line) for line in captured.err.splitlines()]
    assert all(matches), captured.err
    assert [m["step"] for m in matches if m] == TRAIN_STEPS
    details = {m["step"]: m["detail"] for m in matches if m}
    assert details["features"] == "1,488 snapshots"
    assert re.fullmatch(r"early stopping chose \d+ of up to 2,000 rounds, refit \d+", details["model fit"])
    assert re.fullmatch(r"2026-07, 2026-08: (STABLE|SHRINKING|UNSTABLE|GONE)", details["backtest"])
    assert captured.out.startswith("model ")


@pytest.mark.usefixtures("not_a_terminal")
def test_evaluate_writes_its_steps_unless_quiet(
    sample_model_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["evaluate", "--model", str(sample_model_dir), "--data", SAMPLE_DIR]
    assert main(argv) == 0
    steps = [line.split(":")[0] for line in capsys.readouterr().err.splitlines()]
    assert steps == ["  validate", "  features", "  evaluation"]
    assert main([*argv, "--quiet"]) == 0
    captured = capsys.readouterr()
    assert captured.err == "" and captured.out.startswith("held-out: AUC ")


def test_db_upgrade_migrates_once_and_says_the_revision(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path / 'feedback.db'}"
    assert main(["db", "upgrade", "--database-url", url]) == 0
    assert main(["db", "upgrade", "--database-url", url]) == 0  # at head already: a no-op
    out = capsys.readouterr().out.splitlines()
    assert out == [f"feedback database sqlite+pysqlite:///{tmp_path / 'feedback.db'}: at revision 0006"] * 2
    port = _closed_port()
    assert main(["db", "upgrade", "--database-url", f"postgresql://nba:pw@127.0.0.1:{port}/nba"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: feedback database ") and "pw@" not in err and len(err.splitlines()) == 1


# --- one meaning of --as-of, the generate and score outputs (issue 15) --------------------------------

AS_OF_COMMANDS = [
    "validate {sample}",
    "features --data {sample} --out {tmp}/f.parquet",
    "train --data {sample} --out {tmp}/models",
    "evaluate --model {model} --data {sample}",
    "profiles build --data {sample} --model {model} --out {tmp}/profiles",
    "score --data {sample} --model {model} --out {tmp}/s.csv",
    "recommend C0000001 --data {sample} --model {model}",
    "drift --model {model} --data {sample}",
]


@pytest.mark.parametrize("command", AS_OF_COMMANDS)
def test_every_command_refuses_an_as_of_outside_the_data_in_one_line(
    command: str, sample_model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    names = {"sample": SAMPLE_DIR, "model": str(sample_model_dir), "tmp": str(tmp_path)}
    argv = command.format(**names).split()
    # The sample world's spend starts on 2025-07-01 and its last row is dated 2026-09-30.
    for as_of, message in (
        ("2030-01-01", "is after 2026-10-01, the day after the last date in"),
        ("2020-01-01", "is not after the first date in"),
    ):
        assert main([*argv, "--as-of", as_of]) == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1, err
        assert err[0].startswith(f"error: --as-of {as_of} {message} {SAMPLE_DIR}"), err
    assert not (tmp_path / "f.parquet").exists() and not (tmp_path / "profiles").exists()


def test_generate_prints_a_summary_a_person_reads(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "world"
    assert main(["generate", "--cardholders", "30", "--seed", "3", "--out", str(out), "--format", "csv"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert re.fullmatch(rf"{out}: a synthetic world as of 2026-10-01 \(seed 3, csv\) in \d+\.\d s", lines[0])
    rows = {line.split()[0]: line.split()[1] for line in lines[1:-1]}
    assert rows["transactions"] == f"{(out / 'transactions.csv').read_text().count(chr(10)) - 1:,}"
    assert set(rows) == {"cardholders", "transactions", "benefit_usage", "conversations", "calls", "nps"}
    assert lines[-1].startswith("  oracle (hidden truth)") and "WorldSummary" not in "\n".join(lines)


def test_score_marks_the_rows_the_diversity_rule_ranked_below_a_lower_score(sample_scores: Path) -> None:
    import pandas as pd

    scores = pd.read_csv(sample_scores)
    assert list(scores.columns) == ["cardholder_id", "rank", "benefit_id", "score", "diversity"]
    # A naive reference: a row is marked when some row ranked above it for the same cardholder has a
    # lower score (the file lists each cardholder's rows in rank order). Over plain lists: a pandas
    # slice per row took ~2 s of CPU for the ~9,000 rows.
    ids, ranks, values = (scores[c].tolist() for c in ("cardholder_id", "rank", "score"))
    expected = []
    for i, (cardholder_id, rank, score) in enumerate(zip(ids, ranks, values, strict=True)):
        above = range(i - rank + 1, i)
        assert all(ids[j] == cardholder_id for j in above)
        expected.append(any(values[j] < score for j in above))
    assert scores["diversity"].tolist() == expected
    assert scores["diversity"].any() and not scores["diversity"].all()
