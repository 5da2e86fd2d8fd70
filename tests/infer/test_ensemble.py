"""Ensembles: the mean of the members' class probabilities, each member with its own TTA; the
same windows once for all members; mismatched members refused with one line; the CLI's
``--model``, sharded and ONNX-engine prediction of an ensemble."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from unetkit.cli import app
from unetkit.config import Config
from unetkit.infer.ensemble import (
    CV_STATE,
    CV_SUMMARY,
    EnsembleError,
    EnsemblePredictor,
    load_models,
    member_channels,
)
from unetkit.infer.predictor import Predictor

runner = CliRunner()


def image(shape=(1, 40, 36), seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(0, 1, shape).astype(np.float32)


def hand_mean(paths, array: np.ndarray, settings=None) -> np.ndarray:
    """Each member's own ``Predictor`` output, averaged by hand."""
    probs = [Predictor.from_checkpoint(p, settings=settings).predict(array).probabilities
             for p in paths]
    return np.mean(probs, axis=0)


@pytest.mark.parametrize("out_channels", [1, 2, 3])
@pytest.mark.parametrize("tta", [False, True])
def test_an_ensemble_is_the_mean_of_its_members_probabilities(make_checkpoint, out_channels,
                                                              tta) -> None:
    # members with their own TTA axes: each averages its own mirrorings first
    infer_a = {"tta_axes": [0, 1] if tta else []}
    infer_b = {"tta_axes": [1] if tta else []}
    a = make_checkpoint("a.pt", out_channels=out_channels, seed=0, infer=infer_a)
    b = make_checkpoint("b.pt", out_channels=out_channels, seed=1, infer=infer_b)
    x = image()
    ensemble = load_models(a, [b])
    assert isinstance(ensemble, EnsemblePredictor)
    got = ensemble.predict(x)
    expected = hand_mean([a, b], x)
    np.testing.assert_allclose(got.probabilities, expected, atol=2e-6)
    if out_channels == 3:
        assert np.array_equal(got.labels, expected.argmax(0))
    else:
        assert np.array_equal(got.labels, (expected[1] > expected[0]).astype(np.uint8))
    # not the mean of the logits: that would be a different map
    logits = [Predictor.from_checkpoint(p).predict_logits(torch.from_numpy(x)) for p in (a, b)]
    if not tta and out_channels == 3:
        from unetkit.infer.decision import probabilities
        of_mean_logits = probabilities((logits[0] + logits[1]) / 2).numpy()
        assert np.abs(of_mean_logits - expected).max() > 1e-3


def test_the_threshold_is_the_mean_of_the_members_thresholds(make_checkpoint) -> None:
    a = make_checkpoint("a.pt", out_channels=2, seed=0, infer={"threshold": 0.3})
    b = make_checkpoint("b.pt", out_channels=2, seed=1)  # none: counts as 0.5
    c = make_checkpoint("c.pt", out_channels=1, seed=2, infer={"threshold": 0.6})
    x = image()
    ensemble = load_models(a, [b, c])
    assert ensemble.infer.threshold == pytest.approx((0.3 + 0.5 + 0.6) / 3)
    mean = hand_mean([a, b, c], x)
    assert np.array_equal(ensemble.predict(x).labels, (mean[1] >= (0.3 + 0.5 + 0.6) / 3))
    # no member with a threshold: the arg-max; a threshold set at predict time for all
    plain = load_models(b, [make_checkpoint("d.pt", out_channels=2, seed=3)])
    assert plain.infer.threshold is None
    assert load_models(a, [b], settings={"infer.threshold": 0.7}).infer.threshold == 0.7


def test_the_largest_component_is_kept_only_when_every_member_keeps_it(make_checkpoint) -> None:
    keep = {"postprocess": {"keep_largest": True}}
    a = make_checkpoint("a.pt", out_channels=2, seed=0, infer=keep)
    b = make_checkpoint("b.pt", out_channels=2, seed=1, infer=keep)
    c = make_checkpoint("c.pt", out_channels=2, seed=2)
    assert load_models(a, [b]).infer.postprocess.keep_largest is True
    assert load_models(a, [b, c]).infer.postprocess.keep_largest is False


def test_members_with_other_normalisation_statistics_each_get_their_own_input(
        make_checkpoint) -> None:
    """Folds fit dataset statistics on different cases: each member reads its own copy."""
    def stats(mean, std):
        return {"scheme": "zscore_dataset", "percentiles": [0.5, 99.5], "window": None,
                "stats": {"mean": [mean], "std": [std]}}
    a = make_checkpoint("a.pt", out_channels=2, seed=0, normalization=stats(10.0, 2.0))
    b = make_checkpoint("b.pt", out_channels=2, seed=1, normalization=stats(12.0, 3.0))
    c = make_checkpoint("c.pt", out_channels=2, seed=2, normalization=stats(10.0, 2.0))
    x = 10 + 3 * image()
    ensemble = load_models(a, [b, c])
    assert len(ensemble.group_members) == 2 and ensemble.member_groups == [0, 1, 0]
    np.testing.assert_allclose(ensemble.predict(x).probabilities, hand_mean([a, b, c], x),
                               atol=2e-6)


def test_member_channels_follow_the_stacked_and_slice_context_layout() -> None:
    assert member_channels(0, 1, 2, 3) is None
    # 2 groups x 2 channels, 3 slices: slice j holds [g0c0, g0c1, g1c0, g1c1]
    assert member_channels(1, 2, 2, 3).tolist() == [2, 3, 6, 7, 10, 11]
    assert member_channels(0, 3, 1, 1).tolist() == [0]


class Pointwise:
    """A 1x1 'network' with fixed weights: tiles give exactly the whole image's output, so a
    tiled ensemble can be compared exactly. Counts the windows it sees."""

    def __init__(self, weight: list[float], bias: list[float]) -> None:
        self.weight = torch.tensor(weight).reshape(1, -1, 1, 1)
        self.bias = torch.tensor(bias).reshape(1, -1, 1, 1)
        self.windows: list[tuple[int, ...]] = []

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        self.windows += [tuple(x.shape[2:])] * x.shape[0]
        return x * self.weight + self.bias


def pointwise_member(weight, bias, budget_mb: float, tta=()) -> Predictor:
    config = Config.model_validate({
        "model": {"spatial_dims": 2, "in_channels": 1, "out_channels": len(weight),
                  "base_width": 16, "depth": 2},
        "infer": {"memory_budget_mb": budget_mb, "tta_axes": list(tta)}})
    labels = {i: f"c{i}" for i in range(max(len(weight), 2))}
    return Predictor(Pointwise(weight, bias), config=config, labels=labels)


def test_a_tiled_ensemble_averages_probabilities_and_visits_each_tile_once() -> None:
    budget = 4.0  # MB: 512x384 needs tiles
    x = image((1, 512, 384), seed=4)
    members = [pointwise_member([1.0, -2.0, 0.5], [0.0, 0.3, -0.1], budget, tta=(0,)),
               pointwise_member([-1.5, 2.0, 1.0], [0.2, 0.0, 0.1], budget)]
    single = [m.predict(x).probabilities for m in members]
    counts = [len(m.network.windows) for m in members]
    assert counts[1] > 1  # the budget forced tiles
    for m in members:
        m.network.windows.clear()
    ensemble = EnsemblePredictor(members, ["a", "b"])
    assert not ensemble.strategy().window_plan((512, 384)).whole
    got = ensemble.predict(x).probabilities
    np.testing.assert_allclose(got, np.mean(single, axis=0), atol=2e-6)
    # both members saw the same tiles, each once per TTA view, as when predicting alone
    assert [len(m.network.windows) for m in members] == counts
    assert members[0].network.windows[::2] == members[1].network.windows


def test_tiles_of_real_members_are_the_tiles_a_single_member_uses(make_checkpoint) -> None:
    paths = [make_checkpoint(f"{k}.pt", out_channels=2, seed=k, base_width=8) for k in range(3)]
    settings = {"infer.memory_budget_mb": 3.0}
    ensemble = load_models(paths[0], paths[1:], settings=settings)
    single = Predictor.from_checkpoint(paths[0], settings=settings)
    size = (200, 176)
    planned, alone = ensemble.strategy().window_plan(size), single.strategy().window_plan(size)
    assert (planned.window, planned.tiles) == (alone.window, alone.tiles) and not alone.whole
    assert planned.estimate_bytes > alone.estimate_bytes  # the running mean of one window
    seen = {k: [] for k in range(3)}

    def counted(network, shapes: list):
        return lambda x: shapes.append(tuple(x.shape)) or network(x)

    for k, member in enumerate(ensemble.members):
        member.network = counted(member.network, seen[k])
    ensemble.update({})  # rebuilds the ensemble network from the members
    ensemble.predict(image((1, *size)))
    assert len(seen[0]) > 1 and seen[0] == seen[1] == seen[2]


@pytest.mark.parametrize("option, field", [
    ({"out_channels": 3}, "labels"),
    ({"in_channels": 2}, "image channels"),
    ({"spatial_dims": 3}, "spatial dims"),
    ({"data": {"target_spacing": [2.0, 2.0]}}, "spacing"),
])
def test_mismatched_members_are_refused_with_one_line(make_checkpoint, tmp_path, option,
                                                      field) -> None:
    a = make_checkpoint("a.pt", out_channels=2)
    b = make_checkpoint("b.pt", **{"out_channels": 2, **option})
    with pytest.raises(EnsembleError, match=field):
        load_models(a, [b])
    folder = tmp_path / "images"
    folder.mkdir()
    Image.fromarray(np.zeros((16, 16), np.uint8)).save(folder / "x.png")
    done = runner.invoke(app, ["predict", str(a), str(folder), "-o", str(tmp_path / "out"),
                               "--model", str(b), "-q"])
    assert done.exit_code == 2
    lines = done.output.strip().splitlines()
    assert len(lines) == 1 and str(a) in lines[0] and str(b) in lines[0] and field in lines[0]
    assert not (tmp_path / "out").exists()


def write_pngs(folder: Path, count: int = 5, size=(36, 28)) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(count):
        Image.fromarray(rng.integers(0, 256, size, dtype=np.uint8)).save(folder / f"c{i}.png")
    return folder


def test_cli_ensemble_writes_the_mean_probabilities_and_their_decision(make_checkpoint,
                                                                       tmp_path) -> None:
    a = make_checkpoint("a.pt", out_channels=2, seed=0, mask_values={0: 0, 1: 255})
    b = make_checkpoint("b.pt", out_channels=2, seed=1, mask_values={0: 0, 1: 255})
    images = write_pngs(tmp_path / "images", 2)
    out = tmp_path / "out"
    done = runner.invoke(app, ["predict", str(a), str(images), "-o", str(out), "--model",
                               str(b), "--save-probabilities", "--tta", "all", "-q"])
    assert done.exit_code == 0, done.output
    assert "ensemble of 2 models" in done.output
    for name in ("c0", "c1"):
        raw = np.asarray(Image.open(images / f"{name}.png"), np.float32)[None]
        expected = hand_mean([a, b], raw, settings={"infer.tta_axes": "all"})
        saved = np.load(out / "probabilities" / f"{name}.npz")
        probabilities = saved[saved.files[0]] if "probabilities" not in saved else \
            saved["probabilities"]
        np.testing.assert_allclose(probabilities, expected, atol=2e-6)
        mask = np.asarray(Image.open(out / f"{name}.png"))
        assert np.array_equal(mask, np.where(expected[1] > expected[0], 255, 0))


def test_onnx_with_an_ensemble_is_one_clear_line(make_checkpoint, tmp_path) -> None:
    a, b = make_checkpoint("a.pt", out_channels=2), make_checkpoint("b.pt", out_channels=2)
    images = write_pngs(tmp_path / "images", 1)
    done = runner.invoke(app, ["predict", str(a), str(images), "-o", str(tmp_path / "o"),
                               "--model", str(b), "--onnx", str(tmp_path / "x.onnx"), "-q"])
    assert done.exit_code == 2 and "infer.engine=onnxruntime" in done.output
    assert len(done.output.strip().splitlines()) == 1


def fake_cross_validation(folder: Path, make_checkpoint, folds: int = 3) -> Path:
    """A finished cross-validation folder as ``unetkit.train.cross_validation`` leaves it."""
    for k in range(folds):
        (folder / f"fold_{k}").mkdir(parents=True)
        path = make_checkpoint(f"m{k}.pt", out_channels=2, seed=k)
        (folder / f"fold_{k}" / "best.pt").write_bytes(path.read_bytes())
    (folder / CV_STATE).write_text(json.dumps({"folds": folds}))
    (folder / CV_SUMMARY).write_text(json.dumps({"folds": folds}))
    return folder


def test_a_cross_validation_folder_predicts_with_all_its_folds(make_checkpoint,
                                                               tmp_path) -> None:
    run = fake_cross_validation(tmp_path / "cv", make_checkpoint)
    ensemble = load_models(run)
    assert [Path(n).parent.name for n in ensemble.names] == ["fold_0", "fold_1", "fold_2"]
    x = image()
    folds = [run / f"fold_{k}" / "best.pt" for k in range(3)]
    np.testing.assert_allclose(ensemble.predict(x).probabilities, hand_mean(folds, x),
                               atol=2e-6)
    extra = make_checkpoint("extra.pt", out_channels=2, seed=9)
    assert len(load_models(run, [extra]).members) == 4
    (run / CV_SUMMARY).unlink()  # unfinished: one line saying how to continue
    with pytest.raises(EnsembleError, match="--resume"):
        load_models(run)


def test_sharded_ensemble_prediction_equals_unsharded(make_checkpoint, tmp_path) -> None:
    run = fake_cross_validation(tmp_path / "cv", make_checkpoint, folds=2)
    images = write_pngs(tmp_path / "images", 5)
    whole, parts = tmp_path / "whole", tmp_path / "parts"
    done = runner.invoke(app, ["predict", str(run), str(images), "-o", str(whole), "-q"])
    assert done.exit_code == 0, done.output
    for part in range(2):
        done = runner.invoke(app, ["predict", str(run), str(images), "-o", str(parts),
                                   "--part", str(part), "--parts", "2", "-q"])
        assert done.exit_code == 0, done.output
    files = sorted(p.name for p in whole.glob("*.png"))  # and each folder's predict.json
    assert len(files) == 5 and files == sorted(p.name for p in parts.glob("*.png"))
    for name in files:
        assert (whole / name).read_bytes() == (parts / name).read_bytes()


def test_an_ensemble_runs_in_onnxruntime(make_checkpoint, tmp_path, monkeypatch) -> None:
    pytest.importorskip("onnxruntime")
    from unetkit.runtime import onnx_cache

    monkeypatch.setattr(onnx_cache, "cache_dir", lambda: tmp_path / "cache")
    a = make_checkpoint("a.pt", out_channels=2, seed=0)
    b = make_checkpoint("b.pt", out_channels=2, seed=1)
    x = image()
    onnx = load_models(a, [b], overrides=["infer.engine=onnxruntime"])
    assert onnx.engine == "onnxruntime"
    assert len(list((tmp_path / "cache").rglob("*.onnx"))) == 2  # each member exported
    np.testing.assert_allclose(onnx.predict(x).probabilities, hand_mean([a, b], x), atol=1e-4)
    assert math.isclose(float(onnx.predict(x).probabilities.sum(0).mean()), 1.0, abs_tol=1e-5)


@pytest.mark.slow
def test_measured_peak_does_not_grow_with_the_members(make_checkpoint, memory_peak,
                                                      precision) -> None:
    """Measured as tests/infer/test_memory.py measures a single model (``memory_peak``: the
    second prediction in a fresh process, after ``malloc_trim``), with one and with three
    members: within 5% of the budget, and three less than 25% above one (three members held
    at once would need about three times one's activations; runs of the suite stayed under
    10% growth but one measured 13%, so a tighter bound fails on noise)."""
    from tests.infer.test_memory import onednn_runs_bf16

    if precision.name == "bf16" and not onednn_runs_bf16():
        pytest.skip("bf16 without AVX512 runs torch's fallback convolutions (docs/inference.md)")
    paths = [make_checkpoint(f"{k}.pt", out_channels=2, base_width=16, depth=4, seed=k)
             for k in range(3)]
    size, budget = 1024, 48.0
    settings = {"infer.memory_budget_mb": budget, **precision.settings}
    assert not load_models(paths[0], paths[1:], settings=settings).strategy().window_plan(
        (size, size)).whole  # the budget forces tiles
    results = [memory_peak(size, budget, *members, precision=precision.name)
               for members in (paths[:1], paths)]
    assert all(r["precision"] == precision.name for r in results)
    peaks = [r["peak"] for r in results]
    assert all(peak <= 1.05 * budget * 2**20 for peak in peaks), peaks
    assert peaks[1] <= 1.25 * peaks[0], peaks


def test_slice_models_with_their_own_normalisation_form_an_ensemble(make_checkpoint) -> None:
    """2.5D members (2D networks on the slices of volumes, one slice of context on each side)
    whose statistics differ: each reads its own normalised copy, its slices and context."""
    def stats(mean):
        return {"scheme": "zscore_dataset", "percentiles": [0.5, 99.5], "window": None,
                "stats": {"mean": [mean], "std": [2.0]}}
    data = {"slice_axis": 2, "slice_context": 1}
    paths = [make_checkpoint(f"{k}.pt", out_channels=2, in_channels=3, seed=k, data=data,
                             normalization=stats(mean), infer={"tta_axes": [0]})
             for k, mean in enumerate((1.0, 3.0))]
    x = 2 + 2 * image((1, 12, 16, 5), seed=7)
    ensemble = load_models(paths[0], paths[1:])
    assert len(ensemble.group_members) == 2
    np.testing.assert_allclose(ensemble.predict(x).probabilities, hand_mean(paths, x),
                               atol=2e-6)


def test_an_ensemble_of_region_models_averages_each_regions_sigmoid(tmp_path,
                                                                   make_checkpoint) -> None:
    """Region members (one sigmoid per overlapping region): the mean of each region's
    probability, a region on where that mean exceeds 0.5, painted in regions_class_order; not
    a softmax over the regions."""
    from test_region_decision import BRATS, region_checkpoint  # tests/infer (rootdir-less)

    x = image((1, 24, 20))
    a = region_checkpoint(tmp_path / "a.pt", 2, x)
    b = region_checkpoint(tmp_path / "b.pt", 2, -x)  # another member: its biases from -x
    ensemble = load_models(a, [b])
    got = ensemble.predict(x)
    members = [Predictor.from_checkpoint(p).predict(x) for p in (a, b)]
    mean = (members[0].probabilities + members[1].probabilities) / 2
    assert got.regions == ["whole", "core", "enh"]
    assert got.probabilities.shape == (3, 24, 20)
    np.testing.assert_allclose(got.probabilities, mean, atol=2e-6)
    expected = np.zeros((24, 20), np.uint8)
    for region, label in enumerate(BRATS["regions_class_order"]):  # painted by hand, in order
        expected[mean[region] > 0.5] = label
    assert np.array_equal(got.labels, expected)
    assert len(np.unique(expected)) > 1
    # a region model and a label model of the same labels do not form an ensemble
    from unetkit.runtime.checkpoint import load_checkpoint, save_checkpoint

    plain = make_checkpoint("plain.pt", out_channels=4)
    checkpoint = load_checkpoint(plain)
    checkpoint["labels"] = {0: "background", 1: "whole", 2: "core", 3: "enh"}
    save_checkpoint(checkpoint, plain)
    with pytest.raises(EnsembleError, match="regions"):
        load_models(a, [plain])
