#!/usr/bin/env bash
# Edit a folder of your photos with every model that ships inside diat; no training, offline.
#
#   bash examples/transfer_bundled.sh PHOTOS/ [OUT/] [extra `diat transfer` flags]
#
# OUT/<attribute>/ mirrors PHOTOS/ with every face edited, and OUT/<attribute>/_sheets/ has
# one original | edited comparison per photo. `diat attributes --bundled` lists the models.
set -euo pipefail
photos=${1:?usage: transfer_bundled.sh PHOTOS/ [OUT/] [diat transfer flags]}
out=${2:-edited}
shift $(( $# >= 2 ? 2 : 1 ))

attributes=$(python -c 'from diat_cli.editing import bundled_attributes; print(" ".join(bundled_attributes()))')
if [ -z "$attributes" ]; then
    echo "this install has no bundled models" >&2
    exit 2
fi
for attribute in $attributes; do
    diat transfer "$photos" "$out/$attribute" --attr "$attribute" --sheet "$@"
done
echo "edited photos and comparison sheets under $out/: $attributes"
