"""``python -m reference``: list, summary, goldens, verify (whose exit code must reflect a failing pair), and diff."""

from __future__ import annotations

import dataclasses
import re
import subprocess
import sys
from collections import Counter

import pytest
import torch

from reference import cli
from reference.models import tables
from reference.verify import registry
from reference.verify.compare import layer_modules
from reference.verify.registry import CASES, get_case
from tests.helpers import LAYERS, MODELS, PAIRS, case_params, heavy, meta_model, pair_params


def test_list_shows_every_model_with_its_valid_sides_and_every_layer(capsys):
    assert cli.main(["list"]) == 0
    out = capsys.readouterr().out
    for case in MODELS:
        assert any(line.startswith(case.name + " ") and str(case.valid_sides) in line for line in out.splitlines())
    for case in LAYERS:
        assert case.name in out


@pytest.mark.light
@pytest.mark.parametrize("case", case_params(MODELS))
def test_summary_shows_each_convolution_s_kernel_and_each_lrn_of_the_table(case, capsys):
    """What tells configurations apart must be visible: C's 1x1 convolutions, A-LRN's one LRN (on the meta device)."""
    assert cli.main(["summary", case.name]) == 0
    out = capsys.readouterr().out
    model, kernels, lrns = meta_model(case), Counter(), 0
    for layer, spec in case.architecture:
        modules = len(layer_modules(model, layer))  # two in the two-tower form
        if isinstance(spec, tables.Conv2d):
            kernels[spec.kernel_size] += modules
        lrns += modules if isinstance(spec, tables.LocalResponseNorm) else 0
    assert Counter(int(k) for k in re.findall(r"─Conv2d: [\d-]+ +\[(\d+), \1\]", out)) == kernels, out
    assert len(re.findall(r"─LocalResponseNorm: ", out)) == lrns, out


@pytest.mark.parametrize("case", [case for case in MODELS if case.facts.tables or case.facts.errata][:2],
                         ids=lambda case: case.name)  # fmt: skip
def test_summary_puts_torchinfo_next_to_the_facts_errata_and_departures(case, capsys):
    assert cli.main(["summary", case.name]) == 0
    out = capsys.readouterr().out
    assert f"Trainable params: {case.trainable_params:,}" in out  # torchinfo's own count
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
    small = [case for case in MODELS if case.trainable_params < 100_000]
    monkeypatch.setattr(registry, "CASES", {case.name: case for case in small})
    assert cli.main(["goldens", "--write", "--dir", str(tmp_path)]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(f"{case.name}.json" for case in small)
    assert cli.main(["goldens", "--dir", str(tmp_path)]) == 0
    assert capsys.readouterr().out.count("ok ") == 2 * len(small)


def test_unknown_model_is_rejected():
    with pytest.raises(SystemExit):
        cli.main(["summary", "no-such-model"])
    with pytest.raises(ValueError, match="unknown model or layer 'no-such-model'; known: lenet5"):
        get_case("no-such-model")


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


def _rows(out: str) -> dict[str, list[str]]:
    """The diff table's rows (from the line under the header to the first blank one) by A's layer: [B's layer,
    shape, max |Δ|, relative, mark]."""
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("---")) + 1
    rows = lines[start : lines.index("", start)]
    return {cells[0]: cells[1:] for cells in map(str.split, rows)}


def _middle_weighted_layer(case) -> str:
    weighted = [name for name, count in case.architecture.trainable_params().items() if count]
    return weighted[len(weighted) // 2]


@pytest.mark.parametrize("case", case_params(MODELS, slow_if=heavy))
def test_diff_names_the_layer_where_a_perturbation_was_planted_and_exits_one(case, capsys):
    layer = _middle_weighted_layer(case)
    argv = [
        "diff",
        "tests.helpers:perturbed",
        case.name,
        "--a-kwargs",
        f"name={case.name}",
        f"layer={layer}",
        "--exact",
    ]
    assert cli.main(argv) == 1
    out = capsys.readouterr().out
    rows = _rows(out)
    first = "+".join(layer_modules(case.build(), layer))
    assert rows[first][-2:] == ["first", "divergence"], out
    assert [name for name, row in rows.items() if "divergence" in row] == [first], out  # the first, and only it
    assert out.rstrip().endswith("diverge")


@pytest.mark.parametrize("case", case_params(MODELS, slow_if=heavy))
def test_diff_of_a_model_and_its_builder_by_import_path_agrees_bitwise_ported_by_name(case, capsys):
    argv = ["diff", case.name, "reference:get_model", "--b-kwargs", f"name={case.name}", "--port", "--exact", "--grads"]
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    assert all(row[2] == "0" for row in _rows(out).values()), out
    assert "gradients: max |Δ| = 0" in out
    assert out.rstrip().endswith("agree")


@pytest.mark.slow
@pytest.mark.parametrize(("case", "counterpart"), pair_params(lambda _, c: c.library is not None))
def test_diff_of_a_model_and_its_library_model_ported_by_order_agrees_bitwise(case, counterpart, capsys):
    library = f"{counterpart.library.__module__}:{counterpart.library.__qualname__}"
    assert cli.main(["diff", case.name, library, "--port", "--exact", "--grads"]) == 0
    out = capsys.readouterr().out
    assert "ported B into A by execution order" in out
    assert all(row[2] == "0" for row in _rows(out).values()), out


@pytest.mark.slow
@pytest.mark.parametrize(("case", "counterpart"), pair_params(lambda _, c: c.case is not None))
def test_diff_of_two_registry_models_uses_the_registry_port_with_no_map(case, counterpart, capsys):
    assert cli.main(["diff", case.name, counterpart.case, "--port", "--grads", "--train"]) == 0
    out = capsys.readouterr().out
    assert "ported B into A by the registry's port" in out
    assert "layers aligned by execution order and shape" in out
    for layer, mapped in counterpart.layers.items():
        assert _rows(out)[layer][0] == (mapped if isinstance(mapped, str) else "+".join(mapped)), out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["no-such-model", "lenet5"], "'no-such-model' is neither a registry name (lenet5, "),
        (["lenet5", "lenet5", "--a-kwargs", "oops"], "keyword arguments are name=value, got 'oops'"),
        (["collections:OrderedDict", "lenet5"], "collections:OrderedDict returned OrderedDict, not an nn.Module"),
        (["torch.nn:Identity", "collections:OrderedDict"], "collections:OrderedDict returned OrderedDict"),
        (["torch.nn:Identity", "torch.nn:Identity"], "--input is needed where neither A nor B is a registry name"),
        (["lenet5", "lenet5", "--input", "1,x"], "'1,x' is not a shape like 2,3,224,224"),
    ],
)
def test_diff_rejects_what_it_cannot_build_as_a_usage_error(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["diff", *argv])
    assert exit_.value.code == 2
    assert message in capsys.readouterr().err


def test_diff_that_cannot_port_by_order_shows_the_tensors_up_to_the_first_mismatch(capsys):
    small = [case for case in MODELS if not heavy(case)]
    a, b = next((a, b) for a in small for b in small if a.trainable_params != b.trainable_params)
    assert cli.main(["diff", a.name, b.name, "--port"]) == 2
    out = capsys.readouterr().out
    assert "by order: tensor" in out
    assert out.rstrip().endswith("<- first mismatch")
