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


def test_summary_numbers_equal_the_run_files(losing_run, losing_report):
    md = (losing_report / "summary.md").read_text()
    rows = _table(md, "### phase 2 · fullbatch")
    finals = {}
    for d in (losing_run / "trials").iterdir():
        final = json.loads((d / "final.json").read_text()) if (d / "final.json").exists() else {}
        if final.get("status") == "completed":
            finals[d.name] = final
    assert sorted(r["trial"] for r in rows) == sorted(finals)
    errors = [float(r["extrapolation_error ± stderr"].split(" ± ")[0]) for r in rows]
    assert errors == sorted(errors), "leaderboard must be best first"
    for row in rows:
        final = finals[row["trial"]]
        value, stderr = (float(x) for x in row["extrapolation_error ± stderr"].split(" ± "))
        assert value == pytest.approx(final["extrapolation_error"], rel=5e-4)
        assert stderr == pytest.approx(final["extrapolation_stderr"], rel=5e-4)
        for key in ("baseline_index", "baseline_ar", "baseline_explicit", "skill"):
            assert float(row[key]) == pytest.approx(final[key], rel=5e-4), key
    # The explicit-formula baseline, the one to beat, is printed beside the objective.
    assert "baseline_explicit" in rows[0] and "0.01412" in md


def test_says_no_model_beats_the_baselines_when_true(losing_report):
    for page in ("summary.md", "index.html"):
        text = (losing_report / page).read_text()
        assert "No model beats the baselines" in text
    md = (losing_report / "summary.md").read_text()
    assert all(r["beats baselines"] == "no" for r in _table(md, "### phase 2"))
    assert "5 of these 5 models are given the explicit-formula estimate as an input" in md
    assert "INFEASIBLE: diverged: loss is nan at epoch 3" in md
    assert "FAILED: exit code 1 three times" in md


def test_does_not_say_so_when_a_model_beats_them(winning_report):
    md = (winning_report / "summary.md").read_text()
    assert "No model beats the baselines" not in md
    assert "No model beats the baselines" not in (winning_report / "index.html").read_text()
    assert "1 of 5 completed trials beat the baselines" in md
    rows = _table(md, "### phase 2 · minibatch")
    assert (
        rows[0]["beats baselines"] == "yes"
        and float(rows[0]["extrapolation_error ± stderr"].split(" ± ")[0]) == 0.0098
    )
    assert [r["beats baselines"] for r in rows[1:]] == ["no"] * 4


def test_experiment_verdict_and_arms_from_the_files(experiment_dir, experiment_report):
    md = (experiment_report / "summary.md").read_text()
    assert (experiment_report / "arms.png").exists()

    def seeds(arm):
        run = json.loads((experiment_dir / arm / "trials.json").read_text())
        return np.array([t["value"] for t in run["trials"] if t["state"] == "COMPLETED"])

    rg, no_rg = seeds("t1-rg"), seeds("t1-no-rg")
    ci = sps.ttest_ind(rg, no_rg, equal_var=False).confidence_interval(0.95)
    verdict = re.search(r"\*\*Verdict\.\*\* (.*)", md).group(1)
    assert verdict.startswith("Scenario B: rg_penalty matters; it lowers the extrapolation error")
    got = re.search(
        r"with minus without = ([-+][\d.e-]+) \(Welch 95% CI \[([-+][\d.e-]+), ([-+][\d.e-]+)\]", verdict
    )
    assert float(got.group(1)) == pytest.approx(rg.mean() - no_rg.mean(), rel=5e-4)
    assert (float(got.group(2)), float(got.group(3))) == pytest.approx((ci.low, ci.high), rel=5e-4)
    assert "Every seed was scored on the same 3 windows of 100 zeros" in verdict
    arms = {r["arm"]: r for r in _table(md, "## Experiment")}
    assert set(arms) == {"t1-rg", "t1-no-rg", "t2-minibatch"}
    assert float(arms["t1-rg"]["mean error ± stderr"].split(" ± ")[0]) == pytest.approx(rg.mean(), rel=5e-4)
    assert all(a["beats baselines"] == "no" for a in arms.values())
    assert "No model beats the baselines (an arm beats them when its mean gap" in md
    assert "0.01412" in arms["t1-rg"]["baseline_explicit"]


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
    wide = make_experiment(
        tmp_path / "wide",
        {
            "t1-rg": ("rg", "fullbatch", 0.1, [0.030, 0.070, 0.050]),
            "t1-no-rg": ("no_rg", "fullbatch", 0.0, [0.060, 0.020, 0.045]),
        },
    )
    md = (_build([wide], tmp_path / "r1", plots=False) / "summary.md").read_text()
    assert re.search(r"\*\*Verdict\.\*\* Inconclusive: the difference [-+][\d.]+ \(Welch 95% CI", md)
    assert "more seeds are needed" in md and "Scenario" not in md

    early = make_experiment(
        tmp_path / "early",
        {
            "t1-rg": ("rg", "fullbatch", 0.1, [0.040, 0.041]),
            "t1-no-rg": ("no_rg", "fullbatch", 0.0, [0.060]),
        },
    )
    design = json.loads((early / "experiment.json").read_text())
    design["arms"].append(
        {"name": "t2-minibatch", "role": "minibatch", "team": "minibatch", "run_dir": "t2-minibatch"}
    )
    (early / "experiment.json").write_text(json.dumps(design))
    md = (_build([early], tmp_path / "r2", plots=False) / "summary.md").read_text()
    assert (
        "No verdict yet: Welch's interval needs at least 2 completed seeds per arm; with rg_penalty has 2, without has 1."
        in md
    )
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
    # 0.0135 ± 0.00108 is below the explicit formula's 0.01412, but by less than 2 stderr.
    run = make_run(tmp_path / "close", [0.0135, 0.0300], extra_states=False)
    md = (_build([run], tmp_path / "out", plots=False) / "summary.md").read_text()
    assert "No model beats the baselines" in md
    assert "1 trial is below the smallest baseline by less than 2 stderr: within noise, not a win." in md
    assert [r["beats baselines"] for r in _table(md, "### phase 2")] == ["within noise", "no"]


def test_arm_beats_the_baselines_only_beyond_seed_and_window_noise(tmp_path, make_experiment):
    # Explicit formula 0.01412; the fixture's window stderr is 8% of the error.
    exp = make_experiment(
        tmp_path / "exp",
        {
            "t1-rg": ("rg", "fullbatch", 0.1, [0.0100, 0.0101, 0.0099]),  # gap -0.0041, noise ~0.0008
            "t1-no-rg": ("no_rg", "fullbatch", 0.0, [0.0135, 0.0136, 0.0134]),  # gap -0.0006, noise ~0.0011
        },
    )
    md = (_build([exp], tmp_path / "out", plots=False) / "summary.md").read_text()
    arms = {r["arm"]: r for r in _table(md, "## Experiment")}
    assert arms["t1-rg"]["beats baselines"] == "yes"
    assert arms["t1-no-rg"]["beats baselines"] == "within noise"
    assert "Arms that beat the baselines (an arm beats them when" in md and "): t1-rg." in md
    gap, se = (
        float(x) for x in arms["t1-no-rg"]["gap to best baseline ± stderr (seeds, windows)"].split(" ± ")
    )
    assert gap == pytest.approx(0.0135 - 0.01412, rel=5e-3)
    assert se == pytest.approx(
        np.hypot(np.std([0.0135, 0.0136, 0.0134], ddof=1) / np.sqrt(3), 0.08 * 0.0135), rel=5e-3
    )
