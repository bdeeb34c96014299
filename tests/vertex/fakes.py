"""Stateful fakes of the Vertex AI services the orchestrator talks to, installed *under* the real SDK.

The fakes replace only the gapic client methods (`VizierServiceClient.suggest_trials`,
`JobServiceClient.create_custom_job`, `ArtifactRegistryClient.get_tag`, ...), so every call goes
through the real `google.cloud.aiplatform` code (Study, Trial, CustomJob, pagers) and arrives here
as a real v1 request proto. The fakes keep state like the service does (studies, trials with their
states and measurements, jobs moving through their states on a fake clock) and answer with real
response protos, so the tests assert what the service would hold, not what a mock was told.

Strict like the service, so a wrong request fails a test instead of the first real run:
* IAM (`FakeIam.from_terraform`): each RPC needs its permission, held by the caller through the
  grants parsed from infra/*.tf (project, repository and service-account level); a create also
  needs actAs on the job's service account. Refusals are PermissionDenied with the service's text.
* CustomJobs: machine/accelerator pairing, boot disk type and size, label rules, display-name
  length, and per-region GPU quota (429 RESOURCE_EXHAUSTED beyond it, counting unfinished jobs).

Fault injection: `FakeCloud.fail(method, exc, times)` makes the next calls of one method raise;
`FakeCloud.crash_at(k, after=...)` raises `Crash` (a BaseException, like a SIGKILL that unwinds
nothing the code could catch) at the k-th cloud call, either before the service applies it or
after (the response is lost).
"""

from __future__ import annotations

import collections
import math
import random
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from unittest import mock

from google.api_core import exceptions, operation
from google.cloud import aiplatform_v1 as v1
from google.cloud import artifactregistry_v1 as ar
from google.cloud.aiplatform_v1.services.job_service import JobServiceClient
from google.cloud.aiplatform_v1.services.job_service import pagers as job_pagers
from google.cloud.aiplatform_v1.services.vizier_service import VizierServiceClient
from google.cloud.aiplatform_v1.services.vizier_service import pagers as vizier_pagers
from google.cloud.artifactregistry_v1.services.artifact_registry import ArtifactRegistryClient
from google.protobuf import struct_pb2, timestamp_pb2

JS = v1.JobState
FINAL_JOB_STATES = {JS.JOB_STATE_SUCCEEDED, JS.JOB_STATE_FAILED, JS.JOB_STATE_CANCELLED, JS.JOB_STATE_EXPIRED}
_FINAL_NAMES = {s.name for s in FINAL_JOB_STATES}
_LABEL_RE = re.compile(r"^[a-z0-9_-]{0,63}$")
_LABEL_KEY_RE = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")


class Crash(BaseException):
    """The controller process dies here (not an Exception: nothing in the code may swallow it)."""


class FakeClock:
    """Seconds since the epoch that move only when a test (or an injected sleeper) says so."""

    def __init__(self, start: float = 1_790_000_000.0):
        self.now = start
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds

    def advance(self, seconds: float) -> None:
        self.now += seconds

    def timestamp(self, at: float | None = None) -> timestamp_pb2.Timestamp:
        ts = timestamp_pb2.Timestamp()
        ts.FromNanoseconds(int((self.now if at is None else at) * 1e9))
        return ts


# --------------------------------------------------------------------------- IAM

# What each role holds, for the permissions the orchestrator's calls need (public role lists;
# roles/aiplatform.user holds aiplatform.* of jobs, studies and trials but no artifactregistry.*).
ROLE_PERMISSIONS = {
    "roles/aiplatform.user": {
        *(f"aiplatform.customJobs.{v}" for v in ("create", "get", "list", "cancel")),
        *(f"aiplatform.studies.{v}" for v in ("create", "get", "list", "search")),
        *(f"aiplatform.trials.{v}" for v in ("create", "get", "list", "update", "stop", "suggest")),
    },
    "roles/artifactregistry.reader": {
        "artifactregistry.tags.get",
        "artifactregistry.dockerimages.get",
        "artifactregistry.repositories.downloadArtifacts",
    },
    "roles/artifactregistry.writer": {"artifactregistry.tags.get", "artifactregistry.dockerimages.get"},
    "roles/iam.serviceAccountUser": {"iam.serviceAccounts.actAs"},
    # Cloud Storage (bucket-scoped grants): overwriting an object needs storage.objects.delete.
    "roles/storage.objectViewer": {"storage.objects.get", "storage.objects.list"},
    "roles/storage.objectCreator": {"storage.objects.create"},
    "roles/storage.objectUser": {
        *(f"storage.objects.{v}" for v in ("get", "list", "create", "delete", "update")),
    },
}

# The permission of each faked RPC.
METHOD_PERMISSIONS = {
    "create_study": "aiplatform.studies.create",
    "lookup_study": "aiplatform.studies.search",
    "get_study": "aiplatform.studies.get",
    "suggest_trials": "aiplatform.trials.suggest",
    "list_trials": "aiplatform.trials.list",
    "get_trial": "aiplatform.trials.get",
    "add_trial_measurement": "aiplatform.trials.update",
    "complete_trial": "aiplatform.trials.update",
    "stop_trial": "aiplatform.trials.stop",
    "check_trial_early_stopping_state": "aiplatform.trials.get",
    "create_custom_job": "aiplatform.customJobs.create",
    "get_custom_job": "aiplatform.customJobs.get",
    "list_custom_jobs": "aiplatform.customJobs.list",
    "cancel_custom_job": "aiplatform.customJobs.cancel",
    "get_tag": "artifactregistry.tags.get",
    "get_docker_image": "artifactregistry.dockerimages.get",
}


@dataclass
class FakeIam:
    """Who holds which role where: ("project", project) / ("repository", repo id) /
    ("serviceAccount", email) / ("bucket", Terraform name) -> {member: {roles}}; calls run as
    `caller` (a member string)."""

    caller: str
    grants: dict[tuple[str, str], dict[str, set[str]]] = field(default_factory=dict)

    def grant(self, scope: tuple[str, str], member: str, role: str) -> None:
        self.grants.setdefault(scope, {}).setdefault(member, set()).add(role)

    def allowed(self, permission: str, scopes: list[tuple[str, str]]) -> bool:
        for scope in scopes:
            for role in self.grants.get(scope, {}).get(self.caller, ()):
                if permission in ROLE_PERMISSIONS.get(role, ()):
                    return True
        return False

    def check(self, permission: str, scopes: list[tuple[str, str]], resource: str) -> None:
        if not self.allowed(permission, scopes):
            raise exceptions.PermissionDenied(
                f"Permission '{permission}' denied on resource '{resource}' (or it may not exist)."
            )

    @classmethod
    def from_terraform(
        cls, infra_dir, project: str, prefix: str = "zs", caller: str = "orchestrator"
    ) -> FakeIam:
        """The grants of infra/*.tf (python-hcl2), with google_service_account.X.member resolved to
        serviceAccount:PREFIX-X@PROJECT.iam.gserviceaccount.com; calls run as service account `caller`."""
        from pathlib import Path

        import hcl2

        def account(ref: str) -> str | None:
            m = re.search(r"google_service_account\.([a-z_]+)\.(member|name|email)", ref)
            return f"{prefix}-{m.group(1)}@{project}.iam.gserviceaccount.com" if m else None

        iam = cls(caller=f"serviceAccount:{prefix}-{caller}@{project}.iam.gserviceaccount.com")
        options = hcl2.SerializationOptions(
            with_comments=False, explicit_blocks=False, strip_string_quotes=True
        )
        for path in sorted(Path(infra_dir).glob("*.tf")):
            with path.open() as f:
                parsed = hcl2.load(f, serialization_options=options)
            for block in parsed.get("resource", []):
                for kind, by_name in block.items():
                    for body in by_name.values():
                        email = account(str(body.get("member", "")))
                        if email is None:
                            continue  # a service agent, a group or for_each members: not callers here
                        member = f"serviceAccount:{email}"
                        if kind == "google_project_iam_member":
                            iam.grant(("project", project), member, body["role"])
                        elif kind == "google_artifact_registry_repository_iam_member":
                            iam.grant(("repository", "*"), member, body["role"])
                        elif kind == "google_storage_bucket_iam_member":
                            m = re.search(r"google_storage_bucket\.([a-z_]+)\.name", str(body["bucket"]))
                            if m:  # scope ("bucket", "data"): the Terraform name of the bucket
                                iam.grant(("bucket", m.group(1)), member, body["role"])
                        elif kind == "google_service_account_iam_member":
                            target = account(str(body["service_account_id"]))
                            if target:
                                iam.grant(("serviceAccount", target), member, body["role"])
        return iam


class FakeCloud:
    """Call accounting, fault injection and (when `iam` is given) permission checks shared by
    every fake service of one test."""

    def __init__(self, clock: FakeClock, iam: FakeIam | None = None):
        self.clock = clock
        self.iam = iam
        self.calls: collections.Counter[str] = collections.Counter()
        self.log: list[tuple[str, object]] = []  # (method, request proto) in call order
        self._faults: dict[str, list[tuple[BaseException, bool]]] = collections.defaultdict(list)
        self._pending: BaseException | None = None
        self._crash_at: int | None = None
        self._crash_after = False

    @property
    def total_calls(self) -> int:
        return sum(self.calls.values())

    def fail(self, method: str, exc: BaseException, times: int = 1, *, after: bool = False) -> None:
        """The next `times` calls of `method` raise exc; after=True: the service applies the call
        first and the error replaces its response (a timeout whose request went through)."""
        self._faults[method].extend([(exc, after)] * times)

    def crash_at(self, k: int | None, *, after: bool = False) -> None:
        """Raise Crash at the k-th call from now (1-based); after=True applies that call first."""
        self._crash_at = None if k is None else self.total_calls + k
        self._crash_after = after

    def requests(self, method: str) -> list:
        return [req for name, req in self.log if name == method]

    def authorize(self, method: str, request: object) -> None:
        """PermissionDenied unless the caller holds the RPC's permission (no-op without IAM)."""
        if self.iam is None:
            return
        parent = str(getattr(request, "parent", "") or getattr(request, "name", ""))
        project = re.match(r"projects/([^/]+)", parent)
        scopes = [("project", project.group(1) if project else "")]
        if method in ("get_tag", "get_docker_image"):
            scopes.append(("repository", "*"))
        self.iam.check(METHOD_PERMISSIONS[method], scopes, f"//{parent}")
        if method == "create_custom_job":  # running the job as an account needs actAs on it
            account = request.custom_job.job_spec.service_account
            self.iam.check(
                "iam.serviceAccounts.actAs",
                [scopes[0], ("serviceAccount", account)],
                f"projects/-/serviceAccounts/{account}",
            )

    def enter(self, method: str, request: object) -> None:
        self.calls[method] += 1
        self.log.append((method, request))
        self.authorize(method, request)
        if self._crash_at == self.total_calls and not self._crash_after:
            self._crash_at = None
            raise Crash(f"killed before {method}")
        if self._faults[method]:
            exc, after = self._faults[method].pop(0)
            if not after:
                raise exc
            self._pending = exc

    def leave(self, method: str) -> None:
        if self._pending is not None:
            exc, self._pending = self._pending, None
            raise exc
        if self._crash_at == self.total_calls and self._crash_after:
            self._crash_at = None
            raise Crash(f"killed after {method} (response lost)")


def _install(mocker, client_cls: type, fake: object, cloud: FakeCloud, methods: dict[str, type]) -> None:
    """Replace client_cls.<method> by fake.<method>(request proto), with accounting and faults."""

    def make(name: str, request_type: type) -> Callable:
        impl = getattr(fake, name)

        def method(client, request=None, *, retry=None, timeout=None, metadata=(), **fields):
            req = request_type(request) if request is not None else request_type(**fields)
            cloud.enter(name, req)
            try:
                result = impl(req)
            except Exception:
                cloud._pending = None  # the service refused the call; nothing was applied
                raise
            cloud.leave(name)
            return result

        return method

    for name, request_type in methods.items():
        mocker.patch.object(client_cls, name, make(name, request_type))


def _value(v: object) -> struct_pb2.Value:
    return struct_pb2.Value(string_value=v) if isinstance(v, str) else struct_pb2.Value(number_value=float(v))


# --------------------------------------------------------------------------- Vizier


@dataclass
class _Study:
    proto: v1.Study
    trials: dict[int, v1.Trial] = field(default_factory=dict)


class FakeVizierService:
    """Studies and trials with Vizier's semantics: suggestions per client id (ACTIVE trials of the
    client first, then new ones), measurements, STOPPING, SUCCEEDED/INFEASIBLE, paged listing."""

    page_size = 100  # the service's default when the request sets none

    def __init__(self, cloud: FakeCloud, seed: int = 0, suggest_delay_s: float = 0.0):
        self.cloud = cloud
        self.rng = random.Random(seed)
        self.studies: dict[str, _Study] = {}
        self.suggest_delay_s = suggest_delay_s  # a slow suggestion: the LRO takes this long on the clock

    def install(self, mocker) -> FakeVizierService:
        _install(
            mocker,
            VizierServiceClient,
            self,
            self.cloud,
            {
                "create_study": v1.CreateStudyRequest,
                "lookup_study": v1.LookupStudyRequest,
                "get_study": v1.GetStudyRequest,
                "suggest_trials": v1.SuggestTrialsRequest,
                "list_trials": v1.ListTrialsRequest,
                "get_trial": v1.GetTrialRequest,
                "add_trial_measurement": v1.AddTrialMeasurementRequest,
                "complete_trial": v1.CompleteTrialRequest,
                "stop_trial": v1.StopTrialRequest,
                "check_trial_early_stopping_state": v1.CheckTrialEarlyStoppingStateRequest,
            },
        )
        return self

    # -- helpers for tests
    def study(self, display_name: str) -> _Study:
        return next(s for s in self.studies.values() if s.proto.display_name == display_name)

    def _trial(self, name: str) -> tuple[_Study, v1.Trial]:
        study_name, _, tid = name.rpartition("/trials/")
        if study_name not in self.studies or int(tid) not in self.studies[study_name].trials:
            raise exceptions.NotFound(f"trial {name} not found")
        s = self.studies[study_name]
        return s, s.trials[int(tid)]

    # -- RPCs
    def create_study(self, req: v1.CreateStudyRequest) -> v1.Study:
        if not req.study.display_name or len(req.study.display_name) > MAX_DISPLAY_NAME:
            raise exceptions.InvalidArgument(f"study display_name must be 1-{MAX_DISPLAY_NAME} characters")
        if any(s.proto.display_name == req.study.display_name for s in self.studies.values()):
            raise exceptions.AlreadyExists(f"study {req.study.display_name} exists")
        if not req.study.study_spec.metrics or not req.study.study_spec.parameters:
            raise exceptions.InvalidArgument("study_spec needs metrics and parameters")
        proto = v1.Study(req.study)
        proto.name = f"{req.parent}/studies/{len(self.studies) + 1000}"
        proto.state = v1.Study.State.ACTIVE
        proto.create_time = self.cloud.clock.timestamp()
        self.studies[proto.name] = _Study(proto)
        return v1.Study(proto)

    def lookup_study(self, req: v1.LookupStudyRequest) -> v1.Study:
        for s in self.studies.values():
            if s.proto.display_name == req.display_name and s.proto.name.startswith(req.parent):
                return v1.Study(s.proto)
        raise exceptions.NotFound(req.display_name)

    def get_study(self, req: v1.GetStudyRequest) -> v1.Study:
        if req.name not in self.studies:
            raise exceptions.NotFound(req.name)
        return v1.Study(self.studies[req.name].proto)

    def _sample(self, spec: v1.StudySpec) -> list[v1.Trial.Parameter]:
        out = []
        for p in spec.parameters:
            if p.double_value_spec:
                lo, hi = p.double_value_spec.min_value, p.double_value_spec.max_value
                if p.scale_type == v1.StudySpec.ParameterSpec.ScaleType.UNIT_LOG_SCALE:
                    v = math.exp(self.rng.uniform(math.log(lo), math.log(hi)))
                else:
                    v = self.rng.uniform(lo, hi)
            elif p.integer_value_spec:
                v = self.rng.randint(p.integer_value_spec.min_value, p.integer_value_spec.max_value)
            elif p.discrete_value_spec:
                v = self.rng.choice(list(p.discrete_value_spec.values))
            else:
                v = self.rng.choice(list(p.categorical_value_spec.values))
            out.append(v1.Trial.Parameter(parameter_id=p.parameter_id, value=_value(v)))
        return out

    def suggest_trials(self, req: v1.SuggestTrialsRequest) -> operation.Operation:
        s = self.studies[req.parent]
        mine = [
            t for t in s.trials.values() if t.state == v1.Trial.State.ACTIVE and t.client_id == req.client_id
        ]
        out = [v1.Trial(t) for t in mine[: req.suggestion_count]]
        active_params = {
            tuple((p.parameter_id, str(p.value)) for p in t.parameters)
            for t in s.trials.values()
            if t.state == v1.Trial.State.ACTIVE
        }
        while len(out) < req.suggestion_count:
            params = self._sample(s.proto.study_spec)
            key = tuple((p.parameter_id, str(p.value)) for p in params)
            if key in active_params:  # Vizier never hands out a duplicate of a running trial
                continue
            active_params.add(key)
            tid = len(s.trials) + 1
            t = v1.Trial(
                name=f"{s.proto.name}/trials/{tid}",
                id=str(tid),
                state=v1.Trial.State.ACTIVE,
                parameters=params,
                client_id=req.client_id,
                start_time=self.cloud.clock.timestamp(),
            )
            s.trials[tid] = t
            out.append(v1.Trial(t))
        lro = mock.Mock(spec=operation.Operation)
        lro.operation.name = f"{req.parent}/operations/suggest-{len(s.trials)}"
        delay = self.suggest_delay_s

        def result(timeout=None):
            self.cloud.clock.advance(delay)
            return v1.SuggestTrialsResponse(trials=out)

        lro.result.side_effect = result
        return lro

    def list_trials(self, req: v1.ListTrialsRequest):
        s = self.studies[req.parent]
        size = req.page_size or self.page_size
        start = int(req.page_token or 0)
        ids = sorted(s.trials)[start : start + size]
        nxt = str(start + size) if start + size < len(s.trials) else ""
        resp = v1.ListTrialsResponse(trials=[s.trials[i] for i in ids], next_page_token=nxt)
        if req.page_token:  # a later page, fetched by the pager itself
            return resp
        return vizier_pagers.ListTrialsPager(method=self._next_page, request=req, response=resp)

    def _next_page(self, request, **_):
        self.cloud.enter("list_trials", request)
        resp = self.list_trials(request)
        self.cloud.leave("list_trials")
        return resp

    def get_trial(self, req: v1.GetTrialRequest) -> v1.Trial:
        return v1.Trial(self._trial(req.name)[1])

    def add_trial_measurement(self, req: v1.AddTrialMeasurementRequest) -> v1.Trial:
        _, t = self._trial(req.trial_name)
        if t.state != v1.Trial.State.ACTIVE:
            raise exceptions.FailedPrecondition(f"trial {t.name} is {t.state.name}")
        t.measurements.append(req.measurement)
        return v1.Trial(t)

    def complete_trial(self, req: v1.CompleteTrialRequest) -> v1.Trial:
        s, t = self._trial(req.name)
        if t.state not in (v1.Trial.State.ACTIVE, v1.Trial.State.STOPPING):
            raise exceptions.FailedPrecondition(f"trial {t.name} is already {t.state.name}")
        metric_ids = {m.metric_id for m in s.proto.study_spec.metrics}
        if req.trial_infeasible:
            t.state = v1.Trial.State.INFEASIBLE
            t.infeasible_reason = req.infeasible_reason
        else:
            final = req.final_measurement if "final_measurement" in req else None
            if final is None and t.measurements:
                final = t.measurements[-1]
            if final is None or not metric_ids <= {m.metric_id for m in final.metrics}:
                raise exceptions.InvalidArgument(f"final measurement of {t.name} lacks {sorted(metric_ids)}")
            t.final_measurement = final
            t.state = v1.Trial.State.SUCCEEDED
        t.end_time = self.cloud.clock.timestamp()
        return v1.Trial(t)

    def stop_trial(self, req: v1.StopTrialRequest) -> v1.Trial:
        _, t = self._trial(req.name)
        if t.state != v1.Trial.State.ACTIVE:
            raise exceptions.FailedPrecondition(f"trial {t.name} is {t.state.name}")
        t.state = v1.Trial.State.STOPPING
        return v1.Trial(t)

    def check_trial_early_stopping_state(self, req):
        lro = mock.Mock(spec=operation.Operation)
        lro.result.return_value = v1.CheckTrialEarlyStoppingStateResponse(should_stop=False)
        return lro


# --------------------------------------------------------------------------- Jobs


@dataclass
class Outcome:
    """How a fake job behaves once created. Durations in fake-clock seconds."""

    queued_s: float = 5.0  # QUEUED -> PENDING
    pending_s: float = 30.0  # PENDING -> RUNNING (provisioning)
    run_s: float = 600.0  # RUNNING -> final
    final: v1.JobState = JS.JOB_STATE_SUCCEEDED
    error: str = ""  # the error message of a FAILED job (e.g. a preemption)


# Machine family -> the accelerator it carries and the count per machine type (Compute Engine's
# accelerator-optimized families: a G2 or A2 machine comes with its GPUs, nothing else fits).
_MACHINE_GPUS = {
    "g2-standard-4": ("NVIDIA_L4", 1),
    "g2-standard-8": ("NVIDIA_L4", 1),
    "g2-standard-12": ("NVIDIA_L4", 1),
    "g2-standard-16": ("NVIDIA_L4", 1),
    "g2-standard-24": ("NVIDIA_L4", 2),
    "g2-standard-32": ("NVIDIA_L4", 1),
    "g2-standard-48": ("NVIDIA_L4", 4),
    "g2-standard-96": ("NVIDIA_L4", 8),
    "a2-ultragpu-1g": ("NVIDIA_A100_80GB", 1),
    "a2-ultragpu-2g": ("NVIDIA_A100_80GB", 2),
    "a2-ultragpu-4g": ("NVIDIA_A100_80GB", 4),
    "a2-ultragpu-8g": ("NVIDIA_A100_80GB", 8),
    "a2-highgpu-1g": ("NVIDIA_TESLA_A100", 1),
}
_CPU_ONLY = re.compile(r"^(n1|n2|n2d|e2|c2)-(standard|highmem|highcpu)-[0-9]+$")
BOOT_DISK_TYPES = {"pd-ssd", "pd-standard", "hyperdisk-balanced"}
MAX_DISPLAY_NAME = 128
MAX_LABELS = 64
# The legacy metric Vertex names in a custom-training GPU quota error, by accelerator.
_QUOTA_METRIC = {
    "NVIDIA_L4": "custom_model_training_nvidia_l4_gpus",
    "NVIDIA_A100_80GB": "custom_model_training_nvidia_a100_80gb_gpus",
}


def check_machine(machine) -> None:
    """InvalidArgument for a machine type / accelerator pairing Vertex AI training refuses."""
    mtype, acc, count = machine.machine_type, machine.accelerator_type.name, machine.accelerator_count
    if mtype in _MACHINE_GPUS:
        want = _MACHINE_GPUS[mtype]
        if (acc, count) != want:
            raise exceptions.InvalidArgument(
                f"machine type {mtype} requires accelerator {want[0]} x {want[1]}, got {acc} x {count}"
            )
    elif _CPU_ONLY.match(mtype):
        if count and not mtype.startswith("n1-"):
            raise exceptions.InvalidArgument(f"machine type {mtype} cannot attach accelerators")
    else:
        raise exceptions.InvalidArgument(f"machine type {mtype!r} is not supported for custom training")


class FakeJobService:
    """CustomJobs moving QUEUED -> PENDING -> RUNNING -> SUCCEEDED/FAILED (or CANCELLING -> CANCELLED)
    on the fake clock. `outcome(job)` decides each new job's fate; `on_success(job)` plays the trainer
    (e.g. writes final.json into the output dir) when a job succeeds."""

    page_size = 100
    cancel_s = 20.0  # CANCELLING -> CANCELLED

    def __init__(
        self,
        cloud: FakeCloud,
        outcome: Callable[[v1.CustomJob], Outcome] = lambda job: Outcome(),
        on_success: Callable[[v1.CustomJob], None] | None = None,
        gpu_quota: dict[tuple[str, str], int] | None = None,
    ):
        """gpu_quota: (region, accelerator type name) -> GPUs that unfinished jobs may hold there;
        a pair not listed is unlimited."""
        self.cloud = cloud
        self.gpu_quota = dict(gpu_quota or {})
        self.outcome = outcome
        self.on_success = on_success
        self.jobs: dict[str, v1.CustomJob] = {}
        self._plan: dict[str, tuple[float, Outcome]] = {}  # name -> (created, outcome)
        # Python-side copies of what list filters read (proto-plus attribute reads are slow).
        self._labels: dict[str, dict[str, str]] = {}
        self._state: dict[str, str] = {}
        self._listing: list[v1.CustomJob] = []
        self._cancel_at: dict[str, float] = {}

    def install(self, mocker) -> FakeJobService:
        _install(
            mocker,
            JobServiceClient,
            self,
            self.cloud,
            {
                "create_custom_job": v1.CreateCustomJobRequest,
                "get_custom_job": v1.GetCustomJobRequest,
                "list_custom_jobs": v1.ListCustomJobsRequest,
                "cancel_custom_job": v1.CancelCustomJobRequest,
            },
        )
        return self

    def _validate(self, job: v1.CustomJob) -> None:
        if not job.display_name or len(job.display_name) > MAX_DISPLAY_NAME:
            raise exceptions.InvalidArgument(
                f"display_name must be 1-{MAX_DISPLAY_NAME} characters, got {len(job.display_name)}"
            )
        if len(job.labels) > MAX_LABELS:
            raise exceptions.InvalidArgument(f"at most {MAX_LABELS} labels, got {len(job.labels)}")
        for k, v in job.labels.items():
            if not _LABEL_KEY_RE.match(k) or not _LABEL_RE.match(v):
                raise exceptions.InvalidArgument(f"label {k}={v!r} is not a valid label")
        pools = job.job_spec.worker_pool_specs
        if not pools or not pools[0].container_spec.image_uri or pools[0].replica_count < 1:
            raise exceptions.InvalidArgument("worker_pool_specs[0] needs an image and a replica")
        for pool in pools:
            check_machine(pool.machine_spec)
            disk = pool.disk_spec
            if disk.boot_disk_type and disk.boot_disk_type not in BOOT_DISK_TYPES:
                raise exceptions.InvalidArgument(
                    f"boot_disk_type {disk.boot_disk_type!r} is not one of {sorted(BOOT_DISK_TYPES)}"
                )
            if disk.boot_disk_size_gb and not 100 <= disk.boot_disk_size_gb <= 64_000:
                raise exceptions.InvalidArgument(
                    f"boot_disk_size_gb {disk.boot_disk_size_gb} is not in [100, 64000]"
                )
        out = job.job_spec.base_output_directory.output_uri_prefix
        if out and not out.startswith("gs://"):
            raise exceptions.InvalidArgument(f"base_output_directory {out!r} is not a gs:// URI")

    def gpus_in_use(self, region: str, accelerator: str) -> int:
        """GPUs of one type held by unfinished jobs in one region (the quota's usage)."""
        used = 0
        for name, job in self.jobs.items():
            if f"/locations/{region}/" not in name:
                continue
            self._advance(job)
            if self._state[name] in _FINAL_NAMES:
                continue
            for pool in job.job_spec.worker_pool_specs:
                if pool.machine_spec.accelerator_type.name == accelerator:
                    used += pool.machine_spec.accelerator_count * pool.replica_count
        return used

    def _check_quota(self, parent: str, job: v1.CustomJob) -> None:
        region = parent.rsplit("/locations/", 1)[-1]
        for pool in job.job_spec.worker_pool_specs:
            acc = pool.machine_spec.accelerator_type.name
            limit = self.gpu_quota.get((region, acc))
            if limit is None:
                continue
            want = pool.machine_spec.accelerator_count * pool.replica_count
            if self.gpus_in_use(region, acc) + want > limit:
                raise exceptions.ResourceExhausted(
                    "The following quota metrics exceed quota limits: "
                    f"aiplatform.googleapis.com/{_QUOTA_METRIC.get(acc, acc.lower())} (limit {limit} in {region})"
                )

    def create_custom_job(self, req: v1.CreateCustomJobRequest) -> v1.CustomJob:
        job = v1.CustomJob(req.custom_job)
        self._validate(job)
        self._check_quota(req.parent, job)
        job.name = f"{req.parent}/customJobs/{len(self.jobs) + 7_000_000}"
        now = self.cloud.clock()
        job.create_time = job.update_time = self.cloud.clock.timestamp(now)
        job.state = JS.JOB_STATE_QUEUED
        self.add(job, now, self.outcome(job))
        return v1.CustomJob(job)

    def add(self, job: v1.CustomJob, created: float, outcome: Outcome) -> None:
        """Hold a job (also how a benchmark seeds thousands of them without creating each)."""
        self.jobs[job.name] = job
        self._plan[job.name] = (created, outcome)
        self._labels[job.name] = dict(job.labels)
        self._state[job.name] = job.state.name

    def _advance(self, job: v1.CustomJob) -> None:
        """Bring a job's state up to the fake clock's present."""
        if self._state[job.name] in _FINAL_NAMES:
            return
        self._step(job)
        self._state[job.name] = job.state.name

    def _step(self, job: v1.CustomJob) -> None:
        now = self.cloud.clock()
        if job.name in self._cancel_at:
            if now >= self._cancel_at[job.name]:
                job.state = JS.JOB_STATE_CANCELLED
                job.end_time = self.cloud.clock.timestamp(self._cancel_at[job.name])
            return
        created, o = self._plan[job.name]
        t_pending = created + o.queued_s
        t_running = t_pending + o.pending_s
        t_end = t_running + o.run_s
        if now >= t_end:
            if "start_time" not in job:
                job.start_time = self.cloud.clock.timestamp(t_running)
            job.state = o.final
            job.end_time = self.cloud.clock.timestamp(t_end)
            if o.error:
                job.error.code = 14
                job.error.message = o.error
            if o.final == JS.JOB_STATE_SUCCEEDED and self.on_success:
                self.on_success(job)
        elif now >= t_running:
            job.state = JS.JOB_STATE_RUNNING
            job.start_time = self.cloud.clock.timestamp(t_running)
        elif now >= t_pending:
            job.state = JS.JOB_STATE_PENDING

    def get_custom_job(self, req: v1.GetCustomJobRequest) -> v1.CustomJob:
        if req.name not in self.jobs:
            raise exceptions.NotFound(req.name)
        self._advance(self.jobs[req.name])
        return v1.CustomJob(self.jobs[req.name])

    @staticmethod
    def _clauses(flt: str) -> list[tuple[str, str, str]]:
        """The AIP-160 subset the runner uses: `labels.k="v"`, `state="X"`, `state!="X"`, joined by AND."""
        out = []
        for clause in filter(None, (c.strip() for c in flt.split(" AND "))):
            m = re.fullmatch(r'(labels\.[a-z0-9_-]+|state)\s*(!=|=)\s*"([^"]*)"', clause)
            if not m:
                raise exceptions.InvalidArgument(f"unsupported filter clause {clause!r}")
            out.append(m.groups())
        return out

    def _matches(self, name: str, clauses: list[tuple[str, str, str]]) -> bool:
        for key, op, want in clauses:
            have = self._labels[name].get(key[7:]) if key.startswith("labels.") else self._state[name]
            if (have == want) != (op == "="):
                return False
        return True

    def list_custom_jobs(self, req: v1.ListCustomJobsRequest):
        if req.page_token:  # a later page of the same listing: the snapshot taken for its first page
            matching = self._listing
        else:
            clauses = self._clauses(req.filter)
            for name, job in self.jobs.items():
                if self._state[name] not in _FINAL_NAMES:  # a finished job never changes
                    self._advance(job)
            matching = [
                j for n, j in self.jobs.items() if n.startswith(req.parent) and self._matches(n, clauses)
            ]
            self._listing = matching
        size = req.page_size or self.page_size
        start = int(req.page_token or 0)
        nxt = str(start + size) if start + size < len(matching) else ""
        resp = v1.ListCustomJobsResponse(
            custom_jobs=[v1.CustomJob(j) for j in matching[start : start + size]], next_page_token=nxt
        )
        if req.page_token:
            return resp
        return job_pagers.ListCustomJobsPager(method=self._next_page, request=req, response=resp)

    def _next_page(self, request, **_):
        self.cloud.enter("list_custom_jobs", request)
        resp = self.list_custom_jobs(request)
        self.cloud.leave("list_custom_jobs")
        return resp

    def cancel_custom_job(self, req: v1.CancelCustomJobRequest) -> None:
        if req.name not in self.jobs:
            raise exceptions.NotFound(req.name)
        job = self.jobs[req.name]
        self._advance(job)
        if job.state in FINAL_JOB_STATES or job.state == JS.JOB_STATE_CANCELLING:
            raise exceptions.FailedPrecondition(f"job {req.name} is {job.state.name}")
        job.state = JS.JOB_STATE_CANCELLING
        self._state[req.name] = job.state.name
        self._cancel_at[req.name] = self.cloud.clock() + self.cancel_s

    # -- helpers for tests
    def by_labels(self, **labels: str) -> list[v1.CustomJob]:
        return [j for j in self.jobs.values() if all(j.labels.get(k) == v for k, v in labels.items())]


# --------------------------------------------------------------------------- Artifact Registry


class FakeArtifactRegistry:
    """Docker images and their tags, as Artifact Registry names them."""

    def __init__(self, cloud: FakeCloud):
        self.cloud = cloud
        self.tags: dict[str, str] = {}  # tag resource name -> version resource name
        self.images: dict[str, ar.DockerImage] = {}  # dockerImages resource name -> image

    def install(self, mocker) -> FakeArtifactRegistry:
        _install(
            mocker,
            ArtifactRegistryClient,
            self,
            self.cloud,
            {"get_tag": ar.GetTagRequest, "get_docker_image": ar.GetDockerImageRequest},
        )
        return self

    def push(self, image_repository: str, package: str, tag: str, digest: str) -> None:
        """Record an image pushed as <image_repository>/<package>:<tag> (image_repository is
        LOCATION-docker.pkg.dev/PROJECT/REPO) with manifest digest `sha256:...`."""
        host, project, repo = image_repository.split("/")
        location = host.removesuffix("-docker.pkg.dev")
        base = f"projects/{project}/locations/{location}/repositories/{repo}"
        self.tags[f"{base}/packages/{package}/tags/{tag}"] = f"{base}/packages/{package}/versions/{digest}"
        self.images[f"{base}/dockerImages/{package}@{digest}"] = ar.DockerImage(
            name=f"{base}/dockerImages/{package}@{digest}",
            uri=f"{image_repository}/{package}@{digest}",
            tags=[tag],
        )

    def get_tag(self, req: ar.GetTagRequest) -> ar.Tag:
        if req.name not in self.tags:
            raise exceptions.NotFound(f"tag {req.name} not found")
        return ar.Tag(name=req.name, version=self.tags[req.name])

    def get_docker_image(self, req: ar.GetDockerImageRequest) -> ar.DockerImage:
        if req.name not in self.images:
            raise exceptions.NotFound(f"image {req.name} not found")
        return ar.DockerImage(self.images[req.name])
