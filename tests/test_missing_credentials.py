"""Without Google Cloud credentials, a gs:// path or a cloud backend is a one-line error, exit 2."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def _run(argv: list[str], tmp_path: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "STORAGE_EMULATOR_HOST"}
    # A credentials file that does not exist makes google.auth fail at once, with no metadata-server probe.
    env.update(GOOGLE_APPLICATION_CREDENTIALS=str(tmp_path / "missing.json"), HOME=str(tmp_path))
    return subprocess.run(argv, capture_output=True, text=True, env=env, cwd=REPO, timeout=120)


def test_trainer_gs_path_without_credentials(tmp_path):
    done = _run([str(BIN / "trainer"), "zeros", "verify", "gs://zeta-swarm-nobody/odlyzko"], tmp_path)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "no Google Cloud credentials" in lines[0], done.stderr


def test_orchestrator_vertex_backend_without_credentials(tmp_path):
    run_dir = tmp_path / "run"
    done = _run(
        [
            str(BIN / "orchestrator"),
            "swarm",
            "--phase=2",
            "--backend=vertex",
            f"--infra-outputs={REPO / 'tests/fixtures/infra-outputs.json'}",
            f"--run-dir={run_dir}",
        ],
        tmp_path,
    )
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "no Google Cloud credentials" in lines[0], done.stderr
    assert "Traceback" not in done.stdout
