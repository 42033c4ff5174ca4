"""LeNet-5: Y. LeCun, L. Bottou, Y. Bengio, P. Haffner, "Gradient-based learning applied to document
recognition", Proc. IEEE 86(11), 1998, section II.B and appendix A.

Faithful to the paper: C3's sparse connection table (table I), trainable subsampling, the squashing
function 1.7159 tanh(2a/3) after every layer up to F6, fixed +-1 RBF prototypes drawn from 7x12
digit bitmaps, and the initialisation of appendix A (uniform in +-2.4 / fan-in, per unit).

Where it departs: the prototypes' pixels are drawn here (:mod:`reference.models.bitmaps`), the paper does not
publish them as data; the loss (the paper's MAP criterion) is not part of the model.

Constructor options express the seed notebook's simplified variant:
``LeNet5(c3="dense", head="gaussian", activation="tanh")`` — dense C3 (2,416 parameters), a Gaussian
RBF head with trainable centres and widths, plain tanh. Its subsampling (mean x scale + bias) is this
one's (sum x coefficient + bias) with the coefficient scaled by 4; both start at the mean.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from torch import Tensor, nn

from reference.models import tables as arch
from reference.models._api import register_model
from reference.models.base import ReferenceModel
from reference.models.layers import SparseConv2d, Squash, Subsampling
from reference.models.weights import Weights, load_weights

__all__ = ["C3_TABLE", "LeNet5", "lenet5", "lenet5_architecture", "lenet5_seed"]

# Table I of the paper: for each C3 map, the S2 maps it is connected to.
C3_TABLE: tuple[tuple[int, ...], ...] = (
    (0, 1, 2), (1, 2, 3), (2, 3, 4), (3, 4, 5), (0, 4, 5), (0, 1, 5),
    (0, 1, 2, 3), (1, 2, 3, 4), (2, 3, 4, 5), (0, 3, 4, 5), (0, 1, 4, 5), (0, 1, 2, 5),
    (0, 1, 3, 4), (1, 2, 4, 5), (0, 2, 3, 5),
    (0, 1, 2, 3, 4, 5),
)  # fmt: skip

C3 = Literal["sparse", "dense"]
Head = Literal["euclidean", "gaussian"]
Activation = Literal["squash", "tanh"]


@arch.cached
def lenet5_architecture(c3: C3 = "sparse", head: Head = "euclidean") -> arch.Architecture:
    if c3 not in ("sparse", "dense") or head not in ("euclidean", "gaussian"):
        raise ValueError(
            f"LeNet5: c3 must be 'sparse' or 'dense' and head 'euclidean' or 'gaussian', got {c3!r}, {head!r}"
        )
    c3_layer = (
        arch.SparseConv2dSpec(in_channels=6, table=C3_TABLE, kernel_size=5)
        if c3 == "sparse"
        else arch.Conv2dSpec(in_channels=6, out_channels=16, kernel_size=5)
    )
    layers = {
        "c1": arch.Conv2dSpec(in_channels=1, out_channels=6, kernel_size=5),
        "s2": arch.SubsamplingSpec(channels=6),
        "c3": c3_layer,
        "s4": arch.SubsamplingSpec(channels=16),
        "c5": arch.Conv2dSpec(in_channels=16, out_channels=120, kernel_size=5),
        "flatten": arch.FlattenSpec(expected=(120, 1, 1)),
        "f6": arch.LinearSpec(in_features=120, out_features=84),
        "output": arch.RBFSpec(in_features=84, out_features=10, trainable=head == "gaussian"),
    }
    return arch.Architecture(layers=layers, in_channels=1, default_side=32)


class LeNet5(ReferenceModel):
    """LeNet-5 (LeCun et al. 1998). Input (N, 1, 32..35, 32..35); output (N, 10) RBF penalties."""

    def __init__(self, c3: C3 = "sparse", head: Head = "euclidean", activation: Activation = "squash") -> None:
        if activation not in ("squash", "tanh"):
            raise ValueError(f"LeNet5: activation must be 'squash' or 'tanh', got {activation!r}")
        super().__init__(lenet5_architecture(c3, head))
        layers = self.architecture.layers
        self.c1 = layers["c1"].build()
        self.s2 = layers["s2"].build()
        self.c3 = layers["c3"].build()
        self.s4 = layers["s4"].build()
        self.c5 = layers["c5"].build()
        self.flatten = layers["flatten"].build()
        self.f6 = layers["f6"].build()
        self.output = layers["output"].build()
        self.squash = Squash() if activation == "squash" else nn.Tanh()
        self._init_paper()

    def _forward_impl(self, x: Tensor) -> Tensor:
        x = self.squash(self.c1(x))  # (N, 6, 28, 28)
        x = self.squash(self.s2(x))  # (N, 6, 14, 14)
        x = self.squash(self.c3(x))  # (N, 16, 10, 10)
        x = self.squash(self.s4(x))  # (N, 16, 5, 5)
        x = self.squash(self.c5(x))  # (N, 120, 1, 1)
        x = self.squash(self.f6(self.flatten(x)))  # (N, 84)
        return self.output(x)  # (N, 10)

    @torch.no_grad()
    def _init_paper(self) -> None:
        """Appendix A: every weight and bias uniform in (-2.4 / F, 2.4 / F), F the unit's fan-in."""
        for layer in (self.c1, self.s2, self.c3, self.s4, self.c5, self.f6):
            for tensor, fan_in in _fan_ins(layer):
                tensor.uniform_(-1.0, 1.0).mul_(2.4 / fan_in)


def _fan_ins(layer: nn.Module) -> list[tuple[Tensor, Tensor | int]]:
    """Each parameter of ``layer`` with the fan-in of the unit it feeds (broadcastable)."""
    if isinstance(layer, SparseConv2d):
        per_map = layer.fan_ins()
        return [(layer.weight, per_map[layer.out_index][:, None, None]), (layer.bias, per_map)]
    if isinstance(layer, Subsampling):
        return [(layer.weight, layer.kernel_size**2), (layer.bias, layer.kernel_size**2)]
    fan_in = layer.weight[0].numel()
    return [(layer.weight, fan_in), (layer.bias, fan_in)]


@register_model()
def lenet5(*, weights: Weights = None, progress: bool = True, **kwargs: Any) -> LeNet5:
    """torchvision's builder signature. The paper publishes no weights: ``weights`` is None or a state dict."""
    return load_weights(LeNet5, weights, progress, kwargs)


@register_model()
def lenet5_seed(*, weights: Weights = None, progress: bool = True, **kwargs: Any) -> LeNet5:
    """The seed notebook's LeNet-5: ``LeNet5(c3="dense", head="gaussian", activation="tanh")``."""
    kwargs = {"c3": "dense", "head": "gaussian", "activation": "tanh"} | kwargs
    return load_weights(LeNet5, weights, progress, kwargs, name="lenet5_seed")
