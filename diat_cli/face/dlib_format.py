"""Read (and, for tests, write) dlib's serialisation of trained DNN networks (.dat files).

dlib writes a network as: the loss layer's version and settings, then one version number
per layer from the outermost inwards, then the input layer, then each layer's contents from
the input outwards. Tag and skip layers hold nothing but their version number (1).

Primitive encodings:
- integer: one header byte (number of value bytes, +0x80 when negative), then the
  magnitude's bytes, little-endian;
- float: its mantissa and exponent as two integers (value = mantissa * 2**exponent;
  exponents 32000/32001/32002 mean +inf/-inf/nan);
- string: its length as an integer, then its bytes;
- bool: one ASCII byte, '0' or '1';
- tensor: version 2, four dims (samples, channels, rows, columns), then raw little-endian
  float32 values;
- alias tensor (a named view into a layer's parameter tensor): version 1, four dims; the
  views of one layer lie one after another in that tensor.

Only the layer types of dlib's trained recognition networks are understood; anything else,
and any corrupt or truncated file, raises DiatError naming the file and the problem.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from diat_cli.errors import DiatError

# Field lists per layer type, in file order. "alias" fields become the layer's named tensors,
# cut one after another out of the preceding "tensor" field (the layer's parameters).
LAYER_FIELDS: dict[str, tuple[tuple[str, str], ...]] = {
    "con_4": (
        ("params", "tensor"),
        ("num_filters", "int"),
        ("rows", "int"),
        ("columns", "int"),
        ("stride_y", "int"),
        ("stride_x", "int"),
        ("padding_y", "int"),
        ("padding_x", "int"),
        ("filters", "alias"),
        ("biases", "alias"),
        ("learning_rate_multiplier", "float"),
        ("weight_decay_multiplier", "float"),
        ("bias_learning_rate_multiplier", "float"),
        ("bias_weight_decay_multiplier", "float"),
    ),
    "affine_": (("params", "tensor"), ("gamma", "alias"), ("beta", "alias"), ("mode", "int")),
    "relu_": (),
    "add_prev_": (),
    "max_pool_2": tuple(
        (name, "int") for name in ("rows", "columns", "stride_y", "stride_x", "padding_y", "padding_x")
    ),
    "avg_pool_2": tuple(
        (name, "int") for name in ("rows", "columns", "stride_y", "stride_x", "padding_y", "padding_x")
    ),
    "fc_2": (
        ("num_outputs", "int"),
        ("num_inputs", "int"),
        ("params", "tensor"),
        ("weights", "alias"),
        ("biases", "alias"),
        ("bias_mode", "int"),
        ("learning_rate_multiplier", "float"),
        ("weight_decay_multiplier", "float"),
        ("bias_learning_rate_multiplier", "float"),
        ("bias_weight_decay_multiplier", "float"),
    ),
}
LOSS_FIELDS: dict[str, tuple[str, ...]] = {
    "loss_metric_": (),
    "loss_metric_2": ("margin", "distance_threshold"),
}
INPUT_LAYERS = ("input_rgb_image", "input_rgb_image_sized")

_SPECIAL_EXPONENTS = {32000: math.inf, 32001: -math.inf, 32002: math.nan}
_MAX_STRING = 4096
_MAX_LAYERS = 100_000


@dataclass(frozen=True)
class DlibLayer:
    """One computational layer: dlib's type name, its numeric settings and its float32 tensors.

    Tensors keep dlib's 4-d shapes, e.g. con_4 "filters" (out, in, rows, columns) and
    "biases" (1, out, 1, 1); fc_2 "weights" (inputs, outputs, 1, 1), i.e. transposed
    with respect to torch.nn.Linear.
    """

    kind: str
    settings: dict[str, float]
    tensors: dict[str, np.ndarray]


@dataclass(frozen=True)
class DlibNetwork:
    """A whole network file. `layers` runs from the input outwards; tag and skip layers are
    only visible in `layer_versions` (outermost first, 1 = tag/skip, 2 = layer, 3 = the
    layer next to the input)."""

    loss: str
    loss_settings: dict[str, float]
    layer_versions: tuple[int, ...]
    input_layer: str
    input_mean: tuple[float, float, float]  # per-channel value subtracted from 0-255 RGB
    input_size: tuple[int, int] | None  # (rows, columns) for input_rgb_image_sized
    layers: tuple[DlibLayer, ...]


class _Reader:
    """Cursor over the file's bytes that turns every problem into a one-line DiatError."""

    def __init__(self, data: bytes, path: Path):
        self.data = memoryview(data)
        self.path = path
        self.position = 0
        self.context = "the file header"

    def fail(self, problem: str) -> DiatError:
        return DiatError(
            f"{self.path}: not a valid dlib network file: {problem} in {self.context} (byte {self.position})"
        )

    def take(self, count: int) -> memoryview:
        end = self.position + count
        if end > len(self.data):
            raise DiatError(
                f"{self.path}: dlib network file is truncated: it ends at byte {len(self.data)} "
                f"while reading {self.context}"
            )
        chunk = self.data[self.position : end]
        self.position = end
        return chunk

    def integer(self) -> int:
        header = self.take(1)[0]
        size = header & 0x7F
        if size > 8:
            raise self.fail(f"integer header 0x{header:02x} announces {size} bytes (at most 8)")
        value = int.from_bytes(self.take(size), "little")
        return -value if header & 0x80 else value

    def real(self) -> float:
        mantissa, exponent = self.integer(), self.integer()
        if exponent in _SPECIAL_EXPONENTS:
            return _SPECIAL_EXPONENTS[exponent]
        try:
            return math.ldexp(mantissa, exponent)
        except OverflowError:
            raise self.fail(f"float {mantissa} * 2**{exponent} is out of range") from None

    def text(self) -> str:
        length = self.integer()
        if not 0 <= length <= _MAX_STRING:
            raise self.fail(f"string length {length} is implausible")
        raw = bytes(self.take(length))
        try:
            return raw.decode("ascii")
        except UnicodeDecodeError:
            raise self.fail(f"string {raw[:40]!r} is not ASCII") from None

    def flag(self) -> bool:
        value = bytes(self.take(1))
        if value not in (b"0", b"1"):
            raise self.fail(f"boolean byte {value!r} is neither '0' nor '1'")
        return value == b"1"

    def dims(self, expected_version: int, what: str) -> tuple[int, int, int, int]:
        version = self.integer()
        if version != expected_version:
            raise self.fail(f"{what} version {version} (expected {expected_version})")
        shape = tuple(self.integer() for _ in range(4))
        if any(size < 0 for size in shape):
            raise self.fail(f"{what} has negative dimensions {shape}")
        return shape  # type: ignore[return-value]

    def tensor(self) -> np.ndarray:
        shape = self.dims(2, "tensor")
        count = math.prod(shape)
        if 4 * count > len(self.data) - self.position:
            raise DiatError(
                f"{self.path}: dlib network file is truncated: a tensor of shape {shape} in "
                f"{self.context} needs {4 * count} bytes, only {len(self.data) - self.position} remain"
            )
        return np.frombuffer(self.take(4 * count), dtype="<f4").astype(np.float32).reshape(shape)

    def alias(self) -> tuple[int, int, int, int]:
        return self.dims(1, "alias tensor")


def read_network(path: str | os.PathLike) -> DlibNetwork:
    """Parse a dlib DNN network file; DiatError (one line, naming the file) if it is unusable."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as error:
        raise DiatError(f"{path}: cannot read dlib network file ({error.strerror or error})") from None
    reader = _Reader(data, path)
    if not data:
        raise DiatError(f"{path}: dlib network file is empty (0 bytes)")

    reader.context = "the loss layer"
    loss_version = reader.integer()
    if loss_version != 1:
        raise reader.fail(f"loss layer version {loss_version} (expected 1)")
    loss = reader.text()
    if loss not in LOSS_FIELDS:
        raise reader.fail(f"unsupported loss layer '{loss}'")
    loss_settings = {name: reader.real() for name in LOSS_FIELDS[loss]}

    reader.context = "the layer version list"
    versions = []
    while not versions or versions[-1] != 3:
        version = reader.integer()
        if version not in (1, 2, 3) or len(versions) >= _MAX_LAYERS:
            raise reader.fail(f"layer version {version} after {len(versions)} layers (expected 1, 2 or 3)")
        versions.append(version)
    content_layers = versions.count(2) + 1

    reader.context = "the input layer"
    input_layer = reader.text()
    if input_layer not in INPUT_LAYERS:
        raise reader.fail(f"unsupported input layer '{input_layer}'")
    input_mean = (reader.real(), reader.real(), reader.real())
    input_size = (reader.integer(), reader.integer()) if input_layer == "input_rgb_image_sized" else None

    layers = []
    for index in range(content_layers):
        reader.context = f"layer {index}"
        kind = reader.text()
        if kind not in LAYER_FIELDS:
            raise reader.fail(f"unsupported layer type '{kind}'")
        reader.context = f"layer {index} ({kind})"
        layers.append(_read_layer(reader, kind))
        for _ in range(3):  # setup done, gradient stale, output disabled
            reader.flag()
        for _ in range(3):  # training state (input gradient, cached output, gradients): skipped
            reader.tensor()
        if index == 0:
            reader.integer()  # sample expansion factor of the layer next to the input

    if reader.position != len(data):
        reader.context = "the end of the file"
        raise reader.fail(f"{len(data) - reader.position} unexpected bytes after the last layer")
    return DlibNetwork(
        loss=loss,
        loss_settings=loss_settings,
        layer_versions=tuple(versions),
        input_layer=input_layer,
        input_mean=input_mean,
        input_size=input_size,
        layers=tuple(layers),
    )


def _read_layer(reader: _Reader, kind: str) -> DlibLayer:
    settings: dict[str, float] = {}
    tensors: dict[str, np.ndarray] = {}
    params = np.zeros(0, dtype=np.float32)
    used = 0
    for name, field_type in LAYER_FIELDS[kind]:
        if field_type == "int":
            settings[name] = reader.integer()
        elif field_type == "float":
            settings[name] = reader.real()
        elif field_type == "tensor":
            params, used = reader.tensor().reshape(-1), 0
        else:
            shape = reader.alias()
            count = math.prod(shape)
            if used + count > params.size:
                raise reader.fail(
                    f"'{name}' of shape {shape} does not fit in the {params.size} parameters"
                )
            tensors[name] = params[used : used + count].reshape(shape)
            used += count
    if used != params.size:
        raise reader.fail(f"{params.size - used} parameters are not covered by any named tensor")
    return DlibLayer(kind, settings, tensors)


# ----------------------------------------------------------------------------------------
# Writer: the inverse of read_network, enough to build small synthetic files for tests.


def _integer(value: int) -> bytes:
    magnitude = abs(int(value))
    body = magnitude.to_bytes(max(1, (magnitude.bit_length() + 7) // 8), "little")
    return bytes([len(body) | (0x80 if value < 0 else 0)]) + body


def _real(value: float) -> bytes:
    """dlib stores its float settings as float32: a 24-bit mantissa and a power of two."""
    if math.isnan(value):
        return _integer(0) + _integer(32002)
    if math.isinf(value):
        return _integer(0) + _integer(32000 if value > 0 else 32001)
    if value == 0:
        return _integer(0) + _integer(0)
    fraction, exponent = math.frexp(float(np.float32(value)))
    return _integer(int(fraction * 2**24)) + _integer(exponent - 24)


def _text(value: str) -> bytes:
    raw = value.encode("ascii")
    return _integer(len(raw)) + raw


def _dims(version: int, shape: tuple[int, ...]) -> bytes:
    return _integer(version) + b"".join(_integer(size) for size in shape)


def _tensor(values: np.ndarray) -> bytes:
    return _dims(2, values.shape) + np.ascontiguousarray(values, dtype="<f4").tobytes()


def network_bytes(network: DlibNetwork) -> bytes:
    """Serialise a DlibNetwork exactly as dlib lays it out (training state written empty)."""
    if network.layer_versions.count(2) + 1 != len(network.layers) or network.layer_versions[-1:] != (3,):
        raise ValueError("layer_versions must end with 3 and hold one 2 per layer after the first")
    parts = [_integer(1), _text(network.loss)]
    parts += [_real(network.loss_settings[name]) for name in LOSS_FIELDS[network.loss]]
    parts += [_integer(version) for version in network.layer_versions]
    parts += [_text(network.input_layer)] + [_real(value) for value in network.input_mean]
    if network.input_size is not None:
        parts += [_integer(size) for size in network.input_size]
    empty = _tensor(np.zeros((0, 0, 0, 0), dtype=np.float32))
    for index, layer in enumerate(network.layers):
        parts.append(_text(layer.kind))
        fields = LAYER_FIELDS[layer.kind]
        aliases = [name for name, field_type in fields if field_type == "alias"]
        for name, field_type in fields:
            if field_type == "int":
                parts.append(_integer(int(layer.settings[name])))
            elif field_type == "float":
                parts.append(_real(float(layer.settings[name])))
            elif field_type == "tensor":
                flat = np.concatenate([layer.tensors[alias].reshape(-1) for alias in aliases])
                parts.append(_tensor(flat.reshape(-1, 1, 1, 1)))
            else:
                parts.append(_dims(1, layer.tensors[name].shape))
        parts += [b"110", empty, empty, empty]
        if index == 0:
            parts.append(_integer(1))
    return b"".join(parts)


def write_network(path: str | os.PathLike, network: DlibNetwork) -> None:
    """Write a DlibNetwork as a dlib .dat file (used by tests to build small synthetic networks)."""
    Path(path).write_bytes(network_bytes(network))


__all__ = [
    "DlibLayer",
    "DlibNetwork",
    "read_network",
    "write_network",
    "network_bytes",
    "LAYER_FIELDS",
]
