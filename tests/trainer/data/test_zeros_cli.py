"""`trainer zeros ...` end to end: CliRunner for every command and bad input, one real subprocess."""

from __future__ import annotations

import gzip
import json
import pickle
import re
import subprocess
import sys
import uuid
import zlib
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from trainer.cli import main
from trainer.data.dataset import MANIFEST_FILE, ZEROS_FILE, open_dataset


@pytest.fixture
def run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)

    def invoke(*args):
        return CliRunner().invoke(main, ["zeros", *map(str, args)], catch_exceptions=False)

    return invoke


@pytest.fixture(scope="module")
def first_zeros(tmp_path_factory):
    from trainer.data.odlyzko import load_table

    return load_table(3000)


def _text(zeros) -> str:
    return "".join(f"{z:.9f}\n" for z in zeros)


def _error_line(result) -> str:
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("trainer: error: ")
    return lines[0]


def test_odlyzko_info_verify(run, tmp_path):
    result = run("odlyzko", "--out", "od", "--count", "5000")
    assert result.exit_code == 0, result.output
    assert "5000 zeros, n = 1..5000" in result.stdout
    info = run("info", "od", "--json")
    summary = json.loads(info.stdout)
    assert summary["count"] == 5000 and summary["manifest"]["source"] == "odlyzko"
    assert summary["gamma_first"] == pytest.approx(14.134725142)
    assert "source:       odlyzko" in run("info", "od").stdout
    verified = run("verify", "od")
    assert verified.exit_code == 0 and "sha256 ok" in verified.stdout


def test_import_text_gz_and_two_columns(run, tmp_path, first_zeros):
    (tmp_path / "z.txt").write_text("# Odlyzko zeros1 layout\n\n" + _text(first_zeros[:1000]))
    assert run("import", "z.txt", "--out", "a").exit_code == 0
    ds = open_dataset(tmp_path / "a")
    assert ds.count == 1000 and ds.manifest["abs_accuracy"] == pytest.approx(5e-10)
    (tmp_path / "z.txt.gz").write_bytes(gzip.compress(_text(first_zeros[500:1500]).encode()))
    assert run("import", "z.txt.gz", "--out", "b", "--first-index", 501).exit_code == 0
    assert open_dataset(tmp_path / "b").first_index == 501
    lines = "".join(f"{n} {z:.9f}\n" for n, z in zip(range(1001, 2001), first_zeros[1000:2000], strict=True))
    (tmp_path / "two.txt").write_text(lines)
    assert run("import", "two.txt", "--out", "c").exit_code == 0
    assert open_dataset(tmp_path / "c").first_index == 1001


def test_import_sobj_through_the_safe_loader(run, tmp_path, first_zeros):
    (tmp_path / "z.sobj").write_bytes(
        zlib.compress(pickle.dumps([float(v) for v in first_zeros], protocol=2))
    )
    assert run("import", "z.sobj", "--out", "s").exit_code == 0
    assert np.array_equal(open_dataset(tmp_path / "s").ordinates(1, 1 + first_zeros.size), first_zeros)


def test_generate_then_verify_against_the_table(run, tmp_path):
    assert run("odlyzko", "--out", "od", "--count", "12000").exit_code == 0
    result = run("generate", "--start", 10_001, "--count", 400, "--out", "gen", "--chunk", 200)
    assert result.exit_code == 0, result.output
    assert "generate: 200/400 zeros (50.0%)" in result.stderr  # progress on stderr
    ds = open_dataset(tmp_path / "gen")
    assert ds.manifest["source"] == "generate" and ds.manifest["params"]["chunk"] == 200
    verified = run("verify", "gen", "--against", "od")
    assert verified.exit_code == 0, verified.output
    assert "over n = 10001..10400 (400 zeros)" in verified.stdout
    strict = run("verify", "gen", "--against", "od", "--tolerance", "1e-13")
    assert strict.exit_code == 2
    assert "max |diff|" in _error_line(strict)


def _bad_inputs(tmp_path, zeros):
    good = _text(zeros[:200]).splitlines()
    cases = {
        "missing.txt": (None, r"missing\.txt: no such file"),
        "letters.txt": ("\n".join(good[:5] + ["14.1x"] + good[5:]), r"letters\.txt:6: not a number: '14.1x'"),
        "nan.txt": ("\n".join(good[:3] + ["nan"]), r"nan\.txt:4: 'nan' is not a finite number"),
        "inf.txt": ("\n".join(good[:3] + ["inf"]), r"inf\.txt:4: 'inf' is not a finite number"),
        "dup.txt": ("\n".join(good[:9] + good[8:]), r"dup\.txt:10: .* is not greater than the previous"),
        "down.txt": ("\n".join(good[:4] + [good[2]]), r"down\.txt:5: .* is not greater"),
        "empty.txt": ("", r"empty\.txt: no zeros in the file"),
        "comments.txt": ("# nothing\n\n", r"comments\.txt: no zeros in the file"),
        "three.txt": ("1 2 3\n", r"three\.txt:1: expected 'ordinate' or 'index ordinate'"),
        "gap.txt": ("1 14.134725142\n3 21.022039639\n", r"gap\.txt:2: index 3, expected 2"),
        "missing_zero.txt": (
            "\n".join(good[:100] + good[101:]),
            r"disagree with the smooth counting function",
        ),
        # A zero missing from the last lines shifts too few to move a window's mean: Z's sign does.
        "missing_near_end.txt": (
            "\n".join(f"{i + 1} {v}" for i, v in enumerate(good[:190] + good[191:])),
            r"missing_near_end\.txt:191: .* is not zero n=191: Hardy's Z just above it",
        ),
        "extra_near_end.txt": (
            "\n".join(good[:195] + [f"{(float(good[194]) + float(good[195])) / 2:.9f}"] + good[195:]),
            r"extra_near_end\.txt:196: .* is not zero n=196",
        ),
        "last_is_next.txt": (
            "\n".join(good[:198] + good[199:200]),
            r"last_is_next\.txt:199: .* is not zero n=199",
        ),
        "bad.gz": (b"\x1f\x8bnot really gzip", r"bad\.gz: not a valid gzip file"),
        "evil.sobj": (
            zlib.compress(b"cos\nsystem\n(Vtouch PWNED\ntR."),
            r"evil\.sobj: refused opcode GLOBAL",
        ),
    }
    for name, (content, _) in cases.items():
        if isinstance(content, bytes):
            (tmp_path / name).write_bytes(content)
        elif content is not None:
            (tmp_path / name).write_text(content)
    return cases


def test_every_bad_import_is_one_line_exit_2_and_no_output(run, tmp_path, first_zeros):
    for name, (_, pattern) in _bad_inputs(tmp_path, first_zeros).items():
        result = run("import", name, "--out", f"out-{name}")
        assert result.exit_code == 2, (name, result.output)
        line = _error_line(result)
        assert re.search(pattern, line), (name, line)
        assert not (tmp_path / f"out-{name}").exists(), name
    assert not (tmp_path / "PWNED").exists()
    leftovers = [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]
    assert leftovers == []


@pytest.fixture
def dataset(run, tmp_path):
    assert run("odlyzko", "--out", "ds", "--count", "3000").exit_code == 0
    return tmp_path / "ds"


def test_verify_catches_count_and_sha_mismatch(run, dataset):
    manifest = json.loads((dataset / MANIFEST_FILE).read_text())
    manifest["count"] = 2999
    (dataset / MANIFEST_FILE).write_text(json.dumps(manifest))
    result = run("verify", "ds")
    assert result.exit_code == 2
    assert "holds 3000 zeros (shape (3000,)), the manifest says 2999" in _error_line(result)
    manifest["count"] = 3000
    (dataset / MANIFEST_FILE).write_text(json.dumps(manifest))
    zeros = np.load(dataset / ZEROS_FILE)
    zeros[10] += 1e-6
    np.save(dataset / ZEROS_FILE, zeros)
    result = run("verify", "ds")
    assert result.exit_code == 2
    assert "sha256" in _error_line(result)


def test_verify_against_without_overlap(run, dataset, tmp_path):
    assert run("generate", "--start", 5000, "--count", 50, "--out", "far").exit_code == 0
    result = run("verify", "ds", "--against", "far")
    assert result.exit_code == 2
    assert "do not overlap" in _error_line(result)


def test_refuses_to_overwrite_a_different_dataset(run, dataset):
    result = run("odlyzko", "--out", "ds", "--count", "2000")
    assert result.exit_code == 2
    assert "already exists" in _error_line(result)
    assert open_dataset(dataset).count == 3000


def test_usage_errors_exit_2(run):
    assert run("generate", "--start", 0, "--count", 5, "--out", "x").exit_code == 2
    assert run("odlyzko", "--out", "x", "--count", 3_000_000).exit_code == 2
    assert run("info", "nowhere").exit_code == 2


def test_gcs_round_trip_and_missing_object(run, storage_emulator, tmp_path, monkeypatch):
    monkeypatch.setenv("ZETA_SWARM_CACHE", str(tmp_path / "cache"))
    url = f"gs://zeta-swarm-test-data/{uuid.uuid4().hex}/od"
    assert run("odlyzko", "--out", url, "--count", 2000).exit_code == 0
    result = run("verify", url)
    assert result.exit_code == 0 and f"ok {url}: 2000 zeros" in result.stdout
    missing = run("info", url + "-nope")
    assert missing.exit_code == 2
    assert f"{url}-nope/manifest.json: no such object" in _error_line(missing)


def test_real_subprocess_bad_file_and_good_table(tmp_path):
    trainer = Path(sys.executable).with_name("trainer")
    (tmp_path / "bad.txt").write_text("14.134725142\n21.022039639\nNaN\n")
    proc = subprocess.run(
        [trainer, "zeros", "import", "bad.txt", "--out", "out"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr == "trainer: error: bad.txt:3: 'NaN' is not a finite number\n"
    assert not (tmp_path / "out").exists()
    proc = subprocess.run(
        [trainer, "zeros", "odlyzko", "--out", "od", "--count", "100"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert open_dataset(tmp_path / "od").count == 100
