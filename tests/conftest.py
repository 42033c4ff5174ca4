"""Fixtures of the suite: the current case's shared modules, TF32 off, and tests run case by case."""

from __future__ import annotations

import pytest
import torch

from reference.verify.registry import CASES
from tests.helpers import CaseModules

_ORDER = {name: index for index, name in enumerate(CASES)}
# Case.default_run -> the markers of the checks the default run keeps (None: all of them).
_KEPT = {"all": None, "smoke": ("smoke", "forward", "light"), "forward": ("forward", "light"), "light": ("light",)}


@pytest.hookimpl(tryfirst=True)  # before the mark plugin deselects by -m
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Move to ``-m slow`` what a case's ``default_run`` leaves out of the default run; run the tests case by case
    and, within a case, float32 before float64 (a stable sort: otherwise in file order), so that each case's modules
    are built once per dtype and held only while its tests run (tests.helpers.CaseModules): an AlexNet in float64
    with its counterpart and both gradients is 2 GB."""

    def params(item: pytest.Item) -> dict:
        return item.callspec.params if hasattr(item, "callspec") else {}

    def case_of(item: pytest.Item):
        return params(item)["subject"].case if "subject" in params(item) else params(item).get("case")

    def order(item: pytest.Item) -> tuple[int, bool]:
        case = case_of(item)
        return (_ORDER[case.name] if case is not None else -1, params(item).get("dtype") == torch.float64)

    for item in items:
        case = case_of(item)
        kept = _KEPT[case.default_run] if case is not None else None
        if kept is not None and not any(item.get_closest_marker(marker) for marker in kept):
            item.add_marker(pytest.mark.slow)
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
    modules.restore_buffers()
