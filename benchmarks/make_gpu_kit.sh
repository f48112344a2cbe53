#!/usr/bin/env bash
# Build .gpu-kit/ here: what a bare GPU machine lacks to run diat (it has PyTorch, but no network,
# no dlib and no dlib model files). About 36 MB: the dlib-bin wheel for its Python, and dlib's
# 5-point predictor, CNN detector and face-recognition ResNet (the 96 MB 68-point model is left out).
# Then: bash benchmarks/gpu_check.sh there, with .gpu-kit carried along.
set -euo pipefail
cd "$(dirname "$0")/.."
python_version=${GPU_PYTHON:-3.12}  # the GPU machine's python3
rm -rf .gpu-kit
mkdir -p .gpu-kit/site/face_recognition_models/models
python3 -m pip download -q --no-deps --only-binary=:all: --python-version "$python_version" --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .gpu-kit dlib-bin
models=$(python3 -c "import importlib.util, os; print(os.path.join(importlib.util.find_spec('face_recognition_models').submodule_search_locations[0], 'models'))")
for name in shape_predictor_5_face_landmarks mmod_human_face_detector dlib_face_recognition_resnet_model_v1; do
    cp "$models/$name.dat" .gpu-kit/site/face_recognition_models/models/
done
touch .gpu-kit/site/face_recognition_models/__init__.py
du -sh .gpu-kit
