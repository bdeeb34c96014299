"""Tuner `vertex`: a Vertex AI Vizier study driven through `google.cloud.aiplatform.vizier`.

The study is a `vz.StudyConfig` (not a bare ProblemStatement: create_or_load calls to_proto()) with
ALGORITHM_UNSPECIFIED, Vizier's Bayesian default; float knobs are DOUBLE parameters (LOG scale where
the space says so, as for the loss weights), integers INTEGER, categorical knobs whose choices are
all numbers DISCRETE (Vizier can use their order), other choices CATEGORICAL. The objective
`extrapolation_error` is minimised.

How our final states live in Vizier, which knows only SUCCEEDED and INFEASIBLE:
  COMPLETED  -> SUCCEEDED, final measurement = objective + the other final metrics (stderr, baselines)
  INFEASIBLE -> INFEASIBLE, infeasible_reason = the reason
  FAILED     -> INFEASIBLE, infeasible_reason = "FAILED: <reason>"
  STOPPED    -> stop_trial (STOPPING), then SUCCEEDED with the last measurement as the final one
                plus the marker metric `early_stopped` = 1, so Vizier's model learns from the
                region it sampled (a poor value there is information); without any measurement,
                INFEASIBLE with "STOPPED: <reason>". Read back, the marker makes it STOPPED again.
Only failures (infrastructure) and divergence are infeasible, so they alone steer the search away.
Intermediate measurements are sent once per step: the trial proto holds the steps already
measured, so a restarted controller (which lists the trials afresh) never sends a step twice.

SDK pitfalls worked around (GCP.md A.3): `Study.trials()` returns only the first page, so trials are
listed by paging `list_trials` ourselves; `materialize_study_config()` passes an argument the
client rejects, so the stored spec is read from the study proto; `create_or_load` drops
project/location/credentials, so `aiplatform.init` sets them first.

Calls: the first `trials()` lists every page; later calls keep finished trials (final in Vizier)
and serve the rest from what this tuner read and wrote, re-reading the unfinished ones with
get_trial at most every `refresh_s` seconds (to notice a trial stopped from the console). The
controller is the study's only writer, so nothing else can add trials; the calls grow with the
running trials, never with the finished ones.

`suggest(count, worker)`: Vizier first hands a client its own ACTIVE trials, then new ones; we ask
for count + our active trials and keep only the new ones, so a suggestion whose answer was lost
(crash, timeout) comes back on the next call instead of being orphaned.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

from orchestrator.errors import ConfigError
from orchestrator.tuners.base import (
    FloatParam,
    IntParam,
    SearchSpace,
    Tuner,
    TunerState,
    TunerTrial,
)
from orchestrator.vertex_settings import CloudCalls, VertexSettings, quiet_sdk_logs

FAILED_PREFIX = "FAILED: "
STOPPED_PREFIX = "STOPPED: "
# In the final measurement of a stopped SUCCEEDED trial: why it stopped (the reason's own text has
# no field in Vizier; the numbers behind a rule are in the run's events.jsonl).
STOPPED_METRIC = "early_stopped"
_BY_RULE, _BY_REQUEST = 1.0, 2.0
_REQUESTED = "stopped by `orchestrator stop`"


# A suggestion with exactly an earlier trial's parameters is completed INFEASIBLE with this reason
# and left out of `trials()` (issue 17: a point is never launched twice).
DUPLICATE_PREFIX = "duplicate of trial "


def _duplicate(t: TunerTrial) -> bool:
    return t.state is TunerState.INFEASIBLE and (t.reason or "").startswith(DUPLICATE_PREFIX)


def _numeric_choices(choices: tuple[str, ...]) -> list[float] | None:
    try:
        values = [float(c) for c in choices]
    except ValueError:
        return None
    return values if len(set(values)) == len(values) else None


def study_config(space: SearchSpace, objective: str = "extrapolation_error"):
    """The vz.StudyConfig of a search space (no network).

    Args:
        space: the knobs (FloatParam, IntParam, CategoricalParam).
        objective: the metric to minimise (default "extrapolation_error").
    """
    from google.cloud.aiplatform.vizier import pyvizier as vz

    sc = vz.StudyConfig()
    sc.algorithm = vz.Algorithm.ALGORITHM_UNSPECIFIED
    sc.metric_information.append(vz.MetricInformation(name=objective, goal=vz.ObjectiveMetricGoal.MINIMIZE))
    root = sc.search_space.select_root()
    for p in space:
        if isinstance(p, FloatParam):
            scale = vz.ScaleType.LOG if p.log else vz.ScaleType.LINEAR
            root.add_float_param(p.name, p.low, p.high, scale_type=scale)
        elif isinstance(p, IntParam):
            scale = vz.ScaleType.LOG if p.log else vz.ScaleType.LINEAR
            root.add_int_param(p.name, p.low, p.high, scale_type=scale)
        elif (values := _numeric_choices(p.choices)) is not None:
            root.add_discrete_param(p.name, sorted(values))
        else:
            root.add_categorical_param(p.name, list(p.choices))
    return sc


def study_spec(space: SearchSpace, objective: str = "extrapolation_error"):
    """aiplatform_v1.StudySpec of a search space, as sent to Vizier (for --dry-run)."""
    return study_config(space, objective).to_proto()


class VizierTuner(Tuner):
    """One Vizier study, created on first use and loaded (by display name) afterwards.

    Args:
        study: the study's display name (unique in the project and region).
        space: the knobs; reopening a study with a different space is a ConfigError.
        project: Google Cloud project id.
        region: Vertex AI region, e.g. "us-central1".
        worker: the client id under which this controller asks for suggestions.
        credentials: google.auth credentials; None = application default credentials.
        calls: CloudCalls (retry policy, injected sleeper); default CloudCalls().
        refresh_s: re-read unfinished trials from Vizier at most this often, in seconds (default 60).
        clock: unix seconds (default time.time; tests inject a fake clock).
    """

    def __init__(
        self,
        study: str,
        space: SearchSpace,
        *,
        project: str,
        region: str,
        worker: str = "zeta-swarm-controller",
        credentials: Any = None,
        calls: CloudCalls | None = None,
        refresh_s: float = 60.0,
        clock: Callable[[], float] = time.time,
    ):
        from google.cloud import aiplatform
        from google.cloud.aiplatform.vizier import Study

        self.display_name = study
        self.space = tuple(space)
        self.project, self.region, self.worker = project, region, worker
        self.credentials = credentials
        self.calls = calls or CloudCalls()
        self.calls.credentials = self.calls.credentials or credentials
        self._cache: dict[int, Any] = {}  # trial uid -> latest aiplatform_v1.Trial proto
        self._view: dict[int, TunerTrial] = {}  # trial uid -> that proto as a TunerTrial
        self._synced = False
        self.refresh_s, self.clock = refresh_s, clock
        self._refreshed = -math.inf
        quiet_sdk_logs()
        # create_or_load returns Study(name) without project/location/credentials: they come from init.
        aiplatform.init(project=project, location=region, credentials=credentials)
        config = study_config(self.space, self.objective)
        self._study = self.calls.run(
            f"create or load Vizier study {study!r}",
            lambda: Study.create_or_load(
                display_name=study, problem=config, project=project, location=region, credentials=credentials
            ),
            permission="aiplatform.studies.create",
        )
        self._check_spec(config.to_proto())

    @classmethod
    def from_settings(
        cls, settings: VertexSettings, study: str, space: SearchSpace, **kw: Any
    ) -> VizierTuner:
        """The study in settings.project / settings.region, with its retry policy.

        Args:
            settings: VertexSettings.
            study: display name; space: the knobs; kw: other VizierTuner arguments.
        """
        kw.setdefault(
            "calls", CloudCalls(settings.retry, expected_account=settings.orchestrator_service_account)
        )
        return cls(
            study,
            space,
            project=settings.project,
            region=settings.region,
            **kw,
        )

    @property
    def resource_name(self) -> str:
        return self._study.resource_name

    @staticmethod
    def _signature(spec) -> tuple:
        """What must match for a stored study to be this search: metrics, and per parameter its
        kind, bounds or values and scale (ignoring fields the service may fill in)."""

        def param(p) -> tuple:
            kind = p._pb.WhichOneof("parameter_value_spec")
            value = getattr(p, kind)
            bounds = tuple(value.values) if hasattr(value, "values") else (value.min_value, value.max_value)
            return (p.parameter_id, kind, bounds, p.scale_type.name)

        metrics = tuple((m.metric_id, m.goal.name) for m in spec.metrics)
        return metrics, tuple(sorted(param(p) for p in spec.parameters))

    def _check_spec(self, wanted) -> None:
        have = self._study.gca_resource.study_spec  # read once by create_or_load; no extra call
        if self._signature(have) != self._signature(wanted):
            names = sorted(p.parameter_id for p in have.parameters)
            raise ConfigError(
                f"Vizier study {self.display_name!r} already exists with another search space or objective "
                f"(parameters {names}); restore the phase's search space, or delete that study in the console"
            )

    # ------------------------------------------------------------------ reading

    def _list_all(self) -> list:
        request = {"parent": self._study.resource_name}
        return list(self._study.api_client.list_trials(request=request))  # iterating the pager pages

    def _store(self, proto) -> TunerTrial:
        """Keep a trial's proto and its TunerTrial (converted once: proto-plus reads are slow)."""
        uid = int(proto.name.rsplit("/", 1)[-1])
        self._cache[uid] = proto
        self._view[uid] = self._to_trial(proto)
        return self._view[uid]

    def trials(self) -> list[TunerTrial]:
        if not self._synced:
            for proto in self.calls.run(
                "list Vizier trials", self._list_all, permission="aiplatform.trials.list"
            ):
                self._store(proto)
            self._synced = True
            self._refreshed = self.clock()
        elif self.clock() - self._refreshed >= self.refresh_s:
            self._refreshed = self.clock()
            for uid, t in list(self._view.items()):
                if t.state is TunerState.ACTIVE:  # REQUESTED, ACTIVE or STOPPING in Vizier
                    name = self._cache[uid].name
                    self._store(
                        self.calls.run(
                            f"get trial {uid}", lambda n=name: self._study.api_client.get_trial(name=n)
                        )
                    )
        return [self._view[uid] for uid in sorted(self._view) if not _duplicate(self._view[uid])]

    def _proto(self, trial_id: str, refresh: bool = False):
        uid = int(trial_id)
        if refresh or uid not in self._cache:
            name = f"{self._study.resource_name}/trials/{uid}"
            self._store(
                self.calls.run(f"get trial {uid}", lambda: self._study.api_client.get_trial(name=name))
            )
        return self._cache[uid]

    def _params(self, proto) -> dict[str, float | int | str]:
        raw = {p.parameter_id: p.value for p in proto.parameters}
        out: dict[str, float | int | str] = {}
        for p in self.space:
            if p.name not in raw:
                continue
            v = raw[p.name]
            if isinstance(p, FloatParam):
                out[p.name] = float(v)
            elif isinstance(p, IntParam):
                out[p.name] = int(round(float(v)))
            elif _numeric_choices(p.choices) is not None:
                out[p.name] = min(p.choices, key=lambda c: abs(float(c) - float(v)))
            else:
                out[p.name] = str(v)
        return out

    def _to_trial(self, proto) -> TunerTrial:
        tid = proto.name.rsplit("/", 1)[-1]
        state = proto.state.name
        metrics = {m.metric_id: float(m.value) for m in proto.final_measurement.metrics}
        if state == "SUCCEEDED":
            value = metrics.pop(self.objective, None)
            why = metrics.pop(STOPPED_METRIC, None)
            if why is not None:
                step = proto.final_measurement.step_count
                reason = (
                    _REQUESTED
                    if why == _BY_REQUEST
                    else f"early stop at epoch {step}; its last measurement is its final one (the rule: events.jsonl)"
                )
                return TunerTrial(tid, self._params(proto), TunerState.STOPPED, value, reason=reason)
            return TunerTrial(tid, self._params(proto), TunerState.COMPLETED, value, metrics)
        if state == "INFEASIBLE":
            reason = proto.infeasible_reason
            if reason.startswith(FAILED_PREFIX):
                return TunerTrial(
                    tid, self._params(proto), TunerState.FAILED, reason=reason[len(FAILED_PREFIX) :]
                )
            if reason.startswith(STOPPED_PREFIX):
                last = [
                    m.value for ms in proto.measurements for m in ms.metrics if m.metric_id == self.objective
                ]
                value = float(last[-1]) if last else None
                return TunerTrial(
                    tid, self._params(proto), TunerState.STOPPED, value, reason=reason[len(STOPPED_PREFIX) :]
                )
            return TunerTrial(tid, self._params(proto), TunerState.INFEASIBLE, reason=reason)
        return TunerTrial(tid, self._params(proto), TunerState.ACTIVE)  # REQUESTED, ACTIVE, STOPPING

    # ------------------------------------------------------------------ writing

    def suggest(self, count: int) -> list[TunerTrial]:
        if count <= 0:
            return []
        if not self._synced:
            self.trials()
        mine = {
            uid
            for uid, t in self._view.items()
            if t.state is TunerState.ACTIVE
            and self._cache[uid].state.name == "ACTIVE"  # not STOPPING: Vizier hands out only ACTIVE ones
            and self._cache[uid].client_id == self.worker
        }
        # Safe to repeat (a suggest LRO that timed out is retried): Vizier hands this worker its
        # ACTIVE trials first, so the trials of a lost answer come back instead of new ones.
        got = self.calls.run(
            f"suggest {count} trials",
            lambda: self._study.suggest(count=count + len(mine), worker=self.worker),
            permission="aiplatform.trials.create",
        )
        new = []
        for t in got:
            proto = t.gca_resource  # the SDK's Trial.parameters would call get_trial once per access
            uid = int(proto.name.rsplit("/", 1)[-1])
            trial = self._store(proto)
            if uid not in mine and len(new) < count:
                twin = next(
                    (o for o in self._view.values() if o.id != trial.id and o.params == trial.params), None
                )
                if twin is not None:  # never launch a point twice: set it aside, unlisted
                    self.infeasible(trial.id, f"{DUPLICATE_PREFIX}{twin.id}")
                    continue
                new.append(trial)
        return new

    def _trial_sdk(self, proto):
        from google.cloud.aiplatform.vizier import Trial

        # Built from the proto we hold: Trial(name) would spend a get_trial call.
        return Trial._construct_sdk_resource_from_gapic(
            proto, project=self.project, location=self.region, credentials=self.credentials
        )

    def _measurement(self, values: dict[str, float], step: int = 0, seconds: float = 0.0):
        from google.cloud.aiplatform.vizier import pyvizier as vz

        finite = {k: float(v) for k, v in values.items() if isinstance(v, int | float) and math.isfinite(v)}
        return vz.Measurement(metrics=finite, elapsed_secs=seconds, steps=step)

    def _finish(self, trial_id: str, target: TunerState, action) -> bool:
        """Run `action(proto)` to move an ACTIVE trial to `target`, exactly once.

        Returns True when this call made the transition, False for a replay (already `target`).
        Raises ValueError when the trial already ended in another state.
        """
        from google.api_core import exceptions

        proto = self._proto(trial_id)
        for attempt in range(2):
            current = self._to_trial(proto).state
            if current is target:
                return False
            if current is not TunerState.ACTIVE:
                raise ValueError(
                    f"trial {trial_id} is already {current.value}; cannot make it {target.value}"
                )
            try:
                action(proto)
                break
            except exceptions.FailedPrecondition:
                if attempt:
                    raise
                proto = self._proto(trial_id, refresh=True)  # someone (a dead predecessor) got there first
        self._proto(trial_id, refresh=True)
        return True

    def complete(self, trial_id: str, value: float, metrics: dict[str, float]) -> None:
        if not math.isfinite(value):
            raise ValueError(f"trial {trial_id}: objective {value!r} is not finite; use infeasible()")
        m = self._measurement({**metrics, self.objective: value})

        def act(proto):
            self.calls.run(
                f"complete trial {trial_id}",
                lambda: self._trial_sdk(proto).complete(m),
                permission="aiplatform.trials.update",
            )

        self._finish(trial_id, TunerState.COMPLETED, act)

    def _complete_infeasible(self, trial_id: str, target: TunerState, reason: str) -> None:
        def act(proto):
            sdk = self._trial_sdk(proto)
            self.calls.run(
                f"complete trial {trial_id} as infeasible",
                lambda: sdk.complete(infeasible_reason=reason),
                permission="aiplatform.trials.update",
            )

        self._finish(trial_id, target, act)

    def infeasible(self, trial_id: str, reason: str) -> None:
        if reason.startswith((FAILED_PREFIX, STOPPED_PREFIX)):
            reason = "infeasible: " + reason  # keep the prefixes unambiguous
        self._complete_infeasible(trial_id, TunerState.INFEASIBLE, reason)

    def fail(self, trial_id: str, reason: str) -> None:
        self._complete_infeasible(trial_id, TunerState.FAILED, FAILED_PREFIX + reason)

    def stop(self, trial_id: str, reason: str, value: float | None = None) -> None:
        from google.api_core import exceptions

        def act(proto):
            sdk = self._trial_sdk(proto)
            if proto.state.name == "ACTIVE":
                try:  # no SDK wrapper for StopTrial: the gapic call
                    self.calls.run(
                        f"stop trial {trial_id}",
                        lambda: sdk.api_client.stop_trial(request={"name": proto.name}),
                        permission="aiplatform.trials.stop",
                    )
                except exceptions.FailedPrecondition:
                    pass  # already STOPPING (a replay after a crash)
            steps = [ms.step_count for ms in proto.measurements]
            last = value if value is not None and math.isfinite(value) else self._last_measured(proto)
            if last is None:  # nothing measured: nothing Vizier could learn from
                self.calls.run(
                    f"complete stopped trial {trial_id}",
                    lambda: sdk.complete(infeasible_reason=STOPPED_PREFIX + reason),
                    permission="aiplatform.trials.update",
                )
                return
            why = _BY_REQUEST if reason == _REQUESTED else _BY_RULE
            final = self._measurement({self.objective: last, STOPPED_METRIC: why}, step=max(steps, default=0))
            self.calls.run(
                f"complete stopped trial {trial_id}",
                lambda: sdk.complete(final),
                permission="aiplatform.trials.update",
            )

        self._finish(trial_id, TunerState.STOPPED, act)

    def _last_measured(self, proto) -> float | None:
        values = [m.value for ms in proto.measurements for m in ms.metrics if m.metric_id == self.objective]
        return float(values[-1]) if values else None

    def report(self, trial_id: str, step: int, value: float) -> None:
        if not math.isfinite(value):
            return  # Vizier rejects NaN; the final state says what happened
        proto = self._proto(trial_id)
        if any(ms.step_count == step for ms in proto.measurements):
            return  # sent before (maybe by a controller that restarted since): once per step
        if proto.state.name != "ACTIVE":
            return  # stopping or finished: Vizier takes no more measurements
        m = self._measurement({self.objective: value}, step=step)
        self.calls.run(
            f"measure trial {trial_id}",
            lambda: self._trial_sdk(proto).add_measurement(m),
            permission="aiplatform.trials.update",
        )
        from google.cloud.aiplatform.vizier import pyvizier as vz

        proto.measurements.append(vz.MeasurementConverter.to_proto(m))  # what Vizier now holds
        self._store(proto)
