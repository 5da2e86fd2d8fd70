"""DDP's ``find_unused_parameters`` is computed, not guessed: one real forward/backward (no DDP)
shows which parameters get no gradient, and ``unused_parameters`` (a meta-device pass) agrees,
for every model and the configs that change which modules run."""

from __future__ import annotations

import pytest
import torch

from unetkit.nn import build_model
from unetkit.runtime.distributed import unused_parameters

MODELS = ["unet", "resunet", "attention_unet", "unetplusplus"]
CONFIGS = {
    "default": {},
    "deep_supervision": {"deep_supervision": True},
    "instance_interpolate_dropout": {"norm": "instance", "upsample": "interpolate",
                                     "dropout": 0.2},
    "valid_batch_ds": {"padding": "valid", "norm": "batch", "deep_supervision": True},
    "3d_anisotropic_group": {"spatial_dims": 3, "norm": "group", "depth": 2, "base_width": 8,
                             "strides": [[1, 2, 2], [2, 2, 2]]},
}


def _without_gradient(model: torch.nn.Module) -> list[str]:
    """Names of trainable parameters that one real training forward/backward leaves at None."""
    model.train()
    model.zero_grad(set_to_none=True)
    size = model.nearest_valid_input_size((8,) * model.spatial_dims)
    out = model(torch.randn(2, model.in_channels, *size))
    outputs = out if isinstance(out, list) else [out]
    sum(o.square().mean() for o in outputs).backward()
    return [name for name, p in model.named_parameters() if p.requires_grad and p.grad is None]


@pytest.mark.parametrize("config", sorted(CONFIGS))
@pytest.mark.parametrize("name", MODELS)
def test_every_parameter_gets_a_gradient_and_the_check_agrees(name, config):
    torch.manual_seed(0)
    options = {"base_width": 4, "depth": 2, "out_channels": 2, **CONFIGS[config]}
    model = build_model(name, **options)
    assert _without_gradient(model) == []
    assert unused_parameters(model) == []  # so DDP runs with find_unused_parameters=False


@pytest.mark.parametrize("name", MODELS)
def test_heads_of_a_deep_supervision_checkpoint_resumed_without_it_are_found(name):
    model = build_model(name, base_width=4, depth=2, deep_supervision=True)
    model.deep_supervision = False  # what loading such a checkpoint into a plain run gives
    unused = unused_parameters(model)
    assert unused and all(key.startswith("head.aux.") for key in unused)
    assert sorted(unused) == sorted(_without_gradient(model))


def test_the_check_touches_neither_weights_nor_statistics():
    model = build_model("unet", base_width=4, depth=2, norm="batch")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    assert unused_parameters(model) == []
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), key


def test_something_that_cannot_be_checked_is_unknown():
    assert unused_parameters(torch.nn.Linear(3, 2)) is None  # DDP then searches every step
