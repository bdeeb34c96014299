"""Two builds of the CPU kernels (trainer/src/trainer/csrc) in one process, paired (prints figures;
not a test).

    .venv/bin/python bench/kernel_ab.py REV [--blocks 12] [--steps 40] [--mode minibatch] [--n 100000] [--data DIR]

Builds the kernel library from REV's csrc/ (git show) and from the working tree's, by the
trainer's own build (trainer.fused: its flags, its cache), then runs the real training step (the Stepper
of bench/profile_step.py: batch, forward, losses, backward, clip, AdamW, EMA) on one trial, one
thread, swapping the two libraries in between blocks of --steps steps, the order alternating
block by block. Prints the CPU ms per step of each build and of each kernel inside it (medians of
the blocks), and the paired differences: on a host whose speed moves by 10-20% from minute to
minute, two builds taking turns in one process are the only way to see a change of a few percent.
Only the kernels differ between the builds: everything else (trainer Python, torch) is the
working tree's, so REV's kernels must take the same arguments (the same extern "C" signatures);
a kernel REV does not have yet runs the working tree's build on both sides (the output says which).
"""

from __future__ import annotations

import argparse
import ctypes
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))

from profile_step import Stepper, build_trial, timed  # noqa: E402


def build(rev: str | None, out: Path) -> Path:
    """The kernel library of REV's csrc/ (None: the working tree's, the trainer's own), built by
    trainer.fused's build and cached by content: REV's sources are copied into out/ first."""
    from trainer import fused

    compiler = os.environ.get("CXX") or "g++"
    if rev is None:
        return fused._build(compiler)
    csrc = fused.SOURCES[0].parent.relative_to(REPO)
    src = out / rev
    src.mkdir(parents=True)
    for path in (*fused.SOURCES, *fused.HEADERS):
        shown = subprocess.run(
            ["git", "-C", str(REPO), "show", f"{rev}:{csrc}/{path.name}"], capture_output=True, text=True
        )
        if shown.returncode == 0:  # else a header REV did not have yet
            (src / path.name).write_text(shown.stdout)
    headers = [src / h.name for h in fused.HEADERS if (src / h.name).exists()]
    return fused._build(compiler, [src / s.name for s in fused.SOURCES], headers)


class TimedLibrary:
    """A kernel library with the argument types of trainer.fused's, each function timed (CPU s)."""

    def __init__(self, path: Path, like: ctypes.CDLL):
        self.lib, self.seconds = ctypes.CDLL(str(path)), {}
        self.lacks: list[str] = []  # kernels newer than this build: `like`'s own run in their place
        for name in dir(like):
            if name.startswith("zs_"):
                f = getattr(like, name)
                try:
                    g = getattr(self.lib, name)
                except AttributeError:
                    self.lacks.append(name)
                    g = f
                else:
                    g.argtypes, g.restype = f.argtypes, f.restype
                setattr(self, name, timed(self.seconds, name.removeprefix("zs_"), g))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("rev", help="the git revision whose kernels are A (B: the working tree's)")
    p.add_argument("--blocks", type=int, default=12)
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--mode", choices=["minibatch", "fullbatch"], default="minibatch")
    p.add_argument("--n", type=int, default=100_000)
    p.add_argument("--data", default=os.environ.get("ZETA_SWARM_DATA", str(REPO / "data" / "odlyzko")))
    args = p.parse_args()
    if args.blocks < 2 or args.steps < 1 or args.n < 1:
        p.error("--blocks must be at least 2, --steps and --n at least 1")
    known = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "--verify", "--quiet", f"{args.rev}^{{commit}}"],
        capture_output=True,
    )
    if known.returncode:
        p.error(f"{args.rev!r} is not a revision of {REPO}")
    from trainer.errors import InputError

    from trainer import fused

    real = fused.library()
    if real is None:
        p.error("the kernels do not build here (trainer.fused.library() is None)")
    with tempfile.TemporaryDirectory() as tmp:
        try:
            libs = [TimedLibrary(build(rev, Path(tmp)), real) for rev in (args.rev, None)]
        except subprocess.CalledProcessError as e:
            p.error(f"a build failed: {e.stderr.strip().splitlines()[-1] if e.stderr else e}")
        try:
            trial, _ = build_trial(args.mode, args.n, ["train.cpu_threads=1"], data=args.data)
        except InputError as e:  # a missing dataset: one line, exit 2
            p.error(str(e).splitlines()[0])
        stepper = Stepper(trial)
        warm = stepper.steps_per_epoch() if args.mode == "minibatch" else 1
        for lib in libs:
            fused._lib = lib
            stepper.run(warm)
        step: list[list[float]] = [[], []]
        kernels: list[dict[str, list[float]]] = [{}, {}]
        for b in range(args.blocks):
            for k in (0, 1) if b % 2 == 0 else (1, 0):
                lib = libs[k]
                lib.seconds.clear()
                fused._lib = lib
                c0 = time.process_time()
                stepper.run(args.steps)
                step[k].append((time.process_time() - c0) / args.steps * 1e3)
                for name, s in lib.seconds.items():
                    kernels[k].setdefault(name, []).append(s / args.steps * 1e3)
            print(
                f"block {b + 1}/{args.blocks}: A {step[0][-1]:.2f}, B {step[1][-1]:.2f} CPU ms a step",
                flush=True,
            )
        fused._lib = real
    med = statistics.median

    def line(label: str, a: list[float], b: list[float]) -> str:
        d = [x - y for x, y in zip(a, b, strict=True)]
        return (
            f"{label:22s} A {med(a):7.2f}  B {med(b):7.2f}  A - B paired median {med(d):6.2f}"
            f"  B faster in {sum(x > 0 for x in d)}/{len(d)}"
        )

    print(f"\nCPU ms a step, {args.mode} N = {args.n:,}, A = {args.rev}'s kernels, B = the working tree's:")
    if libs[0].lacks:
        print(f"({args.rev} has no {', '.join(libs[0].lacks)}: the working tree's runs on both sides)")
    print(line("step", *step))
    for name in sorted(kernels[0], key=lambda n: -med(kernels[0][n])):
        if name in kernels[1] and len(kernels[0][name]) == len(kernels[1][name]):
            print(line(name, kernels[0][name], kernels[1][name]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
