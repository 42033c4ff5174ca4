"""The timed functions: an inference-mode forward and a full train step, with models and data built outside."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from benchmarks.flops import train_step_flops
from benchmarks.machine import synchronize
from reference.verify.compare import outputs
from reference.verify.records import Case

__all__ = [
    "BATCHES",
    "DEVICE_BATCHES",
    "device_batch_params",
    "device_batches",
    "forward_step",
    "inputs_for",
    "train_step",
]

# The batch sizes that matter on each device: one image (latency), and the largest power of two up to these whose
# train step stays within STEP_GFLOP (throughput): AlexNet's 32 images, 137 GFLOP, on the CPU; a model whose one
# image already costs more is timed at batch 1 alone.
BATCHES = {"cpu": (1, 32), "cuda": (1, 256)}
STEP_GFLOP = {"cpu": 150.0, "cuda": 40_000.0}


def device_batches(batches: dict[str, tuple[int, ...]] = BATCHES, *, full: bool = False) -> list[tuple[str, int]]:
    """(device, batch size) pairs; ``full``: only those worth timing where batches fill the device (batch > 1)."""
    return [(device, batch) for device, sizes in batches.items() for batch in sizes if batch > 1 or not full]


def _marks(device: str) -> list:
    return [pytest.mark.cuda] if device == "cuda" else []


# (device, batch size) parameters, CUDA ones marked `cuda`.
DEVICE_BATCHES = [pytest.param(d, b, id=f"{d}-b{b}", marks=_marks(d)) for d, b in device_batches()]


def case_batches(case: Case) -> dict[str, tuple[int, ...]]:
    """The case's batch sizes per device: 1, and the largest of :data:`BATCHES` within :data:`STEP_GFLOP`."""
    per_image = train_step_flops(case, 1) / 1e9
    out = {}
    for device, (one, most) in BATCHES.items():
        full = most
        while full > 1 and full * per_image > STEP_GFLOP[device]:
            full //= 2
        out[device] = (one, full) if full > one else (one,)
    return out


def device_batch_params(case: Case, params: list, *, full: bool = False) -> list:
    """``params`` (pytest.param of the case's implementations) crossed with the case's (device, batch) pairs."""
    sizes = case_batches(case)
    return [
        pytest.param(*param.values, device, batch, id=f"{device}-b{batch}-{param.id}",
                     marks=[*param.marks, *_marks(device)])
        for device, batch in device_batches(sizes, full=full)
        for param in params
    ]  # fmt: skip


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
    # lr 1e-3: at 1e-2, VGG with batch norm at batch 2, stepping on one batch again and again, diverged to inf
    # within ten steps, torchvision's alike; the step costs the same at any rate.
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)

    def step(x: Tensor, y: Tensor) -> Tensor:
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device, dtype=autocast_dtype or torch.bfloat16, enabled=autocast_dtype is not None):
            loss = sum(F.cross_entropy(out, y) for out in outputs(model(x)))  # the heads' losses too, where it has them
        loss.backward()
        optimizer.step()
        synchronize(device)
        return loss.detach()

    return step
