"""The initialisations the papers and the library state, per parameter of a built model: what
tests/test_init.py checks drawn weights against. Derived from the stated numbers and the layer table (and, for
LeNet-5's C3, the paper's printed connection table), never from the models' own init code."""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from reference.models import tables
from reference.verify.compare import layer_modules

__all__ = [
    "GAUSSIAN_HEAD",
    "Constant",
    "Init",
    "InitMap",
    "Normal",
    "Uniform",
    "bvlc_googlenet",
    "glorot_2010",
    "he_2015",
    "krizhevsky_2012",
    "lecun_1998",
    "simonyan_2014",
    "sparse_lecun_1998",
    "torch_default",
    "torchvision_googlenet",
    "torchvision_resnet",
    "torchvision_vgg",
]


@dataclass(frozen=True)
class Uniform:
    """U(-bound, bound); ``bound`` broadcasts against the parameter where it differs per element."""

    bound: Tensor | float


@dataclass(frozen=True)
class Normal:
    std: float
    mean: float = 0.0


@dataclass(frozen=True)
class Constant:
    value: float


Init = Uniform | Normal | Constant
InitMap = Callable[[nn.Module], Mapping[str, Init]]  # a built module -> {parameter name: its stated distribution}


def _fan_in(spec: tables.LayerSpec) -> int | None:
    if isinstance(spec, tables.Conv2dSpec):
        return spec.in_channels // spec.groups * spec.kernel_size**2
    if isinstance(spec, tables.LinearSpec):
        return spec.in_features
    if isinstance(spec, tables.SubsamplingSpec):
        return spec.kernel_size**2  # one coefficient over the block: the unit sees k x k inputs
    return None


def sparse_lecun_1998(c3_maps: Sequence[Sequence[int]], kernel_size: int, prefix: str = "") -> dict[str, Init]:
    """The sparse C3 under appendix A: F is each output map's own, its input maps in ``c3_maps`` (the printed
    table) times k x k; ``weight`` holds one kernel per connection, output maps in order."""
    fan_ins = torch.tensor([len(maps) * kernel_size**2 for maps in c3_maps], dtype=torch.float64)
    kernels = torch.tensor([len(maps) for maps in c3_maps])
    return {
        f"{prefix}weight": Uniform(torch.repeat_interleave(2.4 / fan_ins, kernels)[:, None, None]),
        f"{prefix}bias": Uniform(2.4 / fan_ins),
    }


GAUSSIAN_HEAD = {"centres": Normal(1.0), "widths": Constant(1.0)}  # the seed notebook's randn and ones


def lecun_1998(model: nn.Module, architecture: tables.Architecture, c3_maps: Sequence[Sequence[int]] = ()) -> dict:
    """Appendix A: every weight and bias uniform in (-2.4 / F, 2.4 / F), F the fan-in of the unit it feeds. The
    seed notebook keeps this and adds its Gaussian head."""
    out: dict[str, Init] = {}
    for layer, spec in architecture:
        for module in layer_modules(model, layer):
            if isinstance(spec, tables.SparseConv2dSpec):
                out |= sparse_lecun_1998(c3_maps, spec.kernel_size, prefix=f"{module}.")
            elif isinstance(spec, tables.RBFSpec) and spec.trainable:
                out |= {f"{module}.{name}": init for name, init in GAUSSIAN_HEAD.items()}
            elif (fan_in := _fan_in(spec)) is not None:
                out[f"{module}.weight"] = out[f"{module}.bias"] = Uniform(2.4 / fan_in)
    return out


def krizhevsky_2012(model: nn.Module, architecture: tables.Architecture, bias_one: Collection[str]) -> dict:
    """Section 5: weights N(0, 0.01); biases the constant 1 in ``bias_one`` (as quoted), 0 elsewhere; in the
    two-tower form, each tower's half alike."""
    out: dict[str, Init] = {}
    for layer, spec in architecture:
        if _fan_in(spec) is None:
            continue
        for module in layer_modules(model, layer):
            out[f"{module}.weight"] = Normal(0.01)
            out[f"{module}.bias"] = Constant(1.0 if layer in bias_one else 0.0)
    return out


def torch_default(model: nn.Module, architecture: tables.Architecture) -> dict:
    """torch's Conv2d and Linear defaults, which torchvision's AlexNet keeps: kaiming_uniform with a = sqrt(5) for
    the weight, i.e. U(-1/sqrt(F), 1/sqrt(F)), and the same bound for the bias (F the fan-in)."""
    out: dict[str, Init] = {}
    for layer, spec in architecture:
        if (fan_in := _fan_in(spec)) is None:
            continue
        for module in layer_modules(model, layer):
            out[f"{module}.weight"] = out[f"{module}.bias"] = Uniform(1.0 / math.sqrt(fan_in))
    return out


def simonyan_2014(model: nn.Module, architecture: tables.Architecture, std: float) -> dict:
    """Section 3.1: weights "from a normal distribution with the zero mean and 10^-2 variance" (``std``, as
    quoted: the square root of the variance), biases zero."""
    out: dict[str, Init] = {}
    for layer, spec in architecture:
        if _fan_in(spec) is not None:
            out[f"{layer}.weight"], out[f"{layer}.bias"] = Normal(std), Constant(0.0)
    return out


def torchvision_vgg(model: nn.Module, architecture: tables.Architecture) -> dict:
    """torchvision's VGG: convolutions kaiming_normal (fan_out, ReLU gain): N(0, 2 / (out channels x k x k));
    linear layers N(0, 0.01); batch norms scale 1, shift 0; every bias 0."""
    out: dict[str, Init] = {}
    for layer, spec in architecture:
        if isinstance(spec, tables.Conv2dSpec):
            out[f"{layer}.weight"] = Normal(math.sqrt(2.0 / (spec.out_channels * spec.kernel_size**2)))
        elif isinstance(spec, tables.LinearSpec):
            out[f"{layer}.weight"] = Normal(0.01)
        elif isinstance(spec, tables.BatchNorm2dSpec):
            out[f"{layer}.weight"] = Constant(1.0)
        else:
            continue
        out[f"{layer}.bias"] = Constant(0.0)
    return out


def glorot_2010(model: nn.Module, architecture: tables.Architecture) -> dict:
    """Glorot & Bengio's normalised initialisation, which Simonyan & Zisserman name as the alternative: weights
    U(-b, b), b = sqrt(6 / (fan_in + fan_out)), biases zero. An FC layer written as a convolution (VGG's dense form:
    fc6 7x7, fc7 and fc8 1x1) keeps its matrix's fans, (out, in)."""
    out: dict[str, Init] = {}
    for layer, spec in architecture:
        if (fan_in := _fan_in(spec)) is None:
            continue
        if isinstance(spec, tables.LinearSpec):
            fan_out = spec.out_features
        else:
            fan_out = spec.out_channels * (1 if layer.startswith("fc") else spec.kernel_size**2)
        out[f"{layer}.weight"], out[f"{layer}.bias"] = Uniform(math.sqrt(6.0 / (fan_in + fan_out))), Constant(0.0)
    return out


def _residual_ends(architecture: tables.Architecture) -> set[str]:
    """The batch norm that ends each block's main path: the first input of the block's addition."""
    return {sources[0] for layer, sources in architecture.sources.items()
            if isinstance(architecture.layers[layer], tables.AddSpec)}  # fmt: skip


def torchvision_resnet(model: nn.Module, architecture: tables.Architecture, zero_residual: bool = False) -> dict:
    """torchvision's ResNet: convolutions kaiming_normal (fan_out, ReLU gain): N(0, 2 / (out channels x k x k)),
    whatever their groups; batch norms scale 1 (0 for each block's last with ``zero_init_residual``: Goyal et al.
    2017), shift 0; the FC layer torch's default, U(-1/sqrt(F), 1/sqrt(F)) for weight and bias."""
    out: dict[str, Init] = {}
    ends = _residual_ends(architecture) if zero_residual else set()
    for layer, spec in architecture:
        if isinstance(spec, tables.Conv2dSpec):
            out[f"{layer}.weight"] = Normal(math.sqrt(2.0 / (spec.out_channels * spec.kernel_size**2)))
        elif isinstance(spec, tables.BatchNorm2dSpec):
            out[f"{layer}.weight"], out[f"{layer}.bias"] = Constant(0.0 if layer in ends else 1.0), Constant(0.0)
        elif isinstance(spec, tables.LinearSpec):
            out[f"{layer}.weight"] = out[f"{layer}.bias"] = Uniform(1.0 / math.sqrt(spec.in_features))
    return out


def he_2015(model: nn.Module, architecture: tables.Architecture) -> dict:
    """He et al. 2016 ("we initialize the weights as in [13]"): He et al. 2015's forward case, N(0, 2 / F), F the
    fan-in, for every convolution and FC weight; biases 0; batch norm's scale 1 and shift 0."""
    out: dict[str, Init] = {}
    for layer, spec in architecture:
        if (fan_in := _fan_in(spec)) is not None:
            out[f"{layer}.weight"] = Normal(math.sqrt(2.0 / fan_in))
            if getattr(spec, "bias", True):
                out[f"{layer}.bias"] = Constant(0.0)
        elif isinstance(spec, tables.BatchNorm2dSpec):
            out[f"{layer}.weight"], out[f"{layer}.bias"] = Constant(1.0), Constant(0.0)
    return out


def torchvision_googlenet(model: nn.Module, architecture: tables.Architecture) -> dict:
    """torchvision's GoogLeNet: every convolution and FC weight ``trunc_normal_(std=0.01, a=-2, b=2)``, bounds of 200
    standard deviations, so N(0, 0.01) up to a tail of mass below 1e-8000; batch norms scale 1, shift 0; the FC
    biases torch's default, U(-1/sqrt(F), 1/sqrt(F))."""
    out: dict[str, Init] = {}
    for layer, spec in architecture:
        if isinstance(spec, (tables.Conv2dSpec, tables.LinearSpec)):
            out[f"{layer}.weight"] = Normal(0.01)
            if isinstance(spec, tables.LinearSpec):
                out[f"{layer}.bias"] = Uniform(1.0 / math.sqrt(spec.in_features))
        elif isinstance(spec, tables.BatchNorm2dSpec):
            out[f"{layer}.weight"], out[f"{layer}.bias"] = Constant(1.0), Constant(0.0)
    return out


def bvlc_googlenet(model: nn.Module, architecture: tables.Architecture, classifiers: Collection[str]) -> dict:
    """The BVLC Caffe replication's fillers (the paper states none): Caffe's "xavier", U(-sqrt(3 / F), sqrt(3 / F)),
    F the fan-in, for every weight; biases the constant 0.2, those of the ``classifiers`` 0."""
    out: dict[str, Init] = {}
    for layer, spec in architecture:
        if (fan_in := _fan_in(spec)) is not None:
            out[f"{layer}.weight"] = Uniform(math.sqrt(3.0 / fan_in))
            out[f"{layer}.bias"] = Constant(0.0 if layer in classifiers else 0.2)
    return out
