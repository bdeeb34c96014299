"""One reading layer for every file the orchestrator reads from configs/ and from a run directory.

Each reader turns whatever can go wrong with a file on disk (missing, a directory, unreadable,
binary, empty, not valid YAML or JSON, a duplicated YAML key, the wrong shape) into one
`DamagedFile` error: one line naming the file, what is wrong and what to do about it (restore it,
delete it, or run `orchestrator repair`). The CLI prints it and exits 2; a reader never writes.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import yaml

from orchestrator.errors import ConfigError


class DamagedFile(ConfigError):
    """A file is unreadable or malformed; the message names it, the problem and the fix. Exit 2."""

    def __init__(self, path: str | os.PathLike, problem: str, fix: str) -> None:
        self.path, self.problem, self.fix = str(path), problem, fix
        super().__init__(f"{path}: {problem}" + (f"; {fix}" if fix else ""))


def repair_hint(run_dir: str | os.PathLike) -> str:
    return f"run `orchestrator repair --run-dir {run_dir}` to rebuild it"


def damaged(path: str | os.PathLike, problem: str, fix: str) -> DamagedFile:
    return DamagedFile(path, problem, fix)


def read_text(path: str | os.PathLike, fix: str, missing_ok: bool = True) -> str | None:
    """The UTF-8 text of `path`; None when it does not exist (if `missing_ok`).

    Raises:
        DamagedFile: a directory, unreadable, or not UTF-8 text.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        if missing_ok:
            return None
        raise damaged(path, "not found", fix) from None
    except IsADirectoryError:
        raise damaged(path, "is a directory, not a file", fix) from None
    except OSError as e:
        raise damaged(path, f"cannot be read ({e.strerror})", fix) from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise damaged(path, "is binary, not UTF-8 text", fix) from None


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses a mapping with the same key twice (PyYAML keeps the last silently)."""


def _construct_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False):
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=True)
        try:
            first = seen.get(key)
        except TypeError:
            continue  # an unhashable key: SafeLoader reports it itself
        if first is not None:
            raise yaml.constructor.ConstructorError(
                None,
                None,
                f"duplicate key {key!r} (first on line {first}; the later value would silently win)",
                key_node.start_mark,
            )
        seen[key] = key_node.start_mark.line + 1
    return yaml.SafeLoader.construct_mapping(loader, node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def yaml_problem(e: yaml.YAMLError) -> tuple[int | None, str]:
    """(1-based line or None, what is wrong) of a YAML error."""
    mark = getattr(e, "problem_mark", None)
    problem = getattr(e, "problem", None) or str(e).splitlines()[0]
    return (mark.line + 1 if mark is not None else None), problem


def parse_yaml(text: str) -> Any:
    """YAML text as Python objects, refusing duplicated keys.

    Raises:
        yaml.YAMLError: not valid YAML, or a duplicated key (see `yaml_problem`).
    """
    return yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 (a SafeLoader subclass)


def read_yaml_mapping(path: str | os.PathLike, fix: str, missing_ok: bool = False) -> dict | None:
    """A YAML file whose top level must be a mapping.

    Raises:
        DamagedFile: missing (unless `missing_ok`), unreadable, binary, empty, not valid YAML, a
            duplicated key, or a top level that is not a mapping.
    """
    text = read_text(path, fix, missing_ok=missing_ok)
    if text is None:
        return None
    try:
        obj = parse_yaml(text)
    except yaml.YAMLError as e:
        line, problem = yaml_problem(e)
        raise damaged(f"{path}:{line}" if line else path, f"not valid YAML ({problem})", fix) from None
    if obj is None:
        raise damaged(path, "is empty", fix)
    if not isinstance(obj, dict):
        raise damaged(path, f"top level is a {_kind(obj)}, not a mapping", fix)
    return obj


def read_json(path: str | os.PathLike, fix: str, missing_ok: bool = True) -> Any:
    """A JSON file (any top level); None when missing and `missing_ok`.

    Raises:
        DamagedFile: unreadable, binary, empty or not valid JSON.
    """
    text = read_text(path, fix, missing_ok=missing_ok)
    if text is None:
        return None
    if not text.strip():
        raise damaged(path, "is empty", fix)
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise damaged(f"{path}:{e.lineno}", f"not valid JSON ({e.msg})", fix) from None


def read_json_object(
    path: str | os.PathLike, fix: str, keys: dict[str, type | tuple[type, ...]] | None = None
) -> dict | None:
    """A JSON file whose top level is an object holding `keys` with the given types; None if missing.

    Raises:
        DamagedFile: as read_json, or the wrong shape (names the first key that is wrong).
    """
    obj = read_json(path, fix)
    if obj is None:
        return None
    if not isinstance(obj, dict):
        raise damaged(path, f"top level is a {_kind(obj)}, not an object", fix)
    for key, kind in (keys or {}).items():
        if key not in obj:
            raise damaged(path, f"has no {key!r}", fix)
        if not isinstance(obj[key], kind) or (isinstance(obj[key], bool) and bool not in _tuple(kind)):
            raise damaged(path, f"{key!r} is a {_kind(obj[key])}, not {_names(kind)}", fix)
    return obj


def _tuple(kind: type | tuple[type, ...]) -> tuple[type, ...]:
    return kind if isinstance(kind, tuple) else (kind,)


def _names(kind: type | tuple[type, ...]) -> str:
    names = {int: "an integer", float: "a number", str: "a string", dict: "an object", list: "a list"}
    return " or ".join(names.get(k, k.__name__) for k in _tuple(kind) if k is not type(None)) + (
        " or null" if type(None) in _tuple(kind) else ""
    )


def _kind(obj: Any) -> str:
    return {dict: "mapping", list: "list", str: "string", type(None): "null", bool: "boolean"}.get(
        type(obj), "number" if isinstance(obj, int | float) else type(obj).__name__
    )
