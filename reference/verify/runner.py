"""The main job's engine (``python -m reference verify``): every selected case against each of its counterparts, at
the case's default input (its smallest valid side for a model), forward and gradients, in each dtype asked for.

Each reference is built once: its counterparts take its own tensors (a sharing port), and the next dtype converts it in
place. Rows come out as each pair is compared, so a caller can show them as they come.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch

from reference.models._api import canonical_name
from reference.verify.build import trim
from reference.verify.pairs import compare_pair, ported, reference_module
from reference.verify.records import Case, Pair
from reference.verify.registry import CASES, get_case

__all__ = ["Row", "select", "verify_rows"]


@dataclass(frozen=True)
class Row:
    case: Case
    pair: Pair
    dtype: torch.dtype
    shape: tuple[int, ...]
    forward_max: float
    grad_max: float
    passed: bool
    report: str

    @property
    def name(self) -> str:
        return f"{self.case.name} vs {self.pair.name}"


def select(names: Sequence[str] = (), pattern: str | None = None) -> list[Case]:
    """The cases named (registry names, aliases too; all where none is), those with counterparts, narrowed to the names
    ``pattern`` matches: a shell pattern, or a substring where it has no wildcard (pytest's ``-k`` for one word)."""
    cases = [get_case(name) for name in names] if names else list(CASES.values())
    if pattern is not None:
        wildcard = any(char in pattern for char in "*?[")
        pattern = canonical_name(pattern)
        cases = [case for case in cases if fnmatch.fnmatch(case.name, pattern if wildcard else f"*{pattern}*")]
    unique = {case.name: case for case in cases}  # a case named twice runs once
    return [case for case in unique.values() if case.pairs]


def verify_rows(
    cases: Sequence[Case], dtypes: Sequence[torch.dtype], device: str | torch.device = "cpu"
) -> Iterator[Row]:
    """One row per case, pair and dtype, in that order; each reference built once and converted between dtypes."""
    for case in cases:
        reference = reference_module(case, device=device)
        for dtype in dtypes:
            reference.to(dtype)
            x = case.input_space.sample(dtype=dtype).to(device)
            for pair in case.pairs:
                result = compare_pair(pair, reference, ported(pair, reference, share=True), x)
                reference.zero_grad(set_to_none=True)
                yield Row(case, pair, dtype, tuple(x.shape), result.forward_max, result.grad_max or 0.0,
                          result.passed, result.report())  # fmt: skip
        del reference
        trim()
