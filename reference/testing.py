"""Check your own model: the comparison API the suite itself uses.

``assert_equivalent(a, b, x)`` runs both models on ``x`` and compares outputs (and, with ``grads=True``,
gradients), naming the first layer whose output diverges, on both sides: the layers aligned automatically by
execution order, shape and name, or by a ``layers`` map; ``assert_close`` is
``torch.testing.assert_close`` with this suite's dtype-keyed ``TOLERANCES``, or exact. ``b`` may be a stored run
(``record_run``, ``save_run``, ``load_run``): a model's run on another device, torch release or tree.
``assert_distributed_equivalent(build, x)`` trains a model under DDP (or FSDP) against what one process computes.
"""

from reference.verify import compare, runs
from reference.verify.compare import *  # noqa: F403 (this module is the public face of reference.verify.compare)
from reference.verify.distributed import DistributedError, assert_distributed_equivalent
from reference.verify.runs import *  # noqa: F403 (and of stored runs)

__all__ = [*compare.__all__, *runs.__all__, "DistributedError", "assert_distributed_equivalent"]
