"""``diff --plot FILE``: how the error grows with depth. Per compared layer, in execution order, the propagated max
|Δ| (B's layer on B's input) and the layer's own (B's layer on A's input, or A's on a stored run's), on a log scale, with the bound the
tolerance allows there and the culprit marked; the outputs last. matplotlib with its non-interactive backend, only
when asked for (an optional dependency: ``pip install matplotlib``).
"""

from __future__ import annotations

from pathlib import Path

from reference.verify.compare import Comparison, scaled_bound

__all__ = ["FORMATS", "plot"]

FORMATS = (".png", ".svg")
FLOOR = 1e-12  # where an error of 0 is drawn on the log scale (the axis says so)


def plot(result: Comparison, path: str | Path, title: str = "") -> Path:
    """Draw ``result`` (a comparison with each layer's own error: ``compare_models(..., own=True)``) to ``path``
    (.png or .svg); returns the path."""
    path = Path(path)
    if path.suffix not in FORMATS:
        raise ValueError(f"--plot writes {' or '.join(FORMATS)}; got {path.name!r}")
    try:
        import matplotlib
    except ImportError:
        raise ValueError("--plot needs matplotlib: pip install matplotlib") from None
    matplotlib.use("Agg")
    from matplotlib import pyplot

    names = [d.layer for d in result.layers] + ["output"]
    propagated = [d.max_abs_diff for d in result.layers] + [result.forward_max]
    own = [d.own.max_abs_diff if d.own is not None and d.own.max_abs_diff is not None else None for d in result.layers]
    bounds = [scaled_bound(result.rtol, result.atol, d.scale) for d in result.layers]
    bounds.append(scaled_bound(result.rtol, result.atol, result.forward_scale))
    steps = range(len(names))
    figure, axes = pyplot.subplots(figsize=(max(6.0, 0.18 * len(names)), 4.0), layout="constrained")
    axes.plot(steps, [max(v, FLOOR) for v in propagated], marker="o", markersize=3, label="max |Δ| (propagated)")
    own_steps = [i for i, v in enumerate(own) if v is not None]
    axes.plot(own_steps, [max(own[i], FLOOR) for i in own_steps], marker="x", linestyle="none",
              label=f"own max |Δ| ({result.replayed.removesuffix(' to it')})")  # fmt: skip
    axes.step(steps, [max(v, FLOOR) for v in bounds], where="mid", color="grey", linestyle="--", label="tolerance")
    culprit = result.culprit_at()
    for i, d in enumerate(result.layers):
        if d is culprit:
            axes.axvline(i, color="red", linewidth=1)
            axes.annotate("culprit", (i, max(propagated[i], FLOOR)), color="red", textcoords="offset points",
                          xytext=(4, 6))  # fmt: skip
    axes.set_yscale("log")
    axes.set_ylabel(f"max |Δ| (0 drawn at {FLOOR:g})")
    axes.set_xticks(list(steps), names, rotation=90, fontsize=6)
    axes.set_title(title, fontsize=9)
    axes.legend(fontsize=7)
    figure.savefig(path)
    pyplot.close(figure)
    return path
