"""What the default run keeps, decided here and nowhere else, from data: each case's measured costs
(``python -m reference costs --write``: reference/verify/costs.json) and what each test says it spends (its ``cost``
marker). Everything else runs with ``-m slow``.

A test's spending is counted in its case's units (``@pytest.mark.cost(builds=, forwards=, steps=, pairs=, ablations=,
seconds=, examples=, memory=, core=, aim=, narrow=, shared=)``): builds of the model, forward passes and train steps (forward and
backward) at the default input, pair comparisons with gradients, passes of every operation ablated, fixed seconds for a tool's own work (each a function
of the case, or of the case and the test's parameters, where it grows with them); ``narrow``: of the narrowed build
(``Case.narrow``, measured as such); a property multiplies them by its example count, ``memory`` scales the case's measured peak where the test
holds more gradients than a pair comparison does. A test that takes the shared modules (``modules``; ``shared=`` where it uses them
for some cases only) pays the case's build once per dtype, whoever comes first. Its memory is the case's measured peak (with gradients where it runs any backward).

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

Thinning keeps aim: a test that checks a property of its case (``aim="init"``, ``"dropout"``, ``"structure"`` (the model
against its table), ``"facts"`` (the table against the paper), ``"counts"`` (the table's counts against the running
model), ``"sensitivity"``, ``"acting"``, ``"weights"``, ``"contrast"`` (a network it is not, and where they part), ``"options"``
(a port carries the constructor options), ``"examples"`` (a layer at each of its example inputs):
:data:`AIMS`) stands for that property at its parameters (its
id). Of the tests with one aim and one id, the cheapest is kept before anything else is shared out (a cheap form of a
check carries its full form's aim and ids: on a narrowed build, on the shared module); where those alone do not fit the
budget, collection fails, naming them. A cheap form on a narrowed build stands for every case whose narrowed build is
the same network (its residual blocks cut to one a run: ResNet-50, -101 and -152 are one network there).
"""

from __future__ import annotations

import functools
import inspect
import math
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

import pytest
import torch

from reference.models.tables import narrowed
from reference.verify import costs
from reference.verify.records import Case
from reference.verify.registry import CASES

__all__ = [
    "AIMS",
    "CHECK_SECONDS",
    "PEAK_MB",
    "PER_TEST",
    "SECONDS",
    "Estimate",
    "aimed",
    "code",
    "decide",
    "estimate",
    "unmeasured",
]

AIMS = ("init", "dropout", "structure", "facts", "counts", "sensitivity", "acting", "weights", "contrast", "options",
        "examples")  # fmt: skip

SECONDS = 40.0
# Measured on the 2-core machine (docs/measurements.md, "GoogLeNet"): with GoogLeNet in, AlexNet's cheap checks
# narrowed and the "options" and "examples" aims, the cheapest check of each aim alone is 29.3 s by these estimates,
# and at 29.5 s of checks 693 tests ran in 30.8-31.7 s of pytest time, 35.5-36.4 s wall with CI set, on a Xeon where
# 30.5 s of checks (775 tests) took 39.0-40.2 s wall. The VM moves +-10 % between runs.
CHECK_SECONDS = 29.5
PEAK_MB = 3000.0
# What any test of a case costs beyond what it declares: pytest's own work around it (setup, the autouse fixtures,
# the report), its parameters' lookups, a meta forward or a table's shapes (measured: the checks that declare nothing
# take 7 .. 18 ms each).
PER_TEST = 0.012
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


def _takes_modules(item: pytest.Item) -> bool:
    """Whether the test itself takes the shared modules: every test has them among its fixtures (an autouse fixture
    frees their gradients), but only those that ask for them build them."""
    return "modules" in inspect.signature(getattr(item, "function", lambda: None)).parameters


def _count(value: object, case: Case | None, params: dict) -> object:
    if not callable(value):
        return value
    required = [p for p in inspect.signature(value).parameters.values() if p.default is inspect.Parameter.empty]
    return value(case, params) if len(required) == 2 else value(case)  # meta_seconds(case, narrow=False): of the case


def estimate(item: pytest.Item, measured: dict) -> Estimate | None:
    """What ``item`` costs, from its ``cost`` marker and its case's measured costs; None where it declares nothing."""
    marker = item.get_closest_marker("cost")
    if marker is None or "cuda" in item.keywords:  # CUDA checks run where a GPU is, with -m cuda
        return None
    spend = dict(marker.kwargs)
    case = _case(item)
    # A count may be a function of the case (an input that grows with the case's sides, say), or of the case and
    # the test's parameters.
    params = item.callspec.params if hasattr(item, "callspec") else {}
    spend = {key: _count(value, case, params) for key, value in spend.items()}
    seconds, memory = PER_TEST + spend.pop("seconds", 0.0), spend.pop("memory", 1.0)
    dtype = "narrow" if spend.pop("narrow", False) else _dtype(item)
    spend.pop("core", None), spend.pop("aim", None)
    builds_shared = spend.pop("shared", _takes_modules(item))
    scale = _examples(item) if spend.pop("examples", False) else 1
    counts = {key: spend.pop(key, 0) for key in ("builds", "forwards", "steps", "pairs", "ablations")}
    if spend:
        raise ValueError(f"{item.nodeid}: unknown cost keyword(s) {sorted(spend)}")
    shared = (case.name, dtype) if case is not None and builds_shared else None
    if case is None or (shared is None and not any(counts.values())):
        return Estimate(seconds, 0.0, None)  # nothing of the case's runs (the meta device, the table)
    cost = measured.get(case.name, {}).get(dtype)
    if cost is None:  # not measured yet: as costly as anything there is, until `python -m reference costs --write`
        return Estimate(math.inf, math.inf, None)
    per_pair = cost.pairs / max(1, len(case.pairs))
    work = counts["forwards"] * cost.forward + counts["steps"] * (cost.forward + cost.backward)
    work += counts["pairs"] * per_pair + counts["ablations"] * cost.ablations
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


def aimed(items: Iterable[pytest.Item], measured: dict) -> dict[tuple[str, str], pytest.Item]:
    """For each aim and parameter id, the cheapest test aimed there: what the default run keeps whatever else it
    leaves out."""
    best: dict[tuple[str, str], tuple[float, pytest.Item]] = {}
    for item in items:
        marker = item.get_closest_marker("cost")
        aim = marker.kwargs.get("aim") if marker is not None else None
        if aim is None:
            continue
        if aim not in AIMS:
            raise ValueError(f"{item.nodeid}: unknown aim {aim!r}; one of {', '.join(AIMS)}")
        est = estimate(item, measured)
        if est is None:
            continue
        key = (aim, item.callspec.id if hasattr(item, "callspec") else item.name)
        seconds = est.seconds + (measured[est.shared[0]][est.shared[1]].build if est.shared else 0.0)
        if key not in best or seconds < best[key][0]:  # a shared build counted as if this test paid it
            best[key] = (seconds, item)
    kept: dict[tuple[str, str], pytest.Item] = {}
    networks: set[tuple[str, str]] = set()  # the narrowed networks' checks already kept, by aim
    for key, (_, item) in best.items():
        network = _narrowed_id(item)
        if network is not None and (key[0], network) in networks:
            continue  # the same check on the same network, kept for another case
        if network is not None:
            networks.add((key[0], network))
        kept[key] = item
    return kept


@functools.cache
def _narrowed_network(name: str) -> str:
    """What a case's narrowed build is: its code, its narrowed table (residual blocks cut, widths divided), how its
    weights are prepared and its default input. Cases that differ only in how often a block repeats build the same
    narrowed network."""
    case = CASES[name]
    with narrowed(case.narrow):
        table = case.table()
    prepared = getattr(case.prepare, "__qualname__", None)
    return repr((code(case), table.layers, table.sources, prepared, case.input_space.default))


def _narrowed_id(item: pytest.Item) -> str | None:
    """A cheap form's parameters with its case read as the network its narrowed build is (ResNet-50, -101 and -152
    narrowed are one network: the same check); None for any other test, and for a library's weights (its
    checkpoint and enum are the case's own)."""
    marker = item.get_closest_marker("cost")
    case = _case(item)
    if case is None or case.narrow is None or marker.kwargs.get("aim") == "weights":
        return None
    if not _count(marker.kwargs.get("narrow", False), case, item.callspec.params):
        return None
    return item.callspec.id.replace(case.name, _narrowed_network(case.name))


def unmeasured() -> list[str]:
    """The cases without measured costs."""
    return sorted(set(CASES) - set(costs.load()["cases"]))


def decide(items: Iterable[pytest.Item], measured: dict | None = None) -> list[pytest.Item]:
    """The items the default run leaves to ``-m slow``."""
    measured = costs.load()["cases"] if measured is None else measured
    items = list(items)
    order = {name: index for index, name in enumerate(CASES)}
    groups: dict[object, list[tuple[tuple, pytest.Item, Estimate]]] = defaultdict(list)
    slow, builds = [], {}
    reserved = {id(item) for item in aimed(items, measured).values()}
    kept: list[tuple[pytest.Item, Estimate]] = []
    for item in items:
        est = estimate(item, measured)
        if est is None:
            continue
        case = _case(item)
        if est.shared is not None:
            builds[est.shared] = measured[case.name][est.shared[1]].build
        if id(item) in reserved:
            kept.append((item, est))
            continue
        if est.mb > PEAK_MB - BASELINE_MB:
            slow.append(item)
            continue
        # A group's cases in registry order (a family file lists its primary case first); in each, its core checks
        # (the pairs, the stated init, the goldens) before the rest, cheapest first.
        core = not item.get_closest_marker("cost").kwargs.get("core", False)
        priority = (order[case.name] if case is not None else -1, core, est.seconds, item.nodeid)
        groups[code(case) if case is not None else None].append((priority, item, est))
    for entries in groups.values():
        entries.sort(key=lambda entry: entry[0])
    ranked = {key: [(index, est) for index, (_, _, est) in enumerate(entries)] for key, entries in groups.items()}

    paid = {est.shared for _, est in kept if est.shared}
    aimed_seconds = sum(est.seconds for _, est in kept) + sum(builds[shared] for shared in paid)
    heavy = [item.nodeid for item, est in kept if est.mb > PEAK_MB - BASELINE_MB]
    if aimed_seconds > CHECK_SECONDS or heavy:
        costly = sorted(kept, key=lambda entry: -entry[1].seconds)[:5]
        raise pytest.UsageError(
            f"the cheapest check of each aim alone needs {aimed_seconds:.1f} s of the default run's {CHECK_SECONDS} s"
            f" (or more than {PEAK_MB - BASELINE_MB:.0f} MB: {heavy}); give these a cheaper form: "
            + ", ".join(f"{item.nodeid} ({est.seconds:.2f} s)" for item, est in costly)
        )
    budget = CHECK_SECONDS - aimed_seconds
    builds = {key: 0.0 if key in paid else seconds for key, seconds in builds.items()}  # paid by the aimed checks

    def total(cap: float) -> float:
        return sum(_fill(entries, builds, cap)[1] for entries in ranked.values())

    low, high = 0.0, budget  # the largest share each group may take with the total within the budget
    for _ in range(40):
        middle = (low + high) / 2
        low, high = (middle, high) if total(middle) <= budget else (low, middle)
    for key, entries in groups.items():
        chosen = _fill(ranked[key], builds, low)[0]
        slow += [item for index, (_, item, _) in enumerate(entries) if index not in chosen]
    return slow
