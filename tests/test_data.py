"""Training data: label files, the source/reference split, validation slice, datasets and batches."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from diat_cli.attributes import AgeRange
from diat_cli.data import (
    FaceImages,
    hold_out,
    parse_utkface_name,
    read_celeba_attributes,
    read_celeba_identities,
    read_utkface_labels,
    split_folders,
    split_source_reference,
)
from diat_cli.errors import ConfigError
from diat_cli.imageio import write_image
from diat_cli.manifest import MANIFEST_NAME, encode_record

COLUMNS = ("Eyeglasses", "Male", "Young")


def write_labels(path: Path, rows: dict[str, tuple[int, ...]], count: int | None = None) -> Path:
    lines = [str(len(rows) if count is None else count), " ".join(COLUMNS) + " "]
    lines += [f"{name} " + " ".join(f"{value:2d}" for value in values) for name, values in rows.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


def noise_crop(path: Path, size: int = 16, seed: int = 0, width: int | None = None) -> None:
    rng = np.random.default_rng(seed)
    write_image(path, rng.integers(0, 256, (size, width or size, 3), dtype=np.uint8))


def make_aligned_folder(root: Path, photos: list[tuple[str, int]], photo_folder: Path | None = None) -> Path:
    """An aligned folder as `diat align` writes it: photos as (file name, number of faces)."""
    folder = root / "aligned"
    folder.mkdir(parents=True, exist_ok=True)
    photo_folder = photo_folder or root / "photos"
    records = []
    for seed, (name, faces) in enumerate(photos):
        base = {"source": str(photo_folder / name), "relative": name, "source_size": [40, 40], "size": 16}
        if faces == 0:
            records.append({**base, "crop": None, "face_index": None, "note": "no face found"})
        for index in range(faces):
            crop = f"{Path(name).stem}_{index}.png"
            noise_crop(folder / crop, seed=seed * 10 + index)
            records.append({**base, "crop": crop, "face_index": index, "faces_in_photo": faces})
    (folder / MANIFEST_NAME).write_text("".join(encode_record(record) for record in records))
    return folder


@pytest.fixture()
def labelled(tmp_path):
    """60 one-face photos (every third with glasses), a two-face photo, a photo without a face, an unlabelled one."""
    names = [f"{number:06d}.jpg" for number in range(1, 61)]
    rows = {name: (1 if number % 3 == 0 else -1, 1 if number % 2 else -1, 1) for number, name in enumerate(names)}
    rows["000100.jpg"] = (1, 1, 1)  # two faces: must be left out
    rows["000101.jpg"] = (1, 1, 1)  # no face found
    labels = write_labels(tmp_path / "list_attr_celeba.txt", rows)
    photos = [(name, 1) for name in names] + [("000100.jpg", 2), ("000101.jpg", 0), ("999999.jpg", 1)]
    folder = make_aligned_folder(tmp_path, photos)
    return folder, labels, rows


# ---------------------------------------------------------------- label files


def test_read_celeba_attributes(tmp_path):
    path = write_labels(tmp_path / "labels.txt", {"000001.jpg": (1, -1, 1), "000002.jpg": (-1, -1, 1)})
    table = read_celeba_attributes(path)
    assert table.columns == COLUMNS
    assert table.files == ("000001.jpg", "000002.jpg")
    assert table.values.dtype == np.int8
    assert table.column("Eyeglasses") == {"000001.jpg": 1, "000002.jpg": -1}
    assert table.count("Young") == 2
    assert table.count("Male", -1) == 2


def test_read_celeba_attributes_csv_variant(tmp_path):
    path = tmp_path / "list_attr_celeba.csv"
    path.write_text("image_id,Eyeglasses,Male\n000001.jpg,1,-1\n000002.jpg,-1,1\n")
    table = read_celeba_attributes(path)
    assert table.columns == ("Eyeglasses", "Male")
    assert table.column("Male") == {"000001.jpg": -1, "000002.jpg": 1}


@pytest.mark.parametrize(
    "text, message",
    [
        ("3\nEyeglasses Male Young\n000001.jpg 1 -1 1\n", "announces 3 images"),
        ("1\nEyeglasses Male Young\n000001.jpg 1 -1\n", "line 3 has 2 values"),
        ("1\nEyeglasses Male Young\n000001.jpg 1 0 1\n", "1 or -1"),
        ("1\nEyeglasses Male Young\n000001.jpg 1 x 1\n", "1 or -1"),
        ("2\nEyeglasses Male Young\n000001.jpg 1 1 1\n000001.jpg 1 1 1\n", "listed twice"),
        ("many\nEyeglasses\n", "image count"),
        ("", "not a CelebA attribute file"),
    ],
)
def test_bad_celeba_attribute_files(tmp_path, text, message):
    path = tmp_path / "labels.txt"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        read_celeba_attributes(path)


def test_missing_labels_file(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        read_celeba_attributes(tmp_path / "nothing.txt")


def test_read_celeba_identities(tmp_path):
    path = tmp_path / "identity_CelebA.txt"
    path.write_text("000001.jpg 2880\n000002.jpg 2937\n\n")
    assert read_celeba_identities(path) == {"000001.jpg": 2880, "000002.jpg": 2937}
    path.write_text("000001.jpg\n")
    with pytest.raises(ConfigError, match="line 1"):
        read_celeba_identities(path)


def test_parse_utkface_names(tmp_path):
    label = parse_utkface_name("100_1_2_20170105174847679.jpg.chip.jpg")
    assert (label.age, label.gender, label.race, label.date) == (100, 1, 2, "20170105174847679")
    label = parse_utkface_name("61_1_20170109150557335.jpg.chip.jpg")  # no race field
    assert (label.age, label.gender, label.race, label.date) == (61, 1, None, "20170109150557335")
    assert parse_utkface_name("some/dir/25_0_3_20170119.jpg.chip.jpg").age == 25
    for bad in ("000001.jpg", "x_1_0_2017.jpg", "30_2_0_2017.jpg", "30_1.jpg"):
        assert parse_utkface_name(bad) is None
    noise_crop(tmp_path / "25_0_3_20170119.jpg.chip.jpg")
    noise_crop(tmp_path / "notes.png")
    assert list(read_utkface_labels(tmp_path)) == ["25_0_3_20170119.jpg.chip.jpg"]


# ---------------------------------------------------------------- source / reference split


def test_split_by_celeba_labels(labelled):
    folder, labels, rows = labelled
    split = split_source_reference(folder, "eyeglasses", labels, minimum_images=4)
    source = {path.name for path in split.train_source + split.val_source}
    reference = {path.name for path in split.train_reference + split.val_reference}
    expected_reference = {name.replace(".jpg", "_0.png") for name, values in rows.items() if values[0] == 1}
    expected_reference -= {"000100_0.png", "000101_0.png"}
    assert reference == expected_reference
    assert len(source) + len(reference) == 60
    assert not source & reference
    assert not any(name.startswith(("000100", "999999")) for name in source | reference)
    assert split.skipped["faces in photos with several faces"] == 2
    assert split.skipped["faces without a label"] == 1
    assert all(path.is_file() and path.parent == folder for path in split.train_source)
    # The opposite direction swaps the sets.
    opposite = split_source_reference(folder, "no-glasses", labels, minimum_images=4)
    assert opposite.train_source == split.train_reference
    assert opposite.val_reference == split.val_source
    assert "validation" in split.summary()


def test_labels_found_next_to_the_photos(labelled):
    folder, labels, _ = labelled
    # The manifest's sources live in tmp_path/photos; the labels one folder up are found.
    assert split_source_reference(folder, "eyeglasses", minimum_images=4) == split_source_reference(
        folder, "eyeglasses", labels, minimum_images=4
    )


def test_validation_slice_is_disjoint_stable_and_shared_by_attributes(labelled):
    folder, labels, _ = labelled
    options = {"minimum_images": 4, "validation_fraction": 0.2, "minimum_validation": 1}
    first = split_source_reference(folder, "eyeglasses", labels, **options)
    again = split_source_reference(folder, "eyeglasses", labels, **options)
    assert first == again
    assert first.val_source and first.val_reference
    assert not set(first.val_source) & set(first.train_source)
    assert not set(first.val_reference) & set(first.train_reference)
    held = set(first.val_source) | set(first.val_reference)
    # Held-out photos are picked by name alone (once each side has its minimum), whatever the attribute.
    male = split_source_reference(folder, "male", labels, **options)
    assert set(male.val_source) | set(male.val_reference) == held


def test_hold_out_minimum_and_stability():
    items = [(f"photo{number}.jpg", Path(f"crop{number}.png")) for number in range(200)]
    train, validation = hold_out(items, 0.05, 4)
    assert len(train) + len(validation) == 200
    assert not set(train) & set(validation)
    assert 4 <= len(validation) <= 25
    # Membership depends only on the photo's own name once the minimum is met.
    _, more = hold_out(items + [(f"new{number}.jpg", Path(f"new{number}.png")) for number in range(100)], 0.05, 4)
    assert set(validation) <= set(more)
    # A tiny set still gets its minimum; two crops of one photo stay together.
    small = [("a.jpg", Path("a0.png")), ("a.jpg", Path("a1.png")), ("b.jpg", Path("b0.png")), ("c.jpg", Path("c0.png"))]
    train, validation = hold_out(small, 0.05, 1)
    assert len(validation) >= 1
    assert {"a0.png", "a1.png"} <= {p.name for p in train} or {"a0.png", "a1.png"} <= {p.name for p in validation}
    assert hold_out(small, 0.0, 4) == ([path for _, path in small], [])
    with pytest.raises(ConfigError, match="validation fraction"):
        hold_out(small, 0.7, 1)


def test_too_few_images_names_the_side(labelled):
    folder, labels, _ = labelled
    with pytest.raises(ConfigError) as caught:
        split_source_reference(folder, "eyeglasses", labels, minimum_images=30)
    message = str(caught.value)
    assert "too few reference faces" in message and "at least 30" in message and "with 'eyeglasses'" in message
    with pytest.raises(ConfigError, match="too few source faces: 0 "):
        split_source_reference(folder, "young", labels, minimum_images=4)  # everyone is young


def test_labels_matching_nothing(labelled, tmp_path):
    folder, _, _ = labelled
    other = write_labels(tmp_path / "other.txt", {"700001.jpg": (1, 1, 1)})
    with pytest.raises(ConfigError) as caught:
        split_source_reference(folder, "eyeglasses", other)
    assert "other.txt" in str(caught.value) and str(folder) in str(caught.value) and "match no face" in str(caught.value)


def test_labels_need_a_manifest(tmp_path, labelled):
    _, labels, _ = labelled
    plain = tmp_path / "plain"
    noise_crop(plain / "000001.png")
    with pytest.raises(ConfigError, match="has no manifest.jsonl"):
        split_source_reference(plain, "eyeglasses", labels)
    with pytest.raises(ConfigError, match="no such folder"):
        split_source_reference(tmp_path / "absent", "eyeglasses", labels)


def test_split_errors_for_bad_requests(labelled, tmp_path):
    folder, labels, _ = labelled
    with pytest.raises(ConfigError, match="did you mean"):
        split_source_reference(folder, "eyeglass", labels)
    with pytest.raises(ConfigError, match="no UTKFace labels"):
        split_source_reference(folder, "eyeglasses", utkface=True)
    with pytest.raises(ConfigError, match="not both"):
        split_source_reference(folder, "old", labels, utkface=True)
    (tmp_path / "list_attr_celeba.txt").unlink()
    with pytest.raises(ConfigError, match="no labels for"):
        split_source_reference(folder, "eyeglasses")


def test_missing_crops_are_reported(labelled):
    folder, labels, _ = labelled
    (folder / "000003_0.png").unlink()
    with pytest.raises(ConfigError, match="1 crops listed .* are missing"):
        split_source_reference(folder, "eyeglasses", labels, minimum_images=4)


def test_split_by_utkface_names(tmp_path):
    photos = []
    for number in range(12):
        photos += [(f"{60 + number}_{number % 2}_0_2017{number:04d}.jpg.chip.jpg", 1)]  # old
        photos += [(f"{20 + number % 10}_{number % 2}_1_2018{number:04d}.jpg.chip.jpg", 1)]  # young
        photos += [(f"{40}_{number % 2}_20190{number:04d}.jpg.chip.jpg", 1)]  # neither (no race field)
        photos += [(f"{3}_{number % 2}_2_2016{number:04d}.jpg.chip.jpg", 1)]  # child
    folder = make_aligned_folder(tmp_path, photos)
    split = split_source_reference(folder, "old", utkface=True, minimum_images=4, minimum_validation=2)
    assert len(split.train_reference) + len(split.val_reference) == 12
    assert len(split.train_source) + len(split.val_source) == 12
    assert all(int(path.name.split("_")[0]) >= 50 for path in split.train_reference + split.val_reference)
    assert split.skipped["faces in neither set"] == 24
    female = split_source_reference(folder, "female", utkface=True, minimum_images=4, minimum_validation=2)
    reference = female.train_reference + female.val_reference
    assert len(reference) == 18 and all(path.name.split("_")[1] == "1" for path in reference)  # adults only
    wider = split_source_reference(folder, "old", utkface=True, minimum_images=4, young_ages=AgeRange(18, 45))
    assert len(wider.train_source) + len(wider.val_source) == 24


def test_split_folders(tmp_path):
    aligned = make_aligned_folder(tmp_path / "a", [(f"{number:03d}.jpg", 1 + (number == 0)) for number in range(20)])
    plain = tmp_path / "plain"
    for number in range(20):
        noise_crop(plain / "sub" / f"face{number}.png", seed=number)
    split = split_folders(aligned, plain, minimum_images=4)
    assert len(split.train_source) + len(split.val_source) == 21  # several faces per photo are kept here
    assert len(split.train_reference) + len(split.val_reference) == 20
    assert all(path.parent == plain / "sub" for path in split.train_reference)
    with pytest.raises(ConfigError, match="are the same"):
        split_folders(plain, plain)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="holds no images"):
        split_folders(aligned, tmp_path / "empty")
    with pytest.raises(ConfigError, match="too few reference faces"):
        split_folders(aligned, plain, minimum_images=21, validation_fraction=0.0)


# ---------------------------------------------------------------- datasets and batches


def crops(tmp_path: Path, count: int, size: int = 16) -> list[Path]:
    paths = [tmp_path / "crops" / f"{number}.png" for number in range(count)]
    for number, path in enumerate(paths):
        noise_crop(path, size=size, seed=number)
    return paths


def test_face_images_shapes_and_range(tmp_path):
    paths = crops(tmp_path, 3)
    dataset = FaceImages(paths, 16, flip=False)
    assert len(dataset) == 3
    image = dataset[0]
    assert image.shape == (3, 16, 16) and image.dtype == torch.float32
    assert image.min() >= -1 and image.max() <= 1 and image.min() < -0.9 and image.max() > 0.9
    resized = FaceImages(paths, 8, flip=False)[1]
    assert resized.shape == (3, 8, 8)
    noise_crop(tmp_path / "wide.png", size=12, width=20)
    assert FaceImages([tmp_path / "wide.png"], 12, flip=False)[0].shape == (3, 12, 12)
    assert torch.equal(dataset[(2, True)], dataset[(2, False)].flip(-1))
    assert dataset.batch([0, 2], [False, True]).shape == (2, 3, 16, 16)
    assert torch.equal(dataset.batch([0, 2], [False, True])[1], dataset[(2, True)])


def test_preload_matches_reading_from_disk(tmp_path):
    paths = crops(tmp_path, 4)
    lazy, preloaded = FaceImages(paths, 8, flip=False), FaceImages(paths, 8, flip=False, preload=True)
    assert preloaded.pixels.shape == (4, 3, 8, 8) and preloaded.pixels.dtype == torch.uint8
    for index in range(4):
        assert torch.equal(lazy[index], preloaded[index])
    assert torch.equal(lazy.batch(range(4), [True] * 4), preloaded.batch(range(4), [True] * 4))


def test_random_flips_follow_the_torch_seed(tmp_path):
    dataset = FaceImages(crops(tmp_path, 2), 16, flip=True, preload=True)

    def flips(seed: int) -> list[bool]:
        torch.manual_seed(seed)
        return [not torch.equal(dataset[0], dataset[(0, False)]) for _ in range(32)]

    first, other, again = flips(3), flips(4), flips(3)
    assert first == again
    assert first != other
    assert any(first) and not all(first)


# ---------------------------------------------------------------- the real data


def test_real_celeba_label_counts(shared_data):
    expected = {
        "celeba-aligned-half": (10_000, 5_429, {"Eyeglasses": 674, "Male": 4_217, "Young": 7_771, "Smiling": 4_822, "Mouth_Slightly_Open": 4_812}),
        "celeba-test-crops": (5_000, 706, {"Eyeglasses": 298, "Male": 2_035, "Young": 3_782, "Smiling": 2_617, "Mouth_Slightly_Open": 2_545}),
        "celeba-wild": (957, 40, {"Eyeglasses": 54, "Male": 326, "Young": 791, "Smiling": 451, "Mouth_Slightly_Open": 449}),
    }
    for folder, (images, people, counts) in expected.items():
        table = read_celeba_attributes(shared_data / folder / "list_attr_celeba.txt")
        assert len(table.columns) == 40 and len(table.files) == images
        assert {column: table.count(column) for column in counts} == counts
        identities = read_celeba_identities(shared_data / folder / "identity_CelebA.txt")
        assert len(identities) == images and len(set(identities.values())) == people


def test_real_utkface_label_counts(shared_data):
    labels = read_utkface_labels(shared_data / "utkface" / "images")
    assert len(labels) == 12_000
    assert sum(label.age >= 50 for label in labels.values()) == 2_487
    assert sum(18 <= label.age <= 30 for label in labels.values()) == 4_334
    assert sum(label.gender == 1 for label in labels.values()) == 5_790


def test_real_celeba_split(shared_data, tmp_path):
    """The first 600 CelebA aligned images, posing as an aligned folder (links in place of crops)."""
    images = shared_data / "celeba-aligned-half" / "images"
    names = sorted(os.listdir(images))[:600]
    folder = tmp_path / "aligned"
    folder.mkdir()
    records = []
    for name in names:
        crop = name.replace(".jpg", "_0.jpg")
        (folder / crop).symlink_to(images / name)
        records.append({"source": str(images / name), "relative": name, "crop": crop, "face_index": 0, "faces_in_photo": 1})
    (folder / MANIFEST_NAME).write_text("".join(json.dumps(record) + "\n" for record in records))
    table = read_celeba_attributes(shared_data / "celeba-aligned-half" / "list_attr_celeba.txt")
    wearing = sum(table.column("Eyeglasses")[name] == 1 for name in names)
    split = split_source_reference(folder, "no-eyeglasses")  # labels found next to the photos
    assert len(split.train_source) + len(split.val_source) == wearing
    assert len(split.train_reference) + len(split.val_reference) == 600 - wearing
    batch = FaceImages(split.val_source, 64, flip=False).batch(range(len(split.val_source)))
    assert batch.shape == (len(split.val_source), 3, 64, 64) and batch.min() >= -1 and batch.max() <= 1
