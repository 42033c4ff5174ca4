"""Root conftest: CUDA auto-skip, RNG hygiene, hypothesis profiles, versions in the report header.

Markers (``cuda``, ``slow``) are registered in pyproject.toml under ``--strict-markers``.
"""

from __future__ import annotations

import os
import random

# Before torch is imported: torch's CPU allocator then puts large tensors on 2 MB transparent huge
# pages, so the AlexNet-sized weights, gradients and dtype copies the suite allocates over and over
# take a few page faults instead of tens of thousands each (measured: the run's system time -35%).
os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")

import pytest
import torch
import torchvision
from hypothesis import HealthCheck, settings

# cuBLAS needs a fixed workspace for deterministic results on CUDA >= 10.2; torch reads this when
# CUDA starts, so it must be set before any test touches the GPU. Harmless without one.
os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")

pytest_plugins = ["pytester"]  # tests/test_benchmark_workflow.py runs the benchmark workflow in-process

# Deadlines are off in every profile: a model's first call (allocator warm-up, kernel selection) is
# many times slower than the next, and timing belongs to benchmarks/, not to correctness tests.
_COMMON = {"deadline": None, "suppress_health_check": [HealthCheck.too_slow, HealthCheck.data_too_large]}
settings.register_profile("dev", max_examples=10, **_COMMON)
settings.register_profile("ci", max_examples=10, derandomize=True, print_blob=True, **_COMMON)
settings.register_profile("thorough", max_examples=200, **_COMMON)
# --hypothesis-profile (hypothesis' pytest plugin) overrides this; CI=true picks the derandomized one.
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "dev"))


def pytest_report_header(config: pytest.Config) -> list[str]:
    cuda = torch.version.cuda or "none"
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU (cuda tests skip)"
    return [
        f"torch {torch.__version__}, torchvision {torchvision.__version__}, CUDA {cuda}: {device}",
        f"hypothesis profile: {settings.get_current_profile_name()}, torch threads: {torch.get_num_threads()}",
    ]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU: torch.cuda.is_available() is False")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _restore_rng_state():
    """Each test leaves the global RNGs (torch CPU and CUDA, python) as it found them."""
    python_state, torch_state = random.getstate(), torch.get_rng_state()
    cuda_states = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None
    yield
    random.setstate(python_state)
    torch.set_rng_state(torch_state)
    if cuda_states is not None:
        torch.cuda.set_rng_state_all(cuda_states)


def pytest_configure(config: pytest.Config) -> None:
    # Under -n, each case's tests go to one worker (tests/conftest.py puts them in one xdist group): a worker then
    # holds one case's models at a time. Set here rather than in addopts, where --dist would disable the benchmarks
    # of a run without -n too (pytest-benchmark turns itself off wherever xdist's --dist is set).
    if getattr(config.option, "dist", "no") == "load":
        config.option.dist = "loadgroup"
    # Under pytest-xdist, workers share the cores: give each its share of torch's intra-op threads
    # instead of letting every worker start one thread per core.
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "0"))
    if workers > 1:
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // workers))
