"""The bare cost of a verify run: what any verification of the same cases must spend, and nothing else. For each case
and dtype: its reference built (under the same seed), each counterpart built by its own constructor (its own init, no
port), and one forward and one backward of each at the same input. No comparison, no report.

    python -m benchmarks.bare [NAME ...] [-k PATTERN] [--dtype float32 float64]

benchmarks/test_verify.py times it beside ``python -m reference verify`` with the same arguments.
"""

from __future__ import annotations

import argparse
import os
import sys

os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")  # as python -m reference sets it

import torch

from reference.verify.build import seeded, trim
from reference.verify.pairs import BUILD_SEED, reference_module
from reference.verify.runner import select


def _step(model: torch.nn.Module, x: torch.Tensor) -> None:
    model(x.detach().clone().requires_grad_()).sum().backward()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bare", description=__doc__.splitlines()[0])
    parser.add_argument("name", nargs="*")
    parser.add_argument("-k", dest="pattern", default=None)
    parser.add_argument("--dtype", nargs="+", default=["float32"], choices=["float32", "float64"])
    args = parser.parse_args(argv)
    for case in select(args.name, args.pattern):
        for dtype in (getattr(torch, name) for name in args.dtype):
            reference = reference_module(case, dtype=dtype)
            x = case.input_space.sample(dtype=dtype)
            _step(reference, x)
            for pair in case.pairs:
                other = seeded(lambda pair=pair, model=reference: pair.other(model), BUILD_SEED).to(dtype).eval()
                _step(other, x)
                del other
            del reference
            trim()
    return 0


if __name__ == "__main__":
    sys.exit(main())
