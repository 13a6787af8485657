#!/usr/bin/env bash
# Every GPU check of the GPU issue, in one go, in under 8 minutes, on a machine lent with a GPU:
#
#   benchmarks/gpu_check.sh          figures into $OUT (the device tool's folder) or gpu-figures/
#
# 1. device.txt    the GPU (nvidia-smi) and torch's view of it
# 2. tests.txt     the GPU tests (tests/test_gpu.py: training, step batching, pause/stop, sharing)
# 3. train.txt     the chapter's 10-epoch classic run on the GPU: training time, accuracy; eager and
#                  torch.compile ("default", "reduce-overhead" = CUDA graphs); recorded as the app does
# 4. throughput.txt the chapter's own data path against the engine on the same GPU (goal: 20x)
# 5. share.txt     4 and 10 runs sharing the GPU through the app's executor: each run's samples/s, total
# 6. draw.txt      one Draw stroke's server time with the model on the CPU and on the GPU
# summary.txt      each step's last line (its figure) and exit status.
#
# Without a CUDA GPU it says so, writes no-gpu.txt, and exits 3: nothing is measured.
# DRY_RUN=1 runs every step on the CPU with tiny sizes, to check the script itself here.
#
# Data: LENET_DATA_DIR, else .data/ in the repository (copy ../shared/data there and carry it:
# the device machine reaches no network), else ../shared/data. Packages the device's Python lacks
# (captum, tensorboardX) travel as wheels in .whl/ (see the device tool's notes).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-gpu-figures}
mkdir -p "$OUT"
PY=${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}
if [ -d .whl ] && ls .whl/*.whl >/dev/null 2>&1; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
        && export PYTHONPATH=/tmp/site:${PYTHONPATH:-}
fi
export PYTHONPATH=$PWD:$PWD/tests:${PYTHONPATH:-} PYTHONUNBUFFERED=1 LENET_OFFLINE=1
if [ -z "${LENET_DATA_DIR:-}" ]; then
    if [ -d .data/fashion-mnist ]; then export LENET_DATA_DIR=$PWD/.data; else export LENET_DATA_DIR=$(cd .. && pwd)/shared/data; fi
fi
export LENET_RUNS_DIR=$(mktemp -d) LENET_CACHE_DIR=$(mktemp -d)

if "$PY" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)"; then
    DEVICE=cuda EPOCHS=10 RUNS=4,10 ROUNDS=3 MODES=off,default,reduce-overhead STROKES=50
    TEST_DEVICE=cuda
elif [ "${DRY_RUN:-0}" = 1 ]; then
    echo "gpu_check: DRY_RUN=1 and no CUDA GPU: every step on the CPU, tiny sizes (this measures nothing)"
    DEVICE=cpu EPOCHS=1 RUNS=2 ROUNDS=1 MODES=off STROKES=5
    TEST_DEVICE=cpu
    export LENET_DATA_DIR=$(mktemp -d)  # small stand-ins for both data sets: the plumbing, in seconds
    "$PY" -c "from synthetic import synthetic_idx as s; [s('$LENET_DATA_DIR/' + n, n_train=1024, n_test=256) for n in ('fashion-mnist', 'mnist')]"
else
    msg="gpu_check: no CUDA GPU found (torch.cuda.is_available() is False on $(hostname)): nothing was measured"
    echo "$msg" | tee "$OUT/no-gpu.txt"
    exit 3
fi

{ nvidia-smi 2>&1 || echo "(no nvidia-smi)"; "$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'device', torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'cpu')"; } > "$OUT/device.txt" 2>&1
: > "$OUT/summary.txt"
step() {  # step NAME SECONDS COMMAND...: run it with a time limit, keep its output and its last line
    local name=$1 limit=$2; shift 2
    local t0=$SECONDS
    echo "== $name (limit ${limit}s)"
    timeout "$limit" "$@" > "$OUT/$name.txt" 2>&1
    local rc=$?
    tail -n 3 "$OUT/$name.txt"
    printf '%-11s rc=%-3s %4ss  %s\n' "$name" "$rc" "$((SECONDS - t0))" "$(tail -n 1 "$OUT/$name.txt")" >> "$OUT/summary.txt"
}
step tests 90 env LENET_TEST_DEVICE=$TEST_DEVICE "$PY" -m pytest -q -x -m gpu -p no:cacheprovider tests/test_gpu.py
step train 90 "$PY" benchmarks/gpu_train.py --device $DEVICE --epochs $EPOCHS --modes $MODES
step throughput 90 "$PY" benchmarks/train_throughput.py --device $DEVICE --rounds $ROUNDS --workers 4
step share 120 "$PY" benchmarks/gpu_share.py --device $DEVICE --runs $RUNS --epochs 2
step draw 30 "$PY" benchmarks/draw_inference.py --strokes $STROKES
echo "== summary"
cat "$OUT/summary.txt"
