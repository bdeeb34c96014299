"""The Tuner contract as a reusable test suite (orchestrator/tuners/base.py says what it promises).

tests/contracts/test_backends.py runs it against every backend in backends.py. To run it elsewhere,
subclass `TunerContract` (`from contracts.tuner import TunerContract`) and provide the fixture
`open_tuner`: a zero-argument callable that opens the *same* study every time it is called (the
first call creates it), over `TunerContract.SPACE`. A fixed design (at least `DESIGN_MIN` points)
is also run through `ExhaustibleDesignContract` with the fixture `open_design`: it returns [] once
its points are used up, and `remaining()` counts down to 0.
"""

from __future__ import annotations

import math

import pytest
from orchestrator.tuners.base import FloatParam, TunerState

DESIGN_MIN = 12


def _key(params: dict) -> tuple:
    return tuple(sorted((k, round(v, 12) if isinstance(v, float) else v) for k, v in params.items()))


class TunerContract:
    SPACE = (
        FloatParam("loss.gue_nll_weight", 1e-3, 1.0, log=True),
        FloatParam("loss.gue_mmd_weight", 1e-2, 10.0, log=True),
    )

    def test_suggest_creates_active_trials_in_the_space(self, open_tuner):
        tuner = open_tuner()
        trials = tuner.suggest(3)
        assert len(trials) == 3
        for t in trials:
            assert t.state is TunerState.ACTIVE
            assert t.id.isdigit()
            assert set(t.params) == {p.name for p in self.SPACE}
            for p in self.SPACE:
                assert p.low <= t.params[p.name] <= p.high
        assert len({t.id for t in trials}) == 3

    def test_suggestions_are_distinct_from_running_trials(self, open_tuner):
        tuner = open_tuner()
        first = tuner.suggest(4)
        second = tuner.suggest(4)
        keys = [_key(t.params) for t in first + second]
        assert len(set(keys)) == len(keys)
        assert not {t.id for t in first} & {t.id for t in second}

    def test_a_suggested_trial_is_stored_before_suggest_returns(self, open_tuner):
        tuner = open_tuner()
        made = tuner.suggest(2)
        reopened = open_tuner()
        seen = {t.id: t for t in reopened.trials()}
        for t in made:
            assert seen[t.id].state is TunerState.ACTIVE
            assert seen[t.id].params == t.params

    def test_complete_records_value_and_metrics_and_replays_are_noops(self, open_tuner):
        tuner = open_tuner()
        (t,) = tuner.suggest(1)
        tuner.complete(t.id, 0.0123, {"extrapolation_stderr": 0.001, "baseline_explicit": 0.014})
        tuner.complete(t.id, 0.0123, {"extrapolation_stderr": 0.001, "baseline_explicit": 0.014})
        got = {x.id: x for x in open_tuner().trials()}[t.id]
        assert got.state is TunerState.COMPLETED
        assert got.value == pytest.approx(0.0123)
        assert got.metrics["extrapolation_stderr"] == pytest.approx(0.001)
        assert got.metrics["baseline_explicit"] == pytest.approx(0.014)

    def test_a_final_state_cannot_change(self, open_tuner):
        tuner = open_tuner()
        a, b = tuner.suggest(2)
        tuner.complete(a.id, 0.5, {})
        with pytest.raises(ValueError):
            tuner.fail(a.id, "too late")
        tuner.infeasible(b.id, "diverged at epoch 3")
        with pytest.raises(ValueError):
            tuner.complete(b.id, 0.1, {})
        tuner.infeasible(b.id, "diverged at epoch 3")  # same state: a no-op

    def test_infeasible_failed_and_stopped_keep_their_reason(self, open_tuner):
        tuner = open_tuner()
        a, b, c = tuner.suggest(3)
        tuner.infeasible(a.id, "diverged: loss is nan")
        tuner.fail(b.id, "exit code 1 after 3 attempts")
        tuner.report(c.id, 1, 0.4)
        tuner.stop(c.id, "early stop: gain < 1 sigma", value=0.3)
        got = {x.id: x for x in open_tuner().trials()}
        assert got[a.id].state is TunerState.INFEASIBLE and "diverged" in got[a.id].reason
        assert got[a.id].value is None
        assert got[b.id].state is TunerState.FAILED and "exit code 1" in got[b.id].reason
        assert got[c.id].state is TunerState.STOPPED and "early stop" in got[c.id].reason
        assert got[c.id].value == pytest.approx(0.3)

    def test_report_keeps_the_trial_active(self, open_tuner):
        tuner = open_tuner()
        (t,) = tuner.suggest(1)
        tuner.report(t.id, 1, 0.2)
        tuner.report(t.id, 2, 0.1)
        assert {x.id: x for x in tuner.trials()}[t.id].state is TunerState.ACTIVE

    def test_trials_lists_everything_ordered_by_id(self, open_tuner):
        tuner = open_tuner()
        made = tuner.suggest(3) + tuner.suggest(2)
        tuner.complete(made[0].id, 1.0, {})
        ids = [t.id for t in open_tuner().trials()]
        assert ids == sorted(ids, key=int)
        assert set(ids) == {t.id for t in made}

    def test_reopened_tuner_continues_the_same_study(self, open_tuner):
        tuner = open_tuner()
        before = tuner.suggest(2)
        tuner.complete(before[0].id, 0.25, {})
        again = open_tuner()
        after = again.suggest(2)
        assert not {t.id for t in before} & {t.id for t in after}
        assert len(again.trials()) == 4

    def test_remaining_is_none_or_counts_down_with_each_suggestion(self, open_tuner):
        tuner = open_tuner()
        before = tuner.remaining()
        made = tuner.suggest(2)
        after = tuner.remaining()
        if before is None:  # no limit of its own (Bayesian): the round's max_trials decides
            assert after is None
        else:
            assert after == before - len(made)

    def test_values_are_finite_floats(self, open_tuner):
        tuner = open_tuner()
        (t,) = tuner.suggest(1)
        tuner.complete(t.id, 0.02, {})
        (got,) = [x for x in tuner.trials() if x.id == t.id]
        assert isinstance(got.value, float) and math.isfinite(got.value)


class ExhaustibleDesignContract:
    """Extra promise of a fixed design: it hands out each point once and then returns []; remaining()
    says how many points are left, also after reopening."""

    def test_exhausted_design_returns_nothing(self, open_design):
        tuner = open_design()
        total = tuner.remaining()
        got = []
        for _ in range(100):
            batch = tuner.suggest(5)
            if not batch:
                break
            got += batch
            assert open_design().remaining() == total - len(got)
        assert len(got) == total >= DESIGN_MIN
        assert tuner.remaining() == 0
        assert tuner.suggest(3) == []
