"""Every case against each of its counterparts: exactly where the operations and their order are the same."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from reference.verify.build import seeded
from reference.verify.compare import assert_close, tolerance
from reference.verify.pairs import compare_pair, ported, reference_module
from tests.helpers import BUILD_SEED, PAIRS, by_dtype, fewer_examples, heavy, pair_params
from tests.strategies import options, valid_inputs

DTYPES = [torch.float32, torch.float64]
# The AlexNet-sized pairs in float64: in -m slow (each converts an AlexNet and its counterpart to float64, ~1 s,
# and the default run is at its time budget). The default run compares them in float32, and every other pair in
# both dtypes; the goldens run each AlexNet in float64.
PAIRS_BY_DTYPE = by_dtype(pair_params(), DTYPES, slow_if=lambda case, dtype: heavy(case) and dtype == torch.float64)


def _passes(result) -> None:
    __tracebackhide__ = True
    if not result.passed:
        raise AssertionError(result.report())


@pytest.mark.smoke
@pytest.mark.parametrize(("case", "counterpart", "dtype"), PAIRS_BY_DTYPE)
def test_pair_forward_and_gradients_at_the_default_input(modules, case, counterpart, dtype):
    reference = modules.reference(case, dtype=dtype)
    other = modules.counterpart(case, counterpart, dtype=dtype)
    _passes(compare_pair(counterpart, reference, other, case.input_space.sample(dtype=dtype)))


@pytest.mark.forward
@pytest.mark.parametrize(("case", "counterpart"), pair_params(lambda case, _: case.default_run == "forward"))
def test_pair_outputs_and_layers_at_the_default_input(modules, case, counterpart):
    """The default run's check of a pair too costly for it with gradients; the test above runs it in -m slow."""
    reference, other = modules.reference(case), modules.counterpart(case, counterpart)
    with torch.no_grad():
        _passes(compare_pair(counterpart, reference, other, case.input_space.sample(), grads=False))


@pytest.mark.parametrize(("case", "counterpart", "dtype"), PAIRS_BY_DTYPE)
@fewer_examples(6, at_least=1)
@given(data=st.data())
def test_pair_at_any_valid_input_and_options(modules, case, counterpart, dtype, data):
    """Models at drawn batch sizes and sides (their shared modules); layers also at drawn constructor options."""
    opts = data.draw(options(case))
    x = data.draw(valid_inputs(case, dtypes=(dtype,), opts=opts, max_batch=2))
    if opts:
        reference = reference_module(case, dtype=dtype, **opts)
        other = ported(counterpart, reference)
    else:
        reference, other = modules.reference(case, dtype=dtype), modules.counterpart(case, counterpart, dtype=dtype)
    _passes(compare_pair(counterpart, reference, other, x, drawn=True))
    for side in (reference, other):
        side.zero_grad(set_to_none=True)  # AlexNet's float64 gradients are 0.5 GB a side


@pytest.mark.parametrize("dtype", [torch.float64], ids=str)
@pytest.mark.parametrize(("case", "counterpart"), pair_params(lambda case, _: bool(case.options)))
def test_pair_at_every_option_value(case, counterpart, dtype):
    """Each constructor option at each of its values (the others at their defaults), at the default input."""
    x = case.input_space.sample(dtype=dtype)
    for name, values in case.options.items():
        for value in values:
            if name == "groups" and x.shape[1] % value:
                continue  # the default input's channels are not a multiple: the property covers such counts
            reference = reference_module(case, dtype=dtype, **{name: value})
            result = compare_pair(counterpart, reference, ported(counterpart, reference), x, drawn=True)
            assert result.passed, f"{name}={value}: {result.report()}"


MODULE_INPUTS = [
    pytest.param(case, counterpart, module_input, id=f"{case.name} vs {counterpart.name}-{module_input.desc}")
    for case, counterpart in PAIRS
    for module_input in case.module_inputs
]


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize(("case", "counterpart", "module_input"), MODULE_INPUTS)
def test_pair_at_the_module_inputs_torch_tests_its_own_layer_with(case, counterpart, module_input, dtype):
    reference = reference_module(case, dtype=dtype, **module_input.options)
    x = case.input_space.sample(module_input.shape, dtype=dtype)
    _passes(compare_pair(counterpart, reference, ported(counterpart, reference), x))


def _sides(case) -> list[int]:
    """Across the valid range: its low end, the default side, beyond it, and the high end where there is one."""
    low, high, default = case.valid_sides.low, case.valid_sides.high, case.default_side
    sides = [low, (low + default) // 2, default, default + 31, default + 76]
    return sorted({min(side, high) if high is not None else side for side in sides})


@pytest.mark.parametrize(("case", "counterpart"), pair_params(lambda _, c: c.library is not None))
def test_the_library_built_counterpart_ported_back_is_equal_across_the_valid_range(case, counterpart):
    """The other direction: the library's own model, ported into the reference. Gradients at the smallest side,
    outputs at every side of :func:`_sides`."""
    library = seeded(counterpart.library, BUILD_SEED).eval()
    reference = counterpart.port_back(library)
    for side in _sides(case):
        x = case.input_space.sample((2, case.in_channels, side, side))
        result = compare_pair(counterpart, reference, library, x, grads=side == case.valid_sides.low)
        assert result.passed, f"{side}x{side}: {result.report()}"


@pytest.mark.parametrize(("case", "counterpart"), pair_params(lambda _, c: c.library is not None))
def test_same_seed_gives_the_library_initial_weights(modules, case, counterpart):
    ported_state = ported(counterpart, modules.reference(case)).state_dict()  # both built under BUILD_SEED
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(BUILD_SEED)
        library = counterpart.library().state_dict()  # same draws in the same order
    assert ported_state.keys() == library.keys()
    for key, tensor in library.items():
        assert_close(ported_state[key], tensor, exact=True, what=key)


@pytest.mark.smoke
@pytest.mark.parametrize(("case", "counterpart"), pair_params(lambda _, c: c.same_dropout))
def test_train_mode_with_the_same_seed_draws_the_same_dropout_masks(modules, case, counterpart):
    other = modules.counterpart(case, counterpart).train()
    reference = modules.reference(case, train=True)
    x = case.input_space.sample()
    result = compare_pair(counterpart, reference, other, x, seed=1234)
    _passes(result)  # within the pair's tolerance: a mask that differed would zero other units, off by O(1)
    if counterpart.exact_forward:
        assert result.forward_max == 0.0  # dropout's masks and the forward arithmetic: bitwise
    buffers = dict(reference.named_buffers())
    if buffers:  # batch-norm running statistics: the step updated both sides' alike
        theirs = counterpart.grads(other, dict(other.named_buffers()))  # the state-key map, buffers included
        assert theirs.keys() == buffers.keys()
        for name, buffer in buffers.items():
            assert_close(theirs[name], buffer, exact=counterpart.exact_forward, what=name)
        assert all(b.item() == 1 for n, b in buffers.items() if n.endswith("num_batches_tracked")), "no batch seen"
    with torch.no_grad():  # ...and dropout really was active: another seed gives other outputs
        torch.manual_seed(1)
        first = reference(x)
        torch.manual_seed(2)
        assert not torch.equal(first, reference(x))


def test_torch_lrn_with_the_seeds_alpha_is_the_paper_formula_with_alpha_over_five():
    """nn.LocalResponseNorm divides alpha by the size (Caffe's convention): the seed's alpha=1e-4 is 2e-5."""
    x = 10 * torch.randn(2, 16, 4, 4, dtype=torch.float64)
    squares = torch.nn.functional.pad(x * x, (0, 0, 0, 0, 2, 2))
    window = sum(squares[:, i : i + 16] for i in range(5))
    paper_formula = x / (2.0 + 2e-5 * window) ** 0.75  # Krizhevsky et al. section 3.3, alpha = 2e-5
    seed = torch.nn.LocalResponseNorm(size=5, alpha=1e-4, beta=0.75, k=2.0)(x)
    # alpha * sum vs (sum / 5) * (5 alpha): one rounding apart, float64.
    torch.testing.assert_close(seed, paper_formula, **tolerance(torch.float64))
