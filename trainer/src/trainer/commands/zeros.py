"""`trainer zeros ...`: build, import, generate, merge, verify and describe zeros datasets.

Each command is a few lines over trainer.data; errors are DataError/UnsafePickleError, which
the top-level group prints as one line with exit code 2. Nothing is written unless the whole
dataset is valid (write_dataset and write_shard are atomic; merge writes manifest.json last).
With --shard K, odlyzko and generate write shard K of a sharded dataset instead (one job of
`orchestrator zeros`); `trainer zeros merge DIR` then checks the shards and writes the manifest.
"""

from __future__ import annotations

import json
import math

import click

# Sizes checked before any work: a count or index beyond these is refused in one line, not
# attempted (an array of 1e15 float64 ordinates is 8 PB). Near n = 1e12 a float64 ordinate
# (t ~ 2.7e11) resolves 6e-5, a 4,000th of the mean spacing there.
MAX_COUNT = 100_000_000  # 800 MB of float64 ordinates, plus the generator's work arrays
MAX_INDEX = 10**12
_PSEUDO_FS = ("/proc", "/sys", "/dev")


def _check_out(ctx: click.Context, param: click.Parameter, out: str) -> str:
    """--out names a dataset directory that can be created: not empty, not on a pseudo file system,
    not an existing file, and its nearest existing ancestor a writable directory."""
    from pathlib import Path

    if not out.strip():
        raise click.BadParameter("is empty; name the dataset directory to create", ctx, param)
    if out.startswith("gs://"):
        return out
    path = Path(out).absolute()
    if any(str(path) == fs or str(path).startswith(fs + "/") for fs in _PSEUDO_FS):
        raise click.BadParameter(f"{out} is on a kernel pseudo file system, not a disk", ctx, param)
    if path.exists() and not path.is_dir():
        raise click.BadParameter(f"{out} exists and is not a directory", ctx, param)
    ancestor = path
    while not ancestor.exists():
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise click.BadParameter(f"{ancestor} is a file, so {out} cannot be created under it", ctx, param)
    import os

    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise click.BadParameter(f"{ancestor} is not writable, so {out} cannot be created", ctx, param)
    return out


_OUT = click.option(
    "--out",
    "out",
    required=True,
    metavar="DIR",
    callback=_check_out,
    help="Dataset directory to create (local path or gs:// URL).",
)


@click.group()
def zeros() -> None:
    """Zeros datasets: Odlyzko table, text import, Riemann–Siegel generator, verification."""


_SHARD = click.option(
    "--shard",
    type=click.IntRange(min=0, max=99_999),
    default=None,
    metavar="K",
    help="Write shard K (DIR/shards/NNNNN.npy and its record) of a sharded dataset instead.",
)


def _wrote(out: str, manifest: dict) -> None:
    first = manifest["first_index"]
    last = first + manifest["count"] - 1
    what = f"{out}/{manifest['path']}" if "path" in manifest else out
    click.echo(f"wrote {what}: {manifest['count']} zeros, n = {first}..{last}, source {manifest['source']}")


def _write(out: str, shard: int | None, zeros_, **kw) -> None:
    from trainer.data.dataset import write_dataset, write_shard

    if shard is None:
        _wrote(out, write_dataset(out, zeros_, **kw))
    else:
        _wrote(out, write_shard(out, shard, zeros_, **kw))


@zeros.command()
@_OUT
@click.option(
    "--count",
    type=click.IntRange(min=1),
    default=None,
    help="Keep only the first N zeros (default: all 2,001,052).",
)
@_SHARD
def odlyzko(out: str, count: int | None, shard: int | None) -> None:
    """Write the Odlyzko table (first 2,001,052 zeros, accuracy 4e-9) as a dataset."""
    from trainer.data.dataset import check_free_space, dataset_bytes
    from trainer.data.odlyzko import DISTRIBUTION, TABLE_ACCURACY, load_table

    check_free_space(out, dataset_bytes(count or 2_001_052), "--count")
    zeros_ = load_table(count)
    _write(
        out,
        shard,
        zeros_,
        source="odlyzko",
        first_index=1,
        abs_accuracy=TABLE_ACCURACY,
        params={"package": DISTRIBUTION, "count": int(zeros_.size)},
    )


@zeros.command("import")
@click.argument("file", metavar="FILE")
@_OUT
@click.option(
    "--first-index",
    type=click.IntRange(min=1),
    default=None,
    help="1-based index of the file's first zero (default 1, or the file's own index column).",
)
@click.option(
    "--abs-accuracy",
    type=click.FloatRange(min=0, min_open=True),
    callback=lambda ctx, param, v: _finite(ctx, param, v),
    default=None,
    help="Absolute accuracy of the ordinates (default: half a unit of the last printed digit; "
    "for .sobj, float64 rounding).",
)
def import_(file: str, out: str, first_index: int | None, abs_accuracy: float | None) -> None:
    """Import ordinates from a text table (one per line, or 'index ordinate'; .gz ok) or a .sobj."""
    from trainer.data.dataset import validate_zeros, write_dataset
    from trainer.data.textfile import check_count_at_end, read_zeros_file
    from trainer.errors import DataError

    table = read_zeros_file(file)
    if table.first_index is not None and first_index is not None and table.first_index != first_index:
        raise DataError(
            f"{file}: the file's index column starts at {table.first_index}, but --first-index is {first_index}"
        )
    first = first_index or table.first_index or 1
    # The windows first (they name the zeros a missing one shifts), then the last lines they cannot see.
    validate_zeros(table.zeros, first, f"import:{file}")
    check_count_at_end(table, first, file)
    manifest = write_dataset(
        out,
        table.zeros,
        source=f"import:{file}",
        first_index=first,
        abs_accuracy=abs_accuracy or table.abs_accuracy,
        params={"file": file},
    )
    _wrote(out, manifest)


@zeros.command()
@click.option(
    "--start", type=click.IntRange(1, MAX_INDEX), required=True, help="1-based index of the first zero."
)
@click.option("--count", type=click.IntRange(1, MAX_COUNT), required=True, help="Number of zeros.")
@_OUT
@click.option(
    "--device",
    type=click.Choice(["cpu", "cuda"]),
    default="cpu",
    show_default=True,
    help="Where Z is summed.",
)
@click.option(
    "--chunk",
    type=click.IntRange(min=100),
    default=20_000,
    show_default=True,
    help="Zeros per certified chunk.",
)
@click.option(
    "--threads",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="torch CPU threads (1 is fastest on a busy shared machine).",
)
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="CPU processes, one thread each, over contiguous pieces of the range (a machine of its own).",
)
@_SHARD
def generate(
    start: int, count: int, out: str, device: str, chunk: int, threads: int, workers: int, shard: int | None
) -> None:
    """Compute zeros start..start+count-1 by Riemann–Siegel, count-certified (Rosser/Turing)."""
    from trainer.data.dataset import check_free_space, dataset_bytes
    from trainer.data.generate import DEFAULT_TOL, accuracy_bound, generate_zeros, generate_zeros_parallel
    from trainer.errors import DataError

    if workers > 1 and device != "cpu":
        raise DataError("--workers goes with --device cpu (one GPU per job)")
    check_free_space(out, dataset_bytes(count), "--count")  # before hours of work, not after

    if start + count - 1 > MAX_INDEX:
        raise click.BadParameter(
            f"--start {start} + --count {count} reaches n = {start + count - 1}, beyond {MAX_INDEX:.0e}",
            param_hint="--count",
        )

    def progress(done: int, total: int, stats) -> None:
        rate = done / max(stats.seconds, 1e-9)
        eta = (total - done) / max(rate, 1e-9)
        click.echo(
            f"generate: {done:,}/{total:,} zeros ({100 * done / total:.1f}%), {rate:,.0f} zeros/s, eta {eta:.0f} s",
            err=True,
        )

    if workers > 1:
        zeros_, stats = generate_zeros_parallel(start, count, workers=workers, chunk=chunk, progress=progress)
    else:
        zeros_, stats = generate_zeros(
            start, count, device=device, chunk=chunk, threads=threads, progress=progress
        )
    params = {
        "method": "Riemann-Siegel C0..C4 with window phases (Euler-Maclaurin below t=2000); "
        "Gram blocks, Rosser's rule, Turing's method; secant polish",
        "start": start,
        "count": count,
        "device": device,
        "chunk": chunk,
        "workers": workers,
        "tolerance": DEFAULT_TOL,
        **stats.as_dict(),
    }
    _write(
        out,
        shard,
        zeros_,
        source="generate",
        first_index=start,
        abs_accuracy=accuracy_bound(zeros_),
        params=params,
    )


@zeros.command("check-space")
@click.argument("out", metavar="DIR")
@click.option(
    "--count", type=click.IntRange(min=1), required=True, help="Zeros still to be written under DIR."
)
def check_space(out: str, count: int) -> None:
    """Exit 2 with one line unless the disk under DIR (local) can take COUNT more zeros.

    The one free-space rule of zeros datasets: the writers here apply it, and `orchestrator zeros`
    asks it through this command (it may not import the trainer) before it launches a fan-out."""
    from trainer.data.dataset import check_free_space, dataset_bytes

    check_free_space(out, dataset_bytes(count), "--count")


@zeros.command()
@click.argument("directory", metavar="DIR")
@click.option(
    "--expect",
    metavar="JSON",
    default=None,
    help="The plan: a JSON list of [first_index, count], one per shard; anything else is an error.",
)
def merge(directory: str, expect: str | None) -> None:
    """Check every shard of DIR in full, certify each boundary, then write DIR/manifest.json."""
    from trainer.data.dataset import merge_shards

    plan = None
    if expect is not None:
        try:
            plan = [(int(a), int(b)) for a, b in json.loads(expect)]
        except (ValueError, TypeError) as e:
            raise click.BadParameter(
                f"not a JSON list of [first_index, count] pairs ({e})", param_hint="--expect"
            ) from e
    manifest = merge_shards(directory, expect=plan)
    last = manifest["first_index"] + manifest["count"] - 1
    click.echo(
        f"merged {directory}: {len(manifest['shards'])} shards, {manifest['count']} zeros, "
        f"n = {manifest['first_index']}..{last}, {len(manifest['boundaries'])} boundaries certified"
    )


@zeros.command()
@click.argument("directory", metavar="DIR")
@click.option(
    "--against", metavar="DIR2", default=None, help="Compare the overlapping indices with another dataset."
)
@click.option(
    "--tolerance",
    type=click.FloatRange(min=0),
    callback=lambda ctx, param, v: _finite(ctx, param, v),
    default=None,
    help="Largest allowed |difference| with --against (default: the two manifests' abs_accuracy summed).",
)
def verify(directory: str, against: str | None, tolerance: float | None) -> None:
    """Full check of DIR (sha256 of every shard, order, count, counting function, the count
    certificate at every shard boundary); exit 2 if anything is off."""
    from trainer.data.dataset import open_dataset, verify_dataset
    from trainer.errors import DataError

    summary = verify_dataset(directory, full=True)
    for b in summary["boundaries"]:
        click.echo(
            f"ok boundary n = {b['index']} ({b['shard']}): gamma_{b['index'] - 1}, gamma_{b['index']} match "
            f"Turing's method between g_{b['gram_anchors'][0]} and g_{b['gram_anchors'][1]} "
            f"(|diff| {b['max_abs_diff']:.1e})"
        )
    shards = f"{summary['shards']} shards, " if summary["shards"] > 1 else ""
    click.echo(
        f"ok {directory}: {summary['count']} zeros, n = {summary['first_index']}..{summary['last_index']}, "
        f"{shards}sha256 ok, max |delta_n| = {summary['max_abs_delta']:.3f}"
    )
    if against is None:
        return
    verify_dataset(against, full=True)
    a, b = open_dataset(directory), open_dataset(against)
    lo, hi = max(a.first_index, b.first_index), min(a.last_index, b.last_index)
    if lo > hi:
        raise DataError(
            f"{directory} (n = {a.first_index}..{a.last_index}) and {against} (n = {b.first_index}..{b.last_index}) do not overlap"
        )
    for ds, name in ((a, directory), (b, against)):
        acc = ds.manifest.get("abs_accuracy")
        if not isinstance(acc, int | float) or not math.isfinite(acc) or acc < 0:
            raise DataError(f"{name}/manifest.json: abs_accuracy {acc!r} is not a finite number >= 0")
    tol = tolerance if tolerance is not None else a.manifest["abs_accuracy"] + b.manifest["abs_accuracy"]
    diff = 0.0
    worst_n = lo
    for s in range(lo, hi + 1, 1 << 20):
        e = min(s + (1 << 20), hi + 1)
        d = abs(a.ordinates(s, e) - b.ordinates(s, e))
        if d.max() > diff:
            diff, worst_n = float(d.max()), s + int(d.argmax())
    message = f"max |diff| = {diff:.3e} at n = {worst_n} over n = {lo}..{hi} ({hi - lo + 1} zeros), tolerance {tol:.1e}"
    if diff > tol:
        raise DataError(f"{directory} vs {against}: {message}")
    click.echo(f"ok against {against}: {message}")


def _finite(ctx: click.Context, param: click.Parameter, value: float | None) -> float | None:
    if value is not None and not math.isfinite(value):
        raise click.BadParameter(f"{value} is not a finite number", ctx, param)
    return value


@zeros.command()
@click.argument("directory", metavar="DIR")
@click.option("--json", "as_json", is_flag=True, help="Print the manifest and summary as one JSON object.")
def info(directory: str, as_json: bool) -> None:
    """Describe a dataset (opened and quickly validated, not hashed)."""
    from trainer.data.dataset import open_dataset

    ds = open_dataset(directory)
    summary = {
        "path": ds.path,
        "first_index": ds.first_index,
        "last_index": ds.last_index,
        "count": ds.count,
        "shards": len(ds.shards),
        "gamma_first": float(ds.take([ds.first_index])[0]),
        "gamma_last": float(ds.take([ds.last_index])[0]),
        "manifest": ds.manifest,
    }
    if as_json:
        click.echo(json.dumps(summary, indent=2, sort_keys=True))
        return
    click.echo(f"path:         {ds.path}")
    click.echo(f"source:       {ds.manifest['source']}")
    click.echo(f"zeros:        {ds.count} (n = {ds.first_index}..{ds.last_index})")
    if ds.sharded:
        certified = "certified" if ds.manifest.get("boundaries_certified") else "NOT certified"
        click.echo(f"shards:       {len(ds.shards)} (boundaries {certified})")
    click.echo(f"ordinates:    {summary['gamma_first']!r} .. {summary['gamma_last']!r}")
    click.echo(f"abs_accuracy: {ds.manifest['abs_accuracy']:g}")
    click.echo(f"created:      {ds.manifest.get('created', '?')}")
    click.echo(f"sha256:       {ds.manifest['sha256']}")
    if ds.manifest.get("params") and not ds.sharded:
        click.echo(f"params:       {json.dumps(ds.manifest['params'], sort_keys=True)}")
