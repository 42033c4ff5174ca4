"""Each layer's own error and the culprit: a layer whose error only grows what it received is not blamed, the layer
that is wrong is, and so is a step one side lacks."""

from __future__ import annotations

from collections import OrderedDict

import pytest
import torch
from torch import nn

from reference.verify.align import port_by_order
from reference.verify.compare import compare_models
from reference.verify.replay import Own
from reference.verify.runs import record_run

ATOL = 1e-3  # the test's tolerance (rtol 0): every value here is under 1, where the table's atol is not scaled


def _chain() -> nn.Sequential:
    """fc1 writes one value twice; fc2 takes their difference 100 times (0 in exact arithmetic): it grows an error
    fc1 made in one copy 100-fold, with no error of its own; fc3 passes it on."""
    chain = nn.Sequential(OrderedDict(fc1=nn.Linear(2, 2), fc2=nn.Linear(2, 1), fc3=nn.Linear(1, 1))).double()
    with torch.no_grad():
        chain.fc1.weight.copy_(torch.tensor([[0.3, -0.2], [0.3, -0.2]]))
        chain.fc1.bias.fill_(0.1)
        chain.fc2.weight.copy_(torch.tensor([[100.0, -100.0]]))
        chain.fc2.bias.zero_()
        chain.fc3.weight.fill_(0.5)
        chain.fc3.bias.fill_(0.2)
    return chain


def _planted(grown: bool, local: str | None) -> nn.Sequential:
    chain = _chain()
    with torch.no_grad():
        if grown:
            chain.fc1.bias[0] += 1e-4  # fc1's own error, 1e-4, within the tolerance; fc2 makes it 1e-2
        if local is not None:
            chain.get_submodule(local).bias += 0.5  # a real bug: the layer's own error is 0.5
    return chain


X = torch.tensor([[0.4, -0.7], [0.1, 0.9]], dtype=torch.float64)


@pytest.mark.parametrize(
    ("grown", "local", "first", "culprit"),
    [
        (True, "fc3", "fc2", "culprit: 'fc3'"),
        (False, "fc3", "fc3", "culprit: 'fc3'"),
        (False, "fc2", "fc2", "culprit: 'fc2'"),
        (True, None, "fc2", "culprit: none: no layer's own error exceeds the tolerance; the divergence is accumulated"),
    ],
    ids=["grown then a bug", "a bug only", "a bug where it grows", "grown only"],
)
@pytest.mark.parametrize("how", ["aligned", "mapped", "stored", "stored, mapped"])
def test_culprit(grown, local, first, culprit, how):
    """The first diverging layer is where the outputs part; the culprit, the first layer whose own error (B's layer
    on A's input) exceeds the tolerance: a grown error is not blamed on the layer that grew it, and where nothing is
    wrong locally the report says the divergence accumulated. With a layer map and without, and against B's stored
    run (A's layer on the run's input to it)."""
    layers = {name: name for name in ("fc1", "fc2", "fc3")} if "mapped" in how else None
    b = record_run(_planted(grown, local), X) if "stored" in how else _planted(grown, local)
    result = compare_models(_chain(), b, X, rtol=0, atol=ATOL, layers=layers)
    assert result.first_divergence().layer == first, result.report()
    assert result.culprit().startswith(culprit), result.report()
    assert culprit in result.report()
    own = {d.layer: d.own.max_abs_diff for d in result.layers}
    assert own["fc2"] == 0 if local != "fc2" else own["fc2"] == pytest.approx(0.5)  # fc2 grows, it errs in nothing
    assert own["fc1"] == pytest.approx(1e-4 if grown else 0, abs=1e-12)


class _AlexNetHead(nn.Module):
    """A hand-written end of AlexNet's features that forgot the ReLU after its fourth convolution."""

    def __init__(self) -> None:
        super().__init__()
        self.c3, self.relu3 = nn.Conv2d(4, 6, 3, padding=1), nn.ReLU()
        self.c4, self.c5, self.relu5 = nn.Conv2d(6, 6, 3, padding=1), nn.Conv2d(6, 4, 3, padding=1), nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu5(self.c5(self.c4(self.relu3(self.c3(x)))))


def test_culprit_lacking_step():
    """A model missing one operation, ported by order from the library's, names the operation it lacks as the
    culprit, where the outputs part one layer later (no layer's own error exceeds the tolerance there)."""
    torch.manual_seed(0)
    library = nn.Sequential(nn.Conv2d(4, 6, 3, padding=1), nn.ReLU(), nn.Conv2d(6, 6, 3, padding=1), nn.ReLU(),
                            nn.Conv2d(6, 4, 3, padding=1), nn.ReLU())  # fmt: skip
    mine, x = _AlexNetHead(), torch.randn(2, 4, 5, 5)
    port_by_order(library, mine, x)
    result = compare_models(mine, library, x, rtol=0, atol=0)
    assert result.alignment.describe().startswith("layers aligned by execution order, shape and name: 5 of A's 5")
    assert result.first_divergence().layer == "c5", result.report()
    assert result.culprit() == "culprit: B's '3' (relu), which A lacks: no counterpart", result.report()


@pytest.mark.parametrize("shift", [1e-6, 1e-3, 0.5])
def test_needed(shift):
    """The bounds that would have passed equal the measured errors: atol (rtol 0) is the largest |Δ| (values under
    1: not scaled), rtol (atol 0) the largest |Δ| / |b|; each passes the comparison exactly and a hair less fails
    it. The error in ULPs is |Δ| over B's float64 spacing at |b|."""
    a, b = _chain(), _planted(False, None)
    with torch.no_grad():
        b.fc3.bias += shift
    result = compare_models(a, b, X, own=True)
    with torch.no_grad():
        out_a, out_b = a(X), b(X)
    difference = (out_a - out_b).abs()
    assert result.needed.atol == difference.max().item()
    assert result.needed.rtol == (difference / out_b.abs()).max().item()
    spacing = torch.nextafter(out_b.abs(), torch.tensor(float("inf"), dtype=torch.float64)) - out_b.abs()
    assert result.needed.ulps == pytest.approx((difference / spacing).max().item())
    for key in ("atol", "rtol"):
        bound = {"rtol": 0.0, "atol": 0.0, key: getattr(result.needed, key)}
        assert compare_models(a, b, X, layers={}, **bound).passed
        assert not compare_models(a, b, X, layers={}, **{**bound, key: bound[key] * (1 - 1e-9)}).passed
    assert result.would_pass() == (f"would pass at rtol >= {result.needed.rtol:.3g} (atol 0), "
                                   f"or atol >= {result.needed.atol:.3g} (rtol 0)")  # fmt: skip


def test_not_replayed():
    """A step that cannot be replayed says why: in train mode a dropout (it draws a new mask), and with no seed every
    step (A's second run would draw other masks); with a seed the linear layer is replayed."""
    torch.manual_seed(0)
    a = nn.Sequential(nn.Linear(4, 4), nn.Dropout(0.5)).train()
    b = nn.Sequential(nn.Linear(4, 4), nn.Dropout(0.5)).train()
    b.load_state_dict(a.state_dict())
    with torch.no_grad():
        b[0].bias += 1.0
    x = torch.randn(3, 4)
    seeded = {d.layer: d.own for d in compare_models(a, b, x, seed=0).layers}
    assert seeded["0"].max_abs_diff == pytest.approx(1.0)
    assert seeded["1"].why == "a dropout in train mode draws a new mask"
    unseeded = {d.layer: d.own for d in compare_models(a, b, x).layers}
    assert unseeded["0"] == Own(why="A's dropout would draw other masks on a second run (compare with a seed)")
    assert unseeded["1"].why == "a dropout in train mode draws a new mask"
