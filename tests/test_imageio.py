"""The shared image reader: every kind of awkward or broken file."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from diat_cli.errors import DiatError, ImageReadError
from diat_cli.imageio import find_images, read_image, write_image


def _gradient(width=40, height=30):
    x = np.linspace(0, 255, width, dtype=np.uint8)
    rgb = np.zeros((height, width, 3), np.uint8)
    rgb[..., 0] = x
    rgb[..., 1] = 255 - x
    rgb[..., 2] = 90
    return rgb


@pytest.mark.parametrize("suffix", [".jpg", ".png", ".webp", ".bmp"])
def test_reads_common_formats_as_rgb8(tmp_path, suffix):
    path = tmp_path / f"a{suffix}"
    Image.fromarray(_gradient()).save(path, quality=98) if suffix in (".jpg", ".webp") else Image.fromarray(_gradient()).save(path)
    rgb = read_image(path)
    assert rgb.shape == (30, 40, 3) and rgb.dtype == np.uint8
    assert np.abs(rgb.astype(int) - _gradient().astype(int)).mean() < 4


def test_exif_orientation_is_applied(tmp_path):
    path = tmp_path / "rotated.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways: display needs a 90 degree clockwise turn
    Image.fromarray(_gradient(40, 30)).save(path, exif=exif)
    assert read_image(path).shape == (40, 30, 3)


def test_grayscale_cmyk_palette_become_rgb(tmp_path):
    Image.fromarray(_gradient()[..., 0]).save(tmp_path / "gray.png")
    gray = read_image(tmp_path / "gray.png")
    assert gray.shape == (30, 40, 3) and (gray[..., 0] == gray[..., 2]).all()
    Image.fromarray(_gradient()).convert("CMYK").save(tmp_path / "cmyk.jpg", quality=98)
    cmyk = read_image(tmp_path / "cmyk.jpg")
    assert cmyk.shape == (30, 40, 3)
    assert np.abs(cmyk.astype(int) - _gradient().astype(int)).mean() < 8
    Image.fromarray(_gradient()).convert("P").save(tmp_path / "palette.png")
    assert read_image(tmp_path / "palette.png").shape == (30, 40, 3)


def test_alpha_is_composited_on_white(tmp_path):
    rgba = np.zeros((10, 10, 4), np.uint8)
    rgba[..., 0] = 255
    rgba[:, :5, 3] = 255  # left half opaque red, right half fully transparent
    Image.fromarray(rgba, "RGBA").save(tmp_path / "alpha.png")
    rgb = read_image(tmp_path / "alpha.png")
    assert tuple(rgb[0, 0]) == (255, 0, 0)
    assert tuple(rgb[0, 9]) == (255, 255, 255)


def test_sixteen_bit_is_scaled(tmp_path):
    samples = np.full((8, 8), 65535, np.uint16)
    samples[:, :4] = 32768
    Image.fromarray(samples).save(tmp_path / "deep.png")
    rgb = read_image(tmp_path / "deep.png")
    assert rgb[0, 7, 0] == 255 and abs(int(rgb[0, 0, 0]) - 128) <= 1


def test_empty_file_is_rejected(tmp_path):
    (tmp_path / "empty.jpg").write_bytes(b"")
    with pytest.raises(ImageReadError, match=r"empty\.jpg: empty file"):
        read_image(tmp_path / "empty.jpg")


def test_truncated_file_is_rejected(tmp_path):
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), np.uint8)).save(buffer, "JPEG")
    (tmp_path / "cut.jpg").write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    with pytest.raises(ImageReadError, match=r"cut\.jpg: cannot decode image \(truncated"):
        read_image(tmp_path / "cut.jpg")


def test_non_image_is_rejected(tmp_path):
    (tmp_path / "notes.jpg").write_text("these are not pixels")
    with pytest.raises(ImageReadError, match=r"notes\.jpg: not an image"):
        read_image(tmp_path / "notes.jpg")


def test_decompression_bomb_is_refused_before_decoding(tmp_path):
    Image.new("1", (9000, 9000)).save(tmp_path / "bomb.png")  # 81 megapixels in a few kB
    assert (tmp_path / "bomb.png").stat().st_size < 100_000
    with pytest.raises(ImageReadError, match=r"bomb\.png: image too large \(9000x9000"):
        read_image(tmp_path / "bomb.png")


def test_missing_file_is_rejected(tmp_path):
    with pytest.raises(ImageReadError, match="missing.png: cannot read file"):
        read_image(tmp_path / "missing.png")


def test_write_is_atomic_and_round_trips(tmp_path):
    target = tmp_path / "sub" / "out.png"
    write_image(target, _gradient())
    assert (read_image(target) == _gradient()).all()
    assert [p.name for p in target.parent.iterdir()] == ["out.png"]  # no temporary left behind


def test_find_images_recurses_and_mirrors(tmp_path):
    (tmp_path / "a" / "b").mkdir(parents=True)
    for name in ("a/x.jpg", "a/b/y.PNG", "a/readme.txt", "a/.hidden.png"):
        (tmp_path / name).write_bytes(b"1")
    found = find_images([tmp_path / "a"])
    assert [f.relative.as_posix() for f in found] == ["b/y.PNG", "x.jpg"]
    with pytest.raises(DiatError, match="no such file or folder"):
        find_images([tmp_path / "nope"])


def test_atomic_writes_get_the_permissions_open_would_give(tmp_path):
    """mkstemp makes 0600 files; outputs are for people (and other programs) to open."""
    import os

    import torch

    from diat_cli.checkpoints import save_network
    from diat_cli.imageio import write_text_atomic

    previous = os.umask(0o022)
    try:
        import importlib

        import diat_cli.imageio as imageio

        importlib.reload(imageio)  # the mode is read from the umask at import
        imageio.write_image(tmp_path / "a.png", np.zeros((4, 4, 3), np.uint8))
        imageio.write_text_atomic(tmp_path / "a.txt", "x")
    finally:
        os.umask(previous)
        importlib.reload(imageio)
    for name in ("a.png", "a.txt"):
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o644, name
    write_text_atomic(tmp_path / "b.txt", "x")
    save_network(tmp_path / "n.safetensors", torch.nn.Linear(2, 2), {}, {})
    for name in ("b.txt", "n.safetensors"):
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o666 & ~previous, name
