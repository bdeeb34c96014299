"""The Tuner contract run against Optuna (Bayesian, TPE with constant liar) and the fixed designs."""

from __future__ import annotations

import pytest
from orchestrator.designs import latin_hypercube
from orchestrator.tuners.optuna_study import FixedDesignTuner, OptunaTuner, storage_url
from tuner_contract import ExhaustibleDesignContract, TunerContract


class TestOptunaTuner(TunerContract):
    @pytest.fixture
    def open_tuner(self, study_db):
        url = storage_url(study_db)
        return lambda: OptunaTuner(url, "contract", self.SPACE, seed=7, n_startup_trials=3)


class TestLatinHypercubeDesign(TunerContract, ExhaustibleDesignContract):
    @pytest.fixture
    def open_tuner(self, study_db):
        url = storage_url(study_db)
        points = latin_hypercube(self.SPACE, 16, seed=3)
        return lambda: FixedDesignTuner(url, "contract", self.SPACE, points)
