"""`orchestrator zeros`: the plan, bad flags, the dry-run estimate, and kill-and-restart with real jobs."""

from __future__ import annotations

import json
import multiprocessing
import os
import sys
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from orchestrator.cli import main
from orchestrator.errors import ConfigError
from orchestrator.paths import CONFIG_DIR
from orchestrator.runners.local import LocalRunner
from orchestrator.zeros import TABLE_COUNT, ShardJob, Throughput, ZerosRun, ZerosSettings, plan_shards

from orchestrator import crash_injection

TRAINER = [str(Path(sys.executable).with_name("trainer"))]


def _invoke(*args):
    return CliRunner().invoke(main, ["zeros", *args])


def test_plan_cuts_equal_shards_after_the_table():
    plan = plan_shards(1, 10_000_000, 8, table=True)
    assert plan[0] == ShardJob(0, 1, TABLE_COUNT, "odlyzko")
    assert [j.k for j in plan] == list(range(9))
    assert all(b.first_index == a.last_index + 1 for a, b in zip(plan, plan[1:], strict=False))
    assert plan[-1].last_index == 10_000_000
    assert {j.count for j in plan[1:]} <= {999_868, 999_869}
    assert plan_shards(101, 10, 3, table=False) == [
        ShardJob(0, 101, 3, "generate"),
        ShardJob(1, 104, 3, "generate"),
        ShardJob(2, 107, 4, "generate"),
    ]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--start", "5", "--count", "10", "--shards", "2", "--table"],
            "--start 5: --table supplies zeros 1..2,001,052",
        ),
        (["--start", "5", "--count", "10", "--shards", "11"], "--shards 11: more shards than the 10 zeros"),
        (
            ["--start", "1", "--count", str(10**13), "--shards", "2"],
            "--count: the 10,000,000,000,000 zeros still to make need",
        ),
        (
            ["--start", "1", "--count", "10", "--shards", "1", "--backend", "vertex"],
            "the vertex backend writes to a gs://",
        ),
    ],
)
def test_bad_flags_are_one_line_exit_2_and_launch_nothing(tmp_path, args, message):
    result = _invoke(*args, "--out", str(tmp_path / "d"))
    assert result.exit_code == 2, result.output
    assert result.output.count("\n") == 1 and message in result.output, result.output
    assert not (tmp_path / "d" / ".orchestrator" / "jobs").exists()


def test_another_plan_in_the_same_directory_is_refused(tmp_path):
    out = tmp_path / "d"
    settings = ZerosSettings(1, 100, 2, False, str(out), str(out / ".orchestrator"), 1)
    from orchestrator.zeros import check_plan

    (out / ".orchestrator").mkdir(parents=True)
    check_plan(settings, settings.plan())
    result = _invoke("--start", "1", "--count", "200", "--shards", "2", "--out", str(out))
    assert result.exit_code == 2
    assert (
        "--start/--count/--shards/--table: " in result.output
        and "--start 1 --count 100 --shards 2" in result.output
    )
    # A shard record from another range (the plan file gone) names --start too.
    (out / ".orchestrator" / "zeros-plan.json").unlink()
    (out / "shards").mkdir()
    (out / "shards" / "00000.json").write_text(json.dumps({"first_index": 7, "count": 50}))
    result = _invoke("--start", "1", "--count", "100", "--shards", "2", "--out", str(out))
    assert (
        result.exit_code == 2
        and "--start: " in result.output
        and "shard 00000 with zeros n=7..56" in result.output
    )


def test_dry_run_json_estimates_from_the_measured_throughput():
    result = _invoke(
        "--start", "1", "--count", "100000000", "--shards", "10", "--table", "--out", "gs://bucket/zeros",
        "--backend", "vertex", "--dry-run", "--json",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    plan = json.loads(result.output)
    vertex = yaml.safe_load((CONFIG_DIR / "backends" / "vertex.yaml").read_text())["zeros"]["cpu"]
    price = yaml.safe_load((CONFIG_DIR / "budgets.yaml").read_text())["prices_per_hour"][
        vertex["machine_type"]
    ]
    throughput = Throughput.load(CONFIG_DIR / "zeros.yaml")
    assert plan["machine"] == vertex["machine_type"] and plan["workers_per_job"] == vertex["workers"]
    assert len(plan["jobs"]) == 11 and plan["jobs"][0]["source"] == "odlyzko"
    last = plan["jobs"][-1]
    job = ShardJob(10, last["first_index"], last["count"], "generate")
    hours = throughput.seconds(job, device="cpu", workers=vertex["workers"]) / 3600
    assert last["est_hours"] == pytest.approx(hours, rel=1e-3)
    assert last["est_cost_usd"] == pytest.approx(hours * price, rel=1e-3)
    assert last["argv"][:3] == ["trainer", "zeros", "generate"] and "--workers" in last["argv"]
    assert plan["est_cost_usd"] == pytest.approx(sum(j["est_cost_usd"] for j in plan["jobs"]), abs=0.01)
    # Higher zeros cost more each: the last shard takes longer than the first generated one.
    assert plan["jobs"][1]["est_hours"] < last["est_hours"]


def _settings(out: Path) -> ZerosSettings:
    return ZerosSettings(
        start=20_001,
        count=900,
        shards=3,
        table=False,
        out=str(out),
        run_dir=str(out / ".orchestrator"),
        parallel=1,
    )


def _run_until_first_launch_then_die(out: Path) -> None:
    crash_injection.arm(1, "shard launched")  # dies like SIGKILL right after the first launch
    s = _settings(out)
    ZerosRun(
        s, LocalRunner(s.run_dir, s.study(), TRAINER), TRAINER, out=lambda _line: None, poll_s=0.2
    ).generate()


def test_kill_and_restart_does_no_shard_twice(tmp_path):
    out = tmp_path / "d"
    s = _settings(out)
    (out / ".orchestrator").mkdir(parents=True)
    child = multiprocessing.get_context("fork").Process(target=_run_until_first_launch_then_die, args=(out,))
    child.start()
    child.join()
    assert child.exitcode == crash_injection.CRASH_EXIT_CODE
    jobs_dir = out / ".orchestrator" / "jobs"
    assert [p.name.split("-t")[1] for p in jobs_dir.iterdir()] == ["00000-a1"]  # one launched, then dead

    lines: list[str] = []
    run = ZerosRun(s, LocalRunner(s.run_dir, s.study(), TRAINER), TRAINER, out=lines.append, poll_s=0.2)
    counts = run.generate()
    # The first shard's job outlived its controller: adopted while running or found done, never relaunched.
    assert counts["launched"] == 2 and counts["adopted"] + counts["already_done"] == 1
    assert sorted(p.name.split("-t")[1] for p in jobs_dir.iterdir()) == ["00000-a1", "00001-a1", "00002-a1"]
    assert lines[-1].startswith("zeros: 3/3 shards, 900/900 zeros (100.0%)")
    run.merge_and_verify()
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["boundaries_certified"] and [b["index"] for b in manifest["boundaries"]] == [
        20_301,
        20_601,
    ]

    # The same shards as one uninterrupted job each: the same checksums, shard by shard.
    from trainer.data.dataset import array_sha256
    from trainer.data.generate import generate_zeros

    for shard, job in zip(manifest["shards"], s.plan(), strict=True):
        zeros, _ = generate_zeros(job.first_index, job.count)
        assert shard["sha256"] == array_sha256(zeros)

    # A restart of a finished run launches nothing.
    again = ZerosRun(s, LocalRunner(s.run_dir, s.study(), TRAINER), TRAINER, out=lines.append, poll_s=0.2)
    assert again.generate() == {"already_done": 3, "launched": 0, "adopted": 0}

    # A shard whose bytes no longer match its record is computed again, and only that one.
    npy = out / "shards" / "00001.npy"
    npy.write_bytes(npy.read_bytes()[:-8] + b"\0" * 8)
    again = ZerosRun(s, LocalRunner(s.run_dir, s.study(), TRAINER), TRAINER, out=lines.append, poll_s=0.2)
    assert again.generate() == {"already_done": 2, "launched": 1, "adopted": 0}
    assert "zeros: shard 00001 does not match its recorded sha256; computing it again" in lines
    assert (out / ".orchestrator" / "jobs" / f"{s.study()}-t00001-a2").is_dir()
    assert (
        json.loads((out / "shards" / "00001.json").read_text())["sha256"] == manifest["shards"][1]["sha256"]
    )


def test_a_shard_that_keeps_failing_stops_the_run_naming_it(tmp_path):
    out = tmp_path / "d"
    s = ZerosSettings(1, 10, 1, False, str(out), str(out / ".orchestrator"), 1)
    failing = [sys.executable, "-c", "import sys; sys.exit(3)"]
    run = ZerosRun(s, LocalRunner(s.run_dir, s.study(), failing), TRAINER, out=lambda _l: None, poll_s=0.05)
    with pytest.raises(Exception, match=r"shard 00000 \(n=1..10\) failed 3 times, last: exit code 3 \(log: "):
        run.generate()
    assert not (out / "manifest.json").exists()


def test_throughput_interpolates_and_refuses_an_empty_table(tmp_path):
    t = Throughput({1_000_000: 100_000.0, 100_000_000: 10_000.0}, {})
    assert t._at(t.per_core, 10_000_000) == pytest.approx(31_622.8, rel=1e-4)  # log-log midpoint
    assert t.seconds(ShardJob(1, 10_000_000, 1000, "generate"), device="cuda", workers=1) is None
    (tmp_path / "z.yaml").write_text("per_core_zeros_per_s: {}\n")
    with pytest.raises(ConfigError, match="per_core_zeros_per_s is empty"):
        Throughput.load(tmp_path / "z.yaml")


def test_the_orchestrator_side_imports_no_trainer():
    code = "import sys, orchestrator.zeros, orchestrator.commands.zeros; print('trainer' in sys.modules or 'torch' in sys.modules)"
    import subprocess

    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=os.environ
    )
    assert out.stdout.strip() == "False"
