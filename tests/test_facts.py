"""Paper and library facts: parameters, connections, neurons and multiplications, derived vs quoted."""

from __future__ import annotations

import pytest
import torch
import torchvision

from reference import bitmaps
from reference.layers import SparseConv2d
from reference.lenet import C3_TABLE
from reference.specs import SPECS, torchvision_meta

ALL = list(SPECS.values())


def _measured_params_per_layer(model: torch.nn.Module, layers: list[str]) -> dict[str, int]:
    """Trainable parameters of each named layer, counted on the built model (tower halves added)."""
    counts = dict.fromkeys(layers, 0)
    for name, param in model.named_parameters():
        if param.requires_grad:
            layer = name.rsplit(".", 1)[0].removeprefix("tower_a.").removeprefix("tower_b.")
            counts[layer] += param.numel()
    return counts


@pytest.fixture(params=ALL, ids=lambda spec: spec.name)
def spec_and_model(request, built_models):
    return request.param, built_models.get(request.param)


def test_total_trainable_parameters_match_the_paper(spec_and_model):
    spec, model = spec_and_model
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) == spec.facts.trainable_params
    assert sum(spec.architecture.trainable_params().values()) == spec.facts.trainable_params


def test_per_layer_parameters_built_equal_derived(spec_and_model):
    spec, model = spec_and_model
    derived = spec.architecture.trainable_params()
    assert _measured_params_per_layer(model, list(derived)) == derived
    for layer, quoted in spec.facts.params_per_layer.items():
        assert derived[layer] == quoted, layer


def test_lenet5_connections_match_the_paper():
    facts, arch = SPECS["lenet5"].facts, SPECS["lenet5"].architecture
    assert arch.connections() == dict(facts.connections_per_layer)
    assert sum(arch.connections().values()) == facts.total_connections == 340_908


def test_lenet5_c3_table_is_table_one():
    sizes = [len(maps) for maps in C3_TABLE]
    assert sizes == [3] * 6 + [4] * 9 + [6]
    assert all(len(set(maps)) == len(maps) and set(maps) <= set(range(6)) for maps in C3_TABLE)
    assert len(set(C3_TABLE)) == 16


def test_sparse_c3_alone_is_initialised_by_appendix_a():
    torch.manual_seed(0)
    layer = SparseConv2d(in_channels=6, table=C3_TABLE, kernel_size=5)
    bound = torch.tensor([2.4 / (len(maps) * 25) for maps in C3_TABLE])  # fan-in: maps seen x 5 x 5
    assert (layer.bias.abs() <= bound).all()
    assert (layer.weight.abs() <= bound[layer.out_index][:, None, None]).all()
    assert layer.weight.abs().max() > 0.5 * bound.min()  # drawn, not left zero


def test_lenet5_prototypes_are_fixed_distinct_plus_minus_one_bitmaps():
    model = SPECS["lenet5"].builder()
    prototypes = model.output.prototypes
    assert prototypes.shape == (10, bitmaps.HEIGHT * bitmaps.WIDTH) == (10, 84)
    assert set(prototypes.unique().tolist()) == {-1.0, 1.0}
    assert len({tuple(row.tolist()) for row in prototypes}) == 10
    assert not any(p is prototypes for p in model.parameters())
    assert all(
        len(digit) == bitmaps.HEIGHT and {len(line) for line in digit} == {bitmaps.WIDTH} for digit in bitmaps.DIGITS
    )


def test_alexnet2012_neurons_per_layer_and_the_printed_discrepancy():
    spec = SPECS["alexnet2012"]
    neurons = spec.architecture.neurons()
    assert neurons == dict(spec.facts.neurons_per_layer)
    printed, _note = spec.facts.printed_discrepancies["conv1"]
    # The paper's printed figure is kept as a documented fact, and it does disagree with the network:
    assert printed == 253_440 != neurons["conv1"] == 55 * 55 * 96


def test_alexnet_parameters_equal_torchvision_model_and_meta():
    with torch.device("meta"):  # counting needs shapes only
        library = torchvision.models.alexnet(weights=None)
    measured = sum(p.numel() for p in library.parameters())
    assert measured == torchvision_meta()["num_params"] == SPECS["alexnet"].facts.trainable_params


def test_alexnet_multiplications_match_torchvision_ops():
    spec = SPECS["alexnet"]
    macs = sum(spec.architecture.macs(224).values())
    assert macs == spec.facts.macs
    # torchvision's _ops is GMAC rounded to 3 decimals: multiplications only, batch 1, 224x224.
    assert round(macs / 1e9, 3) == torchvision_meta()["_ops"]


def test_alexnet_min_size_equals_torchvision_meta():
    assert (SPECS["alexnet"].valid_sides.low,) * 2 == tuple(torchvision_meta()["min_size"])


def test_public_api_names():
    import reference

    assert reference.list_models() == list(SPECS)
    assert reference.get_spec("alexnet") is SPECS["alexnet"]
    assert callable(reference.port.alexnet_from_torchvision)
