"""The schema machinery every config file goes through: a strict model base (an unknown key is an
error), and loading that collects every problem of every file first, each reported as one line
naming the file, the line and the key:
`configs/phases/phase2.yaml:14: rounds.0.space.loss.gue_nll_weight.low: Input should be a valid number`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from orchestrator import reading
from orchestrator.errors import ConfigError


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Problems:
    """Every problem of every file, collected and raised together, one line each."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def add(self, where: str, message: str) -> None:
        self.lines.append(f"{where}: {message}")

    def add_at(self, path: Path, node: yaml.Node | None, loc: tuple, message: str) -> None:
        """A problem of the key at `loc` in `path`, with its line when the node tree has it."""
        line = line_of(node, loc)
        self.add(
            f"{rel(path)}:{line}" if line else rel(path),
            f"{'.'.join(map(str, loc)) or '(top level)'}: {message}",
        )

    def raise_if_any(self) -> None:
        if len(self.lines) == 1:  # one problem, one line
            raise ConfigError(f"{self.lines[0]} (nothing was launched)")
        if self.lines:
            n = len(self.lines)
            head = f"{n} problem{'s' if n > 1 else ''} in the swarm configuration (nothing was launched):"
            raise ConfigError("\n".join([head, *("  " + line for line in self.lines)]))


def rel(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def line_of(node: yaml.Node | None, loc: tuple) -> int | None:
    """The 1-based line of the YAML node at a pydantic error location (deepest node found)."""
    line = node.start_mark.line + 1 if node is not None else None
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            match = [v for k, v in node.value if str(k.value) == str(part)]
            if not match:
                key_match = [k for k, _ in node.value if str(k.value) == str(part)]
                return key_match[0].start_mark.line + 1 if key_match else line
            node = match[0]
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
        else:
            continue  # union branch names and the like are not in the document
        line = node.start_mark.line + 1
    return line


def load_yaml(path: Path, problems: Problems) -> tuple[Any, yaml.Node | None]:
    """A config file's mapping and its node tree (for line numbers); (None, None) after a problem.

    Read through orchestrator.reading: a binary file, a duplicated key, an empty file or a top
    level that is not a mapping is a problem of its own, never a crash further on.
    """
    try:
        text = reading.read_text(path, "", missing_ok=False)
    except reading.DamagedFile as e:
        problems.add(rel(path), "file not found" if e.problem == "not found" else e.problem)
        return None, None
    try:
        raw, node = reading.parse_yaml(text), yaml.compose(text)
    except yaml.YAMLError as e:
        line, problem = reading.yaml_problem(e)
        problems.add(f"{rel(path)}:{line}" if line else rel(path), f"not valid YAML: {problem}")
        return None, None
    if raw is None:
        problems.add(rel(path), "is empty; restore it from the repository (`git checkout -- FILE`)")
        return None, None
    if not isinstance(raw, dict):
        problems.add(rel(path), f"top level must be a mapping, not {type(raw).__name__}")
        return None, None
    return raw, node


def validate(
    model: type[BaseModel], path: Path, problems: Problems, union_tags: frozenset[str] = frozenset()
) -> Any:
    """The file as `model`, or None with its problems added (file, line and key each).

    Args:
        union_tags: the discriminator values of the model's unions (a round's `kind`), which
            pydantic puts in an error's location though they are no key of the file.
    """
    return validate_with_node(model, path, problems, union_tags)[0]


def validate_with_node(
    model: type[BaseModel], path: Path, problems: Problems, union_tags: frozenset[str] = frozenset()
) -> tuple[Any, yaml.Node | None]:
    """`validate`, and the file's node tree, for the checks across keys that follow (`Problems.add_at`)."""
    raw, node = load_yaml(path, problems)
    if raw is None:
        return None, None
    try:
        return model.model_validate(raw), node
    except ValidationError as e:
        for err in e.errors():
            # Drop pydantic's union-branch tags (e.g. 'bayesian') that are not keys in the file.
            loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p in union_tags))
            msg = err["msg"]
            if err["type"] == "extra_forbidden":
                msg = "unknown key (remove it or check its spelling)"
            problems.add_at(path, node, loc, msg)
        return None, node
