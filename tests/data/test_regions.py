"""Regions declared in dataset.json and in the config: what is read, what is refused (one line
naming the file or the field), and what `unetkit check` lists."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from unetkit.cli import app
from unetkit.config import Config, ConfigError, apply_overrides
from unetkit.config.regions import Region
from unetkit.data.dataset import DatasetError, read_dataset_json
from unetkit.data.doctor import check_dataset
from unetkit.data.regions import read_regions, region_label_names
from unetkit.data.synthetic_regions import write_nested_dataset


def write_json(root, labels, order=None, **extra) -> None:
    root.mkdir(parents=True, exist_ok=True)
    meta = {"labels": labels, **({"regions_class_order": order} if order is not None else {}),
            **extra}
    (root / "dataset.json").write_text(json.dumps(meta))


def test_brats_style_regions_are_read_in_the_files_order(tmp_path) -> None:
    write_json(tmp_path, {"background": 0, "whole_tumor": [1, 2, 3], "tumor_core": [2, 3],
                          "enhancing_tumor": 3}, [1, 2, 3])
    declared = read_regions(tmp_path)
    assert declared.regions == [Region(name="whole_tumor", labels=[1, 2, 3]),
                                Region(name="tumor_core", labels=[2, 3]),
                                Region(name="enhancing_tumor", labels=[3])]
    assert declared.order == [1, 2, 3] and declared.labels == [0, 1, 2, 3]
    # every label value is a label (the masks hold 1 and 2 although only 3 stands alone),
    # named after the region that paints it
    labels, _ = read_dataset_json(tmp_path)
    assert region_label_names(labels, declared) == {
        0: "background", 1: "whole_tumor", 2: "tumor_core", 3: "enhancing_tumor"}


def test_kits_style_order_and_the_ignore_entry(tmp_path) -> None:
    # KiTS23 in nnU-Net: masses painted before the tumour inside them; "ignore" is no region
    write_json(tmp_path, {"background": 0, "kidney": [1, 2, 3], "masses": [2, 3], "tumor": 2,
                          "ignore": 4}, [1, 3, 2])
    declared = read_regions(tmp_path)
    assert [r.name for r in declared.regions] == ["kidney", "masses", "tumor"]
    assert declared.order == [1, 3, 2]


@pytest.mark.parametrize("labels", [{"background": 0, "a": 1, "b": 2},  # labels only
                                    {"background": 0, "a": [1], "b": 2},  # one-label lists
                                    {"0": "background", "1": "a"}])  # nnU-Net v1
def test_label_data_sets_declare_no_regions(tmp_path, labels) -> None:
    write_json(tmp_path, labels, [1, 2])
    assert read_regions(tmp_path) is None
    assert read_regions(tmp_path / "nowhere") is None


@pytest.mark.parametrize("labels,order,problem", [
    ({"background": 0, "whole": [1, 2], "core": [2, 4]}, [1, 2],
     "region 'core' holds label 4, which is not among the labels [0, 1, 2]"),
    ({"background": 0, "whole": [1, 2, 3], "core": [2, 3], "enh": 3}, [1, 2],
     "regions_class_order has 2 entries for 3 regions"),
    ({"background": 0, "whole": [1, 2], "core": [2]}, None, "regions_class_order is missing"),
    ({"background": 0, "whole": [1, 2], "core": [2]}, [1, 5],
     "needs the labels 0..K-1 (nnU-Net's rule); these are [0, 1, 2, 5]"),
    ({"background": 0, "whole": [1, 3], "core": [3]}, [1, 3], "needs the labels 0..K-1"),
    ({"background": 0, "whole": [1, "two"]}, [1], "label 'whole' is [1, 'two']"),
])
def test_bad_region_declarations_are_one_line_naming_dataset_json(tmp_path, labels, order,
                                                                   problem) -> None:
    write_json(tmp_path, labels, order)
    with pytest.raises(DatasetError) as error:
        read_regions(tmp_path)
    message = str(error.value)
    assert message.startswith(str(tmp_path / "dataset.json") + ": ")
    assert problem in message and "\n" not in message


def test_the_config_takes_regions_in_short_forms_and_checks_them() -> None:
    order = "data.regions_class_order=[1, 2, 3]"
    lists = apply_overrides(Config(), ["data.regions=[[1, 2, 3], [2, 3], [3]]", order])
    named = apply_overrides(Config(), ["data.regions={whole: [1, 2, 3], core: [2, 3], "
                                              "enh: 3}", order])
    assert [r.name for r in lists.data.regions] == ["region1", "region2", "region3"]
    assert [r.labels for r in named.data.regions] == [[1, 2, 3], [2, 3], [3]]
    assert [r.name for r in named.data.regions] == ["whole", "core", "enh"]
    with pytest.raises(ConfigError, match="regions_class_order has 1 entries for 3 regions"):
        apply_overrides(Config(), ["data.regions=[[1, 2, 3], [2, 3], [3]]",
                                          "data.regions_class_order=[1]"])
    with pytest.raises(ConfigError, match="regions_class_order is missing"):
        apply_overrides(Config(), ["data.regions=[[1, 2]]"])
    with pytest.raises(ConfigError, match="region 'region2' holds label 3, which is not among"):
        apply_overrides(Config(), ["data.labels={0: bg, 1: a, 2: b}",
                                          "data.regions=[[1, 2], [3]]",
                                          "data.regions_class_order=[1, 2]"])


def test_check_lists_the_regions_and_refuses_a_bad_declaration(tmp_path) -> None:
    root = write_nested_dataset(tmp_path / "nested", 2, (12, 12))
    rows = dict(check_dataset(root).summary_rows())
    assert rows["region tumor_core"] == "labels 2, 3; predictions paint label 2 (in this order)"
    done = CliRunner().invoke(app, ["check", str(root)])
    assert done.exit_code == 0, done.output  # masks holding 1 and 2 are no error
    assert "region whole_tumor" in done.output and "region enhancing_tumor" in done.output
    write_json(root, {"background": 0, "whole": [1, 2, 3], "core": [2, 3]}, [1, 2, 3])
    done = CliRunner().invoke(app, ["check", str(root)], env={"COLUMNS": "300"})
    assert done.exit_code == 1
    assert (f"{root / 'dataset.json'}: regions_class_order has 3 entries for 2 regions"
            in done.output)
