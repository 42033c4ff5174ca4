"""The main job's speed: ``python -m reference verify`` of every case and of one model, each beside its bare cost
(benchmarks/bare.py: both sides built, one forward and backward of each, nothing compared), in fresh processes as a
user runs them. Each benchmark stores the run's peak RSS (MB) in ``extra_info``; ``python -m benchmarks.report`` gives
verify / bare per group. The targets (docs/measurements.md): all cases within 60 s and 3 GB, one model within 10 s,
verify within twice its bare cost on the 2-core machine. Compare runs with ``--benchmark-compare``."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from reference.verify.registry import CASES
from reference.verify.runner import select

# The whole registry, and one model: torchvision's VGG-16 (a builder a user names most).
RUNS = {"all": [], "one": ["vgg16"]}
COMMANDS = {  # bare first: the report gives each entry relative to its group's first, verify / bare
    "bare": [sys.executable, "-m", "benchmarks.bare"],
    "verify": [sys.executable, "-m", "reference", "verify"],
}


def _peak_mb(command: list[str]) -> float:
    """Run ``command`` to its end; its peak RSS in MB (its own, from wait4)."""
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise AssertionError(f"{' '.join(command)} exited {process.returncode}: {process.stderr.read().decode()}")
    return usage.ru_maxrss / 1024  # KiB on Linux


@pytest.mark.parametrize("implementation", list(COMMANDS))
@pytest.mark.parametrize("run", list(RUNS))
def test_verify(benchmark, run, implementation):
    """One round each (a run of every case is ~a minute): a fresh process, as a user starts it."""
    names = RUNS[run]
    assert all(name in CASES for name in names)
    peaks = []
    benchmark.group = f"verify {run} cpu"
    benchmark.pedantic(lambda: peaks.append(_peak_mb([*COMMANDS[implementation], *names])), rounds=1, iterations=1)
    cases = select(names)
    benchmark.extra_info.update(
        model=run,
        implementation=implementation,
        device="cpu",
        dtype="float32",
        batch_size=1,
        **{"pass": "verify"},
        cases=len(cases),
        pairs=sum(len(case.pairs) for case in cases),
        peak_mb=max(peaks),
    )
