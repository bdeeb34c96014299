"""The report's figures, drawn with matplotlib's Agg backend into PNG files.

matplotlib is imported inside `_pyplot()` so that importing this module (and `orchestrator --help`)
stays fast. Each function draws one figure from records of `report.load`, writes it to `path` and
returns True, or returns False without writing when there is nothing to draw.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

from orchestrator.report.load import Experiment, Run, Trial, mean_baselines
from orchestrator.trial_outputs import TEST, TUNE, VAL

_BASELINE_STYLE = {
    "baseline_index": ("index", "tab:gray", ":"),
    "baseline_ar": ("causal AR", "tab:brown", "-."),
    "baseline_explicit": ("explicit formula", "tab:red", "--"),
    "baseline_smoothed": ("smoothed prime sum", "tab:purple", "--"),
    "baseline_smoothed_ar": ("smoothed + AR", "tab:pink", "-."),
}
_OTHER_STYLE = ("tab:olive", ":")  # a baseline this page does not know yet
_DPI = 96


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> bool:
    fig.tight_layout()
    fig.savefig(path, format="png", dpi=_DPI)
    _pyplot().close(fig)
    return True


def _draw_baselines(ax, trials: Sequence[Trial], prefix: str = TUNE) -> None:
    """Every baseline's mean on one window set as a horizontal line (any `baseline_*` key)."""
    for name, value in mean_baselines(trials, prefix).items():
        label, color, style = _BASELINE_STYLE.get(name, (name.removeprefix("baseline_"), *_OTHER_STYLE))
        ax.axhline(value, color=color, linestyle=style, linewidth=1.2, label=f"{label} {value:.4g}")


def _trial_order(trial: Trial) -> tuple[int, str]:
    return (int(trial.id), "") if trial.id.isdigit() else (1 << 62, trial.id)


def wigner_pdf(s: float) -> float:
    """GUE Wigner surmise p_W(s) = (32/pi^2) s^2 exp(-4 s^2 / pi) (MATH.md §4.1).

    Args:
        s: unfolded spacing (mean 1), >= 0.
    """
    return 32.0 / math.pi**2 * s * s * math.exp(-4.0 * s * s / math.pi)


def leaderboard(runs: Sequence[Run], path: Path, top: int = 20) -> bool:
    """Objective ± stderr of the best `top` completed trials of each run, beside the baselines.

    Args:
        runs: the runs to draw, one series each.
        path: PNG file to write.
        top: trials per run (default 20).
    """
    drawn = [r for r in runs if r.completed]
    if not drawn:
        return False
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for k, run in enumerate(drawn):
        best = run.completed[:top]
        xs = [i + 1 + 0.12 * k for i in range(len(best))]
        errs = [
            0.0 if math.isnan(t.metric("extrapolation_stderr")) else t.metric("extrapolation_stderr")
            for t in best
        ]
        ax.errorbar(xs, [t.value for t in best], yerr=errs, fmt="o", capsize=3, label=run.label)
    _draw_baselines(ax, [t for r in drawn for t in r.completed])
    ax.set_yscale("log")
    ax.set_xlabel("rank within run")
    ax.set_ylabel("extrapolation error (MSE, unfolded units)")
    ax.set_title("Leaderboard: objective ± stderr against the baselines")
    ax.legend(fontsize=8)
    return _save(fig, path)


def history(runs: Sequence[Run], path: Path) -> bool:
    """Objective of every completed trial in trial order with the best so far, one panel per run.

    Args:
        runs: the runs to draw.
        path: PNG file to write.
    """
    drawn = [r for r in runs if r.completed]
    if not drawn:
        return False
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(drawn), figsize=(5 * len(drawn), 4), squeeze=False)
    for ax, run in zip(axes[0], drawn, strict=True):
        ordered = sorted(run.completed, key=_trial_order)
        xs = list(range(1, len(ordered) + 1))
        values = [t.value for t in ordered]
        best = [min(values[: i + 1]) for i in range(len(values))]
        ax.plot(xs, values, "o", alpha=0.6, label="trial")
        ax.step(xs, best, where="post", color="black", label="best so far")
        _draw_baselines(ax, ordered)
        ax.set_yscale("log")
        ax.set_xlabel("completed trial (in trial order)")
        ax.set_ylabel("extrapolation error")
        ax.set_title(run.label, fontsize=9)
        ax.legend(fontsize=7)
    return _save(fig, path)


def gue_weights(runs: Sequence[Run], path: Path) -> bool:
    """gue_nll_weight x gue_mmd_weight on log axes, each completed trial coloured by its objective.

    Args:
        runs: the runs to draw; the weights are read from each trial's config.yaml (what it trained
            with, whatever the search called its knobs); trials without one are left out.
        path: PNG file to write. Nothing is drawn unless at least 3 trials and 2 weight pairs.
    """
    points = []
    for run in runs:
        for t in run.completed:
            loss = (t.config or {}).get("loss") or {}
            nll, mmd = loss.get("gue_nll_weight"), loss.get("gue_mmd_weight")
            if isinstance(nll, int | float) and isinstance(mmd, int | float) and nll > 0 and mmd > 0:
                points.append((float(nll), float(mmd), t.value))
    if len(points) < 3 or len({(x, y) for x, y, _ in points}) < 2:
        return False
    plt = _pyplot()
    from matplotlib.colors import LogNorm

    fig, ax = plt.subplots(figsize=(6, 5))
    xs, ys, zs = zip(*points, strict=True)
    sc = ax.scatter(
        xs, ys, c=zs, cmap="viridis_r", norm=LogNorm(vmin=min(zs), vmax=max(zs)), s=45, edgecolors="k"
    )
    best = min(points, key=lambda p: p[2])
    ax.scatter([best[0]], [best[1]], marker="*", s=260, facecolors="none", edgecolors="red", label="best")
    fig.colorbar(sc, ax=ax, label="extrapolation error (log)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("gue_nll_weight")
    ax.set_ylabel("gue_mmd_weight")
    ax.set_title("Effect of the GUE prior weights")
    ax.legend(fontsize=8)
    return _save(fig, path)


def spacings(picks: Sequence[tuple[str, Trial]], path: Path, bins: int = 40) -> bool:
    """Histogram of predicted and true unfolded spacings against the Wigner surmise, one panel per trial.

    Args:
        picks: (label, trial) pairs; trials without spacings in predictions.json are left out.
        path: PNG file to write.
        bins: histogram bins on [0, 3.5] (default 40).
    """
    drawn = [(lab, t) for lab, t in picks if t.predictions and t.predictions.get("spacings_pred")]
    if not drawn:
        return False
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(drawn), figsize=(4.5 * len(drawn), 3.8), squeeze=False, sharey=True)
    grid = [3.5 * i / 200 for i in range(201)]
    edges = [3.5 * i / bins for i in range(bins + 1)]
    for ax, (label, trial) in zip(axes[0], drawn, strict=True):
        preds = trial.predictions or {}
        truth = preds.get("spacings_true") or []
        if truth:
            ax.hist(truth, bins=edges, density=True, alpha=0.45, color="tab:gray", label="data")
        ax.hist(
            preds["spacings_pred"],
            bins=edges,
            density=True,
            histtype="step",
            linewidth=1.8,
            label="predicted",
        )
        ax.plot(grid, [wigner_pdf(s) for s in grid], color="tab:red", label="Wigner surmise (GUE)")
        ax.set_xlabel("unfolded spacing s")
        ax.set_title(f"{label}: trial {trial.id}", fontsize=9)
        ax.legend(fontsize=7)
    axes[0][0].set_ylabel("density")
    return _save(fig, path)


def block_variance(picks: Sequence[tuple[str, Trial]], path: Path) -> bool:
    """Variance of block sums of L spacings against L, predicted per trial and the data's.

    Args:
        picks: (label, trial) pairs; trials without block_variance in predictions.json are left out.
        path: PNG file to write.
    """
    drawn = [(lab, t) for lab, t in picks if t.predictions and t.predictions.get("block_variance")]
    if not drawn:
        return False
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    data_drawn = False
    for label, trial in drawn:
        bv = (trial.predictions or {})["block_variance"]
        ax.plot(bv["L"], bv["pred"], "o-", label=f"{label}: trial {trial.id}")
        if not data_drawn and bv.get("data"):
            ax.plot(bv["L"], bv["data"], "s-", color="black", linewidth=2, label="data")
            data_drawn = True
    ax.set_xscale("log", base=2)
    ax.set_xlabel("block length L (spacings)")
    ax.set_ylabel("Var(sum of L spacings)")
    ax.set_title("Block-sum variance across scales (rg_penalty's target)")
    ax.legend(fontsize=7)
    return _save(fig, path)


def _train_key(curve: Sequence[dict]) -> str | None:
    keys = sorted({k for row in curve for k in row if k.startswith("train/")})
    return "train/total" if "train/total" in keys else (keys[0] if keys else None)


def curves(picks: Sequence[tuple[str, Trial]], path: Path) -> bool:
    """Loss curves (train and validation) and the val-window extrapolation error per epoch of the
    given trials, against the baselines on the val windows.

    Args:
        picks: (label, trial) pairs; trials without metrics.jsonl are left out.
        path: PNG file to write.
    """
    drawn = [(lab, t) for lab, t in picks if t.curve]
    if not drawn:
        return False
    plt = _pyplot()
    fig, (ax_loss, ax_err) = plt.subplots(1, 2, figsize=(11, 4))
    for k, (label, trial) in enumerate(drawn):
        color = f"C{k % 10}"
        rows = [r for r in trial.curve if "epoch" in r]
        train_key = _train_key(rows)
        for key, style in ((train_key, "--"), ("val_loss", "-")):
            pts = [(r["epoch"], r[key]) for r in rows if key and isinstance(r.get(key), int | float)]
            if pts:
                ax_loss.plot(
                    *zip(*pts, strict=True),
                    style,
                    marker="o",
                    markersize=2,
                    color=color,
                    label=f"{label} t{trial.id} {key}",
                )
        pts = [
            (r["epoch"], r[VAL + "extrapolation_error"])
            for r in rows
            if isinstance(r.get(VAL + "extrapolation_error"), int | float)
        ]
        if pts:
            ax_err.plot(
                *zip(*pts, strict=True), "o-", color=color, markersize=3, label=f"{label} t{trial.id}"
            )
    _draw_baselines(ax_err, [t for _, t in drawn], VAL)
    ax_loss.set_xlabel("epoch")
    ax_loss.set_ylabel("loss")
    ax_loss.set_yscale("symlog", linthresh=1e-3)
    ax_loss.set_title("Training (dashed) and validation (solid) loss")
    ax_loss.legend(fontsize=6)
    ax_err.set_xlabel("epoch")
    ax_err.set_ylabel("extrapolation error (val windows)")
    ax_err.set_yscale("log")
    ax_err.set_title("Val-window error during training (EMA weights)")
    ax_err.legend(fontsize=6)
    return _save(fig, path)


def arms(experiment: Experiment, path: Path) -> bool:
    """Test-window error ± stderr of every seed per arm, with the arm's mean and the baselines on
    the test windows.

    Args:
        experiment: the experiment whose arms to draw.
        path: PNG file to write.
    """

    def scored(run: Run) -> list[Trial]:
        return [t for t in run.completed if not math.isnan(t.metric(TEST + "extrapolation_error"))]

    drawn = [r for r in experiment.arms if scored(r)]
    if not drawn:
        return False
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for k, run in enumerate(drawn):
        values = [t.metric(TEST + "extrapolation_error") for t in scored(run)]
        errs = [
            0.0 if math.isnan(e) else e
            for e in (t.metric(TEST + "extrapolation_stderr") for t in scored(run))
        ]
        xs = [k + 0.08 * (i - (len(values) - 1) / 2) for i in range(len(values))]
        ax.errorbar(xs, values, yerr=errs, fmt="o", capsize=2, alpha=0.7, color=f"C{k}")
        mean = math.fsum(values) / len(values)
        ax.hlines(mean, k - 0.3, k + 0.3, color=f"C{k}", linewidth=2.5)
    _draw_baselines(ax, [t for r in drawn for t in scored(r)], TEST)
    ax.set_xticks(range(len(drawn)), [r.arm or r.label for r in drawn], fontsize=8)
    ax.set_yscale("log")
    ax.set_ylabel("test-window error per seed ± stderr (bar: mean)")
    ax.set_title("Arms of the experiment against the baselines")
    ax.legend(fontsize=7)
    return _save(fig, path)
