"""torchvision's builder API: models by name, and weights= with a state dict or the library's weights enum."""

from __future__ import annotations

import pytest
import torch

import reference
from reference.verify.compare import assert_close, assert_equivalent
from reference.verify.pairs import library_weights, ported, reference_module
from reference.verify.sensitivity import redraw_statistics
from tests.helpers import MODELS, case_params, meta_model, narrow, narrowable, pair_params


@pytest.mark.cost
@pytest.mark.parametrize("case", case_params(MODELS))
def test_get_model(case):
    """Every registered model builds by its torchvision-style name and by the hyphenated alias of earlier releases."""
    for name in (case.name, case.name.replace("_", "-")):
        with torch.device("meta"):
            built = reference.get_model(name)
        expected = meta_model(case)  # case.build(), on the meta device
        assert type(built) is type(expected)
        shapes = {k: v.shape for k, v in built.state_dict().items()}
        assert shapes == {k: v.shape for k, v in expected.state_dict().items()}


def test_list_models():
    """Sorted as torchvision's, every registry model in it, filtered by shell patterns."""
    names = reference.list_models()
    assert names == sorted(names)
    assert set(names) == {case.name for case in MODELS}
    bn = reference.list_models(include="vgg*_bn")
    assert bn
    assert all(name.startswith("vgg") and name.endswith("_bn") for name in bn)
    assert not set(bn) & set(reference.list_models(exclude="*_bn"))
    assert all(getattr(reference, name) is reference.get_model_builder(name) for name in names)


def test_unknown_model():
    """An unknown name is a ValueError listing the known ones."""
    with pytest.raises(ValueError, match=r"unknown model 'no-such-model'; known: alexnet, "):
        reference.get_model("no-such-model")


# A build (the shared module's, where no statistics are re-drawn), and a load into a model built without drawing (a
# copy: a fifth of a build, measured on AlexNet).
@pytest.mark.cost(builds=lambda case: 1.2 if _redrawn(case) else 0.2, forwards=2, aim="weights",
                  narrow=lambda case: narrowable(case), shared=lambda case: not _redrawn(case))  # fmt: skip
@pytest.mark.parametrize("case", case_params(MODELS))
def test_weights_state_dict(modules, case):
    """A state dict loads through ``weights=``, copied: the model computes what the source does and holds none of
    its storage, so that neither changes the other afterwards (narrowed where the case allows: ``Case.narrow``).
    Anything else that is no weights enum is a TypeError."""
    with narrow(case):
        source = _with_state(case) if _redrawn(case) else modules.reference(case)
        built = reference.get_model(case.name, weights=source.state_dict())
    assert_equivalent(source, built.eval(), case.input_space.sample())  # exact
    theirs = {tensor.untyped_storage().data_ptr() for tensor in source.state_dict().values()}
    shared = [key for key, tensor in built.state_dict().items() if tensor.untyped_storage().data_ptr() in theirs]
    assert not shared, f"the built model holds the caller's tensors (or views of them): {shared}"
    with pytest.raises(TypeError, match=r"expects weights=None, a state dict"):
        reference.get_model(case.name, weights=3)


def _redrawn(case) -> bool:
    """Whether the check builds its own source: a narrowed one, or one whose batch-norm statistics it re-draws."""
    model = meta_model(case)
    return narrowable(case) or any(isinstance(module, torch.nn.BatchNorm2d) for module in model.modules())


def _with_state(case) -> torch.nn.Module:
    """The case's reference with non-trivial batch-norm statistics (fresh ones, 0 and 1, would hide a swap or a
    statistic left behind)."""
    module = reference_module(case)
    redraw_statistics(module, case.input_space.sample())
    return module


def _checkpoint_seconds(case) -> float:
    """The checkpoint's save and load and the state dicts' checks: ~30 ns a parameter (measured: AlexNet's 61M, 1.8 s
    beyond its builds)."""
    return 3e-8 * sum(p.numel() for p in meta_model(case, narrow=narrowable(case)).parameters())


# A build, three copies (the port, the state dict's load, the enum's) and a save and load of the checkpoint.
@pytest.mark.cost(builds=2, forwards=4, seconds=_checkpoint_seconds, aim="weights",
                  narrow=lambda case: narrowable(case))  # fmt: skip
@pytest.mark.parametrize(("case", "pair"), pair_params(lambda _, pair: library_weights(pair) is not None))
def test_library_checkpoint(case, pair, tmp_path, monkeypatch):
    """A checkpoint in the library's layout (its module paths: ``features.1.running_var``) loads through
    ``weights=`` into every tensor the reference's own layout would fill, batch-norm statistics included, and
    computes what the library's model does; so does the library's weights enum, which reads it from torch hub's
    cache (no network here: the checkpoint is saved where the enum's URL is cached), with its class count."""
    x = case.input_space.sample()
    with narrow(case):
        source = _with_state(case)
        theirs = ported(pair, source)  # the library's class and keys, the source's values
        built = reference.get_model(case.name, weights=theirs.state_dict())
        enum = library_weights(pair)
        monkeypatch.setenv("TORCH_HOME", str(tmp_path))
        checkpoints = tmp_path / "hub" / "checkpoints"
        checkpoints.mkdir(parents=True)
        torch.save(theirs.state_dict(), checkpoints / enum.url.rsplit("/", 1)[-1])
        from_enum = reference.get_model(case.name, weights=enum, **pair.weights_options)
        categories = len(enum.meta["categories"])
        with pytest.raises(ValueError, match=rf"num_classes=10, but .* has {categories} categories"):
            reference.get_model(case.name, weights=enum, num_classes=10, **pair.weights_options)
    expected = source.state_dict()
    for model in (built, from_enum):
        assert model.state_dict().keys() == expected.keys()
        for key, tensor in model.state_dict().items():
            assert_close(tensor, expected[key], exact=True, what=key)
        assert_equivalent(model.eval(), theirs, x)  # exact
    assert from_enum.num_classes == categories
