"""The step benchmarks run end to end on a small real dataset and print what docs/speed.md quotes
(no figure is judged here: speed lives in bench/, never in a timed test)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def _run(args: list[str], env: dict[str, str] | None = None) -> str:
    proc = subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, cwd=REPO, timeout=300, env=env
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


def test_profile_step_prints_every_part_of_a_step(odlyzko_small):
    out = _run(
        ["bench/profile_step.py", "--n", "4000", "--steps", "2", "--top", "3", "--data", str(odlyzko_small)]
    )
    assert re.search(r"2 steps, 8,000 nodes: [\d,]+ nodes/s wall", out), out[:500]  # all 4,000 each step
    number = r"\d+\.\d"
    parts = (
        rf"batch {number}, forward {number}, losses {number}, backward {number}, clip, AdamW, EMA {number}"
    )
    assert re.search("CPU ms per step, by part: " + parts, out), out[:500]
    if shutil.which("g++"):  # the kernels' own share of the step, layers first (the largest)
        kernels = re.search(r"CPU ms per step inside the native kernels: (.*)", out)
        assert kernels, out[:800]
        assert re.match(r"layer_(backward|forward) \d+\.\d\d, ", kernels.group(1)), kernels.group(1)
        assert re.search(
            rf"; all of them {number} of {number} \(\d+%\), outside them -?{number}$", kernels.group(1)
        )
    cold_warm = (
        rf"CPU ms of clip, AdamW, EMA right after the backward's kernels {number}\d, and run again at once"
    )
    assert re.search(cold_warm + rf" on the caches it left warm {number}\d \(medians of 2 steps\)", out), out[
        :1200
    ]
    # Team 2's config: no rg_penalty; the other three timed on their own.
    terms = r"mse \d+\.\d\d, gue_nll \d+\.\d\d, gue_mmd \d+\.\d\d, rg_penalty off"
    assert re.search("CPU ms of each loss alone, forward and backward: " + terms, out), out[:800]
    assert "one evaluation of the val windows" in out


def _refused(args: list[str]) -> str:
    """A bench script's stderr for bad input: exit 2 and an error line, no traceback."""
    proc = subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    return proc.stderr


def test_profile_step_refuses_a_missing_dataset_and_a_bad_setting_in_one_line(tmp_path, odlyzko_small):
    missing = _refused(["bench/profile_step.py", "--data", str(tmp_path / "none")])
    assert f"{tmp_path / 'none'}: no such dataset directory" in missing
    unknown = _refused(["bench/profile_step.py", "--data", str(odlyzko_small), "--set", "model.nosuch=1"])
    assert "model.nosuch" in unknown


@pytest.mark.skipif(shutil.which("g++") is None, reason="the native kernels need g++ (none on PATH here)")
def test_kernel_clock_times_each_native_call_and_puts_the_library_back():
    KernelClock = _bench("profile_step").KernelClock
    import numpy as np

    from trainer import fused

    lib = fused.library()
    before = lib.zs_neighbour_table
    with KernelClock() as clock:
        assert lib.zs_neighbour_table is not before
        table = fused.neighbour_table(np.arange(100, dtype=np.int64), [2, 3])
    assert lib.zs_neighbour_table is before  # the real function again, not the timer
    assert set(clock.seconds) == {"neighbour_table"} and clock.seconds["neighbour_table"] >= 0
    assert table[0].tolist() == [-1, -1] and table[5].tolist() == [3, 2]  # n - 2, n - 3 (causal)


def test_train_bench_counts_the_model_flops_and_writes_its_figures(odlyzko_small, tmp_path):
    out_file = tmp_path / "figures.json"
    args = ["--only", "minibatch", "--sizes", "4000", "--steps", "2", "--cluster-size", "1000"]
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}  # as from a fresh shell
    bench = ["bench/train.py", *args, "--threads", "1", "--data", str(odlyzko_small), "--out", str(out_file)]
    _run(bench, env=env)
    figures = json.loads(out_file.read_text())
    (row,) = [r for r in _rows(figures) if r.get("mode") == "minibatch"]
    assert row["omp_wait_policy"] == "PASSIVE"  # what this trainer sets, not the bench's parent
    assert row["nodes_per_step"] == 4000  # 4 clusters of 1000, all in one step (q = min(4, 5))
    # hidden 64, depth 3: the two 64x64 maps of each layer alone are 3 x 2 x 2 x 64 x 64 FLOPs
    # forward and twice that backward; the counter must see at least those, and not 10x more.
    assert 3 * 3 * 2 * 2 * 64 * 64 <= row["model_flops_per_node"] <= 10 * 3 * 3 * 2 * 2 * 64 * 64
    assert 0 < row["roofline"] < 1 and row["peak_rss"] > 0
    assert row["flops_counted_nodes"] == 4000  # the whole batch: under FLOP_COUNT_NODES
    if shutil.which("g++"):  # the core's FMA limit (bench/fma_peak.cpp) bounds what the model achieves
        assert row["fma_peak_flops"] > 1e9 and 0 < row["of_fma_peak"] < 1
    else:
        assert row["fma_peak_flops"] is None


def test_train_bench_compares_two_revisions_round_by_round(odlyzko_small, tmp_path):
    """--compare REV --rounds 2: a git worktree of REV measured like this checkout, the order
    alternating (REV first, then this first), each round's ratio printed and their median."""
    out_file = tmp_path / "figures.json"
    args = ["--only", "minibatch", "--sizes", "2000", "--steps", "1", "--cluster-size", "1000"]
    bench = ["bench/train.py", *args, "--threads", "1", "--data", str(odlyzko_small), "--out", str(out_file)]
    out = _run([*bench, "--compare", "HEAD", "--rounds", "2"])
    figures = json.loads(out_file.read_text())
    head = next(label for label in figures["revisions"] if label != "this")
    order = [(r["round"], r["rev"]) for r in figures["runs"]]
    assert order == [(0, head), (0, "this"), (1, "this"), (1, head)]
    assert all("error" not in r and r["nodes_per_step"] == 2000 for r in figures["runs"])
    (summary,) = figures["ratios"]
    per_cpu = {(r["round"], r["rev"]): r["nodes_per_cpu_s"] for r in figures["runs"]}
    want = [per_cpu[(k, "this")] / per_cpu[(k, head)] for k in (0, 1)]
    assert summary["ratios"] == pytest.approx(want) and summary["median"] == pytest.approx(sum(want) / 2)
    assert re.search(
        rf"this / {head}, nodes per CPU-second: [\d.]+x, [\d.]+x; median [\d.]+x of 2 rounds", out
    ), out
    # The worktree is gone afterwards.
    listed = subprocess.run(["git", "worktree", "list"], capture_output=True, text=True, cwd=REPO).stdout
    assert "zeta-bench-" not in listed


def _bench(name: str):
    """bench/<name>.py as a module (its functions, not its command)."""
    import importlib

    sys.path.insert(0, str(REPO / "bench"))
    try:
        return importlib.import_module(name)
    finally:
        sys.path.remove(str(REPO / "bench"))


def test_flop_count_on_the_leading_nodes_is_the_whole_batch_count_per_node(odlyzko_small):
    # A full-batch N of ~14M is counted on its first 2^21 nodes (the eager twin the count runs
    # would not fit beside the trainer's step); per node that is the same count, as here on a
    # mini-batch of 4 clusters (unchunked: every product and gather scales with the rows).
    import numpy as np

    train = _bench("train")
    trial, _ = _bench("profile_step").build_trial(
        "minibatch", 4000, [], data=str(odlyzko_small), cluster_size=1000
    )
    batch = trial.batch(trial.epoch_plan(np.random.default_rng(0))[0])
    assert len(batch.nodes) == 4000
    lead = train.leading_nodes(trial, batch, 1500)
    assert lead.x.shape[0] == len(lead.graph) == 1500 and train.leading_nodes(trial, batch, 4000) is batch
    assert train._model_flops(trial, lead) / 1500 == train._model_flops(trial, batch) / 4000


def test_trial_cost_counts_a_phase_2_trial_of_the_cloud_profile_from_its_config_files():
    train = _bench("train")
    # configs/profiles/cloud.yaml: Team 2 4 epochs of 10,000 clusters of 1,000 zeros, 50 a step;
    # Team 1 4 epochs x epoch_scale 200 of one step over 500,000 zeros.
    mini, full = train.phase_trial("cloud", "minibatch"), train.phase_trial("cloud", "fullbatch")
    assert (mini["steps"], mini["nodes_per_step"], mini["nodes"]) == (800, 50_000, 40_000_000)
    assert (full["steps"], full["nodes_per_step"], full["nodes"]) == (800, 500_000, 400_000_000)
    assert mini["machine"] == "g2-standard-8 + 1 x NVIDIA_L4" and mini["price_per_hour"] == 1.0
    row = {"nodes_per_s": 400_000.0, "nodes_per_step": 10_000}  # a CPU row at the bench's own batch
    line = train.trial_cost_line(mini, row)
    assert "800 steps of 50,000 nodes, 0.0278 h of steps at this row's 400,000 nodes/s" in line
    assert "(measured at 10,000 nodes a step)" in line and line.endswith("measured on the CPU, so no price")
    on_l4 = train.trial_cost_line(mini, {**row, "nodes_per_step": 50_000, "gpu": "NVIDIA L4"})
    assert "measured at" not in on_l4 and on_l4.endswith("at 1 USD/h: 0.0278 USD")
    a100 = "a2-ultragpu-1g + 1 x NVIDIA_A100_80GB"
    assert train.same_accelerator(a100, "NVIDIA A100-SXM4-80GB")
    assert not train.same_accelerator(a100, "NVIDIA A100-SXM4-40GB")
    assert not train.same_accelerator(mini["machine"], "NVIDIA L40S")  # not an L4
    assert not train.same_accelerator(mini["machine"], "NVIDIA H200")


def test_a_trial_measured_on_another_gpu_is_priced_as_an_estimate_from_its_kernels_and_bandwidths():
    train = _bench("train")
    mini = train.phase_trial("cloud", "minibatch")  # 800 steps of 50,000 nodes on an L4
    # A step of 50,000 nodes on an H200: 20 ms of wall time, 4 ms of it the GPU's kernels.
    h200 = {"nodes_per_s": 2.5e6, "nodes_per_step": 50_000, "step_s": 0.02, "gpu": "NVIDIA H200"}
    row = {**h200, "gpu_busy_s_per_step": 0.004}
    # The L4 streams 16x slower (0.3 against 4.8 TB/s): kernels 64 ms, the host's 16 ms beside or after.
    assert train.gpu_step_estimate(row, "NVIDIA_L4") == pytest.approx((0.064, 0.080))
    line = train.trial_cost_line(mini, row)
    assert "measured on NVIDIA H200; ESTIMATE there" in line
    assert line.endswith(": 0.0142-0.0178 h, 0.0142-0.0178 USD at 1 USD/h")  # 800 x 64-80 ms
    # A100 80GB: kernels 9.4 ms, under the host's 16 ms, but never a shorter step than the H200's.
    assert train.gpu_step_estimate(row, "NVIDIA_A100_80GB") == pytest.approx(
        (0.02, 0.016 + 0.004 * 4.8 / 2.039)
    )
    # Measured on the slower GPU, the faster one's step is the longer of host and kernels at least.
    on_l4 = {**row, "gpu": "NVIDIA L4", "gpu_busy_s_per_step": 0.016}
    assert train.gpu_step_estimate(on_l4, "NVIDIA H200") == pytest.approx((0.004, 0.005))
    # Without the busy time, or a GPU outside the datasheet table, no estimate and no price.
    assert train.gpu_step_estimate(h200, "NVIDIA_L4") is None
    assert train.gpu_step_estimate({**row, "gpu": "Tesla T4"}, "NVIDIA_L4") is None
    assert train.trial_cost_line(mini, h200).endswith("measured on NVIDIA H200, so no price")
    # Names as torch and as machine specs spell them; an L40S is not an L4.
    assert train.datasheet_bandwidth("NVIDIA A100-SXM4-80GB") == train.datasheet_bandwidth("NVIDIA_A100_80GB")
    assert train.datasheet_bandwidth("NVIDIA A100-PCIE-40GB") == 1.555e12
    assert train.datasheet_bandwidth("NVIDIA L40S") is None


def test_train_bench_refuses_an_unknown_profile_a_missing_gpu_and_missing_data_in_one_line(tmp_path):
    for args, says in (
        (["--only", "partition", "--trial-cost", "nosuch"], "--trial-cost nosuch: "),
        (["--only", "partition", "--device", "cuda"], "--device cuda: torch sees no CUDA device"),
        (["--only", "minibatch", "--data", str(tmp_path / "none")], f"--data: {tmp_path / 'none'}: "),
    ):
        if "--device" in args and _cuda():
            continue  # a GPU machine has the device; the CUDA test below runs there
        assert says in _refused(["bench/train.py", *args])


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


@pytest.mark.gpu
@pytest.mark.skipif(
    not _cuda(), reason="needs a CUDA device: runs on GPU machines (the device tool, a GPU workstation)"
)
def test_train_bench_measures_a_step_on_cuda_with_its_gpu_peak_and_busy_time(odlyzko_small, tmp_path):
    out_file = tmp_path / "figures.json"
    args = [
        "--only",
        "minibatch",
        "--sizes",
        "4000",
        "--steps",
        "2",
        "--cluster-size",
        "1000",
        "--device",
        "cuda",
    ]
    out = _run(
        [
            "bench/train.py",
            *args,
            "--trial-cost",
            "cloud",
            "--data",
            str(odlyzko_small),
            "--out",
            str(out_file),
        ]
    )
    runs = _rows(json.loads(out_file.read_text()))
    (row,) = [r for r in runs if r.get("mode") == "minibatch" and "nodes_per_s" in r]  # not trial_cost's
    assert row["device"] == "cuda" and row["gpu"] and row["gpu_peak_bytes"] > 0
    assert row["fma_peak_flops"] is None and 0 < row["roofline"]
    assert 0 < row["gpu_busy_s_per_step"] and row["gpu_kernels_per_step"] >= 1
    assert "a phase-2 trial of the cloud profile (minibatch): 800 steps of 50,000 nodes" in out
    # Priced on an L4 itself, estimated on a GPU of the datasheet table, unpriced elsewhere.
    assert re.search(
        r"1 x NVIDIA_L4(: measured on [^;]+(; ESTIMATE there|, so no price)| at 1 USD/h)", out
    ), out


def test_train_bench_ratio_leaves_out_rounds_with_a_failed_run():
    ratio_summary = _bench("train").ratio_summary
    ok = {"a": {"nodes_per_cpu_s": 10.0}, "b": {"nodes_per_cpu_s": 90.0}}
    failed = {"a": {"nodes_per_cpu_s": 10.0}, "b": {"error": "killed"}}
    slow = {"a": {"nodes_per_cpu_s": 20.0}, "b": {"nodes_per_cpu_s": 80.0}}
    s = ratio_summary([ok, failed, slow], "a", "b")
    assert s["ratios"] == [9.0, 4.0] and s["median"] == 6.5
    assert s["line"] == "b / a, nodes per CPU-second: 9.00x, 4.00x; median 6.50x of 2 rounds"
    assert ratio_summary([failed], "a", "b")["median"] is None


def test_fit_search_probes_measure_the_peak_without_the_flop_count(odlyzko_small, tmp_path):
    """--fit-gb: each probe is a real full-batch trial (build + a step) whose peak is measured;
    the eager FLOP count, which needs more memory than the step at large N, is not run."""
    out_file = tmp_path / "figures.json"
    args = ["--only", "fullbatch", "--fit-gb", "100", "--fit-start", "3000", "--fit-seconds", "0"]
    _run(["bench/train.py", *args, "--threads", "1", "--data", str(odlyzko_small), "--out", str(out_file)])
    (fit,) = json.loads(out_file.read_text())["fit"].values()
    (probe,) = fit["probes"]  # the first probe runs whatever the time; no time is left for a second
    assert probe["n"] == 3000 and probe["fits"] and 0 < probe["peak_rss"] < 100e9
    assert fit["largest_fitting"] == 3000 and fit["smallest_failing"] is None
    # What a probe's child reports: the peak and the step, no FLOP count (a count would be there).
    child = ["--child", "fullbatch", "3000", "--steps", "1", "--threads", "1", "--peak-only"]
    figures = json.loads(_run(["bench/train.py", *child, "--data", str(odlyzko_small)]).splitlines()[-1])
    assert figures["peak_rss"] > 0 and figures["step_cpu_s"] > 0 and "model_flops_per_node" not in figures


def test_fit_search_aims_just_under_the_cap_instead_of_doubling_past_it():
    next_probe = _bench("train").next_probe
    gb, cap = 1e9, 20e9

    def probe(n, peak_gb):
        peak = None if peak_gb is None else peak_gb * gb
        return {"n": n, "peak_rss": peak, "fits": peak is not None and peak <= cap}

    # Far under the cap: doubling (session 6's peaks on this machine).
    probes = [probe(2_000_000, 3.23)]
    assert next_probe(probes, cap) == 4_000_000
    probes.append(probe(4_000_000, 6.17))
    assert next_probe(probes, cap) == 8_000_000
    # Doubling to 16M would need ~25.8 GB: the line through 4M and 8M puts 99% of 20 GB at 14.57M.
    probes.append(probe(8_000_000, 11.33))
    aimed = next_probe(probes, cap)
    slope = (11.33 - 6.17) * gb / 4_000_000
    assert aimed == int(8_000_000 + (0.99 * cap - 11.33 * gb) / slope) and 14_500_000 < aimed < 14_600_000
    # Just under the cap: 2% above it next; over the cap there, the bracket is closed.
    probes.append(probe(aimed, 19.7))
    step = aimed // 50
    assert next_probe(probes, cap) == aimed + step
    probes.append(probe(aimed + step, 20.1))
    assert next_probe(probes, cap) is None
    # A failing probe above: bisection; a first probe that dies without a peak: bisection below it.
    assert next_probe([probe(8_000_000, 11.33), probe(16_000_000, None)], cap) == 12_000_000
    assert next_probe([probe(2_000_000, None)], cap) == 1_000_000
    # One probe: the line through the origin.
    assert next_probe([probe(1_000_000, 19.0)], cap) == int(
        1_000_000 + (0.99 * cap - 19 * gb) / (19 * gb / 1e6)
    )


@pytest.mark.skipif(shutil.which("g++") is None, reason="builds the CPU kernels: needs g++")
def test_kernel_ab_runs_the_step_on_two_builds_in_turn(odlyzko_small, tmp_path):
    args = ["bench/kernel_ab.py", "HEAD", "--blocks", "2", "--steps", "1", "--n", "4000"]
    out = _run([*args, "--data", str(odlyzko_small)])
    assert re.findall(r"block (\d)/2: A \d+\.\d\d, B \d+\.\d\d CPU ms a step", out) == ["1", "2"], out
    assert "A = HEAD's kernels, B = the working tree's" in out, out
    # Both builds ran the step's kernels: each named kernel has a time on both sides.
    for name in ("step", "layer_forward", "layer_backward", "encoder_forward", "fgt_mmd_float"):
        assert re.search(
            rf"^{name} +A +\d+\.\d\d  B +\d+\.\d\d  A - B paired median +-?\d+\.\d\d  B faster in [0-2]/2$",
            out,
            re.M,
        ), (name, out)
    # A revision without a kernel of the working tree's (e517358 had neither the head kernels nor
    # the MMD's float entry) still runs: that kernel is the working tree's on both sides, and the
    # output says so. (A shallow clone has no e517358: then only the runs above.)
    older = "e517358"
    known = subprocess.run(["git", "cat-file", "-e", f"{older}^{{commit}}"], cwd=REPO, capture_output=True)
    if known.returncode == 0:
        out = _run([*args[:1], older, *args[2:], "--data", str(odlyzko_small)])
        kernels = "zs_fgt_mmd_float, zs_head_backward, zs_head_forward"
        lacks = f"({older} has no {kernels}: the working tree's runs on both sides)"
        assert lacks in out, out
    assert "not a revision" in _refused(["bench/kernel_ab.py", "no-such-rev", "--data", str(odlyzko_small)])
    assert "none" in _refused(["bench/kernel_ab.py", "HEAD", "--data", str(tmp_path / "none")])


@pytest.mark.parametrize("threads", [1, 2])
def test_layer_kernel_bench_times_one_fused_layer(threads):
    out = _run(["bench/layer_kernel.py", "--rows", "1200", "--reps", "3", "--threads", str(threads)])
    assert f"one fused layer: 1,200 rows, hidden 64, K = 6, 3 calls each, {threads} thread" in out, out
    for name in ("forward", "backward"):
        assert re.search(rf"{name}: min \d+\.\d{{3}} ms, median \d+\.\d{{3}} ms", out), out
    assert ("of the FMA limit" in out) == (threads == 1 and shutil.which("g++") is not None), out


def _rows(figures) -> list[dict]:
    """Every dict holding a `mode` in the bench's JSON, wherever it nests them."""
    if isinstance(figures, dict):
        found = [figures] if "mode" in figures else []
        return found + [r for v in figures.values() for r in _rows(v)]
    if isinstance(figures, list):
        return [r for v in figures for r in _rows(v)]
    return []
