"""Validated configuration objects (pydantic) <-> YAML, with ``section.field=value`` overrides.

One ``Config`` has four sections: ``model``, ``data``, ``train`` and ``infer``. It is saved into
every run directory and checkpoint, so a model can always be rebuilt from its checkpoint alone.
This package imports no torch and builds nothing: ``schema`` holds the sections, ``io`` the YAML
round trip, overrides and the parsing of durations and sizes, ``commented`` the config as
commented YAML (``unetkit config``).
"""

from unetkit.config.commented import commented_yaml, write_commented_yaml
from unetkit.config.io import (
    ConfigError,
    apply_overrides,
    apply_values,
    build_config,
    check_fields,
    config_from_dict,
    config_to_dict,
    field_value,
    load_config,
    overrides_to_values,
    parse_options,
    parse_size,
    parse_spacing,
    parse_value,
    save_config,
)
from unetkit.config.schema import (
    AugmentConfig,
    Config,
    DataConfig,
    InferConfig,
    LossConfig,
    ModelConfig,
    NormalizationConfig,
    PostprocessConfig,
    TrainConfig,
    parse_duration,
)

__all__ = [
    "AugmentConfig",
    "Config",
    "ConfigError",
    "DataConfig",
    "InferConfig",
    "LossConfig",
    "ModelConfig",
    "NormalizationConfig",
    "PostprocessConfig",
    "TrainConfig",
    "apply_overrides",
    "apply_values",
    "build_config",
    "check_fields",
    "commented_yaml",
    "config_from_dict",
    "config_to_dict",
    "field_value",
    "load_config",
    "overrides_to_values",
    "parse_duration",
    "parse_options",
    "parse_size",
    "parse_spacing",
    "parse_value",
    "save_config",
    "write_commented_yaml",
]
