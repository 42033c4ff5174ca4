"""Train mode differs from eval mode exactly where dropout stands: at the inputs of the layers the paper names
(``Facts.dropout_before``), each unit zeroed with the stated probability and the rest scaled by 1 / (1 - p).
A dropout moved, removed, added or with another p fails here; eval-mode comparisons cannot see any of it."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from tests.distributions import ALPHA  # the false-failure rate of each check (Hoeffding's bound here, exact)
from tests.helpers import BUILD_SEED, MODELS, case_params, meta_model, meta_seconds, narrowable


def _fed_by_dropout(model: nn.Module, x: torch.Tensor) -> list[list[str]]:
    """For each dropout call of a forward pass, the modules that take its output as their input. Hooks, not an
    FX graph: a GraphModule's reference cycle would keep an AlexNet's weights alive until the next collection."""
    outputs: list[torch.Tensor] = []
    consumers: list[list[str]] = []

    def dropped(_module, _args, out):
        outputs.append(out)
        consumers.append([])

    def consumes(name):
        def hook(_module, args):
            for index, out in enumerate(outputs):
                if args and args[0] is out:
                    consumers[index].append(name)

        return hook

    handles = [m.register_forward_hook(dropped) for m in model.modules() if isinstance(m, nn.Dropout)]
    handles += [m.register_forward_pre_hook(consumes(name)) for name, m in model.named_modules() if name]
    try:
        with torch.no_grad(), torch.random.fork_rng(devices=[]):
            model(x)
    finally:
        for handle in handles:
            handle.remove()
    return consumers


@pytest.mark.cost(seconds=meta_seconds, aim="dropout")
@pytest.mark.parametrize("case", case_params(MODELS))
def test_dropout_place(case):
    """Dropout feeds exactly the layers the paper names. Which module takes which output: the graph, not the values
    (on the meta device)."""
    _dropout_place(case, narrow=False)


@pytest.mark.cost(seconds=lambda case: meta_seconds(case, narrow=True), aim="dropout", narrow=True)
@pytest.mark.parametrize("case", case_params(MODELS, narrowable))
def test_dropout_place_narrow(case):
    """The same on the narrowed build (``Case.narrow``)."""
    _dropout_place(case, narrow=True)


def _dropout_place(case, narrow: bool) -> None:
    model = meta_model(case, train=True, narrow=narrow)
    fed = set()
    for consumers in _fed_by_dropout(model, case.input_space.sample().to("meta")):
        assert consumers, "a dropout's output goes to no layer (a functional op, or nowhere)"
        fed |= {name.rsplit(".", 1)[-1] for name in consumers}  # tower_a.fc6 -> fc6
    assert fed == set(case.paper.dropout.before if case.paper.dropout else ()), f"dropout feeds {sorted(fed)}"


@pytest.mark.cost(forwards=2)
@pytest.mark.parametrize("case", case_params(MODELS, lambda case: case.paper.dropout is not None))
def test_dropout_rate(modules, case):
    """Each dropout zeroes units with the stated probability and scales the rest by exactly 1 / (1 - p)."""
    model = modules.reference(case, train=True)
    p, calls = case.paper.dropout.p, []
    dropouts = [m for m in model.modules() if isinstance(m, nn.Dropout)]
    handles = [
        m.register_forward_hook(lambda _m, args, out: calls.append((args[0].clone(), out.clone()))) for m in dropouts
    ]
    try:
        with torch.no_grad(), torch.random.fork_rng(devices=[]):
            torch.manual_seed(BUILD_SEED)
            model(case.input_space.sample((2, *case.input_space.default[1:])))
    finally:
        for handle in handles:
            handle.remove()
    assert len(calls) == len(case.paper.dropout.before)  # one application per site, each site once
    for x, out in calls:
        kept = out != 0
        assert torch.equal(out[kept], x[kept] / (1 - p)), "kept units not scaled by exactly 1 / (1 - p)"
        live = x != 0  # a unit that was already 0 tells nothing
        dropped = (~kept & live).sum().item() / live.sum().item()
        margin = math.sqrt(math.log(2 / ALPHA) / (2 * live.sum().item()))
        assert abs(dropped - p) <= margin, f"dropped {dropped:.4f} of the units, stated p = {p}"
