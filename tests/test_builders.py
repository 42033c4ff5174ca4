"""torchvision's builder API: models by name, and weights= with a state dict or the library's weights enum."""

from __future__ import annotations

import pytest
import torch

import reference
from reference.verify.compare import assert_equivalent
from reference.verify.pairs import library_weights, ported
from tests.helpers import MODELS, case_params, meta_model, pair_params


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


@pytest.mark.cost(builds=1)
@pytest.mark.parametrize("case", case_params(MODELS))
def test_weights_state_dict(modules, case):
    """A state dict loads through ``weights=`` (copied: the caller's tensors stay the caller's); anything else that
    is no weights enum is a TypeError."""
    source = modules.reference(case)
    built = reference.get_model(case.name, weights=source.state_dict())
    assert_equivalent(source, built.eval(), case.input_space.sample())  # exact
    assert not {t.data_ptr() for t in built.state_dict().values()} & {
        t.data_ptr() for t in source.state_dict().values()
    }
    with pytest.raises(TypeError, match=r"expects weights=None, a state dict"):
        reference.get_model(case.name, weights=3)


@pytest.mark.cost(builds=1, forwards=2)
@pytest.mark.parametrize(("case", "pair"), pair_params(lambda _, pair: library_weights(pair) is not None))
def test_weights_enum(modules, case, pair, tmp_path, monkeypatch):
    """The library's weights enum loads through torch hub's cache. No network here: a checkpoint in the library's
    layout, saved where torch hub caches the enum's URL, is what torchvision then reads."""
    weights = library_weights(pair)
    source = modules.reference(case)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    checkpoints = tmp_path / "hub" / "checkpoints"
    checkpoints.mkdir(parents=True)
    library_state = ported(pair, source, share=True).state_dict()  # the library's key names
    assert set(library_state) != set(source.state_dict())
    torch.save(library_state, checkpoints / weights.url.rsplit("/", 1)[-1])
    built = reference.get_model(case.name, weights=weights)
    assert built.num_classes == len(weights.meta["categories"])
    assert_equivalent(built.eval(), source, case.input_space.sample())  # exact: the checkpoint's weights
    with pytest.raises(ValueError, match=rf"num_classes=10, but .* has {len(weights.meta['categories'])} categories"):
        reference.get_model(case.name, weights=weights, num_classes=10)
