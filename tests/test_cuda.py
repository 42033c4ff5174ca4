"""CUDA: parity with CPU, parity with torchvision, deterministic mode, bf16 autocast, channels_last.

Every test here carries the ``cuda`` marker and is skipped cleanly without a GPU (root conftest).
TF32 is off in every test: parity with the CPU is about the same arithmetic, not a faster one.
"""

from __future__ import annotations

import pytest
import torch
import torchvision

from reference import LocalResponseNorm, port
from reference.specs import SPECS
from reference.testing import TOLERANCES, assert_close, assert_equivalent, tolerance

pytestmark = pytest.mark.cuda
ALL = list(SPECS.values())


@pytest.fixture(autouse=True)
def _no_tf32():
    matmul, cudnn = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = matmul, cudnn


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


def test_alexnet_matches_torchvision_on_cuda():
    library = torchvision.models.alexnet(weights=None).cuda().eval()
    model = port.alexnet_from_torchvision(library)
    x = torch.randn(4, 3, 224, 224, device="cuda")
    layers = SPECS["alexnet"].counterpart.layers
    # Same modules, same shapes: expected bitwise, but cuDNN may pick algorithms per call, so the
    # float32 table is the bound; the measured max |Δ| is in the pytest report.
    result = assert_equivalent(model, library, x, **tolerance(torch.float32), layers=layers)
    print(f"alexnet vs torchvision on CUDA: max |Δ| = {result.forward_max:.3g}")


@pytest.mark.parametrize("spec", ALL, ids=lambda spec: spec.name)
def test_reference_models_are_bitwise_reproducible_in_deterministic_mode(spec, deterministic):
    torch.manual_seed(0)
    model = spec.builder().cuda().train()
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
    x = torch.randn(2, 3, 224, 224, device="cuda") if "AlexNet" in name else torch.randn(2, 16, 8, 8, device="cuda")
    try:
        module(x).sum().backward()
    except RuntimeError as error:
        assert op in str(error), f"{name} raised, but not for {op}: {error}"  # noqa: PT017 (either outcome is recorded)
        record_property(f"{name} deterministic backward", f"raises ({op}) on torch {torch.__version__}")
    else:
        record_property(f"{name} deterministic backward", f"runs on torch {torch.__version__}")


def test_lrn_backward_runs_and_matches_under_deterministic_mode(deterministic):
    x = 10 * torch.randn(2, 96, 27, 27, device="cuda", requires_grad=True)
    LocalResponseNorm(size=5, alpha=1e-4, beta=0.75, k=2.0, groups=2)(x).sum().backward()
    assert torch.isfinite(x.grad).all()


def test_bf16_autocast_and_channels_last_train_step_on_cuda():
    torch.manual_seed(0)
    model = SPECS["alexnet"].builder().cuda().eval()
    x = torch.randn(8, 3, 224, 224, device="cuda")
    with torch.no_grad():
        reference = model(x)
        channels_last = model.to(memory_format=torch.channels_last)(x.to(memory_format=torch.channels_last))
        with torch.autocast("cuda", dtype=torch.bfloat16):
            low = model(x.to(memory_format=torch.channels_last)).float()
    # channels_last: other cuDNN kernels, same float32 arithmetic up to summation order.
    torch.testing.assert_close(channels_last, reference, **TOLERANCES[torch.float32])
    # bf16 keeps 8 bits of mantissa (eps 7.8e-3) on inputs and weights; products accumulate in
    # float32, so errors grow ~eps * sqrt(layers): bounded relative to the logits' scale.
    scale = reference.abs().max().item()
    torch.testing.assert_close(
        low, reference, rtol=TOLERANCES[torch.bfloat16]["rtol"], atol=TOLERANCES[torch.bfloat16]["atol"] * scale
    )
