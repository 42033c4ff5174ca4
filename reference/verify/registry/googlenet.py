"""GoogLeNet: Szegedy et al. 2014, the network of Table 1 with the auxiliary classifiers of section 5, and
torchvision's googlenet. Their numbers: Table 1, sections 1 and 5, torchvision's published metadata."""

from __future__ import annotations

from functools import partial

import torch

from reference.models._api import get_model_builder
from reference.models.googlenet import AUX, AUX_SIDE, AUX_WIDTHS, INCEPTION, googlenet_architecture
from reference.verify import inits, port
from reference.verify.compare import Override, Tolerance, grad_tolerance
from reference.verify.records import Case, Dropout, Inert, InputSpace, ModuleInput, Pair, Paper, Skip
from reference.verify.sensitivity import redraw_biases, trained_statistics

SZEGEDY_2014 = (
    "Szegedy, Liu, Jia, Sermanet, Reed, Anguelov, Erhan, Vanhoucke, Rabinovich. Going deeper with convolutions. "
    "CVPR 2015, arXiv:1409.4842"
)
# Table 1's rows as printed, keyed by the blocks they count ("convolution 3x3/1", depth 2, is the 1x1 reduce and the
# 3x3). "params": three rows are the weights, biases left out, in thousands of 1024, truncated (conv2+conv3's 112K
# exactly); "ops": multiply-adds in millions at 224x224.
TABLE_1_WEIGHTS = {"conv2+conv3": 112, "inception3a": 159, "fc": 1000}
TABLE_1_OPS = {"conv2+conv3": 360, "inception3a": 128, "inception3b": 304, "inception4b": 88, "inception4c": 100,
               "inception4d": 119, "inception4e": 170, "inception5b": 71, "fc": 1}  # fmt: skip
# The printed rows the paper's own network contradicts, with the count and the likeliest reading.
TABLE_1_WEIGHTS_ERRATA = {
    "conv1": (2.7, "9,408 weights (9.19K of 1024), a dense 7x7 convolution from 3 maps to 64; the row's 34M ops are "
              "2.7K x 112 x 112, so the two printed figures agree with each other, not with a dense convolution"),
    "inception3b": (380, "379.0K counted: one thousand over"),
    "inception4a": (364, "366.75K counted"),
    "inception4b": (437, "438.0K counted: one thousand under"),
    "inception4c": (463, "497.5K counted"),
    "inception4d": (580, "590.5K counted"),
    "inception4e": (840, "847.0K counted"),
    "inception5a": (1072, "1,018.0K counted"),
    "inception5b": (1388, "1,409.0K counted"),
}  # fmt: skip
TABLE_1_OPS_ERRATA = {
    "conv1": (34, "118.0M counted for a dense 7x7 convolution from 3 maps to 64 at 112x112 (see its params)"),
    "inception4a": (73, "73.6M counted: truncated where the other rows round"),
    "inception5a": (54, "51.1M counted"),
}
# Section 1: "a computational budget of 1.5 billion multiply-adds at inference time"; section 5: "22 layers deep when
# counting only layers with parameters (or 27 layers if we also count pooling)".
BUDGET_ERRATUM = (
    1.5,
    "1.583 x10^9 counted at 224x224 without the auxiliary classifiers (1,582,671,872): the figure is Table 1's printed "
    "ops summed (1,502M), not the network's count",
)
DEPTH, DEPTH_WITH_POOLING = 22, 27
# torchvision.models.GoogLeNet_Weights.IMAGENET1K_V1.meta counts the network its weights build, the auxiliary
# classifiers dropped; googlenet() with weights=None has them.
TORCHVISION_WITH_HEADS = 13_004_888


def _head_params(in_channels: int, *, batch_norm: bool, num_classes: int = 1000) -> int:
    """Section 5's auxiliary classifier counted from its text: a 1x1 convolution with 128 filters (a bias, or in
    torchvision's a batch norm's scale and shift), a fully connected layer of 1024 units on its 4x4 maps, a linear
    layer to the classes (each with biases)."""
    conv, fc = AUX_WIDTHS
    return (
        in_channels * conv + (2 * conv if batch_norm else conv) + (conv * AUX_SIDE**2 + 1) * fc + (fc + 1) * num_classes
    )


def _heads(*, batch_norm: bool) -> dict[str, int]:
    """Each head on the output of the module it follows, whose width Table 1's "output size" column prints (4a:
    14x14x512, 4d: 14x14x528), the sum of that module's four branches."""
    widths = {module: one + three + five + proj for module, (one, _, three, _, five, proj) in INCEPTION.items()}
    return {head: _head_params(widths[module], batch_norm=batch_norm) for head, module in AUX.items()}


TORCHVISION_DEPARTURES = (
    "the average pools are the deterministic AdaptiveAvgPool2d (torchvision's backward raises in deterministic mode on "
    "CUDA), the heads' a module of their own",
    "no 'blocks' argument; init_weights=None is True without torchvision's FutureWarning; input validated",
)
PAPER_DEPARTURES = (
    "the paper states no initialisation: bvlc_googlenet's (Caffe xavier, biases 0.2, the classifiers' 0)",
    "the paper gives no LRN numbers: bvlc_googlenet's (size 5, alpha 1e-4 in Caffe's convention, beta 0.75, k 1)",
    "max pools round up (Caffe's); outputs are logits, the heads' returned in train mode, section 5's 0.3 weight is "
    "the loss's",
    "no counterpart: torchvision's googlenet has a batch norm after every convolution and a 3x3 where the paper's "
    "third branch has a 5x5; no weights of one fit the other",
)

NARROW = 8  # every width of Table 1 and the heads is a multiple of 8 (the least, 16 and 24, become 2 and 3)
# At 80x80 every operation acts: (4a)'s maps are 5x5, which the heads pool to 4x4, and (5b)'s 3x3, which the average
# pool averages (at 64, (4a)'s 4x4 would make the heads' pool a copy). The paper's network takes 223..254 only.
TORCHVISION_INPUT, PAPER_INPUT = (1, 3, 80, 80), (1, 3, 224, 224)

# At torchvision's init (weights N(0, 0.01), fresh statistics: each eval-mode batch norm an identity) every layer
# shrinks the signal ~5 times: the logits are the FC bias to float32's precision, and no operation before it shows.
# The comparisons run with statistics like a trained network's, which keep the signal's size: taken over four images,
# not one, so that (5b)'s 3x3 maps give each channel a spread to divide by (over one image, channels near constant
# divided by their small spread amplified inductor's reordered float32 sums to 1.6e-5 at the logits, past the table).
TRAINED_STATISTICS = trained_statistics((4, *TORCHVISION_INPUT[1:]))
# torch.export cannot prove that a ceil-mode pool's last window starts inside its input over a range of sides (the
# guard "2 * ((h - 1) // 2 - 1) // 2 < 1 + (h - 1) // 2" holds at every side, unproven): two such pools in a row fail
# alone, so torchvision's googlenet too.
CEIL_MODE_EXPORT = Skip(
    "export-sides",
    "torch.export cannot prove a ceil-mode max pool's last-window guard over a range of sides (two such pools alone "
    "fail): one exported graph per input size",
)


ZERO_CLASSIFIER_BIAS = Inert(("fc",), "bvlc_googlenet's classifier bias is 0: a bias a port lost would not show",
                             weights=redraw_biases)  # fmt: skip
# bvlc_googlenet takes mean-subtracted pixels in 0..255: at that scale the LRN's sum of squares counts (alpha 2e-5 a
# square: at inputs of unit spread it moves the output by ~1e-5 of its size, inside float32's table).
LRN_AT_PIXEL_SCALE = Inert(("norm1", "norm2"), "at inputs of unit spread the LRN divides by ~1 (k = 1, alpha 2e-5)",
                           scale=100.0)  # fmt: skip
# oneDNN's float32 input gradient of a 3x3 convolution (padding 1) over a 1x1 map at batch 1 is not reproducible on two
# threads (its reduction splits by thread): (5a) .. (5b)'s maps are 1x1 up to side 32, (4a) .. (4e)'s up to 16.
ONEDNN_1X1 = Override(
    "drawn",
    torch.float32,
    grad_tolerance(torch.float32),
    why="oneDNN's float32 input gradient of a 3x3 convolution over a 1x1 map at batch 1 varies from run to run on two "
    "threads (the same module run twice parts, measured 1e-17 .. 7e-13 in the gradients at side 15); exact with oneDNN "
    "off, in float64, and at the default input",
)


def _layers(table) -> dict[str, str]:
    """Every table layer that is a module in both and runs in eval mode: the flattens are function calls, the heads'
    pools a function in torchvision's, the heads run in train mode only (compared there by their outputs)."""
    return {name: name for name in table.layers if "flatten" not in name and name not in table.auxiliary}


def _torchvision_case() -> Case:
    table = partial(googlenet_architecture, "torchvision", True, 1000)
    return Case(
        name="googlenet",
        summary="torchvision's googlenet (batch norm, no LRN, a 3x3 in the 5x5 branch, the auxiliary classifiers), "
        "hand-written with its operations in its order",
        build=get_model_builder("googlenet"),
        table=table,
        inputs=InputSpace(
            default=TORCHVISION_INPUT,
            options={"transform_input": (True, False), "aux_logits": (False, True)},
            examples=(
                ModuleInput(
                    options={"weights": {}, "aux_logits": True},
                    error=(ValueError, r"^googlenet: aux_logits=True, but the weights hold no auxiliary classifiers$"),
                ),
                ModuleInput(
                    options={"dropout_aux": 1.5},
                    error=(ValueError, r"^GoogLeNet: dropout_aux must be a probability in \[0, 1\]; got 1\.5$"),
                ),
            ),
        ),
        pairs=(
            Pair(
                name="torchvision googlenet",
                other=port.torchvision_googlenet_like,
                back=port.googlenet_like,
                model="torchvision:googlenet",
                layers=_layers(table()),
                same_dropout=True,  # dropout and the heads drawn in the same order: train mode agrees too
                tolerance=Tolerance(overrides=(ONEDNN_1X1,)),
                weights_options={"transform_input": False, "aux_logits": True},
            ),
        ),
        paper=Paper(
            citation=f"{SZEGEDY_2014}; torchvision.models.GoogLeNet_Weights.IMAGENET1K_V1.meta",
            totals={"trainable parameters": TORCHVISION_WITH_HEADS},
            breakdown={"parameters": _heads(batch_norm=True)},
            dropout=(Dropout(before=("fc",), p=0.2), Dropout(before=("fc2",), p=0.7)),
            inits=(({}, lambda model: inits.torchvision_googlenet(model, table())),),
            departures=TORCHVISION_DEPARTURES,
        ),
        skips=(CEIL_MODE_EXPORT,),
        prepare=TRAINED_STATISTICS,
        narrow=NARROW,
    )


def _paper_case() -> Case:
    table = partial(googlenet_architecture, "paper", True, 1000)
    classifiers = ("fc", *(f"{head}.fc2" for head in AUX))
    return Case(
        name="googlenet2014",
        summary="GoogLeNet as published: LRN, 5x5 branches, 40 % dropout, the auxiliary classifiers of section 5, "
        "bvlc_googlenet's init",
        build=get_model_builder("googlenet2014"),
        table=table,
        inputs=InputSpace(
            default=PAPER_INPUT,
            examples=(
                ModuleInput(
                    options={"dropout": -0.1},
                    error=(ValueError, r"^GoogLeNet2014: dropout must be a probability in \[0, 1\]; got -0\.1$"),
                ),
            ),
        ),
        paper=Paper(
            citation=f"{SZEGEDY_2014}, Table 1, sections 1 and 5",
            totals={"weight layers deep": DEPTH, "layers deep, pooling counted": DEPTH_WITH_POOLING},
            breakdown={
                "weights, thousands of 1024": TABLE_1_WEIGHTS,
                "multiply-adds, millions": TABLE_1_OPS,
                "parameters": _heads(batch_norm=False),
            },
            errata={
                "weights, thousands of 1024": TABLE_1_WEIGHTS_ERRATA,
                "multiply-adds, millions": TABLE_1_OPS_ERRATA,
                "multiply-adds, billions": {"total": BUDGET_ERRATUM},
            },
            dropout=(Dropout(before=("fc",), p=0.4), Dropout(before=("fc2",), p=0.7)),
            inits=(({}, lambda model: inits.bvlc_googlenet(model, table(), classifiers)),),
            departures=PAPER_DEPARTURES,
        ),
        skips=(CEIL_MODE_EXPORT,),
        inert=(ZERO_CLASSIFIER_BIAS, LRN_AT_PIXEL_SCALE),
        narrow=NARROW,
    )


CASES = (_torchvision_case(), _paper_case())
