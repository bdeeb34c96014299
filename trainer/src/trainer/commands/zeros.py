"""`trainer zeros ...`: build, import, generate, verify and describe zeros datasets.

Each command is a few lines over trainer.data; errors are DataError/UnsafePickleError, which
the top-level group prints as one line with exit code 2. Nothing is written unless the whole
dataset is valid (write_dataset is atomic).
"""

from __future__ import annotations

import json

import click

_OUT = click.option(
    "--out",
    "out",
    required=True,
    metavar="DIR",
    help="Dataset directory to create (local path or gs:// URL).",
)


@click.group()
def zeros() -> None:
    """Zeros datasets: Odlyzko table, text import, Riemann–Siegel generator, verification."""


def _wrote(out: str, manifest: dict) -> None:
    first = manifest["first_index"]
    last = first + manifest["count"] - 1
    click.echo(f"wrote {out}: {manifest['count']} zeros, n = {first}..{last}, source {manifest['source']}")


@zeros.command()
@_OUT
@click.option(
    "--count",
    type=click.IntRange(min=1),
    default=None,
    help="Keep only the first N zeros (default: all 2,001,052).",
)
def odlyzko(out: str, count: int | None) -> None:
    """Write the Odlyzko table (first 2,001,052 zeros, accuracy 4e-9) as a dataset."""
    from trainer.data.dataset import write_dataset
    from trainer.data.odlyzko import DISTRIBUTION, TABLE_ACCURACY, load_table

    zeros_ = load_table(count)
    manifest = write_dataset(
        out,
        zeros_,
        source="odlyzko",
        first_index=1,
        abs_accuracy=TABLE_ACCURACY,
        params={"package": DISTRIBUTION, "count": int(zeros_.size)},
    )
    _wrote(out, manifest)


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
    default=None,
    help="Absolute accuracy of the ordinates (default: half a unit of the last printed digit; "
    "for .sobj, float64 rounding).",
)
def import_(file: str, out: str, first_index: int | None, abs_accuracy: float | None) -> None:
    """Import ordinates from a text table (one per line, or 'index ordinate'; .gz ok) or a .sobj."""
    from trainer.data.dataset import write_dataset
    from trainer.data.textfile import read_zeros_file
    from trainer.errors import DataError

    table = read_zeros_file(file)
    if table.first_index is not None and first_index is not None and table.first_index != first_index:
        raise DataError(
            f"{file}: the file's index column starts at {table.first_index}, but --first-index is {first_index}"
        )
    first = first_index or table.first_index or 1
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
@click.option("--start", type=click.IntRange(min=1), required=True, help="1-based index of the first zero.")
@click.option("--count", type=click.IntRange(min=1), required=True, help="Number of zeros.")
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
def generate(start: int, count: int, out: str, device: str, chunk: int, threads: int) -> None:
    """Compute zeros start..start+count-1 by Riemann–Siegel, count-certified (Rosser/Turing)."""
    from trainer.data.dataset import write_dataset
    from trainer.data.generate import DEFAULT_TOL, accuracy_bound, generate_zeros

    def progress(done: int, total: int, stats) -> None:
        rate = done / max(stats.seconds, 1e-9)
        eta = (total - done) / max(rate, 1e-9)
        click.echo(
            f"generate: {done:,}/{total:,} zeros ({100 * done / total:.1f}%), {rate:,.0f} zeros/s, eta {eta:.0f} s",
            err=True,
        )

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
        "tolerance": DEFAULT_TOL,
        **stats.as_dict(),
    }
    manifest = write_dataset(
        out, zeros_, source="generate", first_index=start, abs_accuracy=accuracy_bound(zeros_), params=params
    )
    _wrote(out, manifest)


@zeros.command()
@click.argument("directory", metavar="DIR")
@click.option(
    "--against", metavar="DIR2", default=None, help="Compare the overlapping indices with another dataset."
)
@click.option(
    "--tolerance",
    type=float,
    default=None,
    help="Largest allowed |difference| with --against (default: the two manifests' abs_accuracy summed).",
)
def verify(directory: str, against: str | None, tolerance: float | None) -> None:
    """Full check of DIR (sha256, order, count, counting function); exit 2 if anything is off."""
    from trainer.data.dataset import open_dataset, verify_dataset
    from trainer.errors import DataError

    summary = verify_dataset(directory, full=True)
    click.echo(
        f"ok {directory}: {summary['count']} zeros, n = {summary['first_index']}..{summary['last_index']}, "
        f"sha256 ok, max |delta_n| = {summary['max_abs_delta']:.3f}"
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
        "gamma_first": float(ds.zeros[0]),
        "gamma_last": float(ds.zeros[-1]),
        "manifest": ds.manifest,
    }
    if as_json:
        click.echo(json.dumps(summary, indent=2, sort_keys=True))
        return
    click.echo(f"path:         {ds.path}")
    click.echo(f"source:       {ds.manifest['source']}")
    click.echo(f"zeros:        {ds.count} (n = {ds.first_index}..{ds.last_index})")
    click.echo(f"ordinates:    {summary['gamma_first']!r} .. {summary['gamma_last']!r}")
    click.echo(f"abs_accuracy: {ds.manifest['abs_accuracy']:g}")
    click.echo(f"created:      {ds.manifest.get('created', '?')}")
    click.echo(f"sha256:       {ds.manifest['sha256']}")
    if ds.manifest.get("params"):
        click.echo(f"params:       {json.dumps(ds.manifest['params'], sort_keys=True)}")
