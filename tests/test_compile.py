"""torch.compile (inductor, CPU) against eager."""

from __future__ import annotations

import pytest
import torch

from reference.verify.compare import assert_close
from tests.helpers import MODELS, case_params


# Inductor's compilation: ~10 s a model on 2 cores, whatever its size.
@pytest.mark.cost(seconds=10.0, forwards=2)
@pytest.mark.parametrize("case", case_params(MODELS))
def test_compile(modules, case):
    """torch.compile (inductor, fullgraph) computes what eager mode does."""
    model = modules.reference(case)
    x = case.input_space.sample()
    torch._dynamo.reset()  # no graph or guard left from another model
    compiled = torch.compile(model, backend="inductor", fullgraph=True)
    with torch.no_grad():
        expected, out = model(x), compiled(x)
    # Inductor fuses the pointwise ops (LRN, squash, RBF) into generated C++ loops and may reassociate
    # their sums: the same terms in another order, so the float32 table bound, not bitwise.
    assert_close(out, expected, what=f"{case.name} compiled vs eager")
