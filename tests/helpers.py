"""Test helpers: the registry's cases as parameters, and the modules of the case under test, built once.

Building AlexNet-sized models, porting them and converting them between dtypes are the suite's largest
fixed costs, and holding them is its largest memory cost. The root of the suite therefore runs the tests
case by case (tests/conftest.py orders them) and :class:`CaseModules` keeps only the current case's modules.
"""

from __future__ import annotations

import gc
from collections.abc import Callable
from dataclasses import dataclass

import pytest
import torch
from torch import Tensor, nn

from reference.verify.build import seeded
from reference.verify.cases import Case, Counterpart
from reference.verify.pairs import BUILD_SEED, ported, reference_module
from reference.verify.registry import CASES

__all__ = [
    "BUILD_SEED",
    "DEVICES",
    "LAYERS",
    "MODELS",
    "PAIRS",
    "CaseModules",
    "TrainStep",
    "case_params",
    "pair_params",
    "train_step",
]

MODELS = [case for case in CASES.values() if case.is_model]
LAYERS = [case for case in CASES.values() if not case.is_model]
PAIRS = [(case, counterpart) for case in CASES.values() for counterpart in case.counterparts]
DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.cuda)]


def case_params(cases: list[Case], where: Callable[[Case], bool] = lambda _: True) -> list:
    return [pytest.param(case, id=case.name) for case in cases if where(case)]


def pair_params(where: Callable[[Case, Counterpart], bool] = lambda *_: True) -> list:
    return [
        pytest.param(case, counterpart, id=f"{case.name} vs {counterpart.name}")
        for case, counterpart in PAIRS
        if where(case, counterpart)
    ]


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


class CaseModules:
    """The current case's modules, built on first use and shared by its tests; dropped when another case's
    are asked for. A test must not change a shared module's weights (or must restore them); :meth:`reference`
    sets the mode asked for and clears gradients, so what one test leaves cannot reach the next."""

    def __init__(self) -> None:
        self._case: str | None = None
        self._cache: dict[tuple, object] = {}

    def _get(self, case: Case, key: tuple, make: Callable[[], object]) -> object:
        if case.name != self._case:
            self._cache.clear()
            gc.collect()  # an AlexNet's modules reference each other: free them before the next case's
            self._case = case.name
        if key not in self._cache:
            self._cache[key] = make()
        return self._cache[key]

    def reference(self, case: Case, *, dtype: torch.dtype = torch.float32, train: bool = False) -> nn.Module:
        """The case's module built under ``BUILD_SEED`` (prepared), in ``dtype``: other dtypes are converted
        from the float32 build (exact), so every dtype holds the same values."""
        if dtype == torch.float32:
            model = self._get(case, ("reference", dtype), lambda: reference_module(case))
        else:
            model = self._get(case, ("reference", dtype), lambda: reference_module(case).to(dtype))
        model.train(train).zero_grad(set_to_none=True)
        return model

    def counterpart(self, case: Case, counterpart: Counterpart, *, dtype: torch.dtype = torch.float32) -> nn.Module:
        """``counterpart`` ported from :meth:`reference` in ``dtype`` (eval mode)."""

        def make() -> nn.Module:
            return ported(counterpart, self.reference(case, dtype=dtype))

        model = self._get(case, ("counterpart", counterpart.name, dtype), make)
        model.eval().zero_grad(set_to_none=True)
        return model

    def from_library(self, case: Case, counterpart: Counterpart) -> tuple[nn.Module, nn.Module]:
        """The counterpart built by its library under ``BUILD_SEED``, and the reference ported back from it."""

        def make() -> tuple[nn.Module, nn.Module]:
            library = seeded(counterpart.library, BUILD_SEED)
            return counterpart.port_back(library), library

        pair = self._get(case, ("library", counterpart.name), make)
        for model in pair:
            model.eval().zero_grad(set_to_none=True)
        return pair

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
