"""Porting: round trips are lossless copies, a sharing port shares, and every way a port can be wrong is
rejected by name."""

from __future__ import annotations

import pytest
import torch
import torchvision

from reference import AlexNet, AlexNet2012, AlexNet2012TwoTower, LeNet5, port
from reference.models.alexnet2012 import SEED_LRN_ALPHA
from reference.verify.build import uninitialised
from reference.verify.compare import assert_close
from reference.verify.pairs import ported
from tests.helpers import CASES, pair_params


def _meta(build):
    """Build without data: what is under test follows from types, keys and shapes alone."""
    with torch.device("meta"):
        return build()


@pytest.mark.parametrize(("case", "counterpart"), pair_params(lambda _, counterpart: counterpart.port_back is not None))
def test_port_and_port_back_is_a_lossless_copy_that_leaves_the_rng_alone(modules, case, counterpart):
    reference = modules.reference(case)
    rng = torch.get_rng_state()
    other = counterpart.port(reference)
    assert torch.equal(rng, torch.get_rng_state())  # no random init drawn for weights about to be overwritten
    back, state = counterpart.port_back(other).state_dict(), reference.state_dict()
    assert back.keys() == state.keys()
    for key, tensor in state.items():
        assert_close(back[key], tensor, exact=True, what=key)  # copies: bitwise
    sums = [param.abs().sum() for param in reference.parameters()]
    with torch.no_grad():
        for param in other.parameters():
            param.fill_(7.0)
    assert [param.abs().sum() for param in reference.parameters()] == sums  # copies, not the reference's storage


@pytest.mark.parametrize(("case", "counterpart"), pair_params(lambda _, counterpart: counterpart.shares))
def test_a_sharing_port_gives_its_own_parameters_over_the_reference_storage(case, counterpart):
    reference = uninitialised(case.build)  # storage is what is under test, not values
    other = ported(counterpart, reference, share=True)
    storage = {param.untyped_storage().data_ptr() for param in reference.parameters()}
    assert all(param.untyped_storage().data_ptr() in storage for param in other.parameters())
    assert not {id(p) for p in reference.parameters()} & {id(p) for p in other.parameters()}  # gradients of its own
    assert sum(p.numel() for p in other.parameters()) == sum(p.numel() for p in reference.parameters())


@pytest.mark.parametrize(("case", "counterpart"), pair_params(lambda _, counterpart: counterpart.case is not None))
def test_a_counterpart_that_names_a_case_is_that_case_s_model_with_the_same_state_layout(modules, case, counterpart):
    """``diff A B --port`` takes the registry's port where ``Counterpart.case`` names B: it must build B's model."""
    other = modules.counterpart(case, counterpart)
    named = _meta(CASES[counterpart.case].build)
    assert type(other) is type(named)
    assert {k: t.shape for k, t in other.state_dict().items()} == {k: t.shape for k, t in named.state_dict().items()}


def test_an_odd_class_count_splits_between_the_towers_tower_a_first():
    towers = port.two_tower_from_grouped(_meta(lambda: AlexNet2012(num_classes=11)))
    assert (towers.tower_a.fc8.out_features, towers.tower_b.fc8.out_features) == (6, 5)
    assert port.grouped_from_two_tower(towers).fc8.out_features == 11


def test_num_classes_and_dropout_follow_the_source_both_ways():
    library = port.alexnet_to_torchvision(_meta(lambda: AlexNet(num_classes=7, dropout=0.25)))
    assert library.classifier[0].p == library.classifier[3].p == 0.25
    assert library.classifier[6].out_features == 7
    source = _meta(lambda: torchvision.models.alexnet(weights=None, num_classes=17, dropout=0.1))
    model = port.alexnet_from_torchvision(source)
    assert model.num_classes == 17
    assert model.dropout6.p == model.dropout7.p == 0.1


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
