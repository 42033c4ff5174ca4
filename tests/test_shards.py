"""The slow battery in shards (pytest-split by the stored durations, ``.test_durations``): the shards together hold
every slow test once. A test the stored durations lack is given their mean; ``pytest -m slow --store-durations``
brings them up to date."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHARDS = 4


def _collected(*options: str) -> list[str]:
    run = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", *options],
                         cwd=ROOT, capture_output=True, text=True, check=True)  # fmt: skip
    return [line for line in run.stdout.splitlines() if "::" in line]


@pytest.mark.cost(seconds=20.0)  # five collections in fresh processes
def test_shards_partition():
    """``pytest -m slow --splits 4 --group k`` for k = 1..4 together collect every slow test, each once."""
    battery = _collected("-m", "slow")
    shards = [_collected("-m", "slow", "--splits", str(SHARDS), "--group", str(k)) for k in range(1, SHARDS + 1)]
    together = [test for shard in shards for test in shard]
    assert sorted(together) == sorted(battery), "a slow test in no shard, or in two"
    assert all(shards), "an empty shard"
