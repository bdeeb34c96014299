"""Fixed designs for the small rounds (phase 1 rounds, phase 3 replicas): grid, two-level
fractional factorial and Latin hypercube.

The seed playbook asks for 3-4 values per knob and 12-24 runs a round, never full grids over
many knobs; these builders return plain lists of parameter dicts that a FixedDesignTuner
enqueues into its Optuna study.
"""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Mapping, Sequence

from orchestrator.tuners.base import CategoricalParam, FloatParam, IntParam, Param

Point = dict[str, float | int | str]


def grid(values: Mapping[str, Sequence[float | int | str]]) -> list[Point]:
    """Every combination of the given values, the first knob varying slowest.

    Args:
        values: knob name -> the values to try (3-4 each is the playbook's size).
    """
    names = list(values)
    return [dict(zip(names, combo, strict=True)) for combo in itertools.product(*(values[n] for n in names))]


def fractional_factorial(levels: Mapping[str, tuple[float | int | str, float | int | str]]) -> list[Point]:
    """A two-level fractional factorial design 2^(k-p) with the fewest runs that keep main effects clear.

    The first b knobs form a full factorial in 2^b runs; each further knob is set by the sign of a
    product of two or more base columns (highest order first), so no main effect is aliased with
    another main effect.

    Args:
        levels: knob name -> (low, high) value.
    """
    names = list(levels)
    k = len(names)
    if k == 0:
        return []
    # 2^b runs offer 2^b - 1 - b interaction columns for the knobs beyond the first b.
    b = 1
    while b + (2**b - 1 - b) < k:
        b += 1
    b = min(b, k)
    base_rows = list(itertools.product((-1, 1), repeat=b))
    interactions = [c for r in range(b, 1, -1) for c in itertools.combinations(range(b), r)]
    generators = interactions[: k - b]
    points: list[Point] = []
    for row in base_rows:
        signs = list(row) + [math.prod(row[i] for i in gen) for gen in generators]
        points.append({n: levels[n][0 if s < 0 else 1] for n, s in zip(names, signs, strict=True)})
    return points


def latin_hypercube(space: Sequence[Param], runs: int, seed: int = 0) -> list[Point]:
    """A Latin hypercube: each knob's range is cut into `runs` strata and each stratum is used once.

    Float knobs take the stratum's midpoint (in log space when `log`); int knobs round it;
    categorical knobs cycle through their choices in a shuffled order.

    Args:
        space: the knobs.
        runs: number of points (12-24 for a playbook round).
        seed: seed of the stratum permutations.
    """
    rng = random.Random(seed)
    columns: dict[str, list[float | int | str]] = {}
    for p in space:
        order = list(range(runs))
        rng.shuffle(order)
        if isinstance(p, CategoricalParam):
            columns[p.name] = [p.choices[i % len(p.choices)] for i in order]
            continue
        lo, hi = (math.log(p.low), math.log(p.high)) if p.log else (float(p.low), float(p.high))
        values = []
        for i in order:
            u = lo + (hi - lo) * (i + 0.5) / runs
            v = math.exp(u) if p.log else u
            values.append(int(round(v)) if isinstance(p, IntParam) else v)
        columns[p.name] = values
    return [{name: columns[name][i] for name in columns} for i in range(runs)]


def contains(param: Param, value: float | int | str) -> bool:
    """Whether a design value lies in a knob's declared range or choices."""
    if isinstance(param, CategoricalParam):
        return value in param.choices
    if isinstance(value, str) or isinstance(value, bool):
        return False
    if isinstance(param, IntParam) and not float(value).is_integer():
        return False
    assert isinstance(param, FloatParam | IntParam)
    return param.low <= value <= param.high
