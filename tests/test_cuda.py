"""CUDA: parity with CPU, parity with torchvision, deterministic mode, and what the library does there.

Every test here carries the ``cuda`` marker and is skipped cleanly without a GPU (root conftest).
TF32 is off in every test (tests/conftest.py). bf16 autocast and channels_last on CUDA are the
device-parametrized tests of tests/test_layouts.py. Whether cuBLAS needs CUBLAS_WORKSPACE_CONFIG on the
running torch is recorded in the benchmarks' machine_info, not here: a test asserts what is known.
"""

from __future__ import annotations

import copy

import pytest
import torch

from reference import LocalResponseNorm
from reference.verify.compare import assert_close, assert_equivalent, outputs, tolerance
from reference.verify.pairs import grads_to_reference, ported, reference_module
from tests.helpers import MODELS, case_params, pair_params

pytestmark = pytest.mark.cuda


@pytest.fixture
def deterministic():
    """torch.use_deterministic_algorithms(True); conftest sets CUBLAS_WORKSPACE_CONFIG before CUDA starts."""
    before = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    yield
    torch.use_deterministic_algorithms(before)


class _OnDevice(torch.nn.Module):
    """Runs ``model`` on ``device``: lets assert_equivalent compare a CPU and a CUDA copy layer by layer."""

    def __init__(self, model: torch.nn.Module, device: str) -> None:
        super().__init__()
        self.model, self.device = model.to(device), device

    def forward(self, x):
        return self.model(x.to(self.device)).cpu()


@pytest.mark.parametrize("case", case_params(MODELS))
def test_cuda_parity(case):
    """CPU and CUDA agree, forward and gradients, in float64."""
    model = reference_module(case, dtype=torch.float64)
    on_gpu = _OnDevice(copy.deepcopy(model), "cuda")
    x = case.input_space.sample(dtype=torch.float64)
    # Different kernels (cuDNN vs oneDNN) sum in different orders: the float64 table applies.
    assert_equivalent(model, on_gpu, x, **tolerance(torch.float64), grads=True,
                      grads_to_a=lambda g: {k.removeprefix("model."): v.cpu() for k, v in g.items()})  # fmt: skip


@pytest.mark.parametrize(("case", "pair"), pair_params(lambda _, pair: pair.tolerance.exact))
def test_cuda_exact_pairs(case, pair):
    """The pairs exact on the CPU agree on CUDA, forward and gradients, within the table (or their CUDA bound)."""
    reference = reference_module(case, device="cuda")
    other = ported(pair, reference)
    x = case.input_space.sample(dtype=torch.float32).cuda()
    # Same modules, same shapes: expected bitwise, but cuDNN may pick algorithms per call (and some weight
    # gradient algorithms accumulate with atomics), so the float32 table is the bound, or the pair's own CUDA
    # bound where its library adds with atomics itself; max |Δ| is printed.
    tol = pair.tolerance.keywords(torch.float32, device="cuda")
    result = assert_equivalent(reference, other, x, **tol, layers=pair.layers, grads=True,
                               grads_to_a=grads_to_reference(pair, reference, other))  # fmt: skip
    print(f"{case.name} vs {pair.name} on CUDA: max |Δ| forward {result.forward_max:.3g}, "
          f"gradients {result.grad_max:.3g}")  # fmt: skip


@pytest.mark.parametrize("case", case_params(MODELS))
def test_cuda_deterministic(case, deterministic):
    """Every model is bitwise reproducible in deterministic mode, a train step's gradients included."""
    model = reference_module(case, device="cuda").train()
    x = case.input_space.sample().cuda()
    runs = []
    for _ in range(2):
        torch.manual_seed(1)
        model.zero_grad(set_to_none=True)
        out = outputs(model(x))  # the heads' too, where it has them
        sum(o.sum() for o in out).backward()  # must not raise: no adaptive_avg_pool2d / avg_pool3d backward in here
        runs.append([o.detach() for o in out] + [p.grad.clone() for p in model.parameters()])
    for first, second in zip(*runs, strict=True):
        assert_close(second, first, exact=True)


@pytest.mark.parametrize(
    ("build", "shape", "op"),
    [
        (lambda: torch.nn.AdaptiveAvgPool2d(6), (2, 3, 13, 13), "adaptive_avg_pool2d_backward"),
        (lambda: torch.nn.LocalResponseNorm(5), (2, 16, 8, 8), "avg_pool3d_backward"),
    ],
    ids=["nn.AdaptiveAvgPool2d", "nn.LocalResponseNorm"],
)
def test_cuda_library_layers_raise(build, shape, op, deterministic):
    """The library layers this project replaces raise in deterministic mode: torch.use_deterministic_algorithms'
    documentation lists both CUDA backwards as raising, why the hand-written AdaptiveAvgPool2d and LocalResponseNorm
    exist."""
    x = torch.randn(shape, device="cuda", requires_grad=True)
    with pytest.raises(RuntimeError, match=op):
        build().cuda()(x).sum().backward()


def test_cuda_lrn(deterministic):
    """The hand-written LRN is deterministic on CUDA and matches the CPU."""
    lrn = LocalResponseNorm(size=5, alpha=1e-4, beta=0.75, k=2.0, groups=2)
    x = 10 * torch.randn(2, 96, 27, 27, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    # Elementwise CUDA kernels vs CPU (SLEEF pow among them): the float64 table, forward and backward.
    assert_equivalent(lrn, _OnDevice(copy.deepcopy(lrn), "cuda"), x, **tolerance(torch.float64), grads=True)
    grads = []
    for _ in range(2):
        on_gpu = x.cuda().requires_grad_()
        lrn(on_gpu).pow(2).sum().backward()  # must not raise: no avg_pool3d backward in here
        grads.append(on_gpu.grad)
    assert_close(grads[1], grads[0], exact=True, what="LRN input gradient, two deterministic runs")


def test_diff_on_cuda(capsys):
    """The smallest model against itself, built under one seed, agrees bit for bit on the GPU with ``diff --device
    cuda``."""
    from reference import cli

    name = min(MODELS, key=lambda case: case.trainable_params).name
    assert cli.main(["diff", name, name, "--exact", "--device", "cuda"]) == 0
    out = capsys.readouterr().out
    assert " on cuda, eval mode" in out
    assert out.rstrip().endswith("agree")
