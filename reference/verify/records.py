"""The records of the case registry, as narrow as PyTorch's ``ModuleInfo``: one :class:`Case` per model and per
hand-written layer, one :class:`Pair` per counterpart it is verified against.

A case says how to build the module, which inputs it takes (derived from the layer table for a model; for a layer,
an input space and :class:`ModuleInput` examples, the inputs it must reject beside them), what it is compared with,
what the paper states (:class:`Paper`), and which tools cannot take it (:class:`Skip`). The suite, the CLI, the goldens
and the benchmarks read these records; none of them names a model. How much a case costs, and so what the default run
keeps of it, is measured data (:mod:`reference.verify.costs`), not part of the record.
"""

from __future__ import annotations

import dataclasses
import fnmatch
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import torch
from torch import Tensor, nn

from reference.models.checks import SideRange
from reference.models.tables import Architecture
from reference.verify.compare import LayerMap, Tolerance
from reference.verify.inits import InitMap
from reference.verify.states import StateMap, Views

__all__ = ["Case", "Contrast", "Dropout", "Inert", "InputSpace", "ModuleInput", "Pair", "Paper", "QuotedTable", "Skip"]

# A dimension after the batch: a fixed size, or an inclusive range (None: no upper bound).
Dim = int | tuple[int, int | None]


@dataclass(frozen=True)
class ModuleInput:
    """One input a layer is run at, as data (PyTorch's ``ModuleInput``): a drawn tensor of ``shape`` for the layer
    built with ``options``. Compared with every counterpart, or with ``gradcheck`` checked by gradcheck and
    gradgradcheck instead (float64, parameters redrawn). With ``error`` the layer must raise it where the input enters,
    ``(type, regex of the message)``, and with no ``shape`` its constructor must: an error input. ``value`` stands for
    an input that is not a drawn tensor (a list, an integer tensor)."""

    shape: tuple[int, ...] | None = None
    options: Mapping[str, Any] = field(default_factory=dict)
    desc: str = ""
    gradcheck: bool = False
    error: tuple[type[Exception], str] | None = None
    value: Callable[[], Any] | None = None


@dataclass(frozen=True)
class InputSpace:
    """The inputs a module accepts: ``dims`` after the batch dimension, the ``default`` shape (batch included) the
    fixed comparisons use, values ``scale`` times a standard normal (``rectified`` where the module sees post-ReLU
    activations); the constructor ``options`` the properties draw (a channel count a multiple of the option
    ``channels_multiple_of`` names) and the ``examples`` a layer is also run at."""

    dims: tuple[Dim, ...] | None = None  # a model's are its table's
    default: tuple[int, ...] | None = None
    scale: float = 1.0
    rectified: bool = False
    channels_multiple_of: str | None = None
    options: Mapping[str, Sequence[Any]] = field(default_factory=dict)
    examples: tuple[ModuleInput, ...] = ()

    def sample(
        self, shape: Sequence[int] | None = None, *, dtype: torch.dtype = torch.float32, seed: int = 0
    ) -> Tensor:
        """A reproducible input of ``shape`` (default: :attr:`default`), from its own generator."""
        x = torch.randn(tuple(shape or self.default), generator=torch.Generator().manual_seed(seed), dtype=dtype)
        x = self.scale * x
        return x.relu() if self.rectified else x


@dataclass(frozen=True)
class Pair:
    """A counterpart a case is verified against, and how the two meet.

    ``other(reference)`` builds the counterpart's modules for a reference of any configuration (the values do not
    matter: they are replaced); ``state`` maps state and gradients between the two, the one map a port, a port back
    and every gradient comparison use; ``back(other)`` builds the reference's modules for a counterpart, where a port
    back exists. ``model`` says what the counterpart is where it is a model of its own: a registry name, or
    ``"torchvision:<name>"`` (its builder, published weights and metadata are torchvision's). ``same_dropout``: the
    two draw dropout's masks in the same order, so train mode with one seed agrees too; ``same_init``: they draw their
    initial weights alike, so one seed builds the same weights (not where the paper states another init than the
    library's). ``weights_options``: the builder options that keep, with the library's weights enum, the configuration
    the case builds (torchvision's googlenet turns ``transform_input`` on and drops the heads unless told).
    """

    name: str
    other: Callable[[nn.Module], nn.Module]
    tolerance: Tolerance = field(default_factory=Tolerance)
    state: StateMap = field(default_factory=Views)
    layers: LayerMap = field(default_factory=dict)
    back: Callable[[nn.Module], nn.Module] | None = None
    model: str | None = None
    same_dropout: bool = False
    same_init: bool = True
    weights_options: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Contrast:
    """A network this one is not: its weights port (``state``), its outputs differ, and the first layer where they
    part is ``parts`` (this model's name; every layer before it agrees exactly). ``why`` says what makes them part.
    ``other(reference)`` builds it, as a :class:`Pair`'s does."""

    name: str
    other: Callable[[nn.Module], nn.Module]
    parts: str
    why: str
    state: StateMap = field(default_factory=Views)


@dataclass(frozen=True)
class QuotedTable:
    """A table printed in a paper, as printed, how to read it, and how to read the same table off the built module."""

    printed: tuple[str, ...]
    parse: Callable[[tuple[str, ...]], Any]
    derive: Callable[[nn.Module], Any]


@dataclass(frozen=True)
class Dropout:
    """Where dropout stands: the table layers whose input it drops, each unit with probability ``p`` (a model with
    several rates, GoogLeNet's 40 % and its heads' 70 %, has one record per rate)."""

    before: tuple[str, ...]
    p: float = 0.5


@dataclass(frozen=True)
class Paper:
    """What the paper (or the library's metadata) states, to be matched by what is derived and counted.

    ``totals`` and ``breakdown`` are keyed by the measures of :mod:`reference.verify.facts` (``"trainable
    parameters"``, ``"neurons"`` ...), a breakdown per layer or per kind of layer; ``errata`` are figures as printed that
    the paper's own network contradicts, ``{measure: {layer: (printed, note)}}``. ``inits`` are the initialisations
    the source states, each with the constructor options that select it (``{}`` for the default); ``fixed`` buffers
    that are data, not parameters: ``{name: (shape, the only values they hold)}``.
    """

    citation: str
    totals: Mapping[str, float] = field(default_factory=dict)
    breakdown: Mapping[str, Mapping[str, int]] = field(default_factory=dict)
    errata: Mapping[str, Mapping[str, tuple[int, str]]] = field(default_factory=dict)
    dropout: tuple[Dropout, ...] = ()
    inits: tuple[tuple[Mapping[str, Any], InitMap], ...] = ()
    departures: tuple[str, ...] = ()
    tables: Mapping[str, QuotedTable] = field(default_factory=dict)
    fixed: Mapping[str, tuple[tuple[int, ...], frozenset[float]]] = field(default_factory=dict)


@dataclass(frozen=True)
class Skip:
    """A tool of tests/test_conformance.py that cannot take the case (or only its pair ``pair``), and why: the test
    is a strict xfail, so that a tool that learns to take it fails the test and the entry goes."""

    tool: str
    why: str
    pair: str | None = None


@dataclass(frozen=True)
class Inert:
    """Operations that do nothing at the weights and input the comparisons use (:mod:`reference.verify.sensitivity`:
    ablating them leaves the output within float32's table), ``why``, and where they act: after ``weights(module,
    x)`` (in place, e.g. :func:`~reference.verify.sensitivity.redraw_biases`) on an input of side ``side`` (default:
    the default input's) times ``scale``. ``modules`` are shell patterns over the ablated calls' names (``relu:4``,
    ``block*_conv*`` for the convolutions' biases)."""

    modules: tuple[str, ...]
    why: str
    weights: Callable[[nn.Module, Tensor], None] | None = None
    side: int | None = None
    scale: float = 1.0

    def names(self, calls: Sequence[str]) -> list[str]:
        return [call for call in calls if any(fnmatch.fnmatchcase(call, pattern) for pattern in self.modules)]


@dataclass(frozen=True)
class Case:
    """One model or hand-written layer: everything the battery, the CLI and the benchmarks need to know.

    ``build`` takes a layer's constructor options (a model's builder takes none here); ``table`` is a model's layer
    table, from which its input space, shapes and counts derive; ``prepare`` adjusts fresh weights where a comparison
    would otherwise pass vacuously (outputs ~1e-19); ``inert`` names the operations that do nothing where the
    comparisons run, and where they act. ``narrow`` divides the hidden widths of the model its cheap checks build,
    and of its counterparts, built from its table (:func:`reference.models.tables.narrowed`), where every operation
    still acts as at full width (None: they run at full width). ``contrasts``: networks it is easily taken for, and where
    it parts from them."""

    name: str
    summary: str
    build: Callable[..., nn.Module]
    table: Callable[[], Architecture] | None = None
    inputs: InputSpace | None = None
    pairs: tuple[Pair, ...] = ()
    paper: Paper | None = None
    skips: tuple[Skip, ...] = ()
    prepare: Callable[[nn.Module], None] | None = None
    inert: tuple[Inert, ...] = ()
    narrow: int | None = None
    contrasts: tuple[Contrast, ...] = ()

    def prepared(self, module: nn.Module) -> nn.Module:
        """``module`` (this case's, built) with its weights adjusted as the comparisons use them (``prepare``), in
        place; returned."""
        if self.prepare is not None:
            self.prepare(module)
        return module

    @property
    def is_model(self) -> bool:
        return self.table is not None

    @cached_property
    def architecture(self) -> Architecture:
        if self.table is None:
            raise ValueError(f"{self.name} is a layer: it has no layer table")
        return self.table()

    @property
    def trainable_params(self) -> int:
        """The table's count (what the facts check against the papers, the libraries and the built module)."""
        return sum(self.architecture.trainable_params().values())

    @property
    def valid_sides(self) -> SideRange:
        return self.architecture.valid_sides

    @property
    def in_channels(self) -> int:
        return self.architecture.in_channels

    @property
    def default_side(self) -> int:
        return self.architecture.default_side

    @cached_property
    def input_space(self) -> InputSpace:
        """The case's inputs; a model's dims are (C, H, W) from its table and its default one image at the smallest
        valid side, where its record gives neither (a float64 AlexNet's backward costs ~0.5 s an image; batches are drawn
        by the properties)."""
        space = self.inputs or InputSpace()
        if self.table is None or space.dims is not None:
            return space
        low, high = self.valid_sides.low, self.valid_sides.high
        dims = (self.in_channels, (low, high), (low, high))
        return dataclasses.replace(space, dims=dims, default=space.default or (1, self.in_channels, low, low))

    def shapes(self, height: int, width: int) -> dict[str, tuple[int, ...]]:
        return self.architecture.shapes(height, width)

    def output_shape(self, height: int, width: int) -> tuple[int, ...]:
        """A model's output for one (C, height, width) image: (classes,), or a score map's (classes, h, w)."""
        return self.shapes(height, width)[self.architecture.output_layer]

    def skipped(self, tool: str, pair: Pair | None = None) -> str | None:
        """Why ``tool`` cannot take the case's module (``pair``: that counterpart), or None."""
        return next(
            (s.why for s in self.skips if s.tool == tool and (s.pair is None or (pair and s.pair == pair.name))), None
        )
