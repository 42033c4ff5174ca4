"""``python -m reference``: list, summary, and verify (whose exit code must reflect a failing pair)."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import pytest
import torch

from reference import cli, pairs
from reference.specs import SPECS, get_spec


def test_list_shows_every_model_with_its_valid_sides(capsys):
    assert cli.main(["list"]) == 0
    out = capsys.readouterr().out
    for spec in SPECS.values():
        assert spec.name in out
        assert str(spec.valid_sides) in out


def test_summary_puts_torchinfo_next_to_the_paper_facts(capsys):
    assert cli.main(["summary", "lenet5"]) == 0
    out = capsys.readouterr().out
    assert "Trainable params: 60,000" in out  # torchinfo's own count
    assert "340,908" in out
    assert "LeCun" in out


def test_summary_shows_the_printed_neuron_discrepancy(capsys):
    assert cli.main(["summary", "alexnet2012"]) == 0
    out = capsys.readouterr().out
    assert "253,440" in out
    assert "290,400" in out


@pytest.fixture
def lrn_pairs(monkeypatch):
    good = pairs.PAIRS["LocalResponseNorm vs nn.LocalResponseNorm(alpha=5e-4)"]

    def wrong_convention():
        paper, library, x = good.build()
        library.parts[0].alpha = paper.alpha  # torch divides alpha by size: no longer the same function
        return paper, library, x

    broken = dataclasses.replace(good, name="LRN with torch's alpha convention", build=wrong_convention)
    subset = {good.name: good, broken.name: broken}
    monkeypatch.setattr(pairs, "PAIRS", subset)
    return good, broken


def test_verify_fails_and_says_which_pair(lrn_pairs, capsys):
    good, broken = lrn_pairs
    assert cli.main(["verify", "--dtype", "float64"]) == 1
    out = capsys.readouterr().out
    rows = {line.split("  ")[0]: line for line in out.splitlines()}
    assert rows[good.name].rstrip().endswith("PASS")
    assert rows[broken.name].rstrip().endswith("FAIL")
    assert f"FAILED {broken.name} [float64]" in out
    assert "1 passed, 1 failed" in out


def test_verify_exits_zero_when_every_pair_passes(lrn_pairs, monkeypatch, capsys):
    good, _ = lrn_pairs
    monkeypatch.setattr(pairs, "PAIRS", {good.name: good})
    assert cli.main(["verify"]) == 0
    assert "2 passed, 0 failed" in capsys.readouterr().out


@pytest.mark.slow
def test_python_dash_m_reference_verify_passes_every_pair():
    run = subprocess.run([sys.executable, "-m", "reference", "verify"], capture_output=True, text=True, check=False)
    assert run.returncode == 0, run.stdout + run.stderr
    assert f"{2 * len(pairs.PAIRS)} passed, 0 failed" in run.stdout


def test_unknown_model_is_rejected():
    with pytest.raises(SystemExit):
        cli.main(["summary", "vgg16"])
    with pytest.raises(ValueError, match="unknown model 'vgg16'; known: lenet5"):
        get_spec("vgg16")


@pytest.mark.parametrize(
    ("device", "message"),
    [("tpu", "'tpu' is not a torch device"), ("meta", "'meta': verify runs on cpu or cuda")]
    + ([] if torch.cuda.is_available() else [("cuda", "'cuda': CUDA is not available here")]),
)
def test_verify_rejects_a_device_it_cannot_run_on_as_a_usage_error(device, message, capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["verify", "--device", device])
    assert exit_.value.code == 2  # argparse's usage error, before any model is built
    assert message in capsys.readouterr().err
