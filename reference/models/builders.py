"""The models by name, as torchvision lists its own: ``list_models``, ``get_model_builder`` and ``get_model``."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

from torch import nn

from reference.models.alexnet import alexnet
from reference.models.alexnet2012 import SEED_LRN_ALPHA, alexnet2012, alexnet2012_two_tower
from reference.models.lenet import lenet5
from reference.models.vgg import (
    TABLE_1,
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

__all__ = ["get_model", "get_model_builder", "list_models"]

_BUILDERS: dict[str, Callable[..., nn.Module]] = {
    "lenet5": lenet5,
    "lenet5-seed": partial(lenet5, c3="dense", head="gaussian", activation="tanh"),
    "alexnet2012": alexnet2012,
    "alexnet2012-two-tower": alexnet2012_two_tower,
    "alexnet2012-seed": partial(alexnet2012, lrn_groups=1, lrn_alpha=SEED_LRN_ALPHA),
    "alexnet": alexnet,
    **{f"vgg2014-{config.lower()}": partial(vgg2014, config=config) for config in TABLE_1},
    **{f"vgg2014-{config.lower()}-dense": partial(vgg2014_dense, config=config) for config in TABLE_1},
    "vgg11": vgg11,
    "vgg11-bn": vgg11_bn,
    "vgg13": vgg13,
    "vgg13-bn": vgg13_bn,
    "vgg16": vgg16,
    "vgg16-bn": vgg16_bn,
    "vgg19": vgg19,
    "vgg19-bn": vgg19_bn,
}


def list_models() -> list[str]:
    return list(_BUILDERS)


def get_model_builder(name: str) -> Callable[..., nn.Module]:
    try:
        return _BUILDERS[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; known: {', '.join(_BUILDERS)}") from None


def get_model(name: str, **kwargs: Any) -> nn.Module:
    """``get_model_builder(name)(**kwargs)``: weights=, progress= and the model's own options."""
    return get_model_builder(name)(**kwargs)
