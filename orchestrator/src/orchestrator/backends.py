"""Backend factory: the one place that maps a backend name to a Tuner, a Runner and a reader of
trial output files. The Vertex branch imports its modules lazily, so the local default never
loads a cloud SDK.

Backends:
  local   Optuna on RUN_DIR/study.db + local processes; outputs under RUN_DIR/trials/<id>/.
  vertex  Vertex AI Vizier + CustomJobs (orchestrator.tuners.vizier, orchestrator.runners.vertex);
          outputs under gs://<runs_bucket>/<cloud study>/trials/<id>/, read with
          `orchestrator.runners.vertex.read_output(output_dir, name)`. Every cloud name is the
          run's `cloud_study` (phase<N>-<team>-<run id>), so two run dirs never share a study,
          a job or an output prefix.

Fixed designs (phase 1 rounds, phase 3 replicas) always live in the run directory's Optuna
study, whatever the backend: a design is a list of points, not a search, and keeping it local
keeps `status` and the report on one storage per run.
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from orchestrator.errors import ConfigError
from orchestrator.runners.base import Runner
from orchestrator.trial_outputs import Reader
from orchestrator.tuners.base import SearchSpace, Tuner

if TYPE_CHECKING:
    from orchestrator.swarm_settings import SwarmSettings

BACKENDS = ("local", "vertex")


def _vertex_module(name: str) -> Any:
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as e:
        if e.name in (name, "google", "google.cloud", "google.cloud.aiplatform"):
            raise ConfigError(
                f"vertex backend not installed ({e.name} is missing): pip install -e 'orchestrator[vertex]'"
            ) from e
        raise


def _vertex_settings(settings: SwarmSettings) -> Any:
    overrides = tuple(sorted(settings.infra_overrides.items()))
    return _load_vertex_settings(str(settings.backend_file), settings.infra_outputs, overrides)


@functools.cache
def _load_vertex_settings(
    backend_file: str, infra_outputs: str | None, overrides: tuple[tuple[str, str], ...] = ()
) -> Any:
    infra = _vertex_module("orchestrator.infra_outputs").load_infra_outputs(infra_outputs, dict(overrides))
    return _vertex_module("orchestrator.vertex_settings").load_vertex_settings(backend_file, infra)


def study_db(settings: SwarmSettings) -> Path:
    """The run's Optuna SQLite file."""
    return Path(settings.run_dir) / "study.db"


def make_tuner(settings: SwarmSettings, space: SearchSpace, points: Sequence[dict] | None = None) -> Tuner:
    """Open (or create) the study of a round.

    Args:
        settings: the resolved swarm settings (backend, run dir, study name, seed).
        space: the knobs of this round.
        points: a fixed design (grid, fractional factorial, Latin hypercube, explicit points);
            None for a Bayesian round on the backend's tuner.
    """
    from orchestrator.tuners.optuna_study import FixedDesignTuner, OptunaTuner, storage_url

    url = storage_url(study_db(settings))
    if points is not None:
        tuner: Tuner = FixedDesignTuner(url, settings.study, space, points)
    elif settings.backend.name == "local":
        tuner = OptunaTuner(url, settings.study, space, seed=settings.seed)
    elif settings.backend.name == "vertex":
        vizier = _vertex_module("orchestrator.tuners.vizier")
        tuner = vizier.VizierTuner.from_settings(_vertex_settings(settings), settings.cloud_study, space)
    else:
        raise ConfigError(f"unknown backend {settings.backend.name!r}; choose one of {', '.join(BACKENDS)}")
    if settings.experiments:
        vs = experiments_settings(settings)
        return _vertex_module("orchestrator.vertex_experiments").TrackedTuner(
            tuner,
            vs.experiment or settings.cloud_study,
            settings.cloud_study,
            project=vs.project,
            region=vs.region,
            tensorboard=vs.tensorboard,
        )
    return tuner


def experiments_settings(settings: SwarmSettings) -> Any:
    """The VertexSettings `--experiments` tracks with.

    Raises:
        ConfigError: the infra outputs name no TensorBoard, which per-epoch series need.
    """
    vs = _vertex_settings(settings)
    if not vs.tensorboard:
        raise ConfigError(
            "--experiments needs a Vertex AI TensorBoard for the per-epoch series: set tensorboard = true "
            "in infra/terraform.tfvars, then `make infra-apply` and `make infra-outputs` (docs/infra.md)"
        )
    return vs


def make_runner(settings: SwarmSettings, trainer_command: list[str] | None = None) -> Runner:
    """The runner of the swarm's backend.

    Args:
        settings: the resolved swarm settings.
        trainer_command: local only: argv prefix before `train ...` (default: the venv's `trainer`).
    """
    if settings.backend.name == "local":
        from orchestrator.runners.local import LocalRunner

        return LocalRunner(
            settings.run_dir,
            settings.study,
            trainer_command=trainer_command,
            grace_s=settings.backend.grace_s,
            env=dict(settings.backend.env),
        )
    if settings.backend.name == "vertex":
        vertex = _vertex_module("orchestrator.runners.vertex")
        return vertex.VertexRunner(_vertex_settings(settings), settings.cloud_study)
    raise ConfigError(f"unknown backend {settings.backend.name!r}; choose one of {', '.join(BACKENDS)}")


def read_local_output(output_dir: str, name: str) -> str | None:
    """Read RUN_DIR/trials/<id>/<name> from the local disk; None if it is not there yet."""
    try:
        return (Path(output_dir) / name).read_text()
    except FileNotFoundError:
        return None


def make_output_reader(settings: SwarmSettings) -> Reader:
    """How the controller reads `final.json` and `metrics.jsonl` of the backend's trials."""
    if settings.backend.name == "local":
        return read_local_output
    if settings.backend.name == "vertex":
        return functools.partial(
            _vertex_module("orchestrator.runners.vertex").read_output,
            project=_vertex_settings(settings).project,
        )
    raise ConfigError(f"unknown backend {settings.backend.name!r}; choose one of {', '.join(BACKENDS)}")


def trial_output_dir(settings: SwarmSettings, trial_id: str) -> str:
    """Where a trial writes: RUN_DIR/trials/<id> locally, the runs bucket on Vertex."""
    if settings.backend.name == "vertex":
        return _vertex_settings(settings).trial_dir(settings.cloud_study, trial_id)
    return str(Path(settings.run_dir).resolve() / "trials" / trial_id)
