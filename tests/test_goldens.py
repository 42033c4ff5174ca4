"""Every model against its stored golden (tests/golden/, made by `python -m reference goldens --write`)."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch

from reference import golden
from reference.specs import SPECS

ALL = list(SPECS.values())
GOLDEN_DIR = Path(__file__).resolve().parent / "golden"


@pytest.fixture(scope="module", params=ALL, ids=[spec.name for spec in ALL])
def spec_and_fingerprints(request):
    spec = request.param
    return spec, golden.load(spec, GOLDEN_DIR), golden.compute(spec)


@pytest.mark.parametrize("dtype", golden.DTYPES, ids=str)
def test_model_matches_its_golden(spec_and_fingerprints, dtype):
    spec, stored, now = spec_and_fingerprints
    golden.check(spec, stored, now, dtype)


def test_goldens_are_version_independent_data():
    """The closed form is integer arithmetic and one multiplication: spot values, computed by hand."""
    values = golden.closed_form((3,), salt=0, scale=2.0)
    expected = [(((i * 2654435761) % 2**32) / 2**32 - 0.5) * 2.0 for i in range(3)]
    assert values.tolist() == expected


def test_a_drifted_layer_is_named(spec_and_fingerprints):
    spec, stored, now = spec_and_fingerprints
    drifted = copy.deepcopy(now)
    layer = list(drifted[str(torch.float32)]["layers"])[2]
    drifted[str(torch.float32)]["layers"][layer]["abs_sum"] *= 1.001
    with pytest.raises(AssertionError, match=rf"{spec.name} \(torch.float32\): first layer that drifted .*'{layer}'"):
        golden.check(spec, stored, drifted, torch.float32)
