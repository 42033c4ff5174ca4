"""Porting: round trips are lossless, and every way a port can be wrong is rejected by name."""

from __future__ import annotations

import pytest
import torch
import torchvision

from reference import AlexNet, AlexNet2012, AlexNet2012TwoTower, LeNet5, port
from reference.models.alexnet2012 import SEED_LRN_ALPHA
from reference.verify.compare import assert_close


@pytest.fixture(scope="module")
def grouped():
    return AlexNet2012(num_classes=11)


@pytest.fixture(scope="module")
def alexnet():
    return AlexNet(num_classes=7, dropout=0.25)  # the tests port it, never change it


def _meta(build):
    """Build without data: the errors under test are raised from types, keys and shapes alone."""
    with torch.device("meta"):
        return build()


def _assert_same_state(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert_close(a[key], b[key], exact=True, what=key)  # a copy: bitwise


def test_grouped_two_tower_round_trip_is_lossless(grouped):
    towers = port.two_tower_from_grouped(grouped)
    assert towers.tower_a.fc8.out_features == 6
    assert towers.tower_b.fc8.out_features == 5
    _assert_same_state(port.grouped_from_two_tower(towers).state_dict(), grouped.state_dict())


def test_torchvision_round_trip_is_lossless(alexnet):
    model = alexnet
    library = port.alexnet_to_torchvision(model)
    assert library.classifier[0].p == 0.25
    assert library.classifier[6].out_features == 7
    _assert_same_state(port.alexnet_from_torchvision(library).state_dict(), model.state_dict())


def test_port_copies_instead_of_sharing_storage(alexnet):
    library = port.alexnet_to_torchvision(alexnet)
    with torch.no_grad():
        library.features[0].weight.zero_()
    assert alexnet.conv1.weight.abs().sum() > 0


def test_port_leaves_the_global_rng_alone(alexnet):
    before = torch.get_rng_state()
    port.alexnet_to_torchvision(alexnet)
    assert torch.equal(before, torch.get_rng_state())


@pytest.mark.parametrize(
    ("function", "wrong"),
    [
        (port.alexnet_from_torchvision, lambda: AlexNet(num_classes=3)),
        (port.alexnet_to_torchvision, lambda: torchvision.models.alexnet(weights=None, num_classes=3)),
        (port.two_tower_from_grouped, lambda: AlexNet(num_classes=3)),
        (port.grouped_from_two_tower, lambda: AlexNet2012(num_classes=3)),
        (port.alexnet_to_torchvision, LeNet5),
    ],
    ids=["from_tv<-AlexNet", "to_tv<-torchvision", "two_tower<-AlexNet", "grouped<-AlexNet2012", "to_tv<-LeNet5"],
)
def test_wrong_model_type_is_a_type_error_naming_both(function, wrong):
    model = wrong() if wrong is LeNet5 else _meta(wrong)  # LeNet-5 is small; its C3 table needs real data
    with pytest.raises(TypeError, match=rf"{function.__name__} expects .*, got {type(model).__name__}"):
        function(model)


def test_two_tower_needs_lrn_confined_to_the_towers():
    with pytest.raises(ValueError, match="lrn_groups=2"):
        port.two_tower_from_grouped(_meta(lambda: AlexNet2012(num_classes=3, lrn_groups=1, lrn_alpha=SEED_LRN_ALPHA)))


def test_shape_mismatch_names_the_key():
    library = _meta(lambda: torchvision.models.alexnet(weights=None, num_classes=3))
    library.features[3] = _meta(lambda: torch.nn.Conv2d(64, 190, kernel_size=5, padding=2))  # 192 expected
    with pytest.raises(ValueError, match=r"'conv2\.weight' has shape \(190, 64, 5, 5\), expected \(192, 64, 5, 5\)"):
        port.alexnet_from_torchvision(library)


def test_missing_key_is_named():
    library = _meta(lambda: torchvision.models.alexnet(weights=None, num_classes=3))
    library.classifier[6] = _meta(lambda: torch.nn.Linear(4096, 3, bias=False))
    with pytest.raises(ValueError, match=r"missing key\(s\) \['fc8\.bias'\]"):
        port.alexnet_from_torchvision(library)


def test_unexpected_layer_is_named():
    library = _meta(lambda: torchvision.models.alexnet(weights=None, num_classes=3))
    library.features.add_module("13", _meta(lambda: torch.nn.Conv2d(256, 256, kernel_size=1)))
    with pytest.raises(ValueError, match=r"unexpected key 'features\.13\.weight'"):
        port.alexnet_from_torchvision(library)


def test_two_tower_state_with_one_tower_missing_a_key_is_named():
    state = _meta(lambda: AlexNet2012TwoTower(num_classes=4)).state_dict()
    del state["tower_b.fc7.bias"]
    with pytest.raises(ValueError, match=r"'fc7\.bias' is missing from one tower"):
        port.grouped_state_from_two_tower(state)


def test_num_classes_and_dropout_follow_the_source():
    library = _meta(lambda: torchvision.models.alexnet(weights=None, num_classes=17, dropout=0.1))
    model = port.alexnet_from_torchvision(library)
    assert model.num_classes == 17
    assert model.dropout6.p == model.dropout7.p == 0.1
