"""Every published figure from a results file: the check behind ``tests/test_docs_figures.py``.

    python benchmarks/figures.py [FILE.md ...]    # README.md and docs/*.md by default

prints one line per problem (``FILE:LINE: what``) and exits 1 when there is one. The scheme
(docs/BENCHMARKS.md, "How a figure is published"):

* ``<!-- from NAME.json: EXPR; EXPR -->`` after figures: the k expressions, read in
  ``benchmarks/results/NAME.json``, give the k numbers printed just before the marker (in the
  same table row, or the same paragraph since the previous marker), rounded as printed.
  An expression is a path (``mean.dice``, ``folds[0].pooled.f1``, ``parts["2d 1024"].rows[1]``)
  or arithmetic on paths (``+ - * /``, ``mean(...)``, ``min``, ``max``, ``abs``,
  ``load("OTHER.json")`` for another file); ``_`` skips a number that is not a figure (a date).
* ``<!-- quoted: SOURCE -->`` after figures measured elsewhere; the visible text of the row or
  paragraph must say so ("quoted", "published" or "reported").
* Sections a benchmark writes (``GENERATED``) must equal what it writes from its results file.
* A figure without a marker fails: every number in a results table (a header naming a metric,
  speed or step count) that has a decimal point or stands in a step/time/memory column, outside
  the first column; and, anywhere else, numbers with three or more decimals, speed ratios
  (``1.43x``) and decimal seconds (``0.24 s``). Code spans and blocks are not checked.
"""

from __future__ import annotations

import re
import statistics
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from figure_values import RESULTS, FigureError, evaluate, load_results, matches  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
MARKER = re.compile(r"<!--\s*(from|quoted)\b(.*?)-->", re.S)
COMMENT = re.compile(r"<!--.*?-->", re.S)
FENCE = re.compile(r"^(```|~~~).*?^\1[^\n]*$", re.S | re.M)
CODE_SPAN = re.compile(r"`(?:[^`\n]|\n(?![ \t]*\n))*`")  # may wrap, not past a paragraph
NUMBER = re.compile(r"(?<![\w.])[-+]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:e[-+]?\d+)?(?!\d)")
FIGURE_UNIT = re.compile(r"x\b| ?s\b| ?ms\b")  # after a decimal: a ratio or seconds
RESULT_HEADER = re.compile(r"\b(dice|f1|auc|iou|v_rand|pixel error|hd95|steps|iterations|seconds|"
                           r"speed(-up)?|peak|rss|threshold|anterior|posterior|mean|accuracy|"
                           r"score)\b|s/step|\(s\)|images/s|samples/s|/min|ms per", re.I)
MEASURED_COLUMN = re.compile(r"steps|iterations|seconds|\(s\)|\bms\b|\(mb\)|peak|/min|/s\b",
                             re.I)
QUOTED_WORDS = re.compile(r"\bquot(ed|es|ing)\b|\bpublish|\breport", re.I)
# docs file -> section name -> (benchmark module, results file): sections a benchmark rewrites.
GENERATED = {"docs/BENCHMARKS.md": {"metrics": ("bench_metrics", "metrics.json"),
                                    "augment": ("bench_augment", "augment.json"),
                                    "infer": ("infer_report", "infer.json")}}


def _blank(text: str, pattern: re.Pattern[str], keep: Callable[[str], bool] = lambda s: False
           ) -> str:
    """``text`` with the matches of ``pattern`` blanked out (line breaks kept)."""
    return pattern.sub(lambda m: m.group(0) if keep(m.group(0)) else
                       re.sub(r"[^\n]", " ", m.group(0)), text)


def _blocks(text: str) -> list[tuple[int, int]]:
    """(start, end) of every paragraph; each table row is a block of its own."""
    blocks, start, offset = [], None, 0
    for line in text.splitlines(keepends=True):
        stripped = line.strip()
        if stripped.startswith("|") or not stripped:
            if start is not None:
                blocks.append((start, offset))
                start = None
            if stripped:
                blocks.append((offset, offset + len(line)))
        elif start is None:
            start = offset
        offset += len(line)
    return blocks + ([(start, offset)] if start is not None else [])


def _table_columns(text: str) -> dict[int, tuple[int, str]]:
    """The data rows of results tables: ``row start offset -> (row start, header row)``."""
    rows: dict[int, tuple[int, str]] = {}
    header, offset = None, 0
    for line in text.splitlines(keepends=True):
        if not line.lstrip().startswith("|"):
            header = None
        elif header is None:
            header = line
        elif not re.fullmatch(r"[\s|:-]+", line) and RESULT_HEADER.search(header):
            rows[offset] = (offset, header)
        offset += len(line)
    return rows


def _is_figure(token: str, after: str, row: tuple[int, str] | None, column: int) -> bool:
    """Whether an unmarked number reads as a measured figure (see the module docstring)."""
    if re.search(r"\.\d{3,}$", token) or ("." in token and FIGURE_UNIT.match(after)):
        return True
    if row is None or column < 1:
        return False
    names = [h.strip() for h in row[1].strip().strip("|").split("|")]
    name = names[column] if column < len(names) else ""
    return "." in token or MEASURED_COLUMN.search(name) is not None


def check_markdown(text: str, name: str, results: Path = RESULTS) -> list[str]:
    """Every problem with the figures of one markdown text, as ``name:line: message``."""
    problems: list[str] = []
    text = _blank(_check_generated(text, name, results, problems), FENCE)
    visible = _blank(_blank(text, CODE_SPAN), COMMENT, keep=lambda s: MARKER.match(s) is not None)
    tables = _table_columns(visible)
    for start, end in _blocks(visible):
        for offset, message in _check_block(visible[start:end], tables.get(start), results):
            problems.append(f"{name}:{visible.count(chr(10), 0, start + offset) + 1}: {message}")
    return problems


def _check_block(block: str, row: tuple[int, str] | None, results: Path
                 ) -> list[tuple[int, str]]:
    """``(offset, message)`` for each problem of one paragraph or table row: each marker
    checks the numbers since the previous one; what no marker covers must not read as a
    measurement."""
    problems: list[tuple[int, str]] = []
    markers = list(MARKER.finditer(block))
    numbers = list(NUMBER.finditer(_blank(block, MARKER)))
    pending: list[re.Match[str]] = []
    unmarked: list[re.Match[str]] = []
    for match in sorted(numbers + markers, key=lambda m: m.start()):
        if match.re is NUMBER:
            pending.append(match)
            continue
        if match.group(1) == "quoted":
            if not QUOTED_WORDS.search(_blank(block, MARKER)):
                problems.append((match.start(), "quoted figures must say so in the text "
                                 "('quoted', 'published' or 'reported')"))
        else:
            expressions = _expressions(match.group(2))
            problems += [(match.start(), p) for p in
                         _check_marker(match.group(2), pending, results)]
            count = len(expressions) if len(expressions) <= len(pending) else 0
            unmarked += pending[:len(pending) - count]
            unmarked += [m for m, e in zip(pending[len(pending) - count:], expressions[:count],
                                           strict=True) if e == "_"]
        pending = []
    for match in unmarked + pending:
        after = block[match.end():match.end() + 8]
        if _is_figure(match.group(0), after, row, block[:match.start()].count("|") - 1):
            problems.append((match.start(), f"figure {match.group(0)} has no results marker"))
    return sorted(problems, key=lambda p: p[0])


def _expressions(body: str) -> list[str]:
    return [e.strip() for e in body.partition(":")[2].split(";") if e.strip()]


def _check_marker(body: str, numbers: list[re.Match[str]], results: Path) -> list[str]:
    """Problems of one ``from`` marker whose expressions give the last ``numbers``."""
    file_name, colon, _ = body.partition(":")
    expressions = _expressions(body)
    if not colon or not expressions:
        return ["write <!-- from NAME.json: EXPR; EXPR -->"]
    if len(expressions) > len(numbers):
        return [f"{len(expressions)} expressions but only {len(numbers)} numbers before the "
                "marker"]
    problems = []
    try:
        data = load_results(file_name.strip(), results)
    except FigureError as error:
        return [str(error)]
    for expr, number in zip(expressions, numbers[-len(expressions):], strict=True):
        if expr == "_":
            continue
        try:
            value = evaluate(expr, data, results)
        except FigureError as error:
            problems.append(str(error))
            continue
        except (ArithmeticError, TypeError, statistics.StatisticsError) as error:
            problems.append(f"{expr}: {error}")
            continue
        if not matches(number.group(0), value):
            problems.append(f"printed {number.group(0)}, but {file_name.strip()} {expr} = "
                            f"{value:.6g}")
    return problems


def _check_generated(text: str, name: str, results: Path, problems: list[str]) -> str:
    """Compare each generated section with its generator's output; return ``text`` with the
    sections blanked (they are checked as a whole)."""
    for section, (module, results_name) in GENERATED.get(name, {}).items():
        pattern = re.compile(rf"<!-- section: {section} -->.*?(?=<!-- section: |\Z)", re.S)
        found = pattern.search(text)
        if found is None:
            continue
        try:
            expected = regenerate(module, load_results(results_name, results), found.group(0))
        except FigureError as error:
            problems.append(f"{name}: section '{section}': {error}")
            continue
        for number, (have, want) in enumerate(zip(found.group(0).splitlines(),
                                                  expected.splitlines(), strict=False)):
            if have != want:
                line = text.count("\n", 0, found.start()) + number + 1
                problems.append(f"{name}:{line}: section '{section}' is written by benchmarks/"
                                f"{module}.py from {results_name}; it writes: {want}")
                break
        else:
            if len(found.group(0).splitlines()) != len(expected.splitlines()):
                problems.append(f"{name}: section '{section}' has other lines than benchmarks/"
                                f"{module}.py writes from {results_name}")
        text = text[:found.start()] + re.sub(r"[^\n]", " ", found.group(0)) + text[found.end():]
    return text


def regenerate(module_name: str, results: Any, current: str) -> str:
    """The section text the benchmark module writes from ``results`` (its own write function,
    on a copy of the section; the command is the one the section names)."""
    import importlib
    import tempfile

    module = importlib.import_module(module_name)
    if hasattr(module, "section"):
        return "\n".join(module.section(results)) + "\n"
    command = re.search(r"Command: `([^`]*)`", current)
    saved = module.ROOT
    with tempfile.TemporaryDirectory() as folder:
        page = Path(folder) / "docs" / "BENCHMARKS.md"
        page.parent.mkdir()
        page.write_text(current)
        module.ROOT = Path(folder)
        try:
            module.write_docs(results, command.group(1) if command else "")
        finally:
            module.ROOT = saved
        return page.read_text()


def published_files(root: Path = ROOT) -> list[Path]:
    """README.md and docs/*.md: every page that publishes figures."""
    return [root / "README.md", *sorted((root / "docs").glob("*.md"))]


def main(argv: list[str] | None = None) -> int:
    paths = [Path(a) for a in (argv if argv is not None else sys.argv[1:])] or published_files()
    problems = []
    for path in paths:
        resolved = path.resolve()
        name = resolved.relative_to(ROOT).as_posix() if resolved.is_relative_to(ROOT) else str(path)
        problems += check_markdown(path.read_text(), name)
    print("\n".join(problems) or f"{len(paths)} files: every figure has its results file")
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
