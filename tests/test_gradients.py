"""Gradient flow through every model; gradcheck and gradgradcheck for every hand-written layer."""

from __future__ import annotations

import math

import pytest
import torch
from torch.autograd import gradcheck, gradgradcheck

from tests.helpers import LAYERS, MODELS, case_params

GRADCHECKS = [
    pytest.param(case, check, id=f"{case.name}-{'x'.join(map(str, check.shape))}")
    for case in LAYERS
    for check in case.input_space.examples
    if check.gradcheck
]


@pytest.mark.cost(seconds=0.3)  # gradcheck's own finite differences on a few elements: 0.1-0.4 s
@pytest.mark.parametrize(("case", "check"), GRADCHECKS)
def test_gradcheck(case, check):
    """gradcheck and gradgradcheck (float64) at the layer's gradcheck examples, its parameters redrawn in
    U(-0.5, 0.5) for a well-conditioned check and then prepared as the case says."""
    torch.manual_seed(0)
    layer = case.build(**check.options).double()
    for param in layer.parameters():
        torch.nn.init.uniform_(param, -0.5, 0.5)
    case.prepared(layer)
    x = torch.randn(check.shape, dtype=torch.float64, requires_grad=True)
    names = [name for name, _ in layer.named_parameters()]

    def function(x, *params):
        return torch.func.functional_call(layer, dict(zip(names, params, strict=True)), (x,))

    inputs = (x, *layer.parameters())
    assert gradcheck(function, inputs)
    assert gradgradcheck(function, inputs)


@pytest.mark.cost(steps=1)
@pytest.mark.parametrize("case", case_params(MODELS))
def test_gradient_flow(modules, case):
    """Every trainable parameter and the input get a finite, nonzero gradient."""
    step = modules.train_step(case)
    for name, grad in [*step.grads.items(), ("input", step.input_grad)]:
        assert grad is not None, name
        # One pass each: min and max propagate NaN, so both finite means every element is finite.
        low, high = (value.item() for value in grad.aminmax())
        assert math.isfinite(low), f"{name}: gradient in [{low}, {high}]"
        assert math.isfinite(high), f"{name}: gradient in [{low}, {high}]"
        assert (low, high) != (0.0, 0.0), f"{name}: gradient is zero everywhere"
