"""`diat align` on real photos (skipped without ../shared/data) and on bad input."""

from __future__ import annotations

import io
import shutil

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from diat_cli.cli import app
from diat_cli.errors import ConfigError
from diat_cli.face.align import eye_centres, invert_affine, template_eyes, transform_points
from diat_cli.face.detect import FaceDetector
from diat_cli.imageio import read_image
from diat_cli.manifest import face_records, read_manifest
from diat_cli.pipelines.align import align_photos
from diat_cli.settings import AlignSettings

runner = CliRunner()


def _sample(folder, count):
    paths = sorted((folder / "images").glob("*.jpg"))
    step = max(1, len(paths) // count)
    return paths[::step][:count]


@pytest.fixture(scope="module")
def aligned_wild(shared_data, tmp_path_factory):
    """40 in-the-wild CelebA photos aligned once for the module's tests."""
    photos = tmp_path_factory.mktemp("wild_photos")
    for path in _sample(shared_data / "celeba-wild", 40):
        shutil.copy(path, photos / path.name)
    output = tmp_path_factory.mktemp("wild_aligned") / "aligned"
    summary = align_photos(AlignSettings(inputs=(photos,), output=output, workers=2))
    return photos, output, summary


def test_finds_a_face_in_nearly_every_test_crop(shared_data, tmp_path):
    photos = _sample(shared_data / "celeba-test-crops", 120)
    summary = align_photos(AlignSettings(inputs=tuple(photos), output=tmp_path / "out", workers=2))
    assert summary.photos == 120 and not summary.failures
    assert (summary.photos - summary.photos_without_face) / summary.photos >= 0.95


def test_redetected_eyes_sit_on_the_template(aligned_wild):
    _, output, summary = aligned_wild
    assert summary.faces >= 30
    detector = FaceDetector(upsample=1)
    errors = []
    for record in face_records(output):
        crop = read_image(output / record["crop"])
        assert crop.shape == (128, 128, 3)
        faces = detector.detect(crop)
        if faces:
            centre_face = min(faces, key=lambda face: abs((face.box[0] + face.box[2]) / 2 - 64))
            errors.append(np.linalg.norm(eye_centres(centre_face.landmarks) - template_eyes(128), axis=1).max())
    errors = np.array(errors)
    assert len(errors) >= 0.9 * summary.faces
    assert np.mean(errors <= 2.0) >= 0.95 and np.median(errors) < 1.0


def test_manifest_matrix_maps_crops_back_onto_the_source(aligned_wild):
    _, output, _ = aligned_wild
    for record in face_records(output):
        inverse = invert_affine(np.array(record["matrix"]))
        back = transform_points(inverse, template_eyes(record["size"]))
        assert np.abs(back - eye_centres(np.array(record["landmarks"]))).max() < 1.0
    # and the crop's pixels are the source's pixels at those places
    record = face_records(output)[0]
    source, crop = read_image(record["source"]), read_image(output / record["crop"]).astype(int)
    inverse = invert_affine(np.array(record["matrix"]))
    for x, y in [(50, 66), (64, 80), (78, 66)]:
        sx, sy = transform_points(inverse, np.array([[x, y]]))[0]
        assert np.abs(crop[y, x] - source[int(round(sy)), int(round(sx))].astype(int)).mean() < 25


def test_two_faces_side_by_side_give_two_crops_left_to_right(shared_data, tmp_path):
    left, right = (read_image(p) for p in _sample(shared_data / "celeba-test-crops", 2))
    height = min(left.shape[0], right.shape[0])
    pair = np.concatenate([left[:height], right[:height]], axis=1)
    Image.fromarray(pair).save(tmp_path / "pair.png")
    summary = align_photos(AlignSettings(inputs=(tmp_path / "pair.png",), output=tmp_path / "out", workers=1))
    records = face_records(tmp_path / "out")
    assert summary.faces == 2 and [r["crop"] for r in records] == ["pair_0.png", "pair_1.png"]
    assert records[0]["box"][0] < records[1]["box"][0]
    largest = align_photos(
        AlignSettings(inputs=(tmp_path / "pair.png",), output=tmp_path / "one", workers=1, largest_only=True)
    )
    assert largest.faces == 1


def _bad_input_corpus(folder):
    (folder / "empty.jpg").write_bytes(b"")
    (folder / "text.png").write_text("not an image")
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(1).integers(0, 255, (80, 80, 3), np.uint8)).save(buffer, "JPEG")
    (folder / "truncated.jpg").write_bytes(buffer.getvalue()[:300])
    Image.new("1", (9000, 9000)).save(folder / "bomb.png")
    return {"empty.jpg", "text.png", "truncated.jpg", "bomb.png"}


def test_bad_files_are_reported_and_the_rest_aligned(shared_data, tmp_path):
    photos = tmp_path / "photos"
    (photos / "nested").mkdir(parents=True)
    good = _sample(shared_data / "celeba-test-crops", 3)
    for path in good:
        shutil.copy(path, photos / "nested" / path.name)
    bad = _bad_input_corpus(photos)
    before = {p: p.read_bytes() for p in photos.rglob("*") if p.is_file()}
    result = runner.invoke(app, ["align", str(photos), str(tmp_path / "out"), "--workers", "2"])
    assert result.exit_code == 1, result.output
    error_lines = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(error_lines) == len(bad)
    for name in bad:
        assert any(name in line for line in error_lines)
    crops = sorted(p.relative_to(tmp_path / "out").as_posix() for p in (tmp_path / "out").rglob("*.png"))
    assert crops == sorted(f"nested/{p.stem}_0.png" for p in good)
    assert {p: p.read_bytes() for p in photos.rglob("*") if p.is_file()} == before  # inputs untouched


def test_rerun_refuses_to_overwrite_then_resumes(shared_data, tmp_path):
    photos = _sample(shared_data / "celeba-test-crops", 4)
    output = tmp_path / "out"
    align_photos(AlignSettings(inputs=tuple(photos[:2]), output=output, workers=1))
    result = runner.invoke(app, ["align", *map(str, photos), str(output)])
    assert result.exit_code == 2 and "--skip-existing" in result.output
    summary = align_photos(AlignSettings(inputs=tuple(photos), output=output, workers=1, skip_existing=True))
    assert summary.skipped_existing == 2 and summary.photos == 2
    assert len({r["source"] for r in read_manifest(output)}) == 4


def test_output_inside_input_is_refused(tmp_path):
    (tmp_path / "photos").mkdir()
    with pytest.raises(ConfigError, match="inside input folder"):
        align_photos(AlignSettings(inputs=(tmp_path / "photos",), output=tmp_path / "photos" / "aligned"))


def test_bad_arguments_exit_2(tmp_path):
    assert runner.invoke(app, ["align", str(tmp_path), str(tmp_path / "o"), "--size", "8"]).exit_code == 2
    assert runner.invoke(app, ["align", str(tmp_path), str(tmp_path / "o"), "--detector", "magic"]).exit_code == 2
    assert runner.invoke(app, ["align", str(tmp_path / "o")]).exit_code == 2


def test_crop_names_never_collide():
    from pathlib import Path

    from diat_cli.imageio import ImageFile
    from diat_cli.pipelines.align import plan_jobs

    images = [
        ImageFile(Path("a/x.jpg"), Path("x.jpg")),  # named one by one from two folders
        ImageFile(Path("b/x.jpg"), Path("x.jpg")),
        ImageFile(Path("c/x.png"), Path("x.png")),  # same stem, other format
        ImageFile(Path("d/x_jpg-2.jpg"), Path("x_jpg-2.jpg")),  # already uses the first free number
        ImageFile(Path("e/y.jpg"), Path("sub/y.jpg")),
    ]
    stems = [job.crop_stem.as_posix() for job in plan_jobs(images)]
    assert stems == ["x_jpg", "x_jpg-3", "x_png", "x_jpg-2", "sub/y"]
    assert len(set(stems)) == len(stems)
