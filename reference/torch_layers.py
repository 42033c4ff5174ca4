"""The reference models rewritten with torch's stock layers only, as counterparts to verify against.

* :class:`TorchLayersLeNet5`: LeNet-5's subsampling as a depthwise 2x2/2 ``nn.Conv2d`` with the
  coefficient tied across the block, C3 as a dense ``nn.Conv2d`` whose missing connections are zero,
  the RBF heads through ``torch.cdist``.
* :func:`alexnet2012_torch_layers`: the seed notebook's ``nn.Sequential`` AlexNet (grouped
  ``nn.Conv2d`` and ``nn.LocalResponseNorm``), for :class:`AlexNet2012` built with one LRN group.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor, nn

from reference.alexnet2012 import AlexNet2012
from reference.layers import GaussianRBF, SparseConv2d, Squash
from reference.lenet import LeNet5
from reference.port import rename_state
from reference.testing import uninitialised

__all__ = [
    "ALEXNET2012_TORCH_LAYER_NAMES",
    "TorchLayersLeNet5",
    "alexnet2012_torch_layers",
    "alexnet2012_torch_layers_grads",
]


def _copy(module: nn.Module, **tensors: Tensor) -> nn.Module:
    with torch.no_grad():
        for name, tensor in tensors.items():
            getattr(module, name).copy_(tensor)
    return module


def _depthwise(subsampling: nn.Module) -> nn.Conv2d:
    channels, k = subsampling.weight.numel(), subsampling.kernel_size
    conv = nn.Conv2d(in_channels=channels, out_channels=channels, kernel_size=k, stride=k, groups=channels)
    return _copy(
        conv, weight=subsampling.weight.detach()[:, None, None, None].expand(-1, 1, k, k), bias=subsampling.bias
    )


class TorchLayersLeNet5(nn.Module):
    """A :class:`LeNet5` (any options) as torch layers, holding a copy of its weights."""

    def __init__(self, model: LeNet5) -> None:
        super().__init__()
        self.sparse_c3 = model.c3 if isinstance(model.c3, SparseConv2d) else None
        dense_c3 = model.c3.dense_weight() if self.sparse_c3 is not None else model.c3.weight
        with torch.random.fork_rng(devices=[]):  # stock layers draw an init that is overwritten at once
            self.c1 = _copy(nn.Conv2d(1, 6, kernel_size=5), weight=model.c1.weight, bias=model.c1.bias)
            self.s2 = _depthwise(model.s2)
            self.c3 = _copy(nn.Conv2d(6, 16, kernel_size=5), weight=dense_c3.detach(), bias=model.c3.bias)
            self.s4 = _depthwise(model.s4)
            self.c5 = _copy(nn.Conv2d(16, 120, kernel_size=5), weight=model.c5.weight, bias=model.c5.bias)
            self.f6 = _copy(nn.Linear(120, 84), weight=model.f6.weight, bias=model.f6.bias)
        self.to(model.c1.weight)
        self.squash = model.squash if isinstance(model.squash, Squash) else torch.tanh
        self.gaussian = isinstance(model.output, GaussianRBF)
        if self.gaussian:
            self.centres = nn.Parameter(model.output.centres.detach().clone())
            self.widths = nn.Parameter(model.output.widths.detach().clone())
        else:
            self.register_buffer("prototypes", model.output.prototypes.clone())

    def forward(self, x: Tensor) -> Tensor:
        x = self.squash(self.c1(x))
        x = self.squash(self.s2(x))
        x = self.squash(self.c3(x))
        x = self.squash(self.s4(x))
        x = self.squash(self.c5(x))
        x = self.squash(self.f6(x.flatten(1)))
        centres = self.centres if self.gaussian else self.prototypes
        squared_distance = torch.cdist(x, centres, compute_mode="donot_use_mm_for_euclid_dist") ** 2
        return torch.exp(-squared_distance / (2 * self.widths**2)) if self.gaussian else squared_distance

    def grads_to_reference(self, grads: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """Gradients in :class:`LeNet5`'s parameter layout: tied and masked entries gathered back."""
        out = dict(grads)
        for s in ("s2", "s4"):
            out[f"{s}.weight"] = grads[f"{s}.weight"].sum(dim=(1, 2, 3))  # one coefficient tied over the block
        if self.sparse_c3 is not None:
            out["c3.weight"] = grads["c3.weight"][self.sparse_c3.out_index, self.sparse_c3.in_index]
        if self.gaussian:
            out["output.centres"], out["output.widths"] = out.pop("centres"), out.pop("widths")
        return out


ALEXNET2012_TORCH_LAYER_NAMES = {
    "conv1": "features.0",
    "lrn1": "features.2",
    "pool1": "features.3",
    "conv2": "features.4",
    "lrn2": "features.6",
    "pool2": "features.7",
    "conv3": "features.8",
    "conv4": "features.10",
    "conv5": "features.12",
    "pool5": "features.14",
    "fc6": "classifier.1",
    "fc7": "classifier.4",
    "fc8": "classifier.6",
}


def alexnet2012_torch_layers(model: AlexNet2012) -> nn.Sequential:
    """The seed notebook's ``nn.Sequential`` AlexNet with ``model``'s weights (needs ``lrn_groups=1``)."""
    if not isinstance(model, AlexNet2012) or model.lrn1.groups != 1:
        raise ValueError("torch's nn.LocalResponseNorm has no channel groups: pass an AlexNet2012 with lrn_groups=1")
    lrn = model.lrn1

    def build() -> nn.Sequential:
        torch_lrn = dict(size=lrn.size, alpha=lrn.size * lrn.alpha, beta=lrn.beta, k=lrn.k)
        features = nn.Sequential(
            nn.Conv2d(in_channels=3, out_channels=96, kernel_size=11, stride=4),
            nn.ReLU(inplace=True),
            nn.LocalResponseNorm(**torch_lrn),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(in_channels=96, out_channels=256, kernel_size=5, padding=2, groups=2),
            nn.ReLU(inplace=True),
            nn.LocalResponseNorm(**torch_lrn),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(in_channels=256, out_channels=384, kernel_size=3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(in_channels=384, out_channels=384, kernel_size=3, padding=1, groups=2),
            nn.ReLU(inplace=True),
            nn.Conv2d(in_channels=384, out_channels=256, kernel_size=3, padding=1, groups=2),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),
        )
        classifier = nn.Sequential(
            nn.Dropout(p=model.dropout.p),
            nn.Linear(in_features=256 * 6 * 6, out_features=4096),
            nn.ReLU(inplace=True),
            nn.Dropout(p=model.dropout.p),
            nn.Linear(in_features=4096, out_features=4096),
            nn.ReLU(inplace=True),
            nn.Linear(in_features=4096, out_features=model.num_classes),
        )
        sequential = nn.Sequential()
        sequential.add_module("features", features)
        sequential.add_module("flatten", nn.Flatten())
        sequential.add_module("classifier", classifier)
        return sequential

    # No random init for weights about to be loaded (and the RNG is left alone).
    weight = model.conv1.weight
    sequential = uninitialised(build, dtype=weight.dtype, device=weight.device)
    sequential.load_state_dict(rename_state(model.state_dict(), ALEXNET2012_TORCH_LAYER_NAMES))
    return sequential.train(model.training)


def alexnet2012_torch_layers_grads(grads: Mapping[str, Tensor]) -> dict[str, Tensor]:
    return rename_state(grads, {v: k for k, v in ALEXNET2012_TORCH_LAYER_NAMES.items()})
