"""A config as commented YAML: every field with its value and its description from the schema.

``unetkit config`` prints this; ``configs/default.yaml`` is its output for the defaults. The
text needs nothing but the pydantic schema (no file of the repository) and loads back with
``load_config`` to the same config.
"""

from __future__ import annotations

import re
import textwrap
import typing
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel

from unetkit.config.schema import Config

WIDTH = 100
HEADER = """\
unetkit configuration: every field with its value and what it does.
Use as a starting point: unetkit train --data DATA --config my.yaml. Typed options such as
--time 10m or --lr 3e-4, and --set section.field=value, override what is written here.
Invalid values stop with a message naming the field and the allowed values.
Written by `unetkit config` (the defaults) from the schema in unetkit.config.schema."""


def commented_yaml(config: Config | None = None, header: str = HEADER) -> str:
    """``config`` (default: the defaults) as YAML with a comment above every field."""
    config = config or Config()
    lines = [f"# {line}".rstrip() for line in header.splitlines()]
    _section(config, config.model_dump(mode="json"), "", lines)
    return "\n".join(lines) + "\n"


def write_commented_yaml(path: str | Path, config: Config | None = None,
                         overwrite: bool = False) -> Path:
    """Write ``commented_yaml(config)`` to ``path``.

    Raises:
        FileExistsError: ``path`` exists and ``overwrite`` is False.
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists: choose another file or pass --force to replace it")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(commented_yaml(config))
    return path


def field_comment(model: type[BaseModel], name: str) -> str:
    """The comment of one field: its allowed values (for a fixed set) and its description."""
    info = model.model_fields[name]
    choices = _choices(info.annotation)
    text = re.sub(r"\bNone\b", "null", info.description or "")  # as YAML spells it
    if choices:
        text = f"{' | '.join(choices)}: {text}" if text else " | ".join(choices)
    return text


def _section(model: BaseModel, values: dict[str, Any], indent: str, lines: list[str]) -> None:
    for name in type(model).model_fields:
        value = getattr(model, name)
        if isinstance(value, BaseModel):
            if not indent:
                lines.append("")
            doc = (type(value).__doc__ or "").strip().splitlines()
            lines += _comment(doc[0].replace("``", "`") if doc else "", indent)
            lines.append(f"{indent}{name}:")
            _section(value, values[name], indent + "  ", lines)
            continue
        lines += _comment(field_comment(type(model), name), indent)
        lines.append(f"{indent}{name}: {_flow(values[name])}")


def _comment(text: str, indent: str) -> list[str]:
    if not text:
        return []
    width = WIDTH - len(indent) - 2
    return [f"{indent}# {line}" for line in textwrap.wrap(text, width, break_long_words=False,
                                                          break_on_hyphens=False)]


def _flow(value: Any) -> str:
    """One value in YAML flow style on one line (``[256, 256]``, ``null``, ``1.0e-05``)."""
    text = yaml.safe_dump(value, default_flow_style=True, width=10**9, sort_keys=False).strip()
    return text[: -len("...")].strip() if text.endswith("\n...") else text


def _choices(annotation: Any) -> list[str]:
    """The values of a ``Literal`` field (also inside ``| None``); [] for other types."""
    origin = typing.get_origin(annotation)
    if origin is typing.Literal:
        return [str(v) for v in typing.get_args(annotation)]
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if len(args) == 1:
        return _choices(args[0])
    return []
