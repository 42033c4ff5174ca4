"""What each case costs, measured: building its reference, one forward and one backward at its default input, every
pair compared there (gradients included), in float32 and float64, every operation ablated (in float32: the
sensitivity checks' dtype), and the peak memory of each; for a case whose cheap
checks run narrowed (``Case.narrow``), the same of the narrowed build in float32, under ``"narrow"``. ``python -m reference
costs --write`` measures them, each case in a fresh process (peak RSS is per process), and stores them as package data
(``costs.json``), as ``goldens --write`` stores the goldens.

The test suite's policy (tests/policy.py) reads them to decide what the default run keeps; the benchmarks read them to
size their batches. A case without an entry (a family just added) is reported, and counted as the most costly case
there is until it is measured.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path

__all__ = ["Cost", "load", "measure", "stored_path", "write"]


@dataclass(frozen=True)
class Cost:
    """Seconds and megabytes of one case in one dtype, on the machine that measured them. ``peak_mb`` is the peak RSS
    above the imported baseline while the pairs are compared with gradients; ``forward_peak_mb`` while the reference
    and its counterparts only run forward (and every operation is ablated); ``ablations`` the seconds of
    :func:`reference.verify.sensitivity.effects` (float32 only, else 0)."""

    build: float
    forward: float
    backward: float
    pairs: float
    peak_mb: float
    forward_peak_mb: float
    ablations: float = 0.0


def stored_path() -> Path:
    return Path(str(resources.files("reference.verify") / "costs.json"))


def load(path: Path | None = None) -> dict:
    """``{"machine": ..., "cases": {name: {dtype: Cost}}}`` as stored; empty where nothing is."""
    path = path or stored_path()
    if not path.exists():
        return {"machine": {}, "cases": {}}
    data = json.loads(path.read_text())
    data["cases"] = {
        name: {dtype: Cost(**cost) for dtype, cost in costs.items()} for name, costs in data["cases"].items()
    }
    return data


_MEASURE = "import json; from reference.verify.costs import _case_costs; print(json.dumps(_case_costs({name!r})))"


def _rss_mb(field: str) -> float:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith(field)) / 1024


def _reset_peak() -> None:
    with open("/proc/self/clear_refs", "w") as clear:
        clear.write("5")  # the peak RSS (VmHWM) is reset to the current RSS


def _case_costs(name: str) -> dict:
    """Run in a fresh process: the case's costs in both dtypes (the reference built once, then converted), and
    narrowed."""
    import torch

    from reference.models.tables import narrowed
    from reference.verify.build import trim
    from reference.verify.pairs import DTYPES, reference_module
    from reference.verify.registry import get_case

    case = get_case(name)
    _warm_up()
    baseline = _rss_mb("VmRSS")
    started = time.perf_counter()
    reference = reference_module(case)
    build = time.perf_counter() - started
    out = {}
    for dtype in DTYPES:
        reference.to(dtype)
        out[str(dtype).removeprefix("torch.")] = _costs(case, reference, dtype, build, baseline)
    if case.narrow is not None:
        del reference
        trim()
        with narrowed(case.narrow):
            reference_module(case)  # a narrowed build is small: timed as a test session builds it, warm
            started = time.perf_counter()
            reference = reference_module(case)
            build = time.perf_counter() - started
            out["narrow"] = _costs(case, reference, torch.float32, build, baseline)
    return out


def _costs(case, reference, dtype, build: float, baseline: float) -> dict:
    import torch

    from reference.verify.build import trim
    from reference.verify.pairs import compare_pair, ported
    from reference.verify.sensitivity import effects

    x = case.input_space.sample(dtype=dtype)
    trim()
    _reset_peak()
    with torch.no_grad():
        for pair in case.pairs:
            ported(pair, reference, share=True)(x)
        started = time.perf_counter()
        reference(x)
        forward = time.perf_counter() - started
    ablations = 0.0
    if dtype == torch.float32:
        ablated = _ablated(case, reference, x)
        effects(*ablated)  # once untimed, as a test session's earlier tests warm the kernels up
        started = time.perf_counter()
        effects(*ablated)
        ablations = time.perf_counter() - started
    forward_peak = _rss_mb("VmHWM") - baseline
    _reset_peak()
    x = x.clone().requires_grad_()
    output = reference(x)
    started = time.perf_counter()
    output.sum().backward()
    backward = time.perf_counter() - started
    reference.zero_grad(set_to_none=True)
    started = time.perf_counter()
    for pair in case.pairs:
        compare_pair(pair, reference, ported(pair, reference, share=True), x.detach())
        reference.zero_grad(set_to_none=True)
    pairs = time.perf_counter() - started
    peak = _rss_mb("VmHWM") - baseline
    seconds = (round(build, 3), round(forward, 4), round(backward, 4), round(pairs, 3))
    return asdict(Cost(*seconds, round(peak), round(forward_peak), round(ablations, 3)))


def _ablated(case, reference, x):
    """What the sensitivity checks ablate: the reference, or where its table cuts repeated residual blocks (a cost
    that grows with the depth squared), a build with them cut (:func:`reference.models.tables.narrowed` by 1)."""
    from reference.models.tables import narrowed
    from reference.verify.pairs import reference_module

    table = getattr(reference, "architecture", None)
    if table is None or table.shortened is table:
        return reference, x
    with narrowed(1):
        return reference_module(case), x


def _warm_up() -> None:
    """What a process pays once, whatever it compares first (the autograd engine's threads, lazy imports): paid
    before the clock starts, as in a test session it is paid by an earlier test."""
    import torch

    from reference.verify.compare import compare_models

    linear = torch.nn.Linear(4, 4)
    compare_models(linear, linear, torch.randn(2, 4), grads=True, grads_to_a=dict)


def measure(name: str) -> dict[str, Cost]:
    """The case's costs, measured in a fresh process."""
    done = subprocess.run([sys.executable, "-c", _MEASURE.format(name=name)], capture_output=True, text=True,
                          check=True, env=_environment())  # fmt: skip
    return {dtype: Cost(**cost) for dtype, cost in json.loads(done.stdout.splitlines()[-1]).items()}


def _environment() -> dict[str, str]:
    return {**os.environ, "THP_MEM_ALLOC_ENABLE": "1"}  # as the suite's root conftest and the CLI set it


def write(costs: dict[str, dict[str, Cost]], path: Path | None = None) -> Path:
    path = path or stored_path()
    import torch

    machine = {"cpu": _cpu(), "cores": _cores(), "torch": torch.__version__, "python": platform.python_version()}
    record = {
        "machine": machine,
        "cases": {name: {dtype: asdict(cost) for dtype, cost in by_dtype.items()} for name, by_dtype in costs.items()},
    }
    path.write_text(json.dumps(record, indent=1, sort_keys=False) + "\n")
    return path


def _cpu() -> str:
    try:
        with open("/proc/cpuinfo") as info:
            return next(line.split(":", 1)[1].strip() for line in info if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor()


def _cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
