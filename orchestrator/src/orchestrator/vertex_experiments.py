"""`orchestrator swarm --backend vertex --experiments`: every trial of every phase in Vertex AI
Experiments, as it runs.

`TrackedTuner` wraps the round's tuner (Vizier for a Bayesian round, the run dir's Optuna study for
a fixed design) and, after each call the controller makes, writes the same facts to one
ExperimentRun per trial: the objective per epoch as a time series (the curve), then the
parameters, the final metrics and the end state. The tuner stays the record; tracking is best
effort, so an Experiments error is logged and never stops the swarm.

Time series need a TensorBoard behind the experiment: the one Terraform creates with
`tensorboard = true` (infra output `tensorboard`). Each series point is sent once: the run keeps the
last epoch sent as its `last_step` metric, which a restarted controller reads back before it sends
more.
"""

from __future__ import annotations

import logging
import math
from typing import Any

from orchestrator.tuners.base import Tuner, TunerState, TunerTrial

log = logging.getLogger(__name__)
LAST_STEP = "last_step"


class TrackedTuner(Tuner):
    """A tuner whose trials are mirrored to Vertex AI Experiments.

    Args:
        inner: the tuner that holds the study.
        experiment: the Experiments name (lowercase letters, digits and '-').
        run_prefix: each trial's run is `<run_prefix>-t<id>` (the run's cloud name).
        project, region: where the experiment lives.
        tensorboard: the TensorBoard resource name backing the time series.
        credentials: google.auth credentials; None = application default credentials.
    """

    def __init__(
        self,
        inner: Tuner,
        experiment: str,
        run_prefix: str,
        *,
        project: str,
        region: str,
        tensorboard: str,
        credentials: Any = None,
    ):
        from google.cloud import aiplatform

        self.inner = inner
        self.objective = inner.objective
        self.experiment = experiment
        self.run_prefix = run_prefix
        self.tensorboard = tensorboard
        self._runs: dict[str, Any] = {}  # trial id -> its ExperimentRun
        self._last_step: dict[str, int] = {}  # trial id -> last epoch sent
        aiplatform.init(
            project=project,
            location=region,
            credentials=credentials,
            experiment=experiment,
            experiment_tensorboard=tensorboard,
        )

    # -- the tuner, unchanged ----------------------------------------------------------------
    def suggest(self, count: int) -> list[TunerTrial]:
        return self.inner.suggest(count)

    def trials(self) -> list[TunerTrial]:
        return self.inner.trials()

    def __getattr__(self, name: str) -> Any:  # e.g. FixedDesignTuner.remaining
        return getattr(self.inner, name)

    def report(self, trial_id: str, step: int, value: float) -> None:
        self.inner.report(trial_id, step, value)
        if math.isfinite(value):
            self._safely(trial_id, lambda run: self._series(trial_id, run, step, value))

    def complete(self, trial_id: str, value: float, metrics: dict[str, float]) -> None:
        self.inner.complete(trial_id, value, metrics)
        self._finish(trial_id, TunerState.COMPLETED, {**metrics, self.objective: value})

    def infeasible(self, trial_id: str, reason: str) -> None:
        self.inner.infeasible(trial_id, reason)
        self._finish(trial_id, TunerState.INFEASIBLE, {})

    def fail(self, trial_id: str, reason: str) -> None:
        self.inner.fail(trial_id, reason)
        self._finish(trial_id, TunerState.FAILED, {})

    def stop(self, trial_id: str, reason: str, value: float | None = None) -> None:
        self.inner.stop(trial_id, reason, value)
        self._finish(trial_id, TunerState.STOPPED, {} if value is None else {self.objective: value})

    # -- Experiments -------------------------------------------------------------------------
    def run_name(self, trial_id: str) -> str:
        return f"{self.run_prefix}-t{trial_id}"

    def _run(self, trial_id: str) -> Any:
        """The trial's ExperimentRun: created on first use, else found again (after a restart)."""
        from google.api_core import exceptions
        from google.cloud import aiplatform

        if trial_id not in self._runs:
            name = self.run_name(trial_id)
            try:
                run = aiplatform.ExperimentRun(name, experiment=self.experiment)
                self._last_step[trial_id] = int(run.get_metrics().get(LAST_STEP, -1))
            except exceptions.NotFound:
                run = aiplatform.ExperimentRun.create(
                    name, experiment=self.experiment, tensorboard=self.tensorboard
                )
                self._last_step[trial_id] = -1
            self._runs[trial_id] = run
        return self._runs[trial_id]

    def _series(self, trial_id: str, run: Any, step: int, value: float) -> None:
        if step <= self._last_step[trial_id]:
            return  # sent before this controller started
        run.log_time_series_metrics({self.objective: value}, step=step)
        run.log_metrics({LAST_STEP: step})
        self._last_step[trial_id] = step

    def _finish(self, trial_id: str, state: TunerState, metrics: dict[str, float]) -> None:
        from google.cloud import aiplatform_v1

        trial = next((t for t in self.inner.trials() if t.id == trial_id), None)
        end = (
            aiplatform_v1.Execution.State.COMPLETE
            if state is TunerState.COMPLETED
            else aiplatform_v1.Execution.State.FAILED
        )

        def write(run: Any) -> None:
            if trial is not None:
                run.log_params({k: v for k, v in trial.params.items()} | {"state": state.value})
            finite = {
                k: float(v) for k, v in metrics.items() if isinstance(v, int | float) and math.isfinite(v)
            }
            if finite:
                run.log_metrics(finite)
            run.update_state(end)

        self._safely(trial_id, write)

    def _safely(self, trial_id: str, action) -> None:
        try:
            action(self._run(trial_id))
        except Exception as e:  # tracking must never stop the swarm; the tuner holds the truth
            log.warning("experiment tracking for trial %s failed: %s", trial_id, e)
