"""AlexNet as published: A. Krizhevsky, I. Sutskever, G. E. Hinton, "ImageNet Classification with Deep
Convolutional Neural Networks", NIPS 2012, sections 3 and 5.

:class:`AlexNet2012` writes the two-GPU network with grouped convolutions (conv2, conv4, conv5 see
only their own GPU's maps) and local response normalisation whose windows stop at the GPU boundary.
:class:`AlexNet2012TwoTower` writes the same network literally, as two towers that exchange maps only
at conv3, fc6, fc7 and fc8. Once weights are split (:mod:`reference.verify.port`) they are the same function.

Where it departs: the input is 227x227 (the paper says 224, which its stride-4 11x11 conv1 cannot
turn into the 55x55 maps it reports); the paper's first-layer neuron count, 253,440, matches neither
(55 * 55 * 96 = 290,400); the training recipe (augmentation, PCA lighting, momentum schedule) is not
part of the model.

Options reproduce the seed notebook's model: ``AlexNet2012(lrn_groups=1, lrn_alpha=SEED_LRN_ALPHA)``
normalises across all channels with ``nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=2)``'s
arithmetic, which is the paper's formula with alpha = 1e-4 / 5 (torch divides alpha by the size).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
from torch import Tensor, nn

from reference.models import tables as arch
from reference.models._api import register_model
from reference.models.base import ReferenceModel, default_device
from reference.models.weights import Weights, load_weights

__all__ = [
    "PAPER_LRN_ALPHA",
    "SEED_LRN_ALPHA",
    "TOWERS",
    "AlexNet2012",
    "AlexNet2012TwoTower",
    "alexnet2012",
    "alexnet2012_architecture",
    "alexnet2012_seed",
    "alexnet2012_two_tower",
    "tower_architecture",
]

PAPER_LRN_ALPHA = arch.KRIZHEVSKY_LRN.alpha
SEED_LRN_ALPHA = 1e-4 / 5  # nn.LocalResponseNorm(size=5, alpha=1e-4) in the paper's convention
TOWERS = 2  # the two GPUs
# Section 5: "initialized the neuron biases in the second, fourth, and fifth convolutional layers, as well as in the
# fully-connected hidden layers, with the constant 1".
BIAS_ONE = ("conv2", "conv4", "conv5", "fc6", "fc7")


@arch.cached
def alexnet2012_architecture(
    num_classes: int = 1000, lrn_groups: int = 2, lrn_alpha: float = PAPER_LRN_ALPHA
) -> arch.Architecture:
    lrn = dataclasses.replace(arch.KRIZHEVSKY_LRN, alpha=lrn_alpha, groups=lrn_groups)
    layers = {
        "conv1": arch.Conv2dSpec(in_channels=3, out_channels=96, kernel_size=11, stride=4),
        "lrn1": lrn,
        "pool1": arch.MaxPool2dSpec(kernel_size=3, stride=2),
        "conv2": arch.Conv2dSpec(in_channels=96, out_channels=256, kernel_size=5, padding=2, groups=2),
        "lrn2": lrn,
        "pool2": arch.MaxPool2dSpec(kernel_size=3, stride=2),
        "conv3": arch.Conv2dSpec(in_channels=256, out_channels=384, kernel_size=3, padding=1),
        "conv4": arch.Conv2dSpec(in_channels=384, out_channels=384, kernel_size=3, padding=1, groups=2),
        "conv5": arch.Conv2dSpec(in_channels=384, out_channels=256, kernel_size=3, padding=1, groups=2),
        "pool5": arch.MaxPool2dSpec(kernel_size=3, stride=2),
        "flatten": arch.FlattenSpec(expected=(256, 6, 6)),
        "fc6": arch.LinearSpec(in_features=256 * 6 * 6, out_features=4096),
        "fc7": arch.LinearSpec(in_features=4096, out_features=4096),
        "fc8": arch.LinearSpec(in_features=4096, out_features=num_classes),
    }
    return arch.Architecture(layers=layers, in_channels=3, default_side=227)


def _share(units: int, tower: int) -> int:
    """Tower ``tower``'s share of ``units`` outputs: equal shares, the remainder to the first towers."""
    return units // TOWERS + (tower < units % TOWERS)


def tower_architecture(table: arch.Architecture, tower: int) -> dict[str, arch.LayerSpec]:
    """One GPU's layers, derived from the grouped table: each layer keeps its share of the outputs; a grouped
    layer sees its own tower's maps (one group), a full one (conv1 on the image, conv3, the FC layers)
    sees both towers' maps; LRN windows stop at the tower's edge. Flattening happens across the towers."""
    layers: dict[str, arch.LayerSpec] = {}
    for name, layer in table:
        if isinstance(layer, arch.Conv2dSpec):
            in_channels = layer.in_channels // TOWERS if layer.groups == TOWERS else layer.in_channels
            layers[name] = dataclasses.replace(
                layer, in_channels=in_channels, out_channels=_share(layer.out_channels, tower), groups=1
            )
        elif isinstance(layer, arch.LinearSpec):
            layers[name] = dataclasses.replace(layer, out_features=_share(layer.out_features, tower))
        elif isinstance(layer, arch.LocalResponseNormSpec):
            layers[name] = dataclasses.replace(layer, groups=1)
        elif not isinstance(layer, arch.FlattenSpec):
            layers[name] = layer
    return layers


def _weighted(table: arch.Architecture) -> list[str]:
    return [name for name, layer in table if isinstance(layer, (arch.Conv2dSpec, arch.LinearSpec))]


@torch.no_grad()
def _init_paper(weighted: dict[str, nn.Module]) -> None:
    """Section 5: weights N(0, 0.01); biases 1 in conv2, conv4, conv5, fc6, fc7 and 0 elsewhere."""
    for name, layer in weighted.items():
        layer.weight.normal_(0.0, 0.01)
        layer.bias.fill_(1.0 if name in BIAS_ONE else 0.0)


class AlexNet2012(ReferenceModel):
    """AlexNet (Krizhevsky et al. 2012), grouped form. Input (N, 3, 227..258, 227..258)."""

    def __init__(
        self,
        num_classes: int = 1000,
        dropout: float = 0.5,
        lrn_groups: int = 2,
        lrn_alpha: float = PAPER_LRN_ALPHA,
    ) -> None:
        super().__init__(alexnet2012_architecture(num_classes, lrn_groups, lrn_alpha))
        layers = self.architecture.layers
        device = default_device()
        with torch.device("meta"):  # every weight is drawn again by _init_paper: skip torch's default init
            self.conv1 = layers["conv1"].build()
            self.lrn1 = layers["lrn1"].build()
            self.pool1 = layers["pool1"].build()
            self.conv2 = layers["conv2"].build()
            self.lrn2 = layers["lrn2"].build()
            self.pool2 = layers["pool2"].build()
            self.conv3 = layers["conv3"].build()
            self.conv4 = layers["conv4"].build()
            self.conv5 = layers["conv5"].build()
            self.pool5 = layers["pool5"].build()
            self.flatten = layers["flatten"].build()
            self.fc6 = layers["fc6"].build()
            self.fc7 = layers["fc7"].build()
            self.fc8 = layers["fc8"].build()
        self.to_empty(device=device)
        self.relu = nn.ReLU(inplace=True)
        self.dropout = nn.Dropout(p=dropout)
        _init_paper({name: getattr(self, name) for name in _weighted(self.architecture)})

    def _forward_impl(self, x: Tensor) -> Tensor:
        x = self.pool1(self.lrn1(self.relu(self.conv1(x))))  # (N, 96, 27, 27)
        x = self.pool2(self.lrn2(self.relu(self.conv2(x))))  # (N, 256, 13, 13)
        x = self.relu(self.conv3(x))  # (N, 384, 13, 13)
        x = self.relu(self.conv4(x))  # (N, 384, 13, 13)
        x = self.pool5(self.relu(self.conv5(x)))  # (N, 256, 6, 6)
        x = self.flatten(x)  # (N, 9216)
        x = self.relu(self.fc6(self.dropout(x)))  # (N, 4096)
        x = self.relu(self.fc7(self.dropout(x)))  # (N, 4096)
        return self.fc8(x)  # (N, num_classes)


class Tower(nn.Module):
    """One GPU's half of the 2012 network: its share of every layer's maps and neurons (from the table)."""

    def __init__(self, layers: dict[str, arch.LayerSpec]) -> None:
        super().__init__()
        for name, layer in layers.items():
            self.add_module(name, layer.build())
        self.relu = nn.ReLU(inplace=True)

    def lower(self, x: Tensor) -> Tensor:
        x = self.pool1(self.lrn1(self.relu(self.conv1(x))))  # (N, 48, 27, 27)
        return self.pool2(self.lrn2(self.relu(self.conv2(x))))  # (N, 128, 13, 13)

    def upper(self, both: Tensor) -> Tensor:
        x = self.relu(self.conv3(both))  # (N, 192, 13, 13): both towers' maps in
        x = self.relu(self.conv4(x))  # (N, 192, 13, 13)
        return self.pool5(self.relu(self.conv5(x)))  # (N, 128, 6, 6)


class AlexNet2012TwoTower(ReferenceModel):
    """AlexNet (Krizhevsky et al. 2012) as two towers, figure 2 of the paper, crossing at conv3 and the FCs.

    fc8's outputs are split between the towers, the first ``ceil(num_classes / 2)`` in tower A.
    """

    def __init__(self, num_classes: int = 1000, dropout: float = 0.5, lrn_alpha: float = PAPER_LRN_ALPHA) -> None:
        if num_classes < 2:
            raise ValueError(
                f"AlexNet2012TwoTower splits fc8 between two towers: num_classes must be >= 2, got {num_classes}"
            )
        super().__init__(alexnet2012_architecture(num_classes, lrn_groups=TOWERS, lrn_alpha=lrn_alpha))
        device = default_device()
        with torch.device("meta"):  # every weight is drawn again by _init_paper: skip torch's default init
            self.tower_a = Tower(tower_architecture(self.architecture, 0))
            self.tower_b = Tower(tower_architecture(self.architecture, 1))
        self.to_empty(device=device)
        self.flatten = nn.Flatten()
        self.dropout = nn.Dropout(p=dropout)
        self.relu = nn.ReLU(inplace=True)
        for tower in (self.tower_a, self.tower_b):
            _init_paper({name: getattr(tower, name) for name in _weighted(self.architecture)})

    def _forward_impl(self, x: Tensor) -> Tensor:
        a, b = self.tower_a, self.tower_b
        x = torch.cat([a.lower(x), b.lower(x)], dim=1)  # (N, 256, 13, 13): the towers cross
        x = torch.cat([a.upper(x), b.upper(x)], dim=1)  # (N, 256, 6, 6)
        x = self.dropout(self.flatten(x))  # (N, 9216)
        x = self.dropout(torch.cat([self.relu(a.fc6(x)), self.relu(b.fc6(x))], dim=1))  # (N, 4096)
        x = torch.cat([self.relu(a.fc7(x)), self.relu(b.fc7(x))], dim=1)  # (N, 4096)
        return torch.cat([a.fc8(x), b.fc8(x)], dim=1)  # (N, num_classes)


@register_model()
def alexnet2012(*, weights: Weights = None, progress: bool = True, **kwargs: Any) -> AlexNet2012:
    """The 2012 network, grouped form. The paper's weights are not published: ``weights`` is None or a state dict."""
    return load_weights(AlexNet2012, weights, progress, kwargs)


@register_model()
def alexnet2012_two_tower(*, weights: Weights = None, progress: bool = True, **kwargs: Any) -> AlexNet2012TwoTower:
    """The 2012 network as two towers; ``weights`` is None or a state dict of the two-tower form."""
    return load_weights(AlexNet2012TwoTower, weights, progress, kwargs)


@register_model()
def alexnet2012_seed(*, weights: Weights = None, progress: bool = True, **kwargs: Any) -> AlexNet2012:
    """The seed notebook's AlexNet: ``AlexNet2012(lrn_groups=1, lrn_alpha=SEED_LRN_ALPHA)``, one LRN window over all
    maps with ``nn.LocalResponseNorm(5, alpha=1e-4)``'s arithmetic."""
    kwargs = {"lrn_groups": 1, "lrn_alpha": SEED_LRN_ALPHA} | kwargs
    return load_weights(AlexNet2012, weights, progress, kwargs, name="alexnet2012_seed")
