"""Determinism on CPU, state_dict round trips, and the divergence locator."""

from __future__ import annotations

import io

import pytest
import torch

from reference import AlexNet, port
from reference.specs import SPECS
from reference.testing import assert_equivalent

ALL = list(SPECS.values())


@pytest.mark.parametrize("spec", ALL, ids=lambda spec: spec.name)
def test_same_seed_same_initial_weights(spec):
    torch.manual_seed(3)
    first = spec.builder().state_dict()
    torch.manual_seed(3)
    second = spec.builder().state_dict()
    for key in first:
        torch.testing.assert_close(second[key], first[key], rtol=0, atol=0, msg=key)
    torch.manual_seed(4)
    assert any(not torch.equal(t, first[k]) for k, t in spec.builder().state_dict().items())


@pytest.fixture(scope="module", params=ALL, ids=lambda spec: spec.name)
def built(request):
    spec = request.param
    return spec, spec.builder()


def _run(model, x, seed):
    torch.manual_seed(seed)
    x = x.detach().clone().requires_grad_()
    model.zero_grad(set_to_none=True)
    out = model(x)
    out.sum().backward()
    return out.detach(), x.grad, {n: p.grad.clone() for n, p in model.named_parameters()}


def test_same_input_twice_is_bitwise_reproducible_in_train_mode(built):
    spec, model = built
    x = torch.randn(2, spec.in_channels, spec.default_side, spec.default_side)
    out1, dx1, grads1 = _run(model.train(), x, seed=11)
    out2, dx2, grads2 = _run(model, x, seed=11)
    torch.testing.assert_close(out2, out1, rtol=0, atol=0)  # same ops, same order, same dropout masks
    torch.testing.assert_close(dx2, dx1, rtol=0, atol=0)
    for name in grads1:
        torch.testing.assert_close(grads2[name], grads1[name], rtol=0, atol=0, msg=name)


def test_state_dict_round_trip_with_weights_only_load(built):
    spec, model = built
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    buffer.seek(0)
    torch.manual_seed(99)
    clone = spec.builder()
    clone.load_state_dict(torch.load(buffer, weights_only=True))
    x = torch.randn(2, spec.in_channels, spec.default_side, spec.default_side)
    assert_equivalent(model.eval(), clone.eval(), x)


@pytest.mark.parametrize("layer", ["conv1", "conv3", "fc7"])
def test_locator_names_the_layer_where_a_planted_perturbation_is(layer):
    model = AlexNet(num_classes=10).eval()
    library = port.alexnet_to_torchvision(model)
    with torch.no_grad():
        getattr(model, layer).bias.add_(1e-3)  # every unit: one unit alone may sit under a ReLU's zero
    with pytest.raises(
        AssertionError,
        match=rf"first diverging layer: '{layer}' \(counterpart '{SPECS['alexnet'].counterpart.layers[layer]}'\)",
    ):
        assert_equivalent(model, library, torch.randn(2, 3, 224, 224), layers=SPECS["alexnet"].counterpart.layers)
