"""Every figure README.md and docs/*.md publish comes from a results file (``benchmarks/
figures.py``; the scheme is in docs/BENCHMARKS.md, "How a figure is published").

The first test checks the real pages against ``benchmarks/results/``; the others check the
checker on small pages and results files written here, and on a real page with one figure
changed."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

import figures  # noqa: E402


def test_every_published_figure_matches_its_results_file() -> None:
    problems = [p for path in figures.published_files()
                for p in figures.check_markdown(path.read_text(),
                                                path.relative_to(REPO).as_posix())]
    assert not problems, "\n".join(problems)


@pytest.fixture()
def results(tmp_path: Path) -> Path:
    (tmp_path / "run.json").write_text(json.dumps({
        "mean": {"dice": 0.82915, "v_rand": 0.91047}, "steps": 2550,
        "folds": [{"pooled": {"f1": 0.8176}}], "labels": {"1": 0.8867, "2": 0.8735},
        "parts": {"2d 1024": {"rows": [{"seconds": 4.0855}]}}, "missing": None}))
    (tmp_path / "other.json").write_text(json.dumps({"mean": {"dice": 0.8289}}))
    return tmp_path


def check(text: str, results: Path) -> list[str]:
    return figures.check_markdown(text, "page.md", results)


def test_marked_figures_rounded_as_printed_pass(results: Path) -> None:
    text = ("Dice **0.829**, V_rand 0.910 (2,550 steps) "
            "<!-- from run.json: mean.dice; mean.v_rand; steps -->; mean of the labels 0.880 "
            '(0.887 / 0.873) <!-- from run.json: mean(labels); labels["1"]; labels["2"] -->; '
            'F1 0.8176 <!-- from run.json: folds[0].pooled.f1 -->, 4.09 s '
            '<!-- from run.json: parts["2d 1024"].rows[0].seconds -->, a gap of 0.0003 '
            '<!-- from run.json: mean.dice - load("other.json").mean.dice -->.\n')
    assert check(text, results) == []


def test_a_figure_that_differs_from_its_file_fails(results: Path) -> None:
    text = "Dice **0.831**, V_rand 0.910 <!-- from run.json: mean.dice; mean.v_rand -->\n"
    assert check(text, results) == [
        "page.md:1: printed 0.831, but run.json mean.dice = 0.82915"]
    # one more decimal printed than the file rounds to: 0.8292 is not 0.82915
    assert check("Dice 0.8290 <!-- from run.json: mean.dice -->\n", results) == [
        "page.md:1: printed 0.8290, but run.json mean.dice = 0.82915"]


def test_a_changed_figure_on_a_real_page_fails() -> None:
    page = REPO / "docs" / "BENCHMARKS.md"
    text = page.read_text()
    marked = "| 15-19 | `configs/isbi2012.yaml` (base 8), AVX2 EPYC, 1 Dec | 650 | 0.63 | 0.829 |"
    assert marked in text
    changed = text.replace(marked, marked.replace("0.829", "0.839"))
    problems = figures.check_markdown(changed, "docs/BENCHMARKS.md")
    assert len(problems) == 1
    assert "printed 0.839, but isbi2012_s8_config.json mean.dice = 0.829159" in problems[0]


def test_edits_inside_a_generated_section_fail() -> None:
    text = (REPO / "docs" / "BENCHMARKS.md").read_text()
    row = "| 1024^2 | torch fp32 NCHW | 7.15 |"
    changed = text.replace(row, row.replace("7.15", "7.05"))
    assert changed != text
    (problem,) = figures.check_markdown(changed, "docs/BENCHMARKS.md")
    assert "section 'infer' is written by benchmarks/infer_report.py from infer.json" in problem
    assert row in problem


@pytest.mark.parametrize("text", [
    "| run | steps | Dice |\n|---|---|---|\n| plan | 2550 | 0.83 |\n",
    "The held-out mean rose to 0.8795 in that run.\n",
    "onnxruntime ran 1.43x faster.\n",
    "a step took 0.24 s on this machine.\n",
])
def test_unmarked_figures_fail(text: str, results: Path) -> None:
    problems = check(text, results)
    assert problems and all("has no results marker" in p for p in problems)


def test_unmarked_numbers_that_are_not_measurements_pass(results: Path) -> None:
    text = ("Slices 15-19 held out, 8x128² patches, base 8, 1 Dec, F0.8, threshold `0.63`.\n\n"
            "| option | default | meaning |\n|---|---|---|\n| `dropout` | 0.0 | none |\n\n"
            "```\nDice 0.8795 in a code block\n```\n\n"
            "Example output: `decision: threshold 0.51 (mean F1\n0.8312 on 16 images)`.\n")
    assert check(text, results) == []


def test_a_code_span_ends_at_its_paragraph(results: Path) -> None:
    """An unclosed backtick does not hide the figures of the next paragraph."""
    assert check("A stray ` backtick.\n\nDice 0.8795 in that run.\n", results) == [
        "page.md:3: figure 0.8795 has no results marker"]


def test_a_marker_covers_only_the_numbers_just_before_it(results: Path) -> None:
    text = "Dice 0.8795 and V_rand 0.910 <!-- from run.json: mean.v_rand -->\n"
    assert check(text, results) == ["page.md:1: figure 0.8795 has no results marker"]
    skipped = ("| run | Dice |\n|---|---|\n"
               "| a | 0.829 (1 Dec) <!-- from run.json: mean.dice; _ --> |\n")
    assert check(skipped, results) == []


def test_quoted_figures_must_say_so(results: Path) -> None:
    assert check("Peers, quoted from issue 7: Dice 0.80-0.81 <!-- quoted: issue 7 -->\n",
                 results) == []
    (problem,) = check("Peers: Dice 0.805 <!-- quoted: issue 7 -->\n", results)
    assert "quoted figures must say so" in problem


@pytest.mark.parametrize(("marker", "message"), [
    ("<!-- from nowhere.json: mean.dice -->", "no results file nowhere.json"),
    ("<!-- from ../run.json: mean.dice -->", "no results file ../run.json"),
    ("<!-- from run.json: mean.iou -->", "mean.iou: no 'iou' there"),
    ("<!-- from run.json: missing -->", "missing is None, not a number"),
    ("<!-- from run.json: __import__('os').getcwd() -->", "is not allowed in a figure marker"),
    ("<!-- from run.json: mean.dice; steps -->", "2 expressions but only 1 numbers"),
    ("<!-- from run.json: mean + 1 -->", "mean + 1: unsupported operand"),
    ("<!-- from run.json: steps / 0 -->", "steps / 0: division by zero"),
    ("<!-- from run.json -->", "write <!-- from NAME.json: EXPR; EXPR -->"),
])
def test_bad_markers_are_named(marker: str, message: str, results: Path) -> None:
    problems = check(f"Dice 0.829 {marker}\n", results)
    assert any(message in p for p in problems), problems


def test_rounding_accepts_either_side_of_a_half() -> None:
    assert figures.matches("0.829", 0.8285) and figures.matches("0.828", 0.8285)
    assert not figures.matches("0.830", 0.8285)
    assert figures.matches("2,550", 2550.0) and figures.matches("-0.0004", -0.00041)
    assert figures.matches("7e-8", 6.7e-8) and not figures.matches("5e-8", 6.7e-8)


def test_the_command_line_reports_problems_and_exit_status(tmp_path: Path, capsys) -> None:
    assert figures.main([str(REPO / "README.md")]) == 0
    assert "every figure has its results file" in capsys.readouterr().out
