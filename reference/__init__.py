"""Paper-faithful reference CNNs and the tools to verify them against each other and torchvision."""

from reference import port
from reference.alexnet import AlexNet
from reference.alexnet2012 import AlexNet2012, AlexNet2012TwoTower
from reference.layers import LocalResponseNorm
from reference.lenet import LeNet5
from reference.specs import get_spec, list_models

__all__ = [
    "AlexNet",
    "AlexNet2012",
    "AlexNet2012TwoTower",
    "LeNet5",
    "LocalResponseNorm",
    "get_spec",
    "list_models",
    "port",
]
