"""Runner `vertex`: one Vertex AI CustomJob per trial attempt, found again by its labels.

Each attempt is a CustomJob whose single worker runs `trainer <trainer_args>` in the trainer image
pinned to a digest, on the team's machine, as the trainer service account, with
`base_output_dir` = the trial's output dir (so AIP_TENSORBOARD_LOG_DIR and the checkpoint land next
to metrics.jsonl and final.json, and a retry resumes there). Labels study/trial/attempt/phase/team
are the only state: `launch` lists by them before it creates, so a controller killed between create
and its next step never starts a second job for the same attempt.

Cost of `jobs()` per pass: the first call lists every job of the study (all pages); later calls list
only unfinished ones (`state!=` the final states) plus one `get_custom_job` per job that finished
since the previous pass. Finished jobs never change on Vertex, so they are kept from earlier passes
and the calls per pass do not grow with the number of finished trials. `launch` of an attempt this
runner has already seen (in a listing or its own create) costs no call.

States (compared as enums by name; str() of the v1 IntEnum is a number on Python 3.11):
QUEUED/PENDING/PAUSED -> QUEUED; RUNNING/UPDATING -> RUNNING; CANCELLING -> RUNNING too (the job
still holds its machine and may still write its output dir, so nothing is retried into it yet);
SUCCEEDED; FAILED/EXPIRED/PARTIALLY_SUCCEEDED -> FAILED (a preemption is a FAILED attempt that the
controller retries in the same output dir); CANCELLED.

Exit codes: a FAILED job whose container exited non-zero carries Vertex's documented message "The
replica workerpool0-0 exited with a non-zero status of N. Termination reason: ..." (also "ran out of
memory and exited with a non-zero status of N"; "Handle common errors" in
https://docs.cloud.google.com/gemini-enterprise-agent-platform/machine-learning/training/understanding-training-service,
Vertex AI's training docs under their 2026 name); N becomes Job.exit_code, so the controller's rules hold on Vertex as they do
locally: the trainer's exit 2 (bad input) is not retried, exit 75 (environment) does not use a
retry. A SUCCEEDED job exited 0; other failures (preemption, stockout, deleted) have no exit code.

google-cloud-aiplatform is imported inside the methods: `orchestrator` starts without it.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from orchestrator.errors import ConfigError, PermanentJobError, RetryableCloudError
from orchestrator.runners.base import Job, JobSpec, JobState, Runner

# The runs bucket is read by the storage layer; its reader is this backend's read_output.
from orchestrator.storage import (
    _storage_client,  # noqa: F401 (tests clear its cache here)
    is_gcs,
)
from orchestrator.storage import read_gcs as read_output  # noqa: F401
from orchestrator.vertex_settings import (
    CloudCalls,
    MachineSpec,
    VertexSettings,
    quiet_sdk_logs,
    resolve_image_digest,
)

_FINAL = ("JOB_STATE_SUCCEEDED", "JOB_STATE_FAILED", "JOB_STATE_CANCELLED", "JOB_STATE_EXPIRED")
_STATE_MAP = {
    "JOB_STATE_UNSPECIFIED": JobState.QUEUED,
    "JOB_STATE_QUEUED": JobState.QUEUED,
    "JOB_STATE_PENDING": JobState.QUEUED,
    "JOB_STATE_PAUSED": JobState.QUEUED,
    "JOB_STATE_RUNNING": JobState.RUNNING,
    "JOB_STATE_UPDATING": JobState.RUNNING,
    "JOB_STATE_SUCCEEDED": JobState.SUCCEEDED,
    "JOB_STATE_FAILED": JobState.FAILED,
    "JOB_STATE_EXPIRED": JobState.FAILED,
    "JOB_STATE_PARTIALLY_SUCCEEDED": JobState.FAILED,
    # Still tearing down and possibly writing its output dir: not finished, so nothing is retried into it yet.
    "JOB_STATE_CANCELLING": JobState.RUNNING,
    "JOB_STATE_CANCELLED": JobState.CANCELLED,
}
log = logging.getLogger(__name__)
_LABEL_UNSAFE = re.compile(r"[^a-z0-9_-]")
_EXIT_STATUS = re.compile(r"\bexited with a non-zero status of (\d+)")


def exit_code_of(state: JobState, error_message: str) -> int | None:
    """The trainer's exit code as a finished CustomJob reports it (see the module docstring)."""
    if state is JobState.SUCCEEDED:
        return 0
    if state is JobState.FAILED and (m := _EXIT_STATUS.search(error_message)):
        return int(m.group(1))
    return None


def label_value(value: object) -> str:
    """A Vertex label value: lowercase letters, digits, '_' and '-', at most 63 characters."""
    return _LABEL_UNSAFE.sub("-", str(value).lower())[:63]


def api_dict(message: Any) -> dict[str, Any]:
    """A proto-plus message as the v1 REST API writes it: camelCase names, enums by name."""
    return type(message).to_dict(
        message,
        use_integers_for_enums=False,
        preserving_proto_field_name=False,
        always_print_fields_with_no_presence=False,
    )


def map_state(state: Any) -> JobState:
    """v1 JobState enum -> JobState. By name: on Python 3.11 str() of an IntEnum is its number."""
    return _STATE_MAP[state.name]


class VertexRunner(Runner):
    """CustomJobs on Vertex AI for one study.

    Args:
        settings: VertexSettings (project, region, buckets, image, machines, service account).
        study: the run's cloud name (SwarmSettings.cloud_study: phase<N>-<team>-<run id>), the
            `study` label and display-name prefix of its jobs; jobs of other runs are never seen.
        credentials: google.auth credentials; None = application default credentials.
        calls: CloudCalls (retry policy, injected sleeper); default CloudCalls(settings.retry).
        image_uri: a pinned image (…@sha256:…); None = resolve the tag on the first launch.
    """

    def __init__(
        self,
        settings: VertexSettings,
        study: str,
        *,
        credentials: Any = None,
        calls: CloudCalls | None = None,
        image_uri: str | None = None,
    ):
        if label_value(study) != study:
            raise ConfigError(
                f"study name {study!r} is not a valid Vertex label (lowercase, digits, '-', '_')"
            )
        self.settings = settings
        self.study = study
        self.credentials = credentials
        self.calls = calls or CloudCalls(settings.retry)
        self.calls.credentials = self.calls.credentials or credentials
        self.calls.expected_account = self.calls.expected_account or settings.orchestrator_service_account
        self._image_uri = image_uri
        self._live: dict[str, Job] = {}  # resource name -> unfinished job
        self._done: dict[str, Job] = {}  # resource name -> job in a final state (never changes again)
        self._by_key: dict[tuple[str, int], Job] = {}  # (trial id, attempt) -> its job, as last seen
        self._synced = False
        quiet_sdk_logs()

    # ------------------------------------------------------------------ building requests

    def preflight(self) -> None:
        """Pin the trainer image before the swarm asks its tuner for anything: a missing image or a
        missing permission then fails with nothing suggested (ConfigError, exit 2)."""
        self.image_uri()

    def image_uri(self) -> str:
        """The trainer image pinned to a digest, resolved once per runner (= per controller start)."""
        if self._image_uri is None:
            from google.cloud import aiplatform
            from google.cloud.aiplatform import initializer

            # The project first: with none set, reading the SDK's credentials turns
            # $GOOGLE_CLOUD_PROJECT into a project id through Resource Manager, a call the
            # orchestrator's account has no permission for (a logged traceback and a 60 s retry).
            aiplatform.init(project=self.settings.project, location=self.settings.region)
            # The same identity as the aiplatform calls: explicit, else aiplatform.init's, else ADC.
            creds = self.credentials or initializer.global_config.credentials
            self._image_uri = resolve_image_digest(self.settings, self.calls, creds)
        return self._image_uri

    def labels(self, spec: JobSpec) -> dict[str, str]:
        base = {
            "study": self.study,
            "trial": spec.trial_id,
            "attempt": spec.attempt,
            "phase": spec.phase,
            "team": spec.team,
        }
        return {k: label_value(v) for k, v in {**spec.labels, **base}.items()}

    def machine(self, team: str) -> MachineSpec:
        if team not in self.settings.machines:
            raise ConfigError(
                f"vertex backend: no machine for team {team!r}; known: {sorted(self.settings.machines)}"
            )
        return self.settings.machines[team]

    def _sdk_job(self, spec: JobSpec, image_uri: str):
        """The SDK CustomJob for one attempt (built locally; nothing is sent)."""
        from google.cloud import aiplatform

        if not is_gcs(spec.output_dir):
            raise PermanentJobError(
                f"trial {spec.trial_id}: output dir {spec.output_dir!r} is not a gs:// URL"
            )
        pool = {
            "machine_spec": self.machine(spec.team).to_dict(),
            "replica_count": 1,
            "container_spec": {
                "image_uri": image_uri,
                "command": ["trainer"],
                "args": list(spec.trainer_args),
            },
            "disk_spec": {"boot_disk_type": "pd-ssd", "boot_disk_size_gb": self.settings.boot_disk_gb},
        }
        return aiplatform.CustomJob(
            display_name=f"{self.study}-t{spec.trial_id}-a{spec.attempt}",
            worker_pool_specs=[pool],
            base_output_dir=spec.output_dir,
            labels=self.labels(spec),
            staging_bucket=self.settings.staging_bucket,
            project=self.settings.project,
            location=self.settings.region,
            credentials=self.credentials,
        )

    def _submit_kwargs(self) -> dict[str, Any]:
        from google.cloud import aiplatform_v1

        s = self.settings
        return {
            "service_account": s.trainer_service_account,
            "timeout": s.timeout_s,
            # Vertex restarts a worker after host maintenance; the trainer resumes from checkpoint.pt.
            "restart_job_on_worker_restart": True,
            "scheduling_strategy": aiplatform_v1.Scheduling.Strategy.SPOT if s.spot else None,
            "max_wait_duration": s.max_wait_s,
            "create_request_timeout": 60.0,
            # The trainer's event files (AIP_TENSORBOARD_LOG_DIR, under base_output_dir) go there.
            "tensorboard": s.tensorboard or None,
        }

    def job_request(self, spec: JobSpec, image_uri: str | None = None):
        """The aiplatform_v1.CustomJob that `launch(spec)` sends, without sending it (for --dry-run).

        Args:
            spec: the attempt.
            image_uri: the image to show; None = the pinned digest (an Artifact Registry call).
        """
        job = self._sdk_job(spec, image_uri or self.image_uri())
        # What CustomJob.submit() adds to the request; a test checks both stay equal.
        kw = self._submit_kwargs()
        proto = job._gca_resource  # the public property refuses an unsent job
        proto.job_spec.service_account = kw["service_account"]
        scheduling: dict[str, Any] = {
            "timeout": {"seconds": kw["timeout"]},
            "restart_job_on_worker_restart": kw["restart_job_on_worker_restart"],
        }
        if kw["scheduling_strategy"] is not None:
            scheduling["strategy"] = kw["scheduling_strategy"]
        if kw["max_wait_duration"] is not None:
            scheduling["max_wait_duration"] = {"seconds": kw["max_wait_duration"]}
        proto.job_spec.scheduling = scheduling
        if kw["tensorboard"]:
            proto.job_spec.tensorboard = kw["tensorboard"]
        return proto

    # ------------------------------------------------------------------ Runner

    def _list(self, flt: str) -> list:
        from google.cloud import aiplatform

        return [
            j.gca_resource
            for j in aiplatform.CustomJob.list(
                filter=flt,
                project=self.settings.project,
                location=self.settings.region,
                credentials=self.credentials,
            )
        ]

    def _remember(self, proto) -> Job:
        job = self.to_job(proto)
        if proto.labels.get("study") == self.study:
            self._by_key[(job.trial_id, job.attempt)] = job
        if proto.state.name in _FINAL:
            self._live.pop(job.job_id, None)
            self._done[job.job_id] = job
        else:
            self._live[job.job_id] = job
        return job

    def launch(self, spec: JobSpec) -> Job:
        from google.api_core import exceptions

        image = self.image_uri()
        known = self._by_key.get((spec.trial_id, spec.attempt))
        if known is not None:  # seen in a listing or launched by this runner: no call needed
            return known
        key = f'labels.study="{self.study}" AND labels.trial="{label_value(spec.trial_id)}" AND labels.attempt="{spec.attempt}"'

        def find_or_create():
            found = self._list(key)
            if found:  # created before (maybe by a controller that died right after): never twice
                return min(found, key=lambda p: p.create_time)
            job = self._sdk_job(spec, image)
            job.submit(**self._submit_kwargs())
            return job.gca_resource

        try:
            proto = self.calls.run(
                f"launch trial {spec.trial_id} attempt {spec.attempt}",
                find_or_create,
                permission="aiplatform.customJobs.create",
            )
        except exceptions.GoogleAPICallError as e:
            raise PermanentJobError(
                f"trial {spec.trial_id} attempt {spec.attempt}: Vertex AI refused the job: {e}"
            ) from e
        return self._remember(proto)

    def jobs(self) -> list[Job]:
        from google.api_core import exceptions

        study = f'labels.study="{self.study}"'
        if not self._synced:
            for proto in self.calls.run(
                "list jobs", lambda: self._list(study), permission="aiplatform.customJobs.list"
            ):
                self._remember(proto)
            self._synced = True
        else:
            unfinished = " AND ".join([study, *(f'state!="{s}"' for s in _FINAL)])
            seen = set()
            for proto in self.calls.run(
                "list unfinished jobs",
                lambda: self._list(unfinished),
                permission="aiplatform.customJobs.list",
            ):
                seen.add(self._remember(proto).job_id)
            for name in [n for n in self._live if n not in seen]:  # finished since the last pass
                try:
                    self._remember(
                        self.calls.run(
                            f"get {name}", lambda n=name: self._get(n), permission="aiplatform.customJobs.get"
                        )
                    )
                except exceptions.NotFound:  # deleted by hand: a lost attempt, which the controller retries
                    job = self._live.pop(name)
                    job.state, job.detail = JobState.FAILED, f"the CustomJob was deleted ({job.detail})"
                    job.ended = job.ended or job.started or job.created
                    self._done[name] = job
        return sorted(
            [*self._done.values(), *self._live.values()],
            key=lambda j: (int(j.trial_id) if j.trial_id.isdigit() else 0, j.trial_id, j.attempt, j.created),
        )

    def _get(self, name: str):
        from google.cloud import aiplatform

        return aiplatform.CustomJob.get(
            name, project=self.settings.project, location=self.settings.region, credentials=self.credentials
        ).gca_resource

    def cancel(self, job_id: str) -> None:
        from google.api_core import exceptions
        from google.cloud import aiplatform, aiplatform_v1

        if job_id in self._done:
            return
        job = aiplatform.CustomJob._construct_sdk_resource_from_gapic(  # no get: cancel needs only the name
            aiplatform_v1.CustomJob(name=job_id), credentials=self.credentials
        )
        try:
            self.calls.run(f"cancel {job_id}", job.cancel, permission="aiplatform.customJobs.cancel")
        except exceptions.FailedPrecondition:
            pass  # already finished or cancelling: the contract makes this a no-op
        except (exceptions.GoogleAPICallError, RetryableCloudError) as e:
            # The job keeps running for now; the controller asks again on its next pass (a finished
            # trial whose job still runs is cancelled then), so a cancel error never stops the swarm.
            log.warning("cancel %s failed, tried again next pass: %s", job_id, e)

    # ------------------------------------------------------------------ mapping

    def to_job(self, proto) -> Job:
        """aiplatform_v1.CustomJob -> Job (machine and console link filled in for `orchestrator status`)."""
        pools = proto.job_spec.worker_pool_specs
        machine = ""
        if pools:
            m = pools[0].machine_spec
            count = m.accelerator_count
            machine = MachineSpec(m.machine_type, m.accelerator_type.name if count else "", count).describe()
        link = self.settings.console_url(proto.name)
        detail = f"{proto.error.message} ({link})" if proto.error.message else link

        def ts(field: str) -> float | None:
            return getattr(proto, field).timestamp() if field in proto else None

        state = map_state(proto.state)
        return Job(
            job_id=proto.name,
            trial_id=proto.labels.get("trial", ""),
            attempt=int(proto.labels.get("attempt", "0")),
            state=state,
            created=ts("create_time") or 0.0,
            started=ts("start_time"),
            ended=ts("end_time"),
            machine=machine,
            detail=detail,
            output_dir=proto.job_spec.base_output_directory.output_uri_prefix,
            exit_code=exit_code_of(state, proto.error.message),
        )
