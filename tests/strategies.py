"""Hypothesis strategies derived from the cases: every range comes from a case's input space or options."""

from __future__ import annotations

import math
from typing import Any

import torch
from hypothesis import strategies as st

from reference.verify.records import Case

FLOAT_DTYPES = (torch.float32, torch.float64)
NON_FLOATING_DTYPES = (torch.bool, torch.uint8, torch.int32, torch.int64, torch.complex64, torch.complex128)
MAX_BATCH = 3
OPEN_RANGE = 32  # an open side range is cut this far above the default side: every pooling boundary once more


def _bounds(dim: int | tuple[int, int | None], default: int) -> tuple[int, int]:
    if isinstance(dim, int):
        return dim, dim
    low, high = dim
    return low, high if high is not None else max(low, default) + OPEN_RANGE


def drawn_size(case: Case, max_batch: int = MAX_BATCH, min_batch: int = 1) -> float:
    """A drawn input's mean number of values over the default input's: what a property's example costs next to a
    pass at the default input."""
    space = case.input_space
    defaults = (case.in_channels, case.default_side, case.default_side) if case.is_model else space.default[1:]
    size = (min_batch + max_batch) / 2
    for dim, default in zip(space.dims, defaults, strict=True):
        low, high = _bounds(dim, default)
        size *= (low + high) / 2
    return size / math.prod(space.default)


@st.composite
def options(draw, case: Case) -> dict[str, Any]:
    return {name: draw(st.sampled_from(list(values))) for name, values in case.input_space.options.items()}


@st.composite
def valid_shapes(draw, case: Case, opts: dict[str, Any] | None = None, min_batch: int = 1,
                 max_batch: int = MAX_BATCH) -> tuple[int, ...]:  # fmt: skip
    space = case.input_space
    defaults = (case.in_channels, case.default_side, case.default_side) if case.is_model else space.default[1:]
    shape = [draw(st.integers(min_batch, max_batch))]
    for index, (dim, default) in enumerate(zip(space.dims, defaults, strict=True)):
        low, high = _bounds(dim, default)
        step = (opts or {}).get(space.channels_multiple_of, 1) if index == 0 and space.channels_multiple_of else 1
        shape.append(step * draw(st.integers(-(-low // step), high // step)))
    return tuple(shape)


@st.composite
def valid_inputs(draw, case: Case, dtypes=FLOAT_DTYPES, opts: dict[str, Any] | None = None, min_batch: int = 1,
                 max_batch: int = MAX_BATCH) -> torch.Tensor:  # fmt: skip
    shape = draw(valid_shapes(case, opts, min_batch, max_batch))
    return case.input_space.sample(shape, dtype=draw(st.sampled_from(dtypes)), seed=draw(st.integers(0, 2**31 - 1)))


@st.composite
def invalid_inputs(draw, case: Case) -> tuple[torch.Tensor, type[Exception], str]:
    """One defect at a time, for a float32 model: (input, the error it must raise, a fragment of the message)."""
    low, high = case.valid_sides.low, case.valid_sides.high
    n, c, h, w = draw(valid_shapes(case))
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
    if defect == "floating dtype":
        dtype = draw(st.sampled_from([torch.float64, torch.float16, torch.bfloat16]))
        return torch.zeros(n, c, h, w, dtype=dtype), TypeError, "of dtype torch.float32 like its parameters"
    dtype = draw(st.sampled_from(NON_FLOATING_DTYPES))
    return torch.zeros(n, c, h, w, dtype=dtype), TypeError, str(dtype)
