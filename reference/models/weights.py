"""Building a model with published weights, as torchvision's builders do: ``weights`` is a torchvision weights
enum member (fetched through torchvision's own download-and-cache path), a state dict, or None."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import torch
from torch import Tensor, nn

__all__ = ["Weights", "load_weights"]

Weights = Any  # a torchvision WeightsEnum member, a state dict (Mapping[str, Tensor]) or None
Model = TypeVar("Model", bound=nn.Module)


def _categories(weights: Any, name: str, kwargs: dict[str, Any]) -> None:
    """torchvision's rule: num_classes follows the weights' categories; a different one asked for is an error."""
    categories = weights.meta.get("categories")
    if categories is None:
        return
    if kwargs.setdefault("num_classes", len(categories)) != len(categories):
        raise ValueError(f"{name}: num_classes={kwargs['num_classes']}, but {weights} has {len(categories)} categories")


def _renamed(state: Mapping[str, Tensor], names: Mapping[str, str], expected: set[str], name: str) -> dict:
    """``state`` with the library's module paths (``names``: layer -> path) turned into this model's layers."""
    if set(state) == expected:
        return dict(state)
    layers = {path: layer for layer, path in names.items()}
    renamed = {}
    for key, tensor in state.items():
        path, _, param = key.rpartition(".")
        if path not in layers:
            raise ValueError(f"{name}: weights key {key!r} is neither this model's nor the library's")
        renamed[f"{layers[path]}.{param}"] = tensor
    return renamed


def load_weights(
    build: Callable[..., Model],
    weights: Weights,
    progress: bool,
    kwargs: dict[str, Any],
    torchvision_names: Mapping[str, str] | None = None,
    name: str | None = None,
) -> Model:
    """``build(**kwargs)``, with ``weights`` loaded strictly when given (``torchvision_names`` maps this model's
    layers to the library's module paths, for checkpoints that use the library's key names); ``name``, the
    builder's, for messages (default: ``build``'s)."""
    name = name or getattr(build, "__name__", type(build).__name__)
    if weights is None:
        return build(**kwargs)
    fresh = not isinstance(weights, Mapping)  # a state dict read from the checkpoint now: nobody else holds it
    if fresh and not (hasattr(weights, "get_state_dict") and torchvision_names is not None):
        accepted = "None, a state dict" + (" or a torchvision weights enum member" if torchvision_names else "")
        raise TypeError(f"{name} expects weights={accepted}; got {type(weights).__name__}")
    if fresh:
        _categories(weights, name, kwargs)
        weights = weights.get_state_dict(progress=progress, check_hash=True)
    with torch.device("meta"):  # no random init for values about to be replaced
        model = build(**kwargs)
    state = _renamed(weights, torchvision_names or {}, set(model.state_dict()), name)
    if not fresh:  # the caller's tensors stay the caller's: copied into the model's own
        model = model.to_empty(device=next(iter(state.values())).device)
    model.load_state_dict(state, assign=fresh)
    return model
