"""Planning on sparse annotations: the ignore label is no class, and label shares are of the
labelled pixels."""

from __future__ import annotations

import pytest
from tests.train.sparse import write_sparse

from unetkit.plan.auto import run_config
from unetkit.plan.fingerprint import fingerprint_dataset


def test_the_fingerprint_and_the_plan_leave_the_ignore_label_out(tmp_path, fake_steps):
    fake_steps(lambda config: 0.01)
    root, dense, ignored = write_sparse(tmp_path / "d", n_cases=3, ignore=2)
    fp = fingerprint_dataset(root)
    assert fp.labels == {0: "background", 1: "disk"} and sorted(fp.label_fractions) == [0, 1]
    labelled = sum(int((~g).sum()) for g in ignored)
    foreground = sum(int((d[~g] == 1).sum()) for d, g in zip(dense, ignored, strict=True))
    assert fp.label_fractions[1] == pytest.approx(foreground / labelled)
    config, _ = run_config(root, None, {"train.time_budget": "60s"}, [])
    classes = 1 if config.train.loss.name in ("bce", "dice_bce", "cldice_bce") else 2
    assert config.model.out_channels == classes  # two classes: background and disk
    plain, *_ = write_sparse(tmp_path / "p", n_cases=3, ignore=9, nnunet=False)
    same = fingerprint_dataset(plain, ignore_label=9)
    assert same.label_fractions == pytest.approx(fp.label_fractions)
    config, _ = run_config(plain, None, {"train.time_budget": "60s"},
                           ["data.ignore_label=9"])
    assert config.model.out_channels == classes and config.data.ignore_label == 9
