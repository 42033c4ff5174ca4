"""AlexNet as published: A. Krizhevsky, I. Sutskever, G. E. Hinton, "ImageNet Classification with Deep
Convolutional Neural Networks", NIPS 2012, sections 3 and 5.

:class:`AlexNet2012` writes the two-GPU network with grouped convolutions (conv2, conv4, conv5 see
only their own GPU's maps) and local response normalisation whose windows stop at the GPU boundary.
:class:`AlexNet2012TwoTower` writes the same network literally, as two towers that exchange maps only
at conv3, fc6, fc7 and fc8. Once weights are split (:mod:`reference.port`) they are the same function.

Where it departs: the input is 227x227 (the paper says 224, which its stride-4 11x11 conv1 cannot
turn into the 55x55 maps it reports); the paper's first-layer neuron count, 253,440, matches neither
(55 * 55 * 96 = 290,400); the training recipe (augmentation, PCA lighting, momentum schedule) is not
part of the model.

Options reproduce the seed notebook's model: ``AlexNet2012(lrn_groups=1, lrn_alpha=SEED_LRN_ALPHA)``
normalises across all channels with ``nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=2)``'s
arithmetic, which is the paper's formula with alpha = 1e-4 / 5 (torch divides alpha by the size).
"""

from __future__ import annotations

import functools

import torch
from torch import Tensor, nn

from reference import architecture as arch
from reference.model import ReferenceModel

__all__ = ["PAPER_LRN_ALPHA", "SEED_LRN_ALPHA", "AlexNet2012", "AlexNet2012TwoTower", "alexnet2012_architecture"]

PAPER_LRN_ALPHA = 1e-4
SEED_LRN_ALPHA = 1e-4 / 5  # nn.LocalResponseNorm(size=5, alpha=1e-4) in the paper's convention
BIAS_ONE = (
    "conv2",
    "conv4",
    "conv5",
    "fc6",
    "fc7",
)  # section 5: "initialized the neuron biases ... with the constant 1"


@functools.cache  # one immutable table per configuration: its valid sides are derived once
def alexnet2012_architecture(
    num_classes: int = 1000, lrn_groups: int = 2, lrn_alpha: float = PAPER_LRN_ALPHA
) -> arch.Architecture:
    lrn = arch.LocalResponseNorm(size=5, alpha=lrn_alpha, beta=0.75, k=2.0, groups=lrn_groups)
    layers = {
        "conv1": arch.Conv2d(in_channels=3, out_channels=96, kernel_size=11, stride=4),
        "lrn1": lrn,
        "pool1": arch.MaxPool2d(kernel_size=3, stride=2),
        "conv2": arch.Conv2d(in_channels=96, out_channels=256, kernel_size=5, padding=2, groups=2),
        "lrn2": lrn,
        "pool2": arch.MaxPool2d(kernel_size=3, stride=2),
        "conv3": arch.Conv2d(in_channels=256, out_channels=384, kernel_size=3, padding=1),
        "conv4": arch.Conv2d(in_channels=384, out_channels=384, kernel_size=3, padding=1, groups=2),
        "conv5": arch.Conv2d(in_channels=384, out_channels=256, kernel_size=3, padding=1, groups=2),
        "pool5": arch.MaxPool2d(kernel_size=3, stride=2),
        "flatten": arch.Flatten(expected=(256, 6, 6)),
        "fc6": arch.Linear(in_features=256 * 6 * 6, out_features=4096),
        "fc7": arch.Linear(in_features=4096, out_features=4096),
        "fc8": arch.Linear(in_features=4096, out_features=num_classes),
    }
    return arch.Architecture(layers=layers, in_channels=3, default_side=227)


def _default_device() -> torch.device:
    """Where factory functions put tensors now: honours an enclosing ``with torch.device(...)``."""
    return torch.empty(0).device


def _init_paper(model: nn.Module, weighted: dict[str, nn.Module]) -> None:
    """Section 5: weights N(0, 0.01); biases 1 in conv2, conv4, conv5, fc6, fc7 and 0 elsewhere."""
    with torch.no_grad():
        for name, layer in weighted.items():
            layer.weight.normal_(0.0, 0.01)
            layer.bias.fill_(1.0 if name.rsplit(".", 1)[-1] in BIAS_ONE else 0.0)


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
        device = _default_device()
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
        _init_paper(
            self,
            {name: getattr(self, name) for name in ("conv1", "conv2", "conv3", "conv4", "conv5", "fc6", "fc7", "fc8")},
        )

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
    """One GPU's half of the 2012 network: its share of every layer's maps and neurons."""

    def __init__(self, fc8_out: int, lrn_alpha: float) -> None:
        super().__init__()
        lrn = arch.LocalResponseNorm(size=5, alpha=lrn_alpha, beta=0.75, k=2.0)
        self.conv1 = arch.Conv2d(in_channels=3, out_channels=48, kernel_size=11, stride=4).build()
        self.lrn1 = lrn.build()
        self.pool1 = arch.MaxPool2d(kernel_size=3, stride=2).build()
        self.conv2 = arch.Conv2d(in_channels=48, out_channels=128, kernel_size=5, padding=2).build()
        self.lrn2 = lrn.build()
        self.pool2 = arch.MaxPool2d(kernel_size=3, stride=2).build()
        self.conv3 = arch.Conv2d(
            in_channels=256, out_channels=192, kernel_size=3, padding=1
        ).build()  # both towers' maps
        self.conv4 = arch.Conv2d(in_channels=192, out_channels=192, kernel_size=3, padding=1).build()
        self.conv5 = arch.Conv2d(in_channels=192, out_channels=128, kernel_size=3, padding=1).build()
        self.pool5 = arch.MaxPool2d(kernel_size=3, stride=2).build()
        self.fc6 = arch.Linear(in_features=256 * 6 * 6, out_features=2048).build()  # both towers' maps
        self.fc7 = arch.Linear(in_features=4096, out_features=2048).build()
        self.fc8 = arch.Linear(in_features=4096, out_features=fc8_out).build()
        self.relu = nn.ReLU(inplace=True)

    def lower(self, x: Tensor) -> Tensor:
        x = self.pool1(self.lrn1(self.relu(self.conv1(x))))  # (N, 48, 27, 27)
        return self.pool2(self.lrn2(self.relu(self.conv2(x))))  # (N, 128, 13, 13)

    def upper(self, both: Tensor) -> Tensor:
        x = self.relu(self.conv3(both))  # (N, 192, 13, 13)
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
        super().__init__(alexnet2012_architecture(num_classes, lrn_groups=2, lrn_alpha=lrn_alpha))
        device = _default_device()
        with torch.device("meta"):  # every weight is drawn again by _init_paper: skip torch's default init
            self.tower_a = Tower(num_classes - num_classes // 2, lrn_alpha)
            self.tower_b = Tower(num_classes // 2, lrn_alpha)
        self.to_empty(device=device)
        self.flatten = nn.Flatten()
        self.dropout = nn.Dropout(p=dropout)
        self.relu = nn.ReLU(inplace=True)
        towers = {"tower_a": self.tower_a, "tower_b": self.tower_b}
        _init_paper(
            self,
            {
                f"{t}.{name}": getattr(tower, name)
                for t, tower in towers.items()
                for name in (*BIAS_ONE, "conv1", "conv3", "fc8")
            },
        )

    def _forward_impl(self, x: Tensor) -> Tensor:
        a, b = self.tower_a, self.tower_b
        x = torch.cat([a.lower(x), b.lower(x)], dim=1)  # (N, 256, 13, 13): the towers cross
        x = torch.cat([a.upper(x), b.upper(x)], dim=1)  # (N, 256, 6, 6)
        x = self.dropout(self.flatten(x))  # (N, 9216)
        x = self.dropout(torch.cat([self.relu(a.fc6(x)), self.relu(b.fc6(x))], dim=1))  # (N, 4096)
        x = torch.cat([self.relu(a.fc7(x)), self.relu(b.fc7(x))], dim=1)  # (N, 4096)
        return torch.cat([a.fc8(x), b.fc8(x)], dim=1)  # (N, num_classes)
