"""Porting: round trips are lossless copies, a sharing port shares, and every way a port can be wrong is
rejected by name."""

from __future__ import annotations

import inspect

import pytest
import torch
import torchvision

from reference import AlexNet, AlexNet2012, AlexNet2012TwoTower, LeNet5, port
from reference.models.alexnet2012 import SEED_LRN_ALPHA
from reference.verify.build import uninitialised
from reference.verify.compare import assert_close, outputs
from reference.verify.pairs import ported, ported_back
from tests.helpers import CASES, PAIRS, meta_model, pair_params


def _meta_build(build):
    """Build without data: what is under test follows from types, keys and shapes alone."""
    with torch.device("meta"):
        return build()


def _has_parameters(case) -> bool:
    return case.trainable_params > 0 if case.is_model else any(True for _ in _meta_build(case.build).parameters())


@pytest.mark.cost(builds=2)  # two copies of the weights, no draws
@pytest.mark.parametrize(("case", "pair"), pair_params(lambda _, pair: pair.back is not None))
def test_port_round_trip(modules, case, pair):
    """A port and its port back make a lossless copy, and leave the RNG alone."""
    reference = modules.reference(case)
    rng = torch.get_rng_state()
    other = ported(pair, reference)
    assert torch.equal(rng, torch.get_rng_state())  # no random init drawn for weights about to be overwritten
    back, state = ported_back(pair, other).state_dict(), reference.state_dict()
    assert back.keys() == state.keys()
    for key, tensor in state.items():
        assert_close(back[key], tensor, exact=True, what=key)  # copies: bitwise
    sums = [param.abs().sum() for param in reference.parameters()]
    with torch.no_grad():
        for param in other.parameters():
            param.fill_(7.0)
    assert [param.abs().sum() for param in reference.parameters()] == sums  # copies, not the reference's storage


@pytest.mark.cost(builds=1)
@pytest.mark.parametrize(("case", "pair"), pair_params(lambda case, pair: pair.state.views and _has_parameters(case)))
def test_port_shares(case, pair):
    """A sharing port gives the counterpart parameters of its own over the reference's storage: no copy."""
    reference = uninitialised(case.build)  # storage is what is under test, not values
    other = ported(pair, reference, share=True)
    storage = {param.untyped_storage().data_ptr() for param in reference.parameters()}
    assert all(param.untyped_storage().data_ptr() in storage for param in other.parameters())
    assert not {id(p) for p in reference.parameters()} & {id(p) for p in other.parameters()}  # gradients of its own
    assert sum(p.numel() for p in other.parameters()) == sum(p.numel() for p in reference.parameters())


@pytest.mark.cost
@pytest.mark.parametrize(("case", "pair"), pair_params(lambda _, pair: pair.model in CASES))
def test_pair_model_is_the_case(modules, case, pair):
    """A counterpart that names a registry case is that case's model, with the same state layout: ``diff A B
    --port`` takes the registry's port where ``Pair.model`` names B."""
    other = modules.counterpart(case, pair)
    named = _meta_build(CASES[pair.model].build)
    assert type(other) is type(named)
    assert {k: t.shape for k, t in other.state_dict().items()} == {k: t.shape for k, t in named.state_dict().items()}


def test_towers_odd_classes():
    """An odd class count splits between the towers, tower A first."""
    towers = port.two_tower_from_grouped(_meta_build(lambda: AlexNet2012(num_classes=11)))
    assert (towers.tower_a.fc8.out_features, towers.tower_b.fc8.out_features) == (6, 5)
    assert port.grouped_from_two_tower(towers).fc8.out_features == 11


OPTIONS = {"num_classes": 7, "dropout": 0.25}  # neither a default of any model here


def _options(case) -> dict:
    """The options of :data:`OPTIONS` the case's model takes."""
    accepted = inspect.signature(type(meta_model(case)).__init__).parameters
    return {name: value for name, value in OPTIONS.items() if name in accepted}


def _rates(model: torch.nn.Module) -> set[float]:
    return {module.p for module in model.modules() if isinstance(module, torch.nn.Dropout)}


def _carries(model: torch.nn.Module, reference: torch.nn.Module, case, options: dict) -> None:
    with torch.device("meta"):
        out = outputs(model(case.input_space.sample().to("meta")))  # in train mode: the heads' outputs too
    if "num_classes" in options:
        widths = [o.shape[1] for o in out]
        assert set(widths) == {options["num_classes"]}, f"{type(model).__name__}: {widths} classes"
    if "dropout" in options:  # the option's rate, and the other rates (GoogLeNet's heads' 0.7) as the reference's
        rates = _rates(model)
        assert options["dropout"] in rates, f"{type(model).__name__}: dropout {rates}"
        assert rates == _rates(reference), f"{type(model).__name__}: dropout {rates}"


def _carrying(case, pair) -> bool:
    return case.is_model and bool(_options(case))


def _first_of_its_port(case, pair) -> bool:
    """Whether the pair is the registry's first (of those that carry options) to use its port function: the one a
    run keeps whatever its budget (the port's code is the same for the others)."""
    first = next(p for c, p in PAIRS if _carrying(c, p) and p.other is pair.other)
    return first is pair


@pytest.mark.cost(seconds=0.11, aim="options")  # builds and forwards on the meta device: their Python alone
@pytest.mark.parametrize(
    ("case", "pair"), pair_params(lambda case, pair: _carrying(case, pair) and _first_of_its_port(case, pair))
)
def test_port_options(case, pair):
    """One pair per port function: :func:`test_options_carried`'s check, kept in every run."""
    test_options_carried(case, pair)


@pytest.mark.cost(seconds=0.11)  # builds and forwards on the meta device: their Python alone (measured)
@pytest.mark.parametrize(("case", "pair"), pair_params(_carrying))
def test_options_carried(case, pair):
    """Every port carries the model's constructor options, both ways: from a reference built with another class
    count and dropout rate, the counterpart has that output width and every dropout that rate, and so has the
    reference ported back (on the meta device: types and shapes)."""
    options = _options(case)
    with torch.device("meta"):
        reference = case.build(**options)
        other = ported(pair, reference, share=True)
        _carries(other, reference, case, options)
        if pair.back is not None:
            _carries(ported_back(pair, other), reference, case, options)


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
def test_port_wrong_type(function, wrong):
    """A model of the wrong type is a TypeError naming both."""
    model = wrong() if wrong is LeNet5 else _meta_build(wrong)  # LeNet-5 is small; its C3 table needs real data
    with pytest.raises(TypeError, match=rf"{function.__name__} expects .*, got {type(model).__name__}"):
        function(model)


def test_towers_need_grouped_lrn():
    """The two-tower form needs LRN windows confined to the towers."""
    with pytest.raises(ValueError, match="lrn_groups=2"):
        port.two_tower_from_grouped(
            _meta_build(lambda: AlexNet2012(num_classes=3, lrn_groups=1, lrn_alpha=SEED_LRN_ALPHA))
        )


def test_port_shape_mismatch():
    """A shape mismatch names the key."""
    library = _meta_build(lambda: torchvision.models.alexnet(weights=None, num_classes=3))
    library.features[3] = _meta_build(lambda: torch.nn.Conv2d(64, 190, kernel_size=5, padding=2))  # 192 expected
    with pytest.raises(ValueError, match=r"'conv2\.weight' has shape \(190, 64, 5, 5\), expected \(192, 64, 5, 5\)"):
        port.alexnet_from_torchvision(library)


def test_port_missing_key():
    """A missing key is named."""
    library = _meta_build(lambda: torchvision.models.alexnet(weights=None, num_classes=3))
    library.classifier[6] = _meta_build(lambda: torch.nn.Linear(4096, 3, bias=False))
    with pytest.raises(ValueError, match=r"missing key\(s\) \['fc8\.bias'\]"):
        port.alexnet_from_torchvision(library)


def test_port_unexpected_layer():
    """An unexpected layer is named."""
    library = _meta_build(lambda: torchvision.models.alexnet(weights=None, num_classes=3))
    library.features.add_module("13", _meta_build(lambda: torch.nn.Conv2d(256, 256, kernel_size=1)))
    with pytest.raises(ValueError, match=r"unexpected key 'features\.13\.weight'"):
        port.alexnet_from_torchvision(library)


def test_towers_missing_key():
    """A two-tower state with one tower missing a key names it."""
    state = _meta_build(lambda: AlexNet2012TwoTower(num_classes=4)).state_dict()
    del state["tower_b.fc7.bias"]
    with pytest.raises(ValueError, match=r"'fc7\.bias' is missing from one tower"):
        port.grouped_state_from_two_tower(state)
