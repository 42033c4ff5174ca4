"""Determinism on CPU, state_dict round trips, and the divergence locator."""

from __future__ import annotations

import pytest
import torch

from reference.specs import SPECS
from reference.testing import assert_close, assert_equivalent, uninitialised
from tests.conftest import BUILD_SEED

ALL = list(SPECS.values())
IDS = [spec.name for spec in ALL]


@pytest.mark.parametrize("spec", ALL, ids=IDS)
def test_same_seed_same_initial_weights(spec, built_models):
    shared = built_models.get(spec).state_dict()  # built under BUILD_SEED
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(BUILD_SEED)
        again = spec.builder().state_dict()
        torch.manual_seed(BUILD_SEED + 1)
        other = spec.builder().state_dict()
    assert again.keys() == shared.keys()
    for key in shared:
        assert_close(again[key], shared[key], exact=True, what=key)
    assert any(not torch.equal(t, shared[k]) for k, t in other.items())  # ...and the seed is what decides


@pytest.fixture(params=ALL, ids=IDS)
def spec_and_model(request, built_models):
    return request.param, built_models.get(request.param)


@pytest.mark.parametrize("spec", ALL, ids=IDS)
def test_same_input_twice_is_bitwise_reproducible_in_train_mode(spec, train_steps):
    first, second = train_steps.get(spec), train_steps.again(spec)
    # Same ops, same order, same dropout masks: bitwise.
    assert_close(second.output, first.output, exact=True)
    assert_close(second.input_grad, first.input_grad, exact=True)
    for name, grad in first.grads.items():
        assert second.grads[name] is not grad, name  # two steps' tensors, not one compared with itself
        assert_close(second.grads[name], grad, exact=True, what=name)


def test_state_dict_round_trip_with_weights_only_load(spec_and_model, tmp_path):
    spec, model = spec_and_model
    torch.save(model.state_dict(), tmp_path / "model.pt")
    clone = uninitialised(spec.builder)
    # Poison everything a state_dict carries (state_dict tensors share storage with the module): the
    # clone must get it all back from the file. Non-persistent buffers (C3's index tables) are derived
    # from the constructor's arguments and are not in the file.
    for tensor in clone.state_dict().values():
        tensor.fill_(float("nan") if tensor.is_floating_point() else 0)
    clone.load_state_dict(torch.load(tmp_path / "model.pt", weights_only=True, mmap=True))
    x = torch.randn(1, spec.in_channels, spec.default_side, spec.default_side)
    assert_equivalent(model, clone.eval(), x)


@pytest.mark.parametrize("layer", ["conv1", "conv3", "fc7"])
def test_locator_names_the_layer_where_a_planted_perturbation_is(alexnet_and_torchvision, layer):
    model, library = (m.eval() for m in alexnet_and_torchvision)
    bias = getattr(model, layer).bias
    original = bias.detach().clone()
    with torch.no_grad():
        bias.add_(1e-3)  # every unit: one unit alone may sit under a ReLU's zero
    try:
        with pytest.raises(
            AssertionError,
            match=rf"first diverging layer: '{layer}' \(counterpart '{SPECS['alexnet'].counterpart.layers[layer]}'\)",
        ):
            assert_equivalent(model, library, torch.randn(2, 3, 224, 224), layers=SPECS["alexnet"].counterpart.layers)
    finally:
        with torch.no_grad():
            bias.copy_(original)
