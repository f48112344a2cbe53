#!/usr/bin/env bash
# Train your own attribute from two folders of faces, then apply it to a few of them.
#
#   bash examples/train_custom_attribute.sh WITHOUT/ WITH/ [RUN/] [extra `diat train-transform` flags]
#   bash examples/train_custom_attribute.sh faces/no_hat faces/hat runs/hat --steps 3000 --size 64
#
# WITHOUT/ holds faces that lack the attribute (they get edited), WITH/ faces that have it.
# Photos are fine: they are aligned first (`diat align`), as the training expects.
# Writes RUN/ (config, metrics.jsonl, grids/ to look at while it trains, transform.safetensors)
# and RUN/preview/ with the first faces of WITHOUT/ edited by the new model.
set -euo pipefail
without=${1:?usage: train_custom_attribute.sh WITHOUT/ WITH/ [RUN/] [train-transform flags]}
with=${2:?usage: train_custom_attribute.sh WITHOUT/ WITH/ [RUN/] [train-transform flags]}
run=${3:-runs/custom}
shift $(( $# >= 3 ? 3 : 2 ))

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
diat align "$without" "$work/without" --largest --size 128
diat align "$with" "$work/with" --largest --size 128

diat train-transform --attr custom --source "$work/without" --reference "$work/with" --run-dir "$run" --mask "$@"

mkdir -p "$work/sample"
find "$work/without" -name '*.png' | sort | head -n 8 | xargs -I{} cp {} "$work/sample/"
diat transfer "$work/sample" "$run/preview" --aligned --weights "$run" --overwrite
echo "model: $run/transform.safetensors   preview: $run/preview/"
