"""The report in a real browser: headless Chromium (Debian's `chromium`) opens index.html of a small
run with no network, and the page must load every image with no console error and no request
beyond its own files. The screenshot is kept under the test's tmp dir."""

from __future__ import annotations

import importlib.util
import struct
from pathlib import Path

import pytest
from headless_chromium import Chromium, available
from orchestrator.report import build_report

pytestmark = pytest.mark.skipif(
    available() is None,
    reason="needs Debian's chromium on PATH: `make install` installs it with apt-get (CI, the project's machines)",
)

_spec = importlib.util.spec_from_file_location(
    "report_run_files", Path(__file__).resolve().parents[1] / "report" / "run_files.py"
)
run_files = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(run_files)


def _png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", path
    return struct.unpack(">II", data[16:24])


def test_the_report_renders_offline_with_every_image_and_no_console_error(tmp_path):
    run = run_files.write_run(tmp_path / "phase2-minibatch", run_files.WINNING, team="minibatch")
    out = build_report([str(run)], tmp_path / "report")
    plots = sorted(p.name for p in out.glob("*.png"))
    assert "horizon.png" in plots and len(plots) >= 6
    with Chromium(width=1200) as browser:
        page = browser.open(str(out / "index.html"), offline=True)
        shot = browser.screenshot(tmp_path / "report-screenshot.png")
    assert page.console_errors == []
    assert page.failed_loads == []
    assert page.requests and all(u.startswith(("file://", "data:")) for u in page.requests), page.requests
    shown = sorted(Path(i["src"]).name for i in page.images)
    assert shown == plots
    assert all(i["complete"] and i["width"] > 0 and i["height"] > 0 for i in page.images), page.images
    width, height = _png_size(shot)
    assert width == 1200 and height > 2000  # the whole page, plots included


def test_the_check_catches_a_missing_image_and_a_console_error(tmp_path):
    page_file = tmp_path / "broken.html"
    page_file.write_text(
        "<!doctype html><html><body><img src='missing.png'>"
        "<script>console.error('boom')</script><img src='https://example.invalid/x.png'></body></html>"
    )
    with Chromium() as browser:
        page = browser.open(str(page_file), offline=True)
    assert any("boom" in e for e in page.console_errors)
    assert any("missing.png" in f for f in page.failed_loads)
    assert any(u.startswith("https://") for u in page.requests)
    assert [i["width"] for i in page.images] == [0, 0]
