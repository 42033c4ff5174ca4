"""What the benchmarks run on and measure it against: machine facts for machine_info, CUDA synchronisation,
and a same-session GEMM rate."""

from __future__ import annotations

import functools
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pytest_benchmark.plugin
import torch

__all__ = ["GemmRates", "cublas_needs_workspace_config", "generated_machine_info", "synchronize",
           "transparent_hugepage_mode"]  # fmt: skip


@functools.cache
def generated_machine_info() -> dict:
    """pytest-benchmark's own record, made once per process: its py-cpuinfo call takes ~1 s."""
    return pytest_benchmark.plugin.pytest_benchmark_generate_machine_info()


def cublas_needs_workspace_config() -> bool:
    """Whether a cuBLAS matmul in deterministic mode raises without CUBLAS_WORKSPACE_CONFIG on this torch
    (older releases require it, set before CUDA starts): run one without it, in a fresh process."""
    env = {k: v for k, v in os.environ.items() if k != "CUBLAS_WORKSPACE_CONFIG"}
    code = "import torch; torch.use_deterministic_algorithms(True); a = torch.ones(64, 64, device='cuda'); (a @ a).sum().item()"
    run = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    return run.returncode != 0 and "CUBLAS_WORKSPACE_CONFIG" in run.stderr


def transparent_hugepage_mode() -> str:
    """The kernel's THP mode, the bracketed word of "always [madvise] never"; "" where there is none."""
    path = Path("/sys/kernel/mm/transparent_hugepage/enabled")
    match = re.search(r"\[(\w+)\]", path.read_text()) if path.exists() else None
    return match.group(1) if match else ""


def synchronize(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


class GemmRates:
    """GFLOP/s of a square matmul, measured once per (device, dtype) and session.

    The median of 21 calls (about a second on CPU) into a preallocated output: on this project's VM a
    median of five calls once read 253 GFLOP/s where the same GEMM runs at 378 (median of 438 calls over
    20 s, 5th-95th percentile 354-394), which would have inflated every fraction of peak by half.
    """

    TIMED_CALLS = 21

    def __init__(self, sides: dict[str, int]) -> None:
        self._sides = sides
        self._rates: dict[tuple[str, torch.dtype], float] = {}

    def __call__(self, device: str, dtype: torch.dtype) -> float:
        key = (device, dtype)
        if key not in self._rates:
            n = self._sides[device]
            a = torch.randn(n, n, device=device, dtype=dtype)
            b = torch.randn(n, n, device=device, dtype=dtype)
            c = torch.empty(n, n, device=device, dtype=dtype)
            times = []
            for round_ in range(3 + self.TIMED_CALLS):
                synchronize(device)
                start = time.perf_counter()
                torch.matmul(a, b, out=c)
                synchronize(device)
                if round_ >= 3:  # the first calls warm up caches, clocks and kernel selection
                    times.append(time.perf_counter() - start)
            self._rates[key] = 2 * n**3 / statistics.median(times) / 1e9
        return self._rates[key]
