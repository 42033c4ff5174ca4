"""No vacuous comparison: every operation of every case acts where the comparisons run, or the case names it and
the weights or input where it does (reference.verify.sensitivity); and the ablation harness itself, on small models
of known behaviour: an operation that does nothing at the weights compared is found, one that acts is not."""

from __future__ import annotations

import contextlib
import functools

import pytest
import torch
from torch import nn

from reference.models.layers import LocalResponseNorm
from reference.verify import sensitivity
from reference.verify.pairs import reference_module
from reference.verify.sensitivity import ablated_calls, effects
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
def test_replayed_ablation(monkeypatch, inplace):
    """An ablation's pass computes only what follows the ablated call, the calls before it replayed from the intact
    pass: every effect equals a full pass's, bitwise, one ReLU module serving two calls, in place or not."""
    model, x = _net(0.0, inplace=inplace, shared=True), torch.randn(2, 3, 12, 12)
    replayed = effects(model, x)

    @contextlib.contextmanager
    def computed(*_):
        yield

    monkeypatch.setattr(sensitivity, "_replayed", computed)
    assert effects(model, x) == replayed


def test_unknown_operation():
    """A parameter-free module the table has no ablation for is an error naming it: a new kind says how it is
    ablated rather than passing unexamined."""

    class Gelu(nn.Module):
        def forward(self, x):
            return nn.functional.gelu(x)

    with pytest.raises(ValueError, match="no ablation for Gelu"):
        effects(nn.Sequential(nn.Linear(4, 4), Gelu()), torch.randn(2, 4))


@functools.cache  # by name: one meta forward a case
def _case_calls(name: str) -> tuple[str, ...]:
    case = CASES[name]
    with torch.device("meta"):
        model = meta_model(case) if case.is_model else case.build()
        return tuple(ablated_calls(model, case.input_space.sample().to("meta")))


def _forwards(case) -> float:
    """The intact forward, and for each call ablated what follows it (half a forward on average)."""
    return len(_case_calls(case.name)) / 2 + 1


def _report(idle: list) -> str:
    return "\n".join(f"{e.module} ({e.what}): the output moves {e.change:.3g}" for e in idle)


def _operations_act(case, module) -> None:
    calls = _case_calls(case.name)
    for inert in case.inert:
        assert inert.names(calls), f"{inert.modules} name no ablated call of {case.name}: {calls}"
    declared = {name for inert in case.inert for name in inert.names(calls)}
    idle = [e for e in effects(module, case.input_space.sample()) if not e.acts and e.module not in declared]
    assert not idle, _report(idle)


@pytest.mark.cost(forwards=_forwards, core=True, aim="sensitivity")
@pytest.mark.parametrize("case", case_params(list(CASES.values())))
def test_operations_act(modules, case):
    """Each operation, ablated alone, moves the output beyond float32's table at the weights and input the
    comparisons use, or the case names it inert there (``Case.inert``), with why; every name it gives is one."""
    _operations_act(case, modules.reference(case))


@pytest.mark.cost(builds=1, forwards=_forwards, aim="sensitivity", narrow=True)
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
    names = set(inert.names(_case_calls(case.name)))
    with acting_in_place(module, case, inert) as (module, x):
        idle = [e for e in effects(module, x, only=names) if not e.acts]
    assert not idle, _report(idle)


def _entry_forwards(case, params) -> float:
    """One forward a call the entry names, and the intact one, at the side it names."""
    inert = params["inert"]
    return (len(inert.names(_case_calls(case.name))) / 2 + 1) * acting_cost(case, inert)


@pytest.mark.cost(forwards=_entry_forwards, core=True, aim="sensitivity")
@pytest.mark.parametrize(("case", "inert"), INERT)
def test_inert_acts_elsewhere(modules, case, inert):
    """An operation the case names inert acts at the weights and input its entry names (re-drawn biases or
    statistics, another side, a larger input)."""
    _acts_elsewhere(case, inert, modules.reference(case))


@pytest.mark.cost(builds=1, forwards=_entry_forwards, aim="sensitivity", narrow=True)
@pytest.mark.parametrize(("case", "inert"), [param for param in INERT if narrowable(param.values[0])])
def test_inert_acts_elsewhere_narrow(case, inert):
    """The same on a build narrowed as the case says (``Case.narrow``)."""
    with narrow(case):
        _acts_elsewhere(case, inert, reference_module(case))
