"""Fixtures of the suite: the current case's shared modules, TF32 off, and tests run case by case."""

from __future__ import annotations

import pytest
import torch

from reference.verify.registry import CASES
from tests.helpers import CaseModules

_ORDER = {name: index for index, name in enumerate(CASES)}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Run the tests case by case and, within a case, float32 before float64 (a stable sort: otherwise in file
    order), so that each case's modules are built once per dtype and held only while its tests run
    (tests.helpers.CaseModules): an AlexNet in float64 with its counterpart and both gradients is 2 GB."""

    def order(item: pytest.Item) -> tuple[int, bool]:
        params = item.callspec.params if hasattr(item, "callspec") else {}
        case = params["subject"].case if "subject" in params else params.get("case")
        return (_ORDER[case.name] if case is not None else -1, params.get("dtype") == torch.float64)

    items.sort(key=order)


@pytest.fixture(autouse=True)
def _no_tf32():
    """float32 means float32 in every test: TF32 off for CUDA matmuls and cuDNN convolutions (no effect on CPU).
    Parity between devices is about the same arithmetic, not a faster one."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


@pytest.fixture(scope="session")
def modules() -> CaseModules:
    return CaseModules()


@pytest.fixture(autouse=True)
def _free_shared_gradients(modules: CaseModules):
    yield
    modules.free_gradients()
