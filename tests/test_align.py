"""Layers aligned with no map, ports by execution order: the alignment equals every hand-written map, a planted
perturbation is named on both sides with and without the map, and an ambiguous alignment says so."""

from __future__ import annotations

import copy
from collections import OrderedDict

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from reference.verify.align import align, pair_by_order, port_by_order, record
from reference.verify.build import seeded, uninitialised
from reference.verify.compare import assert_close, capture_outputs, compare_models, tolerance
from reference.verify.pairs import compare_pair, library, ported, ported_back
from tests.helpers import BUILD_SEED, pair_params


def _steps(model: nn.Module, x: torch.Tensor) -> list:
    with torch.no_grad(), record(model) as steps:
        model(x)
    return steps


def _names(mapped: str | tuple[str, ...] | list[str]) -> str | tuple[str, ...]:
    return mapped if isinstance(mapped, str) else tuple(mapped)


@pytest.mark.cost(forwards=lambda case: 4 * max(len(pair.layers) for pair in case.pairs))
@pytest.mark.parametrize(("case", "pair"), pair_params(lambda _, pair: bool(pair.layers)))
def test_alignment_finds_the_map(modules, case, pair):
    """With no map, every entry of the hand-written map is found (each a step: a residual block's output is its last
    step's). A shift of every bias of each mapped layer with
    one, one at a time, is named on both sides, with the map and without it: 1e-3 where the pair is exact, 0.1 where
    it has the table's tolerance (outputs of LeNet-5's RBF head are ~100), times the layer's largest output where
    that exceeds 1 (the table's atol scales with it: VGG's paper init reaches ~1e5 by block4)."""
    reference = modules.reference(case)
    other = ported(pair, reference)  # a copy: the shared counterpart would see the perturbation too
    weighted = [name for name in pair.layers if getattr(reference.get_submodule(name), "bias", None) is not None]
    steps = [name for name in pair.layers if not any(True for _ in reference.get_submodule(name).children())]
    tol = {key: pair.tolerance.keywords(torch.float32)[key] for key in ("rtol", "atol")}
    x = case.input_space.sample()
    with torch.no_grad(), capture_outputs(reference, weighted) as outputs:
        reference(x)
    for layer in weighted:
        bias = reference.get_submodule(layer).bias
        original = bias.detach().clone()
        shift = (1e-3 if pair.tolerance.forward == "exact" else 0.1) * max(1.0, outputs[layer].abs().max().item())
        with torch.no_grad():
            bias.add_(shift)  # every unit: one alone may sit under a ReLU's zero
        try:
            mapped = compare_pair(pair, reference, other, x, grads=False)
            aligned = compare_models(reference, other, x, **tol)
        finally:
            with torch.no_grad():
                bias.copy_(original)
        mapped_to = pair.layers[layer]
        expected = mapped_to if isinstance(mapped_to, str) else "+".join(mapped_to)
        assert not aligned.alignment.ambiguous, aligned.alignment.describe()
        found = aligned.alignment.as_map()
        assert {name: found.get(name) for name in steps} == {name: _names(pair.layers[name]) for name in steps}
        for result in (mapped, aligned):
            assert not result.passed, layer
            first = result.first_divergence()
            assert (first.layer, first.counterpart) == (layer, expected), result.report()
        assert "aligned by execution order, shape and name" in aligned.report()


class _Twice(nn.Module):
    """One linear layer called twice, a functional ReLU between."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(F.relu(self.fc(x)))


class _Unrolled(nn.Module):
    """The same with two layers and an in-place ReLU module."""

    def __init__(self, shared: nn.Linear) -> None:
        super().__init__()
        self.fc1, self.relu, self.fc2 = copy.deepcopy(shared), nn.ReLU(inplace=True), copy.deepcopy(shared)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.relu(self.fc1(x)))


def test_alignment_of_repeats_and_functions():
    """A module called twice, a functional op and an in-place ReLU align, and a change is located."""
    torch.manual_seed(0)
    twice = _Twice()
    unrolled = _Unrolled(twice.fc)
    x = torch.randn(8, 4)
    alignment = align(_steps(twice, x), _steps(unrolled, x))
    assert alignment.as_map() == {"fc": "fc1", "relu()": "relu", "fc#2": "fc2"}
    assert (alignment.pairs[0][1].output < 0).any()  # fc1's output as it was, before the in-place ReLU overwrote it
    assert compare_models(twice, unrolled, x).passed  # bitwise: the same operations
    with torch.no_grad():
        unrolled.fc2.bias[0] += 1e-3
    first = compare_models(twice, unrolled, x).first_divergence()
    assert (first.layer, first.counterpart) == ("fc#2", "fc2")


@pytest.mark.parametrize(
    ("model_a", "model_b", "where"),
    [
        (nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.ReLU()), nn.Sequential(nn.Linear(4, 4), nn.ReLU()), "'1'"),
        (nn.Sequential(nn.Linear(4, 4), nn.ReLU()), nn.Sequential(nn.Linear(4, 4), nn.Tanh(), nn.Sigmoid()), "'1'"),
    ],
    ids=["a ReLU applied twice against once", "one activation against two of other kinds"],
)
def test_ambiguous_alignment(model_a, model_b, where):
    """An alignment ambiguous in part says where, compares the pairs it is sure of (the linear layers) and no other.
    (B's names are moved on past A's, so that a name does not decide what shapes and kinds leave open.)"""
    model_b = nn.Sequential(nn.Identity(), nn.Identity(), *model_b)  # no steps: they only move B's names on
    model_b[2].load_state_dict(model_a[0].state_dict())
    result = compare_models(model_a, model_b, torch.randn(3, 4), rtol=1e9, atol=1e9)
    assert result.alignment.ambiguous
    assert [(d.layer, d.counterpart) for d in result.layers] == [("0", "2")]  # no layer judged on a guess
    assert "1 of the pairs ambiguous, not compared (the 1 certain ones are): " in result.alignment.describe()
    assert f"A's {where}" in result.alignment.describe()


@pytest.mark.cost(builds=2, forwards=2)
@pytest.mark.parametrize(("case", "pair"), pair_params(lambda _, pair: library(pair) is not None))
def test_port_by_order_is_the_port(case, pair):
    """The library's model ported by execution order equals the hand-written port back."""
    other = seeded(library(pair), BUILD_SEED)
    target = uninitialised(case.build)
    pairs = port_by_order(other, target, case.input_space.sample())
    assert len(pairs) == len(target.state_dict())
    expected = ported_back(pair, other).state_dict()
    for name, tensor in target.state_dict().items():
        assert_close(tensor, expected[name], exact=True, what=name)


def test_port_by_order_names_or_table():
    """Porting by order pairs by name where the names match, and fails with a table where the shapes differ."""
    torch.manual_seed(0)
    a, b = nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3)), nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3))
    b[1].running_mean.fill_(2.0)
    assert port_by_order(b, a, torch.randn(2, 4)) == {name: name for name in a.state_dict()}
    for name, tensor in a.state_dict().items():
        assert torch.equal(tensor, b.state_dict()[name]), name
    wider = nn.Sequential(nn.Linear(4, 5), nn.BatchNorm1d(5))
    with pytest.raises(ValueError, match=r"tensor 0 differs[\s\S]*0\.weight +\(3, 4\) +0\.weight +\(5, 4\)  <- first"):
        pair_by_order(a, wider, torch.randn(2, 4))


def test_alignment_skips_a_one_sided_layer():
    """A layer only one side has is skipped where the kinds tell which."""
    torch.manual_seed(0)
    plain = nn.Sequential(nn.Linear(4, 4), nn.ReLU())
    normalised = nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4), nn.ReLU()).eval()  # a layer the other lacks
    alignment = align(_steps(plain, torch.randn(3, 4)), _steps(normalised, torch.randn(3, 4)))
    assert not alignment.ambiguous, alignment.describe()
    assert alignment.as_map() == {"0": "0", "1": "2"}  # by shape alone, the ReLU could meet the BatchNorm too


def _strided(first: bool) -> nn.Sequential:
    """A bottleneck's start with its stride on the 1x1 convolution (``first``) or on the 3x3: the same weights."""
    stride = (2, 1) if first else (1, 2)
    layers = {"conv1": nn.Conv2d(2, 4, 1, stride[0]), "relu": nn.ReLU(), "conv2": nn.Conv2d(4, 4, 3, stride[1], 1)}
    return nn.Sequential(OrderedDict(layers))


def test_alignment_by_name_where_shapes_part():
    """Steps of one name and kind meet where their shapes differ, and the first of them is where the models part;
    by shape alone the first 1x1 convolution's output could meet either 3x3's."""
    torch.manual_seed(0)
    paper, library = _strided(first=True), _strided(first=False)
    paper.load_state_dict(library.state_dict())
    x = torch.randn(1, 2, 8, 8)
    result = compare_models(paper, library, x)
    assert not result.alignment.ambiguous, result.alignment.describe()
    assert result.alignment.as_map() == {"conv1": "conv1", "relu": "relu", "conv2": "conv2"}
    first = result.first_divergence()
    assert (first.layer, first.shapes) == ("conv1", "1x4x4x4 | 1x4x8x8"), result.report()


class _DefinedBackwards(nn.Module):
    """Layers registered in the reverse of the order they run in: a state_dict's order is not the forward's."""

    def __init__(self) -> None:
        super().__init__()
        self.second, self.first = nn.Linear(8, 8), nn.Linear(4, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.second(F.relu(self.first(x)))


def test_port_by_order_follows_the_forward_pass():
    """Porting by order follows the forward pass, not the order the layers were registered in."""
    torch.manual_seed(0)
    source, target, x = (
        nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 8)),
        _DefinedBackwards(),
        torch.randn(3, 4),
    )
    assert port_by_order(source, target, x) == {
        "first.weight": "0.weight", "first.bias": "0.bias", "second.weight": "2.weight", "second.bias": "2.bias"
    }  # fmt: skip
    assert torch.equal(target(x), source(x))


class _Towers(nn.Module):
    """One convolution's output maps split between two towers that see the whole input, joined along channels."""

    def __init__(self, whole: nn.Conv2d) -> None:
        super().__init__()
        half = whole.out_channels // 2
        self.tower_a, self.tower_b = nn.Conv2d(whole.in_channels, half, 3), nn.Conv2d(whole.in_channels, half, 3)
        self.relu = nn.ReLU()
        with torch.no_grad():
            for tower, part in ((self.tower_a, slice(0, half)), (self.tower_b, slice(half, None))):
                tower.weight.copy_(whole.weight[part])
                tower.bias.copy_(whole.bias[part])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.relu(self.tower_a(x)), self.relu(self.tower_b(x))], dim=1)


def test_alignment_joins_towers():
    """Towers joined along channels meet the one layer they split, and a change in one is named."""
    torch.manual_seed(0)
    whole = nn.Sequential(nn.Conv2d(4, 6, 3), nn.ReLU()).double()
    towers, x = _Towers(whole[0]).double(), torch.randn(2, 4, 7, 7, dtype=torch.float64)
    alignment = align(_steps(whole, x), _steps(towers, x))
    assert alignment.as_map() == {"0": ("tower_a", "tower_b"), "1": ("relu", "relu#2")}
    assert compare_models(whole, towers, x, **tolerance(torch.float64)).passed  # two kernels: the float64 table
    with torch.no_grad():
        towers.tower_b.bias[0] += 1e-3
    first = compare_models(whole, towers, x, **tolerance(torch.float64)).first_divergence()
    assert (first.layer, first.counterpart) == ("0", "tower_a+tower_b")


class _FourBranches(nn.Module):
    """An inception module's shape: four branches of different depths off one input, joined along the channels; run
    in the order they are joined, or (``reversed_run``) the last first."""

    def __init__(self, reversed_run: bool = False) -> None:
        super().__init__()
        self.reversed_run = reversed_run
        self.branch1 = nn.Conv2d(4, 2, 1)
        self.branch2 = nn.Sequential(nn.Conv2d(4, 3, 1), nn.ReLU(), nn.Conv2d(3, 2, 3, padding=1))
        self.branch3 = nn.Sequential(nn.Conv2d(4, 3, 1), nn.ReLU(), nn.Conv2d(3, 2, 5, padding=2))
        self.branch4 = nn.Sequential(nn.MaxPool2d(3, 1, 1), nn.Conv2d(4, 2, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        order = (
            ["branch4", "branch3", "branch2", "branch1"]
            if self.reversed_run
            else ["branch1", "branch2", "branch3", "branch4"]
        )
        out = {name: self.get_submodule(name)(x) for name in order}
        return torch.cat([out[f"branch{i}"] for i in range(1, 5)], 1)


def test_alignment_orders_branches():
    """Four branches a ``cat`` joins meet branch for branch, whichever order each side ran them in (every pair
    certain), and a change in one branch is named there."""
    torch.manual_seed(0)
    in_order, x = _FourBranches().double(), torch.randn(2, 4, 6, 6, dtype=torch.float64)
    reordered = copy.deepcopy(in_order)
    reordered.reversed_run = True
    alignment = align(_steps(in_order, x), _steps(reordered, x))
    assert not alignment.ambiguous, alignment.describe()
    assert alignment.as_map() == {name: name for name in alignment.as_map()}  # each step meets its namesake
    assert len(alignment.pairs) == len(_steps(in_order, x))
    assert compare_models(in_order, reordered, x).passed  # the same operations: exact
    with torch.no_grad():
        reordered.branch3[2].bias[0] += 1e-3
    first = compare_models(in_order, reordered, x).first_divergence()
    assert (first.layer, first.counterpart) == ("branch3.2", "branch3.2")
