"""The loop: one step function for both teams, a falling loss, exact resume, SIGTERM, divergence, gs://."""

from __future__ import annotations

import copy
import json
import math
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from trainer.baselines import BASELINES
from trainer.config import load_config
from trainer.data.dataset import open_dataset
from trainer.training import StepEnd, Trial, _schedulers, make_optimizer, run_trial


def _quiet(_line: str) -> None:
    pass


def _rows(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def _without_timing(obj):
    if isinstance(obj, dict):
        return {
            k: _without_timing(v) for k, v in obj.items() if k not in ("seconds", "peak_mem_bytes", "cost")
        }
    if isinstance(obj, list):
        return [_without_timing(v) for v in obj]
    return obj


@pytest.mark.parametrize("partitioner", ["contiguous", "metis"])
def test_minibatch_with_all_clusters_per_step_equals_fullbatch_loss(tiny_config_file, partitioner):
    full = load_config(tiny_config_file, ["loss.rg_max_log2=3"])
    mini = load_config(
        tiny_config_file,
        [
            "loss.rg_max_log2=3",
            "train.mode=minibatch",
            "train.num_clusters=4",
            "train.clusters_per_step=4",
            "loss.rg_scope=cluster",
            f"train.partitioner={partitioner}",
        ],
    )
    ds = open_dataset(full.data.path)
    a, b = Trial(full, ds, torch.device("cpu")), Trial(mini, ds, torch.device("cpu"))
    b.model.load_state_dict(a.model.state_dict())
    (plan_b,) = b.epoch_plan(np.random.default_rng(0))
    batch_a, batch_b = a.batch((0,)), b.batch(plan_b)
    assert len(b.clusters) == 4 and batch_b.segments == batch_a.segments == [(0, 800)]
    total_a, parts_a = a.loss(a.model, batch_a, torch.Generator().manual_seed(5))
    total_b, parts_b = b.loss(b.model, batch_b, torch.Generator().manual_seed(5))
    assert all(parts_a[k].item() > 0 for k in ("mse", "gue_nll", "rg_penalty"))
    assert torch.equal(total_a, total_b)
    for k in parts_a:
        assert torch.equal(parts_a[k], parts_b[k]), k
    if partitioner == "metis":
        return
    # with q < k a step sees fewer nodes and one segment per run of adjacent clusters
    q2 = Trial(
        load_config(
            tiny_config_file,
            [
                "loss.rg_max_log2=3",
                "train.mode=minibatch",
                "train.num_clusters=4",
                "train.clusters_per_step=2",
                "loss.rg_scope=cluster",
            ],
        ),
        ds,
        torch.device("cpu"),
    )
    assert q2.batch((0, 2)).segments == [(0, 200), (200, 400)]
    assert q2.batch((1, 2)).segments == [(0, 400)]


def _reference_side(model, cfg):
    """The calls StepEnd stands for: an AdamW over the model's parameters and AveragedModel's update."""
    opt = make_optimizer(model.parameters(), cfg)
    ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(cfg.optim.ema_decay), use_buffers=True)
    return opt, ema


def _reference_step_end(model, opt, ema, grad_clip) -> float | None:
    norm = float(torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)) if grad_clip > 0 else None
    opt.step()
    ema.update_parameters(model)
    return norm


@pytest.mark.parametrize("grad_clip", [0.05, 0.0])
def test_the_step_end_is_clip_adamw_and_ema_bit_for_bit(tiny_config_file, grad_clip):
    # StepEnd per parameter (flat=False) against the calls it stands for, on two copies of one
    # trial's model stepped on the same batches: the first step (the EMA copies), clipped steps,
    # steps with the bottom half frozen (no gradients there), and AveragedModel's own update where
    # the tensors are not one group (a float64 buffer).
    cfg = load_config(tiny_config_file, [f"optim.grad_clip={grad_clip}"])
    trial = Trial(cfg, open_dataset(cfg.data.path), torch.device("cpu"))
    batch = trial.batch((0,))

    for mixed in (False, True):
        ma, mb = copy.deepcopy(trial.model), copy.deepcopy(trial.model)
        if mixed:
            for m in (ma, mb):
                m.register_buffer("extra", torch.zeros(3, dtype=torch.float64))
        oa, ea = _reference_side(ma, cfg)
        end = StepEnd(mb, cfg, flat=mixed)  # flat asked for where a float64 buffer keeps it per parameter
        assert not end.flat
        assert (end._lists is None) == mixed
        norms = []
        for step in range(5):
            if step == 3:
                ma.freeze_bottom_layers()
                mb.freeze_bottom_layers()
            oa.zero_grad(set_to_none=True)
            end.zero_grad()
            for model in (ma, mb):
                total, _ = trial.loss(model, batch, torch.Generator().manual_seed(step))
                total.backward()
            norms.append(_reference_step_end(ma, oa, ea, grad_clip))
            end()
            for (name, a), b in zip(ea.state_dict().items(), end.ema.state_dict().values(), strict=True):
                assert torch.equal(a, b), (mixed, step, name)
            for (name, a), b in zip(ma.state_dict().items(), mb.state_dict().values(), strict=True):
                assert torch.equal(a, b), (mixed, step, name)
        assert int(end.ema.n_averaged) == 5
        if grad_clip > 0:
            assert max(norms) > grad_clip  # the clip did clip
        assert not torch.equal(end.ema.module.state_dict()["head.weight"], mb.state_dict()["head.weight"])


@pytest.mark.parametrize("grad_clip", [0.05, 0.0])
def test_the_flat_step_end_is_the_same_update_up_to_rounding(tiny_config_file, grad_clip):
    # flat=True: the parameters, gradients and EMA as views into flat buffers. Against the
    # per-parameter calls on the same batches: the same weights and EMA up to float rounding (the
    # global norm in one pass, and fused AdamW's scalar path for what was a tensor's tail), and
    # bit for bit without the clip in the tensors that have no tail.
    cfg = load_config(tiny_config_file, [f"optim.grad_clip={grad_clip}"])
    trial = Trial(cfg, open_dataset(cfg.data.path), torch.device("cpu"))
    batch = trial.batch((0,))
    ma, mb = copy.deepcopy(trial.model), copy.deepcopy(trial.model)
    oa, ea = _reference_side(ma, cfg)
    end = StepEnd(mb, cfg, flat=True)
    assert end.flat
    params = list(mb.parameters())
    flat = end.optimizer.param_groups[0]["params"][0]
    assert len(end.optimizer.param_groups[0]["params"]) == 1
    for p in params:  # views of the flat parameter and gradient, each from a 64-byte boundary
        assert p.untyped_storage().data_ptr() == flat.untyped_storage().data_ptr()
        assert p.grad.untyped_storage().data_ptr() == flat.grad.untyped_storage().data_ptr()
        assert (p.data_ptr() - flat.data_ptr()) % 64 == 0
    same_weights = 0
    for step in range(6):
        oa.zero_grad(set_to_none=True)
        if step == 2:
            mb.zero_grad(set_to_none=True)  # something else dropped the views: zero_grad binds them again
        end.zero_grad()
        for model in (ma, mb):
            total, _ = trial.loss(model, batch, torch.Generator().manual_seed(step))
            total.backward()
        # The gradients, accumulated into the views as assigned: bit for bit the reference's while
        # the weights are (step 0 at least); once an update has rounded a weight differently, up to
        # the rounding that the weights' difference carries. Which step that is depends on the CPU:
        # none of these six on session 18's AVX2 core; on an Intel AVX-512 one the fourth with the
        # clip and the sixth without.
        same = all(torch.equal(a, b) for a, b in zip(ma.parameters(), mb.parameters(), strict=True))
        if same:
            same_weights += 1
            for a, b in zip(ma.parameters(), mb.parameters(), strict=True):
                assert torch.equal(a.grad, b.grad), step
        else:
            for a, b in zip(ma.parameters(), mb.parameters(), strict=True):
                torch.testing.assert_close(b.grad, a.grad, rtol=1e-4, atol=1e-8, msg=str(step))
        _reference_step_end(ma, oa, ea, grad_clip)
        end()
        assert all(p.grad is g for p, g in zip(params, end._grads, strict=True))
        for (name, a), b in zip(ma.state_dict().items(), mb.state_dict().values(), strict=True):
            torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-7, msg=f"{step} {name}")
            if grad_clip == 0 and same and a.numel() % 16 == 0:  # from the same weights and gradients
                assert torch.equal(a, b), (step, name)
        for (name, a), b in zip(ea.state_dict().items(), end.ema.state_dict().values(), strict=True):
            torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-7, msg=f"{step} {name}")
    assert same_weights >= 1
    assert not torch.equal(ma.state_dict()["head.weight"], trial.model.state_dict()["head.weight"])
    # The flat clip is clip_grad_norm_ on the flat parameter, bit for bit.
    for scale in (10.0, 1e-3):
        flat.grad.copy_(torch.randn(flat.shape, generator=torch.Generator().manual_seed(7)) * scale)
        twin = torch.nn.Parameter(flat.detach().clone())
        twin.grad = flat.grad.clone()
        want = torch.nn.utils.clip_grad_norm_([twin], 0.05)
        assert torch.equal(end.clip_flat(0.05), want) and torch.equal(flat.grad, twin.grad)
    # The gaps between the parameters stay zero.
    inside = torch.zeros_like(flat, dtype=torch.bool)
    for p in params:
        off = (p.data_ptr() - flat.data_ptr()) // 4
        inside[off : off + p.numel()] = True
    assert torch.count_nonzero(flat.detach()[~inside]) == 0

    # The checkpoint's optimizer state is per parameter, as the reference's, and loads back.
    sd, ref = end.optimizer_state_dict(), oa.state_dict()
    assert sd["param_groups"][0]["params"] == ref["param_groups"][0]["params"]
    assert sd["state"].keys() == ref["state"].keys()
    for i, state in ref["state"].items():
        for key, v in state.items():
            torch.testing.assert_close(sd["state"][i][key], v, rtol=1e-4, atol=1e-9)
    again = StepEnd(copy.deepcopy(trial.model), cfg, flat=True)
    again.load_optimizer_state_dict(ref)  # a per-parameter optimizer's, from an older trainer
    for key, v in again.optimizer.state_dict()["state"][0].items():
        expect = end.optimizer.state_dict()["state"][0][key]
        assert v.shape == expect.shape and (key == "step" or torch.count_nonzero(v) > 0)
    for i, state in again.optimizer_state_dict()["state"].items():
        for key, v in state.items():
            assert torch.equal(v, ref["state"][i][key]), (i, key)


def test_a_flat_step_end_refuses_a_state_with_frozen_parameters(tiny_config_file):
    cfg = load_config(tiny_config_file, [])
    trial = Trial(cfg, open_dataset(cfg.data.path), torch.device("cpu"))
    model = copy.deepcopy(trial.model)
    model.freeze_bottom_layers()
    assert not StepEnd(copy.deepcopy(model), cfg, flat=True).flat  # a frozen parameter: per parameter
    opt, _ = _reference_side(model, cfg)
    total, _ = trial.loss(model, trial.batch((0,)), torch.Generator().manual_seed(0))
    total.backward()
    opt.step()  # state for the parameters that train only
    end = StepEnd(copy.deepcopy(trial.model), cfg, flat=True)
    with pytest.raises(ValueError, match="frozen"):
        end.load_optimizer_state_dict(opt.state_dict())


def test_warmup_then_cosine_learning_rate():
    cfg = load_config(
        Path(__file__).parents[2] / "configs/trainer/defaults.yaml", ["optim.warmup_steps=4", "optim.lr=0.01"]
    )
    opt = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=cfg.optim.lr)
    per_step, plateau = _schedulers(opt, cfg, total_steps=24)
    lrs = []
    for _ in range(24):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        per_step.step()
    assert plateau is None
    assert lrs[0] == pytest.approx(0.002)  # 1/(warmup+1) of lr
    assert lrs[4] == pytest.approx(0.01)  # warmup done
    assert all(x >= y for x, y in zip(lrs[4:], lrs[5:], strict=False))  # cosine decays ...
    assert lrs[-1] < 0.001  # ... towards 1% of lr


def test_training_lowers_the_loss_and_writes_the_contract_files(tiny_config_file, tmp_path, monkeypatch):
    hp_file = tmp_path / "hypertune" / "metrics"
    monkeypatch.setenv("CLOUD_ML_HP_METRIC_FILE", str(hp_file))
    cfg = load_config(tiny_config_file, ["train.epochs=30", "train.eval_every=10", "optim.lr=0.01"])
    out, tb = tmp_path / "out", tmp_path / "tb"
    lines = []
    assert run_trial(cfg, str(out), tensorboard_dir=str(tb), echo=lines.append) == 0
    rows = _rows(out)
    assert [r["epoch"] for r in rows] == [10, 20, 30]
    assert rows[-1]["train/total"] < rows[0]["train/total"]  # it starts at (f), so it starts low
    assert rows[-1]["val_loss"] < rows[0]["val_loss"]
    assert rows[-1]["train/mse"] < rows[0]["train/mse"]
    per_set = {
        "extrapolation_error",
        "extrapolation_stderr",
        "best_baseline",
        "paired_diff",
        "paired_stderr",
        "skill",
        "nonpositive_spacings",
        "ks_wigner",
    } | set(BASELINES)
    contract = {"epoch", "step", "val_loss", "lr", "seconds", "peak_mem_bytes"} | {
        f"val_{k}" for k in per_set
    }
    assert contract | {f"train/{k}" for k in ("mse", "gue_nll", "gue_mmd", "rg_penalty")} <= set(rows[-1])
    assert "extrapolation_error" not in rows[-1]  # only the val windows are looked at while training
    final = json.loads((out / "final.json").read_text())
    assert final["status"] == "completed" and final["epochs_done"] == 30
    assert per_set | {f"val_{k}" for k in per_set} | {f"test_{k}" for k in per_set} <= set(final)
    assert final["val_extrapolation_error"] == rows[-1]["val_extrapolation_error"]
    for prefix in ("", "val_", "test_"):
        best = final[f"{prefix}best_baseline"]
        assert final[f"{prefix}{best}"] == min(final[f"{prefix}{k}"] for k in BASELINES)
        assert final[f"{prefix}skill"] == pytest.approx(
            1 - final[f"{prefix}extrapolation_error"] / final[f"{prefix}{best}"]
        )
    # Every window's error is kept, and the summaries are their means: paired comparisons and
    # seed averages downstream need nothing else.
    windows = final["windows"]
    assert [len(windows[s]["start"]) for s in ("val", "tune", "test")] == [2, 4, 4]
    assert np.mean(windows["tune"]["model"]) == pytest.approx(final["extrapolation_error"])
    assert np.mean(windows["test"]["baseline_smoothed"]) == pytest.approx(final["test_baseline_smoothed"])
    best = final["test_best_baseline"]
    diff = np.array(windows["test"]["model"]) - np.array(windows["test"][best])
    assert final["test_paired_diff"] == pytest.approx(diff.mean())
    assert final["test_paired_stderr"] == pytest.approx(diff.std(ddof=1) / 2)
    preds = json.loads((out / "predictions.json").read_text())
    assert len(preds["windows"]) == len(preds["test_windows"]) == 4 and all(
        len(w["pred_x"]) == len(w["true_x"]) == 50 for w in preds["windows"]
    )
    assert set(preds["horizon_curves"]) == {"tune", "test"}
    assert len(preds["horizon_curves"]["test"]["model"]) == 50
    assert len(preds["spacings_pred"]) == len(preds["spacings_true"]) == 200
    assert len(preds["block_variance"]["L"]) == len(preds["block_variance"]["pred"])
    assert yaml.safe_load((out / "config.yaml").read_text()) == cfg.model_dump(mode="json")
    assert sum(line.startswith("epoch ") for line in lines) == 30 and "ETA" in lines[-2]
    reported = [json.loads(line) for line in hp_file.read_text().splitlines()]
    assert float(reported[-1]["extrapolation_error"]) == pytest.approx(final["extrapolation_error"])
    assert list(tb.glob("events.out.tfevents.*"))
    # a rerun of a completed trial changes nothing
    before = (out / "final.json").read_text()
    assert run_trial(cfg, str(out), echo=_quiet) == 0
    assert (out / "final.json").read_text() == before


def _interrupt_at(monkeypatch, call: int):
    """Send this process a real SIGTERM during training step number `call` (1-based)."""
    original = Trial.loss
    calls = {"n": 0}

    def loss(self, model, batch, generator, horizon=1):
        calls["n"] += 1
        if calls["n"] == call:
            os.kill(os.getpid(), signal.SIGTERM)
        return original(self, model, batch, generator, horizon)

    monkeypatch.setattr(Trial, "loss", loss)


@pytest.mark.parametrize(
    ("overrides", "stop_at_step"),
    [
        ([], 2),  # full-batch: one step per epoch, interrupted in epoch 2
        (
            [
                "train.mode=minibatch",
                "train.num_clusters=4",
                "train.clusters_per_step=1",
                "loss.rg_scope=cluster",
                "model.dropout=0.2",
                "optim.scheduler=plateau",
            ],
            6,
        ),
        (
            [
                "train.mode=minibatch",
                "train.num_clusters=4",
                "train.clusters_per_step=2",
                "loss.rg_penalty_weight=0",
                "train.max_horizon=4",
                "train.freeze_bottom_layers_on_expand=true",
                "train.height_temperature=0.6",
            ],
            6,  # the second step of epoch 3 of 4: rolled out 4 steps, bottom layers frozen
        ),
    ],
    ids=["fullbatch", "minibatch-mid-epoch", "curriculum-mid-epoch"],
)
def test_interrupted_and_resumed_run_ends_bit_for_bit_like_an_uninterrupted_one(
    tiny_config_file, tmp_path, monkeypatch, overrides, stop_at_step
):
    cfg = load_config(tiny_config_file, overrides)
    whole, resumed = tmp_path / "whole", tmp_path / "resumed"
    assert run_trial(cfg, str(whole), echo=_quiet) == 0
    with monkeypatch.context() as m:
        _interrupt_at(m, stop_at_step)
        assert run_trial(cfg, str(resumed), echo=_quiet) == 143
    assert (resumed / "checkpoint.pt").exists() and not (resumed / "final.json").exists()
    lines = []
    assert run_trial(cfg, str(resumed), echo=lines.append) == 0
    assert any(line.startswith("resuming from") for line in lines)
    a = torch.load(whole / "checkpoint.pt", weights_only=True)
    b = torch.load(resumed / "checkpoint.pt", weights_only=True)
    for part in ("model", "ema"):
        assert a[part].keys() == b[part].keys()
        for k in a[part]:
            assert torch.equal(a[part][k], b[part][k]), (part, k)
    assert _without_timing(_rows(whole)) == _without_timing(_rows(resumed))
    for name in ("final.json", "predictions.json"):
        assert _without_timing(json.loads((whole / name).read_text())) == _without_timing(
            json.loads((resumed / name).read_text())
        )


def test_nan_loss_is_a_diverged_trial_with_exit_0(tiny_config_file, tmp_path, monkeypatch):
    original = Trial.loss

    def loss(self, model, batch, generator, horizon=1):
        total, parts = original(self, model, batch, generator, horizon)
        return total * float("nan"), parts

    monkeypatch.setattr(Trial, "loss", loss)
    out = tmp_path / "out"
    assert run_trial(load_config(tiny_config_file), str(out), echo=_quiet) == 0
    final = json.loads((out / "final.json").read_text())
    assert final["status"] == "diverged" and "non-finite loss at epoch 1" in final["reason"]
    assert "extrapolation_error" not in final


@pytest.mark.parametrize("lr", ["1e6", "1e30"])
def test_a_huge_learning_rate_diverges_with_exit_0(tiny_config_file, tmp_path, lr):
    # 1e30: the second step's predictions are NaN, and the MMD takes them (before it raised
    # "cannot convert float NaN to integer" counting its boxes: a failed trial, not a diverged one).
    out = tmp_path / "out"
    assert run_trial(load_config(tiny_config_file, [f"optim.lr={lr}"]), str(out), echo=_quiet) == 0
    final = json.loads((out / "final.json").read_text())
    assert final["status"] == "diverged" and final["reason"].startswith("non-finite")


def test_an_unexpected_error_is_a_failed_trial(tiny_config_file, tmp_path, monkeypatch):
    def boom(self):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(Trial, "val_batch", boom)
    out = tmp_path / "out"
    with pytest.raises(RuntimeError):
        run_trial(load_config(tiny_config_file), str(out), echo=_quiet)
    final = json.loads((out / "final.json").read_text())
    assert final["status"] == "failed" and final["reason"] == "RuntimeError: disk on fire"


def test_resume_with_a_different_config_is_refused(tiny_config_file, tmp_path, monkeypatch):
    from trainer.errors import ConfigError

    out = tmp_path / "out"
    with monkeypatch.context() as m:
        _interrupt_at(m, 1)
        assert run_trial(load_config(tiny_config_file), str(out), echo=_quiet) == 143
    with pytest.raises(ConfigError, match="different config"):
        run_trial(load_config(tiny_config_file, ["optim.lr=0.1"]), str(out), echo=_quiet)
    assert not (out / "final.json").exists()  # someone else's trial directory is left alone


def test_windows_beyond_the_dataset_are_a_config_error_before_anything_is_written(tiny_config_file, tmp_path):
    from trainer.errors import ConfigError

    out = tmp_path / "out"
    with pytest.raises(
        ConfigError,
        match=r"^data.windows: the last tune window ends at zero 31050, beyond the dataset's last zero 30000",
    ):
        run_trial(load_config(tiny_config_file, ["data.window_start=30000"]), str(out), echo=_quiet)
    assert not out.exists()


def test_test_windows_that_do_not_fit_are_a_config_error_before_anything_is_written(
    tiny_config_file, tmp_path
):
    from trainer.errors import ConfigError

    out = tmp_path / "out"
    with pytest.raises(ConfigError, match=r"^data.test_windows: only 5 disjoint windows of 50 fit"):
        run_trial(
            load_config(tiny_config_file, ["data.test_stop=4301", "data.test_windows=6"]),
            str(out),
            echo=_quiet,
        )
    assert not out.exists()


def test_zero_epochs_evaluates_the_untrained_model_which_is_baseline_smoothed(tiny_config_file, tmp_path):
    out = tmp_path / "out"
    assert run_trial(load_config(tiny_config_file, ["train.epochs=0"]), str(out), echo=_quiet) == 0
    final = json.loads((out / "final.json").read_text())
    assert final["status"] == "completed" and final["epochs_done"] == 0
    for prefix in ("", "val_", "test_"):
        assert final[f"{prefix}extrapolation_error"] == pytest.approx(
            final[f"{prefix}baseline_smoothed"], rel=1e-9, abs=0
        )
    assert [r["epoch"] for r in _rows(out)] == [0]
    assert (out / "predictions.json").exists()


def test_gs_output_dir_through_the_storage_emulator_with_resume(
    tiny_config_file, storage_emulator, monkeypatch
):
    from trainer import storage

    uri = "gs://zeta-swarm-test-data/trials/t1"
    cfg = load_config(tiny_config_file)
    with monkeypatch.context() as m:
        _interrupt_at(m, 3)
        assert run_trial(cfg, uri, echo=_quiet) == 143
    assert storage.exists(f"{uri}/checkpoint.pt") and not storage.exists(f"{uri}/final.json")
    lines = []
    assert run_trial(cfg, uri, tensorboard_dir=f"{uri}-tensorboard", echo=lines.append) == 0
    assert any(line.startswith("resuming from gs://") for line in lines)
    blobs = storage._client().list_blobs("zeta-swarm-test-data", prefix="trials/t1-tensorboard/")
    assert any("events.out.tfevents" in b.name for b in blobs)
    final = json.loads(storage.read_text(f"{uri}/final.json"))
    assert final["status"] == "completed" and final["epochs_done"] == 4
    rows = [json.loads(x) for x in storage.read_text(f"{uri}/metrics.jsonl").splitlines()]
    assert [r["epoch"] for r in rows] == [2, 4]
    assert yaml.safe_load(storage.read_text(f"{uri}/config.yaml"))["seed"] == cfg.seed
    assert json.loads(storage.read_text(f"{uri}/predictions.json"))["windows"]


def test_sigterm_to_a_real_trainer_process_checkpoints_and_exits_143(tiny_config_file, tmp_path):
    out = tmp_path / "out"
    cmd = [
        str(Path(sys.executable).parent / "trainer"),
        "train",
        "--config",
        str(tiny_config_file),
        "--output-dir",
        str(out),
        "--set",
        "train.epochs=400",
        "--set",
        "train.eval_every=400",
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        for line in proc.stdout:
            if line.startswith("epoch 2/400"):
                proc.send_signal(signal.SIGTERM)
                break
        rest = proc.communicate(timeout=120)[0]
    finally:
        proc.kill()
    assert proc.returncode == 143, rest
    assert "SIGTERM: checkpoint written" in rest
    state = torch.load(out / "checkpoint.pt", weights_only=True)
    assert 2 <= state["epoch"] < 400 and not (out / "final.json").exists()


def test_mmd_reference_data_is_real_spacings_just_before_training(tiny_config_file):
    cfg = load_config(tiny_config_file, ["loss.mmd_reference=data"])
    trial = Trial(cfg, open_dataset(cfg.data.path), torch.device("cpu"))
    ref = trial.train_losses.mmd_reference
    assert ref.shape == (
        cfg.data.train_start - 1 - 1,
    )  # every spacing s_1 .. s_{train_start - 2} before n = 2001
    assert abs(ref.double().mean().item() - 1.0) < 0.01 and ref.min().item() > 0


def test_cluster_nodes_are_built_once_and_joined_like_a_fresh_build(tiny_config_file):
    cfg = load_config(
        tiny_config_file,
        [
            "train.mode=minibatch",
            "train.num_clusters=4",
            "train.clusters_per_step=2",
            "loss.rg_penalty_weight=0",
        ],
    )
    trial = Trial(cfg, open_dataset(cfg.data.path), torch.device("cpu"))
    joined = trial.batch((0, 2)).nodes
    assert set(trial._cluster_nodes) == {0, 2}
    fresh = trial._nodes_of([run for c in (0, 2) for run in trial.clusters[c]])
    np.testing.assert_array_equal(joined.index, fresh.index)
    np.testing.assert_array_equal(joined.table, fresh.table)
    assert joined.segments == fresh.segments
    np.testing.assert_allclose(joined.features, fresh.features, rtol=0, atol=1e-6)
    np.testing.assert_allclose(joined.base, fresh.base, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(joined.target, fresh.target)
    # A later step reuses cluster 2 (the same object) and builds only cluster 1.
    kept = trial._cluster_nodes[2]
    trial.batch((1, 2))
    assert trial._cluster_nodes[2] is kept and list(trial._cluster_nodes) == [0, 1, 2]
    assert trial._cluster_bytes == sum(n.nbytes for n in trial._cluster_nodes.values())
    assert trial.node_cache_shortfall() is None  # every cluster built is kept
    # With no memory for it, nothing is kept, and the running byte count says so.
    trial.cfg.train.node_cache_mb = 0
    trial.batch((0, 3))
    assert not trial._cluster_nodes and trial._cluster_bytes == 0
    # ... and so does the shortfall: 0 of the 4 clusters built, and the MiB that would keep them.
    need = math.ceil(sum(trial._nodes_of(c).nbytes for c in trial.clusters) / 2**20)
    assert trial.node_cache_shortfall() == (
        "node cache: train.node_cache_mb=0 keeps 0 of 4 clusters' nodes, the rest are built again"
        f" when drawn; train.node_cache_mb={need} would keep them all"
    )


def test_a_node_cache_too_small_for_the_clusters_is_reported_once(tiny_config_file, tmp_path):
    overrides = ["train.mode=minibatch", "train.num_clusters=4", "train.clusters_per_step=2"]
    lines = []
    cfg = load_config(tiny_config_file, [*overrides, "train.node_cache_mb=0", "loss.rg_penalty_weight=0"])
    assert run_trial(cfg, str(tmp_path / "small"), echo=lines.append) == 0
    (line,) = [x for x in lines if x.startswith("node cache: ")]
    assert "keeps 0 of 4 clusters' nodes" in line
    lines.clear()
    cfg = load_config(tiny_config_file, [*overrides, "loss.rg_penalty_weight=0"])  # 512 MiB holds them
    assert run_trial(cfg, str(tmp_path / "enough"), echo=lines.append) == 0
    assert not [x for x in lines if x.startswith("node cache: ")]


def test_damaged_final_json_and_metrics_lines_are_derived_again(tiny_config_file, tmp_path):
    cfg = load_config(tiny_config_file, ["train.epochs=2", "train.eval_every=1"])
    out = tmp_path / "out"
    assert run_trial(cfg, str(out), echo=_quiet) == 0
    good = json.loads((out / "final.json").read_text())
    (out / "final.json").write_text("[garbage")
    with (out / "metrics.jsonl").open("a") as f:
        f.write("not json\n[1, 2]\n")
    lines = []
    assert run_trial(cfg, str(out), echo=lines.append) == 0
    assert any("final.json is damaged" in line for line in lines)
    again = json.loads((out / "final.json").read_text())
    assert _without_timing(again) == _without_timing(good)
    assert [r["epoch"] for r in _rows(out)] == [1, 2]
