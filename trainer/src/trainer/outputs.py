"""What a trial writes: config.yaml, metrics.jsonl, final.json, predictions.json, checkpoint.pt
(docs/contracts.md), plus TensorBoard scalars and the Vertex hyperparameter-tuning metric.

The output directory may be local or gs://. Every file is first written whole in a local
directory (the output directory itself, or a scratch directory for gs://) and then put in place
atomically: a rename locally, one upload to GCS. A reader never sees half a file.
"""

from __future__ import annotations

import io
import json
import math
import os
import resource
import shutil
import tempfile
from pathlib import Path

import torch

from trainer import storage
from trainer.errors import DataError

CONFIG_FILE = "config.yaml"
METRICS_FILE = "metrics.jsonl"
FINAL_FILE = "final.json"
PREDICTIONS_FILE = "predictions.json"
CHECKPOINT_FILE = "checkpoint.pt"
# What a resume reads from a checkpoint (training._loop); a file without them is not one of ours.
CHECKPOINT_KEYS = ("config", "model", "optimizer", "scheduler", "ema", "rng", "epoch", "step")

OBJECTIVE = "extrapolation_error"  # on the tune windows: what the tuner sees
VAL_OBJECTIVE = "val_extrapolation_error"  # on the val windows: the per-epoch curve
HP_METRIC_ENV = "CLOUD_ML_HP_METRIC_FILE"
TENSORBOARD_ENV = "AIP_TENSORBOARD_LOG_DIR"


def _json_value(value):
    """JSON has no NaN or inf: they are written as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_value(v) for v in value]
    return value


def dumps(obj) -> str:
    """Compact JSON with NaN/inf as null."""
    return json.dumps(_json_value(obj), allow_nan=False)


def peak_mem_bytes(device: torch.device) -> int:
    """Peak memory so far: CUDA max allocated on a GPU, else the process's peak resident set size."""
    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device))
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024  # Linux reports KiB


class TrialOutputs:
    """The output directory of one trial.

    Args:
        uri: local directory or gs:// prefix; created if missing.
    """

    def __init__(self, uri: str):
        self.uri = str(uri)
        self.remote = storage.is_remote(self.uri)
        if self.remote:
            self.local = Path(tempfile.mkdtemp(prefix="zeta-trial-"))
        else:
            self.local = Path(self.uri)
            self.local.mkdir(parents=True, exist_ok=True)
        self._metrics: list[str] = []

    def close(self) -> None:
        """Remove the scratch directory of a gs:// output (local outputs stay)."""
        if self.remote:
            shutil.rmtree(self.local, ignore_errors=True)

    def where(self, name: str) -> str:
        """Full path or URL of a file in the output directory."""
        return storage.join(self.uri, name)

    def _put(self, name: str, data: bytes) -> None:
        if self.remote:
            storage.write_bytes_atomic(self.where(name), data)  # one upload: atomic in GCS
        else:
            storage.write_bytes_atomic(self.local / name, data)

    def read_text(self, name: str) -> str | None:
        """Content of a file in the output directory, or None if it does not exist."""
        where = self.where(name)
        return storage.read_text(where) if storage.exists(where) else None

    def write_text(self, name: str, text: str) -> None:
        """Write a whole text file atomically."""
        self._put(name, text.encode("utf-8"))

    def write_json(self, name: str, obj) -> None:
        """Write a JSON file atomically (NaN/inf as null)."""
        self.write_text(name, json.dumps(_json_value(obj), indent=2, allow_nan=False) + "\n")

    # metrics.jsonl is rewritten whole each time: GCS objects cannot be appended to, and a
    # rewrite also lets a resumed run drop the lines of epochs it is about to repeat.
    def load_metrics(self, up_to_epoch: int) -> list[dict]:
        """Read existing metrics lines and keep those with epoch <= up_to_epoch (resume)."""
        text = self.read_text(METRICS_FILE) or ""
        rows = []
        for line in text.splitlines():
            try:
                row = json.loads(line) if line.strip() else None
            except json.JSONDecodeError:
                row = None  # a damaged line: the epochs before the checkpoint are kept, it is dropped
            if isinstance(row, dict) and isinstance(row.get("epoch"), int):
                rows.append(row)
        kept = [r for r in rows if r["epoch"] <= up_to_epoch]
        self._metrics = [dumps(r) for r in kept]
        if len(rows) != sum(1 for line in text.splitlines() if line.strip()):  # damaged lines: drop them now
            self.write_text(METRICS_FILE, "".join(line + "\n" for line in self._metrics))
        rows = kept
        return rows

    def append_metrics(self, row: dict) -> None:
        """Add one evaluated epoch to metrics.jsonl."""
        self._metrics.append(dumps(row))
        self.write_text(METRICS_FILE, "\n".join(self._metrics) + "\n")

    def save_checkpoint(self, state: dict) -> None:
        """Write checkpoint.pt atomically (serialised in memory, then one rename or upload)."""
        buffer = io.BytesIO()
        torch.save(state, buffer)
        self._put(CHECKPOINT_FILE, buffer.getvalue())

    def load_checkpoint(self) -> dict | None:
        """The saved state, or None when there is no checkpoint yet.

        Raises:
            DataError: the file is truncated, not a checkpoint, or lacks the keys a resume reads
                (one line: delete it to train the trial from the start).
        """
        where = self.where(CHECKPOINT_FILE)
        if not storage.exists(where):
            return None
        local = self.local / CHECKPOINT_FILE
        if self.remote:
            storage.download_file(where, local)
        fix = "delete it to train this trial from the start"
        try:
            state = torch.load(local, map_location="cpu", weights_only=True)
        except Exception as e:  # torch raises many kinds for a damaged file: EOF, unpickling, zip
            raise DataError(f"{where}: not a readable checkpoint ({type(e).__name__}); {fix}") from None
        missing = [k for k in CHECKPOINT_KEYS if not isinstance(state, dict) or k not in state]
        if missing:
            raise DataError(f"{where}: not a trainer checkpoint (no {', '.join(missing)}); {fix}")
        return state


class MetricSinks:
    """TensorBoard scalars and the Vertex hyperparameter-tuning metric, each only when asked for.

    Args:
        tensorboard_dir: --tensorboard-dir, else $AIP_TENSORBOARD_LOG_DIR, else None (off);
            a gs:// directory is written locally and uploaded after every flush.
    """

    def __init__(self, tensorboard_dir: str | None):
        tensorboard_dir = tensorboard_dir or os.environ.get(TENSORBOARD_ENV) or None
        self._tb = None
        self._tb_remote = None
        if tensorboard_dir:
            from torch.utils.tensorboard import SummaryWriter

            if storage.is_remote(tensorboard_dir):
                self._tb_remote = tensorboard_dir
                tensorboard_dir = tempfile.mkdtemp(prefix="zeta-tb-")
            self._tb = SummaryWriter(log_dir=tensorboard_dir)
        self._hpt = None
        if os.environ.get(HP_METRIC_ENV):
            import hypertune

            self._hpt = hypertune.HyperTune()

    def scalars(self, row: dict, step: int) -> None:
        """Log every finite number in row under its key, at x = step (the epoch)."""
        if self._tb is not None:
            for key, value in row.items():
                if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
                    self._tb.add_scalar(key, value, step)
            self._tb.flush()
            if self._tb_remote:
                for path in Path(self._tb.log_dir).rglob("*"):
                    if path.is_file():
                        rel = path.relative_to(self._tb.log_dir).as_posix()
                        storage.upload_file(path, storage.join(self._tb_remote, rel))
        value = row.get(OBJECTIVE)
        if self._hpt is not None and value is not None and math.isfinite(value):
            self._hpt.report_hyperparameter_tuning_metric(
                hyperparameter_metric_tag=OBJECTIVE, metric_value=float(value), global_step=int(step)
            )

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()
            if self._tb_remote:
                shutil.rmtree(self._tb.log_dir, ignore_errors=True)


def progress_line(row: dict, epochs: int, eta_seconds: float) -> str:
    """One human line per epoch: losses, the val windows' error (when evaluated), lr, time and ETA."""
    train = " ".join(f"{k.split('/', 1)[1]} {row[k]:.4g}" for k in row if k.startswith("train/"))
    parts = [f"epoch {row['epoch']}/{epochs}", f"train {train}"]
    if VAL_OBJECTIVE in row:
        parts.append(f"val {row['val_loss']:.4g}")
        best = row["val_best_baseline"]
        parts.append(
            f"val windows {row[VAL_OBJECTIVE]:.4g} ± {row['val_extrapolation_stderr']:.2g} "
            f"(vs {best.removeprefix('baseline_')} {row[f'val_{best}']:.4g}: "
            f"{row['val_paired_diff']:+.2g} ± {row['val_paired_stderr']:.2g} paired)"
        )
    parts.append(f"lr {row['lr']:.3g}")
    parts.append(f"{row['seconds']:.1f}s, ETA {eta_seconds:.0f}s")
    return " | ".join(parts)
