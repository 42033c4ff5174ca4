"""The model library: hand-written layers, layer tables and the models built from them. Depends on torch alone."""

from reference.models.alexnet import AlexNet
from reference.models.alexnet2012 import AlexNet2012, AlexNet2012TwoTower
from reference.models.layers import LocalResponseNorm
from reference.models.lenet import LeNet5

__all__ = ["AlexNet", "AlexNet2012", "AlexNet2012TwoTower", "LeNet5", "LocalResponseNorm"]
