"""VGG: K. Simonyan, A. Zisserman, "Very Deep Convolutional Networks for Large-Scale Image Recognition", ICLR 2015
(arXiv:1409.1556), Table 1 and sections 2 and 3; and the network ``torchvision.models.vgg11`` ... ``vgg19_bn`` build.

:class:`VGG2014` is the paper's network in any of its six configurations; a configuration is a column of Table 1
as printed (:data:`TABLE_1`), from which the layer table is derived. :class:`VGG2014Dense` is its dense-evaluation
form (section 3.2): the FC layers as convolutions, fc6 7x7 and fc7, fc8 1x1, run over the whole image. Its forward
returns the class score map; :func:`spatial_average` is the separate step that turns the map into the image's
scores. ``reference.port.vgg_dense_from_fc`` and ``vgg_fc_from_dense`` move weights between the two forms.

:class:`VGG` is torchvision's VGG written out by hand: configurations A, B, D, E (``vgg11``, ``vgg13``, ``vgg16``,
``vgg19``), with ``batch_norm=True`` a BatchNorm after every convolution (the ``_bn`` variants), torchvision's
operations in its order, its modules built in its order so that a seed gives torchvision's initial weights.

Where VGG2014 departs from the paper:

* Every configuration starts from the stated N(0, 10^-2) weights (a standard deviation of 0.1) and zero biases,
  or with ``init="glorot"`` from Glorot & Bengio's uniform; the paper started B to E from A's trained layers.
* Dropout stands after fc6's and fc7's ReLUs, as in the authors' released Caffe definition: the paper says only
  "for the first two fully-connected layers".
* A-LRN's LRN is this project's paper LRN with Krizhevsky et al.'s numbers (size 5, alpha 1e-4 not divided by the
  size, beta 0.75, k 2), after the first convolution's ReLU as in AlexNet.
* Training (scale jittering, crops, multi-scale evaluation) is not part of the model: the FC form takes any side
  224..255 (block5_pool must be 7x7), the dense form any side from 224.

Both name their layers as Keras's VGG16 does (block1_conv1 ... block5_pool), then fc6, fc7, fc8 as the paper's FC
layers: the authors' Caffe names (conv1_1) end in ``_<n>``, which torchvision's feature extraction takes for its
own repeat counter and strips, so that "conv3_1" would name conv3_2's output there.

Where VGG departs from torchvision: layer names instead of ``features.N`` / ``classifier.N``; the adaptive average
pool is
:class:`reference.models.layers.AdaptiveAvgPool2d`, deterministic on CUDA (torchvision's backward raises under
``torch.use_deterministic_algorithms(True)``); input is validated.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from typing import Any, Literal

import torch
from torch import Tensor, nn

from reference.models import tables as arch
from reference.models._api import register_model
from reference.models.base import ReferenceModel, default_device
from reference.models.weights import Weights, load_weights

__all__ = [
    "PAPER_WEIGHT_STD",
    "TABLE_1",
    "TORCHVISION_BUILDERS",
    "TORCHVISION_CONFIGS",
    "VGG",
    "VGG2014",
    "VGG2014Dense",
    "spatial_average",
    "torchvision_names",
    "torchvision_paths",
    "vgg11",
    "vgg11_bn",
    "vgg13",
    "vgg13_bn",
    "vgg16",
    "vgg16_bn",
    "vgg19",
    "vgg19_bn",
    "vgg2014",
    "vgg2014_architecture",
    "vgg2014_dense",
    "vgg2014_dense_architecture",
    "vgg_architecture",
]

# Table 1 as printed: each configuration's convolutional blocks, "conv<receptive field size>-<channels>" and
# "LRN"; a max-pool closes every block. FC-4096, FC-4096, FC-1000 follow in every configuration.
TABLE_1: dict[str, tuple[tuple[str, ...], ...]] = {
    "A": (
        ("conv3-64",),
        ("conv3-128",),
        ("conv3-256", "conv3-256"),
        ("conv3-512", "conv3-512"),
        ("conv3-512", "conv3-512"),
    ),
    "A-LRN": (
        ("conv3-64", "LRN"),
        ("conv3-128",),
        ("conv3-256", "conv3-256"),
        ("conv3-512", "conv3-512"),
        ("conv3-512", "conv3-512"),
    ),
    "B": (
        ("conv3-64", "conv3-64"),
        ("conv3-128", "conv3-128"),
        ("conv3-256", "conv3-256"),
        ("conv3-512", "conv3-512"),
        ("conv3-512", "conv3-512"),
    ),
    "C": (
        ("conv3-64", "conv3-64"),
        ("conv3-128", "conv3-128"),
        ("conv3-256", "conv3-256", "conv1-256"),
        ("conv3-512", "conv3-512", "conv1-512"),
        ("conv3-512", "conv3-512", "conv1-512"),
    ),
    "D": (
        ("conv3-64", "conv3-64"),
        ("conv3-128", "conv3-128"),
        ("conv3-256", "conv3-256", "conv3-256"),
        ("conv3-512", "conv3-512", "conv3-512"),
        ("conv3-512", "conv3-512", "conv3-512"),
    ),
    "E": (
        ("conv3-64", "conv3-64"),
        ("conv3-128", "conv3-128"),
        ("conv3-256", "conv3-256", "conv3-256", "conv3-256"),
        ("conv3-512", "conv3-512", "conv3-512", "conv3-512"),
        ("conv3-512", "conv3-512", "conv3-512", "conv3-512"),
    ),
}
# torchvision's builder of each configuration it has (no C, no A-LRN); "_bn" appended for batch norm.
TORCHVISION_BUILDERS = {"A": "vgg11", "B": "vgg13", "D": "vgg16", "E": "vgg19"}
TORCHVISION_CONFIGS = tuple(TORCHVISION_BUILDERS)
FC_WIDTH = 4096
HEAD_SIDE = 7  # fc6 takes block5_pool's 7x7 maps (224 / 2**5): the FC form's input, the dense form's fc6 kernel
LAST_POOL = "block5_pool"  # where the convolutional part ends
PAPER_WEIGHT_STD = 0.1  # section 3.1: "a normal distribution with the zero mean and 10^-2 variance"

InitName = Literal["paper", "glorot"]


def _check(model: str, config: str, configs: tuple[str, ...] | list[str], init: str = "paper") -> None:
    if config not in configs:
        raise ValueError(f"{model}: config must be one of {', '.join(map(repr, configs))}; got {config!r}")
    if init not in ("paper", "glorot"):
        raise ValueError(f"{model}: init must be 'paper' or 'glorot'; got {init!r}")


def _blocks(config: str, batch_norm: bool) -> dict[str, arch.LayerSpec]:
    """block1_conv1 ... block5_pool from Table 1: "same" padding (1 for 3x3, 0 for 1x1, section 2.1), then a 2x2
    stride-2 max-pool."""
    layers: dict[str, arch.LayerSpec] = {}
    in_channels = 3
    for block, entries in enumerate(TABLE_1[config], start=1):
        convs = 0
        for entry in entries:
            if entry == "LRN":
                layers[f"block{block}_lrn"] = arch.KRIZHEVSKY_LRN  # section 2.2
                continue
            kernel, channels = map(int, re.fullmatch(r"conv(\d+)-(\d+)", entry).groups())
            convs += 1
            layers[f"block{block}_conv{convs}"] = arch.Conv2dSpec(in_channels, channels, kernel, padding=kernel // 2)
            if batch_norm:
                layers[f"block{block}_bn{convs}"] = arch.BatchNorm2dSpec(channels)
            in_channels = channels
        layers[f"block{block}_pool"] = arch.MaxPool2dSpec(kernel_size=2, stride=2)
    return layers


def _head(channels: int, num_classes: int) -> dict[str, arch.LayerSpec]:
    return {
        "flatten": arch.FlattenSpec(expected=(channels, HEAD_SIDE, HEAD_SIDE)),
        "fc6": arch.LinearSpec(in_features=channels * HEAD_SIDE**2, out_features=FC_WIDTH),
        "fc7": arch.LinearSpec(in_features=FC_WIDTH, out_features=FC_WIDTH),
        "fc8": arch.LinearSpec(in_features=FC_WIDTH, out_features=num_classes),
    }


@arch.cached
def vgg2014_architecture(config: str = "D", num_classes: int = 1000) -> arch.Architecture:
    _check("VGG2014", config, list(TABLE_1))
    blocks = _blocks(config, batch_norm=False)
    return arch.Architecture(layers=blocks | _head(blocks["block5_conv1"].out_channels, num_classes), in_channels=3,
                             default_side=224)  # fmt: skip


@arch.cached
def vgg2014_dense_architecture(config: str = "D", num_classes: int = 1000) -> arch.Architecture:
    """The FC table with each FC layer as the convolution that computes it on every 7x7 window (section 3.2)."""
    layers: dict[str, arch.LayerSpec] = {}
    kernel = HEAD_SIDE
    for name, spec in vgg2014_architecture(config, num_classes):
        if isinstance(spec, arch.LinearSpec):
            layers[name] = arch.Conv2dSpec(spec.in_features // kernel**2, spec.out_features, kernel_size=kernel)
            kernel = 1  # fc7 and fc8 see one position of the map below them
        elif not isinstance(spec, arch.FlattenSpec):
            layers[name] = spec
    return arch.Architecture(layers=layers, in_channels=3, default_side=224)


@arch.cached
def vgg_architecture(config: str = "D", batch_norm: bool = False, num_classes: int = 1000) -> arch.Architecture:
    """torchvision's: Table 1's A, B, D, E, an adaptive pool to 7x7 before the head (identity at 224)."""
    _check("VGG", config, TORCHVISION_CONFIGS)
    blocks = _blocks(config, batch_norm)
    pool = {"avgpool": arch.AdaptiveAvgPool2dSpec(output_size=HEAD_SIDE)}
    return arch.Architecture(layers=blocks | pool | _head(blocks["block5_conv1"].out_channels, num_classes),
                             in_channels=3, default_side=224)  # fmt: skip


def _sequence(table: arch.Architecture, dropout: float) -> list[tuple[str, Callable[[], nn.Module]]]:
    """The modules in the order they run: the table's layers, a ReLU after every convolution (after its batch norm
    where it has one) and every hidden FC layer, and a dropout after each hidden FC layer's ReLU."""
    names = list(table.layers)
    out: list[tuple[str, Callable[[], nn.Module]]] = []
    for index, (name, spec) in enumerate(table):
        out.append((name, spec.build))
        if name == table.output_layer:
            continue
        normalised_next = index + 1 < len(names) and isinstance(table.layers[names[index + 1]], arch.BatchNorm2dSpec)
        if isinstance(spec, arch.BatchNorm2dSpec) or (
            isinstance(spec, (arch.Conv2dSpec, arch.LinearSpec)) and not normalised_next
        ):
            out.append((re.sub(r"(conv|bn|fc)(\d*)$", r"relu\2", name), functools.partial(nn.ReLU, inplace=True)))
            if name.startswith("fc"):
                out.append((name.replace("fc", "dropout"), functools.partial(nn.Dropout, p=dropout)))
    return out


def torchvision_paths(table: arch.Architecture) -> dict[str, str]:
    """Each module of a :class:`VGG` -> its path in torchvision's VGG, whose ``features`` and ``classifier``
    Sequentials number every module (ReLUs, pools and dropouts included); ``flatten`` is a function call there."""
    names = [name for name, _ in _sequence(table, 0.5)]
    features, classifier = names[: names.index("avgpool")], names[names.index("flatten") + 1 :]
    return (
        {name: f"features.{i}" for i, name in enumerate(features)}
        | {"avgpool": "avgpool"}
        | {name: f"classifier.{i}" for i, name in enumerate(classifier)}
    )


def torchvision_names(table: arch.Architecture) -> dict[str, str]:
    """Each layer with parameters or statistics -> its module path in torchvision's VGG: a checkpoint's key names."""
    weighted = table.trainable_params()
    return {name: path for name, path in torchvision_paths(table).items() if name in weighted}


def spatial_average(scores: Tensor) -> Tensor:
    """The image's class scores from the dense form's score map (section 3.2: "spatially averaged")."""
    return scores.mean(dim=(2, 3))  # (N, classes, h, w) -> (N, classes)


class _Sequential(ReferenceModel):
    """A VGG's modules as named attributes, run in table order: ``features`` up to block5_pool, then ``head``."""

    def _add(self, dropout: float) -> None:
        order = _sequence(self.architecture, dropout)
        for name, build in order:
            self.add_module(name, build())
        split = [name for name, _ in order].index(LAST_POOL) + 1
        self._features = tuple(name for name, _ in order[:split])
        self._head = tuple(name for name, _ in order[split:])

    def features(self, x: Tensor) -> Tensor:
        """block1_conv1 ... block5_pool, unchecked: (N, 3, H, W) -> (N, 512, H // 32, W // 32)."""
        for name in self._features:
            x = self.get_submodule(name)(x)
        return x

    def head(self, x: Tensor) -> Tensor:
        """What follows block5_pool, unchecked."""
        for name in self._head:
            x = self.get_submodule(name)(x)
        return x

    def _forward_impl(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))  # (N, 512, 7, 7) at 224 -> the scores


@torch.no_grad()
def _init_2014(model: nn.Module, init: InitName) -> None:
    """Section 3.1: weights N(0, 10^-2), or Glorot & Bengio's uniform; biases zero. An FC layer's weight is drawn
    as the (out, in) matrix in either form, so both forms draw the same values from one seed."""
    for name, module in model.named_modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            weight = module.weight.view(module.weight.shape[0], -1) if name.startswith("fc") else module.weight
            if init == "paper":
                weight.normal_(0.0, PAPER_WEIGHT_STD)
            else:
                nn.init.xavier_uniform_(weight)
            module.bias.zero_()


class _Paper(_Sequential):
    """The paper's network in the form ``_table`` gives, initialised as section 3.1 says."""

    _table: Callable[[str, int], arch.Architecture]

    def __init__(
        self, config: str = "D", num_classes: int = 1000, dropout: float = 0.5, init: InitName = "paper"
    ) -> None:
        _check(type(self).__name__, config, list(TABLE_1), init)
        super().__init__(self._table(config, num_classes))
        self.config = config
        device = default_device()
        with torch.device("meta"):  # every weight is drawn again by _init_2014: skip torch's default init
            self._add(dropout)
        self.to_empty(device=device)
        _init_2014(self, init)


class VGG2014(_Paper):
    """VGG (Simonyan & Zisserman 2014), configuration A, A-LRN, B, C, D or E of Table 1.
    Input (N, 3, 224..255, 224..255); output (N, num_classes) logits."""

    _table = staticmethod(vgg2014_architecture)


class VGG2014Dense(_Paper):
    """VGG2014's dense-evaluation form: the FC layers as 7x7 and 1x1 convolutions. Input (N, 3, H, W), H and W from
    224 up; output the class score map (N, num_classes, H // 32 - 6, W // 32 - 6). A seed draws the FC form's
    weights: ``vgg_fc_from_dense`` of this model equals ``VGG2014`` built under the same seed."""

    _table = staticmethod(vgg2014_dense_architecture)

    def image_scores(self, x: Tensor) -> Tensor:
        return spatial_average(self(x))  # (N, num_classes)


class VGG(_Sequential):
    """torchvision's VGG, hand-written: configuration A, B, D or E (vgg11, vgg13, vgg16, vgg19), with
    ``batch_norm`` the ``_bn`` variant. Input (N, 3, >=32, >=32); output (N, num_classes) logits."""

    def __init__(
        self, config: str = "D", batch_norm: bool = False, num_classes: int = 1000, dropout: float = 0.5
    ) -> None:
        _check("VGG", config, TORCHVISION_CONFIGS)
        super().__init__(vgg_architecture(config, batch_norm, num_classes))
        self.config, self.batch_norm = config, batch_norm
        self._add(dropout)  # torch's default init, drawn in torchvision's module order, then torchvision's own
        with torch.no_grad():
            for module in self.modules():
                if isinstance(module, nn.Conv2d):
                    nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
                    nn.init.constant_(module.bias, 0)
                elif isinstance(module, nn.BatchNorm2d):
                    nn.init.constant_(module.weight, 1)
                    nn.init.constant_(module.bias, 0)
                elif isinstance(module, nn.Linear):
                    nn.init.normal_(module.weight, 0, 0.01)
                    nn.init.constant_(module.bias, 0)


def vgg2014(*, weights: Weights = None, progress: bool = True, **kwargs: Any) -> VGG2014:
    """torchvision's builder signature (``config=`` among the options). The paper's weights are not published:
    ``weights`` is None or a state dict."""
    return load_weights(VGG2014, weights, progress, kwargs)


def vgg2014_dense(*, weights: Weights = None, progress: bool = True, **kwargs: Any) -> VGG2014Dense:
    """torchvision's builder signature; ``weights`` is None or a state dict of the dense form."""
    return load_weights(VGG2014Dense, weights, progress, kwargs)


def _paper_builder(form: type[VGG2014] | type[VGG2014Dense], config: str) -> Callable[..., nn.Module]:
    name = f"vgg2014_{config.lower().replace('-', '_')}" + "_dense" * (form is VGG2014Dense)

    def build(*, weights: Weights = None, progress: bool = True, **kwargs: Any) -> nn.Module:
        return load_weights(form, weights, progress, {"config": config} | kwargs, name=name)

    build.__name__ = build.__qualname__ = name
    dense = ", dense-evaluation form" * (form is VGG2014Dense)
    build.__doc__ = f"The paper's configuration {config}{dense}: ``{form.__name__}(config={config!r}, **kwargs)``."
    return register_model()(build)


for _form in (VGG2014, VGG2014Dense):
    for _config in TABLE_1:
        _paper_builder(_form, _config)


def _builder(name: str, config: str, batch_norm: bool) -> Callable[..., VGG]:
    def build(*, weights: Weights = None, progress: bool = True, **kwargs: Any) -> VGG:
        for fixed in ("config", "batch_norm"):  # the builder's name says both, as torchvision's do
            if fixed in kwargs:
                raise TypeError(f"{name}() got an unexpected keyword argument {fixed!r}")
        model = functools.partial(VGG, config=config, batch_norm=batch_norm)
        names = torchvision_names(vgg_architecture(config, batch_norm))
        return load_weights(model, weights, progress, kwargs, torchvision_names=names, name=name)

    build.__name__ = build.__qualname__ = name
    bn = " with batch normalisation" if batch_norm else ""
    build.__doc__ = (
        f"torchvision's ``{name}``: configuration {config}{bn}. ``weights`` is torchvision's weights enum member "
        "(fetched through torchvision's own download-and-cache path, then ported), a state dict with torchvision's "
        "key names or with this model's, or None (torchvision's initialisation, drawn in its order)."
    )
    return register_model()(build)


vgg11 = _builder("vgg11", "A", False)
vgg11_bn = _builder("vgg11_bn", "A", True)
vgg13 = _builder("vgg13", "B", False)
vgg13_bn = _builder("vgg13_bn", "B", True)
vgg16 = _builder("vgg16", "D", False)
vgg16_bn = _builder("vgg16_bn", "D", True)
vgg19 = _builder("vgg19", "E", False)
vgg19_bn = _builder("vgg19_bn", "E", True)
