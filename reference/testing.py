"""Check your own model: the comparison API the suite itself uses.

``assert_equivalent(a, b, x)`` runs both models on ``x`` and compares outputs (and, with ``grads=True``,
gradients), naming the first layer whose output diverges, on both sides: the layers aligned automatically by
execution order, shape and name, or by a ``layers`` map; ``assert_close`` is
``torch.testing.assert_close`` with this suite's dtype-keyed ``TOLERANCES``, or exact.
"""

from reference.verify.compare import *  # noqa: F403 (this module is the public face of reference.verify.compare)
from reference.verify.compare import __all__  # noqa: F401
