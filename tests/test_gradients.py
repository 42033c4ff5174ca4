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
    for check in case.gradcheck
]


@pytest.mark.parametrize(("case", "check"), GRADCHECKS)
def test_gradcheck_and_gradgradcheck(case, check):
    torch.manual_seed(0)
    layer = case.build(**check.options).double()
    if case.gradcheck_reinit:
        for param in layer.parameters():
            torch.nn.init.uniform_(param, -0.5, 0.5)
    x = torch.randn(check.shape, dtype=torch.float64, requires_grad=True)
    names = [name for name, _ in layer.named_parameters()]

    def function(x, *params):
        return torch.func.functional_call(layer, dict(zip(names, params, strict=True)), (x,))

    inputs = (x, *layer.parameters())
    assert gradcheck(function, inputs)
    assert gradgradcheck(function, inputs)


@pytest.mark.parametrize("case", case_params(MODELS))
def test_every_trainable_parameter_and_the_input_get_a_finite_nonzero_gradient(modules, case):
    step = modules.train_step(case)
    for name, grad in [*step.grads.items(), ("input", step.input_grad)]:
        assert grad is not None, name
        # One pass each: min and max propagate NaN, so both finite means every element is finite.
        low, high = (value.item() for value in grad.aminmax())
        assert math.isfinite(low), f"{name}: gradient in [{low}, {high}]"
        assert math.isfinite(high), f"{name}: gradient in [{low}, {high}]"
        assert (low, high) != (0.0, 0.0), f"{name}: gradient is zero everywhere"
