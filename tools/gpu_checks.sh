#!/usr/bin/env bash
# Every GPU check in one call, for a lent GPU: first the whole command-line chain on CUDA
# (tools/chain_check.py: data_prep, 2 epochs in bf16 with MODEL.COMPILE, SIGKILL in mid-epoch and
# auto-resume to the uninterrupted weights, the multi-view test and its report, predict, export,
# and torchrun DDP against 1 process on 2+ GPUs), then the README's Performance measurements.
# One line per chain stage: "stage NAME: ok (...)" or "stage NAME: FAILED (...): the error".
#
#   bash tools/gpu_checks.sh                       # writes $OUT (default gpu_results/), ~6 min on one H100
#   PEAK_TFLOPS=989 OUT=$OUT bash tools/gpu_checks.sh   # H100 SXM dense bf16 peak for MFU
#   CHAIN=0 bash tools/gpu_checks.sh               # benchmarks only;  BENCH=0: the chain only
#
# The chain needs the project's dependencies. A GPU machine without network gets them as wheels
# in .whl/ (made here by `bash tools/gpu_wheels.sh`); they are installed into /tmp/site first.
# Dry run on a CPU (the suite runs it, so this script cannot rot):
#   PYTHON=.venv/bin/python DEVICE=cpu BENCH=0 CHAIN_ARGS="--per-class 2" bash tools/gpu_checks.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}  # the interpreter with torch (a lent GPU machine: python3)
if ! "$PYTHON" -c "import fvcore, av" 2>/dev/null && ls .whl/*.whl >/dev/null 2>&1; then
    "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
    export PYTHONPATH="/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
OUT=${OUT:-gpu_results}
DEVICE=${DEVICE:-cuda}
CHAIN=${CHAIN:-1}
BENCH=${BENCH:-1}
FRAMES=${FRAMES:-32}
CROP=${CROP:-224}
BATCH=${BATCH:-8}
ITERS=${ITERS:-10}
WARMUP=${WARMUP:-3}
PEAK=${PEAK_TFLOPS:-989}
COMPILE=${COMPILE:-1}
mkdir -p "$OUT"
status=0
"$PYTHON" -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'no CUDA')" \
    | tee "$OUT/device.txt"
if [ "$CHAIN" = 1 ]; then
    echo "=== chain"
    # shellcheck disable=SC2086
    "$PYTHON" tools/chain_check.py --device "$DEVICE" --out "$OUT/chain" ${CHAIN_ARGS:-} 2>&1 | tee "$OUT/chain.txt" \
        || status=1
fi
if [ "$BENCH" = 1 ]; then
    TINY="swin3d_tiny stvit_r_swin3d_tiny_perframe stvit_r_swin3d_tiny_spatiotemporal stvit_swin3d_tiny_perframe stvit_swin3d_tiny_spatiotemporal tome_swin3d_tiny"
    run() {  # name, extra args...
        local name=$1; shift
        echo "=== $name"
        "$PYTHON" tools/benchmark.py --device "$DEVICE" --frames "$FRAMES" --crop "$CROP" --iters "$ITERS" \
            --warmup "$WARMUP" --peak-tflops "$PEAK" --json "$OUT/$name.json" "$@" 2>&1 \
            | grep -v -e "^USDT" -e "gpuGetDeviceCount" | tee "$OUT/$name.txt"
    }
    run inference_bf16_b1 --what inference --dtype bf16 --batch 1 --models $TINY
    run inference_bf16_b8 --what inference --dtype bf16 --batch "$BATCH" --models $TINY
    run train_bf16 --what train --dtype bf16 --batch "$BATCH" --models $TINY --profile-attention
    run train_fp32 --what train --dtype fp32 --batch "$BATCH" --models swin3d_tiny stvit_r_swin3d_tiny_perframe
    run train_bf16_actckpt --what train --dtype bf16 --batch "$BATCH" --act-checkpoint \
        --models swin3d_tiny stvit_r_swin3d_tiny_perframe
    if [ "$DEVICE" = cuda ]; then
        run train_fp16 --what train --dtype fp16 --batch "$BATCH" --models swin3d_tiny stvit_r_swin3d_tiny_perframe
    fi
    if [ "$COMPILE" = 1 ]; then
        run train_bf16_compile --what train --dtype bf16 --batch "$BATCH" --compile \
            --models swin3d_tiny stvit_r_swin3d_tiny_perframe
    fi
fi
echo "results in $OUT/"
exit $status
