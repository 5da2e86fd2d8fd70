"""CliRunner test of `unetkit demo` in its reduced variant (tiny data, a few steps)."""

from __future__ import annotations

import json

import torch
from typer.testing import CliRunner

from unetkit.cli import app


def test_demo_quick_writes_everything_and_prints_summary(tmp_path):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        out = tmp_path / "demo"
        result = CliRunner().invoke(app, ["demo", "--out", str(out), "--quick"])
    finally:
        torch.set_num_threads(threads)
    assert result.exit_code == 0, result.output
    assert "mean foreground Dice" in result.output
    assert f"output folder: {out.resolve()}" in result.output.replace("\n", "")
    summary = json.loads((out / "summary.json").read_text())
    assert summary["held_out_cases"] == 2
    assert 0.0 <= summary["mean_foreground_dice"] <= 1.0
    assert summary["steps"] == 6  # 2 epochs x 3 steps
    for name in ("overlays.png", "curves.png", "run/best.pt", "run/metrics.csv",
                 "evaluation/summary.json", "evaluation/report.html"):
        assert (out / name).is_file(), name
    assert len(list((out / "predictions").glob("*.png"))) == 2
    evaluation = json.loads((out / "evaluation" / "summary.json").read_text())
    assert evaluation  # written by unetkit.evaluate
