"""Was the Bayesian search worth it? Tuners replayed on the recorded phase-2 landscape (prints figures; not a test).

    # once: the smoke profile's phase-2 trials on a grid of the two GUE weights (real trainer runs)
    .venv/bin/python bench/tuners.py record --grid 10 --seeds 2 --parallel 2
    # any time after: each tuner 50 times on that landscape, 50 trials each
    .venv/bin/python bench/tuners.py replay

`record` runs `trainer train` with exactly the arguments the swarm's controller would give a phase-2
trial of the smoke profile (orchestrator.trial_command.trainer_args: the profile's and the
lock's overrides, the team's, the round's), at each point of a log-spaced grid of
loss.gue_nll_weight x loss.gue_mmd_weight over the phase's search space, once per seed. Trials run
as subprocesses, --parallel at a time, under --work (resumable: a point with a final.json is not run
again). It writes bench/data/tuners_landscape.json: the grid, every trial's objective (tune windows)
and seconds, the command line and the git commit it was recorded at.

`replay` interpolates the seed-mean objective bilinearly in (log10 nll, log10 mmd) and adds
Gaussian noise with the recorded seed-to-seed spread (each grid point's, interpolated the same way:
on the smoke landscape it grows with gue_mmd_weight), so each suggestion
costs microseconds. Each tuner minimises that noisy objective for --trials trials, --replays times
with different seeds: random search, Latin hypercube (scipy.stats.qmc), Optuna TPE (the swarm's
settings: multivariate, 10 random start-up trials), Optuna's GP sampler, and Open Source Vizier's
default algorithm when `google-vizier[jax]` is importable. Trials are sequential (the swarm runs
them in parallel with a constant liar; this measures the search, not the parallelism).

What is printed, per tuner, from the noise-free landscape value at each replay's incumbent (the
trial with the best *observed* objective so far, what the leaderboard would crown):
  * target: the median, over random search's replays, of its incumbent after all --trials trials;
  * trials to target: median (and quartiles) over replays of the first trial count whose incumbent
    is at or below the target; replays that never reach it count as more than --trials;
  * best after 20: the median incumbent after 20 trials.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shlex
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
LANDSCAPE = REPO / "bench" / "data" / "tuners_landscape.json"
NLL, MMD = "loss.gue_nll_weight", "loss.gue_mmd_weight"


# ---------------------------------------------------------------- record


def _settings(team: str, work: Path):
    from orchestrator.settings_loader import load_settings

    return load_settings(2, team=team, profile="smoke", run_dir=work)


def _trainer_args(settings, params: dict, output_dir: str) -> tuple[str, ...]:
    """The controller's own argument list for a phase-2 trial with these params."""
    from orchestrator.trial_command import trainer_args

    return trainer_args(settings, params, settings.rounds[0].fixed, output_dir)


def _grid(low: float, high: float, n: int) -> list[float]:
    return [float(v) for v in np.logspace(math.log10(low), math.log10(high), n)]


def _run_one(trainer: list[str], args: tuple[str, ...], out: Path) -> dict:
    final = out / "final.json"
    if not final.exists():
        out.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
        with open(out / "trainer.log", "w") as log:
            subprocess.run([*trainer, *args], stdout=log, stderr=subprocess.STDOUT, env=env, check=False)
    obj = json.loads(final.read_text()) if final.exists() else {"status": "failed"}
    return obj


def record(ns: argparse.Namespace) -> None:
    work = Path(ns.work).resolve()
    s = _settings(ns.team, work)
    space = {p.name: p for p in s.rounds[0].space}
    nlls = _grid(space[NLL].low, space[NLL].high, ns.grid)
    mmds = _grid(space[MMD].low, space[MMD].high, ns.grid)
    trainer = [str(Path(sys.executable).with_name("trainer"))]
    cells = [(i, j, seed) for seed in range(ns.seeds) for i in range(ns.grid) for j in range(ns.grid)]

    def run(cell):
        i, j, seed = cell
        out = work / f"nll{nlls[i]:.4g}-mmd{mmds[j]:.4g}-seed{seed}"  # by value: grids can share points
        params = {NLL: nlls[i], MMD: mmds[j], "seed": seed}
        t0 = time.monotonic()
        final = _run_one(trainer, _trainer_args(s, params, str(out)), out)
        print(
            f"nll {nlls[i]:.3g} mmd {mmds[j]:.3g} seed {seed}: {final.get('status')} "
            f"{final.get('extrapolation_error')} ({time.monotonic() - t0:.0f} s)",
            flush=True,
        )
        return cell, final

    with ThreadPoolExecutor(max_workers=ns.parallel) as pool:
        results = list(pool.map(run, cells))
    values = [[[None] * ns.seeds for _ in mmds] for _ in nlls]
    stderrs = [[[None] * ns.seeds for _ in mmds] for _ in nlls]
    seconds = []
    baselines: dict[str, list[float]] = {}
    for (i, j, seed), final in results:
        if final.get("status") != "completed":
            continue
        values[i][j][seed] = final["extrapolation_error"]
        stderrs[i][j][seed] = final.get("extrapolation_stderr")
        seconds.append(final.get("seconds"))
        for k, v in final.items():
            if k.startswith("baseline_") and isinstance(v, int | float):
                baselines.setdefault(k, []).append(v)
    commit = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
    ).stdout.strip()
    landscape = {
        "what": "phase-2 objective (extrapolation_error, tune windows) of the smoke profile on a grid",
        "command": "python bench/tuners.py " + shlex.join(sys.argv[1:]),
        "commit": commit,
        "team": ns.team,
        "trainer_args_example": list(_trainer_args(s, {NLL: nlls[0], MMD: mmds[0], "seed": 0}, "OUT")),
        "nll": nlls,
        "mmd": mmds,
        "seeds": ns.seeds,
        "values": values,  # [nll][mmd][seed]; null: the trial did not complete
        "stderrs": stderrs,
        "baselines": {k: statistics.fmean(v) for k, v in baselines.items()},
        "trial_seconds_median": statistics.median([x for x in seconds if x is not None]) if seconds else None,
    }
    out = Path(ns.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(landscape, indent=1) + "\n")
    done = sum(v is not None for row in values for cell in row for v in cell)
    print(f"wrote {out}: {done}/{len(cells)} trials completed")


# ---------------------------------------------------------------- replay


class Landscape:
    """The recorded objective, interpolated, with the recorded seed noise."""

    def __init__(self, data: dict) -> None:
        from scipy.interpolate import RegularGridInterpolator

        self.x = np.log10(data["nll"])
        self.y = np.log10(data["mmd"])
        vals = np.array(
            [[[np.nan if v is None else v for v in cell] for cell in row] for row in data["values"]]
        )
        if np.isnan(vals).all(axis=2).any():
            missing = np.argwhere(np.isnan(vals).all(axis=2))
            raise SystemExit(f"{LANDSCAPE}: grid points without a completed trial: {missing.tolist()}")
        self.mean = np.nanmean(vals, axis=2)
        # The seed-to-seed standard deviation of each grid point (two seeds: |a - b| / sqrt 2),
        # interpolated like the mean: on this landscape the noise grows with the weights.
        sd = np.nanstd(vals, axis=2, ddof=1) if vals.shape[2] > 1 else np.zeros_like(self.mean)
        sd = np.where(np.isnan(sd), np.nanmean(sd) if np.isfinite(sd).any() else 0.0, sd)
        self.noise = float(math.sqrt(np.mean(sd**2)))  # pooled, for the header line
        self._f = RegularGridInterpolator((self.x, self.y), self.mean, method="linear")
        self._sd = RegularGridInterpolator((self.x, self.y), sd, method="linear")
        self.bounds = ((self.x[0], self.x[-1]), (self.y[0], self.y[-1]))
        fine = np.stack(
            np.meshgrid(np.linspace(*self.bounds[0], 201), np.linspace(*self.bounds[1], 201), indexing="ij"),
            -1,
        )
        self.minimum = float(self._f(fine.reshape(-1, 2)).min())

    def true(self, lx: float, ly: float) -> float:
        return float(self._f([[lx, ly]])[0])

    def noisy(self, lx: float, ly: float, rng: np.random.Generator) -> float:
        return self.true(lx, ly) + float(self._sd([[lx, ly]])[0]) * float(rng.standard_normal())


# A tuner: (landscape, trials, seed) -> the points it evaluated, in order, with observed values.
Tuner = Callable[[Landscape, int, int], list[tuple[float, float, float]]]


def _random(land: Landscape, n: int, seed: int):
    rng = np.random.default_rng(seed)
    (x0, x1), (y0, y1) = land.bounds
    out = []
    for _ in range(n):
        lx, ly = rng.uniform(x0, x1), rng.uniform(y0, y1)
        out.append((lx, ly, land.noisy(lx, ly, rng)))
    return out


def _lhs(land: Landscape, n: int, seed: int):
    from scipy.stats import qmc

    rng = np.random.default_rng(seed)
    (x0, x1), (y0, y1) = land.bounds
    pts = qmc.scale(qmc.LatinHypercube(d=2, seed=rng).random(n), [x0, y0], [x1, y1])
    return [(lx, ly, land.noisy(lx, ly, rng)) for lx, ly in pts]


def _optuna(sampler_of: Callable[[int], object]) -> Tuner:
    def run(land: Landscape, n: int, seed: int):
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        rng = np.random.default_rng(seed + 1_000_003)
        study = optuna.create_study(direction="minimize", sampler=sampler_of(seed))
        (x0, x1), (y0, y1) = land.bounds
        out = []
        for _ in range(n):
            t = study.ask()
            # The swarm's space is log-uniform in the weights; searching log10 of them uniformly is the same.
            lx, ly = t.suggest_float("lx", x0, x1), t.suggest_float("ly", y0, y1)
            v = land.noisy(lx, ly, rng)
            study.tell(t, v)
            out.append((lx, ly, v))
        return out

    return run


def _vizier(land: Landscape, n: int, seed: int):
    """OSS Vizier's DEFAULT algorithm (the GP-UCB-PE bandit its service picks for "DEFAULT"), as a
    designer in this process: the same suggestions as through its service, without the server."""
    import jax
    from vizier import algorithms as vza
    from vizier import pyvizier as vz
    from vizier._src.algorithms.designers import gp_ucb_pe

    rng = np.random.default_rng(seed + 2_000_003)
    (x0, x1), (y0, y1) = land.bounds
    problem = vz.ProblemStatement()
    problem.search_space.root.add_float_param("lx", float(x0), float(x1))
    problem.search_space.root.add_float_param("ly", float(y0), float(y1))
    problem.metric_information.append(vz.MetricInformation("objective", goal=vz.ObjectiveMetricGoal.MINIMIZE))
    designer = gp_ucb_pe.VizierGPUCBPEBandit(problem, rng=jax.random.PRNGKey(seed))
    out = []
    for i in range(n):
        (suggestion,) = designer.suggest(1)
        trial = suggestion.to_trial(i + 1)
        values = trial.parameters.as_dict()
        if set(values) != {"lx", "ly"}:
            raise RuntimeError(f"OSS Vizier suggested {values} at trial {i + 1} of replay {seed}")
        lx, ly = float(values["lx"]), float(values["ly"])
        v = land.noisy(lx, ly, rng)
        trial.complete(vz.Measurement(metrics={"objective": float(v)}))
        designer.update(vza.CompletedTrials([trial]), vza.ActiveTrials())
        out.append((lx, ly, v))
    return out


def _tuners(include_vizier: bool) -> dict[str, Tuner]:
    import optuna

    tuners: dict[str, Tuner] = {
        "random search": _random,
        "Latin hypercube": _lhs,
        "Optuna TPE": _optuna(
            lambda seed: optuna.samplers.TPESampler(seed=seed, multivariate=True, n_startup_trials=10)
        ),
        "Optuna GP": _optuna(lambda seed: optuna.samplers.GPSampler(seed=seed, n_startup_trials=10)),
    }
    if include_vizier:
        tuners["OSS Vizier (default)"] = _vizier
    return tuners


def _incumbents(land: Landscape, trace: list[tuple[float, float, float]]) -> list[float]:
    """The noise-free value at the best observed point after each trial."""
    out, best = [], None
    for lx, ly, v in trace:
        if best is None or v < best[2]:
            best = (lx, ly, v)
        out.append(land.true(best[0], best[1]))
    return out


def replay(ns: argparse.Namespace) -> None:
    data = json.loads(Path(ns.landscape).read_text())
    land = Landscape(data)
    vizier_note = ""
    include_vizier = not ns.no_vizier
    if include_vizier:
        try:
            from vizier._src.algorithms.designers import gp_ucb_pe  # noqa: F401
        except (ImportError, AttributeError) as e:  # AttributeError: a jax too new for its equinox
            include_vizier = False
            vizier_note = f"OSS Vizier left out: {e}"
    print(
        f"landscape: {len(data['nll'])} x {len(data['mmd'])} grid x {data['seeds']} seeds, recorded at "
        f"{data['commit'][:12]} ({data['command']}); seed noise sd {land.noise:.3g} (rms over the grid); "
        f"interpolated minimum {land.minimum:.5g}; best baseline "
        + (f"{min(data['baselines'].values()):.5g}" if data.get("baselines") else "?")
    )
    if vizier_note:
        print(vizier_note)
    curves: dict[str, list[list[float]]] = {}
    slow = {"Optuna GP": ns.gp_replays, "OSS Vizier (default)": ns.vizier_replays}
    chosen = _tuners(include_vizier)
    if ns.only:  # random search always runs: it sets the target
        chosen = {k: v for k, v in chosen.items() if k == "random search" or k in ns.only}
    never = ns.trials + 1
    target = None

    def hits(curve: list[float]) -> int:
        return next((k + 1 for k, v in enumerate(curve) if v <= target), never)

    for name, tuner in chosen.items():  # random search first: its replays set the target
        t0 = time.monotonic()
        replays = min(ns.replays, slow.get(name) or ns.replays)
        curves[name] = []
        for seed in range(replays):
            try:
                curves[name].append(_incumbents(land, tuner(land, ns.trials, seed)))
            except RuntimeError as e:  # a tuner that cannot finish a replay is left out, saying why
                print(f"{name} left out: {e}")
                del curves[name]
                break
            if target is not None and name in slow:  # slow tuners: each replay as it ends
                c = curves[name][-1]
                print(
                    f"  {name} replay {seed}: target reached after {hits(c)} trials; after 20: {c[min(19, len(c) - 1)]:.5g}",
                    file=sys.stderr,
                    flush=True,
                )
        if target is None:
            target = statistics.median(c[-1] for c in curves["random search"])
        print(f"  {name}: {replays} replays in {time.monotonic() - t0:.0f} s", file=sys.stderr, flush=True)
    print(f"\ntarget: random search's best of {ns.trials} (median over replays, noise-free) = {target:.5g}\n")
    header = f"{'tuner':<22} {'replays':>7} {'trials to target: median [q1, q3]':>36} {'reached':>8} {'best after 20':>14}"
    print(header)
    print("-" * len(header))
    for name, cs in curves.items():
        counts = [hits(c) for c in cs]
        q1, med, q3 = np.percentile(counts, [25, 50, 75], method="lower")

        def show(h):
            return f">{ns.trials}" if h >= never else str(int(h))

        after20 = statistics.median(c[min(19, len(c) - 1)] for c in cs)
        reached = sum(h < never for h in counts)
        print(
            f"{name:<22} {len(cs):>7} {show(med) + ' [' + show(q1) + ', ' + show(q3) + ']':>36} "
            f"{f'{reached}/{len(cs)}':>8} {after20:>14.5g}"
        )


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("record", help="run the grid of real smoke trials and write the landscape file")
    r.add_argument(
        "--grid", type=int, default=10, help="points per weight (log-spaced over the phase's range)"
    )
    r.add_argument("--seeds", type=int, default=2)
    r.add_argument("--parallel", type=int, default=2, help="trainer processes at once")
    r.add_argument("--team", default="minibatch", help="the swarm's team (Makefile default: minibatch)")
    r.add_argument(
        "--work", default=str(REPO / "runs" / "bench-tuners"), help="trial output dirs (resumable)"
    )
    r.add_argument("--out", default=str(LANDSCAPE), help="the landscape file to write")
    r.set_defaults(func=record)
    q = sub.add_parser("replay", help="replay the tuners on the recorded landscape and print the table")
    q.add_argument("--landscape", default=str(LANDSCAPE))
    q.add_argument("--trials", type=int, default=50)
    q.add_argument("--replays", type=int, default=50)
    q.add_argument(
        "--gp-replays", type=int, default=None, help="fewer replays of Optuna GP (seconds a suggestion)"
    )
    q.add_argument(
        "--vizier-replays", type=int, default=None, help="fewer replays of OSS Vizier (slower still)"
    )
    q.add_argument("--no-vizier", action="store_true")
    q.add_argument("--only", nargs="+", default=None, help='tuners by name, e.g. --only "Optuna GP"')
    q.set_defaults(func=replay)
    ns = p.parse_args(argv)
    ns.func(ns)


if __name__ == "__main__":
    main()
