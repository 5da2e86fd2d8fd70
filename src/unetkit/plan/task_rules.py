"""Rules that depend on what is segmented: loss and decision, thin structures and walls,
augmentation, sampling, validation split. Pure functions of the fingerprint, as ``rules``.
"""

from __future__ import annotations

from unetkit.plan.fingerprint import Fingerprint
from unetkit.plan.rules import Decision

THIN = 6.0  # foreground at most this many voxels wide: thin structures (membranes, vessels)
WALL_WIDTH = 10.0  # walls are at most this wide (ISBI 2012 membranes: 6 pixels)
WALLS = 0.5  # a foreground that encloses this share of the background: walls (membranes)
OFFSET = 0.25  # median mask offset (voxels) worth correcting
SMALL_DATASET = 40  # fewer cases: train on all of them, calibrate on the training cases
VALIDATION_CASES = 16
# Share of each training mask's rows held out to calibrate thin two-class structures on when no
# case validates (train.splits.hold_out_bands): chosen on principle, the threshold is calibrated
# on labels the network never learned. On DRIVE its effect (a small gain on one fold, a smaller
# loss on another; the probes were not saved) is within run-to-run noise (docs/planner.md).
CALIBRATION_BAND = 0.1
FEW_PASSES = 100  # planned passes over the training data below which augmentation is light
LIGHT_AFFINE = 0.15  # rotation/scaling probability of light augmentation


def is_walls(fp: Fingerprint) -> bool:
    """Narrow two-class foreground that walls off most of the background (cell membranes)."""
    return (len(fp.label_fractions) == 2 and fp.foreground_width <= WALL_WIDTH
            and fp.enclosed_fraction >= WALLS)


def is_thin(fp: Fingerprint) -> bool:
    """Thin foreground structures (vessels, fibres), and walls of any width up to
    ``WALL_WIDTH`` (membranes: ISBI 2012's are 6.0 pixels wide)."""
    return 0 < fp.foreground_width <= THIN or is_walls(fp)


def loss_and_decision(fp: Fingerprint) -> list[Decision]:
    """Two classes: sigmoid output with Dice + BCE and a decision threshold calibrated on
    images at the end of training (short runs are poorly calibrated, differently from run to
    run: docs/isbi2012.md). Walls: F0.8 (thinner walls keep cells apart, for V_rand) and
    seeded-watershed gap closing. More classes: softmax with Dice + cross-entropy and the
    arg-max (nnU-Net). Thin structures that are not walls (vessels) train on BCE alone: the
    Dice term pushes probabilities to 0 or 1, where the threshold-free ranking of faint vessels
    needs them graded; on DRIVE the measured difference is within run-to-run noise (single
    runs, not kept: docs/planner.md). Overlapping regions (dataset.json): one sigmoid output
    per region with BCE + Dice per region, each decided at probability 0.5 (nnU-Net)."""
    if fp.regions:
        names = ", ".join(region["name"] for region in fp.regions)
        return [Decision("data.regions", fp.regions, f"dataset.json declares regions: {names}"),
                Decision("data.regions_class_order", fp.regions_class_order, "dataset.json: "
                         "the label painted for each region, in this order"),
                Decision("train.loss.name", "dice_ce", f"{len(fp.regions)} overlapping "
                         "regions: a sigmoid per region, BCE + Dice per region")]
    if len(fp.label_fractions) != 2:
        return [Decision("train.loss.name", "dice_ce",
                         f"{len(fp.label_fractions)} labels: softmax, Dice + cross-entropy")]
    if is_thin(fp) and not is_walls(fp):
        loss = Decision("train.loss.name", "bce", f"two labels, thin structures "
                        f"({fp.foreground_width:.1f} voxels wide): sigmoid, BCE alone (its "
                        "gain over Dice + BCE is within run-to-run noise: docs/planner.md)")
    else:
        loss = Decision("train.loss.name", "dice_bce", "two labels: sigmoid, Dice + BCE")
    out = [loss,
           Decision("infer.threshold", "auto", "two labels: the decision threshold is "
                    "calibrated at the end of training (short runs are poorly calibrated)")]
    if is_walls(fp):
        why = (f"thin foreground ({fp.foreground_width:.1f} voxels wide) enclosing "
               f"{100 * fp.enclosed_fraction:.0f}% of the background: walls between regions")
        out += [Decision("infer.calibration_beta", 0.8, why + "; F0.8 keeps walls thin"),
                Decision("infer.postprocess.wall_seed_threshold", 0.3, why + ": close gaps "
                         "between regions by a seeded watershed"),
                Decision("infer.postprocess.wall_min_seed", 32, why),
                Decision("infer.postprocess.wall_split_depth", 14.0, why)]
    return out


def augmentation(fp: Fingerprint, dims: int, anisotropic: bool) -> list[Decision]:
    """Mirror every axis (and test-time mirror them, ``infer.tta_axes``); rot90 in planes of
    equal patch size (the augmenter's own rule); no random rotation of anisotropic volumes
    (it would mix thick and thin axes); label edges interpolated linearly for thin structures
    (nearest snaps a 2-voxel membrane by up to half a voxel)."""
    out = [Decision("data.augment.flip_prob", 0.5, "structures have no preferred side"),
           Decision("infer.tta_axes", list(range(dims)), "mirror test-time augmentation over "
                    "every axis training mirrors")]
    if anisotropic:
        out.append(Decision("data.augment.affine_prob", 0.0, "anisotropic volumes: no "
                            "rotation across the thick axis"))
    if is_thin(fp):
        out.append(Decision("data.augment.mask_interpolation", "linear",
                            f"thin structures ({fp.foreground_width:.1f} voxels wide)"))
    return out


def image_offset(fp: Fingerprint) -> list[Decision]:
    """Masks drawn a fraction of a voxel off their structures (ISBI 2012: 0.64 px up): images
    are aligned to them, so mirroring keeps both aligned (``unetkit.data.offset``)."""
    if fp.offset is None or max(abs(v) for v in fp.offset) < OFFSET:
        return []
    return [Decision("data.image_offset", "auto", f"masks lie {fp.offset} voxels off the "
                     "images in every measured case: images are aligned to the masks")]


def sampling_and_split(fp: Fingerprint) -> list[Decision]:
    """Foreground oversampling for rare foreground (nnU-Net's 33%), none when the foreground
    is everywhere (walls); a validation split only when there are enough cases to spare."""
    foreground = 1.0 - fp.label_fractions.get(0, 1.0)
    share = 0.0 if foreground >= 0.15 else 0.33
    out = [Decision("data.foreground_fraction", share,
                    f"foreground is {100 * foreground:.1f}% of the voxels")]
    if fp.cases < SMALL_DATASET:
        out += [Decision("data.val_fraction", 0.0, f"{fp.cases} cases: every case trains; "
                         "the last weights are kept"),
                Decision("infer.calibration_images", fp.cases, "calibrate on every case")]
        if len(fp.label_fractions) == 2 and is_thin(fp) and not is_walls(fp):
            out += [Decision("data.calibration_band", CALIBRATION_BAND, "no validation cases: "
                             f"the threshold is calibrated on a band of {CALIBRATION_BAND:.0%} "
                             "of each training mask's rows held out of training (BCE is "
                             "over-confident on the pixels it learned; its measured effect "
                             "is within run-to-run noise: docs/planner.md)")]
    else:
        fraction = round(min(VALIDATION_CASES / fp.cases, 0.2), 3)
        out += [Decision("data.val_fraction", fraction, f"{fp.cases} cases: about "
                         f"{min(VALIDATION_CASES, round(0.2 * fp.cases))} validate"),
                Decision("infer.postprocess.keep_largest", "auto", "kept when the largest "
                         "component per class raises the validation Dice (nnU-Net)")]
    return out


def augmentation_for_passes(fp: Fingerprint, passes: float, affine_prob: float
                            ) -> list[Decision]:
    """Light augmentation when the budget sees each training voxel only a few times.

    ``passes``: planned steps x voxels per step / training voxels. Heavy augmentation
    (elastic deformation, noise, blur, low resolution) regularises long runs (nnU-Net's are
    thousands of passes) but slows the learning of short ones. Hippocampus (15 min, ~20
    passes): held-out mean Dice 0.880 in two runs with light augmentation against 0.874 in one
    with the heavy set, which also made fewer steps (results/peers_hip_s8, _s9, _25d). Walls
    keep the heavy set, as the U-Net paper found elastic deformation essential for membranes;
    the DRIVE and ISBI 2012 comparisons were not kept (docs/planner.md).
    ``affine_prob``: the planned probability, only ever lowered."""
    if passes >= FEW_PASSES or is_walls(fp):
        return []
    why = (f"{int(passes)} passes over the training data in the budget (< {FEW_PASSES}): "
           "light augmentation learns faster")
    out = [Decision(f"data.augment.{name}_prob", 0.0, why)
           for name in ("elastic", "noise", "blur", "lowres")]
    return out + [Decision("data.augment.affine_prob", min(affine_prob, LIGHT_AFFINE), why)]
