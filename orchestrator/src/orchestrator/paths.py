"""Where things are: the repository and its configs/ directory, a phase's run directory and the
lock file phase 1 leaves beside it. No imports of the orchestrator: every module may ask here."""

from __future__ import annotations

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[3]
CONFIG_DIR = REPO_ROOT / "configs"
CONFIGS_ENV = "ZETA_SWARM_CONFIGS"  # another configs/ directory (default: the repository's)
DATA_ENV = "ZETA_SWARM_DATA"  # the zeros every trial reads (default: the profile's data_path)
# The playbook phase (orchestrator.playbook, configs/phases/playbook.yaml) beside phases 1-3.
PLAYBOOK = "playbook"


def phase_name(phase: int | str) -> str:
    """ "phase2", or "playbook": the phase file's stem, the study's and the run dir's prefix."""
    return PLAYBOOK if phase == PLAYBOOK else f"phase{phase}"


def default_run_dir(phase: int | str, team: str) -> Path:
    """runs/phase<N>-<team> (runs/playbook-<team>), relative to the working directory."""
    return Path("runs") / f"{phase_name(phase)}-{team}"


def lock_path(run_dir: Path, team: str, phase: int = 1) -> Path:
    """Phase 1's lock file of a team, next to the given run directory (runs/phase1-<team>/lock.yaml)."""
    return run_dir.parent / f"phase{phase}-{team}" / "lock.yaml"
