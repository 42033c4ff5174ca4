"""Analytic FLOPs of one benchmarked call, from the cases' layer tables (never from a profiler).

Only the multiply-accumulates of convolutions and linear layers are counted, two FLOPs each: the
work that dominates and that a GEMM rate is comparable with. Activations, pooling, LRN and the
optimizer step are left out of model counts. torch.utils.flop_counter is not used: it counts a
grouped convolution's backward as if it were dense.
"""

from __future__ import annotations

from reference.verify.records import Case

__all__ = ["forward_flops", "lrn_flops", "train_step_flops"]


def forward_flops(case: Case, batch: int, side: int | None = None) -> int:
    return 2 * batch * sum(case.architecture.macs(side).values())


def train_step_flops(case: Case, batch: int, side: int | None = None) -> int:
    """Forward, weight gradients (as many MACs as the forward) and input gradients of every weighted
    layer but the first (nothing asks for the image's gradient)."""
    macs = list(case.architecture.macs(side).values())
    return 2 * batch * (2 * sum(macs) + sum(macs[1:]))


def lrn_flops(shape: tuple[int, ...], size: int, backward: bool) -> int:
    """Per element: a square, size - 1 window additions, then divide, scale, add k, power and the
    final division (size + 5). The backward pass is counted as twice the forward."""
    elements = 1
    for n in shape:
        elements *= n
    forward = elements * (size + 5)
    return 3 * forward if backward else forward
