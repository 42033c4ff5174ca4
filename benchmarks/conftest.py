"""Benchmark plumbing: versions in machine_info, a same-session GEMM rate, and the extra_info record.

Every benchmark stores what it ran (model, implementation, device, dtype, pass, batch size), the
analytic GFLOP of one call (benchmarks/flops.py), the GFLOP/s it achieved at the median time, and
that rate as a fraction of a GEMM rate measured once per session on the same device and dtype.
"""

from __future__ import annotations

import copy
import os
import time
from collections.abc import Callable

import pytest
import torch
import torchvision

from benchmarks import machine
from benchmarks.machine import GemmRates, synchronize
from reference.verify.registry import CASES

GEMM_SIDE = {"cpu": 2048, "cuda": 8192}  # square matmuls big enough to run at the device's GEMM rate
QUICK_GEMM_SIDE = {"cpu": 1024, "cuda": 4096}  # --quick: ~8x cheaper, a few per cent under the full rate
WARM_UP_SECONDS = 3.0


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--quick",
        action="store_true",
        help="benchmarks: one warmup round and two timed rounds each (smoke runs, e.g. tox -e bench)",
    )


def pytest_benchmark_generate_machine_info(config: pytest.Config) -> dict:
    """pytest-benchmark's own record, made once per process: its py-cpuinfo call takes ~1 s, and the workflow
    test (tests/test_benchmark_workflow.py) runs three benchmark sessions in one process."""
    return copy.deepcopy(machine.generated_machine_info())


def pytest_benchmark_update_machine_info(config: pytest.Config, machine_info: dict) -> None:
    machine_info["torch"] = torch.__version__
    machine_info["torchvision"] = torchvision.__version__
    machine_info["torch_threads"] = torch.get_num_threads()
    # Whether torch's CPU allocator asks for 2 MB pages (the root conftest sets it unless the environment does):
    # without them a CPU train step took 5-32 % longer here, see README.
    machine_info["thp_mem_alloc_enable"] = os.environ.get("THP_MEM_ALLOC_ENABLE", "")
    machine_info["transparent_hugepage"] = machine.transparent_hugepage_mode()
    machine_info["cuda"] = torch.version.cuda
    if torch.cuda.is_available():
        machine_info["gpu"] = torch.cuda.get_device_name(0)
        machine_info["cudnn"] = torch.backends.cudnn.version()
        machine_info["cublas_needs_workspace_config"] = machine.cublas_needs_workspace_config()


@pytest.fixture(scope="session")
def gemm_rate(request: pytest.FixtureRequest) -> GemmRates:
    return GemmRates(QUICK_GEMM_SIDE if request.config.getoption("--quick") else GEMM_SIDE)


@pytest.fixture(scope="session", autouse=True)
def warm_up_process(request: pytest.FixtureRequest) -> None:
    """Run AlexNet forwards (batch 32) for a few seconds on each device before the first benchmark.

    Per-benchmark warmup rounds are not enough for the first AlexNet-sized benchmark of a process: on this
    project's VM it ran slow, often over all its rounds, whichever implementation came first (reference
    first: reference/torchvision 1.03-1.16 by median at batch 32 in six runs, five of them >= 1.08; a
    second of matmuls first did not help). After three seconds of these forwards, six runs read
    0.96-1.03. Skipped with --quick.
    """
    if request.config.getoption("--quick"):
        return
    devices = ["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"]
    with torch.random.fork_rng(devices=[]), torch.inference_mode():
        for device in devices:
            model = CASES["alexnet"].build().to(device).eval()
            x = torch.randn(32, 3, 227, 227, generator=torch.Generator().manual_seed(0)).to(device)
            start = time.perf_counter()
            while time.perf_counter() - start < WARM_UP_SECONDS:
                model(x)
                synchronize(device)


@pytest.fixture(scope="session")
def rounds(request: pytest.FixtureRequest) -> dict[str, int]:
    """pedantic() settings for AlexNet-sized calls: warmup rounds on, always. Four: on this project's VM the
    first benchmark after a model build ran up to 30 % slow for its first three rounds (allocator and page
    warm-up), which made whichever implementation ran first in a group look slower. Eleven timed rounds:
    the VM stalls a round now and then (+50-80 %, either implementation, no pattern), and a median of
    eleven stays put with up to five such rounds where a median of seven moved by 4 %."""
    quick = request.config.getoption("--quick")
    return {"rounds": 2, "warmup_rounds": 1} if quick else {"rounds": 11, "warmup_rounds": 4}


@pytest.fixture
def fp32_matmul():
    """float32 means float32: TF32 off for matmuls and cuDNN convolutions while the benchmark runs
    (and for the GEMM rate it is compared with). No effect on CPU."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


@pytest.fixture
def record(benchmark, gemm_rate: GemmRates) -> Callable[..., None]:
    """Call after timing: fills the benchmark's extra_info and, from its median, the achieved rates."""

    def fill(
        *,
        model: str,
        implementation: str,
        device: str,
        dtype: torch.dtype,
        pass_: str,
        batch_size: int,
        flop: int,
        layout: str = "contiguous",
    ) -> None:
        benchmark.extra_info.update(
            model=model,
            implementation=implementation,
            device=device,
            dtype=str(dtype).removeprefix("torch."),
            batch_size=batch_size,
            layout=layout,
            gflop=flop / 1e9,
            **{"pass": pass_},
        )
        if benchmark.stats is None:  # --benchmark-disable: ran once, untimed
            return
        gflops = flop / benchmark.stats.stats.median / 1e9
        gemm = gemm_rate(device, torch.bfloat16 if dtype == torch.bfloat16 else dtype)
        benchmark.extra_info.update(gflops=gflops, gemm_gflops=gemm, peak_fraction=gflops / gemm)

    return fill
