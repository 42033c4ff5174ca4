"""Layers aligned with no map, ports by execution order: the alignment equals every hand-written map, a planted
perturbation is named on both sides with and without the map, and an ambiguous alignment says so."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from reference.verify.align import align, pair_by_order, port_by_order, record
from reference.verify.build import seeded, uninitialised
from reference.verify.compare import assert_close, capture_outputs, compare_models, tolerance
from reference.verify.pairs import compare_pair, ported, tolerances
from tests.helpers import BUILD_SEED, PAIRS, heavy, pair_params


def _steps(model: nn.Module, x: torch.Tensor) -> list:
    with torch.no_grad(), record(model) as steps:
        model(x)
    return steps


def _names(mapped: str | tuple[str, ...] | list[str]) -> str | tuple[str, ...]:
    return mapped if isinstance(mapped, str) else tuple(mapped)


# The AlexNet-sized pairs in -m slow: in CI's environment they raised the default run's peak RSS from 2.9 to 3.4 GB.
LOCATED = [
    pytest.param(
        case, counterpart, id=f"{case.name} vs {counterpart.name}", marks=[pytest.mark.slow] if heavy(case) else []
    )
    for case, counterpart in PAIRS
    if counterpart.layers
]


@pytest.mark.parametrize(("case", "counterpart"), LOCATED)
def test_the_automatic_alignment_is_the_hand_written_map_and_names_a_perturbation_on_both_sides(
    modules, case, counterpart
):
    """With no map, every entry of the hand-written map is found. A shift of every bias of each mapped layer with
    one, one at a time, is named on both sides, with the map and without it: 1e-3 where the pair is exact, 0.1 where
    it has the table's tolerance (outputs of LeNet-5's RBF head are ~100), times the layer's largest output where
    that exceeds 1 (the table's atol scales with it: VGG's paper init reaches ~1e5 by block4)."""
    reference = modules.reference(case)
    other = ported(counterpart, reference)  # a copy: the shared counterpart would see the perturbation too
    weighted = [name for name in counterpart.layers if getattr(reference.get_submodule(name), "bias", None) is not None]
    tol = {key: tolerances(counterpart, torch.float32)[key] for key in ("rtol", "atol")}
    x = case.input_space.sample()
    with torch.no_grad(), capture_outputs(reference, weighted) as outputs:
        reference(x)
    for layer in weighted:
        bias = reference.get_submodule(layer).bias
        original = bias.detach().clone()
        shift = (1e-3 if counterpart.exact_forward else 0.1) * max(1.0, outputs[layer].abs().max().item())
        with torch.no_grad():
            bias.add_(shift)  # every unit: one alone may sit under a ReLU's zero
        try:
            mapped = compare_pair(counterpart, reference, other, x, grads=False)
            aligned = compare_models(reference, other, x, **tol)
        finally:
            with torch.no_grad():
                bias.copy_(original)
        mapped_to = counterpart.layers[layer]
        expected = mapped_to if isinstance(mapped_to, str) else "+".join(mapped_to)
        assert not aligned.alignment.ambiguous, aligned.alignment.describe()
        found = aligned.alignment.as_map()
        assert {name: found.get(name) for name in counterpart.layers} == {
            name: _names(names) for name, names in counterpart.layers.items()
        }
        for result in (mapped, aligned):
            assert not result.passed, layer
            first = result.first_divergence()
            assert (first.layer, first.counterpart) == (layer, expected), result.report()
        assert "aligned by execution order and shape" in aligned.report()


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


def test_a_module_called_twice_a_functional_op_and_an_in_place_relu_align_and_locate():
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
def test_an_ambiguous_alignment_says_where_and_compares_outputs_only(model_a, model_b, where):
    model_b.load_state_dict(model_a.state_dict())
    result = compare_models(model_a, model_b, torch.randn(3, 4), rtol=1e9, atol=1e9)
    assert result.alignment.ambiguous
    assert result.layers == []  # no layer judged on a guess
    assert result.alignment.describe().startswith("layer alignment ambiguous, outputs compared only: ")
    assert f"A's {where}" in result.alignment.describe()


@pytest.mark.parametrize(("case", "counterpart"), pair_params(lambda _, c: c.library and c.port_back is not None))
def test_porting_the_library_model_by_order_equals_the_hand_written_port(case, counterpart):
    library = seeded(counterpart.library, BUILD_SEED)
    target = uninitialised(case.build)
    pairs = port_by_order(library, target, case.input_space.sample())
    assert len(pairs) == len(target.state_dict())
    expected = counterpart.port_back(library).state_dict()
    for name, tensor in target.state_dict().items():
        assert_close(tensor, expected[name], exact=True, what=name)


def test_porting_by_order_pairs_by_name_where_the_names_match_and_fails_with_a_table_where_shapes_differ():
    torch.manual_seed(0)
    a, b = nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3)), nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3))
    b[1].running_mean.fill_(2.0)
    assert port_by_order(b, a, torch.randn(2, 4)) == {name: name for name in a.state_dict()}
    for name, tensor in a.state_dict().items():
        assert torch.equal(tensor, b.state_dict()[name]), name
    wider = nn.Sequential(nn.Linear(4, 5), nn.BatchNorm1d(5))
    with pytest.raises(ValueError, match=r"tensor 0 differs[\s\S]*0\.weight +\(3, 4\) +0\.weight +\(5, 4\)  <- first"):
        pair_by_order(a, wider, torch.randn(2, 4))


def test_a_layer_only_one_side_has_is_skipped_where_the_kinds_tell_which():
    torch.manual_seed(0)
    plain = nn.Sequential(nn.Linear(4, 4), nn.ReLU())
    normalised = nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4), nn.ReLU()).eval()  # a layer the other lacks
    alignment = align(_steps(plain, torch.randn(3, 4)), _steps(normalised, torch.randn(3, 4)))
    assert not alignment.ambiguous, alignment.describe()
    assert alignment.as_map() == {"0": "0", "1": "2"}  # by shape alone, the ReLU could meet the BatchNorm too


class _DefinedBackwards(nn.Module):
    """Layers registered in the reverse of the order they run in: a state_dict's order is not the forward's."""

    def __init__(self) -> None:
        super().__init__()
        self.second, self.first = nn.Linear(8, 8), nn.Linear(4, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.second(F.relu(self.first(x)))


def test_porting_by_order_follows_the_forward_pass_not_the_registration_order():
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


def test_towers_joined_along_channels_meet_the_one_layer_they_split_and_a_change_in_one_is_named():
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
