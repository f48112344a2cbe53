"""`diat train-classifier` on tiny data: masked losses, artefacts, accuracy, errors, the CLI."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from diat_cli.attributes import CELEBA_COLUMNS, resolve_attribute
from diat_cli.checkpoints import read_metadata, save_network
from diat_cli.classifier import (
    attribute_probability,
    load_classifier,
    utkface_probability,
)
from diat_cli.cli import app
from diat_cli.errors import ConfigError, DiatError
from diat_cli.manifest import MANIFEST_NAME, encode_record
from diat_cli.nets import build_network
from diat_cli.nets.classifier import AGE_GROUPS, AttributeClassifier, split_logits
from diat_cli.pipelines.train_classifier import train_classifier
from diat_cli.settings import TrainClassifierSettings
from diat_cli.train.classifier import (
    ClassifierLabels,
    accuracy_report,
    age_group,
    classifier_loss,
    positive_weights,
)

runner = CliRunner()
GLASSES = CELEBA_COLUMNS.index("Eyeglasses")


def _face(brightness: int, seed: int, size: int = 32) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.clip(brightness + rng.normal(0, 20, (size, size, 3)), 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def celeba_folder(tmp_path_factory):
    """An aligned folder of 60 CelebA-like faces: bright ones 'wear glasses'; labels beside the 'photos'."""
    root = tmp_path_factory.mktemp("celeba")
    photos, aligned = root / "photos", root / "aligned"
    photos.mkdir()
    aligned.mkdir()
    rng = np.random.default_rng(0)
    lines, records = ["60", " ".join(CELEBA_COLUMNS)], []
    for number in range(1, 61):
        name = f"{number:06d}.jpg"
        values = rng.choice([-1, 1], len(CELEBA_COLUMNS))
        bright = number % 2 == 0
        values[GLASSES] = 1 if bright else -1
        Image.fromarray(_face(190 if bright else 60, number)).save(aligned / f"{number:06d}_0.png")
        lines.append(name + " " + " ".join(str(v) for v in values))
        records.append({"source": str(photos / name), "relative": name, "size": 32, "crop": f"{number:06d}_0.png", "face_index": 0, "faces_in_photo": 1})
    (photos / "list_attr_celeba.txt").write_text("\n".join(lines) + "\n")
    (aligned / MANIFEST_NAME).write_text("".join(encode_record(r) for r in records))
    return aligned


@pytest.fixture(scope="module")
def utkface_folder(tmp_path_factory):
    """40 UTKFace-named faces without a manifest; old ones are bright."""
    folder = tmp_path_factory.mktemp("utkface")
    for index in range(40):
        age = (20, 60, 8, 40)[index % 4]
        gender = index % 2
        Image.fromarray(_face(200 if age == 60 else 80, 100 + index)).save(folder / f"{age}_{gender}_0_2017{index:010d}.jpg.chip.jpg")
    return folder


def _settings(tmp_path, celeba=(), utkface=(), **changes):
    values = dict(
        celeba=tuple(celeba), utkface=tuple(utkface), run_dir=tmp_path / "run", size=64, channels=4, steps=4, batch_size=8,
        checkpoint_every=2, log_every=1, device="cpu", validation_fraction=0.2, seed=3,
    )
    values.update(changes)
    return TrainClassifierSettings(**values)


# ---------------------------------------------------------------- network and losses


@pytest.mark.parametrize("size", [64, 128])
def test_classifier_network_outputs_44_logits(size):
    network = build_network("AttributeClassifier", channels=4, image_size=size).eval()
    with torch.no_grad():
        logits = network(torch.zeros(2, 3, size, size))
        resized = network(network.prepare(torch.zeros(2, 3, 50, 50)))
    assert logits.shape == resized.shape == (2, 44)
    parts = split_logits(logits)
    assert parts.celeba.shape == (2, 40) and parts.age.shape == (2, 3) and parts.female.shape == (2,)
    with pytest.raises(ValueError, match="expects"):
        network(torch.zeros(1, 3, 32, 32))
    with pytest.raises(ConfigError, match="64 or 128"):
        AttributeClassifier(image_size=96)
    assert 1_000_000 < sum(p.numel() for p in AttributeClassifier().parameters()) < 1_500_000


def test_age_groups():
    assert [AGE_GROUPS[age_group(age)] for age in (5, 18, 30, 31, 49, 50, 90)] == ["other", "young", "young", "other", "other", "old", "old"]


def test_losses_are_masked_by_the_dataset_a_face_comes_from():
    celeba = ClassifierLabels.from_celeba(torch.ones(3, 40, dtype=torch.int8))
    utkface = ClassifierLabels.from_utkface([25, 60, 10], [1, 0, 1])
    assert utkface.female.tolist() == [1, 0, -1]  # a child's gender is left unknown
    logits = torch.zeros(3, 44, requires_grad=True)
    only_celeba = classifier_loss(logits, celeba)
    assert only_celeba["celeba"].item() == pytest.approx(math.log(2))
    assert only_celeba["age"].item() == 0 and only_celeba["gender"].item() == 0
    only_utkface = classifier_loss(logits, utkface)
    assert only_utkface["celeba"].item() == 0
    assert only_utkface["age"].item() == pytest.approx(math.log(3)) and only_utkface["gender"].item() == pytest.approx(math.log(2))
    mixed = ClassifierLabels.concatenate([celeba, utkface])
    big = torch.zeros(6, 44, requires_grad=True)
    losses = classifier_loss(big, mixed)
    sum(losses.values()).backward()
    assert big.grad[:3, 40:].abs().sum() == 0  # CelebA faces teach nothing about age or gender
    assert big.grad[3:, :40].abs().sum() == 0  # UTKFace faces teach nothing about CelebA's columns
    assert big.grad[:3, :40].abs().sum() > 0 and big.grad[3:5, 40:].abs().sum() > 0


def test_positive_weights_balance_rare_and_common_attributes():
    values = -torch.ones(5, 40, dtype=torch.int8)
    values[0, 0] = 1  # 1 of 5 faces: weight sqrt(4 / 1) = 2
    values[:4, 1] = 1  # 4 of 5: sqrt(1 / 4) = 0.5
    labels = ClassifierLabels.concatenate([ClassifierLabels.from_celeba(values), ClassifierLabels.from_utkface([30], [1])])
    weights = positive_weights(labels, limit=10)  # the UTKFace face does not count
    assert weights[0] == pytest.approx(2.0) and weights[1] == pytest.approx(0.5)
    clipped = positive_weights(labels, limit=1.5)
    assert clipped[0] == pytest.approx(1.5) and clipped[1] == pytest.approx(1 / 1.5)
    logits = torch.zeros(5, 44)
    plain = classifier_loss(logits, ClassifierLabels.from_celeba(values))["celeba"]
    weighted = classifier_loss(logits, ClassifierLabels.from_celeba(values), weights)["celeba"]
    positives = (values > 0).float()
    expected = (math.log(2) * (positives * weights[:40] + (1 - positives))).mean()
    assert plain.item() == pytest.approx(math.log(2)) and weighted.item() == pytest.approx(expected.item())


def test_accuracy_report_on_known_logits():
    values = torch.where(torch.arange(40) % 2 == 0, 1, -1).repeat(4, 1).to(torch.int8)
    values[0, 0] = -1
    labels = ClassifierLabels.concatenate([ClassifierLabels.from_celeba(values), ClassifierLabels.from_utkface([25, 60], [0, 1])])
    logits = torch.zeros(6, 44)
    logits[:4, :40] = values.float() * 3  # right on every CelebA label
    logits[4, 40 + AGE_GROUPS.index("young")] = 5  # right age
    logits[5, 40 + AGE_GROUPS.index("young")] = 5  # wrong age (is old)
    logits[4, 43], logits[5, 43] = -2.0, -2.0  # male, male: one right
    report = accuracy_report(logits, labels)
    assert report["celeba_mean"] == 1.0 and report["celeba_balanced_mean"] == 1.0
    never = accuracy_report(torch.full((6, 44), -5.0), labels)  # says "no" to everything
    first = never["celeba"][CELEBA_COLUMNS[0]]  # 3 of 4 faces have it
    assert first["accuracy"] == 0.25 and first["balanced_accuracy"] == 0.5
    assert never["celeba"]["Eyeglasses"]["balanced_accuracy"] is None  # nobody has it: undefined
    assert report["celeba"][CELEBA_COLUMNS[0]]["positives"] == 3 and report["celeba"][CELEBA_COLUMNS[0]]["majority"] == 0.75
    assert report["age_group"]["accuracy"] == 0.5 and report["gender"]["accuracy"] == 0.5


def test_decisions_for_attributes():
    logits = torch.zeros(2, 44)
    logits[0, GLASSES] = 4.0
    logits[1, GLASSES] = -4.0
    assert attribute_probability(logits, resolve_attribute("eyeglasses")).gt(0.5).tolist() == [True, False]
    assert attribute_probability(logits, resolve_attribute("no-eyeglasses")).gt(0.5).tolist() == [False, True]
    logits[0, CELEBA_COLUMNS.index("Young")] = -3.0  # not young: old
    assert attribute_probability(logits, resolve_attribute("old"))[0] > 0.9
    logits[0, 40 + AGE_GROUPS.index("old")] = 5.0
    logits[0, 43], logits[1, 43] = -3.0, 3.0  # male, female
    assert utkface_probability(logits, resolve_attribute("old"))[0] > 0.9
    assert utkface_probability(logits, resolve_attribute("female")).gt(0.5).tolist() == [False, True]
    assert utkface_probability(logits, resolve_attribute("male")).gt(0.5).tolist() == [True, False]
    assert utkface_probability(logits, resolve_attribute("smiling")) is None


# ---------------------------------------------------------------- training runs


def test_tiny_run_writes_weights_accuracy_and_logs(celeba_folder, utkface_folder, tmp_path):
    result = train_classifier(_settings(tmp_path, [celeba_folder], [utkface_folder], half=True))
    run_dir = tmp_path / "run"
    for name in ("config.json", "metrics.jsonl", "classifier.safetensors", "accuracy.json", "checkpoints/latest.json"):
        assert (run_dir / name).is_file(), name
    lines = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [line["step"] for line in lines] == [1, 2, 3, 4]
    assert {"celeba", "age", "gender", "total"} <= set(lines[-1])
    accuracy = json.loads((run_dir / "accuracy.json").read_text())
    held = accuracy["held_out"]
    assert set(held["celeba"]) == set(CELEBA_COLUMNS) and held["age_group"]["faces"] > 0 and held["gender"] is not None
    metadata = read_metadata(run_dir / "classifier.safetensors")
    assert metadata["kind"] == "classifier" and metadata["size"] == 64 and metadata["steps"] == 4
    assert metadata["celeba_faces"] + metadata["utkface_faces"] == json.loads((run_dir / "config.json").read_text())["data_summary"]["train_faces"]
    assert "non-commercial" in metadata["license"]
    classifier = load_classifier(run_dir)  # the run folder is accepted
    assert classifier.has_utkface_heads and classifier(torch.zeros(3, 3, 100, 100)).shape == (3, 44)
    assert result.weights == run_dir / "classifier.safetensors"


@pytest.mark.slow
def test_a_visible_attribute_is_learned(celeba_folder, utkface_folder, tmp_path):
    result = train_classifier(_settings(tmp_path, [celeba_folder], [utkface_folder], steps=240, channels=8, checkpoint_every=1000, log_every=20))
    held = result.accuracy["held_out"]
    assert held["celeba"]["Eyeglasses"]["accuracy"] >= 0.9


def test_resume_and_overwrite_rules(celeba_folder, tmp_path):
    train_classifier(_settings(tmp_path, [celeba_folder], steps=2))
    with pytest.raises(ConfigError, match="--resume"):
        train_classifier(_settings(tmp_path, [celeba_folder], steps=2))
    with pytest.raises(ConfigError, match="channels differs"):
        train_classifier(_settings(tmp_path, [celeba_folder], steps=4, channels=8, resume=True))
    result = train_classifier(_settings(tmp_path, [celeba_folder], steps=4, resume=True))
    assert result.training.steps == 4 and result.training.resumed_from == 2


def test_init_starts_from_earlier_weights(celeba_folder, tmp_path):
    first = train_classifier(_settings(tmp_path, [celeba_folder], steps=2, run_dir=tmp_path / "first"))
    second = train_classifier(_settings(tmp_path, [celeba_folder], steps=1, learning_rate=1e-9, run_dir=tmp_path / "second", init=first.weights.parent, balance=False))
    difference, scale = largest_difference(first.weights, second.weights)
    assert difference < 1e-4 < scale  # a tiny learning rate: the second run's weights are the first's
    assert read_metadata(second.weights)["initialised_from"] == first.weights.parent.name  # no local paths in metadata
    larger = train_classifier(_settings(tmp_path, [celeba_folder], steps=1, size=128, learning_rate=1e-9, run_dir=tmp_path / "third", init=first.weights, balance=False))
    difference, _ = largest_difference(first.weights, larger.weights)
    assert difference < 1e-4  # the 128 px network starts from the 64 px one's layers
    assert read_metadata(larger.weights)["size"] == 128
    not_a_classifier = tmp_path / "transform.safetensors"
    save_network(not_a_classifier, build_network("TransformNetwork", channels=4), {"channels": 4}, {})
    with pytest.raises(ConfigError, match="--init needs an attribute classifier"):
        train_classifier(_settings(tmp_path, [celeba_folder], steps=1, run_dir=tmp_path / "fifth", init=not_a_classifier))
    with pytest.raises(ConfigError, match="width"):
        train_classifier(_settings(tmp_path, [celeba_folder], steps=1, channels=8, run_dir=tmp_path / "fourth", init=first.weights))


def largest_difference(first, second):
    """(largest weight difference, largest weight) of the first convolution of two classifier files."""
    from diat_cli.checkpoints import load_network

    a, _ = load_network(first)
    b, _ = load_network(second)
    conv_a, conv_b = a.features[0][0].weight.detach(), b.features[0][0].weight.detach()
    return float((conv_a - conv_b).abs().max()), float(conv_a.abs().max())


def test_dry_run_and_bad_inputs(celeba_folder, utkface_folder, tmp_path):
    assert train_classifier(_settings(tmp_path, [celeba_folder], [utkface_folder], dry_run=True)) is None
    summary = json.loads((tmp_path / "run" / "config.json").read_text())["data_summary"]
    assert summary["celeba_train_faces"] > 0 and summary["utkface_train_faces"] > 0
    with pytest.raises(ConfigError, match="--celeba"):
        TrainClassifierSettings()
    with pytest.raises(ConfigError, match="--size"):
        _settings(tmp_path, [celeba_folder], size=256)
    with pytest.raises(ConfigError, match="no face has a UTKFace file name"):
        train_classifier(_settings(tmp_path, utkface=[celeba_folder], run_dir=tmp_path / "r2"))
    other = tmp_path / "other_labels.txt"
    other.write_text("1\n" + " ".join(CELEBA_COLUMNS) + "\nnobody.jpg " + " ".join(["1"] * 40) + "\n")
    with pytest.raises(ConfigError, match="match no face"):
        train_classifier(_settings(tmp_path, [celeba_folder], labels=other, run_dir=tmp_path / "r3"))


def test_missing_classifier_is_a_clear_error(tmp_path, monkeypatch):
    import diat_cli.classifier as classifier_module

    monkeypatch.setattr(classifier_module, "BUNDLED_CLASSIFIER", tmp_path / "none.safetensors")
    with pytest.raises(DiatError, match="train-classifier"):
        load_classifier()
    with pytest.raises(DiatError, match="no such classifier"):
        load_classifier(tmp_path / "missing.safetensors")
    with pytest.raises(DiatError, match="no classifier.safetensors"):
        load_classifier(tmp_path)


def test_cli_trains_and_prints_the_accuracy_table(celeba_folder, utkface_folder, tmp_path):
    result = runner.invoke(
        app,
        ["train-classifier", "--celeba", str(celeba_folder), "--utkface", str(utkface_folder), "--run-dir", str(tmp_path / "run"),
         "--steps", "2", "--batch-size", "8", "--channels", "4", "--validation-fraction", "0.2", "--device", "cpu"],
    )
    assert result.exit_code == 0, result.output
    assert "Eyeglasses" in result.output and "UTKFace age group" in result.output and "classifier.safetensors" in result.output
    result = runner.invoke(app, ["train-classifier", "--size", "96", "--celeba", str(celeba_folder)])
    assert result.exit_code == 2 and "--size" in result.output


def test_bundled_classifier_is_found_by_default():
    from diat_cli.classifier import BUNDLED_CLASSIFIER

    if not BUNDLED_CLASSIFIER.is_file():
        pytest.skip("no classifier bundled in this checkout")
    classifier = load_classifier()
    assert classifier.path == BUNDLED_CLASSIFIER and classifier.network.image_size == 64
    assert classifier.metadata["kind"] == "classifier" and classifier.has_utkface_heads
    assert classifier.metadata["held_out_balanced_accuracy"] > 0.7 and "non-commercial" in classifier.metadata["license"]
    assert classifier(torch.zeros(2, 3, 128, 128)).shape == (2, 44)


def test_faces_of_128_px_get_the_128_px_classifier(tmp_path, monkeypatch):
    import diat_cli.classifier as classifier_module
    from diat_cli.classifier import find_classifier

    small, large = tmp_path / "classifier.safetensors", tmp_path / "classifier-128.safetensors"
    small.write_bytes(b"64"), large.write_bytes(b"128")
    monkeypatch.setattr(classifier_module, "BUNDLED_CLASSIFIER", small)
    monkeypatch.setattr(classifier_module, "BUNDLED_CLASSIFIER_128", large)
    assert find_classifier() == small and find_classifier(size=64) == small
    assert find_classifier(size=128) == large and find_classifier(size=256) == large
    assert find_classifier(small, size=128) == small  # a classifier the user names always wins
    large.unlink()
    assert find_classifier(size=128) == small  # no 128 px classifier bundled: the 64 px one judges


def test_bundled_128_px_classifier_judges_128_px_faces():
    from diat_cli.classifier import BUNDLED_CLASSIFIER_128

    if not BUNDLED_CLASSIFIER_128.is_file():
        pytest.skip("no 128 px classifier bundled in this checkout")
    classifier = load_classifier(size=128)
    assert classifier.path == BUNDLED_CLASSIFIER_128 and classifier.network.image_size == 128
    assert classifier.has_utkface_heads and classifier.metadata["held_out_balanced_accuracy"] > 0.7
    assert classifier(torch.zeros(2, 3, 128, 128)).shape == (2, 44)
