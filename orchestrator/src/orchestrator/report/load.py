"""Read run directories (docs/contracts.md) into plain records for the report.

A path given to the report is either a run directory (it holds `trials.json`) or an experiment
directory written by `orchestrator compare` (it holds `experiment.json`, naming one run
directory per arm). Only files are read: JSON, JSON lines and YAML, local or gs://.

Where a trial's files live: on the local backend the contract fixes `RUN_DIR/trials/<id>/`, which
stays right when a run directory is copied or moved; on Vertex `output_dir` in `trials.json` is a
gs:// URL and is used as it is.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from orchestrator import storage
from orchestrator.errors import ConfigError
from orchestrator.trial_outputs import TEST, baselines, trial_vs_baseline

EXPERIMENT_FILE = "experiment.json"
WINDOW_SETS = {"val_": "val", "": "tune", "test_": "test"}  # key prefix -> name in final.json `windows`
_READERS = 8


@dataclass
class Trial:
    """One trial: its state in the study and what its output directory holds."""

    id: str
    state: str  # PENDING, RUNNING, COMPLETED, INFEASIBLE, FAILED, STOPPED
    params: dict[str, Any]
    output_dir: str
    reason: str | None = None
    final: dict[str, Any] | None = None  # final.json
    curve: list[dict[str, Any]] = field(default_factory=list)  # metrics.jsonl rows
    predictions: dict[str, Any] | None = None  # predictions.json
    config: dict[str, Any] | None = None  # config.yaml
    missing: list[str] = field(default_factory=list)  # files a COMPLETED trial should have and lacks

    @property
    def completed(self) -> bool:
        return self.state == "COMPLETED" and self.final is not None

    def metric(self, name: str) -> float:
        """A number from final.json (nan when absent)."""
        value = (self.final or {}).get(name)
        return float(value) if isinstance(value, int | float) else math.nan

    @property
    def value(self) -> float:
        return self.metric("extrapolation_error")

    def baselines(self, prefix: str = TEST) -> dict[str, float]:
        """Every baseline's mean error on one window set (prefix `""` tune, `test_` test)."""
        return baselines(self.final or {}, prefix)

    def best_baseline(self, prefix: str = TEST) -> float:
        """The smallest baseline on one window set (nan when final.json has none)."""
        values = self.baselines(prefix)
        return min(values.values()) if values else math.nan

    def windows(self, prefix: str = TEST) -> dict[str, Any] | None:
        """final.json's per-window errors of one window set: `start`, `model`, `baseline_<name>`."""
        sets = (self.final or {}).get("windows")
        got = sets.get(WINDOW_SETS[prefix]) if isinstance(sets, dict) else None
        return got if isinstance(got, dict) else None

    def vs_baseline(self, prefix: str = TEST) -> str | None:
        """Beats, within noise of, or worse than the best baseline on one window set, paired
        (orchestrator.trial_outputs.vs_baseline, the rule of trials.json and the leaderboard too);
        the report judges on the test windows."""
        if not self.completed:
            return None
        return trial_vs_baseline(self.final or {}, prefix)


def mean_baselines(trials: Sequence[Trial], prefix: str = TEST) -> dict[str, float]:
    """Each baseline's mean over the trials whose final.json has it, on one window set."""
    out = {}
    for name in sorted({b for t in trials for b in t.baselines(prefix)}):
        values = [v for t in trials if not math.isnan(v := t.metric(prefix + name))]
        out[name] = math.fsum(values) / len(values)
    return out


@dataclass
class Run:
    """One study's run directory."""

    path: str
    study: str
    phase: Any
    team: str
    backend: str
    objective: str
    updated: Any
    trials: list[Trial]
    arm: str | None = None  # set when the run is an arm of an experiment
    role: str | None = None
    championship: dict[str, Any] | None = None  # phase 3: swarm.yaml's `championship` settings
    # The playbook: swarm.yaml's `playbook` settings, with `rounds` from RUN_DIR/playbook.json.
    playbook: dict[str, Any] | None = None

    @property
    def label(self) -> str:
        return f"{self.arm} ({self.team})" if self.arm else f"phase {self.phase} · {self.team}"

    @property
    def completed(self) -> list[Trial]:
        return sorted((t for t in self.trials if t.completed), key=lambda t: t.value)


@dataclass
class Experiment:
    """A designed comparison (`orchestrator compare`): arms, each one run directory."""

    path: str
    design: dict[str, Any]  # experiment.json
    arms: list[Run]


@dataclass
class Loaded:
    runs: list[Run]
    experiments: list[Experiment]


def _join(base: str, *parts: str) -> str:
    return storage.join(base, *parts) if storage.is_gcs(base) else str(Path(base, *parts))


def _read_text(url: str) -> str | None:
    """The file's text, or None when it does not exist."""
    if storage.is_gcs(url):
        return storage.read_text(url)
    path = Path(url)
    if not path.is_file():
        return None
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{url}: cannot read: {e}") from e


def _parse_json(text: str, where: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise ConfigError(f"{where}: line {e.lineno}: malformed JSON: {e.msg}") from e


def _read_json(url: str, required: bool = False) -> Any:
    text = _read_text(url)
    if text is None:
        if required:
            raise ConfigError(f"{url}: missing")
        return None
    return _parse_json(text, url)


def _read_object(url: str, required: bool = False) -> dict[str, Any] | None:
    data = _read_json(url, required)
    if data is not None and not isinstance(data, dict):
        raise ConfigError(f"{url}: expected a JSON object, got {type(data).__name__}")
    return data


def _read_jsonl(url: str) -> list[dict[str, Any]] | None:
    text = _read_text(url)
    if text is None:
        return None
    rows = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise ConfigError(f"{url}: line {lineno}: malformed JSON: {e.msg}") from e
        if not isinstance(row, dict):
            raise ConfigError(f"{url}: line {lineno}: expected a JSON object")
        rows.append(row)
    return rows


def _read_yaml(url: str) -> dict[str, Any] | None:
    text = _read_text(url)
    if text is None:
        return None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = f"line {mark.line + 1}: " if mark is not None else ""
        raise ConfigError(f"{url}: {line}malformed YAML") from e
    if data is not None and not isinstance(data, dict):
        raise ConfigError(f"{url}: expected a YAML mapping")
    return data or {}


def _require(obj: dict[str, Any], key: str, types: type | tuple[type, ...], where: str) -> Any:
    if key not in obj:
        raise ConfigError(f"{where}: missing key '{key}'")
    if not isinstance(obj[key], types):
        raise ConfigError(f"{where}: key '{key}' has the wrong type ({type(obj[key]).__name__})")
    return obj[key]


def _load_trial(run_dir: str, raw: Any, index: int, where: str) -> Trial:
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: trials[{index}] is not an object")
    here = f"{where}: trials[{index}]"
    trial_id = str(_require(raw, "id", (str, int), here))
    state = _require(raw, "state", str, here)
    output_dir = raw.get("output_dir") or ""
    out = output_dir if storage.is_gcs(output_dir) else _join(run_dir, "trials", trial_id)
    trial = Trial(
        id=trial_id,
        state=state,
        params=dict(raw.get("params") or {}),
        output_dir=out,
        reason=raw.get("reason"),
    )
    if state not in ("COMPLETED", "INFEASIBLE"):
        return trial
    final_url = _join(out, "final.json")
    trial.final = _read_object(final_url, required=state == "COMPLETED")
    if state == "COMPLETED":
        value = (trial.final or {}).get("extrapolation_error")
        if not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value):
            raise ConfigError(
                f"{final_url}: key 'extrapolation_error' must be a finite number, got {value!r}"
            )
    trial.curve = _read_jsonl(_join(out, "metrics.jsonl")) or []
    trial.predictions = _read_object(_join(out, "predictions.json"))
    trial.config = _read_yaml(_join(out, "config.yaml"))
    if state == "COMPLETED":
        trial.missing = [
            name
            for name, got in (
                ("metrics.jsonl", trial.curve),
                ("predictions.json", trial.predictions),
                ("config.yaml", trial.config),
            )
            if not got
        ]
    return trial


def load_run(run_dir: str, snap: dict[str, Any], arm: str | None = None, role: str | None = None) -> Run:
    """Read one run directory whose trials.json the caller has read (once: on gs:// a round trip).

    Args:
        run_dir: local path or gs:// URL of a directory holding `trials.json`.
        snap: the parsed trials.json.
        arm: the arm's name when the run belongs to an experiment.
        role: the arm's role in the experiment (`rg`, `no_rg`, `minibatch`).
    """
    where = _join(run_dir, "trials.json")
    raw_trials = _require(snap, "trials", list, where)
    # Up to four files per trial; on gs:// each is a round trip, so trials are read concurrently
    # (map keeps the order and raises the first trial's error).
    with ThreadPoolExecutor(max_workers=_READERS) as pool:
        trials = list(pool.map(lambda ir: _load_trial(run_dir, ir[1], ir[0], where), enumerate(raw_trials)))
    championship = playbook = None
    if snap.get("phase") == 3:
        settings = _read_yaml(_join(run_dir, "swarm.yaml")) or {}
        championship = settings.get("championship") if isinstance(settings.get("championship"), dict) else {}
    if snap.get("phase") == "playbook":
        settings = _read_yaml(_join(run_dir, "swarm.yaml")) or {}
        playbook = settings.get("playbook") if isinstance(settings.get("playbook"), dict) else {}
        rounds = (_read_object(_join(run_dir, "playbook.json")) or {}).get("rounds")
        playbook = {**playbook, "rounds": rounds if isinstance(rounds, dict) else {}}
    return Run(
        path=run_dir,
        championship=championship,
        playbook=playbook,
        study=str(snap.get("study", "")),
        phase=snap.get("phase", "?"),
        team=str(snap.get("team", "?")),
        backend=str(snap.get("backend", "?")),
        objective=str(snap.get("objective", "extrapolation_error")),
        updated=snap.get("updated"),
        trials=trials,
        arm=arm,
        role=role,
    )


def load_experiment(exp_dir: str, design: dict[str, Any]) -> Experiment:
    """Read an experiment directory whose experiment.json is `design`.

    Args:
        exp_dir: local path or gs:// URL of the experiment directory.
        design: the parsed experiment.json (`arms`: list of {name, role, run_dir relative to exp_dir}).
    """
    where = _join(exp_dir, EXPERIMENT_FILE)
    arms = _require(design, "arms", list, where)
    runs = []
    for i, arm in enumerate(arms):
        if not isinstance(arm, dict):
            raise ConfigError(f"{where}: arms[{i}] is not an object")
        name = _require(arm, "name", str, f"{where}: arms[{i}]")
        sub = _require(arm, "run_dir", str, f"{where}: arms[{i}]")
        run_dir = sub if storage.is_gcs(sub) else _join(exp_dir, sub)
        snap = _read_object(_join(run_dir, "trials.json"))
        if snap is None:
            # An arm that has not started yet still belongs on the page, with no trials.
            runs.append(
                Run(
                    path=run_dir,
                    study="",
                    phase=design.get("phase", "compare"),
                    team=str(arm.get("team", "?")),
                    backend=str(design.get("backend", "?")),
                    objective="extrapolation_error",
                    updated=None,
                    trials=[],
                    arm=name,
                    role=arm.get("role"),
                )
            )
            continue
        runs.append(load_run(run_dir, snap, arm=name, role=arm.get("role")))
    return Experiment(exp_dir, design, runs)


def load(paths: list[str]) -> Loaded:
    """Read every run or experiment directory named.

    Args:
        paths: local paths or gs:// URLs; each holds trials.json (a run) or experiment.json (an experiment).

    Raises:
        ConfigError: a directory is missing, holds neither file, or a file in it is malformed.
    """
    if not paths:
        raise ConfigError("report: give at least one --run-dir")
    runs: list[Run] = []
    experiments: list[Experiment] = []
    for path in paths:
        path = path.rstrip("/") if storage.is_gcs(path) else path
        if not storage.is_gcs(path) and not Path(path).is_dir():
            raise ConfigError(f"{path}: run directory not found")
        design = _read_object(_join(path, EXPERIMENT_FILE))
        if design is not None:
            exp = load_experiment(path, design)
            experiments.append(exp)
            runs.extend(exp.arms)
        elif (snap := _read_object(_join(path, "trials.json"))) is not None:
            runs.append(load_run(path, snap))
        else:
            raise ConfigError(
                f"{path}: neither trials.json nor {EXPERIMENT_FILE} found; is this a run directory?"
            )
    return Loaded(runs, experiments)
