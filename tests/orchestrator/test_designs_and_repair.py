"""Fixed designs (grid, 2-level fractional factorial, Latin hypercube) and the Optuna tuner's repair of
a suggestion cut short by a crash."""

from __future__ import annotations

import itertools
import math

import optuna
import pytest
from orchestrator.designs import contains, fractional_factorial, grid, latin_hypercube
from orchestrator.tuners.base import CategoricalParam, FloatParam, IntParam, TunerState
from orchestrator.tuners.optuna_study import FixedDesignTuner, OptunaTuner, storage_url


def test_grid_is_every_combination():
    pts = grid({"a": [1, 2, 3], "b": ["x", "y"]})
    assert pts == [{"a": a, "b": b} for a in (1, 2, 3) for b in ("x", "y")]


@pytest.mark.parametrize("k", [2, 3, 4, 5, 6, 7])
def test_fractional_factorial_is_balanced_and_orthogonal(k):
    names = [f"x{i}" for i in range(k)]
    pts = fractional_factorial({n: (-1, 1) for n in names})
    assert len(pts) < 2**k or k <= 2
    assert len({tuple(p.values()) for p in pts}) == len(pts)
    for n in names:  # each knob at each level half of the time
        assert sum(p[n] for p in pts) == 0
    for a, b in itertools.combinations(names, 2):  # main effects never aliased with each other
        assert sum(p[a] * p[b] for p in pts) == 0


def test_fractional_factorial_of_seven_knobs_takes_eight_runs():
    assert len(fractional_factorial({f"x{i}": (0, 1) for i in range(7)})) == 8


def test_latin_hypercube_uses_every_stratum_once():
    space = [
        FloatParam("lr", 1e-5, 1e-2, log=True),
        IntParam("depth", 1, 16),
        CategoricalParam("act", ("relu", "gelu")),
    ]
    pts = latin_hypercube(space, 16, seed=1)
    strata = sorted(
        int((math.log(p["lr"]) - math.log(1e-5)) / (math.log(1e-2) - math.log(1e-5)) * 16) for p in pts
    )
    assert strata == list(range(16))
    assert all(1 <= p["depth"] <= 16 for p in pts)
    assert sorted(p["act"] for p in pts).count("relu") == 8


def test_design_points_outside_the_space_are_refused(study_db):
    space = [FloatParam("lr", 1e-4, 1e-2)]
    with pytest.raises(ValueError, match="outside the search space"):
        FixedDesignTuner(storage_url(study_db), "s", space, [{"lr": 0.5}])


def test_reopening_repairs_a_suggestion_cut_short(study_db):
    space = [
        FloatParam("loss.gue_nll_weight", 1e-3, 1.0, log=True),
        FloatParam("loss.gue_mmd_weight", 1e-2, 10.0, log=True),
    ]
    url = storage_url(study_db)
    tuner = OptunaTuner(url, "s", space, seed=1)
    # What a controller killed inside suggest() leaves behind: a RUNNING trial with one param of two.
    half = tuner.study.ask()
    half.suggest_float("loss.gue_nll_weight", 1e-3, 1.0, log=True)
    (t,) = OptunaTuner(url, "s", space, seed=1).trials()
    assert t.state is TunerState.ACTIVE and set(t.params) == {"loss.gue_nll_weight", "loss.gue_mmd_weight"}
    assert t.params["loss.gue_nll_weight"] == half.params["loss.gue_nll_weight"]


def test_reopening_repairs_a_design_point_cut_short(study_db):
    space = [FloatParam("lr", 1e-4, 1e-2), CategoricalParam("sched", ("none", "cosine"))]
    url = storage_url(study_db)
    tuner = FixedDesignTuner(url, "s", space, [{"lr": 1e-3, "sched": "cosine"}])
    tuner.study.ask()  # popped from the queue, parameters never set
    (t,) = FixedDesignTuner(url, "s", space, [{"lr": 1e-3, "sched": "cosine"}]).trials()
    assert t.params == {"lr": 1e-3, "sched": "cosine"}
    assert (
        FixedDesignTuner(url, "s", space).suggest(1) == []
    )  # re-adding the same point did not queue it again


def test_the_study_is_plain_optuna(study_db):
    space = [FloatParam("x", 0.0, 1.0)]
    tuner = OptunaTuner(storage_url(study_db), "plain", space, seed=3)
    (t,) = tuner.suggest(1)
    tuner.complete(t.id, 0.5, {"extrapolation_stderr": 0.01})
    study = optuna.load_study(study_name="plain", storage=f"sqlite:///{study_db}")
    assert study.best_value == 0.5 and study.best_trial.user_attrs["zs_metrics"] == {
        "extrapolation_stderr": 0.01
    }


def test_a_design_value_is_in_a_param_when_it_has_the_param_type_and_range():
    w, n, act = FloatParam("w", 0.1, 1.0), IntParam("n", 0, 5), CategoricalParam("act", ("relu",))
    assert contains(w, 0.1) and contains(w, 1.0) and contains(w, 0.5)  # both ends are in
    assert not contains(w, 1.5) and not contains(w, "0.5") and not contains(n, True)
    assert contains(n, 3) and contains(n, 3.0) and not contains(n, 2.5)
    assert contains(act, "relu") and not contains(act, "gelu")


def test_fractional_factorial_of_no_knob_is_empty_and_of_one_knob_its_two_levels():
    assert fractional_factorial({}) == []
    assert fractional_factorial({"a": ("x", "y")}) == [{"a": "x"}, {"a": "y"}]


def test_latin_hypercube_is_the_same_for_the_same_seed_and_gives_every_param_its_type():
    space = [CategoricalParam("act", ("relu", "gelu")), IntParam("depth", 1, 16), FloatParam("lr", 0.1, 1.0)]
    pts = latin_hypercube(space, 8)
    assert pts == latin_hypercube(space, 8, seed=0) == latin_hypercube(space, 8)
    assert all(set(p) == {"act", "depth", "lr"} and isinstance(p["depth"], int) for p in pts)
