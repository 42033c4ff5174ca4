"""VGG: Simonyan & Zisserman 2014, the six configurations of Table 1 in the FC and the dense-evaluation forms, and
torchvision's VGG11/13/16/19 (+BN). Their numbers: Tables 1 and 2, section 3, torchvision's published metadata."""

from __future__ import annotations

from functools import partial

from reference.models._api import get_model_builder
from reference.models.tables import Architecture
from reference.models.vgg import (
    LAST_POOL,
    TABLE_1,
    TORCHVISION_BUILDERS,
    TORCHVISION_CONFIGS,
    torchvision_paths,
    vgg2014_architecture,
    vgg2014_dense_architecture,
    vgg_architecture,
)
from reference.verify import inits, port
from reference.verify.compare import Tolerance
from reference.verify.counterparts import AveragedDenseVGG, WindowedVGGHead
from reference.verify.records import Case, Dropout, Inert, InputSpace, ModuleInput, Pair, Paper
from reference.verify.sensitivity import redraw_biases, redraw_statistics
from reference.verify.states import Views

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
# Section 3.1: "a normal distribution with the zero mean and 10^-2 variance": a standard deviation of 0.1.
WEIGHT_STD = 0.1
# Section 3.1: "dropout regularisation for the first two fully-connected layers"; the authors' released Caffe
# definition and torchvision both drop fc6's and fc7's outputs (after the ReLU), i.e. fc7's and fc8's inputs.
SIMONYAN_DROPOUT = Dropout(before=("fc7", "fc8"), p=0.5)
PAPER_DEPARTURES = (
    "B to E start from the stated N(0, 10^-2) draw too: the paper initialised them from A's trained layers",
    "dropout after fc6's and fc7's ReLUs, as in the authors' Caffe model (the paper: 'the first two FC layers')",
    "the training recipe (scale jittering, crops, multi-scale evaluation) is not part of the model",
)
FC_AS_CONVOLUTION = (
    "fc6 as a 7x7 convolution (a convolution kernel) vs a matrix product: the same terms summed in another order"
)


def _as_dense(counts: dict[str, int]) -> dict[str, int]:
    """Section 3.2: "the first FC layer is first converted to a 7 x 7 conv. layer, the last two FC layers to 1 x 1
    conv. layers"."""
    return counts | {"FC": 0, "conv7": 1, "conv1": counts["conv1"] + 2}


def _head_free(table: Architecture) -> dict[str, str]:
    """Every layer up to block5_pool, by its own name: what both forms of the paper's VGG compute alike."""
    names = list(table.layers)
    return {name: name for name in names[: names.index(LAST_POOL) + 1]}


def _paper_errors(model: str) -> tuple[ModuleInput, ...]:
    configs = ", ".join(map(repr, TABLE_1))
    return (
        ModuleInput(
            options={"config": "F"}, error=(ValueError, rf"^{model}: config must be one of {configs}; got 'F'$")
        ),
        ModuleInput(
            options={"init": "xavier"},
            error=(ValueError, rf"^{model}: init must be 'paper' or 'glorot'; got 'xavier'$"),
        ),
    )


ZERO_BIASES = Inert(
    ("block*_conv*", "fc*"),
    "every bias is 0 at the paper's (and torchvision's) init: a bias the model or a port lost would not show",
    weights=redraw_biases,
)


def _paper_case(config: str, dense: bool) -> Case:
    """Configuration ``config`` of the paper's VGG: the FC form against its dense form averaged at 224..255, or
    (``dense``) the dense form against the FC head applied to every 7x7 window."""
    name = f"vgg2014_{config.lower().replace('-', '_')}" + "_dense" * dense
    table = partial(vgg2014_dense_architecture if dense else vgg2014_architecture, config)
    prefix = "fc." if dense else "dense."  # the other form's attribute in the counterpart
    model = "VGG2014Dense" if dense else "VGG2014"
    errors = _paper_errors(model)
    # The dense form at 256: block5_pool is 8x8, the score map 2x2, so the default input already has windows that
    # overlap; drawn sides reach 288 (3x3 maps), where the table accepts any side from 224. The FC form's input space
    # is its table's.
    space = (
        InputSpace((3, (224, 288), (224, 288)), (1, 3, 256, 256), examples=errors)
        if dense
        else InputSpace(examples=errors)
    )
    return Case(
        name=name,
        summary=f"VGG configuration {config}'s dense evaluation form: FC layers as 7x7 and 1x1 convolutions"
        if dense
        else f"VGG configuration {config} as published ({TABLE_1_WEIGHT_LAYERS[config]} weight layers), paper init",
        build=get_model_builder(name),
        table=table,
        inputs=space,
        pairs=(
            Pair(
                name="the FC head on every 7x7 window" if dense else "dense evaluation form, averaged",
                other=WindowedVGGHead if dense else AveragedDenseVGG,
                state=Views(prefix),
                layers={layer: f"{prefix}{path}" for layer, path in _head_free(table()).items()},
                tolerance=Tolerance("table", "table", why=FC_AS_CONVOLUTION),
                # The FC form's one mask over (N, 4096) and the averaged dense form's over (N, 4096, 1, 1) drop the
                # same units in the same order; the windows' (N h w, 4096) are others.
                same_dropout=not dense,
            ),
        ),
        paper=Paper(
            citation=SIMONYAN_2014 + (", section 3.2" if dense else ""),
            totals={"parameters, millions": TABLE_2_MILLIONS[config], "weight layers": TABLE_1_WEIGHT_LAYERS[config]},
            breakdown={"layers": _as_dense(TABLE_1_LAYERS[config]) if dense else TABLE_1_LAYERS[config]},
            dropout=(SIMONYAN_DROPOUT,),
            inits=(
                ({}, lambda model: inits.simonyan_2014(model, table(), WEIGHT_STD)),
                ({"init": "glorot"}, lambda model: inits.glorot_2010(model, table())),
            ),
            departures=PAPER_DEPARTURES
            + (("the score map's spatial average is a separate step: image_scores()",) if dense else ()),
        ),
        inert=(ZERO_BIASES,),
        narrow=PAPER_NARROW,
    )


# The cheap checks' widths (Case.narrow): 1/16 keeps every operation of the paper's forms acting at 224 (weights of a
# fixed spread, biases 0: a ReLU's sign pattern does not depend on the width); torchvision's at 32 need 1/8, for at
# 1/16 block5's 2x2 maps have too few channels for every ReLU before a max pool to meet a window of negatives. The
# AlexNets have none: at N(0, 0.01) and biases of 1 the narrowed signal vanishes under the biases.
PAPER_NARROW, TORCHVISION_NARROW = 16, 8

TORCHVISION_DEPARTURES = (
    "layers named as Keras's VGG16 (block1_conv1 ... block5_pool, fc6 ... fc8), not features.N / classifier.N",
    "the adaptive average pool's backward is deterministic on CUDA (torchvision's raises in deterministic mode)",
    "input validated where it enters",
)


def _torchvision_case(config: str, batch_norm: bool) -> Case:
    name = TORCHVISION_BUILDERS[config] + "_bn" * batch_norm
    table = partial(vgg_architecture, config, batch_norm)
    paths = torchvision_paths(table())
    return Case(
        name=name,
        summary=f"torchvision's {name} (configuration {config}{' with batch norm' if batch_norm else ''}), "
        "hand-written with its operations in its order",
        build=get_model_builder(name),
        table=table,
        # torchvision's builders take no configuration: one builder, one configuration.
        inputs=InputSpace(
            examples=tuple(
                ModuleInput(
                    options={option: value},
                    error=(TypeError, rf"^{name}\(\) got an unexpected keyword argument '{option}'$"),
                )
                for option, value in (("config", "C"), ("batch_norm", not batch_norm))
            )
        ),
        pairs=(
            Pair(
                name=f"torchvision {name}",
                other=port.torchvision_vgg_like,
                state=port.vgg_names(config, batch_norm),
                back=port.vgg_like,
                model=f"torchvision:{name}",
                layers={layer: paths[layer] for layer in table().layers if layer in paths},
                same_dropout=True,
            ),
        ),
        paper=Paper(
            citation=f"{SIMONYAN_2014}; torchvision.models.{name.upper()}_Weights.IMAGENET1K_V1.meta",
            totals={"weight layers": TABLE_1_WEIGHT_LAYERS[config]}
            | ({} if batch_norm else {"parameters, millions": TABLE_2_MILLIONS[config]}),
            dropout=(SIMONYAN_DROPOUT,),
            inits=(({}, lambda model: inits.torchvision_vgg(model, table())),),
            departures=TORCHVISION_DEPARTURES,
        ),
        inert=(
            ZERO_BIASES,
            Inert(
                ("avgpool",),
                "at the default side 32 block5_pool is 1x1 and the adaptive pool copies it to 7x7 (so would a max); "
                "at 64 it is 2x2 and some 7x7 windows take two values",
                side=64,
            ),
        )
        + (
            (
                Inert(
                    ("block*_bn*",),
                    "fresh statistics (mean 0, variance 1) and affine parameters (1, 0): in eval mode each batch "
                    "norm is an identity up to eps, so statistics a port or checkpoint lost would not show",
                    weights=redraw_statistics,
                ),
            )
            if batch_norm
            else ()
        ),
        narrow=TORCHVISION_NARROW,
    )


CASES = (
    *(_paper_case(config, dense=False) for config in TABLE_1),
    *(_paper_case(config, dense=True) for config in TABLE_1),
    *(_torchvision_case(config, batch_norm) for config in TORCHVISION_CONFIGS for batch_norm in (False, True)),
)
