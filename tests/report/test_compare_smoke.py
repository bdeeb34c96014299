"""One real `compare` run with the smoke profile: the swarm engine, real `trainer train` processes
on the first 30k Odlyzko zeros, then the report with the verdict (about two minutes on 2 cores)."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import matplotlib.image as mpimg
import pytest
import yaml
from orchestrator.compare import load_design, run_compare

CONFIG = Path(__file__).resolve().parents[2] / "configs" / "experiments" / "compare.yaml"
VERDICTS = r"(Scenario A: |Scenario B: |Inconclusive: |No verdict yet: )"


@pytest.mark.slow
def test_smoke_compare_runs_three_arms_and_writes_the_verdict(odlyzko_small, tmp_path):
    design = load_design(CONFIG, "smoke", "local")
    lines: list[str] = []
    report = run_compare(design, tmp_path / "cmp", progress=lines.append, data_path=str(odlyzko_small))

    assert report == tmp_path / "cmp" / "report"
    saved = json.loads((tmp_path / "cmp" / "experiment.json").read_text())
    assert [a["role"] for a in saved["arms"]] == ["rg", "no_rg", "minibatch"]
    values: dict[str, list[float]] = {}
    for arm in design.arms:
        snap = json.loads((tmp_path / "cmp" / arm.name / "trials.json").read_text())
        assert snap["study"] == f"compare-{arm.name}"
        assert sorted(t["params"]["seed"] for t in snap["trials"]) == design.seeds
        assert {t["state"] for t in snap["trials"]} <= {"COMPLETED", "INFEASIBLE"}, snap["trials"]
        values[arm.name] = []
        for t in snap["trials"]:
            cfg = yaml.safe_load(
                (tmp_path / "cmp" / arm.name / "trials" / t["id"] / "config.yaml").read_text()
            )
            # Each arm trained what the design says, on the same data and budget.
            assert cfg["seed"] == t["params"]["seed"]
            assert cfg["data"]["train_count"] == design.train_count
            assert cfg["data"]["path"] == str(odlyzko_small.resolve())
            assert cfg["train"]["mode"] == arm.team
            assert cfg["loss"]["rg_penalty_weight"] == arm.overrides["loss.rg_penalty_weight"]
            steps_per_epoch = math.ceil(cfg["train"]["num_clusters"] / cfg["train"]["clusters_per_step"])
            assert cfg["train"]["epochs"] * steps_per_epoch == design.steps
            if t["state"] == "COMPLETED":
                final = json.loads(
                    (tmp_path / "cmp" / arm.name / "trials" / t["id"] / "final.json").read_text()
                )
                values[arm.name].append(final["extrapolation_error"])
    assert (
        design.arms[0].overrides["loss.rg_penalty_weight"]
        > 0
        == design.arms[1].overrides["loss.rg_penalty_weight"]
    )

    md = (report / "summary.md").read_text()
    assert re.search(r"\*\*Verdict\.\*\* " + VERDICTS, md)
    assert "smoothed" in md  # the best baseline on the test windows, by name
    arms = {}
    for line in md[md.index("## Experiment") :].splitlines():
        cells = [c.strip() for c in line.strip("|").split(" | ")]
        if line.startswith("| t"):
            arms[cells[0]] = cells
    for name, vals in values.items():
        assert arms[name][2] == f"{len(vals)}/{len(design.seeds)}"
        if vals:
            shown = float(arms[name][3])  # the tune objective's mean over the seeds
            assert shown == pytest.approx(sum(vals) / len(vals), rel=5e-4)
    for png in report.glob("*.png"):
        assert mpimg.imread(png).ndim == 3
    assert (report / "arms.png").exists() == any(values.values())
    assert any(line.startswith("arm t2-minibatch (minibatch, minibatch)") for line in lines)
