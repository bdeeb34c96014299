"""What the CLI loads at run time: `orchestrator --help` and `status` load none of torch, the
trainer, optuna or a cloud SDK. (Which module may import which is checked statically by
import-linter in `make lint`; the contracts are in pyproject.toml.)"""

from __future__ import annotations

import subprocess
import sys


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
