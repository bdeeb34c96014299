"""A trial's `trainer train` command: which value each trainer key gets, and in what order the
config files and the tuner may set it.

The whole precedence, lowest first (a later layer wins for every key it sets):

  profile        configs/profiles/<profile>.yaml `overrides`
  profile_phase  the profile's `phases.<N>.overrides`
  phase_fixed    configs/phases/phase<N>.yaml `fixed`
  lock           phase 1's winners (runs/phase1-<team>/lock.yaml, else the phase's lock defaults)
  team           the profile's `team_overrides.<team>`, then the team's train.mode and train.epochs
  round_fixed    the round's `fixed`
  trial          the trial's params (what the tuner or the design chose)

`data.path` (the dataset every trial reads) is set first, below every layer. `layered` is the
one place this order is written; the swarm-wide layers are kept apart in
SwarmSettings.override_layers and merged here with the team's, the round's and the trial's.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from orchestrator.runners.base import JobSpec
from orchestrator.values import set_arg

if TYPE_CHECKING:
    from orchestrator.swarm_settings import SwarmSettings

PRECEDENCE = ("profile", "profile_phase", "phase_fixed", "lock", "team", "round_fixed", "trial")


def layered(**layers: Mapping[str, Any]) -> dict[str, Any]:
    """Merge override layers by PRECEDENCE: each key takes the value of the highest layer that sets it.

    Args:
        layers: layer name (one of PRECEDENCE) -> its overrides; a layer left out sets nothing.

    Raises:
        TypeError: a layer name not in PRECEDENCE.
    """
    unknown = sorted(set(layers) - set(PRECEDENCE))
    if unknown:
        raise TypeError(f"unknown override layer(s) {unknown}; the layers are {', '.join(PRECEDENCE)}")
    out: dict[str, Any] = {}
    for name in PRECEDENCE:
        out.update(layers.get(name) or {})
    return out


def trainer_values(
    settings: SwarmSettings, params: Mapping[str, Any], round_fixed: Mapping[str, Any]
) -> dict:
    """Every `--set` of a trial: data.path, then the layers of PRECEDENCE."""
    team = settings.team_machines[settings.team_of(params)]
    values: dict[str, Any] = {"data.path": settings.data_path}
    values.update(
        layered(**settings.override_layers, team=team.overrides, round_fixed=round_fixed, trial=params)
    )
    return values


def trainer_args(
    settings: SwarmSettings, params: Mapping[str, Any], round_fixed: Mapping[str, Any], output_dir: str
) -> tuple[str, ...]:
    """`train --config <team's config> --set key=value ... --output-dir <output_dir>`: the argv after
    the trainer executable (the local runner prefixes it, the Vertex image's entrypoint is it)."""
    team = settings.team_machines[settings.team_of(params)]
    args = ["train", "--config", team.trainer_config]
    for key, value in trainer_values(settings, params, round_fixed).items():
        args += ["--set", set_arg(key, value)]
    args += ["--output-dir", output_dir]
    return tuple(args)


def job_spec(
    settings: SwarmSettings,
    trial_id: str,
    params: Mapping[str, Any],
    attempt: int,
    round_name: str,
    round_fixed: Mapping[str, Any],
    output_dir: str,
) -> JobSpec:
    """The runner's description of one attempt of a trial."""
    return JobSpec(
        study=settings.study,
        trial_id=trial_id,
        attempt=attempt,
        phase=settings.phase,
        team=settings.team_of(dict(params)),
        trainer_args=trainer_args(settings, params, round_fixed, output_dir),
        output_dir=output_dir,
        labels={"round": round_name.lower()},
    )
