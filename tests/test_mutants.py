"""The mutation run (tools/mutation.py) stays runnable: each mutant's text occurs exactly once in the tree, so that
a refactoring which moved the code it mutates shows here rather than when the run is next made."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _mutants() -> list:
    spec = importlib.util.spec_from_file_location("mutation", ROOT / "tools" / "mutation.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("mutation", module)  # a dataclass resolves its module by name
    spec.loader.exec_module(module)
    return list(module.MUTANTS)


@pytest.mark.parametrize("mutant", _mutants(), ids=lambda mutant: mutant.name)
def test_mutant_applies(mutant):
    """The text the mutant replaces occurs once in its file, and the replacement changes it."""
    text = (ROOT / mutant.path).read_text()
    assert text.count(mutant.old) == 1, f"{mutant.path}: the text to replace occurs {text.count(mutant.old)} times"
    assert mutant.new != mutant.old
