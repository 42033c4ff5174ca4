"""Every model under torch.distributed (reference/verify/distributed.py) as in one process, and the failures a user
meets there named: a rank-dependent forward, an unused parameter, a buffer one rank updates, outputs of another
structure, a worker that dies or hangs (no process left behind). ``pytest -m distributed``: outside the default run."""

from __future__ import annotations

import copy
import functools
import importlib
import os
import signal
import time

import pytest
import torch
from torch import nn

from reference.verify.compare import _diff, tolerance
from reference.verify.distributed import (
    DistributedError,
    _Config,
    _Reference,
    assert_distributed_equivalent,
    fsdp_unsupported,
)
from reference.verify.registry import FAMILIES
from tests.helpers import MODELS, SMALLEST, case_params

distributed = pytest.mark.distributed
PRIMARY = [next(c for c in importlib.import_module(f"reference.verify.registry.{f}").CASES if c.is_model)
           for f in FAMILIES]  # fmt: skip
GPUS = torch.cuda.device_count() if torch.cuda.is_available() else 0


def _batch(case, per_rank: int = 2, world_size: int = 2) -> torch.Tensor:
    """Two samples a rank (batch norm needs more than one value a channel) at the case's default input."""
    return case.input_space.sample((per_rank * world_size, *case.input_space.default[1:]))


@distributed
@pytest.mark.parametrize("case", case_params(MODELS))
def test_ddp(case):
    """Every model, 3 SGD steps under DDP with 2 gloo ranks: every parameter and buffer of every rank after every step
    within the float32 table of the single-process reference, and a midway checkpoint reloaded unwrapped."""
    result = assert_distributed_equivalent(case.name, _batch(case))
    assert [(s.step, s.rank) for s in result.steps] == [(step, rank) for step in range(3) for rank in range(2)]
    assert "reloaded unwrapped: every tensor as trained" in result.checkpoint


@distributed
@pytest.mark.parametrize("case", case_params(PRIMARY))
def test_fsdp(case):
    """Each family's primary model under FSDP's fully_shard (each weighted leaf a unit) with 2 gloo ranks."""
    if why := fsdp_unsupported():
        pytest.skip(why)
    result = assert_distributed_equivalent(case.name, _batch(case), wrap="fsdp")
    assert len(result.steps) == 6


class _Toy(nn.Module):
    """A small net with batch norm and dropout; ``fault`` plants what a user meets under DDP."""

    def __init__(self, fault: str = "") -> None:
        super().__init__()
        self.fault = fault
        self.conv, self.drop, self.fc = nn.Conv2d(3, 4, 3), nn.Dropout(0.5), nn.Linear(16, 5)
        self.bn = nn.Identity() if fault == "no batch norm" else nn.BatchNorm2d(4)
        self.unused = nn.Linear(2, 2) if fault == "unused" else None
        self.register_buffer("calls", torch.zeros(()))
        self.forwards = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, ...]:
        rank = torch.distributed.get_rank() if torch.distributed.is_initialized() else 0
        self.forwards += 1
        if self.fault in ("killed", "hung") and rank == 1 and self.forwards == 2:
            if self.fault == "killed":
                os.kill(os.getpid(), signal.SIGKILL)
            time.sleep(600)
        if self.fault == "buffer" and rank == 1:
            self.calls += 1
        x = self.bn(self.conv(x)).relu()  # (N, 4, 4, 4)
        x = self.fc(self.drop(torch.nn.functional.adaptive_avg_pool2d(x, 2).flatten(1)))  # (N, 5)
        if self.fault == "parameter" and rank == 1:
            with torch.no_grad():  # after its use: the gradients stay the same, the parameter moves on one rank
                self.fc.bias.add_(0.01)
        if self.fault == "rank":
            x = x * (1 + rank)
        if self.fault == "structure" and rank == 1:
            return x, x
        return x


def toy(fault: str = "") -> nn.Module:
    return _Toy(fault)


TOY_X = torch.randn(4, 3, 6, 6, generator=torch.Generator().manual_seed(0))


@distributed
@pytest.mark.parametrize(
    ("fault", "message"),
    [
        ("rank", "after step 0, rank 0's parameter 'bn.bias' parts"),
        ("unused", "parameter(s) ['unused.weight', 'unused.bias'] get no gradient"),
        ("buffer", "after step 0, rank 1's buffer 'calls' parts"),
        ("parameter", "after step 0, rank 1's parameters or gradients are not rank 0's"),
        ("structure", "step 0: rank 1's outputs are (5, 5) a sample, the single-process run's (5)"),
    ],
    ids=["rank in forward", "unused parameter", "buffer on one rank", "parameter on one rank", "outputs' structure"],
)
def test_planted(fault, message):
    """Each planted fault fails with a message naming what parted and where."""
    with pytest.raises(DistributedError) as failed:
        assert_distributed_equivalent(functools.partial(toy, fault), TOY_X, timeout=60)
    assert message in str(failed.value)
    assert not any(_alive(pid) for pid in failed.value.pids)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@distributed
@pytest.mark.parametrize(
    ("fault", "message"),
    [
        ("killed", "rank 1 died (killed by SIGKILL, exit code -9) after step 0"),
        ("hung", "did not finish step 1 within the timeout (8 s); rank 0 in step 1's backward"),
    ],
    ids=["killed", "hung"],
)
def test_worker_lost(fault, message):
    """A rank killed mid-run, or one that hangs, is named (a hung rank's stack shown) and no process is left: every
    worker is gone when the error reaches the caller."""
    with pytest.raises(DistributedError) as failed:
        assert_distributed_equivalent(functools.partial(toy, fault), TOY_X, timeout=8)
    assert message in str(failed.value)
    assert len(failed.value.pids) == 2
    assert not any(_alive(pid) for pid in failed.value.pids)
    if fault == "hung":
        assert "rank 1's stack:" in str(failed.value)
        assert "in forward" in str(failed.value)


@distributed
def test_reference_needed():
    """The single-process reference is what DDP computes up to summation order: with batch norm and dropout the ranks
    agree with it within the float32 table (here bit for bit), while PyTorch's own reference, a copy trained on the full
    batch, parts from it beyond that table after one step."""
    result = assert_distributed_equivalent("tests.test_distributed:toy", TOY_X)
    assert result.max_diff <= result.atol
    cfg = _Config(toy, 0, 1, 0.1, "ddp", "gloo", "cpu", 2, 0, "", 60)
    with torch.random.fork_rng(devices=[]):
        reference = _Reference(cfg, TOY_X)
        full = copy.deepcopy(reference.model)
        reference.step()
        torch.manual_seed(1)
        optimizer = torch.optim.SGD(full.parameters(), lr=0.1)
        target = torch.randn(4, 5, generator=torch.Generator().manual_seed(0), dtype=torch.float64).float()
        (full(TOY_X) - target).pow(2).mean().backward()
        optimizer.step()
    apart = max(
        (a - b).abs().max().item() for a, b in zip(reference.model.parameters(), full.parameters(), strict=True)
    )
    assert apart > 100 * (result.atol + result.rtol)


@pytest.mark.parametrize("batch_norm", [False, True], ids=["dropout only", "batch norm"])
def test_synchronised_reference(batch_norm):
    """The SyncBatchNorm reference (the global batch in one forward, each dropout drawing each rank's rows from that
    rank's stream) is the per-rank reference where a model has no batch norm, within the float32 table after two
    steps, and parts from it where it has (the statistics are the global batch's)."""
    bounds = tolerance(torch.float32)
    trained = []
    for sync in (False, True):
        cfg = _Config(
            functools.partial(toy, "" if batch_norm else "no batch norm"),
            0,
            2,
            0.1,
            "ddp",
            "gloo",
            "cpu",
            2,
            0,
            "",
            60,
            sync,
        )
        with torch.random.fork_rng(devices=[]):
            reference = _Reference(cfg, TOY_X)
            reference.step()
            reference.step()
        trained.append([p.detach() for p in reference.model.parameters()])
    close = all(_diff(a, b, **bounds)[1] for a, b in zip(*trained, strict=True))
    assert close is not batch_norm


def test_refused():
    """What cannot be run is a ValueError before any process starts: a batch that does not split evenly, an unknown
    wrap, more CUDA ranks than GPUs."""
    with pytest.raises(ValueError, match=r"the global batch \(5\) must split into 2 equal slices"):
        assert_distributed_equivalent(toy, torch.randn(5, 3, 6, 6))
    with pytest.raises(ValueError, match="wrap is one of"):
        assert_distributed_equivalent(toy, TOY_X, wrap="deepspeed")
    if GPUS < 2 and torch.cuda.is_available():
        with pytest.raises(ValueError, match="need as many GPUs"):
            assert_distributed_equivalent(toy, TOY_X.cuda())


@distributed
@pytest.mark.cuda
@pytest.mark.skipif(GPUS < 2, reason=f"NCCL needs two GPUs; this machine has {GPUS}")
@pytest.mark.parametrize("sync_batchnorm", [False, True], ids=["batch norm", "SyncBatchNorm"])
@pytest.mark.parametrize("case", case_params(PRIMARY))
def test_nccl(case, sync_batchnorm):
    """Each family's primary model under DDP with 2 NCCL ranks, a GPU each, within the float32 table; and with its
    batch norms converted to SyncBatchNorm, against batch norm over the global batch."""
    result = assert_distributed_equivalent(case.name, _batch(case).cuda(), sync_batchnorm=sync_batchnorm)
    assert len(result.steps) == 6


@distributed
def test_command(capsys):
    """``python -m reference distributed``: the smallest model's table, a row per step and rank, exit 0; a batch that
    does not split evenly is a usage error (exit 2) naming it."""
    from reference import cli

    assert cli.main(["distributed", SMALLEST]) == 0
    out = capsys.readouterr().out
    assert len([line for line in out.splitlines() if line[:1].isdigit()]) == 6
    assert out.rstrip().endswith("agree")
    with pytest.raises(SystemExit) as stopped:
        cli.main(["distributed", SMALLEST, "--input", "3,1,32,32"])
    assert stopped.value.code == 2
    assert "the global batch (3) must split into 2 equal slices" in capsys.readouterr().err
