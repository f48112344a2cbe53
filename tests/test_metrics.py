"""Each metric of `diat evaluate` on constructed cases whose answer is known."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from diat_cli.face.masks import region_mask
from diat_cli.metrics import (
    MAX_PSNR,
    attribute_success,
    frechet_distance,
    identity_distances,
    kernel_distance,
    masked_psnr,
    masked_ssim,
    rank1_accuracy,
    share_below,
    verification_rate,
)


def descriptors(count: int = 20, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(0, 0.1, (count, 128))


def images(count: int = 3, size: int = 32, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(count, 3, size, size, generator=generator) * 2 - 1


# ---------------------------------------------------------------- attribute success


def test_attribute_success_is_the_share_at_or_above_the_threshold():
    assert attribute_success([0.1, 0.5, 0.9, 0.7]) == 0.75
    assert attribute_success(torch.tensor([0.2, 0.3])) == 0.0
    assert attribute_success([0.2, 0.8], threshold=0.1) == 1.0
    assert math.isnan(attribute_success([]))


def test_an_editor_that_returns_its_input_scores_the_floor():
    def classify(x):  # any classifier: a fixed function of the image
        return torch.sigmoid(x.mean(dim=(1, 2, 3)) * 10)

    faces = images(50)
    edited = faces.clone()  # the editor returned its input
    assert attribute_success(classify(edited)) == attribute_success(classify(faces))


# ---------------------------------------------------------------- identity


def test_identical_faces_have_distance_zero_and_perfect_rank1():
    sources = descriptors()
    distances = identity_distances(sources, sources.copy())
    assert distances.shape == (20,) and np.all(distances == 0)
    assert share_below(distances) == 1.0
    assert rank1_accuracy(sources, sources) == 1.0


def test_small_changes_keep_rank1_and_distance_below_threshold():
    sources = descriptors()
    edited = sources + np.random.default_rng(1).normal(0, 0.005, sources.shape)
    assert rank1_accuracy(edited, sources) == 1.0
    assert share_below(identity_distances(sources, edited), 0.6) == 1.0


def test_swapped_people_give_rank1_zero():
    sources = descriptors()
    swapped = np.roll(sources, 1, axis=0)  # edit i is person i-1
    assert rank1_accuracy(swapped, sources) == 0.0
    half = sources.copy()
    half[:10] = np.roll(sources[:10], 1, axis=0)
    assert rank1_accuracy(half, sources) == 0.5


def test_identity_distance_known_values_and_errors():
    first = np.zeros((2, 128))
    second = np.zeros((2, 128))
    second[0, 0], second[1, :4] = 0.5, 0.5  # distances 0.5 and 1.0
    assert np.allclose(identity_distances(first, second), [0.5, 1.0])
    assert share_below([0.5, 1.0]) == 0.5
    with pytest.raises(ValueError, match="shape"):
        identity_distances(first, np.zeros((3, 128)))
    with pytest.raises(ValueError, match="shape"):
        rank1_accuracy(first, np.zeros((3, 128)))


def test_verification_counts_only_other_photos_of_the_same_person():
    base = np.zeros((4, 128))
    base[0, 0], base[1, 0] = 0.0, 0.3  # person 1: two photos 0.3 apart: verify
    base[2, 1], base[3, 1] = 0.0, 0.9  # person 2: two photos 0.9 apart: do not verify
    people, photos = [1, 1, 2, 2], ["a.jpg", "b.jpg", "c.jpg", "d.jpg"]
    rate, pairs = verification_rate(base, base, people, people, photos, photos)
    assert pairs == 4 and rate == 0.5  # (a,b), (b,a), (c,d), (d,c); never a photo with itself
    edited = base.copy()
    edited[3, 1] = 0.1  # the edit of d now verifies against c
    rate, pairs = verification_rate(edited, base, people, people, photos, photos)
    assert pairs == 4 and rate == 0.75
    rate, pairs = verification_rate(base[:1], base[2:], [1], [2, 2], ["a.jpg"], ["c.jpg", "d.jpg"])
    assert pairs == 0 and math.isnan(rate)
    with pytest.raises(ValueError, match="identity"):
        verification_rate(base, base, people[:3], people, photos, photos)


# ---------------------------------------------------------------- outside the region


def test_psnr_known_values():
    faces = images()
    assert masked_psnr(faces, faces.clone()) == MAX_PSNR
    zeros, shifted = torch.zeros(2, 3, 16, 16), torch.full((2, 3, 16, 16), 0.2)
    assert masked_psnr(zeros, shifted) == pytest.approx(10 * math.log10(4 / 0.04))  # 20 dB
    with pytest.raises(ValueError, match="shape"):
        masked_psnr(zeros, torch.zeros(2, 3, 8, 8))


def test_psnr_and_ssim_outside_a_region_ignore_changes_inside_it():
    size = 64
    mask = region_mask("eyes", size, feather=0.0)
    faces = images(4, size)
    edited = faces + mask * 0.8 * torch.randn_like(faces)  # change inside the eye band only
    outside = 1.0 - mask
    assert masked_psnr(faces, edited, outside) == MAX_PSNR
    assert masked_psnr(faces, edited) < 30
    far = 1.0 - region_mask("eyes", size, feather=0.08)  # away from the band's edge, where SSIM's window reaches in
    far = (far > 0.999).float()
    assert masked_ssim(faces, edited, far) == pytest.approx(1.0, abs=1e-6)
    assert masked_ssim(faces, edited) < 0.9


def test_ssim_identical_is_one_and_noise_lowers_it():
    faces = images()
    assert masked_ssim(faces, faces.clone()) == pytest.approx(1.0, abs=1e-9)
    noisy = (faces + 0.3 * torch.randn_like(faces)).clamp(-1, 1)
    value = masked_ssim(faces, noisy)
    assert 0 < value < 0.9
    worse = (faces + 0.8 * torch.randn_like(faces)).clamp(-1, 1)
    assert masked_ssim(faces, worse) < value
    assert masked_ssim(images(1, 8), images(1, 8)) == pytest.approx(1.0)  # tiny images: smaller window, no error


# ---------------------------------------------------------------- realism


def test_frechet_distance_known_values():
    features = np.random.default_rng(0).normal(0, 1, (500, 8)) + 3.0
    assert frechet_distance(features, features.copy()) == pytest.approx(0.0, abs=1e-6)
    shift = np.arange(8) * 0.5
    assert frechet_distance(features, features + shift) == pytest.approx((shift**2).sum(), rel=1e-6)
    # second = 2 * first: mean doubles, covariance quadruples -> ||mu||^2 + tr(S)
    mean, covariance = features.mean(0), np.cov(features, rowvar=False)
    expected = (mean**2).sum() + np.trace(covariance)
    assert frechet_distance(features, 2 * features) == pytest.approx(expected, rel=1e-6)
    assert math.isnan(frechet_distance(features[:1], features))
    with pytest.raises(ValueError, match="features"):
        frechet_distance(features, features[:, :4])


def test_kernel_distance_matches_the_formula_and_separates_distributions():
    rng = np.random.default_rng(0)
    x, y = rng.normal(0, 1, (6, 3)), rng.normal(0.5, 1, (6, 3))

    def kernel(a, b):
        return (a @ b / 3 + 1) ** 3

    within = sum(kernel(x[i], x[j]) + kernel(y[i], y[j]) for i in range(6) for j in range(6) if i != j) / 30
    across = sum(kernel(x[i], y[j]) for i in range(6) for j in range(6)) / 36
    mean, spread = kernel_distance(x, y)
    assert mean == pytest.approx(within - 2 * across) and math.isnan(spread)  # whole sets, once: no spread to report

    same_a, same_b = rng.normal(0, 1, (400, 16)), rng.normal(0, 1, (400, 16))
    other = rng.normal(0.7, 1, (400, 16))
    near, _ = kernel_distance(same_a, same_b, subset_size=200, subsets=20)
    far, _ = kernel_distance(same_a, other, subset_size=200, subsets=20)
    assert abs(near) < 0.05 < far
    assert math.isnan(kernel_distance(x[:1], y)[0])


def test_lab_of_known_colours():
    from diat_cli.metrics import srgb_to_lab

    colours = torch.tensor([[1.0, 1.0, 1.0], [-1.0, -1.0, -1.0], [1.0, -1.0, -1.0]]).view(3, 3, 1, 1)
    lab = srgb_to_lab(colours).view(3, 3)
    assert lab[0].tolist() == pytest.approx([100.0, 0.0, 0.0], abs=0.05)  # white
    assert lab[1].tolist() == pytest.approx([0.0, 0.0, 0.0], abs=1e-4)  # black
    assert lab[2].tolist() == pytest.approx([53.24, 80.09, 67.20], abs=0.05)  # sRGB red


def test_skin_tone_shift_counts_a_tint_on_the_patches_and_not_elsewhere():
    from diat_cli.face.masks import skin_mask
    from diat_cli.metrics import skin_tone_shift, srgb_to_lab

    torch.manual_seed(0)
    mask = skin_mask(64)
    faces = torch.rand(4, 3, 64, 64) * 0.4 + 0.1
    same = skin_tone_shift(faces, faces.clone(), mask)
    assert np.allclose(same["delta_e"], 0) and np.allclose(same["delta_lightness"], 0)
    outside = faces + (1 - mask) * torch.tensor([0.3, 0.0, -0.3]).view(1, 3, 1, 1)
    assert np.allclose(skin_tone_shift(faces, outside, mask)["delta_e"], 0, atol=1e-6)
    darker = faces - 0.2 * mask
    shift = skin_tone_shift(faces, darker, mask)
    assert (shift["delta_lightness"] < -5).all() and (shift["delta_e"] >= -shift["delta_lightness"] - 1e-6).all()
    expected = (srgb_to_lab(darker) * mask).sum((2, 3)) / mask.sum() - (srgb_to_lab(faces) * mask).sum((2, 3)) / mask.sum()
    assert np.allclose(shift["delta_e"], expected.norm(dim=1).numpy(), atol=1e-4)
    with pytest.raises(ValueError, match="differ in shape"):
        skin_tone_shift(faces, faces[:2], mask)


def test_skin_tone_summary_splits_dark_from_light_faces():
    from diat_cli.metrics import skin_tone_summary

    shift = {  # six faces, the three darkest shifted visibly
        "lightness": np.array([70.0, 30.0, 80.0, 25.0, 75.0, 35.0]),
        "delta_e": np.array([1.0, 8.0, 2.0, 6.0, 0.0, 7.0]),
        "delta_lightness": np.array([0.0, 8.0, -1.0, 6.0, 0.0, 7.0]),
    }
    summary = skin_tone_summary(shift, visible=5.0)
    assert summary["faces"] == 6 and summary["share_visible"] == pytest.approx(0.5)
    dark, light = summary["darkest_third"], summary["lightest_third"]
    assert dark["faces"] == light["faces"] == 2
    assert dark["mean_lightness"] == pytest.approx(27.5) and dark["mean_delta_e"] == pytest.approx(7.0) and dark["share_visible"] == 1.0
    assert light["mean_lightness"] == pytest.approx(77.5) and light["mean_delta_e"] == pytest.approx(1.0) and light["share_visible"] == 0.0
    with pytest.raises(ValueError, match="no faces"):
        skin_tone_summary({"lightness": np.array([]), "delta_e": np.array([]), "delta_lightness": np.array([])})
