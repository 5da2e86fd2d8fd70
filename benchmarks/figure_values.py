"""The value a figure marker names in a results file, and whether a printed figure is it
(``benchmarks/figures.py``). Expressions are parsed and walked, never executed."""

from __future__ import annotations

import ast
import json
import statistics
from collections.abc import Callable
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"


class FigureError(ValueError):
    """A marker that cannot be evaluated: unknown file or path, or an expression not allowed."""


def _flat(values: Any) -> list[float]:
    if isinstance(values, dict):
        values = list(values.values())
    if isinstance(values, list | tuple):
        return [x for v in values for x in _flat(v)]
    return [values]


FUNCTIONS: dict[str, Callable[..., float]] = {
    "mean": lambda *a: statistics.fmean(_flat(a)), "min": lambda *a: min(_flat(a)),
    "max": lambda *a: max(_flat(a)), "abs": abs}
OPERATORS: dict[type, Callable[[float, float], float]] = {
    ast.Add: lambda a, b: a + b, ast.Sub: lambda a, b: a - b,
    ast.Mult: lambda a, b: a * b, ast.Div: lambda a, b: a / b}


def load_results(name: str, results: Path = RESULTS) -> Any:
    """The parsed JSON of ``results/name`` (a name inside that folder, nothing else)."""
    path = results / name
    if "/" in name or "\\" in name or not path.is_file():
        raise FigureError(f"no results file {name} in {results}")
    return json.loads(path.read_text())


def _key(container: Any, key: Any, expr: str) -> Any:
    try:
        if isinstance(container, list):
            return container[int(key)]
        return container[str(key)]
    except (KeyError, IndexError, ValueError, TypeError):
        raise FigureError(f"{expr}: no {key!r} there") from None


def evaluate(expr: str, data: Any, results: Path = RESULTS) -> float:
    """The number ``expr`` names in ``data`` (one results file); parsed, never executed."""
    try:
        tree = ast.parse(expr.strip(), mode="eval")
    except SyntaxError:
        raise FigureError(f"{expr}: not an expression") from None

    def value(node: ast.AST) -> Any:
        if isinstance(node, ast.Constant) and isinstance(node.value, int | float | str):
            return node.value
        if isinstance(node, ast.Name):
            return _key(data, node.id, expr)
        if isinstance(node, ast.Attribute):
            return _key(value(node.value), node.attr, expr)
        if isinstance(node, ast.Subscript):
            return _key(value(node.value), value(node.slice), expr)
        if isinstance(node, ast.BinOp) and type(node.op) in OPERATORS:
            return OPERATORS[type(node.op)](value(node.left), value(node.right))
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
            number = value(node.operand)
            return -number if isinstance(node.op, ast.USub) else number
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and not node.keywords:
            args = [value(a) for a in node.args]
            if node.func.id == "load" and len(args) == 1:
                return load_results(str(args[0]), results)
            if node.func.id in FUNCTIONS:
                return FUNCTIONS[node.func.id](*args)
        raise FigureError(f"{expr}: {ast.unparse(node)} is not allowed in a figure marker")

    number = value(tree.body)
    if isinstance(number, bool) or not isinstance(number, int | float) or number != number:
        raise FigureError(f"{expr} is {number!r}, not a number")
    return float(number)


def matches(printed: str, number: float) -> bool:
    """Whether ``number`` rounds to ``printed`` (``0.829``, ``2,550``, ``1.0e-07``)."""
    text = printed.replace(",", "").lstrip("+")
    mantissa, _, exponent = text.lower().partition("e")
    decimals = len(mantissa.partition(".")[2])
    tolerance = 0.5 * 10.0 ** (int(exponent or 0) - decimals)
    return abs(float(text) - number) <= tolerance * (1 + 1e-9) + 1e-12
