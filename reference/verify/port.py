"""Weight porting between the reference models and their counterparts, each port one :class:`~reference.verify.states.
StateMap` and the modules it fills (the registry's pairs use the same ones). Strict: every key is accounted for and
every shape checked, or a ValueError/TypeError names what is wrong. Between any two models whose tensors line up one to
one: :func:`port_by_order` (by execution order, or by name where the names match).

``share=True`` gives the counterpart the reference's own tensors (views), not copies: for comparisons that must not
hold an AlexNet's or a VGG's weights twice. torchvision is imported when a port to or from it runs: ``verify`` of a
paper's model does not load it.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from reference.models import tables as arch
from reference.models.alexnet import TORCHVISION_NAMES, AlexNet
from reference.models.alexnet2012 import TOWERS, AlexNet2012, AlexNet2012TwoTower, tower_architecture
from reference.models.googlenet import GoogLeNet
from reference.models.resnet import BLOCKS, TABLE_1, ResNet, ResNet2015, _Residual
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
from reference.verify.states import Parts, Rename, State, StateMap, Views, port, rename_state

if TYPE_CHECKING:
    import torchvision

__all__ = [
    "ALEXNET_NAMES",
    "TORCHVISION_NAMES",
    "Towers",
    "alexnet_from_torchvision",
    "alexnet_to_torchvision",
    "googlenet_from_torchvision",
    "googlenet_like",
    "googlenet_to_torchvision",
    "grouped_from_two_tower",
    "grouped_like",
    "grouped_parts_from_two_tower",
    "grouped_state_from_two_tower",
    "port_by_order",
    "rename_state",
    "resnet2015_like",
    "resnet_from_torchvision",
    "resnet_like",
    "resnet_to_torchvision",
    "torchvision_alexnet_like",
    "torchvision_googlenet_like",
    "torchvision_resnet_like",
    "torchvision_vgg_like",
    "two_tower_from_grouped",
    "two_tower_like",
    "two_tower_state_from_grouped",
    "vgg_dense_from_fc",
    "vgg_dense_like",
    "vgg_dense_state_from_fc",
    "vgg_fc_from_dense",
    "vgg_fc_like",
    "vgg_fc_state_from_dense",
    "vgg_from_torchvision",
    "vgg_like",
    "vgg_names",
    "vgg_to_torchvision",
]

TOWER_NAMES = ("tower_a", "tower_b")
ALEXNET_NAMES = Rename(TORCHVISION_NAMES)


def _require_type(model: object, expected: type, function: str) -> None:
    if not isinstance(model, expected):
        raise TypeError(
            f"{function} expects a {expected.__module__}.{expected.__qualname__}, got {type(model).__qualname__}"
        )


# torchvision's AlexNet ---------------------------------------------------------------------------------------------


def torchvision_alexnet_like(model: AlexNet) -> torchvision.models.AlexNet:
    """torchvision's AlexNet of ``model``'s configuration (its weights to be ported in)."""
    import torchvision

    tv_model = torchvision.models.alexnet(weights=None, num_classes=model.num_classes, dropout=model.dropout6.p)
    return _at_table_widths(tv_model, model.architecture, TORCHVISION_NAMES)


def alexnet_like(tv_model: torchvision.models.AlexNet) -> AlexNet:
    return AlexNet(num_classes=tv_model.classifier[6].out_features, dropout=tv_model.classifier[0].p)


def alexnet_to_torchvision(model: AlexNet, *, share: bool = False) -> torchvision.models.AlexNet:
    """torchvision's AlexNet with ``model``'s weights: copied, or with ``share`` the same tensors."""
    _require_type(model, AlexNet, "alexnet_to_torchvision")
    return port(model, lambda: torchvision_alexnet_like(model), ALEXNET_NAMES, share=share)


def alexnet_from_torchvision(tv_model: torchvision.models.AlexNet) -> AlexNet:
    import torchvision

    _require_type(tv_model, torchvision.models.AlexNet, "alexnet_from_torchvision")
    return port(tv_model, lambda: alexnet_like(tv_model), ALEXNET_NAMES, back=True)


# The 2012 network's two forms ----------------------------------------------------------------------------------------


def _tower_split(model: AlexNet2012TwoTower | AlexNet2012) -> dict[str, int]:
    """Output units of tower A per weighted layer (tower B has the rest), from the tower's table."""
    return {
        name: layer.out_channels if isinstance(layer, arch.Conv2dSpec) else layer.out_features
        for name, layer in tower_architecture(model.architecture, 0).items()
        if isinstance(layer, (arch.Conv2dSpec, arch.LinearSpec))
    }


def two_tower_state_from_grouped(state: State, split: Mapping[str, int]) -> dict[str, Tensor]:
    """Tower A takes the first ``split[layer]`` output units of every layer, tower B the rest (views)."""
    out = {}
    for key, tensor in state.items():
        layer = key.rpartition(".")[0]
        if layer not in split:
            raise ValueError(f"unexpected key {key!r}: no layer {layer!r} in the two-tower split")
        out[f"{TOWER_NAMES[0]}.{key}"], out[f"{TOWER_NAMES[1]}.{key}"] = tensor[: split[layer]], tensor[split[layer] :]
    return out


def grouped_parts_from_two_tower(state: State) -> dict[str, Parts]:
    """The grouped model's keys, each with the towers' halves that make it along dim 0 (not joined: a comparison
    takes views of the grouped tensor instead, a load joins one key at a time)."""
    parts = {}
    for key in state:
        tower, _, rest = key.partition(".")
        if tower not in TOWER_NAMES:
            raise ValueError(f"unexpected key {key!r}: not in {' or '.join(TOWER_NAMES)}")
        if any(f"{other}.{rest}" not in state for other in TOWER_NAMES):
            raise ValueError(f"key {rest!r} is missing from one tower")
        parts[rest] = tuple(state[f"{name}.{rest}"] for name in TOWER_NAMES)
    return parts


class _JoinedTowers(Mapping[str, Tensor]):
    """The grouped state of a two-tower state, each key's halves joined when it is read: a caller that copies or
    compares one tensor at a time never holds a second copy of the whole model."""

    def __init__(self, state: State) -> None:
        self._parts = grouped_parts_from_two_tower(state)

    def __getitem__(self, key: str) -> Tensor:
        return torch.cat(self._parts[key], dim=0)

    def __iter__(self) -> Iterator[str]:
        return iter(self._parts)

    def __len__(self) -> int:
        return len(self._parts)


def grouped_state_from_two_tower(state: State) -> Mapping[str, Tensor]:
    """The grouped model's state: tower A's and tower B's halves of every key, joined along the outputs."""
    return _JoinedTowers(state)


class Towers(StateMap):
    """The grouped 2012 network's state split between the two towers (tower A the first output units of every
    layer, from the tower's table), and joined back."""

    def to_other(self, state: State, reference: nn.Module, other: nn.Module) -> dict[str, Tensor]:
        return two_tower_state_from_grouped(state, _tower_split(reference))

    def to_reference(self, state: State, reference: nn.Module, other: nn.Module) -> dict[str, Parts]:
        return grouped_parts_from_two_tower(state)


TOWERS_MAP = Towers()


def two_tower_like(model: AlexNet2012) -> AlexNet2012TwoTower:
    lrn = model.lrn1
    if lrn.groups != TOWERS:
        raise ValueError(
            f"two_tower_from_grouped needs LRN windows confined to the two towers (lrn_groups={TOWERS}), "
            f"got {lrn.groups}"
        )
    return AlexNet2012TwoTower(num_classes=model.num_classes, dropout=model.dropout.p, lrn_alpha=lrn.alpha)


def grouped_like(model: AlexNet2012TwoTower) -> AlexNet2012:
    lrn = model.tower_a.lrn1
    return AlexNet2012(num_classes=model.num_classes, dropout=model.dropout.p, lrn_groups=TOWERS, lrn_alpha=lrn.alpha)


def two_tower_from_grouped(model: AlexNet2012, *, share: bool = False) -> AlexNet2012TwoTower:
    """The two-tower form with ``model``'s weights split between the towers: copied, or with ``share`` views."""
    _require_type(model, AlexNet2012, "two_tower_from_grouped")
    two_tower_like(model)  # the LRN check, before anything is built
    return port(model, lambda: two_tower_like(model), TOWERS_MAP, share=share)


def grouped_from_two_tower(model: AlexNet2012TwoTower) -> AlexNet2012:
    _require_type(model, AlexNet2012TwoTower, "grouped_from_two_tower")
    return port(model, lambda: grouped_like(model), TOWERS_MAP, back=True)


# torchvision's VGG ---------------------------------------------------------------------------------------------------


def _torchvision_vgg_config(tv_model: torchvision.models.VGG) -> tuple[str, bool]:
    """(config, batch_norm) of a torchvision VGG: the configuration whose table has its convolutions' widths, in
    order (the strict load then checks every key and shape)."""
    seen = [m.out_channels for m in tv_model.features if isinstance(m, nn.Conv2d)]
    batch_norm = any(isinstance(m, nn.BatchNorm2d) for m in tv_model.features)
    for config in TORCHVISION_CONFIGS:
        if seen == [spec.out_channels for _, spec in vgg_architecture(config) if isinstance(spec, arch.Conv2dSpec)]:
            return config, batch_norm
    raise ValueError(f"vgg_from_torchvision: {type(tv_model).__name__}'s convolutions {seen} are none of "
                     "torchvision's VGG11/13/16/19")  # fmt: skip


def vgg_names(config: str, batch_norm: bool) -> Rename:
    """The state map between a :class:`VGG` of ``config`` and torchvision's: its layers' module paths there."""
    return Rename(torchvision_names(vgg_architecture(config, batch_norm)))


def torchvision_vgg_like(model: VGG) -> torchvision.models.VGG:
    """torchvision's VGG of ``model``'s configuration; of its table's widths where they are not torchvision's (a
    table narrowed by :func:`reference.models.tables.narrowed`): torchvision's ``make_layers`` and classifier then
    built at those widths."""
    import torchvision
    from torchvision.models.vgg import make_layers

    builder = getattr(torchvision.models, TORCHVISION_BUILDERS[model.config] + "_bn" * model.batch_norm)
    tv_model = builder(weights=None, num_classes=model.num_classes, dropout=model.dropout6.p)
    table = model.architecture
    layers = [spec.out_channels if isinstance(spec, arch.Conv2dSpec) else "M"
              for _, spec in table if isinstance(spec, (arch.Conv2dSpec, arch.MaxPool2dSpec))]  # fmt: skip
    if layers != [m.out_channels if isinstance(m, nn.Conv2d) else "M"
                  for m in tv_model.features if isinstance(m, (nn.Conv2d, nn.MaxPool2d))]:  # fmt: skip
        tv_model.features = make_layers(layers, batch_norm=model.batch_norm)
        heads = [spec for _, spec in table if isinstance(spec, arch.LinearSpec)]
        for index, spec in zip((0, 3, 6), heads, strict=True):  # the classifier's Linear layers
            tv_model.classifier[index] = nn.Linear(spec.in_features, spec.out_features)
    return tv_model


def vgg_like(tv_model: torchvision.models.VGG) -> VGG:
    config, batch_norm = _torchvision_vgg_config(tv_model)
    num_classes, dropout = tv_model.classifier[6].out_features, tv_model.classifier[2].p
    return VGG(config=config, batch_norm=batch_norm, num_classes=num_classes, dropout=dropout)


def vgg_to_torchvision(model: VGG, *, share: bool = False) -> torchvision.models.VGG:
    """torchvision's VGG of ``model``'s configuration with its weights and batch-norm statistics: copied, or with
    ``share`` the same tensors."""
    _require_type(model, VGG, "vgg_to_torchvision")
    return port(model, lambda: torchvision_vgg_like(model), vgg_names(model.config, model.batch_norm), share=share)


def vgg_from_torchvision(tv_model: torchvision.models.VGG) -> VGG:
    import torchvision

    _require_type(tv_model, torchvision.models.VGG, "vgg_from_torchvision")
    names = vgg_names(*_torchvision_vgg_config(tv_model))
    return port(tv_model, lambda: vgg_like(tv_model), names, back=True)


# The paper's VGG: FC and dense-evaluation forms ---------------------------------------------------------------------


def vgg_dense_like(model: VGG2014) -> VGG2014Dense:
    return VGG2014Dense(config=model.config, num_classes=model.num_classes, dropout=model.dropout6.p)


def vgg_fc_like(model: VGG2014Dense) -> VGG2014:
    return VGG2014(config=model.config, num_classes=model.num_classes, dropout=model.dropout6.p)


def _meta(build) -> nn.Module:
    with torch.device("meta"):
        return build()


def vgg_dense_state_from_fc(state: State, config: str, num_classes: int) -> dict[str, Tensor]:
    """The dense form's state (or gradients) from the FC form's: fc6's (4096, 25088) matrix viewed as 4096 kernels
    of 512x7x7 (Flatten's channel-major order is a kernel's), fc7's and fc8's as 1x1 kernels."""
    fc = _meta(lambda: VGG2014(config=config, num_classes=num_classes))
    return Views().to_other(state, fc, _meta(lambda: vgg_dense_like(fc)))


def vgg_fc_state_from_dense(state: State, config: str, num_classes: int) -> dict[str, Tensor]:
    dense = _meta(lambda: VGG2014Dense(config=config, num_classes=num_classes))
    return Views().to_other(state, dense, _meta(lambda: vgg_fc_like(dense)))


def vgg_dense_from_fc(model: VGG2014, *, share: bool = False) -> VGG2014Dense:
    """The dense-evaluation form (section 3.2) with ``model``'s weights: copied, or with ``share`` views of them."""
    _require_type(model, VGG2014, "vgg_dense_from_fc")
    return port(model, lambda: vgg_dense_like(model), Views(), share=share)


def vgg_fc_from_dense(model: VGG2014Dense, *, share: bool = False) -> VGG2014:
    """The FC form with the dense form's weights: copied, or with ``share`` views of them."""
    _require_type(model, VGG2014Dense, "vgg_fc_from_dense")
    return port(model, lambda: vgg_fc_like(model), Views(), share=share)


# torchvision's ResNet ------------------------------------------------------------------------------------------------


def _stage_counts(model: nn.Module) -> list[int]:
    return [len(model.get_submodule(f"layer{stage}")) for stage in range(1, 5)]


def torchvision_resnet_like(model: _Residual) -> torchvision.models.ResNet:
    """torchvision's ResNet of ``model``'s blocks, counts, groups and widths (a :class:`ResNet`, or the paper's
    ImageNet network with option B, whose modules torchvision's are); of its table's widths where they are not
    torchvision's (a table narrowed by :func:`reference.models.tables.narrowed`): torchvision's own blocks and
    forward, each convolution, batch norm and the FC layer then built at the table's widths."""
    import torchvision
    from torchvision.models import resnet as tv

    table = model.architecture
    block = getattr(tv, type(model.layer1[0]).__name__)
    tv_model = torchvision.models.ResNet(block, _stage_counts(model), num_classes=model.num_classes,
                                         groups=model.groups, width_per_group=model.base_width)  # fmt: skip
    return _at_table_widths(tv_model, table)


def _at_table_widths(
    tv_model: nn.Module, table: arch.Architecture, paths: Mapping[str, str] | None = None
) -> nn.Module:
    """``tv_model`` with each convolution, batch norm and FC layer whose shape differs from ``table``'s (a table
    narrowed by :func:`reference.models.tables.narrowed`) rebuilt at the table's widths, in place: torchvision's own
    blocks and forward, each module's kernel, stride, padding (a batch norm's eps) kept. ``paths``: a table layer's module path in
    ``tv_model`` where it is not the layer's name."""
    modules = dict(tv_model.named_modules())
    for layer, spec in table:
        name = (paths or {}).get(layer, layer)
        module = modules[name] if isinstance(spec, (arch.Conv2dSpec, arch.BatchNorm2dSpec, arch.LinearSpec)) else None
        if module is None or module.weight.shape == spec.build().weight.shape:
            continue
        if isinstance(module, nn.Conv2d):
            built = nn.Conv2d(spec.in_channels, spec.out_channels, module.kernel_size, module.stride, module.padding,
                              groups=module.groups, bias=module.bias is not None)  # fmt: skip
        elif isinstance(module, nn.BatchNorm2d):  # the library's eps and momentum (GoogLeNet's 1e-3), not the table's
            built = nn.BatchNorm2d(spec.channels, eps=module.eps, momentum=module.momentum)
        else:
            built = spec.build()
        parent, _, attribute = name.rpartition(".")
        setattr(tv_model.get_submodule(parent) if parent else tv_model, attribute, built)
    return tv_model


def resnet_like(tv_model: torchvision.models.ResNet) -> ResNet:
    first = tv_model.layer1[0]
    block = BLOCKS["bottleneck" if hasattr(first, "conv3") else "basic"]
    return ResNet(block, _stage_counts(tv_model), num_classes=tv_model.fc.out_features, groups=tv_model.groups,
                  width_per_group=tv_model.base_width)  # fmt: skip


def resnet2015_like(tv_model: torchvision.models.ResNet) -> ResNet2015:
    """The paper's network (option B) of a torchvision ResNet-18 or -34's depth and classes: the same modules (its
    basic blocks have no stride to place)."""
    block = "bottleneck" if hasattr(tv_model.layer1[0], "conv3") else "basic"
    counts = tuple(_stage_counts(tv_model))
    depth = next((depth for depth, row in TABLE_1.items() if row == (block, counts)), None)
    if depth is None or block != "basic":
        raise ValueError(f"resnet2015_like takes torchvision's ResNet-18 or -34; got {block} blocks {counts}")
    return ResNet2015(depth, "B", num_classes=tv_model.fc.out_features)


def resnet_to_torchvision(model: ResNet, *, share: bool = False) -> torchvision.models.ResNet:
    """torchvision's ResNet with ``model``'s weights and batch-norm statistics (the same names): copied, or with
    ``share`` the same tensors."""
    _require_type(model, ResNet, "resnet_to_torchvision")
    return port(model, lambda: torchvision_resnet_like(model), Views(), share=share)


def resnet_from_torchvision(tv_model: torchvision.models.ResNet) -> ResNet:
    import torchvision

    _require_type(tv_model, torchvision.models.ResNet, "resnet_from_torchvision")
    return port(tv_model, lambda: resnet_like(tv_model), Views(), back=True)


# torchvision's GoogLeNet ---------------------------------------------------------------------------------------------


def torchvision_googlenet_like(model: GoogLeNet) -> torchvision.models.GoogLeNet:
    """torchvision's GoogLeNet of ``model``'s classes, heads and input transform; of its table's widths where they
    are not torchvision's (a narrowed table)."""
    import torchvision

    tv_model = torchvision.models.GoogLeNet(num_classes=model.num_classes, aux_logits=model.aux_logits,
                                            transform_input=model.transform_input, init_weights=False,
                                            dropout=model.dropout.p,
                                            dropout_aux=model.aux1.dropout.p if model.aux_logits else 0.7)  # fmt: skip
    return _at_table_widths(tv_model, model.architecture)


def googlenet_like(tv_model: torchvision.models.GoogLeNet) -> GoogLeNet:
    heads = tv_model.aux1 is not None
    return GoogLeNet(num_classes=tv_model.fc.out_features, aux_logits=heads, transform_input=tv_model.transform_input,
                     init_weights=False, dropout=tv_model.dropout.p,
                     dropout_aux=tv_model.aux1.dropout.p if heads else 0.7)  # fmt: skip


def googlenet_to_torchvision(model: GoogLeNet, *, share: bool = False) -> torchvision.models.GoogLeNet:
    """torchvision's GoogLeNet with ``model``'s weights, batch-norm statistics and auxiliary classifiers (the same
    names): copied, or with ``share`` the same tensors."""
    _require_type(model, GoogLeNet, "googlenet_to_torchvision")
    return port(model, lambda: torchvision_googlenet_like(model), Views(), share=share)


def googlenet_from_torchvision(tv_model: torchvision.models.GoogLeNet) -> GoogLeNet:
    import torchvision

    _require_type(tv_model, torchvision.models.GoogLeNet, "googlenet_from_torchvision")
    return port(tv_model, lambda: googlenet_like(tv_model), Views(), back=True)
