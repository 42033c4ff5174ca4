"""AlexNet: the hand-written reference vs torchvision's, same weights, side by side per group."""

from __future__ import annotations

import pytest
import torch

from benchmarks.flops import forward_flops, train_step_flops
from benchmarks.steps import DEVICE_BATCHES, FULL_BATCHES, forward_step, inputs_for, train_step
from reference.verify import port
from reference.verify.registry import CASES

CASE = CASES["alexnet"]


def _build(implementation: str, device: str) -> torch.nn.Module:
    torch.manual_seed(0)
    model = CASE.build()
    return (model if implementation == "reference" else port.alexnet_to_torchvision(model)).to(device)


@pytest.mark.parametrize("implementation", ["reference", "torchvision"])
@pytest.mark.parametrize(("device", "batch"), DEVICE_BATCHES)
def test_forward(benchmark, rounds, record, fp32_matmul, implementation, device, batch):
    model = _build(implementation, device)
    x, _ = inputs_for(CASE, batch, device)
    benchmark.group = f"alexnet forward {device} b{batch}"
    out = benchmark.pedantic(forward_step(model, device), args=(x,), **rounds)
    record(model="alexnet", implementation=implementation, device=device, dtype=torch.float32,
           pass_="forward", batch_size=batch, flop=forward_flops(CASE, batch))  # fmt: skip
    assert out.shape == (batch, 1000)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("implementation", ["reference", "torchvision"])
@pytest.mark.parametrize(("device", "batch"), DEVICE_BATCHES)
def test_train_step(benchmark, rounds, record, fp32_matmul, implementation, device, batch):
    model = _build(implementation, device)
    x, y = inputs_for(CASE, batch, device)
    benchmark.group = f"alexnet train {device} b{batch}"
    loss = benchmark.pedantic(train_step(model, device), args=(x, y), **rounds)
    record(model="alexnet", implementation=implementation, device=device, dtype=torch.float32,
           pass_="train", batch_size=batch, flop=train_step_flops(CASE, batch))  # fmt: skip
    assert torch.isfinite(loss)


@pytest.mark.parametrize("implementation", ["reference", "torchvision"])
@pytest.mark.parametrize("autocast", [None, torch.bfloat16], ids=["float32", "bf16-autocast"])
@pytest.mark.parametrize(("device", "batch"), FULL_BATCHES)
def test_train_step_channels_last(benchmark, rounds, record, fp32_matmul, implementation, autocast, device, batch):
    """The layouts a fast train step uses: channels_last, in float32 and under bf16 autocast (on CPU, oneDNN
    runs bf16 convolutions and matmuls on AMX where the processor has it). bf16 runs are compared with the
    bf16 GEMM rate."""
    model = _build(implementation, device).to(memory_format=torch.channels_last)
    x, y = inputs_for(CASE, batch, device)
    x = x.to(memory_format=torch.channels_last)
    benchmark.group = f"alexnet train {device} b{batch} channels_last {'bf16-autocast' if autocast else 'float32'}"
    loss = benchmark.pedantic(train_step(model, device, autocast_dtype=autocast), args=(x, y), **rounds)
    record(model="alexnet", implementation=implementation, device=device, dtype=autocast or torch.float32,
           pass_="train", batch_size=batch, flop=train_step_flops(CASE, batch), layout="channels_last")  # fmt: skip
    assert torch.isfinite(loss)
