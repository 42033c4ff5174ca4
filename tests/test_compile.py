"""torch.compile (inductor, CPU) against eager: slow, since compiling AlexNet takes a while on 2 cores."""

from __future__ import annotations

import pytest
import torch

from reference.specs import SPECS
from reference.testing import assert_close

pytestmark = pytest.mark.slow

ALL = list(SPECS.values())


@pytest.mark.parametrize("spec", ALL, ids=[spec.name for spec in ALL])
def test_compiled_model_matches_eager(built_models, spec):
    model = built_models.get(spec, prepared=True)
    x = torch.randn(2, spec.in_channels, spec.default_side, spec.default_side)
    torch._dynamo.reset()  # no graph or guard left from another model
    compiled = torch.compile(model, backend="inductor", fullgraph=True)
    with torch.no_grad():
        expected, out = model(x), compiled(x)
    # Inductor fuses the pointwise ops (LRN, squash, RBF) into generated C++ loops and may reassociate
    # their sums: the same terms in another order, so the float32 table bound, not bitwise.
    assert_close(out, expected, what=f"{spec.name} compiled vs eager")
