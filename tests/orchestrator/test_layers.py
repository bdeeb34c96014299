"""Import layers: the orchestrator never imports torch, torch_geometric or the trainer; cloud SDKs only
in the Vertex/Vizier modules; `orchestrator --help` loads none of torch, trainer, optuna or a cloud SDK."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import orchestrator

PACKAGE = Path(orchestrator.__file__).parent
FORBIDDEN = ("torch", "torch_geometric", "trainer")
CLOUD = ("google", "vizier")


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_no_module_imports_torch_or_the_trainer():
    offenders = {
        str(p.relative_to(PACKAGE)): sorted(n for n in _imports(p) if n.split(".")[0] in FORBIDDEN)
        for p in PACKAGE.rglob("*.py")
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def test_cloud_sdks_only_in_vertex_and_vizier_modules():
    offenders = {}
    for p in PACKAGE.rglob("*.py"):
        if "vertex" in p.name or "vizier" in p.name:
            continue
        bad = sorted(n for n in _imports(p) if n.split(".")[0] in CLOUD)
        if bad:
            offenders[str(p.relative_to(PACKAGE))] = bad
    assert offenders == {}


def test_help_imports_nothing_heavy():
    code = (
        "import sys\n"
        "from click.testing import CliRunner\n"
        "from orchestrator.cli import main\n"
        "r = CliRunner().invoke(main, ['--help'])\n"
        "assert r.exit_code == 0, r.output\n"
        "heavy = ('torch', 'torch_geometric', 'trainer', 'optuna', 'vizier', 'matplotlib', 'numpy', 'sqlalchemy')\n"
        "loaded = {m.split('.')[0] for m in sys.modules} & set(heavy)\n"
        # `google` and `google.cloud` are empty namespace packages a .pth file creates at start-up.
        "loaded |= {m for m in sys.modules if m.startswith('google.') and m != 'google.cloud'}\n"
        "print(sorted(loaded))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_status_imports_no_optuna(tmp_path):
    code = (
        "import sys, json\n"
        "from click.testing import CliRunner\n"
        "from orchestrator.cli import main\n"
        f"open({str(tmp_path / 'trials.json')!r}, 'w').write(json.dumps({{'study': 's', 'trials': []}}))\n"
        f"r = CliRunner().invoke(main, ['status', '--run-dir', {str(tmp_path)!r}])\n"
        "assert r.exit_code == 0, r.output\n"
        "loaded = {m.split('.')[0] for m in sys.modules} & {'optuna', 'torch', 'sqlalchemy', 'numpy'}\n"
        "print(sorted(loaded | {m for m in sys.modules if m.startswith('google.') and m != 'google.cloud'}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
