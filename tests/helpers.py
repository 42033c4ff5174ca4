"""Test helpers: the registry's cases as parameters, and the modules of the case under test, built once.

Building AlexNet-sized models, porting them and converting them between dtypes are the suite's largest
fixed costs, and holding them is its largest memory cost. The suite therefore runs case by case, float32
before float64 (tests/conftest.py orders the tests), and :class:`CaseModules` keeps only the current case's
modules in the current dtype.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
from collections.abc import Callable
from dataclasses import dataclass

import pytest
import torch
from hypothesis import settings
from torch import Tensor, nn

from reference.verify.cases import Case, Counterpart
from reference.verify.compare import layer_modules
from reference.verify.pairs import BUILD_SEED, ported, reference_module
from reference.verify.registry import CASES

__all__ = [
    "BUILD_SEED",
    "CASES",
    "DEVICES",
    "LAYERS",
    "MODELS",
    "PAIRS",
    "CaseModules",
    "Subject",
    "TrainStep",
    "by_dtype",
    "case_params",
    "fewer_examples",
    "heavy",
    "meta_model",
    "pair_params",
    "perturbed",
    "subject_params",
    "train_step",
]

MODELS = [case for case in CASES.values() if case.is_model]
LAYERS = [case for case in CASES.values() if not case.is_model]
PAIRS = [(case, counterpart) for case in CASES.values() for counterpart in case.counterparts]
DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.cuda)]


def fewer_examples(divisor: int, at_least: int = 2):
    """The active hypothesis profile's example count divided (AlexNet-sized examples cost ~0.1-1 s each)."""
    return settings(max_examples=max(at_least, settings().max_examples // divisor))


def case_params(
    cases: list[Case], where: Callable[[Case], bool] = lambda _: True, slow_if: Callable[[Case], bool] = lambda _: False
) -> list:
    return [pytest.param(case, id=case.name, marks=_slow(slow_if(case))) for case in cases if where(case)]


def pair_params(where: Callable[[Case, Counterpart], bool] = lambda *_: True) -> list:
    return [
        pytest.param(case, counterpart, id=f"{case.name} vs {counterpart.name}")
        for case, counterpart in PAIRS
        if where(case, counterpart)
    ]


def by_dtype(params: list, dtypes: list[torch.dtype], slow_if: Callable[[Case, torch.dtype], bool]) -> list:
    """``params`` (of case_params or pair_params) crossed with ``dtypes``, the dtype last; ``-m slow`` where
    ``slow_if(case, dtype)``."""
    return [
        pytest.param(
            *param.values,
            dtype,
            id=f"{param.id}-{dtype}",
            marks=[*param.marks, *_slow(slow_if(param.values[0], dtype))],
        )
        for param in params
        for dtype in dtypes
    ]


def perturbed(name: str, layer: str, by: float = 1e-3) -> nn.Module:
    """The registry's model ``name`` with ``by`` added to every bias of table layer ``layer`` (both towers' halves):
    ``python -m reference diff tests.helpers:perturbed NAME --a-kwargs name=NAME layer=LAYER`` builds both sides
    under one seed, so this is the only difference."""
    model = CASES[name].build()
    with torch.no_grad():
        for module in layer_modules(model, layer):
            model.get_submodule(module).bias.add_(by)
    return model


@functools.cache  # by name: cases hold dicts and are not hashable
def _meta_model(name: str) -> nn.Module:
    with torch.device("meta"):
        return CASES[name].build()


def meta_model(case: Case, *, train: bool = False) -> nn.Module:
    """The case's model built once on the meta device (no values: kinds, counts and shapes), shared by the light
    checks; in the mode asked for."""
    return _meta_model(case.name).train(train)


def _slow(slow: bool) -> list:
    return [pytest.mark.slow] if slow else []


def heavy(case: Case) -> bool:
    """AlexNet-sized: a check that builds, traces or exports it again costs seconds, so it goes to ``-m slow``."""
    return case.is_model and case.trainable_params > 1_000_000


@dataclass(frozen=True)
class Subject:
    """What a conformance check runs on: a case's reference module, or one of its counterparts."""

    case: Case
    counterpart: Counterpart | None = None

    def module(self, modules: CaseModules, *, dtype: torch.dtype = torch.float32) -> nn.Module:
        if self.counterpart is None:
            return modules.reference(self.case, dtype=dtype)
        return modules.counterpart(self.case, self.counterpart, dtype=dtype)

    def layer_names(self, module: nn.Module) -> list[str]:
        """The modules computing the table's layers: the reference's own names, the counterpart's mapped ones."""
        if self.counterpart is None:
            return [name for layer in self.case.architecture.layers for name in layer_modules(module, layer)]
        mapped = self.counterpart.layers.values()
        return [name for names in mapped for name in ([names] if isinstance(names, str) else names)]

    def dynamic_shapes(self, *, batch: bool, sides: bool) -> tuple[dict[int, object]]:
        if self.case.is_model:
            return self.case.architecture.dynamic_shapes(batch=batch, sides=sides)
        return ({0: torch.export.Dim("batch")} if batch else {},)


def subject_params(
    *,
    tool: str | None = None,
    models_only: bool = False,
    reference_only: bool = False,
    slow_if_heavy: bool = False,
    slow_counterparts: bool = False,
) -> list:
    """Every case's reference and each of its counterparts, as ``subject``; where the registry says ``tool``
    cannot take one, a strict xfail (torch supporting it one day makes the test fail, and the entry is dropped)."""
    params = []
    for case in CASES.values():
        if models_only and not case.is_model:
            continue
        for other in (None, *(() if reference_only else case.counterparts)):
            slow = (slow_if_heavy and heavy(case)) or (slow_counterparts and other is not None)
            marks = _slow(slow)
            why = {**case.unsupported, **(other.unsupported if other else {})}.get(tool)
            if why:
                marks.append(pytest.mark.xfail(reason=why, strict=True))
            name = case.name if other is None else f"{case.name} vs {other.name}"
            params.append(pytest.param(Subject(case, other), id=name, marks=marks))
    return params


@dataclass(frozen=True)
class TrainStep:
    """One train-mode forward and backward of ``output.sum()``: the output and every gradient."""

    output: Tensor
    input_grad: Tensor
    grads: dict[str, Tensor | None]


def train_step(model: nn.Module, x: Tensor, seed: int) -> TrainStep:
    x = x.detach().clone().requires_grad_()
    model.zero_grad(set_to_none=True)  # fresh gradient tensors: an earlier step's are left untouched
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)  # dropout's masks
        output = model(x)
    output.sum().backward()
    step = TrainStep(output.detach(), x.grad, {name: p.grad for name, p in model.named_parameters()})
    model.zero_grad(set_to_none=True)  # the step holds the gradient tensors; the model lets go
    return step


def _return_freed_memory() -> None:
    """Hand the C heap's free pages back to the system (glibc): the medium-sized tensors (1-32 MB) of the
    models just dropped live on the heap, and without this the process keeps their pages, peak RSS included."""
    if _LIBC is not None and hasattr(_LIBC, "malloc_trim"):
        _LIBC.malloc_trim(0)


_LIBC = ctypes.CDLL(ctypes.util.find_library("c")) if ctypes.util.find_library("c") else None


class CaseModules:
    """The current case's modules in the current dtype, built on first use and shared by its tests; dropped
    when another case's or dtype's are asked for. A test must not change a shared module's weights (or must
    restore them); :meth:`reference` sets the mode asked for and clears gradients, so what one test leaves
    cannot reach the next."""

    def __init__(self) -> None:
        self._held: tuple[str, torch.dtype] | None = None
        self._cache: dict[tuple, object] = {}
        self._buffers: dict[tuple, dict[str, Tensor]] = {}

    def _get(self, case: Case, key: tuple, make: Callable[[], object], dtype: torch.dtype = torch.float32) -> object:
        if (case.name, dtype) != self._held:
            # The same case in another dtype converts its reference rather than building it again.
            kept = self._cache.get(("reference",)) if self._held and self._held[0] == case.name else None
            self._cache.clear()  # freed at once: modules hold no reference cycles (a gc.collect costs 0.2 s here)
            self._buffers.clear()
            if kept is not None:
                self._keep(("reference",), kept.to(dtype))  # in place, one tensor at a time
            _return_freed_memory()
            self._held = (case.name, dtype)
        if key not in self._cache:
            self._keep(key, make())
        return self._cache[key]

    def _keep(self, key: tuple, value: object) -> None:
        self._cache[key] = value
        if isinstance(value, nn.Module):  # batch-norm statistics as built, for restore_buffers
            self._buffers[key] = {name: buffer.clone() for name, buffer in value.named_buffers()}

    def restore_buffers(self) -> None:
        """Every held module's buffers as they were built: a train-mode forward updates batch-norm statistics,
        and the next test must see the module it would have built."""
        with torch.no_grad():
            for key, saved in self._buffers.items():
                for name, buffer in self._cache[key].named_buffers():
                    buffer.copy_(saved[name])

    def reference(self, case: Case, *, dtype: torch.dtype = torch.float32, train: bool = False) -> nn.Module:
        """The case's module built under ``BUILD_SEED`` (prepared), in ``dtype``: converted from the float32
        build (exact), so every dtype holds the same values."""
        model = self._get(case, ("reference",), lambda: reference_module(case).to(dtype), dtype)
        model.train(train).zero_grad(set_to_none=True)
        return model

    def counterpart(self, case: Case, counterpart: Counterpart, *, dtype: torch.dtype = torch.float32) -> nn.Module:
        """``counterpart`` ported from :meth:`reference` in ``dtype`` (eval mode), over the reference's own tensors
        where the port can share them (an AlexNet's weights are 0.5 GB in float64; the copying port is checked
        by tests/test_port.py)."""

        def make() -> nn.Module:
            return ported(counterpart, self.reference(case, dtype=dtype), share=True)

        model = self._get(case, ("counterpart", counterpart.name), make, dtype)
        model.eval().zero_grad(set_to_none=True)
        return model

    def train_step(self, case: Case) -> TrainStep:
        """One train step of :meth:`reference` on a fixed input (seed 11 for dropout), taken once per case."""

        def make() -> TrainStep:
            return self.train_step_again(case)

        return self._get(case, ("train step",), make)

    def train_step_again(self, case: Case) -> TrainStep:
        """The same step as :meth:`train_step`'s, taken again (uncached)."""
        x = case.input_space.sample(seed=BUILD_SEED)
        return train_step(self.reference(case, train=True), x, seed=11)

    def free_gradients(self) -> None:
        for value in self._cache.values():
            for model in value if isinstance(value, tuple) else (value,):
                if isinstance(model, nn.Module):
                    model.zero_grad(set_to_none=True)
