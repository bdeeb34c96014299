"""Render the report's two pages, index.html and summary.md, from `report.analysis` results.
Every number is formatted by `analysis.fmt`, so the two pages print the same figures."""

from __future__ import annotations

import html
from dataclasses import dataclass

from orchestrator.report.analysis import (
    BEATS_RULE,
    Championship,
    ExperimentSummary,
    Headline,
    fmt,
    fmt_paired,
    fmt_pm,
    outcome_text,
    params_text,
    pooled,
    state_counts,
)
from orchestrator.report.load import Loaded, Run, mean_baselines
from orchestrator.trial_outputs import TEST, TUNE

LEADERBOARD_COLUMNS = (
    "rank",
    "trial",
    "tune error ± stderr",
    "test error ± stderr",
    "test: model - best baseline (paired)",
    "test skill",
    "beats baselines (test)",
    "params",
)
PLAYBOOK_LINK = (
    "Each round's table, the promoted trials, the gates, the cost per trial and the final ranking "
    "(gates, then the paired test objective) are on playbook.{ext}."
)
PLOT_CAPTIONS = {
    "arms.png": "Arms of the experiment: test-window error per seed and mean, against the baselines there.",
    "leaderboard.png": "Best trials of each run: objective ± stderr against the baselines.",
    "history.png": "Optimisation history: objective in trial order and the best so far.",
    "gue_weights.png": "gue_nll_weight x gue_mmd_weight (log axes), coloured by objective.",
    "spacings.png": "Predicted unfolded spacings against the data and the Wigner surmise.",
    "block_variance.png": "Block-sum variance across scales L, predicted against the data.",
    "curves.png": "Loss curves and the val-window error per epoch of the best trials.",
    "horizon.png": "Error at each step k of the rollout: the champion against every baseline, tune and test windows.",
    "arm_horizons.png": "Error at each step k per arm (seeds averaged) against the baselines, tune and test windows.",
}


@dataclass
class Page:
    """Everything the renderers need."""

    loaded: Loaded
    headline: Headline
    experiments: list[ExperimentSummary]
    championships: list[Championship]
    plots: list[str]  # PNG file names written beside the pages, in PLOT_CAPTIONS order
    generated: str  # UTC timestamp
    top: int = 20  # leaderboard rows per run


def leaderboard_rows(run: Run, top: int) -> list[list[str]]:
    """Cells of a run's leaderboard, ranked by the tune objective, judged on the test windows."""
    rows = []
    for rank, t in enumerate(run.completed[:top], start=1):
        rows.append(
            [
                str(rank),
                t.id,
                fmt_pm(t.value, t.metric("extrapolation_stderr")),
                fmt_pm(t.metric("test_extrapolation_error"), t.metric("test_extrapolation_stderr")),
                fmt_paired(pooled([t])),
                fmt(t.metric("test_skill")),
                outcome_text(t.vs_baseline(TEST)),
                params_text(t.params),
            ]
        )
    return rows


def baselines_line(run: Run) -> str:
    """The run's baselines on the tune and the test windows (mean over its completed trials)."""
    parts = []
    for name, prefix in (("tune", TUNE), ("test", TEST)):
        means = mean_baselines(run.completed, prefix)
        if means:
            parts.append(
                f"on the {name} windows "
                + ", ".join(
                    f"{k.removeprefix('baseline_')} {fmt(v)}"
                    for k, v in sorted(means.items(), key=lambda kv: kv[1])
                )
            )
    return ("Baselines " + "; ".join(parts) + ".") if parts else ""


def _run_notes(run: Run) -> list[str]:
    """One line per trial that ended without a result, and per completed trial that lacks a file."""
    notes = [
        f"trial {t.id} {t.state}: {t.reason or 'no reason recorded'}"
        for t in run.trials
        if t.state in ("INFEASIBLE", "FAILED", "STOPPED")
    ]
    notes += [f"trial {t.id}: missing {', '.join(t.missing)}" for t in run.completed if t.missing]
    return notes


def _runs_in_order(page: Page) -> list[Run]:
    return sorted(page.loaded.runs, key=lambda r: (str(r.phase), r.team, r.arm or ""))


def _arm_rows(summary: ExperimentSummary) -> list[list[str]]:
    rows = []
    for a in summary.arms:
        p = a.test
        rows.append(
            [
                a.run.arm or a.run.label,
                a.run.role or "",
                f"{len(a.run.completed)}/{len(a.run.trials)}",
                fmt(a.tune),
                fmt(p.error if p else None),
                f"{p.baseline.removeprefix('baseline_')} {fmt(p.baseline_error)}" if p else "—",
                fmt_pm(p.diff, p.stderr, signed=True) if p else "—",
                outcome_text(p.outcome if p else None),
                "yes" if a.holm_beats else "no",
            ]
        )
    return rows


ARM_COLUMNS = (
    "arm",
    "role",
    "seeds done",
    "tune error (mean over seeds)",
    "test error (seeds averaged per window)",
    "best baseline (test)",
    "model - best baseline ± paired stderr",
    "beats baselines (2 stderr)",
    "beats (Holm)",
)

CHAMPIONSHIP_COLUMNS = (
    "candidate",
    "seeds done",
    "tune error (mean over seeds)",
    "test error (seeds averaged per window)",
    "model - best baseline (paired)",
    "beats baselines (2 stderr)",
    "beats (Holm)",
    "params",
)


def _championship_rows(c: Championship) -> list[list[str]]:
    return [
        [
            cand.label,
            f"{len(cand.trials)}/{cand.n_seeds}",
            fmt(cand.tune),
            fmt(cand.test.error if cand.test else None),
            fmt_paired(cand.test),
            outcome_text(cand.test.outcome if cand.test else None),
            "yes" if cand.holm_beats else "no",
            params_text(cand.params),
        ]
        for cand in c.candidates
    ]


def _championship_text(c: Championship) -> list[str]:
    """The sentences under the table: how many were judged, the champion, MSE only against it."""
    return [line for line in c.lines[1:] if not line.startswith("  ")]


def _effect_text(summary: ExperimentSummary) -> str | None:
    eff = summary.minibatch_effect
    if eff is None:
        return None
    return (
        f"Team 2 (mini-batch) minus Team 1 with rg_penalty on the test windows: {eff.diff:+.4g} "
        f"(paired over {eff.windows} windows, seeds averaged per window; {eff.level:.0%} CI "
        f"[{eff.lo:+.4g}, {eff.hi:+.4g}])."
    )


# ---------------------------------------------------------------- markdown


def _md_table(columns, rows) -> list[str]:
    def cell(s: str) -> str:
        return s.replace("|", "\\|")

    out = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    out += ["| " + " | ".join(cell(c) for c in row) + " |" for row in rows]
    return out


def render_markdown(page: Page) -> str:
    """summary.md: the answer, the experiment, the leaderboards, the list of plots."""
    lines = ["# zeta-swarm report", "", f"Generated {page.generated} from:", ""]
    lines += [f"- `{r.path}` ({r.label}; {state_counts(r)})" for r in page.loaded.runs]
    lines += ["", "## Answer", "", page.headline.text, ""]
    for summary in page.experiments:
        lines += [
            f"## Experiment `{summary.experiment.path}`",
            "",
            f"**Verdict.** {summary.verdict_text}",
            "",
        ]
        lines += [f"**Baselines.** {summary.baselines_text}", ""]
        if (text := _effect_text(summary)) is not None:
            lines += [text, ""]
        lines += _md_table(ARM_COLUMNS, _arm_rows(summary)) + [""]
        lines += [f"- {n}" for n in summary.notes] + ([""] if summary.notes else [])
    for champ in page.championships:
        lines += [f"## Championship `{champ.run.path}`", "", champ.lines[0], ""]
        lines += _md_table(CHAMPIONSHIP_COLUMNS, _championship_rows(champ)) + [""]
        lines += [f"- {t}" for t in _championship_text(champ)] + [""]
    for run in page.loaded.runs:  # playbook hook: its page beside this one
        if run.playbook is not None:
            lines += [f"## Playbook `{run.path}`", "", PLAYBOOK_LINK.format(ext="md"), ""]
    lines += [
        "## Leaderboards",
        "",
        f"Ranked by the tune objective; a trial beats the baselines when {BEATS_RULE}.",
        "",
    ]
    for run in _runs_in_order(page):
        lines += [f"### {run.label}", "", f"`{run.path}`: {state_counts(run)}", ""]
        if text := baselines_line(run):
            lines += [text, ""]
        rows = leaderboard_rows(run, page.top)
        lines += _md_table(LEADERBOARD_COLUMNS, rows) if rows else ["No completed trial."]
        lines += [""] + [f"- {n}" for n in _run_notes(run)] + [""]
    if page.plots:
        lines += ["## Plots", ""] + [f"- [{p}]({p}): {PLOT_CAPTIONS[p]}" for p in page.plots] + [""]
    return "\n".join(lines)


# ---------------------------------------------------------------- html

_CSS = """
body { font-family: system-ui, sans-serif; max-width: 1200px; margin: 2em auto; padding: 0 1em; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: right; }
td:last-child, th:last-child { text-align: left; }
.answer { font-size: 1.15em; background: #fff6e0; border-left: 4px solid #e0a000; padding: 0.6em 1em; }
.verdict { font-size: 1.1em; background: #eef4ff; border-left: 4px solid #3060c0; padding: 0.6em 1em; }
figure { margin: 1em 0; } img { max-width: 100%; border: 1px solid #eee; }
code { background: #f4f4f4; padding: 0 0.2em; }
"""


def _h(s: object) -> str:
    return html.escape(str(s))


def _html_table(columns, rows) -> str:
    head = "".join(f"<th>{_h(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{_h(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _figure(name: str, alt: str | None = None) -> str:
    return f"<figure><img src='{_h(name)}' alt='{_h(alt or name)}'><figcaption>{_h(PLOT_CAPTIONS[name])}</figcaption></figure>"


def render_html(page: Page) -> str:
    """index.html: the same content as summary.md, with the plots inline."""
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>zeta-swarm report</title>",
        f"<style>{_CSS}</style></head><body>",
        "<h1>zeta-swarm report</h1>",
        f"<p>Generated {_h(page.generated)} from:</p><ul>",
    ]
    parts += [
        f"<li><code>{_h(r.path)}</code> ({_h(r.label)}; {_h(state_counts(r))})</li>" for r in page.loaded.runs
    ]
    parts += ["</ul>", "<h2>Answer</h2>", f"<p class='answer'>{_h(page.headline.text)}</p>"]
    for summary in page.experiments:
        parts += [
            f"<h2>Experiment <code>{_h(summary.experiment.path)}</code></h2>",
            f"<p class='verdict'><b>Verdict.</b> {_h(summary.verdict_text)}</p>",
            f"<p><b>Baselines.</b> {_h(summary.baselines_text)}</p>",
        ]
        if (text := _effect_text(summary)) is not None:
            parts.append(f"<p>{_h(text)}</p>")
        parts.append(_html_table(ARM_COLUMNS, _arm_rows(summary)))
        if summary.notes:
            parts.append("<ul>" + "".join(f"<li>{_h(n)}</li>" for n in summary.notes) + "</ul>")
        if "arms.png" in page.plots:
            parts.append(_figure("arms.png", alt="arms"))
    for champ in page.championships:
        parts += [
            f"<h2>Championship <code>{_h(champ.run.path)}</code></h2>",
            f"<p>{_h(champ.lines[0])}</p>",
            _html_table(CHAMPIONSHIP_COLUMNS, _championship_rows(champ)),
            "<ul>" + "".join(f"<li>{_h(t)}</li>" for t in _championship_text(champ)) + "</ul>",
        ]
    for run in page.loaded.runs:  # playbook hook: its page beside this one
        if run.playbook is not None:
            link = PLAYBOOK_LINK.format(ext="html").replace(
                "playbook.html", "<a href='playbook.html'>playbook.html</a>"
            )
            parts += [f"<h2>Playbook <code>{_h(run.path)}</code></h2>", f"<p>{link}</p>"]
    parts += [
        "<h2>Leaderboards</h2>",
        f"<p>Ranked by the tune objective; a trial beats the baselines when {_h(BEATS_RULE)}.</p>",
    ]
    for run in _runs_in_order(page):
        parts += [f"<h3>{_h(run.label)}</h3>", f"<p><code>{_h(run.path)}</code>: {_h(state_counts(run))}</p>"]
        if text := baselines_line(run):
            parts.append(f"<p>{_h(text)}</p>")
        rows = leaderboard_rows(run, page.top)
        parts.append(_html_table(LEADERBOARD_COLUMNS, rows) if rows else "<p>No completed trial.</p>")
        if notes := _run_notes(run):
            parts.append("<ul>" + "".join(f"<li>{_h(n)}</li>" for n in notes) + "</ul>")
    figures = [p for p in page.plots if p != "arms.png" or not page.experiments]
    if figures:
        parts.append("<h2>Plots</h2>")
        parts += [_figure(p) for p in figures]
    parts.append("</body></html>")
    return "\n".join(parts)
