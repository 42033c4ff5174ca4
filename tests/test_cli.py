"""``python -m reference``: list, summary, goldens, and verify (whose exit code must reflect a failing pair)."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import pytest
import torch

from reference import cli
from reference.verify import registry
from reference.verify.registry import CASES, get_case
from tests.helpers import LAYERS, MODELS, PAIRS


def test_list_shows_every_model_with_its_valid_sides_and_every_layer(capsys):
    assert cli.main(["list"]) == 0
    out = capsys.readouterr().out
    for case in MODELS:
        assert any(line.startswith(case.name + " ") and str(case.valid_sides) in line for line in out.splitlines())
    for case in LAYERS:
        assert case.name in out


@pytest.mark.parametrize("case", [case for case in MODELS if case.facts.tables or case.facts.errata][:2],
                         ids=lambda case: case.name)  # fmt: skip
def test_summary_puts_torchinfo_next_to_the_facts_errata_and_departures(case, capsys):
    assert cli.main(["summary", case.name]) == 0
    out = capsys.readouterr().out
    assert f"Trainable params: {case.facts.trainable_params:,}" in out  # torchinfo's own count
    assert case.facts.citation in out
    for layer, (printed, note) in case.facts.errata.items():
        assert f"{printed:,}" in out
        assert f"erratum, {layer}: {note}" in out
    for departure in case.departures:
        assert f"departs: {departure}" in out


@pytest.fixture
def lrn_only(monkeypatch):
    """The registry cut to one LRN case: its counterpart, and a copy with torch's alpha convention (broken)."""
    case = CASES["local-response-norm"]
    good = case.counterparts[0]

    def wrong_convention(lrn):
        library = good.port(lrn)
        library.parts[0].alpha = lrn.alpha  # torch divides alpha by size: no longer the same function
        return library

    broken = dataclasses.replace(good, name="torch's alpha convention", port=wrong_convention)
    monkeypatch.setattr(registry, "CASES", {case.name: dataclasses.replace(case, counterparts=(good, broken))})
    return case, good, broken


def test_verify_fails_and_says_which_pair(lrn_only, capsys):
    case, good, broken = lrn_only
    assert cli.main(["verify", "--dtype", "float64"]) == 1
    out = capsys.readouterr().out
    rows = {line.split("  ")[0]: line for line in out.splitlines()}
    assert rows[f"{case.name} vs {good.name}"].rstrip().endswith("PASS")
    assert rows[f"{case.name} vs {broken.name}"].rstrip().endswith("FAIL")
    assert f"FAILED {case.name} vs {broken.name} [float64]" in out
    assert "1 passed, 1 failed" in out


def test_verify_exits_zero_when_every_pair_passes(lrn_only, monkeypatch, capsys):
    case, good, _ = lrn_only
    monkeypatch.setattr(registry, "CASES", {case.name: dataclasses.replace(case, counterparts=(good,))})
    assert cli.main(["verify"]) == 0
    assert "2 passed, 0 failed" in capsys.readouterr().out


@pytest.mark.slow
def test_python_dash_m_reference_verify_passes_every_pair():
    run = subprocess.run([sys.executable, "-m", "reference", "verify"], capture_output=True, text=True, check=False)
    assert run.returncode == 0, run.stdout + run.stderr
    assert f"{2 * len(PAIRS)} passed, 0 failed" in run.stdout


@pytest.mark.slow
def test_python_dash_m_reference_goldens_passes_from_another_directory(tmp_path):
    run = subprocess.run([sys.executable, "-m", "reference", "goldens"], capture_output=True, text=True,
                         check=False, cwd=tmp_path)  # fmt: skip
    assert run.returncode == 0, run.stdout + run.stderr
    assert run.stdout.count("ok ") == 2 * len(MODELS)


def test_goldens_written_to_a_directory_are_checked_from_it(tmp_path, monkeypatch, capsys):
    small = [case for case in MODELS if case.facts.trainable_params < 100_000]
    monkeypatch.setattr(registry, "CASES", {case.name: case for case in small})
    assert cli.main(["goldens", "--write", "--dir", str(tmp_path)]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(f"{case.name}.json" for case in small)
    assert cli.main(["goldens", "--dir", str(tmp_path)]) == 0
    assert capsys.readouterr().out.count("ok ") == 2 * len(small)


def test_unknown_model_is_rejected():
    with pytest.raises(SystemExit):
        cli.main(["summary", "vgg16"])
    with pytest.raises(ValueError, match="unknown model or layer 'vgg16'; known: lenet5"):
        get_case("vgg16")


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
