"""The model library: hand-written layers, layer tables and the models built from them. Depends on torch alone."""

from reference.models.alexnet import AlexNet, alexnet
from reference.models.alexnet2012 import AlexNet2012, AlexNet2012TwoTower, alexnet2012, alexnet2012_two_tower
from reference.models.builders import get_model, get_model_builder, list_models
from reference.models.layers import LocalResponseNorm
from reference.models.lenet import LeNet5, lenet5

__all__ = [
    "AlexNet",
    "AlexNet2012",
    "AlexNet2012TwoTower",
    "LeNet5",
    "LocalResponseNorm",
    "alexnet",
    "alexnet2012",
    "alexnet2012_two_tower",
    "get_model",
    "get_model_builder",
    "lenet5",
    "list_models",
]
