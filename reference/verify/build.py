"""Building models for a comparison: seeded without touching the global RNG, or allocated for a load."""

from __future__ import annotations

import ctypes
import ctypes.util
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
from torch import nn

__all__ = ["seeded", "state_kept", "trim", "uninitialised"]

_LIBC = ctypes.CDLL(ctypes.util.find_library("c")) if ctypes.util.find_library("c") else None


def trim() -> None:
    """Hand the C heap's free pages back to the system (glibc's ``malloc_trim``): a model's medium-sized tensors
    (1-32 MB: activations, convolution weights) live on the heap, and without this the process keeps their pages, peak
    RSS included, when the next ones are allocated elsewhere."""
    if _LIBC is not None and hasattr(_LIBC, "malloc_trim"):
        _LIBC.malloc_trim(0)


def seeded(build: Callable[[], nn.Module], seed: int) -> nn.Module:
    """``build()`` under ``torch.manual_seed(seed)``, the global CPU RNG restored afterwards."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build()


def uninitialised(
    build: Callable[[], nn.Module], *, dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu"
) -> nn.Module:
    """``build()``'s model with its parameters allocated in ``dtype`` on ``device`` but not initialised, for a
    caller about to overwrite every value (load a state_dict, fill a closed form).

    Built on the meta device: no time spent on a random init (AlexNet's is ~60M draws) and the global
    RNG untouched; batch norms' running statistics are reset as a fresh build's are. A model with other buffers
    (LeNet-5's prototypes: a caller filling parameters would leave them empty) or that cannot be built on the
    meta device is built normally, under a fixed seed.
    """
    try:
        with torch.device("meta"):
            model = build()
    except NotImplementedError:
        model = None
    norms = [] if model is None else [m for m in model.modules() if hasattr(m, "reset_running_stats")]
    statistics = {id(buffer) for norm in norms for buffer in norm.buffers(recurse=False)}
    if model is None or any(id(buffer) not in statistics for buffer in model.buffers()):
        return seeded(build, 0).to(device=device, dtype=dtype)
    model = model.to(dtype=dtype).to_empty(device=device)
    for norm in norms:
        norm.reset_running_stats()
    return model


@contextmanager
def state_kept(module: nn.Module) -> Iterator[None]:
    """The module's buffers as they were afterwards (a train-mode batch norm updates its running statistics); those
    left unchanged are not written (an eval-mode batch norm's are saved for the comparison's backward pass, which a
    write would invalidate)."""
    saved = {name: buffer.detach().clone() for name, buffer in module.named_buffers()}
    try:
        yield
    finally:
        with torch.no_grad():
            for name, buffer in module.named_buffers():
                if not torch.equal(buffer, saved[name]):
                    buffer.copy_(saved[name])
