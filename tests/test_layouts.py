"""Dtypes and memory layouts: every layout gives the contiguous result; bf16 autocast stays close.

The channels_last and bf16 tests run on CPU and, marked ``cuda``, on a GPU: one body, so what CI runs
on CPU is what a GPU run checks.
"""

from __future__ import annotations

import pytest
import torch

from reference.specs import SPECS
from reference.testing import assert_close, capture_outputs, uninitialised
from tests.conftest import DEVICES

ALL = list(SPECS.values())
IDS = [spec.name for spec in ALL]
BF16_EPS = 2.0**-7


def _input(spec, width_factor=1, device="cpu"):
    """One sample: a layout is a property of the whole tensor, and AlexNet-sized batches cost time."""
    side = spec.default_side
    x = torch.randn(1, spec.in_channels, side, side * width_factor, generator=torch.Generator().manual_seed(1))
    return x.to(device)


@pytest.mark.parametrize("spec", ALL, ids=IDS)
def test_non_contiguous_input_gives_the_contiguous_result_exactly(built_models, spec):
    model = built_models.get(spec)
    strided = _input(spec, width_factor=2)[..., ::2]  # every other column: a strided view
    transposed = strided.contiguous().transpose(2, 3).contiguous().transpose(2, 3)  # same values, W-major strides
    assert not strided.is_contiguous()
    assert not transposed.is_contiguous()
    with torch.no_grad():
        expected = model(strided.contiguous())
        # The first convolution copies such an input into the contiguous layout before its kernel runs:
        # the same kernel on the same values, so the same bits.
        assert_close(model(strided), expected, exact=True, what="strided input")
        assert_close(model(transposed), expected, exact=True, what="transposed-strides input")


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("spec", ALL, ids=IDS)
def test_channels_last_input_and_model_give_the_contiguous_result(built_models, spec, device):
    x = _input(spec, device=device)
    model = built_models.on(spec, device)
    with torch.no_grad():
        expected = model(x)
        from_input = model(x.to(memory_format=torch.channels_last))
        channels_last = uninitialised(spec.builder, device=device)
        channels_last.load_state_dict(model.state_dict())
        channels_last = channels_last.eval().to(memory_format=torch.channels_last)
        from_model = channels_last(x.to(memory_format=torch.channels_last))
    # NHWC runs other convolution kernels (measured on CPU: up to 3e-6 at float32 logits of size ~3): the
    # same terms in another order, so the float32 table bound, not bitwise. TF32 is off (tests/conftest.py).
    assert_close(from_input, expected, what="channels_last input")
    assert_close(from_model, expected, what="channels_last model and input")


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("spec", ALL, ids=IDS)
def test_bfloat16_autocast_stays_within_a_few_roundings_of_float32(built_models, spec, device):
    model = built_models.on(spec, device, prepared=True)
    x = _input(spec, device=device)
    first_conv = next(name for name, module in model.named_modules() if isinstance(module, torch.nn.Conv2d))
    with torch.no_grad():
        expected = model(x)
        with torch.autocast(device, dtype=torch.bfloat16), capture_outputs(model, [first_conv]) as seen:
            out = model(x)
    assert seen[first_conv].dtype == torch.bfloat16  # autocast really ran the convolutions in bf16
    # Autocast rounds each convolution's and linear layer's inputs to bf16 (relative error <= eps/2 each)
    # and accumulates in float32 (oneDNN and cuDNN alike); measured on CPU ~3.5e-3 (about eps/2) relative
    # to the output's norm. Bound: 4 eps.
    error = (out.float() - expected).norm() / expected.norm()
    assert error <= 4 * BF16_EPS, f"{spec.name}: bf16 autocast is {error:.3g} from float32 (relative norm)"
    assert error > 0  # ...and it is not float32 in disguise
