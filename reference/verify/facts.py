"""Facts: each number a paper or library states about a model, next to the same number derived from its
layer table or counted on the built module. ``python -m reference summary`` prints them; the suite asserts
that each published figure equals its measured one, and that each erratum really disagrees."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

from torch import nn

from reference.models import tables as arch
from reference.verify.cases import Case

__all__ = ["Fact", "fact_rows", "facts", "params_per_layer"]

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
    if isinstance(spec, arch.Conv2d):
        return f"conv{spec.kernel_size}"
    kinds = {arch.LocalResponseNorm: "LRN", arch.MaxPool2d: "maxpool", arch.Linear: "FC", arch.Flatten: None}
    return kinds.get(type(spec), type(spec).__name__)


def facts(case: Case, model: nn.Module) -> list[Fact]:
    """Every published fact of a model case, with what its table and the built ``model`` say."""
    quoted, table = case.facts, case.architecture
    counted = sum(p.numel() for p in model.parameters() if p.requires_grad)
    derived_params = table.trainable_params()
    out = []
    if quoted.trainable_params is not None:
        out += [
            Fact("trainable parameters (built)", "total", quoted.trainable_params, counted),
            Fact("trainable parameters (table)", "total", quoted.trainable_params, sum(derived_params.values())),
        ]
    if quoted.params_millions is not None:
        out += [
            Fact("trainable parameters, millions (built)", "total", quoted.params_millions, round(counted / 1e6)),
            Fact("trainable parameters, millions (table)", "total", quoted.params_millions,
                 round(sum(derived_params.values()) / 1e6)),
        ]  # fmt: skip
    if quoted.layer_counts:
        counted_kinds = Counter(kind for _, spec in table if (kind := _notation(spec)) is not None)
        out += [
            Fact("layers, Table 1's notation", kind, n, counted_kinds[kind]) for kind, n in quoted.layer_counts.items()
        ]
        unlisted = sum(n for kind, n in counted_kinds.items() if kind not in quoted.layer_counts)
        out.append(Fact("layers, Table 1's notation", "any other kind", 0, unlisted))
    if quoted.weight_layers is not None:
        weighted = [name for name, spec in table if isinstance(spec, (arch.Conv2d, arch.Linear))]
        out.append(Fact("weight layers", "total", quoted.weight_layers, len(weighted)))
    out += [
        Fact("trainable parameters", layer, n, derived_params.get(layer))
        for layer, n in quoted.params_per_layer.items()
    ]
    connections = table.connections()
    out += [Fact("connections", layer, n, connections.get(layer)) for layer, n in quoted.connections_per_layer.items()]
    if quoted.total_connections is not None:
        out.append(Fact("connections", "total", quoted.total_connections, sum(connections.values())))
    neurons = table.neurons()
    out += [Fact("neurons", layer, n, neurons.get(layer)) for layer, n in quoted.neurons_per_layer.items()]
    out += [
        Fact("neurons (as printed)", layer, printed, neurons.get(layer), erratum=True)
        for layer, (printed, _) in quoted.errata.items()
    ]
    if quoted.macs is not None:
        out.append(Fact(f"MACs at {quoted.macs_side}x{quoted.macs_side}", "total", quoted.macs,
                        sum(table.macs(quoted.macs_side).values())))  # fmt: skip
    out += [Fact(f"table: {name}", "", quoted_table.parse(quoted_table.printed), quoted_table.derive(model))
            for name, quoted_table in quoted.tables.items()]  # fmt: skip
    if quoted.library_meta is not None:
        meta = quoted.library_meta()
        side = case.default_side
        out += [
            Fact("library meta num_params", "total", meta["num_params"], counted),
            # torchvision's _ops: GMAC (multiplications only, batch 1) rounded to 3 decimals.
            Fact("library meta _ops (GMAC)", "total", meta["_ops"], round(sum(table.macs(side).values()) / 1e9, 3)),
            Fact("library meta min_size", "H, W", tuple(meta["min_size"]), (case.valid_sides.low,) * 2),
        ]
    return out


def fact_rows(case: Case, model: nn.Module) -> list[tuple[str, str, str, str]]:
    def shown(value: Any) -> str:
        return f"{value:,}" if isinstance(value, int) else str(value)

    return [(f.kind, f.layer, shown(f.published), shown(f.measured)) for f in facts(case, model)]
