"""The report's playbook page (playbook.html and playbook.md beside index.html) and the ranking the
playbook phase prints when it ends: each round's table (small evaluation on the tune windows),
the promoted configurations (full evaluation, seeds pooled), the gates, the cost per trial, the
final ranking by gates, then task, and the best multi-step-trained configuration against the best
one-step-trained one on the test windows."""

from __future__ import annotations

import html
import math
from dataclasses import dataclass
from typing import Any

from orchestrator.report.analysis import fmt, fmt_paired, params_text, pooled
from orchestrator.report.load import Run, Trial, load_run
from orchestrator.report.playbook_rank import (
    GATES,
    Config,
    HorizonComparison,
    config_of,
    failed_gates,
    gate_values,
    group_configs,
    horizon_comparison,
    rank,
)
from orchestrator.trial_outputs import TUNE

PROMOTE = "promote"  # orchestrator.playbook.PROMOTE (the report imports no settings: import-linter)


@dataclass
class RoundView:
    name: str
    kind: str  # the small round's design kind, or "promote"
    title: str
    trials: list[Trial]
    configs: list[Config]  # promote rounds: the promoted configurations, seeds pooled


@dataclass
class PlaybookView:
    run: Run
    gates: dict[str, float]
    rounds: list[RoundView]
    ranking: list[Config]
    horizon: HorizonComparison | None
    unassigned: list[Trial]  # trials of a round that has not finished (not in playbook.json yet)


def view(run: Run) -> PlaybookView:
    """A playbook run's rounds, ranking and horizon comparison (run.playbook must be set)."""
    pb = run.playbook or {}
    gates = {g: float(pb.get("gates", {}).get(g, math.inf)) for g in GATES}
    by_id = {t.id: t for t in run.trials}
    titles = pb.get("titles") or {}
    rounds: list[RoundView] = []
    seen: set[str] = set()
    every: dict[str, Config] = {}
    for name, rec in (pb.get("rounds") or {}).items():
        trials = [by_id[i] for i in rec.get("trials", []) if i in by_id]
        seen.update(t.id for t in trials)
        kind = str(rec.get("kind", "?"))
        configs: list[Config] = []
        if kind == PROMOTE:
            configs = group_configs(
                name, [(t.id, t.params, _value(t), t.final) for t in trials if t.completed], gates
            )
            for c in configs:  # a configuration two promote rounds share is ranked once
                every.setdefault(repr(sorted(c.params.items())), c)
        small = name.removesuffix("-full")
        rounds.append(RoundView(name, kind, titles.get(small, ""), trials, configs))
    ranked = rank(list(every.values()))
    unassigned = [t for t in run.trials if t.id not in seen]
    return PlaybookView(run, gates, rounds, ranked, horizon_comparison(ranked), unassigned)


def _value(t: Trial) -> float | None:
    v = t.value
    return None if math.isnan(v) else v


# -- cells ------------------------------------------------------------------------------------
def _varied(params: list[dict[str, Any]]) -> list[str]:
    """The keys whose values differ among these params (what a round's table must show)."""
    keys = sorted({k for p in params for k in p})
    return [k for k in keys if len({repr(p.get(k)) for p in params}) > 1]


def _knobs(params: dict[str, Any], keys: list[str]) -> str:
    return params_text({k: params[k] for k in keys if k in params}) or "—"


def _gates_cell(final: dict | None, gates: dict[str, float]) -> str:
    values = gate_values(final)
    failed = failed_gates(final, gates)
    shown = " ".join(f"{g.split('_')[0]}={fmt(values[g])}" for g in GATES)
    return f"{'pass' if not failed else 'FAIL ' + ','.join(failed)} ({shown})"


def _cost_cell(final: dict | None) -> str:
    cost = (final or {}).get("cost")
    if not isinstance(cost, dict):
        return "—"
    sps = cost.get("seconds_per_step")
    cpu = cost.get("cpu_seconds")
    gpu = cost.get("train_seconds") if str(cost.get("device", "")).startswith("cuda") else None
    parts = [f"{fmt(_num(sps))} s/step"]
    parts.append(f"{fmt(_num(gpu) / 3600)} GPU-h" if gpu is not None else f"{fmt(_num(cpu) / 3600)} CPU-h")
    return ", ".join(parts)


def _num(v: Any) -> float:
    return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else math.nan


def _config_cost(c: Config) -> str:
    cost = c.cost()
    hours = f"{fmt(cost['gpu_hours'])} GPU-h" if cost["gpu_hours"] > 0 else f"{fmt(cost['cpu_hours'])} CPU-h"
    return f"{fmt(cost['seconds_per_step'])} s/step, {hours} ({len(c.finals)} seeds)"


def _config_gates(c: Config) -> str:
    worst = " ".join(f"{g.split('_')[0]}={fmt(c.worst(g))}" for g in GATES)
    return f"{'pass' if not c.failed else 'FAIL ' + ','.join(c.failed)} (worst seed: {worst})"


SMALL_COLUMNS = (
    "trial",
    "knobs",
    "state",
    "tune error",
    "tune: model - best baseline",
    "gates",
    "cost",
    "promoted",
)
CONFIG_COLUMNS = (
    "configuration",
    "trials (seeds)",
    "tune error (mean)",
    "task: test model - best baseline",
    "gates",
    "cost",
)
RANK_COLUMNS = ("rank", "round", *CONFIG_COLUMNS)


def small_rows(rv: RoundView, promoted: list[dict[str, Any]], gates: dict[str, float]) -> list[list[str]]:
    keys = _varied([t.params for t in rv.trials])
    rows = []
    for t in sorted(rv.trials, key=lambda t: (not t.completed, t.value if t.completed else 0)):
        rows.append(
            [
                t.id,
                _knobs(t.params, keys),
                t.state.lower() + (f": {t.reason}" if t.reason and t.state == "STOPPED" else ""),
                fmt(t.value) if t.completed else "—",
                fmt_paired(pooled([t], TUNE)) if t.completed else "—",
                _gates_cell(t.final, gates) if t.completed else "—",
                _cost_cell(t.final),
                "yes" if config_of(t.params) in promoted else "",
            ]
        )
    return rows


def config_rows(configs: list[Config], keys: list[str], with_rank: bool = False) -> list[list[str]]:
    rows = []
    for i, c in enumerate(configs, start=1):
        row = [
            _knobs(c.params, keys),
            f"{', '.join(c.trials)} (seeds {', '.join(str(s) for s in c.seeds)})",
            fmt(c.tune),
            fmt_paired(c.task()),
            _config_gates(c),
            _config_cost(c),
        ]
        rows.append([str(i), c.round, *row] if with_rank else row)
    return rows


@dataclass
class Section:
    heading: str
    lines: list[str]
    columns: tuple[str, ...]
    rows: list[list[str]]


def sections(v: PlaybookView) -> list[Section]:
    """The page's sections in order: rounds (small, then promoted), the ranking, the horizons."""
    out: list[Section] = []
    gate_text = ", ".join(f"{g} <= {fmt(t)}" for g, t in v.gates.items())
    small_by_name = {rv.name: rv for rv in v.rounds}
    for rv in v.rounds:
        if rv.kind == PROMOTE:
            small = small_by_name.get(rv.name.removesuffix("-full"))
            keys = _varied([c.params for c in rv.configs]) or _varied(
                [t.params for t in small.trials] if small else []
            )
            out.append(
                Section(
                    f"Round {rv.name}: full evaluation of the promoted configurations",
                    [
                        f"{len(rv.trials)} trials; each configuration's seeds averaged per test window, paired with the best baseline."
                    ],
                    CONFIG_COLUMNS,
                    config_rows(rv.configs, keys),
                )
            )
            continue
        promote = small_by_name.get(f"{rv.name}-full")
        promoted = [config_of(t.params) for t in promote.trials] if promote else []
        carried = sorted(set.intersection(*[set(t.params.items()) for t in rv.trials])) if rv.trials else []
        keys = set(_varied([t.params for t in rv.trials]))
        carried_text = params_text({k: val for k, val in carried if k not in keys})
        out.append(
            Section(
                f"Round {rv.name}" + (f": {rv.title}" if rv.title else ""),
                [
                    f"Small evaluation on the tune windows; {len(rv.trials)} trials"
                    + (f"; fixed or carried: {carried_text}" if carried_text else "")
                    + f". Gates: {gate_text}."
                ],
                SMALL_COLUMNS,
                small_rows(rv, promoted, v.gates),
            )
        )
    keys = _varied([c.params for c in v.ranking])
    lines = [
        "Every configuration of a full evaluation, ranked: a configuration failing a gate (with any seed) "
        "ranks below every one that passes; then by the task, the mean over the test windows of "
        "(model - best baseline), each window's model error averaged over the seeds first."
    ]
    out.append(
        Section(
            "Final ranking (task + gates + cost)", lines, RANK_COLUMNS, config_rows(v.ranking, keys, True)
        )
    )
    out.append(
        Section(
            "Multi-step against one-step training",
            [
                v.horizon.text()
                if v.horizon
                else "needs a full-evaluated configuration of each (max_horizon > 1 and = 1)"
            ],
            (),
            [],
        )
    )
    if v.unassigned:
        out.append(
            Section(
                "Trials of a round still running",
                [", ".join(f"{t.id} ({t.state.lower()})" for t in v.unassigned)],
                (),
                [],
            )
        )
    return out


# -- renderers --------------------------------------------------------------------------------
def render_markdown(v: PlaybookView) -> str:
    out = [f"# Playbook: {v.run.path}", ""]
    for s in sections(v):
        out += [f"## {s.heading}", "", *s.lines, ""]
        if s.columns:
            out.append("| " + " | ".join(s.columns) + " |")
            out.append("|" + "---|" * len(s.columns))
            out += ["| " + " | ".join(c.replace("|", "/") for c in row) + " |" for row in s.rows]
            out.append("")
    return "\n".join(out)


def render_html(v: PlaybookView) -> str:
    e = html.escape
    body = [f"<h1>Playbook: {e(str(v.run.path))}</h1>", '<p><a href="index.html">back to the report</a></p>']
    for s in sections(v):
        body.append(f"<h2>{e(s.heading)}</h2>")
        body += [f"<p>{e(line)}</p>" for line in s.lines]
        if s.columns:
            body.append(
                "<table><thead><tr>" + "".join(f"<th>{e(c)}</th>" for c in s.columns) + "</tr></thead><tbody>"
            )
            body += ["<tr>" + "".join(f"<td>{e(c)}</td>" for c in row) + "</tr>" for row in s.rows]
            body.append("</tbody></table>")
    style = (
        "body{font-family:sans-serif;margin:2em;max-width:110em}table{border-collapse:collapse;margin:1em 0}"
        "td,th{border:1px solid #ccc;padding:.3em .6em;text-align:left;font-size:90%}th{background:#f3f3f3}"
    )
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8"><title>zeta-swarm playbook</title>'
        f"<style>{style}</style></head><body>{''.join(body)}</body></html>\n"
    )


def ranking_lines(run_dir: str, snap: dict[str, Any]) -> list[str]:
    """What the playbook phase prints at its end: the final ranking and the horizon comparison."""
    v = view(load_run(run_dir, snap))
    keys = _varied([c.params for c in v.ranking])
    lines = [
        "",
        "playbook ranking (gates first, then the task: test-window model - best baseline, seeds pooled):",
    ]
    for row in config_rows(v.ranking, keys, with_rank=True):
        lines.append("  " + " | ".join(row))
    lines.append(
        v.horizon.text()
        if v.horizon
        else "multi-step vs one-step: needs a full-evaluated configuration of each"
    )
    return lines
