"""Static checks of infra/: formatting, and the security and wiring properties read from the parsed HCL."""

from __future__ import annotations

import json
import re
import subprocess

from infra_stack import INFRA, REPO, TERRAFORM, Stack, load_stack, parse_hcl, tool_env
from orchestrator.infra_outputs import REQUIRED

BASIC_ROLES = {"roles/owner", "roles/editor", "roles/viewer"}
FIXTURE = REPO / "tests" / "fixtures" / "infra-outputs.json"


def walk_strings(value):
    """Every string inside a parsed block, however deeply nested."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from walk_strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from walk_strings(v)


def only(block):
    """A nested block parses as a list of one dict; return that dict."""
    assert isinstance(block, list) and len(block) == 1, block
    return block[0]


# --- property checks, written as functions so the tests below can also feed them broken stacks ---


def bucket_problems(stack: Stack) -> list[str]:
    problems = []
    for b in stack.of_type("google_storage_bucket"):
        if b.body.get("public_access_prevention") != "enforced":
            problems.append(f'{b.address}: public_access_prevention is not "enforced"')
        if b.body.get("uniform_bucket_level_access") is not True:
            problems.append(f"{b.address}: uniform_bucket_level_access is not true")
        if b.body.get("force_destroy") is not False:
            problems.append(f"{b.address}: force_destroy must be set to false explicitly")
        if "soft_delete_policy" not in b.body:
            problems.append(f"{b.address}: no soft_delete_policy")
    return problems


def basic_role_grants(stack: Stack) -> list[str]:
    return [
        f"{r.address}: {s}"
        for r in stack.resources + stack.data
        for s in walk_strings(r.body)
        if any(re.search(rf"(^|[^\w.]){re.escape(role)}($|[^\w.])", s) for role in BASIC_ROLES)
    ] + [f"locals: {s}" for s in walk_strings(stack.locals) if s in BASIC_ROLES]


def act_as_problems(stack: Stack) -> list[str]:
    """serviceAccountUser may appear only as a google_service_account_iam_member on the trainer account."""
    problems = []
    for r in stack.resources:
        if "roles/iam.serviceAccountUser" not in list(walk_strings(r.body)):
            continue
        if r.type != "google_service_account_iam_member":
            problems.append(f"{r.address}: serviceAccountUser granted by {r.type}")
        elif r.body.get("service_account_id") != "${google_service_account.trainer.name}":
            problems.append(
                f"{r.address}: serviceAccountUser on {r.body.get('service_account_id')}, not the trainer"
            )
    return problems


# --- tests -----------------------------------------------------------------------------------


def test_terraform_fmt_is_clean():
    result = subprocess.run(
        [TERRAFORM, "fmt", "-check", "-recursive", "-diff", str(INFRA)],
        capture_output=True,
        text=True,
        env=tool_env(),
        timeout=60,
    )
    assert result.returncode == 0, f"terraform fmt would change:\n{result.stdout}{result.stderr}"


def test_one_file_per_concern(stack):
    expected = {
        "versions.tf", "providers.tf", "variables.tf", "apis.tf", "storage.tf", "registry.tf",
        "service-accounts.tf", "iam.tf", "quotas.tf", "budget.tf", "outputs.tf", "tensorboard.tf",
    }  # fmt: skip
    assert set(stack.files) == expected
    versions = only(stack.files["versions.tf"]["terraform"])
    assert versions["required_version"] == ">= 1.6"
    google = only(versions["required_providers"])["google"]
    assert google["source"] == "hashicorp/google"
    # The range must start at or after 5.23, where google_cloud_quotas_quota_preference appeared.
    lower = re.match(r">=\s*(\d+)\.(\d+)", google["version"])
    assert lower and (int(lower[1]), int(lower[2])) >= (5, 23), google["version"]
    # 7.9: no preferred_value permadiff; 6.17: "7d"/"90d" cleanup durations accepted.
    assert google["version"] == ">= 7.9, < 8.0"
    assert "<" in google["version"], "pin an upper bound so a major release is not picked up silently"


def test_every_bucket_is_private_uniform_and_kept(stack):
    names = {b.name for b in stack.of_type("google_storage_bucket")}
    assert {"data", "runs", "staging", "access_logs"} <= names
    assert bucket_problems(stack) == []


def test_bucket_roles_data_versioned_runs_expire(stack):
    assert only(stack.get("google_storage_bucket", "data").body["versioning"])["enabled"] is True
    runs = stack.get("google_storage_bucket", "runs").body
    assert only(runs["versioning"])["enabled"] is True
    actions = [only(rule["action"])["type"] for rule in runs["lifecycle_rule"]]
    assert "Delete" in actions and "SetStorageClass" in actions
    for name in ("data", "runs", "staging"):
        logging = only(stack.get("google_storage_bucket", name).body["logging"])
        assert logging["log_bucket"] == "${google_storage_bucket.access_logs.name}", name


def test_no_keys_no_authoritative_iam(stack):
    types = {r.type for r in stack.resources + stack.data}
    assert "google_service_account_key" not in types
    authoritative = {t for t in types if t.endswith("_iam_policy") or t.endswith("_iam_binding")}
    assert authoritative == set(), "authoritative IAM would strip grants made outside this stack"


def test_no_basic_roles(stack):
    roles = {r.body["role"] for r in stack.resources if "role" in r.body}
    assert "roles/aiplatform.user" in roles  # the scan below really sees the role strings
    assert basic_role_grants(stack) == []


def test_service_account_user_only_on_trainer(stack):
    grants = [
        r
        for r in stack.of_type("google_service_account_iam_member")
        if r.body["role"] == "roles/iam.serviceAccountUser"
    ]
    assert len(grants) == 1
    assert grants[0].body["member"] == "${google_service_account.orchestrator.member}"
    assert act_as_problems(stack) == []


def test_trainer_storage_is_bucket_scoped(stack):
    trainer = {
        (r.body["bucket"], r.body["role"])
        for r in stack.of_type("google_storage_bucket_iam_member")
        if r.body["member"] == "${google_service_account.trainer.member}"
    }
    assert trainer == {
        ("${google_storage_bucket.data.name}", "roles/storage.objectUser"),  # makes datasets (zeros)
        ("${google_storage_bucket.runs.name}", "roles/storage.objectUser"),
    }
    # At project level only with a TensorBoard, whose event-file uploads run as the trainer.
    project_grants = [
        r
        for r in stack.of_type("google_project_iam_member")
        if r.body["member"] == "${google_service_account.trainer.member}"
    ]
    assert [(r.name, r.body["role"], r.body["count"]) for r in project_grants] == [
        ("trainer_tensorboard_writer", "roles/aiplatform.user", "${var.tensorboard ? 1 : 0}")
    ]


def test_an_optional_tensorboard_for_the_trials(stack):
    board = stack.get("google_vertex_ai_tensorboard", "trials").body
    assert board["count"] == "${var.tensorboard ? 1 : 0}" and board["region"] == "${var.region}"
    assert stack.variables["tensorboard"]["default"] is False
    assert (
        stack.outputs["tensorboard"]["value"]
        == '${var.tensorboard ? google_vertex_ai_tensorboard.trials[0].id : ""}'
    )


def test_the_orchestrator_reads_the_image_and_no_grant_waits_for_a_service_agent(stack):
    reader = stack.get("google_artifact_registry_repository_iam_member", "orchestrator_image_reader").body
    assert reader["role"] == "roles/artifactregistry.reader"
    assert reader["member"] == "${google_service_account.orchestrator.member}"
    assert reader["repository"] == "${google_artifact_registry_repository.images.name}"
    # Vertex pulls as its custom code agent, whose own project role already allows it; a grant to
    # that agent would fail the first apply on a fresh project, where it does not exist yet.
    members = [r.body.get("member", "") for r in stack.resources if r.type.endswith("_iam_member")]
    assert not any("gcp-sa-aiplatform" in m or "vertex_custom_code_agent" in m for m in members)


def test_quota_preferences_cover_gpus_and_their_vcpu_families(stack):
    pref = stack.get("google_cloud_quotas_quota_preference", "quota").body
    assert pref["service"] == "aiplatform.googleapis.com"
    assert pref["dimensions"] == {"region": "${var.region}"}
    assert pref["parent"] == "projects/${var.project_id}"
    assert pref["quota_id"] == "${each.value.quota_id}"
    assert only(pref["quota_config"])["preferred_value"] == "${each.value.preferred}"
    assert pref["for_each"] == "${local.quota_preferences}"
    assert pref["contact_email"] == "${var.contact_email}"
    requests = stack.locals["quota_requests"]
    assert {k: v["preferred"] for k, v in requests.items()} == {
        "l4": "${var.l4_quota}",
        "a100_80gb": "${var.a100_80gb_quota}",
        "g2_vcpus": "${var.l4_quota * local.vcpus_per_gpu.l4}",
        "a2_vcpus": "${var.a100_80gb_quota * local.vcpus_per_gpu.a100_80gb}",
    }
    assert requests["g2_vcpus"]["quota_id"] == "CustomModelTrainingG2CPUsPerProjectPerRegion"
    assert requests["a2_vcpus"]["quota_id"] == "CustomModelTrainingA2CPUsPerProjectPerRegion"
    ids = stack.locals["gpu_quota_ids"]  # Spot draws on the preemptible GPU quotas
    assert ids["l4"] == (
        '${var.spot ? "CustomModelTrainingPreemptibleL4GPUsPerProjectPerRegion" : '
        '"CustomModelTrainingL4GPUsPerProjectPerRegion"}'
    )
    assert "CustomModelTrainingPreemptibleA10080GBGPUsPerProjectPerRegion" in ids["a100_80gb"]
    assert stack.locals["vcpus_per_gpu"] == {"l4": 8, "a100_80gb": 12}


def test_quota_defaults_are_sized_from_the_cloud_profiles_parallelism(stack):
    """The GPUs requested by default run each phase of the cloud profile fully parallel."""
    import yaml

    configs = REPO / "configs"
    profile = yaml.safe_load((configs / "profiles" / "cloud.yaml").read_text())
    teams = {
        t: yaml.safe_load((configs / "teams" / f"{t}.yaml").read_text()) for t in ("minibatch", "fullbatch")
    }
    assert (teams["minibatch"]["machine_type"], teams["fullbatch"]["machine_type"]) == (
        "g2-standard-8",
        "a2-ultragpu-1g",
    )
    widest = max(p["parallel"] for p in profile["phases"].values())
    champ = profile["phases"][3]
    assert (
        stack.variables["l4_quota"]["default"] >= widest - champ["replicas"]
    )  # phase 3: the control runs on A100s
    assert stack.variables["l4_quota"]["default"] >= profile["phases"][2]["parallel"]
    assert stack.variables["a100_80gb_quota"]["default"] >= champ["replicas"]  # the control's seeds at once


def test_budget_only_with_billing_account(stack):
    assert stack.variables["billing_account"]["default"] is None
    assert stack.locals["budget_enabled"] == "${var.billing_account != null}"
    for type_ in ("google_billing_budget", "google_monitoring_notification_channel"):
        (resource,) = stack.of_type(type_)
        assert resource.body["count"] == "${local.budget_enabled ? 1 : 0}", resource.address
    budget = stack.get("google_billing_budget", "swarm").body
    assert budget["billing_account"] == "${var.billing_account}"
    assert (
        "threshold_rules" in budget
        and budget["dynamic"][0]["threshold_rules"]["for_each"] == "${var.budget_thresholds}"
    )


def test_apis_enabled_and_left_on_destroy(stack):
    api = stack.get("google_project_service", "enabled").body
    assert api["disable_on_destroy"] is False
    services = stack.locals["services"]
    for service in (
        "aiplatform",
        "storage",
        "artifactregistry",
        "cloudquotas",
        "iam",
        "cloudbuild",
        "billingbudgets",
    ):
        assert f'"{service}.googleapis.com"' in services, service


def test_registry_is_docker_with_cleanup(stack):
    repo = stack.get("google_artifact_registry_repository", "images").body
    assert repo["format"] == "DOCKER"
    policies = {p["id"]: p["action"] for p in repo["cleanup_policies"]}
    assert policies["keep-recent"] == "KEEP" and "DELETE" in policies.values()


def test_outputs_cover_what_the_orchestrator_reads(stack):
    for name in REQUIRED:
        assert name in stack.outputs, (
            f"outputs.tf lacks {name}, which orchestrator.infra_outputs.REQUIRED needs"
        )
        out = stack.outputs[name]
        assert out.get("description"), f"output {name} has no description"
        assert out.get("depends_on"), f"output {name} must depend on the IAM that makes it usable"


def test_variables_are_typed_described_validated(stack):
    for name, var in stack.variables.items():
        assert var.get("description"), f"variable {name} has no description"
        assert var.get("type"), f"variable {name} has no type"
    for name in (
        "project_id", "region", "prefix", "l4_quota", "a100_80gb_quota", "billing_account",
        "budget_amount", "budget_currency", "contact_email", "labels", "orchestrator_impersonators",
    ):  # fmt: skip
        validations = stack.variables[name].get("validation")
        assert validations, f"variable {name} has no validation"
        for v in validations:
            assert len(v["error_message"]) > 30, f"variable {name}: say what to do in error_message"
    assert stack.variables["region"]["default"] == "us-central1"


# --- the checks catch what they are for: feed them a broken copy ----------------------------


def _broken_stack(tmp_path, edit) -> Stack:
    for path in INFRA.glob("*.tf"):
        (tmp_path / path.name).write_text(edit(path.name, path.read_text()))
    return load_stack(tmp_path)


def test_checks_catch_public_bucket_basic_role_and_project_act_as(tmp_path):
    def edit(name, text):
        if name == "storage.tf":
            text = text.replace(
                'public_access_prevention    = "enforced"', 'public_access_prevention    = "inherited"', 1
            )
        if name == "iam.tf":
            text = text.replace('role    = "roles/logging.logWriter"', 'role    = "roles/editor"')
            text += (
                '\nresource "google_project_iam_member" "bad" {\n  project = var.project_id\n'
                '  role    = "roles/iam.serviceAccountUser"\n  member  = google_service_account.orchestrator.member\n}\n'
            )
        return text

    broken = _broken_stack(tmp_path, edit)
    assert [p.split(":")[0] for p in bucket_problems(broken)] == [
        "google_storage_bucket.access_logs (storage.tf)"
    ]
    assert len(basic_role_grants(broken)) == 1
    assert act_as_problems(broken) == [
        "google_project_iam_member.bad (iam.tf): serviceAccountUser granted by google_project_iam_member"
    ]


# --- the recorded outputs fixture is what this stack would print ------------------------------


def _resolve(stack: Stack, template: str, variables: dict[str, str]) -> str:
    """Substitute ${var.x}, ${local.a.b} and ${TYPE.NAME.ATTR} (config attributes) until none is left."""

    def one(match: re.Match) -> str:
        ref = match.group(1).strip()
        parts = ref.split(".")
        if parts[0] == "var":
            return variables[parts[1]]
        if parts[0] == "local":
            value = stack.locals[parts[1]]
            for key in parts[2:]:
                value = value[key]
            return value
        resource = next(r for r in stack.resources if r.type == parts[0] and r.name == parts[1])
        attr = parts[2]
        if resource.type == "google_service_account" and attr == "email":
            account = _resolve(stack, resource.body["account_id"], variables)
            return f"{account}@{variables['project_id']}.iam.gserviceaccount.com"
        return resource.body[attr]

    for _ in range(10):
        resolved = re.sub(r"\$\{([a-z_][a-z0-9_.]*)\}", one, template)
        if resolved == template:
            return resolved
        template = resolved
    raise AssertionError(f"unresolved: {template}")


def test_fixture_matches_the_stack_naming(stack):
    variables = {"project_id": "zeta-swarm-test", "region": "us-central1", "prefix": "zs"}
    recorded = json.loads(FIXTURE.read_text())
    for name in REQUIRED:
        expected = _resolve(stack, stack.outputs[name]["value"], variables)
        assert recorded[name]["value"] == expected, name
        assert recorded[name]["type"] == "string" and recorded[name]["sensitive"] is False
    assert set(recorded) <= set(stack.outputs), "the fixture records outputs outputs.tf does not declare"


def test_longest_names_fit_their_limits(stack):
    # The longest prefix and project ID the validations allow must still give valid names.
    variables = {"project_id": "p" * 30, "region": "us-central1", "prefix": "z" * 16}
    for key, template in stack.locals["bucket_names"].items():
        assert len(_resolve(stack, template, variables)) <= 63, key
    for key, template in stack.locals["service_account_ids"].items():
        assert 6 <= len(_resolve(stack, template, variables)) <= 30, key
    assert "{0,14}" in stack.variables["prefix"]["validation"][0]["condition"]


def test_resources_reference_only_declared_things(stack):
    declared = {(r.type, r.name) for r in stack.resources}
    for r in stack.resources:
        for s in walk_strings(r.body):
            for type_, name in re.findall(r"\b(google_[a-z_]+)\.([a-z_0-9]+)\b", s):
                if type_ == "google_project" and name == "this":
                    continue
                assert (type_, name) in declared, f"{r.address} references undeclared {type_}.{name}"


def test_terraform_test_files_refer_to_real_things(stack):
    """The .tftest.hcl files cannot run without the provider here; at least keep them in step with the stack."""
    declared = {(r.type, r.name) for r in stack.resources}
    runs = 0
    for path in sorted((INFRA / "tests").glob("*.tftest.hcl")):
        parsed = parse_hcl(path)
        assert "google" in only(parsed["mock_provider"]), f"{path.name}: the google provider must be mocked"
        for block in parsed.get("variables", []):
            assert set(block) <= set(stack.variables), (
                f"{path.name}: unknown variables {set(block) - set(stack.variables)}"
            )
        for run in parsed["run"]:
            for name, body in run.items():
                runs += 1
                assert body["command"] in {"plan", "apply"}, f"{path.name}: run {name}"
                for block in body.get("variables", []):
                    assert set(block) <= set(stack.variables), (
                        f"{path.name}: run {name} sets unknown variables"
                    )
                for expected in body.get("expect_failures", []):
                    var = expected.removeprefix("${var.").removesuffix("}")
                    assert stack.variables[var].get("validation"), (
                        f"{path.name}: run {name} expects {var} to fail"
                    )
                for check in body.get("assert", []):
                    assert check["error_message"], f"{path.name}: run {name} assert without message"
                    for type_, res in re.findall(r"\b(google_[a-z_]+)\.([a-z_0-9]+)\b", check["condition"]):
                        assert (type_, res) in declared, (
                            f"{path.name}: run {name} asserts on missing {type_}.{res}"
                        )
                    for out in re.findall(r"\boutput\.([a-z_0-9]+)", check["condition"]):
                        assert out in stack.outputs, (
                            f"{path.name}: run {name} asserts on missing output {out}"
                        )
    assert runs >= 15
