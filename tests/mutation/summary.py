"""Print the summary of a mutmut run over the patterns in STAGE_DIR/scope.txt: counts by status,
per module, and every mutant that survived (or timed out), with its changed lines (`mutmut show`).
"not checked" counts the mutants in scope that a group's time cap left untried.
Usage: summary.py STAGE_DIR (where run.sh ran mutmut)."""

from __future__ import annotations

import collections
import fnmatch
import re
import subprocess
import sys
from pathlib import Path

stage = Path(sys.argv[1])
line_re = re.compile(r"^\s*(\S+__mutmut_\d+): (.+)$")
scope = (stage / "scope.txt").read_text().split()
rows = [m.groups() for line in (stage / "results.txt").read_text().splitlines() if (m := line_re.match(line))]
rows = [(name, status) for name, status in rows if any(fnmatch.fnmatch(name, p) for p in scope)]
by_status = collections.Counter(status for _, status in rows)
print("mutants:", len(rows), "|", ", ".join(f"{s} {n}" for s, n in by_status.most_common()))
per_module: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
for name, status in rows:
    module = re.split(r"\.x[_ǁ]", name)[0]
    per_module[module][status] += 1
for module, counts in sorted(per_module.items()):
    print(f"  {module}: " + ", ".join(f"{s} {n}" for s, n in counts.most_common()))
bin_dir = Path(sys.executable).parent
for name, status in rows:
    if status in ("killed", "not checked"):
        continue
    diff = subprocess.run(
        [str(bin_dir / "mutmut"), "show", name], cwd=stage, capture_output=True, text=True
    ).stdout
    changed = [x for x in diff.splitlines() if x[:1] in "+-" and x[:3] not in ("+++", "---")]
    print(f"\n{name}: {status}")
    for x in changed[:6]:
        print("   ", x)
