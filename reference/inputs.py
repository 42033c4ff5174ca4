"""The input checks every reference model and hand-written layer starts with: errors raised where the
input enters, naming the module, what it accepts and what it got."""

from __future__ import annotations

from torch import Tensor

__all__ = ["check_4d_floating"]


def check_4d_floating(name: str, x: object, accepts: str) -> str:
    """Raise TypeError/ValueError unless ``x`` is a 4-D floating-point tensor; return the message's
    "got ..." clause for the caller's own checks."""
    __tracebackhide__ = True
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} expects {accepts}; got {type(x).__name__}")
    got = f"got shape {tuple(x.shape)}, dtype {x.dtype}"
    if x.dim() != 4:
        raise ValueError(f"{name} expects {accepts}; {got} ({x.dim()}-D)")
    if not x.is_floating_point():
        raise TypeError(f"{name} expects {accepts}; {got} (not floating point)")
    return got
