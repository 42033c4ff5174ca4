"""The equivalence pairs: every reference model and hand-written layer next to its counterpart.

``python -m reference verify`` prints one row per pair and dtype; tests/test_equivalence.py asserts
each. A pair compares exactly (rtol = atol = 0) where both sides run the same operations in the same
order, and with :data:`reference.testing.TOLERANCES` elsewhere, saying why.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import torch
import torchvision
from torch import Tensor, nn

from reference import port
from reference.layers import LiteralSparseConv2d, LocalResponseNorm, SparseConv2d
from reference.lenet import C3_TABLE
from reference.specs import SPECS, ModelSpec
from reference.testing import Comparison, LayerMap, compare_models, grad_tolerance, tolerance

__all__ = ["PAIRS", "Pair", "PerGroup"]

Built = tuple[nn.Module, nn.Module, Tensor]


@dataclass(frozen=True)
class Pair:
    name: str
    # (reference side, counterpart with the same weights, default input); a spec pair's build also
    # takes an already built reference side and ports its counterpart from it.
    build: Callable[..., Built]
    exact_forward: bool
    exact_grads: bool
    why_not_exact: str = ""
    layers: LayerMap = field(default_factory=dict)
    grads_to_reference: Callable[[nn.Module, dict[str, Tensor]], Mapping[str, Tensor]] | None = None
    spec: str | None = None  # the spec whose model is the reference side

    def models(
        self, dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu", reference: nn.Module | None = None
    ) -> Built:
        """Both sides and the input, built under a fixed seed without touching the global RNG.

        ``reference`` (spec pairs only) is used instead of a new build of the spec's model: it must
        already be in ``dtype`` on ``device``, in eval mode, and is not modified.
        """
        if reference is not None and self.spec is None:
            raise ValueError(f"pair {self.name!r} has no spec model: it cannot take a built reference side")
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            a, b, x = self.build() if reference is None else self.build(reference)
        return a.to(device, dtype), b.to(device, dtype), x.to(device, dtype)

    def compare(
        self, dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu", inputs: Tensor | None = None
    ) -> Comparison:
        a, b, x = self.models(dtype, device)
        grads_to_a = None if self.grads_to_reference is None else (lambda grads: self.grads_to_reference(b, grads))
        return compare_models(
            a, b, x if inputs is None else inputs, **tolerance(dtype, self.exact_forward), layers=self.layers,
            grads=True, grads_to_a=grads_to_a, **grad_tolerance(dtype, self.exact_grads),
        )  # fmt: skip


def _input(channels: int, side: int, batch: int = 2) -> Tensor:
    return torch.randn(batch, channels, side, side)


def _spec_pair(spec: ModelSpec) -> Pair:
    counterpart = spec.counterpart
    assert counterpart is not None

    def build(reference: nn.Module | None = None) -> Built:
        model = spec.builder().eval() if reference is None else reference
        if counterpart.prepare is not None:
            if reference is not None:
                model = copy.deepcopy(model)  # prepare changes weights: never the caller's
            counterpart.prepare(model)
        return model, counterpart.port(model), _input(spec.in_channels, spec.default_side)

    return Pair(
        name=f"{spec.name} vs {counterpart.name}",
        build=build,
        exact_forward=counterpart.exact_forward,
        exact_grads=counterpart.exact_grads,
        why_not_exact=counterpart.why_not_exact,
        layers=counterpart.layers,
        grads_to_reference=counterpart.grads_to_reference,
        spec=spec.name,
    )


def _alexnet_from_torchvision() -> Built:
    library = torchvision.models.alexnet(weights=None).eval()
    return port.alexnet_from_torchvision(library), library, _input(3, 224)


class PerGroup(nn.Module):
    """Applies ``make()`` to each of ``groups`` equal channel groups separately (torch's LRN has no groups)."""

    def __init__(self, make: Callable[[], nn.Module], groups: int) -> None:
        super().__init__()
        self.parts = nn.ModuleList(make() for _ in range(groups))

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat(
            [part(chunk) for part, chunk in zip(self.parts, x.chunk(len(self.parts), dim=1), strict=False)], dim=1
        )


def _lrn(groups: int) -> Callable[[], Built]:
    def build() -> Built:
        paper = LocalResponseNorm(size=5, alpha=1e-4, beta=0.75, k=2.0, groups=groups)
        library = PerGroup(lambda: nn.LocalResponseNorm(size=5, alpha=5 * 1e-4, beta=0.75, k=2.0), groups)
        # conv1's output shape; scaled so that alpha * sum(a^2) is comparable with k and the
        # normalisation really bends the output (post-ReLU activations of a trained net are O(10)).
        return paper, library, 10 * torch.randn(2, 96, 55, 55).relu()

    return build


def _c3_literal() -> Built:
    sparse = SparseConv2d(in_channels=6, table=C3_TABLE, kernel_size=5)
    nn.init.uniform_(sparse.weight, -0.1, 0.1)
    nn.init.uniform_(sparse.bias, -0.1, 0.1)
    return sparse, LiteralSparseConv2d.from_sparse(sparse), torch.randn(2, 6, 14, 14)


def _c3_literal_grads(literal: nn.Module, grads: dict[str, Tensor]) -> dict[str, Tensor]:
    maps = range(len(literal.maps))
    return {
        "weight": torch.cat([grads[f"maps.{i}.weight"][0] for i in maps]),
        "bias": torch.cat([grads[f"maps.{i}.bias"] for i in maps]),
    }


_OP_ORDER = "the same terms summed in a different order"

PAIRS: dict[str, Pair] = {
    pair.name: pair
    for pair in (
        *(_spec_pair(spec) for spec in SPECS.values() if spec.counterpart is not None),
        Pair(
            name="alexnet from torchvision AlexNet",
            build=_alexnet_from_torchvision,
            exact_forward=True,
            exact_grads=True,
            layers=SPECS["alexnet"].counterpart.layers,
            grads_to_reference=SPECS["alexnet"].counterpart.grads_to_reference,
        ),
        Pair(
            name="LocalResponseNorm vs nn.LocalResponseNorm(alpha=5e-4)",
            build=_lrn(groups=1),
            exact_forward=True,
            exact_grads=False,
            why_not_exact="backward: autograd through slices here, avg_pool3d's backward in torch",
        ),
        Pair(
            name="LocalResponseNorm(groups=2) vs nn.LocalResponseNorm per group",
            build=_lrn(groups=2),
            exact_forward=True,
            exact_grads=False,
            why_not_exact="backward: autograd through slices here, avg_pool3d's backward in torch",
        ),
        Pair(
            name="LeNet-5 C3 vs 16 literal convolutions",
            build=_c3_literal,
            exact_forward=False,
            exact_grads=False,
            why_not_exact=_OP_ORDER + ": one 6-map convolution with zero kernels vs 16 small ones",
            grads_to_reference=_c3_literal_grads,
        ),
    )
}
