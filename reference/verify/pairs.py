"""The one comparison path: a case's reference module next to one of its counterparts.

The suite, ``python -m reference verify`` and the benchmarks build and compare pairs through these
functions. A pair compares exactly (rtol = atol = 0) where both sides run the same operations in the
same order, and with :data:`reference.verify.compare.TOLERANCES` elsewhere, the counterpart saying why.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from reference.verify.build import seeded
from reference.verify.cases import Case, Counterpart
from reference.verify.compare import Comparison, compare_models, grad_tolerance, tolerance

__all__ = ["BUILD_SEED", "compare_pair", "ported", "reference_module", "tolerances"]

BUILD_SEED = 0


def reference_module(
    case: Case, *, dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu", **options: Any
) -> nn.Module:
    """The case's module built under :data:`BUILD_SEED` (the global RNG untouched), prepared, in eval mode."""
    module = seeded(lambda: case.build(**options), BUILD_SEED)
    if case.prepare is not None:
        case.prepare(module)
    return module.to(device=device, dtype=dtype).eval()


def ported(counterpart: Counterpart, reference: nn.Module, *, share: bool = False) -> nn.Module:
    """The counterpart with the reference's weights, dtype, device and mode; with ``share``, where the port can,
    the reference's own tensors rather than a copy."""
    other = counterpart.port(reference, share=True) if share and counterpart.shares else counterpart.port(reference)
    return other.train(reference.training)


def tolerances(
    counterpart: Counterpart, dtype: torch.dtype, *, drawn: bool = False, cuda: bool = False
) -> dict[str, float]:
    """``compare_models``' tolerance keywords for this pair in ``dtype``; ``drawn``: at a drawn input; ``cuda``: on
    CUDA, where kernels may be chosen per call, so that the table (and the pair's CUDA bound) applies even to a
    pair that is exact on the CPU."""
    if cuda:
        return tolerance(dtype) | grad_tolerance(dtype) | dict(counterpart.cuda_tolerance.get(dtype, {}))
    table = tolerance(dtype, counterpart.exact_forward) | grad_tolerance(dtype, counterpart.exact_grads)
    return table | dict(counterpart.drawn_tolerance.get(dtype, {})) if drawn else table


def compare_pair(
    counterpart: Counterpart,
    reference: nn.Module,
    other: nn.Module,
    x: Tensor,
    *,
    drawn: bool = False,
    seed: int | None = None,
    grads: bool = True,
) -> Comparison:
    """Outputs, mapped layers and (``grads``) gradients of both: the input's and every parameter's that the
    counterpart maps back."""
    grads_to_a = None if counterpart.grads is None else (lambda g: counterpart.grads(other, g))
    return compare_models(
        reference, other, x, layers=counterpart.layers, grads=grads, grads_to_a=grads_to_a, seed=seed,
        **tolerances(counterpart, x.dtype, drawn=drawn),
    )  # fmt: skip
