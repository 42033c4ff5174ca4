"""Goldens: stored fingerprints of each model's computation, to catch numeric drift between torch releases.

Weights and inputs come from a closed-form integer hash, not from torch's random number generators,
whose streams no release promises to keep: ``(i * 2654435761 + salt * 40503) mod 2**32`` (a bitwise and) in int64
(exact), converted to float64 (exact: below 2**53), divided by 2**32 (exact: a power of two) and
scaled (one correctly rounded IEEE multiplication). Every torch version and CPU produces the same
bits, so a golden can only drift where the computation itself changed.

A fingerprint holds, for every layer of the case's table, the output shape, the sum of absolute
values (accumulated in float64) and the first values, plus the first logits. The stored files ship with
the package (``reference/verify/goldens``, read through importlib.resources), so the check runs from any
directory of an installed copy. Regenerate them only on purpose: ``python -m reference goldens --write``
(never a side effect of a test).
"""

from __future__ import annotations

import json
import math
from importlib import resources
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from reference.verify.build import uninitialised
from reference.verify.compare import capture_outputs, layer_modules, tolerance
from reference.verify.pairs import DTYPES
from reference.verify.records import Case

__all__ = [
    "DTYPES",
    "closed_form",
    "drift",
    "fingerprint",
    "golden_input",
    "golden_model",
    "load",
    "stored_dir",
    "write",
]

HEAD = 8  # values kept per layer and logits kept per model


_FILL_CHUNK = 1 << 16  # values hashed per pass when filling a parameter: the temporaries stay in cache


def _hashed(start: int, stop: int, salt: int, scale: float, offset: float) -> Tensor:
    hashed = torch.arange(start, stop, dtype=torch.int64).mul_(2654435761).add_(salt * 40503).bitwise_and_(2**32 - 1)
    return hashed.to(torch.float64).div_(2**32).sub_(0.5).mul_(scale).add_(offset)


def closed_form(shape: tuple[int, ...], salt: int, scale: float, offset: float = 0.0) -> Tensor:
    """Float64 values in [offset - scale/2, offset + scale/2), the same bits on every torch version."""
    return _hashed(0, math.prod(shape), salt, scale, offset).reshape(shape)


def _fill_closed_form(param: Tensor, salt: int, scale: float, offset: float = 0.0) -> None:
    """``param.copy_(closed_form(param.shape, ...))``, a chunk at a time (AlexNet's fc6 alone has 38M values)."""
    flat = param.view(-1)
    for start in range(0, flat.numel(), _FILL_CHUNK):
        stop = min(start + _FILL_CHUNK, flat.numel())
        flat[start:stop].copy_(_hashed(start, stop, salt, scale, offset))


def stored_dir() -> Path:
    """Where the goldens ship: the package's ``goldens`` folder (in an editable install, the source tree)."""
    return Path(str(resources.files("reference.verify") / "goldens"))


def golden_model(case: Case) -> nn.Module:
    """The case's model with every parameter set by :func:`closed_form`: weights of variance 2 / fan-in,
    one-dimensional parameters (biases, subsampling coefficients) near 0.25, so no layer is dead."""
    model = uninitialised(case.build)  # every value is set below
    with torch.no_grad():
        for salt, (_name, param) in enumerate(model.named_parameters()):
            if param.dim() >= 2:
                _fill_closed_form(param, salt, scale=math.sqrt(24.0 / param[0].numel()))
            else:
                _fill_closed_form(param, salt, scale=0.1, offset=0.25)
    return case.prepared(model).eval()  # e.g. the seed LeNet-5's Gaussian widths, which would underflow


def golden_input(case: Case) -> Tensor:
    """At the case's default input shape: one image at the smallest side that runs every layer."""
    return closed_form(case.input_space.default, salt=10_000, scale=2.0)


def fingerprint(case: Case, model: nn.Module, x: Tensor) -> dict[str, Any]:
    table = case.architecture  # an eval-mode pass: its layers, not the auxiliary classifiers' (train mode's)
    modules = {layer: layer_modules(model, layer) for layer in table.layers if layer not in table.auxiliary}
    with torch.no_grad(), capture_outputs(model, [m for names in modules.values() for m in names]) as seen:
        logits = model(x)
    layers = {}
    for layer, names in modules.items():
        if not names:
            continue
        out = torch.cat([seen[n] for n in names], dim=1) if len(names) > 1 else seen[names[0]]
        layers[layer] = {
            "shape": list(out.shape),
            "abs_sum": out.double().abs().sum().item(),
            "head": out.flatten()[:HEAD].double().tolist(),
        }
    return {"layers": layers, "logits": logits[0].flatten()[:HEAD].double().tolist()}  # a score map's first row


def compute(case: Case, model: nn.Module | None = None) -> dict[str, dict[str, Any]]:
    model = golden_model(case) if model is None else model
    x = golden_input(case)
    return {str(dtype): fingerprint(case, model.to(dtype), x.to(dtype)) for dtype in DTYPES}


def write(case: Case, directory: Path | None = None) -> Path:
    directory = stored_dir() if directory is None else directory
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{case.name}.json"
    record = {"model": case.name, "generated_with": {"torch": torch.__version__}, **compute(case)}
    path.write_text(json.dumps(record, indent=1) + "\n")
    return path


def load(case: Case, directory: Path | None = None) -> dict[str, Any]:
    """The stored golden: from ``directory`` where given, else from the package data."""
    if directory is not None:
        return json.loads((directory / f"{case.name}.json").read_text())
    return json.loads((resources.files("reference.verify") / "goldens" / f"{case.name}.json").read_text())


def _differs(now: list[float], then: list[float], dtype: torch.dtype) -> float | None:
    """max |Δ| where the values are outside the dtype's tolerance, else None."""
    tol = tolerance(dtype)
    worst = [abs(a - b) for a, b in zip(now, then, strict=True) if abs(a - b) > tol["atol"] + tol["rtol"] * abs(b)]
    return max(worst) if worst else None


def drift(case: Case, golden: dict[str, Any], now: dict[str, Any], dtype: torch.dtype) -> str | None:
    """Where ``now`` drifted from ``golden`` in ``dtype``: a message naming the model and the first layer
    that drifted, or None.

    Tolerance: the dtype's table bound. Another torch release may pick other convolution kernels,
    which sum the same terms in another order; anything beyond reordering is drift.
    """
    then, current = golden[str(dtype)], now[str(dtype)]
    for layer, stored in then["layers"].items():
        seen = current["layers"].get(layer)
        if seen is None or seen["shape"] != stored["shape"]:
            return (
                f"{case.name} ({dtype}): layer {layer!r} has shape {seen and seen['shape']}, golden {stored['shape']}"
            )
        diff = _differs([seen["abs_sum"], *seen["head"]], [stored["abs_sum"], *stored["head"]], dtype)
        if diff is not None:
            return (
                f"{case.name} ({dtype}): first layer that drifted from the golden: {layer!r}, max |Δ| = {diff:.3g} "
                f"(abs sum {seen['abs_sum']!r} vs golden {stored['abs_sum']!r}; "
                f"golden made with torch {golden['generated_with']['torch']}, now {torch.__version__})"
            )
    diff = _differs(current["logits"], then["logits"], dtype)
    if diff is not None:
        return f"{case.name} ({dtype}): logits drifted from the golden after every layer agreed: max |Δ| = {diff:.3g}"
    return None
