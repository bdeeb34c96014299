"""The cloud settings the swarm needs, read from the saved outputs of the infra/ Terraform stack.

`make infra-outputs` writes `terraform -chdir=infra output -json` to a file:
``{"runs_bucket": {"value": "zs-proj-runs", "type": "string", "sensitive": false}, ...}``.
The orchestrator reads it through `load_infra_outputs`, which checks that every setting in
REQUIRED is there and well formed; a flag may override any one setting. Nothing here talks to
the cloud, so a bad file fails before a single job is launched.

Run as a module to check a file or read one output (used by `make image`):
``python -m orchestrator.infra_outputs infra-outputs.json [--get image_repository]``.
"""

from __future__ import annotations

import json
import os
import re
import sys
from dataclasses import dataclass, fields
from pathlib import Path

from orchestrator.errors import ConfigError

# Environment variable naming the outputs file when no --infra-outputs flag is given.
ENV_VAR = "ZETA_SWARM_INFRA_OUTPUTS"
# Where `make infra-outputs` writes the file: the repository root. Used when neither the flag nor
# ENV_VAR names one and the file exists.
DEFAULT_FILE = Path(__file__).resolve().parents[3] / "infra-outputs.json"
PATH_FLAG = "--infra-outputs"
HOW_TO_WRITE = "written by `make infra-outputs` after `terraform -chdir=infra apply`"

# Every output of infra/outputs.tf the orchestrator uses; a test checks each is declared there.
REQUIRED = (
    "project_id",
    "region",
    "data_bucket",
    "runs_bucket",
    "staging_bucket",
    "image_repository",
    "trainer_service_account",
    "orchestrator_service_account",
)

# Outputs the orchestrator uses when they are there and not empty (older stacks lack them).
OPTIONAL = ("tensorboard",)
_TENSORBOARD = re.compile(r"projects/[^/]+/locations/[a-z0-9-]+/tensorboards/[0-9]+")

# The CLI flag that overrides each setting, named in errors so the message says what to pass.
OVERRIDE_FLAGS = {name: "--" + name.replace("_", "-") for name in REQUIRED}

_BUCKET = (r"[a-z0-9][a-z0-9._-]{1,220}[a-z0-9]", "a bucket name such as zs-my-project-runs, without gs://")
_ACCOUNT = (
    r"[^@\s/]+@[^@\s/]+\.[a-z]{2,}",
    "a service account e-mail such as zs-trainer@PROJECT.iam.gserviceaccount.com",
)
_FORMATS = {
    "project_id": (r"[a-z][a-z0-9-]{4,28}[a-z0-9]", "a project ID such as zeta-swarm-test"),
    "region": (r"[a-z]+-[a-z]+[0-9]+", "a region such as us-central1"),
    "data_bucket": _BUCKET,
    "runs_bucket": _BUCKET,
    "staging_bucket": _BUCKET,
    # No scheme, no tag or digest: VertexSettings.image_tag_uri appends /<image_package>:<tag>.
    "image_repository": (
        r"[a-z0-9.-]+(:[0-9]+)?(/[a-z0-9._-]+)+",
        "a repository path such as us-central1-docker.pkg.dev/PROJECT/REPO, without https:// or a tag",
    ),
    "trainer_service_account": _ACCOUNT,
    "orchestrator_service_account": _ACCOUNT,
}


@dataclass(frozen=True)
class InfraSettings:
    """Where the swarm's cloud resources live; one field per name in REQUIRED.

    Bucket fields are bare names (no gs://); service accounts are e-mails.
    """

    project_id: str
    region: str
    data_bucket: str
    runs_bucket: str
    staging_bucket: str
    image_repository: str
    trainer_service_account: str
    orchestrator_service_account: str
    tensorboard: str = ""  # projects/P/locations/R/tensorboards/N, or "" (none)


def read_outputs(path: str | os.PathLike[str]) -> dict[str, object]:
    """Read a `terraform output -json` file into {output name: value}.

    Args:
        path: the file, as written by `make infra-outputs`.

    Raises:
        ConfigError: the file cannot be read, is not JSON, or is not in that format.
    """
    where = f"infra outputs file {path}"
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(f"{where} cannot be read ({e.strerror or e}); it is {HOW_TO_WRITE}") from e
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as e:
        raise ConfigError(
            f"{where} is not valid JSON (line {e.lineno}, column {e.colno}: {e.msg}); regenerate it with `make infra-outputs`"
        ) from e
    if not isinstance(raw, dict):
        raise ConfigError(
            f"{where} must hold the object printed by `terraform output -json` "
            f'({{"name": {{"value": ...}}}}), not a JSON {type(raw).__name__}'
        )
    values: dict[str, object] = {}
    for name, entry in raw.items():
        if not isinstance(entry, dict) or "value" not in entry:
            raise ConfigError(
                f'{where}: output {name!r} must be an object with a "value" key, as printed by `terraform output -json`'
            )
        values[name] = entry["value"]
    return values


def outputs_file(path: str | None) -> tuple[str | None, str]:
    """Which outputs file the settings come from, and why: (path or None, where it was named).

    Args:
        path: the --infra-outputs flag; None falls back to ENV_VAR, then to DEFAULT_FILE if it exists.
    """
    if path:
        return path, f"from {PATH_FLAG}"
    if os.environ.get(ENV_VAR):
        return os.environ[ENV_VAR], f"from ${ENV_VAR}"
    if DEFAULT_FILE.is_file():
        return str(DEFAULT_FILE), "the default, written by `make infra-outputs`"
    return None, f"none: no {PATH_FLAG}, no ${ENV_VAR} and no {DEFAULT_FILE}"


def load_infra_outputs(path: str | None, overrides: dict[str, str | None]) -> InfraSettings:
    """Resolve the swarm's cloud settings from the outputs file and flag overrides.

    Args:
        path: the outputs file; None falls back to the ZETA_SWARM_INFRA_OUTPUTS environment
            variable, then to DEFAULT_FILE (what `make infra-outputs` wrote) if it exists; with
            none of them every setting must come from overrides.
        overrides: setting name (from REQUIRED) -> value from a flag; None means not given.
            A given value wins over the file.

    Returns:
        The settings, each checked for shape (bucket names without gs://, e-mails, ...), and
        the optional `tensorboard` output ("" when absent).

    Raises:
        ConfigError: one line naming the file and every setting that is missing, empty or
            malformed, and the flag or file that would supply it.
        ValueError: an override names a setting not in REQUIRED (a programming error).
    """
    unknown = sorted(set(overrides) - set(REQUIRED))
    if unknown:
        raise ValueError(
            f"unknown infra settings in overrides: {', '.join(unknown)}; known: {', '.join(REQUIRED)}"
        )
    given = {name: value for name, value in overrides.items() if value is not None}

    path, _ = outputs_file(path)
    from_file = read_outputs(path) if path is not None else {}
    where = f"infra outputs file {path}" if path is not None else "infra settings"

    resolved: dict[str, str] = {}
    missing: list[str] = []
    for name in REQUIRED:
        origin = f"flag {OVERRIDE_FLAGS[name]}" if name in given else where
        value = given.get(name, from_file.get(name))
        if value is None or value == "":
            missing.append(name)
            continue
        if not isinstance(value, str):
            raise ConfigError(f"{origin}: {name} must be a string, got {json.dumps(value)}")
        pattern, expected = _FORMATS[name]
        if not re.fullmatch(pattern, value):
            raise ConfigError(f"{origin}: {name} = {value!r} is not {expected}")
        resolved[name] = value

    if missing:
        flags = ", ".join(OVERRIDE_FLAGS[name] for name in missing)
        if path is None:
            source = f"run `make infra-outputs` (it writes {DEFAULT_FILE.name}), pass {PATH_FLAG} FILE or set {ENV_VAR}"
        else:
            source = "re-run `make infra-outputs` after `terraform -chdir=infra apply`"
        raise ConfigError(
            f"{where}: missing or empty setting(s) {', '.join(missing)}: {source}, or pass {flags}"
        )
    board = from_file.get("tensorboard") or ""
    if board and not (isinstance(board, str) and _TENSORBOARD.fullmatch(board)):
        raise ConfigError(f"{where}: tensorboard = {board!r} is not projects/P/locations/R/tensorboards/ID")
    return InfraSettings(**resolved, tensorboard=board)


def main(argv: list[str] | None = None) -> int:
    """Check an outputs file, or print one output from it (for shell scripts).

    Args:
        argv: ``FILE [--get NAME]``; defaults to sys.argv[1:].

    Returns:
        0 when the file is complete (and NAME exists), 2 with a one-line error otherwise.
    """
    import argparse

    parser = argparse.ArgumentParser(prog="python -m orchestrator.infra_outputs", description=main.__doc__)
    parser.add_argument("file", help="outputs file written by `make infra-outputs`")
    parser.add_argument("--get", metavar="NAME", help="print this output's value instead of the settings")
    args = parser.parse_args(argv)
    try:
        if args.get is None:
            settings = load_infra_outputs(args.file, {})
            for field in fields(settings):
                print(f"{field.name} = {getattr(settings, field.name)}")
            return 0
        values = read_outputs(args.file)
        if values.get(args.get) in (None, ""):
            raise ConfigError(
                f"infra outputs file {args.file}: output {args.get!r} is missing or empty; "
                "re-run `make infra-outputs` after `terraform -chdir=infra apply`"
            )
        value = values[args.get]
        print(value if isinstance(value, str) else json.dumps(value))
        return 0
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code


if __name__ == "__main__":
    sys.exit(main())
