"""Configs <-> YAML and plain dicts, ``section.field=value`` overrides, durations and sizes.

No torch here; nothing is built.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from unetkit.config.schema import Config, parse_duration  # noqa: F401  (re-exported)


class ConfigError(ValueError):
    """A configuration value is invalid; the message names the field and what is allowed."""


def _format_errors(error: ValidationError, source: str, names: dict[str, str] | None = None
                   ) -> str:
    """One line naming every bad field (as ``--option (field)`` where ``names`` maps the field
    to the command-line option that set it) and what is wrong with it."""
    parts = []
    for item in error.errors():
        field = ".".join(str(p) for p in item["loc"]) or "<root>"
        message = item["msg"]
        label = f"{names[field]} ({field})" if names and field in names else field
        if item["type"] == "value_error":
            message = message.removeprefix("Value error, ")
        elif item["type"] == "extra_forbidden":
            message = "unknown field (check its spelling and section)"
        elif isinstance(item.get("input"), (str, int, float)):
            message = f"got {item['input']!r}; {message[:1].lower()}{message[1:]}"
        parts.append(f"{label}: {message}")
    return f"invalid configuration ({source}): " + "; ".join(parts)


def config_from_dict(data: dict[str, Any] | None, source: str = "dict",
                     names: dict[str, str] | None = None) -> Config:
    """Validate a plain dict into a ``Config``; raises ``ConfigError`` naming each bad field
    (and the command-line option that set it, ``names``: ``{"train.lr": "--lr"}``)."""
    if data is not None and not isinstance(data, dict):
        raise ConfigError(f"invalid configuration ({source}): expected a mapping with sections "
                          f"model/data/train/infer, got {type(data).__name__}")
    try:
        return Config.model_validate(data or {})
    except ValidationError as error:
        raise ConfigError(_format_errors(error, source, names)) from None


def load_config(path: str | Path) -> Config:
    """Read and validate a YAML config file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: not valid YAML: {error}") from None
    if data is not None and not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping with sections model/data/train/infer")
    return config_from_dict(data, source=str(path))


def config_to_dict(config: Config) -> dict[str, Any]:
    """Plain, YAML-safe dict of a config (paths as strings, tuples as lists)."""
    return config.model_dump(mode="json")


def save_config(config: Config, path: str | Path) -> None:
    """Write a config as YAML."""
    Path(path).write_text(yaml.safe_dump(config_to_dict(config), sort_keys=False))


def overrides_to_values(overrides: list[str]) -> dict[str, Any]:
    """``["train.lr=3e-4"]`` -> ``{"train.lr": 0.0003}`` (values parsed as YAML)."""
    values: dict[str, Any] = {}
    for item in overrides:
        if "=" not in item:
            raise ConfigError(
                f"--set {item!r}: expected section.field=value, e.g. train.lr=3e-4"
            )
        key, raw = item.split("=", 1)
        values[key.strip()] = parse_value(raw, f"--set {item!r}")
    return values


def apply_overrides(config: Config, overrides: list[str], fields: Sequence[str] | None = None,
                    user: str = "this command") -> Config:
    """Apply ``section.field=value`` overrides (value parsed as YAML) and re-validate.

    Args:
        fields: what ``user`` reads (``"infer.*"``: a section, ``"data.image_offset"``: one
            field; see ``check_fields``): a field elsewhere would be accepted and silently do
            nothing, so it is refused. None: every field.
    """
    values = overrides_to_values(overrides)
    check_fields(values, fields, user, "--set")
    data = config_to_dict(config)
    for key, value in values.items():
        parts = key.split(".")
        node = data
        for part in parts[:-1]:
            if not isinstance(node.get(part), dict):
                raise ConfigError(f"--set {key}={value!r}: {part!r} is not a config section")
            node = node[part]
        if parts[-1] not in node:
            raise ConfigError(f"--set {key}={value!r}: unknown field {key!r}")
        node[parts[-1]] = value
    return config_from_dict(data, source="--set")


def check_fields(values: dict[str, Any], fields: Sequence[str] | None, user: str,
                 what: str) -> None:
    """Refuse ``{"section.field": value}`` entries that ``user`` does not read.

    Args:
        fields: what ``user`` reads: ``"infer.*"`` (a section and everything in it) or
            ``"data.image_offset"`` (one field); None: everything.
        what: how the values were given, for the message (``--set``).

    Raises:
        ConfigError: naming every unread field and what ``user`` reads.
    """
    if fields is None:
        return
    def read(key: str) -> bool:
        return any(key.startswith(f[:-1]) if f.endswith(".*") else key == f for f in fields)

    unused = [key for key in values if not read(key)]
    if unused:
        shown = ", ".join(f"{key}={values[key]!r}" for key in unused)
        example = fields[0].replace("*", "<field>")
        raise ConfigError(f"{what} {shown}: {user} does not use {', '.join(unused)}; it reads "
                          f"only {', '.join(fields)} (e.g. {what} {example}=<value>)")


def parse_value(text: str, what: str) -> Any:
    """A value written as YAML (``3e-4``, ``[8, 16]``, ``null``, ``auto``); plain data only.

    Raises:
        ConfigError: not valid YAML, or a tag that would construct an object (``!!python/...``).
    """
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as error:
        problem = str(getattr(error, "problem", None) or error).strip().splitlines()[0]
        raise ConfigError(f"{what}: not a valid value ({problem}); write e.g. 3e-4, [8, 16], "
                          "true or a plain word") from None


def parse_options(items: list[str], what: str = "--option") -> dict[str, Any]:
    """``["norm=batch", "widths=[8,16]"]`` -> ``{"norm": "batch", "widths": [8, 16]}``."""
    options = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(f"{what} {item!r}: expected key=value, e.g. {what} norm=batch")
        key, raw = item.split("=", 1)
        options[key.strip().replace("-", "_")] = parse_value(raw, f"{what} {item!r}")
    return options


def parse_size(text: str, name: str = "--patch-size") -> list[int]:
    """``'256,256'`` / ``'256x256'`` / ``'128'`` -> list of ints (one value: per axis later)."""
    parts = [p.strip() for p in str(text).replace("x", ",").split(",") if p.strip()]
    if not parts or not all(p.isdigit() and int(p) > 0 for p in parts):
        raise ConfigError(f"{name} {text!r}: expected integers such as 256,256 (positive)")
    return [int(p) for p in parts]


def parse_spacing(text: str, name: str = "--spacing") -> list[float]:
    """``'0.8,0.8,2.5'`` -> ``[0.8, 0.8, 2.5]``: positive, finite voxel sizes.

    Raises:
        ConfigError: a value that is not a positive number; the message names ``name``.
    """
    parts = [p.strip() for p in str(text).split(",")]
    try:
        values = [float(p) for p in parts]
    except ValueError:
        values = []
    if not values or not all(math.isfinite(v) and v > 0 for v in values):
        raise ConfigError(f"{name} {text!r}: expected positive numbers separated by commas, "
                          "one per spatial axis, e.g. 0.8,0.8,2.5")
    return values


def build_config(
    config_file: str | Path | None = None,
    values: dict[str, Any] | None = None,
    overrides: list[str] | None = None,
    base: Config | None = None,
) -> Config:
    """The CLI's config: a YAML file (or ``base``, or defaults), then typed options, then
    ``--set`` overrides.

    A one-value ``data.patch_size`` is repeated over ``model.spatial_dims`` axes.
    """
    config = load_config(config_file) if config_file else (base or Config())
    config = apply_values(config, values or {})
    config = apply_overrides(config, overrides or [])
    patch = config.data.patch_size
    if len(patch) == 1 and config.model.spatial_dims > 1:
        config = apply_values(config, {"data.patch_size": patch * config.model.spatial_dims})
    return config


def apply_values(config: Config, values: dict[str, Any], source: str = "options",
                 names: dict[str, str] | None = None) -> Config:
    """Set ``{"section.field": value}`` (already typed, e.g. from CLI options; None skipped).

    ``names`` maps fields to the command-line options that set them, for the messages.

    Raises:
        ConfigError: unknown field, or a value the field does not allow (named in the message).
    """
    data = config_to_dict(config)
    for key, value in values.items():
        if value is None:
            continue
        *sections, name = key.split(".")
        node = data
        for part in sections:
            node = node.get(part) if isinstance(node, dict) else None
            if not isinstance(node, dict):
                raise ConfigError(f"{source}: {key!r} is not a config field")
        if name not in node:
            raise ConfigError(f"{source}: unknown field {key!r}")
        node[name] = value
    return config_from_dict(data, source=source, names=names)


def field_value(config: Config, name: str) -> Any:
    """The value of the dotted field ``name`` (``"data.batch_size"``,
    ``"data.normalization.scheme"``) in ``config``."""
    value: Any = config
    for part in name.split("."):
        value = value.get(part) if isinstance(value, dict) else getattr(value, part)
    return value
