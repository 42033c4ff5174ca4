"""Does each operation act where the suite compares? A comparison of two models proves nothing about an operation
that does nothing at the weights and input compared: a ReLU whose inputs are all positive, an LRN whose window sums
are too small beside ``k``, an adaptive pool from 1x1 to 6x6, a bias of zeros. Removing it leaves the output as it
was, so a model that lost it passes too.

Each leaf module is replaced, one at a time, by a stated ablation (:data:`ABLATIONS`: an identity where the shapes
allow, else the nearest operation that agrees with it only where it is inert), and the output is compared with the
intact model's: :func:`effects` says how far each ablation moves it and whether that is beyond the comparison's
tolerance (TorchLens's validation perturbs each operation's inputs; here the operation itself goes). Modules with
nothing to ablate: dropout (an identity in eval mode by design; its sites are checked in train mode), flatten,
identities, and the weights of convolutions and linear layers (their bias is ablated).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm

from reference.models.layers import AdaptiveAvgPool2d, LocalResponseNorm, Squash, ZeroPadShortcut
from reference.verify.compare import scaled_atol, tolerance

__all__ = [
    "ABLATIONS",
    "Ablation",
    "Effect",
    "ablated_calls",
    "ablation",
    "effects",
    "redraw_biases",
    "redraw_statistics",
    "trained_statistics",
]


@dataclass(frozen=True)
class Ablation:
    """What a module is replaced by: ``what`` in words, ``output(module, input, output)`` the replacement's output."""

    what: str
    output: Callable[[nn.Module, Tensor, Tensor], Tensor]


def _bias_term(module: nn.Module, y: Tensor) -> Tensor:
    """The module's bias as added to its output ``y``: along dim 1."""
    return module.bias.reshape(-1, *[1] * (y.dim() - 2))


def _has_bias(module: nn.Module) -> bool:
    return isinstance(getattr(module, "bias", None), Tensor) and not isinstance(module, _BatchNorm)


IDENTITY = Ablation("identity", lambda module, x, y: x)
NO_WINDOW = Ablation(
    "its window's sum of squares taken as 0 (x / k^beta)", lambda module, x, y: x / module.k**module.beta
)
MEAN_FOR_MAX = Ablation(
    "each window's mean for its max",
    lambda m, x, y: F.avg_pool2d(x, m.kernel_size, m.stride, m.padding, m.ceil_mode, count_include_pad=False),
)
MAX_FOR_MEAN = Ablation("each window's max for its mean", lambda module, x, y: F.adaptive_max_pool2d(x, y.shape[-2:]))
NO_SHORTCUT = Ablation("zeros: the shortcut dropped", lambda module, x, y: torch.zeros_like(y))
NO_BIAS = Ablation("its bias dropped", lambda module, x, y: y - _bias_term(module, y))

ABLATIONS: dict[type[nn.Module], Ablation | None] = {
    nn.ReLU: IDENTITY,
    nn.Tanh: IDENTITY,
    Squash: IDENTITY,
    _BatchNorm: IDENTITY,
    LocalResponseNorm: NO_WINDOW,
    nn.LocalResponseNorm: NO_WINDOW,
    nn.MaxPool2d: MEAN_FOR_MAX,
    nn.AvgPool2d: MAX_FOR_MEAN,
    nn.AdaptiveAvgPool2d: MAX_FOR_MEAN,
    AdaptiveAvgPool2d: MAX_FOR_MEAN,
    ZeroPadShortcut: NO_SHORTCUT,
    nn.Dropout: None,  # an identity in eval mode by design
    nn.Flatten: None,
    nn.Identity: None,
}


def ablation(module: nn.Module) -> Ablation | None:
    """The module's ablation: its kind's, else its bias dropped where it has one, else None for a module with
    parameters (its weights are what is compared). A parameter-free kind the table lacks is an error: a new kind of
    operation says how it is ablated."""
    for kind in type(module).__mro__:
        if kind in ABLATIONS:
            return ABLATIONS[kind]
    if _has_bias(module):
        return NO_BIAS
    if any(True for _ in module.parameters(recurse=False)) or any(True for _ in module.buffers(recurse=False)):
        return None
    raise ValueError(f"no ablation for {type(module).__name__}: add one to reference.verify.sensitivity.ABLATIONS")


@dataclass(frozen=True)
class Effect:
    """How far ablating ``module`` moves the output (``change``: max |Δ|), and whether that is beyond what the
    comparison lets pass at some element (``acts``: |Δ| > atol + rtol |y| there)."""

    module: str
    what: str
    change: float
    acts: bool


@dataclass
class _Pass:
    """One intact forward pass: its output, how often each leaf module was called (a ReLU module may serve every
    layer), each leaf call's output in the order of the calls (None where one was not a tensor), and the largest
    leaf output's size per sample."""

    output: Tensor
    counts: dict[str, int]
    order: list[str]
    outputs: list[Tensor] | None
    largest: int

    def position(self, name: str, call: int) -> int:
        return [index for index, called in enumerate(self.order) if called == name][call]


def _calls(model: nn.Module, x: Tensor) -> _Pass:
    """The intact pass at ``x``, its leaf calls recorded."""
    order: list[str] = []
    outputs: list[Tensor | None] = []

    def record(name: str) -> Callable:
        def hook(_module: nn.Module, _args: tuple, y: object) -> None:
            order.append(name)
            outputs.append(y.clone() if isinstance(y, Tensor) else None)  # before a later in-place op overwrites it

        return hook

    handles = [module.register_forward_hook(record(name)) for name, module in model.named_modules()
               if next(module.children(), None) is None]  # fmt: skip
    try:
        output = model(x)
    finally:
        for handle in handles:
            handle.remove()
    counts = {name: order.count(name) for name in dict.fromkeys(order)}
    largest = max([x[:1].numel()] + [y[:1].numel() for y in outputs if y is not None and y.dim() > 0])
    return _Pass(output, counts, order, None if any(y is None for y in outputs) else outputs, largest)


class _Replay:
    """A leaf module's forward in a replayed pass: its calls at positions before ``upto`` (``at``: the positions of
    its calls) return their recorded outputs, repeated ``copies`` times along the batch, the others compute."""

    def __init__(self, real: Callable, at: list[int], outputs: list[Tensor], upto: int, copies: int) -> None:
        self.real, self.at, self.outputs, self.upto, self.copies, self.calls = real, at, outputs, upto, copies, 0

    def __call__(self, *args: object, **kwargs: object) -> object:
        call, self.calls = self.calls, self.calls + 1
        if call < len(self.at) and self.at[call] < self.upto:
            recorded = self.outputs[self.at[call]]
            return recorded.repeat(self.copies, *[1] * (recorded.dim() - 1))  # a copy: later in-place ops write it
        return self.real(*args, **kwargs)


@contextmanager
def _replayed(model: nn.Module, recorded: _Pass, upto: int, copies: int) -> Iterator[None]:
    """A forward pass over ``copies`` copies of the input that gives each leaf call before position ``upto`` its
    recorded output without computing it: a pass of ablations computes only what follows the first ablated call.
    The operations between the modules (an addition, a concatenation, a flatten) run as they are."""
    if recorded.outputs is None:
        upto = 0
    positions: dict[str, list[int]] = {}
    for index, name in enumerate(recorded.order):
        positions.setdefault(name, []).append(index)
    patched = []
    for name, at in positions.items():
        if at[0] >= upto:
            continue
        module = model.get_submodule(name)
        module.forward = _Replay(module.forward, at, recorded.outputs, upto, copies)  # deleted: the class's again
        patched.append(module)
    try:
        yield
    finally:
        for module in patched:
            del module.forward


def _ablatable(model: nn.Module, calls: dict[str, int]) -> Iterator[tuple[str, str, Ablation, int]]:
    """(label, module name, ablation, call from 0) for each call of each module that has an ablation; the label of a
    module called more than once names the call, from 1: ``relu:4``."""
    for name, count in calls.items():
        replace = ablation(model.get_submodule(name))
        for call in range(count if replace is not None else 0):
            yield (f"{name}:{call + 1}" if count > 1 else name), name, replace, call


@contextmanager
def _ablated_rows(model: nn.Module, group: list[tuple[str, str, Ablation, int]], rows: int) -> Iterator[None]:
    """A pass over ``len(group) + 1`` copies of an input of ``rows`` samples: the first copy intact, copy ``j``
    with the ``j``-th ablation of ``group`` applied to its own rows alone. Every ablated operation acts per sample
    (batch norm in eval mode, pools, activations, biases), so each copy computes what its ablation alone would."""
    targets: dict[str, dict[int, list[tuple[int, Ablation]]]] = {}
    for copy, (_, name, replace, call) in enumerate(group, start=1):
        targets.setdefault(name, {}).setdefault(call, []).append((copy, replace))
    handles = []
    for name, calls in targets.items():
        seen, saved = [0], []

        def keep(m: nn.Module, args: tuple, calls: dict = calls, seen: list = seen, saved: list = saved) -> None:
            if seen[0] in calls:  # before the call: an in-place ReLU overwrites its input
                saved.append(args[0].clone())

        def ablate(m: nn.Module, args: tuple, y: Tensor, calls: dict = calls, seen: list = seen,
                   saved: list = saved) -> Tensor | None:  # fmt: skip
            call, seen[0] = seen[0], seen[0] + 1
            if call not in calls:
                return None
            x, y = saved.pop(), y.clone()
            for copy, replace in calls[call]:
                part = slice(copy * rows, (copy + 1) * rows)
                y[part] = replace.output(m, x[part], y[part])
            return y

        module = model.get_submodule(name)
        handles += [module.register_forward_pre_hook(keep), module.register_forward_hook(ablate)]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


# A batched pass holds each activation for every copy: at most this many elements (128 MB of float32) per
# activation, which bounds the copies in one pass. PASSES: consecutive ablations share a pass; the fewer passes, the
# less overhead and the more arithmetic (a pass computes from its first ablated call on, for every copy).
BATCH_ELEMENTS = 2**25
PASSES = 4


@torch.no_grad()
def ablated_calls(model: nn.Module, x: Tensor) -> list[str]:
    """The names :func:`effects` gives the calls it ablates, in order, without ablating any (the meta device will
    do)."""
    return [label for label, *_ in _ablatable(model, _calls(model.eval(), x).counts)]


@torch.no_grad()
def effects(
    model: nn.Module,
    x: Tensor,
    *,
    rtol: float | None = None,
    atol: float | None = None,
    only: Collection[str] | None = None,
    copies: int | None = None,
) -> list[Effect]:
    """Each call of each ablatable leaf module of ``model`` (eval mode; the module itself where it is a leaf),
    ablated alone, at input ``x``: the change of the output, and whether it passes ``rtol``/``atol`` (default: the
    dtype's table tolerance, its atol scaled as every comparison scales it: an operation must act beyond float
    rounding). ``only``: just the calls so named.

    The ablations run side by side, each on its own copy of ``x`` in one batch beside an intact copy: in
    :data:`PASSES` passes of consecutive ablations (fewer where :data:`BATCH_ELEMENTS` bounds a pass's copies, or
    ``copies`` ablations a pass), each computing only what follows its first ablated call (the calls before it
    replayed from the intact pass). A deep, narrow network pays a few passes' overhead, not one per operation; a
    wide one little more arithmetic than one ablation at a time. Each ablated copy is compared with the intact copy
    of its own pass."""
    table = tolerance(x.dtype)
    rtol = table["rtol"] if rtol is None else rtol
    atol = table["atol"] if atol is None else atol
    recorded = _calls(model.eval(), x)
    todo = [entry for entry in _ablatable(model, recorded.counts) if only is None or entry[0] in only]
    todo.sort(key=lambda entry: recorded.position(entry[1], entry[3]))
    rows = x.shape[0]
    per_pass = copies or min(max(1, -(-len(todo) // PASSES)), max(1, BATCH_ELEMENTS // (recorded.largest * rows) - 1))
    found = {}
    for start in range(0, len(todo), per_pass):
        group = todo[start : start + per_pass]
        upto = recorded.position(group[0][1], group[0][3])
        with _replayed(model, recorded, upto, len(group) + 1), _ablated_rows(model, group, rows):
            out = model(x.repeat(len(group) + 1, *[1] * (x.dim() - 1)))  # ((copies + 1) N, ...)
        intact = out[:rows]
        allowed = scaled_atol(atol, intact) + rtol * intact.abs()
        for copy, (label, _, replace, _) in enumerate(group, start=1):
            delta = (out[copy * rows : (copy + 1) * rows] - intact).abs()
            found[label] = Effect(label, replace.what, delta.max().item(), bool((delta > allowed).any()))
    return [found[label] for label, *_ in _ablatable(model, recorded.counts) if label in found]


def _redraw(model: nn.Module, x: Tensor, selected: Callable[[nn.Module], bool], redraw: Callable) -> None:
    """One forward pass at ``x`` in which each selected module, as it is called, gets new values from
    ``redraw(module, input, output)`` and gives the output they make: a later module's values follow from the earlier
    ones' new values (a layer after a dead one would otherwise see nothing)."""

    def hook(module: nn.Module, args: tuple, y: Tensor) -> Tensor:
        redraw(module, args[0], y)
        return module.forward(args[0])

    handles = [module.register_forward_hook(hook) for module in model.modules() if selected(module)]
    try:
        with torch.no_grad():
            model.eval()(x)
    finally:
        for handle in handles:
            handle.remove()


def redraw_biases(model: nn.Module, x: Tensor, *, seed: int = 0) -> None:
    """Every bias (batch norm's aside) re-drawn N(0, s^2), s the spread of its layer's output without it at ``x``
    (the earlier biases already re-drawn): biases of 0 or 1 become values of the pre-activations' own size, so that
    a ReLU sees both signs and the bias itself counts."""
    generator = torch.Generator().manual_seed(seed)

    def redraw(module: nn.Module, _: Tensor, y: Tensor) -> None:
        spread = (y - _bias_term(module, y)).std(correction=0)
        draw = torch.randn(module.bias.shape, generator=generator, dtype=module.bias.dtype)
        module.bias.copy_(draw * spread.clamp_min(torch.finfo(y.dtype).tiny))

    _redraw(model, x, _has_bias, redraw)


def redraw_statistics(model: nn.Module, x: Tensor, *, seed: int = 0) -> None:
    """Every batch norm's running statistics moved off what its input has at ``x`` (each channel's mean shifted by up
    to half its standard deviation, its variance scaled by 0.25..4), its weight drawn from U(0.5, 1.5) and its bias
    from U(-0.5, 0.5): fresh statistics (0 and 1) make an eval-mode batch norm an identity up to eps."""
    generator = torch.Generator().manual_seed(seed)

    def redraw(bn: _BatchNorm, x: Tensor, _: Tensor) -> None:
        channels = x.transpose(0, 1).flatten(1)  # (C, everything else)
        std, mean = channels.std(dim=1, correction=0), channels.mean(dim=1)

        def uniform(low: float, high: float) -> Tensor:
            return low + (high - low) * torch.rand(std.shape, generator=generator, dtype=std.dtype)

        bn.running_mean.copy_(mean + 0.5 * std * uniform(-1, 1))
        bn.running_var.copy_((std * uniform(0.5, 2)) ** 2 + bn.eps)
        bn.weight.copy_(uniform(0.5, 1.5))
        bn.bias.copy_(uniform(-0.5, 0.5))

    _redraw(model, x, lambda module: isinstance(module, _BatchNorm), redraw)


def trained_statistics(shape: tuple[int, ...]) -> Callable[[nn.Module], None]:
    """A ``Case.prepare``: running statistics near those of each batch norm's input over a drawn batch of ``shape``
    (:func:`redraw_statistics`): a trained network's, which keep the signal's size from layer to layer where fresh ones
    (mean 0, variance 1) let a small init shrink it to nothing or a large one overflow. Taken in float64 on one thread
    and rounded into the model's dtype: the same values on every machine and worker (oneDNN's float32 sums split by
    thread, and the statistics' last bits, amplified where a channel's spread is small, moved a float64 golden)."""

    def prepare(model: nn.Module) -> None:
        dtype, threads = next(model.parameters()).dtype, torch.get_num_threads()
        x = torch.randn(shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
        torch.set_num_threads(1)
        try:
            redraw_statistics(model.double(), x)
        finally:
            torch.set_num_threads(threads)
            model.to(dtype)  # float32 -> float64 -> float32 is exact; the statistics round once

    return prepare
