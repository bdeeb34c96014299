"""Print the robustness table of issue 17: every case in cases.py run against the real CLIs.

Usage: .venv/bin/python tests/robustness/table.py [-v]

Columns: cases tried, clean errors (or clean handling: a rebuild with a note, a refused
--out, a re-derived trial), tracebacks, bad inputs silently accepted, trials lost, mislabelled or
repeated, and anything else (unclean). -v prints every case's outcome and stderr line.
"""

from __future__ import annotations

import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cases import CASES, Workspace, build_base_run, build_dataset, run_case, run_ctrl_c  # noqa: E402

KINDS = ("clean", "traceback", "accepted", "data", "unclean")


def main(verbose: bool) -> int:
    began = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="robust-table-") as tmp:
        root = Path(tmp)
        dataset = build_dataset(root / "zeros")
        base = build_base_run(root / "base" / "phase2-minibatch", dataset)
        outcomes = []
        for i, case in enumerate(CASES):
            ws_root = root / f"case{i}"
            ws_root.mkdir()
            outcomes.append(run_case(case, Workspace(ws_root, base, dataset)))
        ctrl_root = root / "ctrl-c"
        ctrl_root.mkdir()
        outcomes.append(run_ctrl_c(Workspace(ctrl_root, base, dataset)))
    by_group: dict[str, Counter] = {}
    for o in outcomes:
        by_group.setdefault(o.case.group, Counter())[o.kind] += 1
        if verbose or o.kind != "clean":
            known = f"  [known: {o.case.known}]" if o.case.known else ""
            print(f"  {o.kind:<9} {o.case.group:<13} {o.case.name}: exit {o.rc}; {o.detail}{known}")
    total = Counter(o.kind for o in outcomes)
    print(
        f"\n{'group':<14}{'cases':>6}{'clean':>7}{'traceback':>11}{'accepted':>10}{'lost/mislab/rep':>17}{'unclean':>9}"
    )
    for group, c in [*sorted(by_group.items()), ("all", total)]:
        print(
            f"{group:<14}{sum(c.values()):>6}{c['clean']:>7}{c['traceback']:>11}{c['accepted']:>10}"
            f"{c['data']:>17}{c['unclean']:>9}"
        )
    print(f"\n{len(outcomes)} cases in {time.perf_counter() - began:.0f} s")
    return 0 if total["clean"] == len(outcomes) else 1


if __name__ == "__main__":
    sys.exit(main("-v" in sys.argv[1:]))
