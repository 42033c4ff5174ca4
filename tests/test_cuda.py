"""CUDA: parity with CPU, parity with torchvision, deterministic mode, and what the library does there.

Every test here carries the ``cuda`` marker and is skipped cleanly without a GPU (root conftest).
TF32 is off in every test (tests/conftest.py). bf16 autocast and channels_last on CUDA are the
device-parametrized tests of tests/test_layouts.py. What the running torch does (which library ops
raise in deterministic mode, whether cuBLAS needs CUBLAS_WORKSPACE_CONFIG) is recorded, not assumed:
``pytest -m cuda -rP`` prints it.
"""

from __future__ import annotations

import copy
import os
import subprocess
import sys

import pytest
import torch
import torchvision

from reference import LocalResponseNorm, port
from reference.specs import SPECS
from reference.testing import assert_close, assert_equivalent, tolerance

pytestmark = pytest.mark.cuda
ALL = list(SPECS.values())


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


@pytest.mark.parametrize("spec", ALL, ids=lambda spec: spec.name)
def test_cpu_cuda_parity_forward_and_gradients(spec):
    torch.manual_seed(0)
    model = spec.builder().double().eval()
    on_gpu = _OnDevice(spec.builder().double().eval(), "cuda")
    on_gpu.model.load_state_dict(model.state_dict())
    x = torch.randn(2, spec.in_channels, spec.default_side, spec.default_side, dtype=torch.float64)
    # Different kernels (cuDNN vs oneDNN) sum in different orders: the float64 table applies.
    assert_equivalent(
        model,
        on_gpu,
        x,
        **tolerance(torch.float64),
        grads=True,
        grads_to_a=lambda g: {k.removeprefix("model."): v.cpu() for k, v in g.items()},
    )


def test_alexnet_matches_torchvision_on_cuda_forward_and_gradients():
    torch.manual_seed(0)
    library = torchvision.models.alexnet(weights=None).cuda().eval()
    model = port.alexnet_from_torchvision(library)
    x = torch.randn(4, 3, 224, 224, device="cuda")
    layers = SPECS["alexnet"].counterpart.layers
    # Same modules, same shapes: expected bitwise, but cuDNN may pick algorithms per call (and some weight
    # gradient algorithms accumulate with atomics), so the float32 table is the bound; max |Δ| is printed.
    result = assert_equivalent(
        model,
        library,
        x,
        **tolerance(torch.float32),
        layers=layers,
        grads=True,
        grads_to_a=lambda g: SPECS["alexnet"].counterpart.grads_to_reference(library, g),
    )
    print(f"alexnet vs torchvision on CUDA: max |Δ| forward {result.forward_max:.3g}, gradients {result.grad_max:.3g}")


@pytest.mark.parametrize("spec", ALL, ids=lambda spec: spec.name)
def test_reference_models_are_bitwise_reproducible_in_deterministic_mode(spec, deterministic):
    torch.manual_seed(0)
    model = spec.builder()
    if spec.counterpart is not None and spec.counterpart.prepare is not None:
        spec.counterpart.prepare(model)  # the seed LeNet-5's head: ~1e-19 outputs and vanishing gradients unprepared
    model = model.cuda().train()
    x = torch.randn(2, spec.in_channels, spec.default_side, spec.default_side, device="cuda")
    runs = []
    for _ in range(2):
        torch.manual_seed(1)
        model.zero_grad(set_to_none=True)
        out = model(x)
        out.sum().backward()  # must not raise: no adaptive_avg_pool2d / avg_pool3d backward in here
        runs.append([out.detach()] + [p.grad.clone() for p in model.parameters()])
    for first, second in zip(*runs, strict=False):
        assert_close(second, first, exact=True)


@pytest.mark.parametrize(
    ("name", "build", "op"),
    [
        ("torchvision AlexNet", lambda: torchvision.models.alexnet(weights=None), "adaptive_avg_pool2d_backward"),
        ("nn.LocalResponseNorm", lambda: torch.nn.LocalResponseNorm(5), "avg_pool3d_backward"),
    ],
)
def test_what_the_library_does_in_deterministic_mode_is_recorded(name, build, op, deterministic, record_property):
    module = build().cuda()
    shape = (2, 3, 224, 224) if "AlexNet" in name else (2, 16, 8, 8)
    x = torch.randn(shape, device="cuda", requires_grad=True)  # nn.LocalResponseNorm has no parameters
    try:
        module(x).sum().backward()
    except RuntimeError as error:
        assert op in str(error), f"{name} raised, but not for {op}: {error}"  # noqa: PT017 (either outcome is recorded)
        verdict = f"raises ({op})"
    else:
        verdict = "runs"
    record_property(f"{name} deterministic backward", f"{verdict} on torch {torch.__version__}")
    print(f"{name} backward in deterministic mode: {verdict} on torch {torch.__version__}")


def test_lrn_on_cuda_is_deterministic_and_matches_cpu(deterministic):
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


def test_whether_cublas_needs_a_workspace_config_is_recorded(record_property):
    """Older torch raises on a cuBLAS matmul in deterministic mode unless CUBLAS_WORKSPACE_CONFIG is set
    before CUDA starts (the root conftest.py sets it). Run one without it, in a fresh process, and record."""
    env = {k: v for k, v in os.environ.items() if k != "CUBLAS_WORKSPACE_CONFIG"}
    code = "import torch; torch.use_deterministic_algorithms(True); a = torch.ones(64, 64, device='cuda'); (a @ a).sum().item()"
    run = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    if run.returncode:
        assert "CUBLAS_WORKSPACE_CONFIG" in run.stderr, run.stderr  # raised, and for this reason only
        verdict = "required"
    else:
        verdict = "not required"
    record_property("CUBLAS_WORKSPACE_CONFIG for deterministic cuBLAS", f"{verdict} on torch {torch.__version__}")
    print(f"CUBLAS_WORKSPACE_CONFIG for deterministic cuBLAS: {verdict} on torch {torch.__version__}")
