"""Helpers for the infra/ and containers/ checks: the parsed Terraform stack and tool paths.

A uniquely named module (not conftest) so test files can import it without clashing with
other directories' conftest modules.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import hcl2

REPO = Path(__file__).resolve().parents[2]
INFRA = REPO / "infra"
TERRAFORM = shutil.which("terraform") or "/usr/local/bin/terraform"
CHECKOV = REPO / ".tools" / "checkov" / "bin" / "checkov"
HADOLINT = REPO / ".venv" / "bin" / "hadolint"

_HCL_OPTIONS = hcl2.SerializationOptions(with_comments=False, explicit_blocks=False, strip_string_quotes=True)


def parse_hcl(path: Path) -> dict:
    """Parse one .tf/.tftest.hcl file into plain dicts: quotes stripped, expressions as "${...}" strings."""
    with path.open(encoding="utf-8") as f:
        return hcl2.load(f, serialization_options=_HCL_OPTIONS)


@dataclass
class Resource:
    type: str
    name: str
    body: dict
    file: str

    @property
    def address(self) -> str:
        return f"{self.type}.{self.name} ({self.file})"


@dataclass
class Stack:
    """Every block of a Terraform directory, merged across its files."""

    resources: list[Resource] = field(default_factory=list)
    data: list[Resource] = field(default_factory=list)
    locals: dict = field(default_factory=dict)
    variables: dict = field(default_factory=dict)
    outputs: dict = field(default_factory=dict)
    files: dict[str, dict] = field(default_factory=dict)

    def of_type(self, type_: str) -> list[Resource]:
        return [r for r in self.resources if r.type == type_]

    def get(self, type_: str, name: str) -> Resource:
        matches = [r for r in self.resources if r.type == type_ and r.name == name]
        assert len(matches) == 1, f"expected one {type_}.{name}, found {len(matches)}"
        return matches[0]


def load_stack(directory: Path) -> Stack:
    stack = Stack()
    for path in sorted(directory.glob("*.tf")):
        parsed = parse_hcl(path)
        stack.files[path.name] = parsed
        for kind, target in (("resource", stack.resources), ("data", stack.data)):
            for block in parsed.get(kind, []):
                for type_, by_name in block.items():
                    for name, body in by_name.items():
                        target.append(Resource(type_, name, body, path.name))
        for block in parsed.get("locals", []):
            stack.locals.update(block)
        for block in parsed.get("variable", []):
            stack.variables.update(block)
        for block in parsed.get("output", []):
            stack.outputs.update(block)
    return stack


def tool_env() -> dict[str, str]:
    """Environment for terraform/checkov: no stale CLI config, no telemetry, no prompts."""
    env = dict(os.environ)
    config = env.get("TF_CLI_CONFIG_FILE")
    if config and not os.path.exists(config):  # a dangling setting only adds warnings to every run
        del env["TF_CLI_CONFIG_FILE"]
    env.update(
        {"CHECKPOINT_DISABLE": "1", "TF_IN_AUTOMATION": "1", "TF_INPUT": "0", "BC_SKIP_MAPPING": "TRUE"}
    )
    return env
