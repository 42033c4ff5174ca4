"""The model library: hand-written layers, layer tables and the models built from them. Depends on torch alone.

Every registered builder (``list_models()``) is an attribute of this package, under its torchvision-style name.
"""

from typing import Any

from reference.models._api import get_model, get_model_builder, list_models

# Importing a model file registers its builders; a builder named as its file (alexnet) is bound over the submodule.
from reference.models.alexnet import AlexNet
from reference.models.alexnet import alexnet as alexnet
from reference.models.alexnet2012 import AlexNet2012, AlexNet2012TwoTower
from reference.models.alexnet2012 import alexnet2012 as alexnet2012
from reference.models.layers import LocalResponseNorm
from reference.models.lenet import LeNet5
from reference.models.vgg import VGG, VGG2014, VGG2014Dense, spatial_average, vgg2014, vgg2014_dense

__all__ = [
    "VGG",
    "VGG2014",
    "AlexNet",
    "AlexNet2012",
    "AlexNet2012TwoTower",
    "LeNet5",
    "LocalResponseNorm",
    "VGG2014Dense",
    "get_model",
    "get_model_builder",
    "list_models",
    "spatial_average",
    "vgg2014",
    "vgg2014_dense",
    *list_models(),
]


def __getattr__(name: str) -> Any:
    """A registered builder by its name (``reference.models.vgg11_bn``)."""
    if name in list_models():
        return get_model_builder(name)
    raise AttributeError(f"module 'reference.models' has no attribute {name!r}")
