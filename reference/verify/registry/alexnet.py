"""AlexNet: Krizhevsky, Sutskever, Hinton 2012 (grouped, two towers, the seed notebook's) and Krizhevsky 2014 as
torchvision builds it; the paper's LRN and torchvision's adaptive pool, hand-written. Their numbers: sections 3 and 5
of the 2012 paper, torchvision's published metadata."""

from __future__ import annotations

from functools import partial

import torch
from torch import nn

from reference.models.alexnet import TORCHVISION_NAMES, alexnet, alexnet_architecture
from reference.models.alexnet2012 import (
    SEED_LRN_ALPHA,
    alexnet2012,
    alexnet2012_architecture,
    alexnet2012_seed,
    alexnet2012_two_tower,
    tower_architecture,
)
from reference.models.layers import AdaptiveAvgPool2d, LocalResponseNorm
from reference.verify import inits, port
from reference.verify.compare import Override, Tolerance
from reference.verify.counterparts import seed_sequential, seed_sequential_names, torch_lrn
from reference.verify.records import Case, Dropout, Inert, InputSpace, ModuleInput, Pair, Paper, Skip
from reference.verify.sensitivity import redraw_biases
from reference.verify.states import Rename

KRIZHEVSKY_2012 = (
    "Krizhevsky, Sutskever, Hinton. ImageNet classification with deep convolutional neural networks. NIPS 2012"
)
KRIZHEVSKY_2014 = "Krizhevsky. One weird trick for parallelizing convolutional neural networks. arXiv:1404.5997, 2014"
# Section 5: "We initialized the neuron biases in the second, fourth, and fifth convolutional layers, as well as in
# the fully-connected hidden layers, with the constant 1. [...] the remaining layers with the constant 0."
SECTION_5_BIAS_ONE = ("conv2", "conv4", "conv5", "fc6", "fc7")
# Section 4.2: "We use dropout in the first two fully-connected layers", each hidden neuron zeroed with probability
# 0.5; torchvision's classifier has Dropout before Linear layers 1 and 4 (fc6, fc7) alike.
KRIZHEVSKY_DROPOUT = Dropout(before=("fc6", "fc7"), p=0.5)
# Section 3.5's neurons per layer, as printed: "253,440-186,624-64,896-64,896-43,264-4096-4096-1000".
NEURONS = {
    "conv1": 290_400,
    "conv2": 186_624,
    "conv3": 64_896,
    "conv4": 64_896,
    "conv5": 43_264,
    "fc6": 4_096,
    "fc7": 4_096,
    "fc8": 1_000,
}
NEURONS_ERRATA = {"conv1": (253_440, "the paper prints 253,440; its own conv1 (96 maps of 55x55) has 290,400")}
LRN_BACKWARD = "backward: autograd through slices here, avg_pool3d's backward in torch"
EPS64, EPS32 = torch.finfo(torch.float64).eps, torch.finfo(torch.float32).eps


def _paper_2012(citation: str, table, departures: tuple[str, ...], **more) -> Paper:
    """What the 2012 paper states of a form of its network: 60,965,224 parameters, dropout before fc6 and fc7, its
    init (section 5)."""
    init = (({}, lambda model: inits.krizhevsky_2012(model, table(), SECTION_5_BIAS_ONE)),)
    return Paper(citation, {"trainable parameters": 60_965_224}, dropout=(KRIZHEVSKY_DROPOUT,), inits=init, departures=departures,
                 **more)  # fmt: skip


TORCHVISION_PATHS = TORCHVISION_NAMES | {"pool1": "features.2", "pool2": "features.5", "pool5": "features.12",
                                         "avgpool": "avgpool"}  # fmt: skip
SEED_TABLE = partial(alexnet2012_architecture, lrn_groups=1, lrn_alpha=SEED_LRN_ALPHA)
SEED_NAMES = seed_sequential_names(SEED_TABLE())

# What the grouped LRN (groups=2) must reject, and the "got" clause its message must carry.
LRN_ACCEPTS = (r"^LocalResponseNorm expects a floating-point tensor \(N, C, \*\) of 3 or more dimensions with C a "
               r"multiple of groups=2; ")  # fmt: skip
LRN_ERRORS = (
    ModuleInput((4, 6), error=(ValueError, LRN_ACCEPTS + r"got shape \(4, 6\), dtype torch\.float32 \(2-D\)")),
    ModuleInput(value=lambda: torch.ones(1, 4, 5, 5, dtype=torch.int64),
                error=(TypeError, LRN_ACCEPTS + r"got shape \(1, 4, 5, 5\), dtype torch\.int64 \(not floating point\)")),
    ModuleInput((1, 5, 5, 5), error=(ValueError, LRN_ACCEPTS + r"got shape \(1, 5, 5, 5\), dtype torch\.float32 \(5 channels\)")),
    ModuleInput((1, 5, 7), error=(ValueError, LRN_ACCEPTS + r"got shape \(1, 5, 7\), dtype torch\.float32 \(5 channels\)")),
    ModuleInput(value=lambda: [[1.0]], error=(TypeError, LRN_ACCEPTS + "got list")),
)  # fmt: skip
LRN_BAD_OPTIONS = tuple(
    ModuleInput(
        options={"size": size, "groups": groups},
        error=(ValueError, rf"needs size >= 1 and groups >= 1, got size={size}, groups={groups}"),
    )
    for size, groups in ((0, 1), (5, 0))
)
LRN_OPTIONS = {"size": range(1, 8), "alpha": (1e-4, 1e-3, 2e-5, 0.1), "beta": (0.5, 0.75, 1.0), "k": (1.0, 2.0)}


def _inert_2012(prefix: str = "") -> tuple[Inert, ...]:
    """What the 2012 network's init leaves idle (each tower's modules under ``prefix``)."""
    return (
        Inert(
            tuple(prefix + name for name in ("conv1", "conv3", "fc8", "relu:1", "relu:2", "relu:4", "relu:5")),
            "the paper's biases: 0 in conv1, conv3 and fc8 (nothing to drop); 1 in conv2, conv4 and conv5, whose "
            "pre-activations (weights of standard deviation 0.01) are then all positive, so that their ReLUs (and conv1's, its "
            "output then swamped) pass everything",
            weights=redraw_biases,
        ),
        Inert(
            (prefix + "lrn1", prefix + "lrn2"),
            "activations of ~1e-2 at the paper's init: alpha times the window's sum of squares is far below k = 2, "
            "so the LRN is x / 2^0.75 to within float32 whatever alpha is; inputs 1000 times larger bring it in",
            scale=1000.0,
        ),
    )


CASES = (
    Case(
        name="alexnet2012",
        summary="AlexNet as published: grouped conv2/4/5, LRN confined to each GPU's maps, paper init",
        build=alexnet2012,
        table=alexnet2012_architecture,
        pairs=(
            Pair(
                name="AlexNet2012TwoTower",
                other=port.two_tower_like,
                state=port.TOWERS_MAP,
                back=port.grouped_like,
                model="alexnet2012_two_tower",
                layers={
                    name: ("tower_a." + name, "tower_b." + name)
                    for name in tower_architecture(alexnet2012_architecture(), 0)
                },
                tolerance=Tolerance(
                    "table",
                    "table",
                    why="a grouped convolution and two separate convolutions are different kernels, free to block "
                    "their reductions differently",
                ),
                same_dropout=True,  # one mask over the joined (N, 9216) and (N, 4096), drawn in the same order
            ),
        ),
        paper=_paper_2012(
            KRIZHEVSKY_2012,
            alexnet2012_architecture,
            departures=(
                "input 227x227: the paper says 224, which its stride-4 11x11 conv1 cannot turn into 55x55 maps",
                "the training recipe (augmentation, PCA lighting, momentum schedule) is not part of the model",
            ),
            breakdown={"neurons": NEURONS},
            errata={"neurons": NEURONS_ERRATA},
        ),
        inert=_inert_2012(),
    ),
    Case(
        name="alexnet2012_two_tower",
        summary="AlexNet as published, written literally as two towers crossing at conv3, fc6, fc7, fc8",
        build=alexnet2012_two_tower,
        table=alexnet2012_architecture,
        paper=_paper_2012(
            KRIZHEVSKY_2012,
            alexnet2012_architecture,
            departures=("fc8's outputs are split between the towers, the first half (rounded up) in tower A",),
        ),
        inert=_inert_2012("tower_?."),
    ),
    Case(
        name="alexnet2012_seed",
        summary="the seed notebook's AlexNet: LRN across all 96/256 maps with nn.LocalResponseNorm(5, alpha=1e-4)",
        build=alexnet2012_seed,
        table=SEED_TABLE,
        pairs=(
            Pair(
                name="seed nn.Sequential",
                other=seed_sequential,
                state=Rename(SEED_NAMES),
                layers=SEED_NAMES,
                tolerance=Tolerance("exact", "table", why=LRN_BACKWARD),
                same_dropout=True,
            ),
        ),
        paper=_paper_2012(
            "the seed notebook (after " + KRIZHEVSKY_2012 + ")",
            SEED_TABLE,
            departures=("nn.LocalResponseNorm(alpha=1e-4) divides alpha by the size: the paper's formula with 2e-5",),
        ),
        inert=_inert_2012(),
    ),
    Case(
        name="alexnet",
        summary="torchvision's AlexNet ('One weird trick'), hand-written with its operations in its order",
        build=alexnet,
        table=alexnet_architecture,
        pairs=(
            Pair(
                name="torchvision AlexNet",
                other=port.torchvision_alexnet_like,
                state=port.ALEXNET_NAMES,
                back=port.alexnet_like,
                model="torchvision:alexnet",
                layers={
                    name: TORCHVISION_PATHS[name] for name in alexnet_architecture().layers if name in TORCHVISION_PATHS
                },
                tolerance=Tolerance(
                    overrides=(
                        Override(
                            "cuda",
                            torch.float32,
                            {"grad_atol": 2e-4},
                            why="at the default input (63x63) pool5 is 1x1 and the adaptive pool spreads it over "
                            "6x6. On CUDA torchvision's pool backward adds the 36 gradients of each input element with "
                            "atomics, in an order that changes from call to call (use_deterministic_algorithms refuses "
                            "it); this model's adds them in a fixed order. The reordered float32 sums, carried back "
                            "through conv5 ... conv3, show absolutely where conv2's weight gradient cancels: measured "
                            "2.1e-5 to 5.7e-5 over 5 runs on an H200, past the table's atol (1e-5). Bound: 3.5x the "
                            "largest",
                        ),
                    )
                ),
                same_dropout=True,
            ),
        ),
        paper=Paper(
            citation=KRIZHEVSKY_2014 + "; torchvision.models.AlexNet_Weights.IMAGENET1K_V1.meta",
            totals={"trainable parameters": 61_100_840, "multiply-accumulates": 714_188_480},
            dropout=(KRIZHEVSKY_DROPOUT,),
            inits=(({}, lambda model: inits.torch_default(model, alexnet_architecture())),),
            departures=(
                "layers named after the papers (conv1..fc8), not features.N / classifier.N",
                "the adaptive average pool's backward is deterministic on CUDA (torchvision's raises in deterministic "
                "mode)",
                "input validated where it enters",
            ),
        ),
        inert=(
            Inert(
                ("avgpool",),
                "at the default side 63 pool5 is 1x1 and the adaptive pool copies it to 6x6 (so would a max); at 159 "
                "it is 4x4 and the 6x6 windows overlap",
                side=159,
            ),
        ),
        # Half of every width: torch's default init scales each weight by its fan-in, so the signal keeps its size,
        # and its counterpart is torchvision's at the same widths. (A quarter leaves conv1 16 maps, whose 3x3 pooling
        # windows at the default input all hold a positive value: relu1 would act on none.)
        narrow=2,
    ),
    Case(
        name="local_response_norm",
        summary="the paper's LRN (alpha not divided by the size) vs nn.LocalResponseNorm(alpha * size)",
        build=partial(LocalResponseNorm, size=5, alpha=1e-4, beta=0.75, k=2.0),
        # conv1's 96 maps (at 13x13 to keep the suite light), scaled so that alpha * sum(a^2) is comparable with
        # k and the normalisation really bends the output (post-ReLU activations of a trained net are O(10)).
        inputs=InputSpace(
            dims=((1, 12), (1, 9), (1, 9)),
            default=(2, 96, 13, 13),
            scale=10.0,
            rectified=True,
            options=LRN_OPTIONS,
            examples=(
                ModuleInput((2, 7, 3, 3), {"alpha": 1e-2}, gradcheck=True),
                ModuleInput((1, 5, 7), {"size": 3, "alpha": 1e-2}, gradcheck=True),
                # PyTorch's own module inputs for nn.LocalResponseNorm (torch/testing/_internal/common_modules.py),
                # its alpha divided by the size into the paper's convention.
                ModuleInput((1, 5, 7), {"size": 3, "alpha": 1e-4 / 3, "beta": 0.75, "k": 1.0}, "1d"),
                ModuleInput((1, 5, 7, 7), {"size": 2, "alpha": 1e-4 / 2, "beta": 0.75, "k": 1.0}, "2d_uneven_pad"),
                ModuleInput((1, 5, 7, 7, 7), {"size": 1, "alpha": 1.0, "beta": 0.5, "k": 2.0}, "3d_custom_params"),
                *LRN_BAD_OPTIONS,
            ),
        ),
        pairs=(
            Pair(name="nn.LocalResponseNorm", other=torch_lrn, tolerance=Tolerance("exact", "table", why=LRN_BACKWARD)),
        ),
    ),
    Case(
        name="local_response_norm_grouped",
        summary="the paper's LRN with windows stopping at each GPU's maps vs nn.LocalResponseNorm per group",
        build=partial(LocalResponseNorm, size=5, alpha=1e-4, beta=0.75, k=2.0, groups=2),
        inputs=InputSpace(
            dims=((1, 36), (1, 9), (1, 9)),
            default=(2, 96, 13, 13),
            scale=10.0,
            rectified=True,
            channels_multiple_of="groups",
            options={"groups": (2, 3), **LRN_OPTIONS},
            examples=(
                ModuleInput((1, 8, 2, 3), {"size": 3, "alpha": 1e-2, "k": 1.0}, gradcheck=True),
                *LRN_ERRORS,
                *LRN_BAD_OPTIONS,
            ),
        ),
        pairs=(
            Pair(
                name="nn.LocalResponseNorm per group",
                other=torch_lrn,
                tolerance=Tolerance(
                    "exact",
                    "table",
                    why=LRN_BACKWARD,
                    overrides=tuple(
                        Override(
                            "drawn",
                            dtype,
                            {"rtol": 2 * eps, "atol": 0.0},
                            why="torch's CPU pow runs a vectorised (SLEEF) body and a scalar tail, which round "
                            "x**beta one ulp apart on ~2% of elements, so a result depends on where its element falls "
                            "in the loop: one loop over (N, C, H, W) here, one per group's slice there. One ulp in the "
                            "denominator plus the division's half ulp: rtol = 2 eps (measured: at most 1.41 eps over "
                            "5,000 drawn cases). At the default input every group's slice is a multiple of the vector "
                            "width: bitwise",
                        )
                        for dtype, eps in ((torch.float64, EPS64), (torch.float32, EPS32))
                    ),
                ),
            ),
        ),
    ),
    Case(
        name="adaptive_avg_pool2d",
        summary="torch's adaptive average pool with a backward that is deterministic on CUDA",
        build=partial(AdaptiveAvgPool2d, output_size=6),
        inputs=InputSpace(
            dims=((1, 4), (1, 20), (1, 20)),
            default=(2, 8, 13, 11),
            options={"output_size": (1, 3, 6, 7)},
            examples=(
                ModuleInput((2, 2, 5, 7), {"output_size": 3}, gradcheck=True),
                ModuleInput((1, 2, 3, 3), {"output_size": 3}, gradcheck=True),
                # Bins of three that overlap (7 to 3: rows 0-2, 2-4, 4-6): each share divided by 3 twice, as torch's
                # CPU backward divides, compared bit for bit (a division by 9 rounds apart; by powers of 2 it would not).
                ModuleInput((2, 4, 7, 7), {"output_size": 3}, "overlapping_thirds"),
            ),
        ),
        # Forward: torch's kernel. Backward: each bin's share added in row-major order, torch's CPU order.
        pairs=(Pair(name="nn.AdaptiveAvgPool2d", other=lambda pool: nn.AdaptiveAvgPool2d(pool.output_size)),),
        skips=(
            Skip(
                "onnx-legacy",
                "torch's legacy ONNX exporter takes an adaptive pool only where the output size divides the input's "
                "(13 x 11 to 6 x 6 here)",
            ),
        ),
    ),
)
