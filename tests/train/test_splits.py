"""Splits: fraction, k-fold and split files."""

from __future__ import annotations

import json

import numpy as np
import pytest

from unetkit.train.splits import (
    hold_out_bands,
    make_split,
    split_fraction,
    split_from_file,
    split_kfold,
)

IDS = [f"case{i:02d}" for i in range(10)]


def test_fraction_split_sizes_disjoint_and_deterministic():
    train, val = split_fraction(IDS, 0.2, seed=3)
    assert len(val) == 2 and len(train) == 8
    assert sorted(train + val) == IDS
    assert split_fraction(list(reversed(IDS)), 0.2, seed=3) == (train, val)
    assert split_fraction(IDS, 0.2, seed=4) != (train, val)


def test_fraction_edge_cases():
    assert split_fraction(IDS, 0.0, 0) == (IDS, [])
    assert split_fraction(["a"], 0.5, 0) == (["a"], [])
    assert len(split_fraction(IDS, 0.01, 0)[1]) == 1  # at least one validation case
    assert len(split_fraction(["a", "b"], 0.99, 0)[0]) == 1  # at least one training case


def test_kfold_covers_every_case_once():
    vals = []
    for fold in range(5):
        train, val = split_kfold(IDS, fold, 5, seed=0)
        assert len(val) == 2 and not set(train) & set(val)
        vals += val
    assert sorted(vals) == IDS


def test_kfold_errors():
    with pytest.raises(ValueError, match="--fold 5: must be in 0..4"):
        split_kfold(IDS, 5, 5, 0)
    with pytest.raises(ValueError, match="only 3 cases"):
        split_kfold(IDS[:3], 0, 5, 0)


def test_split_file_plain_and_nnunet(tmp_path):
    plain = tmp_path / "split.yaml"
    plain.write_text("train: [case00, case01]\nval: [case02]\n")
    assert split_from_file(plain, IDS) == (["case00", "case01"], ["case02"])
    nnunet = tmp_path / "splits_final.json"
    nnunet.write_text(json.dumps([{"train": ["case00"], "val": ["case01"]},
                                  {"train": ["case01"], "val": ["case00"]}]))
    assert make_split(IDS, val_fraction=0.2, seed=0, split_file=nnunet, fold=1) == (
        ["case01"], ["case00"])
    with pytest.raises(ValueError, match="holds 2 folds"):
        split_from_file(nnunet, IDS)
    unknown = tmp_path / "bad.json"
    unknown.write_text(json.dumps({"train": ["case00", "zzz"], "val": []}))
    with pytest.raises(ValueError, match="unknown cases: zzz"):
        split_from_file(unknown, IDS)
    plain.write_text("training: []\n")
    with pytest.raises(ValueError, match="needs keys 'train' and 'val'"):
        split_from_file(plain, IDS)
    with pytest.raises(ValueError, match="not found"):
        split_from_file(tmp_path / "nope.json", IDS)


def test_make_split_dispatch():
    assert make_split(IDS, val_fraction=0.2, seed=1) == split_fraction(IDS, 0.2, 1)
    assert make_split(IDS, val_fraction=0.2, seed=1, fold=2, folds=5) == split_kfold(IDS, 2, 5, 1)


def test_held_out_bands_split_every_mask_into_training_and_calibration_rows():
    rng = np.random.default_rng(0)
    masks = [rng.integers(0, 2, (40, 30)) for _ in range(5)]
    masks[0][:12] = 255  # rows outside the region of interest: never in a band
    train, bands = hold_out_bands(masks, 0.1, seed=3, ignore=255)
    for mask, kept, held in zip(masks, train, bands, strict=True):
        band_rows = np.flatnonzero((held != 255).any(axis=1))
        assert len(band_rows) == 4 and np.all(np.diff(band_rows) == 1)  # 10% of 40 rows
        assert np.all(kept[band_rows] == 255)  # no label of the band trains
        outside = np.setdiff1d(np.arange(40), band_rows)
        assert np.array_equal(kept[outside], mask[outside])
        assert np.all(held[outside] == 255)
        assert np.array_equal(held[band_rows], mask[band_rows])
    assert np.flatnonzero((bands[0] != 255).any(axis=1))[0] >= 12
    assert all(np.array_equal(a, b) for a, b in zip(
        hold_out_bands(masks, 0.1, seed=3, ignore=255)[1], bands, strict=True))
    assert np.flatnonzero((masks[1] != 255).any(axis=1)).size == 40  # inputs unchanged
