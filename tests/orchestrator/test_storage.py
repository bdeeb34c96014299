"""The orchestrator's storage layer (orchestrator.storage): one interface for local paths and
gs:// URLs. Its Cloud Storage reads run against the emulator in tests/vertex/test_runner.py."""

from __future__ import annotations

import os

from orchestrator import storage


def test_paths_join_and_read_alike_local_or_gs(tmp_path):
    assert storage.is_gcs("gs://b/p") and not storage.is_gcs(tmp_path) and not storage.is_gcs("/gs://x")
    assert storage.join("gs://b/runs/", "trials", "3") == "gs://b/runs/trials/3"
    assert storage.join(str(tmp_path), "trials", "3") == os.path.join(str(tmp_path), "trials", "3")
    (tmp_path / "final.json").write_text('{"status": "completed"}', encoding="utf-8")
    assert storage.read_text(str(tmp_path / "final.json")) == '{"status": "completed"}'
    assert storage.read_text(str(tmp_path / "missing.json")) is None
