"""Every model against its stored golden (shipped in the package, made by `python -m reference goldens --write`)."""

from __future__ import annotations

import copy

import pytest
import torch

from reference.verify import golden
from tests.helpers import MODELS, case_params


@pytest.fixture(scope="module")
def fingerprints():
    """The current case's stored and computed fingerprints (tests run case by case: one held at a time)."""
    held = {}

    def get(case):
        if case.name not in held:
            held.clear()
            held[case.name] = golden.load(case), golden.compute(case)
        return held[case.name]

    return get


# The fingerprints, computed once per case for the three tests below: closed-form weights (hashing every value is
# a few builds' work) and a forward pass in each dtype.
FINGERPRINTS = {"builds": 3, "forwards": 4}


@pytest.mark.cost(**FINGERPRINTS, core=True)
@pytest.mark.parametrize("dtype", golden.DTYPES, ids=str)
@pytest.mark.parametrize("case", case_params(MODELS))
def test_golden(fingerprints, case, dtype):
    """The model's fingerprint matches its stored golden."""
    stored, now = fingerprints(case)
    message = golden.drift(case, stored, now, dtype)
    assert message is None, message


@pytest.mark.cost(**FINGERPRINTS)
@pytest.mark.parametrize("case", case_params(MODELS))
def test_golden_drift_named(fingerprints, case):
    """A drifted layer is named."""
    stored, now = fingerprints(case)
    drifted = copy.deepcopy(now)
    layer = list(drifted[str(torch.float32)]["layers"])[2]
    drifted[str(torch.float32)]["layers"][layer]["abs_sum"] *= 1.001
    message = golden.drift(case, stored, drifted, torch.float32)
    assert message is not None
    assert message.startswith(f"{case.name} (torch.float32): first layer that drifted from the golden: '{layer}'")


@pytest.mark.cost(**FINGERPRINTS)
@pytest.mark.parametrize("case", case_params(MODELS))
def test_golden_shape_named(fingerprints, case):
    """A changed shape is named."""
    stored, now = fingerprints(case)
    changed = copy.deepcopy(now)
    layer = next(iter(changed[str(torch.float64)]["layers"]))
    changed[str(torch.float64)]["layers"][layer]["shape"][-1] += 1
    assert golden.drift(case, stored, changed, torch.float64).startswith(
        f"{case.name} (torch.float64): layer '{layer}'"
    )


def test_goldens_closed_form():
    """Goldens are version-independent data: the closed form is integer arithmetic and one multiplication (spot
    values, computed by hand)."""
    values = golden.closed_form((3,), salt=0, scale=2.0)
    expected = [(((i * 2654435761) % 2**32) / 2**32 - 0.5) * 2.0 for i in range(3)]
    assert values.tolist() == expected


def test_goldens_load_anywhere(tmp_path, monkeypatch):
    """The goldens load from the package in any working directory."""
    monkeypatch.chdir(tmp_path)
    for case in MODELS:
        assert golden.load(case)["model"] == case.name
