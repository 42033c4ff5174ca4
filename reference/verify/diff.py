"""``python -m reference diff A B``: any two models, each a registry name or ``package.module:callable``, compared
layer by layer with no layer map (aligned by execution order, shape and name), with B's weights ported into A if asked;
B may be a stored run instead (``diff A --save RUN`` made it: :mod:`reference.verify.runs`).

Both are built under the same seed, so that two models that draw their initial weights alike (a re-implementation
and its library's model) start equal even without ``--port``. The port is the registry's own where A and B are
both registry names and one is a counterpart of the other (two towers, renames), else :func:`port_by_order`.
"""

from __future__ import annotations

import ast
import importlib
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from reference.models._api import canonical_name
from reference.verify.align import pair_by_order, port_by_order
from reference.verify.build import seeded
from reference.verify.compare import Comparison, compare_models, tolerance
from reference.verify.pairs import grads_to_reference, ported, ported_back
from reference.verify.records import Case
from reference.verify.registry import CASES
from reference.verify.runs import Run, run_pairing

__all__ = ["Built", "build", "diff", "parse_kwargs", "table"]

SEED = 0
GradMap = Callable[[dict[str, Tensor]], Mapping[str, Tensor]]


@dataclass
class Built:
    """A model to diff, built, and its registry case where it has one."""

    spec: str
    model: nn.Module
    case: Case | None


def parse_kwargs(items: Sequence[str]) -> dict[str, Any]:
    """``["num_classes=10", "c3='dense'"]`` -> keyword arguments; values are Python literals, else strings."""
    kwargs = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.isidentifier():
            raise ValueError(f"keyword arguments are name=value, got {item!r}")
        try:
            kwargs[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            kwargs[key] = value
    return kwargs


def build(spec: str, kwargs: Mapping[str, Any] | None = None, seed: int = SEED) -> Built:
    """A registry name (``python -m reference list``) or ``package.module:callable``, built under ``seed``; a
    registry model's weights then prepared as its comparisons use them (``Case.prepare``: the ResNet-1202's batch-norm
    statistics, without which its outputs overflow)."""
    kwargs = dict(kwargs or {})
    if canonical_name(spec) in CASES:
        case = CASES[canonical_name(spec)]
        return Built(spec, case.prepared(seeded(lambda: case.build(**kwargs), seed)), case)
    module_name, sep, attribute = spec.partition(":")
    if not sep or not module_name or not attribute:
        raise ValueError(f"{spec!r} is neither a registry name ({', '.join(CASES)}) nor package.module:callable")
    factory: Any = importlib.import_module(module_name)
    for part in attribute.split("."):
        factory = getattr(factory, part)
    model = seeded(lambda: factory(**kwargs), seed)
    if not isinstance(model, nn.Module):
        raise TypeError(f"{spec} returned {type(model).__name__}, not an nn.Module")
    return Built(spec, model, None)


def _port(a: Built, b: Built, x: Tensor) -> tuple[str, GradMap | None]:
    """Copies B's weights into A: by the registry's own port where one is the other's counterpart (``Pair.model``),
    else by execution order. Returns how, and the map of B's gradients onto A's names where there is one."""
    if a.case is not None and b.case is not None:
        for pair in a.case.pairs:
            if pair.model == b.case.name and pair.back is not None:
                a.model.load_state_dict(ported_back(pair, b.model).state_dict())
                return "ported B into A by the registry's port", grads_to_reference(pair, a.model, b.model)
        for pair in b.case.pairs:
            if pair.model == a.case.name:
                a.model.load_state_dict(ported(pair, b.model).state_dict())
                return "ported B into A by the registry's port", None
    pairs = port_by_order(b.model, a.model, x)
    return f"ported B into A by execution order: {len(pairs)} tensors", _by_names(pairs)


def diff(
    a: Built,
    b: Built | Run,
    x: Tensor,
    *,
    port: bool = False,
    grads: bool = False,
    train: bool = False,
    exact: bool = False,
    device_b: str | torch.device | None = None,
) -> tuple[Comparison, list[str]]:
    """Compare ``a`` and ``b`` (a model, or a stored run: :mod:`reference.verify.runs`) on ``x`` (in its dtype, on its
    device: A is moved there, B too or to ``device_b``), layers aligned automatically; returns the comparison and notes
    on how the weights and gradients were matched."""
    notes = []
    run = b if isinstance(b, Run) else None
    a.model.to(device=x.device, dtype=x.dtype).train(train)
    if run is None:
        b.model.to(device=device_b or x.device, dtype=x.dtype).train(train)
    grads_to_a: GradMap | None = None
    if port:
        how, grads_to_a = _port(a, b, x) if run is None else _port_run(a, run, x)
        notes.append(how)
    if grads and grads_to_a is None:
        try:
            pairs = run_pairing(a.model, run, x) if run is not None else pair_by_order(a.model, b.model, x)
            grads_to_a = _by_names(pairs)
        except ValueError as error:
            notes.append(f"parameter gradients not compared (input gradient only): {str(error).splitlines()[0]}")
            grads_to_a = (lambda grads: {}) if run is not None else None  # a run's default is by name
    result = compare_models(
        a.model,
        b.model if run is None else run,
        x,
        **tolerance(x.dtype, exact),
        grads=grads,
        grads_to_a=grads_to_a,
        seed=SEED if train else None,
        own=True,
    )
    return result, notes


@torch.no_grad()
def _port_run(a: Built, run: Run, x: Tensor) -> tuple[str, GradMap]:
    """Copies a stored run's weights into A: by name, else by the order the forward passes use them."""
    pairs = run_pairing(a.model, run, x)
    state = a.model.state_dict()
    for name_a, name_run in pairs.items():
        state[name_a].copy_(run.state[name_run])
    how = "by name" if all(k == v for k, v in pairs.items()) else "by execution order"
    return f"ported the stored run's weights into A {how}: {len(pairs)} tensors", _by_names(pairs)


def _by_names(pairs: Mapping[str, str]) -> GradMap:
    """B's gradients under A's names, for a by-order pairing (A's name -> B's)."""
    return lambda grads: {name_a: grads[name_b] for name_a, name_b in pairs.items() if name_b in grads}


def table(result: Comparison) -> list[tuple[str, ...]]:
    """Rows: A's layer, B's layer, shape, max |Δ|, its own part (B's layer run on A's input to it: "-" where not
    replayed), max |Δ| relative to B's largest |value|, the rtol (at atol 0) and atol (at rtol 0) that would have
    passed it and its error in units in the last place, and the first divergence and the culprit marked; a step one
    side lacks where it falls, with "-" for the other side; an ambiguous pair as such; the outputs last."""
    first, culprit = result.first_divergence(), result.culprit_at()
    by_position = {d.position: d for d in result.layers}
    lone: dict[int, list] = {}
    for side, step, position in result.alignment.lone if result.alignment is not None else []:
        lone.setdefault(position, []).append((side, step))
    positions = len(result.alignment.pairs) if result.alignment is not None else len(result.layers)
    rows = []
    for position in range(positions + 1):
        for side, step in lone.get(position, []):
            names = (step.name, "-") if side == "A" else ("-", step.name)
            mark = "<- culprit" if culprit == (side, step) else f"no counterpart in {'B' if side == 'A' else 'A'}"
            rows.append((*names, "x".join(map(str, step.shape)), "", "", "", "", "", "", mark))
        if position == positions:
            break
        d = by_position.get(position)
        if d is None:  # an ambiguous pair: not compared
            a, b = result.alignment.pairs[position]
            rows.append(
                (a.name, b.name, "x".join(map(str, a.shape)), "", "", "", "", "", "", "ambiguous: not compared")
            )
            continue
        marks = ["culprit"] * (d is culprit) + ["first divergence"] * (d is first)
        mark = "<- " + " and ".join(marks) if marks else ""
        rows.append(_row(d.layer, d.counterpart, d.shapes, d.max_abs_diff, _own(d), d.scale, d.needed, mark))
    mark = "" if result.forward_close else ("<- differs" if first is not None else "<- first divergence")
    shape = "x".join(map(str, result.forward_shape))
    rows.append(_row("output", "output", shape, result.forward_max, "", result.forward_scale, result.needed, mark))
    return rows


def _own(layer) -> str:
    if layer.own is None:
        return ""
    return "-" if layer.own.max_abs_diff is None else f"{layer.own.max_abs_diff:.3g}"


def _row(a: str, b: str, shape: str, difference: float, own: str, scale: float, need, mark: str) -> tuple[str, ...]:
    needs = ("", "", "") if need is None else (f"{need.rtol:.3g}", f"{need.atol:.3g}",
                                               "" if need.ulps is None else f"{need.ulps:.3g}")  # fmt: skip
    return a, b, shape, f"{difference:.3g}", own, _relative(difference, scale), *needs, mark


def _relative(difference: float, scale: float) -> str:
    if difference == 0:
        return "0"
    return f"{difference / scale:.3g}" if scale > 0 and math.isfinite(scale) else "inf"
