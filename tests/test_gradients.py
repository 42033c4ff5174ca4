"""Gradient flow through every model; gradcheck and gradgradcheck for every hand-written layer."""

from __future__ import annotations

import math

import pytest
import torch
from torch.autograd import gradcheck, gradgradcheck

from reference import bitmaps
from reference.layers import (
    AdaptiveAvgPool2d,
    EuclideanRBF,
    GaussianRBF,
    LocalResponseNorm,
    SparseConv2d,
    Squash,
    Subsampling,
)
from reference.lenet import C3_TABLE
from reference.specs import SPECS

ALL = list(SPECS.values())


LAYERS = {
    "LocalResponseNorm": (lambda: LocalResponseNorm(size=5, alpha=1e-2, beta=0.75, k=2.0), (2, 7, 3, 3)),
    "LocalResponseNorm-groups": (
        lambda: LocalResponseNorm(size=3, alpha=1e-2, beta=0.75, k=1.0, groups=2),
        (1, 8, 2, 3),
    ),
    "Subsampling": (lambda: Subsampling(channels=3), (2, 3, 4, 5)),
    # C3's table with 2x2 kernels: every connection is still there, at a sixth of 5x5's gradcheck cost.
    "SparseConv2d": (lambda: SparseConv2d(in_channels=6, table=C3_TABLE, kernel_size=2), (1, 6, 3, 3)),
    "Squash": (Squash, (2, 3, 4, 4)),
    "EuclideanRBF": (lambda: EuclideanRBF(bitmaps.prototypes()), (3, 84)),
    "GaussianRBF": (lambda: GaussianRBF(in_features=4, out_features=3), (2, 4)),
    "AdaptiveAvgPool2d": (lambda: AdaptiveAvgPool2d(output_size=3), (2, 2, 5, 7)),
    "AdaptiveAvgPool2d-identity": (lambda: AdaptiveAvgPool2d(output_size=3), (1, 2, 3, 3)),
}


@pytest.mark.parametrize("name", LAYERS)
def test_gradcheck_and_gradgradcheck(name):
    make, shape = LAYERS[name]
    torch.manual_seed(0)
    layer = make().double()
    if name != "GaussianRBF":  # its randn centres and unit widths are already well-conditioned
        for param in layer.parameters():
            torch.nn.init.uniform_(param, -0.5, 0.5)
    x = torch.randn(shape, dtype=torch.float64, requires_grad=True)
    params = tuple(p for p in layer.parameters())

    def function(x, *ps):
        return torch.func.functional_call(
            layer, dict(zip([n for n, _ in layer.named_parameters()], ps, strict=False)), (x,)
        )

    assert gradcheck(function, (x, *params))
    assert gradgradcheck(function, (x, *params))


@pytest.mark.parametrize("spec", ALL, ids=[spec.name for spec in ALL])
def test_every_trainable_parameter_and_the_input_get_a_finite_nonzero_gradient(spec, train_steps):
    step = train_steps.get(spec)
    for name, grad in [*step.grads.items(), ("input", step.input_grad)]:
        assert grad is not None, name
        # One pass each: min and max propagate NaN, so both finite means every element is finite.
        low, high = (value.item() for value in grad.aminmax())
        assert math.isfinite(low), f"{name}: gradient in [{low}, {high}]"
        assert math.isfinite(high), f"{name}: gradient in [{low}, {high}]"
        assert (low, high) != (0.0, 0.0), f"{name}: gradient is zero everywhere"


def test_lenet5_prototypes_are_fixed():
    model = SPECS["lenet5"].builder()
    assert "output.prototypes" in dict(model.named_buffers())
    assert not any("prototypes" in name for name, _ in model.named_parameters())
    before = model.output.prototypes.clone()
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    model(torch.randn(2, 1, 32, 32)).sum().backward()
    optimizer.step()
    assert torch.equal(model.output.prototypes, before)
