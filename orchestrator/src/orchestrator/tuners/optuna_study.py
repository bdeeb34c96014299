"""Optuna tuners on a plain SQLite storage: Bayesian rounds (TPE with constant liar) and fixed designs.

Both keep everything in one Optuna study (`sqlite:///RUN_DIR/study.db`), so `optuna-dashboard`,
the `optuna` CLI, `orchestrator status` and the report all see the same trials. Only the controller
writes the storage.

State mapping (TunerState <- Optuna):
  ACTIVE <- RUNNING; COMPLETED <- COMPLETE; STOPPED <- PRUNED;
  INFEASIBLE / FAILED <- FAIL, told apart by the user attribute `zs_state`.
WAITING trials are design points not yet suggested; they are not part of `trials()`.

Crash safety: a suggestion is two storage writes (the trial, then its parameters). A controller
killed in between leaves a RUNNING trial with missing parameters; opening the tuner fills them in
(the fixed value for a design point, a fresh sample otherwise) before anything else reads the study.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Sequence

import optuna
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)
from optuna.trial import FrozenTrial, TrialState

from orchestrator.designs import Point, contains
from orchestrator.errors import OrchestratorError
from orchestrator.tuners.base import (
    FloatParam,
    IntParam,
    Param,
    SearchSpace,
    Tuner,
    TunerState,
    TunerTrial,
)

optuna.logging.set_verbosity(optuna.logging.WARNING)

_STATE_ATTR = "zs_state"
_REASON_ATTR = "zs_reason"
_METRICS_ATTR = "zs_metrics"
_STOP_VALUE_ATTR = "zs_stop_value"
_FIXED_PARAMS = "fixed_params"  # Optuna's own system attribute for enqueued trials


# A suggestion with exactly an earlier trial's parameters is marked with this `zs_state` and failed;
# `trials()` leaves it out, so no listing, snapshot or retry ever sees it.
DUPLICATE = "DUPLICATE"
MAX_RESAMPLES = 20


def sampler_seed(study_name: str, seed: int | None, n_trials: int) -> int:
    """The TPE seed of a controller process: the run (study name, configured seed) and the number
    of trials the study already holds, so every restart draws a fresh, reproducible stream."""
    return zlib.crc32(f"{study_name}:{seed}:{n_trials}".encode())


def storage_url(db_path: str) -> str:
    """The SQLAlchemy URL of a study file, e.g. `sqlite:////abs/run/study.db`."""
    return f"sqlite:///{db_path}"


def open_storage(url: str) -> optuna.storages.RDBStorage:
    """An Optuna RDB storage; for SQLite in WAL mode with synchronous=NORMAL.

    WAL keeps every commit durable against a killed process (the crash the controller must
    survive) without an fsync per commit, which makes a pass several times faster; readers such
    as optuna-dashboard are not blocked by the writer.

    Args:
        url: SQLAlchemy URL, e.g. `sqlite:////abs/run/study.db`.
    """
    storage = optuna.storages.RDBStorage(url, engine_kwargs={"connect_args": {"timeout": 60}})
    if url.startswith("sqlite:"):
        from sqlalchemy import event

        def _pragmas(dbapi_conn, _record) -> None:
            dbapi_conn.execute("PRAGMA journal_mode=WAL")
            dbapi_conn.execute("PRAGMA synchronous=NORMAL")

        event.listen(storage.engine, "connect", _pragmas)
        storage.engine.dispose()  # connections opened while creating the schema predate the pragmas
    return storage


def _distribution(p: Param) -> BaseDistribution:
    if isinstance(p, FloatParam):
        return FloatDistribution(p.low, p.high, log=p.log)
    if isinstance(p, IntParam):
        return IntDistribution(p.low, p.high, log=p.log)
    return CategoricalDistribution(list(p.choices))


class OptunaTuner(Tuner):
    """Bayesian optimisation over `space` with TPE (multivariate, constant liar): trials still
    running count as if they had the worst value seen, so parallel suggestions spread out.

    Args:
        storage: SQLAlchemy URL, normally `sqlite:///RUN_DIR/study.db`.
        study_name: the study's name (the run's study label).
        space: the knobs to search.
        seed: the run's sampler seed; each process seeds TPE with it, the study name and the
            number of trials already stored (`sampler_seed`). None: not reproducible.
        n_startup_trials: random trials before TPE takes over (default 10).
    """

    def __init__(
        self,
        storage: str,
        study_name: str,
        space: SearchSpace,
        seed: int | None = None,
        n_startup_trials: int = 10,
    ) -> None:
        self.space = list(space)
        self._dists = {p.name: _distribution(p) for p in self.space}
        self.study = optuna.create_study(
            storage=open_storage(storage),
            study_name=study_name,
            direction="minimize",
            load_if_exists=True,
        )
        # Seeded by the run and the trials already in the study: a restarted controller continues
        # the sequence instead of replaying the first process's start-up points (TPESampler(seed)
        # alone repeats them after every restart).
        self.study.sampler = optuna.samplers.TPESampler(
            seed=None
            if seed is None
            else sampler_seed(study_name, seed, len(self.study.get_trials(deepcopy=False))),
            multivariate=True,
            constant_liar=True,
            n_startup_trials=n_startup_trials,
        )
        self._repair_interrupted_suggestions()

    # -- suggestions ---------------------------------------------------------------------------
    def suggest(self, count: int) -> list[TunerTrial]:
        """New trials whose points differ from every earlier trial's (a repeat is set aside as a
        DUPLICATE trial that no listing shows, and sampled again)."""
        out = []
        for _ in range(count):
            for _tries in range(MAX_RESAMPLES):
                trial = self.study.ask()
                self._fill_params(trial, self._expected_params(trial._trial_id))
                ft = self.study._storage.get_trial(trial._trial_id)
                if not self._repeats_earlier(ft):
                    break
                trial.set_user_attr(_STATE_ATTR, DUPLICATE)
                self.study.tell(ft.number, state=TrialState.FAIL)
            else:
                raise OrchestratorError(
                    f"the sampler repeated earlier points {MAX_RESAMPLES} times in a row: the search space "
                    "has no point left that no trial has run; widen it or lower --max-trials"
                )
            out.append(self._to_tuner_trial(ft))
        return out

    def _repeats_earlier(self, ft: FrozenTrial) -> bool:
        """Whether a Bayesian suggestion has exactly the parameters of an earlier (listed) trial."""
        if not self._dists or self._expected_params(ft._trial_id) != list(self._dists):
            return False  # a design point: repeats across rounds are the design's business
        return any(
            t.number != ft.number and t.params == ft.params
            for t in self.study.get_trials(deepcopy=False)
            if t.state is not TrialState.WAITING and t.user_attrs.get(_STATE_ATTR) != DUPLICATE
        )

    def _expected_params(self, trial_id: int) -> list[str]:
        return list(self._dists)

    def _fill_params(self, trial: optuna.trial.Trial, names: Sequence[str]) -> None:
        for name in names:
            dist = self._dists[name]
            if isinstance(dist, FloatDistribution):
                trial.suggest_float(name, dist.low, dist.high, log=dist.log)
            elif isinstance(dist, IntDistribution):
                trial.suggest_int(name, dist.low, dist.high, log=dist.log)
            else:
                trial.suggest_categorical(name, dist.choices)

    def _repair_interrupted_suggestions(self) -> None:
        for ft in self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            missing = [n for n in self._expected_params(ft._trial_id) if n not in ft.params]
            if missing:
                self._fill_params(optuna.trial.Trial(self.study, ft._trial_id), missing)

    # -- outcomes ------------------------------------------------------------------------------
    def _frozen(self, trial_id: str) -> FrozenTrial:
        storage = self.study._storage
        try:
            tid = storage.get_trial_id_from_study_id_trial_number(self.study._study_id, int(trial_id))
        except (KeyError, ValueError) as e:
            raise KeyError(f"no trial {trial_id!r} in study {self.study.study_name!r}") from e
        return storage.get_trial(tid)

    def _finish(self, trial_id: str, target: TunerState, attrs: dict, **tell) -> None:
        ft = self._frozen(trial_id)
        current = self._state(ft)
        if current is target:
            return  # a replay after a crash: already done
        if current is not TunerState.ACTIVE:
            raise ValueError(f"trial {trial_id} is already {current.value}, cannot make it {target.value}")
        handle = optuna.trial.Trial(self.study, ft._trial_id)
        for key, value in attrs.items():
            handle.set_user_attr(key, value)
        self.study.tell(ft.number, **tell)

    def complete(self, trial_id: str, value: float, metrics: dict[str, float]) -> None:
        self._finish(
            trial_id,
            TunerState.COMPLETED,
            {_METRICS_ATTR: {k: float(v) for k, v in metrics.items()}},
            values=float(value),
        )

    def infeasible(self, trial_id: str, reason: str) -> None:
        self._finish(
            trial_id,
            TunerState.INFEASIBLE,
            {_STATE_ATTR: TunerState.INFEASIBLE.value, _REASON_ATTR: reason},
            state=TrialState.FAIL,
        )

    def fail(self, trial_id: str, reason: str) -> None:
        self._finish(
            trial_id,
            TunerState.FAILED,
            {_STATE_ATTR: TunerState.FAILED.value, _REASON_ATTR: reason},
            state=TrialState.FAIL,
        )

    def stop(self, trial_id: str, reason: str, value: float | None = None) -> None:
        attrs: dict = {_REASON_ATTR: reason}
        if value is not None and math.isfinite(value):
            attrs[_STOP_VALUE_ATTR] = float(value)
        self._finish(trial_id, TunerState.STOPPED, attrs, state=TrialState.PRUNED)

    def annotate(self, trial_id: str, attrs: dict[str, str | float]) -> None:
        """Set user attributes (what optuna-dashboard's trial table shows) on a RUNNING trial; a
        replay on a trial that has finished since is a no-op (Optuna refuses to change it)."""
        ft = self._frozen(trial_id)
        if ft.state is not TrialState.RUNNING:
            return
        for key, value in attrs.items():
            self.study._storage.set_trial_user_attr(ft._trial_id, key, value)

    def report(self, trial_id: str, step: int, value: float) -> None:
        ft = self._frozen(trial_id)
        if ft.state is not TrialState.RUNNING or step in ft.intermediate_values:
            return
        self.study._storage.set_trial_intermediate_value(ft._trial_id, int(step), float(value))

    # -- reading -------------------------------------------------------------------------------
    @staticmethod
    def _state(ft: FrozenTrial) -> TunerState:
        if ft.state is TrialState.RUNNING:
            return TunerState.ACTIVE
        if ft.state is TrialState.COMPLETE:
            return TunerState.COMPLETED
        if ft.state is TrialState.PRUNED:
            return TunerState.STOPPED
        if ft.state is TrialState.FAIL and ft.user_attrs.get(_STATE_ATTR) == TunerState.INFEASIBLE.value:
            return TunerState.INFEASIBLE
        return TunerState.FAILED

    def _to_tuner_trial(self, ft: FrozenTrial) -> TunerTrial:
        state = self._state(ft)
        value = ft.value if state is TunerState.COMPLETED else None
        if state is TunerState.STOPPED:
            value = ft.user_attrs.get(_STOP_VALUE_ATTR, ft.value)
        return TunerTrial(
            id=str(ft.number),
            params=dict(ft.params),
            state=state,
            value=value,
            metrics=dict(ft.user_attrs.get(_METRICS_ATTR, {})),
            reason=ft.user_attrs.get(_REASON_ATTR),
        )

    def trials(self) -> list[TunerTrial]:
        frozen = self.study.get_trials(deepcopy=False)
        return [
            self._to_tuner_trial(ft)
            for ft in sorted(frozen, key=lambda t: t.number)
            if ft.state is not TrialState.WAITING and ft.user_attrs.get(_STATE_ATTR) != DUPLICATE
        ]


class FixedDesignTuner(OptunaTuner):
    """A fixed design (grid, fractional factorial, Latin hypercube, explicit points) stored in an
    Optuna study with `enqueue_trial`; `suggest` hands out the queued points in order and returns
    [] once they are used up. Points may be added in later rounds (phase 1's learning-rate round).

    Args:
        storage: SQLAlchemy URL, normally `sqlite:///RUN_DIR/study.db`.
        study_name: the study's name.
        space: every knob any point sets, with its range or choices (Optuna needs a fixed
            distribution per knob across the study).
        points: the design; enqueued once (re-adding the same points is a no-op).
    """

    def __init__(
        self, storage: str, study_name: str, space: SearchSpace, points: Sequence[Point] = ()
    ) -> None:
        super().__init__(storage, study_name, space, seed=0)
        self.add_points(points)

    def add_points(self, points: Sequence[Point]) -> None:
        """Enqueue design points not in the study yet.

        Args:
            points: knob name -> value; every knob must be in the space and every value in range.
        """
        by_name = {p.name: p for p in self.space}
        for point in points:
            for name, value in point.items():
                if name not in by_name or not contains(by_name[name], value):
                    raise ValueError(f"design point {point} sets {name}={value!r} outside the search space")
            self.study.enqueue_trial(dict(point), skip_if_exists=True)

    def remaining(self) -> int:
        """Design points not suggested yet."""
        return len(self.study.get_trials(deepcopy=False, states=(TrialState.WAITING,)))

    def suggest(self, count: int) -> list[TunerTrial]:
        # Each ask takes one waiting point, so asking for no more than remain never samples.
        return super().suggest(min(count, self.remaining()))

    def _expected_params(self, trial_id: int) -> list[str]:
        fixed = self.study._storage.get_trial_system_attrs(trial_id).get(_FIXED_PARAMS, {})
        return [n for n in self._dists if n in fixed]
