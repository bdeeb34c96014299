"""`orchestrator report` on run directories in the contract's format (built in conftest.py)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from orchestrator.cli import main
from orchestrator.errors import ConfigError
from orchestrator.report import build_report
from scipy import stats as sps

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _build(paths, out, plots: bool = True) -> Path:
    return build_report([str(p) for p in paths], out, plots=plots)


@pytest.fixture(scope="module")
def losing_report(losing_run, tmp_path_factory) -> Path:
    return _build([losing_run], tmp_path_factory.mktemp("rep") / "losing")


@pytest.fixture(scope="module")
def winning_report(winning_run, tmp_path_factory) -> Path:
    return _build([winning_run], tmp_path_factory.mktemp("rep") / "winning")


@pytest.fixture(scope="module")
def experiment_report(experiment_dir, tmp_path_factory) -> Path:
    return _build([experiment_dir], tmp_path_factory.mktemp("rep") / "exp")


def _table(md: str, heading: str) -> list[dict[str, str]]:
    """The first markdown table after `heading`, as dicts keyed by column."""
    lines = md[md.index(heading) :].splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("| "))
    header = [c.strip() for c in lines[start].strip("|").split("|")]
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        rows.append(dict(zip(header, (c.strip() for c in line.strip("|").split(" | ")), strict=True)))
    return rows


def test_report_writes_pages_and_every_plot(losing_report):
    names = {p.name for p in losing_report.iterdir()}
    expected = {
        "leaderboard.png",
        "history.png",
        "gue_weights.png",
        "spacings.png",
        "block_variance.png",
        "curves.png",
        "horizon.png",
    }
    assert {"index.html", "summary.md"} | expected == names
    html = (losing_report / "index.html").read_text()
    for png in expected:
        assert f"src='{png}'" in html
    # No temporary directories left beside the report.
    assert [p.name for p in losing_report.parent.iterdir()] == ["losing"]


def test_every_png_is_a_valid_image(losing_report, experiment_report):
    import matplotlib.image as mpimg

    pngs = list(losing_report.glob("*.png")) + list(experiment_report.glob("*.png"))
    assert len(pngs) >= 12
    for png in pngs:
        assert png.read_bytes()[:8] == PNG_SIGNATURE, png
        image = mpimg.imread(png)
        assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100, png
        assert image[..., :3].std() > 0.01, f"{png} is blank"


def _pair(model, base) -> tuple[float, float]:
    d = np.asarray(model) - np.asarray(base)
    return d.mean(), d.std(ddof=1) / np.sqrt(d.size)


def _pm(cell: str) -> tuple[float, float]:
    value, stderr = cell.split(" vs ")[0].split(" ± ")
    return float(value), float(stderr)


def test_summary_numbers_equal_the_run_files(losing_run, losing_report):
    md = (losing_report / "summary.md").read_text()
    rows = _table(md, "### phase 2 · fullbatch")
    finals = {}
    for d in (losing_run / "trials").iterdir():
        final = json.loads((d / "final.json").read_text()) if (d / "final.json").exists() else {}
        if final.get("status") == "completed":
            finals[d.name] = final
    assert sorted(r["trial"] for r in rows) == sorted(finals)
    errors = [_pm(r["tune error ± stderr"])[0] for r in rows]
    assert errors == sorted(errors), "leaderboard must be best first (by the tune objective)"
    for row in rows:
        final = finals[row["trial"]]
        assert _pm(row["tune error ± stderr"]) == pytest.approx(
            (final["extrapolation_error"], final["extrapolation_stderr"]), rel=5e-4
        )
        assert _pm(row["test error ± stderr"]) == pytest.approx(
            (final["test_extrapolation_error"], final["test_extrapolation_stderr"]), rel=5e-4
        )
        # Paired on the test windows against the smallest baseline there, from the per-window errors.
        test = final["windows"]["test"]
        best = min((k for k in test if k.startswith("baseline_")), key=lambda k: np.mean(test[k]))
        assert best == "baseline_smoothed_ar" and row["test: model - best baseline (paired)"].endswith(
            "vs smoothed_ar"
        )
        assert _pm(row["test: model - best baseline (paired)"]) == pytest.approx(
            _pair(test["model"], test[best]), rel=5e-4
        )
        assert float(row["test skill"]) == pytest.approx(final["test_skill"], rel=5e-4)
    # Every baseline, the new ones included, is printed once per run and window set.
    assert "on the test windows smoothed_ar 0.00121, smoothed 0.00125, explicit 0.01412" in md


def test_says_no_model_beats_the_baselines_when_true(losing_report):
    for page in ("summary.md", "index.html"):
        text = (losing_report / page).read_text()
        assert "No model beats the baselines on the test windows" in text
    md = (losing_report / "summary.md").read_text()
    # Every trial beats the explicit formula (0.01412): only the smallest baseline counts.
    assert all(r["beats baselines (test)"] == "no" for r in _table(md, "### phase 2"))
    assert "0 of 5 trials beat the best baseline on the test windows by one-sided paired z tests" in md
    assert "INFEASIBLE: diverged: loss is nan at epoch 3" in md
    assert "FAILED: exit code 1 three times" in md


def test_does_not_say_so_when_a_model_beats_them(winning_report):
    md = (winning_report / "summary.md").read_text()
    assert "No model beats the baselines" not in md
    assert "No model beats the baselines" not in (winning_report / "index.html").read_text()
    assert "1 of 5 completed trials beat the baselines on the test windows" in md
    assert "1 of 5 trials beat the best baseline on the test windows by one-sided paired z tests" in md
    rows = _table(md, "### phase 2 · minibatch")
    assert rows[0]["beats baselines (test)"] == "yes" and _pm(rows[0]["tune error ± stderr"])[0] == 0.00098
    assert [r["beats baselines (test)"] for r in rows[1:]] == ["no"] * 4


def _arm_windows(exp_dir: Path, arm: str) -> list[dict]:
    run = json.loads((exp_dir / arm / "trials.json").read_text())
    return [
        json.loads((exp_dir / arm / "trials" / t["id"] / "final.json").read_text())["windows"]["test"]
        for t in run["trials"]
        if t["state"] == "COMPLETED"
    ]


def test_experiment_verdict_and_arms_from_the_files(experiment_dir, experiment_report):
    md = (experiment_report / "summary.md").read_text()
    assert (experiment_report / "arms.png").exists()
    # Seeds averaged per test window first, then paired arm against arm over the windows.
    rg, no_rg = (
        np.mean([w["model"] for w in _arm_windows(experiment_dir, arm)], axis=0)
        for arm in ("t1-rg", "t1-no-rg")
    )
    d = rg - no_rg
    ci = sps.ttest_1samp(d, 0.0).confidence_interval(0.95)
    verdict = re.search(r"\*\*Verdict\.\*\* (.*)", md).group(1)
    assert verdict.startswith("Scenario B: rg_penalty matters; it lowers the extrapolation error")
    got = re.search(
        r"with minus without = ([-+][\d.e-]+) \(paired over 32 test windows, 95% CI \[([-+][\d.e-]+), ([-+][\d.e-]+)\]",
        verdict,
    )
    assert float(got.group(1)) == pytest.approx(d.mean(), rel=5e-4)
    assert (float(got.group(2)), float(got.group(3))) == pytest.approx((ci.low, ci.high), rel=5e-4)
    assert "each arm's 4 and 4 seeds averaged per window first" in verdict
    arms = {r["arm"]: r for r in _table(md, "## Experiment")}
    assert set(arms) == {"t1-rg", "t1-no-rg", "t2-minibatch"}
    assert float(arms["t1-rg"]["test error (seeds averaged per window)"]) == pytest.approx(
        rg.mean(), rel=5e-4
    )
    base = np.mean([w["baseline_smoothed_ar"] for w in _arm_windows(experiment_dir, "t1-rg")], axis=0)
    assert _pm(arms["t1-rg"]["model - best baseline ± paired stderr"]) == pytest.approx(
        _pair(rg, base), rel=5e-4
    )
    assert arms["t1-rg"]["best baseline (test)"] == "smoothed_ar 0.00121"
    assert all(a["beats baselines (2 stderr)"] == "no" and a["beats (Holm)"] == "no" for a in arms.values())
    assert "No model beats the baselines (an arm beats them when its test-window error" in md
    assert "0 of 3 arms beat the best baseline on the test windows" in md
    assert re.search(
        r"Team 2 \(mini-batch\) minus Team 1 with rg_penalty on the test windows: \+[\d.e-]+", md
    )


def test_no_completed_trial_still_gives_a_page(tmp_path, make_run):
    run = make_run(tmp_path / "empty", [], extra_states=True)
    out = _build([run], tmp_path / "out")
    md = (out / "summary.md").read_text()
    assert "No trial has completed yet (3 trials in the run files)" in md
    assert "No completed trial." in md
    assert not list(out.glob("*.png"))
    assert "No trial has completed yet" in (out / "index.html").read_text()


def test_several_run_dirs_give_one_leaderboard_each(losing_run, winning_run, tmp_path):
    md = (_build([losing_run, winning_run], tmp_path / "both", plots=False) / "summary.md").read_text()
    assert "### phase 2 · fullbatch" in md and "### phase 2 · minibatch" in md
    assert "1 of 10 completed trials beat the baselines" in md


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda d: shutil.rmtree(d), r"run directory not found"),
        (lambda d: (d / "trials.json").unlink(), r"neither trials.json nor experiment.json"),
        (
            lambda d: (d / "trials.json").write_text('{"trials": [\n{"id": 1,}\n]}'),
            r"trials.json: line 2: malformed JSON",
        ),
        (lambda d: (d / "trials.json").write_text('{"study": "x"}'), r"trials.json: missing key 'trials'"),
        (
            lambda d: (d / "trials" / "1" / "final.json").write_text("{oops"),
            r"trials/1/final.json: line 1: malformed JSON",
        ),
        (lambda d: (d / "trials" / "1" / "final.json").unlink(), r"trials/1/final.json: missing"),
        (
            lambda d: (d / "trials" / "0" / "metrics.jsonl").write_text('{"epoch": 1}\n{"epoch": \n'),
            r"trials/0/metrics.jsonl: line 2: malformed JSON",
        ),
        (
            lambda d: (d / "trials" / "2" / "final.json").write_text('{"extrapolation_error": "nan"}'),
            r"final.json: key 'extrapolation_error' must be a finite number",
        ),
    ],
)
def test_bad_input_is_one_config_error_and_keeps_the_old_report(losing_run, tmp_path, damage, message):
    run = _copy(losing_run, tmp_path / "run")
    out = tmp_path / "out"
    out.mkdir()
    (out / "index.html").write_text("previous report")
    damage(run)
    with pytest.raises(ConfigError, match=message):
        _build([run], out)
    assert (out / "index.html").read_text() == "previous report"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["out"] + (["run"] if run.exists() else []))


def test_cli_bad_input_exits_2_with_one_line(tmp_path):
    result = CliRunner().invoke(
        main, ["report", "--run-dir", str(tmp_path / "nope"), "--out", str(tmp_path / "o")]
    )
    assert result.exit_code == 2
    assert result.stderr.strip().count("\n") == 0
    assert result.stderr.startswith("orchestrator: error: ") and "run directory not found" in result.stderr
    assert not (tmp_path / "o").exists()


def test_a_gs_out_is_refused_not_written_to_a_local_gs_dir(losing_run, tmp_path, monkeypatch):
    """--out gs://b/r: Path() would turn it into the local directory gs:/b/r; it is refused first."""
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match=r"--out gs://b/r: the report is written locally"):
        _build([losing_run], "gs://b/r", plots=False)
    assert list(tmp_path.iterdir()) == []


def test_cli_in_a_real_process(losing_run, tmp_path):
    exe = Path(sys.executable).with_name("orchestrator")
    ok = subprocess.run(
        [exe, "report", "--run-dir", losing_run, "--out", tmp_path / "r", "--no-plots"],
        capture_output=True,
        text=True,
    )
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.strip() == f"{tmp_path / 'r'}/index.html"
    assert ok.stderr.startswith("report: read 1 run(s), 8 trial(s)")  # progress lines
    assert sorted(p.name for p in (tmp_path / "r").iterdir()) == ["index.html", "summary.md"]
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "trials.json").write_text("[1, 2")
    fail = subprocess.run(
        [exe, "report", "--run-dir", bad, "--out", tmp_path / "r2"], capture_output=True, text=True
    )
    assert fail.returncode == 2
    assert fail.stderr.splitlines() == [
        f"orchestrator: error: {bad}/trials.json: line 1: malformed JSON: Expecting ',' delimiter"
    ]


def test_experiment_inconclusive_and_unfinished_arms(tmp_path, make_experiment):
    # Seeds that scatter a lot on every window: the interval straddles 0 and reaches past the margin.
    wide = make_experiment(
        tmp_path / "wide",
        {
            "t1-rg": ("rg", "fullbatch", 0.1, [0.0030, 0.0070, 0.0050]),
            "t1-no-rg": ("no_rg", "fullbatch", 0.0, [0.0060, 0.0020, 0.0045]),
        },
        noise=1.5,
    )
    md = (_build([wide], tmp_path / "r1", plots=False) / "summary.md").read_text()
    assert re.search(r"\*\*Verdict\.\*\* Inconclusive: the difference [-+][\d.e-]+ \(paired over 32 test", md)
    assert "more seeds or test windows are needed" in md and "Scenario" not in md

    early = make_experiment(
        tmp_path / "early",
        {
            "t1-rg": ("rg", "fullbatch", 0.1, [0.0040, 0.0041]),
            "t1-no-rg": ("no_rg", "fullbatch", 0.0, []),
        },
    )
    design = json.loads((early / "experiment.json").read_text())
    design["arms"].append(
        {"name": "t2-minibatch", "role": "minibatch", "team": "minibatch", "run_dir": "t2-minibatch"}
    )
    (early / "experiment.json").write_text(json.dumps(design))
    md = (_build([early], tmp_path / "r2", plots=False) / "summary.md").read_text()
    assert "No verdict yet: t1-rg has 2 completed seed(s), t1-no-rg has 0." in md
    assert "t2-minibatch: 0 of 0 seeds completed" in md


def test_reads_a_run_directory_on_gcs(losing_run, tmp_path, storage_emulator):
    """The same run copied to a bucket (the real client against gcp-storage-emulator) gives the same numbers."""
    from google.cloud import storage

    bucket = storage.Client().bucket("zeta-swarm-test-data")
    prefix = "report-test/phase2-fullbatch"
    for f in losing_run.rglob("*"):
        if f.is_file():
            bucket.blob(f"{prefix}/{f.relative_to(losing_run)}").upload_from_filename(str(f))
    local = (_build([losing_run], tmp_path / "local", plots=False) / "summary.md").read_text()
    remote = (
        _build([f"gs://zeta-swarm-test-data/{prefix}"], tmp_path / "remote", plots=False) / "summary.md"
    ).read_text()
    assert _table(remote, "### phase 2") == _table(local, "### phase 2")
    assert "No model beats the baselines" in remote
    with pytest.raises(ConfigError, match="neither trials.json nor experiment.json"):
        _build(["gs://zeta-swarm-test-data/report-test/nothing-here"], tmp_path / "none")


def test_below_the_baseline_within_noise_is_not_a_win(tmp_path, make_run):
    # On the test windows 0.00118 against the best baseline's 0.00121, with 5% noise of each series
    # on each of 32 windows: 3e-5 below it, less than 2 paired s.e.
    run = make_run(tmp_path / "close", [0.00118 / 1.04, 0.0300], extra_states=False)
    md = (_build([run], tmp_path / "out", plots=False) / "summary.md").read_text()
    assert "No model beats the baselines" in md
    assert "1 trial is below the best baseline by less than 2 paired s.e.: within noise, not a win." in md
    assert [r["beats baselines (test)"] for r in _table(md, "### phase 2")] == ["within noise", "no"]


def test_arms_are_judged_paired_on_the_test_windows_with_their_seeds_averaged(tmp_path, make_experiment):
    exp = make_experiment(
        tmp_path / "exp",
        {
            "t1-rg": ("rg", "fullbatch", 0.1, [0.00100, 0.00101, 0.00099]),  # 0.00104 on test: beats 0.00121
            "t1-no-rg": ("no_rg", "fullbatch", 0.0, [0.00115, 0.00116, 0.00116]),  # 0.0012: within noise
        },
    )
    md = (_build([exp], tmp_path / "out", plots=False) / "summary.md").read_text()
    arms = {r["arm"]: r for r in _table(md, "## Experiment")}
    assert arms["t1-rg"]["beats baselines (2 stderr)"] == "yes" and arms["t1-rg"]["beats (Holm)"] == "yes"
    assert arms["t1-no-rg"]["beats baselines (2 stderr)"] == "within noise"
    assert arms["t1-no-rg"]["beats (Holm)"] == "no"
    assert "Arms that beat the baselines (an arm beats them when" in md and "): t1-rg." in md
    assert "1 of 2 arms beat the best baseline on the test windows" in md
    windows = _arm_windows(exp, "t1-no-rg")
    model = np.mean([w["model"] for w in windows], axis=0)
    diff, se = _pm(arms["t1-no-rg"]["model - best baseline ± paired stderr"])
    assert (diff, se) == pytest.approx(_pair(model, windows[0]["baseline_smoothed_ar"]), rel=5e-3)
    # Not the seeds' spread: by that s.e. these three close seeds would have been a win.
    seed_se = np.std([0.00115, 0.00116, 0.00116], ddof=1) * 1.04 / np.sqrt(3)
    assert diff + 2 * seed_se < 0 and se > 3 * seed_se


def _holm(p: list[float], alpha: float) -> list[bool]:
    out, m = [False] * len(p), len(p)
    for rank, i in enumerate(np.argsort(p)):
        if p[i] > alpha / (m - rank):
            break
        out[i] = True
    return out


def test_phase3_championship_on_the_test_windows(tmp_path, make_championship):
    configs = {
        "a": (
            {"loss.gue_nll_weight": 0.03, "loss.gue_mmd_weight": 1.0, "train.mode": "minibatch"},
            [0.00100, 0.00101, 0.00099],
        ),
        "b": (
            {"loss.gue_nll_weight": 0.1, "loss.gue_mmd_weight": 0.5, "train.mode": "minibatch"},
            [0.00125, 0.00124, 0.00126],
        ),
        "control": (
            {"loss.gue_nll_weight": 0.03, "loss.gue_mmd_weight": 1.0, "train.mode": "fullbatch"},
            [0.00114, 0.00116, 0.00115],
        ),
        "mse": (
            {
                "loss.gue_nll_weight": 0.0,
                "loss.gue_mmd_weight": 0.0,
                "loss.rg_penalty_weight": 0.0,
                "train.mode": "minibatch",
            },
            [0.00130, 0.00131, 0.00129],
        ),
    }
    run = make_championship(tmp_path / "phase3-minibatch", configs)
    md = (_build([run], tmp_path / "out", plots=False) / "summary.md").read_text()
    assert (
        "Phase 3 (phase 3 · minibatch): 2 configuration(s) promoted from phase 2, the control, the MSE-only arm; 4 candidates"
        in md
    )
    rows = {r["candidate"]: r for r in _table(md, "## Championship")}
    assert list(rows) == ["config 1", "config 2", "control (fullbatch)", "MSE only"]
    # An independent computation from the files: seeds averaged per test window, paired with the
    # smallest baseline there, one-sided z tests, Holm over the 4 candidates at 5%.
    snap = json.loads((run / "trials.json").read_text())
    by_config: dict[str, list[dict]] = {}
    for t in snap["trials"]:
        key = json.dumps({k: v for k, v in t["params"].items() if k != "seed"}, sort_keys=True)
        by_config.setdefault(key, []).append(
            json.loads((run / "trials" / t["id"] / "final.json").read_text())["windows"]["test"]
        )
    order = [json.dumps(cfg, sort_keys=True) for cfg, _ in configs.values()]
    avg = [np.mean([w["model"] for w in by_config[k]], axis=0) for k in order]
    base = np.asarray(by_config[order[0]][0]["baseline_smoothed_ar"])
    pairs = [_pair(m, base) for m in avg]
    p = [sps.norm.cdf(d / se) for d, se in pairs]
    expected = _holm(p, 0.05)
    for label, (d, se), beats in zip(rows, pairs, expected, strict=True):
        assert _pm(rows[label]["model - best baseline (paired)"]) == pytest.approx((d, se), rel=5e-3), label
        assert rows[label]["beats (Holm)"] == ("yes" if beats else "no"), label
    assert expected[0] and not expected[1] and not expected[3]  # config 1 wins; config 2, MSE only do not
    assert f"{sum(expected)} of 4 candidates beat the best baseline on the test windows" in md
    assert "Champion (best tune objective): config 1 (loss.gue_mmd_weight=1, loss.gue_nll_weight=0.03" in md
    # MSE only minus the champion, per window over the seed-averaged errors, with its t interval.
    d = avg[3] - avg[0]
    ci = sps.ttest_1samp(d, 0.0).confidence_interval(0.95)
    got = re.search(
        r"MSE only minus the champion on the test windows: ([-+][\d.e-]+) \(paired over 32 windows, seeds averaged per window; 95% CI \[([-+][\d.e-]+), ([-+][\d.e-]+)\]\): the GUE prior helps",
        md,
    )
    assert got, md
    assert [float(x) for x in got.groups()] == pytest.approx([d.mean(), ci.low, ci.high], rel=5e-3)
