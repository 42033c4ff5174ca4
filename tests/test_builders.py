"""torchvision's builder API: models by name, and weights= with a state dict or the library's weights enum."""

from __future__ import annotations

import pytest
import torch

import reference
from reference.verify.compare import assert_equivalent
from reference.verify.pairs import ported
from tests.helpers import MODELS, case_params, meta_model, pair_params


@pytest.mark.parametrize("case", case_params(MODELS))
def test_get_model_builds_every_registered_model_by_name(case):
    with torch.device("meta"):
        built = reference.get_model(case.name)
    expected = meta_model(case)  # case.build(), on the meta device
    assert type(built) is type(expected)
    assert {k: v.shape for k, v in built.state_dict().items()} == {k: v.shape for k, v in expected.state_dict().items()}


def test_an_unknown_name_lists_the_known_ones():
    with pytest.raises(ValueError, match=r"unknown model 'no-such-model'; known: lenet5, "):
        reference.get_model("no-such-model")


@pytest.mark.parametrize("case", case_params(MODELS, lambda case: case.trainable_params < 1_000_000))
def test_a_state_dict_loads_through_weights(modules, case):
    source = modules.reference(case)
    built = reference.get_model(case.name, weights=source.state_dict())
    assert_equivalent(source, built.eval(), case.input_space.sample())  # exact
    with pytest.raises(TypeError, match=r"expects weights=None, a state dict; got int"):
        reference.get_model(case.name, weights=3)


@pytest.mark.parametrize(("case", "counterpart"), pair_params(lambda _, c: c.weights is not None))
def test_the_library_weights_enum_loads_through_torch_hubs_cache(modules, case, counterpart, tmp_path, monkeypatch):
    """No network here: a checkpoint in the library's layout, saved where torch hub caches the enum's URL, is
    what torchvision then reads."""
    weights = counterpart.weights()
    source = modules.reference(case)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    checkpoints = tmp_path / "hub" / "checkpoints"
    checkpoints.mkdir(parents=True)
    library_state = ported(counterpart, source, share=True).state_dict()  # the library's key names
    assert set(library_state) != set(source.state_dict())
    torch.save(library_state, checkpoints / weights.url.rsplit("/", 1)[-1])
    built = reference.get_model(case.name, weights=weights)
    assert built.num_classes == len(weights.meta["categories"])
    assert_equivalent(built.eval(), source, case.input_space.sample())  # exact: the checkpoint's weights
    with pytest.raises(ValueError, match=rf"num_classes=10, but .* has {len(weights.meta['categories'])} categories"):
        reference.get_model(case.name, weights=weights, num_classes=10)
