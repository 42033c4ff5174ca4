"""ResNet: He et al. 2015, the ImageNet networks of Table 1 (18 .. 152) with shortcut options A, B, C, the CIFAR-10
networks of section 4.2 (20 .. 1202) with both zero-padding layouts, and torchvision's resnet18 .. 152,
wide_resnet50_2 and resnext50_32x4d. Their numbers: Table 1, Table 6, section 3.3, torchvision's published metadata."""

from __future__ import annotations

from functools import partial

from reference.models._api import get_model_builder
from reference.models.layers import ZeroPadShortcut
from reference.models.resnet import (
    CIFAR_DEPTHS,
    STAGE_WIDTHS,
    TABLE_1,
    TORCHVISION_OPTIONS,
    cifar_resnet_architecture,
    resnet2015_architecture,
    resnet_architecture,
)
from reference.verify import inits, port
from reference.verify.counterparts import ConcatZeroed
from reference.verify.records import Case, Contrast, Inert, InputSpace, ModuleInput, Pair, Paper
from reference.verify.sensitivity import redraw_biases, redraw_statistics, trained_statistics

HE_2015 = "He, Zhang, Ren, Sun. Deep residual learning for image recognition. CVPR 2016, arXiv:1512.03385"
# Table 1, "FLOPs": multiply-adds at 224x224, x10^9, as printed.
TABLE_1_FLOPS = {18: 1.8, 34: 3.6, 50: 3.8, 101: 7.6, 152: 11.3}
# The printed figures that do not round from the count (truncated, not rounded), with the count.
TABLE_1_ERRATA = {
    34: "3.66 x10^9 counted (3,663,761,408 with the FC layer): the figure is truncated, not rounded",
    50: "3.86 x10^9 counted with the stride on the first 1x1 (3,857,989,632): the figure is truncated, not rounded",
}
# Table 6, "# params", as printed (millions).
TABLE_6_MILLIONS = {20: 0.27, 32: 0.46, 44: 0.66, 56: 0.85, 110: 1.7, 1202: 19.4}
# torchvision.models.ResNet18_Weights.IMAGENET1K_V1.meta["num_params"] and ResNet34's: the paper's option-B networks
# of depth 18 and 34 are torchvision's (basic blocks: no stride to place).
TORCHVISION_PARAMS = {18: 11_689_512, 34: 21_797_672}

PAPER_DEPARTURES = (
    "weights as He et al. 2015's forward case, N(0, 2 / fan_in), the FC layer's too; the paper: 'as in [13]'",
    "the bottleneck's stride on its first 1x1 convolution (the authors' Caffe models); torchvision's is on the 3x3",
    "the training recipe (scale augmentation, 10-crop and multi-scale testing) is not part of the model",
)
CIFAR_DEPARTURES = (
    "weights as He et al. 2015's forward case (the paper: 'as in [13]')",
    "option A's zeros appended after the identity channels (fb.resnet.torch); layout='both' puts half on each side",
    "the training recipe (padding, crops, flips) is not part of the model",
)
TORCHVISION_DEPARTURES = (
    "the adaptive average pool's backward is deterministic on CUDA (torchvision's raises in deterministic mode)",
    "input validated where it enters; no dilation or custom norm layer",
)

# At 64x64 an ImageNet network's last stage has 2x2 maps: the global average pool averages (at 32, a 1x1 map, it
# would copy). CIFAR's networks run at the paper's 32x32.
IMAGENET_INPUT, CIFAR_INPUT = (1, 3, 64, 64), (1, 3, 32, 32)
# The cheap checks' widths (Case.narrow): an eighth of every width keeps each operation acting (Kaiming weights keep
# the signal's spread whatever the width); ResNeXt's 32 groups need a quarter (one channel each), CIFAR's 16 maps too.
NARROW, GROUPED_NARROW, CIFAR_NARROW = 8, 4, 4

FRESH_STATISTICS = Inert(
    ("*bn*", "*downsample.1"),
    "fresh statistics (mean 0, variance 1) and affine parameters (1, 0): in eval mode each batch norm is an identity "
    "up to eps, so statistics a port or checkpoint lost would not show",
    weights=redraw_statistics,
)
ZERO_FC_BIAS = Inert(("fc",), "the FC bias is 0 at He et al.'s init: a bias a port lost would not show",
                     weights=redraw_biases)  # fmt: skip


def _errors(model: str, **rejected: tuple[object, str]) -> tuple[ModuleInput, ...]:
    """An option value not in the paper, for each option: a ValueError naming the accepted ones."""
    return tuple(
        ModuleInput(
            options={option: value},
            error=(
                ValueError,
                rf"^{model}: {option} must be one of {accepted}; got {value!r}$",
            ),
        )
        for option, (value, accepted) in rejected.items()
    )


def _layers(table) -> dict[str, str]:
    """Every table layer that is a module in both (the same names): the flatten is a function call in both."""
    return {name: name for name in table.layers if name != "flatten"}


def _torchvision_case(name: str) -> Case:
    block, counts, groups, width = TORCHVISION_OPTIONS[name]
    table = partial(resnet_architecture, block, counts, groups, width)
    fixed = "1" if groups == 1 else str(groups)
    return Case(
        name=name,
        summary=f"torchvision's {name} ({block} blocks {list(counts)}"
        + (f", groups {groups}, width per group {width}" if (groups, width) != (1, 64) else "")
        + "), hand-written with its operations in its order",
        build=get_model_builder(name),
        table=table,
        inputs=InputSpace(
            default=IMAGENET_INPUT,
            examples=(
                ModuleInput(
                    options={"groups": groups + 1},
                    error=(
                        ValueError,
                        rf"^The parameter 'groups' expected value {fixed} but got {groups + 1} instead\.$",
                    ),
                ),
            ),
        ),
        pairs=(
            Pair(
                name=f"torchvision {name}",
                other=port.torchvision_resnet_like,
                back=port.resnet_like,
                model=f"torchvision:{name}",
                layers=_layers(table()),
                same_dropout=True,  # no dropout: train mode (batch statistics, running averages) agrees too
            ),
        ),
        paper=Paper(
            citation=f"{HE_2015}; torchvision.models.{_weights_enum(name)}.IMAGENET1K_V1.meta",
            inits=(
                ({}, lambda model: inits.torchvision_resnet(model, table())),
                ({"zero_init_residual": True}, lambda model: inits.torchvision_resnet(model, table(), True)),
            ),
            departures=TORCHVISION_DEPARTURES,
        ),
        inert=(FRESH_STATISTICS,),
        narrow=NARROW if groups == 1 else GROUPED_NARROW,
    )


def _weights_enum(name: str) -> str:
    return {"wide_resnet50_2": "Wide_ResNet50_2_Weights", "resnext50_32x4d": "ResNeXt50_32X4D_Weights"}.get(
        name, name.replace("resnet", "ResNet") + "_Weights"
    )


def _projections(depth: int, everywhere: bool) -> int:
    """Section 3.3's projection shortcuts of a ResNet-18/34 counted from Table 1 alone: a 1x1 convolution (no bias)
    and its batch norm (scale, shift) from a block's input width to its output width, at the first block of each
    stage after the first (option B), or at every block (option C: the identity blocks' too)."""
    _, counts = TABLE_1[depth]
    total, width_in = 0, STAGE_WIDTHS[0]
    for stage, (count, width) in enumerate(zip(counts, STAGE_WIDTHS, strict=True)):
        for index in range(count):
            if everywhere or (stage > 0 and index == 0):
                total += width_in * width + 2 * width
            width_in = width
    return total


def _paper_case(depth: int, shortcut: str) -> Case:
    name = f"resnet2015_{depth}" + ("" if shortcut == "B" else f"_{shortcut.lower()}")
    table = partial(resnet2015_architecture, depth, shortcut)
    block, _ = TABLE_1[depth]
    totals: dict[str, float] = {}
    pairs, contrasts, errata = (), (), {}
    if shortcut == "B":
        if depth in TABLE_1_ERRATA:
            errata["multiply-adds, billions"] = {"total": (TABLE_1_FLOPS[depth], TABLE_1_ERRATA[depth])}
        else:
            totals["multiply-adds, billions"] = TABLE_1_FLOPS[depth]
        tv_name = f"resnet{depth}"
        if block == "basic":  # no stride to place: torchvision's network, module for module
            pairs = (
                Pair(name=f"torchvision {tv_name}", other=port.torchvision_resnet_like, back=port.resnet2015_like,
                     model=f"torchvision:{tv_name}", layers=_layers(table()), same_dropout=True,
                     same_init=False),  # He et al.'s fan_in against torchvision's fan_out
            )  # fmt: skip
        else:
            contrasts = (
                Contrast(
                    name=f"torchvision {tv_name} (v1.5)",
                    other=port.torchvision_resnet_like,
                    parts="layer2.0.conv1",
                    why="the paper's first bottleneck of conv3_x strides its first 1x1 convolution, torchvision's its "
                    "3x3: the same weights, a map of another size",
                ),
            )
    elif depth in TORCHVISION_PARAMS:  # section 3.3's options, counted from option B's published total
        option_b = _projections(depth, everywhere=False)
        extra = -option_b if shortcut == "A" else _projections(depth, everywhere=True) - option_b
        totals["trainable parameters"] = TORCHVISION_PARAMS[depth] + extra
        if shortcut == "A":
            totals["weight layers"] = depth  # no projection: the convolutions and the FC layer are the depth
    return Case(
        name=name,
        summary=f"ResNet-{depth} as published, option {shortcut} shortcuts, He et al.'s init",
        build=get_model_builder(name),
        table=table,
        inputs=InputSpace(
            default=IMAGENET_INPUT,
            examples=_errors("ResNet2015", depth=(19, "18, 34, 50, 101, 152"), shortcut=("D", "'A', 'B', 'C'")),
        ),
        pairs=pairs,
        paper=Paper(
            citation=f"{HE_2015}, Table 1 and section 3.3"
            + (f"; torchvision's ResNet{depth} metadata for option B's count" if depth in TORCHVISION_PARAMS else ""),
            totals=totals,
            errata=errata,
            inits=(({}, lambda model: inits.he_2015(model, table())),),
            departures=PAPER_DEPARTURES,
        ),
        inert=(FRESH_STATISTICS, ZERO_FC_BIAS),
        narrow=NARROW,
        contrasts=contrasts,
    )


# He et al.'s init with fresh statistics (eval-mode batch norms that are identities) doubles a block's output variance
# or so: a ResNet-110's outputs reach ~5e8 (measured), a ResNet-1202's overflow float32 (NaN), and every comparison of
# it would be NaN against NaN. Deeper than this, the case's weights get statistics like a trained network's.
FRESH_STATISTICS_DEPTH = 110


def _cifar_case(depth: int, layout: str = "append") -> Case:
    name = f"cifar_resnet{depth}" + ("_both" if layout == "both" else "")
    table = partial(cifar_resnet_architecture, depth, "A", 10, layout)
    contrasts = ()
    if layout == "append" and depth == CIFAR_DEPTHS[0]:
        contrasts = (
            Contrast(
                name="zeros on both sides",
                other=lambda model: get_model_builder("cifar_resnet20_both")(num_classes=model.num_classes),
                parts="layer2.0.downsample",
                why="option A's shortcut puts the identity in the first channels here, in the middle there: the "
                "same counts and shapes, another network",
            ),
        )
    return Case(
        name=name,
        summary=f"CIFAR-10 ResNet-{depth} (section 4.2), option A"
        + (", zeros on both sides of the identity" if layout == "both" else ""),
        build=get_model_builder(name),
        table=table,
        inputs=InputSpace(
            default=CIFAR_INPUT,
            examples=_errors(
                "CifarResNet", depth=(21, ", ".join(map(str, CIFAR_DEPTHS))), layout=("middle", "'append', 'both'")
            ),
        ),
        paper=Paper(
            citation=f"{HE_2015}, section 4.2 and Table 6",
            totals={"parameters, millions": TABLE_6_MILLIONS[depth], "weight layers": depth},
            inits=(({}, lambda model: inits.he_2015(model, table())),),
            departures=CIFAR_DEPARTURES,
        ),
        prepare=trained_statistics(CIFAR_INPUT) if depth > FRESH_STATISTICS_DEPTH else None,
        inert=(FRESH_STATISTICS, ZERO_FC_BIAS) if depth <= FRESH_STATISTICS_DEPTH else (ZERO_FC_BIAS,),
        narrow=CIFAR_NARROW,
        contrasts=contrasts,
    )


CASES = (
    *(_torchvision_case(name) for name in TORCHVISION_OPTIONS),
    *(_paper_case(depth, "B") for depth in TABLE_1),
    *(_paper_case(depth, shortcut) for depth in TORCHVISION_PARAMS for shortcut in ("A", "C")),
    *(_cifar_case(depth) for depth in CIFAR_DEPTHS),
    _cifar_case(CIFAR_DEPTHS[0], layout="both"),
    Case(
        name="zero_pad_shortcut",
        summary="option A's shortcut vs fb.resnet.torch's: a 1x1 average pool of stride 2, the input beside its copy "
        "times 0",
        build=partial(ZeroPadShortcut, 8, 16, 2),
        inputs=InputSpace(
            dims=(8, (1, 20), (1, 20)),
            default=(2, 8, 9, 8),
            examples=(
                ModuleInput((2, 8, 5, 7), gradcheck=True),
                ModuleInput((2, 8, 5, 7), desc="odd_sides"),  # against the concatenation: where the zeros go
                ModuleInput((2, 4, 5, 5), error=(ValueError, r"^ZeroPadShortcut expects .*\(4 channels\)$")),
                ModuleInput(
                    options={"layout": "middle"},
                    error=(ValueError, r"^ZeroPadShortcut: layout must be one of 'append', 'both'; got 'middle'$"),
                ),
            ),
        ),
        pairs=(Pair(name="fb.resnet.torch's concatenation", other=ConcatZeroed),),
    ),
)
