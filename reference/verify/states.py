"""How state maps between a reference module and its counterpart: one map per pair, used alike by a port (the
reference's state onto the counterpart's modules), a port back, and every gradient comparison (the counterpart's
gradients onto the reference's parameter names).

A :class:`StateMap`'s ``to_other`` takes the reference's state to the counterpart's keys and shapes; ``to_reference``
is its adjoint: for a map that only moves values (a rename, a reshape, a split between towers) that is its inverse, so
it ports back too; for one that ties or scatters entries (a coefficient shared by a 2x2 block, a sparse kernel set
written densely) it sums or gathers a gradient, and no port back is offered. ``to_reference`` may give a key as the
parts that make it along dim 0 (two towers' halves), which a comparison takes as views and a load joins one key at a
time. A gradient pass delivers a state a few keys at a time: ``to_reference`` maps the part it is given, or raises
KeyError or ValueError where a key needs more of it. :func:`port` and :func:`load` are strict: every key is accounted for and every shape checked, or a ValueError
names what is wrong.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping

import torch
from torch import Tensor, nn

from reference.verify.build import uninitialised

__all__ = ["Parts", "Rename", "State", "StateMap", "Views", "joined", "load_state", "port", "rename_state"]

State = Mapping[str, Tensor]
Parts = tuple[Tensor, ...]


class StateMap:
    """A pair's map between the reference's state and the counterpart's (see the module's docstring)."""

    views = True  # to_other returns views of the reference's tensors: a sharing port holds no copy of them

    def to_other(self, state: State, reference: nn.Module, other: nn.Module) -> dict[str, Tensor]:
        raise NotImplementedError

    def to_reference(self, state: State, reference: nn.Module, other: nn.Module) -> dict[str, Tensor | Parts]:
        raise NotImplementedError


def _shapes(module: nn.Module) -> dict[str, torch.Size]:
    return {key: tensor.shape for key, tensor in module.state_dict(keep_vars=True).items()}


class Views(StateMap):
    """The same keys, under ``prefix`` on the counterpart's side (a wrapper's attribute), each tensor viewed in the
    receiving side's shape: an FC layer's matrix as a convolution's kernels, or nothing to reshape at all."""

    def __init__(self, prefix: str = "") -> None:
        self.prefix = prefix

    def to_other(self, state: State, reference: nn.Module, other: nn.Module) -> dict[str, Tensor]:
        shapes = _shapes(other)
        return {self.prefix + key: _view(tensor, shapes.get(self.prefix + key)) for key, tensor in state.items()}

    def to_reference(self, state: State, reference: nn.Module, other: nn.Module) -> dict[str, Tensor]:
        shapes = _shapes(reference)
        out = {}
        for key, tensor in state.items():
            if not key.startswith(self.prefix):
                raise ValueError(f"unexpected key {key!r}: not under {self.prefix!r}")
            out[key.removeprefix(self.prefix)] = _view(tensor, shapes.get(key.removeprefix(self.prefix)))
        return out


def _view(tensor: Tensor, shape: torch.Size | None) -> Tensor:
    """``tensor`` in ``shape`` where the element counts agree (else as it is: the strict load names the key)."""
    return tensor.view(shape) if shape is not None and shape.numel() == tensor.numel() else tensor


def _by_layer(state: State, known: Mapping[str, object], what: str) -> Iterator[tuple[str, str, str, Tensor]]:
    """(key, layer, parameter name, tensor) for every ``layer.param`` key; a layer not in ``known`` is an error."""
    for key, tensor in state.items():
        layer, _, param = key.rpartition(".")
        if layer not in known:
            raise ValueError(f"unexpected key {key!r}: no layer {layer!r} in {what}")
        yield key, layer, param, tensor


def rename_state(state: State, names: Mapping[str, str]) -> dict[str, Tensor]:
    """Rename ``layer.param`` keys by their layer; a key whose layer is not in ``names`` is an error."""
    return {f"{names[layer]}.{param}": tensor for _, layer, param, tensor in _by_layer(state, names, "the port map")}


class Rename(StateMap):
    """Layers renamed, tensors untouched: ``names`` maps a reference layer to the counterpart's module path."""

    def __init__(self, names: Mapping[str, str]) -> None:
        self.names = dict(names)

    def to_other(self, state: State, reference: nn.Module, other: nn.Module) -> dict[str, Tensor]:
        return rename_state(state, self.names)

    def to_reference(self, state: State, reference: nn.Module, other: nn.Module) -> dict[str, Tensor]:
        return rename_state(state, {path: layer for layer, path in self.names.items()})


def joined(value: Tensor | Parts) -> Tensor:
    """A key's tensor, its parts joined along dim 0 where ``to_reference`` gave parts."""
    return torch.cat(value, dim=0) if isinstance(value, tuple) else value


def load_state(
    target: nn.Module, state: Mapping[str, Tensor | Parts], source: str, *, share: bool = False
) -> nn.Module:
    """Load ``state`` into ``target``: the same keys and shapes, or a ValueError naming the key. Copied, or with
    ``share`` assigned: the target's parameters then hold the given tensors (buffers, which each side updates in train
    mode, are copies)."""
    expected = target.state_dict(keep_vars=True)
    missing, unexpected = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
    if missing or unexpected:
        raise ValueError(
            f"cannot port {source} into {type(target).__name__}: missing key(s) {missing}, unexpected key(s) {unexpected}"
        )
    for key, value in state.items():
        shape = (sum(p.shape[0] for p in value), *value[0].shape[1:]) if isinstance(value, tuple) else value.shape
        if tuple(shape) != tuple(expected[key].shape):
            raise ValueError(
                f"cannot port {source} into {type(target).__name__}: {key!r} has shape {tuple(shape)}, "
                f"expected {tuple(expected[key].shape)}"
            )
    if share:
        parameters = dict(target.named_parameters())
        assigned = {key: joined(state[key]) if key in parameters else joined(state[key]).clone() for key in expected}
        target.load_state_dict(assigned, assign=True)
        return target
    with torch.no_grad():
        for key, tensor in expected.items():
            tensor.copy_(joined(state[key]))  # one key at a time: two towers' halves are never all joined at once
    return target


def port(
    source: nn.Module,
    build: Callable[[], nn.Module],
    state_map: StateMap,
    *,
    back: bool = False,
    share: bool = False,
) -> nn.Module:
    """``build()``'s model with ``source``'s state through ``state_map`` (``back``: from a counterpart onto the
    reference), in ``source``'s dtype, device and mode. Built uninitialised: no random init drawn for values about to
    be replaced, the RNG untouched. With ``share``, built on the meta device and given the mapped tensors themselves."""
    like = next(iter(source.state_dict().values()), None)
    dtype = like.dtype if like is not None and like.is_floating_point() else torch.get_default_dtype()
    device = "meta" if share else like.device if like is not None else "cpu"
    target = uninitialised(build, dtype=dtype, device=device)
    reference, other = (target, source) if back else (source, target)
    mapping = state_map.to_reference if back else state_map.to_other
    state = mapping(source.state_dict(), reference, other)
    return load_state(target, state, type(source).__name__, share=share).train(source.training)
