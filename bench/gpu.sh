#!/usr/bin/env bash
# The CUDA checks and GPU figures in one run, for a machine with a GPU (a workstation, the device
# machine of this workplace): the tests marked gpu, then bench/train.py --device cuda at the
# cloud profile's step shapes with the cost of a phase-2 trial. Not part of `make test` (CI has
# no GPU). Each part has its own time limit and the next runs whatever the last one did.
#
#   bench/gpu.sh [OUT_DIR [PART...]]   # figures and logs under OUT_DIR (default bench/results/gpu)
#
# PARTs (default: all, ~10 minutes on an H200 with 16 host cores): tests, minibatch,
# minibatch-large, fullbatch, cloud-range-512, cloud-range-2048, fullbatch-10m.
#
# PYTHON (default python3) must have torch with CUDA and the trainer's and orchestrator's
# packages importable (installed, or on PYTHONPATH: trainer/src:orchestrator/src).
set -uo pipefail
cd "$(dirname "$0")/.."
out=${1:-bench/results/gpu}
shift $(($# > 0 ? 1 : 0))
parts=" ${*:-tests minibatch minibatch-large fullbatch cloud-range-512 cloud-range-2048 fullbatch-10m} "
py=${PYTHON:-python3}
mkdir -p "$out"
export PYTHONUNBUFFERED=1

part() {  # part NAME SECONDS COMMAND...: one part, its output in $out/NAME.log
    local name=$1 limit=$2
    shift 2
    [[ $parts == *" $name "* ]] || return 0
    echo "== $name ($(date -u +%T), limit ${limit} s)"
    timeout "$limit" "$@" 2>&1 | grep -v '^USDT' | tee "$out/$name.log"
    echo "== $name: exit ${PIPESTATUS[0]}"
}

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
"$py" -c 'import sys, torch; print("python", sys.version.split()[0], "torch", torch.__version__, torch.cuda.get_device_name())'

# Every test marked gpu, from the files that hold one (the rest of the suite needs packages a GPU
# image may lack, and runs in `make test`).
mapfile -t gpu_tests < <(grep -rl --include='test_*.py' 'mark.gpu' tests)
part tests 180 "$py" -m pytest -q -p no:cacheprovider -m gpu "${gpu_tests[@]}"
# Team 2 (cloud profile): clusters of 1,000 zeros, 50 a step (50,000 nodes), all clusters cached;
# then 500,000 nodes a step, a step that keeps the GPU busier.
part minibatch 150 "$py" bench/train.py --device cuda --only minibatch --sizes 1000000 --cluster-size 1000 \
    --set train.clusters_per_step=50 --steps 50 --trial-cost cloud --out "$out/minibatch.json"
part minibatch-large 120 "$py" bench/train.py --device cuda --only minibatch --sizes 2000000 --cluster-size 10000 \
    --set train.clusters_per_step=50 --steps 20 --out "$out/minibatch-large.json"
# Team 1 (cloud profile): 500,000 nodes full-batch with all four losses; then the whole table.
part fullbatch 180 "$py" bench/train.py --device cuda --only fullbatch --sizes 500000 2001035 --steps 5 \
    --trial-cost cloud --out "$out/fullbatch.json"
# Team 2's own range: 1e7 zeros in 10,000 clusters of 1,000 (SYNTHETIC beyond the table: the
# cost, not the accuracy). Clusters the node cache (train.node_cache_mb) cannot hold are built
# again on the host in every later epoch: the trainer's default 512 MB (~3.6M nodes at 148 bytes
# a node), then 2048 MB, which holds them all.
for mb in 512 2048; do
    part cloud-range-$mb 240 "$py" bench/train.py --device cuda --only minibatch --sizes 10000000 --cluster-size 1000 \
        --set train.clusters_per_step=50 --set train.node_cache_mb=$mb --steps 50 --trial-cost cloud \
        --out "$out/cloud-range-$mb.json"
done
# Full-batch at 1e7 zeros: the GPU's peak, against Team 1's 80 GB.
part fullbatch-10m 200 "$py" bench/train.py --device cuda --only fullbatch --sizes 10000000 --steps 2 \
    --out "$out/fullbatch-10m.json"
