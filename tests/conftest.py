"""Fixtures of the suite: the current case's shared modules, TF32 off; tests run case by case, what the default run
leaves out marked ``slow`` by tests/policy.py, and each case's tests kept on one xdist worker."""

from __future__ import annotations

import pytest
import torch

from reference.verify.registry import CASES
from tests import policy
from tests.helpers import CaseModules

_ORDER = {name: index for index, name in enumerate(CASES)}


def _params(item: pytest.Item) -> dict:
    return item.callspec.params if hasattr(item, "callspec") else {}


def _case_of(item: pytest.Item):
    params = _params(item)
    return params["subject"].case if "subject" in params else params.get("case")


@pytest.hookimpl(tryfirst=True)  # before the mark plugin deselects by -m, and before pytest-split picks a shard
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark ``slow`` what the policy leaves out of the default run; run the tests case by case and, within a case,
    float32 before float64 (a stable sort: otherwise in file order), so that each case's modules are built once per
    dtype and held only while its tests run (tests.helpers.CaseModules); put each case's tests in one xdist group
    (``-n 2 --dist loadgroup``: no worker holds two cases' models at once)."""
    budgeted = [item for item in items if "distributed" not in item.keywords]  # its own battery: -m distributed
    for item in budgeted:
        if item.get_closest_marker("cost") is None and _case_of(item) is not None and "cuda" not in item.keywords:
            raise pytest.UsageError(f"{item.nodeid} takes a case but declares no cost: mark it @pytest.mark.cost(...)")
    for item in policy.decide(budgeted):
        item.add_marker(pytest.mark.slow)
    for item in items:
        case = _case_of(item)
        if case is not None:
            item.add_marker(pytest.mark.xdist_group(case.name))

    def order(item: pytest.Item) -> tuple[int, bool]:
        case = _case_of(item)
        return (_ORDER[case.name] if case is not None else -1, _params(item).get("dtype") == torch.float64)

    items.sort(key=order)


def pytest_report_header(config: pytest.Config) -> list[str]:
    unmeasured = policy.unmeasured()
    if not unmeasured:
        return []
    return [f"cases without measured costs (only their light checks run by default): {', '.join(unmeasured)}; "
            "measure them with `python -m reference costs --write`"]  # fmt: skip


@pytest.fixture(autouse=True)
def _no_tf32():
    """float32 means float32 in every test: TF32 off for CUDA matmuls and cuDNN convolutions (no effect on CPU).
    Parity between devices is about the same arithmetic, not a faster one."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


_MODULES = CaseModules()


@pytest.fixture(scope="session")
def modules() -> CaseModules:
    return _MODULES


@pytest.hookimpl(trylast=True)  # after the test's fixtures are torn down
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> None:
    """A case's modules go when its last test is done (the tests run case by case), not when the next case asks
    for its own: a worker never holds two cases' models, nor one case's beside another's test."""
    if nextitem is None or _case_of(nextitem) is not _case_of(item):
        _MODULES.release()


@pytest.fixture(autouse=True)
def _free_shared_gradients(modules: CaseModules):
    yield
    modules.free_gradients()
    modules.restore_buffers()
