"""The one codec of knob values (orchestrator.values): YAML value -> study -> trainer `--set`."""

from __future__ import annotations

from orchestrator.values import decode, encode, set_arg


def test_a_value_survives_the_study_and_renders_alike_before_and_after():
    for value in ([2, 3, 5], [0.5, 1.0], True, False, 0.001, 3, "cosine"):
        stored = encode(value)
        assert isinstance(stored, float | int | str)
        assert decode(stored) == value and type(decode(stored)) is type(value)
        assert set_arg("k", stored) == set_arg("k", value)
    assert encode([2, 3, 5]) == "[2,3,5]"
    assert set_arg("model.primes", "[2, 3, 5]") == "model.primes=[2,3,5]"
    assert set_arg("x", True) == "x=true"
    assert set_arg("loss.gue_nll_weight", 0.1 + 0.2) == "loss.gue_nll_weight=0.30000000000000004"
    assert set_arg("seed", 0) == "seed=0"
    assert decode("[not json") == "[not json"
