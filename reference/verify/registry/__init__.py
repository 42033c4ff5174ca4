"""The case registry: one module per family here, each holding that paper's numbers, its library's metadata, its
model and layer cases (``CASES``). Every family module is found and loaded: a new family is one file.

Names are the models' registered names (torchvision's, ``vgg11_bn``); the hyphenated names of earlier releases are
aliases (:func:`reference.models._api.canonical_name`).
"""

from __future__ import annotations

import importlib
import pkgutil

from reference.models._api import canonical_name
from reference.verify.records import Case

__all__ = ["CASES", "FAMILIES", "get_case"]

FAMILIES = tuple(module.name for module in pkgutil.iter_modules(__path__))


def _load() -> dict[str, Case]:
    cases: dict[str, Case] = {}
    for name in FAMILIES:
        for case in importlib.import_module(f"{__name__}.{name}").CASES:
            if case.name in cases:
                raise ValueError(f"two cases are named {case.name!r}")
            cases[case.name] = case
    return cases


CASES: dict[str, Case] = _load()


def get_case(name: str) -> Case:
    try:
        return CASES[canonical_name(name)]
    except KeyError:
        raise ValueError(f"unknown model or layer {name!r}; known: {', '.join(CASES)}") from None
