"""Input checks every reference model and hand-written layer starts with: errors raised where the input
enters, naming the module, what it accepts and what it got."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor

if TYPE_CHECKING:
    from reference.models.tables import SideRange

__all__ = ["check_floating", "check_input"]

# What autocast casts to its lower precision: float64 tensors are left as they are, so a float64 input
# meets bf16 weights (or float64 weights a bf16 input) inside the first convolution.
AUTOCAST_CASTS = frozenset({torch.float32, torch.float16, torch.bfloat16})


def check_floating(name: str, x: object, accepts: str, dims: range = range(4, 5)) -> str:
    """Raise TypeError/ValueError unless ``x`` is a floating-point tensor with a number of dimensions in ``dims``;
    return the message's "got ..." clause for the caller's own checks."""
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} expects {accepts}; got {type(x).__name__}")
    got = f"got shape {tuple(x.shape)}, dtype {x.dtype}"
    if x.dim() not in dims:
        raise ValueError(f"{name} expects {accepts}; {got} ({x.dim()}-D)")
    if not x.is_floating_point():
        raise TypeError(f"{name} expects {accepts}; {got} (not floating point)")
    return got


def check_input(model: str, x: object, in_channels: int, sides: SideRange, like: Tensor | None = None) -> None:
    """Raise TypeError/ValueError naming ``model``, what it accepts and what it got.

    ``like``: one of the model's parameters; the input must be on its device and, unless autocast is on
    for that device (it casts inputs and weights alike), of its dtype.
    """
    accepts = f"a 4-D floating-point tensor (N, {in_channels}, H, W) with H and W in {sides}"
    got = check_floating(model, x, accepts)
    if x.shape[1] != in_channels:
        raise ValueError(f"{model} expects {accepts}; {got} ({x.shape[1]} channels)")
    if x.shape[2] not in sides or x.shape[3] not in sides:
        raise ValueError(f"{model} expects {accepts}; {got} (H x W = {x.shape[2]} x {x.shape[3]})")
    if like is None:
        return
    if x.device != like.device:
        raise ValueError(f"{model} expects {accepts}, on {like.device} where its parameters are; {got}, on {x.device}")
    autocast_casts = torch.is_autocast_enabled(x.device.type) and {x.dtype, like.dtype} <= AUTOCAST_CASTS
    if x.dtype != like.dtype and not autocast_casts:
        raise TypeError(
            f"{model} expects {accepts}, of dtype {like.dtype} like its parameters (under autocast: float32, "
            f"float16 or bfloat16 for parameters of one of those); {got}"
        )
