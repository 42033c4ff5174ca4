"""Local response normalisation on conv1's output shape: the hand-written layer vs nn.LocalResponseNorm."""

from __future__ import annotations

import pytest
import torch

from benchmarks.flops import lrn_flops
from benchmarks.machine import synchronize
from benchmarks.steps import DEVICE_BATCHES
from reference import LocalResponseNorm

SIZE, ALPHA, BETA, K = 5, 1e-4, 0.75, 2.0


def _layer(implementation: str) -> torch.nn.Module:
    if implementation == "reference":
        return LocalResponseNorm(size=SIZE, alpha=ALPHA, beta=BETA, k=K)
    return torch.nn.LocalResponseNorm(size=SIZE, alpha=SIZE * ALPHA, beta=BETA, k=K)  # torch divides alpha by size


def _conv1_output(batch: int, device: str) -> torch.Tensor:
    generator = torch.Generator().manual_seed(0)
    return (10 * torch.randn(batch, 96, 55, 55, generator=generator)).relu().to(device)


@pytest.mark.benchmark(warmup=True, warmup_iterations=10)
@pytest.mark.parametrize("implementation", ["reference", "torch"])
@pytest.mark.parametrize(("device", "batch"), DEVICE_BATCHES)
def test_forward(benchmark, record, implementation, device, batch):
    layer, x = _layer(implementation), _conv1_output(batch, device)

    def forward(x):
        with torch.inference_mode():
            out = layer(x)
        synchronize(device)
        return out

    benchmark.group = f"lrn forward {device} b{batch}"
    out = benchmark(forward, x)
    record(model="lrn", implementation=implementation, device=device, dtype=torch.float32,
           pass_="forward", batch_size=batch, flop=lrn_flops(tuple(x.shape), SIZE, backward=False))  # fmt: skip
    assert out.shape == x.shape
    assert torch.isfinite(out).all()


@pytest.mark.benchmark(warmup=True, warmup_iterations=10)
@pytest.mark.parametrize("implementation", ["reference", "torch"])
@pytest.mark.parametrize(("device", "batch"), DEVICE_BATCHES)
def test_forward_backward(benchmark, record, implementation, device, batch):
    layer, x = _layer(implementation), _conv1_output(batch, device).requires_grad_()
    grad = torch.ones_like(x)

    def forward_backward(x):
        x.grad = None
        layer(x).backward(grad)
        synchronize(device)
        return x.grad

    benchmark.group = f"lrn forward+backward {device} b{batch}"
    dx = benchmark(forward_backward, x)
    record(model="lrn", implementation=implementation, device=device, dtype=torch.float32,
           pass_="train", batch_size=batch, flop=lrn_flops(tuple(x.shape), SIZE, backward=True))  # fmt: skip
    assert dx.shape == x.shape
    assert torch.isfinite(dx).all()
