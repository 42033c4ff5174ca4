"""The reference models and layers rewritten with torch's stock layers, as counterparts to verify against.

Each counterpart is built from a reference module and holds a copy of its weights; its sizes come from
the reference's layer table, its arithmetic from torch's own layers:

* :class:`TanhSquash`, :class:`CdistRBF`, :func:`depthwise_subsampling`, :class:`LiteralSparseConv2d`:
  LeNet-5's squashing, RBF heads, subsampling and C3, each written another way.
* :class:`TorchLayersLeNet5`: a whole :class:`~reference.models.lenet.LeNet5` from those parts.
* :func:`alexnet2012_torch_layers`: the seed notebook's ``nn.Sequential`` AlexNet (grouped ``nn.Conv2d``
  and ``nn.LocalResponseNorm``), derived from the 2012 table, for an AlexNet2012 with one LRN group.
* :class:`PerGroup`: torch's LRN applied to each channel group (torch's has no groups).
* :class:`AveragedDenseVGG` and :class:`WindowedVGGHead`: VGG's two forms, each computed through the other
  (section 3.2 of Simonyan & Zisserman): the dense form's averaged score map for the FC form's scores, and the FC
  head on every 7x7 window of block5_pool for the dense form's score map.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch
from torch import Tensor, nn

from reference.models import tables as arch
from reference.models.alexnet2012 import AlexNet2012
from reference.models.layers import EuclideanRBF, GaussianRBF, SparseConv2d, Squash, Subsampling
from reference.models.lenet import LeNet5
from reference.models.vgg import HEAD_SIDE, VGG2014, VGG2014Dense
from reference.verify.build import uninitialised
from reference.verify.port import (
    rename_state,
    vgg_dense_from_fc,
    vgg_dense_state_from_fc,
    vgg_fc_from_dense,
    vgg_fc_state_from_dense,
)

__all__ = [
    "AveragedDenseVGG",
    "CdistRBF",
    "LiteralSparseConv2d",
    "PerGroup",
    "TanhSquash",
    "TorchLayersLeNet5",
    "WindowedVGGHead",
    "alexnet2012_torch_layers",
    "alexnet2012_torch_layers_names",
    "depthwise_subsampling",
    "literal_grads",
    "subsampling_grads",
]


def _copied(module: nn.Module, **tensors: Tensor) -> nn.Module:
    with torch.no_grad():
        for name, tensor in tensors.items():
            getattr(module, name).copy_(tensor)
    return module


class TanhSquash(nn.Module):
    """LeCun et al. 1998, appendix A, written from the paper: 1.7159 tanh(2a/3)."""

    def forward(self, x: Tensor) -> Tensor:
        return torch.tanh(x * (2 / 3)) * 1.7159


def depthwise_subsampling(subsampling: Subsampling) -> nn.Conv2d:
    """LeNet-5's S layer as a depthwise k x k / k convolution whose kernel is the coefficient, tied over the block."""
    channels, k = subsampling.weight.numel(), subsampling.kernel_size
    with torch.random.fork_rng(devices=[]):  # a stock init, overwritten at once
        conv = nn.Conv2d(channels, channels, kernel_size=k, stride=k, groups=channels)
    weight = subsampling.weight.detach()[:, None, None, None].expand(-1, 1, k, k)
    return _copied(conv, weight=weight, bias=subsampling.bias).to(subsampling.weight)


def subsampling_grads(_conv: nn.Module, grads: Mapping[str, Tensor], prefix: str = "") -> dict[str, Tensor]:
    """A depthwise counterpart's gradients in :class:`Subsampling`'s layout: the tied kernel summed."""
    out = dict(grads)
    out[f"{prefix}weight"] = grads[f"{prefix}weight"].sum(dim=(1, 2, 3))
    return out


class LiteralSparseConv2d(nn.Module):
    """The connection table written out: one small convolution per output map over its listed inputs."""

    def __init__(self, sparse: SparseConv2d) -> None:
        super().__init__()
        self.table = sparse.table
        with torch.random.fork_rng(devices=[]):  # a stock init, overwritten below
            self.maps = nn.ModuleList(
                nn.Conv2d(len(in_maps), 1, kernel_size=sparse.kernel_size) for in_maps in self.table
            )
        self.to(sparse.weight)
        kernels = iter(sparse.weight.detach())
        for out_map, (in_maps, conv) in enumerate(zip(self.table, self.maps, strict=True)):
            _copied(conv, weight=torch.stack([next(kernels) for _ in in_maps])[None], bias=sparse.bias[out_map, None])

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([conv(x[:, list(in_maps)]) for in_maps, conv in zip(self.table, self.maps, strict=True)], 1)


def literal_grads(literal: nn.Module, grads: Mapping[str, Tensor]) -> dict[str, Tensor]:
    maps = range(len(literal.maps))
    return {
        "weight": torch.cat([grads[f"maps.{i}.weight"][0] for i in maps]),
        "bias": torch.cat([grads[f"maps.{i}.bias"] for i in maps]),
    }


class CdistRBF(nn.Module):
    """LeNet-5's RBF heads through ``torch.cdist``: squared distances to fixed prototypes (Euclidean), or
    exp(-d^2 / (2 sigma^2)) with trainable centres and widths (the seed's Gaussian head)."""

    def __init__(self, head: EuclideanRBF | GaussianRBF) -> None:
        super().__init__()
        self.gaussian = isinstance(head, GaussianRBF)
        if self.gaussian:
            self.centres = nn.Parameter(head.centres.detach().clone())
            self.widths = nn.Parameter(head.widths.detach().clone())
        else:
            self.register_buffer("prototypes", head.prototypes.clone())

    def forward(self, x: Tensor) -> Tensor:
        centres = self.centres if self.gaussian else self.prototypes
        squared_distance = torch.cdist(x, centres, compute_mode="donot_use_mm_for_euclid_dist") ** 2
        return torch.exp(-squared_distance / (2 * self.widths**2)) if self.gaussian else squared_distance


class TorchLayersLeNet5(nn.Module):
    """A :class:`LeNet5` (any options) as torch layers, holding a copy of its weights: subsampling as a
    depthwise convolution, C3 as a dense convolution whose missing connections are zero, the head
    through ``torch.cdist``, the squashing written from the paper."""

    def __init__(self, model: LeNet5) -> None:
        super().__init__()
        table = model.architecture.layers
        sparse = isinstance(model.c3, SparseConv2d)
        # C3's kernel indices, not the module: a child module's parameters would be this model's too, unused.
        self.c3_index = (model.c3.out_index, model.c3.in_index) if sparse else None
        c3_weight = model.c3.dense_weight() if sparse else model.c3.weight
        c3 = table["c3"]
        with torch.random.fork_rng(devices=[]):  # stock layers draw an init that is overwritten at once
            self.c1 = _copied(table["c1"].build(), weight=model.c1.weight, bias=model.c1.bias)
            self.s2 = depthwise_subsampling(model.s2)
            dense_c3 = arch.Conv2d(c3.in_channels, c3.out_channels, c3.kernel_size).build()
            self.c3 = _copied(dense_c3, weight=c3_weight.detach(), bias=model.c3.bias)
            self.s4 = depthwise_subsampling(model.s4)
            self.c5 = _copied(table["c5"].build(), weight=model.c5.weight, bias=model.c5.bias)
            self.f6 = _copied(table["f6"].build(), weight=model.f6.weight, bias=model.f6.bias)
        self.to(model.c1.weight)
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

    def grads_to_reference(self, grads: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """Gradients in :class:`LeNet5`'s parameter layout: tied and masked entries gathered back."""
        out = dict(grads)
        for s in ("s2", "s4"):
            out = subsampling_grads(getattr(self, s), out, prefix=f"{s}.")
        if self.c3_index is not None:
            out["c3.weight"] = grads["c3.weight"][self.c3_index]
        return out


def _seed_sequential(table: arch.Architecture, dropout: float) -> tuple[nn.Sequential, dict[str, str]]:
    """The seed notebook's layout from a 2012 table: ``features`` (each convolution followed by a ReLU, LRN in
    torch's convention), ``flatten``, ``classifier`` (dropout before every FC layer but the last, ReLU after);
    with the table layer -> module path map."""
    features, classifier, names = nn.Sequential(), nn.Sequential(), {}
    linears = [name for name, layer in table if isinstance(layer, arch.Linear)]
    for name, layer in table:
        if isinstance(layer, arch.Linear):
            last = name == linears[-1]
            if not last:
                classifier.append(nn.Dropout(p=dropout))
            names[name] = f"classifier.{len(classifier)}"
            classifier.append(layer.build())
            if not last:
                classifier.append(nn.ReLU(inplace=True))
        elif isinstance(layer, arch.LocalResponseNorm):
            names[name] = f"features.{len(features)}"
            # torch divides alpha by the window size (Caffe's convention); the table holds the paper's alpha.
            features.append(
                nn.LocalResponseNorm(layer.size, alpha=layer.size * layer.alpha, beta=layer.beta, k=layer.k)
            )
        elif not isinstance(layer, arch.Flatten):
            names[name] = f"features.{len(features)}"
            features.append(layer.build())
            if isinstance(layer, arch.Conv2d):
                features.append(nn.ReLU(inplace=True))
    sequential = nn.Sequential()
    sequential.add_module("features", features)
    sequential.add_module("flatten", nn.Flatten())
    sequential.add_module("classifier", classifier)
    return sequential, names


def alexnet2012_torch_layers_names(table: arch.Architecture) -> dict[str, str]:
    """Table layer -> module path in :func:`alexnet2012_torch_layers`' ``nn.Sequential``."""
    with torch.device("meta"):
        return _seed_sequential(table, dropout=0.5)[1]


def alexnet2012_torch_layers(model: AlexNet2012, *, share: bool = False) -> nn.Sequential:
    """The seed notebook's ``nn.Sequential`` AlexNet with ``model``'s weights (needs ``lrn_groups=1``): copied,
    or with ``share`` the same tensors (no copy)."""
    if not isinstance(model, AlexNet2012) or model.lrn1.groups != 1:
        raise ValueError("torch's nn.LocalResponseNorm has no channel groups: pass an AlexNet2012 with lrn_groups=1")
    weight = model.conv1.weight
    # No random init for weights about to be loaded (and the RNG is left alone).
    sequential = uninitialised(lambda: _seed_sequential(model.architecture, model.dropout.p)[0], dtype=weight.dtype,
                               device="meta" if share else weight.device)  # fmt: skip
    state = rename_state(model.state_dict(), alexnet2012_torch_layers_names(model.architecture))
    sequential.load_state_dict(state, assign=share)
    return sequential.train(model.training)


class PerGroup(nn.Module):
    """Applies ``make()`` to each of ``groups`` equal channel groups separately (torch's LRN has no groups)."""

    def __init__(self, make: Callable[[], nn.Module], groups: int) -> None:
        super().__init__()
        self.parts = nn.ModuleList(make() for _ in range(groups))

    def forward(self, x: Tensor) -> Tensor:
        width = x.shape[1] // len(self.parts)  # narrow, not chunk: an FX proxy's chunks cannot be iterated
        return torch.cat([part(x.narrow(1, i * width, width)) for i, part in enumerate(self.parts)], dim=1)


def _unprefixed(grads: Mapping[str, Tensor], prefix: str) -> dict[str, Tensor]:
    return {key.removeprefix(prefix): tensor for key, tensor in grads.items()}


class AveragedDenseVGG(nn.Module):
    """A :class:`VGG2014`'s scores computed by its dense form: the class score map, spatially averaged."""

    def __init__(self, model: VGG2014, *, share: bool = False) -> None:
        super().__init__()
        self.dense = vgg_dense_from_fc(model, share=share)

    def forward(self, x: Tensor) -> Tensor:
        return self.dense.image_scores(x)

    def grads_to_reference(self, grads: Mapping[str, Tensor]) -> dict[str, Tensor]:
        dense = self.dense
        return vgg_fc_state_from_dense(_unprefixed(grads, "dense."), dense.config, dense.num_classes)


class WindowedVGGHead(nn.Module):
    """A :class:`VGG2014Dense`'s score map computed as what it stands for: the FC form's head applied to each 7x7
    window of block5_pool's maps in turn, the windows one stride apart, each flattened as the FC form flattens."""

    def __init__(self, model: VGG2014Dense, *, share: bool = False) -> None:
        super().__init__()
        self.fc = vgg_fc_from_dense(model, share=share)

    def forward(self, x: Tensor) -> Tensor:
        maps = self.fc.features(x)  # (N, 512, H', W')
        windows = maps.unfold(2, HEAD_SIDE, 1).unfold(3, HEAD_SIDE, 1)  # (N, 512, h, w, 7, 7)
        n, c, h, w = windows.shape[:4]
        rows = windows.permute(0, 2, 3, 1, 4, 5).reshape(n * h * w, c * HEAD_SIDE**2)  # (N h w, 25088)
        scores = self.fc.head(rows)  # (N h w, classes)
        return scores.reshape(n, h, w, -1).permute(0, 3, 1, 2)  # (N, classes, h, w)

    def grads_to_reference(self, grads: Mapping[str, Tensor]) -> dict[str, Tensor]:
        fc = self.fc
        return vgg_dense_state_from_fc(_unprefixed(grads, "fc."), fc.config, fc.num_classes)
