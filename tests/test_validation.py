"""Bad input is rejected where it enters, naming the model, what it accepts and what it got."""

from __future__ import annotations

import pytest
import torch

from reference import LocalResponseNorm
from reference.specs import SPECS

ALL = list(SPECS.values())


@pytest.fixture(params=ALL, ids=lambda spec: spec.name)
def spec_and_model(request, built_models):
    return request.param, built_models.get(request.param)


def _valid(spec, batch=1, **changes):
    shape = dict(n=batch, c=spec.in_channels, h=spec.default_side, w=spec.default_side) | changes
    return torch.randn(shape["n"], shape["c"], shape["h"], shape["w"])


def _bad_inputs(spec):
    low, high = spec.valid_sides.low, spec.valid_sides.high
    cases = {
        "3-D": (ValueError, _valid(spec)[0], r"got shape \(\d+, \d+, \d+\).*3-D"),
        "5-D": (ValueError, _valid(spec)[None], r"5-D"),
        "int64": (TypeError, _valid(spec).long(), r"dtype torch\.int64 \(not floating point\)"),
        "bool": (TypeError, _valid(spec) > 0, r"dtype torch\.bool"),
        "complex": (TypeError, _valid(spec).to(torch.complex64), r"dtype torch\.complex64"),
        "channels": (ValueError, _valid(spec, c=spec.in_channels + 1), rf"\({spec.in_channels + 1} channels\)"),
        "H too small": (ValueError, _valid(spec, h=low - 1), rf"H x W = {low - 1} x"),
        "W too small": (ValueError, _valid(spec, w=low - 1), rf"x {low - 1}\)"),
    }
    if high is not None:
        cases["H too large"] = (ValueError, _valid(spec, h=high + 1), rf"H x W = {high + 1} x")
    return cases


def test_every_bad_input_is_rejected_with_a_message_naming_model_accepted_and_got(spec_and_model):
    spec, model = spec_and_model
    accepted = rf"\(N, {spec.in_channels}, H, W\) with H and W in {spec.valid_sides}".replace(".", r"\.")
    for case, (error, x, got) in _bad_inputs(spec).items():
        with pytest.raises(error, match=rf"^{type(model).__name__} expects .*{accepted}.*{got}") as info:
            model(x)
        assert "got" in str(info.value), case


def test_non_tensor_is_a_type_error(spec_and_model):
    _spec, model = spec_and_model
    with pytest.raises(TypeError, match=rf"{type(model).__name__} expects .*; got list"):
        model([[0.0]])


def test_empty_batch_gives_an_empty_output(spec_and_model):
    spec, model = spec_and_model
    with torch.no_grad():
        out = model(_valid(spec, batch=0))
    assert out.shape == (0, spec.architecture.num_classes)


def test_bounds_are_inclusive(spec_and_model):
    spec, model = spec_and_model
    sides = [spec.valid_sides.low] + ([spec.valid_sides.high] if spec.valid_sides.high else [])
    with torch.no_grad():
        for side in sides:
            assert model(_valid(spec, h=side, w=sides[-1])).shape == (1, spec.architecture.num_classes)


def test_alexnet2012_rejects_sizes_whose_flattened_length_happens_to_fit(built_models):
    """pool5 at 4x9 has 36 positions like 6x6: flatten + fc6 alone would accept 163x323 silently."""
    spec = SPECS["alexnet2012"]
    model = built_models.get(spec)
    with pytest.raises(ValueError, match="flatten expects 256x6x6, got 256x4x9"):
        spec.shapes(163, 323)
    x = torch.randn(1, 3, 163, 323)
    with torch.no_grad():
        assert model._forward_impl(x).shape == (1, 1000)  # the raw layers take it...
    with pytest.raises(ValueError, match=r"H x W = 163 x 323"):
        model(x)  # ...the model does not


@pytest.mark.parametrize("dtype", [torch.float64, torch.float16, torch.bfloat16])
def test_an_input_of_another_floating_dtype_is_a_type_error(spec_and_model, dtype):
    spec, model = spec_and_model
    with pytest.raises(
        TypeError, match=rf"^{type(model).__name__} expects a 4-D .* of dtype torch\.float32.*dtype {dtype}$"
    ):
        model(_valid(spec).to(dtype))


def test_a_float64_model_rejects_a_float32_input(built_models):
    spec = SPECS["lenet5"]
    model = built_models.get(spec, dtype=torch.float64)
    with pytest.raises(TypeError, match=r"^LeNet5 expects a 4-D .* of dtype torch\.float64.*dtype torch\.float32$"):
        model(_valid(spec))
    assert model(_valid(spec).double()).dtype == torch.float64


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_under_autocast_an_input_it_casts_is_accepted_and_float64_is_not(spec_and_model, dtype):
    """Autocast casts float32/16 and bfloat16 tensors alike for the convolutions and leaves float64 alone,
    so a float64 input would meet bf16 weights inside the first convolution: rejected where it enters."""
    spec, model = spec_and_model
    with torch.autocast("cpu", dtype=torch.bfloat16), torch.no_grad():
        assert model(_valid(spec).to(dtype)).shape == (1, spec.architecture.num_classes)
        with pytest.raises(TypeError, match=r"dtype torch\.float64$"):
            model(_valid(spec).double())


def test_an_input_on_another_device_is_a_value_error(spec_and_model):
    spec, model = spec_and_model
    x = _valid(spec).to("meta")  # another device that every machine has
    with pytest.raises(ValueError, match=rf"^{type(model).__name__} expects a 4-D .*, on cpu where.*, on meta$"):
        model(x)


@pytest.mark.parametrize(
    ("x", "error", "got"),
    [
        (torch.rand(4, 5, 5), ValueError, r"got shape \(4, 5, 5\), dtype torch\.float32 \(3-D\)"),
        (torch.rand(1, 4, 2, 2, 2), ValueError, r"got shape \(1, 4, 2, 2, 2\), dtype torch\.float32 \(5-D\)"),
        (
            torch.ones(1, 4, 5, 5, dtype=torch.int64),
            TypeError,
            r"got shape \(1, 4, 5, 5\), dtype torch\.int64 \(not floating point\)",
        ),
        (torch.rand(1, 5, 5, 5), ValueError, r"got shape \(1, 5, 5, 5\), dtype torch\.float32 \(5 channels\)"),
        ([[1.0]], TypeError, r"got list"),
    ],
    ids=["3-D", "5-D", "int64", "channels", "list"],
)
def test_local_response_norm_rejects_bad_input_naming_layer_accepted_and_got(x, error, got):
    layer = LocalResponseNorm(size=5, groups=2)
    accepted = r"a 4-D floating-point tensor \(N, C, H, W\) with C a multiple of groups=2"
    with pytest.raises(error, match=rf"^LocalResponseNorm expects {accepted}; {got}"):
        layer(x)


@pytest.mark.parametrize(("size", "groups"), [(0, 1), (5, 0)])
def test_local_response_norm_rejects_a_window_or_group_count_below_one(size, groups):
    with pytest.raises(ValueError, match=rf"needs size >= 1 and groups >= 1, got size={size}, groups={groups}"):
        LocalResponseNorm(size=size, groups=groups)
