"""The models by name, as torchvision lists its own: ``list_models``, ``get_model_builder`` and ``get_model``."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

from torch import nn

from reference.models.alexnet import alexnet
from reference.models.alexnet2012 import SEED_LRN_ALPHA, alexnet2012, alexnet2012_two_tower
from reference.models.lenet import lenet5

__all__ = ["get_model", "get_model_builder", "list_models"]

_BUILDERS: dict[str, Callable[..., nn.Module]] = {
    "lenet5": lenet5,
    "lenet5-seed": partial(lenet5, c3="dense", head="gaussian", activation="tanh"),
    "alexnet2012": alexnet2012,
    "alexnet2012-two-tower": alexnet2012_two_tower,
    "alexnet2012-seed": partial(alexnet2012, lrn_groups=1, lrn_alpha=SEED_LRN_ALPHA),
    "alexnet": alexnet,
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
