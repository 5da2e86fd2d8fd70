"""Training never trips over its own data or outputs: labels from every case, optional curves."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import yaml
from PIL import Image

from unetkit.train.data import DataError, prepare_data
from unetkit.train.fit import fit


@pytest.fixture
def third_label_in_validation(tmp_path, disks):
    """Disks with masks 0/1; only ``c3`` (the validation case) also holds label 2."""
    root = disks(tmp_path / "data", n_cases=4, stored=1)
    mask = np.array(Image.open(root / "masks" / "c3.png"))
    mask[:4, :4] = 2
    Image.fromarray(mask).save(root / "masks" / "c3.png")
    split = tmp_path / "split.yaml"
    split.write_text(yaml.safe_dump({"train": ["c0", "c1", "c2"], "val": ["c3"]}))
    return root, split


def test_a_label_only_in_validation_cases_is_a_class(tmp_path, tiny_config,
                                                     third_label_in_validation) -> None:
    root, split = third_label_in_validation
    config = tiny_config(f"data.split_file={split}", "train.epochs=1")
    data = prepare_data(config, root)
    assert data.val_ids == ["c3"]
    assert data.labels == {0: "background", 1: "class1", 2: "class2"}
    result = fit(config, root, tmp_path / "run", data=data)  # validation sees label 2
    assert result.epochs == 1 and "dice_class2" in result.history[0]


@pytest.mark.parametrize("check", [True, False])
def test_a_value_outside_the_declared_labels_names_the_file(tiny_config, check,
                                                            third_label_in_validation) -> None:
    root, split = third_label_in_validation
    config = tiny_config(f"data.split_file={split}", "data.labels={0: background, 1: disk}")
    with pytest.raises(DataError) as info:
        prepare_data(config, root, check=check)
    message = str(info.value)
    assert f"{root / 'masks' / 'c3.png'}: mask values [2] are not among" in message


def test_a_failing_plot_only_warns_and_training_finishes(tmp_path, disks_dir, tiny_config,
                                                        monkeypatch, caplog) -> None:
    def broken(rows, path, note=None):
        raise RuntimeError("no fonts on this machine")

    monkeypatch.setattr("unetkit.train.curves.plot_training_curves", broken)
    with caplog.at_level(logging.WARNING, logger="unetkit"):
        result = fit(tiny_config("train.epochs=2"), disks_dir, tmp_path / "run")
    assert result.epochs == 2 and result.stopped == "completed"
    assert (tmp_path / "run" / "last.pt").is_file()
    assert not (tmp_path / "run" / "progress.png").exists()
    assert "progress.png not drawn: RuntimeError: no fonts on this machine" in caplog.text
