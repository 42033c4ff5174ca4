"""What the default run keeps, decided here and nowhere else, from data: each case's measured costs
(``python -m reference costs --write``: reference/verify/costs.json) and what each test says it spends (its ``cost``
marker). Everything else runs with ``-m slow``.

A test's spending is counted in its case's units (``@pytest.mark.cost(builds=, forwards=, steps=, pairs=, seconds=,
examples=, memory=, core=)``): builds of the model, forward passes and train steps (forward and backward) at the default
input, pair comparisons with gradients, fixed seconds for a tool's own work (each a function of the case where it grows
with it); a property multiplies them by its example count, ``memory`` scales the case's measured peak where the test
holds more gradients than a pair comparison does. A test that takes the shared modules (``modules``) pays the case's build once
per dtype, whoever comes first. Its memory is the case's measured peak (with gradients where it runs any backward).

The budget is the default run's: :data:`SECONDS` of wall time and :data:`PEAK_MB` of peak RSS on the 2-core machine.
:data:`CHECK_SECONDS` of it go to the checks, the rest to what every run pays (interpreter, imports, collection,
pytest's own per-test work). The checks' seconds are shared fairly between the code the cases run (:func:`code`: the
paper's six VGG configurations are one, torchvision's eight another, a layer its own; max-min: one that needs less
leaves the rest to the others). Inside one, its cases come in registry order (a family file lists its primary case
first), and each case's core checks (``core=True``: the pairs, the stated init, the goldens) before its others, cheapest
first, each kept where it still fits: the primary configuration gets its battery before another configuration of the
same code gets more than its light checks. A check that does not fit,
in time or memory, is marked ``slow``. A new family, or a new test, needs no edit here: a family is a registry file,
a test declares its cost.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

import pytest
import torch

from reference.verify import costs
from reference.verify.records import Case
from reference.verify.registry import CASES

__all__ = ["CHECK_SECONDS", "PEAK_MB", "SECONDS", "Estimate", "code", "decide", "estimate", "unmeasured"]

SECONDS = 40.0
# Measured on the 2-core machine (docs/measurements.md, "The default run"): with every case's checks left out the run
# takes 11 s (interpreter and imports 5 s, collection 1.6 s, the harness's own tests, pytest's per-test work and its
# final collections). The estimates run ~20 % over what the checks then take (costs measured in a fresh process: a
# build's first pages, the autograd engine's start): with 30 s of them the run took 32.7 s wall (27.4 s of pytest time),
# 7 s under SECONDS for the VM's +-10 % between identical runs.
CHECK_SECONDS = 30.0
PEAK_MB = 3000.0
# The pytest process with every case's checks left out: torch, torchvision, hypothesis, onnx, the registry, the
# harness's own tests (measured 1.1 GB).
BASELINE_MB = 1100.0


@dataclass(frozen=True)
class Estimate:
    """An item's own seconds and megabytes, and the shared build it needs first (case name, dtype), if any."""

    seconds: float
    mb: float
    shared: tuple[str, str] | None


def _examples(item: pytest.Item) -> int:
    """The example count of a hypothesis test (its own settings, else the active profile's)."""
    from hypothesis import settings

    own = getattr(getattr(item, "obj", None), "_hypothesis_internal_use_settings", None)
    return (own or settings()).max_examples


def _case(item: pytest.Item) -> Case | None:
    params = item.callspec.params if hasattr(item, "callspec") else {}
    if "subject" in params:
        return params["subject"].case
    return params.get("case")


def _dtype(item: pytest.Item) -> str:
    params = item.callspec.params if hasattr(item, "callspec") else {}
    dtype = params.get("dtype", torch.float32)
    return str(dtype).removeprefix("torch.")


def estimate(item: pytest.Item, measured: dict) -> Estimate | None:
    """What ``item`` costs, from its ``cost`` marker and its case's measured costs; None where it declares nothing."""
    marker = item.get_closest_marker("cost")
    if marker is None or "cuda" in item.keywords:  # CUDA checks run where a GPU is, with -m cuda
        return None
    spend = dict(marker.kwargs)
    case = _case(item)
    # A count may be a function of the case (an input that grows with the case's sides, say).
    spend = {key: value(case) if callable(value) else value for key, value in spend.items()}
    seconds, memory = spend.pop("seconds", 0.0), spend.pop("memory", 1.0)
    spend.pop("core", None)
    scale = _examples(item) if spend.pop("examples", False) else 1
    counts = {key: spend.pop(key, 0) for key in ("builds", "forwards", "steps", "pairs")}
    if spend:
        raise ValueError(f"{item.nodeid}: unknown cost keyword(s) {sorted(spend)}")
    shared = (case.name, _dtype(item)) if case is not None and "modules" in getattr(item, "fixturenames", ()) else None
    if case is None or (shared is None and not any(counts.values())):
        return Estimate(seconds, 0.0, None)  # nothing of the case's runs (the meta device, the table)
    cost = measured.get(case.name, {}).get(_dtype(item))
    if cost is None:  # not measured yet: as costly as anything there is, until `python -m reference costs --write`
        return Estimate(math.inf, math.inf, None)
    per_pair = cost.pairs / max(1, len(case.pairs))
    work = counts["forwards"] * cost.forward + counts["steps"] * (cost.forward + cost.backward)
    work += counts["pairs"] * per_pair
    seconds += counts["builds"] * cost.build + scale * work
    grads = counts["steps"] or counts["pairs"]
    return Estimate(seconds, memory * (cost.peak_mb if grads else cost.forward_peak_mb), shared)


def code(case: Case) -> object:
    """What a case runs: its layer table's function for a model (the paper's VGG configurations share one), its
    constructor for a layer. Cases that share it share most of their code."""
    built = case.table if case.is_model else case.build
    return getattr(built, "func", built)  # a functools.partial: the function it fixes options of


def _fill(entries: list[tuple[int, Estimate]], builds: dict[tuple[str, str], float], cap: float) -> tuple[set, float]:
    """First fit in priority order: each item kept where it fits within ``cap``, its shared build counted the first
    time; the items kept (their indices) and their seconds."""
    kept, spent, paid = set(), 0.0, set()
    for index, est in entries:
        marginal = est.seconds + (builds[est.shared] if est.shared and est.shared not in paid else 0.0)
        if spent + marginal <= cap:
            kept.add(index)
            spent += marginal
            if est.shared:
                paid.add(est.shared)
    return kept, spent


def unmeasured() -> list[str]:
    """The cases without measured costs."""
    return sorted(set(CASES) - set(costs.load()["cases"]))


def decide(items: Iterable[pytest.Item], measured: dict | None = None) -> list[pytest.Item]:
    """The items the default run leaves to ``-m slow``."""
    measured = costs.load()["cases"] if measured is None else measured
    order = {name: index for index, name in enumerate(CASES)}
    groups: dict[object, list[tuple[tuple, pytest.Item, Estimate]]] = defaultdict(list)
    slow, builds = [], {}
    for item in items:
        est = estimate(item, measured)
        if est is None:
            continue
        if est.mb > PEAK_MB - BASELINE_MB:
            slow.append(item)
            continue
        case = _case(item)
        if est.shared is not None:
            builds[est.shared] = measured[case.name][est.shared[1]].build
        # A group's cases in registry order (a family file lists its primary case first); in each, its core checks
        # (the pairs, the stated init, the goldens) before the rest, cheapest first.
        core = not item.get_closest_marker("cost").kwargs.get("core", False)
        priority = (order[case.name] if case is not None else -1, core, est.seconds, item.nodeid)
        groups[code(case) if case is not None else None].append((priority, item, est))
    for entries in groups.values():
        entries.sort(key=lambda entry: entry[0])
    ranked = {key: [(index, est) for index, (_, _, est) in enumerate(entries)] for key, entries in groups.items()}

    def total(cap: float) -> float:
        return sum(_fill(entries, builds, cap)[1] for entries in ranked.values())

    low, high = 0.0, CHECK_SECONDS  # the largest share each group may take with the total within the budget
    for _ in range(40):
        middle = (low + high) / 2
        low, high = (middle, high) if total(middle) <= CHECK_SECONDS else (low, middle)
    for key, entries in groups.items():
        kept = _fill(ranked[key], builds, low)[0]
        slow += [item for index, (_, item, _) in enumerate(entries) if index not in kept]
    return slow
