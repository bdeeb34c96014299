"""Everything the Vertex AI backends need to know besides the study: where (project, region, buckets),
what runs (machine per team, trainer image pinned to a digest), as whom (trainer service account),
and how to treat a cloud call that fails for a moment (backoff with jitter).

Infrastructure names come from the Terraform outputs (`orchestrator.infra_outputs`); each team's
machine from `configs/teams/<team>.yaml` (the one place it is written); the knobs that are ours to
choose (image tag, timeout, Spot, experiment, retry policy) from `configs/backends/vertex.yaml`. Cloud SDKs are imported inside the functions that call them, so
importing this module stays cheap.
"""

from __future__ import annotations

import functools
import logging
import random
import re
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar

from pydantic import ConfigDict, Field

from orchestrator import storage
from orchestrator.cloud_permissions import caller_account, permission_denied
from orchestrator.errors import ConfigError, RetryableCloudError
from orchestrator.paths import DATA_ENV
from orchestrator.schema import Problems, Strict, validate
from orchestrator.teams import Team

T = TypeVar("T")

_IMAGE_REPOSITORY_RE = re.compile(
    r"^(?P<location>[a-z0-9-]+)-docker\.pkg\.dev/(?P<project>[a-z0-9-]+)/(?P<repo>[a-z0-9._-]+)$"
)


@dataclass(frozen=True)
class MachineSpec:
    """One worker: a Compute Engine machine type and its GPUs (v1 `MachineSpec` names)."""

    machine_type: str
    accelerator_type: str = ""
    accelerator_count: int = 0

    def describe(self) -> str:
        if not self.accelerator_count:
            return self.machine_type
        return f"{self.machine_type} + {self.accelerator_count} x {self.accelerator_type}"

    def to_dict(self) -> dict[str, Any]:
        spec: dict[str, Any] = {"machine_type": self.machine_type}
        if self.accelerator_count:
            spec |= {"accelerator_type": self.accelerator_type, "accelerator_count": self.accelerator_count}
        return spec


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with full jitter for quota and rate errors (429, RESOURCE_EXHAUSTED, 503).

    Args:
        attempts: calls in all before giving up with RetryableCloudError (default 6).
        base_s: first backoff ceiling in seconds (default 2); it doubles per attempt.
        cap_s: largest backoff ceiling in seconds (default 60).
    """

    attempts: int = 6
    base_s: float = 2.0
    cap_s: float = 60.0


@functools.cache  # once per process: setLevel clears every logger's cache, thousands of them
def quiet_sdk_logs() -> None:
    """Silence the aiplatform SDK's INFO chatter ("Creating CustomJob", console links) on stdout:
    the controller writes its own events, and `--json` output must stay pure JSON."""
    import google.cloud.aiplatform  # noqa: F401 - its module loggers exist once imported

    for name, logger in list(logging.root.manager.loggerDict.items()):
        if name.startswith("google.cloud.aiplatform") and isinstance(logger, logging.Logger):
            if logging.NOTSET < logger.level < logging.WARNING:  # the SDK sets INFO on its module loggers
                logger.setLevel(logging.WARNING)
    logging.getLogger("google.cloud.aiplatform").setLevel(logging.WARNING)


def _retryable() -> tuple[type[BaseException], ...]:
    from google.api_core import exceptions
    from google.auth import exceptions as auth

    return (
        exceptions.TooManyRequests,
        exceptions.ResourceExhausted,
        exceptions.ServiceUnavailable,
        exceptions.DeadlineExceeded,
        exceptions.InternalServerError,
        exceptions.Aborted,
        # A long-running operation (Vizier's SuggestTrials) that outlives result()'s timeout raises
        # concurrent.futures.TimeoutError, which is the built-in TimeoutError (api_core polling).
        TimeoutError,
        # The token endpoint or the metadata server did not answer: the network, not the grant.
        auth.TransportError,
    )


@dataclass
class CloudCalls:
    """Runs cloud calls under a RetryPolicy. The sleeper and the random source are injected so tests
    replay backoff exactly and instantly.

    Args:
        policy: the RetryPolicy (default RetryPolicy()).
        sleeper: called with the backoff in seconds (default time.sleep).
        rng: source of jitter (default a fresh random.Random()).
        credentials: the calls' google.auth credentials, named in a permission error (None = ADC).
        expected_account: the orchestrator service account from the infra outputs, named there too.
    """

    policy: RetryPolicy = field(default_factory=RetryPolicy)
    sleeper: Callable[[float], None] = time.sleep
    rng: random.Random = field(default_factory=random.Random)
    credentials: Any = None
    expected_account: str = ""
    backoffs: int = 0  # how many times a call was retried, for status and benchmarks

    def run(self, what: str, fn: Callable[[], T], permission: str = "") -> T:
        """Call fn(); on a transient error sleep a jittered backoff and call it again.

        Args:
            what: names the call in the error message, e.g. "create CustomJob for trial 7".
            fn: the call; it must be safe to repeat (look up before create).
            permission: the IAM permission the call needs, named if it is refused.
        Raises:
            RetryableCloudError: still failing after policy.attempts calls; the caller tries again
                on its next pass.
            CloudPermissionDenied: the call was refused for a permission (never retried).
            ConfigError: the credentials were refused for good (a revoked or expired grant).
        """
        from google.api_core import exceptions
        from google.auth import exceptions as auth

        retryable = _retryable()
        for attempt in range(self.policy.attempts):
            try:
                return fn()
            except exceptions.Forbidden as e:  # PermissionDenied (gRPC) is a Forbidden (HTTP 403)
                account = caller_account(self.credentials)
                raise permission_denied(what, e, permission, account, self.expected_account) from e
            except (*retryable, auth.RefreshError) as e:
                if isinstance(e, auth.RefreshError) and not e.retryable:
                    raise ConfigError(
                        f"{what}: Google refused the credentials ({e}); run "
                        "`gcloud auth application-default login` (docs/infra.md, step 4)"
                    ) from e
                if attempt + 1 == self.policy.attempts:
                    raise RetryableCloudError(
                        f"{what}: {type(e).__name__}: {e} (after {attempt + 1} attempts)"
                    ) from e
                self.backoffs += 1
                self.sleeper(self.rng.uniform(0, min(self.policy.cap_s, self.policy.base_s * 2**attempt)))
        raise AssertionError("unreachable")


@dataclass(frozen=True)
class VertexSettings:
    """Where and how trials run on Vertex AI.

    Args:
        project: Google Cloud project id.
        region: Vertex AI region, e.g. "us-central1".
        staging_bucket: gs:// URL the SDK stages into (CustomJob requires one).
        runs_bucket: gs:// URL; trial output dirs are <runs_bucket>/<study>/trials/<id>.
        image_repository: Artifact Registry Docker repository, LOCATION-docker.pkg.dev/PROJECT/REPO.
        trainer_service_account: e-mail of the identity the trainer runs as.
        orchestrator_service_account: e-mail of the identity the orchestrator should run as,
            named when a call is refused for a permission ("" = unknown).
        tensorboard: a Vertex AI TensorBoard's resource name (Terraform output `tensorboard`);
            every CustomJob is attached to it ("" = none).
        machines: team -> MachineSpec (from configs/teams/<team>.yaml).
        image_package: image name inside the repository (default "trainer").
        image_tag: tag resolved to a digest once per controller start (default "latest"; from the
            YAML, null = the checkout's content hash, orchestrator.image_tag).
        timeout_s: a job is killed after this many seconds (default 86400).
        spot: run on Spot VMs (cheaper, preemptible; a preempted job is retried) (default False).
        max_wait_s: give up on provisioning after this many seconds; None = service default (24 h).
        boot_disk_gb: boot disk size in GB (default 100).
        experiment: Vertex AI Experiments name used by --experiments; None = the run's cloud name.
        retry: RetryPolicy for transient cloud errors.
    """

    project: str
    region: str
    staging_bucket: str
    runs_bucket: str
    image_repository: str
    trainer_service_account: str
    machines: dict[str, MachineSpec]
    orchestrator_service_account: str = ""
    tensorboard: str = ""
    image_package: str = "trainer"
    image_tag: str = "latest"
    timeout_s: int = 86_400
    spot: bool = False
    max_wait_s: int | None = None
    boot_disk_gb: int = 100
    experiment: str | None = None
    retry: RetryPolicy = field(default_factory=RetryPolicy)

    def __post_init__(self) -> None:
        for name in (
            "project",
            "region",
            "staging_bucket",
            "runs_bucket",
            "image_repository",
            "trainer_service_account",
        ):
            if not getattr(self, name):
                raise ConfigError(f"vertex backend: setting {name!r} is missing (terraform output or flag)")
        for name in ("staging_bucket", "runs_bucket"):
            object.__setattr__(self, name, storage.bucket_url(getattr(self, name)))
        if not _IMAGE_REPOSITORY_RE.match(self.image_repository):
            raise ConfigError(
                f"vertex backend: image_repository {self.image_repository!r} is not LOCATION-docker.pkg.dev/PROJECT/REPO"
            )

    @property
    def image_tag_uri(self) -> str:
        return f"{self.image_repository}/{self.image_package}:{self.image_tag}"

    def trial_dir(self, study: str, trial_id: str) -> str:
        return f"{self.runs_bucket}/{study}/trials/{trial_id}"

    def console_url(self, job_name: str) -> str:
        job_id = job_name.rsplit("/", 1)[-1]
        return (
            f"https://console.cloud.google.com/vertex-ai/locations/{self.region}/training/{job_id}"
            f"?project={self.project}"
        )


def load_team_machines(teams_dir: str | Path) -> dict[str, MachineSpec]:
    """team name -> MachineSpec, from every configs/teams/<team>.yaml, validated by the team model
    the settings loader uses too (orchestrator.teams.Team).

    Args:
        teams_dir: the configs/teams directory.

    Raises:
        ConfigError: every problem of every team file, one line each naming file, line and key; or
            no team file at all.
    """
    problems = Problems()
    teams = [validate(Team, path, problems) for path in sorted(Path(teams_dir).glob("*.yaml"))]
    problems.raise_if_any()
    if not teams:
        raise ConfigError(f"{teams_dir}: no team files (<team>.yaml) found")
    return {t.name: MachineSpec(t.machine_type, t.accelerator_type, t.accelerator_count) for t in teams}


def vertex_data_url(data_path: str, infra_outputs: str | None, infra_overrides: dict[str, str]) -> str:
    """The gs:// URL a Vertex trial reads its zeros from.

    A gs:// path is kept. A local dataset directory maps to gs://<data_bucket>/<its name> (data/odlyzko
    -> gs://BUCKET/odlyzko): the trainer writes it there once with
    `trainer zeros odlyzko --out gs://BUCKET/odlyzko` (its storage layer writes gs:// URLs).

    Args:
        data_path: the resolved dataset path (absolute local path or gs:// URL).
        infra_outputs: the Terraform outputs file (None: $ZETA_SWARM_INFRA_OUTPUTS).
        infra_overrides: infra setting -> value from a flag.

    Raises:
        ConfigError: the path is local and there is no data_bucket to map it to (one line).
    """
    if storage.is_gcs(data_path):
        return data_path.rstrip("/")
    from orchestrator.infra_outputs import load_infra_outputs

    name = Path(data_path).name
    try:
        bucket = load_infra_outputs(infra_outputs, infra_overrides).data_bucket
    except ConfigError as e:
        raise ConfigError(
            f"data path {data_path} is local and a Vertex trial cannot read it; give a gs:// URL in "
            f"${DATA_ENV} or the profile's data_path, or fix the infra settings so it maps to "
            f"gs://<data_bucket>/{name}: {e}"
        ) from None
    return f"gs://{bucket}/{name}"


def checkout_image_tag() -> str:
    """The tag `make image` gives the trainer image built from this checkout (its content hash)."""
    from orchestrator.image_tag import content_tag

    try:
        return content_tag()
    except OSError as e:
        raise ConfigError(
            f"image_tag is not set and the image sources cannot be hashed ({e}); set image_tag in configs/backends/vertex.yaml"
        ) from e


class RetryConfig(Strict):
    """`retry` of configs/backends/vertex.yaml (RetryPolicy's fields)."""

    model_config = ConfigDict(strict=True)
    attempts: int = Field(RetryPolicy.attempts, ge=1)
    base_s: float = Field(RetryPolicy.base_s, gt=0)
    cap_s: float = Field(RetryPolicy.cap_s, gt=0)


class ZerosMachine(Strict):
    """The machine of one `orchestrator zeros --backend vertex` shard job (MachineSpec's fields);
    `workers`: `trainer zeros generate --workers` on it (default: its vCPUs, said in the file)."""

    model_config = ConfigDict(strict=True)
    machine_type: str
    accelerator_type: str = ""
    accelerator_count: int = Field(0, ge=0)
    workers: int | None = Field(None, ge=1)

    def spec(self) -> MachineSpec:
        return MachineSpec(self.machine_type, self.accelerator_type, self.accelerator_count)


class ZerosMachines(Strict):
    model_config = ConfigDict(strict=True)
    cpu: ZerosMachine | None = None
    cuda: ZerosMachine | None = None


class VertexBackend(Strict):
    """configs/backends/vertex.yaml: the Vertex choices that are ours (VertexSettings' fields of the
    same names; strict types: `timeout_s: "600"` or `spot: 1` is refused, not coerced)."""

    model_config = ConfigDict(strict=True)
    image_package: str = VertexSettings.image_package
    image_tag: str | None = None  # None: the checkout's content hash, the tag `make image` pushes
    timeout_s: int = Field(VertexSettings.timeout_s, ge=1)
    spot: bool = VertexSettings.spot
    max_wait_s: int | None = Field(None, ge=1)
    boot_disk_gb: int = Field(VertexSettings.boot_disk_gb, ge=1)
    experiment: str | None = None
    retry: RetryConfig = RetryConfig()
    zeros: ZerosMachines = ZerosMachines()


def load_vertex_backend(path: str | Path) -> VertexBackend:
    """configs/backends/vertex.yaml, validated by the schema machinery every config file goes through.

    Raises:
        ConfigError: every problem, one line each naming file, line and key.
    """
    problems = Problems()
    backend = validate(VertexBackend, Path(path), problems)
    problems.raise_if_any()
    return backend


def load_vertex_settings(path: str | Path, infra: Any, **overrides: Any) -> VertexSettings:
    """Build VertexSettings from the backend YAML and the Terraform outputs.

    Args:
        path: configs/backends/vertex.yaml (`VertexBackend`); unknown keys are errors. A null
            image_tag means the content hash of this checkout's image sources, the tag `make image` pushes. Machines
            come from the sibling directory teams/.
        infra: an InfraSettings (project_id, region, staging_bucket, runs_bucket, image_repository,
            trainer_service_account).
        overrides: settings given on the command line; None values are ignored.
    Raises:
        ConfigError: the file is unreadable, a key is unknown or has the wrong type, or a setting
            is missing; the message names the file, the line and the key.
    """
    path = Path(path)
    backend = load_vertex_backend(path)
    knobs = backend.model_dump(exclude={"retry", "zeros"})
    retry = RetryPolicy(**backend.retry.model_dump())
    if overrides.get("image_tag") is None and knobs.get("image_tag") is None:
        knobs["image_tag"] = checkout_image_tag()  # what `make image` built from this checkout
    settings = VertexSettings(
        project=infra.project_id,
        region=infra.region,
        staging_bucket=infra.staging_bucket,
        runs_bucket=infra.runs_bucket,
        image_repository=infra.image_repository,
        trainer_service_account=infra.trainer_service_account,
        orchestrator_service_account=infra.orchestrator_service_account,
        tensorboard=infra.tensorboard,
        machines=load_team_machines(path.parent.parent / "teams"),
        retry=retry,
        **knobs,
    )
    return replace(settings, **{k: v for k, v in overrides.items() if v is not None})


def resolve_image_digest(settings: VertexSettings, calls: CloudCalls, credentials: Any = None) -> str:
    """Pin the trainer image: <image_repository>/<package>:<tag> -> <image_repository>/<package>@sha256:...

    One get_tag and one get_docker_image call on Artifact Registry, so every trial of a controller
    run uses the same immutable image even if the tag moves meanwhile.

    Args:
        settings: VertexSettings (image_repository, image_package, image_tag).
        calls: CloudCalls for transient errors.
        credentials: google.auth credentials; None = application default credentials.
    Raises:
        ConfigError: the tag or the image does not exist (build and push the image first).
    """
    from google.api_core import exceptions
    from google.cloud import artifactregistry_v1

    m = _IMAGE_REPOSITORY_RE.match(settings.image_repository)
    assert m is not None  # checked in VertexSettings
    base = f"projects/{m['project']}/locations/{m['location']}/repositories/{m['repo']}"
    package = urllib.parse.quote(settings.image_package, safe="")  # nested image names are %2F-encoded
    client = artifactregistry_v1.ArtifactRegistryClient(credentials=credentials)
    try:
        tag = calls.run(
            f"look up {settings.image_tag_uri}",
            lambda: client.get_tag(name=f"{base}/packages/{package}/tags/{settings.image_tag}"),
            permission="artifactregistry.tags.get",
        )
        digest = tag.version.rsplit("/versions/", 1)[-1]
        image = calls.run(
            f"look up {settings.image_package}@{digest}",
            lambda: client.get_docker_image(name=f"{base}/dockerImages/{package}@{digest}"),
            permission="artifactregistry.dockerimages.get",
        )
    except exceptions.NotFound as e:
        raise ConfigError(
            f"trainer image {settings.image_tag_uri} not found in Artifact Registry: build it from this "
            f"checkout with `make image` (the tag is the content hash of its sources): {e}"
        ) from e
    if "@sha256:" not in image.uri:
        raise ConfigError(
            f"Artifact Registry returned {image.uri!r} for {settings.image_tag_uri}, not a digest"
        )
    return image.uri
