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


def _dropout_calls(model: nn.Module, x: torch.Tensor) -> list[tuple[list[str], torch.Tensor, torch.Tensor, float]]:
    """Each dropout call of a forward pass: the modules that take its output as their input, its input, its output
    and its rate. Hooks, not an FX graph: a GraphModule's reference cycle would keep an AlexNet's weights alive until the
    next collection."""
    calls: list[tuple[list[str], torch.Tensor, torch.Tensor, float]] = []

    def dropped(module, args, out):
        calls.append(([], args[0].clone(), out, module.p))

    def consumes(name):
        def hook(_module, args):
            for consumers, _, out, _ in calls:
                if args and args[0] is out:
                    consumers.append(name)

        return hook

    handles = [m.register_forward_hook(dropped) for m in model.modules() if isinstance(m, nn.Dropout)]
    handles += [m.register_forward_pre_hook(consumes(name)) for name, m in model.named_modules() if name]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for handle in handles:
            handle.remove()
    return calls


def _sites(case) -> dict[str, float]:
    """Each layer dropout feeds, as the paper states it, with its rate."""
    return {layer: site.p for site in case.paper.dropout for layer in site.before}


@pytest.mark.cost(seconds=meta_seconds, aim="dropout")
@pytest.mark.parametrize("case", case_params(MODELS))
def test_dropout_place(case):
    """Dropout feeds exactly the layers the paper names, each at the rate stated for it. Which module takes which
    output: the graph, not the values (on the meta device)."""
    _dropout_place(case, narrow=False)


@pytest.mark.cost(seconds=lambda case: meta_seconds(case, narrow=True), aim="dropout", narrow=True)
@pytest.mark.parametrize("case", case_params(MODELS, narrowable))
def test_dropout_place_narrow(case):
    """The same on the narrowed build (``Case.narrow``)."""
    _dropout_place(case, narrow=True)


def _dropout_place(case, narrow: bool) -> None:
    model = meta_model(case, train=True, narrow=narrow)
    fed = set()
    with torch.random.fork_rng(devices=[]):
        calls = _dropout_calls(model, case.input_space.sample().to("meta"))
    sites = _sites(case)
    for consumers, _, _, p in calls:
        assert consumers, "a dropout's output goes to no layer (a functional op, or nowhere)"
        layers = {name.rsplit(".", 1)[-1] for name in consumers}  # tower_a.fc6 -> fc6, aux1.fc2 -> fc2
        assert all(sites.get(layer) == p for layer in layers), f"dropout at rate {p} feeds {sorted(layers)}: {sites}"
        fed |= layers
    assert fed == set(sites), f"dropout feeds {sorted(fed)}"


@pytest.mark.cost(forwards=2)
@pytest.mark.parametrize("case", case_params(MODELS, lambda case: bool(case.paper.dropout)))
def test_dropout_rate(modules, case):
    """Each dropout zeroes units with its stated probability (the rate of the layer it feeds) and scales the rest by
    exactly 1 / (1 - p)."""
    model = modules.reference(case, train=True)
    sites = _sites(case)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(BUILD_SEED)
        calls = _dropout_calls(model, case.input_space.sample((2, *case.input_space.default[1:])))
    consumers = [tuple(sorted(names)) for names, _, _, _ in calls]
    assert len(set(consumers)) == len(consumers), "a layer's input dropped twice in one pass"
    fed = [{name.rsplit(".", 1)[-1] for name in names} for names in consumers]  # tower_a.fc6 -> fc6
    assert all(len(layers) == 1 for layers in fed), f"one dropout feeds layers of two sites: {fed}"
    assert {layer for (layer,) in fed} == set(sites)  # every site, each once per module it stands before
    for (layer,), (_, x, out, _) in zip(fed, calls, strict=True):
        p = sites[layer]
        kept = out != 0
        # torch multiplies by the scale 1 / (1 - p) (not a division by 1 - p: for p = 0.7 the two round apart).
        assert torch.equal(out[kept], x[kept] * (1 / (1 - p))), "kept units not scaled by exactly 1 / (1 - p)"
        live = x != 0  # a unit that was already 0 tells nothing
        dropped = (~kept & live).sum().item() / live.sum().item()
        margin = math.sqrt(math.log(2 / ALPHA) / (2 * live.sum().item()))
        assert abs(dropped - p) <= margin, f"dropped {dropped:.4f} of the units, stated p = {p}"
