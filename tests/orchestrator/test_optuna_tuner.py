"""The Optuna tuner's parallel behaviour: suggestions made while earlier ones still run spread out
(TPE's constant liar counts a running trial as a bad result) instead of piling onto the current
best point, which would waste the parallel slots on near-copies of one trial."""

from __future__ import annotations

import statistics

import pytest
from orchestrator.tuners.base import FloatParam
from orchestrator.tuners.optuna_study import OptunaTuner, storage_url


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_suggestions_while_others_run_spread_out(study_db, seed):
    tuner = OptunaTuner(
        storage_url(study_db), f"liar-{seed}", [FloatParam("x", 0.0, 1.0)], seed=seed, n_startup_trials=4
    )
    objective = lambda x: (x - 0.3) ** 2  # noqa: E731
    for t in tuner.suggest(4):
        tuner.complete(t.id, objective(t.params["x"]), {})
    for _ in range(8):  # TPE learns that the optimum is near 0.3
        (t,) = tuner.suggest(1)
        tuner.complete(t.id, objective(t.params["x"]), {})
    running = [t.params["x"] for t in tuner.suggest(6)]
    # Measured with the pinned Optuna: a spread of 0.12-0.23 with the liar, 0.01-0.03 without it.
    assert statistics.pstdev(running) > 0.08, running
