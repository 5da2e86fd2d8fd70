"""Issue 30, "garbage produced with exit code 0": each is now refused, named, input untouched.

Unusable models (weights holding NaN, a format from a newer unetkit), settings a command would
silently ignore (``predict --set train.lr=1``), nnU-Net cases missing a channel file, and
option values that make no sense (``export --tolerance -1``, ``calibrate --beta 0``).
"""

from __future__ import annotations

import pytest
import torch
from refusal_data import disks, nnunet, runner, write_pngs

from unetkit.runtime.checkpoint import CheckpointError, load_checkpoint, save_checkpoint


def poisoned(path, ckpt, value=float("nan")):
    """``ckpt`` with one weight of its third tensor set to ``value``."""
    checkpoint = load_checkpoint(ckpt)
    name = list(checkpoint["model_state"])[2]
    checkpoint["model_state"][name].view(-1)[1] = value
    save_checkpoint(checkpoint, path)
    return path, name


def future(path, ckpt):
    checkpoint = load_checkpoint(ckpt)
    checkpoint["format_version"] = 99
    torch.save(checkpoint, path)
    return path


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_weights_with_nan_or_inf_are_refused_at_load_naming_the_tensor(make_checkpoint, tmp_path,
                                                                       value):
    path, name = poisoned(tmp_path / "bad.pt", make_checkpoint("m.pt"), value)
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    message = str(info.value)
    assert str(path) in message and repr(name) in message and "1 NaN/inf value(s)" in message


@pytest.mark.parametrize("command", ["predict", "export", "calibrate", "resume"])
def test_every_command_refuses_non_finite_weights(make_checkpoint, tmp_path, refused, command):
    run = tmp_path / "run"
    good = make_checkpoint("good.pt", out_channels=1)
    path, name = poisoned(run / "last.pt", good)
    data = disks(tmp_path / "data")
    args = {"predict": ["predict", path, data / "images", "-o", tmp_path / "out"],
            "export": ["export", path, "-f", "torchscript", "-o", tmp_path / "m.ts"],
            "calibrate": ["calibrate", path, "--data", data],
            "resume": ["train", "--resume", run]}[command]
    refused(args, str(path), name, "NaN/inf")
    assert not (tmp_path / "out").exists() and not (tmp_path / "m.ts").exists()


def test_an_onnx_file_with_non_finite_weights_is_refused(make_checkpoint, tmp_path, refused):
    pytest.importorskip("onnxruntime")
    from unetkit.export import export_checkpoint

    ckpt = make_checkpoint("m.pt", out_channels=1)
    onnx_path = export_checkpoint(ckpt, tmp_path / "m.onnx").path
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(onnx_path))
    init = model.graph.initializer[0]
    weights = numpy_helper.to_array(init).copy()
    weights.flat[0] = float("nan")
    init.CopyFrom(numpy_helper.from_array(weights, init.name))
    onnx.save(model, str(onnx_path))
    images = write_pngs(tmp_path / "images", ["a.png"])
    refused(["predict", onnx_path, images, "-o", tmp_path / "out"], str(onnx_path),
            repr(init.name), "NaN/inf")
    refused(["predict", ckpt, images, "-o", tmp_path / "out", "--onnx", onnx_path],
            str(onnx_path), repr(init.name), "NaN/inf")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("command", ["predict", "export", "calibrate", "resume"])
def test_a_checkpoint_from_a_newer_unetkit_is_refused(make_checkpoint, tmp_path, refused, command):
    run = tmp_path / "run"
    run.mkdir()
    path = future(run / "last.pt", make_checkpoint("good.pt", out_channels=1))
    data = disks(tmp_path / "data")
    args = {"predict": ["predict", path, data / "images", "-o", tmp_path / "out"],
            "export": ["export", path, "-f", "torchscript", "-o", tmp_path / "m.ts"],
            "calibrate": ["calibrate", path, "--data", data],
            "resume": ["train", "--resume", run]}[command]
    refused(args, str(path), "written by a newer unetkit (format 99, this one reads up to 2)")


@pytest.mark.parametrize(("sets", "named"), [
    (["train.lr=1"], "train.lr"),
    (["infer.overlap=0.5", "data.patch_size=[8, 8]", "model.depth=3"], "data.patch_size, "
     "model.depth"),
    (["data.augment.flip_prob=0"], "data.augment.flip_prob"),
])
def test_predict_refuses_set_fields_it_does_not_use(make_checkpoint, tmp_path, refused, sets,
                                                    named):
    ckpt = make_checkpoint("m.pt", out_channels=1)
    images = write_pngs(tmp_path / "images", ["a.png"])
    args = ["predict", ckpt, images, "-o", tmp_path / "out"]
    for item in sets:
        args += ["--set", item]
    line = refused(args, "--set", named, "infer.*", code=2)
    assert f"prediction does not use {named}; it reads only infer.*, data.image_offset" in line
    assert not (tmp_path / "out").exists()


def test_predict_still_accepts_the_fields_it_reads(make_checkpoint, tmp_path):
    from unetkit.cli import app

    ckpt = make_checkpoint("m.pt", out_channels=1)
    images = write_pngs(tmp_path / "images", ["a.png"])
    result = runner.invoke(app, ["predict", str(ckpt), str(images), "-o", str(tmp_path / "out"),
                                 "-q", "--set", "infer.overlap=0.5", "--set",
                                 "infer.postprocess.min_size=2", "--set",
                                 "data.image_offset=[0.5, 0]"])  # preprocessing reads it
    assert result.exit_code == 0, result.output
    assert (tmp_path / "out" / "a.png").is_file()


@pytest.mark.parametrize(("channels", "named"), [
    ({"a": [0, 1, 2], "b": [1]}, "case 'b' misses channel file(s) _0000, _0002"),
    ({"a": [0, 1, 2], "b": [0, 2]}, "case 'b' misses channel file(s) _0001"),
    ({"a": [0, 1, 2], "b": [0, 1]}, "case 'b' misses channel file(s) _0002"),
    ({"a": [0, 1], "b": [0, 1, 2]}, "case 'b' has channel file(s) _0002 beyond _0001"),
    ({"a": [1], "b": [1]}, "case 'a' misses channel file(s) _0000"),
])
def test_check_names_cases_missing_a_channel_file(tmp_path, refused, channels, named):
    root = nnunet(tmp_path / "data", channels)
    if channels["a"] == [0, 1]:  # dataset.json declares what a has, b has one more
        (root / "dataset.json").write_text('{"labels": {"background": 0, "x": 1}, '
                                           '"channel_names": {"0": "T1", "1": "T2"}}')
    refused(["check", root], named, str(root / "imagesTr"), code=1)


def test_without_dataset_json_the_other_cases_set_the_channel_count(tmp_path, refused):
    root = nnunet(tmp_path / "data", {"a": [0, 1], "b": [0, 1], "c": [1]},
                  meta={"labels": {"background": 0, "x": 1}})
    line = refused(["check", root], "case 'c' misses channel file(s) _0000", code=1)
    assert "the other cases have 2 channel file(s)" in line


@pytest.mark.parametrize("command", ["train", "plan"])
def test_training_and_planning_refuse_a_case_missing_a_channel(tmp_path, refused, command):
    root = nnunet(tmp_path / "data", {"a": [0, 1], "b": [1]})
    args = ["train", "--data", root, "-o", tmp_path / "run", "--epochs", "1", "-q"] \
        if command == "train" else ["plan", root]
    refused(args, "case 'b' misses channel file(s) _0000")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("value", ["-1", "0", "nan"])
def test_export_refuses_a_tolerance_that_is_not_positive(make_checkpoint, tmp_path, refused, value):
    ckpt = make_checkpoint("m.pt", out_channels=1)
    refused(["export", ckpt, "-f", "torchscript", "--tolerance", value, "-o", tmp_path / "m.ts"],
            "--tolerance", "positive", code=2)
    assert not (tmp_path / "m.ts").exists()


@pytest.mark.parametrize("value", ["0", "-0.5", "inf"])
def test_calibrate_refuses_beta_that_is_not_positive(make_checkpoint, tmp_path, refused, value):
    ckpt = make_checkpoint("m.pt", out_channels=2)
    data = disks(tmp_path / "data")
    refused(["calibrate", ckpt, "--data", data, "--beta", value], "--beta", "positive", code=2)


def test_calibrate_uses_the_beta_given_and_reports_it(make_checkpoint, tmp_path):
    from unetkit.cli import app

    ckpt = make_checkpoint("m.pt", out_channels=2)
    data = disks(tmp_path / "data")
    result = runner.invoke(app, ["calibrate", str(ckpt), "--data", str(data), "--beta", "0.5",
                                 "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert "mean F0.5 " in result.output
    assert load_checkpoint(ckpt)["calibration"]["beta"] == 0.5


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16])
def test_non_finite_values_are_counted_in_every_float_dtype(dtype):
    from unetkit.runtime.model_checks import first_non_finite

    good = torch.ones(3, 4, dtype=dtype)
    bad = good.clone()
    bad[0, 1], bad[2, 3] = float("nan"), float("-inf")
    steps = torch.arange(5)  # integers are never non-finite
    assert first_non_finite([("a", good), ("n", steps)]) is None
    message = first_non_finite([("a", good), ("b", bad), ("c", bad)])
    assert "tensor 'b' holds 2 NaN/inf value(s) of 12" in message
