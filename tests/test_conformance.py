"""The tools a PyTorch user points at a model, on every case and on each of its counterparts alike: FX and
torchvision's feature extraction, jit.trace with save and load, torch.export (static, dynamic batch, dynamic H and
W), ONNX through both exporters run by onnxruntime, torch.func, and repr.

Where a tool runs the same operations in the same order as eager mode, the comparison is exact; where it runs
other kernels (onnxruntime, vmap's batched ones), the dtype's table tolerance applies. Each check's cost marker says
what it spends beyond the model's own passes: a tool's fixed seconds, and serialising the weights (a jit archive, an
ONNX file) as builds, which grow with them alike."""

from __future__ import annotations

import functools
import inspect
import io
import warnings

import pytest
import torch
from torch import Tensor, nn

from reference.models.base import ReferenceModel
from reference.verify.compare import assert_close, capture_outputs
from tests.helpers import MODELS, Subject, case_params, narrowable, subject_params

# What a layer table has, for the costs that grow with it.
LAYERS_OF = {"seconds": lambda case: 0.02 * len(case.architecture.layers) if case.is_model else 0.02}

ONNX_DYNAMO = torch.__version__ >= (2, 5)  # torch.onnx.export(..., dynamo=True) is new in 2.5


@functools.cache
def _export_keeps_pooled_sides_dynamic() -> bool:
    """Whether this torch exports torch's own pooling layers with a dynamic side. torch 2.4 and 2.11 guard on the
    side's parity ("Constraints violated ... % 2 == 0"), so that even torchvision's AlexNet does not export with
    dynamic H and W there; torch 2.14 keeps the side symbolic."""
    pools = nn.Sequential(nn.MaxPool2d(3, 2), nn.AvgPool2d(2))
    dims = ({2: torch.export.Dim("side", min=32, max=40)},)
    try:
        torch.export.export(pools, (torch.randn(1, 1, 32, 32),), dynamic_shapes=dims)
    except (AssertionError, RuntimeError, torch._dynamo.exc.UserError):
        return False
    return True


def _batch(subject: Subject, batch: int, height: int | None = None, width: int | None = None) -> Tensor:
    """A reproducible input of the case's default shape with another batch (and, for a model, other sides)."""
    shape = list(subject.case.input_space.default)
    shape[0] = batch
    if height is not None:
        shape[2:] = [height, width or height]
    return subject.case.input_space.sample(shape, seed=sum(shape))


@pytest.mark.cost(seconds=0.05, forwards=4)
@pytest.mark.parametrize("subject", subject_params(tool="fx"))
def test_fx(modules, subject):
    """torch.fx.symbolic_trace's graph computes the same bits."""
    module = subject.module(modules)
    x = _batch(subject, 2)
    graph = torch.fx.symbolic_trace(module)
    assert_close(graph(x), module(x), exact=True)


def _cloned_where_computed(extractor: torch.fx.GraphModule) -> torch.fx.GraphModule:
    """The extractor with each returned value cloned where it is computed, as the hooks capture it: a later in-place
    ReLU would overwrite a convolution's output before the extractor returns it."""
    graph = extractor.graph
    output = next(node for node in graph.nodes if node.op == "output")
    for returned in list(output.all_input_nodes):
        with graph.inserting_after(returned):
            clone = graph.call_method("clone", (returned,))
        output.replace_input_with(returned, clone)
    graph.lint()
    extractor.recompile()
    return extractor


@pytest.mark.cost(forwards=2, **LAYERS_OF)
@pytest.mark.parametrize("subject", subject_params(tool="fx", models_only=True))
def test_feature_extraction(modules, subject):
    """torchvision's feature extraction names every layer of the table and extracts what it computes (one extractor
    for them all: a trace per layer is quadratic in depth, hours for a CIFAR ResNet-1202)."""
    from torchvision.models.feature_extraction import create_feature_extractor, get_graph_node_names

    module = subject.module(modules)
    x = _batch(subject, 1)
    _, eval_nodes = get_graph_node_names(module)
    assert not module.training  # get_graph_node_names traces train mode too, and must restore the mode
    layers = subject.layer_names(module)
    with capture_outputs(module, layers) as captured:
        module(x)
    # A traced-through module is named by its ops ("lrn1.div"); torchvision resolves the module's name to its last.
    named = {node.rsplit(".", cut)[0] for node in eval_nodes for cut in range(node.count(".") + 1)}
    assert not set(layers) - named, (sorted(set(layers) - named), eval_nodes)
    extracted = _cloned_where_computed(
        create_feature_extractor(module, return_nodes={layer: layer for layer in layers})
    )(x)
    assert extracted.keys() == set(layers)
    for layer in layers:
        assert_close(extracted[layer], captured[layer], exact=True, what=layer)


@pytest.mark.cost(seconds=0.1, forwards=6, builds=20)
@pytest.mark.parametrize("subject", subject_params(tool="jit"))
def test_jit_trace(modules, subject):
    """jit.trace, saved and loaded, computes the same bits at another batch; the input checks record nothing."""
    module = subject.module(modules)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        traced = torch.jit.trace(module, _batch(subject, 2))
        saved = io.BytesIO()
        torch.jit.save(traced, saved)
        saved.seek(0)
        loaded = torch.jit.load(saved)
    if subject.pair is None:  # the input checks read sizes without the trace's "might be incorrect" notes
        assert not [w for w in caught if issubclass(w.category, torch.jit.TracerWarning)], caught
    x = _batch(subject, 3)
    assert_close(loaded(x), module(x), exact=True)


HEADED = [param for param in subject_params(tool="train", models_only=True) if param.values[0].case.architecture.heads]


@pytest.mark.cost(seconds=3.0, forwards=8)
@pytest.mark.parametrize("subject", HEADED)
def test_train_outputs(modules, subject):
    """In train mode a model with auxiliary heads returns their logits beside its own (torchvision's
    ``GoogLeNetOutputs``): FX's graph and torch.export's program return the same named tuple, jit.trace's a plain
    tuple, each with the same bits under the same seed (dropout's masks drawn alike)."""
    module = subject.module(modules).train()
    x = _batch(subject, 2)  # two images: batch norm in train mode needs two values a channel

    def run(function) -> tuple:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            return function(x)

    expected = run(module)
    assert isinstance(expected, tuple), type(expected)
    assert len(expected) == 1 + len(subject.case.architecture.heads)
    tools = {
        "fx": torch.fx.symbolic_trace(module),
        "jit.trace": torch.jit.trace(module, x, check_trace=False, strict=False),  # dropout: no second run to check
        "export": torch.export.export(module, (x,)).module(),
    }
    for tool, function in tools.items():
        got = run(function)
        assert type(got) is (tuple if tool == "jit.trace" else type(expected)), f"{tool}: {type(got).__name__}"
        for index, (a, b) in enumerate(zip(got, expected, strict=True)):
            assert_close(a, b, exact=True, what=f"{tool}, output {index}")


def _export(subject: Subject, module: nn.Module, x: Tensor, **dims: bool) -> nn.Module:
    dynamic = subject.dynamic_shapes(**dims) if dims else None
    return torch.export.export(module, (x,), dynamic_shapes=dynamic).module()


@pytest.mark.cost(seconds=0.3, forwards=12)
@pytest.mark.parametrize("subject", subject_params(tool="export"))
def test_export_batch(modules, subject):
    """torch.export with a dynamic batch computes the same bits at every batch."""
    module = subject.module(modules)
    exported = _export(subject, module, _batch(subject, 2), batch=True, sides=False)
    for batch in (1, 2, 3):
        x = _batch(subject, batch)
        assert_close(exported(x), module(x), exact=True, what=f"batch {batch}")


@pytest.mark.cost(seconds=0.3, forwards=4)
@pytest.mark.parametrize("subject", subject_params(tool="export"))
def test_export_static(modules, subject):
    """torch.export with static shapes computes the same bits."""
    module = subject.module(modules)
    x = _batch(subject, 2)
    assert_close(_export(subject, module, x)(x), module(x), exact=True)


@pytest.mark.cost(seconds=1.0, forwards=24)
@pytest.mark.parametrize("subject", subject_params(tool="export-sides", models_only=True))
def test_export_sides(modules, subject):
    """torch.export with dynamic H and W runs the edges of its range and refuses a side past each of them."""
    if not _export_keeps_pooled_sides_dynamic():
        pytest.skip("this torch's export specialises a pooled side on its parity, torchvision's models' too")
    module = subject.module(modules)
    sides = subject.case.architecture.export_sides
    high = sides.high if sides.high is not None else 2 * subject.case.default_side  # open-ended: one far side
    exported = _export(subject, module, _batch(subject, 2, sides.low), batch=True, sides=True)
    for batch, height, width in ((1, sides.low, high), (3, high, sides.low)):
        x = _batch(subject, batch, height, width)
        assert_close(exported(x), module(x), exact=True, what=f"{batch} x {height} x {width}")
    # One side past each bounded edge: the exported program's own guard refuses it and names the edge.
    for side, edge in ((sides.low - 1, sides.low), (None if sides.high is None else sides.high + 1, sides.high)):
        if side is not None:
            with pytest.raises((AssertionError, RuntimeError, ValueError), match=str(edge)):
                exported(_batch(subject, 1, side))


@pytest.mark.cost(seconds=0.5)
@pytest.mark.parametrize("case", case_params(MODELS, lambda case: case.valid_sides.low > 2))
def test_export_range_refused(modules, case):
    """The input check's torch._check is the constraint: torch's refusal quotes the model's valid range. (Not where
    every side from 1 is valid, a ResNet's: a range from 0 meets torch's own guards on sizes of 1 first.)"""
    if not _export_keeps_pooled_sides_dynamic():
        pytest.skip("this torch's export specialises a pooled side on its parity, torchvision's models' too")
    valid, exportable = case.valid_sides, case.architecture.export_sides
    limits = {"min": valid.low - 1} | ({} if exportable.high is None else {"max": exportable.high})
    dims = ({2: torch.export.Dim("height", **limits)},)
    x = case.input_space.sample((2, case.in_channels, exportable.low, exportable.low))
    with pytest.raises(torch._dynamo.exc.UserError, match=rf"{valid.low} <= \S*size\(\)\[2\]"):
        torch.export.export(modules.reference(case), (x,), dynamic_shapes=dims)


@pytest.mark.cost(seconds=1.5, forwards=6, builds=10)  # torch.export, decompositions, onnxscript: ~1 s a layer
@pytest.mark.parametrize("subject", subject_params(tool="onnx-dynamo"))
def test_onnx_dynamo(modules, subject, tmp_path):
    """The dynamo exporter's ONNX model, run by onnxruntime, matches eager mode within the table's tolerance."""
    _onnx_matches_eager(modules, subject, tmp_path, dynamo=True)


@pytest.mark.cost(seconds=1.0, forwards=6, builds=10)  # onnxruntime's import and arenas: ~1 s, 0.1 GB
@pytest.mark.parametrize("subject", subject_params(tool="onnx-legacy"))
def test_onnx_legacy(modules, subject, tmp_path):
    """The legacy exporter's ONNX model, run by onnxruntime, matches eager mode within the table's tolerance."""
    _onnx_matches_eager(modules, subject, tmp_path, dynamo=False)


def _onnx_matches_eager(modules, subject: Subject, tmp_path, *, dynamo: bool) -> None:
    onnxruntime = pytest.importorskip("onnxruntime")
    if dynamo and not ONNX_DYNAMO:
        pytest.skip("torch.onnx.export(dynamo=True) is new in torch 2.5")
    if dynamo:
        pytest.importorskip("onnxscript")
    module = subject.module(modules)
    # At the default side: the legacy exporter takes an adaptive pool only where its output divides its input.
    side = subject.case.default_side if subject.case.is_model else None
    x = _batch(subject, 2, side)
    path = tmp_path / "model.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporters' deprecation and tracer notes
        if dynamo:
            torch.onnx.export(module, (x,), path, dynamo=True, dynamic_shapes=({0: torch.export.Dim("batch")},))
        else:
            torch.onnx.export(module, (x,), path, dynamo=False, input_names=["x"], dynamic_axes={"x": {0: "batch"}})
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for batch in (2, 3):
        x = _batch(subject, batch, side)
        (output,) = session.run(None, {session.get_inputs()[0].name: x.numpy()})
        # onnxruntime's kernels sum in their own order: float32's table tolerance, not bits.
        assert_close(torch.from_numpy(output), module(x).detach(), what=f"onnxruntime, batch {batch}")


@pytest.mark.parametrize("dtype", [torch.float64], ids=["float64"])  # ordered after the case's float32 tests
@pytest.mark.cost(steps=6, memory=2, narrow=lambda case: narrowable(case))  # three samples' gradients from vmap
@pytest.mark.parametrize("subject", subject_params(tool="vmap"))
def test_vmap(subject, dtype):
    """Per-sample gradients by vmap(grad) equal a loop over the samples: in float64, on builds narrowed as the case
    says. In float32 vmap's batched kernels part from the loop's by ~1e-7, which flips a ReLU whose input is that close
    to 0, and with it that unit's share of every gradient before it (a ResNet-50's: 1 % of a batch norm's bias
    gradient, measured with oneDNN; 1.6e-6 without it, 3e-15 in float64)."""
    from torch.func import functional_call, grad, vmap

    module = subject.narrowed(dtype=dtype)
    params = {name: p.detach() for name, p in module.named_parameters()}
    buffers = dict(module.named_buffers())
    x = _batch(subject, 3).to(dtype)

    def loss(params: dict[str, Tensor], sample: Tensor) -> Tensor:
        return functional_call(module, (params, buffers), (sample[None],)).square().sum()

    per_sample = vmap(grad(loss, argnums=(0, 1)), in_dims=(None, 0))(params, x)
    for i in range(x.shape[0]):
        sample = x[i].clone().requires_grad_()
        # An eval-mode pass leaves the auxiliary heads unused: their gradient is zero, as vmap's grad gives it.
        expected = torch.autograd.grad(loss(dict(module.named_parameters()), sample), [*module.parameters(), sample],
                                       allow_unused=True, materialize_grads=True)  # fmt: skip
        # vmap runs batched kernels (a grouped convolution for the batch): float64's table tolerance.
        for (name, got), want in zip([*per_sample[0].items(), ("input", per_sample[1])], expected, strict=True):
            assert_close(got[i], want, what=f"sample {i}: {name}")


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:FutureWarning")  # torch.func's own internals
@pytest.mark.parametrize("dtype", [torch.float64], ids=["float64"])  # ordered after the case's float32 tests
@pytest.mark.cost(steps=4)
@pytest.mark.parametrize("subject", subject_params(tool="jvp"))
def test_jvp(modules, subject, dtype):
    """<u, J t> from torch.func.jvp equals <J^T u, t> from torch.func.vjp: in float64, to its table tolerance."""
    from torch.func import jvp, vjp

    module = subject.module(modules, dtype=dtype)
    x = _batch(subject, 2).to(dtype)
    tangent = torch.randn(x.shape, generator=torch.Generator().manual_seed(1), dtype=dtype)
    output, forward = jvp(module, (x,), (tangent,))
    cotangent = torch.randn(output.shape, generator=torch.Generator().manual_seed(2), dtype=dtype)
    _, pullback = vjp(module, x)
    (backward,) = pullback(cotangent)
    assert_close((cotangent * forward).sum(), (backward * tangent).sum())


# Each hand-written layer alone: tests/test_facts.py (every option value it is drawn with); here, inside the models.
@pytest.mark.cost
@pytest.mark.parametrize("subject", subject_params(reference_only=True, models_only=True))
def test_repr(modules, subject):
    """Every hand-written module inside a model that has options or state prints them."""
    module = subject.module(modules)
    for name, child in module.named_modules():
        if not type(child).__module__.startswith("reference.") or isinstance(child, ReferenceModel):
            continue
        options = [p for p in inspect.signature(type(child).__init__).parameters if p != "self"]
        state = [*child.named_parameters(recurse=False), *child.named_buffers(recurse=False)]
        if next(child.children(), None) is None and (options or state):  # a layer, not a container
            assert child.extra_repr(), f"{name or 'the module'} ({type(child).__name__}) prints no options"
        for option in options:
            value = getattr(child, option, None)
            if isinstance(value, int | float) and not isinstance(value, bool):
                assert f"{option}={value}" in child.extra_repr() or str(value) in child.extra_repr(), (name, option)
