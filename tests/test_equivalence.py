"""Every case against each of its counterparts: exactly where the operations and their order are the same."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from reference.verify.build import seeded
from reference.verify.compare import assert_close, compare_models, outputs, tolerance
from reference.verify.pairs import (
    DTYPES,
    compare_pair,
    grads_to_reference,
    library,
    ported,
    ported_back,
    reference_module,
)
from reference.verify.states import port
from tests.helpers import (
    BUILD_SEED,
    CASES,
    PAIRS,
    acting,
    acting_cost,
    acting_in_place,
    by_dtype,
    fewer_examples,
    narrow,
    narrowable,
    pair_params,
)
from tests.strategies import drawn_size, options, valid_inputs

PAIRS_BY_DTYPE = by_dtype(pair_params(), list(DTYPES))


def _passes(result) -> None:
    __tracebackhide__ = True
    if not result.passed:
        raise AssertionError(result.report())


@pytest.mark.cost(pairs=1, core=True)
@pytest.mark.parametrize(("case", "pair", "dtype"), PAIRS_BY_DTYPE)
def test_pair(modules, case, pair, dtype):
    """Outputs, mapped layers and gradients (the input's and every parameter's) at the default input."""
    reference = modules.reference(case, dtype=dtype)
    other = modules.counterpart(case, pair, dtype=dtype)
    _passes(compare_pair(pair, reference, other, case.input_space.sample(dtype=dtype)))


ACTING = [
    pytest.param(case, pair, inert, id=f"{case.name} vs {pair.name}-{inert.modules[0] or case.name}")
    for case, pair in PAIRS
    for inert in case.inert
]


@pytest.mark.cost(builds=2, pairs=lambda case, params: acting_cost(case, params["inert"]), core=True, aim="acting")
@pytest.mark.parametrize(("case", "pair", "inert"), ACTING)
def test_pair_acting(case, pair, inert):
    """The pair again where operations the case names inert act (the entry's weights and input): a model or
    port that lost one of them, unseen at the default weights, parts here."""
    reference, x = acting(case, inert)
    _passes(compare_pair(pair, reference, ported(pair, reference), x, drawn=True))


@pytest.mark.cost(
    builds=1.2,
    forwards=lambda case, params: acting_cost(case, params["inert"]),  # the re-draw's
    pairs=lambda case, params: acting_cost(case, params["inert"]),
    aim="acting",
    narrow=True,
)
@pytest.mark.parametrize(("case", "pair", "inert"), [p for p in ACTING if narrowable(p.values[0])])
def test_pair_acting_narrow(case, pair, inert):
    """Outputs, mapped layers and gradients there, on builds narrowed as the case says (``Case.narrow``)."""
    with narrow(case):
        reference, x = acting(case, inert)
        _passes(compare_pair(pair, reference, ported(pair, reference), x, drawn=True))


@pytest.mark.cost(forwards=lambda case, params: 3 * acting_cost(case, params["inert"]), aim="acting")
@pytest.mark.parametrize(("case", "pair", "inert"), [p for p in ACTING if not narrowable(p.values[0])])
def test_pair_acting_forward(modules, case, pair, inert):
    """Outputs and mapped layers there, on the case's shared module (its weights re-drawn for the test, restored
    after it; the counterpart ported over its tensors)."""
    with acting_in_place(modules.reference(case), case, inert) as (reference, x), torch.no_grad():
        _passes(compare_pair(pair, reference, ported(pair, reference, share=True), x, drawn=True, grads=False))


CONTRASTS = [pytest.param(case, contrast, id=f"{case.name} vs {contrast.name}")
             for case in CASES.values() for contrast in case.contrasts]  # fmt: skip


@pytest.mark.cost(builds=2, forwards=2, aim="contrast", narrow=True)
@pytest.mark.parametrize(("case", "contrast"), CONTRASTS)
def test_contrast(case, contrast):
    """A network the case is easily taken for (``Case.contrasts``): its weights port, and with the layers aligned as
    ``diff`` aligns them (no map), every layer before the one the contrast names agrees bit for bit, that one parts,
    and so do the outputs (on builds narrowed as the case says)."""
    with narrow(case):
        reference = reference_module(case)
        other = port(reference, lambda: contrast.other(reference), contrast.state)
    result = compare_models(reference, other, case.input_space.sample(), rtol=0, atol=0)
    assert not result.alignment.ambiguous, result.alignment.describe()
    first = result.first_divergence()
    assert first is not None, result.report()
    assert first.layer == contrast.parts, result.report()
    assert not result.forward_close, result.report()


@pytest.mark.cost(forwards=2, core=True)
@pytest.mark.parametrize(("case", "pair"), pair_params())
def test_pair_forward(modules, case, pair):
    """Outputs and mapped layers at the default input, no gradients: what a run that cannot afford a pair's backward
    pass still checks."""
    reference, other = modules.reference(case), modules.counterpart(case, pair)
    with torch.no_grad():
        _passes(compare_pair(pair, reference, other, case.input_space.sample(), grads=False))


@pytest.mark.cost(pairs=lambda case: drawn_size(case, max_batch=2), examples=True)
@pytest.mark.parametrize(("case", "pair", "dtype"), PAIRS_BY_DTYPE)
@fewer_examples(6, at_least=1)
@given(data=st.data())
def test_pair_drawn(modules, case, pair, dtype, data):
    """At drawn batch sizes and sides (models: their shared modules); layers also at drawn constructor options."""
    opts = data.draw(options(case))
    x = data.draw(valid_inputs(case, dtypes=(dtype,), opts=opts, max_batch=2))
    if opts:
        reference = reference_module(case, dtype=dtype, **opts)
        other = ported(pair, reference)
    else:
        reference, other = modules.reference(case, dtype=dtype), modules.counterpart(case, pair, dtype=dtype)
    _passes(compare_pair(pair, reference, other, x, drawn=True))
    for side in (reference, other):
        side.zero_grad(set_to_none=True)  # AlexNet's float64 gradients are 0.5 GB a side


@pytest.mark.cost(pairs=lambda case: sum(map(len, case.input_space.options.values())))
@pytest.mark.parametrize("dtype", [torch.float64], ids=str)
@pytest.mark.parametrize(("case", "pair"), pair_params(lambda case, _: bool(case.input_space.options)))
def test_pair_options(case, pair, dtype):
    """Each constructor option at each of its values (the others at their defaults), at the default input."""
    x = case.input_space.sample(dtype=dtype)
    for name, values in case.input_space.options.items():
        for value in values:
            if name == case.input_space.channels_multiple_of and x.shape[1] % value:
                continue  # the default input's channels are not a multiple: the property covers such counts
            reference = reference_module(case, dtype=dtype, **{name: value})
            result = compare_pair(pair, reference, ported(pair, reference), x, drawn=True)
            assert result.passed, f"{name}={value}: {result.report()}"


MODULE_INPUTS = [
    pytest.param(case, pair, example, id=f"{case.name} vs {pair.name}-{example.desc}")
    for case, pair in PAIRS
    for example in case.input_space.examples
    if example.shape is not None and not example.gradcheck and example.error is None
]


@pytest.mark.cost(pairs=1, aim="examples")  # an example is where a layer's edge cases are (an even LRN window)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize(("case", "pair", "example"), MODULE_INPUTS)
def test_pair_examples(case, pair, example, dtype):
    """At the case's example inputs: PyTorch's own module inputs for the layer torch has too."""
    reference = reference_module(case, dtype=dtype, **example.options)
    x = case.input_space.sample(example.shape, dtype=dtype)
    _passes(compare_pair(pair, reference, ported(pair, reference), x))


def _sides(case) -> list[int]:
    """Across the valid range: its low end, the default side, beyond it, and the high end where there is one."""
    low, high, default = case.valid_sides.low, case.valid_sides.high, case.default_side
    sides = [low, (low + default) // 2, default, default + 31, default + 76]
    return sorted({min(side, high) if high is not None else side for side in sides})


def _library_forwards(case) -> float:
    """Two images at each side of :func:`_sides`, in units of a forward pass at the default input (measured): the cost
    grows with the area."""
    batch, *_, side_measured = case.input_space.default
    return sum(2 * (side / side_measured) ** 2 for side in _sides(case)) / batch


@pytest.mark.cost(builds=2, pairs=2, forwards=_library_forwards)
@pytest.mark.parametrize(("case", "pair"), pair_params(lambda _, pair: library(pair) is not None))
def test_library_ported_back(case, pair):
    """The other direction: the library's own model ported into the reference, equal across the valid range
    (gradients at the smallest side, outputs at every side of :func:`_sides`)."""
    other = seeded(library(pair), BUILD_SEED).eval()
    reference = ported_back(pair, other)
    for side in _sides(case):
        x = case.input_space.sample((2, case.in_channels, side, side))
        result = compare_pair(pair, reference, other, x, grads=side == case.valid_sides.low)
        assert result.passed, f"{side}x{side}: {result.report()}"


@pytest.mark.cost(builds=2)
@pytest.mark.parametrize(("case", "pair"), pair_params(lambda _, pair: library(pair) is not None))
def test_library_init(modules, case, pair):
    """The same seed gives the library model's initial weights: the same draws in the same order. Where the pair
    says it does not (``same_init=False``: the paper's init), a weight differs: the flag is not stale."""
    # Both built under BUILD_SEED, neither prepared (``Case.prepare`` is for the comparisons, not the init).
    reference = modules.reference(case) if case.prepare is None else seeded(case.build, BUILD_SEED)
    ported_state = ported(pair, reference).state_dict()
    library_state = seeded(library(pair), BUILD_SEED).state_dict()
    assert ported_state.keys() == library_state.keys()
    if not pair.same_init:
        assert any(not torch.equal(ported_state[key], tensor) for key, tensor in library_state.items())
        return
    for key, tensor in library_state.items():
        assert_close(ported_state[key], tensor, exact=True, what=key)


@pytest.mark.cost(pairs=1, forwards=2, core=True)
@pytest.mark.parametrize(("case", "pair"), pair_params(lambda _, pair: pair.same_dropout))
def test_pair_train(modules, case, pair):
    """Train mode with the same seed draws the same dropout masks on both sides, and updates batch-norm statistics
    alike; dropout, where the model has it, really is active (another seed, other outputs)."""
    other = modules.counterpart(case, pair).train()
    reference = modules.reference(case, train=True)
    x = case.input_space.sample()
    result = compare_pair(pair, reference, other, x, seed=1234)
    _passes(result)  # within the pair's tolerance: a mask that differed would zero other units, off by O(1)
    if pair.tolerance.forward == "exact":
        assert result.forward_max == 0.0  # dropout's masks and the forward arithmetic: bitwise
    buffers = dict(reference.named_buffers())
    if buffers:  # batch-norm running statistics: the step updated both sides' alike
        theirs = grads_to_reference(pair, reference, other)(dict(other.named_buffers()))  # the state map, buffers too
        assert theirs.keys() == buffers.keys()
        for name, buffer in buffers.items():
            assert_close(theirs[name], buffer, exact=pair.tolerance.forward == "exact", what=name)
        assert all(b.item() == 1 for n, b in buffers.items() if n.endswith("num_batches_tracked")), "no batch seen"
    if not any(isinstance(module, torch.nn.Dropout) for module in reference.modules()):
        return
    with torch.no_grad():  # ...and dropout really was active: another seed gives other outputs
        torch.manual_seed(1)
        first = outputs(reference(x))
        torch.manual_seed(2)
        assert all(not torch.equal(a, b) for a, b in zip(first, outputs(reference(x)), strict=True))


def test_torch_lrn_alpha_convention():
    """nn.LocalResponseNorm divides alpha by the size (Caffe's convention): the seed's alpha=1e-4 is 2e-5."""
    x = 10 * torch.randn(2, 16, 4, 4, dtype=torch.float64)
    squares = torch.nn.functional.pad(x * x, (0, 0, 0, 0, 2, 2))
    window = sum(squares[:, i : i + 16] for i in range(5))
    paper_formula = x / (2.0 + 2e-5 * window) ** 0.75  # Krizhevsky et al. section 3.3, alpha = 2e-5
    seed = torch.nn.LocalResponseNorm(size=5, alpha=1e-4, beta=0.75, k=2.0)(x)
    # alpha * sum vs (sum / 5) * (5 alpha): one rounding apart, float64.
    torch.testing.assert_close(seed, paper_formula, **tolerance(torch.float64))
