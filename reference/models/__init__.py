"""The model library: hand-written layers, layer tables and the models built from them. Depends on torch alone."""

from reference.models.alexnet import AlexNet, alexnet
from reference.models.alexnet2012 import AlexNet2012, AlexNet2012TwoTower, alexnet2012, alexnet2012_two_tower
from reference.models.builders import get_model, get_model_builder, list_models
from reference.models.layers import LocalResponseNorm
from reference.models.lenet import LeNet5, lenet5
from reference.models.vgg import (
    VGG,
    VGG2014,
    VGG2014Dense,
    spatial_average,
    vgg11,
    vgg11_bn,
    vgg13,
    vgg13_bn,
    vgg16,
    vgg16_bn,
    vgg19,
    vgg19_bn,
    vgg2014,
    vgg2014_dense,
)

__all__ = [
    "VGG",
    "VGG2014",
    "AlexNet",
    "AlexNet2012",
    "AlexNet2012TwoTower",
    "LeNet5",
    "LocalResponseNorm",
    "VGG2014Dense",
    "alexnet",
    "alexnet2012",
    "alexnet2012_two_tower",
    "get_model",
    "get_model_builder",
    "lenet5",
    "list_models",
    "spatial_average",
    "vgg11",
    "vgg11_bn",
    "vgg13",
    "vgg13_bn",
    "vgg16",
    "vgg16_bn",
    "vgg19",
    "vgg19_bn",
    "vgg2014",
    "vgg2014_dense",
]
