"""Every equivalence pair, exactly where the operations and their order are the same."""

from __future__ import annotations

import pytest
import torch

from reference import LocalResponseNorm, port
from reference.pairs import PAIRS
from reference.specs import SPECS
from reference.testing import assert_close, assert_equivalent, grad_tolerance, tolerance

DTYPES = [torch.float32, torch.float64]


# The torchvision -> reference direction is also asserted bitwise by test_alexnet_train_mode_draws_the_same_dropout_masks
# (forward and every gradient), the fixed sizes below and the hypothesis property; its full pair runs with -m slow.
SLOW_PAIRS = {"alexnet from torchvision AlexNet"}
PAIR_PARAMS = [
    pytest.param(pair, id=name, marks=[pytest.mark.slow] if name in SLOW_PAIRS else []) for name, pair in PAIRS.items()
]


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("pair", PAIR_PARAMS)
def test_pair_forward_and_gradients(pair, dtype, built_models):
    reference = None if pair.spec is None else built_models.get(SPECS[pair.spec], dtype=dtype)
    a, b, x = pair.models(dtype, reference=reference)
    grads_to_a = None if pair.grads_to_reference is None else (lambda grads: pair.grads_to_reference(b, grads))
    assert_equivalent(
        a, b, x, **tolerance(dtype, pair.exact_forward), layers=pair.layers, grads=True, grads_to_a=grads_to_a,
        **grad_tolerance(dtype, pair.exact_grads),
    )  # fmt: skip


def test_alexnet_train_mode_draws_the_same_dropout_masks(alexnet_and_torchvision):
    model, library = (m.train() for m in alexnet_and_torchvision)
    x = torch.randn(2, 3, 224, 224)
    result = assert_equivalent(
        model,
        library,
        x,
        seed=1234,
        grads=True,
        grads_to_a=lambda g: SPECS["alexnet"].counterpart.grads_to_reference(library, g),
    )
    assert result.forward_max == 0.0
    # ...and dropout really was active: a different seed gives different outputs.
    with torch.no_grad():
        torch.manual_seed(1)
        first = model(x)
        torch.manual_seed(2)
        assert not torch.equal(first, model(x))


def test_alexnet_same_seed_gives_torchvision_initial_weights(built_models, torchvision_alexnet):
    model, library = built_models.get(SPECS["alexnet"]), torchvision_alexnet  # both built under BUILD_SEED
    ported = port.rename_state(model.state_dict(), port.TORCHVISION_NAMES)
    for key, tensor in library.state_dict().items():
        assert_close(ported[key], tensor, exact=True, what=key)  # same draws in the same order


@pytest.mark.parametrize("side", [63, 100, 224, 255, 300])
def test_alexnet_bitwise_equal_to_torchvision_at_any_valid_size(alexnet_and_torchvision, side):
    model, library = (m.eval() for m in alexnet_and_torchvision)
    assert_equivalent(model, library, torch.randn(2, 3, side, side))


@pytest.mark.parametrize("size", [1, 2, 3, 5, 6])
def test_lrn_equals_torch_lrn_with_alpha_times_size(size):
    x = 10 * torch.randn(3, 20, 7, 5, dtype=torch.float64)
    paper = LocalResponseNorm(size=size, alpha=1e-3, beta=0.75, k=1.5)
    library = torch.nn.LocalResponseNorm(size=size, alpha=size * 1e-3, beta=0.75, k=1.5)
    # Forward: the same operations in the same order. Backward: different ops (see pairs.py).
    assert_equivalent(paper, library, x, grads=True, **grad_tolerance(x.dtype))


def test_seed_lrn_is_the_paper_formula_with_alpha_over_five():
    x = 10 * torch.randn(2, 16, 4, 4, dtype=torch.float64)
    squares = torch.nn.functional.pad(x * x, (0, 0, 0, 0, 2, 2))
    window = sum(squares[:, i : i + 16] for i in range(5))
    paper_formula = x / (2.0 + 2e-5 * window) ** 0.75  # Krizhevsky et al. eq. (section 3.3), alpha = 2e-5
    seed = torch.nn.LocalResponseNorm(size=5, alpha=1e-4, beta=0.75, k=2.0)(x)
    # alpha * sum vs (sum / 5) * (5 alpha): one rounding apart, float64.
    torch.testing.assert_close(seed, paper_formula, **tolerance(torch.float64))
