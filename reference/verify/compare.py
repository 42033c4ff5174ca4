"""Comparison: one tolerance table, one ``assert_close`` path, and a divergence locator.

Exact comparison (rtol = atol = 0) is the rule where two computations run the same operations in the
same order. Where the order differs (a different kernel, a different association of the same sum),
:data:`TOLERANCES` gives the bound per dtype: rounding of a reordered sum of n terms grows like
eps * sqrt(n) relative to the magnitudes summed, and the models here sum at most ~50k terms per output.
The magnitudes summed are not seen, only the results: atol is the table's where the compared tensor's values are
at most 1, and relative to its largest magnitude where they are larger (VGG's paper init: scores ~1e7).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from reference.verify.align import Alignment, Step, align, record
from reference.verify.build import trim
from reference.verify.forward import cotangent, forward, outputs
from reference.verify.replay import Own, own_errors, own_errors_on_run, split_call

if TYPE_CHECKING:
    from reference.verify.runs import Run

__all__ = [
    "EXACT",
    "NEEDED_FRACTION",
    "TOLERANCES",
    "Comparison",
    "LayerMap",
    "Override",
    "Tolerance",
    "assert_close",
    "assert_equivalent",
    "capture_inputs",
    "capture_outputs",
    "compare_models",
    "describe",
    "grad_tolerance",
    "layer_modules",
    "outputs",
    "tolerance",
]

EXACT = {"rtol": 0.0, "atol": 0.0}

# eps: float64 2.2e-16, float32 1.2e-7, bfloat16 7.8e-3, float16 9.8e-4. rtol is eps * ~4e4
# (sqrt of the longest sum, ~2e2, times a safety factor of ~2e2) capped well below any real bug;
# atol covers values that cancel to ~0 while the terms summed into them are O(1), or as large as the tensor's largest
# value where that exceeds 1 (:func:`scaled_atol`).
TOLERANCES: dict[torch.dtype, dict[str, float]] = {
    torch.float64: {"rtol": 1e-11, "atol": 1e-12},
    torch.float32: {"rtol": 5e-5, "atol": 1e-5},
    torch.bfloat16: {"rtol": 5e-2, "atol": 5e-2},
    torch.float16: {"rtol": 5e-3, "atol": 1e-3},
}

# How far below each entry the light pairs (tests/test_harness.py runs those) still agree at their default inputs,
# at most: the entry is needed, since one of them fails at this fraction of it. Measured with the scaled atol (the
# most of the entry a tensor needs): float32, the light pairs up to 3.4% of it (LeNet-5 vs torch layers), the
# AlexNet- and VGG-sized pairs 11-27%, which the entry is sized for; float64, the light pairs up to 3.8e-4 of it
# (C3 vs 16 convolutions), AlexNet's towers 3e-3, the entry keeping that margin for the drawn inputs' longer sums
# and other torch releases' kernels (the goldens). The fractions sit ~1.7x under the light pairs' needs.
NEEDED_FRACTION: dict[torch.dtype, float] = {torch.float32: 0.02, torch.float64: 2e-4}

# reference layer -> counterpart layer, or several counterpart layers concatenated along dim 1.
LayerMap = Mapping[str, str | Sequence[str]]


def tolerance(dtype: torch.dtype, exact: bool = False) -> dict[str, float]:
    return dict(EXACT) if exact else dict(TOLERANCES[dtype])


def grad_tolerance(dtype: torch.dtype, exact: bool = False) -> dict[str, float]:
    """:func:`tolerance` as ``assert_equivalent``'s gradient keywords (``grad_rtol``, ``grad_atol``)."""
    return {f"grad_{key}": value for key, value in tolerance(dtype, exact).items()}


@dataclass(frozen=True)
class Override:
    """A pair's own bound where the table's is not enough, and why: in ``dtype``, ``where`` is ``"drawn"`` (at drawn
    inputs and options, on the CPU) or ``"cuda"``; ``bounds`` are :func:`compare_models` keywords (rtol, atol,
    grad_rtol, grad_atol)."""

    where: str
    dtype: torch.dtype
    bounds: Mapping[str, float]
    why: str


@dataclass(frozen=True)
class Tolerance:
    """How exactly a pair agrees: ``"exact"`` (rtol = atol = 0: the same operations in the same order on the CPU) or
    ``"table"`` (:data:`TOLERANCES`), for the outputs and for the gradients; ``why`` a pair is not exact; and its
    :class:`Override` entries. :meth:`keywords` is the one place a comparison's bounds are decided."""

    forward: str = "exact"
    grads: str = "exact"
    why: str = ""
    overrides: tuple[Override, ...] = ()

    def __post_init__(self) -> None:
        if {self.forward, self.grads} - {"exact", "table"}:
            raise ValueError(f"forward and grads are 'exact' or 'table', got {self.forward!r}, {self.grads!r}")
        if "table" in (self.forward, self.grads) and not self.why:
            raise ValueError("a pair that is not exact says why")
        if any(override.where not in ("drawn", "cuda") for override in self.overrides):
            raise ValueError("an override applies where 'drawn' or 'cuda'")

    @property
    def exact(self) -> bool:
        return self.forward == self.grads == "exact"

    def keywords(self, dtype: torch.dtype, *, device: str | torch.device = "cpu", drawn: bool = False) -> dict:
        """:func:`compare_models`' tolerance keywords in ``dtype``, on ``device``, at the default input or (``drawn``)
        a drawn one. On CUDA kernels may be chosen per call: the table applies even to a pair exact on the CPU."""
        cuda = torch.device(device).type == "cuda"
        out = tolerance(dtype, exact=not cuda and self.forward == "exact")
        out |= grad_tolerance(dtype, exact=not cuda and self.grads == "exact")
        where = "cuda" if cuda else "drawn" if drawn else None
        for override in self.overrides:
            if override.where == where and override.dtype == dtype:
                out |= override.bounds
        return out

    def describe(self, dtype: torch.dtype) -> str:
        """``"exact"`` or the bounds, forward and gradients: what verify prints."""
        bounds = self.keywords(dtype)
        forward = describe({"rtol": bounds["rtol"], "atol": bounds["atol"]})
        grads = describe({"rtol": bounds["grad_rtol"], "atol": bounds["grad_atol"]})
        return forward if forward == grads else f"fwd {forward}; grad {grads}"


def assert_close(actual: Tensor, expected: Tensor, *, exact: bool = False, what: str = "tensor") -> None:
    """``torch.testing.assert_close`` with this suite's tolerance for ``expected.dtype`` (its atol scaled, see
    :func:`scaled_atol`), or exactly."""
    __tracebackhide__ = True
    tol = tolerance(expected.dtype, exact)
    if actual.dtype == expected.dtype and actual.device == expected.device and _diff(actual, expected, **tol)[1]:
        return  # a cache-sized pass over the data; torch.testing's report is built only for a failure
    scaled = tol | {"atol": scaled_atol(tol["atol"], expected)}
    torch.testing.assert_close(actual, expected, **scaled, msg=lambda m: f"{what} ({describe(tol)}): {m}")


def scaled_atol(atol: float, expected: Tensor) -> float:
    """``atol`` times the largest |value| of ``expected`` where that exceeds 1: what is left of a value that cancels
    to ~0 follows the size of the terms summed into it, which the tensor's largest values stand for."""
    return atol * max(1.0, _scale(expected)) if atol else atol


def scaled_bound(rtol: float, atol: float, scale: float) -> float:
    """The largest |Δ| a tensor whose largest |value| is ``scale`` may have at its largest value: what a plot draws
    as the tolerance of a layer."""
    return atol * max(1.0, scale) + rtol * scale


def describe(tol: Mapping[str, float]) -> str:
    """``"exact"``, or a bound as the reports print it."""
    if tol["rtol"] == tol["atol"] == 0:
        return "exact"
    return f"rtol={tol['rtol']:g}, atol={tol['atol']:g} (x max |b| where > 1)"


_CHUNK = 1 << 18  # elements per pass: the work buffers stay in cache, unlike temporaries the size of fc6 (38M)


def _diff(a: Tensor, b: Tensor, rtol: float, atol: float) -> tuple[float, bool]:
    """(max |a - b|, whether |a - b| <= atol' + rtol |b| everywhere, atol' = :func:`scaled_atol`), in chunks.

    In the tensors' own (promoted) dtype: subtracting two close floats is exact (Sterbenz), and a
    report needs no more. NaN anywhere makes the max NaN and the verdict False.
    """
    if a.shape != b.shape:
        return float("inf"), False
    if a.numel() == 0:
        return 0.0, True
    a, b = a.detach().reshape(-1), b.detach().reshape(-1).to(a.device)  # B may have run on another device
    exact = rtol == atol == 0
    if exact and torch.equal(a, b):
        return 0.0, True
    atol = scaled_atol(atol, b)
    dtype = torch.result_type(a, b)
    dtype = dtype if dtype.is_floating_point else torch.float64  # integers and bools: |Δ| without wrapping
    diff = torch.empty(min(a.numel(), _CHUNK), dtype=dtype, device=a.device)
    bound = torch.empty_like(diff)
    largest = torch.zeros((), dtype=dtype, device=a.device)
    close = torch.tensor(not exact, device=a.device)
    for start in range(0, a.numel(), _CHUNK):
        x, y = a[start : start + _CHUNK].to(dtype), b[start : start + _CHUNK].to(dtype)
        d = torch.sub(x, y, out=diff[: x.numel()]).abs_()
        largest = torch.maximum(largest, d.max())
        if not exact:
            close &= d.le(torch.abs(y, out=bound[: x.numel()]).mul_(rtol).add_(atol)).all()
    return largest.item(), bool(close)


@dataclass(frozen=True)
class Needed:
    """The smallest bounds that would have passed a comparison: ``rtol`` at atol 0, ``atol`` at rtol 0 (in this
    suite's units: times max |b| where that exceeds 1, :func:`scaled_atol`), and the largest error in units in the
    last place of B's value (its spacing at |b|, in B's dtype; None for integers)."""

    rtol: float
    atol: float
    ulps: float | None


def needed(a: Tensor, b: Tensor) -> Needed:
    """:class:`Needed` for ``a`` against ``b`` (the same shape), in float64: a chunk at a time, as :func:`_diff`."""
    if a.numel() == 0 or torch.equal(a, b):
        return Needed(0.0, 0.0, 0.0 if b.is_floating_point() else None)
    largest = rtol = ulps = 0.0
    a, b_all = a.detach().reshape(-1), b.detach().reshape(-1)
    for start in range(0, a.numel(), _CHUNK):
        x, y = a[start : start + _CHUNK].double(), b_all[start : start + _CHUNK]
        d = (x - y.double()).abs()
        largest = max(largest, d.max().item())
        rtol = max(rtol, torch.where(d > 0, d / y.double().abs(), 0.0).max().item())  # d > 0 at |b| = 0: inf
        if y.is_floating_point():
            spacing = (torch.nextafter(y.abs(), torch.tensor(float("inf"), dtype=y.dtype)) - y.abs()).double()
            ulps = max(ulps, (d / spacing).max().item())
    return Needed(rtol, largest / max(1.0, _scale(b)), ulps if b.is_floating_point() else None)


def _scale(t: Tensor) -> float:
    """max |t| (0 for an empty tensor), from the extremes: no temporary the size of fc6's gradient."""
    if not t.numel():
        return 0.0
    low, high = torch.aminmax(t.detach() if t.is_floating_point() else t.detach().double())
    return max(-low.item(), high.item())


def layer_modules(model: nn.Module, layer: str) -> list[str]:
    """The module(s) computing a table layer: the layer itself, or its two halves in the two-tower form
    (concatenate their outputs along dim 1); empty if the model has neither."""
    for names in ([layer], [f"tower_a.{layer}", f"tower_b.{layer}"]):
        try:
            for name in names:  # by path, not by listing every module: a ResNet-1202 has 4,000
                model.get_submodule(name)
        except AttributeError:
            continue
        return names
    return []


@contextmanager
def capture_outputs(model: nn.Module, names: Sequence[str]) -> Iterator[dict[str, Tensor]]:
    """Clone each named module's output as it runs (cloned: an in-place ReLU may overwrite it later)."""
    with _capture(model, names, inputs=False) as captured:
        yield captured


@contextmanager
def capture_inputs(model: nn.Module, names: Sequence[str]) -> Iterator[dict[str, Tensor]]:
    """Clone each named module's first input as it is called."""
    with _capture(model, names, inputs=True) as captured:
        yield captured


@contextmanager
def _capture(model: nn.Module, names: Sequence[str], *, inputs: bool) -> Iterator[dict[str, Tensor]]:
    modules = dict(model.named_modules())
    missing = [name for name in names if name not in modules]
    if missing:
        raise ValueError(f"{type(model).__name__} has no module(s) {missing}")
    captured: dict[str, Tensor] = {}

    def hook(name: str):
        if inputs:
            return lambda _m, args: captured.__setitem__(name, args[0].detach().clone())
        return lambda _m, _args, out: captured.__setitem__(name, out.detach().clone())

    register = "register_forward_pre_hook" if inputs else "register_forward_hook"
    handles = [getattr(modules[name], register)(hook(name)) for name in names]
    try:
        yield captured
    finally:
        for handle in handles:
            handle.remove()


@dataclass
class LayerDiff:
    layer: str
    counterpart: str
    shape: tuple[int, ...]
    max_abs_diff: float
    close: bool
    scale: float = 0.0  # max |value| on the counterpart's side: what max |Δ| is relative to in a report
    counterpart_shape: tuple[int, ...] | None = None  # where it differs from ``shape``
    own: Own | None = None  # B's layer on A's input to it (None: not computed; everything agreed)
    needed: Needed | None = None  # the bounds that would have passed it (``compare_models(..., own=True)``)
    position: int = 0  # its index among the alignment's pairs (the map's entries)

    @property
    def shapes(self) -> str:
        """``1x64x8x8``, or both sides' where they differ: ``1x64x8x8 | 1x64x16x16``."""
        shown = "x".join(map(str, self.shape))
        return shown if self.counterpart_shape is None else f"{shown} | {'x'.join(map(str, self.counterpart_shape))}"


@dataclass
class Comparison:
    """Outputs, per-layer outputs and (optionally) gradients of two models on the same input."""

    rtol: float
    atol: float
    forward_max: float
    forward_close: bool
    layers: list[LayerDiff] = field(default_factory=list)
    grad_max: float | None = None
    grad_failures: list[str] = field(default_factory=list)
    grad_rtol: float = 0.0
    grad_atol: float = 0.0
    alignment: Alignment | None = None  # how the layers were paired where no map was given
    forward_scale: float = 0.0  # max |output| of model_b
    forward_shape: tuple[int, ...] = ()
    needed: Needed | None = None  # the outputs' (``own=True``)
    replayed: str = "B's layer on A's input to it"  # how each layer's own error was found

    def would_pass(self) -> str | None:
        """``would pass at rtol >= R (atol 0), or atol >= A (rtol 0)``: the outputs' and every layer's needs; None
        where they were not computed."""
        needs = [n for n in (self.needed, *(d.needed for d in self.layers)) if n is not None]
        if self.needed is None:
            return None
        rtol, atol = max(n.rtol for n in needs), max(n.atol for n in needs)
        return f"would pass at rtol >= {rtol:.3g} (atol 0), or atol >= {atol:.3g} (rtol 0)"

    @property
    def passed(self) -> bool:
        return self.forward_close and self.first_divergence() is None and not self.grad_failures

    def first_divergence(self) -> LayerDiff | None:
        return next((d for d in self.layers if not d.close), None)

    def culprit_at(self) -> LayerDiff | tuple[str, Step] | None:
        """Where the divergence starts: a step one side lacks (its side, "A" or "B", and the step) between the last
        agreeing layer and the first diverging one; else the first layer whose own error (B's layer on A's input)
        exceeds the tolerance; None where there is no divergence or no such layer."""
        first = self.first_divergence()
        if first is None:
            return None
        agreed = max((d.position for d in self.layers if d.close and d.position < first.position), default=-1)
        lone = self.alignment.lone if self.alignment is not None else []
        for side, step, position in lone:
            if agreed < position <= first.position:
                return side, step
        return next((d for d in self.layers if d.own is not None and d.own.close is False), None)

    def culprit(self) -> str | None:
        """:meth:`culprit_at` as a line; where no layer is to blame, that none's own error exceeds the tolerance (the
        error accumulated). None where every layer agrees."""
        if self.first_divergence() is None:
            return None
        found = self.culprit_at()
        if isinstance(found, tuple):
            side, step = found
            return f"culprit: {side}'s {step.name!r} ({step.kind}), which {'B' if side == 'A' else 'A'} lacks: no counterpart"
        if found is not None:
            return (f"culprit: {found.layer!r} (counterpart {found.counterpart!r}): its own error, {self.replayed}, "
                    f"is max |Δ| = {found.own.max_abs_diff:.3g}")  # fmt: skip
        if all(d.own is None or d.own.max_abs_diff is None for d in self.layers):
            return "culprit: not found (no layer could be run again on the other's input)"
        return "culprit: none: no layer's own error exceeds the tolerance; the divergence is accumulated, not local"

    def report(self) -> str:
        tol = describe({"rtol": self.rtol, "atol": self.atol})
        lines = []
        first = self.first_divergence()
        if not self.forward_close or first is not None:
            agree = "agree" if self.forward_close else "differ"
            lines.append(f"outputs {agree} ({tol}): max |Δ| = {self.forward_max:.3g}")
            if self.alignment is not None:
                lines.append(self.alignment.describe())
            if first is not None:
                lines.append(
                    f"first diverging layer: {first.layer!r} (counterpart {first.counterpart!r}), "
                    f"output shape {first.shapes}, max |Δ| = {first.max_abs_diff:.3g}"
                )
                lines.append(self.culprit())
            elif self.layers:
                lines.append("every mapped layer agrees: the divergence is after the last mapped layer")
            lines += [f"  {d.layer:<12} {d.counterpart:<28} {d.max_abs_diff:.3g}" + _own_part(d) for d in self.layers]
        grad_tol = describe({"rtol": self.grad_rtol, "atol": self.grad_atol})
        lines += [f"gradient differs ({grad_tol}): {failure}" for failure in self.grad_failures]
        return "\n".join(lines) or f"equivalent ({tol})"


def _own_part(layer: LayerDiff) -> str:
    if layer.own is None:
        return ""
    own = layer.own
    return f"  (own: {own.max_abs_diff:.3g})" if own.max_abs_diff is not None else f"  (own: not replayed, {own.why})"


def compare_models(
    model_a: nn.Module,
    model_b: nn.Module | Run,
    inputs: Tensor,
    *,
    rtol: float = 0.0,
    atol: float = 0.0,
    layers: LayerMap | None = None,
    grads: bool = False,
    grads_to_a: Callable[[dict[str, Tensor]], Mapping[str, Tensor]] | None = None,
    seed: int | None = None,
    grad_rtol: float | None = None,
    grad_atol: float | None = None,
    own: bool = False,
) -> Comparison:
    """Run both models on ``inputs`` and compare outputs, layers and (``grads``) gradients.

    Where a layer diverges (or with ``own``, everywhere), each compared layer's own error too: B's module run again
    on A's input to it (:func:`reference.verify.replay.own_errors`), which :meth:`Comparison.culprit` reads.

    ``layers`` maps A's layers to B's (a name, or several joined along dim 1); without it (None), the layers are
    aligned automatically by execution order, output shape and name (:func:`reference.verify.align.align`), and
    where that alignment is ambiguous, the pairs it is sure of are compared and the report lists the others. ``layers={}``: outputs
    only.
    ``grads_to_a`` maps model_b's parameter gradients onto model_a's parameter names (for example the
    inverse of a port), each to a tensor or to parts that make it along dim 0; without it only the input
    gradient is compared. ``seed`` reseeds the RNG before
    each forward pass, so dropout draws the same masks in both. Gradients are compared with
    ``grad_rtol``/``grad_atol`` where given, else with the forward tolerance.

    A runs forward and backward before B runs: the two graphs are never held at once. B's parameter gradients are
    compared as its backward pass makes them and then let go (``model_b``'s ``.grad`` are left unset), so that a
    VGG's two sets of gradients are never held beside each other in full.

    ``model_b`` may be a stored run (:class:`reference.verify.runs.Run`: another device's, another torch release's,
    an earlier tree's): ``inputs`` must be its input, A in its mode (and seed), a run with gradients where ``grads``;
    its parameters' gradients meet A's by name unless ``grads_to_a`` maps them. A ValueError says what differs, where
    A's output has another shape than the run's or no step meets one of the run's.
    """
    run = None if isinstance(model_b, nn.Module) else model_b
    if run is not None:
        _check_run(run, model_a, inputs, seed, grads)
    x_a = inputs.detach().clone().requires_grad_(grads)
    device_b = next((t.device for t in model_b.parameters()), inputs.device) if run is None else inputs.device
    x_b = inputs.detach().to(device_b, copy=True).requires_grad_(grads)  # B may run on another device than A
    names_b = None if layers is None else [n for names in layers.values() for n in _listed(names)]
    with _observed(model_a, None if layers is None else list(layers)) as seen_a:
        out_a = forward(model_a, x_a, seed)
    if grads:
        model_a.zero_grad(set_to_none=True)
        upstream = cotangent(out_a)
        out_a.backward(upstream)
        trim()  # A's activations, freed, leave the heap before B's are made
    if run is not None:
        seen_b = _stored(run, names_b)
        out_b = run.output.to(out_a.device)
        if out_b.shape != out_a.shape:
            raise ValueError(f"A's output is {_shape(out_a)}, the stored run's {_shape(out_b)}: another model or "
                             f"other options than the run's ({run.about.get('model', '?')})")  # fmt: skip
    else:
        with _observed(model_b, names_b) as seen_b:
            out_b = forward(model_b, x_b, seed)
    if layers is None:
        alignment = align(seen_a, seen_b)
        if run is not None and seen_a and run.steps and not alignment.pairs:
            raise ValueError(f"no step of A meets one of the stored run's (A has {len(seen_a)}, the run "
                             f"{len(run.steps)}): a run of another model ({run.about.get('model', '?')})")  # fmt: skip
        seen = [(index, a.name, b.name, a.output, b.output) for index, (a, b) in enumerate(alignment.pairs)
                if index not in alignment.uncertain]  # fmt: skip
    else:
        alignment, seen = None, []
        for index, (name, names) in enumerate(layers.items()):
            parts = [seen_b[n] for n in _listed(names)]
            seen.append(
                (index, name, "+".join(_listed(names)), seen_a[name],
                 torch.cat(parts, 1) if len(parts) > 1 else parts[0])
            )  # fmt: skip
    result = Comparison(rtol, atol, *_diff(out_a, out_b.to(out_a.device), rtol, atol), alignment=alignment,
                        forward_scale=_scale(out_b), forward_shape=tuple(out_a.shape))  # fmt: skip
    result.grad_rtol = rtol if grad_rtol is None else grad_rtol
    result.grad_atol = atol if grad_atol is None else grad_atol
    for index, name_a, name_b, a, b in seen:
        b = b.to(a.device)
        other = None if a.shape == b.shape else tuple(b.shape)
        result.layers.append(LayerDiff(name_a, name_b, tuple(a.shape), *_diff(a, b, rtol, atol), _scale(b), other,
                                       position=index))  # fmt: skip
    if own or result.first_divergence() is not None:  # where a layer parts: which one is wrong
        judge = lambda a, b: _diff(a, b, rtol, atol)  # noqa: E731
        if run is not None:
            result.replayed = "A's layer on the stored run's input to it"
            judged = own_errors_on_run(model_a, run.steps, run.input.to(inputs.device),
                                       [(name_a, name_b) for _, name_a, name_b, _, _ in seen], judge)  # fmt: skip
        else:
            dropout = any(m.training and isinstance(m, nn.modules.dropout._DropoutNd) for m in model_a.modules())
            judged = own_errors(model_a, model_b, lambda: forward(model_a, inputs, seed),
                                [(name_a, name_b, a) for _, name_a, name_b, a, _ in seen], judge,
                                repeatable=seed is not None or not dropout)  # fmt: skip
        for layer, error in zip(result.layers, judged, strict=True):
            layer.own = error
    if own:
        for layer, (_, _, _, a, b) in zip(result.layers, seen, strict=True):
            layer.needed = needed(a, b.to(a.device)) if a.shape == b.shape else None
        result.needed = needed(out_a.detach(), out_b.detach().to(out_a.device))
    del seen, seen_a, seen_b  # the layers' copies go before B's backward pass, the suite's peak
    if grads and run is not None:
        _compare_stored_grads(result, model_a, run, x_a, grads_to_a)
    elif grads:
        _compare_grads(result, model_a, model_b, upstream, out_b, x_a, x_b, grads_to_a)
    return result


def _shape(t: Tensor) -> str:
    return "x".join(map(str, t.shape))


def _check_run(run: Run, model_a: nn.Module, inputs: Tensor, seed: int | None, grads: bool) -> None:
    """A comparison with a stored run is on the run's input, in its mode and seed: a ValueError naming what differs."""
    stored, given = run.input, inputs
    if stored.shape != given.shape or stored.dtype != given.dtype:
        raise ValueError(f"the stored run's input is {_shape(stored)} {str(stored.dtype)[6:]}; this comparison's is "
                         f"{_shape(given)} {str(given.dtype)[6:]}")  # fmt: skip
    if not torch.equal(stored.to(given.device), given):
        raise ValueError("the stored run's input has other values than this comparison's: compare on run.input")
    if model_a.training != run.train:
        raise ValueError(f"the stored run was made in {'train' if run.train else 'eval'} mode, A is in "
                         f"{'train' if model_a.training else 'eval'} mode")  # fmt: skip
    if run.train and seed != run.seed:
        raise ValueError(f"the stored run was made in train mode with seed {run.seed}; this comparison's is {seed}")
    if grads and run.grads is None:
        raise ValueError("the stored run has no gradients: store it with them (record_run(..., grads=True), --grads)")


def _stored(run: Run, names: list[str] | None) -> list[Step] | dict[str, Tensor]:
    """A stored run's steps, or (``names``, a layer map's B side) the named modules' outputs (a module called twice:
    its last call, as :func:`capture_outputs` keeps it)."""
    if names is None:
        return run.steps
    outputs = {}
    for step in run.steps:
        base, _ = split_call(step.name)
        if base in names:
            outputs[base] = step.output
    missing = [name for name in names if name not in outputs]
    if missing:
        raise ValueError(f"the stored run has no step of module(s) {missing}")
    return outputs


def _listed(names: str | Sequence[str]) -> list[str]:
    return [names] if isinstance(names, str) else list(names)


@contextmanager
def _observed(model: nn.Module, names: list[str] | None) -> Iterator[list | dict[str, Tensor]]:
    """Every step recorded (``names`` None: for an automatic alignment), or the named modules' outputs captured."""
    with record(model) if names is None else capture_outputs(model, names) as seen:
        yield seen


def _compare_grads(result, model_a, model_b, cotangent, out_b, x_a, x_b, grads_to_a) -> None:
    """B's backward pass, each parameter gradient compared with A's as it is made (once every gradient its mapped
    key needs has arrived: two towers' halves, say) and let go; then the input gradient."""
    params_a = dict(model_a.named_parameters())
    found: dict[str, tuple[float, bool] | str] = {}  # A's name -> (max |Δ|, close) or why it could not be compared
    pending: dict[str, Tensor] = {}

    def compare(mapped: Mapping[str, Tensor | Sequence[Tensor]]) -> None:
        for name, b in mapped.items():
            a = params_a[name].grad if name in params_a else None
            found[name] = "gradient missing on reference side" if a is None else _diff_parts(a, b, *bounds)

    def arrived(name: str, param: nn.Parameter) -> None:
        pending[name], param.grad = param.grad, None
        if grads_to_a is None:
            pending.clear()
            return
        try:
            mapped = grads_to_a(pending)
        except (KeyError, ValueError):
            return  # a key of A's needs more of B's gradients (the other tower's half)
        pending.clear()
        compare(mapped)

    bounds = (result.grad_rtol, result.grad_atol)
    model_b.zero_grad(set_to_none=True)
    handles = [
        param.register_post_accumulate_grad_hook(lambda param, name=name: arrived(name, param))
        for name, param in model_b.named_parameters()
        if param.requires_grad
    ]
    try:
        out_b.backward(cotangent.to(out_b.device))
    finally:
        for handle in handles:
            handle.remove()
    if pending:
        compare(grads_to_a(pending))  # what is still waiting must map now, or the map's error says why
    _grad_verdicts(result, found, params_a, x_a, None if x_b.grad is None else x_b.grad.to(x_a.device),
                   grads_to_a is not None)  # fmt: skip


def _compare_stored_grads(result, model_a, run, x_a, grads_to_a) -> None:
    """A's gradients against a stored run's: its parameters' through ``grads_to_a`` (by name without one), the
    input's."""
    params_a = dict(model_a.named_parameters())
    bounds = (result.grad_rtol, result.grad_atol)
    device = x_a.device
    mapped = (grads_to_a or dict)({name: grad.to(device) for name, grad in run.grads.items()})
    found: dict[str, tuple[float, bool] | str] = {}
    for name, b in mapped.items():
        a = params_a[name].grad if name in params_a else None
        found[name] = "gradient missing on reference side" if a is None else _diff_parts(a, b, *bounds)
    _grad_verdicts(result, found, params_a, x_a, run.input_grad.to(device), bool(mapped))  # mapped to nothing: the
    # parameters could not be paired, the input's gradient is compared alone


def _grad_verdicts(result, found, params_a, x_a, input_grad_b, mapped: bool) -> None:
    """``result``'s gradient figures from what was found per parameter (max |Δ| and close, or why it could not be
    compared), with the input's gradient first; ``mapped``: A's gradients B has none for are failures."""
    if mapped:
        for name, param in params_a.items():
            if name not in found and param.grad is not None:
                found[name] = "gradient missing on counterpart side"
    input_grads = (x_a.grad, input_grad_b)
    if None in input_grads:
        found = {"input": f"gradient missing on {'reference' if x_a.grad is None else 'counterpart'} side"} | found
    else:
        found = {"input": _diff(*input_grads, result.grad_rtol, result.grad_atol)} | found
    result.grad_max = 0.0
    order = {name: index for index, name in enumerate(["input", *params_a])}
    for name in sorted(found, key=lambda name: order.get(name, len(order))):
        outcome = found[name]
        if isinstance(outcome, str):
            result.grad_failures.append(f"{name}: {outcome}")
            continue
        diff, close = outcome
        result.grad_max = max(result.grad_max, diff)
        if not close:
            shape = tuple(params_a[name].shape) if name in params_a else tuple(x_a.shape)
            result.grad_failures.append(f"{name}: shape {shape}, max |Δ| = {diff:.3g}")


def _diff_parts(a: Tensor, b: Tensor | Sequence[Tensor], rtol: float, atol: float) -> tuple[float, bool]:
    """:func:`_diff`, where ``b`` may be parts that together make ``a`` along dim 0 (two towers' halves):
    compared with views of ``a``, never joined into a copy."""
    if isinstance(b, Tensor):
        return _diff(a, b, rtol, atol)
    sizes = [part.shape[0] for part in b]
    if sum(sizes) != a.shape[0]:
        return float("inf"), False
    diffs = [_diff(piece, part, rtol, atol) for piece, part in zip(a.split(sizes), b, strict=True)]
    return max(d for d, _ in diffs), all(close for _, close in diffs)


def assert_equivalent(model_a: nn.Module, model_b: nn.Module, inputs: Tensor, **options: Any) -> Comparison:
    """:func:`compare_models` (the same keywords), asserted: on failure, name the first layer whose output diverges
    and every gradient that differs."""
    __tracebackhide__ = True
    result = compare_models(model_a, model_b, inputs, **options)
    if not result.passed:
        raise AssertionError(f"{type(model_a).__name__} vs {type(model_b).__name__}:\n{result.report()}")
    return result
