"""Fixtures of the mocked-cloud suite: a fake clock, the fake services installed under the real SDK,
and VertexSettings as the Terraform outputs would give them."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from google.auth.credentials import AnonymousCredentials
from google.cloud import aiplatform
from orchestrator.vertex_settings import CloudCalls, RetryPolicy, VertexSettings, load_team_machines

from vertex.fakes import FakeArtifactRegistry, FakeClock, FakeCloud, FakeJobService, FakeVizierService

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
PROJECT = "zeta-swarm-test"
REGION = "us-central1"
DIGEST = "sha256:" + "ab" * 32


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def cloud(clock) -> FakeCloud:
    return FakeCloud(clock)


@pytest.fixture
def credentials():
    creds = AnonymousCredentials()
    aiplatform.init(
        project=PROJECT, location=REGION, staging_bucket="gs://zeta-swarm-test-staging", credentials=creds
    )
    return creds


@pytest.fixture
def vizier(mocker, cloud, credentials) -> FakeVizierService:
    return FakeVizierService(cloud).install(mocker)


@pytest.fixture
def job_service(mocker, cloud, credentials) -> FakeJobService:
    return FakeJobService(cloud).install(mocker)


@pytest.fixture
def registry(mocker, cloud, settings) -> FakeArtifactRegistry:
    reg = FakeArtifactRegistry(cloud).install(mocker)
    reg.push(settings.image_repository, "trainer", "latest", DIGEST)
    return reg


@pytest.fixture
def settings() -> VertexSettings:
    return VertexSettings(
        project=PROJECT,
        region=REGION,
        staging_bucket="zeta-swarm-test-staging",
        runs_bucket="zeta-swarm-test-runs",
        image_repository=f"{REGION}-docker.pkg.dev/{PROJECT}/zeta-swarm",
        trainer_service_account=f"zeta-trainer@{PROJECT}.iam.gserviceaccount.com",
        machines=load_team_machines(CONFIGS / "teams"),
    )


@pytest.fixture
def calls(clock) -> CloudCalls:
    return CloudCalls(
        RetryPolicy(attempts=5, base_s=2.0, cap_s=30.0), sleeper=clock.sleep, rng=random.Random(7)
    )
