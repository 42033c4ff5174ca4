"""Stored runs: ``diff A --save RUN`` and ``diff A RUN`` (reference/verify/runs.py) give the live diff's table, refuse a
run that does not fit, load without pickle, and compare across devices, torch releases and trees."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest
import torch

from reference import cli
from reference.verify.registry import get_case
from reference.verify.runs import load_run, record_run, save_run
from tests.helpers import MODELS, SMALLEST, case_params, diff_rows, middle_weighted_layer

# A run of the smallest model with gradients, made by the tree and torch release its header names: regenerate it only
# where the model is meant to change, with ``python -m reference diff lenet5 --save tests/runs/lenet5.safetensors --grads``.
STORED = Path(__file__).parent / "runs" / f"{SMALLEST}.safetensors"


@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> Path:
    """The smallest model's run with gradients, saved by ``diff A --save``."""
    path = tmp_path_factory.mktemp("runs") / f"{SMALLEST}.safetensors"
    assert cli.main(["diff", SMALLEST, "--save", str(path), "--grads"]) == 0
    return path


def _perturbed(b: str) -> list[str]:
    """diff's arguments: the smallest model with one layer's biases moved by 1e-3 against ``b``."""
    layer = middle_weighted_layer(get_case(SMALLEST))
    return ["diff", "tests.helpers:perturbed", b, "--a-kwargs", f"name={SMALLEST}", f"layer={layer}"]


def test_round_trip(saved, capsys):
    """Against its stored run, a model agrees (gradients too), and a perturbed one gets the live diff's table row for
    row, column for column (each layer's own error found the other way round: A's layer on the run's input), the same
    culprit and exit code."""
    assert cli.main(["diff", SMALLEST, str(saved), "--grads"]) == 0
    out = capsys.readouterr().out
    assert f"stored run {SMALLEST}, " in out
    assert "gradients: max |Δ| = 0\n" in out
    assert cli.main([*_perturbed(SMALLEST), "--grads"]) == 1
    live = capsys.readouterr().out
    assert cli.main([*_perturbed(str(saved)), "--grads"]) == 1
    stored = capsys.readouterr().out
    assert diff_rows(stored) == diff_rows(live), stored
    culprit = next(line for line in live.splitlines() if line.startswith("culprit:"))
    assert culprit.replace("B's layer on A's input", "A's layer on the stored run's input") in stored


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--dtype", "float64"], "was made with dtype float32; --dtype float64 asked"),
        (["--input", "2,1,32,32"], "was made with input 1x1x32x32; --input 2x1x32x32 asked"),
        (["--train"], "was made with train False; --train True asked"),
        (["--b-kwargs", "num_classes=5"], "--b-kwargs and --b-device are for a model; B is a stored run"),
        (["--save", "again.safetensors", "--port"], "--save stores A as built, --port would change it"),
    ],
    ids=["dtype", "shape", "mode", "kwargs", "save-port"],
)
def test_run_refused(saved, argv, message, capsys):
    """A run compares on its own input, dtype and mode: asking for others is a usage error (exit 2) naming both."""
    with pytest.raises(SystemExit) as stopped:
        cli.main(["diff", SMALLEST, str(saved), *argv])
    assert stopped.value.code == 2
    assert message in capsys.readouterr().err


def test_run_mismatch(saved, tmp_path, capsys):
    """What does not fit a stored run is named, exit 2, never a traceback: a model that refuses its input, a model
    whose output has another shape, a run without gradients asked for them, a file that is no safetensors file, one
    without a run's header, a missing one."""
    other = min((case for case in MODELS if case.in_channels != get_case(SMALLEST).in_channels),
                key=lambda case: case.trainable_params)  # fmt: skip
    assert cli.main(["diff", other.name, str(saved)]) == 2
    assert f"expects a 4-D floating-point tensor (N, {other.in_channels}, H, W)" in capsys.readouterr().out
    assert cli.main(["diff", "torch.nn:Flatten", str(saved)]) == 2
    assert "A's output is 1x1024, the stored run's 1x10" in capsys.readouterr().out
    bare = tmp_path / "bare.safetensors"
    assert cli.main(["diff", SMALLEST, "--save", str(bare)]) == 0
    (tmp_path / "text.safetensors").write_text("not tensors")
    from safetensors.torch import save_file

    save_file({"x": torch.zeros(1)}, tmp_path / "plain.safetensors")
    for argv, message in [
        ([str(bare), "--grads"], "has no gradients to compare (--grads)"),
        ([str(tmp_path / "text.safetensors")], "is not a stored run: not a safetensors file"),
        ([str(tmp_path / "plain.safetensors")], "is a safetensors file but not a stored run"),
        ([str(tmp_path / "none.safetensors")], "no such stored run"),
    ]:
        with pytest.raises(SystemExit) as stopped:
            cli.main(["diff", SMALLEST, *argv])
        assert stopped.value.code == 2
        assert message in capsys.readouterr().err


def test_no_pickle(saved, monkeypatch):
    """A run is tensors and a JSON header: it loads with pickle and torch.load made to fail, and its header says what
    made it."""
    from safetensors import safe_open

    def refuse(*args, **kwargs):
        raise AssertionError("a stored run was unpickled")

    monkeypatch.setattr(pickle, "loads", refuse)
    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(torch, "load", refuse)
    run = load_run(saved)
    assert run.grads is not None
    with safe_open(str(saved), framework="pt") as stored:
        about = json.loads(stored.metadata()["reference-run"])["about"]
    assert about["model"] == SMALLEST
    assert about["torch"] == torch.__version__
    assert (about["dtype"], about["device"], about["seed"], about["train"]) == ("float32", "cpu", None, False)


def test_stored_release(capsys):
    """Today's tree and torch release against a run stored by an earlier tree (under tox's older torch, an earlier
    release too), its weights ported in: every layer and gradient within the float32 table."""
    run = load_run(STORED)
    assert cli.main(["diff", SMALLEST, str(STORED), "--port", "--grads"]) == 0, capsys.readouterr().out
    out = capsys.readouterr().out
    assert f"made on cpu with torch {run.about['torch']}" in out
    assert "ported the stored run's weights into A by name" in out
    assert all(row[-1] not in ("divergence", "culprit") for row in diff_rows(out).values()), out


def test_train_run(tmp_path):
    """A run made in train mode stores its seed; compared in train mode under that seed it agrees bit for bit (the
    same dropout masks), and a run read back holds the same steps, graph and gradients."""
    from reference.verify.compare import compare_models

    case = get_case(SMALLEST)
    model = case.build().train()
    x = case.input_space.sample()
    path = save_run(record_run(model, x, grads=True, seed=3), tmp_path / "train.safetensors")
    run = load_run(path)
    assert run.train
    assert run.seed == 3
    result = compare_models(model, run, x, grads=True, seed=3)
    assert result.passed, result.report()
    with pytest.raises(ValueError, match="made in train mode with seed 3; this comparison's is 4"):
        compare_models(model, run, x, seed=4)
    with pytest.raises(ValueError, match="the stored run's input has other values than this comparison's"):
        compare_models(model, run, x + 1, seed=3)
    assert [len(step.inputs) for step in run.steps] == [len(step.inputs) for step in record_run(model, x).steps]


@pytest.mark.cost(builds=1, steps=3, forwards=2)
@pytest.mark.parametrize("case", case_params(MODELS))
def test_run_models(case, tmp_path):
    """Every model, in train mode under a seed (several outputs, dropout, batch statistics), against its own run
    written and read back: bit for bit, every layer's output and own error, and every gradient by name."""
    from reference.verify.compare import compare_models
    from reference.verify.diff import build

    model = build(case.name).model.train()
    x = case.input_space.sample()
    path = save_run(record_run(model, x, grads=True, seed=1), tmp_path / "run.safetensors")
    run = load_run(path)
    path.unlink()  # a VGG's is a gigabyte
    result = compare_models(model, run, x, grads=True, seed=1, own=True)
    assert result.passed, result.report()
    assert result.grad_max == 0, result.report()
    alignment = result.alignment  # the run's graph joins its branches as the live one's does: every step meets
    assert len(alignment.pairs) == alignment.steps_a == alignment.steps_b == len(result.layers), alignment.describe()
    assert all(d.own.max_abs_diff in (0, None) for d in result.layers), result.report()


@pytest.mark.cuda
def test_cuda_run(saved, tmp_path, capsys):
    """A run stored on the CPU against the model on CUDA, one stored on CUDA against the model on the CPU, and a live
    diff with B on CUDA: each within the float32 table, forward and gradients."""
    assert cli.main(["diff", SMALLEST, str(saved), "--device", "cuda", "--grads"]) == 0, capsys.readouterr().out
    on_cuda = tmp_path / "cuda.safetensors"
    assert cli.main(["diff", SMALLEST, "--save", str(on_cuda), "--device", "cuda", "--grads"]) == 0
    assert "made on cuda" in capsys.readouterr().out
    assert cli.main(["diff", SMALLEST, str(on_cuda), "--grads"]) == 0, capsys.readouterr().out
    assert cli.main(["diff", SMALLEST, SMALLEST, "--b-device", "cuda", "--grads"]) == 0, capsys.readouterr().out


def test_run_untouched():
    """A comparison leaves a stored run as it was, where A's own layers are replayed on it in place (an in-place ReLU
    after a sum): every step's stored output is unchanged, and a model against its own run needs no tolerance."""
    from reference.verify.compare import compare_models

    class Residual(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc, self.relu = torch.nn.Linear(4, 4), torch.nn.ReLU(inplace=True)

        def forward(self, x):
            return self.relu(self.fc(x) + x)

    model, x = Residual().eval(), torch.randn(3, 4, generator=torch.Generator().manual_seed(0))
    run = record_run(model, x)
    before = [step.output.clone() for step in run.steps]
    result = compare_models(model, run, x, own=True)
    assert result.passed, result.report()
    assert all(torch.equal(step.output, kept) for step, kept in zip(run.steps, before, strict=True))
    assert all(d.needed.atol == d.needed.rtol == 0 for d in result.layers), result.report()
