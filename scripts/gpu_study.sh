#!/usr/bin/env bash
# The GPU half of the measured study (issue 15), on a machine with one CUDA GPU, from a clean clone:
#
#     scripts/gpu_study.sh OUT_DIR
#
# 1. fails at once, with one line, when there is no NVIDIA GPU (nvidia-smi) or torch cannot see it;
# 2. installs the GPU extras (`make install-gpu`: cupy, kvikio) into .venv;
# 3. runs the GPU tests (`pytest -m gpu`);
# 4. runs the study's GPU combinations at a reduced size (cifar10 at scale $SCALE, $EPOCHS epoch, $REPEATS
#    repeats, model small): numpy and memory on cuda, cupy (kvikio/GDS or pinned, as it chooses), dali on
#    files-jpeg (GPU decode) and on npy-uint8 (DALI's cuFile reader), each twice: with GPUDirect Storage
#    as the machine offers it, and with it switched off (KVIKIO_COMPAT_MODE=ON for kvikio,
#    CUFILE_FORCE_COMPAT_MODE=true for DALI's cuFile): OUT_DIR/gds/results.csv and OUT_DIR/compat/results.csv
#    (+ .env.jsonl, which records `gds_status`), and OUT_DIR/summary.md (the commit, the GPU, what ran).
#
# Sized for under 8 minutes on one recent GPU (most of it the install). Commit what it measured under
# results/measured/<machine>/ only after it ran there; never report a GPU result that did not run.
set -euo pipefail

OUT=${1:?usage: scripts/gpu_study.sh OUT_DIR (the folder the GPU results are written to)}
SCALE=${SCALE:-0.1}
EPOCHS=${EPOCHS:-1}
REPEATS=${REPEATS:-3}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"

fail() { echo "gpu_study.sh: $*" >&2; exit 2; }

command -v nvidia-smi >/dev/null 2>&1 || fail "no nvidia-smi: this script needs a machine with an NVIDIA GPU and its driver"
nvidia-smi -L >/dev/null 2>&1 || fail "nvidia-smi finds no GPU (driver not loaded?): run it on a machine with a CUDA GPU"

make install-gpu
PY=.venv/bin/python
$PY -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)" \
    || fail "torch.cuda.is_available() is False: torch in .venv is a CPU build or does not match the driver"

mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
START=$(date +%s)

.venv/bin/python -m pytest -m gpu tests -q -x -p no:cacheprovider | tee "$OUT/pytest-gpu.txt"

DATA="$OUT/data"
$PY -m thesislib prepare --dataset cifar10 --scale "$SCALE" --stores npy-uint8,files-jpeg --data-dir "$DATA" --quiet

bench() {  # bench RESULTS LOADER STORE
    $PY -m thesislib bench --loader "$2" --store "$3" --dataset cifar10 --scale "$SCALE" --epochs "$EPOCHS" \
        --repeats "$REPEATS" --model small --device cuda --data-dir "$DATA" --results "$1" --quiet
}

run_all() {  # run_all RESULTS
    bench "$1" numpy npy-uint8
    bench "$1" memory npy-uint8
    bench "$1" cupy npy-uint8
    bench "$1" dali files-jpeg
    bench "$1" dali npy-uint8
}

mkdir -p "$OUT/gds" "$OUT/compat"
run_all "$OUT/gds/results.csv"
KVIKIO_COMPAT_MODE=ON CUFILE_FORCE_COMPAT_MODE=true run_all "$OUT/compat/results.csv"

GDS=$($PY -c "from thesislib import gpu; print(gpu.gds_status())")
{
    echo "# GPU study (scripts/gpu_study.sh)"
    echo
    echo "- commit: \`$(git rev-parse HEAD 2>/dev/null || echo unknown)\`"
    echo "- GPU: $(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | head -1)"
    echo "- GPUDirect Storage as kvikio sees it: $GDS"
    echo "- cifar10 at scale $SCALE, $EPOCHS epoch(s), $REPEATS repeats, model small, device cuda"
    echo "- gds/results.csv: numpy, memory, cupy, dali (files-jpeg, npy-uint8) as the machine offers GDS"
    echo "- compat/results.csv: the same with GDS switched off (KVIKIO_COMPAT_MODE=ON, CUFILE_FORCE_COMPAT_MODE=true)"
    echo "- pytest -m gpu: $(tail -1 "$OUT/pytest-gpu.txt")"
    echo "- took $(( $(date +%s) - START )) s after the install"
} > "$OUT/summary.md"
cat "$OUT/summary.md"
