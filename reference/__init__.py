"""Paper-faithful reference CNNs (:mod:`reference.models`, torch only) and the harness that verifies them
against each other and torchvision (:mod:`reference.verify`, loaded on first use)."""

from __future__ import annotations

import importlib
from typing import Any

import reference.models as models
from reference.models import *  # noqa: F403 (the model library is the package's eager API)

# The harness needs torchvision and torchinfo: `import reference` for a model must not load them.
_LAZY = {
    "port": ("reference.verify.port", None),
    "get_spec": ("reference.verify.registry", "get_case"),
}

__all__ = [*models.__all__, *_LAZY]


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'reference' has no attribute {name!r}")
    module, attribute = _LAZY[name]
    value = importlib.import_module(module)
    return value if attribute is None else getattr(value, attribute)
