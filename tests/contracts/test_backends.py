"""Every backend in backends.py passes the Tuner and Runner contracts, and every Tuner and Runner
implementation in the orchestrator is in backends.py."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import orchestrator.runners
import orchestrator.tuners
import pytest
from orchestrator.runners.base import Runner
from orchestrator.tuners.base import Tuner

from contracts import backends
from contracts.runner import RunnerContract
from contracts.tuner import ExhaustibleDesignContract, TunerContract


@pytest.fixture(params=list(backends.TUNERS))
def open_tuner(request):
    return backends.open_tuner(request.param, TunerContract.SPACE, request)


@pytest.fixture(params=list(backends.FIXED_DESIGNS))
def open_design(request):
    return backends.open_tuner(request.param, TunerContract.SPACE, request)


@pytest.fixture(params=list(backends.RUNNERS))
def harness(request):
    h = backends.runner_harness(request.param, request)
    yield h
    h.close()


class TestTuners(TunerContract):
    pass


class TestFixedDesigns(ExhaustibleDesignContract):
    pass


class TestRunners(RunnerContract):
    pass


def _implementations(package, base) -> set[str]:
    found = set()
    for info in pkgutil.iter_modules(package.__path__, package.__name__ + "."):
        module = importlib.import_module(info.name)
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if issubclass(cls, base) and not inspect.isabstract(cls) and cls.__module__ == module.__name__:
                found.add(f"{cls.__module__}.{cls.__qualname__}")
    return found


def test_every_tuner_and_runner_is_in_the_list_of_backends():
    assert _implementations(orchestrator.tuners, Tuner) == set(backends.TUNERS.values())
    assert _implementations(orchestrator.runners, Runner) == set(backends.RUNNERS.values())
