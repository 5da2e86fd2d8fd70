"""Thin-wall decisions: threshold, seeds, one-pixel walls, seeded-watershed gap closing."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from unetkit.infer.boundaries import (
    basin_walls,
    seed_regions,
    seeded_walls,
    threshold_foreground,
    wall_decision,
)

FOUR = ndimage.generate_binary_structure(2, 1)


def cells(foreground: np.ndarray) -> int:
    """Number of 4-connected background components (the cells a membrane map encloses)."""
    return ndimage.label(~foreground, structure=FOUR)[1]


def two_cells_with_gap(gap: slice = slice(10, 14), gap_value: float = 0.4) -> np.ndarray:
    """24x24 probability map: a vertical wall at column 12 (p 0.9) with a weak stretch."""
    prob = np.full((24, 24), 0.05)
    prob[:, 12] = 0.9
    prob[:, 11] = prob[:, 13] = 0.3  # the wall's flanks, above the 0.2 seed level
    prob[gap, 11:14] = gap_value
    return prob


def test_threshold_hand_values() -> None:
    prob = np.array([[0.1, 0.4], [0.5, 0.9]])
    np.testing.assert_array_equal(threshold_foreground(prob, 0.45), [[False, False], [True, True]])
    np.testing.assert_array_equal(threshold_foreground(prob, 0.5), [[False, False], [True, True]])
    with pytest.raises(ValueError, match="threshold"):
        threshold_foreground(prob, 1.0)


def test_seed_regions_drop_small_and_renumber() -> None:
    prob = np.ones((6, 8))
    prob[0:2, 0:2] = 0.0  # 4 pixels
    prob[4, 7] = 0.0  # 1 pixel
    prob[3:6, 0:3] = 0.1  # 9 pixels
    seeds, count = seed_regions(prob, 0.2, min_seed_size=2)
    assert count == 2
    assert sorted(np.unique(seeds).tolist()) == [0, 1, 2]
    assert seeds[4, 7] == 0
    assert {int((seeds == i).sum()) for i in (1, 2)} == {4, 9}


def two_discs_joined_by_a_neck() -> np.ndarray:
    """40x70 map: two discs of radius 14 (p 0.05) in a wall (p 0.9), joined by a 3-pixel gap
    whose probability (0.1) is as low as the cells' interior."""
    rows, cols = np.mgrid[:40, :70]
    prob = np.full((40, 70), 0.9)
    for centre in (18, 51):
        prob[(rows - 20) ** 2 + (cols - centre) ** 2 <= 14 ** 2] = 0.05
    prob[19:22, 30:40] = 0.1
    return prob


def test_split_depth_gives_each_lobe_its_own_seed() -> None:
    prob = two_discs_joined_by_a_neck()
    assert seed_regions(prob, 0.5)[1] == 1  # one region: the gap is clearly interior
    seeds, count = seed_regions(prob, 0.5, split_depth=5)
    assert count == 2
    assert seeds[20, 18] != seeds[20, 51] and seeds[20, 18] > 0 and seeds[20, 51] > 0
    assert cells(wall_decision(prob, 0.5, 0.5, 1)) == 1  # whole-region seeds: still merged
    split = wall_decision(prob, 0.5, 0.5, 1, split_depth=5)
    assert cells(split) == 2
    assert (split & ~(prob >= 0.5)).sum() == 3  # one wall pixel per row of the neck


def test_split_depth_keeps_regions_without_a_deep_maximum() -> None:
    prob = two_discs_joined_by_a_neck()
    prob[2:5, 2:8] = 0.05  # a thin cell: its distance transform never reaches 5
    seeds, count = seed_regions(prob, 0.5, split_depth=5)
    assert count == 3
    assert len(np.unique(seeds[2:5, 2:8])) == 1 and seeds[3, 4] > 0  # kept whole
    assert sorted(np.unique(seeds).tolist()) == [0, 1, 2, 3]
    with pytest.raises(ValueError, match="split_depth"):
        seed_regions(prob, 0.5, split_depth=0)


def test_basin_walls_take_the_higher_probability_side() -> None:
    basins = np.array([[1, 1, 2, 2]] * 3)
    prob = np.array([[0.0, 0.2, 0.8, 0.0]] * 3)
    walls = basin_walls(basins, prob)
    np.testing.assert_array_equal(walls, [[False, False, True, False]] * 3)
    walls = basin_walls(basins, prob[:, ::-1].copy())
    np.testing.assert_array_equal(walls, [[False, True, False, False]] * 3)


def test_basin_walls_separate_every_pair_of_labels() -> None:
    rng = np.random.default_rng(0)
    basins = ndimage.zoom(rng.integers(1, 6, (6, 6)), 5, order=0)
    walls = basin_walls(basins, rng.random(basins.shape))
    parts, count = ndimage.label(~walls, structure=FOUR)
    for part in range(1, count + 1):
        assert len(np.unique(basins[parts == part])) == 1


def test_seeded_walls_close_a_gap_between_two_cells() -> None:
    prob = two_cells_with_gap()
    thresholded = threshold_foreground(prob, 0.5)
    assert cells(thresholded) == 1  # the weak stretch merges the two cells
    closed = wall_decision(prob, 0.5, seed_threshold=0.2, min_seed_size=4)
    assert cells(closed) == 2
    added = closed & ~thresholded
    rows, cols = np.nonzero(added)
    assert set(rows.tolist()) == {10, 11, 12, 13}  # every row of the gap, nothing else
    assert set(cols.tolist()) <= {11, 12, 13} and added.sum() <= 6  # a thin wall in the gap


def test_no_walls_inside_one_cell_or_from_small_seeds() -> None:
    prob = np.full((20, 20), 0.05)
    assert not seeded_walls(prob, 0.2).any()  # one seed: nothing to separate
    prob[8:12, 8:12] = 0.35  # a ring-like organelle around a 2x2 dark spot
    prob[9:11, 9:11] = 0.1
    assert seeded_walls(prob, 0.2, min_seed_size=5).sum() == 0
    assert seeded_walls(prob, 0.2, min_seed_size=1).sum() > 0  # the spot would split the cell


def test_wall_decision_without_seeds_is_the_threshold() -> None:
    prob = np.random.default_rng(1).random((16, 16))
    np.testing.assert_array_equal(wall_decision(prob, 0.3), prob >= 0.3)
    with pytest.raises(ValueError, match="seed_threshold"):
        seeded_walls(prob, 0.0)


def test_seeded_walls_in_3d() -> None:
    prob = np.full((6, 10, 10), 0.05)
    prob[:, :, 5] = 0.9
    prob[2:4, 3:6, 5] = 0.3  # a hole in a wall plane
    closed = wall_decision(prob, 0.5, seed_threshold=0.2, min_seed_size=4)
    structure = ndimage.generate_binary_structure(3, 1)
    assert ndimage.label(~(prob >= 0.5), structure=structure)[1] == 1
    assert ndimage.label(~closed, structure=structure)[1] == 2


def logit_predictor(labels: dict[int, str], **infer: object):
    """A Predictor whose network returns its input: the image holds the logits."""
    from unetkit.config import Config, config_from_dict
    from unetkit.infer.predictor import Predictor

    config = config_from_dict({"model": {"out_channels": 1}, "infer": infer})
    assert isinstance(config, Config)
    return Predictor(lambda x: x.float(), config=config, labels=labels)


def test_predictor_threshold_and_walls() -> None:
    prob = two_cells_with_gap()
    logits = np.log(prob / (1 - prob)).astype(np.float32)[None]
    labels = {0: "background", 1: "membrane"}
    plain = logit_predictor(labels).predict(logits).labels
    np.testing.assert_array_equal(plain, prob > 0.5)
    low = logit_predictor(labels, threshold=0.25).predict(logits).labels
    np.testing.assert_array_equal(low, prob >= 0.25)
    walls = {"wall_seed_threshold": 0.2, "wall_min_seed": 4}
    closed = logit_predictor(labels, postprocess=walls).predict(logits).labels.astype(bool)
    assert cells(plain.astype(bool)) == 1 and cells(closed) == 2
    np.testing.assert_array_equal(closed, wall_decision(prob, 0.5, 0.2, 4))


def test_predictor_split_depth_from_the_config() -> None:
    prob = two_discs_joined_by_a_neck()
    logits = np.log(prob / (1 - prob)).astype(np.float32)[None]
    labels = {0: "background", 1: "membrane"}
    walls = {"wall_seed_threshold": 0.5, "wall_min_seed": 1}
    whole = logit_predictor(labels, postprocess=walls).predict(logits).labels.astype(bool)
    split = logit_predictor(labels, postprocess={**walls, "wall_split_depth": 5}
                            ).predict(logits).labels.astype(bool)
    assert cells(whole) == 1 and cells(split) == 2


def test_predictor_refuses_threshold_for_more_classes() -> None:
    with pytest.raises(ValueError, match="two-class"):
        logit_predictor({0: "a", 1: "b", 2: "c"}, threshold=0.3)
