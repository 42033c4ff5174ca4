"""The timed functions: an inference-mode forward and a full train step, with models and data built outside."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from benchmarks.machine import synchronize
from reference.verify.cases import Case

__all__ = ["DEVICE_BATCHES", "FULL_BATCHES", "forward_step", "inputs_for", "train_step"]

# (device, batch size) cases, the batch sizes that matter on each device; CUDA ones marked `cuda`.
DEVICE_BATCHES = [
    pytest.param(device, batch, id=f"{device}-b{batch}", marks=[pytest.mark.cuda] if device == "cuda" else [])
    for device, batch in [("cpu", 1), ("cpu", 32), ("cuda", 1), ("cuda", 256)]
]
# Variants worth timing only where batches fill the device.
FULL_BATCHES = [case for case in DEVICE_BATCHES if case.values[1] > 1]


def inputs_for(case: Case, batch: int, device: str) -> tuple[Tensor, Tensor]:
    generator = torch.Generator().manual_seed(0)
    side = case.default_side
    x = torch.randn(batch, case.in_channels, side, side, generator=generator)
    y = torch.randint(0, case.architecture.num_classes, (batch,), generator=generator)
    return x.to(device), y.to(device)


def forward_step(model: nn.Module, device: str) -> Callable[[Tensor], Tensor]:
    model.eval()

    def forward(x: Tensor) -> Tensor:
        with torch.inference_mode():
            out = model(x)
        synchronize(device)  # CUDA launches are asynchronous: the time must include the work
        return out

    return forward


def train_step(
    model: nn.Module, device: str, autocast_dtype: torch.dtype | None = None
) -> Callable[[Tensor, Tensor], Tensor]:
    """Forward, cross-entropy, backward and an SGD-with-momentum step; the optimizer is built here, once."""
    model.train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)

    def step(x: Tensor, y: Tensor) -> Tensor:
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device, dtype=autocast_dtype or torch.bfloat16, enabled=autocast_dtype is not None):
            loss = F.cross_entropy(model(x), y)
        loss.backward()
        optimizer.step()
        synchronize(device)
        return loss.detach()

    return step
