"""The objective: autoregressive extrapolation of H zeros from windows, beside the baselines.

For a window start M the model is fed the true zeros up to M and rolled forward: the spacing it
predicts at node M + k gives delta_hat_{M+k+1} = delta_hat_{M+k} + s_hat - 1, and node M + k + 1's
position features are rebuilt from those predicted values (its index features need no zeros).
The error of a window is mean_k (x_hat_{M+k} - x_{M+k})^2 = mean_k (delta_hat - delta)^2 over
k = 1..H (MATH.md §5); a set's error is its mean over windows, with its standard error.

Three disjoint window sets (MATH.md §5.2; TrialConfig.window_sets): val (early stopping and the
per-epoch curve), tune (the objective the tuner sees) and test (never used to select anything).
Every baseline is scored on the same windows, and kept per window and per step k, so the
verdict is paired: d_w = e_model,w - e_best,w, beats when mean(d) + 2 s.e.(d) < 0.

Each step runs one forward pass over all W windows at once. A node's prediction depends on
zeros at most depth * max(primes) back, so each window is a context of that many nodes plus
one: the prediction of its last node equals what the model gives inside the whole graph.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from trainer import graph
from trainer.baselines import predict_window, summarise
from trainer.features import Classical, index_features, position_features, read_fluctuations
from trainer.rmt import ks_wigner

SETS = ("val", "tune", "test")
PREFIX = {"val": "val_", "tune": "", "test": "test_"}  # of a set's keys in metrics and final.json


@dataclass
class Windows:
    """Everything the rollout and the scoring need about one set of W windows, read once.

    Attributes:
        name: "val", "tune" or "test".
        starts: window starts M (1-based zero indices) [W].
        horizon: zeros H predicted per window.
        reach: depth * max(primes), the zeros back a prediction depends on.
        window: past spacings per node (model.window).
        delta_true: float64 [W, reach + window + H + 1], delta_n for n = M - reach - window .. M + H.
        base_next: float64 [W, reach + H], f_{n+1} for nodes n = M - reach .. M + H - 1 (the
            residual head's starting point), or None for the spacing head.
        index_feats: float64 [W, reach + H, C], index features of those nodes.
        table: neighbour table of one context (reach + 1 consecutive nodes).
        baseline_sq: {baseline name: float64 [W, H]} squared error of each baseline at each step.
    """

    name: str
    starts: np.ndarray
    horizon: int
    reach: int
    window: int
    delta_true: np.ndarray
    base_next: np.ndarray | None
    index_feats: np.ndarray
    table: np.ndarray
    baseline_sq: dict[str, np.ndarray]

    @property
    def true_future(self) -> np.ndarray:
        """delta_{M+1} .. delta_{M+H} per window [W, H]."""
        return self.delta_true[:, -self.horizon :]

    def positions(self, delta: np.ndarray) -> np.ndarray:
        """x_{M+k} = M + k - 1/2 + delta_{M+k} for future deltas [W, H]."""
        n = self.starts[:, None] + np.arange(1, self.horizon + 1)
        return n - 0.5 + delta


def prepare_windows(
    dataset,
    name: str,
    starts,
    horizon: int,
    *,
    primes: list[int],
    window: int,
    depth: int,
    classical: Classical,
    smoothed_feature: bool,
    residual: bool,
    ar_lags: int,
    ar_fit_len: int,
    smoothed_ar_fit_len: int,
) -> Windows:
    """Read the true zeros of the windows, build their index features and score every baseline.

    (f) is evaluated once for all windows together (one NUFFT per height group), on the zeros
    each window needs: its future, the residuals its AR fits on, and the model's context.
    """
    starts = np.asarray(starts, dtype=np.int64)
    reach = depth * max(primes)
    back = max(ar_fit_len, smoothed_ar_fit_len, reach + window)
    f_back = max(smoothed_ar_fit_len, reach)  # f at M - f_back + 1 .. M + H
    f_idx = starts[:, None] + np.arange(-f_back + 1, horizon + 1)
    f_all = classical.smoothed.predict(f_idx)
    delta_true = np.empty((len(starts), reach + window + horizon + 1))
    baseline_sq: dict[str, np.ndarray] = {}
    for w, m in enumerate(int(s) for s in starts):
        lo = max(dataset.first_index, m - back + 1)
        delta = read_fluctuations(dataset, lo, m + horizon + 1)
        history, future = delta[: m + 1 - lo], delta[m + 1 - lo :]
        f_hist = np.full(history.size, np.nan)
        known = min(f_back, history.size)
        f_hist[-known:] = f_all[w, f_back - known : f_back]
        preds = predict_window(
            history,
            np.arange(m + 1, m + horizon + 1),
            explicit_a=classical.explicit_a,
            ar_m=ar_lags,
            ar_fit_len=ar_fit_len,
            smoothed_history=f_hist,
            smoothed_future=f_all[w, f_back:],
            smoothed_ar_fit_len=smoothed_ar_fit_len,
        )
        for key, pred in preds.items():
            baseline_sq.setdefault(key, np.empty((len(starts), horizon)))[w] = (future - pred) ** 2
        delta_true[w] = delta[-(reach + window + horizon + 1) :]
    f_next = f_all[:, f_back - reach :]  # f_{n+1} for n = M - reach .. M + H - 1
    nodes = starts[:, None] - reach + np.arange(reach + horizon)
    feats = index_features(nodes, f_next if smoothed_feature else None)
    table = graph.neighbour_table(np.arange(reach + 1), primes)
    return Windows(
        name,
        starts,
        horizon,
        reach,
        window,
        delta_true,
        f_next if residual else None,
        feats,
        table,
        baseline_sq,
    )


@torch.no_grad()
def rollout(
    model: torch.nn.Module, windows: Windows, device: torch.device, autocast: bool = False
) -> np.ndarray:
    """Predicted fluctuations delta_hat_{M+1} .. delta_hat_{M+H} of every window (float64 [W, H]).

    Args:
        model: a SpacingGNN (put in eval mode here).
        windows: from prepare_windows.
        device: where the model lives.
        autocast: run the forward pass under bf16 autocast (CUDA).
    """
    model.eval()
    w, r, win, h = len(windows.starts), windows.reach, windows.window, windows.horizon
    ctx = r + 1
    t = windows.table
    g = model.graph_input(np.concatenate([np.where(t >= 0, t + i * ctx, -1) for i in range(w)])).to(device)
    d = windows.delta_true.copy()
    d[:, r + win + 1 :] = np.nan  # only the zeros up to M are known
    for k in range(h):
        # nodes M+k-reach .. M+k need delta from M+k-reach-window .. M+k
        pos = position_features(d[:, k : k + r + win + 1], win)
        feats = np.concatenate([pos, windows.index_feats[:, k : k + ctx]], axis=-1)
        inp = torch.from_numpy(feats.reshape(w * ctx, -1).astype(np.float32)).to(device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
            out = model(inp, g)
        out_last = out.float().reshape(w, ctx)[:, -1].cpu().double().numpy()
        j = r + win + k  # column of delta_{M+k}
        base = 1.0 + windows.base_next[:, r + k] - d[:, j] if windows.base_next is not None else 0.0
        d[:, j + 1] = d[:, j] + (base + out_last) - 1.0
    return d[:, -h:]


GATE_SCALES = (2, 4, 8, 16, 32, 64)  # L of gates' block_variance_logratio (those < H)


def ks_two_sample(a: np.ndarray, b: np.ndarray) -> float:
    """The two-sample Kolmogorov-Smirnov statistic sup_x |F_a(x) - F_b(x)| of two 1-D samples."""
    a, b = np.sort(a), np.sort(b)
    x = np.concatenate([a, b])
    return float(
        np.max(np.abs(np.searchsorted(a, x, "right") / a.size - np.searchsorted(b, x, "right") / b.size))
    )


def _block_variance(spacings: np.ndarray, L: int) -> float:
    """Variance of the sums of L consecutive spacings, every sliding block inside each window pooled."""
    c = np.concatenate([np.zeros((spacings.shape[0], 1)), np.cumsum(spacings, axis=1)], axis=1)
    return float(np.var(c[:, L:] - c[:, :-L]))


def gates(pred_delta: np.ndarray, windows: Windows) -> dict[str, float | None]:
    """The physics checks of a set's rollouts against the true zeros of the same windows.

    Spacings are those of each window's H predicted zeros (the first one from the true x_M):
    * spacing_ks: two-sample KS statistic of the predicted against the true spacings, pooled;
    * block_variance_logratio: max over L in GATE_SCALES (L < H) of |log(var_pred(L) /
      var_true(L))|, var(L) the variance of sums of L consecutive spacings inside a window;
    * nonpositive_fraction: the fraction of predicted spacings <= 0.
    All three are 0 for a perfect prediction; None where a rollout is not finite (and the
    log ratio inf, written null, for constant predicted spacings): a None gate fails.
    """
    delta_m = windows.delta_true[:, -windows.horizon - 1 : -windows.horizon]
    pred = 1.0 + np.diff(np.concatenate([delta_m, pred_delta], axis=1), axis=1)
    true = 1.0 + np.diff(np.concatenate([delta_m, windows.true_future], axis=1), axis=1)
    if not np.all(np.isfinite(pred)):
        return {"spacing_ks": None, "block_variance_logratio": None, "nonpositive_fraction": None}
    ratios = []
    for L in (L for L in GATE_SCALES if L < windows.horizon):
        var_pred, var_true = _block_variance(pred, L), _block_variance(true, L)
        ratios.append(abs(math.log(var_pred / var_true)) if var_pred > 0 else math.inf)
    return {
        "spacing_ks": ks_two_sample(pred.ravel(), true.ravel()),
        "block_variance_logratio": max(ratios) if ratios else None,
        "nonpositive_fraction": float(np.mean(pred <= 0)),
    }


def score(
    pred_delta: np.ndarray, windows: Windows
) -> tuple[dict[str, float], dict[str, list], dict[str, list]]:
    """A set's metrics, its per-window errors and its horizon curves, model beside every baseline.

    Args:
        pred_delta: rollout output [W, H].
        windows: the windows it was rolled on.

    Returns:
        (metrics, per_window, curves), keys without the set's prefix:
        metrics: extrapolation_error, extrapolation_stderr, every baseline's mean, best_baseline
        (its name), paired_diff and paired_stderr (model - best, per window), skill
        (= 1 - error / best), nonpositive_spacings (predicted spacings <= 0), ks_wigner;
        per_window: start, model and every baseline (one MSE per window);
        curves: k = 1..H, model and every baseline (squared error at step k, mean over windows).
    """
    sq = (pred_delta - windows.true_future) ** 2
    model_w = sq.mean(axis=1)
    error, stderr = summarise(model_w)
    means = {name: float(v.mean()) for name, v in windows.baseline_sq.items()}
    best = min(means, key=means.get)
    diff, diff_se = summarise(model_w - windows.baseline_sq[best].mean(axis=1))
    delta_m = windows.delta_true[:, -windows.horizon - 1 : -windows.horizon]
    spacings = 1.0 + np.diff(np.concatenate([delta_m, pred_delta], axis=1), axis=1)
    finite = bool(np.all(np.isfinite(spacings)))
    metrics = {"extrapolation_error": error, "extrapolation_stderr": stderr} | means
    metrics |= {
        "best_baseline": best,
        "paired_diff": diff,
        "paired_stderr": diff_se,
        "skill": 1.0 - error / means[best],
        "nonpositive_spacings": int(np.sum(spacings <= 0)) if finite else None,
        "ks_wigner": ks_wigner(spacings.ravel()) if finite else float("nan"),
    }
    per_window = {"start": [int(s) for s in windows.starts], "model": model_w.tolist()}
    per_window |= {name: v.mean(axis=1).tolist() for name, v in windows.baseline_sq.items()}
    curves = {"k": list(range(1, windows.horizon + 1)), "model": sq.mean(axis=0).tolist()}
    curves |= {name: v.mean(axis=0).tolist() for name, v in windows.baseline_sq.items()}
    return metrics, per_window, curves
