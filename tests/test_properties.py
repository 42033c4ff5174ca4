"""Properties over the whole input space each spec accepts, drawn by hypothesis."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from reference import LocalResponseNorm
from reference.architecture import SCAN_LIMIT
from reference.pairs import PAIRS, PerGroup
from reference.specs import SPECS
from reference.testing import (
    assert_close,
    assert_equivalent,
    capture_outputs,
    grad_tolerance,
    layer_modules,
    tolerance,
)
from tests.strategies import invalid_inputs, lrn_cases, valid_inputs

ALL = list(SPECS.values())
IDS = [spec.name for spec in ALL]
EPS64 = torch.finfo(torch.float64).eps


def _fewer(divisor: int):
    """The active profile's example count divided: AlexNet-sized examples cost ~0.1-0.5 s each."""
    return settings(max_examples=max(2, settings().max_examples // divisor))


@pytest.mark.parametrize("spec", ALL, ids=IDS)
@_fewer(3)
@given(data=st.data())
def test_output_and_every_layer_have_the_spec_shapes(built_models, spec, data):
    x = data.draw(valid_inputs(spec))
    model = built_models.get(spec, dtype=x.dtype)
    layers = {name: layer_modules(model, name) for name in spec.architecture.layers}
    with torch.no_grad(), capture_outputs(model, [n for names in layers.values() for n in names]) as seen:
        out = model(x)
    assert out.shape == (x.shape[0], spec.architecture.num_classes)
    expected = spec.shapes(x.shape[2], x.shape[3])
    for name, names in layers.items():
        if names:
            channels = sum(seen[n].shape[1] for n in names)
            assert (channels, *seen[names[0]].shape[2:]) == expected[name], name


@pytest.mark.parametrize("spec", ALL, ids=IDS)
@given(data=st.data())
def test_invalid_inputs_are_rejected_naming_model_accepted_and_got(built_models, spec, data):
    model = built_models.get(spec)
    x, error, fragment = data.draw(invalid_inputs(spec))
    with pytest.raises(error) as info:
        model(x)
    message = str(info.value)
    assert message.startswith(
        f"{type(model).__name__} expects a 4-D floating-point tensor (N, {spec.in_channels}, H, W)"
    )
    assert f"H and W in {spec.valid_sides}" in message
    assert f"got shape {tuple(x.shape)}" in message
    assert fragment in message


@pytest.mark.parametrize("spec", ALL, ids=IDS)
def test_valid_sides_are_exactly_the_sides_the_raw_layers_accept(built_models, spec):
    """Below the low bound (and above the high one) the layers themselves fail; inside, they run."""
    model, low, high = built_models.get(spec), spec.valid_sides.low, spec.valid_sides.high
    other = spec.default_side
    inside = [low, high if high is not None else SCAN_LIMIT + 7]
    outside = [low - 1] + ([high + 1] if high is not None else [])
    with torch.no_grad():
        for side in inside:
            assert model._forward_impl(torch.zeros(1, spec.in_channels, side, other)).shape[0] == 1, side
        for side in outside:
            with pytest.raises(RuntimeError):  # torch's own error deep inside a layer: why check_input exists
                model._forward_impl(torch.zeros(1, spec.in_channels, side, other))


SPEC_PAIRS = [pair for pair in PAIRS.values() if pair.spec is not None]


@pytest.fixture(scope="module")
def pair_models(built_models):
    """A spec pair's reference side and ported counterpart in a dtype, ported once per pair and dtype.

    Only the current pair's are kept (a pair's examples run one after another): three AlexNet-sized
    counterparts in two dtypes would hold ~5 GB for the rest of the module.
    """
    cache = {}

    def get(pair, dtype):
        if (pair.name, dtype) not in cache:
            for key in [key for key in cache if key[0] != pair.name]:
                del cache[key]
            reference = built_models.get(SPECS[pair.spec], dtype=dtype)
            cache[pair.name, dtype] = pair.models(dtype, reference=reference)[:2]
        return tuple(model.eval() for model in cache[pair.name, dtype])

    return get


@pytest.mark.parametrize("pair", SPEC_PAIRS, ids=[pair.name for pair in SPEC_PAIRS])
@_fewer(3)
@given(data=st.data())
def test_every_model_matches_its_counterpart_on_any_valid_input(pair_models, pair, data):
    """AlexNet vs torchvision (bitwise, forward and gradients, float32 and float64), AlexNet2012 vs its two
    towers, the seed AlexNet vs the seed's nn.Sequential, LeNet-5 vs torch layers: each at drawn sizes."""
    x = data.draw(valid_inputs(SPECS[pair.spec], max_batch=2))
    model, counterpart = pair_models(pair, x.dtype)
    assert_equivalent(
        model, counterpart, x, **tolerance(x.dtype, pair.exact_forward), layers=pair.layers, grads=True,
        grads_to_a=lambda grads: pair.grads_to_reference(counterpart, grads),
        **grad_tolerance(x.dtype, pair.exact_grads),
    )  # fmt: skip
    for side in (model, counterpart):
        side.zero_grad(set_to_none=True)  # AlexNet's float64 gradients are 0.5 GB a side


def _lrn_pair(size, groups, alpha, beta, k):
    paper = LocalResponseNorm(size=size, alpha=alpha, beta=beta, k=k, groups=groups)
    library = PerGroup(lambda: torch.nn.LocalResponseNorm(size=size, alpha=size * alpha, beta=beta, k=k), groups)
    return paper, library


@given(case=lrn_cases(max_groups=1))
def test_lrn_forward_is_bitwise_torch_lrn_on_any_shape(case):
    x, size, groups, alpha, beta, k = case
    # Forward: torch's operations in torch's order over the same layout, so the same bits. Backward: other
    # operations (autograd through slices here, avg_pool3d's backward there): the dtype's table bound.
    assert_equivalent(*_lrn_pair(size, groups, alpha, beta, k), x, grads=True, **grad_tolerance(x.dtype))


@given(case=lrn_cases(min_groups=2))
def test_grouped_lrn_is_within_two_ulps_of_torch_lrn_per_group(case):
    x, size, groups, alpha, beta, k = case
    # Not bitwise: torch's CPU pow runs a vectorised (SLEEF) body and a scalar tail, which round x**0.75 one
    # ulp apart on ~2% of float64 elements, so a result depends on where its element falls in the loop. The
    # grouped layer raises the whole (N, C, H, W) denominator to beta in one loop, PerGroup each group's
    # slice in its own. One ulp in the denominator plus the division's half ulp: rtol = 2 eps, atol = 0
    # (measured: at most 1.41 eps over 5,000 drawn cases). Backward: the table bound, as above.
    paper, library = _lrn_pair(size, groups, alpha, beta, k)
    assert_equivalent(paper, library, x, rtol=2 * EPS64, atol=0.0, grads=True, **grad_tolerance(x.dtype))


@pytest.mark.parametrize("spec", ALL, ids=IDS)
@_fewer(5)
@given(data=st.data())
def test_batch_independence_and_permutation(built_models, spec, data):
    x = data.draw(valid_inputs(spec, min_batch=2))
    model = built_models.get(spec, dtype=x.dtype)
    permutation = torch.tensor(data.draw(st.permutations(range(x.shape[0]))))
    with torch.no_grad():
        batch = model(x)
        alone = torch.cat([model(row[None]) for row in x])
        permuted = model(x[permutation])
    # Convolution kernels may block the batch differently at different batch sizes: the same terms summed
    # in another order, so the dtype's table bound (a sample mixed into another would be off by O(1)).
    assert_close(alone, batch, what="each sample alone vs in the batch")
    assert_close(permuted, batch[permutation], what="permuted batch vs permuted output")
