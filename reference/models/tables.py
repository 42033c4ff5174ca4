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
    "AddSpec",
    "Architecture",
    "AvgPool2dSpec",
    "BatchNorm2dSpec",
    "ConcatSpec",
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
    "ZeroPadShortcutSpec",
    "cached",
    "narrowed",
]

Shape = tuple[int, ...]

# Sides are scanned up to this bound to derive the valid range. Every layer here maps a larger side
# to a larger-or-equal side, so a side that is valid at the bound stays valid above it: the range is
# then open-ended (the suite runs the real layers at a side beyond the bound).
SCAN_LIMIT = 1024


Table = TypeVar("Table", bound=Callable[..., "Architecture"])


_DIVISOR: ContextVar[int | None] = ContextVar("divisor", default=None)
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
        return full if divisor is None else full.narrowed(divisor)

    return table


@contextlib.contextmanager
def narrowed(divisor: int) -> Iterator[None]:
    """Inside, every table (and so every model built from one) has its hidden widths divided by ``divisor``, and
    of each run of residual blocks that keep their input's shape, the first alone (:meth:`Architecture.narrowed`):
    the same kinds of layers and blocks, init code and names, at a fraction of the cost. The cheap form of the
    checks that do not depend on the widths or the depth (an init per layer, whether each operation acts, a pair of
    this project's own forms). ``narrowed(1)``: the residual blocks cut, the widths kept."""
    token = _DIVISOR.set(divisor)
    try:
        yield
    finally:
        _DIVISOR.reset(token)


class InvalidInputSize(ValueError):
    """A layer cannot accept the shape that reaches it."""


def _window_side(side: int, kernel_size: int, stride: int, padding: int, ceil_mode: bool = False) -> int:
    """torch's pooling arithmetic: with ``ceil_mode`` the last window may run past the edge (Caffe's rounding), as
    long as it starts inside the input or its left padding."""
    span = side + 2 * padding - kernel_size
    if not ceil_mode:
        return span // stride + 1
    out = -(-span // stride) + 1
    return out - 1 if (out - 1) * stride >= side + padding else out


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
    bias: bool = True

    def build(self) -> nn.Conv2d:
        return nn.Conv2d(
            in_channels=self.in_channels,
            out_channels=self.out_channels,
            kernel_size=self.kernel_size,
            stride=self.stride,
            padding=self.padding,
            groups=self.groups,
            bias=self.bias,
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
        return self.out_channels * (self.fan_in + self.bias)

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
    padding: int = 0
    ceil_mode: bool = False

    def build(self) -> nn.MaxPool2d:
        return nn.MaxPool2d(self.kernel_size, self.stride, self.padding, ceil_mode=self.ceil_mode)

    def output_shape(self, shape: Shape) -> Shape:
        c, h, w = shape
        oh, ow = (_window_side(s, self.kernel_size, self.stride, self.padding, self.ceil_mode) for s in (h, w))
        _require(oh >= 1 and ow >= 1, f"input {h}x{w} is smaller than its {self.kernel_size}x{self.kernel_size} window")
        return (c, oh, ow)


@dataclass(frozen=True)
class AvgPool2dSpec:
    """An average over each ``kernel_size`` window (no padding: every window lies inside the map)."""

    kernel_size: int
    stride: int

    def build(self) -> nn.AvgPool2d:
        return nn.AvgPool2d(self.kernel_size, self.stride)

    def output_shape(self, shape: Shape) -> Shape:
        return MaxPool2dSpec(self.kernel_size, self.stride).output_shape(shape)


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
    eps: float = 1e-5

    def build(self) -> nn.BatchNorm2d:
        return nn.BatchNorm2d(num_features=self.channels, eps=self.eps)

    def output_shape(self, shape: Shape) -> Shape:
        _require(shape[0] == self.channels, f"expects {self.channels} channels, got {shape[0]}")
        return shape

    @property
    def trainable_params(self) -> int:
        return 2 * self.channels

    def connections(self, out: Shape) -> int:
        return 2 * math.prod(out)  # a scale and a shift per output


@dataclass(frozen=True)
class AddSpec:
    """The sum of its inputs (a residual block's main path and shortcut, :attr:`Architecture.sources`), all of one
    shape. Its module is the block that ends in it (the block's output: the sum, rectified)."""

    def output_shape(self, *shapes: Shape) -> Shape:
        _require(len(set(shapes)) == 1, f"adds unequal shapes {' + '.join('x'.join(map(str, s)) for s in shapes)}")
        return shapes[0]


@dataclass(frozen=True)
class ConcatSpec:
    """Its inputs joined along the channels (an inception module's branches, :attr:`Architecture.sources`), all of
    one height and width. Its module is the block that ends in it."""

    def output_shape(self, *shapes: Shape) -> Shape:
        sides = {shape[1:] for shape in shapes}
        _require(len(sides) == 1, f"joins maps of unequal sides {', '.join('x'.join(map(str, s)) for s in sides)}")
        return (sum(shape[0] for shape in shapes), *shapes[0][1:])


@dataclass(frozen=True)
class ZeroPadShortcutSpec:
    """He et al. 2015's shortcut option A: the input subsampled by ``stride`` and its channels zero-padded to
    ``out_channels``; ``layout`` says where the zeros go ("append": after the identity channels; "both": half on
    each side)."""

    in_channels: int
    out_channels: int
    stride: int
    layout: str = "append"

    def build(self) -> ref.ZeroPadShortcut:
        return ref.ZeroPadShortcut(self.in_channels, self.out_channels, self.stride, self.layout)

    def output_shape(self, shape: Shape) -> Shape:
        c, h, w = shape
        _require(c == self.in_channels, f"expects {self.in_channels} channels, got {c}")
        return (self.out_channels, *(_window_side(s, 1, self.stride, 0) for s in (h, w)))


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
    | AddSpec
    | ConcatSpec
    | AvgPool2dSpec
    | ZeroPadShortcutSpec
)
WEIGHTED = (Conv2dSpec, SparseConv2dSpec, SubsamplingSpec, BatchNorm2dSpec, LinearSpec, RBFSpec)
MULTIPLYING = (Conv2dSpec, SparseConv2dSpec, LinearSpec)  # the layers whose multiply-accumulates are counted


@dataclass(frozen=True)
class Architecture:
    """A model's named layers in order, its input channels and the input side it was drawn for. Each layer takes
    the previous layer's output, or the outputs of the layers ``sources`` names for it (a shortcut branching off
    earlier, an addition or a concatenation joining paths). ``heads`` are the auxiliary classifiers (their layers'
    common prefix: ``aux1``), which branch off the network, run in train mode only and end in outputs of their own:
    their layers constrain the valid sides and hold parameters, but the counts at inference leave them out."""

    layers: Mapping[str, LayerSpec]
    in_channels: int
    default_side: int
    sources: Mapping[str, tuple[str, ...]] = dataclasses.field(default_factory=dict)
    heads: tuple[str, ...] = ()

    def __iter__(self) -> Iterator[tuple[str, LayerSpec]]:
        return iter(self.layers.items())

    def build(self, name: str) -> nn.Module:
        """The module of layer ``name``, built from its spec (a model's layers, made where its class says)."""
        return self.layers[name].build()

    def shapes(self, height: int, width: int) -> dict[str, Shape]:
        """Per-layer output shape (without the batch dimension) for a (C, height, width) input."""
        shape: Shape = (self.in_channels, height, width)
        out: dict[str, Shape] = {}
        for name, layer in self:
            inputs = [out[source] for source in self.sources[name]] if name in self.sources else [shape]
            try:
                shape = layer.output_shape(*inputs)
            except InvalidInputSize as error:
                raise InvalidInputSize(f"{name} {error}") from None
            out[name] = shape
        return out

    @property
    def num_classes(self) -> int:
        return self.shapes(self.default_side, self.default_side)[self.output_layer][0]

    @property
    def output_layer(self) -> str:
        return next(name for name in reversed(list(self.layers)) if name not in self.auxiliary)

    @cached_property
    def auxiliary(self) -> frozenset[str]:
        """The layers of the auxiliary classifiers (:attr:`heads`)."""
        return frozenset(name for name in self.layers if name.split(".", 1)[0] in self.heads)

    @property
    def outputs(self) -> tuple[str, ...]:
        """The layers whose widths are the classes: the output layer, and each auxiliary classifier's last."""
        ends = [next(n for n in reversed(list(self.layers)) if n.split(".", 1)[0] == head) for head in self.heads]
        return (self.output_layer, *ends)

    @cached_property
    def shortened(self) -> Architecture:
        """Each run of residual blocks that keep their input's shape (at any side: checked at two) cut to its first
        block: the same valid sides, and the same layers reaching a side of 1, for a fraction of the scan."""
        return _shortened(self)

    @cached_property
    def valid_sides(self) -> SideRange:
        """The sides the table accepts, the other held at the default (sides are independent): an interval, since
        every layer's output side grows with its input's and each layer asks for a least side (a kernel) or an
        exact one (a flatten), found by bisection from the default side, which must be valid."""
        short, default = self.shortened, self.default_side
        if not short._accepts(default, default):
            raise ValueError(f"the table does not accept its own default side {default}")
        low = _bisect(lambda side: not short._accepts(side, default), 0, default) + 1
        high = _bisect(lambda side: short._accepts(side, default), default, SCAN_LIMIT)
        return SideRange(low, None if high == SCAN_LIMIT else high)

    @cached_property
    def export_sides(self) -> SideRange:
        """The valid sides one dynamic-shape export can span: those around the default side where every layer's
        output side is 1 for all of them or for none. torch's symbolic shapes treat a size of 1 apart
        (broadcasting), so a range where some layer's side reaches 1 traces two graphs, for torchvision's
        models as for these. Each layer's side grows with the input's: the range is found by bisection."""
        valid, default = self.valid_sides, self.default_side
        high = valid.high if valid.high is not None else SCAN_LIMIT

        def ones(side: int) -> tuple[bool, ...]:
            shapes = self.shortened.shapes(side, default).values()
            return tuple(dim == 1 for shape in shapes for dim in shape[1:])

        same = ones(default)
        low = _bisect(lambda side: ones(side) != same, valid.low - 1, default) + 1
        top = _bisect(lambda side: ones(side) == same, default, high)
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
        paper (a connection table, prototypes), is a ValueError. Residual blocks (an :class:`AddSpec` and the layers
        since its input) that repeat a shape are cut to the first of each run: a ResNet-152's 36 blocks of conv4_x
        are one there, the block that changes the shape before it kept."""
        key = (id(self), divisor)
        if key not in _NARROWED:  # one narrowed table per table and divisor: its sides derived once, here
            narrow = _narrow(self.shortened, divisor)
            # Widths and the cut blocks leave every layer's sides as they were: the full table's sides hold.
            narrow.__dict__.update(valid_sides=self.valid_sides, export_sides=self.export_sides)
            _NARROWED[key] = (self, narrow)
        return _NARROWED[key][1]

    def _inference(self, kinds: tuple[type, ...]) -> Iterator[tuple[str, LayerSpec]]:
        """The layers of ``kinds`` an eval-mode forward pass runs: the auxiliary classifiers' left out."""
        return ((name, layer) for name, layer in self if isinstance(layer, kinds) and name not in self.auxiliary)

    def connections(self, side: int | None = None) -> dict[str, int]:
        """Connections per layer at inference (LeCun et al.'s count)."""
        shapes = self.shapes(side or self.default_side, side or self.default_side)
        return {name: layer.connections(shapes[name]) for name, layer in self._inference(WEIGHTED)}

    def macs(self, side: int | None = None) -> dict[str, int]:
        """Multiply-accumulates per image and layer at inference, weights only: no bias, activation or pooling."""
        shapes = self.shapes(side or self.default_side, side or self.default_side)
        return {name: layer.macs(shapes[name]) for name, layer in self._inference(MULTIPLYING)}

    def neurons(self, side: int | None = None) -> dict[str, int]:
        """Output units of every convolution (sparse ones too) and fully connected layer at inference (Krizhevsky et
        al.'s count)."""
        shapes = self.shapes(side or self.default_side, side or self.default_side)
        return {name: math.prod(shapes[name]) for name, _ in self._inference(MULTIPLYING)}


_NARROWED: dict[tuple[int, int], tuple[Architecture, Architecture]] = {}  # the table kept alive beside its id


def _shortened(table: Architecture) -> Architecture:
    """``table`` with each run of shape-keeping residual blocks cut to its first block."""
    names = list(table.layers)
    adds = [name for name in names if isinstance(table.layers[name], AddSpec)]
    if not adds:
        return table
    sides = (table.default_side, table.default_side + 1)  # an odd side too: a stride would show
    shapes = [table.shapes(side, side) for side in sides]
    position = {name: index for index, name in enumerate(names)}
    starts = {add: _start(table, add, position) for add in adds}
    dropped: dict[str, str] = {}  # a dropped block -> the layer that now stands for its output
    run = False
    for add in adds:
        keeps = all(at[starts[add]] == at[add] for at in shapes)
        if keeps and run:
            dropped[add] = dropped.get(starts[add], starts[add])
        run = keeps
    if not dropped:
        return table
    gone = {name for add in dropped for name in names[position[starts[add]] + 1 : position[add] + 1]}
    layers = {name: spec for name, spec in table.layers.items() if name not in gone}
    sources = {name: tuple(dropped.get(source, source) for source in feeding)
               for name, feeding in table.sources.items() if name not in gone}  # fmt: skip
    return Architecture(layers, table.in_channels, table.default_side, sources, table.heads)


def _bisect(holds: Callable[[int], bool], low: int, high: int) -> int:
    """The largest side in [low, high] where ``holds``, given that it holds at ``low`` (or ``low`` lies below the
    sides asked about) and, once it fails, fails above too."""
    while low < high:
        middle = (low + high + 1) // 2
        low, high = (middle, high) if holds(middle) else (low, middle - 1)
    return low


def _start(table: Architecture, add: str, position: Mapping[str, int]) -> str:
    """The layer a residual block starts from (its input): where its two paths, walked back from the addition's
    sources, meet."""
    names = list(table.layers)

    def before(name: str) -> str:
        return table.sources[name][0] if name in table.sources else names[position[name] - 1]

    main, shortcut = table.sources[add][0], table.sources[add][-1]
    while main != shortcut:
        if position[main] > position[shortcut]:
            main = before(main)
        else:
            shortcut = before(shortcut)
    return main


def _narrow(table: Architecture, divisor: int) -> Architecture:
    def hidden(name: str, width: int) -> int:
        if name in table.outputs:
            return width
        if width % divisor:
            raise ValueError(f"{name}: a width of {width} cannot be divided by {divisor}")
        return width // divisor

    layers: dict[str, LayerSpec] = {}
    widths: dict[str, int] = {}  # each layer's output width, narrowed: what a layer fed by it takes
    channels = table.in_channels
    for name, spec in table:
        if name in table.sources:
            channels = widths[table.sources[name][0]]
        if isinstance(spec, ConcatSpec):
            channels = sum(widths[source] for source in table.sources[name])
        elif isinstance(spec, Conv2dSpec):
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
        elif isinstance(spec, ZeroPadShortcutSpec):
            spec = dataclasses.replace(spec, in_channels=channels, out_channels=hidden(name, spec.out_channels))
            channels = spec.out_channels
        elif isinstance(spec, WEIGHTED):
            raise ValueError(f"{name}: a {type(spec).__name__}'s width is fixed; this table cannot be narrowed")
        layers[name] = spec
        widths[name] = channels
    return Architecture(layers, table.in_channels, table.default_side, table.sources, table.heads)
