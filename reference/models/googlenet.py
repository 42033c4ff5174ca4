"""GoogLeNet: C. Szegedy, W. Liu, Y. Jia, P. Sermanet, S. Reed, D. Anguelov, D. Erhan, V. Vanhoucke, A. Rabinovich,
"Going Deeper with Convolutions", CVPR 2015 (arXiv:1409.4842), Table 1, Figures 2, 3 and section 5; and the network
``torchvision.models.googlenet`` builds.

:class:`GoogLeNet2014` is the paper's network: a 7x7/2 convolution, 3x3/2 max pools, local response normalisation
where Figure 3 draws it, the 1x1 reduce and 3x3 convolution, nine inception modules (1x1, 3x3 reduce + 3x3, 5x5
reduce + 5x5 and 3x3 max pool + projection branches joined along the channels), a 7x7 average pool, 40 % dropout and
a linear layer; in train mode the two auxiliary classifiers of section 5 on 4a and 4d (5x5/3 average pool, 1x1
convolution with 128 filters, a fully connected layer of 1024 with ReLU, 70 % dropout, a linear layer).
:class:`GoogLeNet` is torchvision's, written out by hand: its modules built in its order (a seed gives its initial
weights), its operations in its order, its module names (``inception4a.branch2.1.conv``), so that its checkpoints
load unchanged, and in train mode the same :data:`GoogLeNetOutputs`. Both build from one layer table
(:func:`googlenet_architecture`): a branch's first layer fed by the module's input and the module itself, the
concatenation, named by the module (:attr:`Architecture.sources`); the auxiliary classifiers as heads.

Where GoogLeNet2014 departs from the paper:

* The paper states no initialisation (its networks were trained with DistBelief); the weights are those of the BVLC
  Caffe replication (``bvlc_googlenet``): Caffe's "xavier", U(-sqrt(3 / fan_in), sqrt(3 / fan_in)), biases 0.2,
  the two classifiers' 0.
* The paper gives no LRN numbers; those of ``bvlc_googlenet``: size 5, alpha 1e-4 in Caffe's convention (divided by
  the size: 2e-5 here), beta 0.75, k 1.
* Max pools round up (Caffe's pooling, and TF's "SAME" at these sides): Table 1's 112 -> 56 -> 28 -> 14 -> 7 with no
  padding; the average pools fit their maps exactly at 224.
* Outputs are logits (the softmax belongs to the loss); in train mode with ``aux_logits`` a :data:`GoogLeNetOutputs`
  of the main and both auxiliary logits, which section 5 adds to the loss with the weight :data:`AUX_LOSS_WEIGHT`.
  The input sides are those where both heads fit their fixed average pools (Table 1's 224 among them).

Where GoogLeNet departs from torchvision: the average pools are :class:`reference.models.layers.AdaptiveAvgPool2d`
(deterministic on CUDA), the auxiliary head's pool a module of its own (torchvision calls the function); no
``blocks`` argument; ``init_weights=None`` means True without torchvision's FutureWarning; input is validated.
"""

from __future__ import annotations

from collections import namedtuple
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from reference.models import tables as arch
from reference.models._api import register_model
from reference.models.base import ReferenceModel, default_device
from reference.models.weights import Weights, load_weights

__all__ = [
    "AUX_LOSS_WEIGHT",
    "FORMS",
    "INCEPTION",
    "BasicConv2d",
    "GoogLeNet",
    "GoogLeNet2014",
    "GoogLeNetOutputs",
    "Inception",
    "InceptionAux",
    "googlenet",
    "googlenet2014",
    "googlenet_architecture",
]

# Train mode's outputs, torchvision's named tuple (its fields, in its order): the main logits, then the heads'.
GoogLeNetOutputs = namedtuple("GoogLeNetOutputs", ["logits", "aux_logits2", "aux_logits1"])

# Table 1: each inception module's widths, #1x1, #3x3 reduce, #3x3, #5x5 reduce, #5x5, pool proj.
INCEPTION: dict[str, tuple[int, int, int, int, int, int]] = {
    "3a": (64, 96, 128, 16, 32, 32),
    "3b": (128, 128, 192, 32, 96, 64),
    "4a": (192, 96, 208, 16, 48, 64),
    "4b": (160, 112, 224, 24, 64, 64),
    "4c": (128, 128, 256, 24, 64, 64),
    "4d": (112, 144, 288, 32, 64, 64),
    "4e": (256, 160, 320, 32, 128, 128),
    "5a": (256, 160, 320, 32, 128, 128),
    "5b": (384, 192, 384, 48, 128, 128),
}
STEM = (64, 64, 192)  # conv1 7x7/2, conv2 the 1x1 reduce, conv3 the 3x3 (Table 1's "convolution 3x3/1", depth 2)
POOLS = {"3b": "maxpool3", "4e": "maxpool4"}  # the 3x3/2 max pool after each
# Section 5: the auxiliary classifiers, on the outputs of (4a) and (4d); a 1x1 convolution of 128 filters, a fully
# connected layer of 1024 units, dropout of 70 %, a linear layer; "their loss gets added to the total loss of the
# network with a discount weight (the losses of the auxiliary classifiers were weighted by 0.3)".
AUX = {"aux1": "4a", "aux2": "4d"}
AUX_WIDTHS = (128, 1024)
AUX_SIDE = 4  # "an 4x4x512 output for the (4a), and 4x4x528 for the (4d) stage"
AUX_LOSS_WEIGHT = 0.3
IMAGENET_SIDE = 224
FORMS = ("paper", "torchvision")
# torchvision's BasicConv2d: batch norm with TF-slim's eps after every convolution (which then has no bias).
TORCHVISION_BN_EPS = 1e-3
# bvlc_googlenet's LRN: local_size 5, alpha 1e-4 (Caffe divides it by the size), beta 0.75, k 1 (Caffe's default).
CAFFE_LRN = arch.LocalResponseNormSpec(size=5, alpha=1e-4 / 5, beta=0.75, k=1.0)
# torchvision's transform_input: ImageNet's normalisation undone, then (x - 0.5) / 0.5, per channel.
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def _conv(layers: dict[str, arch.LayerSpec], name: str, c_in: int, c_out: int, kernel: int, stride: int = 1,
          *, paper: bool) -> None:  # fmt: skip
    """A convolution with "same" padding and its ReLU; torchvision's has no bias and a batch norm before the ReLU."""
    layers[f"{name}.conv"] = arch.Conv2dSpec(c_in, c_out, kernel, stride, kernel // 2, bias=paper)
    if not paper:
        layers[f"{name}.bn"] = arch.BatchNorm2dSpec(c_out, eps=TORCHVISION_BN_EPS)


def _inception(layers, sources, name: str, c_in: int, widths: tuple[int, ...], *, paper: bool, fed_by: str) -> int:
    """Figure 2 (b): four branches off the module's input, joined along the channels. torchvision's third branch
    has a 3x3 convolution where the paper's has a 5x5 (torchvision issue 906, kept for its weights)."""
    one, reduce3, three, reduce5, five, proj = widths
    _conv(layers, f"{name}.branch1", c_in, one, 1, paper=paper)
    _conv(layers, f"{name}.branch2.0", c_in, reduce3, 1, paper=paper)
    _conv(layers, f"{name}.branch2.1", reduce3, three, 3, paper=paper)
    _conv(layers, f"{name}.branch3.0", c_in, reduce5, 1, paper=paper)
    _conv(layers, f"{name}.branch3.1", reduce5, five, 5 if paper else 3, paper=paper)
    layers[f"{name}.branch4.0"] = arch.MaxPool2dSpec(3, 1, 1, ceil_mode=True)
    _conv(layers, f"{name}.branch4.1", c_in, proj, 1, paper=paper)
    for first in ("branch1.conv", "branch2.0.conv", "branch3.0.conv", "branch4.0"):
        sources[f"{name}.{first}"] = (fed_by,)
    last = "conv" if paper else "bn"
    ends = tuple(f"{name}.{branch}.{last}" for branch in ("branch1", "branch2.1", "branch3.1", "branch4.1"))
    layers[name], sources[name] = arch.ConcatSpec(), ends
    return one + three + five + proj


def _aux(layers, sources, name: str, c_in: int, num_classes: int, *, paper: bool, fed_by: str) -> None:
    """Section 5's auxiliary classifier. torchvision pools adaptively to 4x4 (any side), the paper 5x5/3."""
    conv, fc = AUX_WIDTHS
    layers[f"{name}.avgpool"] = arch.AvgPool2dSpec(5, 3) if paper else arch.AdaptiveAvgPool2dSpec(AUX_SIDE)
    sources[f"{name}.avgpool"] = (fed_by,)
    _conv(layers, f"{name}.conv", c_in, conv, 1, paper=paper)
    layers[f"{name}.flatten"] = arch.FlattenSpec(expected=(conv, AUX_SIDE, AUX_SIDE))
    layers[f"{name}.fc1"] = arch.LinearSpec(conv * AUX_SIDE**2, fc)
    layers[f"{name}.fc2"] = arch.LinearSpec(fc, num_classes)


@arch.cached
def googlenet_architecture(
    form: str = "torchvision", aux_logits: bool = True, num_classes: int = 1000
) -> arch.Architecture:
    """Table 1 as ``form`` builds it ("paper" or "torchvision"), the auxiliary classifiers as heads where
    ``aux_logits``."""
    if form not in FORMS:
        raise ValueError(f"googlenet_architecture: form must be one of {', '.join(map(repr, FORMS))}; got {form!r}")
    paper = form == "paper"
    layers: dict[str, arch.LayerSpec] = {}
    sources: dict[str, tuple[str, ...]] = {}
    _conv(layers, "conv1", 3, STEM[0], 7, 2, paper=paper)
    layers["maxpool1"] = arch.MaxPool2dSpec(3, 2, ceil_mode=True)
    if paper:
        layers["norm1"] = CAFFE_LRN
    _conv(layers, "conv2", STEM[0], STEM[1], 1, paper=paper)
    _conv(layers, "conv3", STEM[1], STEM[2], 3, paper=paper)
    if paper:
        layers["norm2"] = CAFFE_LRN
    layers["maxpool2"] = arch.MaxPool2dSpec(3, 2, ceil_mode=True)
    channels, previous = STEM[2], "maxpool2"
    for module, widths in INCEPTION.items():
        name = f"inception{module}"
        channels = _inception(layers, sources, name, channels, widths, paper=paper, fed_by=previous)
        previous = name
        for head, after in AUX.items():
            if aux_logits and after == module:
                _aux(layers, sources, head, channels, num_classes, paper=paper, fed_by=name)
        if module in POOLS:
            # torchvision's last is 2x2/2 (the same sides here: a 3x3/2 rounding up); the paper's 3x3/2.
            kernel = 2 if module == "4e" and not paper else 3
            previous = POOLS[module]
            layers[previous], sources[previous] = arch.MaxPool2dSpec(kernel, 2, ceil_mode=True), (name,)
    layers["avgpool"] = arch.AvgPool2dSpec(7, 1) if paper else arch.AdaptiveAvgPool2dSpec(output_size=1)
    sources["avgpool"] = (previous,)
    layers["flatten"] = arch.FlattenSpec(expected=(channels, 1, 1))
    layers["fc"] = arch.LinearSpec(channels, num_classes)
    heads = tuple(AUX) if aux_logits else ()
    return arch.Architecture(layers, 3, IMAGENET_SIDE, sources, heads)


class BasicConv2d(nn.Module):
    """A convolution, torchvision's batch norm where the table has one, a ReLU (in place, as torchvision's)."""

    def __init__(self, table: arch.Architecture, prefix: str) -> None:
        super().__init__()
        self.conv = table.build(f"{prefix}.conv")
        self.bn = table.build(f"{prefix}.bn") if f"{prefix}.bn" in table.layers else None

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv(x)
        if self.bn is not None:
            x = self.bn(x)
        return F.relu(x, inplace=True)


class Inception(nn.Module):
    """Figure 2 (b): 1x1; 1x1 reduce then 3x3; 1x1 reduce then 5x5 (3x3 in torchvision's); 3x3 max pool then a 1x1
    projection; joined along the channels in that order."""

    def __init__(self, table: arch.Architecture, prefix: str) -> None:
        super().__init__()
        self.branch1 = BasicConv2d(table, f"{prefix}.branch1")
        self.branch2 = nn.Sequential(
            BasicConv2d(table, f"{prefix}.branch2.0"), BasicConv2d(table, f"{prefix}.branch2.1")
        )
        self.branch3 = nn.Sequential(
            BasicConv2d(table, f"{prefix}.branch3.0"), BasicConv2d(table, f"{prefix}.branch3.1")
        )
        self.branch4 = nn.Sequential(table.build(f"{prefix}.branch4.0"), BasicConv2d(table, f"{prefix}.branch4.1"))

    def forward(self, x: Tensor) -> Tensor:
        branches = [self.branch1(x), self.branch2(x), self.branch3(x), self.branch4(x)]  # each (N, C_i, H, W)
        return torch.cat(branches, 1)  # (N, sum C_i, H, W)


class InceptionAux(nn.Module):
    """Section 5's auxiliary classifier: average pool to 4x4, 1x1 convolution (128), FC 1024 with ReLU, dropout,
    linear."""

    def __init__(self, table: arch.Architecture, prefix: str, dropout: float) -> None:
        super().__init__()
        self.conv = BasicConv2d(table, f"{prefix}.conv")
        self.fc1 = table.build(f"{prefix}.fc1")
        self.fc2 = table.build(f"{prefix}.fc2")
        self.dropout = nn.Dropout(p=dropout)
        self.avgpool = table.build(f"{prefix}.avgpool")

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv(self.avgpool(x))  # (N, 128, 4, 4)
        x = F.relu(self.fc1(torch.flatten(x, 1)), inplace=True)  # (N, 1024)
        return self.fc2(self.dropout(x))  # (N, num_classes)


class _GoogLeNet(ReferenceModel):
    """The network from its table, its modules built in torchvision's order: the stem, the inception modules and
    max pools, the auxiliary classifiers, the average pool, dropout and the FC layer."""

    def __init__(self, table: arch.Architecture, dropout: float, aux_dropout: float, names: tuple[str, str]) -> None:
        for name, p in zip(names, (dropout, aux_dropout), strict=True):
            if not 0.0 <= p <= 1.0:
                raise ValueError(f"{type(self).__name__}: {name} must be a probability in [0, 1]; got {p}")
        super().__init__(table)
        self.aux_logits = bool(table.heads)
        self.conv1 = BasicConv2d(table, "conv1")
        self.maxpool1 = table.build("maxpool1")
        self.norm1 = table.build("norm1") if "norm1" in table.layers else None
        self.conv2 = BasicConv2d(table, "conv2")
        self.conv3 = BasicConv2d(table, "conv3")
        self.norm2 = table.build("norm2") if "norm2" in table.layers else None
        self.maxpool2 = table.build("maxpool2")
        for module in INCEPTION:
            self.add_module(f"inception{module}", Inception(table, f"inception{module}"))
            if module in POOLS:
                self.add_module(POOLS[module], table.build(POOLS[module]))
        heads = {head: InceptionAux(table, head, aux_dropout) if head in table.heads else None for head in AUX}
        self.aux1, self.aux2 = heads["aux1"], heads["aux2"]
        self.avgpool = table.build("avgpool")
        self.dropout = nn.Dropout(p=dropout)
        self.fc = table.build("fc")

    def _transform(self, x: Tensor) -> Tensor:
        return x

    def _forward_impl(self, x: Tensor) -> Tensor | GoogLeNetOutputs:
        x = self.maxpool1(self.conv1(self._transform(x)))  # (N, 64, H / 4, W / 4): 56 x 56 at 224
        if self.norm1 is not None:
            x = self.norm1(x)
        x = self.conv3(self.conv2(x))  # (N, 192, H / 4, W / 4)
        if self.norm2 is not None:
            x = self.norm2(x)
        x = self.maxpool2(x)  # (N, 192, H / 8, W / 8): 28 x 28
        aux = {}
        for module in INCEPTION:
            x = self.get_submodule(f"inception{module}")(x)  # 3a..3b 28 x 28, 4a..4e 14 x 14, 5a..5b 7 x 7
            for head, after in AUX.items():
                if after == module and self.training and getattr(self, head) is not None:
                    aux[head] = getattr(self, head)(x)  # (N, num_classes)
            if module in POOLS:
                x = self.get_submodule(POOLS[module])(x)
        x = torch.flatten(self.avgpool(x), 1)  # (N, 1024)
        x = self.fc(self.dropout(x))  # (N, num_classes)
        if self.training and self.aux_logits:
            return GoogLeNetOutputs(x, aux.get("aux2"), aux.get("aux1"))
        return x

    def drop_aux(self) -> None:
        """The auxiliary classifiers removed (torchvision's builder does so after loading published weights)."""
        self.aux_logits, self.aux1, self.aux2 = False, None, None


class GoogLeNet2014(_GoogLeNet):
    """GoogLeNet (Szegedy et al. 2014) of Table 1 and section 5. Input (N, 3, H, W), H and W where the 7x7 average
    pool (and, with ``aux_logits``, the heads' 5x5/3 pools) meet maps of their size (224 in the paper); output
    (N, num_classes) logits, in train mode with ``aux_logits`` a :data:`GoogLeNetOutputs`. Initialised as
    ``bvlc_googlenet``."""

    def __init__(self, num_classes: int = 1000, aux_logits: bool = True, dropout: float = 0.4,
                 aux_dropout: float = 0.7) -> None:  # fmt: skip
        table = googlenet_architecture("paper", bool(aux_logits), num_classes)
        device = default_device()
        with torch.device("meta"):  # every value is drawn below
            super().__init__(table, dropout, aux_dropout, ("dropout", "aux_dropout"))
        if device.type != "meta":
            self.to_empty(device=device)
            _init_caffe_xavier(self)


@torch.no_grad()
def _init_caffe_xavier(model: _GoogLeNet) -> None:
    """bvlc_googlenet's fillers: Caffe's "xavier" (U(-sqrt(3 / fan_in), sqrt(3 / fan_in))) for every weight; biases
    the constant 0.2, the classifiers' (``fc``, each head's ``fc2``) 0."""
    for name, module in model.named_modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            bound = (3.0 / (module.weight[0].numel())) ** 0.5
            nn.init.uniform_(module.weight, -bound, bound)
            nn.init.constant_(module.bias, 0.0 if name.rsplit(".", 1)[-1] in ("fc", "fc2") else 0.2)


class GoogLeNet(_GoogLeNet):
    """torchvision's GoogLeNet, hand-written. ``transform_input`` maps ImageNet-normalised input to the (x - 0.5) /
    0.5 scaling its published weights were trained on; ``init_weights`` (None: True) torchvision's
    ``trunc_normal_(std=0.01, a=-2, b=2)`` for convolutions and FC weights (the FC biases keep torch's default) and
    batch norms at 1 and 0. Input (N, 3, H, W), H and W from 15; output (N, num_classes) logits, in train mode with
    ``aux_logits`` a :data:`GoogLeNetOutputs`."""

    def __init__(self, num_classes: int = 1000, aux_logits: bool = True, transform_input: bool = False,
                 init_weights: bool | None = None, dropout: float = 0.2, dropout_aux: float = 0.7) -> None:  # fmt: skip
        table = googlenet_architecture("torchvision", bool(aux_logits), num_classes)
        super().__init__(table, dropout, dropout_aux, ("dropout", "dropout_aux"))
        self.transform_input = transform_input
        if init_weights is not False and default_device().type != "meta":  # None is True; meta: no values to draw
            self._init_torchvision()

    @torch.no_grad()
    def _init_torchvision(self) -> None:
        for module in self.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                nn.init.trunc_normal_(module.weight, mean=0.0, std=0.01, a=-2, b=2)
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.constant_(module.weight, 1)
                nn.init.constant_(module.bias, 0)

    def _transform(self, x: Tensor) -> Tensor:
        if not self.transform_input:
            return x
        channels = [torch.unsqueeze(x[:, c], 1) * (std / 0.5) + (mean - 0.5) / 0.5
                    for c, (mean, std) in enumerate(zip(IMAGENET_MEAN, IMAGENET_STD, strict=True))]  # fmt: skip
        return torch.cat(channels, 1)  # (N, 3, H, W), torchvision's operations in its order


def _overwrite(kwargs: dict[str, Any], option: str, value: object) -> None:
    """torchvision's _ovewrite_named_param: the weights' own value; another one asked for is an error."""
    if kwargs.setdefault(option, value) != value:
        raise ValueError(f"The parameter '{option}' expected value {value} but got {kwargs[option]} instead.")


@register_model()
def googlenet(*, weights: Weights = None, progress: bool = True, **kwargs: Any) -> GoogLeNet:
    """torchvision's ``googlenet``. ``weights``: torchvision's enum member (fetched through torchvision's own
    download-and-cache path), a state dict with its key names (this model's), or None. With the enum, torchvision's
    rules: ``transform_input`` True unless given, the auxiliary classifiers loaded (``aux_logits=False`` is an error)
    and then dropped unless ``aux_logits=True`` was asked for. A state dict loads as it is, into the model the options
    describe: one without the heads' keys into a model without them."""
    if weights is None:
        return GoogLeNet(**kwargs)
    enum = hasattr(weights, "get_state_dict")
    heads = enum or (isinstance(weights, Mapping) and any(key.startswith("aux1.") for key in weights))
    asked = kwargs.get("aux_logits", False if enum else heads)
    if asked and not heads:
        raise ValueError("googlenet: aux_logits=True, but the weights hold no auxiliary classifiers")
    if enum:
        kwargs.setdefault("transform_input", True)
        _overwrite(kwargs, "init_weights", False)
        _overwrite(kwargs, "aux_logits", True)
    else:
        kwargs["aux_logits"] = heads
    table = googlenet_architecture("torchvision", heads, kwargs.get("num_classes", 1000))
    names = {layer: layer for layer in table.trainable_params()}
    model = load_weights(GoogLeNet, weights, progress, kwargs, torchvision_names=names, name="googlenet")
    if heads and not asked:
        model.drop_aux()
    return model


@register_model()
def googlenet2014(*, weights: Weights = None, progress: bool = True, **kwargs: Any) -> GoogLeNet2014:
    """The paper's network: ``GoogLeNet2014(**kwargs)``; ``weights`` None or a state dict of its own."""
    return load_weights(GoogLeNet2014, weights, progress, kwargs)
