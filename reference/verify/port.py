"""Weight porting between the reference models and their counterparts. Strict: every key is accounted
for and every shape checked, or a ValueError/TypeError names what is wrong. Between any two models whose tensors
line up one to one: :func:`port_by_order` (by execution order, or by name where the names match).

The state-dict converters (``*_state``) are public too: the equivalence checks run gradients through
them, so a parameter's gradient is compared with the gradient of the parameter it was ported to.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping

import torch
import torchvision
from torch import Tensor, nn

from reference.models import tables as arch
from reference.models.alexnet import TORCHVISION_NAMES, AlexNet
from reference.models.alexnet2012 import TOWERS, AlexNet2012, AlexNet2012TwoTower, tower_architecture
from reference.models.vgg import (
    TORCHVISION_BUILDERS,
    TORCHVISION_CONFIGS,
    VGG,
    VGG2014,
    VGG2014Dense,
    torchvision_names,
    vgg_architecture,
)
from reference.verify.align import port_by_order
from reference.verify.build import uninitialised

__all__ = [
    "TORCHVISION_NAMES",
    "alexnet_from_torchvision",
    "alexnet_to_torchvision",
    "grouped_from_two_tower",
    "grouped_parts_from_two_tower",
    "grouped_state_from_two_tower",
    "port_by_order",
    "rename_state",
    "two_tower_from_grouped",
    "two_tower_state_from_grouped",
    "vgg_dense_from_fc",
    "vgg_dense_state_from_fc",
    "vgg_fc_from_dense",
    "vgg_fc_state_from_dense",
    "vgg_from_torchvision",
    "vgg_to_torchvision",
]

State = Mapping[str, Tensor]

TOWER_NAMES = ("tower_a", "tower_b")


def _require_type(model: object, expected: type, function: str) -> None:
    if not isinstance(model, expected):
        raise TypeError(
            f"{function} expects a {expected.__module__}.{expected.__qualname__}, got {type(model).__qualname__}"
        )


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


def _load_strict(target: nn.Module, state: State, source: str, share: bool = False) -> nn.Module:
    """Load ``state`` into ``target``: same keys, same shapes, or a ValueError naming the key. Copied, or with
    ``share`` assigned: the target's parameters then use the source tensors' storage."""
    expected = target.state_dict(keep_vars=True)
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise ValueError(
            f"cannot port {source} into {type(target).__name__}: missing key(s) {missing}, unexpected key(s) {unexpected}"
        )
    for key, tensor in state.items():
        if tensor.shape != expected[key].shape:
            raise ValueError(
                f"cannot port {source} into {type(target).__name__}: {key!r} has shape {tuple(tensor.shape)}, "
                f"expected {tuple(expected[key].shape)}"
            )
    if share:  # parameters shared; buffers (batch-norm statistics, which each side updates in train mode) copied
        parameters = dict(target.named_parameters())
        target.load_state_dict({key: state[key] if key in parameters else state[key].clone() for key in expected},
                               assign=True)  # fmt: skip
        return target
    with torch.no_grad():
        for key, tensor in expected.items():
            tensor.copy_(state[key])
    return target


def _ported(
    build: Callable[[], nn.Module], state: State, like: nn.Module, source: str, share: bool = False
) -> nn.Module:
    """Build the target uninitialised where ``like`` lives, in its dtype (no random init: the RNG is
    untouched and no time is spent on values about to be overwritten), then load; with ``share``, built on
    the meta device and given the source's tensors themselves."""
    parameter = next(like.parameters())
    device = "meta" if share else parameter.device
    target = uninitialised(build, dtype=parameter.dtype, device=device)
    return _load_strict(target, state, source, share).train(like.training)


def alexnet_from_torchvision(tv_model: torchvision.models.AlexNet) -> AlexNet:
    _require_type(tv_model, torchvision.models.AlexNet, "alexnet_from_torchvision")
    state = rename_state(tv_model.state_dict(), {v: k for k, v in TORCHVISION_NAMES.items()})
    num_classes = tv_model.classifier[6].out_features
    dropout = tv_model.classifier[0].p
    return _ported(lambda: AlexNet(num_classes=num_classes, dropout=dropout), state, tv_model, "torchvision AlexNet")


def alexnet_to_torchvision(model: AlexNet, *, share: bool = False) -> torchvision.models.AlexNet:
    """torchvision's AlexNet with ``model``'s weights: copied, or with ``share`` the same tensors (no copy: for
    a comparison that must not hold the weights twice)."""
    _require_type(model, AlexNet, "alexnet_to_torchvision")
    state = rename_state(model.state_dict(), TORCHVISION_NAMES)
    build = lambda: torchvision.models.alexnet(weights=None, num_classes=model.num_classes, dropout=model.dropout6.p)  # noqa: E731
    return _ported(build, state, model, "reference AlexNet", share)


def _tower_split(model: AlexNet2012TwoTower | AlexNet2012) -> dict[str, int]:
    """Output units of tower A per weighted layer (tower B has the rest), from the tower's table."""
    return {
        name: layer.out_channels if isinstance(layer, arch.Conv2d) else layer.out_features
        for name, layer in tower_architecture(model.architecture, 0).items()
        if isinstance(layer, (arch.Conv2d, arch.Linear))
    }


def two_tower_state_from_grouped(state: State, split: Mapping[str, int]) -> dict[str, Tensor]:
    """Tower A takes the first ``split[layer]`` output units of every layer, tower B the rest."""
    out = {}
    for key, layer, _, tensor in _by_layer(state, split, "the two-tower split"):
        out[f"{TOWER_NAMES[0]}.{key}"], out[f"{TOWER_NAMES[1]}.{key}"] = tensor[: split[layer]], tensor[split[layer] :]
    return out


class _JoinedTowers(Mapping[str, Tensor]):
    """The grouped state of a two-tower state: each key's halves concatenated when it is read, so a caller
    that copies or compares one tensor at a time never holds a second copy of the whole model."""

    def __init__(self, state: State) -> None:
        self._state = state
        self._keys = []
        for key in state:
            tower, _, rest = key.partition(".")
            if tower not in TOWER_NAMES:
                raise ValueError(f"unexpected key {key!r}: not in {' or '.join(TOWER_NAMES)}")
            if any(f"{other}.{rest}" not in state for other in TOWER_NAMES):
                raise ValueError(f"key {rest!r} is missing from one tower")
            if tower == TOWER_NAMES[0]:
                self._keys.append(rest)

    def __getitem__(self, key: str) -> Tensor:
        if key not in self._keys:
            raise KeyError(key)
        return torch.cat([self._state[f"{tower}.{key}"] for tower in TOWER_NAMES], dim=0)

    def __iter__(self) -> Iterator[str]:
        return iter(self._keys)

    def __len__(self) -> int:
        return len(self._keys)


def grouped_state_from_two_tower(state: State) -> Mapping[str, Tensor]:
    """The grouped model's state: tower A's and tower B's halves of every key, joined along the outputs."""
    return _JoinedTowers(state)


def grouped_parts_from_two_tower(state: State) -> dict[str, tuple[Tensor, ...]]:
    """The grouped model's keys, each with the towers' halves that make it along dim 0 (not joined: for a
    comparison, which takes views of the grouped tensor instead of a copy of the halves)."""
    joined = _JoinedTowers(state)  # checks the keys
    return {key: tuple(state[f"{tower}.{key}"] for tower in TOWER_NAMES) for key in joined}


def two_tower_from_grouped(model: AlexNet2012, *, share: bool = False) -> AlexNet2012TwoTower:
    """The two-tower form with ``model``'s weights split between the towers: copied, or with ``share`` views
    of the grouped tensors (no copy)."""
    _require_type(model, AlexNet2012, "two_tower_from_grouped")
    lrn = model.lrn1
    if lrn.groups != TOWERS:
        raise ValueError(
            f"two_tower_from_grouped needs LRN windows confined to the two towers (lrn_groups={TOWERS}), "
            f"got {lrn.groups}"
        )
    state = two_tower_state_from_grouped(model.state_dict(), _tower_split(model))
    build = lambda: AlexNet2012TwoTower(num_classes=model.num_classes, dropout=model.dropout.p, lrn_alpha=lrn.alpha)  # noqa: E731
    return _ported(build, state, model, "grouped AlexNet2012", share)


def grouped_from_two_tower(model: AlexNet2012TwoTower) -> AlexNet2012:
    _require_type(model, AlexNet2012TwoTower, "grouped_from_two_tower")
    state = grouped_state_from_two_tower(model.state_dict())
    lrn = model.tower_a.lrn1

    def build():
        return AlexNet2012(
            num_classes=model.num_classes, dropout=model.dropout.p, lrn_groups=TOWERS, lrn_alpha=lrn.alpha
        )

    return _ported(build, state, model, "two-tower AlexNet2012")


def _torchvision_vgg_config(tv_model: torchvision.models.VGG) -> tuple[str, bool]:
    """(config, batch_norm) of a torchvision VGG: the configuration whose table has its convolutions' widths, in
    order (the strict load then checks every key and shape)."""
    seen = [m.out_channels for m in tv_model.features if isinstance(m, nn.Conv2d)]
    batch_norm = any(isinstance(m, nn.BatchNorm2d) for m in tv_model.features)
    for config in TORCHVISION_CONFIGS:
        if seen == [spec.out_channels for _, spec in vgg_architecture(config) if isinstance(spec, arch.Conv2d)]:
            return config, batch_norm
    raise ValueError(f"vgg_from_torchvision: {type(tv_model).__name__}'s convolutions {seen} are none of "
                     "torchvision's VGG11/13/16/19")  # fmt: skip


def vgg_from_torchvision(tv_model: torchvision.models.VGG) -> VGG:
    _require_type(tv_model, torchvision.models.VGG, "vgg_from_torchvision")
    config, batch_norm = _torchvision_vgg_config(tv_model)
    names = torchvision_names(vgg_architecture(config, batch_norm))
    state = rename_state(tv_model.state_dict(), {v: k for k, v in names.items()})
    num_classes, dropout = tv_model.classifier[6].out_features, tv_model.classifier[2].p

    def build() -> VGG:
        return VGG(config=config, batch_norm=batch_norm, num_classes=num_classes, dropout=dropout)

    return _ported(build, state, tv_model, "torchvision VGG")


def vgg_to_torchvision(model: VGG, *, share: bool = False) -> torchvision.models.VGG:
    """torchvision's VGG of ``model``'s configuration with its weights and batch-norm statistics: copied, or with
    ``share`` the same tensors."""
    _require_type(model, VGG, "vgg_to_torchvision")
    state = rename_state(model.state_dict(), torchvision_names(model.architecture))
    builder = getattr(torchvision.models, TORCHVISION_BUILDERS[model.config] + "_bn" * model.batch_norm)

    def build() -> torchvision.models.VGG:
        return builder(weights=None, num_classes=model.num_classes, dropout=model.dropout6.p)

    return _ported(build, state, model, "reference VGG", share)


def _reshaped(state: State, like: State, what: str) -> dict[str, Tensor]:
    """``state`` with each FC tensor viewed in ``like``'s shape (same keys, same values, same order)."""
    missing = sorted(set(like) ^ set(state))
    if missing:
        raise ValueError(f"cannot port {what}: key(s) {missing} are in one form only")
    return {key: tensor.view(like[key].shape) if key.startswith("fc") else tensor for key, tensor in state.items()}


def _meta_state(build: Callable[[], nn.Module]) -> State:
    with torch.device("meta"):
        return build().state_dict()


def vgg_dense_state_from_fc(state: State, config: str, num_classes: int) -> dict[str, Tensor]:
    """The dense form's state (or gradients) from the FC form's: fc6's (4096, 25088) matrix viewed as 4096 kernels
    of 512x7x7 (Flatten's channel-major order is a kernel's), fc7's and fc8's as 1x1 kernels."""
    like = _meta_state(lambda: VGG2014Dense(config=config, num_classes=num_classes))
    return _reshaped(state, like, "an FC-form state into the dense form")


def vgg_fc_state_from_dense(state: State, config: str, num_classes: int) -> dict[str, Tensor]:
    like = _meta_state(lambda: VGG2014(config=config, num_classes=num_classes))
    return _reshaped(state, like, "a dense-form state into the FC form")


def _other_form(model: VGG2014 | VGG2014Dense, target: type, state_of: Callable, share: bool) -> nn.Module:
    """``model``'s weights in the paper's other form: copied, or with ``share`` views of them."""
    state = state_of(model.state_dict(), model.config, model.num_classes)

    def build() -> nn.Module:
        return target(config=model.config, num_classes=model.num_classes, dropout=model.dropout6.p)

    return _ported(build, state, model, type(model).__name__, share)


def vgg_dense_from_fc(model: VGG2014, *, share: bool = False) -> VGG2014Dense:
    """The dense-evaluation form (section 3.2) with ``model``'s weights: copied, or with ``share`` views of them."""
    _require_type(model, VGG2014, "vgg_dense_from_fc")
    return _other_form(model, VGG2014Dense, vgg_dense_state_from_fc, share)


def vgg_fc_from_dense(model: VGG2014Dense, *, share: bool = False) -> VGG2014:
    """The FC form with the dense form's weights: copied, or with ``share`` views of them."""
    _require_type(model, VGG2014Dense, "vgg_fc_from_dense")
    return _other_form(model, VGG2014, vgg_fc_state_from_dense, share)
