"""The record types of the case registry: one :class:`Case` per model and per hand-written layer.

In the spirit of PyTorch's ``ModuleInfo``: a case says how to build the module, what input it accepts
(derived from the layer table for a model), what it is verified against and how the weights get there,
how exact each comparison is and why, and the facts the paper and library state about it. The suite,
the CLI, the goldens and the benchmarks read these records; none of them names a model.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Literal

import torch
from torch import Tensor, nn

from reference.models.tables import Architecture, SideRange
from reference.verify.compare import LayerMap

__all__ = ["Case", "Counterpart", "Facts", "InputSpace", "ModuleInput", "QuotedTable"]

# A dimension after the batch: a fixed size, or an inclusive range (None: no upper bound).
Dim = int | tuple[int, int | None]


@dataclass(frozen=True)
class InputSpace:
    """The inputs a module accepts: ``dims`` after the batch dimension, and the ``default`` shape (batch
    included) the fixed comparisons use, the smallest that still runs every layer. Values are drawn as
    ``scale`` times a standard normal, rectified where the module sees post-ReLU activations."""

    dims: tuple[Dim, ...]
    default: tuple[int, ...]
    scale: float = 1.0
    rectified: bool = False
    channels_multiple_of: str | None = None  # a constructor option the channel count must be a multiple of

    def sample(
        self, shape: Sequence[int] | None = None, *, dtype: torch.dtype = torch.float32, seed: int = 0
    ) -> Tensor:
        """A reproducible input of ``shape`` (default: :attr:`default`), from its own generator."""
        x = torch.randn(tuple(shape or self.default), generator=torch.Generator().manual_seed(seed), dtype=dtype)
        x = self.scale * x
        return x.relu() if self.rectified else x


@dataclass(frozen=True)
class Counterpart:
    """What a case is verified against, and how its weights get there.

    ``port`` makes the counterpart from the reference with the same weights (``port(reference, share=True)``
    where ``shares`` says so: the same tensors, not a copy, for comparisons that must not hold an AlexNet's
    float64 weights twice); ``port_back`` goes the other way; ``library`` builds the counterpart by its own
    library's constructor (equal seeds must then give equal initial weights), whose published ``weights`` the
    case's builder takes too. ``grads`` maps the counterpart's parameter gradients onto the reference's names.
    """

    name: str
    port: Callable[..., nn.Module]
    exact_forward: bool  # same operations in the same order on CPU: compared with rtol = atol = 0
    exact_grads: bool
    why_not_exact: str = ""
    layers: LayerMap = field(default_factory=dict)
    grads: Callable[[nn.Module, Mapping[str, Tensor]], Mapping[str, Tensor]] | None = None
    port_back: Callable[[nn.Module], nn.Module] | None = None
    library: Callable[[], nn.Module] | None = None
    case: str | None = None  # the registry case whose model this counterpart is, where there is one
    weights: Callable[[], Any] | None = None  # the library's published weights (a weights enum member)
    # Tolerances at drawn inputs and options, where they differ from the default input's (dtype -> keywords of
    # compare_models: rtol, atol, grad_rtol, grad_atol), with the reason in a comment where they are given.
    drawn_tolerance: Mapping[torch.dtype, Mapping[str, float]] = field(default_factory=dict)
    # Tolerances on CUDA where they differ from the table's (the same keywords), with the reason in a comment.
    cuda_tolerance: Mapping[torch.dtype, Mapping[str, float]] = field(default_factory=dict)
    # Dropout runs in the same order on both sides: train mode with the same seed must agree too.
    same_dropout: bool = False
    shares: bool = False  # port takes share=True
    # Tools of tests/test_conformance.py that cannot take this counterpart, with why: tool -> reason.
    unsupported: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class QuotedTable:
    """A table printed in a paper, as printed, and how to read the same table off the built module."""

    printed: tuple[str, ...]
    parse: Callable[[tuple[str, ...]], Any]
    derive: Callable[[nn.Module], Any]


@dataclass(frozen=True)
class Facts:
    """Numbers quoted from the paper or the library's metadata, to be matched by derived and counted ones."""

    citation: str
    trainable_params: int | None = None  # exact, where the source states it
    # Rounded as the source rounds it: (millions, as printed) — Simonyan & Zisserman's Table 2.
    params_millions: int | None = None
    weight_layers: int | None = None  # convolutional and fully connected layers, as a paper counts depth
    # Layers of each kind in the paper's own notation (Simonyan & Zisserman's Table 1: conv3, conv1, LRN, maxpool, FC),
    # zeros included: a kind the table has and this lacks counts as a difference.
    layer_counts: Mapping[str, int] = field(default_factory=dict)
    params_per_layer: Mapping[str, int] = field(default_factory=dict)
    connections_per_layer: Mapping[str, int] = field(default_factory=dict)
    total_connections: int | None = None
    neurons_per_layer: Mapping[str, int] = field(default_factory=dict)
    # Where the paper prints a figure its own network contradicts: layer -> (printed, note).
    errata: Mapping[str, tuple[int, str]] = field(default_factory=dict)
    # Where dropout stands: the table layers whose input it drops, with probability ``dropout_p``.
    dropout_before: tuple[str, ...] = ()
    dropout_p: float = 0.5
    macs: int | None = None  # multiplications per image at ``macs_side`` (weights only, no bias)
    macs_side: int | None = None
    tables: Mapping[str, QuotedTable] = field(default_factory=dict)
    # Buffers that are fixed data, not parameters: name -> (shape, the only values they hold).
    fixed_buffers: Mapping[str, tuple[tuple[int, ...], frozenset[float]]] = field(default_factory=dict)
    # The library's published metadata (torchvision's weights meta: num_params, _ops, min_size).
    library_meta: Callable[[], Mapping[str, Any]] | None = None


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


@dataclass(frozen=True)
class ModuleInput:
    """An input shape and the constructor options to build the module with (PyTorch's ModuleInput, as data)."""

    shape: tuple[int, ...]
    options: Mapping[str, Any] = field(default_factory=dict)
    desc: str = ""


@dataclass(frozen=True)
class Case:
    """One model or hand-written layer: everything the battery, the CLI and the benchmarks need to know."""

    name: str
    summary: str
    build: Callable[..., nn.Module]  # keyword options from ``options`` (layers); a model takes none
    inputs: InputSpace | None = None  # a model's is derived from its table
    table: Callable[[], Architecture] | None = None  # models only
    counterparts: tuple[Counterpart, ...] = ()
    facts: Facts | None = None
    departures: tuple[str, ...] = ()
    options: Mapping[str, Sequence[Any]] = field(default_factory=dict)  # drawn by the properties
    gradcheck: tuple[ModuleInput, ...] = ()
    # Inputs a layer is compared with its counterparts at besides its input space (other ranks, other options).
    module_inputs: tuple[ModuleInput, ...] = ()
    gradcheck_reinit: bool = True  # parameters redrawn in U(-0.5, 0.5) for a well-conditioned gradcheck
    # Inputs a layer must reject where they enter: () -> [(input, error type, regex of the message)]. A model's
    # are derived from its table.
    error_inputs: Callable[[], Sequence[tuple[Any, type[Exception], str]]] | None = None
    # Constructor options it must reject: (options, error type, regex of the message).
    error_options: tuple[tuple[Mapping[str, Any], type[Exception], str], ...] = ()
    # Adjusts freshly initialised weights where a comparison would otherwise pass vacuously (outputs ~1e-19).
    prepare: Callable[[nn.Module], None] | None = None
    # Tools of tests/test_conformance.py that cannot take this case, reference and counterparts alike: tool -> why.
    unsupported: Mapping[str, str] = field(default_factory=dict)
    # Which of this case's checks the default run keeps (the others run in ``-m slow``; tests/conftest.py marks them),
    # each level keeping the next one's too: "all"; "smoke", its pairs at the default input with gradients and a
    # train step; "forward", one build (its initial weights checked) and its pairs' outputs and layers at the default
    # input; "light", the checks that run on the meta device (facts, shapes, summary, dropout's place). For a
    # family whose builds and passes cost seconds and gigabytes each (VGG), one case of each form keeps more than
    # the light checks.
    default_run: Literal["all", "smoke", "forward", "light"] = "all"
    # The batch sizes benchmarks/ times, per device: its defaults where None, none where empty.
    benchmark_batches: Mapping[str, tuple[int, ...]] | None = None
    # The initialisation the paper or the library states, for every parameter of a fresh build (not prepared):
    # built module -> {parameter name: distribution}. Derived from the paper's numbers, not the model's code.
    init: Callable[[nn.Module], Mapping[str, Init]] | None = None
    # Other initialisations the paper states, each with the constructor options that select it (VGG's Glorot).
    other_inits: tuple[tuple[Mapping[str, Any], Callable[[nn.Module], Mapping[str, Init]]], ...] = ()

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
        """The case's inputs; for a model, (C, H, W) from its table, the default one image at the smallest valid
        side (a float64 AlexNet's backward costs ~0.5 s an image; batches are drawn by the properties)."""
        if self.inputs is not None or self.table is None:
            return self.inputs
        sides = self.valid_sides
        side_range = (sides.low, sides.high)
        return InputSpace(
            dims=(self.in_channels, side_range, side_range), default=(1, self.in_channels, sides.low, sides.low)
        )

    def shapes(self, height: int, width: int) -> dict[str, tuple[int, ...]]:
        return self.architecture.shapes(height, width)

    def output_shape(self, height: int, width: int) -> tuple[int, ...]:
        """A model's output for one (C, height, width) image: (classes,), or a score map's (classes, h, w)."""
        return self.shapes(height, width)[self.architecture.output_layer]
