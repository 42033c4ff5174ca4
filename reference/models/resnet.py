"""ResNet: K. He, X. Zhang, S. Ren, J. Sun, "Deep Residual Learning for Image Recognition", CVPR 2016
(arXiv:1512.03385), Table 1 and sections 3.3, 3.4 and 4.2; and the networks ``torchvision.models.resnet18`` ...
``resnet152``, ``wide_resnet50_2`` and ``resnext50_32x4d`` build.

:class:`ResNet2015` is the paper's ImageNet network of Table 1 (depth 18, 34, 50, 101, 152) with shortcut option
"A", "B" or "C" of section 3.3; :class:`CifarResNet` section 4.2's 6n+2 networks on 32x32 images (16/32/64 maps,
option A). :class:`ResNet` is torchvision's, written out by hand: its modules built in its order, so that a seed
gives torchvision's initial weights, its operations run in its order, its module names (``layer3.1.conv2``), so that
its checkpoints load unchanged. All three build from one layer table (:func:`resnet_architecture`,
:func:`resnet2015_architecture`, :func:`cifar_resnet_architecture`): a block's layers by their module paths, the
shortcut branching off the block's input and the addition named by the block (:attr:`Architecture.sources`).

Where ResNet2015 departs from the paper:

* Weights as He et al. 2015 ("we initialize the weights as in [13]"): its forward case, N(0, 2 / fan_in), for every
  convolution and the FC layer (the paper says no more); batch norm's scale 1 and shift 0; the FC bias 0.
* The bottleneck's stride sits on its first 1x1 convolution, as in the authors' released Caffe models; torchvision
  (ResNet "v1.5", after fb.resnet.torch) puts it on the 3x3. Same parameters and shapes, different outputs.
* The training recipe (scale augmentation, 10-crop testing, fully convolutional multi-scale evaluation) is not
  part of the model; any input side from 1 is taken (the global average pool adapts), 224 is what Table 1 counts.

Where CifarResNet departs from the paper: option A's zeros are appended after the identity channels (the paper says
"extra zero entries padded"; fb.resnet.torch, the authors' endorsed reproduction, appends them); ``layout="both"``
gives the other layout in use (half on each side), a different network with the same counts.

Where ResNet departs from torchvision: the adaptive average pool is :class:`reference.models.layers.
AdaptiveAvgPool2d` (deterministic on CUDA); input is validated; no dilation or custom norm layer.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from reference.models import tables as arch
from reference.models._api import register_model
from reference.models.base import ReferenceModel, default_device
from reference.models.layers import PAD_LAYOUTS
from reference.models.weights import Weights, load_weights

__all__ = [
    "CIFAR_DEPTHS",
    "SHORTCUTS",
    "TABLE_1",
    "TORCHVISION_OPTIONS",
    "BasicBlock",
    "Bottleneck",
    "CifarResNet",
    "ResNet",
    "ResNet2015",
    "cifar_resnet",
    "cifar_resnet_architecture",
    "resnet18",
    "resnet34",
    "resnet50",
    "resnet101",
    "resnet152",
    "resnet2015",
    "resnet2015_architecture",
    "resnet_architecture",
    "resnext50_32x4d",
    "wide_resnet50_2",
]

# Table 1: each depth's building block and blocks per stage (conv2_x .. conv5_x), whose widths are STAGE_WIDTHS (the
# bottleneck's output four times that).
TABLE_1: dict[int, tuple[str, tuple[int, ...]]] = {
    18: ("basic", (2, 2, 2, 2)),
    34: ("basic", (3, 4, 6, 3)),
    50: ("bottleneck", (3, 4, 6, 3)),
    101: ("bottleneck", (3, 4, 23, 3)),
    152: ("bottleneck", (3, 8, 36, 3)),
}
STAGE_WIDTHS = (64, 128, 256, 512)
EXPANSION = {"basic": 1, "bottleneck": 4}
SHORTCUTS = ("A", "B", "C")  # section 3.3: zero padding; projections where sizes change; projections everywhere
# Section 4.2: "6n+2 stacked weighted layers", n in {3, 5, 7, 9, 18, 200}, maps of 16, 32 and 64 on 32x32 images.
CIFAR_DEPTHS = (20, 32, 44, 56, 110, 1202)
CIFAR_WIDTHS = (16, 32, 64)
CIFAR_SIDE = 32
IMAGENET_SIDE = 224
# torchvision's builders: (block, blocks per stage, groups, width per group).
TORCHVISION_OPTIONS: dict[str, tuple[str, tuple[int, ...], int, int]] = {
    "resnet18": ("basic", TABLE_1[18][1], 1, 64),
    "resnet34": ("basic", TABLE_1[34][1], 1, 64),
    "resnet50": ("bottleneck", TABLE_1[50][1], 1, 64),
    "resnet101": ("bottleneck", TABLE_1[101][1], 1, 64),
    "resnet152": ("bottleneck", TABLE_1[152][1], 1, 64),
    "wide_resnet50_2": ("bottleneck", TABLE_1[50][1], 1, 128),
    "resnext50_32x4d": ("bottleneck", TABLE_1[50][1], 32, 4),
}


def _check(model: str, option: str, value: object, accepted: tuple) -> None:
    if value not in accepted:
        raise ValueError(f"{model}: {option} must be one of {', '.join(map(repr, accepted))}; got {value!r}")


def _stages(
    layers: dict[str, arch.LayerSpec],
    sources: dict[str, tuple[str, ...]],
    channels: int,
    *,
    block: str,
    counts: tuple[int, ...],
    widths: tuple[int, ...],
    shortcut: str,
    layout: str = "append",
    stride_on_1x1: bool = False,
    groups: int = 1,
    width_per_group: int = 64,
) -> int:
    """Adds ``layer1`` ... to ``layers``: each block's convolutions and batch norms, its shortcut (fed by the block's
    input) and the block itself, the addition of both (section 3.3: a stride of 2 at the first block of every stage
    after the first). Returns the last block's width."""
    previous = next(reversed(layers))
    for stage, (count, planes) in enumerate(zip(counts, widths, strict=True), start=1):
        for index in range(count):
            prefix, stride = f"layer{stage}.{index}", 2 if stage > 1 and index == 0 else 1
            out = planes * EXPANSION[block]
            if block == "basic":
                main = {"conv1": arch.Conv2dSpec(channels, planes, 3, stride, 1, bias=False),
                        "bn1": arch.BatchNorm2dSpec(planes),
                        "conv2": arch.Conv2dSpec(planes, planes, 3, 1, 1, bias=False),
                        "bn2": arch.BatchNorm2dSpec(planes)}  # fmt: skip
            else:
                width = int(planes * (width_per_group / 64.0)) * groups  # torchvision's: a ResNeXt's grouped width
                first, middle = (stride, 1) if stride_on_1x1 else (1, stride)
                main = {"conv1": arch.Conv2dSpec(channels, width, 1, first, bias=False),
                        "bn1": arch.BatchNorm2dSpec(width),
                        "conv2": arch.Conv2dSpec(width, width, 3, middle, 1, groups=groups, bias=False),
                        "bn2": arch.BatchNorm2dSpec(width),
                        "conv3": arch.Conv2dSpec(width, out, 1, bias=False),
                        "bn3": arch.BatchNorm2dSpec(out)}  # fmt: skip
            layers.update({f"{prefix}.{name}": spec for name, spec in main.items()})
            joined = (f"{prefix}.{next(reversed(main))}", previous)
            if shortcut == "C" or stride != 1 or channels != out:
                if shortcut == "A" and (stride != 1 or channels != out):
                    layers[f"{prefix}.downsample"] = arch.ZeroPadShortcutSpec(channels, out, stride, layout)
                    sources[f"{prefix}.downsample"] = (previous,)
                    joined = (joined[0], f"{prefix}.downsample")
                elif shortcut != "A":
                    layers[f"{prefix}.downsample.0"] = arch.Conv2dSpec(channels, out, 1, stride, bias=False)
                    layers[f"{prefix}.downsample.1"] = arch.BatchNorm2dSpec(out)
                    sources[f"{prefix}.downsample.0"] = (previous,)
                    joined = (joined[0], f"{prefix}.downsample.1")
            layers[prefix], sources[prefix] = arch.AddSpec(), joined
            previous, channels = prefix, out
    return channels


def _imagenet(block: str, counts: tuple[int, ...], num_classes: int, **options: Any) -> arch.Architecture:
    """Table 1's network: 7x7/2 convolution, 3x3/2 max pool, four stages, global average pool, FC."""
    layers: dict[str, arch.LayerSpec] = {
        "conv1": arch.Conv2dSpec(3, STAGE_WIDTHS[0], 7, 2, 3, bias=False),
        "bn1": arch.BatchNorm2dSpec(STAGE_WIDTHS[0]),
        "maxpool": arch.MaxPool2dSpec(3, 2, 1),
    }
    sources: dict[str, tuple[str, ...]] = {}
    channels = _stages(layers, sources, STAGE_WIDTHS[0], block=block, counts=counts, widths=STAGE_WIDTHS, **options)
    return arch.Architecture(layers | _head(channels, num_classes), 3, IMAGENET_SIDE, sources)


def _head(channels: int, num_classes: int) -> dict[str, arch.LayerSpec]:
    return {
        "avgpool": arch.AdaptiveAvgPool2dSpec(output_size=1),
        "flatten": arch.FlattenSpec(expected=(channels, 1, 1)),
        "fc": arch.LinearSpec(channels, num_classes),
    }


@arch.cached
def resnet_architecture(
    block: str = "bottleneck",
    layers: tuple[int, ...] = (3, 4, 6, 3),
    groups: int = 1,
    width_per_group: int = 64,
    num_classes: int = 1000,
) -> arch.Architecture:
    """torchvision's: projection shortcuts where sizes change (option B), the bottleneck's stride on its 3x3."""
    return _imagenet(block, layers, num_classes, shortcut="B", groups=groups, width_per_group=width_per_group)


@arch.cached
def resnet2015_architecture(depth: int = 50, shortcut: str = "B", num_classes: int = 1000) -> arch.Architecture:
    _check("ResNet2015", "depth", depth, tuple(TABLE_1))
    _check("ResNet2015", "shortcut", shortcut, SHORTCUTS)
    block, counts = TABLE_1[depth]
    return _imagenet(block, counts, num_classes, shortcut=shortcut, stride_on_1x1=True)


@arch.cached
def cifar_resnet_architecture(
    depth: int = 20, shortcut: str = "A", num_classes: int = 10, layout: str = "append"
) -> arch.Architecture:
    """Section 4.2: a 3x3 convolution with 16 maps, three stages of n basic blocks (16, 32, 64 maps), global
    average pool, FC."""
    _check("CifarResNet", "depth", depth, CIFAR_DEPTHS)
    _check("CifarResNet", "shortcut", shortcut, SHORTCUTS)
    _check("CifarResNet", "layout", layout, PAD_LAYOUTS)
    layers: dict[str, arch.LayerSpec] = {
        "conv1": arch.Conv2dSpec(3, CIFAR_WIDTHS[0], 3, 1, 1, bias=False),
        "bn1": arch.BatchNorm2dSpec(CIFAR_WIDTHS[0]),
    }
    sources: dict[str, tuple[str, ...]] = {}
    counts = ((depth - 2) // 6,) * len(CIFAR_WIDTHS)
    channels = _stages(layers, sources, CIFAR_WIDTHS[0], block="basic", counts=counts, widths=CIFAR_WIDTHS,
                       shortcut=shortcut, layout=layout)  # fmt: skip
    return arch.Architecture(layers | _head(channels, num_classes), 3, CIFAR_SIDE, sources)


def _shortcut(table: arch.Architecture, prefix: str) -> nn.Module | None:
    """The block's shortcut as its table has it: a projection (1x1 convolution and batch norm), option A's
    zero padding, or None (the identity)."""
    if f"{prefix}.downsample.0" in table.layers:
        return nn.Sequential(table.build(f"{prefix}.downsample.0"), table.build(f"{prefix}.downsample.1"))
    if f"{prefix}.downsample" in table.layers:
        return table.build(f"{prefix}.downsample")
    return None


class BasicBlock(nn.Module):
    """Two 3x3 convolutions, each with batch norm, a ReLU between them and after the addition (Figure 5, left)."""

    expansion = EXPANSION["basic"]

    def __init__(self, table: arch.Architecture, prefix: str) -> None:
        super().__init__()
        downsample = _shortcut(table, prefix)  # built first, as torchvision's _make_layer builds it
        self.conv1 = table.build(f"{prefix}.conv1")
        self.bn1 = table.build(f"{prefix}.bn1")
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = table.build(f"{prefix}.conv2")
        self.bn2 = table.build(f"{prefix}.bn2")
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu(self.bn1(self.conv1(x)))  # (N, C_out, H', W')
        out = self.bn2(self.conv2(out))
        out += x if self.downsample is None else self.downsample(x)  # the shortcut after the main path, as torchvision
        return self.relu(out)


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3, 1x1 expand (x4), each with batch norm, ReLUs between and after the addition (Figure 5,
    right). Where the stride sits is the table's."""

    expansion = EXPANSION["bottleneck"]

    def __init__(self, table: arch.Architecture, prefix: str) -> None:
        super().__init__()
        downsample = _shortcut(table, prefix)
        self.conv1 = table.build(f"{prefix}.conv1")
        self.bn1 = table.build(f"{prefix}.bn1")
        self.conv2 = table.build(f"{prefix}.conv2")
        self.bn2 = table.build(f"{prefix}.bn2")
        self.conv3 = table.build(f"{prefix}.conv3")
        self.bn3 = table.build(f"{prefix}.bn3")
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu(self.bn1(self.conv1(x)))  # (N, width, H or H', W or W')
        out = self.relu(self.bn2(self.conv2(out)))  # (N, width, H', W')
        out = self.bn3(self.conv3(out))  # (N, 4 planes, H', W')
        out += x if self.downsample is None else self.downsample(x)  # the shortcut after the main path
        return self.relu(out)


BLOCKS = {"basic": BasicBlock, "bottleneck": Bottleneck}


class _Residual(ReferenceModel):
    """A residual network's modules from its table: a stem, ``layer1`` ... (a Sequential of blocks each), the global
    average pool and the FC layer."""

    def __init__(self, table: arch.Architecture) -> None:
        super().__init__(table)
        self.conv1 = table.build("conv1")
        self.bn1 = table.build("bn1")
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = table.build("maxpool") if "maxpool" in table.layers else None
        stage = 1
        while f"layer{stage}.0" in table.layers:
            blocks, index = [], 0
            while (prefix := f"layer{stage}.{index}") in table.layers:
                blocks.append(BLOCKS["bottleneck" if f"{prefix}.conv3" in table.layers else "basic"](table, prefix))
                index += 1
            self.add_module(f"layer{stage}", nn.Sequential(*blocks))
            stage += 1
        self.stages = stage - 1
        self.groups, self.base_width = 1, 64  # torchvision's attributes: a bottleneck's groups and width per group
        self.avgpool = table.build("avgpool")
        self.fc = table.build("fc")

    def _forward_impl(self, x: Tensor) -> Tensor:
        x = self.relu(self.bn1(self.conv1(x)))  # (N, 64, H / 2, W / 2) on ImageNet; (N, 16, H, W) on CIFAR
        if self.maxpool is not None:
            x = self.maxpool(x)  # (N, 64, H / 4, W / 4)
        for stage in range(1, self.stages + 1):
            x = self.get_submodule(f"layer{stage}")(x)  # each stage after the first halves H and W
        x = self.avgpool(x)  # (N, C, 1, 1)
        return self.fc(torch.flatten(x, 1))  # (N, num_classes)

    def _zero_init_residual(self) -> None:
        """Goyal et al. 2017: the last batch norm of every block scales by 0, so that each block starts as its
        shortcut."""
        for module in self.modules():
            if isinstance(module, (BasicBlock, Bottleneck)):
                nn.init.zeros_(module.bn3.weight if isinstance(module, Bottleneck) else module.bn2.weight)


@torch.no_grad()
def _init_he_2015(model: nn.Module) -> None:
    """He et al. 2015's forward case: N(0, 2 / fan_in) for every weight of a convolution or FC layer, biases 0;
    batch norm's scale 1 and shift 0."""
    for module in model.modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            nn.init.kaiming_normal_(module.weight, mode="fan_in", nonlinearity="relu")
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.BatchNorm2d):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
            module.reset_running_stats()


class _Paper(_Residual):
    """The paper's networks: built on the meta device (every value is drawn again), initialised as He et al. 2015."""

    def __init__(self, table: arch.Architecture) -> None:
        device = default_device()
        with torch.device("meta"):
            super().__init__(table)
        if device.type != "meta":  # the meta device holds no values to draw
            self.to_empty(device=device)
            _init_he_2015(self)


class ResNet2015(_Paper):
    """ResNet (He et al. 2015) of Table 1: depth 18, 34, 50, 101 or 152, shortcut option "A", "B" or "C" of section
    3.3, a bottleneck's stride on its first 1x1. Input (N, 3, H, W), H and W from 1 (224 in the paper); output
    (N, num_classes) logits. Module names are torchvision's: a torchvision ResNet's state dict loads unchanged
    (option B; option C adds projections, option A has none)."""

    def __init__(self, depth: int = 50, shortcut: str = "B", num_classes: int = 1000) -> None:
        super().__init__(resnet2015_architecture(depth, shortcut, num_classes))
        self.depth, self.shortcut = depth, shortcut


class CifarResNet(_Paper):
    """The CIFAR-10 ResNet of section 4.2: depth 20, 32, 44, 56, 110 or 1202 (6n+2), option A shortcuts by default,
    ``layout`` where option A's zero channels go ("append" or "both"). Input (N, 3, H, W), H and W from 1 (32 in the
    paper); output (N, num_classes) logits."""

    def __init__(self, depth: int = 20, shortcut: str = "A", num_classes: int = 10, layout: str = "append") -> None:
        super().__init__(cifar_resnet_architecture(depth, shortcut, num_classes, layout))
        self.depth, self.shortcut, self.layout = depth, shortcut, layout


def _block_name(block: object) -> str:
    name = getattr(block, "__name__", None)
    kinds = {cls.__name__: kind for kind, cls in BLOCKS.items()}
    if name not in kinds:
        raise ValueError(f"ResNet: block must be BasicBlock or Bottleneck; got {block!r}")
    return kinds[name]


class ResNet(_Residual):
    """torchvision's ResNet, hand-written: ``block`` :class:`BasicBlock` or :class:`Bottleneck` (torchvision's
    classes of those names are taken too), ``layers`` blocks per stage, ``groups`` and ``width_per_group`` a
    bottleneck's grouped 3x3 (ResNeXt, wide ResNet), ``zero_init_residual`` each block's last batch norm scaled by 0.
    Input (N, 3, H, W), H and W from 1; output (N, num_classes) logits."""

    def __init__(
        self,
        block: type[BasicBlock | Bottleneck],
        layers: list[int],
        num_classes: int = 1000,
        zero_init_residual: bool = False,
        groups: int = 1,
        width_per_group: int = 64,
    ) -> None:
        kind = _block_name(block)
        if kind == "basic" and (groups != 1 or width_per_group != 64):
            raise ValueError(
                f"ResNet: BasicBlock only supports groups=1 and width_per_group=64; got {groups}, {width_per_group}"
            )
        if len(layers) != len(STAGE_WIDTHS) or any(count < 1 for count in layers):
            raise ValueError(f"ResNet: layers must be {len(STAGE_WIDTHS)} block counts >= 1; got {layers!r}")
        super().__init__(resnet_architecture(kind, tuple(layers), groups, width_per_group, num_classes))
        self.zero_init_residual, self.groups, self.base_width = zero_init_residual, groups, width_per_group
        if default_device().type == "meta":  # no values to draw
            return
        with torch.no_grad():  # torch's default init, drawn in torchvision's module order, then torchvision's own
            for module in self.modules():
                if isinstance(module, nn.Conv2d):
                    nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
                elif isinstance(module, nn.BatchNorm2d):
                    nn.init.constant_(module.weight, 1)
                    nn.init.constant_(module.bias, 0)
            if zero_init_residual:
                self._zero_init_residual()


def torchvision_names(table: arch.Architecture) -> dict[str, str]:
    """Each weighted layer -> its module path in torchvision's ResNet: the same (the state dicts' keys agree)."""
    return {name: name for name in table.trainable_params()}


def _builder(name: str) -> Callable[..., ResNet]:
    block, counts, groups, width = TORCHVISION_OPTIONS[name]

    def build(*, weights: Weights = None, progress: bool = True, **kwargs: Any) -> ResNet:
        fixed = {"groups": groups, "width_per_group": width}
        for option, value in fixed.items():  # torchvision's _ovewrite_named_param: the builder's own values
            if kwargs.setdefault(option, value) != value:
                raise ValueError(f"The parameter '{option}' expected value {value} but got {kwargs[option]} instead.")
        model = functools.partial(ResNet, BLOCKS[block], list(counts))
        names = torchvision_names(resnet_architecture(block, counts, groups, width))
        return load_weights(model, weights, progress, kwargs, torchvision_names=names, name=name)

    build.__name__ = build.__qualname__ = name
    build.__doc__ = (
        f"torchvision's ``{name}``: {block} blocks {list(counts)}, groups {groups}, width per group {width}. "
        "``weights`` is torchvision's weights enum member (fetched through torchvision's own download-and-cache path), "
        "a state dict with torchvision's key names (this model's), or None (torchvision's initialisation, drawn in "
        "its order)."
    )
    return register_model()(build)


resnet18 = _builder("resnet18")
resnet34 = _builder("resnet34")
resnet50 = _builder("resnet50")
resnet101 = _builder("resnet101")
resnet152 = _builder("resnet152")
wide_resnet50_2 = _builder("wide_resnet50_2")
resnext50_32x4d = _builder("resnext50_32x4d")


def resnet2015(*, weights: Weights = None, progress: bool = True, **kwargs: Any) -> ResNet2015:
    """torchvision's builder signature (``depth=``, ``shortcut=`` among the options); ``weights`` None or a state
    dict (a torchvision ResNet's loads into option B)."""
    return load_weights(ResNet2015, weights, progress, kwargs)


def cifar_resnet(*, weights: Weights = None, progress: bool = True, **kwargs: Any) -> CifarResNet:
    """torchvision's builder signature (``depth=``, ``shortcut=``, ``layout=`` among the options)."""
    return load_weights(CifarResNet, weights, progress, kwargs)


def _paper_builder(form: type[_Paper], name: str, fixed: dict[str, Any], doc: str) -> None:
    def build(*, weights: Weights = None, progress: bool = True, **kwargs: Any) -> nn.Module:
        options = fixed | kwargs
        if form is ResNet2015:  # torchvision's module names: its state dicts and weights enums load (option B)
            table = resnet2015_architecture(options.get("depth", 50), options.get("shortcut", "B"))
            return load_weights(form, weights, progress, options, torchvision_names(table), name=name)
        return load_weights(form, weights, progress, options, name=name)

    build.__name__ = build.__qualname__ = name
    build.__doc__ = f"{doc}: ``{form.__name__}({', '.join(f'{k}={v!r}' for k, v in fixed.items())}, **kwargs)``."
    register_model()(build)


for _depth in TABLE_1:
    _paper_builder(ResNet2015, f"resnet2015_{_depth}", {"depth": _depth}, f"The paper's ResNet-{_depth}, option B")
for _depth in (18, 34):  # the depths section 3.3 compares the options at (Table 3: 34; Table 2: 18 and 34)
    for _option in ("A", "C"):
        _paper_builder(ResNet2015, f"resnet2015_{_depth}_{_option.lower()}", {"depth": _depth, "shortcut": _option},
                       f"The paper's ResNet-{_depth}, option {_option}")  # fmt: skip
for _depth in CIFAR_DEPTHS:
    _paper_builder(CifarResNet, f"cifar_resnet{_depth}", {"depth": _depth}, f"Section 4.2's ResNet-{_depth}")
_paper_builder(CifarResNet, "cifar_resnet20_both", {"depth": 20, "layout": "both"},
               "Section 4.2's ResNet-20, option A's zeros on both sides")  # fmt: skip
