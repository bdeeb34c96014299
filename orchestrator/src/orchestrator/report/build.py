"""Build a report directory: read the run files, compute, draw, render, and publish atomically."""

from __future__ import annotations

import datetime as dt
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from orchestrator.errors import ConfigError
from orchestrator.report import analysis, horizon, playbook, plots
from orchestrator.report.html import PLOT_CAPTIONS, Page, render_html, render_markdown
from orchestrator.report.load import load
from orchestrator.storage import is_gcs


def _draw(loaded, tmp: Path, progress: Callable[[str], None]) -> list[str]:
    chosen = analysis.picks(loaded)
    drawers = {
        "arms.png": lambda p: any(plots.arms(e, p) for e in loaded.experiments[:1]),
        "leaderboard.png": lambda p: plots.leaderboard(loaded.runs, p),
        "history.png": lambda p: plots.history(loaded.runs, p),
        "gue_weights.png": lambda p: plots.gue_weights(loaded.runs, p),
        "spacings.png": lambda p: plots.spacings(chosen, p),
        "block_variance.png": lambda p: plots.block_variance(chosen, p),
        "curves.png": lambda p: plots.curves(chosen, p),
        "horizon.png": lambda p: horizon.horizon(loaded, p),
        "arm_horizons.png": lambda p: horizon.arm_horizons(loaded, p),
    }
    assert drawers.keys() == PLOT_CAPTIONS.keys()
    written = []
    for name, draw in drawers.items():
        progress(f"drawing {name}")
        if draw(tmp / name):
            written.append(name)
    return written


# What a report directory holds; an existing --out with anything else is not a previous report.
_REPORT_SUFFIXES = (".html", ".md", ".png")
_RUN_MARKERS = ("trials.json", "experiment.json", "study.db", "swarm.yaml", "events.jsonl", "jobs", "trials")


def _check_replaceable(out: Path, paths: list[str]) -> None:
    """Refuse an --out that replacing would destroy data: a directory that is, holds or lies above a
    run directory, or any existing directory that is not a previous report.

    Raises:
        ConfigError: one line naming what is in the way.
    """
    target = out.resolve()
    for p in paths:
        if not is_gcs(p):
            src = Path(p).resolve()
            if src == target or target in src.parents:
                raise ConfigError(f"--out {out}: would replace the run directory {p}; choose a new directory")
    if not out.exists():
        return
    for f in out.rglob("*"):
        if f.name in _RUN_MARKERS:
            raise ConfigError(
                f"--out {out}: holds {f.relative_to(out)}, part of a run; a report never replaces a run, "
                "choose a new directory"
            )
        if f.is_dir() or f.suffix not in _REPORT_SUFFIXES:
            raise ConfigError(
                f"--out {out}: exists and is not a previous report (it holds {f.relative_to(out)}); "
                "choose a new directory or remove it yourself"
            )


def build_report(
    paths: list[str],
    out: str | Path,
    progress: Callable[[str], None] = lambda _: None,
    plots: bool = True,
) -> Path:
    """Write OUT/index.html, OUT/summary.md and the PNG plots beside them.

    The pages are built in a temporary directory next to OUT and renamed into place, so OUT is
    either the previous report or the complete new one, never half-written.

    Args:
        paths: run or experiment directories (local paths or gs:// URLs).
        out: local output directory; replaced if it exists.
        progress: called with a short line before each step (default: silent).
        plots: draw the PNG figures (default True); False writes the two pages alone, in a second.

    Raises:
        ConfigError: bad input (missing directory, malformed file) or an output path that is a file.
    """
    if is_gcs(out):  # before Path(), which would make gs://b a local gs:/b
        raise ConfigError(f"--out {out}: the report is written locally; copy it to gs:// afterwards")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out}: exists and is not a directory")
    _check_replaceable(out, paths)
    loaded = load(paths)  # before any output, so bad input prints its one error line alone
    progress(f"read {len(loaded.runs)} run(s), {sum(len(r.trials) for r in loaded.runs)} trial(s)")
    page_data = dict(
        loaded=loaded,
        headline=analysis.headline(loaded),
        experiments=[analysis.experiment_summary(e) for e in loaded.experiments],
        championships=[analysis.championship(r) for r in loaded.runs if r.championship is not None],
        generated=dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        page = Page(plots=_draw(loaded, tmp, progress) if plots else [], **page_data)
        (tmp / "summary.md").write_text(render_markdown(page), encoding="utf-8")
        (tmp / "index.html").write_text(render_html(page), encoding="utf-8")
        for run in loaded.runs:  # playbook hook: its own page (one playbook run per report)
            if run.playbook is not None:
                v = playbook.view(run)
                (tmp / "playbook.md").write_text(playbook.render_markdown(v), encoding="utf-8")
                (tmp / "playbook.html").write_text(playbook.render_html(v), encoding="utf-8")
        os.chmod(tmp, 0o755)  # mkdtemp makes it private; a report is for reading
        old = None
        if out.exists():
            old = out.with_name(f".{out.name}.old-{os.getpid()}")
            out.rename(old)
        tmp.rename(out)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    progress(f"wrote {out / 'index.html'}")
    return out
