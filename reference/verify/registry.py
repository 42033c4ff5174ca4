"""The case registry: every model and hand-written layer, with its counterparts, facts and departures.

Adding a model is one model file (:mod:`reference.models`) and one :class:`~reference.verify.cases.Case`
here; every test, ``python -m reference`` and the benchmarks pick it up.
"""

from __future__ import annotations

from functools import partial

import torch
import torchvision
from torch import nn

from reference.models.alexnet import alexnet_architecture
from reference.models.alexnet2012 import SEED_LRN_ALPHA, alexnet2012_architecture, tower_architecture
from reference.models.bitmaps import prototypes
from reference.models.builders import get_model_builder
from reference.models.layers import (
    AdaptiveAvgPool2d,
    EuclideanRBF,
    GaussianRBF,
    LocalResponseNorm,
    SparseConv2d,
    Squash,
    Subsampling,
)
from reference.models.lenet import C3_TABLE, lenet5_architecture
from reference.models.tables import Architecture
from reference.models.vgg import (
    LAST_POOL,
    TABLE_1,
    TORCHVISION_BUILDERS,
    TORCHVISION_CONFIGS,
    torchvision_names,
    torchvision_paths,
    vgg2014_architecture,
    vgg2014_dense_architecture,
    vgg_architecture,
)
from reference.verify import inits, port
from reference.verify.cases import Case, Counterpart, Facts, InputSpace, ModuleInput, QuotedTable
from reference.verify.counterparts import (
    AveragedDenseVGG,
    CdistRBF,
    LiteralSparseConv2d,
    PerGroup,
    TanhSquash,
    TorchLayersLeNet5,
    WindowedVGGHead,
    alexnet2012_torch_layers,
    alexnet2012_torch_layers_names,
    depthwise_subsampling,
    literal_grads,
    subsampling_grads,
)

__all__ = ["CASES", "get_case"]

LECUN_1998 = "LeCun, Bottou, Bengio, Haffner. Gradient-based learning applied to document recognition. Proc. IEEE, 1998"
KRIZHEVSKY_2012 = (
    "Krizhevsky, Sutskever, Hinton. ImageNet classification with deep convolutional neural networks. NIPS 2012"
)
# Section 5: "We initialized the neuron biases in the second, fourth, and fifth convolutional layers, as well as in
# the fully-connected hidden layers, with the constant 1. [...] the remaining layers with the constant 0."
KRIZHEVSKY_BIAS_ONE = ("conv2", "conv4", "conv5", "fc6", "fc7")
# Section 4.2: "We use dropout in the first two fully-connected layers", each hidden neuron zeroed with
# probability 0.5; torchvision's classifier has Dropout before Linear layers 1 and 4 (fc6, fc7) alike.
DROPOUT_BEFORE = ("fc6", "fc7")
KRIZHEVSKY_2014 = "Krizhevsky. One weird trick for parallelizing convolutional neural networks. arXiv:1404.5997, 2014"
REORDERED = "the same terms summed in a different order"
LRN_BACKWARD = "backward: autograd through slices here, avg_pool3d's backward in torch"
EPS64, EPS32 = torch.finfo(torch.float64).eps, torch.finfo(torch.float32).eps
# What torch's own tools cannot take in a counterpart (tests/test_conformance.py expects them to fail).
CDIST_UNSUPPORTED = {
    "jvp": "torch.cdist has no forward-mode derivative (_cdist_forward)",
    "onnx-dynamo": "torch.onnx's dynamo exporter has no translation of aten._cdist_forward",
}

# Table I of LeCun et al. 1998 as printed: a row per S2 map, a column per C3 map, X where they connect.
C3_TABLE_PRINTED = (
    "X...XXX..XXXX.XX",
    "XX...XXX..XXXX.X",
    "XXX...XXX..X.XXX",
    ".XXX..XXXX..X.XX",
    "..XXX..XXXX.XX.X",
    "...XXX..XXXX.XXX",
)


def _columns(printed: tuple[str, ...]) -> tuple[tuple[int, ...], ...]:
    """Each column of a printed connection table: the rows marked X in it."""
    return tuple(
        tuple(row for row, line in enumerate(printed) if line[column] == "X") for column in range(len(printed[0]))
    )


def _widen_gaussian_head(model: nn.Module) -> None:
    """The seed's head starts at width 1, where exp(-||x - c||^2 / 2) is ~1e-19 for every class and any two
    implementations agree within any tolerance. Width 10 puts the outputs near 0.4."""
    head = model.output if hasattr(model, "output") else model
    with torch.no_grad():
        head.widths.fill_(10.0)


def _torch_lrn(lrn: LocalResponseNorm) -> nn.Module:
    """torch's LRN per channel group, alpha times the size (torch divides it by the size)."""
    return PerGroup(
        lambda: nn.LocalResponseNorm(lrn.size, alpha=lrn.size * lrn.alpha, beta=lrn.beta, k=lrn.k), lrn.groups
    )


def _lrn_error_inputs() -> list[tuple[object, type[Exception], str]]:
    """What the grouped LRN (groups=2) must reject, and the "got" clause its message must carry."""
    accepts = (r"^LocalResponseNorm expects a floating-point tensor \(N, C, \*\) of 3 or more dimensions with C a "
               r"multiple of groups=2; ")  # fmt: skip
    return [
        (torch.rand(4, 6), ValueError, accepts + r"got shape \(4, 6\), dtype torch\.float32 \(2-D\)"),
        (torch.ones(1, 4, 5, 5, dtype=torch.int64), TypeError,
         accepts + r"got shape \(1, 4, 5, 5\), dtype torch\.int64 \(not floating point\)"),
        (torch.rand(1, 5, 5, 5), ValueError, accepts + r"got shape \(1, 5, 5, 5\), dtype torch\.float32 \(5 channels\)"),
        (torch.rand(1, 5, 7), ValueError, accepts + r"got shape \(1, 5, 7\), dtype torch\.float32 \(5 channels\)"),
        ([[1.0]], TypeError, accepts + "got list"),
    ]  # fmt: skip


_LRN_ERROR_OPTIONS = tuple(
    (
        {"size": size, "groups": groups},
        ValueError,
        rf"needs size >= 1 and groups >= 1, got size={size}, groups={groups}",
    )
    for size, groups in ((0, 1), (5, 0))
)


def _torchvision_meta() -> dict:
    """torchvision's published AlexNet metadata (no download: the weights enum carries it)."""
    return dict(torchvision.models.AlexNet_Weights.IMAGENET1K_V1.meta)


_LENET_TORCH_LAYERS = Counterpart(
    name="LeNet-5 in torch layers",
    port=TorchLayersLeNet5,
    layers={name: name for name in ("c1", "s2", "c3", "s4", "c5", "f6")},
    grads=lambda counterpart, grads: counterpart.grads_to_reference(grads),
    exact_forward=False,
    exact_grads=False,
    why_not_exact="subsampling multiplies after summing the block, the depthwise conv before; the head "
    "sums squared differences where torch.cdist takes a square root that is squared again",
    unsupported=CDIST_UNSUPPORTED,
)
_LENET_PARAMS = {"c1": 156, "s2": 12, "c5": 48_120, "f6": 10_164}

_TORCHVISION_PATHS = port.TORCHVISION_NAMES | {
    "pool1": "features.2",
    "pool2": "features.5",
    "pool5": "features.12",
    "avgpool": "avgpool",
}
_TORCHVISION_ALEXNET = Counterpart(
    name="torchvision AlexNet",
    port=port.alexnet_to_torchvision,
    port_back=port.alexnet_from_torchvision,
    library=torchvision.models.alexnet,  # weights=None by default
    weights=lambda: torchvision.models.AlexNet_Weights.IMAGENET1K_V1,
    layers={name: _TORCHVISION_PATHS[name] for name in alexnet_architecture().layers if name in _TORCHVISION_PATHS},
    grads=lambda _c, grads: port.rename_state(grads, {v: k for k, v in port.TORCHVISION_NAMES.items()}),
    exact_forward=True,
    exact_grads=True,
    # At the default input (63x63) pool5 is 1x1 and the adaptive pool spreads it over 6x6. On CUDA torchvision's
    # pool backward adds the 36 gradients of each input element with atomics, in an order that changes from call
    # to call (use_deterministic_algorithms refuses it); this model's adds them in a fixed order. The reordered
    # float32 sums, carried back through conv5 ... conv3, show absolutely where conv2's weight gradient cancels:
    # measured 2.1e-5 to 5.7e-5 over 5 runs on an H200, past the table's atol (1e-5). Bound: 3.5x the largest.
    cuda_tolerance={torch.float32: {"grad_atol": 2e-4}},
    same_dropout=True,
    shares=True,
)

_TWO_TOWER_LAYERS = {
    name: ("tower_a." + name, "tower_b." + name) for name in tower_architecture(alexnet2012_architecture(), 0)
}

_SEED_NAMES = alexnet2012_torch_layers_names(alexnet2012_architecture(lrn_groups=1, lrn_alpha=SEED_LRN_ALPHA))

_LAYERS = (
    Case(
        name="local-response-norm",
        summary="the paper's LRN (alpha not divided by the size) vs nn.LocalResponseNorm(alpha * size)",
        build=partial(LocalResponseNorm, size=5, alpha=1e-4, beta=0.75, k=2.0),
        # conv1's 96 maps (at 13x13 to keep the suite light), scaled so that alpha * sum(a^2) is comparable with
        # k and the normalisation really bends the output (post-ReLU activations of a trained net are O(10)).
        inputs=InputSpace(dims=((1, 12), (1, 9), (1, 9)), default=(2, 96, 13, 13), scale=10.0, rectified=True),
        options={"size": range(1, 8), "alpha": (1e-4, 1e-3, 2e-5, 0.1), "beta": (0.5, 0.75, 1.0), "k": (1.0, 2.0)},
        counterparts=(
            Counterpart(
                name="nn.LocalResponseNorm",
                port=_torch_lrn,
                exact_forward=True,
                exact_grads=False,
                why_not_exact=LRN_BACKWARD,
            ),
        ),
        gradcheck=(ModuleInput((2, 7, 3, 3), {"alpha": 1e-2}), ModuleInput((1, 5, 7), {"size": 3, "alpha": 1e-2})),
        # PyTorch's own module inputs for nn.LocalResponseNorm (torch/testing/_internal/common_modules.py), its
        # alpha divided by the size into the paper's convention.
        module_inputs=(
            ModuleInput((1, 5, 7), {"size": 3, "alpha": 1e-4 / 3, "beta": 0.75, "k": 1.0}, "1d"),
            ModuleInput((1, 5, 7, 7), {"size": 2, "alpha": 1e-4 / 2, "beta": 0.75, "k": 1.0}, "2d_uneven_pad"),
            ModuleInput((1, 5, 7, 7, 7), {"size": 1, "alpha": 1.0, "beta": 0.5, "k": 2.0}, "3d_custom_params"),
        ),
        error_options=_LRN_ERROR_OPTIONS,
    ),
    Case(
        name="local-response-norm-grouped",
        summary="the paper's LRN with windows stopping at each GPU's maps vs nn.LocalResponseNorm per group",
        build=partial(LocalResponseNorm, size=5, alpha=1e-4, beta=0.75, k=2.0, groups=2),
        inputs=InputSpace(
            dims=((1, 36), (1, 9), (1, 9)),
            default=(2, 96, 13, 13),
            scale=10.0,
            rectified=True,
            channels_multiple_of="groups",
        ),
        options={
            "groups": (2, 3),
            "size": range(1, 8),
            "alpha": (1e-4, 1e-3, 2e-5, 0.1),
            "beta": (0.5, 0.75, 1.0),
            "k": (1.0, 2.0),
        },
        counterparts=(
            Counterpart(
                name="nn.LocalResponseNorm per group",
                port=_torch_lrn,
                exact_forward=True,
                exact_grads=False,
                # torch's CPU pow runs a vectorised (SLEEF) body and a scalar tail, which round x**beta one ulp
                # apart on ~2% of elements, so a result depends on where its element falls in the loop: one
                # loop over (N, C, H, W) here, one per group's slice there. One ulp in the denominator plus the
                # division's half ulp: rtol = 2 eps (measured: at most 1.41 eps over 5,000 drawn cases). At the
                # default input every group's slice is a multiple of the vector width: bitwise.
                drawn_tolerance={
                    torch.float64: {"rtol": 2 * EPS64, "atol": 0.0},
                    torch.float32: {"rtol": 2 * EPS32, "atol": 0.0},
                },
                why_not_exact=LRN_BACKWARD,
            ),
        ),
        gradcheck=(ModuleInput((1, 8, 2, 3), {"size": 3, "alpha": 1e-2, "k": 1.0}),),
        error_inputs=_lrn_error_inputs,
        error_options=_LRN_ERROR_OPTIONS,
    ),
    Case(
        name="subsampling",
        summary="LeNet-5's S2: each 2x2 block summed, times a trainable coefficient, plus a bias",
        build=partial(Subsampling, channels=6),
        inputs=InputSpace(dims=(6, (2, 30), (2, 30)), default=(2, 6, 28, 28)),
        counterparts=(
            Counterpart(
                name="depthwise nn.Conv2d",
                port=depthwise_subsampling,
                grads=subsampling_grads,
                exact_forward=False,
                exact_grads=False,
                why_not_exact="the block is summed and then multiplied here, each term multiplied there",
            ),
        ),
        gradcheck=(ModuleInput((2, 6, 4, 5)),),
    ),
    Case(
        name="sparse-conv2d",
        summary="LeNet-5's C3: output map i sees only the S2 maps of table I's column i",
        build=partial(SparseConv2d, in_channels=6, table=C3_TABLE, kernel_size=5),
        inputs=InputSpace(dims=(6, (5, 20), (5, 20)), default=(2, 6, 14, 14)),
        counterparts=(
            Counterpart(
                name="16 literal convolutions",
                port=LiteralSparseConv2d,
                grads=literal_grads,
                exact_forward=False,
                exact_grads=False,
                why_not_exact=REORDERED + ": one 6-map convolution with zero kernels vs 16 small ones",
                # A kernel entry's gradient sums N x H' x W' products (up to 2 x 16 x 16 = 512 at drawn
                # sizes) that cancel to near zero: reordered, float32 can be off by eps * 512 * |term| ~
                # 1e-4 (measured 3.4e-5) where the table's atol (1e-5) covers O(1) values.
                drawn_tolerance={torch.float32: {"grad_atol": 1e-4}},
            ),
        ),
        # C3's table with 2x2 kernels: every connection is still there, at a sixth of 5x5's gradcheck cost.
        gradcheck=(ModuleInput((1, 6, 3, 3), {"kernel_size": 2}),),
        init=lambda _layer: inits.sparse_lecun_1998(_columns(C3_TABLE_PRINTED), kernel_size=5),
    ),
    Case(
        name="squash",
        summary="LeNet-5's squashing function 1.7159 tanh(2a/3)",
        build=Squash,
        inputs=InputSpace(dims=((1, 4), (1, 9), (1, 9)), default=(2, 6, 28, 28), scale=2.0),
        counterparts=(
            Counterpart(
                name="tanh written from the paper", port=lambda _: TanhSquash(), exact_forward=True, exact_grads=True
            ),
        ),
        gradcheck=(ModuleInput((2, 3, 4, 4)),),
    ),
    Case(
        name="euclidean-rbf",
        summary="LeNet-5's output: squared distances to fixed +-1 prototypes",
        build=lambda: EuclideanRBF(prototypes()),
        inputs=InputSpace(dims=(84,), default=(2, 84)),
        counterparts=(
            Counterpart(
                name="torch.cdist",
                port=CdistRBF,
                exact_forward=False,
                exact_grads=False,
                why_not_exact="torch.cdist takes a square root that is squared again",
                unsupported=CDIST_UNSUPPORTED,
            ),
        ),
        gradcheck=(ModuleInput((3, 84)),),
    ),
    Case(
        name="gaussian-rbf",
        summary="the seed's head: exp(-||x - c||^2 / (2 sigma^2)) with trainable centres and widths",
        build=partial(GaussianRBF, in_features=84, out_features=10),
        inputs=InputSpace(dims=(84,), default=(2, 84)),
        init=lambda _layer: inits.GAUSSIAN_HEAD,
        counterparts=(
            Counterpart(
                name="torch.cdist",
                port=CdistRBF,
                grads=lambda _c, grads: grads,
                exact_forward=False,
                exact_grads=False,
                why_not_exact="torch.cdist takes a square root that is squared again",
                unsupported=CDIST_UNSUPPORTED,
            ),
        ),
        gradcheck=(ModuleInput((2, 4), {"in_features": 4, "out_features": 3}),),
        gradcheck_reinit=False,  # randn centres and unit widths are already well-conditioned at 4 features
        prepare=_widen_gaussian_head,
    ),
    Case(
        name="adaptive-avg-pool2d",
        summary="torch's adaptive average pool with a backward that is deterministic on CUDA",
        build=partial(AdaptiveAvgPool2d, output_size=6),
        inputs=InputSpace(dims=((1, 4), (1, 20), (1, 20)), default=(2, 8, 13, 11)),
        options={"output_size": (1, 3, 6, 7)},
        counterparts=(
            # Forward: torch's kernel. Backward: each bin's share added in row-major order, torch's CPU order.
            Counterpart(
                name="nn.AdaptiveAvgPool2d",
                port=lambda pool: nn.AdaptiveAvgPool2d(pool.output_size),
                exact_forward=True,
                exact_grads=True,
            ),
        ),
        gradcheck=(ModuleInput((2, 2, 5, 7), {"output_size": 3}), ModuleInput((1, 2, 3, 3), {"output_size": 3})),
        unsupported={
            "onnx-legacy": "torch's legacy ONNX exporter takes an adaptive pool only where the output size divides the "
            "input's (13 x 11 to 6 x 6 here)"
        },
    ),
)

_MODELS = (
    Case(
        name="lenet5",
        summary="LeNet-5 as published: sparse C3, squashing, fixed +-1 RBF prototypes",
        build=get_model_builder("lenet5"),
        table=lenet5_architecture,
        init=lambda model: inits.lecun_1998(model, lenet5_architecture(), _columns(C3_TABLE_PRINTED)),
        counterparts=(_LENET_TORCH_LAYERS,),
        facts=Facts(
            citation=LECUN_1998,
            trainable_params=60_000,
            params_per_layer=_LENET_PARAMS | {"c3": 1_516, "s4": 32, "output": 0},
            connections_per_layer={
                "c1": 122_304,
                "s2": 5_880,
                "c3": 151_600,
                "s4": 2_000,
                "c5": 48_120,
                "f6": 10_164,
                "output": 840,
            },
            total_connections=340_908,
            tables={"C3 (table I)": QuotedTable(C3_TABLE_PRINTED, _columns, lambda model: model.c3.table)},
            fixed_buffers={"output.prototypes": ((10, 84), frozenset({-1.0, 1.0}))},
        ),
        departures=(
            "the RBF prototypes' 7x12 pixels are drawn here: the paper does not publish them as data",
            "the loss (the paper's MAP criterion) is not part of the model",
        ),
    ),
    Case(
        name="lenet5-seed",
        summary="the seed notebook's LeNet-5: dense C3, tanh, Gaussian RBF head with trainable centres and widths",
        build=get_model_builder("lenet5-seed"),
        table=partial(lenet5_architecture, c3="dense", head="gaussian"),
        init=lambda model: inits.lecun_1998(model, lenet5_architecture(c3="dense", head="gaussian")),
        counterparts=(_LENET_TORCH_LAYERS,),
        prepare=_widen_gaussian_head,
        facts=Facts(
            citation="the seed notebook (a simplification of " + LECUN_1998 + ")",
            trainable_params=61_750,
            params_per_layer=_LENET_PARAMS | {"c3": 2_416, "s4": 32, "output": 850},
        ),
        departures=("dense C3, plain tanh and a Gaussian head: the seed's simplifications of the paper",),
    ),
    Case(
        name="alexnet2012",
        summary="AlexNet as published: grouped conv2/4/5, LRN confined to each GPU's maps, paper init",
        build=get_model_builder("alexnet2012"),
        table=alexnet2012_architecture,
        init=lambda model: inits.krizhevsky_2012(model, alexnet2012_architecture(), KRIZHEVSKY_BIAS_ONE),
        counterparts=(
            Counterpart(
                name="AlexNet2012TwoTower",
                port=port.two_tower_from_grouped,
                port_back=port.grouped_from_two_tower,
                case="alexnet2012-two-tower",
                layers=_TWO_TOWER_LAYERS,
                grads=lambda _c, grads: port.grouped_parts_from_two_tower(grads),
                exact_forward=False,
                exact_grads=False,
                why_not_exact="a grouped convolution and two separate convolutions are different kernels, "
                "free to block their reductions differently",
                same_dropout=True,  # one mask over the joined (N, 9216) and (N, 4096), drawn in the same order
                shares=True,
            ),
        ),
        facts=Facts(
            citation=KRIZHEVSKY_2012,
            trainable_params=60_965_224,
            dropout_before=DROPOUT_BEFORE,
            neurons_per_layer={
                "conv1": 290_400,
                "conv2": 186_624,
                "conv3": 64_896,
                "conv4": 64_896,
                "conv5": 43_264,
                "fc6": 4_096,
                "fc7": 4_096,
                "fc8": 1_000,
            },
            errata={"conv1": (253_440, "the paper prints 253,440; its own conv1 (96 maps of 55x55) has 290,400")},
        ),
        departures=(
            "input 227x227: the paper says 224, which its stride-4 11x11 conv1 cannot turn into 55x55 maps",
            "the training recipe (augmentation, PCA lighting, momentum schedule) is not part of the model",
        ),
    ),
    Case(
        name="alexnet2012-two-tower",
        summary="AlexNet as published, written literally as two towers crossing at conv3, fc6, fc7, fc8",
        build=get_model_builder("alexnet2012-two-tower"),
        table=alexnet2012_architecture,
        init=lambda model: inits.krizhevsky_2012(model, alexnet2012_architecture(), KRIZHEVSKY_BIAS_ONE),
        facts=Facts(citation=KRIZHEVSKY_2012, trainable_params=60_965_224, dropout_before=DROPOUT_BEFORE),
        departures=("fc8's outputs are split between the towers, the first half (rounded up) in tower A",),
        # Its every layer runs in the default run as alexnet2012's counterpart (forward, gradients, train mode,
        # the ports both ways); its own battery repeats that code in -m slow.
        default_run="light",
    ),
    Case(
        name="alexnet2012-seed",
        summary="the seed notebook's AlexNet: LRN across all 96/256 maps with nn.LocalResponseNorm(5, alpha=1e-4)",
        build=get_model_builder("alexnet2012-seed"),
        table=partial(alexnet2012_architecture, lrn_groups=1, lrn_alpha=SEED_LRN_ALPHA),
        init=lambda model: inits.krizhevsky_2012(
            model, alexnet2012_architecture(lrn_groups=1, lrn_alpha=SEED_LRN_ALPHA), KRIZHEVSKY_BIAS_ONE
        ),
        counterparts=(
            Counterpart(
                name="seed nn.Sequential",
                port=alexnet2012_torch_layers,
                layers=_SEED_NAMES,
                grads=lambda _c, grads: port.rename_state(grads, {v: k for k, v in _SEED_NAMES.items()}),
                exact_forward=True,
                exact_grads=False,
                why_not_exact=LRN_BACKWARD,
                same_dropout=True,
                shares=True,
            ),
        ),
        facts=Facts(
            citation="the seed notebook (after " + KRIZHEVSKY_2012 + ")",
            trainable_params=60_965_224,
            dropout_before=DROPOUT_BEFORE,
        ),
        departures=("nn.LocalResponseNorm(alpha=1e-4) divides alpha by the size: the paper's formula with 2e-5",),
        # alexnet2012's code with one LRN group and another alpha: its pair against the seed's nn.Sequential covers
        # what differs; the rest of its battery repeats alexnet2012's in -m slow.
        default_run="smoke",
    ),
    Case(
        name="alexnet",
        summary="torchvision's AlexNet ('One weird trick'), hand-written with its operations in its order",
        build=get_model_builder("alexnet"),
        table=alexnet_architecture,
        init=lambda model: inits.torch_default(model, alexnet_architecture()),
        counterparts=(_TORCHVISION_ALEXNET,),
        facts=Facts(
            citation=KRIZHEVSKY_2014 + "; torchvision.models.AlexNet_Weights.IMAGENET1K_V1.meta",
            trainable_params=61_100_840,
            dropout_before=DROPOUT_BEFORE,
            macs=714_188_480,
            macs_side=224,
            library_meta=_torchvision_meta,
        ),
        departures=(
            "layers named after the papers (conv1..fc8), not features.N / classifier.N",
            "the adaptive average pool's backward is deterministic on CUDA (torchvision's raises in deterministic mode)",
            "input validated where it enters",
        ),
    ),
)


SIMONYAN_2014 = (
    "Simonyan, Zisserman. Very deep convolutional networks for large-scale image recognition. ICLR 2015, "
    "arXiv:1409.1556"
)
# Table 2, "Number of parameters (in millions)", as printed; Table 1's header, "11 weight layers" ... "19".
TABLE_2_MILLIONS = {"A": 133, "A-LRN": 133, "B": 133, "C": 134, "D": 138, "E": 144}
TABLE_1_WEIGHT_LAYERS = {"A": 11, "A-LRN": 11, "B": 13, "C": 16, "D": 16, "E": 19}
# Table 1 counted: each configuration's layers in its own notation.
TABLE_1_LAYERS = {
    "A": {"conv3": 8, "conv1": 0, "LRN": 0, "maxpool": 5, "FC": 3},
    "A-LRN": {"conv3": 8, "conv1": 0, "LRN": 1, "maxpool": 5, "FC": 3},
    "B": {"conv3": 10, "conv1": 0, "LRN": 0, "maxpool": 5, "FC": 3},
    "C": {"conv3": 10, "conv1": 3, "LRN": 0, "maxpool": 5, "FC": 3},
    "D": {"conv3": 13, "conv1": 0, "LRN": 0, "maxpool": 5, "FC": 3},
    "E": {"conv3": 16, "conv1": 0, "LRN": 0, "maxpool": 5, "FC": 3},
}


def _as_dense(counts: dict[str, int]) -> dict[str, int]:
    """Section 3.2: "the first FC layer is first converted to a 7 x 7 conv. layer, the last two FC layers to 1 x 1
    conv. layers"."""
    return counts | {"FC": 0, "conv7": 1, "conv1": counts["conv1"] + 2}


# Section 3.1: "a normal distribution with the zero mean and 10^-2 variance": a standard deviation of 0.1.
SIMONYAN_WEIGHT_STD = 0.1
# Section 3.1: "dropout regularisation for the first two fully-connected layers"; the authors' released Caffe
# definition and torchvision both drop fc6's and fc7's outputs (after the ReLU), i.e. fc7's and fc8's inputs.
VGG_DROPOUT_BEFORE = ("fc7", "fc8")
# A VGG build costs ~0.6-1.5 s and 0.5 GB, a pair at 224 with gradients ~6 s and 3 GB: the default run keeps the light
# checks of every configuration, and more of one case per form, in the cheapest configuration (A) where it covers
# the most code: torchvision's with batch norm, every check at the default input; the paper's, the dense form
# against the FC head on each window (2x2 windows at 256), outputs and layers.
DEFAULT_RUN = {"vgg11-bn": "smoke", "vgg2014-a-dense": "forward"}
# benchmarks/: torchvision's form against torchvision, batch 2 on the CPU (a train step at 224 is ~0.1-0.25 TFLOP)
# and 64 on CUDA. The paper's forms are not timed: their counterparts compute another way on purpose.
TORCHVISION_VGG_BATCHES = {"cpu": (2,), "cuda": (64,)}
VGG2014_DEPARTURES = (
    "B to E start from the stated N(0, 10^-2) draw too: the paper initialised them from A's trained layers",
    "dropout after fc6's and fc7's ReLUs, as in the authors' Caffe model (the paper: 'the first two FC layers')",
    "the training recipe (scale jittering, crops, multi-scale evaluation) is not part of the model",
)
FC_AS_CONVOLUTION = (
    "fc6 as a 7x7 convolution (a convolution kernel) vs a matrix product: the same terms summed in another order"
)


def _head_free(table: Architecture) -> dict[str, str]:
    """Every layer up to block5_pool, by its own name: what both forms of the paper's VGG compute alike."""
    names = list(table.layers)
    return {name: name for name in names[: names.index(LAST_POOL) + 1]}


def _vgg2014_errors(model: str) -> tuple[tuple[dict, type[Exception], str], ...]:
    configs = ", ".join(map(repr, TABLE_1))
    return (
        ({"config": "F"}, ValueError, rf"^{model}: config must be one of {configs}; got 'F'$"),
        ({"init": "xavier"}, ValueError, rf"^{model}: init must be 'paper' or 'glorot'; got 'xavier'$"),
    )


def _vgg2014_case(config: str, dense: bool) -> Case:
    """Configuration ``config`` of the paper's VGG: the FC form against its dense form averaged at 224..255, or
    (``dense``) the dense form against the FC head applied to every 7x7 window."""
    name = f"vgg2014-{config.lower()}" + "-dense" * dense
    table = partial(vgg2014_dense_architecture if dense else vgg2014_architecture, config)
    other = "fc" if dense else "dense"  # the other form's attribute in the counterpart
    return Case(
        name=name,
        summary=f"VGG configuration {config}'s dense evaluation form: FC layers as 7x7 and 1x1 convolutions"
        if dense
        else f"VGG configuration {config} as published ({TABLE_1_WEIGHT_LAYERS[config]} weight layers), paper init",
        build=get_model_builder(name),
        table=table,
        # The dense form at 256: block5_pool is 8x8, the score map 2x2, so the default input already has windows
        # that overlap; drawn sides reach 288 (3x3 maps), where the table accepts any side from 224.
        inputs=InputSpace(dims=(3, (224, 288), (224, 288)), default=(1, 3, 256, 256)) if dense else None,
        init=lambda model: inits.simonyan_2014(model, table(), SIMONYAN_WEIGHT_STD),
        other_inits=(({"init": "glorot"}, lambda model: inits.glorot_2010(model, table())),),
        counterparts=(
            Counterpart(
                name="the FC head on every 7x7 window" if dense else "dense evaluation form, averaged",
                port=WindowedVGGHead if dense else AveragedDenseVGG,
                layers={layer: f"{other}.{path}" for layer, path in _head_free(table()).items()},
                grads=lambda counterpart, grads: counterpart.grads_to_reference(grads),
                exact_forward=False,
                exact_grads=False,
                why_not_exact=FC_AS_CONVOLUTION,
                # The FC form's one mask over (N, 4096) and the averaged dense form's over (N, 4096, 1, 1) drop the
                # same units in the same order; the windows' (N h w, 4096) are others.
                same_dropout=not dense,
                shares=True,
            ),
        ),
        facts=Facts(
            citation=SIMONYAN_2014 + (", section 3.2" if dense else ""),
            params_millions=TABLE_2_MILLIONS[config],
            weight_layers=TABLE_1_WEIGHT_LAYERS[config],
            layer_counts=_as_dense(TABLE_1_LAYERS[config]) if dense else TABLE_1_LAYERS[config],
            dropout_before=VGG_DROPOUT_BEFORE,
        ),
        departures=VGG2014_DEPARTURES
        + (("the score map's spatial average is a separate step: image_scores()",) if dense else ()),
        error_options=_vgg2014_errors("VGG2014Dense" if dense else "VGG2014"),
        default_run=DEFAULT_RUN.get(name, "light"),
        benchmark_batches={},
    )


def _vgg_case(config: str, batch_norm: bool) -> Case:
    builder = TORCHVISION_BUILDERS[config] + "_bn" * batch_norm
    name = builder.replace("_", "-")
    table = partial(vgg_architecture, config, batch_norm)
    paths, names = torchvision_paths(table()), torchvision_names(table())
    weights = getattr(torchvision.models, f"{builder.upper()}_Weights").IMAGENET1K_V1
    return Case(
        name=name,
        summary=f"torchvision's {builder} (configuration {config}{' with batch norm' if batch_norm else ''}), "
        "hand-written with its operations in its order",
        build=get_model_builder(name),
        table=table,
        init=lambda model: inits.torchvision_vgg(model, table()),
        counterparts=(
            Counterpart(
                name=f"torchvision {builder}",
                port=port.vgg_to_torchvision,
                port_back=port.vgg_from_torchvision,
                library=getattr(torchvision.models, builder),
                weights=lambda: weights,
                layers={layer: paths[layer] for layer in table().layers if layer in paths},
                grads=lambda _c, grads: port.rename_state(grads, {v: k for k, v in names.items()}),
                exact_forward=True,
                exact_grads=True,
                same_dropout=True,
                shares=True,
            ),
        ),
        facts=Facts(
            citation=f"{SIMONYAN_2014}; torchvision.models.{weights}.meta",
            params_millions=TABLE_2_MILLIONS[config] if not batch_norm else None,
            weight_layers=TABLE_1_WEIGHT_LAYERS[config],
            dropout_before=VGG_DROPOUT_BEFORE,
            library_meta=lambda: dict(weights.meta),
        ),
        departures=(
            "layers named as Keras's VGG16 (block1_conv1 ... block5_pool, fc6 ... fc8), not features.N / classifier.N",
            "the adaptive average pool's backward is deterministic on CUDA (torchvision's raises in deterministic mode)",
            "input validated where it enters",
        ),
        # torchvision's builders take no configuration: one builder, one configuration.
        error_options=tuple(
            ({option: value}, TypeError, rf"^{builder}\(\) got an unexpected keyword argument '{option}'$")
            for option, value in (("config", "C"), ("batch_norm", not batch_norm))
        ),
        default_run=DEFAULT_RUN.get(name, "light"),
        benchmark_batches=TORCHVISION_VGG_BATCHES,
    )


_VGG = (
    *(_vgg2014_case(config, dense=False) for config in TABLE_1),
    *(_vgg2014_case(config, dense=True) for config in TABLE_1),
    *(_vgg_case(config, batch_norm) for config in TORCHVISION_CONFIGS for batch_norm in (False, True)),
)

CASES: dict[str, Case] = {case.name: case for case in (*_MODELS, *_VGG, *_LAYERS)}


def get_case(name: str) -> Case:
    try:
        return CASES[name]
    except KeyError:
        raise ValueError(f"unknown model or layer {name!r}; known: {', '.join(CASES)}") from None
