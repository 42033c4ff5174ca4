"""AlexNet 2012: the grouped form vs the literal two-tower form, same weights, side by side per group."""

from __future__ import annotations

import pytest
import torch

from benchmarks.flops import forward_flops, train_step_flops
from benchmarks.steps import DEVICE_BATCHES, forward_step, inputs_for, train_step
from reference.verify import port
from reference.verify.registry import CASES

CASE = CASES["alexnet2012"]


def _build(implementation: str, device: str) -> torch.nn.Module:
    torch.manual_seed(0)
    model = CASE.build()
    return (model if implementation == "grouped" else port.two_tower_from_grouped(model)).to(device)


@pytest.mark.parametrize("implementation", ["grouped", "two-tower"])
@pytest.mark.parametrize(("device", "batch"), DEVICE_BATCHES)
def test_forward(benchmark, rounds, record, fp32_matmul, implementation, device, batch):
    model = _build(implementation, device)
    x, _ = inputs_for(CASE, batch, device)
    benchmark.group = f"alexnet2012 forward {device} b{batch}"
    out = benchmark.pedantic(forward_step(model, device), args=(x,), **rounds)
    record(model="alexnet2012", implementation=implementation, device=device, dtype=torch.float32,
           pass_="forward", batch_size=batch, flop=forward_flops(CASE, batch))  # fmt: skip
    assert out.shape == (batch, 1000)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("implementation", ["grouped", "two-tower"])
@pytest.mark.parametrize(("device", "batch"), DEVICE_BATCHES)
def test_train_step(benchmark, rounds, record, fp32_matmul, implementation, device, batch):
    model = _build(implementation, device)
    x, y = inputs_for(CASE, batch, device)
    benchmark.group = f"alexnet2012 train {device} b{batch}"
    loss = benchmark.pedantic(train_step(model, device), args=(x, y), **rounds)
    record(model="alexnet2012", implementation=implementation, device=device, dtype=torch.float32,
           pass_="train", batch_size=batch, flop=train_step_flops(CASE, batch))  # fmt: skip
    assert torch.isfinite(loss)
