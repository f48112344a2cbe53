"""dlib's network serialisation, on a small synthetic file (no model file needed) and on the real one."""

from __future__ import annotations

import numpy as np
import pytest

from diat_cli.errors import DiatError
from diat_cli.face.dlib_format import DlibLayer, DlibNetwork, network_bytes, read_network, write_network

POOL = ("rows", "columns", "stride_y", "stride_x", "padding_y", "padding_x")
MULTIPLIERS = {
    "learning_rate_multiplier": 1.0,
    "weight_decay_multiplier": 1.0,
    "bias_learning_rate_multiplier": 1.0,
    "bias_weight_decay_multiplier": 0.0,
}


def synthetic_network() -> DlibNetwork:
    """conv -> affine -> relu -> max-pool -> [tag] avg-pool -> add_prev -> fc, random weights."""
    rng = np.random.default_rng(0)

    def values(*shape: int) -> np.ndarray:
        return rng.standard_normal(shape).astype(np.float32)

    layers = (
        DlibLayer(
            "con_4",
            {"num_filters": 4, "rows": 3, "columns": 3, "stride_y": 2, "stride_x": 2, "padding_y": 0, "padding_x": 0}
            | MULTIPLIERS,
            {"filters": values(4, 3, 3, 3), "biases": values(1, 4, 1, 1)},
        ),
        DlibLayer("affine_", {"mode": 0}, {"gamma": values(1, 4, 1, 1), "beta": values(1, 4, 1, 1)}),
        DlibLayer("relu_", {}, {}),
        DlibLayer("max_pool_2", dict(zip(POOL, (3, 3, 2, 2, 0, 0))), {}),
        DlibLayer("avg_pool_2", dict(zip(POOL, (2, 2, 2, 2, 0, 0))), {}),
        DlibLayer("add_prev_", {}, {}),
        DlibLayer(
            "fc_2",
            {"num_outputs": 300, "num_inputs": 4, "bias_mode": 1} | MULTIPLIERS,
            {"weights": values(4, 300, 1, 1), "biases": np.zeros((0, 0, 0, 0), np.float32)},
        ),
    )
    return DlibNetwork(
        loss="loss_metric_2",
        loss_settings={"margin": 0.04, "distance_threshold": 0.6},
        layer_versions=(2, 2, 1, 2, 2, 2, 1, 2, 3),  # two tags, six layers, the layer at the input
        input_layer="input_rgb_image_sized",
        input_mean=(122.782, 117.001, 104.298),
        input_size=(150, 150),
        layers=layers,
    )


@pytest.fixture()
def network_file(tmp_path):
    path = tmp_path / "tiny.dat"
    write_network(path, synthetic_network())
    return path


def test_round_trip_keeps_every_value(network_file):
    original = synthetic_network()
    parsed = read_network(network_file)
    assert parsed.loss == "loss_metric_2"
    assert parsed.loss_settings == pytest.approx({"margin": 0.04, "distance_threshold": 0.6}, abs=1e-7)
    assert parsed.layer_versions == original.layer_versions
    assert parsed.input_size == (150, 150)
    assert parsed.input_mean == pytest.approx(original.input_mean, abs=1e-5)
    assert [layer.kind for layer in parsed.layers] == [layer.kind for layer in original.layers]
    for mine, theirs in zip(parsed.layers, original.layers):
        assert mine.settings == pytest.approx(theirs.settings)
        assert mine.tensors.keys() == theirs.tensors.keys()
        for name, values in theirs.tensors.items():
            assert mine.tensors[name].shape == values.shape
            np.testing.assert_array_equal(mine.tensors[name], values)


def test_primitive_encodings_match_dlib():
    # The first bytes of dlib_face_recognition_resnet_model_v1.dat: loss version 1, the loss
    # name, margin 0.04 = 10737418 * 2**-28 and threshold 0.6 = 10066330 * 2**-24 (the
    # negative exponents carry the 0x80 sign bit in their header byte).
    expected = b"\x01\x01\x01\x0dloss_metric_2\x03\x0a\xd7\xa3\x81\x1c\x03\x9a\x99\x99\x81\x18"
    assert network_bytes(synthetic_network()).startswith(expected)


def _corrupt(tmp_path, old: bytes, new: bytes):
    data = network_bytes(synthetic_network())
    assert data.count(old) >= 1
    path = tmp_path / "corrupt.dat"
    path.write_bytes(data.replace(old, new, 1))
    return path


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        (b"\x05relu_", b"\x05relx_", "unsupported layer type 'relx_'"),
        (b"\x05relu_110", b"\x05relu_1x0", "neither '0' nor '1'"),
        (b"\x05con_4\x01\x02", b"\x05con_4\x01\x07", "tensor version 7"),
        (b"\x0dloss_metric_2", b"\x0dloss_mmod_xx2", "unsupported loss layer"),
        (b"\x15input_rgb_image_sized", b"\x15input_rgb_image_sizes", "unsupported input layer"),
        (b"\x01\x01\x01\x0d", b"\x01\x01\x09\x0d", "integer header 0x09"),
        (b"\x01\x01\x01\x04\x01\x03\x01\x03\x01\x03", b"\x01\x01\x01\x05\x01\x03\x01\x03\x01\x03", "does not fit"),
    ],
)
def test_corrupt_files_give_one_line_errors(tmp_path, old, new, message):
    path = _corrupt(tmp_path, old, new)
    with pytest.raises(DiatError) as caught:
        read_network(path)
    text = str(caught.value)
    assert message in text and str(path) in text and "\n" not in text


def test_trailing_bytes_are_refused(tmp_path):
    path = tmp_path / "long.dat"
    path.write_bytes(network_bytes(synthetic_network()) + b"\x00\x00")
    with pytest.raises(DiatError, match="2 unexpected bytes after the last layer"):
        read_network(path)


def test_truncated_files_say_so_wherever_they_stop(tmp_path):
    data = network_bytes(synthetic_network())
    path = tmp_path / "cut.dat"
    for length in sorted({1, 2, 5, 17, 40, 80, 200, len(data) // 2, len(data) - 40, len(data) - 1}):
        path.write_bytes(data[:length])
        with pytest.raises(DiatError, match="truncated") as caught:
            read_network(path)
        assert str(path) in str(caught.value) and "\n" not in str(caught.value)


def test_empty_and_missing_files(tmp_path):
    empty = tmp_path / "empty.dat"
    empty.write_bytes(b"")
    with pytest.raises(DiatError, match="empty"):
        read_network(empty)
    with pytest.raises(DiatError, match="cannot read"):
        read_network(tmp_path / "absent.dat")


def test_writer_rejects_inconsistent_versions():
    network = synthetic_network()
    broken = DlibNetwork(**{**network.__dict__, "layer_versions": (2, 3)})
    with pytest.raises(ValueError):
        network_bytes(broken)


def test_real_model_file_parses_and_dlib_reads_our_rewrite(tmp_path):
    import dlib

    from diat_cli.face.model_files import FACE_RECOGNITION_RESNET, model_path

    path = model_path(FACE_RECOGNITION_RESNET)
    network = read_network(path)
    kinds = [layer.kind for layer in network.layers]
    assert len(network.layer_versions) == 130 and len(kinds) == 108
    counts = {kind: kinds.count(kind) for kind in set(kinds)}
    assert counts == {"con_4": 29, "affine_": 29, "relu_": 29, "add_prev_": 14, "avg_pool_2": 5, "max_pool_2": 1, "fc_2": 1}
    assert network.input_mean == pytest.approx((122.782, 117.001, 104.298), abs=1e-4)
    assert network.layers[-1].tensors["weights"].shape == (256, 128, 1, 1)

    # dlib itself loads the rewritten file and computes the same descriptor.
    rewritten = tmp_path / "rewritten.dat"
    write_network(rewritten, network)
    chip = np.random.default_rng(1).integers(0, 256, (150, 150, 3), dtype=np.uint8)
    original = np.array(dlib.face_recognition_model_v1(str(path)).compute_face_descriptor(chip))
    again = np.array(dlib.face_recognition_model_v1(str(rewritten)).compute_face_descriptor(chip))
    np.testing.assert_array_equal(original, again)
