"""Each layer's own error: B's module run again on the input A's layer received, against A's output.

An error that starts under the tolerance and grows (float32 sums, a cancellation) makes the first layer whose output
parts an innocent one; the layer that is wrong is the one whose own error exceeds the tolerance, on the same input
as A's (nobuco's per-node check). :func:`own_errors` re-runs A once, keeping the arguments of the calls it needs
(cloned as each call is made; the caller says how it ran A), and replays each of B's modules on them in B's own
state and mode: its buffers are restored afterwards, and no gradient is kept. A step with no module (a functional op), joined branches, or a
dropout in train mode (it draws a new mask) is not replayed, and says why.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from reference.verify.build import state_kept

if TYPE_CHECKING:
    from reference.verify.align import Step

__all__ = ["Own", "own_errors", "own_errors_on_run", "split_call"]


@dataclass(frozen=True)
class Own:
    """A layer's own error: max |Δ| of B's module on A's input against A's output, and whether it is within the
    tolerance; None with ``why`` where the step was not replayed."""

    max_abs_diff: float | None = None
    close: bool | None = None
    why: str = ""


def split_call(step: str) -> tuple[str, int | None]:
    """``"relu#2"`` -> (``"relu"``, 2); ``"fc"`` -> (``"fc"``, 1): the module and which of its calls (a recorded
    step's name, :func:`reference.verify.align.record`)."""
    base, sep, count = step.rpartition("#")
    return (base, int(count)) if sep and count.isdigit() else (step, 1)


def _leaf(model: nn.Module, name: str) -> nn.Module | None:
    try:
        module = model.get_submodule(name)
    except AttributeError:
        return None
    return module if next(module.children(), None) is None else None


def _cloned(values: object) -> object:
    if isinstance(values, Tensor):
        return values.detach().clone()
    if isinstance(values, (list, tuple)):
        return type(values)(_cloned(value) for value in values)
    return values


@contextmanager
def _calls(model: nn.Module, names: Sequence[str]) -> Iterator[dict[str, list[tuple]]]:
    """Each named module's calls' positional arguments, cloned as the call is made, in order."""
    calls: dict[str, list[tuple]] = defaultdict(list)
    handles = [
        model.get_submodule(name).register_forward_pre_hook(
            lambda _module, args, name=name: calls[name].append(_cloned(args))
        )
        for name in names
    ]
    try:
        yield calls
    finally:
        for handle in handles:
            handle.remove()


def _why_not(model_a: nn.Module, model_b: nn.Module, name_a: str, name_b: str) -> str:
    if "+" in name_a or "+" in name_b:
        return "joined branches"
    base_a, base_b = split_call(name_a)[0], split_call(name_b)[0]
    if base_a.endswith("()") or base_b.endswith("()"):
        return "a function, no module"
    if _leaf(model_a, base_a) is None or _leaf(model_b, base_b) is None:
        return "not a leaf module"
    module_b = model_b.get_submodule(base_b)
    if module_b.training and isinstance(module_b, nn.modules.dropout._DropoutNd):
        return "a dropout in train mode draws a new mask"
    return ""


def own_errors(
    model_a: nn.Module,
    model_b: nn.Module,
    run_a: Callable[[], object],
    pairs: Sequence[tuple[str, str, Tensor]],
    judge: Callable[[Tensor, Tensor], tuple[float, bool]],
    *,
    repeatable: bool = True,
) -> list[Own]:
    """For each (A's step, B's step, A's output at it): B's module on the arguments A's module received there, judged
    by ``judge(a, b) -> (max |Δ|, close)``. ``run_a()`` runs A once more as the comparison ran it (its buffers are
    restored); where that would not repeat the first run (``repeatable`` false: a train-mode dropout with no seed),
    or no step is replayable, nothing is replayed."""
    why = [_why_not(model_a, model_b, name_a, name_b) for name_a, name_b, _ in pairs]
    if not repeatable:
        why = [reason or "A's dropout would draw other masks on a second run (compare with a seed)" for reason in why]
    needed = sorted({split_call(name_a)[0] for (name_a, _, _), reason in zip(pairs, why, strict=True) if not reason})
    if not needed:
        return [Own(why=reason) for reason in why]
    with torch.no_grad(), state_kept(model_a), _calls(model_a, needed) as calls:
        run_a()
    dtype_b = next((p.dtype for p in model_b.parameters() if p.is_floating_point()), None)
    device_b = next((p.device for p in model_b.parameters()), None)
    out = []
    for (name_a, name_b, a), reason in zip(pairs, why, strict=True):
        if reason:
            out.append(Own(why=reason))
            continue
        (base_a, call), base_b = split_call(name_a), split_call(name_b)[0]
        args = calls[base_a][call - 1]
        where = {"dtype": dtype_b or a.dtype, "device": device_b or a.device}  # B's, or A's where B has no weights
        args = tuple(arg.to(**where) if isinstance(arg, Tensor) and arg.is_floating_point() else arg for arg in args)
        module_b = model_b.get_submodule(base_b)
        try:
            with torch.no_grad(), state_kept(module_b):
                b = module_b(*args)
        except Exception as error:  # B's layer does not take A's input (another shape): that is its own error
            out.append(Own(float("inf"), False, f"B's layer refuses A's input: {type(error).__name__}"))
            continue
        out.append(Own(*judge(a, b.to(a.device))))
    return out


def own_errors_on_run(
    model_a: nn.Module,
    steps: Sequence[Step],
    run_input: Tensor,
    pairs: Sequence[tuple[str, str]],
    judge: Callable[[Tensor, Tensor], tuple[float, bool]],
) -> list[Own]:
    """For each (A's step, a stored run's step): A's module on the input the stored step received (the stored output
    of the step that made it; where no step made it, the run's input: what else a leaf module reads is a weight, which
    the recorder leaves out, or a tensor the model holds unregistered), judged against the stored output by ``judge(a, b)``: a layer's own
    error where B is a run with no module to replay (:mod:`reference.verify.runs`)."""
    by_name = {step.name: step for step in steps}
    where = {"dtype": run_input.dtype, "device": run_input.device}
    out = []
    for name_a, name_b in pairs:
        step = by_name.get(name_b)
        reason = _why_not_on_run(model_a, name_a, step, run_input)
        if reason:
            out.append(Own(why=reason))
            continue
        source = step.inputs[0]
        received = run_input if source is None else source.output
        module_a = model_a.get_submodule(split_call(name_a)[0])
        try:
            with torch.no_grad(), state_kept(module_a):
                a = module_a(received.to(**where, copy=True))  # a copy: an in-place ReLU would overwrite the run
        except Exception as error:  # A's layer does not take the run's input (another shape): its own error
            out.append(Own(float("inf"), False, f"A's layer refuses the run's input: {type(error).__name__}"))
            continue
        out.append(Own(*judge(a, step.output.to(a.device))))
    return out


def _why_not_on_run(model_a: nn.Module, name_a: str, step: Step | None, run_input: Tensor) -> str:
    if step is None or "+" in name_a:
        return "joined branches"
    base_a = split_call(name_a)[0]
    if base_a.endswith("()") or step.name.endswith("()") or "()#" in step.name:
        return "a function, no module"
    module_a = _leaf(model_a, base_a)
    if module_a is None:
        return "not a leaf module"
    if module_a.training and isinstance(module_a, nn.modules.dropout._DropoutNd):
        return "a dropout in train mode draws a new mask"
    if len(step.inputs) != 1:
        return f"the stored step read {len(step.inputs)} tensors"
    return ""
