"""The harness judges itself: perturbations of known size planted in one of two otherwise equal models are caught or
passed exactly as the tolerance table says; a gradient missing on either side, a wrong shape and a wrong layer
map are reported, never skipped."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from reference.verify.compare import (
    NEEDED_FRACTION,
    TOLERANCES,
    Override,
    Tolerance,
    assert_close,
    compare_models,
    grad_tolerance,
    tolerance,
)
from reference.verify.pairs import grads_to_reference
from tests.helpers import PAIRS

PERTURBATIONS = {  # relative size of the planted change
    "1 ulp": lambda dtype: torch.finfo(dtype).eps,
    "100 ulps": lambda dtype: 100 * torch.finfo(dtype).eps,
    "1e-6 relative": lambda _: 1e-6,
    "a tenth of the table's rtol": lambda dtype: TOLERANCES[dtype]["rtol"] / 10,
    "10x the table's rtol": lambda dtype: TOLERANCES[dtype]["rtol"] * 10,
}
TABLE_DTYPES = [torch.float64, torch.float32, torch.bfloat16, torch.float16]


class _Tiny(nn.Module):
    """Two layers and a ReLU: small enough to perturb by hand, named like a table."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1, self.relu, self.fc2 = nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.relu(self.fc1(x)))


def _pair(dtype: torch.dtype = torch.float64) -> tuple[nn.Module, nn.Module, torch.Tensor]:
    torch.manual_seed(0)
    a = _Tiny().to(dtype)
    return a, copy.deepcopy(a), torch.randn(4, 6, dtype=dtype)


@pytest.mark.parametrize("dtype", TABLE_DTYPES, ids=str)
@pytest.mark.parametrize("size", list(PERTURBATIONS))
def test_planted_change(dtype, size):
    """A planted relative change is judged exactly by the table. At magnitudes 1..2 the verdict is the table's formula |a - b| <= atol + rtol |b|, elementwise (each planted
    size lands on the side of it that the formula says), and exact comparison refuses any change."""
    expected = torch.linspace(1.0, 2.0, 64, dtype=torch.float64).to(dtype)
    relative = PERTURBATIONS[size](dtype)
    actual = (expected.double() * (1 + relative)).to(dtype)
    if torch.equal(actual, expected):  # below the dtype's resolution: nothing was planted
        pytest.skip(f"{size} is below {dtype}'s resolution at 1..2")
    tol = tolerance(dtype)
    within = ((actual.double() - expected.double()).abs() <= tol["atol"] + tol["rtol"] * expected.double().abs()).all()
    with pytest.raises(AssertionError):
        assert_close(actual, expected, exact=True)
    if within:
        assert_close(actual, expected)
    else:
        with pytest.raises(AssertionError):
            assert_close(actual, expected)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=str)
@pytest.mark.parametrize("magnitude", [1.0, 1e4, 1e10, -1e4], ids=["1", "1e4", "1e10", "-1e4 (negatives)"])
def test_scaled_atol(dtype, magnitude):
    """atol follows the largest |value| above one, and a cancelled value is judged by it. A value that cancelled to
    ~0 among values as large as ``magnitude``: an error of a tenth of the table's atol times the magnitude passes (a
    reordered sum's rounding follows the size of its terms), ten times it fails, and below a magnitude of 1 the
    table's atol is absolute. A negative magnitude: values from -|magnitude| to 0, so that a scale taken from the
    largest value rather than the largest |value| would not scale at all."""
    high = 1.0 if magnitude > 0 else 0.0
    expected = torch.linspace(-1.0, high, 65, dtype=torch.float64).mul(abs(magnitude)).to(dtype)
    zero = int(expected.abs().argmin())  # the value that cancelled: 0 exactly
    magnitude = abs(magnitude)
    atol = tolerance(dtype)["atol"]
    for error, passes in ((atol * magnitude / 10, True), (atol * magnitude * 10, False)):
        actual = expected.clone()
        actual[zero] = error
        if passes:
            assert_close(actual, expected)
            assert compare_models(_Constant(actual), _Constant(expected), torch.zeros(1), **tolerance(dtype)).passed
        else:
            with pytest.raises(AssertionError, match=f"atol={atol:g}"):
                assert_close(actual, expected)
            assert not compare_models(_Constant(actual), _Constant(expected), torch.zeros(1), **tolerance(dtype)).passed
    small = expected / magnitude / 2  # largest |value| 1/2: the table's atol as it stands, not halved
    actual = small.clone()
    actual[zero] = 0.8 * atol
    assert_close(actual, small)
    actual[zero] = 2 * atol
    with pytest.raises(AssertionError):
        assert_close(actual, small)


class _Constant(nn.Module):
    def __init__(self, value: torch.Tensor) -> None:
        super().__init__()
        self.value = value

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.value + 0 * x.sum()


def test_one_ulp_located():
    """Equal models agree exactly, and a one-ulp weight is located."""
    a, b, x = _pair()
    result = compare_models(a, b, x, layers={"fc1": "fc1", "fc2": "fc2"}, grads=True, grads_to_a=dict)
    assert result.passed
    assert result.forward_max == result.grad_max == 0.0
    with torch.no_grad():  # a bias: it reaches the output whatever the ReLU lets through
        b.fc2.bias[0] = torch.nextafter(b.fc2.bias[0], torch.tensor(2.0, dtype=torch.float64))
    result = compare_models(a, b, x, layers={"fc1": "fc1", "fc2": "fc2"}, grads=True, grads_to_a=dict)
    assert not result.passed
    assert result.first_divergence().layer == "fc2"  # fc1 agrees bitwise: the change is in fc2
    assert result.grad_failures == []  # no gradient depends on fc2's bias
    assert compare_models(a, b, x, **tolerance(torch.float64), grads=True, grads_to_a=dict).passed  # 1 ulp: within


@pytest.mark.parametrize("side", ["reference", "counterpart"])
def test_missing_gradient(side):
    """A gradient missing on either side is a failure, not a skip."""
    a, b, x = _pair()
    (a if side == "reference" else b).fc1.bias.requires_grad_(False)
    result = compare_models(a, b, x, grads=True, grads_to_a=dict)
    assert result.grad_failures == [f"fc1.bias: gradient missing on {side} side"]
    assert not result.passed


def test_wrong_shape():
    """A wrong output shape fails even where the values would broadcast."""
    a, b, x = _pair()
    b.fc2 = nn.Linear(8, 1).double()  # (4, 1) broadcasts against (4, 3)
    result = compare_models(a, b, x, rtol=1e9, atol=1e9)  # a tolerance that passes any value
    assert not result.forward_close
    assert result.forward_max == float("inf")


def test_swapped_layer_map():
    """A swapped entry of a layer map is reported, not passed."""
    a, b, x = _pair()
    b.fc1 = nn.Linear(6, 8).double()  # fc1 differs; fc2's weights are equal
    swapped = compare_models(a, b, x, layers={"fc1": "fc2", "fc2": "fc1"})
    assert swapped.first_divergence().layer == "fc1"  # shapes (4, 8) vs (4, 3): a map error is a divergence
    assert swapped.first_divergence().max_abs_diff == float("inf")


# The light pairs (LeNet-5's and the layers'): the entries' needs show there already, at a fraction of a second.
LIGHT_PAIRS = [(case, pair) for case, pair in PAIRS if not case.is_model or case.trainable_params < 1_000_000]


@pytest.mark.parametrize("dtype", list(NEEDED_FRACTION), ids=str)
def test_tolerance_needed(modules, dtype):
    """Each table entry is needed by a pair that uses it: shrunk to NEEDED_FRACTION of itself, it fails at least
    one of the light pairs at its default input, so a loosened entry fails here. That the entry is enough is every
    pair's own test."""
    fraction = NEEDED_FRACTION[dtype]
    for case, pair in LIGHT_PAIRS:
        if pair.tolerance.exact:
            continue
        reference = modules.reference(case, dtype=dtype)
        other = modules.counterpart(case, pair, dtype=dtype)
        shrunk = {key: value * fraction for key, value in pair.tolerance.keywords(dtype).items()}
        x = case.input_space.sample(dtype=dtype)
        result = compare_models(reference, other, x, layers=pair.layers, grads=True,
                                grads_to_a=grads_to_reference(pair, reference, other), **shrunk)  # fmt: skip
        if not result.passed:
            return  # one pair needs the entry: enough
    pytest.fail(f"every light pair passes at {fraction} of the {dtype} entry {TOLERANCES[dtype]}: it is too loose")


OVERRIDES = [
    pytest.param(pair, override, id=f"{case.name} vs {pair.name}-{override.where}-{override.dtype}")
    for case, pair in PAIRS
    for override in pair.tolerance.overrides
]


@pytest.mark.parametrize(("pair", "override"), OVERRIDES)
def test_override_loosens(pair, override):
    """A pair's own bound (at drawn inputs, on CUDA) names compare_models' keywords and only widens the table's, for
    a stated reason: a misspelt keyword would be ignored, and a bound under the table's would be no exception but a
    silent tightening."""
    # What it widens: the pair's own bound at the default input (exact where exact); on CUDA, the table's.
    dtype = override.dtype
    table = pair.tolerance.keywords(dtype) if override.where == "drawn" else tolerance(dtype) | grad_tolerance(dtype)
    assert override.bounds.keys() <= table.keys(), f"{dtype}: {sorted(override.bounds.keys() - table.keys())}"
    looser = [key for key, value in override.bounds.items() if value > table[key]]
    assert looser, f"{dtype}: {dict(override.bounds)} widens nothing of {table}"
    assert override.why


def test_tolerance_record():
    """A Tolerance resolves in one place: exact is exact on the CPU, the table on CUDA; a pair that is not exact
    says why; an override applies only where and in the dtype it names."""
    exact, table = Tolerance(), Tolerance("table", "table", why="reordered")
    assert exact.keywords(torch.float32) == {"rtol": 0.0, "atol": 0.0, "grad_rtol": 0.0, "grad_atol": 0.0}
    assert exact.keywords(torch.float32, device="cuda") == tolerance(torch.float32) | grad_tolerance(torch.float32)
    assert table.keywords(torch.float64) == tolerance(torch.float64) | grad_tolerance(torch.float64)
    widened = Tolerance(overrides=(Override("drawn", torch.float32, {"grad_atol": 1e-3}, why="drawn sums"),))
    assert widened.keywords(torch.float32, drawn=True)["grad_atol"] == 1e-3
    assert widened.keywords(torch.float32)["grad_atol"] == 0.0
    assert widened.keywords(torch.float64, drawn=True)["grad_atol"] == 0.0
    with pytest.raises(ValueError, match="says why"):
        Tolerance("table")
    with pytest.raises(ValueError, match="'exact' or 'table'"):
        Tolerance("close")
