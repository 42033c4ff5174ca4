"""The models by name, as torchvision's ``_api.py`` keeps its own: a builder is registered where it is defined, under
its function's name (``vgg11_bn``), and found by ``list_models``, ``get_model_builder`` and ``get_model``.

The hyphenated names of earlier releases (``vgg11-bn``, ``alexnet2012-two-tower``) are accepted as aliases: a name is
looked up with its hyphens read as underscores.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from torch import nn

__all__ = ["canonical_name", "get_model", "get_model_builder", "list_models", "register_model"]

Builder = TypeVar("Builder", bound=Callable[..., nn.Module])

BUILTIN_MODELS: dict[str, Callable[..., nn.Module]] = {}


def register_model(name: str | None = None) -> Callable[[Builder], Builder]:
    """Decorator: registers a builder under ``name``, by default its function's name."""

    def wrapper(builder: Builder) -> Builder:
        key = name if name is not None else builder.__name__
        if key in BUILTIN_MODELS:
            raise ValueError(f"a model is already registered under the name {key!r}")
        BUILTIN_MODELS[key] = builder
        return builder

    return wrapper


def canonical_name(name: str) -> str:
    """A model or case name as registered: lower case, hyphens read as underscores (``vgg11-bn`` is ``vgg11_bn``)."""
    return name.lower().replace("-", "_")


def list_models(include: Iterable[str] | str | None = None, exclude: Iterable[str] | str | None = None) -> list[str]:
    """The registered names, sorted; ``include`` and ``exclude`` are shell-style patterns (``"vgg*_bn"``), as
    torchvision's ``list_models`` takes them."""
    names = set(BUILTIN_MODELS)
    if include is not None:
        patterns = [include] if isinstance(include, str) else list(include)
        names = {name for name in names if any(fnmatch.fnmatch(name, pattern) for pattern in patterns)}
    if exclude is not None:
        patterns = [exclude] if isinstance(exclude, str) else list(exclude)
        names = {name for name in names if not any(fnmatch.fnmatch(name, pattern) for pattern in patterns)}
    return sorted(names)


def get_model_builder(name: str) -> Callable[..., nn.Module]:
    try:
        return BUILTIN_MODELS[canonical_name(name)]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; known: {', '.join(list_models())}") from None


def get_model(name: str, **config: Any) -> nn.Module:
    """``get_model_builder(name)(**config)``: ``weights=``, ``progress=`` and the model's own options."""
    return get_model_builder(name)(**config)
