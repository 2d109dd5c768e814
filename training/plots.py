"""Report plots: metric records → PNG files of 800 × 500 pixels for the model report.

Figures are drawn with matplotlib's Agg canvas directly (no pyplot, no display, no global backend
switch) and saved without the matplotlib version in the metadata, so the same inputs give the same
bytes. matplotlib is imported at the first plot; when its default config/cache folder is not writable
(a locked-down home), `MPLCONFIGDIR` is pointed at a fresh temporary folder first, so the font cache
goes there.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Final

import numpy as np
import numpy.typing as npt
import pandas as pd

from nba.errors import check_param
from training.metrics import CalibrationTable, LiftTable, OracleRatio

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

WIDTH_PX: Final = 800
HEIGHT_PX: Final = 500
DPI: Final = 100
MODEL_COLOR: Final = "#1f5fa8"
OTHER_COLOR: Final = "#b8c2cc"
REFERENCE_COLOR: Final = "#c0392b"
MAX_LABEL_CHARS: Final = 40


def plot_calibration(table: CalibrationTable, path: str | Path) -> Path:
    """Observed adoption rate against mean prediction per bin, beside the diagonal of perfect calibration."""
    fig, ax = _new_figure()
    predicted = np.asarray(table.mean_predicted)
    observed = np.asarray(table.observed_rate)
    top = float(max(predicted.max(initial=0.0), observed.max(initial=0.0), 1e-3)) * 1.08
    ax.plot([0.0, top], [0.0, top], linestyle="--", color=OTHER_COLOR, label="perfect calibration")
    ax.plot(predicted, observed, marker="o", color=MODEL_COLOR, label="model (one point per bin)")
    ax.set_xlim(0.0, top)
    ax.set_ylim(0.0, top)
    ax.set_xlabel("Mean predicted adoption probability in bin")
    ax.set_ylabel("Observed adoption rate in bin")
    ax.set_title(
        f"Calibration: {len(table.count)} bins of about {table.n // max(len(table.count), 1):,} rows, "
        f"ECE = {table.ece:.4f}"
    )
    ax.legend(loc="upper left")
    ax.grid(alpha=0.3)
    return _save(fig, path)


def plot_lift(table: LiftTable, path: str | Path) -> Path:
    """Lift over the base rate per decile of score, each bar labelled with the decile's adoption rate."""
    fig, ax = _new_figure()
    deciles = np.asarray(table.decile)
    lift = np.nan_to_num(np.asarray(table.lift))
    bars = ax.bar(deciles, lift, color=MODEL_COLOR)
    ax.bar_label(bars, labels=[f"{rate:.1%}" for rate in table.rate], padding=2, fontsize=8)
    ax.axhline(1.0, linestyle="--", color=REFERENCE_COLOR, label=f"base rate ({table.base_rate:.2%})")
    ax.set_xticks(deciles)
    ax.set_xlabel("Decile of score (1 = highest scores)")
    ax.set_ylabel("Lift over base rate (×)")
    ax.set_title("Adoption rate by decile of model score")
    ax.set_ylim(0.0, float(max(lift.max(initial=0.0), 1.0)) * 1.15)
    ax.legend(loc="upper right")
    ax.grid(axis="y", alpha=0.3)
    return _save(fig, path)


def plot_feature_importance(
    names: Sequence[str], gains: Sequence[float] | npt.NDArray[np.float64], path: str | Path, top: int = 25
) -> Path:
    """The `top` features by total gain, as shares of the total gain of all features, largest on top.

    Raises ValueError when `names` and `gains` differ in length, a gain is negative or not finite,
    or `top` is not a positive integer.
    """
    gain = np.asarray(gains, dtype=np.float64)
    if gain.ndim != 1 or gain.size != len(names):
        raise ValueError(f"`gains` must have one value per name ({len(names)}), got shape {gain.shape}")
    if gain.size == 0:
        raise ValueError("`names` must not be empty")
    bad = ~(np.isfinite(gain) & (gain >= 0))
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise ValueError(f"`gains` must be finite and ≥ 0, got {gain[row]} for {names[row]!r}")
    check_param(
        "top", top, isinstance(top, int) and not isinstance(top, bool) and top >= 1, "a positive integer"
    )
    total = float(gain.sum())
    share = gain / total * 100.0 if total > 0 else np.zeros_like(gain)
    shown = np.argsort(-gain, kind="stable")[:top]
    fig, ax = _new_figure()
    positions = np.arange(shown.size)
    ax.barh(positions, share[shown], color=MODEL_COLOR)
    ax.set_yticks(positions, labels=[_short(names[i]) for i in shown], fontsize=7 if shown.size > 15 else 9)
    ax.invert_yaxis()
    ax.set_xlabel("Share of total gain (%)")
    ax.set_title(f"Feature importance by gain: top {shown.size} of {gain.size} features")
    ax.grid(axis="x", alpha=0.3)
    return _save(fig, path)


def plot_model_vs_baselines(
    results: Mapping[str, float], path: str | Path, metric_label: str, model_key: str = "model"
) -> Path:
    """One horizontal bar per entry of `results` (name → metric value), in the given order top to bottom.

    The bar of `model_key` is highlighted. Raises ValueError when `results` is empty, a value is not
    finite, or `model_key` is not one of its keys.
    """
    if not results:
        raise ValueError("`results` must not be empty")
    if model_key not in results:
        raise ValueError(f"`model_key` {model_key!r} is not a key of `results`: {sorted(results)}")
    for name, value in results.items():
        if not np.isfinite(value):
            raise ValueError(f"`results` must hold finite values, got {value} for {name!r}")
    names = list(results)
    values = np.array([results[name] for name in names], dtype=np.float64)
    fig, ax = _new_figure()
    positions = np.arange(len(names))
    colors = [MODEL_COLOR if name == model_key else OTHER_COLOR for name in names]
    bars = ax.barh(positions, values, color=colors)
    ax.bar_label(bars, labels=[f"{v:.4g}" for v in values], padding=3, fontsize=9)
    ax.set_yticks(positions, labels=[_short(name) for name in names])
    ax.get_yticklabels()[names.index(model_key)].set_fontweight("bold")
    ax.invert_yaxis()
    _pad_x_for_labels(ax, values)
    ax.set_xlabel(metric_label)
    ax.set_title(f"{metric_label}: {model_key} against baselines")
    ax.grid(axis="x", alpha=0.3)
    return _save(fig, path)


def plot_oracle_ratio(results: Mapping[str, OracleRatio], path: str | Path, model_key: str = "model") -> Path:
    """Expected adoptions at k of each ranking (name → `OracleRatio`) as a share of the oracle's.

    Bars run top to bottom in the order of `results`; the bar of `model_key` is highlighted when present
    and a line marks the oracle (100%). Raises ValueError when `results` is empty.
    """
    if not results:
        raise ValueError("`results` must not be empty")
    names = list(results)
    ratios = np.nan_to_num(np.array([results[name].ratio for name in names], dtype=np.float64)) * 100.0
    fig, ax = _new_figure()
    positions = np.arange(len(names))
    colors = [MODEL_COLOR if name == model_key else OTHER_COLOR for name in names]
    bars = ax.barh(positions, ratios, color=colors)
    texts = ax.bar_label(bars, labels=[f"{r:.1f}%" for r in ratios], label_type="center", fontsize=10)
    for text, name in zip(texts, names, strict=True):
        text.set_color("white" if name == model_key else "black")
    ax.axvline(100.0, linestyle="--", color=REFERENCE_COLOR, label="oracle: ranks by the true probabilities")
    tick_labels = [f"{_short(name)}\n{results[name].model:.3f} per group" for name in names]
    ax.set_yticks(positions, labels=tick_labels)
    ax.invert_yaxis()
    ax.set_xlim(0.0, 115.0)
    ks = ", ".join(str(k) for k in sorted({r.k for r in results.values()}))
    oracles = ", ".join(f"{v:.3f}" for v in sorted({r.oracle for r in results.values()}))
    ax.set_xlabel(f"Expected adoptions per group of the top {ks}, as % of the oracle's ({oracles} per group)")
    ax.set_title("Share of the best achievable expected adoptions")
    ax.legend(loc="lower right")
    ax.grid(axis="x", alpha=0.3)
    return _save(fig, path)


def plot_backtest(frame: pd.DataFrame, path: str | Path) -> Path:
    """A backtest over time: per month, the model's AUC and IPS adoptions per call (with its 95% interval)
    beside the best baseline's; skipped months are gaps. `frame` is `backtest_frame`'s table.

    Raises ValueError when `frame` has no month.
    """
    if frame.empty:
        raise ValueError("`frame` must hold at least one month")
    _ensure_writable_mpl_config_dir()
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(WIDTH_PX / DPI, HEIGHT_PX / DPI), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    auc_ax, ips_ax = fig.subplots(2, 1, sharex=True)
    x = np.arange(len(frame))
    for ax, key, label in ((auc_ax, "auc", "AUC"), (ips_ax, "ips", "IPS adoptions per call")):
        model = frame[key].to_numpy(dtype=np.float64)
        baseline = frame[f"best_baseline_{key}"].to_numpy(dtype=np.float64)
        if key == "ips":
            low = frame["ips_low"].to_numpy(dtype=np.float64)
            high = frame["ips_high"].to_numpy(dtype=np.float64)
            ax.fill_between(x, low, high, color=MODEL_COLOR, alpha=0.15, label="model, 95% interval")
        ax.plot(x, model, marker="o", color=MODEL_COLOR, label="model (fitted on the months before)")
        ax.plot(x, baseline, marker="s", linestyle="--", color=REFERENCE_COLOR, label="best baseline")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend(loc="best", fontsize=8)
    ips_ax.set_xticks(x, labels=[str(m) for m in frame["month"]])
    ips_ax.set_xlabel("Month evaluated (trained on the rows before it)")
    auc_ax.set_title("Backtest: the model against the best baseline, month by month")
    return _save(fig, path)


def _new_figure() -> tuple[Figure, Axes]:
    # Imported here, not at module level: `nba --help` should not pay for matplotlib, and MPLCONFIGDIR
    # must be settled before matplotlib is first imported (it reads it then).
    _ensure_writable_mpl_config_dir()
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(WIDTH_PX / DPI, HEIGHT_PX / DPI), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig, fig.add_subplot()


def _save(fig: Figure, path: str | Path) -> Path:
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    # No bbox_inches="tight": it would change the pixel size. No "Software" entry: bytes stay stable.
    fig.savefig(out, format="png", dpi=DPI, metadata={"Software": None})
    return out


def _short(label: str) -> str:
    return label if len(label) <= MAX_LABEL_CHARS else label[: MAX_LABEL_CHARS - 1] + "…"


def _pad_x_for_labels(ax: Axes, values: npt.NDArray[np.float64]) -> None:
    """Leaves room right of the longest bar (and left of the most negative one) for its value label."""
    low = float(min(values.min(), 0.0))
    high = float(max(values.max(), 0.0))
    span = (high - low) or 1.0
    ax.set_xlim(low - (0.15 * span if low < 0 else 0.0), high + 0.15 * span)


def _ensure_writable_mpl_config_dir() -> None:
    """Points MPLCONFIGDIR at a fresh temp folder unless it is set or matplotlib's default folders are writable."""
    if "MPLCONFIGDIR" in os.environ:
        return
    try:
        folders = _default_mpl_folders()
    except RuntimeError:  # no HOME and no password entry: no default folder at all
        folders = []
    if not folders or not all(_writable(folder) for folder in folders):
        os.environ["MPLCONFIGDIR"] = tempfile.mkdtemp(prefix="nba-matplotlib-")


def _default_mpl_folders() -> list[Path]:
    """matplotlib's config and cache folders on Linux when MPLCONFIGDIR is not set."""
    folders = []
    for variable, fallback in (("XDG_CONFIG_HOME", ".config"), ("XDG_CACHE_HOME", ".cache")):
        base = os.environ.get(variable)
        folders.append((Path(base) if base else Path.home() / fallback) / "matplotlib")
    return folders


def _writable(folder: Path) -> bool:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        return False
    return os.access(folder, os.W_OK)


def plot_nps_groups(
    labels: Sequence[str],
    nps: Sequence[float],
    low: Sequence[float],
    high: Sequence[float],
    too_few: Sequence[bool],
    centre: float,
    title: str,
    path: str | Path,
) -> Path:
    """One horizontal bar per group (top to bottom in the given order): its NPS with the 95% interval as an
    error bar, groups with too few answers pale, and the centre's NPS as a dashed line.

    Raises ValueError when the sequences differ in length or are empty.
    """
    if not labels or not len(labels) == len(nps) == len(low) == len(high) == len(too_few):
        raise ValueError("`labels`, `nps`, `low`, `high`, `too_few` must be non-empty and of one length")
    fig, ax = _new_figure()
    positions = np.arange(len(labels))[::-1]
    points = np.asarray(nps, dtype=np.float64)
    errors = np.vstack([points - np.asarray(low), np.asarray(high) - points])
    colors = [OTHER_COLOR if few else MODEL_COLOR for few in too_few]
    ax.barh(positions, points, color=colors, xerr=errors, ecolor="#333333", capsize=3)
    ax.axvline(centre, linestyle="--", color=REFERENCE_COLOR, label=f"centre NPS ({centre:+.0f})")
    ax.axvline(0.0, color="#888888", linewidth=0.8)
    ax.set_yticks(positions, [_short(label) for label in labels])
    ax.set_xlim(-100.0, 100.0)
    ax.set_xlabel("NPS (% promoters − % detractors), bar: 95% bootstrap interval; pale: too few to say")
    ax.set_title(title)
    ax.legend(loc="lower right")
    return _save(fig, path)


def plot_nps_weeks(
    weeks: Sequence[str], nps: Sequence[float], low: Sequence[float], high: Sequence[float], path: str | Path
) -> Path:
    """NPS per week as a line, its 95% interval as a band.

    Raises ValueError when the sequences differ in length or are empty.
    """
    if not weeks or not len(weeks) == len(nps) == len(low) == len(high):
        raise ValueError("`weeks`, `nps`, `low`, `high` must be non-empty and of one length")
    fig, ax = _new_figure()
    x = np.arange(len(weeks))
    ax.fill_between(x, np.asarray(low), np.asarray(high), color=OTHER_COLOR, alpha=0.6, label="95% interval")
    ax.plot(x, np.asarray(nps), marker="o", color=MODEL_COLOR, label="NPS")
    step = max(1, len(weeks) // 12)
    ax.set_xticks(x[::step], [weeks[i] for i in range(0, len(weeks), step)], rotation=45, ha="right")
    ax.set_ylim(-100.0, 100.0)
    ax.set_xlabel("Week (starting Monday)")
    ax.set_ylabel("NPS")
    ax.set_title("NPS by week of the call")
    ax.legend(loc="lower right")
    return _save(fig, path)
