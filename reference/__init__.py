"""Paper-faithful reference CNNs (:mod:`reference.models`, torch only) and the harness that verifies them
against each other and torchvision (:mod:`reference.verify`, loaded on first use)."""

from __future__ import annotations

import importlib
from typing import Any

from reference.models import (
    AlexNet,
    AlexNet2012,
    AlexNet2012TwoTower,
    LeNet5,
    LocalResponseNorm,
    alexnet,
    alexnet2012,
    alexnet2012_two_tower,
    get_model,
    get_model_builder,
    lenet5,
    list_models,
)

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
    "get_spec",
    "lenet5",
    "list_models",
    "port",
]

# The harness needs torchvision and torchinfo: `import reference` for a model must not load them.
_LAZY = {
    "port": ("reference.verify.port", None),
    "get_spec": ("reference.verify.registry", "get_case"),
}


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'reference' has no attribute {name!r}")
    module, attribute = _LAZY[name]
    value = importlib.import_module(module)
    return value if attribute is None else getattr(value, attribute)
