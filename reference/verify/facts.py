"""Facts: each number a paper or library states about a model, next to the same number derived from its layer table
or counted on the built module. ``python -m reference summary`` prints them; the suite asserts that each published
figure equals its measured one, and that each erratum really disagrees.

A :class:`~reference.verify.records.Paper` quotes figures by measure: :data:`TOTALS` and :data:`BREAKDOWNS` say how
each measure is taken (a name not among them is an error, not a fact skipped).
"""

from __future__ import annotations

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


def _counted(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def _weight_layers(table: arch.Architecture) -> int:
    return sum(isinstance(spec, (arch.Conv2dSpec, arch.LinearSpec)) for _, spec in table)


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
    "connections": lambda table, _: [("table", sum(table.connections().values()))],
    # Multiplications per image at the default side, weights only (no bias): torchvision's _ops counts them so.
    "multiply-accumulates": lambda table, _: [(f"{table.default_side}x{table.default_side}", sum(table.macs().values()))],
}  # fmt: skip
# Breakdowns: measure -> table -> {layer or kind: measured}.
BREAKDOWNS: dict[str, Callable[[arch.Architecture], dict[str, int]]] = {
    "parameters": lambda table: table.trainable_params(),
    "connections": lambda table: table.connections(),
    "neurons": lambda table: table.neurons(),
    "layers": layer_counts,  # by kind, in Table 1's notation; any kind not quoted must number 0
}


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
        out += [Fact(measure, layer, n, measured.get(layer, 0)) for layer, n in quoted.items()]
        if measure == "layers":
            out.append(Fact(measure, "any other kind", 0, sum(n for k, n in measured.items() if k not in quoted)))
    for measure, printed in paper.errata.items():
        if measure in TOTALS:  # a total as printed: "total" -> (figure, note), against the table's count
            (_, value), figure = TOTALS[measure](table, model)[-1], printed["total"][0]
            measured = {"total": _as_printed(value, figure)}
        else:
            measured = BREAKDOWNS[measure](table)
        out += [Fact(f"{measure} (as printed)", layer, n, measured.get(layer), erratum=True)
                for layer, (n, _) in printed.items()]  # fmt: skip
    out += [Fact(f"table: {name}", "", quoted.parse(quoted.printed), quoted.derive(model))
            for name, quoted in paper.tables.items()]  # fmt: skip
    meta = library_meta(case)
    if meta is not None:
        out += [
            Fact("library meta num_params", "total", meta["num_params"], _counted(model)),
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
