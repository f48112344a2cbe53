"""The editor's last steps: blurring the colour of an edit (never its brightness), scaling it."""

from __future__ import annotations

import inspect

import pytest
import torch

from diat_cli.editing import Editor, smooth_edit_colour
from diat_cli.errors import ConfigError
from diat_cli.settings import EvaluateSettings, TransferSettings

RGB_TO_YCBCR = torch.tensor([[0.299, 0.587, 0.114], [-0.168736, -0.331264, 0.5], [0.5, -0.418688, -0.081312]])


def _ycbcr(images: torch.Tensor) -> torch.Tensor:
    return torch.einsum("ij,njhw->nihw", RGB_TO_YCBCR, images)


def _fringe(size: int = 32) -> torch.Tensor:
    """A one-pixel red/blue stripe pattern on a vertical line: the rainbow edge of a thin frame."""
    edit = torch.zeros(1, 3, size, size)
    edit[0, 0, :, size // 2] = 0.4  # red on one column
    edit[0, 2, :, size // 2 + 1] = 0.4  # blue on the next
    return edit


def test_a_grey_edit_passes_unchanged_at_every_pixel():
    torch.manual_seed(0)
    original = torch.rand(2, 3, 32, 32) * 2 - 1
    grey = torch.randn(2, 1, 32, 32).mul(0.3).expand(2, 3, 32, 32)  # sharp light and shadow, no colour
    edited = original + grey
    assert torch.allclose(smooth_edit_colour(edited, original, 1.2), edited, atol=1e-5)


def test_a_colour_fringe_fades_and_its_brightness_stays():
    original = torch.zeros(1, 3, 32, 32)
    edited = original + _fringe()
    smoothed = smooth_edit_colour(edited, original, 1.2)
    before, after = _ycbcr(edited - original), _ycbcr(smoothed - original)
    assert torch.allclose(after[:, 0], before[:, 0], atol=1e-5)  # luminance of the edit kept exactly
    assert after[:, 1:].abs().amax() < 0.35 * before[:, 1:].abs().amax()  # peak chroma of the fringe down by two thirds


def test_a_broad_colour_change_passes():
    original = torch.rand(1, 3, 32, 32) * 2 - 1
    edited = original + torch.tensor([0.2, -0.05, -0.1]).view(1, 3, 1, 1)  # a uniform warm tint
    assert torch.allclose(smooth_edit_colour(edited, original, 1.2), edited, atol=1e-5)


def test_sigma_zero_returns_the_networks_output_as_it_is():
    original = torch.zeros(1, 3, 16, 16)
    edited = original + _fringe(16)
    assert smooth_edit_colour(edited, original, 0.0) is edited


class _AddFringe(torch.nn.Module):
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return images + _fringe(images.shape[-1])


def test_the_editor_blurs_only_when_told_to():
    crops = torch.zeros(1, 3, 32, 32)
    metadata = {"size": 32, "attribute": "eyeglasses"}
    raw = Editor(_AddFringe(), None, metadata)(crops)
    smoothed = Editor(_AddFringe(), None, metadata, colour_blur=1.2)(crops)
    assert torch.allclose(raw, crops + _fringe())
    assert _ycbcr(smoothed)[:, 1:].abs().amax() < 0.35 * _ycbcr(raw)[:, 1:].abs().amax()
    assert torch.allclose(_ycbcr(smoothed)[:, 0], _ycbcr(raw)[:, 0], atol=1e-5)


def test_colour_strength_keeps_the_brightness_of_an_edit_and_scales_its_colour():
    crops = torch.zeros(1, 3, 32, 32)
    metadata = {"size": 32, "attribute": "old"}
    raw = Editor(_AddFringe(), None, metadata)(crops)
    for scale in (0.0, 0.3):
        kept = Editor(_AddFringe(), None, metadata, colour_strength=scale)(crops)
        assert torch.allclose(_ycbcr(kept)[:, 0], _ycbcr(raw)[:, 0], atol=1e-5)
        assert torch.allclose(_ycbcr(kept)[:, 1:], scale * _ycbcr(raw)[:, 1:], atol=1e-5)
    assert torch.equal(Editor(_AddFringe(), None, metadata, colour_strength=1.0)(crops), raw)


def test_the_command_line_leaves_blur_and_strength_to_the_model_unless_given():
    from diat_cli.commands.evaluate import evaluate
    from diat_cli.commands.transfer import transfer

    for command in (transfer, evaluate):
        for name in ("colour_blur", "colour_strength", "strength"):
            assert inspect.signature(command).parameters[name].default.default is None
    settings = TransferSettings(inputs=("a",), output="b", attributes=("old",))
    assert settings.colour_blur is None and settings.strength is None and settings.colour_strength is None


@pytest.mark.parametrize(("name", "value"), [("colour_blur", -0.5), ("colour_blur", 9.0), ("colour_strength", -0.1), ("colour_strength", 1.5)])
def test_an_out_of_range_colour_setting_is_refused(name, value, tmp_path):
    option = "--" + name.replace("_", "-")
    with pytest.raises(ConfigError, match=f"{option} must be between 0"):
        TransferSettings(inputs=(tmp_path,), output=tmp_path / "out", attributes=("old",), **{name: value})
    with pytest.raises(ConfigError, match=f"{option} must be between 0"):
        EvaluateSettings(attribute="old", data=tmp_path, **{name: value})


class _AddConstant(torch.nn.Module):
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return images + 0.2


def test_strength_scales_the_change_and_one_leaves_it_alone():
    crops = torch.zeros(1, 3, 16, 16)
    metadata = {"size": 16, "attribute": "old"}
    assert torch.allclose(Editor(_AddConstant(), None, metadata)(crops), crops + 0.2)
    assert torch.allclose(Editor(_AddConstant(), None, metadata, strength=0.5)(crops), crops + 0.1)
    assert torch.allclose(Editor(_AddConstant(), None, metadata, strength=2.0)(crops), crops + 0.4)
    assert Editor(_AddConstant(), None, metadata, strength=10.0)(crops).max() == 1.0  # still a valid image


@pytest.mark.parametrize("strength", [0.0, -1.0, 3.5])
def test_an_out_of_range_strength_is_refused(strength, tmp_path):
    with pytest.raises(ConfigError, match="--strength must be above 0 and at most 3"):
        TransferSettings(inputs=(tmp_path,), output=tmp_path / "out", attributes=("old",), strength=strength)
    with pytest.raises(ConfigError, match="--strength must be above 0 and at most 3"):
        EvaluateSettings(attribute="old", data=tmp_path, strength=strength)


def test_a_larger_crop_keeps_its_detail_where_nothing_is_edited():
    crops = torch.rand(2, 3, 64, 64) * 2 - 1  # pixel-level detail a 16 px network cannot hold
    metadata = {"size": 16, "attribute": "old"}
    torch.testing.assert_close(Editor(torch.nn.Identity(), None, metadata)(crops), crops)
    edited = Editor(_AddConstant(), None, metadata, strength=0.5)(crops)
    torch.testing.assert_close(edited, (crops + 0.1).clamp(-1, 1))  # the change itself arrives resized


def test_confining_keeps_the_change_near_the_region_and_drops_it_far_away():
    from diat_cli.face.masks import region_box

    size = 64
    crops = torch.zeros(1, 3, size, size)
    metadata = {"size": size, "attribute": "no-eyeglasses"}
    free = Editor(_AddConstant(), None, metadata)(crops) - crops
    confined = Editor(_AddConstant(), None, metadata, confine_to="eyes")(crops) - crops
    assert torch.allclose(free, torch.full_like(free, 0.2))
    left, top, right, bottom = region_box("eyes", neighbourhood=True)
    eye_row, eye_column = int(0.51 * size), size // 2
    assert confined[0, :, eye_row, eye_column].allclose(torch.full((3,), 0.2), atol=1e-3)  # the eyes keep the edit
    assert confined[0, :, : int(top * size) - 6].abs().max() < 1e-3  # the top of the head loses it
    assert confined[0, :, int(bottom * size) + 6 :].abs().max() < 1e-3  # and the chin
    # The neighbourhood holds the tight region box with room to spare.
    tight = region_box("eyes")
    assert left < tight[0] and top < tight[1] and right > tight[2] and bottom > tight[3]


def test_confine_follows_the_model_unless_given_and_is_refused_for_whole_face_attributes(tmp_path):
    from diat_cli.commands.evaluate import evaluate
    from diat_cli.commands.transfer import transfer

    for command in (transfer, evaluate):
        assert inspect.signature(command).parameters["confine"].default.default is None
    assert TransferSettings(inputs=(tmp_path,), output=tmp_path / "out", attributes=("no-eyeglasses",), confine=True).confine
    with pytest.raises(ConfigError, match="--confine keeps an edit near its region.*old changes the whole face"):
        TransferSettings(inputs=(tmp_path,), output=tmp_path / "out", attributes=("no-eyeglasses", "old"), confine=True)
    with pytest.raises(ConfigError, match="old changes the whole face"):
        EvaluateSettings(attribute="old", data=tmp_path, confine=True)
