"""The benchmark workflow the README documents: autosave, then compare, then a gate that fails on a regression.

Runs the real benchmarks/ configuration in-process (pytester) on the cheapest benchmark, so a change
to the hooks, the extra_info record or the pytest configuration cannot break the workflow silently.
"""

from __future__ import annotations

import copy
import json
import platform
from pathlib import Path

import pytest

from benchmarks import (
    machine,  # imported before the inner sessions, which then share it
    report,
)

ROOT = Path(__file__).resolve().parent.parent
SELECT = ["-k", "test_step and forward and cpu-b1 and lenet5-reference"]
FIELDS = {
    "model",
    "implementation",
    "device",
    "dtype",
    "pass",
    "batch_size",
    "layout",
    "gflop",
    "gflops",
    "peak_fraction",
}


def _session(pytester: pytest.Pytester, storage: Path, *options: str) -> pytest.RunResult:
    return pytester.runpytest_inprocess(
        str(ROOT / "benchmarks" / "test_models.py"), f"--rootdir={ROOT}", "-c", str(ROOT / "pyproject.toml"),
        "-p", "no:cacheprovider", f"--benchmark-storage=file://{storage}", "--benchmark-max-time=0.05", "--quick",
        *SELECT, *options,
    )  # fmt: skip


@pytest.mark.cost(seconds=3.0)  # three benchmark sessions
def test_benchmark_gate(pytester: pytest.Pytester, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The README's benchmark workflow: autosave, then compare, then a gate that fails on a regression."""
    # Under pytest -n, this test runs in an xdist worker; pytest-benchmark reads PYTEST_XDIST_WORKER
    # and would disable the inner session's benchmarks, which is a session of its own.
    monkeypatch.delenv("PYTEST_XDIST_WORKER", raising=False)
    # pytest-benchmark's own record without its py-cpuinfo call (~1 s): what is under test is this project's
    # hooks, the storage and the compare gate.
    stub = {"machine": platform.machine(), "python_implementation": platform.python_implementation(),
            "python_version": platform.python_version(), "cpu": {"brand_raw": "stub"}}  # fmt: skip
    monkeypatch.setattr(machine, "generated_machine_info", lambda: stub)
    storage = tmp_path / "storage"
    saved = _session(pytester, storage, "--benchmark-autosave")
    assert saved.ret == 0, saved.stdout.str()
    (run_file,) = storage.rglob("0001_*.json")
    run = json.loads(run_file.read_text())
    assert {"torch", "torchvision", "torch_threads", "thp_mem_alloc_enable"} <= run["machine_info"].keys()
    assert run["machine_info"]["transparent_hugepage"] in {"always", "madvise", "never", ""}
    (bench,) = run["benchmarks"]
    assert bench["extra_info"].keys() >= FIELDS
    assert bench["extra_info"]["gflops"] > 0
    assert bench["extra_info"]["peak_fraction"] > 0
    ((group, model, implementation, *_),) = report.rows(run)  # python -m benchmarks.report reads it
    assert (group, model, implementation) == (bench["group"], "lenet5", "reference")

    # Both outcomes made certain: a stored run 1000x slower than anything possible must pass the gate, and
    # one 1000x faster must fail it, whatever the load on the machine.
    for factor, passes in ((1000.0, True), (1 / 1000, False)):
        stored = copy.deepcopy(run)
        for bench in stored["benchmarks"]:
            bench["stats"] = {key: value * factor if isinstance(value, float) else value
                              for key, value in bench["stats"].items()}  # fmt: skip
        run_file.write_text(json.dumps(stored))
        gated = _session(pytester, storage, "--benchmark-compare", "--benchmark-compare-fail=mean:10%")
        output = gated.stdout.str() + gated.stderr.str()
        assert "0001" in output  # the saved run is in the comparison
        assert (gated.ret == 0) is passes, output
        assert ("Performance has regressed" in output) is not passes, output
