"""The swarm controller: a reconcile loop over one round of a study.

Each pass reads the truth — trials from the tuner, jobs from the runner, joined by trial id — and
moves every trial one step towards a final state:

  finished trial, job still running      -> cancel the job (a crash between stop and cancel)
  ACTIVE trial, `orchestrator stop` asked -> tuner.stop, cancel its job
  ACTIVE trial, no job                   -> launch attempt 1 (a crash between suggest and launch)
  ACTIVE trial, job queued               -> launch again (idempotent: completes a cut-short launch)
  ACTIVE trial, job running              -> report new metrics rows (val windows); early-stopping
                                            rules (val windows) -> tuner.stop, then cancel
  ACTIVE trial, job succeeded            -> final.json: completed -> complete; diverged -> infeasible
  ACTIVE trial, job failed/killed        -> retry in the same output dir (the trainer resumes) up to
                                            max_retries, then tuner.fail

then fills free slots with new suggestions (unless the budget, max_failed_trials or a stop says no)
and rewrites trials.json. Every decision is derived from stored state, and every write is
idempotent (tuner replays are no-ops, launches are keyed by (trial, attempt)), so killing the
controller at any instant and starting it again loses nothing and duplicates nothing.
"""

from __future__ import annotations

import enum
import json
import math
import os
import statistics
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orchestrator import storage, study_db
from orchestrator.atomic_files import append_line
from orchestrator.crash_injection import crash_point
from orchestrator.early_stopping import (
    VAL_OBJECTIVE,
    baseline_rule,
    finite,
    last_value,
    median_due,
    median_rule,
)
from orchestrator.errors import PermanentJobError, RetryableCloudError
from orchestrator.reading import DamagedFile, repair_hint
from orchestrator.round_plan import RoundPlan
from orchestrator.run_files import EVENTS_FILE, STOP_FILE, job_hours, write_snapshot
from orchestrator.runners.base import EXIT_BAD_INPUT, EXIT_ENVIRONMENT, Job, JobSpec, JobState, Runner
from orchestrator.swarm_settings import SwarmSettings
from orchestrator.trial_attrs import trial_attrs
from orchestrator.trial_command import job_spec
from orchestrator.trial_outputs import (
    Reader,
    best_baseline,
    best_baseline_name,
    final_metrics,
    parse_final,
    parse_metrics,
)
from orchestrator.tuners.base import Tuner, TunerState, TunerTrial


def round_owns(plan: RoundPlan, params: dict[str, Any], other_points: Sequence[dict[str, Any]]) -> bool:
    """Whether a trial belongs to a round: a design round (plan.points, as resolved at run time)
    owns the trials on its points; a Bayesian round (points None) every trial on no other round's point."""
    if plan.points is None:
        return not any(_same_point(params, p) for p in other_points)
    return any(_same_point(params, p) for p in plan.points)


def round_size(plan: RoundPlan, settings: SwarmSettings) -> int:
    """The trials a round may have: a design's points, else the swarm's max_trials."""
    return settings.max_trials if plan.points is None else len(plan.points)


def _same_point(params: dict, point: dict) -> bool:
    if set(params) != set(point):
        return False
    for k, v in point.items():
        w = params[k]
        if isinstance(v, int | float) and isinstance(w, int | float) and not isinstance(v, bool):
            if not math.isclose(float(v), float(w), rel_tol=1e-9, abs_tol=1e-15):
                return False
        elif v != w:
            return False
    return True


@dataclass
class PassResult:
    done: bool
    active: int
    launched: int
    reason: str = ""
    changed: bool = False  # a job finished during the pass: reconcile again without sleeping
    failed: bool = False  # the round ended without a usable result (reason says which and why)


class Controller:
    """Drives one round of a study to completion: `run(plan)`, the round's RoundPlan with the
    points it runs (a design's, resolved at run time; None for a Bayesian round).

    Args:
        settings: the resolved swarm settings.
        tuner: the round's tuner (whole study).
        runner: the backend's runner.
        read_output: (output_dir, file name) -> text or None.
        output_dir: trial id -> its output dir.
        clock: unix seconds (injected: tests move it by hand).
        sleep: waits between passes (injected: tests do not wait).
        on_event: called with each event dict (live progress).
    """

    def __init__(
        self,
        settings: SwarmSettings,
        tuner: Tuner,
        runner: Runner,
        read_output: Reader,
        output_dir: Callable[[str], str],
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        on_event: Callable[[dict], None] | None = None,
    ) -> None:
        self.s = settings
        self.tuner = tuner
        self.runner = runner
        self.read_output = read_output
        self.output_dir = output_dir
        self.clock = clock
        self.sleep = sleep
        self.on_event = on_event
        self.run_dir = Path(settings.run_dir)
        self._curves: dict[str, dict[int, dict]] = {}  # trial id -> epoch -> metrics row
        self._final_curves: set[str] = set()  # trials whose curve can no longer change
        self._read_this_pass: set[str] = set()  # curves already read since the pass began
        self._reported: dict[str, set[int]] = {}
        self._launch_blocked = ""  # why launches stop for the rest of this pass ("" = they do not)
        # The points of every round of the phase: a Bayesian round owns the trials on none of them.
        self._design_points = [p for r in settings.rounds for p in (r.points or [])]

    def owns(self, rnd: RoundPlan, trial: TunerTrial) -> bool:
        """Whether `trial` belongs to the round `rnd` (round_owns)."""
        return round_owns(rnd, trial.params, self._design_points)

    # -- events -----------------------------------------------------------------------------
    def event(self, kind: str, **fields: Any) -> None:
        ev = {"time": round(self.clock(), 3), "event": kind, **fields}
        path = self.run_dir / EVENTS_FILE
        try:
            append_line(path, json.dumps(ev, default=str))
        except (IsADirectoryError, PermissionError) as e:
            raise DamagedFile(
                path, f"cannot be appended to ({e.strerror})", repair_hint(self.run_dir)
            ) from None
        if self.on_event:
            self.on_event(ev)

    # -- job specs --------------------------------------------------------------------------
    def spec(self, trial: TunerTrial, attempt: int, rnd: RoundPlan) -> JobSpec:
        return job_spec(
            self.s, trial.id, trial.params, attempt, rnd.name, rnd.fixed, self.output_dir(trial.id)
        )

    def _launch(self, trial: TunerTrial, attempt: int, rnd: RoundPlan, **event: Any) -> int:
        """Launch (or complete the launch of) a trial's attempt; 1 if a job runs, 0 otherwise.

        A PermanentJobError (the backend refused the job: bad image, args) can never succeed on
        retry, so it fails this trial in the tuner. It, or a RetryableCloudError (quota spent for
        now), also stops further launches in this pass: the trials not launched yet stay ACTIVE in
        the tuner, untouched, and the next pass launches them (an ACTIVE trial without a job).
        """
        kind = event.pop("kind", "started")
        if self._launch_blocked:
            return 0
        try:
            self.runner.launch(self.spec(trial, attempt, rnd))
        except PermanentJobError as e:
            self._launch_blocked = f"trial {trial.id} could not be launched: {e}"
            reason = f"cannot launch attempt {attempt}: {e}"
            self.tuner.fail(trial.id, reason)
            self.event("failed", trial=trial.id, attempt=attempt, reason=reason)
            crash_point("fail")
            return 0
        except RetryableCloudError as e:
            self._launch_blocked = str(e)
            self.event("cloud_error", trial=trial.id, detail=f"launches wait for the next pass: {e}")
            return 0
        if kind:
            self.event(kind, trial=trial.id, attempt=attempt, **event)
        crash_point("launch")
        return 1

    # -- budget -----------------------------------------------------------------------------
    def gpu_hours(self, jobs: Sequence[Job], trials_by_id: dict[str, TunerTrial]) -> float:
        """Elapsed job time x accelerators, all attempts, in hours."""
        now = self.clock()
        total = 0.0
        for j in jobs:
            trial = trials_by_id.get(j.trial_id)
            team = self.s.team_of(trial.params) if trial else self.s.team
            total += job_hours(j, now) * self.s.team_machines[team].accelerator_count
        return total

    def trial_hours_estimate(self, jobs: Sequence[Job]) -> float:
        """Mean wall hours of finished successful jobs, else the profile's estimate."""
        done = [j.ended - j.started for j in jobs if j.state is JobState.SUCCEEDED and j.started and j.ended]
        return statistics.fmean(done) / 3600.0 if done else self.s.trial_hours_estimate

    # -- early stopping ---------------------------------------------------------------------
    def _curve(self, trial: TunerTrial, final: bool) -> dict[int, dict]:
        """A trial's metrics rows by epoch, read at most once per pass (the median rule asks for every
        running peer's curve once per running trial) and never again once final."""
        if trial.id in self._final_curves or trial.id in self._read_this_pass:
            curve = self._curves.get(trial.id, {})
        else:
            rows = parse_metrics(self.read_output(self.output_dir(trial.id), "metrics.jsonl"))
            curve = {int(r["epoch"]): r for r in rows}
            self._curves[trial.id] = curve
            self._read_this_pass.add(trial.id)
        if final:
            self._final_curves.add(trial.id)
        return curve

    def early_stop_reason(
        self, trial: TunerTrial, curve: dict[int, dict], peers: list[TunerTrial]
    ) -> str | None:
        """The early-stopping rules (orchestrator.early_stopping) on this trial's curve; its peers'
        curves are read only when the median rule judges it now."""
        rules = self.s.early_stopping
        epochs = int(self.s.team_machines[self.s.team_of(trial.params)].overrides["train.epochs"])
        reason = baseline_rule(rules.baseline_sigma, curve, epochs)
        if reason or not median_due(rules.median, curve, epochs):
            return reason
        others = [self._curve(p, final=p.state.finished) for p in peers if p.id != trial.id]
        return median_rule(rules.median, curve, others, epochs)

    # -- one pass ---------------------------------------------------------------------------
    def reconcile(self, rnd: RoundPlan) -> PassResult:
        """One pass. However it ends (a cloud error, a refused permission), trials.json is rewritten
        with what the tuner and runner hold, so `status` never shows a pass older than the last one."""
        try:
            return self._reconcile(rnd)
        except Exception:
            try:
                self.write_snapshot()
            except Exception:  # the backend that just failed may fail this read too; keep the first error
                pass
            raise

    def _reconcile(self, rnd: RoundPlan) -> PassResult:
        now = self.clock()
        self._read_this_pass.clear()
        self._launch_blocked = ""
        stop_requested = (self.run_dir / STOP_FILE).exists()
        all_trials = self.tuner.trials()
        trials_by_id = {t.id: t for t in all_trials}
        jobs = self.runner.jobs()
        latest: dict[str, Job] = {}
        attempts: dict[str, list[Job]] = {}
        for j in jobs:
            attempts.setdefault(j.trial_id, []).append(j)
            if j.trial_id not in latest or j.attempt > latest[j.trial_id].attempt:
                latest[j.trial_id] = j
        mine = [t for t in all_trials if self.owns(rnd, t)]
        launched = 0

        for t in all_trials:
            job = latest.get(t.id)
            step = decide(t.state, self.owns(rnd, t), stop_requested, job.state if job is not None else None)
            launched += self._apply(step, t, job, rnd, mine, attempts.get(t.id, [job] if job else []))

        # Re-read after this pass's writes so the counts below are the truth, not a guess.
        all_trials = self.tuner.trials()
        trials_by_id = {t.id: t for t in all_trials}
        mine = [t for t in all_trials if self.owns(rnd, t)]
        active = [t for t in mine if t.state is TunerState.ACTIVE]
        failed = sum(t.state is TunerState.FAILED for t in mine)
        reason = ""
        swarm_failed = False
        if stop_requested:
            reason = "stopped by `orchestrator stop`"
        elif failed >= self.s.max_failed_trials:
            reason = (
                f"{failed} failed trials reached max_failed_trials={self.s.max_failed_trials}"
                + _first_failure(mine)
            )
            swarm_failed = True
        free = self.s.parallel - len(active)
        room = round_size(rnd, self.s) - len(mine)
        if not reason and free > 0 and room > 0 and not self._launch_blocked:
            now_jobs = self.runner.jobs() if launched else jobs
            used = self.gpu_hours(now_jobs, trials_by_id)
            per_trial = self.trial_hours_estimate(now_jobs) * max(1, self.s.accelerator_count)
            committed = used + per_trial * len(active)
            affordable = (
                max(0, int((self.s.gpu_hour_cap - committed) // per_trial)) if per_trial > 0 else free
            )
            want = min(free, room, affordable)
            if want < min(free, room):
                self.event(
                    "budget",
                    gpu_hours=round(used, 4),
                    cap=self.s.gpu_hour_cap,
                    detail=f"{min(free, room) - want} trial(s) held back by the GPU-hour cap",
                )
            if want > 0:
                new = self.tuner.suggest(want)
                crash_point("suggest")
                for t in new:
                    launched += self._launch(t, 1, rnd, params=t.params)
                active += new
                mine += new
                room -= len(new)
            elif not active:
                reason = f"GPU-hour cap {self.s.gpu_hour_cap:g} h reached ({used:.3g} h used)"
        done = not active and (bool(reason) or room <= 0 or not self._can_suggest_more(rnd, mine))
        if done and not reason:
            reason = "round complete"
            if mine and not any(t.state is TunerState.COMPLETED for t in mine):
                swarm_failed = True
                counts = Counter(t.state.value.lower() for t in mine)
                reason = (
                    f"no trial of round {rnd.name} completed ("
                    + ", ".join(f"{n} {state}" for state, n in sorted(counts.items()))
                    + ")"
                    + _first_failure(mine)
                )
        later = self.write_snapshot(now)
        crash_point("snapshot")
        # A job that finished while this pass ran gets the next pass at once, not after poll_s.
        was_running = {j.job_id for j in jobs if not j.state.finished}
        changed = any(j.state.finished and j.job_id in was_running for j in later)
        return PassResult(
            done=done,
            active=len(active),
            launched=launched,
            reason=reason,
            changed=changed,
            failed=swarm_failed,
        )

    def _apply(
        self,
        step: Step,
        t: TunerTrial,
        job: Job | None,
        rnd: RoundPlan,
        mine: list[TunerTrial],
        attempts: list[Job],
    ) -> int:
        """Carry out one trial's step of the table (the I/O); returns the jobs it launched."""
        if step is Step.LEAVE:
            return 0
        if step is Step.LAUNCH:
            return self._launch(t, 1, rnd, params=t.params)
        if step is Step.STOP:
            value = last_value(self._curve(t, final=False))
            self.tuner.stop(t.id, "stopped by `orchestrator stop`", value=value)
            self.event("stopped", trial=t.id, reason="orchestrator stop")
            crash_point("stop")
            if job is not None and not job.state.finished:
                self.runner.cancel(job.job_id)
                crash_point("cancel")
            return 0
        assert job is not None
        if step is Step.CANCEL_JOB:
            self.runner.cancel(job.job_id)
            crash_point("cancel finished trial's job")
        elif step is Step.RELAUNCH:
            self._launch(t, job.attempt, rnd, kind=None)  # completes a launch cut short
        elif step is Step.WATCH:
            self._running(t, job, mine)
        elif step is Step.COLLECT:
            return self._collect(t, job, rnd, attempts)
        else:  # Step.RETRY: FAILED, or CANCELLED by someone other than this controller
            return self._retry_or_fail(t, job, job.detail or job.state.value.lower(), rnd, attempts)
        return 0

    def _collect(self, t: TunerTrial, job: Job, rnd: RoundPlan, attempts: list[Job]) -> int:
        """A succeeded job: its final.json completes the trial, marks it infeasible, or asks again."""
        out_dir = job.output_dir or self.output_dir(t.id)
        text = self.read_output(out_dir, "final.json")
        final = parse_final(text)
        outcome = judge_final(final)
        if outcome is Outcome.REDERIVE:
            # The trainer exited 0, so its work is in the checkpoint: a final.json lost or
            # damaged since is re-derived by running it again on the same output dir (it
            # resumes at the last epoch and writes final.json anew), not counted as a failure.
            what = "missing" if text is None else "damaged"
            set_aside = _set_aside(out_dir, "final.json") if text is not None else None
            detail = (
                f"exit 0 but final.json is {what}"
                + (f" (kept as {set_aside})" if set_aside else "")
                + "; re-deriving it from the checkpoint"
            )
            return self._retry_or_fail(t, job, detail, rnd, attempts)
        assert final is not None
        if outcome is Outcome.COMPLETED:
            self._report_curve(t)
            metrics = final_metrics(final)
            self.tuner.annotate(t.id, trial_attrs(final, out_dir))
            self.tuner.complete(t.id, float(final["extrapolation_error"]), metrics)
            study_db.backup(self.run_dir, int(t.id) if t.id.isdigit() else 0)
            self.event(
                "completed",
                trial=t.id,
                value=final["extrapolation_error"],
                stderr=metrics.get("extrapolation_stderr"),
                best_baseline=best_baseline(metrics),
                best_baseline_name=best_baseline_name(metrics),
                paired_diff=metrics.get("paired_diff"),
                paired_stderr=metrics.get("paired_stderr"),
            )
            crash_point("complete")
            return 0
        if outcome is Outcome.DIVERGED:
            reason = f"diverged: {final.get('reason') or 'no reason given'}"
            self.tuner.infeasible(t.id, reason)
            self.event("infeasible", trial=t.id, reason=reason)
            crash_point("infeasible")
            return 0
        detail = f"exit 0 but final.json says {final.get('status')!r}"
        return self._retry_or_fail(t, job, detail, rnd, attempts)

    def _can_suggest_more(self, rnd: RoundPlan, mine: list[TunerTrial]) -> bool:
        left = self.tuner.remaining() if rnd.points is not None else None
        return left > 0 if left is not None else len(mine) < round_size(rnd, self.s)

    def _running(self, t: TunerTrial, job: Job, peers: list[TunerTrial]) -> None:
        curve = self._curve(t, final=False)
        self._report_curve(t, curve)
        reason = self.early_stop_reason(t, curve, peers)
        if reason:
            self.tuner.stop(t.id, reason, value=last_value(curve))
            self.event("stopped", trial=t.id, reason=reason)
            crash_point("early stop")
            self.runner.cancel(job.job_id)
            crash_point("cancel")

    def _report_curve(self, t: TunerTrial, curve: dict[int, dict] | None = None) -> None:
        curve = curve if curve is not None else self._curve(t, final=True)
        done = self._reported.setdefault(t.id, set())
        for epoch in sorted(curve):
            value = curve[epoch].get(VAL_OBJECTIVE)
            if epoch not in done and finite(value):
                self.tuner.report(t.id, epoch, float(value))
                done.add(epoch)

    def _retry_or_fail(
        self, t: TunerTrial, job: Job, detail: str, rnd: RoundPlan, attempts: Sequence[Job]
    ) -> int:
        """Launch the next attempt, unless the trainer refused its input or the retries are used up
        (retry_verdict)."""
        verdict = retry_verdict(job, attempts, self.s.max_retries)
        if verdict is Retry.AGAIN:
            return self._launch(t, job.attempt + 1, rnd, kind="retried", detail=detail)
        if verdict is Retry.REFUSED:
            reason = f"the trainer refused its input (not retried): {detail}"
        else:
            reason = f"gave up after {job.attempt} attempt(s): {detail}"
        self.tuner.fail(t.id, reason)
        self.event("failed", trial=t.id, reason=reason)
        crash_point("fail")
        return 0

    # -- snapshot ---------------------------------------------------------------------------
    def write_snapshot(self, now: float | None = None) -> list[Job]:
        """Rewrite trials.json from the tuner and the runner; returns the jobs it saw."""
        jobs = self.runner.jobs()
        write_snapshot(self.s, self.tuner.trials(), jobs, self.output_dir, now or self.clock())
        return jobs

    # -- the loop ---------------------------------------------------------------------------
    def run(self, rnd: RoundPlan, max_passes: int | None = None) -> PassResult:
        """Reconcile until the round is done (or `max_passes` passes), sleeping poll_s between passes."""
        self.event("round", round=rnd.name, max_trials=round_size(rnd, self.s), pid=os.getpid())
        passes = 0
        while True:
            try:
                result = self.reconcile(rnd)
            except RetryableCloudError as e:
                # The backend's own backoff is spent (a long quota or outage window). Every write of
                # a pass is idempotent and the next pass re-reads the truth, so trying the whole
                # pass again later neither loses nor duplicates a trial.
                passes += 1
                self.event("cloud_error", round=rnd.name, detail=str(e), retry_in_s=self.s.backend.poll_s)
                if max_passes is not None and passes >= max_passes:
                    raise
                self.sleep(self.s.backend.poll_s)
                continue
            passes += 1
            if result.done or (max_passes is not None and passes >= max_passes):
                if result.done:
                    self.event("round_done", round=rnd.name, reason=result.reason)
                return result
            if not result.changed:
                self.sleep(self.s.backend.poll_s)


# Attempts a trial may use beyond max_retries on re-derivations and errors of the environment, so a
# disk that stays full or a final.json that is damaged again and again still ends.
MAX_FREE_ATTEMPTS = 5


def _counts_as_failure(job: Job) -> bool:
    """Whether a finished attempt uses up one of the trial's retries (see _retry_or_fail)."""
    return job.state is not JobState.SUCCEEDED and job.exit_code != EXIT_ENVIRONMENT


def _first_failure(trials: Sequence[TunerTrial]) -> str:
    """'; first failure: trial N: <reason>' of the lowest-numbered failed or infeasible trial, else ''."""
    bad = [t for t in trials if t.state in (TunerState.FAILED, TunerState.INFEASIBLE)]
    if not bad:
        return ""
    first = min(bad, key=lambda t: int(t.id) if t.id.isdigit() else 0)
    return f"; first failure: trial {first.id}: {first.reason or first.state.value.lower()}"


def _set_aside(output_dir: str, name: str) -> str | None:
    """Rename a damaged local output file to <name>.damaged-<n> (never deleted); None on gs://."""
    if storage.is_gcs(output_dir):
        return None
    path = Path(output_dir) / name
    n = 1
    while (aside := path.with_name(f"{name}.damaged-{n}")).exists():
        n += 1
    try:
        path.rename(aside)
    except FileNotFoundError:
        return None
    return aside.name


# -- the decisions (pure: state in, verdict out) ----------------------------------------------------
class Step(enum.Enum):
    """What a pass does with one trial: a row of the table in the module docstring."""

    LEAVE = "nothing (finished, or another round's)"
    CANCEL_JOB = "cancel the job of a finished trial"
    STOP = "stop the trial (orchestrator stop), cancel its job if it has one"
    LAUNCH = "launch attempt 1"
    RELAUNCH = "launch the queued attempt again"
    WATCH = "report new metrics rows, apply the early-stopping rules"
    COLLECT = "read final.json"
    RETRY = "retry in the same output dir, or fail"


def decide(state: TunerState, owned: bool, stop_requested: bool, job: JobState | None) -> Step:
    """The table of the module docstring for one trial: its tuner state, whether this round owns
    it, whether `orchestrator stop` asked, and its latest job's state (None: no job)."""
    if state.finished:
        return Step.CANCEL_JOB if job is not None and not job.finished else Step.LEAVE
    if not owned:
        return Step.LEAVE  # an ACTIVE trial of another round: that round's controller owns it
    if stop_requested:
        return Step.STOP
    if job is None:
        return Step.LAUNCH
    return {
        JobState.QUEUED: Step.RELAUNCH,
        JobState.RUNNING: Step.WATCH,
        JobState.SUCCEEDED: Step.COLLECT,
    }.get(job, Step.RETRY)


class Outcome(enum.Enum):
    """What a succeeded job's final.json says."""

    COMPLETED = "completed with a finite objective"
    DIVERGED = "diverged: infeasible"
    REDERIVE = "missing or damaged: run again on the same output dir"
    UNEXPECTED = "another status: a failed attempt"


def judge_final(final: dict[str, Any] | None) -> Outcome:
    status = (final or {}).get("status")
    if final is None or not isinstance(status, str):
        return Outcome.REDERIVE
    if status == "completed" and finite(final.get("extrapolation_error")):
        return Outcome.COMPLETED
    return Outcome.DIVERGED if status == "diverged" else Outcome.UNEXPECTED


class Retry(enum.Enum):
    AGAIN = "launch the next attempt"
    REFUSED = "the trainer refused its input: never retried"
    GIVE_UP = "retries used up"


def retry_verdict(job: Job, attempts: Sequence[Job], max_retries: int) -> Retry:
    """Whether a trial whose latest attempt `job` ended without a result runs again.

    Attempts that do not count against max_retries: one that exited 0 (its final.json is being
    re-derived) and one the environment failed (disk full, permission: EXIT_ENVIRONMENT), up to
    MAX_FREE_ATTEMPTS of them.
    """
    if job.exit_code == EXIT_BAD_INPUT:
        return Retry.REFUSED
    counted = sum(_counts_as_failure(a) for a in attempts)
    free = len(attempts) - counted
    return Retry.AGAIN if counted <= max_retries and free <= MAX_FREE_ATTEMPTS else Retry.GIVE_UP
