"""What a new user meets first: --help, --version, `unetkit config`, --log-level, and the one line
that names the extra to install when an optional package is missing."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import typer
import yaml
from typer.testing import CliRunner

import unetkit
from unetkit.cli import app
from unetkit.config import Config, commented_yaml, config_to_dict, load_config

runner = CliRunner()
REPO = Path(__file__).resolve().parents[1]


def _commands() -> dict[str, object]:
    group = typer.main.get_command(app)
    return dict(group.commands)  # type: ignore[attr-defined]


def test_every_command_is_listed_and_described():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for name, command in _commands().items():
        assert name in result.output
        assert command.help, f"unetkit {name} has no description"


@pytest.mark.parametrize("name", sorted(_commands()))
def test_every_option_is_described_and_no_flag_shows_a_type(name):
    command = _commands()[name]
    for param in command.params:
        assert getattr(param, "help", None), f"unetkit {name}: {param.name} has no description"
    result = runner.invoke(app, [name, "--help"], terminal_width=200)
    assert result.exit_code == 0, result.output
    assert "<bool>" not in result.output
    for param in command.params:
        if getattr(param, "is_flag", False):
            assert param.opts[0] in result.output


def test_top_level_help_shows_no_bool():
    result = runner.invoke(app, ["--help"], terminal_width=200)
    assert "<bool>" not in result.output and "--version" in result.output


def test_train_help_explains_data_layouts_and_planning():
    text = " ".join(runner.invoke(app, ["train", "--help"], terminal_width=200).output.split())
    assert "imagesTr/ + labelsTr/" in text
    assert "Without --config the run is planned from the data" in text
    assert "2D or 3D" in text


def test_version():
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.output.strip() == f"unetkit {unetkit.__version__}"


def test_config_prints_commented_yaml_that_loads_back(tmp_path):
    result = runner.invoke(app, ["config"])
    assert result.exit_code == 0, result.output
    path = tmp_path / "printed.yaml"
    path.write_text(result.stdout)
    assert load_config(path) == Config()
    assert "# peak learning rate" in result.stdout  # descriptions become comments
    assert "# none | batch | instance | group: " in result.stdout  # allowed values too


def test_config_out_writes_a_file_and_never_replaces_one_silently(tmp_path):
    out = tmp_path / "sub" / "my.yaml"
    result = runner.invoke(app, ["config", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert load_config(out) == Config()
    again = runner.invoke(app, ["config", "--out", str(out)])
    assert again.exit_code == 2 and "exists" in again.output and "Traceback" not in again.output
    out.write_text("model: {}\n")
    assert runner.invoke(app, ["config", "--out", str(out), "--force"]).exit_code == 0
    assert out.read_text() == commented_yaml()


def test_every_config_field_has_a_description_comment():
    raw = yaml.safe_load(commented_yaml())
    assert raw == config_to_dict(Config())
    lines = commented_yaml().splitlines()
    for index, line in enumerate(lines):
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            previous = lines[index - 1].strip()
            assert previous.startswith("#"), f"no comment above {stripped!r}"


def test_configs_default_yaml_is_the_generated_one():
    # regenerate with: unetkit config --out configs/default.yaml --force
    assert (REPO / "configs" / "default.yaml").read_text() == commented_yaml()


def test_config_needs_no_repository(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no configs/ here: the text comes from the schema
    result = runner.invoke(app, ["config", "-o", "mine.yaml"])
    assert result.exit_code == 0, result.output
    assert load_config(tmp_path / "mine.yaml") == Config()


@pytest.mark.parametrize("command", [["train", "--data", "nowhere"],
                                     ["predict", "missing.pt", "in", "-o", "out"]])
def test_a_bad_log_level_is_one_line(command, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, [*command, "--log-level", "loud"])
    assert result.exit_code == 2
    assert "--log-level 'loud': expected one of debug, info, warning, error" in result.output
    assert "Traceback" not in result.output


def test_log_level_sets_the_console_level():
    import logging

    from unetkit.cli.app import log_to_console

    logger = logging.getLogger("unetkit")
    log_to_console(level="debug")
    handler = next(h for h in logger.handlers if getattr(h, "unetkit_console", False))
    assert handler.level == logging.DEBUG and logger.level == logging.DEBUG
    log_to_console(level="error")
    assert handler.level == logging.ERROR and logger.level == logging.INFO  # train.log: INFO
    log_to_console(verbose=False)
    assert handler.level == logging.WARNING


def _hide(monkeypatch, *modules: str) -> None:
    for name in modules:
        monkeypatch.setitem(sys.modules, name, None)  # `import name` raises ImportError


@pytest.mark.parametrize("missing", ["onnx", "onnxruntime"])
def test_onnx_export_without_the_extra_names_it(make_checkpoint, tmp_path, monkeypatch, missing):
    path = make_checkpoint()
    _hide(monkeypatch, missing)
    result = runner.invoke(app, ["export", str(path), "--out", str(tmp_path / "m.onnx")])
    assert result.exit_code == 2
    assert f"needs the {missing} package: pip install 'unetkit[onnx]'" in result.output
    assert "Traceback" not in result.output and not (tmp_path / "m.onnx").exists()


def test_onnx_prediction_without_onnxruntime_names_the_extra(tmp_path, monkeypatch):
    from unetkit.runtime.onnx import onnx_session

    model = tmp_path / "m.onnx"
    model.write_bytes(b"not really")
    _hide(monkeypatch, "onnxruntime")
    with pytest.raises(ImportError, match=r"pip install 'unetkit\[onnx\]'"):
        onnx_session(model)


def test_dicom_without_simpleitk_names_the_extra(tmp_path, monkeypatch):
    from unetkit.data.io import read_image

    path = tmp_path / "scan.nrrd"
    path.write_bytes(b"NRRD0004\n")
    _hide(monkeypatch, "SimpleITK")
    with pytest.raises(ImportError, match=r"pip install 'unetkit\[dicom\]'"):
        read_image(path)


def test_tensorboard_without_the_package_names_the_extra(tmp_path, monkeypatch):
    from unetkit.train.run_dir import TensorBoardLog

    _hide(monkeypatch, "torch.utils.tensorboard", "tensorboard")
    with pytest.raises(ValueError, match=r"pip install 'unetkit\[tensorboard\]'"):
        TensorBoardLog(tmp_path)
