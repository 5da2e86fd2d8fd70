"""Fine-tuning from a checkpoint (``train.init``, ``unetkit train --init``): which layers load,
what the report and RUN/init.json say, what the checkpoint fixes, and what is refused."""

from __future__ import annotations

import json

import pytest
import torch
import yaml
from typer.testing import CliRunner

from unetkit.cli import app
from unetkit.config import Config, config_to_dict
from unetkit.data.synthetic import write_blobs_dataset
from unetkit.nn import build_model
from unetkit.runtime.checkpoint import load_checkpoint
from unetkit.train.init_source import InitSource
from unetkit.train.init_weights import layer_of, load_matching

runner = CliRunner()


def net(seed: int, **options):
    torch.manual_seed(seed)
    return build_model("unet", base_width=4, depth=2, norm="batch", **options)


def snapshot(model) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


def check_loaded(model, before, source, fresh: set[str]) -> None:
    """Every tensor of a ``fresh`` layer is as initialised, every other one the source's."""
    for key, tensor in model.state_dict().items():
        expected = before[key] if layer_of(key) in fresh else source[key]
        assert torch.equal(tensor, expected), key


def test_a_head_for_another_class_count_loads_every_other_layer():
    source = net(0, out_channels=2).state_dict()
    model = net(1, out_channels=3)
    before = snapshot(model)
    report = load_matching(model, source, "ckpt")
    check_loaded(model, before, source, {"head.main"})
    layers = {layer_of(k) for k in before}
    assert report.names("fresh") == ["head.main"]
    assert set(report.names("loaded")) == layers - {"head.main"} and report.names("unused") == []
    row = next(r for r in report.layers if r.layer == "head.main")
    assert (row.shape, row.checkpoint_shape) == ([3, 4, 1, 1], [2, 4, 1, 1])
    loaded, total = report.parameter_counts()
    assert total == sum(p.numel() for p in model.parameters())
    assert total - loaded == 3 * 4 + 3  # the head's weight and bias


def test_another_input_channel_count_reinitialises_only_the_first_conv():
    source = net(0, in_channels=1, out_channels=2).state_dict()
    model = net(1, in_channels=3, out_channels=2)
    before = snapshot(model)
    report = load_matching(model, source)
    assert report.names("fresh") == ["encoder.blocks.0.conv1"]
    check_loaded(model, before, source, {"encoder.blocks.0.conv1"})  # its bias stays fresh too
    assert "the checkpoint" in report.summary() and "encoder.blocks.0.conv1 (weight" in \
        report.summary()


def test_deep_supervision_heads_missing_or_extra_are_listed():
    with_heads = net(0, out_channels=2, deep_supervision=True)
    model = net(1, out_channels=2)
    report = load_matching(model, with_heads.state_dict())
    assert report.names("unused") == ["head.aux.0"] and report.names("fresh") == []
    model = net(1, out_channels=2, deep_supervision=True)
    report = load_matching(model, net(0, out_channels=2).state_dict())
    assert report.names("fresh") == ["head.aux.0"]


def test_the_checkpoint_fixes_its_network_and_keeps_its_statistics(make_checkpoint):
    stats = {"mean": [10.0], "std": [2.0], "low": [0.0], "high": [20.0]}
    path = make_checkpoint(base_width=8, data={"normalization": {"scheme": "zscore_dataset"},
                                               "target_spacing": [1.0, 1.0]},
                           normalization={"scheme": "zscore_dataset", "stats": stats})
    source = InitSource.read(path)
    config = source.fix(Config.model_validate({"model": {"base_width": 32, "depth": 4,
                                                         "out_channels": 5}}))
    assert (config.model.base_width, config.model.depth, config.model.out_channels) == (8, 2, 5)
    assert config.data.normalization.scheme == "zscore_dataset"
    assert config.data.target_spacing == [1.0, 1.0]
    kept, note = source.normalization(channels=1)
    assert kept["stats"] == stats and "statistics kept" in note
    refit, note = source.normalization(channels=2)
    assert refit is None and "refitted" in note and "2" in note


def write_tiny_config(path, **model):
    config = Config.model_validate({
        "model": {"base_width": 4, "depth": 2, "norm": "batch", **model},
        "data": {"patch_size": [32, 32], "batch_size": 2, "val_fraction": 0.25,
                 "augment": {"enabled": False}},
        "train": {"precision": "fp32", "steps_per_epoch": 1, "epochs": 1, "lr": 1e-12,
                  "weight_decay": 0.0, "device": "cpu"}})
    path.write_text(yaml.safe_dump(config_to_dict(config)))
    return path


@pytest.mark.slow
def test_train_init_prints_the_table_and_init_json_lists_what_was_loaded(tmp_path, disks,
                                                                         make_checkpoint):
    data = disks(tmp_path / "data", n_cases=4)
    checkpoint = make_checkpoint(out_channels=3, base_width=4)
    config = write_tiny_config(tmp_path / "tiny.yaml", base_width=16)
    result = runner.invoke(app, ["train", "--data", str(data), "--config", str(config),
                                 "--init", str(checkpoint), "--out", str(tmp_path / "run")])
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert f"--init {checkpoint}" in text and "fresh" in text and "head.main" in text
    report = json.loads((tmp_path / "run" / "init.json").read_text())
    source = load_checkpoint(checkpoint)["model_state"]
    layers = {layer_of(k) for k in source}
    assert report["fresh"] == ["head.main"] and set(report["loaded"]) == layers - {"head.main"}
    run = load_checkpoint(tmp_path / "run" / "last.pt")
    assert run["config"]["model"]["base_width"] == 4  # the checkpoint's, not the file's 16
    assert run["config"]["train"]["init"] == str(checkpoint)
    for key, tensor in run["model_state"].items():  # one step at lr 1e-12: still the same
        if layer_of(key) != "head.main" and key.endswith("conv1.weight"):
            assert torch.allclose(tensor, source[key], atol=1e-6), key


def test_a_2d_checkpoint_for_3d_data_is_refused_in_one_line(tmp_path, make_checkpoint):
    volumes = write_blobs_dataset(tmp_path / "blobs", 3, (16, 20, 16))
    checkpoint = make_checkpoint(out_channels=2)
    config = write_tiny_config(tmp_path / "tiny.yaml")
    for extra in ([], ["--config", str(config)]):  # planned, and from a config file
        result = runner.invoke(app, ["train", "--data", str(volumes), "--init", str(checkpoint),
                                     "--time", "30s", "--out", str(tmp_path / "run"), *extra])
        assert result.exit_code == 1, result.output
        lines = [line for line in result.output.splitlines() if line.startswith("error")]
        assert len(lines) == 1 and "Traceback" not in result.output, result.output
        assert f"--init {checkpoint}" in lines[0] and "2D" in lines[0] and "3D" in lines[0]
        assert not (tmp_path / "run").exists()


def test_an_option_against_the_checkpoint_is_refused_in_one_line(tmp_path, disks,
                                                                make_checkpoint):
    data = disks(tmp_path / "data", n_cases=3)
    checkpoint = make_checkpoint(out_channels=2)
    result = runner.invoke(app, ["train", "--data", str(data), "--init", str(checkpoint),
                                 "--model", "resunet", "--time", "30s"])
    assert result.exit_code == 1
    assert "model.name: --init" in result.output and "'unet'" in result.output
    missing = runner.invoke(app, ["train", "--data", str(data), "--init",
                                  str(tmp_path / "nothing.pt"), "--time", "30s"])
    assert missing.exit_code == 1 and "checkpoint not found" in missing.output
