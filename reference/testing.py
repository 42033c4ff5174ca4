"""Check your own model: the comparison API the suite itself uses.

``assert_equivalent(a, b, x)`` runs both models on ``x`` and compares outputs (and, with ``grads=True``,
gradients), naming the first layer of a ``layers`` map whose output diverges; ``assert_close`` is
``torch.testing.assert_close`` with this suite's dtype-keyed :data:`TOLERANCES`, or exact.
"""

from reference.verify.compare import (
    EXACT,
    TOLERANCES,
    Comparison,
    LayerMap,
    assert_close,
    assert_equivalent,
    capture_outputs,
    compare_models,
    grad_tolerance,
    tolerance,
)

__all__ = [
    "EXACT",
    "TOLERANCES",
    "Comparison",
    "LayerMap",
    "assert_close",
    "assert_equivalent",
    "capture_outputs",
    "compare_models",
    "grad_tolerance",
    "tolerance",
]
