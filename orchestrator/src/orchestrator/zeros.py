"""`orchestrator zeros`: a sharded zeros dataset made by a fan-out of `trainer zeros` jobs.

The range n = start .. start + count - 1 is cut into shards of equal counts (with --table, zeros
1 .. 2,001,052 come from the Odlyzko table as shard 0 and the rest are cut into --shards). Shard k
is one job of the swarm's runners (local process pool or Vertex CustomJobs) running

    trainer zeros generate --start A --count C --out DIR --shard k

which writes DIR/shards/NNNNN.npy and then its record DIR/shards/NNNNN.json: a record exists
only for a complete shard. The state is on disk, never in this process: the plan in the run
directory, the runner's job files (local) or labels (Vertex), and the shard records. Killed and
restarted with the same flags, the run adopts the jobs still running, counts the shards whose
record is there, and launches only the missing ones, so no shard is computed twice. When every
shard is there, `trainer zeros merge DIR --expect PLAN` checks them all (checksums, the count
certificate at every boundary) and writes DIR/manifest.json last; `trainer zeros verify DIR`
then prints the full check.

This module never imports torch or the trainer: jobs, merge and verify are `trainer` commands.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import subprocess
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import yaml

from orchestrator import storage
from orchestrator.atomic_files import write_json_atomic
from orchestrator.crash_injection import crash_point
from orchestrator.errors import ConfigError, OrchestratorError
from orchestrator.runners.base import Job, JobSpec, Runner

TABLE_COUNT = 2_001_052  # zeros in the Odlyzko table (`trainer zeros odlyzko`)
MAX_ATTEMPTS = 3
BYTES_PER_ZERO = 8
_PROGRESS = re.compile(r"generate: ([\d,]+)/([\d,]+) zeros")


@dataclass(frozen=True)
class ShardJob:
    """Shard k: zeros first_index .. first_index + count - 1, from `source` (generate or odlyzko)."""

    k: int
    first_index: int
    count: int
    source: str

    @property
    def name(self) -> str:
        return f"{self.k:05d}"

    @property
    def last_index(self) -> int:
        return self.first_index + self.count - 1


def plan_shards(start: int, count: int, shards: int, *, table: bool) -> list[ShardJob]:
    """The shards of n = start .. start + count - 1.

    Raises:
        ConfigError: naming the flag, on a plan that cannot be made.
    """
    end = start + count  # one past the last zero
    jobs: list[ShardJob] = []
    if table:
        if start != 1:
            raise ConfigError(
                f"--start {start}: --table supplies zeros 1..{TABLE_COUNT:,}, so --start must be 1"
            )
        jobs.append(ShardJob(0, 1, min(TABLE_COUNT, count), "odlyzko"))
        start = jobs[0].last_index + 1
    remaining = end - start
    if remaining <= 0:
        return jobs
    if shards > remaining:
        raise ConfigError(f"--shards {shards}: more shards than the {remaining:,} zeros to generate")
    bounds = [start + (remaining * i) // shards for i in range(shards + 1)]
    for i in range(shards):
        jobs.append(ShardJob(len(jobs), bounds[i], bounds[i + 1] - bounds[i], "generate"))
    return jobs


def trainer_args(job: ShardJob, out: str, *, device: str, workers: int) -> tuple[str, ...]:
    """argv after `trainer` for one shard's job."""
    if job.source == "odlyzko":
        return ("zeros", "odlyzko", "--count", str(job.count), "--out", out, "--shard", str(job.k))
    args = ["zeros", "generate", "--start", str(job.first_index), "--count", str(job.count), "--out", out]
    args += ["--shard", str(job.k), "--device", device]
    if workers > 1:
        args += ["--workers", str(workers)]
    return tuple(args)


# --- throughput and cost ------------------------------------------------------------------------


@dataclass(frozen=True)
class Throughput:
    """Measured zeros per CPU-second at a few heights n (bench/zeros.py --per-core), and per GPU
    second where measured; interpolated log-log in n, held flat outside the measured range."""

    per_core: dict[int, float]
    per_gpu: dict[int, float]

    @staticmethod
    def load(path: str | os.PathLike) -> Throughput:
        try:
            raw = yaml.safe_load(Path(path).read_text()) or {}
            per_core = {int(k): float(v) for k, v in (raw.get("per_core_zeros_per_s") or {}).items()}
            per_gpu = {int(k): float(v) for k, v in (raw.get("per_gpu_zeros_per_s") or {}).items()}
        except (OSError, yaml.YAMLError, TypeError, ValueError, AttributeError) as e:
            raise ConfigError(f"{path}: cannot read the measured throughput ({e})") from e
        if not per_core:
            raise ConfigError(f"{path}: per_core_zeros_per_s is empty")
        return Throughput(per_core, per_gpu)

    @staticmethod
    def _at(table: dict[int, float], n: float) -> float | None:
        if not table:
            return None
        points = sorted(table.items())
        if n <= points[0][0]:
            return points[0][1]
        for (n0, r0), (n1, r1) in zip(points, points[1:], strict=False):
            if n <= n1:
                f = math.log(n / n0) / math.log(n1 / n0)
                return math.exp(math.log(r0) + f * math.log(r1 / r0))
        # Beyond the last height: the cost per zero grows like sqrt(t) ~ sqrt(n / log n).
        n_last, r_last = points[-1]
        return r_last * math.sqrt((n_last / math.log(n_last)) / (n / math.log(n)))

    def seconds(self, job: ShardJob, *, device: str, workers: int) -> float | None:
        """Estimated wall seconds of one job (None: no measured figure for the device)."""
        if job.source == "odlyzko":
            return 5.0
        mid = job.first_index + job.count / 2
        if device == "cuda":
            rate = self._at(self.per_gpu, mid)
            return None if rate is None else job.count / rate
        rate = self._at(self.per_core, mid)
        return job.count / (rate * workers)


# --- shard records ------------------------------------------------------------------------------


_join = storage.join


def _read(uri: str) -> str | None:
    if storage.is_gcs(uri):
        head, _, name = uri.rpartition("/")
        return storage.read_gcs(head, name)
    try:
        return Path(uri).read_text()
    except FileNotFoundError:
        return None


def _npy_sha256(path: Path, count: int) -> str | None:
    """sha256 of a 1-D little-endian float64 .npy's data (what the record's sha256 covers), or
    None if the file is not such an array of `count` zeros."""
    import numpy as np

    try:
        with open(path, "rb") as f:
            major, _ = np.lib.format.read_magic(f)
            read_header = (
                np.lib.format.read_array_header_1_0 if major == 1 else np.lib.format.read_array_header_2_0
            )
            shape, _, dtype = read_header(f)
            if shape != (count,) or dtype != np.dtype("<f8"):
                return None
            digest = hashlib.sha256()
            while block := f.read(8 << 20):
                digest.update(block)
    except (OSError, ValueError):
        return None
    return digest.hexdigest()


def shard_done(out: str, job: ShardJob, *, verify: bool = False) -> bool:
    """True when shard k's record is there, names the planned range, and (local) its .npy has the
    planned size, or with verify=True the recorded sha256. A record for another range is a
    ConfigError: DIR holds other zeros."""
    text = _read(_join(out, "shards", f"{job.name}.json"))
    if text is None:
        return False
    try:
        record = json.loads(text)
        first, count = int(record["first_index"]), int(record["count"])
    except (json.JSONDecodeError, KeyError, TypeError, ValueError):
        return False  # a torn record counts as missing; the job rewrites it
    if (first, count) != (job.first_index, job.count):
        raise ConfigError(
            f"--start: {out} already holds shard {job.name} with zeros n={first:,}..{first + count - 1:,}, "
            f"not the planned n={job.first_index:,}..{job.last_index:,}; choose another --out or remove it"
        )
    if storage.is_gcs(out):
        return True
    npy = Path(out, "shards", f"{job.name}.npy")
    if verify:
        return _npy_sha256(npy, job.count) == record.get("sha256")
    return npy.is_file() and npy.stat().st_size >= BYTES_PER_ZERO * job.count


def drop_unverified(out: str, plan: list[ShardJob], say: Callable[[str], None]) -> None:
    """Remove the record (and array) of every local shard whose data does not match its record's
    sha256, so the run computes it again; gs:// shards are checked by the merge instead."""
    if storage.is_gcs(out):
        return
    for job in plan:
        record = Path(out, "shards", f"{job.name}.json")
        if record.exists() and not shard_done(out, job, verify=True):
            say(f"zeros: shard {job.name} does not match its recorded sha256; computing it again")
            record.unlink()
            Path(out, "shards", f"{job.name}.npy").unlink(missing_ok=True)


# --- the run ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ZerosSettings:
    start: int
    count: int
    shards: int
    table: bool
    out: str
    run_dir: str
    parallel: int
    device: str = "cpu"
    workers: int = 1
    team: str = "zeros-cpu"  # the runner's machine key (Vertex: from configs/backends/vertex.yaml)

    def plan(self) -> list[ShardJob]:
        return plan_shards(self.start, self.count, self.shards, table=self.table)

    def study(self) -> str:
        return study_name(self.out)


def study_name(out: str) -> str:
    """Label-safe name of a dataset's jobs, the same on every restart (from its --out)."""
    return "zeros-" + hashlib.sha256(out.rstrip("/").encode()).hexdigest()[:10]


def check_plan(settings: ZerosSettings, plan: list[ShardJob]) -> None:
    """Write the plan into the run directory, or check that it is the one written by an earlier run.

    Raises:
        ConfigError: naming --start/--count/--shards/--table when DIR was planned otherwise.
    """
    path = Path(settings.run_dir, "zeros-plan.json")
    planned = {
        "out": settings.out,
        "start": settings.start,
        "count": settings.count,
        "shards": settings.shards,
        "table": settings.table,
        "jobs": [asdict(j) for j in plan],
    }
    if path.exists():
        old = json.loads(path.read_text())
        if old.get("jobs") != planned["jobs"]:
            raise ConfigError(
                f"--start/--count/--shards/--table: {settings.out} was planned by an earlier run as "
                f"--start {old.get('start')} --count {old.get('count')} --shards {old.get('shards')}"
                f"{' --table' if old.get('table') else ''} ({path}); repeat those flags, or choose another --out"
            )
        return
    write_json_atomic(path, planned, indent=2)


def check_out(settings: ZerosSettings, plan: list[ShardJob]) -> None:
    """An existing merged dataset at --out must be this plan's; and enough disk for what is missing.

    Raises:
        ConfigError: naming --out or --count.
    """
    out = settings.out
    text = _read(_join(out, "manifest.json"))
    if text is not None:
        try:
            manifest = json.loads(text)
            got = [(int(s["first_index"]), int(s["count"])) for s in manifest.get("shards") or [manifest]]
        except (json.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as e:
            raise ConfigError(f"--out {out}: holds an unreadable manifest.json ({e})") from e
        if got != [(j.first_index, j.count) for j in plan]:
            first = got[0][0] if got else "?"
            last = got[-1][0] + got[-1][1] - 1 if got else "?"
            raise ConfigError(
                f"--start: {out} already holds a dataset of zeros n={first}..{last} in {len(got)} shard(s), "
                "not this plan; choose another --out or remove it"
            )
    if storage.is_gcs(out):
        return
    missing = sum(j.count for j in plan if not shard_done(out, j))
    if missing:
        check_space(out, missing)


def check_space(out: str, count: int) -> None:
    """Ask the trainer (`trainer zeros check-space`, the one free-space rule of its writers) whether
    the disk under `out` takes `count` more zeros; the orchestrator may not import the trainer.

    Raises:
        ConfigError: the trainer's line (naming --count), or no trainer to ask.
    """
    from orchestrator.phases import checking_trainer

    argv = [*checking_trainer(), "zeros", "check-space", out, "--count", str(count)]
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    except OSError as e:
        raise ConfigError(
            f"cannot run {argv[0]} to check the free space at {out} ({e.strerror}); install the trainer "
            "(`make install`) or point $ZETA_SWARM_TRAINER at it"
        ) from None
    if proc.returncode != 0:
        lines = [line for line in proc.stderr.splitlines() if line.strip()]
        problem = lines[-1].removeprefix("trainer: error: ") if lines else f"exit {proc.returncode}"
        if problem.startswith("--count: needs "):
            problem = (
                f"--count: the {count:,} zeros still to make need {problem.removeprefix('--count: needs ')}"
            )
        raise ConfigError(problem)


def _progress_of(job: Job) -> int:
    """Zeros a running local job has made so far, from the last progress line of its log."""
    if not job.output_dir or storage.is_gcs(job.output_dir):
        return 0
    log = Path(job.output_dir, f"attempt-{job.attempt}.log")
    try:
        with open(log, "rb") as f:
            f.seek(max(0, log.stat().st_size - 4096))
            tail = f.read().decode("utf-8", "replace")
    except FileNotFoundError:
        return 0
    found = _PROGRESS.findall(tail)
    return int(found[-1][0].replace(",", "")) if found else 0


class ZerosRun:
    """The fan-out: launch missing shards up to `parallel` at once, retry failures, then merge.

    Args:
        settings: what to make and where.
        runner: a Runner for settings.study() (LocalRunner or VertexRunner).
        trainer_command: argv prefix of `trainer` on this machine, for merge and verify.
        out: receives progress lines.
        clock: monotonic seconds (injected in tests).
        sleep: waits between passes (default: the runner's `wait`, which wakes when a local job
            exits, else time.sleep).
        progress_s: seconds between progress lines.
        poll_s: seconds between passes.
    """

    def __init__(
        self,
        settings: ZerosSettings,
        runner: Runner,
        trainer_command: list[str],
        *,
        out: Callable[[str], None] = print,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] | None = None,
        progress_s: float = 10.0,
        poll_s: float = 2.0,
    ):
        self.settings = settings
        self.runner = runner
        self.trainer_command = trainer_command
        self.out = out
        self.clock = clock
        self.sleep = sleep or getattr(runner, "wait", None) or time.sleep
        self.progress_s = progress_s
        self.poll_s = poll_s
        self.plan = settings.plan()

    def _spec(self, job: ShardJob, attempt: int) -> JobSpec:
        s = self.settings
        log_dir = (
            _join(s.out, ".jobs", job.name)
            if storage.is_gcs(s.out)
            else str(Path(s.run_dir, "logs", job.name))
        )
        return JobSpec(
            study=s.study(),
            trial_id=job.name,
            attempt=attempt,
            phase=0,
            team=s.team,
            trainer_args=trainer_args(job, s.out, device=s.device, workers=s.workers),
            output_dir=log_dir,
            labels={"purpose": "zeros"},
        )

    def generate(self) -> dict[str, int]:
        """Run until every shard's record is there. Returns counts: launched, adopted, already done.

        Raises:
            OrchestratorError: a shard failed MAX_ATTEMPTS times (naming it and its log).
        """
        s = self.settings
        drop_unverified(s.out, self.plan, self.out)
        done = {j.k for j in self.plan if shard_done(s.out, j)}
        total = sum(j.count for j in self.plan)
        # Throughput and ETA count generated zeros only: a table shard lands all at once.
        generated = [j for j in self.plan if j.source == "generate"]
        base = sum(j.count for j in generated if j.k in done)
        counts = {"already_done": len(done), "launched": 0, "adopted": 0}
        began, last_line = self.clock(), -math.inf
        first_pass = True
        while True:
            jobs = self.runner.jobs()
            by_shard: dict[int, list[Job]] = {}
            for job in jobs:
                if job.trial_id.isdigit():
                    by_shard.setdefault(int(job.trial_id), []).append(job)
            running = 0
            in_flight = 0
            for shard in self.plan:
                if shard.k in done:
                    continue
                attempts = sorted(by_shard.get(shard.k, []), key=lambda j: j.attempt)
                latest = attempts[-1] if attempts else None
                if latest is not None and not latest.state.finished:
                    running += 1
                    in_flight += _progress_of(latest)
                    counts["adopted"] += first_pass  # launched by an earlier, killed run
                    continue
                if shard_done(s.out, shard):  # finished (maybe while no controller was watching)
                    done.add(shard.k)
                    crash_point("shard done")
                    continue
                if latest is not None and len(attempts) >= MAX_ATTEMPTS:
                    raise OrchestratorError(
                        f"shard {shard.name} (n={shard.first_index:,}..{shard.last_index:,}) failed "
                        f"{len(attempts)} times, last: {latest.detail or latest.state.value}"
                        f"{self._log_hint(latest)}"
                    )
                if running >= s.parallel:
                    continue
                attempt = latest.attempt + 1 if latest is not None else 1
                self.runner.launch(self._spec(shard, attempt))
                crash_point("shard launched")
                counts["launched"] += 1
                running += 1
            made = sum(j.count for j in generated if j.k in done) + in_flight
            made_all = made + sum(j.count for j in self.plan if j.k in done and j.source != "generate")
            now = self.clock()
            finished = len(done) == len(self.plan)
            if finished or now - last_line >= self.progress_s:
                last_line = now
                rate = (made - base) / (now - began) if now > began else 0.0
                self.out(self._progress_line(made_all, total, rate, len(done), running))
            first_pass = False
            if finished:
                return counts
            self.sleep(self.poll_s)

    def _progress_line(self, made: int, total: int, rate: float, shards_done: int, running: int) -> str:
        eta = f"{(total - made) / rate:,.0f} s" if rate > 0 else "?"
        return (
            f"zeros: {shards_done}/{len(self.plan)} shards, {made:,}/{total:,} zeros "
            f"({100 * made / total:.1f}%), {rate:,.0f} zeros/s, eta {eta}, {running} running"
        )

    def _log_hint(self, job: Job) -> str:
        if job.output_dir and not storage.is_gcs(job.output_dir):
            return f" (log: {Path(job.output_dir, f'attempt-{job.attempt}.log')})"
        return ""

    def merge_and_verify(self) -> None:
        """`trainer zeros merge DIR --expect PLAN`, then `trainer zeros verify DIR`; output passes through.

        Raises:
            OrchestratorError (exit 2): either command failed; its own message is above.
        """
        expect = json.dumps([[j.first_index, j.count] for j in self.plan])
        for args in (["merge", self.settings.out, "--expect", expect], ["verify", self.settings.out]):
            proc = subprocess.run([*self.trainer_command, "zeros", *args], check=False)
            if proc.returncode != 0:
                error = OrchestratorError(
                    f"trainer zeros {args[0]} {self.settings.out} failed (exit {proc.returncode})"
                )
                error.exit_code = 2
                raise error


def dry_run(
    settings: ZerosSettings, throughput: Throughput, *, machine: str, price_per_hour: float | None
) -> dict:
    """The jobs with estimated hours and cost (price_per_hour None: local, no cost)."""
    rows = []
    for job in settings.plan():
        seconds = throughput.seconds(job, device=settings.device, workers=settings.workers)
        hours = None if seconds is None else seconds / 3600
        rows.append(
            {
                "shard": job.name,
                "first_index": job.first_index,
                "last_index": job.last_index,
                "count": job.count,
                "source": job.source,
                "argv": [
                    "trainer",
                    *trainer_args(job, settings.out, device=settings.device, workers=settings.workers),
                ],
                "machine": machine,
                "est_hours": None if hours is None else round(hours, 6),
                "est_cost_usd": None
                if hours is None or price_per_hour is None
                else round(hours * price_per_hour, 6),
            }
        )
    known = [r["est_hours"] for r in rows if r["est_hours"] is not None]
    job_hours = sum(known) if len(known) == len(rows) else None
    longest = max(known) if known else None
    wall = None
    if job_hours is not None:  # slots filled in order; at least the longest job
        wall = max(job_hours / min(settings.parallel, len(rows)), longest or 0.0)
    return {
        "out": settings.out,
        "start": settings.start,
        "count": settings.count,
        "shards": len(rows),
        "parallel": settings.parallel,
        "device": settings.device,
        "workers_per_job": settings.workers,
        "machine": machine,
        "price_per_hour_usd": price_per_hour,
        "est_job_hours": None if job_hours is None else round(job_hours, 3),
        "est_wall_hours": None if wall is None else round(wall, 3),
        "est_cost_usd": None
        if job_hours is None or price_per_hour is None
        else round(job_hours * price_per_hour, 2),
        "jobs": rows,
    }
