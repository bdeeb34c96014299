"""Cost of one controller pass on the Vertex backends (prints figures; not a test).

    .venv/bin/python bench/vertex_pass.py                       # 50 running, 1,000 finished
    .venv/bin/python bench/vertex_pass.py --finished 100 1000 5000 --running 50

A phase-2 study is seeded straight into the stateful fakes of tests/vertex/fakes.py (Vizier
trials SUCCEEDED with a final measurement, CustomJobs SUCCEEDED, plus the running ones), and the
real controller drives the real VizierTuner and VertexRunner through the real aiplatform SDK
against them. For each size it prints:

* startup pass: a freshly started controller (lists every trial and job page once);
* steady pass: the next pass, the one the controller repeats every poll_s: its wall time and its
  cloud calls by method. The calls must not grow with the number of finished trials.
* refresh pass: a steady pass that also re-reads the running trials from Vizier (every
  refresh_s = 60 s, i.e. every other pass at poll_s = 30 s).

Trial files (metrics.jsonl, final.json) are read from memory: the figure is the controller and the
cloud API, not Cloud Storage latency. Goal: steady pass < 0.5 s at 50 running + 1,000 finished.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace
from unittest import mock

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from google.auth.credentials import AnonymousCredentials  # noqa: E402
from google.cloud import aiplatform, aiplatform_v1  # noqa: E402
from orchestrator.controller import Controller  # noqa: E402
from orchestrator.infra_outputs import load_infra_outputs  # noqa: E402
from orchestrator.runners.vertex import VertexRunner  # noqa: E402
from orchestrator.settings_loader import load_settings  # noqa: E402
from orchestrator.tuners.vizier import VizierTuner  # noqa: E402
from orchestrator.vertex_settings import CloudCalls, load_vertex_settings  # noqa: E402
from vertex.fakes import (  # noqa: E402
    FakeArtifactRegistry,
    FakeClock,
    FakeCloud,
    FakeJobService,
    FakeVizierService,
    Outcome,
)

INFRA = ROOT / "tests" / "fixtures" / "infra-outputs.json"
DIGEST = "sha256:" + "cd" * 32


class _Patcher:
    """The `mocker.patch.object` the fakes install with, outside pytest."""

    def __init__(self) -> None:
        self.patches: list = []
        self.patch = SimpleNamespace(object=self._object)

    def _object(self, target, name, new):
        p = mock.patch.object(target, name, new)
        self.patches.append(p)
        return p.start()

    def stop(self) -> None:
        for p in reversed(self.patches):
            p.stop()


def _seed(vizier, jobs, clock, vs, study: str, study_name: str, finished: int, running: int) -> None:
    """Put `finished` completed and `running` active trials, with their jobs, into the fakes."""
    s = vizier.studies[study_name]
    parent = f"projects/{vs.project}/locations/{vs.region}"
    machine = vs.machines["minibatch"]
    for uid in range(1, finished + running + 1):
        done = uid <= finished
        params = [
            aiplatform_v1.Trial.Parameter(
                parameter_id="loss.gue_nll_weight", value=10 ** (-3 + 3 * uid / (finished + running))
            ),
            aiplatform_v1.Trial.Parameter(
                parameter_id="loss.gue_mmd_weight", value=10 ** (-2 + 3 * ((uid * 7) % 101) / 100)
            ),
        ]
        trial = aiplatform_v1.Trial(
            name=f"{s.proto.name}/trials/{uid}",
            id=str(uid),
            state=aiplatform_v1.Trial.State.SUCCEEDED if done else aiplatform_v1.Trial.State.ACTIVE,
            parameters=params,
            client_id="zeta-swarm-controller",
        )
        if done:
            trial.final_measurement = {
                "metrics": [
                    {"metric_id": "extrapolation_error", "value": 0.01 + uid * 1e-6},
                    {"metric_id": "extrapolation_stderr", "value": 0.001},
                ]
            }
        s.trials[uid] = trial
        out = vs.trial_dir(study, str(uid))
        job = aiplatform_v1.CustomJob(
            name=f"{parent}/customJobs/{9_000_000 + uid}",
            display_name=f"{study}-t{uid}-a1",
            labels={"study": study, "trial": str(uid), "attempt": "1", "phase": "2", "team": "minibatch"},
            state=aiplatform_v1.JobState.JOB_STATE_SUCCEEDED
            if done
            else aiplatform_v1.JobState.JOB_STATE_RUNNING,
            create_time=clock.timestamp(clock() - 7200),
            start_time=clock.timestamp(clock() - 7000),
            job_spec={
                "worker_pool_specs": [{"machine_spec": machine.to_dict(), "replica_count": 1}],
                "base_output_directory": {"output_uri_prefix": out},
            },
        )
        if done:
            job.end_time = clock.timestamp(clock() - 3600)
        jobs.add(job, clock() - 7200, Outcome(run_s=10**9))


def one_size(finished: int, running: int) -> dict:
    patcher = _Patcher()
    try:
        clock = FakeClock()
        cloud = FakeCloud(clock)
        creds = AnonymousCredentials()
        aiplatform.init(project="zeta-swarm-test", location="us-central1", credentials=creds)
        with tempfile.TemporaryDirectory() as tmp:
            settings = load_settings(
                2,
                "minibatch",
                "vertex",
                "default",
                running,
                finished + running,
                Path(tmp) / "run",
                infra_outputs=str(INFRA),
            )
            (Path(tmp) / "run").mkdir()
            vs = load_vertex_settings(settings.backend_file, load_infra_outputs(str(INFRA), {}))
            FakeArtifactRegistry(cloud).install(patcher).push(
                vs.image_repository, "trainer", vs.image_tag, DIGEST
            )
            vizier = FakeVizierService(cloud).install(patcher)
            jobs = FakeJobService(cloud).install(patcher)
            plan = settings.rounds[0]
            tuner = VizierTuner.from_settings(
                vs, settings.study, plan.params(), credentials=creds, clock=clock
            )
            _seed(vizier, jobs, clock, vs, settings.study, tuner.resource_name, finished, running)
            tuner = VizierTuner.from_settings(
                vs, settings.study, plan.params(), credentials=creds, clock=clock
            )
            runner = VertexRunner(vs, settings.study, credentials=creds, calls=CloudCalls(vs.retry))
            ctl = Controller(
                settings,
                tuner,
                runner,
                lambda d, name: None,
                lambda tid: vs.trial_dir(settings.study, tid),
                clock=clock,
            )
            figures = {}
            # The third pass comes refresh_s after the first: it also re-reads the running trials.
            for label, wait in (
                ("startup", settings.backend.poll_s),
                ("steady", tuner.refresh_s),
                ("refresh", 0),
            ):
                before = dict(cloud.calls)
                t0 = time.perf_counter()
                result = ctl.reconcile(plan)
                seconds = time.perf_counter() - t0
                calls = {k: v - before.get(k, 0) for k, v in cloud.calls.items() if v - before.get(k, 0)}
                figures[label] = (seconds, calls, result)
                clock.advance(wait)
            return figures
    finally:
        patcher.stop()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--finished", type=int, nargs="+", default=[1000], help="finished trials (default 1000)")
    ap.add_argument("--running", type=int, default=50, help="running trials (default 50)")
    args = ap.parse_args(argv)
    one_size(10, 5)  # warm-up: imports and first SDK client construction are not part of a pass
    print(f"{'finished':>9} {'running':>8} {'pass':>8} {'seconds':>8} {'calls':>6}  calls by method")
    for n in args.finished:
        figures = one_size(n, args.running)
        for label, (seconds, calls, result) in figures.items():
            by = ", ".join(f"{k} {v}" for k, v in sorted(calls.items()))
            print(f"{n:>9} {args.running:>8} {label:>8} {seconds:>8.3f} {sum(calls.values()):>6}  {by}")
            assert result.active == args.running, result
    return 0


if __name__ == "__main__":
    sys.exit(main())
