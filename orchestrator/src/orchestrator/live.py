"""`orchestrator status --watch`: a live view of a run, redrawn in place.

One frame is: the study and when trials.json was written; trial counts and slot use; one line per
running trial with a progress bar (epoch / epochs from its metrics.jsonl, the latest objective and
an ETA from the measured seconds per epoch); the best so far beside the best baseline; GPU-hours
against the cap; then the leaderboard's top rows. Everything is read from files (trials.json,
swarm.yaml, each running trial's metrics.jsonl), local or gs://, so it watches a Vertex run's
copy in a bucket as well as a local run.

A run is watched until it is over: locally, until no controller holds the run directory's lock (a
finished, stopped or crashed swarm); on gs://, where there is no lock, until no trial is pending or
running. A run that is already over is printed once.
"""

from __future__ import annotations

import json
import math
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import yaml

from orchestrator import storage
from orchestrator.errors import ConfigError
from orchestrator.leaderboard import format_leaderboard, summary
from orchestrator.run_files import SETTINGS_FILE, TRIALS_FILE, ControllerLock
from orchestrator.trial_outputs import BEATS, WITHIN_NOISE, WORSE, parse_metrics

BAR_WIDTH = 20
ACTIVE_STATES = ("PENDING", "RUNNING")


def read_text(run_dir: str, name: str) -> str | None:
    """RUN_DIR/NAME (NAME may contain slashes), local or gs://; None when it does not exist."""
    if storage.is_gcs(run_dir):
        return storage.read_text(f"{run_dir.rstrip('/')}/{name}")
    try:
        return (Path(run_dir) / name).read_text(encoding="utf-8")
    except FileNotFoundError:
        return None


def read_run(run_dir: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """trials.json and swarm.yaml (empty when missing) of a run directory.

    Raises:
        ConfigError: no trials.json, or it is not valid JSON.
    """
    where = f"{run_dir.rstrip('/')}/{TRIALS_FILE}"
    text = read_text(run_dir, TRIALS_FILE)
    if text is None:
        raise ConfigError(f"{where}: not found; no swarm has run in {run_dir} (start one with `make swarm`)")
    try:
        snap = json.loads(text)
    except json.JSONDecodeError as e:
        raise ConfigError(f"{where}:{e.lineno}: not valid JSON ({e.msg})") from e
    try:
        settings = yaml.safe_load(read_text(run_dir, SETTINGS_FILE) or "") or {}
    except yaml.YAMLError:
        settings = {}  # the frame leaves out slot use and epochs rather than failing the view
    return snap, settings if isinstance(settings, dict) else {}


def trial_dir(run_dir: str, trial: dict[str, Any]) -> str:
    """Where a trial's files are: a gs:// output_dir as written, else RUN_DIR/trials/<id> (the
    contract's place, right after a run directory is copied or moved)."""
    out = str(trial.get("output_dir") or "")
    return out if storage.is_gcs(out) else f"{run_dir.rstrip('/')}/trials/{trial['id']}"


def trial_epochs(settings: dict[str, Any], params: dict[str, Any]) -> int | None:
    """Epochs a trial of this run trains: its team's `train.epochs` override, else the run's."""
    machines = settings.get("team_machines") or {}
    team = params.get("train.mode") if params.get("train.mode") in machines else settings.get("team")
    epochs = ((machines.get(team) or {}).get("overrides") or {}).get("train.epochs", settings.get("epochs"))
    return int(epochs) if isinstance(epochs, int | float) and epochs > 0 else None


@dataclass
class Progress:
    """A running trial's progress from its metrics.jsonl."""

    epoch: int  # last evaluated epoch (0: none yet)
    epochs: int | None
    objective: float | None  # latest per-epoch objective
    eta_s: float | None  # measured seconds per epoch x epochs left


def progress(rows: list[dict], epochs: int | None) -> Progress:
    """Progress from metrics.jsonl rows: `seconds` is the trainer's running time at each row, so
    seconds / epoch is the measured time per epoch, evaluations included."""
    if not rows:
        return Progress(0, epochs, None, None)
    last = max(rows, key=lambda r: r["epoch"])
    epoch = int(last["epoch"])
    # val_extrapolation_error is the per-epoch objective (val windows); older trainers wrote
    # extrapolation_error on the tune windows every epoch.
    objective = next(
        (float(last[k]) for k in ("val_extrapolation_error", "extrapolation_error") if _number(last.get(k))),
        None,
    )
    eta = None
    if epochs is not None and epoch > 0 and _number(last.get("seconds")):
        eta = float(last["seconds"]) / epoch * max(0, epochs - epoch)
    return Progress(epoch, epochs, objective, eta)


def bar(done: int, total: int | None, width: int = BAR_WIDTH) -> str:
    """`[#####---------------]`: done of total, in `width` cells."""
    if not total:
        return "[" + "?" * width + "]"
    full = min(width, round(width * done / total))
    return "[" + "#" * full + "-" * (width - full) + "]"


def duration(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s"


def frame(run_dir: str, snap: dict[str, Any], settings: dict[str, Any], now: float, top: int = 5) -> str:
    """One frame of the live view (see the module docstring)."""
    trials = snap.get("trials", [])
    s = summary(snap)
    updated = snap.get("updated")
    age = f"updated {duration(now - float(updated))} ago" if _number(updated) else "updated ?"
    lines = [
        f"{snap.get('study')}  phase {snap.get('phase')}  team {snap.get('team')}  "
        f"backend {snap.get('backend')}  ({age})",
        "trials: "
        + "  ".join(f"{k.lower()} {v}" for k, v in s["counts"].items() if v)
        + f"  (total {s['total']})",
    ]
    running = [t for t in trials if t["state"] == "RUNNING"]
    parallel = settings.get("parallel")
    slots = f"slots: {len(running)} of {parallel} running" if parallel else f"slots: {len(running)} running"
    pending = s["counts"].get("PENDING", 0)
    lines.append(slots + (f", {pending} pending" if pending else ""))
    for t in running:
        p = progress(
            parse_metrics(read_text(trial_dir(run_dir, t), "metrics.jsonl")),
            trial_epochs(settings, t["params"]),
        )
        of = f"{p.epoch}/{p.epochs}" if p.epochs else f"{p.epoch}/?"
        objective = f"objective {p.objective:.5f}" if p.objective is not None else "objective -"
        eta = f"ETA {duration(p.eta_s)}" if p.eta_s is not None else "ETA -"
        lines.append(f"  trial {t['id']:<5} {bar(p.epoch, p.epochs)} epoch {of:<7} {objective}  {eta}")
    best = s["best"]
    if best:
        verdict = {BEATS: "beats it", WITHIN_NOISE: "within noise", WORSE: "does not beat it", None: "?"}[
            best["vs_baseline"]
        ]
        stderr = f" ± {best['stderr']:.5f}" if _number(best.get("stderr")) else ""
        name = (best.get("best_baseline_name") or "").removeprefix("baseline_")
        base = best.get("best_baseline")
        base_text = f"best baseline{' (' + name + ')' if name else ''} " + (
            f"{base:.5f}" if _number(base) else "?"
        )
        lines.append(
            f"best so far: {best['value']:.5f}{stderr} (trial {','.join(best['ids'])})  |  {base_text}: {verdict}"
        )
    else:
        base = s["best_baseline"]
        lines.append(
            "best so far: no completed trial yet  |  best baseline "
            + (f"{base:.5f}" if _number(base) else "?")
        )
    budget = snap.get("budget") or {}
    if budget:
        used, cap = float(budget.get("gpu_hours") or 0.0), budget.get("gpu_hour_cap")
        share = f" ({100 * used / cap:.0f}%)" if _number(cap) and cap > 0 else ""
        lines.append(
            f"GPU-hours: {used:.3f} of cap {cap:g}{share}; cost {float(budget.get('cost') or 0):.2f} "
            f"{budget.get('currency', '')}"
        )
    lines += ["", format_leaderboard(snap, top=top)]
    return "\n".join(lines)


def over(run_dir: str, snap: dict[str, Any]) -> bool:
    """Whether nothing will change any more: no controller holds a local run's lock, or (gs://)
    no trial is pending or running."""
    if storage.is_gcs(run_dir):
        return not any(t["state"] in ACTIVE_STATES for t in snap.get("trials", []))
    return not ControllerLock(run_dir).held_by_other()


class Watch:
    """Redraws frames of a run in place until it is over.

    Args:
        run_dir: local path or gs:// URL.
        out: where frames go (a terminal: each frame replaces the last; otherwise frames follow
            each other, separated by a blank line).
        clock: unix seconds (injected in tests).
        sleep: waits between frames (injected in tests).
        interval: seconds between frames.
        tty: whether `out` is a terminal (default: ask it).
        width: terminal columns (lines are cut to it so the in-place redraw counts lines right).
    """

    def __init__(
        self,
        run_dir: str | os.PathLike,
        out: TextIO,
        clock: Callable[[], float],
        sleep: Callable[[float], None],
        interval: float = 2.0,
        tty: bool | None = None,
        width: int | None = None,
    ) -> None:
        self.run_dir = str(run_dir)
        self.out = out
        self.clock = clock
        self.sleep = sleep
        self.interval = interval
        self.tty = out.isatty() if tty is None else tty
        self.width = width or shutil.get_terminal_size((120, 40)).columns
        self._drawn = 0  # lines of the frame on screen

    def draw(self) -> bool:
        """Draw one frame; True when the run is over (that frame was the last)."""
        snap, settings = read_run(self.run_dir)
        done = over(self.run_dir, snap)
        text = frame(self.run_dir, snap, settings, self.clock())
        if done:
            text += "\n(the run is over: nothing more to watch)"
        lines = text.split("\n")
        if self.tty:
            lines = [line[: self.width - 1] for line in lines]
            if self._drawn:
                self.out.write(f"\x1b[{self._drawn}F\x1b[J")  # back to the frame's first line, clear below
        elif self._drawn:
            self.out.write("\n")
        self.out.write("\n".join(lines) + "\n")
        self.out.flush()
        self._drawn = len(lines)
        return done

    def run(self) -> None:
        """Frames every `interval` seconds until the run is over or Ctrl-C."""
        try:
            while not self.draw():
                self.sleep(self.interval)
        except KeyboardInterrupt:
            pass


def _number(v: object) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
