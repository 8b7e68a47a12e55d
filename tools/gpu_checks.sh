#!/usr/bin/env bash
# Every GPU measurement of the README's Performance section in one call, for a lent GPU
# (torch + timm are enough: no decord, PyAV, pytorchvideo or fvcore needed):
#
#   bash tools/gpu_checks.sh                   # writes $OUT (default gpu_results/) and prints tables
#   PEAK_TFLOPS=989 OUT=$OUT bash tools/gpu_checks.sh   # H100 SXM dense bf16 peak for MFU
#
# Dry run on a CPU with tiny inputs: DEVICE=cpu FRAMES=4 CROP=64 BATCH=1 ITERS=1 WARMUP=0 COMPILE=0
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
OUT=${OUT:-gpu_results}
DEVICE=${DEVICE:-cuda}
FRAMES=${FRAMES:-32}
CROP=${CROP:-224}
BATCH=${BATCH:-8}
ITERS=${ITERS:-10}
WARMUP=${WARMUP:-3}
PEAK=${PEAK_TFLOPS:-989}
COMPILE=${COMPILE:-1}
mkdir -p "$OUT"
TINY="swin3d_tiny stvit_r_swin3d_tiny_perframe stvit_r_swin3d_tiny_spatiotemporal stvit_swin3d_tiny_perframe stvit_swin3d_tiny_spatiotemporal"
run() {  # name, extra args...
    local name=$1; shift
    echo "=== $name"
    python tools/benchmark.py --device "$DEVICE" --frames "$FRAMES" --crop "$CROP" --iters "$ITERS" \
        --warmup "$WARMUP" --peak-tflops "$PEAK" --json "$OUT/$name.json" "$@" 2>&1 \
        | grep -v -e "^USDT" -e "gpuGetDeviceCount" | tee "$OUT/$name.txt"
}
python -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'no CUDA')" \
    | tee "$OUT/device.txt"
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
echo "results in $OUT/"
