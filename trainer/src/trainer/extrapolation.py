"""The objective: autoregressive extrapolation of H zeros from W windows, beside the baselines.

For a window start M the model is fed the true zeros up to M and rolled forward: the spacing it
predicts at node M + k gives x_hat_{M+k+1} = x_hat_{M+k} + s_hat, and node M + k + 1's
position features are rebuilt from those predicted values (its index features need no zeros).
The error of a window is mean_k (x_hat_{M+k} - x_{M+k})^2 over k = 1..H (MATH.md §5); the
objective is its mean over windows, reported with its standard error.

Each step runs one forward pass over all W windows at once. A node's prediction depends on
zeros at most depth * max(primes) back, so each window is a context of that many nodes plus
one: the prediction of its last node equals what the model gives inside the whole graph.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from trainer import graph
from trainer.baselines import summarise, window_baselines
from trainer.features import index_features, position_features, read_unfolded
from trainer.rmt import ks_wigner
from trainer.unfolding import fluctuations

AR_FIT_LEN = 20_000  # zeros before each window the AR baseline is fitted on


@dataclass
class Windows:
    """Everything the rollout needs about W windows, read once.

    Attributes:
        starts: window starts M (1-based zero indices) [W].
        horizon: zeros H predicted per window.
        reach: depth * max(primes), the zeros back a prediction depends on.
        window: past spacings per node (model.window).
        x_true: float64 [W, reach + window + H + 1], x_n for n = M - reach - window .. M + H.
        index_feats: float64 [W, reach + H, C], index features of nodes M - reach .. M + H - 1.
        table: neighbour table of one context (reach + 1 consecutive nodes).
    """

    starts: np.ndarray
    horizon: int
    reach: int
    window: int
    x_true: np.ndarray
    index_feats: np.ndarray
    table: np.ndarray

    @property
    def true_future(self) -> np.ndarray:
        """x_{M+1} .. x_{M+H} per window [W, H]."""
        return self.x_true[:, -self.horizon :]


def prepare_windows(
    dataset, starts, horizon: int, *, primes: list[int], window: int, depth: int, explicit_a: float | None
) -> Windows:
    """Read the true zeros and index features of the windows.

    Args:
        dataset: an opened ZerosDataset.
        starts: window starts M (1-based zero indices).
        horizon: H, zeros predicted per window (default in config: 100).
        primes: edge offsets of the graph.
        window: past spacings per node.
        depth: message-passing layers of the model.
        explicit_a: scale of the explicit-formula feature, or None.
    """
    starts = np.asarray(starts, dtype=np.int64)
    reach = depth * max(primes)
    back = reach + window
    x_true = np.stack([read_unfolded(dataset, m - back, m + horizon + 1) for m in starts])
    nodes = starts[:, None] - reach + np.arange(reach + horizon)
    feats = index_features(nodes.ravel(), explicit_a).reshape(len(starts), reach + horizon, -1)
    table = graph.neighbour_table(np.arange(reach + 1), primes)
    return Windows(starts, horizon, reach, window, x_true, feats, table)


@torch.no_grad()
def rollout(
    model: torch.nn.Module, windows: Windows, device: torch.device, autocast: bool = False
) -> np.ndarray:
    """Predicted positions x_hat_{M+1} .. x_hat_{M+H} of every window (float64 [W, H]).

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
    x = windows.x_true.copy()
    x[:, r + win + 1 :] = np.nan  # only the zeros up to M are known
    for k in range(h):
        # nodes M+k-reach .. M+k need x from M+k-reach-window .. M+k
        pos = position_features(x[:, k : k + r + win + 1], windows.starts - r + k, win)
        feats = np.concatenate([pos, windows.index_feats[:, k : k + ctx]], axis=-1)
        inp = torch.from_numpy(feats.reshape(w * ctx, -1).astype(np.float32)).to(device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
            out = model(inp, g)
        s_hat = out.float().reshape(w, ctx)[:, -1].cpu().double().numpy()
        x[:, r + win + k + 1] = x[:, r + win + k] + s_hat
    return x[:, -h:]


def baseline_errors(dataset, starts, horizon: int, explicit_a: float) -> dict[str, np.ndarray]:
    """Per-window MSE of the three baselines on the same windows (trainer.baselines.window_baselines).

    Args:
        dataset: an opened ZerosDataset.
        starts: window starts M.
        horizon: H.
        explicit_a: explicit-formula scale fitted on the training range.
    """
    starts = np.asarray(starts, dtype=np.int64)
    lo = max(dataset.first_index, int(starts.min()) - AR_FIT_LEN)
    hi = int(starts.max()) + horizon + 1
    delta = fluctuations(read_unfolded(dataset, lo, hi), lo)
    return window_baselines(
        delta, np.arange(lo, hi), starts, horizon, explicit_a=explicit_a, ar_fit_len=AR_FIT_LEN
    )


def extrapolation_metrics(
    pred_x: np.ndarray, windows: Windows, baselines: dict[str, np.ndarray]
) -> dict[str, float]:
    """extrapolation_error (+ stderr), the baselines' means, skill and ks_wigner of the rollout.

    Args:
        pred_x: rollout output [W, H].
        windows: the windows it was rolled on.
        baselines: per-window baseline MSEs (baseline_errors) on the same windows.

    Returns:
        Keys extrapolation_error, extrapolation_stderr, baseline_index, baseline_ar,
        baseline_explicit, skill (= 1 - error / min baseline), ks_wigner.
    """
    per_window = np.mean((pred_x - windows.true_future) ** 2, axis=1)
    error, stderr = summarise(per_window)
    out = {"extrapolation_error": error, "extrapolation_stderr": stderr}
    for name, values in baselines.items():
        out[name] = summarise(values)[0]
    out["skill"] = 1.0 - error / min(out[name] for name in baselines)
    x_m = windows.x_true[:, -windows.horizon - 1 : -windows.horizon]
    spacings = np.diff(np.concatenate([x_m, pred_x], axis=1), axis=1)
    out["ks_wigner"] = ks_wigner(spacings.ravel()) if np.all(np.isfinite(spacings)) else float("nan")
    return out
