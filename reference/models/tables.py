"""Architectures as data: the layer tables every model, case, count and shape check reads.

Each entry of a table describes one named module of a model by its numbers alone. From a table
this module derives, without running a network:

* the output shape of every named layer for an input of side H x W (:meth:`Architecture.shapes`),
* the input sides the network accepts (:attr:`Architecture.valid_sides`),
* trainable parameters, connections (LeCun et al.'s count), multiply-accumulates and neurons.

Height and width pass through the layers independently, so validity is a property of each side.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import inspect
import math
from collections.abc import Callable, Iterator, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from functools import cached_property
from typing import Any, TypeVar

import torch
from torch import nn

from reference.models import bitmaps
from reference.models import layers as ref
from reference.models.checks import SideRange

__all__ = [
    "KRIZHEVSKY_LRN",
    "AdaptiveAvgPool2dSpec",
    "Architecture",
    "BatchNorm2dSpec",
    "Conv2dSpec",
    "FlattenSpec",
    "InvalidInputSize",
    "LinearSpec",
    "LocalResponseNormSpec",
    "MaxPool2dSpec",
    "RBFSpec",
    "Shape",
    "SparseConv2dSpec",
    "SubsamplingSpec",
    "cached",
    "narrowed",
]

Shape = tuple[int, ...]

# Sides are scanned up to this bound to derive the valid range. Every layer here maps a larger side
# to a larger-or-equal side, so a side that is valid at the bound stays valid above it: the range is
# then open-ended (the suite runs the real layers at a side beyond the bound).
SCAN_LIMIT = 1024


Table = TypeVar("Table", bound=Callable[..., "Architecture"])


_DIVISOR: ContextVar[int] = ContextVar("divisor", default=1)
_DERIVING: ContextVar[bool] = ContextVar("deriving", default=False)


def cached(function: Table) -> Table:
    """One immutable table per configuration, however its options are passed (positionally, by keyword, or left at
    their defaults): its valid sides are derived once. Under :func:`narrowed`, the table narrowed (a table derived
    from another is derived from the full one, then narrowed once)."""
    signature = inspect.signature(function)
    cache = functools.cache(function)

    @functools.wraps(function)
    def table(*args: Any, **kwargs: Any) -> Architecture:
        bound = signature.bind(*args, **kwargs)
        bound.apply_defaults()
        if _DERIVING.get():
            return cache(**bound.arguments)
        token = _DERIVING.set(True)
        try:
            full = cache(**bound.arguments)
        finally:
            _DERIVING.reset(token)
        divisor = _DIVISOR.get()
        return full if divisor == 1 else full.narrowed(divisor)

    return table


@contextlib.contextmanager
def narrowed(divisor: int) -> Iterator[None]:
    """Inside, every table (and so every model built from one) has its hidden widths divided by ``divisor``: the
    same layers, kinds, init code and names, at a fraction of the cost. The cheap form of the checks that do not
    depend on the widths (an init per layer, whether each operation acts, a pair of this project's own forms)."""
    token = _DIVISOR.set(divisor)
    try:
        yield
    finally:
        _DIVISOR.reset(token)


class InvalidInputSize(ValueError):
    """A layer cannot accept the shape that reaches it."""


def _window_side(side: int, kernel_size: int, stride: int, padding: int) -> int:
    return (side + 2 * padding - kernel_size) // stride + 1


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise InvalidInputSize(message)


@dataclass(frozen=True)
class Conv2dSpec:
    in_channels: int
    out_channels: int
    kernel_size: int
    stride: int = 1
    padding: int = 0
    groups: int = 1

    def build(self) -> nn.Conv2d:
        return nn.Conv2d(
            in_channels=self.in_channels,
            out_channels=self.out_channels,
            kernel_size=self.kernel_size,
            stride=self.stride,
            padding=self.padding,
            groups=self.groups,
        )

    def output_shape(self, shape: Shape) -> Shape:
        c, h, w = shape
        _require(c == self.in_channels, f"expects {self.in_channels} channels, got {c}")
        oh, ow = (_window_side(s, self.kernel_size, self.stride, self.padding) for s in (h, w))
        _require(oh >= 1 and ow >= 1, f"input {h}x{w} is smaller than its {self.kernel_size}x{self.kernel_size} kernel")
        return (self.out_channels, oh, ow)

    @property
    def fan_in(self) -> int:
        return self.in_channels // self.groups * self.kernel_size**2

    @property
    def trainable_params(self) -> int:
        return self.out_channels * (self.fan_in + 1)

    def connections(self, out: Shape) -> int:
        return math.prod(out[1:]) * self.trainable_params

    def macs(self, out: Shape) -> int:
        return math.prod(out) * self.fan_in


@dataclass(frozen=True)
class SparseConv2dSpec:
    """A convolution whose output map ``i`` sees only the input maps ``table[i]`` (LeNet-5's C3)."""

    in_channels: int
    table: tuple[tuple[int, ...], ...]
    kernel_size: int

    @property
    def out_channels(self) -> int:
        return len(self.table)

    def build(self) -> ref.SparseConv2d:
        return ref.SparseConv2d(in_channels=self.in_channels, table=self.table, kernel_size=self.kernel_size)

    def output_shape(self, shape: Shape) -> Shape:
        return Conv2dSpec(self.in_channels, self.out_channels, self.kernel_size).output_shape(shape)

    @property
    def trainable_params(self) -> int:
        return sum(len(maps) * self.kernel_size**2 + 1 for maps in self.table)

    def connections(self, out: Shape) -> int:
        return math.prod(out[1:]) * self.trainable_params

    def macs(self, out: Shape) -> int:
        return math.prod(out[1:]) * sum(len(maps) for maps in self.table) * self.kernel_size**2


@dataclass(frozen=True)
class SubsamplingSpec:
    """LeNet-5's S layers: sum of each 2x2 block, times a trainable coefficient, plus a bias, per map."""

    channels: int
    kernel_size: int = 2

    def build(self) -> ref.Subsampling:
        return ref.Subsampling(channels=self.channels, kernel_size=self.kernel_size)

    def output_shape(self, shape: Shape) -> Shape:
        c, h, w = shape
        _require(c == self.channels, f"expects {self.channels} channels, got {c}")
        oh, ow = h // self.kernel_size, w // self.kernel_size
        _require(oh >= 1 and ow >= 1, f"input {h}x{w} is smaller than its {self.kernel_size}x{self.kernel_size} window")
        return (c, oh, ow)

    @property
    def trainable_params(self) -> int:
        return 2 * self.channels

    def connections(self, out: Shape) -> int:
        return math.prod(out) * (self.kernel_size**2 + 1)

    def macs(self, out: Shape) -> int:
        return math.prod(out)


@dataclass(frozen=True)
class MaxPool2dSpec:
    kernel_size: int
    stride: int

    def build(self) -> nn.MaxPool2d:
        return nn.MaxPool2d(kernel_size=self.kernel_size, stride=self.stride)

    def output_shape(self, shape: Shape) -> Shape:
        c, h, w = shape
        oh, ow = (_window_side(s, self.kernel_size, self.stride, 0) for s in (h, w))
        _require(oh >= 1 and ow >= 1, f"input {h}x{w} is smaller than its {self.kernel_size}x{self.kernel_size} window")
        return (c, oh, ow)


@dataclass(frozen=True)
class AdaptiveAvgPool2dSpec:
    output_size: int

    def build(self) -> ref.AdaptiveAvgPool2d:
        return ref.AdaptiveAvgPool2d(output_size=self.output_size)

    def output_shape(self, shape: Shape) -> Shape:
        return (shape[0], self.output_size, self.output_size)


@dataclass(frozen=True)
class LocalResponseNormSpec:
    size: int
    alpha: float
    beta: float
    k: float
    groups: int = 1

    def build(self) -> ref.LocalResponseNorm:
        return ref.LocalResponseNorm(size=self.size, alpha=self.alpha, beta=self.beta, k=self.k, groups=self.groups)

    def output_shape(self, shape: Shape) -> Shape:
        return shape


# Krizhevsky et al. 2012, section 3.3: "k = 2, n = 5, alpha = 10^-4, and beta = 0.75", alpha in the paper's convention
# (not divided by the window size). AlexNet's LRN, and VGG's A-LRN ("the LRN layer parameters are those of
# (Krizhevsky et al., 2012)").
KRIZHEVSKY_LRN = LocalResponseNormSpec(size=5, alpha=1e-4, beta=0.75, k=2.0)


@dataclass(frozen=True)
class BatchNorm2dSpec:
    """Batch normalisation of each channel (Ioffe & Szegedy 2015): a trainable scale and shift per channel, and
    running statistics as buffers."""

    channels: int

    def build(self) -> nn.BatchNorm2d:
        return nn.BatchNorm2d(num_features=self.channels)

    def output_shape(self, shape: Shape) -> Shape:
        _require(shape[0] == self.channels, f"expects {self.channels} channels, got {shape[0]}")
        return shape

    @property
    def trainable_params(self) -> int:
        return 2 * self.channels

    def connections(self, out: Shape) -> int:
        return 2 * math.prod(out)  # a scale and a shift per output


@dataclass(frozen=True)
class FlattenSpec:
    """Flattens (C, H, W); the written-out shape is the only one the next layer is defined for."""

    expected: Shape

    def build(self) -> nn.Flatten:
        return nn.Flatten()

    def output_shape(self, shape: Shape) -> Shape:
        _require(
            shape == self.expected, f"expects {'x'.join(map(str, self.expected))}, got {'x'.join(map(str, shape))}"
        )
        return (math.prod(shape),)


@dataclass(frozen=True)
class LinearSpec:
    in_features: int
    out_features: int

    def build(self) -> nn.Linear:
        return nn.Linear(in_features=self.in_features, out_features=self.out_features)

    def output_shape(self, shape: Shape) -> Shape:
        _require(shape == (self.in_features,), f"expects {self.in_features} features, got {shape}")
        return (self.out_features,)

    @property
    def trainable_params(self) -> int:
        return self.out_features * (self.in_features + 1)

    def connections(self, out: Shape) -> int:
        return self.trainable_params

    def macs(self, out: Shape) -> int:
        return self.in_features * self.out_features


@dataclass(frozen=True)
class RBFSpec:
    """Radial-basis output layer; ``trainable`` parameters are the centres and one width per class."""

    in_features: int
    out_features: int
    trainable: bool = False

    def build(self) -> ref.EuclideanRBF | ref.GaussianRBF:
        if self.trainable:
            return ref.GaussianRBF(in_features=self.in_features, out_features=self.out_features)
        prototypes = bitmaps.prototypes()
        if prototypes.shape != (self.out_features, self.in_features):
            raise ValueError(
                f"fixed prototypes are {tuple(prototypes.shape)}, not {self.out_features}x{self.in_features}"
            )
        return ref.EuclideanRBF(prototypes)

    def output_shape(self, shape: Shape) -> Shape:
        return LinearSpec(self.in_features, self.out_features).output_shape(shape)

    @property
    def trainable_params(self) -> int:
        return self.out_features * (self.in_features + 1) if self.trainable else 0

    def connections(self, out: Shape) -> int:
        return self.in_features * self.out_features

    def macs(self, out: Shape) -> int:
        return self.in_features * self.out_features


LayerSpec = (
    Conv2dSpec
    | SparseConv2dSpec
    | SubsamplingSpec
    | MaxPool2dSpec
    | AdaptiveAvgPool2dSpec
    | LocalResponseNormSpec
    | BatchNorm2dSpec
    | FlattenSpec
    | LinearSpec
    | RBFSpec
)
WEIGHTED = (Conv2dSpec, SparseConv2dSpec, SubsamplingSpec, BatchNorm2dSpec, LinearSpec, RBFSpec)


@dataclass(frozen=True)
class Architecture:
    """A model's named layers in order, its input channels and the input side it was drawn for."""

    layers: Mapping[str, LayerSpec]
    in_channels: int
    default_side: int

    def __iter__(self) -> Iterator[tuple[str, LayerSpec]]:
        return iter(self.layers.items())

    def shapes(self, height: int, width: int) -> dict[str, Shape]:
        """Per-layer output shape (without the batch dimension) for a (C, height, width) input."""
        shape: Shape = (self.in_channels, height, width)
        out = {}
        for name, layer in self:
            try:
                shape = layer.output_shape(shape)
            except InvalidInputSize as error:
                raise InvalidInputSize(f"{name} {error}") from None
            out[name] = shape
        return out

    @property
    def num_classes(self) -> int:
        return self.shapes(self.default_side, self.default_side)[self.output_layer][0]

    @property
    def output_layer(self) -> str:
        return next(reversed(list(self.layers)))

    @cached_property
    def valid_sides(self) -> SideRange:
        # The other side is held at the default while this one is scanned: sides are independent.
        valid = [s for s in range(1, SCAN_LIMIT + 1) if self._accepts(s, self.default_side)]
        if not valid or valid != list(range(valid[0], valid[-1] + 1)):
            raise ValueError(f"the table's valid sides are not one interval: {valid[:5]}...{valid[-5:]}")
        return SideRange(valid[0], None if valid[-1] == SCAN_LIMIT else valid[-1])

    @cached_property
    def export_sides(self) -> SideRange:
        """The valid sides one dynamic-shape export can span: those around the default side where every layer's
        output side is 1 for all of them or for none. torch's symbolic shapes treat a size of 1 apart
        (broadcasting), so a range where some layer's side reaches 1 traces two graphs, for torchvision's
        models as for these."""
        valid = self.valid_sides
        high = valid.high if valid.high is not None else SCAN_LIMIT

        def ones(side: int) -> tuple[bool, ...]:
            return tuple(dim == 1 for shape in self.shapes(side, self.default_side).values() for dim in shape[1:])

        same = ones(self.default_side)
        low = self.default_side
        while low > valid.low and ones(low - 1) == same:
            low -= 1
        top = self.default_side
        while top < high and ones(top + 1) == same:
            top += 1
        return SideRange(low, None if top == SCAN_LIMIT else top)

    def dynamic_shapes(self, *, batch: bool = True, sides: bool = True) -> tuple[dict[int, Any]]:
        """``torch.export``'s ``dynamic_shapes`` for the one input: the batch, and H and W over
        :attr:`export_sides`. Positional, so it fits any module that takes the same input."""
        dims: dict[int, Any] = {}
        if batch:
            dims[0] = torch.export.Dim("batch")
        if sides:
            low, high = self.export_sides.low, self.export_sides.high
            limits = {"min": low} if high is None else {"min": low, "max": high}
            dims[2], dims[3] = torch.export.Dim("height", **limits), torch.export.Dim("width", **limits)
        return (dims,)

    def _accepts(self, height: int, width: int) -> bool:
        try:
            self.shapes(height, width)
        except InvalidInputSize:
            return False
        return True

    def trainable_params(self) -> dict[str, int]:
        return {name: layer.trainable_params for name, layer in self if isinstance(layer, WEIGHTED)}

    def narrowed(self, divisor: int) -> Architecture:
        """Every hidden width divided by ``divisor``: the input's channels and the output layer's width kept,
        everything else in between follows. A width it does not divide, or a layer whose width is fixed by the
        paper (a connection table, prototypes), is a ValueError."""
        key = (id(self), divisor)
        if key not in _NARROWED:  # one narrowed table per table and divisor: its sides derived once
            _NARROWED[key] = (self, _narrow(self, divisor))
        return _NARROWED[key][1]

    def connections(self, side: int | None = None) -> dict[str, int]:
        shapes = self.shapes(side or self.default_side, side or self.default_side)
        return {name: layer.connections(shapes[name]) for name, layer in self if isinstance(layer, WEIGHTED)}

    def macs(self, side: int | None = None) -> dict[str, int]:
        """Multiply-accumulates per image and layer, weights only: no bias, activation or pooling."""
        shapes = self.shapes(side or self.default_side, side or self.default_side)
        return {
            name: layer.macs(shapes[name])
            for name, layer in self
            if isinstance(layer, (Conv2dSpec, SparseConv2dSpec, LinearSpec))
        }

    def neurons(self, side: int | None = None) -> dict[str, int]:
        """Output units of every convolution (sparse ones too) and fully connected layer (Krizhevsky et al.'s count)."""
        shapes = self.shapes(side or self.default_side, side or self.default_side)
        convolutions = (Conv2dSpec, SparseConv2dSpec, LinearSpec)
        return {name: math.prod(shapes[name]) for name, layer in self if isinstance(layer, convolutions)}


_NARROWED: dict[tuple[int, int], tuple[Architecture, Architecture]] = {}  # the table kept alive beside its id


def _narrow(table: Architecture, divisor: int) -> Architecture:
    def hidden(name: str, width: int) -> int:
        if name == table.output_layer:
            return width
        if width % divisor:
            raise ValueError(f"{name}: a width of {width} cannot be divided by {divisor}")
        return width // divisor

    layers: dict[str, LayerSpec] = {}
    channels = table.in_channels
    for name, spec in table:
        if isinstance(spec, Conv2dSpec):
            spec = dataclasses.replace(spec, in_channels=channels, out_channels=hidden(name, spec.out_channels))
            channels = spec.out_channels
        elif isinstance(spec, BatchNorm2dSpec):
            spec = dataclasses.replace(spec, channels=channels)
        elif isinstance(spec, FlattenSpec):
            spec = FlattenSpec(expected=(channels, *spec.expected[1:]))
            channels = math.prod(spec.expected)
        elif isinstance(spec, LinearSpec):
            spec = LinearSpec(in_features=channels, out_features=hidden(name, spec.out_features))
            channels = spec.out_features
        elif isinstance(spec, WEIGHTED):
            raise ValueError(f"{name}: a {type(spec).__name__}'s width is fixed; this table cannot be narrowed")
        layers[name] = spec
    return Architecture(layers=layers, in_channels=table.in_channels, default_side=table.default_side)
