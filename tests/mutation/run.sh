#!/usr/bin/env bash
# make mutation: mutmut over the controller, the tuners, the early-stopping rules, the budget guard,
# the trial command and the loss wiring (tests/mutation/pyproject.toml says which files and tests).
# Usage: tests/mutation/run.sh [MUTANT_PATTERN ...]  (default: the functions listed below)
# Env: MUTATION_MINUTES (default 30), MUTATION_CHILDREN (parallel mutants, default 2).
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
STAGE=$ROOT/.mutation
BIN=$ROOT/.venv/bin

# mutmut wants one source root (src/) holding every package the tests import; the repository has
# two (orchestrator/src, trainer/src). Stage both side by side, with the tests and configs.
rm -rf "$STAGE"
mkdir -p "$STAGE/src"
cp -r orchestrator/src/orchestrator trainer/src/trainer "$STAGE/src/"
cp -r tests configs "$STAGE/"
cp tests/mutation/pyproject.toml "$STAGE/pyproject.toml"
find "$STAGE" -name __pycache__ -prune -exec rm -rf {} +

cd "$STAGE"
if [ $# -eq 0 ]; then
  # Bounded to the functions that hold the rules, not the I/O around them; the reconcile pass
  # itself (366 mutants, each judged by the subprocess-heavy controller tests) is left out.
  set -- \
    'orchestrator.controller.x_*' \
    'orchestrator.controller.xǁControllerǁearly_stop_reason*' \
    'orchestrator.early_stopping.*' \
    'orchestrator.controller.xǁControllerǁgpu_hours*' \
    'orchestrator.controller.xǁControllerǁtrial_hours_estimate*' \
    'orchestrator.controller.xǁControllerǁ_can_suggest_more*' \
    'orchestrator.trial_command.*' \
    'orchestrator.values.*' \
    'orchestrator.run_files.x_job_hours*' \
    'trainer.losses.xǁLossWeightsǁ*' \
    'trainer.losses.x_compute_losses*' \
    'trainer.training.xǁLossSetupǁ__call__*' \
    'trainer.training.xǁTrialǁ__init__*' \
    'orchestrator.tuners.optuna_study.*' \
    'orchestrator.designs.*'
fi
printf '%s\n' "$@" > "$STAGE/scope.txt"
# Cut off after MUTATION_MINUTES; what it had no time for is reported as "not checked".
OPENBLAS_NUM_THREADS=1 timeout --signal=INT "${MUTATION_MINUTES:-30}m" \
  "$BIN/mutmut" run --max-children "${MUTATION_CHILDREN:-2}" "$@" > "$STAGE/run.log" 2>&1 || true
"$BIN/mutmut" results --all true > "$STAGE/results.txt" 2>&1 || true
"$BIN/python" "$ROOT/tests/mutation/summary.py" "$STAGE" | tee "$STAGE/summary.txt"
