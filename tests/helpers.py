"""Test helpers: the registry's cases as parameters, and the modules of the case under test, built once.

Building AlexNet- and VGG-sized models, porting them and converting them between dtypes are the suite's largest
fixed costs, and holding them is its largest memory cost. The suite therefore runs case by case, float32 before
float64 (tests/conftest.py orders the tests), and :class:`CaseModules` keeps only the current case's modules in the
current dtype.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest
import torch
from hypothesis import settings
from torch import Tensor, nn

from reference.models.tables import Architecture, narrowed
from reference.verify.build import trim
from reference.verify.compare import layer_modules, outputs
from reference.verify.pairs import BUILD_SEED, ported, reference_module
from reference.verify.records import Case, Inert, Pair
from reference.verify.registry import CASES

__all__ = [
    "BUILD_SEED",
    "CASES",
    "DEVICES",
    "LAYERS",
    "META_LAYER_SECONDS",
    "MODELS",
    "PAIRS",
    "SMALLEST",
    "CaseModules",
    "Subject",
    "TrainStep",
    "acting",
    "acting_cost",
    "acting_in_place",
    "by_dtype",
    "case_params",
    "diff_rows",
    "fewer_examples",
    "meta_model",
    "meta_seconds",
    "middle_weighted_layer",
    "narrow",
    "narrowable",
    "pair_params",
    "perturbed",
    "registry_model",
    "subject_params",
    "table_of",
    "train_step",
]

MODELS = [case for case in CASES.values() if case.is_model]
LAYERS = [case for case in CASES.values() if not case.is_model]
SMALLEST = min(MODELS, key=lambda case: case.trainable_params).name  # the model the CLI's own checks run on
PAIRS = [(case, pair) for case in CASES.values() for pair in case.pairs]
DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.cuda)]


def narrowable(case: Case) -> bool:
    """Whether the case's cheap checks build it (and its counterparts, from its table) narrowed: ``Case.narrow``."""
    return case.narrow is not None


def narrow(case: Case, on: bool = True) -> contextlib.AbstractContextManager:
    """Builds inside narrowed as the case says (``Case.narrow``), else (or with ``on`` false) at full width."""
    return narrowed(case.narrow) if on and case.narrow is not None else contextlib.nullcontext()


_narrowing = narrow  # for the functions whose ``narrow`` keyword shadows it


def _acting_input(case: Case, inert: Inert) -> Tensor:
    shape = list(case.input_space.default)
    if inert.side is not None:
        shape[-2:] = [inert.side, inert.side]
    return case.input_space.sample(shape) * inert.scale


def acting_cost(case: Case, inert: Inert) -> float:
    """A forward at the side the entry names, in units of one at the default side."""
    default = case.input_space.default[-1]
    return ((inert.side or default) / default) ** 2


def acting(case: Case, inert: Inert) -> tuple[nn.Module, Tensor]:
    """The case's module and input where the operations ``inert`` names act: built under :data:`BUILD_SEED`, its
    weights re-drawn as the entry says, at the entry's side and scale."""
    x = _acting_input(case, inert)
    module = reference_module(case)
    if inert.weights is not None:
        inert.weights(module, x)
    return module, x


SAVED = 1 << 20  # elements: tensors up to this size are saved by acting_in_place (biases, statistics; not weights)


@contextlib.contextmanager
def acting_in_place(module: nn.Module, case: Case, inert: Inert) -> Iterator[tuple[nn.Module, Tensor]]:
    """:func:`acting` on a module already built (a shared one): its weights re-drawn as the entry says while inside,
    as they were on leaving. Only the small tensors are saved; a large one changed is an error (the entry needs a
    fresh build: :func:`acting`), caught by the tensors' version counters."""
    x = _acting_input(case, inert)
    state = module.state_dict(keep_vars=True)
    versions = {name: tensor._version for name, tensor in state.items()}
    saved = {name: tensor.detach().clone() for name, tensor in state.items() if tensor.numel() <= SAVED}
    try:
        if inert.weights is not None:
            with torch.no_grad():
                inert.weights(module, x)
        yield module, x
    finally:
        with torch.no_grad():
            for name, tensor in saved.items():
                state[name].copy_(tensor)
        changed = [name for name, tensor in state.items() if name not in saved and tensor._version != versions[name]]
        if changed:
            raise RuntimeError(f"{case.name}: {inert.modules} changed {changed} in place, which were not saved")


def fewer_examples(divisor: int, at_least: int = 2):
    """The active hypothesis profile's example count divided (AlexNet-sized examples cost ~0.1-1 s each)."""
    return settings(max_examples=max(at_least, settings().max_examples // divisor))


def case_params(cases: list[Case], where: Callable[[Case], bool] = lambda _: True) -> list:
    return [pytest.param(case, id=case.name) for case in cases if where(case)]


def pair_params(where: Callable[[Case, Pair], bool] = lambda *_: True) -> list:
    return [pytest.param(case, pair, id=f"{case.name} vs {pair.name}") for case, pair in PAIRS if where(case, pair)]


def by_dtype(params: list, dtypes: list[torch.dtype]) -> list:
    """``params`` (of case_params or pair_params) crossed with ``dtypes``, the dtype last."""
    return [
        pytest.param(*param.values, dtype, id=f"{param.id}-{dtype}", marks=param.marks)
        for param in params
        for dtype in dtypes
    ]


def registry_model(name: str) -> nn.Module:
    """The registry's model ``name`` as ``diff`` builds a registry name: built, then prepared (``Case.prepare``)."""
    case = CASES[name]
    return case.prepared(case.build())


def perturbed(name: str, layer: str, by: float = 1e-3) -> nn.Module:
    """The registry's model ``name`` with ``by`` added to every bias of table layer ``layer`` (both towers' halves;
    to the weights of a layer that has no bias, a ResNet's convolutions): ``python -m reference diff
    tests.helpers:perturbed NAME --a-kwargs name=NAME layer=LAYER`` builds both sides under one seed, so this is the
    only difference."""
    model = registry_model(name)
    with torch.no_grad():
        for module in map(model.get_submodule, layer_modules(model, layer)):
            (module.weight if module.bias is None else module.bias).add_(by)
    return model


@functools.cache  # by name: cases hold dicts and are not hashable
def _meta_model(name: str, narrowed_widths: bool) -> nn.Module:
    case = CASES[name]
    with torch.device("meta"), narrow(case, on=narrowed_widths):
        return case.build()


def meta_model(case: Case, *, train: bool = False, narrow: bool = False) -> nn.Module:
    """The case's model built once on the meta device (no values: kinds, counts and shapes), shared by the light
    checks; in the mode asked for; with ``narrow``, narrowed as the case says."""
    return _meta_model(case.name, narrow).train(train)


# A meta-device forward pass costs about this much a table layer (measured: a ResNet-50's 36 ms, 120 layers);
# a CIFAR ResNet-1202's 4,000 layers take seconds.
META_LAYER_SECONDS = 0.0003


def meta_seconds(case: Case, narrow: bool = False) -> float:
    """One meta-device forward pass of the case's model (``narrow``: of its narrowed build)."""
    with _narrowing(case, on=narrow):
        return META_LAYER_SECONDS * len(case.table().layers)


def table_of(case: Case, narrow: bool = False) -> Architecture:
    """The case's table, or (``narrow``) its narrowed build's."""
    with _narrowing(case, on=narrow):
        return case.table()


@dataclass(frozen=True)
class Subject:
    """What a conformance check runs on: a case's reference module, or one of its counterparts."""

    case: Case
    pair: Pair | None = None

    def module(self, modules: CaseModules, *, dtype: torch.dtype = torch.float32) -> nn.Module:
        if self.pair is None:
            return modules.reference(self.case, dtype=dtype)
        return modules.counterpart(self.case, self.pair, dtype=dtype)

    def narrowed(self, *, dtype: torch.dtype = torch.float32) -> nn.Module:
        """A fresh build of the subject, narrowed as its case says (``Case.narrow``; full width where it says
        nothing), in ``dtype``."""
        with narrow(self.case):
            reference = reference_module(self.case, dtype=dtype)
            return reference if self.pair is None else ported(self.pair, reference)

    def layer_names(self, module: nn.Module) -> list[str]:
        """The modules computing the table's layers: the reference's own names, the counterpart's mapped ones."""
        if self.pair is None:  # those an eval-mode pass runs: not the auxiliary classifiers'
            table = self.case.architecture
            return [name for layer in table.layers if layer not in table.auxiliary
                    for name in layer_modules(module, layer)]  # fmt: skip
        mapped = self.pair.layers.values()
        return [name for names in mapped for name in ([names] if isinstance(names, str) else names)]

    def dynamic_shapes(self, *, batch: bool, sides: bool) -> tuple[dict[int, object]]:
        if self.case.is_model:
            return self.case.architecture.dynamic_shapes(batch=batch, sides=sides)
        return ({0: torch.export.Dim("batch")} if batch else {},)


def subject_params(*, tool: str | None = None, models_only: bool = False, reference_only: bool = False) -> list:
    """Every case's reference and each of its counterparts, as ``subject``; where the registry says ``tool``
    cannot take one (:class:`~reference.verify.records.Skip`), a strict xfail (torch supporting it one day makes the
    test fail, and the entry is dropped)."""
    params = []
    for case in CASES.values():
        if models_only and not case.is_model:
            continue
        for pair in (None, *(() if reference_only else case.pairs)):
            why = case.skipped(tool, pair) if tool else None
            marks = [pytest.mark.xfail(reason=why, strict=True)] if why else []
            name = case.name if pair is None else f"{case.name} vs {pair.name}"
            params.append(pytest.param(Subject(case, pair), id=name, marks=marks))
    return params


@dataclass(frozen=True)
class TrainStep:
    """One train-mode forward and backward of the outputs' sum: the outputs (flattened, joined) and every gradient."""

    output: Tensor
    input_grad: Tensor
    grads: dict[str, Tensor | None]


def train_step(model: nn.Module, x: Tensor, seed: int) -> TrainStep:
    x = x.detach().clone().requires_grad_()
    model.zero_grad(set_to_none=True)  # fresh gradient tensors: an earlier step's are left untouched
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)  # dropout's masks
        output = torch.cat([out.flatten() for out in outputs(model(x))])  # the heads' too, where it has them
    output.sum().backward()
    step = TrainStep(output.detach(), x.grad, {name: p.grad for name, p in model.named_parameters()})
    model.zero_grad(set_to_none=True)  # the step holds the gradient tensors; the model lets go
    return step


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
            self.release(keep=kept)
            if kept is not None:
                self._keep(("reference",), kept.to(dtype))  # in place, one tensor at a time
            self._held = (case.name, dtype)
        if key not in self._cache:
            self._keep(key, make())
        return self._cache[key]

    def release(self, keep: nn.Module | None = None) -> None:
        """Drop every held module (but ``keep``) and hand their memory back: called when a case's last test is
        done, so that a worker enters the next case holding nothing of the last."""
        dropped = [weakref.ref(value) for value in self._cache.values() if isinstance(value, nn.Module)]
        self._cache.clear()
        self._buffers.clear()
        self._held = None
        # Freed at once, but for a module a tool left in a reference cycle (torch.jit.trace's register_submods
        # closure keeps what it traced): a collection then, only then (it costs 0.2 s here).
        if any(ref() is not None and ref() is not keep for ref in dropped):
            gc.collect()
        trim()

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

    def counterpart(self, case: Case, pair: Pair, *, dtype: torch.dtype = torch.float32) -> nn.Module:
        """The pair's counterpart ported from :meth:`reference` in ``dtype`` (eval mode), over the reference's own
        tensors where the pair's map allows (an AlexNet's weights are 0.5 GB in float64; the copying port is checked
        by tests/test_port.py)."""

        def make() -> nn.Module:
            return ported(pair, self.reference(case, dtype=dtype), share=True)

        model = self._get(case, ("counterpart", pair.name), make, dtype)
        model.eval().zero_grad(set_to_none=True)
        return model

    def train_step(self, case: Case) -> TrainStep:
        """One train step of :meth:`reference` on a fixed input (seed 11 for dropout), taken once per case."""
        return self._get(case, ("train step",), lambda: self.train_step_again(case))

    def train_step_again(self, case: Case) -> TrainStep:
        """The same step as :meth:`train_step`'s, taken again (uncached)."""
        x = case.input_space.sample(seed=BUILD_SEED)
        return train_step(self.reference(case, train=True), x, seed=11)

    def free_gradients(self) -> None:
        for value in self._cache.values():
            for model in value if isinstance(value, tuple) else (value,):
                if isinstance(model, nn.Module):
                    model.zero_grad(set_to_none=True)


def diff_rows(out: str) -> dict[str, list[str]]:
    """The diff table's rows (from the line under the header to the first blank one) by A's layer: [B's layer,
    shape, max |Δ|, relative, mark]."""
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("---")) + 1
    rows = lines[start : lines.index("", start)]
    return {cells[0]: cells[1:] for cells in map(str.split, rows)}


def middle_weighted_layer(case: Case) -> str:
    """A case's weighted table layer halfway down: where the diff tests plant a perturbation."""
    weighted = [name for name, count in case.architecture.trainable_params().items() if count]
    return weighted[len(weighted) // 2]
