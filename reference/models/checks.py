"""Input checks every reference model and hand-written layer starts with: errors raised where the input
enters, naming the module, what it accepts and what it got.

Tracers pass through them and see only the model's own operations:

* ``torch.fx.symbolic_trace`` hands in a Proxy, which has no sizes: nothing is checked (the graph is the model's).
* ``torch.jit.trace`` (and the legacy ONNX exporter) records sizes as 0-d tensors: the example input is checked
  at trace time, on its concrete sizes, and nothing is recorded.
* ``torch.export`` and ``torch.compile`` with dynamic sizes hand in SymInts: the valid range becomes a
  constraint on the symbol (``torch._check``), so an export whose dynamic dimension reaches outside it fails
  and names the range; static sizes are checked as in eager mode.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import torch
from torch import SymInt, Tensor

__all__ = ["SideRange", "check_floating", "check_input", "is_proxy", "sizes"]

# What autocast casts to its lower precision: float64 tensors are left as they are, so a float64 input
# meets bf16 weights (or float64 weights a bf16 input) inside the first convolution.
AUTOCAST_CASTS = frozenset({torch.float32, torch.float16, torch.bfloat16})


@dataclass(frozen=True)
class SideRange:
    """The input sides a model accepts: ``low..high``, ``high=None`` meaning no upper bound."""

    low: int
    high: int | None

    def __contains__(self, side: object) -> bool:
        return isinstance(side, int) and side >= self.low and (self.high is None or side <= self.high)

    def __str__(self) -> str:
        return f"{self.low}..{self.high}" if self.high is not None else f">={self.low}"


def _autocast(device_type: str) -> bool:
    """Whether autocast is on for ``device_type``; False where autocast has no such device (meta)."""
    try:
        return torch.is_autocast_enabled(device_type)
    except RuntimeError:
        return False


def is_proxy(x: object) -> bool:
    """An FX proxy: a symbol with no sizes or dtype to check."""
    return isinstance(x, torch.fx.Proxy)


def sizes(x: Tensor) -> tuple[int | SymInt, ...]:
    """``x.shape`` as ints (SymInts under export or dynamic compile), also while ``torch.jit.trace`` records."""
    if not torch.jit.is_tracing():
        return tuple(x.shape)
    with warnings.catch_warnings():  # the trace records sizes as 0-d tensors; the check reads the example's
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        return tuple(int(side) for side in x.shape)


def check_floating(name: str, x: object, accepts: str, dims: range = range(4, 5)) -> str:
    """Raise TypeError/ValueError unless ``x`` is a floating-point tensor with a number of dimensions in ``dims``;
    return the message's "got ..." clause for the caller's own checks."""
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} expects {accepts}; got {type(x).__name__}")
    got = f"got shape {sizes(x)}, dtype {x.dtype}"
    if x.dim() not in dims:
        raise ValueError(f"{name} expects {accepts}; {got} ({x.dim()}-D)")
    if not x.is_floating_point():
        raise TypeError(f"{name} expects {accepts}; {got} (not floating point)")
    return got


def check_input(model: str, x: object, in_channels: int, sides: SideRange, like: Tensor) -> None:
    """Raise TypeError/ValueError naming ``model``, what it accepts and what it got.

    ``like``: one of the model's parameters; the input must be on its device and, unless autocast is on
    for that device (it casts inputs and weights alike), of its dtype.
    """
    if is_proxy(x):
        return
    accepts = f"a 4-D floating-point tensor (N, {in_channels}, H, W) with H and W in {sides}"
    got = check_floating(model, x, accepts)
    _, channels, height, width = sizes(x)
    if channels != in_channels:
        raise ValueError(f"{model} expects {accepts}; {got} ({channels} channels)")
    for name, side in (("H", height), ("W", width)):
        if isinstance(side, SymInt):  # a dynamic size: the range is a constraint on it, not a branch
            message = f"{model} expects {accepts}; {name} is dynamic and may fall outside {sides}"
            torch._check(side >= sides.low, lambda message=message: message)
            if sides.high is not None:
                torch._check(side <= sides.high, lambda message=message: message)
        elif side not in sides:
            raise ValueError(f"{model} expects {accepts}; {got} (H x W = {height} x {width})")
    if x.device != like.device:
        raise ValueError(f"{model} expects {accepts}, on {like.device} where its parameters are; {got}, on {x.device}")
    if x.dtype != like.dtype and not (_autocast(x.device.type) and {x.dtype, like.dtype} <= AUTOCAST_CASTS):
        raise TypeError(
            f"{model} expects {accepts}, of dtype {like.dtype} like its parameters (under autocast: float32, "
            f"float16 or bfloat16 for parameters of one of those); {got}"
        )
