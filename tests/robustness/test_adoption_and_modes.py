"""Two rules of issue 17 below the CLI: a local job recorded with other `--set` values than its
trial now has is never adopted (a replaced study would otherwise take another point's result), and
the trainer's output files honour the umask instead of mkstemp's 0600."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from orchestrator.reading import DamagedFile
from orchestrator.runners.base import JobSpec
from orchestrator.runners.local import LocalRunner


def _spec(tmp_path, nll: str) -> JobSpec:
    return JobSpec(
        study="s",
        trial_id="2",
        attempt=1,
        phase=2,
        team="minibatch",
        trainer_args=(
            "train",
            "--config",
            "c.yaml",
            "--set",
            f"loss.gue_nll_weight={nll}",
            "--output-dir",
            "o",
        ),
        output_dir=str(tmp_path / "trials" / "2"),
    )


def test_a_job_recorded_with_other_parameters_is_not_adopted(tmp_path):
    runner = LocalRunner(tmp_path, "s", trainer_command=["/bin/false"])
    job_dir = tmp_path / "jobs" / "s-t2-a1"
    job_dir.mkdir(parents=True)
    recorded = {"trial_id": "2", "attempt": 1, "output_dir": "o", "log": str(tmp_path / "log"),
                "argv": ["trainer", *_spec(tmp_path, "0.0443").trainer_args]}  # fmt: skip
    (job_dir / "spec.json").write_text(json.dumps(recorded))
    (job_dir / "exit.json").write_text(json.dumps({"code": 0, "ended": 1.0}))
    (job_dir / "started").write_text(json.dumps({"started": 0.5}))
    with pytest.raises(
        DamagedFile, match=r"loss.gue_nll_weight=0.0443 but the study's trial 2 has .*=0.0187"
    ):
        runner.launch(_spec(tmp_path, "0.0187"))
    # The same parameters are the same job: adopted, nothing new started.
    assert runner.launch(_spec(tmp_path, "0.0443")).state.value == "SUCCEEDED"
    assert sorted(p.name for p in job_dir.iterdir()) == ["exit.json", "spec.json", "started"]


@pytest.mark.parametrize("umask,mode", [(0o022, 0o644), (0o077, 0o600)])
def test_trial_outputs_honour_the_umask(tmp_path, umask, mode):
    code = (
        f"import os; os.umask({umask}); from trainer import storage; "
        f"storage.write_text_atomic({str(tmp_path / 'final.json')!r}, '{{}}')"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
    assert (tmp_path / "final.json").stat().st_mode & 0o777 == mode
