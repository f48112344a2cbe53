"""tools/bundle_weights.py: fp16 copies whose metadata keep the facts and drop local paths."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import torch

from diat_cli.checkpoints import load_network, read_metadata, save_network
from diat_cli.nets.transform import TransformNetwork

TOOL = Path(__file__).resolve().parents[1] / "tools" / "bundle_weights.py"


def _tool():
    spec = importlib.util.spec_from_file_location("bundle_weights", TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_bundle_writes_fp16_without_local_paths(tmp_path):
    torch.manual_seed(0)
    network = TransformNetwork(channels=4, residual_blocks=1)
    source = tmp_path / "transform.safetensors"
    started = "/home/someone/secret/runs/old-diat-10/snapshots/step-0003500/transform.safetensors"
    save_network(source, network, {"channels": 4, "residual_blocks": 1},
                 {"attribute": "old", "steps": 7, "data_folder": "/home/someone/data", "initialised_from": {"transform": started, "discriminator": None, "steps": 3500}})
    target = tmp_path / "old.transform.safetensors"
    _tool().bundle(source, target, {"attribute_success": {"rate": 0.5}})
    metadata = read_metadata(target)
    assert metadata["attribute"] == "old" and metadata["steps"] == 7 and metadata["evaluate"]["attribute_success"]["rate"] == 0.5
    assert "data_folder" not in metadata and "someone" not in str(metadata)
    assert metadata["initialised_from"] == {"transform": "old-diat-10/snapshots/step-0003500/transform.safetensors", "discriminator": None, "steps": 3500}
    bundled, _ = load_network(target)
    images = torch.rand(1, 3, 16, 16) * 2 - 1
    assert torch.allclose(bundled(images), network.eval()(images), atol=2e-2)  # fp16 weights, same network
    assert target.stat().st_size < source.stat().st_size


def test_a_bundled_colour_blur_and_strength_become_the_editors_defaults(tmp_path):
    from diat_cli.editing import load_editor

    network = TransformNetwork(channels=4, residual_blocks=1)
    source = tmp_path / "transform.safetensors"
    save_network(source, network, {"channels": 4, "residual_blocks": 1}, {"kind": "transform", "attribute": "eyeglasses", "size": 64})
    blurred, plain = tmp_path / "blurred.transform.safetensors", tmp_path / "plain.transform.safetensors"
    _tool().bundle(source, blurred, None, colour_blur=1.2, strength=1.25, colour_strength=0.3)
    _tool().bundle(source, plain, None)
    assert read_metadata(blurred)["colour_blur"] == 1.2 and read_metadata(blurred)["strength"] == 1.25
    assert "colour_blur" not in read_metadata(plain) and "strength" not in read_metadata(plain)
    editor = load_editor(weights=blurred)
    assert (editor.colour_blur, editor.strength, editor.colour_strength) == (1.2, 1.25, 0.3)
    assert "colour_strength" not in read_metadata(plain) and load_editor(weights=plain).colour_strength == 1.0
    editor = load_editor(weights=blurred, colour_blur=0.0, strength=1.0)  # the command line overrides
    assert (editor.colour_blur, editor.strength) == (0.0, 1.0)
    editor = load_editor(weights=plain)
    assert (editor.colour_blur, editor.strength) == (0.0, 1.0)


def test_a_bundled_confine_becomes_the_editors_default_for_local_attributes_only(tmp_path):
    import pytest

    from diat_cli.editing import load_editor
    from diat_cli.errors import DiatError

    network = TransformNetwork(channels=4, residual_blocks=1)
    for attribute in ("eyeglasses", "old"):
        source = tmp_path / f"{attribute}.safetensors"
        save_network(source, network, {"channels": 4, "residual_blocks": 1}, {"kind": "transform", "attribute": attribute, "size": 64})
        _tool().bundle(source, tmp_path / f"{attribute}.transform.safetensors", None, confine=True)
    assert read_metadata(tmp_path / "eyeglasses.transform.safetensors")["confine"] is True
    assert load_editor(weights=tmp_path / "eyeglasses.transform.safetensors").confine_to == "eyes"
    assert load_editor(weights=tmp_path / "eyeglasses.transform.safetensors", confine=False).confine_to is None
    with pytest.raises(DiatError, match="'old' has none: it changes the whole face"):
        load_editor(weights=tmp_path / "old.transform.safetensors")


def test_numbers_measured_with_another_blur_are_refused(tmp_path):
    import json

    import pytest

    from diat_cli.errors import DiatError

    metrics = tmp_path / "metrics.json"
    report = {"editor": {"colour_blur": 0.0, "enhance": True}, "attribute_success": {"edited": 0.6}, "identity": {"rank1": 1.0}, "data": {"folder": "/x/testcrops128", "source_faces": 200}}
    metrics.write_text(json.dumps(report))
    with pytest.raises(DiatError, match="measured with --colour-blur 0.0, but bundled with 1.2"):
        _tool().read_evaluate(metrics, 1.2)
    with pytest.raises(DiatError, match="measured with --strength 1.0, but bundled with 1.5"):  # older reports: strength 1
        _tool().read_evaluate(metrics, 0.0, 1.5)
    with pytest.raises(DiatError, match="measured with --confine False, but bundled with True"):
        _tool().read_evaluate(metrics, 0.0, 1.0, True)
    with pytest.raises(DiatError, match="measured with --colour-strength 1.0, but bundled with 0.3"):  # older reports: 1
        _tool().read_evaluate(metrics, colour_strength=0.3)
    evaluate = _tool().read_evaluate(metrics, 0.0)
    assert evaluate["data"] == {"folder": "testcrops128", "source_faces": 200}
    assert evaluate["colour_blur"] == 0.0 and evaluate["strength"] == 1.0


def test_numbers_measured_with_or_without_e_ship_only_the_same_way(tmp_path):
    import json

    import pytest

    from diat_cli.errors import DiatError

    metrics = tmp_path / "metrics.json"
    base = {"attribute_success": {"edited": 0.6}, "identity": {"rank1": 1.0}, "data": {"folder": "/x/testcrops128", "source_faces": 200}}
    metrics.write_text(json.dumps({**base, "editor": {"enhance": False}}))
    with pytest.raises(DiatError, match="measured without E, but bundled with it"):
        _tool().read_evaluate(metrics)
    assert _tool().read_evaluate(metrics, enhance=False)["enhance"] is False
    # reports written before evaluate recorded it name both files when E was applied
    metrics.write_text(json.dumps({**base, "editor": {"weights": "runs/x/transform.safetensors + runs/x/enhance.safetensors"}}))
    with pytest.raises(DiatError, match="measured with E, but bundled without it"):
        _tool().read_evaluate(metrics, enhance=False)
    assert _tool().read_evaluate(metrics)["enhance"] is True


def test_every_bundled_model_ships_the_settings_its_numbers_were_measured_with():
    from diat_cli.editing import BUNDLED_FOLDER

    for path in sorted(BUNDLED_FOLDER.glob("*.transform.safetensors")):
        metadata = read_metadata(path)
        for name, unset in {"colour_blur": 0.0, "colour_strength": 1.0, "strength": 1.0, "confine": False}.items():
            assert metadata.get(name, unset) == metadata.get("evaluate", {}).get(name, unset), (path.name, name)
        enhance = path.with_name(path.name.replace(".transform.", ".enhance."))
        assert metadata.get("evaluate", {}).get("enhance", True) == enhance.is_file(), (path.name, "enhance")
