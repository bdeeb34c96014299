"""One trial end to end: data, model, the step function, evaluation, checkpoints and resume.

Full-batch (Team 1) is mini-batch (Team 2) with one cluster: the training range is cut into k
clusters, an epoch visits them in a random order q at a time, and each step's nodes, features
and edges are built from the memory-mapped zeros. With k = q = 1 that is one step per epoch
over the whole range, built once and kept. The loop never branches on the team.

Reading order: Trial (everything built from config + data), then run_trial (the loop).
"""

from __future__ import annotations

import itertools
import json
import math
import signal
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch.optim.lr_scheduler import CosineAnnealingLR, LinearLR, ReduceLROnPlateau, SequentialLR
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from trainer import storage
from trainer.config import TrialConfig, dump_config
from trainer.errors import ConfigError, DataError
from trainer.extrapolation import PREFIX, SETS, gates, prepare_windows, rollout, score
from trainer.features import NodeSet, build_nodes, feature_names, fit_classical, join_nodes, read_unfolded
from trainer.losses import LOSS_NAMES, LossWeights, compute_losses, rg_target
from trainer.model import SpacingGNN
from trainer.outputs import (
    CHECKPOINT_FILE,
    CONFIG_FILE,
    FINAL_FILE,
    OBJECTIVE,
    PREDICTIONS_FILE,
    VAL_OBJECTIVE,
    MetricSinks,
    TrialOutputs,
    peak_mem_bytes,
    progress_line,
)
from trainer.partition import make_partition
from trainer.rmt import block_sum_variance, default_scales, sample_wigner

EXIT_SIGTERM = 143
# Each random stream of a trial is seeded by `seed` plus its own offset, so the streams differ
# from each other and from torch.manual_seed(seed) (the model's initial weights).
LOSS_SEED_OFFSET = 1  # the training losses' draws (gue_mmd subsampling), carried in checkpoints
REFERENCE_SEED_OFFSET = 7  # the Wigner sample gue_mmd compares against
EVAL_SEED_OFFSET = 11  # the validation losses' draws, the same at every evaluation


def select_device(name: str) -> torch.device:
    """`train.device`: auto picks CUDA when available, else the CPU."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("train.device: cuda was asked for but torch sees no CUDA device")
    return torch.device(name)


def horizon_stages(max_horizon: int) -> list[int]:
    """The rollout lengths of the curriculum: 1, 2, 4, ... doubling, the last one max_horizon."""
    stages = [1]
    while stages[-1] < max_horizon:
        stages.append(min(2 * stages[-1], max_horizon))
    return stages


def horizon_at(epoch: int, epochs: int, max_horizon: int) -> int:
    """The rollout length trained on in epoch `epoch` (0-based) of `epochs`.

    The S stages of horizon_stages split the epochs into S equal parts: epoch e trains at stage
    ceil((e + 1) S / E) - 1, so the first epoch trains one step ahead and the last max_horizon.
    A function of the epoch alone, so a resumed run trains at the same length.
    """
    stages = horizon_stages(max_horizon)
    if epochs <= 0:
        return stages[-1]
    return stages[min(len(stages) - 1, ((epoch + 1) * len(stages) - 1) // epochs)]


@dataclass
class Batch:
    """One step's nodes as tensors on the device."""

    x: torch.Tensor  # float32 [m, F]
    y: torch.Tensor  # float32 [m], true next spacings
    base: torch.Tensor  # float32 [m], added to the model's output (trainer.features.NodeSet.base)
    graph: object  # trainer.model.Neighbours, or edge_index for GATv2 (SpacingGNN.graph_input)
    segments: list[tuple[int, int]]
    nodes: NodeSet


def to_batch(nodes: NodeSet, model: SpacingGNN, device: torch.device) -> Batch:
    """nodes as tensors on device, with the graph in the form model takes."""
    return Batch(
        x=torch.from_numpy(nodes.features).to(device),
        y=torch.from_numpy(nodes.target.astype(np.float32)).to(device),
        base=torch.from_numpy(nodes.base.astype(np.float32)).to(device),
        graph=model.graph_input(nodes.table).to(device),
        segments=nodes.segments,
        nodes=nodes,
    )


@dataclass
class LossSetup:
    """The fixed inputs of compute_losses for one node range."""

    weights: LossWeights
    mmd_reference: torch.Tensor | None
    rg_target: torch.Tensor | None
    scales: list[int] | None
    bandwidths: tuple[float, ...]
    mmd_max_samples: int

    def __call__(self, pred: torch.Tensor, batch: Batch, generator: torch.Generator):
        return compute_losses(
            pred.float(),
            batch.y,
            self.weights,
            segments=batch.segments,
            mmd_reference=self.mmd_reference,
            rg_target=self.rg_target,
            scales=self.scales,
            generator=generator,
            mmd_bandwidths=self.bandwidths,
            mmd_max_samples=self.mmd_max_samples,
        )


def _check_ranges(cfg: TrialConfig, dataset) -> dict[str, list[int]]:
    """The window sets, after checking that training, validation and every window fit the dataset.

    Raises:
        ConfigError: one line naming the key to change.
    """
    d = cfg.data
    history = cfg.model.depth * max(cfg.model.primes) + cfg.model.window
    if d.train_start - cfg.model.window < dataset.first_index:
        raise ConfigError(
            f"data.train_start: {d.train_start} leaves no room for {cfg.model.window} zeros of history "
            f"(the dataset starts at zero {dataset.first_index})"
        )
    if cfg.first_window() - history < dataset.first_index:
        raise ConfigError(f"data.window_start: the first window needs {history} zeros of history")
    last = cfg.last_tune_index()
    if last > dataset.last_index:
        raise ConfigError(
            f"data.windows: the last tune window ends at zero {last}, beyond the dataset's last zero "
            f"{dataset.last_index} ({dataset.path}); use fewer windows, a smaller stride or an earlier range"
        )
    return cfg.window_sets(dataset.last_index)


class Trial:
    """Everything one trial builds from its config and dataset: clusters, model, losses, windows.

    Args:
        cfg: the validated config.
        dataset: the opened ZerosDataset.
        device: where the model runs.
    """

    def __init__(self, cfg: TrialConfig, dataset, device: torch.device):
        window_starts = _check_ranges(cfg, dataset)
        self.cfg, self.dataset, self.device = cfg, dataset, device
        self.autocast = device.type == "cuda" and torch.cuda.is_bf16_supported()
        d, m, loss, b = cfg.data, cfg.model, cfg.loss, cfg.baselines
        start, stop = d.train_start, d.train_start + d.train_count
        # Fitted once on the training range only: the baselines, the feature and the residual
        # head's starting point all use these scales.
        self.classical = fit_classical(
            dataset, start, stop, X=b.prime_cutoff, beta=b.beta, max_samples=b.fit_samples
        )
        self.residual = m.head == "residual"
        self.feature = self.classical.smoothed if m.explicit_feature else None
        self.clusters = make_partition(
            cfg.train.partitioner, start, stop, cfg.train.num_clusters, m.primes, cfg.seed
        )

        torch.manual_seed(cfg.seed)
        self.model = SpacingGNN(
            len(feature_names(m.window, m.explicit_feature)),
            head=m.head,
            layer=m.layer,
            hidden=m.hidden,
            depth=m.depth,
            dropout=m.dropout,
            residual=m.residual,
            norm=m.norm,
            recompute_activations=cfg.train.recompute_activations,
        ).to(device)

        weights = LossWeights(
            mse=loss.mse_weight,
            gue_nll=loss.gue_nll_weight,
            gue_mmd=loss.gue_mmd_weight,
            rg_penalty=loss.rg_penalty_weight,
        )
        reference = self._mmd_reference() if weights.gue_mmd > 0 else None
        smallest = min(sum(b - a for a, b in c) for c in self.clusters)
        k_max = loss.rg_max_log2
        self.train_losses = self._loss_setup(weights, reference, start, stop, default_scales(smallest, k_max))
        self._val_range = (stop, stop + d.val_count)
        self.val_losses = self._loss_setup(
            weights, reference, *self._val_range, default_scales(d.val_count, k_max)
        )
        self._cached: tuple[tuple[int, ...], Batch] | None = None
        self._val_batch: Batch | None = None
        self._cluster_nodes: OrderedDict[int, NodeSet] = OrderedDict()  # least recently used first
        self._cluster_bytes = 0  # their nbytes, kept as they come and go
        self._built_bytes: dict[int, int] = {}  # every cluster built so far: its nodes' nbytes

        self.windows = {
            name: prepare_windows(
                dataset,
                name,
                window_starts[name],
                d.horizon,
                primes=m.primes,
                window=m.window,
                depth=m.depth,
                classical=self.classical,
                smoothed_feature=m.explicit_feature,
                residual=self.residual,
                ar_lags=b.ar_lags,
                ar_fit_len=b.ar_fit_len,
                smoothed_ar_fit_len=b.smoothed_ar_fit_len,
            )
            for name in SETS
        }

    def _mmd_reference(self) -> torch.Tensor:
        cfg = self.cfg
        if cfg.loss.mmd_reference == "gue":
            gen = torch.Generator().manual_seed(cfg.seed + REFERENCE_SEED_OFFSET)
            return sample_wigner(cfg.loss.mmd_reference_size, gen).to(self.device)
        # Held-out real spacings at (almost) the same height: the zeros just before the training range.
        stop = cfg.data.train_start
        start = max(self.dataset.first_index, stop - cfg.loss.mmd_reference_size - 1)
        if stop - start < 3:
            raise ConfigError("loss.mmd_reference: data needs zeros before data.train_start to compare with")
        x = read_unfolded(self.dataset, start, stop)
        return torch.from_numpy(np.diff(x)).float().to(self.device)

    def _loss_setup(self, weights, reference, start: int, stop: int, scales: list[int]) -> LossSetup:
        target = None
        if weights.rg_penalty > 0:
            if not scales:
                raise ConfigError(
                    "loss.rg_penalty_weight: clusters or the validation range are too short for block scales"
                )
            true = np.diff(read_unfolded(self.dataset, start, stop + 1))
            target = rg_target(torch.from_numpy(true), scales).float().to(self.device)
        bandwidths = tuple(self.cfg.loss.mmd_bandwidths)
        scales = scales if target is not None else None
        return LossSetup(weights, reference, target, scales, bandwidths, self.cfg.loss.mmd_max_samples)

    def batch(self, cluster_ids) -> Batch:
        """The nodes of the given clusters with their internal edges (the last one is kept:
        with k = q it is the same every step and built once).

        Each cluster's nodes are built once and kept (train.node_cache_mb, least recently used
        out), so later epochs only join them and find the edges of the union.
        """
        key = tuple(sorted(cluster_ids))
        if self._cached is None or self._cached[0] != key:
            self._cached = None  # free the previous batch before building the next
            if len(key) == len(self.clusters):  # every cluster: one build, kept above
                nodes = self._nodes_of([run for c in key for run in self.clusters[c]])
            else:
                nodes = join_nodes([self._cluster(c) for c in key], self.cfg.model.primes)
            self._cached = (key, to_batch(nodes, self.model, self.device))
        return self._cached[1]

    def _cluster(self, c: int) -> NodeSet:
        nodes = self._cluster_nodes.pop(c, None)
        if nodes is None:
            nodes = self._nodes_of(self.clusters[c])
            self._cluster_bytes += nodes.nbytes
            self._built_bytes[c] = nodes.nbytes
        self._cluster_nodes[c] = nodes
        budget = self.cfg.train.node_cache_mb * 2**20
        while self._cluster_nodes and self._cluster_bytes > budget:
            self._cluster_bytes -= self._cluster_nodes.popitem(last=False)[1].nbytes
        return nodes

    def node_cache_shortfall(self) -> str | None:
        """None while the node cache keeps every cluster built so far; else a line saying how
        many it keeps and the train.node_cache_mb that would keep them all: each cluster it
        dropped is built again (on the host) whenever a later step draws it, which can cost a GPU
        step several times over (docs/speed.md, the cloud profile's Team 2)."""
        if len(self._cluster_nodes) == len(self._built_bytes):
            return None
        need = math.ceil(sum(self._built_bytes.values()) / 2**20)
        return (
            f"node cache: train.node_cache_mb={self.cfg.train.node_cache_mb} keeps {len(self._cluster_nodes):,}"
            f" of {len(self._built_bytes):,} clusters' nodes, the rest are built again when drawn;"
            f" train.node_cache_mb={need} would keep them all"
        )

    def val_batch(self) -> Batch:
        """The validation range (right after training) as one graph."""
        if self._val_batch is None:
            self._val_batch = self._batch_of([self._val_range])
        return self._val_batch

    def _batch_of(self, runs: list[tuple[int, int]]) -> Batch:
        return to_batch(self._nodes_of(runs), self.model, self.device)

    def _nodes_of(self, runs: list[tuple[int, int]]) -> NodeSet:
        m = self.cfg.model
        return build_nodes(
            self.dataset,
            runs,
            primes=m.primes,
            window=m.window,
            smoothed=self.feature if m.explicit_feature else None,
            residual=self.residual,
        )

    def epoch_plan(self, rng: np.random.Generator) -> list[tuple[int, ...]]:
        """The steps of one epoch, q clusters each: a random order of the k clusters, or, with
        train.height_temperature, ceil(k / q) steps of q clusters drawn by cluster_weights."""
        q = self.cfg.train.clusters_per_step
        if self.cfg.train.height_temperature is None:
            order = rng.permutation(len(self.clusters))
            return [tuple(sorted(int(c) for c in order[i : i + q])) for i in range(0, len(order), q)]
        p = self.cluster_weights()
        steps = math.ceil(len(self.clusters) / q)
        return [
            tuple(sorted(int(c) for c in rng.choice(len(p), q, replace=False, p=p))) for _ in range(steps)
        ]

    def cluster_weights(self) -> np.ndarray:
        """Each cluster's probability of being drawn into a step (train.height_temperature T):
        proportional to w^(1/T), w = (rank of the cluster's mean zero index) / k in (0, 1], so
        the cluster nearest the windows has w = 1 and T < 1 favours the top of the range."""
        centre = [sum((a + b) * (b - a) for a, b in c) / sum(b - a for a, b in c) for c in self.clusters]
        rank = np.empty(len(centre))
        rank[np.argsort(centre, kind="stable")] = np.arange(1, len(centre) + 1)
        w = (rank / len(centre)) ** (1.0 / self.cfg.train.height_temperature)
        return w / w.sum()

    def forward(self, model: torch.nn.Module, batch: Batch) -> torch.Tensor:
        """Predicted next spacings of the batch's nodes: base + the model's output (float32)."""
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.autocast):
            out = model(batch.x, batch.graph)
        return batch.base + out.float()

    def loss(self, model: torch.nn.Module, batch: Batch, generator: torch.Generator, horizon: int = 1):
        """(total, parts) of one training step on batch: the one step function of both teams.

        With horizon k > 1 the `mse` part is rollout_mse over k steps; the other losses stay on
        the one-step spacings (the first of the k model calls).
        """
        pred = self.forward(model, batch)
        total, parts = self.train_losses(pred, batch, generator)
        if horizon == 1:
            return total, parts
        parts["mse"] = self.rollout_mse(model, batch, pred, horizon)
        weights = self.train_losses.weights
        total = pred.new_zeros(())
        for name in LOSS_NAMES:
            if getattr(weights, name) > 0:
                total = total + getattr(weights, name) * parts[name]
        parts["total"] = total
        return total, parts

    def rollout_mse(self, model: torch.nn.Module, batch: Batch, first: torch.Tensor, horizon: int):
        """Mean over j = 1..horizon of the mean squared error of every node's j-step rollout.

        Node n's rollout of length j starts from the true zeros up to n + 1 - j and predicts
        delta_{n+1} by rolling forward like the evaluation (trainer.extrapolation.rollout): each
        predicted fluctuation replaces the true one in the position features of the next node
        of its trajectory. All nodes roll together, one model call per step over the whole
        batch, by carrying errors e = delta_hat - delta rather than positions: node n's features
        at step j are its true ones plus position_features of its trajectory's errors at
        n - window .. n, which are those of node n - 1 at step j - 1 shifted by one.

        Approximations, both documented in docs/contracts.md: a node's graph neighbours carry
        their own trajectories' features at the same step (in the evaluation they would carry
        the same trajectory's), and zeros before a segment of the batch stay true (a node
        within j - 1 zeros of its segment's start rolls only from that start).

        Args:
            model: the model being trained (train mode).
            batch: the step's nodes.
            first: the one-step predicted spacings of the batch (self.forward), reused as step 1.
            horizon: k >= 1.

        Returns:
            0-d tensor, differentiable through every step of the rollout.
        """
        win = self.cfg.model.window
        m = len(batch.y)
        continues = torch.ones(m, 1, device=first.device)  # node n - 1 is in n's segment
        continues[[start for start, _ in batch.segments]] = 0.0
        err = first - batch.y  # e_{n+1} of the one-step prediction
        sq = [err.square().mean()]
        errors = first.new_zeros(m, win + 1)  # trajectory errors at n - window .. n
        for _ in range(1, horizon):
            errors = torch.cat([errors[:, 1:], err[:, None]], dim=1)
            errors = torch.cat([errors.new_zeros(1, win + 1), errors[:-1]]) * continues
            shift = torch.cat([errors[:, 1:] - errors[:, :-1], errors[:, -1:]], dim=1)
            x = torch.cat([batch.x[:, : win + 1] + shift, batch.x[:, win + 1 :]], dim=1)
            e_n = errors[:, -1]
            base = batch.base - e_n if self.residual else batch.base  # 1 + f_{n+1} - delta_hat_n
            with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.autocast):
                out = model(x, batch.graph)
            err = e_n + (base + out.float()) - batch.y  # e_{n+1} = e_n + s_hat_n - s_n
            sq.append(err.square().mean())
        return torch.stack(sq).mean()

    @torch.no_grad()
    def evaluate(self, model: torch.nn.Module, sets: tuple[str, ...] = SETS) -> tuple[dict, dict, dict]:
        """Validation loss and the extrapolation metrics of model on the given window sets.

        Args:
            model: the model to evaluate (the EMA weights in the loop).
            sets: window sets to roll out: ("val",) after an epoch, all three at the end.

        Returns:
            (metrics, windows, predictions): metrics holds val_loss, val/<loss> and each set's
            keys of extrapolation.score with the set's prefix (PREFIX); windows its per-window
            errors (final.json's `windows`); predictions the content of predictions.json.
        """
        model.eval()
        vb = self.val_batch()
        pred = self.forward(model, vb)
        generator = torch.Generator(self.device).manual_seed(self.cfg.seed + EVAL_SEED_OFFSET)
        total, parts = self.val_losses(pred, vb, generator)
        metrics = {"val_loss": float(total)} | {f"val/{k}": float(parts[k]) for k in LOSS_NAMES}
        per_window, curves, rolled = {}, {}, {}
        for name in sets:
            windows = self.windows[name]
            rolled[name] = rollout(model, windows, self.device, self.autocast)
            set_metrics, per_window[name], curves[name] = score(rolled[name], windows)
            metrics |= {PREFIX[name] + k: v for k, v in set_metrics.items()}
        if "test" in sets:
            metrics["gates"] = gates(rolled["test"], self.windows["test"])
        pred_np = pred.cpu().double().numpy()
        true_np = vb.nodes.target
        scales = default_scales(len(true_np))
        finite = np.all(np.isfinite(pred_np))
        predictions = {
            f"{PREFIX[name]}windows": [
                {"start": int(s), "true_x": t.tolist(), "pred_x": p.tolist()}
                for s, t, p in zip(
                    self.windows[name].starts,
                    self.windows[name].positions(self.windows[name].true_future),
                    self.windows[name].positions(rolled[name]),
                    strict=True,
                )
            ]
            for name in sets
            if name != "val"
        }
        predictions |= {
            "horizon_curves": {name: curves[name] for name in sets if name != "val"},
            "spacings_pred": pred_np.tolist(),
            "spacings_true": true_np.tolist(),
            "block_variance": {
                "L": scales,
                "pred": block_sum_variance(torch.from_numpy(pred_np), scales).tolist() if finite else None,
                "data": block_sum_variance(torch.from_numpy(true_np), scales).tolist(),
            },
        }
        return metrics, per_window, predictions


def make_optimizer(params, cfg: TrialConfig) -> torch.optim.AdamW:
    """The trial's AdamW over params (a model's parameters, or StepEnd's flat one), as torch's
    fused kernel: one pass over all parameters instead of a dozen ops per parameter (0.71 -> 0.14
    ms a step for the default model on one CPU thread); the same update up to float rounding,
    deterministic on the CPU."""
    return torch.optim.AdamW(params, lr=cfg.optim.lr, weight_decay=cfg.optim.weight_decay, fused=True)


class StepEnd:
    """The optimizer's side of a training step: zero_grad() before the backward; after it,
    calling the object clips the gradients to a global norm of optim.grad_clip (0: not clipped),
    takes AdamW's step and updates the EMA of the weights. It holds the trial's optimizer and
    its AveragedModel (ema).

    flat=True (a run in which every parameter trains at every step: no layer is ever frozen),
    with every parameter and buffer float32 on one device (not BatchNorm's, whose step count is
    an integer): the model's parameters, their gradients and the EMA's copies are views into
    three flat buffers, made once here (_flatten). zero_grad is then one fill,
    and the clip, AdamW and the EMA each run over one tensor: this end of a step of the default
    model on one CPU thread takes 0.45 -> 0.20 ms alone, a mini-batch step ~0.3 ms less in pairs
    (docs/speed.md item 38). The same update as the per-parameter calls up to float rounding:
    the global norm is taken over all gradients at once, not as the norm of each tensor's norm,
    and torch's fused AdamW takes a tensor's last elements (fewer than a vector) on a scalar path
    that rounds differently from its vector path (tests/trainer/test_training.py). Checkpoints
    hold the optimizer's state per parameter either way (optimizer_state_dict), so a run resumes
    across the two.

    Otherwise (flat=False, or parameters of several dtypes) the same calls as
    ``clip_grad_norm_(model.parameters(), grad_clip)``, ``optimizer.step()`` and
    ``ema.update_parameters(model)``, bit for bit, over lists of the model's and the EMA's tensors
    made once: those two walk both models' modules at every call (docs/speed.md item 31).
    AveragedModel's own update where the tensors are not one float dtype on one device.
    """

    def __init__(self, model: torch.nn.Module, cfg: TrialConfig, *, flat: bool):
        self.model, self.grad_clip = model, cfg.optim.grad_clip
        self.ema = AveragedModel(
            model, multi_avg_fn=get_ema_multi_avg_fn(cfg.optim.ema_decay), use_buffers=True
        )
        self.params = list(model.parameters())
        averaged = [
            t.detach() for t in itertools.chain(self.ema.module.parameters(), self.ema.module.buffers())
        ]
        current = [t.detach() for t in itertools.chain(model.parameters(), model.buffers())]
        kinds = {(t.device, t.dtype) for t in averaged + current}
        self.flat = (
            flat
            and bool(self.params)
            and all(p.requires_grad for p in self.params)
            and kinds == {(current[0].device, torch.float32)}
        )
        if self.flat:
            flat_ema = self._flatten(current[0].device)
            buffers = lambda m: [b.detach() for b in m.buffers()]  # noqa: E731
            averaged = [flat_ema, *buffers(self.ema.module)]
            current = [self._flat_param.detach(), *buffers(model)]
        self.optimizer = make_optimizer([self._flat_param] if self.flat else self.params, cfg)
        one_group = (
            self.ema.multi_avg_fn is not None
            and len(averaged) == len(current) > 0
            and len(kinds) == 1
            and averaged[0].is_floating_point()
        )
        self._lists = (averaged, current) if one_group else None

    def _flatten(self, device: torch.device) -> torch.Tensor:
        """The model's parameters and gradients made views of self._flat_param and its .grad (the
        views of the gradient kept in self._grads), the EMA's parameters views of the returned
        buffer. Each parameter starts at a multiple of 16 elements (64 bytes), so the kernels'
        rows of weights stay aligned; the gaps are zeros with zero gradients and stay zero."""
        self._offsets = [0]
        for p in self.params:
            self._offsets.append(self._offsets[-1] + (p.numel() + 15) // 16 * 16)
        self._flat_param = torch.nn.Parameter(torch.zeros(self._offsets[-1], device=device))
        self._flat_param.grad = torch.zeros_like(self._flat_param)
        flat_ema = torch.zeros_like(self._flat_param.detach())
        self._grads = []
        for p, a, off in zip(self.params, self.ema.module.parameters(), self._offsets, strict=False):
            k = p.numel()
            with torch.no_grad():
                self._flat_param[off : off + k].copy_(p.reshape(-1))
                flat_ema[off : off + k].copy_(a.reshape(-1))
            p.data = self._flat_param.detach()[off : off + k].view_as(p)
            a.data = flat_ema[off : off + k].view_as(a)
            p.grad = self._flat_param.grad[off : off + k].view_as(p)
            self._grads.append(p.grad)
        return flat_ema

    def zero_grad(self) -> None:
        """Before the backward: gradients set to None, or (flat) the flat one zeroed, with each
        parameter's .grad its view again where something else had set it."""
        if not self.flat:
            self.optimizer.zero_grad(set_to_none=True)
            return
        self._flat_param.grad.zero_()
        for p, g in zip(self.params, self._grads, strict=True):
            if p.grad is not g:
                p.grad = g

    def __call__(self) -> None:
        if self.grad_clip > 0:
            if self.flat:
                self.clip_flat(self.grad_clip)
            else:
                torch.nn.utils.clip_grad_norm_(self.params, self.grad_clip)
        self.optimizer.step()
        if self._lists is None:
            self.ema.update_parameters(self.model)
            return
        ema = self.ema
        averaged, current = self._lists
        with torch.no_grad():  # AveragedModel.update_parameters' steps, on the lists
            if ema.n_averaged == 0:
                for a, c in zip(averaged, current, strict=True):
                    a.copy_(c)
            else:
                ema.multi_avg_fn(averaged, current, ema.n_averaged)
            ema.n_averaged += 1

    def clip_flat(self, max_norm: float) -> torch.Tensor:
        """clip_grad_norm_([flat parameter], max_norm): its arithmetic on the one tensor, without
        its grouping of tensors by device and dtype (92 -> 32 us a step); returns the norm."""
        g = self._flat_param.grad
        norm = torch.linalg.vector_norm(g, 2.0)
        g.mul_(torch.clamp(max_norm / (norm + 1e-6), max=1.0))
        return norm

    def optimizer_state_dict(self) -> dict:
        """The optimizer's state_dict, per parameter of the model (flat or not)."""
        sd = self.optimizer.state_dict()
        if not self.flat:
            return sd
        state = {}
        if 0 in sd["state"]:
            for i, (p, off) in enumerate(zip(self.params, self._offsets, strict=False)):
                state[i] = {
                    key: v[off : off + p.numel()].view_as(p).clone() if v.dim() else v.clone()
                    for key, v in sd["state"][0].items()
                }
        groups = [{**sd["param_groups"][0], "params": list(range(len(self.params)))}]
        return {"state": state, "param_groups": groups}

    def load_optimizer_state_dict(self, sd: dict) -> None:
        """optimizer_state_dict's (or a per-parameter optimizer's) state back into the optimizer.

        Raises:
            ValueError: if the state is not one of this model's parameters.
        """
        if not self.flat:
            self.optimizer.load_state_dict(sd)
            return
        (group,) = sd["param_groups"]
        if len(group["params"]) != len(self.params):
            raise ValueError(
                f"optimizer state of {len(group['params'])} parameters, the model has {len(self.params)}"
            )
        states = [sd["state"].get(i) for i in group["params"]]
        flat_state = {}
        if any(s is not None for s in states):
            if any(s is None or s.keys() != states[0].keys() for s in states):
                raise ValueError(
                    "optimizer state: some parameters have none (a frozen layer), the flat update needs all"
                )
            for key, v in states[0].items():
                if not v.dim():  # the step count, one for all
                    flat_state[key] = v.clone()
                    continue
                flat = self._flat_param.new_zeros(self._offsets[-1])
                for s, p, off in zip(states, self.params, self._offsets, strict=False):
                    flat[off : off + p.numel()] = s[key].reshape(-1)
                flat_state[key] = flat
        self.optimizer.load_state_dict(
            {"state": {0: flat_state} if flat_state else {}, "param_groups": [{**group, "params": [0]}]}
        )


def _schedulers(optimizer, cfg: TrialConfig, total_steps: int):
    """Per-step scheduler (linear warmup, then cosine or constant) and the optional plateau one."""
    o = cfg.optim
    warm = min(o.warmup_steps, max(total_steps - 1, 0))
    warmup = LinearLR(optimizer, start_factor=1.0 / (warm + 1), total_iters=warm)
    per_step = warmup
    if o.scheduler == "cosine":
        cosine = CosineAnnealingLR(
            optimizer, T_max=max(1, total_steps - warm), eta_min=o.eta_min_fraction * o.lr
        )
        per_step = SequentialLR(optimizer, [warmup, cosine], milestones=[warm]) if warm else cosine
    plateau = (
        ReduceLROnPlateau(optimizer, factor=o.plateau_factor, patience=o.plateau_patience)
        if o.scheduler == "plateau"
        else None
    )
    return per_step, plateau


class _StopFlag:
    """Set by SIGTERM: the loop finishes its step, writes a checkpoint and exits 143."""

    def __init__(self):
        self.requested = False
        self._previous = None

    def __enter__(self):
        try:
            self._previous = signal.signal(signal.SIGTERM, self._handle)
        except ValueError:  # not the main thread: no signal handling
            self._previous = None
        return self

    def _handle(self, signum, frame):
        self.requested = True

    def __exit__(self, *exc):
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)


def _open_dataset(cfg: TrialConfig):
    from trainer.data.dataset import open_dataset

    path = cfg.data.path
    if not storage.is_remote(path) and not storage.exists(storage.join(path, "manifest.json")):
        raise DataError(
            f"data.path: no zeros dataset at {path} (run `make data`, or set data.path or $ZETA_SWARM_DATA)"
        )
    return open_dataset(path)


def _final(
    status: str,
    metrics: dict | None,
    epochs_done: int,
    seconds: float,
    reason: str | None,
    windows: dict | None = None,
) -> dict:
    """final.json (docs/contracts.md): the last evaluation's metrics and every window's errors."""
    out = {"status": status} | {k: v for k, v in (metrics or {}).items() if not k.startswith("val/")}
    out |= {"epochs_done": epochs_done, "seconds": round(seconds, 3)}
    if reason is not None:
        out["reason"] = reason
    if windows is not None:
        out["windows"] = windows
    return out


def _cost(cost: dict, steps: int, device: torch.device) -> dict:
    """final.json's `cost`: time in the training steps (evaluation excluded), summed over resumes."""
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else None
    return {
        "seconds_per_step": round(cost["train_seconds"] / steps, 6) if steps else None,
        "steps": steps,
        "train_seconds": round(cost["train_seconds"], 3),
        "cpu_seconds": round(cost["cpu_seconds"], 3),
        "device": device.type,
        "device_name": name,
    }


def run_trial(
    cfg: TrialConfig,
    output_dir: str,
    *,
    tensorboard_dir: str | None = None,
    echo: Callable[[str], None] = print,
) -> int:
    """Train one model and write its outputs; resume from output_dir/checkpoint.pt if present.

    Args:
        cfg: validated config (trainer.config.load_config).
        output_dir: local directory or gs:// prefix for config.yaml, metrics.jsonl, final.json,
            predictions.json and checkpoint.pt.
        tensorboard_dir: TensorBoard log directory (default $AIP_TENSORBOARD_LOG_DIR, else none).
        echo: where progress lines go (default print).

    Returns:
        Exit code: 0 completed or diverged (see final.json), 143 stopped by SIGTERM after a checkpoint.

    Raises:
        ConfigError, DataError: bad input (exit 2), before anything is written where possible.
        Exception: anything else, after final.json says failed.
    """
    started = time.monotonic()
    echo(dump_config(cfg).rstrip())
    device = select_device(cfg.train.device)
    dataset = _open_dataset(cfg)
    _check_ranges(cfg, dataset)  # bad input stops here, before anything is written
    outputs = TrialOutputs(output_dir)
    try:
        status = _final_status(outputs, echo)
        if status in ("completed", "diverged"):
            echo(f"{outputs.where(FINAL_FILE)} already says {status}: nothing to do")
            return 0
        state = outputs.load_checkpoint()
        resolved = cfg.model_dump(mode="json")
        if state is not None and state["config"] != resolved:
            changed = sorted(k for k in resolved if resolved[k] != state["config"].get(k))
            raise ConfigError(
                f"{outputs.where(CHECKPOINT_FILE)}: written by a different config (differs in {', '.join(changed)}); "
                "use another --output-dir to start afresh"
            )
        return _guarded(cfg, dataset, device, outputs, state, tensorboard_dir, echo, started)
    finally:
        outputs.close()


def _final_status(outputs: TrialOutputs, echo) -> str | None:
    """final.json's status, or None when there is none yet or it is damaged (then the run goes on
    from checkpoint.pt and writes it again: it is derived from the training, never trusted blindly)."""
    text = outputs.read_text(FINAL_FILE)
    if text is None:
        return None
    try:
        final = json.loads(text)
    except json.JSONDecodeError:
        final = None
    if not isinstance(final, dict):
        echo(f"{outputs.where(FINAL_FILE)} is damaged (not a JSON object): deriving it again")
        return None
    return final.get("status")


def apply_process_settings(device: torch.device, cpu_threads: int) -> Callable[[], None]:
    """Set the process-wide torch settings a trial runs under; returns what restores them
    (bench/ applies them too).

    On the CPU: deterministic algorithms (bit-for-bit resume), but without the NaN fill of every
    new tensor that deterministic mode adds by default: it is a guard against ops that read
    memory they never wrote, costs a pass over each new tensor (~8% of a mini-batch step,
    bench/profile_step.py), and no op of a trial reads memory it did not write (the resume and
    repeat tests compare every output bit for bit). cpu_threads > 0 sets torch's intra-op threads.
    """
    deterministic = torch.are_deterministic_algorithms_enabled()
    fill = torch.utils.deterministic.fill_uninitialized_memory
    threads = torch.get_num_threads()

    def restore() -> None:
        torch.use_deterministic_algorithms(deterministic)
        torch.utils.deterministic.fill_uninitialized_memory = fill
        torch.set_num_threads(threads)

    if device.type == "cpu":
        torch.use_deterministic_algorithms(True)
        torch.utils.deterministic.fill_uninitialized_memory = False
    if cpu_threads:
        torch.set_num_threads(cpu_threads)
    return restore


def _guarded(cfg, dataset, device, outputs: TrialOutputs, state, tensorboard_dir, echo, started) -> int:
    """The loop with the process-wide settings it needs, and final.json saying failed if it raises."""
    restore = apply_process_settings(device, cfg.train.cpu_threads)
    try:
        outputs.write_text(CONFIG_FILE, dump_config(cfg))
        with _StopFlag() as stop:
            return _loop(cfg, dataset, device, outputs, state, stop, tensorboard_dir, echo, started)
    except Exception as e:
        reason = f"{type(e).__name__}: {e}"
        outputs.write_json(FINAL_FILE, _final("failed", None, 0, time.monotonic() - started, reason))
        raise
    finally:
        restore()


def _loop(
    cfg, dataset, device, outputs: TrialOutputs, state, stop: _StopFlag, tensorboard_dir, echo, started
) -> int:
    t0 = time.monotonic()
    echo(f"preparing the trial on {device} (data {cfg.data.path})")
    trial = Trial(cfg, dataset, device)
    tune = trial.windows["tune"]
    baselines = ", ".join(
        f"{k.removeprefix('baseline_')} {v.mean():.4g}" for k, v in tune.baseline_sq.items()
    )
    sm = trial.classical.smoothed
    echo(
        f"ready in {time.monotonic() - t0:.1f}s: zeros {cfg.data.train_start}..{cfg.data.train_start + cfg.data.train_count - 1}"
        f" in {len(trial.clusters)} cluster(s); windows of {cfg.data.horizon}: "
        + ", ".join(f"{len(w.starts)} {name}" for name, w in trial.windows.items())
        + f"; smoothed X = {sm.X}, a0 = {sm.a0:.4f}, a1 = {sm.a1:.4f}; baselines on the tune windows: {baselines}"
    )
    model = trial.model
    freezes = cfg.train.freeze_bottom_layers_on_expand and cfg.train.max_horizon > 1
    step_end = StepEnd(model, cfg, flat=not freezes)
    optimizer, ema = step_end.optimizer, step_end.ema
    steps_per_epoch = math.ceil(cfg.train.num_clusters / cfg.train.clusters_per_step)
    total_steps = cfg.train.epochs * steps_per_epoch
    per_step, plateau = _schedulers(optimizer, cfg, total_steps)
    rng = np.random.default_rng(cfg.seed)
    loss_gen = torch.Generator(device).manual_seed(cfg.seed + LOSS_SEED_OFFSET)
    epoch, step, plan, step_in_epoch, sums, spent = 0, 0, None, 0, {}, 0.0
    cost = {"train_seconds": 0.0, "cpu_seconds": 0.0}  # spent in training steps, over every resume

    if state is not None:
        model.load_state_dict(state["model"])
        step_end.load_optimizer_state_dict(state["optimizer"])
        per_step.load_state_dict(state["scheduler"])
        if plateau is not None:
            plateau.load_state_dict(state["plateau"])
        ema.load_state_dict(state["ema"])
        torch.set_rng_state(state["rng"]["torch"])
        if device.type == "cuda" and state["rng"].get("cuda") is not None:
            torch.cuda.set_rng_state(state["rng"]["cuda"], device)
        rng.bit_generator.state = state["rng"]["numpy"]
        loss_gen.set_state(state["rng"]["loss"])
        epoch, step, step_in_epoch, spent = (
            state["epoch"],
            state["step"],
            state["step_in_epoch"],
            state["seconds"],
        )
        plan = [tuple(p) for p in state["plan"]] if state["plan"] is not None else None
        sums = dict(state["sums"])
        cost = dict(state.get("cost") or cost)
        echo(f"resuming from {outputs.where(CHECKPOINT_FILE)} at epoch {epoch}, step {step}")
    outputs.load_metrics(up_to_epoch=epoch)

    def seconds() -> float:
        return spent + time.monotonic() - started

    def checkpoint() -> None:
        outputs.save_checkpoint(
            {
                "model": model.state_dict(),
                "optimizer": step_end.optimizer_state_dict(),
                "scheduler": per_step.state_dict(),
                "plateau": plateau.state_dict() if plateau is not None else None,
                "ema": ema.state_dict(),
                "rng": {
                    "torch": torch.get_rng_state(),
                    "cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
                    "numpy": rng.bit_generator.state,
                    "loss": loss_gen.get_state(),
                },
                "epoch": epoch,
                "step": step,
                "step_in_epoch": step_in_epoch,
                "plan": [list(p) for p in plan] if plan is not None else None,
                "sums": sums,
                "cost": cost,
                "seconds": seconds(),
                "config": cfg.model_dump(mode="json"),
            }
        )

    def diverged(reason: str) -> int:
        outputs.write_json(FINAL_FILE, _final("diverged", None, epoch, seconds(), reason))
        echo(f"diverged: {reason}")
        return 0

    sinks = MetricSinks(tensorboard_dir)
    epoch_times: list[float] = []
    try:
        while epoch < cfg.train.epochs:
            t0 = time.monotonic()
            if plan is None:
                plan, step_in_epoch, sums = trial.epoch_plan(rng), 0, {}
            horizon = horizon_at(epoch, cfg.train.epochs, cfg.train.max_horizon)
            if horizon > 1 and cfg.train.freeze_bottom_layers_on_expand:
                model.freeze_bottom_layers()  # from the first expansion on (again after a resume)
            model.train()  # once an epoch: only evaluate() switches a model to eval, and it gets the EMA's
            while step_in_epoch < len(plan):
                wall, cpu = time.monotonic(), time.process_time()
                total, parts = trial.loss(model, trial.batch(plan[step_in_epoch]), loss_gen, horizon)
                if not torch.isfinite(total):
                    values = ", ".join(f"{k} {float(v.detach()):.4g}" for k, v in parts.items())
                    return diverged(f"non-finite loss at epoch {epoch + 1}, step {step + 1} ({values})")
                step_end.zero_grad()
                total.backward()
                step_end()
                per_step.step()
                for k, v in parts.items():
                    sums[k] = sums.get(k, 0.0) + float(v.detach())  # also waits for the device
                cost["train_seconds"] += time.monotonic() - wall
                cost["cpu_seconds"] += time.process_time() - cpu
                step_in_epoch += 1
                step += 1
                if stop.requested:
                    checkpoint()
                    echo(f"SIGTERM: checkpoint written at epoch {epoch}, step {step}; exiting")
                    return EXIT_SIGTERM
            epoch, plan = epoch + 1, None
            row = {"epoch": epoch, "step": step} | {f"train/{k}": v / step_in_epoch for k, v in sums.items()}
            if cfg.train.max_horizon > 1:
                row["train/horizon"] = horizon
            if epoch % cfg.train.eval_every == 0 or epoch == cfg.train.epochs:
                metrics, _, _ = trial.evaluate(ema.module, ("val",))
                if not math.isfinite(metrics[VAL_OBJECTIVE]) or not math.isfinite(metrics["val_loss"]):
                    return diverged(
                        f"non-finite evaluation at epoch {epoch} (val_loss {metrics['val_loss']}, "
                        f"{VAL_OBJECTIVE} {metrics[VAL_OBJECTIVE]})"
                    )
                if plateau is not None:
                    plateau.step(metrics["val_loss"])
                row |= metrics
            row |= {
                "lr": optimizer.param_groups[0]["lr"],
                "seconds": round(seconds(), 3),
                "peak_mem_bytes": peak_mem_bytes(device),
            }
            if VAL_OBJECTIVE in row:
                outputs.append_metrics(row)
                sinks.scalars(row, epoch)
            epoch_times.append(time.monotonic() - t0)
            echo(progress_line(row, cfg.train.epochs, np.mean(epoch_times) * (cfg.train.epochs - epoch)))
            if len(epoch_times) == 1 and (shortfall := trial.node_cache_shortfall()):
                echo(shortfall)  # once: after the first epoch this process ran, every cluster built
            checkpoint()
            if stop.requested:
                echo(f"SIGTERM: checkpoint written at epoch {epoch}; exiting")
                return EXIT_SIGTERM
        # The final evaluation, on all three window sets (deterministic: a resumed run repeats it).
        final, windows, predictions = trial.evaluate(ema.module)
        if not math.isfinite(final[OBJECTIVE]) or not math.isfinite(final[f"test_{OBJECTIVE}"]):
            return diverged(
                f"non-finite final evaluation ({OBJECTIVE} {final[OBJECTIVE]}, test {final[f'test_{OBJECTIVE}']})"
            )
        if epoch == 0:  # train.epochs = 0: the untrained model's curve is this one point
            outputs.append_metrics(
                {"epoch": 0, "step": 0} | {k: v for k, v in final.items() if k.startswith("val")}
            )
        sinks.scalars({k: v for k, v in final.items() if not k.startswith("val")}, epoch)
        outputs.write_json(PREDICTIONS_FILE, predictions)
        final["cost"] = _cost(cost, step, device)
        outputs.write_json(FINAL_FILE, _final("completed", final, epoch, seconds(), None, windows))
        echo(
            f"completed: {OBJECTIVE} {final[OBJECTIVE]:.5g} ± {final['extrapolation_stderr']:.2g} on the tune windows, "
            f"{final['paired_diff']:+.3g} ± {final['paired_stderr']:.2g} against {final['best_baseline']} (paired); "
            f"test {final[f'test_{OBJECTIVE}']:.5g}, {final['test_paired_diff']:+.3g} ± {final['test_paired_stderr']:.2g} "
            f"against {final['test_best_baseline']} -> {outputs.where(FINAL_FILE)}"
        )
        return 0
    finally:
        sinks.close()
