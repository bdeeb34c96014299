"""The rg_penalty experiment (issue 7): three arms with the same data, epochs and seeds, then the
report with the verdict.

Design: one study per arm, each a fixed design whose points are the seeds, in its own run
directory `RUN_DIR/<arm>/`. One study per arm rather than one study with the arm as a categorical,
because the arms differ in team (Team 1's full-batch machine against Team 2's mini-batch one on
Vertex) and a study has one team; it also keeps each arm an ordinary run directory that `status`
and `report` read as they are. `RUN_DIR/experiment.json` names the arms and their roles, so
`orchestrator report --run-dir RUN_DIR` finds them and computes the verdict.

Rerunning with the same RUN_DIR resumes (the engine is restart-safe); a RUN_DIR that holds a
different experiment is refused.
"""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from orchestrator.errors import ConfigError
from orchestrator.report.load import EXPERIMENT_FILE
from orchestrator.schema import Problems, Strict, validate_with_node

EVALUATIONS = 5  # evaluations per trial: the report's curves; the last epoch is always one
_LABEL = re.compile(r"^[a-z][a-z0-9_-]{0,40}$")  # Vertex label rules; arm names become study labels


class ArmConfig(Strict):
    role: Literal["rg", "no_rg", "minibatch"]
    team: Literal["fullbatch", "minibatch"]
    set: dict[str, Any] = Field(default_factory=dict)


class ProfileConfig(Strict):
    steps: int = Field(ge=1)  # optimizer steps per trial, the same in every arm
    seeds: list[int] = Field(min_length=1)
    parallel: int = Field(1, ge=1)
    train_count: int | None = Field(None, ge=1)  # the trainer's check-config sets the minimum
    set: dict[str, Any] = Field(default_factory=dict)


class VerdictConfig(Strict):
    margin_rel: float = Field(0.10, gt=0)
    level: float = Field(0.95, gt=0, lt=1)


class ExperimentConfig(Strict):
    name: str
    train_count: int = Field(ge=1)
    set: dict[str, Any] = Field(default_factory=dict)
    arms: dict[str, ArmConfig] = Field(min_length=1)
    verdict: VerdictConfig = Field(default_factory=VerdictConfig)
    profiles: dict[str, ProfileConfig] = Field(min_length=1)


@dataclass(frozen=True)
class Arm:
    name: str
    role: str
    team: str
    run_dir: str  # relative to the experiment's RUN_DIR
    overrides: dict[str, Any]  # trainer `--set` key -> value, every seed of the arm


@dataclass(frozen=True)
class Design:
    """A resolved experiment: what experiment.json holds."""

    name: str
    config: str
    profile: str
    backend: str
    train_count: int
    steps: int
    seeds: list[int]
    parallel: int
    verdict: dict[str, float]
    arms: list[Arm]

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "phase": "compare"}


def load_design(
    path: str | Path,
    profile: str,
    backend: str,
    train_count: int | None = None,
    seeds: int | None = None,
    parallel: int | None = None,
) -> Design:
    """Read configs/experiments/compare.yaml and resolve one profile.

    Args:
        path: the experiment YAML file.
        profile: a key of its `profiles` (`smoke`, `default`).
        backend: `local` or `vertex`.
        train_count: N training zeros per trial; default from the profile, else the file.
        seeds: use the first `seeds` seeds of the profile (default: all of them).
        parallel: trials at once per arm; default from the profile.

    Raises:
        ConfigError: one line naming the file and key of every problem.
    """
    path = Path(path)
    problems = Problems()
    cfg, node = validate_with_node(ExperimentConfig, path, problems)
    problems.raise_if_any()
    for name in cfg.arms:
        if not _LABEL.match(name):
            problems.add_at(path, node, ("arms", name), "names must be lowercase letters, digits, '-' or '_'")
    roles = [a.role for a in cfg.arms.values()]
    if roles.count("rg") != 1 or roles.count("no_rg") != 1:
        problems.add_at(
            path, node, ("arms",), "need exactly one arm with role rg and one with role no_rg (the ablation)"
        )
    if profile not in cfg.profiles:
        problems.add_at(path, node, ("profiles",), f"no profile '{profile}' (have {', '.join(cfg.profiles)})")
    if backend not in ("local", "vertex"):
        problems.add("--backend", f"{backend} must be local or vertex")
    if train_count is not None and train_count < 1:
        problems.add("--train-count", f"{train_count} must be >= 1")
    if parallel is not None and parallel < 1:
        problems.add("--parallel", f"{parallel} must be >= 1")
    problems.raise_if_any()
    prof = cfg.profiles[profile]
    chosen = prof.seeds if seeds is None else prof.seeds[:seeds]
    if seeds is not None and (seeds < 2 or seeds > len(prof.seeds)):
        problems.add("--seeds", f"{seeds} must be between 2 and {len(prof.seeds)} (profiles.{profile}.seeds)")
    elif len(set(chosen)) != len(chosen):
        problems.add_at(path, node, ("profiles", profile, "seeds"), "repeated seed")
    problems.raise_if_any()
    n = train_count or prof.train_count or cfg.train_count
    arms = []
    for name, arm in cfg.arms.items():
        overrides = {**cfg.set, **prof.set, "data.train_count": n, **arm.set, "train.mode": arm.team}
        for key in ("train.epochs", "train.eval_every"):
            sets = [
                (("arms", name, "set"), arm.set),
                (("profiles", profile, "set"), prof.set),
                (("set",), cfg.set),
            ]
            for loc, where in sets:
                if key in where:
                    problems.add_at(
                        path,
                        node,
                        (*loc, key),
                        f"set it via profiles.<name>.steps, not in a `set` (arm {name})",
                    )
                    break
        per_epoch = _steps_per_epoch(path, node, name, overrides, problems)
        if per_epoch and prof.steps % per_epoch:
            problems.add_at(
                path,
                node,
                ("profiles", profile, "steps"),
                f"{prof.steps} is not a whole number of epochs of arm {name} "
                f"({per_epoch} steps each); every arm must get exactly the same steps",
            )
        problems.raise_if_any()
        epochs = prof.steps // per_epoch
        overrides["train.epochs"] = epochs
        overrides["train.eval_every"] = max(1, epochs // EVALUATIONS)
        arms.append(Arm(name=name, role=arm.role, team=arm.team, run_dir=name, overrides=overrides))
    return Design(
        name=cfg.name,
        config=str(path),
        profile=profile,
        backend=backend,
        train_count=n,
        steps=prof.steps,
        seeds=list(chosen),
        parallel=parallel or prof.parallel,
        verdict=cfg.verdict.model_dump(),
        arms=arms,
    )


def _steps_per_epoch(path: Path, node: Any, arm: str, overrides: dict[str, Any], problems: Problems) -> int:
    """Optimizer steps in one epoch of an arm, as the trainer counts them (0 after a problem)."""
    if overrides["train.mode"] == "fullbatch":
        return 1
    loc = ("arms", arm, "set")
    try:
        k, q = int(overrides["train.num_clusters"]), int(overrides["train.clusters_per_step"])
    except KeyError as e:
        problems.add_at(path, node, loc, f"a minibatch arm must set {e.args[0]} (its steps per epoch)")
        return 0
    except (TypeError, ValueError):
        problems.add_at(path, node, loc, "train.num_clusters and train.clusters_per_step must be integers")
        return 0
    if not 1 <= q <= k:
        problems.add_at(path, node, loc, "need 1 <= train.clusters_per_step <= train.num_clusters")
        return 0
    return math.ceil(k / q)


def write_design(run_dir: Path, design: Design) -> None:
    """Write RUN_DIR/experiment.json, or check that the one there is the same experiment.

    Raises:
        ConfigError: RUN_DIR holds a different experiment (resuming it would mix two designs).
    """
    from orchestrator.atomic_files import write_json_atomic

    target = run_dir / EXPERIMENT_FILE
    new = design.to_json()
    if target.exists():
        try:
            old = json.loads(target.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise ConfigError(f"{target}: line {e.lineno}: malformed JSON") from e
        if {k: v for k, v in old.items() if k != "config"} != {k: v for k, v in new.items() if k != "config"}:
            changed = sorted(k for k in set(old) | set(new) if k != "config" and old.get(k) != new.get(k))
            raise ConfigError(
                f"{target}: holds a different experiment (differs in {', '.join(changed)}); "
                f"use another --run-dir or remove this one"
            )
        return
    run_dir.mkdir(parents=True, exist_ok=True)
    write_json_atomic(target, new, indent=1)


def run_compare(
    design: Design,
    run_dir: str | Path,
    progress: Callable[[str], None] = lambda _: None,
    data_path: str | None = None,
    infra_outputs: str | None = None,
    infra_overrides: dict[str, str | None] | None = None,
    trainer_command: list[str] | None = None,
    clock: Callable[[], float] = time.time,
    sleep: Callable[[float], None] = time.sleep,
) -> Path:
    """Run every arm's seeds through the swarm engine, then write RUN_DIR/report/.

    Arms run one after another, in the order of the experiment file (the two Team 1 arms first, so
    the verdict's inputs are there soonest); an arm that ends early does not stop the others, and
    the report says how many seeds of each arm completed.

    Args:
        design: from `load_design`.
        run_dir: the experiment's directory (local); arms go to RUN_DIR/<arm>/.
        progress: called with one short line per event (default: silent).
        data_path: zeros dataset for every trial (default: the swarm profile's, `data/odlyzko`).
        infra_outputs: Terraform outputs file (vertex backend only).
        infra_overrides: vertex only: infra setting -> value from a flag (--runs-bucket, ...).
        trainer_command: local backend only: argv prefix before `train ...` (default: the venv's `trainer`).
        clock, sleep: the engine's time (tests pass a fake one).

    Returns:
        The report directory, RUN_DIR/report.
    """
    from orchestrator.errors import SwarmFailed
    from orchestrator.phases import SwarmRun, check_trainer_configs
    from orchestrator.report import build_report

    run_dir = Path(run_dir)
    arms = [
        (arm, arm_settings(design, arm, run_dir, data_path, infra_outputs, infra_overrides))
        for arm in design.arms
    ]
    # Every arm's config through the trainer's own schema and dataset checks before anything is
    # written or launched: too few training zeros (data.train_count >= 64, and 64 per cluster of
    # the mini-batch arm) is one line here, not three arms of failed trials and an empty report.
    for arm, settings in arms:
        try:
            check_trainer_configs(settings)
        except ConfigError as e:
            raise ConfigError(f"arm {arm.name}: {e}") from None
    write_design(run_dir, design)
    failed: list[str] = []
    for arm, settings in arms:
        progress(
            f"arm {arm.name} ({arm.role}, {arm.team}): {len(design.seeds)} seeds, N = {design.train_count}"
        )
        snap = SwarmRun(
            settings, trainer_command=trainer_command, clock=clock, sleep=sleep, out=progress
        ).run()
        progress(f"arm {arm.name}: {snap.get('ended_because')}")
        if snap.get("failed"):
            failed.append(f"arm {arm.name}: {snap.get('ended_because')}")
    if len(failed) == len(arms):
        raise SwarmFailed(f"compare failed: no arm completed a trial; first: {failed[0]}")
    return build_report([str(run_dir)], run_dir / "report", progress)


def arm_settings(
    design: Design,
    arm: Arm,
    run_dir: Path,
    data_path: str | None = None,
    infra_outputs: str | None = None,
    infra_overrides: dict[str, str | None] | None = None,
):
    """The swarm engine's settings for one arm: a phase-2 study of the arm's team and the design's
    profile and backend, whose only round is the fixed design over the seeds.

    Phase 2's settings supply the trainer config of the team, the profile's trial size and data,
    the backend and the budget; the architecture is phase 2's lock defaults (a lock file of an
    earlier phase 1 is looked for at RUN_DIR/phase1-<team>/lock.yaml, so a shared runs/ does not
    leak into the experiment). Early stopping is off: stopping some seeds would bias the means.

    Args:
        design: the resolved experiment.
        arm: one of design.arms.
        run_dir: the experiment's directory.
        data_path: zeros dataset (default: the profile's).
        infra_outputs: Terraform outputs file (vertex backend only).
        infra_overrides: vertex only: infra setting -> value from a flag (--runs-bucket, ...).
    """
    from orchestrator.early_stopping import BaselineSigmaRule, EarlyStopping, MedianRule
    from orchestrator.round_plan import RoundPlan
    from orchestrator.rounds import points_space
    from orchestrator.settings_loader import load_settings

    arm_dir = run_dir / arm.run_dir
    base = load_settings(
        2,
        team=arm.team,
        backend=design.backend,
        profile=design.profile,
        parallel=design.parallel,
        run_dir=arm_dir,
        infra_outputs=infra_outputs,
        infra_overrides=infra_overrides,
        data_path=data_path,
    )
    points = [{"seed": s} for s in design.seeds]
    # The arm's overrides are the round's fixed overrides: the engine applies those after the
    # profile's (including its per-team ones), so the experiment's budget is what every trial gets.
    rnd = RoundPlan(
        name="seeds", kind="points", space=points_space(points), points=points, fixed=arm.overrides
    )
    update: dict[str, Any] = {
        "study": f"{design.name}-{arm.name}",
        "epochs": int(arm.overrides["train.epochs"]),
        "rounds": [rnd],
        "max_trials": len(points),
        "writes_lock": [],
        "championship": None,
        "early_stopping": EarlyStopping(
            baseline_sigma=BaselineSigmaRule(enabled=False), median=MedianRule(enabled=False)
        ),
    }
    return base.model_copy(update=update)
