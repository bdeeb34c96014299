"""Local paths and gs:// URLs behind one interface: the orchestrator's storage layer (the trainer
has its own, trainer/storage.py; the orchestrator never imports the trainer).

Every module that reads a run's files (the controller's Vertex reader, status, report, the zeros
fan-out) asks here; only this module talks to Cloud Storage, and it imports the SDK lazily, so
a local swarm never loads it.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

from orchestrator.cloud_permissions import caller_account, permission_denied
from orchestrator.errors import ConfigError, PermanentJobError, RetryableCloudError

GS = "gs://"


def is_gcs(url: str | os.PathLike[str]) -> bool:
    """Whether a path is a gs:// URL (else a local path)."""
    return str(url).startswith(GS)


def bucket_url(bucket: str) -> str:
    """'b', 'gs://b' or 'gs://b/' -> 'gs://b' (Terraform outputs give bare bucket names)."""
    return GS + bucket.removeprefix(GS).rstrip("/")


def join(base: str, *parts: str) -> str:
    """base/part/...: with "/" for a gs:// URL, with the OS's separator for a local path."""
    return "/".join([base.rstrip("/"), *parts]) if is_gcs(base) else os.path.join(base, *parts)


def read_text(url: str) -> str | None:
    """The file's text, local or gs://; None when it does not exist.

    Raises:
        ConfigError: a gs:// URL without the vertex extra installed.
        RetryableCloudError: Cloud Storage kept failing.
    """
    if is_gcs(url):
        directory, _, name = url.rpartition("/")
        try:
            return read_gcs(directory, name)
        except ModuleNotFoundError as e:
            raise ConfigError(
                f"{url}: reading gs:// needs the vertex extra: pip install -e 'orchestrator[vertex]'"
            ) from e
    try:
        return Path(url).read_text(encoding="utf-8")
    except FileNotFoundError:
        return None


@functools.cache
def _storage_client(emulator: str | None, project: str | None):  # one per process, project (and emulator)
    from google.cloud import storage

    # The project explicitly: without it the client asks ADC for one, which an impersonated or
    # user credential may not carry (and then every read fails on a machine without gcloud config).
    return storage.Client(project=project)


def read_gcs(output_dir: str, name: str, project: str | None = None) -> str | None:
    """Read <output_dir>/<name> (e.g. final.json) from the runs bucket; None if it is not there yet.

    Args:
        output_dir: the trial's gs://bucket/prefix.
        name: file name inside it.
        project: the project the client bills and reports against (the infra outputs' project_id).
    Raises:
        RetryableCloudError: Cloud Storage kept failing (the client's own retries are spent).
    """
    from google.api_core import exceptions

    if not is_gcs(output_dir):
        raise PermanentJobError(f"output dir {output_dir!r} is not a gs:// URL")
    bucket, _, prefix = output_dir.removeprefix(GS).partition("/")
    blob = (
        _storage_client(os.environ.get("STORAGE_EMULATOR_HOST"), project)
        .bucket(bucket)
        .blob(f"{prefix.rstrip('/')}/{name}")
    )
    try:
        return blob.download_as_text()
    except exceptions.NotFound:
        return None
    except exceptions.Forbidden as e:
        client = _storage_client(os.environ.get("STORAGE_EMULATOR_HOST"), project)
        who = caller_account(getattr(client, "_credentials", None))
        raise permission_denied(f"read {output_dir}/{name}", e, "storage.objects.get", who, "") from e
    except (exceptions.TooManyRequests, exceptions.ServiceUnavailable, exceptions.InternalServerError) as e:
        raise RetryableCloudError(f"read {output_dir}/{name}: {e}") from e
