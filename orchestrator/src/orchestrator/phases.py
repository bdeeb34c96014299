"""Phases 1-3 on top of the controller: which rounds run, how a round's design is resolved from
earlier results, and what a phase leaves behind.

  Phase 1: the prime-set round, then the learning-rate round on the winning set (`carry`); writes
           RUN_DIR/lock.yaml with the winners.
  Phase 2: one Bayesian round over the two GUE weights on the locked architecture.
  Phase 3: the championship: phase 2's top configurations x replicas (seeds), plus the control
           team (Team 1 full-batch) with the winning weights, as one fixed design.
  Playbook: tiered rounds, each followed by a full evaluation of its top configurations
           (orchestrator.playbook; the hooks here are marked "playbook hook").

Everything a phase decides is derived from the study and earlier run directories, so rerunning a
phase after a crash resumes it where it stopped.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from orchestrator import backends, playbook, promotion, study_db
from orchestrator.atomic_files import write_text_atomic
from orchestrator.controller import Controller, PassResult
from orchestrator.early_stopping import EARLY_STOPPING_OFF
from orchestrator.errors import ConfigError, OrchestratorError, SwarmFailed
from orchestrator.reading import DamagedFile, repair_hint
from orchestrator.round_plan import RoundPlan
from orchestrator.rounds import kind_of, whole_study
from orchestrator.run_files import (
    EVENTS_FILE,
    LOCK_FILE,
    SETTINGS_FILE,
    STOP_FILE,
    TRIALS_FILE,
    ControllerLock,
    read_settings,
    read_snapshot,
    record_run_id,
)
from orchestrator.swarm_settings import SwarmSettings
from orchestrator.trial_command import trainer_args
from orchestrator.trial_outputs import BEATS, WITHIN_NOISE, WORSE, vs_baseline
from orchestrator.tuners.base import CategoricalParam, IntParam, Param, TunerState, TunerTrial
from orchestrator.values import decode

LOCK_NAME = "lock.yaml"


class RoundFailed(SwarmFailed):
    """A round produced nothing a later round can build on (every trial failed or diverged). Exit 5."""


class SwarmRun:
    """One phase on one run directory.

    Args:
        settings: the resolved settings.
        trainer_command: local runner only: argv prefix before `train ...` (default the venv's `trainer`).
        clock: unix seconds (injected in tests).
        sleep: waits between controller passes; None = the runner's `wait` (returns early when a
            job exits) where it has one, else time.sleep.
        out: where progress lines go (default print).
    """

    def __init__(
        self,
        settings: SwarmSettings,
        trainer_command: list[str] | None = None,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] | None = None,
        out: Callable[[str], None] = print,
    ) -> None:
        self.s = settings
        self.trainer_command = trainer_command
        self.clock = clock
        self.sleep = sleep
        self.out = out
        self.run_dir = Path(settings.run_dir)
        self._noted = False  # the damaged-trials.json note is said once

    # -- planning ---------------------------------------------------------------------------
    def output_dir(self, trial_id: str) -> str:
        return backends.trial_output_dir(self.s, trial_id)

    def describe(self) -> list[str]:
        """What the phase will do, for the banner and --dry-run."""
        s = self.s
        # Only a cloud trial runs on the team's machine; a local one is a process on this machine.
        on_vertex = s.backend.name == "vertex"
        lines = [
            f"study {s.study}: phase {s.phase}, team {s.team} ({s.machine if on_vertex else 'local processes'}), "
            f"backend {s.backend.name}, profile {s.profile}",
            f"run dir {s.run_dir}; {s.parallel} trial(s) at once; {s.epochs} epochs per trial; "
            f"retries {s.max_retries}; stop after {s.max_failed_trials} failed trials",
        ]
        if s.lock_values:
            lines.append(
                f"locked architecture from {s.lock_source}: "
                + ", ".join(f"{k}={v}" for k, v in s.lock_values.items())
            )
        rules = s.early_stopping
        lines.append(
            "early stopping: "
            + (
                f"paired baseline rule on the val windows at {rules.baseline_sigma.at_fraction:.0%} of epochs "
                f"({rules.baseline_sigma.sigmas:g} sigma)"
                if rules.baseline_sigma.enabled
                else "baseline rule off"
            )
            + "; "
            + (
                f"median rule (val windows) after {rules.median.warmup_fraction:.0%}"
                if rules.median.enabled
                else "median rule off"
            )
        )
        lines += [kind_of(r).describe(r, s) for r in s.rounds]
        est_trials = sum(kind_of(r).estimated_trials(r, s) for r in s.rounds)
        hours = est_trials * s.trial_hours_estimate * max(1, s.accelerator_count)
        price = f", {hours * s.price_per_hour:.2f} {s.currency} on {s.machine}" if on_vertex else ""
        lines.append(
            f"cost estimate: ~{est_trials} trials x {s.trial_hours_estimate:g} h x {max(1, s.accelerator_count)} GPU "
            f"= {hours:.2f} GPU-h{price} (cap {s.gpu_hour_cap:g} GPU-h)"
        )
        return lines

    def dry_run(self) -> list[str]:
        """The study and the trial commands, launching nothing."""
        lines = self.describe()
        exe = " ".join(self.trainer_command or ["trainer"])
        for r in self.s.rounds:
            winners = [{k: f"<winner's {k}>" for k in r.carry}] if r.carry else []
            try:
                pts = kind_of(r).points(r, self.s, winners)
            except ConfigError as e:
                lines.append(f"round {r.name}: {e}")
                continue
            if pts is None:  # the tuner suggests: its knobs as placeholders
                pts = [{p.name: f"<{p.name}>" for p in r.params()}]
            lines.append(f"trial commands of round {r.name}:")
            for i, p in enumerate(pts):
                args = trainer_args(self.s, p, r.fixed, self.output_dir(f"<id{i}>"))
                lines.append(f"  {exe} {' '.join(_quote(a) for a in args)}")
        return lines

    # -- running ----------------------------------------------------------------------------
    def _event_line(self, ev: dict) -> str | None:
        t = time.strftime("%H:%M:%S", time.localtime(ev["time"]))
        kind = ev["event"]
        if kind == "started":
            params = " ".join(
                f"{k.split('.')[-1]}={v:.4g}" if isinstance(v, float) else f"{k.split('.')[-1]}={v}"
                for k, v in ev.get("params", {}).items()
            )
            return f"{t}  trial {ev['trial']:>4}  started    {params}"
        if kind == "completed":
            base, se = ev.get("best_baseline"), ev.get("stderr")
            diff, pse = ev.get("paired_diff"), ev.get("paired_stderr")
            beats = {
                BEATS: "  beats baseline",
                WITHIN_NOISE: "  below the baseline, within noise",
                WORSE: "  does NOT beat the baseline",
                None: "",
            }[vs_baseline(diff, pse)]
            name = (ev.get("best_baseline_name") or "best baseline").removeprefix("baseline_")
            detail = [f"{name} {base:.5f}"] if base is not None else []
            if diff is not None and pse is not None:
                detail.append(f"paired {diff:+.5f} ± {pse:.5f}")
            return (
                f"{t}  trial {ev['trial']:>4}  completed  {ev['value']:.5f}"
                + (f" ± {se:.5f}" if se is not None else "")
                + (f"  ({', '.join(detail)})" if detail else "")
                + beats
            )
        if kind in ("infeasible", "failed", "stopped"):
            return f"{t}  trial {ev['trial']:>4}  {kind:<10} {ev.get('reason', '')}"
        if kind == "retried":
            return f"{t}  trial {ev['trial']:>4}  retry      attempt {ev['attempt']}: {ev.get('detail', '')}"
        if kind == "budget":
            return f"{t}  budget     {ev['detail']} ({ev['gpu_hours']:.3f} of {ev['cap']:g} GPU-h)"
        if kind == "round":
            return f"{t}  round {ev['round']} (up to {ev['max_trials']} trials)"
        if kind == "round_done":
            return f"{t}  round {ev['round']} done: {ev['reason']}"
        return None

    def _on_event(self, ev: dict) -> None:
        line = self._event_line(ev)
        if line:
            self.out(line)

    def check_run_dir(self) -> None:
        """Read-only checks of what the run directory already holds (`run` repeats them under the
        lock; the CLI calls this first, so a refusal leaves every file as it was).

        Raises:
            ConfigError: other settings than the run started with.
            DamagedFile: a damaged study, settings file, events log or lock; a study without
                trials that jobs/ holds work of.
        """
        if not self.run_dir.is_dir():
            return
        lock = self.run_dir / LOCK_FILE
        if lock.exists() and not lock.is_file():
            raise DamagedFile(lock, "is not a plain file", repair_hint(self.run_dir))
        self._check_same_experiment()
        self._check_run_files()

    def run(self) -> dict[str, Any]:
        """Run the phase to its end (or a stop) and return the final trials.json object."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        lock = ControllerLock(self.run_dir)
        lock.acquire()
        try:
            self.check_run_dir()
            study_db.check_not_locked(self.run_dir)
            record_run_id(self.run_dir, self.s.run_id)
            (self.run_dir / STOP_FILE).unlink(missing_ok=True)  # a new start overrides an old stop
            write_text_atomic(
                self.run_dir / SETTINGS_FILE,
                yaml.safe_dump(self.s.model_dump(mode="json"), sort_keys=False),
            )
            for line in self.describe():
                self.out(line)
            runner = backends.make_runner(self.s, self.trainer_command)
            runner.preflight()  # e.g. the trainer image exists: before the tuner suggests anything
            reader = backends.make_output_reader(self.s)
            sleep = self.sleep or getattr(runner, "wait", time.sleep)
            previous: list[TunerTrial] = []
            previous_round: RoundPlan | None = None
            result = PassResult(done=True, active=0, launched=0)
            for plan in self.s.rounds:
                kind = kind_of(plan)
                # playbook hook: a full evaluation hands on its best configuration over the seeds
                carried = playbook.carried_winner(self.s, previous) if plan.carry else None
                winners = [carried or _winner(previous, previous_round).params] if plan.carry else []
                points = kind.points(plan, self.s, winners)
                if points is not None:
                    # Enqueue only what this round may run: a point left waiting in the study would be
                    # handed to the next round's first suggestion.
                    points = points[: self.s.max_trials]
                tuner = backends.make_tuner(self.s, kind.space(plan, points), points)
                rnd = plan if points is None else plan.model_copy(update={"points": points})
                settings = self.s
                if not kind.stops_early:
                    settings = settings.model_copy(update={"early_stopping": EARLY_STOPPING_OFF})
                ctl = Controller(
                    settings,
                    tuner,
                    runner,
                    reader,
                    self.output_dir,
                    self.clock,
                    sleep,
                    self._on_event,
                )
                result = ctl.run(rnd)
                if result.failed:
                    self.out(f"phase {self.s.phase} failed: {result.reason}")
                    break
                if result.reason != "round complete":
                    self.out(f"phase {self.s.phase} ends early: {result.reason}")
                    break
                previous = [t for t in tuner.trials() if ctl.owns(rnd, t)]
                previous_round = rnd
                if self.s.playbook is not None:  # playbook hook: what the promotion and the report read
                    promotion.record_round(self.run_dir, plan.name, plan.kind, [t.id for t in previous])
            else:
                if self.s.writes_lock:
                    self._write_lock(previous)
            snap = read_snapshot(self.run_dir)
            snap["ended_because"] = result.reason
            snap["failed"] = result.failed
            if self.s.championship is not None and result.reason == "round complete":
                for line in championship_lines(str(self.run_dir), snap):
                    self.out(line)
            if self.s.playbook is not None:  # playbook hook: the final ranking
                from orchestrator.report.playbook import ranking_lines

                for line in ranking_lines(str(self.run_dir), snap):
                    self.out(line)
            return snap
        finally:
            lock.release()

    # Settings that define what a trial measures; parallelism, trial counts, budget and backend
    # knobs may change between starts of the same run, these may not.
    _SAME_EXPERIMENT = (
        "phase",
        "team",
        "study",
        "trainer_config",
        "data_path",
        "epochs",
        "overrides",
        "rounds",
    )

    def _check_same_experiment(self) -> None:
        path = self.run_dir / SETTINGS_FILE
        before = read_settings(self.run_dir)
        if before is None:
            return
        now = self.s.model_dump(mode="json")
        changed = [k for k in self._SAME_EXPERIMENT if k in before and before[k] != now[k]]
        if changed:
            raise ConfigError(
                f"{path}: this run was started with different {', '.join(changed)}; its trials would not be "
                "comparable with new ones. Use another --run-dir (or remove this one) to start afresh."
            )

    def _check_run_files(self) -> None:
        """What the run directory already holds, checked before anything is launched: the study (the
        one file that cannot be rebuilt) must be readable and hold every trial that jobs/ has work
        of; a damaged trials.json is derived state, rewritten by the first pass (said here)."""
        for name in (EVENTS_FILE, TRIALS_FILE):
            if (self.run_dir / name).is_dir():
                raise DamagedFile(
                    self.run_dir / name, "is a directory, not a file", repair_hint(self.run_dir)
                )
        study_db.check(self.run_dir)
        study_db.check_covers_jobs(self.run_dir, self.s.study)
        if self.s.backend.name == "local":
            backends.make_runner(self.s).jobs()  # every job file readable (DamagedFile if not)
        if (self.run_dir / TRIALS_FILE).exists() and not self._noted:
            try:
                read_snapshot(self.run_dir)
            except DamagedFile as e:
                self.out(f"note: {e.path}: {e.problem}; rebuilding it from the study")
                self._noted = True

    def _write_lock(self, last_round: list[TunerTrial]) -> None:
        winner = _winner(last_round, None)
        winners = {k: decode(winner.params[k]) for k in self.s.writes_lock if k in winner.params}
        for k in self.s.writes_lock:
            if k not in winners and k in self.s.overrides:
                winners[k] = decode(self.s.overrides[k])
        body = {
            "phase": self.s.phase,
            "team": self.s.team,
            "study": self.s.study,
            "trial": winner.id,
            "extrapolation_error": winner.value,
            "extrapolation_stderr": winner.metrics.get("extrapolation_stderr"),
            "written": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.clock())),
            "winners": winners,
        }
        path = self.run_dir / LOCK_NAME
        write_text_atomic(
            path,
            "# Written by `orchestrator swarm --phase 1`; read by phases 2 and 3.\n"
            + yaml.safe_dump(body, sort_keys=False),
        )
        self.out(f"locked: {', '.join(f'{k}={v}' for k, v in winners.items())} -> {path}")


def championship_lines(run_dir: str, snap: dict[str, Any]) -> list[str]:
    """Phase 3's verdict on the test windows, from the trials' final.json (report.analysis.championship)."""
    from orchestrator.report.analysis import championship
    from orchestrator.report.load import load_run

    return championship(load_run(run_dir, snap)).lines


def _winner(trials: list[TunerTrial], rnd: RoundPlan | None) -> TunerTrial:
    done = [t for t in trials if t.state is TunerState.COMPLETED and t.value is not None]
    if not done:
        name = rnd.name if rnd else "last"
        raise RoundFailed(f"round {name} has no completed trial, so there is no winner to carry forward")
    return min(done, key=lambda t: t.value)


def _quote(arg: str) -> str:
    return f"'{arg}'" if any(c in arg for c in " []<>'\"") else arg


def validation_points(settings: SwarmSettings) -> list[tuple[RoundPlan, dict[str, Any]]]:
    """The distinct trainer configs a swarm may launch, as (round, params): a Bayesian round's two
    corners (every knob at its low end, then at its high end), every design point with each value a
    carried knob can take, and phase 3's championship points when phase 2 has results."""
    out: list[tuple[RoundPlan, dict[str, Any]]] = []
    previous: list[dict[str, Any]] = []
    for r in settings.rounds:
        try:
            pts = kind_of(r).points(r, settings, previous)
        except ConfigError:
            pts = []  # no phase-2 results yet: the run itself says so before it launches
        if pts is None:  # the tuner suggests: every knob at its low end, then at its high end
            pts = [{p.name: _corner(p, end) for p in r.params()} for end in ("low", "high")]
        out += [(r, p) for p in pts]
        previous = pts
    return out


def _corner(param: Param, end: str) -> Any:
    if isinstance(param, CategoricalParam):
        return param.choices[0 if end == "low" else -1]
    return int(getattr(param, end)) if isinstance(param, IntParam) else float(getattr(param, end))


def checking_trainer() -> list[str]:
    """The trainer whose schema checks the configs: this environment's `trainer` (the installed
    package), else $ZETA_SWARM_TRAINER. ZETA_SWARM_TRAINER alone may be a stand-in that only trains."""
    import sys

    from orchestrator.runners.local import default_trainer_command

    own = Path(sys.executable).with_name("trainer")
    return [str(own)] if own.exists() else default_trainer_command()


def check_trainer_configs(settings: SwarmSettings, trainer_command: list[str] | None = None) -> int:
    """Check every distinct config the swarm may launch with the trainer's own schema and dataset
    checks (`trainer check-config --batch`, one subprocess; the orchestrator never imports the
    trainer). Returns how many configs were checked.

    Raises:
        ConfigError: the trainer's problems, one line each, or no trainer to ask.
    """
    import subprocess

    from orchestrator.paths import REPO_ROOT

    lines: list[str] = []
    for plan, params in validation_points(settings):
        args = list(trainer_args(settings, params, plan.fixed, "-"))
        line = json.dumps(args[1 : args.index("--output-dir")])  # --config ... --set ..., no `train`
        if line not in lines:
            lines.append(line)
    if not lines:
        return 0
    argv = [*(trainer_command or checking_trainer()), "check-config", "--batch"]
    try:
        proc = subprocess.run(
            argv, input="\n".join(lines) + "\n", capture_output=True, text=True, cwd=REPO_ROOT, timeout=600
        )
    except OSError as e:
        raise ConfigError(
            f"cannot run {argv[0]} to check the trainer configs ({e.strerror}); install the trainer "
            "(`make install`) or point $ZETA_SWARM_TRAINER at it"
        ) from None
    if proc.returncode != 0:
        problems: list[str] = []
        for line in proc.stderr.splitlines():
            # "config N: <problem>": the same problem in every config is said once
            problem = re.sub(r"^config \d+: ", "", line.removeprefix("trainer: error: ").strip())
            if problem and problem not in problems:
                problems.append(problem)
        problems = problems or [f"{argv[0]} exited {proc.returncode}"]
        if len(problems) == 1:
            raise ConfigError(f"trainer config of this swarm: {problems[0]} (nothing was launched)")
        head = f"{len(problems)} problems in the trainer configs of this swarm (nothing was launched):"
        raise ConfigError("\n".join([head, *("  " + p for p in problems[:20])]))
    return len(lines)


def load_run_settings(run_dir: str | os.PathLike) -> SwarmSettings:
    """RUN_DIR/swarm.yaml as the SwarmSettings the run was started with.

    Raises:
        ConfigError: no swarm has run there.
        DamagedFile: the file is damaged or does not hold swarm settings.
    """
    raw = read_settings(run_dir)
    path = Path(run_dir) / SETTINGS_FILE
    if raw is None:
        raise ConfigError(f"{path}: not found; no swarm has run in {run_dir}")
    try:
        return SwarmSettings.model_validate(raw)
    except ValidationError as e:
        err = e.errors()[0]
        where = ".".join(str(p) for p in err["loc"]) or "(top level)"
        raise DamagedFile(
            path,
            f"does not hold swarm settings ({where}: {err['msg']})",
            "restore it from a copy, or move the run directory aside and start afresh",
        ) from None


def stop_run(
    run_dir: str | os.PathLike,
    out: Callable[[str], None] = print,
    wait_s: float = 60.0,
    clock: Callable[[], float] = time.time,
    sleep: Callable[[float], None] = time.sleep,
) -> dict[str, Any]:
    """`orchestrator stop`: cancel running jobs, stop their trials, leave the study consistent.

    A running controller sees the stop request, stops its trials and exits; without one, this does
    the same pass itself under the controller lock.

    Args:
        run_dir: the run directory.
        out: progress lines.
        wait_s: how long to wait for a running controller to exit (seconds, default 60).
        clock: unix seconds (injected: tests move it).
        sleep: waits between looks at the controller lock (injected: tests do not wait).
    """
    run_dir = Path(run_dir)
    settings = load_run_settings(run_dir)
    study_db.check(run_dir)
    write_text_atomic(run_dir / STOP_FILE, f"{clock()}\n")
    runner = backends.make_runner(settings)
    cancelled = 0
    for job in runner.jobs():
        if not job.state.finished:
            runner.cancel(job.job_id)
            cancelled += 1
    out(f"asked {cancelled} running job(s) to stop (SIGTERM; the trainer checkpoints)")
    lock = ControllerLock(run_dir)
    deadline = clock() + wait_s
    while lock.held_by_other() and clock() < deadline:
        sleep(0.2)
    if lock.held_by_other():
        raise OrchestratorError(f"the controller (pid {lock.holder()}) did not exit within {wait_s:g} s")
    lock.acquire()
    try:
        tuner = backends.make_tuner(settings, *whole_study(settings))
        # One pass over the whole study as one Bayesian round that suggests nothing: it owns every
        # trial (no round's design points to leave alone) and may have none more.
        ctl = Controller(
            settings.model_copy(update={"rounds": [], "max_trials": 0}),
            tuner,
            runner,
            backends.make_output_reader(settings),
            lambda i: backends.trial_output_dir(settings, i),
            clock,
            sleep,
        )
        ctl.reconcile(RoundPlan(name="stop", kind="bayesian", space=[], points=None, fixed={}))
        snap = read_snapshot(run_dir)
    finally:
        lock.release()
    counts: dict[str, int] = {}
    for t in snap["trials"]:
        counts[t["state"]] = counts.get(t["state"], 0) + 1
    out("study is consistent: " + ", ".join(f"{k.lower()} {v}" for k, v in sorted(counts.items())))
    return snap
