"""A model's forward pass as the comparisons take it: its outputs as one tensor, under a seed, and the fixed cotangent
its backward pass is given (:mod:`reference.verify.compare` and the stored runs of :mod:`reference.verify.runs`)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["cotangent", "forward", "joined", "outputs"]


def cotangent(like: Tensor) -> Tensor:
    """A fixed pseudo-random upstream gradient (its own generator: the global RNG is left alone)."""
    generator = torch.Generator().manual_seed(0)
    return torch.randn(like.shape, generator=generator, dtype=torch.float64).to(like)


def outputs(out: object) -> tuple[Tensor, ...]:
    """A model's outputs as a tuple: a tensor alone, or the tensors of a (named) tuple in its order (torchvision's
    GoogLeNet in train mode: the logits, then its auxiliary classifiers'); a head that is off (None) is left out."""
    if isinstance(out, Tensor):
        return (out,)
    if isinstance(out, (tuple, list)):
        return tuple(value for value in out if value is not None)
    raise TypeError(f"a model's output is a tensor or a tuple of tensors; got {type(out).__name__}")


def joined(out: object) -> Tensor:
    """The outputs as one tensor: a lone tensor itself, several flattened and concatenated (compared, scaled and
    differentiated as one; outputs of another number or size make another length, which compares as different)."""
    parts = outputs(out)
    return parts[0] if len(parts) == 1 else torch.cat([part.flatten() for part in parts])


def forward(model: nn.Module, x: Tensor, seed: int | None) -> Tensor:
    """``model(x)`` joined, reseeded with ``seed`` first where given (dropout's masks), the global RNG restored."""
    if seed is None:
        return joined(model(x))
    with torch.random.fork_rng(devices=[x.device] if x.is_cuda else []):
        torch.manual_seed(seed)
        return joined(model(x))
