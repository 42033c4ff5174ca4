"""Bad input is rejected where it enters, naming the module, what it accepts and what it got."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from reference.models.tables import Architecture, InvalidInputSize
from reference.verify.build import seeded
from tests.helpers import BUILD_SEED, CASES, DEVICES, MODELS, case_params
from tests.strategies import invalid_inputs


def _valid(case, batch=1, **changes):
    """A valid input at the smallest valid side, with ``changes`` to its n, c, h or w."""
    side = case.valid_sides.low
    shape = dict(n=batch, c=case.in_channels, h=side, w=side) | changes
    return torch.randn(shape["n"], shape["c"], shape["h"], shape["w"])


def _bad_inputs(case):
    low, high = case.valid_sides.low, case.valid_sides.high
    cases = {
        "3-D": (ValueError, _valid(case)[0], r"got shape \(\d+, \d+, \d+\).*3-D"),
        "5-D": (ValueError, _valid(case)[None], r"5-D"),
        "int64": (TypeError, _valid(case).long(), r"dtype torch\.int64 \(not floating point\)"),
        "bool": (TypeError, _valid(case) > 0, r"dtype torch\.bool"),
        "complex": (TypeError, _valid(case).to(torch.complex64), r"dtype torch\.complex64"),
        "channels": (ValueError, _valid(case, c=case.in_channels + 1), rf"\({case.in_channels + 1} channels\)"),
        "H too small": (ValueError, _valid(case, h=low - 1), rf"H x W = {low - 1} x"),
        "W too small": (ValueError, _valid(case, w=low - 1), rf"x {low - 1}\)"),
    }
    if high is not None:
        cases["H too large"] = (ValueError, _valid(case, h=high + 1), rf"H x W = {high + 1} x")
    return cases


def _accepted(case) -> str:
    return rf"\(N, {case.in_channels}, H, W\) with H and W in {case.valid_sides}".replace(".", r"\.")


@pytest.mark.cost
@pytest.mark.parametrize("case", case_params(MODELS))
def test_bad_input(modules, case):
    """Every bad input is rejected with a message naming the model, what it accepts and what it got."""
    model = modules.reference(case)
    for name, (error, x, got) in _bad_inputs(case).items():
        with pytest.raises(error, match=rf"^{type(model).__name__} expects .*{_accepted(case)}.*{got}") as info:
            model(x)
        assert "got" in str(info.value), name


# torch.jit.trace leaves the module it traced in a reference cycle (trace_module's register_submods closure), alive
# until a full collection: an AlexNet's weights outlived its case and raised the default run's peak by 0.5 GB.
@pytest.mark.filterwarnings("ignore:`torch.jit.trace(_method)?` is deprecated:FutureWarning")
@pytest.mark.cost(seconds=0.2)
@pytest.mark.parametrize("case", case_params(MODELS))
def test_bad_input_jit_trace(modules, case):
    """jit.trace meets the errors eager mode raises: it records sizes as tensors; the checks read its example's
    concrete sizes."""
    _a_tracer_meets_the_errors_eager_mode_raises(modules.reference(case), case, torch.jit.trace)


# Non-strict export fakes the model's every tensor: an AlexNet's export raised a run's peak RSS from 2.9 to 3.8 GB.
@pytest.mark.cost(seconds=0.3, memory=2)
@pytest.mark.parametrize("case", case_params(MODELS))
def test_bad_input_export(modules, case):
    """Export meets the errors eager mode raises: non-strict export runs the checks on fake tensors with concrete
    sizes."""

    def export(model, x):
        return torch.export.export(model, (x,), strict=False)

    _a_tracer_meets_the_errors_eager_mode_raises(modules.reference(case), case, export)


def _a_tracer_meets_the_errors_eager_mode_raises(model, case, trace) -> None:
    for name in ("channels", "H too small"):
        error, x, got = _bad_inputs(case)[name]
        with pytest.raises(error, match=rf"^{type(model).__name__} expects .*{_accepted(case)}.*{got}"):
            trace(model, x)


@pytest.mark.cost
@pytest.mark.parametrize("case", case_params(MODELS))
@given(data=st.data())
def test_drawn_bad_input(modules, case, data):
    """Drawn invalid inputs are rejected, naming the model, what it accepts and what it got."""
    model = modules.reference(case)
    x, error, fragment = data.draw(invalid_inputs(case))
    with pytest.raises(error) as info:
        model(x)
    message = str(info.value)
    assert message.startswith(
        f"{type(model).__name__} expects a 4-D floating-point tensor (N, {case.in_channels}, H, W)"
    )
    assert f"H and W in {case.valid_sides}" in message
    assert f"got shape {tuple(x.shape)}" in message
    assert fragment in message


@pytest.mark.cost
@pytest.mark.parametrize("case", case_params(MODELS))
def test_non_tensor(modules, case):
    """A non-tensor is a TypeError."""
    model = modules.reference(case)
    with pytest.raises(TypeError, match=rf"{type(model).__name__} expects .*; got list"):
        model([[0.0]])


@pytest.mark.cost
@pytest.mark.parametrize("case", case_params(MODELS))
def test_empty_batch(modules, case):
    """An empty batch gives an empty output."""
    x = _valid(case, batch=0)
    with torch.no_grad():
        out = modules.reference(case)(x)
    assert out.shape == (0, *case.output_shape(*x.shape[2:]))


@pytest.mark.cost(forwards=lambda case: 2 * (case.valid_sides.high or case.valid_sides.low) / case.valid_sides.low)
@pytest.mark.parametrize("case", case_params(MODELS))
def test_bounds_inclusive(modules, case):
    """The valid range's bounds are inclusive."""
    model = modules.reference(case)
    sides = [case.valid_sides.low] + ([case.valid_sides.high] if case.valid_sides.high else [])
    with torch.no_grad():
        for side in sides:
            assert model(_valid(case, h=side, w=sides[-1])).shape == (1, *case.output_shape(side, sides[-1]))


def _flatten_fits_but_table_does_not(case) -> tuple[int, int] | None:
    """An input size outside the valid range whose last map before ``flatten`` has as many values as the
    expected one (4x9 for 6x6), so that flatten and the first FC layer alone would run it; None if none. Height and
    width pass through the layers apart: each is mapped once, then paired."""
    table = case.architecture
    names = list(table.layers)
    if "flatten" not in names:
        return None
    before = Architecture(layers={n: table.layers[n] for n in names[: names.index("flatten")]},
                          in_channels=table.in_channels, default_side=table.default_side)  # fmt: skip
    last, expected = names[names.index("flatten") - 1], table.layers["flatten"].expected
    low, high = case.valid_sides.low, case.valid_sides.high

    def mapped(sides: range, axis: int) -> dict[int, int]:
        out = {}
        for side in sides:
            try:
                out[side] = before.shapes(*((side, low) if axis == 0 else (low, side)))[last][1 + axis]
            except InvalidInputSize:
                continue
        return out

    heights = mapped(range(max(1, low - 70), low), 0)
    widths = mapped(range(high + 1, high + 80), 1) if high is not None else {}
    for height, h in heights.items():
        for width, w in widths.items():
            shape = (expected[0], h, w)
            if shape != expected and math.prod(shape) == math.prod(expected):
                return height, width
    return None


@pytest.mark.cost(forwards=2)
@pytest.mark.parametrize("case", case_params(MODELS, lambda case: _flatten_fits_but_table_does_not(case) is not None))
def test_flatten_fits_rejected(modules, case):
    """Sizes whose flattened length happens to fit are rejected: e.g. AlexNet 2012 at 163x323, where pool5 is 4x9,
    36 positions like 6x6."""
    model = modules.reference(case)
    height, width = _flatten_fits_but_table_does_not(case)
    with pytest.raises(InvalidInputSize, match=r"^flatten expects"):
        case.shapes(height, width)  # the table says why...
    x = torch.randn(1, case.in_channels, height, width)
    with torch.no_grad():
        assert model._forward_impl(x).shape == (1, case.architecture.num_classes)  # ...the raw layers take it...
    with pytest.raises(ValueError, match=rf"H x W = {height} x {width}"):
        model(x)  # ...the model does not


@pytest.mark.cost
@pytest.mark.parametrize("input_dtype", [torch.float64, torch.float16, torch.bfloat16], ids=str)
@pytest.mark.parametrize("case", case_params(MODELS))
def test_other_dtype(modules, case, input_dtype):
    """An input of another floating dtype is a TypeError."""
    model = modules.reference(case)
    with pytest.raises(
        TypeError, match=rf"^{type(model).__name__} expects a 4-D .* of dtype torch\.float32.*dtype {input_dtype}$"
    ):
        model(_valid(case).to(input_dtype))


@pytest.mark.cost
@pytest.mark.parametrize("dtype", [torch.float64], ids=str)
@pytest.mark.parametrize("case", case_params(MODELS))
def test_float64_model_float32_input(modules, case, dtype):
    """A float64 model rejects a float32 input."""
    model = modules.reference(case, dtype=dtype)
    low = case.valid_sides.low
    with pytest.raises(
        TypeError, match=rf"^{type(model).__name__} expects a 4-D .* of dtype {dtype}.*dtype torch\.float32$"
    ):
        model(_valid(case, h=low, w=low))


@pytest.mark.cost(forwards=2)
@pytest.mark.parametrize("input_dtype", [torch.float16, torch.bfloat16], ids=str)
@pytest.mark.parametrize("case", case_params(MODELS))
def test_autocast_input(modules, case, input_dtype):
    """Under autocast an input it casts is accepted and float64 is not. Autocast casts float32/16 and bfloat16 tensors alike for the convolutions and leaves float64 alone,
    so a float64 input would meet bf16 weights inside the first convolution: rejected where it enters."""
    model = modules.reference(case)
    with torch.autocast("cpu", dtype=torch.bfloat16), torch.no_grad():
        assert model(_valid(case).to(input_dtype)).shape == (
            1,
            *case.output_shape(case.valid_sides.low, case.valid_sides.low),
        )
        with pytest.raises(TypeError, match=r"dtype torch\.float64$"):
            model(_valid(case).double())


@pytest.mark.cost
@pytest.mark.parametrize("case", case_params(MODELS))
def test_other_device(modules, case):
    """An input on another device is a ValueError."""
    model = modules.reference(case)
    x = _valid(case).to("meta")  # another device that every machine has
    with pytest.raises(ValueError, match=rf"^{type(model).__name__} expects a 4-D .*, on cpu where.*, on meta$"):
        model(x)


def _is_input(example) -> bool:
    return example.shape is not None or example.value is not None


def _is_option(example) -> bool:
    return not _is_input(example)


def _errors(case, where) -> list:
    return [example for example in case.input_space.examples if example.error and where(example)]


@pytest.mark.cost(builds=1)
@pytest.mark.parametrize("case", case_params(list(CASES.values()), lambda case: _errors(case, _is_input)))
def test_error_inputs(case):
    """A layer's error inputs are rejected where they enter, naming the layer, what it accepts and what it got."""
    layer = case.build()
    for example in _errors(case, _is_input):
        x = example.value() if example.value else case.input_space.sample(example.shape)
        error, message = example.error
        with pytest.raises(error, match=message):
            layer(x)


@pytest.mark.cost  # rejected before anything is built
@pytest.mark.parametrize("case", case_params(list(CASES.values()), lambda case: _errors(case, _is_option)))
def test_error_options(case):
    """Bad constructor options are rejected, naming the module."""
    for example in _errors(case, _is_option):
        error, message = example.error
        with pytest.raises(error, match=message):
            case.build(**example.options)


F32, F64, BF16, F16 = torch.float32, torch.float64, torch.bfloat16, torch.float16
INPUT_DTYPES = (F32, F64, BF16, F16)
# The dtype rule as a table, cell by cell: (the parameters' dtype, autocast on for the input's device) -> whether
# each of INPUT_DTYPES is accepted. Without autocast the input must have the parameters' dtype; under autocast,
# which casts float32, float16 and bfloat16 alike and leaves float64 alone, any of those three meets any of them.
ACCEPTS = {
    (F32, False): (True, False, False, False),
    (F64, False): (False, True, False, False),
    (BF16, False): (False, False, True, False),
    (F32, True): (True, False, True, True),
    (F64, True): (False, True, False, False),
    (BF16, True): (True, False, True, True),
}


@pytest.mark.cost(builds=1, forwards=24)
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("case", case_params(MODELS))
def test_dtype_table(case, device):
    """Every cell run: an accepted input gives an output, a refused one a TypeError naming both dtypes."""
    _dtype_table(case, device)


def test_dtype_rules():
    """The same on the smallest model, on the CPU: the rules are one function every model calls, kept by every run
    whatever the policy keeps of the per-model checks."""
    _dtype_table(min(MODELS, key=lambda case: case.trainable_params), "cpu")


def _dtype_table(case, device: str) -> None:
    built = seeded(case.build, BUILD_SEED).eval()
    for (param_dtype, autocast), accepted in ACCEPTS.items():
        model = built.to(device=device, dtype=param_dtype)  # in place: f32 -> f64 -> bf16 is what the rows ask
        for input_dtype, accepts in zip(INPUT_DTYPES, accepted, strict=True):
            x = _valid(case).to(device=device, dtype=input_dtype)
            cell = f"parameters {param_dtype}, input {input_dtype}, autocast {'on' if autocast else 'off'}"
            with torch.no_grad(), torch.autocast(device, dtype=BF16, enabled=autocast):
                if accepts:
                    assert model(x).shape == (1, *case.output_shape(case.valid_sides.low, case.valid_sides.low)), cell
                else:
                    with pytest.raises(TypeError, match=rf"of dtype {param_dtype} .*dtype {input_dtype}$"):
                        model(x)
