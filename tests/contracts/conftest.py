"""The Vertex fakes' fixtures (tests/vertex/conftest.py), so the Vizier and CustomJob backends can be
opened here; each backend takes only the fixtures it asks for (backends.py)."""

from vertex.conftest import (  # noqa: F401 - fixtures, used by name
    calls,
    clock,
    cloud,
    credentials,
    job_service,
    registry,
    settings,
    vizier,
)
