"""The playbook's record of finished rounds (RUN_DIR/playbook.json) and a promote round's design
read from it: what the promote round kind (orchestrator.rounds.Promotion) needs at run time,
apart from the playbook's schema and planning (orchestrator.playbook), which builds on the
round kinds."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from orchestrator.errors import ConfigError
from orchestrator.report.playbook_rank import EPOCHS, SEED, config_of, failed_gates
from orchestrator.round_plan import RoundPlan

PLAYBOOK_FILE = "playbook.json"
FULL = "-full"  # a promote round's name: its small round's, with this suffix


def promotion_points(settings, plan: RoundPlan) -> list[dict[str, Any]]:
    """A promote round's design, read from the run directory: its small round's top configurations
    (completed trials; those that pass every gate first, then by the tune objective) x seeds, on
    the full budget.

    Raises:
        ConfigError: the small round has not finished (no record of it in RUN_DIR/playbook.json).
    """
    from orchestrator.run_files import read_snapshot

    pb = settings.playbook
    small = plan.name.removesuffix(FULL)
    ids = read_record(settings.run_dir).get(small, {}).get("trials")
    if ids is None:
        raise ConfigError(
            f"promotes the top {pb['top']} of round {small} x {pb['seeds']} seeds at {pb['full_epochs']} "
            f"epochs once {small} has finished"
        )
    by_id = {t["id"]: t for t in read_snapshot(settings.run_dir)["trials"]}
    done = [
        by_id[i]
        for i in ids
        if i in by_id and by_id[i]["state"] == "COMPLETED" and by_id[i].get("value") is not None
    ]
    ranked = sorted(done, key=lambda t: (bool(failed_gates(t.get("metrics"), pb["gates"])), t["value"]))
    configs: list[dict[str, Any]] = []
    for t in ranked:
        cfg = config_of(t["params"])
        if cfg not in configs:
            configs.append(cfg)
        if len(configs) == pb["top"]:
            break
    return [{**cfg, SEED: s, EPOCHS: pb["full_epochs"]} for cfg in configs for s in range(pb["seeds"])]


def record_round(run_dir: str | Path, name: str, kind: str, trial_ids: Sequence[str]) -> None:
    """Add (or replace) a finished round's trials in RUN_DIR/playbook.json, in round order."""
    from orchestrator.atomic_files import write_text_atomic

    body = read_record(run_dir)
    body[name] = {"kind": kind, "trials": list(trial_ids)}
    write_text_atomic(Path(run_dir) / PLAYBOOK_FILE, json.dumps({"rounds": body}, indent=1) + "\n")


def read_record(run_dir: str | Path) -> dict[str, Any]:
    """RUN_DIR/playbook.json's rounds (name -> kind, trial ids), in round order; {} without one."""
    try:
        raw = json.loads((Path(run_dir) / PLAYBOOK_FILE).read_text())
    except (OSError, ValueError):
        return {}
    rounds = raw.get("rounds") if isinstance(raw, dict) else None
    return rounds if isinstance(rounds, dict) else {}
