"""Dtypes and memory layouts: every layout gives the contiguous result; bf16 autocast stays close.

The channels_last and bf16 tests run on CPU and, marked ``cuda``, on a GPU: one body, so what CI runs
on CPU is what a GPU run checks.
"""

from __future__ import annotations

import copy
import math

import pytest
import torch

from reference.verify.build import uninitialised
from reference.verify.compare import assert_close, capture_outputs
from tests.helpers import DEVICES, MODELS, case_params

BF16_EPS = 2.0**-7


def _input(case, width_factor=1, device="cpu"):
    """One sample at the smallest valid side, 2 at least (a 1x1 map is contiguous in every layout): a layout is a
    property of the whole tensor."""
    side = max(case.valid_sides.low, 2)
    return case.input_space.sample((1, case.in_channels, side, side * width_factor), seed=1).to(device)


def _on(modules, case, device):
    """The shared model on CPU; elsewhere a copy of it moved to ``device`` (this test's own)."""
    model = modules.reference(case)
    return model if device == "cpu" else copy.deepcopy(model).to(device)


@pytest.mark.cost(forwards=6)
@pytest.mark.parametrize("case", case_params(MODELS))
def test_non_contiguous(modules, case):
    """A strided or transposed input gives the contiguous input's result, bit for bit."""
    model = modules.reference(case)
    strided = _input(case, width_factor=2)[..., ::2]  # every other column: a strided view
    transposed = strided.contiguous().transpose(2, 3).contiguous().transpose(2, 3)  # same values, W-major strides
    assert not strided.is_contiguous()
    assert not transposed.is_contiguous()
    with torch.no_grad():
        expected = model(strided.contiguous())
        # The first convolution copies such an input into the contiguous layout before its kernel runs:
        # the same kernel on the same values, so the same bits.
        assert_close(model(strided), expected, exact=True, what="strided input")
        assert_close(model(transposed), expected, exact=True, what="transposed-strides input")


@pytest.mark.cost(forwards=3, builds=1)
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("case", case_params(MODELS))
def test_channels_last(modules, case, device):
    """A channels_last input, and a channels_last model, give the contiguous result (float32's table)."""
    x = _input(case, device=device)
    model = _on(modules, case, device)
    with torch.no_grad():
        expected = model(x)
        from_input = model(x.to(memory_format=torch.channels_last))
        channels_last = uninitialised(case.build, device=device)
        channels_last.load_state_dict(model.state_dict())
        channels_last = channels_last.eval().to(memory_format=torch.channels_last)
        from_model = channels_last(x.to(memory_format=torch.channels_last))
    # NHWC runs other convolution kernels (measured on CPU: up to 3e-6 at float32 logits of size ~3): the
    # same terms in another order, so the float32 table bound, not bitwise. TF32 is off (tests/conftest.py).
    assert_close(from_input, expected, what="channels_last input")
    assert_close(from_model, expected, what="channels_last model and input")


@pytest.mark.cost(forwards=4)
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("case", case_params(MODELS))
def test_bf16_autocast(modules, case, device):
    """bfloat16 autocast stays within a few roundings of float32, and is not float32 in disguise."""
    model = _on(modules, case, device)
    x = _input(case, device=device)
    first_conv = next(name for name, module in model.named_modules() if isinstance(module, torch.nn.Conv2d))
    with torch.no_grad():
        expected = model(x)
        with torch.autocast(device, dtype=torch.bfloat16), capture_outputs(model, [first_conv]) as seen:
            out = model(x)
    assert seen[first_conv].dtype == torch.bfloat16  # autocast really ran the convolutions in bf16
    # Autocast rounds each convolution's and linear layer's inputs to bf16 (relative error <= eps/2 each) and
    # accumulates in float32 (oneDNN and cuDNN alike). Independent roundings add in quadrature: the bound is eps/2
    # times the root of the rounded layers' count. Measured on CPU: 0.09-0.25 eps a root layer (AlexNet 0.42 eps
    # over 8 layers, VGG-E 1.1 over 19, ResNet-152 1.2 over 156, the CIFAR ResNet-1202 4.0 over 1202).
    rounded = sum(1 for module in model.modules() if isinstance(module, (torch.nn.Conv2d, torch.nn.Linear)))
    bound = BF16_EPS / 2 * math.sqrt(rounded)
    error = (out.float() - expected).norm() / expected.norm()
    assert error <= bound, f"{case.name}: bf16 autocast is {error:.3g} from float32 (relative norm; bound {bound:.3g})"
    assert error > 0  # ...and it is not float32 in disguise
