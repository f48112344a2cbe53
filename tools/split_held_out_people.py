"""Copy the faces of an aligned CelebA folder whose people `diat evaluate` never reads, for training.

Usage: python tools/split_held_out_people.py ALIGNED OUT --attr smiling [--attr old ...] [--limit 200]

celeba-test-crops is the only CelebA set here with faces large enough for 128 px models, and it
is also the set the bundled models are measured on. To train on it and still measure on people
the model never saw, this asks `evaluate` which faces `diat evaluate ALIGNED --attr A --limit N`
reads for each attribute given (the edited faces, the other photos they are verified against,
the reference faces of the realism scores) and copies every face of *other* people into OUT, an
aligned folder with its own manifest: `diat train-transform --data OUT` finds the labels as it
would for ALIGNED. Faces without a known identity, and photos with several faces, are left out.
ALIGNED is not touched; OUT must not exist.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from diat_cli.data import CELEBA_IDENTITIES_NAME, find_beside_photos, read_celeba_identities
from diat_cli.errors import DiatError
from diat_cli.manifest import copy_faces, face_records
from diat_cli.pipelines.evaluate import evaluated_people
from diat_cli.settings import EvaluateSettings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("aligned", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--attr", action="append", required=True, help="an attribute whose evaluation must see only new people (repeatable)")
    parser.add_argument("--limit", type=int, default=200, help="the --limit the evaluation will use")
    parser.add_argument("--identities", type=Path, default=None, help=f"{CELEBA_IDENTITIES_NAME} (default: beside the photos)")
    args = parser.parse_args()

    if args.out.exists():
        raise SystemExit(f"{args.out} exists; choose a new folder")
    records = face_records(args.aligned)
    if not records:
        raise SystemExit(f"{args.aligned}: no aligned faces (run `diat align` first)")
    identities_path = args.identities or find_beside_photos(records, CELEBA_IDENTITIES_NAME)
    if identities_path is None:
        raise SystemExit(f"no {CELEBA_IDENTITIES_NAME} found for {args.aligned}; give --identities")
    identities = read_celeba_identities(identities_path)

    excluded: set[int] = set()
    for attribute in args.attr:
        settings = EvaluateSettings(attribute=attribute, data=args.aligned, limit=args.limit, identities=identities_path)
        try:
            excluded |= evaluated_people(settings, int(records[0].get("size") or 128))
        except DiatError as error:
            raise SystemExit(str(error)) from None

    kept, people, unknown = [], set(), 0
    for record in records:
        if (record.get("faces_in_photo") or 1) != 1:
            continue
        person = identities.get(Path(record["relative"]).name)
        if person is None:
            unknown += 1
        elif person not in excluded:
            kept.append(record)
            people.add(person)
    copy_faces(kept, args.aligned, args.out)
    print(
        f"{len(kept):,} faces of {len(people):,} people -> {args.out}; {len(excluded):,} people left out "
        f"(read by the evaluation of {', '.join(args.attr)} at --limit {args.limit}); {unknown:,} faces without an identity"
    )


if __name__ == "__main__":
    main()
