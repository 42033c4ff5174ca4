"""Each model class next to its counterparts, same weights, side by side per group: one case per class (the one with
the fewest multiply-accumulates), since the configurations of a class run the same code.

A model with fewer than a million parameters (LeNet-5: 0.65 MFLOP an image) is timed by framework overhead
(Python, dispatch, autograd) rather than arithmetic: pytest-benchmark's calibrated rounds after a warm-up of
many calls. Larger ones run the ``rounds`` fixture's fixed warm-up and timed rounds.
"""

from __future__ import annotations

import pytest
import torch

from benchmarks.flops import forward_flops, train_step_flops
from benchmarks.steps import device_batch_params, forward_step, inputs_for, train_step
from reference.verify.pairs import library, ported, reference_module
from reference.verify.registry import CASES

SMALL = 1_000_000  # parameters


def _timed_cases() -> list:
    """The cheapest case of each model class (fewest multiply-accumulates at its default side)."""
    cheapest: dict[type, object] = {}
    for case in (case for case in CASES.values() if case.is_model):
        with torch.device("meta"):
            kind = type(case.build())
        macs = sum(case.architecture.macs().values())
        if kind not in cheapest or macs < sum(cheapest[kind].architecture.macs().values()):
            cheapest[kind] = case
    return [case for case in CASES.values() if case in cheapest.values()]


def _implementations(library_only: bool = False, full: bool = False) -> list:
    """(model case, "reference" or a counterpart's name, device, batch size) for every timed case and each of its
    benchmark batches; ``library_only``: only the models a library also builds, with that counterpart; ``full``: only
    batches that fill the device."""
    params = []
    for case in _timed_cases():
        counterparts = [pair.name for pair in case.pairs if library(pair) is not None or not library_only]
        if library_only and not counterparts:
            continue
        small = case.trainable_params < SMALL
        marks = [pytest.mark.benchmark(warmup=True, warmup_iterations=100)] if small else []
        names = [
            pytest.param(case, name, id=f"{case.name}-{name}", marks=marks) for name in ["reference", *counterparts]
        ]
        params += device_batch_params(case, names, full=full)
    return params


def _build(case, implementation: str, device: str) -> torch.nn.Module:
    reference = reference_module(case)
    if implementation != "reference":
        reference = ported(next(pair for pair in case.pairs if pair.name == implementation), reference)
    return reference.to(device)


def _timed(benchmark, rounds, case, function, *args):
    if case.trainable_params < SMALL:
        return benchmark(function, *args)
    return benchmark.pedantic(function, args=args, **rounds)


@pytest.mark.parametrize("pass_", ["forward", "train"])
@pytest.mark.parametrize(("case", "implementation", "device", "batch"), _implementations())
def test_step(benchmark, rounds, record, fp32_matmul, case, implementation, device, batch, pass_):
    """An inference-mode forward, or a train step (forward, cross-entropy, backward, SGD with momentum)."""
    model = _build(case, implementation, device)
    x, y = inputs_for(case, batch, device)
    benchmark.group = f"{case.name} {pass_} {device} b{batch}"
    if pass_ == "forward":
        out = _timed(benchmark, rounds, case, forward_step(model, device), x)
        assert out.shape == (batch, *case.output_shape(case.default_side, case.default_side))
    else:
        out = _timed(benchmark, rounds, case, train_step(model, device), x, y)
    flop = (forward_flops if pass_ == "forward" else train_step_flops)(case, batch)
    record(model=case.name, implementation=implementation, device=device, dtype=torch.float32, pass_=pass_,
           batch_size=batch, flop=flop)  # fmt: skip
    assert torch.isfinite(out).all()


@pytest.mark.parametrize(("case", "implementation", "device", "batch"), _implementations(library_only=True, full=True))
@pytest.mark.parametrize("autocast", [None, torch.bfloat16], ids=["float32", "bf16-autocast"])
def test_train_step_channels_last(benchmark, rounds, record, fp32_matmul, case, implementation, autocast, device,
                                  batch):  # fmt: skip
    """The layouts a fast train step uses, for the models a library also builds: channels_last, in float32 and
    under bf16 autocast (on CPU, oneDNN runs bf16 convolutions and matmuls on AMX where the processor has it).
    bf16 runs are compared with the bf16 GEMM rate."""
    model = _build(case, implementation, device).to(memory_format=torch.channels_last)
    x, y = inputs_for(case, batch, device)
    x = x.to(memory_format=torch.channels_last)
    benchmark.group = f"{case.name} train {device} b{batch} channels_last {'bf16-autocast' if autocast else 'float32'}"
    loss = _timed(benchmark, rounds, case, train_step(model, device, autocast_dtype=autocast), x, y)
    record(model=case.name, implementation=implementation, device=device, dtype=autocast or torch.float32,
           pass_="train", batch_size=batch, flop=train_step_flops(case, batch), layout="channels_last")  # fmt: skip
    assert torch.isfinite(loss)
