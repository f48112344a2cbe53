#!/usr/bin/env bash
# Align every face in a folder of photos to diat's canonical crop, then count what was found.
#
#   bash examples/align_photos.sh PHOTOS/ [ALIGNED/] [extra `diat align` flags]
#   bash examples/align_photos.sh ~/Pictures/family aligned/ --size 64 --largest
#
# ALIGNED/ gets <photo>_<k>.png per face (left to right) and manifest.jsonl, which records
# where each crop came from so that `diat transfer` and `diat evaluate` can use the folder.
set -euo pipefail
photos=${1:?usage: align_photos.sh PHOTOS/ [ALIGNED/] [diat align flags]}
aligned=${2:-aligned}
shift $(( $# >= 2 ? 2 : 1 ))

diat align "$photos" "$aligned" --size 128 "$@"
faces=$(find "$aligned" -name '*.png' | wc -l)
echo "$faces face crop(s) in $aligned; manifest: $aligned/manifest.jsonl"
