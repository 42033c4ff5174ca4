"""The reference models and layers written another way, as counterparts to verify against, each with the state map
that fills it from the reference (:mod:`reference.verify.states`).

A counterpart is built for a reference module's configuration (its sizes from the reference's layer table), its
arithmetic from torch's own layers; the values come through its map:

* :class:`TanhSquash`, :class:`CdistRBF`, :func:`depthwise_subsampling` (:class:`Tied`),
  :class:`LiteralSparseConv2d` (:class:`Literal`): LeNet-5's squashing, RBF heads, subsampling and C3.
* :class:`TorchLayersLeNet5` (:class:`TorchLayers`): a whole :class:`~reference.models.lenet.LeNet5` from those parts.
* :func:`seed_sequential`: the seed notebook's ``nn.Sequential`` AlexNet (grouped ``nn.Conv2d`` and
  ``nn.LocalResponseNorm``), derived from the 2012 table, for an AlexNet2012 with one LRN group.
* :class:`PerGroup`: torch's LRN applied to each channel group (torch's has no groups).
* :class:`AveragedDenseVGG` and :class:`WindowedVGGHead`: VGG's two forms, each computed through the other
  (section 3.2 of Simonyan & Zisserman): the dense form's averaged score map for the FC form's scores, and the FC
  head on every 7x7 window of block5_pool for the dense form's score map.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from reference.models import tables as arch
from reference.models.alexnet2012 import AlexNet2012
from reference.models.layers import (
    EuclideanRBF,
    GaussianRBF,
    LocalResponseNorm,
    SparseConv2d,
    Squash,
    Subsampling,
    ZeroPadShortcut,
)
from reference.models.lenet import LeNet5
from reference.models.vgg import HEAD_SIDE, VGG2014, VGG2014Dense
from reference.verify.port import vgg_dense_like, vgg_fc_like
from reference.verify.states import State, StateMap

__all__ = [
    "AveragedDenseVGG",
    "CdistRBF",
    "ConcatZeroed",
    "Literal",
    "LiteralSparseConv2d",
    "PerGroup",
    "TanhSquash",
    "Tied",
    "TorchLayers",
    "TorchLayersLeNet5",
    "WindowedVGGHead",
    "depthwise_subsampling",
    "seed_sequential",
    "seed_sequential_names",
    "torch_lrn",
]


class TanhSquash(nn.Module):
    """LeCun et al. 1998, appendix A, written from the paper: 1.7159 tanh(2a/3)."""

    def forward(self, x: Tensor) -> Tensor:
        return torch.tanh(x * (2 / 3)) * 1.7159


def depthwise_subsampling(subsampling: Subsampling) -> nn.Conv2d:
    """LeNet-5's S layer as a depthwise k x k / k convolution whose kernel is the coefficient, tied over the block."""
    channels, k = subsampling.weight.numel(), subsampling.kernel_size
    return nn.Conv2d(channels, channels, kernel_size=k, stride=k, groups=channels)


class Tied(StateMap):
    """A subsampling coefficient, one per map, as the depthwise kernel that repeats it over its k x k block; its
    gradient is the block's summed (the adjoint of the repetition). ``prefix``: the layer's place in a model."""

    views = False

    def __init__(self, prefix: str = "") -> None:
        self.key = f"{prefix}weight"

    def to_other(self, state: State, reference: nn.Module, other: nn.Module) -> dict[str, Tensor]:
        kernel = other.get_parameter(self.key).shape
        return dict(state) | {self.key: state[self.key][:, None, None, None].expand(kernel).clone()}

    def to_reference(self, state: State, reference: nn.Module, other: nn.Module) -> dict[str, Tensor]:
        tied = {self.key: state[self.key].sum(dim=(1, 2, 3))} if self.key in state else {}
        return dict(state) | tied


class LiteralSparseConv2d(nn.Module):
    """The connection table written out: one small convolution per output map over its listed inputs."""

    def __init__(self, sparse: SparseConv2d) -> None:
        super().__init__()
        self.table = sparse.table
        self.maps = nn.ModuleList(nn.Conv2d(len(in_maps), 1, kernel_size=sparse.kernel_size) for in_maps in self.table)

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([conv(x[:, list(in_maps)]) for in_maps, conv in zip(self.table, self.maps, strict=True)], 1)


class Literal(StateMap):
    """A sparse layer's kernels (one per connection, output maps in order) as each output map's own convolution."""

    views = False

    def to_other(self, state: State, reference: nn.Module, other: nn.Module) -> dict[str, Tensor]:
        kernels = iter(state["weight"])
        out = {}
        for out_map, in_maps in enumerate(reference.table):
            out[f"maps.{out_map}.weight"] = torch.stack([next(kernels) for _ in in_maps])[None]
            out[f"maps.{out_map}.bias"] = state["bias"][out_map, None]
        return out

    def to_reference(self, state: State, reference: nn.Module, other: nn.Module) -> dict[str, Tensor]:
        maps = range(len(reference.table))
        return {
            "weight": torch.cat([state[f"maps.{i}.weight"][0] for i in maps]),
            "bias": torch.cat([state[f"maps.{i}.bias"] for i in maps]),
        }


class CdistRBF(nn.Module):
    """LeNet-5's RBF heads through ``torch.cdist``: squared distances to fixed prototypes (Euclidean), or
    exp(-d^2 / (2 sigma^2)) with trainable centres and widths (the seed's Gaussian head)."""

    def __init__(self, head: EuclideanRBF | GaussianRBF) -> None:
        super().__init__()
        self.gaussian = isinstance(head, GaussianRBF)
        if self.gaussian:
            self.centres = nn.Parameter(torch.empty(head.centres.shape))
            self.widths = nn.Parameter(torch.empty(head.widths.shape))
        else:
            self.register_buffer("prototypes", torch.empty(head.prototypes.shape))

    def forward(self, x: Tensor) -> Tensor:
        centres = self.centres if self.gaussian else self.prototypes
        squared_distance = torch.cdist(x, centres, compute_mode="donot_use_mm_for_euclid_dist") ** 2
        return torch.exp(-squared_distance / (2 * self.widths**2)) if self.gaussian else squared_distance


class TorchLayersLeNet5(nn.Module):
    """A :class:`LeNet5` (any options) as torch layers: subsampling as a depthwise convolution, C3 as a dense
    convolution whose missing connections are zero, the head through ``torch.cdist``, the squashing written from the
    paper."""

    def __init__(self, model: LeNet5) -> None:
        super().__init__()
        table = model.architecture.layers
        c3 = table["c3"]
        self.c1 = table["c1"].build()
        self.s2 = depthwise_subsampling(model.s2)
        self.c3 = arch.Conv2dSpec(c3.in_channels, c3.out_channels, c3.kernel_size).build()
        self.s4 = depthwise_subsampling(model.s4)
        self.c5 = table["c5"].build()
        self.f6 = table["f6"].build()
        self.squash = TanhSquash() if isinstance(model.squash, Squash) else nn.Tanh()
        self.output = CdistRBF(model.output)

    def forward(self, x: Tensor) -> Tensor:
        x = self.squash(self.c1(x))
        x = self.squash(self.s2(x))
        x = self.squash(self.c3(x))
        x = self.squash(self.s4(x))
        x = self.squash(self.c5(x))
        x = self.squash(self.f6(x.flatten(1)))
        return self.output(x)


class TorchLayers(StateMap):
    """LeNet-5's state in :class:`TorchLayersLeNet5`: the subsampling coefficients tied over their blocks, a sparse
    C3's kernels scattered into the dense weight (zeros elsewhere); gradients summed and gathered back."""

    views = False

    def __init__(self) -> None:
        self.tied = (Tied("s2."), Tied("s4."))

    def to_other(self, state: State, reference: nn.Module, other: nn.Module) -> dict[str, Tensor]:
        out = dict(state)
        for tied in self.tied:
            out = tied.to_other(out, reference, other)
        if isinstance(reference.c3, SparseConv2d):
            dense = state["c3.weight"].new_zeros(other.c3.weight.shape)
            dense[reference.c3.out_index, reference.c3.in_index] = state["c3.weight"]
            out["c3.weight"] = dense
        return out

    def to_reference(self, state: State, reference: nn.Module, other: nn.Module) -> dict[str, Tensor]:
        out = dict(state)
        for tied in self.tied:
            out = tied.to_reference(out, reference, other)
        if isinstance(reference.c3, SparseConv2d) and "c3.weight" in state:
            out["c3.weight"] = state["c3.weight"][reference.c3.out_index, reference.c3.in_index]
        return out


# The seed notebook's LRN, literally: torch divides alpha by the size (the paper's alpha is 2e-5 here).
SEED_NOTEBOOK_LRN = {"size": 5, "alpha": 1e-4, "beta": 0.75, "k": 2.0}


def _seed_layers(table: arch.Architecture, dropout: float) -> tuple[nn.Sequential, dict[str, str]]:
    """The seed notebook's layout from a 2012 table: ``features`` (each convolution followed by a ReLU, the
    notebook's own LRN), ``flatten``, ``classifier`` (dropout before every FC layer but the last, ReLU after);
    with the table layer -> module path map."""
    features, classifier, names = nn.Sequential(), nn.Sequential(), {}
    linears = [name for name, layer in table if isinstance(layer, arch.LinearSpec)]
    for name, layer in table:
        if isinstance(layer, arch.LinearSpec):
            last = name == linears[-1]
            if not last:
                classifier.append(nn.Dropout(p=dropout))
            names[name] = f"classifier.{len(classifier)}"
            classifier.append(layer.build())
            if not last:
                classifier.append(nn.ReLU(inplace=True))
        elif isinstance(layer, arch.LocalResponseNormSpec):
            names[name] = f"features.{len(features)}"
            # As the notebook writes it, not read off the table: a constant the table got wrong shows.
            features.append(nn.LocalResponseNorm(**SEED_NOTEBOOK_LRN))
        elif not isinstance(layer, arch.FlattenSpec):
            names[name] = f"features.{len(features)}"
            features.append(layer.build())
            if isinstance(layer, arch.Conv2dSpec):
                features.append(nn.ReLU(inplace=True))
    sequential = nn.Sequential()
    sequential.add_module("features", features)
    sequential.add_module("flatten", nn.Flatten())
    sequential.add_module("classifier", classifier)
    return sequential, names


def seed_sequential_names(table: arch.Architecture) -> dict[str, str]:
    """Table layer -> module path in :func:`seed_sequential`'s ``nn.Sequential``."""
    with torch.device("meta"):
        return _seed_layers(table, dropout=0.5)[1]


def seed_sequential(model: AlexNet2012) -> nn.Sequential:
    """The seed notebook's ``nn.Sequential`` AlexNet for ``model``'s configuration (it needs ``lrn_groups=1``)."""
    if not isinstance(model, AlexNet2012) or model.lrn1.groups != 1:
        raise ValueError("torch's nn.LocalResponseNorm has no channel groups: pass an AlexNet2012 with lrn_groups=1")
    return _seed_layers(model.architecture, model.dropout.p)[0]


class PerGroup(nn.Module):
    """Applies ``make()`` to each of ``groups`` equal channel groups separately (torch's LRN has no groups)."""

    def __init__(self, make: Callable[[], nn.Module], groups: int) -> None:
        super().__init__()
        self.parts = nn.ModuleList(make() for _ in range(groups))

    def forward(self, x: Tensor) -> Tensor:
        width = x.shape[1] // len(self.parts)  # narrow, not chunk: an FX proxy's chunks cannot be iterated
        return torch.cat([part(x.narrow(1, i * width, width)) for i, part in enumerate(self.parts)], dim=1)


def torch_lrn(lrn: LocalResponseNorm) -> nn.Module:
    """torch's LRN per channel group, alpha times the size (torch divides it by the size)."""
    return PerGroup(
        lambda: nn.LocalResponseNorm(lrn.size, alpha=lrn.size * lrn.alpha, beta=lrn.beta, k=lrn.k), lrn.groups
    )


class AveragedDenseVGG(nn.Module):
    """A :class:`VGG2014`'s scores computed by its dense form: the class score map, spatially averaged."""

    def __init__(self, model: VGG2014) -> None:
        super().__init__()
        self.dense = vgg_dense_like(model)

    def forward(self, x: Tensor) -> Tensor:
        return self.dense.image_scores(x)


class WindowedVGGHead(nn.Module):
    """A :class:`VGG2014Dense`'s score map computed as what it stands for: the FC form's head applied to each 7x7
    window of block5_pool's maps in turn, the windows one stride apart, each flattened as the FC form flattens."""

    def __init__(self, model: VGG2014Dense) -> None:
        super().__init__()
        self.fc = vgg_fc_like(model)

    def forward(self, x: Tensor) -> Tensor:
        maps = self.fc.features(x)  # (N, 512, H', W')
        windows = maps.unfold(2, HEAD_SIDE, 1).unfold(3, HEAD_SIDE, 1)  # (N, 512, h, w, 7, 7)
        n, c, h, w = windows.shape[:4]
        rows = windows.permute(0, 2, 3, 1, 4, 5).reshape(n * h * w, c * HEAD_SIDE**2)  # (N h w, 25088)
        scores = self.fc.head(rows)  # (N h w, classes)
        return scores.reshape(n, h, w, -1).permute(0, 3, 1, 2)  # (N, classes, h, w)


class ConcatZeroed(nn.Module):
    """fb.resnet.torch's shortcut type A (models/resnet.lua): ``nn.SpatialAveragePooling(1, 1, stride, stride)``,
    then ``nn.Concat`` of ``nn.Identity`` and ``nn.MulConstant(0)``: the input subsampled, beside its copy times 0
    (an output twice the input's width, the zeros after)."""

    def __init__(self, shortcut: ZeroPadShortcut) -> None:
        super().__init__()
        if shortcut.layout != "append" or shortcut.out_channels != 2 * shortcut.in_channels:
            raise ValueError("fb.resnet.torch's shortcut doubles the width and appends the zeros")
        self.stride = shortcut.stride

    def forward(self, x: Tensor) -> Tensor:
        x = F.avg_pool2d(x, 1, self.stride)
        return torch.cat([x, x.mul(0)], 1)
