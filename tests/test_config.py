"""Config: every invalid value names its field and what is allowed; YAML round trip; overrides."""

from __future__ import annotations

import pytest
import yaml

from unetkit.config import (
    Config,
    ConfigError,
    apply_overrides,
    apply_values,
    config_from_dict,
    config_to_dict,
    load_config,
    parse_duration,
    save_config,
)

INVALID = [
    ({"train": {"optimizer": "adam"}}, "train.optimizer: got 'adam'", "'adamw' or 'sgd'"),
    ({"train": {"lr": 0}}, "train.lr", "greater than 0"),
    ({"train": {"schedule": "step"}}, "train.schedule: got 'step'", "'poly', 'cosine'"),
    ({"train": {"precision": "fp64"}}, "train.precision: got 'fp64'", "'bf16'"),
    ({"train": {"channels_last": "yes"}}, "train.channels_last", "'auto', 'on' or 'off'"),
    ({"train": {"epochs": 0}}, "train.epochs", "greater than or equal to 1"),
    ({"train": {"steps_per_epoch": -3}}, "train.steps_per_epoch", "greater than or equal to 1"),
    ({"train": {"momentum": 1.0}}, "train.momentum", "less than 1"),
    ({"train": {"grad_clip": 0}}, "train.grad_clip", "greater than 0"),
    ({"train": {"val_every": 0}}, "train.val_every", "greater than or equal to 1"),
    ({"train": {"patience": 0}}, "train.patience", "greater than or equal to 1"),
    ({"train": {"time_budget": "ten minutes"}}, "train.time_budget", "'90s', '10m' or '2h'"),
    ({"train": {"time_budget": "0"}}, "train.time_budget", "'0' is not positive"),
    ({"train": {"time_budget": "0.0h"}}, "train.time_budget", "'0.0h' is not positive"),
    ({"train": {"warmup_epochs": -1}}, "train.warmup_epochs", "greater than or equal to 0"),
    ({"train": {"loss": {"name": "l2"}}}, "train.loss.name: got 'l2'", "'dice_ce'"),
    ({"train": {"lrate": 0.1}}, "train.lrate", "unknown field"),
    ({"model": {"name": "vnet"}}, "model.name: got 'vnet'", "'unet', 'resunet'"),
    ({"model": {"depth": 9}}, "model.depth", "less than or equal to 6"),
    ({"model": {"strides": [2, 2]}}, "model.strides.0", "valid list"),
    ({"data": {"patch_size": [0, 64]}}, "data.patch_size", "positive integers"),
    ({"data": {"val_fraction": 1.0}}, "data.val_fraction", "less than 1"),
    ({"data": {"folds": 1}}, "data.folds", "greater than or equal to 2"),
    ({"data": {"normalization": {"scheme": "window"}}}, "data.normalization", "window"),
    ({"optimiser": {}}, "optimiser", "unknown field"),
]


@pytest.mark.parametrize(("data", "field", "allowed"), INVALID)
def test_each_invalid_value_names_field_and_allowed_values(data, field, allowed):
    with pytest.raises(ConfigError) as info:
        config_from_dict(data, source="test.yaml")
    message = str(info.value)
    assert "invalid configuration (test.yaml)" in message
    assert field in message
    assert allowed in message


def test_several_errors_are_reported_together():
    with pytest.raises(ConfigError) as info:
        config_from_dict({"train": {"optimizer": "adam", "lr": -1}})
    assert "train.optimizer" in str(info.value) and "train.lr" in str(info.value)


def test_yaml_round_trip(tmp_path):
    config = apply_overrides(Config(), [
        "train.lr=3e-4", "train.optimizer=sgd", "train.time_budget=10m", "data.patch_size=[64, 96]",
        "data.labels={0: background, 1: membrane}", "model.deep_supervision=true",
        "train.loss.name=dice_bce", "data.split_file=splits.json",
    ])
    path = tmp_path / "config.yaml"
    save_config(config, path)
    again = load_config(path)
    assert again == config
    assert config_to_dict(again) == config_to_dict(config)
    assert again.train.lr == pytest.approx(3e-4) and again.data.patch_size == [64, 96]
    assert again.data.labels == {0: "background", 1: "membrane"}


def test_model_strides_and_kernel_sizes_only_reach_build_model_when_set(tmp_path):
    assert not {"strides", "kernel_sizes"} & set(Config().model.build_options())
    config = apply_overrides(Config(), [
        "model.spatial_dims=3", "model.depth=2", "model.strides=[[1, 2, 2], [2, 2, 2]]",
        "model.kernel_sizes=[[1, 3, 3], [3, 3, 3], [3, 3, 3]]",
    ])
    options = config.model.build_options()
    assert options["strides"] == [[1, 2, 2], [2, 2, 2]]
    assert options["kernel_sizes"] == [[1, 3, 3], [3, 3, 3], [3, 3, 3]]
    path = tmp_path / "config.yaml"
    save_config(config, path)
    assert load_config(path) == config


def test_overrides_are_typed_and_validated():
    config = apply_overrides(Config(), ["train.lr=3e-4", "train.patience=5"])
    assert config.train.lr == pytest.approx(3e-4) and config.train.patience == 5
    with pytest.raises(ConfigError, match="unknown field 'train.lrr'"):
        apply_overrides(Config(), ["train.lrr=1"])
    with pytest.raises(ConfigError, match="expected section.field=value"):
        apply_overrides(Config(), ["train.lr"])
    with pytest.raises(ConfigError, match="'nope' is not a config section"):
        apply_overrides(Config(), ["nope.lr=1"])
    with pytest.raises(ConfigError, match="train.optimizer: got 'rmsprop'"):
        apply_overrides(Config(), ["train.optimizer=rmsprop"])


def test_apply_values_skips_none_and_validates():
    config = apply_values(Config(), {"train.lr": 0.01, "train.epochs": None, "data.fold": 2})
    assert config.train.lr == 0.01 and config.train.epochs == Config().train.epochs
    assert config.data.fold == 2
    with pytest.raises(ConfigError, match="train.batch_size"):
        apply_values(Config(), {"train.batch_size": 4})
    with pytest.raises(ConfigError, match="data.batch_size"):
        apply_values(Config(), {"data.batch_size": 0})


def test_load_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
    listy = tmp_path / "list.yaml"
    listy.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="expected a mapping"):
        load_config(listy)
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    assert load_config(empty) == Config()


@pytest.mark.parametrize(("text", "seconds"), [
    ("90s", 90.0), ("10m", 600.0), ("1.5h", 5400.0), ("300", 300.0), (" 2 min ", 120.0),
])
def test_parse_duration(text, seconds):
    assert parse_duration(text) == seconds


def test_parse_duration_rejects_garbage():
    with pytest.raises(ValueError, match="cannot read duration"):
        parse_duration("10 parsecs")


def test_default_config_file_is_valid_and_complete():
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "configs" / "default.yaml"
    loaded = config_to_dict(load_config(path))
    defaults = config_to_dict(Config())

    def keys(tree, prefix=""):
        return {prefix + k for k in tree} | {
            key for k, v in tree.items() if isinstance(v, dict) for key in keys(v, f"{prefix}{k}.")
        }

    raw = yaml.safe_load(path.read_text())
    assert keys(raw) == keys(defaults)  # every field is listed in the file itself
    assert loaded["train"] == defaults["train"]


def test_yaml_on_off_for_channels_last():
    assert apply_overrides(Config(), ["train.channels_last=on"]).train.channels_last == "on"
    assert apply_overrides(Config(), ["train.channels_last=off"]).train.channels_last == "off"


def test_inference_has_its_own_channels_last():
    config = apply_overrides(Config(), ["train.channels_last=off"])
    assert config.infer.channels_last == "auto"
    assert apply_overrides(Config(), ["infer.channels_last=off"]).infer.channels_last == "off"
