"""The model library: hand-written layers, layer tables and the models built from them. Depends on torch alone.

Every module of this package is imported here, so that its builders register (``@register_model``); each public
:class:`~reference.models.base.ReferenceModel` subclass and every registered builder (``list_models()``) is an attribute
of the package. A new model file needs no line here.
"""

import importlib
import pkgutil

from torch import nn

from reference.models._api import get_model, get_model_builder, list_models
from reference.models.base import ReferenceModel
from reference.models.layers import LocalResponseNorm

for _module in pkgutil.iter_modules(__path__):
    if not _module.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_module.name}")


def _public_models(cls: type[nn.Module]) -> dict[str, type[nn.Module]]:
    found = {}
    for sub in cls.__subclasses__():
        found |= _public_models(sub)
        if not sub.__name__.startswith("_"):
            found[sub.__name__] = sub
    return found


MODEL_CLASSES = _public_models(ReferenceModel)
# A builder named as its file (alexnet) is bound over the submodule, as the builders are what users import.
globals().update(MODEL_CLASSES | {name: get_model_builder(name) for name in list_models()})
from reference.models.googlenet import GoogLeNetOutputs  # noqa: E402 (train mode's outputs)
from reference.models.vgg import spatial_average, vgg2014, vgg2014_dense  # noqa: E402 (family builders of any config)

__all__ = [
    "GoogLeNetOutputs",
    "LocalResponseNorm",
    "get_model",
    "get_model_builder",
    "list_models",
    "spatial_average",
    "vgg2014",
    "vgg2014_dense",
    *sorted(MODEL_CLASSES),
    *list_models(),
]
