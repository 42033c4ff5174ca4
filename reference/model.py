"""What every reference model shares: input validated where it enters, then the architecture's layers."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from reference.architecture import Architecture, SideRange
from reference.inputs import check_4d_floating

__all__ = ["ReferenceModel", "check_input"]

# What autocast casts to its lower precision: float64 tensors are left as they are, so a float64 input
# meets bf16 weights (or float64 weights a bf16 input) inside the first convolution.
AUTOCAST_CASTS = frozenset({torch.float32, torch.float16, torch.bfloat16})


def check_input(model: str, x: object, in_channels: int, sides: SideRange, like: Tensor | None = None) -> None:
    """Raise TypeError/ValueError naming ``model``, what it accepts and what it got.

    ``like``: one of the model's parameters; the input must be on its device and, unless autocast is on
    for that device (it casts inputs and weights alike), of its dtype.
    """
    __tracebackhide__ = True
    accepts = f"a 4-D floating-point tensor (N, {in_channels}, H, W) with H and W in {sides}"
    got = check_4d_floating(model, x, accepts)
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


class ReferenceModel(nn.Module):
    """Base of the reference models: ``forward`` validates the input, ``_forward_impl`` computes."""

    architecture: Architecture

    def __init__(self, architecture: Architecture) -> None:
        super().__init__()
        self.architecture = architecture
        self.valid_sides = architecture.valid_sides

    @property
    def num_classes(self) -> int:
        return self.architecture.num_classes

    def forward(self, x: Tensor) -> Tensor:
        like = next(self.parameters(), None)
        check_input(type(self).__name__, x, self.architecture.in_channels, self.valid_sides, like)
        return self._forward_impl(x)

    def _forward_impl(self, x: Tensor) -> Tensor:
        raise NotImplementedError
