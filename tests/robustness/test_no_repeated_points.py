"""No repeated points after a restart (issue 17): each controller process seeds the Optuna sampler
with the run and the number of trials already stored, and a suggestion that repeats an earlier
trial's point is set aside (failed, unlisted) and sampled again. Vizier's side of the same rule is
in tests/vertex/test_vizier.py."""

from __future__ import annotations

import pytest
from orchestrator.errors import OrchestratorError
from orchestrator.tuners.base import CategoricalParam, FloatParam
from orchestrator.tuners.optuna_study import DUPLICATE, OptunaTuner, sampler_seed, storage_url

SPACE = (
    FloatParam("loss.gue_nll_weight", 1e-3, 1.0, log=True),
    FloatParam("loss.gue_mmd_weight", 1e-2, 10.0, log=True),
)


def test_a_restarted_tuner_does_not_replay_the_first_processs_points(tmp_path):
    url = storage_url(tmp_path / "study.db")
    first = OptunaTuner(url, "phase2-minibatch", SPACE, seed=0)
    before = [t.params for t in first.suggest(2)]
    for t in first.trials():
        first.complete(t.id, 0.02, {})
    # What every restart used to do: TPESampler(seed=0) again, whose start-up points repeat.
    restarted = OptunaTuner(url, "phase2-minibatch", SPACE, seed=0)
    after = [t.params for t in restarted.suggest(2)]
    assert not [p for p in after if p in before]
    assert sampler_seed("phase2-minibatch", 0, 2) != sampler_seed("phase2-minibatch", 0, 0)
    # Reproducible: the same run with the same trials stored seeds the same stream.
    assert sampler_seed("phase2-minibatch", 0, 2) == sampler_seed("phase2-minibatch", 0, 2)


def test_a_suggestion_repeating_an_earlier_point_is_set_aside_and_never_listed(tmp_path):
    space = (CategoricalParam("optim.lr", ("1e-3", "5e-4", "2e-3")),)
    tuner = OptunaTuner(storage_url(tmp_path / "study.db"), "s", space, seed=0)
    (first,) = tuner.suggest(1)
    tuner.complete(first.id, 0.01, {})
    # Force the sampler's next answer to be the point just run (a queued point is what ask takes first).
    tuner.study.enqueue_trial(dict(first.params))
    (second,) = tuner.suggest(1)
    assert second.params != first.params
    assert [t.params for t in tuner.trials()] == [first.params, second.params]
    set_aside = [ft for ft in tuner.study.get_trials() if ft.user_attrs.get("zs_state") == DUPLICATE]
    assert set_aside and all(ft.params == first.params for ft in set_aside)  # the queued one, at least


def test_a_space_with_no_point_left_says_so(tmp_path):
    tuner = OptunaTuner(
        storage_url(tmp_path / "study.db"), "s", (CategoricalParam("optim.lr", ("1e-3",)),), seed=0
    )
    (only,) = tuner.suggest(1)
    tuner.complete(only.id, 0.01, {})
    with pytest.raises(OrchestratorError, match="no point left"):
        tuner.suggest(1)
