"""Determinism on CPU, state_dict round trips, and the divergence locator."""

from __future__ import annotations

import io

import pytest
import torch

from reference.verify.build import seeded
from reference.verify.compare import assert_close, assert_equivalent
from reference.verify.pairs import compare_pair, ported
from tests.helpers import BUILD_SEED, CASES, MODELS, case_params, heavy, pair_params


@pytest.mark.parametrize("case", case_params(MODELS))
def test_same_seed_same_initial_weights(modules, case):
    shared = modules.reference(case).state_dict()  # built under BUILD_SEED (and prepared)
    again = seeded(case.build, BUILD_SEED)
    if case.prepare is not None:
        case.prepare(again)
    again = again.state_dict()
    assert again.keys() == shared.keys()
    for key in shared:
        assert_close(again[key], shared[key], exact=True, what=key)


@pytest.mark.parametrize("case", case_params(MODELS, slow_if=heavy))  # an AlexNet's third build costs 0.4 s
def test_another_seed_gives_other_initial_weights(case):
    first, other = (seeded(case.build, seed).state_dict() for seed in (BUILD_SEED, BUILD_SEED + 1))  # unprepared
    assert any(not torch.equal(t, first[k]) for k, t in other.items())  # the seed is what decides


@pytest.mark.parametrize("case", case_params(MODELS))
def test_same_input_twice_is_bitwise_reproducible_in_train_mode(modules, case):
    first, second = modules.train_step(case), modules.train_step_again(case)
    # Same ops, same order, same dropout masks: bitwise.
    assert_close(second.output, first.output, exact=True)
    assert_close(second.input_grad, first.input_grad, exact=True)
    for name, grad in first.grads.items():
        assert second.grads[name] is not grad, name  # two steps' tensors, not one compared with itself
        assert_close(second.grads[name], grad, exact=True, what=name)


@pytest.mark.parametrize("case", case_params(MODELS))
def test_built_on_the_meta_device_and_loaded_from_a_saved_state_dict_it_computes_the_same_bits(modules, case):
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


@pytest.mark.parametrize("case", case_params(list(CASES.values())))
def test_every_parameter_and_buffer_follows_the_default_dtype(case):
    default = torch.get_default_dtype()
    try:
        torch.set_default_dtype(torch.float64)
        with torch.device("meta"):
            module = case.build()
    finally:
        torch.set_default_dtype(default)
    dtypes = {name: t.dtype for name, t in [*module.named_parameters(), *module.named_buffers()]}
    assert all(dtype == torch.float64 for dtype in dtypes.values()), dtypes


@pytest.mark.parametrize(("case", "counterpart"), pair_params(lambda _, c: bool(c.layers)))
def test_locator_names_the_layer_where_a_planted_perturbation_is(modules, case, counterpart):
    """A shift of every bias of the first, a middle and the last mapped layer with a bias, one at a time: 1e-3
    where the pair is exact, 0.1 where it has the table's tolerance (outputs of LeNet-5's RBF head are ~100)."""
    reference = modules.reference(case)
    other = ported(counterpart, reference)  # a copy: the shared counterpart would see the perturbation too
    weighted = [name for name in counterpart.layers if getattr(reference.get_submodule(name), "bias", None) is not None]
    for layer in dict.fromkeys([weighted[0], weighted[len(weighted) // 2], weighted[-1]]):
        bias = reference.get_submodule(layer).bias
        original = bias.detach().clone()
        with torch.no_grad():
            bias.add_(1e-3 if counterpart.exact_forward else 0.1)  # every unit: one alone may sit under a ReLU's zero
        try:
            result = compare_pair(counterpart, reference, other, case.input_space.sample(), grads=False)
        finally:
            with torch.no_grad():
                bias.copy_(original)
        assert not result.passed, layer
        mapped = counterpart.layers[layer]
        mapped = mapped if isinstance(mapped, str) else "+".join(mapped)
        assert f"first diverging layer: {layer!r} (counterpart {mapped!r})" in result.report(), result.report()
