"""Narrowed builds (reference.models.tables.narrowed), what the default run's cheap checks stand on: the same layers,
kinds and names at divided widths, the input and the classes kept; a width the divisor does not divide, or one the
paper fixes, refused; the context left behind on exit."""

from __future__ import annotations

import pytest
import torch

from reference.models import tables
from reference.verify.pairs import ported
from tests.helpers import CASES, case_params, meta_model, narrow, narrowable

NARROWED = case_params(list(CASES.values()), narrowable)


def _widths(table: tables.Architecture) -> dict[str, int]:
    return {name: getattr(spec, "out_channels", getattr(spec, "out_features", None)) for name, spec in table
            if isinstance(spec, (tables.Conv2dSpec, tables.LinearSpec))}  # fmt: skip


@pytest.mark.cost
@pytest.mark.parametrize("case", NARROWED)
def test_narrowed_table(case):
    """Every hidden width divided by the case's divisor, the input's channels and the output's width kept, the same
    layers in the same order (a residual table's runs of blocks cut to their first: ``Architecture.shortened``); the
    model built inside has the narrowed table's parameters, layer by layer, and so has each counterpart (built from
    the table), its output as wide as the full model's."""
    full = case.table().shortened
    with narrow(case):
        table = case.table()
        model = meta_model(case, narrow=True)
        with torch.device("meta"):
            others = [ported(pair, model, share=True) for pair in case.pairs]
    assert list(table.layers) == list(full.layers)
    assert [type(spec) for _, spec in table] == [type(spec) for _, spec in full]
    widths, narrowed = _widths(full), _widths(table)
    for output in full.outputs:  # the classes: the output layer's, each auxiliary head's
        assert narrowed.pop(output) == widths.pop(output)
    assert narrowed == {name: width // case.narrow for name, width in widths.items()}
    assert table.in_channels == full.in_channels
    assert sum(table.trainable_params().values()) == sum(p.numel() for p in model.parameters())
    x = case.input_space.sample().to("meta")
    for other in others:
        assert other.eval()(x).shape == model.eval()(x).shape == meta_model(case)(x).shape


def test_narrow_refused():
    """A table with a width the divisor does not divide, or with a layer whose width the paper fixes (LeNet-5's
    subsampling and connection tables), is not narrowed: a ValueError naming the layer."""
    with pytest.raises(ValueError, match="c1: a width of 6 cannot be divided by 4"):
        CASES["lenet5"].table().narrowed(4)
    with pytest.raises(ValueError, match=r"s2: a SubsamplingSpec's width is fixed"):
        CASES["lenet5"].table().narrowed(2)


def test_narrowed_context():
    """Inside, every table is narrowed, a table derived from another once (the dense form's from the FC form's);
    outside, the full tables again, even after an error inside."""
    case = CASES["vgg2014_a_dense"]
    full = case.table()
    with tables.narrowed(4):
        fc6 = case.table().layers["fc6"]
    assert (fc6.in_channels, fc6.out_channels) == (
        full.layers["fc6"].in_channels // 4,
        full.layers["fc6"].out_channels // 4,
    )
    assert fc6.kernel_size == full.layers["fc6"].kernel_size
    assert case.table() is full

    def fails_inside() -> None:
        with tables.narrowed(4):
            raise RuntimeError

    with pytest.raises(RuntimeError):
        fails_inside()
    assert case.table() is full
