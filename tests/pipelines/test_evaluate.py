"""`diat evaluate` end to end: known answers for editors that change nothing or swap people, the files, the CLI."""

from __future__ import annotations

import json
import os
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from diat_cli.attributes import CELEBA_COLUMNS
from diat_cli.checkpoints import save_network
from diat_cli.classifier import Classifier
from diat_cli.cli import app
from diat_cli.errors import ConfigError
from diat_cli.face.identity import load_identity_network
from diat_cli.manifest import MANIFEST_NAME, encode_record
from diat_cli.metrics import MAX_PSNR
from diat_cli.nets.classifier import AttributeClassifier
from diat_cli.nets.transform import TransformNetwork
from diat_cli.pipelines.evaluate import evaluate
from diat_cli.settings import EvaluateSettings

runner = CliRunner()
PEOPLE, PHOTOS_EACH, SIZE = 8, 3, 64


class ReturnsInput:
    """An editor that changes nothing."""

    size = SIZE

    def __call__(self, crops: torch.Tensor) -> torch.Tensor:
        return crops.clone()


class SwapsPeople:
    """An editor that returns the previous face of the batch: every edit is someone else."""

    size = SIZE

    def __call__(self, crops: torch.Tensor) -> torch.Tensor:
        return crops.roll(1, dims=0)


def _face(person: int, photo: int) -> np.ndarray:
    """A smooth synthetic 'face': a person's colour pattern plus a little per-photo noise."""
    person_rng, photo_rng = np.random.default_rng(person), np.random.default_rng(1000 + person * 10 + photo)
    coarse = person_rng.uniform(30, 225, (4, 4, 3))
    image = np.asarray(Image.fromarray(coarse.astype(np.uint8)).resize((SIZE, SIZE), Image.Resampling.BICUBIC), dtype=np.float64)
    return np.clip(image + photo_rng.normal(0, 6, image.shape), 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """An aligned folder of 24 photos (8 people x 3), labels and identities beside the 'photos'.

    Photo 0 of every person wears glasses; photos 1 and 2 do not. For `no-eyeglasses` the 8 faces
    with glasses are the source side and the 16 without the reference side.
    """
    root = tmp_path_factory.mktemp("evaluate_data")
    photos, aligned = root / "photos", root / "aligned"
    photos.mkdir()
    aligned.mkdir()
    label_lines = [str(PEOPLE * PHOTOS_EACH), " ".join(CELEBA_COLUMNS)]
    identity_lines, records = [], []
    glasses = CELEBA_COLUMNS.index("Eyeglasses")
    for person in range(PEOPLE):
        for photo in range(PHOTOS_EACH):
            name = f"{person * PHOTOS_EACH + photo + 1:06d}.jpg"
            crop = f"{Path(name).stem}_0.png"
            Image.fromarray(_face(person, photo)).save(aligned / crop)
            values = [-1] * len(CELEBA_COLUMNS)
            values[glasses] = 1 if photo == 0 else -1
            label_lines.append(name + " " + " ".join(map(str, values)))
            identity_lines.append(f"{name} {person + 1}")
            records.append({"source": str(photos / name), "relative": name, "size": SIZE, "crop": crop, "face_index": 0, "faces_in_photo": 1})
    (photos / "list_attr_celeba.txt").write_text("\n".join(label_lines) + "\n")
    (photos / "identity_CelebA.txt").write_text("\n".join(identity_lines) + "\n")
    (aligned / MANIFEST_NAME).write_text("".join(encode_record(record) for record in records))
    return aligned


@pytest.fixture(scope="module")
def classifier():
    torch.manual_seed(0)
    return Classifier(AttributeClassifier(channels=4, image_size=64).eval())


@pytest.fixture(scope="module")
def identity_network():
    return load_identity_network()


def _run(dataset, tmp_path, editor, classifier, identity_network, **changes):
    values = dict(attribute="no-eyeglasses", data=dataset, report_dir=tmp_path / "report", device="cpu", sample=4, worst=3)
    values.update(changes)
    return evaluate(EvaluateSettings(**values), editor=editor, classifier=classifier, identity_network=identity_network)


def test_an_editor_that_changes_nothing(dataset, tmp_path, classifier, identity_network):
    metrics = _run(dataset, tmp_path, ReturnsInput(), classifier, identity_network)
    assert metrics["data"]["source_faces"] == 8 and metrics["data"]["reference_faces"] == 16  # no-eyeglasses edits faces with glasses
    success = metrics["attribute_success"]
    assert success["edited"] == success["unedited"]  # success equals the floor
    identity = metrics["identity"]
    assert identity["mean_distance"] == 0.0 and identity["share_kept"] == 1.0 and identity["rank1"] == 1.0
    assert identity["verification_pairs"] > 0
    assert identity["verification_edited"] == identity["verification_unedited"]
    outside = metrics["outside_region"]
    assert outside["region"] == "eyes" and outside["psnr_db"] == MAX_PSNR and outside["ssim"] == pytest.approx(1.0)
    assert metrics["realism"]["edited_faces"] == 8 and metrics["realism"]["reference_faces"] == 16
    assert "dlib" in metrics["realism"]["features"]
    assert metrics["speed"]["faces_per_second"] > 0
    skin = metrics["skin_tone"]
    assert skin["faces"] == 8 and skin["mean_delta_e"] == 0.0 and skin["share_visible"] == 0.0
    assert skin["darkest_third"]["mean_lightness"] <= skin["lightest_third"]["mean_lightness"]


def test_an_editor_that_swaps_people(dataset, tmp_path, classifier, identity_network):
    metrics = _run(dataset, tmp_path, SwapsPeople(), classifier, identity_network)
    identity = metrics["identity"]
    assert identity["rank1"] <= 0.1
    assert identity["mean_distance"] > 0
    # these synthetic faces all look alike to the face-recognition network, so verification cannot
    # drop much here; test_real_photos_of_the_same_people checks that it does on real faces
    assert identity["verification_edited"] <= identity["verification_unedited"]
    assert metrics["outside_region"]["psnr_db"] < 40
    assert metrics["skin_tone"]["mean_delta_e"] > 0  # another person's face has another skin colour


def test_files_are_written_and_strict_json(dataset, tmp_path, classifier, identity_network):
    metrics = _run(dataset, tmp_path, ReturnsInput(), classifier, identity_network, limit=5, attribute="eyeglasses")
    report = tmp_path / "report"
    saved = json.loads((report / "metrics.json").read_text(), parse_constant=lambda name: pytest.fail(f"non-JSON constant {name}"))
    assert saved == metrics
    assert metrics["data"]["source_faces"] == 5 and metrics["attribute"] == "eyeglasses"  # 16 without glasses, limited to 5
    assert len(metrics["worst"]) == 3
    text = (report / "report.html").read_text()
    assert text.count("data:image/png;base64,") == 2 * (4 + 3)


def test_the_limit_takes_the_same_faces_held_out_first(dataset, tmp_path, classifier, identity_network):
    first = _run(dataset, tmp_path / "a", ReturnsInput(), classifier, identity_network, limit=4, worst=8)
    second = _run(dataset, tmp_path / "b", ReturnsInput(), classifier, identity_network, limit=4, worst=8)
    assert sorted(item["face"] for item in first["worst"]) == sorted(item["face"] for item in second["worst"])
    from diat_cli.data import validation_position

    chosen = {item["face"].replace("_0.png", ".jpg") for item in first["worst"]}
    positions = sorted(validation_position(f"{n:06d}.jpg") for n in range(1, 25) if n % 3 == 1)  # the 8 source photos (with glasses)
    assert max(validation_position(name) for name in chosen) == positions[3]


def test_unlabelled_data_edits_every_face_and_skips_realism(dataset, tmp_path, classifier, identity_network):
    plain = tmp_path / "plain"
    plain.mkdir()
    for path in sorted(dataset.glob("*.png"))[:6]:
        (plain / path.name).write_bytes(path.read_bytes())
    records = [json.loads(line) for line in (dataset / MANIFEST_NAME).read_text().splitlines()][:6]
    for record in records:
        record["source"] = str(tmp_path / "nowhere" / record["relative"])  # no labels beside these photos
    (plain / MANIFEST_NAME).write_text("".join(encode_record(record) for record in records))
    metrics = _run(plain, tmp_path, ReturnsInput(), classifier, identity_network)
    assert metrics["data"]["source_faces"] == 6 and "no labels" in metrics["data"]["kind"]
    assert "skipped" in metrics["realism"] and metrics["identity"]["verification_pairs"] == 0
    with_reference = _run(plain, tmp_path, ReturnsInput(), classifier, identity_network, reference=dataset)
    assert with_reference["realism"]["reference_faces"] == 24


def test_bad_requests_are_clear(dataset, tmp_path, classifier, identity_network):
    with pytest.raises(ConfigError, match="no such file"):
        _run(tmp_path / "missing", tmp_path, ReturnsInput(), classifier, identity_network)
    with pytest.raises(ConfigError, match="UTKFace"):
        _run(dataset, tmp_path, ReturnsInput(), classifier, identity_network, labels=Path("utkface"))
    with pytest.raises(ConfigError, match="--limit"):
        EvaluateSettings(attribute="old", data=dataset, limit=0)
    other = tmp_path / "labels.txt"
    other.write_text("1\n" + " ".join(CELEBA_COLUMNS) + "\nnobody.jpg " + " ".join(["1"] * 40) + "\n")
    with pytest.raises(ConfigError, match="match no face"):
        _run(dataset, tmp_path, ReturnsInput(), classifier, identity_network, labels=other)


def _weights(tmp_path) -> tuple[Path, Path]:
    transform = tmp_path / "weights" / "transform.safetensors"
    torch.manual_seed(0)
    save_network(transform, TransformNetwork(channels=4, residual_blocks=1), {"channels": 4, "residual_blocks": 1},
                 {"kind": "transform", "attribute": "no-eyeglasses", "size": SIZE})
    classifier = tmp_path / "classifier.safetensors"
    save_network(classifier, AttributeClassifier(channels=4, image_size=64), {"channels": 4, "image_size": 64}, {"kind": "classifier", "size": 64})
    return transform, classifier


class _Images(HTMLParser):
    def __init__(self):
        super().__init__()
        self.sources = []

    def handle_starttag(self, tag, attrs):
        if tag == "img":
            self.sources.append(dict(attrs)["src"])


def test_cli_prints_the_table_and_writes_the_report(dataset, tmp_path):
    transform, classifier = _weights(tmp_path)
    output = tmp_path / "out"
    result = runner.invoke(
        app,
        ["evaluate", "--attr", "no-eyeglasses", "--weights", str(transform.parent), "--classifier", str(classifier), str(dataset),
         "-o", str(output), "--device", "cpu", "--sample", "2", "--worst", "2", "--colour-blur", "1.5"],
    )
    assert result.exit_code == 0, result.output
    assert "Rank-1" in result.output and "Attribute success" in result.output and "report.html" in result.output
    metrics = json.loads((output / "metrics.json").read_text())
    assert metrics["identity"]["rank1"] == 1.0  # a fresh transform network starts as the identity
    assert metrics["editor"]["colour_blur"] == 1.5  # what bundle_weights checks against the blur it ships
    parser = _Images()
    parser.feed((output / "report.html").read_text())
    assert len(parser.sources) == 8


def test_cli_errors(dataset, tmp_path, monkeypatch):
    transform, _ = _weights(tmp_path)
    result = runner.invoke(app, ["evaluate", "--attr", "eyeglases", str(dataset)])
    assert result.exit_code == 2 and "did you mean" in result.output
    result = runner.invoke(app, ["evaluate", "--attr", "no-eyeglasses", "--weights", str(tmp_path / "none"), str(dataset)])
    assert result.exit_code == 1 and "no such weights" in result.output
    import diat_cli.classifier as classifier_module

    monkeypatch.setattr(classifier_module, "BUNDLED_CLASSIFIER", tmp_path / "absent.safetensors")
    result = runner.invoke(app, ["evaluate", "--attr", "no-eyeglasses", "--weights", str(transform), str(dataset), "-o", str(tmp_path / "o")])
    assert result.exit_code == 1 and "--classifier" in result.output


def test_real_photos_of_the_same_people(shared_data, tmp_path, classifier, identity_network):
    """celeba-wild photos, aligned in memory: an unchanged face verifies like before; swapped people do not."""
    wild = shared_data / "celeba-wild"
    identities = dict(line.split() for line in (wild / "identity_CelebA.txt").read_text().splitlines() if line.strip())
    from diat_cli.data import read_celeba_attributes

    smiling = read_celeba_attributes(wild / "list_attr_celeba.txt").column("Smiling")
    people: dict[str, list[str]] = {}
    for name, person in sorted(identities.items()):
        if smiling[name] == -1:  # the source side of `smiling`
            people.setdefault(person, []).append(name)
    photos = tmp_path / "photos"
    photos.mkdir()
    for person in sorted(people)[:3]:
        for name in people[person][:3]:
            os.symlink(wild / "images" / name, photos / name)  # a link, not a copy of the image
    metrics = _run(photos, tmp_path, ReturnsInput(), classifier, identity_network, attribute="smiling")
    identity = metrics["identity"]
    assert metrics["data"]["identities"] and identity["verification_pairs"] > 0
    assert identity["rank1"] == 1.0 and identity["verification_edited"] == identity["verification_unedited"] > 0.5
    swapped = _run(photos, tmp_path, SwapsPeople(), classifier, identity_network, attribute="smiling")
    assert swapped["identity"]["rank1"] < 0.2 and swapped["identity"]["share_kept"] < 0.5
    assert swapped["identity"]["verification_edited"] < identity["verification_unedited"]
    assert "skipped" in swapped["realism"]  # every chosen photo is on the source side: no real reference faces
