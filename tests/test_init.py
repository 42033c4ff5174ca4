"""Initial weights follow the distribution the paper or the library states, layer by layer (two towers tower by
tower): every parameter of a fresh build, by the checks of tests/distributions.py, whose false-failure rate is
below 1e-6 a run at any seed. Equal seeds giving equal weights (tests/test_determinism.py) cannot catch a wrong
distribution: both sides share the code; these numbers come from the papers, through reference.verify.inits."""

from __future__ import annotations

import math

import pytest
import torch

from reference.verify.build import seeded
from reference.verify.inits import Constant, Normal, Uniform
from tests import helpers
from tests.distributions import check_drawn_from
from tests.helpers import BUILD_SEED, CASES, meta_model, narrow, narrowable

MIN_SAMPLES = 300  # per parameter, pooling builds of a small model: the power tests/distributions.py states
MAX_DRAWN = 4_000_000  # values drawn in all, where small parameters would ask for many builds of a large model


STATED = [
    pytest.param(case, options, init, id=case.name + "".join(f"-{k}={v}" for k, v in options.items()))
    for case in CASES.values()
    if case.paper is not None
    for options, init in case.paper.inits
]


def _shared(case, options) -> bool:
    """Whether the case's shared module is the first build the check needs: the default options, built under the
    same seed and left as built (no ``prepare``)."""
    return not options and case.prepare is None


@pytest.mark.cost(
    builds=lambda case, params: _builds(case, params["init"]) - _shared(case, params["options"]),
    seconds=lambda case: _checks(case),
    core=True,
    aim="init",
)
@pytest.mark.parametrize(("case", "options", "init"), STATED)
def test_init(modules, case, options, init):
    """Every parameter of a fresh build is drawn from the distribution the paper (or library) states, for the
    default initialisation and each option that selects another."""

    def build():
        return case.build(**options)

    first = modules.reference(case) if _shared(case, options) else seeded(build, BUILD_SEED)
    _check_every_parameter(case, first, init, build)


@pytest.mark.cost(
    builds=lambda case, params: _builds(case, params["init"], narrow=True),
    seconds=lambda case: _checks(case, narrow=True),
    aim="init",
    narrow=True,
)
@pytest.mark.parametrize(("case", "options", "init"), [param for param in STATED if narrowable(param.values[0])])
def test_init_narrow(case, options, init):
    """The same on builds narrowed as the case says (``Case.narrow``): the same init code, layer by layer, and the
    stated distributions derived from the narrowed table, at a fraction of a full build's cost."""

    def build():
        return case.build(**options)

    with narrow(case):
        _check_every_parameter(case, seeded(build, BUILD_SEED), init, build, narrow=True)


def _checks(case, narrow: bool = False) -> float:
    """The distribution checks' own seconds, beside the builds: ~0.75 ms a parameter (measured with GoogLeNet: its
    narrowed build's 187 parameters checked in 0.16 s, builds included, where 1.5 ms a parameter priced them at
    0.40 s; ResNet-50's narrowed 89 in 0.06 s against 0.19 s)."""
    return 0.00075 * sum(1 for _ in meta_model(case, narrow=narrow).parameters())


def _needed(model, init) -> dict[str, int]:
    """Builds each drawn parameter needs for MIN_SAMPLES values (small ones pool several seeds; an AlexNet has
    none); a constant is checked exactly on one."""
    stated = init(model)
    return {name: math.ceil(MIN_SAMPLES / p.numel()) for name, p in model.named_parameters()
            if not isinstance(stated.get(name), Constant)}  # fmt: skip


def _builds(case, init, narrow: bool = False) -> int:
    """Builds that give every drawn parameter MIN_SAMPLES values, at most MAX_DRAWN values in all (an AlexNet's one
    build has >= 34,848 weights a layer; LeNet-5's biases pool many)."""
    model = meta_model(case, narrow=narrow)
    with helpers.narrow(case, on=narrow):  # the stated init of the narrowed table
        needed = _needed(model, init)
    total = sum(p.numel() for p in model.parameters())
    return max(1, min(max(needed.values(), default=1), MAX_DRAWN // total))


def _check_every_parameter(case, first, init, build, narrow: bool = False) -> None:
    stated = init(first)
    params = dict(first.named_parameters())
    assert stated.keys() == params.keys(), "a parameter with no stated init, or a stated one the model lacks"
    needed = _needed(first, init)
    builds = _builds(case, init, narrow)
    samples = {name: [p.detach()] for name, p in params.items()}
    for seed in range(BUILD_SEED + 1, BUILD_SEED + builds):
        for name, p in seeded(build, seed).named_parameters():
            if len(samples[name]) < needed.get(name, 1):
                samples[name].append(p.detach())
    for name, init in stated.items():
        values = samples[name][0] if len(samples[name]) == 1 else torch.stack(samples[name])
        check_drawn_from(values, init, what=f"{case.name}: {name} ({len(samples[name])} builds)")


SEEDS = range(5)
N = 17_424  # the fewest elements a normal check sees (one tower's conv1 weight)


@pytest.mark.parametrize("seed", SEEDS)
def test_checks_pass_stated_draws(seed):
    """The checks pass the stated draw at any seed."""
    generator = torch.Generator().manual_seed(seed)
    bound = torch.rand(MIN_SAMPLES, 1, generator=generator) + 0.5  # a bound per element, as C3's
    check_drawn_from((2 * torch.rand(MIN_SAMPLES, 1, generator=generator) - 1) * bound, Uniform(bound), "uniform")
    check_drawn_from(0.01 * torch.randn(N, generator=generator), Normal(0.01), "normal")
    check_drawn_from(torch.ones(7), Constant(1.0), "constant")


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize(
    ("draw", "stated"),
    [
        pytest.param(lambda g: 1.07 * (2 * torch.rand(MIN_SAMPLES, generator=g) - 1), Uniform(1.0), id="7% wider"),
        pytest.param(lambda g: 0.93 * (2 * torch.rand(MIN_SAMPLES, generator=g) - 1), Uniform(1.0), id="7% narrower"),
        pytest.param(lambda g: torch.randn(MIN_SAMPLES, generator=g) / math.sqrt(3), Uniform(1.0), id="normal"),
        pytest.param(lambda g: 0.012 * torch.randn(N, generator=g), Normal(0.01), id="std 20% high"),
        pytest.param(lambda g: 0.008 * torch.randn(N, generator=g), Normal(0.01), id="std 20% low"),
        pytest.param(lambda g: 0.1 * torch.randn(N, generator=g), Normal(0.01), id="std 0.1 for 0.01"),
        pytest.param(lambda g: 0.01 * (torch.rand(N, generator=g) * 2 - 1) * math.sqrt(3), Normal(0.01), id="uniform"),
        pytest.param(lambda g: torch.full((7,), 1.0 + 2**-20), Constant(1.0), id="constant off"),
    ],
)
def test_checks_reject_wrong_draws(seed, draw, stated):
    """The checks reject a wrong draw at any seed."""
    with pytest.raises(AssertionError):
        check_drawn_from(draw(torch.Generator().manual_seed(seed)), stated, "planted")
