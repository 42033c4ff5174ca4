"""The policy that thins the default run (tests/policy.py), on made-up items and costs: what it keeps whatever the
budget (the cheapest check of each aim), what it leaves out, and what it refuses."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from reference.verify.costs import Cost
from tests import policy
from tests.helpers import CASES

CASE = CASES["lenet5"]


class _Item:
    """What the policy reads of a pytest item: its cost marker, parameters, id and test function."""

    def __init__(self, name: str, takes_modules: bool = False, **cost: object) -> None:
        self.keywords: dict = {}
        self.nodeid = self.name = f"tests/test_made_up.py::{name}[{CASE.name}]"
        self.callspec = SimpleNamespace(params={"case": CASE}, id=CASE.name)
        self._cost = pytest.mark.cost(**cost).mark
        self.function = (lambda modules, case: None) if takes_modules else (lambda case: None)

    def get_closest_marker(self, name: str):
        return self._cost if name == "cost" else None


def _measured(build: float) -> dict:
    cost = Cost(build=build, forward=build / 10, backward=build / 5, pairs=build, peak_mb=10, forward_peak_mb=5)
    return {CASE.name: {"float32": cost, "narrow": Cost(*(value / 100 for value in vars(cost).values()))}}


def test_aim_kept():
    """Of the checks with one aim and one id, the cheapest is kept before anything else, even a core check that
    alone would fill the budget; its dearer form goes to ``-m slow``, and so does the core check that no longer
    fits."""
    build = policy.CHECK_SECONDS - policy.PER_TEST - 1e-3  # a core check of one build fills the budget exactly
    core = _Item("test_pair", builds=1, core=True)
    full = _Item("test_init", builds=1, aim="init")
    cheap = _Item("test_init_narrow", builds=1, aim="init", narrow=True)
    slow = policy.decide([core, full, cheap], _measured(build))
    assert cheap not in slow
    assert full in slow
    assert core in slow


def test_aims_over_budget():
    """Where the aimed checks alone exceed the budget, collection fails, naming the dearest: a cheaper form is
    needed, not a silent gap."""
    item = _Item("test_init", builds=1, aim="init")
    with pytest.raises(pytest.UsageError, match=r"test_init\[lenet5\]"):
        policy.decide([item], _measured(2 * policy.CHECK_SECONDS))


def test_unknown_aim():
    """An aim the policy does not know is an error, not a check that silently stands for nothing."""
    with pytest.raises(ValueError, match="unknown aim 'speed'"):
        policy.decide([_Item("test_x", aim="speed")], _measured(0.1))


def test_shared_build_counted_where_taken():
    """A test that takes the shared modules pays for their build (once per case); one that does not, does not."""
    measured = _measured(3.0)
    takes = policy.estimate(_Item("test_a", takes_modules=True, forwards=1), measured)
    builds = policy.estimate(_Item("test_b", forwards=1), measured)
    assert takes.shared == (CASE.name, "float32")
    assert builds.shared is None
    assert takes.seconds == builds.seconds == pytest.approx(policy.PER_TEST + 0.3)
