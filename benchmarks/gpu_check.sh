#!/usr/bin/env bash
# Issue 4's GPU check: one command on a lent GPU machine; 218 s on one H100 (2026-12-05).
#   here:  bash benchmarks/make_gpu_kit.sh
#   there: bash benchmarks/gpu_check.sh      (device tool: carry [".gpu-kit"], timeout_s 420)
# Runs the default test suite with CUDA present (tests/train/test_gpu.py trains T and E on the GPU
# in bf16 and in fp16 with a grad scaler, resumes, and edits), then the training benchmark at 64
# and 128 px: the plain fp32 loop against the trainer with mixed precision. Logs go to $OUT.
set -uo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-/tmp/gpu-check}
mkdir -p "$out"
if [ -d .gpu-kit ]; then
    python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/gpu-site .gpu-kit/*.whl || exit 1
    export PYTHONPATH="/tmp/gpu-site:$PWD/.gpu-kit/site${PYTHONPATH:+:$PYTHONPATH}"
fi
# The `diat` command for the tests that run it; without setuptools' wheel support the package is still importable.
python3 -m pip install -q --no-index --no-deps --no-build-isolation -e . > "$out/install.log" 2>&1 \
    || export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/gpu.txt"
python3 -c "import torch; print('torch', torch.__version__, 'CUDA', torch.version.cuda, torch.cuda.get_device_name(0))" | tee -a "$out/gpu.txt"
status=0
PYTHONUNBUFFERED=1 timeout 240 python3 -m pytest -q -p no:cacheprovider -rs 2>&1 | tee "$out/tests.log" || status=1
PYTHONUNBUFFERED=1 timeout 150 python3 benchmarks/train_speed.py --sizes 64 128 --steps 30 --warmup 5 2>&1 | tee "$out/benchmark.txt" || status=1
exit $status
