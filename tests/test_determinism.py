"""Determinism on CPU, and state_dict round trips."""

from __future__ import annotations

import io

import pytest
import torch

from reference.verify.build import seeded
from reference.verify.compare import assert_close, assert_equivalent
from tests.helpers import BUILD_SEED, CASES, MODELS, case_params


@pytest.mark.cost(builds=1)
@pytest.mark.parametrize("case", case_params(MODELS))
def test_same_seed_same_weights(modules, case):
    """The same seed gives the same initial weights, bit for bit."""
    shared = modules.reference(case).state_dict()  # built under BUILD_SEED (and prepared)
    again = case.prepared(seeded(case.build, BUILD_SEED)).state_dict()
    assert again.keys() == shared.keys()
    for key in shared:
        assert_close(again[key], shared[key], exact=True, what=key)


@pytest.mark.cost(builds=2)
@pytest.mark.parametrize("case", case_params(MODELS))
def test_other_seed_other_weights(case):
    """Another seed gives other initial weights: the seed is what decides."""
    first, other = (seeded(case.build, seed).state_dict() for seed in (BUILD_SEED, BUILD_SEED + 1))  # unprepared
    assert any(not torch.equal(t, first[k]) for k, t in other.items())  # the seed is what decides


@pytest.mark.cost(steps=2)
@pytest.mark.parametrize("case", case_params(MODELS))
def test_train_step_reproducible(modules, case):
    """The same input twice in train mode gives the same output and gradients, bit for bit."""
    first, second = modules.train_step(case), modules.train_step_again(case)
    # Same ops, same order, same dropout masks: bitwise.
    assert_close(second.output, first.output, exact=True)
    assert_close(second.input_grad, first.input_grad, exact=True)
    for name, grad in first.grads.items():
        assert second.grads[name] is not grad, name  # two steps' tensors, not one compared with itself
        assert_close(second.grads[name], grad, exact=True, what=name)


@pytest.mark.cost(forwards=2, builds=1)  # a save and load of the weights: a build's worth of memory traffic
@pytest.mark.parametrize("case", case_params(MODELS))
def test_meta_build_and_load(modules, case):
    """Built on the meta device and loaded from a saved state dict, it computes the same bits."""
    model = modules.reference(case)
    saved = io.BytesIO()
    torch.save(model.state_dict(), saved)
    saved.seek(0)
    with torch.device("meta"):
        clone = case.build()
    assert all(t.is_meta for t in clone.state_dict().values())  # nothing computed at construction
    # Assigned, strictly: every tensor the clone holds is now the file's (a tensor the file lacks would stay on
    # the meta device and fail the forward pass below), and nothing was computed or copied to get there.
    clone.load_state_dict(torch.load(saved, weights_only=True), assign=True)
    assert_equivalent(model, clone.eval(), case.input_space.sample())  # exact


@pytest.mark.cost
@pytest.mark.parametrize("case", case_params(list(CASES.values())))
def test_default_dtype(case):
    """Every parameter and buffer follows torch's default dtype."""
    default = torch.get_default_dtype()
    try:
        torch.set_default_dtype(torch.float64)
        with torch.device("meta"):
            module = case.build()
    finally:
        torch.set_default_dtype(default)
    dtypes = {name: t.dtype for name, t in [*module.named_parameters(), *module.named_buffers()]}
    # Counters (batch norm's num_batches_tracked) are integers in any default dtype; every value is float64.
    assert all(dtype == torch.float64 for name, dtype in dtypes.items() if not name.endswith("num_batches_tracked"))
