"""The numbers `diat evaluate` reports, one plain function each (numpy or torch in, floats out).

- attribute success: share of faces the classifier gives the target attribute;
- identity: descriptor distance between each face and its edit, the share under dlib's 0.6
  threshold, rank-1 identification, and verification against other photos of the same person;
- change outside the attribute's region: PSNR and SSIM weighted by (1 - region mask);
- realism: Frechet distance and kernel (KID-style) distance between two sets of features;
- skin tone: how far the mean colour of bare-skin patches moves (CIELAB), by skin lightness.

Descriptors and features are N x D arrays; images are N x 3 x H x W tensors in [-1, 1].
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

SAME_PERSON_THRESHOLD = 0.6  # dlib's: L2 distance between descriptors below this is the same person
MAX_PSNR = 100.0  # PSNR of identical images, which would otherwise be infinite
# CIE76 delta E of a patch's mean colour that is plain side by side: about twice the
# just-noticeable difference (2.3), the size of the tints and darkening seen on photos.
SKIN_SHIFT_VISIBLE = 5.0
_D65_WHITE = (0.95047, 1.0, 1.08883)
_SRGB_TO_XYZ = ((0.4124, 0.3576, 0.1805), (0.2126, 0.7152, 0.0722), (0.0193, 0.1192, 0.9505))


def _array(values) -> np.ndarray:
    if isinstance(values, torch.Tensor):
        values = values.detach().to("cpu", torch.float64).numpy()
    return np.asarray(values, dtype=np.float64)


def attribute_success(probabilities, threshold: float = 0.5) -> float:
    """Share of faces whose probability of having the target attribute is at least `threshold`.

    probabilities: N values in [0, 1] (the classifier's, for the target attribute). On edited
    faces this is the attribute success rate; on the unedited source faces, the floor that an
    editor which changes nothing would reach. NaN for N = 0.
    """
    values = _array(probabilities).reshape(-1)
    return float(np.mean(values >= threshold)) if len(values) else math.nan


def identity_distances(first, second) -> np.ndarray:
    """L2 distance between matching rows: N x D and N x D descriptors -> N distances.

    With dlib's descriptors, a distance under 0.6 means the same person.
    """
    first, second = _array(first), _array(second)
    if first.shape != second.shape:
        raise ValueError(f"descriptor sets differ in shape: {first.shape} and {second.shape}")
    return np.linalg.norm(first - second, axis=-1)


def share_below(distances, threshold: float = SAME_PERSON_THRESHOLD) -> float:
    """Share of distances under `threshold` (for dlib descriptors: judged the same person)."""
    values = _array(distances).reshape(-1)
    return float(np.mean(values < threshold)) if len(values) else math.nan


def rank1_accuracy(edited, sources) -> float:
    """Share of edits whose nearest unedited face (of all N sources) is their own source.

    edited, sources: N x D descriptors, row i of `edited` made from row i of `sources`.
    Ties count as misses unless the own source is the first of the tied rows, as argmin picks.
    1.0 when the editor keeps every identity apart; near 0 when it turns people into others.
    """
    edited, sources = _array(edited), _array(sources)
    if edited.shape != sources.shape:
        raise ValueError(f"descriptor sets differ in shape: {edited.shape} and {sources.shape}")
    if len(edited) == 0:
        return math.nan
    squared = (edited**2).sum(1)[:, None] + (sources**2).sum(1)[None, :] - 2 * edited @ sources.T
    nearest = np.argmin(squared, axis=1)
    return float(np.mean(nearest == np.arange(len(edited))))


def verification_rate(
    queries,
    gallery,
    query_identities: Sequence[int],
    gallery_identities: Sequence[int],
    query_photos: Sequence[str],
    gallery_photos: Sequence[str],
    threshold: float = SAME_PERSON_THRESHOLD,
) -> tuple[float, int]:
    """Share of (query, gallery) pairs of the same person in *different* photos that verify.

    queries: N x D descriptors (edited faces, or their unedited sources for the baseline);
    gallery: M x D descriptors of unedited faces; identities and photo names label each row.
    A pair counts when the identities are equal and the photo names differ; it verifies when
    the descriptors are closer than `threshold`. Returns (share, number of pairs); (NaN, 0)
    when there is no such pair.
    """
    queries, gallery = _array(queries), _array(gallery)
    query_ids, gallery_ids = np.asarray(query_identities), np.asarray(gallery_identities)
    query_names, gallery_names = np.asarray(query_photos, dtype=object), np.asarray(gallery_photos, dtype=object)
    if not (len(queries) == len(query_ids) == len(query_names)) or not (len(gallery) == len(gallery_ids) == len(gallery_names)):
        raise ValueError("every descriptor needs one identity and one photo name")
    pairs = (query_ids[:, None] == gallery_ids[None, :]) & (query_names[:, None] != gallery_names[None, :])
    count = int(pairs.sum())
    if count == 0:
        return math.nan, 0
    distances = np.linalg.norm(queries[:, None, :] - gallery[None, :, :], axis=-1)
    return float((distances[pairs] < threshold).mean()), count


def _weights(weight: torch.Tensor | None, images: torch.Tensor) -> torch.Tensor:
    if weight is None:
        return torch.ones((images.shape[0], 1, *images.shape[2:]), dtype=images.dtype, device=images.device)
    weight = torch.as_tensor(weight, dtype=images.dtype, device=images.device)
    return weight.expand(images.shape[0], 1, *images.shape[2:])


def psnr_per_image(first: torch.Tensor, second: torch.Tensor, weight: torch.Tensor | None = None, data_range: float = 2.0) -> torch.Tensor:
    """PSNR (dB) of each image pair, each pixel weighted by `weight`; N values, capped at MAX_PSNR.

    first, second: N x 3 x H x W in [-1, 1] (data_range 2). weight: 1 x 1 x H x W or
    N x 1 x H x W in [0, 1], e.g. 1 - region mask to measure change outside the attribute's
    region; None weights every pixel. Identical images give MAX_PSNR (100 dB).
    """
    first, second = first.double(), second.double()
    if first.shape != second.shape:
        raise ValueError(f"image sets differ in shape: {tuple(first.shape)} and {tuple(second.shape)}")
    weights = _weights(weight, first)
    error = ((first - second) ** 2 * weights).sum(dim=(1, 2, 3)) / (weights.sum(dim=(1, 2, 3)) * first.shape[1]).clamp_min(1e-12)
    return (10 * torch.log10(data_range**2 / error.clamp_min(1e-30))).clamp(max=MAX_PSNR)


def masked_psnr(first: torch.Tensor, second: torch.Tensor, weight: torch.Tensor | None = None, data_range: float = 2.0) -> float:
    """Mean over images of `psnr_per_image`."""
    return float(psnr_per_image(first, second, weight, data_range).mean())


def _gaussian_window(size: int, sigma: float, dtype: torch.dtype) -> torch.Tensor:
    coordinates = torch.arange(size, dtype=dtype) - (size - 1) / 2
    taps = torch.exp(-(coordinates**2) / (2 * sigma**2))
    taps = taps / taps.sum()
    return torch.outer(taps, taps)


def masked_ssim(first: torch.Tensor, second: torch.Tensor, weight: torch.Tensor | None = None, data_range: float = 2.0) -> float:
    """Mean over images of SSIM (Wang et al. 2004), the SSIM map averaged with `weight`.

    first, second: N x 3 x H x W in [-1, 1]. The usual 11 x 11 Gaussian window (sigma 1.5)
    and constants K1 = 0.01, K2 = 0.03; the map is computed per channel with reflected borders
    (so it has the image's size and a mask applies pixel by pixel), then averaged over channels
    and, weighted by `weight` (1 x 1 x H x W or N x 1 x H x W), over pixels. 1 for identical images.
    """
    first, second = first.double(), second.double()
    if first.shape != second.shape:
        raise ValueError(f"image sets differ in shape: {tuple(first.shape)} and {tuple(second.shape)}")
    channels, height, width = first.shape[1:]
    size = min(11, (min(height, width) - 1) // 2 * 2 + 1)
    window = _gaussian_window(size, 1.5, first.dtype).to(first.device).expand(channels, 1, size, size)
    pad = size // 2

    def blur(x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(F.pad(x, (pad, pad, pad, pad), mode="reflect"), window, groups=channels)

    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    mean_first, mean_second = blur(first), blur(second)
    variance_first = blur(first * first) - mean_first**2
    variance_second = blur(second * second) - mean_second**2
    covariance = blur(first * second) - mean_first * mean_second
    ssim_map = ((2 * mean_first * mean_second + c1) * (2 * covariance + c2)) / (
        (mean_first**2 + mean_second**2 + c1) * (variance_first + variance_second + c2)
    )
    ssim_map = ssim_map.mean(dim=1, keepdim=True)
    weights = _weights(weight, first)
    per_image = (ssim_map * weights).sum(dim=(1, 2, 3)) / weights.sum(dim=(1, 2, 3)).clamp_min(1e-12)
    return float(per_image.mean())


def frechet_distance(first, second) -> float:
    """Frechet distance between Gaussians fitted to two feature sets (the formula of FID).

    first: N x D, second: M x D features (N, M >= 2). Returns
    ||mu1 - mu2||^2 + tr(S1) + tr(S2) - 2 tr((S1^1/2 S2 S1^1/2)^1/2), computed in float64
    with symmetric eigendecompositions (no complex square roots). It is FID only when the
    features are ImageNet-Inception's; callers must name the feature network they used.
    """
    first, second = _array(first), _array(second)
    if first.ndim != 2 or second.ndim != 2 or first.shape[1] != second.shape[1]:
        raise ValueError(f"expected N x D and M x D features, got {first.shape} and {second.shape}")
    if len(first) < 2 or len(second) < 2:
        return math.nan
    mean_first, mean_second = first.mean(0), second.mean(0)
    cov_first, cov_second = np.cov(first, rowvar=False), np.cov(second, rowvar=False)
    cov_first, cov_second = np.atleast_2d(cov_first), np.atleast_2d(cov_second)
    values, vectors = np.linalg.eigh(cov_first)
    root_first = (vectors * np.sqrt(np.clip(values, 0, None))) @ vectors.T
    middle = root_first @ cov_second @ root_first
    trace_root = np.sqrt(np.clip(np.linalg.eigvalsh((middle + middle.T) / 2), 0, None)).sum()
    distance = ((mean_first - mean_second) ** 2).sum() + np.trace(cov_first) + np.trace(cov_second) - 2 * trace_root
    return float(max(distance, 0.0))


def kernel_distance(first, second, subset_size: int = 1000, subsets: int = 100, seed: int = 0) -> tuple[float, float]:
    """Kernel distance between two feature sets (the estimator of KID, Binkowski et al. 2018).

    The unbiased estimate of the squared MMD with the polynomial kernel
    k(x, y) = (x . y / D + 1)^3, averaged over `subsets` random subsets of
    min(subset_size, N, M) rows of each set. Returns (mean, standard deviation over subsets);
    about 0 for two samples of one distribution, and it may dip slightly below 0. When both
    sets fit in one subset they are used whole, once, and the deviation is NaN (not measured).
    """
    first, second = _array(first), _array(second)
    if first.ndim != 2 or second.ndim != 2 or first.shape[1] != second.shape[1]:
        raise ValueError(f"expected N x D and M x D features, got {first.shape} and {second.shape}")
    size = min(subset_size, len(first), len(second))
    if size < 2:
        return math.nan, math.nan
    dimension = first.shape[1]
    generator = np.random.default_rng(seed)
    estimates = []
    rounds = subsets if size < max(len(first), len(second)) else 1  # full sets: every subset is the same
    for _ in range(rounds):
        x = first[generator.choice(len(first), size, replace=False)]
        y = second[generator.choice(len(second), size, replace=False)]
        k_xx = (x @ x.T / dimension + 1) ** 3
        k_yy = (y @ y.T / dimension + 1) ** 3
        k_xy = (x @ y.T / dimension + 1) ** 3
        within = (k_xx.sum() - np.trace(k_xx) + k_yy.sum() - np.trace(k_yy)) / (size * (size - 1))
        estimates.append(within - 2 * k_xy.mean())
    return float(np.mean(estimates)), float(np.std(estimates)) if rounds > 1 else math.nan


def srgb_to_lab(images: torch.Tensor) -> torch.Tensor:
    """CIELAB (D65; L* 0-100) of sRGB images in [-1, 1], N x 3 x H x W in, the same shape out."""
    rgb = ((images.float() + 1) / 2).clamp(0, 1)
    linear = torch.where(rgb > 0.04045, ((rgb + 0.055) / 1.055) ** 2.4, rgb / 12.92)
    matrix = torch.tensor(_SRGB_TO_XYZ, dtype=linear.dtype, device=linear.device)
    white = torch.tensor(_D65_WHITE, dtype=linear.dtype, device=linear.device).view(1, 3, 1, 1)
    xyz = torch.einsum("ij,njhw->nihw", matrix, linear) / white
    f = torch.where(xyz > (6 / 29) ** 3, xyz.clamp(min=1e-12) ** (1 / 3), xyz / (3 * (6 / 29) ** 2) + 4 / 29)
    return torch.stack([116 * f[:, 1] - 16, 500 * (f[:, 0] - f[:, 1]), 200 * (f[:, 1] - f[:, 2])], dim=1)


def skin_tone_shift(sources: torch.Tensor, edited: torch.Tensor, mask: torch.Tensor, batch_size: int = 256) -> dict[str, np.ndarray]:
    """Per face: L* of the source's skin patches, and how far their mean colour moves in the edit.

    The mean over the patches, not each pixel, so wrinkles or make-up drawn inside a patch count
    only as far as they change its overall colour; a tint or a darkened face counts in full.
    mask: 1 x 1 x H x W (skin_mask). Returns arrays "lightness", "delta_e" (CIE76) and
    "delta_lightness" (edit minus source), one value per face.
    """
    if sources.shape != edited.shape:
        raise ValueError(f"sources and edits differ in shape: {tuple(sources.shape)} vs {tuple(edited.shape)}")
    weight = mask.float()
    area = weight.sum()
    if area <= 0:
        raise ValueError("the skin mask is empty")
    means = []
    for start in range(0, len(sources), batch_size):
        pair = [srgb_to_lab(images[start : start + batch_size]) for images in (sources, edited)]
        means.append([(lab * weight).sum(dim=(2, 3)) / area for lab in pair])
    before = torch.cat([m[0] for m in means]).double()
    after = torch.cat([m[1] for m in means]).double()
    return {
        "lightness": before[:, 0].numpy(),
        "delta_e": (after - before).norm(dim=1).numpy(),
        "delta_lightness": (after[:, 0] - before[:, 0]).numpy(),
    }


def skin_tone_summary(shift: dict[str, np.ndarray], visible: float = SKIN_SHIFT_VISIBLE) -> dict:
    """Mean shift and the share of faces shifted visibly, for all faces and for the darkest and lightest thirds."""
    lightness, delta_e, delta_lightness = (np.asarray(shift[key], dtype=np.float64) for key in ("lightness", "delta_e", "delta_lightness"))

    def part(indices: np.ndarray) -> dict:
        return {
            "faces": int(len(indices)),
            "mean_lightness": float(lightness[indices].mean()),
            "mean_delta_e": float(delta_e[indices].mean()),
            "mean_delta_lightness": float(delta_lightness[indices].mean()),
            "share_visible": float((delta_e[indices] > visible).mean()),
        }

    if len(lightness) == 0:
        raise ValueError("no faces to summarise")
    order = np.argsort(lightness, kind="stable")
    third = max(1, len(order) // 3)
    return {"patches": "cheeks and forehead", "visible_delta_e": visible, **part(order), "darkest_third": part(order[:third]), "lightest_third": part(order[-third:])}
