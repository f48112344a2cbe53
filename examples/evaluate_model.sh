#!/usr/bin/env bash
# Measure a model: attribute success, identity kept, change outside the region, realism, speed.
#
#   bash examples/evaluate_model.sh ATTRIBUTE DATA/ [REPORT/] [extra `diat evaluate` flags]
#   bash examples/evaluate_model.sh no-eyeglasses aligned_test/ report/ --weights runs/no-eyeglasses-a
#
# DATA/ is a folder aligned by `diat align` (with CelebA's list_attr_celeba.txt and
# identity_CelebA.txt beside the original photos for labelled scores) or plain photos.
# Without --weights the bundled model for ATTRIBUTE is measured. Open REPORT/report.html.
set -euo pipefail
attribute=${1:?usage: evaluate_model.sh ATTRIBUTE DATA/ [REPORT/] [diat evaluate flags]}
data=${2:?usage: evaluate_model.sh ATTRIBUTE DATA/ [REPORT/] [diat evaluate flags]}
report=${3:-evaluation/$attribute}
shift $(( $# >= 3 ? 3 : 2 ))

diat evaluate "$data" --attr "$attribute" -o "$report" "$@"
echo "numbers: $report/metrics.json   report: $report/report.html"
