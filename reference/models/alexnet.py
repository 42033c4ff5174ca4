"""torchvision-compatible AlexNet: A. Krizhevsky, "One weird trick for parallelizing convolutional neural
networks", arXiv:1404.5997, 2014 — the network ``torchvision.models.alexnet`` implements.

Written out by hand with the operations of torchvision's model in the same order, so that after
:func:`reference.verify.port.alexnet_from_torchvision` it is bitwise equal to it on CPU float32, in eval and
(same seed, same dropout masks) in train mode. Modules are built in torchvision's order, so the same
seed also gives the same initial weights.

Where it departs from torchvision: layers are named after the papers (conv1..conv5, fc6..fc8)
instead of ``features.N`` / ``classifier.N``; the adaptive average pool is
:class:`reference.models.layers.AdaptiveAvgPool2d`, torch's forward with a backward that is deterministic on
CUDA (torchvision's raises under ``torch.use_deterministic_algorithms(True)``); input is validated.
Where it departs from the 2014 paper: it has no grouped "one weird trick" parallelism of its own —
that is a training scheme, not a layer.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from reference.models import tables as arch
from reference.models._api import register_model
from reference.models.base import ReferenceModel
from reference.models.weights import Weights, load_weights

__all__ = ["TORCHVISION_NAMES", "AlexNet", "alexnet", "alexnet_architecture"]

# Weighted layer -> torchvision.models.AlexNet's module path: what a torchvision checkpoint's keys are named.
TORCHVISION_NAMES = {
    "conv1": "features.0",
    "conv2": "features.3",
    "conv3": "features.6",
    "conv4": "features.8",
    "conv5": "features.10",
    "fc6": "classifier.1",
    "fc7": "classifier.4",
    "fc8": "classifier.6",
}


@arch.cached
def alexnet_architecture(num_classes: int = 1000) -> arch.Architecture:
    layers = {
        "conv1": arch.Conv2dSpec(in_channels=3, out_channels=64, kernel_size=11, stride=4, padding=2),
        "pool1": arch.MaxPool2dSpec(kernel_size=3, stride=2),
        "conv2": arch.Conv2dSpec(in_channels=64, out_channels=192, kernel_size=5, padding=2),
        "pool2": arch.MaxPool2dSpec(kernel_size=3, stride=2),
        "conv3": arch.Conv2dSpec(in_channels=192, out_channels=384, kernel_size=3, padding=1),
        "conv4": arch.Conv2dSpec(in_channels=384, out_channels=256, kernel_size=3, padding=1),
        "conv5": arch.Conv2dSpec(in_channels=256, out_channels=256, kernel_size=3, padding=1),
        "pool5": arch.MaxPool2dSpec(kernel_size=3, stride=2),
        "avgpool": arch.AdaptiveAvgPool2dSpec(output_size=6),
        "flatten": arch.FlattenSpec(expected=(256, 6, 6)),
        "fc6": arch.LinearSpec(in_features=256 * 6 * 6, out_features=4096),
        "fc7": arch.LinearSpec(in_features=4096, out_features=4096),
        "fc8": arch.LinearSpec(in_features=4096, out_features=num_classes),
    }
    return arch.Architecture(layers=layers, in_channels=3, default_side=224)


class AlexNet(ReferenceModel):
    """torchvision's AlexNet, hand-written. Input (N, 3, >=63, >=63); output (N, num_classes) logits."""

    def __init__(self, num_classes: int = 1000, dropout: float = 0.5) -> None:
        super().__init__(alexnet_architecture(num_classes))
        layers = self.architecture.layers
        # Built in torchvision's order (features, avgpool, classifier) so seeds give equal weights.
        self.conv1 = layers["conv1"].build()
        self.relu1 = nn.ReLU(inplace=True)
        self.pool1 = layers["pool1"].build()
        self.conv2 = layers["conv2"].build()
        self.relu2 = nn.ReLU(inplace=True)
        self.pool2 = layers["pool2"].build()
        self.conv3 = layers["conv3"].build()
        self.relu3 = nn.ReLU(inplace=True)
        self.conv4 = layers["conv4"].build()
        self.relu4 = nn.ReLU(inplace=True)
        self.conv5 = layers["conv5"].build()
        self.relu5 = nn.ReLU(inplace=True)
        self.pool5 = layers["pool5"].build()
        self.avgpool = layers["avgpool"].build()
        self.flatten = layers["flatten"].build()
        self.dropout6 = nn.Dropout(p=dropout)
        self.fc6 = layers["fc6"].build()
        self.relu6 = nn.ReLU(inplace=True)
        self.dropout7 = nn.Dropout(p=dropout)
        self.fc7 = layers["fc7"].build()
        self.relu7 = nn.ReLU(inplace=True)
        self.fc8 = layers["fc8"].build()

    def _forward_impl(self, x: Tensor) -> Tensor:
        x = self.pool1(self.relu1(self.conv1(x)))  # (N, 64, 27, 27)
        x = self.pool2(self.relu2(self.conv2(x)))  # (N, 192, 13, 13)
        x = self.relu3(self.conv3(x))  # (N, 384, 13, 13)
        x = self.relu4(self.conv4(x))  # (N, 256, 13, 13)
        x = self.pool5(self.relu5(self.conv5(x)))  # (N, 256, 6, 6)
        x = self.flatten(self.avgpool(x))  # (N, 9216)
        x = self.relu6(self.fc6(self.dropout6(x)))  # (N, 4096)
        x = self.relu7(self.fc7(self.dropout7(x)))  # (N, 4096)
        return self.fc8(x)  # (N, num_classes)


@register_model()
def alexnet(*, weights: Weights = None, progress: bool = True, **kwargs: Any) -> AlexNet:
    """torchvision's builder signature: ``weights`` is torchvision's ``AlexNet_Weights`` (fetched through
    torchvision's own download-and-cache path, then ported), a state dict with torchvision's key names or with
    this model's, or None (random init, torchvision's draws in torchvision's order)."""
    return load_weights(AlexNet, weights, progress, kwargs, torchvision_names=TORCHVISION_NAMES)
