"""Where one training step's time goes: cProfile and the torch profiler over real steps of a trial.

    .venv/bin/python bench/profile_step.py --mode minibatch --n 100000 --steps 20
    .venv/bin/python bench/profile_step.py --mode fullbatch --n 100000 --steps 3

    # another revision (the "before" of a profile): its worktree's configs and trainer
    git worktree add /tmp/base REV
    PYTHONPATH=/tmp/base/trainer/src .venv/bin/python bench/profile_step.py --repo /tmp/base

Builds the real trainer.training.Trial (hidden 64, depth 3, window 16, six primes; the default
losses of the team's config file) on the Odlyzko zeros and times its own step. Prints the CPU
ms per step of each part (batch building, forward, losses, backward, clip + AdamW + EMA) and
inside each native kernel (trainer.fused's; the rest of the step is torch, autograd and Python),
the update's CPU ms right after the kernels and again at once (how much of it is refilling the
caches the kernels emptied), the top entries of cProfile and of the torch profiler, each loss on its own (forward and backward on
a step's predictions, CPU ms), and one evaluation of the val windows; not a test.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


TABLE = 2_001_052  # zeros in the Odlyzko table
VAL = 64  # validation zeros after a training range that reaches the table's end ...
TAIL = 80  # ... and the zeros it keeps free after training for them and six one-zero windows


def build_trial(
    mode: str,
    n: int,
    extra: list[str],
    repo: Path = REPO,
    data: str | None = None,
    cluster_size: int = 2000,
    device: str = "cpu",
):
    """The real trainer.training.Trial of `mode` over n training zeros (configs from `repo`), on
    `device` ("cpu" or "cuda").

    Training starts at zero 100,001 when it fits, else right after the first 16 zeros of history;
    a range that reaches the table's end is shortened to leave TAIL zeros after it for VAL
    validation zeros and six (unused here) windows of one zero. Returns (trial, cfg);
    cfg.data.train_count is the n actually used.
    """
    import torch
    from trainer.config import load_config
    from trainer.data.dataset import open_dataset
    from trainer.training import Trial

    table = TABLE if data is None else open_dataset(data).last_index
    clusters = max(1, n // cluster_size) if mode == "minibatch" else 1
    if 100_001 + n + 2_000 + 200_000 <= table:  # room for the usual validation and windows after it
        start, after = (
            100_001,
            ["data.val_count=2000", "data.val_windows=4", "data.windows=4", "data.test_windows=4"],
        )
    else:  # the table's end: VAL validation zeros and six windows of one zero right after training
        start, n = 17, min(n, table - 17 - TAIL)
        after = [f"data.val_count={VAL}", "data.val_windows=2", "data.windows=2", "data.test_windows=2"]
        after += ["data.horizon=1", "data.window_stride=1"]
    overrides = [
        f"data.train_count={n}",
        f"data.train_start={start}",
        *after,
        "model.hidden=64",
        "model.depth=3",
        f"train.num_clusters={clusters}",
        f"train.clusters_per_step={min(clusters, 5)}",
        f"train.device={device}",
        *extra,
    ]
    if data is not None:
        overrides.append(f"data.path={data}")
    cfg = load_config(Path(repo) / "configs" / "trainer" / f"{mode}.yaml", overrides)
    dev = torch.device(device)
    try:  # the process settings of a trial (a revision before
        # trainer.training.apply_process_settings: deterministic algorithms and the threads)
        from trainer.training import apply_process_settings
    except ImportError:
        torch.set_num_threads(cfg.train.cpu_threads or torch.get_num_threads())
        torch.use_deterministic_algorithms(True)
    else:
        apply_process_settings(dev, cfg.train.cpu_threads)  # for the rest of this process
    return Trial(cfg, open_dataset(cfg.data.path), dev), cfg


class Stepper:
    """The real training loop body (trainer.training._loop) over a trial, step after step: one
    optimizer, EMA, epoch plan and MMD generator kept across calls."""

    def __init__(self, trial):
        import torch
        from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

        self.trial = trial
        from trainer import training

        end = getattr(training, "StepEnd", None)
        if end is not None and hasattr(end, "zero_grad"):  # the optimizer's side as the loop has it
            self.step_end = end(trial.model, trial.cfg, flat=True)
            self.opt, self.ema = self.step_end.optimizer, self.step_end.ema
        else:  # --compare runs older trainers too: their own optimizer and end of a step, or the calls these replaced
            make = getattr(training, "make_optimizer", None)
            self.opt = (
                make(trial.model, trial.cfg) if make else torch.optim.AdamW(trial.model.parameters(), lr=1e-3)
            )
            self.ema = AveragedModel(trial.model, multi_avg_fn=get_ema_multi_avg_fn(0.9), use_buffers=True)
            self.step_end = end(trial.model, self.opt, self.ema, 1.0) if end else None
        self.rng = np.random.default_rng(0)
        self.gen = torch.Generator(getattr(trial, "device", "cpu")).manual_seed(1)
        self.plan: list[tuple[int, ...]] = []

    def steps_per_epoch(self) -> int:
        return len(self.trial.epoch_plan(np.random.default_rng(0)))

    def zero_grad(self) -> None:
        if self.step_end is not None and hasattr(self.step_end, "zero_grad"):
            return self.step_end.zero_grad()
        self.opt.zero_grad(set_to_none=True)

    def update(self) -> None:
        """The end of a step: clipping, AdamW, EMA."""
        if self.step_end is not None:
            return self.step_end()
        import torch

        torch.nn.utils.clip_grad_norm_(self.trial.model.parameters(), 1.0)
        self.opt.step()
        self.ema.update_parameters(self.trial.model)

    def run(self, count: int, parts: dict[str, float] | None = None, again: list | None = None) -> int:
        """`count` steps; returns the number of nodes they trained on. `parts`, when given,
        gathers the CPU seconds of each part of the steps. `again`, when given: each step's
        update (clip, AdamW, EMA) runs a second time at once, on the same gradients, and the CPU
        seconds of both runs are appended: the first right after the kernels of the backward,
        the second on the caches the first left warm."""

        model, nodes = self.trial.model, 0
        clock = [time.process_time()]

        def tick(part: str) -> float:
            now, spent = time.process_time(), time.process_time() - clock[0]
            if parts is not None:
                parts[part] = parts.get(part, 0.0) + spent
            clock[0] = now
            return spent

        model.train()  # as the loop does once an epoch (trainer.training._loop)
        for _ in range(count):
            if not self.plan:
                self.plan = self.trial.epoch_plan(self.rng)
            clock[0] = time.process_time()
            batch = self.trial.batch(self.plan.pop(0))
            tick("batch")
            pred = self.trial.forward(model, batch)  # trial.loss at max_horizon 1, in its two parts
            tick("forward")
            total, _ = self.trial.train_losses(pred, batch, self.gen)
            tick("losses")
            self.zero_grad()
            total.backward()
            tick("backward")
            self.update()
            first = tick("clip, AdamW, EMA")
            if again is not None:
                self.update()
                again.append((first, tick("clip, AdamW, EMA again")))
            nodes += len(batch.nodes)
        return nodes


def timed(seconds: dict[str, float], name: str, f):
    """f, each call's CPU seconds added to seconds[name]."""

    def call(*args):
        c0 = time.process_time()
        try:
            return f(*args)
        finally:
            seconds[name] = seconds.get(name, 0.0) + time.process_time() - c0

    return call


class KernelClock:
    """CPU seconds spent inside each native kernel (trainer.fused's ctypes calls) while entered:
    each of the library's functions is wrapped in a timer and put back on exit. The rest of a
    step (torch's own ops, autograd, Python, the allocator) is the step's time less their sum.
    Empty where the trainer has no kernels (a revision before trainer.fused, no compiler)."""

    def __init__(self):
        try:
            from trainer import fused
        except ImportError:
            self.lib = None
        else:
            self.lib = fused.library()
        names = [n for n in dir(self.lib) if n.startswith("zs_")] if self.lib is not None else []
        self.originals = {n: getattr(self.lib, n) for n in names}
        self.seconds: dict[str, float] = {}

    def __enter__(self) -> KernelClock:
        for name, f in self.originals.items():
            setattr(self.lib, name, timed(self.seconds, name.removeprefix("zs_"), f))
        return self

    def __exit__(self, *exc) -> None:
        for name, f in self.originals.items():
            setattr(self.lib, name, f)


def loss_terms(stepper: Stepper, reps: int) -> dict[str, float | None]:
    """CPU seconds of each loss on its own, forward and backward, on a step's real predictions
    and batch: the trial's loss setup with one weight kept at a time (None: its weight is 0, the
    term is off). compute_losses always evaluates mse and gue_nll (O(n)), so every term's figure
    includes their forward. Empty for a revision (--repo) without trainer.training.LossSetup."""
    import dataclasses

    import torch
    from trainer.losses import LOSS_NAMES, LossWeights

    trial = stepper.trial
    setup = getattr(trial, "train_losses", None)
    if not dataclasses.is_dataclass(setup):
        return {}
    batch = trial.batch(trial.epoch_plan(np.random.default_rng(0))[0])
    with torch.no_grad():
        pred = trial.forward(trial.model, batch)
    out: dict[str, float | None] = {}
    for name in LOSS_NAMES:
        weight = getattr(setup.weights, name)
        if weight == 0:
            out[name] = None
            continue
        one = dataclasses.replace(
            setup, weights=LossWeights(**{n: weight if n == name else 0.0 for n in LOSS_NAMES})
        )
        c0 = time.process_time()
        for _ in range(reps):
            p = pred.detach().requires_grad_()
            total, _ = one(p, batch, stepper.gen)
            total.backward()
        out[name] = (time.process_time() - c0) / reps
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--mode", choices=["minibatch", "fullbatch"], default="minibatch")
    p.add_argument("--n", type=int, default=100_000)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--top", type=int, default=25)
    p.add_argument("--set", action="append", default=[], help="trainer --set overrides")
    p.add_argument("--data", default=os.environ.get("ZETA_SWARM_DATA", str(REPO / "data" / "odlyzko")))
    p.add_argument(
        "--repo",
        default=str(REPO),
        help="the checkout whose configs/ to use: another revision's worktree, with its trainer/src on PYTHONPATH",
    )
    args = p.parse_args()
    os.environ.setdefault("OPENBLAS_NUM_THREADS", str(args.threads))
    from torch.profiler import ProfilerActivity, profile
    from trainer.errors import InputError

    t0 = time.perf_counter()
    try:
        trial, _ = build_trial(
            args.mode,
            args.n,
            [f"train.cpu_threads={args.threads}", *args.set],
            repo=Path(args.repo),
            data=args.data,
        )
    except InputError as e:  # a missing dataset, a bad --set: one line, exit 2
        p.error(str(e).splitlines()[0])
    print(
        f"trial built in {time.perf_counter() - t0:.1f} s ({args.mode}, N = {args.n:,}, {args.threads} thread(s))"
    )
    stepper = Stepper(trial)
    # Warm-up as bench/train.py: mini-batch one epoch (every cluster's nodes built and cached),
    # full-batch one step (allocators, lazy imports).
    stepper.run(stepper.steps_per_epoch() if args.mode == "minibatch" else 1)

    prof = cProfile.Profile()
    t0, c0 = time.perf_counter(), time.process_time()
    prof.enable()
    nodes = stepper.run(args.steps)
    prof.disable()
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    print(
        f"{args.steps} steps, {nodes:,} nodes: {nodes / wall:,.0f} nodes/s wall, {nodes / cpu:,.0f} nodes/s CPU "
        f"({wall / args.steps * 1e3:.1f} ms/step wall)"
    )
    parts: dict[str, float] = {}
    with KernelClock() as kernels:
        stepper.run(args.steps, parts)
    print(
        "CPU ms per step, by part: " + ", ".join(f"{k} {v / args.steps * 1e3:.1f}" for k, v in parts.items())
    )
    if kernels.seconds:
        inside, step = sum(kernels.seconds.values()), sum(parts.values())
        print(
            "CPU ms per step inside the native kernels: "
            + ", ".join(
                f"{k} {v / args.steps * 1e3:.2f}"
                for k, v in sorted(kernels.seconds.items(), key=lambda kv: -kv[1])
            )
            + f"; all of them {inside / args.steps * 1e3:.1f} of {step / args.steps * 1e3:.1f} ({inside / step:.0%}),"
            f" outside them {(step - inside) / args.steps * 1e3:.1f}"
        )
    again: list[tuple[float, float]] = []
    stepper.run(args.steps, again=again)
    first, second = (float(np.median(t)) * 1e3 for t in zip(*again, strict=True))
    print(
        f"CPU ms of clip, AdamW, EMA right after the backward's kernels {first:.2f}, and run again at once"
        f" on the caches it left warm {second:.2f} (medians of {len(again)} steps)"
    )
    terms = loss_terms(stepper, max(3, args.steps))
    print(
        "CPU ms of each loss alone, forward and backward: "
        + (", ".join(f"{k} {'off' if v is None else f'{v * 1e3:.2f}'}" for k, v in terms.items()) or "-")
    )
    out = io.StringIO()
    pstats.Stats(prof, stream=out).sort_stats("cumulative").print_stats(args.top)
    print(out.getvalue())
    out = io.StringIO()
    pstats.Stats(prof, stream=out).sort_stats("tottime").print_stats(args.top)
    print(out.getvalue())

    with profile(activities=[ProfilerActivity.CPU]) as tp:
        stepper.run(max(1, args.steps // 4))
    print(tp.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.top))

    t0 = time.perf_counter()
    trial.evaluate(stepper.ema.module, ("val",))
    print(f"one evaluation of the val windows: {time.perf_counter() - t0:.2f} s")


if __name__ == "__main__":
    main()
