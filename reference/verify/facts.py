"""Facts: each number a paper or library states about a model, next to the same number derived from its layer table
or counted on the built module. ``python -m reference summary`` prints them; the suite asserts that each published
figure equals its measured one, and that each erratum really disagrees.

A :class:`~reference.verify.records.Paper` quotes figures by measure: :data:`TOTALS` and :data:`BREAKDOWNS` say how
each measure is taken (a name not among them is an error, not a fact skipped).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from torch import nn

from reference.models import tables as arch
from reference.verify.pairs import library_meta
from reference.verify.records import Case

__all__ = ["BREAKDOWNS", "TOTALS", "Fact", "fact_rows", "facts", "layer_counts", "params_per_layer"]

TOWER_PREFIXES = ("tower_a.", "tower_b.")


@dataclass(frozen=True)
class Fact:
    kind: str
    layer: str
    published: Any
    measured: Any
    erratum: bool = False  # the paper's printed figure, which its own network contradicts

    @property
    def holds(self) -> bool:
        return (self.published != self.measured) if self.erratum else (self.published == self.measured)


def params_per_layer(model: nn.Module) -> dict[str, int]:
    """Trainable parameters of each named layer, counted on the built module (tower halves added)."""
    counts: dict[str, int] = {}
    for name, param in model.named_parameters():
        if param.requires_grad:
            layer = name.rsplit(".", 1)[0]
            for prefix in TOWER_PREFIXES:
                layer = layer.removeprefix(prefix)
            counts[layer] = counts.get(layer, 0) + param.numel()
    return counts


def _notation(spec: arch.LayerSpec) -> str | None:
    """A layer's kind as Simonyan & Zisserman's Table 1 writes it (conv3 for a 3x3 convolution); None for a
    reshaping step."""
    if isinstance(spec, arch.Conv2dSpec):
        return f"conv{spec.kernel_size}"
    kinds = {
        arch.LocalResponseNormSpec: "LRN",
        arch.MaxPool2dSpec: "maxpool",
        arch.LinearSpec: "FC",
        arch.FlattenSpec: None,
    }
    return kinds.get(type(spec), type(spec).__name__)


def layer_counts(table: arch.Architecture) -> Counter[str]:
    """The table's layers counted by kind, in Table 1's notation."""
    return Counter(kind for _, spec in table if (kind := _notation(spec)) is not None)


def _counted(model: nn.Module, leaving_out: frozenset[str] = frozenset()) -> int:
    """Trainable parameters of the built module, those of the layers ``leaving_out`` names excluded."""
    return sum(p.numel() for name, p in model.named_parameters()
               if p.requires_grad and name.rsplit(".", 1)[0] not in leaving_out)  # fmt: skip


def _weight_layers(table: arch.Architecture) -> int:
    return sum(isinstance(spec, (arch.Conv2dSpec, arch.LinearSpec)) for _, spec in table)


def _deepest(table: arch.Architecture, counted: tuple[type, ...]) -> int:
    """The most layers of the ``counted`` kinds on one path from the input to the output (Szegedy et al.'s depth:
    parallel branches count once, the auxiliary classifiers not at all)."""
    depth: dict[str, int] = {}
    previous = None
    for name, spec in table:
        inputs = table.sources.get(name, (previous,) if previous else ())
        depth[name] = max((depth[i] for i in inputs), default=0) + isinstance(spec, counted)
        previous = name
    return depth[table.output_layer]


def _weights(table: arch.Architecture) -> dict[str, int]:
    """Each convolution's and FC layer's weights, biases left out."""
    out = {}
    for name, spec in table:
        if isinstance(spec, arch.Conv2dSpec):
            out[name] = spec.trainable_params - spec.out_channels * spec.bias
        elif isinstance(spec, arch.LinearSpec):
            out[name] = spec.trainable_params - spec.out_features
    return out


# Totals: measure -> (table, built module) -> [(what, measured)]; a total quoted exactly is checked on both.
TOTALS: dict[str, Callable[[arch.Architecture, nn.Module], list[tuple[str, Any]]]] = {
    "trainable parameters": lambda table, model: [
        ("built", _counted(model)), ("table", sum(table.trainable_params().values()))
    ],
    # Rounded as the paper prints them: to the published figure's decimals (133; 0.27; 19.4).
    "parameters, millions": lambda table, model: [
        ("built", _counted(model) / 1e6), ("table", sum(table.trainable_params().values()) / 1e6)
    ],
    "multiply-adds, billions": lambda table, _: [
        (f"{table.default_side}x{table.default_side}", sum(table.macs().values()) / 1e9)
    ],
    "weight layers": lambda table, _: [("table", _weight_layers(table))],
    "weight layers deep": lambda table, _: [("table", _deepest(table, (arch.Conv2dSpec, arch.LinearSpec)))],
    "layers deep, pooling counted": lambda table, _: [("table", _deepest(table, POOLING_DEPTH))],
    "connections": lambda table, _: [("table", sum(table.connections().values()))],
    # Multiplications per image at the default side, weights only (no bias): torchvision's _ops counts them so.
    "multiply-accumulates": lambda table, _: [(f"{table.default_side}x{table.default_side}", sum(table.macs().values()))],
}  # fmt: skip
# Breakdowns: measure -> table -> {layer or kind: measured}. A quoted key names a layer, a block (the sum of the
# layers under it: "inception3a", "aux1") or blocks joined by "+" (a printed row that spans them: "conv2+conv3").
BREAKDOWNS: dict[str, Callable[[arch.Architecture], dict[str, float]]] = {
    "parameters": lambda table: table.trainable_params(),
    "connections": lambda table: table.connections(),
    "neurons": lambda table: table.neurons(),
    "layers": layer_counts,  # by kind, in Table 1's notation; any kind not quoted must number 0
    # Szegedy et al.'s Table 1 "params": three rows are exactly the weights (no biases) in thousands of 1024, truncated.
    "weights, thousands of 1024": lambda table: {name: n / 1024 for name, n in _weights(table).items()},
    "multiply-adds, millions": lambda table: {name: n / 1e6 for name, n in table.macs().items()},
}
# How a measured figure is printed, where not rounded to the published figure's decimals (:func:`_as_printed`).
PRINTED_AS: dict[str, Callable[[float], float]] = {"weights, thousands of 1024": math.floor}
POOLING_DEPTH = (arch.Conv2dSpec, arch.LinearSpec, arch.MaxPool2dSpec, arch.AvgPool2dSpec, arch.AdaptiveAvgPool2dSpec)


def _row(measured: dict[str, float], key: str) -> float | None:
    """A quoted key's figure: a layer's, or the sum over the blocks it names (None: nothing under it)."""
    found = [
        n for part in key.split("+") for name, n in measured.items() if name == part or name.startswith(f"{part}.")
    ]
    return sum(found) if found else None


def _printed(measure: str, measured: float | None, published: Any) -> Any:
    if measured is None or measure not in PRINTED_AS:
        return _as_printed(measured, published)
    return PRINTED_AS[measure](measured)


def facts(case: Case, model: nn.Module) -> list[Fact]:
    """Every published fact of a model case, with what its table and the built ``model`` say."""
    paper, table = case.paper, case.architecture
    unknown = sorted({*paper.totals, *paper.breakdown, *paper.errata} - {*TOTALS, *BREAKDOWNS})
    if unknown:
        raise ValueError(f"{case.name}: no such measure {unknown}; known: {sorted({*TOTALS, *BREAKDOWNS})}")
    out = []
    for measure, published in paper.totals.items():
        out += [Fact(f"{measure} ({how})", "total", published, _as_printed(measured, published))
                for how, measured in TOTALS[measure](table, model)]  # fmt: skip
    for measure, quoted in paper.breakdown.items():
        measured = BREAKDOWNS[measure](table)
        out += [
            Fact(measure, layer, n, _printed(measure, _row(measured, layer) or 0, n)) for layer, n in quoted.items()
        ]
        if measure == "layers":
            out.append(Fact(measure, "any other kind", 0, sum(n for k, n in measured.items() if k not in quoted)))
    for measure, printed in paper.errata.items():
        if measure in TOTALS:  # a total as printed: "total" -> (figure, note), against the table's count
            (_, value), figure = TOTALS[measure](table, model)[-1], printed["total"][0]
            out.append(Fact(f"{measure} (as printed)", "total", figure, _as_printed(value, figure), erratum=True))
            continue
        measured = BREAKDOWNS[measure](table)
        out += [Fact(f"{measure} (as printed)", layer, n, _printed(measure, _row(measured, layer), n), erratum=True)
                for layer, (n, _) in printed.items()]  # fmt: skip
    out += [Fact(f"table: {name}", "", quoted.parse(quoted.printed), quoted.derive(model))
            for name, quoted in paper.tables.items()]  # fmt: skip
    meta = library_meta(case)
    if meta is not None:
        out += [
            # Without the auxiliary classifiers: torchvision's builder drops them after loading its weights.
            Fact("library meta num_params", "total", meta["num_params"], _counted(model, table.auxiliary)),
            # torchvision's _ops: GMAC (multiplications only, batch 1) rounded to 3 decimals.
            Fact("library meta _ops (GMAC)", "total", meta["_ops"], round(sum(table.macs().values()) / 1e9, 3)),
            Fact("library meta min_size", "H, W", tuple(meta["min_size"]), (case.valid_sides.low,) * 2),
        ]
    return out


def _as_printed(measured: Any, published: Any) -> Any:
    """A measured float rounded to the decimals of the figure it is checked against (an int: to an int)."""
    if not isinstance(measured, float):
        return measured
    decimals = len(repr(published).partition(".")[2]) if isinstance(published, float) else 0
    return round(measured, decimals) if decimals else round(measured)


def fact_rows(case: Case, model: nn.Module) -> list[tuple[str, str, str, str]]:
    def shown(value: Any) -> str:
        return f"{value:,}" if isinstance(value, int) else str(value)

    return [(f.kind, f.layer, shown(f.published), shown(f.measured)) for f in facts(case, model)]
