"""``python -m reference``: list, summary, goldens, verify (whose exit code must reflect a failing pair), and diff."""

from __future__ import annotations

import dataclasses
import fcntl
import json
import os
import pty
import re
import select
import struct
import subprocess
import sys
import termios
from collections import Counter

import pytest
import torch

from reference import cli
from reference.models import tables
from reference.verify import registry
from reference.verify.compare import layer_modules
from reference.verify.pairs import compare_pair, library, ported, reference_module
from reference.verify.registry import CASES, get_case
from tests.helpers import (
    LAYERS,
    MODELS,
    PAIRS,
    SMALLEST,
    case_params,
    diff_rows,
    meta_model,
    middle_weighted_layer,
    pair_params,
)

# The cheapest layer with a counterpart: what the CLI's verify checks run on (SMALLEST: the smallest model).
LIGHT = min((case for case in LAYERS if case.pairs), key=lambda case: case.input_space.sample().numel())


def test_list(capsys):
    """Every model with its valid sides, every layer."""
    assert cli.main(["list"]) == 0
    out = capsys.readouterr().out
    for case in MODELS:
        assert any(line.startswith(case.name + " ") and str(case.valid_sides) in line for line in out.splitlines())
    for case in LAYERS:
        assert case.name in out


@pytest.mark.cost
@pytest.mark.parametrize("case", case_params(MODELS))
def test_summary_kernels(case, capsys):
    """The summary shows each convolution's kernel and each LRN of the table: what tells configurations apart (C's
    1x1 convolutions, A-LRN's one LRN), on the meta device."""
    assert cli.main(["summary", case.name]) == 0
    out = capsys.readouterr().out
    model, kernels, lrns = meta_model(case), Counter(), 0
    for layer, spec in case.architecture:
        if layer in case.architecture.auxiliary:  # train mode's alone: not in an eval-mode summary
            continue
        modules = len(layer_modules(model, layer))  # two in the two-tower form
        if isinstance(spec, tables.Conv2dSpec):
            kernels[spec.kernel_size] += modules
        lrns += modules if isinstance(spec, tables.LocalResponseNormSpec) else 0
    assert Counter(int(k) for k in re.findall(r"─Conv2d: [\d-]+ +\[(\d+), \1\]", out)) == kernels, out
    assert len(re.findall(r"─LocalResponseNorm: ", out)) == lrns, out


@pytest.mark.cost
@pytest.mark.parametrize("case", case_params(MODELS, lambda case: bool(case.paper.tables or case.paper.errata)))
def test_summary_facts(case, capsys):
    """torchinfo's summary next to the facts, errata and departures."""
    assert cli.main(["summary", case.name]) == 0
    out = capsys.readouterr().out
    assert f"Trainable params: {case.trainable_params:,}" in out  # torchinfo's own count
    assert case.paper.citation in out
    for errata in case.paper.errata.values():
        for layer, (printed, note) in errata.items():
            assert f"{printed:,}" in out
            assert f"erratum, {layer}: {note}" in out
    for departure in case.paper.departures:
        assert f"departs: {departure}" in out


def _shifted(other: torch.nn.Module) -> torch.nn.Module:
    """A counterpart whose output is off by 1e-3: a pair that must fail."""
    other.register_forward_hook(lambda _module, _args, output: output + 1e-3)
    return other


@pytest.fixture
def broken(monkeypatch):
    """:data:`LIGHT` with a second, broken counterpart: its own, its output shifted."""
    good = LIGHT.pairs[0]
    shifted = dataclasses.replace(good, name="shifted", other=lambda module: _shifted(good.other(module)))
    monkeypatch.setitem(CASES, LIGHT.name, dataclasses.replace(LIGHT, pairs=(good, shifted)))
    return good, shifted


def _verifydiff_rows(out: str) -> dict[str, str]:
    return {line.split("  ")[0]: line for line in out.splitlines() if " vs " in line and not line.startswith("*")}


def test_verify_fails(broken, capsys):
    """verify says which pair failed, and exits 1."""
    good, shifted = broken
    assert cli.main(["verify", LIGHT.name, "--dtype", "float64"]) == 1
    out = capsys.readouterr().out
    rows = _verifydiff_rows(out)
    assert " PASS " in rows[f"{LIGHT.name} vs {good.name}"]
    assert " FAIL " in rows[f"{LIGHT.name} vs {shifted.name}"]
    assert f"FAILED {LIGHT.name} vs {shifted.name} [float64]" in out
    assert "1 passed, 1 failed" in out


def _steeper(other: torch.nn.Module) -> torch.nn.Module:
    """The counterpart with its outputs as they were, bit for bit, and gradients twice as large."""
    other.register_forward_hook(lambda _module, _args, out: out.detach() + 2 * (out - out.detach()))
    return other


def _inner_doubled(other: torch.nn.Module, layer: str, x: torch.Tensor) -> torch.nn.Module:
    """The counterpart with ``layer`` giving twice its output and the next module halving it back (exact in binary
    floating point): its outputs and gradients as they were, bit for bit; one inner layer not."""
    order = []
    leaves = [(name, m) for name, m in other.named_modules() if next(m.children(), None) is None]
    handles = [m.register_forward_pre_hook(lambda _m, _a, name=name: order.append(name)) for name, m in leaves]
    with torch.no_grad():
        like = next(other.parameters())  # the port builds it on the meta device: the order of the calls is enough
        other(x.to(device=like.device, dtype=like.dtype))
    for handle in handles:
        handle.remove()
    consumer = other.get_submodule(order[order.index(layer) + 1])
    doubled = []
    other.get_submodule(layer).register_forward_hook(lambda _m, _a, out: doubled.append(True) or 2 * out)
    consumer.register_forward_pre_hook(lambda _m, args: (args[0] / 2, *args[1:]) if doubled and doubled.pop() else None)
    return other


@pytest.mark.parametrize("broken", ["gradients", "inner layer"])
def test_verify_fails_unseen_at_output(monkeypatch, capsys, broken):
    """A pair whose outputs agree bit for bit still fails, and verify exits 1, where only the gradients differ or
    only a mapped inner layer does."""
    case = CASES[SMALLEST]
    good = case.pairs[0]
    x = case.input_space.sample()
    if broken == "gradients":
        other = lambda module: _steeper(good.other(module))  # noqa: E731
    else:
        other = lambda module: _inner_doubled(good.other(module), next(iter(good.layers.values())), x)  # noqa: E731
    pair = dataclasses.replace(good, name=broken, other=other)
    reference = reference_module(case)
    fine, wrong = (compare_pair(p, reference, ported(p, reference), x) for p in (good, pair))
    assert wrong.forward_max == fine.forward_max  # the outputs tell nothing
    monkeypatch.setitem(CASES, case.name, dataclasses.replace(case, pairs=(pair,)))
    assert cli.main(["verify", case.name, "--dtype", "float64"]) == 1
    out = capsys.readouterr().out
    assert " FAIL " in _verifydiff_rows(out)[f"{case.name} vs {broken}"], out
    assert "0 passed, 1 failed" in out


def test_verify_passes(capsys):
    """verify of one case by name or by its hyphenated alias, in both dtypes: every row passes, exit 0."""
    assert cli.main(["verify", LIGHT.name.replace("_", "-"), "--dtype", "float32", "float64"]) == 0
    out = capsys.readouterr().out
    assert f"{2 * len(LIGHT.pairs)} passed, 0 failed" in out
    assert set(_verifydiff_rows(out)) == {f"{LIGHT.name} vs {pair.name}" for pair in LIGHT.pairs}


def test_verify_pattern(capsys):
    """-k keeps the cases whose name holds the pattern (or matches it as a shell pattern)."""
    word = LIGHT.name.split("_")[-1]
    expected = {f"{case.name} vs {pair.name}" for case in CASES.values() if word in case.name for pair in case.pairs}
    assert cli.main(["verify", "-k", word, *(case.name for case in LAYERS)]) == 0
    assert set(_verifydiff_rows(capsys.readouterr().out)) == {row for row in expected if row.split(" vs ")[0] in
                                                         {case.name for case in LAYERS}}  # fmt: skip
    assert cli.main(["verify", "-k", "no-case-has-this"]) == 1


@pytest.mark.cost(seconds=8.0)
def test_verify_progress_bar():
    """A progress bar on a terminal (stderr a pty), none in a pipe; the rows on stdout either way."""
    argv = [sys.executable, "-m", "reference", "verify", LIGHT.name]
    piped = subprocess.run(argv, capture_output=True, text=True, check=True)
    assert "pair/s" not in piped.stderr + piped.stdout
    assert f"{LIGHT.name} vs " in piped.stdout
    controller, terminal = pty.openpty()
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))  # a new pty has no columns
    try:
        done = subprocess.run(argv, stdout=subprocess.PIPE, stderr=terminal, text=True, check=True)
        shown = os.read(controller, 1 << 16).decode() if select.select([controller], [], [], 5)[0] else ""
    finally:
        os.close(controller)
        os.close(terminal)
    assert f"{len(LIGHT.pairs)}/{len(LIGHT.pairs)}" in shown, shown
    assert "pair" in shown, shown
    assert f"{LIGHT.name} vs " in done.stdout


@pytest.mark.cost(seconds=70.0)
def test_verify_all():
    """``python -m reference verify`` in a fresh process: every pair passes."""
    run = subprocess.run([sys.executable, "-m", "reference", "verify"], capture_output=True, text=True, check=False)
    assert run.returncode == 0, run.stdout + run.stderr
    assert f"{len(PAIRS)} passed, 0 failed" in run.stdout


@pytest.mark.cost(seconds=60.0)
def test_goldens_elsewhere(tmp_path):
    """``python -m reference goldens`` passes from another directory: the goldens ship with the package."""
    run = subprocess.run([sys.executable, "-m", "reference", "goldens"], capture_output=True, text=True,
                         check=False, cwd=tmp_path)  # fmt: skip
    assert run.returncode == 0, run.stdout + run.stderr
    assert run.stdout.count("ok ") == 2 * len(MODELS)


def test_goldens_write(tmp_path, monkeypatch, capsys):
    """Goldens written to a directory are checked from it."""
    small = [case for case in MODELS if case.trainable_params < 100_000]
    monkeypatch.setattr(registry, "CASES", {case.name: case for case in small})
    assert cli.main(["goldens", "--write", "--dir", str(tmp_path)]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(f"{case.name}.json" for case in small)
    assert cli.main(["goldens", "--dir", str(tmp_path)]) == 0
    assert capsys.readouterr().out.count("ok ") == 2 * len(small)


def test_goldens_drift(tmp_path, monkeypatch, capsys):
    """A stored golden whose first logit moved by one part in a thousand is a drift: named, and the command exits
    1."""
    case = get_case(SMALLEST)
    monkeypatch.setattr(registry, "CASES", {case.name: case})
    assert cli.main(["goldens", "--write", "--dir", str(tmp_path)]) == 0
    path = tmp_path / f"{case.name}.json"
    stored = json.loads(path.read_text())
    stored["torch.float32"]["logits"][0] *= 1.001
    path.write_text(json.dumps(stored))
    capsys.readouterr()
    assert cli.main(["goldens", "--dir", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert f"DRIFT {case.name}" in out
    assert f"ok    {case.name} torch.float64" in out


def test_unknown_name(capsys):
    """An unknown name is a usage error in the CLI, a ValueError listing the known ones in the registry."""
    with pytest.raises(SystemExit):
        cli.main(["summary", "no-such-model"])
    with pytest.raises(SystemExit):
        cli.main(["verify", "no-such-model"])
    assert "unknown model or layer 'no-such-model'" in capsys.readouterr().err
    with pytest.raises(ValueError, match=f"unknown model or layer 'no-such-model'; known: {next(iter(CASES))}"):
        get_case("no-such-model")


@pytest.mark.parametrize(
    ("device", "message"),
    [("tpu", "'tpu' is not a torch device"), ("meta", "'meta': the models run on cpu or cuda")]
    + ([] if torch.cuda.is_available() else [("cuda", "'cuda': CUDA is not available here")]),
)
def test_verify_device(device, message, capsys):
    """A device verify cannot run on is a usage error, before any model is built."""
    with pytest.raises(SystemExit) as exit_:
        cli.main(["verify", "--device", device])
    assert exit_.value.code == 2  # argparse's usage error, before any model is built
    assert message in capsys.readouterr().err


def test_diff_exit_codes(capsys):
    """diff's exit code on the smallest model, whatever the default run keeps of the per-model checks: 0 where two
    builds under one seed agree, 1 where one has a layer's biases moved by 1e-3, with gradients compared."""
    case = get_case(SMALLEST)
    assert cli.main(["diff", case.name, case.name, "--exact", "--grads"]) == 0
    assert capsys.readouterr().out.rstrip().endswith("agree")
    argv = ["diff", "tests.helpers:perturbed", case.name, "--a-kwargs", f"name={case.name}",
            f"layer={middle_weighted_layer(case)}", "--exact", "--grads"]  # fmt: skip
    assert cli.main(argv) == 1
    assert capsys.readouterr().out.rstrip().endswith("diverge")


def test_diff_device(capsys):
    """diff runs both models on ``--device`` and says so; a device this machine lacks is a usage error (exit 2)."""
    case = get_case(SMALLEST)
    assert cli.main(["diff", case.name, case.name, "--exact", "--device", "cpu"]) == 0
    assert " on cpu, eval mode" in capsys.readouterr().out
    if not torch.cuda.is_available():
        with pytest.raises(SystemExit) as stopped:
            cli.main(["diff", case.name, case.name, "--device", "cuda"])
        assert stopped.value.code == 2
        assert "CUDA is not available here" in capsys.readouterr().err


def test_diff_plot(tmp_path, capsys):
    """``diff --plot`` writes the errors per layer, here of two models that part, as a PNG (its signature, its size in
    the header) or an SVG (an XML document whose root is <svg>); another suffix is a usage error."""
    import struct
    import xml.etree.ElementTree as ElementTree

    case = get_case(SMALLEST)
    argv = ["diff", "tests.helpers:perturbed", case.name, "--a-kwargs", f"name={case.name}",
            f"layer={middle_weighted_layer(case)}", "--plot"]  # fmt: skip
    png, svg = tmp_path / "errors.png", tmp_path / "errors.svg"
    assert cli.main([*argv, str(png)]) == 1
    assert cli.main([*argv, str(svg)]) == 1
    assert f"plot: {png}" in capsys.readouterr().out
    head = png.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n"
    assert head[12:16] == b"IHDR"
    width, height = struct.unpack(">II", head[16:24])
    assert width >= 400
    assert height >= 300
    assert ElementTree.parse(svg).getroot().tag.endswith("svg")
    with pytest.raises(SystemExit) as stopped:
        cli.main(["diff", case.name, case.name, "--plot", str(tmp_path / "errors.pdf")])
    assert stopped.value.code == 2
    assert "--plot writes .png or .svg" in capsys.readouterr().err


def test_costs(tmp_path, monkeypatch, capsys):
    """``costs --write`` measures each case named (here in this process, not a fresh one) and stores what ``load``
    reads back: seconds and peaks for float32 and float64, the build, forward and pairs of the smallest model
    taking measurable time (rounded to 1 ms or 0.1 ms)."""
    from reference.verify import costs

    case = SMALLEST
    monkeypatch.setattr(costs, "measure", lambda name: {d: costs.Cost(**c) for d, c in costs._case_costs(name).items()})
    monkeypatch.setattr(costs, "stored_path", lambda: tmp_path / "costs.json")
    assert cli.main(["costs", case, "--write"]) == 0
    assert case in capsys.readouterr().out
    stored = costs.load(tmp_path / "costs.json")["cases"]
    assert set(stored) == {case}
    assert set(stored[case]) == {"float32", "float64"}
    for cost in stored[case].values():
        assert cost.build > 0
        assert cost.forward > 0
        assert cost.pairs > 0


@pytest.mark.cost(builds=2, forwards=2)
@pytest.mark.parametrize("case", case_params(MODELS))
def test_diff_perturbation(case, capsys):
    """diff names the layer where a perturbation was planted, and exits 1."""
    layer = middle_weighted_layer(case)
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
    rows = diff_rows(out)
    first = "+".join(layer_modules(case.build(), layer))
    assert rows[first][-2:] == ["first", "divergence"], out
    assert [name for name, row in rows.items() if "divergence" in row] == [first], out  # the first, and only it
    assert out.rstrip().endswith("diverge")


@pytest.mark.cost(builds=2, steps=2)
@pytest.mark.parametrize("case", case_params(MODELS))
def test_diff_import_path(case, capsys):
    """diff of a model and its builder by import path, ported by name: bitwise, gradients too. (A case whose weights
    the registry prepares, by a builder that prepares them as a registry name's are: the fresh ones may overflow.)"""
    builder = "reference:get_model" if case.prepare is None else "tests.helpers:registry_model"
    argv = ["diff", case.name, builder, "--b-kwargs", f"name={case.name}", "--port", "--exact", "--grads"]
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    assert all(row[2] == "0" for row in diff_rows(out).values()), out
    assert "gradients: max |Δ| = 0" in out
    assert out.rstrip().endswith("agree")


@pytest.mark.cost(builds=2, steps=2, forwards=2)
@pytest.mark.parametrize(("case", "pair"), pair_params(lambda _, pair: library(pair) is not None))
def test_diff_library(case, pair, capsys):
    """diff of a model and its library's model, ported by execution order: bitwise."""
    builder = library(pair)
    assert cli.main(["diff", case.name, f"{builder.__module__}:{builder.__qualname__}", "--port", "--exact",
                     "--grads"]) == 0  # fmt: skip
    out = capsys.readouterr().out
    assert "ported B into A by execution order" in out
    assert all(row[2] == "0" for row in diff_rows(out).values()), out


@pytest.mark.cost(builds=2, steps=2)
@pytest.mark.parametrize(("case", "pair"), pair_params(lambda _, pair: pair.model in CASES))
def test_diff_registry_port(case, pair, capsys):
    """diff of two registry models uses the registry's port, with no layer map."""
    assert cli.main(["diff", case.name, pair.model, "--port", "--grads", "--train"]) == 0
    out = capsys.readouterr().out
    assert "ported B into A by the registry's port" in out
    assert "layers aligned by execution order, shape and name" in out
    for layer, mapped in pair.layers.items():
        assert diff_rows(out)[layer][0] == (mapped if isinstance(mapped, str) else "+".join(mapped)), out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["no-such-model", SMALLEST], f"'no-such-model' is neither a registry name ({next(iter(CASES))}, "),
        ([SMALLEST, SMALLEST, "--a-kwargs", "oops"], "keyword arguments are name=value, got 'oops'"),
        (["collections:OrderedDict", SMALLEST], "collections:OrderedDict returned OrderedDict, not an nn.Module"),
        (["torch.nn:Identity", "collections:OrderedDict"], "collections:OrderedDict returned OrderedDict"),
        (["torch.nn:Identity", "torch.nn:Identity"], "--input is needed where neither A nor B is a registry name"),
        ([SMALLEST, SMALLEST, "--input", "1,x"], "'1,x' is not a shape like 2,3,224,224"),
    ],
)
def test_diff_usage_errors(argv, message, capsys):
    """What diff cannot build is a usage error."""
    with pytest.raises(SystemExit) as exit_:
        cli.main(["diff", *argv])
    assert exit_.value.code == 2
    assert message in capsys.readouterr().err


def test_diff_port_mismatch(capsys):
    """A diff that cannot port by order shows the tensors up to the first mismatch."""
    small = [case for case in MODELS if case.trainable_params < 1_000_000]
    a, b = next((a, b) for a in small for b in small if a.trainable_params != b.trainable_params)
    assert cli.main(["diff", a.name, b.name, "--port"]) == 2
    out = capsys.readouterr().out
    assert "by order: tensor" in out
    assert out.rstrip().endswith("<- first mismatch")
