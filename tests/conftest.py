"""Fixtures shared by the test modules: each spec's model and its train steps, made once per session."""

from __future__ import annotations

import copy
from dataclasses import dataclass

import pytest
import torch
import torchvision
from torch import Tensor, nn

from reference import port
from reference.specs import ModelSpec
from reference.testing import uninitialised

BUILD_SEED = 0


class BuiltModels:
    """Each spec's model built once, under ``BUILD_SEED``, the first time a test asks for it.

    Building AlexNet-sized models and converting them between dtypes are the suite's largest fixed
    costs, so tests share one copy per (spec, dtype), converted from the float32 build. A test must
    not change a shared model's weights; :meth:`get` sets the mode asked for and clears gradients,
    so what one test leaves behind cannot reach the next.
    """

    def __init__(self) -> None:
        self._models: dict[tuple[str, torch.dtype, bool], nn.Module] = {}
        self._others: list[nn.Module] = []

    def share(self, model: nn.Module) -> nn.Module:
        """Register a session-shared model built elsewhere, so :meth:`free_gradients` covers it too."""
        self._others.append(model)
        return model

    def get(
        self, spec: ModelSpec, *, dtype: torch.dtype = torch.float32, train: bool = False, prepared: bool = False
    ) -> nn.Module:
        """``prepared``: with the spec's ``counterpart.prepare`` applied (to a copy), for comparisons that
        would otherwise pass vacuously (the seed LeNet-5's Gaussian head outputs ~1e-13 at init)."""
        prepare = spec.counterpart.prepare if prepared and spec.counterpart is not None else None
        key = (spec.name, dtype, prepare is not None)
        if key not in self._models:
            if prepare is not None:
                model = copy.deepcopy(self.get(spec, dtype=dtype))
                prepare(model)
            elif dtype == torch.float32:
                with torch.random.fork_rng(devices=[]):
                    torch.manual_seed(BUILD_SEED)
                    model = spec.builder()
            else:
                model = uninitialised(spec.builder, dtype=dtype)
                model.load_state_dict(self.get(spec).state_dict())  # converted on copy: float32 -> dtype is exact
            self._models[key] = model
        model = self._models[key].train(train)
        model.zero_grad(set_to_none=True)
        return model

    def free_gradients(self) -> None:
        """Drop every shared model's gradients: a float64 AlexNet's are 490 MB, held until its next ``get``."""
        for model in [*self._models.values(), *self._others]:
            model.zero_grad(set_to_none=True)

    def on(self, spec: ModelSpec, device: str, **kwargs) -> nn.Module:
        """:meth:`get` on CPU; elsewhere a copy of it moved to ``device`` (this test's own)."""
        model = self.get(spec, **kwargs)
        return model if device == "cpu" else copy.deepcopy(model).to(device)


@pytest.fixture(autouse=True)
def _no_tf32():
    """float32 means float32 in every test: TF32 off for CUDA matmuls and cuDNN convolutions (no effect on CPU).
    Parity between devices is about the same arithmetic, not a faster one."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.cuda)]


@pytest.fixture(scope="session")
def built_models() -> BuiltModels:
    return BuiltModels()


@pytest.fixture(autouse=True)
def _free_shared_gradients(built_models: BuiltModels):
    yield
    built_models.free_gradients()


@pytest.fixture(scope="session")
def torchvision_alexnet(built_models: BuiltModels) -> torchvision.models.AlexNet:
    """torchvision's AlexNet built under ``BUILD_SEED``, shared like the spec models: never change its weights."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(BUILD_SEED)
        return built_models.share(torchvision.models.alexnet(weights=None))


@pytest.fixture(scope="session")
def alexnet_and_torchvision(
    built_models: BuiltModels, torchvision_alexnet: torchvision.models.AlexNet
) -> tuple[nn.Module, torchvision.models.AlexNet]:
    """The reference AlexNet ported from the shared torchvision one, and that one. Tests set the mode; a
    test that perturbs a weight restores it."""
    return built_models.share(port.alexnet_from_torchvision(torchvision_alexnet)), torchvision_alexnet


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
    return TrainStep(output.detach(), x.grad, {name: p.grad for name, p in model.named_parameters()})


class TrainSteps:
    """One train step per spec, taken once per session; :meth:`again` takes another, uncached.

    The gradient-flow tests read the cached step; the determinism tests compare it bitwise with a
    second one. Only the first is kept: an AlexNet step's gradients are 250 MB.
    """

    def __init__(self, built_models: BuiltModels) -> None:
        self._built = built_models
        self._steps: dict[str, TrainStep] = {}

    def get(self, spec: ModelSpec) -> TrainStep:
        if spec.name not in self._steps:
            self._steps[spec.name] = self.again(spec)
        return self._steps[spec.name]

    def again(self, spec: ModelSpec) -> TrainStep:
        """The same step as :meth:`get`'s: the same model, input and seed."""
        model = self._built.get(spec, train=True, prepared=True)
        side = spec.default_side
        x = torch.randn(2, spec.in_channels, side, side, generator=torch.Generator().manual_seed(BUILD_SEED))
        step = train_step(model, x, seed=11)
        model.zero_grad(set_to_none=True)  # the step holds the gradient tensors; the shared model lets go
        return step


@pytest.fixture(scope="session")
def train_steps(built_models: BuiltModels) -> TrainSteps:
    return TrainSteps(built_models)
