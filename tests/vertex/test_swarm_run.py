"""`make swarm BACKEND=vertex` minus the cloud: the phase runner builds its tuner, runner and output
reader through the backends factory, and a phase-2 round runs to its leaderboard on the fakes, with
final.json read from the runs bucket on the storage emulator."""

from __future__ import annotations

import json

from orchestrator.phases import SwarmRun
from orchestrator.settings_loader import load_settings

from vertex.conftest import DIGEST
from vertex.test_controller_on_vertex import World
from vertex.test_settings import INFRA_JSON


def test_phase2_on_vertex_through_the_backends_factory(mocker, tmp_path, credentials, storage_emulator):
    settings = load_settings(
        2, "minibatch", "vertex", "smoke", 2, 3, tmp_path / "run", infra_outputs=str(INFRA_JSON)
    )
    world = World(mocker, tmp_path / "world", credentials, {("1", 1)}, settings, emulator=True)
    lines: list[str] = []
    snap = SwarmRun(world.settings, clock=world.clock, sleep=world.clock.sleep, out=lines.append).run()
    assert snap["backend"] == "vertex" and snap["ended_because"] == "round complete"
    assert [t["state"] for t in snap["trials"]] == ["COMPLETED"] * 3
    assert {t["output_dir"] for t in snap["trials"]} == {
        f"gs://zs-zeta-swarm-test-runs/{settings.cloud_study}/trials/{i}" for i in (1, 2, 3)
    }
    assert snap["trials"][0]["attempts"] == 2  # preempted once, resumed in the same dir
    assert all(t["machine"] == "g2-standard-8 + 1 x NVIDIA_L4" for t in snap["trials"])
    assert any("retry      attempt 2: Preempted" in line for line in lines)
    assert world.cloud.calls["get_tag"] == 1  # the image was pinned once for the whole run
    assert {j.job_spec.worker_pool_specs[0].container_spec.image_uri for j in world.jobs.jobs.values()} == {
        f"us-central1-docker.pkg.dev/zeta-swarm-test/zs-images/trainer@{DIGEST}"
    }
    (study,) = world.cloud.requests("create_study")
    assert study.study.display_name == settings.cloud_study == f"phase2-minibatch-{settings.run_id}"
    assert json.loads((tmp_path / "world" / "run.json").read_text())["run_id"] == settings.run_id
