"""LeNet-5: 0.65 MFLOP per image, so its time is framework overhead (Python, dispatch, autograd), not arithmetic."""

from __future__ import annotations

import pytest
import torch

from benchmarks.flops import forward_flops, train_step_flops
from benchmarks.steps import DEVICE_BATCHES, forward_step, inputs_for, train_step
from reference.verify.registry import CASES


def _build(name: str, device: str) -> torch.nn.Module:
    torch.manual_seed(0)
    return CASES[name].build().to(device)


@pytest.mark.benchmark(warmup=True, warmup_iterations=100)
@pytest.mark.parametrize("name", ["lenet5", "lenet5-seed"])
@pytest.mark.parametrize(("device", "batch"), DEVICE_BATCHES)
def test_forward(benchmark, record, name, device, batch):
    case, model = CASES[name], _build(name, device)
    x, _ = inputs_for(case, batch, device)
    benchmark.group = f"lenet5 forward {device} b{batch}"
    out = benchmark(forward_step(model, device), x)
    record(model=name, implementation="reference", device=device, dtype=torch.float32,
           pass_="forward", batch_size=batch, flop=forward_flops(case, batch))  # fmt: skip
    assert out.shape == (batch, 10)
    assert torch.isfinite(out).all()


@pytest.mark.benchmark(warmup=True, warmup_iterations=100)
@pytest.mark.parametrize("name", ["lenet5", "lenet5-seed"])
@pytest.mark.parametrize(("device", "batch"), DEVICE_BATCHES)
def test_train_step(benchmark, record, name, device, batch):
    case, model = CASES[name], _build(name, device)
    x, y = inputs_for(case, batch, device)
    benchmark.group = f"lenet5 train {device} b{batch}"
    loss = benchmark(train_step(model, device), x, y)
    record(model=name, implementation="reference", device=device, dtype=torch.float32,
           pass_="train", batch_size=batch, flop=train_step_flops(case, batch))  # fmt: skip
    assert torch.isfinite(loss)
