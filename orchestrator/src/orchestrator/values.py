"""The one codec of knob values between the YAML files, the tuner's study and the trainer command.

  YAML / trainer config   [2, 3, 5]     true     1.0e-3
  tuner (encode)          "[2,3,5]"     "true"   0.001      (a study stores floats, ints, strings)
  back (decode)           [2, 3, 5]     True     0.001
  `trainer --set` (set_arg)  model.primes=[2,3,5]   x=true   optim.lr=0.001

A study's categorical values are strings, so a list or a bool becomes its compact JSON text on the
way in (`encode`) and comes back as the value it stood for (`decode`). `set_arg` renders any value
for `trainer train --set key=value`, where the trainer parses the right-hand side as YAML.
"""

from __future__ import annotations

import json
from typing import Any

# A trainer override's value as a YAML file gives it (a prime set is a list of ints).
Value = float | int | str | list[int] | list[float] | bool

_TEXT = {True: "true", False: "false"}


def encode(value: Any) -> Any:
    """A value as the tuner stores it: lists (prime sets) become compact JSON text, bools "true"/"false"."""
    if isinstance(value, list):
        return json.dumps(value, separators=(",", ":"))
    if isinstance(value, bool):
        return _TEXT[value]
    return value


def decode(value: Any) -> Any:
    """A stored value as the YAML files and the trainer config hold it: "[2,3,5]" -> [2, 3, 5],
    "true" -> True; any other value as it is."""
    if isinstance(value, str):
        if value.startswith("["):
            try:
                return json.loads(value)
            except ValueError:
                return value  # a plain string that happens to start with "["
        if value in ("true", "false"):
            return value == "true"
    return value


def set_arg(key: str, value: Any) -> str:
    """`key=value` for `trainer train --set`, the value written as YAML the trainer parses back.

    A stored value is decoded first, so "[2,3,5]" and [2, 3, 5] render alike; a float keeps every
    digit (repr), so the trainer trains with exactly the value the tuner suggested.
    """
    value = decode(value)
    if isinstance(value, list):
        return f"{key}={json.dumps(value, separators=(',', ':'))}"
    if isinstance(value, bool):
        return f"{key}={_TEXT[value]}"
    if isinstance(value, float):
        return f"{key}={value!r}"
    return f"{key}={value}"
