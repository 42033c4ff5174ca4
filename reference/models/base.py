"""What every reference model shares: input validated where it enters, then the architecture's layers."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from reference.models.checks import check_input
from reference.models.tables import Architecture

__all__ = ["ReferenceModel", "default_device"]


def default_device() -> torch.device:
    """Where factory functions put tensors now: honours an enclosing ``with torch.device(...)`` (a model built on
    the meta device for its weights' draws is moved there)."""
    return torch.empty(0).device


class ReferenceModel(nn.Module):
    """Base of the reference models: ``forward`` validates the input, ``_forward_impl`` computes."""

    architecture: Architecture

    def __init__(self, architecture: Architecture) -> None:
        super().__init__()
        self.architecture = architecture
        self.valid_sides = architecture.valid_sides

    @property
    def num_classes(self) -> int:
        return self.architecture.num_classes

    def forward(self, x: Tensor) -> Tensor:
        like = next(self.parameters())  # every reference model has parameters
        check_input(type(self).__name__, x, self.architecture.in_channels, self.valid_sides, like)
        return self._forward_impl(x)

    def _forward_impl(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    def dynamic_shapes(self, *, batch: bool = True, sides: bool = True) -> tuple[dict[int, Any]]:
        """``torch.export.export(model, (x,), dynamic_shapes=model.dynamic_shapes())``: the batch, and H and W over
        the valid sides one exported graph can span (:attr:`Architecture.export_sides`: all of them for a model
        whose layers never reach a side of 1 in part of its range). The exported program refuses other sizes."""
        return self.architecture.dynamic_shapes(batch=batch, sides=sides)
