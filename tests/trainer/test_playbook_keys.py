"""The playbook's trainer keys: the horizon curriculum and its rollout loss, freezing the bottom
layers, height-tempered cluster sampling, final.json's gates and cost, and their validation."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import yaml
from click.testing import CliRunner
from trainer.cli import main
from trainer.config import load_config
from trainer.data.dataset import open_dataset
from trainer.extrapolation import gates
from trainer.features import position_features, read_fluctuations
from trainer.outputs import TrialOutputs
from trainer.training import Trial, horizon_at, horizon_stages, run_trial

MINIBATCH = [
    "train.mode=minibatch",
    "train.num_clusters=4",
    "train.clusters_per_step=2",
    "loss.rg_penalty_weight=0",
]


def _quiet(_line: str) -> None:
    pass


def _trial(config_file, overrides=()) -> Trial:
    cfg = load_config(config_file, list(overrides))
    return Trial(cfg, open_dataset(cfg.data.path), torch.device("cpu"))


def test_the_curriculum_doubles_in_equal_parts_and_ends_at_max_horizon():
    assert horizon_stages(1) == [1]
    assert horizon_stages(16) == [1, 2, 4, 8, 16]
    assert horizon_stages(48) == [1, 2, 4, 8, 16, 32, 48]
    assert [horizon_at(e, 32, 1) for e in range(32)] == [1] * 32
    # 32 epochs, 6 stages: 5 or 6 epochs each, in order
    schedule = [horizon_at(e, 32, 32) for e in range(32)]
    assert schedule == [1] * 5 + [2] * 5 + [4] * 6 + [8] * 5 + [16] * 5 + [32] * 6
    schedule = [horizon_at(e, 40, 16) for e in range(40)]
    assert schedule == [1] * 8 + [2] * 8 + [4] * 8 + [8] * 8 + [16] * 8
    # fewer epochs than stages: stages are skipped, the last epoch still trains at max_horizon
    assert [horizon_at(e, 3, 48) for e in range(3)] == [4, 16, 48]


def test_horizon_one_is_the_one_step_loss(tiny_config_file):
    trial = _trial(tiny_config_file)
    batch = trial.batch((0,))
    total, parts = trial.loss(trial.model, batch, torch.Generator().manual_seed(0))
    pred = trial.forward(trial.model, batch)
    expected_total, expected = trial.train_losses(pred, batch, torch.Generator().manual_seed(0))
    assert torch.equal(total, expected_total) and all(torch.equal(parts[k], expected[k]) for k in parts)
    assert torch.equal(trial.rollout_mse(trial.model, batch, pred, 1), parts["mse"])


def _perturbed(trial: Trial) -> None:
    """Weights far from the residual head's zero start, so a rollout differs from teacher forcing."""
    gen = torch.Generator().manual_seed(4)
    with torch.no_grad():
        for p in trial.model.parameters():
            p.add_(0.2 * torch.randn(p.shape, generator=gen))
    trial.model.eval()


def _hand_rollout(trial: Trial, batch, horizon: int) -> float:
    """The rollout loss, node by node and trajectory by trajectory, from float64 positions."""
    win = trial.cfg.model.window
    index = batch.nodes.index
    lo, hi = int(index[0]) - win, int(index[-1]) + 2
    delta = read_fluctuations(trial.dataset, lo, hi)  # delta_q at delta[q - lo]
    in_batch = set(index.tolist())
    f_next = batch.nodes.base + delta[index - lo] - 1.0  # base = 1 + f_{n+1} - delta_n
    predicted: list[dict[int, float]] = [{}]  # predicted[j][q]: delta_q predicted by the rollout of length j
    errors = []
    for j in range(1, horizon + 1):
        feats = batch.x.clone()
        known = np.empty((len(index), win + 1))
        for row, n in enumerate(index.tolist()):
            start = n + 1 - j  # the trajectory starts from the true zeros up to here
            segment_start = n
            while segment_start - 1 in in_batch:
                segment_start -= 1
            for col, q in enumerate(range(n - win, n + 1)):
                t = q - start  # zero q is the t-th of the trajectory; its predictor is node q - 1
                rolled = t >= 1 and q - 1 >= segment_start  # zeros before the segment stay true
                known[row, col] = predicted[t][q] if rolled else delta[q - lo]
        feats[:, : win + 1] = torch.from_numpy(position_features(known, win).reshape(len(index), win + 1))
        with torch.no_grad():
            out = trial.model(feats, batch.graph).double().numpy()
        spacing = 1.0 + f_next - known[:, -1] + out
        step = dict(zip((index + 1).tolist(), known[:, -1] + spacing - 1.0, strict=True))
        predicted.append(step)
        errors.append(np.mean([(step[q] - delta[q - lo]) ** 2 for q in step]))
    return float(np.mean(errors))


@pytest.mark.parametrize("horizon", [2, 3])
def test_rollout_loss_equals_a_hand_computed_rollout(tiny_config_file, horizon):
    trial = _trial(tiny_config_file, MINIBATCH)
    _perturbed(trial)
    batch = trial.batch((0, 2))  # two segments: the second one's first nodes roll from its start
    assert batch.segments == [(0, 200), (200, 400)]
    with torch.no_grad():
        first = trial.forward(trial.model, batch)
        got = float(trial.rollout_mse(trial.model, batch, first, horizon))
        one_step = float(trial.rollout_mse(trial.model, batch, first, 1))
    expected = _hand_rollout(trial, batch, horizon)
    assert got == pytest.approx(expected, rel=1e-4)
    assert abs(got - one_step) > 1e-3 * one_step  # the rollout is not the one-step loss


def test_the_horizon_loss_drives_training_and_is_logged(tiny_config_file):
    trial = _trial(tiny_config_file, MINIBATCH)
    _perturbed(trial)
    trial.model.train()
    batch = trial.batch((1, 2))
    total, parts = trial.loss(trial.model, batch, torch.Generator().manual_seed(0), horizon=4)
    w = trial.train_losses.weights
    assert float(total.detach()) == pytest.approx(
        w.mse * float(parts["mse"])
        + w.gue_nll * float(parts["gue_nll"])
        + w.gue_mmd * float(parts["gue_mmd"])
    )
    total.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in trial.model.parameters())


def _epoch_weights(monkeypatch) -> list[dict]:
    """Record the model's weights at every end-of-epoch checkpoint of the real loop."""
    seen: list[dict] = []
    original = TrialOutputs.save_checkpoint

    def save(self, state):
        seen.append({k: v.clone() for k, v in state["model"].items()})
        original(self, state)

    monkeypatch.setattr(TrialOutputs, "save_checkpoint", save)
    return seen


@pytest.mark.parametrize("freeze", [True, False])
def test_freezing_stops_the_bottom_layers_from_the_expansion_on(
    tiny_config_file, tmp_path, monkeypatch, freeze
):
    seen = _epoch_weights(monkeypatch)
    cfg = load_config(
        tiny_config_file,
        [
            "train.epochs=4",
            "train.max_horizon=2",  # epochs 1-2 one step, 3-4 two steps
            f"train.freeze_bottom_layers_on_expand={str(freeze).lower()}",
            "optim.weight_decay=0.5",  # decay would move a frozen weight if the optimizer touched it
        ],
    )
    out = tmp_path / "out"
    assert run_trial(cfg, str(out), echo=_quiet) == 0
    assert len(seen) == 4
    bottom = [k for k in seen[0] if k.startswith(("encoder.", "convs.0.", "norms.0."))]
    top = [k for k in seen[0] if k.startswith(("convs.1.", "head."))]
    assert bottom and top

    def changed(keys, a, b):
        return any(not torch.equal(seen[a][k], seen[b][k]) for k in keys)

    assert changed(bottom, 0, 1)  # epoch 2, before the expansion: everything learns
    assert changed(top, 1, 2) and changed(top, 2, 3)
    assert changed(bottom, 1, 2) != freeze and changed(bottom, 2, 3) != freeze
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["train/horizon"] for r in rows] == [1, 2]  # eval_every 2: epochs 2 and 4
    final = json.loads((out / "final.json").read_text())
    assert set(final["gates"]) == {"spacing_ks", "block_variance_logratio", "nonpositive_fraction"}
    cost = final["cost"]
    assert cost["steps"] == 4 and cost["device"] == "cpu" and cost["device_name"] is None
    assert cost["seconds_per_step"] == pytest.approx(cost["train_seconds"] / 4, abs=1e-3)


def test_no_temperature_keeps_the_epoch_permutation(tiny_config_file):
    trial = _trial(tiny_config_file, MINIBATCH)
    plan = trial.epoch_plan(np.random.default_rng(9))
    order = np.random.default_rng(9).permutation(4)
    assert plan == [tuple(sorted(order[:2].tolist())), tuple(sorted(order[2:].tolist()))]


def test_height_temperature_draws_clusters_by_rank_to_the_power_one_over_t(tiny_config_file):
    trial = _trial(
        tiny_config_file, [*MINIBATCH, "train.clusters_per_step=1", "train.height_temperature=0.5"]
    )
    expected = np.array([1, 4, 9, 16]) / 30  # (rank / 4)^2, the highest cluster last
    assert np.allclose(trial.cluster_weights(), expected)
    rng = np.random.default_rng(0)
    draws = [c for _ in range(2500) for (c,) in trial.epoch_plan(rng)]  # 4 steps per epoch
    freq = np.bincount(draws, minlength=4) / len(draws)
    # 10,000 draws: each frequency within 5 standard errors of its probability
    assert np.all(np.abs(freq - expected) < 5 * np.sqrt(expected * (1 - expected) / len(draws)))
    # q = 2: two distinct clusters a step, ceil(k / q) steps an epoch, the low ones rarer
    pair = _trial(tiny_config_file, [*MINIBATCH, "train.height_temperature=0.6"])
    plans = [step for _ in range(500) for step in pair.epoch_plan(rng)]
    assert all(len(step) == 2 and step[0] < step[1] for step in plans)
    counts = np.bincount([c for step in plans for c in step], minlength=4)
    assert counts[0] < counts[1] < counts[2] < counts[3]


def test_gates_are_zero_for_the_truth_and_positive_for_a_wrong_rollout(tiny_config_file):
    windows = _trial(tiny_config_file).windows["test"]
    truth = windows.true_future
    assert gates(truth, windows) == {
        "spacing_ks": 0.0,
        "block_variance_logratio": 0.0,
        "nonpositive_fraction": 0.0,
    }
    noisy = truth + np.random.default_rng(1).normal(0, 0.2, truth.shape)
    g = gates(noisy, windows)
    assert g["spacing_ks"] > 0.02 and g["block_variance_logratio"] > 0.1
    shifted = truth.copy()
    shifted[:, 10:] += 3.0  # one spacing per window grows by 3 ...
    shifted[:, 20:] -= 3.0  # ... and one shrinks below 0
    g = gates(shifted, windows)
    assert g["nonpositive_fraction"] == pytest.approx(1 / windows.horizon)
    assert g["spacing_ks"] > 0 and g["block_variance_logratio"] > 0
    assert gates(truth * np.nan, windows)["spacing_ks"] is None


@pytest.mark.parametrize(
    ("item", "expected"),
    [
        ("train.max_horizon=0", "train.max_horizon: must be >= 1"),
        ("train.max_horizon=2.5", "train.max_horizon: must be an integer"),
        ("train.freeze_bottom_layers_on_expand=sometimes", "train.freeze_bottom_layers_on_expand: must be"),
        ("train.height_temperature=0", "train.height_temperature: must be > 0"),
        ("train.height_temperature=-0.7", "train.height_temperature: must be > 0"),
        ("optim.eta_min_fraction=1.5", "optim.eta_min_fraction: must be <= 1"),
        ("optim.plateau_factor=1", "optim.plateau_factor: must be < 1"),
        ("optim.plateau_patience=-1", "optim.plateau_patience: must be >= 0"),
        ("loss.mmd_max_samples=1", "loss.mmd_max_samples: must be >= 2"),
        ("loss.mmd_reference_size=0", "loss.mmd_reference_size: must be >= 2"),
    ],
)
def test_bad_values_of_the_new_keys_exit_2_with_one_line(tmp_path, monkeypatch, item, expected):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "c.yaml").write_text(yaml.safe_dump({}))
    result = CliRunner().invoke(main, ["check-config", "--config", "c.yaml", "--set", item])
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"trainer: error: --set: {expected}"), lines
