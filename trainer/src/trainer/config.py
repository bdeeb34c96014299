"""The trial config: one pydantic schema, `extends:` merging, `--set` overrides, one-line errors.

A config file is YAML. It may start with `extends: <path relative to this file>`; mappings
merge deeply and the extending file wins. `--set key=value` overrides are applied last
(values parsed as YAML). Every problem is reported, one per line, naming the file (or
`--set`) and the dotted key, e.g. `configs/x.yaml: loss.gue_nll_weight: must be >= 0`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal, get_args

import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator

from trainer.baselines import MAX_PRIME_CUTOFF
from trainer.errors import ConfigError

DATA_ENV = "ZETA_SWARM_DATA"
SET_ORIGIN = "--set"
MIN_CLUSTER = 64  # zeros per cluster: room for the RMT losses' block scales


class _Strict(BaseModel):
    # inf and nan are never a valid setting (a weight of inf makes every loss inf).
    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)

    @field_validator("*", mode="before")
    @classmethod
    def _no_bool_as_number(cls, value: Any, info: ValidationInfo) -> Any:
        # pydantic's lax mode reads a YAML `true` as the int 1: `seed: true` is a mistake, not seed 1.
        annotation = cls.model_fields[info.field_name].annotation
        if isinstance(value, bool) and bool not in (annotation, *get_args(annotation)):
            raise ValueError("must not be a boolean")
        return value


class DataConfig(_Strict):
    """Which zeros train, validate and score. Indices are 1-based zero numbers n (gamma_n).

    Three disjoint sets of extrapolation windows (MATH.md §5.2), each window predicting the H
    zeros after its start M: `val_windows` (early stopping, per-epoch reports), then `windows`
    (tune: the objective the tuner sees), both every `window_stride` zeros from `window_start`;
    then `test_windows` spread evenly from the end of the tune windows to `test_stop` (the
    dataset's last zero when None), never used to select anything.
    """

    path: str | None = None  # None: $ZETA_SWARM_DATA, else <repo>/data/odlyzko (from `make data`)
    train_start: int = Field(100_001, ge=1)
    train_count: int = Field(50_000, ge=64)
    val_count: int = Field(5_000, ge=64)  # >= 64: the rg_penalty scales need a few blocks
    val_windows: int = Field(8, ge=2)  # windows for early stopping and intermediate reports
    windows: int = Field(32, ge=2)  # tune windows: the objective (>= 2 for a standard error)
    test_windows: int = Field(64, ge=2)  # held-out windows, spread over the heights beyond
    horizon: int = Field(100, ge=1)  # H zeros rolled forward per window
    window_start: int | None = Field(None, ge=1)  # first val window's M; None: right after validation
    window_stride: int = Field(1_000, ge=1)  # distance between val and tune window starts, in zeros
    test_stop: int | None = Field(None, ge=1)  # last zero a test window may predict; None: the dataset's last


class BaselineConfig(_Strict):
    """The classical predictors (MATH.md §5, §5.1); (f) is also the residual model's starting point."""

    prime_cutoff: int = Field(100_000, ge=2, le=MAX_PRIME_CUTOFF)  # X of the smoothed (Riesz) prime sum
    beta: float = Field(0.5, gt=0.0, le=1.0)  # damping of the self-consistent step
    fit_samples: int = Field(200_000, ge=100)  # training zeros (evenly spread) the scales are fitted on
    ar_lags: int = Field(50, ge=1)  # m of the AR baselines
    ar_fit_len: int = Field(20_000, ge=10)  # deltas before a window the AR (c2) fits on
    smoothed_ar_fit_len: int = Field(400, ge=10)  # residuals of (f) before a window its AR fits on


class ModelConfig(_Strict):
    primes: list[int] = Field(default_factory=lambda: [2, 3, 5, 7, 11, 13], min_length=1)
    window: int = Field(16, ge=1)  # spacings of history per node
    layer: Literal["graphconv", "sage", "gatv2"] = "graphconv"
    hidden: int = Field(64, ge=1)
    depth: int = Field(3, ge=1)
    dropout: float = Field(0.0, ge=0.0, lt=1.0)
    residual: bool = True
    norm: Literal["none", "layer", "batch"] = "layer"
    # residual: predict (f)'s delta_{n+1} plus a learned correction that starts at 0, so the
    # untrained model is baseline_smoothed; spacing: predict the spacing from scratch (the old head).
    head: Literal["residual", "spacing"] = "residual"
    explicit_feature: bool = True  # add (f)'s estimate of delta_{n+1} as a feature

    @field_validator("primes")
    @classmethod
    def _primes(cls, value: list[int]) -> list[int]:
        bad = [p for p in value if p < 2 or any(p % d == 0 for d in range(2, int(p**0.5) + 1))]
        if bad:
            raise ValueError(f"not prime: {bad}")
        if len(set(value)) != len(value):
            raise ValueError("repeated prime")
        return sorted(value)


class LossConfig(_Strict):
    mse_weight: float = Field(1.0, ge=0.0)
    gue_nll_weight: float = Field(0.01, ge=0.0)
    gue_mmd_weight: float = Field(0.1, ge=0.0)
    rg_penalty_weight: float = Field(0.0, ge=0.0)
    mmd_reference: Literal["gue", "data"] = "gue"
    mmd_bandwidths: list[float] = Field(default_factory=lambda: [0.2, 0.3, 0.4], min_length=1)
    # global: block variances over the whole training sequence (needs fullbatch);
    # cluster: the same term computed on each step's contiguous segments, an approximation.
    rg_scope: Literal["global", "cluster"] = "global"
    # rg_penalty scales L = 2, 4, ..., 2^K with K <= rg_max_log2, and 2^K <= (shortest segment) / 16
    rg_max_log2: int = Field(10, ge=1, le=20)
    # gue_mmd subsamples each side to at most this many spacings per segment (O(n^2) kernel sums)
    mmd_max_samples: int = Field(2048, ge=2)
    # Wigner draws (or real spacings before the training range) in gue_mmd's reference sample
    mmd_reference_size: int = Field(8192, ge=2)

    @field_validator("mmd_bandwidths")
    @classmethod
    def _bandwidths(cls, value: list[float]) -> list[float]:
        if any(b <= 0 for b in value):
            raise ValueError("every bandwidth must be > 0")
        return value


class OptimConfig(_Strict):
    lr: float = Field(1e-3, gt=0.0)
    weight_decay: float = Field(0.01, ge=0.0)
    warmup_steps: int = Field(10, ge=0)
    scheduler: Literal["cosine", "plateau", "none"] = "cosine"
    eta_min_fraction: float = Field(0.01, ge=0.0, le=1.0)  # cosine: the last lr, as a fraction of lr
    plateau_factor: float = Field(0.5, gt=0.0, lt=1.0)  # plateau: lr *= this when val_loss stalls ...
    plateau_patience: int = Field(2, ge=0)  # ... for more than this many evaluations
    ema_decay: float = Field(0.9, ge=0.0, lt=1.0)  # 0: evaluate the raw weights
    grad_clip: float = Field(1.0, ge=0.0)  # max global grad norm; 0: off


class TrainConfig(_Strict):
    mode: Literal["fullbatch", "minibatch"] = "fullbatch"
    epochs: int = Field(20, ge=0)  # 0: evaluate the untrained model only
    num_clusters: int = Field(1, ge=1)  # k
    clusters_per_step: int = Field(1, ge=1)  # q
    partitioner: Literal["contiguous", "metis"] = "contiguous"
    eval_every: int = Field(1, ge=1)  # epochs between evaluations; the last epoch is always evaluated
    device: Literal["auto", "cpu", "cuda"] = "auto"
    cpu_threads: int = Field(0, ge=0)  # torch intra-op threads on the CPU; 0: torch's default
    # Run the model in row chunks, recomputing each in the backward pass instead of storing its
    # activations, at any size (trainer.model: it does so by itself above 2^17 nodes, which is
    # what lets full-batch training over all 2,001,052 zeros fit in a few GB).
    recompute_activations: bool = False
    # Each cluster's node features are built once and kept for later epochs, least recently used
    # out beyond this many MiB (0: rebuild every step).
    node_cache_mb: int = Field(512, ge=0)
    # The longest rollout trained on (trainer.training.horizon_at): the rollout length grows
    # 1, 2, 4, ... up to this over equal parts of the epochs; 1: one-step teacher forcing.
    max_horizon: int = Field(1, ge=1)
    # When the rollout length first grows past 1, the encoder and the bottom half of the
    # message-passing layers stop learning for the rest of training.
    freeze_bottom_layers_on_expand: bool = False
    # null: every cluster once per epoch in a random order. T > 0: each step draws its clusters
    # with probability proportional to w^(1/T), w the cluster's height rank in (0, 1].
    height_temperature: float | None = Field(None, gt=0.0)


class TrialConfig(_Strict):
    seed: int = Field(0, ge=0, lt=2**63)  # seeds torch, numpy and the partition (64-bit)
    data: DataConfig = Field(default_factory=DataConfig)
    baselines: BaselineConfig = Field(default_factory=BaselineConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    loss: LossConfig = Field(default_factory=LossConfig)
    optim: OptimConfig = Field(default_factory=OptimConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)

    def first_window(self) -> int:
        """Start M of the first val window (1-based zero index)."""
        if self.data.window_start is not None:
            return self.data.window_start
        return self.data.train_start + self.data.train_count + self.data.val_count

    def window_sets(self, last_zero: int) -> dict[str, list[int]]:
        """The starts M of the val, tune and test windows; each window predicts zeros M+1 .. M+H.

        Args:
            last_zero: the largest zero index there is (the dataset's last).

        Raises:
            ConfigError: when the test windows do not fit, disjoint, between the tune windows
                and min(data.test_stop, last_zero).
        """
        d = self.data
        first = self.first_window()
        ladder = [first + i * d.window_stride for i in range(d.val_windows + d.windows)]
        val, tune = ladder[: d.val_windows], ladder[d.val_windows :]
        lo = tune[-1] + d.horizon  # the first test window starts after the last tune zero
        stop = min(d.test_stop, last_zero) if d.test_stop is not None else last_zero
        hi = stop - d.horizon  # the last test window's start
        room = (hi - lo) // d.horizon + 1 if hi >= lo else 0
        if room < d.test_windows:
            raise ConfigError(
                f"data.test_windows: only {room} disjoint windows of {d.horizon} fit between the tune windows "
                f"(which end at zero {lo}) and zero {stop}; use fewer test windows, an earlier training range "
                "or a dataset with more zeros"
            )
        test = np.linspace(lo, hi, d.test_windows).round().astype(np.int64)
        return {"val": val, "tune": tune, "test": [int(m) for m in test]}

    def window_starts(self) -> list[int]:
        """The tune windows' starts M (the objective's windows)."""
        first = self.first_window() + self.data.val_windows * self.data.window_stride
        return [first + i * self.data.window_stride for i in range(self.data.windows)]

    def last_tune_index(self) -> int:
        """Largest zero index the val and tune windows read (the last tune window's x_{M+H})."""
        return self.window_starts()[-1] + self.data.horizon


def _cross_checks(cfg: TrialConfig) -> list[tuple[str, str]]:
    """Constraints between keys, as (dotted key, message)."""
    problems = []
    t, loss, d = cfg.train, cfg.loss, cfg.data
    if t.mode == "fullbatch":
        for key in ("num_clusters", "clusters_per_step"):
            if getattr(t, key) != 1:
                problems.append((f"train.{key}", "must be 1 when train.mode is fullbatch"))
    if t.clusters_per_step > t.num_clusters:
        problems.append(("train.clusters_per_step", f"must be <= train.num_clusters ({t.num_clusters})"))
    if t.mode == "minibatch" and loss.rg_penalty_weight > 0 and loss.rg_scope != "cluster":
        problems.append(
            (
                "loss.rg_penalty_weight",
                "must be 0 when train.mode is minibatch (rg_penalty is global), "
                "unless loss.rg_scope is cluster (a per-cluster approximation)",
            )
        )
    if max(loss.mse_weight, loss.gue_nll_weight, loss.gue_mmd_weight, loss.rg_penalty_weight) == 0:
        problems.append(("loss", "at least one loss weight must be > 0"))
    if t.num_clusters > d.train_count // MIN_CLUSTER:
        problems.append(
            (
                "train.num_clusters",
                f"must leave >= {MIN_CLUSTER} zeros per cluster (data.train_count {d.train_count})",
            )
        )
    if d.train_start <= cfg.model.window:
        problems.append(
            ("data.train_start", f"must be > model.window ({cfg.model.window}): features need history")
        )
    if d.window_stride < d.horizon:
        problems.append(
            ("data.window_stride", f"must be >= data.horizon ({d.horizon}): windows may not share zeros")
        )
    if cfg.model.head == "residual" and not cfg.model.explicit_feature:
        problems.append(
            (
                "model.explicit_feature",
                "must be true with model.head residual (the head adds to that estimate)",
            )
        )
    val_end = d.train_start + d.train_count + d.val_count
    if d.window_start is not None and d.window_start < val_end:
        problems.append(
            ("data.window_start", f"must be >= {val_end}, beyond the training and validation range")
        )
    return problems


# ---------------------------------------------------------------------------------------------
# Loading: extends, --set, origins of every key (so an error can name the file that set it)


def _label(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


class _UniqueKeyLoader(yaml.SafeLoader):
    """yaml.SafeLoader that refuses a mapping with the same key twice (plain YAML keeps the last)."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _read_yaml(path: Path) -> dict[str, Any]:
    label = _label(path)
    try:
        text = path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{label}: no such config file") from None
    except IsADirectoryError:
        raise ConfigError(f"{label}: is a directory, not a config file") from None
    except OSError as e:
        raise ConfigError(f"{label}: cannot read ({e.strerror})") from e
    except UnicodeDecodeError as e:
        raise ConfigError(
            f"{label}: not a text file (byte {e.start} is not UTF-8); a config is YAML text"
        ) from None
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark is not None else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise ConfigError(f"{label}: {where}invalid YAML ({problem})") from e
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{label}: top level must be a mapping, got {type(data).__name__}")
    return data


def _merge(base: dict, top: dict, origins: dict, label: str, prefix: tuple = ()) -> dict:
    out = dict(base)
    for key, value in top.items():
        loc = (*prefix, key)
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value, origins, label, loc)
        else:
            out[key] = value
            for old in [o for o in origins if o[: len(loc)] == loc]:
                del origins[old]
            origins[loc] = label
    return out


def _load_file(path: Path, origins: dict, chain: tuple[Path, ...] = ()) -> dict[str, Any]:
    path = path.resolve() if path.exists() else path
    if path in chain:
        raise ConfigError(f"{_label(path)}: extends cycle ({' -> '.join(_label(p) for p in (*chain, path))})")
    data = _read_yaml(path)
    parent = data.pop("extends", None)
    merged: dict[str, Any] = {}
    if parent is not None:
        if not isinstance(parent, str):
            raise ConfigError(f"{_label(path)}: extends: must be a path string")
        merged = _load_file(path.parent / parent, origins, (*chain, path))
    return _merge(merged, data, origins, _label(path))


#: Keys that were renamed: a config that still uses the old name is told the new one.
RENAMED_KEYS = {"train.checkpoint_layers": "train.recompute_activations"}


def _unknown(dotted: str) -> str:
    new = RENAMED_KEYS.get(dotted)
    return f"unknown key (renamed {new})" if new else "unknown key"


def _apply_set(data: dict, item: str, origins: dict) -> dict:
    key, sep, raw = item.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(f"{SET_ORIGIN} {item!r}: expected key=value")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError as e:
        raise ConfigError(f"{SET_ORIGIN} {key}: value is not valid YAML ({raw!r})") from e
    parts = tuple(key.split("."))
    model: Any = TrialConfig
    for i, part in enumerate(parts):
        fields = getattr(model, "model_fields", None)
        if fields is None or part not in fields:
            raise ConfigError(f"{SET_ORIGIN} {key}: {_unknown(key)} ({'.'.join(parts[: i + 1])})")
        model = fields[part].annotation
    nested: Any = value
    for part in reversed(parts):
        nested = {part: nested}
    return _merge(data, nested, origins, SET_ORIGIN)


def _dotted(loc: tuple) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _message(err: dict) -> str:
    kind, ctx = err["type"], err.get("ctx", {})
    simple = {
        "extra_forbidden": "unknown key",
        "missing": "missing",
        "int_parsing": "must be an integer",
        "int_type": "must be an integer",
        "int_from_float": "must be an integer",
        "float_parsing": "must be a number",
        "float_type": "must be a number",
        "finite_number": "must be a finite number",
        "bool_parsing": "must be true or false",
        "bool_type": "must be true or false",
        "list_type": "must be a list",
        "string_type": "must be a string",
        "model_type": "must be a mapping",
        "dict_type": "must be a mapping",
    }
    if kind in simple:
        return simple[kind]
    bounds = {"greater_than_equal": ">=", "greater_than": ">", "less_than": "<", "less_than_equal": "<="}
    if kind in bounds:
        return f"must be {bounds[kind]} {next(iter(ctx.values()))}"
    if kind == "literal_error":
        return f"must be one of {ctx.get('expected')}"
    if kind == "too_short":
        return f"must have at least {ctx.get('min_length')} item(s)"
    if kind == "value_error":
        return str(ctx.get("error", err["msg"]))
    return err["msg"]


def _origin(loc: tuple, origins: dict, default: str) -> str:
    for n in range(len(loc), 0, -1):
        if loc[:n] in origins:
            return origins[loc[:n]]
    return default


def default_data_path() -> str:
    """The dataset a config without `data.path` uses: $ZETA_SWARM_DATA, else `data/odlyzko` in the repo."""
    env = os.environ.get(DATA_ENV)
    if env:
        return env
    # trainer/src/trainer/config.py -> repository root; outside a checkout, relative to the cwd.
    root = Path(__file__).resolve().parents[3]
    if (root / "Makefile").exists():
        return str(root / "data" / "odlyzko")
    return "data/odlyzko"


def load_config(path: str | os.PathLike, overrides: list[str] | tuple[str, ...] = ()) -> TrialConfig:
    """Read, merge, override and validate a trial config.

    Args:
        path: YAML config file (may `extends:` another, relative to itself).
        overrides: `key=value` strings (value parsed as YAML), applied last, in order.

    Returns:
        The validated TrialConfig, with `data.path` resolved.

    Raises:
        ConfigError: every problem, one line each, `file: dotted.key: message`.
    """
    path = Path(path)
    origins: dict[tuple, str] = {}
    data = _load_file(path, origins)
    for item in overrides:
        data = _apply_set(data, item, origins)
    top = _label(path)
    try:
        cfg = TrialConfig.model_validate(data)
    except ValidationError as e:
        lines = [
            f"{_origin(err['loc'], origins, top)}: {_dotted(err['loc'])}: "
            + (_unknown(_dotted(err["loc"])) if err["type"] == "extra_forbidden" else _message(err))
            for err in e.errors()
        ]
        raise ConfigError("\n".join(lines)) from None
    problems = _cross_checks(cfg)
    if problems:
        lines = [f"{_origin(tuple(k.split('.')), origins, top)}: {k}: {msg}" for k, msg in problems]
        raise ConfigError("\n".join(lines))
    if cfg.data.path is None:
        cfg.data.path = default_data_path()
    return cfg


def dump_config(cfg: TrialConfig) -> str:
    """The resolved config as YAML, in schema order (what `config.yaml` holds)."""
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)
