"""dlib's face-recognition ResNet in torch: equal to dlib on real faces, differentiable,
and fed with the same chips dlib cuts."""

from __future__ import annotations

import itertools
import math
from collections import defaultdict

import numpy as np
import pytest
import torch

from diat_cli.errors import DiatError
from diat_cli.face.align import alignment_matrix, warp_to_crop
from diat_cli.face.dlib_format import DlibLayer, DlibNetwork, write_network
from diat_cli.face.identity import (
    IdentityNetwork,
    chip_transforms,
    descriptor_distance,
    face_chips,
    load_identity_network,
    same_person,
    template_landmarks,
)

FACES_WANTED = 50  # 10 people x 5 photos
PHOTOS_PER_PERSON = 5


@pytest.fixture(scope="module")
def network() -> IdentityNetwork:
    return load_identity_network()


@pytest.fixture(scope="module")
def detector():
    from diat_cli.face.detect import FaceDetector

    return FaceDetector("hog", upsample=1)


def _dlib_shape(box, landmarks):
    import dlib

    points = [dlib.point(int(round(x)), int(round(y))) for x, y in landmarks]
    return dlib.full_object_detection(dlib.rectangle(*box), points)


@pytest.fixture(scope="module")
def real_faces(shared_data, detector):
    """Photos of 10 people (5 each) from celeba-test-crops: (person ids, H x W x 3 photos,
    detected faces, dlib chips 150 x 150 x 3 uint8, dlib's descriptors N x 128)."""
    import dlib

    from diat_cli.face.model_files import FACE_RECOGNITION_RESNET, model_path
    from diat_cli.imageio import read_image

    from diat_cli.face.detect import FaceDetector

    fast_detector = FaceDetector("hog", upsample=0)  # most faces here are 100 px wide or more
    folder = shared_data / "celeba-test-crops"
    by_person = defaultdict(list)
    for line in (folder / "identity_CelebA.txt").read_text().splitlines():
        name, person = line.split()
        by_person[person].append(name)
    people, photos, faces, chips = [], [], [], []
    for person in sorted(by_person, key=int):
        found = []
        for name in sorted(by_person[person]):
            rgb = read_image(folder / "images" / name)
            detected = fast_detector.detect(rgb) or detector.detect(rgb)
            if detected:
                found.append((rgb, detected[0]))
            if len(found) == PHOTOS_PER_PERSON:
                break
        if len(found) < PHOTOS_PER_PERSON:
            continue
        for rgb, face in found:
            people.append(person)
            photos.append(rgb)
            faces.append(face)
            chips.append(dlib.get_face_chip(rgb, _dlib_shape(face.box, face.landmarks), size=150, padding=0.25))
        if len(chips) >= FACES_WANTED:
            break
    recogniser = dlib.face_recognition_model_v1(str(model_path(FACE_RECOGNITION_RESNET)))
    reference = np.array(recogniser.compute_face_descriptor(chips))
    return people, photos, faces, np.stack(chips), reference


def _as_tensor(images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float()


def test_descriptors_equal_dlibs_on_real_faces(network, real_faces):
    people, _, _, chips, reference = real_faces
    assert len(chips) >= 50
    with torch.no_grad():
        descriptors = network(_as_tensor(chips)).double().numpy()
    assert np.abs(descriptors - reference).max() < 1e-4


def test_same_person_decisions_agree_with_dlib_on_every_pair(network, real_faces):
    people, _, _, chips, reference = real_faces
    with torch.no_grad():
        descriptors = network(_as_tensor(chips)).double()
    reference = torch.from_numpy(reference)
    pairs = list(itertools.combinations(range(len(people)), 2))
    first, second = (torch.tensor(side) for side in zip(*pairs))
    ours = same_person(descriptors[first], descriptors[second])
    theirs = same_person(reference[first], reference[second])
    assert torch.equal(ours, theirs)
    # ... and the decisions mean something: most pairs are judged right.
    truth = torch.tensor([people[i] == people[j] for i, j in pairs])
    assert (ours == truth).float().mean() > 0.9


def test_network_shape_and_state(network):
    assert not network.training
    assert all(not parameter.requires_grad for parameter in network.parameters())
    convolutions = [m for m in network.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convolutions) == 29
    assert network.fc.weight.shape == (128, 256)
    images = torch.rand(2, 3, 150, 150) * 255
    with torch.no_grad():
        descriptors, features = network(images, return_features=True)
    assert descriptors.shape == (2, 128)
    assert [tuple(f.shape[1:]) for f in features] == [(32, 35, 35), (64, 17, 17), (128, 8, 8), (256, 4, 4)]
    with pytest.raises(ValueError, match="150 x 150"):
        network(torch.zeros(1, 3, 128, 128))


def test_loading_is_cached_and_gives_independent_copies(network):
    again = load_identity_network()
    assert again is not network
    for (name, mine), theirs in zip(network.state_dict().items(), again.state_dict().values()):
        assert torch.equal(mine, theirs), name
        assert mine.data_ptr() != theirs.data_ptr()


def test_a_file_of_another_network_is_refused(tmp_path):
    path = tmp_path / "other.dat"
    write_network(
        path,
        DlibNetwork(
            loss="loss_metric_2",
            loss_settings={"margin": 0.04, "distance_threshold": 0.6},
            layer_versions=(3,),
            input_layer="input_rgb_image_sized",
            input_mean=(122.782, 117.001, 104.298),
            input_size=(150, 150),
            layers=(DlibLayer("relu_", {}, {}),),
        ),
    )
    with pytest.raises(DiatError, match="not dlib's face-recognition ResNet"):
        load_identity_network(path)
    with pytest.raises(DiatError, match="cannot read"):
        load_identity_network(tmp_path / "absent.dat")


def test_gradients_reach_the_input_crops(network):
    crops = (torch.rand(2, 3, 128, 128) * 2 - 1).requires_grad_()
    descriptors, features = network(face_chips(crops), return_features=True)
    loss = descriptors.square().sum() + sum(f.square().mean() for f in features)
    loss.backward()
    assert crops.grad is not None and torch.isfinite(crops.grad).all()
    assert crops.grad[0].abs().sum() > 0 and crops.grad[1].abs().sum() > 0


def test_distance_and_threshold():
    a = torch.zeros(3, 128)
    b = torch.zeros(3, 128)
    b[0, 0], b[1, 0], b[2, :2] = 0.3, 0.7, 0.5
    assert descriptor_distance(a, b).tolist() == pytest.approx([0.3, 0.7, math.sqrt(0.5)])
    assert same_person(a, b).tolist() == [True, False, False]
    assert same_person(a, b, threshold=0.75).tolist() == [True, True, True]


def test_face_chips_options_are_consistent():
    crops = torch.rand(2, 3, 128, 128) * 2 - 1
    default = face_chips(crops)
    assert default.shape == (2, 3, 150, 150)
    assert torch.allclose(default, face_chips(crops, template_landmarks(128)), atol=1e-4)
    # landmarks measured on a 256 px crop, applied to its 128 px version
    assert torch.allclose(default, face_chips(crops, template_landmarks(256), crop_size=256), atol=1e-4)
    # the same image given as 0-255 values
    assert torch.allclose(default, face_chips((crops + 1) * 127.5, value_range=(0, 255)), atol=1e-3)
    with pytest.raises(ValueError):
        face_chips(crops, torch.zeros(3, 5, 2))


@pytest.mark.parametrize("crop_size", [128, 256])
def test_face_chips_cut_what_dlib_cuts_from_canonical_crops(real_faces, detector, crop_size):
    """dlib.get_face_chip on a canonical crop with landmarks found on it, against face_chips."""
    import dlib

    _, photos, faces, _, _ = real_faces
    compared = 0
    for rgb, face in zip(photos[:8], faces[:8]):
        crop = warp_to_crop(rgb, alignment_matrix(face.landmarks, crop_size), crop_size)
        found = detector.detect(crop)
        if not found:
            continue
        landmarks = found[0].landmarks
        shape = _dlib_shape(found[0].box, landmarks)

        # The transform: dlib's rotated rectangle, its corners on the chip's corner pixels.
        details = dlib.get_face_chip_details(shape, 150, 0.25)
        rect, angle = details.rect, details.angle
        centre = np.array([(rect.left() + rect.right()) / 2, (rect.top() + rect.bottom()) / 2])
        rotation = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
        corners = np.array([[rect.left(), rect.top()], [rect.right(), rect.top()], [rect.left(), rect.bottom()]])
        dlib_corners = (corners - centre) @ rotation.T + centre
        matrix = chip_transforms(torch.tensor(landmarks)[None])[0].numpy()
        our_corners = np.array([[0, 0, 1], [149, 0, 1], [0, 149, 1]]) @ matrix.T
        assert np.abs(our_corners - dlib_corners).max() < 1e-6

        # Eye centres land on the same chip pixels (within 1 px).
        def to_chip(points, linear, offset):
            return (np.asarray(points) - offset) @ np.linalg.inv(linear).T

        dlib_linear = np.stack([dlib_corners[1] - dlib_corners[0], dlib_corners[2] - dlib_corners[0]], axis=1) / 149
        eyes = np.stack([landmarks[0:2].mean(axis=0), landmarks[2:4].mean(axis=0)])
        ours = to_chip(eyes, matrix[:, :2], matrix[:, 2])
        theirs = to_chip(eyes, dlib_linear, dlib_corners[0])
        assert np.abs(ours - theirs).max() < 1.0

        # The pixels: dlib truncates to uint8, so at most 1 level apart.
        expected = dlib.get_face_chip(crop, shape, size=150, padding=0.25).astype(np.float32)
        crop_tensor = torch.from_numpy(crop).permute(2, 0, 1)[None].float() / 127.5 - 1
        chip = face_chips(crop_tensor, torch.tensor(landmarks)[None])[0].permute(1, 2, 0).numpy()
        difference = np.abs(chip - expected)[1:-1, 1:-1]  # dlib blacks out the outermost ring
        assert difference.max() < 1.01 and difference.mean() < 0.6
        compared += 1
    assert compared >= 5


def test_face_chips_follow_dlibs_image_pyramid_on_large_crops(real_faces):
    """Chips that shrink a crop more than 2x come from dlib's pyramid; landmarks here are the
    photo's, mapped into the crop (detecting on 640 px crops would be slow)."""
    import dlib

    from diat_cli.face.align import transform_points

    _, photos, faces, _, _ = real_faces
    for rgb, face in zip(photos[:3], faces[:3]):
        matrix = alignment_matrix(face.landmarks, 640)
        crop = warp_to_crop(rgb, matrix, 640)
        landmarks = np.round(transform_points(matrix, face.landmarks))
        expected = dlib.get_face_chip(crop, _dlib_shape((0, 0, 640, 640), landmarks), size=150, padding=0.25)
        crop_tensor = (torch.from_numpy(crop).permute(2, 0, 1)[None].float() / 127.5 - 1).requires_grad_()
        chip = face_chips(crop_tensor, torch.tensor(landmarks)[None])
        difference = np.abs(chip[0].detach().permute(1, 2, 0).numpy() - expected)[1:-1, 1:-1]
        assert difference.max() < 1.01 and difference.mean() < 0.6
        chip.sum().backward()
        assert crop_tensor.grad.abs().sum() > 0
