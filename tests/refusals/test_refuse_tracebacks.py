"""Issue 30, "Python tracebacks instead of one line": decompression bombs refused from the file
header before decoding (every reader), a ``dataset.json`` in neither nnU-Net form, and model
configs that would allocate terabytes, refused before anything is allocated."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
import tifffile
import torch
from refusal_data import disks, nnunet, png_bomb, runner, write_pngs

from unetkit.cli import app
from unetkit.data.geometry import ImageFormatError
from unetkit.data.io import read_image, read_mask
from unetkit.runtime.checkpoint import load_checkpoint


def test_check_refuses_a_png_bomb_by_name(tmp_path, refused):
    root = disks(tmp_path / "data")
    bomb = png_bomb(root / "masks" / "c1.png")
    assert bomb.stat().st_size < 2000
    line = refused(["check", root], str(bomb), "refused before decoding", code=1)
    assert "unreadable mask" in line


def test_training_and_prediction_refuse_a_png_bomb(make_checkpoint, tmp_path, refused):
    root = disks(tmp_path / "data")
    bomb = png_bomb(root / "images" / "c2.png")
    refused(["train", "--data", root, "-o", tmp_path / "run", "--epochs", "1", "-q"], str(bomb),
            "refused before decoding")
    assert not (tmp_path / "run").exists()
    ckpt = make_checkpoint("m.pt", out_channels=1)
    good = root / "images" / "c0.png"
    # prediction goes on with the other inputs and names the refused one in its failures
    refused(["predict", ckpt, good, bomb, "-o", tmp_path / "out", "-q"], "1 of 2 input(s) "
            f"failed: {bomb}", code=1)
    result = runner.invoke(app, ["predict", str(ckpt), str(bomb), "-o", str(tmp_path / "o2")])
    assert f"failed: {bomb}: " in result.output and "refused before decoding" in result.output
    assert "Traceback" not in result.output
    assert (tmp_path / "out" / "c0.png").is_file() and not (tmp_path / "out" / "c2.png").exists()


def _bomb_npz(path, shape):
    """An ``.npz`` whose member header declares ``shape`` (float32) but holds no data."""
    import zipfile

    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive, \
            archive.open("data.npy", "w") as member:
        np.lib.format.write_array_header_1_0(
            member, {"descr": "<f4", "fortran_order": False, "shape": shape})
    return path


def _bomb_nifti(path, shape):
    """A ``.nii`` whose header declares ``shape`` but whose data is not there."""
    header = nib.Nifti1Header()
    header.set_data_shape(shape)
    header.set_data_dtype(np.float32)
    path.write_bytes(header.binaryblock + b"\x00" * 4)  # vox_offset 352: no voxels
    return path


@pytest.mark.parametrize("kind", ["png", "npz", "nifti"])
def test_every_reader_checks_the_header_before_decoding(tmp_path, kind):
    make = {"png": lambda p: png_bomb(p), "npz": lambda p: _bomb_npz(p, (60000, 60000)),
            "nifti": lambda p: _bomb_nifti(p, (30000, 30000, 30))}[kind]
    path = make(tmp_path / {"png": "a.png", "npz": "a.npz", "nifti": "a.nii"}[kind])
    for read in (read_image, read_mask):
        with pytest.raises(ImageFormatError, match="refused before decoding") as info:
            read(path)
        assert str(info.value).startswith(str(path))


@pytest.mark.parametrize("suffix", [".png", ".tif", ".npy", ".npz", ".nii.gz"])
def test_the_voxel_limit_applies_to_every_format(tmp_path, suffix):
    from unetkit.data.io import write_image

    path = write_image(tmp_path / f"a{suffix}", np.ones((1, 20, 30), np.uint8))
    assert read_image(path, max_voxels=600)[0].shape == (1, 20, 30)
    with pytest.raises(ImageFormatError, match=r"declares .*600 values.*refused before"):
        read_image(path, max_voxels=599)


def test_a_tiff_stack_is_limited_by_its_pages(tmp_path):
    path = tmp_path / "stack.tif"
    tifffile.imwrite(path, np.zeros((5, 8, 8), np.uint8))
    with pytest.raises(ImageFormatError, match="5x8x8"):
        read_image(path, max_voxels=300)


@pytest.mark.parametrize(("labels", "named"), [
    (["background", "x"], "'labels' must map names to label values"),
    ({"background": 0, "x": "one"}, "'labels' entry 'x'"),
    ({}, "found an empty mapping"),
    ("labels", "found a string"),
])
def test_a_dataset_json_in_neither_nnunet_form_is_refused(tmp_path, refused, labels, named):
    root = nnunet(tmp_path / "data", {"a": [0], "b": [0]}, meta={"labels": labels})
    path = root / "dataset.json"
    refused(["check", root], str(path), named, code=1)
    refused(["train", "--data", root, "-o", tmp_path / "run", "--epochs", "1", "-q"],
            str(path), named)
    refused(["plan", root], str(path), named)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(("meta", "named"), [
    ({"labels": {"background": 0, "x": 1}, "channel_names": ["CT"]}, "'channel_names' must map"),
    ([1, 2], "expected a JSON object"),
    ("{not json", "not valid JSON"),
])
def test_dataset_json_channel_names_and_shape_are_checked(tmp_path, refused, meta, named):
    root = nnunet(tmp_path / "data", {"a": [0], "b": [0]})
    path = root / "dataset.json"
    path.write_text(meta if isinstance(meta, str) else json.dumps(meta))
    refused(["check", root], str(path), named, code=1)


def test_evaluate_refuses_a_broken_dataset_json(tmp_path, refused):
    root = nnunet(tmp_path / "data", {"a": [0]}, meta={"labels": ["background", "x"]})
    refused(["evaluate", root / "labelsTr", root / "labelsTr", "-o", tmp_path / "ev"],
            str(root / "dataset.json"), "'labels' must map")


def _grown(make_checkpoint, tmp_path, **model):
    """A real checkpoint whose stored config asks for another, larger network."""
    path = make_checkpoint("m.pt", out_channels=1)
    checkpoint = load_checkpoint(path)
    checkpoint["config"]["model"].update(model)
    torch.save(checkpoint, tmp_path / "big.pt")
    return tmp_path / "big.pt"


def _no_real_build(monkeypatch):
    """Make building a network anywhere but on the meta device fail the test."""
    import unetkit.nn as nn_package

    real = nn_package.build_model

    def guarded(*args, **kwargs):
        probe = torch.empty(0)
        assert probe.device.type == "meta", "a network was built with real memory"
        return real(*args, **kwargs)

    monkeypatch.setattr(nn_package, "build_model", guarded)


@pytest.mark.parametrize(("model", "named"), [
    ({"base_width": 2**20}, "model.base_width: got 1048576"),
    ({"widths": [65536, 65536, 65536]}, "parameters"),
])
@pytest.mark.parametrize("command", ["predict", "export"])
def test_a_config_asking_for_a_huge_network_is_refused_before_allocating(
        make_checkpoint, tmp_path, refused, monkeypatch, model, named, command):
    path = _grown(make_checkpoint, tmp_path, **model)
    _no_real_build(monkeypatch)
    images = write_pngs(tmp_path / "images", ["a.png"])
    args = ["predict", path, images, "-o", tmp_path / "out"] if command == "predict" else \
        ["export", path, "-f", "torchscript", "-o", tmp_path / "m.ts"]
    refused(args, str(path), named, code=2)


def test_training_refuses_a_config_describing_a_huge_network(tmp_path, refused, monkeypatch):
    root = disks(tmp_path / "data")
    config = tmp_path / "big.yaml"
    config.write_text("model: {widths: [65536, 65536, 65536, 65536, 65536]}\n"
                      "data: {patch_size: [16, 16], batch_size: 1}\ntrain: {epochs: 1}\n")
    _no_real_build(monkeypatch)
    refused(["train", "--data", root, "--config", config, "-o", tmp_path / "run", "-q"],
            "parameters", "model.widths")


def test_info_refuses_a_huge_network_before_building_it(refused, monkeypatch):
    _no_real_build(monkeypatch)
    line = refused(["info", "unet", "--base-width", "1048576"], "--base-width", "parameters",
                   code=2)
    assert "model.base_width 1048576" in line
