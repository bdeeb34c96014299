"""The Vizier tuner beyond the contract: the study it creates, paging, suggestions per worker,
lost responses, the requests of each final state, and experiment tracking."""

from __future__ import annotations

import pytest
from google.api_core import exceptions
from google.cloud import aiplatform, aiplatform_v1
from google.cloud.aiplatform.metadata import metadata
from orchestrator.errors import ConfigError
from orchestrator.tuners.base import CategoricalParam, FloatParam, IntParam, TunerState
from orchestrator.tuners.vizier import VizierTuner

from vertex.fakes import Crash

PHASE2 = (
    FloatParam("loss.gue_nll_weight", 1e-3, 1.0, log=True),
    FloatParam("loss.gue_mmd_weight", 1e-2, 10.0, log=True),
)
PHASE1 = (
    CategoricalParam("model.primes", ("2,3,5", "2,3,5,7,11,13")),
    CategoricalParam("optim.lr", ("1e-3", "5e-4", "2e-3")),
    IntParam("model.layers", 2, 6),
)
Spec = aiplatform_v1.StudySpec


def open_tuner(credentials, calls, space=PHASE2, study="phase2-minibatch", **kw) -> VizierTuner:
    return VizierTuner(
        study,
        space,
        project="zeta-swarm-test",
        region="us-central1",
        credentials=credentials,
        calls=calls,
        **kw,
    )


def test_the_study_is_a_minimising_bayesian_study_with_log_scale_weights(vizier, cloud, credentials, calls):
    open_tuner(credentials, calls)
    (req,) = cloud.requests("create_study")
    assert req.parent == "projects/zeta-swarm-test/locations/us-central1"
    assert req.study.display_name == "phase2-minibatch"
    spec = req.study.study_spec
    assert spec.algorithm == Spec.Algorithm.ALGORITHM_UNSPECIFIED
    (metric,) = spec.metrics
    assert (metric.metric_id, metric.goal) == ("extrapolation_error", Spec.MetricSpec.GoalType.MINIMIZE)
    nll, mmd = spec.parameters
    assert (nll.parameter_id, nll.double_value_spec.min_value, nll.double_value_spec.max_value) == (
        "loss.gue_nll_weight",
        1e-3,
        1.0,
    )
    assert nll.scale_type == mmd.scale_type == Spec.ParameterSpec.ScaleType.UNIT_LOG_SCALE
    assert (mmd.double_value_spec.min_value, mmd.double_value_spec.max_value) == (1e-2, 10.0)


def test_phase1_knobs_become_categorical_discrete_and_integer(vizier, cloud, credentials, calls):
    tuner = open_tuner(credentials, calls, space=PHASE1, study="phase1-fullbatch")
    primes, lr, layers = cloud.requests("create_study")[0].study.study_spec.parameters
    assert list(primes.categorical_value_spec.values) == ["2,3,5", "2,3,5,7,11,13"]
    assert list(lr.discrete_value_spec.values) == [5e-4, 1e-3, 2e-3]  # ordered: Vizier may use it
    assert (layers.integer_value_spec.min_value, layers.integer_value_spec.max_value) == (2, 6)
    for t in tuner.suggest(6):
        assert t.params["model.primes"] in PHASE1[0].choices
        assert t.params["optim.lr"] in PHASE1[1].choices  # the string choice, not 0.001
        assert isinstance(t.params["model.layers"], int) and 2 <= t.params["model.layers"] <= 6


def test_reopening_with_another_search_space_is_refused(vizier, credentials, calls):
    open_tuner(credentials, calls)
    other = (FloatParam("loss.gue_nll_weight", 1e-4, 1.0, log=True), PHASE2[1])
    with pytest.raises(ConfigError, match="phase2-minibatch.*another search space"):
        open_tuner(credentials, calls, space=other)
    linear = (FloatParam("loss.gue_nll_weight", 1e-3, 1.0, log=False), PHASE2[1])
    with pytest.raises(ConfigError, match="another search space"):
        open_tuner(credentials, calls, space=linear)
    assert (
        open_tuner(credentials, calls, space=PHASE2[::-1]).trials() == []
    )  # same knobs, other order: same study


def test_trials_pages_past_the_sdk_first_page_and_later_passes_read_only_active_ones(
    vizier, cloud, credentials, calls, clock
):
    tuner = open_tuner(credentials, calls, clock=clock)
    made = []
    for _ in range(5):
        made += tuner.suggest(50)
    for t in made[:240]:
        tuner.complete(t.id, 0.01, {"extrapolation_stderr": 0.001})
    assert len(aiplatform.vizier.Study(tuner.resource_name).trials()) == 100  # the SDK's first-page-only list
    fresh = open_tuner(credentials, calls, clock=clock)
    before = cloud.total_calls
    got = fresh.trials()
    assert len(got) == 250 and [int(t.id) for t in got] == sorted(int(t.id) for t in made)
    assert cloud.total_calls - before == 3  # three pages
    before = cloud.total_calls
    assert sum(t.state is TunerState.ACTIVE for t in fresh.trials()) == 10
    assert cloud.total_calls == before  # within refresh_s: served from what it read and wrote
    clock.advance(60)
    assert sum(t.state is TunerState.ACTIVE for t in fresh.trials()) == 10
    assert cloud.total_calls - before == 10  # one get_trial per active trial, none per finished one


def test_suggest_asks_for_its_pending_trials_too_and_returns_only_new_ones(vizier, cloud, credentials, calls):
    tuner = open_tuner(credentials, calls)
    first = tuner.suggest(3)
    second = tuner.suggest(2)
    req = cloud.requests("suggest_trials")[-1]
    assert (req.suggestion_count, req.client_id) == (5, "zeta-swarm-controller")
    assert len(second) == 2 and not {t.id for t in first} & {t.id for t in second}
    assert len(vizier.study("phase2-minibatch").trials) == 5


def test_a_suggestion_whose_answer_was_lost_is_handed_out_again_not_orphaned(
    vizier, cloud, credentials, calls, clock
):
    tuner = open_tuner(credentials, calls)
    cloud.fail("suggest_trials", exceptions.DeadlineExceeded("suggestion LRO timed out"), after=True)
    got = tuner.suggest(4)
    assert len(got) == 4 and len(vizier.study("phase2-minibatch").trials) == 4  # the retry got the same four
    assert len(clock.slept) == 1


def test_slow_suggestions_only_take_time(vizier, cloud, credentials, calls, clock):
    vizier.suggest_delay_s = 90.0
    tuner = open_tuner(credentials, calls)
    t0 = clock()
    assert len(tuner.suggest(5)) == 5
    assert clock() - t0 == 90.0 and clock.slept == []


def test_final_states_reach_vizier_as_measurements_and_reasons(vizier, cloud, credentials, calls):
    tuner = open_tuner(credentials, calls)
    a, b, c, d = tuner.suggest(4)
    tuner.complete(
        a.id, 0.0123, {"extrapolation_stderr": 0.001, "baseline_explicit": 0.0145, "skill": float("nan")}
    )
    tuner.infeasible(b.id, "diverged: loss is nan at epoch 3")
    tuner.fail(c.id, "preempted 3 times")
    tuner.stop(d.id, "early stop", value=0.05)
    done = vizier.study("phase2-minibatch").trials
    metrics = {m.metric_id: m.value for m in done[int(a.id)].final_measurement.metrics}
    assert metrics == {
        "extrapolation_error": 0.0123,
        "extrapolation_stderr": 0.001,
        "baseline_explicit": 0.0145,
    }
    assert done[int(a.id)].state == aiplatform_v1.Trial.State.SUCCEEDED
    assert (done[int(b.id)].state, done[int(b.id)].infeasible_reason) == (
        aiplatform_v1.Trial.State.INFEASIBLE,
        "diverged: loss is nan at epoch 3",
    )
    assert done[int(c.id)].infeasible_reason == "FAILED: preempted 3 times"
    # Early-stopped: SUCCEEDED with its last value as the final measurement, so Vizier learns from it.
    assert done[int(d.id)].state == aiplatform_v1.Trial.State.SUCCEEDED
    stopped = {m.metric_id: m.value for m in done[int(d.id)].final_measurement.metrics}
    assert stopped == {"extrapolation_error": 0.05, "early_stopped": 1.0}
    assert [r.name for r in cloud.requests("stop_trial")] == [done[int(d.id)].name]


def test_a_completion_whose_answer_was_lost_is_a_noop_when_replayed(vizier, cloud, credentials, calls):
    tuner = open_tuner(credentials, calls)
    (t,) = tuner.suggest(1)
    cloud.crash_at(1, after=True)
    with pytest.raises(Crash):
        tuner.complete(t.id, 0.02, {})
    again = open_tuner(credentials, calls)
    again.complete(t.id, 0.02, {})  # the restarted controller replays it: FailedPrecondition -> no-op
    (got,) = again.trials()
    assert (got.state, got.value) == (TunerState.COMPLETED, 0.02)
    assert cloud.calls["complete_trial"] == 1


def test_a_stop_interrupted_after_stop_trial_finishes_on_replay(vizier, cloud, credentials, calls):
    tuner = open_tuner(credentials, calls)
    (t,) = tuner.suggest(1)
    tuner.report(t.id, 4, 0.3)
    cloud.crash_at(1, after=True)  # stop_trial (applied), then killed
    with pytest.raises(Crash):
        tuner.stop(t.id, "early stop at epoch 4/8: ...", value=0.3)
    again = open_tuner(credentials, calls)
    assert again.trials()[0].state is TunerState.ACTIVE  # STOPPING in Vizier: not finished yet
    again.stop(t.id, "early stop at epoch 4/8: ...", value=0.3)
    (got,) = again.trials()
    assert (got.state, got.value) == (TunerState.STOPPED, 0.3)
    assert got.reason.startswith("early stop at epoch 4")


def test_a_stop_without_any_measurement_is_infeasible(vizier, cloud, credentials, calls):
    tuner = open_tuner(credentials, calls)
    (t,) = tuner.suggest(1)
    tuner.stop(t.id, "stopped by `orchestrator stop`")
    (got,) = open_tuner(credentials, calls).trials()
    assert got.state is TunerState.STOPPED and got.value is None
    assert vizier.study("phase2-minibatch").trials[int(t.id)].state == aiplatform_v1.Trial.State.INFEASIBLE


def test_intermediate_measurements_are_sent_once_per_step_across_restarts(vizier, cloud, credentials, calls):
    tuner = open_tuner(credentials, calls)
    (t,) = tuner.suggest(1)
    tuner.report(t.id, 1, 0.5)
    tuner.report(t.id, 2, 0.4)
    again = open_tuner(credentials, calls)  # a restarted controller: nothing in memory
    again.trials()
    for step, value in ((1, 0.5), (2, 0.4), (3, 0.35)):
        again.report(t.id, step, value)
    assert [m.step_count for m in vizier.study("phase2-minibatch").trials[int(t.id)].measurements] == [
        1,
        2,
        3,
    ]
    assert len(cloud.requests("add_trial_measurement")) == 3


class ExperimentRuns:
    """Vertex AI Experiments in memory, standing in for the Metadata and TensorBoard services
    behind `aiplatform.ExperimentRun` (too large to fake at the gapic level): runs by name, their
    params, summary metrics, time series and state."""

    def __init__(self):
        self.runs: dict[str, dict] = {}

    def install(self, mocker) -> ExperimentRuns:
        store = self

        class Run:
            def __init__(self, name, experiment, **_):
                if name not in store.runs:
                    raise exceptions.NotFound(f"run {name}")
                self.name, self.data = name, store.runs[name]

            @classmethod
            def create(cls, name, *, experiment, tensorboard, **_):
                store.runs[name] = {"experiment": experiment, "tensorboard": tensorboard, "params": {},
                                    "metrics": {}, "series": [], "state": None}  # fmt: skip
                return cls(name, experiment)

            def get_metrics(self):
                return dict(self.data["metrics"])

            def log_time_series_metrics(self, metrics, step):
                self.data["series"].append((step, metrics))

            def log_metrics(self, metrics):
                self.data["metrics"].update(metrics)

            def log_params(self, params):
                self.data["params"].update(params)

            def update_state(self, state):
                self.data["state"] = state

        mocker.patch.object(aiplatform, "ExperimentRun", Run)
        return self


BOARD = "projects/zeta-swarm-test/locations/us-central1/tensorboards/4242"


def tracked(inner, mocker):
    from orchestrator.vertex_experiments import TrackedTuner

    return TrackedTuner(inner, "phase2-minibatch-r1", "phase2-minibatch-r1", project="zeta-swarm-test",
                        region="us-central1", tensorboard=BOARD)  # fmt: skip


def test_every_epoch_and_the_result_reach_vertex_ai_experiments_once(vizier, credentials, calls, mocker):
    set_experiment = mocker.patch.object(metadata._experiment_tracker, "set_experiment")
    set_board = mocker.patch.object(metadata._experiment_tracker, "set_tensorboard")
    runs = ExperimentRuns().install(mocker)
    tuner = tracked(open_tuner(credentials, calls), mocker)
    assert set_experiment.call_args.kwargs["experiment"] == "phase2-minibatch-r1"
    assert set_experiment.call_args.kwargs["backing_tensorboard"] == BOARD
    assert set_board.call_args.kwargs["tensorboard"] == BOARD
    a, b = tuner.suggest(2)
    tuner.report(a.id, 1, 0.05)
    tuner.report(a.id, 2, 0.03)
    again = tracked(open_tuner(credentials, calls), mocker)  # a restarted controller replays its curve
    for step, value in ((1, 0.05), (2, 0.03), (3, 0.02)):
        again.report(a.id, step, value)
    again.complete(a.id, 0.0123, {"extrapolation_stderr": 0.001})
    again.fail(b.id, "preempted 3 times")
    run_a = runs.runs[f"phase2-minibatch-r1-t{a.id}"]
    assert run_a["series"] == [(1, {"extrapolation_error": 0.05}), (2, {"extrapolation_error": 0.03}),
                               (3, {"extrapolation_error": 0.02})]  # fmt: skip
    assert run_a["tensorboard"] == BOARD and run_a["params"] == {**a.params, "state": "COMPLETED"}
    assert run_a["metrics"]["extrapolation_error"] == 0.0123
    assert run_a["state"] == aiplatform_v1.Execution.State.COMPLETE
    assert runs.runs[f"phase2-minibatch-r1-t{b.id}"]["state"] == aiplatform_v1.Execution.State.FAILED


def test_an_experiments_error_never_stops_the_swarm(vizier, credentials, calls, mocker, caplog):
    mocker.patch.object(metadata._experiment_tracker, "set_experiment")
    mocker.patch.object(metadata._experiment_tracker, "set_tensorboard")
    mocker.patch.object(
        aiplatform, "ExperimentRun", side_effect=exceptions.ServiceUnavailable("metadata down")
    )
    tuner = tracked(open_tuner(credentials, calls), mocker)
    (t,) = tuner.suggest(1)
    tuner.report(t.id, 1, 0.05)
    tuner.complete(t.id, 0.01, {})
    assert tuner.trials()[0].state is TunerState.COMPLETED and "metadata down" in caplog.text


def test_a_trial_stopped_from_the_console_is_noticed_after_refresh_s(vizier, credentials, calls, clock):
    tuner = open_tuner(credentials, calls, clock=clock, refresh_s=30.0)
    (t,) = tuner.suggest(1)
    assert tuner.trials()[0].state is TunerState.ACTIVE
    trial = vizier.study("phase2-minibatch").trials[int(t.id)]
    trial.state, trial.infeasible_reason = aiplatform_v1.Trial.State.INFEASIBLE, "FAILED: stopped by hand"
    clock.advance(31)
    (got,) = tuner.trials()
    assert (got.state, got.reason) == (TunerState.FAILED, "stopped by hand")


def test_a_suggestion_repeating_a_finished_point_is_set_aside_and_never_listed(vizier, credentials, calls):
    # Two possible points: the fake service (like Vizier) avoids only ACTIVE duplicates, so after
    # both have run it can only repeat one; the tuner must set it aside rather than launch it twice.
    tuner = open_tuner(credentials, calls, space=(CategoricalParam("optim.lr", ("1e-3", "5e-4")),))
    handed = []
    for _ in range(6):
        for t in tuner.suggest(1):
            handed.append(t)
            tuner.complete(t.id, 0.01, {})
    listed = tuner.trials()
    assert sorted(t.params["optim.lr"] for t in handed) == ["1e-3", "5e-4"]
    assert [t.id for t in listed] == sorted((t.id for t in handed), key=int)
    reasons = [t.infeasible_reason for t in vizier.study("phase2-minibatch").trials.values()]
    assert sum(r.startswith("duplicate of trial ") for r in reasons) == 6 - 2
