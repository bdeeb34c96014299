"""Every case of the robustness table (cases.py) against the real CLIs, as subprocesses: the
documented exit code, one line on stderr, no traceback, an unchanged run directory where nothing
should change, and no trial lost, mislabelled or repeated."""

from __future__ import annotations

import pytest
from cases import CASES, Workspace, build_base_run, run_case, run_ctrl_c


@pytest.fixture(scope="session")
def base_run(tmp_path_factory, odlyzko_prefix):
    from cases import ZEROS

    return build_base_run(tmp_path_factory.mktemp("robust-base") / "phase2-minibatch", odlyzko_prefix(ZEROS))


@pytest.fixture
def workspace(tmp_path, base_run, odlyzko_prefix):
    from cases import ZEROS

    return Workspace(root=tmp_path, base_run=base_run, dataset=odlyzko_prefix(ZEROS))


@pytest.mark.parametrize(
    "case",
    [pytest.param(c, marks=pytest.mark.xfail(strict=True, reason=c.known)) if c.known else c for c in CASES],
    ids=[c.name for c in CASES],
)
def test_case_is_clean(case, workspace):
    outcome = run_case(case, workspace)
    assert outcome.kind == "clean", f"{outcome.kind}: {outcome.detail}\n{outcome.stderr[-2000:]}"


def test_ctrl_c_says_what_it_leaves_running(workspace):
    outcome = run_ctrl_c(workspace)
    assert outcome.kind == "clean", f"{outcome.kind}: {outcome.detail}\n{outcome.stderr[-2000:]}"
