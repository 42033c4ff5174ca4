"""One spec per model: the single source of truth that the tests, the CLI and the benchmarks read.

A spec holds the builder, the architecture table (from which input channels, per-layer shapes and
the valid input sides are derived), the published facts quoted from the paper or library, and the
counterpart the model is verified against, with the port that carries its weights across.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from functools import cached_property, partial

import torch
import torchvision
from torch import Tensor, nn

from reference import port
from reference.alexnet import AlexNet, alexnet_architecture
from reference.alexnet2012 import SEED_LRN_ALPHA, AlexNet2012, AlexNet2012TwoTower, alexnet2012_architecture
from reference.architecture import Architecture, Shape, SideRange
from reference.lenet import LeNet5, lenet5_architecture
from reference.testing import LayerMap
from reference.torch_layers import (
    ALEXNET2012_TORCH_LAYER_NAMES,
    TorchLayersLeNet5,
    alexnet2012_torch_layers,
    alexnet2012_torch_layers_grads,
)

__all__ = ["Counterpart", "ModelSpec", "PaperFacts", "get_spec", "list_models"]

LECUN_1998 = "LeCun, Bottou, Bengio, Haffner. Gradient-based learning applied to document recognition. Proc. IEEE, 1998"
KRIZHEVSKY_2012 = (
    "Krizhevsky, Sutskever, Hinton. ImageNet classification with deep convolutional neural networks. NIPS 2012"
)
KRIZHEVSKY_2014 = "Krizhevsky. One weird trick for parallelizing convolutional neural networks. arXiv:1404.5997, 2014"


@dataclass(frozen=True)
class PaperFacts:
    """Numbers quoted from the paper (or the library's metadata), to be matched by derived ones."""

    citation: str
    trainable_params: int
    params_per_layer: Mapping[str, int] = field(default_factory=dict)
    connections_per_layer: Mapping[str, int] = field(default_factory=dict)
    total_connections: int | None = None
    neurons_per_layer: Mapping[str, int] = field(default_factory=dict)
    # What the paper prints where it disagrees with its own architecture: layer -> (printed, note).
    printed_discrepancies: Mapping[str, tuple[int, str]] = field(default_factory=dict)
    macs: int | None = None  # multiplications per image at ``macs_side`` (weights only, no bias)
    macs_side: int | None = None


@dataclass(frozen=True)
class Counterpart:
    """What a reference model is verified against, and how its weights get there."""

    name: str
    port: Callable[[nn.Module], nn.Module]  # the reference model -> the counterpart, same weights
    layers: LayerMap  # reference layer -> counterpart layer(s), for the divergence locator
    grads_to_reference: Callable[[nn.Module, dict[str, Tensor]], Mapping[str, Tensor]]
    exact_forward: bool  # same operations in the same order on CPU: compared with rtol = atol = 0
    exact_grads: bool
    why_not_exact: str = ""
    # Adjusts the reference model's weights before a comparison that would otherwise be vacuous.
    prepare: Callable[[nn.Module], None] | None = None


@dataclass(frozen=True)
class ModelSpec:
    name: str
    summary: str
    builder: Callable[[], nn.Module]
    make_architecture: Callable[[], Architecture]
    facts: PaperFacts
    counterpart: Counterpart | None = None

    @cached_property
    def architecture(self) -> Architecture:
        return self.make_architecture()

    @property
    def in_channels(self) -> int:
        return self.architecture.in_channels

    @property
    def default_side(self) -> int:
        return self.architecture.default_side

    @cached_property
    def valid_sides(self) -> SideRange:
        return self.architecture.valid_sides

    def shapes(self, height: int, width: int) -> dict[str, Shape]:
        return self.architecture.shapes(height, width)


_TORCHVISION_LAYERS = {"conv1": "features.0", "pool1": "features.2", "conv2": "features.3", "pool2": "features.5"} | {
    "conv3": "features.6",
    "conv4": "features.8",
    "conv5": "features.10",
    "pool5": "features.12",
    "avgpool": "avgpool",
    "fc6": "classifier.1",
    "fc7": "classifier.4",
    "fc8": "classifier.6",
}
_TWO_TOWER_LAYERS = {
    name: (f"tower_a.{name}", f"tower_b.{name}")
    for name in (
        "conv1",
        "lrn1",
        "pool1",
        "conv2",
        "lrn2",
        "pool2",
        "conv3",
        "conv4",
        "conv5",
        "pool5",
        "fc6",
        "fc7",
        "fc8",
    )
}
_LENET_LAYERS = {name: name for name in ("c1", "s2", "c3", "s4", "c5", "f6")}

_LENET_COUNTERPART = Counterpart(
    name="LeNet-5 in torch layers",
    port=TorchLayersLeNet5,
    layers=_LENET_LAYERS,
    grads_to_reference=lambda counterpart, grads: counterpart.grads_to_reference(grads),
    exact_forward=False,
    exact_grads=False,
    why_not_exact="subsampling multiplies after summing the block, the depthwise conv before; the head "
    "sums squared differences where torch.cdist takes a square root that is squared again",
)


def _widen_gaussian_head(model: nn.Module) -> None:
    """The seed's head starts at width 1, where exp(-||x - c||^2 / 2) is ~1e-19 for every class and
    any two implementations agree within any tolerance. Width 10 puts the outputs near 0.4."""
    with torch.no_grad():
        model.output.widths.fill_(10.0)


_SPECS = (
    ModelSpec(
        name="lenet5",
        summary="LeNet-5 as published: sparse C3, squashing, fixed +-1 RBF prototypes",
        builder=LeNet5,
        make_architecture=lenet5_architecture,
        facts=PaperFacts(
            citation=LECUN_1998,
            trainable_params=60_000,
            params_per_layer={"c1": 156, "s2": 12, "c3": 1_516, "s4": 32, "c5": 48_120, "f6": 10_164, "output": 0},
            connections_per_layer={
                "c1": 122_304,
                "s2": 5_880,
                "c3": 151_600,
                "s4": 2_000,
                "c5": 48_120,
                "f6": 10_164,
                "output": 840,
            },
            total_connections=340_908,
        ),
        counterpart=_LENET_COUNTERPART,
    ),
    ModelSpec(
        name="lenet5-seed",
        summary="the seed notebook's LeNet-5: dense C3, tanh, Gaussian RBF head with trainable centres and widths",
        builder=partial(LeNet5, c3="dense", head="gaussian", activation="tanh"),
        make_architecture=partial(lenet5_architecture, c3="dense", head="gaussian"),
        facts=PaperFacts(
            citation="the seed notebook (a simplification of " + LECUN_1998 + ")",
            trainable_params=61_750,
            params_per_layer={"c1": 156, "s2": 12, "c3": 2_416, "s4": 32, "c5": 48_120, "f6": 10_164, "output": 850},
        ),
        counterpart=replace(_LENET_COUNTERPART, prepare=_widen_gaussian_head),
    ),
    ModelSpec(
        name="alexnet2012",
        summary="AlexNet as published: grouped conv2/4/5, LRN confined to each GPU's maps, paper init",
        builder=AlexNet2012,
        make_architecture=alexnet2012_architecture,
        facts=PaperFacts(
            citation=KRIZHEVSKY_2012,
            trainable_params=60_965_224,
            neurons_per_layer={
                "conv1": 290_400,
                "conv2": 186_624,
                "conv3": 64_896,
                "conv4": 64_896,
                "conv5": 43_264,
                "fc6": 4_096,
                "fc7": 4_096,
                "fc8": 1_000,
            },
            printed_discrepancies={
                "conv1": (253_440, "the paper prints 253,440; its own conv1 (96 maps of 55x55) has 290,400"),
            },
        ),
        counterpart=Counterpart(
            name="AlexNet2012TwoTower",
            port=port.two_tower_from_grouped,
            layers=_TWO_TOWER_LAYERS,
            grads_to_reference=lambda _c, grads: port.grouped_state_from_two_tower(grads),
            exact_forward=False,
            exact_grads=False,
            why_not_exact="a grouped convolution and two separate convolutions are different kernels, "
            "free to block their reductions differently",
        ),
    ),
    ModelSpec(
        name="alexnet2012-two-tower",
        summary="AlexNet as published, written literally as two towers crossing at conv3, fc6, fc7, fc8",
        builder=AlexNet2012TwoTower,
        make_architecture=alexnet2012_architecture,
        facts=PaperFacts(citation=KRIZHEVSKY_2012, trainable_params=60_965_224),
    ),
    ModelSpec(
        name="alexnet2012-seed",
        summary="the seed notebook's AlexNet: LRN across all 96/256 maps with nn.LocalResponseNorm(5, alpha=1e-4)",
        builder=partial(AlexNet2012, lrn_groups=1, lrn_alpha=SEED_LRN_ALPHA),
        make_architecture=partial(alexnet2012_architecture, lrn_groups=1, lrn_alpha=SEED_LRN_ALPHA),
        facts=PaperFacts(citation="the seed notebook (after " + KRIZHEVSKY_2012 + ")", trainable_params=60_965_224),
        counterpart=Counterpart(
            name="seed nn.Sequential",
            port=alexnet2012_torch_layers,
            layers=ALEXNET2012_TORCH_LAYER_NAMES,
            grads_to_reference=lambda _c, grads: alexnet2012_torch_layers_grads(grads),
            exact_forward=True,
            exact_grads=False,
            why_not_exact="LRN backward: autograd through slices here, avg_pool3d's backward in torch",
        ),
    ),
    ModelSpec(
        name="alexnet",
        summary="torchvision's AlexNet ('One weird trick'), hand-written with its operations in its order",
        builder=AlexNet,
        make_architecture=alexnet_architecture,
        facts=PaperFacts(
            citation=KRIZHEVSKY_2014 + "; torchvision.models.AlexNet_Weights.IMAGENET1K_V1.meta",
            trainable_params=61_100_840,
            macs=714_188_480,
            macs_side=224,
        ),
        counterpart=Counterpart(
            name="torchvision AlexNet",
            port=port.alexnet_to_torchvision,
            layers=_TORCHVISION_LAYERS,
            grads_to_reference=lambda _c, grads: port.rename_state(
                grads, {v: k for k, v in port.TORCHVISION_NAMES.items()}
            ),
            exact_forward=True,
            exact_grads=True,
        ),
    ),
)

SPECS: dict[str, ModelSpec] = {spec.name: spec for spec in _SPECS}


def list_models() -> list[str]:
    return list(SPECS)


def get_spec(name: str) -> ModelSpec:
    try:
        return SPECS[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; known: {', '.join(SPECS)}") from None


def torchvision_meta() -> dict:
    """torchvision's published AlexNet metadata (no download: the weights enum carries it)."""
    return dict(torchvision.models.AlexNet_Weights.IMAGENET1K_V1.meta)
