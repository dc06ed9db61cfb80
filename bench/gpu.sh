#!/usr/bin/env bash
# The README's GPU figures in one run: the training input pipeline against compute and the
# course-script baseline, and the endpoint's latency per serving mode. About 5 minutes on one
# H100 with 16 CPU cores. Needs python3 with torch, torchvision, Pillow and numpy (nothing
# else from this project is imported). Output goes to $OUT, else ./bench-results.
set -euo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-bench-results}"
python="${PYTHON:-python3}"
mkdir -p "$out"
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/gpu.txt"
"$python" bench/train_throughput.py --workers 16,8,4 --decode workers,device 2>&1 \
    | tee "$out/train.txt"
"$python" bench/inference_latency.py --device cuda 2>&1 | tee "$out/inference.txt"
