"""Fixtures for tests/infra: the infra/ stack is parsed once per session."""

from __future__ import annotations

import pytest
from infra_stack import INFRA, Stack, load_stack


@pytest.fixture(scope="session")
def stack() -> Stack:
    return load_stack(INFRA)
