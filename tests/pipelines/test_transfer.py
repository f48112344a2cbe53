"""`diat transfer` on real photos (skipped without ../shared/data) with small models built here."""

from __future__ import annotations

import io
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from diat_cli.checkpoints import save_network
from diat_cli.cli import app
from diat_cli.errors import ConfigError
from diat_cli.imageio import read_image
from diat_cli.manifest import read_manifest
from diat_cli.nets import TransformNetwork
from diat_cli.pipelines.transfer import split_cores, transfer_photos
from diat_cli.settings import TransferSettings

runner = CliRunner()


def save_fixture_model(path, attribute="old", size=64, darken=0.5, texture=0.02, seed=0):
    """An untrained T whose last convolution adds texture and (bias) darkens: visibly different output."""
    torch.manual_seed(seed)
    network = TransformNetwork(channels=8, residual_blocks=1)
    with torch.no_grad():
        network.to_rgb[1].weight.normal_(0.0, texture)
        network.to_rgb[1].bias.fill_(-darken)
    save_network(path, network, {"channels": 8, "residual_blocks": 1}, {"kind": "transform", "attribute": attribute, "size": size})
    return path


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return save_fixture_model(tmp_path_factory.mktemp("model") / "old.transform.safetensors")


@pytest.fixture(scope="module")
def wild(shared_data):
    return sorted((shared_data / "celeba-wild" / "images").glob("*.jpg"))


def _settings(inputs, output, model, **options):
    return TransferSettings(inputs=tuple(inputs), output=output, weights=(model,), workers=1, **options)


def _far_from_faces(shape, boxes):
    """Pixels farther than half a box width (plus 4 px) from every face box.

    The head mask reaches about 0.4 box widths above a dlib box (forehead and hair) and a little
    beyond its sides; it is exactly 0 past that.
    """
    far = np.ones(shape[:2], dtype=bool)
    for left, top, right, bottom in boxes:
        margin = (right - left) // 2 + 4
        far[max(0, top - margin) : max(0, bottom + margin), max(0, left - margin) : max(0, right + margin)] = False
    return far


def _no_face_image(path):
    rng = np.random.default_rng(3)
    coarse = rng.uniform(0, 255, (6, 8, 3)).astype(np.float32)
    Image.fromarray(np.asarray(Image.fromarray(coarse.astype(np.uint8)).resize((320, 240), Image.BICUBIC))).save(path)


def test_edits_real_photos_in_their_size_and_format_and_leaves_the_rest(wild, model, tmp_path):
    photos = tmp_path / "photos"
    (photos / "album").mkdir(parents=True)
    for path in wild[:2]:
        shutil.copy(path, photos / path.name)  # JPEG
    for path in wild[2:4]:
        Image.open(path).save(photos / "album" / f"{path.stem}.png")  # lossless: exact comparisons
    output = tmp_path / "out"
    summary = transfer_photos(_settings([photos], output, model, sheet=True))
    assert summary.exit_code == 0 and summary.photos == 4 and summary.faces >= 4
    records = read_manifest(output)
    edited = [r for r in records if r["status"] == "edited"]
    assert len(edited) == summary.faces
    far_pixels = 0
    for source in sorted(photos.rglob("*.*")):
        relative = source.relative_to(photos)
        result = output / relative
        with Image.open(source) as original, Image.open(result) as written:
            assert written.size == original.size and written.format == original.format
        before, after = read_image(source).astype(int), read_image(result).astype(int)
        boxes = [r["box"] for r in edited if r["relative"] == relative.as_posix()]
        assert boxes, f"no face edited in {relative}"
        for left, top, right, bottom in boxes:  # every face is visibly edited
            assert np.abs(after[top:bottom, left:right] - before[top:bottom, left:right]).mean() > 8
        far = _far_from_faces(before.shape, boxes)
        far_pixels += far.sum()
        if source.suffix == ".png":
            assert np.array_equal(after[far], before[far])  # bit for bit
        else:
            assert np.abs(after[far] - before[far]).mean() < 1.0  # only JPEG re-encoding (same tables)
        sheet = read_image(output / "_sheets" / relative)
        assert sheet.shape[1] == 2 * before.shape[1] + 8
    assert far_pixels > 50_000
    assert (output / "album" / f"{wild[2].stem}.png").is_file()  # sub-folders are mirrored


def test_a_photo_with_two_faces_gets_both_edited(shared_data, model, tmp_path):
    crops = sorted((shared_data / "celeba-test-crops" / "images").glob("*.jpg"))
    left, right = read_image(crops[0]), read_image(crops[len(crops) // 2])
    height = min(left.shape[0], right.shape[0])
    Image.fromarray(np.concatenate([left[:height], right[:height]], axis=1)).save(tmp_path / "pair.png")
    output = tmp_path / "out"
    summary = transfer_photos(_settings([tmp_path / "pair.png"], output, model, save_crops=True))
    assert summary.faces == 2
    records = [r for r in read_manifest(output) if r["status"] == "edited"]
    assert [r["face_index"] for r in records] == [0, 1] and records[0]["box"][0] < records[1]["box"][0]
    before, after = read_image(tmp_path / "pair.png").astype(int), read_image(output / "pair.png").astype(int)
    for record in records:
        left_x, top, right_x, bottom = record["box"]
        assert np.abs(after[top:bottom, left_x:right_x] - before[top:bottom, left_x:right_x]).mean() > 8
        assert record["change"] > 5
        crop_before, crop_after = read_image(output / record["crop_before"]), read_image(output / record["crop_after"])
        assert crop_before.shape == crop_after.shape == (128, 128, 3)
        assert np.abs(crop_after.astype(int) - crop_before).mean() > 5


def test_a_photo_without_a_face_is_reported_and_copied(wild, model, tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    _no_face_image(photos / "landscape.png")
    shutil.copy(wild[0], photos / wild[0].name)
    output = tmp_path / "out"
    result = runner.invoke(app, ["transfer", str(photos), str(output), "--weights", str(model), "--workers", "1"])
    assert result.exit_code == 0, result.output
    assert "note:" in result.output and "landscape.png: no face found; copied unchanged" in result.output
    summary_line = next(line for line in result.output.splitlines() if line.startswith("Transferred in "))
    assert "1 photos with no usable face, 0 files failed -> " in summary_line  # one line, not wrapped mid-count
    assert (output / "landscape.png").read_bytes() == (photos / "landscape.png").read_bytes()
    record = next(r for r in read_manifest(output) if r["relative"] == "landscape.png")
    assert record["status"] == "copied" and record["note"] == "no face found" and record["face_index"] is None

    skipped = tmp_path / "skipped"
    summary = transfer_photos(_settings([photos], skipped, model, skip_unchanged=True))
    assert summary.photos_without_face == 1 and not (skipped / "landscape.png").exists()
    assert (skipped / wild[0].name).is_file()
    assert next(r for r in read_manifest(skipped) if r["relative"] == "landscape.png")["status"] == "skipped"


def _bad_input_corpus(folder):
    (folder / "empty.jpg").write_bytes(b"")
    (folder / "text.png").write_text("not an image")
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(1).integers(0, 255, (80, 80, 3), np.uint8)).save(buffer, "JPEG")
    (folder / "truncated.jpg").write_bytes(buffer.getvalue()[:300])
    Image.new("1", (9000, 9000)).save(folder / "bomb.png")
    return {"empty.jpg", "text.png", "truncated.jpg", "bomb.png"}


def test_bad_files_are_reported_and_the_rest_edited(wild, model, tmp_path):
    photos = tmp_path / "photos"
    (photos / "nested").mkdir(parents=True)
    shutil.copy(wild[0], photos / "nested" / wild[0].name)
    bad = _bad_input_corpus(photos)
    before = {p: p.read_bytes() for p in photos.rglob("*") if p.is_file()}
    output = tmp_path / "out"
    result = runner.invoke(app, ["transfer", str(photos), str(output), "-w", str(model), "--workers", "2"])
    assert result.exit_code == 1, result.output
    error_lines = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(error_lines) == len(bad)
    for name in bad:
        assert any(name in line for line in error_lines)
    written = sorted(p.relative_to(output).as_posix() for p in output.rglob("*") if p.is_file())
    assert written == ["manifest.jsonl", f"nested/{wild[0].name}"]
    assert {p: p.read_bytes() for p in photos.rglob("*") if p.is_file()} == before  # inputs untouched


def test_rerun_refuses_to_overwrite_then_resumes(wild, model, tmp_path):
    output = tmp_path / "out"
    transfer_photos(_settings(wild[:1], output, model))
    result = runner.invoke(app, ["transfer", str(wild[0]), str(wild[1]), str(output), "-w", str(model), "--workers", "1"])
    assert result.exit_code == 2 and "--skip-existing" in result.output
    summary = transfer_photos(_settings(wild[:2], output, model, skip_existing=True))
    assert summary.skipped_existing == 1 and summary.photos == 1
    assert {r["relative"] for r in read_manifest(output)} == {wild[0].name, wild[1].name}
    # a stray file in the way is not replaced either, unless asked
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    (fresh / wild[0].name).write_bytes(b"mine")
    with pytest.raises(ConfigError, match="already exists"):
        transfer_photos(_settings(wild[:1], fresh, model))
    transfer_photos(_settings(wild[:1], fresh, model, overwrite=True))
    assert (fresh / wild[0].name).read_bytes() != b"mine"


def test_output_inside_input_is_refused_unless_asked(wild, model, tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    shutil.copy(wild[0], photos / wild[0].name)
    with pytest.raises(ConfigError, match="inside input folder"):
        transfer_photos(_settings([photos], photos / "edited", model))
    with pytest.raises(ConfigError, match="input folder"):
        transfer_photos(_settings([photos], photos, model, output_inside_input=True))
    for _ in range(2):  # the second run must not take the first run's outputs for inputs
        summary = transfer_photos(_settings([photos], photos / "edited", model, output_inside_input=True, overwrite=True))
        assert summary.photos == 1
    assert sorted(p.name for p in photos.iterdir()) == sorted(["edited", wild[0].name])
    with pytest.raises(ConfigError, match="overwrite an input"):  # a photo named inside OUTPUT
        transfer_photos(_settings([photos / "edited" / wild[0].name], photos / "edited", model, overwrite=True))


def test_several_attributes_each_get_a_folder(wild, tmp_path):
    old = save_fixture_model(tmp_path / "old.safetensors", "old", darken=1.0)
    young = save_fixture_model(tmp_path / "young.safetensors", "young", darken=-1.0, seed=1)
    output = tmp_path / "out"
    result = runner.invoke(
        app,
        ["transfer", str(wild[0]), str(output), "--attr", "old", "-w", str(old), "--attr", "young", "-w", str(young), "--no-colour-match", "--workers", "1"],
    )
    assert result.exit_code == 0, result.output
    before = read_image(wild[0]).astype(int)
    box = read_manifest(output / "old")[0]["box"]
    region = (slice(box[1], box[3]), slice(box[0], box[2]))
    darker = read_image(output / "old" / wild[0].name).astype(int)[region].mean()
    brighter = read_image(output / "young" / wild[0].name).astype(int)[region].mean()
    assert darker < before[region].mean() - 10 and brighter > before[region].mean() + 10  # no colour matching: the bias shows
    assert {r["attribute"] for r in read_manifest(output / "young")} == {"young"}


def test_aligned_crops_are_edited_as_they_are(shared_data, model, tmp_path):
    from diat_cli.pipelines.align import align_photos
    from diat_cli.settings import AlignSettings

    photos = sorted((shared_data / "celeba-test-crops" / "images").glob("*.jpg"))[:2]
    align_photos(AlignSettings(inputs=tuple(photos), output=tmp_path / "aligned", workers=1))
    (tmp_path / "odd").mkdir()
    Image.new("RGB", (100, 60), "gray").save(tmp_path / "odd" / "wide.png")
    output = tmp_path / "out"
    summary = transfer_photos(_settings([tmp_path / "aligned", tmp_path / "odd" / "wide.png"], output, model, aligned=True))
    assert summary.faces == 2 and len(summary.failures) == 1 and "not a square crop" in summary.failures[0]
    for crop in (tmp_path / "aligned").glob("*.png"):
        before, after = read_image(crop).astype(int), read_image(output / crop.name).astype(int)
        assert after.shape == before.shape == (128, 128, 3)
        assert np.abs(after - before)[40:100, 40:90].mean() > 8
        assert np.array_equal(after[:6], before[:6])  # outside the head mask


def test_output_can_be_given_with_o(model, tmp_path):
    """The brief's form: `diat transfer photos/ --attr A -o out/` (every argument is then an input)."""
    photos = tmp_path / "photos"
    photos.mkdir()
    _no_face_image(photos / "landscape.png")
    _no_face_image(tmp_path / "single.png")
    output = tmp_path / "out"
    result = runner.invoke(app, ["transfer", str(photos), str(tmp_path / "single.png"), "-w", str(model), "-o", str(output), "--workers", "1"])
    assert result.exit_code == 0, result.output
    assert (output / "landscape.png").read_bytes() == (photos / "landscape.png").read_bytes()
    assert (output / "single.png").is_file()


def test_bad_arguments_exit_2(model, tmp_path):
    photo = tmp_path / "photo.png"
    _no_face_image(photo)
    out = str(tmp_path / "o")
    cases = {
        "unknown attribute": (["--attr", "purple-hair"], "unknown attribute"),
        "nothing to apply": ([], "give --attr"),
        "no bundled weights": (["--attr", "bald"], "no bundled weights for 'bald'"),
        "missing weights": (["--weights", str(tmp_path / "nope")], "no such weights"),
        "unpaired": (["--attr", "old", "--attr", "young", "-w", str(model)], "one --weights per --attr"),
        "wrong attribute": (["--attr", "young", "-w", str(model)], "trained for 'old'"),
        "bad batch": (["-w", str(model), "--batch-size", "0"], "--batch-size"),
        "bad device": (["-w", str(model), "--device", "tpu"], "--device"),
        "bad colour blur": (["-w", str(model), "--colour-blur", "9"], "--colour-blur must be between 0"),
    }
    for name, (options, message) in cases.items():
        result = runner.invoke(app, ["transfer", str(photo), out, *options])
        assert result.exit_code == 2, (name, result.output)
        assert message in " ".join(result.output.split()), (name, result.output)
    assert runner.invoke(app, ["transfer", out, "-w", str(model)]).exit_code == 2
    assert not (tmp_path / "o").exists()


def test_missing_bundled_weights_list_what_is_bundled(monkeypatch, tmp_path):
    import diat_cli.editing as editing

    bundled = tmp_path / "weights"
    bundled.mkdir()
    monkeypatch.setattr(editing, "BUNDLED_FOLDER", bundled)
    save_fixture_model(bundled / "old.transform.safetensors")
    save_fixture_model(bundled / "no-eyeglasses.transform.safetensors", "no-eyeglasses")
    (tmp_path / "photos").mkdir()
    with pytest.raises(ConfigError, match=r"no bundled weights for 'young' \(bundled: no-eyeglasses, old\)"):
        transfer_photos(TransferSettings(inputs=(tmp_path / "photos",), output=tmp_path / "out", attributes=("young",)))


def test_cores_are_split_between_detection_and_the_network():
    assert split_cores(16, "cuda", 128, None) == (16, None)
    assert split_cores(16, "cpu", 128, None) == (10, 6)
    assert split_cores(16, "cpu", 64, None) == (14, 2)
    assert split_cores(2, "cpu", 128, None) == (1, 1)
    assert split_cores(8, "cpu", 128, 6) == (6, 2)
    assert split_cores(1, "cpu", 256, None) == (1, 1)


def test_a_run_folder_applies_T_then_E_unless_told_not_to(wild, tmp_path):
    from diat_cli.nets import EnhanceNetwork

    run = tmp_path / "run"
    run.mkdir()
    save_fixture_model(run / "transform.safetensors", darken=0.0)
    enhance = EnhanceNetwork(channels=8, blocks=1)
    with torch.no_grad():
        enhance.body[-1].bias.fill_(-1.0)  # E darkens; T alone only adds texture
    save_network(run / "enhance.safetensors", enhance, {"channels": 8, "blocks": 1}, {"kind": "enhance", "attribute": "old", "size": 64})
    with_e, without_e = tmp_path / "with", tmp_path / "without"
    transfer_photos(_settings(wild[:1], with_e, run, colour_match=False))
    transfer_photos(_settings(wild[:1], without_e, run, colour_match=False, use_enhance=False))
    box = read_manifest(with_e)[0]["box"]
    region = (slice(box[1], box[3]), slice(box[0], box[2]))
    darker = read_image(with_e / wild[0].name).astype(int)[region].mean()
    assert darker < read_image(without_e / wild[0].name).astype(int)[region].mean() - 10


def test_transfer_core_does_not_import_the_terminal_libraries():
    code = "import sys, diat_cli.pipelines.transfer, diat_cli.face.paste; assert not {'typer', 'rich'} & set(sys.modules), sorted(sys.modules)"
    subprocess.run([sys.executable, "-c", code], check=True)
