"""Training throughput and memory of one trial's REAL step (prints figures; not a test).

    .venv/bin/python bench/train.py                      # everything (long on a small CPU)
    .venv/bin/python bench/train.py --only minibatch --sizes 100000 --threads 1
    .venv/bin/python bench/train.py --only fullbatch --sizes 2001035 --threads 1 [--set train.recompute_activations=true]
    .venv/bin/python bench/train.py --only minibatch --sizes 100000 --threads 1 --compare main [--rounds 5]
    .venv/bin/python bench/train.py --only fullbatch --fit-gb 20     # largest full-batch N in 20 GB
    .venv/bin/python bench/train.py --only partition
    # the cloud profile's Team 2 step shape, and what a phase-2 trial's steps cost at its speed
    .venv/bin/python bench/train.py --only minibatch --sizes 100000 --cluster-size 1000 \
        --set train.clusters_per_step=50 --trial-cost cloud [--device cuda]

Every figure comes from the real trainer.training.Trial (bench/profile_step.py builds it: hidden
64, depth 3, window 16, six primes, the team's config file) and the real loop body: Trial.batch,
Trial.loss, backward, gradient clipping, AdamW, EMA. Each measurement runs in a fresh subprocess,
so its peak RSS (ru_maxrss) is its own.

* minibatch: Cluster-GCN, contiguous clusters of --cluster-size zeros, q = 5 per step (rg off);
  one epoch of warm-up (every cluster's nodes built and cached), then --steps timed steps.
  Beyond the --data dataset's last zero (e.g. a sharded dataset of 1e7 real zeros made by
  `orchestrator zeros`; by default the table) the zeros are a SYNTHETIC TAIL:
  x_n = n - 1/2 + delta_m with the real fluctuations delta_m recycled (m = n mod 2,001,052), t_n = N̄^{-1}(x_n). It has the real
  statistics and heights but is not zeta zeros: it measures cost, not accuracy.
* fullbatch: the whole range as one graph, all four losses; build = Trial + the batch, then
  one warm-up step, then --steps timed steps (one step per epoch). At the table's end (N =
  2,001,035 trains on every zero that has 16 before it and 1 after it) the 80 zeros of validation
  and (unused) one-zero windows that must follow training come from the synthetic tail.
  --fit-gb G: the largest N that peaks under G GB, within --fit-seconds: from --fit-start, each
  probe aimed at 99% of G along the line through the two largest probes' peaks (at most twice
  the largest fitting N), then bisection below the first that does not fit (next_probe). Each
  probe is a subprocess: build + two steps, its peak RSS measured, no FLOP count (beyond the
  table on the synthetic tail). A probe the line puts beyond 90% of the machine's available
  memory is not run; the line's extrapolation to G GB is printed beside the measured bracket,
  marked as an estimate.
* partition: contiguous blocks vs METIS (pymetis) on N = 1e6, k = 500.

Columns: nodes/s (wall and per CPU-second: time.process_time, the figure that survives a loaded
machine), seconds per step (wall, CPU), peak RSS (build and steps), the model's FLOPs per node
COUNTED by torch.utils.flop_counter.FlopCounterMode over one forward+backward of the model on a
batch (after the timed steps; the sparse neighbour aggregation counted as 2 nnz x columns; a
batch of more than FLOP_COUNT_NODES nodes is counted on its first FLOP_COUNT_NODES, whose
causal graph is the whole batch's first rows: the count runs the model's eager twin, which
needs memory the trainer's own step does not), the achieved model GFLOP/s per
CPU-second, torch's own float32 matmul GFLOP/s (1024^3, best of 5, per CPU-second, same threads)
and their ratio: a roofline fraction that means the same on any machine; then the core's own
float32 FMA limit on one thread (bench/fma_peak.cpp: multiply-adds at the kernels' vector width
on independent chains, built with the kernels' flags) and the model's GFLOP/s as a fraction of
it, the hardware's limit.

--device cuda runs the trials on the GPU (the trainer's CUDA path: bf16 autocast where the GPU has
it); the wall clock around the steps waits for the GPU, the row adds torch's GPU peak and the
GPU's busy time a step (gpu_busy: the kernels the torch profiler records over ten more steps, and
how many; the host's top ops go to the JSON), and the FLOP columns are per second of wall time
against torch's bf16 (or float32) 4096^3 matmul on the GPU; the CPU columns and peak RSS stay the
host's. bench/gpu.sh runs the gpu tests and these rows at the cloud profile's shapes.

--trial-cost PROFILE prints under each row what one phase-2 trial of that profile trains for the
row's team (phase_trial: its steps and nodes per step, from the config files as the swarm
composes them) and the hours its optimizer steps take at the row's nodes/s; with the price of the
team's machine (configs/budgets.yaml) when the row ran on that machine's GPU, and as an ESTIMATE
when it ran on another GPU of DATASHEET_BANDWIDTH (gpu_step_estimate: the kernels' time scaled by
the bandwidth ratio, the host's part as measured). Steps only: a trial's start-up, features and
evaluations are not in it, and a row measured at another step size than the trial's says so.

--compare REV runs the same measurement (this harness) on the trainer of another git revision:
a `git worktree` of REV in a temp dir, this venv, PYTHONPATH=<worktree>/trainer/src and REV's
config files; both rows are printed per N, the runs interleaved, then this revision's nodes per
CPU-second over REV's. --rounds R measures each N R times, the two revisions' order alternating
from round to round, and prints each round's ratio and their median: on a shared host the speed
moves between runs by more than 10%, so one pair is one sample. The figures are also written to
--out (default bench/results/train-<UTC time>.json; bench/results/ is gitignored).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
TABLE = 2_001_052
WINDOW = 16
FULL_SIZES = [10_000, 100_000, 1_000_000, TABLE - WINDOW - 1]
MINI_SIZES = [100_000, 1_000_000, 10_000_000]
TAIL = 80  # zeros after a full-batch range at the table's end (bench/profile_step.py TAIL)
#: OpenMP's wait policy as the bench was started. Importing trainer here sets its own
#: (trainer/__init__.py); each child gets this one back, so that every revision's trainer runs
#: with what it sets itself (an older one sets none).
OMP_WAIT_POLICY = os.environ.get("OMP_WAIT_POLICY")


def _peak_rss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _matmul_flops() -> float:
    """torch's float32 matmul FLOP/s per CPU-second on this process's threads (1024^3, best of 5)."""
    import torch

    a, b = torch.randn(1024, 1024), torch.randn(1024, 1024)
    torch.mm(a, b)
    best = float("inf")
    for _ in range(5):
        c0 = time.process_time()
        torch.mm(a, b)
        best = min(best, time.process_time() - c0)
    return 2 * 1024**3 / best


def _cuda_matmul_flops(dtype) -> float:
    """torch's matmul FLOP/s on the GPU in the dtype a trial's products run in there (bf16 under
    its autocast), 4096^3, best of 5 (wall, synchronized)."""
    import torch

    a = torch.randn(4096, 4096, device="cuda", dtype=dtype)
    b = torch.randn(4096, 4096, device="cuda", dtype=dtype)
    torch.mm(a, b)
    torch.cuda.synchronize()
    best = float("inf")
    for _ in range(5):
        t0 = time.perf_counter()
        torch.mm(a, b)
        torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t0)
    return 2 * 4096**3 / best


#: Steps run under the torch profiler (CUDA activity) after the timed ones, for the GPU's busy time.
GPU_BUSY_STEPS = 10
#: Entries of the host's top ops kept with a CUDA row (host_top_ops: name, self CPU ms a step, calls a step).
GPU_TOP_OPS = 15


def gpu_busy(stepper, steps: int) -> dict:
    """The GPU's own time in a step: the summed duration of the kernels (and copies) the torch
    profiler records on the device over `steps` more steps, per step, and how many there are.
    Set beside the step's wall time it says how much of a step is the GPU's work and how much
    the host's (Python, dispatch, launches, waits): what gpu_step_estimate scales to another GPU.
    Under the profiler the steps run slower; only the device's records are used."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        stepper.run(steps)
        torch.cuda.synchronize()
    device = [e for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA]
    busy = sum(e.time_range.elapsed_us() for e in device) * 1e-6
    # Where the host's share goes: the ops of most self CPU time (ms a step, under the profiler).
    ops = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)[:GPU_TOP_OPS]
    top = [[e.key, e.self_cpu_time_total / 1e3 / steps, e.count / steps] for e in ops]
    return {
        "gpu_busy_s_per_step": busy / steps,
        "gpu_kernels_per_step": len(device) / steps,
        "host_top_ops": top,
    }


#: Device memory bandwidth by the vendors' datasheets (bytes/s), most specific name first: the
#: scale from one GPU's kernel time to another's for kernels that stream memory, as this model's
#: (hidden 64: every product is far below the matrix units' intensity). Leads, not measurements.
DATASHEET_BANDWIDTH = (
    (("A100", "80GB"), 2.039e12),
    (("A100",), 1.555e12),
    (("H100",), 3.35e12),
    (("H200",), 4.8e12),
    (("L4",), 0.3e12),
)


def gpu_words(name: str) -> set[str]:
    """The words of a GPU's name as torch ("NVIDIA A100-SXM4-80GB") or a machine spec
    ("NVIDIA_A100_80GB") spells it: {"NVIDIA", "A100", "SXM4", "80GB"}, {"NVIDIA", "A100", "80GB"}."""
    return set(re.split(r"[\s_\-]+", name.upper())) - {""}


def datasheet_bandwidth(name: str) -> float | None:
    """DATASHEET_BANDWIDTH of a GPU by its name (gpu_words); None for one not in the table."""
    words = gpu_words(name)
    for keys, bandwidth in DATASHEET_BANDWIDTH:
        if words >= set(keys):
            return bandwidth
    return None


def gpu_step_estimate(r: dict, target: str) -> tuple[float, float] | None:
    """(low, high) seconds of run r's step on the GPU `target`, from its step on r's GPU: the
    kernels' time scaled by the ratio of datasheet bandwidths, the rest of the step (the host's)
    as measured. low: the step is as long as the longer of the two, the kernels overlapping the
    host's work (and never shorter than measured where the target is slower); high: the two one
    after the other. None where either GPU is not in DATASHEET_BANDWIDTH or r has no busy time."""
    mine, theirs = datasheet_bandwidth(r.get("gpu") or ""), datasheet_bandwidth(target)
    if mine is None or theirs is None or "gpu_busy_s_per_step" not in r:
        return None
    step, busy = r["step_s"], min(r["gpu_busy_s_per_step"], r["step_s"])
    kernels = busy * mine / theirs
    host = step - busy
    low = max(step, kernels) if theirs <= mine else max(host, kernels)
    return low, host + kernels


def fma_peak_flops() -> float | None:
    """This core's float32 FMA limit per CPU-second (bench/fma_peak.cpp: multiply-adds at the
    kernels' vector width on independent chains, built with the kernels' flags; best of 5 runs of
    ~0.1 s). None without a C++ compiler, or where it does not build."""
    import ctypes
    import hashlib
    import shutil
    import subprocess

    compiler = os.environ.get("CXX") or shutil.which("g++")
    if compiler is None:
        return None
    source = Path(__file__).with_name("fma_peak.cpp")
    header = REPO / "trainer" / "src" / "trainer" / "csrc" / "vector_width.h"  # the kernels' width
    flags = ["-O3", "-march=native", "-std=c++17", "-shared", "-fPIC", f"-I{header.parent}"]
    key = hashlib.sha256(
        "\0".join([source.read_text(), header.read_text(), compiler, *flags]).encode()
    ).hexdigest()[:16]
    lib_path = Path(tempfile.gettempdir()) / "zeta-swarm-bench" / f"fma-peak-{key}.so"
    if not lib_path.exists():
        lib_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = lib_path.with_suffix(f".{os.getpid()}.tmp")
        try:
            subprocess.run([compiler, *flags, "-o", str(tmp), str(source)], check=True, capture_output=True)
            os.replace(tmp, lib_path)
        except (OSError, subprocess.CalledProcessError):
            return None
        finally:
            tmp.unlink(missing_ok=True)
    lib = ctypes.CDLL(str(lib_path))
    lib.zs_fma_loop.argtypes, lib.zs_fma_loop.restype = [ctypes.c_int64], ctypes.c_float
    lib.zs_fma_flops_per_iteration.restype = ctypes.c_int64
    iterations = 20_000_000
    best = float("inf")
    for _ in range(5):
        c0 = time.process_time()
        lib.zs_fma_loop(iterations)
        best = min(best, time.process_time() - c0)
    return iterations * lib.zs_fma_flops_per_iteration() / best


#: The most nodes the FLOP count runs over (child_step): 2^21, a whole number of the trainer's
#: row chunks (CHUNK_ROWS = 2^15) and more than the real table's 2,001,035 zeros.
FLOP_COUNT_NODES = 1 << 21


def leading_nodes(trial, batch, m: int):
    """batch cut to its first m nodes (itself when it has no more): features, targets, base and
    the graph of their rows. The graph is causal (node n hears from n - p), so these rows'
    neighbours are all among them, as in the whole batch: per node, the model runs the same
    products and gathers on them (the chunked path's last chunk aside)."""
    import dataclasses

    if len(batch.nodes) <= m:
        return batch
    table = batch.nodes.table[:m]
    assert int(table.max()) < m, "a causal table's first rows point only at each other"
    graph = trial.model.graph_input(table).to(batch.x.device)
    return dataclasses.replace(batch, x=batch.x[:m], y=batch.y[:m], base=batch.base[:m], graph=graph)


def _model_flops(trial, batch) -> int:
    """FLOPs of one forward+backward of the trial's model on batch, counted by torch's
    FlopCounterMode; a sparse x dense product (the neighbour aggregation) counts 2 nnz x columns,
    not the dense formula torch would apply to its shape, and so does a gather-sum (embedding_bag,
    the aggregation since trainer.model.Neighbours). These are the FLOPs executed: where the model
    runs in row chunks with recomputation (full-batch above 2^17 nodes), the recomputed forward
    is counted too."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode, addmm_flop, mm_flop

    def sparse_aware(dense):
        def count(*args, out_val=None, **kwargs):
            tensors = [a for a in args if isinstance(a, torch.Tensor)]
            sparse = [a for a in tensors if a.layout != torch.strided]
            if sparse:
                return 2 * int(sparse[0]._nnz()) * int(out_val.shape[-1])
            return dense(*args, out_val=out_val, **kwargs)  # torch's formula, on the shapes

        count._get_raw = True
        return count

    def gather_sum(weight, indices, *args, out_val=None, **kwargs):  # embedding_bag: one FMA per entry
        return 2 * int(indices.numel()) * int(weight.shape[-1])

    gather_sum._get_raw = True
    aten = torch.ops.aten
    mapping = {aten.mm: sparse_aware(mm_flop), aten.addmm: sparse_aware(addmm_flop)}
    mapping[aten.addmm_] = sparse_aware(addmm_flop)  # in place: a conv's root map (torch counts none)
    mapping |= {aten._embedding_bag: gather_sum, aten._embedding_bag_forward_only: gather_sum}
    try:
        from trainer.fused import eager
    except ImportError:  # --compare: a revision from before trainer.fused
        eager = contextlib.nullcontext
    # The fused CPU layer (trainer.fused) is a ctypes call FlopCounterMode cannot see; it runs the
    # same products and gathers as its eager twin counted here (its backward gathers the gradient
    # over the transposed table once, as the eager gather's backward does).
    with eager(), FlopCounterMode(display=False, custom_mapping=mapping) as counter:
        trial.forward(trial.model, batch).sum().backward()
    trial.model.zero_grad(set_to_none=True)
    return counter.get_total_flops()


def child_step(
    mode: str,
    repo: str,
    data: str,
    n: int,
    steps: int,
    cluster_size: int,
    extra: list[str],
    peak_only: bool = False,
    device: str = "cpu",
) -> dict:
    """The timed steps of one trial and their figures. peak_only (the --fit-gb probes): without
    the FLOP count and the matmul and FMA measurements after them (a probe is for its peak
    alone). device "cuda": the wall clock around the steps waits for the GPU, and the GPU's
    own peak (torch's allocator) and matmul FLOP/s come with the figures (CPU seconds and the
    FMA limit are the host's)."""
    import torch
    from profile_step import Stepper, build_trial

    import trainer

    cuda = device == "cuda"
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    t0 = time.perf_counter()
    trial, cfg = build_trial(
        mode, n, extra, repo=Path(repo), data=data, cluster_size=cluster_size, device=device
    )
    stepper = Stepper(trial)
    first = trial.epoch_plan(np.random.default_rng(0))[0]
    batch = trial.batch(first)
    build = time.perf_counter() - t0
    build_rss = _peak_rss()
    nodes_in_batch = len(batch.nodes)
    del batch
    # Warm-up: full-batch one step, mini-batch one epoch (every cluster's nodes built and cached).
    stepper.run(stepper.steps_per_epoch() if mode == "minibatch" else 1)
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    sync()
    t0, c0 = time.perf_counter(), time.process_time()
    nodes = stepper.run(steps)
    sync()
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    peak = _peak_rss()  # before the counted pass below, which runs under FlopCounterMode
    gpu = (
        {"gpu": torch.cuda.get_device_name(), "gpu_peak_bytes": torch.cuda.max_memory_allocated()}
        if cuda
        else {}
    )
    if cuda and not peak_only:
        gpu |= gpu_busy(stepper, min(steps, GPU_BUSY_STEPS))
    if peak_only:
        return {
            "mode": mode,
            "n": cfg.data.train_count,
            "build_s": build,
            "step_cpu_s": cpu / steps,
            "peak_rss": peak,
            "build_peak_rss": build_rss,
            **gpu,
        }
    counted = min(nodes_in_batch, FLOP_COUNT_NODES)
    flops_per_node = _model_flops(trial, leading_nodes(trial, trial.batch(first), counted)) / counted
    if cuda:
        mm = _cuda_matmul_flops(torch.bfloat16 if getattr(trial, "autocast", False) else torch.float32)
        fma, per = None, wall  # the GPU's work per second of wall time, not of the host's CPU
    else:
        mm, fma, per = _matmul_flops(), fma_peak_flops(), cpu
    return {
        "mode": mode,
        "n": cfg.data.train_count,
        "trainer": str(Path(trainer.__file__).resolve().parent),
        "threads": torch.get_num_threads(),
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
        "steps": steps,
        "nodes_per_step": nodes / steps,
        "build_s": build,
        "nodes_per_s": nodes / wall,
        "nodes_per_cpu_s": nodes / cpu,
        "step_s": wall / steps,
        "step_cpu_s": cpu / steps,
        "peak_rss": peak,
        "build_peak_rss": build_rss,
        "model_flops_per_node": flops_per_node,
        "flops_counted_nodes": counted,
        "model_flops_per_cpu_s": flops_per_node * nodes / per,
        "matmul_flops_per_cpu_s": mm,
        "roofline": flops_per_node * nodes / per / mm,
        "fma_peak_flops": fma,
        "of_fma_peak": None if fma is None else flops_per_node * nodes / cpu / fma,
        "device": device,
        **gpu,
    }


def child_partition(n: int, k: int) -> dict:
    from trainer.partition import contiguous, cut_edges, metis

    primes = [2, 3, 5, 7, 11, 13]
    t0 = time.perf_counter()
    blocks = contiguous(1, n + 1, k)
    t_blocks = time.perf_counter() - t0
    t0 = time.perf_counter()
    parts = metis(1, n + 1, k, primes)
    t_metis = time.perf_counter() - t0
    return {
        "n": n,
        "k": k,
        "contiguous_s": t_blocks,
        "metis_s": t_metis,
        "contiguous_cut": cut_edges(blocks, primes),
        "metis_cut": cut_edges(parts, primes),
        "metis_runs": sum(len(c) for c in parts),
        "peak_rss": _peak_rss(),
    }


def synthetic_dataset(real: str, count: int, out: Path) -> str:
    """The real table followed by a synthetic tail of recycled real fluctuations (see module doc)."""
    from trainer.data.dataset import open_dataset, write_dataset
    from trainer.unfolding import fluctuations, inverse_smooth_count, unfold

    if (out / "manifest.json").exists():
        return str(out)
    ds = open_dataset(real)
    table = ds.ordinates(ds.first_index, ds.last_index + 1)
    delta = fluctuations(unfold(table), ds.first_index)
    zeros = np.empty(count)
    zeros[: ds.count] = table
    chunk = 1 << 20
    for lo in range(ds.count, count, chunk):
        n = np.arange(lo + 1, min(count, lo + chunk) + 1)
        x = n - 0.5 + delta[(n - 1) % ds.count]
        zeros[lo : lo + len(n)] = inverse_smooth_count(x)
    write_dataset(
        out,
        zeros,
        source="synthetic-tail",
        first_index=1,
        abs_accuracy=1.0,
        params={"real": real, "tail": "recycled delta"},
    )
    return str(out)


def _last_index(data: str) -> int:
    from trainer.data.dataset import open_dataset

    return open_dataset(data).last_index


def _run_child(args: list[str], pythonpath: str | None = None) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    if OMP_WAIT_POLICY is not None:
        env["OMP_WAIT_POLICY"] = OMP_WAIT_POLICY
    if pythonpath is not None:
        env["PYTHONPATH"] = pythonpath
    proc = subprocess.run(
        [sys.executable, __file__, *args], capture_output=True, text=True, cwd=REPO, env=env
    )
    if proc.returncode != 0:
        return {
            "error": proc.stderr.strip().splitlines()[-1]
            if proc.stderr.strip()
            else f"exit {proc.returncode}"
        }
    return json.loads(proc.stdout.strip().splitlines()[-1])


def ratio_summary(rounds: list[dict[str, dict]], other: str, this: str) -> dict:
    """This revision's nodes per CPU-second over the other's, round by round (the two runs of a
    round one after the other), and their median: the comparison's figure, since the host's
    speed moves between rounds more than within one. Rounds where either run failed are left out."""
    ratios = [
        r[this]["nodes_per_cpu_s"] / r[other]["nodes_per_cpu_s"]
        for r in rounds
        if all("error" not in r[label] for label in (this, other))
    ]
    if not ratios:
        return {"ratios": [], "median": None, "line": f"{this} / {other}: no round without a failed run"}
    median = statistics.median(ratios)
    each = ", ".join(f"{x:.2f}x" for x in ratios)
    line = f"{this} / {other}, nodes per CPU-second: {each}" + (
        f"; median {median:.2f}x of {len(ratios)} rounds" if len(ratios) > 1 else ""
    )
    return {"ratios": ratios, "median": median, "line": line}


def _gb(b: int) -> str:
    return f"{b / 1e9:.2f} GB"


class Revision:
    """This checkout, or a temporary `git worktree` of another revision (removed on exit)."""

    def __init__(self, rev: str | None):
        self.rev, self.tmp = rev, None
        if rev is None:
            self.label, self.repo, self.pythonpath = "this", REPO, None
            return
        sha = subprocess.run(
            ["git", "rev-parse", "--short", rev], capture_output=True, text=True, cwd=REPO, check=True
        ).stdout.strip()
        self.tmp = tempfile.mkdtemp(prefix="zeta-bench-")
        self.repo = Path(self.tmp) / "tree"
        subprocess.run(
            ["git", "worktree", "add", "--detach", str(self.repo), sha],
            cwd=REPO,
            check=True,
            capture_output=True,
        )
        self.label, self.pythonpath = sha, str(self.repo / "trainer" / "src")

    def close(self) -> None:
        if self.tmp is not None:
            subprocess.run(
                ["git", "worktree", "remove", "--force", str(self.repo)], cwd=REPO, capture_output=True
            )
            os.rmdir(self.tmp)


HEADER = (
    f"{'N':>10} {'data':>10} {'nodes/s':>9} {'rev':>8} {'nodes/CPUs':>10} {'s/step':>7} {'CPUs/step':>9} "
    f"{'peak RSS':>9} {'FLOP/node':>10} {'GFLOP/CPUs':>10} {'mm GFLOP/s':>10} {'roofline':>8} "
    f"{'FMA GFLOP/s':>11} {'of FMA':>7}"
)


def _clusters_per_step(extra: list[str]) -> str:
    """q of the mini-batch rows: build_trial's 5 (fewer clusters: all of them) unless --set says."""
    q = [item.split("=", 1)[1] for item in extra if item.startswith("train.clusters_per_step=")]
    return q[-1] if q else "5"


def _row(n: int, source: str, label: str, r: dict) -> str:
    if "error" in r:
        return f"{n:>10} {source:>10} {'':>9} {label:>8} failed: {r['error']}"
    return (
        f"{r['n']:>10} {source:>10} {r['nodes_per_s']:>9.0f} {label:>8} {r['nodes_per_cpu_s']:>10.0f} "
        f"{r['step_s']:>7.3f} {r['step_cpu_s']:>9.3f} {_gb(r['peak_rss']):>9} {r['model_flops_per_node']:>10.3g} "
        f"{r['model_flops_per_cpu_s'] / 1e9:>10.2f} {r['matmul_flops_per_cpu_s'] / 1e9:>10.1f} {r['roofline']:>8.2%} "
        + (
            f"{r['fma_peak_flops'] / 1e9:>11.1f} {r['of_fma_peak']:>7.1%}"
            if r.get("fma_peak_flops")
            else f"{'-':>11} {'-':>7}"
        )
        + (
            f"  (build {r['build_s']:.0f} s, peak {_gb(r['build_peak_rss'])} after it)"
            if r["mode"] == "fullbatch"
            else ""
        )
        + (f"  on {r['gpu']}: GPU peak {_gb(r['gpu_peak_bytes'])}" if r.get("gpu") else "")
        + (
            f", GPU busy {r['gpu_busy_s_per_step'] * 1e3:.1f} ms a step ({r['gpu_kernels_per_step']:.0f} kernels)"
            if "gpu_busy_s_per_step" in r
            else ""
        )
    )


def phase_trial(profile: str, mode: str, phase: int = 2) -> dict:
    """What one trial of `phase` of `profile` trains for the team of `mode`, from the config files
    as the swarm composes them (orchestrator.trial_command.trainer_values: every `--set` of a trial
    before the tuner's params, on the team's trainer config): its optimizer steps, the nodes of a
    step, their product, and the team's machine and its price per hour (configs/budgets.yaml)."""
    from orchestrator.settings_loader import load_settings
    from orchestrator.trial_command import trainer_values
    from orchestrator.values import set_arg
    from trainer.config import load_config

    s = load_settings(phase, mode, "local", profile)
    team = s.team_machines[mode]
    cfg = load_config(team.trainer_config, [set_arg(k, v) for k, v in trainer_values(s, {}, {}).items()])
    t = cfg.train
    if mode == "minibatch":
        steps_per_epoch = math.ceil(t.num_clusters / t.clusters_per_step)
        nodes_per_step = cfg.data.train_count * t.clusters_per_step / t.num_clusters
    else:
        steps_per_epoch, nodes_per_step = 1, cfg.data.train_count
    steps = t.epochs * steps_per_epoch
    return {
        "profile": profile,
        "phase": phase,
        "mode": mode,
        "steps": steps,
        "nodes_per_step": nodes_per_step,
        "nodes": steps * nodes_per_step,
        "machine": team.machine,
        "price_per_hour": team.price_per_hour,
        "currency": s.currency,
    }


def same_accelerator(machine: str, gpu: str) -> bool:
    """Whether torch's name of a GPU (torch.cuda.get_device_name) is the accelerator of a team's
    machine ("g2-standard-8 + 1 x NVIDIA_L4": an "NVIDIA L4"; NVIDIA_A100_80GB: an A100 with
    80GB in its name): every word of the accelerator's model and memory is a word of the name."""
    if " x " not in machine:
        return False
    accelerator = machine.split(" x ")[-1].removeprefix("NVIDIA_").removeprefix("TESLA_")
    return gpu_words(gpu) >= gpu_words(accelerator)


def trial_cost_line(trial: dict, r: dict) -> str:
    """The hours of a trial's optimizer steps at run r's nodes per second (wall), and their price
    where r ran on the team's own accelerator. Steps only: the trial's start, its features and
    its evaluations are not in it."""
    hours = trial["nodes"] / r["nodes_per_s"] / 3600
    line = (
        f"  a phase-{trial['phase']} trial of the {trial['profile']} profile ({trial['mode']}): {trial['steps']:,} steps"
        f" of {trial['nodes_per_step']:,.0f} nodes, {hours:.3g} h of steps at this row's {r['nodes_per_s']:,.0f} nodes/s"
    )
    if r.get("nodes_per_step") and round(r["nodes_per_step"]) != round(trial["nodes_per_step"]):
        line += f" (measured at {r['nodes_per_step']:,.0f} nodes a step)"
    gpu = r.get("gpu") or "the CPU"
    price, cur = trial["price_per_hour"], trial["currency"]
    if same_accelerator(trial["machine"], gpu):
        return line + f"; on {trial['machine']} at {price:g} {cur}/h: {hours * price:.3g} {cur}"
    line += f"; its machine is {trial['machine']}: measured on {gpu}"
    estimate = gpu_step_estimate(r, trial["machine"].split(" x ")[-1])
    if estimate is None:
        return line + ", so no price"
    # The row's nodes per step may differ from the trial's: the step scales with its nodes.
    steps = trial["steps"] * trial["nodes_per_step"] / r["nodes_per_step"]
    h = [s * steps / 3600 for s in estimate]
    return line + (
        f"; ESTIMATE there (kernels x datasheet bandwidth ratio, host as measured): {h[0]:.3g}-{h[1]:.3g} h,"
        f" {h[0] * price:.3g}-{h[1] * price:.3g} {cur} at {price:g} {cur}/h"
    )


def _mem_available() -> float | None:
    """MemAvailable of /proc/meminfo in bytes (None where there is none)."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return float(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def peak_line(probes: list[dict]) -> tuple[int, float, float] | None:
    """(n, peak, slope): the largest probe with a peak and the slope of peak over N through it and
    the next largest (through the origin where there is one probe), so that a peak at N is
    predicted as peak + slope (N - n); None before any probe has a peak."""
    measured = sorted((p["n"], p["peak_rss"]) for p in probes if p["peak_rss"])
    if not measured:
        return None
    (n1, m1), (n2, m2) = ([(0, 0.0)] + measured)[-2:]
    return n2, m2, (m2 - m1) / (n2 - n1)


def bracket(probes: list[dict]) -> tuple[int, int | None]:
    """(the largest fitting N or 0, the smallest N above it that did not fit or None)."""
    lo = max((p["n"] for p in probes if p["fits"]), default=0)
    return lo, min((p["n"] for p in probes if not p["fits"] and p["n"] > lo), default=None)


def next_probe(probes: list[dict], cap: float) -> int | None:
    """The next N of the --fit-gb search from the probes so far (each {"n", "peak_rss" (None
    where it died without one), "fits"}; the first is made by the caller), or None when the
    bracket between the largest fitting N and the smallest failing one above it is within 2% (or
    10,000). Above every fitting probe, the next N is the one peak_line puts at 99% of cap, at
    most twice the largest fitting N and at least 2% above it: doubling alone would jump past the
    cap (and past this machine's memory) where a probe just under it is what is asked. Below a
    failing one, bisection."""
    lo, hi = bracket(probes)
    step = max(10_000, lo // 50)
    if hi is not None:
        return None if hi - lo <= step else (lo + hi) // 2
    line = peak_line(probes)
    if line is None or line[2] <= 0:
        return 2 * lo
    n, peak, slope = line
    return min(2 * lo, max(lo + step, int(n + (0.99 * cap - peak) / slope)))


def _fit(args, common: list[str], revs: list[Revision], data_for) -> dict:
    """Largest full-batch N whose build + one step peaks under args.fit_gb GB, per revision: from
    args.fit_start, the probes next_probe picks until its bracket closes or args.fit_seconds run
    out after the first (the bracket is printed). A probe whose peak as peak_line predicts it would not fit in 90%
    of the memory the (shared) machine has available now is not run: the search stops there and
    prints the line's extrapolation to fit_gb instead, marked as such."""
    cap = args.fit_gb * 1e9
    out = {}
    step1 = [*common, "--steps", "1", "--peak-only"]  # the later --steps wins
    for rev in revs:
        n, probes, stopped = args.fit_start, [], None
        deadline = time.monotonic() + args.fit_seconds
        while n is not None and (not probes or time.monotonic() < deadline):  # the first whatever the time
            line = peak_line(probes)
            need = line[1] + line[2] * (n - line[0]) if line else 0.0
            avail = _mem_available()
            if avail is not None and need > 0.9 * avail:
                stopped = f"N = {n:,} would need ~{_gb(need)}, the machine has {_gb(avail)} available"
                print(f"  {rev.label}: not probing {stopped}", flush=True)
                break
            r = _run_child(
                ["--child", "fullbatch", str(n), "--repo", str(rev.repo), "--data", data_for(n), *step1],
                rev.pythonpath,
            )
            fits = "error" not in r and r["peak_rss"] <= cap
            probes.append({"n": n, "peak_rss": r.get("peak_rss"), "error": r.get("error"), "fits": fits})
            print(
                f"  {rev.label}: N = {n:,}: {_gb(r['peak_rss']) if 'peak_rss' in r else r['error']}"
                + (f", {r['step_cpu_s']:.1f} CPU-s per step" if "step_cpu_s" in r else ""),
                flush=True,
            )
            n = next_probe(probes, cap)
        lo, hi = bracket(probes)
        entry = {"largest_fitting": lo, "smallest_failing": hi, "probes": probes, "stopped": stopped}
        line = peak_line(probes)
        if sum(1 for p in probes if p["peak_rss"]) >= 2 and line[2] > 0:
            entry["extrapolated"] = int(line[0] + (cap - line[1]) / line[2])
        out[rev.label] = entry
        print(
            f"{rev.label}: largest full-batch N measured under {args.fit_gb} GB: {lo:,} (next failing: {hi})"
        )
        if "extrapolated" in entry:
            print(
                f"{rev.label}: linear extrapolation of the two largest probes' peaks to {args.fit_gb} GB: "
                f"N ~ {entry['extrapolated']:,} (an estimate, not a probe)"
            )
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--only", choices=["fullbatch", "minibatch", "partition"], action="append")
    p.add_argument("--sizes", type=int, nargs="+", help="N values (default: the table's sizes for each part)")
    p.add_argument("--data", default=os.environ.get("ZETA_SWARM_DATA", str(REPO / "data" / "odlyzko")))
    p.add_argument("--steps", type=int, default=0, help="timed steps (default: 20 mini-batch, 2 full-batch)")
    p.add_argument("--cluster-size", type=int, default=2000)
    p.add_argument("--work-dir", default=os.path.join(tempfile.gettempdir(), "zeta-swarm-bench"))
    p.add_argument(
        "--set",
        dest="extra",
        action="append",
        default=[],
        help="section.key=VALUE (YAML, as trainer train --set), e.g. train.recompute_activations=true",
    )
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (default: torch's choice)")
    p.add_argument(
        "--device", choices=["cpu", "cuda"], default="cpu", help="where the trials run (default cpu)"
    )
    p.add_argument(
        "--trial-cost",
        metavar="PROFILE",
        help="after each row, the hours (and on the team's own GPU, the price) of the optimizer steps of "
        "a phase-2 trial of this profile (configs/profiles/PROFILE.yaml) at the row's speed",
    )
    p.add_argument("--compare", metavar="REV", help="also measure the trainer of git revision REV")
    p.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="measure each N this many times, the revisions' order alternating; with --compare the "
        "ratio of each round and their median are printed (default 1)",
    )
    p.add_argument("--fit-gb", type=float, help="full-batch: find the largest N peaking under this many GB")
    p.add_argument("--fit-seconds", type=float, default=1800, help="time bound of the --fit-gb search")
    p.add_argument("--fit-start", type=int, default=250_000, help="first N of the --fit-gb search")
    p.add_argument("--out", help="JSON file of the figures (default bench/results/train-<UTC time>.json)")
    p.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    p.add_argument("--peak-only", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--repo", default=str(REPO), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.rounds < 1:
        p.error(f"--rounds must be at least 1, got {args.rounds}")
    if args.device == "cuda" and not args.child:
        import torch

        if not torch.cuda.is_available():
            p.error("--device cuda: torch sees no CUDA device on this machine")

    if args.child:
        import trainer  # noqa: F401  # the revision's package first, as its CLI: what it sets before torch loads

        if args.threads:
            os.environ["OPENBLAS_NUM_THREADS"] = str(args.threads)
            import torch

            torch.set_num_threads(args.threads)
        kind, n = args.child[0], int(args.child[1])
        extra = list(args.extra) + ([f"train.cpu_threads={args.threads}"] if args.threads else [])
        if kind in ("fullbatch", "minibatch"):
            steps = args.steps or (20 if kind == "minibatch" else 2)
            out = child_step(
                kind, args.repo, args.data, n, steps, args.cluster_size, extra, args.peak_only, args.device
            )
        else:
            out = child_partition(n, 500)
        print(json.dumps(out))
        return

    parts = args.only or ["fullbatch", "minibatch", "partition"]
    # Every input checked before anything is made (a worktree for --compare, synthetic data).
    trials = {}
    if args.trial_cost:
        from orchestrator.errors import ConfigError

        try:
            trials = {kind: phase_trial(args.trial_cost, kind) for kind in ("fullbatch", "minibatch")}
        except ConfigError as e:
            p.error(f"--trial-cost {args.trial_cost}: {str(e).splitlines()[0]}")
    last = 0  # the dataset's last zero: a sharded dataset of 1e7 real zeros needs no tail
    if {"fullbatch", "minibatch"} & set(parts):
        from trainer.errors import DataError

        try:
            last = _last_index(args.data)
        except DataError as e:
            p.error(f"--data: {e}")
    common = [
        "--steps",
        str(args.steps),
        "--cluster-size",
        str(args.cluster_size),
        "--threads",
        str(args.threads),
        "--device",
        args.device,
    ]
    for item in args.extra:
        common += ["--set", item]
    threads = args.threads or "torch default"
    load = os.getloadavg()
    print(
        f"bench/train.py on {os.cpu_count()} CPUs (load {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}), threads {threads}; "
        f"data {args.data}; settings {args.extra or 'defaults'}"
    )
    results: dict = {"argv": sys.argv[1:], "cpus": os.cpu_count(), "load_before": load, "runs": []}
    revs = [Revision(args.compare)] if args.compare else []
    revs.append(Revision(None))
    results["revisions"] = {r.label: r.rev or "this checkout" for r in revs}

    if trials:
        results["trial_cost"] = trials

    def data_for(n: int) -> str:
        if n + WINDOW + 1 + TAIL <= last:
            return args.data
        count = n + WINDOW + 1 + TAIL  # room for validation and the (unused) windows after training
        return synthetic_dataset(args.data, count, Path(args.work_dir) / f"synthetic-{count}")

    def measure(kind: str, sizes: list[int]) -> None:
        print(HEADER)
        for n in sizes:
            source = "real" if n + WINDOW + 1 <= last else "SYNTHETIC"  # the nodes trained on
            rounds = []
            for k in range(args.rounds):
                # Each round in the other order (A B, B A, ...): a drift of the host's speed over
                # the rounds weighs on both revisions alike.
                rows = {}
                for rev in revs if k % 2 == 0 else revs[::-1]:
                    r = _run_child(
                        ["--child", kind, str(n), "--repo", str(rev.repo), "--data", data_for(n), *common],
                        rev.pythonpath,
                    )
                    results["runs"].append(
                        {"kind": kind, "rev": rev.label, "round": k, "settings": args.extra, **r}
                    )
                    print(_row(n, source, rev.label, r), flush=True)
                    if args.trial_cost and "error" not in r:
                        print(trial_cost_line(trials[kind], r), flush=True)
                    rows[rev.label] = r
                rounds.append(rows)
                if args.rounds > 1 and k < args.rounds - 1:
                    print()
            if len(revs) == 2:
                summary = ratio_summary(rounds, revs[0].label, revs[1].label)
                results.setdefault("ratios", []).append({"kind": kind, "n": n, **summary})
                print(summary["line"], flush=True)

    try:
        if "fullbatch" in parts:
            print("\nfull-batch (all four losses; one step per epoch)")
            if args.fit_gb:
                results["fit"] = _fit(args, common, revs, data_for)
            else:
                measure("fullbatch", args.sizes or FULL_SIZES)
        if "minibatch" in parts:
            print(
                f"\nmini-batch (contiguous clusters of {args.cluster_size}, q = {_clusters_per_step(args.extra)}, rg off;"
                " one warm-up epoch)"
            )
            measure("minibatch", args.sizes or MINI_SIZES)
        if "partition" in parts:
            r = _run_child(["--child", "partition", "1000000"])
            results["partition"] = r
            print("\npartition of N = 1e6 zeros into k = 500 clusters (primes 2..13)")
            if "error" in r:
                print(f"failed: {r['error']}")
            else:
                print(f"contiguous: {r['contiguous_s'] * 1e3:.2f} ms, {r['contiguous_cut']} edges cut")
                print(
                    f"METIS:      {r['metis_s']:.2f} s, {r['metis_cut']} edges cut, {r['metis_runs']} runs of consecutive zeros"
                )
    finally:
        for rev in revs:
            rev.close()
    results["load_after"] = os.getloadavg()
    out = Path(
        args.out
        or REPO / "bench" / "results" / f"train-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}.json"
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1))
    print(f"\nfigures written to {out}")


if __name__ == "__main__":
    main()
