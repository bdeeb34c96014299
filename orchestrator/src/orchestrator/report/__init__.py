"""The research report: read run directories, compute the answer against the baselines, draw and
render it (index.html, summary.md, PNG plots). Reads files only; matplotlib is imported lazily."""

from orchestrator.report.build import build_report

__all__ = ["build_report"]
