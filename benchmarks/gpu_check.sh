#!/usr/bin/env bash
# One prepared check for a lent H100/H200, in at most 8 minutes of wall time:
#   1. the kernel tests compiled on the GPU (LINR_TEST_GPU=1 pytest tests/ops), 4.5 min cap;
#   2. the acceptance benchmark (benchmarks/bench_scan.py): N = 10M, D = 128, k = 100, int8
#      codes; B = 1 against the bandwidth floor measured in the same run, B = 1024 against
#      naive torch, 1% and 0.1% filters (row list and mask) against unfiltered, peak extra
#      memory per configuration; 3 min cap.
# CSVs and logs go to $OUT (or ./out). Run from the repository root:
#   bash benchmarks/gpu_check.sh
# The GPU hosts have torch, triton 3.6, numpy, safetensors, tqdm, pytest, pytest-timeout and
# pytest-xdist (/work/.library/device/KINDS.md lists them), which is all linr's kernels,
# tests and benchmark import. Anything missing can travel as wheels in .whl/ (see
# docs/gpu.md, "Checking on a GPU"): they are installed first, into /tmp/site.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-out}"
mkdir -p "$OUT"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
PY="${PYTHON:-python3}"
if compgen -G ".whl/*.whl" >/dev/null; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site .whl/*.whl || exit 1
    export PYTHONPATH="/tmp/site:$PYTHONPATH"
fi
start=$(date +%s)
{
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
    "$PY" -c 'import torch, triton, numpy; print("torch", torch.__version__, "triton",
triton.__version__, "numpy", numpy.__version__, torch.cuda.get_device_name())'
} 2>&1 | tee "$OUT/env.txt"

# Compiles dominate the tests' time (one Triton compilation per specialization): 8 processes.
xdist=()
"$PY" -c 'import xdist' 2>/dev/null && xdist=(-n 8)
LINR_TEST_GPU=1 timeout 270 "$PY" -m pytest tests/ops -q -p no:cacheprovider "${xdist[@]}" \
    --junitxml="$OUT/gpu_tests.xml" 2>&1 | tee "$OUT/gpu_tests.log" | tail -25
tests_rc=${PIPESTATUS[0]}

timeout 180 "$PY" benchmarks/bench_scan.py --n 10M --d 128 --b 1,1024 --k 100 \
    --sel 1,0.01,0.001 --forms rows,mask --both-modes --max-s 0.5 --csv "$OUT/scan.csv" \
    2>&1 | tee "$OUT/bench.log"
bench_rc=${PIPESTATUS[0]}

echo "gpu_check: tests rc=$tests_rc, bench rc=$bench_rc, $(($(date +%s) - start)) s" \
    | tee -a "$OUT/env.txt"
[ "$tests_rc" -eq 0 ] && [ "$bench_rc" -eq 0 ]
