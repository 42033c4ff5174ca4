"""Hypothesis strategies derived from the specs: every range comes from a spec, none is typed here."""

from __future__ import annotations

import torch
from hypothesis import strategies as st

from reference.specs import ModelSpec

FLOAT_DTYPES = (torch.float32, torch.float64)
NON_FLOATING_DTYPES = (torch.bool, torch.uint8, torch.int32, torch.int64, torch.complex64, torch.complex128)
MAX_BATCH = 3


def side_bounds(spec: ModelSpec) -> tuple[int, int]:
    """The spec's valid sides; an open range is cut at the default side plus the last conv's receptive
    step (32 px for every model here), enough to cross every pooling boundary once more."""
    sides = spec.valid_sides
    return sides.low, sides.high if sides.high is not None else max(sides.low, spec.default_side) + 32


@st.composite
def valid_shapes(draw, spec: ModelSpec, min_batch: int = 1, max_batch: int = MAX_BATCH) -> tuple[int, int, int, int]:
    low, high = side_bounds(spec)
    batch = draw(st.integers(min_batch, max_batch))
    return batch, spec.in_channels, draw(st.integers(low, high)), draw(st.integers(low, high))


@st.composite
def valid_inputs(
    draw, spec: ModelSpec, dtypes=FLOAT_DTYPES, min_batch: int = 1, max_batch: int = MAX_BATCH
) -> torch.Tensor:
    shape = draw(valid_shapes(spec, min_batch, max_batch))
    dtype = draw(st.sampled_from(dtypes))
    seed = draw(st.integers(0, 2**31 - 1))
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


@st.composite
def invalid_inputs(draw, spec: ModelSpec) -> tuple[torch.Tensor, type[Exception], str]:
    """One defect at a time: (input, the error it must raise, a fragment of the message)."""
    low, high = spec.valid_sides.low, spec.valid_sides.high
    n, c, h, w = draw(valid_shapes(spec))
    outside = [low - 1] + ([high + 1] if high is not None else [])
    defect = draw(st.sampled_from(["height", "width", "channels", "rank", "dtype", "floating dtype"]))
    if defect == "height":
        return torch.zeros(n, c, draw(st.sampled_from(outside)), w), ValueError, "H x W"
    if defect == "width":
        return torch.zeros(n, c, h, draw(st.sampled_from(outside))), ValueError, "H x W"
    if defect == "channels":
        wrong = draw(st.integers(1, 2 * c + 2).filter(lambda k: k != c))
        return torch.zeros(n, wrong, h, w), ValueError, f"({wrong} channels)"
    if defect == "rank":
        shape = draw(st.sampled_from([(c, h, w), (n, 1, c, h, w), (n, c * h * w), (n,)]))
        return torch.zeros(shape), ValueError, f"{len(shape)}-D"
    if defect == "floating dtype":  # for a float32 model, as the property builds them
        dtype = draw(st.sampled_from([torch.float64, torch.float16, torch.bfloat16]))
        return torch.zeros(n, c, h, w, dtype=dtype), TypeError, "of dtype torch.float32 like its parameters"
    dtype = draw(st.sampled_from(NON_FLOATING_DTYPES))
    return torch.zeros(n, c, h, w, dtype=dtype), TypeError, str(dtype)


@st.composite
def lrn_cases(draw, min_groups: int = 1, max_groups: int = 3) -> tuple[torch.Tensor, int, int, float, float, float]:
    """(input, size, groups, alpha, beta, k) for LocalResponseNorm against torch's."""
    groups = draw(st.integers(min_groups, max_groups))
    channels = groups * draw(st.integers(1, 12))
    shape = (draw(st.integers(1, 3)), channels, draw(st.integers(1, 9)), draw(st.integers(1, 9)))
    seed = draw(st.integers(0, 2**31 - 1))
    x = 10 * torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    size = draw(st.integers(1, 7))
    alpha = draw(st.sampled_from([1e-4, 1e-3, 2e-5, 0.1]))
    beta = draw(st.sampled_from([0.5, 0.75, 1.0]))
    k = draw(st.sampled_from([1.0, 2.0]))
    return x, size, groups, alpha, beta, k
