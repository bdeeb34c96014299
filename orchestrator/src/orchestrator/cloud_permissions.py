"""A cloud call refused for a missing permission, said in one line: the call, the permission, the
account it ran as and the role that grants it (infra/iam.tf). Both cloud callers use it: the
Vertex backends' calls (orchestrator.vertex_settings.CloudCalls) and the gs:// reader
(orchestrator.storage). It imports nothing of the orchestrator but its errors, and no cloud SDK.
"""

from __future__ import annotations

import re
from typing import Any

from orchestrator.errors import ConfigError

# The permission each kind of call needs and the role that grants it to the orchestrator's account
# (infra/iam.tf). Keyed by permission; a PermissionDenied names one in its message, else the call's.
PERMISSION_ROLES = {
    "artifactregistry.tags.get": "roles/artifactregistry.reader",
    "artifactregistry.dockerimages.get": "roles/artifactregistry.reader",
    "aiplatform.customJobs.create": "roles/aiplatform.user",
    "aiplatform.customJobs.list": "roles/aiplatform.user",
    "aiplatform.customJobs.get": "roles/aiplatform.user",
    "aiplatform.customJobs.cancel": "roles/aiplatform.user",
    "aiplatform.studies.create": "roles/aiplatform.user",
    "aiplatform.studies.get": "roles/aiplatform.user",
    "aiplatform.trials.list": "roles/aiplatform.user",
    "aiplatform.trials.get": "roles/aiplatform.user",
    "aiplatform.trials.create": "roles/aiplatform.user",
    "aiplatform.trials.update": "roles/aiplatform.user",
    "aiplatform.trials.stop": "roles/aiplatform.user",
    "iam.serviceAccounts.actAs": "roles/iam.serviceAccountUser (on the trainer account)",
    "storage.objects.get": "roles/storage.objectViewer (on the runs bucket)",
}
_PERMISSION_IN_MESSAGE = re.compile(
    r"\b((?:aiplatform|artifactregistry|iam|storage)\.[A-Za-z]+\.[A-Za-z]+)\b"
)


def caller_account(credentials: Any) -> str:
    """Who a call ran as, as far as the credentials say without a network call."""
    email = getattr(credentials, "service_account_email", None)
    if isinstance(email, str) and "@" in email:
        return email
    return "the application-default credentials"


def permission_denied(
    what: str, error: Exception, permission: str, account: str, expected: str
) -> ConfigError:
    """One line for a PermissionDenied: the call, the permission, the account and the granting role.

    Args:
        what: the call, e.g. "look up IMAGE".
        error: the google.api_core PermissionDenied / Forbidden.
        permission: what the call needs; a permission named in the error's message wins.
        account: who the call ran as (caller_account).
        expected: the orchestrator service account of the infra outputs ("" if unknown).
    """
    named = _PERMISSION_IN_MESSAGE.search(str(getattr(error, "message", error)))
    if named and named.group(1) in PERMISSION_ROLES:
        permission = named.group(1)
    role = PERMISSION_ROLES.get(permission, "a role that holds it")
    fix = "re-apply infra/ (`make infra-apply`)"
    if expected and account != expected:
        fix = f"run as {expected}, which infra/iam.tf grants it (docs/infra.md, step 4), or {fix}"
    return CloudPermissionDenied(
        f"permission denied: {what}: {account} lacks {permission}, which {role} grants; {fix}. "
        "Nothing was lost: suggested trials wait in the study for the next start"
    )


class CloudPermissionDenied(ConfigError):
    """A cloud call was refused for a missing permission: grant it and start again. Exit 2."""
