"""What `orchestrator swarm --backend vertex --dry-run [--json]` shows: the Vizier StudySpec and every
CustomJob request of the first round, built by the same code that sends them, with no network call.

Nothing here talks to Google Cloud: the SDK objects are built with anonymous credentials (no
application-default lookup, no metadata server), the image is shown by its tag because pinning it
to a digest is an Artifact Registry call, and Vizier's suggestions are shown as placeholders
(`<loss.gue_nll_weight>`) under the ids a fresh study gives its first trials (1, 2, ...).
"""

from __future__ import annotations

from typing import Any

from orchestrator.swarm_settings import SwarmSettings

_IMAGE_NOTE = "image shown by tag: a real launch pins {tag} to its sha256 digest (an Artifact Registry call)"


def _first_round(settings: SwarmSettings) -> tuple[Any, list[dict[str, Any]], list[str]]:
    """(round plan, params of each first-round trial, notes)."""
    from orchestrator.errors import ConfigError
    from orchestrator.rounds import kind_of

    plan = settings.rounds[0]
    try:
        points = kind_of(plan).points(plan, settings, [])
    except ConfigError as e:
        return plan, [], [f"round {plan.name}: {e}"]
    if points is None:
        example = {p.name: f"<{p.name}>" for p in plan.params()}
        note = f"round {plan.name}: Vizier suggests the parameters; shown as <name> placeholders"
        return plan, [example] * min(settings.parallel, settings.max_trials), [note]
    note = f"round {plan.name}: fixed design, kept in the run directory's Optuna study (not Vizier)"
    return plan, points, [note]


def dry_run_plan(settings: SwarmSettings) -> dict[str, Any]:
    """{"study": StudySpec or None, "jobs": [CustomJob, ...], "notes": [...]} in the v1 REST API's
    JSON names (camelCase, enums by name); each job parses as google.cloud.aiplatform_v1.CustomJob.

    Args:
        settings: resolved swarm settings with backend vertex.
    """
    from google.auth.credentials import AnonymousCredentials

    from orchestrator import backends
    from orchestrator.rounds import kind_of
    from orchestrator.runners.vertex import VertexRunner, api_dict
    from orchestrator.trial_command import job_spec
    from orchestrator.tuners.vizier import study_spec

    vs = backends._vertex_settings(settings)
    plan, points, notes = _first_round(settings)
    runner = VertexRunner(vs, settings.cloud_study, credentials=AnonymousCredentials())
    jobs = []
    for i, params in enumerate(points, start=1):
        trial_id = str(i)
        out = vs.trial_dir(settings.cloud_study, trial_id)
        spec = job_spec(settings, trial_id, params, 1, plan.name, plan.fixed, out)
        jobs.append(api_dict(runner.job_request(spec, image_uri=vs.image_tag_uri)))
    study = api_dict(study_spec(plan.params())) if kind_of(plan).suggests else None
    return {"study": study, "jobs": jobs, "notes": [*notes, _IMAGE_NOTE.format(tag=vs.image_tag_uri)]}


def dry_run_lines(settings: SwarmSettings) -> list[str]:
    """The same plan as text: the study's parameters and one line per CustomJob."""
    plan = dry_run_plan(settings)
    lines = []
    if plan["study"]:
        spec = plan["study"]
        metric = spec["metrics"][0]
        lines.append(
            f"Vizier study {settings.cloud_study}: {spec.get('algorithm', 'ALGORITHM_UNSPECIFIED')}, "
            f"{metric['goal']} {metric['metricId']}"
        )
        for p in spec["parameters"]:
            rng = p.get("doubleValueSpec") or p.get("integerValueSpec") or {}
            values = p.get("discreteValueSpec") or p.get("categoricalValueSpec") or {}
            shown = f"[{rng['minValue']}, {rng['maxValue']}]" if rng else str(values.get("values"))
            lines.append(f"  {p['parameterId']} {shown} {p.get('scaleType', '')}".rstrip())
    lines.append(f"CustomJobs of the first round ({len(plan['jobs'])}):")
    for job in plan["jobs"]:
        pool = job["jobSpec"]["workerPoolSpecs"][0]
        m = pool["machineSpec"]
        lines.append(
            f"  {job['displayName']}: {m['machineType']} + {m.get('acceleratorCount', 0)} x {m.get('acceleratorType', '-')}, "
            f"{pool['containerSpec']['imageUri']}, as {job['jobSpec']['serviceAccount']}, "
            f"output {job['jobSpec']['baseOutputDirectory']['outputUriPrefix']}"
        )
    lines += [f"note: {n}" for n in plan["notes"]]
    return lines
