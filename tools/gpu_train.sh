#!/usr/bin/env bash
# Issue 8's GPU training: several 128 px transforms at once on one lent GPU, each stopped after
# TRAIN_SECONDS (SIGTERM saves a checkpoint), their last snapshots brought back for choosing here.
#   here:  python tools/gpu_pack.py pack .gpu-data TC128-FOLDERS...   (after tools/split_held_out_people.py)
#   there: bash tools/gpu_train.sh   (device tool: carry .gpu-data and dlib's face-recognition
#          ResNet under .gpu-kit/site, from benchmarks/make_gpu_kit.sh)
# Also reruns tests/train/test_gpu.py. Logs and one RUN.tar per run go to $OUT.
set -uo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-/tmp/gpu-train}
seconds=${TRAIN_SECONDS:-420}
mkdir -p "$out" /tmp/runs
export PYTHONPATH="$PWD:$PWD/.gpu-kit/site${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
export OMP_NUM_THREADS=3  # four trainers share 16 cores
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | tee "$out/gpu.txt"
python3 tools/gpu_pack.py unpack .gpu-data /tmp/data || exit 1

timeout 150 python3 -m pytest -q -p no:cacheprovider -rs tests/train/test_gpu.py > "$out/tests-gpu.log" 2>&1 &

common=(--size 128 --variant diat --edit-tv-weight 5 --edit-chroma-weight 10 --mask --mask-weight 0.02
        --transform-channels 32 --discriminator-channels 64 --batch-size 32 --steps 20000
        --checkpoint-every 500 --grid-every 500 --log-every 50 --device cuda --labels /tmp/data/list_attr_celeba.txt)
train() {  # NAME ATTR DATA IDENTITY_WEIGHT
    timeout -s TERM "$seconds" python3 -m diat_cli train-transform --attr "$2" --data "/tmp/data/$3" \
        --identity-weight "$4" "${common[@]}" --run-dir "/tmp/runs/$1" > "/tmp/runs/$1.log" 2>&1
    echo "$1: exit $?"
}
train female128-w female tc128-female 10 &
train female128-w15 female tc128-female 15 &
train male128-w male tc128-female 10 &
train old128-w old tc128-old 10 &
wait
nvidia-smi --query-gpu=memory.used --format=csv,noheader >> "$out/gpu.txt"
python3 tools/gpu_pack.py results /tmp/runs "$out" --keep 4 | tee "$out/results.txt"
for log in /tmp/runs/*.log; do tail -c 1500 "$log"; done > "$out/train-logs.txt"
tail -3 "$out/tests-gpu.log"
