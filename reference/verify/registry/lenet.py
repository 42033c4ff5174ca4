"""LeNet-5: LeCun, Bottou, Bengio, Haffner 1998. Its numbers (table I, the per-layer parameters and connections of
section II.B), the paper's network and the seed notebook's, and the hand-written layers they are made of."""

from __future__ import annotations

from functools import partial

import torch

from reference.models.bitmaps import prototypes
from reference.models.layers import EuclideanRBF, GaussianRBF, SparseConv2d, Squash, Subsampling
from reference.models.lenet import C3_TABLE, lenet5, lenet5_architecture, lenet5_seed
from reference.verify import inits
from reference.verify.compare import Override, Tolerance
from reference.verify.counterparts import (
    CdistRBF,
    Literal,
    LiteralSparseConv2d,
    TanhSquash,
    Tied,
    TorchLayers,
    TorchLayersLeNet5,
    depthwise_subsampling,
)
from reference.verify.records import Case, Inert, InputSpace, ModuleInput, Pair, Paper, QuotedTable, Skip
from reference.verify.sensitivity import redraw_biases

LECUN_1998 = "LeCun, Bottou, Bengio, Haffner. Gradient-based learning applied to document recognition. Proc. IEEE, 1998"
SEED_NOTEBOOK = "the seed notebook (a simplification of " + LECUN_1998 + ")"

# Table I as printed: a row per S2 map, a column per C3 map, X where they connect.
C3_TABLE_PRINTED = (
    "X...XXX..XXXX.XX",
    "XX...XXX..XXXX.X",
    "XXX...XXX..X.XXX",
    ".XXX..XXXX..X.XX",
    "..XXX..XXXX.XX.X",
    "...XXX..XXXX.XXX",
)
# Section II.B, layer by layer.
PARAMETERS = {"c1": 156, "s2": 12, "c5": 48_120, "f6": 10_164}
CONNECTIONS = {"c1": 122_304, "s2": 5_880, "c3": 151_600, "s4": 2_000, "c5": 48_120, "f6": 10_164, "output": 840}

CDIST = "torch.cdist"
# What torch's own tools cannot take in a counterpart computed with torch.cdist.
CDIST_SKIPS = {
    "jvp": "torch.cdist has no forward-mode derivative (_cdist_forward)",
    "onnx-dynamo": "torch.onnx's dynamo exporter has no translation of aten._cdist_forward",
}
CDIST_WHY = "torch.cdist takes a square root that is squared again"


def _cdist_skips(pair: str) -> tuple[Skip, ...]:
    return tuple(Skip(tool, why, pair=pair) for tool, why in CDIST_SKIPS.items())


def _columns(printed: tuple[str, ...]) -> tuple[tuple[int, ...], ...]:
    """Each column of a printed connection table: the rows marked X in it."""
    return tuple(
        tuple(row for row, line in enumerate(printed) if line[column] == "X") for column in range(len(printed[0]))
    )


def _widen_gaussian_head(model: torch.nn.Module) -> None:
    """The seed's head starts at width 1, where exp(-||x - c||^2 / 2) is ~1e-19 for every class and any two
    implementations agree within any tolerance. Width 10 puts the outputs near 0.4."""
    head = model.output if hasattr(model, "output") else model
    with torch.no_grad():
        head.widths.fill_(10.0)


def _steeper(model: torch.nn.Module, _: torch.Tensor) -> None:
    """Every convolution's and linear layer's weights times 10: pre-activations of O(1), where tanh bends."""
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if name.endswith("weight") and parameter.dim() > 1:
                parameter.mul_(10.0)


TORCH_LAYERS = Pair(
    name="LeNet-5 in torch layers",
    other=TorchLayersLeNet5,
    state=TorchLayers(),
    layers={name: name for name in ("c1", "s2", "c3", "s4", "c5", "f6")},
    tolerance=Tolerance(
        "table",
        "table",
        why="subsampling multiplies after summing the block, the depthwise conv before; the head sums squared "
        "differences where torch.cdist takes a square root that is squared again",
    ),
)

CASES = (
    Case(
        name="lenet5",
        summary="LeNet-5 as published: sparse C3, squashing, fixed +-1 RBF prototypes",
        build=lenet5,
        table=lenet5_architecture,
        pairs=(TORCH_LAYERS,),
        paper=Paper(
            citation=LECUN_1998,
            totals={"trainable parameters": 60_000, "connections": 340_908},
            breakdown={
                "parameters": PARAMETERS | {"c3": 1_516, "s4": 32, "output": 0},
                "connections": CONNECTIONS,
            },
            inits=(({}, lambda model: inits.lecun_1998(model, lenet5_architecture(), _columns(C3_TABLE_PRINTED))),),
            departures=(
                "the RBF prototypes' 7x12 pixels are drawn here: the paper does not publish them as data",
                "the loss (the paper's MAP criterion) is not part of the model",
            ),
            tables={"C3 (table I)": QuotedTable(C3_TABLE_PRINTED, _columns, lambda model: model.c3.table)},
            fixed={"output.prototypes": ((10, 84), frozenset({-1.0, 1.0}))},
        ),
        skips=_cdist_skips(TORCH_LAYERS.name),
        inert=(
            Inert(
                ("squash:1", "squash:2"),
                "C1's and S2's outputs are small at the paper's init (a 32x32 input of unit variance, weights "
                "U(-2.4/F, 2.4/F)), where the squashing function is nearly linear; inputs 10 times larger reach its bend",
                scale=10.0,
            ),
        ),
    ),
    Case(
        name="lenet5_seed",
        summary="the seed notebook's LeNet-5: dense C3, tanh, Gaussian RBF head with trainable centres and widths",
        build=lenet5_seed,
        table=partial(lenet5_architecture, c3="dense", head="gaussian"),
        pairs=(TORCH_LAYERS,),
        paper=Paper(
            citation=SEED_NOTEBOOK,
            totals={"trainable parameters": 61_750},
            breakdown={"parameters": PARAMETERS | {"c3": 2_416, "s4": 32, "output": 850}},
            inits=(({}, lambda model: inits.lecun_1998(model, lenet5_architecture(c3="dense", head="gaussian"))),),
            departures=("dense C3, plain tanh and a Gaussian head: the seed's simplifications of the paper",),
        ),
        skips=_cdist_skips(TORCH_LAYERS.name),
        prepare=_widen_gaussian_head,
        inert=(
            Inert(
                ("c1", "s2", "c3", "c5", "squash:*"),
                "PyTorch's default init keeps every pre-activation small: tanh is nearly linear there and the "
                "biases are lost beside the widened Gaussian head; weights 10 times larger bring both in",
                weights=_steeper,
            ),
        ),
    ),
    Case(
        name="subsampling",
        summary="LeNet-5's S2: each 2x2 block summed, times a trainable coefficient, plus a bias",
        build=partial(Subsampling, channels=6),
        inputs=InputSpace(
            dims=(6, (2, 30), (2, 30)), default=(2, 6, 28, 28), examples=(ModuleInput((2, 6, 4, 5), gradcheck=True),)
        ),
        pairs=(
            Pair(
                name="depthwise nn.Conv2d",
                other=depthwise_subsampling,
                state=Tied(),
                tolerance=Tolerance(
                    "table", "table", why="the block is summed and then multiplied here, each term multiplied there"
                ),
            ),
        ),
        inert=(Inert(("",), "its bias is 0 as built", weights=redraw_biases),),
    ),
    Case(
        name="sparse_conv2d",
        summary="LeNet-5's C3: output map i sees only the S2 maps of table I's column i",
        build=partial(SparseConv2d, in_channels=6, table=C3_TABLE, kernel_size=5),
        # C3's table with 2x2 kernels for gradcheck: every connection is still there, at a sixth of 5x5's cost.
        inputs=InputSpace(
            dims=(6, (5, 20), (5, 20)),
            default=(2, 6, 14, 14),
            examples=(ModuleInput((1, 6, 3, 3), {"kernel_size": 2}, gradcheck=True),),
        ),
        pairs=(
            Pair(
                name="16 literal convolutions",
                other=LiteralSparseConv2d,
                state=Literal(),
                tolerance=Tolerance(
                    "table",
                    "table",
                    why="the same terms summed in a different order: one 6-map convolution with zero kernels vs 16 "
                    "small ones",
                    overrides=(
                        Override(
                            "drawn",
                            torch.float32,
                            {"grad_atol": 1e-4},
                            why="a kernel entry's gradient sums N x H' x W' products (up to 2 x 16 x 16 = 512 at "
                            "drawn sizes) that cancel to near zero: reordered, float32 can be off by eps * 512 * "
                            "|term| ~ 1e-4 (measured 3.4e-5) where the table's atol (1e-5) covers O(1) values",
                        ),
                    ),
                ),
            ),
        ),
        paper=Paper(
            citation=LECUN_1998 + ", appendix A",
            inits=(({}, lambda _layer: inits.sparse_lecun_1998(_columns(C3_TABLE_PRINTED), kernel_size=5)),),
        ),
    ),
    Case(
        name="squash",
        summary="LeNet-5's squashing function 1.7159 tanh(2a/3)",
        build=Squash,
        inputs=InputSpace(
            dims=((1, 4), (1, 9), (1, 9)),
            default=(2, 6, 28, 28),
            scale=2.0,
            examples=(ModuleInput((2, 3, 4, 4), gradcheck=True),),
        ),
        pairs=(Pair(name="tanh written from the paper", other=lambda _: TanhSquash()),),
    ),
    Case(
        name="euclidean_rbf",
        summary="LeNet-5's output: squared distances to fixed +-1 prototypes",
        build=lambda: EuclideanRBF(prototypes()),
        inputs=InputSpace(dims=(84,), default=(2, 84), examples=(ModuleInput((3, 84), gradcheck=True),)),
        pairs=(Pair(name=CDIST, other=CdistRBF, tolerance=Tolerance("table", "table", why=CDIST_WHY)),),
        skips=_cdist_skips(CDIST),
    ),
    Case(
        name="gaussian_rbf",
        summary="the seed's head: exp(-||x - c||^2 / (2 sigma^2)) with trainable centres and widths",
        build=partial(GaussianRBF, in_features=84, out_features=10),
        inputs=InputSpace(
            dims=(84,),
            default=(2, 84),
            examples=(ModuleInput((2, 4), {"in_features": 4, "out_features": 3}, gradcheck=True),),
        ),
        pairs=(Pair(name=CDIST, other=CdistRBF, tolerance=Tolerance("table", "table", why=CDIST_WHY)),),
        paper=Paper(citation=SEED_NOTEBOOK, inits=(({}, lambda _layer: inits.GAUSSIAN_HEAD),)),
        skips=_cdist_skips(CDIST),
        prepare=_widen_gaussian_head,
    ),
)
