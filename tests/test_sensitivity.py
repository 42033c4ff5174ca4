"""No vacuous comparison: every operation of every case acts where the comparisons run, or the case names it and
the weights or input where it does (reference.verify.sensitivity); and the ablation harness itself, on small models
of known behaviour: an operation that does nothing at the weights compared is found, one that acts is not."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from reference.models.layers import LocalResponseNorm
from reference.models.tables import narrowed
from reference.verify.pairs import reference_module
from reference.verify.sensitivity import ablated_calls, ablation, effects
from tests.helpers import CASES, acting_cost, acting_in_place, case_params, meta_model, narrow, narrowable


def _net(bias: float, *, inplace: bool = False, shared: bool = False) -> nn.Sequential:
    """conv -> ReLU -> conv -> ReLU -> LRN -> max pool: the second conv's bias moves its pre-activations."""
    torch.manual_seed(0)
    first, second = nn.Conv2d(3, 4, 3), nn.Conv2d(4, 4, 3)
    with torch.no_grad():
        second.bias.fill_(bias)
    relu = nn.ReLU(inplace=inplace)
    return nn.Sequential(first, relu, second, relu if shared else nn.ReLU(inplace=inplace),
                         LocalResponseNorm(3, alpha=1e-4, k=2.0), nn.MaxPool2d(2))  # fmt: skip


def _inert(model: nn.Module, x: torch.Tensor) -> set[str]:
    return {effect.module for effect in effects(model, x) if not effect.acts}


@pytest.mark.parametrize("inplace", [False, True], ids=["relu", "inplace-relu"])
def test_inert_relu_found(inplace):
    """A ReLU whose inputs are all positive (biases of 10) is inert; with biases of 0 it acts. An in-place ReLU's
    ablation sees the input it overwrote."""
    x = torch.randn(2, 3, 12, 12)
    assert "3" in _inert(_net(10.0, inplace=inplace), x)
    assert "3" not in _inert(_net(0.0, inplace=inplace), x)


def test_calls_ablated_one_by_one():
    """One ReLU module called twice is ablated call by call: only the call after the shifted convolution is inert."""
    inert = _inert(_net(10.0, shared=True), torch.randn(2, 3, 12, 12))
    assert "1:2" in inert
    assert "1:1" not in inert


def test_lrn_window_sum():
    """An LRN acts only where its window sums are comparable to k: at inputs of size 1e-2 it is x / k^beta to
    within float32, at inputs of size 1e2 it is not."""
    lrn = LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=2.0)
    x = torch.randn(2, 16, 4, 4)
    assert _inert(lrn, 1e-2 * x) == {""}
    assert _inert(lrn, 1e2 * x) == set()


def test_bias_and_pool():
    """A bias of zeros is inert, one of ones acts; a max pool over constant windows is inert (the mean is the max)."""
    linear = nn.Linear(4, 3)
    with torch.no_grad():
        linear.bias.zero_()
    assert _inert(linear, torch.randn(2, 4)) == {""}
    with torch.no_grad():
        linear.bias.fill_(1.0)
    assert _inert(linear, torch.randn(2, 4)) == set()
    flat = torch.ones(1, 2, 4, 4).repeat_interleave(2, dim=2).repeat_interleave(2, dim=3)
    assert _inert(nn.MaxPool2d(2), flat) == {""}
    assert _inert(nn.MaxPool2d(2), torch.randn(1, 2, 8, 8)) == set()


@pytest.mark.parametrize("inplace", [False, True], ids=["relu", "inplace-relu"])
def test_batched_ablation(inplace):
    """The ablations run side by side, each on its own copy of the input in one batch: every effect is what the
    ablation gives on its own, in a model whose module is swapped for it (one ReLU module serving two calls, in place
    or not; each call ablated apart)."""
    model, x = _net(0.0, inplace=inplace), torch.randn(2, 3, 12, 12)
    batched = {effect.module: effect for effect in effects(model, x)}
    swapped = {"1": nn.Identity(), "3": nn.Identity(), "5": nn.AvgPool2d(2)}  # the ReLUs and the max pool
    intact = model(x)
    for index, replacement in swapped.items():
        alone = nn.Sequential(*[replacement if str(i) == index else m for i, m in enumerate(model)])
        change = (alone(x) - intact).abs().max().item()
        assert batched[index].change == pytest.approx(change, rel=1e-5, abs=1e-7), index
        assert batched[index].acts
    assert [e.module for e in effects(_net(0.0, inplace=inplace, shared=True), x, copies=1)] == [
        "0",
        "1:1",
        "1:2",
        "2",
        "4",
        "5",
    ]


def test_unknown_operation():
    """A parameter-free module the table has no ablation for is an error naming it: a new kind says how it is
    ablated rather than passing unexamined."""

    class Gelu(nn.Module):
        def forward(self, x):
            return nn.functional.gelu(x)

    with pytest.raises(ValueError, match="no ablation for Gelu"):
        effects(nn.Sequential(nn.Linear(4, 4), Gelu()), torch.randn(2, 4))


def _full(case, modules):
    """The case's module at full width: the shared one, or where its table cuts repeated residual blocks (ablating
    every operation costs the depth squared: a CIFAR ResNet-1202's 1,800 ablations a 1,202-layer pass each), a build
    with them cut (``narrowed(1)``): every kind of block at every width, each at its place in the stage."""
    module = modules.reference(case)
    table = getattr(module, "architecture", None)
    if table is None or table.shortened is table:
        return module
    with narrowed(1):
        return reference_module(case)


def _report(idle: list) -> str:
    return "\n".join(f"{e.module} ({e.what}): the output moves {e.change:.3g}" for e in idle)


def _operations_act(case, module) -> None:
    calls = ablated_calls(module, case.input_space.sample())
    for inert in case.inert:
        assert inert.names(calls), f"{inert.modules} name no ablated call of {case.name}: {calls}"
    declared = {name for inert in case.inert for name in inert.names(calls)}
    idle = [e for e in effects(module, case.input_space.sample()) if not e.acts and e.module not in declared]
    assert not idle, _report(idle)


@pytest.mark.cost(ablations=1, core=True, aim="sensitivity")
@pytest.mark.parametrize("case", case_params(list(CASES.values())))
def test_operations_act(modules, case):
    """Each operation, ablated alone, moves the output beyond float32's table at the weights and input the
    comparisons use, or the case names it inert there (``Case.inert``), with why; every name it gives is one."""
    _operations_act(case, _full(case, modules))


@pytest.mark.cost(builds=1, ablations=1, aim="sensitivity", narrow=True)
@pytest.mark.parametrize("case", case_params(list(CASES.values()), narrowable))
def test_operations_act_narrow(case):
    """The same on a build narrowed as the case says (``Case.narrow``) (the same operations and init): an
    operation lost or made inert shows here too, at a fraction of the cost."""
    with narrow(case):
        _operations_act(case, reference_module(case))


INERT = [
    pytest.param(case, inert, id=f"{case.name}-{inert.modules[0] or case.name}")
    for case in CASES.values()
    for inert in case.inert
]


def _acts_elsewhere(case, inert, module) -> None:
    names = set(inert.names(ablated_calls(module, case.input_space.sample())))
    with acting_in_place(module, case, inert) as (module, x):
        idle = [e for e in effects(module, x, only=names) if not e.acts]
    assert not idle, _report(idle)


def _entry_forwards(case, params) -> float:
    """The pass that re-draws the weights and the intact one, at the side the entry names."""
    return 2 * acting_cost(case, params["inert"])


def _entry_ablations(case, params) -> float:
    """The share of the case's ablated modules the entry names (by module: a call's index aside), at the side it
    names."""
    inert = params["inert"]
    model = meta_model(case) if case.is_model else case.build()
    ablated = [name for name, module in model.named_modules()
               if next(module.children(), None) is None and ablation(module) is not None]  # fmt: skip
    named = inert.names(ablated) + inert.names([f"{name}:1" for name in ablated])
    return max(1, len(named)) / max(1, len(ablated)) * acting_cost(case, inert)


@pytest.mark.cost(forwards=_entry_forwards, ablations=_entry_ablations, core=True, aim="sensitivity")
@pytest.mark.parametrize(("case", "inert"), INERT)
def test_inert_acts_elsewhere(modules, case, inert):
    """An operation the case names inert acts at the weights and input its entry names (re-drawn biases or
    statistics, another side, a larger input)."""
    _acts_elsewhere(case, inert, _full(case, modules))


@pytest.mark.cost(builds=1, forwards=_entry_forwards, ablations=_entry_ablations, aim="sensitivity", narrow=True)
@pytest.mark.parametrize(("case", "inert"), [param for param in INERT if narrowable(param.values[0])])
def test_inert_acts_elsewhere_narrow(case, inert):
    """The same on a build narrowed as the case says (``Case.narrow``)."""
    with narrow(case):
        _acts_elsewhere(case, inert, reference_module(case))
