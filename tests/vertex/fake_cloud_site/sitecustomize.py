"""The fake cloud inside a subprocess: `make swarm BACKEND=vertex` (the real Makefile, the real
`orchestrator` entry point) runs against tests/vertex/fakes.py when this directory is first on
PYTHONPATH and ZETA_SWARM_FAKE_CLOUD names a JSON file:

    {"state": "PATH.pickle",            # the cloud's state, loaded at start and saved at exit
     "infra": "REPO/infra",             # IAM grants parsed from these Terraform files
     "revoke": ["roles/..."],           # roles to take from the orchestrator (a broken grant)
     "gpu_quota": {"us-central1/NVIDIA_L4": 16},
     "images": [["REPOSITORY", "trainer", "TAG", "sha256:..."]]}

Python imports `sitecustomize` at start-up, so the fakes are in place before the orchestrator
imports anything. Every `time.sleep` of the process moves the fake clock instead of waiting (the
controller's polls and the retry backoffs), and the swarm's clock is that fake clock, so an hour
of jobs takes a fraction of a second. Calls run as the orchestrator's service account.
"""

from __future__ import annotations

import os

if os.environ.get("ZETA_SWARM_FAKE_CLOUD"):
    import atexit
    import json
    import pickle
    import sys
    import time
    from pathlib import Path
    from unittest import mock

    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # tests/, for vertex.fakes

    import google.auth
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage
    from vertex.fakes import (
        FakeArtifactRegistry,
        FakeClock,
        FakeCloud,
        FakeIam,
        FakeJobService,
        FakeVizierService,
        Outcome,
    )

    _config = json.loads(Path(os.environ["ZETA_SWARM_FAKE_CLOUD"]).read_text())
    _state_file = Path(_config["state"])
    _state = pickle.loads(_state_file.read_bytes()) if _state_file.exists() else {}
    _project = _config.get("project", "zeta-swarm-test")

    class _Patcher:  # what fakes.install() expects of pytest-mock's `mocker`
        def __init__(self):
            self.patch = self

        def object(self, target, name, value):
            mock.patch.object(target, name, value).start()

    class _ServiceAccountCredentials(AnonymousCredentials):
        """Anonymous on the wire, the orchestrator's account by name (named in permission errors)."""

        service_account_email = f"zs-orchestrator@{_project}.iam.gserviceaccount.com"

    _creds = _ServiceAccountCredentials()
    mock.patch.object(google.auth, "default", lambda *a, **k: (_creds, _project)).start()

    clock = FakeClock(_state.get("now", time.time()))
    time.sleep = clock.sleep  # polls and backoffs move the fake clock

    iam = FakeIam.from_terraform(_config["infra"], _project)
    for scope in iam.grants.values():
        for role in _config.get("revoke", []):
            scope.get(iam.caller, set()).discard(role)
    cloud = FakeCloud(clock, iam)
    _patcher = _Patcher()
    vizier = FakeVizierService(cloud, seed=3).install(_patcher)
    vizier.studies = _state.get("studies", {})

    def _trainer_writes_final(job) -> None:
        out = job.job_spec.base_output_directory.output_uri_prefix
        bucket, _, prefix = out.removeprefix("gs://").partition("/")
        final = {"status": "completed", "extrapolation_error": 0.02, "extrapolation_stderr": 0.001}
        storage.Client(project=_project).bucket(bucket).blob(f"{prefix}/final.json").upload_from_string(
            json.dumps(final)
        )

    quota = {tuple(k.split("/")): v for k, v in _config.get("gpu_quota", {}).items()}
    jobs = FakeJobService(
        cloud, lambda job: Outcome(run_s=300), on_success=_trainer_writes_final, gpu_quota=quota
    ).install(_patcher)
    for name in ("jobs", "_plan", "_labels", "_state", "_cancel_at"):
        getattr(jobs, name).update(_state.get(f"jobs.{name}", {}))
    registry = FakeArtifactRegistry(cloud).install(_patcher)
    for repository, package, tag, digest in _config.get("images", []):
        registry.push(repository, package, tag, digest)

    import orchestrator.phases

    _init = orchestrator.phases.SwarmRun.__init__

    def _swarm_run_init(self, settings, *args, **kwargs):
        kwargs.setdefault("clock", clock)
        _init(self, settings, *args, **kwargs)

    orchestrator.phases.SwarmRun.__init__ = _swarm_run_init

    @atexit.register
    def _save() -> None:
        state = {"now": clock.now, "studies": vizier.studies, "calls": dict(cloud.calls)}
        for name in ("jobs", "_plan", "_labels", "_state", "_cancel_at"):
            state[f"jobs.{name}"] = getattr(jobs, name)
        calls = dict(_state.get("all_calls", {}))
        for k, v in cloud.calls.items():
            calls[k] = calls.get(k, 0) + v
        state["all_calls"] = calls
        _state_file.write_bytes(pickle.dumps(state))
