"""The one comparison path: a case's reference module next to one of its counterparts.

The suite, ``python -m reference verify`` and the benchmarks build and compare pairs through these functions, with
the bounds the pair's :class:`~reference.verify.compare.Tolerance` gives.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from reference.verify.build import seeded
from reference.verify.compare import Comparison, compare_models
from reference.verify.records import Case, Pair
from reference.verify.states import port

__all__ = [
    "BUILD_SEED",
    "DTYPES",
    "compare_pair",
    "grads_to_reference",
    "library",
    "library_meta",
    "library_weights",
    "ported",
    "ported_back",
    "reference_module",
]

BUILD_SEED = 0
DTYPES = (torch.float32, torch.float64)  # what pairs are compared in; float32 first, so that a model converts once
LIBRARY = "torchvision:"


def reference_module(
    case: Case, *, dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu", **options: Any
) -> nn.Module:
    """The case's module built under :data:`BUILD_SEED` (the global RNG untouched), prepared, in eval mode."""
    module = case.prepared(seeded(lambda: case.build(**options), BUILD_SEED))
    return module.to(device=device, dtype=dtype).eval()


def ported(pair: Pair, reference: nn.Module, *, share: bool = False) -> nn.Module:
    """The counterpart with the reference's weights, dtype, device and mode; with ``share`` the reference's own
    tensors where the pair's map gives views of them, rather than copies."""
    return port(reference, lambda: pair.other(reference), pair.state, share=share)


def ported_back(pair: Pair, other: nn.Module) -> nn.Module:
    """The reference's model with the counterpart's weights (the pair's map, backwards); the pair needs ``back``."""
    if pair.back is None:
        raise ValueError(f"{pair.name}: no port back")
    return port(other, lambda: pair.back(other), pair.state, back=True)


def grads_to_reference(pair: Pair, reference: nn.Module, other: nn.Module) -> Callable[[dict], dict]:
    """The counterpart's gradients (or buffers) under the reference's names, through the pair's map."""
    return lambda state: pair.state.to_reference(state, reference, other)


def library(pair: Pair) -> Callable[..., nn.Module] | None:
    """The builder of the library model the counterpart is (``weights=None`` by default), or None."""
    if pair.model is None or not pair.model.startswith(LIBRARY):
        return None
    import torchvision

    return torchvision.models.get_model_builder(pair.model.removeprefix(LIBRARY))


def library_weights(pair: Pair) -> Any:
    """The library's published weights (a torchvision weights enum member), or None."""
    if library(pair) is None:
        return None
    import torchvision

    return torchvision.models.get_model_weights(pair.model.removeprefix(LIBRARY)).DEFAULT


def library_meta(case: Case) -> dict[str, Any] | None:
    """The published metadata (``num_params``, ``_ops``, ``min_size``) of the library model one of the case's pairs
    is, or None."""
    weights = next((library_weights(pair) for pair in case.pairs if library(pair) is not None), None)
    return None if weights is None else dict(weights.meta)


def compare_pair(
    pair: Pair,
    reference: nn.Module,
    other: nn.Module,
    x: Tensor,
    *,
    drawn: bool = False,
    seed: int | None = None,
    grads: bool = True,
) -> Comparison:
    """Outputs, mapped layers and (``grads``) gradients of both: the input's and every parameter's, the counterpart's
    mapped onto the reference's names. The mapped layers its table has: a narrowed build's table lacks the residual
    blocks it cut."""
    table = getattr(reference, "architecture", None)
    layers = pair.layers if table is None else {a: b for a, b in pair.layers.items() if a in table.layers}
    return compare_models(
        reference, other, x, layers=layers, grads=grads, grads_to_a=grads_to_reference(pair, reference, other),
        seed=seed, **pair.tolerance.keywords(x.dtype, device=x.device, drawn=drawn),
    )  # fmt: skip
