"""Paper and library facts: parameters, connections, neurons, multiplications and tables, derived vs quoted."""

from __future__ import annotations

import ast
import dataclasses
import sys
from pathlib import Path

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

import reference
from reference.models import bitmaps
from reference.models.layers import SparseConv2d
from reference.verify.compare import capture_inputs, capture_outputs, layer_modules
from reference.verify.counterparts import LiteralSparseConv2d
from reference.verify.facts import facts, params_per_layer
from tests.helpers import CASES, LAYERS, MODELS, case_params, meta_model, meta_seconds, narrowable, table_of


@pytest.mark.cost(aim="facts")
@pytest.mark.parametrize("case", case_params(MODELS))
def test_facts(case):
    """Every published fact equals its measured one, and every erratum differs."""
    checked = facts(case, meta_model(case))
    failures = [f"{f.kind} {f.layer}: published {f.published}, measured {f.measured}" for f in checked if not f.holds]
    assert not failures, "\n".join(failures)


def test_unknown_measure():
    """A fact quoted under a measure the harness does not take is an error, not a fact skipped."""
    case = MODELS[0]
    for quoted in ({"totals": {"parameter count": 1}}, {"breakdown": {"parameter count": {}}}):
        paper = dataclasses.replace(case.paper, **quoted)
        with pytest.raises(ValueError, match=r"no such measure \['parameter count'\]"):
            facts(dataclasses.replace(case, paper=paper), meta_model(case))


@pytest.mark.cost
@pytest.mark.parametrize("case", case_params(MODELS))
def test_parameters_per_layer(case):
    """Trainable parameters per layer, counted on the built module, equal the table's."""
    derived = case.architecture.trainable_params()
    counted = params_per_layer(meta_model(case))
    assert {layer: counted.get(layer, 0) for layer in derived} == derived
    assert set(counted) <= set(derived)  # no trainable parameter outside the table's layers


@pytest.mark.cost(seconds=lambda case: 2 * meta_seconds(case), aim="counts")
@pytest.mark.parametrize("case", case_params(MODELS))
def test_counts(case):
    """Multiply-accumulates, neurons and connections counted on the running model equal the table's. Counted another way than the table's formulas: multiplications by torch's FlopCounterMode (2 FLOPs a MAC) on
    the forward pass, a sparse layer's by its literal form (one convolution per connection, since the layer
    computes densely over zeros); neurons as the outputs' sizes; connections as MACs plus one bias per output. On
    the meta device: the counts follow from the operations and shapes alone. (A layer without a bias, ResNet's
    convolutions, has none to count.)"""
    _counts(case, narrow=False)


@pytest.mark.cost(seconds=lambda case: 2 * meta_seconds(case, narrow=True), aim="counts", narrow=True)
@pytest.mark.parametrize("case", case_params(MODELS, narrowable))
def test_counts_narrow(case):
    """The same on the narrowed build (``Case.narrow``) against its narrowed table."""
    _counts(case, narrow=True)


def _counts(case, narrow: bool) -> None:
    model = meta_model(case, narrow=narrow)
    x = case.input_space.sample().to("meta")
    side = x.shape[-1]
    table = table_of(case, narrow=narrow)
    layers = {layer: layer_modules(model, layer) for layer in table.macs(side)}
    names = [n for module_names in layers.values() for n in module_names]
    with (
        capture_outputs(model, names) as seen,
        capture_inputs(model, names) as inputs,
        FlopCounterMode(display=False) as counter,
        torch.no_grad(),
    ):
        model(x)
    flops = {
        name.split(".", 1)[1]: sum(per_op.values()) for name, per_op in counter.get_flop_counts().items() if "." in name
    }
    macs, neurons = {}, {}
    for layer, names in layers.items():
        macs[layer] = sum(_macs(model.get_submodule(n), inputs[n], flops.get(n, 0)) for n in names)
        neurons[layer] = sum(seen[n].numel() for n in names)
    assert macs == table.macs(side)
    assert neurons == table.neurons(side)
    connections = table.connections(side)
    biases = {layer: neurons[layer] * all(model.get_submodule(n).bias is not None for n in layers[layer])
              for layer in macs}  # fmt: skip
    assert {layer: macs[layer] + biases[layer] for layer in macs} == {layer: connections[layer] for layer in macs}


def _macs(module: torch.nn.Module, x: torch.Tensor, flops: int) -> int:
    if not isinstance(module, SparseConv2d):
        return flops // 2
    with FlopCounterMode(display=False) as counter, torch.no_grad(), torch.device(x.device):
        LiteralSparseConv2d(module)(x)
    return counter.get_total_flops() // 2


@pytest.mark.cost(builds=1, steps=1)
@pytest.mark.parametrize("case", case_params(MODELS, lambda case: bool(case.paper.fixed)))
def test_fixed_buffers(case):
    """Fixed buffers are data a train step leaves alone: the stated shape and values, no two rows alike."""
    model = case.build()
    buffers, parameters = dict(model.named_buffers()), dict(model.named_parameters())
    for name, (shape, values) in case.paper.fixed.items():
        assert name in buffers, name
        assert name not in parameters, name
        buffer = buffers[name]
        assert tuple(buffer.shape) == shape, name
        assert set(buffer.unique().tolist()) == set(values), name
        assert len({tuple(row.tolist()) for row in buffer}) == shape[0], f"{name}: two rows are the same"
    before = {name: buffers[name].clone() for name in case.paper.fixed}
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    model(case.input_space.sample()).sum().backward()
    optimizer.step()
    for name, value in before.items():
        assert torch.equal(dict(model.named_buffers())[name], value), name


def test_prototype_bitmaps():
    """Ten digits drawn as 7x12 bitmaps."""
    assert len(bitmaps.DIGITS) == 10
    for digit in bitmaps.DIGITS:
        assert len(digit) == bitmaps.HEIGHT
        assert {len(line) for line in digit} == {bitmaps.WIDTH}
        assert set("".join(digit)) == {"#", "."}
    assert bitmaps.prototypes().shape == (10, bitmaps.HEIGHT * bitmaps.WIDTH)


@pytest.mark.cost
@pytest.mark.parametrize("case", case_params(LAYERS))
def test_layer_repr(case):
    """A hand-written layer shows its hyper-parameters in its repr, each option at each value."""
    layer = case.build()
    assert layer.extra_repr(), f"{type(layer).__name__} prints as {layer!r}"
    for name, values in case.input_space.options.items():
        for value in values:
            assert f"{name}={value}" in repr(case.build(**{name: value})), (name, value)


def test_public_api_names():
    """The package's names: the models by name, each case's record, the ports, the testing API."""
    assert reference.list_models() == sorted(case.name for case in MODELS)
    assert all(reference.get_spec(name) is case for name, case in CASES.items())
    assert callable(reference.port.alexnet_from_torchvision)
    from reference.testing import assert_equivalent

    assert callable(assert_equivalent)


def _imported_modules(path: Path) -> set[str]:
    """The top-level packages a source file imports (every import statement, at any depth)."""
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


def test_model_library_imports():
    """The model library imports torch and itself alone."""
    """What `import reference` loads: the package's __init__ and the model library (checked for real, in a
    fresh interpreter, by .ci/run: `import reference` leaves torchvision out of sys.modules)."""
    root = Path(reference.__file__).parent
    for path in [root / "__init__.py", *(root / "models").glob("*.py")]:
        for name in _imported_modules(path):
            top = name.split(".")[0]
            allowed = top in sys.stdlib_module_names or top == "torch" or name.startswith("reference.models")
            assert allowed, f"{path.relative_to(root.parent)} imports {name}"
