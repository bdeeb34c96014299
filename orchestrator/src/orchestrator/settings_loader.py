"""The settings assembly: reads and checks every config file of a swarm and resolves (phase, team,
backend, profile, flags) into one SwarmSettings (orchestrator.swarm_settings).

Files (all keys checked; unknown keys are errors):
  configs/backends/local.yaml      the local backend (vertex.yaml belongs to orchestrator.vertex_settings)
  configs/teams/<team>.yaml        machine, accelerator, trainer config of a team (orchestrator.teams)
  configs/phases/phase<N>.yaml     rounds, fixed overrides, lock, early stopping, retries
  configs/profiles/<profile>.yaml  trial size and counts per phase (default, smoke, cloud)
  configs/budgets.yaml             GPU-hour cap per phase, machine prices
(the models of the last three: orchestrator.config_files)

Every problem in every file is collected first and reported together, one line each
(orchestrator.schema); a phase's round entries are the round kinds' models (orchestrator.rounds).
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

from orchestrator.config_files import PHASES, Budgets, Phase, Profile
from orchestrator.errors import ConfigError
from orchestrator.paths import (
    CONFIG_DIR,
    CONFIGS_ENV,
    DATA_ENV,
    PLAYBOOK,
    REPO_ROOT,
    default_run_dir,
    lock_path,
    phase_name,
)
from orchestrator.rounds import KINDS, championship_settings, plans
from orchestrator.run_files import new_run_id, read_run_id
from orchestrator.schema import Problems, line_of, load_yaml, rel, validate
from orchestrator.storage import is_gcs
from orchestrator.swarm_settings import LocalBackend, SwarmSettings, TeamMachine, VertexBackendRef
from orchestrator.teams import TEAMS, Team
from orchestrator.trial_command import layered
from orchestrator.values import Value

PROFILES_HINT = "default, smoke, cloud"

# pydantic names a union branch in an error's location; these are not keys in the file.
_UNION_TAGS = frozenset({*KINDS, "function-after"})


def _run_id(run_dir: Path) -> str:
    """The run dir's recorded id, or a new one that the first start records (run_files.record_run_id)."""
    have = read_run_id(run_dir)
    return new_run_id() if have is None else have


def load_settings(
    phase: int | str,
    team: str = "minibatch",
    backend: str = "local",
    profile: str = "default",
    parallel: int | None = None,
    max_trials: int | None = None,
    run_dir: str | Path | None = None,
    config_dir: str | Path | None = None,
    infra_outputs: str | None = None,
    infra_overrides: dict[str, str | None] | None = None,
    data_path: str | None = None,
    experiments: bool = False,
) -> SwarmSettings:
    """Read and check every config file of a swarm and resolve them into one SwarmSettings.

    Args:
        phase: 1, 2, 3 or "playbook".
        team: "fullbatch" or "minibatch" (default minibatch).
        backend: "local" (default) or "vertex".
        profile: a file in configs/profiles/ (default "default").
        parallel: trials at once; None = profile, then phase, then backend default.
        max_trials: trials in all; None = profile, then phase.
        run_dir: default runs/phase<N>-<team>.
        config_dir: the configs/ directory (default: $ZETA_SWARM_CONFIGS, else the repository's).
        infra_outputs: the Terraform outputs file (vertex only).
        infra_overrides: vertex only: infra setting name -> value from a flag (None: not given);
            wins over the outputs file (see orchestrator.infra_outputs.OVERRIDE_FLAGS).
        data_path: zeros dataset, relative to the working directory or gs://; default
            $ZETA_SWARM_DATA, then the profile's data_path (relative to the repository root).
        experiments: vertex only: mirror every trial to Vertex AI Experiments.

    Raises:
        ConfigError: every problem found, one line each naming file, line and key. Nothing is launched.
    """
    cdir = Path(config_dir or os.environ.get(CONFIGS_ENV) or CONFIG_DIR)
    if not cdir.is_dir():  # one line, not a missing-file line for every config in it
        raise ConfigError(
            f"{cdir}: the configs directory does not exist (${CONFIGS_ENV} or the repository's)"
        )
    problems = Problems()
    if phase not in PHASES:
        problems.add("--phase", f"{phase} is not a phase; choose 1, 2, 3 or {PLAYBOOK}")
    if team not in TEAMS:
        problems.add("--team", f"{team!r} is not a team; choose {' or '.join(TEAMS)}")
    if experiments and backend != "vertex":
        problems.add("--experiments", "Vertex AI Experiments needs --backend vertex")
    if parallel is not None and parallel < 1:
        problems.add("--parallel", f"{parallel} must be at least 1")
    if max_trials is not None and max_trials < 1:
        problems.add("--max-trials", f"{max_trials} must be at least 1")

    backend_file = cdir / "backends" / f"{backend}.yaml"
    if backend == "local":
        backend_cfg = validate(LocalBackend, backend_file, problems, _UNION_TAGS)
    elif backend == "vertex":
        backend_cfg = VertexBackendRef()
        if not backend_file.exists():
            problems.add(rel(backend_file), "file not found")
    else:
        backend_cfg = None
        problems.add("--backend", f"{backend!r} is not a backend; choose local or vertex")

    team_cfgs = {t: validate(Team, cdir / "teams" / f"{t}.yaml", problems, _UNION_TAGS) for t in TEAMS}
    phase_file = cdir / "phases" / f"{phase_name(phase)}.yaml"
    phase_model: Any = Phase
    if phase == PLAYBOOK:  # playbook hook
        from orchestrator.playbook import PlaybookPhase

        phase_model = PlaybookPhase
    phase_cfg = validate(phase_model, phase_file, problems, _UNION_TAGS) if phase in PHASES else None
    profile_file = cdir / "profiles" / f"{profile}.yaml"
    if not profile_file.exists():
        problems.add(
            "--profile", f"{profile!r} has no file {rel(profile_file)}; choose one of {PROFILES_HINT}"
        )
        profile_cfg = None
    else:
        profile_cfg = validate(Profile, profile_file, problems, _UNION_TAGS)
    budgets = validate(Budgets, cdir / "budgets.yaml", problems, _UNION_TAGS)

    # Cross-file checks, each naming the file that should change.
    for t, cfg in team_cfgs.items():
        if cfg is None:
            continue
        tf = cdir / "teams" / f"{t}.yaml"
        if cfg.name != t:
            problems.add(rel(tf), f"name: {cfg.name!r} does not match the file name {t!r}")
        if not (tf.parent / cfg.trainer_config).exists():
            problems.add(rel(tf), f"trainer_config: {cfg.trainer_config} does not exist")
        if budgets is not None and cfg.machine_type not in budgets.prices_per_hour:
            problems.add(
                rel(cdir / "budgets.yaml"), f"prices_per_hour: no price for {cfg.machine_type} (team {t})"
            )
    if profile_cfg is not None:
        if profile_cfg.trainer_config and not (profile_file.parent / profile_cfg.trainer_config).exists():
            problems.add(rel(profile_file), f"trainer_config: {profile_cfg.trainer_config} does not exist")
        if phase in PHASES and phase not in profile_cfg.phases:
            problems.add(rel(profile_file), f"phases: no entry for phase {phase}")
    if budgets is not None and phase in PHASES and phase not in budgets.gpu_hour_caps:
        problems.add(rel(cdir / "budgets.yaml"), f"gpu_hour_caps: no cap for phase {phase}")
    if phase_cfg is not None:
        pf = rel(phase_file)
        if phase_cfg.phase != phase:
            problems.add(pf, f"phase: says {phase_cfg.phase} but the file is {phase_file.name}")
        names = [r.name for r in phase_cfg.rounds]
        if len(set(names)) != len(names):
            problems.add(pf, f"rounds: round names must be distinct, got {names}")
        for i, rnd in enumerate(phase_cfg.rounds):
            if getattr(rnd, "carry", None) and i == 0:
                problems.add(pf, f"rounds.{i}.carry: the first round has no previous winner to carry from")
        if phase == PLAYBOOK:  # playbook hook: the guardrails declared in the file
            from orchestrator.playbook import guardrail_problems

            _, node = load_yaml(phase_file, Problems())
            for loc, message in guardrail_problems(phase_cfg):
                line = line_of(node, loc)
                problems.add(f"{pf}:{line}" if line else pf, f"{'.'.join(map(str, loc))}: {message}")
    problems.raise_if_any()

    assert phase_cfg and profile_cfg and budgets and backend_cfg
    team_cfg = team_cfgs[team]
    prof = profile_cfg.phases[phase]
    rdir = Path(run_dir) if run_dir else default_run_dir(phase, team)

    # Locked architecture: phase 1's lock file, else the documented defaults.
    lock_values: dict[str, Value] = {}
    lock_source = "none"
    if phase_cfg.lock is not None:
        lp = lock_path(rdir, team, phase_cfg.lock.from_phase)
        if lp.exists():
            raw, _ = load_yaml(lp, problems)  # a damaged file is its own problem, said once
            winners = raw.get("winners", {}) if raw is not None else {}
            if not isinstance(winners, dict):
                problems.add(rel(lp), "winners: must be a mapping of locked keys to values")
                winners = {}
            missing = [k for k in phase_cfg.lock.keys if k not in winners]
            if missing and raw is not None:
                problems.add(rel(lp), f"winners: missing {missing}")
            lock_values = {k: winners[k] for k in phase_cfg.lock.keys if k in winners}
            lock_source = rel(lp)
        else:
            lock_values = {k: phase_cfg.lock.defaults[k] for k in phase_cfg.lock.keys}
            lock_source = f"defaults (no {rel(lp)}; run phase 1 first to lock the architecture)"
    problems.raise_if_any()

    rounds = plans(phase_cfg.rounds)
    playbook = None
    if phase == PLAYBOOK:  # playbook hook: a promote round after each round, every round carrying
        from orchestrator import playbook as pb

        playbook = pb.settings_block(phase_cfg, prof.top, prof.replicas, prof.full_epochs)
        rounds = pb.plans(rounds, playbook["seeds"], playbook["full_epochs"])

    override_layers = {
        "profile": profile_cfg.overrides,
        "profile_phase": prof.overrides,
        "phase_fixed": phase_cfg.fixed,
        "lock": lock_values,
    }
    infra_given = {k: v for k, v in (infra_overrides or {}).items() if v is not None}
    if data_path is not None:
        data_path = data_path if is_gcs(data_path) else str(Path(data_path).resolve())
    else:
        # $ZETA_SWARM_DATA wins, as it does for the trainer: one switch moves every trial to other zeros.
        data_path = os.environ.get(DATA_ENV) or profile_cfg.data_path
        if not is_gcs(data_path) and not Path(data_path).is_absolute():
            data_path = str(REPO_ROOT / data_path)
    if backend == "vertex":
        from orchestrator.vertex_settings import vertex_data_url

        data_path = vertex_data_url(data_path, infra_outputs, infra_given)

    def trainer_config_of(t: Team) -> str:
        if profile_cfg.trainer_config:
            path = (profile_file.parent / profile_cfg.trainer_config).resolve()
        else:
            path = (cdir / "teams" / f"{t.name}.yaml").parent.joinpath(t.trainer_config).resolve()
        if backend != "vertex":
            return str(path)
        # The trainer image holds the repository's configs/ under its working dir /opt/zeta-swarm
        # (containers/trainer/Dockerfile), so a cloud trial names its config repo-relative.
        try:
            return str(path.relative_to(REPO_ROOT))
        except ValueError:
            raise ConfigError(
                f"trainer config {path} is outside the repository, so the trainer image does not hold it; "
                f"the vertex backend needs a config under {CONFIG_DIR}"
            ) from None

    championship = championship_settings(phase_cfg.rounds, rdir, team, top=prof.top, replicas=prof.replicas)

    n_parallel = parallel or prof.parallel or phase_cfg.parallel or backend_cfg.parallel
    # Fixed designs and the championship set their own size at run time; this caps Bayesian rounds
    # (and, given on the command line, every round).
    n_trials = max_trials or prof.max_trials or phase_cfg.max_trials or 10_000
    return SwarmSettings(
        phase=phase,
        team=team,
        backend=backend_cfg,
        backend_file=str(backend_file),
        infra_outputs=infra_outputs,
        infra_overrides=infra_given,
        profile=profile,
        parallel=n_parallel,
        max_trials=n_trials,
        run_dir=str(rdir),
        study=f"{phase_name(phase)}-{team}",
        run_id=_run_id(rdir),
        experiments=experiments,
        trainer_config=trainer_config_of(team_cfg),
        data_path=data_path,
        epochs=prof.epochs * profile_cfg.epoch_scale.get(team, 1),
        override_layers=override_layers,
        overrides=layered(**override_layers),
        rounds=rounds,
        lock_source=lock_source,
        lock_values=lock_values,
        writes_lock=phase_cfg.writes_lock,
        max_retries=phase_cfg.max_retries,
        max_failed_trials=phase_cfg.max_failed_trials,
        early_stopping=prof.early_stopping or phase_cfg.early_stopping,
        gpu_hour_cap=budgets.gpu_hour_caps[phase],
        price_per_hour=budgets.prices_per_hour[team_cfg.machine_type],
        currency=budgets.currency,
        machine=team_cfg.machine,
        accelerator_count=team_cfg.accelerator_count,
        team_machines={
            t.name: TeamMachine(
                machine=t.machine,
                accelerator_count=t.accelerator_count,
                price_per_hour=budgets.prices_per_hour.get(t.machine_type, math.nan),
                trainer_config=trainer_config_of(t),
                overrides={
                    **profile_cfg.team_overrides.get(t.name, {}),
                    "train.mode": t.mode,
                    "train.epochs": prof.epochs * profile_cfg.epoch_scale.get(t.name, 1),
                },
            )
            for t in team_cfgs.values()
            if t is not None
        },
        trial_hours_estimate=prof.trial_hours_estimate,
        championship=championship,
        playbook=playbook,
    )
