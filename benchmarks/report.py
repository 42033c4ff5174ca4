"""Summarise a saved pytest-benchmark run: per group, each model and implementation's median and minimum,
both relative to the group's first entry, then GFLOP/s, fraction of the session's GEMM rate and images/s
at the median, and the peak RSS where a benchmark ran a process of its own (verify).

    python -m benchmarks.report .benchmarks/<machine>/0001_<commit>_<date>.json

Two ratios because this project's VM stalls for seconds at a time: a stall that covers several rounds of
one implementation moves its median (measured: 1.11 between two models running identical operations),
while the minimum, which a stall can only raise, moves less.
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict
from pathlib import Path

HEADER = (
    "group",
    "model",
    "implementation",
    "median",
    "min",
    "vs first: median",
    "min",
    "GFLOP/s",
    "of GEMM",
    "images/s",
    "peak MB",
)


def rows(run: dict) -> list[tuple[str, ...]]:
    groups: dict[str, list[dict]] = defaultdict(list)
    for bench in run["benchmarks"]:
        groups[bench["group"]].append(bench)
    out = []
    for group, benches in groups.items():
        first = benches[0]["stats"]
        for bench in benches:
            info, stats = bench["extra_info"], bench["stats"]
            median, fastest = stats["median"], stats["min"]
            out.append((
                group, info["model"], info["implementation"], f"{median * 1e3:.2f} ms", f"{fastest * 1e3:.2f} ms",
                f"{median / first['median']:.2f}", f"{fastest / first['min']:.2f}",
                f"{info.get('gflops', 0):.1f}", f"{info.get('peak_fraction', 0):.2f}",
                f"{info['batch_size'] / median:.0f}", f"{info['peak_mb']:.0f}" if "peak_mb" in info else "",
            ))  # fmt: skip
    return out


def main(path: str) -> None:
    run = json.loads(Path(path).read_text())
    machine = run["machine_info"]
    print(f"{machine.get('cpu', {}).get('brand_raw', '?')}, torch {machine.get('torch')}, "
          f"{machine.get('torch_threads')} threads, GPU {machine.get('gpu', 'none')}, "
          f"THP_MEM_ALLOC_ENABLE={machine.get('thp_mem_alloc_enable') or 'unset'} "
          f"(kernel THP: {machine.get('transparent_hugepage') or '?'})")  # fmt: skip
    table = [HEADER, *rows(run)]
    widths = [max(len(r[i]) for r in table) for i in range(len(HEADER))]
    for row in table:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)))


if __name__ == "__main__":
    main(sys.argv[1])
